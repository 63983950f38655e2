"""The base of every typed request: what its reply is."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

R = TypeVar("R", covariant=True)


class Asks(Generic[R]):
    """A request whose result is an ``R`` (its class is ``reply``)."""

    reply: ClassVar[type[Any]]
