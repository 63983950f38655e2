"""End to end: strict input at the edge of the real daemon (issue 11, symptoms 1-4 and 11).

Each bad request goes to the real ``ringbearer run`` process as the raw line a client
would write; it is refused naming the field, the daemon stays up, and an innocent
message sent right after is delivered by the simulator.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .procs import Daemon, Simulator, config_for, email, running

pytestmark = pytest.mark.e2e


def refuse_constant(name: str) -> Any:
    raise ValueError(f"strict JSON has no {name}")


def raw_call(daemon: Daemon, line: bytes, timeout: float = 30.0) -> dict[str, Any]:
    """Send one raw line; the reply, read as a strict JSON parser reads it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(daemon.socket))
        sock.sendall(line + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            assert chunk, f"closed after {data!r}"
            data += chunk
    reply: dict[str, Any] = json.loads(data, parse_constant=refuse_constant)
    return reply


def submit(message: dict[str, Any], request_id: int = 1) -> bytes:
    return json.dumps({"id": request_id, "cmd": "submit", "args": {"messages": [message]}}).encode()


def slack(text: str = "all well") -> dict[str, Any]:
    return {"target": "slack", "payload": {"text": text}}


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    sim = Simulator(tmp_path / "simulator.log")
    try:
        with running(tmp_path, config_for(tmp_path, sim)) as started:
            yield started
    finally:
        sim.stop()


def refused(daemon: Daemon, line: bytes) -> dict[str, Any]:
    reply = raw_call(daemon, line)
    assert reply["ok"] is False, reply
    error: dict[str, Any] = reply["error"]
    assert error["code"] != "internal", error
    return error


def innocents_delivered(daemon: Daemon, *messages: dict[str, Any]) -> None:
    """The daemon is alive, and delivers innocent messages submitted now."""
    accepted = daemon.call("submit", {"messages": list(messages)})["accepted"]
    daemon.wait_idle(60)
    for a in accepted:
        assert daemon.call("message", {"id": a["id"]})["status"] == "delivered"
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert "Traceback" not in daemon.log_text()


def test_a_lone_surrogate_is_refused_and_delivery_goes_on(daemon: Daemon) -> None:
    """Symptom 1's edge: ``{"text": "\\ud800"}`` is bad_args naming the field; delivery goes on."""
    error = refused(daemon, submit(slack("\ud800")))
    assert error["code"] == "bad_args"
    assert (
        error["message"] == "args.messages[0].payload.text: lone surrogate U+D800 (not a character)"
    )
    # The same through the CLI (its own json writes the same escape).
    sent = daemon.cli("send", "slack", "--payload", '{"text": "\\ud800"}')
    assert sent.returncode == 2 and "args.messages[0].payload.text" in sent.stderr, sent
    # In a key of the payload, and as raw UTF-8 surrogate bytes: refused too.
    assert refused(daemon, submit({"target": "slack", "payload": {"\udfff": 1}}))["code"] == (
        "bad_args"
    )
    raw = submit(slack("X")).replace(b"X", b"\xed\xa0\x80")
    assert refused(daemon, raw)["code"] == "bad_json"
    innocents_delivered(daemon, slack(), email(1))


def event(n: int, price: Any = 10) -> dict[str, Any]:
    properties = {"price": price, "n": n}
    return {
        "target": "mixpanel",
        "payload": {"event": "rsvp", "distinct_id": f"g{n}", "properties": properties},
    }


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e309"])
def test_a_non_finite_number_is_refused_and_delivery_goes_on(daemon: Daemon, number: str) -> None:
    """Symptom 2's edge: NaN, Infinity, 1e309 in a property that passes Mixpanel's check,
    among 29 innocent events of the same submit: the submit is refused naming the field,
    nothing of it is stored, and the 29 sent again are delivered."""
    innocents = [event(n) for n in range(29)]
    line = json.dumps(
        {"id": 2, "cmd": "submit", "args": {"messages": [*innocents, event(29, "X")]}}
    ).encode()
    error = refused(daemon, line.replace(b'"X"', number.encode()))
    assert error["code"] == "bad_json"
    assert error["message"].startswith("args.messages[29].payload.properties.price: ")
    assert daemon.call("wait", {"timeout": 5})["queued"] == 0
    innocents_delivered(daemon, *innocents, slack())
    assert daemon.integration("mixpanel")["restarts"] == 0


def test_a_key_outside_the_rule_is_refused(daemon: Daemon) -> None:
    """Symptom 3's edge: ``--key clé-1`` and a key with CR/LF are refused with the rule."""
    sent = daemon.cli(
        "send", "email", "--payload", json.dumps(email(1)["payload"]), "--key", "clé-1"
    )
    assert sent.returncode == 2, sent
    assert "messages[0].key: U+00E9 LATIN SMALL LETTER E WITH ACUTE" in sent.stderr
    assert "printable ASCII" in sent.stderr
    for key in ["k\r\nX-Evil: 1", "a b", "k" * 257]:
        error = refused(daemon, submit(email(2, key=key)))
        assert error["code"] == "bad_args" and error["message"].startswith("messages[0].key: ")
        assert "1 to 256 printable ASCII characters, '!' to '~', no spaces" in error["message"]
    innocents_delivered(daemon, email(3, key="innocent-3"), slack())


@pytest.mark.parametrize("char", ["\u2028", "\x85", "\u2029", "\x0b", "\x00"])
def test_an_email_subject_on_two_lines_is_refused_at_submit(daemon: Daemon, char: str) -> None:
    """Symptom 4's edge: U+2028 or U+0085 in a subject is refused naming the field; SMTP
    (a member of the email group) never sees it."""
    message = email(1)
    message["payload"]["subject"] = f"Timeline{char}Bcc: evil@example.com"
    error = refused(daemon, submit(message))
    assert error["code"] == "invalid_payload"
    assert error["message"].startswith("messages[0]: 'subject' must not contain ")
    assert f"U+{ord(char):04X}" in error["message"]
    innocents_delivered(daemon, email(2), slack())


def test_huge_ids_and_a_nan_id_get_clear_errors(daemon: Daemon) -> None:
    """Symptom 11: a 30-digit id is bad_args (no internal, no traceback); ``{"id": NaN}``
    gets a reply a strict parser reads, with id null."""
    for cmd in ["message", "dead-letter", "alerts-ack"]:
        error = refused(
            daemon, f'{{"id": 4, "cmd": "{cmd}", "args": {{"id": {"9" * 30}}}}}'.encode()
        )
        assert error["code"] == "bad_args" and error["message"].startswith("args.id: ")
    error = refused(daemon, b'{"id": 5, "cmd": "audit", "args": {"before": 99999999999999999999}}')
    assert error["code"] == "bad_args" and error["message"].startswith("args.before: ")
    shown = daemon.cli("dead-letters", "show", "9" * 30)
    assert shown.returncode == 2 and "args.id: " in shown.stderr, shown
    assert "Traceback" not in shown.stderr
    reply = raw_call(daemon, b'{"id": NaN, "cmd": "status"}')
    assert reply["id"] is None and reply["error"]["code"] == "bad_json"
    reply = raw_call(daemon, b'{"id": 9223372036854775807, "cmd": "status"}')
    assert reply["ok"] is True and reply["id"] == 9223372036854775807
    innocents_delivered(daemon, slack())
