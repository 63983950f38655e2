"""Secrets: references in the config, redacted values in memory.

A secret is never written in the config file. The file names where to read
it: ``{ env = "NAME" }`` (an environment variable) or ``{ credential = "NAME" }``
(a systemd credential, read from ``$CREDENTIALS_DIRECTORY/NAME``). Once read,
the value lives in a :class:`Secret`, whose ``repr`` and ``str`` never show it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import attrs

REDACTED = "***"


@attrs.frozen(repr=False)
class Secret:
    """A secret value that cannot leak through ``repr``, ``str`` or f-strings."""

    _value: str = attrs.field(alias="value")

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)


@attrs.frozen
class SecretRef:
    """Where a secret is read from: exactly one of ``env`` or ``credential``."""

    env: str | None = None
    credential: str | None = None

    def __attrs_post_init__(self) -> None:
        if (self.env is None) == (self.credential is None):
            raise ValueError("a secret reference names exactly one of 'env' or 'credential'")
        name = self.env if self.env is not None else self.credential
        if not name:
            raise ValueError("a secret reference needs a non-empty name")

    def describe(self) -> str:
        return f"env {self.env}" if self.env is not None else f"credential {self.credential}"

    def resolve(self, environ: Mapping[str, str] | None = None) -> Secret | None:
        """Read the secret, or return None when its source does not have it."""
        environ = os.environ if environ is None else environ
        if self.env is not None:
            value = environ.get(self.env)
            return Secret(value) if value else None
        folder = environ.get("CREDENTIALS_DIRECTORY")
        if not folder or self.credential is None:
            return None
        try:
            text = (Path(folder) / self.credential).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):  # unreadable, or not text: not a usable secret
            return None
        text = text.strip()
        return Secret(text) if text else None


def with_password(
    url: str, password: SecretRef | None, environ: Mapping[str, str] | None = None
) -> str:
    """A database URL with the password its secret names put in (percent-encoded); the URL
    as given without a password, or when the secret is not found (the connection then
    says what it refused)."""
    import urllib.parse

    secret = password.resolve(environ) if password is not None else None
    if secret is None:
        return url
    parts = urllib.parse.urlsplit(url)
    quoted = urllib.parse.quote(secret.reveal(), safe="")
    user = urllib.parse.quote(parts.username or "", safe="")
    netloc = f"{user}:{quoted}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def check_database_url(url: str) -> None:
    """ValueError unless ``url`` is ``postgresql://user@host[:port]/database`` without a
    password (the password is a secret of its own)."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise ValueError("expected postgresql://user@host:port/database")
    if parts.password is not None:
        raise ValueError("no password in it; name where it is read from in the password key")
