"""The vault: what the rest of the daemon uses to name, seal, open and erase personal data.

A data subject (a couple, a guest, a vendor) is named by an opaque id, a
keyed hash of their normalised identifier under a *pepper*: 32 random bytes
kept in the key store as the system row ``sys:pepper``, wrapped under the KEK
like any data key, so ids stay the same across a rotation of the KEK. Each
subject has a data key, created on first sight and put durably in the key
store before anyone relies on it; a payload about several subjects is sealed
under a key derived from all of theirs, so erasing any one of them makes it
unreadable. System secrets (OAuth refresh tokens) are sealed the same way
under system subjects ``sys:<name>``.

Data keys are cached (bounded LRU) so that a known subject costs no I/O. A key
destroyed by another vault on the same key store (another node) stays in this
cache until :meth:`Vault.forget` is told of it (see :mod:`._key_follow`).
Rotation makes a new KEK current at once, then rewraps every older row in
batches while delivery goes on; until it is done, the older KEK is needed.

Errors: :class:`Erased` (a subject's key is destroyed, or never was) and
:class:`~ringbearer.privacy.Unsealable` (corrupt, not ours, or wrapped under
a KEK that is not loaded).
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

import attrs
import trio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .._errors import RingbearerError
from ._keystore import SYSTEM, KeyRow, KeyStore
from ._seal import KEY_BYTES, Kek, Unsealable, new_data_key, open_sealed, seal

K = TypeVar("K")
V = TypeVar("V")

PEPPER = SYSTEM + "pepper"
CACHE_SIZE = 100_000
_SEALED_KEYS = frozenset({"sealed", "subjects", "box", "digest"})
_MESSAGE_KEY = b"ringbearer payload key v1\n"  # HKDF info, followed by the subjects


class Erased(RingbearerError):
    """A subject's key is destroyed: what it sealed cannot be opened."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        super().__init__(f"subject {subject} has no key: erased")


@attrs.frozen
class RotationState:
    """Where a rotation of the KEK stands."""

    current: str  # the current KEK's id
    pending: int  # rows still wrapped under an older KEK
    old_needed: bool  # an older KEK is still needed to open some rows
    running: bool


@attrs.frozen
class VaultStatistics:
    """A snapshot of the vault."""

    subjects: int  # data subjects with a key (system rows left out)
    kek_id: str
    rotation: RotationState


_SUBJECT_ID = re.compile(r"s_[0-9a-f]{32}")


def is_subject_id(text: str) -> bool:
    """Whether ``text`` is a subject id as :meth:`Vault.subject_id` makes them."""
    return _SUBJECT_ID.fullmatch(text) is not None


def normalise_identity(identity: str) -> str:
    """strip(); lower case if it contains '@' (an email address); else as given (phone, user id)."""
    identity = identity.strip()
    return identity.lower() if "@" in identity else identity


class Vault:
    """Subjects' ids and keys, sealing and opening, erasure and KEK rotation."""

    def __init__(
        self, ring: _Keyring, pepper: bytes, subjects: int, rotation: RotationState
    ) -> None:
        self._ring = ring
        self._mac = hmac.new(pepper, digestmod=hashlib.sha256)
        self._ids: _Lru[str, str] = _Lru(ring.cache.size)
        self._subjects = subjects
        self._rotation = rotation
        self._rotating = trio.Lock()

    @classmethod
    async def open(
        cls,
        store: KeyStore,
        kek: Kek,
        *,
        wall: Callable[[], float],
        retired: Sequence[Kek] = (),
        cache_size: int = CACHE_SIZE,
    ) -> Vault:
        """The vault over ``store``; ``retired`` KEKs open rows that a rotation has not reached."""
        keks = {old.id: old for old in retired}
        keks[kek.id] = kek
        ring = _Keyring(store, kek, wall, keks, _Lru(cache_size))
        pepper = await ring.system_key(PEPPER)
        subjects = await store.count_subjects()
        pending = _older(await store.counts(), kek.id)
        return cls(ring, pepper, subjects, RotationState(kek.id, pending, pending > 0, False))

    def subject_id(self, identity: str) -> str:
        """'s_' + 32 hex of HMAC-SHA256(pepper, normalise_identity(identity))."""
        known = self._ids.get(identity)
        if known is None:
            mac = self._mac.copy()
            mac.update(normalise_identity(identity).encode())
            known = "s_" + mac.hexdigest()[:32]
            self._ids.put(identity, known)
        return known

    async def ensure(self, identities: Sequence[str]) -> list[str]:
        """The subject id of each identity; a new subject's key is durable before this returns."""
        ids = [self.subject_id(identity) for identity in identities]
        wanted: dict[str, str] = {}
        for subject, identity in zip(ids, identities, strict=True):
            if self._ring.cache.get(subject) is None:
                wanted.setdefault(subject, normalise_identity(identity))
        if wanted:
            found = await self._ring.load(list(wanted))
            new = {s: identity for s, identity in wanted.items() if s not in found}
            if new:
                _, inserted = await self._ring.create(new)
                self._subjects += len(inserted)
        return ids

    async def seal_payload(
        self, subjects: Sequence[str], payload: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The payload sealed under its subjects' keys; with no subjects, unchanged."""
        if not subjects:
            return dict(payload)
        ordered = sorted(set(subjects))
        key = await self._message_key(ordered)
        box = seal(key, _dumps(payload), "payload")
        return {
            "sealed": 1,
            "subjects": ordered,
            "box": base64.b64encode(box).decode("ascii"),
            "digest": _digest(key, payload),
        }

    @staticmethod
    def is_sealed(payload: Mapping[str, Any]) -> bool:
        """Whether ``payload`` is one that :meth:`seal_payload` made."""
        if len(payload) != len(_SEALED_KEYS) or not all(k in payload for k in _SEALED_KEYS):
            return False
        flag, subjects, box = payload["sealed"], payload["subjects"], payload["box"]
        digest = payload["digest"]
        return (
            type(flag) is int
            and flag == 1
            and isinstance(subjects, list)
            and type(box) is str
            and type(digest) is str
        )

    async def open_payload(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The payload as submitted; an unsealed one is returned as is."""
        if not self.is_sealed(payload):
            return dict(payload)
        subjects = payload["subjects"]
        if not subjects or not all(type(s) is str for s in subjects):
            raise Unsealable("a sealed payload names no subjects, or not as ids")
        if subjects != sorted(set(subjects)):
            raise Unsealable("a sealed payload's subjects are not in order")
        key = await self._message_key(subjects)
        plain = open_sealed(key, _unbase64(payload["box"]), "payload")
        try:
            opened = json.loads(plain)
        except ValueError:
            raise Unsealable("a sealed payload opened to something other than JSON") from None
        if not isinstance(opened, dict):
            raise Unsealable("a sealed payload opened to something other than an object")
        return opened

    async def identity(self, subject: str) -> str | None:
        """The subject's identifier, or None if erased or unknown."""
        row = (await self._ring.store.get([subject])).get(subject)
        if row is None:
            return None
        return open_sealed(self._ring.unwrap(row), row.identity, "identity").decode()

    async def seal_text(self, name: str, text: str) -> str:
        """Seal a system secret under system subject 'sys:<name>' (created on first use)."""
        key = await self._ring.system_key(_system(name))
        return base64.b64encode(seal(key, text.encode(), "text:" + name)).decode("ascii")

    async def open_text(self, name: str, sealed: str) -> str:
        """What :meth:`seal_text` sealed; Erased if its system subject was destroyed."""
        (key,) = await self._ring.keys([_system(name)])
        plain = open_sealed(key, _unbase64(sealed), "text:" + name)
        try:
            return plain.decode()
        except UnicodeDecodeError:
            raise Unsealable("sealed text opened to something other than text") from None

    async def destroy(self, subject: str) -> bool:
        """Forget the subject's cached key and destroy it in the key store; False if none."""
        if subject == PEPPER:
            raise ValueError("the pepper names every subject: it is never destroyed")
        self._ring.forget([subject])
        gone = await self._ring.store.destroy(subject)
        self._ring.forget([subject])  # a read that raced with the destroy may have cached it
        if gone and not subject.startswith(SYSTEM):
            self._subjects -= 1
        return gone

    def forget(self, subjects: Iterable[str]) -> int:
        """Drop the cached keys of subjects destroyed elsewhere (another node); how many were
        cached. A read of one of them already under way does not cache it again."""
        return self._ring.forget(subjects)

    def forget_all(self) -> int:
        """Drop every cached key, for when what was destroyed elsewhere is unknown; how many."""
        return self._ring.forget_all()

    def statistics(self) -> VaultStatistics:
        return VaultStatistics(self._subjects, self._ring.current.id, self._rotation)

    async def rotate(self, new: Kek, *, batch: int = 500) -> RotationState:
        """Make ``new`` the current KEK, then rewrap every row under another one."""
        async with self._rotating:
            self._ring.make_current(new)  # before any await: new keys wrap under it at once
            self._progress(self._rotation.pending)
            try:
                pending = await self._rewrap_all(new, batch)
            finally:
                self._rotation = attrs.evolve(self._rotation, running=False)
            self._rotation = RotationState(new.id, pending, pending > 0, False)
            return self._rotation

    async def _rewrap_all(self, new: Kek, batch: int) -> int:
        self._progress(_older(await self._ring.store.counts(), new.id))
        while True:
            rows = await self._ring.store.under_other_kek(new.id, batch)
            if rows:
                await self._ring.store.replace_wrapped([self._ring.rewrapped(r) for r in rows])
                self._progress(max(0, self._rotation.pending - len(rows)))
                await trio.lowlevel.checkpoint()  # let delivery go on between batches
            elif self._ring.creating.only(new.id):
                return _older(await self._ring.store.counts(), new.id)
            else:  # keys wrapped under the old KEK just before the switch: wait, then rewrap
                await self._ring.creating.changed()

    def _progress(self, pending: int) -> None:
        self._rotation = RotationState(self._ring.current.id, pending, True, True)

    async def _message_key(self, ordered: Sequence[str]) -> bytes:
        keys = await self._ring.keys(ordered)
        if len(keys) == 1:
            return keys[0]
        info = _MESSAGE_KEY + "\n".join(ordered).encode()
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info)
        return hkdf.derive(b"".join(keys))


class _Lru(Generic[K, V]):
    """A bounded mapping that forgets the least recently used entry first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: collections.OrderedDict[K, V] = collections.OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.size:
            self._items.popitem(last=False)

    def pop(self, key: K) -> bool:
        """Forget ``key``; whether it was there."""
        return self._items.pop(key, None) is not None

    def clear(self) -> int:
        """Forget everything; how many entries there were."""
        count = len(self._items)
        self._items.clear()
        return count


@attrs.define
class _Creations:
    """Puts of new keys in flight, by the KEK that wrapped them: rotation waits for older ones."""

    by_kek: dict[str, int] = attrs.Factory(dict)
    _event: trio.Event = attrs.Factory(trio.Event)

    @contextlib.contextmanager
    def under(self, kek_id: str) -> Iterator[None]:
        self.by_kek[kek_id] = self.by_kek.get(kek_id, 0) + 1
        try:
            yield
        finally:
            self.by_kek[kek_id] -= 1
            if not self.by_kek[kek_id]:
                del self.by_kek[kek_id]
            self._event.set()
            self._event = trio.Event()

    def only(self, kek_id: str) -> bool:
        """Whether every put in flight wraps under ``kek_id``."""
        return all(k == kek_id for k in self.by_kek)

    async def changed(self) -> None:
        await self._event.wait()


@attrs.define
class _Keyring:
    """The KEKs, the key store and the cache of data keys: unwrapping, loading, creating."""

    store: KeyStore
    current: Kek
    wall: Callable[[], float]
    keks: dict[str, Kek]  # by id: the current one and every older one still known
    cache: _Lru[str, bytes]
    epoch: int = 0  # moved by every destroy or forget: a key read across one is not cached
    creating: _Creations = attrs.Factory(_Creations)

    def make_current(self, kek: Kek) -> None:
        self.keks[kek.id] = kek
        self.current = kek

    def unwrap(self, row: KeyRow) -> bytes:
        kek = self.keks.get(row.kek_id)
        if kek is None:
            loaded = ", ".join(sorted(self.keks))
            raise Unsealable(f"a key is wrapped under KEK {row.kek_id}, not loaded ({loaded})")
        return kek.unwrap(row.subject, row.wrapped)

    def rewrapped(self, row: KeyRow) -> KeyRow:
        wrapped = self.current.wrap(row.subject, self.unwrap(row))
        return attrs.evolve(row, kek_id=self.current.id, wrapped=wrapped)

    def forget(self, subjects: Iterable[str]) -> int:
        """Drop the subjects' cached keys; how many were cached."""
        wanted = list(subjects)
        if not wanted:  # nothing to forget: reads under way may still cache what they read
            return 0
        self.epoch += 1
        return sum(self.cache.pop(subject) for subject in wanted)

    def forget_all(self) -> int:
        self.epoch += 1
        return self.cache.clear()

    async def keys(self, subjects: Sequence[str]) -> list[bytes]:
        """The data key of each subject; Erased for one that has none."""
        found = await self.load(subjects)
        for subject in subjects:
            if subject not in found:
                raise Erased(subject)
        return [found[s] for s in subjects]

    async def load(self, subjects: Sequence[str]) -> dict[str, bytes]:
        """The data keys of those of ``subjects`` that have one: from the cache, else the store."""
        found: dict[str, bytes] = {}
        missing: list[str] = []
        for subject in subjects:
            key = self.cache.get(subject)
            if key is None:
                missing.append(subject)
            else:
                found[subject] = key
        if missing:
            found.update(await self._fetch(missing))
        return found

    async def create(self, new: Mapping[str, str]) -> tuple[dict[str, bytes], set[str]]:
        """Keys for new subjects (subject → identity), put durably; the keys, and which were ours.

        A subject that another writer created meanwhile keeps that writer's key.
        """
        kek = self.current
        rows = [self._new_row(kek, subject, identity) for subject, identity in new.items()]
        with self.creating.under(kek.id):
            await self.store.put(rows)
        epoch = self.epoch
        stored = await self.store.get(list(new))
        # Ours if it holds our sealed identity (a rotation may have rewrapped it already).
        ours = {
            r.subject
            for r in rows
            if r.subject in stored and stored[r.subject].identity == r.identity
        }
        return self._remember(stored, epoch), ours

    async def system_key(self, subject: str) -> bytes:
        """The data key of a system subject, created on first use."""
        found = await self.load([subject])
        if subject not in found:
            found, _ = await self.create({subject: subject})
        if subject not in found:  # destroyed as soon as it was created
            raise Erased(subject)
        return found[subject]

    async def _fetch(self, subjects: list[str]) -> dict[str, bytes]:
        epoch = self.epoch
        return self._remember(await self.store.get(subjects), epoch)

    def _remember(self, rows: Mapping[str, KeyRow], epoch: int) -> dict[str, bytes]:
        keys = {subject: self.unwrap(row) for subject, row in rows.items()}
        if epoch == self.epoch:  # no destroy since the read began
            for subject, key in keys.items():
                self.cache.put(subject, key)
        return keys

    def _new_row(self, kek: Kek, subject: str, identity: str) -> KeyRow:
        key = new_data_key()
        sealed = seal(key, identity.encode(), "identity")
        return KeyRow(subject, kek.id, kek.wrap(subject, key), sealed, self.wall())


def _system(name: str) -> str:
    subject = SYSTEM + name
    if not name or subject == PEPPER:
        raise ValueError(f"{name!r} cannot name a system secret")
    return subject


def _older(counts: Mapping[str, int], current: str) -> int:
    return sum(n for kek_id, n in counts.items() if kek_id != current)


def _digest(key: bytes, payload: Mapping[str, Any]) -> str:
    """A keyed digest of what is sealed: two submits of one payload compare equal by it
    (their boxes differ, each with its own nonce), and it is as unreadable as the box
    once a subject's key is gone."""
    canonical = json.dumps(dict(payload), sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, b"ringbearer payload digest v1\n" + canonical, hashlib.sha256).hexdigest()


def _dumps(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(payload), separators=(",", ":")).encode()


def _unbase64(text: Any) -> bytes:
    if type(text) is not str:
        raise Unsealable("sealed data is not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Unsealable("sealed data is not base64") from None
