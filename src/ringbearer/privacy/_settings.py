"""``[privacy]``: where the key-encryption key comes from, consent, retention."""

from __future__ import annotations

from typing import Literal

import attrs

from .._converter import PositiveFloat
from .._secrets import SecretRef, check_database_url

Purpose = Literal["marketing", "analytics"]
PURPOSES: tuple[str, ...] = ("marketing", "analytics")


@attrs.frozen
class PrivacySettings:
    """``[privacy]``.

    ``kek`` names the key-encryption key (64 hex characters or base64 of 32
    bytes), e.g. ``{ credential = "ringbearer-kek" }`` (systemd
    ``LoadCredentialEncrypted=``); without it the daemon keeps a generated key
    in ``<state_dir>/ringbearer.kek`` (mode 0600), as the sandbox does.
    ``retired_keks`` are earlier keys still wrapping some data keys: needed
    only until ``ringbearer keys rotate`` has rewrapped them.
    """

    kek: SecretRef | None = None
    retired_keks: tuple[SecretRef, ...] = ()
    # Several daemons on one PostgreSQL share their subjects' keys: a PostgreSQL
    # database of its own for them ("postgresql://user@host/ringbearer_keys", never the
    # messages' database, so that a copy of that one opens nothing), its password a
    # secret; and the same ``kek`` on every node. Default: <state_dir>/keys.db.
    keys_url: str = attrs.field(default="")
    keys_password: SecretRef | None = None

    @keys_url.validator
    def _check_keys_url(self, _: attrs.Attribute[str], value: str) -> None:
        if value:
            try:
                check_database_url(value)
            except ValueError as exc:
                raise ValueError(f"keys_url: {exc}") from None

    # Purposes a message needs its subjects' recorded consent for: a marketing
    # email (category "marketing"), an analytics event ("analytics").
    require_consent: tuple[Purpose, ...] = ()
    # Retention: payloads of delivered messages and of dead letters are
    # shredded this long after (the audit log keeps its rows: ids and hashes).
    keep_delivered_days: PositiveFloat = PositiveFloat(30.0)
    keep_dead_days: PositiveFloat = PositiveFloat(90.0)
    retention_every_minutes: PositiveFloat = PositiveFloat(60.0)
