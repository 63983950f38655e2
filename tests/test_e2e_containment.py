"""End to end: the real daemon contains what one message or one answer holds.

The provider side runs through a hostile proxy in front of the real simulator:
it forwards every request and answers the ones marked ``HOSTILE-*`` as a
hostile provider would (an id or an error text holding a lone surrogate and a
NUL). The producer side sends raw request lines holding what the wire cannot
carry; whichever layer stops such a message (the control protocol's strict
parsing at the edge, the adapter's payload check, or the actor's boundary),
the daemon stays up, the message is refused naming the field or ends a dead
letter with its reason, and the innocent messages beside it are delivered.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from .procs import Daemon, Simulator, config_for, running

pytestmark = pytest.mark.e2e

EMAIL = {"from": "Studio <studio@example.com>", "to": ["ann@example.com"], "text": "Hello"}
REFUSALS = {"bad_json", "bad_request", "bad_args", "invalid_payload"}


class HostileProxy:
    """Forwards to the real simulator; answers requests marked HOSTILE-* with hostile answers."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def marked(self, mark: str) -> int:
        with self._lock:
            return sum(mark.encode() in body for body in self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        with self._lock:
            self.bodies.append(body)
        if b"HOSTILE-ERROR" in body:  # refused, in words no store can hold as they are
            words = {"name": "validation_error", "message": "bad address \ud800\x00 here"}
            return 422, json.dumps(words).encode(), "application/json"
        forwarded = httpx.request(
            method, self.upstream + path, headers=headers, content=body, timeout=10
        )
        content = forwarded.content
        if b"HOSTILE-ID" in body and forwarded.status_code == 200:  # taken; an unstorable id
            content = json.dumps({"id": "re_\ud800" + forwarded.json()["id"]}).encode()
        return forwarded.status_code, content, forwarded.headers.get("content-type", "")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                skip = {"host", "content-length", "connection"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                status, content, kind = proxy.answer(self.command, self.path, headers, body)
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    simulator = Simulator(tmp_path / "simulator.log")
    yield simulator
    simulator.stop()


def resend(mark: str, **extra: Any) -> dict[str, Any]:
    return {"target": "resend", "payload": {**EMAIL, "subject": mark}, **extra}


def raw(daemon: Daemon, request: dict[str, Any]) -> dict[str, Any]:
    """One request line as a hostile producer writes it (NaN and lone surrogates as JSON allows)."""
    line = json.dumps(request).encode() + b"\n"  # allow_nan, ensure_ascii: "\ud800", NaN
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(60)
        conn.connect(str(daemon.socket))
        conn.sendall(line)
        reply = conn.makefile("rb").readline()
    answer: dict[str, Any] = json.loads(reply)
    return answer


def contained(
    daemon: Daemon, messages: list[dict[str, Any]], bad: int, reason: str
) -> dict[str, Any]:
    """Submit raw; the bad message is refused naming its field, or ends dead with ``reason``.

    Either way every other message is delivered and the daemon stays up.
    """
    reply = raw(daemon, {"id": 7, "cmd": "submit", "args": {"messages": messages}})
    if reply["ok"]:
        ids = [a["id"] for a in reply["result"]["accepted"]]
        daemon.wait_idle()
        stopped = daemon.call("message", {"id": ids[bad]})
        assert stopped["status"] == "dead", stopped
        assert stopped["last_error"].startswith(reason), stopped["last_error"]
        innocent = ids[:bad] + ids[bad + 1 :]
    else:
        error = reply["error"]
        assert error["code"] in REFUSALS, error
        assert f"messages[{bad}]" in error["message"], error  # names the message and field
        others = messages[:bad] + messages[bad + 1 :]
        accepted = daemon.call("submit", {"messages": others})["accepted"]
        daemon.wait_idle()
        innocent = [a["id"] for a in accepted]
    states = {daemon.call("message", {"id": i})["status"] for i in innocent}
    assert states == {"delivered"}
    assert daemon.proc is not None and daemon.proc.poll() is None
    return reply


def never_failed(daemon: Daemon, name: str) -> None:
    integration = daemon.integration(name)
    assert integration["state"] == "running", integration
    audit = daemon.call("audit", {"kinds": ["actor_failed"], "limit": 10})
    assert audit["events"] == []


# --- symptom 1: a lone surrogate, from a provider's answer ------------------------------------


def test_a_providers_unstorable_answer_is_kept_readable_and_never_resent(
    tmp_path: Path, sim: Simulator
) -> None:
    """An id or error text holding \\ud800 and NUL: stored readable, the daemon stays up, an
    innocent email beside them is delivered, and a restart sends none of them again."""
    proxy = HostileProxy(sim.url)
    text = config_for(tmp_path, sim).replace(sim.url, proxy.url)
    daemon = Daemon(tmp_path, text).start()
    try:
        accepted = daemon.call(
            "submit",
            {"messages": [resend("HOSTILE-ID"), resend("HOSTILE-ERROR"), resend("innocent")]},
        )["accepted"]
        odd_id, odd_error, innocent = (a["id"] for a in accepted)
        daemon.wait_idle()
        _answers_kept_readable(daemon, odd_id, odd_error, innocent)
        sent = proxy.marked("HOSTILE-ID"), proxy.marked("HOSTILE-ERROR"), proxy.marked("innocent")
        assert sent == (1, 1, 1)
        keys = sim.http.get("/_sim/keys?provider=resend").json()["resend"]
        assert sorted(keys.values()) == [1, 1]  # the simulator took the id'd one and the innocent

        assert daemon.stop() == 0
        daemon.start()  # symptom 1's crash loop: every start sent the message again
        daemon.wait_idle()
        again = proxy.marked("HOSTILE-ID"), proxy.marked("HOSTILE-ERROR"), proxy.marked("innocent")
        assert again == sent
        _answers_kept_readable(daemon, odd_id, odd_error, innocent)
        assert "Traceback" not in daemon.log_text()
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            assert daemon.stop() == 0, daemon.log_text()
        proxy.close()


def _answers_kept_readable(daemon: Daemon, odd_id: int, odd_error: int, innocent: int) -> None:
    delivered = daemon.call("message", {"id": odd_id})
    assert delivered["status"] == "delivered"
    assert delivered["provider_id"].startswith("re_\\ud800")
    dead = daemon.call("message", {"id": odd_error})
    assert dead["status"] == "dead"
    assert dead["last_error"] == "HTTP 422: validation_error: bad address \\ud800\\x00 here"
    assert daemon.call("message", {"id": innocent})["status"] == "delivered"
    shown = daemon.cli("dead-letters", "show", str(odd_error))
    assert shown.returncode == 0, shown.stderr
    assert "bad address \\ud800\\x00 here" in shown.stdout
    never_failed(daemon, "resend")


# --- symptoms 1 to 4, the producer's side: whatever layer stops it ----------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    workdir = tmp_path_factory.mktemp("contain")
    simulator = Simulator(workdir / "simulator.log")
    try:
        with running(workdir, config_for(workdir, simulator)) as running_daemon:
            yield running_daemon
    finally:
        simulator.stop()


def test_a_lone_surrogate_in_a_payload_never_reaches_the_writer_as_such(daemon: Daemon) -> None:
    """Symptom 1: '\\ud800' in a payload is refused or dead-lettered; the writer lives on."""
    bad = resend("lone surrogate", payload={**EMAIL, "subject": "s", "text": "\ud800"})
    contained(daemon, [resend("before"), bad, resend("after")], 1, "could not build the request")
    daemon.call("status")  # the writer still commits: the daemon did not die 30 s later
    never_failed(daemon, "resend")


def test_nan_in_one_event_leaves_30_innocents_delivered(daemon: Daemon) -> None:
    """Symptom 2: NaN in one analytics event; the 30 events beside it are delivered."""

    def event(n: int, amount: float) -> dict[str, Any]:
        properties = {"amount": amount, "n": n}
        payload = {
            "event_type": "purchase",
            "user_id": f"user-{n:05}",
            "event_properties": properties,
        }
        return {"target": "amplitude", "payload": payload}

    messages = [event(n, 10.0) for n in range(30)]
    messages.insert(12, event(99, float("nan")))
    contained(daemon, messages, 12, "could not build the request: ValueError")
    never_failed(daemon, "amplitude")
    assert daemon.integration("amplitude")["restarts"] == 0


@pytest.mark.parametrize(
    ("target", "key"),
    [("resend", "clé-1"), ("smtp", "k\r\nBcc: everyone@example.com")],
    ids=["non-ascii-to-resend", "crlf-to-smtp"],
)
def test_a_key_no_header_can_carry_leaves_the_others_delivered(
    daemon: Daemon, target: str, key: str
) -> None:
    """Symptom 3: a non-ASCII or CR/LF idempotency key ends its message alone."""
    messages = [resend("before"), {**resend("keyed"), "target": target, "key": key}]
    contained(daemon, [*messages, resend("after")], 1, "could not build the request")
    never_failed(daemon, target)


@pytest.mark.parametrize("subject", ["Timeline\u2028update", "Timeline\x85update"])
def test_a_line_boundary_in_an_smtp_subject_leaves_the_others_delivered(
    daemon: Daemon, subject: str
) -> None:
    """Symptom 4: U+2028 or U+0085 in a subject ends its message alone; the SMTP actor runs."""
    bad = {"target": "smtp", "payload": {**EMAIL, "subject": subject}}
    good = {"target": "smtp", "payload": {**EMAIL, "subject": "Timeline update"}}
    contained(daemon, [good, bad, good], 1, "could not build the request: ValueError")
    never_failed(daemon, "smtp")
    assert daemon.integration("smtp")["restarts"] == 0
