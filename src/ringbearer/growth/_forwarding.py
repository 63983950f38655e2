"""Growth events forwarded to analytics (``[growth] forward``): each kept event becomes a
message to each named target, in that provider's shape, through its actor.

What goes: the kind, the user it is about (a sign-up's or acceptance's user, an invite's
inviter, a booking's couple), its time and its fields that name no one else (role, vendor
type, wedding date, invite id, channel). An invitee's or a vendor's address or name is
never forwarded: they are third parties who have not joined. The key is the event's id
and the target, so a retry of a batch does not count twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from ..control import MessageIn, Submit
from ..control import _replies as r
from ._events import GrowthEvent, InviteAccepted, InviteSent, Signup, VendorBooked, event_json
from ._recording import Recorded

_PERSONAL = {"email", "invitee", "vendor_email", "vendor_name"}
Submitter = Callable[[Submit], Awaitable[r.SubmitReply]]
BATCH = 1_000


def actor_of(event: GrowthEvent) -> str:
    match event:
        case Signup() | InviteAccepted():
            return event.user
        case InviteSent():
            return event.inviter
        case VendorBooked():
            return event.couple
    raise TypeError(type(event).__name__)


def properties(event: GrowthEvent) -> dict[str, Any]:
    body = event_json(event)
    return {k: v for k, v in body.items() if k not in _PERSONAL | {"event", "at"}}


@attrs.frozen
class Forwarder:
    targets: Mapping[str, str]  # target -> its family's kind: "mixpanel" | "amplitude"
    submit: Submitter

    async def recorded(self, batch: Sequence[Recorded]) -> None:
        messages = [self._message(t, kind, one) for t, kind in self.targets.items()
                    for one in batch]  # fmt: skip
        for start in range(0, len(messages), BATCH):
            await self.submit(Submit(messages[start : start + BATCH]))

    def _message(self, target: str, kind: str, one: Recorded) -> MessageIn:
        event = one.event
        payload: dict[str, Any]
        if kind == "amplitude":
            payload = {
                "event_type": event.KIND, "user_id": actor_of(event),
                "event_properties": properties(event), "time": round(event.at * 1000),
            }  # fmt: skip
        else:
            payload = {
                "event": event.KIND, "distinct_id": actor_of(event),
                "properties": properties(event), "time": event.at,
            }  # fmt: skip
        return MessageIn(target, payload, key=f"growth:{one.id}:{target}", category="analytics")
