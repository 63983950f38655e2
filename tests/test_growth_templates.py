"""Templates: limits hit and named, missing variables named, identical bytes, wedding helpers."""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from collections.abc import Mapping
from typing import Any

import pytest

from ringbearer.growth._stages import Planning, StageSettings
from ringbearer.growth._templates import (
    BadVariable,
    Engine,
    Limit,
    LimitExceeded,
    MissingVariable,
    Rendered,
    RenderFailed,
    Template,
    TemplateLimits,
    TemplateSyntaxError,
)

LONDON = zoneinfo.ZoneInfo("Europe/London")
PLAN = Planning(StageSettings(), "Europe/London")
NOW = dt.datetime(2027, 6, 1, 9, 0, tzinfo=LONDON).timestamp()
# 10^12 loop steps: with loop_iterations raised out of the way, only the clock stops it.
FOREVER = "{% for a in (1..1000000) %}{% for b in (1..1000000) %}{% endfor %}{% endfor %}"


def engine(**limits: Any) -> Engine:
    return Engine(TemplateLimits(**limits), PLAN)


def text(source: str) -> Template:
    return Template.of("t", 1, {"text": source})


def render(source: str, variables: Mapping[str, object] | None = None, **limits: object) -> str:
    return engine(**limits).render(text(source), variables or {}, NOW).payload()["text"]


def over(source: str, variables: Mapping[str, object] | None = None, **limits: object) -> Limit:
    with pytest.raises(LimitExceeded) as caught:
        render(source, variables, **limits)
    assert f"over the {caught.value.limit.value} limit" in str(caught.value)
    return caught.value.limit


class Ticker:
    """A clock that moves one millisecond each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


INVITE = Template.of(
    "invite",
    3,
    {
        "subject": "{{ wedding.couple }} are getting married",
        "text": "Dear {{ guest.name }},\n{{ wedding.date | date: '%A %-d %B %Y' }}: "
        "{{ wedding.days_until }} days to go ({{ wedding.stage }}).\n"
        "{% for item in guest.plus_ones %}+ {{ item }}\n{% endfor %}",
        "html": "<p>Dear {{ guest.name }}</p><p>{{ wedding.couple }}</p>",
    },
)
INVITE_VARS = {
    "couple": ["Ana", "Ben"],
    "wedding_date": "2027-06-12",
    "guest": {"name": "Cleo <3", "plus_ones": ["Dev", "Eli"]},
}


# --- the payload ---


def test_a_template_renders_to_its_payload_fields() -> None:
    """Each field's source becomes the payload field of the same name, HTML escaped in ``html``."""
    rendered = Engine(planning=PLAN).render(INVITE, INVITE_VARS, NOW)
    assert rendered.template == "invite"
    assert rendered.version == 3
    assert rendered.payload() == {
        "subject": "Ana & Ben are getting married",
        "text": "Dear Cleo <3,\nSaturday 12 June 2027: 11 days to go (final).\n+ Dev\n+ Eli\n",
        "html": "<p>Dear Cleo &lt;3</p><p>Ana &amp; Ben</p>",
    }
    assert [f for f, _ in rendered.fields] == ["subject", "text", "html"]


# --- determinism ---


def test_the_same_version_and_vars_give_identical_bytes() -> None:
    """Two engines, two renders, a compiled and an uncompiled template: the same bytes."""
    first = Engine(planning=PLAN).render(INVITE, INVITE_VARS, NOW)
    other = Engine(planning=PLAN)
    second = other.render(other.compile(INVITE), dict(INVITE_VARS), NOW)
    assert first.canonical() == second.canonical()
    assert first.digest() == second.digest()
    assert first.canonical() == (
        b'{"html":"<p>Dear Cleo &lt;3</p><p>Ana &amp; Ben</p>",'
        b'"subject":"Ana & Ben are getting married",'
        b'"text":"Dear Cleo <3,\\nSaturday 12 June 2027: 11 days to go (final).'
        b'\\n+ Dev\\n+ Eli\\n"}'
    )


def test_later_the_same_day_gives_the_same_bytes() -> None:
    """The wall time enters only by its local date, so a retry hours later renders the same."""
    engine = Engine(planning=PLAN)
    morning = engine.render(INVITE, INVITE_VARS, NOW)
    evening = engine.render(INVITE, INVITE_VARS, NOW + 14 * 3600)
    assert morning.canonical() == evening.canonical()


def test_the_date_filter_reads_no_clock() -> None:
    """``now`` and ``today`` would make bytes depend on when they were rendered: refused."""
    for word in ("now", "today"):
        with pytest.raises(RenderFailed, match="'now' and 'today' are not allowed"):
            render(f"{{{{ '{word}' | date: '%Y' }}}}")


def test_the_date_filter_names_are_english_whatever_the_locale() -> None:
    """Names come from the engine's own tables, not the host's locale."""
    assert render("{{ '2027-01-03' | date: '%a %A %b %B %d %-d %e %j %y' }}") == (
        "Sun Sunday Jan January 03 3  3 003 27"
    )
    with pytest.raises(RenderFailed, match="directive %c is not supported"):
        render("{{ '2027-01-03' | date: '%c' }}")


def test_no_template_reaches_a_file() -> None:
    """``include`` and ``render`` would read other templates: they are not tags here."""
    for tag in ("include", "render"):
        with pytest.raises(TemplateSyntaxError, match=f"unexpected tag '{tag}'"):
            render(f"{{% {tag} 'other' %}}")


# --- limits ---


def test_source_bytes_limit() -> None:
    """64 KiB of sources compile; one byte more is refused, naming ``source_bytes``."""
    fits = Template.of("big", 1, {"subject": "s" * 1024, "text": "x" * (63 * 1024)})
    Engine(planning=PLAN).compile(fits)
    too_big = Template.of("big", 1, {"subject": "s" * 1025, "text": "x" * (63 * 1024)})
    with pytest.raises(LimitExceeded) as caught:
        Engine(planning=PLAN).compile(too_big)
    assert caught.value.limit is Limit.SOURCE_BYTES
    assert str(caught.value) == "template 'big': over the source_bytes limit (65536)"


def test_render_seconds_stops_a_template_that_would_loop_for_ever() -> None:
    """With the loop bound out of the way, the clock alone stops 10^12 steps, soon."""
    started = time.perf_counter()
    limit = over(FOREVER, render_seconds=0.05, loop_iterations=10**13)
    assert limit is Limit.RENDER_SECONDS
    assert time.perf_counter() - started < 5.0


def test_render_seconds_on_an_injected_clock() -> None:
    """The deadline is read on the engine's clock: 200 readings of 1 ms each, then it stops."""
    clock = Ticker()
    bounded = Engine(TemplateLimits(render_seconds=0.2), PLAN, clock=clock)
    with pytest.raises(LimitExceeded) as caught:
        bounded.render(text("{% for i in (1..1000) %}{{ i }}{% endfor %}"), {}, NOW)
    assert caught.value.limit is Limit.RENDER_SECONDS
    assert "over the render_seconds limit (0.2)" in str(caught.value)
    assert 0.2 < clock.now < 0.21
    fits = bounded.render(text("{% for i in (1..20) %}{{ i }}{% endfor %}"), {}, NOW)
    assert fits.payload()["text"] == "".join(str(i) for i in range(1, 21))


@pytest.mark.parametrize(
    "source",
    [
        FOREVER,
        "{{ (1..100000000) | join: ',' }}",
        "{% if (1..1000000000000000000000) contains 'a' %}yes{% endif %}",
        "{% for g in guests %}{% for h in guests %}{% endfor %}{% endfor %}",
    ],
)
def test_loop_iterations_limit(source: str) -> None:
    """Nested loops multiply, ranges count whole: each is stopped before it runs, by name."""
    started = time.perf_counter()
    assert over(source, {"guests": list(range(400))}) is Limit.LOOP_ITERATIONS
    assert time.perf_counter() - started < 2.0


def test_output_bytes_limit_counts_utf8_bytes() -> None:
    """Ten bytes fit a 10-byte limit; eleven, or five two-byte letters and one more, do not."""
    assert render("0123456789", output_bytes=10) == "0123456789"
    assert over("0123456789x", output_bytes=10) is Limit.OUTPUT_BYTES
    assert over("ééééé!", output_bytes=10) is Limit.OUTPUT_BYTES


def test_output_bytes_limit_is_for_all_fields_together() -> None:
    """Two fields of six bytes each break a 10-byte limit, and the error names the second."""
    bounded = engine(output_bytes=10)
    with pytest.raises(LimitExceeded) as caught:
        bounded.render(Template.of("t", 1, {"subject": "abcdef", "text": "ghijkl"}), {}, NOW)
    assert caught.value.limit is Limit.OUTPUT_BYTES
    assert caught.value.field == "text"


def test_output_bytes_default_stops_a_runaway_loop() -> None:
    """300 copies of 1 KiB break the default 256 KiB."""
    source = "{% for i in (1..300) %}{{ chunk }}{% endfor %}"
    assert over(source, {"chunk": "x" * 1024}) is Limit.OUTPUT_BYTES


# A value of 640 KiB, within value_bytes (1 MiB).
BIG = (
    "{% assign big = 'aaaaaaaaaa' %}"
    "{% for i in (1..16) %}{% assign big = big | append: big %}{% endfor %}"
)


@pytest.mark.parametrize(
    "source",
    [
        # Doubling a value: 10 bytes x 2^20.
        "{% assign s = '0123456789' %}{% for i in (1..20) %}{% assign s = s | append: s %}"
        "{% endfor %}{{ s | size }}",
        # Capturing into a value, not the output.
        "{% capture c %}{% for i in (1..3000) %}{{ kib }}{% endfor %}{% endcapture %}ok",
        # One join whose result would be 10^5 x 640 KiB: refused before it is built.
        BIG + "{{ (1..100000) | join: big | size }}",
        # One replace whose result would be 640 KiB x 640 Ki: refused before it is built.
        BIG + "{{ big | replace: 'a', big | size }}",
        # Replacements that multiply in one expression: 46^5 bytes.
        "{{ 'a' | replace: 'a', aa | replace: 'a', aa | replace: 'a', aa | replace: 'a', aa "
        "| replace: 'a', aa | size }}",
    ],
)
def test_value_bytes_limit(source: str) -> None:
    """What a template builds in memory is bounded, and refused fast, naming ``value_bytes``."""
    started = time.perf_counter()
    assert over(source, {"aa": "a" * 46, "kib": "k" * 1024}) is Limit.VALUE_BYTES
    assert time.perf_counter() - started < 2.0


def test_nesting_limit() -> None:
    """Blocks nested deeper than the engine allows are refused at compile, naming ``nesting``."""
    deep = "{% if true %}" * 31 + "x" + "{% endif %}" * 31
    assert over(deep) is Limit.NESTING
    assert render("{% if true %}" * 5 + "x" + "{% endif %}" * 5) == "x"


def test_uniq_is_linear() -> None:
    """``uniq`` on 50,000 items keeps the first of each, quickly (the engine's is quadratic)."""
    started = time.perf_counter()
    source = (
        "{% assign back = (1..50000) | reverse %}{% assign again = (1..3) | reverse %}"
        "{{ back | concat: again | uniq | size }}"
    )
    assert render(source) == "50000"
    assert time.perf_counter() - started < 2.0
    people = [{"n": "a"}, {"n": "b"}, {"n": "a"}, {"x": 1}, {"x": 2}]
    assert render("{{ p | uniq: 'n' | size }}", {"p": people}) == "3"


# --- missing variables and other errors ---


@pytest.mark.parametrize(
    ("source", "variables", "missing"),
    [
        ("Hello {{ first_name }}", {}, "first_name"),
        ("{{ guest.first_name }}", {"guest": {}}, "guest.first_name"),
        ("{% for g in guests %}{{ g.email }}{% endfor %}", {"guests": [{}]}, "g.email"),
        ("{{ 'x' | append: guest.nick }}", {"guest": {}}, "guest.nick"),
        ("{% if rsvp %}yes{% endif %}", {}, "rsvp"),
        ("{{ guests[2].name }}", {"guests": [{"name": "a"}]}, "guests[2].name"),
    ],
)
def test_a_missing_variable_is_named(
    source: str, variables: Mapping[str, object], missing: str
) -> None:
    """Strict undefined: the error names the variable as the template writes it."""
    with pytest.raises(MissingVariable) as caught:
        render(source, variables)
    assert caught.value.variable == missing
    assert caught.value.field == "text"
    assert f"missing variable {missing}" in str(caught.value)


def test_a_missing_variable_gives_its_line() -> None:
    """The line is where the template uses it."""
    with pytest.raises(MissingVariable) as caught:
        render("Hello,\n\n{{ venue }}")
    assert caught.value.line == 3


def test_a_missing_variable_never_shows_a_value() -> None:
    """A key taken from the vars is named as written, not by its value (an address)."""
    variables = {"table": {}, "guest": {"email": "ana@example.com"}}
    with pytest.raises(MissingVariable) as caught:
        render("{{ table[guest.email] }}", variables)
    assert caught.value.variable == "table[guest.email]"
    assert "ana@example.com" not in str(caught.value)


def test_an_engine_error_never_quotes_the_vars() -> None:
    """Other render errors carry template text only; the engine's own words may hold values."""
    with pytest.raises(RenderFailed) as caught:
        render("{{ 10 | divided_by: guest.age }}", {"guest": {"age": 0}})
    assert caught.value.kind == "FilterArgumentError"
    assert str(caught.value) == (
        "template 't', field 'text': line 1: FilterArgumentError near 'divided_by'"
    )
    with pytest.raises(RenderFailed) as uniq:
        render("{{ guests | uniq: 'name' }}", {"guests": ["ana@example.com"]})
    assert "ana@example.com" not in str(uniq.value)


def test_a_missing_helper_says_what_it_needs() -> None:
    """``wedding.date`` without the var ``wedding_date`` says which var to give."""
    with pytest.raises(MissingVariable) as caught:
        render("{{ wedding.date }}")
    assert caught.value.variable == "wedding.date"
    assert "needs vars 'wedding_date'" in str(caught.value)


def test_syntax_errors_and_unknown_filters_are_found_at_compile() -> None:
    """A template that cannot parse, or names a filter that does not exist, is refused at put."""
    compiler = Engine(planning=PLAN)
    with pytest.raises(TemplateSyntaxError) as caught:
        compiler.compile(Template.of("t", 1, {"subject": "ok", "text": "a\n{% if %}"}))
    assert (caught.value.field, caught.value.line) == ("text", 2)
    with pytest.raises(TemplateSyntaxError, match="line 2: unknown filter 'shout'"):
        compiler.compile(text("Hello\n{{ 'x' | shout }}"))


def test_failures_past_the_engines_checks_are_render_errors() -> None:
    """Overflow in a filter, or a number too long to print, is a render error, not a crash."""
    with pytest.raises(RenderFailed, match="round failed on its input") as caught:
        render("{{ amount | round }}", {"amount": "inf"})
    assert caught.value.kind == "filter"
    huge = "9" * 4000
    with pytest.raises(RenderFailed, match="ValueError while rendering"):
        render(f"{{{{ {huge} | times: {huge} }}}}")


def test_templates_are_checked_values() -> None:
    """A template needs a name, a version from 1, and distinct fields."""
    with pytest.raises(ValueError, match="distinct"):
        Template("t", 1, (Template.of("t", 1, {"text": "a"}).parts * 2))
    with pytest.raises(ValueError, match="at least one field"):
        Template("t", 1, ())
    with pytest.raises(ValueError, match="must be >= 1"):
        Template.of("t", 0, {"text": "a"})
    with pytest.raises(ValueError, match="must match"):
        Template.of("Bad Name", 1, {"text": "a"})


# --- wedding helpers ---


def helpers(variables: Mapping[str, object], now: float, zone: str = "Europe/London") -> str:
    source = (
        "{{ wedding.date }}|{{ wedding.date | date: '%a %-d %b' }}|"
        "{{ wedding.at | date: '%H:%M' }}|{{ wedding.days_until }}|{{ wedding.stage }}"
    )
    planning = Planning(StageSettings(), zone)
    return Engine(planning=planning).render(text(source), variables, now).payload()["text"]


@pytest.mark.parametrize("given", ["2027-06-12T00:30:00+01:00", "2027-06-11T23:30:00Z"])
def test_a_wedding_at_half_past_midnight_is_on_its_local_day(given: str) -> None:
    """A wedding at 00:30 BST is on the 12th in London, though 23:30 UTC on the 11th."""
    variables = {"wedding_date": given}
    evening_before = dt.datetime(2027, 6, 11, 23, 45, tzinfo=LONDON).timestamp()
    assert helpers(variables, evening_before) == "2027-06-12|Sat 12 Jun|00:30|1|final"
    # 00:10 BST on the 12th is still the 11th in UTC: London counts 0 days.
    just_after_midnight = dt.datetime(2027, 6, 12, 0, 10, tzinfo=LONDON).timestamp()
    assert helpers(variables, just_after_midnight) == "2027-06-12|Sat 12 Jun|00:30|0|final"
    day_after = dt.datetime(2027, 6, 13, 0, 0, tzinfo=LONDON).timestamp()
    assert helpers(variables, day_after) == "2027-06-12|Sat 12 Jun|00:30|-1|married"


def test_the_same_instant_on_a_utc_calendar_is_the_day_before() -> None:
    """The zone is the calendar's: in UTC that wedding is on Friday the 11th at 23:30."""
    variables = {"wedding_date": "2027-06-12T00:30:00+01:00"}
    now = dt.datetime(2027, 6, 11, 23, 10, tzinfo=dt.UTC).timestamp()
    assert helpers(variables, now, zone="UTC") == "2027-06-11|Fri 11 Jun|23:30|0|final"


def test_the_date_filter_takes_a_zone() -> None:
    """``date: fmt, zone`` formats in the zone given."""
    source = "{{ wedding.at | date: '%Y-%m-%d %H:%M %Z', 'America/New_York' }}"
    variables = {"wedding_date": "2027-06-12T00:30:00+01:00"}
    assert render(source, variables) == "2027-06-11 19:30 EDT"


@pytest.mark.parametrize(
    ("names", "expected"),
    [(["Ana"], "Ana"), (["Ana", "Ben"], "Ana & Ben"), (["Ana", "Ben", "Cleo"], "Ana, Ben & Cleo")],
)
def test_the_couples_names(names: list[str], expected: str) -> None:
    """``wedding.couple`` joins the names; ``wedding.names`` keeps them."""
    assert render("{{ wedding.couple }}", {"couple": names}) == expected
    assert render("{{ wedding.names | join: '+' }}", {"couple": names}) == "+".join(names)


@pytest.mark.parametrize(
    ("variables", "variable"),
    [
        ({"couple": "Ana and Ben"}, "couple"),
        ({"couple": ["Ana", ""]}, "couple"),
        ({"wedding_date": "12/06/2027"}, "wedding_date"),
        ({"wedding_date": "2027-06-12T14:00:00"}, "wedding_date"),  # no offset
        ({"wedding_date": 20270612}, "wedding_date"),
        ({"wedding": {"date": "2027-06-12"}}, "wedding"),  # the helpers' reserved name
    ],
)
def test_vars_the_helpers_cannot_read_are_named(
    variables: Mapping[str, object], variable: str
) -> None:
    """A badly shaped var is named, and its value is not repeated."""
    with pytest.raises(BadVariable) as caught:
        render("x", variables)
    assert caught.value.variable == variable
    assert "2027" not in str(caught.value) and "Ana" not in str(caught.value)


def test_rendered_payload_is_plain_values() -> None:
    """What the store keeps: the name, the version and the fields, plain strings."""
    rendered = Rendered("t", 2, (("subject", "Hi"), ("text", "Body")))
    assert rendered.payload() == {"subject": "Hi", "text": "Body"}
    assert rendered.canonical() == b'{"subject":"Hi","text":"Body"}'
