"""The in-memory store's alerts, kept as the SQLite store's ``alerts`` table keeps them."""

from __future__ import annotations

import trio

from ._alert_model import AlertRecord


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
