-- The version lifecycle has one owner: states are an enum, and
-- streamview_internal._set_state is the only statement that changes them.  Versions
-- are made here by hand, as the worker and the API would.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS pg_streamview;
SELECT plan(26);

SELECT has_enum('streamview', 'version_state', 'the states are an enum');
SELECT enum_has_labels('streamview', 'version_state',
                       ARRAY['replaying', 'caught_up', 'live', 'retired', 'failed'], 'with five states');
SELECT col_type_is('streamview', 'versions', 'state', 'streamview.version_state', 'versions.state is one');

-- Only _set_state writes versions.state: no other function's text does.
SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace = 'streamview'::regnamespace AND p.proname <> '_set_state'
       AND p.prosrc ~* 'SET\s+state\s*=' $$,
    'no function but _set_state sets a version''s state');

SELECT streamview.create_source('lc', '127.0.0.1:9', 't', '{"ts":"timestamptz"}', 'ts');
SELECT streamview.create_view('public.lc_n', $$ SELECT streamview.tumble(ts, '1 minute') AS window_start,
                                                 count(*) AS n FROM lc GROUP BY 1 $$);
SELECT is(streamview.rebuild('lc_n'), 2, 'a rebuild makes version 2');
CREATE TEMP TABLE ids AS
SELECT version, version_id FROM streamview.versions WHERE view_name = 'lc_n';
SELECT is((streamview_internal._live_version((SELECT view_id FROM streamview.views WHERE name = 'lc_n'))).version, 1,
          '_live_version finds version 1');

-- caught up: offsets behind, ahead, equal
INSERT INTO streamview.offsets (version_id, partition, next_offset)
SELECT version_id, p, 100 FROM ids, generate_series(0, 1) p WHERE version = 1;
INSERT INTO streamview.offsets (version_id, partition, next_offset)
SELECT version_id, 0, 50 FROM ids WHERE version = 2;
SELECT is(streamview_internal._partitions_behind((SELECT version_id FROM ids WHERE version = 2),
                                        (SELECT version_id FROM ids WHERE version = 1), false), 2,
          'one partition behind and one not read yet: 2 behind');
SELECT is(streamview_internal._messages_behind((SELECT version_id FROM ids WHERE version = 2),
                                               (SELECT version_id FROM ids WHERE version = 1)), 150::bigint,
          'messages behind: 100 - 50 in partition 0, 100 in partition 1 not read yet');
UPDATE streamview.offsets SET next_offset = 120
 WHERE version_id = (SELECT version_id FROM ids WHERE version = 2);
INSERT INTO streamview.offsets (version_id, partition, next_offset)
SELECT version_id, 1, 100 FROM ids WHERE version = 2;
SELECT is(streamview_internal._partitions_behind((SELECT version_id FROM ids WHERE version = 2),
                                        (SELECT version_id FROM ids WHERE version = 1), false), 0,
          'ahead in one partition, level in the other: caught up for the hand-over');
SELECT is(streamview_internal._messages_behind((SELECT version_id FROM ids WHERE version = 2),
                                               (SELECT version_id FROM ids WHERE version = 1)), 0::bigint,
          'ahead in one partition, level in the other: no message behind (ahead counts for nothing)');
UPDATE streamview.offsets SET next_offset = 93
 WHERE version_id = (SELECT version_id FROM ids WHERE version = 2) AND partition = 1;
SELECT is(streamview_internal._messages_behind((SELECT version_id FROM ids WHERE version = 2),
                                               (SELECT version_id FROM ids WHERE version = 1)), 7::bigint,
          'ahead by 20 in partition 0 and behind by 7 in partition 1: 7 behind');
UPDATE streamview.offsets SET next_offset = 100
 WHERE version_id = (SELECT version_id FROM ids WHERE version = 2) AND partition = 1;
SELECT is(streamview_internal._partitions_behind((SELECT version_id FROM ids WHERE version = 2),
                                        (SELECT version_id FROM ids WHERE version = 1), true), 1,
          'but not at the same offsets: one partition differs');

-- transitions
SELECT throws_ok($$ SELECT streamview_internal._set_state((SELECT version_id FROM ids WHERE version = 2),
                                                 '{caught_up}', 'live') $$,
                 '55000', 'version 2 of stream view "lc_n" is replaying, not caught_up',
                 'a transition from a state the version is not in is refused');
SELECT is((streamview_internal._set_state((SELECT version_id FROM ids WHERE version = 2), '{caught_up}', 'live',
                                 strict => false)).version_id, NULL,
          'unless strict => false: then nothing happens');
SELECT is((streamview_internal._set_state((SELECT version_id FROM ids WHERE version = 2), '{replaying}',
                                 'caught_up')).state, 'caught_up', 'replaying -> caught_up');
SELECT isnt((SELECT caught_up_at FROM streamview.versions WHERE version_id = (SELECT version_id FROM ids WHERE version = 2)),
            NULL, 'stamps caught_up_at');
SELECT lives_ok($$ SELECT streamview.swap('lc_n', 2, force => true) $$, 'swap goes through _set_state');
SELECT results_eq($$ SELECT version, state::text, swapped_by IS NOT NULL FROM streamview.versions
                      WHERE view_name = 'lc_n' ORDER BY version $$,
                  $$ VALUES (1, 'caught_up', false), (2, 'live', true) $$,
                  'the old live version is caught up, the new one live and stamped');
SELECT is((SELECT caught_up_at FROM streamview.versions WHERE version_id = (SELECT version_id FROM ids WHERE version = 1)),
          NULL, 'a live version that steps back is not stamped as having caught up');
SELECT lives_ok($$ SELECT streamview.drop_version('lc_n', 1) $$, 'drop_version goes through _set_state');
SELECT results_eq($$ SELECT state::text, retired_by IS NOT NULL, table_name IS NULL FROM streamview.versions
                      WHERE view_name = 'lc_n' AND version = 1 $$,
                  $$ VALUES ('retired', true, true) $$, 'retired, stamped, its table gone');
SELECT throws_ok($$ SELECT streamview_internal._set_state((SELECT version_id FROM ids WHERE version = 1),
                                                 '{replaying,caught_up}', 'failed') $$,
                 '55000', NULL, 'a retired version cannot fail');
SELECT is((streamview_internal._set_state((SELECT version_id FROM ids WHERE version = 2), '{replaying,caught_up}', 'failed',
                                 error => 'never', strict => false)).version_id, NULL,
          'the worker marks only replaying and caught-up versions failed (the live one is not in the list)');
SELECT is(streamview.rebuild('lc_n'), 3, 'version 3');
SELECT is((streamview_internal._set_state((SELECT version_id FROM streamview.versions
                                   WHERE view_name = 'lc_n' AND version = 3), '{replaying,caught_up}', 'failed',
                                 error => 'boom')).error, 'boom', 'replaying -> failed, with the error');
SELECT results_eq($$ SELECT state::text, error, failed_at IS NOT NULL FROM streamview.versions
                      WHERE view_name = 'lc_n' AND version = 3 $$,
                  $$ VALUES ('failed', 'boom', true) $$, 'failed and stamped');

SELECT * FROM finish();
ROLLBACK;
