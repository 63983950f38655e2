"""Idempotency keys: a repeat names the earlier message, a reuse is refused.

As with Stripe's idempotency keys, a key names one message. Submitted again
with the same target and payload it is a repeat (a producer's retry): the
acknowledgement names the earlier message and marks it ``duplicate``. With
another target or another payload it is a mistake the producer must hear of:
the whole submit is refused with :class:`KeyReused` and nothing of it is
stored. Payloads are compared as canonical JSON (sorted keys, no spaces); a sealed
payload by the keyed digest of what it seals.

Both stores decide with :func:`admit`, from the keys they already hold; it
also refuses a message a store could not hold as given (see ``_safe``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .._errors import ErrorCode, RequestError
from ._model import Accepted, NewMessage
from ._safe import check_storable


def canonical(payload: Mapping[str, Any]) -> str:
    """The payload as compared for key reuse: JSON with sorted keys and no spaces."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


class KeyReused(RequestError):
    """``messages[index]`` reuses a key held by a message with another target or payload.

    ``earlier_id`` is the stored message that holds the key; it is None when
    the holder is an earlier message of the same submit (``earlier_index``),
    which was not stored either.
    """

    def __init__(
        self, index: int, key: str, earlier_id: int | None, earlier_index: int | None = None
    ) -> None:
        self.index = index
        self.key = key
        self.earlier_id = earlier_id
        self.earlier_index = earlier_index
        holder = (
            f"message {earlier_id}"
            if earlier_id is not None
            else f"messages[{earlier_index}] of the same submit"
        )
        super().__init__(
            ErrorCode.KEY_REUSED,
            f"messages[{index}]: idempotency key {key!r} is already used by {holder}"
            " with a different target or payload",
        )


@attrs.frozen
class KeyHolder:
    """The message that holds a key: its id, target and payload."""

    id: int
    target: str
    payload: Mapping[str, Any]


@attrs.frozen
class Fresh:
    """A message a submit stores: the id and key it gets."""

    id: int
    key: str
    message: NewMessage


@attrs.frozen
class Admission:
    """One submit, decided: an acknowledgement per message, the new messages, their keys."""

    accepted: list[Accepted]
    fresh: list[Fresh]
    keys: dict[str, KeyHolder]  # the given keys this submit's new messages hold


def admit(messages: Sequence[NewMessage], held: Mapping[str, KeyHolder], next_id: int) -> Admission:
    """Decide each message of one submit (new, or a repeat), or raise :class:`KeyReused`.

    ``held`` maps the keys already stored to their holders; new messages take
    ids from ``next_id`` up. A message without a key gets a fresh random one.
    A message no store could hold as given refuses the submit (``RequestError``).
    """
    accepted: list[Accepted] = []
    fresh: list[Fresh] = []
    mine: dict[str, tuple[int, KeyHolder]] = {}  # given keys of this submit, by their index
    for index, message in enumerate(messages):
        check_storable(index, message)
        key = message.idempotency_key
        if not key:
            key = uuid.uuid4().hex
        elif key in mine or key in held:
            earlier_index, holder = mine[key] if key in mine else (None, held[key])
            if not _repeats(message, holder):
                earlier_id = None if earlier_index is not None else holder.id
                raise KeyReused(index, key, earlier_id, earlier_index)
            accepted.append(Accepted(holder.id, key, duplicate=True))
            continue
        else:
            mine[key] = (index, KeyHolder(next_id, message.target, message.payload))
        accepted.append(Accepted(next_id, key))
        fresh.append(Fresh(next_id, key, message))
        next_id += 1
    return Admission(accepted, fresh, {key: holder for key, (_, holder) in mine.items()})


def _repeats(message: NewMessage, holder: KeyHolder) -> bool:
    # Canonical JSON only for repeats: a submit of new keys pays nothing for the check.
    return message.target == holder.target and _compared(message.payload) == _compared(
        holder.payload
    )


def _compared(payload: Mapping[str, Any]) -> str:
    """What a payload is compared by: a sealed one by the keyed digest of what it seals
    (sealing the same payload twice gives two boxes), any other as canonical JSON."""
    if payload.get("sealed") == 1 and isinstance(payload.get("digest"), str):
        return f"sealed:{payload['digest']}"
    return canonical(payload)
