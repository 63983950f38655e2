"""The simulator's HTTP handler: the first path segment picks the provider."""

from __future__ import annotations

from .._httpserver import Handler, HttpRequest, HttpResponse
from ._control import ControlApi
from ._state import SimulatorState

_CONTROL = "_sim"


def make_handler(state: SimulatorState) -> Handler:
    """``/<provider>/<the provider's real path>``, and ``/_sim/...`` for the simulator itself."""
    control = ControlApi(state)

    async def handle(request: HttpRequest) -> HttpResponse:
        kind, _, rest = request.path[1:].partition("/")
        if kind == _CONTROL:
            return control.handle(request, "/" + rest)
        endpoint = state.endpoints.get(kind)
        if endpoint is None:
            known = sorted(state.endpoints)
            return HttpResponse.json(
                404, {"error": f"no simulated provider {kind!r}", "providers": known}
            )
        return await endpoint.answer(request, "/" + rest)

    return handle
