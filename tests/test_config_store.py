"""``[store] url``: PostgreSQL named without its password, which comes from a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringbearer._config import StoreSettings, parse
from ringbearer._secrets import SecretRef

from .test_config import problems

RESEND = """
[integrations.r]
kind = "resend"
api_key = { env = "R" }
"""


def test_a_url_without_a_password_gets_it_from_its_secret() -> None:
    settings = StoreSettings(
        url="postgresql://ringbearer@db.internal:5433/outbox", password=SecretRef(env="PGPW")
    )
    url = settings.postgres_url({"PGPW": "p@ss:w/rd"})
    assert url == "postgresql://ringbearer:p%40ss%3Aw%2Frd@db.internal:5433/outbox"
    assert StoreSettings(url="postgresql://rb@db/outbox").postgres_url({}) == (
        "postgresql://rb@db/outbox"
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://rb@db/outbox", "expected postgresql://user@host:port/database"),
        ("postgresql:///outbox", "expected postgresql://user@host:port/database"),
        ("postgresql://rb:secret@db/outbox", "no password in it"),
    ],
)
def test_a_bad_url_is_refused_naming_what_is_wrong(tmp_path: Path, url: str, says: str) -> None:
    (found,) = problems(f'[store]\nurl = "{url}"\n' + RESEND, tmp_path)
    assert found.startswith("store: url:") and says in found
    assert "secret" not in found  # the value is not echoed


def test_the_defaults_keep_the_embedded_store(tmp_path: Path) -> None:
    config = parse(RESEND, tmp_path / "config.toml")
    assert config.store.url == "" and config.db_path == tmp_path / "state" / "ringbearer.db"
    settings = StoreSettings()
    assert (settings.url, settings.heartbeat_seconds, settings.lease_seconds) == ("", 5.0, 15.0)


def test_a_shared_store_needs_a_shared_key_store(tmp_path: Path) -> None:
    """Without one, a node could not open what another sealed (it would read as erased)."""
    text = '[store]\nurl = "postgresql://rb@db/outbox"\n' + RESEND
    (found,) = problems(text, tmp_path)
    assert found.startswith("privacy.keys_url: required with [store] url")
    keys = '[privacy]\nkeys_url = "postgresql://rb@keys/ringbearer_keys"\n'
    config = parse(text + keys, tmp_path / "config.toml")
    assert config.privacy.keys_url.endswith("/ringbearer_keys")
