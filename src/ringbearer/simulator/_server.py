"""Starting the simulator: its HTTP server and, if asked, its SMTP server."""

from __future__ import annotations

import attrs
import trio

from .._httpserver import serve_http
from ._app import make_handler
from ._smtp import serve_smtp
from ._state import SimulatorState


@attrs.frozen
class SimulatorAddress:
    """Where a running simulator listens."""

    host: str
    http_port: int
    smtp_port: int | None = None

    @property
    def url(self) -> str:
        """The HTTP base URL, ``http://host:port``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.http_port}"


async def serve_simulator(
    state: SimulatorState,
    host: str,
    port: int,
    smtp_port: int | None,
    *,
    task_status: trio.TaskStatus[SimulatorAddress] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the simulator until cancelled; ``started`` gets the bound address (0 = any port)."""
    async with trio.open_nursery() as nursery:
        http_port: int = await nursery.start(serve_http, make_handler(state), host, port)
        bound_smtp: int | None = None
        if smtp_port is not None:
            bound_smtp = await nursery.start(serve_smtp, state.smtp, host, smtp_port)
        task_status.started(SimulatorAddress(host, http_port, bound_smtp))


async def run_simulator(host: str, port: int, smtp_port: int | None, seed: int) -> None:
    """Serve a fresh simulator forever, announcing its address on one line of stdout."""
    async with trio.open_nursery() as nursery:
        state = SimulatorState(seed=seed)
        address: SimulatorAddress = await nursery.start(
            serve_simulator, state, host, port, smtp_port
        )
        line = f"simulator listening on {address.url}"
        if address.smtp_port is not None:
            line += f" (smtp {host}:{address.smtp_port})"
        print(line, flush=True)
