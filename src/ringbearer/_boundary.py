"""The one boundary between an actor and its adapter: a message's own failure is its outcome.

A lane answers an Outcome for a provider's or the network's failure; what it
raises instead comes from the message itself far more often than from a bug:
a header a library refuses (a non-ASCII idempotency key), a value the wire
cannot carry (NaN, an integer of 5,000 digits, a lone surrogate), a subject
the email package will not fold, an answer whose shape the adapter did not
expect. Retrying cannot help any of them, and crashing the actor would
strand every innocent message behind it, so each becomes that message's
:class:`Permanent` outcome, a dead letter whose reason names the stage and
the error::

    raised while ...                  reason begins             may it have been taken?
    building the request              could not build the       no: nothing was sent
      (build, next_call, build_batch,   request
      HttpCall.request, compose)
    sending it (the transport, SMTP)  could not send the        maybe
                                        request
    reading the answer (classify,     the provider's answer     maybe: the provider
      classify_batch, after_call)       could not be read         answered, perhaps "yes"
    elsewhere in the lane             the delivery failed       maybe

At-least-once: an error after the request may have left (sending, reading
the answer) cannot be retried either (the same answer fails the same way,
and each try could send the message again), so it is dead-lettered too, and
its reason says the provider may have taken it: an operator who replays it
knows the provider may get it twice.

Only the exceptions data causes are contained (:data:`DATA_ERRORS`); any
other exception is a bug and crashes the actor, which the supervisor handles
(and a message that crashes it repeatedly is quarantined, see ``_actor``).
``trio.Cancelled`` and every other ``BaseException`` pass through untouched.

The stage is read from the traceback: the first frame, from the boundary
inwards, whose function is one of the seam's named steps (the methods of the
provider protocols in ``integrations._base``, and the SMTP lane's). A test
checks that those names still exist.
"""

from __future__ import annotations

import email.errors
import enum
from typing import cast

import attrs
import httpx

from ._delivery import Envelope, Outcome, Permanent
from ._errors import InvalidPayload
from .integrations import BatchingLane, Lane

# What a message's own data makes a lane raise; ValueError includes
# UnicodeError and json's errors, ArithmeticError OverflowError, LookupError
# KeyError and IndexError. RecursionError: a payload nested too deep to encode.
DATA_ERRORS: tuple[type[Exception], ...] = (
    InvalidPayload,  # a lane's own check, should the lane not turn it into Permanent itself
    ValueError,
    TypeError,
    ArithmeticError,
    LookupError,
    RecursionError,
    email.errors.MessageError,
    httpx.InvalidURL,
    httpx.LocalProtocolError,
)

DETAIL_MAX = 300  # characters of the error's own words kept in a reason
TAKEN_NOTE = "the provider may have taken it, so a replay may send it twice"


class Stage(enum.Enum):
    """Where in one delivery an exception was raised; the value opens the reason."""

    BUILD = "could not build the request"
    SEND = "could not send the request"
    READ = "the provider's answer could not be read"
    OTHER = "the delivery failed"


# The seam's steps by function name (see the module doc).
STAGE_NAMES: dict[str, Stage] = {
    "build": Stage.BUILD,
    "build_batch": Stage.BUILD,
    "next_call": Stage.BUILD,
    "request": Stage.BUILD,  # HttpCall.request: the httpx.Request is built (JSON, headers)
    "compose": Stage.BUILD,  # the SMTP lane's MIME message
    "send": Stage.SEND,  # integrations._base.Connection.send
    "_send": Stage.SEND,  # the SMTP lane's session, on its thread
    "classify": Stage.READ,
    "classify_batch": Stage.READ,
    "after_call": Stage.READ,
}


@attrs.define
class LaneSlot:
    """A lane as an actor's delivery task holds it; ``spoiled`` once a delivery raised midway."""

    lane: Lane
    # The lane may be mid-exchange (an SMTP transaction begun): the task
    # opens a fresh one before the next message. Not after a build error:
    # nothing was sent.
    spoiled: bool = False


def stage_of(exc: BaseException) -> Stage:
    """The stage the traceback of ``exc`` went through first."""
    tb = exc.__traceback__
    while tb is not None:
        stage = STAGE_NAMES.get(tb.tb_frame.f_code.co_name)
        if stage is not None:
            return stage
        tb = tb.tb_next
    return Stage.OTHER


def contained(exc: Exception, stage: Stage) -> Permanent:
    """The outcome of the message whose delivery raised ``exc`` at ``stage``."""
    if isinstance(exc, InvalidPayload):  # worded as the lanes word it: nothing was sent
        return Permanent(f"invalid payload: {exc.message}")
    words = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {words}" if words else type(exc).__name__
    if len(text) > DETAIL_MAX:
        text = text[: DETAIL_MAX - 1] + "…"
    if stage is Stage.BUILD:
        return Permanent(f"{stage.value}: {text}")
    return Permanent(f"{stage.value}: {text}; {TAKEN_NOTE}")


async def deliver_within(
    slot: LaneSlot, envelopes: list[Envelope], batching: bool
) -> list[Outcome]:
    """One attempt's outcomes, one per envelope; a data error is the outcome of its message(s)."""
    if not batching:
        (envelope,) = envelopes
        return [await _one(slot, envelope)]
    try:
        return await cast(BatchingLane, slot.lane).deliver_batch(envelopes)
    except DATA_ERRORS as exc:
        stage = stage_of(exc)
        if stage is not Stage.BUILD or len(envelopes) == 1:
            slot.spoiled = slot.spoiled or stage is not Stage.BUILD
            return [contained(exc, stage)] * len(envelopes)
    # Nothing was sent: each goes as a batch of one, so a bad one sinks only itself.
    return [await _one(slot, envelope) for envelope in envelopes]


async def _one(slot: LaneSlot, envelope: Envelope) -> Outcome:
    try:
        return await slot.lane.deliver(envelope)
    except DATA_ERRORS as exc:
        stage = stage_of(exc)
        slot.spoiled = slot.spoiled or stage is not Stage.BUILD
        return contained(exc, stage)
