"""The reshaped CLI, through ``ringbearer._cli.main`` and the real process.

Help and parsing run in-process; paging, key reuse and the status line run
against the real daemon (its own sandbox), marked ``e2e``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from ringbearer import _cli, _cli_messages, _cli_operate
from ringbearer._cli_base import EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from ringbearer._errors import ErrorCode, RequestError
from ringbearer.control import PROTOCOL_VERSION
from ringbearer.control._replies import (
    IntegrationStatus,
    ModeReply,
    QueueDepth,
    StatusReply,
    StoreStatus,
)
from ringbearer.store import EventKind

from .procs import Daemon, config_for, email, running, write_jsonl

UPTIME = r"up (\d+s|\d+m\d\ds|\d+h\d\dm|\d+d\d\dh)"  # the one duration format


def parse(*argv: str) -> Any:
    return _cli.build_parser().parse_args(list(argv))


def walk(parser: argparse.ArgumentParser, path: str = "ringbearer") -> Iterator[tuple[str, Any]]:
    """Every parser under ``parser`` (itself first), by its command line."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{path} {name}")


PARSERS = dict(walk(_cli.build_parser()))


def options(path: str) -> set[str]:
    return {flag for action in PARSERS[path]._actions for flag in action.option_strings}


# -- help ------------------------------------------------------------------------------------


def test_bare_ringbearer_prints_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`ringbearer` with no command prints the help and exits 0."""
    assert _cli.main([]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("usage: ringbearer") and "exit codes:" in out


def test_help_has_no_raw_markup(capsys: pytest.CaptureFixture[str]) -> None:
    """`ringbearer --help` exits 0 and shows no ``-style markup."""
    with pytest.raises(SystemExit) as exited:
        _cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "COMMAND" in out and "``" not in out


@pytest.mark.parametrize("path", list(PARSERS))
def test_every_help_lists_exit_codes_and_no_markup(path: str) -> None:
    """Every command's and sub-action's --help lists its exit codes, with no `` markup."""
    shown = PARSERS[path].format_help()
    assert "exit codes:" in shown and "``" not in shown


@pytest.mark.parametrize("path", list(PARSERS))
def test_every_option_and_action_has_a_help_text(path: str) -> None:
    """Each option, argument and sub-command has a help text (help and version aside)."""
    for action in PARSERS[path]._actions:
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            # The group itself is a placeholder; each command in it is what --help lists.
            for choice in action._choices_actions:
                assert choice.help, f"{path} {choice.dest}"
        else:
            assert action.help, f"{path} {action.option_strings or action.dest}"


@pytest.mark.parametrize(
    ("path", "option", "offered"),
    [
        ("ringbearer status", "--json", True),
        ("ringbearer status", "--socket", True),
        ("ringbearer config check", "--json", False),
        ("ringbearer config check", "--socket", False),
        ("ringbearer run", "--json", False),
        ("ringbearer run", "--socket", False),
        ("ringbearer simulate", "--config", False),
        ("ringbearer simulate", "--socket", False),
        ("ringbearer simulate", "--json", False),
        ("ringbearer sandbox fault", "--json", False),
        ("ringbearer sandbox clear", "--json", False),
    ],
)
def test_options_that_would_do_nothing_are_not_offered(
    path: str, option: str, offered: bool
) -> None:
    """--json and --socket are offered where they act (status), not where they would not."""
    assert (option in options(path)) is offered


# -- one time grammar ------------------------------------------------------------------------


def test_durations_and_times_ahead_parse() -> None:
    """`wait --timeout 2s` is 2 seconds; `--deliver-by 30d` is 30 days from now."""
    assert parse("wait", "--timeout", "2s").timeout == 2.0
    deliver_by = parse("send", "slack", "--deliver-by", "30d").deliver_by
    assert deliver_by == pytest.approx(time.time() + 30 * 86400, abs=60)


TIME_AHEAD = [
    ["send", "slack", "--payload", "{}", "--deliver-by"],
    ["wedding-day", "on", "--until"],
]


@pytest.mark.parametrize("argv", TIME_AHEAD)
@pytest.mark.parametrize(
    ("when", "said"),
    [
        ("2020-01-01T00:00Z", "in the past"),
        ("1000000000", "in the past"),
        ("1796603207684", "milliseconds"),
    ],
)
def test_a_time_ahead_in_the_past_or_in_milliseconds_exits_2(
    argv: list[str], when: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--deliver-by and --until refuse a past time, and a Unix time in milliseconds."""
    with pytest.raises(SystemExit) as exited:
        _cli.main([*argv, when, "--socket", "/nonexistent"])
    assert exited.value.code == EXIT_USAGE
    assert said in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "said", "not_said"),
    [
        (TIME_AHEAD[0], "a duration from now", "back from now"),
        (TIME_AHEAD[1], "a duration from now", "back from now"),
        (["audit", "--since"], "a duration back from now", None),
    ],
)
def test_time_errors_say_from_now_ahead_and_back_from_now_for_since(
    argv: list[str], said: str, not_said: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A time that is none says which way it counts: "from now" ahead, "back from now" back."""
    with pytest.raises(SystemExit) as exited:
        _cli.main([*argv, "soon", "--socket", "/nonexistent"])
    assert exited.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert said in err
    assert not_said is None or not_said not in err


# -- what a command refuses before it asks ----------------------------------------------------


def test_a_payload_that_is_not_an_object_exits_2_with_one_clear_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`send slack --payload '[1]'`: exit 2, a line naming --payload (not an internal code),
    then the command's usage line, as argparse's own errors have."""
    argv = ["send", "slack", "--payload", "[1]", "--socket", "/nonexistent"]
    assert _cli.main(argv) == EXIT_USAGE
    first, *usage = capsys.readouterr().err.splitlines()
    assert first == "ringbearer: --payload must be a JSON object ({...}), not list"
    assert usage[0].startswith("usage: ringbearer send ")
    assert "internal" not in "\n".join(usage)


def test_an_unknown_audit_kind_exits_2_listing_the_kinds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`audit --kind bogus`: exit 2, naming it and listing every known kind."""
    with pytest.raises(SystemExit) as exited:
        _cli.main(["audit", "--kind", "bogus", "--socket", "/nonexistent"])
    assert exited.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "unknown event kind bogus" in err
    assert "known: " + ", ".join(_cli_messages.EVENT_KINDS) in err


def test_the_cli_knows_every_event_kind_of_the_store() -> None:
    """The CLI's kinds are the store's EventKind, in order: one vocabulary."""
    assert list(_cli_messages.EVENT_KINDS) == [k.value for k in EventKind]


@pytest.mark.parametrize(
    ("code", "exit_code"),
    [
        (ErrorCode.BAD_ARGS, EXIT_USAGE),
        (ErrorCode.TOO_MANY, EXIT_USAGE),
        (ErrorCode.FORBIDDEN, EXIT_REFUSED),
        (ErrorCode.KEY_REUSED, EXIT_REFUSED),
    ],
)
def test_a_request_the_daemon_finds_malformed_is_usage_others_are_refusals(
    code: ErrorCode, exit_code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's bad_args/too_many exit 2 (as argparse's); its other refusals exit 1."""

    def refuse(args: Any, request: Any, timeout: float | None = 30.0) -> Any:
        raise RequestError(code, "no")

    monkeypatch.setattr(_cli_messages, "call", refuse)
    assert _cli.main(["send", "slack", "--payload", "{}", "--socket", "x"]) == exit_code


# -- the status line, in-process -------------------------------------------------------------


def integration(name: str, **changes: Any) -> IntegrationStatus:
    base = IntegrationStatus(
        name=name,
        kind="resend",
        state="running",
        paused=False,
        breaker="closed",
        breaker_forced=False,
        health="healthy",
        success_rate=1.0,
        latency_p50=0.0,
        latency_p95=0.0,
        latency_p99=0.0,
        lanes=2,
        restarts=0,
        delivered=0,
        retried=0,
        dead=0,
        last_error=None,
        queued=QueueDepth(),
        in_flight=0,
        attempting=0,
        budgets=[],
    )
    return attrs.evolve(base, **changes)


LONG_ERROR = "HTTP 503: the upstream mail relay is temporarily unavailable, please retry later"


def a_status(uptime: float) -> StatusReply:
    return StatusReply(
        version="0.1.0",
        protocol=PROTOCOL_VERSION,
        uptime_seconds=uptime,
        config="config.toml",
        mode="normal",
        wedding_day=ModeReply(False, "none", "", None),
        sandbox=None,
        metrics=None,
        integrations=[
            integration("resend", breaker="open", breaker_forced=True, last_error=LONG_ERROR)
        ],
        groups={},
        store=StoreStatus("ringbearer.db", 0, 0, 0),
    )


@pytest.mark.parametrize(
    "argv", [["status"], ["top", "--once", "--interval", "0.5"]], ids=["status", "top"]
)
def test_status_and_top_show_uptime_a_forced_breaker_and_a_cut_error_alike(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One uptime format (up 13m11s); a forced breaker is open* with a legend; errors cut."""
    monkeypatch.setattr(_cli_operate, "call", lambda args, request, timeout=30.0: a_status(791.0))
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    assert _cli.main([*argv, "--socket", "x"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert " · up 13m11s" in lines[0]
    row = next(line for line in lines if line.startswith("resend "))
    assert row.split()[2] == "open*"
    assert "* forced by an operator (ringbearer breaker NAME reset lets it move)" in lines
    if argv == ["status"]:
        cut = row[row.index("HTTP 503") :]
        assert cut.endswith("…") and len(cut) <= 60 and LONG_ERROR.startswith(cut[:-1] + " ")


def test_config_check_counts_in_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`config check` of the shipped config (one group) says "1 group", not "1 groups"."""
    path = tmp_path / "config.toml"
    path.write_text(config_for(tmp_path))
    assert _cli.main(["config", "check", "-c", str(path)]) == EXIT_OK
    assert capsys.readouterr().out == f"{path}: ok (19 integrations, 1 group)\n"


# -- against the real daemon -------------------------------------------------------------------


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def sent(daemon: Daemon, path: Path, messages: list[dict[str, Any]]) -> list[int]:
    """Submit ``messages`` through `send --file --json`; their ids."""
    reply = json.loads(ok(daemon.cli("send", "--file", str(write_jsonl(path, messages)), "--json")))
    return [a["id"] for a in reply["accepted"]]


def idle(daemon: Daemon) -> None:
    assert ok(daemon.cli("wait", "--timeout", "60s")).strip() == "idle"


def more_line(text: str, command: str) -> int | None:
    """The cursor of a page's closing line, or None when it has none."""
    found = re.search(rf"\n\nmore, older ones: ringbearer {command} --before (\d+)\n\Z", text)
    return int(found.group(1)) if found else None


def message_ids(text: str) -> list[int]:
    return [int(m) for m in re.findall(r" msg=(\d+)", text)]


@pytest.mark.e2e
def test_audit_pages_newest_first_with_a_before_cursor(tmp_path: Path) -> None:
    """`audit --limit 3` shows the newest 3 and how to page; `--before N` goes on with older."""
    with running(tmp_path, config_for(tmp_path)) as daemon:
        m1, m2, m3, m4, m5 = sent(daemon, tmp_path / "m.jsonl", [email(n) for n in range(5)])
        idle(daemon)

        first = ok(daemon.cli("audit", "--kind", "submitted", "--limit", "3"))
        assert message_ids(first) == [m5, m4, m3]
        before = more_line(first, "audit")
        assert before is not None
        older = ok(
            daemon.cli("audit", "--kind", "submitted", "--limit", "3", "--before", str(before))
        )
        assert message_ids(older) == [m2, m1] and more_line(older, "audit") is None

        page = ok(daemon.cli("audit", "--limit", "3"))
        assert len(page.split("\n\n")[0].splitlines()) == 3 and more_line(page, "audit")
        reply = json.loads(ok(daemon.cli("audit", "--limit", "3", "--json")))
        ids = [e["id"] for e in reply["events"]]
        assert len(ids) == 3 and ids == sorted(ids, reverse=True) and reply["before"] == ids[-1]
        next_page = daemon.cli("audit", "--limit", "3", "--before", str(ids[-1]), "--json")
        next_ids = [e["id"] for e in json.loads(ok(next_page))["events"]]
        assert next_ids == sorted(next_ids, reverse=True) and max(next_ids) < ids[-1]


@pytest.mark.e2e
def test_dead_letters_page_newest_first_with_a_before_cursor(tmp_path: Path) -> None:
    """`dead-letters --limit 3` lists the newest 3 and how to page; `--before N` the older."""
    with running(tmp_path, config_for(tmp_path)) as daemon:
        # The provider's own 4xx: permanent, so each email is dead-lettered, not failed over.
        ok(daemon.cli("sandbox", "fault", "resend", "--permanent", "1"))
        m1, m2, m3, m4, m5 = sent(daemon, tmp_path / "m.jsonl", [email(n) for n in range(5)])
        idle(daemon)

        def listed(text: str) -> list[int]:
            rows = text.split("\n\n")[0].splitlines()[1:]  # the table, less its header
            return [int(row.split()[0]) for row in rows]

        first = ok(daemon.cli("dead-letters", "--limit", "3"))
        assert listed(first) == [m5, m4, m3]
        assert more_line(first, "dead-letters") == m3
        older = ok(daemon.cli("dead-letters", "list", "--limit", "3", "--before", str(m3)))
        assert listed(older) == [m2, m1] and more_line(older, "dead-letters") is None
        reply = json.loads(ok(daemon.cli("dead-letters", "--limit", "3", "--json")))
        assert [d["message_id"] for d in reply["dead_letters"]] == [m5, m4, m3]
        assert reply["before"] == m3


@pytest.mark.e2e
def test_a_reused_key_is_refused_naming_the_earlier_message(tmp_path: Path) -> None:
    """A key with a new payload: exit 1, key_reused naming the earlier id; the same: duplicate."""
    with running(tmp_path, config_for(tmp_path)) as daemon:
        accepted = ok(daemon.cli("send", "slack", "--payload", '{"text":"a"}', "--key", "k1"))
        found = re.fullmatch(r"accepted id=(\d+) key=k1\n", accepted)
        assert found, accepted
        first = int(found.group(1))

        reused = daemon.cli("send", "slack", "--payload", '{"text":"b"}', "--key", "k1")
        assert reused.returncode == EXIT_REFUSED and reused.stdout == ""
        assert reused.stderr.startswith("ringbearer: key_reused: ")
        assert f"already used by message {first} " in reused.stderr

        again = ok(daemon.cli("send", "slack", "--payload", '{"text":"a"}', "--key", "k1"))
        assert again == f"accepted id={first} key=k1 (duplicate)\n"

        lines = [
            {"target": "slack", "payload": {"text": "a"}, "key": "k1"},
            {"target": "slack", "payload": {"text": "c"}, "key": "k2"},
        ]
        path = write_jsonl(tmp_path / "two.jsonl", lines)
        assert ok(daemon.cli("send", "--file", str(path))) == "accepted 2 messages (1 duplicate)\n"


@pytest.mark.e2e
def test_status_shows_uptime_in_the_one_duration_format(tmp_path: Path) -> None:
    """`status`'s head line: the protocol, the mode and `up` as 42s, 13m11s, 5h02m or 3d04h."""
    with running(tmp_path, config_for(tmp_path)) as daemon:
        head = ok(daemon.cli("status")).splitlines()[0]
    assert re.fullmatch(
        rf"ringbearer \S+ · protocol {PROTOCOL_VERSION} · mode normal \(off\) · {UPTIME}"
        r" · sandbox http://127\.0\.0\.1:\d+ · webhooks http://127\.0\.0\.1:\d+",
        head,
    ), head
