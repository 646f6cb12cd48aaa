-- pg_streamview 0.1 → 0.2.
--
-- Released scripts are never edited: every change that 0.2 makes to the
-- catalog and to the functions of 0.1 is made here, in the same words as in
-- pg_streamview--0.2.sql, so that an updated install and a fresh one are the
-- same (t/005_upgrade.pl compares them object by object).

\echo Use "ALTER EXTENSION pg_streamview UPDATE TO '0.2'" to load this file. \quit

-- The internal functions move to a schema of their own, so that \df
-- streamview.* lists the API; 0.1's are dropped once the new ones exist.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = 'streamview_internal') THEN
        RAISE EXCEPTION 'schema "streamview_internal" already exists'
            USING ERRCODE = 'duplicate_schema',
                  DETAIL = 'pg_streamview keeps its internal functions there; they run as the extension owner.',
                  HINT = 'Drop or rename that schema, then update the extension again.';
    END IF;
END $$;

CREATE SCHEMA streamview_internal;

COMMENT ON SCHEMA streamview_internal IS 'pg_streamview''s internal functions: not an API, closed to PUBLIC';

GRANT USAGE ON SCHEMA streamview_internal TO PUBLIC;

-- The extension's functions run as its owner and call each other by their
-- schema's name: whoever may rename that schema or create in it could put
-- their own code in their place.  A schema that existed before, owned by a
-- role that is not a superuser, or that others may create in, is refused.
DO $$
DECLARE
    nsp pg_catalog.pg_namespace;
BEGIN
    SELECT * INTO nsp FROM pg_catalog.pg_namespace n WHERE n.nspname = 'streamview';
    IF nsp.nspowner <> (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
       AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = nsp.nspowner) THEN
        RAISE EXCEPTION 'schema "streamview" is owned by role "%"', pg_catalog.pg_get_userbyid(nsp.nspowner)
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The extension''s functions run as the extension owner; the owner of their schema could replace them.',
                  HINT = 'Drop or rename that schema, or make the installing role its owner, then install the extension again.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.aclexplode(nsp.nspacl) a
                WHERE a.privilege_type = 'CREATE' AND a.grantee <> nsp.nspowner
                  AND NOT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = a.grantee), false)) THEN
        RAISE EXCEPTION 'other roles may create objects in schema "streamview"'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Objects they create there could stand in for the extension''s own.',
                  HINT = 'REVOKE CREATE ON SCHEMA streamview FROM those roles (and PUBLIC), then install the extension again.';
    END IF;
END $$;

------------------------------------------------------------------------------
-- Row level security without a SECURITY DEFINER function (_may_read_source
-- answered "may role X read source Y" to anyone); worker errors go with
-- their source; validations are readable by the view's owner only.
------------------------------------------------------------------------------
ALTER TABLE streamview.worker_errors
    ADD COLUMN source_id int REFERENCES streamview.sources ON DELETE CASCADE;
-- rows recorded before the source of that name was created were another
-- source's, dropped since: they go
UPDATE streamview.worker_errors e SET source_id = s.source_id
  FROM streamview.sources s
 WHERE s.name = e.source_name AND e.occurred_at >= s.created_at;
DELETE FROM streamview.worker_errors WHERE source_id IS NULL;

DROP POLICY owner_reads ON streamview.dead_letters;
DROP POLICY owner_reads ON streamview.worker_errors;
DROP FUNCTION streamview._may_read_source(text, name);
CREATE POLICY owner_reads ON streamview.dead_letters FOR SELECT
    USING (EXISTS (SELECT 1 FROM streamview.source_list s
                    WHERE s.name = dead_letters.source_name AND pg_catalog.pg_has_role(s.owner, 'USAGE')));
CREATE POLICY owner_reads ON streamview.worker_errors FOR SELECT
    USING (EXISTS (SELECT 1 FROM streamview.source_list s
                    WHERE s.name = worker_errors.source_name AND pg_catalog.pg_has_role(s.owner, 'USAGE')));
ALTER TABLE streamview.validations ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_reads ON streamview.validations FOR SELECT
    USING (EXISTS (SELECT 1 FROM streamview.views v
                    WHERE v.name = validations.view_name AND pg_catalog.pg_has_role(v.owner, 'USAGE')));

------------------------------------------------------------------------------
-- drop_view, swap and rollback act on the view create_view made (by OID),
-- never on whatever relation has its name now.  Views made by 0.1 are taken
-- to be the relation of that name if it is a view of the stream view's
-- owner; otherwise the next swap makes the view again.
------------------------------------------------------------------------------
ALTER TABLE streamview.views ADD COLUMN relid regclass;
UPDATE streamview.views w SET relid = c.oid::regclass
  FROM pg_catalog.pg_class c
 WHERE c.oid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', w.schema_name, w.name))
   AND c.relkind = 'v' AND c.relowner = w.owner;

------------------------------------------------------------------------------
-- Event time is checked, not trusted: max_future, and the future_time
-- reason.  Sources made by 0.1 keep reading their log as they did (NULL: not
-- checked), so their versions and rebuilds still agree; new sources get the
-- default of one day.
------------------------------------------------------------------------------
ALTER TABLE streamview.sources ADD COLUMN max_future interval;
ALTER TABLE streamview.sources ALTER COLUMN max_future SET DEFAULT '1 day';
-- pause() and resume()
ALTER TABLE streamview.sources ADD COLUMN paused_at timestamptz;

-- set_retention: how long a view keeps windows behind its watermark.
ALTER TABLE streamview.views ADD COLUMN retention interval;
ALTER TABLE streamview.dead_letters DROP CONSTRAINT dead_letters_reason_check;
ALTER TABLE streamview.dead_letters ADD CONSTRAINT dead_letters_reason_check
    CHECK (reason IN ('invalid_json', 'missing_field', 'invalid_value',
                      'too_late', 'query_error', 'future_time',
                      'schema_error', 'invalid_message'));

------------------------------------------------------------------------------
-- USAGE on a source (grant_usage, revoke_usage): roles other than its owner
-- may build stream views over it, and read its dead letters and worker
-- errors, without seeing its options or being able to change it.
------------------------------------------------------------------------------
CREATE TABLE streamview.source_usage (
    source_id  int NOT NULL REFERENCES streamview.sources ON DELETE CASCADE,
    grantee    regrole NOT NULL,
    granted_by regrole NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (source_id, grantee)
);
SELECT pg_catalog.pg_extension_config_dump('streamview.source_usage', '');
REVOKE ALL ON streamview.source_usage FROM PUBLIC;
CREATE OR REPLACE VIEW streamview.source_list AS
SELECT s.name, s.brokers, s.topic, s.event_time, s.event_id, s.max_out_of_orderness,
       s.idle_timeout,
       CASE WHEN pg_catalog.pg_has_role(s.owner, 'USAGE') THEN s.options END AS options,
       s.owner, s.created_at, s.last_error, s.last_error_at, s.max_future,
       ARRAY(SELECT u.grantee FROM streamview.source_usage u
              WHERE u.source_id = s.source_id ORDER BY u.granted_at, u.grantee::oid) AS usage,
       s.paused_at
  FROM streamview.sources s;
ALTER POLICY owner_reads ON streamview.dead_letters
    USING (EXISTS (SELECT 1 FROM streamview.source_list s
                    WHERE s.name = dead_letters.source_name
                      AND (pg_catalog.pg_has_role(s.owner, 'USAGE')
                           OR EXISTS (SELECT 1 FROM pg_catalog.unnest(s.usage) g
                                       WHERE pg_catalog.pg_has_role(g, 'USAGE')))));
ALTER POLICY owner_reads ON streamview.worker_errors
    USING (EXISTS (SELECT 1 FROM streamview.source_list s
                    WHERE s.name = worker_errors.source_name
                      AND (pg_catalog.pg_has_role(s.owner, 'USAGE')
                           OR EXISTS (SELECT 1 FROM pg_catalog.unnest(s.usage) g
                                       WHERE pg_catalog.pg_has_role(g, 'USAGE')))));

-- create_source gains an argument: the old one is set aside until the new one
-- exists, so that the grants DBAs made on it can be carried over (below).
ALTER FUNCTION streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text)
    RENAME TO _create_source_0_1;
DROP FUNCTION streamview._create_source_impl(regrole, text, text, text, jsonb, text, text, text, jsonb, text);

-- Functions that returned void return something useful in 0.2; a result
-- type cannot be replaced, so the 0.1 ones are set aside the same way and
-- their grants carried over (below).  Their implementations are internal.
ALTER FUNCTION streamview.drop_source(text, bool) RENAME TO _drop_source_0_1;
ALTER FUNCTION streamview.create_view(text, text, text) RENAME TO _create_view_0_1;
ALTER FUNCTION streamview.drop_view(text) RENAME TO _drop_view_0_1;
ALTER FUNCTION streamview.add_check(text, text, text) RENAME TO _add_check_0_1;
ALTER FUNCTION streamview.drop_check(text, text) RENAME TO _drop_check_0_1;
ALTER FUNCTION streamview.swap(text, int, bool) RENAME TO _swap_0_1;
ALTER FUNCTION streamview.drop_version(text, int) RENAME TO _drop_version_0_1;
DROP FUNCTION streamview._drop_source_impl(regrole, text, bool);
DROP FUNCTION streamview._create_view_impl(regrole, text, text, text);
DROP FUNCTION streamview._drop_view_impl(regrole, text);
DROP FUNCTION streamview._add_check_impl(regrole, text, text, text);
DROP FUNCTION streamview._drop_check_impl(regrole, text, text);
DROP FUNCTION streamview._swap_impl(regrole, text, int, bool);
DROP FUNCTION streamview._drop_version_impl(regrole, text, int);

------------------------------------------------------------------------------
-- seen_ids keeps the SHA-256 of each event_id, not the id: a long id (a few
-- kilobytes) did not fit in the index and stopped the source.  And one row
-- per batch and partition, the ids in arrays, not a row per id: the worker
-- keeps the ids in memory and stores each batch's in bulk.  The ids 0.1
-- remembers become one row per version and partition, so that an updated
-- install goes on recognising their duplicates.
------------------------------------------------------------------------------
ALTER TABLE streamview.seen_ids DROP CONSTRAINT seen_ids_pkey;
DROP INDEX streamview.seen_ids_expiry;
ALTER TABLE streamview.seen_ids
    ADD COLUMN last_offset bigint,
    ADD COLUMN max_event_time timestamptz,
    ADD COLUMN event_id_hashes bytea[],
    ADD COLUMN event_times timestamptz[];
WITH old AS (DELETE FROM streamview.seen_ids RETURNING version_id, event_id, partition, event_time)
INSERT INTO streamview.seen_ids (version_id, event_id, partition, event_time, last_offset, max_event_time,
                                 event_id_hashes, event_times)
SELECT o.version_id, '', o.partition, max(o.event_time),
       coalesce((SELECT f.next_offset - 1 FROM streamview.offsets f
                  WHERE f.version_id = o.version_id AND f.partition = o.partition), -1),
       max(o.event_time),
       array_agg(pg_catalog.sha256(pg_catalog.convert_to(o.event_id, 'UTF8')) ORDER BY o.event_time, o.event_id),
       array_agg(o.event_time ORDER BY o.event_time, o.event_id)
  FROM old o
 GROUP BY o.version_id, o.partition;
ALTER TABLE streamview.seen_ids DROP COLUMN event_id, DROP COLUMN event_time;
ALTER TABLE streamview.seen_ids
    ALTER COLUMN last_offset SET NOT NULL,
    ALTER COLUMN max_event_time SET NOT NULL,
    ALTER COLUMN event_id_hashes SET NOT NULL,
    ALTER COLUMN event_times SET NOT NULL,
    ALTER COLUMN event_id_hashes SET STORAGE EXTERNAL,
    ADD PRIMARY KEY (version_id, partition, last_offset);
CREATE INDEX seen_ids_expiry ON streamview.seen_ids (version_id, partition, max_event_time);

------------------------------------------------------------------------------
-- The version lifecycle has one owner: the states are an enum, and only
-- streamview._set_state changes them.  The monitoring views that read the
-- state are made again (below) around the change of its type.
------------------------------------------------------------------------------
CREATE TYPE streamview.version_state AS ENUM ('replaying', 'caught_up', 'live', 'retired', 'failed');
DROP VIEW streamview.status;
DROP VIEW streamview.rebuilds;
ALTER TABLE streamview.versions DROP CONSTRAINT versions_state_check;
ALTER TABLE streamview.versions
    ALTER COLUMN state TYPE streamview.version_state USING state::streamview.version_state;
DROP FUNCTION streamview._create_version(regrole, int, int, text, text);

------------------------------------------------------------------------------
-- One call path for create_view and rebuild: _version_sql (codegen.c) makes
-- every statement of a version, with its names in place; _compile is gone.
------------------------------------------------------------------------------
DROP FUNCTION streamview._compile(text, text);

------------------------------------------------------------------------------
-- alter_source: every change made to a source, who and when (secrets
-- never written), readable by the source's owner, dumped with the catalog.
------------------------------------------------------------------------------
CREATE TABLE streamview.source_changes (
    change_id   bigserial PRIMARY KEY,
    source_id   int NOT NULL REFERENCES streamview.sources ON DELETE CASCADE,
    source_name text NOT NULL,
    changes     jsonb NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    changed_by  name NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('streamview.source_changes', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.source_changes_change_id_seq', '');
REVOKE ALL ON streamview.source_changes FROM PUBLIC;
GRANT SELECT ON streamview.source_changes TO PUBLIC;
ALTER TABLE streamview.source_changes ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_reads ON streamview.source_changes FOR SELECT
    USING (EXISTS (SELECT 1 FROM streamview.source_list s
                    WHERE s.name = source_changes.source_name AND pg_catalog.pg_has_role(s.owner, 'USAGE')));

------------------------------------------------------------------------------
-- Health, in time: every assigned partition has a ledger row from before its
-- first message (next_offset NULL until then), the newest broker timestamp
-- read per partition, and per version how its batches go and which
-- partitions hold its watermark back (streamview.status, docs/monitoring.md).
------------------------------------------------------------------------------
ALTER TABLE streamview.offsets ALTER COLUMN next_offset DROP NOT NULL;
ALTER TABLE streamview.offsets ADD COLUMN max_broker_time timestamptz;
CREATE TABLE streamview.version_stats (
    version_id        int NOT NULL REFERENCES streamview.versions (version_id) ON DELETE CASCADE,
    worker            int NOT NULL DEFAULT 0,
    batch_at          timestamptz,
    batch_duration    interval,
    events_per_second float8,
    held_back_by      int[],
    PRIMARY KEY (version_id, worker)
);
REVOKE ALL ON streamview.version_stats FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('streamview.version_stats', '');

------------------------------------------------------------------------------
-- Freshness: per partition, how long after its broker timestamp the newest
-- message read became visible (streamview.partitions and status,
-- visible_delay); per version, what its rebuild replayed until it caught up,
-- so that rebuilds.rate stops with the replay.
------------------------------------------------------------------------------
ALTER TABLE streamview.offsets ADD COLUMN visible_delay interval;
ALTER TABLE streamview.versions ADD COLUMN replayed bigint;

------------------------------------------------------------------------------
-- Windows on a time zone's wall clock (streamview.tumble(ts, size,
-- time_zone, origin), streamview.hop(...)): a version records its zone and
-- origin; versions made by 0.1 have neither (epoch-aligned UTC windows).
------------------------------------------------------------------------------
ALTER TABLE streamview.versions ADD COLUMN window_time_zone text;
ALTER TABLE streamview.versions ADD COLUMN window_origin timestamp;
ALTER TABLE streamview.versions ADD CONSTRAINT versions_window_zone_check
    CHECK ((window_time_zone IS NULL) = (window_origin IS NULL));

------------------------------------------------------------------------------
-- Beyond one server: a source may read a subset of its topic's partitions
-- (partitions => '0-15'), so that several servers share a topic
-- (docs/scaling.md).  Sources made by 0.1 read every partition (NULL).
------------------------------------------------------------------------------
ALTER TABLE streamview.sources ADD COLUMN partitions int4multirange
    CHECK (NOT pg_catalog.isempty(partitions) AND pg_catalog.lower(partitions) >= 0);

------------------------------------------------------------------------------
-- Parallel source workers: a source's partitions split over `workers`
-- source workers (create_source, alter_source); each keeps its own stats.
------------------------------------------------------------------------------
ALTER TABLE streamview.sources ADD COLUMN workers int NOT NULL DEFAULT 1;

------------------------------------------------------------------------------
-- Snapshots (snapshot, verify_snapshot, restore, drop_snapshot;
-- docs/snapshots.md): a manifest per snapshot, the event ids it copied, and
-- the snapshot a restored version started from.
------------------------------------------------------------------------------
CREATE TABLE streamview.snapshots (
    snapshot_id       bigserial PRIMARY KEY,
    view_id           int NOT NULL REFERENCES streamview.views ON DELETE CASCADE,
    view_name         text NOT NULL,
    version           int NOT NULL,
    definition_hash   text NOT NULL,
    extension_version text NOT NULL,
    offsets           jsonb NOT NULL,
    ledger            jsonb NOT NULL,
    watermark         timestamptz,
    start_from        timestamptz,
    rows              bigint NOT NULL,
    seen_ids          bigint NOT NULL,
    checksum          text,
    taken_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    taken_by          name NOT NULL
);
CREATE INDEX snapshots_view ON streamview.snapshots (view_id, snapshot_id);
CREATE TABLE streamview.snapshot_seen_ids (
    snapshot_id     bigint NOT NULL REFERENCES streamview.snapshots ON DELETE CASCADE,
    partition       int NOT NULL,
    last_offset     bigint NOT NULL,
    max_event_time  timestamptz NOT NULL,
    event_id_hashes bytea[] NOT NULL,
    event_times     timestamptz[] NOT NULL,
    PRIMARY KEY (snapshot_id, partition, last_offset)
);
ALTER TABLE streamview.snapshot_seen_ids ALTER COLUMN event_id_hashes SET STORAGE EXTERNAL;
REVOKE ALL ON streamview.snapshots, streamview.snapshot_seen_ids FROM PUBLIC;
GRANT SELECT ON streamview.snapshots TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('streamview.snapshots', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.snapshot_seen_ids', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.snapshots_snapshot_id_seq', '');
ALTER TABLE streamview.versions ADD COLUMN restored_from bigint;

------------------------------------------------------------------------------
-- Sources that evolve: the last change of a source (its workers restart
-- when it moves), and the source definition each version was made with.
-- Versions made by 0.1 have none recorded.
------------------------------------------------------------------------------
ALTER TABLE streamview.sources ADD COLUMN last_change_id bigint;
ALTER TABLE streamview.versions ADD COLUMN source_definition jsonb;
ALTER TABLE streamview.offsets ADD COLUMN definition_mark bigint;

------------------------------------------------------------------------------
-- Formats: Avro and Protobuf in the Confluent wire format, with their
-- schemas from a schema registry (docs/formats.md).  Sources made by 0.1
-- read JSON.
------------------------------------------------------------------------------
ALTER TABLE streamview.sources
    ADD COLUMN format text NOT NULL DEFAULT 'json' CHECK (format IN ('json', 'avro', 'protobuf'));
ALTER TABLE streamview.sources ADD COLUMN schema_registry text;

------------------------------------------------------------------------------
-- The archive (two-tier log, docs/archive.md): archive => on sources, the
-- archive itself, the log starts a rebuild checks, and rebuild's
-- accept_data_loss.  rebuild gains an argument: the 0.1 one is set aside
-- and its grants carried over (below).
------------------------------------------------------------------------------
ALTER TABLE streamview.sources ADD COLUMN archive interval;
ALTER TABLE streamview.versions ADD COLUMN accept_data_loss bool NOT NULL DEFAULT false;
ALTER FUNCTION streamview.rebuild(text, text, text, bigint) RENAME TO _rebuild_0_1;

CREATE TABLE streamview.archive (
    source_id   int NOT NULL,
    partition   int NOT NULL,
    "offset"    bigint NOT NULL,
    broker_time timestamptz,
    key         bytea,
    payload     bytea,
    -- [[name, value in base64 or null], ...]; NULL when the message has none
    headers     jsonb,
    archived_at timestamptz NOT NULL DEFAULT pg_catalog.now()
) PARTITION BY LIST (source_id);

-- The index a rebuild reads a partition's messages with, in offset order
-- from an offset, is made per source on its table (_archive_create), not
-- here: an index of the extension's table would be created again on each
-- source's table when pg_restore attaches it, and the dump's own CREATE
-- INDEX for that table would then fail (t/011_dump.pl).

-- payloads of a few kilobytes (those TOAST compresses at all) compress
-- faster with lz4, where the server has it
DO $$
BEGIN
    ALTER TABLE streamview.archive ALTER COLUMN payload SET COMPRESSION lz4;
    ALTER TABLE streamview.archive ALTER COLUMN headers SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END $$;

-- The first offset each partition's log still has, as the source's workers
-- last heard from the brokers: what a rebuild checks, before it starts,
-- against the archive (_archive_missing).
CREATE TABLE streamview.log_starts (
    source_id  int NOT NULL REFERENCES streamview.sources ON DELETE CASCADE,
    partition  int NOT NULL,
    log_start  bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (source_id, partition)
);

SELECT pg_catalog.pg_extension_config_dump('streamview.log_starts', '');

CREATE VIEW streamview.archives AS
SELECT s.name AS source_name, a.partition, min(a."offset") AS first_offset, max(a."offset") AS last_offset,
       count(*) AS messages,
       sum(coalesce(pg_catalog.pg_column_size(a.key), 0) + coalesce(pg_catalog.pg_column_size(a.payload), 0)
           + coalesce(pg_catalog.pg_column_size(a.headers), 0))::bigint AS bytes,
       min(a.broker_time) AS oldest, max(a.broker_time) AS newest
  FROM streamview.archive a JOIN streamview.sources s ON s.source_id = a.source_id
 WHERE pg_catalog.pg_has_role(s.owner, 'USAGE')
 GROUP BY s.name, a.partition;

GRANT SELECT ON streamview.archives TO PUBLIC;

-- Functions new or changed in 0.2 (test/bin/regen_upgrade.sh writes what follows)

CREATE OR REPLACE FUNCTION streamview.tumble(ts timestamptz, size interval, time_zone text,
                                  origin timestamp DEFAULT '1970-01-01 00:00:00')
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'streamview_tumble_tz'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION streamview.tumble(timestamptz, interval) IS
'start of the tumbling window of the given size that contains ts (windows aligned to the Unix epoch, UTC)';
COMMENT ON FUNCTION streamview.tumble(timestamptz, interval, text, timestamp) IS
'start of the tumbling window that contains ts, windows laid out on the wall clock of time_zone from origin (sizes in months allowed)';

CREATE OR REPLACE FUNCTION streamview.hop(ts timestamptz, size interval, slide interval, time_zone text,
                               origin timestamp DEFAULT '1970-01-01 00:00:00')
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'streamview_hop_tz'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION streamview.hop(timestamptz, interval, interval) IS
'hopping window marker for GROUP BY in a stream view; called directly, the start of the latest window that contains ts';
COMMENT ON FUNCTION streamview.hop(timestamptz, interval, interval, text, timestamp) IS
'hopping window marker on the wall clock of time_zone from origin; called directly, the start of the latest window that contains ts';

CREATE OR REPLACE FUNCTION streamview_internal._window_spans(ts timestamptz, size interval, slide interval,
                                         time_zone text, origin timestamp,
                                         OUT window_start timestamptz, OUT window_end timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'streamview_window_spans_sql'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION streamview_internal._version_sql(caller regrole, caller_path text, source text, query text,
                                        table_name text, version_id int, lateness interval,
                                        OUT definition jsonb, OUT create_table text,
                                        OUT create_index text, OUT batch_sql text, OUT view_sql text)
AS 'MODULE_PATHNAME', 'streamview_version_sql'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION streamview_internal._batch_rows(version_id int)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'streamview_batch_rows'
LANGUAGE C VOLATILE STRICT;

CREATE OR REPLACE FUNCTION streamview_internal._batch_partials(version_id int)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'streamview_batch_partials'
LANGUAGE C VOLATILE STRICT;

CREATE OR REPLACE FUNCTION streamview_internal._batch_sql_0_2(version_id int)
RETURNS text
AS 'MODULE_PATHNAME', 'streamview_batch_sql_0_2'
LANGUAGE C VOLATILE STRICT;

CREATE OR REPLACE FUNCTION streamview_internal._caller_search_path()
RETURNS text
AS 'MODULE_PATHNAME', 'streamview_caller_search_path_fn'
LANGUAGE C STABLE;

CREATE OR REPLACE FUNCTION streamview_internal._notify_launcher()
RETURNS void
AS 'MODULE_PATHNAME', 'streamview_notify_launcher'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION streamview_internal._consumer_group(source_name text)
RETURNS text
AS 'MODULE_PATHNAME', 'streamview_consumer_group_fn'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

CREATE OR REPLACE FUNCTION streamview_internal._supported_types()
RETURNS regtype[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ARRAY['text', 'varchar', 'bigint', 'integer', 'smallint', 'numeric',
                   'double precision', 'real', 'boolean', 'timestamptz', 'timestamp',
                   'date', 'uuid']::regtype[] $$;

CREATE OR REPLACE FUNCTION streamview_internal._interval_arg(value text, what text, allow_zero bool DEFAULT false)
RETURNS interval
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result interval;
BEGIN
    BEGIN
        result := value::interval;
    EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
        RAISE EXCEPTION 'invalid interval for %: "%"', what, value
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Write an interval such as ''5 seconds'' or ''1 minute''.';
    END;
    IF result < interval '0' OR (result = interval '0' AND NOT allow_zero) THEN
        RAISE EXCEPTION '% must be positive', what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given was %s.', value),
                  HINT = 'Write an interval such as ''5 seconds''.';
    END IF;
    IF extract(month FROM result) <> 0 OR extract(year FROM result) <> 0 THEN
        RAISE EXCEPTION '% must not contain months or years', what
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Months and years have no fixed length.',
                  HINT = 'Use days instead, such as ''30 days''.';
    END IF;
    RETURN result;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._partitions_arg(value text)
RETURNS int4multirange
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    item   text;
    m      text[];
    lo     numeric;
    hi     numeric;
    result int4multirange := '{}';
    hint   text := 'Write partition numbers and ranges separated by commas, such as ''0-7,12,14-15'', '
                   'or ''16-'' for partition 16 and every later one; ''all'' reads every partition.';
BEGIN
    IF value IS NULL OR lower(btrim(value)) = 'all' THEN
        RETURN NULL;
    END IF;
    IF btrim(value, ', ') = '' THEN
        RAISE EXCEPTION 'partitions must name at least one partition'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('"%s" names none.', value),
                  HINT = 'Pass ''all'' to read every partition of the topic.';
    END IF;
    FOREACH item IN ARRAY string_to_array(value, ',') LOOP
        m := regexp_match(item, '^\s*(-?\d+)\s*(-\s*(-?\d+)?)?\s*$');
        IF m IS NULL THEN
            RAISE EXCEPTION 'invalid partitions "%"', value
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('"%s" is not a partition number or a range of them.', btrim(item)),
                      HINT = hint;
        END IF;
        lo := m[1]::numeric;
        hi := CASE WHEN m[2] IS NULL THEN lo ELSE m[3]::numeric END;   -- NULL: open at its end
        IF lo < 0 OR hi < 0 THEN
            RAISE EXCEPTION 'invalid partitions "%"', value
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Partitions are numbered from 0: "%s" is negative.', btrim(item)),
                      HINT = hint;
        END IF;
        IF greatest(lo, hi) > 2147483646 THEN
            RAISE EXCEPTION 'invalid partitions "%"', value
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('"%s" is beyond the highest partition number, 2147483646.', btrim(item)),
                      HINT = 'Write ''N-'' for partition N and every later one.';
        END IF;
        IF hi < lo THEN
            RAISE EXCEPTION 'invalid partitions "%"', value
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('The range "%s" ends before it starts.', btrim(item)),
                      HINT = 'Write the lower partition number first, such as ''3-5''.';
        END IF;
        result := result + int4multirange(int4range(lo::int, (hi + 1)::int));
    END LOOP;
    RETURN result;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._partitions_text(partitions int4multirange)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(CASE WHEN upper(r) IS NULL THEN lower(r) || '-'
                           WHEN upper(r) = lower(r) + 1 THEN lower(r)::text
                           ELSE lower(r) || '-' || (upper(r) - 1) END, ',' ORDER BY lower(r))
      FROM unnest(partitions) r
$$;

CREATE OR REPLACE FUNCTION streamview_internal._reads_partition(partitions int4multirange, p int)
RETURNS bool
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT partitions IS NULL OR partitions @> p $$;

CREATE OR REPLACE FUNCTION streamview_internal._check_worker_quota(caller regrole, what text, wanted int DEFAULT 1)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    most int := coalesce(current_setting('streamview.max_workers_per_role', true), '4')::int;
    used int;
BEGIN
    IF most = 0 OR (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = caller) THEN
        RETURN;
    END IF;
    -- a source takes as many workers as it has (sources.workers)
    SELECT (SELECT coalesce(sum(s.workers), 0) FROM streamview.sources s WHERE s.owner = caller)
         + (SELECT count(*) FROM streamview.versions x JOIN streamview.views w USING (view_id)
             WHERE w.owner = caller AND x.state = 'replaying')
      INTO used;
    IF used + wanted > most THEN
        RAISE EXCEPTION 'role % may not start another worker for %', caller, what
            USING ERRCODE = 'configuration_limit_exceeded',
                  DETAIL = format('Its sources and running rebuilds have %s workers, %s more were asked for, and streamview.max_workers_per_role is %s.',
                                  used, wanted, most),
                  HINT = 'Drop a source, lower a source''s workers or wait for a rebuild to finish, or ask a superuser to raise streamview.max_workers_per_role.';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._check_owner(caller regrole, owner regrole, kind text, name text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_has_role(caller, owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of % "%"', kind, name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('The %s is owned by %s.', kind, owner);
    END IF;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._check_usage(role regrole, src streamview.sources)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_has_role(role, src.owner, 'USAGE')
       OR EXISTS (SELECT 1 FROM streamview.source_usage u
                   WHERE u.source_id = src.source_id AND pg_has_role(role, u.grantee, 'USAGE')) THEN
        RETURN;
    END IF;
    RAISE EXCEPTION 'permission denied for source "%"', src.name
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('The source is owned by %s, who has not granted USAGE on it to %s.', src.owner, role),
              HINT = format('Its owner can run: SELECT streamview.grant_usage(%L, %L);', src.name, role::text);
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._caller_schema()
RETURNS name
AS 'MODULE_PATHNAME', 'streamview_caller_schema'
LANGUAGE C STABLE;

CREATE OR REPLACE FUNCTION streamview_internal._query_source(query text)
RETURNS text
AS 'MODULE_PATHNAME', 'streamview_query_source'
LANGUAGE C STABLE STRICT;

CREATE OR REPLACE FUNCTION streamview_internal._view_relation(v streamview.views)
RETURNS regclass
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel pg_class;
BEGIN
    SELECT * INTO rel FROM pg_class c WHERE c.oid = v.relid AND c.relkind = 'v';
    IF rel.oid IS NULL THEN
        RETURN NULL;
    END IF;
    IF rel.relowner <> v.owner THEN
        RAISE EXCEPTION 'view %.% of stream view "%" is owned by role "%", not by the stream view''s owner',
                        rel.relnamespace::regnamespace, rel.relname, v.name, pg_get_userbyid(rel.relowner)
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('The stream view belongs to %s.', v.owner),
                  HINT = format('Give it back with ALTER VIEW %s OWNER TO %s.', v.relid, v.owner);
    END IF;
    RETURN rel.oid::regclass;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._check_may_create(v streamview.views, what text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT has_schema_privilege(v.owner, v.schema_name, 'CREATE') THEN
        RAISE EXCEPTION 'permission denied for schema %', v.schema_name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('%s creates in schema %s, where %s may no longer create.', what, v.schema_name, v.owner),
                  HINT = format('GRANT CREATE ON SCHEMA %I TO %s.', v.schema_name, v.owner);
    END IF;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._run_as(role regrole, query text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'streamview_run_as'
LANGUAGE C VOLATILE STRICT;

CREATE OR REPLACE FUNCTION streamview_internal._count_as(role regrole, query text)
RETURNS bigint
LANGUAGE sql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ SELECT (streamview_internal._run_as(role, format('SELECT to_jsonb(q.c) FROM (%s) AS q(c)', query)))::text::bigint $$;

CREATE OR REPLACE FUNCTION streamview_internal._lock_view(caller regrole, view_name text, lock bool DEFAULT true)
RETURNS streamview.views
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v streamview.views;
BEGIN
    -- FOR UPDATE makes the source worker's next batch wait: only changes lock.
    IF lock THEN
        SELECT * INTO v FROM streamview.views w WHERE w.name = view_name FOR UPDATE;
    ELSE
        SELECT * INTO v FROM streamview.views w WHERE w.name = view_name;
    END IF;
    IF v.view_id IS NULL THEN
        RAISE EXCEPTION 'stream view "%" does not exist', view_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT DISTINCT view_name FROM streamview.status.';
    END IF;
    PERFORM streamview_internal._check_owner(caller, v.owner, 'stream view', view_name);
    RETURN v;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._get_version(v streamview.views, version int)
RETURNS streamview.versions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r streamview.versions;
BEGIN
    SELECT * INTO r FROM streamview.versions x WHERE x.view_id = v.view_id AND x.version = _get_version.version;
    IF r.version_id IS NULL THEN
        RAISE EXCEPTION 'version % of stream view "%" does not exist', version, v.name
            USING ERRCODE = 'undefined_object',
                  HINT = format('See SELECT version, state FROM streamview.versions WHERE view_name = %L.', v.name);
    END IF;
    RETURN r;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._exclusive(stmt text, what text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    saved   text := current_setting('lock_timeout');
    bounded text := coalesce(nullif(current_setting('streamview.lock_timeout', true), ''), '10s');
BEGIN
    PERFORM set_config('lock_timeout', bounded, true);
    BEGIN
        EXECUTE stmt;
    EXCEPTION WHEN lock_not_available THEN
        RAISE EXCEPTION '% is in use', what
            USING ERRCODE = 'lock_not_available',
                  DETAIL = format('Another session holds a lock on it (a long-running query, or an open '
                                  'transaction that read it), and streamview.lock_timeout (%s) passed.', bounded),
                  HINT = 'Try again when that session is done, or raise streamview.lock_timeout.';
    END;
    PERFORM set_config('lock_timeout', saved, true);
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._require(value anyelement, what text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION '% must not be null', what
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = format('Pass %s; see the reference for its form.', what);
    END IF;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._apply_retention(dead_letters_age interval, worker_errors_age interval,
                                            validations_age interval, offset_marks_age interval)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    IF dead_letters_age IS NOT NULL THEN
        DELETE FROM streamview.dead_letters d WHERE d.recorded_at < now() - dead_letters_age;
    END IF;
    IF worker_errors_age IS NOT NULL THEN
        DELETE FROM streamview.worker_errors e WHERE e.occurred_at < now() - worker_errors_age;
    END IF;
    IF validations_age IS NOT NULL THEN
        DELETE FROM streamview.validations x
         WHERE x.validated_at < now() - validations_age
           AND x.run < (SELECT max(y.run) FROM streamview.validations y
                         WHERE y.view_name = x.view_name AND y.version = x.version);
    END IF;
    -- Windows of views with a retention (set_retention): per version, as
    -- the view's owner (the table is the owner's, and so are its triggers),
    -- one view's failure reported and the others' retention still done.
    FOR r IN SELECT v.name, v.owner, v.retention, x.version, x.table_name, x.watermark
               FROM streamview.views v JOIN streamview.versions x ON x.view_id = v.view_id
              WHERE v.retention IS NOT NULL AND x.table_name IS NOT NULL
                AND x.watermark IS NOT NULL AND x.state <> 'retired'
              ORDER BY x.version_id LOOP
        BEGIN
            PERFORM streamview_internal._run_as(r.owner, format(
                'WITH d AS (DELETE FROM %s WHERE window_start < %L AND window_end < %L RETURNING 1) '
                'SELECT to_jsonb(count(*)) FROM d',
                r.table_name, r.watermark - r.retention, r.watermark - r.retention));
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'could not apply the retention of stream view "%" version %: %', r.name, r.version, SQLERRM;
        END;
    END LOOP;
    IF offset_marks_age IS NOT NULL THEN
        DELETE FROM streamview.offset_marks m
         WHERE m.max_event_time < now() - offset_marks_age
           AND m.next_offset < (SELECT max(n.next_offset) FROM streamview.offset_marks n
                                 WHERE n.source_id = m.source_id AND n.partition = m.partition);
    END IF;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._live_version(view_id int)
RETURNS streamview.versions
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT x.* FROM streamview.versions x
       WHERE x.view_id = _live_version.view_id AND x.state = 'live' $$;

CREATE OR REPLACE FUNCTION streamview_internal._partitions_behind(version_id int, reference_id int, exact bool)
RETURNS int
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*)::int
      FROM (SELECT o.partition, o.next_offset FROM streamview.offsets o
             WHERE o.version_id = _partitions_behind.version_id) mine
      FULL JOIN (SELECT o.partition, o.next_offset FROM streamview.offsets o
                  WHERE o.version_id = _partitions_behind.reference_id) ref USING (partition)
     WHERE CASE WHEN exact THEN mine.next_offset IS DISTINCT FROM ref.next_offset
                ELSE coalesce(mine.next_offset, -1) < ref.next_offset END
       AND streamview_internal._reads_partition(
               (SELECT s.partitions FROM streamview.versions x
                  JOIN streamview.views v ON v.view_id = x.view_id
                  JOIN streamview.sources s ON s.source_id = v.source_id
                 WHERE x.version_id = _partitions_behind.version_id), partition)
$$;

CREATE OR REPLACE FUNCTION streamview_internal._messages_behind(version_id int, reference_id int)
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(sum(ref.next_offset - greatest(mine.next_offset, 0)), 0)::bigint
      FROM streamview.offsets ref
      LEFT JOIN streamview.offsets mine
             ON mine.version_id = _messages_behind.version_id AND mine.partition = ref.partition
     WHERE ref.version_id = _messages_behind.reference_id
       AND coalesce(mine.next_offset, -1) < ref.next_offset
       AND streamview_internal._reads_partition(
               (SELECT s.partitions FROM streamview.versions x
                  JOIN streamview.views v ON v.view_id = x.view_id
                  JOIN streamview.sources s ON s.source_id = v.source_id
                 WHERE x.version_id = _messages_behind.version_id), ref.partition)
$$;

CREATE OR REPLACE FUNCTION streamview_internal._set_state(version_id int, allowed_from streamview.version_state[],
                                      target streamview.version_state, by name DEFAULT NULL,
                                      error text DEFAULT NULL, strict bool DEFAULT true)
RETURNS streamview.versions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r streamview.versions;
BEGIN
    UPDATE streamview.versions x
       SET state = target,
           caught_up_at = CASE WHEN target = 'caught_up' AND x.state = 'replaying' THEN now()
                               ELSE x.caught_up_at END,
           replayed = CASE WHEN target = 'caught_up' AND x.state = 'replaying'
                           THEN (SELECT b.done FROM streamview.rebuilds b
                                  WHERE b.view_name = x.view_name AND b.version = x.version)
                           ELSE x.replayed END,
           swapped_at = CASE WHEN target = 'live' THEN now() ELSE x.swapped_at END,
           swapped_by = CASE WHEN target = 'live' THEN by ELSE x.swapped_by END,
           retired_at = CASE WHEN target = 'retired' THEN now() ELSE x.retired_at END,
           retired_by = CASE WHEN target = 'retired' THEN by ELSE x.retired_by END,
           failed_at = CASE WHEN target = 'failed' THEN now() ELSE x.failed_at END,
           error = CASE WHEN target = 'failed' THEN _set_state.error ELSE x.error END
     WHERE x.version_id = _set_state.version_id AND x.state = ANY (allowed_from)
    RETURNING x.* INTO r;
    IF r.version_id IS NULL AND strict THEN
        SELECT * INTO r FROM streamview.versions x WHERE x.version_id = _set_state.version_id;
        RAISE EXCEPTION 'version % of stream view "%" is %, not %', r.version, r.view_name, r.state,
                        array_to_string(allowed_from, ' or ')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('It cannot become %s from there.', target);
    END IF;
    RETURN r;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._column_spec(name text, declared jsonb)
RETURNS streamview.source_columns
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    spec     jsonb;
    ctype    regtype;
    cpath    text[];
    cdefault text;
    col      streamview.source_columns;
BEGIN
    IF name !~ '^[A-Za-z_][A-Za-z0-9_]*$' OR name LIKE 'sv\_%' THEN
        RAISE EXCEPTION 'invalid column name "%"', name
            USING ERRCODE = 'invalid_name',
                  HINT = 'Column names have only letters, digits and underscores, and do not start with "sv_"; map other JSON fields with "path".';
    END IF;
    spec := CASE jsonb_typeof(declared)
                WHEN 'string' THEN jsonb_build_object('type', declared)
                WHEN 'object' THEN declared
            END;
    IF spec IS NULL OR NOT spec ? 'type' THEN
        RAISE EXCEPTION 'column "%" has no type', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Write "column":"type" or "column":{"type":"...","path":"a.b","default":...,"required":true}.';
    END IF;
    BEGIN
        ctype := (spec->>'type')::regtype;
    EXCEPTION WHEN undefined_object OR syntax_error OR invalid_text_representation THEN
        ctype := NULL;
    END;
    IF ctype IS NULL OR NOT ctype = ANY (streamview_internal._supported_types()) THEN
        RAISE EXCEPTION 'column "%" has unsupported type "%"', name, spec->>'type'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Supported types: ' || array_to_string(streamview_internal._supported_types()::text[], ', ') || '.';
    END IF;
    cpath := string_to_array(coalesce(spec->>'path', name), '.');
    IF array_position(cpath, '') IS NOT NULL THEN
        RAISE EXCEPTION 'column "%" has an invalid path "%"', name, spec->>'path'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A path names nested fields separated by dots, such as "payload.amount".';
    END IF;
    cdefault := CASE WHEN spec ? 'default' AND jsonb_typeof(spec->'default') <> 'null'
                     THEN spec->>'default' END;
    IF cdefault IS NOT NULL THEN
        BEGIN
            EXECUTE format('SELECT %L::%s', cdefault, ctype);
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'default for column "%" is not a valid %: %', name, ctype, cdefault
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Write the default as %s input, as a JSON string or number.', ctype);
        END;
    END IF;
    col.name := name;
    col.type := ctype;
    col.path := cpath;
    col.default_value := cdefault;
    col.required := coalesce((spec->>'required')::bool, false);
    RETURN col;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._add_column(sid int, attnum int, name text, declared jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col streamview.source_columns := streamview_internal._column_spec(name, declared);
BEGIN
    col.source_id := sid;
    col.attnum := attnum;
    INSERT INTO streamview.source_columns SELECT (col).*;
END $$;

CREATE OR REPLACE FUNCTION streamview.create_source(
    name                 text,
    brokers              text,
    topic                text,
    columns              jsonb,
    event_time           text,
    event_id             text DEFAULT NULL,
    max_out_of_orderness text DEFAULT '0 seconds',
    options              jsonb DEFAULT '{}',
    idle_timeout         text DEFAULT NULL,
    max_future           text DEFAULT '1 day',
    partitions           text DEFAULT NULL,
    workers              int DEFAULT 1,
    format               text DEFAULT 'json',
    schema_registry      text DEFAULT NULL,
    archive              text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text, text, text, int, text, text, text) IS
'declares a Kafka topic of JSON, Avro or Protobuf messages as a stream source (optionally archiving what it reads); returns the Kafka consumer group its worker uses';

CREATE OR REPLACE FUNCTION streamview_internal._create_source_impl(
    caller               regrole,
    name                 text,
    brokers              text,
    topic                text,
    columns              jsonb,
    event_time           text,
    event_id             text DEFAULT NULL,
    max_out_of_orderness text DEFAULT '0 seconds',
    options              jsonb DEFAULT '{}',
    idle_timeout         text DEFAULT NULL,
    max_future           text DEFAULT '1 day',
    partitions           text DEFAULT NULL,
    workers              int DEFAULT 1,
    format               text DEFAULT 'json',
    schema_registry      text DEFAULT NULL,
    archive              text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid      int;
    col      record;
    n        int := 0;
    ooo      interval;
    idle     interval;
    future   interval;
    keep     interval;
    parts    int4multirange := streamview_internal._partitions_arg(partitions);
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z_][A-Za-z0-9_]*$' THEN
        RAISE EXCEPTION 'invalid source name "%"', name
            USING ERRCODE = 'invalid_name',
                  HINT = 'A source name starts with a letter or underscore and has only letters, digits and underscores.';
    END IF;
    IF EXISTS (SELECT 1 FROM streamview.sources s WHERE s.name = _create_source_impl.name) THEN
        RAISE EXCEPTION 'source "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Drop it first with streamview.drop_source(), or choose another name.';
    END IF;
    PERFORM streamview_internal._require(event_time, 'event_time');
    IF coalesce(brokers, '') = '' OR coalesce(topic, '') = '' THEN
        RAISE EXCEPTION 'brokers and topic must be given'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass brokers => ''host:port'' and topic => ''name''.';
    END IF;
    IF columns IS NULL OR jsonb_typeof(columns) <> 'object' OR columns = '{}' THEN
        RAISE EXCEPTION 'columns must be a non-empty JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Map each column name to a type, e.g. ''{"user_id":"text","ts":"timestamptz"}''.';
    END IF;
    PERFORM streamview_internal._check_options(caller, options);
    PERFORM streamview_internal._format_args(format, schema_registry, options);
    PERFORM streamview_internal._workers_arg(workers, name, event_id);
    PERFORM streamview_internal._check_worker_quota(caller, 'a new source', workers);
    ooo := streamview_internal._interval_arg(max_out_of_orderness, 'max_out_of_orderness', true);
    IF idle_timeout IS NOT NULL THEN
        idle := streamview_internal._interval_arg(idle_timeout, 'idle_timeout');
    END IF;
    IF max_future IS NOT NULL THEN
        future := streamview_internal._max_future_arg(max_future);
    END IF;
    IF archive IS NOT NULL THEN
        keep := streamview_internal._archive_arg(archive);
    END IF;

    INSERT INTO streamview.sources (name, brokers, topic, event_time, event_id,
                                    max_out_of_orderness, idle_timeout, options, owner, max_future,
                                    partitions, workers, format, schema_registry, archive)
    VALUES (name, brokers, topic, event_time, event_id, ooo, idle, options,
            caller, future, parts, workers, format, schema_registry, keep)
    RETURNING source_id INTO sid;
    IF keep IS NOT NULL THEN
        PERFORM streamview_internal._archive_create(sid);
    END IF;

    FOR col IN SELECT e.key, e.value FROM jsonb_each(columns) e ORDER BY e.key LOOP
        n := n + 1;
        PERFORM streamview_internal._add_column(sid, n, col.key, col.value);
    END LOOP;

    IF NOT EXISTS (SELECT 1 FROM streamview.source_columns c WHERE c.source_id = sid AND c.name = event_time) THEN
        RAISE EXCEPTION 'event time column "%" is not among the columns', event_time
            USING ERRCODE = 'undefined_column',
                  HINT = 'Declare it in columns with type timestamptz.';
    END IF;
    IF (SELECT c.type FROM streamview.source_columns c WHERE c.source_id = sid AND c.name = event_time)
       <> 'timestamptz'::regtype THEN
        RAISE EXCEPTION 'event time column "%" must have type timestamptz', event_time
            USING ERRCODE = 'datatype_mismatch',
                  HINT = 'Messages may carry ISO-8601 text or epoch milliseconds; both are read as timestamptz.';
    END IF;
    IF event_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM streamview.source_columns c
                                            WHERE c.source_id = sid AND c.name = event_id) THEN
        RAISE EXCEPTION 'event id column "%" is not among the columns', event_id
            USING ERRCODE = 'undefined_column',
                  HINT = 'Declare it in columns, usually with type text.';
    END IF;
    PERFORM streamview_internal._notify_launcher();
    -- the consumer group the broker's ACLs must let the worker use
    RETURN streamview_internal._consumer_group(name);
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._workers_arg(workers int, source_name text, event_id text)
RETURNS int
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF workers IS NULL OR workers NOT BETWEEN 1 AND 64 THEN
        RAISE EXCEPTION 'workers must be between 1 and 64, not %', coalesce(workers::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'One worker reads every partition; use up to one per partition of the topic and per CPU core the server can spare.';
    END IF;
    IF workers > 1 AND event_id IS NOT NULL THEN
        RAISE EXCEPTION 'source "%" has an event_id: it is read by one worker', source_name
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'An event_id is a duplicate whichever partition it came in first; workers that each read their own partitions could all take it for new at once.',
                  HINT = 'Leave workers => 1 for a source with an event_id.';
    END IF;
    RETURN workers;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._max_future_arg(value text)
RETURNS interval
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF lower(btrim(value)) IN ('infinity', '+infinity') THEN
        RETURN NULL;
    END IF;
    RETURN streamview_internal._interval_arg(value, 'max_future');
END $$;

CREATE OR REPLACE FUNCTION streamview.alter_source(
    name                 text,
    brokers              text  DEFAULT NULL,
    options              jsonb DEFAULT NULL,
    max_future           text  DEFAULT NULL,
    topic                text  DEFAULT NULL,
    columns              jsonb DEFAULT NULL,
    event_time           text  DEFAULT NULL,
    event_id             text  DEFAULT NULL,
    max_out_of_orderness text  DEFAULT NULL,
    partitions           text  DEFAULT NULL,
    workers              int   DEFAULT NULL,
    add_columns          jsonb DEFAULT NULL,
    archive              text  DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.alter_source(text, text, jsonb, text, text, jsonb, text, text, text, text, int, jsonb, text) IS
'changes a source''s brokers, options (merged: null removes one), max_future, partitions, workers, archive or columns (add_columns with defaults for old messages; columns no view reads may be dropped or changed); its workers read on with them from the stored offsets; returns the change''s id in streamview.source_changes (NULL if nothing changed)';

CREATE OR REPLACE FUNCTION streamview_internal._check_definition_kept(src streamview.sources, topic text,
                                                  event_time text, event_id text,
                                                  max_out_of_orderness text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    what text;
BEGIN
    IF topic <> src.topic THEN
        RAISE EXCEPTION 'cannot change the topic of source "%"', src.name
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('Its stream views hold what was read from topic "%s", and their stored offsets are offsets in it.', src.topic),
                  HINT = 'Create a new source for the other topic with streamview.create_source(), and stream views over it.';
    END IF;
    what := CASE
        WHEN event_time <> src.event_time THEN 'event_time'
        WHEN event_id IS DISTINCT FROM src.event_id AND event_id IS NOT NULL THEN 'event_id'
        WHEN streamview_internal._interval_arg(max_out_of_orderness, 'max_out_of_orderness', true)
             <> src.max_out_of_orderness THEN 'max_out_of_orderness'
    END;
    IF what IS NOT NULL THEN
        RAISE EXCEPTION 'cannot change the % of source "%"', what, src.name
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('Every stream view over the source was built from messages read with its %s; another one would change what they mean.', what),
                  HINT = 'Create a new source with the new definition with streamview.create_source(), and stream views over it.';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._column_json(col streamview.source_columns)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('type', col.type::text, 'path', array_to_string(col.path, '.'),
                              'default', col.default_value, 'required', col.required)
$$;

CREATE OR REPLACE FUNCTION streamview_internal._source_definition(sid int)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = postgres
AS $$
    SELECT jsonb_build_object(
               'columns', (SELECT jsonb_object_agg(c.name, streamview_internal._column_json(c))
                             FROM streamview.source_columns c WHERE c.source_id = s.source_id),
               'event_time', s.event_time, 'event_id', s.event_id,
               'max_out_of_orderness', s.max_out_of_orderness::text,
               'max_future', s.max_future::text, 'change_id', s.last_change_id)
      FROM streamview.sources s WHERE s.source_id = sid
$$;

CREATE OR REPLACE FUNCTION streamview_internal._column_reader(sid int, col text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN col IN (s.event_time, s.event_id)
                THEN format('the source''s %s', CASE WHEN col = s.event_time THEN 'event_time' ELSE 'event_id' END)
                ELSE (SELECT format('version %s of stream view "%s"', x.version, x.view_name)
                        FROM streamview.versions x JOIN streamview.views w ON w.view_id = x.view_id
                       WHERE w.source_id = sid AND x.state IN ('live', 'caught_up', 'replaying')
                         AND x.query ~* ('(^|[^A-Za-z0-9_$])' || col || '($|[^A-Za-z0-9_$])')
                       ORDER BY x.view_name, x.version LIMIT 1) END
      FROM streamview.sources s WHERE s.source_id = sid
$$;

CREATE OR REPLACE FUNCTION streamview_internal._alter_columns(src streamview.sources, columns jsonb, add_columns jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur      streamview.source_columns;
    col      streamview.source_columns;
    e        record;
    reader   text;
    added    jsonb := '{}';
    dropped  jsonb := '[]';
    altered  jsonb := '{}';
    attnum   int := (SELECT coalesce(max(c.attnum), 0) FROM streamview.source_columns c
                      WHERE c.source_id = src.source_id);
BEGIN
    IF columns IS NOT NULL AND (jsonb_typeof(columns) <> 'object' OR columns = '{}') THEN
        RAISE EXCEPTION 'columns must be a non-empty JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the source''s whole set of columns, each name mapped to its spec; or add columns with add_columns.';
    END IF;
    IF add_columns IS NOT NULL AND (jsonb_typeof(add_columns) <> 'object' OR add_columns = '{}') THEN
        RAISE EXCEPTION 'add_columns must be a non-empty JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Map each new column to its spec, e.g. ''{"channel":{"type":"text","default":"web"}}''.';
    END IF;
    IF columns IS NOT NULL AND add_columns IS NOT NULL AND columns ?| ARRAY(SELECT jsonb_object_keys(add_columns)) THEN
        RAISE EXCEPTION 'a column is both in columns and in add_columns'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give each column once: columns is the whole new set, add_columns only adds.';
    END IF;

    -- columns =>: drop and change first, then add what is new
    FOR cur IN SELECT * FROM streamview.source_columns c WHERE c.source_id = src.source_id
                ORDER BY c.attnum LOOP
        EXIT WHEN columns IS NULL;
        IF NOT columns ? cur.name THEN
            reader := streamview_internal._column_reader(src.source_id, cur.name);
            IF reader IS NOT NULL THEN
                RAISE EXCEPTION 'cannot drop column "%" of source "%": % reads it', cur.name, src.name, reader
                    USING ERRCODE = 'dependent_objects_still_exist',
                          DETAIL = 'A column is dropped only when no live, caught-up or replaying version of a stream view reads it.',
                          HINT = CASE WHEN reader LIKE 'the source%'
                                      THEN 'The event time and the event id of a source are part of what its views mean; create a new source instead.'
                                      ELSE 'Rebuild the view with a query without it, swap, and drop the older versions (streamview.drop_version) first; or keep the column in columns.' END;
            END IF;
            DELETE FROM streamview.source_columns c WHERE c.source_id = src.source_id AND c.attnum = cur.attnum;
            dropped := dropped || to_jsonb(cur.name);
            CONTINUE;
        END IF;
        col := streamview_internal._column_spec(cur.name, columns->cur.name);
        IF (col.type, col.path, col.default_value, col.required)
           IS NOT DISTINCT FROM (cur.type, cur.path, cur.default_value, cur.required) THEN
            CONTINUE;
        END IF;
        reader := streamview_internal._column_reader(src.source_id, cur.name);
        IF reader IS NOT NULL THEN
            RAISE EXCEPTION 'cannot change column "%" of source "%": % reads it', cur.name, src.name, reader
                USING ERRCODE = 'dependent_objects_still_exist',
                      DETAIL = format('It is %s now; the versions that read it were built from values read that way.',
                                      streamview_internal._column_json(cur)),
                      HINT = 'Add a column with the new spec under another name (add_columns), rebuild the view over it and swap; the old column can go once no version reads it.';
        END IF;
        UPDATE streamview.source_columns c
           SET type = col.type, path = col.path, default_value = col.default_value, required = col.required
         WHERE c.source_id = src.source_id AND c.attnum = cur.attnum;
        altered := altered || jsonb_build_object(cur.name, jsonb_build_object(
                       'old', streamview_internal._column_json(cur), 'new', streamview_internal._column_json(col)));
    END LOOP;

    FOR e IN SELECT k.key, k.value, k.from_add FROM (
                 SELECT c.key, c.value, false AS from_add FROM jsonb_each(columns) c
                  WHERE NOT EXISTS (SELECT 1 FROM streamview.source_columns x
                                     WHERE x.source_id = src.source_id AND x.name = c.key)
                 UNION ALL
                 SELECT a.key, a.value, true FROM jsonb_each(add_columns) a) k
              ORDER BY k.key LOOP
        IF e.from_add AND EXISTS (SELECT 1 FROM streamview.source_columns x
                                   WHERE x.source_id = src.source_id AND x.name = e.key) THEN
            RAISE EXCEPTION 'column "%" of source "%" already exists', e.key, src.name
                USING ERRCODE = 'duplicate_column',
                      HINT = 'add_columns adds new columns only; change one no view reads with columns =>.';
        END IF;
        col := streamview_internal._column_spec(e.key, e.value);
        IF col.required THEN
            RAISE EXCEPTION 'new column "%" of source "%" cannot be required', e.key, src.name
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Messages written before producers sent the field lack it: each would be a dead letter (missing_field), in every rebuild too.',
                      HINT = 'Give it a default instead ("default": ...); messages without the field read with it.';
        END IF;
        attnum := attnum + 1;
        col.source_id := src.source_id;
        col.attnum := attnum;
        INSERT INTO streamview.source_columns SELECT (col).*;
        added := added || jsonb_build_object(e.key, streamview_internal._column_json(col));
    END LOOP;

    -- A column added or changed must not read a field another column reads,
    -- nor one that holds another's (a path that is the start of another's):
    -- the other would read an object, or the field twice, and every message
    -- would become a dead letter.
    SELECT a.name AS key, b.name AS value INTO e FROM streamview.source_columns a JOIN streamview.source_columns b
        ON b.source_id = a.source_id AND b.attnum <> a.attnum
     WHERE a.source_id = src.source_id
       AND (added ? a.name OR altered ? a.name)
       AND (a.path = b.path[1:cardinality(a.path)] OR b.path = a.path[1:cardinality(b.path)])
     ORDER BY a.attnum, b.attnum LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'column "%" of source "%" reads the field of column "%", or one inside it', e.key, src.name, e.value
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Two columns would read the same field, or one a field that holds the other''s: every message would be read differently from now on.',
                  HINT = 'Give the column a "path" of its own.';
    END IF;

    RETURN CASE WHEN added = '{}' THEN '{}' ELSE jsonb_build_object('add_columns', added) END
        || CASE WHEN dropped = '[]' THEN '{}' ELSE jsonb_build_object('drop_columns', dropped) END
        || CASE WHEN altered = '{}' THEN '{}' ELSE jsonb_build_object('alter_columns', altered) END;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._options_change(old_options jsonb, new_options jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(k.key, jsonb_build_object(
               'old', CASE WHEN k.secret AND o.value IS NOT NULL THEN '"********"'::jsonb ELSE o.value END,
               'new', CASE WHEN k.secret AND n.value IS NOT NULL THEN '"********"'::jsonb ELSE n.value END)), '{}')
      FROM (SELECT u.key, u.key ~* '(password|secret|key|token|credential|jaas)|\.pem$' AS secret
              FROM (SELECT e.key FROM jsonb_each(old_options) e
                    UNION SELECT e.key FROM jsonb_each(new_options) e) u) k
      LEFT JOIN jsonb_each(old_options) o ON o.key = k.key
      LEFT JOIN jsonb_each(new_options) n ON n.key = k.key
     WHERE o.value IS DISTINCT FROM n.value
$$;

CREATE OR REPLACE FUNCTION streamview_internal._alter_source_impl(
    caller               regrole,
    name                 text,
    brokers              text  DEFAULT NULL,
    options              jsonb DEFAULT NULL,
    max_future           text  DEFAULT NULL,
    topic                text  DEFAULT NULL,
    columns              jsonb DEFAULT NULL,
    event_time           text  DEFAULT NULL,
    event_id             text  DEFAULT NULL,
    max_out_of_orderness text  DEFAULT NULL,
    partitions           text  DEFAULT NULL,
    workers              int   DEFAULT NULL,
    add_columns          jsonb DEFAULT NULL,
    archive              text  DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = postgres
AS $$
DECLARE
    src     streamview.sources;
    opts    jsonb;
    future  interval;
    keep    interval;
    parts   int4multirange := streamview_internal._partitions_arg(partitions);
    changes jsonb := '{}';
    id      bigint;
BEGIN
    PERFORM streamview_internal._require(name, 'name');
    src := streamview_internal._lock_source(caller, name);
    PERFORM streamview_internal._check_definition_kept(src, topic, event_time, event_id, max_out_of_orderness);
    changes := streamview_internal._alter_columns(src, columns, add_columns);
    IF brokers = '' THEN
        RAISE EXCEPTION 'brokers must not be empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass brokers => ''host:port'' (several separated by commas), or NULL to keep them.';
    END IF;
    IF brokers <> src.brokers THEN
        changes := changes || jsonb_build_object('brokers', jsonb_build_object('old', src.brokers, 'new', brokers));
    END IF;
    IF options IS NOT NULL THEN
        IF jsonb_typeof(options) <> 'object' THEN
            RAISE EXCEPTION 'options must be a JSON object of librdkafka properties'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass the properties to change, such as ''{"sasl.password":"..."}''; null removes a property.';
        END IF;
        -- what the caller sets is checked, as create_source checks it; what
        -- it leaves alone was set by a role allowed to
        PERFORM streamview_internal._check_options(caller, jsonb_strip_nulls(options));
        opts := jsonb_strip_nulls(src.options || options);
        IF opts <> src.options THEN
            changes := changes || jsonb_build_object('options', streamview_internal._options_change(src.options, opts));
        END IF;
    END IF;
    IF max_future IS NOT NULL THEN
        future := streamview_internal._max_future_arg(max_future);
        IF future IS DISTINCT FROM src.max_future THEN
            changes := changes || jsonb_build_object('max_future', jsonb_build_object('old', src.max_future, 'new', future));
        END IF;
    END IF;
    IF partitions IS NOT NULL AND parts IS DISTINCT FROM src.partitions THEN
        changes := changes || jsonb_build_object('partitions', jsonb_build_object(
            'old', streamview_internal._partitions_text(src.partitions),
            'new', streamview_internal._partitions_text(parts)));
    END IF;
    IF workers IS NOT NULL AND workers <> src.workers THEN
        PERFORM streamview_internal._workers_arg(workers, src.name, src.event_id);
        IF workers > src.workers THEN
            PERFORM streamview_internal._check_worker_quota(caller, format('source "%s"', src.name),
                                                            workers - src.workers);
        END IF;
        changes := changes || jsonb_build_object('workers', jsonb_build_object('old', src.workers, 'new', workers));
    END IF;
    IF archive IS NOT NULL THEN
        keep := streamview_internal._archive_arg(archive);
        IF keep IS DISTINCT FROM src.archive THEN
            changes := changes || jsonb_build_object('archive', jsonb_build_object('old', src.archive, 'new', keep));
        END IF;
    END IF;
    IF changes = '{}' THEN
        RETURN NULL;
    END IF;

    UPDATE streamview.sources s
       SET brokers = CASE WHEN changes ? 'brokers' THEN _alter_source_impl.brokers ELSE s.brokers END,
           options = CASE WHEN changes ? 'options' THEN opts ELSE s.options END,
           max_future = CASE WHEN changes ? 'max_future' THEN future ELSE s.max_future END,
           partitions = CASE WHEN changes ? 'partitions' THEN parts ELSE s.partitions END,
           workers = CASE WHEN changes ? 'workers' THEN _alter_source_impl.workers ELSE s.workers END,
           archive = CASE WHEN changes ? 'archive' THEN keep ELSE s.archive END
     WHERE s.source_id = src.source_id;
    -- archive => 'off' drops what is archived; a new interval applies at the
    -- workers' next housekeeping
    IF changes ? 'archive' AND keep IS NULL THEN
        PERFORM streamview_internal._archive_drop(src.source_id);
    ELSIF changes ? 'archive' THEN
        PERFORM streamview_internal._archive_create(src.source_id);
    END IF;
    -- the stats of workers the source no longer has (they stop before
    -- anything else they would write commits)
    DELETE FROM streamview.version_stats st
     USING streamview.versions x JOIN streamview.views w ON w.view_id = x.view_id
     WHERE st.version_id = x.version_id AND w.source_id = src.source_id
       AND changes ? 'workers' AND st.worker >= _alter_source_impl.workers;
    INSERT INTO streamview.source_changes (source_id, source_name, changes, changed_by)
    VALUES (src.source_id, src.name, changes, caller::name)
    RETURNING change_id INTO id;
    -- the workers restart with it (SV_SOURCE_SETTINGS), columns too
    UPDATE streamview.sources s SET last_change_id = id WHERE s.source_id = src.source_id;
    -- where each version stands when the definition changes: what it read
    -- before was read with the old one (replay_dead_letters)
    IF changes ?| ARRAY['add_columns', 'drop_columns', 'alter_columns', 'max_future'] THEN
        UPDATE streamview.offsets o SET definition_mark = o.next_offset
          FROM streamview.versions x JOIN streamview.views w ON w.view_id = x.view_id
         WHERE o.version_id = x.version_id AND w.source_id = src.source_id;
    END IF;
    PERFORM streamview_internal._notify_launcher();
    RETURN id;
END $$;

CREATE OR REPLACE FUNCTION streamview.check_source(name text, columns jsonb DEFAULT NULL)
RETURNS TABLE (reason text, messages bigint, sample_partition int, sample_offset bigint, sample_error text)
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE ROWS 6;
COMMENT ON FUNCTION streamview.check_source(text, jsonb) IS
'reads the whole history still available of a source with its columns or candidate ones, changing nothing; returns per outcome (ok, each dead-letter reason, unavailable) how many messages, with the first as a sample';

CREATE OR REPLACE FUNCTION streamview_internal._check_source_read(source_id int, columns jsonb)
RETURNS TABLE (reason text, messages bigint, sample_partition int, sample_offset bigint, sample_error text)
AS 'MODULE_PATHNAME', 'streamview_check_source_read'
LANGUAGE C VOLATILE ROWS 6;

CREATE OR REPLACE FUNCTION streamview_internal._check_source_impl(caller regrole, name text, columns jsonb DEFAULT NULL)
RETURNS TABLE (reason text, messages bigint, sample_partition int, sample_offset bigint, sample_error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    src  streamview.sources;
    et   streamview.source_columns;
BEGIN
    PERFORM streamview_internal._require(name, 'name');
    SELECT s.* INTO src FROM streamview.sources s WHERE s.name = _check_source_impl.name;
    IF src.source_id IS NULL THEN
        RAISE EXCEPTION 'source "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT name FROM streamview.source_list.';
    END IF;
    PERFORM streamview_internal._check_usage(caller, src);
    IF columns IS NOT NULL THEN
        IF jsonb_typeof(columns) <> 'object' OR columns = '{}' THEN
            RAISE EXCEPTION 'columns must be a non-empty JSON object'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass the whole candidate set of columns, as create_source takes it; NULL checks the source''s own.';
        END IF;
        SELECT d.* INTO et FROM jsonb_each(columns) e, streamview_internal._column_spec(e.key, e.value) d
         WHERE d.name = src.event_time;
        IF et.name IS NULL OR et.type <> 'timestamptz'::regtype THEN
            RAISE EXCEPTION 'the columns must have the source''s event time column "%", of type timestamptz', src.event_time
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'A source''s event_time cannot change; keep its column in the candidate set.';
        END IF;
        IF src.event_id IS NOT NULL AND NOT columns ? src.event_id THEN
            RAISE EXCEPTION 'the columns must have the source''s event id column "%"', src.event_id
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'A source''s event_id cannot change; keep its column in the candidate set.';
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM streamview_internal._check_source_read(src.source_id, columns) r;
END $$;

CREATE OR REPLACE FUNCTION streamview.replay_dead_letters(source_name text, since timestamptz DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.replay_dead_letters(text, timestamptz) IS
'applies the source''s dead letters (not too_late ones; those recorded since a time, if given) that its current definition now reads, as a rebuild with it would; returns how many read now; recorded in streamview.source_changes';

CREATE OR REPLACE FUNCTION streamview_internal._replay_dead_letters_apply(source_id int, since timestamptz)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'streamview_replay_dead_letters_apply'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION streamview_internal._replay_dead_letters_impl(caller regrole, source_name text,
                                                      since timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src     streamview.sources := streamview_internal._lock_source(caller, source_name);
    result  jsonb;
    id      bigint;
BEGIN
    IF src.event_id IS NOT NULL THEN
        RAISE EXCEPTION 'cannot replay the dead letters of source "%": it has an event_id', src.name
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Whether a replayed message is a duplicate depends on the order in which its partitions were read, which the log does not keep.',
                  HINT = 'Rebuild its views with streamview.rebuild(), validate and swap: a rebuild reads every message with the current definition.';
    END IF;
    result := streamview_internal._replay_dead_letters_apply(src.source_id, since);
    INSERT INTO streamview.source_changes (source_id, source_name, changes, changed_by)
    VALUES (src.source_id, src.name,
            jsonb_build_object('replay_dead_letters', result || jsonb_build_object('since', since)),
            caller::name)
    RETURNING change_id INTO id;
    IF (result->>'replayed')::bigint > 0 THEN
        UPDATE streamview.sources s SET last_change_id = id WHERE s.source_id = src.source_id;
        PERFORM streamview_internal._notify_launcher();
    END IF;
    RETURN (result->>'replayed')::bigint;
END $$;

CREATE OR REPLACE FUNCTION streamview.drop_source(name text, cascade bool DEFAULT false)
RETURNS int
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.drop_source(text, bool) IS
'drops a source (and with cascade its views); its worker stops once the transaction commits; returns how many views were dropped';

CREATE OR REPLACE FUNCTION streamview_internal._drop_source_impl(caller regrole, name text, cascade bool DEFAULT false)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid int;
    v   record;
    n   int := 0;
BEGIN
    SELECT s.source_id INTO sid FROM streamview.sources s WHERE s.name = _drop_source_impl.name FOR UPDATE;
    IF sid IS NULL THEN
        RAISE EXCEPTION 'source "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT name FROM streamview.source_list.';
    END IF;
    PERFORM streamview_internal._check_owner(caller, (SELECT s.owner FROM streamview.sources s WHERE s.source_id = sid),
                                    'source', name);
    FOR v IN SELECT w.name FROM streamview.views w WHERE w.source_id = sid LOOP
        IF NOT cascade THEN
            RAISE EXCEPTION 'cannot drop source "%" because view "%" depends on it', name, v.name
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = 'Drop the view first, or use drop_source(name, cascade => true).';
        END IF;
        PERFORM streamview_internal._drop_view_impl(caller, v.name);
        n := n + 1;
    END LOOP;
    DELETE FROM streamview.dead_letters d WHERE d.source_name = _drop_source_impl.name;
    PERFORM streamview_internal._archive_drop(sid);
    DELETE FROM streamview.sources s WHERE s.source_id = sid;
    PERFORM streamview_internal._notify_launcher();
    RETURN n;   -- the stream views dropped with it
END $$;

CREATE OR REPLACE FUNCTION streamview.grant_usage(source_name text, to_role regrole)
RETURNS bool
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.grant_usage(text, regrole) IS
'lets a role (and its members) build stream views over a source; its options stay hidden; returns false if it had it already';

CREATE OR REPLACE FUNCTION streamview.revoke_usage(source_name text, from_role regrole)
RETURNS bool
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.revoke_usage(text, regrole) IS
'takes back grant_usage: no new stream views or rebuilds over the source; existing views go on; returns false if there was no grant';

CREATE OR REPLACE FUNCTION streamview_internal._lock_source(caller regrole, name text)
RETURNS streamview.sources
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src streamview.sources;
BEGIN
    PERFORM streamview_internal._require(name, 'source_name');
    SELECT s.* INTO src FROM streamview.sources s WHERE s.name = _lock_source.name FOR UPDATE;
    IF src.source_id IS NULL THEN
        RAISE EXCEPTION 'source "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT name FROM streamview.source_list.';
    END IF;
    PERFORM streamview_internal._check_owner(caller, src.owner, 'source', name);
    RETURN src;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._grant_usage_impl(caller regrole, source_name text, to_role regrole)
RETURNS bool
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src streamview.sources := streamview_internal._lock_source(caller, source_name);
BEGIN
    PERFORM streamview_internal._require(to_role, 'to_role');
    INSERT INTO streamview.source_usage (source_id, grantee, granted_by)
    VALUES (src.source_id, to_role, caller)
    ON CONFLICT (source_id, grantee) DO NOTHING;
    RETURN FOUND;   -- false: the role had it already
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._revoke_usage_impl(caller regrole, source_name text, from_role regrole)
RETURNS bool
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src streamview.sources := streamview_internal._lock_source(caller, source_name);
BEGIN
    PERFORM streamview_internal._require(from_role, 'from_role');
    DELETE FROM streamview.source_usage u WHERE u.source_id = src.source_id AND u.grantee = from_role;
    RETURN FOUND;   -- false: the role had no grant
END $$;

CREATE OR REPLACE FUNCTION streamview.pause(source_name text)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.pause(text) IS
'stops reading a source (its worker and its rebuilds'' workers) until resume(); returns when it was paused';

CREATE OR REPLACE FUNCTION streamview.resume(source_name text)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.resume(text) IS
'reads a paused source again, from its stored offsets; returns when it had been paused (NULL if it was not)';

CREATE OR REPLACE FUNCTION streamview_internal._pause_impl(caller regrole, source_name text)
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src streamview.sources := streamview_internal._lock_source(caller, source_name);
BEGIN
    IF src.paused_at IS NULL THEN
        UPDATE streamview.sources s SET paused_at = now() WHERE s.source_id = src.source_id
        RETURNING s.paused_at INTO src.paused_at;
        PERFORM streamview_internal._notify_launcher();
    END IF;
    RETURN src.paused_at;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._resume_impl(caller regrole, source_name text)
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src streamview.sources := streamview_internal._lock_source(caller, source_name);
BEGIN
    IF src.paused_at IS NOT NULL THEN
        UPDATE streamview.sources s SET paused_at = NULL WHERE s.source_id = src.source_id;
        PERFORM streamview_internal._notify_launcher();
    END IF;
    RETURN src.paused_at;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._format_args(format text, schema_registry text, options jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF format IS NULL OR format NOT IN ('json', 'avro', 'protobuf') THEN
        RAISE EXCEPTION 'unknown format "%"', coalesce(format, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'format is ''json'', ''avro'' or ''protobuf''.';
    END IF;
    IF format = 'json' AND schema_registry IS NOT NULL THEN
        RAISE EXCEPTION 'a JSON source takes no schema_registry'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass format => ''avro'' or ''protobuf'' for messages written with a schema registry.';
    END IF;
    IF format <> 'json' AND schema_registry IS NULL THEN
        RAISE EXCEPTION 'a source of format % needs a schema_registry', format
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Its messages carry the id of their schema, which the worker asks of the registry.',
                  HINT = 'Pass schema_registry => ''http://host:port''.';
    END IF;
    IF schema_registry IS NOT NULL AND schema_registry !~ '^https?://[^/?#@[:space:]]+(/[^?#[:space:]]*)?$' THEN
        RAISE EXCEPTION 'invalid schema_registry "%"', schema_registry
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'It is the URL of the registry''s REST API, http or https, without credentials.',
                  HINT = 'Pass schema_registry => ''http://host:port''; put credentials in options as schema.registry.username and schema.registry.password.';
    END IF;
    IF format = 'json' AND (options ? 'schema.registry.username' OR options ? 'schema.registry.password') THEN
        RAISE EXCEPTION 'a JSON source takes no schema registry credentials'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Leave schema.registry.username and schema.registry.password out of options.';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._check_options(caller regrole, options jsonb)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k     text;
    v     text;
    super bool := (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = caller);
    most  bigint;
BEGIN
    IF options IS NULL OR jsonb_typeof(options) <> 'object'
       OR EXISTS (SELECT 1 FROM jsonb_each(options) e WHERE jsonb_typeof(e.value) NOT IN ('string', 'number', 'boolean')) THEN
        RAISE EXCEPTION 'options must be a JSON object of librdkafka properties'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example ''{"security.protocol":"SASL_SSL"}''; values are strings, numbers or booleans.';
    END IF;
    FOR k, v IN SELECT e.key, e.value FROM jsonb_each_text(options) e LOOP
        IF k IN ('enable.auto.commit', 'enable.auto.offset.store', 'enable.partition.eof',
                 'auto.offset.reset', 'group.id', 'bootstrap.servers', 'metadata.broker.list',
                 'log.queue', 'isolation.level', 'group.instance.id') THEN
            RAISE EXCEPTION 'Kafka option "%" cannot be set for a source', k
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = CASE WHEN k IN ('bootstrap.servers', 'metadata.broker.list')
                                    THEN 'The brokers are the source''s brokers argument.'
                                    ELSE 'pg_streamview sets it itself: offsets are kept in PostgreSQL.' END;
        END IF;
        IF NOT super
           AND NOT (k IN ('security.protocol', 'sasl.mechanism', 'sasl.mechanisms', 'sasl.username',
                          'sasl.password', 'ssl.ca.pem', 'ssl.certificate.pem', 'ssl.key.pem',
                          'schema.registry.username', 'schema.registry.password',
                          'ssl.key.password', 'ssl.endpoint.identification.algorithm',
                          'api.version.request', 'broker.version.fallback', 'client.rack',
                          'check.crcs', 'allow.auto.create.topics')
                    OR k ~ '^(session|socket|fetch|queued|reconnect|retry|metadata|topic\.metadata|message\.max|receive\.message|max\.poll|heartbeat|connections)\.') THEN
            RAISE EXCEPTION 'only superusers may set Kafka option "%"', k
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'Options that name files, programs or libraries on the server are reserved to superusers.',
                      HINT = 'Pass certificates inline with ssl.ca.pem, ssl.certificate.pem and ssl.key.pem.';
        END IF;
        most := CASE k WHEN 'queued.max.messages.kbytes' THEN 16384
                       WHEN 'queued.min.messages' THEN 1000000
                       WHEN 'fetch.max.bytes' THEN 52428800
                       WHEN 'fetch.message.max.bytes' THEN 1048576
                       WHEN 'receive.message.max.bytes' THEN 100000000
                       WHEN 'message.max.bytes' THEN 1000000 END;
        IF NOT super AND most IS NOT NULL AND (v !~ '^\s*\d{1,18}\s*$' OR v::bigint > most) THEN
            RAISE EXCEPTION 'only superusers may set Kafka option "%" above %', k, most
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('It bounds the memory a worker takes for messages; %s was given.', v),
                      HINT = 'Leave it at its default, or ask a superuser to create the source.';
        END IF;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._depend_on_extension(tbl regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'streamview_depend_on_extension'
LANGUAGE C VOLATILE STRICT;

CREATE OR REPLACE FUNCTION streamview_internal._create_version(caller regrole, vid int, ver int, query text,
                                           state streamview.version_state)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v        streamview.views;
    src      text;
    tbl      text;
    vrow_id  int := nextval(pg_get_serial_sequence('streamview.versions', 'version_id'));
    gen      record;
BEGIN
    SELECT * INTO v FROM streamview.views w WHERE w.view_id = vid;
    SELECT s.name INTO src FROM streamview.sources s WHERE s.source_id = v.source_id;
    tbl := format('%I.%I', v.schema_name, v.name || '_v' || ver);
    SELECT * INTO gen FROM streamview_internal._version_sql(caller, streamview_internal._caller_search_path(), src, query,
                                                   tbl, vrow_id, v.allowed_lateness);
    IF to_regclass(tbl) IS NOT NULL THEN
        RAISE EXCEPTION 'relation % already exists', tbl
            USING ERRCODE = 'duplicate_table',
                  HINT = 'Each version of a stream view keeps its rows in a table named <view>_v<version>.';
    END IF;
    EXECUTE gen.create_table;
    PERFORM streamview_internal._depend_on_extension(tbl::regclass);
    EXECUTE format('ALTER TABLE %s OWNER TO %s', tbl, v.owner);  -- regrole text is quoted
    EXECUTE gen.create_index;
    EXECUTE format('COMMENT ON TABLE %s IS %L', tbl,
                   format('rows of stream view %s, version %s (maintained by pg_streamview)', v.name, ver));

    INSERT INTO streamview.versions (version_id, view_id, view_name, version, state, query, definition,
                                     definition_hash, table_name, window_kind, window_size,
                                     window_slide, window_time_zone, window_origin, batch_sql, view_sql,
                                     extension_version, created_by, source_definition)
    VALUES (vrow_id, vid, v.name, ver, state, query, gen.definition,
            md5(jsonb_build_object('d', gen.definition, 'lateness', v.allowed_lateness)::text),
            tbl::regclass, gen.definition->>'window_kind', (gen.definition->>'window_size')::interval,
            (gen.definition->>'window_slide')::interval, gen.definition->>'window_time_zone',
            (gen.definition->>'window_origin')::timestamp, gen.batch_sql, gen.view_sql,
            (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'pg_streamview'), caller::name,
            streamview_internal._source_definition(v.source_id));
    RETURN vrow_id;
END $$;

CREATE OR REPLACE FUNCTION streamview.create_view(
    name             text,
    query            text,
    allowed_lateness text DEFAULT '0 seconds')
RETURNS regclass
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.create_view(text, text, text) IS
'creates a stream view: a windowed aggregate over a source, kept up to date from the topic; returns the view';

CREATE OR REPLACE FUNCTION streamview_internal._create_view_impl(
    caller           regrole,
    name             text,
    query            text,
    allowed_lateness text DEFAULT '0 seconds')
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src       streamview.sources;
    vname     text;
    vschema   name;
    vid       int;
    vrow_id   int;
    lateness  interval;
    m         text[];
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'view name must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass the name of the view to create, optionally with its schema: analytics.revenue.';
    END IF;
    m := regexp_match(name, '^(?:([A-Za-z_][A-Za-z0-9_]*)\.)?([A-Za-z_][A-Za-z0-9_]*)$');
    IF m IS NULL THEN
        RAISE EXCEPTION 'invalid view name "%"', name
            USING ERRCODE = 'invalid_name',
                  HINT = 'Use letters, digits and underscores, optionally qualified with a schema: analytics.revenue.';
    END IF;
    vname := m[2];
    vschema := coalesce(m[1], streamview_internal._caller_schema());
    IF NOT has_schema_privilege(caller, vschema, 'CREATE') THEN
        RAISE EXCEPTION 'permission denied for schema %', vschema
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'A stream view creates its view and tables in that schema.',
                  HINT = 'Qualify the view name with a schema you may create in: schema.view.';
    END IF;
    IF EXISTS (SELECT 1 FROM streamview.views w WHERE w.name = vname) THEN
        RAISE EXCEPTION 'stream view "%" already exists', vname
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Use streamview.rebuild() to change its query, or drop it with streamview.drop_view().';
    END IF;
    IF to_regclass(format('%I.%I', vschema, vname)) IS NOT NULL THEN
        RAISE EXCEPTION 'relation "%.%" already exists', vschema, vname
            USING ERRCODE = 'duplicate_table';
    END IF;
    PERFORM streamview_internal._require(query, 'query');
    PERFORM streamview_internal._require(allowed_lateness, 'allowed_lateness');
    lateness := streamview_internal._interval_arg(allowed_lateness, 'allowed_lateness', true);

    SELECT s.* INTO src FROM streamview.sources s
     WHERE s.name = streamview_internal._query_source(query);
    PERFORM streamview_internal._check_usage(caller, src);

    INSERT INTO streamview.views (name, schema_name, source_id, owner, allowed_lateness)
    VALUES (vname, vschema, src.source_id, caller, lateness)
    RETURNING view_id INTO vid;
    vrow_id := streamview_internal._create_version(caller, vid, 1, query, 'live');
    EXECUTE (SELECT format('CREATE VIEW %I.%I AS %s', vschema, vname, ver.view_sql)
               FROM streamview.versions ver WHERE ver.version_id = vrow_id);
    EXECUTE format('ALTER VIEW %I.%I OWNER TO %s', vschema, vname, caller);
    EXECUTE format('COMMENT ON VIEW %I.%I IS %L', vschema, vname,
                   'stream view over source ' || src.name || ' (pg_streamview)');
    UPDATE streamview.views w SET relid = format('%I.%I', vschema, vname)::regclass WHERE w.view_id = vid;
    PERFORM streamview_internal._notify_launcher();
    RETURN format('%I.%I', vschema, vname)::regclass;   -- where it went
END $$;

CREATE OR REPLACE FUNCTION streamview.set_retention(view_name text, drop_after interval)
RETURNS interval
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.set_retention(text, interval) IS
'keeps only the windows that end less than drop_after before the watermark (NULL: all); returns the setting';

CREATE OR REPLACE FUNCTION streamview_internal._set_retention_impl(caller regrole, view_name text, drop_after interval)
RETURNS interval
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v streamview.views;
BEGIN
    PERFORM streamview_internal._require(view_name, 'view_name');
    v := streamview_internal._lock_view(caller, view_name);
    IF drop_after IS NOT NULL AND (drop_after <= interval '0' OR drop_after < v.allowed_lateness) THEN
        RAISE EXCEPTION 'drop_after must be at least the view''s allowed_lateness'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Stream view "%s" accepts events up to %s late; %s was given.',
                                  v.name, v.allowed_lateness, drop_after),
                  HINT = 'A window deleted while it can still change would come back with only its late events.';
    END IF;
    UPDATE streamview.views w SET retention = drop_after WHERE w.view_id = v.view_id;
    RETURN drop_after;
END $$;

CREATE OR REPLACE FUNCTION streamview.drop_view(name text)
RETURNS int
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.drop_view(text) IS
'drops a stream view, all its versions and their tables; returns how many tables were dropped';

CREATE OR REPLACE FUNCTION streamview_internal._drop_view_impl(caller regrole, name text)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v   streamview.views;
    ver record;
    rel regclass;
    n   int := 0;
BEGIN
    SELECT * INTO v FROM streamview.views w WHERE w.name = _drop_view_impl.name FOR UPDATE;
    IF v.view_id IS NULL THEN
        RAISE EXCEPTION 'stream view "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT DISTINCT view_name FROM streamview.status.';
    END IF;
    PERFORM streamview_internal._check_owner(caller, v.owner, 'stream view', name);
    -- the view create_view made, if it is still there: not whatever
    -- relation has its name now, which may be another role's
    rel := streamview_internal._view_relation(v);
    IF rel IS NOT NULL THEN
        PERFORM streamview_internal._exclusive(format('DROP VIEW %s', rel), format('stream view "%s"', v.name));
    END IF;
    FOR ver IN SELECT x.table_name FROM streamview.versions x WHERE x.view_id = v.view_id LOOP
        IF ver.table_name IS NOT NULL THEN
            PERFORM streamview_internal._exclusive(format('DROP TABLE IF EXISTS %s', ver.table_name),
                                          format('table %s of stream view "%s"', ver.table_name, v.name));
            n := n + 1;
        END IF;
    END LOOP;
    -- its snapshots go with it (their tables are not the view owner's)
    PERFORM streamview_internal._drop_snapshot(s.snapshot_id)
       FROM streamview.snapshots s WHERE s.view_id = v.view_id;
    DELETE FROM streamview.dead_letters d WHERE d.view_name = v.name;
    DELETE FROM streamview.validations x WHERE x.view_name = v.name;
    DELETE FROM streamview.swaps x WHERE x.view_name = v.name;
    DELETE FROM streamview.views w WHERE w.view_id = v.view_id;
    PERFORM streamview_internal._notify_launcher();
    RETURN n;   -- the versions' tables dropped
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._guard_drop()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'streamview_guard_drop'
LANGUAGE C;

CREATE OR REPLACE FUNCTION streamview_internal._guard_alter()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'streamview_guard_alter'
LANGUAGE C;

CREATE OR REPLACE FUNCTION streamview.rebuild(view_name text, query text DEFAULT NULL,
                                   start_from text DEFAULT 'earliest', max_rate bigint DEFAULT NULL,
                                   accept_data_loss bool DEFAULT false)
RETURNS int
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.rebuild(text, text, text, bigint, bool) IS
'starts a new version of a stream view that replays the log, from the archive where Kafka no longer has it (optionally with a new query); returns its number';

CREATE OR REPLACE FUNCTION streamview_internal._rebuild_impl(caller regrole, view_name text, query text DEFAULT NULL,
                                         start_from text DEFAULT 'earliest', max_rate bigint DEFAULT NULL,
                                         accept_data_loss bool DEFAULT false)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v      streamview.views;
    live   streamview.versions;
    busy   int;
    ver    int;
    vrow   int;
    since  timestamptz;
BEGIN
    v := streamview_internal._lock_view(caller, view_name);
    PERFORM streamview_internal._check_may_create(v, 'A rebuild');
    PERFORM streamview_internal._check_usage(v.owner, s) FROM streamview.sources s WHERE s.source_id = v.source_id;
    PERFORM streamview_internal._check_worker_quota(v.owner, 'a rebuild');
    IF max_rate > 1000000000 THEN
        RAISE EXCEPTION 'max_rate must be at most 1000000000 events per second'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given was %s.', max_rate),
                  HINT = 'Pass NULL for no limit.';
    END IF;
    IF max_rate IS NOT NULL AND max_rate <= 0 THEN
        RAISE EXCEPTION 'max_rate must be positive'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the most events per second the replay may apply, or NULL for no limit.';
    END IF;
    IF start_from IS NOT NULL AND start_from <> 'earliest' THEN
        BEGIN
            since := start_from::timestamptz;
        EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
            RAISE EXCEPTION 'invalid start_from "%"', start_from
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use ''earliest'' or a timestamp.';
        END;
    END IF;
    SELECT x.version INTO busy FROM streamview.versions x
     WHERE x.view_id = v.view_id AND x.state = 'replaying';
    IF busy IS NOT NULL THEN
        RAISE EXCEPTION 'a rebuild of stream view "%" is already running (version %)', view_name, busy
            USING ERRCODE = 'object_in_use',
                  HINT = 'Wait for it with streamview.wait_for(), or stop it with streamview.drop_version().';
    END IF;
    live := streamview_internal._live_version(v.view_id);
    SELECT max(x.version) + 1 INTO ver FROM streamview.versions x WHERE x.view_id = v.view_id;
    vrow := streamview_internal._create_version(caller, v.view_id, ver, coalesce(query, live.query), 'replaying');
    UPDATE streamview.versions x SET max_rate = _rebuild_impl.max_rate,
                                     accept_data_loss = coalesce(_rebuild_impl.accept_data_loss, false)
     WHERE x.version_id = vrow;
    IF since IS NOT NULL THEN
        PERFORM streamview_internal._start_from_time(v, live, vrow, since);
    END IF;
    IF NOT coalesce(accept_data_loss, false) THEN
        PERFORM streamview_internal._check_replay_complete(v, vrow);
    END IF;
    PERFORM streamview_internal._notify_launcher();
    RETURN ver;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._check_replay_complete(v streamview.views, vrow int, what text DEFAULT 'rebuild')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    missing text;
BEGIN
    SELECT streamview_internal._archive_missing_text(v.source_id, array_agg(l.partition ORDER BY l.partition),
                                                     array_agg(o.next_offset ORDER BY l.partition),
                                                     array_agg(l.log_start ORDER BY l.partition))
      INTO missing
      FROM streamview.log_starts l
      JOIN streamview.sources s ON s.source_id = l.source_id
      LEFT JOIN streamview.offsets o ON o.version_id = vrow AND o.partition = l.partition
     WHERE l.source_id = v.source_id
       AND streamview_internal._reads_partition(s.partitions, l.partition);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'cannot % stream view "%": its replay would miss messages that Kafka no longer keeps', what, v.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Neither the topic''s log nor the source''s archive has %s.', missing),
                  HINT = 'Keep an archive of the source (alter_source(archive => ...)) or load the missing messages '
                         'into streamview.archive (docs/archive.md); or pass accept_data_loss => true to replay what is left.';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._start_from_time(v streamview.views, live streamview.versions,
                                            vrow int, since timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cand      streamview.versions;
    cut       timestamptz;
    reach     timestamptz;
    cols_live text;
    cols_new  text;
BEGIN
    SELECT * INTO cand FROM streamview.versions x WHERE x.version_id = vrow;
    IF cand.window_time_zone IS NULL THEN
        cut := streamview.tumble(since, cand.window_slide);
    ELSE
        cut := streamview.tumble(since, cand.window_slide, cand.window_time_zone, cand.window_origin);
    END IF;
    -- how far the windows that start before the cut reach, in either version
    SELECT max(CASE WHEN (x.v).window_time_zone IS NULL THEN cut + (x.v).window_size
                    ELSE (SELECT max(w.window_end)
                            FROM streamview_internal._window_spans(cut - interval '1 microsecond', (x.v).window_size,
                                                          (x.v).window_slide, (x.v).window_time_zone,
                                                          (x.v).window_origin) w) END)
      INTO reach FROM (VALUES (live), (cand)) AS x(v);
    IF live.watermark IS NULL OR reach + v.allowed_lateness > live.watermark THEN
        RAISE EXCEPTION 'cannot rebuild stream view "%" from %: its windows there are not final yet', v.name, since
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Windows before the cut are carried over from the live version, so they must be final: '
                                  'the end of every window that starts before the cut, plus the allowed lateness, must not pass the watermark (%s).',
                                  coalesce(live.watermark::text, 'none yet')),
                  HINT = 'Choose an earlier start_from, or start_from => ''earliest''.';
    END IF;
    SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attname)
      INTO cols_live FROM pg_attribute a WHERE a.attrelid = live.table_name AND a.attnum > 0 AND NOT a.attisdropped;
    SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attname)
      INTO cols_new FROM pg_attribute a WHERE a.attrelid = cand.table_name AND a.attnum > 0 AND NOT a.attisdropped;
    IF cols_live IS DISTINCT FROM cols_new THEN
        RAISE EXCEPTION 'cannot rebuild stream view "%" from a point in time with other columns', v.name
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Windows before the cut are carried over from the live version, which has other columns.',
                  HINT = 'Use start_from => ''earliest''.';
    END IF;
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols_new
      FROM pg_attribute a WHERE a.attrelid = cand.table_name AND a.attnum > 0 AND NOT a.attisdropped;
    PERFORM streamview_internal._run_as(v.owner,
        format('WITH c AS (INSERT INTO %s (%s) SELECT %s FROM %s WHERE window_start < %L RETURNING 1) '
               'SELECT to_jsonb(count(*)) FROM c', cand.table_name, cols_new, cols_new, live.table_name, cut));
    INSERT INTO streamview.offsets (version_id, partition, next_offset, max_event_time)
    SELECT vrow, m.partition, m.next_offset, m.max_event_time
      FROM (SELECT DISTINCT ON (om.partition) om.partition, om.next_offset, om.max_event_time
              FROM streamview.offset_marks om
             WHERE om.source_id = v.source_id AND om.max_event_time < cut
             ORDER BY om.partition, om.max_event_time DESC, om.next_offset DESC) m;
    UPDATE streamview.versions x SET start_from = cut WHERE x.version_id = vrow;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._wait_for_impl(caller regrole, view_name text, version int,
                                          timeout interval DEFAULT '10 minutes')
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v        streamview.views;
    r        streamview.versions;
    p        record;
    deadline timestamptz := clock_timestamp() + timeout;
    noticed  timestamptz := clock_timestamp();
    polled   timestamptz := clock_timestamp();
    shown    bigint := -1;
BEGIN
    SELECT * INTO v FROM streamview.views w WHERE w.name = view_name;
    IF v.view_id IS NULL THEN
        RAISE EXCEPTION 'stream view "%" does not exist', view_name
            USING ERRCODE = 'undefined_object';
    END IF;
    r := streamview_internal._get_version(v, version);
    PERFORM streamview_internal._require(timeout, 'timeout');
    IF timeout <= interval '0' THEN
        RAISE EXCEPTION 'timeout must be positive'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given was %s.', timeout),
                  HINT = 'Pass how long to wait, such as ''10 minutes''.';
    END IF;
    IF r.created_at = now() AND r.state = 'replaying' THEN
        RAISE EXCEPTION 'version % of stream view "%" was created in this transaction', version, view_name
            USING ERRCODE = 'invalid_transaction_state',
                  DETAIL = 'Its replay starts only once the transaction that called rebuild() commits.',
                  HINT = 'Commit first, then call streamview.wait_for().';
    END IF;
    LOOP
        SELECT * INTO r FROM streamview.versions x WHERE x.version_id = r.version_id;
        -- Caught up, and taken over by the source worker: at the live
        -- version's offsets, as validate() will want.
        IF r.state = 'live' OR (r.state = 'caught_up' AND streamview_internal._partitions_behind(
               r.version_id, (streamview_internal._live_version(r.view_id)).version_id, exact => true) = 0) THEN
            RETURN r.state;
        ELSIF r.state = 'failed' THEN
            RAISE EXCEPTION 'rebuild of stream view "%" version % failed', view_name, version
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = coalesce(r.error, 'no error was recorded'),
                      HINT = 'Fix the cause, drop the version with streamview.drop_version() and rebuild again.';
        ELSIF r.state = 'retired' THEN
            RAISE EXCEPTION 'version % of stream view "%" was dropped', version, view_name
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'timed out after % waiting for stream view "%" version % to catch up',
                            timeout, view_name, version
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'The replay goes on; see streamview.rebuilds, and call wait_for() again.';
        END IF;
        -- Progress every 2 seconds while it moves, every 30 seconds while it does not.
        IF clock_timestamp() - polled >= interval '2 seconds' THEN
            polled := clock_timestamp();
            SELECT * INTO p FROM streamview.rebuilds b
             WHERE b.view_name = _wait_for_impl.view_name AND b.version = _wait_for_impl.version;
            IF coalesce(p.done, 0) <> shown OR clock_timestamp() - noticed >= interval '30 seconds' THEN
                shown := coalesce(p.done, 0);
                noticed := clock_timestamp();
                RAISE NOTICE 'stream view "%" version %: % of % events (% %%), % events/s, eta %',
                    view_name, version, coalesce(p.done, 0), coalesce(p.total::text, '?'),
                    coalesce(p.percent::text, '?'), coalesce(p.rate::text, '?'), coalesce(p.eta::text, '?');
            END IF;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION streamview.add_check(view_name text, name text, predicate text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.add_check(text, text, text) IS
'registers an invariant (a boolean expression over the view''s columns) that validate() checks; returns how many rows of the live version violate it now';

CREATE OR REPLACE FUNCTION streamview_internal._add_check_impl(caller regrole, view_name text, name text, predicate text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v    streamview.views;
    live streamview.versions;
    violations bigint;
BEGIN
    v := streamview_internal._lock_view(caller, view_name);
    PERFORM streamview_internal._require(name, 'name');
    PERFORM streamview_internal._require(predicate, 'predicate');
    IF EXISTS (SELECT 1 FROM streamview.checks c WHERE c.view_id = v.view_id AND c.name = _add_check_impl.name) THEN
        RAISE EXCEPTION 'check "%" of stream view "%" already exists', name, view_name
            USING ERRCODE = 'duplicate_object';
    END IF;
    live := streamview_internal._live_version(v.view_id);
    BEGIN
        violations := streamview_internal._count_as(v.owner, format('SELECT count(*) FROM (%s) AS t WHERE NOT (%s)',
                                                           live.view_sql, predicate));
    EXCEPTION WHEN syntax_error OR undefined_column OR undefined_function OR datatype_mismatch THEN
        RAISE EXCEPTION 'invalid check "%" for stream view "%": %', name, view_name, SQLERRM
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A check is a boolean expression over the view''s columns, such as revenue >= 0.';
    END;
    INSERT INTO streamview.checks (view_id, name, predicate) VALUES (v.view_id, name, predicate);
    RETURN violations;   -- rows of the live version that violate it now
END $$;

CREATE OR REPLACE FUNCTION streamview.drop_check(view_name text, name text)
RETURNS text
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.drop_check(text, text) IS
'removes an invariant registered with add_check(); returns its predicate';

CREATE OR REPLACE FUNCTION streamview_internal._drop_check_impl(caller regrole, view_name text, name text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v       streamview.views;
    dropped text;
BEGIN
    v := streamview_internal._lock_view(caller, view_name);
    DELETE FROM streamview.checks c WHERE c.view_id = v.view_id AND c.name = _drop_check_impl.name
    RETURNING c.predicate INTO dropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'check "%" of stream view "%" does not exist', name, view_name
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN dropped;   -- its predicate, to add it back
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._tdigests_differ(nsp name, a text, b text)
RETURNS bool
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    differ bool;
BEGIN
    IF a IS NULL OR b IS NULL THEN
        RETURN (a IS NULL) <> (b IS NULL);
    END IF;
    EXECUTE format($q$
        WITH d AS (SELECT $1::%1$I.tdigest AS a, $2::%1$I.tdigest AS b,
                          '{0.01,0.05,0.1,0.25,0.5,0.75,0.9,0.95,0.99}'::float8[] AS qs,
                          3.0 / (regexp_match($1, 'compression (\d+)'))[1]::float8 AS t),
             p AS (SELECT d.a, d.b,
                          (SELECT %1$I.tdigest_percentile(x, d.qs) FROM (VALUES (d.a)) AS v(x)) AS pa,
                          (SELECT %1$I.tdigest_percentile(x, d.qs) FROM (VALUES (d.b)) AS v(x)) AS pb,
                          (SELECT %1$I.tdigest_percentile(x, array(SELECT greatest(q - d.t, 0) FROM unnest(d.qs) AS q))
                             FROM (VALUES (d.a)) AS v(x)) AS la,
                          (SELECT %1$I.tdigest_percentile(x, array(SELECT least(q + d.t, 1) FROM unnest(d.qs) AS q))
                             FROM (VALUES (d.a)) AS v(x)) AS ha,
                          (SELECT %1$I.tdigest_percentile(x, array(SELECT greatest(q - d.t, 0) FROM unnest(d.qs) AS q))
                             FROM (VALUES (d.b)) AS v(x)) AS lb,
                          (SELECT %1$I.tdigest_percentile(x, array(SELECT least(q + d.t, 1) FROM unnest(d.qs) AS q))
                             FROM (VALUES (d.b)) AS v(x)) AS hb
                     FROM d)
        SELECT %1$I.tdigest_count(p.a) <> %1$I.tdigest_count(p.b)
               OR EXISTS (SELECT FROM unnest(p.pa, p.pb, p.la, p.ha, p.lb, p.hb) AS u(pa, pb, la, ha, lb, hb)
                           WHERE u.pb NOT BETWEEN u.la AND u.ha OR u.pa NOT BETWEEN u.lb AND u.hb)
          FROM p $q$, nsp) INTO differ USING a, b;
    RETURN differ;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._compare(v streamview.views, a streamview.versions, b streamview.versions,
                                    OUT comparable bool, OUT only_a bigint, OUT only_b bigint,
                                    OUT differ bigint, OUT samples text, OUT totals text,
                                    OUT totals_equal bool, OUT horizon timestamptz, OUT note text,
                                    OUT compared text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keys_a text[];
    keys_b text[];
    cols   text[];
    sums   text[];
    jn     text;
    q      text;
    r      jsonb;
    b_owner regrole := v.owner;   -- the versions' tables belong to the view's owner
    kept_from timestamptz;
    states text[];
    digests text[];
    digest_schemas text[];
BEGIN
    SELECT array_agg(o->>'name' ORDER BY o->>'name') INTO keys_a
      FROM jsonb_array_elements(a.definition->'outputs') o WHERE o->>'kind' = 'key';
    SELECT array_agg(o->>'name' ORDER BY o->>'name') INTO keys_b
      FROM jsonb_array_elements(b.definition->'outputs') o WHERE o->>'kind' = 'key';
    horizon := least(a.watermark, b.watermark) - v.allowed_lateness;
    -- With a retention, windows the housekeeping may already have deleted
    -- from either version are not compared (the furthest watermark says
    -- which).
    kept_from := coalesce(greatest(a.watermark, b.watermark) - v.retention, '-infinity');
    comparable := coalesce(keys_a, '{}') = coalesce(keys_b, '{}');
    IF NOT comparable THEN
        note := format('the versions group by different keys (%s and %s)',
                       coalesce(array_to_string(keys_a, ', '), 'none'), coalesce(array_to_string(keys_b, ', '), 'none'));
        RETURN;
    END IF;
    IF horizon IS NULL THEN
        only_a := 0; only_b := 0; differ := 0; totals_equal := true;
        note := 'no window is final in both versions yet';
        RETURN;
    END IF;
    SELECT array_agg(oa->>'name' ORDER BY oa->>'name') INTO cols
      FROM jsonb_array_elements(a.definition->'outputs') oa
      JOIN jsonb_array_elements(b.definition->'outputs') ob ON ob->>'name' = oa->>'name'
     WHERE oa->>'kind' <> 'key';
    -- The sketches' states (hll, tdigest) have no equality the comparison,
    -- run with search_path = pg_catalog, can name: hll states, and a state
    -- compared with a column of another kind, are compared by their text,
    -- which is their bytes.
    SELECT array_agg(oa->>'name' ORDER BY oa->>'name') INTO states
      FROM jsonb_array_elements(a.definition->'outputs') oa
      JOIN jsonb_array_elements(b.definition->'outputs') ob ON ob->>'name' = oa->>'name'
     WHERE (oa->>'kind' IN ('hll', 'tdigest') OR ob->>'kind' IN ('hll', 'tdigest'))
       AND NOT (oa->>'kind' = 'tdigest' AND ob->>'kind' = 'tdigest');
    -- A t-digest depends on the order in which values were merged, so batch
    -- boundaries change it (docs/architecture.md): tdigest columns are
    -- compared by _tdigests_differ, in the schema of the column's type.
    SELECT array_agg(oa->>'name' ORDER BY oa->>'name'), array_agg(n.nspname ORDER BY oa->>'name')
      INTO digests, digest_schemas
      FROM jsonb_array_elements(a.definition->'outputs') oa
      JOIN jsonb_array_elements(b.definition->'outputs') ob ON ob->>'name' = oa->>'name'
      JOIN pg_type t ON t.oid = (oa->>'type')::regtype
      JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE oa->>'kind' = 'tdigest' AND ob->>'kind' = 'tdigest';
    IF digests IS NOT NULL THEN
        compared := format('tdigest columns %s compared by count and percentiles, within 3/compression of rank',
                           array_to_string(digests, ', '));
    END IF;
    SELECT array_agg(oa->>'name' ORDER BY oa->>'name') INTO sums
      FROM jsonb_array_elements(a.definition->'outputs') oa
      JOIN jsonb_array_elements(b.definition->'outputs') ob ON ob->>'name' = oa->>'name'
     WHERE oa->>'kind' IN ('count', 'sum') AND ob->>'kind' IN ('count', 'sum');
    -- Rows match on (window_start, keys), NULL keys included: a jsonb array
    -- of them is a key that FULL JOIN can hash.
    SELECT 'jsonb_build_array(' || string_agg(format('s.%I', k), ', ') || ')'
      INTO jn FROM unnest(array['window_start'] || coalesce(keys_a, '{}')) k;
    q := format($q$
        WITH x AS (SELECT %4$s AS sv_key, s AS r FROM (%1$s) s WHERE s.window_end <= %3$L AND s.window_end >= %9$L),
             y AS (SELECT %4$s AS sv_key, s AS r FROM (%2$s) s WHERE s.window_end <= %3$L AND s.window_end >= %9$L),
             j AS (SELECT x.r AS x, y.r AS y FROM x FULL JOIN y ON x.sv_key = y.sv_key)
        SELECT count(*) FILTER (WHERE y IS NULL) AS only_a,
               count(*) FILTER (WHERE x IS NULL) AS only_b,
               count(*) FILTER (WHERE x IS NOT NULL AND y IS NOT NULL AND %5$s) AS differ,
               (SELECT string_agg(d, '; ') FROM (
                    SELECT CASE WHEN y IS NULL THEN 'only in version %6$s: ' || (x)::text
                                WHEN x IS NULL THEN 'only in version %7$s: ' || (y)::text
                                ELSE 'differs: ' || (x)::text || ' vs ' || (y)::text END AS d
                      FROM j WHERE y IS NULL OR x IS NULL OR %5$s LIMIT 5) s) AS samples,
               %8$s AS totals
          FROM j $q$,
        a.view_sql, b.view_sql, horizon, jn,
        coalesce((SELECT '(' || string_agg(d, ' OR ') || ')' FROM (
                    SELECT format('(x).%1$I IS DISTINCT FROM (y).%1$I', c) AS d FROM unnest(cols) c
                     WHERE c <> ALL (coalesce(states, '{}')) AND c <> ALL (coalesce(digests, '{}'))
                    UNION ALL
                    SELECT format('(x).%1$I::text IS DISTINCT FROM (y).%1$I::text', c) FROM unnest(states) c
                    UNION ALL
                    SELECT format('streamview_internal._tdigests_differ(%2$L, (x).%1$I::text, (y).%1$I::text)', c, nsp)
                      FROM unnest(digests, digest_schemas) AS g(c, nsp)
                    ) e), 'false'),
        a.version, b.version,
        coalesce((SELECT 'concat_ws(''; '', ' || string_agg(
                      format('%1$L || '': '' || coalesce(sum((x).%1$I), 0) || '' vs '' || coalesce(sum((y).%1$I), 0)', c), ', ')
                      || ')' FROM unnest(sums) c), ''''''),
        kept_from
    );
    r := streamview_internal._run_as(b_owner, format('SELECT to_jsonb(z) FROM (%s) AS z', q));
    only_a := (r->>'only_a')::bigint; only_b := (r->>'only_b')::bigint; differ := (r->>'differ')::bigint;
    samples := r->>'samples'; totals := nullif(r->>'totals', '');
    totals_equal := NOT EXISTS (
        SELECT 1 FROM unnest(string_to_array(coalesce(totals, ''), '; ')) t
         WHERE t <> '' AND split_part(split_part(t, ': ', 2), ' vs ', 1) <> split_part(t, ' vs ', 2));
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._validate_impl(caller regrole, view_name text, version int,
                                          expect_identical bool DEFAULT false)
RETURNS TABLE ("check" text, passed bool, detail text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v       streamview.views;
    cand    streamview.versions;
    live    streamview.versions;
    run_id  bigint := nextval('streamview.validation_runs');
    n       bigint;
    m       bigint;
    cmp     record;
    chk     record;
    ran     text[] := '{}';
    oks     bool[] := '{}';
    details text[] := '{}';
BEGIN
    v := streamview_internal._lock_view(caller, view_name, lock => false);
    cand := streamview_internal._get_version(v, version);
    live := streamview_internal._live_version(v.view_id);

    -- 1. caught up to the same offsets as the live version
    n := streamview_internal._partitions_behind(cand.version_id, live.version_id, exact => true);
    SELECT count(DISTINCT o.partition) INTO m
      FROM streamview.offsets o, streamview.sources s
     WHERE o.version_id IN (cand.version_id, live.version_id) AND s.source_id = v.source_id
       AND streamview_internal._reads_partition(s.partitions, o.partition);
    "check" := 'caught_up';
    passed := cand.state IN ('caught_up', 'live') AND n = 0;
    detail := CASE WHEN cand.state NOT IN ('caught_up', 'live')
                   THEN format('version %s is %s', cand.version, cand.state)
                   WHEN n = 0 THEN format('same offsets as live version %s in %s partitions', live.version, m)
                   ELSE format('%s of %s partitions are at other offsets than live version %s', n, m, live.version) END;
    RETURN NEXT;
    ran := ran || "check"; oks := oks || passed; details := details || detail;

    -- 2. the per-partition ledger balances
    SELECT count(*) FILTER (WHERE o.consumed <> o.applied + o.duplicates + o.too_late + o.dead_lettered),
           sum(o.consumed)
      INTO n, m FROM streamview.offsets o WHERE o.version_id = cand.version_id;
    "check" := 'ledger';
    passed := n = 0;
    detail := format('consumed = applied + duplicates + too_late + dead_lettered in every partition (%s consumed)', coalesce(m, 0));
    IF n > 0 THEN
        detail := format('%s partitions do not balance', n);
    END IF;
    RETURN NEXT;
    ran := ran || "check"; oks := oks || passed; details := details || detail;

    -- 3. differences from the live version over windows final in both
    IF cand.version_id <> live.version_id THEN
        SELECT * INTO cmp FROM streamview_internal._compare(v, live, cand);
        "check" := 'differences';
        IF NOT cmp.comparable THEN
            passed := NOT expect_identical;
            detail := 'not compared: ' || cmp.note;
        ELSIF cmp.note IS NOT NULL THEN
            passed := NOT expect_identical;
            detail := cmp.note;
        ELSE
            passed := NOT expect_identical OR (cmp.only_a + cmp.only_b + cmp.differ = 0 AND cmp.totals_equal);
            detail := format('windows ending by %s: %s rows only in live version %s, %s only in version %s, %s differ',
                             cmp.horizon, cmp.only_a, live.version, cmp.only_b, cand.version, cmp.differ)
                      || coalesce('; totals ' || cmp.totals, '')
                      || coalesce('; ' || cmp.compared, '')
                      || coalesce('; e.g. ' || cmp.samples, '');
        END IF;
        RETURN NEXT;
        ran := ran || "check"; oks := oks || passed; details := details || detail;
    END IF;

    -- 4. user invariants, evaluated as the view's owner
    FOR chk IN SELECT c.name, c.predicate FROM streamview.checks c WHERE c.view_id = v.view_id ORDER BY c.name LOOP
        n := streamview_internal._count_as(v.owner, format('SELECT count(*) FROM (%s) AS t WHERE NOT (%s)',
                                                  cand.view_sql, chk.predicate));
        "check" := 'check ' || chk.name;
        passed := n = 0;
        detail := format('%s rows violate %s', n, chk.predicate);
        RETURN NEXT;
        ran := ran || "check"; oks := oks || passed; details := details || detail;
    END LOOP;

    -- Record this run: one row per check, as returned.
    INSERT INTO streamview.validations (view_name, version, run, "check", passed, detail, validated_by)
    SELECT v.name, cand.version, run_id, r.c, r.p, r.d, caller::name
      FROM unnest(ran, oks, details) AS r(c, p, d);
    UPDATE streamview.versions x SET validated_at = now(), validated_by = caller::name
     WHERE x.version_id = cand.version_id;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._do_swap(caller regrole, v streamview.views, target streamview.versions,
                                    forced bool, is_rollback bool)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    live   streamview.versions;
    failed bigint;
    acl    aclitem[];
    g      record;
    rel    regclass;
    note   text;
    vname  text := format('%I.%I', v.schema_name, v.name);
BEGIN
    IF target.state = 'live' THEN
        RAISE EXCEPTION 'version % of stream view "%" is already live', target.version, v.name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    ELSIF target.state = 'replaying' THEN
        RAISE EXCEPTION 'version % of stream view "%" is still replaying', target.version, v.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Wait for it with streamview.wait_for(), then validate it.';
    ELSIF target.state = 'failed' THEN
        RAISE EXCEPTION 'version % of stream view "%" has failed', target.version, v.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = coalesce(target.error, ''),
                  HINT = 'Drop it with streamview.drop_version() and rebuild.';
    ELSIF target.state = 'retired' THEN
        RAISE EXCEPTION 'version % of stream view "%" was dropped', target.version, v.name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF NOT forced THEN
        SELECT count(*) FILTER (WHERE NOT x.passed) INTO failed
          FROM streamview.validations x
         WHERE x.view_name = v.name AND x.version = target.version
           AND x.run = (SELECT max(y.run) FROM streamview.validations y
                         WHERE y.view_name = v.name AND y.version = target.version);
        IF failed IS NULL OR failed > 0 THEN
            RAISE EXCEPTION 'version % of stream view "%" has not passed validation', target.version, v.name
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = CASE WHEN failed IS NULL THEN 'It was never validated.'
                                    ELSE format('%s checks of its latest validation failed.', failed) END,
                      HINT = format('Run streamview.validate(%L, %s), or pass force => true.', v.name, target.version);
        END IF;
    END IF;

    -- Readers see the old rows or the new rows: the view's definition changes
    -- under an exclusive lock, in this transaction.  It is the view that
    -- create_view made (by OID), whatever now has its name.
    PERFORM streamview_internal._check_may_create(v, 'A swap');
    rel := streamview_internal._view_relation(v);
    note := obj_description(rel, 'pg_class');
    IF rel IS NULL THEN
        -- dropped by hand: made again, for the view's owner, where it was
        IF to_regclass(vname) IS NOT NULL THEN
            RAISE EXCEPTION 'relation % is not the view of stream view "%"', vname, v.name
                USING ERRCODE = 'duplicate_table',
                      DETAIL = 'The view that create_view made was dropped, and another relation has its name.',
                      HINT = format('Drop or rename %s, or drop the stream view with streamview.drop_view().', vname);
        END IF;
        PERFORM streamview_internal._exclusive(format('CREATE VIEW %s AS %s', vname, target.view_sql),
                                      format('stream view "%s"', v.name));
        EXECUTE format('ALTER VIEW %s OWNER TO %s', vname, v.owner);
        rel := vname::regclass;
    ELSE
        vname := rel::text;
        SELECT c.relacl INTO acl FROM pg_class c WHERE c.oid = rel;
        BEGIN
            PERFORM streamview_internal._exclusive(format('CREATE OR REPLACE VIEW %s AS %s', vname, target.view_sql),
                                          format('stream view "%s"', v.name));
        EXCEPTION WHEN invalid_table_definition OR datatype_mismatch OR feature_not_supported THEN
            -- The column list changed: replace the view (grants are carried over).
            BEGIN
                PERFORM streamview_internal._exclusive(format('DROP VIEW %s', vname), format('stream view "%s"', v.name));
            EXCEPTION WHEN dependent_objects_still_exist THEN
                RAISE EXCEPTION 'cannot swap stream view "%" to version %: other objects depend on its columns',
                                v.name, target.version
                    USING ERRCODE = 'dependent_objects_still_exist',
                          HINT = 'The new version has other columns; drop or change the dependent views first.';
            END;
            EXECUTE format('CREATE VIEW %s AS %s', vname, target.view_sql);
            EXECUTE format('ALTER VIEW %s OWNER TO %s', vname, v.owner);
            FOR g IN SELECT x.grantee, x.privilege_type, x.is_grantable FROM aclexplode(acl) x
                      WHERE x.grantee <> v.owner::oid LOOP
                EXECUTE format('GRANT %s ON %s TO %s%s', g.privilege_type, vname,
                               CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END,
                               CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
            END LOOP;
            rel := vname::regclass;
        END;
    END IF;
    UPDATE streamview.views w SET relid = rel WHERE w.view_id = v.view_id;
    -- A comment the DBA wrote stays; the extension's own names the version.
    IF note IS NULL OR note ~ '^stream view (over source .* \(pg_streamview\)|\(pg_streamview\), version \d+)$' THEN
        note := format('stream view (pg_streamview), version %s', target.version);
    END IF;
    EXECUTE format('COMMENT ON VIEW %s IS %L', vname, note);

    live := streamview_internal._live_version(v.view_id);
    PERFORM streamview_internal._set_state(live.version_id, '{live}', 'caught_up');
    PERFORM streamview_internal._set_state(target.version_id, '{caught_up}', 'live', by => caller::name);
    INSERT INTO streamview.swaps (view_name, from_version, to_version, forced, is_rollback, swapped_by)
    VALUES (v.name, live.version, target.version, forced, is_rollback, caller::name);
    PERFORM streamview_internal._notify_launcher();
END $$;

CREATE OR REPLACE FUNCTION streamview.swap(view_name text, version int, force bool DEFAULT false)
RETURNS int
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.swap(text, int, bool) IS
'makes a validated version the one the view reads, atomically; the old version stays maintained; returns the old version';

CREATE OR REPLACE FUNCTION streamview_internal._swap_impl(caller regrole, view_name text, version int, force bool DEFAULT false)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v    streamview.views;
    prev int;
BEGIN
    v := streamview_internal._lock_view(caller, view_name);
    prev := (streamview_internal._live_version(v.view_id)).version;
    PERFORM streamview_internal._do_swap(caller, v, streamview_internal._get_version(v, version), force, false);
    RETURN prev;   -- the version that was live: what rollback() goes back to
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._rollback_impl(caller regrole, view_name text)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v    streamview.views;
    prev int;
BEGIN
    v := streamview_internal._lock_view(caller, view_name);
    SELECT s.from_version INTO prev FROM streamview.swaps s
     WHERE s.view_name = v.name ORDER BY s.swap_id DESC LIMIT 1;
    IF prev IS NULL THEN
        RAISE EXCEPTION 'stream view "%" has no previous version to roll back to', view_name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'It has never been swapped.';
    END IF;
    PERFORM streamview_internal._do_swap(caller, v, streamview_internal._get_version(v, prev), true, true);
    RETURN prev;
END $$;

CREATE OR REPLACE FUNCTION streamview.drop_version(view_name text, version int)
RETURNS text
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.drop_version(text, int) IS
'retires a version that is not live: stops maintaining it and drops its table; its history is kept; returns the table dropped';

CREATE OR REPLACE FUNCTION streamview_internal._drop_version_impl(caller regrole, view_name text, version int)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v     streamview.views;
    r     streamview.versions;
    dropped_table text;
BEGIN
    v := streamview_internal._lock_view(caller, view_name);
    r := streamview_internal._get_version(v, version);
    dropped_table := r.table_name::text;
    IF r.state = 'live' THEN
        RAISE EXCEPTION 'cannot drop version % of stream view "%" because it is live', version, view_name
            USING ERRCODE = 'object_in_use',
                  HINT = 'Swap another version in first with streamview.swap() or streamview.rollback(), or drop the whole view with streamview.drop_view().';
    ELSIF r.state = 'retired' THEN
        RAISE EXCEPTION 'version % of stream view "%" was already dropped', version, view_name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF r.table_name IS NOT NULL THEN
        PERFORM streamview_internal._exclusive(format('DROP TABLE IF EXISTS %s', r.table_name),
                                      format('table %s of stream view "%s"', r.table_name, v.name));
    END IF;
    PERFORM streamview_internal._set_state(r.version_id, '{replaying,caught_up,failed}', 'retired', by => caller::name);
    UPDATE streamview.versions x SET table_name = NULL WHERE x.version_id = r.version_id;
    DELETE FROM streamview.offsets o WHERE o.version_id = r.version_id;
    DELETE FROM streamview.seen_ids s WHERE s.version_id = r.version_id;
    DELETE FROM streamview.version_stats st WHERE st.version_id = r.version_id;
    PERFORM streamview_internal._notify_launcher();
    RETURN dropped_table;   -- the table dropped with it
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._snapshot_table(snapshot_id bigint)
RETURNS regclass
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ SELECT to_regclass(format('streamview_internal.%I', 'snapshot_' || snapshot_id)) $$;

CREATE OR REPLACE FUNCTION streamview_internal._get_snapshot(caller regrole, snapshot_id bigint)
RETURNS streamview.snapshots
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s streamview.snapshots;
    v streamview.views;
BEGIN
    PERFORM streamview_internal._require(snapshot_id, 'snapshot_id');
    SELECT * INTO s FROM streamview.snapshots x WHERE x.snapshot_id = _get_snapshot.snapshot_id;
    IF s.snapshot_id IS NULL THEN
        RAISE EXCEPTION 'snapshot % does not exist', snapshot_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT snapshot_id, view_name, version, taken_at FROM streamview.snapshots.';
    END IF;
    SELECT * INTO v FROM streamview.views w WHERE w.view_id = s.view_id;
    PERFORM streamview_internal._check_owner(caller, v.owner, 'stream view', v.name);
    RETURN s;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._snapshot_checksum(snapshot_id bigint)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET extra_float_digits = 1
SET bytea_output = 'hex'
AS $$
DECLARE
    s        streamview.snapshots;
    tbl      regclass := streamview_internal._snapshot_table(snapshot_id);
    rows_sum bytea;
    ids_sum  bytea;
BEGIN
    SELECT * INTO s FROM streamview.snapshots x WHERE x.snapshot_id = _snapshot_checksum.snapshot_id;
    IF s.snapshot_id IS NULL OR tbl IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT sha256(coalesce(string_agg(h, ''''::bytea ORDER BY h), ''''::bytea)) '
                   'FROM (SELECT sha256(convert_to(t::text, ''UTF8'')) AS h FROM ONLY %s t) r', tbl)
       INTO rows_sum;
    SELECT sha256(coalesce(string_agg(sha256(convert_to(i::text, 'UTF8')), ''::bytea
                                      ORDER BY i.partition, i.last_offset), ''::bytea))
      INTO ids_sum FROM streamview.snapshot_seen_ids i WHERE i.snapshot_id = s.snapshot_id;
    RETURN encode(sha256(convert_to(jsonb_build_object(
               'snapshot_id', s.snapshot_id, 'view_name', s.view_name, 'version', s.version,
               'definition_hash', s.definition_hash, 'extension_version', s.extension_version,
               'offsets', s.offsets, 'ledger', s.ledger, 'watermark', s.watermark,
               'start_from', s.start_from, 'rows', s.rows, 'seen_ids', s.seen_ids,
               'taken_at', s.taken_at, 'taken_by', s.taken_by)::text, 'UTF8')
           || rows_sum || ids_sum), 'hex');
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._drop_snapshot(snapshot_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tbl  regclass := streamview_internal._snapshot_table(snapshot_id);
    n    bigint;
BEGIN
    IF tbl IS NOT NULL THEN
        EXECUTE format('DROP TABLE %s', tbl);
    END IF;
    DELETE FROM streamview.snapshots x WHERE x.snapshot_id = _drop_snapshot.snapshot_id
    RETURNING x.rows INTO n;
    RETURN n;
END $$;

CREATE OR REPLACE FUNCTION streamview.snapshot(view_name text, version int DEFAULT NULL, keep int DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.snapshot(text, int, int) IS
'copies a version''s rows, offsets and event-time history at one consistent point; keeps the newest `keep` snapshots of the view; returns the snapshot''s id';

CREATE OR REPLACE FUNCTION streamview_internal._snapshot_impl(caller regrole, view_name text, version int DEFAULT NULL,
                                                   keep int DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'   -- the ledger's event times read in UTC
AS $$
DECLARE
    v    streamview.views;
    r    streamview.versions;
    sid  bigint;
    tbl  text;
    cols text;
BEGIN
    PERFORM streamview_internal._require(view_name, 'view_name');
    v := streamview_internal._lock_view(caller, view_name, lock => false);
    -- as the source worker does with each batch: drop_view waits, no batch does
    PERFORM 1 FROM streamview.views w WHERE w.view_id = v.view_id FOR KEY SHARE;
    IF keep IS NOT NULL AND keep < 1 THEN
        RAISE EXCEPTION 'keep must be at least 1'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The value given was %s.', keep),
                  HINT = 'Pass how many of the view''s snapshots to keep, the new one included, or NULL to keep them all.';
    END IF;
    IF version IS NULL THEN
        r := streamview_internal._live_version(v.view_id);
    ELSE
        r := streamview_internal._get_version(v, version);
    END IF;
    IF r.state NOT IN ('live', 'caught_up', 'replaying') OR r.table_name IS NULL THEN
        RAISE EXCEPTION 'cannot snapshot version % of stream view "%" because it is %', r.version, view_name, r.state
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Snapshot the live version (version => NULL), or one that is replaying or caught up.';
    END IF;
    -- drop_version waits for the copy; the table must be the plain table
    -- the version was created with
    EXECUTE format('LOCK TABLE ONLY %s IN ACCESS SHARE MODE', r.table_name);
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = r.table_name) <> 'r' THEN
        RAISE EXCEPTION 'table % of stream view "%" version % is not a plain table', r.table_name, view_name, r.version
            USING ERRCODE = 'wrong_object_type';
    END IF;

    sid := nextval(pg_get_serial_sequence('streamview.snapshots', 'snapshot_id'));
    tbl := format('streamview_internal.%I', 'snapshot_' || sid);
    EXECUTE format('CREATE TABLE %s (LIKE %s INCLUDING COMPRESSION)', tbl, r.table_name);
    PERFORM streamview_internal._depend_on_extension(tbl::regclass);
    EXECUTE format('COMMENT ON TABLE %s IS %L', tbl,
                   format('rows of snapshot %s: stream view %s, version %s (see streamview.snapshots)',
                          sid, v.name, r.version));
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
      FROM pg_attribute a WHERE a.attrelid = tbl::regclass AND a.attnum > 0 AND NOT a.attisdropped;

    EXECUTE format($q$
        WITH copied AS (INSERT INTO %1$s (%2$s) SELECT %2$s FROM ONLY %3$s RETURNING 1),
             ids AS (INSERT INTO streamview.snapshot_seen_ids
                         (snapshot_id, partition, last_offset, max_event_time, event_id_hashes, event_times)
                     SELECT $1, i.partition, i.last_offset, i.max_event_time, i.event_id_hashes, i.event_times
                       FROM streamview.seen_ids i WHERE i.version_id = $2
                     RETURNING 1),
             led AS (SELECT o.partition, o.next_offset,
                            jsonb_build_object('next_offset', o.next_offset, 'max_event_time', o.max_event_time,
                                               'consumed', o.consumed, 'applied', o.applied,
                                               'duplicates', o.duplicates, 'too_late', o.too_late,
                                               'dead_lettered', o.dead_lettered) AS state
                       FROM streamview.offsets o WHERE o.version_id = $2)
        INSERT INTO streamview.snapshots (snapshot_id, view_id, view_name, version, definition_hash,
                                          extension_version, offsets, ledger, watermark, start_from,
                                          rows, seen_ids, taken_by)
        SELECT $1, x.view_id, x.view_name, x.version, x.definition_hash,
               (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'pg_streamview'),
               (SELECT coalesce(jsonb_object_agg(l.partition, l.next_offset), '{}') FROM led l),
               (SELECT coalesce(jsonb_object_agg(l.partition, l.state), '{}') FROM led l),
               x.watermark, x.start_from,
               (SELECT count(*) FROM copied), (SELECT count(*) FROM ids), $3
          FROM streamview.versions x WHERE x.version_id = $2 $q$, tbl, cols, r.table_name)
    USING sid, r.version_id, caller::name;
    UPDATE streamview.snapshots x SET checksum = streamview_internal._snapshot_checksum(sid)
     WHERE x.snapshot_id = sid;

    -- keep => N: the view's newest N snapshots stay, this one among them
    IF keep IS NOT NULL THEN
        PERFORM streamview_internal._drop_snapshot(x.snapshot_id)
           FROM (SELECT y.snapshot_id FROM streamview.snapshots y WHERE y.view_id = v.view_id
                  ORDER BY y.snapshot_id DESC OFFSET keep) x;
    END IF;
    RETURN sid;
END $$;

CREATE OR REPLACE FUNCTION streamview.verify_snapshot(snapshot_id bigint)
RETURNS bool
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.verify_snapshot(bigint) IS
'recomputes a snapshot''s checksum over its manifest, rows and event ids: true if it still matches';

CREATE OR REPLACE FUNCTION streamview_internal._verify_snapshot_impl(caller regrole, snapshot_id bigint)
RETURNS bool
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s streamview.snapshots := streamview_internal._get_snapshot(caller, snapshot_id);
BEGIN
    RETURN coalesce(streamview_internal._snapshot_checksum(s.snapshot_id) = s.checksum, false);
END $$;

CREATE OR REPLACE FUNCTION streamview.restore(view_name text, snapshot_id bigint, accept_data_loss bool DEFAULT false)
RETURNS int
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.restore(text, bigint, bool) IS
'starts a new version of a stream view from a snapshot: its rows and ledger, replaying from its offsets; returns the version';

CREATE OR REPLACE FUNCTION streamview_internal._restore_impl(caller regrole, view_name text, snapshot_id bigint,
                                                  accept_data_loss bool DEFAULT false)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v     streamview.views;
    s     streamview.snapshots;
    cand  streamview.versions;
    live  streamview.versions;
    tbl   regclass;
    actual text;
    ver   int;
    cols  text;
    cols_new text;
    granted  bool := false;
BEGIN
    PERFORM streamview_internal._require(view_name, 'view_name');
    v := streamview_internal._lock_view(caller, view_name);
    s := streamview_internal._get_snapshot(caller, snapshot_id);
    IF s.view_id <> v.view_id THEN
        RAISE EXCEPTION 'snapshot % is not of stream view "%"', snapshot_id, view_name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It was taken of stream view "%s".', s.view_name),
                  HINT = format('See SELECT snapshot_id, version, taken_at FROM streamview.snapshots WHERE view_name = %L.', view_name);
    END IF;
    -- drop_snapshot waits until the restore is done
    PERFORM 1 FROM streamview.snapshots x WHERE x.snapshot_id = s.snapshot_id FOR SHARE;
    tbl := streamview_internal._snapshot_table(s.snapshot_id);
    actual := streamview_internal._snapshot_checksum(s.snapshot_id);
    IF actual IS DISTINCT FROM s.checksum THEN
        RAISE EXCEPTION 'snapshot % of stream view "%" is corrupted', snapshot_id, view_name
            USING ERRCODE = 'data_corrupted',
                  DETAIL = CASE WHEN tbl IS NULL
                                THEN format('The table of its rows, streamview_internal.snapshot_%s, is gone.', s.snapshot_id)
                                ELSE format('Its manifest, rows and event ids hash to %s, not to its checksum %s.', actual, s.checksum) END,
                  HINT = 'Restore another snapshot (streamview.verify_snapshot() checks one), or rebuild from the log with streamview.rebuild(); drop this one with streamview.drop_snapshot().';
    END IF;
    live := streamview_internal._live_version(v.view_id);
    IF live.definition_hash <> s.definition_hash THEN
        RAISE EXCEPTION 'snapshot % of stream view "%" was taken with another definition', snapshot_id, view_name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('The snapshot is of version %s, definition %s; live version %s has definition %s '
                                  '(its query or allowed lateness differs).',
                                  s.version, s.definition_hash, live.version, live.definition_hash),
                  HINT = 'Restore a snapshot taken since the definition changed, or rebuild from the log with streamview.rebuild().';
    END IF;

    -- the replay's completeness is checked below, from the snapshot's offsets
    ver := streamview_internal._rebuild_impl(caller, view_name, accept_data_loss => true);
    cand := streamview_internal._get_version(v, ver);
    IF cand.definition_hash <> s.definition_hash THEN
        -- the live query compiles to another definition now (a changed source)
        RAISE EXCEPTION 'snapshot % of stream view "%" was taken with another definition', snapshot_id, view_name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('The snapshot has definition %s; the view''s query now compiles to %s.',
                                  s.definition_hash, cand.definition_hash),
                  HINT = 'Rebuild from the log with streamview.rebuild().';
    END IF;
    SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
      INTO cols FROM pg_attribute a WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped;
    SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
      INTO cols_new FROM pg_attribute a WHERE a.attrelid = cand.table_name AND a.attnum > 0 AND NOT a.attisdropped;
    IF cols IS DISTINCT FROM cols_new THEN
        RAISE EXCEPTION 'snapshot % of stream view "%" has other columns than the new version', snapshot_id, view_name
            USING ERRCODE = 'datatype_mismatch',
                  DETAIL = format('The snapshot has (%s); version %s has (%s).', cols, ver, cols_new),
                  HINT = 'Rebuild from the log with streamview.rebuild().';
    END IF;
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
      FROM pg_attribute a WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped;

    -- The rows, as the view's owner (the table is the owner's, and so are
    -- its triggers), who may read the snapshot for this statement only
    -- (unless the owner may anyway: the extension's owner, a superuser).
    IF NOT has_table_privilege(v.owner, tbl, 'SELECT') THEN
        EXECUTE format('GRANT SELECT ON %s TO %s', tbl, v.owner);
        granted := true;
    END IF;
    PERFORM streamview_internal._run_as(v.owner,
        format('WITH c AS (INSERT INTO %s (%s) SELECT %s FROM ONLY %s RETURNING 1) '
               'SELECT to_jsonb(count(*)) FROM c', cand.table_name, cols, cols, tbl));
    IF granted THEN
        EXECUTE format('REVOKE SELECT ON %s FROM %s', tbl, v.owner);
    END IF;

    INSERT INTO streamview.offsets (version_id, partition, next_offset, max_event_time, consumed,
                                    applied, duplicates, too_late, dead_lettered)
    SELECT cand.version_id, l.key::int, (l.value->>'next_offset')::bigint,
           (l.value->>'max_event_time')::timestamptz, (l.value->>'consumed')::bigint,
           (l.value->>'applied')::bigint, (l.value->>'duplicates')::bigint,
           (l.value->>'too_late')::bigint, (l.value->>'dead_lettered')::bigint
      FROM jsonb_each(s.ledger) l;
    INSERT INTO streamview.seen_ids (version_id, partition, last_offset, max_event_time,
                                     event_id_hashes, event_times)
    SELECT cand.version_id, i.partition, i.last_offset, i.max_event_time, i.event_id_hashes, i.event_times
      FROM streamview.snapshot_seen_ids i WHERE i.snapshot_id = s.snapshot_id;
    UPDATE streamview.versions x
       SET watermark = s.watermark, start_from = s.start_from, restored_from = s.snapshot_id,
           accept_data_loss = coalesce(_restore_impl.accept_data_loss, false)
     WHERE x.version_id = cand.version_id;
    IF NOT coalesce(_restore_impl.accept_data_loss, false) THEN
        PERFORM streamview_internal._check_replay_complete(v, cand.version_id,
                                                           format('restore snapshot %s of', s.snapshot_id));
    END IF;
    RETURN ver;
END $$;

CREATE OR REPLACE FUNCTION streamview.drop_snapshot(snapshot_id bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION streamview.drop_snapshot(bigint) IS
'drops a snapshot (its rows, event ids and manifest); returns how many rows it held';

CREATE OR REPLACE FUNCTION streamview_internal._drop_snapshot_impl(caller regrole, snapshot_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s streamview.snapshots := streamview_internal._get_snapshot(caller, snapshot_id);
BEGIN
    -- the manifest row locked: a restore of it waits, or has finished
    PERFORM 1 FROM streamview.snapshots x WHERE x.snapshot_id = s.snapshot_id FOR UPDATE;
    RETURN streamview_internal._drop_snapshot(s.snapshot_id);
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._archive_arg(value text)
RETURNS interval
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF lower(btrim(value)) = 'off' THEN
        RETURN NULL;
    END IF;
    RETURN streamview_internal._interval_arg(value, 'archive');
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._archive_table(source_id int)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT 'streamview_internal.archive_' || source_id $$;

CREATE OR REPLACE FUNCTION streamview_internal._archive_width(archive interval)
RETURNS bigint
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT greatest(1, least(86400, floor(extract(epoch FROM archive) / 8)))::bigint $$;

CREATE OR REPLACE FUNCTION streamview_internal._archive_tablespace()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE WHEN coalesce(current_setting('streamview.archive_tablespace', true), '') = '' THEN ''
            ELSE format(' TABLESPACE %I', current_setting('streamview.archive_tablespace')) END
$$;

CREATE OR REPLACE FUNCTION streamview_internal._archive_create(sid int)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text := streamview_internal._archive_table(sid);
BEGIN
    IF to_regclass(t) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE %s PARTITION OF streamview.archive FOR VALUES IN (%s) '
                   'PARTITION BY RANGE (archived_at)%s', t, sid, streamview_internal._archive_tablespace());
    EXECUTE format('CREATE INDEX ON %s (partition, "offset")%s', t, streamview_internal._archive_tablespace());
    EXECUTE format('CREATE TABLE %s_default PARTITION OF %s DEFAULT%s',
                   t, t, streamview_internal._archive_tablespace());
    PERFORM streamview_internal._archive_housekeeping(sid);
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._archive_drop(sid int)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_regclass(streamview_internal._archive_table(sid)) IS NOT NULL THEN
        EXECUTE format('DROP TABLE %s', streamview_internal._archive_table(sid));
    END IF;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._archive_housekeeping(sid int)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keep    interval;
    t       text := streamview_internal._archive_table(sid);
    w       bigint;
    now_s   bigint := floor(extract(epoch FROM now()))::bigint;
    cutoff  bigint;
    lo      bigint;
    hi      bigint;
    last_hi bigint;
    r       record;
    dropped int := 0;
    taken   bool;
BEGIN
    SELECT s.archive INTO keep FROM streamview.sources s WHERE s.source_id = sid;
    IF keep IS NULL OR to_regclass(t) IS NULL THEN
        RETURN 0;
    END IF;
    w := streamview_internal._archive_width(keep);
    cutoff := floor(extract(epoch FROM now() - keep))::bigint;
    FOR r IN SELECT c.oid::regclass AS rel, split_part(c.relname, '_', 3)::bigint AS lo,
                    split_part(c.relname, '_', 4)::bigint AS hi
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = t::regclass AND c.relname ~ '^archive_[0-9]+_[0-9]+_[0-9]+$'
              ORDER BY 2 LOOP
        IF r.hi <= cutoff THEN
            EXECUTE format('DROP TABLE %s', r.rel);
            dropped := dropped + 1;
        ELSE
            last_hi := greatest(last_hi, r.hi);
        END IF;
    END LOOP;
    EXECUTE format('DELETE FROM %s_default WHERE archived_at < to_timestamp(%s)', t, cutoff);
    lo := greatest(coalesce(last_hi, 0), now_s / w * w);
    WHILE lo < now_s + 2 * w LOOP
        hi := (lo / w + 1) * w;
        -- rows already in the default partition for that range stay there
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s_default WHERE archived_at >= to_timestamp(%s) '
                       'AND archived_at < to_timestamp(%s))', t, lo, hi) INTO taken;
        IF NOT taken THEN
            BEGIN
                EXECUTE format('CREATE TABLE %s_%s_%s PARTITION OF %s FOR VALUES FROM (%L) TO (%L)%s',
                               t, lo, hi, t, to_timestamp(lo), to_timestamp(hi),
                               streamview_internal._archive_tablespace());
            EXCEPTION WHEN check_violation THEN
                -- another of the source's workers committed rows for that
                -- range to the default partition meanwhile: they stay there
                NULL;
            END;
        END IF;
        lo := hi;
    END LOOP;
    RETURN dropped;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._archive_missing(sid int, parts int[], wants bigint[], starts bigint[])
RETURNS TABLE (partition int, first_offset bigint, last_offset bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i      int;
    want   bigint;
    nxt    bigint;
    r      record;
BEGIN
    FOR i IN 1 .. coalesce(array_length(parts, 1), 0) LOOP
        want := coalesce(wants[i], 0);
        CONTINUE WHEN starts[i] IS NULL OR want >= starts[i];
        nxt := want;
        -- islands of consecutive archived offsets in [want, start)
        FOR r IN SELECT min(x.o) AS lo, max(x.o) AS hi
                   FROM (SELECT a."offset" AS o, a."offset" - row_number() OVER (ORDER BY a."offset") AS g
                           FROM (SELECT DISTINCT a."offset" FROM streamview.archive a
                                  WHERE a.source_id = sid AND a.partition = parts[i]
                                    AND a."offset" >= want AND a."offset" < starts[i]) a) x
                  GROUP BY x.g ORDER BY 1 LOOP
            IF r.lo > nxt THEN
                partition := parts[i]; first_offset := nxt; last_offset := r.lo - 1;
                RETURN NEXT;
            END IF;
            nxt := r.hi + 1;
        END LOOP;
        IF nxt < starts[i] THEN
            partition := parts[i]; first_offset := nxt; last_offset := starts[i] - 1;
            RETURN NEXT;
        END IF;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION streamview_internal._archive_missing_text(sid int, parts int[], wants bigint[], starts bigint[])
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT string_agg(format('partition %s: offsets %s to %s', m.partition, m.first_offset, m.last_offset),
                  '; ' ORDER BY m.partition, m.first_offset)
  FROM streamview_internal._archive_missing(sid, parts, wants, starts) m
$$;

-- gone: streamview._may_read_source(text, name)
-- gone: streamview._compile(text, text)
-- gone: streamview._notify_launcher()
-- gone: streamview._supported_types()
-- gone: streamview._interval_arg(text, text, bool)
-- gone: streamview._create_source_impl(regrole, name text, text, text, jsonb, text, text, text, jsonb, text)
-- gone: streamview._drop_source_impl(regrole, name text, bool)
-- gone: streamview._check_options(regrole, jsonb)
-- gone: streamview._check_owner(regrole, regrole, text, name text)
-- gone: streamview._create_version(regrole, int, int, text, text)
-- gone: streamview._create_view_impl(regrole, name text, text, text)
-- gone: streamview._caller_schema()
-- gone: streamview._query_source(text)
-- gone: streamview._drop_view_impl(regrole, name text)
-- gone: streamview._run_as(regrole, text)
-- gone: streamview._count_as(regrole, text)
-- gone: streamview._lock_view(regrole, text, bool)
-- gone: streamview._get_version(streamview.views, int)
-- gone: streamview._rebuild_impl(regrole, text, text, text, bigint)
-- gone: streamview._start_from_time(streamview.views, streamview.versions, int, timestamptz)
-- gone: streamview._wait_for_impl(regrole, text, int, interval)
-- gone: streamview._add_check_impl(regrole, text, name text, text)
-- gone: streamview._drop_check_impl(regrole, text, name text)
-- gone: streamview._compare(streamview.views, streamview.versions, streamview.versions, comparable bool, only_a bigint, only_b bigint, differ bigint, samples text, totals text, totals_equal bool, horizon timestamptz, note text)
-- gone: streamview._validate_impl(regrole, text, int, bool)
-- gone: streamview._do_swap(regrole, streamview.views, streamview.versions, bool, bool)
-- gone: streamview._swap_impl(regrole, text, int, bool)
-- gone: streamview._rollback_impl(regrole, text)
-- gone: streamview._drop_version_impl(regrole, text, int)
-- gone: streamview.create_source(name text, text, text, jsonb, text, text, text, jsonb, text)
-- gone: streamview.rebuild(text, text, text, bigint)
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA streamview FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA streamview_internal FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamview.tumble(timestamptz, interval),
                          streamview.hop(timestamptz, interval, interval),
                          streamview.tumble(timestamptz, interval, text, timestamp),
                          streamview.hop(timestamptz, interval, interval, text, timestamp) TO PUBLIC;

-- End of the generated functions; hand-written again below.

-- The grants on the 0.1 functions set aside above, carried over to the new
-- ones; then the old ones go.
DO $$
DECLARE
    f record;
    g record;
BEGIN
    FOR f IN SELECT * FROM (VALUES
        ('streamview._create_source_0_1(text, text, text, jsonb, text, text, text, jsonb, text)',
         'streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text, text, text, int, text, text, text)'),
        ('streamview._drop_source_0_1(text, bool)', 'streamview.drop_source(text, bool)'),
        ('streamview._create_view_0_1(text, text, text)', 'streamview.create_view(text, text, text)'),
        ('streamview._drop_view_0_1(text)', 'streamview.drop_view(text)'),
        ('streamview._add_check_0_1(text, text, text)', 'streamview.add_check(text, text, text)'),
        ('streamview._drop_check_0_1(text, text)', 'streamview.drop_check(text, text)'),
        ('streamview._swap_0_1(text, int, bool)', 'streamview.swap(text, int, bool)'),
        ('streamview._drop_version_0_1(text, int)', 'streamview.drop_version(text, int)')) AS x(old, new) LOOP
        FOR g IN SELECT a.grantee, a.is_grantable
                   FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
                  WHERE p.oid = f.old::pg_catalog.regprocedure
                    AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner AND a.grantee <> 0 LOOP
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', f.new,
                                      g.grantee::regrole, CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
        EXECUTE pg_catalog.format('DROP FUNCTION %s', f.old);
    END LOOP;
END $$;

-- 0.1's internal functions, now in streamview_internal: the old ones go.
DO $$
DECLARE
    f pg_catalog.regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'streamview'::pg_catalog.regnamespace AND p.proname LIKE '\_%' LOOP
        EXECUTE pg_catalog.format('DROP FUNCTION %s', f);
    END LOOP;
END $$;

-- The catalog's sequences are dumped with it (pg_dump, then a restore: new
-- sources, views and versions no longer collide with restored ones).
SELECT pg_catalog.pg_extension_config_dump('streamview.sources_source_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.views_view_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.versions_version_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.dead_letters_dead_letter_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.validations_validation_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.swaps_swap_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.worker_errors_worker_error_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.validation_runs', '');

-- lag is NULL, not 0, while a partition's log end is unknown; lag in time and
-- what holds the watermark back (docs/monitoring.md, "Health"); only the
-- partitions the source reads (partitions =>).
CREATE OR REPLACE VIEW streamview.partitions AS
SELECT ver.view_name, ver.version, o.partition, o.next_offset, o.log_end,
       -- a partition not read yet (next_offset NULL) is behind from offset 0
       CASE WHEN o.log_end IS NOT NULL THEN greatest(o.log_end - coalesce(o.next_offset, 0), 0) END AS lag,
       o.max_event_time, o.max_event_time - s.max_out_of_orderness AS watermark,
       o.consumed, o.applied, o.duplicates, o.too_late, o.dead_lettered,
       o.consumed = o.applied + o.duplicates + o.too_late + o.dead_lettered AS balanced,
       o.last_message_at, o.updated_at, o.max_broker_time,
       -- how far behind the log end, in time: 0 once read up to it; else how
       -- old the newest message read is (NULL when no log end or no broker
       -- timestamp is known: never a 0 that only means "unknown")
       CASE WHEN o.log_end IS NULL THEN NULL
            WHEN coalesce(o.next_offset, 0) >= o.log_end THEN interval '0'
            WHEN o.max_broker_time IS NULL THEN NULL
            ELSE greatest(now() - o.max_broker_time, interval '0') END AS lag_time,
       -- as the worker last computed the watermark (NULL: not yet); each of
       -- a source's workers computes it over every partition the source
       -- reads: the first's
       o.partition = ANY (st.held_back_by) AS holds_watermark,
       -- freshness: the newest broker timestamp applied, and how long after
       -- it the batch that applied it ended (docs/monitoring.md, "Freshness")
       o.max_broker_time AS applied_broker_time, o.visible_delay
  FROM streamview.offsets o
  JOIN streamview.versions ver USING (version_id)
  JOIN streamview.views v ON v.view_id = ver.view_id
  JOIN streamview.sources s ON s.source_id = v.source_id
  LEFT JOIN LATERAL (SELECT h.held_back_by FROM streamview.version_stats h
                      WHERE h.version_id = o.version_id ORDER BY h.worker LIMIT 1) st ON true
 WHERE streamview_internal._reads_partition(s.partitions, o.partition);

-- The monitoring views that read versions.state, as in a fresh install.
CREATE VIEW streamview.status AS
SELECT x.view_name, x.version, x.state, x.is_live, x.watermark, x.consumed, x.applied,
       x.duplicates, x.too_late, x.dead_lettered, x.lag, x.partitions, x.source_name,
       x.table_name, x.last_batch_at, x.error,
       CASE WHEN x.state = 'retired' THEN NULL
            WHEN x.state = 'failed' THEN 'error'
            WHEN x.paused THEN 'paused'
            WHEN x.error IS NOT NULL THEN 'error'
            WHEN NOT x.served
              OR x.batch_started_at < now() - x.stall_threshold
              OR ((x.lag IS NULL OR x.lag > 0) AND x.last_progress_at < now() - x.stall_threshold)
                 THEN 'stalled'
            WHEN x.state <> 'replaying' AND x.lag_time > x.lag_threshold THEN 'lagging'
            ELSE 'ok' END AS health,
       x.lag_time, now() - x.watermark AS watermark_delay,
       -- the rate of the version's last batch, while it is recent (stats.c
       -- counts the 10 seconds before the batch)
       CASE WHEN x.batch_at >= now() - interval '10 seconds'
            THEN round(x.events_per_second::numeric, 1) WHEN x.batch_at IS NOT NULL THEN 0 END AS events_per_second,
       x.last_batch_duration, x.held_back_by, x.applied_broker_time, x.visible_delay
  FROM (SELECT ver.view_name, ver.version, ver.state, ver.state = 'live' AS is_live, ver.watermark,
               coalesce(p.consumed, 0) AS consumed, coalesce(p.applied, 0) AS applied,
               coalesce(p.duplicates, 0) AS duplicates, coalesce(p.too_late, 0) AS too_late,
               coalesce(p.dead_lettered, 0) AS dead_lettered, p.lag, coalesce(p.partitions, 0) AS partitions,
               s.name AS source_name, ver.table_name, p.last_batch_at,
               -- a version's own failure, or what currently stops its source's worker
               coalesce(ver.error, CASE WHEN ver.state IN ('live', 'caught_up') THEN s.last_error END) AS error,
               s.paused_at IS NOT NULL AS paused,
               w.running >= CASE WHEN ver.state = 'replaying' THEN 1 ELSE s.workers END AS served,
               w.batch_started_at,
               coalesce(p.last_message_at, ver.replay_started_at, ver.created_at) AS last_progress_at,
               p.lag_time, st.batch_at, st.events_per_second, st.batch_duration AS last_batch_duration,
               st.held_back_by, p.applied_broker_time, p.visible_delay,
               pg_catalog.current_setting('streamview.stall_threshold')::interval AS stall_threshold,
               pg_catalog.current_setting('streamview.lag_threshold')::interval AS lag_threshold
          FROM streamview.versions ver
          JOIN streamview.views v ON v.view_id = ver.view_id
          JOIN streamview.sources s ON s.source_id = v.source_id
          LEFT JOIN (SELECT q.view_name, q.version, pg_catalog.count(*)::int AS partitions,
                            pg_catalog.sum(q.consumed)::bigint AS consumed,
                            pg_catalog.sum(q.applied)::bigint AS applied,
                            pg_catalog.sum(q.duplicates)::bigint AS duplicates,
                            pg_catalog.sum(q.too_late)::bigint AS too_late,
                            pg_catalog.sum(q.dead_lettered)::bigint AS dead_lettered,
                            -- NULL until every partition's log end is known: a
                            -- source that never reached its broker is not caught up
                            CASE WHEN pg_catalog.bool_and(q.lag IS NOT NULL)
                                 THEN pg_catalog.sum(q.lag)::bigint END AS lag,
                            -- the partition furthest behind; NULL if one is unknown
                            CASE WHEN pg_catalog.bool_and(q.lag_time IS NOT NULL)
                                 THEN pg_catalog.max(q.lag_time) END AS lag_time,
                            pg_catalog.max(q.updated_at) AS last_batch_at,
                            pg_catalog.max(q.last_message_at) AS last_message_at,
                            -- the newest message applied, and its partition's delay
                            pg_catalog.max(q.applied_broker_time) AS applied_broker_time,
                            (pg_catalog.array_agg(q.visible_delay ORDER BY q.applied_broker_time DESC NULLS LAST))[1]
                                AS visible_delay
                       FROM streamview.partitions q
                      GROUP BY q.view_name, q.version) p
                 ON p.view_name = ver.view_name AND p.version = ver.version
          -- the source's workers each count what they read: the rates add up
          LEFT JOIN LATERAL (
              SELECT pg_catalog.max(h.batch_at) AS batch_at,
                     pg_catalog.sum(h.events_per_second)
                         FILTER (WHERE h.batch_at >= now() - interval '10 seconds') AS events_per_second,
                     (pg_catalog.array_agg(h.batch_duration ORDER BY h.batch_at DESC NULLS LAST))[1] AS batch_duration,
                     (SELECT f.held_back_by FROM streamview.version_stats f
                       WHERE f.version_id = ver.version_id ORDER BY f.worker LIMIT 1) AS held_back_by
                FROM streamview.version_stats h WHERE h.version_id = ver.version_id) st ON true
          -- the workers that serve the version: a replaying version's replay
          -- worker, any other the source's workers, one lock each (source_worker.c,
          -- sv_take_worker_lock: objsubid is the worker's index)
          LEFT JOIN LATERAL (
              SELECT pg_catalog.count(*) AS running, pg_catalog.min(a.xact_start) AS batch_started_at
                FROM pg_catalog.pg_locks w
                LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = w.pid
               WHERE w.locktype = 'object' AND w.granted
                 AND w.database = (SELECT d.oid FROM pg_catalog.pg_database d
                                    WHERE d.datname = pg_catalog.current_database())
                 AND (w.classid, w.objid) =
                     (CASE WHEN ver.state = 'replaying' THEN 'streamview.versions'::regclass
                           ELSE 'streamview.sources'::regclass END::oid,
                      CASE WHEN ver.state = 'replaying' THEN ver.version_id ELSE s.source_id END::oid)
                 AND w.objsubid < CASE WHEN ver.state = 'replaying' THEN 1 ELSE s.workers END) w ON true) x;

CREATE VIEW streamview.rebuilds AS
SELECT ver.view_name, ver.version, ver.state, p.done, p.total,
       CASE WHEN p.total > 0 THEN round(100.0 * least(p.done, p.total) / p.total, 1)
            WHEN ver.state <> 'replaying' THEN 100.0 END AS percent,
       CASE WHEN p.elapsed > 0 THEN round(coalesce(ver.replayed, p.done) / p.elapsed) END::bigint AS rate,
       CASE WHEN ver.state = 'replaying' AND p.done > 0 AND p.elapsed > 0
            THEN make_interval(secs => greatest(p.total - p.done, 0) / (p.done / p.elapsed)) END AS eta,
       ver.max_rate, ver.replay_started_at, ver.caught_up_at, ver.error
  FROM streamview.versions ver
  JOIN streamview.views v ON v.view_id = ver.view_id
  JOIN streamview.sources src ON src.source_id = v.source_id
  LEFT JOIN LATERAL (
      SELECT sum(greatest(coalesce(mine.next_offset, s.start) - s.start, 0))::bigint AS done,
             sum(greatest(coalesce(live.log_end, live.next_offset, mine.log_end, s.start) - s.start, 0))::bigint AS total,
             extract(epoch FROM coalesce(ver.caught_up_at, clock_timestamp()) - ver.replay_started_at) AS elapsed
        FROM (SELECT e.key::int AS partition, e.value::bigint AS start
                FROM jsonb_each_text(ver.start_offsets) e
               WHERE streamview_internal._reads_partition(src.partitions, e.key::int)) s
        LEFT JOIN streamview.offsets mine
               ON mine.version_id = ver.version_id AND mine.partition = s.partition
        LEFT JOIN streamview.versions lv ON lv.view_id = ver.view_id AND lv.state = 'live'
        LEFT JOIN streamview.offsets live
               ON live.version_id = lv.version_id AND live.partition = s.partition) p ON true
 WHERE (ver.start_offsets IS NOT NULL OR ver.state = 'replaying') AND ver.state <> 'retired';
GRANT SELECT ON streamview.status, streamview.rebuilds TO PUBLIC;

-- A plain DROP of a stream view, or of a table a version uses, is refused
-- (guard.c).
CREATE EVENT TRIGGER streamview_guard_drop ON sql_drop
    EXECUTE FUNCTION streamview_internal._guard_drop();

-- So is renaming or moving a stream view, and changing the columns of a
-- table a version uses (guard.c).
CREATE EVENT TRIGGER streamview_guard_alter ON ddl_command_start
    WHEN TAG IN ('ALTER TABLE', 'ALTER VIEW')
    EXECUTE FUNCTION streamview_internal._guard_alter();

-- The tables of existing versions go with the extension, like new ones.
SELECT streamview_internal._depend_on_extension(x.table_name)
  FROM streamview.versions x
 WHERE x.table_name::oid IN (SELECT c.oid FROM pg_catalog.pg_class c);

-- For monitoring roles (pg_monitor): how many dead letters and worker errors
-- each source has, without payloads, keys or details.  The tables are under
-- row level security, where such a role sees no row (and would read zero);
-- these views read them as the extension's owner and are granted to
-- pg_monitor only.
CREATE VIEW streamview.dead_letter_counts AS
SELECT d.source_name, d.view_name, d.reason, pg_catalog.count(*) AS dead_letters,
       pg_catalog.max(d.recorded_at) AS last_recorded_at
  FROM streamview.dead_letters d
 GROUP BY d.source_name, d.view_name, d.reason;

CREATE VIEW streamview.worker_error_counts AS
SELECT e.source_name, pg_catalog.count(*) AS worker_errors,
       pg_catalog.max(e.occurred_at) AS last_occurred_at
  FROM streamview.worker_errors e
 GROUP BY e.source_name;

REVOKE ALL ON streamview.dead_letter_counts, streamview.worker_error_counts FROM PUBLIC;
GRANT SELECT ON streamview.dead_letter_counts, streamview.worker_error_counts TO pg_monitor;

-- source_list shows the consumer group (of this cluster, database and source)
-- and the partitions the source reads, and how many workers read them.
CREATE OR REPLACE VIEW streamview.source_list AS
SELECT s.name, s.brokers, s.topic, s.event_time, s.event_id, s.max_out_of_orderness,
       s.idle_timeout,
       CASE WHEN pg_catalog.pg_has_role(s.owner, 'USAGE') THEN s.options END AS options,
       s.owner, s.created_at, s.last_error, s.last_error_at, s.max_future,
       ARRAY(SELECT u.grantee FROM streamview.source_usage u
              WHERE u.source_id = s.source_id ORDER BY u.granted_at, u.grantee::oid) AS usage,
       s.paused_at, streamview_internal._consumer_group(s.name) AS consumer_group,
       streamview_internal._partitions_text(s.partitions) AS partitions, s.workers,
       s.format, s.schema_registry, s.archive
  FROM streamview.sources s;
GRANT EXECUTE ON FUNCTION streamview_internal._consumer_group(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION streamview_internal._partitions_text(int4multirange),
                          streamview_internal._reads_partition(int4multirange, int) TO PUBLIC;

-- A worker feeds a version's statement its batch from memory
-- (_batch_rows), not through a temporary table: the statements of the
-- versions made by 0.1 read _batch_rows too, and _batch_rows is open to
-- the views' owners, as in a fresh install.
UPDATE streamview.versions SET batch_sql = streamview_internal._batch_sql_0_2(version_id);
GRANT EXECUTE ON FUNCTION streamview_internal._batch_rows(int) TO PUBLIC;
-- validate compares t-digest columns with _tdigests_differ, as the view's owner.
GRANT EXECUTE ON FUNCTION streamview_internal._tdigests_differ(name, text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION streamview_internal._batch_partials(int) TO PUBLIC;

-- Comments on the catalog (test/bin/regen_upgrade.sh copies sql/src/12_comments.sql here)
-- What every catalog table, monitoring view and column is, for \d+ and for
-- tools that read pg_description.  docs/reference.md says more.

COMMENT ON SCHEMA streamview IS 'pg_streamview: Kafka topics as event-time windowed stream views (API, catalog, monitoring views)';
COMMENT ON TYPE streamview.version_state IS 'state of a stream view version: replaying, caught_up, live, retired, failed (only _set_state changes it)';

COMMENT ON TABLE streamview.sources IS 'one row per source: a Kafka topic and how to read its JSON messages; holds credentials, closed to PUBLIC (read streamview.source_list)';
COMMENT ON COLUMN streamview.sources.source_id IS 'internal id';
COMMENT ON COLUMN streamview.sources.name IS 'source name, used in the FROM clause of view queries';
COMMENT ON COLUMN streamview.sources.brokers IS 'librdkafka bootstrap.servers';
COMMENT ON COLUMN streamview.sources.topic IS 'the Kafka topic read (the partitions that partitions names, or all)';
COMMENT ON COLUMN streamview.sources.event_time IS 'the column holding each event''s time';
COMMENT ON COLUMN streamview.sources.event_id IS 'the column holding a unique event id for deduplication, or NULL';
COMMENT ON COLUMN streamview.sources.max_out_of_orderness IS 'how far event time may go back within a partition: partition watermark = its largest event time minus this';
COMMENT ON COLUMN streamview.sources.idle_timeout IS 'a partition silent this long is left out of the view watermark; NULL: never';
COMMENT ON COLUMN streamview.sources.options IS 'librdkafka options (may hold secrets)';
COMMENT ON COLUMN streamview.sources.owner IS 'the role that created the source';
COMMENT ON COLUMN streamview.sources.created_at IS 'when the source was created';
COMMENT ON COLUMN streamview.sources.last_error IS 'what currently stops the source''s worker; NULL when it reads';
COMMENT ON COLUMN streamview.sources.last_error_at IS 'when last_error was recorded';
COMMENT ON COLUMN streamview.sources.max_future IS 'an event further ahead of its broker timestamp is a dead letter (future_time); NULL: not checked';
COMMENT ON COLUMN streamview.sources.paused_at IS 'when pause() paused the source; NULL while it is read';
COMMENT ON COLUMN streamview.sources.partitions IS 'the topic''s partitions the source reads (partitions =>), normalized; NULL: every partition, including those added later';
COMMENT ON COLUMN streamview.sources.workers IS 'how many source workers read it: worker k reads, of the partitions it reads, those p with p % workers = k';
COMMENT ON COLUMN streamview.sources.last_change_id IS 'the source_changes row of its last change (alter_source, replay_dead_letters); its workers restart when it moves';
COMMENT ON COLUMN streamview.sources.format IS 'how its messages are written: json, avro or protobuf (Confluent wire format)';
COMMENT ON COLUMN streamview.sources.schema_registry IS 'URL of the schema registry its Avro or Protobuf schemas come from; NULL for JSON';
COMMENT ON COLUMN streamview.sources.archive IS 'how long every consumed message is kept in streamview.archive; NULL: no archive';

COMMENT ON TABLE streamview.source_usage IS 'roles granted USAGE on a source (grant_usage): they may build stream views over it';
COMMENT ON COLUMN streamview.source_usage.source_id IS 'the source';
COMMENT ON COLUMN streamview.source_usage.grantee IS 'the role granted USAGE';
COMMENT ON COLUMN streamview.source_usage.granted_by IS 'the role that granted it';
COMMENT ON COLUMN streamview.source_usage.granted_at IS 'when it was granted';

COMMENT ON TABLE streamview.source_columns IS 'the typed columns of a source, in declaration order';
COMMENT ON COLUMN streamview.source_columns.source_id IS 'the source';
COMMENT ON COLUMN streamview.source_columns.attnum IS 'position, from 1';
COMMENT ON COLUMN streamview.source_columns.name IS 'column name';
COMMENT ON COLUMN streamview.source_columns.type IS 'column type';
COMMENT ON COLUMN streamview.source_columns.path IS 'the JSON field read, as names of nested objects';
COMMENT ON COLUMN streamview.source_columns.default_value IS 'value used when the field is absent, or NULL';
COMMENT ON COLUMN streamview.source_columns.required IS 'a message without the field (or with null) is a dead letter (missing_field)';

COMMENT ON TABLE streamview.views IS 'one row per stream view';
COMMENT ON COLUMN streamview.views.view_id IS 'internal id';
COMMENT ON COLUMN streamview.views.name IS 'stream view name, as the API and the monitoring views name it';
COMMENT ON COLUMN streamview.views.schema_name IS 'the schema of the view and of its versions'' tables';
COMMENT ON COLUMN streamview.views.source_id IS 'the source the view reads';
COMMENT ON COLUMN streamview.views.owner IS 'the role that created the view';
COMMENT ON COLUMN streamview.views.allowed_lateness IS 'how long after the watermark passes a window''s end late events still correct it';
COMMENT ON COLUMN streamview.views.created_at IS 'when the view was created';
COMMENT ON COLUMN streamview.views.retention IS 'set_retention: windows ending this long before a version''s watermark are deleted; NULL keeps them all';
COMMENT ON COLUMN streamview.views.relid IS 'the view create_view (or the last swap) made: what drop_view, swap and rollback act on';

COMMENT ON TABLE streamview.versions IS 'one row per version of a stream view, kept after it is retired; exactly one version of a view is live';
COMMENT ON COLUMN streamview.versions.version_id IS 'internal id, unique over all views';
COMMENT ON COLUMN streamview.versions.view_id IS 'the view';
COMMENT ON COLUMN streamview.versions.view_name IS 'the view''s name';
COMMENT ON COLUMN streamview.versions.version IS 'version number: 1, 2, ...';
COMMENT ON COLUMN streamview.versions.state IS 'replaying, caught_up, live, retired or failed';
COMMENT ON COLUMN streamview.versions.query IS 'the query as given';
COMMENT ON COLUMN streamview.versions.definition IS 'the compiled query';
COMMENT ON COLUMN streamview.versions.definition_hash IS 'hash of the compiled query and allowed_lateness';
COMMENT ON COLUMN streamview.versions.table_name IS 'the version''s table; NULL once retired';
COMMENT ON COLUMN streamview.versions.window_kind IS 'tumble or hop';
COMMENT ON COLUMN streamview.versions.window_size IS 'window size';
COMMENT ON COLUMN streamview.versions.window_slide IS 'window slide (the size, for tumble)';
COMMENT ON COLUMN streamview.versions.window_time_zone IS 'the time zone whose wall clock the windows follow, or NULL: aligned to the Unix epoch in UTC';
COMMENT ON COLUMN streamview.versions.window_origin IS 'a wall-clock time in window_time_zone at which a window starts, or NULL';
COMMENT ON COLUMN streamview.versions.batch_sql IS 'the statement that applies a batch';
COMMENT ON COLUMN streamview.versions.view_sql IS 'the SELECT the stream view is while this version is live';
COMMENT ON COLUMN streamview.versions.extension_version IS 'the extension version that created the version';
COMMENT ON COLUMN streamview.versions.schema_version IS 'the catalog version that created the version';
COMMENT ON COLUMN streamview.versions.start_offsets IS 'partition -> offset where the replay began; NULL for a version made by create_view';
COMMENT ON COLUMN streamview.versions.start_from IS 'rebuild(start_from => time): windows before it were carried over from the live version';
COMMENT ON COLUMN streamview.versions.max_rate IS 'the replay''s limit in events per second, or NULL';
COMMENT ON COLUMN streamview.versions.watermark IS 'the version''s view watermark; never moves back';
COMMENT ON COLUMN streamview.versions.error IS 'why the version failed';
COMMENT ON COLUMN streamview.versions.created_at IS 'when the version was created';
COMMENT ON COLUMN streamview.versions.created_by IS 'who created it (create_view or rebuild)';
COMMENT ON COLUMN streamview.versions.replay_started_at IS 'when its replay began';
COMMENT ON COLUMN streamview.versions.caught_up_at IS 'when it caught up';
COMMENT ON COLUMN streamview.versions.replayed IS 'messages its rebuild replayed until it caught up (streamview.rebuilds.rate); NULL before';
COMMENT ON COLUMN streamview.versions.validated_at IS 'its latest validation';
COMMENT ON COLUMN streamview.versions.validated_by IS 'who ran its latest validation';
COMMENT ON COLUMN streamview.versions.swapped_at IS 'when it was last swapped in';
COMMENT ON COLUMN streamview.versions.swapped_by IS 'who swapped it in';
COMMENT ON COLUMN streamview.versions.retired_at IS 'when it was dropped';
COMMENT ON COLUMN streamview.versions.retired_by IS 'who dropped it';
COMMENT ON COLUMN streamview.versions.failed_at IS 'when it failed';
COMMENT ON COLUMN streamview.versions.restored_from IS 'the snapshot restore() started the version from (NULL: replayed from the log)';
COMMENT ON COLUMN streamview.versions.source_definition IS 'the source''s definition it was made with: columns, event_time, event_id, max_out_of_orderness, max_future, change_id (the source''s last change then); NULL if made before 0.2 recorded it';
COMMENT ON COLUMN streamview.versions.accept_data_loss IS 'rebuild(accept_data_loss => true): its replay may start although neither Kafka nor the archive has every message it would read';

COMMENT ON TABLE streamview.offsets IS 'per version and partition: position in the log, event-time high mark and the ledger consumed = applied + duplicates + too_late + dead_lettered, written with the upserts';
COMMENT ON COLUMN streamview.offsets.version_id IS 'the version';
COMMENT ON COLUMN streamview.offsets.partition IS 'Kafka partition';
COMMENT ON COLUMN streamview.offsets.next_offset IS 'the next offset the version consumes';
COMMENT ON COLUMN streamview.offsets.max_event_time IS 'largest event time read from the partition';
COMMENT ON COLUMN streamview.offsets.consumed IS 'messages consumed';
COMMENT ON COLUMN streamview.offsets.applied IS 'messages applied to the table';
COMMENT ON COLUMN streamview.offsets.duplicates IS 'messages dropped: event_id already applied';
COMMENT ON COLUMN streamview.offsets.too_late IS 'messages older than the watermark minus allowed_lateness';
COMMENT ON COLUMN streamview.offsets.dead_lettered IS 'messages kept in dead_letters';
COMMENT ON COLUMN streamview.offsets.log_end IS 'the partition''s log end as last seen, or NULL';
COMMENT ON COLUMN streamview.offsets.last_message_at IS 'wall-clock time the last message was consumed (for idle_timeout)';
COMMENT ON COLUMN streamview.offsets.updated_at IS 'when a batch last wrote the row';

COMMENT ON TABLE streamview.offset_marks IS 'where the log stood: a partition''s next offset and largest event time read before it, for rebuilds from a point in time';
COMMENT ON COLUMN streamview.offset_marks.source_id IS 'the source';
COMMENT ON COLUMN streamview.offset_marks.partition IS 'Kafka partition';
COMMENT ON COLUMN streamview.offset_marks.next_offset IS 'the next offset after the batch';
COMMENT ON COLUMN streamview.offset_marks.max_event_time IS 'the largest event time read before it';

COMMENT ON TABLE streamview.seen_ids IS 'SHA-256 of event ids applied by a version, kept while a duplicate could still be applied: one row per batch and partition';
COMMENT ON COLUMN streamview.seen_ids.version_id IS 'the version';
COMMENT ON COLUMN streamview.seen_ids.partition IS 'Kafka partition the ids were applied in';
COMMENT ON COLUMN streamview.seen_ids.last_offset IS 'offset of the last of the row''s events';
COMMENT ON COLUMN streamview.seen_ids.max_event_time IS 'the latest event time of the row''s ids: the row is deleted once it is below the partition''s watermark minus allowed lateness';
COMMENT ON COLUMN streamview.seen_ids.event_id_hashes IS 'SHA-256 of each event id (sha256(convert_to(id, ''UTF8'')))';
COMMENT ON COLUMN streamview.seen_ids.event_times IS 'the event time of each id, in the same order';

COMMENT ON TABLE streamview.dead_letters IS 'messages consumed but not applied, with why; row-level security: own sources only (holds payloads)';
COMMENT ON COLUMN streamview.dead_letters.dead_letter_id IS 'internal id';
COMMENT ON COLUMN streamview.dead_letters.source_name IS 'the source';
COMMENT ON COLUMN streamview.dead_letters.view_name IS 'the view, for too_late and query_error; NULL for unreadable messages';
COMMENT ON COLUMN streamview.dead_letters.version IS 'the version, for too_late and query_error';
COMMENT ON COLUMN streamview.dead_letters.partition IS 'Kafka partition';
COMMENT ON COLUMN streamview.dead_letters."offset" IS 'Kafka offset';
COMMENT ON COLUMN streamview.dead_letters.reason IS 'invalid_json, missing_field, invalid_value, future_time, schema_error, invalid_message, too_late or query_error';
COMMENT ON COLUMN streamview.dead_letters.key IS 'the message key';
COMMENT ON COLUMN streamview.dead_letters.payload IS 'the message payload, as consumed';
COMMENT ON COLUMN streamview.dead_letters.error IS 'what was wrong, in words';
COMMENT ON COLUMN streamview.dead_letters.event_time IS 'the event time, when it could be read';
COMMENT ON COLUMN streamview.dead_letters.recorded_at IS 'when the batch recorded it (shared by the batch; order by partition, offset)';

COMMENT ON TABLE streamview.checks IS 'invariants added with add_check, checked by validate';
COMMENT ON COLUMN streamview.checks.view_id IS 'the view';
COMMENT ON COLUMN streamview.checks.name IS 'check name';
COMMENT ON COLUMN streamview.checks.predicate IS 'a boolean expression over the view''s columns that every row must satisfy';
COMMENT ON COLUMN streamview.checks.created_at IS 'when it was added';

COMMENT ON TABLE streamview.validations IS 'every validation run, one row per check; row-level security: the view''s owner only';
COMMENT ON COLUMN streamview.validations.validation_id IS 'internal id';
COMMENT ON COLUMN streamview.validations.view_name IS 'the view';
COMMENT ON COLUMN streamview.validations.version IS 'the version validated';
COMMENT ON COLUMN streamview.validations.run IS 'one validate() call';
COMMENT ON COLUMN streamview.validations."check" IS 'caught_up, ledger, differences, identical or check <name>';
COMMENT ON COLUMN streamview.validations.passed IS 'whether the check passed';
COMMENT ON COLUMN streamview.validations.detail IS 'what the check found';
COMMENT ON COLUMN streamview.validations.validated_at IS 'when';
COMMENT ON COLUMN streamview.validations.validated_by IS 'who';

COMMENT ON TABLE streamview.swaps IS 'every swap and rollback: which version the view read before and after, who, when';
COMMENT ON COLUMN streamview.swaps.swap_id IS 'internal id';
COMMENT ON COLUMN streamview.swaps.view_name IS 'the view';
COMMENT ON COLUMN streamview.swaps.from_version IS 'the version live before';
COMMENT ON COLUMN streamview.swaps.to_version IS 'the version live after';
COMMENT ON COLUMN streamview.swaps.forced IS 'swap(..., force => true)';
COMMENT ON COLUMN streamview.swaps.is_rollback IS 'made by rollback()';
COMMENT ON COLUMN streamview.swaps.swapped_at IS 'when';
COMMENT ON COLUMN streamview.swaps.swapped_by IS 'who';

COMMENT ON TABLE streamview.worker_errors IS 'why workers stopped and what Kafka reported, newest last; row-level security: own sources only';
COMMENT ON COLUMN streamview.worker_errors.worker_error_id IS 'internal id';
COMMENT ON COLUMN streamview.worker_errors.source_name IS 'the source';
COMMENT ON COLUMN streamview.worker_errors.message IS 'the error';
COMMENT ON COLUMN streamview.worker_errors.detail IS 'its detail';
COMMENT ON COLUMN streamview.worker_errors.occurred_at IS 'when';
COMMENT ON COLUMN streamview.worker_errors.source_id IS 'the source (the errors go with it)';

COMMENT ON VIEW streamview.source_list IS 'every source, without its secrets: options only for its owner';
COMMENT ON COLUMN streamview.source_list.name IS 'source name';
COMMENT ON COLUMN streamview.source_list.brokers IS 'librdkafka bootstrap.servers';
COMMENT ON COLUMN streamview.source_list.topic IS 'the Kafka topic';
COMMENT ON COLUMN streamview.source_list.event_time IS 'the event-time column';
COMMENT ON COLUMN streamview.source_list.event_id IS 'the event-id column, or NULL';
COMMENT ON COLUMN streamview.source_list.max_out_of_orderness IS 'as given to create_source';
COMMENT ON COLUMN streamview.source_list.idle_timeout IS 'as given to create_source';
COMMENT ON COLUMN streamview.source_list.options IS 'librdkafka options; NULL unless the current role is (a member of) the owner';
COMMENT ON COLUMN streamview.source_list.owner IS 'the role that created the source';
COMMENT ON COLUMN streamview.source_list.created_at IS 'when the source was created';
COMMENT ON COLUMN streamview.source_list.last_error IS 'what currently stops the source''s worker';
COMMENT ON COLUMN streamview.source_list.last_error_at IS 'when last_error was recorded';
COMMENT ON COLUMN streamview.source_list.max_future IS 'as given; NULL: event times are not checked against broker timestamps';
COMMENT ON COLUMN streamview.source_list.usage IS 'roles granted USAGE (grant_usage), oldest first';
COMMENT ON COLUMN streamview.source_list.paused_at IS 'when pause() paused the source; NULL while it is read';
COMMENT ON COLUMN streamview.source_list.consumer_group IS 'the Kafka consumer group of the advisory offset commits';
COMMENT ON COLUMN streamview.source_list.partitions IS 'the topic''s partitions the source reads, such as 0-7,12,14-15 or 16- (16 and later); NULL: every partition';
COMMENT ON COLUMN streamview.source_list.workers IS 'how many source workers read it (create_source, alter_source)';
COMMENT ON COLUMN streamview.source_list.format IS 'json, avro or protobuf (create_source)';
COMMENT ON COLUMN streamview.source_list.schema_registry IS 'the schema registry of an Avro or Protobuf source (create_source); its credentials are options';
COMMENT ON COLUMN streamview.source_list.archive IS 'how long every consumed message is kept in the archive (docs/archive.md); NULL: no archive';

COMMENT ON VIEW streamview.partitions IS 'per version and partition: position, lag, watermark and ledger';
COMMENT ON COLUMN streamview.partitions.view_name IS 'stream view name';
COMMENT ON COLUMN streamview.partitions.version IS 'version number';
COMMENT ON COLUMN streamview.partitions.partition IS 'Kafka partition';
COMMENT ON COLUMN streamview.partitions.next_offset IS 'the next offset the version consumes';
COMMENT ON COLUMN streamview.partitions.log_end IS 'the partition''s log end as last seen, or NULL';
COMMENT ON COLUMN streamview.partitions.lag IS 'log_end - next_offset, at least 0; NULL while the log end is unknown';
COMMENT ON COLUMN streamview.partitions.max_event_time IS 'largest event time read from the partition';
COMMENT ON COLUMN streamview.partitions.watermark IS 'max_event_time - max_out_of_orderness';
COMMENT ON COLUMN streamview.partitions.consumed IS 'messages consumed';
COMMENT ON COLUMN streamview.partitions.applied IS 'messages applied';
COMMENT ON COLUMN streamview.partitions.duplicates IS 'duplicates dropped';
COMMENT ON COLUMN streamview.partitions.too_late IS 'messages too late';
COMMENT ON COLUMN streamview.partitions.dead_lettered IS 'messages dead-lettered';
COMMENT ON COLUMN streamview.partitions.balanced IS 'consumed = applied + duplicates + too_late + dead_lettered; always true unless something is wrong';
COMMENT ON COLUMN streamview.partitions.last_message_at IS 'wall-clock time the last message was consumed';
COMMENT ON COLUMN streamview.partitions.updated_at IS 'when a batch last wrote the row';

COMMENT ON VIEW streamview.status IS 'one row per stream view version: state, watermark, ledger totals, lag, errors';
COMMENT ON COLUMN streamview.status.view_name IS 'stream view name';
COMMENT ON COLUMN streamview.status.version IS 'version number';
COMMENT ON COLUMN streamview.status.state IS 'replaying, caught_up, live, retired or failed';
COMMENT ON COLUMN streamview.status.is_live IS 'this version is what the view shows';
COMMENT ON COLUMN streamview.status.watermark IS 'the view watermark; never moves back';
COMMENT ON COLUMN streamview.status.consumed IS 'messages consumed, over all partitions';
COMMENT ON COLUMN streamview.status.applied IS 'messages applied';
COMMENT ON COLUMN streamview.status.duplicates IS 'duplicates dropped';
COMMENT ON COLUMN streamview.status.too_late IS 'messages too late';
COMMENT ON COLUMN streamview.status.dead_lettered IS 'messages dead-lettered';
COMMENT ON COLUMN streamview.status.lag IS 'messages behind the log end; NULL while any partition''s log end is unknown';
COMMENT ON COLUMN streamview.status.partitions IS 'partitions the version has consumed from';
COMMENT ON COLUMN streamview.status.source_name IS 'the source';
COMMENT ON COLUMN streamview.status.table_name IS 'the version''s table';
COMMENT ON COLUMN streamview.status.last_batch_at IS 'when a batch last updated the version';
COMMENT ON COLUMN streamview.status.error IS 'why the version failed, or what stops its source''s worker';

COMMENT ON VIEW streamview.rebuilds IS 'progress of rebuilds: messages replayed out of those in the log';
COMMENT ON COLUMN streamview.rebuilds.view_name IS 'stream view name';
COMMENT ON COLUMN streamview.rebuilds.version IS 'version number';
COMMENT ON COLUMN streamview.rebuilds.state IS 'the version''s state';
COMMENT ON COLUMN streamview.rebuilds.done IS 'messages replayed';
COMMENT ON COLUMN streamview.rebuilds.total IS 'messages to replay (grows as messages arrive)';
COMMENT ON COLUMN streamview.rebuilds.percent IS '100 * done / total';
COMMENT ON COLUMN streamview.rebuilds.rate IS 'messages per second replayed, until the version caught up; fixed from then on';
COMMENT ON COLUMN streamview.rebuilds.eta IS 'time left at that rate, while replaying';
COMMENT ON COLUMN streamview.rebuilds.max_rate IS 'the replay''s limit, or NULL';
COMMENT ON COLUMN streamview.rebuilds.replay_started_at IS 'when the replay began';
COMMENT ON COLUMN streamview.rebuilds.caught_up_at IS 'when it caught up';
COMMENT ON COLUMN streamview.rebuilds.error IS 'why it failed';

COMMENT ON VIEW streamview.dead_letter_counts IS 'dead letters per source, view and reason, without payloads (for pg_monitor)';
COMMENT ON COLUMN streamview.dead_letter_counts.source_name IS 'the source';
COMMENT ON COLUMN streamview.dead_letter_counts.view_name IS 'the view, for too_late and query_error';
COMMENT ON COLUMN streamview.dead_letter_counts.reason IS 'why the messages were not applied';
COMMENT ON COLUMN streamview.dead_letter_counts.dead_letters IS 'how many';
COMMENT ON COLUMN streamview.dead_letter_counts.last_recorded_at IS 'the newest';

COMMENT ON VIEW streamview.worker_error_counts IS 'worker errors per source, without messages (for pg_monitor)';
COMMENT ON COLUMN streamview.worker_error_counts.source_name IS 'the source';
COMMENT ON COLUMN streamview.worker_error_counts.worker_errors IS 'how many';
COMMENT ON COLUMN streamview.worker_error_counts.last_occurred_at IS 'the newest';

COMMENT ON TABLE streamview.source_changes IS 'every alter_source and replay_dead_letters: who changed what on a source, and when (secrets as ********); row-level security: the source''s owner only';
COMMENT ON COLUMN streamview.source_changes.change_id IS 'internal id, returned by alter_source';
COMMENT ON COLUMN streamview.source_changes.source_id IS 'the source';
COMMENT ON COLUMN streamview.source_changes.source_name IS 'the source''s name';
COMMENT ON COLUMN streamview.source_changes.changes IS 'per argument (and per option key): {"old": ..., "new": ...}; columns as add_columns, drop_columns, alter_columns; a replay as replay_dead_letters';
COMMENT ON COLUMN streamview.source_changes.changed_at IS 'when';
COMMENT ON COLUMN streamview.source_changes.changed_by IS 'who';

COMMENT ON COLUMN streamview.offsets.max_broker_time IS 'broker timestamp of the newest message read (for lag_time); NULL when the broker gives none';
COMMENT ON COLUMN streamview.offsets.visible_delay IS 'from max_broker_time to the end of the batch that read it, just before its commit; NULL when no message had a broker timestamp';
COMMENT ON COLUMN streamview.offsets.definition_mark IS 'next_offset when the source''s definition (columns, max_future) last changed: messages below it were read with an older one (replay_dead_letters replays their dead letters to this version); NULL: all read with the current one';
COMMENT ON TABLE streamview.version_stats IS 'per version and worker, how its batches go: written once per batch, read by streamview.status';
COMMENT ON COLUMN streamview.version_stats.version_id IS 'the version';
COMMENT ON COLUMN streamview.version_stats.worker IS 'the index of the source worker that wrote the row (0 for a replay worker)';
COMMENT ON COLUMN streamview.version_stats.batch_at IS 'when its last batch committed';
COMMENT ON COLUMN streamview.version_stats.batch_duration IS 'how long its last batch took';
COMMENT ON COLUMN streamview.version_stats.events_per_second IS 'messages read in the 10 seconds before the last batch, per second';
COMMENT ON COLUMN streamview.version_stats.held_back_by IS 'the partitions holding its watermark back';

COMMENT ON COLUMN streamview.partitions.max_broker_time IS 'broker timestamp of the newest message read';
COMMENT ON COLUMN streamview.partitions.lag_time IS 'behind the log end in time: 0 once read up to it, else now minus max_broker_time; NULL when unknown';
COMMENT ON COLUMN streamview.partitions.holds_watermark IS 'this partition holds the version''s watermark back';
COMMENT ON COLUMN streamview.partitions.applied_broker_time IS 'freshness: broker timestamp of the newest message applied from this partition (committed); NULL when none had one';
COMMENT ON COLUMN streamview.partitions.visible_delay IS 'freshness: from applied_broker_time to the commit of the batch that made it visible';

COMMENT ON COLUMN streamview.status.health IS 'ok, lagging, stalled, error or paused (docs/monitoring.md, "Health"); NULL for a retired version';
COMMENT ON COLUMN streamview.status.lag_time IS 'behind the log end in time, worst partition; NULL when unknown';
COMMENT ON COLUMN streamview.status.watermark_delay IS 'now minus the watermark';
COMMENT ON COLUMN streamview.status.events_per_second IS 'messages read per second over the 10 seconds before the last batch; 0 when none recently';
COMMENT ON COLUMN streamview.status.last_batch_duration IS 'how long the last batch took';
COMMENT ON COLUMN streamview.status.held_back_by IS 'the partitions holding the watermark back, including ones that never had a message';
COMMENT ON COLUMN streamview.status.applied_broker_time IS 'freshness: broker timestamp of the newest message applied, over all partitions; NULL when none had one';
COMMENT ON COLUMN streamview.status.visible_delay IS 'freshness: from applied_broker_time to the commit of the batch that made that message visible';

COMMENT ON TABLE streamview.snapshots IS 'snapshots of a version at one consistent point (streamview.snapshot()): the manifest; the rows are in streamview_internal.snapshot_<snapshot_id>';
COMMENT ON COLUMN streamview.snapshots.snapshot_id IS 'the snapshot''s id (verify_snapshot, restore, drop_snapshot take it)';
COMMENT ON COLUMN streamview.snapshots.view_id IS 'the stream view (internal id): its snapshots go with it';
COMMENT ON COLUMN streamview.snapshots.view_name IS 'the stream view';
COMMENT ON COLUMN streamview.snapshots.version IS 'the version whose state was copied';
COMMENT ON COLUMN streamview.snapshots.definition_hash IS 'the version''s definition hash: restore refuses a view whose live version has another';
COMMENT ON COLUMN streamview.snapshots.extension_version IS 'the extension version (pg_extension.extversion) that took the snapshot';
COMMENT ON COLUMN streamview.snapshots.offsets IS 'per partition, the next offset to read at the snapshot''s point: {"partition": offset} (null: nothing read yet)';
COMMENT ON COLUMN streamview.snapshots.ledger IS 'per partition, the ledger row at that point: next_offset, max_event_time (the event-time history that classifies late events), consumed, applied, duplicates, too_late, dead_lettered';
COMMENT ON COLUMN streamview.snapshots.watermark IS 'the version''s watermark at that point';
COMMENT ON COLUMN streamview.snapshots.start_from IS 'the version''s cut, if it was rebuilt from a point in time (windows before it are not replayed)';
COMMENT ON COLUMN streamview.snapshots.rows IS 'how many rows of the version were copied';
COMMENT ON COLUMN streamview.snapshots.seen_ids IS 'how many rows of remembered event ids (streamview.seen_ids) were copied';
COMMENT ON COLUMN streamview.snapshots.checksum IS 'SHA-256 (hex) of the manifest, the rows and the event ids, in a canonical order: verify_snapshot recomputes it';
COMMENT ON COLUMN streamview.snapshots.taken_at IS 'when the snapshot was taken (its transaction''s start)';
COMMENT ON COLUMN streamview.snapshots.taken_by IS 'the role that took it';

COMMENT ON TABLE streamview.snapshot_seen_ids IS 'the event ids a version remembered at a snapshot''s point (rows of streamview.seen_ids, as they were)';
COMMENT ON COLUMN streamview.snapshot_seen_ids.snapshot_id IS 'the snapshot';
COMMENT ON COLUMN streamview.snapshot_seen_ids.partition IS 'Kafka partition the ids were applied in';
COMMENT ON COLUMN streamview.snapshot_seen_ids.last_offset IS 'offset of the last of the row''s events';
COMMENT ON COLUMN streamview.snapshot_seen_ids.max_event_time IS 'the latest event time of the row''s ids';
COMMENT ON COLUMN streamview.snapshot_seen_ids.event_id_hashes IS 'SHA-256 of each event id';
COMMENT ON COLUMN streamview.snapshot_seen_ids.event_times IS 'the event time of each id, in the same order';

COMMENT ON TABLE streamview.archive IS 'every message a source with archive => consumed, written with the batch that consumed it; partitioned by source, then by archived_at (docs/archive.md)';
COMMENT ON COLUMN streamview.archive.source_id IS 'the source (streamview.sources.source_id)';
COMMENT ON COLUMN streamview.archive.partition IS 'Kafka partition';
COMMENT ON COLUMN streamview.archive."offset" IS 'the message''s offset in its partition';
COMMENT ON COLUMN streamview.archive.broker_time IS 'the message''s broker timestamp (CreateTime or LogAppendTime); NULL when it had none';
COMMENT ON COLUMN streamview.archive.key IS 'the message''s key; NULL for a null key';
COMMENT ON COLUMN streamview.archive.payload IS 'the message''s payload; NULL for a null payload';
COMMENT ON COLUMN streamview.archive.headers IS 'the message''s headers as [[name, base64 value or null], ...]; NULL when it had none';
COMMENT ON COLUMN streamview.archive.archived_at IS 'when it was archived: retention drops it once this is older than the source''s archive interval';

COMMENT ON TABLE streamview.log_starts IS 'the first offset each partition''s log still has, as the source''s workers last heard; rebuild checks it against the archive';
COMMENT ON COLUMN streamview.log_starts.source_id IS 'the source';
COMMENT ON COLUMN streamview.log_starts.partition IS 'Kafka partition';
COMMENT ON COLUMN streamview.log_starts.log_start IS 'the first offset the brokers still keep';
COMMENT ON COLUMN streamview.log_starts.updated_at IS 'when a worker last stored a change of it';

COMMENT ON VIEW streamview.archives IS 'per source and partition, what the archive keeps (reads the whole archive)';
COMMENT ON COLUMN streamview.archives.source_name IS 'the source';
COMMENT ON COLUMN streamview.archives.partition IS 'Kafka partition';
COMMENT ON COLUMN streamview.archives.first_offset IS 'the lowest offset archived';
COMMENT ON COLUMN streamview.archives.last_offset IS 'the highest offset archived';
COMMENT ON COLUMN streamview.archives.messages IS 'messages archived (last_offset - first_offset + 1 when there is no gap)';
COMMENT ON COLUMN streamview.archives.bytes IS 'bytes of keys, payloads and headers as stored (after compression)';
COMMENT ON COLUMN streamview.archives.oldest IS 'the oldest broker timestamp archived';
COMMENT ON COLUMN streamview.archives.newest IS 'the newest broker timestamp archived';
