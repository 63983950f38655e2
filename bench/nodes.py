"""Several daemons on one PostgreSQL: delivered/s for 1, 2 and 3 nodes with a slow provider
(lanes the limit), and one node on PostgreSQL against one on SQLite with a fast provider.

Each run: a fresh database on a throwaway cluster (``tests/pgcluster.py``, fsync on),
``ringbearer simulate`` with Resend answering after ``--latency-ms``, N daemons sharing
the database and a key store (their own state folders, one key-encryption key), Resend
paused on every node, ``--messages`` submitted spread over the nodes,
then Resend resumed everywhere; the rate is resume to the last message delivered in
the database. Each node has ``--lanes`` lanes.

    python bench/nodes.py scale [--messages 6000] [--latency-ms 50] [--lanes 8]
    python bench/nodes.py store [--messages 20000] [--lanes 64]

It prints a table; it does not pass or fail. Targets: N nodes deliver at least 0.9 x N
times one node; one node on PostgreSQL at least 0.8 of one on SQLite.

Lanes must stay the limit: 8 a node by default, so that three nodes (480 deliveries
a second at most) fit the CPU of a small machine that also runs the database, the
simulator and this script; with 16, three nodes on two cores are held by the CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).parent.parent))

from tests.pgcluster import cluster

from throughput import BODY, DaemonProcess, start_simulator


def config(workdir: Path, sim_url: str, lanes: int, url: str | None, node: str) -> Path:
    store = f'url = "{url}"\nnode = "{node}"' if url else ""
    keys = f'[privacy]\nkek = {{ env = "RB_BENCH_KEK" }}\nkeys_url = "{url}_keys"' if url else ""
    path = workdir / "config.toml"
    path.write_text(f"""
[daemon]
state_dir = "{workdir / "state"}"
log_level = "warning"
[store]
synchronous = "full"
{store}
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
{keys}
""")
    return path


@contextmanager
def database(admin_url: str, name: str) -> Iterator[str]:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        for db in (name, f"{name}_keys"):  # the messages', and the nodes' shared key store
            admin.execute(f"DROP DATABASE IF EXISTS {db}")
            admin.execute(f"CREATE DATABASE {db}")
    yield admin_url.rsplit("/", 1)[0] + "/" + name


def delivered_pg(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT COUNT(*) FROM messages WHERE status = 'delivered'").fetchone()
        return int(row[0]) if row else 0


def run(daemons: list[DaemonProcess], messages: int, count: Callable[[], int]) -> float:
    clients = [d.client() for d in daemons]
    try:
        for c in clients:
            c.raw("pause", {"name": "resend"})
        for first in range(0, messages, 500):
            c = clients[(first // 500) % len(clients)]
            batch = [{"target": "resend", "payload": BODY, "key": f"b-{i}"}
                     for i in range(first, min(first + 500, messages))]  # fmt: skip
            c.raw("submit", {"messages": batch})
        began = time.perf_counter()
        for c in clients:
            c.raw("resume", {"name": "resend"})
        while count() < messages:
            time.sleep(0.05)
        return messages / (time.perf_counter() - began)
    finally:
        for c in clients:
            c.close()


def nodes_rate(admin: str, sim: str, n: int, args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory() as folder, database(admin, f"bench{n}") as url:
        daemons = []
        for k in range(n):
            workdir = Path(folder) / f"node{k}"
            workdir.mkdir()
            daemons.append(DaemonProcess(workdir, config(workdir, sim, args.lanes, url, f"n{k}")))
        try:
            return run(daemons, args.messages, lambda: delivered_pg(url))
        finally:
            for d in daemons:
                d.stop()


def sqlite_rate(sim: str, args: argparse.Namespace) -> float:
    import sqlite3

    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        daemon = DaemonProcess(workdir, config(workdir, sim, args.lanes, None, ""))

        def count() -> int:
            with sqlite3.connect(f"file:{daemon.db}?mode=ro", uri=True) as db:
                row = db.execute("SELECT COUNT(*) FROM messages WHERE status = 'delivered'")
                return int(row.fetchone()[0])

        try:
            return run([daemon], args.messages, count)
        finally:
            daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("what", choices=("scale", "store"))
    parser.add_argument("--messages", type=int)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--lanes", type=int)
    args = parser.parse_args()
    os.environ.setdefault("RESEND_API_KEY", "re_bench")
    os.environ.setdefault("RB_BENCH_KEK", "cd" * 32)  # one key-encryption key for every node
    proc, sim = start_simulator()
    try:
        with cluster() as admin:
            if args.what == "scale":
                args.messages, args.lanes = args.messages or 6000, args.lanes or 8
                httpx.post(f"{sim}/_sim/faults", json={"provider": "resend",
                           "latency_ms": args.latency_ms}).raise_for_status()  # fmt: skip
                one = nodes_rate(admin, sim, 1, args)
                print(
                    f"1 node : {one:7.0f} delivered/s  ({args.lanes} lanes, {args.latency_ms:g} ms)"
                )
                for n in (2, 3):
                    rate = nodes_rate(admin, sim, n, args)
                    print(f"{n} nodes: {rate:7.0f} delivered/s  = {rate / one:.2f} x one node"
                          f"  (target >= {0.9 * n:.1f})")  # fmt: skip
            else:
                args.messages, args.lanes = args.messages or 20000, args.lanes or 64
                lite = sqlite_rate(sim, args)
                pg = nodes_rate(admin, sim, 1, args)
                print(f"SQLite    : {lite:7.0f} delivered/s")
                print(
                    f"PostgreSQL: {pg:7.0f} delivered/s = {pg / lite:.2f} x SQLite (target >= 0.8)"
                )
    finally:
        proc.kill()


if __name__ == "__main__":
    main()
