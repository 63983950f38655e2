"""What the parts of one SQLite store share: the wall clock, the queue counters, the listener."""

from __future__ import annotations

import attrs

from .._model import Counters
from .._protocol import NullListener, StoreListener
from ._db import WallClock


@attrs.define
class Shared:
    """Owned by the store; each part that changes the queue or tells the listener holds it."""

    clock: WallClock
    counters: Counters = attrs.Factory(Counters)
    listener: StoreListener = attrs.Factory(NullListener)
