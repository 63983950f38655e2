"""What the CLI prints: pure functions from the daemon's typed replies to text.

Nothing here talks to the daemon, reads a clock or writes to a terminal, so
each view is tested on replies built in the test.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Sequence
from typing import Any

from .control._replies import (
    AlertsReply,
    AuditReply,
    ClusterStatus,
    DeadLetterReply,
    DeadLettersReply,
    EventView,
    GroupStatus,
    IntegrationStatus,
    ModeReply,
    PreflightReply,
    PrivacyStatus,
    QueueDepth,
    ReloadReply,
    StallView,
    StatusReply,
)

PRIORITIES = ("critical", "normal", "bulk")
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear the screen
LAST_ERROR_WIDTH = 60
FORCED = "*"  # after a breaker's state: an operator forced it


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 group``, ``2 groups``, ``0 duplicates``."""
    return f"{n} {noun if n == 1 else (nouns or noun + 's')}"


def utc(at: float) -> str:
    """A wall time as ISO 8601 UTC, to the second."""
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: float) -> str:
    """An uptime or an age, the same way everywhere: ``42s``, ``13m11s``, ``5h02m``, ``3d04h``."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def shorten(text: str, width: int) -> str:
    """``text`` cut at a word boundary to at most ``width`` characters, marked with ``…``."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > width // 2 else cut).rstrip(" ,;:") + "…"


def table(rows: Sequence[Sequence[str]], right: Iterable[int] = ()) -> list[str]:
    """Columns padded to their widest cell (``right``: right-aligned); the last one is free."""
    if not rows:
        return []
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    aligned = set(right)
    lines = []
    for r in rows:
        cells = [
            v.rjust(w) if c in aligned and r is not rows[0] else v.ljust(w)
            for c, (v, w) in enumerate(zip(r, widths, strict=False))
        ]
        lines.append("  ".join([*cells, r[-1]]).rstrip())
    return lines


# -- status ---------------------------------------------------------------------------


STATUS_HEAD = (
    "INTEGRATION",
    "STATE",
    "BREAKER",
    "HEALTH",
    "CRIT",
    "NORM",
    "BULK",
    "FLIGHT",
    "RESTARTS",
    "DELIVERED",
    "LAST ERROR",
)


def _payload_lines(payload: dict[str, object]) -> list[str]:
    """A payload as stored; a sealed one says whose it is and how an operator opens it."""
    subjects = payload.get("subjects")
    if payload.get("sealed") == 1 and isinstance(subjects, list):
        named = ", ".join(str(s) for s in subjects)
        return [
            f"  sealed: personal data of {named}",
            "  (an operator reads it with `ringbearer subject export SUBJECT`)",
        ]
    text = json.dumps(payload, indent=2, ensure_ascii=False)
    return [f"  {line}" for line in text.splitlines()]


def format_status(status: StatusReply) -> str:
    """``ringbearer status``: a head line, one row per integration and group, budgets."""
    head = (
        f"ringbearer {status.version} · protocol {status.protocol} · "
        f"{mode_line(status.mode, status.wedding_day)} · up {duration(status.uptime_seconds)}"
    )
    if status.sandbox:
        head += f" · sandbox {status.sandbox}"
    if status.webhooks:
        head += f" · webhooks {status.webhooks}"
    rows: list[tuple[str, ...]] = [STATUS_HEAD]
    rows += [_integration_row(i) for i in status.integrations]
    rows += [_group_row(name, g) for name, g in status.groups.items()]
    lines = [head, "", *table(rows), *_legend(status.integrations)]
    lines += _budget_lines(status.integrations) + _stall_lines(status.stalls)
    return "\n".join(lines + _privacy_lines(status.privacy) + _cluster_lines(status.cluster))


def _cluster_lines(cluster: ClusterStatus | None) -> list[str]:
    """The nodes sharing the database: which leads, each one's heartbeat and leases."""
    if cluster is None:
        return []
    leader = "nobody leads right now" if cluster.leader is None else (
        f"{cluster.leader} leads (term {cluster.leader_term})"
    )  # fmt: skip
    lines = ["", f"NODES  this is {cluster.node}; {leader}"]
    rows = [("NODE", "HOST", "LAST HEARTBEAT", "LEASES")]
    rows += [(n.node, n.host, utc(n.heartbeat_at), str(n.leases)) for n in cluster.nodes]
    lines += [f"  {line}" for line in table(rows, right=[3])]
    if cluster.fenced:
        lines.append(f"  {cluster.fenced} settle(s) fenced: this node's lease had passed on")
    return lines


def _privacy_lines(privacy: PrivacyStatus | None) -> list[str]:
    """The vault's line, a rotation under way, and each OAuth token's time left."""
    if privacy is None:
        return []
    vault = f"  {privacy.subjects} subjects with a key, under key-encryption key {privacy.kek_id}"
    lines = ["", "PRIVACY", vault]
    if privacy.old_key_needed:
        doing = "rewrapping" if privacy.rotating else "waiting for `ringbearer keys rotate`"
        lines.append(
            f"  key rotation: {privacy.rotation_pending} data keys still under an older key "
            f"({doing}); the older key is still needed"
        )
    if privacy.erasures_running:
        lines.append(f"  erasures running: {privacy.erasures_running}")
    for t in privacy.tokens:
        left = duration(t.seconds_left) if t.has_token else "none (expired or not yet issued)"
        line = f"  {t.integration} OAuth token: {left} left"
        if t.failures:
            line += f"; {t.failures} refreshes failed in a row: {t.last_problem}"
        if t.reconnect:
            line += "; the provider refused the refresh token: connect the account again"
        lines.append(line)
    return lines


def _integration_row(i: IntegrationStatus) -> tuple[str, ...]:
    return (
        i.name,
        _state(i),
        _breaker(i),
        i.health,
        *_queued(i.queued),
        str(i.in_flight),
        str(i.restarts),
        str(i.delivered),
        shorten(i.last_error or "-", LAST_ERROR_WIDTH),
    )


def _group_row(name: str, g: GroupStatus) -> tuple[str, ...]:
    state = "paused" if g.paused else "-"
    members = " → ".join(g.members)
    return (
        f"{name} (group)",
        state,
        "-",
        "-",
        *_queued(g.queued),
        str(g.in_flight),
        "-",
        "-",
        members,
    )


def _legend(integrations: Iterable[IntegrationStatus]) -> list[str]:
    if any(i.breaker_forced for i in integrations):
        return ["", f"{FORCED} forced by an operator (ringbearer breaker NAME reset lets it move)"]
    return []


def mode_cause(wedding: ModeReply) -> str:
    """Why wedding-day mode is as it is.

    ``weekday saturday``, ``date 2027-06-12``, ``override until
    2027-06-12T23:00+01:00``, ``override until set back to auto`` (an
    override with no end) or ``off`` (the calendar has nothing today).
    """
    if wedding.cause in ("weekday", "date"):
        return f"{wedding.cause} {wedding.detail}"
    if wedding.cause == "operator":
        until = wedding.detail.removeprefix("operator").strip()
        return "override " + (until or "until set back to auto")
    return "off"


def mode_line(mode: str, wedding: ModeReply) -> str:
    return f"mode {mode} ({mode_cause(wedding)})"


def _state(i: IntegrationStatus) -> str:
    return i.state + (" (paused)" if i.paused else "")


def _breaker(i: IntegrationStatus) -> str:
    return i.breaker + (FORCED if i.breaker_forced else "")


def _queued(q: QueueDepth) -> tuple[str, str, str]:
    return str(q.critical), str(q.normal), str(q.bulk)


def _budget_lines(integrations: Iterable[IntegrationStatus]) -> list[str]:
    """Quota budgets below the table, one line each (most integrations have none)."""
    lines = [
        f"  {i.name}: {b.used} of {b.limit} a {b.per} used; "
        f"{b.left_for_critical} left for critical work, {b.left_for_others} for the rest"
        for i in integrations
        for b in i.budgets
    ]
    return ["", "BUDGETS", *lines] if lines else []


STALL_WHY = {
    "no_route": "stalled: no route",
    "no_progress": "stalled: no progress",
    "paused": "paused",
    "dropping": "dropping",
}


def _stall_lines(stalls: Iterable[StallView]) -> list[str]:
    """Targets whose work does not move, below the table (the stall detector's findings)."""
    rows = [
        (
            f"  {s.target}",
            STALL_WHY.get(s.why, s.why),
            f"since {utc(s.since)}",
            f"{s.queued} queued" + (f", {s.in_flight} in flight" if s.in_flight else ""),
            f"({s.detail})",
        )
        for s in stalls
    ]
    return ["", "STALLS", *table(rows)] if rows else []


# -- top ------------------------------------------------------------------------------


def top_rows(previous: StatusReply | None, current: StatusReply, elapsed: float) -> dict[str, Any]:
    """The numbers ``top`` shows (``top --json``): the snapshot, with rates over ``elapsed`` s.

    Rates need two snapshots of the same run: with no previous one, or one
    from before a restart of the daemon, they are None.
    """
    same_run = (
        previous is not None and elapsed > 0 and previous.uptime_seconds <= current.uptime_seconds
    )
    before = {i.name: i for i in previous.integrations} if previous and same_run else {}
    integrations = [_top_integration(i, before.get(i.name), elapsed) for i in current.integrations]
    groups = [
        {"name": name, "paused": g.paused, "queued": _depth(g.queued), "in_flight": g.in_flight}
        for name, g in current.groups.items()
    ]
    entries = [*integrations, *groups]
    rates = [i["delivered_per_second"] for i in integrations]
    return {
        "version": current.version,
        "mode": current.mode,
        "mode_cause": mode_cause(current.wedding_day),
        "uptime_seconds": current.uptime_seconds,
        "queued": {p: sum(e["queued"][p] for e in entries) for p in PRIORITIES},
        "in_flight": sum(e["in_flight"] for e in entries),
        # An integration added by a reload has no rate yet; the others still count.
        "delivered_per_second": None
        if all(r is None for r in rates)
        else sum(r for r in rates if r is not None),
        "integrations": integrations,
        "groups": groups,
    }


def _depth(q: QueueDepth) -> dict[str, int]:
    return {"critical": q.critical, "normal": q.normal, "bulk": q.bulk}


def _top_integration(
    i: IntegrationStatus, old: IntegrationStatus | None, elapsed: float
) -> dict[str, Any]:
    def rate(now: int, then: int | None) -> float | None:
        # A rebuilt actor starts at 0: never a negative rate.
        return None if then is None else max(0.0, float(now - then)) / elapsed

    return {
        "name": i.name,
        "state": _state(i),
        "breaker": _breaker(i),
        "health": i.health,
        "queued": _depth(i.queued),
        "in_flight": i.in_flight,
        "delivered_per_second": rate(i.delivered, None if old is None else old.delivered),
        "retried_per_second": rate(i.retried, None if old is None else old.retried),
        "dead_per_second": rate(i.dead, None if old is None else old.dead),
        "restarts": i.restarts,
    }


TOP_HEAD = (
    "INTEGRATION",
    "STATE",
    "BREAKER",
    "HEALTH",
    "CRIT",
    "NORM",
    "BULK",
    "FLIGHT",
    "DELIV/S",
    "RETRY/S",
    "DEAD/S",
    "RESTARTS",
)


def render_top(
    previous: StatusReply | None,
    current: StatusReply,
    elapsed: float,
    *,
    refresh: float | None = None,
) -> str:
    """One frame of ``ringbearer top``; ``refresh``: seconds between live frames.

    No escape codes: the caller clears the screen.
    """
    model = top_rows(previous, current, elapsed)
    q = model["queued"]
    head = (
        f"ringbearer {model['version']} · {mode_line(current.mode, current.wedding_day)} · "
        f"up {duration(model['uptime_seconds'])}"
    )
    if refresh is not None:
        head += f" · every {refresh:g} s · Ctrl-C quits"
    totals = (
        f"queued {q['critical']} critical, {q['normal']} normal, {q['bulk']} bulk · "
        f"in flight {model['in_flight']} · delivered {_rate(model['delivered_per_second'])}/s"
    )
    rows = [TOP_HEAD, *map(_top_row, model["integrations"]), *map(_top_group, model["groups"])]
    legend = _legend(current.integrations)
    return "\n".join([head, totals, "", *table(rows, right=range(4, 12)), *legend])


def _top_row(i: dict[str, Any]) -> tuple[str, ...]:
    rates = (i["delivered_per_second"], i["retried_per_second"], i["dead_per_second"])
    queued = tuple(str(i["queued"][p]) for p in PRIORITIES)
    return (
        i["name"], i["state"], i["breaker"], i["health"], *queued, str(i["in_flight"]),
        *(_rate(r) for r in rates), str(i["restarts"]),
    )  # fmt: skip


def _top_group(g: dict[str, Any]) -> tuple[str, ...]:
    queued = tuple(str(g["queued"][p]) for p in PRIORITIES)
    state = "paused" if g["paused"] else "-"
    name, flight = f"{g['name']} (group)", str(g["in_flight"])
    return (name, state, "-", "-", *queued, flight, "-", "-", "-", "-")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# -- dead letters and the audit log -----------------------------------------------------


def format_dead_letters(reply: DeadLettersReply, command: str) -> str:
    """Dead letters newest first; when more are left, how to see the next page."""
    if not reply.dead_letters:
        return "no dead letters"
    rows = [("ID", "TARGET", "INTEGRATION", "DEAD SINCE", "ATTEMPTS", "REASON")]
    rows += [
        (
            str(d.message_id),
            d.target,
            d.integration or "-",
            utc(d.at) if d.at else "-",
            str(d.attempts),
            d.reason or "-",
        )
        for d in reply.dead_letters
    ]
    return "\n".join(table(rows, right=(0, 4)) + _more(reply.before, command))


def _more(before: int | None, command: str) -> list[str]:
    if before is None:
        return []
    return ["", f"more, older ones: {command} --before {before}"]


def format_dead_letter(d: DeadLetterReply) -> str:
    """``dead-letters show``: the message, its payload, its reason and its history."""
    message = d.message
    fields = [
        ("target", d.target),
        ("integration", d.integration or "-"),
        ("priority", message.priority if message else "-"),
        ("key", message.idempotency_key if message else "-"),
        ("submitted", utc(message.created_at) if message else "-"),
        ("dead since", utc(d.at) if d.at else "-"),
        ("attempts", str(d.attempts)),
        ("reason", d.reason or "-"),
    ]
    width = max(len(name) for name, _ in fields)
    lines = [f"dead letter {d.message_id}", ""]
    lines += [f"  {name.ljust(width)}  {value}" for name, value in fields]
    lines += ["", "payload", *_payload_lines(d.payload)]
    lines += ["", "history", *(f"  {event_line(e)}" for e in d.events)]
    return "\n".join(lines)


def event_line(e: EventView) -> str:
    at = datetime.datetime.fromtimestamp(e.at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    who = f" msg={e.message_id}" if e.message_id is not None else ""
    where = f" {e.integration}" if e.integration else ""
    detail = f" {json.dumps(e.detail, separators=(',', ':'))}" if e.detail else ""
    return f"{at} {e.kind}{where}{who}{detail}"


def format_audit(reply: AuditReply, command: str) -> str:
    """Events newest first; when more are left, how to see the next page."""
    if not reply.events:
        return "no events"
    return "\n".join([event_line(e) for e in reply.events] + _more(reply.before, command))


def format_changed(verb: str, done: Sequence[int], skipped: Sequence[int]) -> str:
    """The summary of a replay or a purge."""
    line = f"{verb} {plural(len(done), 'dead letter')}"
    if skipped:
        shown = ", ".join(str(i) for i in skipped[:20]) + (", ..." if len(skipped) > 20 else "")
        were = "was not a dead letter" if len(skipped) == 1 else "were not dead letters"
        line += f"; {len(skipped)} {were}, left alone: {shown}"
    return line


def progress_bar(done: int, total: int, width: int = 30) -> str:
    """``\\r[#####     ] 3000/10000``: redrawn in place on a terminal."""
    filled = width if total <= 0 else min(width, width * done // total)
    return f"\r[{'#' * filled}{' ' * (width - filled)}] {done}/{total}"


# -- the rest ------------------------------------------------------------------------------


def format_mode(r: ModeReply) -> str:
    line = "wedding-day mode " + ("on" if r.wedding_day else "off")
    if r.detail:
        line += f" ({r.detail})"
    if r.override is None:
        line += "; following the calendar"
    return line


def format_alerts(r: AlertsReply) -> str:
    rows = [
        f"{a.id:>4}  {a.severity.value:<8}  {'acked' if a.acked else 'open':<5}  {a.summary}"
        for a in r.alerts
    ]
    return "\n".join(rows) or "no open alerts"


def format_reload(r: ReloadReply) -> str:
    lines = [
        f"{label}: {', '.join(names)}"
        for names, label in ((r.added, "added"), (r.removed, "removed"), (r.changed, "re-tuned"))
        if names
    ]
    if r.groups_changed:
        lines.append("groups: changed")
    if r.needs_restart:
        lines.append(f"kept until a restart: [{'], ['.join(r.needs_restart)}]")
    if r.dropped:
        dropped = ", ".join(f"{target} {n}" for target, n in r.dropped.items())
        lines.append(
            f"dead-lettered (replayable): {dropped}; what waits for a retry follows when due"
        )
    return "\n".join(lines) or "reloaded: nothing changed"


def format_preflight(report: PreflightReply) -> str:
    """A table: one row per step, the integration named on its first row; a verdict line."""
    rows = [("INTEGRATION", "KIND", "STEP", "RESULT", "REASON")]
    for i in report.integrations:
        for n, step in enumerate(i.steps):
            name, kind = (i.name, i.kind) if n == 0 else ("", "")
            rows.append((name, kind, step.step, step.verdict, step.reason))
    counts = {
        v: sum(1 for i in report.integrations if i.verdict == v) for v in ("pass", "warn", "fail")
    }
    tally = ", ".join(f"{n} {v}" for v, n in counts.items())
    summary = f"{report.verdict}: {plural(len(report.integrations), 'integration')} ({tally})"
    return "\n".join([f"preflight against {report.checked}", "", *table(rows), "", summary])
