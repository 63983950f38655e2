"""The PostgreSQL tables of the store's growth part (a migration of ``_schema``).

SQLite's migrations 8 (templates, versioned) and 9 (growth events, experiments by
phase, sticky assignments, exposures pending until delivery, one conversion per unit
and phase), with the same names. Growth event ids are given by the store (the next
after the highest, as SQLite's code does), not by a sequence; JSON stays text.
"""

DDL = """
CREATE TABLE templates (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    parts TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    by TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE growth_events (
    id BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL,
    recorded_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE experiments (
    name TEXT NOT NULL,
    phase BIGINT NOT NULL,
    spec TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    by TEXT NOT NULL,
    stopped_at DOUBLE PRECISION,
    stop_reason TEXT,
    PRIMARY KEY (name, phase)
);
CREATE TABLE assignments (
    experiment TEXT NOT NULL,
    phase BIGINT NOT NULL,
    unit TEXT NOT NULL,
    variant BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (experiment, phase, unit)
);
CREATE TABLE exposures (
    message_id BIGINT PRIMARY KEY,
    experiment TEXT NOT NULL,
    phase BIGINT NOT NULL,
    unit TEXT NOT NULL,
    variant BIGINT NOT NULL,
    exposed_at DOUBLE PRECISION
);
CREATE INDEX exposures_pending ON exposures (message_id) WHERE exposed_at IS NULL;
CREATE INDEX exposures_phase ON exposures (experiment, phase);
CREATE TABLE conversions (
    experiment TEXT NOT NULL,
    phase BIGINT NOT NULL,
    unit TEXT NOT NULL,
    variant BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (experiment, phase, unit)
);
"""
