-- The approximate aggregates (sketches) at the SQL surface: count(DISTINCT)
-- and the exact percentiles are refused with hints naming hll and tdigest
-- (and how to install them, where they are not); the sketches' states are
-- compiled with the extensions' own functions, found in whatever schema the
-- extensions were created; a version's table depends on the extensions.
-- Their streaming behaviour (merges, restarts, rebuilds) is tested with a
-- broker in t/033_sketches.pl.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_streamview;
RESET client_min_messages;
\set SHOW_CONTEXT never
\pset null '(null)'
\i test/sql/helpers.psql

SELECT streamview.create_source('visits', '127.0.0.1:9', 'visits',
  '{"user_name":"text","user_id":"bigint","latency":"double precision","page":"text","ts":"timestamptz"}',
  'ts') LIKE 'pg_streamview.%' AS created;

-- Without the extensions: the hints say how to install them
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$
  SELECT streamview.tumble(ts, '1 minute') AS window_start, count(DISTINCT user_name) AS users
  FROM visits GROUP BY 1 $q$) $$) AS distinct_without_hll;
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$
  SELECT streamview.tumble(ts, '1 minute') AS window_start,
         percentile_cont(0.99) WITHIN GROUP (ORDER BY latency) AS p99
  FROM visits GROUP BY 1 $q$) $$) AS percentile_without_tdigest;

-- The extensions, in a schema of their own, off the search path
CREATE SCHEMA sketches;
CREATE EXTENSION hll SCHEMA sketches;
CREATE EXTENSION tdigest SCHEMA sketches;

-- With them: the hints name the sketch to write, for the argument's type
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$
  SELECT streamview.tumble(ts, '1 minute') AS window_start, count(DISTINCT user_id) AS users
  FROM visits GROUP BY 1 $q$) $$) AS distinct_bigint;
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$
  SELECT streamview.tumble(ts, '1 minute') AS window_start, count(DISTINCT lower(page)) AS pages
  FROM visits GROUP BY 1 $q$) $$) AS distinct_text;
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$
  SELECT streamview.tumble(ts, '1 minute') AS window_start,
         percentile_disc(0.5) WITHIN GROUP (ORDER BY latency) AS median
  FROM visits GROUP BY 1 $q$) $$) AS percentile_disc;
-- the sketches' own final values cannot be merged: store the state
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$
  SELECT streamview.tumble(ts, '1 minute') AS window_start,
         sketches.tdigest_percentile(latency, 100, 0.99) AS p99
  FROM visits GROUP BY 1 $q$) $$) AS tdigest_percentile;
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$
  SELECT streamview.tumble(ts, '1 minute') AS window_start,
         sketches.tdigest(DISTINCT latency, 100) AS latency
  FROM visits GROUP BY 1 $q$) $$) AS tdigest_distinct;

-- A stream view with both, the extensions found through the search path
SET search_path = public, sketches;
SELECT streamview.create_view('traffic', $$
  SELECT streamview.tumble(ts, '1 minute') AS window_start, page,
         count(*) AS n,
         hll_add_agg(hll_hash_text(user_name)) AS users,
         hll_add_agg(hll_hash_bigint(user_id), 12) AS user_ids,
         tdigest(latency, 100) AS latency,
         tdigest(latency, 50) FILTER (WHERE latency > 0) AS positive_latency
  FROM visits GROUP BY 1, 2 $$);
RESET search_path;
-- the compiled SQL names the extensions' functions and types with their schema
SELECT o->>'name' AS name, o->>'kind' AS kind, o->>'type' AS type, o->>'sql' AS sql
  FROM streamview.versions, jsonb_array_elements(definition->'outputs') WITH ORDINALITY AS x(o, i)
 WHERE view_name = 'traffic' ORDER BY i;
-- merged with the extensions' union functions, as count is with +
SELECT substring(batch_sql FROM ' ON CONFLICT .*') AS merge
  FROM streamview.versions WHERE view_name = 'traffic';
\d traffic_v1
SELECT * FROM traffic;

-- How to read the states (docs/reference.md), on states made the same way
SELECT sketches.hll_cardinality(sketches.hll_add_agg(sketches.hll_hash_text(u))) AS distinct_users
  FROM (VALUES ('a'), ('b'), ('a'), ('c')) AS t(u);
SELECT sketches.tdigest_percentile(d, 0.5) AS median
  FROM (SELECT sketches.tdigest(x, 100) AS d FROM generate_series(1, 101) AS x) AS s;

-- A version's table depends on the extensions: DROP EXTENSION refuses,
-- and with CASCADE the drop guard does
SELECT pg_temp.err($$ DROP EXTENSION hll $$) AS drop_hll;
SELECT pg_temp.err($$ DROP EXTENSION tdigest CASCADE $$) AS drop_tdigest_cascade;
SELECT e.extname
  FROM pg_depend d JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
 WHERE d.classid = 'pg_class'::regclass AND d.objid = 'traffic_v1'::regclass AND d.objsubid = 0
 ORDER BY 1;

-- The view's owner must be able to use the extension: each batch runs its
-- functions as that role
CREATE ROLE sv_sketcher LOGIN;
GRANT CREATE ON SCHEMA public TO sv_sketcher;
GRANT EXECUTE ON FUNCTION streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text, text, text, int, text, text, text),
  streamview.drop_source(text, bool), streamview.create_view(text, text, text) TO sv_sketcher;
SET ROLE sv_sketcher;
SELECT streamview.create_source('visits_too', '127.0.0.1:9', 'visits',
  '{"user_name":"text","ts":"timestamptz"}', 'ts') LIKE 'pg_streamview.%' AS created;
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$
  SELECT streamview.tumble(ts, '1 minute') AS window_start,
         sketches.hll_add_agg(sketches.hll_hash_text(user_name)) AS users
  FROM visits_too GROUP BY 1 $q$) $$) AS no_usage_on_schema;
RESET ROLE;
GRANT USAGE ON SCHEMA sketches TO sv_sketcher;
REVOKE EXECUTE ON FUNCTION sketches.hll_union(sketches.hll, sketches.hll) FROM PUBLIC;
SET ROLE sv_sketcher;
SELECT pg_temp.err($$ SELECT streamview.create_view('v', $q$
  SELECT streamview.tumble(ts, '1 minute') AS window_start,
         sketches.hll_add_agg(sketches.hll_hash_text(user_name)) AS users
  FROM visits_too GROUP BY 1 $q$) $$) AS no_execute_on_union;
RESET ROLE;
GRANT EXECUTE ON FUNCTION sketches.hll_union(sketches.hll, sketches.hll) TO PUBLIC;
SET ROLE sv_sketcher;
SELECT streamview.create_view('visitors', $$
  SELECT streamview.tumble(ts, '1 minute') AS window_start,
         sketches.hll_add_agg(sketches.hll_hash_text(user_name)) AS users
  FROM visits_too GROUP BY 1 $$) AS created_with_usage;
SELECT streamview.drop_source('visits_too', cascade => true);
RESET ROLE;
DROP OWNED BY sv_sketcher;
DROP ROLE sv_sketcher;

-- With the stream view gone, the extensions can go
SELECT streamview.drop_view('traffic');
SELECT streamview.drop_source('visits');
DROP EXTENSION hll;
DROP EXTENSION tdigest;
DROP SCHEMA sketches;
