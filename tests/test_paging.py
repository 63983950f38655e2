"""Audit and dead-letter lists page newest first, with a cursor only when more are left."""

from __future__ import annotations

from pathlib import Path

import trio

from ringbearer._audit_kinds import EventKind
from ringbearer._delivery import Envelope, Outcome, Permanent
from ringbearer.control import Audit, DeadLetters, MessageIn
from ringbearer.integrations import FakeAdapter

from .harness import running_core


async def refuse(env: Envelope) -> Outcome:
    return Permanent("HTTP 422: refused", status=422)


def refusing(adapters: dict[str, FakeAdapter]) -> None:
    adapters["alpha"].behaviour = refuse


async def test_audit_pages_back_and_stops_with_no_cursor_at_the_end(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Five submits: pages of 2, 2 and 1, newest first; a page that holds the rest has no cursor."""
    async with running_core(tmp_path) as core:
        await core.daemon.submit([MessageIn("beta", {"n": n}) for n in range(5)])
        await core.daemon.wait_idle(60)
        kinds = [EventKind.SUBMITTED]
        pages, before = [], None
        while True:
            page = await core.daemon.handle(Audit(limit=2, kinds=kinds, before=before))
            pages.append([e.message_id for e in page.events])
            if page.before is None:
                break
            before = page.before
        assert pages == [[5, 4], [3, 2], [1]]
        whole = await core.daemon.handle(Audit(limit=5, kinds=kinds))
        assert whole.before is None and len(whole.events) == 5


async def test_dead_letters_page_back_the_same_way(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Three dead letters, two a page: 3 and 2, then 1 with no cursor."""
    async with running_core(tmp_path, setup=refusing) as core:
        await core.daemon.submit([MessageIn("alpha", {"n": n}) for n in range(3)])
        await core.daemon.wait_idle(60)
        first = await core.daemon.handle(DeadLetters(limit=2))
        assert [d.message_id for d in first.dead_letters] == [3, 2]
        assert first.before == 2
        rest = await core.daemon.handle(DeadLetters(limit=2, before=first.before))
        assert [d.message_id for d in rest.dead_letters] == [1] and rest.before is None
        exact = await core.daemon.handle(DeadLetters(limit=3))
        assert len(exact.dead_letters) == 3 and exact.before is None
