-- The cold tier: demoted dedup rows live in compressed segments in the object store
-- (events::cold_segment); Postgres keeps each segment's manifest and a small index of the keys
-- it holds, so dedup and lookups stay correct without reading the object store on the write path.
--
-- A warm row is due for the cold tier once coalesce(promoted_at_ms, decided_at_ms) is older than
-- its tenant's warm_ttl; a read of a cold key promotes it back to warm (promoted_at_ms = now).
ALTER TABLE dedup ADD COLUMN promoted_at_ms bigint;

-- The demoter's scan: one tenant's rows in the order they become due (never a full scan).
CREATE INDEX dedup_due ON dedup (tenant, (coalesce(promoted_at_ms, decided_at_ms)), pcs_id);

-- One row per segment object. The demoter records a segment as `pending` (with the keys it
-- packs) before it writes the object, so an object can never exist without a row naming it:
-- after a crash a pending segment is finished (same rows, same bytes, same name) or abandoned
-- (object deleted). `sealed`: verified in the store, its keys indexed, its warm rows deleted, in
-- one transaction. `expired`: deleted by the tenant's cold retention.
CREATE TABLE cold_segments (
    segment_key    text COLLATE "C" PRIMARY KEY,
    tenant         text COLLATE "C" NOT NULL,
    state          text NOT NULL CHECK (state IN ('pending', 'sealed', 'abandoned', 'expired')),
    -- events::cold_segment::Manifest as written beside the object.
    manifest       jsonb  NOT NULL,
    entries        bigint NOT NULL,
    raw_bytes      bigint NOT NULL,
    compressed_bytes bigint NOT NULL,
    max_decided_at_ms bigint NOT NULL,
    -- The packed keys while pending (cleared once sealed or abandoned).
    pending_pcs_ids text[] COLLATE "C",
    created_at_ms  bigint NOT NULL,
    sealed_at_ms   bigint,
    ended_at_ms    bigint,
    last_error     text
);
CREATE INDEX cold_segments_tenant_state ON cold_segments (tenant, state, max_decided_at_ms);

-- Where each demoted key lives, with what dedup needs to decide a later record without the
-- object (the first outcome's body is read from the audit log entry at the first coordinates,
-- which is kept forever). A warm row of the same key shadows this one (promotion, or a new first
-- record after the window ended).
CREATE TABLE cold_keys (
    tenant          text COLLATE "C" NOT NULL,
    pcs_id          text COLLATE "C" NOT NULL,
    segment_key     text COLLATE "C" NOT NULL REFERENCES cold_segments (segment_key),
    signed_digest   bytea    NOT NULL CHECK (octet_length(signed_digest) = 32),
    outcome_code    text COLLATE "C" NOT NULL,
    first_topic     text COLLATE "C" NOT NULL,
    first_partition int      NOT NULL,
    first_offset    bigint   NOT NULL,
    received_at_ms  bigint   NOT NULL,
    decided_at_ms   bigint   NOT NULL,
    expires_at_ms   bigint   NOT NULL,
    PRIMARY KEY (tenant, pcs_id)
);
CREATE INDEX cold_keys_segment ON cold_keys (segment_key);

-- The demoter is a singleton: a lease with an epoch. Every demoter transaction checks it still
-- holds the epoch it took, so a stale demoter (paused, partitioned) can never move rows.
CREATE TABLE tier_lease (
    name          text PRIMARY KEY,
    owner         text   NOT NULL,
    epoch         bigint NOT NULL,
    expires_at_ms bigint NOT NULL
);

-- What the demoter did, append-only (like the audit log): demotions and retention deletions.
CREATE TABLE tier_events (
    id            bigserial PRIMARY KEY,
    at_ms         bigint NOT NULL,
    tenant        text COLLATE "C" NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('demoted', 'expired', 'abandoned')),
    segment_key   text COLLATE "C" NOT NULL,
    entries       bigint NOT NULL,
    detail        text
);
CREATE TRIGGER tier_events_append_only
    BEFORE UPDATE OR DELETE ON tier_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- The serving role of migration 0006: the tier tables change as rows move; tier_events only grows.
GRANT SELECT, INSERT, UPDATE, DELETE ON cold_segments, cold_keys, tier_lease TO flk_audit_writer;
GRANT SELECT, INSERT ON tier_events TO flk_audit_writer;
GRANT USAGE ON SEQUENCE tier_events_id_seq TO flk_audit_writer;
