-- Snapshots: snapshot, verify_snapshot, restore, drop_snapshot
-- (docs/snapshots.md).

-- The table that holds a snapshot's rows, or NULL when it is gone.
CREATE FUNCTION streamview_internal._snapshot_table(snapshot_id bigint)
RETURNS regclass
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ SELECT to_regclass(format('streamview_internal.%I', 'snapshot_' || snapshot_id)) $$;

-- The snapshot, after a check that the caller owns its view.
CREATE FUNCTION streamview_internal._get_snapshot(caller regrole, snapshot_id bigint)
RETURNS streamview.snapshots
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s streamview.snapshots;
    v streamview.views;
BEGIN
    PERFORM streamview_internal._require(snapshot_id, 'snapshot_id');
    SELECT * INTO s FROM streamview.snapshots x WHERE x.snapshot_id = _get_snapshot.snapshot_id;
    IF s.snapshot_id IS NULL THEN
        RAISE EXCEPTION 'snapshot % does not exist', snapshot_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT snapshot_id, view_name, version, taken_at FROM streamview.snapshots.';
    END IF;
    SELECT * INTO v FROM streamview.views w WHERE w.view_id = s.view_id;
    PERFORM streamview_internal._check_owner(caller, v.owner, 'stream view', v.name);
    RETURN s;
END $$;

-- The SHA-256 (hex) of a snapshot: its manifest, its rows and the event ids
-- it holds; NULL when its table is gone.  Canonical whatever the session:
-- the settings that change how a value reads as text are fixed here, each
-- row is hashed on its own and the rows' hashes are sorted (an order that
-- does not depend on the columns' types or collations), and the manifest
-- is a jsonb object (whose text has its keys in one order).
CREATE FUNCTION streamview_internal._snapshot_checksum(snapshot_id bigint)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET extra_float_digits = 1
SET bytea_output = 'hex'
AS $$
DECLARE
    s        streamview.snapshots;
    tbl      regclass := streamview_internal._snapshot_table(snapshot_id);
    rows_sum bytea;
    ids_sum  bytea;
BEGIN
    SELECT * INTO s FROM streamview.snapshots x WHERE x.snapshot_id = _snapshot_checksum.snapshot_id;
    IF s.snapshot_id IS NULL OR tbl IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT sha256(coalesce(string_agg(h, ''''::bytea ORDER BY h), ''''::bytea)) '
                   'FROM (SELECT sha256(convert_to(t::text, ''UTF8'')) AS h FROM ONLY %s t) r', tbl)
       INTO rows_sum;
    SELECT sha256(coalesce(string_agg(sha256(convert_to(i::text, 'UTF8')), ''::bytea
                                      ORDER BY i.partition, i.last_offset), ''::bytea))
      INTO ids_sum FROM streamview.snapshot_seen_ids i WHERE i.snapshot_id = s.snapshot_id;
    RETURN encode(sha256(convert_to(jsonb_build_object(
               'snapshot_id', s.snapshot_id, 'view_name', s.view_name, 'version', s.version,
               'definition_hash', s.definition_hash, 'extension_version', s.extension_version,
               'offsets', s.offsets, 'ledger', s.ledger, 'watermark', s.watermark,
               'start_from', s.start_from, 'rows', s.rows, 'seen_ids', s.seen_ids,
               'taken_at', s.taken_at, 'taken_by', s.taken_by)::text, 'UTF8')
           || rows_sum || ids_sum), 'hex');
END $$;

-- Drops a snapshot: its table, its ids and its manifest.  Its row count.
CREATE FUNCTION streamview_internal._drop_snapshot(snapshot_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tbl  regclass := streamview_internal._snapshot_table(snapshot_id);
    n    bigint;
BEGIN
    IF tbl IS NOT NULL THEN
        EXECUTE format('DROP TABLE %s', tbl);
    END IF;
    DELETE FROM streamview.snapshots x WHERE x.snapshot_id = _drop_snapshot.snapshot_id
    RETURNING x.rows INTO n;
    RETURN n;
END $$;

CREATE FUNCTION streamview.snapshot(view_name text, version int DEFAULT NULL, keep int DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.snapshot(text, int, int) IS
'copies a version''s rows, offsets and event-time history at one consistent point; keeps the newest `keep` snapshots of the view; returns the snapshot''s id';

-- The copy is one statement, so that it reads the version's rows, its
-- ledger (offsets, event-time history, counters), the ids it remembers and
-- its watermark in one MVCC snapshot.  The source worker writes all of them
-- in the transaction of each batch, so the copy holds every batch committed
-- before it and nothing of any other: a consistent point, taken while the
-- worker goes on (nothing here blocks a batch).  The statement runs as the
-- extension owner, not through _run_as: it must read the catalog, which
-- the view's owner may not.  It reads the version's own table (ONLY, a
-- plain table: the relkind is checked) and writes only the extension's
-- tables; it evaluates no expression of the view's owner.
CREATE FUNCTION streamview_internal._snapshot_impl(caller regrole, view_name text, version int DEFAULT NULL,
                                                   keep int DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'   -- the ledger's event times read in UTC
AS $$
DECLARE
    v    streamview.views;
    r    streamview.versions;
    sid  bigint;
    tbl  text;
    cols text;
BEGIN
    PERFORM streamview_internal._require(view_name, 'view_name');
    v := streamview_internal._lock_view(caller, view_name, lock => false);
    -- as the source worker does with each batch: drop_view waits, no batch does
    PERFORM 1 FROM streamview.views w WHERE w.view_id = v.view_id FOR KEY SHARE;
    IF keep IS NOT NULL AND keep < 1 THEN
        RAISE EXCEPTION 'keep must be at least 1'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given was %s.', keep),
                  HINT = 'Pass how many of the view''s snapshots to keep, the new one included, or NULL to keep them all.';
    END IF;
    IF version IS NULL THEN
        r := streamview_internal._live_version(v.view_id);
    ELSE
        r := streamview_internal._get_version(v, version);
    END IF;
    IF r.state NOT IN ('live', 'caught_up', 'replaying') OR r.table_name IS NULL THEN
        RAISE EXCEPTION 'cannot snapshot version % of stream view "%" because it is %', r.version, view_name, r.state
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Snapshot the live version (version => NULL), or one that is replaying or caught up.';
    END IF;
    -- drop_version waits for the copy; the table must be the plain table
    -- the version was created with
    EXECUTE format('LOCK TABLE ONLY %s IN ACCESS SHARE MODE', r.table_name);
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = r.table_name) <> 'r' THEN
        RAISE EXCEPTION 'table % of stream view "%" version % is not a plain table', r.table_name, view_name, r.version
            USING ERRCODE = 'wrong_object_type';
    END IF;

    sid := nextval(pg_get_serial_sequence('streamview.snapshots', 'snapshot_id'));
    tbl := format('streamview_internal.%I', 'snapshot_' || sid);
    EXECUTE format('CREATE TABLE %s (LIKE %s INCLUDING COMPRESSION)', tbl, r.table_name);
    PERFORM streamview_internal._depend_on_extension(tbl::regclass);
    EXECUTE format('COMMENT ON TABLE %s IS %L', tbl,
                   format('rows of snapshot %s: stream view %s, version %s (see streamview.snapshots)',
                          sid, v.name, r.version));
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
      FROM pg_attribute a WHERE a.attrelid = tbl::regclass AND a.attnum > 0 AND NOT a.attisdropped;

    EXECUTE format($q$
        WITH copied AS (INSERT INTO %1$s (%2$s) SELECT %2$s FROM ONLY %3$s RETURNING 1),
             ids AS (INSERT INTO streamview.snapshot_seen_ids
                         (snapshot_id, partition, last_offset, max_event_time, event_id_hashes, event_times)
                     SELECT $1, i.partition, i.last_offset, i.max_event_time, i.event_id_hashes, i.event_times
                       FROM streamview.seen_ids i WHERE i.version_id = $2
                     RETURNING 1),
             led AS (SELECT o.partition, o.next_offset,
                            jsonb_build_object('next_offset', o.next_offset, 'max_event_time', o.max_event_time,
                                               'consumed', o.consumed, 'applied', o.applied,
                                               'duplicates', o.duplicates, 'too_late', o.too_late,
                                               'dead_lettered', o.dead_lettered) AS state
                       FROM streamview.offsets o WHERE o.version_id = $2)
        INSERT INTO streamview.snapshots (snapshot_id, view_id, view_name, version, definition_hash,
                                          extension_version, offsets, ledger, watermark, start_from,
                                          rows, seen_ids, taken_by)
        SELECT $1, x.view_id, x.view_name, x.version, x.definition_hash,
               (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'pg_streamview'),
               (SELECT coalesce(jsonb_object_agg(l.partition, l.next_offset), '{}') FROM led l),
               (SELECT coalesce(jsonb_object_agg(l.partition, l.state), '{}') FROM led l),
               x.watermark, x.start_from,
               (SELECT count(*) FROM copied), (SELECT count(*) FROM ids), $3
          FROM streamview.versions x WHERE x.version_id = $2 $q$, tbl, cols, r.table_name)
    USING sid, r.version_id, caller::name;
    UPDATE streamview.snapshots x SET checksum = streamview_internal._snapshot_checksum(sid)
     WHERE x.snapshot_id = sid;

    -- keep => N: the view's newest N snapshots stay, this one among them
    IF keep IS NOT NULL THEN
        PERFORM streamview_internal._drop_snapshot(x.snapshot_id)
           FROM (SELECT y.snapshot_id FROM streamview.snapshots y WHERE y.view_id = v.view_id
                  ORDER BY y.snapshot_id DESC OFFSET keep) x;
    END IF;
    RETURN sid;
END $$;

CREATE FUNCTION streamview.verify_snapshot(snapshot_id bigint)
RETURNS bool
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.verify_snapshot(bigint) IS
'recomputes a snapshot''s checksum over its manifest, rows and event ids: true if it still matches';

CREATE FUNCTION streamview_internal._verify_snapshot_impl(caller regrole, snapshot_id bigint)
RETURNS bool
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s streamview.snapshots := streamview_internal._get_snapshot(caller, snapshot_id);
BEGIN
    RETURN coalesce(streamview_internal._snapshot_checksum(s.snapshot_id) = s.checksum, false);
END $$;

CREATE FUNCTION streamview.restore(view_name text, snapshot_id bigint, accept_data_loss bool DEFAULT false)
RETURNS int
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.restore(text, bigint, bool) IS
'starts a new version of a stream view from a snapshot: its rows and ledger, replaying from its offsets; returns the version';

-- A restore is a rebuild (_rebuild_impl: same checks, a new version that a
-- replay worker takes up once the transaction commits) that starts from the
-- snapshot instead of the start of the log: the snapshot's rows, its ledger
-- rows (each partition's next offset, event-time history and counters), the
-- ids it remembered, its watermark and cut.  The replay then reads each
-- partition from the snapshot's offset (a partition it has no offset for,
-- from the start of the log), catches up, and is validated and swapped like
-- any rebuild.  Whether that replay would miss messages Kafka no longer
-- keeps is checked against the snapshot's offsets, as a rebuild checks its
-- own (_check_replay_complete), unless the caller accepts it.
CREATE FUNCTION streamview_internal._restore_impl(caller regrole, view_name text, snapshot_id bigint,
                                                  accept_data_loss bool DEFAULT false)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v     streamview.views;
    s     streamview.snapshots;
    cand  streamview.versions;
    live  streamview.versions;
    tbl   regclass;
    actual text;
    ver   int;
    cols  text;
    cols_new text;
    granted  bool := false;
BEGIN
    PERFORM streamview_internal._require(view_name, 'view_name');
    v := streamview_internal._lock_view(caller, view_name);
    s := streamview_internal._get_snapshot(caller, snapshot_id);
    IF s.view_id <> v.view_id THEN
        RAISE EXCEPTION 'snapshot % is not of stream view "%"', snapshot_id, view_name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It was taken of stream view "%s".', s.view_name),
                  HINT = format('See SELECT snapshot_id, version, taken_at FROM streamview.snapshots WHERE view_name = %L.', view_name);
    END IF;
    -- drop_snapshot waits until the restore is done
    PERFORM 1 FROM streamview.snapshots x WHERE x.snapshot_id = s.snapshot_id FOR SHARE;
    tbl := streamview_internal._snapshot_table(s.snapshot_id);
    actual := streamview_internal._snapshot_checksum(s.snapshot_id);
    IF actual IS DISTINCT FROM s.checksum THEN
        RAISE EXCEPTION 'snapshot % of stream view "%" is corrupted', snapshot_id, view_name
            USING ERRCODE = 'data_corrupted',
                  DETAIL = CASE WHEN tbl IS NULL
                                THEN format('The table of its rows, streamview_internal.snapshot_%s, is gone.', s.snapshot_id)
                                ELSE format('Its manifest, rows and event ids hash to %s, not to its checksum %s.', actual, s.checksum) END,
                  HINT = 'Restore another snapshot (streamview.verify_snapshot() checks one), or rebuild from the log with streamview.rebuild(); drop this one with streamview.drop_snapshot().';
    END IF;
    live := streamview_internal._live_version(v.view_id);
    IF live.definition_hash <> s.definition_hash THEN
        RAISE EXCEPTION 'snapshot % of stream view "%" was taken with another definition', snapshot_id, view_name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('The snapshot is of version %s, definition %s; live version %s has definition %s '
                                  '(its query or allowed lateness differs).',
                                  s.version, s.definition_hash, live.version, live.definition_hash),
                  HINT = 'Restore a snapshot taken since the definition changed, or rebuild from the log with streamview.rebuild().';
    END IF;

    -- the replay's completeness is checked below, from the snapshot's offsets
    ver := streamview_internal._rebuild_impl(caller, view_name, accept_data_loss => true);
    cand := streamview_internal._get_version(v, ver);
    IF cand.definition_hash <> s.definition_hash THEN
        -- the live query compiles to another definition now (a changed source)
        RAISE EXCEPTION 'snapshot % of stream view "%" was taken with another definition', snapshot_id, view_name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('The snapshot has definition %s; the view''s query now compiles to %s.',
                                  s.definition_hash, cand.definition_hash),
                  HINT = 'Rebuild from the log with streamview.rebuild().';
    END IF;
    SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
      INTO cols FROM pg_attribute a WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped;
    SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
      INTO cols_new FROM pg_attribute a WHERE a.attrelid = cand.table_name AND a.attnum > 0 AND NOT a.attisdropped;
    IF cols IS DISTINCT FROM cols_new THEN
        RAISE EXCEPTION 'snapshot % of stream view "%" has other columns than the new version', snapshot_id, view_name
            USING ERRCODE = 'datatype_mismatch',
                  DETAIL = format('The snapshot has (%s); version %s has (%s).', cols, ver, cols_new),
                  HINT = 'Rebuild from the log with streamview.rebuild().';
    END IF;
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
      FROM pg_attribute a WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped;

    -- The rows, as the view's owner (the table is the owner's, and so are
    -- its triggers), who may read the snapshot for this statement only
    -- (unless the owner may anyway: the extension's owner, a superuser).
    IF NOT has_table_privilege(v.owner, tbl, 'SELECT') THEN
        EXECUTE format('GRANT SELECT ON %s TO %s', tbl, v.owner);
        granted := true;
    END IF;
    PERFORM streamview_internal._run_as(v.owner,
        format('WITH c AS (INSERT INTO %s (%s) SELECT %s FROM ONLY %s RETURNING 1) '
               'SELECT to_jsonb(count(*)) FROM c', cand.table_name, cols, cols, tbl));
    IF granted THEN
        EXECUTE format('REVOKE SELECT ON %s FROM %s', tbl, v.owner);
    END IF;

    INSERT INTO streamview.offsets (version_id, partition, next_offset, max_event_time, consumed,
                                    applied, duplicates, too_late, dead_lettered)
    SELECT cand.version_id, l.key::int, (l.value->>'next_offset')::bigint,
           (l.value->>'max_event_time')::timestamptz, (l.value->>'consumed')::bigint,
           (l.value->>'applied')::bigint, (l.value->>'duplicates')::bigint,
           (l.value->>'too_late')::bigint, (l.value->>'dead_lettered')::bigint
      FROM jsonb_each(s.ledger) l;
    INSERT INTO streamview.seen_ids (version_id, partition, last_offset, max_event_time,
                                     event_id_hashes, event_times)
    SELECT cand.version_id, i.partition, i.last_offset, i.max_event_time, i.event_id_hashes, i.event_times
      FROM streamview.snapshot_seen_ids i WHERE i.snapshot_id = s.snapshot_id;
    UPDATE streamview.versions x
       SET watermark = s.watermark, start_from = s.start_from, restored_from = s.snapshot_id,
           accept_data_loss = coalesce(_restore_impl.accept_data_loss, false)
     WHERE x.version_id = cand.version_id;
    IF NOT coalesce(_restore_impl.accept_data_loss, false) THEN
        PERFORM streamview_internal._check_replay_complete(v, cand.version_id,
                                                           format('restore snapshot %s of', s.snapshot_id));
    END IF;
    RETURN ver;
END $$;

CREATE FUNCTION streamview.drop_snapshot(snapshot_id bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.drop_snapshot(bigint) IS
'drops a snapshot (its rows, event ids and manifest); returns how many rows it held';

CREATE FUNCTION streamview_internal._drop_snapshot_impl(caller regrole, snapshot_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s streamview.snapshots := streamview_internal._get_snapshot(caller, snapshot_id);
BEGIN
    -- the manifest row locked: a restore of it waits, or has finished
    PERFORM 1 FROM streamview.snapshots x WHERE x.snapshot_id = s.snapshot_id FOR UPDATE;
    RETURN streamview_internal._drop_snapshot(s.snapshot_id);
END $$;
