"""The analytics family: Mixpanel and Amplitude, both batching."""

from __future__ import annotations

from ._base import ProviderKind

KINDS: tuple[ProviderKind, ...] = ()
