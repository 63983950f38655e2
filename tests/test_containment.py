"""Containment: what one message makes its lane raise ends that message, and nothing else.

The real actors, dispatchers and supervisor run on fake adapters (tests/harness.py)
whose steps raise the exceptions the real libraries raise. Hostile messages are
handed to the store directly: the control protocol's checks at the edge are
bypassed on purpose, to show that the core survives bad data that gets past them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from ringbearer._actor import QUARANTINE_AFTER, ActorState
from ringbearer._boundary import STAGE_NAMES, LaneSlot, Stage, deliver_within, stage_of
from ringbearer._delivery import Delivered, Envelope, Outcome, Permanent, Priority
from ringbearer.integrations import FakeAdapter, _base, _smtp
from ringbearer.integrations.email import EmailPayload
from ringbearer.store import MemoryStore, MessageStatus, NewMessage

from .harness import FAKE_CONFIG, Core, running_core

Behaviour = Callable[[Envelope], Awaitable[Outcome]]
BATCHING = FAKE_CONFIG.replace(  # one lane: the batches are as submitted
    '[integrations.alpha]\nkind = "fake"',
    '[integrations.alpha]\nkind = "fake"\nlanes = 1\nbatch_size = 10\nbatch_wait_seconds = 0.5',
)
EMAIL = {"from": "studio@example.com", "to": ["ann@example.com"], "subject": "Hi", "text": "Hi"}


# --- fake adapter steps, named as the seam names them --------------------------------------


def build(envelope: Envelope) -> httpx.Request:
    """As an HTTP provider builds its request: real httpx, from the payload and the key."""
    return httpx.Request(
        "POST",
        "http://127.0.0.1/v1/send",
        headers={"Idempotency-Key": envelope.idempotency_key},
        json=envelope.payload,
    )


def classify(envelope: Envelope, answer: dict[str, Any]) -> Outcome:
    """As a provider reads its answer: the id is read straight from it."""
    return Delivered(provider_id=answer["id"])


async def http_like(envelope: Envelope) -> Outcome:
    """Build a real request, then read an answer that lacks an id when the payload asks so."""
    build(envelope)
    answer = {} if envelope.payload.get("answer") == "no id" else {"id": f"p-{envelope.id}"}
    return classify(envelope, answer)


def behave(behaviour: Behaviour, name: str = "alpha") -> Callable[[dict[str, FakeAdapter]], None]:
    def setup(adapters: dict[str, FakeAdapter]) -> None:
        adapters[name].behaviour = behaviour

    return setup


async def submit_direct(core: Core, messages: list[NewMessage]) -> list[int]:
    """Straight into the store (the edge's checks bypassed); the dispatchers hear of it."""
    return [a.id for a in await core.store.submit(messages)]


def innocents(n: int, target: str = "alpha") -> list[NewMessage]:
    return [NewMessage(target, {"n": i}) for i in range(n)]


def assert_delivered(core: Core, ids: list[int]) -> None:
    assert [core.store.rows[i].status for i in ids] == [MessageStatus.DELIVERED] * len(ids)


def reason_of(core: Core, message_id: int) -> str:
    row = core.store.rows[message_id]
    assert row.status is MessageStatus.DEAD, row
    assert row.last_error
    return row.last_error


async def never_failed(core: Core) -> None:
    """Every actor is running (once a restart's backoff is over) and none ever failed."""
    actors = core.daemon.actors.values()
    with trio.fail_after(60):
        # Polling in virtual time: a restart's end has no event of its own.
        while any(a.state is ActorState.RESTARTING for a in actors):  # noqa: ASYNC110
            await trio.sleep(0.5)
    assert all(a.state is ActorState.RUNNING for a in actors)
    assert not any(e.kind == "actor_failed" for e in core.store.event_log)


# --- symptom 2: a value the wire cannot carry ------------------------------------------------


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, 10**5000], ids=["nan", "inf", "-inf", "5000-digits"]
)
async def test_a_value_the_wire_cannot_carry_dead_letters_its_message_only(
    tmp_path: Path, autojump_clock: object, value: object
) -> None:
    """NaN, infinity or a 5,000-digit integer: its message is a dead letter; 30 innocents go."""
    async with running_core(tmp_path, setup=behave(http_like)) as core:
        bad, *rest = await submit_direct(
            core, [NewMessage("alpha", {"amount": value}), *innocents(30)]
        )
        await core.daemon.wait_idle(60)
        assert reason_of(core, bad).startswith("could not build the request: ValueError: ")
        assert "may have taken" not in reason_of(core, bad)  # nothing was sent
        assert_delivered(core, rest)
        await never_failed(core)
        assert core.daemon.actors["alpha"].restarts == 0


async def test_a_payload_nested_too_deep_to_encode_is_its_own_dead_letter(
    tmp_path: Path, autojump_clock: object
) -> None:
    """A payload json cannot encode for depth (RecursionError) ends as its message's dead letter."""
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    async with running_core(tmp_path, setup=behave(http_like)) as core:
        bad, good = await submit_direct(core, [NewMessage("alpha", {"d": deep}), *innocents(1)])
        await core.daemon.wait_idle(60)
        assert "RecursionError" in reason_of(core, bad)
        assert_delivered(core, [good])
        await never_failed(core)


# --- symptoms 3 and 4: headers a library refuses ----------------------------------------------


@pytest.mark.parametrize("key", ["clé-1", "k\u2028ey", "\U0001f48d"])
async def test_a_key_no_header_can_carry_dead_letters_its_message_only(
    tmp_path: Path, autojump_clock: object, key: str
) -> None:
    """A non-ASCII idempotency key fails building the header: a dead letter naming the error."""
    async with running_core(tmp_path, setup=behave(http_like)) as core:
        bad, *rest = await submit_direct(
            core, [NewMessage("alpha", {"n": -1}, idempotency_key=key), *innocents(30)]
        )
        await core.daemon.wait_idle(60)
        assert reason_of(core, bad).startswith("could not build the request: UnicodeEncodeError")
        assert_delivered(core, rest)
        await never_failed(core)


async def smtp_compose(envelope: Envelope) -> Outcome:
    """The SMTP adapter's own message building, in-process, past the payload's own check."""
    checked = EmailPayload.parse({**envelope.payload, "subject": "checked"})
    mail = attrs.evolve(checked, subject=envelope.payload["subject"])
    composed = _smtp.compose(mail, envelope)
    return Delivered(provider_id=composed.message_id)


async def test_a_payload_a_lane_refuses_by_raising_is_an_invalid_payload_dead_letter(
    tmp_path: Path, autojump_clock: object
) -> None:
    """InvalidPayload raised out of a lane (not turned into Permanent) is contained as such."""

    async def parse_only(envelope: Envelope) -> Outcome:
        EmailPayload.parse(envelope.payload)
        return Delivered()

    async with running_core(tmp_path, setup=behave(parse_only)) as core:
        bad, good = await submit_direct(
            core,
            [NewMessage("alpha", {**EMAIL, "subject": "a\u2028b"}), NewMessage("alpha", EMAIL)],
        )
        await core.daemon.wait_idle(60)
        assert reason_of(core, bad).startswith("invalid payload: 'subject' must not contain")
        assert_delivered(core, [good])
        assert core.daemon.actors["alpha"].restarts == 0


@pytest.mark.parametrize(
    ("subject", "key"),
    [
        ("Timeline\u2028update", None),
        ("Timeline\x85update", None),
        ("Timeline\u2029update", None),
        ("Hi", "key\r\nBcc: everyone@example.com"),
    ],
)
async def test_a_line_break_in_an_smtp_header_dead_letters_its_message_only(
    tmp_path: Path, autojump_clock: object, subject: str, key: str | None
) -> None:
    """U+2028, U+0085 or CR/LF where a header goes: the SMTP build refuses, one dead letter."""
    hostile = NewMessage("alpha", {**EMAIL, "subject": subject}, idempotency_key=key)
    async with running_core(tmp_path, setup=behave(smtp_compose)) as core:
        bad, *rest = await submit_direct(
            core, [hostile, *[NewMessage("alpha", EMAIL) for _ in range(5)]]
        )
        await core.daemon.wait_idle(60)
        reason = reason_of(core, bad)
        assert reason.startswith("could not build the request: ValueError: Header values")
        assert_delivered(core, rest)
        await never_failed(core)


# --- an answer the adapter cannot read ---------------------------------------------------------


async def test_an_unreadable_answer_is_a_dead_letter_that_says_it_may_have_been_taken(
    tmp_path: Path, autojump_clock: object
) -> None:
    """A KeyError reading the answer: a dead letter warning that a replay may send it twice."""
    async with running_core(tmp_path, setup=behave(http_like)) as core:
        opened = core.adapters["alpha"].lanes_opened
        bad, *rest = await submit_direct(
            core, [NewMessage("alpha", {"answer": "no id"}), *innocents(10)]
        )
        await core.daemon.wait_idle(60)
        reason = reason_of(core, bad)
        assert reason.startswith("the provider's answer could not be read: KeyError: 'id'")
        assert reason.endswith("the provider may have taken it, so a replay may send it twice")
        assert_delivered(core, rest)
        await never_failed(core)
        # The lane may have been left mid-exchange: the next message got a fresh one.
        assert core.adapters["alpha"].lanes_opened == opened + 1


@pytest.mark.parametrize(
    "error",
    [
        httpx.LocalProtocolError("Illegal header value b'a\\r\\nb'"),
        httpx.InvalidURL("Invalid non-printable ASCII character in URL"),
        TypeError("Object of type bytes is not JSON serializable"),
        OverflowError("int too large to convert to float"),
        IndexError("list index out of range"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_each_kind_of_data_error_is_its_messages_outcome(
    tmp_path: Path, autojump_clock: object, error: Exception
) -> None:
    """Every exception bad data makes a library raise is contained; the actor never restarts."""

    async def send(envelope: Envelope) -> Outcome:
        if envelope.payload.get("bad"):
            raise error
        return Delivered()

    async with running_core(tmp_path, setup=behave(send)) as core:
        bad, *rest = await submit_direct(core, [NewMessage("alpha", {"bad": 1}), *innocents(5)])
        await core.daemon.wait_idle(60)
        reason = reason_of(core, bad)
        assert reason.startswith(f"could not send the request: {type(error).__name__}: ")
        assert "may have taken it" in reason
        assert_delivered(core, rest)
        assert core.daemon.actors["alpha"].restarts == 0


# --- batches ---------------------------------------------------------------------------------


async def test_a_batch_that_cannot_be_built_is_sent_one_by_one(
    tmp_path: Path, autojump_clock: object
) -> None:
    """One NaN spoils building the batch; nothing was sent, so each goes alone: 1 dead, 9 sent."""

    async def by_batch(envelope: Envelope) -> Outcome:
        return await http_like(envelope)

    async with running_core(tmp_path, BATCHING, setup=behave(by_batch)) as core:
        ids = await submit_direct(
            core, [*innocents(4), NewMessage("alpha", {"x": math.nan}), *innocents(5)]
        )
        await core.daemon.wait_idle(60)
        bad = ids[4]
        assert reason_of(core, bad).startswith("could not build the request: ValueError")
        assert_delivered(core, [i for i in ids if i != bad])
        assert core.adapters["alpha"].batches == [ids]  # tried whole first (up to the NaN)
        calls = [envelope.id for envelope in core.adapters["alpha"].calls]
        assert calls == ids[:5] + ids  # then each alone
        await never_failed(core)


async def test_an_unreadable_batch_answer_is_the_outcome_of_each_message_it_carried(
    tmp_path: Path, autojump_clock: object
) -> None:
    """After sending, a batch is not split (it may have been taken): each gets the outcome."""

    async def by_batch(envelope: Envelope) -> Outcome:
        if envelope.payload.get("answer") == "no id":
            classify(envelope, {})
        return Delivered()

    async with running_core(tmp_path, BATCHING, setup=behave(by_batch)) as core:
        ids = await submit_direct(core, [NewMessage("alpha", {"answer": "no id"}), *innocents(3)])
        await core.daemon.wait_idle(60)
        assert len(core.adapters["alpha"].batches) == 1
        for i in ids:
            assert "may have taken it" in reason_of(core, i)


# --- quarantine: a message that crashes its actor ----------------------------------------------


async def poisoned(envelope: Envelope) -> Outcome:
    """A bug one payload triggers: an exception no boundary may take for bad data."""
    if envelope.payload.get("poison"):
        raise RuntimeError("adapter bug on this payload")
    return Delivered(provider_id=f"p-{envelope.id}")


async def test_a_message_that_crashes_its_actor_twice_is_quarantined_before_it_fails(
    tmp_path: Path, autojump_clock: object
) -> None:
    """The poisoned message ends a dead letter naming the crash; innocents go; alpha runs."""
    async with running_core(tmp_path, setup=behave(poisoned)) as core:
        poison, *rest = await submit_direct(
            core, [NewMessage("alpha", {"poison": True}), *innocents(20)]
        )
        await core.daemon.wait_idle(120)
        reason = reason_of(core, poison)
        assert reason.startswith(f"quarantined: the actor crashed {QUARANTINE_AFTER} times")
        assert "RuntimeError('adapter bug on this payload')" in reason
        assert_delivered(core, rest)
        await never_failed(core)  # the last crash's backoff may still be running
        assert core.daemon.actors["alpha"].restarts == QUARANTINE_AFTER
        assert core.daemon.status()["integrations"][0]["state"] == "running"
        crashes = [e for e in core.store.event_log if e.kind == "actor_crashed"]
        assert crashes[-1].detail is not None
        assert f"dead-lettered message(s) {poison}" in crashes[-1].detail["detail"]
        await never_failed(core)


async def test_a_crash_in_a_batch_is_pinned_on_its_message_alone(
    tmp_path: Path, autojump_clock: object
) -> None:
    """After a crash, its batch's messages go alone: only the poisoned one is quarantined."""
    async with running_core(tmp_path, BATCHING, setup=behave(poisoned)) as core:
        ids = await submit_direct(
            core, [*innocents(3), NewMessage("alpha", {"poison": True}), *innocents(3)]
        )
        await core.daemon.wait_idle(120)
        poison = ids[3]
        assert reason_of(core, poison).startswith("quarantined")
        assert_delivered(core, [i for i in ids if i != poison])
        await never_failed(core)


async def test_a_bug_on_every_message_still_marks_the_actor_failed(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Quarantine does not hide a broken adapter: crashes on every message still trip the limit."""

    async def broken(envelope: Envelope) -> Outcome:
        raise RuntimeError("adapter bug")

    async with running_core(tmp_path, setup=behave(broken)) as core:
        ids = await submit_direct(core, innocents(8))
        with trio.fail_after(300):
            await core.store.wait_for_event("actor_failed")
        assert core.daemon.actors["alpha"].state is ActorState.FAILED
        statuses = [core.store.rows[i].status for i in ids]
        # Most wait for the fix, queued (its mailbox too: nothing is left in flight).
        assert set(statuses) <= {MessageStatus.QUEUED, MessageStatus.DEAD}
        assert statuses.count(MessageStatus.DEAD) <= 2


async def test_a_failed_members_mailbox_goes_to_the_next_member(
    tmp_path: Path, autojump_clock: object
) -> None:
    """When alpha is given up on, what waited in its mailbox is sent by beta, unattempted."""

    async def broken(envelope: Envelope) -> Outcome:
        raise RuntimeError("adapter bug")

    async with running_core(tmp_path, setup=behave(broken)) as core:
        ids = await submit_direct(core, innocents(8, target="trio"))
        with trio.fail_after(300):
            await core.store.wait_for_event("actor_failed")
        await core.daemon.wait_idle(300)
        rows = [core.store.rows[i] for i in ids]
        assert {r.status for r in rows} <= {MessageStatus.DELIVERED, MessageStatus.DEAD}
        assert sum(r.status is MessageStatus.DELIVERED for r in rows) >= 6
        assert {r.integration for r in rows if r.status is MessageStatus.DELIVERED} == {"beta"}


# --- symptom 1, the answer side: a provider's id or error text no store can hold --------------


async def test_an_unstorable_provider_answer_is_kept_readable_and_not_resent(
    tmp_path: Path, autojump_clock: object
) -> None:
    """Delivered('\\ud800') and Permanent('\\ud800'): stored escaped; a restart sends neither."""

    async def answers(envelope: Envelope) -> Outcome:
        match envelope.payload.get("answer"):
            case "id":
                return Delivered(provider_id="re_\ud800\x00")
            case "error":
                return Permanent("HTTP 422: bad address \ud800" + "!" * 5000, status=422)
        return Delivered()

    store = MemoryStore(lambda: 0.0)
    async with running_core(tmp_path, setup=behave(answers), store=store) as core:
        odd_id, odd_error, innocent = await submit_direct(
            core,
            [
                NewMessage("alpha", {"answer": "id"}),
                NewMessage("alpha", {"answer": "error"}),
                *innocents(1),
            ],
        )
        await core.daemon.wait_idle(60)
        assert store.rows[odd_id].provider_id == "re_\\ud800\\x00"
        assert reason_of(core, odd_error).startswith("HTTP 422: bad address \\ud800!!!")
        assert len(reason_of(core, odd_error)) <= 2000
        assert store.rows[innocent].status is MessageStatus.DELIVERED
        json.dumps(core.daemon.status(), allow_nan=False).encode("utf-8")  # status still reads
    async with running_core(tmp_path, setup=behave(answers), store=store) as again:
        await again.store.recover_inflight()
        await again.daemon.wait_idle(60)
        assert again.adapters["alpha"].calls == []  # nothing sent again


# --- the boundary itself -------------------------------------------------------------------------


def test_the_stage_names_are_the_seams_own_steps() -> None:
    """Each function name the stages are read from is a step of the adapter seam."""
    steps = {
        "build": _base.HttpProvider.build,
        "classify": _base.HttpProvider.classify,
        "next_call": _base.StepProvider.next_call,
        "after_call": _base.StepProvider.after_call,
        "build_batch": _base.BatchProvider.build_batch,
        "classify_batch": _base.BatchProvider.classify_batch,
        "request": _base.HttpCall.request,
        "send": _base.Connection.send,
        "compose": _smtp.compose,
        "_send": _smtp.SmtpLane._send,
    }
    assert set(steps) == set(STAGE_NAMES)
    assert all(fn.__name__ == name for name, fn in steps.items())


async def test_cancellation_passes_through_the_boundary() -> None:
    """trio.Cancelled is never taken for a message's outcome."""

    class Hanging:
        async def deliver(self, envelope: Envelope) -> Outcome:
            await trio.sleep_forever()
            raise AssertionError("unreachable")

    envelope = Envelope(1, "alpha", "alpha", Priority.NORMAL, {}, "k", 0, 0.0)
    with trio.move_on_after(1) as scope:
        await deliver_within(LaneSlot(Hanging()), [envelope], batching=False)
    assert scope.cancelled_caught


def test_stage_of_a_build_error_is_build() -> None:
    """An exception raised under a step named ``build`` is read as the build stage."""
    envelope = Envelope(1, "a", "a", Priority.NORMAL, {"x": math.nan}, "k", 0, 0.0)
    with pytest.raises(ValueError) as raised:
        build(envelope)
    assert stage_of(raised.value) is Stage.BUILD
