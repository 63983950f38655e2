"""The email family: one provider-neutral payload, and the Resend and Mailgun APIs.

Every member of an email group (Resend, Mailgun, SMTP) reads the same payload,
so a message can fail over from one to the next unchanged::

    {"from": str, "to": str | [str] (1..50), "subject": str,
     "text"?: str, "html"?: str (at least one of the two),
     "cc"?, "bcc"?, "reply_to"?: str | [str],
     "headers"?: {str: str}, "tags"?: [{"name": str, "value": str}]}

Resend batching is opt-in (``batch_size`` > 1; at 1, the default, the row is
a plain one-request provider, exactly as before). The actor then gathers up
to ``batch_size`` emails or ``batch_wait_ms``, and the provider sends them as
one ``POST /emails/batch`` (a JSON array of the bodies ``/emails`` takes,
``x-batch-validation: permissive``, ``Idempotency-Key`` a digest of the
ordered message keys). How the answers map, per email::

    /emails/batch                            outcome
    200 data (+ errors[{index, message}])    listed: Permanent(message);
                                             the rest Delivered(id), in order
    200 whose ids do not add up              Retry(taken=MAYBE) (malformed)
    anything else                            what one email's request gets, each

Two kinds of email never ride in a batch; the limits' rule ``alone`` makes
the actor send each as a batch of one, to ``POST /emails`` under its own key:

* a retry: Resend de-duplicates per request, and a batch can rarely be
  repeated as it was, so a retry goes alone, where its later retries at
  least dedup among themselves;
* an email with ``tags``: Resend's batch announcement said batches do not
  support them (whether they do today is unconfirmed), and a refusal of the
  request would fail every email riding with it.

Should one still arrive among others, the first such email goes alone and
the rest are settled unsent as ``Retry(taken=NO, scope=MESSAGE, after=0)``.
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote

import attrs
import httpx
from attrs import validators as v

from .._delivery import Delivered, Envelope, Outcome, Permanent, Retry, Scope, Taken
from .._errors import InvalidPayload
from .._secrets import Secret, SecretRef
from ._base import (
    AdapterContext,
    BatchCall,
    BatchLimits,
    Finding,
    HttpCall,
    ProviderKind,
    ReadOnly,
    Verdict,
    basic_auth,
    batch_kind,
    bearer,
    check_text,
    classify_status,
    delivered_with,
    detail,
    fields,
    http_kind,
    json_object,
    malformed,
    optional_list,
    optional_mapping,
    optional_str,
    parse_all,
    refused,
    required_str,
    shorten,
    status_reason,
    wait_hint,
)

MAX_RECIPIENTS = 50
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext: printable ASCII but ':'
_TAG_TEXT = re.compile(r"[A-Za-z0-9_-]{1,256}")  # Resend's rule, the strictest member's
# Set from their own fields, or by the adapter; a custom header may not override them.
_OWN_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "subject", "reply-to", "message-id", "date", "x-idempotency-key"}
)
_ADDRESS_FIELDS = ("to", "cc", "bcc", "reply_to")
_ALLOWED = frozenset({"from", "subject", "text", "html", "headers", "tags", *_ADDRESS_FIELDS})
# The Mailgun custom variable (``v:`` field) that carries our idempotency key.
MAILGUN_KEY_VARIABLE = "ringbearer-key"


@attrs.frozen
class Tag:
    name: str
    value: str


@attrs.frozen
class EmailPayload:
    """A checked email payload, the same for every provider of the family."""

    sender: str
    to: tuple[str, ...]
    subject: str
    text: str | None = None
    html: str | None = None
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    reply_to: tuple[str, ...] = ()
    headers: Mapping[str, str] = attrs.field(factory=dict)
    tags: tuple[Tag, ...] = ()

    @classmethod
    def parse(cls, raw: object) -> EmailPayload:
        """Check a payload; raise InvalidPayload naming the first field that does not fit."""
        payload = fields(raw, _ALLOWED)
        text, html = optional_str(payload, "text"), optional_str(payload, "html")
        if text is None and html is None:
            raise InvalidPayload("one of 'text' or 'html' is required")
        return cls(
            sender=_address("from", required_str(payload, "from")),
            to=_addresses(payload, "to", required=True),
            subject=required_str(payload, "subject", max_len=998, one_line=True),
            text=text,
            html=html,
            cc=_addresses(payload, "cc"),
            bcc=_addresses(payload, "bcc"),
            reply_to=_addresses(payload, "reply_to"),
            headers=_headers(payload),
            tags=_tags(payload),
        )

    @property
    def recipients(self) -> tuple[str, ...]:
        return self.to + self.cc + self.bcc


def _address(key: str, value: object) -> str:
    text = check_text(key, value, max_len=998, one_line=True)
    if not _is_address(text):
        raise InvalidPayload(f"{key!r} is not an email address: {text!r}")
    return text


@functools.lru_cache(maxsize=4096)
def _is_address(text: str) -> bool:
    # The standard parser is slow and the same senders recur in every message.
    _, address = email.utils.parseaddr(text)
    return "@" in address


def _addresses(payload: Mapping[str, Any], key: str, *, required: bool = False) -> tuple[str, ...]:
    value = payload.get(key)
    if value is None and not required:
        return ()
    if value is None:
        raise InvalidPayload(f"{key!r} is required")
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_RECIPIENTS:
        raise InvalidPayload(f"{key!r} must be an address or a list of 1 to {MAX_RECIPIENTS}")
    return tuple(_address(f"{key}[{i}]", item) for i, item in enumerate(items))


def _headers(payload: Mapping[str, Any]) -> dict[str, str]:
    headers = optional_mapping(payload, "headers") or {}
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise InvalidPayload(f"'headers' has an invalid header name {name!r}")
        if name.lower() in _OWN_HEADERS:
            raise InvalidPayload(f"'headers' may not set {name!r}; it has its own field")
        check_text(f"headers.{name}", value, max_len=998, one_line=True)
    return headers


def _tags(payload: Mapping[str, Any]) -> tuple[Tag, ...]:
    tags = []
    for i, item in enumerate(optional_list(payload, "tags") or []):
        if not isinstance(item, dict) or set(item) != {"name", "value"}:
            raise InvalidPayload(f"'tags[{i}]' must be an object with 'name' and 'value'")
        for part in ("name", "value"):
            if not isinstance(item[part], str) or not _TAG_TEXT.fullmatch(item[part]):
                raise InvalidPayload(
                    f"'tags[{i}].{part}' must be 1 to 256 letters, digits, '_' or '-'"
                )
        if item["name"] == MAILGUN_KEY_VARIABLE:
            # Mailgun sends tags as custom variables, where this one is ours.
            raise InvalidPayload(f"'tags[{i}].name' {MAILGUN_KEY_VARIABLE!r} is reserved")
        tags.append(Tag(item["name"], item["value"]))
    return tuple(tags)


# --- Resend ------------------------------------------------------------------

_RESEND_QUOTAS = frozenset({"daily_quota_exceeded", "monthly_quota_exceeded"})
QUOTA_RETRY_SECONDS = 3600.0


RESEND_MAX_BATCH = 100  # emails a /emails/batch request, Resend's cap


@attrs.frozen
class ResendSettings:
    """``batch_size`` 1 sends one email a request; more gathers them (see the module doc)."""

    api_key: SecretRef
    base_url: str = "https://api.resend.com"
    batch_size: int = attrs.field(
        default=1, validator=[v.instance_of(int), v.ge(1), v.le(RESEND_MAX_BATCH)]
    )
    batch_wait_ms: int = attrs.field(
        default=200, validator=[v.instance_of(int), v.ge(0), v.le(60_000)]
    )
    # The webhook endpoint's signing secret (``whsec_...``): Resend signs its
    # delivery events with it (Svix), and the listener checks each one.
    webhook_secret: SecretRef | None = None


def _goes_alone(envelope: Envelope) -> bool:
    """A retry, or an email with tags, is sent alone on ``/emails`` (see the module doc)."""
    return envelope.attempts > 0 or bool(envelope.payload.get("tags"))


@attrs.frozen
class Resend:
    """``POST /emails`` (or ``/emails/batch``) with a bearer key and ``Idempotency-Key``."""

    api_key: Secret
    base_url: str
    limits: BatchLimits = BatchLimits(max_size=1, max_wait=0.2)

    @classmethod
    def from_settings(cls, settings: ResendSettings, ctx: AdapterContext) -> Resend:
        limits = BatchLimits(settings.batch_size, settings.batch_wait_ms / 1000, alone=_goes_alone)
        return cls(ctx.secrets(settings.api_key), ctx.base_url(settings.base_url), limits)

    def validate(self, payload: Mapping[str, Any]) -> None:
        EmailPayload.parse(payload)

    def _headers(self, key: str) -> dict[str, str]:
        return {
            "Authorization": bearer(self.api_key),
            "Idempotency-Key": key,
            "Accept": "application/json",
        }

    def build(self, envelope: Envelope) -> HttpCall:
        return self._single(envelope, EmailPayload.parse(envelope.payload))

    def _single(self, envelope: Envelope, mail: EmailPayload) -> HttpCall:
        headers = self._headers(envelope.idempotency_key)
        return HttpCall("POST", f"{self.base_url}/emails", headers=headers, json=_resend(mail))

    def build_batch(self, envelopes: Sequence[Envelope]) -> BatchCall:
        lone = next((env for env in envelopes if _goes_alone(env)), None)
        if lone is not None:
            return self._alone(lone, envelopes)
        ready, settled = parse_all(envelopes, lambda env: EmailPayload.parse(env.payload))
        if len(ready) == 1:  # one email is one email's request, exactly
            ((env, mail),) = ready
            return BatchCall(self._single(env, mail), (env,), settled)
        if not ready:
            return BatchCall(None, (), settled)
        sent = tuple(env for env, _ in ready)
        headers = {**self._headers(_batch_key(sent)), "x-batch-validation": "permissive"}
        body = [_resend(mail) for _, mail in ready]
        call = HttpCall("POST", f"{self.base_url}/emails/batch", headers=headers, json=body)
        return BatchCall(call, sent, settled)

    def _alone(self, envelope: Envelope, envelopes: Sequence[Envelope]) -> BatchCall:
        """``envelope`` alone on ``/emails``; the others settled unsent, to come back alone."""
        settled: dict[int, Outcome] = {
            env.id: _NOT_THIS_TIME for env in envelopes if env.id != envelope.id
        }
        try:
            call = self.build(envelope)
        except InvalidPayload as exc:
            settled[envelope.id] = Permanent(f"invalid payload: {exc.message}")
            return BatchCall(None, (), settled)
        return BatchCall(call, (envelope,), settled)

    def classify(self, response: httpx.Response) -> Outcome:
        if response.is_success:
            return delivered_with(response, "id")
        name = _error_name(response)
        words = detail(response, "name", "message")
        status = response.status_code
        if status == 409 and name == "concurrent_idempotent_requests":
            # An earlier attempt with this key is still being processed, so the
            # message may well go out: retry here, where the key dedups it.
            after = wait_hint(response.headers)
            reason = status_reason(response, words)
            return Retry(reason, taken=Taken.MAYBE, after=after, status=status)
        if status == 429 and name in _RESEND_QUOTAS:
            # Seconds of waiting will not help a daily or monthly quota, but the
            # request was refused, not taken: a group fails over to its next
            # member at once, and Resend alone is tried again after an hour.
            return Retry(
                status_reason(response, words),
                taken=Taken.NO,
                after=QUOTA_RETRY_SECONDS,
                status=status,
            )
        return classify_status(response, words)

    def classify_batch(self, sent: Sequence[Envelope], response: httpx.Response) -> list[Outcome]:
        # One email is always sent on /emails (see build_batch).
        if len(sent) == 1 or not response.is_success:
            return [self.classify(response)] * len(sent)
        answer = _batch_answer(response, len(sent))
        if answer is None:
            expected = f"{len(sent)} ids and errors, by index, between them"
            return [malformed(response, expected)] * len(sent)
        ids, errors = iter(answer[0]), answer[1]
        return [
            Permanent(shorten(f"Resend refused the email: {errors[i]}"))
            if i in errors
            else Delivered(provider_id=next(ids))
            for i in range(len(sent))
        ]


_NOT_THIS_TIME = Retry(
    "sent next time: another email in the batch had to go alone",
    taken=Taken.NO,
    after=0.0,
    scope=Scope.MESSAGE,
)


def _batch_key(sent: Sequence[Envelope]) -> str:
    """A batch's idempotency key: a function of its messages' keys, in order."""
    keys = json.dumps([env.idempotency_key for env in sent]).encode()
    return "batch-" + hashlib.blake2b(keys, digest_size=32).hexdigest()


def _batch_answer(response: httpx.Response, count: int) -> tuple[list[str], dict[int, str]] | None:
    """The ids of the queued emails and the refused ones' messages by index, if they add up."""
    body = json_object(response) or {}
    data, errors = body.get("data"), body.get("errors", [])
    if not isinstance(data, list) or not isinstance(errors, list):
        return None
    ids = [item.get("id") if isinstance(item, dict) else None for item in data]
    refused: dict[int, str] = {}
    for error in errors:
        index = error.get("index") if isinstance(error, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
            return None
        refused[index] = str(error.get("message") or "no detail")
    if len(ids) + len(refused) != count or not all(isinstance(i, str) and i for i in ids):
        return None
    return [str(i) for i in ids], refused


def _error_name(response: httpx.Response) -> str | None:
    """Resend's error ``name`` (``validation_error``, ``rate_limit_exceeded``...)."""
    body = json_object(response)
    name = body.get("name") if body is not None else None
    return name if isinstance(name, str) else None


def _resend(mail: EmailPayload) -> dict[str, Any]:
    body: dict[str, Any] = {"from": mail.sender, "to": list(mail.to), "subject": mail.subject}
    optional = {
        "text": mail.text,
        "html": mail.html,
        "cc": list(mail.cc),
        "bcc": list(mail.bcc),
        "reply_to": list(mail.reply_to),
        "headers": dict(mail.headers),
        "tags": [{"name": tag.name, "value": tag.value} for tag in mail.tags],
    }
    body.update((key, value) for key, value in optional.items() if value)
    return body


# --- Mailgun -----------------------------------------------------------------

_MAILGUN_REGIONS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}


@attrs.frozen
class MailgunSettings:
    api_key: SecretRef
    domain: str = attrs.field(validator=v.matches_re(r"[A-Za-z0-9.-]+"))
    region: Literal["us", "eu"] = "us"
    base_url: str | None = None  # overrides the region's host
    # The account's HTTP webhook signing key: Mailgun signs its event deliveries with it.
    webhook_signing_key: SecretRef | None = None


def _mailgun_base(settings: MailgunSettings, ctx: AdapterContext) -> str:
    return ctx.base_url(settings.base_url or _MAILGUN_REGIONS[settings.region])


@attrs.frozen
class Mailgun:
    """``POST /v3/{domain}/messages``, form fields, Basic ``api:<key>``."""

    api_key: Secret
    url: str

    @classmethod
    def from_settings(cls, settings: MailgunSettings, ctx: AdapterContext) -> Mailgun:
        url = f"{_mailgun_base(settings, ctx)}/v3/{quote(settings.domain)}/messages"
        return cls(ctx.secrets(settings.api_key), url)

    def validate(self, payload: Mapping[str, Any]) -> None:
        EmailPayload.parse(payload)

    def build(self, envelope: Envelope) -> HttpCall:
        mail = EmailPayload.parse(envelope.payload)
        headers = {"Authorization": basic_auth("api", self.api_key)}
        return HttpCall("POST", self.url, headers=headers, form=_mailgun(mail, envelope))

    def classify(self, response: httpx.Response) -> Outcome:
        if response.is_success:
            return delivered_with(response, "id")
        words = detail(response, "message")
        if response.status_code == 404:
            # Mailgun is eventually consistent: a domain just created may 404 for a while.
            return Retry(status_reason(response, words), taken=Taken.NO, status=404)
        return classify_status(response, words)


def _mailgun(mail: EmailPayload, envelope: Envelope) -> dict[str, str | list[str]]:
    form: dict[str, str | list[str]] = {"from": mail.sender, "to": list(mail.to)}
    optional: dict[str, str | list[str] | None] = {
        "cc": list(mail.cc),
        "bcc": list(mail.bcc),
        "subject": mail.subject,
        "text": mail.text,
        "html": mail.html,
        "h:Reply-To": ", ".join(mail.reply_to),
    }
    form.update((key, value) for key, value in optional.items() if value)
    form.update((f"h:{name}", value) for name, value in mail.headers.items())
    form.update((f"v:{tag.name}", tag.value) for tag in mail.tags)
    # A custom variable, not a MIME header: recipients never see it, and
    # Mailgun echoes it in each event's ``user-variables``, where the
    # listener matches the event to its message.
    form[f"v:{MAILGUN_KEY_VARIABLE}"] = envelope.idempotency_key
    return form


# --- preflight: read-only requests ----------------------------------------------


def _resend_domains(settings: ResendSettings, ctx: AdapterContext) -> HttpCall:
    """``GET /domains``, with the adapter's own key and base URL."""
    resend = Resend.from_settings(settings, ctx)
    headers = {"Authorization": bearer(resend.api_key)}
    return HttpCall("GET", f"{resend.base_url}/domains", headers=headers)


def _read_resend(settings: ResendSettings, response: httpx.Response) -> Finding:
    body = json_object(response) or {}
    if response.status_code == 401 and body.get("name") == "restricted_api_key":
        return Finding(Verdict.PASS, "key accepted (a sending-only key: it may not list domains)")
    if not response.is_success:
        return refused(response, detail(response, "name", "message"))
    data = body.get("data")
    domains = [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []
    verified = [str(d.get("name")) for d in domains if d.get("status") == "verified"]
    if not verified:
        words = f"key accepted, but none of its {len(domains)} domain(s) is verified"
        return Finding(Verdict.WARN, words)
    return Finding(Verdict.PASS, shorten(f"key accepted; verified: {', '.join(verified)}", 120))


def _mailgun_domain(settings: MailgunSettings, ctx: AdapterContext) -> HttpCall:
    """``GET /v3/domains/{domain}``, with the adapter's own key and region."""
    key = Mailgun.from_settings(settings, ctx).api_key
    url = f"{_mailgun_base(settings, ctx)}/v3/domains/{quote(settings.domain)}"
    return HttpCall("GET", url, headers={"Authorization": basic_auth("api", key)})


def _read_mailgun(settings: MailgunSettings, response: httpx.Response) -> Finding:
    words = detail(response, "message")
    if response.status_code == 404:
        return Finding(Verdict.FAIL, f"domain {settings.domain} not found (HTTP 404: {words})")
    if not response.is_success:
        return refused(response, words)
    domain = (json_object(response) or {}).get("domain")
    state = domain.get("state") if isinstance(domain, dict) else None
    if state is not None and state != "active":
        return Finding(Verdict.WARN, f"key accepted, but domain {settings.domain} is {state}")
    return Finding(Verdict.PASS, f"key accepted; domain {settings.domain} is {state or 'found'}")


def _resend_kind() -> ProviderKind:
    """One row, two shapes: at ``batch_size`` 1 the one-request adapter, unchanged."""
    probe = ReadOnly(_resend_domains, _read_resend)
    one = http_kind("resend", "email", ResendSettings, Resend.from_settings, probe=probe)
    many = batch_kind("resend", "email", ResendSettings, Resend.from_settings, probe=probe)

    def build(settings: ResendSettings, ctx: AdapterContext) -> Any:
        return (one if settings.batch_size == 1 else many).build(settings, ctx)

    return attrs.evolve(one, build=build)


KINDS: tuple[ProviderKind, ...] = (
    _resend_kind(),
    http_kind(
        "mailgun",
        "email",
        MailgunSettings,
        Mailgun.from_settings,
        probe=ReadOnly(_mailgun_domain, _read_mailgun),
    ),
)
