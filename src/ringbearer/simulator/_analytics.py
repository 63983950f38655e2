"""The simulated analytics providers: their specs, one per provider kind."""

from __future__ import annotations

from . import _amplitude, _mixpanel
from ._provider import ProviderSpec

SPECS: tuple[ProviderSpec, ...] = (_mixpanel.SPEC, _amplitude.SPEC)
