"""The key store on PostgreSQL: the contract the SQLite one keeps, and what several nodes
sharing one key database add (one key per subject however they race, a payload sealed on
one node opened on another, a destroy that VACUUMs, a key cached on another node).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import attrs
import psycopg
import pytest
import trio

from ringbearer.privacy import Erased, Kek, KeyRow, KeyStore, KeyStoreError, Vault
from ringbearer.privacy._keystore_pg import PgKeyStore
from ringbearer.store._pg._db import Session, connect
from ringbearer.store._pg._schema import migrate

# The contract, as tests/test_privacy_keystore.py states it for memory and SQLite:
# imported, each is collected again here, where ``store`` is a PgKeyStore.
from .test_privacy_keystore import key_row
from .test_privacy_keystore import (
    test_a_closed_store_refuses_work as test_a_closed_store_refuses_work,
)
from .test_privacy_keystore import (
    test_an_existing_subject_keeps_its_key as test_an_existing_subject_keeps_its_key,
)
from .test_privacy_keystore import (
    test_counts_by_kek_and_subjects_without_system_rows as test_counts_by_kek_and_subjects_without_system_rows,  # noqa: E501
)
from .test_privacy_keystore import (
    test_destroy_removes_the_row_once as test_destroy_removes_the_row_once,
)
from .test_privacy_keystore import (
    test_put_then_get_returns_the_rows_and_omits_unknown_subjects as test_put_then_get_returns_the_rows_and_omits_unknown_subjects,  # noqa: E501
)
from .test_privacy_keystore import (
    test_replace_wrapped_rewraps_only_the_row_that_was_read as test_replace_wrapped_rewraps_only_the_row_that_was_read,  # noqa: E501
)
from .test_privacy_keystore import (
    test_under_other_kek_lists_rows_to_rewrap_in_order_up_to_a_limit as test_under_other_kek_lists_rows_to_rewrap_in_order_up_to_a_limit,  # noqa: E501
)

T0 = 1_750_000_000.0
KEK = Kek.generate()


@attrs.define
class Wall:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[KeyStore]:
    keys = await PgKeyStore.open(pg_url)
    yield keys
    await keys.close()


@pytest.fixture
async def nodes(pg_url: str) -> AsyncIterator[tuple[PgKeyStore, PgKeyStore]]:
    """Two nodes' key stores on one key database."""
    a = await PgKeyStore.open(pg_url)
    b = await PgKeyStore.open(pg_url)
    yield a, b
    await a.close()
    await b.close()


def sql(url: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """One statement on a connection of the test's own (autocommit: it holds no snapshot)."""
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []


# -- PostgreSQL: opening ----------------------------------------------------------------------


async def test_rows_survive_a_reopen_and_the_schema_version_is_kept(pg_url: str) -> None:
    """What a put made durable is there for a new connection; the schema is at version 2."""
    keys = await PgKeyStore.open(pg_url)
    ann = key_row("s_ann")
    await keys.put([ann])
    await keys.close()
    again = await PgKeyStore.open(pg_url)
    assert await again.get(["s_ann"]) == {"s_ann": ann}
    await again.close()
    assert sql(pg_url, "SELECT version FROM ringbearer_keys_schema") == [(2,)]


async def test_nodes_starting_at_once_create_the_table_once(pg_url: str) -> None:
    """Five key stores opened at once on an empty database all open; one schema row."""
    opened: list[PgKeyStore] = []

    async def open_one() -> None:
        opened.append(await PgKeyStore.open(pg_url))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(open_one)
    assert len(opened) == 5
    for keys in opened:
        await keys.close()
    assert sql(pg_url, "SELECT version FROM ringbearer_keys_schema") == [(2,)]


# What ringbearer's key store of version 1 made, as it made it.
V1_SCHEMA = """
CREATE TABLE ringbearer_keys_schema (version INTEGER NOT NULL);
INSERT INTO ringbearer_keys_schema (version) VALUES (1);
CREATE TABLE subject_keys (
    subject TEXT COLLATE "C" PRIMARY KEY,
    kek_id TEXT NOT NULL,
    wrapped BYTEA NOT NULL,
    identity BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
)
"""


async def test_a_version_1_key_store_is_brought_to_version_2_keeping_its_keys(
    pg_url: str,
) -> None:
    """A key database of version 1 opens: its keys stay, and destroys are logged from then on."""
    sql(pg_url, V1_SCHEMA)
    ann, ben = key_row("s_ann"), key_row("s_ben")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO subject_keys VALUES (%s, %s, %s, %s, %s)",
            [(r.subject, r.kek_id, r.wrapped, r.identity, r.created_at) for r in (ann, ben)],
        )
    keys = await PgKeyStore.open(pg_url)
    assert await keys.get(["s_ann", "s_ben"]) == {"s_ann": ann, "s_ben": ben}
    assert await keys.last_destroyed() == 0
    assert await keys.destroy("s_ann")
    assert await keys.destroyed_since(0) == (["s_ann"], 1)
    await keys.close()
    assert sql(pg_url, "SELECT version FROM ringbearer_keys_schema") == [(2,)]
    again = await PgKeyStore.open(pg_url)  # opened again at version 2: nothing is redone
    assert await again.get(["s_ann", "s_ben"]) == {"s_ben": ben}
    assert await again.last_destroyed() == 1
    await again.close()


async def test_a_newer_key_store_is_refused_and_left_alone(pg_url: str) -> None:
    """A key database written by a later ringbearer is not opened, nor given a table."""
    sql(pg_url, "CREATE TABLE ringbearer_keys_schema (version INTEGER NOT NULL)")
    sql(pg_url, "INSERT INTO ringbearer_keys_schema VALUES (99)")
    with pytest.raises(KeyStoreError, match="version 99"):
        await PgKeyStore.open(pg_url)
    assert sql(pg_url, "SELECT to_regclass('subject_keys')") == [(None,)]


async def test_the_message_stores_database_is_refused(pg_url: str) -> None:
    """Keys kept beside the messages would let a copy of that database open them: refused."""
    session = Session(await trio.to_thread.run_sync(connect, pg_url))
    await session.transaction(migrate)
    session.close()
    with pytest.raises(KeyStoreError, match="keys_url must name a database of its own"):
        await PgKeyStore.open(pg_url)
    assert sql(pg_url, "SELECT to_regclass('subject_keys')") == [(None,)]


async def test_a_refused_connection_is_a_key_store_error_without_the_password() -> None:
    """Nothing listens on port 1: a KeyStoreError naming the setting, not the password."""
    with pytest.raises(KeyStoreError, match=r"keys_url") as caught:
        await PgKeyStore.open("postgresql://ringbearer:hunter2secret@127.0.0.1:1/keys")
    assert "hunter2secret" not in str(caught.value)


# -- PostgreSQL: putting ----------------------------------------------------------------------


async def test_concurrent_puts_share_commits(pg_url: str) -> None:
    """Ten puts at once commit in at most two transactions (group commit), and all are durable."""
    keys = await PgKeyStore.open(pg_url)
    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(keys.put, [key_row(f"s_{i}"), key_row(f"s_{i}_b")])
    assert keys.commits <= 2
    assert await keys.count_subjects() == 20
    await keys.close()


@pytest.fixture
def icu_url(pg_url: str) -> Iterator[str]:
    """A database beside ``pg_url``'s whose collation is ICU's English, not bytewise."""
    name = pg_url.rsplit("/", 1)[1] + "_icu"
    sql(pg_url, f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu"
        " ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")  # fmt: skip
    yield pg_url.rsplit("/", 1)[0] + "/" + name
    sql(pg_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def test_subjects_sort_bytewise_as_in_sqlite(icu_url: str) -> None:
    """Rotation's order is SQLite's (code points), in a database whose collation is not."""
    names = ["s_b", "s_B", "s__", "s_a", "s_A", "s_10", "s_9"]
    by_icu = sql(icu_url, "SELECT x FROM unnest(%s::text[]) x ORDER BY x", (names,))
    assert [r[0] for r in by_icu] == ["s__", "s_10", "s_9", "s_a", "s_A", "s_b", "s_B"]
    keys = await PgKeyStore.open(icu_url)
    await keys.put([key_row(n) for n in names])
    listed = [r.subject for r in await keys.under_other_kek("k_none", 100)]
    await keys.close()
    assert listed == ["s_10", "s_9", "s_A", "s_B", "s__", "s_a", "s_b"] == sorted(names)


async def test_two_nodes_putting_the_same_subjects_in_opposite_orders_end_with_one_key_each(
    nodes: tuple[PgKeyStore, PgKeyStore], pg_url: str
) -> None:
    """Two nodes create 200 subjects at once, one in each order: neither deadlocks, and
    each subject ends with one row, all of it one node's, that both nodes read."""
    a, b = nodes
    subjects = [f"s_{i:03}" for i in range(200)]
    from_a = {s: key_row(s, identity="a@example.com") for s in subjects}
    from_b = {s: key_row(s, identity="b@example.com") for s in reversed(subjects)}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.put, list(from_a.values()))
        nursery.start_soon(b.put, list(from_b.values()))
    seen_by_a, seen_by_b = await a.get(subjects), await b.get(subjects)
    assert seen_by_a == seen_by_b and len(seen_by_a) == 200
    assert all(seen_by_a[s] in (from_a[s], from_b[s]) for s in subjects)
    assert sql(pg_url, "SELECT count(*) FROM subject_keys") == [(200,)]


# -- PostgreSQL: destroying -------------------------------------------------------------------


def page_items(url: str) -> list[bytes]:
    """The data of every tuple in the table's first page, dead ones included (pageinspect)."""
    rows = sql(url, "SELECT t_data FROM heap_page_items(get_raw_page('subject_keys', 0))")
    return [bytes(r[0]) for r in rows if isinstance(r[0], bytes)]


def holds(items: list[bytes], row: KeyRow) -> bool:
    return any(row.wrapped in item or row.identity in item for item in items)


async def test_destroy_vacuums_the_dead_row_out_of_the_table(store: KeyStore, pg_url: str) -> None:
    """After destroy no tuple holds the wrapped key or sealed identity, not even a dead one.

    A row deleted by hand, with no VACUUM, shows that a DELETE alone leaves its tuple
    there; the destroy's VACUUM takes that one too.
    """
    try:
        sql(pg_url, "CREATE EXTENSION IF NOT EXISTS pageinspect")
    except psycopg.Error as exc:
        pytest.skip(f"pageinspect is not available: {exc}")
    others = [key_row(f"s_other_{i}") for i in range(5)]
    gone, by_hand = key_row("s_gone"), key_row("s_by_hand")
    await store.put([*others, gone, by_hand])
    sql(pg_url, "DELETE FROM subject_keys WHERE subject = 's_by_hand'")
    assert holds(page_items(pg_url), gone) and holds(page_items(pg_url), by_hand)
    assert await store.destroy("s_gone")
    items = page_items(pg_url)
    assert not holds(items, gone) and not holds(items, by_hand)
    assert all(holds(items, other) for other in others)


# -- several nodes: the vault -----------------------------------------------------------------


async def open_vaults(
    a: PgKeyStore, b: PgKeyStore, *, cache_size: int = 1000
) -> tuple[Vault, Vault]:
    """A vault on each node, opened at once (both may create the pepper), same KEK."""
    vaults: dict[str, Vault] = {}

    async def open_one(name: str, keys: PgKeyStore) -> None:
        vaults[name] = await Vault.open(keys, KEK, wall=Wall(), cache_size=cache_size)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(open_one, "a", a)
        nursery.start_soon(open_one, "b", b)
    return vaults["a"], vaults["b"]


async def test_a_payload_sealed_on_one_node_opens_on_the_other(
    nodes: tuple[PgKeyStore, PgKeyStore], pg_url: str
) -> None:
    """Vaults on two nodes, ensuring one new subject at once, share its one key and the pepper."""
    vault_a, vault_b = await open_vaults(*nodes)
    ids: dict[str, list[str]] = {}

    async def ensure(name: str, vault: Vault) -> None:
        ids[name] = await vault.ensure(["Ann@Example.com"])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ensure, "a", vault_a)
        nursery.start_soon(ensure, "b", vault_b)
    assert ids["a"] == ids["b"]
    payload = {"to": "ann@example.com", "n": 1}
    assert await vault_b.open_payload(await vault_a.seal_payload(ids["a"], payload)) == payload
    assert await vault_a.open_payload(await vault_b.seal_payload(ids["b"], payload)) == payload
    assert sql(pg_url, "SELECT count(*) FROM subject_keys WHERE subject = %s", (ids["a"][0],)) == [
        (1,)
    ]
    assert sql(pg_url, "SELECT count(*) FROM subject_keys WHERE subject = 'sys:pepper'") == [(1,)]


async def test_a_key_cached_on_another_node_outlives_a_destroy_until_it_leaves_the_cache(
    nodes: tuple[PgKeyStore, PgKeyStore],
) -> None:
    """Destroyed on A, a key B holds in its cache still opens B's payloads: B learns of the
    destroy only when the key leaves its cache (here pushed out by two other subjects),
    and then the payload is Erased on B too. A new vault on B's store knows at once."""
    vault_a, vault_b = await open_vaults(*nodes, cache_size=2)
    (ann,) = await vault_a.ensure(["ann@example.com"])
    sealed = await vault_a.seal_payload([ann], {"n": 1})
    assert await vault_b.open_payload(sealed) == {"n": 1}  # B caches ann's key
    assert await vault_a.destroy(ann)
    with pytest.raises(Erased):
        await vault_a.open_payload(sealed)
    assert await vault_b.open_payload(sealed) == {"n": 1}  # the gap: B's cache still has it
    fresh = await Vault.open(nodes[1], KEK, wall=Wall())
    with pytest.raises(Erased):
        await fresh.open_payload(sealed)
    await vault_b.ensure(["ben@example.com", "cat@example.com"])  # the LRU forgets ann
    with pytest.raises(Erased):
        await vault_b.open_payload(sealed)


async def test_a_destroy_on_the_node_holding_the_key_drops_it_from_that_nodes_cache(
    nodes: tuple[PgKeyStore, PgKeyStore],
) -> None:
    """B's own destroy of a subject A destroyed already finds no row, yet forgets B's key."""
    vault_a, vault_b = await open_vaults(*nodes)
    (ann,) = await vault_a.ensure(["ann@example.com"])
    sealed = await vault_a.seal_payload([ann], {"n": 1})
    assert await vault_b.open_payload(sealed) == {"n": 1}
    assert await vault_a.destroy(ann) is True
    assert await vault_b.destroy(ann) is False
    with pytest.raises(Erased):
        await vault_b.open_payload(sealed)
