-- The SQL surface's shape, with pgTAP: every public function of the API is a
-- dispatcher with an implementation behind it; the catalog, monitoring views
-- and their privileges are what docs/reference.md says.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS pg_streamview;
SELECT plan(61);

-- The public API: the names DESIGN.md makes the contract.
SELECT functions_are('streamview', ARRAY[
    'create_source', 'alter_source', 'drop_source', 'grant_usage', 'revoke_usage', 'pause', 'resume', 'create_view', 'drop_view', 'set_retention', 'rebuild', 'wait_for',
    'add_check', 'drop_check', 'validate', 'swap', 'rollback', 'drop_version', 'tumble', 'hop',
    'snapshot', 'verify_snapshot', 'restore', 'drop_snapshot', 'check_source', 'replay_dead_letters'],
    'the schema streamview holds the API, nothing else: \df streamview.* lists it');
-- Internals, in a schema of their own, closed to PUBLIC.
SELECT functions_are('streamview_internal', ARRAY[
    '_add_check_impl', '_add_column', '_alter_source_impl', '_apply_retention', '_archive_arg', '_archive_create',
    '_archive_drop', '_archive_housekeeping', '_archive_missing', '_archive_missing_text', '_archive_table',
    '_archive_tablespace', '_archive_width', '_check_replay_complete', '_batch_partials', '_batch_rows', '_batch_sql_0_2', '_caller_schema', '_check_definition_kept', '_check_may_create', '_check_options', '_check_owner', '_check_usage',
    '_check_worker_quota', '_caller_search_path', '_column_spec', '_compare', '_count_as', '_create_source_impl',
    '_create_version', '_create_view_impl', '_depend_on_extension', '_do_swap', '_drop_check_impl', '_drop_source_impl',
    '_drop_version_impl', '_drop_view_impl', '_exclusive', '_format_args', '_get_version', '_grant_usage_impl', '_guard_drop', '_guard_alter', '_set_retention_impl', '_interval_arg', '_live_version',
    '_lock_source', '_lock_view', '_max_future_arg', '_messages_behind', '_options_change', '_pause_impl', '_resume_impl', '_revoke_usage_impl',
    '_notify_launcher', '_consumer_group', '_partitions_arg', '_partitions_behind', '_partitions_text', '_reads_partition', '_query_source', '_rebuild_impl', '_require', '_rollback_impl', '_run_as', '_set_state',
    '_start_from_time', '_supported_types', '_swap_impl', '_tdigests_differ', '_validate_impl', '_version_sql', '_view_relation',
    '_wait_for_impl', '_window_spans', '_workers_arg',
    '_drop_snapshot', '_drop_snapshot_impl', '_get_snapshot', '_restore_impl', '_snapshot_checksum',
    '_snapshot_impl', '_snapshot_table', '_verify_snapshot_impl',
    '_alter_columns', '_column_json', '_column_reader', '_source_definition', '_check_source_impl', '_check_source_read',
    '_replay_dead_letters_impl', '_replay_dead_letters_apply'], 'the internal functions, nothing else');

-- Every dispatcher has _<name>_impl(regrole, <its argument types>) behind it,
-- returning the same type, and every _<name>_impl has its dispatcher.
SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace = 'streamview'::regnamespace AND p.prosrc = 'streamview_api_dispatch'
       AND NOT EXISTS (SELECT 1 FROM pg_proc i
                        WHERE i.pronamespace = 'streamview_internal'::regnamespace AND i.proname = '_' || p.proname || '_impl'
                          AND oidvectortypes(i.proargtypes) =
                              'regrole' || CASE WHEN p.pronargs > 0 THEN ', ' || oidvectortypes(p.proargtypes) ELSE '' END
                          AND i.prorettype = p.prorettype AND i.proretset = p.proretset) $$,
    'every public function has its implementation behind the dispatcher');
SELECT is_empty($$
    SELECT i.oid::regprocedure FROM pg_proc i
     WHERE i.pronamespace = 'streamview_internal'::regnamespace AND i.proname ~ '^_.*_impl$'
       AND NOT EXISTS (SELECT 1 FROM pg_proc p
                        WHERE p.pronamespace = 'streamview'::regnamespace AND '_' || p.proname || '_impl' = i.proname
                          AND p.prosrc = 'streamview_api_dispatch') $$,
    'every implementation has its public function');
SELECT is((SELECT count(*)::int FROM pg_proc p WHERE p.pronamespace = 'streamview'::regnamespace
            AND p.prosrc = 'streamview_api_dispatch'), 24, 'twenty-four mutators (check_source among them: it opens a connection)');

-- Who may call what.
SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace IN ('streamview'::regnamespace, 'streamview_internal'::regnamespace)
       AND p.proname NOT IN ('tumble', 'hop', '_consumer_group', '_partitions_text', '_reads_partition', '_batch_rows',
                             '_batch_partials', '_tdigests_differ')
       AND has_function_privilege('public', p.oid, 'EXECUTE') $$,
    'PUBLIC may execute nothing but tumble, hop, _consumer_group, _partitions_text and _reads_partition (for the monitoring views), _batch_rows and _batch_partials (for the views'' owners) and _tdigests_differ (for validate, as the views'' owners)');
SELECT function_privs_are('streamview', 'tumble', ARRAY['timestamptz', 'interval'], 'public',
                          ARRAY['EXECUTE'], 'PUBLIC may call tumble');
SELECT function_privs_are('streamview', 'hop', ARRAY['timestamptz', 'interval', 'interval'], 'public',
                          ARRAY['EXECUTE'], 'PUBLIC may call hop');
SELECT function_privs_are('streamview', 'tumble', ARRAY['timestamptz', 'interval', 'text', 'timestamp'], 'public',
                          ARRAY['EXECUTE'], 'PUBLIC may call tumble with a time zone');
SELECT function_privs_are('streamview', 'hop', ARRAY['timestamptz', 'interval', 'interval', 'text', 'timestamp'],
                          'public', ARRAY['EXECUTE'], 'PUBLIC may call hop with a time zone');
SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace IN ('streamview'::regnamespace, 'streamview_internal'::regnamespace)
       AND p.prolang IN (SELECT oid FROM pg_language WHERE lanname IN ('plpgsql', 'sql'))
       AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false) $$,
    'every SQL and PL/pgSQL function pins search_path to pg_catalog, pg_temp');
SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace IN ('streamview'::regnamespace, 'streamview_internal'::regnamespace) AND p.prosecdef $$,
    'no function is SECURITY DEFINER');
SELECT is_empty($$
    SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace = 'streamview'::regnamespace AND p.prosrc = 'streamview_api_dispatch'
       AND obj_description(p.oid, 'pg_proc') IS NULL $$,
    'every public function has a comment');

-- Every catalog table, monitoring view and column says what it is
-- (\d+, and tools that read pg_description).
SELECT is_empty($$
    SELECT c.oid::regclass FROM pg_class c
     WHERE c.relnamespace = 'streamview'::regnamespace AND c.relkind IN ('r', 'v')
       AND obj_description(c.oid, 'pg_class') IS NULL $$,
    'every catalog table and monitoring view has a comment');
SELECT is_empty($$
    SELECT c.oid::regclass || '.' || a.attname FROM pg_class c
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE c.relnamespace = 'streamview'::regnamespace AND c.relkind IN ('r', 'v')
       AND col_description(c.oid, a.attnum) IS NULL $$,
    'every column of them has a comment');

-- The catalog.
SELECT tables_are('streamview', ARRAY['sources', 'source_columns', 'views', 'versions', 'offsets',
    'offset_marks', 'seen_ids', 'dead_letters', 'checks', 'validations', 'swaps', 'worker_errors',
    'source_usage', 'source_changes', 'version_stats', 'snapshots', 'snapshot_seen_ids', 'log_starts', 'archive'], 'the catalog tables');
SELECT views_are('streamview', ARRAY['status', 'partitions', 'rebuilds', 'source_list',
                                    'dead_letter_counts', 'worker_error_counts', 'archives'],
    'the monitoring views');
SELECT is_empty($$
    SELECT c.oid::regclass FROM pg_class c
     WHERE c.relnamespace = 'streamview'::regnamespace AND c.relkind IN ('r', 'S')
       AND c.oid <> ALL (SELECT unnest(extconfig) FROM pg_extension WHERE extname = 'pg_streamview') $$,
    'pg_dump dumps every catalog table and sequence (pg_extension_config_dump)');
SELECT columns_are('streamview', 'status', ARRAY['view_name', 'version', 'state', 'is_live', 'watermark',
    'consumed', 'applied', 'duplicates', 'too_late', 'dead_lettered', 'lag', 'partitions', 'source_name',
    'table_name', 'last_batch_at', 'error', 'health', 'lag_time', 'watermark_delay', 'events_per_second',
    'last_batch_duration', 'held_back_by', 'applied_broker_time', 'visible_delay'],
    'streamview.status has the columns DESIGN.md names, and more');
SELECT columns_are('streamview', 'rebuilds', ARRAY['view_name', 'version', 'state', 'done', 'total',
    'percent', 'rate', 'eta', 'max_rate', 'replay_started_at', 'caught_up_at', 'error'],
    'streamview.rebuilds');
SELECT columns_are('streamview', 'archives', ARRAY['source_name', 'partition', 'first_offset', 'last_offset',
    'messages', 'bytes', 'oldest', 'newest'], 'streamview.archives has the columns DESIGN.md names');
SELECT columns_are('streamview', 'archive', ARRAY['source_id', 'partition', 'offset', 'broker_time', 'key',
    'payload', 'headers', 'archived_at'], 'streamview.archive: the format COPY loads (docs/archive.md)');
SELECT is((SELECT c.relkind::text FROM pg_class c WHERE c.oid = 'streamview.archive'::regclass), 'p',
    'the archive is partitioned (retention drops whole tables)');
SELECT table_privs_are('streamview', 'archive', 'public', ARRAY[]::text[], 'the archive is closed (payloads)');
SELECT has_function('streamview', 'rebuild', ARRAY['text', 'text', 'text', 'bigint', 'bool'],
    'rebuild takes accept_data_loss');
SELECT has_function('streamview', 'restore', ARRAY['text', 'bigint', 'bool'],
    'restore takes accept_data_loss');
SELECT has_function('streamview', 'create_source', ARRAY['text', 'text', 'text', 'jsonb', 'text', 'text', 'text', 'jsonb', 'text', 'text', 'text', 'int', 'text', 'text', 'text'],
    'create_source takes archive');
SELECT has_function('streamview', 'alter_source', ARRAY['text', 'text', 'jsonb', 'text', 'text', 'jsonb', 'text', 'text', 'text', 'text', 'int', 'jsonb', 'text'],
    'alter_source takes archive');
SELECT col_type_is('streamview', 'versions', 'table_name', 'regclass', 'versions.table_name is a regclass');
SELECT col_type_is('streamview', 'versions', 'source_definition', 'jsonb',
    'a version records the source definition it was made with');
SELECT function_returns('streamview', 'check_source', ARRAY['text', 'jsonb'], 'setof record',
    'check_source(name, columns) returns a row per reason');
SELECT function_returns('streamview', 'replay_dead_letters', ARRAY['text', 'timestamp with time zone'], 'bigint',
    'replay_dead_letters(source_name, since) returns how many read now');
SELECT col_type_is('streamview', 'views', 'relid', 'regclass', 'views.relid is a regclass');
SELECT col_type_is('streamview', 'seen_ids', 'event_id_hashes', 'bytea[]', 'seen ids are hashes, a batch''s in a row');
SELECT col_is_pk('streamview', 'seen_ids', ARRAY['version_id', 'partition', 'last_offset'],
    'seen_ids: a row per version, partition and batch');
SELECT col_is_pk('streamview', 'offsets', ARRAY['version_id', 'partition'], 'one ledger row per version and partition');
SELECT col_has_default('streamview', 'sources', 'max_future', 'max_future has a default');
SELECT col_default_is('streamview', 'sources', 'max_future', '1 day'::interval::text, 'of one day');
SELECT fk_ok('streamview', 'worker_errors', 'source_id', 'streamview', 'sources', 'source_id',
             'worker errors belong to their source');
SELECT fk_ok('streamview', 'source_changes', 'source_id', 'streamview', 'sources', 'source_id',
             'so do the changes made to it');

-- Table privileges: PUBLIC reads the public tables only, and some under RLS.
SELECT table_privs_are('streamview', 'sources', 'public', ARRAY[]::text[], 'sources are closed (options)');
SELECT table_privs_are('streamview', 'offsets', 'public', ARRAY[]::text[], 'offsets are closed');
SELECT table_privs_are('streamview', 'seen_ids', 'public', ARRAY[]::text[], 'seen_ids are closed');
SELECT table_privs_are('streamview', 'source_usage', 'public', ARRAY[]::text[], 'source_usage is closed (source_list shows it)');
SELECT table_privs_are('streamview', 'versions', 'public', ARRAY['SELECT'], 'versions are readable');
SELECT table_privs_are('streamview', 'snapshots', 'public', ARRAY['SELECT'], 'snapshot manifests are readable...');
SELECT table_privs_are('streamview', 'snapshot_seen_ids', 'public', ARRAY[]::text[], '... the ids they copied are not');
SELECT table_privs_are('streamview', 'validations', 'public', ARRAY['SELECT'], 'validations are readable...');
SELECT is((SELECT relrowsecurity FROM pg_class WHERE oid = 'streamview.validations'::regclass), true,
          '... under row level security');
SELECT is((SELECT relrowsecurity FROM pg_class WHERE oid = 'streamview.dead_letters'::regclass), true,
          'dead letters are under row level security');
SELECT is((SELECT relrowsecurity FROM pg_class WHERE oid = 'streamview.worker_errors'::regclass), true,
          'worker errors are under row level security');
SELECT policies_are('streamview', 'dead_letters', ARRAY['owner_reads'], 'one policy on dead letters');
SELECT table_privs_are('streamview', 'source_changes', 'public', ARRAY['SELECT'], 'source changes are readable...');
SELECT is((SELECT relrowsecurity FROM pg_class WHERE oid = 'streamview.source_changes'::regclass), true,
          '... under row level security (the owner''s only, like options)');
SELECT is_empty($$
    SELECT c.oid::regclass FROM pg_class c
     WHERE c.relnamespace = 'streamview'::regnamespace AND c.relkind = 'v'
       AND c.relname NOT IN ('dead_letter_counts', 'worker_error_counts')
       AND NOT has_table_privilege('public', c.oid, 'SELECT') $$,
    'every monitoring view is readable by PUBLIC');
SELECT table_privs_are('streamview', 'dead_letter_counts', 'public', ARRAY[]::text[],
    'dead letter counts are not for PUBLIC...');
SELECT table_privs_are('streamview', 'dead_letter_counts', 'pg_monitor', ARRAY['SELECT'],
    '... but for pg_monitor');
SELECT table_privs_are('streamview', 'worker_error_counts', 'pg_monitor', ARRAY['SELECT'],
    'and so are worker error counts');
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'pg_streamview'),
          (SELECT default_version FROM pg_available_extensions WHERE name = 'pg_streamview'),
          'the installed version is the default version');
SELECT is((SELECT relocatable FROM pg_available_extension_versions
            WHERE name = 'pg_streamview' AND version = (SELECT extversion FROM pg_extension WHERE extname = 'pg_streamview')),
          false, 'the extension is not relocatable');
SELECT is((SELECT n.nspowner FROM pg_namespace n WHERE n.nspname = 'streamview'),
          (SELECT e.extowner FROM pg_extension e WHERE e.extname = 'pg_streamview'),
          'the schema belongs to the extension owner');

SELECT * FROM finish();
ROLLBACK;
