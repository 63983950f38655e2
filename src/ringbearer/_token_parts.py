"""Expiring OAuth tokens, wired: a keeper per X or LinkedIn integration with a refresh token.

Keepers exist before the fleet's adapters (an X or LinkedIn adapter is built
with its keeper, and sends its current token); each has loaded or seeded its
token set before its actor starts. A failed refresh is an alert until a
refresh succeeds; the gauge ``ringbearer_token_expiry_seconds`` and status
read how long each token has left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import attrs
import httpx
import trio

from ._config import Config
from ._fleet import PartsFactory
from ._preflight import Stage, Step, Verdict
from .control._replies import Severity
from .deliverability._guard import AlertSink
from .integrations import ProviderKind, social
from .integrations._oauth2 import Sealer, TokenError, TokenKeeper, TokenStatistics, TokenStore
from .privacy._metrics import PrivacyMetrics

log = logging.getLogger("ringbearer.tokens")
WallClock = Callable[[], float]
WATCH_SECONDS = 15.0  # how often the gauge and the alerts look at the keepers
_KINDS = ("x", "linkedin")


def alert_key(integration: str) -> str:
    return f"token:{integration}"


@attrs.define(eq=False)
class TokenKeepers:
    """The keepers by integration; the provider table's X and LinkedIn rows look them up."""

    keepers: dict[str, TokenKeeper] = attrs.Factory(dict)
    _http: httpx.AsyncClient | None = None

    def kinds(self, base: Mapping[str, ProviderKind]) -> dict[str, ProviderKind]:
        """``base`` with its social rows sending the keepers' tokens."""
        return {**base, **{row.kind: row for row in social.kinds(self.keepers.get)}}

    async def start(
        self, config: Config, factory: PartsFactory, store: TokenStore, sealer: Sealer,
        alerts: AlertSink, wall: WallClock,
    ) -> None:  # fmt: skip
        """A keeper for each such integration, its token set loaded or seeded."""
        for name, settings in config.integrations.items():
            if not settings.enabled or settings.kind not in _KINDS or name in self.keepers:
                continue
            grant = social.refresh_grant(settings.provider, factory.context(settings))
            if grant is None:
                continue

            def problem(integration: str, words: str) -> None:
                summary = f"{integration}: OAuth token refresh failed: {words}"
                alerts.found(alert_key(integration), Severity.CRITICAL, summary)

            keeper = TokenKeeper(name, grant, store, sealer, self._client(factory), problem, wall)
            try:
                await keeper.start()
            except TokenError as exc:  # run() keeps trying; the alert says why
                problem(name, exc.words)
            self.keepers[name] = keeper

    def _client(self, factory: PartsFactory) -> httpx.AsyncClient:
        """One client for every token endpoint (closed when :meth:`run` ends)."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=30.0, verify=factory.ssl_context, trust_env=False
            )
        return self._http

    def statistics(self) -> list[TokenStatistics]:
        return [k.statistics() for _, k in sorted(self.keepers.items())]

    async def run(
        self, alerts: AlertSink, metrics: PrivacyMetrics, *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:  # fmt: skip
        """Run every keeper; keep the gauge and the alerts in step with them."""
        try:
            await self._run(alerts, metrics, task_status)
        finally:
            if self._http is not None:
                with trio.CancelScope(shield=True):
                    await self._http.aclose()

    async def _run(
        self, alerts: AlertSink, metrics: PrivacyMetrics, task_status: trio.TaskStatus[None]
    ) -> None:
        async with trio.open_nursery() as nursery:
            for keeper in self.keepers.values():
                nursery.start_soon(keeper.run)
            task_status.started()
            while True:
                for stats in self.statistics():
                    metrics.token_expiry.labels(stats.integration).set(stats.remaining_seconds)
                    if stats.failures == 0 and stats.has_token:
                        alerts.cleared(alert_key(stats.integration))
                await trio.sleep(WATCH_SECONDS)

    def preflight_step(self, integration: str) -> Step | None:
        """How long the integration's kept token has left, as a preflight step."""
        keeper = self.keepers.get(integration)
        if keeper is None:
            return None
        stats = keeper.statistics()
        if stats.reconnect or not stats.has_token:
            why = stats.last_problem or "no access token"
            return Step(Stage.CREDENTIALS, Verdict.FAIL, f"OAuth token: {why}")
        left = f"OAuth access token: {stats.remaining_seconds / 60:.0f} min left"
        if stats.failures:
            return Step(Stage.CREDENTIALS, Verdict.WARN, f"{left}; refresh failing")
        return Step(Stage.CREDENTIALS, Verdict.PASS, left)
