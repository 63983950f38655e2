"""How long one CLI call to a running daemon takes: ``ringbearer status``, start to exit.

Starts a daemon on the shipped config (its own sandbox, state in a temporary
folder) and times ``ringbearer status`` ``--runs`` times; with ``--against
PATH`` (another checkout) it also starts that checkout's daemon and times its
``status`` against it, the two interleaved, so both see the same machine.

    python bench/cli_start.py [--runs 10] [--against PATH]

It prints the median and each run; it does not pass or fail.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "import sys; from ringbearer._cli import main; sys.exit(main())"]


def environment(src: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if src is not None:  # another checkout: its src/ first on the path
        env["PYTHONPATH"] = str(src / "src")
    return env


@contextmanager
def daemon(src: Path | None) -> Iterator[Path]:
    """A daemon on the shipped config in a fresh folder; yields its config path."""
    with tempfile.TemporaryDirectory(prefix="rb-cli-") as tmp:
        config = Path(tmp) / "config.toml"
        text = ((src or ROOT) / "config.toml").read_text()
        config.write_text(text.replace('listen = "127.0.0.1:9464"', 'listen = "127.0.0.1:0"'))
        env = environment(src)
        proc = subprocess.Popen(
            [*CLI, "run", "-c", str(config)], env=env, stderr=subprocess.DEVNULL, cwd=tmp
        )
        try:
            deadline = time.monotonic() + 30
            while status(config, env) != 0:
                if time.monotonic() > deadline:
                    raise SystemExit("the daemon did not answer within 30 s")
                time.sleep(0.2)
            yield config
        finally:
            proc.terminate()
            proc.wait(30)


def status(config: Path, env: dict[str, str]) -> int:
    done = subprocess.run([*CLI, "status", "-c", str(config)], env=env, capture_output=True)
    return done.returncode


def timed(config: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    assert status(config, env) == 0
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--against", type=Path, metavar="PATH", help="another checkout")
    args = parser.parse_args()
    sources: dict[str, Path | None] = {"this checkout": None}
    if args.against is not None:
        sources = {str(args.against): args.against, **sources}
    runs: dict[str, list[float]] = {name: [] for name in sources}
    with contextlib.ExitStack() as stack:
        configs = {name: stack.enter_context(daemon(src)) for name, src in sources.items()}
        for _ in range(args.runs):
            for name, src in sources.items():
                runs[name].append(timed(configs[name], environment(src)))
    for name, values in runs.items():
        shown = " ".join(f"{1000 * v:.0f}" for v in values)
        print(f"{name:<30} median {1000 * statistics.median(values):5.0f} ms   {shown}")


if __name__ == "__main__":
    main()
