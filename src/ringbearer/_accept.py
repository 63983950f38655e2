"""Accept loops that outlive a full descriptor table, and troubles logged once an episode.

When the process (``EMFILE``) or the system (``ENFILE``) has no descriptor
left, ``accept`` fails while the connection waits in the backlog, so the
listening socket stays readable: retrying at once would spin. The loop backs
off instead (100 ms, doubling to 1 s) and tries again, for as long as it
takes; each accept that succeeds starts the backoff over. Any other error
still ends the loop.

A trouble that recurs (accepts failing, connections refused at a limit) is
an :class:`Episode`: one line when it starts, one with its count once it has
been quiet for ``QUIET_SECONDS``, never a line per occurrence.
"""

from __future__ import annotations

import errno
import logging
import math
import os
from collections.abc import Callable, Sequence

import attrs
import trio

from ._logging import fields

FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 1.0
QUIET_SECONDS = 10.0
# Out of descriptors or kernel memory: wait for some to be freed. trio's own
# serve_listeners waits on the same set, but logs every failed accept.
_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@attrs.define
class Episode:
    """A recurring trouble: logged when it starts, and with its count once quiet."""

    log: logging.Logger
    started: str  # the first line's message
    ended: str  # the last line's message
    where: str  # which listener
    level: int = logging.WARNING
    count: int = 0
    started_at: float = 0.0
    last_at: float = -math.inf

    def happened(self, now: float, **detail: object) -> None:
        """One more occurrence; the first of an episode is logged at once."""
        if not self.count:
            self.started_at = now
            self.log.log(self.level, self.started, extra=fields(listener=self.where, **detail))
        self.count += 1
        self.last_at = now

    def quiet_at(self) -> float:
        """When the episode ends if nothing more happens (infinity when none is open)."""
        return self.last_at + QUIET_SECONDS if self.count else math.inf

    def settle(self, now: float) -> None:
        """End the episode, with its count, if it has been quiet long enough."""
        if not self.count or now < self.quiet_at():
            return
        self.log.info(
            self.ended,
            extra=fields(
                listener=self.where,
                count=self.count,
                seconds=round(self.last_at - self.started_at, 1),
            ),
        )
        self.count = 0


def accept_failures(log: logging.Logger, where: str) -> Episode:
    """The episode of accepts failing for want of descriptors."""
    return Episode(
        log,
        "accept failed: no descriptor free; retrying with backoff",
        "accepting again: accepts failed for want of descriptors",
        where,
        logging.ERROR,
    )


async def accept_forever(
    listener: trio.abc.Listener[trio.SocketStream],
    admit: Callable[[trio.SocketStream], None],
    failing: Episode,
    *,
    watched: Sequence[Episode] = (),
) -> None:
    """Hand each accepted connection to ``admit``, backing off while descriptors run out.

    ``watched`` episodes (the caller's own troubles) are settled here too, so
    their last line comes even when no connection arrives.
    """
    episodes = (failing, *watched)
    backoff = FIRST_BACKOFF_SECONDS
    while True:
        with trio.move_on_at(min(e.quiet_at() for e in episodes)):
            try:
                stream = await listener.accept()
            except OSError as exc:
                number = exc.errno or 0
                if number not in _CAPACITY_ERRNOS:
                    raise
                code = errno.errorcode.get(number, "?")
                failing.happened(trio.current_time(), error=code, reason=os.strerror(number))
                await trio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            else:
                backoff = FIRST_BACKOFF_SECONDS
                admit(stream)
        now = trio.current_time()
        for episode in episodes:
            episode.settle(now)


async def open_listeners(host: str, port: int) -> tuple[list[trio.SocketListener], int]:
    """TCP listeners on host:port, and the port they are bound to."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    if port == 0:
        # Each address family would get its own ephemeral port; a caller can
        # only be told one, so serve on the first address alone.
        for extra in listeners[1:]:
            await extra.aclose()
        listeners = listeners[:1]
    bound: int = listeners[0].socket.getsockname()[1]
    return listeners, bound
