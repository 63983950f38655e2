"""The photographer-CRM family: Táve / VSCO Workspace, Light Blue, HoneyBook (via Zapier).

Each provider takes a new enquiry (a lead) in its own shape, so each has its
own payload.

**Táve / VSCO Workspace** (kind ``tave``), Public API v2. A lead is three
requests, because the API has no call that does it in one: a Job carries no
contact field, and the documented way to attach a contact to a job is its own
resource, ``POST /job-contact`` with ``contactId`` and ``jobId``::

    POST /api/v2/address-book  {"kind": "person", firstName, ...}  -> 201 {"id": ULID}
    POST /api/v2/job           {"stage": "lead", jobTypeId, ...}   -> 201 {"id": ULID}
    POST /api/v2/job-contact   {contactId, jobId, "client": true}  -> 201 {"id": ULID}

Each completed step's id is saved with the message before the next step
starts (progress ``{"contact": id, "job": id}``), so a retry or a restart
resumes after the last completed step and never creates the same record twice.
The API has no idempotency key, though: a step whose answer is lost (a
timeout after sending) is sent again, and may leave a duplicate record. The
message is delivered with the job's id. Payload (ids are the studio's own
ULIDs, from ``GET /job-type``, ``/lead-source``, ``/lead-status``, ``/brand``)::

    {"contact": {"first_name": str (<=48), "last_name"?: str (<=48),
                 "email"?: str, "phone"?: str (<=24, E.164 or as written),
                 "brand_id"?: ULID},
     "job": {"job_type_id": ULID, "event_date"?: "YYYY-MM-DD",
             "lead_source_id"?: ULID, "lead_status_id"?: ULID, "brand_id"?: ULID,
             "name"?: str, "notes"?: str}}

**Light Blue** (kind ``light_blue``): one form ``POST /api.php`` that puts an
enquiry in the studio's Light Blue Inbox. ``ID`` (from the idempotency key)
and ``Source`` (from the settings) make a retry a recognised duplicate
(status ``-4``); changing ``source`` while messages are in flight defeats
that. The reply's wire format is UNCONFIRMED: the docs say "a status code
and, if an error occurred, a summary", and Light Blue's own plugins read the
sibling ``apiCheck.php`` as HTTP 200 with ``<code>\\r<summary>``. That is the
form assumed (and simulated); the reader also takes the code and summary
separated by a line break or a space, or a JSON object with ``status`` or
``code``. Payload::

    {"contact": {"name": str | "first_name": str, "last_name"?: str,
                 "email"?: str, "phone_mobile"?: str, "phone_home"?: str,
                 "phone_work"?: str, "source"?: str, "tag"?: str},
     "shoot"?: {"title"?: str, "type"?: str, "date"?: "YYYY-MM-DD"},
     "message"?: str}

mapped to ``ContactNameFull`` (or ``ContactNameFirst``/``ContactNameLast``),
``ContactEmail``, ``ContactPhoneMobile``/``Home``/``Work``, ``ContactSource``,
``ContactTag``, ``ShootTitle``, ``ShootType``, ``ShootDate`` (this name is
UNCONFIRMED; Light Blue ignores a parameter it does not know) and
``Message``; dates go out as ``yyyy/mm/dd`` with ``DateFormat``.

**HoneyBook** (kind ``honeybook``) has no public API. The message is posted as
JSON to a Zapier "Catch Hook" whose URL is the secret; the user's Zap then
creates the HoneyBook project ("Create Project" action). Zapier answers
``200 {"attempt", "id", "request_id", "status": "success"}`` once it has caught
the request; the Zap runs later and its failures show only in Zap history.
Zapier has no idempotency of its own, so the body carries ``idempotency_key``
for the Zap to deduplicate on (a "Filter" or lookup step). Payload, two free-form
objects handed to the Zap as they are::

    {"project": {"name": str, ...}, "client": {"name": str, "email": str, ...}}
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import httpx

from .. import __version__
from .._delivery import Delivered, Envelope, Outcome, Permanent
from .._errors import InvalidPayload
from .._secrets import Secret, SecretRef
from ._base import (
    CONNECT_TO_BASE_URL,
    E164,
    AdapterContext,
    Connect,
    HttpCall,
    ProviderKind,
    classify_status,
    conforming_id,
    delivered_on_success,
    detail,
    fields,
    http_kind,
    json_object,
    malformed,
    optional_mapping,
    optional_str,
    required_str,
    secret_url,
    shorten,
    status_reason,
    steps_kind,
)

_ULID = re.compile(r"[0-7][0-9a-hjkmnp-tv-z]{25}", re.IGNORECASE)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


# --- reading nested payloads -------------------------------------------------


@contextlib.contextmanager
def _within(key: str) -> Iterator[None]:
    """Name the enclosing object in an InvalidPayload raised inside it."""
    try:
        yield
    except InvalidPayload as exc:
        raise InvalidPayload(f"in {key!r}: {exc.message}") from exc


def _part(
    payload: Mapping[str, Any], key: str, allowed: frozenset[str]
) -> Mapping[str, Any] | None:
    """An optional nested object whose keys are all in ``allowed``."""
    value = optional_mapping(payload, key)
    if value is None:
        return None
    with _within(key):
        return fields(value, allowed)


def _required_part(
    payload: Mapping[str, Any], key: str, allowed: frozenset[str]
) -> Mapping[str, Any]:
    value = _part(payload, key, allowed)
    if value is None:
        raise InvalidPayload(f"{key!r} is required")
    return value


def _text(payload: Mapping[str, Any], key: str, max_len: int = 255) -> str | None:
    """An optional single-line text field."""
    return optional_str(payload, key, max_len=max_len, one_line=True)


def _email(payload: Mapping[str, Any], key: str) -> str | None:
    value = _text(payload, key)
    if value is not None and "@" not in value:
        raise InvalidPayload(f"{key!r} is not an email address: {value!r}")
    return value


def _date(payload: Mapping[str, Any], key: str) -> datetime.date | None:
    value = _text(payload, key)
    if value is None:
        return None
    try:
        if not _ISO_DATE.fullmatch(value):
            raise ValueError(value)
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise InvalidPayload(f"{key!r} must be a date as YYYY-MM-DD, got {value!r}") from None


def _ulid(payload: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = required_str(payload, key) if required else _text(payload, key)
    if value is not None and not _ULID.fullmatch(value):
        raise InvalidPayload(f"{key!r} must be a VSCO Workspace id (a ULID), got {value!r}")
    # VSCO Workspace writes its ids in lower case.
    return None if value is None else value.lower()


def _present(**values: Any) -> dict[str, Any]:
    """The keyword arguments that are not None."""
    return {key: value for key, value in values.items() if value is not None}


# --- Táve / VSCO Workspace ---------------------------------------------------

_VSCO_API = "/api/v2"
_TAVE_FIELDS = frozenset({"contact", "job"})
_TAVE_CONTACT = frozenset({"first_name", "last_name", "email", "phone", "brand_id"})
_TAVE_JOB = frozenset(
    {
        "job_type_id",
        "event_date",
        "lead_source_id",
        "lead_status_id",
        "brand_id",
        "name",
        "notes",
    }
)
_VSCO_NAME_MAX = 48
_VSCO_PHONE_MAX = 24
_PRINTABLE_ASCII = re.compile(r"[ -~]+")


@attrs.frozen
class TaveSettings:
    api_key: SecretRef  # a Public API v2 key from workspace.vsco.co/settings/api
    base_url: str = "https://workspace.vsco.co"  # the API lives under /api/v2


class TaveStep(enum.Enum):
    """A lead's steps, in order; each completed one is saved under its value."""

    CONTACT = "contact"
    JOB = "job"
    LINK = "link"

    @classmethod
    def next(cls, progress: Mapping[str, Any]) -> TaveStep:
        """The first step whose id is not in ``progress``."""
        for step in (cls.CONTACT, cls.JOB):
            if not isinstance(progress.get(step.value), str):
                return step
        return cls.LINK


_TAVE_PATHS = {
    TaveStep.CONTACT: "/address-book",
    TaveStep.JOB: "/job",
    TaveStep.LINK: "/job-contact",
}
_TAVE_DOING = {
    TaveStep.CONTACT: "creating the contact",
    TaveStep.JOB: "creating the job",
    TaveStep.LINK: "linking the contact to the job",
}


@attrs.frozen
class TaveLead:
    """A checked lead: the Person and Job bodies, in the API's own field names."""

    person: Mapping[str, Any]
    job: Mapping[str, Any]

    @classmethod
    def parse(cls, raw: object) -> TaveLead:
        payload = fields(raw, _TAVE_FIELDS)
        contact = _required_part(payload, "contact", _TAVE_CONTACT)
        job = _required_part(payload, "job", _TAVE_JOB)
        with _within("contact"):
            person = _tave_person(contact)
        with _within("job"):
            lead = _tave_job(job)
        return cls(person, lead)


def _tave_person(contact: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "kind": "person",
        **_present(
            firstName=required_str(contact, "first_name", max_len=_VSCO_NAME_MAX, one_line=True),
            lastName=_text(contact, "last_name", _VSCO_NAME_MAX),
            email=_email(contact, "email"),
            cellPhone=_vsco_phone(contact, "phone"),
            brandId=_ulid(contact, "brand_id"),
        ),
    }


def _vsco_phone(contact: Mapping[str, Any], key: str) -> dict[str, str] | None:
    """A phone number object: ``e164`` when the number is one (VSCO's preferred form),
    else ``formatted``, which VSCO parses in the studio's country."""
    value = _text(contact, key, _VSCO_PHONE_MAX)
    if value is None:
        return None
    if not _PRINTABLE_ASCII.fullmatch(value):
        raise InvalidPayload(f"{key!r} must be printable ASCII, got {value!r}")
    return {"e164" if E164.fullmatch(value) else "formatted": value}


def _tave_job(job: Mapping[str, Any]) -> dict[str, Any]:
    event_date = _date(job, "event_date")
    return {
        "stage": "lead",
        **_present(
            jobTypeId=_ulid(job, "job_type_id", required=True),
            eventDate=None if event_date is None else event_date.isoformat(),
            leadSourceId=_ulid(job, "lead_source_id"),
            leadStatusId=_ulid(job, "lead_status_id"),
            brandId=_ulid(job, "brand_id"),
            name=_text(job, "name"),
            leadNotes=optional_str(job, "notes", max_len=65_535),
        ),
    }


@attrs.frozen
class Tave:
    """A lead as three saved steps: contact, job, then the link between them."""

    api_key: Secret
    base_url: str

    @classmethod
    def from_settings(cls, settings: TaveSettings, ctx: AdapterContext) -> Tave:
        return cls(ctx.secrets(settings.api_key), ctx.base_url(settings.base_url) + _VSCO_API)

    def validate(self, payload: Mapping[str, Any]) -> None:
        TaveLead.parse(payload)

    def next_call(self, envelope: Envelope, progress: Mapping[str, Any]) -> HttpCall:
        lead = TaveLead.parse(envelope.payload)
        step = TaveStep.next(progress)
        match step:
            case TaveStep.CONTACT:
                body: Mapping[str, Any] = lead.person
            case TaveStep.JOB:
                body = lead.job
            case TaveStep.LINK:
                # The lead's contact is the job's client.
                body = {"contactId": progress["contact"], "jobId": progress["job"], "client": True}
        headers = {"X-API-KEY": self.api_key.reveal(), "Accept": "application/json"}
        return HttpCall("POST", self.base_url + _TAVE_PATHS[step], headers=headers, json=body)

    def after_call(
        self, envelope: Envelope, progress: Mapping[str, Any], response: httpx.Response
    ) -> Outcome | Mapping[str, Any]:
        step = TaveStep.next(progress)
        if not response.is_success:
            return _tave_failure(step, response)
        body = json_object(response) or {}
        created = body.get("id")
        if not isinstance(created, str) or not created:
            return malformed(response, f"a JSON object with a string 'id' ({_TAVE_DOING[step]})")
        if step is TaveStep.LINK:
            return Delivered(provider_id=progress["job"])
        return {**progress, step.value: created}


def _tave_failure(step: TaveStep, response: httpx.Response) -> Outcome:
    words = f"{_TAVE_DOING[step]}: {_vsco_words(response)}"
    if response.status_code == 404 and step is TaveStep.LINK:
        # The contact or job saved by an earlier step no longer exists: someone
        # deleted it in VSCO Workspace meanwhile. Retrying with the saved ids
        # cannot succeed, and re-creating a record a person deleted would undo
        # their decision, so the message stops here.
        words += " (the contact or job made by an earlier step was deleted)"
        return Permanent(status_reason(response, words), status=404)
    # 400 validation, 401/403 key, 404 path: permanent; 429 waits Retry-After;
    # any 5xx, a 503 too, retries as maybe taken: with no idempotency key, the
    # request may have created the record, so a group must not fail over.
    return classify_status(response, words, any_5xx_maybe_taken=True)


def _vsco_words(response: httpx.Response) -> str:
    """An error's ``title`` and ``detail``; a validation error's detail is per field."""
    body = json_object(response) or {}
    info = body.get("detail")
    if isinstance(info, Mapping):
        info = "; ".join(f"{field}: {_flat(why)}" for field, why in info.items())
    parts = [str(part) for part in (body.get("title"), info) if part]
    return shorten(": ".join(parts)) if parts else detail(response)


def _flat(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return value if isinstance(value, str) else json.dumps(value)


# --- Light Blue ----------------------------------------------------------------

_LB_FIELDS = frozenset({"contact", "shoot", "message"})
_LB_CONTACT = {
    "name": "ContactNameFull",
    "first_name": "ContactNameFirst",
    "last_name": "ContactNameLast",
    "email": "ContactEmail",
    "phone_mobile": "ContactPhoneMobile",
    "phone_home": "ContactPhoneHome",
    "phone_work": "ContactPhoneWork",
    "source": "ContactSource",
    "tag": "ContactTag",
}
_LB_SHOOT = {"title": "ShootTitle", "type": "ShootType"}
_LB_SHOOT_DATE = "ShootDate"  # UNCONFIRMED parameter name
_LB_DATE_FORMAT = "yyyy/mm/dd"
_LB_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_LB_CODE = re.compile(r"\s*(-?\d+)(?:[\s:,.-]+(.*))?", re.DOTALL)
_LB_OK, _LB_DUPLICATE = 0, -4
_LB_MEANING = {
    -3: "invalid request type, or no valid parameters",
    -20: "HTTPS is required",
}


@attrs.frozen
class LightBlueSettings:
    api_key: SecretRef  # Light Blue: Preferences → Integrations → "API & Zapier"
    source: str = "ringbearer"  # with ID, what Light Blue deduplicates on
    base_url: str = "https://online.lightbluesoftware.com"


def light_blue_id(idempotency_key: str) -> str:
    """The ``ID`` for a key: the key itself when short and plain, else a 32-hex digest of it.

    Light Blue documents no limit on ``ID`` (a Text parameter), so this keeps
    to a form any such field takes.
    """
    return conforming_id(idempotency_key, _LB_ID)


def _light_blue_params(raw: object) -> dict[str, str]:
    """A checked payload as Light Blue's parameters (no key, type, Source or ID)."""
    payload = fields(raw, _LB_FIELDS)
    contact = _required_part(payload, "contact", frozenset(_LB_CONTACT))
    with _within("contact"):
        params = _light_blue_contact(contact)
    shoot = _part(payload, "shoot", frozenset({*_LB_SHOOT, "date"}))
    if shoot is not None:
        with _within("shoot"):
            params |= _light_blue_shoot(shoot)
    message = optional_str(payload, "message", max_len=65_535)
    return params if message is None else params | {"Message": message}


def _light_blue_contact(contact: Mapping[str, Any]) -> dict[str, str]:
    has = {key for key, value in contact.items() if value is not None}
    if ("name" in has) == ("first_name" in has):
        raise InvalidPayload("give either 'name' or 'first_name' (with 'last_name')")
    if {"name", "last_name"} <= has:
        raise InvalidPayload("'last_name' goes with 'first_name', not with 'name'")
    _email(contact, "email")
    return {param: value for key, param in _LB_CONTACT.items() if (value := _text(contact, key))}


def _light_blue_shoot(shoot: Mapping[str, Any]) -> dict[str, str]:
    params = {param: value for key, param in _LB_SHOOT.items() if (value := _text(shoot, key))}
    date = _date(shoot, "date")
    if date is not None:
        params[_LB_SHOOT_DATE] = date.strftime("%Y/%m/%d")
        params["DateFormat"] = _LB_DATE_FORMAT
    return params


@attrs.frozen
class LightBlue:
    """``POST /api.php`` as a form, deduplicated by ``ID`` + ``Source``."""

    api_key: Secret
    url: str
    source: str

    @classmethod
    def from_settings(cls, settings: LightBlueSettings, ctx: AdapterContext) -> LightBlue:
        url = f"{ctx.base_url(settings.base_url)}/api.php"
        return cls(ctx.secrets(settings.api_key), url, settings.source)

    def validate(self, payload: Mapping[str, Any]) -> None:
        _light_blue_params(payload)

    def build(self, envelope: Envelope) -> HttpCall:
        form = {
            "key": self.api_key.reveal(),
            "type": "contact form",
            "Source": self.source,
            "SourceAPIVersion": __version__,
            "ID": light_blue_id(envelope.idempotency_key),
            **_light_blue_params(envelope.payload),
        }
        return HttpCall("POST", self.url, form=form)

    def classify(self, response: httpx.Response) -> Outcome:
        if not response.is_success:
            # No HTTP errors are documented: a 5xx is retried (ID makes a
            # repeat harmless), a 429 waits Retry-After, any other 4xx stops.
            return classify_status(response, detail(response))
        answer = light_blue_answer(response)
        if answer is None:
            return malformed(response, "a Light Blue status code")
        code, summary = answer
        if code in (_LB_OK, _LB_DUPLICATE):
            # -4: an earlier attempt with this ID and Source was taken (its
            # answer was lost, or it timed out after sending). Saying so is
            # exactly what the ID is for: the enquiry is in the Inbox once.
            return Delivered()
        meaning = summary or _LB_MEANING.get(code, "error")
        return Permanent(status_reason(response, f"Light Blue status {code}: {shorten(meaning)}"))


def light_blue_answer(response: httpx.Response) -> tuple[int, str] | None:
    """The status code and summary of a reply, in whichever form it came; None if neither."""
    body = json_object(response)
    if body is not None:
        code = body.get("status", body.get("code"))
        summary = body.get("message", body.get("summary", body.get("error", "")))
        if isinstance(code, int | str) and str(code).lstrip("-").isdigit():
            return int(code), str(summary or "")
        return None
    found = _LB_CODE.fullmatch(response.text)
    if found is None:
        return None
    return int(found[1]), " ".join((found[2] or "").split())


# --- HoneyBook, through a Zapier catch hook ------------------------------------

# The simulator's stand-in for the secret catch-hook path.
HONEYBOOK_SANDBOX_PATH = "/hooks/catch/1000000/sandbox/"
_HB_FIELDS = frozenset({"project", "client"})


@attrs.frozen
class HoneyBookSettings:
    hook_url: SecretRef  # the Zap's "Catch Hook" URL; the URL is the secret


def _honeybook_body(raw: object) -> dict[str, Any]:
    payload = fields(raw, _HB_FIELDS)
    project, client = (optional_mapping(payload, key) for key in ("project", "client"))
    if project is None:
        raise InvalidPayload("'project' is required")
    if client is None:
        raise InvalidPayload("'client' is required")
    with _within("project"):
        required_str(project, "name", max_len=255, one_line=True)
    with _within("client"):
        required_str(client, "name", max_len=255, one_line=True)
        if _email(client, "email") is None:
            raise InvalidPayload("'email' is required")
    return {"project": project, "client": client}


@attrs.frozen
class HoneyBook:
    """``POST`` JSON to the Zap's catch hook; the Zap creates the HoneyBook project."""

    hook_url: Secret

    @classmethod
    def from_settings(cls, settings: HoneyBookSettings, ctx: AdapterContext) -> HoneyBook:
        return cls(secret_url(ctx, settings.hook_url, HONEYBOOK_SANDBOX_PATH))

    def validate(self, payload: Mapping[str, Any]) -> None:
        _honeybook_body(payload)

    def build(self, envelope: Envelope) -> HttpCall:
        body = _honeybook_body(envelope.payload)
        # Zapier catches every request it gets; the Zap dedups on this.
        body["idempotency_key"] = envelope.idempotency_key
        return HttpCall("POST", self.hook_url.reveal(), json=body)

    def classify(self, response: httpx.Response) -> Outcome:
        if response.is_success:
            return delivered_on_success(response, "id")  # Zapier's id for the catch
        if response.status_code == 410:
            words = "the catch hook is gone: its Zap was turned off or deleted"
            return Permanent(status_reason(response, words), status=410)
        # 429 waits Retry-After when Zapier sends one, else the retry policy's
        # backoff; 5xx may have been caught, so it is retried as ambiguous.
        return classify_status(response, detail(response, "status", "message"))


def _hook_url(settings: HoneyBookSettings, ctx: AdapterContext) -> str:
    """The adapter's own catch-hook URL: a Zapier hook has no read-only call."""
    return HoneyBook.from_settings(settings, ctx).hook_url.reveal()


KINDS: tuple[ProviderKind, ...] = (
    steps_kind("tave", "crm", TaveSettings, Tave.from_settings, probe=CONNECT_TO_BASE_URL),
    http_kind(
        "light_blue",
        "crm",
        LightBlueSettings,
        LightBlue.from_settings,
        probe=CONNECT_TO_BASE_URL,
    ),
    http_kind(
        "honeybook", "crm", HoneyBookSettings, HoneyBook.from_settings, probe=Connect(_hook_url)
    ),
)
