"""The PostgreSQL tables of several nodes' coordination: the leader's row, then the
operator's wedding-day override that every node follows (migrations of ``_schema``; the
``nodes`` table is the core's)."""

DDL = """
CREATE TABLE leaders (
    duty TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    term BIGINT NOT NULL,
    until DOUBLE PRECISION NOT NULL
);
"""

OVERRIDE_DDL = """
CREATE TABLE mode_override (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    wedding_day BIGINT NOT NULL,
    until DOUBLE PRECISION,
    set_at DOUBLE PRECISION NOT NULL
);
"""
