"""Key rotation: every data key rewrapped under a new key-encryption key while the daemon runs.

Where the KEK comes from decides where a new one comes from:

* a key file of the daemon's own (the sandbox, or no ``[privacy] kek``):
  ``keys rotate`` writes a new key to ``<key file>.next`` (0600), makes it
  current at once, rewraps every data key, then moves it over the key file:
  the old key is gone when it is no longer needed. A restart in between
  finds ``.next``, opens with both, and finishes the rewrap.
* a secret reference (a systemd credential): the operator installs the new
  key as ``kek`` and lists the old one in ``retired_keks``, restarts, and
  runs ``keys rotate``, which rewraps what the retired keys still wrap;
  status says when they are no longer needed and can be removed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import attrs
import trio
import trio.lowlevel

from .._audit_kinds import EventKind
from ..store import AuditLog, Event
from ._kek import generate_key_file, load_kek
from ._seal import Kek
from ._settings import PrivacySettings
from ._vault import RotationState, VaultStatistics

log = logging.getLogger("ringbearer.privacy")


class Rewrapping(Protocol):
    """The vault, as rotation uses it."""

    def statistics(self) -> VaultStatistics: ...

    async def rotate(self, new: Kek, *, batch: int = 500) -> RotationState: ...


@attrs.frozen
class Keks:
    """The KEKs a daemon starts with: the current one, and older ones still needed."""

    current: Kek
    retired: tuple[Kek, ...]
    key_file: Path | None  # the daemon's own key file, or None under a secret reference


def next_file(key_file: Path) -> Path:
    return key_file.with_name(key_file.name + ".next")


def load_keks(settings: PrivacySettings, key_file: Path) -> Keks:
    """The KEKs to open the vault with (raises KekError naming what is wrong)."""
    retired = tuple(load_kek(ref, key_file) for ref in settings.retired_keks)
    if settings.kek is not None:
        return Keks(load_kek(settings.kek, key_file), retired, None)
    own = load_kek(None, key_file)
    pending = next_file(key_file)
    if pending.exists():  # a rotation a restart interrupted: the new key is current
        return Keks(load_kek(None, pending), (own, *retired), key_file)
    return Keks(own, retired, key_file)


@attrs.define
class KeyRotation:
    """Starts rewraps in the background (one at a time) and finishes the key files."""

    vault: Rewrapping
    keks: Keks
    audit: AuditLog
    wall: Callable[[], float]
    _nursery: trio.Nursery | None = None
    _current: Kek = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._current = self.keks.current

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host rewraps; resume one a restart interrupted."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self.vault.statistics().rotation.pending or self._pending_file():
                nursery.start_soon(self._rewrap, self._current, "restart")
            task_status.started()
            await trio.sleep_forever()

    async def rotate(self, by: str) -> RotationState:
        state = self.vault.statistics().rotation
        if state.running:
            return state
        if self.keks.key_file is not None and not self._pending_file():
            self._current = generate_key_file(next_file(self.keks.key_file))
        elif not state.pending and not self._pending_file():
            return state  # every data key is under the current KEK: nothing to rewrap
        assert self._nursery is not None, "rotation is not running"
        self._nursery.start_soon(self._rewrap, self._current, by)
        for _ in range(1000):  # the rewrap makes the new key current as it begins
            if self.vault.statistics().kek_id == self._current.id:
                break
            await trio.lowlevel.checkpoint()
        return self.vault.statistics().rotation

    def _pending_file(self) -> bool:
        return self.keks.key_file is not None and next_file(self.keks.key_file).exists()

    async def _rewrap(self, new: Kek, by: str) -> None:
        log.info("key rotation: rewrapping every data key under %s", new.id)
        state = await self.vault.rotate(new)
        if self.keks.key_file is not None and not state.pending and self._pending_file():
            os.replace(next_file(self.keks.key_file), self.keks.key_file)
        detail = {"kek_id": state.current, "pending": state.pending, "by": by}
        self.audit.append_event(Event(EventKind.KEYS_ROTATED.value, self.wall(), detail=detail))
        log.info("key rotation: done; %d data keys under an older key", state.pending)
