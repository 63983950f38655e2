"""The configuration: every problem at once, each with its file and key path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ringbearer import ConfigError
from ringbearer._config import load, parse, resolve_secret, unresolved_secrets
from ringbearer._secrets import Secret, SecretRef

ROOT = Path(__file__).resolve().parent.parent

BAD = """
[daemon]
grace_seconds = -1
colour = "blue"
[defaults.breaker]
failure_rate = 1.5
[integrations.resend]
kind = "resend"
api_key = "re_live_not_a_reference"
lanes = "many"
[integrations.foo]
kind = "nope"
[integrations.mailgun]
kind = "mailgun"
api_key = { env = "MAILGUN_API_KEY" }
[groups]
email = ["resend", "ghost"]
[surprise]
x = 1
"""


def problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text, tmp_path / "config.toml")
    assert caught.value.file == str(tmp_path / "config.toml")
    return [str(p) for p in caught.value.problems]


def test_shipped_config_is_valid() -> None:
    """The config.toml in the repository loads, with its email group in failover order."""
    config = load(ROOT / "config.toml")
    assert config.groups["email"] == ("resend", "mailgun", "smtp")
    assert config.sandbox.enabled


def test_every_problem_is_reported_at_once_with_its_key_path(tmp_path: Path) -> None:
    """Unknown keys, wrong types, bad values and bad references are all listed together."""
    found = problems(BAD, tmp_path)
    expected = [
        "defaults.breaker: 'failure_rate' must be <= 1.0",
        "integrations.resend.lanes: expected an integer",
        "integrations.resend.api_key: secrets are references, never inline values",
        "integrations.foo.kind: expected one of:",
        "integrations.mailgun.domain: required field missing",
        "daemon.grace_seconds: must be greater than 0",
        "daemon: extra fields found (colour)",
        "groups.email: no integration named 'ghost'",
        "surprise: unknown section or key",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in found), (text, found)
    assert len(found) == len(expected)


def test_an_inline_secret_is_not_echoed_in_the_error(tmp_path: Path) -> None:
    """The error for an inline secret does not repeat the secret."""
    found = problems(BAD, tmp_path)
    assert not any("re_live_not_a_reference" in p for p in found)


def test_integrations_inherit_and_override_defaults(tmp_path: Path) -> None:
    """[defaults] applies to every integration; a section's own keys win, key by key."""
    config = parse(
        """
[defaults]
lanes = 4
[defaults.breaker]
open_seconds = 12
minimum_calls = 7
[integrations.a]
kind = "pagerduty"
routing_key = { env = "PD" }
[integrations.b]
kind = "pagerduty"
routing_key = { env = "PD" }
lanes = 9
[integrations.b.breaker]
open_seconds = 3
""",
        tmp_path / "c.toml",
    )
    a, b = config.integrations["a"], config.integrations["b"]
    assert (a.lanes, a.breaker.open_seconds, a.breaker.minimum_calls) == (4, 12, 7)
    assert (b.lanes, b.breaker.open_seconds, b.breaker.minimum_calls) == (9, 3, 7)


def test_group_members_must_share_a_family(tmp_path: Path) -> None:
    """A group mixing email and alert providers is refused."""
    found = problems(
        """
[integrations.r]
kind = "resend"
api_key = { env = "R" }
[integrations.p]
kind = "pagerduty"
routing_key = { env = "P" }
[groups]
mixed = ["r", "p"]
""",
        tmp_path,
    )
    assert found == ["groups.mixed: members must share one family, found alerts, email"]


def test_secrets_resolve_from_env_and_credentials(tmp_path: Path) -> None:
    """A reference reads the environment or $CREDENTIALS_DIRECTORY; a missing one is reported."""
    (tmp_path / "resend").write_text("re_from_credential\n")
    env = {"PD_KEY": "pd_from_env", "CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert SecretRef(env="PD_KEY").resolve(env) == Secret("pd_from_env")
    assert SecretRef(credential="resend").resolve(env) == Secret("re_from_credential")
    assert SecretRef(env="MISSING").resolve(env) is None
    assert resolve_secret(SecretRef(env="MISSING"), sandbox=True, environ=env) == Secret("sandbox")
    with pytest.raises(ConfigError):
        resolve_secret(SecretRef(env="MISSING"), sandbox=False, environ=env)
    config = load(ROOT / "config.toml")
    missing = unresolved_secrets(config, {})
    assert "integrations.resend.api_key" in [p.path for p in missing]
    assert repr(Secret("hunter2")) == "Secret('***')" and "hunter2" not in f"{Secret('hunter2')}"


def test_config_check_prints_every_problem_and_exits_2(tmp_path: Path) -> None:
    """`ringbearer config check` lists each problem and exits 2; a good file exits 0."""
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    run = subprocess.run(
        [sys.executable, "-m", "ringbearer", "config", "check", "-c", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr.count(str(bad)) >= 9
    good = subprocess.run(
        [sys.executable, "-m", "ringbearer", "config", "check", "-c", str(ROOT / "config.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert good.returncode == 0, good.stderr


EMAIL_ALERTS = """
[integrations.resend]
kind = "resend"
api_key = { env = "R" }
[integrations.mailgun]
kind = "mailgun"
api_key = { env = "M" }
domain = "mg.example.com"
[integrations.pd]
kind = "pagerduty"
routing_key = { env = "P" }
[groups]
email = ["resend", "mailgun"]
"""


@pytest.mark.parametrize(
    ("alerting", "needs"),
    [
        ('chain = ["email", "pd"]', "alerting.chain[0] = 'email' (mailgun, resend)"),
        (
            'chain = ["pd"]\nwedding_day_chain = ["pd", "resend"]',
            "alerting.wedding_day_chain[1] = 'resend' (resend)",
        ),
    ],
)
def test_an_email_channel_in_a_chain_needs_the_alert_addresses(
    tmp_path: Path, alerting: str, needs: str
) -> None:
    """A chain reaching an email target (integration or group) needs email_to and email_from."""
    found = problems(f"{EMAIL_ALERTS}[alerting]\n{alerting}\n", tmp_path)
    why = f"required: alerts go by email through {needs}"
    assert found == [f"alerting.email_to: {why}", f"alerting.email_from: {why}"]
    with_from = f'{EMAIL_ALERTS}[alerting]\n{alerting}\nemail_from = "rb@example.com"\n'
    assert problems(with_from, tmp_path) == [f"alerting.email_to: {why}"]


def test_every_chain_entry_needing_email_is_named(tmp_path: Path) -> None:
    """Both chains' email entries are named in the one problem for each missing key."""
    alerting = """
[alerting]
chain = ["email"]
wedding_day_chain = ["pd", "resend"]
email_from = "rb@example.com"
"""
    (found,) = problems(EMAIL_ALERTS + alerting, tmp_path)
    assert found == (
        "alerting.email_to: required: alerts go by email through "
        "alerting.chain[0] = 'email' (mailgun, resend), "
        "alerting.wedding_day_chain[1] = 'resend' (resend)"
    )


@pytest.mark.parametrize(
    ("alerting", "chain"),
    [
        ('chain = ["pd"]\nwedding_day_chain = ["pd"]', ("pd",)),  # no email: no address
        ('chain = ["email"]\nemail_to = "oncall@example.com"\nemail_from = "rb@x.com"', ("email",)),
    ],
)
def test_a_chain_without_email_or_with_addresses_needs_nothing(
    tmp_path: Path, alerting: str, chain: tuple[str, ...]
) -> None:
    """A chain without email targets needs no addresses; with them set, email is fine."""
    config = parse(f"{EMAIL_ALERTS}[alerting]\n{alerting}\n", tmp_path / "config.toml")
    assert config.alerting.chain == chain


def test_config_check_refuses_an_email_chain_without_email_to(tmp_path: Path) -> None:
    """`ringbearer config check` exits 2 naming alerting.email_to and the chain entry."""
    bad = tmp_path / "config.toml"
    bad.write_text(f'{EMAIL_ALERTS}[alerting]\nchain = ["email"]\nemail_from = "rb@example.com"\n')
    run = subprocess.run(
        [sys.executable, "-m", "ringbearer", "config", "check", "-c", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "alerting.email_to: required" in run.stderr
    assert "alerting.chain[0] = 'email'" in run.stderr


def test_a_targets_family_is_its_integrations_or_its_groups() -> None:
    """What submit and erasure ask of a target: the shipped config's kinds of work."""
    config = load(ROOT / "config.toml")
    families = {t: config.family_of(t) for t in ("email", "resend", "mixpanel", "sms", "x")}
    assert families == {
        "email": "email", "resend": "email", "mixpanel": "analytics", "sms": "alerts",
        "x": "social",
    }  # fmt: skip
    assert config.family_of("mixpanel_deletion") == "privacy"
    assert config.family_of("nowhere") == ""
    assert {t: config.family_of(t) for t in config.targets()} == {
        t: config.integrations[members[0]].family for t, members in config.targets().items()
    }
