"""Experiment assignment: GrowthBook's spec vectors, input checks, and parity with the SDK."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import pytest
from growthbook import Experiment, GrowthBook
from growthbook.core import chooseVariation, fnv1a32, gbhash, getBucketRanges

from ringbearer.growth import _assignment as assignment

# --- GrowthBook's spec vectors (tests/cases.json, specVersion 0.7.1) ---


@pytest.mark.parametrize(
    ("seed", "value", "version", "expected"),
    [
        ("", "a", 1, 0.22),
        ("", "b", 1, 0.077),
        ("b", "a", 1, 0.946),
        ("seed", "a", 2, 0.0505),
        ("seed", "b", 2, 0.2696),
        ("foo", "ab", 2, 0.2575),
        ("seed", "a", 99, None),
    ],
)
def test_hash_spec_vectors(seed: str, value: str, version: int, expected: float | None) -> None:
    """gb_hash gives GrowthBook's published values, and None for an unknown version."""
    assert assignment.gb_hash(seed, value, version) == expected


def test_fnv1a32_hashes_utf16_code_units() -> None:
    """An emoji hashes as its two UTF-16 surrogates (the JS SDK and growthbook 4.0.0 value)."""
    assert assignment.fnv1a32("😀") == 3409036472
    assert assignment.fnv1a32("") == 0x811C9DC5


@pytest.mark.parametrize(
    ("coverage", "expected"),
    [
        (1.0, [(0, 0.5), (0.5, 1)]),
        (0.5, [(0, 0.25), (0.5, 0.75)]),
        (0.0, [(0, 0), (0.5, 0.5)]),
    ],
)
def test_bucket_ranges_spec_vectors(coverage: float, expected: list[tuple[float, float]]) -> None:
    """Equal weights, with coverage shrinking each slot from its start."""
    assert assignment.bucket_ranges(2, coverage) == expected


def test_bucket_ranges_with_weights() -> None:
    """Weights walk cumulatively (compared to 6 decimal places, as the spec does)."""
    ranges = assignment.bucket_ranges(3, 1.0, [0.2, 0.3, 0.5])
    rounded = [(round(a, 6), round(b, 6)) for a, b in ranges]
    assert rounded == [(0, 0.2), (0.2, 0.5), (0.5, 1)]


@pytest.mark.parametrize(
    "weights",
    [None, [0.5], [0.7, 0.7], [1.2, -0.2], [math.nan, 1.0], [True, False]],
)
def test_bucket_ranges_fall_back_to_equal_weights(weights: list[float] | None) -> None:
    """Like GrowthBook, unusable weights become an equal split (assign refuses them instead)."""
    assert assignment.bucket_ranges(2, 1.0, weights) == [(0, 0.5), (0.5, 1)]


def test_bucket_ranges_clamp_coverage() -> None:
    """Coverage outside [0, 1] is clamped, as in GrowthBook."""
    assert assignment.bucket_ranges(2, 7.0) == [(0, 0.5), (0.5, 1)]
    assert assignment.bucket_ranges(2, -1.0) == [(0, 0), (0.5, 0.5)]


def test_choose_variation() -> None:
    """The first half-open range holding n wins; none gives -1."""
    assert assignment.choose_variation(0.6, [(0, 0.5), (0.5, 1)]) == 1
    assert assignment.choose_variation(0.5, [(0, 0.5), (0.5, 1)]) == 1
    assert assignment.choose_variation(0.3, [(0, 0.25), (0.5, 0.75)]) == -1


# --- assign: strict inputs ---


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0], "2 or more variants, got 1"),
        ([], "2 or more variants, got 0"),
        ([0.5, -0.1, 0.6], "weight of variant 1 is negative"),
        ([0.5, math.inf], "weight of variant 1 is not finite"),
        ([math.nan, 0.5], "weight of variant 0 is not finite"),
        ([0.5, 10**400], "weight of variant 1 is not finite"),
        ([True, False], "weight of variant 0 is not a number"),
        ([0.5, "0.5"], "weight of variant 1 is not a number"),
        ([0.5, 0.4], "must sum to 1 (within 0.99..1.01), got 0.9"),
        ([0.6, 0.42], "must sum to 1 (within 0.99..1.01), got 1.02"),
    ],
)
def test_assign_rejects_bad_weights(weights: Sequence[float], message: str) -> None:
    """Each fault is a ValueError whose message names it."""
    with pytest.raises(ValueError) as info:
        assignment.assign("exp", "user-1", weights)
    assert message in str(info.value)


@pytest.mark.parametrize("coverage", [-0.1, 1.5, math.nan, math.inf])
def test_assign_rejects_bad_coverage(coverage: float) -> None:
    """Coverage must be a finite number in [0, 1]."""
    with pytest.raises(ValueError, match="coverage"):
        assignment.assign("exp", "user-1", [0.5, 0.5], coverage=coverage)


@pytest.mark.parametrize("version", [0, 3, True])
def test_assign_rejects_unknown_hash_version(version: int) -> None:
    """Only hash versions 1 and 2 exist."""
    with pytest.raises(ValueError, match="hash_version must be 1 or 2"):
        assignment.assign("exp", "user-1", [0.5, 0.5], hash_version=version)


def test_assign_accepts_weights_within_tolerance() -> None:
    """Three thirds written to 3 places sum to 0.999, which GrowthBook accepts."""
    assert assignment.assign("exp", "user-1", [0.333, 0.333, 0.333]) in (0, 1, 2)


def test_assign_empty_unit_is_not_in_experiment() -> None:
    """An empty unit id is never assigned."""
    assert assignment.assign("exp", "", [0.5, 0.5]) is None


def test_assign_zero_coverage_excludes_everyone() -> None:
    """With coverage 0 no unit is in the experiment."""
    assert {assignment.assign("exp", f"u{i}", [0.5, 0.5], coverage=0) for i in range(200)} == {None}


def test_assign_seed_defaults_to_key() -> None:
    """No seed (or an empty one) hashes with the key, as GrowthBook does."""
    units = [f"user-{i}" for i in range(300)]
    by_key = [assignment.assign("exp-a", u, [0.5, 0.5]) for u in units]
    assert by_key == [assignment.assign("other", u, [0.5, 0.5], seed="exp-a") for u in units]
    assert by_key == [assignment.assign("exp-a", u, [0.5, 0.5], seed="") for u in units]
    assert by_key != [assignment.assign("exp-a", u, [0.5, 0.5], seed="s2") for u in units]


# --- parity with the growthbook package (4.0.0) ---


def _unit_ids(count: int) -> list[str]:
    """Unit ids of every shape: ASCII, accented, CJK, emoji (non-BMP) and a lone surrogate."""
    rng = random.Random(14)
    alphabets = [
        "abcdefghijklmnopqrstuvwxyz0123456789-_@.",
        "éèàüöñçßøåÉÖ",
        "婚礼新娘新郎ウェディング결혼식",
        "😀💍👰🤵🎉💐🥂❤️",
        "\ud83d",
    ]
    ids = ["user-1", "a", "😀", "ab😀", "José", "\ud83d"]
    while len(ids) < count:
        length = rng.randint(1, 24)
        ids.append("".join(rng.choice(rng.choice(alphabets)) for _ in range(length)))
    return ids


UNITS = _unit_ids(10_000)

DESIGNS = [
    pytest.param([0.5, 0.5], 1.0, "invite-subject", None, 2, id="50/50"),
    pytest.param([0.9, 0.1], 1.0, "invite-subject", "phase-2", 2, id="90/10"),
    pytest.param([0.2, 0.3, 0.5], 1.0, "referral-ask", "s", 2, id="20/30/50"),
    pytest.param([1 / 3, 1 / 3, 1 / 3], 1.0, "vendor-invite", None, 2, id="thirds"),
    pytest.param([0.5, 0.5], 0.35, "vendor-invite", "cov", 2, id="coverage-0.35"),
    pytest.param([0.25, 0.25, 0.25, 0.25], 0.8, "legacy", None, 1, id="quarters-v1"),
]


def _oracle(weights: list[float], coverage: float, seed: str, unit: str, version: int) -> int:
    n = gbhash(seed, unit, version)
    assert n is not None
    return chooseVariation(n, getBucketRanges(len(weights), coverage, weights))


def test_fnv1a32_matches_growthbook() -> None:
    """Our FNV-1a equals growthbook.core.fnv1a32 on all 10,000 ids."""
    assert [assignment.fnv1a32(u) for u in UNITS] == [fnv1a32(u) for u in UNITS]


@pytest.mark.parametrize(("weights", "coverage", "key", "seed", "version"), DESIGNS)
def test_assign_matches_growthbook_core(
    weights: list[float], coverage: float, key: str, seed: str | None, version: int
) -> None:
    """For 10,000 unit ids, assign equals gbhash + getBucketRanges + chooseVariation."""
    ours = [
        assignment.assign(key, u, weights, seed=seed, coverage=coverage, hash_version=version)
        for u in UNITS
    ]
    theirs = [_oracle(weights, coverage, seed or key, u, version) for u in UNITS]
    assert ours == [None if t < 0 else t for t in theirs]
    # Every variant (and, under coverage, the excluded) really occurs, so parity is not vacuous.
    assert set(ours) >= set(range(len(weights)))
    assert (None in ours) == (coverage < 1)


@pytest.mark.parametrize(("weights", "coverage", "key", "seed", "version"), DESIGNS)
def test_assign_matches_growthbook_run(
    weights: list[float], coverage: float, key: str, seed: str | None, version: int
) -> None:
    """For 10,000 unit ids, assign equals what GrowthBook.run decides for the same experiment."""
    experiment = Experiment[int](
        key=key,
        variations=list(range(len(weights))),
        weights=weights,
        coverage=coverage,
        hashVersion=version,
        seed=seed,
    )
    client = GrowthBook(attributes={})
    theirs: list[int | None] = []
    for unit in UNITS:
        client.set_attributes({"id": unit})
        result = client.run(experiment)
        theirs.append(result.variationId if result.inExperiment else None)
    client.destroy()
    ours = [
        assignment.assign(key, u, weights, seed=seed, coverage=coverage, hash_version=version)
        for u in UNITS
    ]
    assert ours == theirs
