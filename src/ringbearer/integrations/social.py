"""The social family: a Facebook Page's feed, Instagram, LinkedIn posts and X.

A post is written for one network, so each provider reads its own payload::

    facebook_page  {"message": str (<= 63206), "link"?: http(s) URL}
    instagram      {"image_url": http(s) URL, "caption"?: str (<= 2200), "alt_text"?: str}
    linkedin       {"text": str (<= 3000), "visibility"?: "PUBLIC" | "CONNECTIONS"}
    x              {"text": str (<= 280 weighted, see _x_length), "reply_to"?: a post id}

None of the four has an idempotency key: a request that timed out may have
posted, and so may one that LinkedIn or X answered with any 5xx, a 503 too
(a group must not fail over and post a second copy elsewhere). Three refuse
the same text twice in a row (Facebook 506, LinkedIn 422 ``DUPLICATE_POST``,
X 403 "duplicate content"), and that refusal is the only record of an
earlier success we can get: after an earlier attempt of the same message it
means our own post went through (:func:`_duplicate`).
Because reading those answers needs the envelope, which
:class:`~._base.HttpProvider` does not pass to ``classify``, the three are
one-step :class:`~._base.StepProvider` s (:class:`_OneStep`). Instagram
publishes in two steps and keeps its media container between attempts.

LinkedIn and X (``auth = "oauth2"``) take either a static ``access_token``
or a ``refresh_token`` with the OAuth 2.0 client (``client_id``,
``client_secret``, ``token_url``). With a refresh token the access token
expires and a :class:`~._oauth2.TokenKeeper` keeps it fresh: the daemon
builds one per integration from :func:`refresh_grant` and hands the
providers a lookup through :func:`kinds`. A provider then sends the keeper's
current token, and a 401 is retried after the keeper refreshes (at most once
in a row, see :meth:`~._oauth2.TokenKeeper.reject`) instead of failing for
good.
"""

from __future__ import annotations

import enum
import re
import secrets
import time
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import urlencode, urlsplit

import attrs
import httpx
from attrs import validators as v

from .._delivery import Delivered, Envelope, Outcome, Permanent, Retry, Taken
from .._errors import InvalidPayload
from .._secrets import Secret, SecretRef
from . import _graph, _oauth1
from ._base import (
    CONNECT_TO_BASE_URL,
    AdapterContext,
    Finding,
    HttpCall,
    ProviderKind,
    ReadOnly,
    StepProvider,
    Verdict,
    bearer,
    check_text,
    choice,
    classify_status,
    delivered_with,
    detail,
    epoch_reset,
    fields,
    json_object,
    malformed,
    optional_str,
    refused,
    required_str,
    retry_after,
    server_time,
    status_reason,
    steps_kind,
)
from ._graph import THROTTLING, GraphError
from ._oauth2 import ClientAuth, RefreshGrant, TokenSource

S = TypeVar("S")
FAMILY = "social"


# --- shared by the one-request providers ---------------------------------------


class _Attempted(Protocol):
    """A one-request provider whose reading of an answer depends on the message."""

    def validate(self, payload: Mapping[str, Any]) -> None: ...

    def build(self, envelope: Envelope) -> HttpCall: ...

    def classify(self, envelope: Envelope, response: httpx.Response) -> Outcome: ...


@attrs.frozen
class _OneStep:
    """An :class:`_Attempted` provider on the step seam: one step, no progress saved."""

    provider: _Attempted

    def validate(self, payload: Mapping[str, Any]) -> None:
        self.provider.validate(payload)

    def next_call(self, envelope: Envelope, progress: Mapping[str, Any]) -> HttpCall:
        return self.provider.build(envelope)

    def after_call(
        self, envelope: Envelope, progress: Mapping[str, Any], response: httpx.Response
    ) -> Outcome:
        return self.provider.classify(envelope, response)


def _one_step(
    make: Callable[[S, AdapterContext], _Attempted],
) -> Callable[[S, AdapterContext], StepProvider]:
    return lambda settings, ctx: _OneStep(make(settings, ctx))


def _duplicate(
    envelope: Envelope, response: httpx.Response, reason: str, provider_id: str | None = None
) -> Outcome:
    """A refusal to post the same content twice in a row.

    On a first attempt it is the caller's duplicate: permanent. After an
    earlier attempt it is our own: that attempt ended without an answer (or
    with one we could not trust) yet posted, and the provider, which has no
    idempotency key, is telling us so. Any earlier attempt counts, not only
    an ambiguous one: an attempt refused outright posted nothing, so the
    duplicate it would mean is a post the caller made a moment before with
    the same text, which is on the page all the same.
    """
    if envelope.attempts > 0:
        return Delivered(provider_id=provider_id)
    return Permanent(reason, status=response.status_code)


# --- shared by LinkedIn and X: OAuth 2.0 user tokens -----------------------------

X_TOKEN_URL = "https://api.x.com/2/oauth2/token"
LINKEDIN_TOKEN_URL = "https://www.linkedin.com/oauth/v2/accessToken"
_CLIENT_KEYS = ("client_id", "client_secret")
Keepers = Callable[[str], TokenSource | None]  # an integration's keeper, by its name


def _no_keepers(name: str) -> TokenSource | None:
    return None


def _token_problem(settings: XSettings | LinkedInSettings, secret_required: bool) -> str | None:
    """What is wrong with the token keys: one of access or refresh token, and the client."""
    if (settings.access_token is None) == (settings.refresh_token is None):
        return "give exactly one of access_token and refresh_token"
    if settings.refresh_token is None:
        given = [key for key in _CLIENT_KEYS if getattr(settings, key) is not None]
        return f"{', '.join(given)} only go with refresh_token" if given else None
    needed = _CLIENT_KEYS if secret_required else _CLIENT_KEYS[:1]
    missing = [key for key in needed if getattr(settings, key) is None]
    return f"refresh_token also needs {', '.join(missing)}" if missing else None


def refresh_grant(
    settings: XSettings | LinkedInSettings, ctx: AdapterContext
) -> RefreshGrant | None:
    """How the integration refreshes its token; None for a static access token.

    In the sandbox the token endpoint is the simulator's: its prefix and the
    path of ``token_url``.
    """
    if settings.refresh_token is None or settings.client_id is None:
        return None
    url = settings.token_url
    if ctx.base_url_override is not None:
        url = ctx.base_url(url) + urlsplit(url).path
    secret = None if settings.client_secret is None else ctx.secrets(settings.client_secret)
    linkedin = isinstance(settings, LinkedInSettings)
    return RefreshGrant(
        url=url,
        client_id=settings.client_id,
        seed=ctx.secrets(settings.refresh_token),
        client_secret=secret,
        client_auth=ClientAuth.BODY if linkedin else ClientAuth.BASIC,
    )


@attrs.frozen
class _Bearer:
    """OAuth 2.0 user context: the user's access token."""

    token: Secret

    def authorization(self, method: str, url: str) -> str:
        return bearer(self.token)


@attrs.frozen
class _Unkept:
    """A refresh token configured and no keeper given (preflight from the config alone).

    No token to send: the API's 401 gets the default reading.
    """

    def current(self) -> Secret | None:
        return None

    def reject(self, sent: str | None) -> bool:
        return False

    def accept(self, sent: str | None) -> None:
        return None


@attrs.frozen
class _Kept:
    """OAuth 2.0 user context with a token that expires: the keeper's current one."""

    source: TokenSource

    def authorization(self, method: str, url: str) -> str:
        token = self.source.current()
        return "" if token is None else bearer(token)  # none: no header at all


def _oauth2_auth(
    access_token: SecretRef | None, ctx: AdapterContext, keeper: TokenSource | None
) -> _Bearer | _Kept:
    if access_token is not None:
        return _Bearer(ctx.secrets(access_token))
    return _Kept(keeper if keeper is not None else _Unkept())


def _authorization(value: str) -> dict[str, str]:
    return {"Authorization": value} if value else {}


def _sent_token(response: httpx.Response) -> str | None:
    """The bearer token the request carried, if any."""
    try:
        header = response.request.headers.get("authorization", "")
    except RuntimeError:  # a response made without a request
        return None
    scheme, _, token = header.partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _token_refused(auth: object, response: httpx.Response, words: str) -> Outcome | None:
    """After a 401 with a kept token: a Retry once the keeper refreshes, else None."""
    if not isinstance(auth, _Kept) or response.status_code != 401:
        return None
    if not auth.source.reject(_sent_token(response)):
        return None
    reason = status_reason(response, f"{words}; retrying with a refreshed access token")
    return Retry(reason, taken=Taken.NO, status=401)


def _token_taken(auth: object, response: httpx.Response) -> None:
    if isinstance(auth, _Kept):
        auth.source.accept(_sent_token(response))


def _url(key: str, text: str) -> str:
    """``text`` if it is an absolute http(s) URL, which the provider can fetch or link to."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in text:
        raise InvalidPayload(f"{key!r} must be an absolute http(s) URL, got {text!r}")
    return text


# --- Facebook Page feed --------------------------------------------------------

FACEBOOK_MAX_MESSAGE = 63_206  # Facebook's longest post
_FB_DUPLICATE = 506


@attrs.frozen
class FacebookPageSettings:
    page_id: str = attrs.field(validator=v.matches_re(r"\d+"))
    page_token: SecretRef
    api_version: str = _graph.api_version()
    base_url: str = _graph.DEFAULT_BASE


def _fb_post(raw: object) -> dict[str, str]:
    payload = fields(raw, {"message", "link"})
    post = {"message": required_str(payload, "message", max_len=FACEBOOK_MAX_MESSAGE)}
    link = optional_str(payload, "link", one_line=True)
    if link is not None:
        post["link"] = _url("link", link)
    return post


@attrs.frozen
class FacebookPage:
    """``POST /{version}/{page-id}/feed``, form fields, the Page token as ``access_token``."""

    token: Secret
    url: str

    @classmethod
    def from_settings(cls, settings: FacebookPageSettings, ctx: AdapterContext) -> FacebookPage:
        base = ctx.base_url(settings.base_url)
        url = _graph.url(base, settings.api_version, settings.page_id, "feed")
        return cls(ctx.secrets(settings.page_token), url)

    def validate(self, payload: Mapping[str, Any]) -> None:
        _fb_post(payload)

    def build(self, envelope: Envelope) -> HttpCall:
        form = {**_fb_post(envelope.payload), "access_token": self.token.reveal()}
        return HttpCall("POST", self.url, form=form)

    def classify(self, envelope: Envelope, response: httpx.Response) -> Outcome:
        if response.is_success:
            return delivered_with(response, "id")  # "{page-id}_{post-id}"
        error = GraphError.of(response)
        if error is not None and error.code == _FB_DUPLICATE:
            return _duplicate(envelope, response, error.reason(response))
        return _graph.classify(response, error)


# --- Instagram -----------------------------------------------------------------

INSTAGRAM_MAX_CAPTION = 2200
# The publishing cap (50 posts) counts a rolling 24 hours, and unless a usage
# header says so, nothing tells when the oldest post in it ages out: it may be
# any moment. An hour finds the first freed slot within the hour for at most
# 24 refused calls a day, well inside the kept container's 24-hour life.
PUBLISH_CAP_WAIT = 3600.0
_IG_CAP = 9  # with subcode 2207042, "You reached maximum number of posts"
_IG_NOT_READY = 9007  # with subcode 2207027, the container is not ready to publish
_IG_RETRY = frozenset({-1, -2})  # Instagram's server and media-download failures
_IG_SPAM = 2207051  # code 4 (throttling) with this subcode: restricted as spam
_GRAPH_NO_OBJECT = 33  # code 100 with this subcode: no such object


class _Step(enum.Enum):
    CREATE = "create"  # POST /{ig-user-id}/media -> container id
    CHECK = "check"  # GET /{container-id}?fields=status_code
    PUBLISH = "publish"  # POST /{ig-user-id}/media_publish -> media id


class ContainerStatus(enum.Enum):
    IN_PROGRESS = "IN_PROGRESS"
    FINISHED = "FINISHED"
    PUBLISHED = "PUBLISHED"
    EXPIRED = "EXPIRED"
    ERROR = "ERROR"


@attrs.frozen
class InstagramSettings:
    ig_user_id: str = attrs.field(validator=v.matches_re(r"\d+"))
    access_token: SecretRef
    api_version: str = _graph.api_version()
    base_url: str = _graph.DEFAULT_BASE  # or https://graph.instagram.com (Instagram Login)


def _ig_media(raw: object) -> dict[str, str]:
    payload = fields(raw, {"image_url", "caption", "alt_text"})
    media = {"image_url": _url("image_url", required_str(payload, "image_url", one_line=True))}
    for key, limit in (("caption", INSTAGRAM_MAX_CAPTION), ("alt_text", None)):
        value = optional_str(payload, key, max_len=limit)
        if value is not None:
            media[key] = value
    return media


def _step(envelope: Envelope, progress: Mapping[str, Any]) -> _Step:
    """Which request comes next.

    An attempt that resumes with a container (an earlier attempt created it,
    and may have published it before its answer was lost) first asks the
    container's status instead of publishing blind: what Instagram answers
    to publishing a container twice is not documented, a status read costs
    no publishing quota, and it tells a published container (done) from an
    expired or failed one (start over) and a ready one (publish).
    """
    if "container" not in progress:
        return _Step.CREATE
    if dict(progress) == dict(envelope.progress):
        return _Step.CHECK
    return _Step.PUBLISH


@attrs.frozen
class Instagram:
    """Publish an image: create a media container, then publish it; the container id is kept.

    Progress is ``{"container": id}`` once the container exists, so a retry
    never creates a second one; ``"checked"`` counts the status reads, which
    makes a read's result differ from the attempt's starting progress.
    """

    token: Secret
    base: str  # {base_url}/{api_version}
    user_id: str

    @classmethod
    def from_settings(cls, settings: InstagramSettings, ctx: AdapterContext) -> Instagram:
        base = _graph.url(ctx.base_url(settings.base_url), settings.api_version)
        return cls(ctx.secrets(settings.access_token), base, settings.ig_user_id)

    def validate(self, payload: Mapping[str, Any]) -> None:
        _ig_media(payload)

    def next_call(self, envelope: Envelope, progress: Mapping[str, Any]) -> HttpCall:
        token = {"access_token": self.token.reveal()}
        match _step(envelope, progress):
            case _Step.CREATE:
                form = {**_ig_media(envelope.payload), **token}
                return HttpCall("POST", f"{self.base}/{self.user_id}/media", form=form)
            case _Step.CHECK:
                query = httpx.QueryParams({"fields": "status_code", **token})
                return HttpCall("GET", f"{self.base}/{progress['container']}?{query}")
            case _Step.PUBLISH:
                form = {"creation_id": str(progress["container"]), **token}
                return HttpCall("POST", f"{self.base}/{self.user_id}/media_publish", form=form)

    def after_call(
        self, envelope: Envelope, progress: Mapping[str, Any], response: httpx.Response
    ) -> Outcome | Mapping[str, Any]:
        match _step(envelope, progress):
            case _Step.CREATE:
                return _created(response)
            case _Step.CHECK:
                return _checked(envelope, progress, response)
            case _Step.PUBLISH:
                if response.is_success:
                    return delivered_with(response, "id")
                return _ig_error(response, taken=Taken.MAYBE)


def _created(response: httpx.Response) -> Outcome | Mapping[str, Any]:
    if not response.is_success:
        # Nothing is posted until the publish step: a failed creation left at
        # most an unused container, which expires on its own.
        return _ig_error(response, taken=Taken.NO)
    body = json_object(response) or {}
    container = body.get("id")
    if not isinstance(container, str) or not container:
        # Whatever was created, nothing was posted.
        return attrs.evolve(malformed(response, "a JSON object with a string 'id'"), taken=Taken.NO)
    return {"container": container}


def _checked(
    envelope: Envelope, progress: Mapping[str, Any], response: httpx.Response
) -> Outcome | Mapping[str, Any]:
    if not response.is_success:
        error = GraphError.of(response)
        if error is not None and error.code == 100 and error.subcode == _GRAPH_NO_OBJECT:
            return {}  # the container is gone: start over with a new one
        return _ig_error(response, taken=Taken.NO)
    body = json_object(response) or {}
    try:
        status = ContainerStatus(body.get("status_code"))
    except ValueError:
        return malformed(response, "a JSON object with a container 'status_code'")
    match status:
        case ContainerStatus.PUBLISHED:
            # An earlier attempt's publish went through and its answer was
            # lost. The container does not name the media it became, so the
            # message is delivered without the provider's id.
            return Delivered()
        case ContainerStatus.FINISHED:
            return {**progress, "checked": int(envelope.progress.get("checked", 0)) + 1}
        case ContainerStatus.IN_PROGRESS:
            return Retry("the media container is still being processed", taken=Taken.NO)
        case ContainerStatus.EXPIRED | ContainerStatus.ERROR:
            # Unpublished for 24 hours, or its media failed: it can never be
            # published. Empty progress makes the next step create a new one,
            # within this attempt; that one is not checked again, so an
            # attempt starts over at most once.
            return {}


def _ig_error(response: httpx.Response, *, taken: Taken) -> Outcome:
    """Instagram's own codes first, then the Graph table; ``taken`` for server failures."""
    error = GraphError.of(response)
    if error is None:
        return _graph.classify(response, error, transient_taken=taken)
    status = response.status_code
    if error.code == _IG_CAP:
        after = _graph.regain_wait(response.headers) or PUBLISH_CAP_WAIT
        return Retry(error.reason(response), taken=Taken.NO, after=after, status=status)
    if error.code == _IG_NOT_READY:
        return Retry(error.reason(response), taken=Taken.NO, status=status)
    if error.code in _IG_RETRY:
        return Retry(error.reason(response), taken=taken, status=status)
    if error.subcode == _IG_SPAM:
        return Permanent(error.reason(response), status=status)
    return _graph.classify(response, error, transient_taken=taken)


# --- LinkedIn ------------------------------------------------------------------

LINKEDIN_MAX_TEXT = 3000
LINKEDIN_VISIBILITY = ("PUBLIC", "CONNECTIONS")
_DAY = 86_400.0
# Attempts whose 429 (one that names no daily limit) backs off on the retry
# policy; a 429 after them waits for the daily reset.
LINKEDIN_BACKOFF_ATTEMPTS = 2
_DAY_LIMIT = re.compile(r"\bDAY limit\b", re.IGNORECASE)
# The commentary is LinkedIn's "little" text format, where these characters
# are markup; unescaped, LinkedIn cuts the post at the first one and still
# answers 201. A '#' that starts a hashtag stays markup, so it still links.
_LITTLE_RESERVED = re.compile(r"[\\|{}@\[\]()<>*_~]|#(?!\w)")
_LINK = re.compile(r"https?://[^\s<>()\[\]{}|\\]+")
_DUPLICATE_OF = re.compile(r"duplicate of (urn:li:[A-Za-z]+:\w+)")


def _linkedin_version(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    # YYYYMM, or YYYYMM.RR for a revision; each is served for about a year.
    if not re.fullmatch(r"\d{4}(0[1-9]|1[0-2])(\.\d{2})?", value):
        raise ValueError(f"{attribute.name} must be a LinkedIn version YYYYMM, got {value!r}")


@attrs.frozen
class LinkedInSettings:
    """A static ``access_token``, or a ``refresh_token`` with the app's client id and secret."""

    author: str = attrs.field(validator=v.matches_re(r"urn:li:(person|organization):[\w-]+"))
    version: str = attrs.field(validator=_linkedin_version)
    access_token: SecretRef | None = None
    refresh_token: SecretRef | None = None
    client_id: str | None = None
    client_secret: SecretRef | None = None
    token_url: str = LINKEDIN_TOKEN_URL
    base_url: str = "https://api.linkedin.com"

    def __attrs_post_init__(self) -> None:
        problem = _token_problem(self, secret_required=True)
        if problem is not None:
            raise ValueError(problem)


def little_text(text: str) -> str:
    """Plain text as LinkedIn commentary: markup characters escaped, links left whole."""
    parts: list[str] = []
    position = 0
    for link in _LINK.finditer(text):
        parts += [_escape_little(text[position : link.start()]), link.group()]
        position = link.end()
    parts.append(_escape_little(text[position:]))
    return "".join(parts)


def _escape_little(text: str) -> str:
    return _LITTLE_RESERVED.sub(lambda found: "\\" + found.group(), text)


def _linkedin_post(raw: object) -> tuple[str, str]:
    payload = fields(raw, {"text", "visibility"})
    text = required_str(payload, "text", max_len=LINKEDIN_MAX_TEXT)
    return text, choice(payload, "visibility", LINKEDIN_VISIBILITY, "PUBLIC")


@attrs.frozen
class LinkedIn:
    """``POST /rest/posts`` with a member token; the new post's URN is in ``x-restli-id``."""

    auth: _Bearer | _Kept
    url: str
    author: str
    version: str

    @classmethod
    def from_settings(
        cls, settings: LinkedInSettings, ctx: AdapterContext, keeper: TokenSource | None = None
    ) -> LinkedIn:
        url = f"{ctx.base_url(settings.base_url)}/rest/posts"
        auth = _oauth2_auth(settings.access_token, ctx, keeper)
        return cls(auth, url, settings.author, settings.version)

    def validate(self, payload: Mapping[str, Any]) -> None:
        _linkedin_post(payload)

    def build(self, envelope: Envelope) -> HttpCall:
        text, visibility = _linkedin_post(envelope.payload)
        headers = {
            **_authorization(self.auth.authorization("POST", self.url)),
            "LinkedIn-Version": self.version,
            "X-Restli-Protocol-Version": "2.0.0",
        }
        body = {
            "author": self.author,
            "commentary": little_text(text),
            "visibility": visibility,
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        }
        return HttpCall("POST", self.url, headers=headers, json=body)

    def classify(self, envelope: Envelope, response: httpx.Response) -> Outcome:
        if response.is_success:
            _token_taken(self.auth, response)
            return _linkedin_delivered(response)
        status = response.status_code
        words = detail(response, "code", "message")
        refused = _token_refused(self.auth, response, words)
        if refused is not None:
            return refused
        if status == 422 and "DUPLICATE_POST" in response.text:
            found = _DUPLICATE_OF.search(response.text)  # names the post it duplicates
            reason = status_reason(response, words)
            return _duplicate(envelope, response, reason, found.group(1) if found else None)
        if status == 429:
            after = _linkedin_wait(envelope, response)
            return Retry(status_reason(response, words), taken=Taken.NO, after=after, status=429)
        return classify_status(response, words, any_5xx_maybe_taken=True)


def _linkedin_delivered(response: httpx.Response) -> Outcome:
    urn = response.headers.get("x-restli-id")
    if urn:
        return Delivered(provider_id=urn)
    body = json_object(response) or {}  # some answers carry the id in the body instead
    if isinstance(body.get("id"), str) and body["id"]:
        return Delivered(provider_id=body["id"])
    return malformed(response, "the new post's URN in an 'x-restli-id' header")


def _linkedin_wait(envelope: Envelope, response: httpx.Response) -> float | None:
    """After a 429: ``Retry-After`` if sent; until 00:00 UTC, when the daily limits
    reset, if LinkedIn says a DAY limit is reached; else the policy's backoff (None)
    on a message's first attempts, and until 00:00 UTC once the 429s persist.

    LinkedIn names a spent daily quota ("Resource level throttle APPLICATION DAY
    limit ... is reached", or MEMBER DAY): every attempt fails until midnight.
    Any other 429 (LinkedIn also throttles to protect its infrastructure) may
    pass after a short backoff.
    """
    after = retry_after(response.headers)
    if after is not None:
        return after
    body = json_object(response) or {}
    message = body.get("message")
    spent = isinstance(message, str) and _DAY_LIMIT.search(message) is not None
    if not spent and envelope.attempts < LINKEDIN_BACKOFF_ATTEMPTS:
        return None
    # POSIX time has no leap seconds: UTC midnights are the multiples of a day.
    return _DAY - server_time(response.headers) % _DAY


# --- X -------------------------------------------------------------------------

X_TEXT_LIMIT = 280  # 25,000 for Premium accounts: raise it with ``text_limit``
_X_URL_WEIGHT = 23  # every link counts as a t.co link
# twitter-text v3: code points in these ranges weigh 1, every other one 2.
_X_LIGHT = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))
# Parts of an emoji sequence X counts with the emoji itself: variation
# selectors and skin-tone modifiers (a code point after a ZWJ is joined too).
_X_JOINED = ((0xFE00, 0xFE0F), (0x1F3FB, 0x1F3FF))
_ZWJ = "\u200d"
# A link ends before the punctuation that closes its sentence, which counts on its own.
_X_LINK = re.compile(r"https?://\S+?(?=[.,:;!?'\")\]]*(?:\s|$))")
_X_LIMITS = ("x-rate-limit", "x-user-limit-24hour", "x-app-limit-24hour")
_X_DUPLICATE = "duplicate content"
_OAUTH1_ONLY = ("consumer_key", "consumer_secret", "access_token_secret")
_OAUTH1_KEYS = ("access_token", *_OAUTH1_ONLY)
_OAUTH2_ONLY = ("refresh_token", "client_id", "client_secret")


@attrs.frozen
class XSettings:
    """``auth = "oauth1"``: the four OAuth 1.0a keys; ``"oauth2"``: a user access token, or
    a refresh token with the app's ``client_id`` (and ``client_secret`` for a confidential
    client)."""

    auth: Literal["oauth1", "oauth2"]
    access_token: SecretRef | None = None  # the OAuth 2 user token, or the OAuth 1.0a one
    consumer_key: SecretRef | None = None
    consumer_secret: SecretRef | None = None
    access_token_secret: SecretRef | None = None
    refresh_token: SecretRef | None = None  # OAuth 2: the seed, redeemed once
    client_id: str | None = None
    client_secret: SecretRef | None = None
    token_url: str = X_TOKEN_URL
    base_url: str = "https://api.x.com"
    text_limit: int = attrs.field(default=X_TEXT_LIMIT, validator=[v.ge(1), v.le(25_000)])

    def __attrs_post_init__(self) -> None:
        problem = self._oauth1_problem() if self.auth == "oauth1" else self._oauth2_problem()
        if problem is not None:
            raise ValueError(problem)

    def _oauth1_problem(self) -> str | None:
        missing = [name for name in _OAUTH1_KEYS if getattr(self, name) is None]
        if missing:
            return f"auth 'oauth1' also needs {', '.join(missing)}"
        given = [name for name in _OAUTH2_ONLY if getattr(self, name) is not None]
        return f"auth 'oauth1' does not take {', '.join(given)}" if given else None

    def _oauth2_problem(self) -> str | None:
        given = [name for name in _OAUTH1_ONLY if getattr(self, name) is not None]
        if given:
            return f"auth 'oauth2' does not take {', '.join(given)}"
        return _token_problem(self, secret_required=False)


def _x_length(text: str) -> int:
    """A post's length as X counts it (twitter-text v3), emoji sequences approximated."""
    text = unicodedata.normalize("NFC", text)
    links = _X_LINK.findall(text)
    rest = _X_LINK.sub("", text)
    total, joined = _X_URL_WEIGHT * len(links), False
    for char in rest:
        point = ord(char)
        if char == _ZWJ:
            joined = True
            continue
        if not (joined or any(lo <= point <= hi for lo, hi in _X_JOINED)):
            total += 1 if any(lo <= point <= hi for lo, hi in _X_LIGHT) else 2
        joined = False
    return total


def _x_post(raw: object, limit: int) -> dict[str, Any]:
    payload = fields(raw, {"text", "reply_to"})
    text = required_str(payload, "text")
    length = _x_length(text)
    if length > limit:
        raise InvalidPayload(f"'text' counts {length} characters as X counts them, at most {limit}")
    post: dict[str, Any] = {"text": text}
    if payload.get("reply_to") is not None:
        reply_to = check_text("reply_to", payload["reply_to"], max_len=19, one_line=True)
        if not reply_to.isascii() or not reply_to.isdigit():
            raise InvalidPayload(f"'reply_to' must be a post id (digits), got {reply_to!r}")
        post["reply"] = {"in_reply_to_tweet_id": reply_to}
    return post


@attrs.frozen
class _OAuth1:
    """OAuth 1.0a user context: each request signed anew (a fresh nonce and timestamp)."""

    consumer_key: Secret
    consumer_secret: Secret
    token: Secret
    token_secret: Secret
    clock: Callable[[], float] = time.time
    nonce: Callable[[], str] = lambda: secrets.token_hex(16)

    def authorization(self, method: str, url: str) -> str:
        credentials = _oauth1.Credentials(
            self.consumer_key.reveal(),
            self.consumer_secret.reveal(),
            self.token.reveal(),
            self.token_secret.reveal(),
        )
        return _oauth1.authorization(
            method, url, credentials, nonce=self.nonce(), timestamp=int(self.clock())
        )


def _x_auth(
    settings: XSettings, ctx: AdapterContext, keeper: TokenSource | None
) -> _Bearer | _Kept | _OAuth1:
    if settings.auth == "oauth2":
        return _oauth2_auth(settings.access_token, ctx, keeper)
    refs = (
        settings.consumer_key,
        settings.consumer_secret,
        settings.access_token,
        settings.access_token_secret,
    )
    key, secret, token, token_secret = (ctx.secrets(ref) for ref in refs if ref is not None)
    return _OAuth1(key, secret, token, token_secret)


@attrs.frozen
class X:
    """``POST /2/tweets`` with a JSON body, as an OAuth 2 or a signed OAuth 1.0a user."""

    url: str
    auth: _Bearer | _Kept | _OAuth1
    text_limit: int

    @classmethod
    def from_settings(
        cls, settings: XSettings, ctx: AdapterContext, keeper: TokenSource | None = None
    ) -> X:
        url = f"{ctx.base_url(settings.base_url)}/2/tweets"
        return cls(url, _x_auth(settings, ctx, keeper), settings.text_limit)

    def validate(self, payload: Mapping[str, Any]) -> None:
        _x_post(payload, self.text_limit)

    def build(self, envelope: Envelope) -> HttpCall:
        body = _x_post(envelope.payload, self.text_limit)
        # A JSON body is no OAuth parameter: the signature covers method and URL.
        headers = _authorization(self.auth.authorization("POST", self.url))
        return HttpCall("POST", self.url, headers=headers, json=body)

    def classify(self, envelope: Envelope, response: httpx.Response) -> Outcome:
        if response.is_success:
            _token_taken(self.auth, response)
            return _x_delivered(response)
        status, words = response.status_code, _x_words(response)
        refused = _token_refused(self.auth, response, words)
        if refused is not None:
            return refused
        if status == 429:
            after = _x_wait(response.headers)
            return Retry(status_reason(response, words), taken=Taken.NO, after=after, status=429)
        if status == 403 and _X_DUPLICATE in words.lower():
            return _duplicate(envelope, response, status_reason(response, words))
        return classify_status(response, words, any_5xx_maybe_taken=True)


def _x_delivered(response: httpx.Response) -> Outcome:
    body = json_object(response) or {}
    data = body.get("data")
    post_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(post_id, str) or not post_id:
        return malformed(response, "a JSON object with 'data.id'")
    return Delivered(provider_id=post_id)


def _x_words(response: httpx.Response) -> str:
    """X's problem ``title`` and ``detail``, or its ``errors[].message``."""
    body = json_object(response) or {}
    errors = body.get("errors")
    messages = [e["message"] for e in errors or () if isinstance(e, dict) and "message" in e]
    if isinstance(errors, list) and messages and not body.get("detail"):
        return "; ".join(str(m) for m in messages)
    return detail(response, "title", "detail")


def _x_wait(headers: httpx.Headers) -> float | None:
    """When the spent window resets, from X's ``*-reset`` headers (epoch seconds).

    The 15-minute window is not the only one: a spent 24-hour allowance of the
    user or of the app outlasts it, so the latest reset of the spent ones binds.
    """
    spent = [
        epoch_reset(headers, f"{prefix}-reset")
        for prefix in _X_LIMITS
        if headers.get(f"{prefix}-remaining") == "0"
    ]
    waits = [wait for wait in spent if wait is not None]
    return max(waits) if waits else epoch_reset(headers, "x-rate-limit-reset")


# --- preflight: read-only requests ----------------------------------------------


def _publishing_limit(settings: InstagramSettings, ctx: AdapterContext) -> HttpCall:
    """``GET /{ig-user-id}/content_publishing_limit``, with the adapter's own token."""
    ig = Instagram.from_settings(settings, ctx)
    # The documented way to pass the token is the access_token parameter.
    query = urlencode({"fields": "quota_usage,config", "access_token": ig.token.reveal()})
    return HttpCall("GET", f"{ig.base}/{ig.user_id}/content_publishing_limit?{query}")


_GRAPH_AUTH_CODES = frozenset({102, 104, 190})


def _read_publishing_limit(settings: InstagramSettings, response: httpx.Response) -> Finding:
    if not response.is_success:
        return _graph_refused(response)
    data = (json_object(response) or {}).get("data")
    usage = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    used, config = usage.get("quota_usage"), usage.get("config")
    total = config.get("quota_total") if isinstance(config, dict) else None
    if not isinstance(used, int) or not isinstance(total, int):
        return Finding(Verdict.PASS, "token accepted")
    if used >= total:
        words = f"token accepted, but the publishing cap is reached ({used} of {total} in 24 h)"
        return Finding(Verdict.WARN, words)
    return Finding(Verdict.PASS, f"token accepted; {used} of {total} posts used in 24 h")


def _graph_refused(response: httpx.Response) -> Finding:
    error = GraphError.of(response)
    if error is None:
        return refused(response, detail(response))
    if error.code in _GRAPH_AUTH_CODES:
        return Finding(Verdict.FAIL, f"credentials refused {error.words}")
    if error.code in THROTTLING:
        return Finding(Verdict.WARN, f"rate limited {error.words}; credentials unchecked")
    return Finding(Verdict.FAIL, f"HTTP {response.status_code}: {error.words}")


def _users_me(keepers: Keepers) -> Callable[[XSettings, AdapterContext], HttpCall]:
    """``GET /2/users/me``, signed by the adapter's own signer (OAuth 1.0a signs it anew)."""

    def call(settings: XSettings, ctx: AdapterContext) -> HttpCall:
        url = f"{ctx.base_url(settings.base_url)}/2/users/me"
        auth = X.from_settings(settings, ctx, keepers(ctx.name)).auth
        return HttpCall("GET", url, headers=_authorization(auth.authorization("GET", url)))

    return call


def _read_users_me(settings: XSettings, response: httpx.Response) -> Finding:
    if response.status_code == 401 and settings.refresh_token and _sent_token(response) is None:
        # No keeper here (checked from the config alone): the seed is not redeemed,
        # which would spend it, so the credentials stay unchecked.
        words = "reachable; the access token is refreshed by the running daemon, not checked here"
        return Finding(Verdict.WARN, words)
    if not response.is_success:
        return refused(response, detail(response, "title", "detail"))
    data = (json_object(response) or {}).get("data")
    username = data.get("username") if isinstance(data, dict) else None
    return Finding(Verdict.PASS, f"authenticated as @{username}" if username else "authenticated")


def kinds(keepers: Keepers = _no_keepers) -> tuple[ProviderKind, ...]:
    """The family's rows; LinkedIn and X with a refresh token send ``keepers(name)``'s token."""

    def linkedin(settings: LinkedInSettings, ctx: AdapterContext) -> LinkedIn:
        return LinkedIn.from_settings(settings, ctx, keepers(ctx.name))

    def x(settings: XSettings, ctx: AdapterContext) -> X:
        return X.from_settings(settings, ctx, keepers(ctx.name))

    return (
        steps_kind(
            "facebook_page",
            FAMILY,
            FacebookPageSettings,
            _one_step(FacebookPage.from_settings),
            probe=CONNECT_TO_BASE_URL,
        ),
        steps_kind(
            "instagram",
            FAMILY,
            InstagramSettings,
            Instagram.from_settings,
            probe=ReadOnly(_publishing_limit, _read_publishing_limit),
        ),
        steps_kind(
            "linkedin",
            FAMILY,
            LinkedInSettings,
            _one_step(linkedin),
            probe=CONNECT_TO_BASE_URL,
        ),
        steps_kind(
            "x",
            FAMILY,
            XSettings,
            _one_step(x),
            probe=ReadOnly(_users_me(keepers), _read_users_me),
        ),
    )


KINDS: tuple[ProviderKind, ...] = kinds()
