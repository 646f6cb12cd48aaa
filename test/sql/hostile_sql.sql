-- Bad SQL input (issue 8): names and queries built to inject SQL, absurd
-- windows, huge max_rate, NULL arguments, text that is not UTF-8.  Each is a
-- clear error with SQLSTATE and hint, and nothing is created.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_streamview;
RESET client_min_messages;
\set SHOW_CONTEXT never
\i test/sql/helpers.psql
CREATE TABLE public.canary (x int);
SELECT streamview.create_source('hs', '127.0.0.1:9', 't', '{"ts":"timestamptz","k":"text","v":"bigint"}', 'ts') LIKE 'pg_streamview.%' AS created;
SELECT streamview.create_view('public.hs_ok', $$ SELECT streamview.tumble(ts, '1 minute') AS window_start, k,
       count(*) AS n FROM hs GROUP BY 1, 2 $$);

-- Injection through names and arguments
SELECT pg_temp.err($$SELECT streamview.create_source('x''); DROP TABLE public.canary; --', '127.0.0.1:9', 't', '{"ts":"timestamptz"}', 'ts')$$);
SELECT pg_temp.err($$SELECT streamview.create_source('hs2', '127.0.0.1:9', 't', '{"ts":"timestamptz","a\"; DROP TABLE public.canary; --":"text"}', 'ts')$$);
SELECT pg_temp.err($$SELECT streamview.create_source('hs2', '127.0.0.1:9', 't', '{"ts":"timestamptz","k":"text); DROP TABLE public.canary; --"}', 'ts')$$);
SELECT pg_temp.err($$SELECT streamview.create_source('hs2', '127.0.0.1:9', 't', '{"ts":"timestamptz","k":{"type":"bigint","default":"1); DROP TABLE public.canary; --"}}', 'ts')$$);
SELECT pg_temp.err($$SELECT streamview.create_view('public.v"; DROP TABLE public.canary; --', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n FROM hs GROUP BY 1 $q$)$$);
SELECT pg_temp.err($$SELECT streamview.create_view('public.hs_x', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n FROM hs GROUP BY 1; DROP TABLE public.canary $q$)$$);
SELECT pg_temp.err($$SELECT streamview.create_view('public.hs_x', $q$ SELECT streamview.tumble(ts, '1 minute'') AS window_start, count(*) AS n FROM hs GROUP BY 1 --') AS w FROM hs $q$)$$);
SELECT pg_temp.err($$SELECT streamview.rebuild('hs_ok', start_from => '2024-01-01''; DROP TABLE public.canary; --')$$);
SELECT pg_temp.err($$SELECT streamview.add_check('hs_ok', 'c', 'true); DROP TABLE public.canary; SELECT (true')$$);
SELECT pg_temp.err($$SELECT streamview.drop_view('hs_ok; DROP TABLE public.canary')$$);
SELECT to_regclass('public.canary') IS NOT NULL AS canary_intact;

-- Absurd windows
SELECT pg_temp.err($$SELECT streamview.create_view('public.hs_w', $q$ SELECT streamview.tumble(ts, '0 seconds') AS window_start, count(*) AS n FROM hs GROUP BY 1 $q$)$$) AS zero;
SELECT pg_temp.err($$SELECT streamview.create_view('public.hs_w', $q$ SELECT streamview.tumble(ts, '-1 minute') AS window_start, count(*) AS n FROM hs GROUP BY 1 $q$)$$) AS negative;
SELECT pg_temp.err($$SELECT streamview.create_view('public.hs_w', $q$ SELECT streamview.tumble(ts, '400 days') AS window_start, count(*) AS n FROM hs GROUP BY 1 $q$)$$) AS over_a_year;
SELECT pg_temp.err($$SELECT streamview.create_view('public.hs_w', $q$ SELECT streamview.tumble(ts, '1 month') AS window_start, count(*) AS n FROM hs GROUP BY 1 $q$)$$) AS a_month;
SELECT pg_temp.err($$SELECT streamview.create_view('public.hs_w', $q$ SELECT streamview.hop(ts, '1000000 seconds', '1 second') AS window_start, count(*) AS n FROM hs GROUP BY 1 $q$)$$) AS million_windows;
-- (a slide that does not divide the size is fine: an event falls in 8 or 9 windows)
SELECT pg_temp.err($$SELECT streamview.create_view('public.hs_hop7', $q$ SELECT streamview.hop(ts, '1 minute', '7 seconds') AS window_start, count(*) AS n FROM hs GROUP BY 1 $q$)$$) AS slide_not_dividing;
SELECT streamview.drop_view('hs_hop7');
SELECT pg_temp.err($$SELECT streamview.create_view('public.hs_w', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n FROM hs GROUP BY 1 $q$, allowed_lateness => '-1 day')$$) AS negative_lateness;

-- Huge and absurd numbers
SELECT pg_temp.err($$SELECT streamview.rebuild('hs_ok', max_rate => 9223372036854775807)$$) AS huge_max_rate;
SELECT pg_temp.err($$SELECT streamview.rebuild('hs_ok', max_rate => 0)$$) AS zero_max_rate;
SELECT pg_temp.err($$SELECT streamview.create_source('hs3', '127.0.0.1:9', 't', '{"ts":"timestamptz"}', 'ts', max_out_of_orderness => '1000000 years')$$) AS huge_ooo;
SELECT pg_temp.err($$SELECT streamview.wait_for('hs_ok', 1, '-1 second')$$) AS negative_timeout;

-- NULL arguments
SELECT pg_temp.err($$SELECT streamview.create_source(NULL, '127.0.0.1:9', 't', '{"ts":"timestamptz"}', 'ts')$$) AS null_name;
SELECT pg_temp.err($$SELECT streamview.create_source('hs3', NULL, 't', '{"ts":"timestamptz"}', 'ts')$$) AS null_brokers;
SELECT pg_temp.err($$SELECT streamview.create_source('hs3', '127.0.0.1:9', 't', NULL, 'ts')$$) AS null_columns;
SELECT pg_temp.err($$SELECT streamview.create_source('hs3', '127.0.0.1:9', 't', '{"ts":"timestamptz"}', NULL)$$) AS null_event_time;
SELECT pg_temp.err($$SELECT streamview.create_source('hs3', '127.0.0.1:9', 't', '{"ts":"timestamptz"}', 'ts', options => NULL)$$) AS null_options;
SELECT pg_temp.err($$SELECT streamview.create_view('public.hs_n', NULL)$$) AS null_query;
SELECT pg_temp.err($$SELECT streamview.create_view(NULL, 'SELECT 1')$$) AS null_view_name;
SELECT pg_temp.err($$SELECT streamview.create_view('public.hs_n', $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n FROM hs GROUP BY 1 $q$, allowed_lateness => NULL)$$) AS null_lateness;
SELECT pg_temp.err($$SELECT streamview.drop_view(NULL)$$) AS drop_null_view;
SELECT pg_temp.err($$SELECT streamview.drop_source(NULL)$$) AS drop_null_source;
SELECT pg_temp.err($$SELECT streamview.rebuild(NULL)$$) AS rebuild_null;
SELECT pg_temp.err($$SELECT streamview.validate('hs_ok', NULL)$$) AS validate_null_version;
SELECT pg_temp.err($$SELECT streamview.swap('hs_ok', NULL)$$) AS swap_null_version;
SELECT pg_temp.err($$SELECT streamview.add_check('hs_ok', NULL, 'n > 0')$$) AS check_null_name;
SELECT pg_temp.err($$SELECT streamview.add_check('hs_ok', 'c', NULL)$$) AS check_null_predicate;
SELECT pg_temp.err($$SELECT streamview.drop_version('hs_ok', NULL)$$) AS drop_null_version;
SELECT pg_temp.err($$SELECT streamview.wait_for('hs_ok', NULL)$$) AS wait_null_version;

-- Text that is not UTF-8 never reaches the API: PostgreSQL refuses it first.
SELECT pg_temp.err($$SELECT streamview.create_source(convert_from('\xff'::bytea, 'UTF8'), '127.0.0.1:9', 't', '{"ts":"timestamptz"}', 'ts')$$) AS not_utf8;

-- Nothing was created by any of the above.
SELECT string_agg(name, ', ' ORDER BY name) AS sources FROM streamview.sources;
SELECT string_agg(name, ', ' ORDER BY name) AS views FROM streamview.views;
SELECT string_agg(view_name || ' ' || version, ', ' ORDER BY view_name, version) AS versions FROM streamview.versions;
SELECT count(*) AS checks FROM streamview.checks;
SELECT streamview.drop_source('hs', cascade => true);
DROP TABLE public.canary;
