"""The social family: Facebook Pages, Instagram, LinkedIn and X."""

from __future__ import annotations

from ._base import ProviderKind

KINDS: tuple[ProviderKind, ...] = ()
