"""Provider events: verified events committed per second, and what they cost delivery.

Two measurements, on the real ``ringbearer run`` and the real ``ringbearer
simulate`` (Resend's endpoint), each daemon on a fresh state folder:

1. **Events on their own.** A daemon first delivers ``--events`` emails (the
   simulator's own events switched off, so nothing else arrives), so that each
   event names a message the store knows, as in real life. Then, with no
   delivery going on, the benchmark posts one signed Resend event per email
   (``email.delivered``, then ``email.opened``, ``email.clicked`` in later
   rounds, each under a fresh ``svix-id``), signed as Svix signs
   (``svix.webhooks.Webhook.sign``), over ``--connections`` kept-alive
   HTTP/1.1 connections, one request at a time on each. The rate is events
   answered 200 / (first request sent -> last answer read); each answer comes
   only after its event is committed, and the rows are counted afterwards in
   ``mail_events`` and in the audit log (``provider_event``). Two clients take
   turns: httpx (one ``AsyncHTTPTransport`` a connection, http2 off) and a
   bare one (prepared request bytes written to a trio socket, the answer's
   head and body read back), with each client's own ceiling measured first
   against a trivial server (a process that answers 200 to anything).
2. **Delivery with events against without.** ``--messages`` emails, each to
   its own address, submitted while the integration is paused, then resumed;
   the rate is messages / (resume -> the last one delivered and committed),
   as in ``bench/throughput.py``. (a) with the simulator's events flowing
   back (it sends each email's events, signed, once the daemon registered:
   delivered, and a seeded 30% opened, 10% clicked), (b) with ``[webhooks]
   enabled = false``, so nothing is registered and no event is sent. Rounds
   alternate which goes first; medians and their ratio are printed, and for
   (a) how many events were answered while delivery ran, and how long after
   the last delivery the last event was committed.

The listener's per-client rate limit (500/s, burst 1,000 by default) is
raised in the benchmark's config: the benchmark and the simulator are each
one client address, where a real provider posts from many.

    python bench/events.py [--events 20000] [--messages 20000] [--connections 32] [--rounds 3]

The CPU seconds each process spent in each phase are printed too (from
/proc), since every process shares the same cores. It prints a table; it
does not pass or fail.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from ringbearer._public import SANDBOX_RESEND_SECRET
from ringbearer.simulator._fates import Fates
from throughput import DaemonProcess, reset, start_simulator

SENDER = "Studio <studio@example.com>"
EVENT_TYPES = ("email.delivered", "email.opened", "email.clicked")
TICK = os.sysconf("SC_CLK_TCK")


# --- the daemon, the simulator and the store -----------------------------------------


def config_file(workdir: Path, sim_url: str, lanes: int, *, webhooks: bool) -> Path:
    """``throughput.py``'s daemon, with the public listener on (or off) and its limit raised."""
    config = workdir / "config.toml"
    config.write_text(f"""
[daemon]
state_dir = "{workdir / "state"}"
log_level = "warning"
[store]
synchronous = "full"
[metrics]
enabled = false
[sandbox]
enabled = true
url = "{sim_url}"
[webhooks]
enabled = {str(webhooks).lower()}
listen = "127.0.0.1:0"
per_client_per_second = 1000000
per_client_burst = 1000000
[integrations.resend]
kind = "resend"
api_key = {{ env = "RESEND_API_KEY" }}
lanes = {lanes}
mailbox = {lanes * 2}
""")
    return config


def message(i: int) -> dict[str, Any]:
    """An email to an address of its own, as real mail goes."""
    payload = {
        "from": SENDER,
        "to": [f"guest{i}@example.com"],
        "subject": "Timeline update",
        "text": "The first dance is at 19:30.",
    }
    return {"target": "resend", "payload": payload, "key": f"bench-{i}"}


def deliver(daemon: DaemonProcess, total: int) -> tuple[float, float]:
    """Submit ``total`` emails while paused, resume: (when resumed, seconds until the last
    one is committed), both by ``time.perf_counter``."""
    with daemon.client() as client:
        client.raw("pause", {"name": "resend"})
        for first in range(0, total, 1000):
            batch = [message(i) for i in range(first, min(first + 1000, total))]
            client.raw("submit", {"messages": batch})
        start = time.perf_counter()
        client.raw("resume", {"name": "resend"})
        result = client.raw("wait", {"timeout": 600})
        elapsed = time.perf_counter() - start
    assert result["idle"], result
    return start, elapsed


def webhooks_url(daemon: DaemonProcess) -> str:
    with daemon.client() as client:
        url = client.raw("status")["webhooks"]
    assert isinstance(url, str), url
    return url


def delivered(db: Path) -> list[tuple[str, str]]:
    """(provider id, recipient) of each delivered email."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT provider_id, recipient FROM messages WHERE status = 'delivered' ORDER BY id"
        ).fetchall()
    return [(str(pid), str(to)) for pid, to in rows]


def committed(db: Path) -> tuple[int, int]:
    """Provider events kept: rows in ``mail_events``, and ``provider_event`` audit events."""
    with sqlite3.connect(db) as conn:
        (events,) = conn.execute("SELECT COUNT(*) FROM mail_events").fetchone()
        (audit,) = conn.execute(
            "SELECT COUNT(*) FROM events WHERE kind = 'provider_event'"
        ).fetchone()
    return int(events), int(audit)


def clear_targets(sim_url: str) -> None:
    """No daemon's listener registered with the simulator: it sends no events."""
    httpx.delete(f"{sim_url}/_sim/webhooks", trust_env=False).raise_for_status()
    assert httpx.get(f"{sim_url}/_sim/webhooks", trust_env=False).json() == {}


def event_stats(sim_url: str) -> dict[str, int]:
    shown = httpx.get(f"{sim_url}/_sim/stats", params={"provider": "resend"}, trust_env=False)
    stats: dict[str, Any] = shown.json()["resend"]
    keys = ("events_sent", "events_failed", "events_dropped", "event_retries")
    return {key: int(stats[key]) for key in keys}


@attrs.define
class Cpu:
    """CPU seconds spent by processes (by /proc) and by this one, from one moment on."""

    pids: dict[str, int]
    start: dict[str, float] = attrs.Factory(dict)

    def __attrs_post_init__(self) -> None:
        self.start = self.now()

    def now(self) -> dict[str, float]:
        spent = {name: _proc_cpu(pid) for name, pid in self.pids.items()}
        usage = resource.getrusage(resource.RUSAGE_SELF)
        spent["bench"] = usage.ru_utime + usage.ru_stime
        return spent

    def since(self) -> dict[str, float]:
        return {name: value - self.start[name] for name, value in self.now().items()}


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


# --- signed Resend events, and two clients that post them ----------------------------


@attrs.frozen
class Event:
    """One signed delivery, ready to post: its body and headers."""

    body: bytes
    headers: dict[str, str]


def signed_events(ids: Sequence[tuple[str, str]], kind: str, salt: str) -> list[Event]:
    """One Resend event of ``kind`` per email, each signed now under a fresh ``svix-id``."""
    from svix.webhooks import Webhook

    signer = Webhook(SANDBOX_RESEND_SECRET.reveal())
    now = datetime.now(UTC)
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    events = []
    for n, (provider_id, address) in enumerate(ids):
        document = {
            "type": kind,
            "created_at": stamp,
            "data": {"email_id": provider_id, "from": SENDER, "to": [address], "created_at": stamp},
        }
        body = json.dumps(document, separators=(",", ":")).encode()
        msg_id = f"msg_bench_{salt}_{n}"
        headers = {
            "content-type": "application/json",
            "svix-id": msg_id,
            "svix-timestamp": str(int(now.timestamp())),
            "svix-signature": signer.sign(msg_id, now, body.decode()),
        }
        events.append(Event(body, headers))
    return events


Counter = collections.Counter[int]
Poster = Callable[[str, Sequence[Event], int], Awaitable[Counter]]


async def post_httpx(url: str, events: Sequence[Event], connections: int) -> Counter:
    """Post every event, ``connections`` at a time, each worker on its own httpx transport."""
    statuses: Counter = collections.Counter()
    queue = iter(events)
    target = httpx.URL(url)
    timeout = httpx.Timeout(30.0).as_dict()

    async def worker() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncHTTPTransport(limits=limits, http2=False, trust_env=False) as t:
            for event in queue:
                request = httpx.Request(
                    "POST", target, content=event.body, headers=event.headers,
                    extensions={"timeout": timeout},
                )  # fmt: skip
                response = await t.handle_async_request(request)
                try:
                    await response.aread()
                finally:
                    await response.aclose()
                statuses[response.status_code] += 1

    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(worker)
    return statuses


def raw_request(url: httpx.URL, event: Event) -> bytes:
    """The HTTP/1.1 request for ``event``, as bytes to write as they are."""
    head = [f"POST {url.raw_path.decode()} HTTP/1.1", f"host: {url.netloc.decode()}"]
    head += [f"{name}: {value}" for name, value in event.headers.items()]
    head.append(f"content-length: {len(event.body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + event.body


async def post_raw(url: str, events: Sequence[Event], connections: int) -> Counter:
    """Post every event, ``connections`` at a time, as prepared bytes on kept-alive sockets."""
    target = httpx.URL(url)
    prepared = [raw_request(target, event) for event in events]
    statuses: Counter = collections.Counter()
    queue = iter(prepared)

    async def worker() -> None:
        stream = await trio.open_tcp_stream(target.host, target.port or 80)
        async with stream:
            reader = _Reader(stream)
            for request in queue:
                await stream.send_all(request)
                statuses[await reader.answer()] += 1

    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(worker)
    return statuses


@attrs.define
class _Reader:
    """Reads one HTTP/1.1 answer at a time off a kept-alive connection."""

    stream: trio.SocketStream
    buffer: bytes = b""

    async def answer(self) -> int:
        """The next answer's status; its head and body are consumed."""
        while b"\r\n\r\n" not in self.buffer:
            await self._more()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = dict(line.lower().split(": ", 1) for line in lines[1:])
        if fields.get("transfer-encoding") == "chunked":
            while b"0\r\n\r\n" not in self.buffer:
                await self._more()
            self.buffer = self.buffer.partition(b"0\r\n\r\n")[2]
            return status
        length = int(fields.get("content-length", "0"))
        while len(self.buffer) < length:
            await self._more()
        self.buffer = self.buffer[length:]
        return status

    async def _more(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data


CLIENTS: dict[str, Poster] = {"httpx": post_httpx, "raw": post_raw}


def timed_posts(post: Poster, url: str, events: Sequence[Event], connections: int) -> Any:
    """(statuses, seconds) of posting ``events``."""

    async def run() -> tuple[Counter, float]:
        start = trio.current_time()
        statuses = await post(url, events, connections)
        return statuses, trio.current_time() - start

    return trio.run(run)


# --- the trivial server: what the clients can do with nothing behind them -------------


async def _trivial_connection(stream: trio.SocketStream) -> None:
    buffer = b""
    async with stream:
        while True:
            while b"\r\n\r\n" not in buffer:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            found = re.search(rb"(?i)content-length: *(\d+)", head)
            length = int(found[1]) if found else 0
            while len(buffer) < length:
                buffer += await stream.receive_some(65536)
            buffer = buffer[length:]
            await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")


async def trivial_server() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}", flush=True)
    await trio.serve_listeners(_trivial_connection, listeners)


def start_trivial() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--trivial-server"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


# --- 1. events on their own ----------------------------------------------------------


@attrs.frozen
class EventRound:
    client: str
    kind: str
    posted: int
    ok: int
    others: dict[int, int]
    seconds: float
    committed: int  # mail_events rows added
    audited: int  # provider_event audit events added
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


def client_ceilings(
    count: int, connections: int, ids: Sequence[tuple[str, str]]
) -> dict[str, float]:
    """Requests/s each client reaches against a server that only answers 200."""
    proc, url = start_trivial()
    try:
        events = signed_events(ids[:count], EVENT_TYPES[0], "ceiling")
        ceilings = {}
        for name, post in CLIENTS.items():
            statuses, seconds = timed_posts(post, f"{url}/webhooks/resend", events, connections)
            assert statuses[200] == len(events), statuses
            ceilings[name] = len(events) / seconds
        return ceilings
    finally:
        proc.terminate()
        proc.wait(10)


def seed_daemon(sim_url: str, workdir: Path, count: int, lanes: int) -> DaemonProcess:
    """A daemon that has delivered ``count`` emails, with no event from the simulator."""
    daemon = DaemonProcess(workdir, config_file(workdir, sim_url, lanes, webhooks=True))
    clear_targets(sim_url)  # it registered at start: the benchmark alone sends events here
    deliver(daemon, count)
    return daemon


def event_round(
    daemon: DaemonProcess, sim_pid: int, ids: Sequence[tuple[str, str]], n: int, client: str,
    connections: int,
) -> EventRound:  # fmt: skip
    kind = EVENT_TYPES[n % len(EVENT_TYPES)]
    events = signed_events(ids, kind, f"{n}-{client}")
    url = f"{webhooks_url(daemon)}/webhooks/resend"
    before = committed(daemon.db)
    cpu = Cpu({"daemon": daemon.proc.pid, "simulator": sim_pid})
    statuses, seconds = timed_posts(CLIENTS[client], url, events, connections)
    spent = cpu.since()
    after = committed(daemon.db)
    others = {status: count for status, count in statuses.items() if status != 200}
    return EventRound(
        client, kind, len(events), statuses[200], others, seconds,
        after[0] - before[0], after[1] - before[1], spent,
    )  # fmt: skip


def events_alone(args: argparse.Namespace, sim_url: str, sim_pid: int) -> Any:
    with tempfile.TemporaryDirectory(prefix="rb-bench-") as tmp:
        daemon = seed_daemon(sim_url, Path(tmp), args.events, args.lanes)
        try:
            ids = delivered(daemon.db)
            assert len(ids) == args.events, len(ids)
            ceilings = client_ceilings(args.events, args.connections, ids)
            rounds = []
            for n in range(args.rounds):
                order = list(CLIENTS) if n % 2 == 0 else list(reversed(CLIENTS))
                for client in order:
                    rounds.append(event_round(daemon, sim_pid, ids, n, client, args.connections))
        finally:
            daemon.stop()
    return ceilings, rounds


# --- 2. delivery with events flowing back, and without --------------------------------


@attrs.frozen
class DeliveryRound:
    events_on: bool
    rate: float
    seconds: float
    cpu: dict[str, float]
    during: int = 0  # events answered 2xx while delivery ran
    expected: int = 0  # events the simulator's mailboxes make of these emails
    settled: dict[str, int] = attrs.Factory(dict)  # the simulator's counts once all settled
    drain: float = 0.0  # seconds from resume until the last event was answered
    committed: int = 0


def expected_events(ids: Sequence[tuple[str, str]]) -> int:
    """How many events the simulator (seed 0) sends for these emails."""
    fates = Fates(0)
    return sum(len(fates.mail(address, provider_id)) for provider_id, address in ids)


def wait_settled(sim_url: str, expected: int, timeout: float = 300.0) -> dict[str, int]:
    """Poll the simulator until each expected event was answered, given up or dropped."""
    deadline = time.monotonic() + timeout
    while True:
        stats = event_stats(sim_url)
        done = stats["events_sent"] + stats["events_failed"] + stats["events_dropped"]
        if done >= expected or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def delivery_round(args: argparse.Namespace, sim_url: str, sim_pid: int, on: bool) -> DeliveryRound:
    """One delivery run on a fresh daemon, with the simulator's events (``on``) or without."""
    with tempfile.TemporaryDirectory(prefix="rb-bench-") as tmp:
        workdir = Path(tmp)
        clear_targets(sim_url)
        reset(sim_url)
        daemon = DaemonProcess(workdir, config_file(workdir, sim_url, args.lanes, webhooks=on))
        try:
            cpu = Cpu({"daemon": daemon.proc.pid, "simulator": sim_pid})
            resumed, seconds = deliver(daemon, args.messages)
            if not on:
                return DeliveryRound(False, args.messages / seconds, seconds, cpu.since())
            during = event_stats(sim_url)["events_sent"]
            expected = expected_events(delivered(daemon.db))
            settled = wait_settled(sim_url, expected)
            drain = time.perf_counter() - resumed
            spent = cpu.since()
            kept = committed(daemon.db)[0]
        finally:
            clear_targets(sim_url)
            daemon.stop()
    return DeliveryRound(
        True, args.messages / seconds, seconds, spent, during, expected, settled, drain, kept
    )


def deliveries(args: argparse.Namespace, sim_url: str, sim_pid: int) -> list[DeliveryRound]:
    """Rounds of (a) with events and (b) without, alternating which goes first."""
    rounds = []
    for n in range(args.rounds):
        for on in (True, False) if n % 2 == 0 else (False, True):
            rounds.append(delivery_round(args, sim_url, sim_pid, on))
    return rounds


# --- the report ----------------------------------------------------------------------


def _runs(values: Sequence[float]) -> str:
    return " ".join(f"{v:.0f}" for v in values)


def _cpu(rounds: Sequence[Any]) -> str:
    names = rounds[0].cpu
    return "  ".join(
        f"{name} {statistics.median(r.cpu[name] for r in rounds):.1f}" for name in names
    )


def report_events(
    args: argparse.Namespace, ceilings: dict[str, float], rounds: list[EventRound]
) -> None:
    print(
        f"1. events on their own: {args.events} signed Resend events a round, "
        f"{args.connections} kept-alive HTTP/1.1 connections, one request at a time on each"
    )
    print(f"{'':<40}{'median/s':>10}   runs")
    for client, ceiling in ceilings.items():
        print(f"{'client ceiling, trivial server: ' + client:<40}{ceiling:>10.0f}")
    for client in CLIENTS:
        mine = [r for r in rounds if r.client == client]
        rates = [r.rate for r in mine]
        print(
            f"{'daemon, events committed: ' + client:<40}{statistics.median(rates):>10.0f}   "
            f"{_runs(rates)}"
        )
        print(f"{'':<6}CPU seconds a round (median): {_cpu(mine)}")
    for r in rounds:
        ok = r.ok == r.committed == r.audited and not r.others
        print(
            f"      {r.client:<6}{r.kind:<17}200: {r.ok}  other: {r.others or '-'}  "
            f"mail_events +{r.committed}  provider_event audit +{r.audited}  "
            f"{'all committed' if ok else 'MISMATCH'}"
        )


def report_deliveries(args: argparse.Namespace, rounds: list[DeliveryRound]) -> None:
    on = [r for r in rounds if r.events_on]
    off = [r for r in rounds if not r.events_on]
    print(
        f"2. delivery of {args.messages} emails (each to its own address), "
        f"{args.lanes} lanes, resume -> last committed"
    )
    print(f"{'':<40}{'median/s':>10}   runs")
    print(
        f"{'(a) events flowing back':<40}{statistics.median(r.rate for r in on):>10.0f}   "
        f"{_runs([r.rate for r in on])}"
    )
    print(f"{'':<6}CPU seconds a round (median, to the last event): {_cpu(on)}")
    print(
        f"{'(b) [webhooks] enabled = false':<40}{statistics.median(r.rate for r in off):>10.0f}   "
        f"{_runs([r.rate for r in off])}"
    )
    print(f"{'':<6}CPU seconds a round (median): {_cpu(off)}")
    ratio = statistics.median(r.rate for r in on) / statistics.median(r.rate for r in off)
    print(f"{'ratio (a) / (b) (medians)':<40}{ratio:>10.2f}")
    for r in on:
        s = r.settled
        print(
            f"      (a) {r.seconds:5.1f} s: events answered during delivery {r.during} "
            f"({r.during / r.seconds:.0f}/s); all {r.expected} settled after {r.drain:.1f} s "
            f"({r.expected / r.drain:.0f}/s): sent {s['events_sent']} failed "
            f"{s['events_failed']} dropped {s['events_dropped']} retries "
            f"{s['event_retries']}; mail_events {r.committed}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events a round (part 1)")
    parser.add_argument("--messages", type=int, default=20_000, help="emails a round (part 2)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--lanes", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip", choices=("events", "delivery"), help="leave one part out")
    parser.add_argument("--trivial-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trivial_server:
        trio.run(trivial_server)
        return
    os.environ.setdefault("RESEND_API_KEY", "re_bench")
    sim, url = start_simulator()
    print(
        f"cores={os.cpu_count()} python={sys.version.split()[0]} date={datetime.now(UTC):%Y-%m-%d}"
    )
    try:
        if args.skip != "events":
            report_events(args, *events_alone(args, url, sim.pid))
        if args.skip != "delivery":
            report_deliveries(args, deliveries(args, url, sim.pid))
    finally:
        sim.terminate()
        sim.wait(10)


if __name__ == "__main__":
    main()
