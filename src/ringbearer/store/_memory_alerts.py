"""The in-memory store's alerts and controls, kept as the SQLite store's ``alerts``,
``breakers``, ``controls`` and ``mode_override`` tables keep them."""

from __future__ import annotations

import trio

from ._alert_model import AlertRecord
from ._model import BreakerRecord, OverrideRecord


class MemoryAlerts:
    """Alert records by id; each call yields to the scheduler, as a commit would."""

    def __init__(self) -> None:
        self._by_id: dict[int, AlertRecord] = {}

    async def save_alert(self, alert: AlertRecord) -> None:
        await trio.lowlevel.checkpoint()
        self._by_id[alert.id] = alert

    async def open_alerts(self) -> list[AlertRecord]:
        await trio.lowlevel.checkpoint()
        return [self._by_id[i] for i in sorted(self._by_id) if self._by_id[i].is_open]

    async def last_alert_id(self) -> int:
        await trio.lowlevel.checkpoint()
        return max(self._by_id, default=0)


class MemoryControls:
    """Breaker states, paused names and the wedding-day override."""

    def __init__(self) -> None:
        self._breakers: dict[str, BreakerRecord] = {}
        self._paused: set[str] = set()
        self._override: OverrideRecord | None = None

    def save_breaker(self, record: BreakerRecord) -> None:
        self._breakers[record.integration] = record

    async def breakers(self) -> dict[str, BreakerRecord]:
        await trio.lowlevel.checkpoint()
        return dict(self._breakers)

    async def set_paused(self, name: str, paused: bool) -> None:
        await trio.lowlevel.checkpoint()
        (self._paused.add if paused else self._paused.discard)(name)

    async def paused(self) -> set[str]:
        await trio.lowlevel.checkpoint()
        return set(self._paused)

    async def set_mode_override(self, override: OverrideRecord | None) -> None:
        await trio.lowlevel.checkpoint()
        self._override = override

    async def mode_override(self) -> OverrideRecord | None:
        await trio.lowlevel.checkpoint()
        return self._override
