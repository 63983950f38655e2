"""The PostgreSQL schema, versioned in ``ringbearer_schema``.

Each migration moves the database from version N-1 to N inside one transaction,
under an advisory lock, so that several daemons starting at once migrate it once. A
database newer than this program knows is refused, never touched. The statements of
each part of the store are kept with that part (``_ddl_*``).
"""

from __future__ import annotations

from ..._errors import StoreError
from ._db import PgTx
from ._ddl_cluster import ACTORS_DDL as ACTORS
from ._ddl_cluster import DDL as CLUSTER
from ._ddl_cluster import OVERRIDE_DDL as OVERRIDE
from ._ddl_cluster import VERSIONS_DDL as VERSIONS
from ._ddl_core import DDL as CORE
from ._ddl_deliverability import DDL as DELIVERABILITY
from ._ddl_growth import DDL as GROWTH
from ._ddl_privacy import DDL as PRIVACY

MIGRATIONS: tuple[str, ...] = (
    CORE,
    DELIVERABILITY,
    PRIVACY,
    GROWTH,
    CLUSTER,
    OVERRIDE,
    VERSIONS,
    ACTORS,
)
SCHEMA_VERSION = len(MIGRATIONS)
MIGRATION_LOCK = 0x72696E67  # "ring": the advisory lock migrations run under
# The key store's own table (privacy._keystore_pg): the messages' database must not hold it.
_KEY_STORE = "ringbearer_keys_schema"


def migrate(tx: PgTx) -> int:
    """Bring the schema to ``SCHEMA_VERSION`` (in the caller's transaction); the version it was."""
    tx.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
    if tx.fetchall("SELECT to_regclass(%s) IS NOT NULL", (_KEY_STORE,))[0][0]:
        raise StoreError(
            "the store's database holds the key store: [store] url and [privacy] keys_url"
            " must name different databases, so that a copy of the messages opens nothing"
        )
    tx.execute("CREATE TABLE IF NOT EXISTS ringbearer_schema (version INTEGER NOT NULL)")
    rows = tx.fetchall("SELECT version FROM ringbearer_schema")
    if not rows:
        tx.execute("INSERT INTO ringbearer_schema (version) VALUES (0)")
    version = int(rows[0][0]) if rows else 0
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store has schema version {version}, newer than this program's "
            f"{SCHEMA_VERSION}: refusing to touch it"
        )
    for number in range(version + 1, SCHEMA_VERSION + 1):
        tx.execute(MIGRATIONS[number - 1])
        tx.execute("UPDATE ringbearer_schema SET version = %s", (number,))
    return version
