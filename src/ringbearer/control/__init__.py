"""Control: the protocol (typed requests and replies), the Unix-socket server, the client.

The server side (``serve_control``, access policies) is imported on first use, so
that a CLI call, which needs only the protocol and the client, starts fast.
"""

from typing import TYPE_CHECKING, Any

from . import _replies as replies
from ._client import Client as Client
from ._protocol import COMMANDS as COMMANDS
from ._protocol import MAX_MESSAGES_PER_SUBMIT as MAX_MESSAGES_PER_SUBMIT
from ._protocol import PROTOCOL_VERSION as PROTOCOL_VERSION
from ._protocol import Alerts as Alerts
from ._protocol import AlertsAck as AlertsAck
from ._protocol import Asks as Asks
from ._protocol import Audit as Audit
from ._protocol import Breaker as Breaker
from ._protocol import BreakerAction as BreakerAction
from ._protocol import DeadLetter as DeadLetter
from ._protocol import DeadLetters as DeadLetters
from ._protocol import InjectCrash as InjectCrash
from ._protocol import Message as Message
from ._protocol import MessageIn as MessageIn
from ._protocol import OverrideState as OverrideState
from ._protocol import Pause as Pause
from ._protocol import Preflight as Preflight
from ._protocol import PurgeDead as PurgeDead
from ._protocol import Reload as Reload
from ._protocol import ReplayDead as ReplayDead
from ._protocol import Request as Request
from ._protocol import Resume as Resume
from ._protocol import Status as Status
from ._protocol import Submit as Submit
from ._protocol import Wait as Wait
from ._protocol import WeddingDay as WeddingDay

if TYPE_CHECKING:
    from ._access import AccessPolicy as AccessPolicy
    from ._access import Peer as Peer
    from ._access import Principals as Principals
    from ._access import Role as Role
    from ._server import Guard as Guard
    from ._server import Refusal as Refusal
    from ._server import RefusalReason as RefusalReason
    from ._server import ServerLimits as ServerLimits
    from ._server import serve_control as serve_control

_SERVER_SIDE = {
    "AccessPolicy": "._access",
    "Peer": "._access",
    "Principals": "._access",
    "Role": "._access",
    "Guard": "._server",
    "Refusal": "._server",
    "RefusalReason": "._server",
    "ServerLimits": "._server",
    "serve_control": "._server",
}


def __getattr__(name: str) -> Any:
    module = _SERVER_SIDE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)


__all__ = ["replies"]
