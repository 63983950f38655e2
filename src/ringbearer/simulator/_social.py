"""The simulated social providers: their specs, one per provider kind."""

from __future__ import annotations

from ._provider import ProviderSpec

SPECS: tuple[ProviderSpec, ...] = ()
