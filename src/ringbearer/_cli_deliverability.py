"""CLI commands for deliverability: the suppression list, and the funnel with its pauses.

``ringbearer suppression list|check|add|remove`` and ``ringbearer
deliverability [resume DOMAIN]``. Changes name who asked (the audit log
records it) and, for a suppression added, why.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ._cli_base import (
    CHANGE_EXITS,
    EXIT_OK,
    EXIT_REFUSED,
    READ_EXITS,
    Command,
    Formatter,
    add_daemon,
    call,
    exits,
    positive_int,
    requester,
    show,
    time_ahead,
    time_back,
)
from ._cli_times import AHEAD_FORMS, BACK_FORMS

AddCommand = Any  # the parser's ``command(name, fn, help, epilog)``
Action = Callable[..., argparse.ArgumentParser]
SCOPE_HELP = "* (every category) or one category of [deliverability] categories"


# -- suppression -------------------------------------------------------------------------------


def cmd_suppression_list(args: argparse.Namespace) -> int:
    from ._views_deliverability import format_suppressions
    from .control._protocol import SuppressionList

    reply = call(args, SuppressionList(args.address, args.after, args.limit))
    show(args, reply, format_suppressions)
    return EXIT_OK


def cmd_suppression_check(args: argparse.Namespace) -> int:
    from ._views_deliverability import format_check
    from .control._protocol import SuppressionCheck

    show(args, call(args, SuppressionCheck(args.address, args.category)), format_check)
    return EXIT_OK


def cmd_suppression_add(args: argparse.Namespace) -> int:
    from ._views_deliverability import format_added
    from .control._protocol import SuppressionAdd

    request = SuppressionAdd(args.address, args.note, args.scope, args.until, requester())
    show(args, call(args, request), format_added)
    return EXIT_OK


def cmd_suppression_remove(args: argparse.Namespace) -> int:
    from ._views_deliverability import format_removed
    from .control._protocol import SuppressionRemove

    request = SuppressionRemove(args.address, args.scope, args.note, requester())
    reply = call(args, request)
    show(args, reply, format_removed)
    return EXIT_OK if reply.removed else EXIT_REFUSED


# -- deliverability ----------------------------------------------------------------------------


def cmd_deliverability(args: argparse.Namespace) -> int:
    from ._views_deliverability import format_deliverability
    from .control._protocol import DeliverabilityReport

    reply = call(args, DeliverabilityReport(args.domain, args.since))
    show(args, reply, format_deliverability)
    return EXIT_OK


def cmd_deliverability_resume(args: argparse.Namespace) -> int:
    from ._views_deliverability import format_resume
    from .control._protocol import DeliverabilityResume

    reply = call(args, DeliverabilityResume(args.name, requester()))
    show(args, reply, format_resume)
    return EXIT_OK if reply.was_paused else EXIT_REFUSED


# -- the parser ------------------------------------------------------------------------------


def add_commands(command: AddCommand) -> None:
    _add_suppression(command)
    _add_deliverability(command)


def _actions(parent: argparse.ArgumentParser, dest: str) -> Action:
    """Adds an action (``suppression check``...) under ``parent``, taking the daemon options."""
    actions = parent.add_subparsers(dest=dest, metavar="ACTION")

    def action(name: str, fn: Command, help: str, epilog: str) -> argparse.ArgumentParser:
        a: argparse.ArgumentParser = actions.add_parser(
            name, help=help, description=help, epilog=epilog, formatter_class=Formatter
        )
        add_daemon(a, nested=True)
        a.set_defaults(fn=fn)
        return a

    return action


def _add_suppression(command: AddCommand) -> None:
    p = command(
        "suppression",
        cmd_suppression_list,
        "the suppression list: list it (the default), check an address, add or remove one",
        READ_EXITS,
    )
    _list_options(p)
    action = _actions(p, "suppression_command")
    help = "suppressions in force, by id"
    _list_options(action("list", cmd_suppression_list, help, READ_EXITS), nested=True)
    a = action(
        "check",
        cmd_suppression_check,
        "an address's suppressions, and whether mail of each category (at normal and at"
        " critical priority) would be refused, and why",
        READ_EXITS,
    )
    a.add_argument("address", help="an email address or an E.164 phone number")
    a.add_argument("--category", help="only this category (default: every one configured)")
    _add_changes(action)


def _add_changes(action: Action) -> None:
    a = action(
        "add",
        cmd_suppression_add,
        "suppress an address by hand (audited with your note)",
        CHANGE_EXITS,
    )
    a.add_argument("address", help="an email address or an E.164 phone number")
    a.add_argument("--scope", default="*", help=SCOPE_HELP)
    a.add_argument("--note", required=True, metavar="TEXT", help="why: kept with it and audited")
    a.add_argument("--until", type=time_ahead, metavar="WHEN", help=f"end it then: {AHEAD_FORMS}")
    a = action(
        "remove",
        cmd_suppression_remove,
        "remove an address's suppressions (of one scope, or all), audited",
        CHANGE_EXITS.replace("the wedding-day freeze, ...)", "...), or it had no such suppression"),
    )
    a.add_argument("address", help="an email address or an E.164 phone number")
    a.add_argument("--scope", help=f"only this scope: {SCOPE_HELP} (default: every suppression)")
    a.add_argument("--note", default="", metavar="TEXT", help="why, for the audit log")


def _list_options(p: argparse.ArgumentParser, nested: bool = False) -> None:
    """On ``suppression`` and again on ``suppression list``; the latter keeps the former's."""
    p.add_argument(
        "--address",
        default=argparse.SUPPRESS if nested else None,
        help="only this address's suppressions",
    )
    p.add_argument(
        "--limit",
        type=positive_int,
        default=argparse.SUPPRESS if nested else 1000,
        metavar="N",
        help="at most N",
    )
    p.add_argument(
        "--after",
        type=int,
        default=argparse.SUPPRESS if nested else 0,
        metavar="ID",
        help="only those with an id above ID (the next page)",
    )


def _add_deliverability(command: AddCommand) -> None:
    p = command(
        "deliverability",
        cmd_deliverability,
        "the email funnel per provider and sending domain (sent, accepted, delivered, bounced,"
        " complained, opened, clicked, with rates) and each domain's reputation standing",
        READ_EXITS,
    )
    p.add_argument("--domain", help="only this sending domain")
    p.add_argument(
        "--since", type=time_back, default="24h", metavar="WHEN", help=f"from WHEN: {BACK_FORMS}"
    )
    action = _actions(p, "deliverability_command")
    a = action(
        "resume",
        cmd_deliverability_resume,
        "end a sending domain's reputation pause: its held marketing and bulk mail goes out",
        exits(
            "0  resumed",
            "1  the daemon refused (a role), or the domain was not paused",
            "2  bad usage",
            "3  the daemon could not be reached",
        ),
    )
    a.add_argument("name", metavar="DOMAIN", help="the sending domain (of the mail's from)")


__all__ = ["add_commands"]
