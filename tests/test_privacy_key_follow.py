"""Following the destroy log: a key destroyed on one node leaves the other nodes' caches.

Two "nodes" are two key stores and two vaults on one PostgreSQL key database. The log's
own rules come first (what a destroy logs, bounded reads, pruning by a prefix and telling
a reader it is too late), then the follower that applies it to a vault.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import psycopg
import pytest

from ringbearer.privacy import (
    DestroyLog,
    DestroyLogPruned,
    Erased,
    KeyFollower,
    KeyStoreError,
    Vault,
)
from ringbearer.privacy._keystore_pg import PgKeyStore

from .test_privacy_keystore import key_row
from .test_privacy_keystore_pg import T0, Wall, open_vaults, sql

DAY = 86_400.0
ANN, BEN, CAT = "ann@example.com", "ben@example.com", "cat@example.com"
PAYLOAD = {"to": "ann@example.com", "n": 1}


@attrs.define
class Nodes:
    """Two nodes' key stores on one key database, each with a wall clock of its own."""

    a: PgKeyStore
    b: PgKeyStore
    wall_a: Wall
    wall_b: Wall
    url: str


@pytest.fixture
async def nodes(pg_url: str) -> AsyncIterator[Nodes]:
    wall_a, wall_b = Wall(), Wall()
    a = await PgKeyStore.open(pg_url, wall=wall_a, retention=7 * DAY)
    b = await PgKeyStore.open(pg_url, wall=wall_b, retention=7 * DAY)
    yield Nodes(a, b, wall_a, wall_b, pg_url)
    await a.close()
    await b.close()


@attrs.define
class Reads:
    """The destroy log, noting how many subjects each read returned."""

    inner: DestroyLog
    returned: list[int] = attrs.Factory(list)

    async def destroyed_since(self, seq: int, *, limit: int = 10_000) -> tuple[list[str], int]:
        subjects, newest = await self.inner.destroyed_since(seq, limit=limit)
        self.returned.append(len(subjects))
        return subjects, newest

    async def last_destroyed(self) -> int:
        return await self.inner.last_destroyed()


async def sealed_on_a_opened_on_b(
    vault_a: Vault, vault_b: Vault, identities: list[str]
) -> tuple[list[str], list[dict[str, object]]]:
    """Subjects made on A, a payload for each sealed on A and opened on B (B caches the keys)."""
    subjects = await vault_a.ensure(identities)
    sealed = [await vault_a.seal_payload([s], PAYLOAD) for s in subjects]
    for payload in sealed:
        assert await vault_b.open_payload(payload) == PAYLOAD
    return subjects, sealed


# -- the log ------------------------------------------------------------------------------------


async def test_destroys_are_logged_in_order_only_when_they_delete_a_key(nodes: Nodes) -> None:
    """Each destroy that deleted a row logs its subject, stamped by the node's wall; the
    destroy of a subject with no row logs nothing. A reader gets them in order."""
    keys = nodes.a
    assert not await keys.destroy("s_never")
    assert await keys.last_destroyed() == 0
    assert await keys.destroyed_since(0) == ([], 0)
    await keys.put([key_row("s_a"), key_row("s_b"), key_row("s_c")])
    for subject in ("s_b", "s_a", "s_c"):
        nodes.wall_a.now += 1
        assert await keys.destroy(subject)
    assert not await keys.destroy("s_a")  # destroyed already: not logged again
    assert await nodes.b.destroyed_since(0) == (["s_b", "s_a", "s_c"], 3)
    assert await nodes.b.destroyed_since(2) == (["s_c"], 3)
    assert await nodes.b.destroyed_since(3) == ([], 3)
    assert await nodes.b.last_destroyed() == 3
    stamps = sql(nodes.url, "SELECT at FROM destroyed_keys ORDER BY seq")
    assert stamps == [(T0 + 1,), (T0 + 2,), (T0 + 3,)]


async def test_a_destroy_that_cannot_log_deletes_nothing(nodes: Nodes) -> None:
    """The log's row goes in the transaction that deletes the key: if it cannot be written,
    the key stays (no node could otherwise learn of the destroy)."""
    await nodes.a.put([key_row("s_ann"), key_row("s_ben")])
    sql(nodes.url, "ALTER TABLE destroyed_keys ADD CHECK (subject <> 's_ann')")
    with pytest.raises(KeyStoreError) as caught:
        await nodes.a.destroy("s_ann")
    assert isinstance(caught.value.__cause__, psycopg.errors.CheckViolation)
    assert list(await nodes.b.get(["s_ann"])) == ["s_ann"]
    assert await nodes.b.last_destroyed() == 0


async def test_log_reads_are_bounded(nodes: Nodes) -> None:
    """A read returns at most ``limit`` subjects; the next one goes on from the seq returned."""
    await nodes.a.put([key_row(f"s_{i}") for i in range(5)])
    for i in range(5):
        await nodes.a.destroy(f"s_{i}")
    assert await nodes.b.destroyed_since(0, limit=2) == (["s_0", "s_1"], 2)
    assert await nodes.b.destroyed_since(2, limit=2) == (["s_2", "s_3"], 4)
    assert await nodes.b.destroyed_since(4, limit=2) == (["s_4"], 5)


async def test_pruning_cuts_the_oldest_rows_and_readers_behind_the_cut_are_told(
    nodes: Nodes,
) -> None:
    """Pruning cuts a prefix: up to the first row stamped at or after the limit, so a row
    stamped early by a node whose clock is behind, logged after a later one, stays. A
    reader whose cursor is behind the cut gets DestroyLogPruned with where to go on from;
    with the whole log pruned, the newest seq is still known."""
    await nodes.a.put([key_row(f"s_{i}") for i in range(1, 5)])
    nodes.wall_a.now, nodes.wall_b.now = T0 + 10, T0 + 5  # B's clock is 5 s behind
    await nodes.a.destroy("s_1")  # seq 1, stamped T0 + 10
    await nodes.a.destroy("s_2")  # seq 2, T0 + 10
    nodes.wall_a.now = T0 + 20
    await nodes.a.destroy("s_3")  # seq 3, T0 + 20
    await nodes.b.destroy("s_4")  # seq 4, stamped T0 + 5: earlier than seq 3's
    assert await nodes.b.prune_destroyed(T0 + 15) == 2  # seqs 1 and 2; seq 4 stays
    assert await nodes.b.destroyed_since(2) == (["s_3", "s_4"], 4)
    with pytest.raises(DestroyLogPruned) as caught:
        await nodes.b.destroyed_since(1)
    assert (caught.value.since, caught.value.pruned_through, caught.value.newest) == (1, 2, 4)
    assert await nodes.b.prune_destroyed(T0 + 100) == 2
    assert await nodes.b.last_destroyed() == 4  # not 0: a new node starts after the cut
    assert await nodes.b.destroyed_since(4) == ([], 4)
    with pytest.raises(DestroyLogPruned):
        await nodes.b.destroyed_since(3)


async def test_a_destroy_prunes_the_log_by_the_retention(nodes: Nodes) -> None:
    """A destroy a week and a day after another cuts the older one from the log."""
    await nodes.a.put([key_row("s_old"), key_row("s_new")])
    await nodes.a.destroy("s_old")
    nodes.wall_a.now = T0 + 8 * DAY
    await nodes.a.destroy("s_new")
    assert sql(nodes.url, "SELECT seq, subject FROM destroyed_keys") == [(2, "s_new")]
    assert await nodes.b.destroyed_since(1) == (["s_new"], 2)


async def test_a_number_a_rolled_back_destroy_drew_is_not_taken_for_a_cut(
    nodes: Nodes,
) -> None:
    """A number drawn and never logged (the destroy rolled back) is a gap in the log; a
    reader just below it is not told it is too late once older rows are pruned."""
    await nodes.a.put([key_row("s_1"), key_row("s_3")])
    await nodes.a.destroy("s_1")  # seq 1
    sql(nodes.url, "SELECT nextval('destroyed_keys_seq_seq')")  # seq 2: rolled back
    nodes.wall_a.now = T0 + 8 * DAY
    await nodes.a.destroy("s_3")  # seq 3; prunes seq 1
    assert await nodes.b.destroyed_since(1) == (["s_3"], 3)


# -- the follower -------------------------------------------------------------------------------


async def test_a_key_destroyed_on_one_node_is_forgotten_by_the_other_when_it_follows(
    nodes: Nodes,
) -> None:
    """B caches a subject's key; A destroys it; B still opens the payload until its follower
    runs (the gap is real), then it is Erased on B too. A's own destroy coming back to A
    through the log is harmless."""
    vault_a, vault_b = await open_vaults(nodes.a, nodes.b)
    follow_a = await KeyFollower.start(nodes.a, vault_a)
    follow_b = await KeyFollower.start(nodes.b, vault_b)
    (ann, _), (for_ann, for_ben) = await sealed_on_a_opened_on_b(vault_a, vault_b, [ANN, BEN])
    assert await vault_a.destroy(ann)
    with pytest.raises(Erased):
        await vault_a.open_payload(for_ann)
    assert await vault_b.open_payload(for_ann) == PAYLOAD  # the gap: B has not followed yet
    assert await follow_b.follow() == 1  # ann's key; ben's stays
    with pytest.raises(Erased) as caught:
        await vault_b.open_payload(for_ann)
    assert caught.value.subject == ann
    assert await vault_b.open_payload(for_ben) == PAYLOAD
    assert await follow_a.follow() == 0  # A forgot it when it destroyed it
    assert follow_a.cursor == follow_b.cursor == 1
    assert await follow_b.follow() == 0


async def test_a_follower_starts_at_the_newest_destroy_and_empties_the_cache(
    nodes: Nodes,
) -> None:
    """A follower started after destroys does not replay them: it starts at the newest, and
    drops what its vault cached before, which may predate one of them."""
    vault_a, vault_b = await open_vaults(nodes.a, nodes.b)
    (ann, _), (for_ann, _) = await sealed_on_a_opened_on_b(vault_a, vault_b, [ANN, BEN])
    await vault_a.destroy(ann)
    follow_b = await KeyFollower.start(nodes.b, vault_b)
    assert follow_b.cursor == 1
    with pytest.raises(Erased):
        await vault_b.open_payload(for_ann)
    assert await follow_b.follow() == 0


async def test_a_follower_far_behind_reads_the_log_in_bounded_rounds(nodes: Nodes) -> None:
    """Five destroys, read two at a time: one follow reads three times and forgets all five."""
    vault_a, vault_b = await open_vaults(nodes.a, nodes.b)
    reads = Reads(nodes.b)
    follow_b = await KeyFollower.start(reads, vault_b, batch=2)
    names = [f"guest{i}@example.com" for i in range(5)]
    subjects, sealed = await sealed_on_a_opened_on_b(vault_a, vault_b, names)
    for subject in subjects:
        await vault_a.destroy(subject)
    assert await follow_b.follow() == 5
    assert reads.returned == [2, 2, 1] and follow_b.cursor == 5
    for payload in sealed:
        with pytest.raises(Erased):
            await vault_b.open_payload(payload)


async def test_a_follower_that_slept_past_the_retention_drops_its_whole_cache(
    nodes: Nodes,
) -> None:
    """B does not follow for eight days; the destroy it missed is pruned from the log. It
    cannot know which keys to forget, so it forgets all it cached, and goes on from the
    newest destroy: what was destroyed is Erased on B, what was not opens again."""
    vault_a, vault_b = await open_vaults(nodes.a, nodes.b)
    follow_b = await KeyFollower.start(nodes.b, vault_b)
    (_, ben, cat), sealed = await sealed_on_a_opened_on_b(vault_a, vault_b, [ANN, BEN, CAT])
    await vault_a.destroy(cat)  # seq 1
    nodes.wall_a.now = T0 + 8 * DAY
    await vault_a.destroy(ben)  # seq 2: prunes seq 1
    assert await follow_b.follow() == 3  # every key B cached, not only ben's
    assert follow_b.cursor == 2
    for_ann, for_ben, for_cat = sealed
    assert await vault_b.open_payload(for_ann) == PAYLOAD
    for payload in (for_ben, for_cat):
        with pytest.raises(Erased):
            await vault_b.open_payload(payload)
    assert await follow_b.follow() == 0
