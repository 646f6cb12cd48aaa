-- Internals shared by the API's implementations.  None is callable by PUBLIC.

-- Compiles a stream view query over a source and returns everything a
-- version needs, with its names in place (codegen.c): its definition, the
-- statements that make its table and unique index, its per-batch upsert and
-- the SELECT its view is while it is live.  The query is analysed as caller,
-- with caller_path as search_path.
CREATE FUNCTION streamview_internal._version_sql(caller regrole, caller_path text, source text, query text,
                                        table_name text, version_id int, lateness interval,
                                        OUT definition jsonb, OUT create_table text,
                                        OUT create_index text, OUT batch_sql text, OUT view_sql text)
AS 'MODULE_PATHNAME', 'streamview_version_sql'
LANGUAGE C VOLATILE;

-- The events a worker is applying to a version, one row per event and window
-- (batch.c): what the version's per-batch statement reads, from the worker's
-- memory.  Anywhere else, or for another version, it raises an error.  The
-- statement runs as the view's owner, so PUBLIC may execute it (see
-- 11_grants.sql).
CREATE FUNCTION streamview_internal._batch_rows(version_id int)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'streamview_batch_rows'
LANGUAGE C VOLATILE STRICT;

-- The partial rows a worker is merging into a version at the end of a batch
-- of several rounds (batch.c): what the version's merge statement reads.
-- Anywhere else, or for another version, it raises an error, as _batch_rows.
CREATE FUNCTION streamview_internal._batch_partials(version_id int)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'streamview_batch_partials'
LANGUAGE C VOLATILE STRICT;

-- A version's batch_sql as 0.2 runs it: a statement made by 0.1, which read
-- the temporary table pg_temp.sv_batch_<version_id>, reads _batch_rows
-- instead (codegen.c).  For the update from 0.1.
CREATE FUNCTION streamview_internal._batch_sql_0_2(version_id int)
RETURNS text
AS 'MODULE_PATHNAME', 'streamview_batch_sql_0_2'
LANGUAGE C VOLATILE STRICT;

-- The search_path of the API's caller, as the dispatcher found it.
CREATE FUNCTION streamview_internal._caller_search_path()
RETURNS text
AS 'MODULE_PATHNAME', 'streamview_caller_search_path_fn'
LANGUAGE C STABLE;

-- Wakes the launcher when the calling transaction commits.
CREATE FUNCTION streamview_internal._notify_launcher()
RETURNS void
AS 'MODULE_PATHNAME', 'streamview_notify_launcher'
LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION streamview_internal._notify_launcher() FROM PUBLIC;

-- The Kafka consumer group of a source on this server: cluster, database and
-- source name, so that a restored copy never shares the original's group.
CREATE FUNCTION streamview_internal._consumer_group(source_name text)
RETURNS text
AS 'MODULE_PATHNAME', 'streamview_consumer_group_fn'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

CREATE FUNCTION streamview_internal._supported_types()
RETURNS regtype[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ARRAY['text', 'varchar', 'bigint', 'integer', 'smallint', 'numeric',
                   'double precision', 'real', 'boolean', 'timestamptz', 'timestamp',
                   'date', 'uuid']::regtype[] $$;

CREATE FUNCTION streamview_internal._interval_arg(value text, what text, allow_zero bool DEFAULT false)
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
                  DETAIL = format('The value given was %s.', value),
                  HINT = 'Write an interval such as ''5 seconds''.';
    END IF;
    IF extract(month FROM result) <> 0 OR extract(year FROM result) <> 0 THEN
        RAISE EXCEPTION '% must not contain months or years', what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Months and years have no fixed length.',
                  HINT = 'Use days instead, such as ''30 days''.';
    END IF;
    RETURN result;
END $$;

-- partitions as create_source and alter_source take it: partition numbers
-- and ranges separated by commas ('0-7,12,14-15'), a range open at its end
-- ('16-': 16 and every later partition, including those the topic gains
-- later), or 'all' (NULL: every partition).  Returned normalized, as the
-- catalog keeps it (overlapping and adjacent ranges merged).
CREATE FUNCTION streamview_internal._partitions_arg(value text)
RETURNS int4multirange
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    item   text;
    m      text[];
    lo     numeric;
    hi     numeric;
    result int4multirange := '{}';
    hint   text := 'Write partition numbers and ranges separated by commas, such as ''0-7,12,14-15'', '
                   'or ''16-'' for partition 16 and every later one; ''all'' reads every partition.';
BEGIN
    IF value IS NULL OR lower(btrim(value)) = 'all' THEN
        RETURN NULL;
    END IF;
    IF btrim(value, ', ') = '' THEN
        RAISE EXCEPTION 'partitions must name at least one partition'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('"%s" names none.', value),
                  HINT = 'Pass ''all'' to read every partition of the topic.';
    END IF;
    FOREACH item IN ARRAY string_to_array(value, ',') LOOP
        m := regexp_match(item, '^\s*(-?\d+)\s*(-\s*(-?\d+)?)?\s*$');
        IF m IS NULL THEN
            RAISE EXCEPTION 'invalid partitions "%"', value
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('"%s" is not a partition number or a range of them.', btrim(item)),
                      HINT = hint;
        END IF;
        lo := m[1]::numeric;
        hi := CASE WHEN m[2] IS NULL THEN lo ELSE m[3]::numeric END;   -- NULL: open at its end
        IF lo < 0 OR hi < 0 THEN
            RAISE EXCEPTION 'invalid partitions "%"', value
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Partitions are numbered from 0: "%s" is negative.', btrim(item)),
                      HINT = hint;
        END IF;
        IF greatest(lo, hi) > 2147483646 THEN
            RAISE EXCEPTION 'invalid partitions "%"', value
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('"%s" is beyond the highest partition number, 2147483646.', btrim(item)),
                      HINT = 'Write ''N-'' for partition N and every later one.';
        END IF;
        IF hi < lo THEN
            RAISE EXCEPTION 'invalid partitions "%"', value
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('The range "%s" ends before it starts.', btrim(item)),
                      HINT = 'Write the lower partition number first, such as ''3-5''.';
        END IF;
        result := result + int4multirange(int4range(lo::int, (hi + 1)::int));
    END LOOP;
    RETURN result;
END $$;

-- A source's partitions as source_list and source_changes show them, in the
-- form partitions => takes ('0-7,12,14-15', '16-'); NULL: every partition.
CREATE FUNCTION streamview_internal._partitions_text(partitions int4multirange)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(CASE WHEN upper(r) IS NULL THEN lower(r) || '-'
                           WHEN upper(r) = lower(r) + 1 THEN lower(r)::text
                           ELSE lower(r) || '-' || (upper(r) - 1) END, ',' ORDER BY lower(r))
      FROM unnest(partitions) r
$$;

-- Does a source with these partitions (NULL: all) read partition p?  What
-- streamview_source_reads_partition (catalog.c) answers in the worker,
-- for the monitoring views and the catch-up test.
CREATE FUNCTION streamview_internal._reads_partition(partitions int4multirange, p int)
RETURNS bool
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT partitions IS NULL OR partitions @> p $$;

-- Each source runs its workers, and each running rebuild one: a role that
-- is not a superuser may have streamview.max_workers_per_role of them, so
-- that no grantee can take every worker slot of the server.
CREATE FUNCTION streamview_internal._check_worker_quota(caller regrole, what text, wanted int DEFAULT 1)
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
    -- a source takes as many workers as it has (sources.workers)
    SELECT (SELECT coalesce(sum(s.workers), 0) FROM streamview.sources s WHERE s.owner = caller)
         + (SELECT count(*) FROM streamview.versions x JOIN streamview.views w USING (view_id)
             WHERE w.owner = caller AND x.state = 'replaying')
      INTO used;
    IF used + wanted > most THEN
        RAISE EXCEPTION 'role % may not start another worker for %', caller, what
            USING ERRCODE = 'configuration_limit_exceeded',
                  DETAIL = format('Its sources and running rebuilds have %s workers, %s more were asked for, and streamview.max_workers_per_role is %s.',
                                  used, wanted, most),
                  HINT = 'Drop a source, lower a source''s workers or wait for a rebuild to finish, or ask a superuser to raise streamview.max_workers_per_role.';
    END IF;
END $$;

CREATE FUNCTION streamview_internal._check_owner(caller regrole, owner regrole, kind text, name text)
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

-- USAGE on a source: its owner (and the owner role's members) and the roles
-- it was granted to (streamview.grant_usage) may build stream views over it.
CREATE FUNCTION streamview_internal._check_usage(role regrole, src streamview.sources)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_has_role(role, src.owner, 'USAGE')
       OR EXISTS (SELECT 1 FROM streamview.source_usage u
                   WHERE u.source_id = src.source_id AND pg_has_role(role, u.grantee, 'USAGE')) THEN
        RETURN;
    END IF;
    RAISE EXCEPTION 'permission denied for source "%"', src.name
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('The source is owned by %s, who has not granted USAGE on it to %s.', src.owner, role),
              HINT = format('Its owner can run: SELECT streamview.grant_usage(%L, %L);', src.name, role::text);
END $$;

-- The schema an unqualified CREATE VIEW of the caller would have used.
CREATE FUNCTION streamview_internal._caller_schema()
RETURNS name
AS 'MODULE_PATHNAME', 'streamview_caller_schema'
LANGUAGE C STABLE;

-- Finds which source a query reads (the single relation in its FROM clause).
CREATE FUNCTION streamview_internal._query_source(query text)
RETURNS text
AS 'MODULE_PATHNAME', 'streamview_query_source'
LANGUAGE C STABLE STRICT;

-- The relation of stream view v, as create_view (or the last swap) made it:
-- NULL when it was dropped by hand.  An error if it now belongs to another
-- role: the API acts on it as the extension owner, on behalf of v's owner.
CREATE FUNCTION streamview_internal._view_relation(v streamview.views)
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
CREATE FUNCTION streamview_internal._check_may_create(v streamview.views, what text)
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

-- Runs one SELECT returning jsonb as role, restricted (see api.c).  Every
-- query that reads a user's table or evaluates a user's expression goes
-- through it: the implementations themselves run as the extension owner.
CREATE FUNCTION streamview_internal._run_as(role regrole, query text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'streamview_run_as'
LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION streamview_internal._count_as(role regrole, query text)
RETURNS bigint
LANGUAGE sql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ SELECT (streamview_internal._run_as(role, format('SELECT to_jsonb(q.c) FROM (%s) AS q(c)', query)))::text::bigint $$;

-- The view, locked against concurrent changes, after an ownership check.
CREATE FUNCTION streamview_internal._lock_view(caller regrole, view_name text, lock bool DEFAULT true)
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
    PERFORM streamview_internal._check_owner(caller, v.owner, 'stream view', view_name);
    RETURN v;
END $$;

CREATE FUNCTION streamview_internal._get_version(v streamview.views, version int)
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

-- Runs a statement that locks a user-visible relation exclusively (a view
-- being swapped, a table being dropped) with lock_timeout set to
-- streamview.lock_timeout, so that a long-running reader makes the call fail
-- with a clear error instead of hanging (and holding the view's catalog row,
-- which the source's worker waits for).  The caller's lock_timeout is put
-- back afterwards.
CREATE FUNCTION streamview_internal._exclusive(stmt text, what text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    saved   text := current_setting('lock_timeout');
    bounded text := coalesce(nullif(current_setting('streamview.lock_timeout', true), ''), '10s');
BEGIN
    PERFORM set_config('lock_timeout', bounded, true);
    BEGIN
        EXECUTE stmt;
    EXCEPTION WHEN lock_not_available THEN
        RAISE EXCEPTION '% is in use', what
            USING ERRCODE = 'lock_not_available',
                  DETAIL = format('Another session holds a lock on it (a long-running query, or an open '
                                  'transaction that read it), and streamview.lock_timeout (%s) passed.', bounded),
                  HINT = 'Try again when that session is done, or raise streamview.lock_timeout.';
    END;
    PERFORM set_config('lock_timeout', saved, true);
END $$;

-- A required argument that was given as NULL: a clear error, before anything
-- is created (instead of a not-null violation from a catalog table).
CREATE FUNCTION streamview_internal._require(value anyelement, what text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION '% must not be null', what
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = format('Pass %s; see the reference for its form.', what);
    END IF;
END $$;

-- Retention of the catalog's history, run by the launcher (launcher.c) with
-- the streamview.*_retention settings; NULL keeps that history for ever.
-- What other work reads stays: the latest validation run of a version (swap
-- accepts a version by it) and the newest offset mark of a partition (a
-- rebuild from a point in time starts at the last mark before it).
CREATE FUNCTION streamview_internal._apply_retention(dead_letters_age interval, worker_errors_age interval,
                                            validations_age interval, offset_marks_age interval)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    IF dead_letters_age IS NOT NULL THEN
        DELETE FROM streamview.dead_letters d WHERE d.recorded_at < now() - dead_letters_age;
    END IF;
    IF worker_errors_age IS NOT NULL THEN
        DELETE FROM streamview.worker_errors e WHERE e.occurred_at < now() - worker_errors_age;
    END IF;
    IF validations_age IS NOT NULL THEN
        DELETE FROM streamview.validations x
         WHERE x.validated_at < now() - validations_age
           AND x.run < (SELECT max(y.run) FROM streamview.validations y
                         WHERE y.view_name = x.view_name AND y.version = x.version);
    END IF;
    -- Windows of views with a retention (set_retention): per version, as
    -- the view's owner (the table is the owner's, and so are its triggers),
    -- one view's failure reported and the others' retention still done.
    FOR r IN SELECT v.name, v.owner, v.retention, x.version, x.table_name, x.watermark
               FROM streamview.views v JOIN streamview.versions x ON x.view_id = v.view_id
              WHERE v.retention IS NOT NULL AND x.table_name IS NOT NULL
                AND x.watermark IS NOT NULL AND x.state <> 'retired'
              ORDER BY x.version_id LOOP
        BEGIN
            PERFORM streamview_internal._run_as(r.owner, format(
                'WITH d AS (DELETE FROM %s WHERE window_start < %L AND window_end < %L RETURNING 1) '
                'SELECT to_jsonb(count(*)) FROM d',
                r.table_name, r.watermark - r.retention, r.watermark - r.retention));
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'could not apply the retention of stream view "%" version %: %', r.name, r.version, SQLERRM;
        END;
    END LOOP;
    IF offset_marks_age IS NOT NULL THEN
        DELETE FROM streamview.offset_marks m
         WHERE m.max_event_time < now() - offset_marks_age
           AND m.next_offset < (SELECT max(n.next_offset) FROM streamview.offset_marks n
                                 WHERE n.source_id = m.source_id AND n.partition = m.partition);
    END IF;
END $$;
