"""Who a message is about: its data subjects, as the producer names them and by default.

A producer may name them (``subjects``: addresses, phone numbers, user ids);
to those are added the ones the payload names, read by the family of its
target (a recipient is always a subject of what is sent to them):

    email      every address in ``to``, ``cc`` and ``bcc`` ("Name <a@b>" or bare)
    alerts     ``to`` (an SMS or a call's phone number); Slack and PagerDuty: none
    analytics  ``distinct_id`` (Mixpanel), ``user_id`` and ``device_id`` (Amplitude)
    crm        ``email``
    social     none (a post is public, not about one person)
    privacy    none: an erasure's deletion request names the erasure job as its
               subject (its key is destroyed when the job ends), never the person
               being erased, whose key is destroyed first

A message with no subject is not personal and is stored as given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from email.utils import getaddresses
from typing import Any

_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("to", "cc", "bcc"),
    "alerts": ("to",),
    "analytics": ("distinct_id", "user_id", "device_id"),
    "crm": ("email",),
}
_ADDRESS_FIELDS = frozenset({"to", "cc", "bcc", "email"})
MAX_SUBJECTS = 50  # a message about more people than this is a list, not a message


def default_identities(family: str, payload: Mapping[str, Any]) -> list[str]:
    """The identities a payload of ``family`` names, in order, without repeats."""
    found: list[str] = []
    for field in _FIELDS.get(family, ()):
        found += _values(field, payload.get(field))
    return list(dict.fromkeys(v for v in found if v))


def _values(field: str, value: object) -> list[str]:
    texts = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    texts = [t for t in texts if isinstance(t, str)]
    if field not in _ADDRESS_FIELDS:
        return [t.strip() for t in texts]
    if not any("@" in t for t in texts):  # a phone number in ``to``
        return [t.strip() for t in texts]
    return [address.strip() for _, address in getaddresses(texts) if "@" in address]


def check_identities(where: str, given: Sequence[object]) -> list[str]:
    """A producer's ``subjects``: 1 to MAX_SUBJECTS non-empty strings; raise ValueError."""
    if not given or len(given) > MAX_SUBJECTS:
        raise ValueError(f"{where}: give 1 to {MAX_SUBJECTS} subjects, or leave it out")
    out = []
    for index, value in enumerate(given):
        if not isinstance(value, str) or not value.strip() or len(value) > 320:
            raise ValueError(f"{where}[{index}]: a subject is a non-empty string of <= 320")
        out.append(value.strip())
    return list(dict.fromkeys(out))
