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

import contextlib
import enum
from collections.abc import Iterator

import attrs


class ErrorCode(enum.StrEnum):
    """The machine-readable code of an error reply; scripts may rely on these."""

    BAD_JSON = "bad_json"  # the request line is not strict JSON
    BAD_REQUEST = "bad_request"  # not a request object, or unknown fields
    UNKNOWN_COMMAND = "unknown_command"
    BAD_ARGS = "bad_args"  # the command's arguments are wrong; the message names the field
    TOO_MANY = "too_many"  # more messages or ids than one request may carry
    INVALID_PAYLOAD = "invalid_payload"  # a payload does not fit its target's provider
    UNKNOWN_TARGET = "unknown_target"
    UNKNOWN_INTEGRATION = "unknown_integration"
    KEY_REUSED = "key_reused"  # an idempotency key already used for a different message
    SUPPRESSED = "suppressed"  # a recipient is on the suppression list for this category
    ERASED = "erased"  # a subject of the message was erased: nothing new about them is taken
    NO_CONSENT = "no_consent"  # a subject has not consented to the message's purpose
    STAGE_RULE = "stage_rule"  # a stage rule of the couple's planning refuses it
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"  # the peer's role does not allow this
    FROZEN = "frozen"  # the wedding-day change freeze: give --force
    INVALID_CONFIG = "invalid_config"  # a reload found the config file invalid
    WOULD_STRAND = "would_strand"  # a reload would leave work with no route: give --drop-queued
    RELOAD_FAILED = "reload_failed"  # a reload failed partway and was rolled back
    BUSY = "busy"  # every connection slot is taken
    LINE_TOO_LONG = "line_too_long"
    STORE_UNAVAILABLE = "store_unavailable"  # the store refused the write; nothing was accepted
    INTERNAL = "internal"  # a bug: see the daemon's log


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

    def __init__(self, code: ErrorCode, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class InvalidPayload(RequestError):
    """A message's payload does not fit what its target's provider needs."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INVALID_PAYLOAD, message)


class ControlError(RingbearerError):
    """The client could not reach the daemon or understand its reply."""


@contextlib.contextmanager
def cannot(what: str) -> Iterator[None]:
    """Turn an OSError (at start-up: a busy port, a folder we may not write) into one line."""
    try:
        yield
    except OSError as exc:
        raise RingbearerError(f"cannot {what}: {exc.strerror or exc}") from exc
