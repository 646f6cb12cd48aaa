-- Who may do what: the API is closed to PUBLIC; objects a role creates
-- belong to it; catalog tables and broker options stay private.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_streamview;
RESET client_min_messages;
\set SHOW_CONTEXT never
CREATE ROLE sv_alice LOGIN;
CREATE ROLE sv_bob LOGIN;
GRANT CREATE ON SCHEMA public TO sv_alice, sv_bob;

SET ROLE sv_alice;
SELECT streamview.create_source('clicks', '127.0.0.1:9', 'clicks', '{"ts":"timestamptz","page":"text"}', 'ts') LIKE 'pg_streamview.%' AS created;
RESET ROLE;

GRANT EXECUTE ON FUNCTION
  streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text, text, text, int, text, text, text),
  streamview.drop_source(text, bool),
  streamview.create_view(text, text, text),
  streamview.drop_view(text) TO sv_alice, sv_bob;

SET ROLE sv_alice;
SELECT streamview.create_source('clicks', '127.0.0.1:9', 'clicks', '{"ts":"timestamptz","page":"text"}', 'ts',
                                options => '{"sasl.password":"secret"}') LIKE 'pg_streamview.%' AS created;
SELECT streamview.create_view('clicks_per_page', $$
  SELECT streamview.tumble(ts, '1 hour') AS window_start, page, count(*) AS n FROM clicks GROUP BY 1, 2 $$);
SELECT name, options FROM streamview.source_list;
SELECT count(*) FROM streamview.sources;
SELECT count(*) FROM streamview.offsets;
SELECT * FROM clicks_per_page;
RESET ROLE;

SELECT c.relname, pg_get_userbyid(c.relowner) AS owner
  FROM pg_class c WHERE c.relname LIKE 'clicks_per_page%' ORDER BY 1;
SELECT name, owner FROM streamview.views;

-- dead letters (as a worker would record them) are readable by the source's owner only
INSERT INTO streamview.dead_letters (source_name, partition, "offset", reason, payload, error)
VALUES ('clicks', 0, 7, 'invalid_json', 'oops', 'invalid JSON');
SET ROLE sv_alice;
SELECT source_name, "offset", reason FROM streamview.dead_letters;
RESET ROLE;

-- bob sees no options and no dead letters, and may neither read alice's source nor drop her objects
SET ROLE sv_bob;
SELECT name, options FROM streamview.source_list;
SELECT count(*) AS dead_letters_bob_sees FROM streamview.dead_letters;
SELECT streamview.create_view('bobs_view', $$
  SELECT streamview.tumble(ts, '1 hour') AS window_start, count(*) AS n FROM clicks GROUP BY 1 $$);
SELECT streamview.drop_view('clicks_per_page');
SELECT streamview.drop_source('clicks');
RESET ROLE;

SET ROLE sv_alice;
SELECT streamview.drop_source('clicks', cascade => true);
RESET ROLE;
SELECT count(*) AS sources FROM streamview.sources;
DROP OWNED BY sv_alice, sv_bob;
DROP ROLE sv_alice;
DROP ROLE sv_bob;

-- Hardening: what a role with the API may not do
CREATE ROLE "App User" LOGIN;
GRANT CREATE ON SCHEMA public TO "App User";
GRANT EXECUTE ON FUNCTION
  streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text, text, text, int, text, text, text),
  streamview.drop_source(text, bool),
  streamview.create_view(text, text, text),
  streamview.add_check(text, text, text),
  streamview.validate(text, int, bool) TO "App User";
SET ROLE "App User";
-- librdkafka options that run programs or read files are for superusers
SELECT streamview.create_source('s_evil', '127.0.0.1:9', 't', '{"ts":"timestamptz"}', 'ts',
       options => '{"sasl.kerberos.kinit.cmd":"touch /tmp/pwned"}') LIKE 'pg_streamview.%' AS created;
-- and options that would break exactly-once are for no one
SELECT streamview.create_source('s_evil', '127.0.0.1:9', 't', '{"ts":"timestamptz"}', 'ts',
       options => '{"enable.auto.commit":"true"}') LIKE 'pg_streamview.%' AS created;
SELECT streamview.create_source('s_ok', '127.0.0.1:9', 't', '{"ts":"timestamptz","k":"text"}', 'ts',
       options => '{"security.protocol":"SASL_SSL","sasl.username":"u","session.timeout.ms":"6000"}') LIKE 'pg_streamview.%' AS created;
-- a window size is a literal: no function runs while the query is compiled
CREATE FUNCTION public.sneaky_size() RETURNS interval LANGUAGE sql IMMUTABLE AS $$ SELECT interval '1 minute' $$;
SELECT streamview.create_view('v_evil', $$
  SELECT streamview.tumble(ts, public.sneaky_size()) AS window_start, count(*) AS n FROM s_ok GROUP BY 1 $$);
-- a role whose name needs quotes owns what it creates
SELECT streamview.create_view('v_ok', $$
  SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS n FROM s_ok GROUP BY 1, 2 $$);
-- a check cannot change the settings of the session that validates
CREATE FUNCTION public.meddle(bigint) RETURNS bool LANGUAGE sql VOLATILE
  AS $$ SELECT set_config('search_path', 'public, pg_catalog', false) IS NOT NULL $$;
SELECT streamview.add_check('v_ok', 'meddling', 'public.meddle(n)');
SELECT "check", passed FROM streamview.validate('v_ok', 1) WHERE "check" LIKE 'check %';
SHOW search_path;
RESET ROLE;
SELECT c.relname, pg_get_userbyid(c.relowner) AS owner FROM pg_class c
 WHERE c.relname IN ('v_ok', 'v_ok_v1') ORDER BY 1;
SELECT streamview.drop_source('s_ok', cascade => true);
DROP FUNCTION public.sneaky_size(), public.meddle(bigint);
DROP OWNED BY "App User";
DROP ROLE "App User";
