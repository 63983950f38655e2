"""Experiments: parsed naming the field, round-tripped, assigned as GrowthBook, applied, shown."""

from __future__ import annotations

import json
import math
from typing import Any

import attrs
import pytest
from growthbook import Experiment, GrowthBook
from hypothesis import given
from hypothesis import strategies as st

from ringbearer.control import MessageIn
from ringbearer.growth._assignment import assign
from ringbearer.growth._experiments import (
    CONVERSIONS,
    ExperimentSpec,
    Variant,
    apply_variant,
    experiment_report,
    parse_spec,
    report_json,
    same_design,
    spec_json,
    unit_identity,
)
from ringbearer.growth._readout import DEFAULT_TAU, SrmStatus, StopReason, StopRule

DAY = 86400.0
Z95 = 1.959963984540054  # the 97.5% normal quantile

BASIC: dict[str, Any] = {
    "variants": [
        {"name": "control", "weight": 0.5},
        {"name": "warm", "weight": 0.5, "fields": {"subject": "You're invited"}},
    ]
}


def _spec(**changes: Any) -> ExperimentSpec:
    return parse_spec({**BASIC, **changes}, name="invite-subject")


def _message(**changes: Any) -> MessageIn:
    base = MessageIn(target="email", payload={"to": "Ann.Canary@Example.com", "text": "hi"})
    return attrs.evolve(base, **changes)


# --- parsing --------------------------------------------------------------------------


def test_a_minimal_table_takes_the_defaults() -> None:
    """Only variants given: recipient unit, seed "", full coverage, opened, fixed horizon."""
    spec = _spec()
    assert spec == ExperimentSpec(
        name="invite-subject",
        variants=(
            Variant("control", 0.5),
            Variant("warm", 0.5, fields={"subject": "You're invited"}),
        ),
    )
    assert (spec.unit, spec.seed, spec.coverage, spec.conversion) == (
        "recipient",
        "",
        1.0,
        "opened",
    )
    assert (spec.sequential, spec.tau, spec.confidence) == (False, DEFAULT_TAU, 0.95)
    assert (spec.stop, spec.auto_stop) == (StopRule(), False)
    assert spec.weights == (0.5, 0.5)


def test_every_field_is_read() -> None:
    """A full table lands typed: integer weights as floats, the stop rule as a StopRule."""
    spec = parse_spec(
        {
            "name": "vendor-ask",
            "variants": [
                {"name": "a", "weight": 1, "template": "vendor.ask-v1"},
                {"name": "b", "weight": 0, "template": "vendor.ask-v2", "fields": {"n": [1]}},
            ],
            "unit": "user",
            "seed": "phase-2",
            "coverage": 0.4,
            "conversion": "invite_accepted",
            "sequential": True,
            "tau": 0.3,
            "confidence": 0.9,
            "stop": {"min_units_per_variant": 50, "max_days": 14, "alpha": 0.01},
            "auto_stop": True,
        }
    )
    assert spec.variants[0] == Variant("a", 1.0, "vendor.ask-v1")
    assert spec.variants[1].fields == {"n": [1]}
    assert (spec.unit, spec.seed, spec.coverage, spec.conversion) == (
        "user",
        "phase-2",
        0.4,
        "invite_accepted",
    )
    assert (spec.sequential, spec.tau, spec.confidence, spec.auto_stop) == (True, 0.3, 0.9, True)
    assert spec.stop == StopRule(min_units_per_variant=50, max_days=14.0, alpha=0.01)


def _variants(*tables: object) -> dict[str, Any]:
    return {"variants": list(tables)}


A = {"name": "a", "weight": 0.5}
B = {"name": "b", "weight": 0.5}

BAD: list[tuple[object, str]] = [
    ([], "a table"),
    ({"variants": [A, B], "colour": "red"}, "unknown field(s) 'colour'"),
    ({}, "variants: missing"),
    ({"variants": "a,b"}, "variants: expected a list of tables"),
    ({"variants": [A]}, "variants: 2 to 20 variants (the first is control), got 1"),
    ({"variants": [{"name": f"v{i}", "weight": 0.04} for i in range(25)]}, "variants: at most 20"),
    (_variants(A, "b"), "variants[1]: expected a table"),
    (_variants(A, {"name": "b"}), "variants[1].weight: missing"),
    (_variants(A, {"weight": 0.5}), "variants[1].name: missing"),
    (_variants(A, {**B, "weight": "half"}), "variants[1].weight: expected a number"),
    (_variants(A, {**B, "weight": True}), "variants[1].weight: expected a number"),
    (_variants(A, {**B, "weight": -0.5}), "variants[1].weight: a finite number >= 0"),
    (_variants(A, {**B, "weight": 10**400}), "variants[1].weight: expected a finite number"),
    (_variants(A, {**B, "name": "Big B"}), "variants[1].name: 1 to 64 characters of a-z"),
    (_variants(A, {**B, "name": "b" * 65}), "variants[1].name: 1 to 64 characters"),
    (_variants(A, {**B, "colour": 1}), "variants[1]: unknown field(s) 'colour'"),
    (_variants(A, {**B, "template": "/etc"}), "variants[1].template: a template's name"),
    (_variants(A, {**B, "fields": []}), "variants[1].fields: expected a table"),
    (_variants(A, {**B, "fields": {"1x": 1}}), "variants[1].fields: '1x' is not a field name"),
    (_variants(A, {**B, "fields": {"x": math.nan}}), "variants[1].fields.x: not a JSON value"),
    (_variants(A, {**B, "fields": {"x": {1, 2}}}), "variants[1].fields.x: not a JSON value"),
    (_variants(A, {**B, "fields": {f"f{i}": 1 for i in range(51)}}), "at most 50 fields"),
    (_variants(A, {**B, "name": "a"}), "variants: names must be unique, 'a' repeat"),
    (
        _variants(A, {**B, "weight": 0.4}),
        "variants: weights must sum to 1 (within 0.99..1.01), got 0.9 (GrowthBook's rule",
    ),
    ({**_variants(A, B), "unit": "couple"}, "unit: one of recipient, user"),
    ({**_variants(A, B), "conversion": "booked"}, "conversion: one of " + ", ".join(CONVERSIONS)),
    ({**_variants(A, B), "conversion": 3}, "conversion: expected a string"),
    ({**_variants(A, B), "coverage": 1.5}, "coverage: a number from 0 to 1"),
    ({**_variants(A, B), "coverage": "all"}, "coverage: expected a number"),
    ({**_variants(A, B), "seed": "s" * 129}, "seed: a string of at most 128"),
    ({**_variants(A, B), "tau": 0}, "tau: a finite number > 0"),
    ({**_variants(A, B), "confidence": 1}, "confidence: a number strictly between 0 and 1"),
    ({**_variants(A, B), "sequential": "yes"}, "sequential: expected true or false"),
    ({**_variants(A, B), "auto_stop": 1}, "auto_stop: expected true or false"),
    ({**_variants(A, B), "stop": 3}, "stop: expected a table"),
    ({**_variants(A, B), "stop": {"days": 3}}, "stop: unknown field(s) 'days'"),
    ({**_variants(A, B), "stop": {"max_days": "a week"}}, "stop.max_days: expected a number"),
    ({**_variants(A, B), "stop": {"min_units_per_variant": 1.5}}, "stop.min_units_per_variant:"),
    ({**_variants(A, B), "stop": {"min_units_per_variant": -1}}, "stop: min_units_per_variant"),
    ({**_variants(A, B), "stop": {"alpha": 2}}, "stop: alpha must lie strictly between 0 and 1"),
    ({**_variants(A, B), "stop": {"stop_on_srm": "no"}}, "stop.stop_on_srm: expected true"),
    ({**_variants(A, B), "name": 7}, "name: expected a string"),
    ({**_variants(A, B), "name": "other"}, "name: 'other' differs from the experiment's name"),
]


@pytest.mark.parametrize(("table", "message"), BAD)
def test_bad_tables_are_refused_naming_the_field(table: Any, message: str) -> None:
    """Each fault raises ValueError whose message names the field (and says what it wants)."""
    with pytest.raises(ValueError) as caught:
        parse_spec(table, name="exp")
    assert message in str(caught.value)


def test_the_name_comes_from_the_table_or_its_key() -> None:
    """The key names a table without a name; a table's own name needs no key; neither fails."""
    assert parse_spec({**BASIC, "name": "exp"}).name == "exp"
    assert parse_spec({**BASIC, "name": "exp"}, name="exp").name == "exp"
    assert parse_spec(BASIC, name="exp").name == "exp"
    with pytest.raises(ValueError, match=r"^name: missing$"):
        parse_spec(BASIC)
    with pytest.raises(ValueError, match=r"^name: 1 to 64 characters"):
        parse_spec(BASIC, name="Exp A")


def test_null_is_as_if_not_given() -> None:
    """A JSON null leaves a field at its default (a command's object may carry them)."""
    spec = parse_spec({**BASIC, "seed": None, "stop": {"max_days": None}}, name="exp")
    assert spec.seed == "" and spec.stop == StopRule()


def test_errors_never_quote_a_fields_value() -> None:
    """A bad field value is named by its key only."""
    table = _variants(A, {**B, "fields": {"to": {"when": object()}}})
    with pytest.raises(ValueError) as caught:
        parse_spec(table, name="exp")
    assert str(caught.value).startswith("variants[1].fields.to: not a JSON value")
    assert "object" not in str(caught.value)


# --- round trip -----------------------------------------------------------------------


def test_spec_json_round_trips_and_is_json() -> None:
    """spec_json reads back to an equal spec, through json text too, with no nulls in it."""
    spec = parse_spec(
        {
            **_variants(
                {"name": "a", "weight": 0.25, "template": "t1"},
                {"name": "b", "weight": 0.75, "fields": {"x": {"y": [1, 2.5, True]}}},
            ),
            "stop": {"target_units_per_variant": 500, "stop_on_srm": False},
            "sequential": True,
        },
        name="exp",
    )
    assert parse_spec(spec_json(spec)) == spec
    text = json.dumps(spec_json(spec), allow_nan=False)
    assert parse_spec(json.loads(text)) == spec
    assert "null" not in text


NAMES = st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True)
FIELDS = st.dictionaries(
    st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True),
    st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none()),
    max_size=3,
)


@st.composite
def specs(draw: st.DrawFn) -> ExperimentSpec:
    names = draw(st.lists(NAMES, min_size=2, max_size=5, unique=True))
    cuts = sorted(
        draw(st.lists(st.integers(0, 100), min_size=len(names) - 1, max_size=len(names) - 1))
    )
    shares = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
    templates = st.none() | st.from_regex(r"[a-z][a-z0-9.]{0,8}", fullmatch=True)
    variants = [
        Variant(n, s / 100, draw(templates), draw(FIELDS))
        for n, s in zip(names, shares, strict=True)
    ]
    return ExperimentSpec(
        name=draw(NAMES),
        variants=variants,
        unit=draw(st.sampled_from(["recipient", "user"])),
        seed=draw(st.text(max_size=10)),
        coverage=draw(st.floats(0, 1)),
        conversion=draw(st.sampled_from(CONVERSIONS)),
        sequential=draw(st.booleans()),
        tau=draw(st.floats(0.01, 5)),
        confidence=draw(st.floats(0.5, 0.999)),
        stop=StopRule(
            min_units_per_variant=draw(st.integers(0, 10**6)),
            max_days=draw(st.none() | st.floats(0.5, 365)),
            target_units_per_variant=draw(st.none() | st.integers(0, 10**6)),
        ),
        auto_stop=draw(st.booleans()),
    )


@given(specs())
def test_any_spec_round_trips(spec: ExperimentSpec) -> None:
    """parse_spec(spec_json(s)) == s for any valid spec."""
    assert parse_spec(spec_json(spec)) == spec
    assert same_design(spec, parse_spec(spec_json(spec))) is None


def test_a_spec_is_hashable_and_its_fields_read_only() -> None:
    """Specs go in sets; a variant's fields cannot be changed through the spec."""
    spec = _spec()
    assert len({spec, _spec()}) == 1
    with pytest.raises(TypeError):
        spec.variants[1].fields["subject"] = "changed"  # type: ignore[index]


# --- assignment -----------------------------------------------------------------------


UNIT_IDS = ["ann@example.com", "ben@example.com", "+447700900123", "u_42", "José", "😀"]


@pytest.mark.parametrize("seed", ["", "phase-2"])
def test_variant_of_is_growthbooks(seed: str) -> None:
    """variant_of equals _assignment.assign and GrowthBook.run for the same experiment."""
    spec = parse_spec(
        {**_variants({"name": "a", "weight": 0.3}, {"name": "b", "weight": 0.7}), "seed": seed},
        name="invite-subject",
    )
    ours = [spec.variant_of(u) for u in UNIT_IDS]
    assert ours == [assign("invite-subject", u, [0.3, 0.7], seed=seed or None) for u in UNIT_IDS]
    experiment = Experiment[int](
        key="invite-subject",
        variations=[0, 1],
        weights=[0.3, 0.7],
        seed=seed or None,
        hashVersion=2,
    )
    client = GrowthBook(attributes={})
    theirs = []
    for unit in UNIT_IDS:
        client.set_attributes({"id": unit})
        result = client.run(experiment)
        theirs.append(result.variationId if result.inExperiment else None)
    client.destroy()
    assert ours == theirs
    assert set(ours) == {0, 1}


def test_variant_of_leaves_units_outside_coverage_out() -> None:
    """With coverage, some units are in no variant, exactly as assign says; "" is never in."""
    spec = _spec(coverage=0.3)
    ids = [f"u{i}" for i in range(200)]
    ours = [spec.variant_of(u) for u in ids]
    assert ours == [assign("invite-subject", u, [0.5, 0.5], coverage=0.3) for u in ids]
    assert None in ours and 0 in ours and 1 in ours
    assert spec.variant_of("") is None


# --- same design ----------------------------------------------------------------------


def test_an_identical_spec_is_the_same_design() -> None:
    """Equal specs, and a seed written as the name it defaults to, need no new phase."""
    assert same_design(_spec(), _spec()) is None
    assert same_design(_spec(), _spec(seed="invite-subject")) is None


def test_changed_weights_are_named_with_both_splits() -> None:
    """The sentence gives the old and new split and the way out."""
    new = _spec(
        variants=[{**BASIC["variants"][0], "weight": 0.6}, {**BASIC["variants"][1], "weight": 0.4}]
    )
    assert same_design(_spec(), new) == (
        "weights differ: 0.5/0.5 -> 0.6/0.4;"
        " a running experiment's weights cannot change: start a new phase"
    )


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"seed": "s2"}, "seed differs: invite-subject -> s2"),
        ({"coverage": 0.5}, "coverage differs: 1 -> 0.5"),
        ({"unit": "user"}, "unit differs: recipient -> user"),
        ({"conversion": "clicked"}, "conversion differs: opened -> clicked"),
        ({"sequential": True}, "sequential differs: false -> true"),
        ({"confidence": 0.9}, "confidence differs: 0.95 -> 0.9"),
        ({"auto_stop": True}, "auto_stop differs: false -> true"),
        ({"stop": {"max_days": 7}}, "stop rule differs: max_days None -> 7.0"),
        (
            {"variants": [*BASIC["variants"], {"name": "cold", "weight": 0}]},
            "variants differ: control/warm -> control/warm/cold",
        ),
        (
            {"variants": [BASIC["variants"][0], {"name": "warm", "weight": 0.5}]},
            "variant 'warm''s fields differ",
        ),
        (
            {"variants": [BASIC["variants"][0], {**BASIC["variants"][1], "template": "t2"}]},
            "variant 'warm''s template differs: None -> t2",
        ),
    ],
)
def test_each_difference_is_named(changes: dict[str, Any], said: str) -> None:
    """Any change to the design is a difference, said in words."""
    found = same_design(_spec(), _spec(**changes))
    assert found is not None and found.startswith(said)
    assert found.endswith("cannot change: start a new phase")


def test_several_differences_are_all_listed() -> None:
    """Two changes: both named, and the design as a whole cannot change."""
    found = same_design(_spec(), _spec(coverage=0.5, tau=0.5))
    assert found == (
        "coverage differs: 1 -> 0.5; tau differs: 0.2 -> 0.5;"
        " a running experiment's design cannot change: start a new phase"
    )


# --- applying a variant ---------------------------------------------------------------


TEMPLATED: dict[str, Any] = {
    "variants": [
        {"name": "a", "weight": 0.5},
        {"name": "b", "weight": 0.5, "template": "invite-v2", "fields": {"tone": "warm"}},
    ]
}


def test_control_without_changes_leaves_the_message_as_it_is() -> None:
    """Variant 0 with no template and no fields sends the message unchanged."""
    message = _message()
    assert apply_variant(_spec(), 0, message) == message


def test_fields_go_into_the_payload_without_a_template() -> None:
    """No template: the variant's fields join the payload."""
    out = apply_variant(_spec(), 1, _message())
    assert out.payload == {
        "to": "Ann.Canary@Example.com",
        "text": "hi",
        "subject": "You're invited",
    }
    assert out.template is None and out.vars is None


def test_the_variants_template_replaces_the_messages() -> None:
    """The variant's template wins, its pinned version is cleared, its fields go into vars."""
    spec = parse_spec(TEMPLATED, name="exp")
    message = _message(template="invite-v1", template_version=3, vars={"couple": ["Ann", "Ben"]})
    out = apply_variant(spec, 1, message)
    assert (out.template, out.template_version) == ("invite-v2", None)
    assert out.vars == {"couple": ["Ann", "Ben"], "tone": "warm"}
    assert out.payload == message.payload
    assert apply_variant(spec, 0, message) == message


def test_a_template_the_variant_brings_makes_the_fields_vars() -> None:
    """A message without template gets the variant's, and the fields as its vars."""
    out = apply_variant(parse_spec(TEMPLATED, name="exp"), 1, _message())
    assert (out.template, out.vars, out.payload) == (
        "invite-v2",
        {"tone": "warm"},
        _message().payload,
    )


def test_fields_go_into_vars_of_the_messages_own_template() -> None:
    """The message's template stays (and its version) when the variant has none."""
    message = _message(template="invite-v1", template_version=2)
    out = apply_variant(_spec(), 1, message)
    assert (out.template, out.template_version) == ("invite-v1", 2)
    assert out.vars == {"subject": "You're invited"}


def test_a_field_both_give_is_refused() -> None:
    """The message's own field clashes with the variant's: ValueError naming it, no value."""
    message = _message(payload={"to": "ann@example.com", "subject": "Ann's own subject"})
    with pytest.raises(ValueError) as caught:
        apply_variant(_spec(), 1, message)
    assert str(caught.value) == (
        "payload.subject: given by the message and by variant 'warm' of experiment 'invite-subject'"
    )
    assert "ann" not in str(caught.value).lower()
    templated = _message(template="t", vars={"tone": "cold"})
    with pytest.raises(ValueError, match=r"^vars\.tone: given by the message and by variant 'b'"):
        apply_variant(parse_spec(TEMPLATED, name="exp"), 1, templated)


def test_applying_copies_so_the_spec_stays_as_written() -> None:
    """Changing the sent message's nested field does not change the experiment."""
    spec = parse_spec(_variants(A, {**B, "fields": {"tags": ["x"]}}), name="exp")
    out = apply_variant(spec, 1, _message())
    out.payload["tags"].append("y")
    assert spec.variants[1].fields == {"tags": ["x"]}


def test_an_unknown_variant_index_is_refused() -> None:
    """An index the experiment does not have is a ValueError."""
    with pytest.raises(ValueError, match="has no variant 2"):
        apply_variant(_spec(), 2, _message())


# --- unit identity --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "family", "expected"),
    [
        ({"to": "Ann.Canary@Example.com"}, "email", "ann.canary@example.com"),
        ({"to": "Ann Canary <Ann@Example.COM>"}, "email", "ann@example.com"),
        ({"to": ["Ben@Example.com", "ann@example.com"]}, "email", "ben@example.com"),
        ({"to": " +44 7700 900123 "}, "alerts", "+44 7700 900123"),
        ({"to": []}, "email", None),
        ({"text": "no addressee"}, "email", None),
        ({"to": "ann@example.com"}, "analytics", None),
    ],
)
def test_the_recipient_is_the_first_addressee_normalised(
    payload: dict[str, Any], family: str, expected: str | None
) -> None:
    """Email and SMS/call ``to``, a string or the first of a list, normalised; else None."""
    assert unit_identity(_spec(), _message(payload=payload), family) == expected


def test_a_user_unit_is_the_callers() -> None:
    """unit = "user": the producer's unit decides, so no identity is read from the message."""
    assert unit_identity(_spec(unit="user"), _message(), "email") is None


# --- the report -----------------------------------------------------------------------


def _report(spec: ExperimentSpec, counts: dict[int, tuple[int, int, int]], **kw: Any) -> Any:
    args: dict[str, Any] = {
        "phase": 1,
        "started_at": 1000.0,
        "stopped_at": None,
        "stop_reason": None,
        "now": 1000.0 + DAY,
    }
    return experiment_report(spec, counts=counts, **{**args, **kw})


def test_report_figures_by_hand() -> None:
    """10/100 against 20/100: rates, Wilson, lift 1.0 with its delta interval, the z-test p."""
    report = _report(_spec(), {0: (120, 100, 10), 1: (110, 100, 20)})
    control, warm = report.variants
    assert (control.name, control.assigned, control.exposures, control.conversions) == (
        "control",
        120,
        100,
        10,
    )
    assert (control.rate, warm.rate) == (0.1, 0.2)
    assert control.rate_interval is not None
    assert (round(control.rate_interval.low, 4), round(control.rate_interval.high, 4)) == (
        0.0552,
        0.1744,
    )
    assert control.lift is None and control.p_value is None
    assert warm.lift == pytest.approx(1.0)
    half = Z95 * math.sqrt(0.8 / 20 + 0.9 / 10)
    assert warm.lift_interval is not None
    assert warm.lift_interval.low == pytest.approx(math.exp(math.log(2) - half) - 1)
    assert warm.lift_interval.high == pytest.approx(math.exp(math.log(2) + half) - 1)
    z = 0.1 / math.sqrt(0.15 * 0.85 * (2 / 100))
    assert warm.p_value == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert warm.p_value == pytest.approx(0.0477, abs=1e-4)
    assert warm.always_valid_p_value is None and warm.always_valid_lift_interval is None
    assert (report.srm.status, report.srm.chi_square) == (SrmStatus.OK, 0.0)
    assert report.decision.stop is False
    assert report.decision.reason is StopReason.NOT_SIGNIFICANT


def test_sequential_reports_the_msprt_figures() -> None:
    """With sequential on, the always-valid p is exp(-log Lambda) of the normal mixture."""
    report = _report(_spec(sequential=True), {0: (100, 100, 10), 1: (100, 100, 20)})
    theta, v, t2 = math.log(2), 0.8 / 20 + 0.9 / 10, DEFAULT_TAU**2
    log_lr = 0.5 * math.log(v / (v + t2)) + t2 * theta**2 / (2 * v * (v + t2))
    assert report.variants[1].always_valid_p_value == pytest.approx(math.exp(-log_lr))
    assert report.variants[1].always_valid_p_value == pytest.approx(0.7403, abs=1e-4)
    assert report.variants[1].always_valid_lift_interval is not None


def test_missing_counts_are_zero_and_srm_waits_below_8_units() -> None:
    """A variant without counts has none; the SRM check waits until each has 8 exposures."""
    empty = _report(_spec(), {})
    assert [v.exposures for v in empty.variants] == [0, 0]
    assert empty.variants[0].rate is None and empty.variants[0].rate_interval is None
    assert _report(_spec(), {0: (7, 7, 1), 1: (30, 30, 2)}).srm.status is SrmStatus.WAITING
    assert _report(_spec(), {0: (8, 8, 1), 1: (8, 8, 2)}).srm.status is SrmStatus.OK


def test_a_53_47_split_of_50_50_is_a_mismatch_and_stops() -> None:
    """5300/4700 exposures: chi-square 36 (p = erfc(sqrt 18)), a mismatch the rule stops on."""
    report = _report(_spec(), {0: (5300, 5300, 530), 1: (4700, 4700, 470)})
    assert report.srm.status is SrmStatus.MISMATCH
    assert report.srm.chi_square == pytest.approx(36.0)
    assert report.srm.p_value == pytest.approx(math.erfc(math.sqrt(18)))
    assert (report.decision.stop, report.decision.reason) == (
        True,
        StopReason.SAMPLE_RATIO_MISMATCH,
    )


def test_the_stop_rule_reads_elapsed_days_to_now_or_to_the_stop() -> None:
    """max_days 2: at day 3 it says stop; a phase stopped on day 1 is judged on day 1."""
    spec = _spec(stop={"max_days": 2, "min_units_per_variant": 0})
    counts = {0: (10, 10, 1), 1: (10, 10, 1)}
    running = _report(spec, counts, started_at=0.0, now=3 * DAY)
    assert (running.decision.stop, running.decision.reason) == (True, StopReason.MAX_DURATION)
    stopped = _report(
        spec, counts, started_at=0.0, stopped_at=DAY, stop_reason="operator", now=3 * DAY
    )
    assert stopped.decision.reason is StopReason.NOT_SIGNIFICANT
    assert (stopped.stopped_at, stopped.stop_reason) == (DAY, "operator")
    assert stopped.stop_rule == spec.stop.describe()


def test_counts_for_a_variant_it_lacks_are_refused() -> None:
    """Counts naming variant 5 of a two-variant experiment are a caller's error."""
    with pytest.raises(ValueError, match="counts for variant 5"):
        _report(_spec(), {5: (1, 1, 0)})
    with pytest.raises(ValueError, match=r"conversions .* exceed units"):
        _report(_spec(), {0: (3, 2, 3)})


def test_report_json_is_plain_json_with_stable_keys() -> None:
    """No NaN anywhere (empty arms give nulls), every key present, the deciding variant named."""
    spec = _spec(sequential=True, stop={"min_units_per_variant": 0}, auto_stop=True)
    for counts in (
        {},
        {0: (50, 40, 0), 1: (50, 40, 0)},
        {0: (10**4, 10**4, 100), 1: (10**4, 10**4, 300)},
    ):
        out = report_json(_report(spec, counts))
        text = json.dumps(out, allow_nan=False)
        assert json.loads(text) == out
        assert sorted(out) == sorted(
            [
                "name", "phase", "started_at", "stopped_at", "stop_reason", "conversion",
                "confidence", "sequential", "variants", "srm", "stop_rule", "decision", "auto_stop",
            ]
        )  # fmt: skip
        assert sorted(out["srm"]) == ["chi_square", "min_units", "p_value", "status", "threshold"]
        assert sorted(out["decision"]) == ["explanation", "reason", "stop", "variant"]
        assert all(len(row) == 12 for row in out["variants"])
    assert out["decision"] == {
        "stop": True,
        "reason": "significant",
        "explanation": out["decision"]["explanation"],
        "variant": "warm",
    }
    assert out["variants"][1]["rate"] == 0.03 and out["auto_stop"] is True
