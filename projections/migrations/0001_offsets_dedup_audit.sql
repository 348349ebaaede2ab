-- Offsets, dedup and audit log: the three projections one batch commits together (I4).
-- Applied with search_path set to the store's schema; names are unqualified on purpose.
-- Text keys use the "C" collation so ordering (state hash, listings) is the same in every database.

CREATE TABLE projection_offsets (
    consumer    text COLLATE "C" NOT NULL,
    topic       text COLLATE "C" NOT NULL,
    partition   int    NOT NULL,
    next_offset bigint NOT NULL CHECK (next_offset >= 0),
    owner_epoch bigint NOT NULL,
    PRIMARY KEY (consumer, topic, partition)
);

CREATE TABLE dedup (
    tenant          text COLLATE "C" NOT NULL,
    pcs_id          text COLLATE "C" NOT NULL,
    signed_digest   bytea    NOT NULL CHECK (octet_length(signed_digest) = 32),
    status          smallint NOT NULL,
    outcome         jsonb    NOT NULL,
    first_topic     text COLLATE "C" NOT NULL,
    first_partition int      NOT NULL,
    first_offset    bigint   NOT NULL,
    received_at_ms  bigint   NOT NULL,
    decided_at_ms   bigint   NOT NULL,
    expires_at_ms   bigint   NOT NULL,
    tier            text     NOT NULL DEFAULT 'hot',
    PRIMARY KEY (tenant, pcs_id)
);

CREATE TABLE audit_log (
    partition         int      NOT NULL,
    seq               bigint   NOT NULL CHECK (seq >= 0),
    source_topic      text COLLATE "C" NOT NULL,
    source_partition  int      NOT NULL,
    source_offset     bigint   NOT NULL,
    decisions_offset  bigint   NOT NULL,
    tenant            text COLLATE "C" NOT NULL,
    pcs_id            text COLLATE "C",
    verdict           text     NOT NULL,
    status            smallint NOT NULL,
    dedup_result      text     NOT NULL,
    outcome           jsonb    NOT NULL,
    signed_digest     bytea CHECK (signed_digest IS NULL OR octet_length(signed_digest) = 32),
    key_id            text,
    -- bigint, not int: the event carries a u32.
    params_version    bigint   NOT NULL,
    region            text     NOT NULL,
    received_at_ms    bigint   NOT NULL,
    decided_at_ms     bigint   NOT NULL,
    prev_hash         bytea    NOT NULL CHECK (octet_length(prev_hash) = 32),
    entry_hash        bytea    NOT NULL CHECK (octet_length(entry_hash) = 32),
    PRIMARY KEY (partition, seq),
    UNIQUE (source_topic, source_partition, source_offset)
);

-- Tenant-scoped audit queries (I7).
CREATE INDEX audit_log_tenant_pcs ON audit_log (tenant, pcs_id);
