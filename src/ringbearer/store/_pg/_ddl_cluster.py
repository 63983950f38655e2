"""The PostgreSQL tables of several nodes' coordination: the leader's row, the operator's
wedding-day override that every node follows, and the versions of the tables each node
keeps a book of in memory (migrations of ``_schema``; the ``nodes`` table is the core's).

**Versions.** Each node holds the suppressions, the consents and the erased subjects in
memory, for a look-up per message. A statement-level trigger on each of those tables
adds one to its row in ``shared_versions`` in the writing transaction, so the version
is seen when, and only when, the change is: a node that reads a version, then reads the
table, has every change that version counts, and rebuilds its book when the version
moved (``_shared_books``). The row is locked until the writer commits: writers of one
table queue on it, which these rare writes can afford.
"""

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

VERSIONS_DDL = """
CREATE TABLE shared_versions (
    name TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO shared_versions (name, version)
    VALUES ('suppressions', 0), ('consents', 0), ('erased_subjects', 0);
CREATE FUNCTION ringbearer_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE shared_versions SET version = version + 1 WHERE name = TG_TABLE_NAME;
    RETURN NULL;
END
$$;
CREATE TRIGGER suppressions_version AFTER INSERT OR UPDATE OR DELETE ON suppressions
    FOR EACH STATEMENT EXECUTE FUNCTION ringbearer_version_bump();
CREATE TRIGGER consents_version AFTER INSERT OR UPDATE OR DELETE ON consents
    FOR EACH STATEMENT EXECUTE FUNCTION ringbearer_version_bump();
CREATE TRIGGER erased_subjects_version AFTER INSERT OR UPDATE OR DELETE ON erased_subjects
    FOR EACH STATEMENT EXECUTE FUNCTION ringbearer_version_bump();
"""

# Each node's actors as it published them at its last beat, for the leader's alerts.
ACTORS_DDL = """
CREATE TABLE node_actors (
    node TEXT NOT NULL,
    integration TEXT NOT NULL,
    breaker TEXT NOT NULL,
    forced BIGINT NOT NULL,
    health TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (node, integration)
);
"""
