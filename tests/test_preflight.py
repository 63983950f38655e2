"""Preflight: each integration checked against a real simulator, sending nothing."""

from __future__ import annotations

import functools
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from ringbearer import _config, _converter
from ringbearer._config import Config, secret_refs
from ringbearer._preflight import (
    IntegrationReport,
    PreflightReport,
    Readiness,
    Stage,
    Step,
    Verdict,
    preflight,
    preflight_as_configured,
)
from ringbearer._sandbox import Sandbox
from ringbearer._views import format_preflight
from ringbearer.control._protocol import converter
from ringbearer.integrations import Connect, InThread, ReadOnly, provider_kinds
from ringbearer.simulator import Faults, SimulatorAddress, SimulatorState, serve_simulator

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
TIMEOUT = 5.0
# Probes that make a read-only request; the others only connect.
READ_ONLY = {"resend", "mailgun", "slack_chat", "twilio_sms", "twilio_call", "instagram", "x"}


@attrs.frozen
class Sim:
    state: SimulatorState
    address: SimulatorAddress

    @property
    def smtp(self) -> tuple[str, int]:
        assert self.address.smtp_port is not None
        return HOST, self.address.smtp_port

    def accepted(self) -> dict[str, int]:
        """Accepted work per provider, SMTP included: preflight must leave all at zero."""
        return {name: slot.stats.accepted for name, slot in self.state.slots().items()}

    def requests(self, provider: str) -> int:
        return self.state.slots()[provider].stats.requests

    @property
    def sandbox(self) -> Sandbox:
        """The simulator as a running daemon's sandbox."""
        return Sandbox(self.address.url, self.smtp)


@pytest.fixture
async def sim(nursery: trio.Nursery) -> AsyncIterator[Sim]:
    state = SimulatorState(seed=7)
    address = await nursery.start(serve_simulator, state, HOST, 0, 0)
    yield Sim(state, address)


@pytest.fixture
def shipped() -> Config:
    return _config.load(ROOT / "config.toml")


def pointed_at(config: Config, sim: Sim) -> Config:
    """The config with the sandbox off and every provider's base URL at the simulator."""
    integrations = {}
    for name, settings in config.integrations.items():
        provider = settings.provider
        prefix = f"{sim.address.url}/{settings.kind.replace('_', '-')}"
        if settings.kind == "smtp":
            host, port = sim.smtp
            provider = attrs.evolve(provider, host=host, port=port, security="none")
        elif settings.kind == "slack_chat":
            provider = attrs.evolve(provider, base_url=f"{prefix}/api")
        elif hasattr(provider, "base_url"):
            provider = attrs.evolve(provider, base_url=prefix)
        integrations[name] = attrs.evolve(settings, provider=provider)
    sandbox = attrs.evolve(config.sandbox, enabled=False)
    return attrs.evolve(config, sandbox=sandbox, integrations=integrations)


def good_environ(config: Config, sim: Sim) -> dict[str, str]:
    """A value for every secret the config names, each one the simulator accepts."""
    environ = {
        ref.env: "sandbox"
        for settings in config.integrations.values()
        for _, ref in secret_refs(settings.provider)
        if ref.env is not None
    }
    environ["SLACK_BOT_TOKEN"] = "xoxb-test"
    environ["SLACK_WEBHOOK_URL"] = f"{sim.address.url}/slack-webhook/services/T000/B000/XXXX"
    hook = f"{sim.address.url}/honeybook/hooks/catch/1000000/sandbox/"
    environ["HONEYBOOK_ZAPIER_HOOK_URL"] = hook
    return environ


def closed_port() -> int:
    """A local port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def step(report: PreflightReport, name: str, stage: Stage) -> Step:
    (integration,) = [i for i in report.integrations if i.name == name]
    (found,) = [s for s in integration.steps if s.stage is stage]
    return found


def verdicts(report: PreflightReport, stage: Stage) -> dict[str, Verdict]:
    return {i.name: s.verdict for i in report.integrations for s in i.steps if s.stage is stage}


def test_every_provider_kind_has_a_probe() -> None:
    """Every row of the provider table carries its probe: a read-only one where promised."""
    rows = provider_kinds()
    assert all(row.probe is not None for row in rows.values())
    assert {kind for kind, row in rows.items() if isinstance(row.probe, ReadOnly)} == READ_ONLY
    assert isinstance(rows["smtp"].probe, InThread)
    others = set(rows) - READ_ONLY - {"smtp"}
    assert all(isinstance(rows[kind].probe, Connect) for kind in others)


async def test_shipped_config_in_the_sandbox_is_ready_with_warnings(
    sim: Sim, shipped: Config
) -> None:
    """Every integration passes; the missing secrets are the sandbox's placeholders: warnings."""
    report = await preflight(shipped, sandbox=sim.sandbox, environ={}, timeout=TIMEOUT)
    enabled = [name for name, s in shipped.integrations.items() if s.enabled]
    assert [i.name for i in report.integrations] == enabled
    assert set(verdicts(report, Stage.CONFIG).values()) == {Verdict.PASS}
    assert set(verdicts(report, Stage.CREDENTIALS).values()) == {Verdict.WARN}
    assert set(verdicts(report, Stage.REACHABILITY).values()) == {Verdict.PASS}
    assert "placeholder" in step(report, "resend", Stage.CREDENTIALS).reason
    assert "env RESEND_API_KEY" in step(report, "resend", Stage.CREDENTIALS).reason
    assert (report.readiness, report.exit_code) == (Readiness.READY_WITH_WARNINGS, 0)
    assert set(sim.accepted().values()) == {0}


async def test_every_read_only_probe_reaches_its_simulated_route(sim: Sim, shipped: Config) -> None:
    """The read-only kinds each made one request, answered 200, and none counts as work."""
    report = await preflight(shipped, sandbox=sim.sandbox, environ={}, timeout=TIMEOUT)
    for integration in report.integrations:
        reason = step(report, integration.name, Stage.REACHABILITY).reason
        if integration.kind in READ_ONLY:
            provider = integration.kind.replace("_", "-")
            stats = sim.state.slots()[provider].stats.snapshot()
            assert stats.status_counts == {"200": len(_same_kind(report, integration))}
            assert reason.startswith(("GET /", "POST /")), reason
        elif integration.kind != "smtp":
            assert "offers no read-only check" in reason
    assert "authenticated as @ringbearer" in step(report, "x", Stage.REACHABILITY).reason
    assert "0 of 50 posts" in step(report, "instagram", Stage.REACHABILITY).reason


def _same_kind(report: PreflightReport, of: IntegrationReport) -> list[IntegrationReport]:
    return [i for i in report.integrations if i.kind == of.kind]


async def test_every_secret_set_is_ready(sim: Sim, shipped: Config) -> None:
    """Outside the sandbox, with every secret found and accepted, everything passes."""
    config = pointed_at(shipped, sim)
    report = await preflight(
        config, sandbox=None, environ=good_environ(config, sim), timeout=TIMEOUT
    )
    assert {i.name: i.verdict for i in report.integrations} == {
        name: Verdict.PASS for name, s in config.integrations.items() if s.enabled
    }
    assert (report.readiness, report.exit_code, report.sandbox) == (Readiness.READY, 0, None)
    assert set(sim.accepted().values()) == {0}


async def test_a_refused_key_makes_it_not_ready_and_is_never_shown(
    sim: Sim, shipped: Config
) -> None:
    """Resend refuses the key: it fails, the day is not ready, and the key is never shown."""
    config = pointed_at(shipped, sim)
    environ = {**good_environ(config, sim), "RESEND_API_KEY": "invalid"}
    report = await preflight(config, sandbox=None, environ=environ, timeout=TIMEOUT)
    refused = step(report, "resend", Stage.REACHABILITY)
    assert refused.verdict is Verdict.FAIL
    assert refused.reason.startswith("GET /resend/domains: credentials refused (HTTP 403")
    others = {i.name: i.verdict for i in report.integrations if i.name != "resend"}
    assert set(others.values()) == {Verdict.PASS}
    assert (report.readiness, report.exit_code) == (Readiness.NOT_READY, 1)
    text = format_preflight(report.reply())
    assert "resend" in text and "credentials refused" in text
    assert "invalid" not in text
    assert "invalid" not in json.dumps(wire(report.reply()))


@pytest.mark.parametrize(
    ("integration", "variable", "value", "expected"),
    [
        ("mailgun", "MAILGUN_API_KEY", "invalid", "credentials refused (HTTP 401: Forbidden)"),
        ("slack_chat", "SLACK_BOT_TOKEN", "wrong-token", "credentials refused: invalid_auth"),
        ("sms", "TWILIO_AUTH_TOKEN", "invalid", "credentials refused (HTTP 401: 20003"),
        ("instagram", "INSTAGRAM_ACCESS_TOKEN", "invalid", "credentials refused (#190)"),
        ("x", "X_CONSUMER_SECRET", "wrong", "credentials refused (HTTP 401: Unauthorized"),
        ("smtp", "SMTP_PASSWORD", "invalid", "credentials refused (SMTP 535"),
    ],
)
async def test_each_read_only_probe_reports_refused_credentials(
    sim: Sim, shipped: Config, integration: str, variable: str, value: str, expected: str
) -> None:
    """Each provider's own refusal of a credential fails its integration, in its own words."""
    config = pointed_at(shipped, sim)
    environ = {**good_environ(config, sim), variable: value}
    report = await preflight(config, sandbox=None, environ=environ, timeout=TIMEOUT)
    found = step(report, integration, Stage.REACHABILITY)
    assert found.verdict is Verdict.FAIL
    assert expected in found.reason
    assert report.exit_code == 1
    assert set(sim.accepted().values()) == {0}


async def test_missing_secret_outside_the_sandbox_fails_without_a_request(
    sim: Sim, shipped: Config
) -> None:
    """Outside the sandbox an unset secret fails, and its integration's probe is not run."""
    config = pointed_at(shipped, sim)
    environ = good_environ(config, sim)
    del environ["RESEND_API_KEY"]
    report = await preflight(config, sandbox=None, environ=environ, timeout=TIMEOUT)
    credentials = step(report, "resend", Stage.CREDENTIALS)
    assert (credentials.verdict, credentials.reason) == (
        Verdict.FAIL,
        "not found: env RESEND_API_KEY",
    )
    assert step(report, "resend", Stage.REACHABILITY).verdict is Verdict.SKIP
    assert sim.requests("resend") == 0
    assert report.readiness is Readiness.NOT_READY


async def test_mailgun_domain_not_found(sim: Sim, shipped: Config) -> None:
    """A domain Mailgun does not know fails with its name."""
    config = pointed_at(shipped, sim)
    mailgun = config.integrations["mailgun"]
    domain = attrs.evolve(mailgun.provider, domain="mg.example.invalid")
    config = attrs.evolve(
        config,
        integrations={**config.integrations, "mailgun": attrs.evolve(mailgun, provider=domain)},
    )
    report = await preflight(
        config, sandbox=None, environ=good_environ(config, sim), timeout=TIMEOUT
    )
    found = step(report, "mailgun", Stage.REACHABILITY)
    assert found.verdict is Verdict.FAIL
    assert "domain mg.example.invalid not found (HTTP 404: Domain not found)" in found.reason


async def test_a_sending_only_resend_key_passes(sim: Sim, shipped: Config) -> None:
    """Resend refuses a sending-only key the domain list: the key is good, and it passes."""
    config = pointed_at(shipped, sim)
    environ = {**good_environ(config, sim), "RESEND_API_KEY": "send-only"}
    report = await preflight(config, sandbox=None, environ=environ, timeout=TIMEOUT)
    found = step(report, "resend", Stage.REACHABILITY)
    assert (found.verdict, "sending-only key" in found.reason) == (Verdict.PASS, True)


TWILIO_ACCOUNT = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef.json"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/resend/domains", 404),
        ("/mailgun/v3/domains/mg.example.com", 404),
        (f"/twilio-sms{TWILIO_ACCOUNT}", 404),
        ("/x/2/users/me", 404),
    ],
)
async def test_the_read_routes_answer_only_reads(sim: Sim, path: str, status: int) -> None:
    """The simulators' new read-only routes leave other methods on those paths as they were."""
    async with httpx.AsyncClient(base_url=sim.address.url, timeout=TIMEOUT) as client:
        response = await client.post(path, headers={"Authorization": "Bearer sandbox"})
    assert response.status_code == status


async def test_resend_domains_wants_a_key(sim: Sim) -> None:
    """GET /domains without a key is Resend's 401 missing_api_key, as its sends are."""
    async with httpx.AsyncClient(base_url=sim.address.url, timeout=TIMEOUT) as client:
        response = await client.get("/resend/domains")
    assert (response.status_code, response.json()["name"]) == (401, "missing_api_key")


CLOSED = """
[sandbox]
enabled = false
[integrations.resend]
kind = "resend"
api_key = {{ env = "RESEND_API_KEY" }}
base_url = "http://{host}:{port}"
[integrations.pagerduty]
kind = "pagerduty"
routing_key = {{ env = "PAGERDUTY_ROUTING_KEY" }}
base_url = "http://{host}:{port}"
[integrations.smtp]
kind = "smtp"
host = "{host}"
port = {port}
security = "none"
"""


async def test_an_unreachable_host_fails(tmp_path: Path) -> None:
    """A closed port fails every kind of probe as unreachable, at once."""
    text = CLOSED.format(host=HOST, port=closed_port())
    config = _config.parse(text, tmp_path / "config.toml")
    environ = {"RESEND_API_KEY": "re_test", "PAGERDUTY_ROUTING_KEY": "k"}
    report = await preflight(config, sandbox=None, environ=environ, timeout=TIMEOUT)
    for name in ("resend", "pagerduty", "smtp"):
        found = step(report, name, Stage.REACHABILITY)
        assert (found.verdict, "unreachable" in found.reason) == (Verdict.FAIL, True), found
    assert report.exit_code == 1


async def _not_tls(stream: trio.SocketStream) -> None:
    await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await stream.aclose()


async def test_a_failed_tls_handshake_fails(
    nursery: trio.Nursery, sim: Sim, shipped: Config
) -> None:
    """An https base URL whose server answers in plain HTTP fails the connection check."""
    listeners = await nursery.start(functools.partial(trio.serve_tcp, _not_tls, 0, host=HOST))
    port = listeners[0].socket.getsockname()[1]
    config = pointed_at(shipped, sim)
    pagerduty = config.integrations["pagerduty"]
    https = attrs.evolve(pagerduty.provider, base_url=f"https://{HOST}:{port}")
    integrations = {**config.integrations, "pagerduty": attrs.evolve(pagerduty, provider=https)}
    config = attrs.evolve(config, integrations=integrations)
    report = await preflight(
        config, sandbox=None, environ=good_environ(config, sim), timeout=TIMEOUT
    )
    found = step(report, "pagerduty", Stage.REACHABILITY)
    assert found.verdict is Verdict.FAIL
    assert found.reason.startswith(f"TLS failed with {HOST}:{port}: "), found.reason


async def test_a_provider_that_never_answers_fails_within_the_timeout(
    sim: Sim, shipped: Config
) -> None:
    """A hanging provider is given up on after the timeout, and fails."""
    sim.state.endpoints["resend"].slot.faults = Faults(hang_rate=1.0)
    report = await preflight(shipped, sandbox=sim.sandbox, environ={}, timeout=0.2)
    found = step(report, "resend", Stage.REACHABILITY)
    assert found.verdict is Verdict.FAIL
    assert "no answer" in found.reason


async def test_smtp_probe_sends_no_message(sim: Sim, shipped: Config) -> None:
    """The SMTP probe logs in and quits before MAIL FROM: the server counts no message."""
    config = pointed_at(shipped, sim)
    report = await preflight(
        config, sandbox=None, environ=good_environ(config, sim), timeout=TIMEOUT
    )
    found = step(report, "smtp", Stage.REACHABILITY)
    assert found.verdict is Verdict.PASS
    assert found.reason.endswith("EHLO, AUTH accepted; QUIT before MAIL FROM")
    stats = sim.state.smtp.stats.snapshot()
    assert (stats.requests, stats.accepted) == (0, 0)


async def test_preflight_as_configured_starts_its_own_sandbox(shipped: Config) -> None:
    """With [sandbox] enabled and no url, the simulator is started for the checks and stopped."""
    report = await preflight_as_configured(shipped, environ={}, timeout=TIMEOUT)
    assert report.sandbox is not None and report.sandbox.startswith("http://127.0.0.1:")
    assert report.readiness is Readiness.READY_WITH_WARNINGS
    assert report.checked == f"a simulator started for this check at {report.sandbox}" + (
        ", from the config alone"
    )


async def test_the_report_says_what_was_checked(sim: Sim, shipped: Config) -> None:
    """A running daemon's sandbox, its providers, or the config alone and why."""
    report = await preflight(shipped, sandbox=sim.sandbox, environ={}, timeout=TIMEOUT)
    assert report.checked == f"the running daemon's sandbox at {sim.address.url}"
    assert format_preflight(report.reply()).splitlines()[0] == f"preflight against {report.checked}"
    config = pointed_at(shipped, sim)
    environ = good_environ(config, sim)
    report = await preflight(config, sandbox=None, environ=environ, timeout=TIMEOUT)
    assert (report.checked, report.sandbox) == ("the providers of the running daemon", None)
    why = "no daemon answered at /run/ringbearer/ringbearer.sock"
    report = await preflight_as_configured(config, environ=environ, timeout=TIMEOUT, reason=why)
    assert report.checked == f"the providers, from the config alone ({why})"
    assert wire(report.reply())["checked"] == report.checked
    external = attrs.evolve(
        shipped.sandbox, url=sim.address.url, smtp=_converter.HostPort(f"{HOST}:{sim.smtp[1]}")
    )
    config = attrs.evolve(shipped, sandbox=external)
    report = await preflight_as_configured(config, environ={}, timeout=TIMEOUT)
    assert report.checked == f"the sandbox at {sim.address.url}, from the config alone"
    assert report.readiness is Readiness.READY_WITH_WARNINGS


async def test_the_report_crosses_the_wire_through_the_converter(sim: Sim, shipped: Config) -> None:
    """Unstructured to JSON by the project's converter and structured back, it is the same."""
    config = pointed_at(shipped, sim)
    environ = {**good_environ(config, sim), "RESEND_API_KEY": "invalid"}
    del environ["MAILGUN_API_KEY"]
    report = await preflight(config, sandbox=None, environ=environ, timeout=TIMEOUT)
    converter = _converter.make()
    wire = json.loads(json.dumps(converter.unstructure(report)))
    assert wire["integrations"][0]["steps"][0]["verdict"] in {"pass", "warn", "fail", "skip"}
    assert set(wire) == {"integrations", "sandbox", "checked"}
    back = converter.structure(wire, PreflightReport)
    assert back == report
    assert (back.readiness, back.exit_code) == (Readiness.NOT_READY, 1)
    assert _config.make_converter().structure(wire, PreflightReport) == report


def _report(*steps: tuple[str, Verdict]) -> PreflightReport:
    integrations = tuple(
        IntegrationReport(name, "resend", "email", (Step(Stage.CONFIG, verdict, "why"),))
        for name, verdict in steps
    )
    return PreflightReport(integrations)


@pytest.mark.parametrize(
    ("verdicts_", "readiness", "code"),
    [
        ([Verdict.PASS, Verdict.PASS], Readiness.READY, 0),
        ([Verdict.PASS, Verdict.WARN], Readiness.READY_WITH_WARNINGS, 0),
        ([Verdict.WARN, Verdict.FAIL], Readiness.NOT_READY, 1),
    ],
)
def test_readiness_and_exit_code(verdicts_: list[Verdict], readiness: Readiness, code: int) -> None:
    """Any fail is not ready (exit 1); any warning, ready with warnings (exit 0)."""
    report = _report(*((f"i{n}", v) for n, v in enumerate(verdicts_)))
    assert (report.readiness, report.exit_code) == (readiness, code)


def test_a_skipped_step_counts_for_nothing() -> None:
    """An integration's verdict is its worst step's, skipped steps aside."""
    steps = (Step(Stage.CONFIG, Verdict.PASS, ""), Step(Stage.REACHABILITY, Verdict.SKIP, ""))
    assert IntegrationReport("a", "resend", "email", steps).verdict is Verdict.PASS


def test_format_report_is_a_table_with_a_verdict() -> None:
    """One row per step, the name on the first; the last line is the verdict."""
    steps = (
        Step(Stage.CONFIG, Verdict.PASS, "kind resend, family email"),
        Step(Stage.CREDENTIALS, Verdict.FAIL, "not found: env RESEND_API_KEY"),
        Step(Stage.REACHABILITY, Verdict.SKIP, "not checked: an earlier step failed"),
    )
    report = PreflightReport((IntegrationReport("resend", "resend", "email", steps),))
    lines = format_preflight(report.reply()).splitlines()
    assert lines[0] == "preflight against the providers"
    assert lines[2].split() == ["INTEGRATION", "KIND", "STEP", "RESULT", "REASON"]
    assert lines[3].split()[:4] == ["resend", "resend", "config", "pass"]
    assert lines[4].split()[:3] == ["credentials", "fail", "not"]
    # "1 integration": plurals are right now.
    assert lines[-1] == "not ready: 1 integration (0 pass, 0 warn, 1 fail)"
    as_json: dict[str, Any] = wire(report.reply())
    assert as_json["verdict"] == "not ready" and as_json["exit_code"] == 1
    assert as_json["integrations"][0]["steps"][1] == {
        "step": "credentials",
        "verdict": "fail",
        "reason": "not found: env RESEND_API_KEY",
    }


def wire(value: Any) -> Any:
    """A reply as it crosses the wire."""
    return converter().unstructure(value)
