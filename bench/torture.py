"""Crash torture: kill -9 the daemon again and again mid-run; nothing acknowledged is lost.

One simulator (``ringbearer simulate``) and one state folder for the whole run,
with the shipped config pointed at the simulator. Each round starts the daemon,
submits messages to the ``email`` group in small batches from a client thread
(every acknowledged key is recorded), and after a seeded random delay, while
submits and deliveries are in flight, SIGKILLs it. The keys ``inflight`` in the
database are noted just before the kill and again from the files it left.

After the last round the daemon starts once more and runs until idle; then
every acknowledged message must be ``delivered`` in the store and seen at least
once by the simulator (Resend, Mailgun, or SMTP by its ``Message-ID``, which is
derived from the idempotency key). A key the simulator saw more than once must
have been at risk at some kill (in flight, or — with ``--power-cut`` — not yet
delivered in the copy the daemon was rolled back to).

``--power-cut``: at a random moment the daemon is frozen (SIGSTOP) just long
enough to copy ``ringbearer.db``, ``-wal`` and ``-shm`` as one instant, then
resumes; later it is SIGKILLed and the round continues from the copy. Only keys
acknowledged before the copy count; later ones are legitimately absent.
The copy holds what the kernel had, fsynced or not, so it is a process crash
frozen in time, not a lost page cache: what it proves is that rolling the files
back to any instant loses nothing acknowledged before it.

Run from the repo root; it imports ``tests.procs`` (the repo root is put on
``sys.path``):

    python bench/torture.py [--rounds 50] [--messages-per-round 200] [--seed N]
                            [--power-cut]

It prints a table (and a ``LOST: N`` line if anything is lost); it always exits 0.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import attrs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.procs import Daemon, Simulator, config_for, email  # noqa: E402

from ringbearer import ControlError  # noqa: E402
from ringbearer.integrations._smtp import message_id  # noqa: E402

DB_FILES = ("ringbearer.db", "ringbearer.db-wal", "ringbearer.db-shm")
BATCH = 10
# Restarted attempts wait for a retry; a short first wait keeps each round short.
EXTRA = "\n[integrations.resend.retry]\ninitial_seconds = 0.2\n"


@attrs.define
class Tally:
    """What the rounds did: every acknowledged key, and every key at risk at a kill."""

    acked: set[str] = attrs.Factory(set)
    at_risk: set[str] = attrs.Factory(set)
    kills: int = 0
    acked_after_copy: int = 0


def read_keys(db: Path, where: str) -> set[str]:
    """Keys matching ``where``, read-only; an unreadable file counts as no keys."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute(f"SELECT idempotency_key FROM messages WHERE {where}").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        print(f"  (could not read {db.name}: {exc})", file=sys.stderr)
        return set()
    return {row[0] for row in rows}


class Submitter(threading.Thread):
    """Submits ``count`` messages in batches until done or the daemon dies."""

    def __init__(self, daemon: Daemon, first: int, count: int) -> None:
        super().__init__(daemon=True)
        self.daemon_proc, self.first, self.count = daemon, first, count
        self.acked: list[tuple[float, str]] = []  # (monotonic time of the ack, key)
        self.lock = threading.Lock()

    def run(self) -> None:
        try:
            with self.daemon_proc.client(timeout=30) as client:
                for start in range(self.first, self.first + self.count, BATCH):
                    end = min(start + BATCH, self.first + self.count)
                    result = client.raw(
                        "submit", {"messages": [email(i) for i in range(start, end)]}
                    )
                    now = time.monotonic()
                    with self.lock:
                        self.acked += [(now, a["key"]) for a in result["accepted"]]
        except ControlError:  # the kill cuts a submit short; that one is unacknowledged
            pass

    def keys(self, before: float = float("inf")) -> set[str]:
        with self.lock:
            return {key for at, key in self.acked if at < before}


def power_cut_copy(daemon: Daemon, state: Path, copy: Path) -> float:
    """Copy the database files as one instant (daemon frozen meanwhile); return the instant."""
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGSTOP)
    try:
        taken = time.monotonic()
        for name in DB_FILES:
            (copy / name).unlink(missing_ok=True)
            if (state / name).exists():
                shutil.copy2(state / name, copy / name)
    finally:
        daemon.proc.send_signal(signal.SIGCONT)
    return taken


def restore(state: Path, copy: Path) -> None:
    for name in DB_FILES:
        (state / name).unlink(missing_ok=True)
        if (copy / name).exists():
            shutil.copy2(copy / name, state / name)


def one_round(
    workdir: Path, text: str, n: int, args: argparse.Namespace, rng: random.Random, tally: Tally
) -> None:
    state, db = workdir / "state", workdir / "state" / "ringbearer.db"
    daemon = Daemon(workdir, text).start()
    submitter = Submitter(daemon, n * args.messages_per_round, args.messages_per_round)
    submitter.start()
    delay = rng.uniform(0.05, 1.5)
    copied_at = float("inf")
    if args.power_cut:
        time.sleep(rng.uniform(0, delay))
        copied_at = power_cut_copy(daemon, state, workdir / "copy")
        delay -= time.monotonic() - copied_at
    time.sleep(max(delay, 0))
    in_flight = read_keys(db, "status = 'inflight'")
    daemon.kill9()
    tally.kills += 1
    submitter.join(30)
    in_flight |= read_keys(db, "status = 'inflight'")
    tally.at_risk |= in_flight
    acked = submitter.keys()
    if args.power_cut:
        restore(state, workdir / "copy")
        # Anything not delivered in the copy may go again, even if it went after the copy.
        tally.at_risk |= read_keys(db, "status != 'delivered'")
        kept = submitter.keys(before=copied_at)
        tally.acked_after_copy += len(acked - kept)
        acked = kept
    tally.acked |= acked


def final_accounting(workdir: Path, text: str, sim: Simulator, tally: Tally) -> dict[str, Any]:
    daemon = Daemon(workdir, text).start()
    try:
        daemon.wait_idle(300)
    finally:
        daemon.stop()
    conn = sqlite3.connect(f"file:{workdir / 'state' / 'ringbearer.db'}?mode=ro", uri=True)
    status = dict(conn.execute("SELECT idempotency_key, status FROM messages").fetchall())
    conn.close()
    seen = sim.http.get("/_sim/keys").json()
    counts: dict[str, int] = {}
    for provider in ("resend", "mailgun"):
        for key, n in seen.get(provider, {}).items():
            counts[key] = counts.get(key, 0) + n
    smtp = seen.get("smtp", {})
    for key in status:  # SMTP knows a message by its Message-ID, derived from the key
        counts[key] = counts.get(key, 0) + smtp.get(message_id(key), 0)
    not_delivered = {k for k in tally.acked if status.get(k) != "delivered"}
    unseen = {k for k in tally.acked if counts.get(k, 0) == 0}
    twice = {k for k, n in counts.items() if n > 1}
    return {
        "delivered": sum(1 for k in tally.acked if status.get(k) == "delivered"),
        "not_delivered": not_delivered,
        "unseen": unseen,
        "lost": not_delivered | unseen,
        "twice": twice,
        "twice_at_risk": twice & tally.at_risk,
        "smtp": sum(smtp.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--messages-per-round", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--power-cut",
        action="store_true",
        help="roll the database files back to a copy taken mid-round before each restart",
    )
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng, tally = random.Random(seed), Tally()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rb-torture-") as tmp:
        workdir = Path(tmp)
        (workdir / "copy").mkdir()
        sim = Simulator(workdir / "simulator.log")
        try:
            text = config_for(workdir, sim, extra=EXTRA)
            for n in range(args.rounds):
                one_round(workdir, text, n, args, rng, tally)
            result = final_accounting(workdir, text, sim, tally)
        finally:
            sim.stop()
    report(args, seed, tally, result, time.perf_counter() - start)


def report(
    args: argparse.Namespace, seed: int, tally: Tally, result: dict[str, Any], elapsed: float
) -> None:
    mode = "power cut (files rolled back to a mid-round copy)" if args.power_cut else "kill -9"
    print(
        f"mode={mode} rounds={args.rounds} messages-per-round={args.messages_per_round} "
        f"batch={BATCH} seed={seed}"
    )
    rows: list[tuple[str, object]] = [
        ("rounds", args.rounds),
        ("kills", tally.kills),
        ("keys at risk at a kill", len(tally.at_risk)),
        ("messages acknowledged", len(tally.acked)),
        ("delivered", result["delivered"]),
        ("lost", len(result["lost"])),
        ("delivered more than once", len(result["twice"])),
        ("  of those at risk at a kill", len(result["twice_at_risk"])),
        ("elapsed seconds", f"{elapsed:.1f}"),
    ]
    if args.power_cut:
        rows.insert(3, ("  acked after the copy (not counted)", tally.acked_after_copy))
    if result["smtp"]:
        rows.append(("smtp deliveries (fallback used)", result["smtp"]))
    for label, value in rows:
        print(f"{label:<38}{value:>10}")
    unexpected = result["twice"] - result["twice_at_risk"]
    if unexpected:
        print(
            f"DUPLICATED, NOT AT RISK AT ANY KILL: {len(unexpected)} e.g. {sorted(unexpected)[:5]}"
        )
    if result["lost"]:
        print(
            f"LOST: {len(result['lost'])} (not delivered in the store: "
            f"{len(result['not_delivered'])}, never seen by the simulator: "
            f"{len(result['unseen'])}) e.g. {sorted(result['lost'])[:5]}"
        )


if __name__ == "__main__":
    main()
