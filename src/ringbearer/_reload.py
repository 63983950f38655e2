"""Reload: the difference between the running config and a new one, then applying it.

A reload adds, removes and re-tunes integrations and groups; everything else
(where the state lives, the control socket, the metrics listener, the
sandbox, the public listener and the deliverability rules) is bound when the
daemon starts, so a change there is reported as
needing a restart and the running value is kept.

:class:`ReloadPlan` is the pure difference; :class:`Reloader` applies it,
and owns the nurseries the integrations' actors and dispatchers run in.

A reload is all or nothing. One that would strand work (see ``_strand``) is
refused before anything is touched, unless told to drop it. Then its steps
run in order: build the adapters, stop the dispatchers, stop the actors that
go or change, drop stranded work, switch to the new config, re-read the
calendar, start the new actors, start the dispatchers. A failure at any step
rolls back to the set that ran before (the old config, an actor for each
old integration, a dispatcher for each old target) and answers
``reload_failed``; every dispatcher runs after a reload, whatever happened.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping

import attrs
import trio

from ._actor import ActorState, IntegrationActor
from ._alerting import AlertManager
from ._config import Config, load, unresolved_secrets
from ._dispatcher import Dispatcher
from ._errors import ConfigError, ErrorCode, RequestError
from ._fleet import Fleet, PartsFactory, restore_budgets, route_lengths
from ._journal import Journal
from ._logging import fields
from ._mode import ModeController
from ._strand import Drains, Drop, refusal
from ._supervisor import Supervisor
from ._systemd import Notifier
from .control import _replies as r
from .integrations import Adapter, ProviderKind
from .store import Controls, EventKind

log = logging.getLogger("ringbearer.reload")

# Sections read once at start-up; a reload keeps their running values.
# The public listener is bound at start; the deliverability parts (the book's
# rules, the guard's thresholds, the caps) are built from their settings then,
# and so is the vault (its key-encryption key) with its consent rules.
START_ONLY = (
    "daemon", "store", "metrics", "sandbox", "control", "webhooks", "deliverability", "privacy"
)  # fmt: skip


@attrs.frozen
class ReloadPlan:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]  # re-tuned, or failed and given a fresh start
    kept: tuple[str, ...]
    groups_changed: bool
    needs_restart: tuple[str, ...]  # start-only sections that differ
    targets_removed: tuple[str, ...] = ()  # integrations and groups a message can no longer name

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
            targets_removed=tuple(sorted(old.targets().keys() - new.targets().keys())),
        )

    @property
    def rebuilt(self) -> tuple[str, ...]:
        """Integrations whose actor is new after the reload."""
        return (*self.added, *self.changed)

    def reply(self, dropped: Mapping[str, int] | None = None) -> r.ReloadReply:
        return r.ReloadReply(
            added=list(self.added),
            removed=list(self.removed),
            changed=list(self.changed),
            kept=list(self.kept),
            groups_changed=self.groups_changed,
            needs_restart=list(self.needs_restart),
            dropped=dict(dropped or {}),
        )

    def changes(self) -> dict[str, str]:
        """The plan's non-empty lists, as log fields."""
        lists = {"added": self.added, "removed": self.removed, "changed": self.changed}
        return {k: ",".join(v) for k, v in lists.items() if v}


@attrs.define(eq=False)
class CurrentConfig:
    """The config in force; only a reload replaces it."""

    value: Config


@attrs.frozen
class _Before:
    """What ran when a reload began: what a failed one goes back to."""

    config: Config
    actors: dict[str, IntegrationActor]
    adapters: dict[str, Adapter]
    paused_groups: tuple[str, ...]


@attrs.define
class _Progress:
    """How far a reload got: what a rollback has to undo."""

    step: str = "planning"
    touched: bool = False  # has anything running been stopped or changed yet?
    stopped: list[IntegrationActor] = attrs.Factory(list)  # old actors whose intake closed
    started: list[IntegrationActor] = attrs.Factory(list)  # new actors started
    dropped: dict[str, int] = attrs.Factory(dict)


def drop_for(target: str, old: Config, new: Config) -> Drop:
    """Why ``target``'s work is dropped by a forced reload (the dead letters' reason)."""
    gone = new.integrations.get(target)
    verb = "disabled" if gone is not None and not gone.enabled else "removed"
    if target in old.groups:
        return Drop(f"group {target} {verb} by a forced reload", old.groups[target])
    if target in old.integrations:
        return Drop(f"integration {target} {verb} by a forced reload", (target,))
    return Drop(f"{target}: no route in the config; dropped by a forced reload", (target,))


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
    drains: Drains
    _lock: trio.Lock = attrs.Factory(trio.Lock)
    _running: list[Dispatcher] = attrs.Factory(list)  # started and not stopped
    _progress: _Progress = attrs.Factory(_Progress)  # of the reload under way

    async def start(self) -> None:
        """Start every built actor under the supervisor, then every dispatcher."""
        for actor in self.fleet.actors.values():
            await self.actor_nursery.start(self.supervisor.supervise, actor)
        for dispatcher in self.fleet.dispatchers.values():
            await self._run_dispatcher(dispatcher)

    async def stop_dispatchers(self) -> None:
        """Stop claiming (after a reload under way); what the dispatchers held goes back."""
        async with self._lock:
            await self._stop_dispatchers()

    async def reload_file(self, *, force: bool = False, drop_queued: bool = False) -> r.ReloadReply:
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
        return await self.reload(new, drop_queued=drop_queued)

    def _read(self) -> Config:
        new = load(self.current.value.source, self.kinds)
        missing = [] if new.sandbox.enabled else unresolved_secrets(new)
        if missing:
            raise ConfigError(str(new.source), missing)
        return new

    async def reload(self, new: Config, *, drop_queued: bool = False) -> r.ReloadReply:
        """Apply ``new``: add, remove and re-tune integrations, losing and repeating nothing.

        Everything that can fail (secrets, adapters) is built before anything
        running is touched. Then the dispatchers stop and give back what they
        hold; the integrations that go or change stop taking work and finish
        their attempts in flight; the new ones start; new dispatchers claim
        again. Queued work waits in the store meanwhile, and untouched
        integrations deliver throughout. A failure on the way rolls back.
        """
        # Shielded: a stop that arrives mid-reload waits for it rather than
        # leave half the integrations switched.
        with trio.CancelScope(shield=True):
            async with self._lock:
                plan = self._plan(new, drop_queued)
                dropped = await self._apply(new, plan, drop_queued)
        self.journal.event(EventKind.RELOADED, **attrs.asdict(plan), dropped=dropped)
        log.info("reloaded", extra=fields(**plan.changes(), dropped=dropped or None))
        return plan.reply(dropped)

    def _plan(self, new: Config, drop_queued: bool) -> ReloadPlan:
        """The plan; refused (nothing touched) if it would strand work and may not drop it."""
        failed = {n for n, a in self.fleet.actors.items() if a.state is ActorState.FAILED}
        plan = ReloadPlan.of(self.current.value, new, failed)
        stranded = self.drains.stranded(plan.targets_removed)
        if stranded and not drop_queued:
            log.error("reload refused; the running config stays", extra=fields(stranded=stranded))
            self.journal.event(
                EventKind.RELOAD_REFUSED, stranded={t: list(c) for t, c in stranded.items()}
            )
            raise RequestError(ErrorCode.WOULD_STRAND, refusal(stranded))
        return plan

    async def _apply(self, new: Config, plan: ReloadPlan, drop_queued: bool) -> dict[str, int]:
        fleet = self.fleet
        paused = tuple(t for t, d in fleet.dispatchers.items() if d.paused)
        before = _Before(self.current.value, dict(fleet.actors), dict(fleet.adapters), paused)
        progress = self._progress = _Progress()
        with self._telling_systemd():
            try:
                return await self._steps(new, plan, drop_queued, progress)
            except Exception as exc:
                await self._roll_back(before, progress, exc)
                raise _failed(exc, progress) from exc

    async def _steps(
        self, new: Config, plan: ReloadPlan, drop_queued: bool, progress: _Progress
    ) -> dict[str, int]:
        progress.step = "building adapters"
        built = self._build(new, plan)
        log.info("reloading", extra=fields(**plan.changes()))
        progress.step, progress.touched = "stopping dispatchers", True
        await self._stop_dispatchers()
        progress.step = "stopping actors"
        old = {n: self.fleet.actors[n] for n in (*plan.removed, *plan.changed)}
        await self._stop_actors(old.values())
        progress.step = "dropping stranded work"
        await self._drop(new, drop_queued, progress)
        progress.step = "switching"
        self._switch(new, plan, built, old)
        progress.step = "re-reading the calendar"
        self._use_calendar(new)
        progress.step = "starting"
        await self._start(plan)
        return progress.dropped

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

    # -- the steps ---------------------------------------------------------------------------

    def _build(self, new: Config, plan: ReloadPlan) -> dict[str, Adapter]:
        return {n: self.factory.adapter(new.integrations[n]) for n in plan.rebuilt}

    async def _run_dispatcher(self, dispatcher: Dispatcher) -> None:
        await self.dispatch_nursery.start(dispatcher.run)
        self._running.append(dispatcher)

    async def _stop_dispatchers(self) -> None:
        for dispatcher in list(self._running):
            await dispatcher.stop()
            self._running.remove(dispatcher)

    async def _stop_actors(self, actors: Iterable[IntegrationActor]) -> None:
        actors = list(actors)
        for actor in actors:
            self._progress.stopped.append(actor)
            actor.stop_intake()
        for actor in actors:
            await self.supervisor.wait_stopped(actor.name)

    async def _drop(self, new: Config, drop_queued: bool, progress: _Progress) -> None:
        """Work with no route in ``new``: dead letters if told, else the reload is refused."""
        routes = new.targets()
        if not drop_queued:
            # Work submitted to a removed target since the plan was made.
            removed = [t for t in self.current.value.targets() if t not in routes]
            stranded = self.drains.stranded(removed)
            if stranded:
                raise RequestError(ErrorCode.WOULD_STRAND, refusal(stranded))
            return
        for target in self.drains.unrouted(routes):
            drop = drop_for(target, self.current.value, new)
            progress.dropped[target] = await self.drains.drop(target, drop)

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

    def _use_calendar(self, new: Config) -> None:
        self.mode.use(new.wedding_day)

    async def _start(self, plan: ReloadPlan) -> None:
        await self._start_actors(plan)
        await self._start_dispatchers()

    async def _start_actors(self, plan: ReloadPlan) -> None:
        paused = await self.controls.paused()
        for name in plan.rebuilt:
            actor = self.fleet.actors[name]
            actor.paused = actor.paused or name in paused
            await restore_budgets(actor, self.controls, self.factory.wall)
            self._progress.started.append(actor)
            await self.actor_nursery.start(self.supervisor.supervise, actor)

    async def _start_dispatchers(self) -> None:
        for dispatcher in self.fleet.dispatchers.values():
            await self._run_dispatcher(dispatcher)

    # -- rolling back --------------------------------------------------------------------

    async def _roll_back(self, before: _Before, progress: _Progress, exc: Exception) -> None:
        """Back to what ran before, if anything was touched; the failure is in the audit log."""
        log.error("reload failed; rolling back", extra=fields(step=progress.step, error=repr(exc)))
        if progress.touched:
            await self._undo(before, progress)
        self.journal.event(
            EventKind.RELOAD_ROLLED_BACK,
            step=progress.step,
            error=repr(exc),
            dropped=progress.dropped,
        )

    async def _undo(self, before: _Before, progress: _Progress) -> None:
        """Its config, its actors, a running dispatcher per target.

        Each undo is attempted even if one before it fails: the daemon must
        come out of a failed reload delivering.
        """
        await _undo("stop the dispatchers", self._stop_dispatchers())
        for actor in progress.started:
            await _undo(f"stop the new actor {actor.name}", self._stop_actor(actor))
        config = self.current.value = before.config
        self.supervisor.use(config.supervisor)
        self.alerts.use(config.alerting)
        self.fleet.actors, self.fleet.adapters = dict(before.actors), dict(before.adapters)
        for actor in progress.stopped:
            await _undo(f"restart {actor.name}", self._restart(before, actor))
        for name, actor in self.fleet.actors.items():
            actor.routes = route_lengths(config, name)
        self.fleet.dispatchers = self.factory.dispatchers(
            config, self.fleet.actors, before.paused_groups
        )
        with _undoing("re-read the calendar"):
            self.mode.use(config.wedding_day)
        for dispatcher in self.fleet.dispatchers.values():
            await _undo(
                f"start the dispatcher {dispatcher.target}", self._run_dispatcher(dispatcher)
            )

    async def _stop_actor(self, actor: IntegrationActor) -> None:
        actor.stop_intake()
        await self.supervisor.wait_stopped(actor.name)

    async def _restart(self, before: _Before, old: IntegrationActor) -> None:
        """A stopped actor of the old set, replaced by a fresh one with its settings and state."""
        name = old.name
        await self.supervisor.wait_stopped(name)
        actor = self.factory.actor(
            before.config.integrations[name], before.adapters[name], before.config
        )
        actor.carry_over(old)
        self.fleet.actors[name] = actor
        with _undoing(f"restore {name}'s quota budgets"):
            await restore_budgets(actor, self.controls, self.factory.wall)
        await self.actor_nursery.start(self.supervisor.supervise, actor)


async def _undo(what: str, step: Awaitable[None]) -> None:
    with _undoing(what):
        await step


@contextlib.contextmanager
def _undoing(what: str) -> Iterator[None]:
    """One undo of a rollback: its failure is logged, and the rollback goes on."""
    try:
        yield
    except Exception as exc:
        log.error("rollback: could not " + what, extra=fields(error=repr(exc)))


def _failed(exc: Exception, progress: _Progress) -> RequestError:
    """The answer to a reload that failed: why, where, and that the old config stays."""
    if isinstance(exc, RequestError):
        return exc  # a refusal found on the way (work submitted to a removed target)
    dropped = ""
    if progress.dropped:
        listed = ", ".join(f"{t} {n}" for t, n in progress.dropped.items())
        dropped = f"; messages dead-lettered before the failure (replayable): {listed}"
    return RequestError(
        ErrorCode.RELOAD_FAILED,
        f"reload failed while {progress.step}: {exc}; rolled back, the running config stays"
        + dropped,
    )
