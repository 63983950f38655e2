"""Provider events: verified events committed per second, and what they cost delivery.

On the real ``ringbearer run`` and the real ``ringbearer simulate`` (Resend's
endpoint), each daemon on a fresh state folder:

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
   turns: httpx (an ``AsyncHTTPTransport`` a connection, http2 off) and a bare
   one (prepared request bytes written to a trio socket, the answer read
   back). Each client's ceiling is measured first against a trivial server
   (a process that answers 200 to anything), and the listener's layers apart
   from the daemon, each in a process of its own: hypercorn serving an app
   that only answers 200 (``floor``), and the real listener app with an
   ingest that commits nothing (``app``: limits, routing, the Svix check,
   parsing). The CPU seconds of each process say where the time goes.
2. **Delivery with events against without.** ``--messages`` emails, each to
   its own address, submitted while the integration is paused, then resumed;
   the rate is messages / (resume -> the last one delivered and committed),
   as in ``bench/throughput.py``. Three modes, in rotating order each round:
   ``simulator``: the simulator sends each email's events back itself, signed,
   once the daemon registered (delivered, and a seeded 30% opened, 10%
   clicked); ``bench``: the same events (the simulator's seeded fates), posted
   by this benchmark's bare client as each delivery is committed (read from
   the store every 20 ms), so that what sends them costs little; ``off``:
   ``[webhooks] enabled = false``, nothing registered, no events. Medians and
   their ratios to ``off`` are printed, with how many events were answered
   while delivery ran and when the last one was.

The listener's per-client rate limit (500/s, burst 1,000 by default) is
raised in the benchmark's config: the benchmark and the simulator are each
one client address, where a real provider posts from many.

    python bench/events.py [--events 10000] [--messages 10000] [--connections 32] [--rounds 3]

It prints a table; it does not pass or fail.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
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
from typing import Any, cast

import attrs
import httpx
import trio

from ringbearer._public import SANDBOX_RESEND_SECRET
from ringbearer.simulator._fates import Fates, MailEvent
from throughput import DaemonProcess, start_simulator

SENDER = "Studio <studio@example.com>"
EVENT_TYPES = ("email.delivered", "email.opened", "email.clicked")
RESEND_TYPES = {
    MailEvent.DELIVERED: "email.delivered",
    MailEvent.OPENED: "email.opened",
    MailEvent.CLICKED: "email.clicked",
}
MODES = ("simulator", "bench", "off")
TICK = os.sysconf("SC_CLK_TCK")
Counter = collections.Counter[int]
Delivered = tuple[int, str, str]  # message id, provider id, recipient


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
    """Submit ``total`` emails while paused, then resume: (when resumed, by
    ``time.perf_counter``; seconds from then until the last one is committed)."""
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
    return f"{url}/webhooks/resend"


_DELIVERED = (
    "SELECT id, provider_id, recipient FROM messages"
    " WHERE status = 'delivered' AND id > ? ORDER BY id"
)


def delivered_since(conn: sqlite3.Connection, after: int) -> list[Delivered]:
    """The emails delivered and committed, of ids above ``after``."""
    rows = conn.execute(_DELIVERED, (after,)).fetchall()
    return [(int(i), str(pid), str(to)) for i, pid, to in rows]


def delivered(db: Path) -> list[Delivered]:
    with sqlite3.connect(db) as conn:
        return delivered_since(conn, 0)


def committed(db: Path) -> tuple[int, int]:
    """Provider events kept: rows in ``mail_events``, and ``provider_event`` audit events."""
    with sqlite3.connect(db) as conn:
        (events,) = conn.execute("SELECT COUNT(*) FROM mail_events").fetchone()
        (audit,) = conn.execute(
            "SELECT COUNT(*) FROM events WHERE kind = 'provider_event'"
        ).fetchone()
    return int(events), int(audit)


@attrs.define
class SimControl:
    """The simulator's own API, over one kept client (polling must cost the bench little)."""

    url: str
    pid: int
    http: httpx.Client = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, trust_env=False, timeout=30)

    def clear_targets(self) -> None:
        """No daemon's listener registered with the simulator: it sends no events."""
        self.http.delete("/_sim/webhooks").raise_for_status()
        assert self.http.get("/_sim/webhooks").json() == {}

    def reset(self) -> None:
        self.http.post("/_sim/reset").raise_for_status()

    def event_stats(self) -> dict[str, int]:
        stats = self.http.get("/_sim/stats", params={"provider": "resend"}).json()["resend"]
        keys = ("events_sent", "events_failed", "events_dropped", "event_retries")
        return {key: int(stats[key]) for key in keys}

    def wait_settled(self, expected: int, timeout: float = 300.0) -> dict[str, int]:
        """Until each expected event was answered, given up or dropped (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.event_stats()
            done = stats["events_sent"] + stats["events_failed"] + stats["events_dropped"]
            if done >= expected or time.monotonic() > deadline:
                return stats
            time.sleep(0.1)


@attrs.define
class Cpu:
    """CPU seconds spent by processes (read in /proc) and by this one, from one moment on."""

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


# --- signed Resend events --------------------------------------------------------------


@attrs.frozen
class Event:
    """One signed delivery, ready to post: its body and headers."""

    body: bytes
    headers: dict[str, str]


@attrs.define
class Signer:
    """Resend's events as Svix signs them, with the sandbox's stand-in secret."""

    webhook: Any = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        from svix.webhooks import Webhook

        self.webhook = Webhook(SANDBOX_RESEND_SECRET.reveal())

    def event(self, kind: str, provider_id: str, address: str, msg_id: str) -> Event:
        now = datetime.now(UTC)
        stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        data = {"email_id": provider_id, "from": SENDER, "to": [address], "created_at": stamp}
        document = {"type": kind, "created_at": stamp, "data": data}
        body = json.dumps(document, separators=(",", ":")).encode()
        headers = {
            "content-type": "application/json",
            "svix-id": msg_id,
            "svix-timestamp": str(int(now.timestamp())),
            "svix-signature": self.webhook.sign(msg_id, now, body.decode()),
        }
        return Event(body, headers)


def signed_events(ids: Sequence[Delivered], kind: str, salt: str) -> list[Event]:
    """One event of ``kind`` per email, each under a ``svix-id`` of its own."""
    signer = Signer()
    return [
        signer.event(kind, pid, to, f"msg_bench_{salt}_{n}") for n, (_, pid, to) in enumerate(ids)
    ]


# --- two clients that post them ------------------------------------------------------

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
    send, receive = trio.open_memory_channel[bytes](math.inf)
    for event in events:
        send.send_nowait(raw_request(target, event))
    send.close()
    statuses: Counter = collections.Counter()
    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(raw_worker, target, receive, statuses)
    return statuses


async def raw_worker(
    target: httpx.URL, requests: trio.MemoryReceiveChannel[bytes], statuses: Counter
) -> None:
    """One kept-alive connection: a request, its answer, the next request."""
    stream = await trio.open_tcp_stream(target.host, target.port or 80)
    async with stream:
        reader = _Reader(stream)
        async for request in requests:
            await stream.send_all(request)
            statuses[await reader.answer()] += 1


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


CLIENTS: dict[str, Poster] = {"raw": post_raw, "httpx": post_httpx}


def timed_posts(post: Poster, url: str, events: Sequence[Event], connections: int) -> Any:
    """(statuses, seconds) of posting ``events``."""

    async def run() -> tuple[Counter, float]:
        start = trio.current_time()
        statuses = await post(url, events, connections)
        return statuses, trio.current_time() - start

    return trio.run(run)


# --- servers without the daemon: the clients' ceiling, the listener's layers ----------


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


async def trivial_server(_: str = "trivial") -> None:
    """Answers 200 to every request: no HTTP library, no app."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}", flush=True)
    await trio.serve_listeners(_trivial_connection, listeners)


async def _floor_app(scope: Any, receive: Any, send: Any) -> None:
    """hypercorn's own cost: read the body, answer 200."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@attrs.frozen
class _NullIngest:
    """Every event is new, and nothing is kept: the listener's cost without the store's."""

    async def ingest(self, events: Sequence[Any]) -> list[bool]:
        return [True] * len(events)


def _listener_app(ingest: Any) -> Any:
    from ringbearer.deliverability._settings import WebhookSettings
    from ringbearer.listener import ListenerParts, WebhookSource, build_app

    settings = _listener_settings()
    source = WebhookSource("resend", "resend", SANDBOX_RESEND_SECRET)
    nothing = cast(Any, None)  # unsubscribes and refusals: never reached here
    parts = ListenerParts(ingest, nothing, nothing, nothing, time.time)
    assert isinstance(settings, WebhookSettings)
    return build_app(settings, [source], parts)


def _listener_settings() -> Any:
    from ringbearer._converter import HostPort, PositiveFloat, PositiveInt
    from ringbearer.deliverability._settings import WebhookSettings

    return WebhookSettings(
        enabled=True,
        listen=HostPort("127.0.0.1:0"),
        per_client_per_second=PositiveFloat(1e6),
        per_client_burst=PositiveInt(1_000_000),
    )


async def listener_server(layer: str, ingest: Any = None) -> None:
    """The daemon's own ``serve`` (hypercorn's trio worker) with ``layer``'s app."""
    from ringbearer.listener import serve

    app = _floor_app if layer == "floor" else _listener_app(ingest or _NullIngest())
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, app, _listener_settings())
        print(f"http://127.0.0.1:{port}", flush=True)


@attrs.frozen
class _Quiet:
    """The guard's journal and alerts: nothing to say in a benchmark of delivered events."""

    def event(self, *args: Any, **detail: Any) -> None:
        pass

    def found(self, *args: Any) -> None:
        pass

    def cleared(self, *args: Any) -> None:
        pass


async def ingest_server(db: str) -> None:
    """The listener with the daemon's real ingest on a copy of its store, and nothing else:
    the event path without the daemon's actors, loops and control socket."""
    from prometheus_client import CollectorRegistry

    from ringbearer.deliverability._book import SuppressionBook
    from ringbearer.deliverability._guard import ReputationGuard
    from ringbearer.deliverability._ingest import Ingest
    from ringbearer.deliverability._metrics import DeliverabilityMetrics
    from ringbearer.deliverability._settings import ReputationSettings, SuppressionRules
    from ringbearer.store import SqliteStore

    rules, wall = SuppressionRules(), time.time
    async with SqliteStore.open(Path(db), clock=wall, synchronous="full") as store:
        book = await SuppressionBook.load(store, rules, wall())
        metrics = DeliverabilityMetrics(CollectorRegistry())
        quiet = _Quiet()
        guard = await ReputationGuard.load(ReputationSettings(), store, quiet, quiet, wall, metrics)
        await listener_server("app", Ingest(store, book, guard, rules, wall, metrics))


def start_server(kind: str, db: Path | None = None) -> tuple[subprocess.Popen[str], str]:
    """A server process of ``kind`` (trivial, floor, app, ingest on ``db``), and its URL."""
    extra = [] if db is None else ["--db", str(db)]
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, *extra], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


@attrs.frozen
class Layer:
    name: str
    client: str
    rate: float
    server_cpu: float  # the server process's CPU seconds
    posted: int


def measure_server(
    kind: str, client: str, events: Sequence[Event], connections: int, db: Path | None = None
) -> Layer:
    """Post ``events`` to a server process of ``kind`` with ``client``."""
    proc, url = start_server(kind, db)
    try:
        cpu = Cpu({"server": proc.pid})
        statuses, seconds = timed_posts(
            CLIENTS[client], f"{url}/webhooks/resend", events, connections
        )
        spent = cpu.since()["server"]
        assert statuses[200] == len(events), statuses
        return Layer(kind, client, len(events) / seconds, spent, len(events))
    finally:
        proc.terminate()
        proc.wait(10)


def without_daemon(daemon: DaemonProcess, ids: Sequence[Delivered], connections: int) -> Any:
    """Each client against the trivial server; the bare client against the listener's layers
    (the ingest's on a copy of the daemon's store, as it is before any event)."""
    events = signed_events(ids, EVENT_TYPES[0], "layers")  # signed now: within the tolerance
    layers = [measure_server("trivial", client, events, connections) for client in CLIENTS]
    layers += [measure_server(kind, "raw", events, connections) for kind in ("floor", "app")]
    with tempfile.TemporaryDirectory(prefix="rb-bench-") as tmp:
        copy = Path(tmp) / "copy.db"
        with sqlite3.connect(daemon.db) as source, sqlite3.connect(copy) as target:
            source.backup(target)
        layers.append(measure_server("ingest", "raw", events, connections, copy))
    return layers


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


def seed_daemon(sim: SimControl, workdir: Path, count: int, lanes: int) -> DaemonProcess:
    """A daemon that has delivered ``count`` emails, with no event from the simulator."""
    daemon = DaemonProcess(workdir, config_file(workdir, sim.url, lanes, webhooks=True))
    sim.clear_targets()  # it registered at start: the benchmark alone sends events here
    sim.reset()
    deliver(daemon, count)
    return daemon


def event_round(
    daemon: DaemonProcess, ids: Sequence[Delivered], n: int, client: str, connections: int
) -> EventRound:
    kind = EVENT_TYPES[n % len(EVENT_TYPES)]
    events = signed_events(ids, kind, f"{n}-{client}")
    url = webhooks_url(daemon)
    before = committed(daemon.db)
    cpu = Cpu({"daemon": daemon.proc.pid})
    statuses, seconds = timed_posts(CLIENTS[client], url, events, connections)
    spent = cpu.since()
    after = committed(daemon.db)
    others = {status: count for status, count in statuses.items() if status != 200}
    return EventRound(
        client, kind, len(events), statuses[200], others, seconds,
        after[0] - before[0], after[1] - before[1], spent,
    )  # fmt: skip


def events_alone(args: argparse.Namespace, sim: SimControl) -> tuple[list[Layer], list[EventRound]]:
    with tempfile.TemporaryDirectory(prefix="rb-bench-") as tmp:
        daemon = seed_daemon(sim, Path(tmp), args.events, args.lanes)
        try:
            ids = delivered(daemon.db)
            assert len(ids) == args.events, len(ids)
            layers = without_daemon(daemon, ids, args.connections)
            rounds = []
            for n in range(args.rounds):
                for client in list(CLIENTS) if n % 2 == 0 else list(reversed(CLIENTS)):
                    rounds.append(event_round(daemon, ids, n, client, args.connections))
        finally:
            daemon.stop()
    return layers, rounds


# --- 2. delivery with events flowing back, and without --------------------------------


@attrs.frozen
class DeliveryRound:
    mode: str
    rate: float
    seconds: float
    cpu: dict[str, float]
    during: int = 0  # events answered 2xx while delivery ran
    expected: int = 0  # events the simulator's mailboxes make of these emails
    answered: int = 0  # of them answered 2xx in the end
    last: float = 0.0  # seconds from resume until the last event was answered
    committed: int = 0  # mail_events rows in the end
    lost: str = ""  # the simulator's events given up or dropped, retries


def one_each(ids: Sequence[Delivered]) -> list[tuple[str, str, str]]:
    """(Resend event type, provider id, address): one ``email.delivered`` an email, so
    that events arrive at exactly the delivery rate, as the issue's measure has it."""
    return [("email.delivered", pid, to) for _, pid, to in ids]


def fates_of(ids: Sequence[Delivered]) -> list[tuple[str, str, str]]:
    """(Resend event type, provider id, address): the events the simulator (seed 0) sends."""
    fates = Fates(0)
    return [(RESEND_TYPES[event], pid, to) for _, pid, to in ids for event in fates.mail(to, pid)]


def simulator_round(
    args: argparse.Namespace, sim: SimControl, daemon: DaemonProcess
) -> DeliveryRound:
    """Delivery while the simulator sends its events back (it was told where at the start)."""
    cpu = Cpu({"daemon": daemon.proc.pid, "simulator": sim.pid})
    resumed, seconds = deliver(daemon, args.messages)
    during = sim.event_stats()["events_sent"]
    expected = len(fates_of(delivered(daemon.db)))
    stats = sim.wait_settled(expected)
    last = time.perf_counter() - resumed
    lost = (
        f"failed {stats['events_failed']} dropped {stats['events_dropped']}"
        f" retries {stats['event_retries']}"
    )
    return DeliveryRound(
        "simulator", args.messages / seconds, seconds, cpu.since(), during, expected,
        stats["events_sent"], last, committed(daemon.db)[0], lost,
    )  # fmt: skip


def bench_round(args: argparse.Namespace, sim: SimControl, daemon: DaemonProcess) -> DeliveryRound:
    """Delivery while this benchmark posts each committed email's events, as they come."""
    sim.clear_targets()
    cpu = Cpu({"daemon": daemon.proc.pid, "simulator": sim.pid})
    events = one_each if args.per_email == "one" else fates_of
    paced = Paced(daemon, webhooks_url(daemon), args.connections, args.messages, events)
    trio.run(paced.run)
    return DeliveryRound(
        "bench", args.messages / paced.seconds, paced.seconds, cpu.since(), paced.during,
        paced.posted, paced.statuses[200], paced.last, committed(daemon.db)[0],
    )  # fmt: skip


@attrs.define
class Paced:
    """Posts the events of each email once its delivery is committed, while delivery runs."""

    daemon: DaemonProcess
    url: str
    connections: int
    messages: int
    events_of: Callable[[Sequence[Delivered]], list[tuple[str, str, str]]]
    statuses: Counter = attrs.Factory(collections.Counter)
    posted: int = 0
    during: int = 0
    seconds: float = 0.0
    last: float = 0.0
    _last_at: float = 0.0  # by time.perf_counter
    _done: trio.Event = attrs.Factory(trio.Event)

    async def run(self) -> None:
        send, receive = trio.open_memory_channel[bytes](math.inf)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._feed, send)
            for _ in range(self.connections):
                nursery.start_soon(self._worker, receive)
            resumed, self.seconds = await trio.to_thread.run_sync(
                deliver, self.daemon, self.messages
            )
            self.during = self.statuses[200]
            self._done.set()
        self.last = self._last_at - resumed

    async def _feed(self, send: trio.MemorySendChannel[bytes]) -> None:
        """Every 20 ms, the events of the emails delivered since the last look."""
        signer, target, after = Signer(), httpx.URL(self.url), 0
        conn = sqlite3.connect(self.daemon.db, check_same_thread=False)
        async with send:
            while True:
                finished = self._done.is_set()
                found = await trio.to_thread.run_sync(delivered_since, conn, after)
                after = found[-1][0] if found else after
                for n, (kind, pid, to) in enumerate(self.events_of(found)):
                    event = signer.event(kind, pid, to, f"msg_paced_{pid}_{n}")
                    send.send_nowait(raw_request(target, event))
                    self.posted += 1
                if finished:
                    break
                await trio.sleep(0.02)
        conn.close()

    async def _worker(self, receive: trio.MemoryReceiveChannel[bytes]) -> None:
        target = httpx.URL(self.url)
        async with await trio.open_tcp_stream(target.host, target.port or 80) as stream:
            reader = _Reader(stream)
            async for request in receive:
                await stream.send_all(request)
                self.statuses[await reader.answer()] += 1
                self._last_at = time.perf_counter()


def delivery_round(args: argparse.Namespace, sim: SimControl, mode: str) -> DeliveryRound:
    """One delivery run of ``mode`` on a fresh daemon."""
    with tempfile.TemporaryDirectory(prefix="rb-bench-") as tmp:
        workdir = Path(tmp)
        sim.clear_targets()
        sim.reset()
        config = config_file(workdir, sim.url, args.lanes, webhooks=mode != "off")
        daemon = DaemonProcess(workdir, config)
        try:
            if mode == "simulator":
                return simulator_round(args, sim, daemon)
            if mode == "bench":
                return bench_round(args, sim, daemon)
            cpu = Cpu({"daemon": daemon.proc.pid, "simulator": sim.pid})
            _, seconds = deliver(daemon, args.messages)
            return DeliveryRound("off", args.messages / seconds, seconds, cpu.since())
        finally:
            sim.clear_targets()
            daemon.stop()


def deliveries(args: argparse.Namespace, sim: SimControl) -> list[DeliveryRound]:
    """Rounds of each mode, the order turning by one each round."""
    rounds = []
    for n in range(args.rounds):
        for k in range(len(args.modes)):
            rounds.append(delivery_round(args, sim, args.modes[(n + k) % len(args.modes)]))
    return rounds


# --- the report ----------------------------------------------------------------------


def _runs(values: Sequence[float]) -> str:
    return " ".join(f"{v:.0f}" for v in values)


def _cpu(rounds: Sequence[Any]) -> str:
    return "  ".join(
        f"{name} {statistics.median(r.cpu[name] for r in rounds):.1f}" for name in rounds[0].cpu
    )


def report_events(args: argparse.Namespace, layers: list[Layer], rounds: list[EventRound]) -> None:
    print(
        f"1. events on their own: {args.events} signed Resend events a round, "
        f"{args.connections} kept-alive HTTP/1.1 connections, one request at a time on each"
    )
    print(f"{'':<44}{'median/s':>9}   runs")
    for client in CLIENTS:
        mine = [r for r in rounds if r.client == client]
        rates = [r.rate for r in mine]
        print(
            f"{'daemon, events committed (' + client + ' client)':<44}"
            f"{statistics.median(rates):>9.0f}   {_runs(rates)}"
        )
        ms = statistics.median(1000 * r.cpu["daemon"] / r.ok for r in mine)
        print(f"{'':<6}CPU a round (s, median): {_cpu(mine)}; daemon {ms:.2f} ms an event")
    for r in rounds:
        ok = r.ok == r.committed == r.audited == r.posted and not r.others
        print(
            f"{'':<6}{r.client:<6}{r.kind:<16} 200: {r.ok}  other: {r.others or '-'}  "
            f"mail_events +{r.committed}  provider_event audit +{r.audited}  "
            f"{'all committed' if ok else 'MISMATCH'}"
        )
    print("   without the daemon (one run each):")
    names = {
        "trivial": "trivial server",
        "floor": "hypercorn, app answers 200",
        "app": "listener app, nothing committed",
        "ingest": "listener app, real ingest + store",
    }
    for layer in layers:
        ms = 1000 * layer.server_cpu / layer.posted
        print(
            f"{'':<3}{names[layer.name] + ' (' + layer.client + ' client)':<41}"
            f"{layer.rate:>9.0f}   server {ms:.2f} ms CPU a request"
        )


def report_deliveries(args: argparse.Namespace, rounds: list[DeliveryRound]) -> None:
    print(
        f"2. delivery of {args.messages} emails (each to its own address), "
        f"{args.lanes} lanes, resume -> last committed"
    )
    print(f"{'':<44}{'median/s':>9}   runs")
    labels = {
        "simulator": "events from the simulator",
        "bench": "events from the bench, as committed",
        "off": "[webhooks] enabled = false",
    }
    medians = {}
    for mode in args.modes:
        mine = [r for r in rounds if r.mode == mode]
        medians[mode] = statistics.median(r.rate for r in mine)
        print(f"{labels[mode]:<44}{medians[mode]:>9.0f}   {_runs([r.rate for r in mine])}")
        print(f"{'':<6}CPU a round (s, median, to the last event): {_cpu(mine)}")
    if "off" in medians:
        for mode in (m for m in args.modes if m != "off"):
            ratio = medians[mode] / medians["off"]
            print(f"{'ratio ' + mode + ' / off (medians)':<44}{ratio:>9.2f}")
    print("   delivery with its events kept up: messages / (resume -> last event answered)")
    for mode in (m for m in args.modes if m != "off"):
        kept_up = [args.messages / r.last for r in rounds if r.mode == mode]
        line = f"{statistics.median(kept_up):>9.0f}   {_runs(kept_up)}"
        if "off" in medians:
            line += f"   ratio to off {statistics.median(kept_up) / medians['off']:.2f}"
        print(f"{'':<3}{'events from the ' + mode:<41}{line}")
    for r in rounds:
        if r.mode != "off":
            print(
                f"{'':<6}{r.mode:<10}{r.seconds:5.1f} s: events answered meanwhile "
                f"{r.during} ({r.during / r.seconds:.0f}/s); {r.answered} of {r.expected} "
                f"answered by {r.last:.1f} s ({r.answered / r.last:.0f}/s); "
                f"mail_events {r.committed} {r.lost}"
            )


SERVERS = ("trivial", "floor", "app", "ingest")


def serve(kind: str, db: str | None) -> None:
    """Run a server of ``kind`` in this process until terminated."""
    if kind == "ingest":
        import trio_asyncio

        assert db is not None
        trio_asyncio.run(ingest_server, db)
    else:
        trio.run(trivial_server if kind == "trivial" else listener_server, kind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="events a round (part 1)")
    parser.add_argument("--messages", type=int, default=10_000, help="emails a round (part 2)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--lanes", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--skip", choices=("events", "delivery"), help="leave one part out")
    parser.add_argument(
        "--per-email",
        choices=("one", "fates"),
        default="one",
        help="the bench's events: one delivered event an email (the delivery rate), or the"
        " simulator's seeded mix (delivered, opened 30%%, clicked 10%%: 1.4 an email)",
    )
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.db)
        return
    os.environ.setdefault("RESEND_API_KEY", "re_bench")
    proc, url = start_simulator()
    sim = SimControl(url, proc.pid)
    print(
        f"cores={os.cpu_count()} python={sys.version.split()[0]} "
        f"date={datetime.now(UTC):%Y-%m-%d} load={os.getloadavg()[0]:.2f}"
    )
    try:
        if args.skip != "events":
            report_events(args, *events_alone(args, sim))
        if args.skip != "delivery":
            report_deliveries(args, deliveries(args, sim))
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
