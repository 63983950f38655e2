"""``[growth]``: the cohorts' window and size, where growth events are forwarded, the
planning stages and their rules, the opportunity rules, experiments defined in config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import attrs
from attrs import validators as v

from ._cohorts import MIN_COHORT, WINDOW_DAYS
from ._stages import StageSettings


def _experiments(instance: object, _: attrs.Attribute[Any], value: Mapping[str, Any]) -> None:
    from ._experiments import parse_spec

    for name, table in value.items():
        if not isinstance(table, Mapping):
            raise ValueError(f"experiments.{name}: expected a table")
        try:
            parse_spec(table, name=name)
        except ValueError as exc:
            raise ValueError(f"experiments.{name}: {exc}") from None


def _opportunities(instance: object, _: attrs.Attribute[Any], value: Mapping[str, Any]) -> None:
    from ._opportunities import parse_settings

    try:
        parse_settings(value)
    except ValueError as exc:
        raise ValueError(f"opportunities: {exc}") from None


@attrs.frozen
class GrowthSettings:
    """``[growth]``.

    ``forward`` names analytics targets (Mixpanel, Amplitude) every recorded
    growth event is also sent to, through their actors. Experiments may be
    defined here (``[growth.experiments.NAME]``) or by ``experiment create``;
    one defined here starts when the daemon does, and a running one whose
    design the file changes is refused at start (start a new phase instead).
    """

    window_days: int = attrs.field(default=WINDOW_DAYS, validator=[v.ge(1), v.le(3650)])
    min_cohort: int = attrs.field(default=MIN_COHORT, validator=v.ge(1))
    forward: tuple[str, ...] = ()
    stages: StageSettings = attrs.Factory(StageSettings)
    opportunities: dict[str, Any] = attrs.field(factory=dict, validator=_opportunities)
    experiments: dict[str, dict[str, Any]] = attrs.field(factory=dict, validator=_experiments)


class _Routes(Protocol):
    def family_of(self, target: str) -> str: ...

    @property
    def deliverability(self) -> Any: ...


def growth_problems(settings: GrowthSettings, config: _Routes) -> list[tuple[str, str]]:
    """What ``[growth]`` says about other sections: targets and categories that must exist."""
    from ._opportunities import parse_settings

    problems = []
    for index, target in enumerate(settings.forward):
        if config.family_of(target) != "analytics":
            why = f"{target!r} is not an analytics integration or group (Mixpanel, Amplitude)"
            problems.append((f"growth.forward[{index}]", why))
    if not settings.opportunities:  # not written: a config may have no email at all
        return problems
    try:
        opportunities = parse_settings(settings.opportunities)
    except ValueError:
        return problems  # reported where the section was read
    if config.family_of(opportunities.target) != "email":
        why = f"{opportunities.target!r} is not an email integration or group"
        problems.append(("growth.opportunities.target", why))
    categories = config.deliverability.categories
    for rule in ("vendor_invite", "referral_ask"):
        category = getattr(opportunities, rule).category
        if category not in categories:
            why = f"{category!r} is not in [deliverability] categories"
            problems.append((f"growth.opportunities.{rule}.category", why))
    return problems
