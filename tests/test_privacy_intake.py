"""Submit's privacy step, consent, retention and the KEK's rotation across a restart.

The step is given the real vault over an in-memory key store; retention and
consent the in-memory store; rotation real key files in a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio

from ringbearer._errors import ErrorCode
from ringbearer.privacy import Kek
from ringbearer.privacy._books import ConsentBook, ErasedBook
from ringbearer.privacy._intake import PrivacyRefusal, Protection
from ringbearer.privacy._keystore import MemoryKeyStore, SqliteKeyStore
from ringbearer.privacy._retention import DAY, Retention
from ringbearer.privacy._rotation import KeyRotation, load_keks, next_file
from ringbearer.privacy._settings import PrivacySettings
from ringbearer.privacy._vault import Vault
from ringbearer.store import (
    SHREDDED_PAYLOAD,
    ConsentRecord,
    MemoryStore,
    NewMessage,
    Settle,
    SettleKind,
)

T0 = 1_800_000_000.0
ANN, BEN = "ann@example.org", "+15005550006"


def wall() -> float:
    return T0


async def protection(**kw: object) -> Protection:
    vault = await Vault.open(MemoryKeyStore(), Kek.generate(), wall=wall)
    return Protection(vault, ErasedBook(), ConsentBook(), **kw)  # type: ignore[arg-type]


def mail(to: str, category: str = "transactional", **kw: object) -> NewMessage:
    payload = {"from": "studio@example.com", "to": f"Ann <{to}>", "text": "hello"}
    return NewMessage("email", payload, category=category, **kw)  # type: ignore[arg-type]


async def test_a_message_names_its_recipient_and_the_producers_subjects_and_is_sealed() -> None:
    step = await protection()
    (sealed,) = await step.protect_all([("messages[0]", mail(ANN, subjects=(BEN,)), "email")])
    assert isinstance(sealed, NewMessage)
    vault = step.vault
    assert sealed.subjects == tuple(sorted({vault.subject_id(ANN), vault.subject_id(BEN)}))
    assert sealed.payload["sealed"] == 1 and "ann@" not in str(sealed.payload)
    assert isinstance(vault, Vault)
    assert (await vault.open_payload(sealed.payload))["to"] == f"Ann <{ANN}>"


async def test_a_message_about_nobody_is_stored_as_given() -> None:
    step = await protection()
    post = NewMessage("x", {"text": "We are open on Saturday"})
    assert await step.protect_all([("messages[0]", post, "social")]) == [post]


async def test_an_erased_subject_is_refused_and_gets_no_key_again() -> None:
    step = await protection()
    step.erased.add(step.vault.subject_id(ANN))
    event = NewMessage("mixpanel", {"event": "rsvp", "distinct_id": ANN.upper()})
    (refused, kept) = await step.protect_all(
        [("messages[0]", event, "analytics"), ("messages[1]", mail("guest@example.org"), "email")]
    )
    assert isinstance(refused, PrivacyRefusal) and refused.code is ErrorCode.ERASED
    assert "messages[0]" in refused.reason and ANN not in refused.reason
    assert isinstance(kept, NewMessage)
    assert isinstance(step.vault, Vault)
    assert await step.vault.identity(step.vault.subject_id(ANN)) is None


async def test_consent_where_required_refuses_without_a_grant_and_takes_one_with_it() -> None:
    step = await protection(require_consent=("marketing",))
    where = "messages[0]"
    (refused,) = await step.protect_all([(where, mail(ANN, "marketing"), "email")])
    assert isinstance(refused, PrivacyRefusal) and refused.code is ErrorCode.NO_CONSENT
    assert "marketing consent" in refused.reason
    (receipt,) = await step.protect_all([(where, mail(ANN), "email")])
    assert isinstance(receipt, NewMessage)  # transactional mail needs none
    subject = step.vault.subject_id(ANN)
    step.consent.note(ConsentRecord(subject, "marketing", True, "signup", T0, "op"))
    (granted,) = await step.protect_all([(where, mail(ANN, "marketing"), "email")])
    assert isinstance(granted, NewMessage)
    step.consent.note(ConsentRecord(subject, "marketing", False, "unsubscribe", T0, "u"))
    (withdrawn,) = await step.protect_all([(where, mail(ANN, "marketing"), "email")])
    assert isinstance(withdrawn, PrivacyRefusal)


async def test_retention_shreds_what_is_old_enough_and_says_so() -> None:
    store = MemoryStore(wall)
    await store.submit([NewMessage("email", {"n": n}, subjects=("s_" + "a" * 32,)) for n in (1, 2)])
    first, second = await store.claim("email", 2)
    await store.record(
        [
            Settle(first.id, "email", SettleKind.DELIVERED, "resend", 1, T0),
            Settle(second.id, "email", SettleKind.DEAD_LETTERED, "resend", 1, T0, reason="no"),
        ]
    )
    settings = PrivacySettings()
    young = Retention(store, settings, lambda: T0 + 29 * DAY)
    assert await young.sweep() == 0
    later = Retention(store, settings, lambda: T0 + 31 * DAY)
    assert await later.sweep() == 1  # the delivered one; the dead one is kept 90 days
    assert await Retention(store, settings, lambda: T0 + 91 * DAY).sweep() == 1
    assert {r.id: r.payload for r in store.rows.values()} == {
        first.id: SHREDDED_PAYLOAD,
        second.id: SHREDDED_PAYLOAD,
    }
    shredded = await store.events(kinds=["shredded"])
    assert [e.detail["payloads"] for e in shredded if e.detail] == [1, 1]


async def test_a_rotation_interrupted_by_a_restart_finishes_and_retires_the_old_key(
    tmp_path: Path,
) -> None:
    key_file, settings = tmp_path / "ringbearer.kek", PrivacySettings()
    keks = load_keks(settings, key_file)
    store = await SqliteKeyStore.open(tmp_path / "keys.db")
    vault = await Vault.open(store, keks.current, wall=wall)
    (ann,) = await vault.ensure([ANN])
    sealed = await vault.seal_payload([ann], {"text": "before"})
    # The restart comes just after `keys rotate` wrote the new key: nothing rewrapped yet.
    new = Kek(bytes.fromhex(_make_next(next_file(key_file))))
    await store.close()
    keks = load_keks(settings, key_file)
    assert keks.current.id == new.id and [k.id for k in keks.retired] == [vault.statistics().kek_id]
    store = await SqliteKeyStore.open(tmp_path / "keys.db")
    vault = await Vault.open(store, keks.current, wall=wall, retired=keks.retired)
    assert vault.statistics().rotation.old_needed
    rotation = KeyRotation(vault, keks, MemoryStore(wall), wall)
    async with trio.open_nursery() as nursery:
        await nursery.start(rotation.run)  # resumes the rewrap
        for _ in range(1000):
            if not next_file(key_file).exists():
                break
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert not next_file(key_file).exists()
    assert not vault.statistics().rotation.old_needed
    await store.close()
    keks = load_keks(settings, key_file)  # the new key is the key file now; nothing retired
    assert (keks.current.id, keks.retired) == (new.id, ())
    store = await SqliteKeyStore.open(tmp_path / "keys.db")
    reopened = await Vault.open(store, keks.current, wall=wall)
    assert await reopened.open_payload(sealed) == {"text": "before"}
    await store.close()


def _make_next(path: Path) -> str:
    """A new key file as `keys rotate` writes it (0600); its hex."""
    key = os.urandom(32).hex()
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def test_a_provider_event_names_its_address_by_subject_id_even_in_its_words() -> None:
    from ringbearer.deliverability import EventType, ProviderEvent
    from ringbearer.deliverability._ingest import pseudonymised

    event = ProviderEvent(
        "mailgun", "t1", EventType.HARD_BOUNCE, T0, address="Ann@Example.org",
        detail={"reason": "550 5.1.1 <Ann@Example.org>: no such user", "code": 550},
    )  # fmt: skip
    named = pseudonymised(event, lambda a: "s_" + "f" * 32)
    assert named.address == "s_" + "f" * 32
    assert named.detail == {"reason": f"550 5.1.1 <s_{'f' * 32}>: no such user", "code": 550}
