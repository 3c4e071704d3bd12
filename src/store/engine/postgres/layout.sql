-- revolve's PostgreSQL layout, version 1. Created in the first schema of the search path (or the
-- schema the store names) in one transaction, under a transaction-scoped advisory lock, with
-- each later version's file (layout-2.sql, …) and the version row after it.
-- `revolve pg-layout --print` prints them all for roles without CREATE.

CREATE TABLE revolve_layout (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    version integer NOT NULL
);

-- One row per collection: its metadata record (registered versions and schemas, as on sled, its
-- schema history kept apart in revolve_schema_history) and the newest version registered,
-- which commits read.
CREATE TABLE revolve_collections (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text COLLATE "C" NOT NULL UNIQUE,
    meta bytea,
    newest integer NOT NULL DEFAULT 0
);

-- Where each document's current revision is. No payload, and room on each page, so that a
-- write at the same version is a HOT update (no index changes).
CREATE TABLE revolve_heads (
    collection integer NOT NULL,
    id text COLLATE "C" NOT NULL,
    revision bigint NOT NULL,
    version integer NOT NULL,
    removed boolean NOT NULL,
    PRIMARY KEY (collection, id)
) WITH (fillfactor = 80);

-- Pending documents per source version, in id order: a migration claims through it with a
-- keyset, and "anything pending?" is an EXISTS on it.
CREATE INDEX revolve_heads_by_version ON revolve_heads (collection, version, id) WHERE NOT removed;

-- Every revision ever written: the envelope bytes, exactly as on sled. Never updated.
CREATE TABLE revolve_revisions (
    collection integer NOT NULL,
    id text COLLATE "C" NOT NULL,
    revision bigint NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (collection, id, revision)
);

CREATE FUNCTION revolve_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'revolve: % rows are never updated', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER revolve_revisions_are_never_updated
    BEFORE UPDATE ON revolve_revisions
    FOR EACH ROW EXECUTE FUNCTION revolve_refuse_update();

REVOKE UPDATE ON revolve_revisions FROM PUBLIC;

-- Why a document could not be migrated: one record per document, naming its head revision.
CREATE TABLE revolve_failures (
    collection integer NOT NULL,
    id text COLLATE "C" NOT NULL,
    version integer NOT NULL,
    run bigint NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (collection, id)
);

CREATE INDEX revolve_failures_by_run ON revolve_failures (collection, run, id);

-- Counts as deltas: each writing transaction adds to the row of its own shard (its backend
-- process), last and in key order, so concurrent writers do not queue on one row.
-- counter: 0 live documents at `version`, 1 removed documents, 2 known failures at `version`.
CREATE TABLE revolve_counts (
    collection integer NOT NULL,
    counter smallint NOT NULL,
    version integer NOT NULL,
    shard smallint NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (collection, counter, version, shard)
);

-- The run ledger: one record per run, as on sled.
CREATE TABLE revolve_runs (
    collection text COLLATE "C" NOT NULL,
    run bigint NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (collection, run)
);

CREATE SEQUENCE revolve_run_ids;

-- A run's progress, written with each chunk it commits.
CREATE TABLE revolve_progress (
    collection integer NOT NULL,
    run bigint NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (collection, run)
);

-- Where the last run towards a target version stopped: the last id it took. The next run starts
-- after it and comes round to it, so repeated limited runs advance through documents that keep
-- failing instead of taking the same ones again.
CREATE TABLE revolve_positions (
    collection integer NOT NULL,
    target integer NOT NULL,
    position text COLLATE "C" NOT NULL,
    PRIMARY KEY (collection, target)
);

-- Which run holds a collection, until when: the holder renews its lease while it lives; an
-- expired lease is free to take. Run 0 holds it to settle the ledger.
CREATE TABLE revolve_run_leases (
    collection integer PRIMARY KEY,
    run bigint NOT NULL,
    holder text NOT NULL,
    expires timestamptz NOT NULL
);
