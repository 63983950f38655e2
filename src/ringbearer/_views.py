"""What the CLI prints: pure functions from the daemon's replies (or a config) to text.

Nothing here talks to the daemon, reads a clock or writes to a terminal, so
each view is tested on plain dicts.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PRIORITIES = ("critical", "normal", "bulk")
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear the screen


def utc(at: float) -> str:
    """A wall time as ISO 8601 UTC, to the second."""
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def format_status(status: Mapping[str, Any]) -> str:
    """``ringbearer status``: a head line, one row per integration and group, budgets."""
    head = (
        f"ringbearer {status['version']} · protocol {status['protocol']} · "
        f"{_mode(status['mode'], mode_cause(status))} · up {status['uptime_seconds']:.0f} s"
    )
    if status.get("sandbox"):
        head += f" · sandbox {status['sandbox']}"
    rows = [
        (
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
    ]
    for i in status["integrations"]:
        rows.append(
            (
                i["name"],
                _state(i),
                _breaker(i),
                i["health"],
                *_queued(i),
                str(i["in_flight"]),
                str(i["restarts"]),
                str(i["delivered"]),
                (i["last_error"] or "-")[:60],
            )
        )
    for name, g in status["groups"].items():
        rows.append(
            (
                f"{name} (group)",
                "paused" if g["paused"] else "-",
                "-",
                "-",
                *_queued(g),
                str(g["in_flight"]),
                "-",
                "-",
                " → ".join(g["members"]),
            )
        )
    return "\n".join([head, "", *table(rows), *_budget_lines(status["integrations"])])


def mode_cause(status: Mapping[str, Any]) -> str:
    """Why wedding-day mode is as it is, from a status reply; "" if the reply does not say.

    ``weekday saturday``, ``date 2027-06-12``, ``override until
    2027-06-12T23:00+01:00``, ``override until auto`` (an override with no
    end) or ``off`` (the calendar has nothing today).
    """
    wedding = status.get("wedding_day")
    if not isinstance(wedding, Mapping):
        return ""
    cause, detail = wedding.get("cause"), str(wedding.get("detail") or "")
    if cause in ("weekday", "date"):
        return f"{cause} {detail}"
    if cause == "operator":
        return "override " + (detail.removeprefix("operator").strip() or "until auto")
    return "off"


def _mode(mode: str, cause: str) -> str:
    return f"mode {mode}" + (f" ({cause})" if cause else "")


def _state(i: Mapping[str, Any]) -> str:
    return str(i["state"]) + (" (paused)" if i["paused"] else "")


def _breaker(i: Mapping[str, Any]) -> str:
    return str(i["breaker"]) + ("*" if i["breaker_forced"] else "")


def _queued(entry: Mapping[str, Any]) -> tuple[str, str, str]:
    q = entry["queued"]
    return str(q["critical"]), str(q["normal"]), str(q["bulk"])


def _budget_lines(integrations: Iterable[Mapping[str, Any]]) -> list[str]:
    """Quota budgets below the table, one line each (most integrations have none)."""
    lines = [
        f"  {i['name']}: {b['used']} of {b['limit']} a {b['per']} used; "
        f"{b['left_for_critical']} left for critical work, {b['left_for_others']} for the rest"
        for i in integrations
        for b in i.get("budgets", ())
    ]
    return ["", "BUDGETS", *lines] if lines else []


# -- top ------------------------------------------------------------------------------


def top_rows(
    previous: Mapping[str, Any] | None, current: Mapping[str, Any], elapsed: float
) -> dict[str, Any]:
    """The numbers ``top`` shows: the current snapshot, with rates over ``elapsed`` seconds.

    Rates need two snapshots of the same run: with no previous one, or one
    from before a restart of the daemon, they are None.
    """
    same_run = (
        previous is not None
        and elapsed > 0
        and previous["uptime_seconds"] <= current["uptime_seconds"]
    )
    before = {i["name"]: i for i in previous["integrations"]} if previous and same_run else {}

    def rate(i: Mapping[str, Any], key: str) -> float | None:
        old = before.get(i["name"])
        if old is None:
            return None
        return max(0.0, float(i[key] - old[key])) / elapsed  # a rebuilt actor starts at 0

    integrations = [
        {
            "name": i["name"],
            "state": _state(i),
            "breaker": _breaker(i),
            "health": i["health"],
            "queued": dict(i["queued"]),
            "in_flight": i["in_flight"],
            "delivered_per_second": rate(i, "delivered"),
            "retried_per_second": rate(i, "retried"),
            "dead_per_second": rate(i, "dead"),
            "restarts": i["restarts"],
        }
        for i in current["integrations"]
    ]
    groups = [
        {
            "name": name,
            "paused": g["paused"],
            "queued": dict(g["queued"]),
            "in_flight": g["in_flight"],
        }
        for name, g in current["groups"].items()
    ]
    entries = [*integrations, *groups]
    rates = [i["delivered_per_second"] for i in integrations]
    return {
        "version": current["version"],
        "mode": current.get("mode", "normal"),
        "mode_cause": mode_cause(current),
        "uptime_seconds": current["uptime_seconds"],
        "queued": {p: sum(e["queued"][p] for e in entries) for p in PRIORITIES},
        "in_flight": sum(e["in_flight"] for e in entries),
        # An integration added by a reload has no rate yet; the others still count.
        "delivered_per_second": None
        if all(r is None for r in rates)
        else sum(r for r in rates if r is not None),
        "integrations": integrations,
        "groups": groups,
    }


def render_top(
    previous: Mapping[str, Any] | None,
    current: Mapping[str, Any],
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
        f"ringbearer {model['version']} · {_mode(model['mode'], model['mode_cause'])} · "
        f"up {_duration(model['uptime_seconds'])}"
    )
    if refresh is not None:
        head += f" · every {refresh:g} s · Ctrl-C quits"
    totals = (
        f"queued {q['critical']} critical, {q['normal']} normal, {q['bulk']} bulk · "
        f"in flight {model['in_flight']} · delivered {_rate(model['delivered_per_second'])}/s"
    )
    rows = [
        (
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
    ]
    for i in model["integrations"]:
        rows.append(
            (
                i["name"],
                i["state"],
                i["breaker"],
                i["health"],
                *_queued(i),
                str(i["in_flight"]),
                _rate(i["delivered_per_second"]),
                _rate(i["retried_per_second"]),
                _rate(i["dead_per_second"]),
                str(i["restarts"]),
            )
        )
    for g in model["groups"]:
        state = "paused" if g["paused"] else "-"
        rows.append(
            (
                f"{g['name']} (group)",
                state,
                "-",
                "-",
                *_queued(g),
                str(g["in_flight"]),
                "-",
                "-",
                "-",
                "-",
            )
        )
    return "\n".join([head, totals, "", *table(rows, right=range(4, 12))])


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


# -- dead letters and the audit log -----------------------------------------------------


def format_dead_letters(letters: Sequence[Mapping[str, Any]]) -> str:
    if not letters:
        return "no dead letters"
    rows = [("ID", "TARGET", "INTEGRATION", "DEAD SINCE", "ATTEMPTS", "REASON")]
    rows += [
        (
            str(d["message_id"]),
            d["target"],
            d["integration"] or "-",
            utc(d["at"]) if d["at"] else "-",
            str(d["attempts"]),
            d["reason"] or "-",
        )
        for d in letters
    ]
    return "\n".join(table(rows, right=(0, 4)))


def format_dead_letter(d: Mapping[str, Any]) -> str:
    """``dead-letters show``: the message, its payload, its reason and its history."""
    message = d.get("message") or {}
    priority = message.get("priority")
    if isinstance(priority, int) and 0 <= priority < len(PRIORITIES):
        priority = PRIORITIES[priority]
    fields = [
        ("target", d["target"]),
        ("integration", d["integration"] or "-"),
        ("priority", priority if priority is not None else "-"),
        ("key", message.get("idempotency_key", "-")),
        ("submitted", utc(message["created_at"]) if message.get("created_at") else "-"),
        ("dead since", utc(d["at"]) if d["at"] else "-"),
        ("attempts", str(d["attempts"])),
        ("reason", d["reason"] or "-"),
    ]
    width = max(len(name) for name, _ in fields)
    lines = [f"dead letter {d['message_id']}", ""]
    lines += [f"  {name.ljust(width)}  {value}" for name, value in fields]
    payload = json.dumps(d["payload"], indent=2, ensure_ascii=False)
    lines += ["", "payload", *(f"  {line}" for line in payload.splitlines())]
    lines += ["", "history", *(f"  {event_line(e)}" for e in d.get("events", ()))]
    return "\n".join(lines)


def event_line(e: Mapping[str, Any]) -> str:
    at = datetime.datetime.fromtimestamp(e["at"], datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    who = f" msg={e['message_id']}" if e["message_id"] is not None else ""
    where = f" {e['integration']}" if e["integration"] else ""
    detail = f" {json.dumps(e['detail'], separators=(',', ':'))}" if e["detail"] else ""
    return f"{at} {e['kind']}{where}{who}{detail}"


def format_changed(verb: str, done: Sequence[int], skipped: Sequence[int]) -> str:
    """The summary of a replay or a purge."""
    noun = "dead letter" if len(done) == 1 else "dead letters"
    line = f"{verb} {len(done)} {noun}"
    if skipped:
        shown = ", ".join(str(i) for i in skipped[:20]) + (", ..." if len(skipped) > 20 else "")
        were = "was not a dead letter" if len(skipped) == 1 else "were not dead letters"
        line += f"; {len(skipped)} {were}, left alone: {shown}"
    return line


def progress_bar(done: int, total: int, width: int = 30) -> str:
    """``\\r[#####     ] 3000/10000``: redrawn in place on a terminal."""
    filled = width if total <= 0 else min(width, width * done // total)
    return f"\r[{'#' * filled}{' ' * (width - filled)}] {done}/{total}"


# -- the config as TOML -------------------------------------------------------------------


def config_document(config: Any) -> dict[str, Any]:
    """A loaded config as plain data, every default filled in, secrets as their references.

    Integrations are written out whole (what ``[defaults]`` gave them is in
    each), so the document has no ``[defaults]`` of its own.
    """
    import attrs

    from ._config import make_converter

    converter = make_converter()
    document: dict[str, Any] = {
        f.name: converter.unstructure(getattr(config, f.name))
        for f in attrs.fields(type(config))
        if attrs.has(type(getattr(config, f.name)))  # the sections; not source, not the maps
    }
    document["integrations"] = {
        name: _integration(converter, settings) for name, settings in config.integrations.items()
    }
    document["groups"] = {name: list(members) for name, members in config.groups.items()}
    cleaned: dict[str, Any] = _without_none(document)
    return cleaned


def _integration(converter: Any, settings: Any) -> dict[str, Any]:
    import attrs

    shared = {
        f.name: converter.unstructure(getattr(settings, f.name))
        for f in attrs.fields(type(settings))
        if f.name not in ("name", "family", "provider")
    }
    return {**shared, **converter.unstructure(settings.provider)}


STARTER_SECRETS = {
    "resend": {"api_key": {"env": "RESEND_API_KEY"}},
    "mailgun": {"api_key": {"env": "MAILGUN_API_KEY"}, "domain": "mg.example.com"},
    "smtp": {
        "host": "smtp.example.com",
        "username": {"env": "SMTP_USERNAME"},
        "password": {"env": "SMTP_PASSWORD"},
    },
}


def starter_document() -> dict[str, Any]:
    """``config init``: every section at its defaults, the sandbox on, one email group."""
    import attrs

    from ._config import _Defaults, _TopLevel, make_converter
    from .integrations import provider_kinds

    converter, kinds = make_converter(), provider_kinds()
    top = _TopLevel()
    document: dict[str, Any] = {
        f.name: converter.unstructure(getattr(top, f.name))
        for f in attrs.fields(_TopLevel)
        if attrs.has(type(getattr(top, f.name)))
    }
    document["sandbox"]["enabled"] = True
    document["defaults"] = converter.unstructure(_Defaults())
    document["integrations"] = {
        name: {
            "kind": name,
            # Structured then unstructured: the provider's own defaults filled in.
            **converter.unstructure(converter.structure(raw, kinds[name].settings_type)),
        }
        for name, raw in STARTER_SECRETS.items()
    }
    document["groups"] = {"email": list(STARTER_SECRETS)}
    cleaned: dict[str, Any] = _without_none(document)
    return cleaned


def _without_none(value: Any) -> Any:
    """TOML has no null: a key whose value is None is left out (None is then its default)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_none(v) for v in value]
    return value


def to_toml(document: Mapping[str, Any], header: str = "") -> str:
    """TOML by tomli-w; small leaf tables (secret references, principals) written inline."""
    import tomli_w

    inline: dict[str, str] = {}
    text = tomli_w.dumps(_inline_small(document, inline, depth=0))
    for token, rendered in inline.items():
        text = text.replace(tomli_w.dumps({"v": token})[4:-1], rendered)
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comments + ("\n" if comments else "") + text


def _inline_small(value: Any, inline: dict[str, str], depth: int) -> Any:
    """Replace short arrays and small leaf tables by tokens for their one-line forms.

    tomli-w writes every table as a ``[section]`` and every array over several
    lines; ``api_key = { env = "NAME" }`` and ``weekdays = ["saturday"]`` read
    better. Sections (the top two levels) stay sections.
    """
    small = isinstance(value, list) or (isinstance(value, dict) and depth >= 2 and len(value) <= 2)
    rendered = _one_line(value) if small else None
    if rendered is not None and len(rendered) <= INLINE_WIDTH:
        token = f"@@ringbearer-inline-{len(inline)}@@"
        inline[token] = rendered
        return token
    if isinstance(value, dict):
        return {k: _inline_small(v, inline, depth + 1) for k, v in value.items()}
    return value


INLINE_WIDTH = 80


def _one_line(value: Any) -> str | None:
    """``value`` as one line of TOML, or None when it holds a table of tables."""
    import tomli_w

    if isinstance(value, list):
        items = [_one_line(v) for v in value]
        return None if None in items else "[" + ", ".join(str(i) for i in items) + "]"
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            one = None if isinstance(v, dict) else _one_line(v)
            if one is None:
                return None
            parts.append(f"{tomli_w.dumps({k: 0}).rstrip()[: -len(' = 0')]} = {one}")
        return "{ " + ", ".join(parts) + " }" if parts else "{}"
    return str(tomli_w.dumps({"v": value})[4:-1])
