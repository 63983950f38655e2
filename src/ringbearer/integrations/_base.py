"""The seam between an integration actor and a provider.

An :class:`Adapter` checks payloads and opens :class:`Lane` s; a lane turns one
:class:`~ringbearer._delivery.Envelope` into one Outcome and never raises for
a provider's or the network's failure, only for a programming error.

Every HTTP provider shares :class:`HttpAdapter`. A provider supplies one of
three shapes and nothing else; the adapter owns the lane's connection and
translates httpx's exceptions where they enter:

* :class:`HttpProvider` — one request a message: check a payload, describe
  the request as an :class:`HttpCall`, classify the response
  (:func:`http_kind`);
* :class:`StepProvider` — several requests a message (create, then publish):
  each step's result is saved with the message before the next step starts,
  so a retry or a restart resumes after the last completed step
  (:func:`steps_kind`);
* :class:`BatchProvider` — many messages a request (analytics imports): the
  actor gathers up to ``max_size`` messages or ``max_wait`` seconds, and the
  provider still answers one outcome per message (:func:`batch_kind`).

The translation of httpx's exceptions::

    httpx exception                                     outcome
    ConnectError, ConnectTimeout, PoolTimeout,          Retry(taken=NO)     the request never
      WriteError, WriteTimeout, ProxyError,                                 got through whole
      UnsupportedProtocol, LocalProtocolError,
      InvalidURL
    ReadTimeout, ReadError, RemoteProtocolError         Retry(taken=MAYBE)  sent; the answer
      and any other transport error                                         was lost
    DecodingError                                       Retry(taken=MAYBE)  malformed answer
    (no answer within the context's timeout)            Retry(taken=MAYBE)

The response helpers below (wait hints, a safe JSON reader, the default
status table), the payload field readers and :func:`conforming_id` (a
provider's id from an idempotency key) are what providers build on.

Each row of the table also carries its preflight probe, a description that
preflight runs without sending anything: a :class:`ReadOnly` request built
as the adapter builds its own (base URL, credentials), a :class:`Connect`
to the adapter's host where the provider offers no read-only call, or a
blocking check :class:`InThread` (SMTP). Each comes to a :class:`Finding`.
"""

from __future__ import annotations

import base64
import email.utils
import enum
import functools
import hashlib
import math
import re
import ssl
import time
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, TypeVar

import attrs
import httpx
import trio

from .._delivery import Delivered, Envelope, Outcome, Permanent, Retry, Taken
from .._errors import InvalidPayload
from .._secrets import REDACTED, Secret, SecretRef

USER_AGENT = "ringbearer"
DETAIL_MAX = 300  # characters of a provider's own words kept in a reason

S = TypeVar("S")


# --- the seam ----------------------------------------------------------------


class Lane(Protocol):
    """One delivery task's connection state; delivers one envelope at a time."""

    async def deliver(self, envelope: Envelope) -> Outcome: ...


class BatchingLane(Lane, Protocol):
    """The lane of a batching adapter (``Adapter.batching`` set): one outcome per envelope."""

    async def deliver_batch(self, envelopes: Sequence[Envelope]) -> list[Outcome]: ...


@attrs.frozen
class BatchLimits:
    """How an actor gathers a batch: up to ``max_size`` messages or ``max_wait`` seconds.

    An envelope for which ``alone`` is true is never gathered with others: it
    goes as a batch of one (e.g. a retry, where the provider de-duplicates per
    request and the earlier batch cannot be repeated as it was).
    """

    max_size: int
    max_wait: float
    alone: Callable[[Envelope], bool] = attrs.field(default=lambda envelope: False, eq=False)


class Adapter(Protocol):
    """A configured integration: checks payloads and opens lanes."""

    @property
    def kind(self) -> str: ...

    @property
    def batching(self) -> BatchLimits | None:
        """Set when the provider takes many messages a request."""

    def validate(self, payload: Mapping[str, Any]) -> None:
        """Raise InvalidPayload, naming the field, when the payload does not fit."""

    def open_lane(self) -> AbstractAsyncContextManager[Lane]: ...


Checkpoint = Callable[[int, Mapping[str, Any]], Awaitable[None]]


async def _no_checkpoint(message_id: int, progress: Mapping[str, Any]) -> None:
    return None


def _no_webhook_url() -> str | None:
    return None


@attrs.frozen
class AdapterContext:
    """What the daemon hands every adapter it builds."""

    name: str
    timeout: float  # seconds, whole request
    ssl_context: ssl.SSLContext  # one context shared by every lane of every integration
    secrets: Callable[[SecretRef], Secret]
    base_url_override: str | None = None  # sandbox: the simulator's prefix for this kind
    smtp_override: tuple[str, int] | None = None  # sandbox SMTP host and port
    transport: httpx.AsyncBaseTransport | None = None  # tests: httpx.MockTransport
    # Saves a multi-step message's progress with the message, durably, before
    # the next step starts (the store's ``save_progress``).
    checkpoint: Checkpoint = _no_checkpoint
    # The public URL of this integration's webhook on the daemon's listener
    # (``<public_url>/webhooks/<name>``), or None without one. Late-bound: the
    # listener may bind port 0 after the adapters are built.
    webhook_url: Callable[[], str | None] = _no_webhook_url

    def base_url(self, default: str) -> str:
        """The sandbox prefix when there is one, else the provider's own base URL."""
        return (self.base_url_override or default).rstrip("/")


@attrs.frozen
class ProviderKind:
    """One row of the provider table."""

    kind: str
    settings_type: type  # frozen attrs class of the provider's own config keys
    build: Callable[[Any, AdapterContext], Adapter]
    family: str  # "email" | "alerts" | ...
    probe: Probe | None = None  # preflight's check; None: not checked (a test's fake row)


# --- preflight probes: what each row lets preflight check, sending nothing -------


class Verdict(enum.Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"  # not run, because an earlier step failed


@attrs.frozen
class Finding:
    """What one check found, in one line that holds no secret."""

    verdict: Verdict
    reason: str


@attrs.frozen
class ReadOnly:
    """A request that reads and changes nothing, made as the adapter makes its own.

    ``call`` builds it from the settings and the context (the adapter's base
    URL and credentials); ``read`` judges the answer.
    """

    call: Callable[[Any, AdapterContext], HttpCall]
    read: Callable[[Any, httpx.Response], Finding]


@attrs.frozen
class Connect:
    """No read-only call: a TCP connection to the URL's host (and TLS for https)."""

    url: Callable[[Any, AdapterContext], str]


@attrs.frozen
class InThread:
    """A blocking check run on a worker thread, bounded by its own socket timeout."""

    check: Callable[[Any, AdapterContext], Finding]


Probe = ReadOnly | Connect | InThread


def _base_url(settings: Any, ctx: AdapterContext) -> str:
    return ctx.base_url(settings.base_url)


# The adapter's own base URL (the sandbox prefix there): for rows with a ``base_url``.
CONNECT_TO_BASE_URL = Connect(_base_url)


def refused(response: httpx.Response, words: str) -> Finding:
    """The common reading of a failed read-only request."""
    status = response.status_code
    if status in (401, 403):
        return Finding(Verdict.FAIL, f"credentials refused (HTTP {status}: {words})")
    if status == 429:
        return Finding(Verdict.WARN, f"rate limited (HTTP 429: {words}); credentials unchecked")
    return Finding(Verdict.FAIL, f"HTTP {status}: {words}")


# --- secrets -----------------------------------------------------------------


@attrs.frozen
class Redactor:
    """Scrubs secret values out of outcome reasons: a provider may echo them back."""

    secrets: tuple[Secret, ...] = ()

    def text(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret.reveal(), REDACTED)
        return text

    def outcome(self, outcome: Outcome) -> Outcome:
        match outcome:
            case Retry() | Permanent():
                return attrs.evolve(outcome, reason=self.text(outcome.reason))
        return outcome


@attrs.define
class SecretLedger:
    """Resolves references and remembers each value, so the lanes can scrub them."""

    resolve: Callable[[SecretRef], Secret]
    seen: list[Secret] = attrs.Factory(list)

    def __call__(self, ref: SecretRef) -> Secret:
        secret = self.resolve(ref)
        self.seen.append(secret)
        return secret

    def redactor(self) -> Redactor:
        return Redactor(tuple(self.seen))


def bearer(token: Secret) -> str:
    """An ``Authorization`` value for a bearer token."""
    return f"Bearer {token.reveal()}"


def basic_auth(user: str, password: Secret) -> str:
    """An ``Authorization`` value for HTTP Basic."""
    pair = f"{user}:{password.reveal()}".encode()
    return f"Basic {base64.b64encode(pair).decode('ascii')}"


def secret_url(ctx: AdapterContext, url: SecretRef, sandbox_path: str) -> Secret:
    """A URL that is the secret itself (a webhook); in the sandbox, a stand-in path."""
    if ctx.base_url_override is not None:
        return Secret(ctx.base_url("") + sandbox_path)
    return ctx.secrets(url)


# --- HTTP providers ----------------------------------------------------------


@attrs.frozen
class HttpCall:
    """The request a provider wants sent; every part that may hold a secret stays out of repr."""

    method: str
    url: str = attrs.field(repr=False)
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    json: Any = attrs.field(default=None, repr=False)
    form: Mapping[str, str | Sequence[str]] | None = attrs.field(default=None, repr=False)

    def request(self, connection: Connection) -> httpx.Request:
        return httpx.Request(
            self.method,
            _parsed_url(self.url),
            headers={**DEFAULT_HEADERS, **self.headers},
            json=self.json,
            data=self.form,
            extensions={"timeout": connection.timeout},
        )


@functools.lru_cache(maxsize=256)
def _parsed_url(url: str) -> httpx.URL:
    """Each provider posts to a handful of fixed URLs: parse each once, not per request."""
    return httpx.URL(url)


class HttpProvider(Protocol):
    """What one HTTP provider knows: its payload, its request, its answers."""

    def validate(self, payload: Mapping[str, Any]) -> None: ...

    def build(self, envelope: Envelope) -> HttpCall:
        """Describe the request; may raise InvalidPayload for a payload that no longer fits."""

    def classify(self, response: httpx.Response) -> Outcome: ...


class StepProvider(Protocol):
    """A provider that needs several requests for one message.

    ``progress`` is what earlier steps saved (empty at first). ``next_call``
    describes the next request; ``after_call`` reads its answer and either
    ends the attempt with an Outcome (Delivered once the last step is done)
    or returns the new progress, which the lane saves with the message
    before it starts the next step.
    """

    def validate(self, payload: Mapping[str, Any]) -> None: ...

    def next_call(self, envelope: Envelope, progress: Mapping[str, Any]) -> HttpCall: ...

    def after_call(
        self, envelope: Envelope, progress: Mapping[str, Any], response: httpx.Response
    ) -> Outcome | Mapping[str, Any]: ...


@attrs.frozen
class BatchCall:
    """One batch request, and the messages settled without sending."""

    call: HttpCall | None  # None when nothing is left to send
    sent: tuple[Envelope, ...]  # the envelopes the request carries, in its order
    settled: Mapping[int, Outcome] = attrs.field(factory=dict)  # envelope id -> outcome


class BatchProvider(Protocol):
    """A provider that takes many messages in one request."""

    @property
    def limits(self) -> BatchLimits: ...

    def validate(self, payload: Mapping[str, Any]) -> None: ...

    def build_batch(self, envelopes: Sequence[Envelope]) -> BatchCall: ...

    def classify_batch(self, sent: Sequence[Envelope], response: httpx.Response) -> list[Outcome]:
        """One outcome per envelope of ``sent``, in order."""


_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


def translate(exc: httpx.HTTPError) -> Retry:
    """Classify an httpx failure by whether the provider may have taken the request."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, _NOT_SENT):
        return Retry(f"not sent: {detail}", taken=Taken.NO)
    if isinstance(exc, httpx.DecodingError):
        return Retry(f"malformed answer: {detail}", taken=Taken.MAYBE)
    # ReadTimeout, ReadError, RemoteProtocolError and anything unforeseen: the
    # request may have been read whole, so we cannot say it was not taken.
    return Retry(f"no answer: {detail}", taken=Taken.MAYBE)


# What httpx.AsyncClient would add to every request; the User-Agent is ours.
DEFAULT_HEADERS = {
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
    "Connection": "keep-alive",
    "User-Agent": USER_AGENT,
}


@attrs.frozen
class Connection:
    """A lane's way to its provider: an httpx transport holding at most one connection.

    Requests go straight to the transport, not through an ``httpx.AsyncClient``:
    the client's auth, redirect, cookie and event-hook layers do nothing for
    requests that carry their own credentials and never follow redirects, yet
    cost about a sixth of each request's CPU (a bare loop of 64 lanes on this
    project's 2-core machine: 1,609 requests/s through clients, 1,900 through
    their transports), and every CPU millisecond here is latency for the lanes
    waiting on the one event loop. A response is read whole and closed before
    it is classified, so its connection goes back to the pool at once.
    """

    transport: httpx.AsyncBaseTransport
    timeout: Mapping[str, float | None]  # httpx's per-request timeout extension

    async def send(self, request: httpx.Request) -> httpx.Response:
        response = await self.transport.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response


@attrs.frozen
class _Exchange:
    """Sends one HttpCall on a lane's connection and hands the answer to a reader."""

    connection: Connection
    timeout: float

    async def __call__(self, call: HttpCall, read: Callable[[httpx.Response], S]) -> S | Retry:
        try:
            request = call.request(self.connection)
        except httpx.InvalidURL:
            # The message would name the URL, which may be the secret itself.
            return Retry("not sent: the configured URL is invalid", taken=Taken.NO)
        with trio.move_on_after(self.timeout):
            try:
                response = await self.connection.send(request)
            except httpx.HTTPError as exc:
                return translate(exc)
            return read(response)
        return Retry(f"no answer within {self.timeout:g}s", taken=Taken.MAYBE)


@attrs.frozen
class HttpLane:
    """One lane of an HTTP adapter: its own connection, one request at a time."""

    connection: Connection
    provider: HttpProvider
    timeout: float
    redactor: Redactor

    async def deliver(self, envelope: Envelope) -> Outcome:
        return self.redactor.outcome(await self._attempt(envelope))

    async def _attempt(self, envelope: Envelope) -> Outcome:
        try:
            call = self.provider.build(envelope)
        except InvalidPayload as exc:
            return Permanent(f"invalid payload: {exc.message}")
        return await _Exchange(self.connection, self.timeout)(call, self.provider.classify)


@attrs.frozen
class StepLane:
    """A lane that walks a message through its steps, saving each one's result."""

    connection: Connection
    provider: StepProvider
    timeout: float
    redactor: Redactor
    checkpoint: Checkpoint
    max_steps: int = 16  # a provider that never finishes is a programming error

    async def deliver(self, envelope: Envelope) -> Outcome:
        return self.redactor.outcome(await self._attempt(envelope))

    async def _attempt(self, envelope: Envelope) -> Outcome:
        exchange = _Exchange(self.connection, self.timeout)
        progress: Mapping[str, Any] = dict(envelope.progress)
        for _ in range(self.max_steps):
            try:
                call = self.provider.next_call(envelope, progress)
            except InvalidPayload as exc:
                return Permanent(f"invalid payload: {exc.message}")
            answer = await exchange(
                call, functools.partial(self.provider.after_call, envelope, progress)
            )
            if isinstance(answer, Delivered | Retry | Permanent):
                return answer
            progress = dict(answer)
            await self.checkpoint(envelope.id, progress)
        raise RuntimeError(f"{type(self.provider).__name__} took over {self.max_steps} steps")


@attrs.frozen
class BatchLane:
    """A lane that sends many messages in one request and answers for each."""

    connection: Connection
    provider: BatchProvider
    timeout: float
    redactor: Redactor

    async def deliver(self, envelope: Envelope) -> Outcome:
        (outcome,) = await self.deliver_batch([envelope])
        return outcome

    async def deliver_batch(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        batch = self.provider.build_batch(envelopes)
        answers: dict[int, Outcome] = dict(batch.settled)
        if batch.call is not None and batch.sent:
            exchange = _Exchange(self.connection, self.timeout)
            sent = batch.sent
            result = await exchange(
                batch.call, functools.partial(self.provider.classify_batch, sent)
            )
            outcomes = [result] * len(sent) if isinstance(result, Retry) else result
            if len(outcomes) != len(sent):
                raise RuntimeError(
                    f"{type(self.provider).__name__} answered {len(outcomes)} outcomes "
                    f"for {len(sent)} messages"
                )
            answers.update((env.id, outcome) for env, outcome in zip(sent, outcomes, strict=True))
        missing = [env.id for env in envelopes if env.id not in answers]
        if missing:
            raise RuntimeError(f"{type(self.provider).__name__} left {missing} unanswered")
        return [self.redactor.outcome(answers[env.id]) for env in envelopes]


LaneFactory = Callable[[Connection, "HttpAdapter"], Lane]


@attrs.frozen
class HttpAdapter:
    """The one adapter every HTTP provider shares; ``make_lane`` picks the provider's shape."""

    kind: str
    provider: HttpProvider | StepProvider | BatchProvider
    context: AdapterContext
    redactor: Redactor = attrs.field(factory=Redactor)
    make_lane: LaneFactory = attrs.field(
        default=lambda connection, adapter: HttpLane(
            connection, adapter.provider, adapter.context.timeout, adapter.redactor
        )
    )
    batching: BatchLimits | None = None

    def validate(self, payload: Mapping[str, Any]) -> None:
        self.provider.validate(payload)

    @asynccontextmanager
    async def open_lane(self) -> AsyncIterator[Lane]:
        ctx = self.context
        # Connect gets half the budget, so a dead host is reported as not sent
        # (ConnectTimeout) before the whole-request deadline makes it ambiguous.
        timeout = httpx.Timeout(ctx.timeout, connect=ctx.timeout / 2).as_dict()
        if ctx.transport is not None:  # a test's fake, shared and closed by the test
            yield self.make_lane(Connection(ctx.transport, timeout), self)
            return
        async with new_transport(ctx.ssl_context) as transport:
            yield self.make_lane(Connection(transport, timeout), self)


def new_transport(ssl_context: ssl.SSLContext) -> httpx.AsyncBaseTransport:
    """A lane's own transport: one kept-alive connection, no proxies from the environment."""
    return httpx.AsyncHTTPTransport(
        verify=ssl_context,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        trust_env=False,
    )


def _kind(
    kind: str,
    family: str,
    settings_type: type[S],
    provider: Callable[[S, AdapterContext], Any],
    adapter: Callable[[Any, AdapterContext, Redactor], HttpAdapter],
    probe: Probe | None,
) -> ProviderKind:
    def build(settings: Any, ctx: AdapterContext) -> Adapter:
        ledger = SecretLedger(ctx.secrets)
        made = provider(settings, attrs.evolve(ctx, secrets=ledger))
        return adapter(made, ctx, ledger.redactor())

    return ProviderKind(
        kind=kind, settings_type=settings_type, build=build, family=family, probe=probe
    )


def http_kind(
    kind: str,
    family: str,
    settings_type: type[S],
    provider: Callable[[S, AdapterContext], HttpProvider],
    *,
    probe: Probe | None = None,
) -> ProviderKind:
    """A table row for a one-request provider: ``provider`` makes it from settings and context."""
    return _kind(
        kind,
        family,
        settings_type,
        provider,
        lambda made, ctx, r: HttpAdapter(kind, made, ctx, r),
        probe,
    )


def steps_kind(
    kind: str,
    family: str,
    settings_type: type[S],
    provider: Callable[[S, AdapterContext], StepProvider],
    *,
    probe: Probe | None = None,
) -> ProviderKind:
    """A table row for a multi-step provider (see :class:`StepProvider`)."""

    def lane(connection: Connection, adapter: HttpAdapter) -> Lane:
        ctx = adapter.context
        return StepLane(connection, adapter.provider, ctx.timeout, adapter.redactor, ctx.checkpoint)  # type: ignore[arg-type]

    return _kind(
        kind,
        family,
        settings_type,
        provider,
        lambda made, ctx, r: HttpAdapter(kind, made, ctx, r, make_lane=lane),
        probe,
    )


def batch_kind(
    kind: str,
    family: str,
    settings_type: type[S],
    provider: Callable[[S, AdapterContext], BatchProvider],
    *,
    probe: Probe | None = None,
) -> ProviderKind:
    """A table row for a batching provider (see :class:`BatchProvider`)."""

    def lane(connection: Connection, adapter: HttpAdapter) -> Lane:
        return BatchLane(connection, adapter.provider, adapter.context.timeout, adapter.redactor)  # type: ignore[arg-type]

    return _kind(
        kind,
        family,
        settings_type,
        provider,
        lambda made, ctx, r: HttpAdapter(kind, made, ctx, r, make_lane=lane, batching=made.limits),
        probe,
    )


# --- provider ids from idempotency keys ---------------------------------------


def _digest(key: str) -> str:
    """A stable 32-character hex digest of a key."""
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def conforming_id(
    key: str,
    fits: Callable[[str], bool] | re.Pattern[str],
    digest: Callable[[str], str] = _digest,
) -> str:
    """The key as the provider's id when it fits the provider's rule, else ``digest(key)``.

    Both are functions of the key alone, so every retry of a message carries
    the id its first attempt did, and the provider can deduplicate on it.
    """
    fitting = fits.fullmatch(key) is not None if isinstance(fits, re.Pattern) else fits(key)
    return key if fitting else digest(key)


# --- reading answers ---------------------------------------------------------


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one (or not labelled JSON)."""
    if "json" not in response.headers.get("content-type", "").lower():
        return None
    try:
        body = response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None
    return body if isinstance(body, dict) else None


def malformed(response: httpx.Response, expected: str) -> Retry:
    """A 2xx whose body is not what the provider documents: it may have taken the message."""
    return Retry(
        f"malformed answer to HTTP {response.status_code}: expected {expected}",
        taken=Taken.MAYBE,
        status=response.status_code,
    )


def delivered_on_success(response: httpx.Response, field: str) -> Outcome:
    """Delivered with ``field`` as the id when a JSON object's status is 'success'."""
    body = json_object(response) or {}
    value = body.get(field)
    if body.get("status") != "success" or not isinstance(value, str) or not value:
        article = "an" if field[0] in "aeiou" else "a"
        return malformed(response, f"a JSON object with status 'success' and {article} {field!r}")
    return Delivered(provider_id=value)


def delivered_with(response: httpx.Response, field: str) -> Outcome:
    """Delivered with the provider's id from a JSON object's ``field``, else malformed."""
    body = json_object(response)
    value = body.get(field) if body is not None else None
    if not isinstance(value, str) or not value:
        return malformed(response, f"a JSON object with a string {field!r}")
    return Delivered(provider_id=value)


def shorten(text: str, limit: int = DETAIL_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def detail(response: httpx.Response, *keys: str) -> str:
    """The provider's own words about a failure: the named JSON fields, else the body."""
    body = json_object(response) or {}
    parts = [_words(body.get(key)) for key in keys]
    text = ": ".join(part for part in parts if part) or response.text
    return shorten(text) or response.reason_phrase or "no detail"


def _words(value: object) -> str:
    if isinstance(value, list):
        return "; ".join(str(item) for item in value)
    return "" if value is None else str(value)


def status_reason(response: httpx.Response, words: str) -> str:
    return f"HTTP {response.status_code}: {words}"


def server_time(headers: httpx.Headers) -> float:
    """The server's clock from its ``Date`` header (immune to our skew), else ours."""
    stamp = _http_date(headers.get("date"))
    return stamp if stamp is not None else time.time()


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp()


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def retry_after(headers: httpx.Headers) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP-date."""
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _seconds(value.strip())
    if seconds is not None:
        return seconds
    stamp = _http_date(value)
    return None if stamp is None else max(0.0, stamp - server_time(headers))


_RATELIMIT_T = re.compile(r";\s*t=(\d+)")


def ratelimit_reset(headers: httpx.Headers) -> float | None:
    """Seconds until the window resets, from IETF ``RateLimit-Reset`` or ``RateLimit: ...;t=``."""
    seconds = _seconds(headers.get("ratelimit-reset"))
    if seconds is not None:
        return seconds
    found = _RATELIMIT_T.search(headers.get("ratelimit", ""))
    return float(found.group(1)) if found else None


def epoch_reset(headers: httpx.Headers, name: str) -> float | None:
    """Seconds until the epoch timestamp in header ``name`` (e.g. ``x-rate-limit-reset``)."""
    at = _seconds(headers.get(name))
    return None if at is None else max(0.0, at - server_time(headers))


def wait_hint(headers: httpx.Headers) -> float | None:
    """The wait a provider asked for, by the standard headers, if it asked."""
    after = retry_after(headers)
    return after if after is not None else ratelimit_reset(headers)


def classify_status(
    response: httpx.Response,
    words: str,
    *,
    any_5xx_maybe_taken: bool = False,
    wait_429: float | None = None,
) -> Outcome:
    """The default table: 2xx delivered; 408/429/503 retry (not taken); other 5xx retry
    (maybe taken); other 4xx permanent; a redirect permanent (see :func:`redirected`).

    ``any_5xx_maybe_taken``: the provider does not say a 503 was refused
    before the work was done, so every 5xx is retried as maybe taken (a group
    then does not fail over on it, which would double a message the provider
    may have taken).

    ``wait_429``: the wait a provider documents for a 429 that carries no
    header saying how long (else the retry policy's own backoff applies).
    """
    status = response.status_code
    reason = status_reason(response, words)
    if 200 <= status < 300:
        return Delivered()
    if status in (408, 429) or (status == 503 and not any_5xx_maybe_taken):
        after = wait_hint(response.headers)
        if after is None and status == 429:
            after = wait_429
        return Retry(reason, taken=Taken.NO, after=after, status=status)
    if status >= 500:
        return Retry(reason, taken=Taken.MAYBE, after=wait_hint(response.headers), status=status)
    if status >= 400:
        return Permanent(reason, status=status)
    return redirected(response)


def redirected(response: httpx.Response) -> Permanent:
    """A 3xx: the configured URL is not where the provider's API lives.

    Redirects are not followed (a POST would be replayed with its credentials
    to a host nobody configured), and retrying the same URL meets the same
    redirect until the message is exhausted: only the operator can fix it.
    """
    location = response.headers.get("location")
    to = f" to {shorten(location, 200)}" if location else ""
    words = f"the provider redirects{to}; check the integration's configured base URL"
    return Permanent(status_reason(response, words), status=response.status_code)


# --- reading payloads --------------------------------------------------------

E164 = re.compile(r"\+[1-9][0-9]{1,14}")  # a phone number as +<country><number>, <= 15 digits


def parse_all(
    envelopes: Sequence[Envelope], parse: Callable[[Envelope], S]
) -> tuple[list[tuple[Envelope, S]], dict[int, Outcome]]:
    """Each envelope of a batch with its checked payload; those that no longer fit, settled."""
    ready: list[tuple[Envelope, S]] = []
    settled: dict[int, Outcome] = {}
    for envelope in envelopes:
        try:
            ready.append((envelope, parse(envelope)))
        except InvalidPayload as exc:
            settled[envelope.id] = Permanent(f"invalid payload: {exc.message}")
    return ready, settled


def fields(payload: object, allowed: Collection[str]) -> Mapping[str, Any]:
    """The payload as a mapping whose keys are all in ``allowed``."""
    if not isinstance(payload, Mapping):
        raise InvalidPayload(f"the payload must be a JSON object, got {_kind_of(payload)}")
    unknown = sorted(str(key) for key in payload if key not in allowed)
    if unknown:
        raise InvalidPayload(
            f"unknown field(s) {', '.join(map(repr, unknown))}; "
            f"expected some of {', '.join(sorted(allowed))}"
        )
    return payload


def _kind_of(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")


def check_text(key: str, value: object, *, max_len: int | None, one_line: bool) -> str:
    """A string field: non-empty, within ``max_len``, and on one line if it becomes a header."""
    if not isinstance(value, str):
        raise InvalidPayload(f"{key!r} must be a string, got {_kind_of(value)}")
    if not value.strip():
        raise InvalidPayload(f"{key!r} must not be empty")
    if max_len is not None and len(value) > max_len:
        raise InvalidPayload(f"{key!r} is {len(value)} characters long, at most {max_len}")
    if one_line and (found := _NOT_IN_ONE_LINE.search(value)):
        what = "line breaks" if found[0] in LINE_BOUNDARIES else "control characters"
        raise InvalidPayload(f"{key!r} must not contain {what}: {describe_char(found[0])} found")
    return value


# Every line boundary ``str.splitlines`` knows: the email package (and others) split on
# each of them, so any of them in a header starts a new header.
LINE_BOUNDARIES = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
# What a one-line field (a header, a subject, a name, a number) may not hold: those, and
# every C0 control character (NUL, ESC, TAB, ...) and DEL.
_NOT_IN_ONE_LINE = re.compile(f"[\x00-\x1f\x7f{LINE_BOUNDARIES}]")
_CHAR_NAMES = {  # those unicodedata has no name for, that an error may well meet
    "\x00": "NUL",
    "\t": "CHARACTER TABULATION",
    "\n": "LINE FEED",
    "\v": "LINE TABULATION",
    "\f": "FORM FEED",
    "\r": "CARRIAGE RETURN",
    "\x1b": "ESCAPE",
    "\x1c": "FILE SEPARATOR",
    "\x1d": "GROUP SEPARATOR",
    "\x1e": "RECORD SEPARATOR",
    "\x7f": "DELETE",
    "\x85": "NEXT LINE",
}


def describe_char(char: str) -> str:
    """``U+2028 LINE SEPARATOR``: a character named for an error message."""
    name = _CHAR_NAMES.get(char) or unicodedata.name(char, "")
    if not name and 0xD800 <= ord(char) <= 0xDFFF:
        name = "(a lone surrogate)"
    return f"U+{ord(char):04X} {name}".rstrip()


def required_str(
    payload: Mapping[str, Any], key: str, *, max_len: int | None = None, one_line: bool = False
) -> str:
    if key not in payload:
        raise InvalidPayload(f"{key!r} is required")
    return check_text(key, payload[key], max_len=max_len, one_line=one_line)


def optional_str(
    payload: Mapping[str, Any], key: str, *, max_len: int | None = None, one_line: bool = False
) -> str | None:
    if payload.get(key) is None:
        return None
    return check_text(key, payload[key], max_len=max_len, one_line=one_line)


def choice(payload: Mapping[str, Any], key: str, choices: Sequence[str], default: str) -> str:
    value = payload.get(key, default)
    if value not in choices:
        raise InvalidPayload(f"{key!r} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def optional_mapping(payload: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidPayload(f"{key!r} must be an object, got {_kind_of(value)}")
    return value


def optional_list(payload: Mapping[str, Any], key: str) -> list[Any] | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidPayload(f"{key!r} must be a list, got {_kind_of(value)}")
    return value
