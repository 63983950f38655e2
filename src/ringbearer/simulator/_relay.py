"""The simulator's events back to the sender: what a provider took becomes signed events.

After a provider takes an email or a text, :meth:`EventRelay.report` asks
that provider's builder for the events each recipient's mailbox would cause
(see ``_fates``) and queues them on the :class:`~._outbox.Outbox`; the
relay's runner sends them, signed as that provider signs, over one pooled
HTTP client. Resend and Mailgun send to the target registered for them
(``/_sim/webhooks``, or ``SimulatorState(webhooks=...)``); Twilio to each
text's ``StatusCallback``. Without a target, a report costs a dictionary
look-up and a check or two.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TypeAlias

import attrs
import httpx
import trio

from . import _mailgun_events, _resend_events, _twilio_events
from ._fates import Fates
from ._mail import Sent
from ._outbox import EventTiming, Outbound, Outbox, Script
from ._provider import kind_of
from ._slot import ProviderSlot
from ._targets import WebhookTarget

Builder: TypeAlias = Callable[
    [Sent, WebhookTarget | None, Fates, float], Iterator[tuple[Outbound, ...]]
]


def builders() -> dict[str, Builder]:
    """Each provider that sends events, by kind, and how it words them."""
    return {
        "resend": _resend_events.scripts,
        "mailgun": _mailgun_events.scripts,
        "twilio_sms": _twilio_events.scripts,
    }


# Posts in flight at once, each on a kept-alive connection of its own. No more
# wait inside httpx than it has connections: httpcore's pool scans every waiting
# request against every connection on each change, so a thousand waiters made
# each post cost milliseconds of CPU and, in the daemon's own sandbox, starved
# the daemon's loop (its store heartbeat missed, its stop was late).
_CONNECTIONS = 16
_POOL = httpx.Limits(max_connections=_CONNECTIONS, max_keepalive_connections=_CONNECTIONS)


@attrs.define
class EventRelay:
    """Turns what providers took into their events, and sends them in the background."""

    fates: Fates = Fates()
    targets: dict[str, WebhookTarget] = attrs.Factory(dict)  # by kind: "resend", "mailgun"
    timing: EventTiming = EventTiming()
    clock: Callable[[], float] = time.time
    outbox: Outbox = attrs.field(init=False)
    _builders: Mapping[str, Builder] = attrs.field(init=False, factory=builders)

    def __attrs_post_init__(self) -> None:
        self.outbox = Outbox(self.timing, self.clock)

    def report(self, slot: ProviderSlot, sent: Sequence[Sent]) -> None:
        """Queue the events of what ``slot``'s provider just took; never waits."""
        kind = kind_of(slot.name)
        build = self._builders.get(kind)
        if build is None:
            return
        target, now = self.targets.get(kind), self.clock()
        for item in sent:
            for steps in build(item, target, self.fates, now):
                self.outbox.put(Script(steps, slot))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send queued events until cancelled."""
        timeout = httpx.Timeout(self.timing.timeout)
        async with httpx.AsyncClient(timeout=timeout, limits=_POOL, trust_env=False) as client:
            poster = _Poster(client, trio.Semaphore(_CONNECTIONS))
            await self.outbox.run(poster, task_status=task_status)


@attrs.frozen
class _Poster:
    """One POST over the pooled client; no answer (refused, reset, timed out) is None."""

    client: httpx.AsyncClient
    connections: trio.Semaphore  # a free connection, taken before the request

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int | None:
        async with self.connections:
            try:
                response = await self.client.post(url, content=body, headers=headers)
            except httpx.HTTPError:
                return None
            return response.status_code
