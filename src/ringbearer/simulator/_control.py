"""The simulator's own API under ``/_sim``: faults, stats and reset.

* ``GET /_sim/faults[?provider=x]`` — faults, per provider.
* ``POST /_sim/faults`` — ``{"provider": "resend", "error_rate": 0.1, ...}``
  replaces that provider's faults (fields left out take their defaults).
* ``DELETE /_sim/faults[?provider=x]`` — back to healthy, one or all.
* ``GET /_sim/stats[?provider=x]`` — counters, per provider.
* ``GET /_sim/keys[?provider=x]`` — each accepted idempotency key and how many
  accepted requests carried it.
* ``GET /_sim/wait?provider=x&accepted=N&timeout=S`` — blocks until x has
  accepted N requests (408 if the timeout passes first).
* ``GET /_sim/requests[?provider=x]`` — the last requests each provider
  received (method, path, query, content type, headers, body), with
  credentials reduced to their form (``"Basic api"``, ``"Bearer"``).
* ``POST /_sim/reset`` — clears stats, idempotency and dedup tables, and faults.

A provider is named by its kind as the config spells it (``slack_webhook``,
``twilio_sms``) or by its path segment (``slack-webhook``); an answer is
keyed by the names as asked, or, when none is asked, by path segment.

Errors are ``400 {"error": "..."}`` naming the bad provider or field; an
HTTP request is first parsed into one of the command types below, then run.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import attrs
import cattrs
from cattrs.v import format_exception

from .. import _converter
from .._httpserver import HttpRequest, HttpResponse
from ._faults import Faults
from ._provider import kind_of
from ._slot import ProviderSlot
from ._state import SimulatorState


@attrs.frozen
class ShowFaults:
    providers: tuple[str, ...]


@attrs.frozen
class SetFaults:
    provider: str
    faults: Faults


@attrs.frozen
class ClearFaults:
    providers: tuple[str, ...]


@attrs.frozen
class ShowStats:
    providers: tuple[str, ...]


@attrs.frozen
class Reset:
    pass


@attrs.frozen
class ShowKeys:
    providers: tuple[str, ...]


@attrs.frozen
class ShowRequests:
    providers: tuple[str, ...]


Command: TypeAlias = (
    ShowFaults | SetFaults | ClearFaults | ShowStats | Reset | ShowKeys | ShowRequests
)


class _Refused(Exception):
    """The control request cannot be run; ``status`` and the message say why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@attrs.frozen
class ControlApi:
    """Answers ``/_sim`` requests against the simulator's state."""

    state: SimulatorState
    converter: cattrs.Converter = attrs.Factory(_converter.make)

    def handle(self, request: HttpRequest, path: str) -> HttpResponse:
        try:
            return self.run(self.parse(request, path))
        except _Refused as refused:
            return HttpResponse.json(refused.status, {"error": str(refused)})

    def run(self, command: Command) -> HttpResponse:
        slot = self._slot
        match command:
            case ShowFaults(providers):
                return self._show({name: slot(name).faults for name in providers})
            case SetFaults(provider, faults):
                slot(provider).faults = faults
                return self._show({provider: faults})
            case ClearFaults(providers):
                for name in providers:
                    slot(name).faults = Faults()
                return self._show({name: slot(name).faults for name in providers})
            case ShowStats(providers):
                return self._show({name: slot(name).stats.snapshot() for name in providers})
            case ShowKeys(providers):
                return self._show({name: dict(slot(name).stats.keys) for name in providers})
            case ShowRequests(providers):
                return self._show({name: list(slot(name).stats.seen) for name in providers})
            case Reset():
                self.state.reset()
                return HttpResponse.json(200, {"reset": True})

    def _slot(self, name: str) -> ProviderSlot:
        """The slot of a provider named by ``_known``: by its name or its kind."""
        return self.state.slots()[self.state.name_of(name) or name]

    def parse(self, request: HttpRequest, path: str) -> Command:
        """The command an HTTP request asks for; _Refused if it asks for none."""
        match request.method, path:
            case "GET", "/faults":
                return ShowFaults(self._providers(request))
            case "POST", "/faults":
                return self._set_faults(request)
            case "DELETE", "/faults":
                return ClearFaults(self._providers(request))
            case "GET", "/stats":
                return ShowStats(self._providers(request))
            case "POST", "/reset":
                return Reset()
            case "GET", "/keys":
                return ShowKeys(self._providers(request))
            case "GET", "/requests":
                return ShowRequests(self._providers(request))
            case _, "/faults" | "/stats" | "/reset" | "/keys" | "/requests":
                raise _Refused(405, f"{request.method} is not allowed on /_sim{path}")
        raise _Refused(404, f"no simulator route /_sim{path}")

    def _show(self, shown: dict[str, object]) -> HttpResponse:
        return HttpResponse.json(200, self.converter.unstructure(shown))

    def _providers(self, request: HttpRequest) -> tuple[str, ...]:
        """The providers named by ``?provider=``, or all of them."""
        names = request.query_params().get("provider") or list(self.state.slots())
        return tuple(self._known(name) for name in names)

    def _set_faults(self, request: HttpRequest) -> SetFaults:
        try:
            fields = request.json()
        except ValueError as exc:
            raise _Refused(400, f"the body is not JSON: {exc}") from exc
        if not isinstance(fields, dict):
            raise _Refused(400, "the body must be a JSON object")
        fields = dict(fields)
        name = fields.pop("provider", None)
        if not isinstance(name, str):
            raise _Refused(400, "missing field 'provider'")
        return SetFaults(self._known(name), self._structure(fields))

    def _structure(self, fields: dict[str, Any]) -> Faults:
        try:
            return self.converter.structure(fields, Faults)
        except cattrs.BaseValidationError as exc:
            problems = cattrs.transform_error(exc, format_exception=_describe)
            raise _Refused(400, "; ".join(problems)) from exc

    def _known(self, name: str) -> str:
        if self.state.name_of(name) is None:
            kinds = sorted(kind_of(known) for known in self.state.slots())
            raise _Refused(400, f"unknown provider {name!r}; known: {', '.join(kinds)}")
        return name


def _describe(exc: BaseException, type_: type | None) -> str:
    # The converter's hooks and our validators word their errors; keep them.
    if isinstance(exc, TypeError | ValueError) and str(exc):
        return str(exc)
    return format_exception(exc, type_)
