"""The operator CLI: its views, its argument parsing, and dead-letter replay and purge.

Views and parsing are pure and tested on typed replies built in the test;
replay and purge are tested on the in-memory store under the virtual-time
harness (and the SQLite store on a real file), through the same handler table
the control socket uses.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import attrs
import pytest
import trio
import trio.testing
import trio_asyncio

from ringbearer import (
    RequestError,
    _cli,
    _cli_messages,
    _cli_operate,
    _cli_times,
    _config,
    _config_doc,
    _views,
)
from ringbearer._cli_base import EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE
from ringbearer._delivery import Delivered, Envelope, Outcome, Permanent, Priority
from ringbearer._errors import ControlError, ErrorCode
from ringbearer.control import PROTOCOL_VERSION, MessageIn
from ringbearer.control import _protocol as proto
from ringbearer.control._access import Role, needed
from ringbearer.control._replies import (
    AuditReply,
    DeadLetterReply,
    DeadLettersReply,
    PurgeReply,
    ReplayReply,
    StatusReply,
)
from ringbearer.integrations import FakeAdapter
from ringbearer.store import EventKind, MessageStatus, NewMessage, SqliteStore

from .harness import EPOCH, Core, running_core, wall

CONVERTER = proto.converter()

SHIPPED = Path(__file__).resolve().parent.parent / "config.toml"


# -- argument parsing ----------------------------------------------------------------------


def parse(*argv: str) -> Any:
    return _cli.build_parser().parse_args(list(argv))


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """A parser's commands (or a command's actions), by name."""
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(found[0].choices) if found else {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", 1_000_000.0 - 90),
        ("15m", 1_000_000.0 - 900),
        ("2h", 1_000_000.0 - 7200),
        ("1d", 1_000_000.0 - 86400),
        ("1.5h", 1_000_000.0 - 5400),
        ("1795874400", 1795874400.0),
        ("1795874400.5", 1795874400.5),
        ("2026-11-28T14:00Z", 1795874400.0),
        ("2026-11-28T14:00+01:00", 1795870800.0),
    ],
)
def test_since_takes_unix_iso_and_durations(text: str, expected: float) -> None:
    """--since: a Unix time, an ISO 8601 time with a zone, or a duration back from now."""
    assert _cli_times.back(text, now=1_000_000.0) == expected


def test_since_without_a_zone_is_local_time() -> None:
    """An ISO time with no zone is read in the local time zone."""
    local = datetime.datetime(2026, 11, 28, 14, 0).timestamp()  # naive: local
    assert _cli_times.back("2026-11-28T14:00", now=0.0) == local


@pytest.mark.parametrize("text", ["yesterday", "15x", "", "nan", "inf", "2026-13-01"])
def test_a_bad_since_is_a_usage_error_naming_the_forms(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --since that is no time exits 2 and says which forms are accepted."""
    with pytest.raises(SystemExit) as exited:
        _cli.main(["audit", "--since", text, "--socket", "/nonexistent"])
    assert exited.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Unix time" in err and "ISO 8601" in err and "90s, 15m, 2h, 1d" in err


def test_bare_dead_letters_lists_and_nested_options_keep_parent_values() -> None:
    """`dead-letters` alone lists; options before `list` are not reset by it."""
    bare = parse("dead-letters")
    assert bare.fn is _cli_messages.cmd_dead_letters and bare.limit == 1000 and bare.target is None
    nested = parse("dead-letters", "--limit", "5", "--json", "list")
    assert nested.fn is _cli_messages.cmd_dead_letters and nested.limit == 5 and nested.json
    after = parse("dead-letters", "list", "--target", "email", "--limit", "7")
    assert (after.target, after.limit) == ("email", 7)


def test_replay_and_purge_arguments() -> None:
    """IDs, --all, --target and --older-than (seconds or a duration) are parsed."""
    replay = parse("dead-letters", "replay", "3", "1", "2")
    assert replay.fn is _cli_messages.cmd_dead_letters_replay and replay.ids == [3, 1, 2]
    purge = parse("dead-letters", "purge", "--all", "--target", "email", "--older-than", "7d")
    assert purge.all and purge.target == "email" and purge.older_than == 7 * 86400
    assert parse("dead-letters", "purge", "--all", "--older-than", "3600").older_than == 3600
    assert parse("dead-letters", "show", "42").id == 42
    assert parse("audit", "--kind", "replayed,purged", "--kind", "delivered").kind == [
        "replayed,purged",
        "delivered",
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["dead-letters", "replay"],
        ["dead-letters", "replay", "1", "--all"],
        ["dead-letters", "replay", "1", "--target", "email"],
        ["dead-letters", "purge", "1", "--older-than", "60"],
        ["dead-letters", "purge"],
    ],
)
def test_a_replay_or_purge_that_names_nothing_or_too_much_exits_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """IDs xor --all, and the filters only with --all: checked before any request."""
    assert _cli.main([*argv, "--socket", "/nonexistent"]) == EXIT_USAGE
    assert "ringbearer:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["dead-letters", "purge", "--all", "--older-than", "soon"],
        ["dead-letters", "purge", "--all", "--older-than", "-5"],
        ["top", "--interval", "0"],
        ["top", "--interval", "nan"],
    ],
)
def test_bad_numbers_exit_2(argv: list[str]) -> None:
    """A duration or interval that is no positive number is a usage error."""
    with pytest.raises(SystemExit) as exited:
        _cli.main([*argv, "--socket", "/nonexistent"])
    assert exited.value.code == EXIT_USAGE


@pytest.mark.parametrize(
    "argv",
    [
        ["top", "--once", "--interval", "0.01"],
        ["dead-letters", "list"],
        ["dead-letters", "show", "1"],
        ["dead-letters", "replay", "--all"],
        ["dead-letters", "purge", "1"],
        ["audit", "--kind", "replayed", "--since", "1h"],
    ],
)
def test_an_unreachable_daemon_exits_3(tmp_path: Path, argv: list[str]) -> None:
    """Every new command that talks to the daemon exits 3 when there is none."""
    assert _cli.main([*argv, "--socket", str(tmp_path / "none.sock")]) == EXIT_UNREACHABLE


def test_new_commands_document_their_exit_codes() -> None:
    """Each new command's --help lists its exit codes."""
    parser = _cli.build_parser()
    commands = subcommands(parser)
    for name in ("top", "audit", "dead-letters", "status"):
        assert "exit codes:" in commands[name].format_help(), name
    dead = subcommands(commands["dead-letters"])
    for name in ("list", "show", "replay", "purge"):
        assert "exit codes:" in dead[name].format_help(), name
    assert "130" in dead["replay"].format_help()
    config = subcommands(commands["config"])
    for name in ("init", "show", "check"):
        assert "exit codes:" in config[name].format_help(), name


# -- views ---------------------------------------------------------------------------------


def integration(name: str, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "kind": "resend",
        "state": "running",
        "paused": False,
        "breaker": "closed",
        "breaker_forced": False,
        "health": "healthy",
        "queued": {"critical": 0, "normal": 0, "bulk": 0},
        "in_flight": 0,
        "restarts": 0,
        "delivered": 0,
        "retried": 0,
        "dead": 0,
        "last_error": None,
        "budgets": [],
        "success_rate": 1.0,
        "latency_p50": 0.0,
        "latency_p95": 0.0,
        "latency_p99": 0.0,
        "lanes": 2,
        "attempting": 0,
    }
    base.update(overrides)
    return base


CALENDAR_OFF = {"wedding_day": False, "cause": "none", "detail": "", "override": None}
SATURDAY = {"wedding_day": True, "cause": "weekday", "detail": "saturday", "override": None}


def status_dict(
    uptime: float,
    *integrations: dict[str, Any],
    mode: str = "normal",
    wedding: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A status reply as the wire carries it."""
    if wedding is None:
        wedding = SATURDAY if mode == "wedding_day" else CALENDAR_OFF
    return {
        "version": "0.1.0",
        "protocol": PROTOCOL_VERSION,
        "mode": mode,
        "wedding_day": wedding,
        "uptime_seconds": uptime,
        "config": "/etc/ringbearer/config.toml",
        "sandbox": None,
        "metrics": None,
        "store": {"path": ":memory:", "commits": 0, "committed_ops": 0, "pending_ops": 0},
        "integrations": list(integrations),
        "groups": {
            "email": {
                "members": ["resend", "mailgun"],
                "paused": False,
                "queued": {"critical": 1, "normal": 2, "bulk": 3},
                "in_flight": 4,
            }
        },
    }


def status(
    uptime: float,
    *integrations: dict[str, Any],
    mode: str = "normal",
    wedding: dict[str, Any] | None = None,
) -> StatusReply:
    """A typed status reply, as the client structures it."""
    return CONVERTER.structure(
        status_dict(uptime, *integrations, mode=mode, wedding=wedding), StatusReply
    )


def test_top_rates_come_from_two_snapshots() -> None:
    """Delivered, retried and dead per second are differences over the elapsed time."""
    before = status(10.0, integration("resend", delivered=100, retried=4), integration("slack"))
    after = status(
        12.0,
        integration("resend", delivered=150, retried=8, dead=2, in_flight=3),
        integration("slack", queued={"critical": 5, "normal": 0, "bulk": 7}),
        mode="wedding_day",
    )
    model = _views.top_rows(before, after, 2.0)
    resend = model["integrations"][0]
    assert resend["delivered_per_second"] == 25.0 and resend["retried_per_second"] == 2.0
    assert resend["dead_per_second"] == 1.0
    assert model["delivered_per_second"] == 25.0
    assert model["queued"] == {"critical": 6, "normal": 2, "bulk": 10}  # slack + the group
    assert model["in_flight"] == 7 and model["mode"] == "wedding_day"
    frame = _views.render_top(before, after, 2.0, refresh=1.0)
    assert "mode wedding_day" in frame and "every 1 s" in frame
    assert "delivered 25.0/s" in frame
    row = next(line for line in frame.splitlines() if line.startswith("resend"))
    assert row.split() == [
        "resend",
        "running",
        "closed",
        "healthy",
        "0",
        "0",
        "0",
        "3",
        "25.0",
        "2.0",
        "1.0",
        "0",
    ]
    assert any(line.startswith("email (group)") for line in frame.splitlines())


def test_top_has_no_rates_without_two_snapshots_of_one_run() -> None:
    """The first frame, and one after the daemon restarted, show '-' for rates."""
    later = status(500.0, integration("resend", delivered=900))
    first = _views.top_rows(None, later, 0.0)
    assert first["integrations"][0]["delivered_per_second"] is None
    assert first["delivered_per_second"] is None
    restarted = status(3.0, integration("resend", delivered=2))
    assert _views.top_rows(later, restarted, 1.0)["delivered_per_second"] is None
    frame = _views.render_top(None, later, 0.0)
    assert "delivered -/s" in frame and "Ctrl-C" not in frame


def test_top_once_prints_one_frame_from_two_snapshots(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--once asks for status twice, an interval apart, and prints one frame."""
    snapshots = iter(
        [
            status(10.0, integration("resend", delivered=10)),
            status(10.5, integration("resend", delivered=15)),
        ]
    )
    slept: list[float] = []
    monkeypatch.setattr(_cli_operate, "call", lambda args, request, timeout=30.0: next(snapshots))
    monkeypatch.setattr(time, "sleep", slept.append)
    assert _cli.main(["top", "--once", "--interval", "0.5", "--socket", "x"]) == EXIT_OK
    out = capsys.readouterr().out
    assert slept == [0.5] and out.count("INTEGRATION") == 1 and "delivered 10.0/s" in out
    assert _views.CLEAR not in out


def test_top_live_redraws_until_ctrl_c_and_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Live: a frame every interval; Ctrl-C (KeyboardInterrupt) ends it with exit 0."""
    frames = 0

    def fake_sleep(seconds: float) -> None:
        nonlocal frames
        frames += 1
        if frames == 3:
            raise KeyboardInterrupt

    uptimes = iter([1.0, 2.0, 3.0])
    monkeypatch.setattr(
        _cli_operate,
        "call",
        lambda args, request, timeout=30.0: status(next(uptimes), integration("resend")),
    )
    monkeypatch.setattr(time, "sleep", fake_sleep)
    assert _cli.main(["top", "--json", "--socket", "x"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3  # JSON lines, one a frame
    assert [json.loads(line)["delivered_per_second"] for line in lines] == [None, 0.0, 0.0]


def test_status_table_lists_budgets_below_when_there_are_any() -> None:
    """Budgets get a section of their own below the table; none, no section."""
    budget = {
        "limit": 120,
        "per": "minute",
        "used": 3,
        "left_for_critical": 117,
        "left_for_others": 87,
    }
    shown = _views.format_status(status(5.0, integration("pagerduty", budgets=[budget])))
    assert "BUDGETS" in shown
    assert "pagerduty: 3 of 120 a minute used; 117 left for critical work, 87 for the rest" in shown
    assert "BUDGETS" not in _views.format_status(status(5.0, integration("resend")))


def override(on: bool, detail: str) -> dict[str, Any]:
    return {
        "wedding_day": on,
        "cause": "operator",
        "detail": detail,
        "override": {"on": on, "until": None},
    }


@pytest.mark.parametrize(
    ("wedding", "shown"),
    [
        (SATURDAY, "mode wedding_day (weekday saturday)"),
        (
            {"wedding_day": True, "cause": "date", "detail": "2027-06-12", "override": None},
            "mode wedding_day (date 2027-06-12)",
        ),
        (
            override(True, "operator until 2027-06-12T23:00+01:00"),
            "mode wedding_day (override until 2027-06-12T23:00+01:00)",
        ),
        # Reworded on purpose: "until auto" read as a time; it ends when set back to auto.
        (override(False, "operator"), "mode normal (override until set back to auto)"),
        (CALENDAR_OFF, "mode normal (off)"),
    ],
)
def test_status_and_top_say_why_wedding_day_mode_is_on_or_off(
    wedding: dict[str, Any], shown: str
) -> None:
    """Both headers name the mode's cause: a weekday, a date, an override (until when), or off."""
    mode = "wedding_day" if wedding["wedding_day"] else "normal"
    current = status(5.0, integration("resend"), mode=mode, wedding=wedding)
    assert f" · {shown} · " in _views.format_status(current).splitlines()[0]
    assert f" · {shown} · " in _views.render_top(None, current, 0.0).splitlines()[0]
    cause = shown.partition("(")[2].rstrip(")")
    assert _views.top_rows(None, current, 0.0)["mode_cause"] == cause


def answer_once(path: Path, result: dict[str, Any]) -> threading.Thread:
    """A control socket at ``path`` that answers one request with ``result``."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    server.settimeout(30)  # bounded: the test fails rather than hangs

    def serve() -> None:
        with server, server.accept()[0] as conn, conn.makefile("rb") as lines:
            request = json.loads(lines.readline())
            conn.sendall(proto.ok(request["id"], result))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_status_with_no_wedding_day_details_is_never_shown_with_a_wrong_cause(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reply without the cause (an older daemon's) is unreadable (exit 3), not a wrong cause."""
    # Typed replies: a status without `wedding_day` no longer structures, so the
    # mode cannot be shown alone; what holds is that no cause is made up.
    old = status_dict(5.0, integration("resend"), mode="wedding_day")
    del old["wedding_day"]
    path = tmp_path / "s.sock"
    server = answer_once(path, old)
    assert _cli.main(["status", "--socket", str(path)]) == EXIT_UNREACHABLE
    server.join(30)
    captured = capsys.readouterr()
    assert captured.out == "" and "unreadable reply to Status" in captured.err


async def test_the_status_header_shows_an_override_set_on_a_running_daemon(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The view reads the cause as the daemon reports it: an override and its end."""
    async with running_core(tmp_path) as core:
        daemon = core.daemon
        now = CONVERTER.structure(daemon.status(), StatusReply)
        assert "· mode normal (off) ·" in _views.format_status(now)
        end = wall() + 3600
        await daemon.set_override("on", end)
        later = CONVERTER.structure(daemon.status(), StatusReply)
        head = _views.format_status(later).splitlines()[0]
    until = datetime.datetime.fromtimestamp(end, datetime.UTC)  # the calendar's zone: UTC
    assert f"· mode wedding_day (override until {until.isoformat(timespec='minutes')}) ·" in head


def letter(message_id: int, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "message_id": message_id,
        "target": "email",
        "integration": "resend",
        "reason": "HTTP 422: invalid from",
        "at": 1795874400.0,
        "attempts": 1,
        "payload": {"to": "a@example.com"},
    }
    base.update(overrides)
    return base


def message(message_id: int, **overrides: Any) -> dict[str, Any]:
    """A message record as the wire carries it."""
    base: dict[str, Any] = {
        "id": message_id,
        "target": "email",
        "integration": "resend",
        "priority": "critical",  # typed replies carry its name (the wire once had 0)
        "idempotency_key": f"k-{message_id}",
        "status": "dead",
        "attempts": 1,
        "next_attempt_at": 0.0,
        "last_error": "HTTP 422: invalid from",
        "provider_id": None,
        "created_at": 1795874000.0,
        "updated_at": 1795874400.0,
        "delivered_at": None,
        "events": [],
    }
    base.update(overrides)
    return base


def test_dead_letter_views() -> None:
    """The list is a table; show has the message, its payload, reason and history."""
    page = {"dead_letters": [letter(7), letter(12, integration=None)], "before": None}
    command = "ringbearer dead-letters"
    listed = _views.format_dead_letters(CONVERTER.structure(page, DeadLettersReply), command)
    header, first, second = listed.splitlines()
    assert header.split()[:3] == ["ID", "TARGET", "INTEGRATION"]
    assert first.split()[:4] == ["7", "email", "resend", "2026-11-28T14:00:00Z"]
    assert second.split()[2] == "-"
    assert _views.format_dead_letters(DeadLettersReply([]), command) == "no dead letters"
    event = {"at": 1.0, "kind": "dead_lettered", "message_id": 7, "integration": "resend"}
    reply = {
        **letter(7),
        "message": message(7),
        "events": [{**event, "detail": {"reason": "HTTP 422"}}],
    }
    shown = _views.format_dead_letter(CONVERTER.structure(reply, DeadLetterReply))
    for part in (
        "dead letter 7",
        "critical",
        "k-7",
        "HTTP 422: invalid from",
        '"to": "a@example.com"',
    ):
        assert part in shown
    assert shown.rstrip().endswith('dead_lettered resend msg=7 {"reason":"HTTP 422"}')


def test_summaries_and_the_progress_bar() -> None:
    """What replay and purge print, and the bar redrawn on stderr."""
    assert _views.format_changed("replayed", [1], []) == "replayed 1 dead letter"
    assert _views.format_changed("purged", [1, 2], [9]) == (
        "purged 2 dead letters; 1 was not a dead letter, left alone: 9"
    )
    assert _views.progress_bar(3000, 10000, width=10) == "\r[###       ] 3000/10000"
    assert _views.progress_bar(5, 5, width=4) == "\r[####] 5/5"
    assert _views.progress_bar(0, 0, width=4) == "\r[####] 0/0"


# -- replay and purge through the CLI, against a scripted daemon --------------------------


Selection: TypeAlias = proto.ReplayDead | proto.PurgeDead


class FakeDaemon:
    """Answers replay and purge requests as the real handler does, from a set of ids."""

    def __init__(self, dead: range) -> None:
        self.dead = set(dead)
        self.requests: list[Selection] = []

    def call(self, args: Any, request: Selection, timeout: float | None = 30.0) -> Any:
        self.requests.append(request)
        if request.all:
            chosen = sorted(i for i in self.dead if i > request.after)[: request.limit]
        else:
            chosen = sorted(i for i in request.ids if i in self.dead)
        self.dead -= set(chosen)
        after = max(chosen, default=request.after)
        remaining = sum(1 for i in self.dead if i > after) if request.all else 0
        skipped = sorted(set(request.ids) - set(chosen))
        if isinstance(request, proto.ReplayDead):
            return ReplayReply(chosen, skipped, remaining)
        return PurgeReply(chosen, skipped, remaining)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaemon]:
    daemon = FakeDaemon(range(1, 2501))
    monkeypatch.setattr(_cli_messages, "call", daemon.call)
    yield daemon


def test_replay_all_goes_in_chunks_with_a_progress_bar(
    fake: FakeDaemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--all: chunks of 1,000 moving a cursor, a bar on a terminal's stderr, one summary."""
    stderr = Terminal()
    monkeypatch.setattr("sys.stderr", stderr)
    assert _cli.main(["dead-letters", "replay", "--all", "--socket", "x"]) == EXIT_OK
    assert [r.after for r in fake.requests] == [0, 1000, 2000]
    assert all(r.limit == 1000 and r.all and "uid" in r.by for r in fake.requests)
    assert stderr.getvalue() == (
        "\r[############                  ] 1000/2500"
        "\r[########################      ] 2000/2500"
        "\r[##############################] 2500/2500\n"
    )
    assert capsys.readouterr().out == "replayed 2500 dead letters\n"
    assert not fake.dead


def test_purge_by_ids_chunks_and_reports_ids_that_were_not_dead_letters(
    fake: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    """2,600 ids go as 1,000 + 1,000 + 600; ids not dead are skipped: exit 1, all else done."""
    ids = [str(i) for i in range(1, 2601)]
    code = _cli.main(["dead-letters", "purge", *ids, "--json", "--socket", "x"])
    assert code == EXIT_REFUSED
    assert [len(r.ids) for r in fake.requests] == [1000, 1000, 600]
    result = json.loads(capsys.readouterr().out)
    assert len(result["purged"]) == 2500 and result["skipped"] == list(range(2501, 2601))


def test_no_progress_bar_when_stderr_is_not_a_terminal(
    fake: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    """Piped or captured stderr gets no bar."""
    assert _cli.main(["dead-letters", "purge", "--all", "--socket", "x"]) == EXIT_OK
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == "purged 2500 dead letters\n"


def test_a_refusal_midway_says_what_was_done_and_exits_1(
    fake: FakeDaemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refusal after some chunks: exit 1, and how many were already replayed."""
    calls = 0

    def refuse_second(args: Any, request: Selection, timeout: float | None = 30.0) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RequestError(ErrorCode.FORBIDDEN, "'dead-letters-replay' needs the operate role")
        return fake.call(args, request)

    monkeypatch.setattr(_cli_messages, "call", refuse_second)
    assert _cli.main(["dead-letters", "replay", "--all", "--socket", "x"]) == EXIT_REFUSED
    err = capsys.readouterr().err
    assert "1000 dead letter(s) were replayed before this stopped" in err
    assert "forbidden" in err


def test_ctrl_c_midway_exits_130_saying_what_was_done(
    fake: FakeDaemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C between chunks: exit 130 and how many were done."""
    calls = 0

    def interrupt_second(args: Any, request: Selection, timeout: float | None = 30.0) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        return fake.call(args, request)

    monkeypatch.setattr(_cli_messages, "call", interrupt_second)
    assert _cli.main(["dead-letters", "purge", "--all", "--socket", "x"]) == 130
    assert "1000 dead letter(s) were purged before this stopped" in capsys.readouterr().err


def test_unreachable_midway_exits_3(fake: FakeDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon going away mid-replay is exit 3, as for any command."""

    def gone(*args: Any, **kwargs: Any) -> Any:
        raise ControlError("the daemon closed the connection")

    monkeypatch.setattr(_cli_messages, "call", gone)
    assert _cli.main(["dead-letters", "replay", "1", "--socket", "x"]) == EXIT_UNREACHABLE


# -- config init and show --------------------------------------------------------------------


def test_config_show_round_trips_the_shipped_config_with_secrets_as_references(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """show's TOML loads back to the same config; secrets appear only as their references."""
    monkeypatch.setenv("RESEND_API_KEY", "re_canary_51f0")
    config = _config.load(SHIPPED)
    text = _config_doc.to_toml(_config_doc.config_document(config), header="shown")
    again = _config.parse(text, config.source)
    assert again == config
    assert 'api_key = { env = "RESEND_API_KEY" }' in text
    assert "re_canary_51f0" not in text
    assert "[defaults]" not in text and "lanes = 16" in text  # each integration written whole
    assert 'budgets = [{ limit = 120, per = "minute", critical_reserve = 0.25 }]' in text


def test_config_init_writes_a_valid_starter_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """init writes a file that `config check` passes; again: exit 1; --force: written."""
    path = tmp_path / "ringbearer.toml"
    assert _cli.main(["config", "init", "-c", str(path)]) == EXIT_OK
    written = path.read_text()
    assert _cli.main(["config", "check", "-c", str(path)]) == EXIT_OK
    config = _config.load(path)
    assert config.sandbox.enabled and config.groups == {"email": ("resend", "mailgun", "smtp")}
    assert "[defaults]" in written and 'api_key = { env = "RESEND_API_KEY" }' in written
    path.write_text("# mine\n")
    assert _cli.main(["config", "init", "-c", str(path)]) == EXIT_REFUSED
    assert "exists" in capsys.readouterr().err and path.read_text() == "# mine\n"
    assert _cli.main(["config", "init", "-c", str(path), "--force"]) == EXIT_OK
    assert path.read_text() == written


def test_config_show_prints_toml_or_json_and_exits_2_on_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """show of the starter passes check; a broken file is exit 2 with its problems."""
    path = tmp_path / "c.toml"
    assert _cli.main(["config", "init", "-c", str(path)]) == EXIT_OK
    capsys.readouterr()
    assert _cli.main(["config", "show", "-c", str(path)]) == EXIT_OK
    shown = tmp_path / "shown.toml"
    shown.write_text(capsys.readouterr().out)
    assert _config.load(shown) == _config.parse(path.read_text(), shown)
    assert _cli.main(["config", "show", "-c", str(path), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["integrations"]["resend"]["kind"] == "resend"
    path.write_text("[daemon]\nlanes = 3\n")
    assert _cli.main(["config", "show", "-c", str(path)]) == EXIT_USAGE
    assert "no integration is configured" in capsys.readouterr().err


def test_config_init_into_a_missing_folder_exits_1(tmp_path: Path) -> None:
    """A file that cannot be written is a refusal, not a traceback."""
    assert _cli.main(["config", "init", "-c", str(tmp_path / "no" / "c.toml")]) == 1


# -- the control requests --------------------------------------------------------------------


def test_replay_and_purge_need_an_operator_and_show_is_a_read() -> None:
    """Roles: replay and purge are operate; listing and showing dead letters are read."""
    assert needed(proto.ReplayDead(all=True)) is Role.OPERATE
    assert needed(proto.PurgeDead(all=True)) is Role.OPERATE
    assert needed(proto.DeadLetter(1)) is Role.READ
    assert needed(proto.DeadLetters()) is Role.READ
    for name in ("dead-letter", "dead-letters-replay", "dead-letters-purge"):
        assert name in proto.COMMANDS


@pytest.mark.parametrize(
    "request_",
    [
        proto.ReplayDead(),
        proto.ReplayDead(ids=[1], all=True),
        proto.ReplayDead(ids=[1], target="email"),
        proto.ReplayDead(all=True, limit=0),
        proto.ReplayDead(ids=list(range(10_001))),
        proto.PurgeDead(ids=[1], older_than=5.0),
        proto.PurgeDead(all=True, older_than=-1.0),
    ],
)
def test_a_selection_that_names_nothing_or_too_much_is_refused(
    request_: proto.ReplayDead | proto.PurgeDead,
) -> None:
    """The daemon checks what the CLI checks: ids xor all; filters only with all; bounds."""
    with pytest.raises(RequestError) as refused:
        request_.check()
    assert refused.value.code in ("bad_args", "too_many")


def test_replay_requests_parse_from_the_wire() -> None:
    """A replay line is structured into its typed request."""
    line = b'{"id": 1, "cmd": "dead-letters-replay", "args": {"all": true, "target": "email"}}'
    envelope = proto.parse(line, proto.converter())
    assert envelope.request == proto.ReplayDead(all=True, target="email")


# -- replay and purge on the in-memory store, under virtual time ----------------------------


REFUSING = "refusing"


@attrs.define
class Refusals:
    """Fake providers that refuse, permanently, each payload marked ``refusing`` while on."""

    on: bool = True

    async def behaviour(self, env: Envelope) -> Outcome:
        if env.payload.get(REFUSING) and self.on:
            return Permanent(reason="422 invalid_from_address", status=422)
        return Delivered(provider_id=f"fake-{env.id}")

    def setup(self, adapters: dict[str, FakeAdapter]) -> None:
        for adapter in adapters.values():
            adapter.behaviour = self.behaviour


@pytest.fixture
def refusals() -> Refusals:
    return Refusals()


async def dead_letters_in(
    core: Core, target: str, count: int, priority: str = "normal"
) -> list[int]:
    accepted = await core.daemon.submit(
        [MessageIn(target, {REFUSING: True, "n": n}, priority) for n in range(count)]
    )
    await core.daemon.wait_idle(60)
    ids = [a["id"] for a in accepted]
    assert all(core.store.rows[i].status is MessageStatus.DEAD for i in ids)
    return ids


async def settled() -> None:
    """Let every task run until it waits (an actor's claim under way finishes)."""
    await trio.testing.wait_all_tasks_blocked()


def queued(core: Core, target: str) -> dict[Priority, int]:
    return dict(core.store.counters.of(target).queued)


async def test_a_replayed_dead_letter_is_delivered_once_as_fresh_work(
    tmp_path: Path, autojump_clock: object, refusals: Refusals
) -> None:
    """Replay: queued again (attempts 0, route 0, same key), audited, then delivered once."""
    async with running_core(tmp_path, setup=refusals.setup) as core:
        (dead,) = await dead_letters_in(core, "trio", 1, "critical")
        key = core.store.rows[dead].key
        refusals.on = False
        reply: ReplayReply = await core.daemon.handle(
            proto.ReplayDead(ids=[dead], by="alice (uid 1000)")
        )
        assert reply == ReplayReply(replayed=[dead], skipped=[], remaining=0)
        await core.daemon.wait_idle(60)
        row = core.store.rows[dead]
        assert row.status is MessageStatus.DELIVERED and row.key == key
        assert row.attempts == 1  # counted from 0 again: one attempt since the replay
        calls = [e for e in core.adapters["alpha"].calls if e.id == dead]
        assert len(calls) == 2 and calls[1].attempts == 0 and calls[1].route_index == 0
        assert calls[1].idempotency_key == key
        kinds = [e.kind for e in core.store.event_log if e.message_id == dead]
        assert kinds[-3:] == ["replayed", "attempted", "delivered"]
        replayed = next(e for e in core.store.event_log if e.kind == "replayed")
        assert replayed.detail is not None and replayed.detail["by"] == "alice (uid 1000)"
        assert replayed.detail["reason"] == "422 invalid_from_address"
        assert core.store.counters.of("trio").total_queued == 0
        assert core.store.counters.of("trio").inflight == 0


async def test_replay_counts_the_messages_back_into_the_queue(
    tmp_path: Path, autojump_clock: object, refusals: Refusals
) -> None:
    """While the target is paused, replayed messages show as queued by their priority."""
    async with running_core(tmp_path, setup=refusals.setup) as core:
        bulk = await dead_letters_in(core, "beta", 3, "bulk")
        normal = await dead_letters_in(core, "beta", 2)
        await core.daemon.set_paused("beta", True)
        await settled()  # a claim begun before the pause ends (handed back)
        refusals.on = False
        reply: ReplayReply = await core.daemon.handle(proto.ReplayDead(all=True, target="beta"))
        assert reply.replayed == sorted(bulk + normal) and reply.remaining == 0
        await settled()
        assert queued(core, "beta") == {Priority.CRITICAL: 0, Priority.NORMAL: 2, Priority.BULK: 3}
        assert not core.daemon.is_idle()
        await core.daemon.set_paused("beta", False)
        await core.daemon.wait_idle(60)
        assert core.store.by_status(MessageStatus.DEAD) == []
        assert queued(core, "beta") == dict.fromkeys(Priority, 0)


async def test_replay_all_takes_chunks_above_a_cursor_and_only_its_target(
    tmp_path: Path, autojump_clock: object, refusals: Refusals
) -> None:
    """--all of a target: limit per request, `after` moves on, other targets untouched."""
    async with running_core(tmp_path, setup=refusals.setup) as core:
        alpha = await dead_letters_in(core, "alpha", 5)
        gamma = await dead_letters_in(core, "gamma", 2)
        await core.daemon.set_paused("alpha", True)
        await settled()  # a claim begun before the pause ends (handed back)
        first: ReplayReply = await core.daemon.handle(
            proto.ReplayDead(all=True, target="alpha", limit=2)
        )
        assert first == ReplayReply(replayed=alpha[:2], skipped=[], remaining=3)
        second: ReplayReply = await core.daemon.handle(
            proto.ReplayDead(all=True, target="alpha", limit=2, after=alpha[1])
        )
        assert second.replayed == alpha[2:4] and second.remaining == 1
        assert sorted(core.store.by_status(MessageStatus.DEAD)) == sorted([alpha[4], *gamma])


async def test_replay_of_ids_skips_what_is_not_a_dead_letter(
    tmp_path: Path, autojump_clock: object, refusals: Refusals
) -> None:
    """Delivered, unknown and already replayed ids are skipped and said to be."""
    async with running_core(tmp_path, setup=refusals.setup) as core:
        (dead,) = await dead_letters_in(core, "alpha", 1)
        (fine,) = await core.daemon.submit([MessageIn("alpha", {"n": 1})])
        await core.daemon.wait_idle(60)
        await core.daemon.set_paused("alpha", True)
        await settled()  # a claim begun before the pause ends (handed back)
        reply: ReplayReply = await core.daemon.handle(proto.ReplayDead(ids=[dead, fine["id"], 999]))
        assert reply == ReplayReply(replayed=[dead], skipped=[fine["id"], 999], remaining=0)
        again: ReplayReply = await core.daemon.handle(proto.ReplayDead(ids=[dead]))
        assert again.replayed == [] and again.skipped == [dead]
        await settled()
        assert queued(core, "alpha")[Priority.NORMAL] == 1


async def test_purge_removes_messages_and_keeps_their_history(
    tmp_path: Path, autojump_clock: object, refusals: Refusals
) -> None:
    """Purge: the rows go, counters stay, the audit log keeps every event and adds `purged`."""
    async with running_core(tmp_path, setup=refusals.setup) as core:
        ids = await dead_letters_in(core, "alpha", 3)
        before = list(core.store.event_log)
        reply: PurgeReply = await core.daemon.handle(
            proto.PurgeDead(ids=ids[:2], by="ops (uid 1001)")
        )
        assert reply == PurgeReply(purged=ids[:2], skipped=[], remaining=0)
        assert ids[0] not in core.store.rows and ids[2] in core.store.rows
        assert core.store.event_log[: len(before)] == before  # nothing removed
        history: AuditReply = await core.daemon.handle(proto.Audit(message=ids[0]))
        kinds = [e.kind for e in history.events]
        # The audit log now lists newest first (it was oldest first).
        assert kinds[-1] == "submitted" and kinds[:2] == ["purged", "dead_lettered"]
        detail = history.events[0].detail
        assert detail is not None and detail["by"] == "ops (uid 1001)"
        assert queued(core, "alpha") == dict.fromkeys(Priority, 0)
        with pytest.raises(RequestError) as gone:
            await core.daemon.handle(proto.DeadLetter(ids[0]))
        assert gone.value.code == "not_found"
        listed: DeadLettersReply = await core.daemon.handle(proto.DeadLetters())
        assert [d.message_id for d in listed.dead_letters] == [ids[2]]


async def test_purge_older_than_keeps_recent_dead_letters(
    tmp_path: Path, autojump_clock: object, refusals: Refusals
) -> None:
    """--older-than: only those dead-lettered at least that long ago go."""
    async with running_core(tmp_path, setup=refusals.setup) as core:
        old = await dead_letters_in(core, "alpha", 2)
        await trio.sleep(3600)  # virtual time
        recent = await dead_letters_in(core, "alpha", 1)
        reply: PurgeReply = await core.daemon.handle(
            proto.PurgeDead(all=True, target="alpha", older_than=1800)
        )
        assert reply == PurgeReply(purged=old, skipped=[], remaining=0)
        assert core.store.by_status(MessageStatus.DEAD) == recent


async def test_show_list_and_audit_by_kind(
    tmp_path: Path, autojump_clock: object, refusals: Refusals
) -> None:
    """show returns payload, reason and history; list filters by target; audit by kind."""
    async with running_core(tmp_path, setup=refusals.setup) as core:
        (alpha,) = await dead_letters_in(core, "alpha", 1)
        (beta,) = await dead_letters_in(core, "beta", 1)
        shown: DeadLetterReply = await core.daemon.handle(proto.DeadLetter(alpha))
        assert shown.payload == {REFUSING: True, "n": 0}
        assert shown.reason == "422 invalid_from_address"
        assert shown.at == pytest.approx(EPOCH, abs=60)
        assert [e.kind for e in shown.events][-1] == "dead_lettered"  # history: oldest first
        listed: DeadLettersReply = await core.daemon.handle(proto.DeadLetters(target="beta"))
        assert [d.message_id for d in listed.dead_letters] == [beta]
        await core.daemon.handle(proto.ReplayDead(ids=[beta]))
        kinds = [EventKind.REPLAYED, EventKind.DEAD_LETTERED]
        audit: AuditReply = await core.daemon.handle(proto.Audit(kinds=kinds))
        # The audit log now lists newest first (it was oldest first).
        assert [(e.kind, e.message_id) for e in audit.events] == [
            ("replayed", beta),
            ("dead_lettered", beta),
            ("dead_lettered", alpha),
        ]


# -- the SQLite store --------------------------------------------------------------------------


@pytest.fixture
async def loop() -> AsyncIterator[None]:
    async with trio_asyncio.open_loop():
        yield


class Heard:
    def __init__(self) -> None:
        self.targets: list[set[str]] = []

    def submitted(self, targets: set[str]) -> None:
        self.targets.append(targets)

    def settled(self, settles: Any) -> None:
        pass


async def dead_in_sqlite(store: SqliteStore, target: str, count: int) -> list[int]:
    from ringbearer.store import Attempt, Settle, SettleKind

    accepted = await store.submit(
        [NewMessage(target, {"n": n}, Priority.BULK) for n in range(count)]
    )
    claimed = await store.claim(target, count)
    await store.record(
        [
            Settle(
                c.id,
                target,
                SettleKind.DEAD_LETTERED,
                "resend",
                1,
                time.time(),
                reason="422",
                priority=c.priority,
                attempt=Attempt("resend", time.time(), 0.01, "permanent", status=422),
            )
            for c in claimed
        ]
    )
    await store.flush()
    return [a.id for a in accepted]


async def test_sqlite_replay_and_purge(tmp_path: Path, loop: None) -> None:
    """SQLite: replay resets the row and audits it once; purge deletes it, the log stays."""
    db = tmp_path / "rb.db"
    async with SqliteStore.open(db, clock=time.time) as store:
        ids = await dead_in_sqlite(store, "email", 4)
        heard = Heard()
        store.listener = heard
        assert await store.count_dead() == 4 and await store.count_dead(after=ids[1]) == 2
        assert await store.replay_dead([ids[0], 999], by="alice") == [ids[0]]
        assert heard.targets == [{"email"}]
        assert store.counters.of("email").queued[Priority.BULK] == 1
        (row,) = await store.claim("email", 10)
        assert (row.id, row.attempts, row.route_index, row.member_attempts) == (ids[0], 0, 0, 0)
        # The store's reads now list newest first (they were oldest first).
        replayed = await store.events(message_id=ids[0], kinds=["replayed", "attempted"])
        assert [e.kind for e in replayed] == ["replayed", "attempted"]  # no extra 'attempted'
        assert replayed[0].detail == {
            "by": "alice",
            "target": "email",
            "reason": "422",
            "attempts": 1,
        }
        purged = await store.purge_dead(target="email", after=ids[1], limit=1, by="bob")
        assert purged == [ids[2]]
        assert await store.dead_letter(ids[2]) is None
        assert (await store.dead_letter(ids[1])) is not None
        assert [d.message_id for d in await store.dead_letters(target="email")] == [
            ids[3],
            ids[1],
        ]
        assert await store.dead_letters(target="slack") == []
        assert await store.purge_dead(dead_before=time.time() - 3600) == []
        history = [e.kind for e in await store.events(message_id=ids[2])]
        assert history == ["purged", "dead_lettered", "attempted", "submitted"]
        assert store.counters.of("email").queued[Priority.BULK] == 0
    async with SqliteStore.open(db, clock=time.time) as store:
        assert store.counters.of("email").inflight == 1  # the replayed claim, from the file
        more = await store.submit([NewMessage("email", {})])
        assert more[0].id == ids[3] + 1  # a purged id is never reused
