-- The audit Merkle log (RFC 6962) over audit_log, and its signed checkpoints.
--
-- Leaf order: the anchorer appends leaves in rounds. A round takes, for every decisions partition
-- in ascending order, the audit entries after that partition's watermark (its next seq), in seq
-- order; the round's watermarks are stored with the checkpoint it ends in, so a rebuild from the
-- log repeats the same rounds and gets the same root for every checkpointed size.
--
-- merkle_nodes keeps the hash of every complete subtree (level, idx covers leaves
-- [idx * 2^level, (idx + 1) * 2^level)), about two rows per leaf, so any root or proof of a tree
-- of n leaves reads O(log n) rows.

CREATE TABLE merkle_nodes (
    level smallint NOT NULL CHECK (level BETWEEN 0 AND 63),
    idx   bigint   NOT NULL CHECK (idx >= 0),
    hash  bytea    NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (level, idx)
);

CREATE TABLE merkle_leaves (
    leaf_index bigint PRIMARY KEY CHECK (leaf_index >= 0),
    partition  int    NOT NULL,
    seq        bigint NOT NULL,
    tenant     text COLLATE "C" NOT NULL,
    pcs_id     text COLLATE "C",
    -- The leaf bytes (events::audit_leaf), served as they were hashed.
    entry      bytea  NOT NULL,
    UNIQUE (partition, seq)
);

-- Proofs by (tenant, pcs_id), first entry first (I7: always scoped by tenant).
CREATE INDEX merkle_leaves_tenant_pcs ON merkle_leaves (tenant, pcs_id, leaf_index);

CREATE TABLE checkpoints (
    tree_size     bigint PRIMARY KEY CHECK (tree_size > 0),
    -- The size this round extended; unique, so two anchorers can never both extend one tree.
    previous_size bigint NOT NULL UNIQUE CHECK (previous_size >= 0 AND previous_size < tree_size),
    root          bytea  NOT NULL CHECK (octet_length(root) = 32),
    -- The C2SP signed note.
    note          text   NOT NULL,
    -- Watermarks after this round: next seq of each partition (same order in both arrays).
    partitions    int[]    NOT NULL,
    next_seqs     bigint[] NOT NULL,
    created_at_ms bigint NOT NULL
);

-- Which checkpoints are written to the object store (kept apart: checkpoints never change).
CREATE TABLE checkpoint_uploads (
    tree_size      bigint PRIMARY KEY REFERENCES checkpoints (tree_size),
    object_key     text   NOT NULL,
    uploaded_at_ms bigint NOT NULL
);

-- Append-only, like audit_log (migration 0002): the database refuses to rewrite history.
CREATE TRIGGER merkle_nodes_append_only
    BEFORE UPDATE OR DELETE ON merkle_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER merkle_nodes_no_truncate
    BEFORE TRUNCATE ON merkle_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER merkle_leaves_append_only
    BEFORE UPDATE OR DELETE ON merkle_leaves
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER merkle_leaves_no_truncate
    BEFORE TRUNCATE ON merkle_leaves
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER checkpoints_append_only
    BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER checkpoints_no_truncate
    BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
