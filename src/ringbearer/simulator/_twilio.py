"""Twilio REST API 2010-04-01: ``Messages.json`` (twilio-sms) and ``Calls.json`` (twilio-call).

Both take a form, HTTP Basic as the account (or an API key ``SK…``) whose sid
must be the one in the path, and answer 201 with the new resource. Errors are
``{"code", "message", "more_info", "status"}``. There is no idempotency key:
every valid request is a new message or call.

Twilio's test numbers pick an error, as with its test credentials: To
``+15005550002`` is unreachable (21612), ``+15005550004`` unsubscribed
(21610), ``+15005550009`` not a mobile (21614); From ``+15005550008`` has a
full queue (21611). A text to ``+15005550001`` is taken, then reported
``undelivered`` (30003) to its ``StatusCallback``; every other text is
reported ``sent``, then ``delivered`` (see ``_twilio_events``).

``GET /2010-04-01/Accounts/{AccountSid}.json`` shows the account (active,
full), for a read-only check of the credentials; it creates nothing.
"""

from __future__ import annotations

import email.utils
import functools
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import attrs

from .._httpserver import HttpRequest, HttpResponse
from ._mail import SentSms
from ._provider import FaultReplies, Outcome, ProviderSpec

_ROUTE = re.compile(r"/2010-04-01/Accounts/([^/]+)/([A-Za-z]+)\.json")
_ACCOUNT_ROUTE = re.compile(r"/2010-04-01/Accounts/([^/]+)\.json")
_ACCOUNT = re.compile(r"AC[0-9a-f]{32}")
_API_KEY = re.compile(r"SK[0-9a-f]{32}")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_MAX_BODY = 1600
_MAX_TWIML = 4000
_TO_ERRORS = {
    "+15005550002": (21612, "The 'To' phone number is not currently reachable via SMS."),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}
_QUEUE_FULL = "+15005550008"

Form = dict[str, str]
Problem = tuple[int, str] | None  # Twilio's code and message for a 400


def _error(
    status: int, code: int, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> HttpResponse:
    more_info = f"https://www.twilio.com/docs/errors/{code}"
    body = {"code": code, "message": message, "more_info": more_info, "status": status}
    return HttpResponse.json(status, body, headers)


def _rate_limited(retry_after: int) -> HttpResponse:
    # Twilio documents Retry-After on its newer APIs; the 2010 API may omit it.
    return _error(429, 20429, "Too Many Requests", (("retry-after", str(retry_after)),))


_UNAUTHORIZED = _error(
    401, 20003, "Authenticate", (("www-authenticate", 'Basic realm="Twilio API"'),)
)

REPLIES = FaultReplies(
    error=_error(500, 20500, "An internal server error has occurred"),
    permanent=_error(400, 21211, "The 'To' number 5551234567 is not a valid phone number."),
    outage=_error(503, 20503, "Service Unavailable"),
    rate_limited=_rate_limited,
)


def _to(form: Form, missing: tuple[int, str]) -> Problem:
    to = form.get("To", "")
    if not to:
        return missing
    if not _E164.fullmatch(to):
        return 21211, f"The 'To' number {to} is not a valid phone number."
    return None


def _message_problem(form: Form) -> Problem:
    """What Twilio would refuse about a Messages create, or None."""
    problem = _to(form, (21604, "A 'To' phone number is required."))
    if problem is not None:
        return problem
    if not form.get("From") and not form.get("MessagingServiceSid"):
        return 21603, "A 'From' phone number is required."
    body = form.get("Body", "")
    if not body and not form.get("MediaUrl") and not form.get("ContentSid"):
        return 21602, "Message body is required."
    if len(body) > _MAX_BODY:
        return 21658, f"The 'Body' parameter exceeds the {_MAX_BODY} character limit."
    if form.get("From") == _QUEUE_FULL:
        return 21611, "This 'From' number has exceeded the maximum number of queued messages"
    return _TO_ERRORS.get(form["To"])


def _call_problem(form: Form) -> Problem:
    """What Twilio would refuse about a Calls create, or None."""
    problem = _to(form, (21201, "No 'To' number is specified"))
    if problem is not None:
        return problem
    sender = form.get("From", "")
    if not sender:
        return 21213, "No 'From' number is specified"
    if not _E164.fullmatch(sender):
        return 21212, f"The 'From' number {sender} is not a valid phone number."
    if not any(form.get(key) for key in ("Url", "Twiml", "ApplicationSid")):
        return 21205, "Url parameter is required."
    if "Url" not in form and "Twiml" in form:
        return _twiml_problem(form["Twiml"])
    return None


def _twiml_problem(twiml: str) -> Problem:
    if len(twiml) > _MAX_TWIML:
        return 12100, f"Twiml is longer than {_MAX_TWIML} characters"
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError as exc:
        return 12100, f"Document parse failure: {exc}"
    return None if root.tag == "Response" else (12100, "The root element must be <Response>")


def _now() -> str:
    return email.utils.formatdate(usegmt=True).replace("GMT", "+0000")


def _segments(body: str) -> int:
    # One SMS holds 160 GSM characters; a longer text goes in parts of 153.
    return 1 if len(body) <= 160 else -(-len(body) // 153)


def _message(account: str, sid: str, form: Form) -> dict[str, Any]:
    service = form.get("MessagingServiceSid")
    uri = f"/2010-04-01/Accounts/{account}/Messages/{sid}"
    return {
        "account_sid": account,
        "api_version": "2010-04-01",
        "body": form.get("Body", ""),
        "date_created": _now(),
        "date_sent": None,
        "date_updated": _now(),
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": form.get("From"),
        "messaging_service_sid": service,
        "num_media": "0",
        "num_segments": str(_segments(form.get("Body", ""))),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        # A Messaging Service picks the sender later: the message is accepted, not queued.
        "status": "accepted" if service and not form.get("From") else "queued",
        "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": form["To"],
        "uri": f"{uri}.json",
    }


def _call(account: str, sid: str, form: Form) -> dict[str, Any]:
    uri = f"/2010-04-01/Accounts/{account}/Calls/{sid}"
    return {
        "account_sid": account,
        "answered_by": None,
        "api_version": "2010-04-01",
        "caller_name": None,
        "date_created": _now(),
        "date_updated": _now(),
        "direction": "outbound-api",
        "duration": None,
        "end_time": None,
        "from": form["From"],
        "from_formatted": form["From"],
        "parent_call_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": sid,
        "start_time": None,
        "status": "queued",
        "subresource_uris": {"recordings": f"{uri}/Recordings.json"},
        "to": form["To"],
        "to_formatted": form["To"],
        "uri": f"{uri}.json",
    }


@attrs.frozen
class Resource:
    """What one create endpoint checks and answers."""

    name: str  # the path's last segment, e.g. "Messages"
    sid_prefix: str  # "SM", "CA"
    problem: Callable[[Form], Problem]
    body: Callable[[str, str, Form], dict[str, Any]]  # account, sid, form -> resource


MESSAGES = Resource("Messages", "SM", _message_problem, _message)
CALLS = Resource("Calls", "CA", _call_problem, _call)


@attrs.define
class Twilio:
    """One of Twilio's create endpoints; every valid request makes a new resource."""

    resource: Resource
    created: int = 0

    def handle(self, request: HttpRequest, path: str, rng: random.Random) -> Outcome:
        account_route = _ACCOUNT_ROUTE.fullmatch(path)
        if account_route is not None and request.method == "GET":
            # A read: never counted as accepted work.
            return Outcome(_show_account(request, account_route[1]), accepted=False)
        route = _ROUTE.fullmatch(path)
        if route is None or route[2] != self.resource.name:
            message = f"The requested resource {path} was not found"
            return Outcome(_error(404, 20404, message))
        if request.method != "POST":
            return Outcome(_error(405, 20004, "Method not allowed"))
        account = route[1]
        if not _authorized(request.basic_auth(), account):
            return Outcome(_UNAUTHORIZED)
        try:
            form = {key: values[-1] for key, values in request.form().items()}
        except ValueError:
            return Outcome(_error(400, 20001, "Invalid form data"))
        problem = self.resource.problem(form)
        if problem is not None:
            return Outcome(_error(400, *problem))
        self.created += 1
        sid = f"{self.resource.sid_prefix}{rng.getrandbits(128):032x}"
        response = HttpResponse.json(201, self.resource.body(account, sid, form))
        if self.resource is not MESSAGES:
            return Outcome(response)
        return Outcome(response, sent=(_sms(request, account, sid, form),))


def _sms(request: HttpRequest, account: str, sid: str, form: Form) -> SentSms:
    """The text, and the callback its statuses go to, signed with the request's password."""
    credentials = request.basic_auth()
    return SentSms(
        sid=sid,
        account=account,
        to=form["To"],
        sender=form.get("From") or form.get("MessagingServiceSid", ""),
        callback=form.get("StatusCallback") or None,
        auth_token=credentials[1] if credentials is not None else "",
    )


def _show_account(request: HttpRequest, account: str) -> HttpResponse:
    if not _authorized(request.basic_auth(), account):
        return _UNAUTHORIZED
    uri = f"/2010-04-01/Accounts/{account}"
    # The real resource also shows the auth token; the simulator keeps it out.
    body = {
        "date_created": "Mon, 01 Jan 2024 00:00:00 +0000",
        "date_updated": "Mon, 01 Jan 2024 00:00:00 +0000",
        "friendly_name": "ringbearer sandbox",
        "owner_account_sid": account,
        "sid": account,
        "status": "active",
        "subresource_uris": {"messages": f"{uri}/Messages.json", "calls": f"{uri}/Calls.json"},
        "type": "Full",
        "uri": f"{uri}.json",
    }
    return HttpResponse.json(200, body)


def _authorized(credentials: tuple[str, str] | None, account: str) -> bool:
    """Basic as the path's account, or as an API key (which belongs to some account)."""
    if credentials is None:
        return False
    user, password = credentials
    if password in ("", "invalid") or not _ACCOUNT.fullmatch(account):
        return False
    return user == account or _API_KEY.fullmatch(user) is not None


SPECS = (
    ProviderSpec("twilio-sms", functools.partial(Twilio, MESSAGES), REPLIES),
    ProviderSpec("twilio-call", functools.partial(Twilio, CALLS), REPLIES),
)
