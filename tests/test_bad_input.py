"""Bad input, fuzzed: no line, request or config file gets past the checks or crashes them."""

from __future__ import annotations

import copy
import json
import math
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import hypothesis.strategies as st
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings

from ringbearer import _config
from ringbearer._alerting_settings import AlertingSettings
from ringbearer._errors import ConfigError, InvalidPayload, RequestError
from ringbearer._wedding import WeddingDaySettings
from ringbearer.control import _protocol
from ringbearer.control._protocol import MAX_LINE, MessageIn, Request, Status, Submit
from ringbearer.control._server import ServerLimits, serve_control
from ringbearer.integrations import fake_kinds, provider_kinds

from .harness import running_core

# -- 1. the control protocol's parser ---------------------------------------------------------

PARSE_CODES = {"bad_json", "bad_request", "unknown_command", "bad_args"}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.sampled_from([0, -1, 2**63, -(2**63) - 1, 10**4000])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    sorted({f.name for kind in _protocol.COMMANDS.values() for f in attrs.fields(kind)})
)
message_in = st.fixed_dictionaries(
    {},
    optional={
        "target": json_values,
        "payload": json_values,
        "priority": json_values,
        "key": json_values,
        "deliver_by": json_values,
        "extra": json_values,
    },
)
args = (
    json_values
    | st.dictionaries(field_names, json_values, max_size=4)
    | st.fixed_dictionaries({"messages": st.lists(message_in, max_size=3) | json_values})
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "cmd": st.sampled_from(sorted(_protocol.COMMANDS)) | json_values,
        "args": args,
        "extra": json_values,
    },
)
junk_lines = (
    st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | requests.map(lambda r: json.dumps(r).encode())
    | st.sampled_from(
        [
            b"1" * 5000,  # over Python's 4300-digit int conversion limit
            b"[" * 100_000,
            b'{"cmd": "status", "args": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
            b'{"cmd": "wait", "args": {"timeout": 1e400}}',
            b'{"cmd": "status", "id": NaN}',
            b"\xff\xfe{}",
            b'{"cmd": "status"}\x00',
        ]
    )
)


def check_error_reply(request_id: Any, error: RequestError) -> None:
    reply = _protocol.error(request_id, error.code, error.message)
    assert reply.endswith(b"\n") and reply.count(b"\n") == 1
    decoded = json.loads(reply)
    assert decoded["ok"] is False and decoded["error"]["code"] == error.code
    assert isinstance(decoded["error"]["message"], str)


@settings(derandomize=True, max_examples=400, deadline=None, database=None)
@given(junk_lines)
def test_parse_returns_a_request_or_its_own_error(line: bytes) -> None:
    """Any line parses to a typed request or raises RequestError with a code; the reply is JSON."""
    try:
        envelope = _protocol.parse(line, _protocol.converter())
    except _protocol.IdentifiedError as exc:
        assert exc.code in PARSE_CODES
        check_error_reply(exc.request_id, exc)
    except RequestError as exc:
        assert exc.code in PARSE_CODES and exc.message
        check_error_reply(None, exc)
    else:
        assert isinstance(envelope.request, tuple(_protocol.COMMANDS.values()))


def test_a_string_is_not_taken_for_a_list() -> None:
    """A string where the protocol wants a list is refused, not split into characters."""
    line = json.dumps({"cmd": "audit", "args": {"kinds": "submitted"}}).encode()
    with pytest.raises(RequestError):
        _protocol.parse(line, _protocol.converter())


# -- 2. the control server, on a real socket ------------------------------------------------

VALID: list[tuple[dict[str, Any], Request]] = [
    ({"cmd": "status"}, Status()),
    ({"cmd": "pause", "args": {"name": "alpha"}}, _protocol.Pause("alpha")),
    (
        {"cmd": "submit", "args": {"messages": [{"target": "a", "payload": {"n": 1}}]}},
        Submit([MessageIn("a", {"n": 1})]),
    ),
]
# Lines that are never a valid request: (line, the error codes it may get).
bad_lines = st.one_of(
    st.binary(min_size=1, max_size=100).map(lambda b: b.replace(b"\n", b" ") + b"!"),
    st.sampled_from([b"{", b"[]", b"null", b'"status"', b"1" * 5000, b"[" * 20_000]),
    st.dictionaries(st.text(max_size=6), json_values, max_size=3).map(
        lambda d: json.dumps({"cmd": "no-such-command", **d}).encode()
    ),
    st.sampled_from(
        [
            {"cmd": 7},
            {"cmd": "pause", "args": {"name": 1}},
            {"cmd": "pause", "args": []},
            {"cmd": "submit", "args": {"messages": "x"}},
            {"cmd": "submit", "args": {"messages": [{"target": "a", "payload": []}]}},
            {"cmd": "status", "args": {"verbose": True}},
            {"cmd": "dead-letter", "args": {"id": "1"}},
            {"cmd": "status", "extra": 1},
        ]
    ).map(lambda d: json.dumps(d).encode()),
)
valid_lines = st.sampled_from(range(len(VALID)))
batches = st.lists(st.one_of(bad_lines, valid_lines), min_size=1, max_size=6)
actions: st.SearchStrategy[tuple[str, Any]] = st.one_of(
    st.tuples(st.just("lines"), batches),
    st.tuples(st.just("half_closed"), batches),
    st.tuples(st.just("too_long"), st.just([])),
    st.tuples(st.just("flood"), st.integers(1, 3)),
)


@attrs.define
class Session:
    """The socket, what the handler got, and what valid requests were sent."""

    path: Path
    received: list[Request] = attrs.Factory(list)
    expected: list[Request] = attrs.Factory(list)

    async def handle(self, request: Request) -> Any:
        self.received.append(request)
        return {"answered": type(request).__name__}

    async def connect(self) -> trio.SocketStream:
        return await trio.open_unix_socket(str(self.path))

    async def exchange(self, batch: list[Any], half_close: bool) -> None:
        """Send a batch of lines on one connection; check one reply a line, in order."""
        lines = [self.line(item) for item in batch]
        async with await self.connect() as stream:
            await stream.send_all(b"".join(line + b"\n" for line, _ in lines))
            if half_close:
                await stream.send_eof()
            replies = await read_lines(stream, len(lines))
        for (_, valid), reply in zip(lines, replies, strict=True):
            if valid is None:
                assert reply["ok"] is False and reply["error"]["code"] in PARSE_CODES, reply
            else:
                assert reply["ok"] is True, reply
                assert reply["result"] == {"answered": type(valid).__name__}
        await trio.testing.wait_all_tasks_blocked()  # the server has seen the close

    def line(self, item: Any) -> tuple[bytes, Request | None]:
        if isinstance(item, bytes):
            return item, None
        raw, request = VALID[item]
        self.expected.append(request)
        return json.dumps({"id": len(self.expected), **raw}).encode(), request

    async def too_long(self) -> None:
        """A line past the cap gets line_too_long and the connection closes."""
        # The newline lies beyond one read past the cap, so the server cannot see it in time.
        async with await self.connect() as stream:
            await stream.send_all(b"{" + b" " * (MAX_LINE + 70_000) + b"\n")
            (reply,) = await read_lines(stream, 1)
            assert await stream.receive_some() == b""
        assert reply["ok"] is False and reply["error"]["code"] == "line_too_long"
        await trio.testing.wait_all_tasks_blocked()
        await self.exchange([0], half_close=False)  # the server still takes new connections

    async def flood(self, extra: int) -> None:
        """Past max_connections, connections get busy; once others close, new ones are served."""
        held = [await self.connect() for _ in range(4)]
        for stream in held:  # each holds a slot once it has been answered
            await stream.send_all(self.line(0)[0] + b"\n")
            assert (await read_lines(stream, 1))[0]["ok"] is True
        for _ in range(extra):
            async with await self.connect() as stream:
                (reply,) = await read_lines(stream, 1)
                assert reply["ok"] is False and reply["error"]["code"] == "busy"
                assert await stream.receive_some() == b""
        for stream in held:
            await stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        await self.exchange([0, 1, 2, 0], half_close=False)


async def read_lines(stream: trio.SocketStream, count: int) -> list[dict[str, Any]]:
    data = b""
    while data.count(b"\n") < count:
        chunk = await stream.receive_some()
        assert chunk, f"closed after {data!r}"
        data += chunk
    lines = data.split(b"\n")
    assert lines[count:] == [b""], "more replies than lines"
    return [json.loads(line) for line in lines[:count]]


example_number = iter(range(1_000_000))


@settings(
    derandomize=True,
    max_examples=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(actions, max_size=5))
async def test_the_server_survives_bad_input(tmp_path: Path, plan: list[Any]) -> None:
    """Junk, long lines, half-closes, floods get error replies; the handler sees only valid ones."""
    session = Session(tmp_path / f"c{next(example_number)}.sock")
    limits = ServerLimits(max_connections=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_control(
                session.path, session.handle, limits=limits, task_status=task_status
            )
        )
        # The drawn plan, then every kind of action once, then a plain status.
        fixed = [("too_long", []), ("flood", 2), ("half_closed", [b"{", 0, b"[]", 1])]
        for kind, arg in [*plan, *fixed]:
            match kind:
                case "lines" | "half_closed":
                    await session.exchange(arg, half_close=kind == "half_closed")
                case "too_long":
                    await session.too_long()
                case "flood":
                    await session.flood(arg)
        await session.exchange([0], half_close=False)
        nursery.cancel_scope.cancel()
    assert session.received == session.expected


# -- 3. the config loader -------------------------------------------------------------------

SECTIONS: dict[str, type] = {
    "daemon": _config.DaemonSettings,
    "store": _config.StoreSettings,
    "metrics": _config.MetricsSettings,
    "sandbox": _config.SandboxSettings,
    "supervisor": _config.SupervisorSettings,
    "control": _config.ControlSettings,
    "wedding_day": WeddingDaySettings,
    "alerting": AlertingSettings,
    "defaults": _config._Defaults,
}
KINDS = provider_kinds()


def field_names_of(cls: type) -> list[str]:
    return [f.name for f in attrs.fields(cls)]


def known_keys() -> set[str]:
    """Every key name the config's classes define, at any depth."""
    names: set[str] = {"integrations", "groups", "kind", *SECTIONS}
    classes = [*SECTIONS.values(), *(k.settings_type for k in KINDS.values())]
    while classes:
        cls = classes.pop()
        for field in attrs.fields(cls):
            names.add(field.name)
            if isinstance(field.type, type) and attrs.has(field.type):
                classes.append(field.type)
    return names


KNOWN_KEYS = known_keys()
SECRET_FIELDS = {
    name: [f.name for f in attrs.fields(kind.settings_type) if "SecretRef" in str(f.type)]
    for name, kind in KINDS.items()
}
bare_text = st.text(alphabet=st.characters(exclude_categories=["Cs", "Cc"]), max_size=12)
wrong_values = st.one_of(
    st.sampled_from([0, -1, -0.5, 0.0, 10**18, -(2**63), 1e308, math.inf, -math.inf, math.nan]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    bare_text,
    st.sampled_from(
        [
            *["sometimes", "", "Mars/Olympus", "../../etc/passwd", "UTC", "Europe/London"],
            *["2027-02-30", "2027-06-13..2027-06-11", "saturday", "funday", "x:99999", "/m"],
        ]
    ),
    st.lists(st.sampled_from(["saturday", "caturday", "2027-06-12", "2027-13-01", 3]), max_size=3),
    st.dictionaries(
        st.sampled_from(["env", "credential", "limit", "per", "x"]), bare_text, max_size=2
    ),
)


def junk_for(key: str) -> st.SearchStrategy[Any]:
    return wrong_values


secrets = st.from_regex(r"sk_live_[A-Za-z0-9]{16}", fullmatch=True)


@st.composite
def sections(draw: st.DrawFn) -> dict[str, Any]:
    """A top-level section: some of its real keys with wrong values, maybe an unknown key."""
    name = draw(st.sampled_from(sorted(SECTIONS)))
    keys = draw(st.lists(st.sampled_from(field_names_of(SECTIONS[name])), max_size=3))
    table = {key: draw(junk_for(key)) for key in keys}
    if draw(st.booleans()):
        table[draw(st.sampled_from(["colour", "lanes_", "verbose"]))] = draw(wrong_values)
    return {name: table}


@st.composite
def integrations(draw: st.DrawFn, secret: str) -> dict[str, Any]:
    """An integration of a real or unknown kind, its secrets inline or as references."""
    kind = draw(st.sampled_from([*sorted(KINDS), "carrier_pigeon"]) | wrong_values)
    table: dict[str, Any] = {"kind": kind}
    for field in SECRET_FIELDS.get(kind, []) if isinstance(kind, str) else []:
        table[field] = draw(st.sampled_from([secret, {"env": "TOKEN"}, {"env": secret}]))
    common = sorted(_config.INTEGRATION_COMMON_KEYS - {"kind"})
    for key in draw(st.lists(st.sampled_from(common), max_size=2)):
        table[key] = draw(junk_for(key))
    name = draw(st.sampled_from(["alpha", "beta", "Bad Name", "x" * 70]))
    return {name: table}


@st.composite
def documents(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    secret = draw(secrets)
    doc: dict[str, Any] = {}
    for section in draw(st.lists(sections(), max_size=4)):
        doc.update(section)
    chosen = draw(st.lists(integrations(secret), max_size=3))
    if chosen:
        doc["integrations"] = {k: v for i in chosen for k, v in i.items()}
    if draw(st.booleans()):
        doc["groups"] = {"all": draw(st.lists(st.sampled_from(["alpha", "beta", "nope"])))}
    if draw(st.booleans()):
        doc[draw(st.sampled_from(["deamon", "extra"]))] = draw(wrong_values)
    return doc, secret


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # TOML has no surrogate-pair escapes
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def to_toml(doc: dict[str, Any]) -> str:
    """Top-level scalars first, then one [table] (or [integrations.NAME]) per section."""
    out = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for key, table in doc.items():
        if not isinstance(table, dict):
            continue
        if key == "integrations":
            for name, section in table.items():
                out.append(f"[integrations.{toml_key(name)}]")
                out += [f"{toml_key(k)} = {toml_value(v)}" for k, v in section.items()]
            continue
        out.append(f"[{toml_key(key)}]")
        out += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(out) + "\n"


def segments(path: str) -> Iterator[str | int]:
    for part in path.split("."):
        name, *indices = re.split(r"\[(\d+)\]", part)
        yield name
        yield from (int(i) for i in indices if i)


def names_a_key_of(doc: Any, path: str) -> bool:
    """The path leads through the document; only its last key may be missing (a required key)."""
    parts = list(segments(path))
    for depth, part in enumerate(parts):
        in_list = isinstance(part, int) and isinstance(doc, list) and part < len(doc)
        if in_list or (isinstance(part, str) and isinstance(doc, dict) and part in doc):
            doc = doc[part]
        else:
            return depth == len(parts) - 1 and part in KNOWN_KEYS
    return True


@settings(derandomize=True, max_examples=150, deadline=None, database=None)
@given(documents())
def test_config_errors_name_keys_and_never_show_secrets(case: tuple[dict[str, Any], str]) -> None:
    """A wrong config gives a Config or a ConfigError at real key paths, never an inline secret."""
    doc, secret = case
    text = to_toml(doc)
    raw = tomllib.loads(text)  # the generator writes valid TOML
    try:
        _config.parse(text, Path("/etc/ringbearer/config.toml"))
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert names_a_key_of(raw, problem.path), (problem, text)
            assert secret not in problem.message
        assert secret not in str(exc)


@settings(derandomize=True, max_examples=100, deadline=None, database=None)
@given(st.text(max_size=200) | st.sampled_from(["a = " + "[" * 5000, "a = " + "{b=" * 3000]))
def test_config_text_that_is_not_toml_is_a_config_error(text: str) -> None:
    """Arbitrary text, however nested, is a Config or a ConfigError for the whole file."""
    try:
        _config.parse(text, Path("/etc/ringbearer/config.toml"))
    except ConfigError as exc:
        assert exc.problems


def test_a_principal_list_written_as_a_string_is_refused() -> None:
    """``operators = { users = "deploy" }`` is a config error, not six one-letter users."""
    text = '[control]\noperators = { users = "deploy" }\n[integrations.a]\nkind = "fake"\n'
    with pytest.raises(ConfigError):
        _config.parse(text, Path("/etc/ringbearer/config.toml"), fake_kinds({}))


def test_a_table_list_written_as_a_string_is_reported_at_its_key() -> None:
    """``budgets = "0"`` is reported at ``defaults.budgets``, the key the file has."""
    with pytest.raises(ConfigError) as caught:
        _config.parse('[defaults]\nbudgets = "0"\n', Path("/etc/ringbearer/config.toml"))
    assert {p.path for p in caught.value.problems} == {"defaults.budgets", "integrations"}


# -- 4. bad requests change no stored data --------------------------------------------------


def message(target: str = "alpha", **changes: Any) -> MessageIn:
    return attrs.evolve(MessageIn(target, {"n": 1}), **changes)


def bad_messages() -> st.SearchStrategy[tuple[MessageIn, str]]:
    """One message that must be refused, with the error code it must get."""
    return st.one_of(
        st.tuples(
            st.builds(message, target=st.sampled_from(["delta", "", "ALPHA", "trio "])),
            st.just("unknown_target"),
        ),
        st.tuples(
            st.builds(message, priority=st.sampled_from(["urgent", "", "high", "critical "])),
            st.just("bad_args"),
        ),
        st.tuples(
            st.builds(
                message, target=st.sampled_from(["alpha", "trio"]), payload=st.just({"invalid": 1})
            ),
            st.just("invalid_payload"),
        ),
        st.tuples(
            st.builds(message, key=st.sampled_from(["", "k" * 257, "k" * 10_000])),
            st.just("bad_args"),
        ),
        st.tuples(
            st.builds(message, deliver_by=st.sampled_from([math.nan, math.inf, -math.inf])),
            st.just("bad_args"),
        ),
    )


def good_message(target: str, priority: str, key: str | None) -> MessageIn:
    # A key names one message (target and payload): reused elsewhere it is refused
    # (key_reused), so a good message's key carries its target.
    return message(target, priority=priority, key=None if key is None else f"{target}:{key}")


good_messages = st.builds(
    good_message,
    target=st.sampled_from(["alpha", "beta", "gamma", "trio"]),
    priority=st.sampled_from(["critical", "normal", "bulk"]),
    key=st.none() | st.text(alphabet="abc", min_size=1, max_size=200),
)
steps = st.one_of(
    st.tuples(st.just("good"), st.lists(good_messages, min_size=1, max_size=3)),
    st.tuples(st.just("bad"), st.lists(good_messages, max_size=2), bad_messages()),
    st.tuples(st.just("empty")),
    st.tuples(st.just("too_many")),
)


def snapshot(core: Any) -> tuple[Any, Any]:
    return copy.deepcopy(core.store.rows), copy.deepcopy(core.store.event_log)


async def run_steps(tmp_path: Path, plan: list[Any]) -> None:
    async with running_core(tmp_path) as core:
        accepted: dict[int, MessageIn] = {}
        for step in plan:
            await core.daemon.wait_idle(60)  # deliveries settle: nothing else moves the store
            before = snapshot(core)
            match step:
                case ("good", messages):
                    result = await core.daemon.handle(Submit(messages))
                    for m, a in zip(messages, result.accepted, strict=True):
                        accepted.setdefault(a.id, m)
                    continue
                case ("bad", messages, (bad, code)):
                    request = Submit([*messages, bad])
                case ("empty",):
                    request, code = Submit([]), "bad_args"
                case ("too_many",):
                    many = [message()] * (_protocol.MAX_MESSAGES_PER_SUBMIT + 1)
                    request, code = Submit(many), "too_many"
            with pytest.raises(RequestError) as caught:
                await core.daemon.handle(request)
            assert caught.value.code == code
            assert isinstance(caught.value, InvalidPayload) == (code == "invalid_payload")
            await trio.testing.wait_all_tasks_blocked()
            assert snapshot(core) == before
        await core.daemon.wait_idle(60)
        assert set(core.store.rows) == set(accepted)
        for row_id, m in accepted.items():
            row = core.store.rows[row_id]
            assert (row.target, row.payload, row.priority.label) == (
                m.target,
                m.payload,
                m.priority,
            )
        assert {e.message_id for e in core.store.event_log} <= {None, *accepted}


@settings(
    derandomize=True,
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(steps, min_size=1, max_size=6))
def test_bad_submits_leave_the_store_as_it_was(tmp_path: Path, plan: list[Any]) -> None:
    """Refused submits raise their documented error and change no row or event; good ones store."""
    trio.run(run_steps, tmp_path, plan, clock=trio.testing.MockClock(autojump_threshold=0))
