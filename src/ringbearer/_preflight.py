"""Preflight: is every enabled integration ready for the day, without sending anything?

Each integration goes through three steps, each ``pass``, ``warn`` or
``fail`` with a one-line reason, or ``skip`` when an earlier step failed:

1. ``config`` — its settings build an adapter (its kind and family noted);
2. ``credentials`` — every secret reference resolves; in the sandbox a
   missing one is the simulator's placeholder, which is a warning;
3. ``reachability`` — the probe its row of the provider table carries
   (see :mod:`.integrations._base`), built from the adapter's own base URL
   and credentials: a read-only request where the provider has one (Resend
   ``GET /domains``, Mailgun's domain, Slack ``auth.test``, Twilio's
   account, Instagram's publishing limit, X ``GET /2/users/me``), an SMTP
   session that QUITs before ``MAIL FROM``, else a TCP connection to the
   provider's host (and a TLS handshake for https), which says nothing of
   the credentials.

:func:`preflight` checks where a running daemon sends: its sandbox, or the
providers. :func:`preflight_as_configured` checks from the config alone,
starting a simulator of its own when the sandbox is on and names no ``url``.
The report's ``checked`` says which.

The report is ``ready`` when everything passes, ``ready with warnings``, or
``not ready`` when anything fails. A reason never holds a secret: it names
references (``env RESEND_API_KEY``), and the providers' words are scrubbed
of every secret that was resolved. The report and its parts are frozen
attrs classes of plain values, so the project's converter carries them over
the control socket.
"""

from __future__ import annotations

import enum
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import httpx
import trio

from ._config import Config, IntegrationSettings, resolve_secret, secret_refs
from ._errors import RingbearerError
from ._sandbox import Sandbox, start_sandbox
from ._secrets import Secret, SecretRef
from .control import _replies as r
from .integrations import (
    AdapterContext,
    Connect,
    InThread,
    Probe,
    ProviderKind,
    ReadOnly,
    provider_kinds,
)
from .integrations import Finding as Finding
from .integrations import Verdict as Verdict
from .integrations._base import USER_AGENT, Redactor

EXIT_READY, EXIT_NOT_READY = 0, 1
NO_READ_ONLY = "this provider offers no read-only check"


class Stage(enum.Enum):
    CONFIG = "config"
    CREDENTIALS = "credentials"
    REACHABILITY = "reachability"


class Readiness(enum.Enum):
    READY = "ready"
    READY_WITH_WARNINGS = "ready with warnings"
    NOT_READY = "not ready"


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


def _where(report: PreflightReport) -> str:
    return f"the sandbox at {report.sandbox}" if report.sandbox else "the providers"


@attrs.frozen
class PreflightReport:
    """Every enabled integration's checks, in config order, and what was checked."""

    integrations: tuple[IntegrationReport, ...]
    sandbox: str | None = None  # the simulator's URL, when checked against it
    checked: str = attrs.field(default=attrs.Factory(_where, takes_self=True))

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

    def reply(self) -> r.PreflightReply:
        """The report as it crosses the wire (and ``ringbearer preflight --json``)."""
        return r.PreflightReply(
            verdict=self.readiness.value,
            exit_code=self.exit_code,
            checked=self.checked,
            sandbox=self.sandbox,
            integrations=[
                r.PreflightIntegration(
                    i.name,
                    i.kind,
                    i.family,
                    i.verdict.value,
                    [r.PreflightStep(s.stage.value, s.verdict.value, s.reason) for s in i.steps],
                )
                for i in self.integrations
            ],
        )


# --- running the probes ------------------------------------------------------------


def _transport_failure(exc: httpx.HTTPError) -> Finding:
    words = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return Finding(Verdict.FAIL, f"unreachable: {words}")
    return Finding(Verdict.FAIL, f"no answer: {words}")


async def _read_only(
    probe: ReadOnly, settings: Any, ctx: AdapterContext, client: httpx.AsyncClient
) -> Finding:
    call = probe.call(settings, ctx)
    headers = {"Accept": "application/json", **call.headers}
    try:
        request = client.build_request(
            call.method, call.url, headers=headers, json=call.json, data=call.form
        )
    except httpx.InvalidURL:
        # The message would name the URL, which may hold a secret.
        return Finding(Verdict.FAIL, "the configured URL is invalid")
    try:
        response = await client.send(request)
    except httpx.HTTPError as exc:
        return _transport_failure(exc)
    found = probe.read(settings, response)
    return attrs.evolve(found, reason=f"{call.method} {request.url.path}: {found.reason}")


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


def _skipped(stage: Stage) -> Step:
    return Step(stage, Verdict.SKIP, "not checked: an earlier step failed")


@attrs.frozen
class _Checker:
    """What every integration's checks share."""

    kinds: Mapping[str, ProviderKind]
    client: httpx.AsyncClient
    ssl_context: ssl.SSLContext
    timeout: float
    sandbox: Sandbox | None
    environ: Mapping[str, str] | None

    def context(self, settings: IntegrationSettings) -> AdapterContext:
        """The context the daemon would build: the sandbox's prefix and SMTP, if any."""
        sandbox = self.sandbox
        return AdapterContext(
            name=settings.name,
            timeout=self.timeout,
            ssl_context=self.ssl_context,
            secrets=lambda ref: resolve_secret(ref, sandbox is not None, self.environ),
            base_url_override=sandbox.prefix(settings.kind) if sandbox else None,
            smtp_override=sandbox.smtp if sandbox else None,
        )

    async def check_all(
        self, enabled: Sequence[IntegrationSettings]
    ) -> tuple[IntegrationReport, ...]:
        """Every integration checked at once; the reports in the given order."""
        results: dict[str, IntegrationReport] = {}

        async def check(settings: IntegrationSettings) -> None:
            results[settings.name] = await self.check(settings)

        async with trio.open_nursery() as nursery:
            for settings in enabled:
                nursery.start_soon(check, settings)
        return tuple(results[s.name] for s in enabled)

    async def check(self, settings: IntegrationSettings) -> IntegrationReport:
        ctx = self.context(settings)
        row = self.kinds.get(settings.kind)
        config = _config_step(settings, row, ctx)
        credentials, secrets = _credentials_step(settings, self.sandbox is not None, self.environ)
        steps = [config]
        if row is None or config.verdict is Verdict.FAIL:
            steps += [_skipped(Stage.CREDENTIALS), _skipped(Stage.REACHABILITY)]
        elif credentials.verdict is Verdict.FAIL:
            steps += [credentials, _skipped(Stage.REACHABILITY)]
        else:
            found = await self.reach(settings, row.probe, ctx)
            steps += [credentials, Step(Stage.REACHABILITY, found.verdict, found.reason)]
        redactor = Redactor(secrets)
        scrubbed = tuple(attrs.evolve(s, reason=redactor.text(s.reason)) for s in steps)
        return IntegrationReport(settings.name, settings.kind, settings.family, scrubbed)

    async def reach(
        self, settings: IntegrationSettings, probe: Probe | None, ctx: AdapterContext
    ) -> Finding:
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
            case InThread():
                # The check's own socket timeout ends an abandoned thread soon after.
                return await trio.to_thread.run_sync(
                    probe.check, settings, ctx, abandon_on_cancel=True
                )


# --- entry points ------------------------------------------------------------------


def _daemon_checked(sandbox: Sandbox | None) -> str:
    if sandbox is None:
        return "the providers of the running daemon"
    return f"the running daemon's sandbox at {sandbox.url}"


async def preflight(
    config: Config,
    *,
    sandbox: Sandbox | None,
    kinds: Mapping[str, ProviderKind] | None = None,
    # Each probe's own bound, as an adapter's timeout is each request's: a
    # caller's cancel scope could only end all of them at once.
    timeout: float = 10.0,  # noqa: ASYNC109
    environ: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    checked: str | None = None,
) -> PreflightReport:
    """Check every enabled integration where a daemon sends, each probe within ``timeout`` s.

    With ``sandbox`` (a running daemon's) the probes go to its simulator and
    missing secrets are its placeholders; with None, to the providers the
    settings name. ``environ`` stands in for ``os.environ``; ``checked``
    for the report's account of what was checked.
    """
    enabled = [s for s in config.integrations.values() if s.enabled]
    ssl_context = ssl_context or ssl.create_default_context()
    async with _client(ssl_context, timeout) as client:
        checker = _Checker(
            kinds=provider_kinds() if kinds is None else kinds,
            client=client,
            ssl_context=ssl_context,
            timeout=timeout,
            sandbox=sandbox,
            environ=environ,
        )
        reports = await checker.check_all(enabled)
    where = checked or _daemon_checked(sandbox)
    return PreflightReport(reports, sandbox.url if sandbox else None, where)


def _client(ssl_context: ssl.SSLContext, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=ssl_context,
        timeout=httpx.Timeout(timeout, connect=timeout / 2),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        trust_env=False,
    )


def _configured_checked(config: Config, sandbox: Sandbox | None, reason: str | None) -> str:
    if sandbox is None:
        where = "the providers"
    elif config.sandbox.url:
        where = f"the sandbox at {sandbox.url}"
    else:
        where = f"a simulator started for this check at {sandbox.url}"
    return f"{where}, from the config alone" + (f" ({reason})" if reason else "")


async def preflight_as_configured(
    config: Config,
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 (each probe's bound, as in preflight)
    environ: Mapping[str, str] | None = None,
    reason: str | None = None,
) -> PreflightReport:
    """Check where a daemon of this config would send, from the config alone.

    A sandbox with no ``url`` is started here, in-process, as the daemon
    starts it, and stopped once the checks are done. ``reason`` says why no
    daemon was asked (``no daemon answered at /run/ringbearer/ringbearer.sock``);
    it goes into the report's ``checked``.
    """
    async with trio.open_nursery() as nursery:
        sandbox = await start_sandbox(config, nursery)
        report = await preflight(
            config,
            sandbox=sandbox,
            timeout=timeout,
            environ=environ,
            checked=_configured_checked(config, sandbox, reason),
        )
        nursery.cancel_scope.cancel()
    return report
