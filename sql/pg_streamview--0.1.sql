-- pg_streamview 0.1: materialized stream views over Kafka topics.
--
-- Catalog tables live in schema streamview (the extension's schema, created
-- by CREATE EXTENSION).  Data tables and the user-facing views live in the
-- schema the user chose, owned by the user.  Every object referenced here is
-- schema-qualified, and every function pins its search_path, so that nothing
-- a user puts on their search_path can change what this script does.

\echo Use "CREATE EXTENSION pg_streamview" to load this file. \quit

------------------------------------------------------------------------------
-- Catalog
------------------------------------------------------------------------------

-- A source: one Kafka topic, and how to read its JSON messages.
-- options may hold broker credentials (SASL passwords), so this table is not
-- readable by PUBLIC; streamview.source_list shows it without them.
CREATE TABLE streamview.sources (
    source_id            serial PRIMARY KEY,
    name                 text NOT NULL UNIQUE,
    brokers              text NOT NULL,
    topic                text NOT NULL,
    event_time           text NOT NULL,
    event_id             text,
    max_out_of_orderness interval NOT NULL,
    idle_timeout         interval,
    options              jsonb NOT NULL DEFAULT '{}',
    owner                regrole NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_error           text,
    last_error_at        timestamptz
);

-- The typed columns of a source, in declaration order.
CREATE TABLE streamview.source_columns (
    source_id     int NOT NULL REFERENCES streamview.sources ON DELETE CASCADE,
    attnum        int NOT NULL,
    name          text NOT NULL,
    type          regtype NOT NULL,
    path          text[] NOT NULL,
    default_value text,
    required      bool NOT NULL DEFAULT false,
    PRIMARY KEY (source_id, attnum),
    UNIQUE (source_id, name)
);

CREATE TABLE streamview.views (
    view_id          serial PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    schema_name      name NOT NULL,
    source_id        int NOT NULL REFERENCES streamview.sources,
    owner            regrole NOT NULL,
    allowed_lateness interval NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- One row per version of a view.  Exactly one version of a view is 'live'.
CREATE TABLE streamview.versions (
    version_id        serial UNIQUE,
    view_id           int NOT NULL REFERENCES streamview.views ON DELETE CASCADE,
    view_name         text NOT NULL,
    version           int NOT NULL,
    state             text NOT NULL
                      CHECK (state IN ('replaying', 'caught_up', 'live', 'retired', 'failed')),
    query             text NOT NULL,
    definition        jsonb NOT NULL,
    definition_hash   text NOT NULL,
    table_name        regclass,
    window_kind       text NOT NULL CHECK (window_kind IN ('tumble', 'hop')),
    window_size       interval NOT NULL,
    window_slide      interval NOT NULL,
    batch_sql         text NOT NULL,
    view_sql          text NOT NULL,
    extension_version text NOT NULL,
    schema_version    int NOT NULL DEFAULT 1,
    start_offsets     jsonb,
    watermark         timestamptz,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by        name NOT NULL,
    validated_at      timestamptz,
    swapped_at        timestamptz,
    swapped_by        name,
    retired_at        timestamptz,
    failed_at         timestamptz,
    PRIMARY KEY (view_id, version)
);

-- Per version and partition: where the version is in the log, the event-time
-- high mark of the partition, and the ledger
--   consumed = applied + duplicates + too_late + dead_lettered.
-- Written in the same transaction as the upserts it accounts for.
CREATE TABLE streamview.offsets (
    version_id      int NOT NULL REFERENCES streamview.versions (version_id) ON DELETE CASCADE,
    partition       int NOT NULL,
    next_offset     bigint NOT NULL,
    max_event_time  timestamptz,
    consumed        bigint NOT NULL DEFAULT 0,
    applied         bigint NOT NULL DEFAULT 0,
    duplicates      bigint NOT NULL DEFAULT 0,
    too_late        bigint NOT NULL DEFAULT 0,
    dead_lettered   bigint NOT NULL DEFAULT 0,
    log_end         bigint,
    last_message_at timestamptz,
    updated_at      timestamptz,
    PRIMARY KEY (version_id, partition)
);

-- event_ids applied by a version, remembered while an event carrying the same
-- id could still be applied (see docs/architecture.md, "Deduplication").
CREATE TABLE streamview.seen_ids (
    version_id int NOT NULL REFERENCES streamview.versions (version_id) ON DELETE CASCADE,
    event_id   text NOT NULL,
    partition  int NOT NULL,
    event_time timestamptz NOT NULL,
    PRIMARY KEY (version_id, event_id)
);
CREATE INDEX seen_ids_expiry ON streamview.seen_ids (version_id, partition, event_time);

-- Messages that were consumed but not applied, with why.  Unreadable messages
-- are recorded once per source (view_name NULL); too-late ones per version.
CREATE TABLE streamview.dead_letters (
    dead_letter_id bigserial PRIMARY KEY,
    source_name    text NOT NULL,
    view_name      text,
    version        int,
    partition      int NOT NULL,
    "offset"       bigint NOT NULL,
    reason         text NOT NULL
                   CHECK (reason IN ('invalid_json', 'missing_field', 'invalid_value',
                                     'too_late', 'query_error')),
    key            bytea,
    payload        bytea,
    error          text,
    event_time     timestamptz,
    recorded_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE NULLS NOT DISTINCT (source_name, partition, "offset", view_name, version)
);

-- Why workers stopped, newest last.  Kept for the DBA; never read by the code.
CREATE TABLE streamview.worker_errors (
    worker_error_id bigserial PRIMARY KEY,
    source_name     text NOT NULL,
    message         text NOT NULL,
    detail          text,
    occurred_at     timestamptz NOT NULL DEFAULT pg_catalog.now()
);

SELECT pg_catalog.pg_extension_config_dump('streamview.sources', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.source_columns', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.views', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.versions', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.offsets', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.seen_ids', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.worker_errors', '');

-- Catalog tables are written by the extension's functions (as the extension
-- owner), never directly by users.
REVOKE ALL ON ALL TABLES IN SCHEMA streamview FROM PUBLIC;
-- Views read the watermark of their version from here; the queries are no secret.
GRANT SELECT ON streamview.versions, streamview.views TO PUBLIC;

------------------------------------------------------------------------------
-- Windows
------------------------------------------------------------------------------

CREATE FUNCTION streamview.tumble(ts timestamptz, size interval)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'streamview_tumble'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION streamview.tumble(timestamptz, interval) IS
'start of the tumbling window of the given size that contains ts (windows aligned to the Unix epoch, UTC)';

CREATE FUNCTION streamview.hop(ts timestamptz, size interval, slide interval)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'streamview_hop'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION streamview.hop(timestamptz, interval, interval) IS
'hopping window marker for GROUP BY in a stream view; called directly, the start of the latest window that contains ts';

------------------------------------------------------------------------------
-- Internals called by the SQL API
------------------------------------------------------------------------------

-- Parse-analyses a stream view query against the source's columns and returns
-- its compiled form (window, keys, aggregates, per-batch SQL fragments).
CREATE FUNCTION streamview._compile(source_name text, query text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'streamview_compile'
LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION streamview._compile(text, text) FROM PUBLIC;

-- Wakes the launcher when the calling transaction commits.
CREATE FUNCTION streamview._notify_launcher()
RETURNS void
AS 'MODULE_PATHNAME', 'streamview_notify_launcher'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION streamview._notify_launcher() FROM PUBLIC;

CREATE FUNCTION streamview._supported_types()
RETURNS regtype[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ARRAY['text', 'varchar', 'bigint', 'integer', 'smallint', 'numeric',
                   'double precision', 'real', 'boolean', 'timestamptz', 'timestamp',
                   'date', 'uuid']::regtype[] $$;

CREATE FUNCTION streamview._interval_arg(value text, what text, allow_zero bool DEFAULT false)
RETURNS interval
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result interval;
BEGIN
    BEGIN
        result := value::interval;
    EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
        RAISE EXCEPTION 'invalid interval for %: "%"', what, value
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Write an interval such as ''5 seconds'' or ''1 minute''.';
    END;
    IF result < interval '0' OR (result = interval '0' AND NOT allow_zero) THEN
        RAISE EXCEPTION '% must be positive', what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given was %s.', value);
    END IF;
    IF extract(month FROM result) <> 0 OR extract(year FROM result) <> 0 THEN
        RAISE EXCEPTION '% must not contain months or years', what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Months and years have no fixed length.',
                  HINT = 'Use days instead, such as ''30 days''.';
    END IF;
    RETURN result;
END $$;

------------------------------------------------------------------------------
-- Sources
------------------------------------------------------------------------------

CREATE FUNCTION streamview._create_source_impl(
    caller               regrole,
    name                 text,
    brokers              text,
    topic                text,
    columns              jsonb,
    event_time           text,
    event_id             text DEFAULT NULL,
    max_out_of_orderness text DEFAULT '0 seconds',
    options              jsonb DEFAULT '{}',
    idle_timeout         text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid      int;
    col      record;
    spec     jsonb;
    ctype    regtype;
    cpath    text[];
    cdefault text;
    n        int := 0;
    ooo      interval;
    idle     interval;
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z_][A-Za-z0-9_]*$' THEN
        RAISE EXCEPTION 'invalid source name "%"', name
            USING ERRCODE = 'invalid_name',
                  HINT = 'A source name starts with a letter or underscore and has only letters, digits and underscores.';
    END IF;
    IF EXISTS (SELECT 1 FROM streamview.sources s WHERE s.name = _create_source_impl.name) THEN
        RAISE EXCEPTION 'source "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Drop it first with streamview.drop_source(), or choose another name.';
    END IF;
    IF coalesce(brokers, '') = '' OR coalesce(topic, '') = '' THEN
        RAISE EXCEPTION 'brokers and topic must be given'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass brokers => ''host:port'' and topic => ''name''.';
    END IF;
    IF columns IS NULL OR jsonb_typeof(columns) <> 'object' OR columns = '{}' THEN
        RAISE EXCEPTION 'columns must be a non-empty JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Map each column name to a type, e.g. ''{"user_id":"text","ts":"timestamptz"}''.';
    END IF;
    IF options IS NULL OR jsonb_typeof(options) <> 'object'
       OR EXISTS (SELECT 1 FROM jsonb_each(options) e WHERE jsonb_typeof(e.value) NOT IN ('string', 'number', 'boolean')) THEN
        RAISE EXCEPTION 'options must be a JSON object of librdkafka properties'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example ''{"security.protocol":"SASL_SSL"}''; values are strings, numbers or booleans.';
    END IF;
    ooo := streamview._interval_arg(max_out_of_orderness, 'max_out_of_orderness', true);
    IF idle_timeout IS NOT NULL THEN
        idle := streamview._interval_arg(idle_timeout, 'idle_timeout');
    END IF;

    INSERT INTO streamview.sources (name, brokers, topic, event_time, event_id,
                                    max_out_of_orderness, idle_timeout, options, owner)
    VALUES (name, brokers, topic, event_time, event_id, ooo, idle, options,
            caller)
    RETURNING source_id INTO sid;

    FOR col IN SELECT e.key, e.value FROM jsonb_each(columns) e ORDER BY e.key LOOP
        n := n + 1;
        IF col.key !~ '^[A-Za-z_][A-Za-z0-9_]*$' OR col.key LIKE 'sv\_%' THEN
            RAISE EXCEPTION 'invalid column name "%"', col.key
                USING ERRCODE = 'invalid_name',
                      HINT = 'Column names have only letters, digits and underscores, and do not start with "sv_"; map other JSON fields with "path".';
        END IF;
        spec := CASE jsonb_typeof(col.value)
                    WHEN 'string' THEN jsonb_build_object('type', col.value)
                    WHEN 'object' THEN col.value
                END;
        IF spec IS NULL OR NOT spec ? 'type' THEN
            RAISE EXCEPTION 'column "%" has no type', col.key
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Write "column":"type" or "column":{"type":"...","path":"a.b","default":...,"required":true}.';
        END IF;
        BEGIN
            ctype := (spec->>'type')::regtype;
        EXCEPTION WHEN undefined_object OR syntax_error OR invalid_text_representation THEN
            ctype := NULL;
        END;
        IF ctype IS NULL OR NOT ctype = ANY (streamview._supported_types()) THEN
            RAISE EXCEPTION 'column "%" has unsupported type "%"', col.key, spec->>'type'
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'Supported types: ' || array_to_string(streamview._supported_types()::text[], ', ') || '.';
        END IF;
        cpath := string_to_array(coalesce(spec->>'path', col.key), '.');
        IF array_position(cpath, '') IS NOT NULL THEN
            RAISE EXCEPTION 'column "%" has an invalid path "%"', col.key, spec->>'path'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'A path names nested fields separated by dots, such as "payload.amount".';
        END IF;
        cdefault := CASE WHEN spec ? 'default' AND jsonb_typeof(spec->'default') <> 'null'
                         THEN spec->>'default' END;
        IF cdefault IS NOT NULL THEN
            BEGIN
                EXECUTE format('SELECT %L::%s', cdefault, ctype);
            EXCEPTION WHEN OTHERS THEN
                RAISE EXCEPTION 'default for column "%" is not a valid %: %', col.key, ctype, cdefault
                    USING ERRCODE = 'invalid_parameter_value';
            END;
        END IF;
        INSERT INTO streamview.source_columns (source_id, attnum, name, type, path, default_value, required)
        VALUES (sid, n, col.key, ctype, cpath, cdefault, coalesce((spec->>'required')::bool, false));
    END LOOP;

    IF NOT EXISTS (SELECT 1 FROM streamview.source_columns c WHERE c.source_id = sid AND c.name = event_time) THEN
        RAISE EXCEPTION 'event time column "%" is not among the columns', event_time
            USING ERRCODE = 'undefined_column',
                  HINT = 'Declare it in columns with type timestamptz.';
    END IF;
    IF (SELECT c.type FROM streamview.source_columns c WHERE c.source_id = sid AND c.name = event_time)
       <> 'timestamptz'::regtype THEN
        RAISE EXCEPTION 'event time column "%" must have type timestamptz', event_time
            USING ERRCODE = 'datatype_mismatch',
                  HINT = 'Messages may carry ISO-8601 text or epoch milliseconds; both are read as timestamptz.';
    END IF;
    IF event_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM streamview.source_columns c
                                            WHERE c.source_id = sid AND c.name = event_id) THEN
        RAISE EXCEPTION 'event id column "%" is not among the columns', event_id
            USING ERRCODE = 'undefined_column',
                  HINT = 'Declare it in columns, usually with type text.';
    END IF;
    PERFORM streamview._notify_launcher();
END $$;


CREATE FUNCTION streamview._drop_source_impl(caller regrole, name text, cascade bool DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid int;
    v   record;
BEGIN
    SELECT s.source_id INTO sid FROM streamview.sources s WHERE s.name = _drop_source_impl.name FOR UPDATE;
    IF sid IS NULL THEN
        RAISE EXCEPTION 'source "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT name FROM streamview.source_list.';
    END IF;
    PERFORM streamview._check_owner(caller, (SELECT s.owner FROM streamview.sources s WHERE s.source_id = sid),
                                    'source', name);
    FOR v IN SELECT w.name FROM streamview.views w WHERE w.source_id = sid LOOP
        IF NOT cascade THEN
            RAISE EXCEPTION 'cannot drop source "%" because view "%" depends on it', name, v.name
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = 'Drop the view first, or use drop_source(name, cascade => true).';
        END IF;
        PERFORM streamview._drop_view_impl(caller, v.name);
    END LOOP;
    DELETE FROM streamview.dead_letters d WHERE d.source_name = _drop_source_impl.name;
    DELETE FROM streamview.sources s WHERE s.source_id = sid;
    PERFORM streamview._notify_launcher();
END $$;

CREATE FUNCTION streamview._check_owner(caller regrole, owner regrole, kind text, name text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_has_role(caller, owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of % "%"', kind, name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('The %s is owned by %s.', kind, owner);
    END IF;
END $$;

------------------------------------------------------------------------------
-- Views
------------------------------------------------------------------------------

-- Creates version `ver` of view `vid`: its table, its row in streamview.versions.
-- Runs as the extension owner; the table is handed to the view's owner.
CREATE FUNCTION streamview._create_version(caller regrole, vid int, ver int, query text, state text)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v        streamview.views;
    src      text;
    comp     jsonb;
    tbl      text;
    vrow_id  int;
    cols     text;
    keys     text;
    batch    text;
    viewsql  text;
BEGIN
    SELECT * INTO v FROM streamview.views w WHERE w.view_id = vid;
    SELECT s.name INTO src FROM streamview.sources s WHERE s.source_id = v.source_id;
    comp := streamview._compile(src, query);
    tbl := format('%I.%I', v.schema_name, v.name || '_v' || ver);
    IF to_regclass(tbl) IS NOT NULL THEN
        RAISE EXCEPTION 'relation % already exists', tbl
            USING ERRCODE = 'duplicate_table',
                  HINT = 'Each version of a stream view keeps its rows in a table named <view>_v<version>.';
    END IF;

    SELECT string_agg(format('%I %s', c->>'name', c->>'type'), ', ' ORDER BY o)
      INTO cols FROM jsonb_array_elements(comp->'table_columns') WITH ORDINALITY AS t(c, o);
    SELECT string_agg(format('%I', k), ', ' ORDER BY o)
      INTO keys FROM jsonb_array_elements_text(comp->'conflict_columns') WITH ORDINALITY AS t(k, o);
    EXECUTE format('CREATE TABLE %s (%s)', tbl, cols);
    EXECUTE format('ALTER TABLE %s OWNER TO %I', tbl, v.owner);
    EXECUTE format('CREATE UNIQUE INDEX ON %s (%s) NULLS NOT DISTINCT', tbl, keys);
    EXECUTE format('COMMENT ON TABLE %s IS %L', tbl,
                   format('rows of stream view %s, version %s (maintained by pg_streamview)', v.name, ver));

    INSERT INTO streamview.versions (view_id, view_name, version, state, query, definition,
                                     definition_hash, table_name, window_kind, window_size,
                                     window_slide, batch_sql, view_sql, extension_version, created_by)
    VALUES (vid, v.name, ver, state, query, comp - 'batch_select',
            md5(jsonb_build_object('d', comp - 'batch_select', 'lateness', v.allowed_lateness)::text),
            tbl::regclass, comp->>'window_kind', (comp->>'window_size')::interval,
            (comp->>'window_slide')::interval, '', '',
            (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'pg_streamview'), caller::name)
    RETURNING version_id INTO vrow_id;

    batch := format(comp->>'batch_select', tbl, 'pg_temp.sv_batch_' || vrow_id);
    viewsql := format(comp->>'view_select', tbl, v.allowed_lateness, vrow_id);
    UPDATE streamview.versions SET batch_sql = batch, view_sql = viewsql WHERE version_id = vrow_id;
    RETURN vrow_id;
END $$;

CREATE FUNCTION streamview._create_view_impl(
    caller           regrole,
    name             text,
    query            text,
    allowed_lateness text DEFAULT '0 seconds')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src       record;
    vname     text;
    vschema   name;
    vid       int;
    vrow_id   int;
    lateness  interval;
    m         text[];
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'view name must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    m := regexp_match(name, '^(?:([A-Za-z_][A-Za-z0-9_]*)\.)?([A-Za-z_][A-Za-z0-9_]*)$');
    IF m IS NULL THEN
        RAISE EXCEPTION 'invalid view name "%"', name
            USING ERRCODE = 'invalid_name',
                  HINT = 'Use letters, digits and underscores, optionally qualified with a schema: analytics.revenue.';
    END IF;
    vname := m[2];
    vschema := coalesce(m[1], streamview._caller_schema());
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
    lateness := streamview._interval_arg(allowed_lateness, 'allowed_lateness', true);

    SELECT s.* INTO src FROM streamview.sources s
     WHERE s.name = streamview._query_source(query);
    PERFORM streamview._check_owner(caller, src.owner, 'source', src.name);

    INSERT INTO streamview.views (name, schema_name, source_id, owner, allowed_lateness)
    VALUES (vname, vschema, src.source_id, caller, lateness)
    RETURNING view_id INTO vid;
    vrow_id := streamview._create_version(caller, vid, 1, query, 'live');
    EXECUTE (SELECT format('CREATE VIEW %I.%I AS %s', vschema, vname, ver.view_sql)
               FROM streamview.versions ver WHERE ver.version_id = vrow_id);
    EXECUTE format('ALTER VIEW %I.%I OWNER TO %I', vschema, vname, caller);
    EXECUTE format('COMMENT ON VIEW %I.%I IS %L', vschema, vname,
                   'stream view over source ' || src.name || ' (pg_streamview)');
    PERFORM streamview._notify_launcher();
END $$;
-- The schema an unqualified CREATE VIEW of the caller would have used.
CREATE FUNCTION streamview._caller_schema()
RETURNS name
AS 'MODULE_PATHNAME', 'streamview_caller_schema'
LANGUAGE C STABLE;

-- Finds which source a query reads (the single relation in its FROM clause).
CREATE FUNCTION streamview._query_source(query text)
RETURNS text
AS 'MODULE_PATHNAME', 'streamview_query_source'
LANGUAGE C STABLE STRICT;

CREATE FUNCTION streamview._drop_view_impl(caller regrole, name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v   streamview.views;
    ver record;
BEGIN
    SELECT * INTO v FROM streamview.views w WHERE w.name = _drop_view_impl.name FOR UPDATE;
    IF v.view_id IS NULL THEN
        RAISE EXCEPTION 'stream view "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT DISTINCT view_name FROM streamview.status.';
    END IF;
    PERFORM streamview._check_owner(caller, v.owner, 'stream view', name);
    EXECUTE format('DROP VIEW IF EXISTS %I.%I', v.schema_name, v.name);
    FOR ver IN SELECT x.table_name FROM streamview.versions x WHERE x.view_id = v.view_id LOOP
        IF ver.table_name IS NOT NULL THEN
            EXECUTE format('DROP TABLE IF EXISTS %s', ver.table_name);
        END IF;
    END LOOP;
    DELETE FROM streamview.dead_letters d WHERE d.view_name = v.name;
    DELETE FROM streamview.views w WHERE w.view_id = v.view_id;
    PERFORM streamview._notify_launcher();
END $$;

------------------------------------------------------------------------------
-- The SQL API
--
-- Each public function is the C dispatcher streamview_api_dispatch: it records
-- the calling role and its search_path, then runs streamview._<name>_impl
-- (caller, ...) as the extension owner, so that catalog tables stay closed to
-- PUBLIC while objects a user creates belong to that user.
------------------------------------------------------------------------------

CREATE FUNCTION streamview.create_source(
    name                 text,
    brokers              text,
    topic                text,
    columns              jsonb,
    event_time           text,
    event_id             text DEFAULT NULL,
    max_out_of_orderness text DEFAULT '0 seconds',
    options              jsonb DEFAULT '{}',
    idle_timeout         text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text) IS
'declares a Kafka topic of JSON messages as a stream source';

CREATE FUNCTION streamview.drop_source(name text, cascade bool DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.drop_source(text, bool) IS
'drops a source (and with cascade its views); its worker stops once the transaction commits';

CREATE FUNCTION streamview.create_view(
    name             text,
    query            text,
    allowed_lateness text DEFAULT '0 seconds')
RETURNS void
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.create_view(text, text, text) IS
'creates a stream view: a windowed aggregate over a source, kept up to date from the topic';

CREATE FUNCTION streamview.drop_view(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.drop_view(text) IS
'drops a stream view, all its versions and their tables';

-- Internals run only through the dispatcher.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA streamview FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamview.tumble(timestamptz, interval),
                          streamview.hop(timestamptz, interval, interval) TO PUBLIC;

------------------------------------------------------------------------------
-- Monitoring
------------------------------------------------------------------------------

CREATE VIEW streamview.source_list AS
SELECT s.name, s.brokers, s.topic, s.event_time, s.event_id, s.max_out_of_orderness,
       s.idle_timeout,
       CASE WHEN pg_catalog.pg_has_role(s.owner, 'USAGE') THEN s.options END AS options,
       s.owner, s.created_at, s.last_error, s.last_error_at
  FROM streamview.sources s;

CREATE VIEW streamview.partitions AS
SELECT ver.view_name, ver.version, o.partition, o.next_offset, o.log_end,
       greatest(o.log_end - o.next_offset, 0) AS lag,
       o.max_event_time, o.max_event_time - s.max_out_of_orderness AS watermark,
       o.consumed, o.applied, o.duplicates, o.too_late, o.dead_lettered,
       o.consumed = o.applied + o.duplicates + o.too_late + o.dead_lettered AS balanced,
       o.last_message_at, o.updated_at
  FROM streamview.offsets o
  JOIN streamview.versions ver USING (version_id)
  JOIN streamview.views v ON v.view_id = ver.view_id
  JOIN streamview.sources s ON s.source_id = v.source_id;

CREATE VIEW streamview.status AS
SELECT ver.view_name, ver.version, ver.state, ver.state = 'live' AS is_live, ver.watermark,
       coalesce(pg_catalog.sum(o.consumed), 0)::bigint AS consumed,
       coalesce(pg_catalog.sum(o.applied), 0)::bigint AS applied,
       coalesce(pg_catalog.sum(o.duplicates), 0)::bigint AS duplicates,
       coalesce(pg_catalog.sum(o.too_late), 0)::bigint AS too_late,
       coalesce(pg_catalog.sum(o.dead_lettered), 0)::bigint AS dead_lettered,
       pg_catalog.sum(greatest(o.log_end - o.next_offset, 0))::bigint AS lag,
       pg_catalog.count(o.partition)::int AS partitions,
       s.name AS source_name, ver.table_name, pg_catalog.max(o.updated_at) AS last_batch_at,
       ver.error
  FROM streamview.versions ver
  JOIN streamview.views v ON v.view_id = ver.view_id
  JOIN streamview.sources s ON s.source_id = v.source_id
  LEFT JOIN streamview.offsets o ON o.version_id = ver.version_id
 GROUP BY ver.version_id, ver.view_name, ver.version, ver.state, ver.watermark, s.name,
          ver.table_name, ver.error;

GRANT SELECT ON streamview.status, streamview.partitions, streamview.source_list TO PUBLIC;
GRANT USAGE ON SCHEMA streamview TO PUBLIC;

-- Mutators are for roles the DBA chooses: a stream source opens a network
-- connection from inside the server, and a view starts a worker.
REVOKE ALL ON FUNCTION streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text),
                       streamview.drop_source(text, bool),
                       streamview.create_view(text, text, text),
                       streamview.drop_view(text) FROM PUBLIC;
