"""Twilio's REST API 2010-04-01: send an SMS, place a voice call that speaks a text.

Payloads::

    twilio_sms   {"to": E.164 str, "body": str (<= 1600),
                  "from"?: str (a number, short code or alphanumeric sender id;
                                else the integration's sender or Messaging Service)}
    twilio_call  {"to": E.164 str, "say": str | "url": https URL (exactly one),
                  "from"?: E.164 str (else the integration's sender),
                  "loop"?: int 1..10 (times the text is spoken; with "say" only)}

Both ``POST /2010-04-01/Accounts/{AccountSid}/{Messages|Calls}.json`` as a
form, HTTP Basic ``AccountSid:AuthToken`` (or ``ApiKeySid:ApiKeySecret``),
and answer ``201`` with the new resource's ``sid`` (``SM…``, ``CA…``).

Twilio has no idempotency key for these requests. A request whose answer is
lost (a timeout after sending, a 5xx) may still have created the message or
call, so those are ``Taken.MAYBE`` and a retry may text or ring twice. Only a
429 (code 20429, "never processed and is always safe to retry") and a refusal
before sending are certainly not taken.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from xml.sax.saxutils import escape

import attrs
import httpx
from attrs import validators as v

from .._delivery import Envelope, Outcome, Permanent, Retry, Taken
from .._errors import InvalidPayload
from .._secrets import Secret, SecretRef
from ._base import (
    E164,
    AdapterContext,
    Finding,
    HttpCall,
    ProviderKind,
    ReadOnly,
    Verdict,
    basic_auth,
    check_text,
    classify_status,
    delivered_with,
    detail,
    fields,
    http_kind,
    json_object,
    optional_str,
    refused,
    required_str,
    retry_after,
    status_reason,
)

_ACCOUNT_SID = r"AC[0-9a-f]{32}"
_API_KEY_SID = r"SK[0-9a-f]{32}"
_SERVICE_SID = r"MG[0-9a-f]{32}"
_SHORT_CODE = re.compile(r"[0-9]{3,8}")
# Letters, digits and spaces, at least one letter, at most 11 characters.
_ALPHANUMERIC_ID = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
# XML 1.0 has no way to carry these, escaped or not.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
MAX_BODY = 1600
MAX_TWIML = 4000
MAX_LOOP = 10
RATE_LIMITED = 20429  # too many concurrent requests; never processed
AUTH_FAILED = 20003
SENDER_QUEUE_FULL = 21611  # over 10 h of messages queued for this sender


def _sender(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not _is_sender(value):
        raise ValueError(f"{attribute.name!r} must be an E.164 number, short code or sender id")


def _is_sender(text: str) -> bool:
    return any(p.fullmatch(text) for p in (E164, _SHORT_CODE, _ALPHANUMERIC_ID))


@attrs.frozen
class TwilioAccount:
    """The keys both Twilio kinds share: the account, its credentials, the host."""

    account_sid: str = attrs.field(validator=v.matches_re(_ACCOUNT_SID))
    auth_token: SecretRef | None = None
    # Or an API key: its sid is the Basic user, the account stays in the path.
    api_key_sid: str | None = attrs.field(
        default=None, validator=v.optional(v.matches_re(_API_KEY_SID))
    )
    api_key_secret: SecretRef | None = None
    base_url: str = "https://api.twilio.com"

    def __attrs_post_init__(self) -> None:
        if (self.api_key_sid is None) != (self.api_key_secret is None):
            raise ValueError("give both 'api_key_sid' and 'api_key_secret', or neither")
        if (self.auth_token is None) == (self.api_key_sid is None):
            raise ValueError("give either 'auth_token' or an API key, not both or neither")

    def endpoint(self, ctx: AdapterContext, resource: str) -> _Endpoint:
        """Where ``resource`` is created, and who may create it; ``""``: the account itself."""
        account = f"{ctx.base_url(self.base_url)}/2010-04-01/Accounts/{self.account_sid}"
        url = f"{account}/{resource}.json" if resource else f"{account}.json"
        if self.api_key_sid is not None and self.api_key_secret is not None:
            return _Endpoint(url, self.api_key_sid, ctx.secrets(self.api_key_secret))
        assert self.auth_token is not None  # __attrs_post_init__ saw to it
        return _Endpoint(url, self.account_sid, ctx.secrets(self.auth_token))


@attrs.frozen
class TwilioSmsSettings(TwilioAccount):
    sender: str | None = attrs.field(default=None, validator=_sender)  # the default From
    # Or a Messaging Service, which picks the sender from its pool.
    messaging_service_sid: str | None = attrs.field(
        default=None, validator=v.optional(v.matches_re(_SERVICE_SID))
    )

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.sender is not None and self.messaging_service_sid is not None:
            raise ValueError("give 'sender' or 'messaging_service_sid', not both")


@attrs.frozen
class TwilioCallSettings(TwilioAccount):
    sender: str | None = attrs.field(  # the default From: a call needs a number
        default=None, validator=v.optional(v.matches_re(E164.pattern))
    )


@attrs.frozen
class _Endpoint:
    """Where a resource is created, and who may create it."""

    url: str
    user: str
    password: Secret

    def call(self, form: Mapping[str, str]) -> HttpCall:
        headers = {
            "Authorization": basic_auth(self.user, self.password),
            "Accept": "application/json",
        }
        return HttpCall("POST", self.url, headers=headers, form=form)


def classify(response: httpx.Response) -> Outcome:
    """Twilio's answers to a create, by status first, as Twilio asks of its error codes."""
    if response.is_success:
        return delivered_with(response, "sid")
    code = _error_code(response)
    words = detail(response, "code", "message")
    reason = status_reason(response, words)
    status = response.status_code
    if status == 429 or code == RATE_LIMITED:
        return Retry(reason, taken=Taken.NO, after=retry_after(response.headers), status=status)
    if code == AUTH_FAILED:
        return Permanent(reason, status=401)  # refused credentials: a health problem
    if code == SENDER_QUEUE_FULL:
        # Refused, not queued; the sender's queue drains at its own pace.
        return Retry(reason, taken=Taken.NO, status=status)
    # No idempotency key: even a 503 may have come after the resource was made.
    return classify_status(response, words, any_5xx_maybe_taken=True)


def _error_code(response: httpx.Response) -> int | None:
    body = json_object(response)
    code = body.get("code") if body is not None else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _phone(payload: Mapping[str, Any], key: str) -> str:
    number = required_str(payload, key, one_line=True)
    if not E164.fullmatch(number):
        raise InvalidPayload(f"{key!r} must be an E.164 number like +15558675310, got {number!r}")
    return number


# --- SMS -----------------------------------------------------------------------


def _no_callback() -> str | None:
    return None


@attrs.frozen
class TwilioSms:
    """``POST …/Messages.json``: ``To``, ``From`` or ``MessagingServiceSid``, ``Body``.

    With a webhook on the daemon's listener, ``StatusCallback`` names it, so
    Twilio reports each message's delivery (``delivered``, ``undelivered``...).
    """

    endpoint: _Endpoint
    sender: Mapping[str, str]  # the default: {"From": ...}, {"MessagingServiceSid": ...} or {}
    # Read at each send: the listener may learn its port after the adapter is built.
    status_callback: Callable[[], str | None] = _no_callback

    @classmethod
    def from_settings(cls, settings: TwilioSmsSettings, ctx: AdapterContext) -> TwilioSms:
        sender: dict[str, str] = {}
        if settings.sender is not None:
            sender["From"] = settings.sender
        if settings.messaging_service_sid is not None:
            sender["MessagingServiceSid"] = settings.messaging_service_sid
        return cls(settings.endpoint(ctx, "Messages"), sender, ctx.webhook_url)

    def validate(self, payload: Mapping[str, Any]) -> None:
        self._form(payload)

    def build(self, envelope: Envelope) -> HttpCall:
        form = self._form(envelope.payload)
        callback = self.status_callback()
        if callback is not None:
            form["StatusCallback"] = callback
        return self.endpoint.call(form)

    def _form(self, raw: object) -> dict[str, str]:
        payload = fields(raw, {"to", "body", "from"})
        form = {"To": _phone(payload, "to")}
        sender = optional_str(payload, "from", one_line=True)
        if sender is not None and not _is_sender(sender):
            raise InvalidPayload(
                f"'from' must be a number, short code or sender id, got {sender!r}"
            )
        form.update({"From": sender} if sender is not None else self.sender)
        if len(form) == 1:
            raise InvalidPayload("'from' is required: the integration names no sender")
        form["Body"] = required_str(payload, "body", max_len=MAX_BODY)
        return form

    def classify(self, response: httpx.Response) -> Outcome:
        return classify(response)


# --- voice call ------------------------------------------------------------------


def twiml(say: str, loop: int = 1) -> str:
    """TwiML that speaks ``say`` ``loop`` times, then hangs up."""
    times = f' loop="{loop}"' if loop != 1 else ""
    return f"<Response><Say{times}>{escape(say)}</Say></Response>"


@attrs.frozen
class TwilioCall:
    """``POST …/Calls.json``: ``To``, ``From``, and ``Twiml`` built from the text (or ``Url``)."""

    endpoint: _Endpoint
    sender: str | None

    @classmethod
    def from_settings(cls, settings: TwilioCallSettings, ctx: AdapterContext) -> TwilioCall:
        return cls(settings.endpoint(ctx, "Calls"), settings.sender)

    def validate(self, payload: Mapping[str, Any]) -> None:
        self._form(payload)

    def build(self, envelope: Envelope) -> HttpCall:
        return self.endpoint.call(self._form(envelope.payload))

    def _form(self, raw: object) -> dict[str, str]:
        payload = fields(raw, {"to", "say", "url", "from", "loop"})
        sender = _phone(payload, "from") if "from" in payload else self.sender
        if sender is None:
            raise InvalidPayload("'from' is required: the integration names no sender")
        return {"To": _phone(payload, "to"), "From": sender, **_instructions(payload)}

    def classify(self, response: httpx.Response) -> Outcome:
        return classify(response)


def _instructions(payload: Mapping[str, Any]) -> dict[str, str]:
    """``Twiml`` that speaks ``say``, or the ``Url`` Twilio fetches its TwiML from."""
    if ("say" in payload) == ("url" in payload):
        raise InvalidPayload("give exactly one of 'say' or 'url'")
    if "url" in payload:
        if "loop" in payload:
            raise InvalidPayload("'loop' goes with 'say'; the TwiML at 'url' says its own")
        url = check_text("url", payload["url"], max_len=4000, one_line=True)
        if not url.startswith("https://"):
            raise InvalidPayload(f"'url' must be an https URL, got {url!r}")
        return {"Url": url}
    say = check_text("say", payload["say"], max_len=MAX_TWIML, one_line=False)
    if _NOT_XML.search(say):
        raise InvalidPayload("'say' holds control characters TwiML cannot carry")
    document = twiml(say, _loop(payload))
    if len(document) > MAX_TWIML:
        raise InvalidPayload(
            f"'say' makes {len(document)} characters of TwiML, at most {MAX_TWIML}"
        )
    return {"Twiml": document}


def _loop(payload: Mapping[str, Any]) -> int:
    loop = payload.get("loop", 1)
    # Twilio reads loop="0" as "forever": never for an alert nobody hangs up on.
    if isinstance(loop, bool) or not isinstance(loop, int) or not 1 <= loop <= MAX_LOOP:
        raise InvalidPayload(f"'loop' must be a whole number from 1 to {MAX_LOOP}, got {loop!r}")
    return loop


# --- preflight ---------------------------------------------------------------------


def _account(settings: TwilioAccount, ctx: AdapterContext) -> HttpCall:
    """``GET /2010-04-01/Accounts/{AccountSid}.json``, as the adapter authenticates."""
    endpoint = settings.endpoint(ctx, "")
    headers = {"Authorization": basic_auth(endpoint.user, endpoint.password)}
    return HttpCall("GET", endpoint.url, headers=headers)


def _read_account(settings: TwilioAccount, response: httpx.Response) -> Finding:
    words = detail(response, "code", "message")
    if response.status_code == 404:
        return Finding(Verdict.FAIL, f"account {settings.account_sid} not found ({words})")
    if not response.is_success:
        return refused(response, words)
    body = json_object(response) or {}
    status, kind = body.get("status"), body.get("type")
    if status in ("suspended", "closed"):
        return Finding(Verdict.FAIL, f"credentials accepted, but the account is {status}")
    if kind == "Trial":
        words = "credentials accepted; a trial account texts and calls verified numbers only"
        return Finding(Verdict.WARN, words)
    return Finding(Verdict.PASS, f"credentials accepted; the account is {status or 'found'}")


_PROBE = ReadOnly(_account, _read_account)

KINDS: tuple[ProviderKind, ...] = (
    http_kind("twilio_sms", "alerts", TwilioSmsSettings, TwilioSms.from_settings, probe=_PROBE),
    http_kind("twilio_call", "alerts", TwilioCallSettings, TwilioCall.from_settings, probe=_PROBE),
)
