"""``[privacy]``: where the key-encryption key comes from, consent, retention."""

from __future__ import annotations

from typing import Literal

import attrs

from .._converter import PositiveFloat
from .._secrets import SecretRef

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
    # Purposes a message needs its subjects' recorded consent for: a marketing
    # email (category "marketing"), an analytics event ("analytics").
    require_consent: tuple[Purpose, ...] = ()
    # Retention: payloads of delivered messages and of dead letters are
    # shredded this long after (the audit log keeps its rows: ids and hashes).
    keep_delivered_days: PositiveFloat = PositiveFloat(30.0)
    keep_dead_days: PositiveFloat = PositiveFloat(90.0)
    retention_every_minutes: PositiveFloat = PositiveFloat(60.0)
