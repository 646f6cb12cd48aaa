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
