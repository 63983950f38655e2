"""The simulated social providers: their specs, one per provider kind."""

from __future__ import annotations

from . import _facebook, _instagram, _linkedin, _x
from ._provider import ProviderSpec

SPECS: tuple[ProviderSpec, ...] = (_facebook.SPEC, _instagram.SPEC, _linkedin.SPEC, _x.SPEC)
