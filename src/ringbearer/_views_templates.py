"""What the template commands print: a version kept, a template's parts, the list, a render.

Pure functions from typed replies to text, like ``_views``: no daemon, no
clock, no terminal. Sources and rendered fields are printed as they are, each
under a heading naming its payload field, so they can be read or copied whole.
"""

from __future__ import annotations

from ._views import table, utc
from .control._replies import RenderedReply, TemplatesReply, TemplateView

LIST_HEAD = ("NAME", "VERSION", "BY", "WHEN", "PARTS")


def heading(field: str) -> str:
    """The line above a part or a rendered field: ``== subject ==``."""
    return f"== {field} =="


def _fields(fields: dict[str, str]) -> list[str]:
    """Each field under its heading, its text as it is (without a doubled last newline)."""
    lines: list[str] = []
    for field, text in fields.items():
        lines += [heading(field), *text.removesuffix("\n").split("\n")]
    return lines


def format_kept(view: TemplateView) -> str:
    """What ``template put`` prints: ``template invite version 3 kept``."""
    return f"template {view.name} version {view.version} kept"


def format_template(view: TemplateView) -> str:
    """A version: who kept it and when, then each part under its field's name."""
    head = (
        f"template {view.name} version {view.version} (kept by {view.by} at {utc(view.created_at)})"
    )
    return "\n".join([head, *_fields(view.parts)])


def format_templates(reply: TemplatesReply) -> str:
    """The latest version of each template, a row each."""
    if not reply.templates:
        return "no templates"
    rows = [
        (t.name, str(t.version), t.by, utc(t.created_at), ", ".join(t.parts))
        for t in reply.templates
    ]
    return "\n".join(table([LIST_HEAD, *rows], right=(1,)))


def format_rendered(reply: RenderedReply) -> str:
    """Each rendered field under its name, then the digest of them all."""
    head = f"template {reply.name} version {reply.version} rendered"
    return "\n".join([head, *_fields(reply.fields), f"digest: {reply.digest}"])
