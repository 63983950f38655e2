"""The templates role's face on a store: each method hands over to the part that does it."""

from __future__ import annotations

from collections.abc import Mapping

from ._growth_model import TemplateRecord
from ._protocol import Templates


class ForwardsTemplates:
    """A store's :class:`Templates` methods, forwarded to ``_templates``."""

    _templates: Templates

    async def put_template(self, name: str, parts: Mapping[str, str], *, by: str) -> TemplateRecord:
        return await self._templates.put_template(name, parts, by=by)

    async def template(self, name: str, version: int | None = None) -> TemplateRecord | None:
        return await self._templates.template(name, version)

    async def templates(self) -> list[TemplateRecord]:
        return await self._templates.templates()
