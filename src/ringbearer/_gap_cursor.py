"""Reading rows newer than those already read, by an id from a sequence, when several
nodes write: a row is seen when its transaction commits, not when its id was drawn.

Node A draws id 100, node B draws 101 and commits first: a reader that read 101 and
moved its cursor past it would never see 100. So the cursor moves only over ids that
were read, or that stayed missing for ``patience`` seconds (a transaction rolled back,
or an insert that found a conflict, leaves its id unused for ever; no transaction here
stays open that long, since an idle one is ended after a third of a lease). Rows past a
gap are not read again: a reader asks for the awaited ids and for those past the newest
taken (:meth:`GapCursor.wanted`), and each row is taken once.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs


@attrs.define
class GapCursor:
    """Which ids are new, from a start (an id already read, or the newest at start)."""

    cursor: int  # every id up to here is taken, or was given up for lost
    patience: float = 60.0  # seconds a missing id is waited for
    _taken: set[int] = attrs.Factory(set)  # ids past the cursor already taken
    _missing_since: dict[int, float] = attrs.Factory(dict)  # gaps: when first seen

    def wanted(self) -> tuple[list[int], int]:
        """What to read next: the missing ids still awaited, and every id after the second."""
        return sorted(self._missing_since), max(self._taken, default=self.cursor)

    def fresh(self, ids: Iterable[int], now: float) -> list[int]:
        """Of ``ids`` (what a read of :meth:`wanted` found, in any order), those not taken
        before; they are taken now, and the cursor moves on where it can. A read cut
        short by its limit must return the lowest ids: a gap is judged below the
        highest id found."""
        found = sorted(set(ids))
        new = [i for i in found if i > self.cursor and i not in self._taken]
        self._taken.update(new)
        for i in new:
            self._missing_since.pop(i, None)
        if found:
            for gap in range(self.cursor + 1, found[-1]):
                if gap not in self._taken:
                    self._missing_since.setdefault(gap, now)
        self._advance(now)
        return new

    def _advance(self, now: float) -> None:
        while True:
            following = self.cursor + 1
            if following in self._taken:
                self._taken.discard(following)
            elif now - self._missing_since.get(following, now) >= self.patience:
                pass  # waited for long enough: lost (rolled back, or never used)
            else:
                return
            self._missing_since.pop(following, None)
            self.cursor = following
