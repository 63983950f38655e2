"""Privacy, wired: the vault, the books, the submit step, erasure jobs, retention, rotation.

The vault is opened with the store (its key store is a file of its own, so a
copy of the database never holds the keys that open it); the rest is built
before the submit handler (the submit step) and after it (erasure, which
sends the analytics deletions through it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack

import attrs
import trio
from prometheus_client import CollectorRegistry

from ._config import Config
from ._errors import RingbearerError
from ._logging import fields
from ._secrets import with_password
from ._token_parts import TokenKeepers
from .control import MessageIn, Submit
from .control._replies import PrivacyStatus, TokenView
from .deliverability import EVERY_CATEGORY, Reason, Suppression
from .deliverability._book import SuppressionBook
from .handlers import SubmitHandler
from .integrations._oauth2 import TokenStatistics
from .privacy._books import ConsentBook, ErasedBook
from .privacy._erasure import Erasure, ErasureJobs, outcome_of
from .privacy._intake import Protection
from .privacy._key_follow import DestroyLog, KeyFollower
from .privacy._keystore import KeyStore, SqliteKeyStore
from .privacy._metrics import PrivacyMetrics
from .privacy._retention import Retention
from .privacy._rotation import Keks, KeyRotation, load_keks
from .privacy._vault import Vault, is_subject_id
from .store import ConsentRecord, ErasureRecord, Store

log = logging.getLogger("ringbearer.privacy")
WallClock = Callable[[], float]
KEY_FILE = "ringbearer.kek"
KEY_STORE = "keys.db"


@attrs.frozen
class VaultKeys:
    """The vault over its key store, and the KEKs it was opened with."""

    vault: Vault
    keks: Keks
    # Shared key store only: forgets in this vault the keys other nodes destroy.
    follower: KeyFollower | None = None


async def open_vault(config: Config, stack: AsyncExitStack, wall: WallClock) -> VaultKeys:
    """Open the key store beside the database and the vault over it (closed with ``stack``)."""
    state = config.state_dir
    keks = load_keks(config.privacy, state / KEY_FILE)
    keystore, destroys = await _keystore(config)
    stack.push_async_callback(keystore.close)
    vault = await Vault.open(keystore, keks.current, wall=wall, retired=keks.retired)
    follower = None if destroys is None else await KeyFollower.start(destroys, vault)
    stats = vault.statistics()
    log.info(
        "vault open",
        extra=fields(subjects=stats.subjects, kek=stats.kek_id, pending=stats.rotation.pending),
    )
    return VaultKeys(vault, keks, follower)


async def _keystore(config: Config) -> tuple[KeyStore, DestroyLog | None]:
    """The key store: a file beside the database, or, for several nodes, a PostgreSQL
    database of its own (``[privacy] keys_url``), whose log of destroys the nodes follow."""
    settings = config.privacy
    if not settings.keys_url:
        return await SqliteKeyStore.open(config.state_dir / KEY_STORE), None
    from .privacy._keystore_pg import PgKeyStore

    shared = await PgKeyStore.open(with_password(settings.keys_url, settings.keys_password))
    return shared, shared


def subject_namer(vault: Vault) -> Callable[[str], str]:
    """An address as deliverability keeps it: its subject id (an id is kept as it is)."""

    def name(address: str) -> str:
        return address if is_subject_id(address) else vault.subject_id(address)

    return name


@attrs.define(eq=False)
class PrivacySide:
    """The parts built from ``[privacy]`` and the vault."""

    vault: Vault
    keks: Keks
    erased: ErasedBook
    consent: ConsentBook
    protection: Protection
    metrics: PrivacyMetrics
    rotation: KeyRotation
    retention: Retention
    store: Store
    wall: WallClock
    follower: KeyFollower | None = None
    jobs: ErasureJobs | None = None

    @classmethod
    async def load(
        cls, config: Config, keys: VaultKeys, store: Store, wall: WallClock,
        registry: CollectorRegistry,
    ) -> PrivacySide:  # fmt: skip
        vault = keys.vault
        erased = ErasedBook(await store.erased_subjects())
        consent = ConsentBook.of(await store.consents())
        protection = Protection(vault, erased, consent, config.privacy.require_consent)
        metrics = PrivacyMetrics(registry)
        metrics.count_subjects(lambda: vault.statistics().subjects)
        rotation = KeyRotation(vault, keys.keks, store, wall)
        retention = Retention(store, config.privacy, wall)
        return cls(vault, keys.keks, erased, consent, protection, metrics, rotation,
                   retention, store, wall, keys.follower)  # fmt: skip

    async def follow_keys(self) -> None:
        """On a shared store, each beat: the keys other nodes destroyed leave this cache."""
        if self.follower is not None:
            await self.follower.follow()

    async def take_up_erased(self) -> int:
        """On a shared store: the subjects other nodes began erasing are refused here too."""
        for subject in await self.store.erased_subjects():
            self.erased.add(subject)
        return len(self.erased.subjects)

    async def rebuild_consent(self) -> int:
        """On a shared store: the consents other nodes recorded count here too."""
        return await self.consent.rebuild(self.store.consents)

    def wire_erasure(
        self, submit: SubmitHandler, book: SuppressionBook, current: Callable[[], Config]
    ) -> ErasureJobs:
        """Erasure jobs: they suppress through the book and send deletions through submit."""

        async def suppress(subject: str) -> None:
            note = "erased at the subject's request"
            await book.add(
                Suppression(subject, EVERY_CATEGORY, Reason.ERASED, self.wall(), None,
                            "erasure", note)
            )  # fmt: skip

        async def send(messages: Sequence[MessageIn]) -> list[int]:
            reply = await submit(Submit(list(messages)))
            if reply.refused:
                raise RingbearerError(f"deletion refused: {reply.refused[0].reason}")
            return [a.id for a in reply.accepted]

        erasure = Erasure(
            self.store, self.vault, self.erased, suppress, send, deletion_targets(current),
            lambda target: current().family_of(target), self.wall,
        )  # fmt: skip
        self.jobs = ErasureJobs(erasure, self._finished)
        return self.jobs

    def _finished(self, record: ErasureRecord) -> None:
        self.metrics.erasure(outcome_of(record))

    async def unsubscribed(self, subject: str, category: str) -> None:
        """An unsubscribe from any category but transactional withdraws marketing consent
        (recorded once: not again while it stays withdrawn)."""
        latest = self.consent.of_subject(subject).get("marketing")
        if category == "transactional" or (latest is not None and not latest.granted):
            return
        record = ConsentRecord(
            subject, "marketing", False, "unsubscribe", self.wall(), "unsubscribe"
        )
        self.consent.note(await self.store.add_consent(record))

    async def run(self, nursery: trio.Nursery) -> None:
        """Start the duties: erasure jobs (resuming unfinished ones), retention, rotation."""
        if self.jobs is not None:
            await nursery.start(self.jobs.run)
        await nursery.start(self.rotation.run)
        nursery.start_soon(self.retention.run)


def deletion_targets(current: Callable[[], Config]) -> Callable[[], list[str]]:
    """The integrations an erasure asks to delete a person: those of the privacy family."""

    def targets() -> list[str]:
        config = current()
        return sorted(
            name for name, s in config.integrations.items() if s.enabled and s.family == "privacy"
        )

    return targets


def privacy_status(privacy: PrivacySide, tokens: TokenKeepers) -> Callable[[], PrivacyStatus]:
    """What ``status`` shows of the vault, erasures and tokens."""

    def status() -> PrivacyStatus:
        stats = privacy.vault.statistics()
        rotation = stats.rotation
        return PrivacyStatus(
            subjects=stats.subjects,
            kek_id=stats.kek_id,
            rotation_pending=rotation.pending,
            old_key_needed=rotation.old_needed,
            rotating=rotation.running,
            erasures_running=len(privacy.jobs.running) if privacy.jobs else 0,
            tokens=[_token_view(t) for t in tokens.statistics()],
        )

    return status


def _token_view(t: TokenStatistics) -> TokenView:
    return TokenView(
        t.integration, t.has_token, round(t.remaining_seconds, 1), t.refresh_remaining_seconds,
        t.failures, t.reconnect, t.last_problem,
    )  # fmt: skip
