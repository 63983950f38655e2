"""Growth through the real daemon: events ingested per second over the control socket,
``growth --json`` time at N events, and the restart's replay.

Starts ``ringbearer run`` (embedded SQLite, ``synchronous = full``, the privacy vault on:
every sign-up's and vendor's address gets its key, every event's people are kept by
subject id, vendor names sealed) with no provider traffic: the opportunity rules are
switched off unless ``--rules``, so what is measured is the intake of growth events.
The events are ``bench/growth.py``'s synthetic mix (a tenth sign-ups, half with an
address; half invites; a quarter acceptances; the rest bookings), sent as
``growth-record`` requests of ``--batch`` events, one after another on each of
``--connections`` connections (one: as ``ringbearer growth record`` does).

    python bench/growth_daemon.py [--events 1000000] [--batch 1000] [--rules]

Then ``ringbearer growth --json`` (the CLI, a new process each time) is timed five
times for each view, and the daemon is restarted to time reading the events back.
It prints a table; it does not pass or fail. Targets: ingest at least 20,000
events/s, ``growth --json`` under 1 s at 1,000,000 events.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from growth import synthetic
from ringbearer.growth._events import Signup, event_json
from throughput import DaemonProcess

RULES_OFF = """
[growth.opportunities]
vendor_invite = { enabled = false, template = "vendor_invite", category = "invites" }
referral_ask = { enabled = false, template = "referral_ask", category = "marketing" }
"""


def config(workdir: Path, rules: bool) -> Path:
    path = workdir / "config.toml"
    path.write_text(f"""
[daemon]
state_dir = "{workdir / "state"}"
log_level = "warning"
[store]
synchronous = "full"
[metrics]
enabled = false
[sandbox]
enabled = true
[integrations.resend]
kind = "resend"
api_key = {{ env = "RESEND_API_KEY" }}
[groups]
email = ["resend"]
{"" if rules else RULES_OFF}
""")
    return path


def wire_events(total: int, seed: int) -> list[dict[str, Any]]:
    """The synthetic events as JSON objects; every other sign-up gives an address."""
    out = []
    for event in synthetic(total, seed):
        body = event_json(event)
        if isinstance(event, Signup) and hash(event.user) % 2 == 0:
            body["email"] = f"{event.user}@example.com"
        out.append(body)
    return out


def ingest(
    daemon: DaemonProcess, events: list[dict[str, Any]], batch: int, connections: int
) -> float:
    """Events per second, ``connections`` producers each sending every n-th batch."""
    from concurrent.futures import ThreadPoolExecutor

    batches = [events[first : first + batch] for first in range(0, len(events), batch)]

    def producer(k: int) -> None:
        with daemon.client() as client:
            for chunk in batches[k::connections]:
                client.raw("growth-record", {"events": chunk})

    began = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(producer, range(connections)))
    return len(events) / (time.perf_counter() - began)


def report_times(daemon: DaemonProcess, rounds: int = 5) -> dict[str, float]:
    medians = {}
    for by in ("signup_month", "wedding_month", "role", "vendor_type"):
        times = []
        for _ in range(rounds):
            began = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "ringbearer", "growth", "--json", "--by", by,
                 "--socket", str(daemon.socket)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            times.append(time.perf_counter() - began)
            assert done.stdout.startswith("{")
        medians[by] = statistics.median(times)
    return medians


def read_back(daemon: DaemonProcess) -> float:
    """When the restarted daemon answers ``growth`` (it is BUSY while reading back)."""
    from ringbearer._errors import RequestError

    with daemon.client() as client:
        while True:
            try:
                client.raw("growth", {"by": "role"})
                return time.perf_counter()
            except RequestError:
                time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--connections", type=int, default=1, help="producers at once")
    parser.add_argument("--rules", action="store_true", help="opportunity rules on")
    args = parser.parse_args()
    events = wire_events(args.events, args.seed)
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        path = config(workdir, args.rules)
        daemon = DaemonProcess(workdir, path)
        try:
            rate = ingest(daemon, events, args.batch, args.connections)
            print(
                f"ingest: {len(events):,} events in batches of {args.batch} over"
                f" {args.connections} connection(s): {rate:,.0f}/s  (target >= 20,000/s)"
            )
            for by, took in report_times(daemon).items():
                print(f"growth --json --by {by:<14} {1000 * took:7.0f} ms  (target < 1000 ms)")
        finally:
            daemon.stop()
        (workdir / "notify.sock").unlink()
        began = time.perf_counter()
        daemon = DaemonProcess(workdir, path)
        ready = time.perf_counter() - began
        current = read_back(daemon) - began
        print(f"restart: ready in {ready:.1f} s; figures current (all {len(events):,} events"
              f" read back) in {current:.1f} s")  # fmt: skip
        daemon.stop()


if __name__ == "__main__":
    main()
