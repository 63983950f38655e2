"""The fleet: an adapter and an actor per enabled integration, a dispatcher per target.

:class:`PartsFactory` builds them from settings (at start and on a reload);
:class:`Fleet` holds those running and answers questions about them. Neither
starts anything: the daemon starts the first set, the reloader later ones.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping

import attrs

from ._actor import ActorSnapshot, IntegrationActor
from ._config import Config, IntegrationSettings, resolve_secret
from ._dispatcher import Dispatcher, Gate, OpenGate
from ._errors import ErrorCode, RequestError
from ._sandbox import Sandbox
from .integrations import Adapter, AdapterContext, ProviderKind
from .privacy._opening import Opener, OpeningAdapter
from .resilience import BreakerState, BreakerTransition, HealthState, RetryPolicy
from .store import BreakerRecord, Controls, Store

WallClock = Callable[[], float]


@attrs.frozen
class Hooks:
    """What actors report, and to whom (the daemon's wiring decides)."""

    on_breaker: Callable[[str, BreakerTransition], None]
    on_health: Callable[[str, HealthState, HealthState, str], None]
    on_slot_freed: Callable[[str], None]


@attrs.frozen
class PartsFactory:
    """Builds adapters, actors and dispatchers from settings."""

    store: Store
    wall: WallClock
    ssl_context: ssl.SSLContext
    kinds: Mapping[str, ProviderKind]
    sandbox: Sandbox | None
    hooks: Hooks
    gate: Gate = OpenGate()  # deliverability's, before each email is handed to an actor
    # The public URL of an integration's webhook on the listener, once it is known.
    webhook_url: Callable[[str], str | None] = lambda name: None
    opener: Opener | None = None  # the vault: opens sealed payloads in the lanes

    def adapter(self, settings: IntegrationSettings) -> Adapter:
        """Build one adapter; raises (secrets, settings) before anything runs.

        With a vault, its lanes open sealed payloads (and only they do)."""
        row = self.kinds[settings.kind]
        adapter = row.build(settings.provider, self.context(settings))
        if self.opener is None:
            return adapter
        return OpeningAdapter(adapter, self.opener, row.family)

    def context(self, settings: IntegrationSettings) -> AdapterContext:
        """What an integration's adapter (or its token keeper) is built with."""
        sandbox, store = self.sandbox, self.store
        return AdapterContext(
            name=settings.name,
            timeout=settings.timeout_seconds,
            ssl_context=self.ssl_context,
            secrets=lambda ref: resolve_secret(ref, sandbox=sandbox is not None),
            base_url_override=sandbox.prefix(settings.kind) if sandbox else None,
            smtp_override=sandbox.smtp if sandbox else None,
            checkpoint=lambda message_id, steps: store.save_progress(
                message_id, settings.name, steps
            ),
            webhook_url=lambda: self.webhook_url(settings.name),
        )

    def actor(
        self, settings: IntegrationSettings, adapter: Adapter, config: Config
    ) -> IntegrationActor:
        return IntegrationActor(
            settings=settings,
            adapter=adapter,
            sink=self.store.record,
            wall=self.wall,
            retry=RetryPolicy(settings.retry),
            routes=route_lengths(config, settings.name),
            on_breaker=self.hooks.on_breaker,
            on_health=self.hooks.on_health,
            on_slot_freed=self.hooks.on_slot_freed,
        )

    def dispatchers(
        self, config: Config, actors: Mapping[str, IntegrationActor], paused: Iterable[str]
    ) -> dict[str, Dispatcher]:
        """A dispatcher per target with a running member; groups in ``paused`` start paused."""
        held = set(paused)
        built = {}
        for target, members in config.targets().items():
            present = [actors[m] for m in members if m in actors]
            if present:
                built[target] = Dispatcher(
                    target=target,
                    members=present,
                    store=self.store,
                    wall=self.wall,
                    claim_batch=config.store.claim_batch,
                    # Only a group's pause is the dispatcher's: an integration's is its actor's.
                    paused=target in held and target not in actors,
                    gate=self.gate if _is_email(config, members) else OpenGate(),
                )
        return built


def _is_email(config: Config, members: Iterable[str]) -> bool:
    return any(
        config.integrations[m].family == "email" for m in members if m in config.integrations
    )


def route_lengths(config: Config, name: str) -> dict[str, int]:
    """The length of each route ``name`` is on: its own, and each group's it belongs to."""
    return {t: len(m) for t, m in config.targets().items() if name in m}


@attrs.define(eq=False)
class Fleet:
    """The running integrations and the dispatchers that feed them."""

    adapters: dict[str, Adapter] = attrs.Factory(dict)
    actors: dict[str, IntegrationActor] = attrs.Factory(dict)
    dispatchers: dict[str, Dispatcher] = attrs.Factory(dict)
    # A pause or resume made here is counted while it is being kept, and once kept, so
    # that a follow of the store's pauses overlapping one (it read the store before the
    # change was kept) leaves its answer to the next beat instead of undoing the change.
    pause_changes: int = 0  # kept so far
    pauses_keeping: int = 0

    def fill(self, config: Config, factory: PartsFactory) -> None:
        """Build every enabled integration of ``config`` (nothing runs yet)."""
        for name, settings in config.integrations.items():
            if settings.enabled:
                adapter = self.adapters[name] = factory.adapter(settings)
                self.actors[name] = factory.actor(settings, adapter, config)
        self.dispatchers = factory.dispatchers(config, self.actors, ())

    def actor(self, name: str) -> IntegrationActor:
        actor = self.actors.get(name)
        if actor is None:
            raise RequestError(
                ErrorCode.UNKNOWN_INTEGRATION, f"no running integration named {name!r}"
            )
        return actor

    def feeding(self, name: str) -> list[Dispatcher]:
        """The dispatchers whose route includes the integration ``name``."""
        return [d for d in self.dispatchers.values() if any(m.name == name for m in d.members)]

    def touching(self, name: str) -> list[Dispatcher]:
        """The dispatchers of target ``name`` and those feeding integration ``name``."""
        own = self.dispatchers.get(name)
        return [*self.feeding(name), *([own] if own is not None else [])]

    def snapshots(self) -> list[ActorSnapshot]:
        return [a.statistics() for a in self.actors.values()]

    def breaker_record(self, name: str, now: float) -> BreakerRecord:
        state, forced, remaining = self.actors[name].breaker.export()
        return BreakerRecord(name, state.value, forced, now + remaining)

    def can_deliver(self, members: Iterable[str]) -> bool:
        """Could a message be attempted now by one of ``members`` (one admits it)?"""
        actors = [self.actors[m] for m in members if m in self.actors]
        return any(a.admits() or a.bypass_slots() > 0 for a in actors)

    def set_paused(self, name: str, paused: bool) -> None:
        """Pause an integration (its actor) or a group (its dispatcher)."""
        if name in self.actors:
            self.actors[name].paused = paused
        elif name in self.dispatchers:
            self.dispatchers[name].paused = paused

    @contextlib.contextmanager
    def keeping_pause(self) -> Iterator[None]:
        """Around keeping in the store a pause or resume already applied here."""
        self.pauses_keeping += 1
        try:
            yield
        finally:
            self.pauses_keeping -= 1
            self.pause_changes += 1

    def follow_pauses(self, paused: set[str]) -> dict[str, bool]:
        """Pause exactly the integrations and groups in ``paused``; those that changed."""
        running: dict[str, IntegrationActor | Dispatcher] = {**self.dispatchers, **self.actors}
        changed = {n: n in paused for n, part in running.items() if part.paused != (n in paused)}
        for name, now in changed.items():
            self.set_paused(name, now)
        return changed

    async def restore(self, controls: Controls, wall: WallClock) -> None:
        """Breaker states, pauses and spent quota budgets survive a restart."""
        for actor in self.actors.values():
            await restore_budgets(actor, controls, wall)
        now = wall()
        for name, record in (await controls.breakers()).items():
            if name in self.actors:
                self.actors[name].breaker.restore(
                    BreakerState(record.state), record.forced, max(0.0, record.open_until - now)
                )
        for name in await controls.paused():
            self.set_paused(name, True)


async def restore_budgets(actor: IntegrationActor, controls: Controls, wall: WallClock) -> None:
    """What the actor's longest quota window has spent already, from the attempts kept."""
    longest = actor.budgets.longest
    if longest is not None:
        since = wall() - longest.window
        sent = await controls.attempt_times(actor.name, since=since, limit=longest.limit)
        actor.budgets.restore(sent)
