"""Message templates: Liquid sources rendered once, within limits, into payload fields.

A :class:`Template` has a name, a version and one Liquid source per payload
field (``subject``, ``text``, ``html`` for an email), so a message's
``template`` and ``vars`` become exactly the fields its provider takes
(:meth:`Rendered.payload`). Rendering is pure: the same template version, vars
and wall time give the same bytes, because the engine reads no clock, no
locale and no file (``include`` and ``render`` are gone, ``date`` refuses
``now``), and "now" is a value handed in.

Liquid (``python-liquid``) rather than a sandboxed Jinja2: Liquid was made for
templates written by people who are not trusted with the host (no attribute
access to Python objects, no function calls, no imports), so the sandbox is the
language itself instead of a filter over a general-purpose one. Over it, every
resource is bounded (:class:`TemplateLimits`), and each limit hit names itself:

* ``source_bytes``: all of a template's sources together;
* ``render_seconds``: checked at every loop step, filter call and write, on an
  injected monotonic clock (the CPU one render spends, which trio's clock does
  not measure: it stands still while synchronous code runs under a mock clock);
* ``loop_iterations``: nested loops multiplied, and the length of any range,
  so that no single step (``(1..n) | join``, ``contains``) runs unbounded
  between two checks of the clock;
* ``output_bytes``: the rendered fields together (UTF-8);
* ``value_bytes``: what the template builds in memory (assigned or captured
  values, any one filter's result; ``join`` and ``replace``, whose results can
  dwarf their inputs, are refused before they build it, and ``uniq`` is
  replaced by a linear one);
* ``nesting``: the engine's fixed bound on nested blocks.

A variable the template uses but the vars lack is an error naming the variable
as written in the template (strict undefined). Error messages carry template
text only, never a value from the vars (they may be personal data); the
engine's own message, which may quote values, is dropped.

Wedding helpers sit under the reserved name ``wedding``, computed from the vars
``couple`` (a list of names) and ``wedding_date`` (``YYYY-MM-DD`` in the
calendar's zone, or an ISO 8601 time with its offset) and the wall time::

    wedding.couple      "Ana & Ben"            wedding.names   ["Ana", "Ben"]
    wedding.date        "2027-06-12" (local)   wedding.at      "2027-06-12T00:30:00+01:00"
    wedding.days_until  3 (calendar days)      wedding.stage   "final"
    wedding.timezone    "Europe/London"

and ``{{ t | date: "%A %-d %B %Y" }}`` formats a date or time in the
calendar's zone (or one given: ``date: "%H:%M", "America/New_York"``) with
English names, whatever the host's locale.

The wedding helpers are in ``_wedding_helpers``, the ``date`` filter in
``_liquid_date``, and the errors (what the caller does next: change the
template or the vars) in ``_template_errors``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
import time
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs
import liquid
from attrs import validators as v
from liquid import exceptions as lx
from liquid.builtin.expressions.primitive import RangeLiteral
from liquid.filter import flatten, sequence_filter

from ._liquid_date import date_filter
from ._stages import Planning, StageSettings
from ._template_errors import HELPERS as HELPERS
from ._template_errors import BadVariable as BadVariable
from ._template_errors import FilterFault, Over
from ._template_errors import Limit as Limit
from ._template_errors import LimitExceeded as LimitExceeded
from ._template_errors import MissingVariable as MissingVariable
from ._template_errors import RenderFailed as RenderFailed
from ._template_errors import TemplateError as TemplateError
from ._template_errors import TemplateSyntaxError as TemplateSyntaxError
from ._wedding_helpers import wedding_helpers

if TYPE_CHECKING:
    from liquid.builtin.tags.for_tag import ForLoop
    from liquid.builtin.tags.tablerow_tag import TableRow

_TEMPLATE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# A variable as the template writes it: ``couple.name``, ``guests[2].name``, ``a["b"]``.
_VARIABLE = re.compile(r"[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\[[^\]\n]{0,64}\])*")


NESTING_LIMIT = liquid.Environment.block_nesting_limit  # the engine's; not a setting


@attrs.frozen
class TemplateLimits:
    """``[growth.templates]``: what one template may take."""

    source_bytes: int = attrs.field(default=64 * 1024, validator=v.gt(0))
    render_seconds: float = attrs.field(default=0.2, validator=v.gt(0.0))
    loop_iterations: int = attrs.field(default=100_000, validator=v.gt(0))
    output_bytes: int = attrs.field(default=256 * 1024, validator=v.gt(0))
    value_bytes: int = attrs.field(default=1024 * 1024, validator=v.gt(0))
    # Fields whose values are HTML: what the vars put there is escaped.
    html_fields: tuple[str, ...] = ("html",)

    def allowed(self, limit: Limit) -> float:
        if limit is Limit.NESTING:
            return NESTING_LIMIT
        value: float = getattr(self, limit.value)
        return value


# --- templates and results ------------------------------------------------------------


@attrs.frozen
class Part:
    """The Liquid source of one payload field."""

    field: str = attrs.field(validator=v.matches_re(_FIELD_NAME))
    source: str


def _distinct_fields(
    _: object, __: attrs.Attribute[tuple[Part, ...]], parts: tuple[Part, ...]
) -> None:
    names = [p.field for p in parts]
    if not names:
        raise ValueError("a template needs at least one field")
    if len(set(names)) != len(names):
        raise ValueError(f"a template's fields must be distinct, not {', '.join(names)}")


def _as_parts(parts: Iterable[Part]) -> tuple[Part, ...]:
    return tuple(parts)


@attrs.frozen
class Template:
    """A named, versioned template: one source per payload field, in payload order."""

    name: str = attrs.field(validator=v.matches_re(_TEMPLATE_NAME))
    version: int = attrs.field(validator=v.ge(1))
    parts: tuple[Part, ...] = attrs.field(converter=_as_parts, validator=_distinct_fields)

    @classmethod
    def of(cls, name: str, version: int, sources: Mapping[str, str]) -> Template:
        """A template from ``{"subject": ..., "text": ..., "html": ...}``."""
        return cls(name, version, tuple(Part(f, s) for f, s in sources.items()))

    @property
    def source_bytes(self) -> int:
        return sum(len(p.source.encode("utf-8")) for p in self.parts)


@attrs.frozen
class Rendered:
    """A template's rendered fields, to be stored with the message and sent as they are."""

    template: str
    version: int
    fields: tuple[tuple[str, str], ...]

    def payload(self) -> dict[str, str]:
        """The fields to merge into the message's payload."""
        return dict(self.fields)

    def canonical(self) -> bytes:
        """The fields as canonical JSON: what "identical bytes" is checked on."""
        text = json.dumps(self.payload(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8")

    def digest(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()


# --- the engine's bounds --------------------------------------------------------------


@attrs.define
class _Budget:
    """One render's spending: its deadline, and what is left of its output."""

    limits: TemplateLimits
    clock: Callable[[], float]
    deadline: float
    output_left: int

    def tick(self) -> None:
        if self.clock() > self.deadline:
            raise Over(Limit.RENDER_SECONDS)

    def paced(self, items: Iterator[Any]) -> Iterator[Any]:
        for item in items:
            self.tick()
            yield item

    def check_value(self, value: object) -> None:
        if isinstance(value, str | list | dict) and sys.getsizeof(value) > self.limits.value_bytes:
            raise Over(Limit.VALUE_BYTES)


class _Sink(io.StringIO):
    """An output buffer that spends the budget: the clock on each write, and bytes."""

    def __init__(self, budget: _Budget, room: int, limit: Limit) -> None:
        super().__init__()
        self.budget = budget
        self.room = room
        self.limit = limit
        self.size = 0

    def write(self, s: str, /) -> int:
        self.budget.tick()
        if s:
            self.size += len(s.encode("utf-8"))
            if self.size > self.room:
                raise Over(self.limit)
        return super().write(s)


class _Context(liquid.RenderContext):
    """The engine's render context, with the clock checked at every loop step and filter."""

    budget: _Budget

    @contextmanager
    def loop(
        self, namespace: Mapping[str, object], forloop: ForLoop | TableRow
    ) -> Iterator[liquid.RenderContext]:
        forloop.it = self.budget.paced(forloop.it)
        with super().loop(namespace, forloop) as context:
            yield context

    def filter(self, name: str, token: liquid.Token | None) -> Callable[..., object]:
        return _guarded(name, super().filter(name, token), self.budget)

    def get_buffer(self, buf: Any = None) -> io.StringIO:
        # What capture and ifchanged render into: bounded as a value, not counted as output.
        return _Sink(self.budget, self.budget.limits.value_bytes, Limit.VALUE_BYTES)

    def copy(self, *args: Any, **kwargs: Any) -> liquid.RenderContext:
        ctx = super().copy(*args, **kwargs)
        if isinstance(ctx, _Context):
            ctx.budget = self.budget
        return ctx


def _guarded(name: str, func: Callable[..., object], budget: _Budget) -> Callable[..., object]:
    """A filter that checks the clock around its call, and the size of what it makes."""
    size_of = _RESULT_SIZES.get(name)

    def guarded(*args: Any, **kwargs: Any) -> object:
        budget.tick()
        if size_of is not None and size_of(args) > budget.limits.value_bytes:
            raise Over(Limit.VALUE_BYTES)  # refused before it is built
        try:
            result = func(*args, **kwargs)
        except (ArithmeticError, ValueError) as exc:
            # A few of the engine's filters let these through; their words may quote values.
            raise FilterFault(
                f"{name} failed on its input ({type(exc).__name__})", token=None
            ) from None
        budget.check_value(result)
        budget.tick()
        return result

    return guarded


def _text(value: object) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def _join_size(args: tuple[Any, ...]) -> int:
    """The length ``join`` would make: the one filter whose result is items x separator."""
    items = args[0] if args else ()
    if isinstance(items, list | tuple):
        items = flatten(items)
    elif not isinstance(items, range):
        items = [items]
    separator = _text(args[1]) if len(args) > 1 else " "
    return sum(len(_text(i)) for i in items) + len(separator) * max(len(items) - 1, 0)


def _replace_size(args: tuple[Any, ...]) -> int:
    """The length ``replace`` would make: occurrences x replacement."""
    text = _text(args[0]) if args else ""
    old = _text(args[1]) if len(args) > 1 else ""
    new = _text(args[2]) if len(args) > 2 else ""
    count = text.count(old) if old else len(text) + 1
    return len(text) + count * (len(new) - len(old))


# Filters whose result can be far larger than their inputs together; the others'
# results are checked once made, which their inputs' sizes already bound.
_RESULT_SIZES: dict[str, Callable[[tuple[Any, ...]], int]] = {
    "join": _join_size,
    "replace": _replace_size,
}


@sequence_filter
def _uniq(sequence: list[object], key: object = None) -> list[object]:
    """Liquid's ``uniq`` in linear time (the engine's compares each item with all before it)."""
    hashable: set[object] = set()
    other: list[object] = []
    kept: list[object] = []
    for item in sequence:
        value = item if key is None else _property(item, key)
        try:
            seen = value in hashable
            hashable.add(value)
        except TypeError:  # a dict or list: compared the slow way, among its kind only
            seen = value in other
            other.append(value)
        if not seen:
            kept.append(item)
    return kept


_ABSENT = object()


def _property(item: object, key: object) -> object:
    if not isinstance(item, Mapping):
        raise FilterFault("uniq: given a property, every item must be an object", token=None)
    return item.get(key, _ABSENT)


class _BoundedRange(RangeLiteral):
    """A range literal ``(a..b)`` no longer than the loop-iteration limit."""

    __slots__ = ()

    def evaluate(self, context: liquid.RenderContext) -> range:
        found = super().evaluate(context)
        allowed = sys.maxsize
        if isinstance(context, _Context):
            allowed = context.budget.limits.loop_iterations
        if found.stop - found.start > allowed:
            raise Over(Limit.LOOP_ITERATIONS)
        return found


def _bound_ranges(bound: liquid.BoundTemplate) -> None:
    """Make every range literal of a parsed template a bounded one."""
    static = liquid.RenderContext(bound)
    nodes = list(bound.nodes)
    while nodes:
        node = nodes.pop()
        nodes.extend(node.children(static, include_partials=False))
        expressions = list(node.expressions())
        while expressions:
            expression = expressions.pop()
            expressions.extend(expression.children())
            if type(expression) is RangeLiteral:
                expression.__class__ = _BoundedRange


def _environment(
    limits: TemplateLimits, zone: zoneinfo.ZoneInfo, *, html: bool
) -> liquid.Environment:
    """A Liquid environment for one engine: strict, bounded, with no file or clock."""

    class Bounded(liquid.Environment):
        loop_iteration_limit = limits.loop_iterations
        local_namespace_limit = limits.value_bytes

    env = Bounded(undefined=liquid.StrictUndefined, autoescape=html, strict_filters=True)
    for tag in ("include", "render"):
        env.tags.pop(tag, None)
    env.add_filter("date", date_filter(zone))
    env.add_filter("uniq", _uniq)
    return env


# --- compiling and rendering ----------------------------------------------------------


@attrs.frozen(eq=False)
class Compiled:
    """A template parsed and checked, ready to render any number of times."""

    template: Template
    bound: tuple[tuple[str, liquid.BoundTemplate], ...]


@attrs.frozen
class Engine:
    """Compiles and renders templates on one calendar, within ``limits``.

    ``clock`` measures render time (monotonic seconds; tests give their own).
    The engine keeps no state between renders.
    """

    limits: TemplateLimits = attrs.Factory(TemplateLimits)
    planning: Planning = attrs.Factory(lambda: Planning(StageSettings()))
    clock: Callable[[], float] = time.perf_counter
    _plain: liquid.Environment = attrs.field(init=False)
    _html: liquid.Environment = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        zone = self.planning.zone
        object.__setattr__(self, "_plain", _environment(self.limits, zone, html=False))
        object.__setattr__(self, "_html", _environment(self.limits, zone, html=True))

    def compile(self, template: Template) -> Compiled:
        """Parse and check ``template``: its size, syntax, filters and nesting."""
        if template.source_bytes > self.limits.source_bytes:
            raise _limit_error(self.limits, template.name, None, Limit.SOURCE_BYTES)
        bound = tuple((p.field, self._parse(template.name, p)) for p in template.parts)
        return Compiled(template, bound)

    def render(
        self, template: Template | Compiled, variables: Mapping[str, object], now: float
    ) -> Rendered:
        """``template`` with ``variables`` at wall time ``now``: the payload fields."""
        compiled = template if isinstance(template, Compiled) else self.compile(template)
        name = compiled.template.name
        if HELPERS in variables:
            raise BadVariable(name, HELPERS, "is reserved for the wedding helpers")
        namespace = {**variables, HELPERS: wedding_helpers(name, variables, self.planning, now)}
        limits = self.limits
        budget = _Budget(
            limits, self.clock, self.clock() + limits.render_seconds, limits.output_bytes
        )
        fields = tuple(
            (field, self._render_field(name, field, bound, namespace, budget))
            for field, bound in compiled.bound
        )
        return Rendered(name, compiled.template.version, fields)

    def _parse(self, name: str, part: Part) -> liquid.BoundTemplate:
        env = self._html if part.field in self.limits.html_fields else self._plain
        try:
            bound = env.from_string(part.source, name=f"{name}:{part.field}")
        except lx.BlockNestingError:
            raise _limit_error(self.limits, name, part.field, Limit.NESTING) from None
        except lx.LiquidError as err:
            raise TemplateSyntaxError(name, part.field, _line(err), str(err.message)) from err
        _check_filters(name, part, bound, env)
        _bound_ranges(bound)
        return bound

    def _render_field(
        self,
        name: str,
        field: str,
        bound: liquid.BoundTemplate,
        namespace: Mapping[str, object],
        budget: _Budget,
    ) -> str:
        context = _Context(bound, globals=bound.make_globals(namespace))
        context.budget = budget
        sink = _Sink(budget, budget.output_left, Limit.OUTPUT_BYTES)
        try:
            bound.render_with_context(context, sink)
        except Over as over:
            raise _limit_error(self.limits, name, field, over.limit) from None
        # ``from None`` below: the engine's words may quote values from the vars.
        except lx.LiquidError as err:
            raise _translate(self.limits, name, field, err) from None
        except (ArithmeticError, ValueError, TypeError, RecursionError) as exc:
            kind = type(exc).__name__  # raised past the engine's own checks (a huge number)
            raise RenderFailed(name, field, kind, None, f"{kind} while rendering") from None
        budget.output_left -= sink.size
        return sink.getvalue()


def _check_filters(
    name: str, part: Part, bound: liquid.BoundTemplate, env: liquid.Environment
) -> None:
    """An unknown filter is found when the template is stored, not when a message needs it."""
    used = bound.analyze(include_partials=False).filters
    for filter_name, spans in sorted(used.items()):
        if filter_name not in env.filters:
            line = part.source.count("\n", 0, max(spans[0].index, 0)) + 1
            raise TemplateSyntaxError(name, part.field, line, f"unknown filter {filter_name!r}")


def _limit_error(
    limits: TemplateLimits, name: str, field: str | None, limit: Limit
) -> LimitExceeded:
    return LimitExceeded(name, field, limit, limits.allowed(limit))


_ENGINE_LIMITS: tuple[tuple[type[lx.LiquidError], Limit], ...] = (
    (lx.LoopIterationLimitError, Limit.LOOP_ITERATIONS),
    (lx.LocalNamespaceLimitError, Limit.VALUE_BYTES),
    (lx.OutputStreamLimitError, Limit.OUTPUT_BYTES),
    (lx.BlockNestingError, Limit.NESTING),
    (lx.ContextDepthError, Limit.NESTING),
)


def _translate(limits: TemplateLimits, name: str, field: str, err: lx.LiquidError) -> TemplateError:
    """The engine's error as ours, carrying template text only."""
    for engine_error, limit in _ENGINE_LIMITS:
        if isinstance(err, engine_error):
            return _limit_error(limits, name, field, limit)
    if isinstance(err, lx.UndefinedError):
        return MissingVariable(name, field, _variable(err), _line(err))
    if isinstance(err, FilterFault):
        return RenderFailed(name, field, "filter", _line(err), str(err.message))
    kind = type(err).__name__
    near = f" near {err.token.value!r}" if err.token is not None else ""
    return RenderFailed(name, field, kind, _line(err), f"{kind}{near}")


def _variable(err: lx.LiquidError) -> str:
    """The missing variable as the template writes it (never a value from the vars)."""
    token = err.token
    if token is None or token.start_index < 0:
        return "(unknown)"
    found = _VARIABLE.match(token.source, token.start_index)
    return found[0] if found else token.value


def _line(err: lx.LiquidError) -> int:
    token = err.token
    if token is None or token.start_index < 0:
        return 1
    return token.source.count("\n", 0, token.start_index) + 1
