"""The photographer-CRM family: Táve / VSCO Workspace, Light Blue, HoneyBook (via Zapier)."""

from __future__ import annotations

from ._base import ProviderKind

KINDS: tuple[ProviderKind, ...] = ()
