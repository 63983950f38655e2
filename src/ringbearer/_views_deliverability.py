"""What the deliverability commands print: the suppression list, a check, the funnel.

Pure functions from typed replies to text, like ``_views``: no daemon, no
clock, no terminal, so each is tested on replies built in the test.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._views import plural, table, utc
from .control._replies import (
    DeliverabilityReply,
    DomainResumeReply,
    DomainView,
    FunnelView,
    SuppressionCheckReply,
    SuppressionRemoveReply,
    SuppressionsReply,
    SuppressionView,
)

NONE = "-"
EVERY = "*"
NOTE_WIDTH = 60

SUPPRESSION_HEAD = ("ID", "ADDRESS", "SCOPE", "REASON", "SINCE", "UNTIL", "BY", "NOTE")
FUNNEL_HEAD = (
    "PROVIDER",
    "DOMAIN",
    "SENT",
    "ACCEPTED",
    "DELIVERED",
    "BOUNCED",
    "COMPLAINED",
    "UNSUBSCRIBED",
    "OPENED",
    "CLICKED",
)
DOMAIN_HEAD = (
    "DOMAIN",
    "STATE",
    "DELIVERED",
    "COMPLAINTS",
    "COMPLAINT RATE",
    "HARD BOUNCES",
    "BOUNCE RATE",
    "HELD",
    "PAUSED SINCE",
)


def percent(rate: float | None) -> str:
    """A rate to two decimals (Gmail's thresholds are 0.10% and 0.30%); ``-`` for none."""
    return NONE if rate is None else f"{rate * 100:.2f}%"


def _count(n: int, rate: float | None) -> str:
    return f"{n} ({percent(rate)})"


def _scope(scope: str) -> str:
    return "every category" if scope == EVERY else scope


# -- suppressions ----------------------------------------------------------------------------


def _suppression_row(s: SuppressionView) -> tuple[str, ...]:
    until = NONE if s.until is None else utc(s.until)
    note = s.note if len(s.note) <= NOTE_WIDTH else s.note[: NOTE_WIDTH - 1] + "…"
    ident = NONE if s.id is None else str(s.id)
    return (ident, s.address, s.scope, s.reason, utc(s.created_at), until, s.by, note)


def suppression_rows(views: Sequence[SuppressionView]) -> list[str]:
    return table([SUPPRESSION_HEAD, *(_suppression_row(s) for s in views)])


def format_suppressions(reply: SuppressionsReply) -> str:
    if not reply.suppressions:
        return "no suppressions in force"
    lines = suppression_rows(reply.suppressions)
    if reply.after is not None:
        lines.append(f"more: ringbearer suppression list --after {reply.after}")
    return "\n".join(lines)


def format_check(reply: SuppressionCheckReply) -> str:
    """The address's suppressions, then each category and priority: refused or not, why."""
    found = plural(len(reply.suppressions), "suppression")
    lines = [f"{reply.address}: {found} in force"]
    if reply.suppressions:
        lines += ["", *suppression_rows(reply.suppressions)]
    rows = [("CATEGORY", "PRIORITY", "VERDICT", "WHY")]
    rows += [
        (v.category, v.priority, "refused" if v.refused else "allowed", v.reason)
        for v in reply.verdicts
    ]
    return "\n".join([*lines, "", *table(rows)])


def format_added(s: SuppressionView) -> str:
    until = "until removed" if s.until is None else f"until {utc(s.until)}"
    return f"suppressed {s.address} ({_scope(s.scope)}) {until}: id {s.id}"


def format_removed(reply: SuppressionRemoveReply) -> str:
    if not reply.removed:
        return f"{reply.address}: no such suppression"
    scopes = ", ".join(f"{_scope(s.scope)} ({s.reason})" for s in reply.removed)
    return f"{reply.address}: removed {plural(len(reply.removed), 'suppression')}: {scopes}"


# -- the funnel --------------------------------------------------------------------------------


def _funnel_row(f: FunnelView) -> tuple[str, ...]:
    bounced = f.hard_bounced + f.soft_bounced
    return (
        f.integration,
        f.domain,
        str(f.sent),
        _count(f.accepted, f.accepted_rate),
        _count(f.delivered, f.delivered_rate),
        _count(bounced, f.bounce_rate),
        _count(f.complained, f.complaint_rate),
        str(f.unsubscribed),
        _count(f.opened, f.open_rate),
        _count(f.clicked, f.click_rate),
    )


def _domain_row(d: DomainView) -> tuple[str, ...]:
    since = NONE if d.paused_since is None else utc(d.paused_since)
    return (
        d.domain,
        d.state,
        str(d.delivered),
        str(d.complaints),
        percent(d.complaint_rate),
        str(d.hard_bounces),
        percent(d.bounce_rate),
        str(d.held),
        since,
    )


RATES = (
    "rates: accepted of sent; delivered, bounced (hard and soft) of accepted; complained,"
    " opened, clicked of delivered"
)


def format_deliverability(reply: DeliverabilityReply) -> str:
    """The funnel table, then the sending domains' standings (a paused one says how to end it)."""
    lines = [f"email since {utc(reply.since)}", ""]
    if reply.funnel:
        lines += table([FUNNEL_HEAD, *map(_funnel_row, reply.funnel)], right=range(2, 10))
        lines.append(RATES)
    else:
        lines.append("no email sent")
    lines.append("")
    if reply.domains:
        lines += table([DOMAIN_HEAD, *map(_domain_row, reply.domains)], right=range(2, 8))
    else:
        lines.append("no sending domain watched by the reputation guard")
    if any(d.state == "paused" for d in reply.domains):
        lines.append("a paused domain's marketing and bulk mail waits: end it with")
        lines.append("  ringbearer deliverability resume DOMAIN")
    return "\n".join(lines)


def format_resume(reply: DomainResumeReply) -> str:
    if not reply.was_paused:
        return f"{reply.domain}: was not paused (nothing held)"
    return f"{reply.domain}: resumed, {plural(reply.released, 'held message')} released"
