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
from ._model import NewMessage, Settle

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
    """A settle whose reason and provider id (a provider's words) are safe to store."""
    reason, provider_id = settle.reason, settle.provider_id
    if _plain(reason, REASON_MAX) and _plain(provider_id, PROVIDER_ID_MAX):
        return settle
    return attrs.evolve(
        settle,
        reason=None if reason is None else safe_text(reason, REASON_MAX),
        provider_id=None if provider_id is None else safe_text(provider_id, PROVIDER_ID_MAX),
    )


def check_storable(index: int, message: NewMessage) -> None:
    """Refuse, naming ``messages[index]`` and the field, what a store cannot hold as given."""
    where = f"messages[{index}]"
    if not message.target.isascii() and not _encodable(message.target):
        raise RequestError(ErrorCode.BAD_ARGS, f"{where}: target {_shown(message.target)} {_BAD}")
    key = message.idempotency_key
    if key is not None and not _plain(key, len(key)):
        raise RequestError(ErrorCode.BAD_ARGS, f"{where}: key {_shown(key)} {_BAD}")
    deliver_by = message.deliver_by
    if deliver_by is not None and not _storable_number(deliver_by):
        raise RequestError(
            ErrorCode.BAD_ARGS,
            f"{where}: deliver_by is not a time the store can hold (a finite Unix time)",
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
