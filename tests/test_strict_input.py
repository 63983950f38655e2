"""Strict input at the edge: the parser, the intake's key and time rules, one-line fields."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from ringbearer import _config
from ringbearer._errors import ConfigError, ErrorCode, InvalidPayload, RequestError
from ringbearer.control import MessageIn, _protocol
from ringbearer.control._protocol import MAX_DEPTH, Envelope, IdentifiedError
from ringbearer.handlers._intake import KEY_RULE
from ringbearer.integrations import provider_kinds
from ringbearer.integrations._base import LINE_BOUNDARIES, check_text
from ringbearer.store import MessageStatus

from .harness import running_core
from .kit import context

CONVERTER = _protocol.converter()
INT64_MAX = 2**63 - 1


def refuse_constant(name: str) -> Any:
    raise ValueError(f"strict JSON has no {name}")


def strict_loads(line: bytes) -> Any:
    """As a strict client parses a reply: no NaN, no Infinity."""
    return json.loads(line, parse_constant=refuse_constant)


def parse(line: bytes | str) -> Envelope:
    return _protocol.parse(line.encode() if isinstance(line, str) else line, CONVERTER)


def refused(line: bytes | str) -> IdentifiedError:
    """The error a line gets, checked to make a reply a strict parser reads."""
    with pytest.raises(IdentifiedError) as caught:
        parse(line)
    error = caught.value
    reply = strict_loads(_protocol.error(error.request_id, error.code, error.message))
    assert reply["ok"] is False and reply["error"]["code"] == error.code
    return error


def submit_line(payload: str, request_id: str = "7") -> str:
    message = f'{{"target": "alpha", "payload": {payload}}}'
    return f'{{"id": {request_id}, "cmd": "submit", "args": {{"messages": [{message}]}}}}'


# -- numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "says"),
    [
        ("NaN", "NaN is not a JSON number"),
        ("Infinity", "Infinity is not a JSON number"),
        ("-Infinity", "-Infinity is not a JSON number"),
        ("1e309", "1e309 overflows a 64-bit float"),
        ("-1e309", "-1e309 overflows a 64-bit float"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_field(literal: str, says: str) -> None:
    """NaN, Infinity and numbers that overflow a float are bad_json at their path; id kept."""
    error = refused(submit_line(f'{{"text": "hi", "n": [1, {literal}]}}'))
    assert error.code == ErrorCode.BAD_JSON
    assert error.message == f"args.messages[0].payload.n[1]: {says}"
    assert error.request_id == 7


def test_a_nan_id_is_not_echoed() -> None:
    """``{"id": NaN}``: refused, and the reply's id is null (strict parsers read it)."""
    error = refused('{"id": NaN, "cmd": "status"}')
    assert (error.code, error.request_id) == (ErrorCode.BAD_JSON, None)
    assert error.message == "id: NaN is not a JSON number"
    line = _protocol.error(error.request_id, error.code, error.message)
    assert strict_loads(line)["id"] is None


@pytest.mark.parametrize("value", [0, 1, -1, INT64_MAX, -INT64_MAX - 1])
def test_integers_within_64_bits_are_taken(value: int) -> None:
    """The whole range of SQLite's INTEGER reaches the request."""
    assert parse(f'{{"cmd": "dead-letter", "args": {{"id": {value}}}}}').request == (
        _protocol.DeadLetter(value)
    )


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ('{"id": 123456789012345678901234567890}', "args.id"),
        ('{"id": 9223372036854775808}', "args.id"),
        ('{"id": -9223372036854775809}', "args.id"),
        ('{"id": ' + "9" * 5000 + "}", "args.id"),  # past Python's own 4,300-digit limit
    ],
)
def test_integers_past_64_bits_are_bad_args_naming_the_field(args: str, field: str) -> None:
    """A 30-digit (or 5,000-digit) id is a clear bad_args, not an internal error."""
    error = refused(f'{{"id": 1, "cmd": "dead-letter", "args": {args}}}')
    assert error.code == ErrorCode.BAD_ARGS
    assert error.message.startswith(f"{field}: ") and "beyond 64 bits" in error.message
    assert len(error.message) < 200


def test_a_huge_integer_in_a_payload_or_a_cursor_is_refused() -> None:
    """Every int field (limits, cursors) and payloads: the same 64-bit rule."""
    for cmd, args, field in [
        ("audit", '{"before": 1e2, "limit": 18446744073709551616}', "args.limit"),
        ("dead-letters-replay", '{"all": true, "after": -99999999999999999999}', "args.after"),
    ]:
        error = refused(f'{{"cmd": "{cmd}", "args": {args}}}')
        assert (error.code, error.message.split(":")[0]) == (ErrorCode.BAD_ARGS, field)
    error = refused(submit_line('{"n": 99999999999999999999}'))
    assert error.message.startswith("args.messages[0].payload.n: ")


def test_minus_zero_is_a_number() -> None:
    """-0 and -0.0 are plain JSON numbers."""
    request = parse(submit_line('{"a": -0, "b": -0.0}')).request
    assert isinstance(request, _protocol.Submit)
    assert request.messages[0].payload == {"a": 0, "b": -0.0}


# -- text -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ('{"text": "\\ud800"}', "args.messages[0].payload.text"),
        ('{"text": "ok \\uDFFF"}', "args.messages[0].payload.text"),
        ('{"list": ["a", ["\\udc00x"]]}', "args.messages[0].payload.list[1][0]"),
        ('{"text": "\\ude00\\ud83d"}', "args.messages[0].payload.text"),  # a pair backwards
    ],
)
def test_lone_surrogates_are_bad_args_naming_the_field(payload: str, field: str) -> None:
    """A ``\\ud800`` escape is valid JSON syntax but no character: refused at its path."""
    error = refused(submit_line(payload))
    assert error.code == ErrorCode.BAD_ARGS
    assert error.message.startswith(f"{field}: lone surrogate U+D")
    assert error.request_id == 7


def test_a_lone_surrogate_in_a_key_or_the_id_is_refused() -> None:
    """In an object's key, or in the id (then the reply's id is null)."""
    error = refused(submit_line('{"a\\ud800b": 1}'))
    assert error.code == ErrorCode.BAD_ARGS
    assert error.message.startswith("args.messages[0].payload['a\\ud800b']: lone surrogate")
    error = refused('{"id": "\\ud800", "cmd": "status"}')
    assert (error.code, error.request_id) == (ErrorCode.BAD_REQUEST, None)


def test_a_surrogate_pair_is_a_character() -> None:
    """``\\ud83d\\ude00`` is one character (U+1F600), and taken."""
    request = parse(submit_line('{"text": "\\ud83d\\ude00", "\\ud83c\\udf89": 1}')).request
    assert isinstance(request, _protocol.Submit)
    assert request.messages[0].payload == {"text": "\U0001f600", "\U0001f389": 1}


@pytest.mark.parametrize(
    "line",
    [
        submit_line('{"text": "X"}').encode().replace(b"X", b"\xed\xa0\x80"),  # U+D800 as UTF-8
        submit_line('{"text": "X"}').encode("utf-16"),  # json.loads would take UTF-16
        b"\xff\xfe{}",
    ],
)
def test_a_line_is_strict_utf8(line: bytes) -> None:
    """A surrogate encoded as bytes, or another encoding, is not UTF-8: bad_json."""
    with pytest.raises(RequestError) as caught:
        parse(line)
    assert caught.value.code == ErrorCode.BAD_JSON


# -- nesting and shape ------------------------------------------------------------------------


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_nesting_is_bounded_and_named() -> None:
    """A request holds at most MAX_DEPTH levels; one more is bad_args, far more is bad_json."""
    # The request object, args, messages, a message and its payload: five levels.
    assert parse(submit_line(f'{{"x": {nested(MAX_DEPTH - 5)}}}'))
    error = refused(submit_line(f'{{"x": {nested(MAX_DEPTH - 4)}}}'))
    assert error.code == ErrorCode.BAD_ARGS
    assert error.message.endswith(f"nested more than {MAX_DEPTH} levels deep")
    assert error.message.startswith("args.messages[0].payload.x[0]")
    with pytest.raises(RequestError) as caught:  # past the interpreter's recursion limit
        parse(submit_line(f'{{"x": {nested(sys.getrecursionlimit() + 10)}}}'))
    assert caught.value.code == ErrorCode.BAD_JSON


def test_argument_errors_name_their_path_first() -> None:
    """A converter's refusal reads ``args.name: ...`` as the strict checks do."""
    error = refused('{"id": 3, "cmd": "pause", "args": {"name": 5}}')
    assert error.code == ErrorCode.BAD_ARGS
    assert error.message.startswith("args.name: expected a string")


# -- times ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "field", "says"),
    [
        (
            '{"cmd": "wedding-day", "args": {"state": "on", "until": 1796603207684}}',
            "args.until",
            "milliseconds? give seconds",
        ),
        (submit_line('{"n": 1}').replace('"payload"', '"deliver_by": 1e300, "payload"'), "", ""),
        ('{"cmd": "audit", "args": {"since": -1e20}}', "args.since", "between years 1 and 9999"),
    ],
)
def test_times_must_be_representable(line: str, field: str, says: str) -> None:
    """A Unix time past what datetime can show is refused before anything is stored."""
    error = refused(line)
    assert error.code == ErrorCode.BAD_ARGS
    field = field or "args.messages[0].deliver_by"
    assert error.message.startswith(f"{field}: ") and says in error.message


def test_a_representable_time_is_taken() -> None:
    """A Unix time in seconds goes through as a float."""
    request = parse('{"cmd": "wedding-day", "args": {"state": "on", "until": 1796603207}}')
    assert request.request == _protocol.WeddingDay(_protocol.OverrideState.ON, 1796603207.0)


# -- one-line fields --------------------------------------------------------------------------


def splitlines_boundaries() -> set[str]:
    """Every character ``str.splitlines`` breaks a line at, read from Python itself."""
    return {c for c in map(chr, range(sys.maxunicode + 1)) if len(f"a{c}b".splitlines()) == 2}


def test_the_boundaries_are_every_one_splitlines_knows() -> None:
    """LINE_BOUNDARIES is exactly Python's set (CR LF as a pair is CR then LF)."""
    assert set(LINE_BOUNDARIES) == splitlines_boundaries()


@pytest.mark.parametrize("char", [*LINE_BOUNDARIES, "\r\n"])
def test_a_one_line_field_refuses_every_line_boundary(char: str) -> None:
    """Each boundary is refused, naming the field and the character."""
    with pytest.raises(InvalidPayload) as caught:
        check_text("subject", f"Hello{char}Bcc: x@example.com", max_len=None, one_line=True)
    assert caught.value.message.startswith("'subject' must not contain line breaks: U+")
    assert check_text("text", f"a{char}b", max_len=None, one_line=False) == f"a{char}b"


def test_the_line_boundary_messages_name_the_character() -> None:
    """U+2028 and U+0085 by their Unicode names."""
    for char, name in [("\u2028", "U+2028 LINE SEPARATOR"), ("\x85", "U+0085 NEXT LINE")]:
        with pytest.raises(InvalidPayload) as caught:
            check_text("subject", f"a{char}b", max_len=None, one_line=True)
        assert caught.value.message == f"'subject' must not contain line breaks: {name} found"


@pytest.mark.parametrize("code", [*range(0x20), 0x7F])
def test_a_one_line_field_refuses_control_characters(code: int) -> None:
    """NUL, TAB, ESC and every other C0 control (and DEL) are refused in a one-line field."""
    with pytest.raises(InvalidPayload) as caught:
        check_text("name", f"a{chr(code)}b", max_len=None, one_line=True)
    assert f"U+{code:04X}" in caught.value.message and "'name'" in caught.value.message


@pytest.mark.parametrize("text", ["Café ☕", "\U0001f389 party", "a\u00a0b", "«déjà vu»"])
def test_a_one_line_field_takes_other_unicode(text: str) -> None:
    """Non-ASCII text that is not a boundary or a control stays allowed."""
    assert check_text("subject", text, max_len=None, one_line=True) == text


EMAIL = {
    "from": "Studio <studio@example.com>",
    "to": ["guest@example.com"],
    "subject": "Timeline update",
    "text": "The first dance is at 19:30.",
}
RESEND = {"api_key": {"env": "RESEND_API_KEY"}}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject": "Timeline\u2028Bcc: evil@example.com"}, "'subject'"),
        ({"subject": "Timeline\x85update"}, "'subject'"),
        ({"from": "Studio\u2029 <studio@example.com>"}, "'from'"),
        ({"to": ["Guest\x1c <g@example.com>"]}, "'to[0]'"),
        ({"reply_to": "Desk\x0b <d@example.com>"}, "'reply_to[0]'"),
        ({"headers": {"X-Note": "a\x00b"}}, "'headers.X-Note'"),
        ({"headers": {"X-Note": "a\u2028b"}}, "'headers.X-Note'"),
    ],
)
def test_email_header_fields_refuse_boundaries(change: dict[str, Any], field: str) -> None:
    """Every email field that becomes a header is one line, at submit (the adapter's check)."""
    adapter = provider_kinds()["resend"].build(
        _config_settings("resend", RESEND), context({"RESEND_API_KEY": "re_test"})
    )
    with pytest.raises(InvalidPayload) as caught:
        adapter.validate({**EMAIL, **change})
    assert caught.value.message.startswith(f"{field} must not contain")


def _config_settings(kind: str, table: dict[str, Any]) -> Any:
    return CONVERTER.structure(table, provider_kinds()[kind].settings_type)


def test_twilio_numbers_refuse_boundaries() -> None:
    """A phone number with a line boundary (or any non-digit) is refused naming it."""
    settings = _config_settings(
        "twilio_sms",
        {"account_sid": "AC" + "0" * 32, "auth_token": {"env": "T"}, "sender": "+15550100"},
    )
    adapter = provider_kinds()["twilio_sms"].build(settings, context({"T": "token"}))
    for number in ["+1555\u20280100", "+15550100\n", "+15550100\x85"]:
        with pytest.raises(InvalidPayload, match="'to'"):
            adapter.validate({"to": number, "body": "hi"})


# -- config enums ---------------------------------------------------------------------------


def test_an_unknown_literal_in_config_names_the_choices(tmp_path: Path) -> None:
    """``security = "ssl"``: "expected starttls, tls or none, not 'ssl'" at its key path."""
    text = '[integrations.mail]\nkind = "smtp"\nhost = "localhost"\nsecurity = "ssl"\n'
    with pytest.raises(ConfigError) as caught:
        _config.parse(text, tmp_path / "config.toml", provider_kinds())
    problems = [str(p) for p in caught.value.problems]
    assert problems == ["integrations.mail.security: expected starttls, tls or none, not 'ssl'"]
    assert "unknown error" not in str(caught.value)


# -- the intake -------------------------------------------------------------------------------


def alpha(n: int = 0, **fields: Any) -> MessageIn:
    return MessageIn("alpha", {"n": n}, **fields)


BAD_KEYS = [
    ("clé-1", "U+00E9 LATIN SMALL LETTER E WITH ACUTE (character 3) not allowed"),
    ("a b", "U+0020 SPACE (character 2) not allowed"),
    ("k\r\nX-Evil: 1", "U+000D CARRIAGE RETURN (character 2) not allowed"),
    ("k\n", "U+000A LINE FEED (character 2) not allowed"),
    ("tab\t", "U+0009 CHARACTER TABULATION (character 4) not allowed"),
    ("nul\x00", "U+0000 NUL (character 4) not allowed"),
    ("del\x7f", "U+007F DELETE (character 4) not allowed"),
    ("\u2028", "U+2028 LINE SEPARATOR (character 1) not allowed"),
    ("\U0001f511", "U+1F511 KEY (character 1) not allowed"),
    ("", "0 characters long"),
    ("k" * 257, "257 characters long"),
]


@pytest.mark.parametrize(("key", "says"), BAD_KEYS)
async def test_a_key_outside_the_rule_is_refused_and_nothing_stored(
    tmp_path: Path, autojump_clock: object, key: str, says: str
) -> None:
    """A bad key (even beside a good message) refuses the submit naming messages[i].key."""
    async with running_core(tmp_path) as core:
        with pytest.raises(RequestError) as caught:
            await core.daemon.submit([alpha(0, key="fine-1"), alpha(1, key=key)])
        assert caught.value.code == ErrorCode.BAD_ARGS
        assert caught.value.message == f"messages[1].key: {says}; {KEY_RULE}"
        assert core.store.rows == {}


async def test_every_key_inside_the_rule_is_taken_and_delivered(
    tmp_path: Path, autojump_clock: object
) -> None:
    """All of '!' to '~', one character, 256 characters: accepted, delivered, key kept."""
    keys = ["".join(map(chr, range(0x21, 0x7F))), "~", "x" * 256, "alert:1:2.5:critical"]
    async with running_core(tmp_path) as core:
        accepted = await core.daemon.submit([alpha(i, key=k) for i, k in enumerate(keys)])
        assert [a["key"] for a in accepted] == keys
        await core.daemon.wait_idle(60)
        delivered = core.store.by_status(MessageStatus.DELIVERED)
        assert sorted(delivered) == sorted(a["id"] for a in accepted)
        assert {e.idempotency_key for e in core.adapters["alpha"].calls} == set(keys)


@pytest.mark.parametrize("deliver_by", [1e300, -1e300, float("inf"), float("nan"), 1.8e12])
async def test_a_deliver_by_past_datetime_is_refused_before_storing(
    tmp_path: Path, autojump_clock: object, deliver_by: float
) -> None:
    """deliver_by must be a representable Unix time; checked before anything is stored."""
    async with running_core(tmp_path) as core:
        with pytest.raises(RequestError) as caught:
            await core.daemon.submit([alpha(0), alpha(1, deliver_by=deliver_by)])
        assert caught.value.code == ErrorCode.BAD_ARGS
        assert caught.value.message.startswith("messages[1].deliver_by: ")
        assert core.store.rows == {}
        await core.daemon.submit([alpha(2)])
        await core.daemon.wait_idle(60)
        assert len(core.store.by_status(MessageStatus.DELIVERED)) == 1
