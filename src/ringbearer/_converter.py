"""The project's one cattrs converter, built by one function.

Constrained scalar types are ``NewType``s with structure hooks, so a bad value
is reported at its key path like a wrong type is.
"""

from __future__ import annotations

import collections.abc
import datetime
import enum
import math
import re
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal, NewType

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, list_structure_factory
from cattrs.gen import make_dict_structure_fn
from cattrs.preconf.json import make_converter
from cattrs.v import format_exception

from ._errors import ConfigProblem
from ._secrets import SecretRef

PositiveInt = NewType("PositiveInt", int)
PositiveFloat = NewType("PositiveFloat", float)
NonNegativeFloat = NewType("NonNegativeFloat", float)
Fraction = NewType("Fraction", float)
HostPort = NewType("HostPort", str)
HttpPath = NewType("HttpPath", str)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what the store's INTEGER columns hold


class _UnixTimeMark:
    """Marks a float that is a Unix time (see ``UnixTime``)."""


_UNIX_TIME = _UnixTimeMark()
# A float, to its callers and to mypy; on the wire it must be a time that datetime can
# show in any zone (a day of margin at both ends), so no store, view or calendar overflows.
UnixTime = Annotated[float, _UNIX_TIME]
EARLIEST_TIME = datetime.datetime(1, 1, 2, tzinfo=datetime.UTC).timestamp()
LATEST_TIME = datetime.datetime(9999, 12, 31, tzinfo=datetime.UTC).timestamp()


def _number(value: Any) -> float:
    # TOML gives ints and floats; a bool is an int in Python but never a number here.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__} {value!r}")
    return float(value)


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__} {value!r}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"must be between {INT64_MIN} and {INT64_MAX} (64 bits)")
    return value


def check_unix_time(value: float) -> float:
    """``value`` if it is a representable Unix time in seconds; else ValueError saying why."""
    if not math.isfinite(value):
        raise ValueError(f"expected a Unix time in seconds, not {value}")
    if not EARLIEST_TIME <= value <= LATEST_TIME:
        millis = EARLIEST_TIME <= value / 1000 <= LATEST_TIME
        hint = " (milliseconds? give seconds)" if millis else ""
        raise ValueError(
            f"{value:.0f} is not a Unix time in seconds between years 1 and 9999{hint}"
        )
    return value


def _unix_time(value: Any, _: Any) -> float:
    return check_unix_time(_number(value))


def _positive_int(value: Any, _: Any) -> PositiveInt:
    number = _integer(value)
    if number <= 0:
        raise ValueError(f"must be a positive integer, got {number}")
    return PositiveInt(number)


def _positive_float(value: Any, _: Any) -> PositiveFloat:
    number = _number(value)
    if number <= 0:
        raise ValueError(f"must be greater than 0, got {value}")
    return PositiveFloat(number)


def _non_negative(value: Any, _: Any) -> NonNegativeFloat:
    number = _number(value)
    if number < 0:
        raise ValueError(f"must not be negative, got {value}")
    return NonNegativeFloat(number)


def _fraction(value: Any, _: Any) -> Fraction:
    number = _number(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"must be between 0 and 1, got {value}")
    return Fraction(number)


def parse_host_port(text: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:9464`` for IPv6); raise ValueError when malformed."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected host:port, got {text!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range in {text!r}")
    return host.strip("[]"), port


def _host_port(value: Any, _: Any) -> HostPort:
    if not isinstance(value, str):
        raise TypeError(f"expected a string host:port, got {type(value).__name__}")
    parse_host_port(value)
    return HostPort(value)


def _http_path(value: Any, _: Any) -> HttpPath:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"expected a path starting with '/', got {value!r}")
    return HttpPath(value)


def _strict_str(value: Any, type_: Any) -> str:
    if _is_enum(type_):  # a StrEnum reaches the str hook first
        member: str = _enum_value(value, type_)  # type: ignore[assignment]
        return member
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__} {value!r}")
    return value


def _strict_bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__} {value!r}")
    return value


def _secret_ref(value: Any, _: Any) -> SecretRef:
    if isinstance(value, str):
        raise ValueError(
            "secrets are references, never inline values: write "
            '{ env = "NAME" } or { credential = "NAME" }'
        )
    if not isinstance(value, dict):
        raise TypeError(f"expected a secret reference table, got {type(value).__name__}")
    unknown = set(value) - {"env", "credential"}
    if unknown:
        raise ValueError(f"unknown keys in a secret reference: {', '.join(sorted(unknown))}")
    for key, name in value.items():
        if not isinstance(name, str):
            raise TypeError(f"secret reference '{key}' must be a string")
    return SecretRef(env=value.get("env"), credential=value.get("credential"))


def make() -> cattrs.Converter:
    """Build the converter: strict types, unknown keys forbidden, detailed errors."""
    converter = make_converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(int, lambda v, _: _integer(v))
    converter.register_structure_hook(float, lambda v, _: _number(v))
    converter.register_structure_hook(PositiveInt, _positive_int)
    converter.register_structure_hook(PositiveFloat, _positive_float)
    converter.register_structure_hook(NonNegativeFloat, _non_negative)
    converter.register_structure_hook(Fraction, _fraction)
    converter.register_structure_hook(HostPort, _host_port)
    converter.register_structure_hook(HttpPath, _http_path)
    converter.register_structure_hook(SecretRef, _secret_ref)
    converter.register_structure_hook_factory(_is_list, _no_strings(list_structure_factory))
    converter.register_structure_hook_factory(
        _is_tuple, _no_strings(homogenous_tuple_structure_factory)
    )
    converter.register_structure_hook_func(lambda t: t is object, _json_value)
    converter.register_structure_hook_func(_is_enum, _enum_value)
    converter.register_structure_hook_func(_is_literal, _literal_value)
    converter.register_structure_hook_func(_is_unix_time, _unix_time)
    converter.register_structure_hook_factory(attrs.has, _reported_init_errors(converter))
    return converter


def describe_error(exc: BaseException, type_: type | None) -> str:
    """For ``cattrs.transform_error``: our hooks and validators say precisely what is wrong;
    keep their words."""
    if isinstance(exc, ValueError | TypeError) and str(exc):
        return str(exc)
    return format_exception(exc, type_)


def problems(exc: Exception, prefix: str) -> list[ConfigProblem]:
    """A structuring error as config problems, each at its key path under ``prefix``."""
    found = []
    for line in cattrs.transform_error(exc, path="$", format_exception=describe_error):
        message, _, where = line.rpartition(" @ ")
        path = where.removeprefix("$").lstrip(".")
        path = re.sub(r"\['([^']*)'\]", r".\1", path).lstrip(".")
        full = ".".join(p for p in (prefix, path) if p)
        found.append(ConfigProblem(full, message))
    return found


def _is_enum(type_: Any) -> bool:
    return isinstance(type_, type) and issubclass(type_, enum.Enum)


def _enum_value(value: Any, type_: type[enum.Enum]) -> enum.Enum:
    """An enum member by its value; a wrong one names those allowed."""
    try:
        return type_(value)
    except ValueError:
        allowed = _one_of([str(m.value) for m in type_])
        raise ValueError(f"expected {allowed}, not {value!r}") from None


def _is_literal(type_: Any) -> bool:
    return typing.get_origin(type_) is Literal


def _literal_value(value: Any, type_: Any) -> Any:
    """One of a ``Literal``'s values (of its very type: ``1`` is not ``True``); a wrong one
    names those allowed."""
    allowed = typing.get_args(type_)
    if any(type(value) is type(a) and value == a for a in allowed):
        return value
    raise ValueError(f"expected {_one_of([str(a) for a in allowed])}, not {value!r}")


def _one_of(names: list[str]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def _is_unix_time(type_: Any) -> bool:
    return typing.get_origin(type_) is Annotated and _UNIX_TIME in type_.__metadata__


def _json_value(value: Any, _: Any) -> object:
    """A free-form JSON value (a payload, an event's detail): kept as it came."""
    return value


def _reported_init_errors(converter: cattrs.Converter) -> Factory1:
    """Report attrs validator errors at the class's key path instead of crashing."""

    def factory(cl: type) -> Callable[[Any, Any], Any]:
        base: Callable[[Any, Any], Any] = make_dict_structure_fn(
            cl, converter, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True
        )

        def hook(value: Any, type_: Any) -> Any:
            if not isinstance(value, dict):
                raise TypeError(f"expected a table, got {type(value).__name__} {value!r}")
            try:
                return base(value, type_)
            except cattrs.BaseValidationError:
                raise
            except (ValueError, TypeError) as exc:
                raise cattrs.ClassValidationError(cl.__name__, [exc], cl) from None

        return hook

    return factory


def _is_list(type_: Any) -> bool:
    return typing.get_origin(type_) in (list, collections.abc.Sequence)


def _is_tuple(type_: Any) -> bool:
    args = typing.get_args(type_)
    return typing.get_origin(type_) is tuple and len(args) == 2 and args[1] is Ellipsis


Factory = Callable[[Any, cattrs.Converter], Callable[[Any, Any], Any]]
Factory1 = Callable[[Any], Callable[[Any, Any], Any]]


def _no_strings(make_hook: Factory) -> Factory:
    """cattrs reads a string where a list is wanted as a list of its characters
    (``users = "deploy"`` as six one-letter users): refuse it instead."""

    def factory(type_: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
        structure = make_hook(type_, converter)

        def hook(value: Any, target: Any) -> Any:
            if isinstance(value, str | bytes):
                raise ValueError("expected a list, not a string")
            return structure(value, target)

        return hook

    return factory
