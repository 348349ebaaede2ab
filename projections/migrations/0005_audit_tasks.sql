-- The async audit pipeline: finished tasks (idempotency), the dead-letter queue, and RFC 3161
-- time attestations of checkpoints.

-- A task id here is done: a redelivered task with this id is skipped.
CREATE TABLE audit_tasks_done (
    task_id    text COLLATE "C" PRIMARY KEY,
    kind       text   NOT NULL,
    attempts   int    NOT NULL CHECK (attempts >= 1),
    done_at_ms bigint NOT NULL,
    result     jsonb  NOT NULL
);

-- Tasks that used up their attempts. `flk audit dlq` lists, redrives (sends back to the tasks
-- topic) and drops them; a redriven task that fails again comes back as `dead`.
CREATE TABLE audit_dlq (
    task_id        text COLLATE "C" PRIMARY KEY,
    kind           text   NOT NULL,
    task           jsonb  NOT NULL,
    reason         text   NOT NULL,
    attempts       jsonb  NOT NULL,
    dead_at_ms     bigint NOT NULL,
    state          text   NOT NULL DEFAULT 'dead' CHECK (state IN ('dead', 'redriven', 'dropped')),
    resolved_at_ms bigint
);
CREATE INDEX audit_dlq_state_kind ON audit_dlq (state, kind, dead_at_ms);

-- One time-stamp token per checkpoint: the TSA's whole DER TimeStampResp over SHA-256 of the
-- signed note, as it came (`openssl ts -verify` checks it against the TSA's CA).
CREATE TABLE attestations (
    tree_size      bigint PRIMARY KEY REFERENCES checkpoints (tree_size),
    tsa_url        text   NOT NULL,
    digest         bytea  NOT NULL CHECK (octet_length(digest) = 32),
    response       bytea  NOT NULL,
    attested_at_ms bigint NOT NULL
);
CREATE TRIGGER attestations_append_only
    BEFORE UPDATE OR DELETE ON attestations
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER attestations_no_truncate
    BEFORE TRUNCATE ON attestations
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
