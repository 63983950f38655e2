"""The PostgreSQL tables of several nodes' coordination: the leader's row (a migration of
``_schema``; the ``nodes`` table is the core's)."""

DDL = """
CREATE TABLE leaders (
    duty TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    term BIGINT NOT NULL,
    until DOUBLE PRECISION NOT NULL
);
"""
