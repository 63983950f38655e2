"""Control socket access: roles from the peer's credentials, checked on a real socket."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from ringbearer._errors import RingbearerError
from ringbearer.control import (
    AccessPolicy,
    Client,
    Guard,
    Pause,
    Peer,
    Principals,
    Request,
    Role,
    Status,
    Submit,
    serve_control,
)
from ringbearer.control._access import needed

SYSTEM_PYTHON = "/usr/bin/python3"  # readable by any user, unlike a venv under /root

# Connects, sends each request line, prints each reply line (or the refusal) as JSON.
CLIENT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(json.dumps({"connect_error": exc.errno}))
    sys.exit()
f = s.makefile("rwb")
for cmd in sys.argv[2:]:
    args = {"name": "alpha"} if cmd == "pause" else {}
    f.write(json.dumps({"id": cmd, "cmd": cmd, "args": args}).encode() + b"\\n")
    f.flush()
    line = f.readline()
    print(line.decode().strip() or json.dumps({"closed": True}))
"""


def peer(uid: int, gid: int) -> Peer:
    return Peer.from_ids(1234, uid, gid)


def test_roles_follow_users_and_groups() -> None:
    """The owner operates; listed users and groups get their role; anyone else has none."""
    policy = AccessPolicy(
        operators=Principals(users=("daemon",)),
        senders=Principals(groups=("nogroup",)),
        readers=Principals(users=("65533",)),
        owner_uid=4242,
    )
    assert policy.role(peer(4242, 4242)) is Role.OPERATE
    assert policy.role(peer(1, 1)) is Role.OPERATE  # user "daemon"
    assert policy.role(peer(65534, 65534)) is Role.SEND  # group "nogroup"
    assert policy.role(peer(65533, 65533)) is Role.READ  # by number, no name needed
    assert policy.role(peer(2, 2)) is None


def test_each_command_needs_its_role() -> None:
    """Reading needs read, submitting needs send, changing state needs operate."""
    assert needed(Status()) is Role.READ
    assert needed(Submit()) is Role.SEND
    assert needed(Pause("alpha")) is Role.OPERATE


async def answer(request: Request) -> Any:
    return {"answered": type(request).__name__}


@pytest.fixture
async def shared_dir() -> AsyncIterator[Path]:
    """A folder other users may enter (pytest's own are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="rb-access-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder)


async def test_the_owner_is_an_operator_on_a_real_socket(
    shared_dir: Path, nursery: trio.Nursery
) -> None:
    """The daemon's own user may do everything, checked by SO_PEERCRED."""
    path = shared_dir / "rb.sock"
    refused: list[tuple[int, str | None]] = []
    guard = Guard(AccessPolicy(), refused=lambda r: refused.append((r.peer.uid, r.command)))
    await nursery.start(
        lambda task_status: serve_control(path, answer, guard=guard, task_status=task_status)
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    with Client(path, timeout=5) as client:
        result = await trio.to_thread.run_sync(client.raw, "pause", {"name": "alpha"})
    assert result == {"answered": "Pause"} and refused == []


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not Path(SYSTEM_PYTHON).exists(),
    reason="connecting as other users needs root and a system python3",
)


async def run_as(user: str, group: str, path: Path, *cmds: str) -> list[dict[str, Any]]:
    def run() -> str:
        done = subprocess.run(
            [SYSTEM_PYTHON, "-c", CLIENT, str(path), *cmds],
            user=user,
            group=group,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=30,
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    return [json.loads(line) for line in (await trio.to_thread.run_sync(run)).splitlines()]


@needs_root
async def test_a_reader_reads_but_cannot_pause_and_a_stranger_is_refused(
    shared_dir: Path, nursery: trio.Nursery
) -> None:
    """nobody (a reader) reads but cannot pause; daemon, only in the socket's group, is refused."""
    path = shared_dir / "rb.sock"
    refused: list[tuple[int, str | None]] = []
    guard = Guard(
        AccessPolicy(readers=Principals(users=("nobody",))),
        group="nogroup",
        refused=lambda r: refused.append((r.peer.uid, r.command)),
    )
    await nursery.start(
        lambda task_status: serve_control(path, answer, guard=guard, task_status=task_status)
    )
    assert path.stat().st_gid == 65534

    status, pause = await run_as("nobody", "nogroup", path, "status", "pause")
    assert status == {"id": "status", "ok": True, "result": {"answered": "Status"}}
    assert pause["ok"] is False and pause["error"]["code"] == "forbidden"
    assert "operate" in pause["error"]["message"]

    (stranger,) = await run_as("daemon", "nogroup", path, "status")
    assert stranger["ok"] is False and stranger["error"]["code"] == "forbidden"
    assert "uid 1 (daemon)" in stranger["error"]["message"]

    # Outside the socket's group, the file mode stops it before we ever see it.
    (outsider,) = await run_as("daemon", "daemon", path, "status")
    assert outsider == {"connect_error": 13}
    assert refused == [(65534, "pause"), (1, None)]


async def test_an_unknown_socket_group_is_a_clear_start_up_error(shared_dir: Path) -> None:
    """A group that does not exist stops the server before it listens."""
    with pytest.raises(RingbearerError, match="no group named 'no-such-group'"):
        await serve_control(shared_dir / "rb.sock", answer, guard=Guard(group="no-such-group"))
