"""Lanes, not CPU, as the limit: the daemon against a bare httpx loop with a slow provider.

The simulator's Resend answers after ``latency_ms`` (default 50 ms), so N
lanes can deliver at most N / 0.05 s a second. For each lane count: the bare
loop's rate, the daemon's rate (submitted while paused, then resumed), and
submit-to-delivered at half the daemon's rate on a fresh daemon (helpers
from ``bench/throughput.py``).

    python bench/latency.py [--messages 2000] [--lanes 16 64] [--latency-ms 50]

It prints a table; it does not pass or fail.
"""

from __future__ import annotations

import argparse
import os
import sys

import httpx
import trio

from throughput import bare_loop, daemon_round, latency_round, reset, start_simulator


def slow(url: str, latency_ms: float) -> None:
    reset(url)
    httpx.post(
        f"{url}/_sim/faults", json={"provider": "resend", "latency_ms": latency_ms}
    ).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--lanes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--latency-seconds", type=float, default=8.0)
    args = parser.parse_args()
    os.environ.setdefault("RESEND_API_KEY", "re_bench")
    sim, url = start_simulator()
    rows = []
    try:
        for lanes in args.lanes:
            slow(url, args.latency_ms)
            bare = trio.run(bare_loop, url, lanes, args.messages)
            slow(url, args.latency_ms)
            daemon, _ = daemon_round(url, lanes, args.messages)
            slow(url, args.latency_ms)
            latency = latency_round(url, lanes, daemon / 2, args.latency_seconds)
            rows.append((lanes, bare, daemon, latency))
    finally:
        sim.terminate()
        sim.wait(10)

    print(
        f"messages={args.messages} latency_ms={args.latency_ms:g} "
        f"latency_seconds={args.latency_seconds:g} cores={os.cpu_count()} "
        f"python={sys.version.split()[0]}"
    )
    print(
        f"{'lanes':>5}{'ideal/s':>9}{'bare/s':>8}{'daemon/s':>10}{'bare/ideal':>12}"
        f"{'daemon/ideal':>14}{'daemon/bare':>13}   latency at half the daemon's rate"
    )
    for lanes, bare, daemon, lat in rows:
        ideal = lanes / (args.latency_ms / 1000)
        print(
            f"{lanes:>5}{ideal:>9.0f}{bare:>8.0f}{daemon:>10.0f}{bare / ideal:>12.2f}"
            f"{daemon / ideal:>14.2f}{daemon / bare:>13.2f}   "
            f"{lat['achieved_per_s']:.0f}/s x {lat['count']}: p50 {lat['p50_ms']:.1f} ms"
            f"  p99 {lat['p99_ms']:.1f} ms  max {lat['max_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()
