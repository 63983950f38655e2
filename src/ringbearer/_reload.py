"""What a reload changes: the difference between the running config and a new one.

A reload adds, removes and re-tunes integrations and groups; everything else
(where the state lives, the control socket, the metrics listener, the
sandbox) is bound when the daemon starts, so a change there is reported as
needing a restart and the running value is kept.
"""

from __future__ import annotations

from collections.abc import Collection

import attrs

from ._config import Config

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

    def summary(self) -> dict[str, object]:
        # Lists, as JSON has them.
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in attrs.fields(ReloadPlan)
        }
