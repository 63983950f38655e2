"""Templates for operators and producers: put a version, show, list, render without sending."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from ..control import _replies as r
from ..control._protocol import TemplateList, TemplatePut, TemplateRender, TemplateShow
from ..growth._book import TemplateBook
from ..store import TemplateRecord


def template_view(t: TemplateRecord) -> r.TemplateView:
    return r.TemplateView(t.name, t.version, dict(t.parts), t.created_at, t.by)


@attrs.frozen
class TemplatePutHandler:
    book: TemplateBook

    async def __call__(self, request: TemplatePut) -> r.TemplateView:
        return template_view(await self.book.put(request.name, request.parts, by=request.by))


@attrs.frozen
class TemplateShowHandler:
    book: TemplateBook

    async def __call__(self, request: TemplateShow) -> r.TemplateView:
        return template_view(await self.book.record(request.name, request.version))


@attrs.frozen
class TemplateListHandler:
    book: TemplateBook

    async def __call__(self, request: TemplateList) -> r.TemplatesReply:
        return r.TemplatesReply([template_view(t) for t in await self.book.store.templates()])


@attrs.frozen
class TemplateRenderHandler:
    book: TemplateBook

    async def __call__(self, request: TemplateRender) -> r.RenderedReply:
        rendered = await self.book.render(request.name, request.version, request.vars)
        return r.RenderedReply(
            rendered.template, rendered.version, rendered.payload(), rendered.digest()
        )


def templates_table(book: TemplateBook) -> dict[type[Any], Callable[[Any], Awaitable[r.Reply]]]:
    """The handler of each template request."""
    return {
        TemplatePut: TemplatePutHandler(book),
        TemplateShow: TemplateShowHandler(book),
        TemplateList: TemplateListHandler(book),
        TemplateRender: TemplateRenderHandler(book),
    }
