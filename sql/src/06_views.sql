-- Stream views: create_view, drop_view, and the making of a version.

-- A version's table goes with the extension (guard.c): DROP EXTENSION
-- refuses while it exists, and CASCADE drops it.  It also depends on the
-- extensions whose types its columns hold (hll, tdigest), so that DROP
-- EXTENSION hll refuses too.
CREATE FUNCTION streamview_internal._depend_on_extension(tbl regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'streamview_depend_on_extension'
LANGUAGE C VOLATILE STRICT;

-- Creates version `ver` of view `vid`: its table, its row in streamview.versions.
-- Runs as the extension owner; the table is handed to the view's owner.
-- _version_sql (codegen.c) makes every statement; this only runs and records them.
CREATE FUNCTION streamview_internal._create_version(caller regrole, vid int, ver int, query text,
                                           state streamview.version_state)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v        streamview.views;
    src      text;
    tbl      text;
    vrow_id  int := nextval(pg_get_serial_sequence('streamview.versions', 'version_id'));
    gen      record;
BEGIN
    SELECT * INTO v FROM streamview.views w WHERE w.view_id = vid;
    SELECT s.name INTO src FROM streamview.sources s WHERE s.source_id = v.source_id;
    tbl := format('%I.%I', v.schema_name, v.name || '_v' || ver);
    SELECT * INTO gen FROM streamview_internal._version_sql(caller, streamview_internal._caller_search_path(), src, query,
                                                   tbl, vrow_id, v.allowed_lateness);
    IF to_regclass(tbl) IS NOT NULL THEN
        RAISE EXCEPTION 'relation % already exists', tbl
            USING ERRCODE = 'duplicate_table',
                  HINT = 'Each version of a stream view keeps its rows in a table named <view>_v<version>.';
    END IF;
    EXECUTE gen.create_table;
    PERFORM streamview_internal._depend_on_extension(tbl::regclass);
    EXECUTE format('ALTER TABLE %s OWNER TO %s', tbl, v.owner);  -- regrole text is quoted
    EXECUTE gen.create_index;
    EXECUTE format('COMMENT ON TABLE %s IS %L', tbl,
                   format('rows of stream view %s, version %s (maintained by pg_streamview)', v.name, ver));

    INSERT INTO streamview.versions (version_id, view_id, view_name, version, state, query, definition,
                                     definition_hash, table_name, window_kind, window_size,
                                     window_slide, window_time_zone, window_origin, batch_sql, view_sql,
                                     extension_version, created_by, source_definition)
    VALUES (vrow_id, vid, v.name, ver, state, query, gen.definition,
            md5(jsonb_build_object('d', gen.definition, 'lateness', v.allowed_lateness)::text),
            tbl::regclass, gen.definition->>'window_kind', (gen.definition->>'window_size')::interval,
            (gen.definition->>'window_slide')::interval, gen.definition->>'window_time_zone',
            (gen.definition->>'window_origin')::timestamp, gen.batch_sql, gen.view_sql,
            (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'pg_streamview'), caller::name,
            streamview_internal._source_definition(v.source_id));
    RETURN vrow_id;
END $$;

CREATE FUNCTION streamview.create_view(
    name             text,
    query            text,
    allowed_lateness text DEFAULT '0 seconds')
RETURNS regclass
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.create_view(text, text, text) IS
'creates a stream view: a windowed aggregate over a source, kept up to date from the topic; returns the view';

CREATE FUNCTION streamview_internal._create_view_impl(
    caller           regrole,
    name             text,
    query            text,
    allowed_lateness text DEFAULT '0 seconds')
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src       streamview.sources;
    vname     text;
    vschema   name;
    vid       int;
    vrow_id   int;
    lateness  interval;
    m         text[];
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'view name must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass the name of the view to create, optionally with its schema: analytics.revenue.';
    END IF;
    m := regexp_match(name, '^(?:([A-Za-z_][A-Za-z0-9_]*)\.)?([A-Za-z_][A-Za-z0-9_]*)$');
    IF m IS NULL THEN
        RAISE EXCEPTION 'invalid view name "%"', name
            USING ERRCODE = 'invalid_name',
                  HINT = 'Use letters, digits and underscores, optionally qualified with a schema: analytics.revenue.';
    END IF;
    vname := m[2];
    vschema := coalesce(m[1], streamview_internal._caller_schema());
    IF NOT has_schema_privilege(caller, vschema, 'CREATE') THEN
        RAISE EXCEPTION 'permission denied for schema %', vschema
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'A stream view creates its view and tables in that schema.',
                  HINT = 'Qualify the view name with a schema you may create in: schema.view.';
    END IF;
    IF EXISTS (SELECT 1 FROM streamview.views w WHERE w.name = vname) THEN
        RAISE EXCEPTION 'stream view "%" already exists', vname
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Use streamview.rebuild() to change its query, or drop it with streamview.drop_view().';
    END IF;
    IF to_regclass(format('%I.%I', vschema, vname)) IS NOT NULL THEN
        RAISE EXCEPTION 'relation "%.%" already exists', vschema, vname
            USING ERRCODE = 'duplicate_table';
    END IF;
    PERFORM streamview_internal._require(query, 'query');
    PERFORM streamview_internal._require(allowed_lateness, 'allowed_lateness');
    lateness := streamview_internal._interval_arg(allowed_lateness, 'allowed_lateness', true);

    SELECT s.* INTO src FROM streamview.sources s
     WHERE s.name = streamview_internal._query_source(query);
    PERFORM streamview_internal._check_usage(caller, src);

    INSERT INTO streamview.views (name, schema_name, source_id, owner, allowed_lateness)
    VALUES (vname, vschema, src.source_id, caller, lateness)
    RETURNING view_id INTO vid;
    vrow_id := streamview_internal._create_version(caller, vid, 1, query, 'live');
    EXECUTE (SELECT format('CREATE VIEW %I.%I AS %s', vschema, vname, ver.view_sql)
               FROM streamview.versions ver WHERE ver.version_id = vrow_id);
    EXECUTE format('ALTER VIEW %I.%I OWNER TO %s', vschema, vname, caller);
    EXECUTE format('COMMENT ON VIEW %I.%I IS %L', vschema, vname,
                   'stream view over source ' || src.name || ' (pg_streamview)');
    UPDATE streamview.views w SET relid = format('%I.%I', vschema, vname)::regclass WHERE w.view_id = vid;
    PERFORM streamview_internal._notify_launcher();
    RETURN format('%I.%I', vschema, vname)::regclass;   -- where it went
END $$;

CREATE FUNCTION streamview.set_retention(view_name text, drop_after interval)
RETURNS interval
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.set_retention(text, interval) IS
'keeps only the windows that end less than drop_after before the watermark (NULL: all); returns the setting';

-- Retention of a view's windows, like a retention policy on a continuous
-- aggregate: the launcher's housekeeping (_apply_retention) deletes, from
-- every version's table, the windows that end more than drop_after before
-- that version's watermark.  drop_after must be at least allowed_lateness:
-- every event of a deleted window is then too late, so no window comes
-- back half-counted.
CREATE FUNCTION streamview_internal._set_retention_impl(caller regrole, view_name text, drop_after interval)
RETURNS interval
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v streamview.views;
BEGIN
    PERFORM streamview_internal._require(view_name, 'view_name');
    v := streamview_internal._lock_view(caller, view_name);
    IF drop_after IS NOT NULL AND (drop_after <= interval '0' OR drop_after < v.allowed_lateness) THEN
        RAISE EXCEPTION 'drop_after must be at least the view''s allowed_lateness'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Stream view "%s" accepts events up to %s late; %s was given.',
                                  v.name, v.allowed_lateness, drop_after),
                  HINT = 'A window deleted while it can still change would come back with only its late events.';
    END IF;
    UPDATE streamview.views w SET retention = drop_after WHERE w.view_id = v.view_id;
    RETURN drop_after;
END $$;

CREATE FUNCTION streamview.drop_view(name text)
RETURNS int
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.drop_view(text) IS
'drops a stream view, all its versions and their tables; returns how many tables were dropped';

CREATE FUNCTION streamview_internal._drop_view_impl(caller regrole, name text)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v   streamview.views;
    ver record;
    rel regclass;
    n   int := 0;
BEGIN
    SELECT * INTO v FROM streamview.views w WHERE w.name = _drop_view_impl.name FOR UPDATE;
    IF v.view_id IS NULL THEN
        RAISE EXCEPTION 'stream view "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT DISTINCT view_name FROM streamview.status.';
    END IF;
    PERFORM streamview_internal._check_owner(caller, v.owner, 'stream view', name);
    -- the view create_view made, if it is still there: not whatever
    -- relation has its name now, which may be another role's
    rel := streamview_internal._view_relation(v);
    IF rel IS NOT NULL THEN
        PERFORM streamview_internal._exclusive(format('DROP VIEW %s', rel), format('stream view "%s"', v.name));
    END IF;
    FOR ver IN SELECT x.table_name FROM streamview.versions x WHERE x.view_id = v.view_id LOOP
        IF ver.table_name IS NOT NULL THEN
            PERFORM streamview_internal._exclusive(format('DROP TABLE IF EXISTS %s', ver.table_name),
                                          format('table %s of stream view "%s"', ver.table_name, v.name));
            n := n + 1;
        END IF;
    END LOOP;
    -- its snapshots go with it (their tables are not the view owner's)
    PERFORM streamview_internal._drop_snapshot(s.snapshot_id)
       FROM streamview.snapshots s WHERE s.view_id = v.view_id;
    DELETE FROM streamview.dead_letters d WHERE d.view_name = v.name;
    DELETE FROM streamview.validations x WHERE x.view_name = v.name;
    DELETE FROM streamview.swaps x WHERE x.view_name = v.name;
    DELETE FROM streamview.views w WHERE w.view_id = v.view_id;
    PERFORM streamview_internal._notify_launcher();
    RETURN n;   -- the versions' tables dropped
END $$;

-- A plain DROP of a stream view, or of a table a version still uses, is
-- refused with a hint (guard.c); drop_view and drop_version do it with the
-- catalog.  (A superuser who must can ALTER EVENT TRIGGER
-- streamview_guard_drop DISABLE.)
CREATE FUNCTION streamview_internal._guard_drop()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'streamview_guard_drop'
LANGUAGE C;

CREATE EVENT TRIGGER streamview_guard_drop ON sql_drop
    EXECUTE FUNCTION streamview_internal._guard_drop();

-- So is renaming or moving a stream view, and renaming, dropping or
-- retyping a column of a table a version uses (guard.c).
CREATE FUNCTION streamview_internal._guard_alter()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'streamview_guard_alter'
LANGUAGE C;

CREATE EVENT TRIGGER streamview_guard_alter ON ddl_command_start
    WHEN TAG IN ('ALTER TABLE', 'ALTER VIEW')
    EXECUTE FUNCTION streamview_internal._guard_alter();
