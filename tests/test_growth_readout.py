"""Experiment readouts: hand-checked figures, A/A false positives, sequential looks, SRM, stops."""

from __future__ import annotations

import json
import math
import random
from collections import Counter

import attrs
import pytest
from scipy import stats

from ringbearer.growth import _readout as ro
from ringbearer.growth._assignment import assign

Z95 = stats.norm.ppf(0.975)

# --- hand-computed fixtures ---


def test_wilson_interval_textbook_value() -> None:
    """10 of 100 gives the textbook Wilson 95% interval 0.0552..0.1744."""
    interval = ro.wilson_interval(ro.Arm(100, 10))
    assert interval is not None
    assert (round(interval.low, 4), round(interval.high, 4)) == (0.0552, 0.1744)


@pytest.mark.parametrize(("units", "conversions"), [(1000, 100), (37, 0), (37, 37), (5, 2)])
def test_wilson_interval_solves_the_score_equation(units: int, conversions: int) -> None:
    """Wilson's bounds are the roots of (p - x/n)^2 = z^2 p(1 - p)/n."""
    interval = ro.wilson_interval(ro.Arm(units, conversions))
    assert interval is not None
    z2, phat = Z95**2, conversions / units
    a, b, c = 1 + z2 / units, -(2 * phat + z2 / units), phat**2
    disc = math.sqrt(b * b - 4 * a * c)
    assert interval.low == pytest.approx((-b - disc) / (2 * a), abs=1e-12)
    assert interval.high == pytest.approx((-b + disc) / (2 * a), abs=1e-12)


def test_lift_and_its_delta_method_interval() -> None:
    """Control 100/1000, variant 120/1000: lift 0.2, interval -0.0659..0.5416 (by hand)."""
    control, variant = ro.Arm(1000, 100), ro.Arm(1000, 120)
    assert ro.relative_lift(control, variant) == pytest.approx(0.2)
    interval = ro.lift_interval(control, variant)
    assert interval is not None
    se = math.sqrt((1 - 0.12) / 120 + (1 - 0.1) / 100)
    assert interval.low == pytest.approx(1.2 * math.exp(-Z95 * se) - 1, rel=1e-12)
    assert interval.high == pytest.approx(1.2 * math.exp(Z95 * se) - 1, rel=1e-12)
    assert (round(interval.low, 4), round(interval.high, 4)) == (-0.0659, 0.5416)


@pytest.mark.parametrize(
    ("control", "variant"),
    [((1000, 100), (1000, 120)), ((400, 31), (650, 70)), ((50, 3), (55, 0)), ((80, 80), (90, 81))],
)
def test_p_value_equals_chi_square_on_the_table(
    control: tuple[int, int], variant: tuple[int, int]
) -> None:
    """The pooled z-test p-value is scipy's 2x2 chi-square without continuity correction."""
    table = [[c, n - c] for n, c in (control, variant)]
    expected = stats.chi2_contingency(table, correction=False).pvalue
    assert ro.two_proportion_p_value(ro.Arm(*control), ro.Arm(*variant)) == pytest.approx(
        expected, rel=1e-9
    )


def test_always_valid_p_is_the_inverse_mixture_likelihood_ratio() -> None:
    """p = 1/Lambda, with Lambda = N(theta; 0, V + tau^2) / N(theta; 0, V) on the log ratio."""
    control, variant, tau = ro.Arm(2000, 200), ro.Arm(2000, 300), 0.1
    theta = math.log(0.15 / 0.1)
    v = (1 - 0.15) / 300 + (1 - 0.1) / 200
    ratio = stats.norm.pdf(theta, scale=math.sqrt(v + tau**2)) / stats.norm.pdf(
        theta, scale=math.sqrt(v)
    )
    result = ro.always_valid(control, variant, ro.Sequential(tau=tau))
    assert result.p_value == pytest.approx(min(1.0, 1 / ratio), rel=1e-9)
    assert result.p_value is not None and result.p_value < 0.05


def test_always_valid_interval_is_where_the_test_does_not_reject() -> None:
    """At each bound theta0 of the interval, the mSPRT for lift = theta0 sits at exactly 1/alpha."""
    control, variant, tau = ro.Arm(3000, 310), ro.Arm(2900, 350), 0.1
    interval = ro.always_valid(control, variant, ro.Sequential(tau=tau)).lift_interval
    assert interval is not None
    theta = math.log((350 / 2900) / (310 / 3000))
    v = (1 - 350 / 2900) / 350 + (1 - 310 / 3000) / 310
    for bound in (interval.low, interval.high):
        gap = theta - math.log1p(bound)
        ratio = stats.norm.pdf(gap, scale=math.sqrt(v + tau**2)) / stats.norm.pdf(
            gap, scale=math.sqrt(v)
        )
        assert ratio == pytest.approx(1 / 0.05, rel=1e-9)
    fixed = ro.lift_interval(control, variant)
    assert fixed is not None
    assert interval.low < fixed.low and fixed.high < interval.high


def test_srm_equals_scipy_chisquare() -> None:
    """The SRM statistic and p-value are scipy's chi-square goodness of fit."""
    units, weights = [2010, 2950, 5040], [0.2, 0.3, 0.5]
    check = ro.srm_check(units, weights)
    expected = stats.chisquare(units, [sum(units) * w for w in weights])
    assert check.chi_square == pytest.approx(expected.statistic, rel=1e-12)
    assert check.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert check.status is ro.SrmStatus.OK


def test_readout_puts_it_together() -> None:
    """A three-variant readout: control has no comparison, the others carry their figures."""
    arms = [ro.Arm(1000, 100), ro.Arm(1000, 120), ro.Arm(1000, 95)]
    result = ro.readout(arms, [1 / 3, 1 / 3, 1 / 3], sequential=ro.Sequential())
    assert [v.variant for v in result.variants] == [0, 1, 2]
    assert result.variants[0].vs_control is None
    assert result.variants[0].rate == 0.1
    second = result.variants[1].vs_control
    assert second is not None
    assert second.lift == pytest.approx(0.2)
    assert second.lift_interval == ro.lift_interval(arms[0], arms[1])
    assert second.p_value == ro.two_proportion_p_value(arms[0], arms[1])
    assert second.always_valid == ro.always_valid(arms[0], arms[1], ro.Sequential())
    third = result.variants[2].vs_control
    assert third is not None and third.lift == pytest.approx(-0.05)
    assert result.srm.status is ro.SrmStatus.OK and result.srm.chi_square == 0.0


def test_readout_without_sequential_has_no_always_valid_figures() -> None:
    """Sequential testing is optional and off by default."""
    result = ro.readout([ro.Arm(100, 10), ro.Arm(100, 12)], [0.5, 0.5])
    comparison = result.variants[1].vs_control
    assert comparison is not None and comparison.always_valid is None
    assert result.sequential is None


# --- undefined figures are None, never NaN ---


def test_empty_and_degenerate_readouts_are_json_without_nan() -> None:
    """No units, no conversions, all converted: undefined figures are None and JSON is strict."""
    cases = [
        [ro.Arm(0, 0), ro.Arm(0, 0)],
        [ro.Arm(10, 0), ro.Arm(10, 0)],
        [ro.Arm(10, 0), ro.Arm(10, 3)],
        [ro.Arm(10, 4), ro.Arm(10, 0)],
        [ro.Arm(10, 10), ro.Arm(10, 10)],
    ]
    for arms in cases:
        result = ro.readout(arms, [0.5, 0.5], sequential=ro.Sequential())
        json.dumps(attrs.asdict(result), allow_nan=False)
    empty = ro.readout(cases[0], [0.5, 0.5], sequential=ro.Sequential())
    assert empty.variants[0].rate is None and empty.variants[0].rate_interval is None
    assert empty.variants[1].vs_control == ro.Comparison(
        None, None, None, ro.AlwaysValid(None, None)
    )
    no_control = ro.readout(cases[2], [0.5, 0.5]).variants[1].vs_control
    assert no_control is not None and no_control.lift is None and no_control.lift_interval is None
    assert no_control.p_value is not None
    dead_variant = ro.readout(cases[3], [0.5, 0.5]).variants[1].vs_control
    assert dead_variant is not None and dead_variant.lift == -1.0
    assert dead_variant.lift_interval is None
    assert ro.two_proportion_p_value(*cases[1]) is None
    assert ro.two_proportion_p_value(*cases[4]) is None


# --- input checks ---


@pytest.mark.parametrize(
    ("units", "conversions", "message"),
    [
        (10, 11, "conversions (11) exceed units (10)"),
        (-1, 0, "units must be a whole number >= 0"),
        (10, -2, "conversions must be a whole number >= 0"),
        (True, 0, "units must be a whole number >= 0"),
        (2.5, 1, "units must be a whole number >= 0"),
    ],
)
def test_arm_rejects_impossible_counts(units: int, conversions: int, message: str) -> None:
    """Counts are whole, non-negative, and no more conversions than units."""
    with pytest.raises(ValueError) as info:
        ro.Arm(units, conversions)
    assert message in str(info.value)


def test_readout_rejects_mismatched_inputs() -> None:
    """Counts must match the weights, which must be a valid split; confidence in (0, 1)."""
    arms = [ro.Arm(10, 1), ro.Arm(10, 2)]
    with pytest.raises(ValueError, match="3 variants' counts for 2 weights"):
        ro.readout([*arms, ro.Arm(1, 0)], [0.5, 0.5])
    with pytest.raises(ValueError, match="must sum to 1"):
        ro.readout(arms, [0.5, 0.6])
    with pytest.raises(ValueError, match="confidence must lie strictly between 0 and 1"):
        ro.readout(arms, [0.5, 0.5], confidence=1.0)
    with pytest.raises(ValueError, match="tau must be a finite number > 0"):
        ro.Sequential(tau=0.0)


# --- A/A: false positives at the stated rate ---

ALPHA = 0.05
EXPERIMENTS = 2000
LOW_COUNT, HIGH_COUNT = (int(stats.binom.ppf(q, EXPERIMENTS, ALPHA)) for q in (0.0005, 0.9995))


def _binomial(rng: random.Random, n: int, p: float) -> int:
    """One Binomial(n, p) draw by inverting its CDF (random.binomialvariate needs 3.12)."""
    u, k = rng.random(), 0
    mass = (1 - p) ** n
    cumulative = mass
    while u > cumulative and k < n:
        mass *= (n - k) / (k + 1) * p / (1 - p)
        k += 1
        cumulative += mass
    return k


def test_binomial_sampler_has_the_right_mean_and_variance() -> None:
    """The simulation's sampler is itself right: Binomial(50, 0.1) mean 5 and variance 4.5."""
    rng = random.Random(1)
    draws = [_binomial(rng, 50, 0.1) for _ in range(40_000)]
    mean = sum(draws) / len(draws)
    variance = sum((d - mean) ** 2 for d in draws) / (len(draws) - 1)
    assert mean == pytest.approx(5.0, abs=0.05)
    assert variance == pytest.approx(4.5, rel=0.04)


def test_aa_false_positive_rate_is_alpha() -> None:
    """2,000 null experiments (1,000 units a arm, p = 0.1): p < 0.05 in 5% of them (99.9% band)."""
    rng = random.Random(2017)
    rejected = 0
    for _ in range(EXPERIMENTS):
        arms = [ro.Arm(1000, _binomial(rng, 1000, 0.1)) for _ in range(2)]
        comparison = ro.readout(arms, [0.5, 0.5]).variants[1].vs_control
        assert comparison is not None and comparison.p_value is not None
        rejected += comparison.p_value < ALPHA
    assert LOW_COUNT <= rejected <= HIGH_COUNT


def _run_experiment_with_looks(
    rng: random.Random, rule: ro.StopRule, rates: tuple[float, float], looks: int, batch: int
) -> tuple[bool, bool]:
    """Look after every batch: did the stop rule ever fire, and was the naive p ever < alpha?"""
    counts = [0, 0]
    stopped = naive = False
    for look in range(1, looks + 1):
        counts = [c + _binomial(rng, batch, rate) for c, rate in zip(counts, rates, strict=True)]
        arms = [ro.Arm(look * batch, c) for c in counts]
        result = ro.readout(arms, [0.5, 0.5], sequential=ro.Sequential())
        comparison = result.variants[1].vs_control
        assert comparison is not None and comparison.always_valid is not None
        naive = naive or (comparison.p_value is not None and comparison.p_value < ALPHA)
        decision = ro.evaluate_stop(rule, result, elapsed_days=look)
        assert decision.reason in (ro.StopReason.SIGNIFICANT, ro.StopReason.NOT_SIGNIFICANT)
        _assert_interval_agrees_with_p(comparison.always_valid)
        stopped = stopped or decision.stop
    return stopped, naive


def _assert_interval_agrees_with_p(result: ro.AlwaysValid) -> None:
    """The always-valid interval excludes lift 0 exactly when its p-value is below alpha."""
    if result.p_value is None or result.lift_interval is None:
        return
    excludes_zero = not result.lift_interval.low <= 0 <= result.lift_interval.high
    assert excludes_zero == (result.p_value < ALPHA)


def test_sequential_peeking_stays_within_alpha_and_naive_peeking_does_not() -> None:
    """2,000 null experiments, 20 looks of 50 units a arm: stopping on the always-valid
    p-value rejects at most alpha of them; stopping on the fixed-horizon p-value far more."""
    rng = random.Random(2024)
    rule = ro.StopRule(min_units_per_variant=0, alpha=ALPHA)
    outcomes = [
        _run_experiment_with_looks(rng, rule, (0.1, 0.1), 20, 50) for _ in range(EXPERIMENTS)
    ]
    stopped = sum(s for s, _ in outcomes)
    naive = sum(n for _, n in outcomes)
    assert stopped <= HIGH_COUNT
    assert naive > HIGH_COUNT


def test_sequential_stop_rule_finds_a_real_effect() -> None:
    """The same looks under a real 30% lift (0.10 -> 0.13, 20 looks of 250 units a arm): the
    rule stops most experiments, so its restraint under the null is not mere silence."""
    rng = random.Random(7)
    rule = ro.StopRule(min_units_per_variant=0, alpha=ALPHA)
    outcomes = [_run_experiment_with_looks(rng, rule, (0.1, 0.13), 20, 250) for _ in range(200)]
    assert sum(s for s, _ in outcomes) >= 160


# --- sample-ratio mismatch ---


def test_srm_flags_a_53_47_split_of_a_50_50_design() -> None:
    """5,300 / 4,700 units under 50/50 weights is a mismatch (chi-square 36)."""
    result = ro.readout([ro.Arm(5300, 500), ro.Arm(4700, 450)], [0.5, 0.5])
    assert result.srm.status is ro.SrmStatus.MISMATCH
    assert result.srm.chi_square == pytest.approx(36.0)
    assert result.srm.p_value is not None and result.srm.p_value < 0.001


def test_srm_passes_a_correct_95_5_split() -> None:
    """10,000 units assigned by assign() under 95/5 weights pass the check."""
    weights = [0.95, 0.05]
    counts = Counter(assign("srm-check", f"couple-{i}", weights) for i in range(10_000))
    assert set(counts) == {0, 1}
    result = ro.readout([ro.Arm(counts[0], 0), ro.Arm(counts[1], 0)], weights)
    assert result.srm.status is ro.SrmStatus.OK
    assert result.srm.p_value is not None and result.srm.p_value >= 0.001


def test_srm_waits_for_eight_units_in_every_variant() -> None:
    """7 units in a variant: no verdict, however lopsided; 8: checked."""
    waiting = ro.srm_check([7, 400], [0.5, 0.5])
    assert waiting == ro.SrmCheck(ro.SrmStatus.WAITING, None, None)
    assert ro.srm_check([8, 400], [0.5, 0.5]).status is ro.SrmStatus.MISMATCH


def test_srm_with_a_zero_weight_variant() -> None:
    """A weight-0 variant takes no part, unless units reach it: that is a mismatch."""
    assert ro.srm_check([500, 0, 510], [0.5, 0.0, 0.5]).status is ro.SrmStatus.OK
    assert ro.srm_check([500, 1, 510], [0.5, 0.0, 0.5]) == ro.SrmCheck(
        ro.SrmStatus.MISMATCH, None, 0.0
    )


# --- the stop rule ---


def _result(arms: list[tuple[int, int]], weights: list[float] | None = None) -> ro.Readout:
    weights = weights or [1 / len(arms)] * len(arms)
    return ro.readout([ro.Arm(*a) for a in arms], weights, sequential=ro.Sequential())


STRONG = [(5000, 500), (5000, 700)]  # always-valid p far below 0.05


def test_stop_rule_stops_on_a_significant_always_valid_p() -> None:
    """Enough units and an always-valid p below alpha: stop, naming the variant."""
    decision = ro.evaluate_stop(ro.StopRule(), _result(STRONG), elapsed_days=3)
    assert (decision.stop, decision.reason, decision.variant) == (
        True,
        ro.StopReason.SIGNIFICANT,
        1,
    )
    assert "variant 1" in decision.explanation


def test_stop_rule_waits_for_min_units() -> None:
    """The same effect with a variant under min units: go on."""
    decision = ro.evaluate_stop(
        ro.StopRule(min_units_per_variant=6000), _result(STRONG), elapsed_days=3
    )
    assert (decision.stop, decision.reason) == (False, ro.StopReason.TOO_FEW_UNITS)
    assert "5000 of the 6000" in decision.explanation


def test_stop_rule_never_stops_on_the_fixed_horizon_p() -> None:
    """Without sequential testing a significant fixed-horizon p does not stop the experiment."""
    result = ro.readout([ro.Arm(*a) for a in STRONG], [0.5, 0.5])
    decision = ro.evaluate_stop(ro.StopRule(), result, elapsed_days=3)
    assert (decision.stop, decision.reason) == (False, ro.StopReason.NOT_SIGNIFICANT)
    assert "sequential testing is off" in decision.explanation


def test_stop_rule_max_duration_and_target_units() -> None:
    """Past max_days it stops; at the target sample size it stops; otherwise it goes on."""
    null = _result([(3000, 300), (3000, 301)])
    rule = ro.StopRule(max_days=28, target_units_per_variant=4000)
    assert ro.evaluate_stop(rule, null, elapsed_days=27.9).reason is ro.StopReason.NOT_SIGNIFICANT
    late = ro.evaluate_stop(rule, null, elapsed_days=28)
    assert (late.stop, late.reason) == (True, ro.StopReason.MAX_DURATION)
    full = _result([(4000, 400), (4000, 401)])
    reached = ro.evaluate_stop(rule, full, elapsed_days=1)
    assert (reached.stop, reached.reason) == (True, ro.StopReason.TARGET_UNITS)


def test_stop_rule_on_sample_ratio_mismatch() -> None:
    """A mismatch stops before anything else, unless the rule says not to."""
    broken = _result([(5300, 530), (4700, 700)])
    decision = ro.evaluate_stop(ro.StopRule(), broken, elapsed_days=1)
    assert (decision.stop, decision.reason) == (True, ro.StopReason.SAMPLE_RATIO_MISMATCH)
    lenient = ro.evaluate_stop(ro.StopRule(stop_on_srm=False), broken, elapsed_days=1)
    assert lenient.reason is ro.StopReason.SIGNIFICANT


def test_stop_rule_describes_itself_and_checks_its_values() -> None:
    """The rule reads as a sentence naming its values; bad values are refused by name."""
    rule = ro.StopRule(min_units_per_variant=200, max_days=21, alpha=0.01)
    assert rule.describe() == (
        "Stop on a sample-ratio mismatch, or after 21 days, or when a variant's always-valid"
        " p-value is below 0.01 and every variant has at least 200 units."
    )
    with pytest.raises(ValueError, match="alpha must lie strictly between 0 and 1"):
        ro.StopRule(alpha=1.5)
    with pytest.raises(ValueError, match="max_days must be a number > 0"):
        ro.StopRule(max_days=0)
    with pytest.raises(ValueError, match="min_units_per_variant must be a whole number"):
        ro.StopRule(min_units_per_variant=-1)
