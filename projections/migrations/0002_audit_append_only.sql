-- I8: the audit log is append-only. The database itself refuses UPDATE, DELETE and TRUNCATE, so
-- neither a bug nor a stray psql session can rewrite history. (A superuser can still disable the
-- trigger; the hash chain and signed checkpoints catch that.)

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (I8): % refused', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'audit entries are never changed; append a new entry instead';
END;
$$;

CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
