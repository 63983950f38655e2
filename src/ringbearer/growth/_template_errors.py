"""The errors of templates: what a caller does next is change the template or the vars.

    TemplateError
    ├── TemplateSyntaxError   the source does not parse, or uses an unknown filter
    ├── LimitExceeded         a limit was hit; ``limit`` names it
    ├── MissingVariable       ``variable``, as written in the template
    ├── BadVariable           a var the wedding helpers read has the wrong shape
    └── RenderFailed          another error while rendering (``kind``, ``line``)

Messages carry template text only, never a value from the vars.
"""

from __future__ import annotations

import enum

from liquid import exceptions as lx

from .._errors import RingbearerError

HELPERS = "wedding"  # the reserved top-level name of the wedding helpers


class Limit(enum.Enum):
    """A template limit, named as its setting in :class:`TemplateLimits`."""

    SOURCE_BYTES = "source_bytes"
    RENDER_SECONDS = "render_seconds"
    LOOP_ITERATIONS = "loop_iterations"
    OUTPUT_BYTES = "output_bytes"
    VALUE_BYTES = "value_bytes"
    NESTING = "nesting"


class TemplateError(RingbearerError):
    """A template cannot be stored or rendered as it is; nothing was sent."""

    def __init__(self, template: str, field: str | None, message: str) -> None:
        self.template = template
        self.field = field
        where = f"template {template!r}" + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {message}")


class TemplateSyntaxError(TemplateError):
    """The source does not parse; ``line`` is 1-based."""

    def __init__(self, template: str, field: str, line: int, detail: str) -> None:
        self.line = line
        self.detail = detail
        super().__init__(template, field, f"line {line}: {detail}")


class LimitExceeded(TemplateError):
    """A limit was hit; ``limit`` names it and ``allowed`` is its setting."""

    def __init__(self, template: str, field: str | None, limit: Limit, allowed: float) -> None:
        self.limit = limit
        self.allowed = allowed
        shown = int(allowed) if float(allowed).is_integer() else allowed
        super().__init__(template, field, f"over the {limit.value} limit ({shown})")


class MissingVariable(TemplateError):
    """The template uses ``variable`` (as it writes it) and the vars do not have it."""

    def __init__(self, template: str, field: str, variable: str, line: int) -> None:
        self.variable = variable
        self.line = line
        helper = variable.split(".")[1] if variable.startswith(f"{HELPERS}.") else ""
        extra = f" ({_HELPER_HINTS[helper]})" if helper in _HELPER_HINTS else ""
        super().__init__(template, field, f"line {line}: missing variable {variable}{extra}")


_HELPER_HINTS = {
    "couple": "needs vars 'couple'",
    "names": "needs vars 'couple'",
    "date": "needs vars 'wedding_date'",
    "at": "needs vars 'wedding_date' with a time",
    "days_until": "needs vars 'wedding_date'",
    "stage": "needs vars 'wedding_date'",
}


class BadVariable(TemplateError):
    """A var the wedding helpers read has the wrong shape (its value is not repeated)."""

    def __init__(self, template: str, variable: str, reason: str) -> None:
        self.variable = variable
        super().__init__(template, None, f"vars {variable!r}: {reason}")


class RenderFailed(TemplateError):
    """Rendering failed otherwise; ``kind`` is the engine's name for it, ``line`` if known."""

    def __init__(self, template: str, field: str, kind: str, line: int | None, detail: str) -> None:
        self.kind = kind
        self.line = line
        super().__init__(template, field, detail if line is None else f"line {line}: {detail}")


class Over(Exception):
    """Raised deep in the engine; turned into :class:`LimitExceeded` where the field is known."""

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        super().__init__(limit.value)


class FilterFault(lx.FilterArgumentError):
    """A filter's refusal whose message is ours (template text only), so it may be shown."""
