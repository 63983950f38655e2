"""The once-only duties run while this node leads, stop the moment its lead is lost, and
start again (taking up the open alerts first) when it leads again."""

from __future__ import annotations

import attrs
import trio
import trio.testing

from ringbearer._leader_duties import LeaderDuties
from ringbearer.store._pg._nodes import Lead

LEASE = 15.0


@attrs.define
class Leading:
    """A leadership whose answers the test decides: ``free`` says whether this node may lead."""

    free: bool = True
    term: int = 0
    resigned: list[int] = attrs.Factory(list)

    async def acquire(self) -> Lead | None:
        await trio.lowlevel.checkpoint()
        if not self.free:
            return None
        self.term += 1
        return Lead("duties", "node-a", self.term, 0.0)

    async def renew(self, lead: Lead) -> Lead | None:
        await trio.lowlevel.checkpoint()
        return lead if self.free and lead.term == self.term else None

    async def resign(self, lead: Lead) -> None:
        await trio.lowlevel.checkpoint()
        self.resigned.append(lead.term)


@attrs.define
class Duty:
    running: int = 0
    started: int = 0

    async def start(self, nursery: trio.Nursery) -> None:
        await nursery.start(self.run)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.running += 1
        self.started += 1
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            self.running -= 1


async def test_duties_run_only_while_leading(autojump_clock: trio.testing.MockClock) -> None:
    leading, duty, taken_up = Leading(free=False), Duty(), []

    async def on_lead() -> None:
        taken_up.append(trio.current_time())

    duties = LeaderDuties([duty.start], leading, LEASE, on_lead)
    async with trio.open_nursery() as nursery:
        await nursery.start(duties.run)
        await trio.sleep(LEASE)
        assert (duty.running, duties.leads, taken_up) == (0, False, [])  # another node leads
        leading.free = True
        await trio.sleep(LEASE / 3 + 1)
        assert (duty.running, duties.leads, len(taken_up)) == (1, True, 1)
        leading.term += 1  # this node paused; another took over (a higher term)
        await trio.sleep(LEASE / 3 + 1)
        assert (duty.running, duties.leads) == (0, False)  # stopped at the failed renewal
        await trio.sleep(LEASE)
        assert (duty.running, duty.started, len(taken_up)) == (1, 2, 2)  # leads again
        nursery.cancel_scope.cancel()
    assert leading.resigned == [leading.term]  # a clean stop gives the lead up


async def test_alone_the_duties_run_from_the_start() -> None:
    duty = Duty()

    async def on_lead() -> None:
        raise AssertionError("alone, nothing is taken up: the start did it")

    async with trio.open_nursery() as nursery:
        await nursery.start(LeaderDuties([duty.start, duty.start], None, LEASE, on_lead).run)
        assert duty.running == 2
        nursery.cancel_scope.cancel()
    assert duty.running == 0
