"""The template CLI: `template put|show|list|render`, and `send --template`.

Argument handling, the files read and what is printed are checked against a
fake daemon on a real control socket: it parses each request line as the
daemon does, keeps the typed request and answers a canned typed reply, so the
wire names and shapes are exercised too. `put`, `render` and `list` also run
against one real daemon (``ringbearer run`` on the sandbox).
"""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ringbearer import _cli
from ringbearer._cli_base import EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from ringbearer._errors import ErrorCode, RequestError
from ringbearer.control import _protocol as proto
from ringbearer.control._replies import (
    AcceptedMessage,
    RenderedReply,
    SubmitReply,
    TemplatesReply,
    TemplateView,
)

from .procs import Daemon, config_for, running, write_jsonl

E = 1_800_000_000.0  # 2027-01-15T08:00:00Z
SENDER = "Studio <studio@example.com>"
INVITE = {"subject": "{{ wedding.couple }} invite you", "text": "Dear {{ guest }},\nJoin us."}


class WireDaemon:
    """A control socket answered from a thread: keeps each typed request, replies what
    ``answer`` makes of it (a typed reply, or a RequestError sent as the error reply)."""

    def __init__(self, path: Path, answer: Callable[[Any], Any]) -> None:
        self.path, self.answer = path, answer
        self.requests: list[Any] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(4)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        converter = proto.converter()
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # shut down: the test is over
                return
            with conn, conn.makefile("rb") as lines:
                for line in lines:
                    conn.sendall(self._reply(line, converter))

    def _reply(self, line: bytes, converter: Any) -> bytes:
        envelope = proto.parse(line, converter)
        self.requests.append(envelope.request)
        try:
            result = self.answer(envelope.request)
        except RequestError as exc:
            return proto.error(envelope.id, exc.code, exc.message)
        return proto.ok(envelope.id, converter.unstructure(result))

    def close(self) -> None:
        self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the serving thread
        self._server.close()
        self._thread.join(10)


@pytest.fixture
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WireDaemon]:
    # A short directory: a socket's path must fit in 108 bytes.
    fake = WireDaemon(tmp_path_factory.mktemp("w") / "c.sock", lambda request: None)
    yield fake
    fake.close()


def run(wire: WireDaemon, *argv: str) -> int:
    return _cli.main([*argv, "--socket", str(wire.path)])


def kept(request: Any) -> TemplateView:
    """What a daemon keeping every put as version 3 answers."""
    return TemplateView(request.name, 3, request.parts, E, request.by)


# -- against a fake daemon ---------------------------------------------------------------------


def test_put_takes_json_toml_or_one_part_files(
    wire: WireDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A .json or .toml file is an object of parts; any other file is one part, `text` unless
    --part names it; --by names who (else the user and uid); the version kept is printed."""
    wire.answer = kept
    (tmp_path / "invite.json").write_text(json.dumps(INVITE))
    toml = 'subject = "{{ wedding.couple }} invite you"\ntext = """Dear {{ guest }},\nJoin us."""'
    (tmp_path / "invite.toml").write_text(toml)
    (tmp_path / "note.txt").write_text("Dear {{ guest }},\n")
    (tmp_path / "note.html").write_text("<p>{{ guest }}</p>\n")
    assert run(wire, "template", "put", "invite", str(tmp_path / "invite.json"), "--by", "ops") == 0
    assert capsys.readouterr().out == "template invite version 3 kept\n"
    assert run(wire, "template", "put", "invite", str(tmp_path / "invite.toml")) == EXIT_OK
    assert run(wire, "template", "put", "note", str(tmp_path / "note.txt")) == EXIT_OK
    html = ("template", "put", "note", str(tmp_path / "note.html"), "--part", "html")
    assert run(wire, *html) == EXIT_OK
    assert wire.requests[:2] == [
        proto.TemplatePut("invite", INVITE, "ops"),
        proto.TemplatePut("invite", INVITE, wire.requests[1].by),
    ]
    assert "uid" in wire.requests[1].by
    assert [r.parts for r in wire.requests[2:]] == [
        {"text": "Dear {{ guest }},\n"},
        {"html": "<p>{{ guest }}</p>\n"},
    ]


def test_put_refuses_a_bad_file_with_exit_2_and_sends_nothing(
    wire: WireDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bad file is a usage error naming it and what is wrong; no request is made."""
    files = {
        "list.json": ("[1, 2]", "must hold an object of parts (payload field -> template source),"),
        "number.json": ('{"subject": 7}', "part 'subject' must be a string"),
        "table.toml": ("[text]\nbody = 'x'", "part 'text' must be a string (its template source),"),
        "broken.json": ('{"text": ', "is not valid JSON"),
        "broken.toml": ("text = ", "is not valid TOML"),
        "empty.json": ("{}", "holds no parts"),
        "latin1.txt": ("Caf\xe9", "not UTF-8 text"),
    }
    for name, (text, _) in files.items():
        (tmp_path / name).write_bytes(text.encode("latin-1"))
    files["absent.json"] = ("", "cannot read")
    for name, (_, said) in files.items():
        assert run(wire, "template", "put", "t", str(tmp_path / name)) == EXIT_USAGE, name
        err = capsys.readouterr().err
        assert str(tmp_path / name) in err and said in err, err
        assert "usage: ringbearer template put" in err
    assert run(wire, "template", "put", "t", str(tmp_path / "list.json"), "--part", "html") == 2
    assert "--part is for a file of one part" in capsys.readouterr().err
    assert wire.requests == []


def test_show_prints_each_part_under_its_field_and_list_a_row_each(
    wire: WireDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    invite = TemplateView("invite", 2, INVITE, E, "ops")
    note = TemplateView("referral_ask", 12, {"text": "x"}, E + 60, "alice (uid 1000)")

    def answer(request: Any) -> Any:
        return invite if isinstance(request, proto.TemplateShow) else TemplatesReply([invite, note])

    wire.answer = answer
    assert run(wire, "template", "show", "invite", "--version", "2") == EXIT_OK
    assert capsys.readouterr().out == (
        "template invite version 2 (kept by ops at 2027-01-15T08:00:00Z)\n"
        "== subject ==\n{{ wedding.couple }} invite you\n"
        "== text ==\nDear {{ guest }},\nJoin us.\n"
    )
    assert run(wire, "template", "list") == EXIT_OK
    assert capsys.readouterr().out == (
        "NAME          VERSION  BY                WHEN                  PARTS\n"
        "invite              2  ops               2027-01-15T08:00:00Z  subject, text\n"
        "referral_ask       12  alice (uid 1000)  2027-01-15T08:01:00Z  text\n"
    )
    assert wire.requests == [proto.TemplateShow("invite", 2), proto.TemplateList()]
    wire.answer = lambda request: TemplatesReply([])
    assert run(wire, "template", "list") == EXIT_OK
    assert capsys.readouterr().out == "no templates\n"


def test_render_reads_vars_from_a_file_or_stdin_and_prints_fields_then_digest(
    wire: WireDaemon,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The vars go as given; --json is the reply; vars that are not an object are a usage error;
    the daemon's refusal (a missing variable) is printed with its code."""
    fields = {"subject": "Ana & Ben invite you", "text": "Dear Cy,\nJoin us."}
    wire.answer = lambda q: RenderedReply(q.name, q.version or 4, fields, "sha256:ab12")
    given = {"couple": ["Ana", "Ben"], "guest": "Cy", "seats": 2}
    (tmp_path / "vars.json").write_text(json.dumps(given))
    assert run(wire, "template", "render", "invite", "--vars", str(tmp_path / "vars.json")) == 0
    assert capsys.readouterr().out == (
        "template invite version 4 rendered\n== subject ==\nAna & Ben invite you\n"
        "== text ==\nDear Cy,\nJoin us.\ndigest: sha256:ab12\n"
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(given)))
    argv = ("template", "render", "invite", "--vars", "-", "--version", "1", "--json")
    assert run(wire, *argv) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["fields"] == fields
    assert wire.requests == [
        proto.TemplateRender("invite", given),
        proto.TemplateRender("invite", given, 1),
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO('["Cy"]'))
    assert run(wire, "template", "render", "invite", "--vars", "-") == EXIT_USAGE
    assert "stdin: the vars must be a JSON object, not list" in capsys.readouterr().err
    assert len(wire.requests) == 2

    def missing(request: Any) -> Any:
        raise RequestError(ErrorCode.BAD_ARGS, "template invite: missing variable 'guest'")

    wire.answer = missing
    assert run(wire, "template", "render", "invite", "--vars", str(tmp_path / "vars.json")) == 2
    assert "bad_args: template invite: missing variable 'guest'" in capsys.readouterr().err


def test_send_names_the_template_its_version_and_vars(
    wire: WireDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--payload gives the other fields (or none: {}); a file's line may name a template without
    a payload; a template's options without --template, or beside --file, are usage errors."""
    wire.answer = lambda q: SubmitReply([AcceptedMessage(1, "k1", False)], [])
    vars_file = tmp_path / "vars.json"
    vars_file.write_text('{"guest": "Cy"}')
    head = json.dumps({"from": SENDER, "to": "cy@example.com"})
    argv = ("send", "email", "--template", "invite", "--template-version", "2")
    assert run(wire, *argv, "--vars", str(vars_file), "--payload", head) == EXIT_OK
    assert run(wire, "send", "email", "--template", "invite") == EXIT_OK
    line = {"target": "email", "template": "invite", "vars": {"guest": "Di"}}
    assert run(wire, "send", "--file", str(write_jsonl(tmp_path / "m.jsonl", [line]))) == 0
    sent = [r.messages[0] for r in wire.requests]
    assert [(m.payload, m.template, m.template_version, m.vars) for m in sent] == [
        (json.loads(head), "invite", 2, {"guest": "Cy"}),
        ({}, "invite", None, {}),
        ({}, "invite", None, {"guest": "Di"}),
    ]
    capsys.readouterr()
    for wrong, said in [
        (("send", "email", "--payload", "{}", "--vars", str(vars_file)), "go with --template NAME"),
        (("send", "--file", str(tmp_path / "m.jsonl"), "--template", "x"), "each line names"),
        (("send", "email", "--template", "x", "--vars", str(tmp_path / "none.json")), "cannot"),
    ]:
        assert run(wire, *wrong) == EXIT_USAGE
        assert said in capsys.readouterr().err
    bad = [{"target": "email", "template": "invite", "vars": ["Di"]}]
    assert run(wire, "send", "--file", str(write_jsonl(tmp_path / "b.jsonl", bad))) == EXIT_USAGE
    assert "b.jsonl:1: 'vars' must be a JSON object" in capsys.readouterr().err
    assert len(wire.requests) == 3


def test_a_refusal_exits_1_and_the_commands_are_found_by_name(
    wire: WireDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    """No such template is the daemon's refusal (exit 1); `template` builds its own parser."""

    def absent(request: Any) -> Any:
        raise RequestError(ErrorCode.NOT_FOUND, "no template 'nope'")

    wire.answer = absent
    assert run(wire, "template", "show", "nope") == EXIT_REFUSED
    assert "not_found: no template 'nope'" in capsys.readouterr().err
    assert _cli.COMMAND_MODULES["template"] == "_cli_templates"
    with pytest.raises(SystemExit) as exited:
        run(wire, "template", "show", "invite", "--version", "0")
    assert exited.value.code == EXIT_USAGE
    assert run(wire, "template") == EXIT_USAGE


# -- against the real daemon -----------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    workdir = tmp_path_factory.mktemp("templates")
    with running(workdir, config_for(workdir)) as started:
        yield started


def test_put_render_and_list_on_the_daemon(
    live: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two puts keep versions 1 and 2; render uses the latest unless told, with the same digest
    each time for the same vars; list shows the latest version and its parts."""

    def cli(*argv: str) -> int:
        return _cli.main([*argv, "--socket", str(live.socket)])

    first, second = tmp_path / "v1.json", tmp_path / "v2.toml"
    first.write_text(json.dumps({"subject": "Hello {{ guest }}", "text": "Seat {{ seat }}"}))
    second.write_text('subject = "Welcome {{ guest }}"\ntext = "Table {{ seat }}"\n')
    (tmp_path / "vars.json").write_text('{"guest": "Cy", "seat": 4}')
    assert cli("template", "put", "seating", str(first), "--by", "ops") == EXIT_OK
    assert cli("template", "put", "seating", str(second), "--by", "ops") == EXIT_OK
    assert capsys.readouterr().out == (
        "template seating version 1 kept\ntemplate seating version 2 kept\n"
    )
    renders = []
    for version in ((), (), ("--version", "1")):
        argv = ("template", "render", "seating", "--vars", str(tmp_path / "vars.json"), "--json")
        assert cli(*argv, *version) == EXIT_OK
        renders.append(json.loads(capsys.readouterr().out))
    assert renders[0]["fields"] == {"subject": "Welcome Cy", "text": "Table 4"}
    assert renders[2]["fields"] == {"subject": "Hello Cy", "text": "Seat 4"}
    assert renders[0]["digest"] == renders[1]["digest"] != renders[2]["digest"]
    assert cli("template", "list") == EXIT_OK
    (row,) = [r for r in capsys.readouterr().out.splitlines() if r.startswith("seating ")]
    assert row.split()[1:3] == ["2", "ops"] and row.endswith("subject, text")
