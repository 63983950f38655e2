"""The public listener, wired: which webhooks it takes, with which secrets, and where it is.

Each integration that reports back gets ``POST /webhooks/<its name>``:
Resend with its ``webhook_secret`` (a ``whsec_`` Svix secret), Mailgun with
its ``webhook_signing_key``, Twilio SMS with its auth token. One without its
secret takes no events (in the sandbox a fixed stand-in is used, and the
simulator is told it). PagerDuty's acknowledgements come here too.

Once bound, the listener's URL is the public address unless ``[webhooks]
public_url`` names the operator's proxy: unsubscribe links and Twilio's
``StatusCallback`` are made from it.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import httpx
import trio

from ._config import Config, resolve_secret
from ._converter import parse_host_port
from ._errors import RingbearerError, cannot
from ._logging import fields
from ._parts import Parts
from ._secrets import Secret, SecretRef
from .control import Submit
from .control._replies import SubmitReply
from .handlers import answer
from .listener import (
    IntakeParts,
    ListenerParts,
    PagerDutyHook,
    WebhookSource,
    build_app,
    producers,
    serve,
)
from .listener._webhooks import SourceKind

log = logging.getLogger("ringbearer.webhooks")

# Stand-ins for the sandbox, where no real provider signs anything: public on purpose.
SANDBOX_RESEND_SECRET = Secret(
    "whsec_" + base64.b64encode(b"ringbearer sandbox resend webhooks").decode()
)
SANDBOX_MAILGUN_KEY = Secret("ringbearer-sandbox-mailgun-signing-key")
_SECRET_FIELDS = {"resend": "webhook_secret", "mailgun": "webhook_signing_key"}
_SANDBOX_SECRETS = {"resend": SANDBOX_RESEND_SECRET, "mailgun": SANDBOX_MAILGUN_KEY}


def webhook_sources(config: Config, sandbox: bool) -> list[WebhookSource]:
    """The webhook endpoints of ``config``'s enabled integrations that report back."""
    sources = []
    for name, settings in config.integrations.items():
        if not settings.enabled:
            continue
        if settings.kind == "twilio_sms":
            token = resolve_secret(settings.provider.auth_token, sandbox=sandbox)
            sources.append(WebhookSource(name, "twilio", token))
        elif settings.kind in _SECRET_FIELDS:
            secret = _secret(getattr(settings.provider, _SECRET_FIELDS[settings.kind]))
            if secret is None and sandbox:
                secret = _SANDBOX_SECRETS[settings.kind]
            if secret is not None:
                kind: SourceKind = "resend" if settings.kind == "resend" else "mailgun"
                sources.append(WebhookSource(name, kind, secret))
    return sources


def _secret(ref: SecretRef | None) -> Secret | None:
    return ref.resolve() if ref is not None else None


def _pagerduty(parts: Parts) -> PagerDutyHook | None:
    alerting = parts.current.value.alerting
    if alerting.pagerduty_webhook_secret is None:
        return None
    secret = resolve_secret(
        alerting.pagerduty_webhook_secret, sandbox=parts.base.sandbox is not None
    )
    return PagerDutyHook(secret, parts.alerts.ack_key, alerting.pagerduty_webhook_path)


def _intake(parts: Parts) -> IntakeParts | None:
    """``POST /v1/messages`` when ``[intake]`` enables it: the socket's own submit handler,
    behind the producers' tokens (read now: a missing one stops the start, named)."""
    settings = parts.current.value.intake
    if not settings.enabled:
        return None
    table = parts.table

    async def submit(request: Submit) -> SubmitReply:
        reply = await answer(table, request)
        assert isinstance(reply, SubmitReply)
        return reply

    return IntakeParts(producers(settings), submit)


async def serve_public(parts: Parts, nursery: trio.Nursery) -> None:
    """Start the public listener if ``[webhooks]`` enables it; learn and tell its address."""
    config = parts.current.value
    if not config.webhooks.enabled:
        return
    sources = webhook_sources(config, sandbox=parts.base.sandbox is not None)
    listener = ListenerParts(
        ingest=parts.events.ingest,
        unsubscriber=parts.events.unsubscriber,
        audit=parts.base.store,
        tokens=parts.intake.tokens,
        wall=parts.base.wall,
        pagerduty=_pagerduty(parts),
        intake=_intake(parts),
    )
    app = build_app(config.webhooks, sources, listener)
    with cannot(f"listen for webhooks on {config.webhooks.listen} ([webhooks] listen)"):
        port = await nursery.start(serve, app, config.webhooks)
    host, _ = parse_host_port(config.webhooks.listen)
    public = parts.intake.public
    if public.url is None:
        public.url = f"http://{_url_host(host)}:{port}"
    parts.addresses.webhooks = public.url
    log.info("webhooks", extra=fields(url=public.url, sources=",".join(s.name for s in sources)))
    if parts.base.sandbox is not None:
        await _tell_simulator(parts.base.sandbox.url, sources, public.url)


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


async def _tell_simulator(simulator: str, sources: list[WebhookSource], base: str) -> None:
    """The sandbox's simulator posts Resend's and Mailgun's events where these sources are."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        for source in sources:
            if source.kind == "twilio":
                continue  # Twilio posts to each message's StatusCallback
            body: dict[str, Any] = {
                "provider": source.kind,
                "url": f"{base.rstrip('/')}/webhooks/{source.name}",
                "secret": source.secret.reveal(),
            }
            try:
                answer = await client.post(f"{simulator.rstrip('/')}/_sim/webhooks", json=body)
                answer.raise_for_status()
            except httpx.HTTPError as exc:
                what = f"register the sandbox's {source.kind} webhook with the simulator"
                raise RingbearerError(f"cannot {what}: {exc}") from exc
