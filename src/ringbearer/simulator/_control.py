"""The simulator's own API under ``/_sim``: faults, stats, read-outs, webhooks and reset.

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
* ``GET /_sim/recipients[?provider=x][&address=a]`` — accepted sends per
  recipient address (or phone number), per provider; an ``address`` asked
  for and never sent to shows 0.
* ``GET /_sim/mail[?provider=x]`` — the last emails each email provider took:
  id, sender, recipients, subject, and their headers as sent (Resend's JSON
  ``headers``, Mailgun's ``h:`` fields, SMTP's DATA header fields).
* ``GET /_sim/webhooks`` — where Resend's and Mailgun's events go (never the secret).
* ``POST /_sim/webhooks`` — ``{"provider": "resend", "url": "...", "secret":
  "whsec_..."}`` (Mailgun: its signing key) sends that provider's events there.
* ``DELETE /_sim/webhooks[?provider=x]`` — stops them, one or all.
* ``POST /_sim/reset`` — clears stats, idempotency and dedup tables, and
  faults (webhook targets stay).

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
from ._targets import WebhookTarget


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


@attrs.frozen
class ShowRecipients:
    providers: tuple[str, ...]
    address: str | None = None


@attrs.frozen
class ShowMail:
    providers: tuple[str, ...]


@attrs.frozen
class ShowWebhooks:
    pass


@attrs.frozen
class SetWebhook:
    kind: str
    target: WebhookTarget


@attrs.frozen
class ClearWebhooks:
    kinds: tuple[str, ...]


Command: TypeAlias = (
    ShowFaults
    | SetFaults
    | ClearFaults
    | ShowStats
    | Reset
    | ShowKeys
    | ShowRequests
    | ShowRecipients
    | ShowMail
    | ShowWebhooks
    | SetWebhook
    | ClearWebhooks
)
_ROUTES = ("/faults", "/stats", "/reset", "/keys", "/requests", "/recipients", "/mail", "/webhooks")


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
            case ShowRecipients(providers, address):
                return self._show({name: _counts(slot(name), address) for name in providers})
            case ShowMail(providers):
                return self._show({name: list(slot(name).stats.mails) for name in providers})
            case Reset():
                self.state.reset()
                return HttpResponse.json(200, {"reset": True})
            case _:
                return self._webhooks(command)

    def _webhooks(self, command: Command) -> HttpResponse:
        targets = self.state.webhooks
        match command:
            case SetWebhook(kind, target):
                targets[kind] = target
            case ClearWebhooks(kinds):
                for kind in kinds:
                    targets.pop(kind, None)
        return self._show({kind: target.shown() for kind, target in sorted(targets.items())})

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
            case "GET", "/recipients":
                address = request.query_params().get("address", [None])[0]
                return ShowRecipients(self._providers(request), address)
            case "GET", "/mail":
                return ShowMail(self._providers(request))
            case "GET", "/webhooks":
                return ShowWebhooks()
            case "POST", "/webhooks":
                return self._set_webhook(request)
            case "DELETE", "/webhooks":
                return ClearWebhooks(tuple(kind_of(name) for name in self._providers(request)))
            case _, route if route in _ROUTES:
                raise _Refused(405, f"{request.method} is not allowed on /_sim{path}")
        raise _Refused(404, f"no simulator route /_sim{path}")

    def _show(self, shown: dict[str, object]) -> HttpResponse:
        return HttpResponse.json(200, self.converter.unstructure(shown))

    def _providers(self, request: HttpRequest) -> tuple[str, ...]:
        """The providers named by ``?provider=``, or all of them."""
        names = request.query_params().get("provider") or list(self.state.slots())
        return tuple(self._known(name) for name in names)

    def _set_faults(self, request: HttpRequest) -> SetFaults:
        fields = _object(request)
        name = fields.pop("provider", None)
        if not isinstance(name, str):
            raise _Refused(400, "missing field 'provider'")
        return SetFaults(self._known(name), self._structure(fields))

    def _set_webhook(self, request: HttpRequest) -> SetWebhook:
        fields = _object(request)
        name, url, secret = (fields.pop(key, None) for key in ("provider", "url", "secret"))
        if fields or not (
            isinstance(name, str) and isinstance(url, str) and isinstance(secret, str)
        ):
            raise _Refused(400, "a webhook is {'provider', 'url', 'secret'}, each a string")
        kind = kind_of(self._known(name))
        target = WebhookTarget(url, secret)
        problem = target.problem(kind)
        if problem is not None:
            raise _Refused(400, problem)
        return SetWebhook(kind, target)

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


def _object(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object body (a copy to take fields from); _Refused if not one."""
    try:
        fields = request.json()
    except ValueError as exc:
        raise _Refused(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(fields, dict):
        raise _Refused(400, "the body must be a JSON object")
    return dict(fields)


def _counts(slot: ProviderSlot, address: str | None) -> dict[str, int]:
    """Sends per recipient; only ``address`` (0 if never sent to) when one is asked for."""
    recipients = slot.stats.recipients
    if address is None:
        return dict(recipients)
    wanted = address.strip().lower() if "@" in address else address.strip()
    return {wanted: recipients.get(wanted, 0)}


def _describe(exc: BaseException, type_: type | None) -> str:
    # The converter's hooks and our validators word their errors; keep them.
    if isinstance(exc, TypeError | ValueError) and str(exc):
        return str(exc)
    return format_exception(exc, type_)
