"""Reload: the difference between the running config and a new one, then applying it.

A reload adds, removes and re-tunes integrations and groups; everything else
(where the state lives, the control socket, the metrics listener, the
sandbox) is bound when the daemon starts, so a change there is reported as
needing a restart and the running value is kept.

:class:`ReloadPlan` is the pure difference; :class:`Reloader` applies it,
and owns the nurseries the integrations' actors and dispatchers run in.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping

import attrs
import trio

from ._actor import ActorState, IntegrationActor
from ._alerting import AlertManager
from ._config import Config, load, unresolved_secrets
from ._errors import ConfigError, ErrorCode, RequestError
from ._fleet import Fleet, PartsFactory, restore_budgets, route_lengths
from ._journal import Journal
from ._logging import fields
from ._mode import ModeController
from ._supervisor import Supervisor
from ._systemd import Notifier
from .control import _replies as r
from .integrations import Adapter, ProviderKind
from .store import Controls, EventKind

log = logging.getLogger("ringbearer.reload")

# Sections read once at start-up; a reload keeps their running values.
START_ONLY = ("daemon", "store", "metrics", "sandbox", "control")


@attrs.frozen
class ReloadPlan:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]  # re-tuned, or failed and given a fresh start
    kept: tuple[str, ...]
    groups_changed: bool
    needs_restart: tuple[str, ...]  # start-only sections that differ

    @classmethod
    def of(cls, old: Config, new: Config, failed: Collection[str] = ()) -> ReloadPlan:
        """Compare the enabled integrations of ``old`` and ``new``; ``failed`` are rebuilt too."""
        before = {n: s for n, s in old.integrations.items() if s.enabled}
        after = {n: s for n, s in new.integrations.items() if s.enabled}
        common = sorted(before.keys() & after.keys())
        changed = tuple(n for n in common if before[n] != after[n] or n in failed)
        return cls(
            added=tuple(sorted(after.keys() - before.keys())),
            removed=tuple(sorted(before.keys() - after.keys())),
            changed=changed,
            kept=tuple(n for n in common if n not in changed),
            groups_changed=old.groups != new.groups,
            needs_restart=tuple(
                section for section in START_ONLY if getattr(old, section) != getattr(new, section)
            ),
        )

    @property
    def rebuilt(self) -> tuple[str, ...]:
        """Integrations whose actor is new after the reload."""
        return (*self.added, *self.changed)

    def reply(self) -> r.ReloadReply:
        return r.ReloadReply(
            added=list(self.added),
            removed=list(self.removed),
            changed=list(self.changed),
            kept=list(self.kept),
            groups_changed=self.groups_changed,
            needs_restart=list(self.needs_restart),
        )

    def changes(self) -> dict[str, str]:
        """The plan's non-empty lists, as log fields."""
        lists = {"added": self.added, "removed": self.removed, "changed": self.changed}
        return {k: ",".join(v) for k, v in lists.items() if v}


@attrs.define(eq=False)
class CurrentConfig:
    """The config in force; only a reload replaces it."""

    value: Config


@attrs.define(eq=False)
class Reloader:
    """Starts the integrations, and applies a new config to them while they run."""

    current: CurrentConfig
    fleet: Fleet
    factory: PartsFactory
    supervisor: Supervisor
    mode: ModeController
    alerts: AlertManager
    controls: Controls
    journal: Journal
    notifier: Notifier
    kinds: Mapping[str, ProviderKind]
    summary: Callable[[], str]  # the one-line status, for systemd
    actor_nursery: trio.Nursery
    dispatch_nursery: trio.Nursery
    _lock: trio.Lock = attrs.Factory(trio.Lock)

    async def start(self) -> None:
        """Start every built actor under the supervisor, then every dispatcher."""
        for actor in self.fleet.actors.values():
            await self.actor_nursery.start(self.supervisor.supervise, actor)
        for dispatcher in self.fleet.dispatchers.values():
            await self.dispatch_nursery.start(dispatcher.run)

    async def stop_dispatchers(self) -> None:
        """Stop claiming (after a reload under way); what the dispatchers held goes back."""
        async with self._lock:
            for dispatcher in self.fleet.dispatchers.values():
                await dispatcher.stop()

    async def reload_file(self, *, force: bool = False) -> r.ReloadReply:
        """Read the config file again and apply it; ``invalid_config`` (nothing changed) if bad."""
        self.mode.check_freeze("reload", force)
        try:
            new = self._read()
        except ConfigError as exc:
            log.error("reload refused; the running config stays", extra=fields(problems=str(exc)))
            self.journal.event(EventKind.RELOAD_REFUSED, problems=[str(p) for p in exc.problems])
            raise RequestError(
                ErrorCode.INVALID_CONFIG, f"{exc}\nthe running config stays"
            ) from exc
        return await self.reload(new)

    def _read(self) -> Config:
        new = load(self.current.value.source, self.kinds)
        missing = [] if new.sandbox.enabled else unresolved_secrets(new)
        if missing:
            raise ConfigError(str(new.source), missing)
        return new

    async def reload(self, new: Config) -> r.ReloadReply:
        """Apply ``new``: add, remove and re-tune integrations, losing and repeating nothing.

        Everything that can fail (secrets, adapters) is built before anything
        running is touched, so a reload that fails changes nothing. Then the
        dispatchers stop and give back what they hold; the integrations that
        go or change stop taking work and finish their attempts in flight;
        the new ones start; new dispatchers claim again. Queued work waits in
        the store meanwhile, and untouched integrations deliver throughout.
        """
        # Shielded: a stop that arrives mid-reload waits for it rather than
        # leave half the integrations switched.
        with trio.CancelScope(shield=True):
            async with self._lock:
                plan = await self._apply(new)
        self.journal.event(EventKind.RELOADED, **attrs.asdict(plan))
        log.info("reloaded", extra=fields(**plan.changes()))
        return plan.reply()

    async def _apply(self, new: Config) -> ReloadPlan:
        failed = {n for n, a in self.fleet.actors.items() if a.state is ActorState.FAILED}
        plan = ReloadPlan.of(self.current.value, new, failed)
        built = {n: self.factory.adapter(new.integrations[n]) for n in plan.rebuilt}
        with self._telling_systemd():
            log.info("reloading", extra=fields(**plan.changes()))
            for dispatcher in self.fleet.dispatchers.values():
                await dispatcher.stop()
            old = {n: self.fleet.actors[n] for n in (*plan.removed, *plan.changed)}
            await self._stop_actors(old.values())
            self._switch(new, plan, built, old)
            self.mode.use(new.wedding_day)
            await self._start(plan)
        return plan

    @contextlib.contextmanager
    def _telling_systemd(self) -> Iterator[None]:
        """RELOADING=1 now, READY=1 after, whatever happens: never a unit stuck reloading."""
        self.notifier.reloading()
        failed = "reload failed (see the log); running on: "
        try:
            yield
            failed = ""
        except Exception as exc:
            log.error("reload failed", extra=fields(error=repr(exc)))
            raise
        finally:
            self.notifier.ready(failed + self.summary())

    async def _stop_actors(self, actors: Iterable[IntegrationActor]) -> None:
        for actor in actors:
            actor.stop_intake()
        for actor in actors:
            await self.supervisor.wait_stopped(actor.name)

    def _switch(
        self,
        new: Config,
        plan: ReloadPlan,
        built: Mapping[str, Adapter],
        old: Mapping[str, IntegrationActor],
    ) -> None:
        """Put the new config, adapters and actors in place (nothing here awaits)."""
        kept_sections = {s: getattr(self.current.value, s) for s in plan.needs_restart}
        config = self.current.value = attrs.evolve(new, **kept_sections)
        self.supervisor.use(new.supervisor)
        self.alerts.use(new.alerting)
        fleet = self.fleet
        for name in plan.removed:
            del fleet.actors[name], fleet.adapters[name]
        for name, adapter in built.items():
            actor = self.factory.actor(new.integrations[name], adapter, config)
            if name in old:
                actor.carry_over(old[name])
            fleet.actors[name], fleet.adapters[name] = actor, adapter
        for name in plan.kept:
            fleet.actors[name].routes = route_lengths(config, name)
        paused = [t for t, d in fleet.dispatchers.items() if d.paused]
        fleet.dispatchers = self.factory.dispatchers(config, fleet.actors, paused)

    async def _start(self, plan: ReloadPlan) -> None:
        paused = await self.controls.paused()
        for name in plan.rebuilt:
            actor = self.fleet.actors[name]
            actor.paused = actor.paused or name in paused
            await restore_budgets(actor, self.controls, self.factory.wall)
            await self.actor_nursery.start(self.supervisor.supervise, actor)
        for dispatcher in self.fleet.dispatchers.values():
            await self.dispatch_nursery.start(dispatcher.run)
