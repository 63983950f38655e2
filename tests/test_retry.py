"""The retry policy: capped exponential backoff, full jitter, and when to give up."""

from __future__ import annotations

import random

import pytest

import ringbearer.resilience as resilience
from ringbearer.resilience import RetryPolicy, RetrySettings, _retry

SETTINGS = RetrySettings(
    initial_seconds=1.0,
    multiplier=2.0,
    max_seconds=300.0,
    max_attempts=8,
    max_age_seconds=86400.0,
)


def make(settings: RetrySettings = SETTINGS, seed: int = 7) -> RetryPolicy:
    return RetryPolicy(settings, rng=random.Random(seed))


def test_public_surface() -> None:
    """Every public name of the retry module is re-exported by the package."""
    public = {
        n
        for n, obj in vars(_retry).items()
        if getattr(obj, "__module__", "") == _retry.__name__ and not n.startswith("_")
    }
    assert all(getattr(resilience, n) is getattr(_retry, n) for n in public)
    assert public == {"RetryPolicy", "RetrySettings"}


def test_upper_bound_grows_exponentially() -> None:
    """The jitter's upper bound starts at initial_seconds and multiplies with each attempt."""
    policy = make()
    bounds = [policy.upper_bound(attempts=a) for a in range(1, 8)]
    assert bounds == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]


def test_upper_bound_is_capped() -> None:
    """No bound exceeds max_seconds, even for attempt counts that would overflow a float."""
    policy = make(RetrySettings(max_attempts=100_000))
    assert policy.upper_bound(attempts=9) == 256.0
    assert policy.upper_bound(attempts=10) == 300.0
    assert policy.upper_bound(attempts=50_000) == 300.0
    delays = [policy.next_delay(attempts=40, age=0.0) for _ in range(500)]
    assert all(d is not None and 0.0 <= d <= 300.0 for d in delays)


def test_jitter_spans_the_bound() -> None:
    """Delays are drawn across the whole of [0, bound], never outside it."""
    policy = make()
    for attempts in range(1, 8):
        bound = policy.upper_bound(attempts=attempts)
        delays = [policy.next_delay(attempts=attempts, age=0.0) for _ in range(1000)]
        values = [d for d in delays if d is not None]
        assert len(values) == 1000
        assert all(0.0 <= d <= bound for d in values)
        assert min(values) < 0.05 * bound
        assert max(values) > 0.95 * bound
        assert sum(values) / len(values) == pytest.approx(bound / 2, rel=0.1)


def test_same_seed_same_delays() -> None:
    """The injected random generator makes the delays reproducible."""
    first = [make(seed=3).next_delay(attempts=a, age=0.0) for a in range(1, 8)]
    second = [make(seed=3).next_delay(attempts=a, age=0.0) for a in range(1, 8)]
    assert first == second


def test_gives_up_after_max_attempts() -> None:
    """The attempt that reaches max_attempts is the last; there is no delay after it."""
    policy = make()
    assert policy.next_delay(attempts=7, age=0.0) is not None
    assert policy.next_delay(attempts=8, age=0.0) is None
    assert policy.next_delay(attempts=9, age=0.0) is None
    assert policy.exhausted_reason(attempts=8, age=0.0) == "gave up after 8 attempts"


def test_gives_up_past_max_age() -> None:
    """No retry is scheduled for later than created + max_age_seconds."""
    policy = make(RetrySettings(initial_seconds=10.0, multiplier=1.0, max_age_seconds=100.0))
    assert policy.next_delay(attempts=1, age=100.0, provider_wait=0.0) == 0.0
    assert policy.next_delay(attempts=1, age=101.0) is None
    delays = [policy.next_delay(attempts=1, age=95.0) for _ in range(200)]
    assert None in delays
    assert all(d is None or d <= 5.0 for d in delays)
    assert policy.exhausted_reason(attempts=1, age=101.0) == "gave up: older than 100 s"


def test_default_reason_names_the_age_limit() -> None:
    """The default age limit reads as whole seconds."""
    assert make().exhausted_reason(attempts=2, age=90000.0) == "gave up: older than 86400 s"


def test_provider_wait_takes_precedence() -> None:
    """A wait the provider asked for is used exactly, neither jittered nor capped."""
    policy = make()
    assert policy.next_delay(attempts=1, age=0.0, provider_wait=1000.0) == 1000.0
    assert policy.next_delay(attempts=7, age=0.0, provider_wait=0.25) == 0.25
    assert policy.next_delay(attempts=1, age=0.0, provider_wait=-3.0) == 0.0


def test_provider_wait_still_obeys_the_limits() -> None:
    """A provider's wait cannot stretch a message past max_age or max_attempts."""
    policy = make()
    assert policy.next_delay(attempts=2, age=86000.0, provider_wait=400.0) == 400.0
    assert policy.next_delay(attempts=2, age=86000.0, provider_wait=401.0) is None
    assert policy.next_delay(attempts=8, age=0.0, provider_wait=1.0) is None


def test_attempts_must_be_positive() -> None:
    """Zero attempts is a caller's mistake, reported rather than guessed at."""
    with pytest.raises(ValueError, match="at least 1"):
        make().next_delay(attempts=0, age=0.0)


def test_settings_are_validated() -> None:
    """Nonsense settings are refused when built."""
    with pytest.raises(ValueError):
        RetrySettings(multiplier=0.5)
    with pytest.raises(ValueError):
        RetrySettings(max_attempts=0)
