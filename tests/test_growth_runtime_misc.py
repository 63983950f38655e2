"""The smaller growth parts: forwarding to analytics, the K gauge, ``[growth]``'s problems
with other sections, the text views, and reading a JSON-lines file of events."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest
from prometheus_client import CollectorRegistry

from ringbearer._cli_base import UsageError
from ringbearer._cli_growth import _by_line, read_events
from ringbearer._errors import ErrorCode, RequestError
from ringbearer._views_growth import (
    bar,
    format_assignment,
    format_experiment,
    format_experiments,
    format_explain,
    format_partners,
    format_readout,
    format_report,
)
from ringbearer.control import MessageIn, Submit
from ringbearer.control import _replies as r
from ringbearer.control._growth_replies import (
    AssignReply,
    CohortView,
    DecisionView,
    ExperimentsReply,
    ExperimentView,
    ExplainReply,
    GrowthReportReply,
    InviteStoryView,
    PartnersReply,
    PartnerView,
)
from ringbearer.growth._cohorts import Growth
from ringbearer.growth._events import (
    Channel,
    InviteAccepted,
    InviteSent,
    Role,
    Signup,
    VendorBooked,
)
from ringbearer.growth._experiments import experiment_report, parse_spec, report_json
from ringbearer.growth._forwarding import BATCH, Forwarder
from ringbearer.growth._metrics import LAST_COHORTS, watch_growth
from ringbearer.growth._recording import Recorded
from ringbearer.growth._settings import GrowthSettings, growth_problems

T0 = 1_750_000_000.0  # 2025-06-15T15:06:40Z
DAY = 86400.0
LONDON = ZoneInfo("Europe/London")
SID = "s_" + "0" * 32  # a subject id, as the recorder names people

# -- forwarding ------------------------------------------------------------------------------

SIGNUP = Signup("u1", T0, Role.COUPLE, SID, None, dt.date(2025, 9, 20))
INVITE = InviteSent("i1", "u1", SID, Channel.EMAIL, T0 + 0.25)
ACCEPTED = InviteAccepted("i1", "u2", T0 + 1)
BOOKING = VendorBooked("u1", SID, "Lens Studio", "photographer", T0 + 2)
PERSONAL = ("Ann@Example.com", "Bea@Example.com", "Lens@Studio.example", "Lens Studio", SID)


@attrs.define
class Submitter:
    requests: list[Submit] = attrs.Factory(list)

    async def __call__(self, request: Submit) -> r.SubmitReply:
        self.requests.append(request)
        return r.SubmitReply([r.AcceptedMessage(1, m.key or "", False) for m in request.messages])


def recorded(event_id: int, event: Any, **clear: str) -> Recorded:
    return Recorded(event_id, event, clear)


async def forwarded(*batch: Recorded) -> list[MessageIn]:
    submit = Submitter()
    await Forwarder({"mp": "mixpanel", "amp": "amplitude"}, submit).recorded(batch)
    return [m for request in submit.requests for m in request.messages]


async def test_each_event_goes_to_each_target_in_its_shape() -> None:
    """Mixpanel: event, distinct_id, properties, time in seconds; Amplitude: event_type,
    user_id, event_properties, time in milliseconds; keyed by event id and target."""
    to_mixpanel, to_amplitude = await forwarded(recorded(5, SIGNUP, email="Ann@Example.com"))
    properties = {"user": "u1", "role": "couple", "wedding_date": "2025-09-20"}
    assert to_mixpanel == MessageIn(
        "mp",
        {"event": "signup", "distinct_id": "u1", "properties": properties, "time": T0},
        key="growth:5:mp",
        category="analytics",
    )
    assert to_amplitude == MessageIn(
        "amp",
        {"event_type": "signup", "user_id": "u1", "event_properties": properties,
         "time": 1_750_000_000_000},
        key="growth:5:amp",
        category="analytics",
    )  # fmt: skip


async def test_each_kind_is_about_its_user_and_names_no_one_else() -> None:
    """The invite's inviter, the acceptance's new user, the booking's couple; no invitee,
    no vendor's address or name, no sign-up's address, in clear or by subject id."""
    messages = await forwarded(
        recorded(1, SIGNUP, email="Ann@Example.com"),
        recorded(2, INVITE, invitee="Bea@Example.com"),
        recorded(3, ACCEPTED),
        recorded(4, BOOKING, vendor_email="Lens@Studio.example", vendor_name="Lens Studio"),
    )
    mixpanel = [m.payload for m in messages if m.target == "mp"]
    assert [(p["event"], p["distinct_id"], p["properties"]) for p in mixpanel[1:]] == [
        ("invite_sent", "u1", {"invite": "i1", "inviter": "u1", "channel": "email"}),
        ("invite_accepted", "u2", {"invite": "i1", "user": "u2"}),
        ("vendor_booked", "u1", {"couple": "u1", "vendor_type": "photographer"}),
    ]
    amplitude = [m.payload for m in messages if m.target == "amp"]
    assert [p["time"] for p in amplitude] == [1_750_000_000_000, 1_750_000_000_250,
                                              1_750_000_001_000, 1_750_000_002_000]  # fmt: skip
    text = json.dumps([m.payload for m in messages])
    assert not any(value in text for value in PERSONAL)
    assert [m.key for m in messages] == [f"growth:{n}:mp" for n in range(1, 5)] + [
        f"growth:{n}:amp" for n in range(1, 5)
    ]


async def test_messages_go_in_submits_of_a_thousand() -> None:
    """600 events to two targets: 1,200 messages, in submits of 1,000 and 200."""
    submit = Submitter()
    batch = [recorded(n, attrs.evolve(ACCEPTED, invite=f"i{n}")) for n in range(600)]
    await Forwarder({"mp": "mixpanel", "amp": "amplitude"}, submit).recorded(batch)
    assert BATCH == 1_000
    assert [len(request.messages) for request in submit.requests] == [1000, 200]
    keys = [m.key for request in submit.requests for m in request.messages]
    assert len(set(keys)) == 1200 and keys[999] == "growth:399:amp"


async def test_no_targets_no_submit() -> None:
    """Nothing to forward to: no submit at all."""
    submit = Submitter()
    await Forwarder({}, submit).recorded([recorded(1, ACCEPTED)])
    assert submit.requests == []


# -- the K gauge -----------------------------------------------------------------------------


def k_of(registry: CollectorRegistry, by: str, cohort: str) -> float | None:
    return registry.get_sample_value("ringbearer_growth_k", {"by": by, "cohort": cohort})


def test_the_gauge_shows_the_last_12_cohorts_of_each_view() -> None:
    """14 monthly cohorts (2024-05 to 2025-06): the 12 latest shown; a view's None cohort is
    not; in June, two users and one accepted invite make K 1/2."""
    model = Growth(LONDON)
    for month in range(14):
        year, m = divmod(4 + month, 12)
        at = dt.datetime(2024 + year, m + 1, 15, 12, tzinfo=dt.UTC).timestamp()
        model.apply(Signup(f"u{month}", at, Role.COUPLE, None, None, dt.date(2026, 1, 10)))
    model.apply(InviteSent("i1", "u13", "bea@example.com", Channel.EMAIL, T0))
    model.apply(InviteAccepted("i1", "u14", T0 + DAY))
    model.apply(Signup("u14", T0 + DAY, Role.COUPLE, None))
    registry = CollectorRegistry()
    watch_growth(registry, model)
    samples = [s for f in registry.collect() for s in f.samples if s.name == "ringbearer_growth_k"]
    by_month = [s.labels["cohort"] for s in samples if s.labels["by"] == "signup_month"]
    assert LAST_COHORTS == 12
    assert by_month == [f"2024-{m:02d}" for m in (7, 8, 9, 10, 11, 12)] + [
        f"2025-{m:02d}" for m in (1, 2, 3, 4, 5, 6)
    ]
    assert k_of(registry, "signup_month", "2025-06") == 0.5
    assert k_of(registry, "signup_month", "2025-05") == 0.0
    assert k_of(registry, "signup_month", "2024-05") is None  # older than the last 12
    assert k_of(registry, "wedding_month", "2026-01") == 1 / 14
    assert k_of(registry, "role", "couple") == 1 / 15
    assert [s.labels["cohort"] for s in samples if s.labels["by"] == "vendor_type"] == []
    assert k_of(registry, "wedding_month", "None") is None


def test_the_gauge_reads_the_model_at_each_scrape() -> None:
    """A cohort that appears after registering shows at the next scrape."""
    model = Growth(LONDON)
    registry = CollectorRegistry()
    watch_growth(registry, model)
    assert k_of(registry, "role", "vendor") is None
    model.apply(Signup("v1", T0, Role.VENDOR, None, "florist"))
    assert k_of(registry, "role", "vendor") == 0.0
    assert k_of(registry, "vendor_type", "florist") == 0.0


# -- [growth] and the other sections ---------------------------------------------------------


@attrs.frozen
class Routes:
    """A config's routing as growth_problems reads it."""

    families: dict[str, str]
    categories: tuple[str, ...] = ("transactional", "marketing", "invites")

    def family_of(self, target: str) -> str:
        return self.families.get(target, "")

    @property
    def deliverability(self) -> Any:
        return SimpleNamespace(categories=self.categories)


ROUTES = Routes({"mp": "analytics", "amp": "analytics", "email": "email", "sms": "sms"})


def test_forwarding_to_a_target_that_is_not_analytics_is_a_problem() -> None:
    """Email and unknown targets are named by their index in ``forward``."""
    settings = GrowthSettings(forward=("mp", "email", "nowhere", "amp"))
    assert growth_problems(settings, ROUTES) == [
        ("growth.forward[1]",
         "'email' is not an analytics integration or group (Mixpanel, Amplitude)"),
        ("growth.forward[2]",
         "'nowhere' is not an analytics integration or group (Mixpanel, Amplitude)"),
    ]  # fmt: skip


def test_the_opportunities_target_must_be_email() -> None:
    """The rules send email: an SMS target is named."""
    settings = GrowthSettings(opportunities={"target": "sms"})
    assert growth_problems(settings, ROUTES) == [
        ("growth.opportunities.target", "'sms' is not an email integration or group"),
    ]


def test_each_rules_category_must_be_known() -> None:
    """A category of the rule's own, and the default ``invites`` where a config lacks it."""
    settings = GrowthSettings(opportunities={"referral_ask": {"category": "partners"}})
    routes = attrs.evolve(ROUTES, categories=("transactional", "marketing"))
    assert growth_problems(settings, routes) == [
        ("growth.opportunities.vendor_invite.category",
         "'invites' is not in [deliverability] categories"),
        ("growth.opportunities.referral_ask.category",
         "'partners' is not in [deliverability] categories"),
    ]  # fmt: skip


def test_an_unwritten_opportunities_table_says_nothing() -> None:
    """No [growth.opportunities]: no email target or category is required."""
    assert growth_problems(GrowthSettings(), Routes({}, categories=())) == []
    assert growth_problems(GrowthSettings(), ROUTES) == []


def test_growth_settings_refuse_bad_tables_naming_them() -> None:
    """Opportunities and experiments tables are checked when read, naming the key."""
    with pytest.raises(ValueError, match=r"^opportunities: growth\.opportunities: unknown key"):
        GrowthSettings(opportunities={"when": "now"})
    with pytest.raises(ValueError, match=r"^experiments\.subject: variants: missing"):
        GrowthSettings(experiments={"subject": {}})
    with pytest.raises(ValueError, match=r"^experiments\.subject: expected a table"):
        GrowthSettings(experiments={"subject": []})  # type: ignore[dict-item]


# -- the views -------------------------------------------------------------------------------


def test_a_bar_is_drawn_in_eighths_of_a_cell() -> None:
    """Full cells, then one partial cell; nothing for zero, never past the width."""
    assert bar(1.0, 1.0) == "█" * 30
    assert bar(0.5, 1.0) == "█" * 15
    assert bar(1, 8, width=1) == "▏"  # an eighth of one cell
    assert bar(3, 8, width=2) == "▊"  # 3/8 of 2 cells: 6 eighths of one
    assert bar(3, 4, width=2) == "█▌"  # 3/4 of 2 cells: one cell and a half
    assert bar(2.0, 1.0, width=4) == "████"  # never past the width
    assert bar(0.0, 1.0) == "" and bar(1.0, 0.0) == ""


def test_the_report_is_a_table_with_a_chart_of_k() -> None:
    """K 0.25 is the longest bar (30 cells), 0.2 is 24; small cohorts and None marked."""
    reply = GrowthReportReply(
        30, "signup_month",
        [CohortView("2025-05", 40, 20, 10, 0.5, 0.5, 0.25, 3.5, False),
         CohortView("2025-06", 5, 5, 1, 1.0, 0.2, 0.2, None, True),
         CohortView(None, 2, 0, 0, 0.0, None, 0.0, None, True)],
        20, 123, 1, 2, 3,
    )  # fmt: skip
    assert format_report(reply).split("\n") == [
        "viral coefficient by signup_month (accepted within 30 days; cohorts under 20 users"
        " are marked small)",
        "COHORT   USERS  INVITES  ACCEPTED  INV/USER  CONV  K      CYCLE",
        "2025-05     40       20        10      0.50  0.50  0.250    3.5  " + "█" * 30,
        "2025-06      5        5         1      1.00  0.20  0.200      -  " + "█" * 24 + "  small",
        "(none)       2        0         0      0.00     -  0.000      -    small",
        "123 events kept; unmatched: 1 acceptance(s), 2 inviter(s) not signed up,"
        " 3 booking couple(s) not signed up",
    ]


def test_a_report_without_users_says_so() -> None:
    """No cohorts: the head, then a line saying there are no users yet."""
    reply = GrowthReportReply(30, "role", [], 20, 0, 0, 0, 0)
    assert format_report(reply).split("\n")[1] == "no users yet"


def test_partners_are_listed_by_couples() -> None:
    """Couples right-aligned, an erased vendor by its placeholder; none yet said so."""
    reply = PartnersReply("Lens Studio", 3, [PartnerView("Bloom", 2), PartnerView("(erased)", 1)])
    assert format_partners(reply).split("\n") == [
        "vendors booked by the 3 couple(s) who booked Lens Studio",
        "COUPLES  VENDOR",
        "      2  Bloom",
        "      1  (erased)",
    ]
    assert format_partners(PartnersReply("Bloom", 1, [])) == (
        "vendors booked by the 1 couple(s) who booked Bloom: none yet"
    )


def test_a_users_story_names_cohorts_invites_and_decisions() -> None:
    """Cohorts by view, each invite's fate, a repeat marked, each decision in UTC."""
    reply = ExplainReply(
        "c1", T0,
        {"signup_month": "2025-06", "wedding_month": None, "role": "couple", "vendor_type": None},
        [InviteStoryView("i1", T0 + 60, "email", True, T0 + 3600, True),
         InviteStoryView("i2", T0 + 120, "sms", False, None, True)],
        1, 1, [], 2,
        [DecisionView(T0 + 7200, "vendor_invite", "scheduled", "scheduled", 7),
         DecisionView(T0 + 7260, "referral_ask", "skipped", "couple unknown", None)],
    )  # fmt: skip
    assert format_explain(reply).split("\n") == [
        "user c1: signed up 2025-06-15T15:06:40Z; cohorts: signup_month 2025-06,"
        " wedding_month (none), role couple, vendor_type (none)",
        "invited 1 distinct invitee(s), 1 accepted within the window; joined through no"
        " invite; 2 vendor(s) booked",
        "  invite i1 by email 2025-06-15T15:07:40Z: accepted 2025-06-15T16:06:40Z",
        "  invite i2 by sms 2025-06-15T15:08:40Z (a repeat to the same invitee): not accepted",
        "  2025-06-15T17:06:40Z rule vendor_invite: scheduled (message 7): scheduled",
        "  2025-06-15T17:07:40Z rule referral_ask: skipped: couple unknown",
    ]


def test_a_user_without_a_signup_is_said_so() -> None:
    """No sign-up: not counted, but the invites they accepted are listed."""
    reply = ExplainReply("u9", None, {}, [], 0, 0, ["i1", "i2"], 0, [])
    assert format_explain(reply).split("\n") == [
        "user u9: no sign-up kept (not counted in any cohort)",
        "invited 0 distinct invitee(s), 0 accepted within the window; joined through i1, i2;"
        " 0 vendor(s) booked",
    ]


def test_experiments_and_assignments_in_a_line() -> None:
    """Running or stopped with its reason; outside coverage or a variant and its record."""
    spec = {"variants": [{"name": "control", "weight": 0.5}, {"name": "warm", "weight": 0.5}]}
    running = ExperimentView("subject-line", 2, spec, T0, "ops", None, None)
    stopped = attrs.evolve(running, stopped_at=T0 + 1, stop_reason="enough")
    assert format_experiment(running) == (
        "experiment subject-line phase 2 (running); variants control 0.5, warm 0.5"
    )
    assert format_experiments(ExperimentsReply([running, stopped])).split("\n")[1] == (
        "experiment subject-line phase 2 (stopped: enough); variants control 0.5, warm 0.5"
    )
    assert format_experiments(ExperimentsReply([])) == "no experiments"
    assert format_assignment(AssignReply("subject-line", 1, None, None, None)) == (
        "experiment subject-line phase 1: outside the experiment's coverage"
    )
    assert format_assignment(AssignReply("subject-line", 1, 1, "warm", 0)) == (
        "experiment subject-line phase 1: variant 1 (warm); recorded: variant 0"
    )


def test_the_readout_has_a_row_per_variant_and_the_rule() -> None:
    """10/100 against 20/100: 10% and 20%, lift +100%, p 0.0477; the lift interval is the
    delta method's exp(log 2 -+ 1.96 sqrt(0.13)) - 1 = [-1.3%, +305.4%]."""
    spec = parse_spec(
        {"variants": [{"name": "control", "weight": 0.5}, {"name": "warm", "weight": 0.5}]},
        name="subject-line",
    )
    report = experiment_report(
        spec, phase=1, started_at=T0, stopped_at=None, stop_reason=None,
        counts={0: (100, 100, 10), 1: (100, 100, 20)}, now=T0 + DAY,
    )  # fmt: skip
    half = 1.959963984540054 * math.sqrt(0.8 / 20 + 0.9 / 10)
    assert math.exp(math.log(2) - half) - 1 == pytest.approx(-0.0134, abs=1e-4)
    assert math.exp(math.log(2) + half) - 1 == pytest.approx(3.0545, abs=1e-4)
    lines = format_readout(report_json(report)).split("\n")
    assert lines[0] == (
        "experiment subject-line phase 1 (running), conversion: opened, confidence 0.95"
    )
    assert lines[1].split() == ["VARIANT", "WEIGHT", "EXPOSED", "CONVERTED", "RATE", "LIFT",
                                "P", "LIFT", "INTERVAL"]  # fmt: skip
    assert lines[2].split() == ["control", "0.5", "100", "10", "10.00%", "-", "-", "-"]
    assert lines[3].split() == [
        "warm", "0.5", "100", "20", "20.00%", "+100.0%", "0.0477", "[-1.3%,", "+305.4%]",
    ]  # fmt: skip
    assert lines[4] == "sample ratio: ok (p = 1.0000)"
    assert lines[5] == f"stop rule: {spec.stop.describe()}"
    assert lines[6].startswith("the rule says: go on: ")
    assert lines[6].endswith(" (nothing stops by itself)")


# -- reading events from a file --------------------------------------------------------------


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "events.jsonl"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_events_come_with_their_line_numbers(tmp_path: Path) -> None:
    """Blank lines are skipped and still counted."""
    given = write(tmp_path, '{"event": "a"}\n\n   \n{"event": "b"}\n')
    assert read_events(given) == [(1, {"event": "a"}), (4, {"event": "b"})]


def test_events_are_read_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    """``-`` reads standard input."""
    monkeypatch.setattr("sys.stdin", io.StringIO('{"event": "a"}\n'))
    assert read_events("-") == [(1, {"event": "a"})]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('{"event": "a"}\n{"event": \n', r"line 2: not JSON: Expecting value"),
        ('{"event": "a"}\n\n[1, 2]\n', r"line 3: an event is a JSON object"),
        ("\n  \n", r"holds no events"),
    ],
)
def test_a_bad_file_is_refused_naming_its_line(tmp_path: Path, text: str, said: str) -> None:
    """Not JSON, not an object, or no events at all: named with the file and line."""
    given = write(tmp_path, text)
    with pytest.raises(UsageError, match=f"^{re.escape(given)} {said}"):
        read_events(given)


def test_a_missing_file_cannot_be_read(tmp_path: Path) -> None:
    """A file that is not there is a usage error naming it."""
    missing = str(tmp_path / "none.jsonl")
    with pytest.raises(UsageError, match=f"^cannot read {re.escape(missing)}: "):
        read_events(missing)


def test_the_daemons_event_index_is_said_as_the_files_line() -> None:
    """events[i] of a chunk starting at ``start`` is the file's events[start + i]."""
    events: list[tuple[int, Any]] = [(1, {}), (3, {}), (4, {}), (9, {})]
    error = RequestError(ErrorCode.BAD_ARGS, "events[1]: at: missing")
    said = _by_line(error, events, 0)
    assert (said.code, said.message) == (ErrorCode.BAD_ARGS, "line 3: at: missing")
    assert _by_line(error, events, 2).message == "line 9: at: missing"


def test_other_errors_pass_as_they_are() -> None:
    """A message not about one event is returned unchanged."""
    events: list[tuple[int, Any]] = [(1, {})]
    for message in ("growth-record needs at least one event", "events[x]: odd", "events: none"):
        error = RequestError(ErrorCode.BAD_ARGS, message)
        assert _by_line(error, events, 0) is error
