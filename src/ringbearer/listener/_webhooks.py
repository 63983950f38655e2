"""Provider webhooks: verify, read, commit, and only then answer 2xx.

A provider retries whatever it does not see answered 2xx, so the answer
waits for :meth:`Ingest.ingest` to return, which it does only once the
events are committed: a crash before that loses nothing, the provider sends
the delivery again, and the store keeps each event once by its id. A commit
that fails is answered 503, for the same retry.

A delivery seen before means different things per provider. Svix (Resend)
and Twilio send the same id on every retry of one event, so a seen id is a
redelivery of something already kept: 200, nothing changes. A Mailgun token
is fresh on every delivery Mailgun makes, so a seen one is a replay by
someone else: 401 and an audit event.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol

import attrs

from .._logging import fields
from .._secrets import Secret
from ..deliverability import ProviderEvent
from ._http import Request, Response
from ._providers import Malformed, mailgun_events, resend_events, twilio_events
from ._refusals import Refusals
from ._signatures import (
    Refused,
    Verification,
    Why,
    svix_headers,
    svix_key,
    verify_mailgun,
    verify_svix,
    verify_twilio,
)

log = logging.getLogger("ringbearer.webhooks")

SourceKind = Literal["resend", "mailgun", "twilio"]
SOURCE_KINDS: tuple[SourceKind, ...] = ("resend", "mailgun", "twilio")


@attrs.frozen
class WebhookSource:
    """A configured webhook endpoint: ``POST /webhooks/{name}``, signed as ``kind`` signs."""

    name: str  # the integration's config name; the events' ``source``
    kind: SourceKind
    secret: Secret  # Resend's whsec_ secret, Mailgun's signing key, Twilio's auth token

    def __attrs_post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"a webhook source is one of {', '.join(SOURCE_KINDS)}")
        if not self.name or "/" in self.name:
            raise ValueError("a webhook source's name is one path segment")
        if self.kind == "resend":
            svix_key(self.secret)  # refuse a bad secret at start-up, not at the first event


class Ingest(Protocol):
    """Where verified events go."""

    async def ingest(self, events: Sequence[ProviderEvent]) -> list[bool]:
        """Match and commit ``events``; return after the commit, True for each new one."""
        ...


@attrs.frozen
class Webhooks:
    """Answers ``POST /webhooks/{name}`` for the configured sources."""

    sources: Mapping[str, WebhookSource]
    ingest: Ingest
    refusals: Refusals
    wall: Callable[[], float]
    tolerance: float
    public_url: str = ""  # what providers call us by; "" = http://<Host>

    async def answer(self, name: str, request: Request) -> Response:
        source = self.sources[name]
        match source.kind:
            case "resend":
                return await self._resend(source, request)
            case "mailgun":
                return await self._mailgun(source, request)
            case "twilio":
                return await self._twilio(source, request)

    async def _resend(self, source: WebhookSource, request: Request) -> Response:
        verdict = verify_svix(
            svix_key(source.secret),
            request.headers,
            request.body,
            now=self.wall(),
            tolerance=self.tolerance,
        )
        if isinstance(verdict, Refused):
            return self._refuse(source, verdict)
        found = svix_headers(request.headers)
        event_id = found[0] if found is not None else ""
        try:
            events = resend_events(source.name, event_id, _json(request.body))
        except Malformed as exc:
            return Response.text(400, str(exc))
        return await self._commit(source, events, replay_refused=False)

    async def _mailgun(self, source: WebhookSource, request: Request) -> Response:
        try:
            document = _json(request.body)
        except Malformed:
            return self._refuse(source, Refused(Why.MALFORMED, "the body is not JSON"))
        verdict = verify_mailgun(source.secret, document)
        if isinstance(verdict, Refused):
            return self._refuse(source, verdict)
        try:
            events = mailgun_events(source.name, document)
        except Malformed as exc:
            return Response.text(400, str(exc))
        return await self._commit(source, events, replay_refused=True)

    async def _twilio(self, source: WebhookSource, request: Request) -> Response:
        try:
            params = urllib.parse.parse_qsl(
                request.body.decode(), keep_blank_values=True, strict_parsing=bool(request.body)
            )
        except (UnicodeDecodeError, ValueError):
            return self._refuse(source, Refused(Why.MALFORMED, "the body is not a form"))
        url = self.called_url(request)
        offered = request.headers.get("x-twilio-signature")
        verdict: Verification = verify_twilio(source.secret, url, params, offered)
        if isinstance(verdict, Refused):
            return self._refuse(source, verdict)
        try:
            events = twilio_events(source.name, dict(params), now=self.wall())
        except Malformed as exc:
            return Response.text(400, str(exc))
        return await self._commit(source, events, replay_refused=False)

    def called_url(self, request: Request) -> str:
        """The URL the provider called, as it signed it."""
        base = self.public_url.rstrip("/") or f"http://{request.headers.get('host', '')}"
        query = f"?{request.query}" if request.query else ""
        return f"{base}{request.raw_path}{query}"

    async def _commit(
        self, source: WebhookSource, events: Sequence[ProviderEvent], *, replay_refused: bool
    ) -> Response:
        if not events:
            return Response.text(200, "ok: nothing to record")
        try:
            fresh = await self.ingest.ingest(events)
        except Exception as exc:  # the provider retries a 503; trio.Cancelled is not an Exception
            log.error(
                "webhook events not committed",
                extra=fields(source=source.name, error=type(exc).__name__),
            )
            return Response.text(503, "not recorded; try again later", ("retry-after", "30"))
        if replay_refused and not all(fresh):
            return self._refuse(source, Refused(Why.REPLAYED, "a token seen before"))
        return Response.text(200, "ok" if all(fresh) else "ok: seen before")

    def _refuse(self, source: WebhookSource, refused: Refused) -> Response:
        return self.refusals.unauthorised(source.name, refused, integration=source.name)


def _json(body: bytes) -> object:
    try:
        document: object = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise Malformed("the body is not JSON") from exc
    return document
