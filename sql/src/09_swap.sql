-- Swap, rollback, drop_version.

-- Point the view at version target; runs in the caller's transaction.
CREATE FUNCTION streamview_internal._do_swap(caller regrole, v streamview.views, target streamview.versions,
                                    forced bool, is_rollback bool)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    live   streamview.versions;
    failed bigint;
    acl    aclitem[];
    g      record;
    rel    regclass;
    note   text;
    vname  text := format('%I.%I', v.schema_name, v.name);
BEGIN
    IF target.state = 'live' THEN
        RAISE EXCEPTION 'version % of stream view "%" is already live', target.version, v.name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    ELSIF target.state = 'replaying' THEN
        RAISE EXCEPTION 'version % of stream view "%" is still replaying', target.version, v.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Wait for it with streamview.wait_for(), then validate it.';
    ELSIF target.state = 'failed' THEN
        RAISE EXCEPTION 'version % of stream view "%" has failed', target.version, v.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = coalesce(target.error, ''),
                  HINT = 'Drop it with streamview.drop_version() and rebuild.';
    ELSIF target.state = 'retired' THEN
        RAISE EXCEPTION 'version % of stream view "%" was dropped', target.version, v.name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF NOT forced THEN
        SELECT count(*) FILTER (WHERE NOT x.passed) INTO failed
          FROM streamview.validations x
         WHERE x.view_name = v.name AND x.version = target.version
           AND x.run = (SELECT max(y.run) FROM streamview.validations y
                         WHERE y.view_name = v.name AND y.version = target.version);
        IF failed IS NULL OR failed > 0 THEN
            RAISE EXCEPTION 'version % of stream view "%" has not passed validation', target.version, v.name
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = CASE WHEN failed IS NULL THEN 'It was never validated.'
                                    ELSE format('%s checks of its latest validation failed.', failed) END,
                      HINT = format('Run streamview.validate(%L, %s), or pass force => true.', v.name, target.version);
        END IF;
    END IF;

    -- Readers see the old rows or the new rows: the view's definition changes
    -- under an exclusive lock, in this transaction.  It is the view that
    -- create_view made (by OID), whatever now has its name.
    PERFORM streamview_internal._check_may_create(v, 'A swap');
    rel := streamview_internal._view_relation(v);
    note := obj_description(rel, 'pg_class');
    IF rel IS NULL THEN
        -- dropped by hand: made again, for the view's owner, where it was
        IF to_regclass(vname) IS NOT NULL THEN
            RAISE EXCEPTION 'relation % is not the view of stream view "%"', vname, v.name
                USING ERRCODE = 'duplicate_table',
                      DETAIL = 'The view that create_view made was dropped, and another relation has its name.',
                      HINT = format('Drop or rename %s, or drop the stream view with streamview.drop_view().', vname);
        END IF;
        PERFORM streamview_internal._exclusive(format('CREATE VIEW %s AS %s', vname, target.view_sql),
                                      format('stream view "%s"', v.name));
        EXECUTE format('ALTER VIEW %s OWNER TO %s', vname, v.owner);
        rel := vname::regclass;
    ELSE
        vname := rel::text;
        SELECT c.relacl INTO acl FROM pg_class c WHERE c.oid = rel;
        BEGIN
            PERFORM streamview_internal._exclusive(format('CREATE OR REPLACE VIEW %s AS %s', vname, target.view_sql),
                                          format('stream view "%s"', v.name));
        EXCEPTION WHEN invalid_table_definition OR datatype_mismatch OR feature_not_supported THEN
            -- The column list changed: replace the view (grants are carried over).
            BEGIN
                PERFORM streamview_internal._exclusive(format('DROP VIEW %s', vname), format('stream view "%s"', v.name));
            EXCEPTION WHEN dependent_objects_still_exist THEN
                RAISE EXCEPTION 'cannot swap stream view "%" to version %: other objects depend on its columns',
                                v.name, target.version
                    USING ERRCODE = 'dependent_objects_still_exist',
                          HINT = 'The new version has other columns; drop or change the dependent views first.';
            END;
            EXECUTE format('CREATE VIEW %s AS %s', vname, target.view_sql);
            EXECUTE format('ALTER VIEW %s OWNER TO %s', vname, v.owner);
            FOR g IN SELECT x.grantee, x.privilege_type, x.is_grantable FROM aclexplode(acl) x
                      WHERE x.grantee <> v.owner::oid LOOP
                EXECUTE format('GRANT %s ON %s TO %s%s', g.privilege_type, vname,
                               CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END,
                               CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
            END LOOP;
            rel := vname::regclass;
        END;
    END IF;
    UPDATE streamview.views w SET relid = rel WHERE w.view_id = v.view_id;
    -- A comment the DBA wrote stays; the extension's own names the version.
    IF note IS NULL OR note ~ '^stream view (over source .* \(pg_streamview\)|\(pg_streamview\), version \d+)$' THEN
        note := format('stream view (pg_streamview), version %s', target.version);
    END IF;
    EXECUTE format('COMMENT ON VIEW %s IS %L', vname, note);

    live := streamview_internal._live_version(v.view_id);
    PERFORM streamview_internal._set_state(live.version_id, '{live}', 'caught_up');
    PERFORM streamview_internal._set_state(target.version_id, '{caught_up}', 'live', by => caller::name);
    INSERT INTO streamview.swaps (view_name, from_version, to_version, forced, is_rollback, swapped_by)
    VALUES (v.name, live.version, target.version, forced, is_rollback, caller::name);
    PERFORM streamview_internal._notify_launcher();
END $$;

CREATE FUNCTION streamview.swap(view_name text, version int, force bool DEFAULT false)
RETURNS int
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.swap(text, int, bool) IS
'makes a validated version the one the view reads, atomically; the old version stays maintained; returns the old version';

CREATE FUNCTION streamview_internal._swap_impl(caller regrole, view_name text, version int, force bool DEFAULT false)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v    streamview.views;
    prev int;
BEGIN
    v := streamview_internal._lock_view(caller, view_name);
    prev := (streamview_internal._live_version(v.view_id)).version;
    PERFORM streamview_internal._do_swap(caller, v, streamview_internal._get_version(v, version), force, false);
    RETURN prev;   -- the version that was live: what rollback() goes back to
END $$;

CREATE FUNCTION streamview.rollback(view_name text)
RETURNS int
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.rollback(text) IS
'swaps the view back to the version it read before the last swap; returns that version';

CREATE FUNCTION streamview_internal._rollback_impl(caller regrole, view_name text)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v    streamview.views;
    prev int;
BEGIN
    v := streamview_internal._lock_view(caller, view_name);
    SELECT s.from_version INTO prev FROM streamview.swaps s
     WHERE s.view_name = v.name ORDER BY s.swap_id DESC LIMIT 1;
    IF prev IS NULL THEN
        RAISE EXCEPTION 'stream view "%" has no previous version to roll back to', view_name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'It has never been swapped.';
    END IF;
    PERFORM streamview_internal._do_swap(caller, v, streamview_internal._get_version(v, prev), true, true);
    RETURN prev;
END $$;

CREATE FUNCTION streamview.drop_version(view_name text, version int)
RETURNS text
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.drop_version(text, int) IS
'retires a version that is not live: stops maintaining it and drops its table; its history is kept; returns the table dropped';

CREATE FUNCTION streamview_internal._drop_version_impl(caller regrole, view_name text, version int)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v     streamview.views;
    r     streamview.versions;
    dropped_table text;
BEGIN
    v := streamview_internal._lock_view(caller, view_name);
    r := streamview_internal._get_version(v, version);
    dropped_table := r.table_name::text;
    IF r.state = 'live' THEN
        RAISE EXCEPTION 'cannot drop version % of stream view "%" because it is live', version, view_name
            USING ERRCODE = 'object_in_use',
                  HINT = 'Swap another version in first with streamview.swap() or streamview.rollback(), or drop the whole view with streamview.drop_view().';
    ELSIF r.state = 'retired' THEN
        RAISE EXCEPTION 'version % of stream view "%" was already dropped', version, view_name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF r.table_name IS NOT NULL THEN
        PERFORM streamview_internal._exclusive(format('DROP TABLE IF EXISTS %s', r.table_name),
                                      format('table %s of stream view "%s"', r.table_name, v.name));
    END IF;
    PERFORM streamview_internal._set_state(r.version_id, '{replaying,caught_up,failed}', 'retired', by => caller::name);
    UPDATE streamview.versions x SET table_name = NULL WHERE x.version_id = r.version_id;
    DELETE FROM streamview.offsets o WHERE o.version_id = r.version_id;
    DELETE FROM streamview.seen_ids s WHERE s.version_id = r.version_id;
    DELETE FROM streamview.version_stats st WHERE st.version_id = r.version_id;
    PERFORM streamview_internal._notify_launcher();
    RETURN dropped_table;   -- the table dropped with it
END $$;
