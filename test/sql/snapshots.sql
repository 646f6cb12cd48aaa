-- Snapshots at the SQL surface: what snapshot() copies and records, what
-- restore() starts a version from, keep-N retention, integrity, and every
-- error of snapshot, verify_snapshot, restore and drop_snapshot (bad ids,
-- the wrong view, permissions).  No worker runs here: the rows, ledger and
-- ids a worker would have written are written by hand.  Restoring while
-- the log streams, and the restored version against a full rebuild, are
-- tested with a broker in t/029_snapshots.pl.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_streamview;
RESET client_min_messages;
\set SHOW_CONTEXT never
\pset null '(null)'
\i test/sql/helpers.psql

SELECT streamview.create_source('shop_events', '127.0.0.1:9', 'shop_events',
  '{"id":"text","shop":"text","cents":"bigint","ts":"timestamptz"}', 'ts', event_id => 'id') LIKE 'pg_streamview.%' AS created;
SELECT streamview.create_view('shop_totals', $$
  SELECT streamview.tumble(ts, '1 hour') AS window_start, shop, count(*) AS n, sum(cents) AS cents
  FROM shop_events GROUP BY 1, 2 $$, allowed_lateness => '1 hour');
SELECT streamview.create_view('shop_counts', $$
  SELECT streamview.tumble(ts, '1 hour') AS window_start, count(*) AS n FROM shop_events GROUP BY 1 $$);

-- The state a worker would have written for version 1: rows, a ledger row
-- per partition (one not read yet), remembered ids, a watermark.
INSERT INTO shop_totals_v1 (window_start, window_end, shop, n, cents) VALUES
  ('2026-01-01 10:00+00', '2026-01-01 11:00+00', 'north', 3, 300),
  ('2026-01-01 10:00+00', '2026-01-01 11:00+00', 'south', 1, 5),
  ('2026-01-01 11:00+00', '2026-01-01 12:00+00', NULL, 2, NULL);
INSERT INTO streamview.offsets (version_id, partition, next_offset, max_event_time, consumed, applied, duplicates, too_late, dead_lettered)
SELECT version_id, p, o, t, c, a, d, l, x
  FROM streamview.versions,
       (VALUES (0, 4::bigint, '2026-01-01 11:30+00'::timestamptz, 4, 3, 1, 0, 0),
               (1, 2, '2026-01-01 11:10+00', 3, 2, 0, 1, 0),
               (2, NULL, NULL, 0, 0, 0, 0, 0)) AS v(p, o, t, c, a, d, l, x)
 WHERE view_name = 'shop_totals' AND version = 1;
INSERT INTO streamview.seen_ids (version_id, partition, last_offset, max_event_time, event_id_hashes, event_times)
SELECT version_id, 0, 3, '2026-01-01 11:30+00', ARRAY[sha256('a'), sha256('b')], ARRAY['2026-01-01 10:10+00', '2026-01-01 11:30+00']::timestamptz[]
  FROM streamview.versions WHERE view_name = 'shop_totals' AND version = 1;
UPDATE streamview.versions SET watermark = '2026-01-01 11:10+00' WHERE view_name = 'shop_totals' AND version = 1;

-- 1. A snapshot of the live version, and its manifest
SELECT streamview.snapshot('shop_totals') AS first \gset
SET TimeZone = 'UTC';
SELECT view_name, version, offsets, watermark, start_from, rows, seen_ids, checksum ~ '^[0-9a-f]{64}$' AS sha256_hex,
       taken_by = current_user AS by_me, taken_at <= now() AS taken_before_now,
       extension_version = (SELECT extversion FROM pg_extension WHERE extname = 'pg_streamview') AS ext_version,
       definition_hash = (SELECT definition_hash FROM streamview.versions WHERE view_name = 'shop_totals' AND version = 1) AS same_hash
  FROM streamview.snapshots WHERE snapshot_id = :first;
SELECT l.key AS partition, l.value FROM streamview.snapshots, jsonb_each(ledger) l WHERE snapshot_id = :first ORDER BY 1;
-- the rows copied are the version's rows, both ways
SELECT (SELECT count(*) FROM (TABLE shop_totals_v1 EXCEPT ALL SELECT * FROM streamview_internal.snapshot_:first) a)
     + (SELECT count(*) FROM (SELECT * FROM streamview_internal.snapshot_:first EXCEPT ALL TABLE shop_totals_v1) b) AS rows_differing;
SELECT partition, last_offset, event_id_hashes = ARRAY[sha256('a'), sha256('b')] AS same_ids
  FROM streamview.snapshot_seen_ids WHERE snapshot_id = :first;
SELECT streamview.verify_snapshot(:first) AS intact;
-- the checksum does not depend on the session's settings
SET TimeZone = 'Asia/Kolkata';
SET DateStyle = 'German';
SET extra_float_digits = -3;
SET bytea_output = 'escape';
SELECT streamview.verify_snapshot(:first) AS intact_in_another_session_setup;
RESET TimeZone; RESET DateStyle; RESET extra_float_digits; RESET bytea_output;

-- 2. Corruption: a row changed, a row gone, the manifest changed, the table gone
UPDATE streamview_internal.snapshot_:first SET n = 4 WHERE shop = 'north';
SELECT streamview.verify_snapshot(:first) AS intact_after_update;
SELECT pg_temp.err(format($$ SELECT streamview.restore('shop_totals', %s) $$, :first)) ~ '^XX001: snapshot \d+ of stream view "shop_totals" is corrupted\nDETAIL: Its manifest, rows and event ids hash to [0-9a-f]{64}, not to its checksum [0-9a-f]{64}\.\nHINT: Restore another snapshot' AS restore_refused;
UPDATE streamview_internal.snapshot_:first SET n = 3 WHERE shop = 'north';
SELECT streamview.verify_snapshot(:first) AS intact_when_put_back;
DELETE FROM streamview_internal.snapshot_:first WHERE shop = 'south';
SELECT streamview.verify_snapshot(:first) AS intact_after_delete;
INSERT INTO streamview_internal.snapshot_:first (window_start, window_end, shop, n, cents)
VALUES ('2026-01-01 10:00+00', '2026-01-01 11:00+00', 'south', 1, 5);
SELECT streamview.verify_snapshot(:first) AS intact_when_put_back;
UPDATE streamview.snapshots SET offsets = jsonb_set(offsets, '{0}', '5') WHERE snapshot_id = :first;
SELECT streamview.verify_snapshot(:first) AS intact_after_manifest_change;
UPDATE streamview.snapshots SET offsets = jsonb_set(offsets, '{0}', '4') WHERE snapshot_id = :first;
UPDATE streamview.snapshot_seen_ids SET last_offset = 2 WHERE snapshot_id = :first;
SELECT streamview.verify_snapshot(:first) AS intact_after_ids_change;
UPDATE streamview.snapshot_seen_ids SET last_offset = 3 WHERE snapshot_id = :first;
SELECT streamview.verify_snapshot(:first) AS intact_when_put_back;

-- 3. Restore: a new version with the snapshot's rows, ledger, ids and watermark
SELECT streamview.restore('shop_totals', :first) AS restored;
SELECT version, state, restored_from = :first AS from_first, watermark, start_from,
       definition_hash = (SELECT definition_hash FROM streamview.snapshots WHERE snapshot_id = :first) AS same_hash
  FROM streamview.versions WHERE view_name = 'shop_totals' ORDER BY version;
SELECT (SELECT count(*) FROM (TABLE shop_totals_v2 EXCEPT ALL TABLE shop_totals_v1) a)
     + (SELECT count(*) FROM (TABLE shop_totals_v1 EXCEPT ALL TABLE shop_totals_v2) b) AS rows_differing_from_v1;
SELECT o.partition, o.next_offset, o.max_event_time, o.consumed, o.applied, o.duplicates, o.too_late, o.dead_lettered
  FROM streamview.offsets o JOIN streamview.versions x USING (version_id)
 WHERE x.view_name = 'shop_totals' AND x.version = 2 ORDER BY 1;
SELECT s.partition, s.last_offset, s.event_id_hashes = ARRAY[sha256('a'), sha256('b')] AS same_ids
  FROM streamview.seen_ids s JOIN streamview.versions x USING (version_id)
 WHERE x.view_name = 'shop_totals' AND x.version = 2;
-- the replay of version 2 starts at the snapshot's offsets, like a rebuild's
SELECT view_name, version, state FROM streamview.rebuilds WHERE view_name = 'shop_totals';
-- the snapshot's table keeps its privileges (none but its owner's) after the restore
SELECT (SELECT relacl FROM pg_class WHERE oid = ('streamview_internal.snapshot_' || :first)::regclass) AS acl;
-- one rebuild at a time: a restore while one runs is refused
SELECT pg_temp.err(format($$ SELECT streamview.restore('shop_totals', %s) $$, :first)) AS restore_while_replaying;
-- a snapshot of a replaying version is taken too
SELECT streamview.snapshot('shop_totals', version => 2) AS of_v2 \gset
SELECT version, rows, offsets, streamview.verify_snapshot(snapshot_id) AS intact
  FROM streamview.snapshots WHERE snapshot_id = :of_v2;
SELECT streamview.drop_version('shop_totals', 2) AS dropped;

-- 4. Errors
SELECT pg_temp.err($$ SELECT streamview.snapshot('nope') $$) AS snapshot_no_view;
SELECT pg_temp.err($$ SELECT streamview.snapshot(NULL) $$) AS snapshot_null_view;
SELECT pg_temp.err($$ SELECT streamview.snapshot('shop_totals', version => 9) $$) AS snapshot_no_version;
SELECT pg_temp.err($$ SELECT streamview.snapshot('shop_totals', version => 2) $$) AS snapshot_retired_version;
SELECT pg_temp.err($$ SELECT streamview.snapshot('shop_totals', keep => 0) $$) AS snapshot_keep_zero;
SELECT pg_temp.err($$ SELECT streamview.verify_snapshot(NULL) $$) AS verify_null;
SELECT pg_temp.err($$ SELECT streamview.verify_snapshot(-1) $$) AS verify_no_snapshot;
SELECT pg_temp.err($$ SELECT streamview.restore('shop_totals', -1) $$) AS restore_no_snapshot;
SELECT pg_temp.err($$ SELECT streamview.restore('nope', 1) $$) AS restore_no_view;
SELECT regexp_replace(pg_temp.err(format($$ SELECT streamview.restore('shop_counts', %s) $$, :first)), '(snapshot[ _])\d+', '\1N', 'g') AS restore_into_other_view;
SELECT pg_temp.err($$ SELECT streamview.drop_snapshot(-1) $$) AS drop_no_snapshot;
SELECT pg_temp.err($$ SELECT streamview.drop_snapshot(NULL) $$) AS drop_null;

-- 5. keep => 2: the view's newest two snapshots stay, the others go with their tables
SELECT streamview.snapshot('shop_totals') AS second \gset
SELECT streamview.snapshot('shop_totals', keep => 2) AS third \gset
SELECT snapshot_id = :second AS second, snapshot_id = :third AS third, version
  FROM streamview.snapshots WHERE view_name = 'shop_totals' ORDER BY snapshot_id;
SELECT to_regclass('streamview_internal.snapshot_' || :first) AS first_table,
       to_regclass('streamview_internal.snapshot_' || :of_v2) AS of_v2_table,
       to_regclass('streamview_internal.snapshot_' || :third) IS NOT NULL AS third_table;
SELECT count(*) AS ids_of_dropped FROM streamview.snapshot_seen_ids WHERE snapshot_id IN (:first, :of_v2);
-- other views' snapshots are not counted
SELECT streamview.snapshot('shop_counts') AS counts_snap \gset
SELECT streamview.snapshot('shop_totals', keep => 1) <> 0 AS kept_one;
SELECT view_name, count(*) FROM streamview.snapshots GROUP BY 1 ORDER BY 1;

-- 6. A snapshot whose table was dropped by hand is corrupted
SELECT snapshot_id AS latest FROM streamview.snapshots WHERE view_name = 'shop_totals' \gset
DROP TABLE streamview_internal.snapshot_:latest;
SELECT streamview.verify_snapshot(:latest) AS intact_without_table;
SELECT regexp_replace(pg_temp.err(format($$ SELECT streamview.restore('shop_totals', %s) $$, :latest)), '(snapshot[ _])\d+', '\1N', 'g') AS restore_without_table;
SELECT streamview.drop_snapshot(:latest) AS rows_of_dropped;
SELECT streamview.drop_snapshot(:counts_snap) AS rows_of_dropped;
SELECT count(*) AS snapshots_left FROM streamview.snapshots;

-- 7. Who may: the functions are closed to PUBLIC; a role granted EXECUTE
--    acts on its own views only; the manifest is readable by all, the rows
--    by none but through restore.
SELECT streamview.snapshot('shop_totals') AS owned \gset
CREATE ROLE sv_snap_carol LOGIN;
SET ROLE sv_snap_carol;
SELECT pg_temp.err($$ SELECT streamview.snapshot('shop_totals') $$) AS carol_snapshot_no_grant;
SELECT pg_temp.err(format($$ SELECT streamview.verify_snapshot(%s) $$, :owned)) AS carol_verify_no_grant;
SELECT pg_temp.err(format($$ SELECT streamview.restore('shop_totals', %s) $$, :owned)) AS carol_restore_no_grant;
SELECT pg_temp.err(format($$ SELECT streamview.drop_snapshot(%s) $$, :owned)) AS carol_drop_no_grant;
SELECT count(*) AS manifests_carol_sees FROM streamview.snapshots;
SELECT regexp_replace(pg_temp.err(format($$ SELECT count(*) FROM streamview_internal.snapshot_%s $$, :owned)), '(snapshot[ _])\d+', '\1N', 'g') AS carol_reads_rows;
SELECT pg_temp.err($$ SELECT count(*) FROM streamview.snapshot_seen_ids $$) AS carol_reads_ids;
RESET ROLE;
GRANT EXECUTE ON FUNCTION streamview.snapshot(text, int, int), streamview.verify_snapshot(bigint),
  streamview.restore(text, bigint, bool), streamview.drop_snapshot(bigint) TO sv_snap_carol;
SET ROLE sv_snap_carol;
SELECT pg_temp.err($$ SELECT streamview.snapshot('shop_totals') $$) AS carol_snapshot_not_owner;
SELECT pg_temp.err(format($$ SELECT streamview.verify_snapshot(%s) $$, :owned)) AS carol_verify_not_owner;
SELECT pg_temp.err(format($$ SELECT streamview.restore('shop_totals', %s) $$, :owned)) AS carol_restore_not_owner;
SELECT pg_temp.err(format($$ SELECT streamview.drop_snapshot(%s) $$, :owned)) AS carol_drop_not_owner;
RESET ROLE;
SELECT count(*) AS still_there FROM streamview.snapshots WHERE snapshot_id = :owned;
-- a role that is no superuser, on its own view: the restore writes the
-- new version as that role, which may read the snapshot for that only
GRANT EXECUTE ON FUNCTION streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text, text, text, int, text, text, text),
  streamview.drop_source(text, bool), streamview.create_view(text, text, text), streamview.drop_view(text),
  streamview.drop_version(text, int) TO sv_snap_carol;
GRANT CREATE ON SCHEMA public TO sv_snap_carol;
SET ROLE sv_snap_carol;
SELECT streamview.create_source('carol_events', '127.0.0.1:9', 'carol_events', '{"ts":"timestamptz"}', 'ts') LIKE 'pg_streamview.%' AS created;
SELECT streamview.create_view('carol_counts', $$
  SELECT streamview.tumble(ts, '1 day') AS window_start, count(*) AS n FROM carol_events GROUP BY 1 $$);
INSERT INTO carol_counts_v1 (window_start, window_end, n) VALUES ('2026-01-01', '2026-01-02', 7);
SELECT streamview.snapshot('carol_counts') AS carols \gset
SELECT streamview.verify_snapshot(:carols) AS intact;
SELECT streamview.restore('carol_counts', :carols) AS restored;
SELECT window_start, n FROM carol_counts_v2;
SELECT regexp_replace(pg_temp.err(format($$ SELECT count(*) FROM streamview_internal.snapshot_%s $$, :carols)), '(snapshot[ _])\d+', '\1N', 'g') AS carol_reads_rows_after;
RESET ROLE;
SELECT (SELECT relacl FROM pg_class WHERE oid = ('streamview_internal.snapshot_' || :carols)::regclass) AS acl_after_restore;
SET ROLE sv_snap_carol;
SELECT streamview.drop_source('carol_events', cascade => true) AS dropped;
RESET ROLE;
SELECT count(*) AS carols_left FROM streamview.snapshots WHERE view_name = 'carol_counts';
REVOKE CREATE ON SCHEMA public FROM sv_snap_carol;

-- 8. drop_view takes the view's snapshots and their tables with it
SELECT streamview.drop_view('shop_totals') AS tables_dropped;
SELECT count(*) AS snapshots_left, to_regclass('streamview_internal.snapshot_' || :owned) AS owned_table
  FROM streamview.snapshots;
SELECT streamview.drop_view('shop_counts') AS tables_dropped;
SELECT streamview.drop_source('shop_events') AS dropped;
DROP OWNED BY sv_snap_carol;
DROP ROLE sv_snap_carol;
