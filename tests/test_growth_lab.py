"""Experiments at work: created by phase, a unit's variant hashed as GrowthBook does and kept
sticky, its exposure kept when the message is delivered, a unit converting once, the readout."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from ringbearer._errors import ErrorCode, RequestError
from ringbearer.control import MessageIn
from ringbearer.growth._assignment import assign
from ringbearer.growth._lab import STOP_CHECK_SECONDS, Draft, Lab, LabMetrics
from ringbearer.growth._sealing import ClearSealer, VaultSealer
from ringbearer.privacy import Kek, MemoryKeyStore, Vault
from ringbearer.privacy._books import ErasedBook
from ringbearer.store import Exposure, MemoryStore, Settle, SettleKind, VariantCounts

T0 = 1_750_000_000.0
DAY = 86400.0
NAME = "subject-line"
WHERE = "messages[0]"
SPEC: dict[str, Any] = {
    "variants": [
        {"name": "control", "weight": 0.5},
        {"name": "warm", "weight": 0.5, "fields": {"subject": "You're invited"}},
    ]
}


@attrs.define
class Wall:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@attrs.define
class Rig:
    wall: Wall
    store: MemoryStore
    registry: CollectorRegistry
    lab: Lab

    def counted(self, family: str, variant: str, name: str = NAME) -> float | None:
        labels = {"experiment": name, "variant": variant}
        return self.registry.get_sample_value(f"ringbearer_experiment_{family}_total", labels)

    def restarted(self) -> Lab:
        """A lab over the same store (a daemon's restart)."""
        return Lab(self.store, self.lab.sealer, self.wall, LabMetrics.on(CollectorRegistry()))


def make_rig(sealer: Any = None) -> Rig:
    wall = Wall()
    store = MemoryStore(wall)
    registry = CollectorRegistry()
    lab = Lab(store, sealer or ClearSealer(), wall, LabMetrics.on(registry))
    return Rig(wall, store, registry, lab)


@pytest.fixture
def rig() -> Rig:
    return make_rig()


def spec(**changes: Any) -> dict[str, Any]:
    return {**SPEC, **changes}


def guest(variant: int, *, nth: int = 0, weights: tuple[float, ...] = (0.5, 0.5)) -> str:
    """The ``nth`` address (of guest0@example.com, guest1@...) GrowthBook puts in ``variant``."""
    found = [
        f"Guest{n}@Example.com"
        for n in range(100)
        if assign(NAME, f"guest{n}@example.com", weights) == variant
    ]
    return found[nth]


def mail(to: str, **changes: Any) -> MessageIn:
    return MessageIn("email", {"to": to, "text": "hi"}, **{"experiment": NAME, **changes})


def split(control: float, warm: float) -> dict[str, Any]:
    """The spec with another split, the variants otherwise as they were."""
    variants = [{**SPEC["variants"][0], "weight": control}, {**SPEC["variants"][1], "weight": warm}]
    return spec(variants=variants)


def delivered(message_id: int) -> Settle:
    return Settle(message_id, "email", SettleKind.DELIVERED, "resend", 1, T0)


async def sent(rig: Rig, to: str, message_id: int) -> Draft:
    """A message to ``to`` assigned and accepted as ``message_id``; its draft."""
    _, draft = await rig.lab.assign(WHERE, mail(to), "email")
    assert draft is not None
    await rig.lab.accepted([(draft, message_id)])
    return draft


@pytest.fixture
async def running(nursery: trio.Nursery, rig: Rig) -> AsyncIterator[Rig]:
    """The rig with its lab's exposure task started."""
    await nursery.start(rig.lab.run)
    yield rig


async def deliver(rig: Rig, *message_ids: int) -> None:
    rig.lab.settled([delivered(i) for i in message_ids], rig.wall())
    await trio.testing.wait_all_tasks_blocked()


# -- create, stop, phases --------------------------------------------------------------------


async def test_create_starts_phase_one_and_the_same_spec_again_changes_nothing(rig: Rig) -> None:
    """The first create keeps phase 1; the very same design is the running record, as it was."""
    first = await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    assert (first.name, first.phase, first.by, first.created_at) == (NAME, 1, "ops", T0)
    assert first.spec["variants"][1]["fields"] == {"subject": "You're invited"}
    rig.wall.now += 60
    again = await rig.lab.create(NAME, spec(seed=""), new_phase=False, by="someone else")
    assert again == first
    assert await rig.store.experiment(NAME) == first
    assert await rig.store.experiment(NAME, 2) is None
    assert rig.lab.running() == [first]


async def test_other_weights_for_a_running_experiment_are_refused_naming_weights(
    rig: Rig,
) -> None:
    """A new split would move units within the phase: refused, pointing at --new-phase."""
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    with pytest.raises(RequestError) as caught:
        await rig.lab.create(NAME, split(0.6, 0.4), new_phase=False, by="ops")
    assert caught.value.code is ErrorCode.BAD_ARGS
    assert caught.value.message.startswith(f"experiment {NAME}: weights differ: 0.5/0.5 -> 0.6/0.4")
    assert "weights cannot change" in caught.value.message
    assert caught.value.message.endswith("(--new-phase)")


async def test_a_bad_spec_is_refused_naming_the_field(rig: Rig) -> None:
    """A spec that cannot be read is BAD_ARGS, naming the experiment and the field."""
    with pytest.raises(RequestError, match=rf"experiment {NAME}: variants: missing") as caught:
        await rig.lab.create(NAME, {}, new_phase=False, by="ops")
    assert caught.value.code is ErrorCode.BAD_ARGS


async def test_a_new_phase_stops_the_running_one_and_starts_the_next(rig: Rig) -> None:
    """Phase 1 stopped at the wall's now with its reason; phase 2 runs with the new split,
    its assignments afresh: a unit in control in phase 1 goes where the new split puts it."""
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    moved = next(
        f"guest{n}@example.com"
        for n in range(100)
        if assign(NAME, f"guest{n}@example.com", [0.5, 0.5]) == 0
        and assign(NAME, f"guest{n}@example.com", [0.2, 0.8]) == 1
    )
    assert (await rig.lab.assign(WHERE, mail(moved), "email"))[1] == Draft(NAME, 1, moved, 0)
    rig.wall.now = T0 + DAY
    second = await rig.lab.create(NAME, split(0.2, 0.8), new_phase=True, by="ops")
    assert (second.phase, second.stopped_at) == (2, None)
    first = await rig.lab.record(NAME, 1)
    assert (first.stopped_at, first.stop_reason) == (T0 + DAY, "a new phase started")
    assert rig.lab.running() == [second]
    assert (await rig.lab.assign(WHERE, mail(moved), "email"))[1] == Draft(NAME, 2, moved, 1)


async def test_stop_ends_the_phase_and_unknown_names_are_not_found(rig: Rig) -> None:
    """Stopped with its reason; then neither a stop nor a message can name it."""
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    rig.wall.now = T0 + 5
    stopped = await rig.lab.stop(NAME, "enough")
    assert (stopped.phase, stopped.stopped_at, stopped.stop_reason) == (1, T0 + 5, "enough")
    assert rig.lab.running() == []
    with pytest.raises(RequestError, match=f"no running experiment '{NAME}'; running: none"):
        await rig.lab.stop(NAME, "again")
    with pytest.raises(RequestError, match="no experiment 'other'") as caught:
        await rig.lab.record("other")
    assert caught.value.code is ErrorCode.NOT_FOUND


# -- assignment at submit --------------------------------------------------------------------


async def test_a_message_gets_its_recipients_growthbook_variant(rig: Rig) -> None:
    """Control leaves the message as it is; ``warm`` adds its subject to the payload."""
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    for variant in (0, 1):
        to = guest(variant)
        assert assign(NAME, to.lower(), [0.5, 0.5], seed=None) == variant
        message, draft = await rig.lab.assign(WHERE, mail(to), "email")
        assert draft == Draft(NAME, 1, to.lower(), variant)
        if variant == 0:
            assert message == mail(to)
        else:
            assert message.payload == {"to": to, "text": "hi", "subject": "You're invited"}
    assert await rig.store.assignments(NAME, 1) == {
        guest(0).lower(): 0, guest(1).lower(): 1,
    }  # fmt: skip


async def test_the_seed_is_growthbooks_seed(rig: Rig) -> None:
    """With ``seed``, the hash is GrowthBook's with that seed, not with the name."""
    await rig.lab.create(NAME, spec(seed="s2"), new_phase=False, by="ops")
    for n in range(6):
        to = f"guest{n}@example.com"
        _, draft = await rig.lab.assign(WHERE, mail(to), "email")
        assert draft is not None
        assert draft.variant == assign(NAME, to, [0.5, 0.5], seed="s2")


async def test_units_are_kept_by_subject_id_with_a_vault() -> None:
    """The unit recorded is the recipient's ``s_`` id; the hash is of the address itself."""
    vault = await Vault.open(MemoryKeyStore(), Kek.generate(), wall=lambda: T0)
    rig = make_rig(VaultSealer(vault, ErasedBook()))
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    to = guest(1)
    _, draft = await rig.lab.assign(WHERE, mail(to), "email")
    assert draft == Draft(NAME, 1, vault.subject_id(to), 1)
    assert await rig.store.assignments(NAME, 1) == {vault.subject_id(to): 1}


async def test_the_recorded_variant_wins_over_the_hash(rig: Rig) -> None:
    """Sticky: a unit recorded in control stays there though it hashes to ``warm``."""
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    to = guest(1)
    await rig.store.assign_unit(NAME, 1, to.lower(), 0, at=T0 - 1)
    message, draft = await rig.lab.assign(WHERE, mail(to), "email")
    assert draft == Draft(NAME, 1, to.lower(), 0)
    assert message == mail(to)


async def test_a_user_unit_is_the_producers_and_must_be_given(rig: Rig) -> None:
    """unit = "user": the message's ``unit`` is hashed; without it the message is refused."""
    await rig.lab.create(NAME, spec(unit="user"), new_phase=False, by="ops")
    with pytest.raises(RequestError) as caught:
        await rig.lab.assign(WHERE, mail(guest(0)), "email")
    assert caught.value.code is ErrorCode.BAD_ARGS
    assert caught.value.message == f"{WHERE}.unit: experiment '{NAME}' is by user; give the unit"
    _, draft = await rig.lab.assign(WHERE, mail(guest(0), unit="user-42"), "email")
    hashed = assign(NAME, "user-42", [0.5, 0.5])
    assert hashed is not None
    assert draft == Draft(NAME, 1, "user-42", hashed)


async def test_an_unknown_experiment_is_not_found_naming_the_running_ones(rig: Rig) -> None:
    """NOT_FOUND at the message's experiment field, listing what runs, sorted."""
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    await rig.lab.create("another", SPEC, new_phase=False, by="ops")
    with pytest.raises(RequestError) as caught:
        await rig.lab.assign(WHERE, mail(guest(0), experiment="nope"), "email")
    assert caught.value.code is ErrorCode.NOT_FOUND
    assert caught.value.message == (
        f"{WHERE}.experiment: no running experiment 'nope'; running: another, {NAME}"
    )


async def test_a_message_outside_any_experiment_passes_and_a_lone_unit_is_refused(
    rig: Rig,
) -> None:
    """No experiment: the message as it is, no draft; a ``unit`` alone is a mistake."""
    plain = MessageIn("email", {"to": guest(0), "text": "hi"})
    assert await rig.lab.assign(WHERE, plain, "email") == (plain, None)
    with pytest.raises(RequestError, match=r"messages\[0\]\.unit: given without an experiment"):
        await rig.lab.assign(WHERE, attrs.evolve(plain, unit="user-42"), "email")


async def test_a_recipient_experiment_needs_a_recipient(rig: Rig) -> None:
    """A family with no addressee (analytics) cannot be assigned by recipient."""
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    event = MessageIn("mixpanel", {"event": "x"}, experiment=NAME)
    with pytest.raises(RequestError, match="is by recipient; the message names none"):
        await rig.lab.assign(WHERE, event, "analytics")


async def test_a_field_the_message_gives_itself_is_refused(rig: Rig) -> None:
    """``warm`` sets the subject; a message with its own subject would hide the variant."""
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    own = MessageIn("email", {"to": guest(1), "subject": "Mine"}, experiment=NAME)
    with pytest.raises(RequestError, match=r"messages\[0\]: payload\.subject: given by the"):
        await rig.lab.assign(WHERE, own, "email")


async def test_units_outside_the_coverage_are_sent_as_they_are(rig: Rig) -> None:
    """Coverage 0: nobody is in the experiment, nothing is recorded."""
    await rig.lab.create(NAME, spec(coverage=0), new_phase=False, by="ops")
    message = mail(guest(1))
    assert await rig.lab.assign(WHERE, message, "email") == (message, None)
    assert await rig.store.assignments(NAME, 1) == {}


# -- exposure on delivery --------------------------------------------------------------------


async def test_accepted_keeps_a_pending_exposure_once(rig: Rig) -> None:
    """Accepted twice (a repeat): one pending exposure, by message id."""
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    draft = await sent(rig, guest(1), 7)
    await rig.lab.accepted([(draft, 7)])
    assert await rig.store.pending_exposures() == [Exposure(7, NAME, 1, draft.unit, 1, None)]


async def test_a_delivery_exposes_the_unit_and_counts_it(
    running: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delivered: the exposure is marked at the wall's now, the counter goes up by one."""
    rig = running
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    draft = await sent(rig, guest(1), 7)
    marked: list[Exposure] = []
    mark = rig.store.mark_exposed

    async def noted(message_ids: Sequence[int], *, at: float) -> list[Exposure]:
        exposed = await mark(message_ids, at=at)
        marked.extend(exposed)
        return exposed

    monkeypatch.setattr(rig.store, "mark_exposed", noted)
    rig.wall.now = T0 + 30
    await deliver(rig, 7)
    assert marked == [Exposure(7, NAME, 1, draft.unit, 1, T0 + 30)]
    assert await rig.store.pending_exposures() == []
    assert await rig.store.exposed_units(NAME, 1) == {draft.unit: 1}
    assert rig.counted("exposures", "warm") == 1.0
    assert rig.counted("exposures", "control") is None


async def test_only_deliveries_of_pending_exposures_count(running: Rig) -> None:
    """A retry, or a delivery of a message in no experiment, exposes nothing."""
    rig = running
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    await sent(rig, guest(1), 7)
    retried = attrs.evolve(delivered(7), kind=SettleKind.RETRIED)
    rig.lab.settled([retried, delivered(8)], T0)
    await trio.testing.wait_all_tasks_blocked()
    assert [e.message_id for e in await rig.store.pending_exposures()] == [7]
    assert rig.counted("exposures", "warm") is None


async def test_a_unit_is_exposed_once_however_many_messages_it_gets(running: Rig) -> None:
    """Two messages to one unit and one to another: two units exposed."""
    rig = running
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    await sent(rig, guest(1), 7)
    await sent(rig, guest(1), 8)
    await sent(rig, guest(1, nth=1), 9)
    await deliver(rig, 7, 8)
    await deliver(rig, 9)
    assert rig.counted("exposures", "warm") == 2.0
    (counts,) = await rig.store.experiment_counts(NAME, 1)
    assert counts == VariantCounts(1, 2, 2, 0)


async def test_an_exposure_the_store_could_not_keep_is_tried_again(
    running: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The store fails once: logged, the message stays pending, the next delivery takes it."""
    rig = running
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    await sent(rig, guest(1), 7)
    await sent(rig, guest(0), 8)
    kept = rig.store.mark_exposed

    async def failing(message_ids: Any, *, at: float) -> list[Exposure]:
        raise OSError("disk full")

    monkeypatch.setattr(rig.store, "mark_exposed", failing)
    await deliver(rig, 7)
    assert "experiment exposures not kept" in caplog.text
    assert rig.counted("exposures", "warm") is None
    monkeypatch.setattr(rig.store, "mark_exposed", kept)
    await deliver(rig, 8)
    assert await rig.store.pending_exposures() == []
    assert (rig.counted("exposures", "warm"), rig.counted("exposures", "control")) == (1.0, 1.0)


async def test_pending_exposures_outlive_a_restart(nursery: trio.Nursery, rig: Rig) -> None:
    """Accepted before a restart, delivered after it: exposed by the new lab."""
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    draft = await sent(rig, guest(1), 7)
    lab = rig.restarted()
    await lab.load({})
    await nursery.start(lab.run)
    lab.settled([delivered(7)], T0)
    await trio.testing.wait_all_tasks_blocked()
    assert await rig.store.exposed_units(NAME, 1) == {draft.unit: 1}


# -- conversions -----------------------------------------------------------------------------


async def test_a_delivered_conversion_is_counted_at_exposure(running: Rig) -> None:
    """Conversion "delivered": the delivery that exposes the unit converts it."""
    rig = running
    await rig.lab.create(NAME, spec(conversion="delivered"), new_phase=False, by="ops")
    await sent(rig, guest(0), 7)
    await deliver(rig, 7)
    assert rig.counted("conversions", "control") == 1.0
    assert await rig.store.experiment_counts(NAME, 1) == [VariantCounts(0, 1, 1, 1)]


async def test_an_open_of_an_exposed_message_converts_its_unit_once(running: Rig) -> None:
    """Opened (the default conversion): counted once per unit, however many opens or
    messages; a click does not count for an experiment on opens."""
    rig = running
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    await sent(rig, guest(1), 7)
    await sent(rig, guest(1), 8)
    await deliver(rig, 7, 8)
    assert rig.counted("conversions", "warm") is None  # delivery is not an open
    await rig.lab.mail_events([(7, "clicked"), (99, "opened")])
    assert rig.counted("conversions", "warm") is None
    await rig.lab.mail_events([(7, "opened"), (7, "opened")])
    await rig.lab.mail_events([(8, "opened")])
    assert rig.counted("conversions", "warm") == 1.0
    (counts,) = await rig.store.experiment_counts(NAME, 1)
    assert counts == VariantCounts(1, 1, 1, 1)


async def test_an_open_before_delivery_is_marked_does_not_convert(running: Rig) -> None:
    """Only exposed units convert: an open of a message still pending counts nothing."""
    rig = running
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    await sent(rig, guest(1), 7)
    await rig.lab.mail_events([(7, "opened")])
    assert rig.counted("conversions", "warm") is None


async def test_an_open_after_a_restart_converts(nursery: trio.Nursery, rig: Rig) -> None:
    """Delivered before a restart, opened after it: the unit converts."""
    await nursery.start(rig.lab.run)
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    await sent(rig, guest(1), 7)
    await deliver(rig, 7)
    lab = rig.restarted()
    await lab.load({})
    await lab.mail_events([(7, "opened")])
    assert await rig.store.experiment_counts(NAME, 1) == [VariantCounts(1, 1, 1, 1)]


async def test_a_signup_of_an_exposed_unit_converts_it(running: Rig) -> None:
    """Conversion "signup": the growth event's unit (its subject id) converts; others not."""
    rig = running
    await rig.lab.create(NAME, spec(conversion="signup"), new_phase=False, by="ops")
    draft = await sent(rig, guest(1), 7)
    await rig.lab.growth_units("signup", [draft.unit])
    assert rig.counted("conversions", "warm") is None  # not exposed yet
    await deliver(rig, 7)
    await rig.lab.growth_units("invite_accepted", [draft.unit])
    await rig.lab.growth_units("signup", ["nobody@example.com"])
    assert rig.counted("conversions", "warm") is None
    await rig.lab.growth_units("signup", [draft.unit, draft.unit])
    assert rig.counted("conversions", "warm") == 1.0


async def test_an_accepted_invite_converts_its_invitee(running: Rig) -> None:
    """Conversion "invite_accepted": the exposed invitee's acceptance counts."""
    rig = running
    await rig.lab.create(NAME, spec(conversion="invite_accepted"), new_phase=False, by="ops")
    draft = await sent(rig, guest(0), 7)
    await deliver(rig, 7)
    await rig.lab.growth_units("invite_accepted", [draft.unit])
    await rig.lab.growth_units("invite_accepted", [])
    assert rig.counted("conversions", "control") == 1.0


async def test_a_stopped_experiment_converts_no_one(running: Rig) -> None:
    """After a stop, a growth event naming an exposed unit counts nothing."""
    rig = running
    await rig.lab.create(NAME, spec(conversion="signup"), new_phase=False, by="ops")
    draft = await sent(rig, guest(0), 7)
    await deliver(rig, 7)
    await rig.lab.stop(NAME, "done")
    await rig.lab.growth_units("signup", [draft.unit])
    assert rig.counted("conversions", "control") is None


# -- the readout and a preview ---------------------------------------------------------------


async def test_the_report_counts_units_and_reads_them_out(running: Rig) -> None:
    """Control: 3 assigned, 2 exposed, 1 converted; warm: 2 exposed, both converted.
    Rates 1/2 and 2/2, lift +100%, pooled z = 0.5 / sqrt(3/4 * 1/4 * (1/2 + 1/2))."""
    rig = running
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    c0, c1, c2 = (guest(0, nth=n) for n in range(3))
    w0, w1 = (guest(1, nth=n) for n in range(2))
    for message_id, to in enumerate([c0, c1, c2, w0, w1], start=1):
        await sent(rig, to, message_id)
    await deliver(rig, 1, 2, 4, 5)
    await rig.lab.mail_events([(1, "opened"), (4, "opened"), (5, "opened")])
    rig.wall.now = T0 + 2 * DAY
    report = await rig.lab.report(NAME)
    assert (report["name"], report["phase"], report["conversion"]) == (NAME, 1, "opened")
    assert (report["started_at"], report["stopped_at"]) == (T0, None)
    control, warm = report["variants"]
    assert [control[k] for k in ("name", "assigned", "exposures", "conversions", "rate")] == [
        "control", 3, 2, 1, 0.5,
    ]  # fmt: skip
    assert [warm[k] for k in ("name", "assigned", "exposures", "conversions", "rate")] == [
        "warm", 2, 2, 2, 1.0,
    ]  # fmt: skip
    assert control["lift"] is None and control["p_value"] is None
    assert warm["lift"] == pytest.approx(1.0)
    z = 0.5 / math.sqrt(0.75 * 0.25 * (1 / 2 + 1 / 2))
    assert warm["p_value"] == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert warm["p_value"] == pytest.approx(0.2482, abs=1e-4)
    assert report["srm"]["status"] == "waiting"  # under 8 units a variant
    assert report["decision"]["stop"] is False


async def test_the_report_of_an_earlier_phase(rig: Rig) -> None:
    """``phase`` reads a stopped phase; none reads the latest; an unknown name is named."""
    await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    await rig.lab.create(NAME, spec(conversion="clicked"), new_phase=True, by="ops")
    first = await rig.lab.report(NAME, 1)
    assert (first["phase"], first["stop_reason"], first["conversion"]) == (
        1, "a new phase started", "opened",
    )  # fmt: skip
    assert (await rig.lab.report(NAME))["conversion"] == "clicked"
    with pytest.raises(RequestError, match="no experiment 'nope'"):
        await rig.lab.report("nope")


async def test_a_preview_says_the_hash_and_the_recorded_variant(rig: Rig) -> None:
    """Before any message: the hash only; after a sticky assignment against it: both."""
    record = await rig.lab.create(NAME, SPEC, new_phase=False, by="ops")
    to = guest(1)
    found = await rig.lab.preview(NAME, to)
    assert (found[0], found[2], found[3]) == (record, 1, None)
    assert found[1].name == NAME
    await rig.store.assign_unit(NAME, 1, to.lower(), 0, at=T0)
    assert (await rig.lab.preview(NAME, to))[2:] == (1, 0)


# -- experiments from config -----------------------------------------------------------------


async def test_config_starts_an_experiment_once(rig: Rig) -> None:
    """Started by config; the same table at the next start is the same phase."""
    await rig.lab.load({NAME: SPEC})
    (record,) = rig.lab.running()
    assert (record.phase, record.by) == (1, "config")
    lab = rig.restarted()
    await lab.load({NAME: SPEC})
    assert lab.running() == [record]


async def test_config_does_not_restart_a_stopped_experiment(rig: Rig) -> None:
    """Stopped by an operator, the same config table does not start it again."""
    await rig.lab.load({NAME: SPEC})
    await rig.lab.stop(NAME, "done")
    lab = rig.restarted()
    await lab.load({NAME: SPEC})
    assert lab.running() == []


async def test_config_changing_a_running_design_is_refused(rig: Rig) -> None:
    """A running phase whose table changed: refused at start, saying what and how."""
    await rig.lab.load({NAME: SPEC})
    lab = rig.restarted()
    with pytest.raises(RequestError) as caught:
        await lab.load({NAME: spec(coverage=0.5)})
    assert caught.value.message.startswith(
        f"[growth.experiments.{NAME}]: coverage differs: 1 -> 0.5"
    )
    assert caught.value.message.endswith(f"(ringbearer experiment create {NAME} --new-phase)")


# -- the stop rule ---------------------------------------------------------------------------


async def test_auto_stop_stops_when_the_rule_says_so_and_only_then(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, rig: Rig
) -> None:
    """With ``auto_stop`` the lab judges the rule every minute: after max_days it stops the
    experiment, naming the rule; one without ``auto_stop`` runs on past the same rule."""
    stop = {"max_days": 2, "min_units_per_variant": 1}
    await rig.lab.create(NAME, spec(stop=stop, auto_stop=True), new_phase=False, by="ops")
    await rig.lab.create("manual", spec(stop=stop), new_phase=False, by="ops")
    await nursery.start(rig.lab.run)
    await trio.sleep(STOP_CHECK_SECONDS * 3)
    assert {r.name for r in rig.lab.running()} == {NAME, "manual"}  # a day in: go on
    rig.wall.now += 3 * DAY
    await trio.sleep(STOP_CHECK_SECONDS * 2)
    assert [r.name for r in rig.lab.running()] == ["manual"]
    stopped = await rig.store.experiment(NAME)
    assert stopped is not None and stopped.stopped_at == T0 + 3 * DAY
    assert stopped.stop_reason is not None and stopped.stop_reason.startswith("stop rule: ")
    shown = await rig.lab.report("manual")
    assert shown["decision"]["stop"] is True and shown["auto_stop"] is False
