"""The templates role of the contract: on the in-memory fake and on SQLite, the same.

A put adds the next version of a name; earlier versions stay as they were,
so a message rendered from one can always say what it was rendered from.
"""

from __future__ import annotations

from ringbearer.store import Store

from .test_store_contract import T0, Wall
from .test_store_contract import store as store  # the two-store fixture
from .test_store_contract import wall as wall


async def test_each_put_is_the_next_version_and_earlier_ones_stay(store: Store, wall: Wall) -> None:
    first = await store.put_template("invite", {"subject": "Hi {{ name }}"}, by="ops")
    wall.now = T0 + 60
    second = await store.put_template("invite", {"subject": "Hello {{ name }}"}, by="growth")
    other = await store.put_template("referral_ask", {"text": "Know someone?"}, by="ops")
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert (second.created_at, second.by) == (T0 + 60, "growth")
    assert await store.template("invite") == second
    assert await store.template("invite", 1) == first
    assert await store.template("invite", 3) is None
    assert await store.template("nope") is None
    assert [(t.name, t.version) for t in await store.templates()] == [
        ("invite", 2),
        ("referral_ask", 1),
    ]
    events = await store.events(kinds=["template_put"])
    assert [e.detail for e in reversed(events)] == [
        {"name": "invite", "version": 1, "by": "ops"},
        {"name": "invite", "version": 2, "by": "growth"},
        {"name": "referral_ask", "version": 1, "by": "ops"},
    ]
