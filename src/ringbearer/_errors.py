"""The exception tree of ringbearer.

Every error the daemon raises on purpose derives from one root, and the tree
is named for what the caller does next::

    RingbearerError
    ├── ConfigError          fix the configuration file (carries every problem)
    ├── StoreError           the durable store failed; nothing was acknowledged
    │   └── StoreFullError   the disk or the state folder refuses writes
    ├── RequestError         a control request was malformed or refused
    │   └── InvalidPayload   a message payload does not fit its target
    └── ControlError         the client could not talk to the daemon

Foreign exceptions (sqlite3, OSError, httpx, json) are translated where they
enter, with ``raise ... from exc``.
"""

from __future__ import annotations

import attrs


class RingbearerError(Exception):
    """Root of every error ringbearer raises on purpose."""


@attrs.frozen
class ConfigProblem:
    """One problem in a configuration file, located by its key path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(RingbearerError):
    """The configuration is invalid; ``problems`` lists all of it at once."""

    def __init__(self, file: str, problems: list[ConfigProblem]) -> None:
        self.file = file
        self.problems = problems
        lines = "\n".join(f"  {file}: {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in {file}:\n{lines}")


class StoreError(RingbearerError):
    """The store could not complete an operation; nothing it covered was acknowledged."""


class StoreFullError(StoreError):
    """The store's disk or folder refuses writes (full, read-only)."""


class RequestError(RingbearerError):
    """A control request was malformed or refused; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class InvalidPayload(RequestError):
    """A message's payload does not fit what its target's provider needs."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_payload", message)


class ControlError(RingbearerError):
    """The client could not reach the daemon or understand its reply."""
