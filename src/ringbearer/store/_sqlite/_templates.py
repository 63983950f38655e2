"""Versioned templates in SQLite (migration 8)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from ..._audit_kinds import EventKind
from .._growth_model import TemplateRecord
from ._db import Row, Tx, dumps
from ._rows import INSERT_EVENT
from ._shared import Shared
from ._writer import Writer

_COLUMNS = "name, version, parts, created_at, by"


class SqliteTemplates:
    def __init__(self, writer: Writer, shared: Shared) -> None:
        self._writer = writer
        self._shared = shared

    async def put_template(self, name: str, parts: Mapping[str, str], *, by: str) -> TemplateRecord:
        now = self._shared.clock()

        async def put(tx: Tx) -> int:
            rows = await tx.fetchall(
                "INSERT INTO templates (name, version, parts, created_at, by)"
                " SELECT ?, COALESCE(MAX(version), 0) + 1, ?, ?, ? FROM templates WHERE name = ?"
                " RETURNING version",
                (name, dumps(dict(parts)), now, by, name),
            )
            version = int(rows[0][0])
            detail = {"name": name, "version": version, "by": by}
            await tx.execute(
                INSERT_EVENT, (now, EventKind.TEMPLATE_PUT.value, None, None, dumps(detail))
            )
            return version

        version = await self._writer.run(put)
        return TemplateRecord(name, version, dict(parts), now, by)

    async def template(self, name: str, version: int | None = None) -> TemplateRecord | None:
        if version is None:
            rows = await self._writer.read(
                f"SELECT {_COLUMNS} FROM templates WHERE name = ? ORDER BY version DESC LIMIT 1",
                (name,),
            )
        else:
            rows = await self._writer.read(
                f"SELECT {_COLUMNS} FROM templates WHERE name = ? AND version = ?",
                (name, version),
            )
        return _record(rows[0]) if rows else None

    async def templates(self) -> list[TemplateRecord]:
        rows = await self._writer.read(
            f"SELECT {_COLUMNS} FROM templates t WHERE version ="
            " (SELECT MAX(version) FROM templates WHERE name = t.name) ORDER BY name"
        )
        return [_record(r) for r in rows]


def _record(r: Row) -> TemplateRecord:
    return TemplateRecord(r[0], int(r[1]), json.loads(r[2]), r[3], r[4])
