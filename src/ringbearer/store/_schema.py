"""The SQLite schema, versioned by ``PRAGMA user_version``.

Each migration moves the database from version N-1 to N inside one
transaction. A database newer than this program knows is refused, never
touched.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: the outbox, the audit log (with attempts and dead letters as views),
    # durable breaker states and pauses.
    """
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        integration TEXT,
        priority INTEGER NOT NULL,
        payload TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        route_index INTEGER NOT NULL DEFAULT 0,
        member_attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error TEXT,
        provider_id TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        delivered_at REAL,
        -- What the last change was, and the last attempt: the triggers below
        -- turn each change into its audit events inside the same statement.
        last_event TEXT,
        attempt_at REAL,
        attempt_seconds REAL,
        attempt_outcome TEXT,
        attempt_status INTEGER
    );
    CREATE UNIQUE INDEX messages_key ON messages (target, idempotency_key);
    CREATE INDEX messages_ready ON messages (target, priority, next_attempt_at, id)
        WHERE status = 'queued';
    CREATE INDEX messages_inflight ON messages (status) WHERE status = 'inflight';
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        message_id INTEGER,
        integration TEXT,
        detail TEXT
    );
    CREATE INDEX events_message ON events (message_id) WHERE message_id IS NOT NULL;
    CREATE INDEX events_at ON events (at);
    CREATE INDEX messages_dead ON messages (id) WHERE status = 'dead';
    -- Attempts and dead letters are views, not extra writes: each attempt is an
    -- 'attempted' event in the audit log, and a dead letter is a message whose
    -- status is 'dead', with its reason in last_error.
    CREATE VIEW attempts AS
        SELECT message_id,
               json_extract(detail, '$.attempt') AS number,
               integration,
               at AS started_at,
               json_extract(detail, '$.seconds') AS duration,
               json_extract(detail, '$.outcome') AS outcome,
               json_extract(detail, '$.status') AS status,
               json_extract(detail, '$.detail') AS detail
        FROM events WHERE kind = 'attempted';
    CREATE VIEW dead_letters AS
        SELECT id AS message_id, updated_at AS at, integration, last_error AS reason
        FROM messages WHERE status = 'dead';
    CREATE TABLE breakers (
        integration TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        forced INTEGER NOT NULL,
        open_until REAL NOT NULL
    );
    CREATE TRIGGER messages_submitted AFTER INSERT ON messages
    BEGIN
        INSERT INTO events (at, kind, message_id, detail) VALUES (
            NEW.created_at, 'submitted', NEW.id,
            json_object('target', NEW.target, 'key', NEW.idempotency_key, 'priority',
                        CASE NEW.priority WHEN 0 THEN 'critical' WHEN 1 THEN 'normal'
                        ELSE 'bulk' END));
    END;
    CREATE TRIGGER messages_changed AFTER UPDATE OF last_event ON messages
    BEGIN
        INSERT INTO events (at, kind, message_id, integration, detail)
        SELECT NEW.attempt_at, 'attempted', NEW.id, NEW.integration,
               json_object('attempt', NEW.attempts, 'outcome', NEW.attempt_outcome,
                           'status', NEW.attempt_status, 'seconds', NEW.attempt_seconds,
                           'detail', NEW.last_error)
        WHERE NEW.attempt_at IS NOT NULL;
        INSERT INTO events (at, kind, message_id, integration, detail) VALUES (
            NEW.updated_at, NEW.last_event, NEW.id, NEW.integration,
            json_object('attempts', NEW.attempts, 'status', NEW.status,
                        'reason', NEW.last_error, 'provider_id', NEW.provider_id,
                        'next_attempt_at', NEW.next_attempt_at,
                        'route_index', NEW.route_index));
    END;
    CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
    CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
    CREATE TABLE controls (
        name TEXT PRIMARY KEY,
        paused INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 2: multi-step deliveries keep their completed steps with the message,
    # as a JSON object keyed by integration; quota budgets are rebuilt at
    # start-up from each integration's recent attempts.
    """
    ALTER TABLE messages ADD COLUMN progress TEXT;
    CREATE INDEX events_attempts ON events (integration, at) WHERE kind = 'attempted';
    """,
    # 3: deadlines. Among ready messages of one priority the nearest goes first;
    # the index holds only queued messages that have one.
    """
    ALTER TABLE messages ADD COLUMN deliver_by REAL;
    CREATE INDEX messages_deadline ON messages (target, priority, deliver_by)
        WHERE status = 'queued' AND deliver_by IS NOT NULL;
    CREATE INDEX messages_deadlines_open ON messages (deliver_by)
        WHERE deliver_by IS NOT NULL AND status IN ('queued', 'inflight');
    """,
    # 4: an idempotency key names one message whatever its target: a submit
    # looks its keys up by key alone. Not unique: an older database may hold
    # one key for two targets, and is not refused for it.
    """
    CREATE INDEX messages_idempotency_key ON messages (idempotency_key);
    """,
    # 5: alerts, open and resolved, with where each one's escalation stands
    # (``chain`` a JSON array of targets, ``sent`` one [level, message id,
    # sent at] per channel reached), so a restart continues them. Resolved ones
    # are kept: the highest id is where new alert ids go on from.
    """
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        severity TEXT NOT NULL,
        summary TEXT NOT NULL,
        opened_at REAL NOT NULL,
        chain TEXT NOT NULL,
        escalated_at REAL NOT NULL,
        level INTEGER NOT NULL,
        sent TEXT NOT NULL,
        last_sent_at REAL NOT NULL,
        external INTEGER NOT NULL,
        acked_by TEXT,
        acked_at REAL,
        resolved_at REAL
    );
    CREATE INDEX alerts_open ON alerts (id) WHERE resolved_at IS NULL;
    """,
    # 6: deliverability. A message keeps its category, first recipient and
    # sending domain (what suppression, caps and the reputation guard read),
    # and ``held``, the key of the hold it waits under (a paused domain). The
    # provider's events are kept once per (source, event_id) in mail_events,
    # matched to their message by provider_id; suppressions keep addresses
    # from mail. The audit triggers are made again to name the new facts:
    # ``submitted`` gains category and not_before when set (a message
    # scheduled is one due after its creation), a settle's event the hold key.
    """
    ALTER TABLE messages ADD COLUMN category TEXT;
    ALTER TABLE messages ADD COLUMN recipient TEXT;
    ALTER TABLE messages ADD COLUMN domain TEXT;
    ALTER TABLE messages ADD COLUMN held TEXT;
    CREATE INDEX messages_provider_id ON messages (provider_id) WHERE provider_id IS NOT NULL;
    CREATE INDEX messages_held ON messages (held) WHERE held IS NOT NULL;
    -- The funnel counts email submitted since a time; the caps read what was
    -- delivered of a category. Both only ever look at mail with these set.
    CREATE INDEX messages_mail_created ON messages (created_at) WHERE domain IS NOT NULL;
    CREATE INDEX messages_category_delivered ON messages (category, delivered_at)
        WHERE category IS NOT NULL AND delivered_at IS NOT NULL;
    CREATE TABLE mail_events (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        event TEXT NOT NULL,
        channel TEXT NOT NULL DEFAULT 'email',
        message_id INTEGER,
        integration TEXT,
        domain TEXT,
        address TEXT,
        detail TEXT,
        UNIQUE (source, event_id)
    );
    CREATE INDEX mail_events_at ON mail_events (at);
    CREATE INDEX mail_events_address ON mail_events (address, event, at)
        WHERE address IS NOT NULL;
    CREATE INDEX mail_events_message ON mail_events (message_id) WHERE message_id IS NOT NULL;
    -- AUTOINCREMENT: an id is never given again, so one read before a removal
    -- cannot name another suppression after it.
    CREATE TABLE suppressions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        address TEXT NOT NULL,
        scope TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at REAL NOT NULL,
        until REAL,
        by TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        last_try_at REAL,
        UNIQUE (address, scope, reason)
    );
    CREATE INDEX suppressions_address ON suppressions (address);
    DROP TRIGGER messages_submitted;
    CREATE TRIGGER messages_submitted AFTER INSERT ON messages
    BEGIN
        INSERT INTO events (at, kind, message_id, detail) VALUES (
            NEW.created_at, 'submitted', NEW.id,
            CASE WHEN NEW.category IS NULL AND NEW.next_attempt_at <= NEW.created_at
            THEN json_object('target', NEW.target, 'key', NEW.idempotency_key, 'priority',
                             CASE NEW.priority WHEN 0 THEN 'critical' WHEN 1 THEN 'normal'
                             ELSE 'bulk' END)
            ELSE json_patch(
                json_object('target', NEW.target, 'key', NEW.idempotency_key, 'priority',
                            CASE NEW.priority WHEN 0 THEN 'critical' WHEN 1 THEN 'normal'
                            ELSE 'bulk' END),
                -- a merge patch: a null member is left out
                json_object('category', NEW.category, 'not_before',
                            CASE WHEN NEW.next_attempt_at > NEW.created_at
                            THEN NEW.next_attempt_at END))
            END);
    END;
    DROP TRIGGER messages_changed;
    CREATE TRIGGER messages_changed AFTER UPDATE OF last_event ON messages
    BEGIN
        INSERT INTO events (at, kind, message_id, integration, detail)
        SELECT NEW.attempt_at, 'attempted', NEW.id, NEW.integration,
               json_object('attempt', NEW.attempts, 'outcome', NEW.attempt_outcome,
                           'status', NEW.attempt_status, 'seconds', NEW.attempt_seconds,
                           'detail', NEW.last_error)
        WHERE NEW.attempt_at IS NOT NULL;
        INSERT INTO events (at, kind, message_id, integration, detail) VALUES (
            NEW.updated_at, NEW.last_event, NEW.id, NEW.integration,
            CASE WHEN NEW.held IS NULL
            THEN json_object('attempts', NEW.attempts, 'status', NEW.status,
                             'reason', NEW.last_error, 'provider_id', NEW.provider_id,
                             'next_attempt_at', NEW.next_attempt_at,
                             'route_index', NEW.route_index)
            ELSE json_object('attempts', NEW.attempts, 'status', NEW.status,
                             'reason', NEW.last_error, 'provider_id', NEW.provider_id,
                             'next_attempt_at', NEW.next_attempt_at,
                             'route_index', NEW.route_index, 'held', NEW.held)
            END);
    END;
    """,
    # 7: privacy. A message names its data subjects by opaque id
    # (message_subjects), so an erasure finds every message about someone;
    # erased subjects are remembered (by id only) so nothing new about them is
    # taken; erasure jobs keep the steps done, so a restart resumes them;
    # consent is appended, latest record winning; shredded_at marks a payload
    # retention has wiped; tokens keeps each OAuth token set, sealed.
    """
    ALTER TABLE messages ADD COLUMN shredded_at REAL;
    CREATE INDEX messages_delivered_unshredded ON messages (delivered_at)
        WHERE status = 'delivered' AND shredded_at IS NULL;
    CREATE INDEX messages_dead_unshredded ON messages (updated_at)
        WHERE status = 'dead' AND shredded_at IS NULL;
    CREATE TABLE message_subjects (
        subject TEXT NOT NULL,
        message_id INTEGER NOT NULL,
        PRIMARY KEY (subject, message_id)
    ) WITHOUT ROWID;
    CREATE TABLE erased_subjects (
        subject TEXT PRIMARY KEY,
        erased_at REAL NOT NULL,
        job INTEGER NOT NULL
    );
    CREATE TABLE erasures (
        id INTEGER PRIMARY KEY,
        subject TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        requested_at REAL NOT NULL,
        steps TEXT NOT NULL,
        finished_at REAL
    );
    CREATE INDEX erasures_subject ON erasures (subject);
    CREATE TABLE consents (
        id INTEGER PRIMARY KEY,
        subject TEXT NOT NULL,
        purpose TEXT NOT NULL,
        granted INTEGER NOT NULL,
        source TEXT NOT NULL,
        at REAL NOT NULL,
        by TEXT NOT NULL
    );
    CREATE INDEX consents_subject ON consents (subject, id);
    CREATE TABLE tokens (
        integration TEXT PRIMARY KEY,
        sealed TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # 8: growth. Templates, versioned: a put adds the next version of a name,
    # and a message rendered from one keeps its bytes whatever comes later.
    """
    CREATE TABLE templates (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        parts TEXT NOT NULL,
        created_at REAL NOT NULL,
        by TEXT NOT NULL,
        PRIMARY KEY (name, version)
    );
    """,
    # 9: growth events and experiments. Growth events are appended, their
    # personal fields already pseudonymised or sealed, and replayed at start.
    # An experiment is kept by phase (each put of a name starts the next); a
    # unit's assignment in a phase is sticky; an exposure is a message showing
    # a unit its variant, pending until the message is delivered; a unit
    # converts once per phase.
    """
    CREATE TABLE growth_events (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        at REAL NOT NULL,
        body TEXT NOT NULL,
        recorded_at REAL NOT NULL
    );
    CREATE TABLE experiments (
        name TEXT NOT NULL,
        phase INTEGER NOT NULL,
        spec TEXT NOT NULL,
        created_at REAL NOT NULL,
        by TEXT NOT NULL,
        stopped_at REAL,
        stop_reason TEXT,
        PRIMARY KEY (name, phase)
    );
    CREATE TABLE assignments (
        experiment TEXT NOT NULL,
        phase INTEGER NOT NULL,
        unit TEXT NOT NULL,
        variant INTEGER NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (experiment, phase, unit)
    ) WITHOUT ROWID;
    CREATE TABLE exposures (
        message_id INTEGER PRIMARY KEY,
        experiment TEXT NOT NULL,
        phase INTEGER NOT NULL,
        unit TEXT NOT NULL,
        variant INTEGER NOT NULL,
        exposed_at REAL
    );
    CREATE INDEX exposures_pending ON exposures (message_id) WHERE exposed_at IS NULL;
    CREATE INDEX exposures_phase ON exposures (experiment, phase);
    CREATE TABLE conversions (
        experiment TEXT NOT NULL,
        phase INTEGER NOT NULL,
        unit TEXT NOT NULL,
        variant INTEGER NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (experiment, phase, unit)
    ) WITHOUT ROWID;
    """,
    # 10: the operator's wedding-day override is kept, so a restart follows it (and, on
    # a shared store, every node does). One row, or none when the calendar rules.
    """
    CREATE TABLE mode_override (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        wedding_day INTEGER NOT NULL,
        until REAL,
        set_at REAL NOT NULL
    );
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def statements(script: str) -> list[str]:
    """Split a migration script into statements (triggers keep their inner ';')."""
    found, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        text = "\n".join(current).strip()
        if text.endswith(";") and sqlite3.complete_statement(text):
            found.append(text)
            current = []
    if "\n".join(current).strip():
        found.append("\n".join(current))
    return found
