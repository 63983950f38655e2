"""Preflight: is every enabled integration ready for the day, without sending anything?

Each integration goes through three steps, each ``pass``, ``warn`` or
``fail`` with a one-line reason, or ``skip`` when an earlier step failed:

1. ``config`` — its settings build an adapter (its kind and family noted);
2. ``credentials`` — every secret reference resolves; in the sandbox a
   missing one is the simulator's placeholder, which is a warning;
3. ``reachability`` — one probe from the table of :func:`probe_table`:

   * a read-only request where the provider has one: Resend ``GET /domains``,
     Mailgun ``GET /v3/domains/{domain}``, Slack ``auth.test``, Twilio's
     account, Instagram's publishing limit, X ``GET /2/users/me``;
   * for SMTP a session that stops before ``MAIL FROM``: connect, EHLO,
     STARTTLS and AUTH as configured, QUIT;
   * for the others a TCP connection to the provider's host (and a TLS
     handshake for https), which says nothing of the credentials.

The report is ``ready`` when everything passes, ``ready with warnings``, or
``not ready`` when anything fails. A reason never holds a secret: it names
references (``env RESEND_API_KEY``), and the providers' words are scrubbed
of every secret that was resolved.
"""

from __future__ import annotations

import enum
import smtplib
import ssl
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import attrs
import httpx
import trio

from ._config import Config, IntegrationSettings, resolve_secret, secret_refs
from ._converter import parse_host_port
from ._errors import RingbearerError
from ._secrets import Secret, SecretRef
from .integrations import AdapterContext, ProviderKind, provider_kinds
from .integrations._base import (
    USER_AGENT,
    Redactor,
    basic_auth,
    bearer,
    detail,
    json_object,
    secret_url,
    shorten,
)
from .integrations._graph import THROTTLING, GraphError
from .integrations._graph import url as graph_url
from .integrations._smtp import SmtpEndpoint, build_smtp
from .integrations.alerts import SLACK_SANDBOX_PATH
from .integrations.crm import HONEYBOOK_SANDBOX_PATH
from .integrations.email import _MAILGUN_REGIONS
from .integrations.social import X

EXIT_READY, EXIT_NOT_READY = 0, 1
NO_READ_ONLY = "this provider offers no read-only check"


class Verdict(enum.Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"  # not run, because an earlier step failed


class Stage(enum.Enum):
    CONFIG = "config"
    CREDENTIALS = "credentials"
    REACHABILITY = "reachability"


class Readiness(enum.Enum):
    READY = "ready"
    READY_WITH_WARNINGS = "ready with warnings"
    NOT_READY = "not ready"


@attrs.frozen
class Finding:
    """What one check found."""

    verdict: Verdict
    reason: str


@attrs.frozen
class Step:
    """One step of one integration's checks."""

    stage: Stage
    verdict: Verdict
    reason: str


def _worst(verdicts: list[Verdict]) -> Verdict:
    for verdict in (Verdict.FAIL, Verdict.WARN):
        if verdict in verdicts:
            return verdict
    return Verdict.PASS


@attrs.frozen
class IntegrationReport:
    """One integration's steps, in order."""

    name: str
    kind: str
    family: str
    steps: tuple[Step, ...]

    @property
    def verdict(self) -> Verdict:
        """The worst of its steps (a skipped step counts for nothing)."""
        return _worst([step.verdict for step in self.steps])


@attrs.frozen
class PreflightReport:
    """Every enabled integration's checks, in config order."""

    integrations: tuple[IntegrationReport, ...]
    sandbox: str | None = None  # the simulator's URL, when checked against it

    @property
    def readiness(self) -> Readiness:
        verdict = _worst([i.verdict for i in self.integrations])
        if verdict is Verdict.FAIL:
            return Readiness.NOT_READY
        return Readiness.READY_WITH_WARNINGS if verdict is Verdict.WARN else Readiness.READY

    @property
    def exit_code(self) -> int:
        """0 when ready (warnings or not), 1 when not ready."""
        return EXIT_NOT_READY if self.readiness is Readiness.NOT_READY else EXIT_READY

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON values (``ringbearer preflight --json``)."""
        return {
            "verdict": self.readiness.value,
            "exit_code": self.exit_code,
            "sandbox": self.sandbox,
            "integrations": [
                {
                    "name": i.name,
                    "kind": i.kind,
                    "family": i.family,
                    "verdict": i.verdict.value,
                    "steps": [
                        {"step": s.stage.value, "verdict": s.verdict.value, "reason": s.reason}
                        for s in i.steps
                    ],
                }
                for i in self.integrations
            ],
        }


# --- the probes ----------------------------------------------------------------

# Each takes the provider's own settings and the adapter context the daemon
# would build (base URL override in the sandbox, secrets), as adapters do.
UrlOf = Callable[[Any, AdapterContext], str]
HeadersOf = Callable[
    [Any, AdapterContext, str, str], Mapping[str, str]
]  # settings, ctx, method, url
Reader = Callable[[Any, httpx.Response], Finding]


@attrs.frozen
class ReadOnly:
    """A request that reads and changes nothing, and how to read its answer."""

    method: str
    url: UrlOf
    headers: HeadersOf
    read: Reader


@attrs.frozen
class Connect:
    """No read-only call: a TCP connection to the provider's host (and TLS for https)."""

    url: UrlOf


@attrs.frozen
class SmtpSession:
    """Connect, EHLO, STARTTLS and AUTH as configured, then QUIT: never MAIL FROM."""


Probe = ReadOnly | Connect | SmtpSession


def probe_table() -> dict[str, Probe]:
    """One probe per provider kind."""
    base = Connect(_base_url)
    twilio = ReadOnly("GET", _twilio_url, _twilio_auth, _read_twilio)
    return {
        "resend": ReadOnly("GET", _resend_url, _bearer("api_key"), _read_resend),
        "mailgun": ReadOnly("GET", _mailgun_url, _mailgun_auth, _read_mailgun),
        "smtp": SmtpSession(),
        "slack_webhook": Connect(_secret_url("url", SLACK_SANDBOX_PATH)),
        "slack_chat": ReadOnly("POST", _slack_url, _bearer("token"), _read_slack),
        "pagerduty": base,
        "twilio_sms": twilio,
        "twilio_call": twilio,
        "mixpanel": base,
        "amplitude": base,
        "tave": base,
        "light_blue": base,
        "honeybook": Connect(_secret_url("hook_url", HONEYBOOK_SANDBOX_PATH)),
        "facebook_page": base,
        "instagram": ReadOnly("GET", _instagram_url, _no_headers, _read_instagram),
        "linkedin": base,
        "x": ReadOnly("GET", _x_url, _x_auth, _read_x),
    }


def _base_url(settings: Any, ctx: AdapterContext) -> str:
    return ctx.base_url(settings.base_url)


def _secret_url(field: str, sandbox_path: str) -> UrlOf:
    def url(settings: Any, ctx: AdapterContext) -> str:
        return secret_url(ctx, getattr(settings, field), sandbox_path).reveal()

    return url


def _bearer(field: str) -> HeadersOf:
    def headers(settings: Any, ctx: AdapterContext, method: str, url: str) -> Mapping[str, str]:
        return {"Authorization": bearer(ctx.secrets(getattr(settings, field)))}

    return headers


def _no_headers(settings: Any, ctx: AdapterContext, method: str, url: str) -> Mapping[str, str]:
    return {}


def _resend_url(settings: Any, ctx: AdapterContext) -> str:
    return f"{ctx.base_url(settings.base_url)}/domains"


def _mailgun_url(settings: Any, ctx: AdapterContext) -> str:
    base = ctx.base_url(settings.base_url or _MAILGUN_REGIONS[settings.region])
    return f"{base}/v3/domains/{quote(settings.domain)}"


def _mailgun_auth(settings: Any, ctx: AdapterContext, method: str, url: str) -> Mapping[str, str]:
    return {"Authorization": basic_auth("api", ctx.secrets(settings.api_key))}


def _slack_url(settings: Any, ctx: AdapterContext) -> str:
    # As the adapter: the simulator serves the real /api path under its prefix.
    api = ctx.base_url("") + "/api" if ctx.base_url_override else settings.base_url
    return f"{api.rstrip('/')}/auth.test"


def _twilio_url(settings: Any, ctx: AdapterContext) -> str:
    return f"{ctx.base_url(settings.base_url)}/2010-04-01/Accounts/{settings.account_sid}.json"


def _twilio_auth(settings: Any, ctx: AdapterContext, method: str, url: str) -> Mapping[str, str]:
    endpoint = settings.endpoint(ctx, "Messages")  # the account's or the API key's pair
    return {"Authorization": basic_auth(endpoint.user, endpoint.password)}


def _instagram_url(settings: Any, ctx: AdapterContext) -> str:
    base = ctx.base_url(settings.base_url)
    url = graph_url(base, settings.api_version, settings.ig_user_id, "content_publishing_limit")
    # The documented way to pass the token is the access_token parameter.
    token = ctx.secrets(settings.access_token).reveal()
    return f"{url}?{urlencode({'fields': 'quota_usage,config', 'access_token': token})}"


def _x_url(settings: Any, ctx: AdapterContext) -> str:
    return f"{ctx.base_url(settings.base_url)}/2/users/me"


def _x_auth(settings: Any, ctx: AdapterContext, method: str, url: str) -> Mapping[str, str]:
    # The adapter's own signer: OAuth 1.0a signs this method and URL anew.
    return {"Authorization": X.from_settings(settings, ctx).auth.authorization(method, url)}


# --- reading the answers ---------------------------------------------------------


def _refused(response: httpx.Response, words: str) -> Finding:
    """The common reading of a failed read-only request."""
    status = response.status_code
    if status in (401, 403):
        return Finding(Verdict.FAIL, f"credentials refused (HTTP {status}: {words})")
    if status == 429:
        return Finding(Verdict.WARN, f"rate limited (HTTP 429: {words}); credentials unchecked")
    return Finding(Verdict.FAIL, f"HTTP {status}: {words}")


def _body(response: httpx.Response) -> dict[str, Any]:
    return json_object(response) or {}


def _read_resend(settings: Any, response: httpx.Response) -> Finding:
    body = _body(response)
    if response.status_code == 401 and body.get("name") == "restricted_api_key":
        return Finding(Verdict.PASS, "key accepted (a sending-only key: it may not list domains)")
    if not response.is_success:
        return _refused(response, detail(response, "name", "message"))
    data = body.get("data")
    domains = [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []
    verified = [str(d.get("name")) for d in domains if d.get("status") == "verified"]
    if not verified:
        words = f"key accepted, but none of its {len(domains)} domain(s) is verified"
        return Finding(Verdict.WARN, words)
    return Finding(Verdict.PASS, shorten(f"key accepted; verified: {', '.join(verified)}", 120))


def _read_mailgun(settings: Any, response: httpx.Response) -> Finding:
    words = detail(response, "message")
    if response.status_code == 404:
        return Finding(Verdict.FAIL, f"domain {settings.domain} not found (HTTP 404: {words})")
    if not response.is_success:
        return _refused(response, words)
    domain = _body(response).get("domain")
    state = domain.get("state") if isinstance(domain, dict) else None
    if state is not None and state != "active":
        return Finding(Verdict.WARN, f"key accepted, but domain {settings.domain} is {state}")
    return Finding(Verdict.PASS, f"key accepted; domain {settings.domain} is {state or 'found'}")


_SLACK_AUTH_WORDS = frozenset(
    {"not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired"}
)


def _read_slack(settings: Any, response: httpx.Response) -> Finding:
    if not response.is_success:
        return _refused(response, detail(response, "error"))
    body = json_object(response)
    if body is None or not isinstance(body.get("ok"), bool):
        return Finding(Verdict.FAIL, "malformed answer: expected a JSON object with 'ok'")
    if not body["ok"]:
        error = str(body.get("error") or "no error word")
        refused = "credentials refused" if error in _SLACK_AUTH_WORDS else "refused"
        return Finding(Verdict.FAIL, f"{refused}: {error}")
    who = f"token accepted: {body.get('user', '?')} in {body.get('team', '?')}"
    # Slack lists a token's scopes in this header; posting needs chat:write.
    scopes = response.headers.get("x-oauth-scopes")
    if scopes is not None and "chat:write" not in {s.strip() for s in scopes.split(",")}:
        return Finding(Verdict.WARN, f"{who}, but it lacks the chat:write scope")
    return Finding(Verdict.PASS, who)


def _read_twilio(settings: Any, response: httpx.Response) -> Finding:
    words = detail(response, "code", "message")
    if response.status_code == 404:
        return Finding(Verdict.FAIL, f"account {settings.account_sid} not found ({words})")
    if not response.is_success:
        return _refused(response, words)
    body = _body(response)
    status, kind = body.get("status"), body.get("type")
    if status in ("suspended", "closed"):
        return Finding(Verdict.FAIL, f"credentials accepted, but the account is {status}")
    if kind == "Trial":
        words = "credentials accepted; a trial account texts and calls verified numbers only"
        return Finding(Verdict.WARN, words)
    return Finding(Verdict.PASS, f"credentials accepted; the account is {status or 'found'}")


_GRAPH_AUTH_CODES = frozenset({102, 104, 190})


def _read_instagram(settings: Any, response: httpx.Response) -> Finding:
    if not response.is_success:
        error = GraphError.of(response)
        if error is None:
            return _refused(response, detail(response))
        if error.code in _GRAPH_AUTH_CODES:
            return Finding(Verdict.FAIL, f"credentials refused {error.words}")
        if error.code in THROTTLING:
            return Finding(Verdict.WARN, f"rate limited {error.words}; credentials unchecked")
        return Finding(Verdict.FAIL, f"HTTP {response.status_code}: {error.words}")
    data = _body(response).get("data")
    usage = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    used, config = usage.get("quota_usage"), usage.get("config")
    total = config.get("quota_total") if isinstance(config, dict) else None
    if not isinstance(used, int) or not isinstance(total, int):
        return Finding(Verdict.PASS, "token accepted")
    if used >= total:
        words = f"token accepted, but the publishing cap is reached ({used} of {total} in 24 h)"
        return Finding(Verdict.WARN, words)
    return Finding(Verdict.PASS, f"token accepted; {used} of {total} posts used in 24 h")


def _read_x(settings: Any, response: httpx.Response) -> Finding:
    if not response.is_success:
        return _refused(response, detail(response, "title", "detail"))
    data = _body(response).get("data")
    username = data.get("username") if isinstance(data, dict) else None
    return Finding(Verdict.PASS, f"authenticated as @{username}" if username else "authenticated")


# --- running the probes ------------------------------------------------------------


def _transport_failure(exc: httpx.HTTPError) -> Finding:
    words = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return Finding(Verdict.FAIL, f"unreachable: {words}")
    return Finding(Verdict.FAIL, f"no answer: {words}")


async def _read_only(
    probe: ReadOnly, settings: Any, ctx: AdapterContext, client: httpx.AsyncClient
) -> Finding:
    url = probe.url(settings, ctx)
    headers = {"Accept": "application/json", **probe.headers(settings, ctx, probe.method, url)}
    try:
        request = client.build_request(probe.method, url, headers=headers)
    except httpx.InvalidURL:
        # The message would name the URL, which may hold a secret.
        return Finding(Verdict.FAIL, "the configured URL is invalid")
    try:
        response = await client.send(request)
    except httpx.HTTPError as exc:
        return _transport_failure(exc)
    found = probe.read(settings, response)
    return attrs.evolve(found, reason=f"{probe.method} {request.url.path}: {found.reason}")


async def _connect(url: str, ssl_context: ssl.SSLContext) -> Finding:
    try:
        parts = httpx.URL(url)
    except httpx.InvalidURL:
        return Finding(Verdict.FAIL, "the configured URL is invalid")
    if parts.scheme not in ("http", "https") or not parts.host:
        return Finding(Verdict.FAIL, "the configured URL is not an absolute http(s) URL")
    host, tls = parts.host, parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError as exc:
        return Finding(Verdict.FAIL, f"unreachable: {host}:{port}: {exc.strerror or exc}")
    if not tls:
        await stream.aclose()
        return Finding(Verdict.PASS, f"{host}:{port} reachable; {NO_READ_ONLY}")
    return await _handshake(trio.SSLStream(stream, ssl_context, server_hostname=host), host, port)


async def _handshake(tls: trio.SSLStream[trio.SocketStream], host: str, port: int) -> Finding:
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        return Finding(Verdict.FAIL, f"TLS failed with {host}:{port}: {exc.__cause__ or exc}")
    finally:
        await trio.aclose_forcefully(tls)
    return Finding(Verdict.PASS, f"{host}:{port} reachable (TLS); {NO_READ_ONLY}")


def _smtp_handshake(endpoint: SmtpEndpoint) -> Finding:
    """Blocking: open a session as the adapter does, and QUIT before any transaction."""
    where = str(endpoint)
    try:
        conn = endpoint.connect()
    except smtplib.SMTPAuthenticationError as exc:
        return Finding(Verdict.FAIL, f"{where}: credentials refused ({_smtp_words(exc)})")
    except smtplib.SMTPResponseException as exc:
        return Finding(Verdict.FAIL, f"{where}: {_smtp_words(exc)}")
    except smtplib.SMTPException as exc:
        return Finding(Verdict.FAIL, f"{where}: {exc}")
    except ssl.SSLError as exc:
        return Finding(Verdict.FAIL, f"TLS failed with {where}: {exc}")
    except OSError as exc:
        return Finding(Verdict.FAIL, f"unreachable: {where}: {exc.strerror or exc}")
    done = ["EHLO"]
    done += {"starttls": ["STARTTLS"], "tls": ["TLS"]}.get(endpoint.security, [])
    # The adapter's rule: the simulator's server may not offer AUTH; a real one must.
    if endpoint.credentials is not None and (conn.has_extn("auth") or not endpoint.sandbox):
        done.append("AUTH")
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        conn.close()
    return Finding(Verdict.PASS, f"{where}: {', '.join(done)} accepted; QUIT before MAIL FROM")


def _smtp_words(exc: smtplib.SMTPResponseException) -> str:
    error = exc.smtp_error
    text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
    return f"SMTP {exc.smtp_code}: {shorten(text)}"


# --- the checks of one integration ---------------------------------------------------


def _placeholder(ref: SecretRef) -> Secret:
    return Secret("preflight")


def _config_step(
    settings: IntegrationSettings, row: ProviderKind | None, ctx: AdapterContext
) -> Step:
    if row is None:
        return Step(Stage.CONFIG, Verdict.FAIL, f"no provider of kind {settings.kind!r}")
    try:
        # Placeholder secrets: this step is about the settings, not the secrets.
        row.build(settings.provider, attrs.evolve(ctx, secrets=_placeholder))
    except (RingbearerError, ValueError, TypeError) as exc:
        return Step(Stage.CONFIG, Verdict.FAIL, f"the settings build no adapter: {exc}")
    return Step(Stage.CONFIG, Verdict.PASS, f"kind {settings.kind}, family {settings.family}")


def _credentials_step(
    settings: IntegrationSettings, sandbox: bool, environ: Mapping[str, str] | None
) -> tuple[Step, tuple[Secret, ...]]:
    """The step, and the secrets found (for scrubbing the reasons)."""
    refs = [ref for _, ref in secret_refs(settings.provider)]
    found = {ref: ref.resolve(environ) for ref in refs}
    missing = [ref.describe() for ref, secret in found.items() if secret is None]
    present = [ref.describe() for ref, secret in found.items() if secret is not None]
    secrets = tuple(secret for secret in found.values() if secret is not None)
    if not refs:
        return Step(Stage.CREDENTIALS, Verdict.PASS, "none needed"), secrets
    if not missing:
        return Step(Stage.CREDENTIALS, Verdict.PASS, f"found: {', '.join(present)}"), secrets
    if not sandbox:
        return Step(Stage.CREDENTIALS, Verdict.FAIL, f"not found: {', '.join(missing)}"), secrets
    reason = f"not set, the sandbox's placeholder stands in: {', '.join(missing)}"
    return Step(Stage.CREDENTIALS, Verdict.WARN, reason), secrets


@attrs.frozen
class _Checker:
    """What every integration's checks share."""

    kinds: Mapping[str, ProviderKind]
    probes: Mapping[str, Probe]
    client: httpx.AsyncClient
    ssl_context: ssl.SSLContext
    timeout: float
    sandbox_url: str | None
    smtp: tuple[str, int] | None
    environ: Mapping[str, str] | None

    def context(self, settings: IntegrationSettings) -> AdapterContext:
        sandbox = self.sandbox_url is not None
        return AdapterContext(
            name=settings.name,
            timeout=self.timeout,
            ssl_context=self.ssl_context,
            secrets=lambda ref: resolve_secret(ref, sandbox, self.environ),
            base_url_override=_prefix(self.sandbox_url, settings.kind) if sandbox else None,
            smtp_override=self.smtp,
        )

    async def check(self, settings: IntegrationSettings) -> IntegrationReport:
        ctx = self.context(settings)
        config = _config_step(settings, self.kinds.get(settings.kind), ctx)
        credentials, secrets = _credentials_step(
            settings, self.sandbox_url is not None, self.environ
        )
        steps = [config]
        if config.verdict is Verdict.FAIL:
            steps += [_skipped(Stage.CREDENTIALS), _skipped(Stage.REACHABILITY)]
        elif credentials.verdict is Verdict.FAIL:
            steps += [credentials, _skipped(Stage.REACHABILITY)]
        else:
            found = await self.reach(settings, ctx)
            steps += [credentials, Step(Stage.REACHABILITY, found.verdict, found.reason)]
        redactor = Redactor(secrets)
        scrubbed = tuple(attrs.evolve(s, reason=redactor.text(s.reason)) for s in steps)
        return IntegrationReport(settings.name, settings.kind, settings.family, scrubbed)

    async def reach(self, settings: IntegrationSettings, ctx: AdapterContext) -> Finding:
        probe = self.probes.get(settings.kind)
        if probe is None:
            return Finding(Verdict.WARN, f"no probe for kind {settings.kind!r}: not checked")
        with trio.move_on_after(self.timeout):
            return await self.run(probe, settings.provider, ctx)
        return Finding(Verdict.FAIL, f"no answer within {self.timeout:g}s")

    async def run(self, probe: Probe, settings: Any, ctx: AdapterContext) -> Finding:
        match probe:
            case ReadOnly():
                return await _read_only(probe, settings, ctx, self.client)
            case Connect():
                return await _connect(probe.url(settings, ctx), ctx.ssl_context)
            case SmtpSession():
                endpoint = build_smtp(settings, ctx).endpoint
                # The socket timeout ends an abandoned thread soon after.
                return await trio.to_thread.run_sync(
                    _smtp_handshake, endpoint, abandon_on_cancel=True
                )


def _skipped(stage: Stage) -> Step:
    return Step(stage, Verdict.SKIP, "not checked: an earlier step failed")


def _prefix(sandbox_url: str | None, kind: str) -> str:
    """Where the simulator serves a kind, as the daemon's ``Sandbox.prefix`` says."""
    return f"{(sandbox_url or '').rstrip('/')}/{kind.replace('_', '-')}"


# --- entry points ------------------------------------------------------------------


async def preflight(
    config: Config,
    *,
    kinds: Mapping[str, ProviderKind] | None = None,
    sandbox_url: str | None = None,
    smtp: tuple[str, int] | None = None,
    environ: Mapping[str, str] | None = None,
    # Each probe's own bound, as an adapter's timeout is each request's: a
    # caller's cancel scope could only end all of them at once.
    timeout: float = 10.0,  # noqa: ASYNC109
    ssl_context: ssl.SSLContext | None = None,
) -> PreflightReport:
    """Check every enabled integration, concurrently, each probe within ``timeout`` seconds.

    With ``sandbox_url`` the probes go to the simulator there (and SMTP to
    ``smtp``), and missing secrets are its placeholders; without it, to the
    providers the settings name. ``environ`` stands in for ``os.environ``.
    """
    enabled = [s for s in config.integrations.values() if s.enabled]
    results: dict[str, IntegrationReport] = {}
    ssl_context = ssl_context or ssl.create_default_context()
    async with _client(ssl_context, timeout) as client:
        checker = _Checker(
            kinds=provider_kinds() if kinds is None else kinds,
            probes=probe_table(),
            client=client,
            ssl_context=ssl_context,
            timeout=timeout,
            sandbox_url=sandbox_url,
            smtp=smtp,
            environ=environ,
        )

        async def check(settings: IntegrationSettings) -> None:
            results[settings.name] = await checker.check(settings)

        async with trio.open_nursery() as nursery:
            for settings in enabled:
                nursery.start_soon(check, settings)
    return PreflightReport(tuple(results[s.name] for s in enabled), sandbox_url)


def _client(ssl_context: ssl.SSLContext, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=ssl_context,
        timeout=httpx.Timeout(timeout, connect=timeout / 2),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        trust_env=False,
    )


async def preflight_as_configured(
    config: Config,
    *,
    environ: Mapping[str, str] | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109 (each probe's bound, as in preflight)
) -> PreflightReport:
    """Check where the daemon would send: the providers, or its sandbox.

    A sandbox with no ``url`` is started here, in-process, as the daemon
    starts it, and stopped once the checks are done.
    """
    sandbox = config.sandbox
    if not sandbox.enabled:
        return await preflight(config, environ=environ, timeout=timeout)
    if sandbox.url:
        smtp = parse_host_port(sandbox.smtp) if sandbox.smtp else None
        return await preflight(
            config, sandbox_url=sandbox.url, smtp=smtp, environ=environ, timeout=timeout
        )
    from ._daemon import _start_sandbox  # the daemon imports this module's users

    async with trio.open_nursery() as nursery:
        started = await _start_sandbox(config, nursery)
        assert started is not None  # enabled, with no url: started here
        report = await preflight(
            config, sandbox_url=started.url, smtp=started.smtp, environ=environ, timeout=timeout
        )
        nursery.cancel_scope.cancel()
    return report


# --- the text report -----------------------------------------------------------------


def format_report(report: PreflightReport) -> str:
    """A table: one row per step, the integration named on its first row."""
    where = f"the sandbox at {report.sandbox}" if report.sandbox else "the providers"
    rows = [("INTEGRATION", "KIND", "STEP", "RESULT", "REASON")]
    for i in report.integrations:
        for n, step in enumerate(i.steps):
            name, kind = (i.name, i.kind) if n == 0 else ("", "")
            rows.append((name, kind, step.stage.value, step.verdict.value, step.reason))
    widths = [max(len(row[c]) for row in rows) for c in range(4)]
    lines = [f"preflight against {where}", ""]
    for row in rows:
        cells = [value.ljust(width) for value, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join([*lines, "", _summary(report)])


def _summary(report: PreflightReport) -> str:
    counts = {v: 0 for v in (Verdict.PASS, Verdict.WARN, Verdict.FAIL)}
    for i in report.integrations:
        counts[i.verdict] += 1
    tally = ", ".join(f"{n} {v.value}" for v, n in counts.items())
    return f"{report.readiness.value}: {len(report.integrations)} integrations ({tally})"
