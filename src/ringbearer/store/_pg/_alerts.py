"""Alerts and where their escalation stands, in the ``alerts`` table, as the SQLite
store's ``Alerts`` keeps them (the rows are built and read by its functions).

What differs from SQLite: ``INSERT OR REPLACE`` is an upsert on the id; ``INDEXED BY``
is left to the planner; and reads run inside the writer's next transaction
(``writer.run``), because one psycopg connection cannot carry a read while another
thread holds a batch's transaction open on it. Such a read sees every save before it.
"""

from __future__ import annotations

from .._alert_model import AlertRecord
from .._sqlite._alerts import _record, _row
from ._db import PgTx
from ._writer import PgWriter

_COLUMNS = (
    "id, key, severity, summary, opened_at, chain, escalated_at, level, sent,"
    " last_sent_at, external, acked_by, acked_at, resolved_at"
)
_UPDATED = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.split(", ")[1:])
_SAVE = (
    f"INSERT INTO alerts ({_COLUMNS}) VALUES ({', '.join(['%s'] * 14)})"
    f" ON CONFLICT (id) DO UPDATE SET {_UPDATED}"
)
_OPEN = f"SELECT {_COLUMNS} FROM alerts WHERE resolved_at IS NULL ORDER BY id"


class PgAlerts:
    """Saves and reads go through the writer (group commit, awaited)."""

    def __init__(self, writer: PgWriter) -> None:
        self._writer = writer

    async def save_alert(self, alert: AlertRecord) -> None:
        row = _row(alert)

        def save(tx: PgTx) -> None:
            tx.execute(_SAVE, row)

        await self._writer.run(save)

    async def open_alerts(self) -> list[AlertRecord]:
        rows = await self._writer.run(lambda tx: tx.fetchall(_OPEN))
        return [_record(row) for row in rows]

    async def last_alert_id(self) -> int:
        rows = await self._writer.run(lambda tx: tx.fetchall("SELECT MAX(id) FROM alerts"))
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0
