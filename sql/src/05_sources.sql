-- Sources: create_source, alter_source, drop_source, grant_usage,
-- revoke_usage, pause, resume.
--
-- Each public function of the API is the C dispatcher streamview_api_dispatch:
-- it records the calling role and its search_path, then runs
-- streamview._<name>_impl(caller, ...), declared right below it, as the
-- extension owner, so that catalog tables stay closed to PUBLIC while objects
-- a user creates belong to that user.

-- One declared column of a source: its spec ("type", or {"type", "path",
-- "default", "required"}) checked, as the row source_columns keeps for it
-- (without source_id and attnum).  create_source records it; alter_source
-- compares a definition given to it with the one recorded.
CREATE FUNCTION streamview_internal._column_spec(name text, declared jsonb)
RETURNS streamview.source_columns
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    spec     jsonb;
    ctype    regtype;
    cpath    text[];
    cdefault text;
    col      streamview.source_columns;
BEGIN
    IF name !~ '^[A-Za-z_][A-Za-z0-9_]*$' OR name LIKE 'sv\_%' THEN
        RAISE EXCEPTION 'invalid column name "%"', name
            USING ERRCODE = 'invalid_name',
                  HINT = 'Column names have only letters, digits and underscores, and do not start with "sv_"; map other JSON fields with "path".';
    END IF;
    spec := CASE jsonb_typeof(declared)
                WHEN 'string' THEN jsonb_build_object('type', declared)
                WHEN 'object' THEN declared
            END;
    IF spec IS NULL OR NOT spec ? 'type' THEN
        RAISE EXCEPTION 'column "%" has no type', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Write "column":"type" or "column":{"type":"...","path":"a.b","default":...,"required":true}.';
    END IF;
    BEGIN
        ctype := (spec->>'type')::regtype;
    EXCEPTION WHEN undefined_object OR syntax_error OR invalid_text_representation THEN
        ctype := NULL;
    END;
    IF ctype IS NULL OR NOT ctype = ANY (streamview_internal._supported_types()) THEN
        RAISE EXCEPTION 'column "%" has unsupported type "%"', name, spec->>'type'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Supported types: ' || array_to_string(streamview_internal._supported_types()::text[], ', ') || '.';
    END IF;
    cpath := string_to_array(coalesce(spec->>'path', name), '.');
    IF array_position(cpath, '') IS NOT NULL THEN
        RAISE EXCEPTION 'column "%" has an invalid path "%"', name, spec->>'path'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A path names nested fields separated by dots, such as "payload.amount".';
    END IF;
    cdefault := CASE WHEN spec ? 'default' AND jsonb_typeof(spec->'default') <> 'null'
                     THEN spec->>'default' END;
    IF cdefault IS NOT NULL THEN
        BEGIN
            EXECUTE format('SELECT %L::%s', cdefault, ctype);
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'default for column "%" is not a valid %: %', name, ctype, cdefault
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Write the default as %s input, as a JSON string or number.', ctype);
        END;
    END IF;
    col.name := name;
    col.type := ctype;
    col.path := cpath;
    col.default_value := cdefault;
    col.required := coalesce((spec->>'required')::bool, false);
    RETURN col;
END $$;

-- One declared column of a new source, checked and recorded as attribute attnum.
CREATE FUNCTION streamview_internal._add_column(sid int, attnum int, name text, declared jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col streamview.source_columns := streamview_internal._column_spec(name, declared);
BEGIN
    col.source_id := sid;
    col.attnum := attnum;
    INSERT INTO streamview.source_columns SELECT (col).*;
END $$;

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
    max_future           text DEFAULT '1 day',
    partitions           text DEFAULT NULL,
    workers              int DEFAULT 1,
    format               text DEFAULT 'json',
    schema_registry      text DEFAULT NULL,
    archive              text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text, text, text, int, text, text, text) IS
'declares a Kafka topic of JSON, Avro or Protobuf messages as a stream source (optionally archiving what it reads); returns the Kafka consumer group its worker uses';

CREATE FUNCTION streamview_internal._create_source_impl(
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
    max_future           text DEFAULT '1 day',
    partitions           text DEFAULT NULL,
    workers              int DEFAULT 1,
    format               text DEFAULT 'json',
    schema_registry      text DEFAULT NULL,
    archive              text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid      int;
    col      record;
    n        int := 0;
    ooo      interval;
    idle     interval;
    future   interval;
    keep     interval;
    parts    int4multirange := streamview_internal._partitions_arg(partitions);
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
    PERFORM streamview_internal._require(event_time, 'event_time');
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
    PERFORM streamview_internal._check_options(caller, options);
    PERFORM streamview_internal._format_args(format, schema_registry, options);
    PERFORM streamview_internal._workers_arg(workers, name, event_id);
    PERFORM streamview_internal._check_worker_quota(caller, 'a new source', workers);
    ooo := streamview_internal._interval_arg(max_out_of_orderness, 'max_out_of_orderness', true);
    IF idle_timeout IS NOT NULL THEN
        idle := streamview_internal._interval_arg(idle_timeout, 'idle_timeout');
    END IF;
    IF max_future IS NOT NULL THEN
        future := streamview_internal._max_future_arg(max_future);
    END IF;
    IF archive IS NOT NULL THEN
        keep := streamview_internal._archive_arg(archive);
    END IF;

    INSERT INTO streamview.sources (name, brokers, topic, event_time, event_id,
                                    max_out_of_orderness, idle_timeout, options, owner, max_future,
                                    partitions, workers, format, schema_registry, archive)
    VALUES (name, brokers, topic, event_time, event_id, ooo, idle, options,
            caller, future, parts, workers, format, schema_registry, keep)
    RETURNING source_id INTO sid;
    IF keep IS NOT NULL THEN
        PERFORM streamview_internal._archive_create(sid);
    END IF;

    FOR col IN SELECT e.key, e.value FROM jsonb_each(columns) e ORDER BY e.key LOOP
        n := n + 1;
        PERFORM streamview_internal._add_column(sid, n, col.key, col.value);
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
    PERFORM streamview_internal._notify_launcher();
    -- the consumer group the broker's ACLs must let the worker use
    RETURN streamview_internal._consumer_group(name);
END $$;

-- workers as create_source and alter_source take it: 1 to 64 source
-- workers (a worker per partition at most is useful; more than 64 would be
-- a mistake, each is a backend and a Kafka consumer).  A source with an
-- event_id keeps one: an id is a duplicate whichever partition applied it
-- first, which one worker decides alone, and N workers reading their own
-- partitions could each take the same id for new at the same time.
CREATE FUNCTION streamview_internal._workers_arg(workers int, source_name text, event_id text)
RETURNS int
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF workers IS NULL OR workers NOT BETWEEN 1 AND 64 THEN
        RAISE EXCEPTION 'workers must be between 1 and 64, not %', coalesce(workers::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'One worker reads every partition; use up to one per partition of the topic and per CPU core the server can spare.';
    END IF;
    IF workers > 1 AND event_id IS NOT NULL THEN
        RAISE EXCEPTION 'source "%" has an event_id: it is read by one worker', source_name
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'An event_id is a duplicate whichever partition it came in first; workers that each read their own partitions could all take it for new at once.',
                  HINT = 'Leave workers => 1 for a source with an event_id.';
    END IF;
    RETURN workers;
END $$;

-- max_future as create_source and alter_source take it: an interval, or
-- 'infinity' for no bound (NULL in the catalog: event times are not checked).
CREATE FUNCTION streamview_internal._max_future_arg(value text)
RETURNS interval
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF lower(btrim(value)) IN ('infinity', '+infinity') THEN
        RETURN NULL;
    END IF;
    RETURN streamview_internal._interval_arg(value, 'max_future');
END $$;

CREATE FUNCTION streamview.alter_source(
    name                 text,
    brokers              text  DEFAULT NULL,
    options              jsonb DEFAULT NULL,
    max_future           text  DEFAULT NULL,
    topic                text  DEFAULT NULL,
    columns              jsonb DEFAULT NULL,
    event_time           text  DEFAULT NULL,
    event_id             text  DEFAULT NULL,
    max_out_of_orderness text  DEFAULT NULL,
    partitions           text  DEFAULT NULL,
    workers              int   DEFAULT NULL,
    add_columns          jsonb DEFAULT NULL,
    archive              text  DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.alter_source(text, text, jsonb, text, text, jsonb, text, text, text, text, int, jsonb, text) IS
'changes a source''s brokers, options (merged: null removes one), max_future, partitions, workers, archive or columns (add_columns with defaults for old messages; columns no view reads may be dropped or changed); its workers read on with them from the stored offsets; returns the change''s id in streamview.source_changes (NULL if nothing changed)';

-- alter_source changes how a source connects and which columns it reads,
-- never what its messages mean: the stream views over it were built from
-- what was read with its topic, event_time, event_id and
-- max_out_of_orderness, and another one would change what they mean.
-- Each may be passed with the value the source has (a script may pass a
-- whole definition); another value is refused.  Columns are
-- _alter_columns's.
CREATE FUNCTION streamview_internal._check_definition_kept(src streamview.sources, topic text,
                                                  event_time text, event_id text,
                                                  max_out_of_orderness text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    what text;
BEGIN
    IF topic <> src.topic THEN
        RAISE EXCEPTION 'cannot change the topic of source "%"', src.name
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('Its stream views hold what was read from topic "%s", and their stored offsets are offsets in it.', src.topic),
                  HINT = 'Create a new source for the other topic with streamview.create_source(), and stream views over it.';
    END IF;
    what := CASE
        WHEN event_time <> src.event_time THEN 'event_time'
        WHEN event_id IS DISTINCT FROM src.event_id AND event_id IS NOT NULL THEN 'event_id'
        WHEN streamview_internal._interval_arg(max_out_of_orderness, 'max_out_of_orderness', true)
             <> src.max_out_of_orderness THEN 'max_out_of_orderness'
    END;
    IF what IS NOT NULL THEN
        RAISE EXCEPTION 'cannot change the % of source "%"', what, src.name
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('Every stream view over the source was built from messages read with its %s; another one would change what they mean.', what),
                  HINT = 'Create a new source with the new definition with streamview.create_source(), and stream views over it.';
    END IF;
END $$;

-- A column of a source as source_changes and versions.source_definition
-- show it: the spec create_source takes, written out in full.
CREATE FUNCTION streamview_internal._column_json(col streamview.source_columns)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('type', col.type::text, 'path', array_to_string(col.path, '.'),
                              'default', col.default_value, 'required', col.required)
$$;

-- The source's definition as a version is made with it
-- (versions.source_definition): what its messages are read with.
CREATE FUNCTION streamview_internal._source_definition(sid int)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = postgres
AS $$
    SELECT jsonb_build_object(
               'columns', (SELECT jsonb_object_agg(c.name, streamview_internal._column_json(c))
                             FROM streamview.source_columns c WHERE c.source_id = s.source_id),
               'event_time', s.event_time, 'event_id', s.event_id,
               'max_out_of_orderness', s.max_out_of_orderness::text,
               'max_future', s.max_future::text, 'change_id', s.last_change_id)
      FROM streamview.sources s WHERE s.source_id = sid
$$;

-- The first version that reads column `col` of source sid, as 'version N of
-- stream view "v"', or NULL when none does.  A version that is live, caught
-- up or replaying reads a column when its query names it (as a word, in any
-- case: a mention in a string counts too, which errs on the safe side), or
-- when the column is the source's event_time or event_id.  Retired and
-- failed versions are never read again.
CREATE FUNCTION streamview_internal._column_reader(sid int, col text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN col IN (s.event_time, s.event_id)
                THEN format('the source''s %s', CASE WHEN col = s.event_time THEN 'event_time' ELSE 'event_id' END)
                ELSE (SELECT format('version %s of stream view "%s"', x.version, x.view_name)
                        FROM streamview.versions x JOIN streamview.views w ON w.view_id = x.view_id
                       WHERE w.source_id = sid AND x.state IN ('live', 'caught_up', 'replaying')
                         AND x.query ~* ('(^|[^A-Za-z0-9_$])' || col || '($|[^A-Za-z0-9_$])')
                       ORDER BY x.view_name, x.version LIMIT 1) END
      FROM streamview.sources s WHERE s.source_id = sid
$$;

-- alter_source's columns => and add_columns =>, applied to the source's
-- columns; returns what changed, as source_changes keeps it (add_columns,
-- drop_columns, alter_columns), '{}' when nothing did.
--
-- add_columns adds columns (same spec as create_source's columns).  Messages
-- written before a producer sent the field lack it and read with the
-- column's default (NULL without one), so every message the source read
-- still reads: existing views go on as they are, and a new view, or a
-- rebuild, may use the column over old events.  A new column may not be
-- required: every old message would become a dead letter.
--
-- columns is the whole new set of columns.  A column it leaves out is
-- dropped, one it gives another spec (type, path, default, required) is
-- changed, one it adds is added as by add_columns; both are refused for a
-- column a version reads (_column_reader), with a hint.  A column no
-- version reads may be dropped or changed: messages are read with the new
-- set from the stored offsets on, and a rebuild reads history with it
-- (streamview.check_source tells first what it can read).
CREATE FUNCTION streamview_internal._alter_columns(src streamview.sources, columns jsonb, add_columns jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur      streamview.source_columns;
    col      streamview.source_columns;
    e        record;
    reader   text;
    added    jsonb := '{}';
    dropped  jsonb := '[]';
    altered  jsonb := '{}';
    attnum   int := (SELECT coalesce(max(c.attnum), 0) FROM streamview.source_columns c
                      WHERE c.source_id = src.source_id);
BEGIN
    IF columns IS NOT NULL AND (jsonb_typeof(columns) <> 'object' OR columns = '{}') THEN
        RAISE EXCEPTION 'columns must be a non-empty JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the source''s whole set of columns, each name mapped to its spec; or add columns with add_columns.';
    END IF;
    IF add_columns IS NOT NULL AND (jsonb_typeof(add_columns) <> 'object' OR add_columns = '{}') THEN
        RAISE EXCEPTION 'add_columns must be a non-empty JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Map each new column to its spec, e.g. ''{"channel":{"type":"text","default":"web"}}''.';
    END IF;
    IF columns IS NOT NULL AND add_columns IS NOT NULL AND columns ?| ARRAY(SELECT jsonb_object_keys(add_columns)) THEN
        RAISE EXCEPTION 'a column is both in columns and in add_columns'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give each column once: columns is the whole new set, add_columns only adds.';
    END IF;

    -- columns =>: drop and change first, then add what is new
    FOR cur IN SELECT * FROM streamview.source_columns c WHERE c.source_id = src.source_id
                ORDER BY c.attnum LOOP
        EXIT WHEN columns IS NULL;
        IF NOT columns ? cur.name THEN
            reader := streamview_internal._column_reader(src.source_id, cur.name);
            IF reader IS NOT NULL THEN
                RAISE EXCEPTION 'cannot drop column "%" of source "%": % reads it', cur.name, src.name, reader
                    USING ERRCODE = 'dependent_objects_still_exist',
                          DETAIL = 'A column is dropped only when no live, caught-up or replaying version of a stream view reads it.',
                          HINT = CASE WHEN reader LIKE 'the source%'
                                      THEN 'The event time and the event id of a source are part of what its views mean; create a new source instead.'
                                      ELSE 'Rebuild the view with a query without it, swap, and drop the older versions (streamview.drop_version) first; or keep the column in columns.' END;
            END IF;
            DELETE FROM streamview.source_columns c WHERE c.source_id = src.source_id AND c.attnum = cur.attnum;
            dropped := dropped || to_jsonb(cur.name);
            CONTINUE;
        END IF;
        col := streamview_internal._column_spec(cur.name, columns->cur.name);
        IF (col.type, col.path, col.default_value, col.required)
           IS NOT DISTINCT FROM (cur.type, cur.path, cur.default_value, cur.required) THEN
            CONTINUE;
        END IF;
        reader := streamview_internal._column_reader(src.source_id, cur.name);
        IF reader IS NOT NULL THEN
            RAISE EXCEPTION 'cannot change column "%" of source "%": % reads it', cur.name, src.name, reader
                USING ERRCODE = 'dependent_objects_still_exist',
                      DETAIL = format('It is %s now; the versions that read it were built from values read that way.',
                                      streamview_internal._column_json(cur)),
                      HINT = 'Add a column with the new spec under another name (add_columns), rebuild the view over it and swap; the old column can go once no version reads it.';
        END IF;
        UPDATE streamview.source_columns c
           SET type = col.type, path = col.path, default_value = col.default_value, required = col.required
         WHERE c.source_id = src.source_id AND c.attnum = cur.attnum;
        altered := altered || jsonb_build_object(cur.name, jsonb_build_object(
                       'old', streamview_internal._column_json(cur), 'new', streamview_internal._column_json(col)));
    END LOOP;

    FOR e IN SELECT k.key, k.value, k.from_add FROM (
                 SELECT c.key, c.value, false AS from_add FROM jsonb_each(columns) c
                  WHERE NOT EXISTS (SELECT 1 FROM streamview.source_columns x
                                     WHERE x.source_id = src.source_id AND x.name = c.key)
                 UNION ALL
                 SELECT a.key, a.value, true FROM jsonb_each(add_columns) a) k
              ORDER BY k.key LOOP
        IF e.from_add AND EXISTS (SELECT 1 FROM streamview.source_columns x
                                   WHERE x.source_id = src.source_id AND x.name = e.key) THEN
            RAISE EXCEPTION 'column "%" of source "%" already exists', e.key, src.name
                USING ERRCODE = 'duplicate_column',
                      HINT = 'add_columns adds new columns only; change one no view reads with columns =>.';
        END IF;
        col := streamview_internal._column_spec(e.key, e.value);
        IF col.required THEN
            RAISE EXCEPTION 'new column "%" of source "%" cannot be required', e.key, src.name
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Messages written before producers sent the field lack it: each would be a dead letter (missing_field), in every rebuild too.',
                      HINT = 'Give it a default instead ("default": ...); messages without the field read with it.';
        END IF;
        attnum := attnum + 1;
        col.source_id := src.source_id;
        col.attnum := attnum;
        INSERT INTO streamview.source_columns SELECT (col).*;
        added := added || jsonb_build_object(e.key, streamview_internal._column_json(col));
    END LOOP;

    -- A column added or changed must not read a field another column reads,
    -- nor one that holds another's (a path that is the start of another's):
    -- the other would read an object, or the field twice, and every message
    -- would become a dead letter.
    SELECT a.name AS key, b.name AS value INTO e FROM streamview.source_columns a JOIN streamview.source_columns b
        ON b.source_id = a.source_id AND b.attnum <> a.attnum
     WHERE a.source_id = src.source_id
       AND (added ? a.name OR altered ? a.name)
       AND (a.path = b.path[1:cardinality(a.path)] OR b.path = a.path[1:cardinality(b.path)])
     ORDER BY a.attnum, b.attnum LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'column "%" of source "%" reads the field of column "%", or one inside it', e.key, src.name, e.value
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Two columns would read the same field, or one a field that holds the other''s: every message would be read differently from now on.',
                  HINT = 'Give the column a "path" of its own.';
    END IF;

    RETURN CASE WHEN added = '{}' THEN '{}' ELSE jsonb_build_object('add_columns', added) END
        || CASE WHEN dropped = '[]' THEN '{}' ELSE jsonb_build_object('drop_columns', dropped) END
        || CASE WHEN altered = '{}' THEN '{}' ELSE jsonb_build_object('alter_columns', altered) END;
END $$;

-- What alter_source changed in a source's options, as source_changes keeps
-- it: one member per property that was set, changed or removed,
-- {"old": value, "new": value}, null where it was or is not set.  The
-- value of a secret (a property whose name says password, secret, key,
-- token, credential or jaas, or a PEM text) is written as "********", so
-- that the history never holds a password, not even a replaced one.
CREATE FUNCTION streamview_internal._options_change(old_options jsonb, new_options jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(k.key, jsonb_build_object(
               'old', CASE WHEN k.secret AND o.value IS NOT NULL THEN '"********"'::jsonb ELSE o.value END,
               'new', CASE WHEN k.secret AND n.value IS NOT NULL THEN '"********"'::jsonb ELSE n.value END)), '{}')
      FROM (SELECT u.key, u.key ~* '(password|secret|key|token|credential|jaas)|\.pem$' AS secret
              FROM (SELECT e.key FROM jsonb_each(old_options) e
                    UNION SELECT e.key FROM jsonb_each(new_options) e) u) k
      LEFT JOIN jsonb_each(old_options) o ON o.key = k.key
      LEFT JOIN jsonb_each(new_options) n ON n.key = k.key
     WHERE o.value IS DISTINCT FROM n.value
$$;

-- alter_source: NULL leaves an argument as it is.  options are merged into
-- the source's (a property set to JSON null is removed); the properties set
-- are checked as create_source checks options.  max_future => 'infinity'
-- turns the check off.  partitions => 'all' reads every partition again;
-- a partition taken out keeps its ledger rows, which stop holding the
-- watermark, and one added is read from the start of its log by every
-- version (docs/scaling.md).  workers splits the source's partitions over
-- that many workers (from the stored offsets, as after any change).
-- Records what changed in source_changes (intervals
-- in one style, whatever the caller's) and returns its id, or NULL when
-- nothing changed.  The launcher is woken at commit; the source's workers
-- notice the change at their next batch (or within a second) and stop
-- before applying anything, and the launcher starts them again at once,
-- with the new settings, from the stored offsets.
CREATE FUNCTION streamview_internal._alter_source_impl(
    caller               regrole,
    name                 text,
    brokers              text  DEFAULT NULL,
    options              jsonb DEFAULT NULL,
    max_future           text  DEFAULT NULL,
    topic                text  DEFAULT NULL,
    columns              jsonb DEFAULT NULL,
    event_time           text  DEFAULT NULL,
    event_id             text  DEFAULT NULL,
    max_out_of_orderness text  DEFAULT NULL,
    partitions           text  DEFAULT NULL,
    workers              int   DEFAULT NULL,
    add_columns          jsonb DEFAULT NULL,
    archive              text  DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = postgres
AS $$
DECLARE
    src     streamview.sources;
    opts    jsonb;
    future  interval;
    keep    interval;
    parts   int4multirange := streamview_internal._partitions_arg(partitions);
    changes jsonb := '{}';
    id      bigint;
BEGIN
    PERFORM streamview_internal._require(name, 'name');
    src := streamview_internal._lock_source(caller, name);
    PERFORM streamview_internal._check_definition_kept(src, topic, event_time, event_id, max_out_of_orderness);
    changes := streamview_internal._alter_columns(src, columns, add_columns);
    IF brokers = '' THEN
        RAISE EXCEPTION 'brokers must not be empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass brokers => ''host:port'' (several separated by commas), or NULL to keep them.';
    END IF;
    IF brokers <> src.brokers THEN
        changes := changes || jsonb_build_object('brokers', jsonb_build_object('old', src.brokers, 'new', brokers));
    END IF;
    IF options IS NOT NULL THEN
        IF jsonb_typeof(options) <> 'object' THEN
            RAISE EXCEPTION 'options must be a JSON object of librdkafka properties'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass the properties to change, such as ''{"sasl.password":"..."}''; null removes a property.';
        END IF;
        -- what the caller sets is checked, as create_source checks it; what
        -- it leaves alone was set by a role allowed to
        PERFORM streamview_internal._check_options(caller, jsonb_strip_nulls(options));
        opts := jsonb_strip_nulls(src.options || options);
        IF opts <> src.options THEN
            changes := changes || jsonb_build_object('options', streamview_internal._options_change(src.options, opts));
        END IF;
    END IF;
    IF max_future IS NOT NULL THEN
        future := streamview_internal._max_future_arg(max_future);
        IF future IS DISTINCT FROM src.max_future THEN
            changes := changes || jsonb_build_object('max_future', jsonb_build_object('old', src.max_future, 'new', future));
        END IF;
    END IF;
    IF partitions IS NOT NULL AND parts IS DISTINCT FROM src.partitions THEN
        changes := changes || jsonb_build_object('partitions', jsonb_build_object(
            'old', streamview_internal._partitions_text(src.partitions),
            'new', streamview_internal._partitions_text(parts)));
    END IF;
    IF workers IS NOT NULL AND workers <> src.workers THEN
        PERFORM streamview_internal._workers_arg(workers, src.name, src.event_id);
        IF workers > src.workers THEN
            PERFORM streamview_internal._check_worker_quota(caller, format('source "%s"', src.name),
                                                            workers - src.workers);
        END IF;
        changes := changes || jsonb_build_object('workers', jsonb_build_object('old', src.workers, 'new', workers));
    END IF;
    IF archive IS NOT NULL THEN
        keep := streamview_internal._archive_arg(archive);
        IF keep IS DISTINCT FROM src.archive THEN
            changes := changes || jsonb_build_object('archive', jsonb_build_object('old', src.archive, 'new', keep));
        END IF;
    END IF;
    IF changes = '{}' THEN
        RETURN NULL;
    END IF;

    UPDATE streamview.sources s
       SET brokers = CASE WHEN changes ? 'brokers' THEN _alter_source_impl.brokers ELSE s.brokers END,
           options = CASE WHEN changes ? 'options' THEN opts ELSE s.options END,
           max_future = CASE WHEN changes ? 'max_future' THEN future ELSE s.max_future END,
           partitions = CASE WHEN changes ? 'partitions' THEN parts ELSE s.partitions END,
           workers = CASE WHEN changes ? 'workers' THEN _alter_source_impl.workers ELSE s.workers END,
           archive = CASE WHEN changes ? 'archive' THEN keep ELSE s.archive END
     WHERE s.source_id = src.source_id;
    -- archive => 'off' drops what is archived; a new interval applies at the
    -- workers' next housekeeping
    IF changes ? 'archive' AND keep IS NULL THEN
        PERFORM streamview_internal._archive_drop(src.source_id);
    ELSIF changes ? 'archive' THEN
        PERFORM streamview_internal._archive_create(src.source_id);
    END IF;
    -- the stats of workers the source no longer has (they stop before
    -- anything else they would write commits)
    DELETE FROM streamview.version_stats st
     USING streamview.versions x JOIN streamview.views w ON w.view_id = x.view_id
     WHERE st.version_id = x.version_id AND w.source_id = src.source_id
       AND changes ? 'workers' AND st.worker >= _alter_source_impl.workers;
    INSERT INTO streamview.source_changes (source_id, source_name, changes, changed_by)
    VALUES (src.source_id, src.name, changes, caller::name)
    RETURNING change_id INTO id;
    -- the workers restart with it (SV_SOURCE_SETTINGS), columns too
    UPDATE streamview.sources s SET last_change_id = id WHERE s.source_id = src.source_id;
    -- where each version stands when the definition changes: what it read
    -- before was read with the old one (replay_dead_letters)
    IF changes ?| ARRAY['add_columns', 'drop_columns', 'alter_columns', 'max_future'] THEN
        UPDATE streamview.offsets o SET definition_mark = o.next_offset
          FROM streamview.versions x JOIN streamview.views w ON w.view_id = x.view_id
         WHERE o.version_id = x.version_id AND w.source_id = src.source_id;
    END IF;
    PERFORM streamview_internal._notify_launcher();
    RETURN id;
END $$;

CREATE FUNCTION streamview.check_source(name text, columns jsonb DEFAULT NULL)
RETURNS TABLE (reason text, messages bigint, sample_partition int, sample_offset bigint, sample_error text)
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE ROWS 6;

COMMENT ON FUNCTION streamview.check_source(text, jsonb) IS
'reads the whole history still available of a source with its columns or candidate ones, changing nothing; returns per outcome (ok, each dead-letter reason, unavailable) how many messages, with the first as a sample';

CREATE FUNCTION streamview_internal._check_source_read(source_id int, columns jsonb)
RETURNS TABLE (reason text, messages bigint, sample_partition int, sample_offset bigint, sample_error text)
AS 'MODULE_PATHNAME', 'streamview_check_source_read'
LANGUAGE C VOLATILE ROWS 6;

-- check_source: the answer to "can this definition read the history?".
-- The source's owner, and roles with USAGE on it, who may read its
-- messages through views anyway.  columns is a whole candidate set, as
-- create_source takes it, checked as create_source checks it (the event
-- time and event id columns among them); NULL: the source's own.  Reading
-- is done in this backend through the source's brokers and options; see
-- src/evolve.c.
CREATE FUNCTION streamview_internal._check_source_impl(caller regrole, name text, columns jsonb DEFAULT NULL)
RETURNS TABLE (reason text, messages bigint, sample_partition int, sample_offset bigint, sample_error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    src  streamview.sources;
    et   streamview.source_columns;
BEGIN
    PERFORM streamview_internal._require(name, 'name');
    SELECT s.* INTO src FROM streamview.sources s WHERE s.name = _check_source_impl.name;
    IF src.source_id IS NULL THEN
        RAISE EXCEPTION 'source "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT name FROM streamview.source_list.';
    END IF;
    PERFORM streamview_internal._check_usage(caller, src);
    IF columns IS NOT NULL THEN
        IF jsonb_typeof(columns) <> 'object' OR columns = '{}' THEN
            RAISE EXCEPTION 'columns must be a non-empty JSON object'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass the whole candidate set of columns, as create_source takes it; NULL checks the source''s own.';
        END IF;
        SELECT d.* INTO et FROM jsonb_each(columns) e, streamview_internal._column_spec(e.key, e.value) d
         WHERE d.name = src.event_time;
        IF et.name IS NULL OR et.type <> 'timestamptz'::regtype THEN
            RAISE EXCEPTION 'the columns must have the source''s event time column "%", of type timestamptz', src.event_time
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'A source''s event_time cannot change; keep its column in the candidate set.';
        END IF;
        IF src.event_id IS NOT NULL AND NOT columns ? src.event_id THEN
            RAISE EXCEPTION 'the columns must have the source''s event id column "%"', src.event_id
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'A source''s event_id cannot change; keep its column in the candidate set.';
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM streamview_internal._check_source_read(src.source_id, columns) r;
END $$;

CREATE FUNCTION streamview.replay_dead_letters(source_name text, since timestamptz DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.replay_dead_letters(text, timestamptz) IS
'applies the source''s dead letters (not too_late ones; those recorded since a time, if given) that its current definition now reads, as a rebuild with it would; returns how many read now; recorded in streamview.source_changes';

CREATE FUNCTION streamview_internal._replay_dead_letters_apply(source_id int, since timestamptz)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'streamview_replay_dead_letters_apply'
LANGUAGE C VOLATILE;

-- replay_dead_letters: after the source's definition was mended
-- (alter_source), the messages it could not read are read again, and
-- those that read now are applied to every version that consumed them
-- (src/evolve.c), classified as a rebuild classifies them; the live view
-- then equals a rebuild with the mended definition.  The source's owner
-- only.  The source's row is locked FOR UPDATE, as alter_source locks it:
-- its workers' batches wait (each locks it FOR KEY SHARE), and a second
-- replay waits, then finds no dead letter the first applied (they are
-- deleted with it, in one transaction).  The replay is recorded in
-- source_changes, and when it applied anything the source's last change
-- moves, so its workers restart with the ledger the replay wrote
-- (SV_SOURCE_SETTINGS).  A source with an event_id is refused: whether a
-- dead letter is a duplicate depends on the order its partitions were
-- read in, which is not the log's.
CREATE FUNCTION streamview_internal._replay_dead_letters_impl(caller regrole, source_name text,
                                                      since timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src     streamview.sources := streamview_internal._lock_source(caller, source_name);
    result  jsonb;
    id      bigint;
BEGIN
    IF src.event_id IS NOT NULL THEN
        RAISE EXCEPTION 'cannot replay the dead letters of source "%": it has an event_id', src.name
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Whether a replayed message is a duplicate depends on the order in which its partitions were read, which the log does not keep.',
                  HINT = 'Rebuild its views with streamview.rebuild(), validate and swap: a rebuild reads every message with the current definition.';
    END IF;
    result := streamview_internal._replay_dead_letters_apply(src.source_id, since);
    INSERT INTO streamview.source_changes (source_id, source_name, changes, changed_by)
    VALUES (src.source_id, src.name,
            jsonb_build_object('replay_dead_letters', result || jsonb_build_object('since', since)),
            caller::name)
    RETURNING change_id INTO id;
    IF (result->>'replayed')::bigint > 0 THEN
        UPDATE streamview.sources s SET last_change_id = id WHERE s.source_id = src.source_id;
        PERFORM streamview_internal._notify_launcher();
    END IF;
    RETURN (result->>'replayed')::bigint;
END $$;

CREATE FUNCTION streamview.drop_source(name text, cascade bool DEFAULT false)
RETURNS int
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.drop_source(text, bool) IS
'drops a source (and with cascade its views); its worker stops once the transaction commits; returns how many views were dropped';

CREATE FUNCTION streamview_internal._drop_source_impl(caller regrole, name text, cascade bool DEFAULT false)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid int;
    v   record;
    n   int := 0;
BEGIN
    SELECT s.source_id INTO sid FROM streamview.sources s WHERE s.name = _drop_source_impl.name FOR UPDATE;
    IF sid IS NULL THEN
        RAISE EXCEPTION 'source "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT name FROM streamview.source_list.';
    END IF;
    PERFORM streamview_internal._check_owner(caller, (SELECT s.owner FROM streamview.sources s WHERE s.source_id = sid),
                                    'source', name);
    FOR v IN SELECT w.name FROM streamview.views w WHERE w.source_id = sid LOOP
        IF NOT cascade THEN
            RAISE EXCEPTION 'cannot drop source "%" because view "%" depends on it', name, v.name
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = 'Drop the view first, or use drop_source(name, cascade => true).';
        END IF;
        PERFORM streamview_internal._drop_view_impl(caller, v.name);
        n := n + 1;
    END LOOP;
    DELETE FROM streamview.dead_letters d WHERE d.source_name = _drop_source_impl.name;
    PERFORM streamview_internal._archive_drop(sid);
    DELETE FROM streamview.sources s WHERE s.source_id = sid;
    PERFORM streamview_internal._notify_launcher();
    RETURN n;   -- the stream views dropped with it
END $$;

CREATE FUNCTION streamview.grant_usage(source_name text, to_role regrole)
RETURNS bool
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.grant_usage(text, regrole) IS
'lets a role (and its members) build stream views over a source; its options stay hidden; returns false if it had it already';

CREATE FUNCTION streamview.revoke_usage(source_name text, from_role regrole)
RETURNS bool
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.revoke_usage(text, regrole) IS
'takes back grant_usage: no new stream views or rebuilds over the source; existing views go on; returns false if there was no grant';

-- The source, locked, after its owner check (alter_source, grant_usage,
-- revoke_usage, pause, resume).  FOR UPDATE: the source's batches, which
-- lock its row FOR KEY SHARE, wait for the caller to commit, as does a
-- concurrent drop_source or another of these calls.
CREATE FUNCTION streamview_internal._lock_source(caller regrole, name text)
RETURNS streamview.sources
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src streamview.sources;
BEGIN
    PERFORM streamview_internal._require(name, 'source_name');
    SELECT s.* INTO src FROM streamview.sources s WHERE s.name = _lock_source.name FOR UPDATE;
    IF src.source_id IS NULL THEN
        RAISE EXCEPTION 'source "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT name FROM streamview.source_list.';
    END IF;
    PERFORM streamview_internal._check_owner(caller, src.owner, 'source', name);
    RETURN src;
END $$;

CREATE FUNCTION streamview_internal._grant_usage_impl(caller regrole, source_name text, to_role regrole)
RETURNS bool
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src streamview.sources := streamview_internal._lock_source(caller, source_name);
BEGIN
    PERFORM streamview_internal._require(to_role, 'to_role');
    INSERT INTO streamview.source_usage (source_id, grantee, granted_by)
    VALUES (src.source_id, to_role, caller)
    ON CONFLICT (source_id, grantee) DO NOTHING;
    RETURN FOUND;   -- false: the role had it already
END $$;

CREATE FUNCTION streamview_internal._revoke_usage_impl(caller regrole, source_name text, from_role regrole)
RETURNS bool
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src streamview.sources := streamview_internal._lock_source(caller, source_name);
BEGIN
    PERFORM streamview_internal._require(from_role, 'from_role');
    DELETE FROM streamview.source_usage u WHERE u.source_id = src.source_id AND u.grantee = from_role;
    RETURN FOUND;   -- false: the role had no grant
END $$;

CREATE FUNCTION streamview.pause(source_name text)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.pause(text) IS
'stops reading a source (its worker and its rebuilds'' workers) until resume(); returns when it was paused';

CREATE FUNCTION streamview.resume(source_name text)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.resume(text) IS
'reads a paused source again, from its stored offsets; returns when it had been paused (NULL if it was not)';

CREATE FUNCTION streamview_internal._pause_impl(caller regrole, source_name text)
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src streamview.sources := streamview_internal._lock_source(caller, source_name);
BEGIN
    IF src.paused_at IS NULL THEN
        UPDATE streamview.sources s SET paused_at = now() WHERE s.source_id = src.source_id
        RETURNING s.paused_at INTO src.paused_at;
        PERFORM streamview_internal._notify_launcher();
    END IF;
    RETURN src.paused_at;
END $$;

CREATE FUNCTION streamview_internal._resume_impl(caller regrole, source_name text)
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src streamview.sources := streamview_internal._lock_source(caller, source_name);
BEGIN
    IF src.paused_at IS NOT NULL THEN
        UPDATE streamview.sources s SET paused_at = NULL WHERE s.source_id = src.source_id;
        PERFORM streamview_internal._notify_launcher();
    END IF;
    RETURN src.paused_at;
END $$;

-- format and schema_registry as create_source takes them: JSON needs no
-- registry and takes none; Avro and Protobuf need one, an http or https
-- URL (docs/formats.md).  The registry's credentials are options, among
-- the secrets (schema.registry.username, schema.registry.password).
CREATE FUNCTION streamview_internal._format_args(format text, schema_registry text, options jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF format IS NULL OR format NOT IN ('json', 'avro', 'protobuf') THEN
        RAISE EXCEPTION 'unknown format "%"', coalesce(format, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'format is ''json'', ''avro'' or ''protobuf''.';
    END IF;
    IF format = 'json' AND schema_registry IS NOT NULL THEN
        RAISE EXCEPTION 'a JSON source takes no schema_registry'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass format => ''avro'' or ''protobuf'' for messages written with a schema registry.';
    END IF;
    IF format <> 'json' AND schema_registry IS NULL THEN
        RAISE EXCEPTION 'a source of format % needs a schema_registry', format
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Its messages carry the id of their schema, which the worker asks of the registry.',
                  HINT = 'Pass schema_registry => ''http://host:port''.';
    END IF;
    IF schema_registry IS NOT NULL AND schema_registry !~ '^https?://[^/?#@[:space:]]+(/[^?#[:space:]]*)?$' THEN
        RAISE EXCEPTION 'invalid schema_registry "%"', schema_registry
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'It is the URL of the registry''s REST API, http or https, without credentials.',
                  HINT = 'Pass schema_registry => ''http://host:port''; put credentials in options as schema.registry.username and schema.registry.password.';
    END IF;
    IF format = 'json' AND (options ? 'schema.registry.username' OR options ? 'schema.registry.password') THEN
        RAISE EXCEPTION 'a JSON source takes no schema registry credentials'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Leave schema.registry.username and schema.registry.password out of options.';
    END IF;
END $$;

-- librdkafka properties a source may set: create_source's, and those
-- alter_source sets.  Some would break the guarantees (offsets are
-- PostgreSQL's) and are refused to everyone; some run programs, load
-- libraries or read server files, so roles without superuser are held to a
-- list of connection and tuning properties, and to librdkafka's own bounds
-- (pg_streamview's, for the prefetch queue) on the memory a worker may take
-- for messages: a hostile broker or topic could fill a larger one.
CREATE FUNCTION streamview_internal._check_options(caller regrole, options jsonb)
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
    IF options IS NULL OR jsonb_typeof(options) <> 'object'
       OR EXISTS (SELECT 1 FROM jsonb_each(options) e WHERE jsonb_typeof(e.value) NOT IN ('string', 'number', 'boolean')) THEN
        RAISE EXCEPTION 'options must be a JSON object of librdkafka properties'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example ''{"security.protocol":"SASL_SSL"}''; values are strings, numbers or booleans.';
    END IF;
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
                          'schema.registry.username', 'schema.registry.password',
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
