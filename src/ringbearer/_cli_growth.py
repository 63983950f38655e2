"""CLI commands for growth: the viral coefficient by cohort, recording growth events, a
vendor's partners, a user's story, and experiments.

``ringbearer growth [--by VIEW] [--json]`` prints every cohort of a view with a chart of
its K; ``growth record --file F`` sends a JSON-lines file of events in chunks (a
malformed line is named by its number and nothing of its chunk is kept);
``experiment create|show|list|assign|stop``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ._cli_base import (
    CHANGE_EXITS,
    EXIT_OK,
    EXIT_REFUSED,
    READ_EXITS,
    UsageError,
    call,
    exits,
    positive_int,
    requester,
    show,
    stderr,
)
from ._cli_deliverability import _actions
from ._errors import RequestError

AddCommand = Any
RECORD_CHUNK = 1_000
EXPERIMENT_HELP = "the experiment's name"
VIEWS = ("signup_month", "wedding_month", "role", "vendor_type")


def cmd_growth(args: argparse.Namespace) -> int:
    from ._views_growth import format_report
    from .control._growth_protocol import GrowthReport

    reply = call(args, GrowthReport(args.by))
    if args.json:
        from ._cli_base import to_json

        whole = json.loads(to_json(reply))
        print(json.dumps({k: whole[k] for k in ("window_days", "by", "cohorts")}, indent=2))
    else:
        print(format_report(reply))
    return EXIT_OK


def cmd_growth_record(args: argparse.Namespace) -> int:
    from .control._growth_protocol import GrowthRecord

    events = read_events(args.file)
    recorded, refused, unmatched = 0, [], 0
    for start in range(0, len(events), RECORD_CHUNK):
        chunk = [event for _, event in events[start : start + RECORD_CHUNK]]
        try:
            reply = call(args, GrowthRecord(chunk), timeout=120.0)
        except RequestError as exc:
            if recorded:
                stderr(f"{recorded} event(s) were kept before this error")
            raise _by_line(exc, events, start) from None
        recorded += reply.recorded
        unmatched = reply.unmatched
        refused += [(events[start + x.index][0], x) for x in reply.refused]
    print(f"recorded {recorded} event(s); {unmatched} reference(s) still unmatched")
    for line, x in refused:
        print(f"line {line}: refused ({x.code}): {x.reason.split(': ', 1)[-1]}")
    return EXIT_REFUSED if refused else EXIT_OK


def _by_line(exc: RequestError, events: list[tuple[int, Any]], start: int) -> RequestError:
    """The daemon's ``events[i]: ...`` said as the file's line."""
    head, _, rest = exc.message.partition(": ")
    if head.startswith("events[") and head.endswith("]") and head[7:-1].isdigit():
        line = events[start + int(head[7:-1])][0]
        return RequestError(exc.code, f"line {line}: {rest}")
    return exc


def read_events(given: str) -> list[tuple[int, Any]]:
    """The JSON objects of a JSON-lines file (or stdin for ``-``), with their line numbers."""
    try:
        text = sys.stdin.read() if given == "-" else Path(given).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {given}: {exc}") from None
    events = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{given} line {number}: not JSON: {exc.msg}") from None
        if not isinstance(value, dict):
            raise UsageError(f"{given} line {number}: an event is a JSON object")
        events.append((number, value))
    if not events:
        raise UsageError(f"{given} holds no events")
    return events


def cmd_growth_partners(args: argparse.Namespace) -> int:
    from ._views_growth import format_partners
    from .control._growth_protocol import GrowthPartners

    show(args, call(args, GrowthPartners(args.vendor, args.limit)), format_partners)
    return EXIT_OK


def cmd_growth_explain(args: argparse.Namespace) -> int:
    from ._views_growth import format_explain
    from .control._growth_protocol import GrowthExplain

    show(args, call(args, GrowthExplain(args.user)), format_explain)
    return EXIT_OK


def cmd_experiment(args: argparse.Namespace) -> int:
    raise UsageError("experiment needs an action: create, show, list, assign or stop")


def cmd_experiment_create(args: argparse.Namespace) -> int:
    from ._views_growth import format_experiment
    from .control._growth_protocol import ExperimentCreate

    spec = _read_spec(args.file)
    by = str(args.by) if args.by else requester()
    show(args, call(args, ExperimentCreate(args.name, spec, args.new_phase, by)), format_experiment)
    return EXIT_OK


def _read_spec(given: str) -> dict[str, Any]:
    import tomllib

    path = Path(given)
    try:
        text = path.read_text(encoding="utf-8")
        value = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {given}: {exc}") from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{given}: not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{given}: an experiment is an object (variants, weights, ...)")
    return value


def cmd_experiment_show(args: argparse.Namespace) -> int:
    from ._views_growth import format_readout
    from .control._growth_protocol import ExperimentShow

    reply = call(args, ExperimentShow(args.name, args.phase))
    print(json.dumps(reply.report, indent=2) if args.json else format_readout(reply.report))
    return EXIT_OK


def cmd_experiment_list(args: argparse.Namespace) -> int:
    from ._views_growth import format_experiments
    from .control._growth_protocol import ExperimentList

    show(args, call(args, ExperimentList()), format_experiments)
    return EXIT_OK


def cmd_experiment_assign(args: argparse.Namespace) -> int:
    from ._views_growth import format_assignment
    from .control._growth_protocol import ExperimentAssign

    show(args, call(args, ExperimentAssign(args.name, args.unit)), format_assignment)
    return EXIT_OK


def cmd_experiment_stop(args: argparse.Namespace) -> int:
    from ._views_growth import format_experiment
    from .control._growth_protocol import ExperimentStop

    reason = args.reason or f"stopped by {requester()}"
    show(args, call(args, ExperimentStop(args.name, reason)), format_experiment)
    return EXIT_OK


# -- the parser ------------------------------------------------------------------------------


def add_commands(command: AddCommand) -> None:
    _add_growth(command)
    _add_experiment(command)


def _by(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--by",
        choices=VIEWS,
        default="signup_month",
        help="what groups users into cohorts (default: signup_month)",
    )


def _add_growth(command: AddCommand) -> None:
    p = command(
        "growth",
        cmd_growth,
        "the viral coefficient by cohort (the default), growth events recorded, a vendor's"
        " partners, a user's story",
        READ_EXITS,
    )
    _by(p)
    action = _actions(p, "growth_command")
    a = action(
        "record",
        cmd_growth_record,
        "record growth events, one JSON object a line",
        exits(
            "0  all kept",
            "1  some refused on their own (an erased subject), or the daemon refused (a role)",
            "2  bad usage (a line not JSON, or not a valid event: named by its line)",
            "3  the daemon could not be reached",
        ),
    )
    a.add_argument("--file", required=True, metavar="FILE", help='a JSON-lines file, or "-"')
    _add_growth_reads(action)


def _add_growth_reads(action: Any) -> None:
    a = action(
        "partners",
        cmd_growth_partners,
        "the vendors most often booked by the couples who booked VENDOR",
        READ_EXITS,
    )
    a.add_argument("vendor", metavar="VENDOR", help="the vendor's email address")
    a.add_argument("--limit", type=positive_int, default=20, metavar="N", help="at most N")
    a = action(
        "explain",
        cmd_growth_explain,
        "what the cohorts count of USER, and each opportunity rule's decision",
        READ_EXITS,
    )
    a.add_argument("user", metavar="USER", help="the user's id")


def _add_experiment(command: AddCommand) -> None:
    p = command(
        "experiment",
        cmd_experiment,
        "experiments: create, show (the readout), list, assign (a unit's variant), stop",
        exits("2  no action given"),
    )
    action = _actions(p, "experiment_command")
    a = action(
        "create",
        cmd_experiment_create,
        "define experiment NAME from FILE (.json or .toml): variants, weights, unit,"
        " seed, conversion, stop rule",
        CHANGE_EXITS,
    )
    a.add_argument("name", metavar="NAME", help=EXPERIMENT_HELP)
    a.add_argument(
        "file",
        metavar="FILE",
        help="a .json or .toml object: variants (name, weight, template"
        " or fields), unit, seed, coverage, conversion, sequential, stop, auto_stop",
    )
    a.add_argument(
        "--new-phase",
        action="store_true",
        help="a running experiment's new design: its assignments start afresh",
    )
    a.add_argument("--by", metavar="NAME", help="who, for the audit log")
    _add_experiment_reads(action)
    a = action("stop", cmd_experiment_stop, "stop experiment NAME (audited)", CHANGE_EXITS)
    a.add_argument("name", metavar="NAME", help=EXPERIMENT_HELP)
    a.add_argument("--reason", metavar="TEXT", help="why, for the audit log")


def _add_experiment_reads(action: Any) -> None:
    a = action(
        "show",
        cmd_experiment_show,
        "per variant: exposures, conversions, rate, lift, p-value; SRM; the stop rule",
        READ_EXITS,
    )
    a.add_argument("name", metavar="NAME", help=EXPERIMENT_HELP)
    a.add_argument("--phase", type=positive_int, metavar="N", help="this phase; none: the latest")
    action("list", cmd_experiment_list, "every experiment's latest phase", READ_EXITS)
    a = action(
        "assign",
        cmd_experiment_assign,
        "the variant UNIT gets (GrowthBook's hashing) and the one recorded",
        READ_EXITS,
    )
    a.add_argument("name", metavar="NAME", help=EXPERIMENT_HELP)
    a.add_argument("unit", metavar="UNIT", help="the unit id (an address, a user id)")


__all__ = ["add_commands", "read_events"]
