"""The privacy CLI: `subject erase|status|export|consent` and `keys rotate`, and `send --subject`.

Most tests run the commands through ``_cli.main`` against one real daemon
(``ringbearer run`` on the sandbox, shared by the module; each test names
subjects of its own). The exit code of an erasure that ends provider_failed,
and what `send` puts in a message's subjects, are checked against the fake
daemon of the deliverability CLI's tests.
"""

from __future__ import annotations

import json
import re
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ringbearer import _cli, _cli_privacy
from ringbearer._cli_base import EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from ringbearer.control import _protocol as proto
from ringbearer.control._replies import ErasureStepView, ErasureView, SubjectStatusReply
from ringbearer.privacy._erasure import STEPS
from ringbearer.privacy._kek import parse_key
from ringbearer.privacy._seal import Kek

from .procs import Daemon, config_for, poll, running, write_jsonl
from .test_cli_deliverability import E, FakeDaemon, accepting
from .test_cli_deliverability import daemon as daemon

SENDER = "Studio <studio@example.com>"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    workdir = tmp_path_factory.mktemp("privacy")
    with running(workdir, config_for(workdir)) as started:
        yield started


def cli(live: Daemon, *argv: str) -> int:
    return _cli.main([*argv, "--socket", str(live.socket)])


def deliver(live: Daemon, to: str, text: str) -> None:
    """One email to ``to``, delivered by the sandbox before this returns."""
    payload = {"from": SENDER, "to": to, "subject": "Seating plan", "text": text}
    reply = live.call("submit", {"messages": [{"target": "email", "payload": payload}]})
    assert not reply["refused"]
    live.wait_idle()


def status_of(live: Daemon, subject: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert cli(live, "subject", "status", subject, "--json") == EXIT_OK
    shown: dict[str, Any] = json.loads(capsys.readouterr().out)
    return shown


def kek_on_disk(live: Daemon) -> str:
    """The id of the key-encryption key in the daemon's own key file."""
    key = parse_key((live.workdir / "state" / "ringbearer.kek").read_text())
    assert key is not None
    return Kek(key).id


# -- against the real daemon -----------------------------------------------------------------


def test_erase_wait_reports_each_step_until_completed_and_status_shows_it(
    live: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    """An address with one delivered email: `--wait` prints every step once, in order, then
    `completed` (exit 0), naming only the opaque id; status then shows it erased, key gone."""
    address = "erase-cli@example.com"
    deliver(live, address, "See you at the rehearsal.")
    assert cli(live, "subject", "erase", address, "--wait") == EXIT_OK
    out = capsys.readouterr().out
    assert address not in out
    head, *lines = out.splitlines()
    job = re.fullmatch(r"erasure (\d+) of (s_[0-9a-f]{32}): running \(requested by .*uid.*", head)
    assert job is not None, head
    done_at_start = [s for s in STEPS if re.search(rf"^  {s} +done at ", out, re.MULTILINE)]
    reported = [
        m[1] for line in lines if (m := re.fullmatch(rf"erasure {job[1]}: (\w+) done", line))
    ]
    assert done_at_start + reported == list(STEPS)
    assert lines[-1] == f"erasure {job[1]}: completed"
    shown = status_of(live, address, capsys)
    assert (shown["subject"], shown["erased"], shown["has_key"]) == (job[2], True, False)
    (erasure,) = shown["erasures"]
    assert erasure["outcome"] == "completed"
    assert [s["step"] for s in erasure["steps"] if s["done_at"] is not None] == list(STEPS)
    assert cli(live, "subject", "status", job[2]) == EXIT_OK
    text = capsys.readouterr().out
    assert "erased: yes\nkey held: no\n" in text and "pending" not in text
    # Nothing new about them is taken: an analytics event refused as erased, mail suppressed.
    event = json.dumps({"event": "rsvp", "distinct_id": address})
    assert cli(live, "send", "mixpanel", "--payload", event) == 1
    said = capsys.readouterr()
    assert "erased" in said.out + said.err and address not in said.out + said.err
    mail = json.dumps({"from": SENDER, "to": address, "subject": "Again", "text": "Hi"})
    assert cli(live, "send", "email", "--payload", mail) == 1
    said = capsys.readouterr()
    assert "suppressed" in said.out + said.err


def test_export_writes_a_private_file_with_the_payload_opened(
    live: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`send --subject` names a person beside the recipient; their export (-o, mode 0600)
    holds the decrypted text, and so does the recipient's; someone else's holds nothing."""
    canary = f"canary-{uuid.uuid4().hex}"
    payload = {"from": SENDER, "to": "usher@example.com", "subject": "Toasts", "text": canary}
    code = cli(live, "send", "email", "--payload", json.dumps(payload), "--subject", "bride@x.org")
    assert code == EXIT_OK
    live.wait_idle()
    out = tmp_path / "export.json"
    assert cli(live, "subject", "export", "Bride@X.org", "-o", str(out)) == EXIT_OK
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "exported s_" in capsys.readouterr().out
    exported = json.loads(out.read_text())
    assert exported["identity"] == "bride@x.org"
    (message,) = exported["messages"]
    assert (message["status"], message["payload"]["text"]) == ("delivered", canary)
    assert cli(live, "subject", "export", "usher@example.com", "--json") == EXIT_OK
    (kept,) = json.loads(capsys.readouterr().out)["messages"]
    assert kept["payload"]["text"] == canary
    assert cli(live, "subject", "export", "nobody@example.com", "--json") == EXIT_OK
    assert json.loads(capsys.readouterr().out)["messages"] == []


def test_export_refuses_to_overwrite_a_file_unless_forced(
    live: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing FILE is left as it was (exit 1); --force replaces it, and it is 0600 then."""
    deliver(live, "groom@example.com", "Cufflinks are in the blue box.")
    out = tmp_path / "export.json"
    out.write_text("keep me\n")
    out.chmod(0o644)
    assert cli(live, "subject", "export", "groom@example.com", "-o", str(out)) == EXIT_REFUSED
    assert "exists; --force overwrites it" in capsys.readouterr().err
    assert out.read_text() == "keep me\n"
    assert cli(live, "subject", "export", "groom@example.com", "-o", str(out), "--force") == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text())["identity"] == "groom@example.com"
    assert [p.name for p in tmp_path.iterdir()] == ["export.json"]  # no temporary file left


def test_consent_granted_then_withdrawn_shows_in_status(
    live: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    subject = "consent-cli@example.com"
    argv = ("subject", "consent", subject, "--source", "signup-form", "--by", "ops")
    assert cli(live, *argv, "--grant", "marketing") == EXIT_OK
    granted = capsys.readouterr().out
    assert re.fullmatch(
        r"s_[0-9a-f]{32}: marketing consent granted at \S+Z \(source signup-form, by ops\)\n",
        granted,
    )
    assert status_of(live, subject, capsys)["consent"] == {"marketing": True}
    assert cli(live, *argv, "--withdraw", "marketing") == EXIT_OK
    assert "marketing consent withdrawn" in capsys.readouterr().out
    assert status_of(live, subject, capsys)["consent"] == {"marketing": False}
    assert cli(live, "subject", "status", subject) == EXIT_OK
    assert "consent: marketing withdrawn\n" in capsys.readouterr().out


def test_a_bad_purpose_is_a_usage_error(live: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    """The daemon's refusal names the purposes known (exit 2); so does argparse's own check."""
    argv = ("subject", "consent", "a@x.org", "--source", "form")
    assert cli(live, *argv, "--grant", "promos") == EXIT_USAGE
    err = capsys.readouterr().err
    assert "bad_args: purpose: unknown 'promos'; known: marketing, analytics" in err
    assert "usage: ringbearer subject consent" in err
    for wrong in (("--grant", "marketing", "--withdraw", "marketing"), ()):
        with pytest.raises(SystemExit) as exited:
            cli(live, *argv, *wrong)
        assert exited.value.code == EXIT_USAGE


def test_keys_rotate_names_a_new_key_and_old_messages_stay_readable(
    live: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The new KEK's id is not the one in the key file before; once the rewrap is done the key
    file holds it, and a message sealed before the rotation still exports."""
    deliver(live, "planner@example.com", "before-rotation")
    before = kek_on_disk(live)
    assert cli(live, "keys", "rotate") == EXIT_OK
    out = capsys.readouterr().out
    shown = re.match(r"key-encryption key: (k_[0-9a-f]{16})\nrewrap: ", out)
    assert shown is not None, out
    assert shown[1] != before
    poll(lambda: kek_on_disk(live), lambda now: now == shown[1], 30, "the rewrap finished")
    assert cli(live, "subject", "export", "planner@example.com") == EXIT_OK
    (message,) = json.loads(capsys.readouterr().out)["messages"]
    assert message["payload"]["text"] == "before-rotation"


# -- against a fake daemon -------------------------------------------------------------------


def job(outcome: str | None, done: int) -> ErasureView:
    steps = [ErasureStepView(s, E + i if i < done else None, {}) for i, s in enumerate(STEPS)]
    finished = None if outcome is None else E + len(STEPS)
    return ErasureView(4, "s_" + "a" * 32, "ops", E, finished, outcome, steps)


def test_erase_wait_exits_1_when_a_provider_deletion_was_given_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Steps done between polls are each printed once; provider_failed ends it with exit 1."""
    polls = iter([job(None, 3), job("provider_failed", len(STEPS))])

    def answer(request: Any) -> Any:
        if isinstance(request, proto.SubjectErase):
            return job(None, 1)
        assert request == proto.SubjectStatus("s_" + "a" * 32)
        return SubjectStatusReply(request.subject, True, False, 0, {}, [next(polls)])

    fake = FakeDaemon(answer)
    monkeypatch.setattr(_cli_privacy, "call", fake.call)
    monkeypatch.setattr(_cli_privacy, "POLL_SECONDS", 0.0)
    code = _cli.main(
        ["subject", "erase", "s_" + "a" * 32, "--wait", "--by", "ops", "--socket", "x"]
    )
    assert code == EXIT_REFUSED
    assert fake.requests[0] == proto.SubjectErase("s_" + "a" * 32, "ops")
    lines = capsys.readouterr().out.splitlines()
    reported = [line for line in lines if line.endswith(" done")]
    assert reported == [f"erasure 4: {s} done" for s in STEPS[1:]]
    assert lines[-1].startswith("erasure 4: provider_failed (the key is destroyed;")


def test_send_names_subjects_from_the_options_and_from_a_file(
    tmp_path: Path, daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    """--subject (repeated) and a line's "subjects" become the message's subjects; a line whose
    subjects are not a list of strings is a usage error naming the line, and nothing is sent."""
    daemon.answers = accepting(set())
    argv = ["send", "email", "--payload", '{"n": 1}', "--subject", "a@x.org", "--subject", "+1555"]
    assert _cli.main([*argv, "--socket", "x"]) == EXIT_OK
    good = [{"target": "email", "payload": {"n": 2}, "subjects": ["c@x.org"]}]
    assert _cli.main(["send", "--file", str(write_jsonl(tmp_path / "a.jsonl", good))]) == EXIT_OK
    assert [r.messages[0].subjects for r in daemon.requests] == [["a@x.org", "+1555"], ["c@x.org"]]
    bad = [{"target": "email", "payload": {"n": 3}, "subjects": "c@x.org"}]
    assert _cli.main(["send", "--file", str(write_jsonl(tmp_path / "b.jsonl", bad))]) == EXIT_USAGE
    assert "b.jsonl:1: 'subjects' must be a list of strings" in capsys.readouterr().err
    assert len(daemon.requests) == 2


def test_marketing_needs_recorded_consent_where_config_requires_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`send --category marketing` is refused as no_consent, naming the purpose, until
    `subject consent --grant marketing` is recorded; transactional mail needs none."""
    config = config_for(tmp_path).replace("require_consent = []", 'require_consent = ["marketing"]')
    assert 'require_consent = ["marketing"]' in config
    with running(tmp_path, config) as daemon:
        payload = json.dumps({"from": SENDER, "to": "bride@example.org", "subject": "Offer",
                              "text": "10% off albums"})  # fmt: skip
        send = ("send", "email", "--category", "marketing", "--payload", payload)
        assert cli(daemon, *send) == 1
        said = capsys.readouterr()
        assert "no_consent" in said.out + said.err and "marketing consent" in said.out + said.err
        assert cli(daemon, "send", "email", "--payload", payload) == EXIT_OK  # transactional
        grant = ("subject", "consent", "bride@example.org", "--grant", "marketing")
        assert cli(daemon, *grant, "--source", "signup-form") == EXIT_OK
        capsys.readouterr()
        assert cli(daemon, *send) == EXIT_OK
