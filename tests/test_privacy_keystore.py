"""The key store (one contract for memory and SQLite; no residue after destroy) and the KEK."""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from ringbearer._secrets import SecretRef
from ringbearer.privacy import (
    Kek,
    KekError,
    KeyRow,
    KeyStore,
    KeyStoreError,
    MemoryKeyStore,
    SqliteKeyStore,
    generate_key_file,
    load_kek,
    new_data_key,
    seal,
)

T0 = 1_750_000_000.0
OLD, NEW = Kek.generate(), Kek.generate()


def key_row(subject: str, kek: Kek = OLD, identity: str = "ann@example.com") -> KeyRow:
    """A row as the vault writes it: a fresh data key wrapped under ``kek``, the identity sealed."""
    data_key = new_data_key()
    sealed = seal(data_key, identity.encode(), "identity")
    return KeyRow(subject, kek.id, kek.wrap(subject, data_key), sealed, T0)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyStore]:
    keys: KeyStore
    if request.param == "memory":
        keys = MemoryKeyStore()
    else:
        keys = await SqliteKeyStore.open(tmp_path / "keys.db")
    yield keys
    await keys.close()


# -- the contract, for both stores ---------------------------------------------------------


async def test_put_then_get_returns_the_rows_and_omits_unknown_subjects(store: KeyStore) -> None:
    """What is put comes back field for field; a subject with no row is left out."""
    ann, ben = key_row("s_ann"), key_row("s_ben", identity="+447700900123")
    await store.put([ann, ben])
    assert await store.get(["s_ann", "s_ben", "s_nobody"]) == {"s_ann": ann, "s_ben": ben}
    assert await store.get([]) == {}


async def test_an_existing_subject_keeps_its_key(store: KeyStore) -> None:
    """A second put for a subject (a lost race to create it) changes nothing."""
    first, second = key_row("s_ann"), key_row("s_ann", kek=NEW)
    await store.put([first])
    await store.put([second, second])
    assert await store.get(["s_ann"]) == {"s_ann": first}
    assert await store.counts() == {OLD.id: 1}


async def test_destroy_removes_the_row_once(store: KeyStore) -> None:
    """Destroy says True for a row it deleted, then False: the row is gone."""
    await store.put([key_row("s_ann"), key_row("s_ben")])
    assert await store.destroy("s_ann") is True
    assert await store.destroy("s_ann") is False
    assert list(await store.get(["s_ann", "s_ben"])) == ["s_ben"]


async def test_under_other_kek_lists_rows_to_rewrap_in_order_up_to_a_limit(
    store: KeyStore,
) -> None:
    """Rows wrapped under any KEK but the given one, by subject, at most ``limit``."""
    await store.put([key_row(f"s_{i}", kek=OLD if i % 2 else NEW) for i in range(9)])
    others = await store.under_other_kek(NEW.id, 3)
    assert [r.subject for r in others] == ["s_1", "s_3", "s_5"]
    assert [r.subject for r in await store.under_other_kek(NEW.id, 100)] == [
        "s_1",
        "s_3",
        "s_5",
        "s_7",
    ]
    assert await store.under_other_kek(NEW.id, 0) == []


async def test_replace_wrapped_rewraps_only_the_row_that_was_read(store: KeyStore) -> None:
    """A rewrap lands on its row, but never brings back a destroyed one nor touches a new one."""
    ann, ben, cat = key_row("s_ann"), key_row("s_ben"), key_row("s_cat")
    await store.put([ann, ben, cat])
    read = await store.under_other_kek(NEW.id, 10)
    assert await store.destroy("s_ben")
    assert await store.destroy("s_cat")
    cat_again = key_row("s_cat", identity="cat@example.com")
    await store.put([cat_again])
    rewrapped = [
        KeyRow(
            r.subject, NEW.id, NEW.wrap(r.subject, OLD.unwrap(r.subject, r.wrapped)), r.identity, T0
        )
        for r in read
    ]
    await store.replace_wrapped(rewrapped)
    held = await store.get(["s_ann", "s_ben", "s_cat"])
    assert set(held) == {"s_ann", "s_cat"}
    assert held["s_ann"].kek_id == NEW.id and held["s_ann"].identity == ann.identity
    assert NEW.unwrap("s_ann", held["s_ann"].wrapped) == OLD.unwrap("s_ann", ann.wrapped)
    assert held["s_cat"] == cat_again


async def test_counts_by_kek_and_subjects_without_system_rows(store: KeyStore) -> None:
    """``counts`` takes every row by KEK; ``count_subjects`` leaves out 'sys:' rows."""
    await store.put([key_row("sys:pepper"), key_row("s_ann"), key_row("s_ben", kek=NEW)])
    assert await store.counts() == {OLD.id: 2, NEW.id: 1}
    assert await store.count_subjects() == 2


async def test_a_closed_store_refuses_work(store: KeyStore) -> None:
    """After close, a call fails as a KeyStoreError (a StoreError), not a foreign exception."""
    await store.close()
    with pytest.raises(KeyStoreError):
        await store.get(["s_ann"])


# -- SQLite only ----------------------------------------------------------------------------


async def test_the_sqlite_key_store_is_durable_private_and_secure_deleting(tmp_path: Path) -> None:
    """Rows survive a reopen; the file is 0600; WAL and secure_delete are on; a version is kept."""
    path = tmp_path / "keys.db"
    keys = await SqliteKeyStore.open(path)
    ann = key_row("s_ann")
    await keys.put([ann])
    await keys.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = await SqliteKeyStore.open(path)
    assert await again.get(["s_ann"]) == {"s_ann": ann}
    await again.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert raw.execute("PRAGMA user_version").fetchone() == (1,)
    raw.close()


async def test_a_newer_key_store_is_refused(tmp_path: Path) -> None:
    """A keys.db written by a later ringbearer is not opened (nor changed)."""
    path = tmp_path / "keys.db"
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version=99")
    raw.close()
    with pytest.raises(KeyStoreError, match="version 99"):
        await SqliteKeyStore.open(path)


async def test_concurrent_puts_share_commits(tmp_path: Path) -> None:
    """Ten puts at once commit in at most two transactions (group commit), and all are durable."""
    keys = await SqliteKeyStore.open(tmp_path / "keys.db")
    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(keys.put, [key_row(f"s_{i}"), key_row(f"s_{i}_b")])
    assert keys.commits <= 2
    assert await keys.count_subjects() == 20
    await keys.close()


def raw_files(path: Path) -> bytes:
    """Every byte of the key store's files: the database, its WAL and its shared memory."""
    names = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    return b"".join(p.read_bytes() for p in names if p.exists())


async def test_destroy_leaves_no_residue_in_the_file_its_wal_or_shm(tmp_path: Path) -> None:
    """After destroy, neither the wrapped key nor the sealed identity is anywhere in the files.

    Twice: once while the row is only in the WAL, once after a checkpoint put it in
    the database file itself (where only secure_delete wipes it).
    """
    path = tmp_path / "keys.db"
    keys = await SqliteKeyStore.open(path)
    others = [key_row(f"s_other_{i}") for i in range(50)]
    in_wal, in_file = key_row("s_in_wal"), key_row("s_in_file")
    await keys.put([*others, in_wal, in_file])
    assert in_wal.wrapped in raw_files(path)  # the check below can see a key where one is
    assert await keys.destroy("s_in_wal")
    assert all(gone not in raw_files(path) for gone in (in_wal.wrapped, in_wal.identity))
    assert in_file.wrapped in path.read_bytes()  # the checkpoint carried it into the file
    assert await keys.destroy("s_in_file")
    files = raw_files(path)
    assert all(gone not in files for gone in (in_file.wrapped, in_file.identity))
    assert all(o.wrapped in files and o.identity in files for o in others)
    await keys.close()


# -- the KEK --------------------------------------------------------------------------------

CREDENTIAL = SecretRef(credential="ringbearer-kek")


def test_the_sandbox_key_file_is_created_0600_and_read_back(tmp_path: Path) -> None:
    """Without a reference, a key file is made (mode 0600, hex) and the same KEK read later."""
    key_file = tmp_path / "kek"
    kek = load_kek(None, key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == kek.key.hex()
    assert load_kek(None, key_file) == kek
    assert os.listdir(tmp_path) == ["kek"]  # no temporary file left behind


def test_a_key_file_open_to_group_or_others_is_refused(tmp_path: Path) -> None:
    """A group-readable key file is refused, naming the file and the mode, not the key."""
    key_file = tmp_path / "kek"
    kek = load_kek(None, key_file)
    key_file.chmod(0o640)
    with pytest.raises(KekError, match="0640") as caught:
        load_kek(None, key_file)
    assert str(key_file) in str(caught.value) and kek.key.hex() not in str(caught.value)


def test_a_malformed_key_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    """Bad hex in the key file is refused; the message does not repeat it."""
    key_file = tmp_path / "kek"
    bad = "zz" + "ab" * 31
    key_file.write_text(bad + "\n")
    key_file.chmod(0o600)
    with pytest.raises(KekError, match="not a key") as caught:
        load_kek(None, key_file)
    assert bad not in str(caught.value) and "zzab" not in str(caught.value)


def test_the_kek_is_read_from_a_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A credential's text is the key, as 64 hex characters or base64 of 32 bytes."""
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    kek = Kek.generate()
    (tmp_path / "ringbearer-kek").write_text(kek.key.hex().upper() + "\n")
    assert load_kek(CREDENTIAL, tmp_path / "unused") == kek
    (tmp_path / "ringbearer-kek").write_text(base64.b64encode(kek.key).decode())
    assert load_kek(CREDENTIAL, tmp_path / "unused") == kek
    assert not (tmp_path / "unused").exists()  # a reference never falls back to a key file


def test_a_missing_or_malformed_credential_names_the_reference_not_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Missing: the reference is named. Malformed: named too, and the bad text is not shown."""
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(KekError, match="credential ringbearer-kek is not set"):
        load_kek(CREDENTIAL, tmp_path / "unused")
    bad = base64.b64encode(b"sixteen byte key").decode()  # base64, but of 16 bytes
    (tmp_path / "ringbearer-kek").write_text(bad)
    with pytest.raises(KekError, match="credential ringbearer-kek is not 64") as caught:
        load_kek(CREDENTIAL, tmp_path / "unused")
    assert bad not in str(caught.value)


def test_generate_key_file_writes_a_new_private_key_and_never_replaces_one(
    tmp_path: Path,
) -> None:
    """A new key file is 0600 and holds the KEK returned; an existing file is never replaced."""
    path = tmp_path / "kek-2"
    kek = generate_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_kek(None, path) == kek and kek.id.startswith("k_")
    with pytest.raises(KekError, match="never replaced"):
        generate_key_file(path)
    assert load_kek(None, path) == kek
