"""Submit's privacy step: name each message's subjects, refuse what they did not allow, seal.

Runs after a message has passed its target's checks and the deliverability
rules, and before the store: what the store receives names its subjects by
opaque id only and carries its payload sealed under their keys.

    erased subject                 refused (``erased``)
    purpose needs consent, absent  refused (``no_consent``), naming the purpose
    otherwise                      subjects' keys made (durably) if new; payload sealed
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

from .._errors import ErrorCode
from ..store import NewMessage
from ._books import ConsentBook, ErasedBook
from ._subjects import default_identities


class Sealing(Protocol):
    """The vault, as submit uses it."""

    def subject_id(self, identity: str) -> str: ...

    async def ensure(self, identities: Sequence[str]) -> list[str]: ...

    async def seal_payload(
        self, subjects: Sequence[str], payload: Mapping[str, Any]
    ) -> dict[str, Any]: ...


@attrs.frozen
class PrivacyRefusal:
    """One message refused for its subjects' sake; the rest of its request goes on."""

    code: ErrorCode
    reason: str


@attrs.frozen
class Protection:
    """The privacy step, with the books it reads (shared with those who change them)."""

    vault: Sealing
    erased: ErasedBook
    consent: ConsentBook
    require_consent: tuple[str, ...] = ()

    async def protect(
        self, where: str, message: NewMessage, family: str
    ) -> NewMessage | PrivacyRefusal:
        """One message: see :meth:`protect_all`."""
        (protected,) = await self.protect_all([(where, message, family)])
        return protected

    async def protect_all(
        self, messages: Sequence[tuple[str, NewMessage, str]]
    ) -> list[NewMessage | PrivacyRefusal]:
        """Each ``(where, message, family)`` refused or sealed; the keys of every new subject
        of them all are made in one durable write.

        ``message.subjects`` holds the producer's identities, to which those the payload
        names are added (a recipient is always a subject of what is sent to them); a
        result names subject ids and carries the payload sealed."""
        found: list[tuple[NewMessage, list[str]] | PrivacyRefusal] = []
        for where, message, family in messages:
            named = [*message.subjects, *default_identities(family, message.payload)]
            identities = list(dict.fromkeys(named))
            ids = [self.vault.subject_id(identity) for identity in identities]
            refusal = self._refusal(where, ids, _purpose(family, message.category))
            # Refused before any key is made: an erased subject gets none again.
            found.append(refusal if refusal is not None else (message, identities))
        going = [i for item in found if not isinstance(item, PrivacyRefusal) for i in item[1]]
        if going:
            await self.vault.ensure(list(dict.fromkeys(going)))
        return [item if isinstance(item, PrivacyRefusal) else await self._sealed(*item)
                for item in found]  # fmt: skip

    async def _sealed(self, message: NewMessage, identities: list[str]) -> NewMessage:
        if not identities:
            return message
        subjects = sorted({self.vault.subject_id(identity) for identity in identities})
        sealed = await self.vault.seal_payload(subjects, message.payload)
        return attrs.evolve(message, payload=sealed, subjects=tuple(subjects))

    def _refusal(
        self, where: str, subjects: Sequence[str], purpose: str | None
    ) -> PrivacyRefusal | None:
        erased = self.erased.first_erased(subjects)
        if erased is not None:
            why = f"{where}: subject {erased} was erased; nothing new about them is taken"
            return PrivacyRefusal(ErrorCode.ERASED, why)
        if purpose is None or purpose not in self.require_consent:
            return None
        for subject in subjects:
            if not self.consent.granted(subject, purpose):
                why = f"{where}: subject {subject} has no {purpose} consent on record"
                return PrivacyRefusal(ErrorCode.NO_CONSENT, why)
        return None


def _purpose(family: str, category: str | None) -> str | None:
    """What a message is for, as consent is given: marketing mail, analytics events."""
    if family == "analytics":
        return "analytics"
    if family == "email" and category == "marketing":
        return "marketing"
    return None
