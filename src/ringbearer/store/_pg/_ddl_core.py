"""The PostgreSQL tables of the store's core part (a migration of ``_schema``).

The tables, columns, views, indexes and triggers of SQLite's final schema
(``store/_schema.py``, migrations 1 to 9) that the queue, the audit log, the
controls and the alerts own, with what differs:

* ids are BIGINT. ``messages.id`` is filled by the queue from ``messages_id_seq``
  (several nodes submit to one database, so no node can count ids in memory);
  ``events.id`` is assigned by its default; ``alerts.id`` is given by the caller.
* INTEGER is BIGINT (SQLite's integers are 64 bits), REAL is DOUBLE PRECISION,
  JSON stays TEXT. Booleans stay 0/1 integers, as the SQLite parts write them.
* a message in flight is leased: ``lease_node`` holds it until ``lease_until``
  (wall clock), and ``lease_epoch`` counts its claims, so a settle from a node
  whose lease was taken over matches no row (fencing). ``nodes`` lists the nodes.
* the audit triggers are plpgsql functions writing the same events: the details
  are JSON text from ``json_build_object``, members in SQLite's order, and a
  whole-number time keeps its ``.0`` (``json_real``) so it reads back as a float.
* the event log also refuses TRUNCATE, which SQLite has no statement for.
"""

DDL = """
CREATE TABLE messages (
    id BIGSERIAL PRIMARY KEY,
    target TEXT NOT NULL,
    integration TEXT,
    priority BIGINT NOT NULL,
    payload TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    route_index BIGINT NOT NULL DEFAULT 0,
    member_attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    last_error TEXT,
    provider_id TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    delivered_at DOUBLE PRECISION,
    last_event TEXT,
    attempt_at DOUBLE PRECISION,
    attempt_seconds DOUBLE PRECISION,
    attempt_outcome TEXT,
    attempt_status BIGINT,
    progress TEXT,
    deliver_by DOUBLE PRECISION,
    category TEXT,
    recipient TEXT,
    domain TEXT,
    held TEXT,
    shredded_at DOUBLE PRECISION,
    lease_node TEXT,
    lease_until DOUBLE PRECISION,
    lease_epoch BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX messages_key ON messages (target, idempotency_key);
CREATE INDEX messages_ready ON messages (target, priority, next_attempt_at, id)
    WHERE status = 'queued';
-- SQLite's index on status alone: here on the lease's end, which recovery looks up.
CREATE INDEX messages_inflight ON messages (lease_until) WHERE status = 'inflight';
CREATE INDEX messages_dead ON messages (id) WHERE status = 'dead';
CREATE INDEX messages_deadline ON messages (target, priority, deliver_by)
    WHERE status = 'queued' AND deliver_by IS NOT NULL;
CREATE INDEX messages_deadlines_open ON messages (deliver_by)
    WHERE deliver_by IS NOT NULL AND status IN ('queued', 'inflight');
CREATE INDEX messages_idempotency_key ON messages (idempotency_key);
CREATE INDEX messages_provider_id ON messages (provider_id) WHERE provider_id IS NOT NULL;
CREATE INDEX messages_held ON messages (held) WHERE held IS NOT NULL;
CREATE INDEX messages_mail_created ON messages (created_at) WHERE domain IS NOT NULL;
CREATE INDEX messages_category_delivered ON messages (category, delivered_at)
    WHERE category IS NOT NULL AND delivered_at IS NOT NULL;
CREATE INDEX messages_delivered_unshredded ON messages (delivered_at)
    WHERE status = 'delivered' AND shredded_at IS NULL;
CREATE INDEX messages_dead_unshredded ON messages (updated_at)
    WHERE status = 'dead' AND shredded_at IS NULL;

CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    message_id BIGINT,
    integration TEXT,
    detail TEXT
);
CREATE INDEX events_message ON events (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX events_at ON events (at);
CREATE INDEX events_attempts ON events (integration, at) WHERE kind = 'attempted';

CREATE TABLE message_subjects (
    subject TEXT NOT NULL,
    message_id BIGINT NOT NULL,
    PRIMARY KEY (subject, message_id)
);

CREATE TABLE breakers (
    integration TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    forced BIGINT NOT NULL,
    open_until DOUBLE PRECISION NOT NULL
);

CREATE TABLE controls (
    name TEXT PRIMARY KEY,
    paused BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE alerts (
    id BIGINT PRIMARY KEY,
    key TEXT NOT NULL,
    severity TEXT NOT NULL,
    summary TEXT NOT NULL,
    opened_at DOUBLE PRECISION NOT NULL,
    chain TEXT NOT NULL,
    escalated_at DOUBLE PRECISION NOT NULL,
    level BIGINT NOT NULL,
    sent TEXT NOT NULL,
    last_sent_at DOUBLE PRECISION NOT NULL,
    external BIGINT NOT NULL,
    acked_by TEXT,
    acked_at DOUBLE PRECISION,
    resolved_at DOUBLE PRECISION
);
CREATE INDEX alerts_open ON alerts (id) WHERE resolved_at IS NULL;

CREATE TABLE nodes (
    node TEXT PRIMARY KEY,
    host TEXT,
    started_at DOUBLE PRECISION,
    heartbeat_at DOUBLE PRECISION
);

CREATE VIEW attempts AS
    SELECT message_id,
           (detail::jsonb ->> 'attempt')::BIGINT AS number,
           integration,
           at AS started_at,
           (detail::jsonb ->> 'seconds')::DOUBLE PRECISION AS duration,
           detail::jsonb ->> 'outcome' AS outcome,
           (detail::jsonb ->> 'status')::BIGINT AS status,
           detail::jsonb ->> 'detail' AS detail
    FROM events WHERE kind = 'attempted';
CREATE VIEW dead_letters AS
    SELECT id AS message_id, updated_at AS at, integration, last_error AS reason
    FROM messages WHERE status = 'dead';

-- A time as SQLite's JSON writes a REAL: a whole number keeps its '.0'.
CREATE FUNCTION json_real(v DOUBLE PRECISION) RETURNS json
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v IS NULL THEN NULL
                WHEN v::text ~ '^-?[0-9]+$' THEN (v::text || '.0')::json
                ELSE to_json(v) END
$$;

CREATE FUNCTION messages_submitted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    label TEXT := CASE NEW.priority WHEN 0 THEN 'critical' WHEN 1 THEN 'normal'
                  ELSE 'bulk' END;
    not_before json := CASE WHEN NEW.next_attempt_at > NEW.created_at
                       THEN json_real(NEW.next_attempt_at) END;
    detail json;
BEGIN
    -- As SQLite's merge patch: category and not_before only when set.
    IF NEW.category IS NULL AND not_before IS NULL THEN
        detail := json_build_object('target', NEW.target, 'key', NEW.idempotency_key,
                                    'priority', label);
    ELSIF not_before IS NULL THEN
        detail := json_build_object('target', NEW.target, 'key', NEW.idempotency_key,
                                    'priority', label, 'category', NEW.category);
    ELSIF NEW.category IS NULL THEN
        detail := json_build_object('target', NEW.target, 'key', NEW.idempotency_key,
                                    'priority', label, 'not_before', not_before);
    ELSE
        detail := json_build_object('target', NEW.target, 'key', NEW.idempotency_key,
                                    'priority', label, 'category', NEW.category,
                                    'not_before', not_before);
    END IF;
    INSERT INTO events (at, kind, message_id, detail)
    VALUES (NEW.created_at, 'submitted', NEW.id, detail::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER messages_submitted AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_submitted();

CREATE FUNCTION messages_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    detail json;
BEGIN
    IF NEW.attempt_at IS NOT NULL THEN
        INSERT INTO events (at, kind, message_id, integration, detail)
        VALUES (NEW.attempt_at, 'attempted', NEW.id, NEW.integration,
                json_build_object('attempt', NEW.attempts, 'outcome', NEW.attempt_outcome,
                                  'status', NEW.attempt_status,
                                  'seconds', json_real(NEW.attempt_seconds),
                                  'detail', NEW.last_error)::text);
    END IF;
    IF NEW.held IS NULL THEN
        detail := json_build_object('attempts', NEW.attempts, 'status', NEW.status,
                                    'reason', NEW.last_error, 'provider_id', NEW.provider_id,
                                    'next_attempt_at', json_real(NEW.next_attempt_at),
                                    'route_index', NEW.route_index);
    ELSE
        detail := json_build_object('attempts', NEW.attempts, 'status', NEW.status,
                                    'reason', NEW.last_error, 'provider_id', NEW.provider_id,
                                    'next_attempt_at', json_real(NEW.next_attempt_at),
                                    'route_index', NEW.route_index, 'held', NEW.held);
    END IF;
    INSERT INTO events (at, kind, message_id, integration, detail)
    VALUES (NEW.updated_at, NEW.last_event, NEW.id, NEW.integration, detail::text);
    RETURN NULL;
END
$$;
-- As SQLite's UPDATE OF: fires whenever a statement sets last_event, changed or not.
CREATE TRIGGER messages_changed AFTER UPDATE OF last_event ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_changed();

CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only';
END
$$;
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_append_only_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
"""
