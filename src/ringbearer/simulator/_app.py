"""The simulator's HTTP handler: the first path segment picks the provider."""

from __future__ import annotations

import trio

from .._httpserver import Handler, HttpRequest, HttpResponse
from ._control import ControlApi
from ._deletions import show_deletions
from ._state import SimulatorState

_CONTROL = "_sim"


def make_handler(state: SimulatorState) -> Handler:
    """``/<provider>/<the provider's real path>``, and ``/_sim/...`` for the simulator itself.

    ``<provider>`` is a provider's name (``slack-webhook``) or its kind (``slack_webhook``).
    """
    control = ControlApi(state)

    async def handle(request: HttpRequest) -> HttpResponse:
        kind, _, rest = request.path[1:].partition("/")
        if kind == _CONTROL and rest == "wait":
            return await _wait(state, request)
        if kind == _CONTROL and rest == "deletions":
            return show_deletions(request, state.deletions)
        if kind == _CONTROL and rest == "tokens":
            return _tokens(state, request)
        if kind == _CONTROL:
            return control.handle(request, "/" + rest)
        endpoint = state.endpoint(kind)
        if endpoint is None:
            known = sorted(state.endpoints)
            return HttpResponse.json(
                404, {"error": f"no simulated provider {kind!r}", "providers": known}
            )
        return await endpoint.answer(request, "/" + rest)

    return handle


_LIFETIMES = {"x": "token_lifetime", "linkedin": "access_lifetime"}


def _tokens(state: SimulatorState, request: HttpRequest) -> HttpResponse:
    """``/_sim/tokens?provider=x``: its OAuth token families (how many, how many revoked);
    a POST ``{"lifetime": S}`` sets how long the access tokens it issues from now last."""
    provider = request.query_params().get("provider", [""])[0]
    endpoint = state.endpoint(provider)
    attribute = _LIFETIMES.get(state.name_of(provider) or "")
    if endpoint is None or attribute is None:
        return HttpResponse.json(400, {"error": "provider: x or linkedin"})
    logic = endpoint.logic
    if request.method == "POST":
        lifetime = (request.json() or {}).get("lifetime")
        if not isinstance(lifetime, int) or lifetime < 1:
            return HttpResponse.json(400, {"error": "lifetime: a whole number of seconds >= 1"})
        setattr(logic, attribute, lifetime)
    families = list(getattr(logic, "families", []))
    return HttpResponse.json(
        200,
        {
            "lifetime": getattr(logic, attribute),
            "families": len(families),
            "revoked": sum(1 for f in families if getattr(f, "revoked", False)),
        },
    )


async def _wait(state: SimulatorState, request: HttpRequest) -> HttpResponse:
    """``GET /_sim/wait?provider=x&accepted=N&timeout=S``: block until x accepted N requests.

    Lets a test act at a known point of a run (say, kill the daemon once a
    third of the messages went out) without polling. With ``events=N``
    instead of ``accepted``: until N of x's events were sent or given up.
    """
    params = request.query_params()
    try:
        slot = state.slots()[state.name_of(params["provider"][0]) or ""]
        counter = "events" if "events" in params else "accepted"
        count = int(params[counter][0])
        timeout = float(params.get("timeout", ["30"])[0])
    except (KeyError, IndexError, ValueError):
        message = "wait needs provider, accepted (or events) and timeout"
        return HttpResponse.json(400, {"error": message})
    stats = slot.stats
    if counter == "events":
        with trio.move_on_after(timeout):
            await stats.wait_events(count)
        done = stats.events_sent + stats.events_failed
        return HttpResponse.json(200 if done >= count else 408, {"events": done})
    with trio.move_on_after(timeout):
        await stats.wait_accepted(count)
    reached = stats.accepted >= count
    return HttpResponse.json(200 if reached else 408, {"accepted": stats.accepted})
