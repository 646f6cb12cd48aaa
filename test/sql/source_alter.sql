-- alter_source: what it changes (brokers, options merged, max_future), what
-- it refuses to change (how messages are read), who may call it, what it
-- records in streamview.source_changes, and that a broker secret given to
-- it shows nowhere but where create_source's does.  (The workers picking up
-- a change are tested with a broker, in t/013_alter_source.pl.)
CREATE EXTENSION IF NOT EXISTS pg_streamview;
\set SHOW_CONTEXT never
\pset null '(null)'
\i test/sql/helpers.psql
SELECT now() AS t0 \gset

-- An owner (a group role), a member of it, a role with USAGE on the source,
-- and a role that has the API but no part in the source.
CREATE ROLE sv_alter_owner NOLOGIN;
CREATE ROLE sv_alter_member LOGIN IN ROLE sv_alter_owner;
CREATE ROLE sv_alter_user LOGIN;
CREATE ROLE sv_alter_other LOGIN;
CREATE ROLE sv_alter_nobody LOGIN;
GRANT EXECUTE ON FUNCTION
  streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text, text, text, int, text, text, text),
  streamview.alter_source(text, text, jsonb, text, text, jsonb, text, text, text, text, int, jsonb, text),
  streamview.drop_source(text, bool),
  streamview.pause(text),
  streamview.grant_usage(text, regrole) TO sv_alter_owner, sv_alter_user, sv_alter_other;

SET ROLE sv_alter_owner;
SELECT streamview.create_source('moving', '127.0.0.1:9', 'moving',
       '{"id":"text","n":{"type":"bigint","default":0},"region":{"type":"text","path":"geo.region"},"ts":"timestamptz"}',
       'ts', event_id => 'id', max_out_of_orderness => '5 seconds',
       options => '{"session.timeout.ms":"6000","sasl.username":"svc","sasl.password":"hunter2-first"}') LIKE 'pg_streamview.%' AS created;
SELECT streamview.grant_usage('moving', 'sv_alter_user');

-- Nothing to change: NULL, and no change recorded.
SELECT streamview.alter_source('moving') AS nothing;
SELECT streamview.alter_source('moving', brokers => '127.0.0.1:9', max_future => '24 hours',
       options => '{"sasl.username":"svc"}') AS same_values;
-- The whole definition may be passed, as long as it is the source's own:
-- the same columns written another way, the same interval written another way.
SELECT streamview.alter_source('moving', topic => 'moving', event_time => 'ts', event_id => 'id',
       max_out_of_orderness => '00:00:05',
       columns => '{"ts":{"type":"timestamptz"},"id":"text","region":{"type":"text","path":"geo.region"},
                    "n":{"type":"int8","default":"0"}}') AS whole_definition;
SELECT count(*) AS changes FROM streamview.source_changes;

-- brokers: the function returns the id of the change it recorded.
SELECT streamview.alter_source('moving', brokers => '127.0.0.1:19092') AS change_id \gset
SELECT :change_id = max(change_id) AS returns_the_change FROM streamview.source_changes;
SELECT name, brokers FROM streamview.source_list;

-- options are merged: a property set is added or replaced, one set to null
-- is removed, the others stay.
SELECT streamview.alter_source('moving',
       options => '{"sasl.password":"hunter2-second","fetch.wait.max.ms":100,"session.timeout.ms":null,"no.such":null}')
       IS NOT NULL AS options_changed;
SELECT options FROM streamview.source_list WHERE name = 'moving';

-- max_future: another bound, 'infinity' turns the check off (NULL), and
-- back on.
SELECT streamview.alter_source('moving', max_future => '2 hours') IS NOT NULL AS bounded;
SELECT max_future FROM streamview.source_list;
SELECT streamview.alter_source('moving', max_future => 'Infinity') IS NOT NULL AS unbounded;
SELECT max_future FROM streamview.source_list;
SELECT streamview.alter_source('moving', max_future => 'infinity') AS already_unbounded;
SELECT streamview.alter_source('moving', max_future => '1 day', brokers => '127.0.0.1:9') IS NOT NULL AS both;
SELECT brokers, max_future FROM streamview.source_list;

-- partitions: a subset of the topic's partitions, normalized, recorded as
-- source_list shows it; the same set written another way is no change;
-- 'all' reads every partition again.  (The worker reading only those:
-- t/025_scaling.pl.)
SELECT streamview.alter_source('moving', partitions => '7, 0-3,2-5, 9-') IS NOT NULL AS subset;
SELECT partitions FROM streamview.source_list;
SELECT streamview.alter_source('moving', partitions => '0-5,7,9-') AS same_subset;
SELECT streamview.alter_source('moving', partitions => 'ALL') IS NOT NULL AS every_partition;
SELECT partitions FROM streamview.source_list;
SELECT streamview.alter_source('moving', partitions => 'all') AS already_every_partition;
SELECT streamview.alter_source('moving', partitions => '0-1') IS NOT NULL AS two;

-- workers: how many source workers split the partitions (1 to 64), one
-- for a source with an event_id; a change is recorded like the others; a
-- role that is not a superuser has streamview.max_workers_per_role (4)
-- workers in all.
SELECT workers FROM streamview.source_list WHERE name = 'moving';
SELECT streamview.alter_source('moving', workers => 1) AS same_workers;
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', workers => 2) $$) AS with_event_id;
SELECT streamview.create_source('split', '127.0.0.1:9', 'split', '{"ts":"timestamptz"}', 'ts',
       workers => 2) LIKE 'pg_streamview.%' AS created_with_two;
SELECT name, workers FROM streamview.source_list ORDER BY name;
SELECT streamview.alter_source('split', workers => 3) IS NOT NULL AS three;
SELECT streamview.alter_source('split', workers => 1) IS NOT NULL AS one;
SELECT pg_temp.err($$ SELECT streamview.alter_source('split', workers => 0) $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('split', workers => 65) $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('split', workers => 5) $$) AS over_quota;
SELECT pg_temp.err($$ SELECT streamview.create_source('split2', '127.0.0.1:9', 'split', '{"ts":"timestamptz"}', 'ts',
                      workers => 0) $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('split2', '127.0.0.1:9', 'split', '{"ts":"timestamptz"}', 'ts',
                      workers => NULL) $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('split2', '127.0.0.1:9', 'split', '{"id":"text","ts":"timestamptz"}',
                      'ts', event_id => 'id', workers => 2) $$);
SELECT pg_temp.err($$ SELECT streamview.create_source('split2', '127.0.0.1:9', 'split', '{"ts":"timestamptz"}', 'ts',
                      workers => 4) $$) AS over_quota;
SELECT name, workers FROM streamview.source_list ORDER BY name;
SELECT changes FROM streamview.source_changes WHERE source_name = 'split' ORDER BY change_id;
SELECT streamview.drop_source('split');

-- What makes a view what it is cannot change: each refusal says why and
-- what to do instead.
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', topic => 'elsewhere') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', event_time => 'n') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', event_id => 'region') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', max_out_of_orderness => '1 minute') $$);
-- (Columns may change where no view reads them: test/sql/source_evolve.sql.)
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', columns => '{"ts":"timestamptz"}') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', columns => '[1]') $$);
-- with a change that is allowed: nothing of it is made
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', brokers => '127.0.0.1:1', topic => 'elsewhere') $$);

-- Wrong arguments.
SELECT pg_temp.err($$ SELECT streamview.alter_source(NULL, brokers => '127.0.0.1:1') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('nowhere', brokers => '127.0.0.1:1') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', brokers => '') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', options => '["sasl.password"]') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', options => '{"sasl.password":{"a":1}}') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', options => '{"group.id":"mine"}') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', options => '{"bootstrap.servers":"127.0.0.1:1"}') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', options => '{"ssl.ca.location":"/etc/ssl/ca.pem"}') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', options => '{"queued.max.messages.kbytes":999999}') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', max_future => 'soon') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', max_future => '-1 hour') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', max_future => '1 month') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', partitions => '') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', partitions => 'some') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', partitions => '-3') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', partitions => '3-1') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', brokers => '127.0.0.1:1', partitions => '1-0') $$);
SELECT brokers, max_future, options, partitions FROM streamview.source_list;
RESET ROLE;

-- Who may: a member of the owner role, and a superuser, who may set any
-- property not refused to all.  A property a superuser set stays when the
-- owner changes others, and the owner may remove it.
SET ROLE sv_alter_member;
SELECT streamview.alter_source('moving', options => '{"fetch.wait.max.ms":50}') IS NOT NULL AS member_alters;
RESET ROLE;
SELECT streamview.alter_source('moving', options => '{"ssl.ca.location":"/etc/ssl/ca.pem"}') IS NOT NULL AS superuser_alters;
SET ROLE sv_alter_owner;
SELECT streamview.alter_source('moving', options => '{"fetch.wait.max.ms":60}') IS NOT NULL AS owner_alters_others;
SELECT streamview.alter_source('moving', options => '{"ssl.ca.location":null}') IS NOT NULL AS owner_removes_it;
SELECT options FROM streamview.source_list WHERE name = 'moving';
RESET ROLE;

-- Who may not: a role with USAGE, another role, a role without the grant.
SET ROLE sv_alter_user;
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', brokers => '127.0.0.1:1') $$) AS with_usage;
SET ROLE sv_alter_other;
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', brokers => '127.0.0.1:1') $$) AS other_role;
SET ROLE sv_alter_nobody;
SELECT pg_temp.err($$ SELECT streamview.alter_source('moving', brokers => '127.0.0.1:1') $$) AS without_grant;
RESET ROLE;

-- A paused source may be changed; it stays paused.
SET ROLE sv_alter_owner;
SELECT streamview.pause('moving') IS NOT NULL AS paused;
SELECT streamview.alter_source('moving', brokers => '127.0.0.1:29092') IS NOT NULL AS altered_while_paused;
SELECT brokers, paused_at IS NOT NULL AS still_paused FROM streamview.source_list;
RESET ROLE;

-- The history: who, and what changed, argument by argument; the values of
-- secrets are never written, only that they changed.
SELECT row_number() OVER (ORDER BY change_id) AS n, source_name, changed_by,
       changed_at BETWEEN :'t0' AND now() AS just_now, changes
  FROM streamview.source_changes ORDER BY change_id;
SELECT count(*) AS changes_quoting_a_secret FROM streamview.source_changes WHERE changes::text LIKE '%hunter2%';

-- The owner (and its members) read the history; the role with USAGE, which
-- does not see the options, does not; nor does any other role.
SET ROLE sv_alter_member;
SELECT count(*) AS member_reads FROM streamview.source_changes;
SET ROLE sv_alter_user;
SELECT count(*) AS user_reads FROM streamview.source_changes;
SELECT name, options FROM streamview.source_list;
SET ROLE sv_alter_nobody;
SELECT count(*) AS nobody_reads FROM streamview.source_changes;
RESET ROLE;

-- The secret is nowhere a role other than the owner can read.
CREATE FUNCTION pg_temp.secret_hits() RETURNS text LANGUAGE plpgsql AS $$
DECLARE r regclass; n bigint; seen text := '';
BEGIN
    FOR r IN SELECT c.oid FROM pg_class c
              WHERE c.relnamespace = 'streamview'::regnamespace AND c.relkind IN ('r', 'v')
                AND has_table_privilege(c.oid, 'SELECT') ORDER BY c.relname LOOP
        EXECUTE format('SELECT count(*) FROM %s x WHERE x::text LIKE %L', r, '%hunter2%') INTO n;
        IF n > 0 THEN
            seen := seen || r::text || '=' || n || ' ';
        END IF;
    END LOOP;
    RETURN seen;
END $$;
SET ROLE sv_alter_user;
SELECT pg_temp.secret_hits() AS user_finds;
SET ROLE sv_alter_nobody;
SELECT pg_temp.secret_hits() AS nobody_finds;
SET ROLE sv_alter_member;
SELECT pg_temp.secret_hits() AS the_owner_finds_the_current_one_so_the_search_works;
RESET ROLE;

-- The history goes with its source.
SET ROLE sv_alter_owner;
SELECT streamview.drop_source('moving');
RESET ROLE;
SELECT count(*) AS changes_left FROM streamview.source_changes;

DROP OWNED BY sv_alter_owner, sv_alter_member, sv_alter_user, sv_alter_other, sv_alter_nobody;
DROP ROLE sv_alter_member, sv_alter_owner, sv_alter_user, sv_alter_other, sv_alter_nobody;
