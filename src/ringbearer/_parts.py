"""The daemon's parts as records: what it starts with, and what it wired from that."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping

import attrs

from ._alerting import AlertManager
from ._cluster_actors import ClusterActors
from ._config import Config
from ._deliverability_parts import EventSide, IntakeSide
from ._fleet import Fleet
from ._growth_parts import GrowthSide
from ._heartbeat import Heartbeat
from ._journal import Journal
from ._metrics import Metrics
from ._mode import ModeController
from ._preflight_duty import PreflightDuty
from ._privacy_parts import PrivacySide, VaultKeys
from ._reload import CurrentConfig, Reloader
from ._sandbox import Sandbox
from ._supervisor import Supervisor
from ._systemd import Notifier
from ._token_parts import TokenKeepers
from ._wakeups import Wakeups
from .handlers import Addresses, Table
from .integrations import ProviderKind
from .store import Store

WallClock = Callable[[], float]


@attrs.frozen
class Base:
    """What the daemon is started with."""

    config: Config
    store: Store
    wall: WallClock
    metrics: Metrics
    sandbox: Sandbox | None
    kinds: Mapping[str, ProviderKind]
    ssl_context: ssl.SSLContext
    notifier: Notifier = attrs.Factory(Notifier)  # sd_notify; does nothing outside systemd
    keys: VaultKeys | None = None  # the vault: None stores payloads as given (some tests)
    tokens: TokenKeepers = attrs.Factory(TokenKeepers)  # X's and LinkedIn's expiring tokens


@attrs.frozen
class Parts:
    """The daemon's parts, wired: what the front services are handed (and tests look at)."""

    base: Base
    current: CurrentConfig
    fleet: Fleet
    wakeups: Wakeups
    journal: Journal
    mode: ModeController
    alerts: AlertManager
    reloader: Reloader
    supervisor: Supervisor
    preflight: PreflightDuty
    heartbeat: Heartbeat
    table: Table
    addresses: Addresses
    summary: Callable[[], str]
    intake: IntakeSide  # deliverability at submit: suppression book, caps, unsubscribe links
    events: EventSide  # provider events, the reputation guard, the gate
    privacy: PrivacySide | None = None  # the vault, erasure, consent, retention, rotation
    growth: GrowthSide | None = None  # growth events, cohorts, experiments, opportunity rules
    cluster: ClusterActors | None = None  # on a shared store: every node's actors, for alerts
