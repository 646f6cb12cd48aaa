-- Rebuilds: rebuild (from the start of the log or a point in time), wait_for.

CREATE FUNCTION streamview.rebuild(view_name text, query text DEFAULT NULL,
                                   start_from text DEFAULT 'earliest', max_rate bigint DEFAULT NULL,
                                   accept_data_loss bool DEFAULT false)
RETURNS int
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.rebuild(text, text, text, bigint, bool) IS
'starts a new version of a stream view that replays the log, from the archive where Kafka no longer has it (optionally with a new query); returns its number';

CREATE FUNCTION streamview_internal._rebuild_impl(caller regrole, view_name text, query text DEFAULT NULL,
                                         start_from text DEFAULT 'earliest', max_rate bigint DEFAULT NULL,
                                         accept_data_loss bool DEFAULT false)
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
    v := streamview_internal._lock_view(caller, view_name);
    PERFORM streamview_internal._check_may_create(v, 'A rebuild');
    PERFORM streamview_internal._check_usage(v.owner, s) FROM streamview.sources s WHERE s.source_id = v.source_id;
    PERFORM streamview_internal._check_worker_quota(v.owner, 'a rebuild');
    IF max_rate > 1000000000 THEN
        RAISE EXCEPTION 'max_rate must be at most 1000000000 events per second'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given was %s.', max_rate),
                  HINT = 'Pass NULL for no limit.';
    END IF;
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
    live := streamview_internal._live_version(v.view_id);
    SELECT max(x.version) + 1 INTO ver FROM streamview.versions x WHERE x.view_id = v.view_id;
    vrow := streamview_internal._create_version(caller, v.view_id, ver, coalesce(query, live.query), 'replaying');
    UPDATE streamview.versions x SET max_rate = _rebuild_impl.max_rate,
                                     accept_data_loss = coalesce(_rebuild_impl.accept_data_loss, false)
     WHERE x.version_id = vrow;
    IF since IS NOT NULL THEN
        PERFORM streamview_internal._start_from_time(v, live, vrow, since);
    END IF;
    IF NOT coalesce(accept_data_loss, false) THEN
        PERFORM streamview_internal._check_replay_complete(v, vrow);
    END IF;
    PERFORM streamview_internal._notify_launcher();
    RETURN ver;
END $$;

-- Before a rebuild starts: would its replay miss messages, because Kafka no
-- longer has them (streamview.log_starts, as the source's workers last
-- heard) and the archive does not hold them either?  Then it is refused,
-- naming the partitions and offsets, unless the caller accepts it
-- (accept_data_loss => true).  The replay worker checks again with what the
-- brokers answer when it starts (replay.c).  vrow's offsets say where the
-- replay starts (none: the start of the log); `what` names the call in the
-- error (rebuild, restore).
CREATE FUNCTION streamview_internal._check_replay_complete(v streamview.views, vrow int, what text DEFAULT 'rebuild')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    missing text;
BEGIN
    SELECT streamview_internal._archive_missing_text(v.source_id, array_agg(l.partition ORDER BY l.partition),
                                                     array_agg(o.next_offset ORDER BY l.partition),
                                                     array_agg(l.log_start ORDER BY l.partition))
      INTO missing
      FROM streamview.log_starts l
      JOIN streamview.sources s ON s.source_id = l.source_id
      LEFT JOIN streamview.offsets o ON o.version_id = vrow AND o.partition = l.partition
     WHERE l.source_id = v.source_id
       AND streamview_internal._reads_partition(s.partitions, l.partition);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'cannot % stream view "%": its replay would miss messages that Kafka no longer keeps', what, v.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Neither the topic''s log nor the source''s archive has %s.', missing),
                  HINT = 'Keep an archive of the source (alter_source(archive => ...)) or load the missing messages '
                         'into streamview.archive (docs/archive.md); or pass accept_data_loss => true to replay what is left.';
    END IF;
END $$;

-- rebuild(start_from => time): windows starting before the cut (the time,
-- aligned down to the new version's slide, on its time zone's wall clock if
-- it has one) are carried over from the live version, where they must be
-- final; each partition is replayed from the last offset mark whose event
-- time is before the cut, with that mark's event-time history, and the
-- replay skips windows before the cut.
CREATE FUNCTION streamview_internal._start_from_time(v streamview.views, live streamview.versions,
                                            vrow int, since timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cand      streamview.versions;
    cut       timestamptz;
    reach     timestamptz;
    cols_live text;
    cols_new  text;
BEGIN
    SELECT * INTO cand FROM streamview.versions x WHERE x.version_id = vrow;
    IF cand.window_time_zone IS NULL THEN
        cut := streamview.tumble(since, cand.window_slide);
    ELSE
        cut := streamview.tumble(since, cand.window_slide, cand.window_time_zone, cand.window_origin);
    END IF;
    -- how far the windows that start before the cut reach, in either version
    SELECT max(CASE WHEN (x.v).window_time_zone IS NULL THEN cut + (x.v).window_size
                    ELSE (SELECT max(w.window_end)
                            FROM streamview_internal._window_spans(cut - interval '1 microsecond', (x.v).window_size,
                                                          (x.v).window_slide, (x.v).window_time_zone,
                                                          (x.v).window_origin) w) END)
      INTO reach FROM (VALUES (live), (cand)) AS x(v);
    IF live.watermark IS NULL OR reach + v.allowed_lateness > live.watermark THEN
        RAISE EXCEPTION 'cannot rebuild stream view "%" from %: its windows there are not final yet', v.name, since
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Windows before the cut are carried over from the live version, so they must be final: '
                                  'the end of every window that starts before the cut, plus the allowed lateness, must not pass the watermark (%s).',
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
    PERFORM streamview_internal._run_as(v.owner,
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

CREATE FUNCTION streamview.wait_for(view_name text, version int, timeout interval DEFAULT '10 minutes')
RETURNS text
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.wait_for(text, int, interval) IS
'waits until a version has caught up with the live one (reporting progress), fails or times out';

CREATE FUNCTION streamview_internal._wait_for_impl(caller regrole, view_name text, version int,
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
    r := streamview_internal._get_version(v, version);
    PERFORM streamview_internal._require(timeout, 'timeout');
    IF timeout <= interval '0' THEN
        RAISE EXCEPTION 'timeout must be positive'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given was %s.', timeout),
                  HINT = 'Pass how long to wait, such as ''10 minutes''.';
    END IF;
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
        IF r.state = 'live' OR (r.state = 'caught_up' AND streamview_internal._partitions_behind(
               r.version_id, (streamview_internal._live_version(r.view_id)).version_id, exact => true) = 0) THEN
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
