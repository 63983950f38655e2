"""How growth keeps personal values: by the subject's keyed hash, and sealed under the
subject's key where the value must be read again (a couple's address for a referral ask,
a vendor's name for the partners list).

With the privacy vault a value is sealed as a message payload is (``{"v": text}`` under
the subject's key), so erasing the subject shreds it; without a vault (no ``[privacy]``
keys) the daemon keeps values as given and names people by their normalised identity,
as deliverability does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import attrs

from ..privacy import normalise_identity
from ..privacy._books import ErasedBook
from ..privacy._vault import Erased, Vault, is_subject_id


class Sealer(Protocol):
    def name(self, identity: str) -> str:
        """The id a person is kept by."""

    def erased(self, subject: str) -> bool: ...

    async def ensure(self, identities: Sequence[str]) -> None:
        """Make the keys of new subjects (durably) before anything is sealed under them."""

    async def seal(self, subject: str, text: str) -> Any:
        """``text`` sealed under ``subject``'s key, as JSON."""

    async def open(self, sealed: Any) -> str | None:
        """What :meth:`seal` sealed; None once its subject is erased."""

    async def identity(self, subject: str) -> str | None:
        """The address (or phone, or id) a subject id names; None once erased."""


@attrs.frozen
class VaultSealer:
    vault: Vault
    erased_book: ErasedBook

    def name(self, identity: str) -> str:
        return identity if is_subject_id(identity) else self.vault.subject_id(identity)

    def erased(self, subject: str) -> bool:
        return subject in self.erased_book.subjects

    async def ensure(self, identities: Sequence[str]) -> None:
        await self.vault.ensure(list(dict.fromkeys(identities)))

    async def seal(self, subject: str, text: str) -> Any:
        return await self.vault.seal_payload([subject], {"v": text})

    async def open(self, sealed: Any) -> str | None:
        try:
            opened = await self.vault.open_payload(sealed)
        except Erased:
            return None
        value = opened.get("v")
        return value if isinstance(value, str) else None

    async def identity(self, subject: str) -> str | None:
        return await self.vault.identity(subject)


@attrs.frozen
class ClearSealer:
    """No vault: people by their normalised identity, values as given."""

    def name(self, identity: str) -> str:
        return normalise_identity(identity)

    def erased(self, subject: str) -> bool:
        return False

    async def ensure(self, identities: Sequence[str]) -> None:
        pass

    async def seal(self, subject: str, text: str) -> Any:
        return text

    async def open(self, sealed: Any) -> str | None:
        return sealed if isinstance(sealed, str) else None

    async def identity(self, subject: str) -> str | None:
        return subject
