"""Deliverability on the real daemon and the real simulator, which sends back each
provider's events signed as the provider signs them.

Each test runs ``ringbearer run`` against ``ringbearer simulate``; the daemon
registers its public listener with the simulator, as an operator registers
the endpoint in each provider's dashboard.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .procs import Daemon, Simulator, config_for, poll, running, write_jsonl

pytestmark = pytest.mark.e2e

SENDER = "Studio <news@studio.example>"


def mail(to: str, n: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "target": "email",
        "payload": {"from": SENDER, "to": to, "subject": f"Your gallery {n}", "text": "Hello."},
        **extra,
    }


def sent_to(sim: Simulator, address: str) -> int:
    """How many times any email provider of the simulator took mail for ``address``."""
    total = 0
    for provider in ("resend", "mailgun", "smtp"):
        counts = sim.http.get("/_sim/recipients", params={"provider": provider, "address": address})
        total += sum(counts.json().get(provider, {}).values())
    return total


def events(daemon: Daemon, kind: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = daemon.call("audit", {"kinds": [kind], "limit": 5000})["events"]
    return found


def provider_events(daemon: Daemon, event: str) -> list[dict[str, Any]]:
    return [e for e in events(daemon, "provider_event") if e["detail"]["event"] == event]


def check(daemon: Daemon, address: str) -> dict[str, Any]:
    done = daemon.cli("suppression", "check", address, "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture
def sim(tmp_path: Path) -> Any:
    simulator = Simulator(tmp_path / "simulator.log")
    yield simulator
    simulator.stop()


def test_a_hard_bounce_suppresses_the_address_and_a_second_email_never_leaves(
    tmp_path: Path, sim: Simulator
) -> None:
    with running(tmp_path, config_for(tmp_path, sim)) as daemon:
        original = mail("bounce@simulator.test", key="first-try")
        first = daemon.call("submit", {"messages": [original]})
        assert not first["refused"]
        poll(lambda: provider_events(daemon, "hard_bounce"), bool, 20, "the signed hard bounce")
        assert sent_to(sim, "bounce@simulator.test") == 1
        shown = check(daemon, "bounce@simulator.test")
        (entry,) = shown["suppressions"]
        assert (entry["reason"], entry["scope"], entry["by"]) == ("hard_bounce", "*", "resend")
        listed = daemon.call("suppression-list", {"address": "bounce@simulator.test"})
        assert entry["id"] == listed["suppressions"][0]["id"]  # named as the store keeps it
        refused = [v for v in shown["verdicts"] if v["refused"]]
        assert {v["priority"] for v in refused} == {"normal"}  # critical may still try daily
        # The second email, and one to an innocent beside it in the same request.
        again = daemon.cli(
            "send",
            "--file",
            str(write_jsonl(tmp_path / "two.jsonl", [mail("bounce@simulator.test", 2),
                                                      mail("guest@example.com", 3)])),
        )  # fmt: skip
        assert again.returncode == 1
        assert "refused messages[0]: suppressed" in again.stdout + again.stderr
        # A producer's retry of the message accepted before the bounce is that message.
        retry = daemon.call("submit", {"messages": [original]})
        assert not retry["refused"]
        assert retry["accepted"] == [{**first["accepted"][0], "duplicate": True}]
        daemon.wait_idle()
        assert sent_to(sim, "guest@example.com") == 1
        assert sent_to(sim, "bounce@simulator.test") == 1  # it did not move


def test_marketing_queued_before_a_complaint_is_dead_lettered_suppressed(
    tmp_path: Path, sim: Simulator
) -> None:
    with running(tmp_path, config_for(tmp_path, sim)) as daemon:
        later = time.time() + 3
        queued = mail("complaint@simulator.test", 1, category="marketing", not_before=later)
        receipt = mail("complaint@simulator.test", 2)  # transactional: sent now, complained
        reply = daemon.call("submit", {"messages": [queued, receipt]})
        held_id = reply["accepted"][0]["id"]
        poll(lambda: provider_events(daemon, "complained"), bool, 20, "the complaint")
        dead = poll(
            lambda: daemon.call("dead-letters", {})["dead_letters"],
            lambda found: any(d["message_id"] == held_id for d in found),
            20,
            "the queued marketing email dead-lettered",
        )
        (letter,) = [d for d in dead if d["message_id"] == held_id]
        assert letter["reason"] == "suppressed: complaint (*)"
        assert sent_to(sim, "complaint@simulator.test") == 1  # the receipt only
        # Transactional mail still goes to someone who complained.
        more = daemon.call("submit", {"messages": [mail("complaint@simulator.test", 3)]})
        assert not more["refused"]


def test_rfc_8058_headers_reach_every_email_provider_and_one_click_suppresses_marketing_only(
    tmp_path: Path, sim: Simulator
) -> None:
    with running(tmp_path, config_for(tmp_path, sim)) as daemon:
        for provider in ("resend", "mailgun", "smtp"):
            done = daemon.cli(
                "send", provider, "--category", "marketing", "--payload",
                json.dumps(mail(f"reader-{provider}@example.com")["payload"]),
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
        daemon.wait_idle()
        links = {}
        for provider in ("resend", "mailgun", "smtp"):
            (sent,) = sim.http.get("/_sim/mail", params={"provider": provider}).json()[provider]
            headers = {k.lower(): v for k, v in sent["headers"].items()}
            assert headers["list-unsubscribe-post"] == "List-Unsubscribe=One-Click"
            link = headers["list-unsubscribe"]
            assert link.startswith("<http://127.0.0.1:") and "/unsubscribe/" in link
            links[provider] = link.strip("<>").split(">")[0]
        page = httpx.get(links["smtp"])
        assert page.status_code == 200 and "<form" in page.text and "<script" not in page.text
        assert not check(daemon, "reader-smtp@example.com")["suppressions"]  # a GET is no click
        posted = httpx.post(links["smtp"], content=b"List-Unsubscribe=One-Click")
        assert posted.status_code == 200
        (entry,) = check(daemon, "reader-smtp@example.com")["suppressions"]
        assert (entry["scope"], entry["reason"]) == ("marketing", "unsubscribe")
        # The link names the reader by subject id, never by address, and the click
        # withdrew their marketing consent.
        assert "reader-smtp" not in links["smtp"]
        shown = daemon.call("subject-status", {"subject": "reader-smtp@example.com"})
        assert shown["consent"] == {"marketing": False}
        refused = daemon.cli(
            "send", "email", "--category", "marketing", "--payload",
            json.dumps(mail("reader-smtp@example.com")["payload"]),
        )  # fmt: skip
        assert refused.returncode == 1
        receipt = daemon.call("submit", {"messages": [mail("reader-smtp@example.com", 9)]})
        assert not receipt["refused"]
        daemon.wait_idle()
        assert sent_to(sim, "reader-smtp@example.com") == 2  # the marketing one, the receipt


def test_forged_stale_and_replayed_webhooks_get_401_and_change_nothing(
    tmp_path: Path, sim: Simulator
) -> None:
    from svix.webhooks import Webhook

    from ringbearer._public import SANDBOX_MAILGUN_KEY, SANDBOX_RESEND_SECRET

    with running(tmp_path, config_for(tmp_path, sim)) as daemon:
        base = daemon.status()["webhooks"]
        body = json.dumps(
            {"type": "email.complained", "created_at": "2026-12-07T10:00:00.000Z",
             "data": {"email_id": "unknown", "to": ["victim@example.com"]}}
        )  # fmt: skip
        signer = Webhook(SANDBOX_RESEND_SECRET.reveal())
        now = int(time.time())

        def svix(msg_id: str, at: int) -> dict[str, str]:
            from datetime import UTC, datetime

            moment = datetime.fromtimestamp(at, tz=UTC)
            signature = signer.sign(msg_id, moment, body)
            return {"svix-id": msg_id, "svix-timestamp": str(at), "svix-signature": signature}

        forged = {**svix("msg_1", now), "svix-signature": "v1,Zm9yZ2Vk"}
        stale = svix("msg_2", now - 3600)
        url = f"{base}/webhooks/resend"
        assert httpx.post(url, content=body, headers=forged).status_code == 401
        assert httpx.post(url, content=body, headers=stale).status_code == 401
        mailgun = _mailgun_delivery(SANDBOX_MAILGUN_KEY.reveal())
        first = httpx.post(f"{base}/webhooks/mailgun", json=mailgun)
        assert first.status_code == 200
        replay = httpx.post(f"{base}/webhooks/mailgun", json=mailgun)
        assert replay.status_code == 401
        refusals = poll(
            lambda: [e["detail"] for e in events(daemon, "webhook_refused")],
            lambda found: len(found) >= 3,
            10,
            "three refusals in the audit log",
        )
        assert sorted(r["why"] for r in refusals) == ["forged", "replayed", "stale"]
        assert not check(daemon, "victim@example.com")["suppressions"]  # forged, stale: nothing
        # The verified Mailgun complaint counted once; its replay changed nothing.
        assert len(provider_events(daemon, "complained")) == 1
        (kept,) = check(daemon, "reader@example.com")["suppressions"]
        assert (kept["reason"], kept["by"]) == ("complaint", "mailgun")
        assert "victim@example.com" not in daemon.log_text()


def _mailgun_delivery(key: str) -> dict[str, Any]:
    import hashlib
    import hmac
    import secrets

    timestamp, token = str(int(time.time())), secrets.token_hex(25)
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {
            "event": "complained",
            "id": "evt1",
            "timestamp": time.time(),
            "recipient": "reader@example.com",
            "message": {"headers": {"message-id": "nobody@mg.example.com"}},
            "user-variables": {},
        },
    }


def test_not_before_holds_a_message_across_a_restart_and_releases_it_on_time(
    tmp_path: Path, sim: Simulator
) -> None:
    text = config_for(tmp_path, sim)
    due = time.time() + 6
    with running(tmp_path, text) as daemon:
        reply = daemon.call("submit", {"messages": [mail("later@example.com", not_before=due)]})
        (accepted,) = reply["accepted"]
    assert sent_to(sim, "later@example.com") == 0
    with running(tmp_path, text) as daemon:
        assert daemon.call("message", {"id": accepted["id"]})["status"] == "queued"
        poll(lambda: sent_to(sim, "later@example.com"), lambda n: n == 1, 20, "the send on time")
        assert time.time() >= due
        delivered = daemon.call("message", {"id": accepted["id"]})
        assert delivered["status"] == "delivered"
        assert delivered["delivered_at"] >= due


def test_a_complaint_burst_pauses_marketing_of_its_domain_until_resumed(
    tmp_path: Path, sim: Simulator
) -> None:
    """1,000 marketing emails, 4 of them complained about (0.4% > 0.3%): the domain's
    marketing waits, with an alert; critical mail still goes; a resume releases what
    waited, and every email reaches the provider exactly once."""
    with running(tmp_path, config_for(tmp_path, sim)) as daemon:
        readers = [f"reader{n}@example.com" for n in range(996)]
        complainers = [f"complaint+{k}@simulator.test" for k in range(4)]
        burst = [mail(a, n, category="marketing") for n, a in enumerate(readers + complainers)]
        for start in range(0, len(burst), 500):
            daemon.call("submit", {"messages": burst[start : start + 500]})
        daemon.wait_idle()
        poll(lambda: provider_events(daemon, "complained"), lambda e: len(e) == 4, 30, "4")
        report = poll(
            lambda: daemon.call("deliverability", {}),
            lambda r: any(d["state"] == "paused" for d in r["domains"]),
            30,
            "the domain paused",
        )
        (domain,) = [d for d in report["domains"] if d["domain"] == "studio.example"]
        assert domain["complaints"] == 4 and domain["state"] == "paused"
        poll(
            lambda: [a["key"] for a in daemon.call("alerts", {})["alerts"]],
            lambda keys: "reputation_paused:studio.example" in keys,
            20,
            "the pause alerted (on the alert manager's next tick)",
        )
        later = [mail(f"late{n}@example.com", n, category="marketing") for n in range(20)]
        critical = mail("bride@example.com", 0, category="marketing", priority="critical")
        daemon.call("submit", {"messages": [*later, critical]})
        poll(lambda: sent_to(sim, "bride@example.com"), lambda n: n == 1, 20, "critical sent")
        held = poll(
            lambda: daemon.call("deliverability", {})["domains"],
            lambda ds: any(d["held"] == 20 for d in ds),
            20,
            "the later marketing held",
        )
        assert held and all(sent_to(sim, f"late{n}@example.com") == 0 for n in range(20))
        resumed = daemon.cli("deliverability", "resume", "studio.example")
        assert resumed.returncode == 0, resumed.stderr
        daemon.wait_idle()
        counts = sim.http.get("/_sim/recipients", params={"provider": "resend"}).json()["resend"]
        everyone = readers + complainers + [f"late{n}@example.com" for n in range(20)]
        assert {a: counts.get(a, 0) for a in everyone} == dict.fromkeys(everyone, 1)
        assert counts["bride@example.com"] == 1


def test_an_event_whose_commit_a_sigkill_cut_is_redelivered_and_applied_once(
    tmp_path: Path, sim: Simulator
) -> None:
    """The daemon stopped (SIGSTOP) with a verified complaint in its socket, then killed:
    no 2xx went back, so the provider sends it again, and it counts once."""
    import signal
    import socket

    from svix.webhooks import Webhook

    from ringbearer._public import SANDBOX_RESEND_SECRET

    text = config_for(tmp_path, sim)
    body = json.dumps(
        {"type": "email.complained", "created_at": "2026-12-07T10:00:00.000Z",
         "data": {"email_id": "em_1", "to": ["cut@example.com"]}}
    )  # fmt: skip

    def signed() -> dict[str, str]:
        from datetime import UTC, datetime

        now = datetime.now(tz=UTC)
        signature = Webhook(SANDBOX_RESEND_SECRET.reveal()).sign("msg_cut", now, body)
        return {"svix-id": "msg_cut", "svix-timestamp": str(int(now.timestamp())),
                "svix-signature": signature}  # fmt: skip

    with running(tmp_path, text) as daemon:
        url = httpx.URL(f"{daemon.status()['webhooks']}/webhooks/resend")
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGSTOP)
        # The whole request handed to the kernel (the connection is accepted by the
        # kernel's backlog, the bytes sit in the daemon's socket, unread), then the kill.
        with socket.create_connection((url.host, url.port or 80), timeout=10) as conn:
            conn.sendall(raw_request(url, body, signed()))
            daemon.kill9()
            try:
                answer = conn.recv(4096)
            except ConnectionResetError:  # the kernel closing what the dead process held
                answer = b""
    assert answer == b""  # never acknowledged: no answer at all
    with running(tmp_path, text) as daemon:
        assert not provider_events(daemon, "complained")  # nothing of it was kept
        again = f"{daemon.status()['webhooks']}/webhooks/resend"
        assert httpx.post(again, content=body, headers=signed()).status_code == 200
        assert httpx.post(again, content=body, headers=signed()).status_code == 200  # twice
        assert len(provider_events(daemon, "complained")) == 1
        (entry,) = check(daemon, "cut@example.com")["suppressions"]
        assert entry["reason"] == "complaint"


def raw_request(url: httpx.URL, body: str, headers: dict[str, str]) -> bytes:
    """One HTTP/1.1 POST as bytes, to hand to a socket whole."""
    head = [f"POST {url.raw_path.decode()} HTTP/1.1", f"host: {url.netloc.decode()}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head += ["content-type: application/json", f"content-length: {len(body.encode())}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body.encode()


def test_an_undelivered_sms_is_reported_by_twilio_status_callback(
    tmp_path: Path, sim: Simulator
) -> None:
    with running(tmp_path, config_for(tmp_path, sim)) as daemon:
        texts = [
            {"target": "sms", "payload": {"to": to, "body": "The car is here."}}
            for to in ("+15005550001", "+15558675310")
        ]
        daemon.call("submit", {"messages": texts})
        found = poll(
            lambda: {e["detail"]["event"] for e in events(daemon, "provider_event")},
            lambda kinds: {"undelivered", "delivered"} <= kinds,
            20,
            "Twilio's signed status callbacks",
        )
        assert "failed" not in found


def test_the_operator_commands_through_the_real_cli(tmp_path: Path, sim: Simulator) -> None:
    """suppression add, list, check, remove and deliverability, as an operator types them."""
    with running(tmp_path, config_for(tmp_path, sim)) as daemon:
        added = daemon.cli("suppression", "add", "Ann@Example.com", "--scope", "marketing",
                           "--note", "asked by phone")  # fmt: skip
        assert added.returncode == 0, added.stderr
        listed = daemon.cli("suppression", "list")
        # Kept as her subject id (a keyed hash), never the address; named by either.
        ann = daemon.call("subject-status", {"subject": "Ann@Example.com"})["subject"]
        assert listed.returncode == 0 and ann in listed.stdout and "ann@" not in listed.stdout
        assert "asked by phone" in listed.stdout and "marketing" in listed.stdout
        assert daemon.cli("suppression", "list", "--address", ann).stdout == listed.stdout
        shown = check(daemon, "ann@example.com")
        assert shown["address"] == ann
        verdicts = {(v["category"], v["priority"]): v["refused"] for v in shown["verdicts"]}
        assert verdicts["marketing", "normal"] and not verdicts["transactional", "normal"]
        bad = daemon.cli("suppression", "add", "not-an-address", "--note", "x")
        assert bad.returncode in (1, 2) and "not-an-address" in bad.stderr
        unknown = daemon.cli("suppression", "add", "ann@example.com", "--scope", "nope",
                             "--note", "x")  # fmt: skip
        assert unknown.returncode in (1, 2) and "transactional" in unknown.stderr
        audit = daemon.cli("audit", "--kind", "suppressed", "--json")
        assert "asked by phone" in audit.stdout and "ann@example.com" not in audit.stdout
        removed = daemon.cli("suppression", "remove", "ann@example.com", "--note", "mistake")
        assert removed.returncode == 0, removed.stderr
        again = daemon.cli("suppression", "remove", "ann@example.com")
        assert again.returncode == 1  # nothing left to remove
        assert not check(daemon, "ann@example.com")["suppressions"]
        daemon.call("submit", {"messages": [mail("reader@example.com")]})
        daemon.wait_idle()
        poll(lambda: provider_events(daemon, "delivered"), bool, 20, "a delivered event")
        report = daemon.cli("deliverability", "--since", "1h")
        assert report.returncode == 0 and "studio.example" in report.stdout
        as_json = json.loads(daemon.cli("deliverability", "--json").stdout)
        (row,) = [f for f in as_json["funnel"] if f["domain"] == "studio.example"]
        assert (row["sent"], row["accepted"], row["delivered"]) == (1, 1, 1)
        assert daemon.cli("deliverability", "resume", "studio.example").returncode == 1
