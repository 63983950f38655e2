"""How many ``POST /resend/emails`` per second the provider simulator sustains.

The simulator must never be what bounds a benchmark of the daemon (about
2,000 requests/s over ~64 keep-alive connections), so this drives it harder
than the daemon would, with a client that costs little: raw trio sockets,
requests built before the clock starts, responses read by Content-Length.
The simulator runs in its own process; the client can be split over several
processes (``--clients``) when one is not enough to saturate it.

    python bench/simulator_capacity.py [--requests 50000] [--connections 64] [--clients 1]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import attrs
import httpx
import trio

_SRC = Path(__file__).resolve().parents[1] / "src"
_BODY = json.dumps(
    {
        "from": "Bench <bench@example.com>",
        "to": ["guest@example.com"],
        "subject": "Your table is ready",
        "html": "<p>See you at the reception.</p>",
    }
).encode()
_SERVE = (
    "import trio; from ringbearer.simulator import run_simulator; "
    "trio.run(run_simulator, '127.0.0.1', 0, None, 0)"
)


@attrs.frozen
class Share:
    """One client process's part of a run."""

    port: int
    connections: int
    requests: int
    first_key: int
    start_at: float  # time.monotonic(), shared by every process on the host


@attrs.frozen
class ShareResult:
    started: float
    finished: float
    ok: int
    failed: int


@attrs.frozen
class Row:
    connections: int
    requests: int
    seconds: float
    failed: int
    sim_cpu_seconds: float | None  # CPU time the simulator used during the run


def build_request(key: int) -> bytes:
    head = (
        "POST /resend/emails HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        "Authorization: Bearer re_bench\r\n"
        "Content-Type: application/json\r\n"
        f"Idempotency-Key: bench-{key}\r\n"
        f"Content-Length: {len(_BODY)}\r\n\r\n"
    )
    return head.encode() + _BODY


async def _read_response(sock: trio.socket.SocketType, buffer: bytearray) -> int:
    """Read one response off ``sock``; its status. Leftover bytes stay in ``buffer``."""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        buffer += await _receive(sock)
    head = bytes(buffer[:end]).lower()
    start = head.index(b"content-length:") + len(b"content-length:")
    stop = head.find(b"\r\n", start)
    length = int(head[start : stop if stop >= 0 else len(head)])
    while len(buffer) < end + 4 + length:
        buffer += await _receive(sock)
    del buffer[: end + 4 + length]
    return int(head[9:12])


async def _receive(sock: trio.socket.SocketType) -> bytes:
    data = await sock.recv(65536)
    if not data:
        raise ConnectionError("the simulator closed the connection")
    return data


async def _drive(port: int, requests: list[bytes], counts: list[int]) -> None:
    sock = trio.socket.socket()
    with sock:
        await sock.connect(("127.0.0.1", port))
        buffer = bytearray()
        for request in requests:
            await sock.send(request)
            status = await _read_response(sock, buffer)
            counts[0 if status == 200 else 1] += 1


async def _run_share(share: Share) -> ShareResult:
    per_connection = [
        [build_request(share.first_key + i) for i in range(c, share.requests, share.connections)]
        for c in range(share.connections)
    ]
    counts = [0, 0]
    await trio.sleep(max(0.0, share.start_at - time.monotonic()))
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        for requests in per_connection:
            nursery.start_soon(_drive, share.port, requests, counts)
    return ShareResult(started, time.monotonic(), counts[0], counts[1])


def run_share(share: Share) -> ShareResult:
    """Entry point of one client process."""
    return trio.run(_run_share, share)


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None  # not Linux: leave the column empty
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    port: int, pid: int, connections: int, requests: int, clients: int, first_key: int
) -> Row:
    clients = max(1, min(clients, connections))
    start_at = time.monotonic() + 1.0  # time for every client process to build its requests
    shares = [
        Share(
            port,
            len(range(c, connections, clients)),
            len(range(c, requests, clients)),
            first_key + c * requests,
            start_at,
        )
        for c in range(clients)
    ]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(clients, mp_context=context) as pool:
        cpu_before = _cpu_seconds(pid)
        results = list(pool.map(run_share, shares))
        cpu_after = _cpu_seconds(pid)
    started = min(r.started for r in results)
    seconds = max(r.finished for r in results) - started
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    failed = sum(r.failed for r in results)
    return Row(connections, requests, seconds, failed, cpu)


def start_simulator() -> tuple[subprocess.Popen[str], int]:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(_SRC), os.environ.get("PYTHONPATH", "")])
    )
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE], stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("simulator listening on http://"):
        process.kill()
        raise SystemExit(f"the simulator did not start: {line!r}")
    return process, int(line.split()[3].rsplit(":", 1)[1])


def print_table(rows: list[Row]) -> None:
    # "sim cpu" is the share of one core the simulator used: near 100% means
    # it, not the client, set the pace. "sim us/req" is its CPU time per
    # request, which holds steadier than the rate on a busy machine.
    print(
        f"{'connections':>11} {'requests':>9} {'seconds':>8} {'requests/s':>11} "
        f"{'failed':>6} {'sim cpu':>7} {'sim us/req':>10}"
    )
    for row in rows:
        share = per_request = "-"
        if row.sim_cpu_seconds is not None:
            share = f"{row.sim_cpu_seconds / row.seconds:.0%}"
            per_request = f"{row.sim_cpu_seconds / row.requests * 1e6:.0f}"
        print(
            f"{row.connections:>11} {row.requests:>9} {row.seconds:>8.2f} "
            f"{row.requests / row.seconds:>11,.0f} {row.failed:>6} {share:>7} {per_request:>10}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    args = parser.parse_args()
    process, port = start_simulator()
    try:
        rows = [
            measure(port, process.pid, args.connections, args.requests, args.clients, 0),
            measure(port, process.pid, 1, args.requests, 1, 10 * args.requests),
        ]
        stats = httpx.get(f"http://127.0.0.1:{port}/_sim/stats?provider=resend").json()
    finally:
        process.terminate()
        process.wait()
    print(
        f"simulator: POST /resend/emails, {os.cpu_count()} CPUs, "
        f"{args.clients} client process(es) for the multi-connection run"
    )
    print_table(rows)
    resend = stats["resend"]
    print(f"simulator stats: {resend['accepted']} accepted, {resend['unique_keys']} unique keys")


if __name__ == "__main__":
    main()
