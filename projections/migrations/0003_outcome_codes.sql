-- The stored decision keeps its outcome class, not the HTTP status it was answered with (the
-- gateway alone maps classes to statuses). Converts rows written by earlier builds:
--   200 -> accepted; 202 -> escalated or rejected by the outcome JSON's `accepted`;
--   409 (audit only, dedup_result = 'conflict') -> the class of the stored first outcome;
--   400 -> malformed, 401 -> signature_invalid, 403 -> tenant_refused.
-- The hash formats (audit canonical bytes v1, state hash v1) still encode the old number; the
-- code derives it back from these columns in projections/src/frozen_status.rs, so every stored
-- chain and state hash stays the same.

ALTER TABLE dedup ADD COLUMN outcome_code text COLLATE "C";
UPDATE dedup SET outcome_code = CASE
    WHEN status = 200 THEN 'accepted'
    WHEN status = 202 AND jsonb_typeof(outcome -> 'accepted') = 'boolean' THEN
        CASE WHEN (outcome ->> 'accepted')::boolean THEN 'escalated' ELSE 'rejected' END
END;

ALTER TABLE audit_log ADD COLUMN outcome_code text COLLATE "C";
-- I8 refuses UPDATE on the audit log; this one rewrite (a column's encoding, not its meaning, and
-- outside the hashed bytes) runs with the trigger off, inside the migration's transaction.
ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete;
UPDATE audit_log SET outcome_code = CASE
    WHEN status = 400 THEN 'malformed'
    WHEN status = 401 THEN 'signature_invalid'
    WHEN status = 403 THEN 'tenant_refused'
    WHEN status = 200 THEN 'accepted'
    WHEN status = 202 AND jsonb_typeof(outcome -> 'accepted') = 'boolean' THEN
        CASE WHEN (outcome ->> 'accepted')::boolean THEN 'escalated' ELSE 'rejected' END
    WHEN status = 409 AND dedup_result = 'conflict'
        AND jsonb_typeof(outcome -> 'accepted') = 'boolean'
        AND jsonb_typeof(outcome -> 'escalated') = 'boolean' THEN
        CASE
            WHEN (outcome ->> 'accepted')::boolean AND NOT (outcome ->> 'escalated')::boolean
                THEN 'accepted'
            WHEN (outcome ->> 'accepted')::boolean THEN 'escalated'
            ELSE 'rejected'
        END
END;
ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete;

-- A row the rules above cannot convert is data this code never wrote: stop, change nothing.
DO $$
DECLARE
    unconverted bigint;
BEGIN
    SELECT (SELECT count(*) FROM dedup WHERE outcome_code IS NULL)
         + (SELECT count(*) FROM audit_log WHERE outcome_code IS NULL)
      INTO unconverted;
    IF unconverted > 0 THEN
        RAISE EXCEPTION '% dedup or audit rows have a status this build cannot convert', unconverted
            USING ERRCODE = 'data_exception';
    END IF;
END;
$$;

ALTER TABLE dedup ALTER COLUMN outcome_code SET NOT NULL;
ALTER TABLE dedup ADD CONSTRAINT dedup_outcome_code_verified
    CHECK (outcome_code IN ('accepted', 'escalated', 'rejected'));
ALTER TABLE dedup DROP COLUMN status;

ALTER TABLE audit_log ALTER COLUMN outcome_code SET NOT NULL;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_outcome_code_known
    CHECK (outcome_code IN ('accepted', 'escalated', 'rejected', 'malformed', 'tenant_refused',
                            'signature_invalid'));
ALTER TABLE audit_log DROP COLUMN status;
