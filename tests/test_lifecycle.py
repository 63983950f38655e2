"""The pure rules that turn an attempt's outcome into a message's next state."""

from __future__ import annotations

import random
from typing import Any

import attrs

from ringbearer._delivery import Delivered, Envelope, Permanent, Priority, Retry, Taken
from ringbearer._lifecycle import Rules, decide, returned
from ringbearer.resilience import RetryPolicy, RetrySettings
from ringbearer.store import SettleKind

NOW = 1_800_000_000.0
RETRY = RetryPolicy(
    RetrySettings(initial_seconds=1, max_seconds=60, max_attempts=4, max_age_seconds=3600),
    random.Random(1),
)


def env(**changes: Any) -> Envelope:
    envelope = Envelope(
        id=1,
        target="email",
        integration="resend",
        priority=Priority.NORMAL,
        payload={},
        idempotency_key="k",
        attempts=0,
        created_at=NOW - 10,
    )
    return attrs.evolve(envelope, **changes)


GROUP = Rules(route_len=3, retry=RETRY, failover_after=1)
ALONE = Rules(route_len=1, retry=RETRY, failover_after=1)


def test_delivered_and_permanent_end_the_message() -> None:
    """Delivered records the provider's id; a permanent failure is dead at once, not failed over."""
    done = decide(env(), Delivered("re_1"), GROUP, now=NOW, attempt=None)
    assert (done.kind, done.provider_id, done.attempts) == (SettleKind.DELIVERED, "re_1", 1)
    dead = decide(env(), Permanent("422 bad from", 422), GROUP, now=NOW, attempt=None)
    assert (dead.kind, dead.reason, dead.route_index) == (
        SettleKind.DEAD_LETTERED,
        "422 bad from",
        0,
    )


def test_not_taken_fails_over_now_even_when_the_provider_asks_to_wait() -> None:
    """A 429 from the first member moves on at once; its wait binds that member only."""
    s = decide(env(), Retry("429", Taken.NO, after=3600), GROUP, now=NOW, attempt=None)
    assert (s.kind, s.route_index, s.next_attempt_at, s.member_attempts) == (
        SettleKind.FAILED_OVER,
        1,
        NOW,
        0,
    )


def test_ambiguous_failure_stays_then_fails_over() -> None:
    """A timeout after sending is retried on the same member first, then failed over."""
    first = decide(env(), Retry("timeout", Taken.MAYBE), GROUP, now=NOW, attempt=None)
    assert (first.kind, first.route_index, first.member_attempts) == (SettleKind.RETRIED, 0, 1)
    assert NOW <= first.next_attempt_at <= NOW + 1
    second = decide(
        env(attempts=1, member_attempts=1),
        Retry("timeout", Taken.MAYBE),
        GROUP,
        now=NOW,
        attempt=None,
    )
    assert (second.kind, second.route_index) == (SettleKind.FAILED_OVER, 1)


def test_the_last_member_failing_ends_the_round_with_a_backoff() -> None:
    """Past the last member, the message starts again at the first, after its backoff."""
    s = decide(env(route_index=2, attempts=2), Retry("503", Taken.NO), GROUP, now=NOW, attempt=None)
    assert (s.kind, s.route_index) == (SettleKind.RETRIED, 0)
    assert NOW <= s.next_attempt_at <= NOW + 4


def test_a_lone_integration_honours_the_provider_wait() -> None:
    """Alone, a retry waits exactly as long as the provider asked."""
    s = decide(env(), Retry("429", Taken.NO, after=30), ALONE, now=NOW, attempt=None)
    assert (s.kind, s.next_attempt_at) == (SettleKind.RETRIED, NOW + 30)


def test_exhausted_retries_become_a_dead_letter_with_the_last_reason() -> None:
    """The last allowed attempt failing makes a dead letter that says why."""
    s = decide(env(attempts=3), Retry("503 busy", Taken.MAYBE), ALONE, now=NOW, attempt=None)
    assert s.kind is SettleKind.DEAD_LETTERED
    assert s.reason == "gave up after 4 attempts; last: 503 busy"


def test_returned_keeps_the_attempt_count() -> None:
    """A message handed back unattempted keeps its attempts and may move on in its group."""
    s = returned(
        env(attempts=2, member_attempts=1),
        route_index=1,
        next_attempt_at=NOW,
        reason="breaker open",
    )
    assert (s.kind, s.attempts, s.route_index, s.member_attempts) == (SettleKind.RETURNED, 2, 1, 0)
