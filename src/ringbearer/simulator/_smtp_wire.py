"""Line-oriented reading for the SMTP server: commands, and DATA up to the lone dot."""

from __future__ import annotations

import attrs
import trio

_RECEIVE_BYTES = 64 * 1024


class LineTooLong(Exception):
    """A line went on past its limit without a line ending."""


@attrs.define
class LineReader:
    """Buffered lines from a stream; a bare LF ends a line too, as lenient servers allow."""

    stream: trio.abc.ReceiveStream
    buffer: bytearray = attrs.Factory(bytearray)

    async def line(self, limit: int) -> bytes | None:
        """The next line without its ending; None when the client closed."""
        start = 0
        while (end := self.buffer.find(b"\n", start)) < 0:
            if len(self.buffer) > limit:
                raise LineTooLong
            start = len(self.buffer)
            data = await self.stream.receive_some(_RECEIVE_BYTES)
            if not data:
                return None
            self.buffer += data
        if end > limit:
            raise LineTooLong
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line

    async def message(self, limit: int) -> bytes | None:
        """DATA up to the lone dot, dot-unstuffed; None if it exceeded ``limit`` bytes."""
        lines: list[bytes] = []
        size = 0
        while (line := await self.line(limit)) != b".":
            if line is None:
                raise trio.BrokenResourceError("client left during DATA")
            size += len(line) + 2
            if size <= limit:
                lines.append(line[1:] if line.startswith(b".") else line)
        # An oversized message is still read to its end, so the session stays in step.
        return b"\r\n".join(lines) if size <= limit else None

    async def drain(self) -> None:
        """Read and discard until the client closes."""
        while await self.stream.receive_some(_RECEIVE_BYTES):
            pass
