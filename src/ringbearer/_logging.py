"""Logs that fit the journal: one line an event, ``key=value`` fields.

When stderr is the journal's stream each line starts with the sd-daemon
``<N>`` priority prefix, so the journal keeps the level without timestamps of
our own. systemd names its stream in ``JOURNAL_STREAM`` (``device:inode``);
as systemd.exec(5) advises, the prefix is used only when stderr is that very
file, so a stderr redirected elsewhere (a file, a pipe to another program)
gets plain timestamped lines. Values are quoted when they hold spaces, quotes,
``=`` or newlines (a newline is written ``\\n``: one event, one line); secrets
never reach here (they are ``Secret`` objects whose text is redacted).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def _value(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def fields(**values: Any) -> dict[str, Any]:
    """Structured fields for a log call: ``log.info("msg", extra=fields(a=1))``."""
    return {"fields": values}


class LineFormatter(logging.Formatter):
    def __init__(self, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        parts = [] if self.journal else [self.formatTime(record, "%Y-%m-%dT%H:%M:%S")]
        parts += [record.levelname.lower(), record.name, _value(record.getMessage())]
        values: dict[str, Any] = getattr(record, "fields", {})
        parts += [f"{k}={_value(v)}" for k, v in values.items()]
        if record.exc_info:
            parts.append("exc=" + _value(self.formatException(record.exc_info)))
        line = " ".join(parts)
        return f"<{_PRIORITY.get(record.levelno, 6)}>{line}" if self.journal else line


def is_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Is ``stream`` the journal stream ``JOURNAL_STREAM`` names (``device:inode``)?"""
    device, sep, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not sep:
        return False
    try:
        found = os.fstat(stream.fileno())
        return (found.st_dev, found.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):  # no file behind the stream, or a malformed variable
        return False


def setup(
    level: str, *, stream: TextIO | None = None, environ: Mapping[str, str] | None = None
) -> None:
    """Log ``ringbearer.*`` to ``stream`` (stderr), one line an event."""
    stream = sys.stderr if stream is None else stream
    environ = os.environ if environ is None else environ
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LineFormatter(is_journal(stream, environ)))
    root = logging.getLogger("ringbearer")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
