"""``[deliverability]`` and ``[webhooks]``: the rules, thresholds and the public listener.

Every default is the one the issue and the sources it names recommend:
listmonk's bounce rules, Gmail's bulk-sender thresholds (spam rate under
0.10%, never 0.30%), and RFC 8058 one-click unsubscribe for marketing mail.
"""

from __future__ import annotations

from typing import Literal

import attrs

from .._converter import Fraction, HostPort, NonNegativeFloat, PositiveFloat, PositiveInt
from .._secrets import SecretRef
from ._model import DEFAULT_CATEGORIES, INVITES, MARKETING, TRANSACTIONAL


@attrs.frozen
class SuppressionRules:
    """Which provider events suppress an address, and for what."""

    # A hard bounce suppresses every category; critical mail may still try once this often.
    hard_bounce: bool = True
    critical_retry_hours: PositiveFloat = PositiveFloat(24.0)
    # A complaint suppresses every category but these.
    complaint: bool = True
    complaint_spares: tuple[str, ...] = (TRANSACTIONAL,)
    # An unsubscribe suppresses the category it names (or the message's).
    unsubscribe: bool = True
    # This many soft bounces within the window hold the address for hold_days.
    soft_bounce: bool = True
    soft_bounce_count: PositiveInt = PositiveInt(2)
    soft_bounce_window_days: PositiveFloat = PositiveFloat(30.0)
    soft_bounce_hold_days: PositiveFloat = PositiveFloat(3.0)


@attrs.frozen
class ReputationSettings:
    """The reputation guard, per sending domain, over a rolling window of delivered mail."""

    enabled: bool = True
    window_hours: PositiveFloat = PositiveFloat(24.0)
    complaint_warn: Fraction = Fraction(0.001)
    complaint_pause: Fraction = Fraction(0.003)
    bounce_pause: Fraction = Fraction(0.04)
    # Rates over fewer delivered emails than this are not judged (one complaint
    # in ten emails is noise, not a reputation).
    min_delivered: PositiveInt = PositiveInt(100)
    # A pause ends by itself once the complaint rate has stayed under
    # complaint_warn (and bounces under bounce_pause) this long; 0: only by hand.
    resume_after_minutes: NonNegativeFloat = NonNegativeFloat(60.0)
    # What a pause holds: these categories, and bulk priority of any category.
    paused_categories: tuple[str, ...] = (MARKETING,)


@attrs.frozen
class FrequencyCap:
    """At most ``limit`` emails of ``category`` to one recipient within ``per_days``."""

    category: str = MARKETING
    limit: PositiveInt = PositiveInt(3)
    per_days: PositiveFloat = PositiveFloat(7.0)
    over: Literal["wait", "drop"] = "wait"


@attrs.frozen
class UnsubscribeSettings:
    """RFC 8058 one-click unsubscribe headers, on email of these categories."""

    categories: tuple[str, ...] = (MARKETING, INVITES)
    mailto: str = ""  # an address for the mailto: alternative; "" leaves it out
    # Signs the tokens in unsubscribe URLs; in the sandbox a missing one is a fixed stand-in.
    secret: SecretRef | None = None


@attrs.frozen
class DeliverabilitySettings:
    """``[deliverability]``."""

    categories: tuple[str, ...] = DEFAULT_CATEGORIES  # config may add more
    default_category: str = TRANSACTIONAL
    suppression: SuppressionRules = SuppressionRules()
    reputation: ReputationSettings = ReputationSettings()
    caps: tuple[FrequencyCap, ...] = (FrequencyCap(),)
    unsubscribe: UnsubscribeSettings = UnsubscribeSettings()


@attrs.frozen
class WebhookSettings:
    """``[webhooks]``: the public listener for provider events and unsubscribes.

    It faces the internet behind the operator's TLS proxy: ``public_url`` is
    the address providers and mailbox providers reach it by (what Twilio signs,
    what unsubscribe links point to); "" means http://<listen>.
    """

    enabled: bool = False
    listen: HostPort = HostPort("127.0.0.1:8787")
    public_url: str = ""
    max_body_bytes: PositiveInt = PositiveInt(256 * 1024)
    max_connections: PositiveInt = PositiveInt(256)
    # Per client address: a token bucket of this rate and burst; past it, 429.
    per_client_per_second: PositiveFloat = PositiveFloat(500.0)
    per_client_burst: PositiveInt = PositiveInt(1000)
    # Svix (Resend) deliveries signed further from now than this are refused.
    tolerance_seconds: PositiveFloat = PositiveFloat(300.0)
    idle_seconds: PositiveFloat = PositiveFloat(30.0)
    # The operator's proxies (addresses or networks): a connection from one of
    # them is rate-limited by the client its X-Forwarded-For names, not by the proxy.
    trusted_proxies: tuple[str, ...] = ()
