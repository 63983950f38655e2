"""The PostgreSQL tables of the store's deliverability part (a migration of ``_schema``).

What SQLite's migration 6 adds beside the messages columns and audit triggers (those
are the core's): the indexes the deliverability reads use on ``messages``, the kept
provider events (``mail_events``) and the suppression list. Names are SQLite's.

Differs from SQLite: ``suppressions.id`` comes from a sequence, which never gives an id
again (as ``AUTOINCREMENT`` does there); ``mail_events.id`` too (SQLite's rowid may give
the id of a deleted last row again, but nothing deletes from ``mail_events``). The
indexes on ``messages`` say ``IF NOT EXISTS`` in case the core's script made them too.
"""

DDL = """
CREATE INDEX IF NOT EXISTS messages_provider_id ON messages (provider_id)
    WHERE provider_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_held ON messages (held) WHERE held IS NOT NULL;
-- The funnel counts email submitted since a time; the caps read what was
-- delivered of a category. Both only ever look at mail with these set.
CREATE INDEX IF NOT EXISTS messages_mail_created ON messages (created_at)
    WHERE domain IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_category_delivered ON messages (category, delivered_at)
    WHERE category IS NOT NULL AND delivered_at IS NOT NULL;
CREATE TABLE mail_events (
    id BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event TEXT NOT NULL,
    channel TEXT NOT NULL DEFAULT 'email',
    message_id BIGINT,
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
CREATE TABLE suppressions (
    id BIGSERIAL PRIMARY KEY,
    address TEXT NOT NULL,
    scope TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    until DOUBLE PRECISION,
    by TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    last_try_at DOUBLE PRECISION,
    UNIQUE (address, scope, reason)
);
CREATE INDEX suppressions_address ON suppressions (address);
"""
