"""The configuration: ``config.toml`` read with tomllib into frozen attrs classes.

Every problem is collected and reported at once, each with the file and the
key path (``integrations.resend.lanes: must be a positive integer``). Unknown
keys are errors. Per-integration settings inherit from ``[defaults]``.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs

from . import _converter
from ._alerting_settings import EMAIL_KINDS, AlertingSettings
from ._converter import HostPort, HttpPath, PositiveFloat, PositiveInt
from ._daemon_settings import DaemonSettings as DaemonSettings
from ._daemon_settings import relative as _relative
from ._daemon_settings import socket_path as _socket_path
from ._daemon_settings import socket_path_of as socket_path_of
from ._errors import ConfigError, ConfigProblem
from ._intake_settings import IntakeSettings
from ._secrets import Secret, SecretRef, check_database_url, with_password
from ._wedding import WeddingDaySettings
from .deliverability._settings import DeliverabilitySettings, WebhookSettings
from .growth._settings import GrowthSettings, growth_problems
from .integrations import ProviderKind, provider_kinds
from .privacy._settings import PrivacySettings
from .resilience import (
    BreakerSettings,
    BudgetSettings,
    HealthSettings,
    RateLimitSettings,
    RetrySettings,
)

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with its terminating NUL


@attrs.frozen
class StoreSettings:
    path: str = ""  # default: <state_dir>/ringbearer.db
    synchronous: str = attrs.field(default="full")
    batch_max: PositiveInt = PositiveInt(1024)
    claim_batch: PositiveInt = PositiveInt(256)
    # The state holds message payloads: its folder is 0700 and the database 0600, the
    # daemon's user's alone; a group named here may read them (0750 / 0640), for backups.
    group: str = ""
    # PostgreSQL instead of the embedded SQLite file: "postgresql://user@host:5432/db"
    # (no password in it: ``password`` names where it is read from). Several daemons
    # may share one database, each a node: its id (default: host name and a random
    # suffix), how often it beats, how long its leases last without a beat.
    url: str = attrs.field(default="")
    password: SecretRef | None = None
    node: str = ""
    heartbeat_seconds: PositiveFloat = PositiveFloat(5.0)
    lease_seconds: PositiveFloat = PositiveFloat(15.0)

    @synchronous.validator
    def _check_sync(self, _: Any, value: str) -> None:
        if value not in {"full", "normal"}:
            raise ValueError(f"synchronous must be 'full' or 'normal', got {value!r}")

    @url.validator
    def _check_url(self, _: Any, value: str) -> None:
        if value:
            try:
                check_database_url(value)
            except ValueError as exc:
                raise ValueError(f"url: {exc}") from None

    def postgres_url(self, environ: Mapping[str, str] | None = None) -> str:
        """``url`` with the password put in (percent-encoded); the URL itself without one."""
        return with_password(self.url, self.password, environ)


@attrs.frozen
class MetricsSettings:
    enabled: bool = True
    listen: HostPort = HostPort("127.0.0.1:9464")
    path: HttpPath = HttpPath("/metrics")
    # The listener's bounds (it also takes PagerDuty's webhook): past
    # max_connections a new connection gets 503; a head must arrive within
    # header_timeout_seconds, a body within body_timeout_seconds; a kept-alive
    # connection is closed after idle_seconds; a larger body than
    # max_body_bytes gets 413, and bodies in flight share max_buffered_bytes
    # (never less than one body of max_body_bytes).
    max_connections: PositiveInt = PositiveInt(64)
    header_timeout_seconds: PositiveFloat = PositiveFloat(10.0)
    body_timeout_seconds: PositiveFloat = PositiveFloat(30.0)
    idle_seconds: PositiveFloat = PositiveFloat(30.0)
    max_body_bytes: PositiveInt = PositiveInt(1024 * 1024)
    max_buffered_bytes: PositiveInt = PositiveInt(16 * 1024 * 1024)


@attrs.frozen
class SandboxSettings:
    """The provider simulator: started inside the daemon, or an external one at ``url``."""

    enabled: bool = False
    listen: HostPort = HostPort("127.0.0.1:0")
    smtp_listen: HostPort = HostPort("127.0.0.1:0")
    url: str | None = None  # an already running simulator (ringbearer simulate)
    smtp: HostPort | None = None
    seed: int = 0
    fault_injection: bool = True  # allow the control command that crashes an actor


@attrs.frozen
class PrincipalSettings:
    """Users and groups, by name or number: ``{ users = ["deploy"], groups = ["ops"] }``."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@attrs.frozen
class ControlSettings:
    """Who may use the control socket. The daemon's own user may always do everything."""

    group: str = ""  # the socket's group (mode 0660); "" keeps the daemon's own
    operators: PrincipalSettings = PrincipalSettings()  # everything
    senders: PrincipalSettings = PrincipalSettings()  # submit, and what readers may
    readers: PrincipalSettings = PrincipalSettings()  # status, audit, dead letters, waits
    max_connections: PositiveInt = PositiveInt(64)  # shared by every role
    # More connections, for operators (and the daemon's own user) only: held
    # connections of other peers never lock the operator out.
    operator_slots: PositiveInt = PositiveInt(4)
    idle_seconds: PositiveFloat = PositiveFloat(300.0)


@attrs.frozen
class SupervisorSettings:
    max_restarts: PositiveInt = PositiveInt(5)
    within_seconds: PositiveFloat = PositiveFloat(60.0)
    backoff_initial_seconds: PositiveFloat = PositiveFloat(0.5)
    backoff_max_seconds: PositiveFloat = PositiveFloat(30.0)


@attrs.frozen
class StallSettings:
    """The stall detector: how often it looks, and how long work may wait without moving."""

    check_seconds: PositiveFloat = PositiveFloat(30.0)
    # Work due (or in flight) with no settle for this long is a stall; a target
    # paused this long with work waiting is shown ("paused with N queued").
    after_seconds: PositiveFloat = PositiveFloat(300.0)


@attrs.frozen
class _Defaults:
    """What ``[defaults]`` may hold: the shared keys of an integration, less its kind."""

    enabled: bool = True
    lanes: PositiveInt = PositiveInt(8)
    mailbox: PositiveInt = PositiveInt(64)
    timeout_seconds: PositiveFloat = PositiveFloat(10.0)
    # Ambiguous failures (the provider may have taken the message) are retried
    # on the same member this many times before a group fails over.
    failover_after: int = 1
    breaker: BreakerSettings = BreakerSettings()
    retry: RetrySettings = RetrySettings()
    health: HealthSettings = HealthSettings()
    rate_limit: RateLimitSettings | None = None
    # Quotas the provider counts per second/minute/hour/day, each with a share
    # kept for critical work: [{ limit = 120, per = "minute", critical_reserve = 0.25 }].
    budgets: tuple[BudgetSettings, ...] = ()


@attrs.frozen
class _IntegrationCommon(_Defaults):
    """An integration's shared keys: the defaults' keys, and its provider kind."""

    kind: str = ""


# Keys of an integration's section that are shared; the rest are its provider's.
INTEGRATION_COMMON_KEYS = frozenset(f.name for f in attrs.fields(_IntegrationCommon))


@attrs.frozen
class IntegrationSettings:
    """One integration: the shared delivery settings and its provider's own."""

    name: str
    kind: str
    family: str
    enabled: bool
    lanes: int
    mailbox: int
    timeout_seconds: float
    failover_after: int
    breaker: BreakerSettings
    retry: RetrySettings
    health: HealthSettings
    rate_limit: RateLimitSettings | None
    budgets: tuple[BudgetSettings, ...]
    provider: Any  # the provider kind's own frozen settings class


@attrs.frozen
class Config:
    source: Path
    daemon: DaemonSettings
    store: StoreSettings
    metrics: MetricsSettings
    sandbox: SandboxSettings
    supervisor: SupervisorSettings
    control: ControlSettings
    wedding_day: WeddingDaySettings
    alerting: AlertingSettings
    integrations: Mapping[str, IntegrationSettings]
    groups: Mapping[str, tuple[str, ...]]
    stalls: StallSettings = StallSettings()
    webhooks: WebhookSettings = WebhookSettings()
    deliverability: DeliverabilitySettings = DeliverabilitySettings()
    privacy: PrivacySettings = PrivacySettings()
    growth: GrowthSettings = GrowthSettings()
    intake: IntakeSettings = IntakeSettings()

    @property
    def state_dir(self) -> Path:
        return _relative(self.source, self.daemon.state_dir)

    @property
    def socket_path(self) -> Path:
        return _socket_path(self.source, self.daemon)

    @property
    def db_path(self) -> Path:
        if self.store.path:
            return _relative(self.source, self.store.path)
        return self.state_dir / "ringbearer.db"

    def targets(self) -> dict[str, tuple[str, ...]]:
        """Every name a message may be sent to, with the integrations it may use."""
        routes: dict[str, tuple[str, ...]] = {
            name: (name,) for name, s in self.integrations.items() if s.enabled
        }
        routes.update(self.groups)
        return routes

    def family_of(self, target: str) -> str:
        """The family of a target (a group's members share one); "" for a name not routed."""
        members = self.groups.get(target)
        if members is None:
            found = self.integrations.get(target)
            members = (target,) if found is not None and found.enabled else ()
        settings = self.integrations.get(members[0]) if members else None
        return settings.family if settings is not None else ""


@attrs.frozen
class _TopLevel:
    daemon: DaemonSettings = DaemonSettings()
    store: StoreSettings = StoreSettings()
    metrics: MetricsSettings = MetricsSettings()
    sandbox: SandboxSettings = SandboxSettings()
    supervisor: SupervisorSettings = SupervisorSettings()
    control: ControlSettings = ControlSettings()
    wedding_day: WeddingDaySettings = WeddingDaySettings()
    alerting: AlertingSettings = AlertingSettings()
    stalls: StallSettings = StallSettings()
    webhooks: WebhookSettings = WebhookSettings()
    deliverability: DeliverabilitySettings = DeliverabilitySettings()
    privacy: PrivacySettings = PrivacySettings()
    growth: GrowthSettings = GrowthSettings()
    intake: IntakeSettings = IntakeSettings()
    defaults: dict[str, Any] = attrs.Factory(dict)
    integrations: dict[str, dict[str, Any]] = attrs.Factory(dict)
    groups: dict[str, list[str]] = attrs.Factory(dict)


# The sections that are one settings class each, read on their own.
_SECTIONS: dict[str, type] = {
    "daemon": DaemonSettings,
    "store": StoreSettings,
    "metrics": MetricsSettings,
    "sandbox": SandboxSettings,
    "supervisor": SupervisorSettings,
    "control": ControlSettings,
    "wedding_day": WeddingDaySettings,
    "alerting": AlertingSettings,
    "stalls": StallSettings,
    "webhooks": WebhookSettings,
    "deliverability": DeliverabilitySettings,
    "privacy": PrivacySettings,
    "growth": GrowthSettings,
    "intake": IntakeSettings,
}


def make_converter() -> cattrs.Converter:
    """The project's one converter (it reports validator errors at their key path)."""
    return _converter.make()


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class _Loader:
    """One pass over one file, collecting every problem before giving up."""

    def __init__(self, source: Path, kinds: Mapping[str, ProviderKind]) -> None:
        self.source = source
        self.kinds = kinds
        self.converter = make_converter()
        self.problems: list[ConfigProblem] = []

    def structure(self, raw: Any, type_: type, prefix: str) -> Any:
        try:
            return self.converter.structure(raw, type_)
        except Exception as exc:
            self.problems.extend(_converter.problems(exc, prefix))
            return None

    def integration(
        self, name: str, raw: Any, defaults: dict[str, Any]
    ) -> IntegrationSettings | None:
        where = f"integrations.{name}"
        if not NAME.match(name):
            self.problems.append(ConfigProblem(where, "names use a-z, 0-9, '-' and '_'"))
        if not isinstance(raw, dict):
            self.problems.append(ConfigProblem(where, "expected a table"))
            return None
        kind_name = raw.get("kind")
        kind = self.kinds.get(kind_name) if isinstance(kind_name, str) else None
        if kind is None:
            known = ", ".join(sorted(self.kinds))
            self.problems.append(ConfigProblem(f"{where}.kind", f"expected one of: {known}"))
            return None
        common_raw = _merge(
            defaults, {k: v for k, v in raw.items() if k in INTEGRATION_COMMON_KEYS}
        )
        provider_raw = {k: v for k, v in raw.items() if k not in INTEGRATION_COMMON_KEYS}
        common = self.structure(common_raw, _IntegrationCommon, where)
        provider = self.structure(provider_raw, kind.settings_type, where)
        if common is None or provider is None:
            return None
        return IntegrationSettings(
            name=name,
            kind=kind.kind,
            family=kind.family,
            provider=provider,
            **{
                f.name: getattr(common, f.name)
                for f in attrs.fields(_IntegrationCommon)
                if f.name != "kind"
            },
        )

    def groups(
        self,
        raw: dict[str, list[str]],
        integrations: Mapping[str, IntegrationSettings],
        declared: set[str],
    ) -> dict[str, tuple[str, ...]]:
        groups: dict[str, tuple[str, ...]] = {}
        for name, members in raw.items():
            where = f"groups.{name}"
            if not NAME.match(name):
                self.problems.append(ConfigProblem(where, "names use a-z, 0-9, '-' and '_'"))
            if name in integrations:
                self.problems.append(
                    ConfigProblem(where, "a group cannot share an integration's name")
                )
            if not members:
                self.problems.append(ConfigProblem(where, "a group needs at least one member"))
            if len(set(members)) != len(members):
                self.problems.append(ConfigProblem(where, "a member is listed twice"))
            missing = [m for m in members if m not in declared]
            for member in missing:
                self.problems.append(ConfigProblem(where, f"no integration named {member!r}"))
            self.check_enabled(where, [integrations[m] for m in members if m in integrations])
            families = {integrations[m].family for m in members if m in integrations}
            if len(families) > 1:
                self.problems.append(
                    ConfigProblem(
                        where, f"members must share one family, found {', '.join(sorted(families))}"
                    )
                )
            groups[name] = tuple(members)
        return groups

    def check_enabled(self, where: str, members: list[IntegrationSettings]) -> None:
        """A group with no enabled member would take messages it can never deliver."""
        if members and not any(m.enabled for m in members):
            names = ", ".join(m.name for m in members)
            why = f"every member is disabled ({names}): enable one, or remove the group"
            self.problems.append(ConfigProblem(where, why))

    def section(self, raw: dict[str, Any], name: str, type_: type) -> Any:
        value = raw.get(name, {})
        found = self.structure(value, type_, name)
        return found if found is not None else type_()

    def load(self, raw: dict[str, Any]) -> Config:
        # Each section is checked on its own, so one bad section hides no others.
        for key in sorted(set(raw) - {f.name for f in attrs.fields(_TopLevel)}):
            self.problems.append(ConfigProblem(key, "unknown section or key"))
        defaults = raw.get("defaults", {})
        if not isinstance(defaults, dict):
            self.problems.append(ConfigProblem("defaults", "expected a table"))
            defaults = {}
        if self.structure(defaults, _Defaults, "defaults") is None:
            defaults = {}  # reported once here, not again under every integration
        integrations = {}
        sections = raw.get("integrations", {})
        if not isinstance(sections, dict):
            self.problems.append(ConfigProblem("integrations", "expected a table"))
            sections = {}
        for name, section in sections.items():
            settings = self.integration(name, section, defaults)
            if settings is not None:
                integrations[name] = settings
        raw_groups = self.structure(raw.get("groups", {}), dict[str, list[str]], "groups") or {}
        config = Config(
            source=self.source,
            integrations=integrations,
            groups=self.groups(raw_groups, integrations, set(sections)),
            **{name: self.section(raw, name, type_) for name, type_ in _SECTIONS.items()},
        )
        self.check_paths(config, bool(sections))
        self.check_across(config)
        if self.problems:
            raise ConfigError(str(self.source), self.problems)
        return config

    def check_across(self, config: Config) -> None:
        """What one section says about another: chains, categories, the listener."""
        self.check_alerting(config)
        if config.store.url and not config.privacy.keys_url:
            why = (
                "required with [store] url: every node must open the payloads every other"
                " node sealed (a key store of its own database, and the same kek on each)"
            )
            self.problems.append(ConfigProblem("privacy.keys_url", why))
        self.problems.extend(deliverability_problems(config.deliverability, config.webhooks))
        self.check_webhooks(config)
        self.problems.extend(
            ConfigProblem(where, why) for where, why in growth_problems(config.growth, config)
        )

    def check_webhooks(self, config: Config) -> None:
        """PagerDuty posts to the public listener; outside the sandbox, links need a key."""
        webhooks, unsubscribe = config.webhooks, config.deliverability.unsubscribe
        if config.alerting.pagerduty_webhook_secret is not None and not webhooks.enabled:
            why = "PagerDuty posts to the public listener: enable [webhooks]"
            self.problems.append(ConfigProblem("alerting.pagerduty_webhook_secret", why))
        if webhooks.enabled and not config.sandbox.enabled and unsubscribe.secret is None:
            why = "required with [webhooks] enabled: it signs unsubscribe links"
            self.problems.append(ConfigProblem("deliverability.unsubscribe.secret", why))
        if config.intake.enabled and not webhooks.enabled:
            why = "producers submit on the public listener: enable [webhooks]"
            self.problems.append(ConfigProblem("intake.enabled", why))
        for index, proxy in enumerate(webhooks.trusted_proxies):
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                where = f"webhooks.trusted_proxies[{index}]"
                self.problems.append(ConfigProblem(where, f"not an address or network: {proxy!r}"))

    def check_alerting(self, config: Config) -> None:
        targets = config.targets()
        for entry, name in config.alerting.chain_entries():
            if name not in targets:
                where = f"alerting.{entry}"
                self.problems.append(ConfigProblem(where, f"no integration or group {name!r}"))
        self.check_email_alerts(config, targets)

    def check_email_alerts(self, config: Config, targets: Mapping[str, tuple[str, ...]]) -> None:
        """A chain that reaches an email channel needs the addresses an email alert goes by."""
        alerting = config.alerting
        unset = alerting.unset_email_keys()
        if not unset:
            return
        needs = []
        for entry, name in alerting.chain_entries():
            members = [config.integrations.get(m) for m in targets.get(name, ())]
            kinds = sorted({m.kind for m in members if m is not None} & EMAIL_KINDS)
            if kinds:
                needs.append(f"alerting.{entry} = {name!r} ({', '.join(kinds)})")
        if needs:
            why = f"required: alerts go by email through {', '.join(needs)}"
            self.problems.extend(ConfigProblem(f"alerting.{key}", why) for key in unset)

    def check_paths(self, config: Config, any_integration: bool) -> None:
        if len(str(config.socket_path).encode()) > SOCKET_PATH_MAX:
            self.problems.append(
                ConfigProblem(
                    "daemon.socket",
                    f"socket path longer than {SOCKET_PATH_MAX} bytes: {config.socket_path}",
                )
            )
        if not any_integration:
            self.problems.append(ConfigProblem("integrations", "no integration is configured"))


def deliverability_problems(
    settings: DeliverabilitySettings, webhooks: WebhookSettings
) -> list[ConfigProblem]:
    """Every category named must be a known one; thresholds in order; a public URL a URL."""
    known = set(settings.categories)
    named = [("deliverability.default_category", settings.default_category)]
    named += [
        ("deliverability.suppression.complaint_spares", c)
        for c in settings.suppression.complaint_spares
    ]
    named += [
        ("deliverability.reputation.paused_categories", c)
        for c in settings.reputation.paused_categories
    ]
    named += [
        (f"deliverability.caps[{i}].category", cap.category) for i, cap in enumerate(settings.caps)
    ]
    named += [("deliverability.unsubscribe.categories", c) for c in settings.unsubscribe.categories]
    listed = ", ".join(settings.categories)
    problems = [
        ConfigProblem(where, f"unknown category {name!r}; known: {listed}")
        for where, name in named
        if name not in known
    ]
    problems += [
        ConfigProblem("deliverability.categories", f"{name!r}: use a-z, 0-9, '-' and '_'")
        for name in settings.categories
        if not NAME.match(name)
    ]
    reputation = settings.reputation
    if reputation.complaint_warn >= reputation.complaint_pause:
        why = "must be below complaint_pause"
        problems.append(ConfigProblem("deliverability.reputation.complaint_warn", why))
    url = webhooks.public_url
    if url and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
        why = "expected an http(s) URL with no query, such as https://hooks.example.com"
        problems.append(ConfigProblem("webhooks.public_url", why))
    return problems


def parse(text: str, source: Path, kinds: Mapping[str, ProviderKind] | None = None) -> Config:
    """Parse config text; raise ConfigError listing every problem."""
    try:
        raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:  # tomllib recurses on nesting
        raise ConfigError(str(source), [ConfigProblem("", f"not valid TOML: {exc}")]) from exc
    return _Loader(source, kinds if kinds is not None else provider_kinds()).load(raw)


def load(path: str | Path, kinds: Mapping[str, ProviderKind] | None = None) -> Config:
    """Read and validate a config file; raise ConfigError listing every problem."""
    source = Path(path).absolute()
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(source), [ConfigProblem("", f"cannot read: {exc.strerror}")]) from exc
    return parse(text, source, kinds)


def secret_refs(settings: Any) -> list[tuple[str, SecretRef]]:
    """Every secret reference inside a provider's settings, with its key path."""
    found = []
    for field in attrs.fields(type(settings)):
        value = getattr(settings, field.name)
        if isinstance(value, SecretRef):
            found.append((field.name, value))
    return found


def unresolved_secrets(
    config: Config, environ: Mapping[str, str] | None = None
) -> list[ConfigProblem]:
    """Secrets whose source does not have them (env var unset, credential missing)."""
    refs = [
        (f"integrations.{name}.{path}", ref)
        for name, integration in config.integrations.items()
        for path, ref in secret_refs(integration.provider)
    ]
    refs += [(f"alerting.{path}", ref) for path, ref in secret_refs(config.alerting)]
    unsubscribe = config.deliverability.unsubscribe
    refs += [(f"deliverability.unsubscribe.{p}", r) for p, r in secret_refs(unsubscribe)]
    refs += [(f"privacy.{p}", r) for p, r in secret_refs(config.privacy)]
    refs += [(f"store.{p}", r) for p, r in secret_refs(config.store)]
    refs += [
        (f"intake.producers.{name}.{p}", r)
        for name, producer in config.intake.producers.items()
        for p, r in secret_refs(producer)
    ]
    return [
        ConfigProblem(path, f"secret not found ({ref.describe()})")
        for path, ref in refs
        if ref.resolve(environ) is None
    ]


def resolve_secret(
    ref: SecretRef, sandbox: bool, environ: Mapping[str, str] | None = None
) -> Secret:
    """Read a secret; in the sandbox a missing one becomes a placeholder the simulator accepts."""
    secret = ref.resolve(environ)
    if secret is not None:
        return secret
    if sandbox:
        return Secret("sandbox")
    raise ConfigError("secrets", [ConfigProblem("", f"secret not found ({ref.describe()})")])
