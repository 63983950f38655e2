"""The vault: stable subject ids, keys made durably once, sealing, erasure and KEK rotation."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from ringbearer.privacy import (
    Erased,
    Kek,
    KeyRow,
    KeyStore,
    MemoryKeyStore,
    RotationState,
    Unsealable,
    Vault,
    normalise_identity,
)

from .test_privacy_keystore import store as store  # both key stores, as the contract runs

T0 = 1_750_000_000.0
ANN, BEN, CAT = "Ann@Example.com", "+447700900123", "user-cat-42"
PAYLOAD = {"to": "ann@example.com", "subject": "Your wedding, 12 June", "n": [1, 2.5, None]}


def wall() -> float:
    return T0


@attrs.define
class Spy:
    """A key store that notes each call and can hold puts until a gate opens."""

    inner: MemoryKeyStore = attrs.Factory(MemoryKeyStore)
    calls: list[str] = attrs.Factory(list)
    gate: trio.Event | None = None  # holds puts
    read_gate: trio.Event | None = None  # holds the answers of gets, once read
    before_replace: Callable[[], None] | None = None

    async def get(self, subjects: Sequence[str]) -> dict[str, KeyRow]:
        self.calls.append("get")
        rows = await self.inner.get(subjects)
        if self.read_gate is not None:
            await self.read_gate.wait()
        return rows

    async def put(self, rows: Sequence[KeyRow]) -> None:
        self.calls.append("put")
        if self.gate is not None:
            await self.gate.wait()
        await self.inner.put(rows)

    async def destroy(self, subject: str) -> bool:
        self.calls.append("destroy")
        return await self.inner.destroy(subject)

    async def under_other_kek(self, kek_id: str, limit: int) -> list[KeyRow]:
        self.calls.append("under_other_kek")
        return await self.inner.under_other_kek(kek_id, limit)

    async def replace_wrapped(self, rows: Sequence[KeyRow]) -> None:
        self.calls.append("replace_wrapped")
        if self.before_replace is not None:
            self.before_replace()
        await self.inner.replace_wrapped(rows)

    async def counts(self) -> dict[str, int]:
        return await self.inner.counts()

    async def count_subjects(self) -> int:
        return await self.inner.count_subjects()

    async def close(self) -> None:
        await self.inner.close()


def test_identities_are_normalised_as_addresses_or_as_given() -> None:
    """An email address is stripped and lowered; a phone or a user id only stripped."""
    assert normalise_identity("  Ann@Example.COM\n") == "ann@example.com"
    assert normalise_identity(" +44 7700 900123 ") == "+44 7700 900123"
    assert normalise_identity("User-Cat") == "User-Cat"


async def test_subject_ids_are_stable_across_reopen_and_rotation(store: KeyStore) -> None:
    """The same identity gets the same opaque id after a reopen and after a KEK rotation."""
    old, new = Kek.generate(), Kek.generate()
    vault = await Vault.open(store, old, wall=wall)
    first = vault.subject_id(ANN)
    assert first.startswith("s_") and len(first) == 34 and "ann" not in first
    assert vault.subject_id(" ann@example.com ") == first != vault.subject_id(BEN)
    assert (await Vault.open(store, old, wall=wall)).subject_id(ANN) == first
    await vault.rotate(new)
    assert vault.subject_id(ANN) == first
    assert (await Vault.open(store, new, wall=wall)).subject_id(ANN) == first
    elsewhere = await Vault.open(MemoryKeyStore(), old, wall=wall)
    assert elsewhere.subject_id(ANN) != first  # keyed by this key store's pepper


async def test_ensure_is_idempotent_and_known_subjects_cost_no_io() -> None:
    """A second ensure adds no key; once known, a subject is served without touching the store."""
    spy = Spy()
    vault = await Vault.open(spy, Kek.generate(), wall=wall)
    ids = await vault.ensure([ANN, BEN, "ann@example.com"])
    assert ids[0] == ids[2] == vault.subject_id(ANN) and ids[1] == vault.subject_id(BEN)
    assert await spy.count_subjects() == 2 and vault.statistics().subjects == 2
    spy.calls.clear()
    assert await vault.ensure([BEN, ANN]) == [ids[1], ids[0]]
    await vault.seal_payload(ids[:2], PAYLOAD)
    assert spy.calls == []
    assert await spy.count_subjects() == 2 and vault.statistics().subjects == 2


async def test_a_new_subject_is_durable_before_ensure_returns() -> None:
    """Ensure does not return until the put of the new key has completed."""
    spy = Spy()
    vault = await Vault.open(spy, Kek.generate(), wall=wall)
    spy.gate = trio.Event()
    done: list[str] = []

    async def ensure() -> None:
        done.extend(await vault.ensure([ANN]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ensure)
        await trio.testing.wait_all_tasks_blocked()
        assert done == [] and spy.calls[-1] == "put"
        spy.gate.set()
    assert done == [vault.subject_id(ANN)]
    assert list(await spy.inner.get(done)) == done


async def test_concurrent_ensure_of_one_new_identity_makes_one_key(
    store: KeyStore, tmp_path: Path
) -> None:
    """Many tasks ensuring the same new identity at once: one key, and every task uses it."""
    kek = Kek.generate()
    vault = await Vault.open(store, kek, wall=wall)
    sealed: list[dict[str, Any]] = []

    async def ensure_and_seal() -> None:
        (subject,) = await vault.ensure([ANN])
        sealed.append(await vault.seal_payload([subject], PAYLOAD))

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(ensure_and_seal)
    assert await store.count_subjects() == 1 and vault.statistics().subjects == 1
    fresh = await Vault.open(store, kek, wall=wall)  # reads the key store, not a cache
    assert [await fresh.open_payload(s) for s in sealed] == [PAYLOAD] * 8


@pytest.mark.parametrize("n", [0, 1, 3])
async def test_seal_then_open_round_trips(store: KeyStore, n: int) -> None:
    """With no subject the payload is left as is; with one or three it is sealed and opens."""
    vault = await Vault.open(store, Kek.generate(), wall=wall)
    subjects = await vault.ensure([ANN, BEN, CAT][:n])
    sealed = await vault.seal_payload(list(reversed(subjects)), PAYLOAD)
    if n == 0:
        assert sealed == PAYLOAD and not vault.is_sealed(sealed)
    else:
        assert vault.is_sealed(sealed) and sealed["sealed"] == 1
        assert sealed["subjects"] == sorted(subjects)
        assert "ann@example.com" not in json.dumps(sealed)
    assert await vault.open_payload(sealed) == PAYLOAD


async def test_destroying_any_one_of_three_subjects_erases_their_shared_payload(
    store: KeyStore,
) -> None:
    """A payload about three subjects raises Erased once one key is gone; the others still open."""
    vault = await Vault.open(store, Kek.generate(), wall=wall)
    ann, ben, cat = await vault.ensure([ANN, BEN, CAT])
    shared = await vault.seal_payload([ann, ben, cat], PAYLOAD)
    ann_only = await vault.seal_payload([ann], {"x": 1})
    assert await vault.destroy(ben) is True
    with pytest.raises(Erased) as caught:
        await vault.open_payload(shared)
    assert caught.value.subject == ben
    with pytest.raises(Erased):
        await vault.seal_payload([ann, ben], PAYLOAD)
    assert await vault.open_payload(ann_only) == {"x": 1}
    assert await vault.destroy(ben) is False
    assert vault.statistics().subjects == 2 and await vault.identity(ben) is None


async def test_a_key_read_just_before_a_destroy_is_not_kept_in_the_cache() -> None:
    """A read that began before a destroy may finish, but leaves no cached key behind it."""
    spy, kek = Spy(), Kek.generate()
    first = await Vault.open(spy, kek, wall=wall)
    (ann,) = await first.ensure([ANN])
    sealed = await first.seal_payload([ann], PAYLOAD)
    vault = await Vault.open(spy, kek, wall=wall)  # nothing cached yet
    gate = spy.read_gate = trio.Event()
    opened: list[dict[str, Any]] = []

    async def open_it() -> None:
        opened.append(await vault.open_payload(sealed))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(open_it)
        await trio.testing.wait_all_tasks_blocked()  # it has read the row, not yet returned
        spy.read_gate = None
        assert await vault.destroy(ann)
        gate.set()
    assert opened == [PAYLOAD]  # read before the destroy: it was still there
    with pytest.raises(Erased):
        await vault.seal_payload([ann], PAYLOAD)


async def test_a_destroyed_key_is_gone_for_a_vault_opened_later(store: KeyStore) -> None:
    """Erasure holds across a restart: a fresh vault cannot open it either."""
    kek = Kek.generate()
    vault = await Vault.open(store, kek, wall=wall)
    (ann,) = await vault.ensure([ANN])
    sealed = await vault.seal_payload([ann], PAYLOAD)
    await vault.destroy(ann)
    with pytest.raises(Erased):
        await (await Vault.open(store, kek, wall=wall)).open_payload(sealed)


async def test_tampered_or_reordered_payloads_are_unsealable(store: KeyStore) -> None:
    """A changed box, or subjects listed out of order, do not open."""
    vault = await Vault.open(store, Kek.generate(), wall=wall)
    subjects = await vault.ensure([ANN, BEN])
    sealed = await vault.seal_payload(subjects, PAYLOAD)
    box = bytearray(base64.b64decode(sealed["box"]))
    box[-1] ^= 1
    with pytest.raises(Unsealable):
        await vault.open_payload({**sealed, "box": base64.b64encode(box).decode()})
    with pytest.raises(Unsealable):
        await vault.open_payload({**sealed, "box": "not base64!"})
    with pytest.raises(Unsealable):
        await vault.open_payload({**sealed, "subjects": sealed["subjects"][::-1]})


def test_only_the_vaults_own_shape_counts_as_sealed() -> None:
    """A producer's payload that merely has a 'sealed' field is not mistaken for a sealed one."""
    sealed = {"sealed": 1, "subjects": ["s_a"], "box": "AAAA", "digest": "00"}
    assert Vault.is_sealed(sealed)
    assert not Vault.is_sealed({k: v for k, v in sealed.items() if k != "digest"})
    assert not Vault.is_sealed({**sealed, "extra": 1})
    assert not Vault.is_sealed({**sealed, "sealed": True})
    assert not Vault.is_sealed({"sealed": 1, "subjects": ["s_a"]})


async def test_identity_is_the_normalised_identifier_until_erased(store: KeyStore) -> None:
    """The identifier comes back (for export) until the key is destroyed; unknown is None."""
    vault = await Vault.open(store, Kek.generate(), wall=wall)
    ann, ben = await vault.ensure([ANN, BEN])
    assert await vault.identity(ann) == "ann@example.com"
    assert await vault.identity(ben) == BEN
    assert await vault.identity("s_" + "0" * 32) is None
    await vault.destroy(ann)
    assert await vault.identity(ann) is None


async def test_system_text_is_sealed_under_its_own_system_key(store: KeyStore) -> None:
    """A refresh token seals under 'sys:<name>', opens after a reopen, is erased with its key."""
    kek = Kek.generate()
    vault = await Vault.open(store, kek, wall=wall)
    sealed = await vault.seal_text("x-refresh", "token-abc-123")
    assert "token-abc-123" not in sealed
    assert await (await Vault.open(store, kek, wall=wall)).open_text("x-refresh", sealed) == (
        "token-abc-123"
    )
    await vault.seal_text("linkedin-refresh", "t")
    with pytest.raises(Unsealable):  # sealed for one name, it does not open as another's
        await vault.open_text("linkedin-refresh", sealed)
    assert vault.statistics().subjects == 0  # system rows are not data subjects
    assert await vault.destroy("sys:x-refresh")
    with pytest.raises(Erased):
        await vault.open_text("x-refresh", sealed)


async def test_the_pepper_can_be_neither_destroyed_nor_used_for_text(store: KeyStore) -> None:
    """Destroying the pepper would rename every subject: refused."""
    vault = await Vault.open(store, Kek.generate(), wall=wall)
    with pytest.raises(ValueError, match="pepper"):
        await vault.destroy("sys:pepper")
    with pytest.raises(ValueError):
        await vault.seal_text("pepper", "x")


async def test_a_payload_sealed_before_rotation_opens_after_it_with_only_the_new_kek(
    store: KeyStore,
) -> None:
    """After rotation every row is under the new KEK: the new one alone opens old payloads."""
    old, new = Kek.generate(), Kek.generate()
    vault = await Vault.open(store, old, wall=wall)
    subjects = await vault.ensure([ANN, BEN, CAT])
    before = await vault.seal_payload(subjects, PAYLOAD)
    state = await vault.rotate(new, batch=2)
    assert (state.current, state.pending, state.old_needed, state.running) == (
        new.id,
        0,
        False,
        False,
    )
    assert await store.counts() == {new.id: 4}  # three subjects and the pepper
    assert await vault.open_payload(before) == PAYLOAD
    reopened = await Vault.open(store, new, wall=wall)
    assert await reopened.open_payload(before) == PAYLOAD
    assert reopened.statistics().kek_id == new.id
    with pytest.raises(Unsealable) as caught:  # the old KEK alone no longer opens anything
        await Vault.open(store, old, wall=wall)
    assert new.id in str(caught.value) and old.key.hex() not in str(caught.value)


async def test_statistics_say_the_old_kek_is_needed_until_the_rewrap_is_done() -> None:
    """While rows remain under the old KEK the state says so and counts them down."""
    old, new = Kek.generate(), Kek.generate()
    spy = Spy()
    vault = await Vault.open(spy, old, wall=wall)
    await vault.ensure([f"guest{i}@example.com" for i in range(9)])
    assert vault.statistics().rotation == RotationState(old.id, 0, False, False)
    seen: list[tuple[int, bool, bool]] = []

    def note() -> None:
        state = vault.statistics().rotation
        seen.append((state.pending, state.old_needed, state.running))

    spy.before_replace = note
    await vault.rotate(new, batch=4)
    assert seen == [(10, True, True), (6, True, True), (2, True, True)]
    final = vault.statistics().rotation
    assert (final.pending, final.old_needed, final.running) == (0, False, False)


async def test_an_interrupted_rotation_resumes_with_the_retired_kek(store: KeyStore) -> None:
    """Reopened with the new KEK and the old one retired, old rows open and rotate resumes."""
    old, new = Kek.generate(), Kek.generate()
    vault = await Vault.open(store, old, wall=wall)
    subjects = await vault.ensure([ANN, BEN])
    before = await vault.seal_payload(subjects, PAYLOAD)
    resumed = await Vault.open(store, new, wall=wall, retired=[old])
    state = resumed.statistics().rotation
    assert (state.current, state.pending, state.old_needed) == (new.id, 3, True)
    assert await resumed.open_payload(before) == PAYLOAD
    (cat,) = await resumed.ensure([CAT])  # a new subject wraps under the current KEK at once
    assert (await store.get([cat]))[cat].kek_id == new.id
    assert (await resumed.rotate(new)).pending == 0
    assert await store.counts() == {new.id: 4}


async def test_rotation_while_subjects_keep_coming_loses_nothing(store: KeyStore) -> None:
    """Ensuring and sealing go on during a rotation; after it, all opens with the new KEK alone."""
    old, new = Kek.generate(), Kek.generate()
    vault = await Vault.open(store, old, wall=wall)
    sealed = [
        await vault.seal_payload(await vault.ensure([f"a{i}@x.org"]), {"i": i}) for i in range(30)
    ]
    rotated = trio.Event()

    async def keep_coming() -> None:
        i = 30
        while not rotated.is_set() or i < 60:
            ids = await vault.ensure([f"a{i}@x.org", f"a{i - 30}@x.org"])
            sealed.append(await vault.seal_payload(ids, {"i": i}))
            i += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_coming)
        await vault.rotate(new, batch=3)
        rotated.set()
    assert await store.counts() == {new.id: await store.count_subjects() + 1}
    reopened = await Vault.open(store, new, wall=wall)
    opened = [await reopened.open_payload(s) for s in sealed]
    assert opened == [{"i": i} for i in range(len(sealed))]


async def test_rotation_waits_for_a_key_being_put_under_the_old_kek() -> None:
    """A key wrapped under the old KEK just before the switch is rewrapped, not left behind."""
    old, new = Kek.generate(), Kek.generate()
    spy = Spy()
    vault = await Vault.open(spy, old, wall=wall)
    spy.gate = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(vault.ensure, [ANN])  # wraps under the old KEK, then waits to put
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(vault.rotate, new)
        await trio.testing.wait_all_tasks_blocked()
        assert vault.statistics().rotation.running  # waiting for that put
        spy.gate.set()
    assert await spy.counts() == {new.id: 2}
    assert not vault.statistics().rotation.old_needed


async def test_one_payload_sealed_twice_has_two_boxes_and_one_digest(store: KeyStore) -> None:
    """Idempotent submits compare sealed payloads by digest: equal for equal payloads only."""
    vault = await Vault.open(store, Kek.generate(), wall=wall)
    subjects = await vault.ensure([ANN])
    first = await vault.seal_payload(subjects, PAYLOAD)
    again = await vault.seal_payload(subjects, dict(reversed(list(PAYLOAD.items()))))
    other = await vault.seal_payload(subjects, {**PAYLOAD, "more": 1})
    assert first["box"] != again["box"]
    assert first["digest"] == again["digest"] != other["digest"]
    (ben,) = await vault.ensure([BEN])
    assert (await vault.seal_payload([ben], PAYLOAD))["digest"] != first["digest"]


async def test_forget_drops_only_the_named_cached_keys() -> None:
    """Forgotten keys are read from the store at their next use; the others are still cached.
    The count is of keys that were cached: unknown subjects and repeats add nothing."""
    spy = Spy()
    vault = await Vault.open(spy, Kek.generate(), wall=wall)
    ann, ben = await vault.ensure([ANN, BEN])
    assert vault.forget([ann, "s_" + "0" * 32, ann]) == 1
    assert vault.forget([]) == 0
    spy.calls.clear()
    await vault.seal_payload([ben], PAYLOAD)
    assert spy.calls == []
    await vault.seal_payload([ann], PAYLOAD)
    assert spy.calls == ["get"]


async def test_forget_all_drops_every_cached_key() -> None:
    """Every key cached (two subjects and the pepper's) goes; they open again from the store."""
    spy = Spy()
    vault = await Vault.open(spy, Kek.generate(), wall=wall)
    subjects = await vault.ensure([ANN, BEN])
    sealed = await vault.seal_payload(subjects, PAYLOAD)
    assert vault.forget_all() == 3
    assert vault.forget_all() == 0
    spy.calls.clear()
    assert await vault.open_payload(sealed) == PAYLOAD
    assert spy.calls == ["get"]


async def test_a_key_read_while_it_is_forgotten_is_not_cached() -> None:
    """A read under way when its subject is forgotten returns the key but leaves none cached."""
    spy, kek = Spy(), Kek.generate()
    (ann,) = await (await Vault.open(spy, kek, wall=wall)).ensure([ANN])
    vault = await Vault.open(spy, kek, wall=wall)  # nothing of ann's cached yet
    sealed = await vault.seal_payload([ann], PAYLOAD)
    vault.forget([ann])
    gate = spy.read_gate = trio.Event()
    opened: list[dict[str, Any]] = []

    async def open_it() -> None:
        opened.append(await vault.open_payload(sealed))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(open_it)
        await trio.testing.wait_all_tasks_blocked()  # it has read the row, not yet returned
        spy.read_gate = None
        assert vault.forget([ann]) == 0  # not cached yet: the epoch moves all the same
        gate.set()
    assert opened == [PAYLOAD]
    spy.calls.clear()
    assert await vault.open_payload(sealed) == PAYLOAD
    assert spy.calls == ["get"]  # read from the store again: the raced read cached nothing
