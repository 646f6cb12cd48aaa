-- The role model of docs/reference.md ("Roles"), set up as written there:
-- streamview_admin creates sources and grants USAGE on them, authors build
-- and manage their own stream views, analysts only read the views they are
-- granted.  Then what each may and may not do, and that a broker secret
-- shows nowhere a role that did not create the source can read.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_streamview;
RESET client_min_messages;
\set SHOW_CONTEXT never
\i test/sql/helpers.psql

-- As in docs/reference.md, "Roles":
CREATE ROLE streamview_admin NOLOGIN;
CREATE ROLE streamview_author NOLOGIN;
CREATE ROLE analyst NOLOGIN;
GRANT EXECUTE ON FUNCTION
  streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text, text, text, int, text, text, text),
  streamview.alter_source(text, text, jsonb, text, text, jsonb, text, text, text, text, int, jsonb, text),
  streamview.drop_source(text, bool),
  streamview.grant_usage(text, regrole),
  streamview.revoke_usage(text, regrole),
  streamview.pause(text),
  streamview.resume(text) TO streamview_admin;
GRANT EXECUTE ON FUNCTION
  streamview.create_view(text, text, text),
  streamview.drop_view(text),
  streamview.rebuild(text, text, text, bigint, bool),
  streamview.wait_for(text, int, interval),
  streamview.add_check(text, text, text),
  streamview.drop_check(text, text),
  streamview.validate(text, int, bool),
  streamview.swap(text, int, bool),
  streamview.rollback(text),
  streamview.drop_version(text, int),
  streamview.snapshot(text, int, int),
  streamview.verify_snapshot(bigint),
  streamview.restore(text, bigint, bool),
  streamview.drop_snapshot(bigint) TO streamview_author;
CREATE SCHEMA reports;
GRANT USAGE, CREATE ON SCHEMA reports TO streamview_author;
GRANT USAGE ON SCHEMA reports TO analyst;
CREATE ROLE ada LOGIN IN ROLE streamview_admin;
CREATE ROLE bo LOGIN IN ROLE streamview_author;
CREATE ROLE cy LOGIN IN ROLE streamview_author;
CREATE ROLE dee LOGIN IN ROLE analyst;

-- An admin creates a source as the admin role, so that every admin can
-- manage it, and lets the authors build on it.
SET ROLE ada;
SET ROLE streamview_admin;
SELECT streamview.create_source('orders', '127.0.0.1:9', 'orders', '{"ts":"timestamptz","shop":"text","cents":"bigint"}', 'ts',
       options => '{"security.protocol":"sasl_plaintext","sasl.mechanisms":"PLAIN","sasl.username":"svc","sasl.password":"hunter2-kafka-secret"}') LIKE 'pg_streamview.%' AS created;
SELECT streamview.grant_usage('orders', 'streamview_author');
SELECT name, owner, usage, options IS NOT NULL AS admin_sees_options FROM streamview.source_list;
RESET ROLE;

-- An author builds a view over it, in the shared schema, and grants it to analysts.
SET ROLE bo;
SELECT streamview.create_view('reports.orders_per_shop', $$
  SELECT streamview.tumble(ts, '1 hour') AS window_start, shop, count(*) AS n, sum(cents) AS cents
    FROM orders GROUP BY 1, 2 $$);
GRANT SELECT ON reports.orders_per_shop TO analyst;
SELECT streamview.rebuild('orders_per_shop');
SELECT streamview.drop_version('orders_per_shop', 2);
SELECT streamview.verify_snapshot(streamview.snapshot('orders_per_shop', keep => 1)) AS author_snapshots;
-- an author may not change or drop the source, nor grant it on, nor see its options
SELECT pg_temp.err($$SELECT streamview.drop_source('orders')$$) AS author_drops_source;
SELECT pg_temp.err($$SELECT streamview.grant_usage('orders', 'analyst')$$) AS author_grants;
SELECT pg_temp.err($$SELECT streamview.pause('orders')$$) AS author_pauses;
SELECT pg_temp.err($$SELECT streamview.alter_source('orders', options => '{"sasl.password":"guess"}')$$) AS author_alters;
SELECT pg_temp.err($$SELECT streamview.create_source('mine', '127.0.0.1:9', 't', '{"ts":"timestamptz"}', 'ts')$$) AS author_creates_source;
SELECT name, owner, usage, options FROM streamview.source_list;
RESET ROLE;

-- Another author cannot manage bo's view.
SET ROLE cy;
SELECT pg_temp.err($$SELECT streamview.drop_view('orders_per_shop')$$) AS other_author_drops;
SELECT pg_temp.err($$SELECT streamview.rebuild('orders_per_shop')$$) AS other_author_rebuilds;
SELECT pg_temp.err($$SELECT streamview.snapshot('orders_per_shop')$$) AS other_author_snapshots;
SELECT pg_temp.err($$SELECT streamview.drop_snapshot(snapshot_id) FROM streamview.snapshots$$) AS other_author_drops_snapshot;
SELECT pg_temp.err($$DROP VIEW reports.orders_per_shop$$) AS other_author_drop_view_sql;
SELECT pg_temp.err($$SELECT count(*) FROM reports.orders_per_shop_v1$$) AS other_author_reads_table;
RESET ROLE;

-- An analyst reads the view, and nothing else.
SET ROLE dee;
SELECT count(*) AS analyst_reads_view FROM reports.orders_per_shop;
SELECT pg_temp.err($$SELECT count(*) FROM reports.orders_per_shop_v1$$) AS analyst_reads_table;
SELECT pg_temp.err($$SELECT streamview.create_view('reports.mine', 'SELECT streamview.tumble(ts, ''1 hour'') AS window_start, count(*) AS n FROM orders GROUP BY 1')$$) AS analyst_creates_view;
SELECT pg_temp.err($$SELECT streamview.rebuild('orders_per_shop')$$) AS analyst_rebuilds;
SELECT pg_temp.err($$SELECT count(*) FROM streamview.sources$$) AS analyst_reads_sources;
SELECT view_name, version, state FROM streamview.status ORDER BY 1, 2;
RESET ROLE;

-- A role without USAGE cannot build on the source even with the API granted.
CREATE ROLE eve LOGIN;
GRANT CREATE ON SCHEMA reports TO eve;
GRANT EXECUTE ON FUNCTION streamview.create_view(text, text, text) TO eve;
SET ROLE eve;
SELECT pg_temp.err($$SELECT streamview.create_view('reports.spy', 'SELECT streamview.tumble(ts, ''1 hour'') AS window_start, count(*) AS n FROM orders GROUP BY 1')$$) AS no_usage;
RESET ROLE;

-- An admin pauses and resumes the source, and rotates its password.
SET ROLE ada;
SELECT streamview.pause('orders') IS NOT NULL AS paused;
SELECT name, paused_at IS NOT NULL AS paused FROM streamview.source_list;
SELECT streamview.resume('orders') IS NOT NULL AS resumed;
SELECT name, paused_at IS NOT NULL AS paused FROM streamview.source_list;
SELECT streamview.alter_source('orders', options => '{"sasl.password":"hunter2-rotated"}') IS NOT NULL AS rotated;
SELECT changed_by, changes FROM streamview.source_changes;
RESET ROLE;

-- USAGE taken back: no new views or rebuilds; the existing view goes on.
SET ROLE streamview_admin;
SELECT streamview.revoke_usage('orders', 'streamview_author');
SELECT name, usage FROM streamview.source_list;
RESET ROLE;
SET ROLE bo;
SELECT pg_temp.err($$SELECT streamview.rebuild('orders_per_shop')$$) AS rebuild_after_revoke;
SELECT view_name, version, state FROM streamview.status ORDER BY 1, 2;
RESET ROLE;

-- Dead letters and worker errors (as a worker records them) are readable
-- by the source's owner and the roles with USAGE, not by analysts.
INSERT INTO streamview.dead_letters (source_name, partition, "offset", reason, payload, error)
VALUES ('orders', 0, 3, 'invalid_json', 'oops', 'invalid JSON');
SET ROLE streamview_admin;
SELECT streamview.grant_usage('orders', 'streamview_author');
RESET ROLE;
SET ROLE ada;
SELECT 'admin' AS who, count(*) AS dead_letters FROM streamview.dead_letters;
SET ROLE cy;
SELECT 'author' AS who, count(*) AS dead_letters FROM streamview.dead_letters;
SET ROLE dee;
SELECT 'analyst' AS who, count(*) AS dead_letters FROM streamview.dead_letters;
RESET ROLE;

-- The secret is nowhere an author or an analyst can read: every relation
-- of the extension's schema they may SELECT, searched row by row.
CREATE FUNCTION pg_temp.secret_hits() RETURNS text LANGUAGE plpgsql AS $$
DECLARE r regclass; n bigint; seen text := '';
BEGIN
    FOR r IN SELECT c.oid FROM pg_class c
              WHERE c.relnamespace = 'streamview'::regnamespace AND c.relkind IN ('r', 'v')
                AND has_table_privilege(c.oid, 'SELECT') ORDER BY c.relname LOOP
        EXECUTE format('SELECT count(*) FROM %s x WHERE x::text LIKE %L', r, '%hunter2%') INTO n;
        seen := seen || r::text || '=' || n || ' ';
    END LOOP;
    RETURN seen;
END $$;
SET ROLE bo;
SELECT pg_temp.secret_hits() AS author_finds;
SET ROLE dee;
SELECT pg_temp.secret_hits() AS analyst_finds;
SET ROLE streamview_admin;
SELECT pg_temp.secret_hits() ~ 'source_list=1' AS the_admin_finds_it_so_the_search_works;
RESET ROLE;

-- Clean up
SET ROLE bo;
SELECT streamview.drop_view('orders_per_shop');
SET ROLE streamview_admin;
SELECT streamview.drop_source('orders');
RESET ROLE;
DELETE FROM streamview.dead_letters;
DROP SCHEMA reports;
DROP OWNED BY streamview_admin, streamview_author, analyst, eve;
DROP ROLE ada, bo, cy, dee, eve, streamview_admin, streamview_author, analyst;
