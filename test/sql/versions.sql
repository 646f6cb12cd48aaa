-- Versioned rebuilds at the SQL surface: what rebuild() records, and every
-- error of rebuild, wait_for, validate, swap, rollback and drop_version.
-- A rebuilt version stays 'replaying', whether workers run or not: its source
-- points at 127.0.0.1:9, where no broker listens.  The replay itself,
-- catch-up, validation and swap are tested with a broker in t/004_rebuild.pl.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_streamview;
RESET client_min_messages;
\set SHOW_CONTEXT never
\pset null '(null)'
\i test/sql/helpers.psql

SELECT streamview.create_source('orders', '127.0.0.1:9', 'orders',
  '{"id":"text","shop":"text","cents":"bigint","ts":"timestamptz"}', 'ts', event_id => 'id') LIKE 'pg_streamview.%' AS created;
SELECT streamview.create_view('sales', $$
  SELECT streamview.tumble(ts, '1 hour') AS window_start, shop, count(*) AS n, sum(cents) AS cents
  FROM orders GROUP BY 1, 2 $$, allowed_lateness => '1 hour');

-- A rebuild with a new query: a new version with its own table, replaying
SELECT streamview.rebuild('sales', query => $$
  SELECT streamview.tumble(ts, '1 hour') AS window_start, shop, count(*) AS n,
         sum(cents) AS cents, max(cents) AS biggest
  FROM orders GROUP BY 1, 2 $$, max_rate => 1000) AS version;
SELECT version, state, table_name, max_rate, definition_hash <> (SELECT definition_hash FROM streamview.versions WHERE version = 1) AS new_hash,
       created_by = current_user AS by_me, extension_version
  FROM streamview.versions WHERE view_name = 'sales' ORDER BY version;
\d sales_v2
SELECT view_name, version, state, done, percent FROM streamview.rebuilds;

-- A plain DROP of the stream view, or of a table a version uses, is refused
SELECT pg_temp.err($$ DROP VIEW sales $$) AS drop_view_by_hand;
SELECT pg_temp.err($$ DROP TABLE sales_v2 $$) AS drop_table_by_hand;
SELECT pg_temp.err($$ DROP TABLE sales_v1 CASCADE $$) AS drop_live_table_cascade;

-- So is renaming or moving the stream view, or changing the columns a
-- version's table is written through; renaming a version's table is not.
SELECT pg_temp.err($$ ALTER VIEW sales RENAME TO sales_renamed $$) AS alter_view_rename;
SELECT pg_temp.err($$ ALTER TABLE sales RENAME TO sales_renamed $$) AS alter_table_rename_of_view;
SELECT pg_temp.err($$ ALTER VIEW sales RENAME COLUMN n TO orders $$) AS rename_view_column;
SELECT pg_temp.err($$ ALTER VIEW sales SET SCHEMA pg_temp $$) AS move_view;
SELECT pg_temp.err($$ ALTER TABLE sales_v1 RENAME COLUMN n TO orders $$) AS rename_table_column;
SELECT pg_temp.err($$ ALTER TABLE sales_v2 DROP COLUMN biggest $$) AS drop_table_column;
SELECT pg_temp.err($$ ALTER TABLE sales_v1 ALTER COLUMN n TYPE numeric $$) AS retype_table_column;
ALTER TABLE sales_v2 RENAME TO sales_v2_elsewhere;
SELECT version, table_name FROM streamview.versions WHERE view_name = 'sales' ORDER BY version;
ALTER TABLE sales_v2_elsewhere RENAME TO sales_v2;
ALTER VIEW sales ALTER COLUMN shop SET DEFAULT 'none';
ALTER VIEW sales ALTER COLUMN shop DROP DEFAULT;

-- Retention of old windows: at least allowed_lateness (1 hour here)
SELECT streamview.set_retention('sales', '2 days') AS retention;
SELECT retention FROM streamview.views WHERE name = 'sales';
SELECT pg_temp.err($$ SELECT streamview.set_retention('sales', '30 minutes') $$) AS shorter_than_lateness;
SELECT pg_temp.err($$ SELECT streamview.set_retention('sales', '-1 day') $$) AS negative;
SELECT pg_temp.err($$ SELECT streamview.set_retention('nope', '2 days') $$) AS no_such_view;
SELECT pg_temp.err($$ SELECT streamview.set_retention(NULL, '2 days') $$) AS null_view;
SELECT streamview.set_retention('sales', NULL) AS retention_off;
SELECT retention FROM streamview.views WHERE name = 'sales';

-- Errors
SELECT pg_temp.err($$ SELECT streamview.rebuild('nope') $$);
SELECT pg_temp.err($$ SELECT streamview.rebuild('sales') $$);
SELECT pg_temp.err($$ SELECT streamview.rebuild('sales', max_rate => 0) $$);
SELECT pg_temp.err($$ SELECT streamview.rebuild('sales', start_from => 'yesterday-ish') $$);
SELECT pg_temp.err($$ SELECT streamview.wait_for('sales', 9) $$);
SELECT pg_temp.err($$ SELECT streamview.wait_for('nope', 1) $$);
SELECT pg_temp.err($$ SELECT streamview.wait_for('sales', 2, '0.3 seconds') $$);
SELECT pg_temp.err($$ SELECT streamview.swap('sales', 2) $$);
SELECT pg_temp.err($$ SELECT streamview.swap('sales', 2, force => true) $$);
SELECT pg_temp.err($$ SELECT streamview.swap('sales', 1) $$);
SELECT pg_temp.err($$ SELECT streamview.swap('sales', 7) $$);
SELECT pg_temp.err($$ SELECT streamview.rollback('sales') $$);
SELECT pg_temp.err($$ SELECT streamview.drop_version('sales', 1) $$);
SELECT pg_temp.err($$ SELECT streamview.drop_version('nope', 1) $$);

-- validate() reports a replaying version as not caught up, and records it
SELECT "check", passed FROM streamview.validate('sales', 2);
SELECT version, "check", passed FROM streamview.validations ORDER BY validation_id;

-- Invariants
SELECT streamview.add_check('sales', 'no_refunds', 'cents >= 0');
SELECT pg_temp.err($$ SELECT streamview.add_check('sales', 'no_refunds', 'cents >= 0') $$);
SELECT pg_temp.err($$ SELECT streamview.add_check('sales', 'bad', 'nonsense >= 0') $$);
SELECT pg_temp.err($$ SELECT streamview.add_check('sales', 'sneaky', 'true) AS t; DROP TABLE sales_v1; SELECT (1') $$);
SELECT to_regclass('sales_v1') IS NOT NULL AS table_still_there;
SELECT "check", passed, detail FROM streamview.validate('sales', 1) WHERE "check" LIKE 'check %';
SELECT streamview.drop_check('sales', 'no_refunds');
SELECT pg_temp.err($$ SELECT streamview.drop_check('sales', 'no_refunds') $$);
-- with nothing final to compare, identity cannot be confirmed
SELECT "check", passed, detail FROM streamview.validate('sales', 2, expect_identical => true)
 WHERE "check" = 'differences';

-- wait_for in the transaction that rebuilt
BEGIN;
SELECT streamview.drop_version('sales', 2);
SELECT streamview.rebuild('sales') AS version \gset
SELECT pg_temp.err(format('SELECT streamview.wait_for(%L, %s, %L)', 'sales', :version, '5 seconds'));
ROLLBACK;

-- Dropping the replaying version retires it and keeps its history
SELECT streamview.drop_version('sales', 2);
SELECT pg_temp.err($$ SELECT streamview.drop_version('sales', 2) $$);
SELECT version, state, table_name, retired_at IS NOT NULL AS retired FROM streamview.versions ORDER BY version;
SELECT to_regclass('sales_v2') AS v2_table;
SELECT streamview.rebuild('sales') AS next_version;

-- swap and rollback keep a comment the DBA wrote on the view; the
-- extension's own comment names the live version
SELECT obj_description('sales'::regclass, 'pg_class') AS comment_from_create_view;
COMMENT ON VIEW sales IS 'Sales per shop and hour; ask finance';
SELECT (streamview_internal._set_state(version_id, ARRAY['replaying']::streamview.version_state[], 'caught_up')).state
  FROM streamview.versions WHERE view_name = 'sales' AND version = 3;
SELECT streamview.swap('sales', 3, force => true);
SELECT obj_description('sales'::regclass, 'pg_class') AS comment_after_swap;
SELECT streamview.rollback('sales');
SELECT obj_description('sales'::regclass, 'pg_class') AS comment_after_rollback;
COMMENT ON VIEW sales IS NULL;
SELECT streamview.swap('sales', 3, force => true);
SELECT obj_description('sales'::regclass, 'pg_class') AS comment_without_one;

-- Version tables go with the extension: DROP EXTENSION refuses while stream
-- views exist, and CASCADE drops their tables too (tried, then rolled back)
SELECT pg_temp.err($$ DROP EXTENSION pg_streamview $$) AS drop_extension;
BEGIN;
SET LOCAL client_min_messages = warning;
DROP EXTENSION pg_streamview CASCADE;
SELECT count(*) AS tables_left FROM pg_class WHERE relname ~ '^sales(_v\d+)?$';
ROLLBACK;

-- The update from 0.1 rewrites the statement of a version made by 0.1,
-- which read the worker's temporary table pg_temp.sv_batch_<version_id>, to
-- read _batch_rows: that FROM item only, not a literal of the user's that
-- spells it.  Oracle: the statements create_view and rebuild made, turned
-- back into 0.1's form by hand here (and given such a literal).
BEGIN;
CREATE TEMP TABLE made AS
  SELECT version_id, version,
         replace(batch_sql, ' SELECT ', format(' SELECT %L IS NULL, ', ' FROM pg_temp.sv_batch_' || version_id || ' ')) AS batch_sql
    FROM streamview.versions WHERE view_name = 'sales';
UPDATE streamview.versions ver
   SET batch_sql = regexp_replace(m.batch_sql, ' FROM streamview_internal\._batch_rows\(\d+\) AS b\([^)]*\) ',
                                  ' FROM pg_temp.sv_batch_' || ver.version_id || ' ')
  FROM made m WHERE m.version_id = ver.version_id;
SELECT m.version, ver.batch_sql !~ '_batch_rows' AS as_0_1_made_it,
       streamview_internal._batch_sql_0_2(ver.version_id) = m.batch_sql AS rewritten
  FROM streamview.versions ver JOIN made m USING (version_id) ORDER BY m.version;
-- a statement of 0.2 is left as it is, literal and all; an unknown version is NULL
UPDATE streamview.versions ver SET batch_sql = m.batch_sql
  FROM made m WHERE m.version_id = ver.version_id AND m.version = 1;
SELECT streamview_internal._batch_sql_0_2(version_id) = batch_sql AS kept
  FROM made WHERE version = 1;
SELECT streamview_internal._batch_sql_0_2(-1) IS NULL AS unknown;
ROLLBACK;

-- Rebuilding a dropped view
SELECT streamview.drop_view('sales');
SELECT pg_temp.err($$ SELECT streamview.rebuild('sales') $$);
SELECT streamview.drop_source('orders');
