"""Control: the protocol, the Unix-socket server and the CLI's client."""

from ._access import AccessPolicy as AccessPolicy
from ._access import Peer as Peer
from ._access import Principals as Principals
from ._access import Role as Role
from ._client import Client as Client
from ._protocol import COMMANDS as COMMANDS
from ._protocol import PROTOCOL_VERSION as PROTOCOL_VERSION
from ._protocol import Alerts as Alerts
from ._protocol import AlertsAck as AlertsAck
from ._protocol import Audit as Audit
from ._protocol import Breaker as Breaker
from ._protocol import DeadLetters as DeadLetters
from ._protocol import InjectCrash as InjectCrash
from ._protocol import Message as Message
from ._protocol import MessageIn as MessageIn
from ._protocol import Pause as Pause
from ._protocol import Reload as Reload
from ._protocol import Request as Request
from ._protocol import Resume as Resume
from ._protocol import Status as Status
from ._protocol import Submit as Submit
from ._protocol import Wait as Wait
from ._protocol import WeddingDay as WeddingDay
from ._server import Guard as Guard
from ._server import ServerLimits as ServerLimits
from ._server import serve_control as serve_control
