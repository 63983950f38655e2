"""The simulated crm providers: their specs, one per provider kind."""

from __future__ import annotations

from . import _honeybook, _light_blue, _tave
from ._provider import ProviderSpec

SPECS: tuple[ProviderSpec, ...] = (_tave.SPEC, _light_blue.SPEC, _honeybook.SPEC)
