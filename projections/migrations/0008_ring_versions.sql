-- The placement of the sharded hot tier as state, so the set of Redis nodes can change while
-- everything runs (`flk migrate`). Every process with a hot cache follows `ring_state`: it reads
-- through the ring of `read_version` and writes through every ring of `write_versions` (two
-- while a migration dual-writes, so either ring stays whole and a rollback loses nothing).

-- Immutable ring specs (projections::ring::RingSpec as JSON): node ids, weights, points per node.
CREATE TABLE ring_versions (
    version       bigint PRIMARY KEY CHECK (version >= 1),
    spec          jsonb  NOT NULL,
    created_at_ms bigint NOT NULL,
    -- Which migration created it ('bootstrap' for the ring the configuration named first).
    created_by    text   NOT NULL
);

-- The one row every process follows. `state_version` grows by one at each change, so a follower
-- reports exactly what it applied and `flk migrate` can wait until every live process has it.
CREATE TABLE ring_state (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    state_version  bigint  NOT NULL,
    read_version   bigint  NOT NULL REFERENCES ring_versions (version),
    write_versions bigint[] NOT NULL,
    migration_id   text,
    updated_at_ms  bigint  NOT NULL
);

-- Processes following the ring (one row per process; refreshed each poll).
CREATE TABLE ring_followers (
    follower_id    text   PRIMARY KEY,
    state_version  bigint NOT NULL,
    seen_at_ms     bigint NOT NULL
);

-- One row per migration: the workflow state `flk migrate` resumes from.
CREATE TABLE ring_migrations (
    migration_id   text   PRIMARY KEY,
    from_version   bigint NOT NULL REFERENCES ring_versions (version),
    to_version     bigint NOT NULL REFERENCES ring_versions (version),
    phase          text   NOT NULL CHECK (phase IN ('planned', 'dual_write', 'copied', 'verified',
                                                    'cut_over', 'rolled_back', 'cleaned')),
    -- The plan as `flk migrate plan` printed it (counts per source and target node).
    plan           jsonb  NOT NULL,
    -- Copy progress: per source node, the SCAN cursor to resume from and the keys copied.
    copy_progress  jsonb  NOT NULL DEFAULT '{}'::jsonb,
    -- The last verify's report; `verified_copy_run` is the copy run it checked.
    verify_report  jsonb,
    copy_run       bigint NOT NULL DEFAULT 0,
    verified_copy_run bigint,
    created_at_ms  bigint NOT NULL,
    updated_at_ms  bigint NOT NULL
);

-- What happened, in order (append-only): phase changes and each command run, for `status`.
CREATE TABLE ring_events (
    id            bigserial PRIMARY KEY,
    migration_id  text,
    kind          text   NOT NULL,
    detail        jsonb  NOT NULL,
    at_ms         bigint NOT NULL
);

-- Serving processes (members of flk_audit_writer) follow the ring and report what they applied;
-- changing it is `flk migrate`'s, run with the owner's rights.
GRANT SELECT ON ring_versions, ring_state, ring_migrations, ring_events TO flk_audit_writer;
GRANT SELECT, INSERT, UPDATE ON ring_followers TO flk_audit_writer;
