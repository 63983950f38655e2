"""The privacy role in SQLite (migration 7): subjects' messages, erasure, consent, retention,
tokens."""

from __future__ import annotations

import json
from typing import Any

import trio

from ..._audit_kinds import EventKind
from ..._delivery import Priority
from ..._errors import StoreError
from .._privacy_model import (
    ERASED_PAYLOAD,
    SHREDDED_PAYLOAD,
    ConsentRecord,
    ErasedMessages,
    ErasureRecord,
    MailEvent,
    SubjectMessage,
    consent_detail,
    erased_reason,
)
from ._db import Row, Tx, dumps
from ._reads import Reads
from ._rows import INSERT_EVENT
from ._shared import Shared
from ._writer import Writer

_ERASURE_COLUMNS = "id, subject, requested_by, requested_at, steps, finished_at"
_CONSENT_COLUMNS = "id, subject, purpose, granted, source, at, by"
# The messages of a subject that erasure may touch now: all but those in flight.
_OF_SUBJECT = "id IN (SELECT message_id FROM message_subjects WHERE subject = ?)"


class SqlitePrivacy:
    """Writes go through the writer (group commit, awaited); reads use the reader."""

    def __init__(self, writer: Writer, reads: Reads, shared: Shared) -> None:
        self._writer = writer
        self._reads = reads
        self._shared = shared

    async def subject_messages(
        self, subject: str, *, after: int = 0, limit: int = 1000
    ) -> list[SubjectMessage]:
        rows = await self._reads.query(
            "SELECT m.id, m.target, m.status, m.payload, m.created_at, m.delivered_at, m.category"
            " FROM message_subjects s JOIN messages m ON m.id = s.message_id"
            " WHERE s.subject = ? AND s.message_id > ? ORDER BY s.message_id LIMIT ?",
            (subject, after, limit),
        )
        return [SubjectMessage(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6]) for r in rows]

    async def subject_mail_events(self, subject: str, *, limit: int = 10_000) -> list[MailEvent]:
        rows = await self._reads.query(
            "SELECT at, source, event, channel, message_id, integration, domain, detail"
            " FROM mail_events WHERE address = ? ORDER BY id LIMIT ?",
            (subject, limit),
        )
        return [
            MailEvent(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]) if r[7] else {})
            for r in rows
        ]

    async def erase_messages(self, subject: str, *, at: float, job: int) -> ErasedMessages:
        async def erase(tx: Tx) -> tuple[ErasedMessages, list[Row]]:
            await tx.execute(
                "INSERT OR IGNORE INTO erased_subjects (subject, erased_at, job) VALUES (?,?,?)",
                (subject, at, job),
            )
            ended = await tx.fetchall(
                f"SELECT id, target, priority, status FROM messages WHERE {_OF_SUBJECT}"
                " AND status IN ('queued', 'dead')",
                (subject,),
            )
            await tx.execute(
                "UPDATE messages SET status = 'erased', last_event = 'erased', attempt_at = NULL,"
                f" last_error = ?, updated_at = ?, held = NULL WHERE {_OF_SUBJECT}"
                " AND status IN ('queued', 'dead')",
                (erased_reason(job), at, subject),
            )
            wiped = await tx.fetchall(
                f"UPDATE messages SET payload = ? WHERE {_OF_SUBJECT}"
                " AND status != 'inflight' AND payload != ? RETURNING id",
                (dumps(ERASED_PAYLOAD), subject, dumps(ERASED_PAYLOAD)),
            )
            flying = await tx.fetchall(
                f"SELECT COUNT(*) FROM messages WHERE {_OF_SUBJECT} AND status = 'inflight'",
                (subject,),
            )
            return ErasedMessages(len(ended), len(wiped), int(flying[0][0])), ended

        result, ended = await self._writer.run(erase)
        for _, target, priority, status in ended:
            if status == "queued":
                self._shared.counters.queued(target, Priority(priority), -1)
        return result

    async def erased_subjects(self) -> set[str]:
        rows = await self._reads.query("SELECT subject FROM erased_subjects")
        return {r[0] for r in rows}

    async def save_erasure(self, record: ErasureRecord) -> ErasureRecord:
        row = (
            record.id, record.subject, record.requested_by, record.requested_at,
            dumps(record.steps), record.finished_at,
        )  # fmt: skip

        async def save(tx: Tx) -> int:
            rows = await tx.fetchall(
                f"INSERT OR REPLACE INTO erasures ({_ERASURE_COLUMNS}) VALUES (?,?,?,?,?,?)"
                " RETURNING id",
                row,
            )
            return int(rows[0][0])

        number = await self._writer.run(save)
        return record if record.id == number else _evolve_id(record, number)

    async def erasures(
        self, *, subject: str | None = None, unfinished: bool = False
    ) -> list[ErasureRecord]:
        clauses, params = ["1"], []
        if subject is not None:
            clauses.append("subject = ?")
            params.append(subject)
        if unfinished:
            clauses.append("finished_at IS NULL")
        rows = await self._writer.read(
            f"SELECT {_ERASURE_COLUMNS} FROM erasures WHERE {' AND '.join(clauses)} ORDER BY id",
            params,
        )
        return [ErasureRecord(r[1], r[2], r[3], json.loads(r[4]), r[5], id=r[0]) for r in rows]

    async def add_consent(self, record: ConsentRecord) -> ConsentRecord:
        async def add(tx: Tx) -> int:
            rows = await tx.fetchall(
                "INSERT INTO consents (subject, purpose, granted, source, at, by)"
                " VALUES (?,?,?,?,?,?) RETURNING id",
                (record.subject, record.purpose, int(record.granted), record.source,
                 record.at, record.by),
            )  # fmt: skip
            await tx.execute(INSERT_EVENT, consent_event(record))
            return int(rows[0][0])

        number = await self._writer.run(add)
        return ConsentRecord(
            record.subject, record.purpose, record.granted, record.source, record.at,
            record.by, id=number,
        )  # fmt: skip

    async def consents(self, subject: str | None = None) -> list[ConsentRecord]:
        where, params = ("WHERE subject = ?", (subject,)) if subject is not None else ("", ())
        rows = await self._writer.read(
            f"SELECT {_CONSENT_COLUMNS} FROM consents {where} ORDER BY id", params
        )
        return [ConsentRecord(r[1], r[2], bool(r[3]), r[4], r[5], r[6], id=r[0]) for r in rows]

    async def shred_payloads(
        self, *, delivered_before: float, dead_before: float, limit: int = 1000
    ) -> int:
        async def shred(tx: Tx) -> int:
            rows = await tx.fetchall(
                "UPDATE messages SET payload = ?, shredded_at = ? WHERE id IN ("
                " SELECT id FROM messages INDEXED BY messages_delivered_unshredded"
                "  WHERE status = 'delivered' AND shredded_at IS NULL AND delivered_at < ?"
                " UNION ALL"
                " SELECT id FROM messages INDEXED BY messages_dead_unshredded"
                "  WHERE status = 'dead' AND shredded_at IS NULL AND updated_at < ?"
                " LIMIT ?) RETURNING id",
                (dumps(SHREDDED_PAYLOAD), self._shared.clock(), delivered_before, dead_before,
                 limit),
            )  # fmt: skip
            return len(rows)

        return await self._writer.run(shred)

    async def scrub(self) -> None:
        """Checkpoint the WAL into the file and truncate it (retried while readers hold it)."""
        for _ in range(100):
            await self._writer.flush()
            try:  # on the writer's connection: the reader's is read-only
                rows = await self._writer.read("PRAGMA wal_checkpoint(TRUNCATE)")
            except StoreError:  # it met the writer's next transaction
                rows = []
            if rows and rows[0][0] == 0:
                return
            await trio.sleep(0.05)  # a reader or the writer is busy: try again shortly
        raise RuntimeError("the WAL could not be truncated: the database stayed busy")

    async def load_token(self, integration: str) -> str | None:
        rows = await self._writer.read(
            "SELECT sealed FROM tokens WHERE integration = ?", (integration,)
        )
        return str(rows[0][0]) if rows else None

    async def save_token(self, integration: str, sealed: str) -> None:
        now = self._shared.clock()

        async def save(tx: Tx) -> None:
            await tx.execute(
                "INSERT OR REPLACE INTO tokens (integration, sealed, updated_at) VALUES (?,?,?)",
                (integration, sealed, now),
            )

        await self._writer.run(save)


def consent_event(record: ConsentRecord) -> tuple[Any, ...]:
    detail = consent_detail(record)
    return (record.at, EventKind.CONSENT.value, None, None, dumps(detail))


def _evolve_id(record: ErasureRecord, number: int) -> ErasureRecord:
    return ErasureRecord(
        record.subject, record.requested_by, record.requested_at, record.steps,
        record.finished_at, id=number,
    )  # fmt: skip
