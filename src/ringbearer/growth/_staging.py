"""Stage rules at submit: a message to a couple, judged by where they are in their planning.

Reads the wedding date a message gives (``wedding_date``, else its template's
``vars.wedding_date``) and its category; a rule that holds it makes it wait in
the store until its window ends (its ``not_before``), and says so in the
reply and in a ``stage_held`` audit event; a rule that refuses it refuses it.
Messages without a wedding date pass.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import attrs

from .._errors import ErrorCode, RequestError
from ..control import MessageIn
from ._stages import Hold, Planning, Refuse


@attrs.frozen
class Staged:
    """What the rules made of one message: its new not-before, and why (None: it passes)."""

    not_before: float | None
    held: str | None


@attrs.frozen
class StageGate:
    planning: Planning
    wall: Callable[[], float]

    def judge(self, where: str, message: MessageIn, category: str) -> Staged:
        """Pass (nothing changes), hold (a later not-before), or RequestError (refused)."""
        wedding = _wedding_date(where, message)
        if wedding is None:
            return Staged(message.not_before, None)
        verdict = self.planning.verdict(category, wedding, self.wall())
        if isinstance(verdict, Refuse):
            raise RequestError(ErrorCode.STAGE_RULE, f"{where}: {verdict.describe()}")
        if isinstance(verdict, Hold):
            until = max(verdict.until, message.not_before or 0.0)
            return Staged(until, verdict.describe())
        return Staged(message.not_before, None)


def _wedding_date(where: str, message: MessageIn) -> dt.date | None:
    given = message.wedding_date
    if given is None and message.vars is not None:
        value = message.vars.get("wedding_date")
        given = value if isinstance(value, str) else None
    if given is None:
        return None
    try:
        return dt.date.fromisoformat(given[:10])
    except ValueError:
        raise RequestError(
            ErrorCode.BAD_ARGS, f"{where}.wedding_date: a date as YYYY-MM-DD, got {given!r}"
        ) from None
