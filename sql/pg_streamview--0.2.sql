-- pg_streamview 0.2: materialized stream views over Kafka topics.
--
-- Catalog tables live in schema streamview (the extension's schema, created
-- by CREATE EXTENSION).  Data tables and the user-facing views live in the
-- schema the user chose, owned by the user.  Every object referenced here is
-- schema-qualified, and every function pins its search_path, so that nothing
-- a user puts on their search_path can change what this script does.

\echo Use "CREATE EXTENSION pg_streamview" to load this file. \quit

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
    last_error_at        timestamptz,
    -- an event whose time is further ahead of its message's broker timestamp
    -- is a dead letter (future_time); NULL: not checked
    max_future           interval DEFAULT '1 day'
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
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- the view create_view made: what drop_view, swap and rollback act on,
    -- never whatever relation has its name now
    relid            regclass
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
    start_from        timestamptz,
    max_rate          bigint CHECK (max_rate > 0),
    watermark         timestamptz,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by        name NOT NULL,
    replay_started_at timestamptz,
    caught_up_at      timestamptz,
    validated_at      timestamptz,
    validated_by      name,
    swapped_at        timestamptz,
    swapped_by        name,
    retired_at        timestamptz,
    retired_by        name,
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

-- Where the log stood, now and then: after a batch, partition p's next
-- offset and the highest event time read before it (at most one mark per
-- minute of event time).  A rebuild from a point in time starts each
-- partition at the last mark before that time, with that history.
CREATE TABLE streamview.offset_marks (
    source_id      int NOT NULL REFERENCES streamview.sources ON DELETE CASCADE,
    partition      int NOT NULL,
    next_offset    bigint NOT NULL,
    max_event_time timestamptz NOT NULL,
    PRIMARY KEY (source_id, partition, next_offset)
);
CREATE INDEX offset_marks_time ON streamview.offset_marks (source_id, partition, max_event_time);

-- event_ids applied by a version, remembered while an event carrying the same
-- id could still be applied (see docs/architecture.md, "Deduplication").
-- Kept as their SHA-256: an id is whatever a producer wrote, and a long one
-- would not fit in the index.
CREATE TABLE streamview.seen_ids (
    version_id    int NOT NULL REFERENCES streamview.versions (version_id) ON DELETE CASCADE,
    partition     int NOT NULL,
    event_time    timestamptz NOT NULL,
    event_id_hash bytea NOT NULL,
    PRIMARY KEY (version_id, event_id_hash)
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
                                     'too_late', 'query_error', 'future_time')),
    key            bytea,
    payload        bytea,
    error          text,
    event_time     timestamptz,
    recorded_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE NULLS NOT DISTINCT (source_name, partition, "offset", view_name, version)
);

-- User invariants checked by validate(): rows violating predicate are counted.
CREATE TABLE streamview.checks (
    view_id    int NOT NULL REFERENCES streamview.views ON DELETE CASCADE,
    name       text NOT NULL,
    predicate  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (view_id, name)
);

-- Every validation ever run, one row per check.
CREATE TABLE streamview.validations (
    validation_id bigserial PRIMARY KEY,
    view_name     text NOT NULL,
    version       int NOT NULL,
    run           bigint NOT NULL,
    "check"       text NOT NULL,
    passed        bool NOT NULL,
    detail        text,
    validated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    validated_by  name NOT NULL
);
CREATE SEQUENCE streamview.validation_runs;

-- Every swap and rollback: what the view read before and after, who, when.
CREATE TABLE streamview.swaps (
    swap_id      bigserial PRIMARY KEY,
    view_name    text NOT NULL,
    from_version int,
    to_version   int NOT NULL,
    forced       bool NOT NULL,
    is_rollback  bool NOT NULL,
    swapped_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    swapped_by   name NOT NULL
);

-- Why workers stopped, newest last.  Kept for the DBA; never read by the code.
CREATE TABLE streamview.worker_errors (
    worker_error_id bigserial PRIMARY KEY,
    source_name     text NOT NULL,
    message         text NOT NULL,
    detail          text,
    occurred_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- the errors go with their source: the next source of that name, perhaps
    -- another role's, must not read them
    source_id       int REFERENCES streamview.sources ON DELETE CASCADE
);

SELECT pg_catalog.pg_extension_config_dump('streamview.sources', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.source_columns', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.views', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.versions', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.offsets', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.seen_ids', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.offset_marks', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.worker_errors', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.checks', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.validations', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.swaps', '');

-- Catalog tables are written by the extension's functions (as the extension
-- owner), never directly by users.
REVOKE ALL ON ALL TABLES IN SCHEMA streamview FROM PUBLIC;

-- Views read the watermark of their version from here; the queries are no secret.
GRANT SELECT ON streamview.versions, streamview.views, streamview.dead_letters,
                streamview.worker_errors, streamview.validations, streamview.swaps,
                streamview.checks TO PUBLIC;

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
    idle_timeout         text DEFAULT NULL,
    max_future           text DEFAULT '1 day')
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
    future   interval;
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
    PERFORM streamview._check_options(caller, options);
    PERFORM streamview._check_worker_quota(caller, 'a new source');
    ooo := streamview._interval_arg(max_out_of_orderness, 'max_out_of_orderness', true);
    IF idle_timeout IS NOT NULL THEN
        idle := streamview._interval_arg(idle_timeout, 'idle_timeout');
    END IF;
    IF max_future IS NOT NULL THEN
        future := streamview._interval_arg(max_future, 'max_future');
    END IF;

    INSERT INTO streamview.sources (name, brokers, topic, event_time, event_id,
                                    max_out_of_orderness, idle_timeout, options, owner, max_future)
    VALUES (name, brokers, topic, event_time, event_id, ooo, idle, options,
            caller, future)
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

-- librdkafka properties a source may set.  Some would break the guarantees
-- (offsets are PostgreSQL's) and are refused to everyone; some run programs,
-- load libraries or read server files, so roles without superuser are held
-- to a list of connection and tuning properties, and to librdkafka's own
-- bounds (pg_streamview's, for the prefetch queue) on the memory a worker
-- may take for messages: a hostile broker or topic could fill a larger one.
CREATE FUNCTION streamview._check_options(caller regrole, options jsonb)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k     text;
    v     text;
    super bool := (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = caller);
    most  bigint;
BEGIN
    FOR k, v IN SELECT e.key, e.value FROM jsonb_each_text(options) e LOOP
        IF k IN ('enable.auto.commit', 'enable.auto.offset.store', 'enable.partition.eof',
                 'auto.offset.reset', 'group.id', 'bootstrap.servers', 'metadata.broker.list',
                 'log.queue', 'isolation.level', 'group.instance.id') THEN
            RAISE EXCEPTION 'Kafka option "%" cannot be set for a source', k
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = CASE WHEN k IN ('bootstrap.servers', 'metadata.broker.list')
                                    THEN 'The brokers are the source''s brokers argument.'
                                    ELSE 'pg_streamview sets it itself: offsets are kept in PostgreSQL.' END;
        END IF;
        IF NOT super
           AND NOT (k IN ('security.protocol', 'sasl.mechanism', 'sasl.mechanisms', 'sasl.username',
                          'sasl.password', 'ssl.ca.pem', 'ssl.certificate.pem', 'ssl.key.pem',
                          'ssl.key.password', 'ssl.endpoint.identification.algorithm',
                          'api.version.request', 'broker.version.fallback', 'client.rack',
                          'check.crcs', 'allow.auto.create.topics')
                    OR k ~ '^(session|socket|fetch|queued|reconnect|retry|metadata|topic\.metadata|message\.max|receive\.message|max\.poll|heartbeat|connections)\.') THEN
            RAISE EXCEPTION 'only superusers may set Kafka option "%"', k
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'Options that name files, programs or libraries on the server are reserved to superusers.',
                      HINT = 'Pass certificates inline with ssl.ca.pem, ssl.certificate.pem and ssl.key.pem.';
        END IF;
        most := CASE k WHEN 'queued.max.messages.kbytes' THEN 16384
                       WHEN 'queued.min.messages' THEN 1000000
                       WHEN 'fetch.max.bytes' THEN 52428800
                       WHEN 'fetch.message.max.bytes' THEN 1048576
                       WHEN 'receive.message.max.bytes' THEN 100000000
                       WHEN 'message.max.bytes' THEN 1000000 END;
        IF NOT super AND most IS NOT NULL AND (v !~ '^\s*\d{1,18}\s*$' OR v::bigint > most) THEN
            RAISE EXCEPTION 'only superusers may set Kafka option "%" above %', k, most
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('It bounds the memory a worker takes for messages; %s was given.', v),
                      HINT = 'Leave it at its default, or ask a superuser to create the source.';
        END IF;
    END LOOP;
END $$;

-- Each source runs a worker, and so does each running rebuild: a role that
-- is not a superuser may have streamview.max_workers_per_role of them, so
-- that no grantee can take every worker slot of the server.
CREATE FUNCTION streamview._check_worker_quota(caller regrole, what text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    most int := coalesce(current_setting('streamview.max_workers_per_role', true), '4')::int;
    used int;
BEGIN
    IF most = 0 OR (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = caller) THEN
        RETURN;
    END IF;
    SELECT (SELECT count(*) FROM streamview.sources s WHERE s.owner = caller)
         + (SELECT count(*) FROM streamview.versions x JOIN streamview.views w USING (view_id)
             WHERE w.owner = caller AND x.state = 'replaying')
      INTO used;
    IF used >= most THEN
        RAISE EXCEPTION 'role % may not start another worker for %', caller, what
            USING ERRCODE = 'configuration_limit_exceeded',
                  DETAIL = format('It has %s sources and running rebuilds, and streamview.max_workers_per_role is %s.',
                                  used, most),
                  HINT = 'Drop a source or wait for a rebuild to finish, or ask a superuser to raise streamview.max_workers_per_role.';
    END IF;
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
    EXECUTE format('ALTER TABLE %s OWNER TO %s', tbl, v.owner);  -- regrole text is quoted
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
    EXECUTE format('ALTER VIEW %I.%I OWNER TO %s', vschema, vname, caller);
    EXECUTE format('COMMENT ON VIEW %I.%I IS %L', vschema, vname,
                   'stream view over source ' || src.name || ' (pg_streamview)');
    UPDATE streamview.views w SET relid = format('%I.%I', vschema, vname)::regclass WHERE w.view_id = vid;
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

-- The relation of stream view v, as create_view (or the last swap) made it:
-- NULL when it was dropped by hand.  An error if it now belongs to another
-- role: the API acts on it as the extension owner, on behalf of v's owner.
CREATE FUNCTION streamview._view_relation(v streamview.views)
RETURNS regclass
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel pg_class;
BEGIN
    SELECT * INTO rel FROM pg_class c WHERE c.oid = v.relid AND c.relkind = 'v';
    IF rel.oid IS NULL THEN
        RETURN NULL;
    END IF;
    IF rel.relowner <> v.owner THEN
        RAISE EXCEPTION 'view %.% of stream view "%" is owned by role "%", not by the stream view''s owner',
                        rel.relnamespace::regnamespace, rel.relname, v.name, pg_get_userbyid(rel.relowner)
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('The stream view belongs to %s.', v.owner),
                  HINT = format('Give it back with ALTER VIEW %s OWNER TO %s.', v.relid, v.owner);
    END IF;
    RETURN rel.oid::regclass;
END $$;

-- The stream view's owner must still be allowed to create in the schema the
-- extension creates its tables and views in (the extension owner could).
CREATE FUNCTION streamview._check_may_create(v streamview.views, what text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT has_schema_privilege(v.owner, v.schema_name, 'CREATE') THEN
        RAISE EXCEPTION 'permission denied for schema %', v.schema_name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('%s creates in schema %s, where %s may no longer create.', what, v.schema_name, v.owner),
                  HINT = format('GRANT CREATE ON SCHEMA %I TO %s.', v.schema_name, v.owner);
    END IF;
END $$;

CREATE FUNCTION streamview._drop_view_impl(caller regrole, name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v   streamview.views;
    ver record;
    rel regclass;
BEGIN
    SELECT * INTO v FROM streamview.views w WHERE w.name = _drop_view_impl.name FOR UPDATE;
    IF v.view_id IS NULL THEN
        RAISE EXCEPTION 'stream view "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT DISTINCT view_name FROM streamview.status.';
    END IF;
    PERFORM streamview._check_owner(caller, v.owner, 'stream view', name);
    -- the view create_view made, if it is still there: not whatever
    -- relation has its name now, which may be another role's
    rel := streamview._view_relation(v);
    IF rel IS NOT NULL THEN
        EXECUTE format('DROP VIEW %s', rel);
    END IF;
    FOR ver IN SELECT x.table_name FROM streamview.versions x WHERE x.view_id = v.view_id LOOP
        IF ver.table_name IS NOT NULL THEN
            EXECUTE format('DROP TABLE IF EXISTS %s', ver.table_name);
        END IF;
    END LOOP;
    DELETE FROM streamview.dead_letters d WHERE d.view_name = v.name;
    DELETE FROM streamview.validations x WHERE x.view_name = v.name;
    DELETE FROM streamview.swaps x WHERE x.view_name = v.name;
    DELETE FROM streamview.views w WHERE w.view_id = v.view_id;
    PERFORM streamview._notify_launcher();
END $$;

------------------------------------------------------------------------------
-- Versions: rebuild, wait, validate, swap, roll back, drop
------------------------------------------------------------------------------

-- Runs one SELECT returning jsonb as role, restricted (see api.c).  Every
-- query that reads a user's table or evaluates a user's expression goes
-- through it: the implementations themselves run as the extension owner.
CREATE FUNCTION streamview._run_as(role regrole, query text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'streamview_run_as'
LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION streamview._count_as(role regrole, query text)
RETURNS bigint
LANGUAGE sql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ SELECT (streamview._run_as(role, format('SELECT to_jsonb(q.c) FROM (%s) AS q(c)', query)))::text::bigint $$;

-- The view, locked against concurrent changes, after an ownership check.
CREATE FUNCTION streamview._lock_view(caller regrole, view_name text, lock bool DEFAULT true)
RETURNS streamview.views
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v streamview.views;
BEGIN
    -- FOR UPDATE makes the source worker's next batch wait: only changes lock.
    IF lock THEN
        SELECT * INTO v FROM streamview.views w WHERE w.name = view_name FOR UPDATE;
    ELSE
        SELECT * INTO v FROM streamview.views w WHERE w.name = view_name;
    END IF;
    IF v.view_id IS NULL THEN
        RAISE EXCEPTION 'stream view "%" does not exist', view_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT DISTINCT view_name FROM streamview.status.';
    END IF;
    PERFORM streamview._check_owner(caller, v.owner, 'stream view', view_name);
    RETURN v;
END $$;

CREATE FUNCTION streamview._get_version(v streamview.views, version int)
RETURNS streamview.versions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r streamview.versions;
BEGIN
    SELECT * INTO r FROM streamview.versions x WHERE x.view_id = v.view_id AND x.version = _get_version.version;
    IF r.version_id IS NULL THEN
        RAISE EXCEPTION 'version % of stream view "%" does not exist', version, v.name
            USING ERRCODE = 'undefined_object',
                  HINT = format('See SELECT version, state FROM streamview.versions WHERE view_name = %L.', v.name);
    END IF;
    RETURN r;
END $$;

CREATE FUNCTION streamview._rebuild_impl(caller regrole, view_name text, query text DEFAULT NULL,
                                         start_from text DEFAULT 'earliest', max_rate bigint DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v      streamview.views;
    live   streamview.versions;
    busy   int;
    ver    int;
    vrow   int;
    since  timestamptz;
BEGIN
    v := streamview._lock_view(caller, view_name);
    PERFORM streamview._check_may_create(v, 'A rebuild');
    PERFORM streamview._check_worker_quota(v.owner, 'a rebuild');
    IF max_rate IS NOT NULL AND max_rate <= 0 THEN
        RAISE EXCEPTION 'max_rate must be positive'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the most events per second the replay may apply, or NULL for no limit.';
    END IF;
    IF start_from IS NOT NULL AND start_from <> 'earliest' THEN
        BEGIN
            since := start_from::timestamptz;
        EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
            RAISE EXCEPTION 'invalid start_from "%"', start_from
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use ''earliest'' or a timestamp.';
        END;
    END IF;
    SELECT x.version INTO busy FROM streamview.versions x
     WHERE x.view_id = v.view_id AND x.state = 'replaying';
    IF busy IS NOT NULL THEN
        RAISE EXCEPTION 'a rebuild of stream view "%" is already running (version %)', view_name, busy
            USING ERRCODE = 'object_in_use',
                  HINT = 'Wait for it with streamview.wait_for(), or stop it with streamview.drop_version().';
    END IF;
    SELECT * INTO live FROM streamview.versions x WHERE x.view_id = v.view_id AND x.state = 'live';
    SELECT max(x.version) + 1 INTO ver FROM streamview.versions x WHERE x.view_id = v.view_id;
    vrow := streamview._create_version(caller, v.view_id, ver, coalesce(query, live.query), 'replaying');
    UPDATE streamview.versions x SET max_rate = _rebuild_impl.max_rate WHERE x.version_id = vrow;
    IF since IS NOT NULL THEN
        PERFORM streamview._start_from_time(v, live, vrow, since);
    END IF;
    PERFORM streamview._notify_launcher();
    RETURN ver;
END $$;

-- rebuild(start_from => time): windows starting before the cut (the time,
-- aligned down to the new version's slide) are carried over from the live
-- version, where they must be final; each partition is replayed from the
-- last offset mark whose event time is before the cut, with that mark's
-- event-time history, and the replay skips windows before the cut.
CREATE FUNCTION streamview._start_from_time(v streamview.views, live streamview.versions,
                                            vrow int, since timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cand      streamview.versions;
    cut       timestamptz;
    cols_live text;
    cols_new  text;
BEGIN
    SELECT * INTO cand FROM streamview.versions x WHERE x.version_id = vrow;
    cut := streamview.tumble(since, cand.window_slide);
    IF live.watermark IS NULL OR cut + greatest(live.window_size, cand.window_size) + v.allowed_lateness > live.watermark THEN
        RAISE EXCEPTION 'cannot rebuild stream view "%" from %: its windows there are not final yet', v.name, since
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Windows before the cut are carried over from the live version, so they must be final: '
                                  'the cut plus the window size and the allowed lateness must not pass the watermark (%s).',
                                  coalesce(live.watermark::text, 'none yet')),
                  HINT = 'Choose an earlier start_from, or start_from => ''earliest''.';
    END IF;
    SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attname)
      INTO cols_live FROM pg_attribute a WHERE a.attrelid = live.table_name AND a.attnum > 0 AND NOT a.attisdropped;
    SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attname)
      INTO cols_new FROM pg_attribute a WHERE a.attrelid = cand.table_name AND a.attnum > 0 AND NOT a.attisdropped;
    IF cols_live IS DISTINCT FROM cols_new THEN
        RAISE EXCEPTION 'cannot rebuild stream view "%" from a point in time with other columns', v.name
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Windows before the cut are carried over from the live version, which has other columns.',
                  HINT = 'Use start_from => ''earliest''.';
    END IF;
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols_new
      FROM pg_attribute a WHERE a.attrelid = cand.table_name AND a.attnum > 0 AND NOT a.attisdropped;
    PERFORM streamview._run_as(v.owner,
        format('WITH c AS (INSERT INTO %s (%s) SELECT %s FROM %s WHERE window_start < %L RETURNING 1) '
               'SELECT to_jsonb(count(*)) FROM c', cand.table_name, cols_new, cols_new, live.table_name, cut));
    INSERT INTO streamview.offsets (version_id, partition, next_offset, max_event_time)
    SELECT vrow, m.partition, m.next_offset, m.max_event_time
      FROM (SELECT DISTINCT ON (om.partition) om.partition, om.next_offset, om.max_event_time
              FROM streamview.offset_marks om
             WHERE om.source_id = v.source_id AND om.max_event_time < cut
             ORDER BY om.partition, om.max_event_time DESC, om.next_offset DESC) m;
    UPDATE streamview.versions x SET start_from = cut WHERE x.version_id = vrow;
END $$;

CREATE FUNCTION streamview._wait_for_impl(caller regrole, view_name text, version int,
                                          timeout interval DEFAULT '10 minutes')
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v        streamview.views;
    r        streamview.versions;
    p        record;
    deadline timestamptz := clock_timestamp() + timeout;
    noticed  timestamptz := clock_timestamp();
    polled   timestamptz := clock_timestamp();
    shown    bigint := -1;
BEGIN
    SELECT * INTO v FROM streamview.views w WHERE w.name = view_name;
    IF v.view_id IS NULL THEN
        RAISE EXCEPTION 'stream view "%" does not exist', view_name
            USING ERRCODE = 'undefined_object';
    END IF;
    r := streamview._get_version(v, version);
    IF r.created_at = now() AND r.state = 'replaying' THEN
        RAISE EXCEPTION 'version % of stream view "%" was created in this transaction', version, view_name
            USING ERRCODE = 'invalid_transaction_state',
                  DETAIL = 'Its replay starts only once the transaction that called rebuild() commits.',
                  HINT = 'Commit first, then call streamview.wait_for().';
    END IF;
    LOOP
        SELECT * INTO r FROM streamview.versions x WHERE x.version_id = r.version_id;
        -- Caught up, and taken over by the source worker: at the live
        -- version's offsets, as validate() will want.
        IF r.state = 'live' OR (r.state = 'caught_up' AND NOT EXISTS (
               SELECT 1 FROM streamview.versions lv
                 JOIN streamview.offsets l ON l.version_id = lv.version_id
                 LEFT JOIN streamview.offsets o ON o.version_id = r.version_id AND o.partition = l.partition
                WHERE lv.view_id = r.view_id AND lv.state = 'live'
                  AND o.next_offset IS DISTINCT FROM l.next_offset)) THEN
            RETURN r.state;
        ELSIF r.state = 'failed' THEN
            RAISE EXCEPTION 'rebuild of stream view "%" version % failed', view_name, version
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = coalesce(r.error, 'no error was recorded'),
                      HINT = 'Fix the cause, drop the version with streamview.drop_version() and rebuild again.';
        ELSIF r.state = 'retired' THEN
            RAISE EXCEPTION 'version % of stream view "%" was dropped', version, view_name
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'timed out after % waiting for stream view "%" version % to catch up',
                            timeout, view_name, version
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'The replay goes on; see streamview.rebuilds, and call wait_for() again.';
        END IF;
        -- Progress every 2 seconds while it moves, every 30 seconds while it does not.
        IF clock_timestamp() - polled >= interval '2 seconds' THEN
            polled := clock_timestamp();
            SELECT * INTO p FROM streamview.rebuilds b
             WHERE b.view_name = _wait_for_impl.view_name AND b.version = _wait_for_impl.version;
            IF coalesce(p.done, 0) <> shown OR clock_timestamp() - noticed >= interval '30 seconds' THEN
                shown := coalesce(p.done, 0);
                noticed := clock_timestamp();
                RAISE NOTICE 'stream view "%" version %: % of % events (% %%), % events/s, eta %',
                    view_name, version, coalesce(p.done, 0), coalesce(p.total::text, '?'),
                    coalesce(p.percent::text, '?'), coalesce(p.rate::text, '?'), coalesce(p.eta::text, '?');
            END IF;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;

CREATE FUNCTION streamview._add_check_impl(caller regrole, view_name text, name text, predicate text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v    streamview.views;
    live streamview.versions;
BEGIN
    v := streamview._lock_view(caller, view_name);
    IF EXISTS (SELECT 1 FROM streamview.checks c WHERE c.view_id = v.view_id AND c.name = _add_check_impl.name) THEN
        RAISE EXCEPTION 'check "%" of stream view "%" already exists', name, view_name
            USING ERRCODE = 'duplicate_object';
    END IF;
    SELECT * INTO live FROM streamview.versions x WHERE x.view_id = v.view_id AND x.state = 'live';
    BEGIN
        PERFORM streamview._count_as(v.owner, format('SELECT count(*) FROM (%s) AS t WHERE NOT (%s)',
                                                     live.view_sql, predicate));
    EXCEPTION WHEN syntax_error OR undefined_column OR undefined_function OR datatype_mismatch THEN
        RAISE EXCEPTION 'invalid check "%" for stream view "%": %', name, view_name, SQLERRM
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A check is a boolean expression over the view''s columns, such as revenue >= 0.';
    END;
    INSERT INTO streamview.checks (view_id, name, predicate) VALUES (v.view_id, name, predicate);
END $$;

CREATE FUNCTION streamview._drop_check_impl(caller regrole, view_name text, name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v streamview.views;
BEGIN
    v := streamview._lock_view(caller, view_name);
    DELETE FROM streamview.checks c WHERE c.view_id = v.view_id AND c.name = _drop_check_impl.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'check "%" of stream view "%" does not exist', name, view_name
            USING ERRCODE = 'undefined_object';
    END IF;
END $$;

-- Differences between two versions over the windows final in both.
CREATE FUNCTION streamview._compare(v streamview.views, a streamview.versions, b streamview.versions,
                                    OUT comparable bool, OUT only_a bigint, OUT only_b bigint,
                                    OUT differ bigint, OUT samples text, OUT totals text,
                                    OUT totals_equal bool, OUT horizon timestamptz, OUT note text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keys_a text[];
    keys_b text[];
    cols   text[];
    sums   text[];
    jn     text;
    q      text;
    r      jsonb;
    b_owner regrole := v.owner;   -- the versions' tables belong to the view's owner
BEGIN
    SELECT array_agg(o->>'name' ORDER BY o->>'name') INTO keys_a
      FROM jsonb_array_elements(a.definition->'outputs') o WHERE o->>'kind' = 'key';
    SELECT array_agg(o->>'name' ORDER BY o->>'name') INTO keys_b
      FROM jsonb_array_elements(b.definition->'outputs') o WHERE o->>'kind' = 'key';
    horizon := least(a.watermark, b.watermark) - v.allowed_lateness;
    comparable := coalesce(keys_a, '{}') = coalesce(keys_b, '{}');
    IF NOT comparable THEN
        note := format('the versions group by different keys (%s and %s)',
                       coalesce(array_to_string(keys_a, ', '), 'none'), coalesce(array_to_string(keys_b, ', '), 'none'));
        RETURN;
    END IF;
    IF horizon IS NULL THEN
        only_a := 0; only_b := 0; differ := 0; totals_equal := true;
        note := 'no window is final in both versions yet';
        RETURN;
    END IF;
    SELECT array_agg(oa->>'name' ORDER BY oa->>'name') INTO cols
      FROM jsonb_array_elements(a.definition->'outputs') oa
      JOIN jsonb_array_elements(b.definition->'outputs') ob ON ob->>'name' = oa->>'name'
     WHERE oa->>'kind' <> 'key';
    SELECT array_agg(oa->>'name' ORDER BY oa->>'name') INTO sums
      FROM jsonb_array_elements(a.definition->'outputs') oa
      JOIN jsonb_array_elements(b.definition->'outputs') ob ON ob->>'name' = oa->>'name'
     WHERE oa->>'kind' IN ('count', 'sum') AND ob->>'kind' IN ('count', 'sum');
    -- Rows match on (window_start, keys), NULL keys included: a jsonb array
    -- of them is a key that FULL JOIN can hash.
    SELECT 'jsonb_build_array(' || string_agg(format('s.%I', k), ', ') || ')'
      INTO jn FROM unnest(array['window_start'] || coalesce(keys_a, '{}')) k;
    q := format($q$
        WITH x AS (SELECT %4$s AS sv_key, s AS r FROM (%1$s) s WHERE s.window_end <= %3$L),
             y AS (SELECT %4$s AS sv_key, s AS r FROM (%2$s) s WHERE s.window_end <= %3$L),
             j AS (SELECT x.r AS x, y.r AS y FROM x FULL JOIN y ON x.sv_key = y.sv_key)
        SELECT count(*) FILTER (WHERE y IS NULL) AS only_a,
               count(*) FILTER (WHERE x IS NULL) AS only_b,
               count(*) FILTER (WHERE x IS NOT NULL AND y IS NOT NULL AND %5$s) AS differ,
               (SELECT string_agg(d, '; ') FROM (
                    SELECT CASE WHEN y IS NULL THEN 'only in version %6$s: ' || (x)::text
                                WHEN x IS NULL THEN 'only in version %7$s: ' || (y)::text
                                ELSE 'differs: ' || (x)::text || ' vs ' || (y)::text END AS d
                      FROM j WHERE y IS NULL OR x IS NULL OR %5$s LIMIT 5) s) AS samples,
               %8$s AS totals
          FROM j $q$,
        a.view_sql, b.view_sql, horizon, jn,
        coalesce((SELECT '(' || string_agg(format('(x).%1$I IS DISTINCT FROM (y).%1$I', c), ' OR ') || ')'
                    FROM unnest(cols) c), 'false'),
        a.version, b.version,
        coalesce((SELECT 'concat_ws(''; '', ' || string_agg(
                      format('%1$L || '': '' || coalesce(sum((x).%1$I), 0) || '' vs '' || coalesce(sum((y).%1$I), 0)', c), ', ')
                      || ')' FROM unnest(sums) c), '''''')
    );
    r := streamview._run_as(b_owner, format('SELECT to_jsonb(z) FROM (%s) AS z', q));
    only_a := (r->>'only_a')::bigint; only_b := (r->>'only_b')::bigint; differ := (r->>'differ')::bigint;
    samples := r->>'samples'; totals := nullif(r->>'totals', '');
    totals_equal := NOT EXISTS (
        SELECT 1 FROM unnest(string_to_array(coalesce(totals, ''), '; ')) t
         WHERE t <> '' AND split_part(split_part(t, ': ', 2), ' vs ', 1) <> split_part(t, ' vs ', 2));
END $$;

CREATE FUNCTION streamview._validate_impl(caller regrole, view_name text, version int,
                                          expect_identical bool DEFAULT false)
RETURNS TABLE ("check" text, passed bool, detail text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v       streamview.views;
    cand    streamview.versions;
    live    streamview.versions;
    run_id  bigint := nextval('streamview.validation_runs');
    n       bigint;
    m       bigint;
    cmp     record;
    chk     record;
    ran     text[] := '{}';
    oks     bool[] := '{}';
    details text[] := '{}';
BEGIN
    v := streamview._lock_view(caller, view_name, lock => false);
    cand := streamview._get_version(v, version);
    SELECT * INTO live FROM streamview.versions x WHERE x.view_id = v.view_id AND x.state = 'live';

    -- 1. caught up to the same offsets as the live version
    SELECT count(*) FILTER (WHERE o.next_offset IS DISTINCT FROM l.next_offset), count(*)
      INTO n, m
      FROM (SELECT * FROM streamview.offsets WHERE version_id = cand.version_id) o
      FULL JOIN (SELECT * FROM streamview.offsets WHERE version_id = live.version_id) l USING (partition);
    "check" := 'caught_up';
    passed := cand.state IN ('caught_up', 'live') AND n = 0;
    detail := CASE WHEN cand.state NOT IN ('caught_up', 'live')
                   THEN format('version %s is %s', cand.version, cand.state)
                   WHEN n = 0 THEN format('same offsets as live version %s in %s partitions', live.version, m)
                   ELSE format('%s of %s partitions are at other offsets than live version %s', n, m, live.version) END;
    RETURN NEXT;
    ran := ran || "check"; oks := oks || passed; details := details || detail;

    -- 2. the per-partition ledger balances
    SELECT count(*) FILTER (WHERE o.consumed <> o.applied + o.duplicates + o.too_late + o.dead_lettered),
           sum(o.consumed)
      INTO n, m FROM streamview.offsets o WHERE o.version_id = cand.version_id;
    "check" := 'ledger';
    passed := n = 0;
    detail := format('consumed = applied + duplicates + too_late + dead_lettered in every partition (%s consumed)', coalesce(m, 0));
    IF n > 0 THEN
        detail := format('%s partitions do not balance', n);
    END IF;
    RETURN NEXT;
    ran := ran || "check"; oks := oks || passed; details := details || detail;

    -- 3. differences from the live version over windows final in both
    IF cand.version_id <> live.version_id THEN
        SELECT * INTO cmp FROM streamview._compare(v, live, cand);
        "check" := 'differences';
        IF NOT cmp.comparable THEN
            passed := NOT expect_identical;
            detail := 'not compared: ' || cmp.note;
        ELSIF cmp.note IS NOT NULL THEN
            passed := NOT expect_identical;
            detail := cmp.note;
        ELSE
            passed := NOT expect_identical OR (cmp.only_a + cmp.only_b + cmp.differ = 0 AND cmp.totals_equal);
            detail := format('windows ending by %s: %s rows only in live version %s, %s only in version %s, %s differ',
                             cmp.horizon, cmp.only_a, live.version, cmp.only_b, cand.version, cmp.differ)
                      || coalesce('; totals ' || cmp.totals, '')
                      || coalesce('; e.g. ' || cmp.samples, '');
        END IF;
        RETURN NEXT;
        ran := ran || "check"; oks := oks || passed; details := details || detail;
    END IF;

    -- 4. user invariants, evaluated as the view's owner
    FOR chk IN SELECT c.name, c.predicate FROM streamview.checks c WHERE c.view_id = v.view_id ORDER BY c.name LOOP
        n := streamview._count_as(v.owner, format('SELECT count(*) FROM (%s) AS t WHERE NOT (%s)',
                                                  cand.view_sql, chk.predicate));
        "check" := 'check ' || chk.name;
        passed := n = 0;
        detail := format('%s rows violate %s', n, chk.predicate);
        RETURN NEXT;
        ran := ran || "check"; oks := oks || passed; details := details || detail;
    END LOOP;

    -- Record this run: one row per check, as returned.
    INSERT INTO streamview.validations (view_name, version, run, "check", passed, detail, validated_by)
    SELECT v.name, cand.version, run_id, r.c, r.p, r.d, caller::name
      FROM unnest(ran, oks, details) AS r(c, p, d);
    UPDATE streamview.versions x SET validated_at = now(), validated_by = caller::name
     WHERE x.version_id = cand.version_id;
END $$;

-- Point the view at version target; runs in the caller's transaction.
CREATE FUNCTION streamview._do_swap(caller regrole, v streamview.views, target streamview.versions,
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
    PERFORM streamview._check_may_create(v, 'A swap');
    rel := streamview._view_relation(v);
    IF rel IS NULL THEN
        -- dropped by hand: made again, for the view's owner, where it was
        IF to_regclass(vname) IS NOT NULL THEN
            RAISE EXCEPTION 'relation % is not the view of stream view "%"', vname, v.name
                USING ERRCODE = 'duplicate_table',
                      DETAIL = 'The view that create_view made was dropped, and another relation has its name.',
                      HINT = format('Drop or rename %s, or drop the stream view with streamview.drop_view().', vname);
        END IF;
        EXECUTE format('CREATE VIEW %s AS %s', vname, target.view_sql);
        EXECUTE format('ALTER VIEW %s OWNER TO %s', vname, v.owner);
        rel := vname::regclass;
    ELSE
        vname := rel::text;
        SELECT c.relacl INTO acl FROM pg_class c WHERE c.oid = rel;
        BEGIN
            EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', vname, target.view_sql);
        EXCEPTION WHEN invalid_table_definition OR datatype_mismatch OR feature_not_supported THEN
            -- The column list changed: replace the view (grants are carried over).
            BEGIN
                EXECUTE format('DROP VIEW %s', vname);
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
    EXECUTE format('COMMENT ON VIEW %s IS %L', vname,
                   format('stream view (pg_streamview), version %s', target.version));

    SELECT * INTO live FROM streamview.versions x WHERE x.view_id = v.view_id AND x.state = 'live';
    UPDATE streamview.versions x SET state = 'caught_up' WHERE x.version_id = live.version_id;
    UPDATE streamview.versions x SET state = 'live', swapped_at = now(), swapped_by = caller::name
     WHERE x.version_id = target.version_id;
    INSERT INTO streamview.swaps (view_name, from_version, to_version, forced, is_rollback, swapped_by)
    VALUES (v.name, live.version, target.version, forced, is_rollback, caller::name);
    PERFORM streamview._notify_launcher();
END $$;

CREATE FUNCTION streamview._swap_impl(caller regrole, view_name text, version int, force bool DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v streamview.views;
BEGIN
    v := streamview._lock_view(caller, view_name);
    PERFORM streamview._do_swap(caller, v, streamview._get_version(v, version), force, false);
END $$;

CREATE FUNCTION streamview._rollback_impl(caller regrole, view_name text)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v    streamview.views;
    prev int;
BEGIN
    v := streamview._lock_view(caller, view_name);
    SELECT s.from_version INTO prev FROM streamview.swaps s
     WHERE s.view_name = v.name ORDER BY s.swap_id DESC LIMIT 1;
    IF prev IS NULL THEN
        RAISE EXCEPTION 'stream view "%" has no previous version to roll back to', view_name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'It has never been swapped.';
    END IF;
    PERFORM streamview._do_swap(caller, v, streamview._get_version(v, prev), true, true);
    RETURN prev;
END $$;

CREATE FUNCTION streamview._drop_version_impl(caller regrole, view_name text, version int)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v streamview.views;
    r streamview.versions;
BEGIN
    v := streamview._lock_view(caller, view_name);
    r := streamview._get_version(v, version);
    IF r.state = 'live' THEN
        RAISE EXCEPTION 'cannot drop version % of stream view "%" because it is live', version, view_name
            USING ERRCODE = 'object_in_use',
                  HINT = 'Swap another version in first with streamview.swap() or streamview.rollback(), or drop the whole view with streamview.drop_view().';
    ELSIF r.state = 'retired' THEN
        RAISE EXCEPTION 'version % of stream view "%" was already dropped', version, view_name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF r.table_name IS NOT NULL THEN
        EXECUTE format('DROP TABLE IF EXISTS %s', r.table_name);
    END IF;
    UPDATE streamview.versions x SET state = 'retired', retired_at = now(), retired_by = caller::name,
                                     table_name = NULL
     WHERE x.version_id = r.version_id;
    DELETE FROM streamview.offsets o WHERE o.version_id = r.version_id;
    DELETE FROM streamview.seen_ids s WHERE s.version_id = r.version_id;
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
    idle_timeout         text DEFAULT NULL,
    max_future           text DEFAULT '1 day')
RETURNS void
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text, text) IS
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

CREATE FUNCTION streamview.rebuild(view_name text, query text DEFAULT NULL,
                                   start_from text DEFAULT 'earliest', max_rate bigint DEFAULT NULL)
RETURNS int
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.rebuild(text, text, text, bigint) IS
'starts a new version of a stream view that replays the log (optionally with a new query); returns its number';

CREATE FUNCTION streamview.wait_for(view_name text, version int, timeout interval DEFAULT '10 minutes')
RETURNS text
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.wait_for(text, int, interval) IS
'waits until a version has caught up with the live one (reporting progress), fails or times out';

CREATE FUNCTION streamview.add_check(view_name text, name text, predicate text)
RETURNS void
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.add_check(text, text, text) IS
'registers an invariant (a boolean expression over the view''s columns) that validate() checks';

CREATE FUNCTION streamview.drop_check(view_name text, name text)
RETURNS void
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.drop_check(text, text) IS
'removes an invariant registered with add_check()';

CREATE FUNCTION streamview.validate(view_name text, version int, expect_identical bool DEFAULT false)
RETURNS TABLE ("check" text, passed bool, detail text)
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE ROWS 8;
COMMENT ON FUNCTION streamview.validate(text, int, bool) IS
'checks a version against the live one (offsets, ledger, differences, invariants) and records the result';

CREATE FUNCTION streamview.swap(view_name text, version int, force bool DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.swap(text, int, bool) IS
'makes a validated version the one the view reads, atomically; the old version stays maintained';

CREATE FUNCTION streamview.rollback(view_name text)
RETURNS int
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.rollback(text) IS
'swaps the view back to the version it read before the last swap; returns that version';

CREATE FUNCTION streamview.drop_version(view_name text, version int)
RETURNS void
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.drop_version(text, int) IS
'retires a version that is not live: stops maintaining it and drops its table; its history is kept';

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
       s.owner, s.created_at, s.last_error, s.last_error_at, s.max_future
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
       -- a version's own failure, or what currently stops its source's worker
       coalesce(ver.error, CASE WHEN ver.state IN ('live', 'caught_up') THEN s.last_error END) AS error
  FROM streamview.versions ver
  JOIN streamview.views v ON v.view_id = ver.view_id
  JOIN streamview.sources s ON s.source_id = v.source_id
  LEFT JOIN streamview.offsets o ON o.version_id = ver.version_id
 GROUP BY ver.version_id, ver.view_name, ver.version, ver.state, ver.watermark, s.name,
          ver.table_name, ver.error, s.last_error;

-- Progress of rebuilds: events replayed out of those in the log when asked.
CREATE VIEW streamview.rebuilds AS
SELECT ver.view_name, ver.version, ver.state, p.done, p.total,
       CASE WHEN p.total > 0 THEN round(100.0 * least(p.done, p.total) / p.total, 1)
            WHEN ver.state <> 'replaying' THEN 100.0 END AS percent,
       CASE WHEN p.elapsed > 0 THEN round(p.done / p.elapsed) END::bigint AS rate,
       CASE WHEN ver.state = 'replaying' AND p.done > 0 AND p.elapsed > 0
            THEN make_interval(secs => greatest(p.total - p.done, 0) / (p.done / p.elapsed)) END AS eta,
       ver.max_rate, ver.replay_started_at, ver.caught_up_at, ver.error
  FROM streamview.versions ver
  JOIN streamview.views v ON v.view_id = ver.view_id
  LEFT JOIN LATERAL (
      SELECT sum(greatest(coalesce(mine.next_offset, s.start) - s.start, 0))::bigint AS done,
             sum(greatest(coalesce(live.log_end, live.next_offset, mine.log_end, s.start) - s.start, 0))::bigint AS total,
             extract(epoch FROM coalesce(ver.caught_up_at, clock_timestamp()) - ver.replay_started_at) AS elapsed
        FROM (SELECT e.key::int AS partition, e.value::bigint AS start
                FROM jsonb_each_text(ver.start_offsets) e) s
        LEFT JOIN streamview.offsets mine
               ON mine.version_id = ver.version_id AND mine.partition = s.partition
        LEFT JOIN streamview.versions lv ON lv.view_id = ver.view_id AND lv.state = 'live'
        LEFT JOIN streamview.offsets live
               ON live.version_id = lv.version_id AND live.partition = s.partition) p ON true
 WHERE (ver.start_offsets IS NOT NULL OR ver.state = 'replaying') AND ver.state <> 'retired';

GRANT SELECT ON streamview.status, streamview.partitions, streamview.source_list,
                streamview.rebuilds TO PUBLIC;

-- Dead letters and worker errors hold the topic's data: each role sees the
-- rows of the sources it owns (or is a member of the owner of).  Which role
-- owns which source is no secret: the policies read it from
-- streamview.source_list, which shows it to everyone.
ALTER TABLE streamview.dead_letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE streamview.worker_errors ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_reads ON streamview.dead_letters FOR SELECT
    USING (EXISTS (SELECT 1 FROM streamview.source_list s
                    WHERE s.name = dead_letters.source_name AND pg_catalog.pg_has_role(s.owner, 'USAGE')));
CREATE POLICY owner_reads ON streamview.worker_errors FOR SELECT
    USING (EXISTS (SELECT 1 FROM streamview.source_list s
                    WHERE s.name = worker_errors.source_name AND pg_catalog.pg_has_role(s.owner, 'USAGE')));
-- A validation's detail quotes rows and totals of the versions it compared:
-- the view's owner (and its members) may read it, like the versions' tables.
ALTER TABLE streamview.validations ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_reads ON streamview.validations FOR SELECT
    USING (EXISTS (SELECT 1 FROM streamview.views v
                    WHERE v.name = validations.view_name AND pg_catalog.pg_has_role(v.owner, 'USAGE')));
GRANT USAGE ON SCHEMA streamview TO PUBLIC;

-- Mutators are for roles the DBA chooses: a stream source opens a network
-- connection from inside the server, and a view starts a worker.
REVOKE ALL ON FUNCTION streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text, text),
                       streamview.drop_source(text, bool),
                       streamview.create_view(text, text, text),
                       streamview.drop_view(text),
                       streamview.rebuild(text, text, text, bigint),
                       streamview.wait_for(text, int, interval),
                       streamview.add_check(text, text, text),
                       streamview.drop_check(text, text),
                       streamview.validate(text, int, bool),
                       streamview.swap(text, int, bool),
                       streamview.rollback(text),
                       streamview.drop_version(text, int) FROM PUBLIC;
