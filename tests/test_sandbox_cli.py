"""``ringbearer sandbox fault|stats|clear`` against a real simulator, found through a daemon.

The daemon here is a stand-in on a real Unix socket that answers ``status``
with its sandbox's URL, which is all these commands ask of it; the simulator
is the real one, serving in the test.
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from ringbearer import _cli_sandbox
from ringbearer._cli_base import add_daemon
from ringbearer.simulator import Faults, SimulatorAddress, SimulatorState, serve_simulator

HOST = "127.0.0.1"
EMAIL = {"from": "hi@acme.test", "to": ["guest@example.com"], "subject": "Hi", "text": "x"}
RESEND: dict[str, Any] = {
    "url": "/resend/emails",
    "json": EMAIL,
    "headers": {"Authorization": "Bearer re_x"},
}
SLACK: dict[str, Any] = {"url": "/slack_webhook/services/T000/B000/XXXX", "json": {"text": "hi"}}


def status_reply(sandbox: str | None) -> dict[str, Any]:
    """The daemon's answer to ``status``, as far as the sandbox commands read it."""
    return {"sandbox": sandbox}


async def serve_status(
    path: Path,
    sandbox: str | None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A daemon's control socket that answers every request as ``status`` does."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen()

    async def answer(stream: trio.SocketStream) -> None:
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                reply = {"id": json.loads(line)["id"], "ok": True, "result": status_reply(sandbox)}
                await stream.send_all(json.dumps(reply).encode() + b"\n")

    task_status.started()
    await trio.serve_listeners(answer, [trio.SocketListener(sock)])


@attrs.frozen
class Setup:
    state: SimulatorState
    address: SimulatorAddress
    socket: Path
    client: httpx.AsyncClient
    capsys: pytest.CaptureFixture[str]

    async def run(self, *argv: str) -> tuple[int, str, str]:
        """``ringbearer ARGV --socket ...`` (blocking, so in a thread): code, stdout, stderr."""
        self.capsys.readouterr()
        args = [*argv, "--socket", str(self.socket)]
        code = await trio.to_thread.run_sync(_cli_sandbox.main, args)
        out, err = self.capsys.readouterr()
        return code, out, err

    async def send(self, request: dict[str, Any]) -> int:
        return (await self.client.post(**request)).status_code


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # A Unix socket's path is short; pytest's tmp_path may not be.
    with tempfile.TemporaryDirectory(prefix="rb-", dir="/tmp") as folder:
        yield Path(folder)


@pytest.fixture
async def setup(
    nursery: trio.Nursery, socket_dir: Path, capsys: pytest.CaptureFixture[str]
) -> AsyncIterator[Setup]:
    """A simulator, and a daemon whose sandbox it is."""
    state = SimulatorState(seed=3)
    address = await nursery.start(serve_simulator, state, HOST, 0, 0)
    path = socket_dir / "daemon.sock"
    await nursery.start(serve_status, path, address.url)
    async with httpx.AsyncClient(base_url=address.url, timeout=5) as client:
        yield Setup(state, address, path, client, capsys)


async def test_fault_outage_makes_the_providers_requests_fail(setup: Setup) -> None:
    """``sandbox fault resend --outage``: every request to Resend gets its outage answer."""
    code, out, _ = await setup.run("sandbox", "fault", "resend", "--outage")
    assert (code, out) == (0, "resend: outage; until cleared\n")
    response = await setup.client.post(**RESEND)
    assert (response.status_code, response.json()["name"]) == (503, "internal_server_error")
    assert setup.state.endpoints["resend"].slot.faults == Faults(outage=True)


async def test_fault_takes_the_kind_as_the_config_spells_it(setup: Setup) -> None:
    """slack_webhook is the simulator's slack-webhook; --count heals it after N requests."""
    code, out, _ = await setup.run("sandbox", "fault", "slack_webhook", "--outage", "--count", "2")
    assert (code, out) == (0, "slack_webhook: outage; for the next 2 requests\n")
    assert [await setup.send(SLACK) for _ in range(3)] == [500, 500, 200]


async def test_fault_with_rates_latency_and_retry_after(setup: Setup) -> None:
    """Each option sets its field of the simulator's faults, and the line shows them."""
    argv = ["--error", "0.25", "--rate-limit", "0.5", "--latency", "0.002", "--retry-after", "9"]
    code, out, _ = await setup.run("sandbox", "fault", "mailgun", *argv)
    assert (code, out) == (
        0,
        "mailgun: error 0.25, rate limit 0.5, latency 0.002s; until cleared\n",
    )
    faults = setup.state.endpoints["mailgun"].slot.faults
    assert faults == Faults(error_rate=0.25, rate_limit_rate=0.5, latency_ms=2.0, retry_after=9)


async def test_stats_shows_the_counts(setup: Setup) -> None:
    """``sandbox stats resend`` shows requests, accepted and statuses; --json the same."""
    await setup.send(RESEND)
    await setup.send(RESEND)
    await setup.run("sandbox", "fault", "resend", "--outage", "--count", "1")
    await setup.send(RESEND)
    code, out, _ = await setup.run("sandbox", "stats", "resend")
    header, row = out.splitlines()
    assert (code, header.split()) == (
        0,
        ["KIND", "REQUESTS", "ACCEPTED", "KEYS", "DUPLICATES", "STATUSES"],
    )
    assert row.split() == ["resend", "3", "2", "0", "0", "200=2", "503=1"]
    code, out, _ = await setup.run("sandbox", "stats", "resend", "--json")
    assert json.loads(out)["resend"] == {
        "requests": 3,
        "accepted": 2,
        "unique_keys": 0,
        "duplicates": 0,
        "status_counts": {"200": 2, "503": 1},
        "events_sent": 0,
        "events_failed": 0,
        "events_dropped": 0,
        "event_retries": 0,
    }


async def test_stats_of_every_provider_names_them_by_kind(setup: Setup) -> None:
    """Without KIND every provider is listed, by the kind the config names."""
    await setup.send(SLACK)
    code, out, _ = await setup.run("sandbox", "stats", "--json")
    stats = json.loads(out)
    assert code == 0
    assert {"resend", "slack_webhook", "twilio_sms", "smtp"} <= set(stats)
    assert not any("-" in kind for kind in stats)
    assert stats["slack_webhook"]["accepted"] == 1


async def test_clear_removes_the_fault(setup: Setup) -> None:
    """``sandbox clear resend`` heals Resend; ``sandbox clear`` heals every provider."""
    await setup.run("sandbox", "fault", "resend", "--outage")
    await setup.run("sandbox", "fault", "slack_webhook", "--outage")
    assert await setup.send(RESEND) == 503
    code, out, _ = await setup.run("sandbox", "clear", "resend")
    assert (code, out) == (0, "resend: healthy\n")
    assert await setup.send(RESEND) == 200
    assert await setup.send(SLACK) == 500
    code, out, _ = await setup.run("sandbox", "clear")
    assert (code, out) == (0, "every provider: healthy\n")
    assert all(slot.faults == Faults() for slot in setup.state.slots().values())
    assert await setup.send(SLACK) == 200


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["fault", "sendgrid", "--outage"], "unknown provider 'sendgrid'"),
        (["fault", "resend"], "name a fault"),
        (["fault", "resend", "--count", "3"], "name a fault"),
        (["fault", "resend", "--error", "0.6", "--reset", "0.6"], "add up to more than 1"),
        (["stats", "nope"], "unknown provider 'nope'"),
    ],
)
async def test_bad_usage_is_exit_2_with_a_usage_line(
    setup: Setup, argv: list[str], named: str
) -> None:
    """What cannot be done is exit 2: a usage line, then the error naming the problem."""
    code, out, err = await setup.run("sandbox", *argv)
    lines = err.splitlines()
    assert (code, out) == (2, "")
    assert lines[0].startswith(f"usage: ringbearer sandbox {argv[0]} ")
    assert lines[-1].startswith(f"ringbearer sandbox {argv[0]}: error: ")
    assert named in lines[-1]


@pytest.mark.parametrize(
    "argv", [["fault", "resend", "--error", "2"], ["fault", "resend", "--count", "0"], ["fault"]]
)
def test_bad_arguments_are_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A value out of range or a missing KIND stops at the parser: exit 2 and its usage line."""
    with pytest.raises(SystemExit) as exited:
        _cli_sandbox.main(["sandbox", *argv])
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("usage: ringbearer sandbox")


async def test_no_sandbox_is_exit_1_with_one_line(
    nursery: trio.Nursery, setup: Setup, socket_dir: Path
) -> None:
    """A daemon that runs against the real providers has no simulator to act on: exit 1."""
    path = socket_dir / "production.sock"
    await nursery.start(serve_status, path, None)
    production = attrs.evolve(setup, socket=path)
    code, out, err = await production.run("sandbox", "fault", "resend", "--outage")
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"ringbearer: the daemon at {path} runs against the real providers: no sandbox"
    ]
    assert setup.state.endpoints["resend"].slot.faults == Faults()


async def test_unreachable_daemon_is_exit_3_with_one_line(
    socket_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No daemon at the socket: exit 3, and one line saying where it looked."""
    path = socket_dir / "nobody.sock"
    code = await trio.to_thread.run_sync(
        _cli_sandbox.main, ["sandbox", "stats", "--socket", str(path)]
    )
    err = capsys.readouterr().err
    assert code == 3
    assert len(err.splitlines()) == 1
    assert err.startswith(f"ringbearer: cannot reach the daemon at {path}")


def _parser(common: _cli_sandbox.Common) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ringbearer")
    _cli_sandbox.add_commands(parser.add_subparsers(dest="command", required=True), common)
    return parser


def _leaves(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every command's own parser, by its words (``sandbox fault``)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, sub in action.choices.items():
            nested = _leaves(sub)
            found.update({f"{name} {k}": v for k, v in nested.items()} if nested else {name: sub})
    return found


COMMON = {"help", "config", "socket", "json"}  # the options ``common`` adds, and -h


def test_every_help_lists_exit_codes_and_each_default() -> None:
    """Each command's help ends with its exit codes; each of its own arguments says its default."""
    leaves = _leaves(_parser(add_daemon))
    assert set(leaves) == {"sandbox fault", "sandbox stats", "sandbox clear", "simulate"}
    for words, parser in leaves.items():
        text = parser.format_help()
        assert "exit codes:\n  0  " in text and "\n  2  " in text, words
        for action in parser._actions:
            if action.dest not in COMMON | {"kind"}:
                assert "(default: " in (action.help or ""), (words, action.dest)
    kind = [a for a in leaves["sandbox stats"]._actions if a.dest == "kind"]
    assert "(default: every one)" in (kind[0].help or "")


def test_stats_takes_json_and_fault_and_clear_do_not() -> None:
    """Only stats prints JSON, so only stats offers --json."""
    parser = _parser(add_daemon)
    args = parser.parse_args(["sandbox", "stats", "resend", "--json"])
    assert (args.kind, args.json) == ("resend", True)
    for action in (["fault", "resend", "--outage"], ["clear"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["sandbox", *action, "--json"])
