"""The durable outbox: messages, attempts, the audit log, dead letters, alerts, what
providers report back (their events on messages, the suppression list), what
privacy keeps (subjects' messages, erasure jobs, consent, sealed tokens), and what
growth keeps (templates, growth events, experiments).

The stores themselves (``SqliteStore``, ``MemoryStore``) are imported on first
use: the values and protocols here are what a CLI call needs, and it should not
pay for trio, asyncio and aiosqlite.
"""

from typing import TYPE_CHECKING, Any

from ._alert_model import AlertRecord as AlertRecord
from ._alert_model import SentNotice as SentNotice
from ._growth_model import ExperimentRecord as ExperimentRecord
from ._growth_model import Exposure as Exposure
from ._growth_model import GrowthRow as GrowthRow
from ._growth_model import TemplateRecord as TemplateRecord
from ._growth_model import VariantCounts as VariantCounts
from ._keys import KeyReused as KeyReused
from ._model import ALL_PRIORITIES as ALL_PRIORITIES
from ._model import ALLOWED as ALLOWED
from ._model import HELD_UNTIL as HELD_UNTIL
from ._model import Accepted as Accepted
from ._model import Attempt as Attempt
from ._model import BreakerRecord as BreakerRecord
from ._model import Claimed as Claimed
from ._model import Counters as Counters
from ._model import DeadLetter as DeadLetter
from ._model import Event as Event
from ._model import EventKind as EventKind
from ._model import MessageRecord as MessageRecord
from ._model import MessageStatus as MessageStatus
from ._model import NewMessage as NewMessage
from ._model import OverrideRecord as OverrideRecord
from ._model import QueueCounts as QueueCounts
from ._model import Settle as Settle
from ._model import SettleKind as SettleKind
from ._model import Span as Span
from ._model import check_transition as check_transition
from ._privacy_model import ERASED_PAYLOAD as ERASED_PAYLOAD
from ._privacy_model import SHREDDED_PAYLOAD as SHREDDED_PAYLOAD
from ._privacy_model import ConsentRecord as ConsentRecord
from ._privacy_model import ErasedMessages as ErasedMessages
from ._privacy_model import ErasureRecord as ErasureRecord
from ._privacy_model import MailEvent as MailEvent
from ._privacy_model import SubjectMessage as SubjectMessage
from ._protocol import AlertState as AlertState
from ._protocol import AuditLog as AuditLog
from ._protocol import Controls as Controls
from ._protocol import DeadLetterOps as DeadLetterOps
from ._protocol import Deliverability as Deliverability
from ._protocol import Dispatch as Dispatch
from ._protocol import Experiments as Experiments
from ._protocol import GrowthRecords as GrowthRecords
from ._protocol import Intake as Intake
from ._protocol import Lifecycle as Lifecycle
from ._protocol import Privacy as Privacy
from ._protocol import Queries as Queries
from ._protocol import Settling as Settling
from ._protocol import Store as Store
from ._protocol import StoreListener as StoreListener
from ._protocol import StoreStatistics as StoreStatistics
from ._protocol import Templates as Templates
from ._schema import SCHEMA_VERSION as SCHEMA_VERSION

if TYPE_CHECKING:
    from ._memory import MemoryStore as MemoryStore
    from ._sqlite import SqliteStore as SqliteStore

_STORES = {"MemoryStore": "._memory", "SqliteStore": "._sqlite"}


def __getattr__(name: str) -> Any:
    module = _STORES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)
