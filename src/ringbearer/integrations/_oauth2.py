"""OAuth 2.0 access tokens that expire, kept fresh: one :class:`TokenKeeper` per integration.

X's user access tokens last two hours, and each refresh token is good for
one refresh: the answer carries a new one, and a spent one presented again
revokes every token descended from the same authorization (its *family*).
LinkedIn's access tokens last sixty days; its refresh token stays the same
string until a year after the member authorized. Both refresh at the
provider's token endpoint with ``grant_type=refresh_token``; they differ in
how the client authenticates there (:class:`ClientAuth`).

A keeper holds one integration's :class:`TokenSet`, and:

* starts from the set saved last (sealed, in the store), or else *seeds*
  one: redeems the refresh token from the credential. The seed is redeemed
  once: a set saved from the same seed is loaded, never seeded again, since
  on X the seed is spent (a different seed in the credential means the
  account was connected again, and replaces the saved set);
* refreshes ahead of expiry, when under a tenth of the token's life or five
  minutes is left, whichever is more; one refresh at a time;
* seals and saves the new set **before** it uses it: once the provider has
  answered, the refresh token presented is spent and the new one exists
  only here. A set the store refused is kept aside and saved again; the
  spent token is never presented twice;
* reports every failure to ``on_problem`` (the daemon raises an alert; the
  words never hold a token) and tries again with backoff, sending the old
  access token while it lives;
* when the API refuses its access token (a 401), refreshes at once, unless
  that token came from such a refresh and no request has succeeded with it
  since: a second refusal in a row is the account's, not the token's age.

What cannot be helped: a crash after the provider answered and before the
save, or an answer lost on the way, leaves a spent refresh token in the
store. On X, presenting it revokes the family and the account must be
connected again, with a new seed in the credential.

Errors::

    RingbearerError
    └── TokenError      no token set could be had or kept; ``refused``: the
                        provider refused the refresh token (spent, revoked or
                        expired), and the account must be connected again
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, Protocol

import attrs
import httpx
import trio

from .._errors import RingbearerError
from .._secrets import REDACTED, Secret

log = logging.getLogger("ringbearer.oauth2")

REFRESH_SHARE = 0.1  # refresh when under this share of the token's life is left...
REFRESH_MARGIN = 300.0  # ...or this many seconds, whichever is more
FIRST_BACKOFF = 5.0  # seconds after a first failed refresh, doubling...
MAX_BACKOFF = 300.0  # ...up to this
MAX_NAP = 600.0  # the longest wait before the wall clock is read again
_REFUSED = frozenset({"invalid_request", "invalid_grant"})
_WORDS_MAX = 200
_SEED_TAG = b"ringbearer oauth2 seed v1\n"


class TokenError(RingbearerError):
    """No token set could be had or kept; the message holds no token."""

    def __init__(self, words: str, *, refused: bool = False) -> None:
        super().__init__(words)
        self.words = words
        self.refused = refused


# --- the seams the daemon supplies ------------------------------------------------


class TokenStore(Protocol):
    """The store keeps one sealed token set per integration."""

    async def load_token(self, integration: str) -> str | None:
        """The sealed text saved last, or None."""

    async def save_token(self, integration: str, sealed: str) -> None:
        """Durable on return."""


class Sealer(Protocol):
    """The vault: seals under a system data key, rotated with the key-encryption key."""

    async def seal_text(self, name: str, text: str) -> str: ...

    async def open_text(self, name: str, sealed: str) -> str: ...


class TokenSource(Protocol):
    """What a provider asks of a keeper: the token to send, and how the API took it."""

    def current(self) -> Secret | None:
        """The access token to send; None while there is none that lives."""

    def reject(self, sent: str | None) -> bool:
        """The API refused ``sent`` (401): True when a retry will carry a fresher token."""

    def accept(self, sent: str | None) -> None:
        """The API took ``sent``."""


# --- the grant and the token set ------------------------------------------------


class ClientAuth(enum.Enum):
    """How the client proves itself at the token endpoint."""

    # X: client_id in the body, and HTTP Basic client_id:client_secret for a
    # confidential client (a public one has no secret).
    BASIC = "basic"
    # LinkedIn: client_id and client_secret both in the body.
    BODY = "body"


@attrs.frozen
class RefreshGrant:
    """Where and how an integration refreshes: the token URL, the client, the seed."""

    url: str
    client_id: str
    seed: Secret  # the refresh token from the credential, redeemed once to start
    client_secret: Secret | None = None
    client_auth: ClientAuth = ClientAuth.BASIC

    def form(self, refresh_token: Secret) -> dict[str, str]:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token.reveal(),
            "client_id": self.client_id,
        }
        if self.client_auth is ClientAuth.BODY and self.client_secret is not None:
            form["client_secret"] = self.client_secret.reveal()
        return form

    def headers(self) -> dict[str, str]:
        if self.client_auth is not ClientAuth.BASIC or self.client_secret is None:
            return {}
        pair = f"{self.client_id}:{self.client_secret.reveal()}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


def seed_mark(seed: Secret) -> str:
    """Which seed a set descends from, kept inside the sealed set; not the seed itself."""
    return hashlib.sha256(_SEED_TAG + seed.reveal().encode()).hexdigest()[:16]


@attrs.frozen
class TokenSet:
    """One integration's tokens; times are wall-clock epoch seconds."""

    access: Secret
    refresh: Secret
    issued_at: float
    expires_at: float  # the access token's
    refresh_expires_at: float | None  # None: the provider does not say
    seed: str  # the :func:`seed_mark` of the seed the family descends from

    @property
    def refresh_at(self) -> float:
        """When to refresh: under a tenth of the life, or five minutes, left."""
        life = self.expires_at - self.issued_at
        return self.expires_at - max(life * REFRESH_SHARE, REFRESH_MARGIN)

    def to_text(self) -> str:
        return json.dumps(
            {
                "access": self.access.reveal(),
                "refresh": self.refresh.reveal(),
                "issued_at": self.issued_at,
                "expires_at": self.expires_at,
                "refresh_expires_at": self.refresh_expires_at,
                "seed": self.seed,
            }
        )

    @classmethod
    def from_text(cls, text: str) -> TokenSet:
        """The set :meth:`to_text` wrote; ValueError for anything else."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("not a token set")
        refresh_expires_at = raw.get("refresh_expires_at")
        return cls(
            access=Secret(_text(raw, "access")),
            refresh=Secret(_text(raw, "refresh")),
            issued_at=_number(raw, "issued_at"),
            expires_at=_number(raw, "expires_at"),
            refresh_expires_at=None
            if refresh_expires_at is None
            else _number(raw, "refresh_expires_at"),
            seed=_text(raw, "seed"),
        )


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key!r} is not a non-empty string")
    return value


def _number(raw: Mapping[str, Any], key: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key!r} is not a number")
    return float(value)


# --- one refresh at the token endpoint ----------------------------------------------


@attrs.frozen
class _Exchange:
    """Redeems a refresh token for a new set."""

    http: httpx.AsyncClient
    grant: RefreshGrant

    async def redeem(self, refresh_token: Secret, now: float, seed: str) -> TokenSet:
        """The set issued for ``refresh_token``; TokenError if none was."""
        form, headers = self.grant.form(refresh_token), self.grant.headers()
        try:
            response = await self.http.post(self.grant.url, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise TokenError(f"the token endpoint did not answer ({type(exc).__name__})") from exc
        scrub = _Scrub((refresh_token, self.grant.seed, self.grant.client_secret))
        if response.status_code != 200:
            raise _refusal(response, scrub)
        try:
            return _issued(_body(response), refresh_token, now, seed)
        except ValueError as exc:
            words = f"the token endpoint's answer is not a token set ({scrub(str(exc))})"
            raise TokenError(words) from None


@attrs.frozen
class _Scrub:
    """Takes every known secret out of a provider's words."""

    secrets: tuple[Secret | None, ...]

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret is not None and secret.reveal():
                text = text.replace(secret.reveal(), REDACTED)
        text = " ".join(text.split())
        return text if len(text) <= _WORDS_MAX else text[: _WORDS_MAX - 1] + "…"


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    return body


def _issued(body: Mapping[str, Any], presented: Secret, now: float, seed: str) -> TokenSet:
    lifetime = _number(body, "expires_in")
    if lifetime <= 0:
        raise ValueError("'expires_in' is not positive")
    # LinkedIn answers with the same refresh token; none at all keeps the one we have.
    refresh = body.get("refresh_token") or presented.reveal()
    if not isinstance(refresh, str):
        raise ValueError("'refresh_token' is not a string")
    refresh_life = body.get("refresh_token_expires_in")
    return TokenSet(
        access=Secret(_text(body, "access_token")),
        refresh=Secret(refresh),
        issued_at=now,
        expires_at=now + lifetime,
        refresh_expires_at=None
        if refresh_life is None
        else now + _number(body, "refresh_token_expires_in"),
        seed=seed,
    )


def _refusal(response: httpx.Response, scrub: _Scrub) -> TokenError:
    status = response.status_code
    try:
        body = _body(response)
    except ValueError:
        body = {}
    error, description = body.get("error"), body.get("error_description")
    said = ": ".join(str(part) for part in (error, description) if part) or response.reason_phrase
    said = scrub(f"HTTP {status} {said}".strip())
    if status == 400 and error in _REFUSED:
        return TokenError(
            f"the token endpoint refused the refresh token ({said}): it was spent, revoked "
            "or expired; connect the account again and give ringbearer its new refresh token",
            refused=True,
        )
    if status == 401:
        words = f"the token endpoint refused the client ({said}): check client_id and client_secret"
        return TokenError(words)
    return TokenError(f"the token endpoint failed ({said})")


# --- the keeper -------------------------------------------------------------------------


@attrs.frozen
class TokenStatistics:
    """A keeper at one moment, for status, preflight and the expiry gauge."""

    integration: str
    has_token: bool  # an access token that lives
    remaining_seconds: float  # of the access token; 0 when there is none
    refresh_remaining_seconds: float | None  # of the refresh token, when the provider says
    refreshes: int  # sets issued and saved since start
    failures: int  # in a row; 0 once a refresh succeeds
    failures_total: int
    last_problem: str | None
    reconnect: bool  # the provider refused the refresh token: connect the account again


def _nothing(integration: str, words: str) -> None:
    return None


@attrs.define(eq=False)
class TokenKeeper:
    """Keeps one integration's OAuth 2.0 access token alive (see the module's docstring)."""

    integration: str
    grant: RefreshGrant
    store: TokenStore
    sealer: Sealer
    http: httpx.AsyncClient
    on_problem: Callable[[str, str], None] = _nothing
    wall: Callable[[], float] = time.time
    first_backoff: float = FIRST_BACKOFF
    max_backoff: float = MAX_BACKOFF
    _tokens: TokenSet | None = attrs.field(default=None, init=False)
    _pending: TokenSet | None = attrs.field(default=None, init=False)  # issued, not saved
    _forced: bool = attrs.field(default=False, init=False)  # the API refused the token
    _suspect: bool = attrs.field(default=False, init=False)  # a forced refresh brought it
    _refreshes: int = attrs.field(default=0, init=False)
    _failures: int = attrs.field(default=0, init=False)
    _failures_total: int = attrs.field(default=0, init=False)
    _last_problem: str | None = attrs.field(default=None, init=False)
    _reconnect: bool = attrs.field(default=False, init=False)
    _wake: trio.Event = attrs.field(factory=trio.Event, init=False)
    _lock: trio.Lock = attrs.field(factory=trio.Lock, init=False)

    @property
    def _name(self) -> str:
        return f"oauth2 token set {self.integration}"  # what the seal is bound to

    # --- what providers and status read ---

    def current(self) -> Secret | None:
        """The access token to send; None before the first, or once it has expired."""
        tokens = self._tokens
        if tokens is None or self.wall() >= tokens.expires_at:
            return None
        return tokens.access

    def remaining(self) -> float:
        """Seconds left of the access token; 0 when there is none."""
        tokens = self._tokens
        return 0.0 if tokens is None else max(0.0, tokens.expires_at - self.wall())

    def reject(self, sent: str | None) -> bool:
        """The API refused ``sent``: True when a retry will carry a fresher token.

        A refused token that is no longer the current one is already replaced.
        The current one is refreshed at once, unless a forced refresh brought
        it and nothing has succeeded with it since (then False: the refusal
        is the account's, and a refresh would not help).
        """
        current = self.current()
        if current is not None and sent != current.reveal():
            return True
        if current is not None and self._suspect:
            return False
        self._forced = True
        self._wake.set()
        return True

    def accept(self, sent: str | None) -> None:
        """The API took ``sent``: a refusal after this is the first in a row again."""
        current = self.current()
        if current is not None and sent == current.reveal():
            self._suspect = False

    def statistics(self) -> TokenStatistics:
        tokens, now = self._tokens, self.wall()
        refresh_left = None
        if tokens is not None and tokens.refresh_expires_at is not None:
            refresh_left = max(0.0, tokens.refresh_expires_at - now)
        return TokenStatistics(
            integration=self.integration,
            has_token=self.current() is not None,
            remaining_seconds=self.remaining(),
            refresh_remaining_seconds=refresh_left,
            refreshes=self._refreshes,
            failures=self._failures,
            failures_total=self._failures_total,
            last_problem=self._last_problem,
            reconnect=self._reconnect,
        )

    # --- running ---

    async def start(self) -> None:
        """Load the saved set, or else seed one; TokenError when neither works.

        Does nothing once the keeper holds a set. A failure leaves the keeper
        as it was, and :meth:`run` tries again.
        """
        if self._tokens is None:
            await self._step()

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Refresh ahead of expiry for ever; started once a set is held."""
        while self._tokens is None:
            await self._attempt()
        task_status.started()
        while True:
            await self._until_due()
            await self._attempt()

    async def _attempt(self) -> None:
        """One step; after a failure, report it and back off."""
        try:
            await self._step()
        except TokenError as exc:
            self._reconnect = exc.refused
            self._failed(exc.words)
            await trio.sleep(self._backoff())
        else:
            self._failures, self._reconnect = 0, False

    async def _until_due(self) -> None:
        while not (self._forced or self._pending is not None or self._tokens is None):
            delay = self._tokens.refresh_at - self.wall()
            if delay <= 0:
                return
            # No checkpoint between the check above and the new event: no lost wake-up.
            self._wake = trio.Event()
            with trio.move_on_after(min(delay, MAX_NAP)):
                await self._wake.wait()

    async def _step(self) -> None:
        """Save a set issued earlier; else load, seed or refresh, and save what came."""
        async with self._lock:
            if self._pending is None:
                presented = await self._to_present()
                if presented is None:
                    return  # loaded from the store
                exchange = _Exchange(self.http, self.grant)
                seed = seed_mark(self.grant.seed)
                self._pending = await exchange.redeem(presented, self.wall(), seed)
            await self._commit(self._pending)

    async def _to_present(self) -> Secret | None:
        """The refresh token to redeem; None when a saved set was loaded instead."""
        if self._tokens is not None:
            return self._tokens.refresh
        loaded = await self._load()
        if loaded is not None and loaded.seed == seed_mark(self.grant.seed):
            self._tokens = loaded
            return None
        if loaded is not None:
            log.info(
                "%s: a new refresh token in the credential replaces the saved set", self.integration
            )
        return self.grant.seed

    async def _load(self) -> TokenSet | None:
        try:
            sealed = await self.store.load_token(self.integration)
            if sealed is None:
                return None
            return TokenSet.from_text(await self.sealer.open_text(self._name, sealed))
        except Exception as exc:  # the store's and the vault's own errors, whatever they are
            words = f"the saved token set could not be read ({type(exc).__name__})"
            raise TokenError(words) from exc

    async def _commit(self, issued: TokenSet) -> None:
        """Seal and save ``issued``, then use it; a set that was not saved is kept aside."""
        try:
            sealed = await self.sealer.seal_text(self._name, issued.to_text())
            await self.store.save_token(self.integration, sealed)
        except Exception as exc:  # the store's and the vault's own errors, whatever they are
            words = (
                f"the new token set could not be saved ({type(exc).__name__}); "
                "it is kept and saved again before it is used"
            )
            raise TokenError(words) from exc
        self._tokens, self._pending = issued, None
        # A set that answers a refusal is on probation until a request succeeds with it.
        self._suspect, self._forced = self._forced, False
        self._refreshes += 1
        log.info(
            "%s: new access token saved, good for %.0f s",
            self.integration,
            issued.expires_at - self.wall(),
        )

    def _failed(self, words: str) -> None:
        self._failures += 1
        self._failures_total += 1
        self._last_problem = words
        log.warning("%s: token refresh failed: %s", self.integration, words)
        self.on_problem(self.integration, words)

    def _backoff(self) -> float:
        return min(self.max_backoff, self.first_backoff * 2.0 ** min(self._failures - 1, 30))
