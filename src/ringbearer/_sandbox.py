"""The sandbox: where the provider simulator answers when the config runs against it.

With ``[sandbox] enabled`` the daemon sends every integration to the
simulator instead of the provider: to one started here, in-process, on
``listen`` and ``smtp_listen``, or to an external one at ``url`` (a
``ringbearer simulate``). Each kind is served under its own prefix,
``{url}/{kind}``, spelled as the config spells the kind.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import attrs
import trio

from ._config import Config
from ._converter import parse_host_port
from ._errors import RingbearerError
from ._logging import fields

log = logging.getLogger("ringbearer.sandbox")


@attrs.frozen
class Sandbox:
    """Where the simulator answers, when the config runs against it."""

    url: str
    smtp: tuple[str, int] | None

    def prefix(self, kind: str) -> str:
        """The base URL of ``kind``'s simulated provider."""
        return f"{self.url.rstrip('/')}/{kind}"


@contextlib.contextmanager
def _cannot(what: str) -> Iterator[None]:
    """Turn an OSError at start-up into one clear line for the operator."""
    try:
        yield
    except OSError as exc:
        raise RingbearerError(f"cannot {what}: {exc.strerror or exc}") from exc


async def start_sandbox(config: Config, nursery: trio.Nursery) -> Sandbox | None:
    """The config's sandbox, its simulator started in ``nursery`` unless it is external.

    None when the config runs against the real providers. Raise
    RingbearerError, naming the address, when the simulator cannot listen.
    """
    sandbox = config.sandbox
    if not sandbox.enabled:
        return None
    if sandbox.url:
        smtp = parse_host_port(sandbox.smtp) if sandbox.smtp else None
        return Sandbox(sandbox.url, smtp)
    # Imported here: a daemon that runs against the providers never loads it.
    from .simulator import SimulatorState, serve_simulator

    host, port = parse_host_port(sandbox.listen)
    smtp_host, smtp_port = parse_host_port(sandbox.smtp_listen)
    with _cannot("start the sandbox simulator"):
        address = await nursery.start(
            serve_simulator, SimulatorState(seed=sandbox.seed), host, port, smtp_port
        )
    log.info(
        "sandbox simulator started",
        extra=fields(url=address.url, smtp=f"{smtp_host}:{address.smtp_port}"),
    )
    return Sandbox(address.url, (smtp_host, address.smtp_port))
