"""CLI commands for message templates: put a new version, show one, list them, render one.

``ringbearer template put|show|list|render``. A template is one Liquid source
per payload field (``subject``, ``text``, ``html``...); the daemon keeps every
version and renders a message's template once, at submit. The files these
commands read are checked here, so a bad one is a usage error (exit 2) that
names it, and nothing is sent.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from ._cli_base import (
    EXIT_OK,
    READ_EXITS,
    UsageError,
    call,
    exits,
    positive_int,
    requester,
    show,
)
from ._cli_deliverability import _actions

AddCommand = Any  # the parser's ``command(name, fn, help, epilog)``
DEFAULT_PART = "text"
STDIN = "-"
PARTS_SUFFIXES = (".json", ".toml")  # a file of parts; any other file is one part
NAME_HELP = "the template's name"
VERSION_HELP = "this version; none: the latest"
VARS_HELP = 'the variables, a JSON object: a file, or "-" for stdin'


def cmd_template(args: argparse.Namespace) -> int:
    raise UsageError("template needs an action: put, show, list or render")


def cmd_template_put(args: argparse.Namespace) -> int:
    from ._views_templates import format_kept
    from .control._protocol import TemplatePut

    parts = read_parts(Path(args.file), args.part)
    by = str(args.by) if args.by else requester()
    show(args, call(args, TemplatePut(args.name, parts, by)), format_kept)
    return EXIT_OK


def cmd_template_show(args: argparse.Namespace) -> int:
    from ._views_templates import format_template
    from .control._protocol import TemplateShow

    show(args, call(args, TemplateShow(args.name, args.version)), format_template)
    return EXIT_OK


def cmd_template_list(args: argparse.Namespace) -> int:
    from ._views_templates import format_templates
    from .control._protocol import TemplateList

    show(args, call(args, TemplateList()), format_templates)
    return EXIT_OK


def cmd_template_render(args: argparse.Namespace) -> int:
    from ._views_templates import format_rendered
    from .control._protocol import TemplateRender

    request = TemplateRender(args.name, read_vars(args.vars), args.version)
    show(args, call(args, request), format_rendered)
    return EXIT_OK


# -- the files ---------------------------------------------------------------------------------


def read_parts(path: Path, part: str | None) -> dict[str, str]:
    """A template's parts: a JSON or TOML object of them (by suffix), or the file as one part."""
    text = _read(path)
    suffix = path.suffix.lower()
    if suffix not in PARTS_SUFFIXES:
        return {part or DEFAULT_PART: text}
    if part is not None:
        raise UsageError(f"--part is for a file of one part; {path} is a {suffix} file of parts")
    parts = _parse_json(path, text) if suffix == ".json" else _parse_toml(path, text)
    return _checked_parts(path, parts)


def _checked_parts(path: Path, parts: Any) -> dict[str, str]:
    if not isinstance(parts, dict):
        raise UsageError(
            f"{path} must hold an object of parts (payload field -> template source),"
            f" not {type(parts).__name__}"
        )
    if not parts:
        raise UsageError(f"{path} holds no parts")
    for field, source in parts.items():
        if not isinstance(source, str):
            raise UsageError(
                f"{path}: part {field!r} must be a string (its template source),"
                f" not {type(source).__name__}"
            )
    return parts


def read_vars(given: str) -> dict[str, Any]:
    """A template's variables: the JSON object in file ``given``, or on stdin for ``-``."""
    where = "stdin" if given == STDIN else given
    text = sys.stdin.read() if given == STDIN else _read(Path(given))
    value = _parse_json(Path(where), text)
    if not isinstance(value, dict):
        raise UsageError(f"{where}: the vars must be a JSON object, not {type(value).__name__}")
    return value


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"cannot read {path}: not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _parse_json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from exc


def _parse_toml(path: Path, text: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from exc


# -- the parser ------------------------------------------------------------------------------


def add_commands(command: AddCommand) -> None:
    p = command(
        "template",
        cmd_template,
        "message templates (Liquid, one source per payload field), kept by version:"
        " put, show, list, render",
        exits("2  no action given"),
    )
    action = _actions(p, "template_command")
    _add_put(action)
    a = action("show", cmd_template_show, "a template's parts, each under its field", READ_EXITS)
    a.add_argument("name", metavar="NAME", help=NAME_HELP)
    a.add_argument("--version", type=positive_int, metavar="N", help=VERSION_HELP)
    action("list", cmd_template_list, "every template's latest version", READ_EXITS)
    a = action(
        "render",
        cmd_template_render,
        "render a template with vars as a message naming it would be at submit, sending"
        " nothing: each field, then the digest of them all",
        exits(
            "0  rendered",
            "1  the daemon refused (a role, no such template or version)",
            "2  bad usage (an unreadable vars FILE, not a JSON object), or vars the template"
            " cannot render with (a missing variable, a limit hit: the message names it)",
            "3  the daemon could not be reached",
        ),
    )
    a.add_argument("name", metavar="NAME", help=NAME_HELP)
    a.add_argument("--vars", required=True, metavar="FILE", help=VARS_HELP)
    a.add_argument("--version", type=positive_int, metavar="N", help=VERSION_HELP)


def _add_put(action: Any) -> None:
    a = action(
        "put",
        cmd_template_put,
        "keep FILE as the next version of template NAME (audited)",
        exits(
            "0  kept",
            "1  the daemon refused (a role)",
            "2  bad usage (an unreadable FILE, not an object of strings), or a source that does"
            " not parse or is over a limit (the message says which)",
            "3  the daemon could not be reached",
        ),
    )
    a.add_argument("name", metavar="NAME", help=NAME_HELP)
    a.add_argument(
        "file",
        metavar="FILE",
        help='a .json or .toml object of parts ({"subject": "...", "text": "...", "html":'
        ' "..."}: payload field -> Liquid source), or any other file: one part (--part)',
    )
    a.add_argument(
        "--part",
        metavar="FIELD",
        help=f"the payload field a file of one part fills; none: {DEFAULT_PART}",
    )
    a.add_argument(
        "--by", metavar="NAME", help="who, for the audit log; none: your user name and uid"
    )


__all__ = ["add_commands", "read_parts", "read_vars"]
