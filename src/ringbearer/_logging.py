"""Logs that fit the journal: one line an event, ``key=value`` fields.

Under systemd (``JOURNAL_STREAM`` set) each line starts with the sd-daemon
``<N>`` priority prefix, so the journal keeps the level without timestamps of
our own. Values are quoted when they hold spaces; secrets never reach here
(they are ``Secret`` objects whose text is redacted).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

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


def setup(level: str) -> None:
    journal = bool(os.environ.get("JOURNAL_STREAM"))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter(journal))
    root = logging.getLogger("ringbearer")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
