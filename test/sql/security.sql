-- The findings of the security review (../shared/reviews/security.md), each
-- reproduced as the review did it, and shown closed.  Worker-side variants
-- (one needs a broker) are in t/006_security.pl.
CREATE EXTENSION IF NOT EXISTS pg_streamview;
\set SHOW_CONTEXT never
\i test/sql/helpers.psql

CREATE ROLE sv_eve LOGIN;
CREATE SCHEMA sv_eve AUTHORIZATION sv_eve;
GRANT USAGE ON SCHEMA sv_eve TO PUBLIC;
GRANT EXECUTE ON FUNCTION
  streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text),
  streamview.drop_source(text, bool),
  streamview.create_view(text, text, text),
  streamview.drop_view(text),
  streamview.add_check(text, text, text),
  streamview.validate(text, int, bool) TO sv_eve;

------------------------------------------------------------------------------
-- F1: user code (here a check's predicate) calls the API, whose bracket used
-- to overwrite the caller's, then sets search_path for the session; the
-- extension owner's code that followed resolved || to the attacker's.
------------------------------------------------------------------------------
SET ROLE sv_eve;
SET search_path = sv_eve;
SELECT streamview.create_source('s_eve', '127.0.0.1:9', 't', '{"ts":"timestamptz","k":"text"}', 'ts');
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
-- F6: a schema named streamview that another role made before the extension
-- was installed is refused, and so is one that others may create in.
------------------------------------------------------------------------------
\set regressdb :DBNAME
CREATE DATABASE sv_f6;
\c sv_f6
\set SHOW_CONTEXT never
CREATE ROLE sv_mallory;
GRANT CREATE ON DATABASE sv_f6 TO sv_mallory;
SET ROLE sv_mallory;
CREATE SCHEMA streamview;
RESET ROLE;
CREATE EXTENSION pg_streamview;
DROP SCHEMA streamview;
CREATE SCHEMA streamview;
GRANT CREATE ON SCHEMA streamview TO PUBLIC;
CREATE EXTENSION pg_streamview;
REVOKE CREATE ON SCHEMA streamview FROM PUBLIC;
CREATE EXTENSION pg_streamview;
SELECT extname FROM pg_extension WHERE extname = 'pg_streamview';
\c :regressdb
\set SHOW_CONTEXT never
\i test/sql/helpers.psql
DROP DATABASE sv_f6;
DROP ROLE sv_mallory;
-- The dispatcher runs only implementations that belong to the extension.
ALTER EXTENSION pg_streamview DROP FUNCTION streamview._drop_check_impl(regrole, text, text);
SELECT pg_temp.err($$SELECT streamview.drop_check('v', 'c')$$) AS not_a_member;
ALTER EXTENSION pg_streamview ADD FUNCTION streamview._drop_check_impl(regrole, text, text);
SELECT pg_temp.err($$SELECT streamview.drop_check('v', 'c')$$) AS a_member_again;

------------------------------------------------------------------------------
-- Clean up
------------------------------------------------------------------------------
SET ROLE sv_eve;
SELECT streamview.drop_source('s_eve', cascade => true);
RESET ROLE;
DROP SCHEMA sv_eve CASCADE;
DROP OWNED BY sv_eve;
DROP ROLE sv_eve;
