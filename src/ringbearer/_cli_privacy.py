"""CLI commands for personal data: a subject's erasure, status, export and consent; key rotation.

``ringbearer subject erase|status|export|consent ID|ADDRESS`` and ``ringbearer
keys rotate``. A subject is named by its opaque id (``s_`` and 32 hex) or by
the address, phone number or user id it stands for, which the daemon turns
into the id; what is printed names the id only. Changes name who asked
(``--by``, else the user and uid) for the audit log.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cli_base import (
    CHANGE_EXITS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    READ_EXITS,
    UsageError,
    call,
    exits,
    requester,
    show,
    stderr,
    to_json,
)
from ._cli_deliverability import _actions
from ._errors import RingbearerError

if TYPE_CHECKING:
    from .control._replies import ErasureView

AddCommand = Any  # the parser's ``command(name, fn, help, epilog)``
POLL_SECONDS = 0.5  # how often `subject erase --wait` asks where the job stands
PRIVATE = 0o600  # an export is personal data: its owner alone may read it
SUBJECT_HELP = "the subject: its id (s_ and 32 hex) or its email address, phone number or user id"
BY_HELP = "who asks, for the audit log (default: your user name and uid)"
PURPOSES_HELP = "marketing or analytics"


def _by(args: argparse.Namespace) -> str:
    return str(args.by) if args.by else requester()


def cmd_subject(args: argparse.Namespace) -> int:
    raise UsageError("subject needs an action: erase, status, export or consent")


def cmd_keys(args: argparse.Namespace) -> int:
    raise UsageError("keys needs an action: rotate")


# -- erase -----------------------------------------------------------------------------------


def cmd_subject_erase(args: argparse.Namespace) -> int:
    from ._views_privacy import COMPLETED, format_erasure, format_finished
    from .control._protocol import SubjectErase

    view = call(args, SubjectErase(args.subject, _by(args)))
    if not args.wait:
        show(args, view, format_erasure)
        return EXIT_OK
    if not args.json:
        print(format_erasure(view), flush=True)
    try:
        view = _wait(args, view)
    except KeyboardInterrupt:
        # The job is the daemon's and durable: only the waiting stops.
        stderr(
            f"stopped waiting; erasure {view.id} goes on: ringbearer subject status {view.subject}"
        )
        return EXIT_INTERRUPTED
    show(args, view, format_finished)
    return EXIT_OK if view.outcome == COMPLETED else EXIT_REFUSED


def _wait(args: argparse.Namespace, view: ErasureView) -> ErasureView:
    """Poll the job until it has finished, printing each step as it is done."""
    from ._views_privacy import newly_done, step_done

    seen = {s.step for s in view.steps if s.done_at is not None}
    while view.finished_at is None:
        time.sleep(POLL_SECONDS)
        view = _job(args, view)
        for step in newly_done(view, seen):
            seen.add(step.step)
            if not args.json:
                print(step_done(view, step), flush=True)
    return view


def _job(args: argparse.Namespace, view: ErasureView) -> ErasureView:
    """The job ``view`` shows, as it stands now."""
    from .control._protocol import SubjectStatus

    reply = call(args, SubjectStatus(view.subject))
    for job in reply.erasures:
        if job.id == view.id:
            return job
    raise RingbearerError(f"erasure {view.id} is no longer listed for {view.subject}")


# -- status, export, consent -------------------------------------------------------------------


def cmd_subject_status(args: argparse.Namespace) -> int:
    from ._views_privacy import format_subject_status
    from .control._protocol import SubjectStatus

    show(args, call(args, SubjectStatus(args.subject)), format_subject_status)
    return EXIT_OK


def cmd_subject_export(args: argparse.Namespace) -> int:
    from ._views_privacy import format_exported
    from .control._protocol import SubjectExport

    out = None if args.output is None else Path(args.output)
    if out is not None and not args.force and out.exists():
        return _exists(out)
    reply = call(args, SubjectExport(args.subject), timeout=120.0)
    text = to_json(reply)
    if out is None:
        print(text)
        return EXIT_OK
    try:
        write_private(out, text + "\n", replace=args.force)
    except FileExistsError:
        return _exists(out)
    if not args.json:
        print(format_exported(reply, out))
    return EXIT_OK


def _exists(path: Path) -> int:
    stderr(f"{path} exists; --force overwrites it")
    return EXIT_REFUSED


def write_private(path: Path, text: str, *, replace: bool) -> None:
    """``text`` to ``path`` with mode 0600, whole or not at all.

    Written to a temporary file first, then linked to ``path`` (which never
    replaces a file: raises FileExistsError) or, with ``replace``, renamed over it.
    """
    temporary = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
    except FileExistsError:
        raise
    except OSError as exc:
        raise RingbearerError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def cmd_subject_consent(args: argparse.Namespace) -> int:
    from ._views_privacy import format_consent
    from .control._protocol import SubjectConsent

    granted = args.grant is not None
    purpose = args.grant if granted else args.withdraw
    request = SubjectConsent(args.subject, purpose, granted, args.source, _by(args))
    show(args, call(args, request), format_consent)
    return EXIT_OK


# -- keys ------------------------------------------------------------------------------------


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from ._views_privacy import format_rotation
    from .control._protocol import KeysRotate

    show(args, call(args, KeysRotate(_by(args))), format_rotation)
    return EXIT_OK


# -- the parser ------------------------------------------------------------------------------

ERASE_EXITS = exits(
    "0  started (with --wait: completed)",
    "1  the daemon refused (a role), or with --wait the erasure ended provider_failed",
    "2  bad usage",
    "3  the daemon could not be reached",
    f"{EXIT_INTERRUPTED}  Ctrl-C while waiting (the erasure goes on in the daemon)",
)
EXPORT_EXITS = exits(
    "0  exported",
    "1  the daemon refused (a role), or FILE exists (give --force) or cannot be written",
    "2  bad usage, or more messages than an export holds",
    "3  the daemon could not be reached",
)


def add_commands(command: AddCommand) -> None:
    _add_subject(command)
    _add_keys(command)


def _add_subject(command: AddCommand) -> None:
    p = command(
        "subject",
        cmd_subject,
        "a data subject (a person messages are about): erase, status, export, consent",
        exits("2  no action given"),
    )
    action = _actions(p, "subject_command")
    a = action(
        "erase",
        cmd_subject_erase,
        "erase a subject: destroy their key, end their queued messages, suppress them, ask"
        " the analytics providers to delete them (a durable job)",
        ERASE_EXITS,
    )
    a.add_argument("subject", metavar="ID|ADDRESS", help=SUBJECT_HELP)
    a.add_argument("--wait", action="store_true", help="print each step as it is done, to the end")
    a.add_argument("--by", metavar="NAME", help=BY_HELP)
    a = action(
        "status",
        cmd_subject_status,
        "a subject's erasure jobs step by step, key, messages held and consent",
        READ_EXITS,
    )
    a.add_argument("subject", metavar="ID|ADDRESS", help=SUBJECT_HELP)
    _add_export(action)
    _add_consent(action)


def _add_export(action: Any) -> None:
    a = action(
        "export",
        cmd_subject_export,
        "every message (decrypted), event, suppression and consent record about a subject,"
        " as JSON: a subject-access request",
        EXPORT_EXITS,
    )
    a.add_argument("subject", metavar="ID|ADDRESS", help=SUBJECT_HELP)
    a.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write it to FILE (created with mode 0600: it is personal data), not stdout",
    )
    a.add_argument("--force", action="store_true", help="overwrite FILE if it exists")


def _add_consent(action: Any) -> None:
    a = action(
        "consent",
        cmd_subject_consent,
        "record a subject's consent to a purpose, given or withdrawn, with its source",
        CHANGE_EXITS.replace("2  bad usage", "2  bad usage (an unknown purpose, no source)"),
    )
    a.add_argument("subject", metavar="ID|ADDRESS", help=SUBJECT_HELP)
    given = a.add_mutually_exclusive_group(required=True)
    given.add_argument("--grant", metavar="PURPOSE", help=f"consent given: {PURPOSES_HELP}")
    given.add_argument("--withdraw", metavar="PURPOSE", help=f"consent withdrawn: {PURPOSES_HELP}")
    a.add_argument(
        "--source", required=True, metavar="S", help="where it was recorded (signup-form, ...)"
    )
    a.add_argument("--by", metavar="NAME", help=BY_HELP)


def _add_keys(command: AddCommand) -> None:
    p = command(
        "keys",
        cmd_keys,
        "the key-encryption key that wraps every subject's data key: rotate it",
        exits("2  no action given"),
    )
    action = _actions(p, "keys_command")
    a = action(
        "rotate",
        cmd_keys_rotate,
        "rewrap every data key under a new key-encryption key (the daemon's own key file: a"
        " new one; a credential: the one now configured as kek), while the daemon runs",
        CHANGE_EXITS,
    )
    a.add_argument("--by", metavar="NAME", help=BY_HELP)


__all__ = ["add_commands", "write_private"]
