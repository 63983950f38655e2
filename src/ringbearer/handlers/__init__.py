"""One small handler per control command, and the one function that builds their table.

Each handler is given only what its command needs (a store role, the fleet,
the mode controller, the alert manager, the reloader) and returns its typed
reply. The control server calls :func:`answer` with the table.
"""

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .. import control as c
from .._alerting import AlertManager
from .._errors import ErrorCode, RequestError
from .._fleet import Fleet
from .._journal import Journal
from .._mode import ModeController
from .._preflight_duty import PreflightDuty
from .._reload import Reloader
from .._wakeups import Wakeups
from ..control import _replies as r
from ..control._protocol import command_name
from ..store import Store
from ._deliverability import ReputationGuard as ReputationGuard
from ._deliverability import SuppressionBook as SuppressionBook
from ._deliverability import deliverability_table as deliverability_table
from ._history import (
    AuditHandler,
    DeadLetterHandler,
    DeadLettersHandler,
    MessageHandler,
    PurgeHandler,
    ReplayHandler,
)
from ._intake import SubmitHandler as SubmitHandler
from ._operate import (
    AckHandler,
    AlertsHandler,
    BreakerHandler,
    CrashHandler,
    PauseHandler,
    PreflightHandler,
    ReloadHandler,
    WaitHandler,
    WeddingDayHandler,
)
from ._status import Addresses as Addresses
from ._status import StatusHandler as StatusHandler
from ._status import summary_line as summary_line

Handler = Callable[[Any], Awaitable[r.Reply]]
Table = Mapping[type[Any], Handler]


def build_table(
    *,
    store: Store,
    fleet: Fleet,
    wakeups: Wakeups,
    mode: ModeController,
    alerts: AlertManager,
    reloader: Reloader,
    preflight: PreflightDuty,
    journal: Journal,
    submit: SubmitHandler,
    status: StatusHandler,
    crash_allowed: bool,
) -> Table:
    """The handler of each request type (the deliverability commands: ``deliverability_table``)."""
    pause = PauseHandler(fleet, mode, store, store, wakeups, journal)
    return {
        c.Submit: submit,
        c.Status: status,
        c.Pause: pause,
        c.Resume: pause,
        c.Breaker: BreakerHandler(fleet, mode, store, wakeups, journal),
        c.Wait: WaitHandler(fleet, wakeups),
        c.Audit: AuditHandler(store),
        c.DeadLetters: DeadLettersHandler(store),
        c.DeadLetter: DeadLetterHandler(store),
        c.ReplayDead: ReplayHandler(store),
        c.PurgeDead: PurgeHandler(store, journal.wall),
        c.Message: MessageHandler(store),
        c.InjectCrash: CrashHandler(fleet, journal, crash_allowed),
        c.Reload: ReloadHandler(reloader),
        c.WeddingDay: WeddingDayHandler(mode),
        c.Alerts: AlertsHandler(alerts),
        c.AlertsAck: AckHandler(alerts),
        c.Preflight: PreflightHandler(preflight),
    }


async def answer(table: Table, request: c.Request) -> r.Reply:
    """Answer one control request with its handler."""
    handler = table.get(type(request))
    if handler is None:  # a part this daemon was built without
        name = command_name(request)
        raise RequestError(ErrorCode.UNKNOWN_COMMAND, f"{name!r} is not available in this daemon")
    return await handler(request)
