"""The one place where faults, latency and stats wrap a provider's own logic."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
import trio

from .._httpserver import Action, HttpRequest, HttpResponse
from ._faults import FaultKind, Faults
from ._mail import Sent
from ._provider import HttpProvider, Outcome, ProviderSpec
from ._slot import ProviderSlot
from ._stats import SeenRequest

_NOT_SENT = {Action.RESET: "reset", Action.HANG: "hang"}
Report = Callable[[ProviderSlot, Sequence[Sent]], None]


def _ignore(slot: ProviderSlot, sent: Sequence[Sent]) -> None:
    return None


@attrs.define
class Endpoint:
    """A simulated HTTP provider as served: its logic, its slot, the fault layer.

    ``report`` hears of every email or text the provider took (the event relay).
    """

    spec: ProviderSpec
    slot: ProviderSlot
    report: Report = _ignore
    logic: HttpProvider = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.logic = self.spec.make()

    def reset(self) -> None:
        """Forget everything: faults, stats and the provider's own tables."""
        self.slot.reset()
        self.logic = self.spec.make()

    async def answer(self, request: HttpRequest, path: str) -> HttpResponse:
        """The provider's answer to ``request``, after its faults have had their say."""
        self.slot.stats.seen.append(SeenRequest.of(request, path))
        faults = self.slot.faults  # as they stand for this request: a count may end them
        outcome = self._decide(request, path, faults)
        response = outcome.response
        label = _NOT_SENT.get(response.action) or str(response.status)
        self.slot.stats.record(label, outcome.accepted, outcome.key, outcome.sent)
        if outcome.sent:
            self.report(self.slot, outcome.sent)
        # The delay comes after the work, as with a slow provider: a client
        # that gives up early has still caused the send.
        if faults.latency_ms:
            await trio.sleep(faults.latency_ms / 1000)
        return response

    def _decide(self, request: HttpRequest, path: str, faults: Faults) -> Outcome:
        fault = self.slot.draw()
        replies = self.spec.replies
        match fault:
            case None:
                return self.logic.handle(request, path, self.slot.rng)
            case FaultKind.MALFORMED:
                return _garble(self.logic.handle(request, path, self.slot.rng))
            case FaultKind.TRUNCATE:
                return _cut(self.logic.handle(request, path, self.slot.rng))
            case FaultKind.RESET:
                return Outcome(HttpResponse(0, action=Action.RESET))
            case FaultKind.HANG:
                return Outcome(HttpResponse(0, action=Action.HANG))
            # A fault's reply never does the work, even where the provider
            # words a refusal as a 200 (Slack's Web API says ok: false).
            case FaultKind.OUTAGE:
                return Outcome(replies.outage, accepted=False)
            case FaultKind.ERROR:
                return Outcome(replies.error, accepted=False)
            case FaultKind.PERMANENT:
                return Outcome(replies.permanent, accepted=False)
            case FaultKind.RATE_LIMIT:
                return Outcome(replies.rate_limited(faults.retry_after), accepted=False)


def _garble(outcome: Outcome) -> Outcome:
    """A success whose body is cut in half and labelled as HTML: unparseable, yet complete."""
    response = outcome.response
    if not outcome.accepted:
        return outcome
    body = response.body[: len(response.body) // 2]
    headers = tuple(h for h in response.headers if h[0].lower() != "content-type")
    garbled = HttpResponse(response.status, body, (("content-type", "text/html"), *headers))
    return attrs.evolve(outcome, response=garbled)


def _cut(outcome: Outcome) -> Outcome:
    """A success that announces its whole body and sends half of it."""
    if not outcome.accepted:
        return outcome
    return attrs.evolve(outcome, response=attrs.evolve(outcome.response, action=Action.TRUNCATE))
