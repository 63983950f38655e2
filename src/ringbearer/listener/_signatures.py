"""Each provider's webhook signature, checked exactly as the provider documents it.

Pure functions: the secret, what arrived, and (for Svix) the wall clock in;
a :data:`Verification` out, which on a refusal says why, so the audit log can
tell a forgery from a stale or garbled delivery. Every comparison of a
signature is constant-time (``hmac.compare_digest``).

* Svix / Standard Webhooks (Resend): HMAC-SHA256 over ``id.timestamp.body``
  with the base64 key after ``whsec_``; the header holds space-separated
  ``v1,<base64>`` entries, any one of which may match (a secret being
  rotated); a timestamp further than the tolerance from now is refused,
  which is what keeps a captured delivery from being replayed later.
* Mailgun: the body's ``signature`` object; hex HMAC-SHA256 of ``timestamp``
  followed by ``token``, under the webhook signing key. Mailgun's signature
  does not cover the rest of the body, and its retries may carry the first
  attempt's timestamp, so freshness is judged by the token (a replay), not by
  a time window.
* Twilio: base64 HMAC-SHA1 under the auth token over the full URL Twilio
  called followed by the sorted form parameters, each name then its value;
  the URL is tried with and without its port, as twilio-python does, because
  Twilio's own signing is inconsistent about it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TypeGuard

import attrs

from .._secrets import Secret

SVIX_PREFIX = "whsec_"
# Standard Webhooks names the same three headers ``webhook-*``; Resend sends ``svix-*``.
_SVIX_NAMES = ("svix", "webhook")


class Why(enum.StrEnum):
    """Why a delivery is refused: the ``why`` of a ``webhook_refused`` audit event."""

    FORGED = "forged"  # no signature matches
    STALE = "stale"  # a genuine signature, but too far from now: a replay, or a wrong clock
    MALFORMED = "malformed"  # no signature that could even be checked
    REPLAYED = "replayed"  # a genuine signature already used once
    BAD_TOKEN = "bad_token"  # an unsubscribe link that we did not sign


@attrs.frozen
class Verified:
    """The delivery is the provider's own."""


@attrs.frozen
class Refused:
    """The delivery is refused; ``detail`` is for the log, never names a person."""

    why: Why
    detail: str


Verification = Verified | Refused
VERIFIED = Verified()


def svix_key(secret: Secret) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ValueError when it is not base64."""
    text = secret.reveal()
    text = text.removeprefix(SVIX_PREFIX)
    try:
        # As the official libraries do: tolerate a secret written without its padding.
        key = base64.b64decode(text + "==", validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the Svix signing secret is not base64 after 'whsec_'") from exc
    if not key:
        raise ValueError("the Svix signing secret is empty")
    return key


def svix_headers(headers: Mapping[str, str]) -> tuple[str, str, str] | None:
    """``(id, timestamp, signature)`` from ``svix-*`` (else ``webhook-*``) headers."""
    for prefix in _SVIX_NAMES:
        found = [headers.get(f"{prefix}-{part}", "") for part in ("id", "timestamp", "signature")]
        if all(found):
            return found[0], found[1], found[2]
    return None


def verify_svix(
    key: bytes, headers: Mapping[str, str], body: bytes, *, now: float, tolerance: float
) -> Verification:
    """Check a Svix (Standard Webhooks) delivery; ``headers`` keyed in lower case."""
    found = svix_headers(headers)
    if found is None:
        return Refused(Why.MALFORMED, "svix-id, svix-timestamp and svix-signature are needed")
    message_id, stamp, offered = found
    # Eighteen digits is further than any tolerance; int() of thousands would raise.
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 18:
        return Refused(Why.MALFORMED, "svix-timestamp is not a whole number of seconds")
    content = f"{message_id}.{stamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    expected = b"v1," + base64.b64encode(digest)
    entries = offered.encode("utf-8", "surrogatepass").split(b" ")
    # Every entry is compared (no early exit), so timing says nothing about which matched.
    matches = [hmac.compare_digest(expected, entry) for entry in entries]
    if not any(matches):
        return Refused(Why.FORGED, "no v1 signature matches")
    skew = now - int(stamp)
    if abs(skew) > tolerance:
        return Refused(Why.STALE, f"signed {round(skew)} s from now (tolerance {tolerance:g} s)")
    return VERIFIED


def verify_mailgun(key: Secret, document: object) -> Verification:
    """Check the ``signature`` object of a Mailgun webhook body (already parsed JSON)."""
    signature = document.get("signature") if isinstance(document, dict) else None
    if not isinstance(signature, dict):
        return Refused(Why.MALFORMED, "the body has no signature object")
    stamp, token, offered = (signature.get(k) for k in ("timestamp", "token", "signature"))
    if isinstance(stamp, int) and not isinstance(stamp, bool):
        stamp = str(stamp)  # the docs' table says int; their examples send a string
    if not (_text(stamp) and _text(token) and _text(offered)):
        return Refused(Why.MALFORMED, "signature needs timestamp, token and signature")
    expected = hmac.new(key.reveal().encode(), (stamp + token).encode(), hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest().encode(), offered.lower().encode()):
        return Refused(Why.FORGED, "the signature does not match")
    return VERIFIED


def _text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


def twilio_signature(token: Secret, url: str, params: Sequence[tuple[str, str]]) -> str:
    """Twilio's signature of a form POST to ``url``: sorted names, each with its sorted values."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    # twilio-python sorts each name's distinct values; the duplicates Twilio never sends.
    text = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    digest = hmac.new(token.reveal().encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_twilio(
    token: Secret, url: str, params: Sequence[tuple[str, str]], offered: str | None
) -> Verification:
    """Check ``X-Twilio-Signature`` against the URL with, and without, its port."""
    if not offered:
        return Refused(Why.MALFORMED, "no X-Twilio-Signature")
    try:
        candidates = _with_and_without_port(url)
    except ValueError:
        return Refused(Why.MALFORMED, "the URL Twilio called cannot be rebuilt")
    given = offered.encode("utf-8", "surrogatepass")
    matches = [
        hmac.compare_digest(twilio_signature(token, candidate, params).encode(), given)
        for candidate in candidates
    ]
    if not any(matches):
        return Refused(Why.FORGED, "X-Twilio-Signature does not match")
    return VERIFIED


def _with_and_without_port(url: str) -> tuple[str, str]:
    """The URL with its port (the scheme's default added if none) and without any port."""
    parts = urllib.parse.urlparse(url)
    port = parts.port  # ValueError for a port that is not one
    user, at, host = parts.netloc.rpartition("@")
    bare = host if port is None else host[: host.rindex(":")]
    default = 443 if parts.scheme == "https" else 80
    with_port = f"{user}{at}{bare}:{port if port is not None else default}"
    return parts._replace(netloc=with_port).geturl(), parts._replace(
        netloc=user + at + bare
    ).geturl()
