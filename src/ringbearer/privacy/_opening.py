"""Where a sealed payload is opened: in the lane, just before the provider's request is built.

:class:`OpeningAdapter` wraps an integration's adapter: each envelope's payload
is opened as the lane takes it, and nowhere else in the daemon. What comes
back is kept from the provider's words: an outcome's reason (which becomes a
dead letter's reason and an audit event's detail) has the message's
identities and anything shaped like an address or phone number replaced.

    payload sealed, keys alive       opened, sent
    a subject's key destroyed        Permanent: erased, never sent
    erased or shredded by retention  Permanent: nothing left to send
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, cast

import attrs

from .._delivery import Envelope, Outcome, Permanent, Retry
from ..integrations import Adapter, BatchingLane, BatchLimits, Lane
from ..store import ERASED_PAYLOAD, SHREDDED_PAYLOAD
from ._seal import Unsealable
from ._subjects import default_identities
from ._vault import Erased

_ADDRESS = re.compile(r"[^\s<>\"'(),;:]+@[^\s<>\"'(),;:]+")
_PHONE = re.compile(r"\+\d[\d\s().-]{6,}\d")


class Opener(Protocol):
    """The vault, as a lane uses it."""

    async def open_payload(self, payload: Mapping[str, Any]) -> dict[str, Any]: ...


def redact(text: str, identities: Sequence[str] = ()) -> str:
    """``text`` with the given identities, addresses and phone numbers replaced."""
    for identity in sorted(identities, key=len, reverse=True):
        if len(identity) >= 3:
            text = re.sub(re.escape(identity), "[subject]", text, flags=re.IGNORECASE)
    return _PHONE.sub("[phone]", _ADDRESS.sub("[address]", text))


@attrs.frozen
class OpeningAdapter:
    """An adapter whose lanes open sealed payloads; the rest is the wrapped adapter's."""

    inner: Adapter
    opener: Opener
    family: str

    @property
    def kind(self) -> str:
        return self.inner.kind

    @property
    def batching(self) -> BatchLimits | None:
        return self.inner.batching

    def validate(self, payload: Mapping[str, Any]) -> None:
        self.inner.validate(payload)

    def open_lane(self) -> AbstractAsyncContextManager[Lane]:
        return self._lane()

    @asynccontextmanager
    async def _lane(self) -> AsyncIterator[Lane]:
        async with self.inner.open_lane() as lane:
            yield OpeningLane(lane, self.opener, self.family)


@attrs.frozen
class OpeningLane:
    inner: Lane
    opener: Opener
    family: str

    async def deliver(self, envelope: Envelope) -> Outcome:
        opened = await self._open(envelope)
        if not isinstance(opened, Envelope):
            return opened
        return self._kept_from(await self.inner.deliver(opened), opened)

    async def deliver_batch(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        opened = [await self._open(envelope) for envelope in envelopes]
        going = [e for e in opened if isinstance(e, Envelope)]
        sent = await cast(BatchingLane, self.inner).deliver_batch(going) if going else []
        answers = iter(sent)
        outcomes: list[Outcome] = []
        for item in opened:
            if isinstance(item, Envelope):
                outcomes.append(self._kept_from(next(answers), item))
            else:
                outcomes.append(item)
        return outcomes

    async def _open(self, envelope: Envelope) -> Envelope | Outcome:
        payload = envelope.payload
        if payload == ERASED_PAYLOAD:
            return Permanent("erased at its subject's request; not sent")
        if payload == SHREDDED_PAYLOAD:
            return Permanent("its payload was shredded by retention; nothing to send")
        try:
            opened = await self.opener.open_payload(payload)
        except Erased:
            return Permanent("a subject's key is destroyed (erased); not sent")
        except Unsealable:
            return Permanent("its sealed payload cannot be opened with the keys held")
        return envelope if opened is payload else attrs.evolve(envelope, payload=opened)

    def _kept_from(self, outcome: Outcome, opened: Envelope) -> Outcome:
        """A failure's reason without the message's identities (read only for a failure)."""
        if isinstance(outcome, Retry | Permanent):
            identities = default_identities(self.family, opened.payload)
            return attrs.evolve(outcome, reason=redact(outcome.reason, identities))
        return outcome
