"""Starting the simulator: its HTTP server and, if asked, its SMTP server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import attrs
import trio

from .._httpserver import serve_http
from ._app import make_handler
from ._smtp import serve_smtp
from ._state import SimulatorState
from ._targets import WebhookTarget


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


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextlib.contextmanager
def _listening(what: str, host: str, port: int) -> Iterator[None]:
    """An OSError while binding, reworded to name the address (``127.0.0.1:2525 (SMTP)``)."""
    try:
        yield
    except OSError as exc:
        # trio words a failed bind with the address as a tuple; the cause has the reason.
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        reason = cause.strerror or str(cause)
        raise OSError(exc.errno, f"{_address(host, port)} ({what}): {reason}") from exc


async def serve_simulator(
    state: SimulatorState,
    host: str,
    port: int,
    smtp_port: int | None,
    *,
    task_status: trio.TaskStatus[SimulatorAddress] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the simulator until cancelled; ``started`` gets the bound address (0 = any port).

    An address that cannot be bound raises OSError whose ``strerror`` names it.
    """
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(state.events.run)
            with _listening("HTTP", host, port):
                http_port: int = await nursery.start(serve_http, make_handler(state), host, port)
            bound_smtp: int | None = None
            if smtp_port is not None:
                with _listening("SMTP", host, smtp_port):
                    bound_smtp = await nursery.start(serve_smtp, state.smtp, host, smtp_port)
            task_status.started(SimulatorAddress(host, http_port, bound_smtp))
    except BaseExceptionGroup as group:
        # The nursery wraps a failed bind; the caller wants the one OSError.
        sole = _sole(group)
        if not isinstance(sole, OSError):
            raise
        raise sole from None


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    found: BaseException = group
    while isinstance(found, BaseExceptionGroup) and len(found.exceptions) == 1:
        found = found.exceptions[0]
    return found


def announcement(address: SimulatorAddress) -> str:
    """The line a running simulator prints on stdout once it listens (scripts read it)."""
    line = f"simulator listening on {address.url}"
    if address.smtp_port is not None:
        line += f" (smtp {_address(address.host, address.smtp_port)})"
    return line


@attrs.frozen
class _Announcing(trio.TaskStatus[SimulatorAddress]):
    """Prints the address line, then tells whoever started the simulator."""

    status: trio.TaskStatus[SimulatorAddress]

    def started(self, value: SimulatorAddress | None = None) -> None:
        assert value is not None  # serve_simulator always reports its address
        print(announcement(value), flush=True)
        self.status.started(value)


async def run_simulator(
    host: str,
    port: int,
    smtp_port: int | None,
    seed: int,
    *,
    webhooks: Mapping[str, WebhookTarget] | None = None,
    task_status: trio.TaskStatus[SimulatorAddress] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a fresh simulator forever, announcing its address on one line of stdout.

    ``webhooks`` are where Resend's and Mailgun's events go, by kind. As
    :func:`serve_simulator`, a busy address raises one OSError naming it.
    """
    state = SimulatorState(seed=seed, webhooks=webhooks or {})
    await serve_simulator(state, host, port, smtp_port, task_status=_Announcing(task_status))
