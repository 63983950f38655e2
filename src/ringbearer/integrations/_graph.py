"""What Facebook Pages and Instagram share: Meta's Graph API, its error envelope and codes.

Every Graph error is one envelope, whatever the HTTP status::

    {"error": {"message": "...", "type": "OAuthException", "code": 190,
               "error_subcode": 460, "is_transient": false, "fbtrace_id": "..."}}

The body's ``code`` decides, not the status (throttling code 4 has been seen
with HTTP 403, most errors come with 400). The shared table::

    code                                        outcome
    4, 17, 32, 341, 368, 613, 80001, 80002      Retry(NO), after the BUC header's wait
    1, 2, or "is_transient": true               Retry (taken as the caller says)
    3, 10, 100, 102, 104, 190, 200-299          Permanent
    any other code, or no envelope              the default status table

Each provider settles its own codes (Facebook's 506, Instagram's publishing
cap) before falling back on :func:`classify`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import attrs
import httpx

from .._delivery import Outcome, Permanent, Retry, Taken
from ._base import classify_status, detail, json_object, shorten, status_reason

DEFAULT_BASE = "https://graph.facebook.com"
DEFAULT_VERSION = "v21.0"
VERSION = re.compile(r"v\d+\.\d+")


def api_version() -> Any:
    """The ``api_version`` setting's field: a Graph version, ``DEFAULT_VERSION`` unless set."""
    return attrs.field(default=DEFAULT_VERSION, validator=attrs.validators.matches_re(VERSION))


# Too many calls: the app's (4), the user's (17), the Page's (32), a custom
# limit (613), the app's again (341), a temporary block (368), and the
# Business Use Case limits of Pages (80001) and Instagram accounts (80002).
# Refused, never taken.
THROTTLING = frozenset({4, 17, 32, 341, 368, 613, 80001, 80002})
# "Unknown" and "Service": a server failure; it may have come after the write.
TRANSIENT = frozenset({1, 2})
# A missing capability (3), permission (10, 200-299), parameter (100) or
# session or token (102, 104, 190): retrying the same request cannot help.
_PERMANENT = frozenset({3, 10, 100, 102, 104, 190, *range(200, 300)})


@attrs.frozen
class GraphError:
    """The fields of a Graph error envelope that decide what happens next."""

    code: int | None
    subcode: int | None
    message: str
    transient: bool = False
    trace: str | None = None  # fbtrace_id, what Meta's support asks for

    @classmethod
    def of(cls, response: httpx.Response) -> GraphError | None:
        """The response's error envelope, or None when it has none."""
        body = json_object(response)
        error = body.get("error") if body is not None else None
        if not isinstance(error, dict):
            return None
        trace = error.get("fbtrace_id")
        return cls(
            code=_integer(error.get("code")),
            subcode=_integer(error.get("error_subcode")),
            message=_message(error),
            transient=error.get("is_transient") is True,
            trace=trace if isinstance(trace, str) else None,
        )

    @property
    def words(self) -> str:
        """``(#190/460) message [fbtrace_id X]``."""
        codes = "/".join(str(c) for c in (self.code, self.subcode) if c is not None)
        trace = f" [fbtrace_id {self.trace}]" if self.trace else ""
        return shorten(f"(#{codes}) {self.message}{trace}")

    def reason(self, response: httpx.Response) -> str:
        return status_reason(response, self.words)


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _message(error: Mapping[str, Any]) -> str:
    # The user-facing title and text say more than "Invalid parameter".
    parts = (error.get(key) for key in ("message", "error_user_title", "error_user_msg"))
    return ": ".join(p for p in parts if isinstance(p, str) and p) or "no message"


def regain_wait(headers: httpx.Headers) -> float | None:
    """Seconds until access returns, from ``X-Business-Use-Case-Usage`` (given in minutes).

    The header maps each business object to its usage entries; the longest
    ``estimated_time_to_regain_access`` binds. Zero or absent means Meta gave
    no estimate, and the retry policy's backoff applies.
    """
    try:
        usage = json.loads(headers.get("x-business-use-case-usage", "{}"))
    except ValueError:
        return None
    minutes = [
        entry.get("estimated_time_to_regain_access")
        for entries in (usage.values() if isinstance(usage, dict) else ())
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
    ]
    numbers = [m for m in minutes if isinstance(m, int | float) and math.isfinite(m) and m > 0]
    return max(numbers) * 60.0 if numbers else None


def classify(
    response: httpx.Response, error: GraphError | None, *, transient_taken: Taken = Taken.MAYBE
) -> Outcome:
    """The shared table for an unsuccessful answer (see the module docstring)."""
    status = response.status_code
    if error is None:
        return classify_status(response, detail(response))
    reason = error.reason(response)
    if error.code in THROTTLING:
        return Retry(reason, taken=Taken.NO, after=regain_wait(response.headers), status=status)
    if error.code in TRANSIENT or error.transient:
        return Retry(reason, taken=transient_taken, status=status)
    if error.code in _PERMANENT:
        return Permanent(reason, status=status)
    return classify_status(response, error.words)


def url(base: str, version: str, *segments: str) -> str:
    """``{base}/{version}/{segments...}``."""
    return "/".join((base, version, *segments))
