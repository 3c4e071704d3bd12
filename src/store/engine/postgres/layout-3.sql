-- Layout version 3: runs with many workers (`Migration::join`). The collection's lease row
-- (`revolve_run_leases`, holder 'fleet') keeps other runs out while any worker heartbeats.

-- One joined run: the settings every worker shares, the documents reserved against its limit,
-- whether a cancel was asked for, and its state ('running', then 'done' or 'cancelled' when its
-- last worker leaves). The run id is the fencing term: ids are never reused.
CREATE TABLE revolve_fleet_runs (
    collection integer NOT NULL,
    run bigint NOT NULL,
    target integer NOT NULL,
    fingerprint text NOT NULL,
    run_limit bigint,
    retry_failed boolean NOT NULL,
    reserved bigint NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false,
    state text NOT NULL DEFAULT 'running',
    PRIMARY KEY (collection, run)
);

-- One worker of a joined run: who it is, its lease (heartbeat and expiry, by the database's
-- clock, renewed from a thread of its own), its counts, and the documents it holds reserved.
-- Each worker writes its own row only (a peer clears the reservation of one whose lease expired).
CREATE TABLE revolve_fleet_workers (
    collection integer NOT NULL,
    run bigint NOT NULL,
    worker text COLLATE "C" NOT NULL,
    instance text NOT NULL,
    host text NOT NULL,
    pid bigint NOT NULL,
    started timestamptz NOT NULL,
    heartbeat timestamptz NOT NULL,
    expires timestamptz NOT NULL,
    idle boolean NOT NULL DEFAULT false,
    gone boolean NOT NULL DEFAULT false,
    taken bigint NOT NULL DEFAULT 0,
    migrated bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    skipped bigint NOT NULL DEFAULT 0,
    reserved bigint NOT NULL DEFAULT 0,
    failures_by_class jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (collection, run, worker)
);
