-- The findings of the security review (../shared/reviews/security.md), each
-- reproduced as the review did it, and shown closed.  Worker-side variants
-- (one needs a broker) are in t/006_security.pl.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_streamview;
RESET client_min_messages;
\set SHOW_CONTEXT never
\i test/sql/helpers.psql

CREATE ROLE sv_eve LOGIN;
CREATE ROLE sv_analyst LOGIN;
CREATE SCHEMA sv_eve AUTHORIZATION sv_eve;
GRANT USAGE ON SCHEMA sv_eve TO PUBLIC;
GRANT EXECUTE ON FUNCTION
  streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text, text, text, int, text, text, text),
  streamview.drop_source(text, bool),
  streamview.create_view(text, text, text),
  streamview.drop_view(text),
  streamview.add_check(text, text, text),
  streamview.validate(text, int, bool),
  streamview.rebuild(text, text, text, bigint, bool),
  streamview.swap(text, int, bool),
  streamview.rollback(text) TO sv_eve;

------------------------------------------------------------------------------
-- F1: user code (here a check's predicate) calls the API, whose bracket used
-- to overwrite the caller's, then sets search_path for the session; the
-- extension owner's code that followed resolved || to the attacker's.
------------------------------------------------------------------------------
SET ROLE sv_eve;
SET search_path = sv_eve;
SELECT streamview.create_source('s_eve', '127.0.0.1:9', 't', '{"ts":"timestamptz","k":"text"}', 'ts') LIKE 'pg_streamview.%' AS created;
SELECT streamview.create_view('sv_eve.v1', $$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n FROM s_eve GROUP BY 1 $$);
SELECT streamview.create_view('sv_eve.v2', $$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n FROM s_eve GROUP BY 1 $$);
-- harmless when the check is added, nesting when validate() runs it
CREATE FUNCTION sv_eve.nest() RETURNS bool LANGUAGE sql STABLE AS 'SELECT true';
SELECT streamview.add_check('v1', 'c', 'sv_eve.nest()');
CREATE OR REPLACE FUNCTION sv_eve.nest() RETURNS bool LANGUAGE plpgsql STABLE AS $f$
BEGIN
  PERFORM * FROM streamview.validate('v2', 1);
  PERFORM pg_catalog.set_config('search_path', 'sv_eve, pg_catalog', false);
  RETURN true;
END $f$;
-- the same, with the refusal caught: the search_path it sets is still undone
CREATE FUNCTION sv_eve.nest_quietly() RETURNS bool LANGUAGE plpgsql STABLE AS $f$
BEGIN
  BEGIN
    PERFORM * FROM streamview.validate('v2', 1);
  EXCEPTION WHEN insufficient_privilege THEN
    NULL;
  END;
  PERFORM pg_catalog.set_config('search_path', 'sv_eve, pg_catalog', false);
  RETURN true;
END $f$;
CREATE FUNCTION sv_eve.cat(a text, b text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE sv_eve SUPERUSER';
  END IF;
  RETURN pg_catalog.textcat(a, b);
END $f$;
CREATE OPERATOR sv_eve.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = sv_eve.cat);
SELECT streamview.add_check('v2', 'trivial', 'true');
SELECT streamview.add_check('v1', 'd', 'sv_eve.nest_quietly()');
RESET search_path;
SELECT pg_temp.err($$SELECT * FROM streamview.validate('v1', 1)$$) AS nested_validate;
SHOW search_path;
-- validate() again: with the old bracket, its || now ran as the extension owner
CREATE OR REPLACE FUNCTION sv_eve.nest() RETURNS bool LANGUAGE sql STABLE AS 'SELECT true';
SELECT "check", passed FROM streamview.validate('v1', 1) WHERE "check" LIKE 'check %';
SHOW search_path;
-- a call from user code is refused whatever the function: add_check too
SELECT streamview.add_check('v2', 'nested', $$(SELECT streamview.add_check('v1', 'x', 'true') IS NULL)$$);
RESET ROLE;
SELECT rolsuper AS eve_is_superuser FROM pg_roles WHERE rolname = 'sv_eve';

------------------------------------------------------------------------------
-- F3: drop_view, swap and rollback act on the view create_view made, not on
-- whatever relation has its name now (another role's, in a shared schema).
------------------------------------------------------------------------------
CREATE SCHEMA sv_shared;
GRANT USAGE, CREATE ON SCHEMA sv_shared TO sv_eve, sv_analyst;
SET ROLE sv_eve;
SELECT streamview.create_source('s_f3', '127.0.0.1:9', 't', '{"ts":"timestamptz","k":"text"}', 'ts') LIKE 'pg_streamview.%' AS created;
-- drop: eve's stream view is dropped by hand, the analyst makes a view of that name
SELECT streamview.create_view('sv_shared.report2', $$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n FROM s_f3 GROUP BY 1 $$);
-- (a plain DROP VIEW of a stream view is refused, unless a superuser
-- disabled the guard, as here, to try what the extension does then)
SELECT pg_temp.err($$DROP VIEW sv_shared.report2$$) AS refused;
RESET ROLE;
ALTER EVENT TRIGGER streamview_guard_drop DISABLE;
SET ROLE sv_eve;
DROP VIEW sv_shared.report2;
SET ROLE sv_analyst;
CREATE VIEW sv_shared.report2 AS SELECT 'analyst data'::text AS x;
SET ROLE sv_eve;
SELECT streamview.drop_view('report2');
SET ROLE sv_analyst;
SELECT x FROM sv_shared.report2;
-- takeover: eve renames her stream view away, the analyst makes a view of that name
SET ROLE sv_eve;
SELECT streamview.create_view('sv_shared.daily_kpis', $$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n FROM s_f3 GROUP BY 1 $$);
-- (renaming a stream view is refused too, unless the guard is disabled)
SELECT pg_temp.err($$ALTER VIEW sv_shared.daily_kpis RENAME TO eve_kpis_old$$) AS refused_rename;
RESET ROLE;
ALTER EVENT TRIGGER streamview_guard_alter DISABLE;
SET ROLE sv_eve;
ALTER VIEW sv_shared.daily_kpis RENAME TO eve_kpis_old;
SET ROLE sv_analyst;
CREATE VIEW sv_shared.daily_kpis AS SELECT 'analyst data'::text AS secret_col;
SET ROLE sv_eve;
SELECT streamview.rebuild('daily_kpis', $$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n, max(k) AS mx FROM s_f3 GROUP BY 1 $$);
RESET ROLE;
UPDATE streamview.versions SET state = 'caught_up' WHERE view_name = 'daily_kpis' AND version = 2;
SET ROLE sv_eve;
SELECT streamview.swap('daily_kpis', 2, force => true);
RESET ROLE;
-- the analyst's view is untouched; eve's renamed stream view was swapped
SELECT c.relname, pg_get_userbyid(c.relowner) AS owner, a.attname
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
 WHERE c.relnamespace = 'sv_shared'::regnamespace AND c.relkind = 'v' ORDER BY 1, a.attnum;
-- a stream view dropped by hand is made again by rollback, for its owner
SET ROLE sv_eve;
DROP VIEW sv_shared.eve_kpis_old;
SELECT streamview.rollback('daily_kpis');
SET ROLE sv_analyst;
DROP VIEW sv_shared.daily_kpis;
SET ROLE sv_eve;
SELECT streamview.rollback('daily_kpis');
RESET ROLE;
ALTER EVENT TRIGGER streamview_guard_drop ENABLE;
ALTER EVENT TRIGGER streamview_guard_alter ENABLE;
SELECT c.relname, pg_get_userbyid(c.relowner) AS owner FROM pg_class c
 WHERE c.relnamespace = 'sv_shared'::regnamespace AND c.relkind = 'v' ORDER BY 1;
-- an owner who may no longer create in the schema cannot rebuild or swap there
REVOKE CREATE ON SCHEMA sv_shared FROM sv_eve;
SET ROLE sv_eve;
SELECT pg_temp.err($$SELECT streamview.rebuild('daily_kpis')$$) AS rebuild_without_create;
SELECT pg_temp.err($$SELECT streamview.swap('daily_kpis', 2, force => true)$$) AS swap_without_create;
SELECT streamview.drop_source('s_f3', cascade => true);
RESET ROLE;
DROP SCHEMA sv_shared CASCADE;

------------------------------------------------------------------------------
-- F5: a validation's detail quotes rows and totals; only the view's owner
-- (and its members) may read it.
------------------------------------------------------------------------------
SET ROLE sv_eve;
SELECT streamview.create_source('payroll', '127.0.0.1:9', 'payroll',
       '{"ts":"timestamptz","emp":"text","salary":"bigint"}', 'ts') LIKE 'pg_streamview.%' AS created;
SELECT streamview.create_view('sv_eve.salaries', $$ SELECT streamview.tumble(ts, '1 minute') AS window_start, emp,
       sum(salary) AS total FROM payroll GROUP BY 1, 2 $$);
SELECT streamview.rebuild('salaries');
RESET ROLE;
-- rows as the worker would have written them, final in both versions
INSERT INTO sv_eve.salaries_v1 (window_start, window_end, emp, total) VALUES ('2024-05-01 12:00+00', '2024-05-01 12:01+00', 'emp0-SSN-123-45-6780', 100000);
INSERT INTO sv_eve.salaries_v2 (window_start, window_end, emp, total) VALUES ('2024-05-01 12:00+00', '2024-05-01 12:01+00', 'emp0-SSN-123-45-6780', 90000);
UPDATE streamview.versions SET watermark = '2024-05-02', state = 'caught_up'
 WHERE view_name = 'salaries' AND version = 2;
UPDATE streamview.versions SET watermark = '2024-05-02' WHERE view_name = 'salaries' AND version = 1;
SET ROLE sv_eve;
SELECT "check", passed, detail LIKE '%SSN%' AS quotes_rows FROM streamview.validate('salaries', 2)
 WHERE "check" = 'differences';
SELECT count(*) AS eve_reads FROM streamview.validations WHERE view_name = 'salaries';
SET ROLE sv_analyst;
SELECT pg_temp.err('SELECT * FROM sv_eve.salaries') AS analyst_reads_view;
SELECT count(*) AS analyst_reads FROM streamview.validations WHERE view_name = 'salaries';
SELECT count(*) AS analyst_reads_any FROM streamview.validations WHERE detail LIKE '%SSN%';
RESET ROLE;

------------------------------------------------------------------------------
-- F9: worker errors go with their source; the next source of that name
-- (another role's) starts with none.  The review's _may_read_source, which
-- told anyone what another role may read, is gone.  (Only the row written
-- here is counted: a worker, if workers run, records its own errors.)
------------------------------------------------------------------------------
INSERT INTO streamview.worker_errors (source_id, source_name, message, detail)
SELECT source_id, name, 'null value in column', 'Failing row contains (emp0-SSN-123-45-6780)'
  FROM streamview.sources WHERE name = 'payroll';
SET ROLE sv_eve;
SELECT count(*) AS eve_errors FROM streamview.worker_errors
 WHERE source_name = 'payroll' AND detail LIKE '%SSN%';
SELECT streamview.drop_source('payroll', cascade => true);
RESET ROLE;
GRANT EXECUTE ON FUNCTION
  streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text, text, text, int, text, text, text) TO sv_analyst;
SET ROLE sv_analyst;
SELECT streamview.create_source('payroll', '127.0.0.1:9', 'payroll', '{"ts":"timestamptz"}', 'ts') LIKE 'pg_streamview.%' AS created;
SELECT count(*) AS inherited_errors FROM streamview.worker_errors
 WHERE source_name = 'payroll' AND detail LIKE '%SSN%';
RESET ROLE;
SELECT count(*) AS errors_left FROM streamview.worker_errors WHERE detail LIKE '%SSN%';
SELECT count(*) AS may_read_source FROM pg_proc WHERE proname = '_may_read_source';
SELECT streamview.drop_source('payroll');
REVOKE ALL ON FUNCTION streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text, text, text, int, text, text, text) FROM sv_analyst;

------------------------------------------------------------------------------
-- F11: librdkafka's memory bounds are not for grantees to raise; and
-- metadata.broker.list, an alias of bootstrap.servers, is refused like it.
------------------------------------------------------------------------------
SET ROLE sv_eve;
SELECT pg_temp.err($$SELECT streamview.create_source('s_mem', '127.0.0.1:9', 't', '{"ts":"timestamptz"}', 'ts',
       options => '{"queued.max.messages.kbytes":2097151}')$$) AS queue_kbytes;
SELECT pg_temp.err($$SELECT streamview.create_source('s_mem', '127.0.0.1:9', 't', '{"ts":"timestamptz"}', 'ts',
       options => '{"receive.message.max.bytes":"2147483647"}')$$) AS receive_bytes;
SELECT pg_temp.err($$SELECT streamview.create_source('s_mem', '127.0.0.1:9', 't', '{"ts":"timestamptz"}', 'ts',
       options => '{"fetch.max.bytes":"lots"}')$$) AS fetch_bytes;
SELECT pg_temp.err($$SELECT streamview.create_source('s_mem', '127.0.0.1:9', 't', '{"ts":"timestamptz"}', 'ts',
       options => '{"metadata.broker.list":"10.255.255.1:9092"}')$$) AS broker_alias;
-- within the bounds is fine
SELECT pg_temp.err($$SELECT streamview.create_source('s_mem', '127.0.0.1:9', 't', '{"ts":"timestamptz"}', 'ts',
       options => '{"queued.max.messages.kbytes":8192,"fetch.message.max.bytes":"65536"}')$$) AS within_bounds;
SELECT streamview.drop_source('s_mem');
RESET ROLE;
-- a superuser may raise them
SELECT streamview.create_source('s_mem', '127.0.0.1:9', 't', '{"ts":"timestamptz"}', 'ts',
       options => '{"queued.max.messages.kbytes":65536}') LIKE 'pg_streamview.%' AS created;
SELECT streamview.drop_source('s_mem');

------------------------------------------------------------------------------
-- Informational: window arithmetic near the ends of the timestamp range.
------------------------------------------------------------------------------
SET TimeZone = 'UTC';
SELECT streamview.tumble('294276-12-31 23:59:59+00', '1 hour') AS last_hour;
SELECT streamview.hop('294276-12-31 23:59:59+00', '2 hours', '1 hour') AS last_hop;
SELECT streamview.tumble('4714-11-24 00:00:01+00 BC', '1 hour') AS first_hour;
SELECT pg_temp.err($$SELECT streamview.tumble('4714-11-24 00:00:01+00 BC', '7 days')$$) AS before_the_first;
RESET TimeZone;

------------------------------------------------------------------------------
-- Issue 8, item 11: code a user wrote runs as the view's owner, restricted:
-- it cannot read what the owner cannot, become another role, create
-- temporary objects to stand in for catalog ones, or put triggers on the
-- tables the extension writes as its owner.
------------------------------------------------------------------------------
CREATE TABLE public.sv_private (secret text);
INSERT INTO public.sv_private VALUES ('top secret');
SET ROLE sv_eve;
SELECT streamview.create_source('s_uc', '127.0.0.1:9', 't', '{"ts":"timestamptz","k":"text"}', 'ts') LIKE 'pg_streamview.%' AS created;
SELECT streamview.create_view('sv_eve.uc', $$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n FROM s_uc GROUP BY 1 $$);
RESET ROLE;
-- a row, as the worker would have written it: checks are evaluated per row
INSERT INTO sv_eve.uc_v1 (window_start, window_end, n) VALUES ('2024-05-01 12:00+00', '2024-05-01 12:01+00', 1);
SET ROLE sv_eve;
SELECT pg_temp.err($$SELECT streamview.add_check('uc', 'reads_sources', '(SELECT count(*) FROM streamview.sources) >= 0')$$) AS check_reads_catalog;
SELECT pg_temp.err($$SELECT streamview.add_check('uc', 'reads_private', '(SELECT count(*) FROM public.sv_private) >= 0')$$) AS check_reads_other_table;
SELECT pg_temp.err($$SELECT streamview.add_check('uc', 'becomes', $c$set_config('role', 'postgres', false) IS NOT NULL$c$)$$) AS check_sets_role;
CREATE FUNCTION sv_eve.make_temp() RETURNS bool LANGUAGE plpgsql AS $f$
BEGIN
  CREATE TEMP TABLE sources (x int);
  RETURN true;
END $f$;
SELECT pg_temp.err($$SELECT streamview.add_check('uc', 'temp', 'sv_eve.make_temp()')$$) AS check_creates_temp;
CREATE FUNCTION sv_eve.trg() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN RETURN NULL; END $f$;
SELECT pg_temp.err($$CREATE TRIGGER t AFTER INSERT ON streamview.offsets FOR EACH ROW EXECUTE FUNCTION sv_eve.trg()$$) AS trigger_on_offsets;
SELECT pg_temp.err($$CREATE TRIGGER t AFTER INSERT ON streamview.dead_letters FOR EACH ROW EXECUTE FUNCTION sv_eve.trg()$$) AS trigger_on_dead_letters;
SELECT pg_temp.err($$CREATE RULE r AS ON UPDATE TO streamview.versions DO ALSO NOTHING$$) AS rule_on_versions;
SELECT count(*) AS checks_added FROM streamview.checks c JOIN streamview.views v USING (view_id) WHERE v.name = 'uc';
SELECT streamview.drop_source('s_uc', cascade => true);
RESET ROLE;
DROP TABLE public.sv_private;

------------------------------------------------------------------------------
-- F6: a schema named streamview that another role made before the extension
-- was installed is refused, and so is one that others may create in.
------------------------------------------------------------------------------
-- (In this database, the one the workers serve, with the extension dropped
-- and made again in a transaction that is rolled back.)
\set regressdb :DBNAME
CREATE ROLE sv_mallory;
GRANT CREATE ON DATABASE :"regressdb" TO sv_mallory;
BEGIN;
SET LOCAL client_min_messages = warning;
DROP EXTENSION pg_streamview CASCADE;
DROP SCHEMA streamview;
SET ROLE sv_mallory;
CREATE SCHEMA streamview;
RESET ROLE;
SAVEPOINT owned_by_mallory;
CREATE EXTENSION pg_streamview;
ROLLBACK TO owned_by_mallory;
DROP SCHEMA streamview;
CREATE SCHEMA streamview;
GRANT CREATE ON SCHEMA streamview TO PUBLIC;
SAVEPOINT open_to_public;
CREATE EXTENSION pg_streamview;
ROLLBACK TO open_to_public;
REVOKE CREATE ON SCHEMA streamview FROM PUBLIC;
CREATE EXTENSION pg_streamview;
SELECT extname FROM pg_extension WHERE extname = 'pg_streamview';
ROLLBACK;
REVOKE CREATE ON DATABASE :"regressdb" FROM sv_mallory;
DROP ROLE sv_mallory;
-- The dispatcher runs only implementations that belong to the extension.
ALTER EXTENSION pg_streamview DROP FUNCTION streamview_internal._drop_check_impl(regrole, text, text);
SELECT pg_temp.err($$SELECT streamview.drop_check('v', 'c')$$) AS not_a_member;
ALTER EXTENSION pg_streamview ADD FUNCTION streamview_internal._drop_check_impl(regrole, text, text);
SELECT pg_temp.err($$SELECT streamview.drop_check('v', 'c')$$) AS a_member_again;

------------------------------------------------------------------------------
-- A version's statement reads its batch from the worker's memory with
-- _batch_rows, which PUBLIC may execute (the statement runs as the view's
-- owner).  Outside the worker applying that version's batch it returns
-- nothing of anyone's: an error, whoever calls it, for any version.
------------------------------------------------------------------------------
SELECT version_id AS v1_id,
       regexp_replace(batch_sql, '^.* FROM (\S+)\(\d+\) AS b\(([^)]*)\) .*$', '\1(N) AS b(\2)') AS reads
  FROM streamview.versions WHERE view_name = 'v1' AND version = 1 \gset
SELECT :'reads' AS reads;
SET ROLE sv_analyst;
SELECT replace(pg_temp.err(format('SELECT * FROM streamview_internal._batch_rows(%s) AS b(ts timestamptz, k text, s timestamptz, e timestamptz)',
                                  :v1_id)), :'v1_id', 'N') AS another_roles_version;
SET ROLE sv_eve;
SELECT replace(pg_temp.err(format('SELECT * FROM streamview_internal._batch_rows(%s) AS b(ts timestamptz, k text, s timestamptz, e timestamptz)',
                                  :v1_id)), :'v1_id', 'N') AS own_version_outside_a_worker;
RESET ROLE;
SELECT pg_temp.err('SELECT streamview_internal._batch_rows(0)') AS not_in_from;
-- The same for _batch_partials, which the merge statement of a batch of
-- several rounds reads (also executable by PUBLIC): outside the worker
-- merging that version's batch, an error, whoever calls it.
SET ROLE sv_analyst;
SELECT replace(pg_temp.err(format('SELECT * FROM streamview_internal._batch_partials(%s) AS p(k text, n bigint)',
                                  :v1_id)), :'v1_id', 'N') AS partials_of_another_roles_version;
SET ROLE sv_eve;
SELECT replace(pg_temp.err(format('SELECT * FROM streamview_internal._batch_partials(%s) AS p(k text, n bigint)',
                                  :v1_id)), :'v1_id', 'N') AS own_partials_outside_a_worker;
RESET ROLE;

------------------------------------------------------------------------------
-- Clean up
------------------------------------------------------------------------------
SET ROLE sv_eve;
SELECT streamview.drop_source('s_eve', cascade => true);
RESET ROLE;
DROP SCHEMA sv_eve CASCADE;
DROP OWNED BY sv_eve, sv_analyst;
DROP ROLE sv_eve, sv_analyst;
