"""Growth events in: people kept by subject id, a vendor's name sealed, counted by the model,
replayed at start to the same figures, erased subjects refused one by one, observers told."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import attrs
import pytest

from ringbearer._errors import ErrorCode
from ringbearer.growth._cohorts import By, CohortRow, Growth
from ringbearer.growth._events import (
    Channel,
    GrowthEvent,
    InviteAccepted,
    InviteSent,
    Role,
    Signup,
    VendorBooked,
)
from ringbearer.growth._recording import (
    ERASED_NAME,
    Observer,
    Recorded,
    Recorder,
    Refusal,
    stored_event,
)
from ringbearer.growth._sealing import ClearSealer, VaultSealer
from ringbearer.privacy import Kek, MemoryKeyStore, Vault
from ringbearer.privacy._books import ErasedBook
from ringbearer.store import MemoryStore

T0 = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC, 16:06:40 in London
DAY = 86400.0
LONDON = ZoneInfo("Europe/London")

ANN, BEA, LENS = "Ann@Example.com", "Bea@Example.com", "Lens@Studio.example"
LENS_NAME = "Lens Studio"

ANN_SIGNUP = Signup("c1", T0 - DAY, Role.COUPLE, ANN, None, dt.date(2025, 9, 20))
INVITE = InviteSent("i1", "c1", BEA, Channel.EMAIL, T0 - DAY + 3600)
ACCEPTED = InviteAccepted("i1", "u2", T0)
BEA_SIGNUP = Signup("u2", T0, Role.COUPLE, BEA)
BOOKING = VendorBooked("c1", LENS, LENS_NAME, "photographer", T0)
STORY: list[GrowthEvent] = [ANN_SIGNUP, INVITE, ACCEPTED, BEA_SIGNUP, BOOKING]


def wall() -> float:
    return T0


@attrs.define
class Rig:
    store: MemoryStore
    vault: Vault
    erased: ErasedBook
    sealer: VaultSealer
    recorder: Recorder

    def model(self) -> Growth:
        return self.recorder.model

    def restarted(self) -> Recorder:
        """A recorder over the same store and vault, with a fresh model (a daemon's start)."""
        return Recorder(self.store, self.sealer, Growth(LONDON))


@pytest.fixture
async def rig() -> Rig:
    store = MemoryStore(wall)
    vault = await Vault.open(MemoryKeyStore(), Kek.generate(), wall=wall)
    erased = ErasedBook()
    sealer = VaultSealer(vault, erased)
    return Rig(store, vault, erased, sealer, Recorder(store, sealer, Growth(LONDON)))


async def bodies(store: MemoryStore) -> list[dict[str, object]]:
    return [dict(row.body) for row in await store.growth_rows()]


# -- kept by subject id ----------------------------------------------------------------------


async def test_people_are_kept_by_subject_id_and_the_vendors_name_sealed(rig: Rig) -> None:
    """Each address becomes its ``s_`` id; the name is a sealed box; no clear value is kept."""
    recorded, refused = await rig.recorder.record(STORY)
    assert refused == []
    assert [one.id for one in recorded] == [1, 2, 3, 4, 5]
    ann, bea, lens = (rig.vault.subject_id(a) for a in (ANN, BEA, LENS))
    assert all(s.startswith("s_") and len(s) == 34 for s in (ann, bea, lens))
    kept = await bodies(rig.store)
    assert kept[0] == {
        "user": "c1", "role": "couple", "email": ann, "wedding_date": "2025-09-20",
    }  # fmt: skip
    assert kept[1] == {"invite": "i1", "inviter": "c1", "invitee": bea, "channel": "email"}
    assert kept[2] == {"invite": "i1", "user": "u2"}
    assert kept[3] == {"user": "u2", "role": "couple", "email": bea}
    sealed = kept[4].pop("vendor_name")
    assert kept[4] == {"couple": "c1", "vendor_email": lens, "vendor_type": "photographer"}
    assert isinstance(sealed, dict) and sealed["sealed"] == 1 and sealed["subjects"] == [lens]
    assert await rig.sealer.open(sealed) == LENS_NAME
    text = json.dumps(await bodies(rig.store))
    assert "@" not in text and LENS_NAME not in text and "Studio" not in text
    rows = await rig.store.growth_rows()
    assert [(r.kind, r.at) for r in rows] == [(e.KIND, e.at) for e in STORY]


async def test_a_signups_and_a_vendors_keys_are_made_and_an_invitees_is_not(rig: Rig) -> None:
    """The vault can name a sign-up and a vendor again (their address, normalised); an
    invitee who has not joined gets no key, so nothing can be mailed to them from it."""
    await rig.recorder.record([ANN_SIGNUP, INVITE, BOOKING])
    assert await rig.sealer.identity(rig.vault.subject_id(ANN)) == "ann@example.com"
    assert await rig.sealer.identity(rig.vault.subject_id(LENS)) == "lens@studio.example"
    assert await rig.sealer.identity(rig.vault.subject_id(BEA)) is None


async def test_the_model_counts_what_was_kept(rig: Rig) -> None:
    """Two June sign-ups, one invite accepted a day after the inviter joined: K = 1/2."""
    await rig.recorder.record(STORY)
    model = rig.model()
    assert model.report(By.SIGNUP_MONTH) == [
        CohortRow("2025-06", 2, 1, 1, 0.5, 1.0, 0.5, 1.0, True),
    ]
    assert model.report(By.WEDDING_MONTH) == [
        CohortRow("2025-09", 1, 1, 1, 1.0, 1.0, 1.0, 1.0, True),
        CohortRow(None, 1, 0, 0, 0.0, None, 0.0, None, True),
    ]
    lens = rig.vault.subject_id(LENS)
    assert model.vendor_name(lens) == LENS_NAME and model.couples_of(lens) == 1
    assert model.user_with_email(rig.vault.subject_id(BEA)) == "u2"
    assert model.invitee_of("i1") == rig.vault.subject_id(BEA)
    assert rig.recorder.kept == 5


# -- replay ----------------------------------------------------------------------------------


async def test_replay_rebuilds_the_same_figures(rig: Rig) -> None:
    """A fresh model fed from the store says what the recording model said, in every view."""
    await rig.recorder.record(STORY[:2])
    await rig.recorder.record(STORY[2:])
    again = rig.restarted()
    assert await again.replay() == 5
    assert again.kept == 5
    for by in By:
        assert again.model.report(by) == rig.model().report(by)
    assert again.model.unmatched() == rig.model().unmatched()
    lens = rig.vault.subject_id(LENS)
    assert again.model.vendor_name(lens) == LENS_NAME
    assert again.model.explain("c1") == rig.model().explain("c1")


async def test_replay_pages_through_the_store(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """With pages of two rows, five kept events are all read back, each once."""
    monkeypatch.setattr("ringbearer.growth._recording.REPLAY_BATCH", 2)
    await rig.recorder.record(STORY)
    again = rig.restarted()
    assert await again.replay() == 5
    assert again.model.report(By.SIGNUP_MONTH) == rig.model().report(By.SIGNUP_MONTH)


async def test_an_erased_vendors_name_replays_as_erased(rig: Rig) -> None:
    """Its key destroyed, the sealed name opens to nothing: the partners list says so."""
    await rig.recorder.record([ANN_SIGNUP, BOOKING])
    lens = rig.vault.subject_id(LENS)
    assert await rig.vault.destroy(lens)
    again = rig.restarted()
    assert await again.replay() == 2
    assert again.model.vendor_name(lens) == ERASED_NAME == "(erased)"


async def test_stored_event_reads_each_kind_back() -> None:
    """What a body holds becomes the event again; an unknown kind is named."""
    body = {"user": "c1", "role": "couple", "email": "s_x", "wedding_date": "2025-09-20"}
    assert stored_event("signup", T0, body) == Signup(
        "c1", T0, Role.COUPLE, "s_x", None, dt.date(2025, 9, 20)
    )
    invite = {"invite": "i1", "inviter": "c1", "invitee": "s_y", "channel": "sms"}
    assert stored_event("invite_sent", T0, invite) == InviteSent("i1", "c1", "s_y", Channel.SMS, T0)
    assert stored_event("invite_accepted", T0, {"invite": "i1", "user": "u2"}) == ACCEPTED
    with pytest.raises(ValueError, match="unknown kind 'party'"):
        stored_event("party", T0, {})


# -- erased subjects -------------------------------------------------------------------------


async def test_an_event_naming_an_erased_subject_is_refused_alone(rig: Rig) -> None:
    """An invite to an erased invitee: refused as ``erased`` by its index; the rest kept."""
    rig.erased.add(rig.vault.subject_id("bea@example.com"))
    recorded, refused = await rig.recorder.record([ANN_SIGNUP, INVITE, BOOKING])
    assert refused == [Refusal(1, ErrorCode.ERASED, "events[1].invitee: names an erased subject")]
    assert [(one.id, one.event.KIND) for one in recorded] == [(1, "signup"), (2, "vendor_booked")]
    assert [row.kind for row in await rig.store.growth_rows()] == ["signup", "vendor_booked"]
    assert rig.recorder.kept == 2
    assert rig.model().invitee_of("i1") is None


async def test_a_batch_of_only_erased_subjects_keeps_nothing_and_tells_no_one(rig: Rig) -> None:
    """Nothing appended, no observer called; each refusal names the field, not the value."""
    told: list[Sequence[Recorded]] = []

    async def observer(batch: Sequence[Recorded]) -> None:
        told.append(batch)

    rig.recorder.observers.append(observer)
    rig.erased.add(rig.vault.subject_id(LENS))
    recorded, refused = await rig.recorder.record([BOOKING, BOOKING])
    assert recorded == [] and told == []
    assert [(r.index, r.code) for r in refused] == [(0, ErrorCode.ERASED), (1, ErrorCode.ERASED)]
    assert refused[0].reason == "events[0].vendor_email: names an erased subject"
    assert all("@" not in r.reason and "Lens" not in r.reason for r in refused)
    assert await rig.store.growth_count() == 0


# -- observers -------------------------------------------------------------------------------


async def test_observers_get_the_events_by_subject_id_and_the_clear_values(rig: Rig) -> None:
    """Each observer, in order, gets the batch: the event as counted, its values as given."""
    told: list[tuple[str, list[Recorded]]] = []

    def watcher(name: str) -> Observer:
        async def observe(batch: Sequence[Recorded]) -> None:
            told.append((name, list(batch)))

        return observe

    rig.recorder.observers.extend([watcher("first"), watcher("second")])
    recorded, _ = await rig.recorder.record([INVITE, BOOKING])
    assert [name for name, _ in told] == ["first", "second"]
    assert told[0][1] == told[1][1] == recorded
    invite, booking = recorded
    assert invite.event == attrs.evolve(INVITE, invitee=rig.vault.subject_id(BEA))
    assert invite.clear == {"invitee": BEA}
    assert booking.event == attrs.evolve(BOOKING, vendor_email=rig.vault.subject_id(LENS))
    assert booking.clear == {"vendor_email": LENS, "vendor_name": LENS_NAME}
    assert "Lens" not in repr(booking) and "@" not in repr(booking)


async def test_events_naming_no_one_are_passed_as_they_are(rig: Rig) -> None:
    """An acceptance and a sign-up without an address carry no clear values."""
    recorded, _ = await rig.recorder.record([ACCEPTED, Signup("u9", T0, Role.VENDOR)])
    assert [one.event for one in recorded] == [ACCEPTED, Signup("u9", T0, Role.VENDOR)]
    assert [one.clear for one in recorded] == [{}, {}]


# -- without a vault -------------------------------------------------------------------------


async def test_without_a_vault_people_are_their_normalised_identity() -> None:
    """Addresses kept lower-cased and trimmed; the vendor's name as given; replay agrees."""
    store = MemoryStore(wall)
    recorder = Recorder(store, ClearSealer(), Growth(LONDON))
    spaced = attrs.evolve(BOOKING, vendor_email=" LENS@Studio.example ")
    recorded, refused = await recorder.record([ANN_SIGNUP, INVITE, spaced])
    assert refused == []
    kept = await bodies(store)
    assert (kept[0]["email"], kept[1]["invitee"]) == ("ann@example.com", "bea@example.com")
    assert (kept[2]["vendor_email"], kept[2]["vendor_name"]) == ("lens@studio.example", LENS_NAME)
    assert recorded[2].clear == {"vendor_email": " LENS@Studio.example ", "vendor_name": LENS_NAME}
    again = Recorder(store, ClearSealer(), Growth(LONDON))
    assert await again.replay() == 3
    assert again.model.vendor_name("lens@studio.example") == LENS_NAME
    assert again.model.report(By.ROLE) == recorder.model.report(By.ROLE)


async def test_the_clear_sealer_keeps_values_as_given() -> None:
    """Nothing is ever erased, a value seals to itself, a subject is its own identity."""
    sealer = ClearSealer()
    assert sealer.name(" Ann@Example.COM ") == "ann@example.com"
    assert sealer.name("+44 7700 900123") == "+44 7700 900123"
    assert sealer.erased("ann@example.com") is False
    assert await sealer.seal("ann@example.com", "Ann") == "Ann"
    assert await sealer.open("Ann") == "Ann"
    assert await sealer.open({"sealed": 1}) is None
    assert await sealer.identity("ann@example.com") == "ann@example.com"


async def test_the_vault_sealer_names_a_subject_id_as_itself(rig: Rig) -> None:
    """An ``s_`` id is not hashed again; an erased subject is one in the erased book."""
    ann = rig.sealer.name(ANN)
    assert ann == rig.vault.subject_id("ann@example.com")
    assert rig.sealer.name(ann) == ann
    assert rig.sealer.erased(ann) is False
    rig.erased.add(ann)
    assert rig.sealer.erased(ann) is True


# -- read back in the background -------------------------------------------------------------


async def test_events_recorded_while_the_kept_ones_are_read_back_count_once(rig: Rig) -> None:
    """The replay runs after the daemon is ready: an event recorded meanwhile is counted
    at once and skipped when the replay reaches its row; the figures end as if in order."""
    await rig.recorder.record(STORY[:3])
    later = rig.restarted()
    assert not later.ready.is_set()
    await later.record(STORY[3:])  # before the replay: counted live
    assert later.kept == 2
    assert await later.replay() == 3
    assert later.ready.is_set() and (later.kept, later.read, later.total) == (5, 3, 5)
    fresh = rig.restarted()  # all five kept: read back in order
    assert await fresh.replay() == 5
    for by in By:
        assert later.model.report(by) == fresh.model.report(by)
    assert later.model.report(By.SIGNUP_MONTH)[0].k == 0.5
