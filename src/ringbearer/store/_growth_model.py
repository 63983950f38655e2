"""What the store keeps for growth: versioned templates."""

from __future__ import annotations

from collections.abc import Mapping

import attrs


@attrs.frozen
class TemplateRecord:
    """One version of a template: its parts (a payload field -> its source), as put."""

    name: str
    version: int  # 1, 2, ...: a put makes the next one; a version never changes
    parts: Mapping[str, str]
    created_at: float  # wall clock
    by: str
