-- Sources that evolve, at the SQL surface: alter_source's add_columns and
-- columns (what a column a version reads refuses, what one no version reads
-- allows), what source_changes and versions.source_definition record, and
-- the errors of check_source and replay_dead_letters before they read
-- anything.  Reading history with a broker: t/030_evolve.pl.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_streamview;
RESET client_min_messages;
\set SHOW_CONTEXT never
\pset null '(null)'
\i test/sql/helpers.psql

SELECT streamview.create_source('shop', '127.0.0.1:9', 'shop',
  '{"shop":"text","cents":"bigint","note":"text","code":"int","ts":"timestamptz"}', 'ts') LIKE 'pg_streamview.%' AS created;
SELECT streamview.create_view('takings', $$
  SELECT streamview.tumble(ts, '1 hour') AS window_start, shop, sum(cents) AS cents
  FROM shop GROUP BY 1, 2 $$);

-- The version records the source's definition it was made with.
SELECT version, source_definition FROM streamview.versions WHERE view_name = 'takings';

-- add_columns: a new column with a default, recorded with who and what.
SELECT streamview.alter_source('shop', add_columns => '{"channel":{"type":"text","default":"web"},"qty":{"type":"int","default":1}}') IS NOT NULL AS changed;
SELECT name, attnum, type, default_value, required FROM streamview.source_columns
 WHERE source_id = (SELECT source_id FROM streamview.sources WHERE name = 'shop') ORDER BY attnum;
SELECT changes, changed_by = current_user AS by_me FROM streamview.source_changes WHERE source_name = 'shop' ORDER BY change_id;
SELECT last_change_id = (SELECT max(change_id) FROM streamview.source_changes) AS last_change_moved
  FROM streamview.sources WHERE name = 'shop';

-- A rebuild made now reads with the new definition, and uses the column.
SELECT streamview.rebuild('takings', query => $$
  SELECT streamview.tumble(ts, '1 hour') AS window_start, shop, channel, sum(cents * qty) AS cents
  FROM shop GROUP BY 1, 2, 3 $$) AS version;
SELECT version, source_definition->'columns' ? 'channel' AS knows_channel,
       source_definition->>'change_id' IS NOT NULL AS after_a_change
  FROM streamview.versions WHERE view_name = 'takings' ORDER BY version;

-- Refused: bad specs, a column twice, an existing name, a required new column.
SELECT pg_temp.err($$ SELECT streamview.alter_source('shop', add_columns => '{}') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('shop', add_columns => '["x"]') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('shop', add_columns => '{"x":"money"}') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('shop', add_columns => '{"x":{"type":"int","default":"many"}}') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('shop', add_columns => '{"sv_x":"int"}') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('shop', add_columns => '{"x":{"type":"int","path":"a..b"}}') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('shop', add_columns => '{"shop":"text"}') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('shop', add_columns => '{"x":{"type":"int","required":true}}') $$);
-- a new column that reads another's field, or a field around it
SELECT pg_temp.err($$ SELECT streamview.alter_source('shop', add_columns => '{"cents2":{"type":"bigint","path":"cents"}}') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('shop', add_columns => '{"deep":{"type":"int","path":"shop.id"}}') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('shop', add_columns => '{"x":"int"}',
       columns => '{"shop":"text","cents":"bigint","note":"text","code":"int","ts":"timestamptz","channel":{"type":"text","default":"web"},"qty":{"type":"int","default":1},"x":"int"}') $$);

-- columns => is the whole new set.  Dropping or changing a column a version
-- reads is refused, with a hint; so is dropping the event time.
SELECT pg_temp.err($$ SELECT streamview.alter_source('shop',
       columns => '{"shop":"text","note":"text","code":"int","ts":"timestamptz","channel":{"type":"text","default":"web"},"qty":{"type":"int","default":1}}') $$) AS drop_cents;
SELECT pg_temp.err($$ SELECT streamview.alter_source('shop',
       columns => '{"shop":"text","cents":"numeric","note":"text","code":"int","ts":"timestamptz","channel":{"type":"text","default":"web"},"qty":{"type":"int","default":1}}') $$) AS retype_cents;
SELECT pg_temp.err($$ SELECT streamview.alter_source('shop',
       columns => '{"shop":"text","cents":"bigint","note":"text","code":"int","ts":"timestamptz","channel":"text","qty":{"type":"int","default":1}}') $$) AS default_of_channel;
SELECT pg_temp.err($$ SELECT streamview.alter_source('shop',
       columns => '{"shop":"text","cents":"bigint","note":"text","code":"int","channel":{"type":"text","default":"web"},"qty":{"type":"int","default":1}}') $$) AS drop_ts;
SELECT pg_temp.err($$ SELECT streamview.alter_source('shop', columns => '{}') $$);
-- a refusal changes nothing, even with an allowed change beside it
SELECT pg_temp.err($$ SELECT streamview.alter_source('shop', brokers => '127.0.0.1:1',
       columns => '{"shop":"text","code":"bigint","ts":"timestamptz","channel":{"type":"text","default":"web"},"qty":{"type":"int","default":1}}') $$) AS drop_cents_and_brokers;
SELECT brokers, (SELECT count(*) FROM streamview.source_columns c WHERE c.source_id = s.source_id) AS columns
  FROM streamview.sources s WHERE name = 'shop';

-- Columns no version reads may go or change: note dropped, code retyped.
SELECT streamview.alter_source('shop',
       columns => '{"shop":"text","cents":"bigint","code":"bigint","ts":"timestamptz","channel":{"type":"text","default":"web"},"qty":{"type":"int","default":1}}') IS NOT NULL AS changed;
SELECT changes FROM streamview.source_changes WHERE source_name = 'shop' ORDER BY change_id DESC LIMIT 1;
-- the same set again: nothing to change
SELECT streamview.alter_source('shop',
       columns => '{"shop":"text","cents":"bigint","code":"bigint","ts":"timestamptz","channel":{"type":"text","default":"web"},"qty":{"type":"int","default":1}}') AS nothing;

-- Once no live, caught-up or replaying version reads a column, it may go:
-- dropping the rebuilt version frees channel and qty.
SELECT streamview.drop_version('takings', 2);
SELECT streamview.alter_source('shop',
       columns => '{"shop":"text","cents":"bigint","code":"bigint","ts":"timestamptz"}') IS NOT NULL AS changed;
SELECT changes->'drop_columns' AS dropped FROM streamview.source_changes WHERE source_name = 'shop' ORDER BY change_id DESC LIMIT 1;

-- check_source: its own errors come before any reading.
SELECT pg_temp.err($$ SELECT * FROM streamview.check_source(NULL) $$);
SELECT pg_temp.err($$ SELECT * FROM streamview.check_source('nowhere') $$);
SELECT pg_temp.err($$ SELECT * FROM streamview.check_source('shop', columns => '[]') $$);
SELECT pg_temp.err($$ SELECT * FROM streamview.check_source('shop', columns => '{"shop":"text"}') $$);
SELECT pg_temp.err($$ SELECT * FROM streamview.check_source('shop', columns => '{"ts":"text"}') $$);
SELECT pg_temp.err($$ SELECT * FROM streamview.check_source('shop', columns => '{"ts":"timestamptz","x":"money"}') $$);

-- replay_dead_letters: its own errors; a source with an event_id is refused.
SELECT pg_temp.err($$ SELECT streamview.replay_dead_letters(NULL) $$);
SELECT pg_temp.err($$ SELECT streamview.replay_dead_letters('nowhere') $$);
SELECT streamview.create_source('ided', '127.0.0.1:9', 'ided', '{"id":"text","ts":"timestamptz"}', 'ts',
                                event_id => 'id') LIKE 'pg_streamview.%' AS created;
SELECT pg_temp.err($$ SELECT streamview.replay_dead_letters('ided') $$);
-- Without dead letters there is nothing to read: 0, and the replay is recorded.
SELECT streamview.replay_dead_letters('shop', since => now()) AS replayed;
SELECT (changes->'replay_dead_letters') - 'since' AS replay FROM streamview.source_changes
 WHERE source_name = 'shop' ORDER BY change_id DESC LIMIT 1;

-- Only the owner replays; USAGE lets a role check.
CREATE ROLE sv_evolve_user LOGIN;
GRANT EXECUTE ON FUNCTION streamview.check_source(text, jsonb),
                          streamview.replay_dead_letters(text, timestamptz),
                          streamview.alter_source(text, text, jsonb, text, text, jsonb, text, text, text, text, int, jsonb, text)
      TO sv_evolve_user;
SET ROLE sv_evolve_user;
SELECT pg_temp.err($$ SELECT streamview.replay_dead_letters('shop') $$);
SELECT pg_temp.err($$ SELECT streamview.alter_source('shop', add_columns => '{"y":"int"}') $$);
SELECT pg_temp.err($$ SELECT * FROM streamview.check_source('shop') $$);
RESET ROLE;

SELECT streamview.drop_source('shop', cascade => true);
SELECT streamview.drop_source('ided');
DROP OWNED BY sv_evolve_user;
DROP ROLE sv_evolve_user;
