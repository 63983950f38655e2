"""Throughput and latency: the daemon against a bare httpx loop, in one run.

Both deliver to the same simulator process (Resend's endpoint) with the same
number of lanes, each lane with one kept-alive connection of its own:

* bare loops: N tasks POSTing the adapter's request as fast as they can, no
  store, in two forms: through an ``httpx.AsyncClient`` per lane (the plain
  way to use httpx), and straight through an httpx transport per lane (as the
  daemon's lanes send, without the client's auth, redirect and cookie layers);
* daemon: the real ``ringbearer run`` process, messages submitted over the
  control socket while the integration is paused, then resumed; the rate is
  messages / (resume -> the last one delivered and committed).

Then latency at several loads (fractions of the daemon's median rate; half
is the headline figure), each on a fresh daemon: messages offered at that
rate, one message per request, and submit-to-delivered read back from the
store (delivered_at - created_at, both written by the daemon). Beside it,
the bare loop offered the same rate: each request's time from its scheduled
start to its answer, the floor that the daemon's store and actors add to.

    python bench/throughput.py [--messages 20000] [--lanes 64] [--loads 0.25 0.5 0.75]
        [--recipients one|unique]

``--recipients unique`` sends each message to a guest of its own: with
personal data sealed per subject, each is a new subject, a new data key.

A change is measured against another checkout in the same sitting with
``--against PATH`` (a work tree, e.g. ``git worktree add /tmp/before HEAD~1``):
each round then runs this checkout's daemon and PATH's, alternating, on one
simulator, and the ratio of their medians is printed. Only the wire's
submit/pause/resume/wait are used, so the two need not share a protocol version.

It prints a table; it does not pass or fail.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
BODY = {
    "from": "Studio <studio@example.com>",
    "to": ["guest@example.com"],
    "subject": "Timeline update",
    "text": "The first dance is at 19:30.",
}


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ringbearer", "simulate", "--listen", "127.0.0.1:0", "--smtp", ""],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"(http://[\d.]+:\d+)", line)
    if not found:
        proc.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    return proc, found.group(1)


def request_headers() -> dict[str, str]:
    """Resend's request headers, with a fresh idempotency key."""
    return {
        "Authorization": "Bearer re_bench",
        "Content-Type": "application/json",
        "Idempotency-Key": os.urandom(8).hex(),
    }


class BareLane(Protocol):
    """One lane of a bare loop: it posts the adapter's request, then is closed."""

    async def post(self) -> None: ...

    async def aclose(self) -> None: ...


class ClientLane:
    """One lane of the plain baseline: an ``httpx.AsyncClient`` with one connection."""

    def __init__(self, url: str) -> None:
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1), trust_env=False
        )
        self.url = f"{url}/resend/emails"
        self.payload = json.dumps(BODY).encode()

    async def post(self) -> None:
        response = await self.client.post(
            self.url,
            content=self.payload,
            headers=request_headers(),
        )
        assert response.status_code == 200, response.text

    async def aclose(self) -> None:
        await self.client.aclose()


class TransportLane:
    """One lane of the lean baseline: the daemon's request, sent as its lanes send it."""

    def __init__(self, url: str) -> None:
        self.transport = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1), trust_env=False
        )
        self.url = httpx.URL(f"{url}/resend/emails")
        self.payload = json.dumps(BODY).encode()
        self.timeout = httpx.Timeout(10.0).as_dict()

    async def post(self) -> None:
        request = httpx.Request(
            "POST",
            self.url,
            content=self.payload,
            headers=request_headers(),
            extensions={"timeout": self.timeout},
        )
        response = await self.transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        assert response.status_code == 200, response.text

    async def aclose(self) -> None:
        await self.transport.aclose()


BARE: dict[str, Callable[[str], BareLane]] = {"client": ClientLane, "transport": TransportLane}


async def bare_loop(url: str, lanes: int, total: int, via: str = "transport") -> float:
    """The baseline: the same requests, the same lanes, no store, no actors."""
    remaining = total

    async def lane() -> None:
        nonlocal remaining
        bare = BARE[via](url)
        try:
            while remaining > 0:
                remaining -= 1
                await bare.post()
        finally:
            await bare.aclose()

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(lanes):
            nursery.start_soon(lane)
    return total / (time.perf_counter() - start)


async def bare_latency(url: str, lanes: int, rate: float, seconds: float) -> dict[str, float]:
    """The bare loop offered ``rate`` requests a second: scheduled start to answer."""
    count = int(rate * seconds)
    latencies: list[float] = []
    send, receive = trio.open_memory_channel[TransportLane](lanes)
    pool = [TransportLane(url) for _ in range(lanes)]
    for bare in pool:
        send.send_nowait(bare)

    async def one(due: float) -> None:
        bare = await receive.receive()
        try:
            await bare.post()
            latencies.append(trio.current_time() - due)
        finally:
            send.send_nowait(bare)

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for i in range(count):
            due = start + i / rate
            await trio.sleep_until(due)
            nursery.start_soon(one, due)
    for bare in pool:
        await bare.aclose()
    return _summary(rate, count / (trio.current_time() - start), latencies)


def _summary(offered: float, achieved: float, latencies: list[float]) -> dict[str, float]:
    latencies = sorted(latencies)
    return {
        "offered_per_s": offered,
        "achieved_per_s": achieved,
        "count": len(latencies),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "max_ms": 1000 * latencies[-1],
    }


def daemon_config(workdir: Path, sim_url: str, lanes: int) -> Path:
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
[integrations.resend]
kind = "resend"
api_key = {{ env = "RESEND_API_KEY" }}
lanes = {lanes}
mailbox = {lanes * 2}
""")
    return config


class DaemonProcess:
    def __init__(self, workdir: Path, config: Path, src: Path | None = None) -> None:
        notify = workdir / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(notify))
        self.notify.settimeout(60)
        env = {**os.environ, "NOTIFY_SOCKET": str(notify)}
        if src is not None:  # another checkout's daemon (its src/ first on the path)
            env["PYTHONPATH"] = str(src / "src")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ringbearer", "run", "-c", str(config)],
            env=env,
            stderr=(workdir / "daemon.log").open("wb"),
        )
        while b"READY=1" not in self.notify.recv(4096):
            pass
        self.socket = workdir / "state" / "ringbearer.sock"
        self.db = workdir / "state" / "ringbearer.db"

    def client(self) -> Any:
        from ringbearer.control import Client

        return Client(self.socket, timeout=600)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.notify.close()


RECIPIENTS = {"one": False, "unique": True}
_unique = False  # --recipients unique: each message to its own guest (its own data subject)


def message(i: int) -> dict[str, Any]:
    if not _unique:
        return {"target": "resend", "payload": BODY, "key": f"bench-{i}"}
    payload = {**BODY, "to": [f"guest{i}@example.com"]}
    return {"target": "resend", "payload": payload, "key": f"bench-{i}"}


def daemon_throughput(daemon: DaemonProcess, total: int) -> tuple[float, float]:
    with daemon.client() as client:
        client.raw("pause", {"name": "resend"})
        start = time.perf_counter()
        for first in range(0, total, 1000):
            client.raw("submit", {"messages": [message(i) for i in range(first, first + 1000)]})
        submit_rate = total / (time.perf_counter() - start)
        start = time.perf_counter()
        client.raw("resume", {"name": "resend"})
        result = client.raw("wait", {"timeout": 600})
        elapsed = time.perf_counter() - start
    assert result["idle"], result
    return total / elapsed, submit_rate


async def _paced_submits(path: Path, rate: float, count: int, connections: int) -> float:
    """Submit ``count`` messages, one a request, at ``rate`` over several connections."""
    interval = 1.0 / rate
    start = trio.current_time()

    async def worker(k: int) -> None:
        stream = await trio.open_unix_socket(str(path))
        buffer = b""
        async with stream:
            for i in range(k, count, connections):
                await trio.sleep_until(start + i * interval)
                request = {
                    "id": i,
                    "cmd": "submit",
                    "args": {"messages": [message(10_000_000 + i)]},
                }
                await stream.send_all(json.dumps(request).encode() + b"\n")
                while b"\n" not in buffer:
                    buffer += await stream.receive_some(65536)
                line, _, buffer = buffer.partition(b"\n")
                assert json.loads(line)["ok"], line

    async with trio.open_nursery() as nursery:
        for k in range(connections):
            nursery.start_soon(worker, k)
    return count / (trio.current_time() - start)


def daemon_latency(daemon: DaemonProcess, rate: float, seconds: float) -> dict[str, float]:
    """Offer ``rate`` messages a second; read submit-to-delivered back from the store."""
    count = int(rate * seconds)
    db = sqlite3.connect(daemon.db)
    (first_id,) = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM messages").fetchone()
    achieved = trio.run(_paced_submits, daemon.socket, rate, count, 16)
    with daemon.client() as client:
        client.raw("wait", {"timeout": 600})
    rows = db.execute(
        "SELECT delivered_at - created_at FROM messages WHERE id >= ? AND status = 'delivered'",
        (first_id,),
    ).fetchall()
    db.close()
    return _summary(rate, achieved, [r[0] for r in rows])


def reset(url: str) -> None:
    """Start each phase on an empty simulator: its key tables grow with every request."""
    httpx.post(f"{url}/_sim/reset").raise_for_status()


def daemon_round(
    url: str, lanes: int, messages: int, src: Path | None = None
) -> tuple[float, float]:
    """One throughput run on a fresh daemon (fresh state folder)."""
    with tempfile.TemporaryDirectory(prefix="rb-bench-") as tmp:
        workdir = Path(tmp)
        daemon = DaemonProcess(workdir, daemon_config(workdir, url, lanes), src)
        try:
            return daemon_throughput(daemon, messages)
        finally:
            daemon.stop()


def latency_round(url: str, lanes: int, rate: float, seconds: float) -> dict[str, float]:
    """Latency on a fresh daemon, offered ``rate`` messages a second."""
    with tempfile.TemporaryDirectory(prefix="rb-bench-") as tmp:
        workdir = Path(tmp)
        daemon = DaemonProcess(workdir, daemon_config(workdir, url, lanes))
        try:
            return daemon_latency(daemon, rate, seconds)
        finally:
            daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--lanes", type=int, default=64)
    parser.add_argument(
        "--rounds", type=int, default=3, help="bare and daemon runs alternate; medians are compared"
    )
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument(
        "--against",
        type=Path,
        metavar="PATH",
        help="also run PATH's daemon each round, alternating, and compare (skips the bare loops)",
    )
    parser.add_argument(
        "--loads",
        type=float,
        nargs="*",
        default=[0.25, 0.5, 0.75],
        help="latency runs at these fractions of the daemon's median rate (none: skip)",
    )
    parser.add_argument(
        "--recipients",
        choices=sorted(RECIPIENTS),
        default="one",
        help="every message to one guest, or each to its own (a new data subject each)",
    )
    args = parser.parse_args()
    global _unique
    _unique = RECIPIENTS[args.recipients]
    os.environ.setdefault("RESEND_API_KEY", "re_bench")
    if args.against is not None:
        compare(args)
        return
    sim, url = start_simulator()
    bare: dict[str, list[float]] = {via: [] for via in BARE}
    daemon: list[float] = []
    submits: list[float] = []
    latencies: list[tuple[float, dict[str, float], dict[str, float]]] = []
    try:
        for _ in range(args.rounds):
            reset(url)
            for via, rates in bare.items():
                rates.append(trio.run(bare_loop, url, args.lanes, args.messages, via))
                reset(url)
            reset(url)
            rate, submit_rate = daemon_round(url, args.lanes, args.messages)
            daemon.append(rate)
            submits.append(submit_rate)
        for load in args.loads:
            rate = load * statistics.median(daemon)
            reset(url)
            floor = trio.run(bare_latency, url, args.lanes, rate, args.latency_seconds)
            reset(url)
            latencies.append(
                (load, floor, latency_round(url, args.lanes, rate, args.latency_seconds))
            )
    finally:
        sim.terminate()
        sim.wait(10)
    report(args, bare, daemon, submits, latencies)


def compare(args: argparse.Namespace) -> None:
    """This checkout's daemon against ``args.against``'s, alternating rounds on one simulator."""
    sim, url = start_simulator()
    rates: dict[str, list[float]] = {"this": [], "other": []}
    submits: dict[str, list[float]] = {"this": [], "other": []}
    try:
        for n in range(args.rounds):
            order = ("this", "other") if n % 2 == 0 else ("other", "this")
            for which in order:
                reset(url)
                src = None if which == "this" else args.against
                rate, submit_rate = daemon_round(url, args.lanes, args.messages, src)
                rates[which].append(rate)
                submits[which].append(submit_rate)
    finally:
        sim.terminate()
        sim.wait(10)
    print(
        f"messages={args.messages} lanes={args.lanes} rounds={args.rounds} "
        f"recipients={args.recipients}"
    )
    for what, found in (("deliver", rates), ("submit", submits)):
        for which, label in (("other", f"{args.against}"), ("this", "this checkout")):
            runs = " ".join(f"{v:.0f}" for v in found[which])
            print(f"{what + ': ' + label:<48}{statistics.median(found[which]):>10.0f}/s   {runs}")
        ratio = statistics.median(found["this"]) / statistics.median(found["other"])
        print(f"{what + ': ratio this / other (medians)':<48}{ratio:>10.2f}")


def report(
    args: argparse.Namespace,
    bare: dict[str, list[float]],
    daemon: list[float],
    submits: list[float],
    latencies: list[tuple[float, dict[str, float], dict[str, float]]],
) -> None:
    def runs(values: list[float]) -> str:
        return " ".join(f"{v:.0f}" for v in values)

    print(
        f"messages={args.messages} lanes={args.lanes} rounds={args.rounds} "
        f"cores={os.cpu_count()} python={sys.version.split()[0]}"
    )
    print(f"{'':<34}{'median/s':>10}   runs")
    names = {
        "client": "bare loop, AsyncClient per lane",
        "transport": "bare loop, transport per lane",
    }
    for via, rates in bare.items():
        print(f"{names[via]:<34}{statistics.median(rates):>10.0f}   {runs(rates)}")
    print(
        f"{'daemon: submit (1000 a request)':<34}{statistics.median(submits):>10.0f}   "
        f"{runs(submits)}"
    )
    print(
        f"{'daemon: deliver (store, actors)':<34}{statistics.median(daemon):>10.0f}   "
        f"{runs(daemon)}"
    )
    for via, rates in bare.items():
        ratio = statistics.median(daemon) / statistics.median(rates)
        print(f"{'ratio daemon / ' + names[via]:<50}{ratio:>6.2f}")
    if not latencies:
        return
    print()
    print(
        f"latency at fractions of the daemon's median rate, one message per request, "
        f"{args.latency_seconds:g} s each (bare: scheduled start to answer; "
        "daemon: submit to delivered)"
    )
    print(
        f"{'load':>5}{'offered/s':>11}{'achieved/s':>12}{'messages':>10}"
        f"{'bare p50':>10}{'bare p99':>10}{'daemon p50':>12}{'daemon p99':>12}{'max':>9}"
    )
    for load, floor, lat in latencies:
        print(
            f"{load:>5.2f}{lat['offered_per_s']:>11.0f}{lat['achieved_per_s']:>12.0f}"
            f"{lat['count']:>10}{floor['p50_ms']:>8.1f}ms{floor['p99_ms']:>8.1f}ms"
            f"{lat['p50_ms']:>10.1f}ms{lat['p99_ms']:>10.1f}ms{lat['max_ms']:>7.1f}ms"
        )


if __name__ == "__main__":
    main()
