-- The SQL surface: creating and dropping sources and views, the shape of a
-- stream view, and every error a wrong call raises (SQLSTATE, message, hint).
-- No broker is needed: sources point at 127.0.0.1:9, where nothing listens,
-- and nothing here reads what a worker writes, so it makes no difference
-- whether workers run (streamview.enabled) or the extension existed before.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_streamview;
RESET client_min_messages;
\pset null '(null)'

\i test/sql/helpers.psql

-- Windows, aligned to the Unix epoch in UTC
SET timezone = 'UTC';
SELECT streamview.tumble('2024-01-01 10:17:42+00', '15 minutes') AS tumble15,
       streamview.tumble('1969-12-31 23:59:59+00', '1 minute') AS before_epoch,
       streamview.hop('2024-01-01 10:17:42+00', '10 minutes', '5 minutes') AS hop_latest;
SELECT pg_temp.err($$ SELECT streamview.tumble(now(), '0 seconds') $$);
SELECT pg_temp.err($$ SELECT streamview.tumble(now(), '1 month') $$);
SELECT pg_temp.err($$ SELECT streamview.hop(now(), '1 minute', '5 minutes') $$);

-- Sources
SELECT streamview.create_source(
  name => 'purchases', brokers => '127.0.0.1:9', topic => 'purchases',
  columns => '{"event_id":"text","user_id":"text","amount_cents":"bigint",
               "currency":{"type":"text","default":"USD"},
               "country":{"type":"text","path":"geo.country","required":true},
               "ok":"boolean","ts":"timestamptz"}',
  event_time => 'ts', event_id => 'event_id', max_out_of_orderness => '5 seconds',
  options => '{"session.timeout.ms":"6000"}') LIKE 'pg_streamview.%' AS created;
SELECT name, topic, event_time, event_id, max_out_of_orderness, idle_timeout, options
  FROM streamview.source_list;
SELECT attnum, name, type, path, default_value, required
  FROM streamview.source_columns ORDER BY attnum;

SELECT pg_temp.err($$ SELECT streamview.create_source('purchases', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz"}', 'ts') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('bad name', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz"}', 'ts') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz","x":"polygon"}', 'ts') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz","x":"no_such_type"}', 'ts') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz","x":"jsonb"}', 'ts') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz"}', 'when') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"text"}', 'ts') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz"}', 'ts', event_id => 'id') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz"}', 'ts', max_out_of_orderness => 'soon') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz"}', 'ts', max_out_of_orderness => '-1 second') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz","n":{"type":"int","default":"many"}}', 'ts') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz","n":{"path":"a.b"}}', 'ts') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz","sv_x":"int"}', 'ts') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '[1,2]', 'ts') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz"}', 'ts', options => '{"a":{"b":1}}') $$);

-- partitions: some of the topic's (docs/scaling.md), kept normalized (ranges
-- merged, in order; '20-': 20 and every later one); source_list shows them
-- as partitions => takes them, NULL for all.
SELECT streamview.create_source('s3', '127.0.0.1:9', 't', '{"ts":"timestamptz"}', 'ts',
       partitions => ' 12, 0-7 ,14-15,13, 3-5, 20-') LIKE 'pg_streamview.%' AS created;
SELECT streamview.create_source('s4', '127.0.0.1:9', 't', '{"ts":"timestamptz"}', 'ts',
       partitions => 'All') LIKE 'pg_streamview.%' AS created;
SELECT name, partitions FROM streamview.source_list ORDER BY name;
SELECT name, partitions FROM streamview.sources ORDER BY name;
SELECT streamview.drop_source('s3'), streamview.drop_source('s4');
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz"}', 'ts', partitions => '') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz"}', 'ts', partitions => ' , ') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz"}', 'ts', partitions => '0-3,x') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz"}', 'ts', partitions => '0-3,,5') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz"}', 'ts', partitions => '1.5') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz"}', 'ts', partitions => '-1') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz"}', 'ts', partitions => '0, 3--1') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz"}', 'ts', partitions => '0-7,5-3') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz"}', 'ts', partitions => '2147483647') $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('s2', '127.0.0.1:9', 't',
                      '{"ts":"timestamptz"}', 'ts', partitions => '0-99999999999999999999') $$);
SELECT count(*) AS no_source_made FROM streamview.sources WHERE name = 's2';

-- Views
SELECT streamview.create_view(
  name => 'revenue_per_minute',
  query => $$ SELECT streamview.tumble(ts, '1 minute') AS window_start, user_id, currency,
                     count(*) AS purchases, sum(amount_cents) AS revenue,
                     min(amount_cents) AS smallest, max(amount_cents) AS biggest,
                     avg(amount_cents) AS average, bool_and(ok) AS all_ok, bool_or(ok) AS any_ok,
                     count(*) FILTER (WHERE amount_cents > 1000) AS big_ones
              FROM purchases WHERE amount_cents >= 0 GROUP BY 1, 2, 3 $$,
  allowed_lateness => '48 hours');
\d revenue_per_minute
SELECT view_name, version, state, window_kind, window_size, window_slide, table_name,
       definition->'outputs' AS outputs, length(definition_hash) AS hash_length
  FROM streamview.versions;
SELECT view_name, version, state, is_live, watermark, consumed, applied, lag
  FROM streamview.status;
-- lag is unknown (NULL), not 0, until every partition's log end is known
INSERT INTO streamview.offsets (version_id, partition, next_offset, log_end)
SELECT version_id, p, 5, CASE p WHEN 0 THEN 12 END FROM streamview.versions, generate_series(0, 1) p
 WHERE view_name = 'revenue_per_minute';
SELECT partition, next_offset, log_end, lag FROM streamview.partitions
 WHERE view_name = 'revenue_per_minute' ORDER BY 1;
SELECT view_name, lag FROM streamview.status WHERE view_name = 'revenue_per_minute';
UPDATE streamview.offsets SET log_end = 5 WHERE log_end IS NULL;
SELECT view_name, lag FROM streamview.status WHERE view_name = 'revenue_per_minute';
-- a source limited to some partitions shows those only: the ledger rows of
-- the others stay, and show again when it reads them again
SELECT streamview.alter_source('purchases', partitions => '1') IS NOT NULL AS limited;
SELECT partition, lag FROM streamview.partitions WHERE view_name = 'revenue_per_minute' ORDER BY 1;
SELECT view_name, partitions, lag FROM streamview.status WHERE view_name = 'revenue_per_minute';
SELECT streamview.alter_source('purchases', partitions => 'all') IS NOT NULL AS all_again;
SELECT partition FROM streamview.partitions WHERE view_name = 'revenue_per_minute' ORDER BY 1;
DELETE FROM streamview.offsets;
-- A hopping window, a key expression, the window named by default
SELECT streamview.create_view('per_country_hop', $$
  SELECT streamview.hop(ts, '10 minutes', '1 minute'), lower(country) AS country, count(*) AS n
  FROM purchases GROUP BY 1, 2 $$);
\d per_country_hop
SELECT view_name, window_kind, window_size, window_slide FROM streamview.versions ORDER BY view_name;

-- Wrong views
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, nope, count(*) FROM purchases GROUP BY 1, 2 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, percentile_cont(0.5) WITHIN GROUP (ORDER BY amount_cents) FROM purchases GROUP BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(DISTINCT user_id) FROM purchases GROUP BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, string_agg(user_id, ',') FROM purchases GROUP BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT user_id, count(*) FROM purchases GROUP BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT count(*) FROM purchases $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, 'soon') AS window_start, count(*) FROM purchases GROUP BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, '1 month') AS window_start, count(*) FROM purchases GROUP BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, '-1 minute') AS window_start, count(*) FROM purchases GROUP BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.hop(ts, '1 minute', '2 minutes') AS window_start, count(*) FROM purchases GROUP BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(now(), '1 minute') AS window_start, count(*) FROM purchases GROUP BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, '1 minute') AS minute, count(*) FROM purchases GROUP BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) FROM nowhere GROUP BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) FROM purchases p JOIN pg_class c ON true GROUP BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) FROM purchases GROUP BY 1 HAVING count(*) > 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, sum(amount_cents) / count(*) AS mean FROM purchases GROUP BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) FROM purchases WHERE random() < 0.5 GROUP BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) FROM purchases WHERE ts > now() - interval '1 day' GROUP BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) FILTER (WHERE ts::date = CURRENT_DATE) FROM purchases GROUP BY 1 $q$) $$);
-- STABLE functions that only depend on the (pinned) time zone are fine
SELECT pg_temp.err($$ SELECT streamview.create_view('v_day', $q$ SELECT streamview.tumble(ts, '1 hour') AS window_start, date_trunc('day', ts) AS day, count(*) AS n FROM purchases GROUP BY 1, 2 $q$) $$);
SELECT streamview.drop_view('v_day');
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) FROM purchases GROUP BY 1, user_id $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS is_final FROM purchases GROUP BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) FROM purchases GROUP BY 1 ORDER BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT 1; SELECT 2 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) FROM purchases GROUP BY 1 $q$, allowed_lateness => 'later') $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('revenue_per_minute', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) FROM purchases GROUP BY 1 $q$) $$);
CREATE TABLE taken (x int);
SELECT pg_temp.err($$ SELECT streamview.create_view('taken', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) FROM purchases GROUP BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('no_schema.v', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) FROM purchases GROUP BY 1 $q$) $$);
SELECT pg_temp.err($$ SELECT streamview.create_view('a b', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) FROM purchases GROUP BY 1 $q$) $$);

-- Nothing was left behind by the failed calls
SELECT count(*) AS views FROM streamview.views;
SELECT relname FROM pg_class WHERE relname LIKE 'v\_v%' OR relname = 'v';

-- Drops
SELECT pg_temp.err($$ SELECT streamview.drop_view('nope') $$);
SELECT pg_temp.err($$ SELECT streamview.drop_source('nope') $$);
SELECT pg_temp.err($$ SELECT streamview.drop_source('purchases') $$);
SELECT streamview.drop_view('per_country_hop');
SELECT to_regclass('per_country_hop') AS view, to_regclass('per_country_hop_v1') AS v1_table;
SELECT streamview.drop_source('purchases', cascade => true);
SELECT count(*) AS sources FROM streamview.sources;
SELECT count(*) AS views FROM streamview.views;
SELECT to_regclass('revenue_per_minute') AS view;
DROP TABLE taken;

-- Only in the database the workers serve (streamview.database): anywhere
-- else its stream views would never be maintained.  That database is
-- pg_regress's own under make test, the server's under make installcheck:
-- its name is shown as <served>.
\set served :DBNAME
CREATE DATABASE sv_elsewhere;
\c sv_elsewhere
\i test/sql/helpers.psql
SELECT replace(pg_temp.err('CREATE EXTENSION pg_streamview'),
               format('"%s"', current_setting('streamview.database')), '"<served>"') AS refused;
\c :served
DROP DATABASE sv_elsewhere;
