-- The archive at the SQL surface (docs/archive.md): archive => on
-- create_source and alter_source, its tables, streamview.archives, and
-- rebuild's refusal to miss messages (accept_data_loss).  With the workers
-- off, what a worker would record (streamview.log_starts, archived
-- messages) is written here by hand; t/028_archive.pl tests the same with
-- a broker and workers.
CREATE EXTENSION IF NOT EXISTS pg_streamview;
\set SHOW_CONTEXT never
\pset null '(null)'
\i test/sql/helpers.psql

-- Bad values.
SELECT pg_temp.err($$SELECT streamview.create_source('a1', '127.0.0.1:9', 'a1', '{"ts":"timestamptz"}', 'ts',
                                                     archive => 'forever')$$) AS not_an_interval;
SELECT pg_temp.err($$SELECT streamview.create_source('a1', '127.0.0.1:9', 'a1', '{"ts":"timestamptz"}', 'ts',
                                                     archive => '-1 day')$$) AS negative;
SELECT pg_temp.err($$SELECT streamview.create_source('a1', '127.0.0.1:9', 'a1', '{"ts":"timestamptz"}', 'ts',
                                                     archive => '1 month')$$) AS months;

-- Without archive =>, no archive.
SELECT streamview.create_source('plain', '127.0.0.1:9', 'plain', '{"ts":"timestamptz","k":"text"}', 'ts') LIKE 'pg_streamview.%' AS created;
SELECT archive FROM streamview.sources WHERE name = 'plain';
SELECT to_regclass('streamview_internal.archive_' || source_id) AS archive_table
  FROM streamview.sources WHERE name = 'plain';

-- With it: the source's archive table, its default partition and the
-- tables for the time ahead (an eighth of the interval each, at most a day).
SELECT streamview.create_source('kept', '127.0.0.1:9', 'kept', '{"ts":"timestamptz","k":"text"}', 'ts',
                                archive => '16 hours') LIKE 'pg_streamview.%' AS created;
SELECT archive FROM streamview.sources WHERE name = 'kept';
SELECT source_id AS kept FROM streamview.sources WHERE name = 'kept' \gset
SELECT count(*) AS tables_ahead,
       bool_and(split_part(c.relname, '_', 4)::bigint - split_part(c.relname, '_', 3)::bigint = 7200) AS two_hours_each
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = ('streamview_internal.archive_' || :kept)::regclass AND c.relname !~ '_default$';
SELECT to_regclass('streamview_internal.archive_' || :kept || '_default') IS NOT NULL AS has_default;

-- alter_source: a new interval is a change; 'off' drops the archive; on again.
SELECT streamview.alter_source('kept', archive => '16 hours') AS same_value;
SELECT streamview.alter_source('kept', archive => '2 days') IS NOT NULL AS changed;
SELECT changes FROM streamview.source_changes WHERE source_name = 'kept' ORDER BY change_id DESC LIMIT 1;
SELECT pg_temp.err($$SELECT streamview.alter_source('kept', archive => 'soon')$$) AS bad_alter;
SELECT streamview.alter_source('kept', archive => 'off') IS NOT NULL AS turned_off;
SELECT archive, to_regclass('streamview_internal.archive_' || source_id) AS archive_table
  FROM streamview.sources WHERE name = 'kept';
SELECT streamview.alter_source('kept', archive => '1 day') IS NOT NULL AS turned_on;
SELECT to_regclass('streamview_internal.archive_' || :kept) IS NOT NULL AS archive_table_again;

-- A rebuild that would miss messages is refused before it starts.
SELECT streamview.create_view('kept_n', $$
  SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS n FROM kept GROUP BY 1, 2 $$) AS view_created;
-- the broker has dropped offsets 0..99 of partition 0; partition 1 is whole
INSERT INTO streamview.log_starts (source_id, partition, log_start) VALUES (:kept, 0, 100), (:kept, 1, 0);
SELECT pg_temp.err($$SELECT streamview.rebuild('kept_n')$$) AS nothing_archived;
-- some of them archived (as a worker or COPY would): the rest is named
INSERT INTO streamview.archive (source_id, partition, "offset", payload)
SELECT :kept, 0, o, convert_to('{}', 'UTF8') FROM generate_series(0, 49) o;
INSERT INTO streamview.archive (source_id, partition, "offset", payload)
SELECT :kept, 0, o, convert_to('{}', 'UTF8') FROM generate_series(60, 89) o;
SELECT pg_temp.err($$SELECT streamview.rebuild('kept_n')$$) AS gaps;
SELECT partition, first_offset, last_offset, messages, bytes > 0 AS has_bytes FROM streamview.archives
 WHERE source_name = 'kept';
-- accepted explicitly, it starts, and the version says so
SELECT streamview.rebuild('kept_n', accept_data_loss => true) AS rebuilt;
SELECT version, accept_data_loss FROM streamview.versions WHERE view_name = 'kept_n' ORDER BY version;
SELECT streamview.drop_version('kept_n', 2) AS dropped;
-- with the missing offsets archived, no refusal
INSERT INTO streamview.archive (source_id, partition, "offset", payload)
SELECT :kept, 0, o, convert_to('{}', 'UTF8') FROM generate_series(50, 59) o;
INSERT INTO streamview.archive (source_id, partition, "offset", payload)
SELECT :kept, 0, o, convert_to('{}', 'UTF8') FROM generate_series(90, 99) o;
SELECT streamview.rebuild('kept_n') AS rebuilt_complete;

-- drop_source drops the archive with the source.
SELECT streamview.drop_source('kept', cascade => true) AS views_dropped;
SELECT to_regclass('streamview_internal.archive_' || :kept) AS archive_table,
       (SELECT count(*) FROM streamview.archive WHERE source_id = :kept) AS rows_left,
       (SELECT count(*) FROM streamview.log_starts WHERE source_id = :kept) AS log_starts_left;
SELECT streamview.drop_source('plain');
