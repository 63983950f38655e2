"""Experiments: a definition, the variant a unit gets, the message it sends, and its report.

An :class:`ExperimentSpec` comes from a ``[growth.experiments.<name>]`` table or from the
``experiment create`` command's JSON object: the same shape, read by :func:`parse_spec`,
written back by :func:`spec_json`::

    name        1 to 64 of a-z 0-9 _ -; GrowthBook's experiment key
    variants    2 to 20 tables {name, weight, template?, fields?}; the first is control;
                the weights sum to 1, as GrowthBook's must
    unit        "recipient" (the message's addressee) or "user" (the producer's unit)
    seed        GrowthBook's hash seed; "" (the default) means the name
    coverage    the share of units in the experiment, 0 to 1
    conversion  delivered | opened | clicked (the exposed message's delivery events),
                signup | invite_accepted (a growth event naming the unit)
    sequential  always-valid (mSPRT) figures in the readout, mixing ``tau``
    confidence  of every interval
    stop        the stop rule (StopRule's fields); shown, acted on only with ``auto_stop``

A unit's variant is GrowthBook's (:meth:`ExperimentSpec.variant_of`; hash version 2, so an
SDK recomputing it needs ``hashVersion: 2``: its inline experiments default to 1). A variant
changes a message by its template and fields (:func:`apply_variant`) and refuses to override
what the message itself gives: an experiment silently overridden would measure nothing.
:func:`experiment_report` turns per-variant counts into what ``experiment show`` prints.
All of it is pure: no I/O, no clock. Errors name the field at fault and never quote a
message's values.
"""

from __future__ import annotations

import copy
import enum
import math
import re
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import attrs

from ringbearer.control import MessageIn
from ringbearer.privacy import normalise_identity
from ringbearer.privacy._subjects import default_identities

from ._assignment import assign, check_weights
from ._readout import (
    DEFAULT_TAU,
    Arm,
    Interval,
    Sequential,
    SrmCheck,
    StopDecision,
    StopRule,
    VariantReadout,
    evaluate_stop,
    readout,
)

DAY: Final = 86400.0
MIN_VARIANTS: Final = 2
MAX_VARIANTS: Final = 20
MAX_FIELDS: Final = 50  # fields one variant sets
MAX_FIELDS_DEPTH: Final = 8  # nested lists and tables in one field's value
MAX_SEED: Final = 128

_NAME = re.compile(r"[a-z0-9_-]{1,64}")
_TEMPLATE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")  # as a stored template's name
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


class Unit(enum.StrEnum):
    """Whom a variant is assigned to."""

    RECIPIENT = "recipient"  # the message's addressee, read from its payload
    USER = "user"  # the unit the producer names


class Conversion(enum.StrEnum):
    """What counts as a unit converting."""

    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    SIGNUP = "signup"
    INVITE_ACCEPTED = "invite_accepted"


UNITS: Final = tuple(u.value for u in Unit)
CONVERSIONS: Final = tuple(c.value for c in Conversion)
# Conversions read from the exposed message's delivery events; the others are growth events.
DELIVERY_CONVERSIONS: Final = (Conversion.DELIVERED, Conversion.OPENED, Conversion.CLICKED)
# Recipient identities: the addressee field of the families that have one.
_ADDRESSEE: Final = {"email": "to", "alerts": "to"}


# --- the definition -------------------------------------------------------------------


def _check_name(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(f"{attribute.name}: 1 to 64 characters of a-z, 0-9, '_' and '-'")


def _check_weight(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not _is_finite(value) or value < 0:
        raise ValueError(f"{attribute.name}: a finite number >= 0")


def _check_template(_: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and not (isinstance(value, str) and _TEMPLATE_NAME.fullmatch(value)):
        raise ValueError(
            f"{attribute.name}: a template's name, 1 to 64 characters of a-z, 0-9, '_', '.'"
            " and '-', starting with a letter or digit"
        )


def _frozen_fields(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy, so that no message the fields go into can change the spec."""
    return types.MappingProxyType(copy.deepcopy(dict(value)))


def _check_fields(
    _: object, attribute: attrs.Attribute[Mapping[str, Any]], value: Mapping[str, Any]
) -> None:
    if len(value) > MAX_FIELDS:
        raise ValueError(f"{attribute.name}: at most {MAX_FIELDS} fields, got {len(value)}")
    for key, item in value.items():
        if not isinstance(key, str) or not _FIELD_NAME.fullmatch(key):
            raise ValueError(
                f"{attribute.name}: {str(key)[:40]!r} is not a field name"
                " (1 to 64 of A-Z, a-z, 0-9, '_' and '-', not starting with a digit or '-')"
            )
        if not _is_json(item, MAX_FIELDS_DEPTH):
            raise ValueError(
                f"{attribute.name}.{key}: not a JSON value (strings, finite numbers, booleans,"
                f" lists and tables, nested at most {MAX_FIELDS_DEPTH} deep)"
            )


def _is_json(value: object, depth: int) -> bool:
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if depth <= 0:
        return False
    if isinstance(value, list):
        return all(_is_json(item, depth - 1) for item in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_json(v, depth - 1) for k, v in value.items())
    return False


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    """A number, not a bool, that is finite (an integer too large for a float is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


@attrs.frozen
class Variant:
    """One arm: its share of units and what it changes in a message."""

    name: str = attrs.field(validator=_check_name)
    weight: float = attrs.field(validator=_check_weight)
    # The template a message in this variant is rendered with (None: the message's own).
    template: str | None = attrs.field(default=None, validator=_check_template)
    # Template vars if the message (then) has a template, else payload fields.
    fields: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_frozen_fields, validator=_check_fields, hash=False
    )


def _as_variants(value: Iterable[Variant]) -> tuple[Variant, ...]:
    return tuple(value)


def _check_variants(
    _: object, attribute: attrs.Attribute[tuple[Variant, ...]], value: tuple[Variant, ...]
) -> None:
    if not MIN_VARIANTS <= len(value) <= MAX_VARIANTS:
        raise ValueError(
            f"variants: {MIN_VARIANTS} to {MAX_VARIANTS} variants (the first is control),"
            f" got {len(value)}"
        )
    names = [v.name for v in value]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"variants: names must be unique, {', '.join(map(repr, repeated))} repeat")
    try:
        check_weights([v.weight for v in value])
    except ValueError as exc:
        raise ValueError(f"variants: {exc} (GrowthBook's rule for weights)") from None


def _as_unit(value: str) -> Unit:
    if value not in UNITS:
        raise ValueError(f"unit: one of {', '.join(UNITS)}")
    return Unit(value)


def _as_conversion(value: str) -> Conversion:
    if value not in CONVERSIONS:
        raise ValueError(f"conversion: one of {', '.join(CONVERSIONS)}")
    return Conversion(value)


def _check_seed(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or len(value) > MAX_SEED:
        raise ValueError(f"seed: a string of at most {MAX_SEED} characters")


def _check_coverage(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not _is_number(value) or not 0 <= value <= 1:
        raise ValueError("coverage: a number from 0 to 1")


def _check_tau(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not _is_finite(value) or value <= 0:
        raise ValueError("tau: a finite number > 0")


def _check_confidence(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not _is_number(value) or not 0 < value < 1:
        raise ValueError("confidence: a number strictly between 0 and 1")


@attrs.frozen
class ExperimentSpec:
    """An experiment's design and how it is read out; ``variants[0]`` is control."""

    name: str = attrs.field(validator=_check_name)
    variants: tuple[Variant, ...] = attrs.field(converter=_as_variants, validator=_check_variants)
    unit: Unit = attrs.field(default=Unit.RECIPIENT, converter=_as_unit)
    seed: str = attrs.field(default="", validator=_check_seed)  # "": the name, as GrowthBook
    coverage: float = attrs.field(default=1.0, validator=_check_coverage)
    conversion: Conversion = attrs.field(default=Conversion.OPENED, converter=_as_conversion)
    sequential: bool = False  # always-valid (mSPRT) figures in the readout
    tau: float = attrs.field(default=DEFAULT_TAU, validator=_check_tau)
    confidence: float = attrs.field(default=0.95, validator=_check_confidence)
    stop: StopRule = attrs.Factory(StopRule)  # written in config and shown
    auto_stop: bool = False  # only then does the daemon stop it when the rule says so

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(v.weight for v in self.variants)

    def variant_of(self, unit: str) -> int | None:
        """The variant GrowthBook gives ``unit``; None outside the coverage or for ""."""
        return assign(self.name, unit, self.weights, seed=self.seed or None, coverage=self.coverage)


# --- reading it -----------------------------------------------------------------------


def _refuse_unknown(where: str, obj: Mapping[Any, Any], known: Iterable[str]) -> None:
    unknown = sorted(str(key)[:40] for key in obj if key not in set(known))
    if unknown:
        raise ValueError(f"{where}unknown field(s) {', '.join(map(repr, unknown[:5]))}")


def _string(where: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a string")
    return value


def _number(where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{where}: expected a finite number")
    return number


def _whole(where: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{where}: expected a whole number")
    return value


def _boolean(where: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: expected true or false")
    return value


def _table(where: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a table (a JSON object)")
    return value


_Parse = Callable[[str, object], Any]
_VARIANT_FIELDS: dict[str, tuple[_Parse, bool]] = {  # field: (parse, required)
    "name": (_string, True),
    "weight": (_number, True),
    "template": (_string, False),
    "fields": (_table, False),
}
_STOP_FIELDS: dict[str, _Parse] = {
    "min_units_per_variant": _whole,
    "max_days": _number,
    "target_units_per_variant": _whole,
    "alpha": _number,
    "stop_on_srm": _boolean,
}
_SPEC_FIELDS: dict[str, _Parse] = {
    "unit": _string,
    "seed": _string,
    "coverage": _number,
    "conversion": _string,
    "sequential": _boolean,
    "tau": _number,
    "confidence": _number,
    "auto_stop": _boolean,
}


def _values(prefix: str, obj: Mapping[str, Any], fields: Mapping[str, _Parse]) -> dict[str, Any]:
    """Each field given (null is not given) through its parser, named ``prefix + key``."""
    return {
        key: parse(prefix + key, obj[key])
        for key, parse in fields.items()
        if obj.get(key) is not None
    }


def _variant(index: int, value: object) -> Variant:
    where = f"variants[{index}]"
    obj = _table(where, value)
    _refuse_unknown(f"{where}: ", obj, _VARIANT_FIELDS)
    parsers = {key: parse for key, (parse, _) in _VARIANT_FIELDS.items()}
    values = _values(f"{where}.", obj, parsers)
    for key, (_, required) in _VARIANT_FIELDS.items():
        if required and key not in values:
            raise ValueError(f"{where}.{key}: missing")
    try:
        return Variant(**values)
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None


def _variants(value: object) -> tuple[Variant, ...]:
    if value is None:
        raise ValueError("variants: missing")
    if not isinstance(value, list | tuple):
        raise ValueError("variants: expected a list of tables, control first")
    if len(value) > MAX_VARIANTS:  # before reading them: the count is the fault
        raise ValueError(f"variants: at most {MAX_VARIANTS}, got {len(value)}")
    return tuple(_variant(index, item) for index, item in enumerate(value))


def _stop(value: object) -> StopRule:
    obj = _table("stop", value)
    _refuse_unknown("stop: ", obj, _STOP_FIELDS)
    values = _values("stop.", obj, _STOP_FIELDS)
    try:
        return StopRule(**values)
    except ValueError as exc:
        raise ValueError(f"stop: {exc}") from None


def _name(given: object, name: str | None) -> str:
    if given is None:
        if name is None:
            raise ValueError("name: missing")
        return name
    text = _string("name", given)
    if name is not None and text != name:
        raise ValueError(f"name: {text[:64]!r} differs from the experiment's name {name[:64]!r}")
    return text


def parse_spec(obj: Mapping[str, Any], *, name: str | None = None) -> ExperimentSpec:
    """The experiment ``obj`` defines; ValueError naming the field at fault.

    ``name`` (a config table's key, a command's argument) is used when ``obj`` has none;
    when both are given they must agree.
    """
    table = _table("experiment", obj)
    _refuse_unknown("", table, {"name", "variants", "stop", *_SPEC_FIELDS})
    values = _values("", table, _SPEC_FIELDS)
    values["name"] = _name(table.get("name"), name)
    values["variants"] = _variants(table.get("variants"))
    if table.get("stop") is not None:
        values["stop"] = _stop(table["stop"])
    return ExperimentSpec(**values)


def _stop_json(rule: StopRule) -> dict[str, Any]:
    out = attrs.asdict(rule)
    return {key: value for key, value in out.items() if value is not None}


def _variant_json(variant: Variant) -> dict[str, Any]:
    out: dict[str, Any] = {"name": variant.name, "weight": variant.weight}
    if variant.template is not None:
        out["template"] = variant.template
    if variant.fields:
        out["fields"] = copy.deepcopy(dict(variant.fields))
    return out


def spec_json(spec: ExperimentSpec) -> dict[str, Any]:
    """``spec`` as the object :func:`parse_spec` reads back to an equal spec (no nulls)."""
    return {
        "name": spec.name,
        "variants": [_variant_json(v) for v in spec.variants],
        "unit": spec.unit.value,
        "seed": spec.seed,
        "coverage": spec.coverage,
        "conversion": spec.conversion.value,
        "sequential": spec.sequential,
        "tau": spec.tau,
        "confidence": spec.confidence,
        "stop": _stop_json(spec.stop),
        "auto_stop": spec.auto_stop,
    }


# --- is it the same experiment? -------------------------------------------------------


def _split(weights: Iterable[float]) -> str:
    return "/".join(f"{w:g}" for w in weights)


def _variant_differences(old: ExperimentSpec, new: ExperimentSpec) -> list[tuple[str, str]]:
    """(noun, sentence) for each way the variants differ."""
    old_names, new_names = [v.name for v in old.variants], [v.name for v in new.variants]
    if old_names != new_names:
        return [("variants", f"variants differ: {'/'.join(old_names)} -> {'/'.join(new_names)}")]
    found = []
    if old.weights != new.weights:
        found.append(("weights", f"weights differ: {_split(old.weights)} -> {_split(new.weights)}"))
    for was, now in zip(old.variants, new.variants, strict=True):
        if was.template != now.template:
            found.append(
                (
                    "templates",
                    f"variant {was.name!r}'s template differs: {was.template} -> {now.template}",
                )
            )
        if was.fields != now.fields:
            found.append(("fields", f"variant {was.name!r}'s fields differ"))
    return found


def _stop_differences(old: StopRule, new: StopRule) -> list[tuple[str, str]]:
    changed = [
        f"{f.name} {getattr(old, f.name)} -> {getattr(new, f.name)}"
        for f in attrs.fields(StopRule)
        if getattr(old, f.name) != getattr(new, f.name)
    ]
    return [("stop rule", f"stop rule differs: {', '.join(changed)}")] if changed else []


_SETTINGS: Final = (
    "unit",
    "coverage",
    "conversion",
    "sequential",
    "tau",
    "confidence",
    "auto_stop",
)


def same_design(old: ExperimentSpec, new: ExperimentSpec) -> str | None:
    """None when a running phase may take ``new`` as it is; else what differs, in a sentence.

    Only an identical design may: any change (to who is assigned where, what a variant
    sends, what counts or how it is read) makes a new phase. A seed written as the name it
    defaults to is the same seed.
    """
    found: list[tuple[str, str]] = []
    if old.name != new.name:
        found.append(("name", f"name differs: {old.name} -> {new.name}"))
    found += _variant_differences(old, new)
    if (old.seed or old.name) != (new.seed or new.name):
        found.append(("seed", f"seed differs: {old.seed or old.name} -> {new.seed or new.name}"))
    for key in _SETTINGS:
        was, now = getattr(old, key), getattr(new, key)
        if was != now:
            found.append((key, f"{key} differs: {_show(was)} -> {_show(now)}"))
    found += _stop_differences(old.stop, new.stop)
    if not found:
        return None
    noun = found[0][0] if len(found) == 1 else "design"
    sentences = "; ".join(sentence for _, sentence in found)
    return f"{sentences}; a running experiment's {noun} cannot change: start a new phase"


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# --- a message in a variant -----------------------------------------------------------


def _variant_at(spec: ExperimentSpec, index: int) -> Variant:
    if isinstance(index, bool) or not 0 <= index < len(spec.variants):
        raise ValueError(f"experiment {spec.name!r} has no variant {index}")
    return spec.variants[index]


def apply_variant(spec: ExperimentSpec, index: int, message: MessageIn) -> MessageIn:
    """``message`` as variant ``index`` sends it; ValueError if the message and variant clash.

    The variant's template replaces the message's (its latest version); the variant's fields
    go into ``vars`` when the message then has a template, else into ``payload``. A field
    both give is refused, naming it: an experiment must not be silently overridden.
    """
    variant = _variant_at(spec, index)
    if variant.template is not None:
        message = attrs.evolve(message, template=variant.template, template_version=None)
    if not variant.fields:
        return message
    into, given = (
        ("vars", message.vars or {})
        if message.template is not None
        else ("payload", message.payload)
    )
    clash = sorted(key for key in variant.fields if key in given)
    if clash:
        raise ValueError(
            f"{into}.{clash[0]}: given by the message and by variant {variant.name!r}"
            f" of experiment {spec.name!r}"
        )
    merged = {**given, **copy.deepcopy(dict(variant.fields))}
    if into == "vars":
        return attrs.evolve(message, vars=merged)
    return attrs.evolve(message, payload=merged)


def unit_identity(spec: ExperimentSpec, message: MessageIn, family: str) -> str | None:
    """The unit a message is assigned by, normalised; None when the spec's unit is "user"
    (the caller has the producer's) or the message names no addressee.

    The recipient is the first address in an email's ``to`` (a string or a list, "Name
    <a@b>" or bare) or an SMS or call's ``to``; other families have no addressee.
    """
    if spec.unit is Unit.USER:
        return None
    field = _ADDRESSEE.get(family)
    if field is None:
        return None
    found = default_identities(family, {field: message.payload.get(field)})
    return normalise_identity(found[0]) if found else None


# --- the report -----------------------------------------------------------------------


@attrs.frozen
class VariantReport:
    """One variant's counts and figures; the comparisons are None for control."""

    name: str
    weight: float
    assigned: int  # units assigned to it
    exposures: int  # units that were sent its message
    conversions: int  # exposed units that converted
    rate: float | None
    rate_interval: Interval | None
    lift: float | None
    lift_interval: Interval | None
    p_value: float | None  # one look's; valid only once
    always_valid_p_value: float | None  # with sequential testing: valid at every look
    always_valid_lift_interval: Interval | None


@attrs.frozen
class ExperimentReport:
    """What ``experiment show`` prints; :func:`report_json` makes it plain JSON."""

    name: str
    phase: int
    started_at: float
    stopped_at: float | None
    stop_reason: str | None
    conversion: str
    confidence: float
    sequential: bool
    variants: tuple[VariantReport, ...]
    srm: SrmCheck
    stop_rule: str
    decision: StopDecision
    auto_stop: bool


def _counts(
    spec: ExperimentSpec, counts: Mapping[int, tuple[int, int, int]]
) -> list[tuple[int, int, int]]:
    """Counts per variant in order, zeros for a variant without any."""
    unknown = sorted(index for index in counts if index not in range(len(spec.variants)))
    if unknown:
        raise ValueError(f"counts for variant {unknown[0]}, which {spec.name!r} does not have")
    out = []
    for index in range(len(spec.variants)):
        assigned, exposed, converted = counts.get(index, (0, 0, 0))
        if isinstance(assigned, bool) or not isinstance(assigned, int) or assigned < 0:
            raise ValueError(f"variant {index}: assigned must be a whole number >= 0")
        out.append((assigned, exposed, converted))
    return out


def _variant_report(variant: Variant, assigned: int, figures: VariantReadout) -> VariantReport:
    versus = figures.vs_control
    valid = versus.always_valid if versus is not None else None
    return VariantReport(
        name=variant.name,
        weight=variant.weight,
        assigned=assigned,
        exposures=figures.units,
        conversions=figures.conversions,
        rate=figures.rate,
        rate_interval=figures.rate_interval,
        lift=versus.lift if versus is not None else None,
        lift_interval=versus.lift_interval if versus is not None else None,
        p_value=versus.p_value if versus is not None else None,
        always_valid_p_value=valid.p_value if valid is not None else None,
        always_valid_lift_interval=valid.lift_interval if valid is not None else None,
    )


def experiment_report(
    spec: ExperimentSpec,
    *,
    phase: int,
    started_at: float,
    stopped_at: float | None,
    stop_reason: str | None,
    counts: Mapping[int, tuple[int, int, int]],
    now: float,
) -> ExperimentReport:
    """The report of one phase from ``counts``: variant -> (assigned, exposed, converted).

    The arms are exposed units and the converted among them; the stop rule is evaluated
    at ``now``, or at ``stopped_at`` for a stopped phase.
    """
    rows = _counts(spec, counts)
    sequential = Sequential(spec.tau) if spec.sequential else None
    arms = [Arm(exposed, converted) for _, exposed, converted in rows]
    result = readout(arms, spec.weights, confidence=spec.confidence, sequential=sequential)
    end = now if stopped_at is None else stopped_at
    decision = evaluate_stop(spec.stop, result, elapsed_days=max(0.0, end - started_at) / DAY)
    return ExperimentReport(
        name=spec.name,
        phase=phase,
        started_at=started_at,
        stopped_at=stopped_at,
        stop_reason=stop_reason,
        conversion=spec.conversion.value,
        confidence=spec.confidence,
        sequential=spec.sequential,
        variants=tuple(
            _variant_report(variant, row[0], figures)
            for variant, row, figures in zip(spec.variants, rows, result.variants, strict=True)
        ),
        srm=result.srm,
        stop_rule=spec.stop.describe(),
        decision=decision,
        auto_stop=spec.auto_stop,
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _interval_json(interval: Interval | None) -> dict[str, float | None] | None:
    if interval is None:
        return None
    return {"low": _finite(interval.low), "high": _finite(interval.high)}


def _variant_report_json(row: VariantReport) -> dict[str, Any]:
    return {
        "name": row.name,
        "weight": _finite(row.weight),
        "assigned": row.assigned,
        "exposures": row.exposures,
        "conversions": row.conversions,
        "rate": _finite(row.rate),
        "rate_interval": _interval_json(row.rate_interval),
        "lift": _finite(row.lift),
        "lift_interval": _interval_json(row.lift_interval),
        "p_value": _finite(row.p_value),
        "always_valid_p_value": _finite(row.always_valid_p_value),
        "always_valid_lift_interval": _interval_json(row.always_valid_lift_interval),
    }


def _srm_json(srm: SrmCheck) -> dict[str, Any]:
    return {
        "status": srm.status.value,
        "chi_square": _finite(srm.chi_square),
        "p_value": _finite(srm.p_value),
        "threshold": srm.threshold,
        "min_units": srm.min_units,
    }


def _decision_json(report: ExperimentReport) -> dict[str, Any]:
    decision = report.decision
    variant = decision.variant
    return {
        "stop": decision.stop,
        "reason": decision.reason.value,
        "explanation": decision.explanation,
        "variant": None if variant is None else report.variants[variant].name,
    }


def report_json(report: ExperimentReport) -> dict[str, Any]:
    """``report`` as plain JSON: stable keys, every number finite or null."""
    return {
        "name": report.name,
        "phase": report.phase,
        "started_at": _finite(report.started_at),
        "stopped_at": _finite(report.stopped_at),
        "stop_reason": report.stop_reason,
        "conversion": report.conversion,
        "confidence": report.confidence,
        "sequential": report.sequential,
        "variants": [_variant_report_json(row) for row in report.variants],
        "srm": _srm_json(report.srm),
        "stop_rule": report.stop_rule,
        "decision": _decision_json(report),
        "auto_stop": report.auto_stop,
    }
