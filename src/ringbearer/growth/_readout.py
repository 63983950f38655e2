"""Experiment readouts: what each variant did, against control, and whether to stop.

Plain counts in, plain frozen values out (finite floats or None, never NaN), no I/O, no clock:
the caller passes the elapsed time. The methods, all standard and each stated:

- **rate**: conversions / units, with a Wilson score interval.
- **lift** (variant against control, variant 0): relative lift ``rate / control_rate - 1``;
  its interval is the delta method on the log of the rate ratio,
  ``exp(log(r1/r0) +- z*sqrt((1-r1)/x1 + (1-r0)/x0)) - 1``.
- **p-value**: two-sided two-proportion z-test with the pooled rate (equal to Pearson's
  chi-square on the 2x2 table without continuity correction). Valid for one look only.
- **sample-ratio mismatch**: chi-square goodness of fit of the units against the configured
  weights, flagged at p < 0.001, checked only once every variant has at least 8 units.
- **always-valid** (optional, sequential testing): the mixture sequential probability ratio
  test (mSPRT, Johari, Koomen, Pekelis & Walsh 2017) on the log rate ratio, with a normal
  mixture N(0, tau^2); ``tau`` defaults to 0.2, tuned for relative lifts of about 20%. Its
  p-value and interval hold at every look, however often people look (Ville's inequality),
  so a stop rule may act on them the first time they cross. Each readout reports this look's
  ``min(1, 1/Lambda)``; the running minimum over looks is as valid, for a caller that keeps it.

A unit converts at most once: ``conversions`` counts converted units, not events.
A :class:`StopRule` reads a :class:`Readout` and returns a :class:`StopDecision` with its
reason; it stops nothing itself.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Final

import attrs

from ringbearer.growth._assignment import check_weights

_NORMAL: Final = NormalDist()
# exp() of anything above this overflows a float; such a bound is reported as unknown.
_MAX_EXPONENT: Final = 700.0

DEFAULT_TAU: Final = 0.2
SRM_THRESHOLD: Final = 0.001
SRM_MIN_UNITS: Final = 8


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _non_negative_int(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not _is_count(value):
        raise ValueError(f"{attribute.name} must be a whole number >= 0, got {value!r}")


@attrs.frozen
class Arm:
    """One variant's counts: units exposed, and how many of them converted."""

    units: int = attrs.field(validator=_non_negative_int)
    conversions: int = attrs.field(validator=_non_negative_int)

    def __attrs_post_init__(self) -> None:
        if self.conversions > self.units:
            raise ValueError(
                f"conversions ({self.conversions}) exceed units ({self.units}):"
                " a unit converts at most once"
            )

    @property
    def rate(self) -> float | None:
        """Conversion rate, or None with no units."""
        return self.conversions / self.units if self.units else None


@attrs.frozen
class Interval:
    """A two-sided interval."""

    low: float
    high: float


def _check_tau(instance: Sequential, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"tau must be a finite number > 0, got {value!r}")


@attrs.frozen
class Sequential:
    """Always-valid inference settings: the mSPRT mixing standard deviation on the log ratio."""

    tau: float = attrs.field(default=DEFAULT_TAU, validator=_check_tau)


@attrs.frozen
class AlwaysValid:
    """mSPRT p-value and confidence-sequence interval for the relative lift."""

    p_value: float | None
    lift_interval: Interval | None


@attrs.frozen
class Comparison:
    """A variant against control."""

    lift: float | None
    lift_interval: Interval | None
    p_value: float | None
    always_valid: AlwaysValid | None


@attrs.frozen
class VariantReadout:
    """One variant's figures; ``vs_control`` is None for control itself."""

    variant: int
    weight: float
    units: int
    conversions: int
    rate: float | None
    rate_interval: Interval | None
    vs_control: Comparison | None


class SrmStatus(enum.StrEnum):
    """Where the sample-ratio check stands."""

    WAITING = "waiting"  # some variant has fewer units than the check needs
    OK = "ok"
    MISMATCH = "mismatch"


@attrs.frozen
class SrmCheck:
    """Chi-square goodness of fit of the units against the configured weights."""

    status: SrmStatus
    chi_square: float | None
    p_value: float | None
    threshold: float = SRM_THRESHOLD
    min_units: int = SRM_MIN_UNITS


@attrs.frozen
class Readout:
    """An experiment's readout at one moment."""

    confidence: float
    variants: tuple[VariantReadout, ...]
    srm: SrmCheck
    sequential: Sequential | None


def _z(confidence: float) -> float:
    return _NORMAL.inv_cdf(0.5 + confidence / 2)


def _check_confidence(confidence: float) -> None:
    if isinstance(confidence, bool) or not (0 < confidence < 1):
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def wilson_interval(arm: Arm, confidence: float = 0.95) -> Interval | None:
    """Wilson score interval for the arm's rate; None with no units."""
    _check_confidence(confidence)
    n, x = arm.units, arm.conversions
    if n == 0:
        return None
    z2 = _z(confidence) ** 2
    centre = (x + z2 / 2) / (n + z2)
    half = math.sqrt(z2) / (n + z2) * math.sqrt(x * (n - x) / n + z2 / 4)
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def _log_ratio(control: Arm, variant: Arm) -> tuple[float, float] | None:
    """log(r1/r0) and its delta-method variance; None unless both arms have conversions."""
    if control.conversions == 0 or variant.conversions == 0:
        return None
    r0, r1 = control.conversions / control.units, variant.conversions / variant.units
    variance = (1 - r1) / variant.conversions + (1 - r0) / control.conversions
    return math.log(r1 / r0), variance


def _lift_from_log(low: float, high: float) -> Interval | None:
    if high > _MAX_EXPONENT:
        return None
    return Interval(math.expm1(low), math.expm1(high))


def relative_lift(control: Arm, variant: Arm) -> float | None:
    """``variant_rate / control_rate - 1``; None when the control rate is 0 or unknown."""
    r0, r1 = control.rate, variant.rate
    if r0 is None or r1 is None or r0 == 0:
        return None
    return r1 / r0 - 1


def lift_interval(control: Arm, variant: Arm, confidence: float = 0.95) -> Interval | None:
    """Delta-method interval on the log rate ratio, as relative lift; None if undefined."""
    _check_confidence(confidence)
    estimate = _log_ratio(control, variant)
    if estimate is None:
        return None
    log_ratio, variance = estimate
    half = _z(confidence) * math.sqrt(variance)
    return _lift_from_log(log_ratio - half, log_ratio + half)


def two_proportion_p_value(control: Arm, variant: Arm) -> float | None:
    """Two-sided pooled two-proportion z-test; None with no units or no variation at all."""
    if control.units == 0 or variant.units == 0:
        return None
    pooled = (control.conversions + variant.conversions) / (control.units + variant.units)
    se = math.sqrt(pooled * (1 - pooled) * (1 / control.units + 1 / variant.units))
    if se == 0:
        return None
    z = (variant.conversions / variant.units - control.conversions / control.units) / se
    return 2 * _NORMAL.cdf(-abs(z))


def always_valid(
    control: Arm, variant: Arm, settings: Sequential, confidence: float = 0.95
) -> AlwaysValid:
    """mSPRT p-value and interval, valid at every look; None parts until both arms convert."""
    _check_confidence(confidence)
    estimate = _log_ratio(control, variant)
    if estimate is None:
        return AlwaysValid(p_value=None, lift_interval=None)
    theta, v = estimate
    t2 = settings.tau**2
    if v == 0:  # both arms converted every unit: a ratio of exactly 1, no evidence either way
        return AlwaysValid(p_value=1.0, lift_interval=Interval(0.0, 0.0))
    log_lr = 0.5 * math.log(v / (v + t2)) + t2 * theta**2 / (2 * v * (v + t2))
    p_value = math.exp(-log_lr) if log_lr > 0 else 1.0
    alpha = 1 - confidence
    half = math.sqrt(v * (v + t2) / t2 * (2 * math.log(1 / alpha) + math.log((v + t2) / v)))
    return AlwaysValid(p_value=p_value, lift_interval=_lift_from_log(theta - half, theta + half))


def compare(
    control: Arm, variant: Arm, confidence: float = 0.95, sequential: Sequential | None = None
) -> Comparison:
    """A variant against control: lift, its interval, p-value, and optionally always-valid."""
    return Comparison(
        lift=relative_lift(control, variant),
        lift_interval=lift_interval(control, variant, confidence),
        p_value=two_proportion_p_value(control, variant),
        always_valid=(
            None if sequential is None else always_valid(control, variant, sequential, confidence)
        ),
    )


def srm_check(
    units: Sequence[int],
    weights: Sequence[float],
    *,
    min_units: int = SRM_MIN_UNITS,
    threshold: float = SRM_THRESHOLD,
) -> SrmCheck:
    """Chi-square goodness of fit of ``units`` against ``weights`` (normalised to sum 1).

    A variant of weight 0 takes no part, unless it has units: then assignment is broken
    outright and the check says mismatch with p = 0.
    """
    if len(units) != len(weights):
        raise ValueError(f"{len(units)} unit counts for {len(weights)} weights")
    if any(u > 0 for u, w in zip(units, weights, strict=True) if w == 0):
        return SrmCheck(SrmStatus.MISMATCH, None, 0.0, threshold, min_units)
    live = [(u, w) for u, w in zip(units, weights, strict=True) if w > 0]
    if any(u < min_units for u, _ in live):
        return SrmCheck(SrmStatus.WAITING, None, None, threshold, min_units)
    total_units, total_weight = sum(u for u, _ in live), sum(w for _, w in live)
    expected = [total_units * w / total_weight for _, w in live]
    statistic = sum((u - e) ** 2 / e for (u, _), e in zip(live, expected, strict=True))
    p_value = _chi_square_tail(len(live) - 1, statistic) if len(live) > 1 else 1.0
    status = SrmStatus.MISMATCH if p_value < threshold else SrmStatus.OK
    return SrmCheck(status, statistic, p_value, threshold, min_units)


def _variant_readout(
    index: int, arm: Arm, weight: float, comparison: Comparison | None, confidence: float
) -> VariantReadout:
    return VariantReadout(
        variant=index,
        weight=weight,
        units=arm.units,
        conversions=arm.conversions,
        rate=arm.rate,
        rate_interval=wilson_interval(arm, confidence),
        vs_control=comparison,
    )


def readout(
    arms: Sequence[Arm],
    weights: Sequence[float],
    *,
    confidence: float = 0.95,
    sequential: Sequential | None = None,
) -> Readout:
    """The readout of an experiment whose variant ``i`` has counts ``arms[i]``; 0 is control."""
    check_weights(weights)
    _check_confidence(confidence)
    if len(arms) != len(weights):
        raise ValueError(f"{len(arms)} variants' counts for {len(weights)} weights")
    control = arms[0]
    variants = tuple(
        _variant_readout(
            i,
            arm,
            float(weight),
            None if i == 0 else compare(control, arm, confidence, sequential),
            confidence,
        )
        for i, (arm, weight) in enumerate(zip(arms, weights, strict=True))
    )
    srm = srm_check([arm.units for arm in arms], weights)
    return Readout(confidence=confidence, variants=variants, srm=srm, sequential=sequential)


# --- the stop rule ---


class StopReason(enum.StrEnum):
    """Why a stop rule decided what it did."""

    SAMPLE_RATIO_MISMATCH = "sample_ratio_mismatch"
    MAX_DURATION = "max_duration"
    TOO_FEW_UNITS = "too_few_units"
    TARGET_UNITS = "target_units"
    SIGNIFICANT = "significant"
    NOT_SIGNIFICANT = "not_significant"


def _optional_positive(
    instance: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a number > 0 or unset, got {value!r}")


def _open_unit(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not (0 < value < 1):
        raise ValueError(f"{attribute.name} must lie strictly between 0 and 1, got {value!r}")


@attrs.frozen
class StopRule:
    """When an experiment should stop, written in config; checked in the order of the fields.

    Stop on a sample-ratio mismatch (if ``stop_on_srm``); stop after ``max_days``; go on while
    any variant has fewer than ``min_units_per_variant`` units; stop once every variant has
    ``target_units_per_variant`` (a fixed-horizon design); stop when a variant's always-valid
    p-value falls below ``alpha`` (only with sequential testing on); otherwise go on.
    """

    min_units_per_variant: int = attrs.field(default=100, validator=_non_negative_int)
    max_days: float | None = attrs.field(default=None, validator=_optional_positive)
    target_units_per_variant: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_non_negative_int)
    )
    alpha: float = attrs.field(default=0.05, validator=_open_unit)
    stop_on_srm: bool = True

    def describe(self) -> str:
        """The rule in one sentence, for ``experiment show``."""
        parts = []
        if self.stop_on_srm:
            parts.append("on a sample-ratio mismatch")
        if self.max_days is not None:
            parts.append(f"after {self.max_days:g} days")
        if self.target_units_per_variant is not None:
            parts.append(f"once every variant has {self.target_units_per_variant} units")
        parts.append(
            f"when a variant's always-valid p-value is below {self.alpha:g}"
            f" and every variant has at least {self.min_units_per_variant} units"
        )
        return "Stop " + ", or ".join(parts) + "."


@attrs.frozen
class StopDecision:
    """A stop rule's verdict on one readout; ``variant`` names the one that decided it."""

    stop: bool
    reason: StopReason
    explanation: str
    variant: int | None = None


def _significant(result: Readout, alpha: float) -> tuple[int, float] | None:
    """The variant with the smallest always-valid p-value below ``alpha``, if any."""
    found = [
        (v.variant, v.vs_control.always_valid.p_value)
        for v in result.variants
        if v.vs_control is not None
        and v.vs_control.always_valid is not None
        and v.vs_control.always_valid.p_value is not None
        and v.vs_control.always_valid.p_value < alpha
    ]
    return min(found, key=lambda pair: (pair[1], pair[0])) if found else None


def _stop_early(rule: StopRule, result: Readout, elapsed_days: float) -> StopDecision | None:
    """The checks that do not need enough units: mismatch and duration."""
    if rule.stop_on_srm and result.srm.status is SrmStatus.MISMATCH:
        return StopDecision(
            True,
            StopReason.SAMPLE_RATIO_MISMATCH,
            f"sample-ratio mismatch (p < {result.srm.threshold:g}): assignment or exposure"
            " recording is broken, so no figure can be trusted",
        )
    if rule.max_days is not None and elapsed_days >= rule.max_days:
        return StopDecision(
            True, StopReason.MAX_DURATION, f"ran {elapsed_days:g} of at most {rule.max_days:g} days"
        )
    return None


def evaluate_stop(rule: StopRule, result: Readout, *, elapsed_days: float) -> StopDecision:
    """Apply ``rule`` to ``result``, ``elapsed_days`` after the experiment started."""
    early = _stop_early(rule, result, elapsed_days)
    if early is not None:
        return early
    fewest = min(v.units for v in result.variants if v.weight > 0)
    if fewest < rule.min_units_per_variant:
        return StopDecision(
            False,
            StopReason.TOO_FEW_UNITS,
            f"a variant has {fewest} of the {rule.min_units_per_variant} units needed",
        )
    target = rule.target_units_per_variant
    if target is not None and fewest >= target:
        return StopDecision(True, StopReason.TARGET_UNITS, f"every variant has {target} units")
    hit = _significant(result, rule.alpha)
    if hit is not None:
        variant, p_value = hit
        return StopDecision(
            True,
            StopReason.SIGNIFICANT,
            f"variant {variant}'s always-valid p-value {p_value:.3g} is below {rule.alpha:g}",
            variant,
        )
    return StopDecision(False, StopReason.NOT_SIGNIFICANT, _not_significant(result, rule.alpha))


def _not_significant(result: Readout, alpha: float) -> str:
    if result.sequential is None:
        return "sequential testing is off, so no always-valid p-value can stop it"
    return f"no variant's always-valid p-value is below {alpha:g}"


def _chi_square_tail(freedom: int, statistic: float) -> float:
    """P(X >= statistic) for X chi-square with ``freedom`` degrees, from scipy; imported
    here, when a readout asks, since scipy costs every daemon start a third of a second."""
    from scipy.special import chdtrc

    return float(chdtrc(freedom, statistic))
