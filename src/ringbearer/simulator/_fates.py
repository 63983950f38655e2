"""What happens to an email or a text once the provider took it: the sandbox's mailboxes.

A few addresses at ``simulator.test`` (and their subaddresses,
``bounce+1@simulator.test``) stand for the mailboxes a sender dreads;
everyone else receives the email, and a seeded share of them opens it, and
a smaller share clicks a link in it too. The draw depends only on
the simulator's seed, the provider's id of the email and the address, so a
seeded run reports the same opens and clicks every time.
"""

from __future__ import annotations

import enum
import hashlib

import attrs
from attrs import validators as v


class MailEvent(enum.Enum):
    """Something a mailbox did with an email, in the provider-neutral words of the sandbox."""

    DELIVERED = "delivered"
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    OPENED = "opened"
    CLICKED = "clicked"


BOUNCE = "bounce@simulator.test"
SOFT_BOUNCE = "softbounce@simulator.test"
COMPLAINT = "complaint@simulator.test"
UNSUBSCRIBE = "unsubscribe@simulator.test"
UNDELIVERABLE_NUMBER = "+15005550001"

_SPECIAL: dict[str, tuple[MailEvent, ...]] = {
    BOUNCE: (MailEvent.HARD_BOUNCE,),
    SOFT_BOUNCE: (MailEvent.SOFT_BOUNCE,),
    COMPLAINT: (MailEvent.DELIVERED, MailEvent.COMPLAINED),
    UNSUBSCRIBE: (MailEvent.DELIVERED, MailEvent.UNSUBSCRIBED),
}
_READ = (MailEvent.DELIVERED, MailEvent.OPENED)
_DRAW_SCALE = float(1 << 64)


def _share(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be from 0 to 1, got {value}")


@attrs.frozen
class Fates:
    """The sandbox's recipients: ``open_share`` of ordinary ones open, ``click_share`` click."""

    seed: int = 0
    open_share: float = attrs.field(default=0.30, validator=[v.instance_of(float), _share])
    click_share: float = attrs.field(default=0.10, validator=[v.instance_of(float), _share])

    def mail(self, address: str, email_id: str) -> tuple[MailEvent, ...]:
        """What happens, in order, to email ``email_id`` at ``address`` (bare, lower case).

        A subaddress is its mailbox: ``complaint+7@simulator.test`` complains too, so a
        test can have many distinct recipients that each complain (or bounce) once.
        """
        local, at, domain = address.partition("@")
        special = _SPECIAL.get(f"{local.partition('+')[0]}{at}{domain}")
        if special is not None:
            return special
        draw = self._draw(address, email_id)
        if draw < min(self.click_share, self.open_share):
            return (*_READ, MailEvent.CLICKED)
        if draw < self.open_share:
            return _READ
        return (MailEvent.DELIVERED,)

    def _draw(self, address: str, email_id: str) -> float:
        """A number in [0, 1) fixed by the seed, the email and the address."""
        text = f"{self.seed}/{email_id}/{address}".encode()
        digest = hashlib.blake2b(text, digest_size=8).digest()
        return int.from_bytes(digest, "big") / _DRAW_SCALE


def sms_statuses(to: str) -> tuple[str, ...]:
    """The statuses Twilio reports, in order, for a text to ``to`` (its first, queued, is not)."""
    return ("undelivered",) if to == UNDELIVERABLE_NUMBER else ("sent", "delivered")
