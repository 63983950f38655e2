"""Deliverability: provider events on messages, suppression, the reputation guard, caps."""

from ._book import SuppressionBook
from ._caps import CapHit, FrequencyCaps
from ._gate import Gate
from ._guard import ReputationGuard
from ._ingest import Ingest, Unsubscriber
from ._metrics import DeliverabilityMetrics
from ._model import (
    DEFAULT_CATEGORIES,
    EVERY_CATEGORY,
    MARKETING,
    PASS,
    TRANSACTIONAL,
    Channel,
    Defer,
    DomainStanding,
    Drop,
    EventRecord,
    EventType,
    FunnelRow,
    Hold,
    MailEventRow,
    MatchedEvent,
    MessageFacts,
    Pass,
    ProviderEvent,
    Reason,
    Suppression,
    Verdict,
    normalise_address,
)

__all__ = [
    "DEFAULT_CATEGORIES",
    "EVERY_CATEGORY",
    "MARKETING",
    "PASS",
    "TRANSACTIONAL",
    "CapHit",
    "Channel",
    "Defer",
    "DeliverabilityMetrics",
    "DomainStanding",
    "Drop",
    "EventRecord",
    "EventType",
    "FrequencyCaps",
    "FunnelRow",
    "Gate",
    "Hold",
    "Ingest",
    "MailEventRow",
    "MatchedEvent",
    "MessageFacts",
    "Pass",
    "ProviderEvent",
    "Reason",
    "ReputationGuard",
    "Suppression",
    "SuppressionBook",
    "Unsubscriber",
    "Verdict",
    "normalise_address",
]
