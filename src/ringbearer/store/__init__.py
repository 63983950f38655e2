"""The durable outbox: messages, attempts, the audit log and dead letters."""

from ._memory import MemoryStore as MemoryStore
from ._model import ALL_PRIORITIES as ALL_PRIORITIES
from ._model import ALLOWED as ALLOWED
from ._model import Accepted as Accepted
from ._model import Attempt as Attempt
from ._model import BreakerRecord as BreakerRecord
from ._model import Claimed as Claimed
from ._model import Counters as Counters
from ._model import DeadLetter as DeadLetter
from ._model import Event as Event
from ._model import EventKind as EventKind
from ._model import MessageStatus as MessageStatus
from ._model import NewMessage as NewMessage
from ._model import QueueCounts as QueueCounts
from ._model import Settle as Settle
from ._model import SettleKind as SettleKind
from ._model import Span as Span
from ._model import check_transition as check_transition
from ._protocol import Store as Store
from ._protocol import StoreListener as StoreListener
from ._protocol import StoreStatistics as StoreStatistics
from ._schema import SCHEMA_VERSION as SCHEMA_VERSION
from ._sqlite import SqliteStore as SqliteStore
