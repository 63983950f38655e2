"""Versioned templates in PostgreSQL (as SQLite's migration 8 and ``_sqlite._templates``).

What differs from SQLite, and why: several nodes may put a version of one name at
once, and SQLite's one writer made "the highest version plus one" safe by itself; here
each put first takes its turn on the name (:func:`take_turn`), so two puts get
consecutive versions instead of one failing on the key. Names are ordered by
their bytes (``COLLATE "C"``), as SQLite orders text, whatever the database's locale.
Reads run in the writer's transaction: the part has no reader, and the writer's
connection must not be shared by a read and a batch at once.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..._audit_kinds import EventKind
from .._growth_model import TemplateRecord
from .._sqlite._shared import Shared
from .._sqlite._templates import _record as template_record
from ._db import PgTx, Row, dumps
from ._writer import INSERT_EVENT, PgWriter

_COLUMNS = "name, version, parts, created_at, by"


def take_turn(tx: PgTx, table: str, name: str) -> None:
    """Wait, until this transaction ends, for any other writer of ``table``'s ``name``.

    A transaction-scoped advisory lock on the pair: the statements after it see what an
    earlier holder committed (each statement reads afresh under READ COMMITTED), so
    "the highest plus one" is computed by one transaction at a time across nodes.
    """
    tx.execute("SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))", (table, name))


class PgTemplates:
    """Implements :class:`~ringbearer.store.Templates` on the writer."""

    def __init__(self, writer: PgWriter, shared: Shared) -> None:
        self._writer = writer
        self._shared = shared

    async def put_template(self, name: str, parts: Mapping[str, str], *, by: str) -> TemplateRecord:
        now, text = self._shared.clock(), dumps(dict(parts))

        def put(tx: PgTx) -> int:
            take_turn(tx, "templates", name)
            rows = tx.fetchall(
                "INSERT INTO templates (name, version, parts, created_at, by)"
                " SELECT %s, COALESCE(MAX(version), 0) + 1, %s, %s, %s FROM templates"
                " WHERE name = %s RETURNING version",
                (name, text, now, by, name),
            )
            version = int(rows[0][0])
            detail = {"name": name, "version": version, "by": by}
            tx.execute(INSERT_EVENT, (now, EventKind.TEMPLATE_PUT.value, None, None, dumps(detail)))
            return version

        version = await self._writer.run(put)
        return TemplateRecord(name, version, dict(parts), now, by)

    async def template(self, name: str, version: int | None = None) -> TemplateRecord | None:
        if version is None:
            sql = f"SELECT {_COLUMNS} FROM templates WHERE name = %s ORDER BY version DESC LIMIT 1"
            params: tuple[object, ...] = (name,)
        else:
            sql = f"SELECT {_COLUMNS} FROM templates WHERE name = %s AND version = %s"
            params = (name, version)
        rows = await self._writer.run(lambda tx: tx.fetchall(sql, params))
        return template_record(rows[0]) if rows else None

    async def templates(self) -> list[TemplateRecord]:
        rows: list[Row] = await self._writer.run(
            lambda tx: tx.fetchall(
                f"SELECT {_COLUMNS} FROM templates t WHERE version ="
                " (SELECT MAX(version) FROM templates WHERE name = t.name)"
                ' ORDER BY name COLLATE "C"'
            )
        )
        return [template_record(r) for r in rows]
