"""The deliverability CLI: `suppression`, `deliverability`, and `send`'s new options.

Parsing and the views are pure and tested in-process; each command is run
through ``_cli.main`` against a fake daemon (``call`` replaced) that keeps
the typed requests it was sent and answers typed replies.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from ringbearer import _cli, _cli_deliverability, _cli_messages
from ringbearer import _views_deliverability as views
from ringbearer._cli_base import EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE
from ringbearer._errors import ErrorCode, RequestError
from ringbearer.control import _protocol as proto
from ringbearer.control._replies import (
    AcceptedMessage,
    DeliverabilityReply,
    DomainResumeReply,
    DomainView,
    FunnelView,
    RefusedMessage,
    SubmitReply,
    SuppressionCheckReply,
    SuppressionRemoveReply,
    SuppressionsReply,
    SuppressionVerdict,
    SuppressionView,
)

from .procs import write_jsonl

E = 1_800_000_000.0  # 2027-01-15T08:00:00Z
HOUR = 3600.0


def parse(*argv: str) -> Any:
    return _cli.build_parser().parse_args(list(argv))


# -- parsing -----------------------------------------------------------------------------------


def test_bare_suppression_lists_and_list_keeps_the_parents_options() -> None:
    """`suppression` alone lists; options given before `list` survive it."""
    bare = parse("suppression")
    assert bare.fn is _cli_deliverability.cmd_suppression_list
    assert (bare.address, bare.limit, bare.after) == (None, 1000, 0)
    nested = parse("suppression", "--address", "a@x.org", "--json", "list", "--limit", "5")
    assert nested.fn is _cli_deliverability.cmd_suppression_list
    assert (nested.address, nested.limit, nested.after, nested.json) == ("a@x.org", 5, 0, True)


def test_suppression_actions_parse() -> None:
    check = parse("suppression", "check", "a@x.org", "--category", "marketing")
    assert check.fn is _cli_deliverability.cmd_suppression_check
    assert (check.address, check.category) == ("a@x.org", "marketing")
    before = time.time()
    add = parse("suppression", "add", "a@x.org", "--note", "asked", "--until", "2h")
    assert (add.address, add.note, add.scope) == ("a@x.org", "asked", "*")
    assert before + 2 * HOUR <= add.until <= time.time() + 2 * HOUR
    remove = parse("suppression", "remove", "+15005550001", "--scope", "marketing")
    assert (remove.address, remove.scope, remove.note) == ("+15005550001", "marketing", "")


def test_deliverability_defaults_to_the_last_24_hours_and_resume_takes_a_domain() -> None:
    before = time.time()
    report = parse("deliverability")
    assert report.fn is _cli_deliverability.cmd_deliverability and report.domain is None
    assert before - 24 * HOUR <= report.since <= time.time() - 24 * HOUR
    since = parse("deliverability", "--domain", "x.org", "--since", "2026-11-28T14:00Z")
    assert (since.domain, since.since) == ("x.org", 1795874400.0)
    resume = parse("deliverability", "resume", "news.example.com")
    assert resume.fn is _cli_deliverability.cmd_deliverability_resume
    assert resume.name == "news.example.com"


@pytest.mark.parametrize(
    "argv",
    [
        ["suppression", "add", "a@x.org"],  # no --note
        ["suppression", "add", "a@x.org", "--note", "x", "--until", "-1h"],
        ["suppression", "add", "a@x.org", "--note", "x", "--until", "1000"],  # the past
        ["suppression", "list", "--limit", "0"],
        ["suppression", "check"],
        ["deliverability", "--since", "yesterday"],
        ["deliverability", "resume"],
        ["send", "email", "--payload", "{}", "--not-before", "2020-01-01T00:00Z"],
        ["send", "email", "--payload", "{}", "--not-before", "soon"],
    ],
)
def test_bad_usage_exits_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _cli.main([*argv, "--socket", "/nonexistent"])
    assert exited.value.code == EXIT_USAGE


@pytest.mark.parametrize(
    "argv",
    [
        ["suppression"],
        ["suppression", "check", "a@x.org"],
        ["suppression", "add", "a@x.org", "--note", "x"],
        ["suppression", "remove", "a@x.org"],
        ["deliverability"],
        ["deliverability", "resume", "x.org"],
    ],
)
def test_an_unreachable_daemon_exits_3(tmp_path: Path, argv: list[str]) -> None:
    assert _cli.main([*argv, "--socket", str(tmp_path / "none.sock")]) == EXIT_UNREACHABLE


def test_the_commands_are_found_by_name() -> None:
    """A call builds only its module's parser: the new commands are mapped to theirs."""
    assert _cli.COMMAND_MODULES["suppression"] == "_cli_deliverability"
    assert _cli.COMMAND_MODULES["deliverability"] == "_cli_deliverability"
    only = _cli.build_parser("_cli_deliverability").parse_args(["suppression", "check", "a@b.c"])
    assert only.fn is _cli_deliverability.cmd_suppression_check


# -- against a fake daemon -------------------------------------------------------------------


def suppression(id: int, address: str = "ann@example.com", **kw: Any) -> SuppressionView:
    fields: dict[str, Any] = {
        "scope": "*",
        "reason": "hard_bounce",
        "created_at": E,
        "until": None,
        "by": "resend",
        "note": "",
    }
    fields.update(kw)
    return SuppressionView(id, address, **fields)


@attrs.define
class FakeDaemon:
    """Keeps each typed request; answers with what ``answers`` makes of it."""

    answers: Callable[[Any], Any]
    requests: list[Any] = attrs.Factory(list)

    def call(self, args: Any, request: Any, timeout: float | None = 30.0) -> Any:
        self.requests.append(request)
        return self.answers(request)


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaemon]:
    fake = FakeDaemon(lambda request: None)
    monkeypatch.setattr(_cli_deliverability, "call", fake.call)
    monkeypatch.setattr(_cli_messages, "call", fake.call)
    yield fake


def run(*argv: str) -> int:
    return _cli.main([*argv, "--socket", "x"])


def test_add_sends_who_and_why_and_prints_what_was_kept(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    """The request names the operator (user and uid) and the note; the reply is printed."""
    daemon.answers = lambda q: suppression(7, q.address, scope=q.scope, reason="manual")
    code = run("suppression", "add", "ann@example.com", "--scope", "marketing", "--note", "phone")
    assert code == EXIT_OK
    (request,) = daemon.requests
    assert isinstance(request, proto.SuppressionAdd)
    assert (request.address, request.scope, request.note, request.until) == (
        "ann@example.com",
        "marketing",
        "phone",
        None,
    )
    assert "uid" in request.by
    assert capsys.readouterr().out == "suppressed ann@example.com (marketing) until removed: id 7\n"


def test_remove_of_nothing_exits_1_and_says_so(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.answers = lambda q: SuppressionRemoveReply(q.address, [])
    assert run("suppression", "remove", "x@y.org", "--note", "typo") == EXIT_REFUSED
    (request,) = daemon.requests
    assert (request.scope, request.note) == (None, "typo") and "uid" in request.by
    assert capsys.readouterr().out == "x@y.org: no such suppression\n"


def test_remove_prints_what_went(daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    gone = [suppression(3, scope="marketing", reason="unsubscribe")]
    daemon.answers = lambda q: SuppressionRemoveReply(q.address, gone)
    assert run("suppression", "remove", "ann@example.com", "--scope", "marketing") == EXIT_OK
    out = capsys.readouterr().out
    assert out == "ann@example.com: removed 1 suppression: marketing (unsubscribe)\n"


def test_list_sends_its_filters_and_prints_a_table_with_the_next_page(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.answers = lambda q: SuppressionsReply([suppression(3), suppression(4)], after=4)
    assert run("suppression", "list", "--address", "ann@example.com", "--limit", "2") == EXIT_OK
    assert daemon.requests == [proto.SuppressionList("ann@example.com", 0, 2)]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "ADDRESS", "SCOPE", "REASON", "SINCE", "UNTIL", "BY", "NOTE"]
    assert lines[1].split()[:4] == ["3", "ann@example.com", "*", "hard_bounce"]
    assert lines[-1] == "more: ringbearer suppression list --after 4"


def test_check_prints_why_and_json_is_the_reply(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    why = "suppressed after a hard bounce (every category) by resend"
    reply = SuppressionCheckReply(
        "bounce@simulator.test",
        [suppression(3, "bounce@simulator.test")],
        [
            SuppressionVerdict("transactional", "normal", True, why, 3),
            SuppressionVerdict("transactional", "critical", False, "critical mail may try"),
        ],
    )
    daemon.answers = lambda q: reply
    assert run("suppression", "check", "bounce@simulator.test") == EXIT_OK
    assert daemon.requests == [proto.SuppressionCheck("bounce@simulator.test", None)]
    out = capsys.readouterr().out
    assert out.startswith("bounce@simulator.test: 1 suppression in force\n")
    assert f"transactional  normal    refused  {why}\n" in out
    assert "transactional  critical  allowed  critical mail may try" in out
    assert run("suppression", "check", "bounce@simulator.test", "--json") == EXIT_OK
    shown = json.loads(capsys.readouterr().out)
    assert shown["verdicts"][0] == {
        "category": "transactional",
        "priority": "normal",
        "refused": True,
        "reason": why,
        "suppression": 3,
    }


def test_deliverability_sends_domain_and_since(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.answers = lambda q: DeliverabilityReply(q.since, [], [])
    assert run("deliverability", "--domain", "x.org", "--since", str(E)) == EXIT_OK
    assert daemon.requests == [proto.DeliverabilityReport("x.org", E)]
    assert capsys.readouterr().out == (
        "email since 2027-01-15T08:00:00Z\n\nno email sent\n\n"
        "no sending domain watched by the reputation guard\n"
    )


@pytest.mark.parametrize(
    ("reply", "code", "out"),
    [
        (
            DomainResumeReply("news.example.com", True, 12),
            EXIT_OK,
            "news.example.com: resumed, 12 held messages released\n",
        ),
        (
            DomainResumeReply("x.org", False, 0),
            EXIT_REFUSED,
            "x.org: was not paused (nothing held)\n",
        ),
    ],
)
def test_resume_names_who_and_exits_1_when_nothing_was_paused(
    daemon: FakeDaemon,
    capsys: pytest.CaptureFixture[str],
    reply: DomainResumeReply,
    code: int,
    out: str,
) -> None:
    daemon.answers = lambda q: reply
    assert run("deliverability", "resume", reply.domain) == code
    (request,) = daemon.requests
    assert request.domain == reply.domain and "uid" in request.by
    assert capsys.readouterr().out == out


def test_a_refusal_is_printed_and_exits_as_its_code(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad scope is the daemon's bad_args: exit 2; a role refusal: exit 1."""

    def refuse(code: ErrorCode) -> Callable[[Any], Any]:
        def answer(request: Any) -> Any:
            raise RequestError(code, "scope: unknown scope 'promos'; known: *, marketing")

        return answer

    daemon.answers = refuse(ErrorCode.BAD_ARGS)
    assert run("suppression", "add", "a@x.org", "--scope", "promos", "--note", "x") == EXIT_USAGE
    assert "bad_args: scope: unknown scope 'promos'" in capsys.readouterr().err
    daemon.answers = refuse(ErrorCode.FORBIDDEN)
    assert run("suppression", "remove", "a@x.org") == EXIT_REFUSED


# -- send --------------------------------------------------------------------------------------


def accepting(refused_at: set[int]) -> Callable[[Any], Any]:
    """A submit that refuses the messages whose payload ``n`` is in ``refused_at``."""

    def answer(request: proto.Submit) -> SubmitReply:
        accepted, refused = [], []
        for i, m in enumerate(request.messages):
            if m.payload["n"] in refused_at:
                reason = "recipient suppressed: hard_bounce (every category)"
                refused.append(RefusedMessage(i, "suppressed", reason))
            else:
                accepted.append(AcceptedMessage(m.payload["n"], f"k{m.payload['n']}", False))
        return SubmitReply(accepted, refused)

    return answer


def test_send_carries_not_before_and_category(daemon: FakeDaemon) -> None:
    daemon.answers = accepting(set())
    before = time.time()
    payload = '{"n": 1}'
    code = run(
        "send", "email", "--payload", payload, "--not-before", "2h", "--category", "marketing"
    )
    assert code == EXIT_OK
    ((message,),) = [r.messages for r in daemon.requests]
    assert message.category == "marketing"
    assert message.not_before is not None
    assert before + 2 * HOUR <= message.not_before <= time.time() + 2 * HOUR


def test_send_without_them_leaves_them_to_the_daemon(daemon: FakeDaemon) -> None:
    daemon.answers = accepting(set())
    assert run("send", "email", "--payload", '{"n": 1}') == EXIT_OK
    ((message,),) = [r.messages for r in daemon.requests]
    assert (message.category, message.not_before) == (None, None)


def test_a_file_may_schedule_each_line(tmp_path: Path, daemon: FakeDaemon) -> None:
    """not_before and category in a JSON line; not_before as a Unix time or a CLI time."""
    daemon.answers = accepting(set())
    lines: list[dict[str, Any]] = [
        {"target": "email", "payload": {"n": 0}, "not_before": "1h", "category": "marketing"},
        {"target": "email", "payload": {"n": 1}, "not_before": E},
    ]
    before = time.time()
    assert run("send", "--file", str(write_jsonl(tmp_path / "m.jsonl", lines))) == EXIT_OK
    first, second = daemon.requests[0].messages
    assert before + HOUR <= (first.not_before or 0) <= time.time() + HOUR
    assert first.category == "marketing" and second.not_before == E


def test_a_file_line_scheduled_in_the_past_exits_2_naming_the_line(
    tmp_path: Path, daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [{"target": "email", "payload": {"n": 0}, "not_before": "2020-01-01T00:00Z"}]
    assert run("send", "--file", str(write_jsonl(tmp_path / "m.jsonl", lines))) == EXIT_USAGE
    assert "m.jsonl:1: not_before: " in capsys.readouterr().err
    assert daemon.requests == []


def test_send_prints_each_refused_message_and_exits_1(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.answers = accepting({0})
    assert run("send", "email", "--payload", '{"n": 0}') == EXIT_REFUSED
    assert capsys.readouterr().out == (
        "refused messages[0]: suppressed: recipient suppressed: hard_bounce (every category)\n"
    )


def test_refused_indexes_count_across_chunks(
    tmp_path: Path, daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    """1,500 messages go as 1,000 + 500: a refusal in the second chunk keeps its place in the
    file; the others are accepted; exit 1."""
    daemon.answers = accepting({3, 1200})
    lines = [{"target": "email", "payload": {"n": n}} for n in range(1500)]
    assert run("send", "--file", str(write_jsonl(tmp_path / "m.jsonl", lines))) == EXIT_REFUSED
    assert [len(r.messages) for r in daemon.requests] == [1000, 500]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "accepted 1498 messages (0 duplicates)"
    assert [line.split(":")[0] for line in out[1:]] == [
        "refused messages[3]",
        "refused messages[1200]",
    ]
    assert run("send", "--file", str(tmp_path / "m.jsonl"), "--json") == EXIT_REFUSED
    shown = json.loads(capsys.readouterr().out)
    assert len(shown["accepted"]) == 1498
    assert [r["index"] for r in shown["refused"]] == [3, 1200]


# -- views ---------------------------------------------------------------------------------------


def funnel(**kw: Any) -> FunnelView:
    fields: dict[str, Any] = dict(
        integration="resend",
        domain="news.example.com",
        sent=1000,
        accepted=1000,
        delivered=990,
        hard_bounced=6,
        soft_bounced=4,
        complained=4,
        unsubscribed=2,
        opened=300,
        clicked=30,
        accepted_rate=1.0,
        delivered_rate=0.99,
        bounce_rate=0.01,
        complaint_rate=4 / 990,
        open_rate=300 / 990,
        click_rate=30 / 990,
    )
    fields.update(kw)
    return FunnelView(**fields)


def test_the_funnel_table_shows_counts_with_rates_and_how_to_resume() -> None:
    """Counts with their rates (two decimals: Gmail's lines are 0.10% and 0.30%), then the
    domains; a paused one says how to end the pause."""
    reply = DeliverabilityReply(
        E - 24 * HOUR,
        [funnel()],
        [
            DomainView("news.example.com", "paused", 1000, 4, 0, 0.004, 0.0, E - HOUR, 12),
            DomainView("shop.example.com", "ok", 500, 0, 1, 0.0, 0.002, None, 0),
        ],
    )
    lines = views.format_deliverability(reply).splitlines()
    assert lines[0] == "email since 2027-01-14T08:00:00Z"
    assert lines[2].split() == [
        "PROVIDER",
        "DOMAIN",
        "SENT",
        "ACCEPTED",
        "DELIVERED",
        "BOUNCED",
        "COMPLAINED",
        "UNSUBSCRIBED",
        "OPENED",
        "CLICKED",
    ]
    assert lines[3].split() == [
        "resend",
        "news.example.com",
        "1000",
        "1000",
        "(100.00%)",
        "990",
        "(99.00%)",
        "10",
        "(1.00%)",
        "4",
        "(0.40%)",
        "2",
        "300",
        "(30.30%)",
        "30",
        "(3.03%)",
    ]
    paused = next(line for line in lines if line.startswith("news.example.com  paused"))
    assert paused.split()[2:] == ["1000", "4", "0.40%", "0", "0.00%", "12", "2027-01-15T07:00:00Z"]
    assert lines[-1] == "  ringbearer deliverability resume DOMAIN"


def test_a_rate_with_nothing_to_divide_by_is_a_dash() -> None:
    nothing = funnel(accepted=0, delivered=0, delivered_rate=None, complaint_rate=None)
    row = views.format_deliverability(DeliverabilityReply(E, [nothing], [])).splitlines()[3]
    assert "0 (-)" in row
    assert views.percent(None) == "-" and views.percent(0.001) == "0.10%"


def test_a_long_note_is_cut_in_the_list() -> None:
    long = suppression(1, note="n" * 100, until=E + HOUR)
    line = views.format_suppressions(SuppressionsReply([long])).splitlines()[1]
    assert line.endswith("n" * 59 + "…") and "2027-01-15T09:00:00Z" in line
    assert views.format_suppressions(SuppressionsReply([])) == "no suppressions in force"
