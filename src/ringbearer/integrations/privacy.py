"""The privacy family: asking Mixpanel and Amplitude to delete a person, batched (one a message).

An erasure sends each of these integrations one message per person, the
payload ``{"id": str}``: the person's Mixpanel ``distinct_id`` or Amplitude
``user_id`` (Mixpanel's at most 255 characters, Amplitude's 1024, as the
analytics rows take them). The actor gathers messages into batches
(``batch_size`` people or ``batch_wait_ms``); each provider sends a batch as
one deletion request, naming an id that several messages carry once, and
still answers one outcome per message. A batch is never built over
``batch_size`` ids: should more messages be handed over, those past it are
settled unsent as Retry(NO, MESSAGE, after=0), for the next batch.

Mixpanel's GDPR API (``POST {base_url}/data-deletions/v3.0/?token=<project
token>``, ``Authorization: Bearer <GDPR OAuth token>``). Hosts:
``https://mixpanel.com/api/app`` (US), ``https://eu.mixpanel.com/api/app``
(EU residency), ``https://in.mixpanel.com/api/app`` (India residency). The
body::

    {"distinct_ids": [str, ...] (<= 1999), "compliance_type": "GDPR" | "CCPA"}

Amplitude's User Privacy API (``POST {base_url}/api/2/deletions/users``, HTTP
Basic ``api_key:secret_key``). Hosts: ``https://amplitude.com``,
``https://analytics.eu.amplitude.com`` (EU residency). The body::

    {"user_ids": [str, ...] (<= 100), "requester": str,
     "ignore_invalid_id": true, "ignore_invalid_ids": true}

Amplitude's parameter table and its examples spell the flag differently, so
both go. Ignoring invalid ids matters: without it one id Amplitude never saw
(a person who was never tracked) refuses the whole request.

Both APIs allow one request a second, so a 429 waits at least a second.
Asking twice to delete a person is harmless, so any 5xx is retried as maybe
taken. How the answers map, the same outcome for every message of a request::

    Mixpanel                                      outcome
    200/201 {"status": "ok", "results":           Delivered(the task id, or the
      {"task_id"} or [{"tracking_id"}, ...]}      tracking ids joined by ",")
    2xx otherwise                                 Retry(taken=MAYBE): malformed
    400, 401, 403, other 4xx                      Permanent (Mixpanel's "error")
    429                                           Retry(taken=NO, after >= 1 s)
    5xx                                           Retry(taken=MAYBE)

    Amplitude                                     outcome
    200 {"day", ...}                              Delivered(the job's day)
    2xx otherwise                                 Retry(taken=MAYBE): malformed
    400, 401, other 4xx                           Permanent (Amplitude's "error")
    429                                           Retry(taken=NO, after >= 1 s)
    5xx                                           Retry(taken=MAYBE)

A reason never names a person: a provider's words are read from its
``error`` field alone (else the status's phrase), and every id of the
request found in them is replaced by ``[id]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote

import attrs
import httpx
from attrs import validators as v

from .._delivery import Delivered, Envelope, Outcome, Retry, Scope, Taken
from .._secrets import Secret, SecretRef
from ._base import (
    CONNECT_TO_BASE_URL,
    AdapterContext,
    BatchCall,
    BatchLimits,
    HttpCall,
    ProviderKind,
    basic_auth,
    batch_kind,
    bearer,
    classify_status,
    fields,
    json_object,
    malformed,
    parse_all,
    required_str,
    shorten,
)

MIXPANEL_MAX_IDS = 1999  # the API reference's cap (its guide says "up to 2000")
AMPLITUDE_MAX_IDS = 100
MIXPANEL_MAX_ID_LENGTH = 255  # as the analytics row takes a distinct_id
AMPLITUDE_MAX_ID_LENGTH = 1024  # as the analytics row takes a user_id
MIN_WAIT = 1.0  # seconds: both APIs allow one request a second
_BATCH_WAIT_MS = [v.instance_of(int), v.ge(0), v.le(60_000)]
_PAYLOAD_FIELDS = frozenset({"id"})
_ID_MARK = "[id]"


def _batch_size(most: int) -> list[Callable[[Any, Any, Any], Any]]:
    return [v.instance_of(int), v.ge(1), v.le(most)]


@attrs.frozen
class MixpanelDeletionSettings:
    """The project token (in the query string) and a GDPR OAuth token (it expires after a year)."""

    project_token: SecretRef
    oauth_token: SecretRef
    base_url: str = "https://mixpanel.com/api/app"
    compliance_type: Literal["GDPR", "CCPA"] = "GDPR"
    batch_size: int = attrs.field(default=MIXPANEL_MAX_IDS, validator=_batch_size(MIXPANEL_MAX_IDS))
    batch_wait_ms: int = attrs.field(default=1000, validator=_BATCH_WAIT_MS)


@attrs.frozen
class AmplitudeDeletionSettings:
    """The project's API key and secret key; ``requester`` is who asked, in Amplitude's record."""

    api_key: SecretRef
    secret_key: SecretRef
    base_url: str = "https://amplitude.com"
    requester: str = attrs.field(default="ringbearer", validator=[v.min_len(1), v.max_len(255)])
    batch_size: int = attrs.field(
        default=AMPLITUDE_MAX_IDS, validator=_batch_size(AMPLITUDE_MAX_IDS)
    )
    batch_wait_ms: int = attrs.field(default=1000, validator=_BATCH_WAIT_MS)


def person_id(payload: object, max_len: int) -> str:
    """The id of the person a message asks to delete; InvalidPayload naming the field if none."""
    return required_str(fields(payload, _PAYLOAD_FIELDS), "id", max_len=max_len)


@attrs.frozen
class DeletionApi:
    """What one provider's deletion API has of its own: where, how, and its receipt."""

    url: Secret  # Mixpanel's holds the project token
    authorization: Secret
    body: Callable[[list[str]], dict[str, Any]]
    receipt: Callable[[httpx.Response], Outcome]  # reads a 2xx
    max_id_length: int


@attrs.frozen
class Deletions:
    """A batching provider: one person a message, a batch's ids in one deletion request."""

    api: DeletionApi
    limits: BatchLimits

    def parse(self, payload: object) -> str:
        return person_id(payload, self.api.max_id_length)

    def validate(self, payload: Mapping[str, Any]) -> None:
        self.parse(payload)

    def build_batch(self, envelopes: Sequence[Envelope]) -> BatchCall:
        ready, settled = parse_all(envelopes, lambda env: self.parse(env.payload))
        send, held = _within(ready, self.limits.max_size)
        settled.update((env.id, _HELD) for env in held)
        if not send:
            return BatchCall(None, (), settled)
        headers = {"Authorization": self.api.authorization.reveal(), "Accept": "application/json"}
        body = self.api.body(list(dict.fromkeys(person for _, person in send)))
        call = HttpCall("POST", self.api.url.reveal(), headers=headers, json=body)
        return BatchCall(call, tuple(env for env, _ in send), settled)

    def classify_batch(self, sent: Sequence[Envelope], response: httpx.Response) -> list[Outcome]:
        if response.is_success:
            outcome = self.api.receipt(response)
        else:
            outcome = _refused(response, [str(env.payload.get("id", "")) for env in sent])
        return [outcome] * len(sent)


_HELD = Retry(
    "held back: the request already names as many people as it may",
    taken=Taken.NO,
    after=0.0,
    scope=Scope.MESSAGE,
)


def _within(
    ready: list[tuple[Envelope, str]], most: int
) -> tuple[list[tuple[Envelope, str]], list[Envelope]]:
    """The messages whose ids fit in one request of ``most`` ids, and those held back."""
    ids: set[str] = set()
    send: list[tuple[Envelope, str]] = []
    held: list[Envelope] = []
    for env, person in ready:
        if person in ids or len(ids) < most:
            ids.add(person)
            send.append((env, person))
        else:
            held.append(env)
    return send, held


def _refused(response: httpx.Response, ids: Iterable[str]) -> Outcome:
    """The default table on the provider's own words, scrubbed; a 429 waits a second at least."""
    words = scrubbed(_error_words(response), ids)
    outcome = classify_status(response, words, any_5xx_maybe_taken=True, wait_429=MIN_WAIT)
    if isinstance(outcome, Retry) and outcome.status == 429:
        return attrs.evolve(outcome, after=max(MIN_WAIT, outcome.after or 0.0))
    return outcome


def _error_words(response: httpx.Response) -> str:
    """The body's ``error`` (never the whole body, which may echo the ids), else the phrase."""
    error = (json_object(response) or {}).get("error")
    if isinstance(error, str) and error.strip():
        return shorten(error)
    return response.reason_phrase or "no detail"


def scrubbed(text: str, ids: Iterable[str]) -> str:
    """``text`` with every one of ``ids`` in it (any case) replaced by ``[id]``."""
    found = sorted({i for i in ids if i}, key=len, reverse=True)
    if not found:
        return text
    pattern = re.compile("|".join(map(re.escape, found)), re.IGNORECASE)
    return pattern.sub(_ID_MARK, text)


def _limits(batch_size: int, batch_wait_ms: int) -> BatchLimits:
    return BatchLimits(max_size=batch_size, max_wait=batch_wait_ms / 1000)


# --- Mixpanel ------------------------------------------------------------------------


def mixpanel_deletions(settings: MixpanelDeletionSettings, ctx: AdapterContext) -> Deletions:
    token = quote(ctx.secrets(settings.project_token).reveal(), safe="")
    url = f"{ctx.base_url(settings.base_url)}/data-deletions/v3.0/?token={token}"
    compliance = settings.compliance_type

    def body(ids: list[str]) -> dict[str, Any]:
        return {"distinct_ids": ids, "compliance_type": compliance}

    api = DeletionApi(
        url=Secret(url),
        authorization=Secret(bearer(ctx.secrets(settings.oauth_token))),
        body=body,
        receipt=_mixpanel_receipt,
        max_id_length=MIXPANEL_MAX_ID_LENGTH,
    )
    return Deletions(api, _limits(settings.batch_size, settings.batch_wait_ms))


def _mixpanel_receipt(response: httpx.Response) -> Outcome:
    body = json_object(response) or {}
    ids = _tracking_ids(body.get("results"))
    if body.get("status") != "ok" or not ids:
        expected = "status 'ok' and a task_id or tracking_ids in 'results'"
        return malformed(response, f"a JSON object with {expected}")
    return Delivered(provider_id=",".join(ids))


def _tracking_ids(results: object) -> list[str]:
    """``{"task_id"}`` (the API's spec) or ``[{"tracking_id"}, ...]`` (its reference page)."""
    if isinstance(results, dict):
        found = [results.get("task_id")]
    elif isinstance(results, list):
        found = [item.get("tracking_id") for item in results if isinstance(item, dict)]
    else:
        return []
    return [str(i) for i in found if _is_id(i)]


def _is_id(value: object) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, int) and not isinstance(value, bool)


# --- Amplitude -----------------------------------------------------------------------


def amplitude_deletions(settings: AmplitudeDeletionSettings, ctx: AdapterContext) -> Deletions:
    requester = settings.requester

    def body(ids: list[str]) -> dict[str, Any]:
        return {
            "user_ids": ids,
            "requester": requester,
            "ignore_invalid_id": True,
            "ignore_invalid_ids": True,
        }

    api_key = ctx.secrets(settings.api_key).reveal()
    api = DeletionApi(
        url=Secret(f"{ctx.base_url(settings.base_url)}/api/2/deletions/users"),
        authorization=Secret(basic_auth(api_key, ctx.secrets(settings.secret_key))),
        body=body,
        receipt=_amplitude_receipt,
        max_id_length=AMPLITUDE_MAX_ID_LENGTH,
    )
    return Deletions(api, _limits(settings.batch_size, settings.batch_wait_ms))


def _amplitude_receipt(response: httpx.Response) -> Outcome:
    day = (json_object(response) or {}).get("day")
    if not isinstance(day, str) or not day.strip():
        return malformed(response, "a JSON object with the job's 'day'")
    return Delivered(provider_id=day)


KINDS: tuple[ProviderKind, ...] = (
    batch_kind(
        "mixpanel_deletion",
        "privacy",
        MixpanelDeletionSettings,
        mixpanel_deletions,
        probe=CONNECT_TO_BASE_URL,
    ),
    batch_kind(
        "amplitude_deletion",
        "privacy",
        AmplitudeDeletionSettings,
        amplitude_deletions,
        probe=CONNECT_TO_BASE_URL,
    ),
)
