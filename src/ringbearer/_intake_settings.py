"""``[intake]``: producers on other hosts submit over the public listener, each with a token.

Several daemons may share one PostgreSQL, so a producer may submit to any
node over the network instead of its control socket. Each producer is named
and holds a bearer token (a secret reference, never an inline value) and a
role, the control socket's: ``send`` may submit; ``operate`` may too;
``read`` may not (a token kept for reads only is answered 403 at submit)::

    [intake]
    enabled = true
    [intake.producers.platform]
    token = { credential = "ringbearer-intake-platform" }
    role = "send"
"""

from __future__ import annotations

import re
from typing import Any, Literal

import attrs

from ._secrets import SecretRef

RoleName = Literal["read", "send", "operate"]
ROLES: tuple[str, ...] = ("read", "send", "operate")
# As integrations and groups are named: a producer's name shows in logs and replies.
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def _role(_: object, __: attrs.Attribute[Any], value: str) -> None:
    if value not in ROLES:
        raise ValueError(f"role: expected {', '.join(ROLES[:-1])} or {ROLES[-1]}, not {value!r}")


@attrs.frozen
class Producer:
    """A producer allowed to submit: where its token is read from, and its role."""

    token: SecretRef
    role: RoleName = attrs.field(default="send", validator=_role)


@attrs.frozen
class IntakeSettings:
    """``[intake]``: ``POST /v1/messages`` on the public listener, for these producers."""

    enabled: bool = False
    producers: dict[str, Producer] = attrs.Factory(dict)

    def __attrs_post_init__(self) -> None:
        for name in self.producers:
            if not _NAME.fullmatch(name):
                raise ValueError(f"producers.{name}: names use a-z, 0-9, '-' and '_'")
        if self.enabled and not self.producers:
            raise ValueError("producers: at least one producer is needed when enabled")
