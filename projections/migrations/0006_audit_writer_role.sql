-- WORM by privileges, besides the triggers: the role `flk_audit_writer` (cluster-wide, no login)
-- may read and append the audit history of this schema but never change it: no UPDATE, DELETE or
-- TRUNCATE on audit_log, merkle_leaves, merkle_nodes, checkpoints and attestations, and, not
-- being the owner, it cannot switch the triggers off either. Serving processes should connect as
-- a login role that is a member of it (docs/runbooks/audit.md); the owner keeps the rights a
-- migration or a rebuild needs.

DO $$
BEGIN
    -- Only when missing, so a login without CREATEROLE can migrate once the role exists.
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'flk_audit_writer') THEN
        BEGIN
            CREATE ROLE flk_audit_writer NOLOGIN;
        EXCEPTION
            -- Another schema's migration created it first (they run concurrently in tests).
            WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO flk_audit_writer', current_schema());
END
$$;

-- History: read and append only.
GRANT SELECT, INSERT ON audit_log, merkle_leaves, merkle_nodes, checkpoints, attestations
    TO flk_audit_writer;
-- Working state: the projections and the pipeline's bookkeeping change as they should.
GRANT SELECT, INSERT, UPDATE, DELETE ON projection_offsets, dedup, checkpoint_uploads,
    audit_tasks_done, audit_dlq TO flk_audit_writer;
GRANT SELECT ON schema_migrations TO flk_audit_writer;
