"""A throwaway PostgreSQL cluster for tests and benchmarks: ``initdb`` into a temporary
folder, ``pg_ctl`` on a free port (and a Unix socket in that folder), stopped and
removed afterwards. Debian's ``postgresql`` package provides the programs
(``scripts/install-postgresql`` installs it where it can); without them
:func:`find_bin` says why, and the tests that need a cluster skip with that reason.

PostgreSQL refuses to run as root: as root the cluster runs as the ``postgres`` user
Debian's package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

INSTALL = "scripts/install-postgresql (Debian's postgresql package)"


def find_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, if this machine has them."""
    for candidate in [
        shutil.which("pg_ctl"),
        *sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")),
    ]:
        if candidate and Path(candidate).with_name("initdb").exists():
            return Path(candidate).resolve().parent
    return None


def why_not() -> str | None:
    """Why no cluster can be started here (None: one can)."""
    if find_bin() is None:
        return f"no PostgreSQL programs (initdb, pg_ctl): {INSTALL}"
    if os.getuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and no postgres user to run PostgreSQL as"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.getuid() == 0 else argv


@contextlib.contextmanager
def cluster(**settings: str) -> Iterator[str]:
    """A running cluster; its URL (``postgresql://ringbearer@127.0.0.1:PORT/ringbearer``)."""
    bin_dir = find_bin()
    assert bin_dir is not None, why_not()
    folder = Path(tempfile.mkdtemp(prefix="ringbearer-pg-"))
    if os.getuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, port = folder / "data", _free_port()

    def run(*argv: object) -> None:
        subprocess.run(
            _as_owner([str(a) for a in argv]), check=True, capture_output=True, timeout=120
        )

    try:
        run(bin_dir / "initdb", "-D", data, "-U", "ringbearer", "--auth=trust", "-E", "UTF8",
            "--no-sync")  # fmt: skip
        options = " ".join(
            [f"-p {port}", f"-k {folder}", "-c listen_addresses=127.0.0.1", "-c fsync=on",
             *(f"-c {k}={v}" for k, v in settings.items())]
        )  # fmt: skip
        run(bin_dir / "pg_ctl", "-D", data, "-o", options, "-l", folder / "log", "-w", "start")
        run(bin_dir / "createdb", "-h", folder, "-p", port, "-U", "ringbearer", "ringbearer")
        yield f"postgresql://ringbearer@127.0.0.1:{port}/ringbearer"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                capture_output=True, timeout=60,
            )  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
