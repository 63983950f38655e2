"""What a store accepts from outside, made safe to store (or refused, naming the field).

Both stores call these, so they keep and refuse the same things:

* texts that come from outside and only describe (a provider's id, an error
  text, a reason) are *made* safe: a lone surrogate cannot be encoded as
  UTF-8 and SQLite's bind refuses it, a NUL cuts the text short for many
  readers, and an unbounded text would let one answer fill the disk. They
  are stored readable instead: ``\\ud800`` as those six characters, NUL as
  ``\\x00``, a long text cut with an ellipsis;
* what names a message (its idempotency key, its target) cannot be altered
  without changing which message it is, so a submit holding one that cannot
  be stored is refused, naming ``messages[i]`` and the field;
* numbers a column cannot hold (an integer beyond 64 bits, NaN, infinity)
  are refused the same way.
"""

from __future__ import annotations

import math

import attrs

from .._errors import ErrorCode, RequestError
from ..deliverability import ProviderEvent, normalise_address
from ._model import HELD_UNTIL, NewMessage, Settle, SettleKind

REASON_MAX = 2000  # characters of a reason or error text kept
PROVIDER_ID_MAX = 500  # characters of a provider's id kept
_INT64 = 2**63


def safe_text(text: str, limit: int = REASON_MAX) -> str:
    """``text`` as a store can hold it: valid UTF-8, no NUL, at most ``limit`` characters."""
    if len(text) > limit:
        text = text[:limit]
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if not text.isascii() and not _encodable(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:  # an escape lengthens what it replaces
        text = text[: limit - 1] + "…"
    return text


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _plain(text: str | None, limit: int) -> bool:
    """True when ``text`` needs no change: the common case, checked cheaply."""
    return text is None or (
        len(text) <= limit and "\x00" not in text and (text.isascii() or _encodable(text))
    )


def safe_settle(settle: Settle) -> Settle:
    """A settle whose reason and provider id (a provider's words) are safe to store.

    A hold's key names a sending domain, which a producer gave: it is made safe
    too, and a HELD settle without one is held under ``""`` (not lost).
    """
    reason, provider_id, held = settle.reason, settle.provider_id, settle.held
    if settle.kind is SettleKind.HELD and held is None:
        held = ""
    if _plain(reason, REASON_MAX) and _plain(provider_id, PROVIDER_ID_MAX) and _plain(held, 500):
        return settle if held is settle.held else attrs.evolve(settle, held=held)
    return attrs.evolve(
        settle,
        reason=None if reason is None else safe_text(reason, REASON_MAX),
        provider_id=None if provider_id is None else safe_text(provider_id, PROVIDER_ID_MAX),
        held=None if held is None else safe_text(held, PROVIDER_ID_MAX),
    )


def safe_event(event: ProviderEvent, now: float) -> ProviderEvent:
    """A provider event as a store keeps and matches it: plain texts, a finite time, and
    its address normalised. The ids are made safe the same way each time, so a
    redelivery still finds the first."""
    texts = (event.source, event.event_id, event.provider_id, event.key, event.category)
    address = None if event.address is None else normalise_address(event.address)
    if (
        all(_plain(t, PROVIDER_ID_MAX) for t in texts)
        and _plain(address, PROVIDER_ID_MAX)
        and address == event.address
        and _storable_number(event.at)
        and abs(event.at) < HELD_UNTIL
    ):
        return event
    return attrs.evolve(
        event,
        source=safe_text(event.source, PROVIDER_ID_MAX),
        event_id=safe_text(event.event_id, PROVIDER_ID_MAX),
        provider_id=_maybe_safe(event.provider_id),
        key=_maybe_safe(event.key),
        category=_maybe_safe(event.category),
        address=_maybe_safe(address),
        at=_time(event.at, now),
    )


def _maybe_safe(text: str | None) -> str | None:
    return None if text is None else safe_text(text, PROVIDER_ID_MAX)


def check_storable(index: int, message: NewMessage) -> None:
    """Refuse, naming ``messages[index]`` and the field, what a store cannot hold as given."""
    where = f"messages[{index}]"
    if not message.target.isascii() and not _encodable(message.target):
        raise RequestError(ErrorCode.BAD_ARGS, f"{where}: target {_shown(message.target)} {_BAD}")
    key = message.idempotency_key
    if key is not None and not _plain(key, len(key)):
        raise RequestError(ErrorCode.BAD_ARGS, f"{where}: key {_shown(key)} {_BAD}")
    for name in ("category", "recipient", "domain"):
        text = getattr(message, name)
        if text is not None and not _plain(text, len(text)):
            raise RequestError(ErrorCode.BAD_ARGS, f"{where}: {name} {_shown(text)} {_BAD}")
    for name, beyond in (("deliver_by", math.inf), ("not_before", HELD_UNTIL)):
        when = getattr(message, name)
        # Scheduled past HELD_UNTIL, a message would look held: no producer means that.
        if when is not None and not (_storable_number(when) and when < beyond):
            raise RequestError(
                ErrorCode.BAD_ARGS,
                f"{where}: {name} is not a time the store can hold (a finite Unix time)",
            )


_BAD = "cannot be stored: it holds a lone surrogate or a NUL character"


def _storable_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int):
        return -_INT64 <= value < _INT64
    return math.isfinite(value)


def _shown(text: str) -> str:
    """A text for an error message: escaped, and short."""
    shown = ascii(text)
    return shown if len(shown) <= 80 else shown[:79] + "…"


def hardened_settle(settle: Settle, now: float) -> Settle:
    """The last resort for a settle a store refused: ASCII texts, finite times."""
    attempt = settle.attempt
    if attempt is not None:
        attempt = attrs.evolve(
            attempt,
            started_at=_time(attempt.started_at, now),
            duration=_time(attempt.duration, 0.0),
            detail=_ascii(attempt.detail, REASON_MAX),
        )
    return attrs.evolve(
        settle,
        reason=_ascii(settle.reason, REASON_MAX),
        provider_id=_ascii(settle.provider_id, PROVIDER_ID_MAX),
        next_attempt_at=_time(settle.next_attempt_at, now),
        created_at=_time(settle.created_at, now),
        attempt=attempt,
    )


def _ascii(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    return safe_text(text[:limit].encode("ascii", "backslashreplace").decode("ascii"), limit)


def _time(value: float, default: float) -> float:
    return value if _storable_number(value) and abs(value) < 1e15 else default
