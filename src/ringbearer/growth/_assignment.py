"""Experiment assignment, computed exactly as GrowthBook computes it.

Anyone holding an experiment's key, seed, weights and coverage can recompute a unit's
variant with any GrowthBook SDK: the hash is FNV-1a 32 over UTF-16 code units (as the
JavaScript SDK's ``charCodeAt`` loop sees the text, so emoji hash as two surrogates),
hash version 2 by default, and the bucket ranges are GrowthBook's.

The low-level functions (:func:`fnv1a32`, :func:`gb_hash`, :func:`bucket_ranges`,
:func:`choose_variation`) are GrowthBook's, lenient where it is lenient: unusable weights
fall back to equal ones, coverage is clamped. :func:`assign` is the strict entry point: it
refuses, with a ``ValueError`` naming the fault, anything GrowthBook would silently repair,
because a configuration typo must not quietly become an equal split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_MASK32 = 0xFFFFFFFF

# GrowthBook accepts weights whose sum lies in this closed range (WEIGHT_SUM_MIN/MAX).
WEIGHT_SUM_MIN = 0.99
WEIGHT_SUM_MAX = 1.01
SUPPORTED_HASH_VERSIONS = (1, 2)

Range = tuple[float, float]


def _utf16_code_units(text: str) -> list[int]:
    """The UTF-16 code units of ``text``; a lone surrogate stays one unit, as in JavaScript."""
    units: list[int] = []
    for char in text:
        point = ord(char)
        if point < 0x10000:
            units.append(point)
        else:
            point -= 0x10000
            units.extend((0xD800 | (point >> 10), 0xDC00 | (point & 0x3FF)))
    return units


def fnv1a32(text: str) -> int:
    """FNV-1a 32-bit hash of ``text`` over its UTF-16 code units."""
    value = _FNV_OFFSET
    for unit in _utf16_code_units(text):
        value = ((value ^ unit) * _FNV_PRIME) & _MASK32
    return value


def gb_hash(seed: str, value: str, version: int) -> float | None:
    """GrowthBook's ``hash``: a number in [0, 1), or None for an unknown hash version."""
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def equal_weights(num_variations: int) -> list[float]:
    """``num_variations`` equal weights (GrowthBook's ``getEqualWeights``)."""
    if num_variations < 1:
        return []
    return [1 / num_variations for _ in range(num_variations)]


def _is_finite_number(value: object) -> bool:
    """A real number (not a bool) that is finite; ints too large for a float are not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _is_usable_weight(weight: float) -> bool:
    return _is_finite_number(weight) and weight >= 0


def _weights_usable(weights: Sequence[float] | None, num_variations: int) -> bool:
    if weights is None or len(weights) != num_variations:
        return False
    if not all(_is_usable_weight(w) for w in weights):
        return False
    return WEIGHT_SUM_MIN <= sum(weights) <= WEIGHT_SUM_MAX


def bucket_ranges(
    num_variations: int, coverage: float = 1.0, weights: Sequence[float] | None = None
) -> list[Range]:
    """GrowthBook's ``getBucketRanges``: variation i gets ``[start_i, start_i + coverage*w_i)``.

    Coverage is clamped to [0, 1]; weights that are missing, of the wrong length, negative,
    non-finite or not summing to 1 within [0.99, 1.01] are replaced by equal weights.
    """
    coverage = min(max(coverage, 0.0), 1.0)
    used = list(weights) if weights is not None else []
    if not _weights_usable(weights, num_variations):
        used = equal_weights(num_variations)
    # The same float additions in the same order as GrowthBook, so the edges agree bit for bit.
    cumulative: float = 0
    ranges: list[Range] = []
    for weight in used:
        start = cumulative
        cumulative += weight
        ranges.append((start, start + coverage * weight))
    return ranges


def choose_variation(n: float, ranges: Sequence[Range]) -> int:
    """Index of the first range holding ``n`` (half-open), or -1 when none does."""
    for index, (start, end) in enumerate(ranges):
        if start <= n < end:
            return index
    return -1


def check_weights(weights: Sequence[float]) -> None:
    """Raise ``ValueError`` naming the fault unless ``weights`` is a usable experiment split."""
    if len(weights) < 2:
        raise ValueError(f"an experiment needs 2 or more variants, got {len(weights)} weight(s)")
    for index, weight in enumerate(weights):
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ValueError(f"weight of variant {index} is not a number")
        if not _is_finite_number(weight):
            raise ValueError(f"weight of variant {index} is not finite")
        if weight < 0:
            raise ValueError(f"weight of variant {index} is negative ({weight})")
    total = sum(weights)
    if not WEIGHT_SUM_MIN <= total <= WEIGHT_SUM_MAX:
        raise ValueError(
            f"weights must sum to 1 (within {WEIGHT_SUM_MIN}..{WEIGHT_SUM_MAX}), got {total:g}"
        )


def check_coverage(coverage: float) -> None:
    """Raise ``ValueError`` unless ``coverage`` is a finite number in [0, 1]."""
    if not _is_finite_number(coverage):
        raise ValueError("coverage is not a finite number")
    if not 0 <= coverage <= 1:
        raise ValueError(f"coverage must lie in [0, 1], got {coverage}")


def check_hash_version(hash_version: int) -> None:
    """Raise ``ValueError`` unless GrowthBook knows ``hash_version``."""
    if isinstance(hash_version, bool) or hash_version not in SUPPORTED_HASH_VERSIONS:
        raise ValueError(f"hash_version must be 1 or 2, got {hash_version!r}")


def assign(
    key: str,
    unit: str,
    weights: Sequence[float],
    *,
    seed: str | None = None,
    coverage: float = 1.0,
    hash_version: int = 2,
) -> int | None:
    """The variant index GrowthBook gives ``unit`` in experiment ``key``; None when not in it.

    The seed defaults to the key (an empty seed too, as in GrowthBook). An empty unit id and
    a unit outside ``coverage`` are not in the experiment. Invalid weights, coverage or hash
    version raise ``ValueError``.
    """
    check_weights(weights)
    check_coverage(coverage)
    check_hash_version(hash_version)
    if not unit:
        return None
    n = gb_hash(seed or key, unit, hash_version)
    if n is None:  # unreachable after check_hash_version; keeps the type honest
        return None
    index = choose_variation(n, bucket_ranges(len(weights), coverage, weights))
    return None if index < 0 else index
