"""Alerts and where their escalation stands, in the ``alerts`` table (migration 5)."""

from __future__ import annotations

import json

from .._alert_model import AlertRecord, SentNotice
from ._db import Row, Tx, dumps
from ._writer import Writer

_COLUMNS = (
    "id, key, severity, summary, opened_at, chain, escalated_at, level, sent,"
    " last_sent_at, external, acked_by, acked_at, resolved_at"
)
_SAVE = f"INSERT OR REPLACE INTO alerts ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"


class Alerts:
    """Saves go through the writer (group commit, awaited); reads use its connection,
    which sees what it committed."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer

    async def save_alert(self, alert: AlertRecord) -> None:
        row = _row(alert)

        async def save(tx: Tx) -> None:
            await tx.execute(_SAVE, row)

        await self._writer.run(save)

    async def open_alerts(self) -> list[AlertRecord]:
        rows = await self._writer.read(
            f"SELECT {_COLUMNS} FROM alerts INDEXED BY alerts_open"
            " WHERE resolved_at IS NULL ORDER BY id"
        )
        return [_record(row) for row in rows]

    async def last_alert_id(self) -> int:
        rows = await self._writer.read("SELECT MAX(id) FROM alerts")
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def _row(a: AlertRecord) -> tuple[object, ...]:
    sent = [[n.level, n.message_id, n.at] for n in a.sent]
    return (
        a.id, a.key, a.severity, a.summary, a.opened_at, dumps(list(a.chain)),
        a.escalated_at, a.level, dumps(sent), a.last_sent_at, int(a.external),
        a.acked_by, a.acked_at, a.resolved_at,
    )  # fmt: skip


def _record(row: Row) -> AlertRecord:
    sent = tuple(SentNotice(int(n[0]), int(n[1]), float(n[2])) for n in json.loads(row[8]))
    return AlertRecord(
        id=row[0],
        key=row[1],
        severity=row[2],
        summary=row[3],
        opened_at=row[4],
        chain=tuple(json.loads(row[5])),
        escalated_at=row[6],
        level=row[7],
        sent=sent,
        last_sent_at=row[9],
        external=bool(row[10]),
        acked_by=row[11],
        acked_at=row[12],
        resolved_at=row[13],
    )
