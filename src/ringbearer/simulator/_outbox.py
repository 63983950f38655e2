"""Sending events back in the background: queued, in order per message, retried, bounded.

A provider never delays its answer for an event: a send puts a *script* (the
events of one email to one recipient, or of one text) on a bounded queue and
returns. A runner plays each script in its own task: it waits ``first``
seconds, sends the first event, waits ``gap``, sends the next, so the events
of one message arrive in order, shortly after the send. An event answered
other than 2xx, or not answered, is tried again after each of ``retries``
(then given up and counted as failed); a status in its ``final`` set ends
the tries at once (Mailgun stops on 406). Past ``capacity`` waiting scripts,
a new one is dropped and its events counted as dropped; at most
``concurrency`` scripts play at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import attrs
import trio
from attrs import validators as v

from ._slot import ProviderSlot


def _unsigned(attempt_at: int) -> Mapping[str, str]:
    return {}


@attrs.frozen
class Outbound:
    """One event to send: where, what, and its headers as signed at each attempt."""

    url: str
    body: bytes
    content_type: str
    # The attempt's Unix time in seconds -> its headers (Svix signs each attempt).
    signed: Callable[[int], Mapping[str, str]] = _unsigned
    final: frozenset[int] = frozenset()  # statuses that end the tries

    def headers(self, attempt_at: int) -> dict[str, str]:
        return {"content-type": self.content_type, **self.signed(attempt_at)}


@attrs.frozen
class Script:
    """The events of one message, in order, and the provider whose stats count them."""

    steps: tuple[Outbound, ...]
    slot: ProviderSlot


def _delays(
    _: object, attribute: attrs.Attribute[tuple[float, ...]], value: tuple[float, ...]
) -> None:
    if not all(math.isfinite(d) and d >= 0 for d in value):
        raise ValueError(f"{attribute.name} must be seconds, each 0 or more")


_SECONDS = [v.instance_of(float), v.ge(0.0), v.lt(3600.0)]
_COUNT = [v.instance_of(int), v.ge(1)]


@attrs.frozen
class EventTiming:
    """When events go, how often a failed one is tried again, and how much may wait."""

    first: float = attrs.field(default=0.02, validator=_SECONDS)  # after the send
    gap: float = attrs.field(default=0.02, validator=_SECONDS)  # between a message's events
    retries: tuple[float, ...] = attrs.field(default=(0.05, 0.1, 0.25, 0.5), validator=_delays)
    timeout: float = attrs.field(default=5.0, validator=[v.instance_of(float), v.gt(0.0)])
    capacity: int = attrs.field(default=10_000, validator=_COUNT)  # scripts waiting to play
    concurrency: int = attrs.field(default=1_024, validator=_COUNT)  # scripts playing at once


class Poster(Protocol):
    """Sends one request; its status, or None when there was no answer."""

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int | None: ...


@attrs.define
class Outbox:
    """The bounded queue of scripts, and the runner that plays them."""

    timing: EventTiming = EventTiming()
    clock: Callable[[], float] = time.time  # wall time, for signatures
    queued: int = 0  # scripts ever queued (dropped ones not included)
    _send: trio.MemorySendChannel[Script] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[Script] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[Script](self.timing.capacity)

    def put(self, script: Script) -> None:
        """Queue ``script``; when the queue is full, drop it and count its events."""
        try:
            self._send.send_nowait(script)
        except trio.WouldBlock:
            script.slot.stats.events_dropped_now(len(script.steps))
        else:
            self.queued += 1

    def waiting(self) -> int:
        """Scripts queued and not yet playing."""
        return self._send.statistics().current_buffer_used

    async def run(
        self, post: Poster, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Play queued scripts until cancelled, at most ``concurrency`` at a time."""
        playing = trio.Semaphore(self.timing.concurrency)
        async with trio.open_nursery() as nursery:
            task_status.started()
            async for script in self._receive:
                await playing.acquire()
                nursery.start_soon(self._play, script, post, playing)

    async def _play(self, script: Script, post: Poster, playing: trio.Semaphore) -> None:
        try:
            for index, step in enumerate(script.steps):
                await trio.sleep(self.timing.gap if index else self.timing.first)
                delivered = await self._deliver(step, post, script.slot)
                script.slot.stats.event_settled(delivered)
        finally:
            playing.release()

    async def _deliver(self, step: Outbound, post: Poster, slot: ProviderSlot) -> bool:
        """Try ``step`` until it is answered 2xx or its tries run out; True if it was."""
        for retry_after in (None, *self.timing.retries):
            if retry_after is not None:
                slot.stats.event_retried()
                await trio.sleep(retry_after)
            status = await self._attempt(step, post)
            if status is not None and 200 <= status < 300:
                return True
            if status in step.final:
                return False
        return False

    async def _attempt(self, step: Outbound, post: Poster) -> int | None:
        headers = step.headers(int(self.clock()))
        with trio.move_on_after(self.timing.timeout):
            return await post(step.url, step.body, headers)
        return None
