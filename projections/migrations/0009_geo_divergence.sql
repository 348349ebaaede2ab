-- Divergence between this region's dedup state and another region's (flk regions diff): one row
-- per comparison run, one per key found different. Bookkeeping of the checker, not derived from
-- decision events (a rebuild starts with none).
CREATE TABLE geo_divergence_runs (
    run_id           bigserial PRIMARY KEY,
    remote_region    text COLLATE "C" NOT NULL,
    started_at_ms    bigint NOT NULL,
    finished_at_ms   bigint NOT NULL,
    keys_here        bigint NOT NULL,
    keys_there       bigint NOT NULL,
    buckets_compared bigint NOT NULL,
    findings         bigint NOT NULL
);

CREATE TABLE geo_divergence_findings (
    run_id                bigint NOT NULL REFERENCES geo_divergence_runs (run_id),
    tenant                text COLLATE "C" NOT NULL,
    pcs_id                text COLLATE "C" NOT NULL,
    kind                  text NOT NULL CHECK (kind IN
                              ('missing_here', 'missing_there', 'different_record', 'different_outcome')),
    digest_here           bytea,
    digest_there          bytea,
    received_at_ms_here   bigint,
    received_at_ms_there  bigint,
    origin_here           text COLLATE "C",
    origin_there          text COLLATE "C",
    -- Which side the cross-region rule keeps (earliest received-at, then region id): 'here',
    -- 'there', or NULL when only one side has the key.
    winner                text CHECK (winner IN ('here', 'there')),
    -- What `flk regions reconcile` did about it (NULL: a diff only, or not yet reconciled).
    action                text,
    PRIMARY KEY (run_id, tenant, pcs_id)
);
