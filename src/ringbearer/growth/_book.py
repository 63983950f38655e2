"""The templates the daemon renders from: kept versioned in the store, compiled once.

A put is compiled (size, syntax, filters) before it is stored: a template
that cannot render is refused at once, not at the first message. Each
version, once compiled, is kept compiled in memory; a message names a
template (its latest version, or one by number) and is rendered at submit,
in a worker thread (a render may take up to its time limit).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import attrs
import trio

from .._errors import ErrorCode, RequestError
from ..store import TemplateRecord, Templates
from ._templates import Compiled, Engine, Rendered, Template, TemplateError

T = TypeVar("T")


@attrs.define(eq=False)
class TemplateBook:
    store: Templates
    engine: Engine
    wall: Callable[[], float]
    _compiled: dict[tuple[str, int], Compiled] = attrs.Factory(dict)

    async def put(self, name: str, parts: Mapping[str, str], *, by: str) -> TemplateRecord:
        """Compile, then keep as the next version of ``name``; BAD_ARGS naming what is wrong."""
        _checked(lambda: self.engine.compile(Template.of(name, 1, parts)))
        record = await self.store.put_template(name, parts, by=by)
        self._compiled[(name, record.version)] = self._compile(record)
        return record

    async def record(self, name: str, version: int | None = None) -> TemplateRecord:
        found = await self.store.template(name, version)
        if found is None:
            which = "" if version is None else f" version {version}"
            raise RequestError(ErrorCode.NOT_FOUND, f"no template {name!r}{which}")
        return found

    async def render(
        self, name: str, version: int | None, variables: Mapping[str, object]
    ) -> Rendered:
        """``name`` (its latest version, or ``version``) rendered at the wall clock's now."""
        record = await self.record(name, version)
        key = (record.name, record.version)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(record)
        now = self.wall()
        return await trio.to_thread.run_sync(
            lambda: _checked(lambda: self.engine.render(compiled, variables, now))
        )

    def _compile(self, record: TemplateRecord) -> Compiled:
        return _checked(
            lambda: self.engine.compile(Template.of(record.name, record.version, record.parts))
        )


def _checked(work: Callable[[], T]) -> T:
    try:
        return work()
    except TemplateError as exc:
        raise RequestError(ErrorCode.BAD_ARGS, str(exc)) from None
    except ValueError as exc:  # a name or a part the template model refuses
        raise RequestError(ErrorCode.BAD_ARGS, f"template: {exc}") from None
