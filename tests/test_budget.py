"""Quota budgets: a sliding window per quota, with a share only critical work may spend."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from ringbearer._delivery import Priority
from ringbearer.resilience import Budget, Budgets, BudgetSettings

CRITICAL, NORMAL, BULK = Priority.CRITICAL, Priority.NORMAL, Priority.BULK


@attrs.define
class Clock:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now


def spend(budgets: Budgets, priority: Priority, times: int) -> int:
    """Try ``times`` sends; return how many the budgets let through."""
    return sum(budgets.try_spend(priority) == 0.0 for _ in range(times))


def test_others_spend_only_what_critical_work_does_not_hold_back() -> None:
    """With 10 a minute and 30% held back, normal and bulk get 7 and critical the rest."""
    clock = Clock()
    budgets = Budgets.of([BudgetSettings(10, "minute", critical_reserve=0.3)], clock)
    assert spend(budgets, BULK, 5) == 5
    assert spend(budgets, NORMAL, 5) == 2
    assert spend(budgets, CRITICAL, 5) == 3
    assert budgets.snapshot()[0].used == 10


def test_the_window_slides() -> None:
    """A send leaves the window exactly one period after it was made, and the wait says when."""
    clock = Clock()
    budgets = Budgets.of([BudgetSettings(2, "minute", critical_reserve=0.0)], clock)
    assert spend(budgets, NORMAL, 1) == 1
    clock.now += 20
    assert spend(budgets, NORMAL, 2) == 1
    assert budgets.wait_time(NORMAL) == pytest.approx(40.0)
    clock.now += 40
    assert budgets.wait_time(NORMAL) == 0.0
    assert spend(budgets, NORMAL, 2) == 1
    assert budgets.wait_time(NORMAL) == pytest.approx(20.0)


def test_a_refused_send_spends_nothing_in_any_budget() -> None:
    """Every budget must allow a send; when one refuses, none is charged."""
    clock = Clock()
    per_second = BudgetSettings(100, "second", critical_reserve=0.0)
    per_day = BudgetSettings(3, "day", critical_reserve=0.0)
    budgets = Budgets.of([per_second, per_day], clock)
    assert spend(budgets, NORMAL, 5) == 3
    assert [s.used for s in budgets.snapshot()] == [3, 3]
    assert budgets.wait_time(NORMAL) == pytest.approx(86_400.0)
    assert budgets.longest == per_day


def test_critical_waits_only_when_the_whole_limit_is_spent() -> None:
    """Critical work's wait counts the reserve; other work's does not."""
    clock = Clock()
    budgets = Budgets.of([BudgetSettings(4, "hour", critical_reserve=0.5)], clock)
    for _ in range(2):
        assert budgets.try_spend(NORMAL) == 0.0
        clock.now += 60
    assert budgets.wait_time(NORMAL) == pytest.approx(3600 - 120)
    assert budgets.wait_time(CRITICAL) == 0.0
    assert spend(budgets, CRITICAL, 3) == 2
    assert budgets.wait_time(CRITICAL) == pytest.approx(3600 - 120)


def test_restore_rebuilds_the_window_from_earlier_sends() -> None:
    """Sends from before a restart still count until they leave the window; older ones do not."""
    clock = Clock(10_000.0)
    budget = Budget(BudgetSettings(5, "minute", critical_reserve=0.0), clock)
    budget.restore([clock.now - 90, clock.now - 50, clock.now - 10, clock.now - 5])
    assert budget.snapshot().used == 3
    assert budget.wait_time(NORMAL) == 0.0
    budget.spend()
    budget.spend()
    assert budget.wait_time(NORMAL) == pytest.approx(10.0)


def test_snapshot_reports_what_is_left_for_each_kind_of_work() -> None:
    """The snapshot shows the limit, its period, what is used and what is left for whom."""
    clock = Clock()
    budgets = Budgets.of([BudgetSettings(120, "minute", critical_reserve=0.25)], clock)
    spend(budgets, NORMAL, 100)
    (snap,) = budgets.snapshot()
    assert (snap.limit, snap.per, snap.used) == (120, "minute", 90)
    assert (snap.left_for_others, snap.left_for_critical) == (0, 30)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"limit": 0, "per": "minute"}, "limit"),
        ({"limit": 5, "per": "week"}, "per"),
        ({"limit": 5, "per": "day", "critical_reserve": 1.0}, "critical_reserve"),
        ({"limit": 5, "per": "day", "critical_reserve": -0.1}, "critical_reserve"),
    ],
)
def test_bad_settings_are_refused(fields: dict[str, Any], message: str) -> None:
    """Limits are positive, periods known, reserves a fraction below one."""
    with pytest.raises(ValueError, match=message):
        BudgetSettings(**fields)
