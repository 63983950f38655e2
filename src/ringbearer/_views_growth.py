"""What the growth commands print: cohorts with a chart of K, partners, a user's story,
experiments and their readouts. Pure functions from replies to text."""

from __future__ import annotations

from typing import Any

from ._views import table, utc
from .control._growth_replies import (
    AssignReply,
    ExperimentsReply,
    ExperimentView,
    ExplainReply,
    GrowthReportReply,
    PartnersReply,
)

BAR_WIDTH = 30
_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: float, most: float, width: int = BAR_WIDTH) -> str:
    """``value`` as a bar of ``width`` cells at ``most``, in eighths of a cell."""
    if most <= 0 or value <= 0:
        return ""
    eighths = round(min(value / most, 1.0) * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_report(reply: GrowthReportReply) -> str:
    head = (
        f"viral coefficient by {reply.by} (accepted within {reply.window_days} days;"
        f" cohorts under {reply.min_cohort} users are marked small)"
    )
    rows = [("COHORT", "USERS", "INVITES", "ACCEPTED", "INV/USER", "CONV", "K", "CYCLE", "")]
    most = max((c.k for c in reply.cohorts), default=0.0)
    for c in reply.cohorts:
        rows.append((
            c.cohort or "(none)", str(c.users), str(c.invites), str(c.accepted),
            _num(c.invites_per_user), _num(c.conversion), _num(c.k, 3),
            _num(c.cycle_days_median, 1), bar(c.k, most) + ("  small" if c.small else ""),
        ))  # fmt: skip
    lines = [head, *table(rows, right=range(1, 8))] if reply.cohorts else [head, "no users yet"]
    lines.append(
        f"{reply.events} events kept; unmatched: {reply.unmatched_acceptances} acceptance(s),"
        f" {reply.unmatched_inviters} inviter(s) not signed up,"
        f" {reply.unmatched_couples} booking couple(s) not signed up"
    )
    return "\n".join(lines)


def format_partners(reply: PartnersReply) -> str:
    head = f"vendors booked by the {reply.couples} couple(s) who booked {reply.vendor}"
    if not reply.partners:
        return f"{head}: none yet"
    rows = [("COUPLES", "VENDOR")] + [(str(p.couples), p.name) for p in reply.partners]
    return "\n".join([head, *table(rows, right=[0])])


def format_explain(reply: ExplainReply) -> str:
    if reply.signed_up_at is None:
        lines = [f"user {reply.user}: no sign-up kept (not counted in any cohort)"]
    else:
        cohorts = ", ".join(f"{k} {v or '(none)'}" for k, v in reply.cohorts.items())
        lines = [f"user {reply.user}: signed up {utc(reply.signed_up_at)}; cohorts: {cohorts}"]
    lines.append(
        f"invited {reply.invitees} distinct invitee(s), {reply.accepted} accepted within the"
        f" window; joined through {', '.join(reply.joined_through) or 'no invite'};"
        f" {reply.vendors_booked} vendor(s) booked"
    )
    for s in reply.invites:
        fate = f"accepted {utc(s.accepted_at)}" if s.accepted_at is not None else "not accepted"
        first = "" if s.first_send else " (a repeat to the same invitee)"
        lines.append(f"  invite {s.invite} by {s.channel} {utc(s.at)}{first}: {fate}")
    for d in reply.decisions:
        message = f" (message {d.message_id})" if d.message_id is not None else ""
        lines.append(f"  {utc(d.at)} rule {d.rule}: {d.outcome}{message}: {d.reason}")
    return "\n".join(lines)


def format_experiment(view: ExperimentView) -> str:
    state = "running" if view.stopped_at is None else f"stopped: {view.stop_reason}"
    variants = ", ".join(f"{v['name']} {v['weight']:g}" for v in view.spec.get("variants", []))
    return f"experiment {view.name} phase {view.phase} ({state}); variants {variants}"


def format_experiments(reply: ExperimentsReply) -> str:
    if not reply.experiments:
        return "no experiments"
    return "\n".join(format_experiment(v) for v in reply.experiments)


def format_assignment(reply: AssignReply) -> str:
    if reply.variant is None:
        got = "outside the experiment's coverage"
    else:
        got = f"variant {reply.variant} ({reply.variant_name})"
    recorded = "" if reply.recorded is None else f"; recorded: variant {reply.recorded}"
    return f"experiment {reply.experiment} phase {reply.phase}: {got}{recorded}"


def _interval(value: Any) -> str:
    if not value:
        return "-"
    return f"[{value['low']:+.1%}, {value['high']:+.1%}]"


def format_readout(report: dict[str, Any]) -> str:
    state = "running" if report["stopped_at"] is None else f"stopped: {report['stop_reason']}"
    lines = [
        f"experiment {report['name']} phase {report['phase']} ({state}),"
        f" conversion: {report['conversion']}, confidence {report['confidence']:g}"
    ]
    rows = [("VARIANT", "WEIGHT", "EXPOSED", "CONVERTED", "RATE", "LIFT", "P", "LIFT INTERVAL")]
    for v in report["variants"]:
        rate = "-" if v["rate"] is None else f"{v['rate']:.2%}"
        lift = "-" if v["lift"] is None else f"{v['lift']:+.1%}"
        rows.append((
            v["name"], f"{v['weight']:g}", str(v["exposures"]), str(v["conversions"]), rate,
            lift, _num(v["p_value"], 4),
            _interval(v["always_valid_lift_interval"] if report["sequential"]
                      else v["lift_interval"]),
        ))  # fmt: skip
    lines += table(rows, right=range(1, 7))
    srm = report["srm"]
    lines.append(f"sample ratio: {srm['status']} (p = {_num(srm['p_value'], 4)})")
    lines.append(f"stop rule: {report['stop_rule']}")
    decision = report["decision"]
    verdict = "stop" if decision["stop"] else "go on"
    auto = " (stops itself)" if report["auto_stop"] else " (nothing stops by itself)"
    lines.append(f"the rule says: {verdict}: {decision['explanation']}{auto}")
    return "\n".join(lines)
