"""The privacy role in PostgreSQL: subjects' messages, erasure, consent, retention, tokens
(as SQLite's migration 7 and ``_sqlite._privacy``).

What differs from SQLite, and why:

- Several nodes write one database, so erasure ends a subject's queued and dead
  messages in one statement that locks them (``FOR UPDATE``) and returns each one's
  status before, instead of a read then an update: a message another node claims
  meanwhile is left to its settle, and only those really ended leave the queue counters.
  Retention checks each message's state again as it shreds it, for the same reason.
- Reads go to the reading connection (SQLite's erasures, consents and tokens read on the
  writer's): in PostgreSQL every connection sees each commit once it is made.
- Erasure job and consent ids are identity columns, given in ascending order as SQLite's
  rowids are; a job saved with an id the store did not give moves the identity past it.
- :meth:`PgPrivacy.scrub` is ``VACUUM``, not a checkpoint of the WAL: see there.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import psycopg
import trio
from psycopg.conninfo import make_conninfo

from ..._delivery import Priority
from .._privacy_model import (
    ERASED_PAYLOAD,
    SHREDDED_PAYLOAD,
    ConsentRecord,
    ErasedMessages,
    ErasureRecord,
    MailEvent,
    SubjectMessage,
    erased_reason,
)
from .._sqlite._privacy import consent_event
from .._sqlite._shared import Shared
from ._db import PgTx, Row, Session, connect, dumps, translate
from ._reads import PgReads
from ._writer import INSERT_EVENT, PgWriter

_ERASURE_COLUMNS = "id, subject, requested_by, requested_at, steps, finished_at"
_CONSENT_COLUMNS = "id, subject, purpose, granted, source, at, by"
_OF_SUBJECT = "id IN (SELECT message_id FROM message_subjects WHERE subject = %s)"
# Queued and dead messages of a subject end as erased; each row's status before is kept.
_END = (
    "WITH ended AS (SELECT id, status FROM messages"
    f" WHERE {_OF_SUBJECT} AND status IN ('queued', 'dead') FOR UPDATE)"
    " UPDATE messages m SET status = 'erased', last_event = 'erased', attempt_at = NULL,"
    " last_error = %s, updated_at = %s, held = NULL FROM ended WHERE m.id = ended.id"
    " RETURNING m.id, m.target, m.priority, ended.status"
)
_WIPE = (
    f"UPDATE messages SET payload = %s WHERE {_OF_SUBJECT}"
    " AND status != 'inflight' AND payload != %s RETURNING id"
)
# The conditions are asked again of the row updated: a dead message another node
# replays meanwhile is queued again, and keeps its payload.
_DUE_FOR_SHREDDING = (
    "shredded_at IS NULL AND ((status = 'delivered' AND delivered_at < %s)"
    " OR (status = 'dead' AND updated_at < %s))"
)
_SHRED = (
    f"UPDATE messages SET payload = %s, shredded_at = %s WHERE {_DUE_FOR_SHREDDING} AND id IN ("
    " SELECT id FROM messages"
    "  WHERE status = 'delivered' AND shredded_at IS NULL AND delivered_at < %s"
    " UNION ALL"
    " SELECT id FROM messages WHERE status = 'dead' AND shredded_at IS NULL AND updated_at < %s"
    " LIMIT %s) RETURNING id"
)
_SAVE_ERASURE = (
    f"INSERT INTO erasures ({_ERASURE_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s)"
    " ON CONFLICT (id) DO UPDATE SET subject = EXCLUDED.subject,"
    " requested_by = EXCLUDED.requested_by, requested_at = EXCLUDED.requested_at,"
    " steps = EXCLUDED.steps, finished_at = EXCLUDED.finished_at RETURNING id"
)
_NEW_ERASURE = (
    "INSERT INTO erasures (subject, requested_by, requested_at, steps, finished_at)"
    " VALUES (%s,%s,%s,%s,%s) RETURNING id"
)
# After a job saved with its own id, the identity goes on past it (SQLite's next rowid
# is past the highest one, whoever gave it).
_PAST_ID = (
    "SELECT setval(pg_get_serial_sequence('erasures', 'id'), %s)"
    " FROM erasures_id_seq WHERE NOT is_called OR last_value < %s"
)
# The tables whose rows held personal data that an erasure, retention or a new token
# replaces or removes: the payloads, the provider events and suppressions, the tokens.
SCRUBBED = ("messages", "mail_events", "suppressions", "tokens")


class PgPrivacy:
    """Writes go through the writer (group commit, awaited); reads use the reader."""

    def __init__(self, writer: PgWriter, reads: PgReads, shared: Shared) -> None:
        self._writer = writer
        self._reads = reads
        self._shared = shared

    async def subject_messages(
        self, subject: str, *, after: int = 0, limit: int = 1000
    ) -> list[SubjectMessage]:
        rows = await self._reads.query(
            "SELECT m.id, m.target, m.status, m.payload, m.created_at, m.delivered_at, m.category"
            " FROM message_subjects s JOIN messages m ON m.id = s.message_id"
            " WHERE s.subject = %s AND s.message_id > %s ORDER BY s.message_id LIMIT %s",
            (subject, after, limit),
        )
        return [SubjectMessage(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6]) for r in rows]

    async def subject_mail_events(self, subject: str, *, limit: int = 10_000) -> list[MailEvent]:
        rows = await self._reads.query(
            "SELECT at, source, event, channel, message_id, integration, domain, detail"
            " FROM mail_events WHERE address = %s ORDER BY id LIMIT %s",
            (subject, limit),
        )
        return [
            MailEvent(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]) if r[7] else {})
            for r in rows
        ]

    async def erase_messages(self, subject: str, *, at: float, job: int) -> ErasedMessages:
        result, ended = await self._writer.run(lambda tx: _erase(tx, subject, at, job))
        for _, target, priority, status in ended:
            if status == "queued":
                self._shared.counters.queued(target, Priority(priority), -1)
        return result

    async def erased_subjects(self) -> set[str]:
        rows = await self._reads.query("SELECT subject FROM erased_subjects")
        return {r[0] for r in rows}

    async def save_erasure(self, record: ErasureRecord) -> ErasureRecord:
        number = await self._writer.run(lambda tx: _save_erasure(tx, record))
        return record if record.id == number else attrs.evolve(record, id=number)

    async def erasures(
        self, *, subject: str | None = None, unfinished: bool = False
    ) -> list[ErasureRecord]:
        clauses, params = ["TRUE"], []
        if subject is not None:
            clauses.append("subject = %s")
            params.append(subject)
        if unfinished:
            clauses.append("finished_at IS NULL")
        rows = await self._reads.query(
            f"SELECT {_ERASURE_COLUMNS} FROM erasures WHERE {' AND '.join(clauses)} ORDER BY id",
            params,
        )
        return [ErasureRecord(r[1], r[2], r[3], json.loads(r[4]), r[5], id=r[0]) for r in rows]

    async def add_consent(self, record: ConsentRecord) -> ConsentRecord:
        def add(tx: PgTx) -> int:
            rows = tx.fetchall(
                "INSERT INTO consents (subject, purpose, granted, source, at, by)"
                " VALUES (%s,%s,%s,%s,%s,%s) RETURNING id",
                (record.subject, record.purpose, int(record.granted), record.source,
                 record.at, record.by),
            )  # fmt: skip
            tx.execute(INSERT_EVENT, consent_event(record))
            return int(rows[0][0])

        number = await self._writer.run(add)
        return attrs.evolve(record, id=number)

    async def consents(self, subject: str | None = None) -> list[ConsentRecord]:
        where, params = ("WHERE subject = %s", (subject,)) if subject is not None else ("", ())
        rows = await self._reads.query(
            f"SELECT {_CONSENT_COLUMNS} FROM consents {where} ORDER BY id", params
        )
        return [ConsentRecord(r[1], r[2], bool(r[3]), r[4], r[5], r[6], id=r[0]) for r in rows]

    async def shred_payloads(
        self, *, delivered_before: float, dead_before: float, limit: int = 1000
    ) -> int:
        params = (
            dumps(SHREDDED_PAYLOAD), self._shared.clock(), delivered_before, dead_before,
            delivered_before, dead_before, limit,
        )  # fmt: skip
        rows: list[Row] = await self._writer.run(lambda tx: tx.fetchall(_SHRED, params))
        return len(rows)

    async def scrub(self) -> None:
        """Remove the old versions of rows that held personal data: ``VACUUM`` of the tables
        that held it (:data:`SCRUBBED`), once what the writer holds is committed.

        SQLite's scrub checkpoints its WAL into the file and truncates it; there, with
        ``secure_delete``, a row overwritten or deleted leaves the files. PostgreSQL
        never overwrites a row: an update or delete leaves the old version in the
        table as a dead tuple until ``VACUUM`` removes it, and that is what this does.
        What it does not do, and cannot without stopping the queue: ``VACUUM`` frees a
        dead tuple's space for reuse but does not zero it, so its bytes may stay in the
        table's file until new rows fill that space; ``VACUUM FULL`` (an exclusive lock
        on the table while it is rewritten) removes them. The WAL keeps each row as
        written until a checkpoint lets its segment be recycled, and archives or
        replicas keep what they were sent. Nor can ``VACUUM`` remove a version that an
        open transaction may still see (another node's long read). Payloads are sealed
        to a subject's key, which erasure destroys: on PostgreSQL that, not ``VACUUM``,
        is what leaves nothing readable.

        ``VACUUM`` cannot run inside a transaction, so it runs on a connection of its
        own, opened like the reader's and closed after, in a worker thread: neither
        the reader nor the writer waits for it.
        """
        await self._writer.flush()
        conninfo = _conninfo(self._reads.session)  # how the reader connected
        await trio.to_thread.run_sync(_vacuum, conninfo)

    async def load_token(self, integration: str) -> str | None:
        rows = await self._reads.query(
            "SELECT sealed FROM tokens WHERE integration = %s", (integration,)
        )
        return str(rows[0][0]) if rows else None

    async def save_token(self, integration: str, sealed: str) -> None:
        now = self._shared.clock()

        def save(tx: PgTx) -> None:
            tx.execute(
                "INSERT INTO tokens (integration, sealed, updated_at) VALUES (%s,%s,%s)"
                " ON CONFLICT (integration) DO UPDATE"
                " SET sealed = EXCLUDED.sealed, updated_at = EXCLUDED.updated_at",
                (integration, sealed, now),
            )

        await self._writer.run(save)


def _erase(tx: PgTx, subject: str, at: float, job: int) -> tuple[ErasedMessages, list[Row]]:
    """Remember the subject, end its queued and dead messages, wipe every payload not in
    flight; what it did, and the messages ended (id, target, priority, status before)."""
    tx.execute(
        "INSERT INTO erased_subjects (subject, erased_at, job) VALUES (%s,%s,%s)"
        " ON CONFLICT (subject) DO NOTHING",
        (subject, at, job),
    )
    ended = tx.fetchall(_END, (subject, erased_reason(job), at))
    erased = dumps(ERASED_PAYLOAD)
    wiped = tx.fetchall(_WIPE, (erased, subject, erased))
    flying = tx.fetchall(
        f"SELECT COUNT(*) FROM messages WHERE {_OF_SUBJECT} AND status = 'inflight'", (subject,)
    )
    return ErasedMessages(len(ended), len(wiped), int(flying[0][0])), ended


def _save_erasure(tx: PgTx, record: ErasureRecord) -> int:
    """Keep ``record`` (a new job if it has no id yet); its id."""
    row: tuple[Any, ...] = (
        record.subject, record.requested_by, record.requested_at, dumps(record.steps),
        record.finished_at,
    )  # fmt: skip
    if record.id is None:
        return int(tx.fetchall(_NEW_ERASURE, row)[0][0])
    number = int(tx.fetchall(_SAVE_ERASURE, (record.id, *row))[0][0])
    tx.execute(_PAST_ID, (number, number))
    return number


def _conninfo(session: Session) -> str:
    """The connection string of ``session``'s connection (libpq leaves the password out of
    it: it is put back)."""
    info = session.conn.info
    extra = {"password": info.password} if info.password else {}
    return make_conninfo(info.dsn, **extra)


def _vacuum(conninfo: str) -> None:
    """``VACUUM`` the :data:`SCRUBBED` tables on a connection of its own (blocking)."""
    conn = connect(conninfo, application_name="ringbearer-scrub")
    try:
        conn.execute(f"VACUUM {', '.join(SCRUBBED)}")
    except psycopg.Error as exc:
        raise translate(exc) from exc
    finally:
        conn.close()
