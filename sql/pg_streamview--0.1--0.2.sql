-- pg_streamview 0.1 → 0.2.
--
-- Released scripts are never edited: every change that 0.2 makes to the
-- catalog and to the functions of 0.1 is made here, in the same words as in
-- pg_streamview--0.2.sql, so that an updated install and a fresh one are the
-- same (t/005_upgrade.pl compares them object by object).

\echo Use "ALTER EXTENSION pg_streamview UPDATE TO '0.2'" to load this file. \quit

-- The extension's functions run as its owner and call each other by their
-- schema's name: whoever may rename that schema or create in it could put
-- their own code in their place.  A schema that existed before, owned by a
-- role that is not a superuser, or that others may create in, is refused.
DO $$
DECLARE
    nsp pg_catalog.pg_namespace;
BEGIN
    SELECT * INTO nsp FROM pg_catalog.pg_namespace n WHERE n.nspname = 'streamview';
    IF nsp.nspowner <> (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
       AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = nsp.nspowner) THEN
        RAISE EXCEPTION 'schema "streamview" is owned by role "%"', pg_catalog.pg_get_userbyid(nsp.nspowner)
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The extension''s functions run as the extension owner; the owner of their schema could replace them.',
                  HINT = 'Drop or rename that schema, or make the installing role its owner, then install the extension again.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.aclexplode(nsp.nspacl) a
                WHERE a.privilege_type = 'CREATE' AND a.grantee <> nsp.nspowner
                  AND NOT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = a.grantee), false)) THEN
        RAISE EXCEPTION 'other roles may create objects in schema "streamview"'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Objects they create there could stand in for the extension''s own.',
                  HINT = 'REVOKE CREATE ON SCHEMA streamview FROM those roles (and PUBLIC), then install the extension again.';
    END IF;
END $$;

------------------------------------------------------------------------------
-- Row level security without a SECURITY DEFINER function (_may_read_source
-- answered "may role X read source Y" to anyone); worker errors go with
-- their source; validations are readable by the view's owner only.
------------------------------------------------------------------------------
ALTER TABLE streamview.worker_errors
    ADD COLUMN source_id int REFERENCES streamview.sources ON DELETE CASCADE;
-- rows recorded before the source of that name was created were another
-- source's, dropped since: they go
UPDATE streamview.worker_errors e SET source_id = s.source_id
  FROM streamview.sources s
 WHERE s.name = e.source_name AND e.occurred_at >= s.created_at;
DELETE FROM streamview.worker_errors WHERE source_id IS NULL;

DROP POLICY owner_reads ON streamview.dead_letters;
DROP POLICY owner_reads ON streamview.worker_errors;
DROP FUNCTION streamview._may_read_source(text, name);
GRANT SELECT (source_id, name, owner) ON streamview.sources TO PUBLIC;
CREATE POLICY owner_reads ON streamview.dead_letters FOR SELECT
    USING (EXISTS (SELECT 1 FROM streamview.sources s
                    WHERE s.name = dead_letters.source_name AND pg_catalog.pg_has_role(s.owner, 'USAGE')));
CREATE POLICY owner_reads ON streamview.worker_errors FOR SELECT
    USING (EXISTS (SELECT 1 FROM streamview.sources s
                    WHERE s.source_id = worker_errors.source_id AND pg_catalog.pg_has_role(s.owner, 'USAGE')));
ALTER TABLE streamview.validations ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_reads ON streamview.validations FOR SELECT
    USING (EXISTS (SELECT 1 FROM streamview.views v
                    WHERE v.name = validations.view_name AND pg_catalog.pg_has_role(v.owner, 'USAGE')));
