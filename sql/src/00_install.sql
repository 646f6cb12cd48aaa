-- Before anything: is this the database the workers serve, and may this
-- schema hold the extension?

-- The launcher and its workers connect to one database, streamview.database:
-- stream views created anywhere else would never be maintained.  (Without
-- the library preloaded the setting is unknown; loading it then says why.)
DO $$
DECLARE
    served text := pg_catalog.current_setting('streamview.database', true);
BEGIN
    IF served IS NOT NULL AND served <> pg_catalog.current_database() THEN
        RAISE EXCEPTION 'pg_streamview can only be created in database "%"', served
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Its background workers run in the database that streamview.database names, not in "%s".',
                                  pg_catalog.current_database()),
                  HINT = format('Create it in database "%s", or set streamview.database = ''%s'' in postgresql.conf and restart the server.',
                                served, pg_catalog.current_database());
    END IF;
END $$;


-- The internal functions have a schema of their own, so that \df
-- streamview.* lists the API.  One that exists already (someone else's, who
-- could put code in it) is refused.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = 'streamview_internal') THEN
        RAISE EXCEPTION 'schema "streamview_internal" already exists'
            USING ERRCODE = 'duplicate_schema',
                  DETAIL = 'pg_streamview keeps its internal functions there; they run as the extension owner.',
                  HINT = 'Drop or rename that schema, then install the extension again.';
    END IF;
END $$;

CREATE SCHEMA streamview_internal;

COMMENT ON SCHEMA streamview_internal IS 'pg_streamview''s internal functions: not an API, closed to PUBLIC';

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
