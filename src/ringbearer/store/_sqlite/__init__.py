"""The SQLite store: aiosqlite through trio-asyncio, WAL, one writer with group commit.

Only this package touches the asyncio bridge. Its parts, each a module:

* ``_store``: ``SqliteStore``, which opens the file and presents every store
  role by delegating to the parts below;
* ``_writer``: the one writer, its queue of ops and group commit;
* ``_batch``: the queue's statements in each transaction (submits, with
  their idempotency keys checked; parked claims; settles; claims), and
  ``_claims``, the order claims take;
* ``_queue``: the queue's operations as callers make them;
* ``_reads``: queries on the read-only connection;
* ``_dead``: count, replay and purge of dead letters;
* ``_controls``: breaker states and pauses;
* ``_alerts``: open alerts and where their escalation stands;
* ``_deliverability``: provider events, suppressions, holds and the guards'
  reads, with ``_mail`` (matching and keeping events) and ``_suppressions``
  (the suppression list and holds);
* ``_open``, ``_db``, ``_rows``, ``_shared``: opening and migrating the file,
  the connection seam, rows and values, the state the parts share.

A submit is acknowledged only once its transaction commits.
"""

from ._store import SqliteStore as SqliteStore
