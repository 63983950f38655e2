"""What happens to a message after an attempt: pure decisions, no I/O.

The rules (at-least-once, with failover groups):

* delivered → done;
* permanent → dead letter (a bad request is not failed over: the next
  provider would refuse it too);
* retry, in a group, when the provider certainly did not take the message, or
  when the same member already had ``failover_after`` ambiguous attempts →
  fail over to the next member at once; past the last member the round is
  over and the message waits its backoff before starting again at the first;
* retry otherwise → the same member again after the backoff, with the same
  idempotency key (an ambiguous failure may have been taken);
* no retry past the policy's attempts or age → dead letter with the reason.
"""

from __future__ import annotations

import attrs

from ._delivery import Delivered, Envelope, Outcome, Permanent, Retry, Taken
from .deliverability import Defer, Drop, Hold
from .resilience import RetryPolicy
from .store import Attempt, Settle, SettleKind


def outcome_label(outcome: Outcome) -> str:
    match outcome:
        case Delivered():
            return "delivered"
        case Retry():
            return "retry"
        case Permanent():
            return "permanent"


def _settle(env: Envelope, kind: SettleKind, **changes: object) -> Settle:
    fields: dict[str, object] = {
        "message_id": env.id,
        "target": env.target,
        "kind": kind,
        "integration": env.integration,
        "attempts": env.attempts + 1,
        "next_attempt_at": 0.0,
        "route_index": env.route_index,
        "member_attempts": env.member_attempts + 1,
        "created_at": env.created_at,
        "priority": env.priority,
    }
    fields.update(changes)
    return Settle(**fields)  # type: ignore[arg-type]


@attrs.frozen
class Rules:
    """What decides a message's next state, besides the outcome: its actor's policy."""

    route_len: int  # members on the message's route (1 for a lone integration)
    retry: RetryPolicy
    failover_after: int


def decide(
    env: Envelope, outcome: Outcome, rules: Rules, *, now: float, attempt: Attempt | None
) -> Settle:
    """Turn one attempt's outcome into the message's next state."""
    match outcome:
        case Delivered(provider_id=provider_id):
            return _settle(
                env,
                SettleKind.DELIVERED,
                provider_id=provider_id,
                attempt=attempt,
                next_attempt_at=now,
            )
        case Permanent(reason=reason):
            return _settle(
                env, SettleKind.DEAD_LETTERED, reason=reason, attempt=attempt, next_attempt_at=now
            )
        case Retry():
            return _retry(env, outcome, rules, now=now, attempt=attempt)


def _retry(
    env: Envelope, outcome: Retry, rules: Rules, *, now: float, attempt: Attempt | None
) -> Settle:
    retry, route_len = rules.retry, rules.route_len
    attempts = env.attempts + 1
    age = max(0.0, now - env.created_at)
    fail_over = route_len > 1 and (
        outcome.taken is Taken.NO or env.member_attempts + 1 > rules.failover_after
    )
    if fail_over and env.route_index + 1 < route_len:
        # The wait a provider asked for binds that provider only, not the next member.
        if retry.next_delay(attempts=attempts, age=age) is None:
            return _exhausted(env, outcome, retry, attempts, age, now, attempt)
        return _settle(
            env,
            SettleKind.FAILED_OVER,
            reason=outcome.reason,
            attempt=attempt,
            next_attempt_at=now,
            route_index=env.route_index + 1,
            member_attempts=0,
        )
    delay = retry.next_delay(attempts=attempts, age=age, provider_wait=outcome.after)
    if delay is None:
        return _exhausted(env, outcome, retry, attempts, age, now, attempt)
    if fail_over:  # the last member failed too: the round is over, back off
        return _settle(
            env,
            SettleKind.RETRIED,
            reason=outcome.reason,
            attempt=attempt,
            next_attempt_at=now + delay,
            route_index=0,
            member_attempts=0,
        )
    return _settle(
        env, SettleKind.RETRIED, reason=outcome.reason, attempt=attempt, next_attempt_at=now + delay
    )


def _exhausted(
    env: Envelope,
    outcome: Retry,
    retry: RetryPolicy,
    attempts: int,
    age: float,
    now: float,
    attempt: Attempt | None,
) -> Settle:
    reason = f"{retry.exhausted_reason(attempts=attempts, age=age)}; last: {outcome.reason}"
    return _settle(
        env, SettleKind.DEAD_LETTERED, reason=reason, attempt=attempt, next_attempt_at=now
    )


def returned(env: Envelope, *, route_index: int, next_attempt_at: float, reason: str) -> Settle:
    """A message handed back unattempted: it keeps its attempt count."""
    moved = route_index != env.route_index
    return _settle(
        env,
        SettleKind.RETURNED,
        attempts=env.attempts,
        member_attempts=0 if moved else env.member_attempts,
        route_index=route_index,
        next_attempt_at=next_attempt_at,
        reason=reason,
    )


def gated(env: Envelope, verdict: Drop | Hold | Defer) -> Settle:
    """A message the deliverability gate stopped before it was sent: never an attempt.

    Dropped: a dead letter with the gate's reason (``suppressed: ...``). Held:
    queued, but not due until its hold is released. Deferred: queued, due later.
    """
    unsent: dict[str, object] = {
        "attempts": env.attempts,
        "member_attempts": env.member_attempts,
        "reason": verdict.reason,
    }
    match verdict:
        case Drop():
            return _settle(env, SettleKind.DEAD_LETTERED, **unsent)
        case Hold(key=key):
            return _settle(env, SettleKind.HELD, held=key, **unsent)
        case Defer(until=until):
            return _settle(env, SettleKind.RETURNED, next_attempt_at=until, **unsent)
