"""The sd_notify protocol: one datagram to ``$NOTIFY_SOCKET`` per state change.

No dependency is needed: the protocol is ``KEY=VALUE`` lines in a datagram on
a Unix socket (an ``@`` prefix names an abstract socket). Without
``NOTIFY_SOCKET`` (not under systemd) every call does nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Mapping


class Notifier:
    """Sends state changes to systemd (or whoever set ``NOTIFY_SOCKET``)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._sock: socket.socket | None = None
        if self._address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # Never wait on the listener: a full socket drops a notification
            # (the next one says the same or newer) rather than stall the loop.
            self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: str) -> None:
        if self._sock is None:
            return
        text = "\n".join(f"{key}={value}" for key, value in fields.items())
        # systemd gone or its socket full: a notification never stops the daemon.
        with contextlib.suppress(OSError):
            self._sock.sendto(text.encode(), self._address)

    def ready(self, status: str) -> None:
        self.send(READY="1", STATUS=status)

    def status(self, status: str) -> None:
        self.send(STATUS=status)

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send(RELOADING="1", MONOTONIC_USEC=str(usec))

    def stopping(self) -> None:
        self.send(STOPPING="1", STATUS="stopping")

    def watchdog(self) -> None:
        self.send(WATCHDOG="1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, as sd_watchdog_enabled() advises; None if unset."""
    environ = os.environ if environ is None else environ
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None
