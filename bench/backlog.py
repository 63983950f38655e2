"""A large backlog: start-up time, memory, and drain rate of the real daemon.

1. A state folder is filled with ``--messages`` queued messages to the
   ``email`` group, written straight through the store (``SqliteStore.submit``
   in batches, ``synchronous = "normal"``), and the group is paused in the
   ``controls`` table, as ``ringbearer pause email`` would leave it.
2. The real ``ringbearer run`` process starts on that folder (the shipped
   config, pointed at an external ``ringbearer simulate``); start-up is timed
   from the process start to ``READY=1`` on its notify socket, and its RSS
   (VmRSS, VmHWM) is read from ``/proc`` once ready.
3. The group is resumed and drains for ``--drain-seconds`` (until idle with
   ``0``, or when the backlog runs out first); the rate, the RSS after
   draining and a projected time to drain the whole backlog are reported.

    python bench/backlog.py [--messages 1000000] [--drain-seconds 60]

It prints a table; it does not pass or fail.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
import trio_asyncio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import procs  # noqa: E402
from tests.procs import Daemon, Simulator, config_for, email  # noqa: E402

from ringbearer.store import NewMessage, SqliteStore  # noqa: E402

BATCH = 10_000
GROUP = "email"
RSS_TARGET_MB = 200.0
STARTUP_TARGET_S = 5.0
procs.START_TIMEOUT = 600.0  # a slow start is a result to report, not an error


async def _fill(db: Path, total: int) -> None:
    async with (
        trio_asyncio.open_loop(),
        SqliteStore.open(db, clock=time.time, synchronous="normal") as store,
    ):
        for first in range(0, total, BATCH):
            numbers = range(first, min(first + BATCH, total))
            await store.submit([NewMessage(GROUP, email(n)["payload"]) for n in numbers])
        await store.set_paused(GROUP, True)


def build(db: Path, total: int) -> float:
    """Write the backlog and the pause; return the seconds it took."""
    start = time.perf_counter()
    trio.run(_fill, db, total)
    return time.perf_counter() - start


def database_mb(db: Path) -> float:
    """The database with its WAL and shared-memory files, as it lies on disk."""
    files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    return sum(f.stat().st_size for f in files if f.exists()) / 1e6


def memory_mb(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (the peak RSS) of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return int(fields["VmRSS"][0]) / 1024, int(fields["VmHWM"][0]) / 1024


def statuses(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT status, COUNT(*) FROM messages GROUP BY status").fetchall()
    finally:
        conn.close()
    return dict(rows)


def drain(daemon: Daemon, total: int, seconds: float) -> dict[str, float]:
    """Resume the group; wait ``seconds`` (or until idle); report what went out."""
    wait = seconds if seconds > 0 else 24 * 3600.0
    start = time.perf_counter()
    daemon.call("resume", {"name": GROUP})
    result = daemon.call("wait", {"timeout": wait}, timeout=wait + 60)
    elapsed = time.perf_counter() - start
    assert daemon.proc is not None
    rss, peak = memory_mb(daemon.proc.pid)
    drained = total - result["queued"]
    return {
        "idle": float(result["idle"]),
        "elapsed": elapsed,
        "drained": drained,
        "rate": drained / elapsed,
        "rss": rss,
        "peak": peak,
    }


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    db = workdir / "state" / "ringbearer.db"
    figures: dict[str, Any] = {"build_s": build(db, args.messages), "db_mb": database_mb(db)}
    sim = Simulator(workdir / "simulator.log")
    try:
        daemon = Daemon(workdir, config_for(workdir, sim))
        start = time.perf_counter()
        daemon.start()
        figures["startup_s"] = time.perf_counter() - start
        assert daemon.proc is not None
        figures["ready_rss"], figures["ready_peak"] = memory_mb(daemon.proc.pid)
        try:
            figures.update(drain(daemon, args.messages, args.drain_seconds))
        finally:
            code = daemon.stop()
            assert code == 0, f"daemon exited {code}:\n{daemon.log_text()[-4000:]}"
    finally:
        sim.stop()
    figures["statuses"] = statuses(db)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument(
        "--drain-seconds", type=float, default=60.0, help="0: drain until idle, however long"
    )
    parser.add_argument("--keep", action="store_true", help="keep the state folder and logs")
    args = parser.parse_args()
    wall = time.perf_counter()
    if args.keep:
        workdir = Path(tempfile.mkdtemp(prefix="rb-backlog-"))
        figures = run(args, workdir)
        print(f"kept {workdir}")
    else:
        with tempfile.TemporaryDirectory(prefix="rb-backlog-") as tmp:
            figures = run(args, Path(tmp))
    report(args, figures, time.perf_counter() - wall)


def report(args: argparse.Namespace, f: dict[str, Any], wall: float) -> None:
    total = args.messages
    idle = bool(f["idle"])
    print(
        f"messages={total} drain_seconds={args.drain_seconds:g} cores={os.cpu_count()} "
        f"python={sys.version.split()[0]} wall={wall:.0f} s"
    )
    rows = [
        ("messages queued (email group)", f"{total}", ""),
        ("build time (store.submit, 10k a batch)", f"{f['build_s']:.1f} s", ""),
        ("database on disk", f"{f['db_mb']:.0f} MB", ""),
        ("start-up, process start to READY=1", f"{f['startup_s']:.2f} s", "< 5 s"),
        ("RSS at ready (peak)", f"{f['ready_rss']:.0f} MB ({f['ready_peak']:.0f})", "< 200 MB"),
        ("RSS after draining (peak)", f"{f['rss']:.0f} MB ({f['peak']:.0f})", "< 200 MB"),
        (f"delivered in {f['elapsed']:.1f} s", f"{f['drained']:.0f}", ""),
        ("drain rate", f"{f['rate']:.0f}/s", ""),
    ]
    if idle:
        rows.append(("full drain (measured)", f"{f['elapsed']:.1f} s", ""))
    else:
        projected = total / f["rate"] if f["rate"] else float("inf")
        rows.append(("full drain (projected at that rate)", f"{projected / 60:.0f} min", ""))
    print(f"{'':<42}{'measured':>16}   target")
    for name, value, target in rows:
        print(f"{name:<42}{value:>16}   {target}")
    print(f"statuses after stop: {f['statuses']}")
    verdicts = [
        ("start-up", f["startup_s"] < STARTUP_TARGET_S),
        ("RSS", max(f["ready_peak"], f["peak"]) < RSS_TARGET_MB),
    ]
    print("  ".join(f"{name}: {'met' if ok else 'not met'}" for name, ok in verdicts))


if __name__ == "__main__":
    main()
