"""Resilience state machines: circuit breaker, retry policy, health, rate limit, budgets.

Each is pure and reads time from an injected clock (``trio.current_time`` by
default), so the daemon and its tests drive them the same way.
"""

from ._breaker import BreakerSettings as BreakerSettings
from ._breaker import BreakerSnapshot as BreakerSnapshot
from ._breaker import BreakerState as BreakerState
from ._breaker import BreakerTransition as BreakerTransition
from ._breaker import CircuitBreaker as CircuitBreaker
from ._budget import Budget as Budget
from ._budget import Budgets as Budgets
from ._budget import BudgetSettings as BudgetSettings
from ._budget import BudgetSnapshot as BudgetSnapshot
from ._health import Health as Health
from ._health import HealthSettings as HealthSettings
from ._health import HealthSnapshot as HealthSnapshot
from ._health import HealthState as HealthState
from ._ratelimit import RateLimitSettings as RateLimitSettings
from ._ratelimit import TokenBucket as TokenBucket
from ._retry import RetryPolicy as RetryPolicy
from ._retry import RetrySettings as RetrySettings
