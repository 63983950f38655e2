"""Ids drawn from a provider's seeded stream, so a seeded run repeats exactly."""

from __future__ import annotations

import random


def new_uuid(rng: random.Random) -> str:
    """A version-4 UUID string."""
    # Formatting by hand costs a third of uuid.UUID(int=..., version=4).
    n = (rng.getrandbits(128) & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
