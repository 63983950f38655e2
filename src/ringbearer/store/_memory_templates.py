"""Versioned templates in memory, as the SQLite store keeps them."""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import trio

from .._audit_kinds import EventKind
from ._growth_model import TemplateRecord
from ._memory_tables import Tables
from ._model import Event


@attrs.define
class MemoryTemplates:
    _t: Tables
    kept: dict[str, list[TemplateRecord]] = attrs.Factory(dict)

    async def put_template(self, name: str, parts: Mapping[str, str], *, by: str) -> TemplateRecord:
        await trio.lowlevel.checkpoint()
        versions = self.kept.setdefault(name, [])
        record = TemplateRecord(name, len(versions) + 1, dict(parts), self._t.clock(), by)
        versions.append(record)
        detail = {"name": name, "version": record.version, "by": by}
        self._t.log(Event(EventKind.TEMPLATE_PUT.value, record.created_at, None, None, detail))
        return record

    async def template(self, name: str, version: int | None = None) -> TemplateRecord | None:
        await trio.lowlevel.checkpoint()
        versions = self.kept.get(name, [])
        if version is None:
            return versions[-1] if versions else None
        return versions[version - 1] if 1 <= version <= len(versions) else None

    async def templates(self) -> list[TemplateRecord]:
        await trio.lowlevel.checkpoint()
        return [self.kept[name][-1] for name in sorted(self.kept)]
