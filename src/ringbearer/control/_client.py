"""A small blocking client for the control socket, used by the CLI.

``call`` sends a typed request and returns its typed reply; ``raw`` speaks
the wire's dicts (for scripts and tests of the wire itself).
"""

from __future__ import annotations

import itertools
import json
import socket
from pathlib import Path
from typing import Any, TypeVar, cast

from .._errors import ControlError, ErrorCode, RequestError
from . import _protocol

R = TypeVar("R")


class Client:
    """One connection to the daemon; requests are answered in order."""

    def __init__(self, path: Path, timeout: float | None = 30.0) -> None:
        self.path = path
        self._ids = itertools.count(1)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(path))
        except OSError as exc:
            self._sock.close()
            raise ControlError(
                f"cannot reach the daemon at {path}: {exc.strerror or exc}"
                " (is it running? is --socket right?)"
            ) from exc
        self._file = self._sock.makefile("rb")
        self._converter = _protocol.converter()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def call(self, request: _protocol.Asks[R], *, timeout: float | None = None) -> R:
        """Send one typed request and return its typed reply; RequestError on an error reply."""
        args = self._converter.unstructure(request)
        result = self.raw(
            _protocol.command_name(cast(_protocol.Request, request)), args, timeout=timeout
        )
        try:
            return cast(R, self._converter.structure(result, type(request).reply))
        except Exception as exc:
            raise ControlError(f"unreadable reply to {type(request).__name__}: {exc}") from exc

    def raw(
        self, cmd: str, args: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """Send one request as wire dicts and return its result; RequestError on an error reply."""
        request_id = next(self._ids)
        if timeout is not None:
            self._sock.settimeout(timeout)
        try:
            self._sock.sendall(_protocol.request_line(request_id, cmd, args or {}))
            line = self._file.readline(_protocol.MAX_LINE * 64)
        except OSError as exc:
            raise ControlError(f"lost the daemon at {self.path}: {exc}") from exc
        if not line:
            raise ControlError("the daemon closed the connection")
        try:
            reply = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ControlError(f"unreadable reply: {exc}") from exc
        if reply.get("ok"):
            return reply.get("result")
        err = reply.get("error") or {}
        raise RequestError(_code(err.get("code")), str(err.get("message", "")))


def _code(text: object) -> ErrorCode:
    """A code this client does not know (a newer daemon's) reads as internal."""
    try:
        return ErrorCode(str(text))
    except ValueError:
        return ErrorCode.INTERNAL
