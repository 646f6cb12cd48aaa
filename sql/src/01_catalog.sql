-- The catalog: the extension's tables, dumped by pg_dump, closed to PUBLIC
-- unless said otherwise.

-- A source: one Kafka topic, and how to read its JSON messages.
-- options may hold broker credentials (SASL passwords), so this table is not
-- readable by PUBLIC; streamview.source_list shows it without them.
CREATE TABLE streamview.sources (
    source_id            serial PRIMARY KEY,
    name                 text NOT NULL UNIQUE,
    brokers              text NOT NULL,
    topic                text NOT NULL,
    event_time           text NOT NULL,
    event_id             text,
    max_out_of_orderness interval NOT NULL,
    idle_timeout         interval,
    options              jsonb NOT NULL DEFAULT '{}',
    owner                regrole NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_error           text,
    last_error_at        timestamptz,
    -- an event whose time is further ahead of its message's broker timestamp
    -- is a dead letter (future_time); NULL: not checked
    max_future           interval DEFAULT '1 day',
    -- set by pause(), cleared by resume(): no worker reads the source meanwhile
    paused_at            timestamptz,
    -- the topic's partitions the source reads (partitions => '0-15'), so that
    -- several servers can share a topic (docs/scaling.md); NULL: every
    -- partition, including those the topic gains later
    partitions           int4multirange
                         CHECK (NOT pg_catalog.isempty(partitions) AND pg_catalog.lower(partitions) >= 0),
    -- source workers reading it: worker k reads, of the partitions above,
    -- those p with p % workers = k (create_source, alter_source;
    -- _workers_arg checks it)
    workers              int NOT NULL DEFAULT 1,
    -- the streamview.source_changes row of the source's last change
    -- (alter_source, replay_dead_letters), NULL before any: part of what its
    -- workers compare with what they loaded (SV_SOURCE_SETTINGS), so that a
    -- change of its columns, or a replay that rewrote its ledger, restarts
    -- them with what the catalog now says
    last_change_id       bigint,
    -- how messages are written (docs/formats.md); avro and protobuf come
    -- in the Confluent wire format, their schemas from schema_registry
    format               text NOT NULL DEFAULT 'json' CHECK (format IN ('json', 'avro', 'protobuf')),
    schema_registry      text,
    -- how long every consumed message is kept in streamview.archive
    -- (docs/archive.md); NULL: no archive
    archive              interval
);

-- Who, besides its owner, may build stream views over a source: USAGE, as
-- on a foreign server.  It shows none of the source's options and gives no
-- right to change or drop it.
CREATE TABLE streamview.source_usage (
    source_id  int NOT NULL REFERENCES streamview.sources ON DELETE CASCADE,
    grantee    regrole NOT NULL,
    granted_by regrole NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (source_id, grantee)
);

-- The typed columns of a source, in declaration order.
CREATE TABLE streamview.source_columns (
    source_id     int NOT NULL REFERENCES streamview.sources ON DELETE CASCADE,
    attnum        int NOT NULL,
    name          text NOT NULL,
    type          regtype NOT NULL,
    path          text[] NOT NULL,
    default_value text,
    required      bool NOT NULL DEFAULT false,
    PRIMARY KEY (source_id, attnum),
    UNIQUE (source_id, name)
);

CREATE TABLE streamview.views (
    view_id          serial PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    schema_name      name NOT NULL,
    source_id        int NOT NULL REFERENCES streamview.sources,
    owner            regrole NOT NULL,
    allowed_lateness interval NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- the view create_view made: what drop_view, swap and rollback act on,
    -- never whatever relation has its name now
    relid            regclass,
    -- set_retention: windows that end this long before a version's watermark
    -- are deleted by the launcher's housekeeping; NULL keeps every window
    retention        interval
);

-- The states of a version (docs/architecture.md, "Version states"); only
-- streamview_internal._set_state changes them.
CREATE TYPE streamview.version_state AS ENUM ('replaying', 'caught_up', 'live', 'retired', 'failed');

-- One row per version of a view.  Exactly one version of a view is 'live'.
CREATE TABLE streamview.versions (
    version_id        serial UNIQUE,
    view_id           int NOT NULL REFERENCES streamview.views ON DELETE CASCADE,
    view_name         text NOT NULL,
    version           int NOT NULL,
    state             streamview.version_state NOT NULL,
    query             text NOT NULL,
    definition        jsonb NOT NULL,
    definition_hash   text NOT NULL,
    table_name        regclass,
    window_kind       text NOT NULL CHECK (window_kind IN ('tumble', 'hop')),
    window_size       interval NOT NULL,
    window_slide      interval NOT NULL,
    -- windows on a zone's wall clock (both NULL: epoch-aligned UTC windows)
    window_time_zone  text,
    window_origin     timestamp,
    batch_sql         text NOT NULL,
    view_sql          text NOT NULL,
    extension_version text NOT NULL,
    schema_version    int NOT NULL DEFAULT 1,
    start_offsets     jsonb,
    start_from        timestamptz,
    max_rate          bigint CHECK (max_rate > 0),
    watermark         timestamptz,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by        name NOT NULL,
    replay_started_at timestamptz,
    caught_up_at      timestamptz,
    -- messages replayed from start_offsets until it caught up (rebuilds.rate)
    replayed          bigint,
    validated_at      timestamptz,
    validated_by      name,
    swapped_at        timestamptz,
    swapped_by        name,
    retired_at        timestamptz,
    retired_by        name,
    failed_at         timestamptz,
    -- restore(): the snapshot the version started from (NULL: from the log)
    restored_from     bigint,
    -- the source's definition the version was made with (its columns,
    -- event_time, event_id, max_out_of_orderness, max_future and the
    -- source_changes id of its last change): a rebuild made after
    -- alter_source shows which definition it reads with; NULL for versions
    -- made before 0.2 recorded it
    source_definition jsonb,
    -- rebuild(accept_data_loss => true): the replay may start although
    -- neither Kafka nor the archive still has every message it would read
    accept_data_loss  bool NOT NULL DEFAULT false,
    PRIMARY KEY (view_id, version),
    CONSTRAINT versions_window_zone_check CHECK ((window_time_zone IS NULL) = (window_origin IS NULL))
);

-- Per version and partition: where the version is in the log, the event-time
-- high mark of the partition, and the ledger
--   consumed = applied + duplicates + too_late + dead_lettered.
-- Written in the same transaction as the upserts it accounts for.  Every
-- partition a worker is assigned has a row, from before its first message
-- (next_offset NULL: nothing read yet, the version reads it from the start).
CREATE TABLE streamview.offsets (
    version_id      int NOT NULL REFERENCES streamview.versions (version_id) ON DELETE CASCADE,
    partition       int NOT NULL,
    next_offset     bigint,
    max_event_time  timestamptz,
    consumed        bigint NOT NULL DEFAULT 0,
    applied         bigint NOT NULL DEFAULT 0,
    duplicates      bigint NOT NULL DEFAULT 0,
    too_late        bigint NOT NULL DEFAULT 0,
    dead_lettered   bigint NOT NULL DEFAULT 0,
    log_end         bigint,
    last_message_at timestamptz,
    updated_at      timestamptz,
    -- the newest broker timestamp among the messages read (NULL: none had one)
    max_broker_time timestamptz,
    -- from max_broker_time to the end of the batch that read it (NULL: none had one)
    visible_delay   interval,
    -- next_offset when the source's definition (columns, max_future) last
    -- changed: the version read the messages below it with an older one
    -- (replay_dead_letters applies their dead letters to it), those from it
    -- on with the current one; NULL: it read every message it consumed
    -- with the current definition
    definition_mark bigint,
    PRIMARY KEY (version_id, partition)
);

-- Per version and worker: how its recent batches went, and which partitions
-- hold the version's watermark back, for streamview.status (which adds up
-- the rates of a source's workers).  Written by each worker with each batch
-- that read messages for the version, and when what holds the watermark
-- changes.
CREATE TABLE streamview.version_stats (
    version_id        int NOT NULL REFERENCES streamview.versions (version_id) ON DELETE CASCADE,
    -- the index of the source worker that stored the row (0 for a replay
    -- worker): each of a source's workers counts the messages it reads
    worker            int NOT NULL DEFAULT 0,
    batch_at          timestamptz,
    batch_duration    interval,
    -- messages read per second, over the 10 seconds before batch_at
    events_per_second float8,
    held_back_by      int[],
    PRIMARY KEY (version_id, worker)
);

-- Where the log stood, now and then: after a batch, partition p's next
-- offset and the highest event time read before it (at most one mark per
-- minute of event time).  A rebuild from a point in time starts each
-- partition at the last mark before that time, with that history.
CREATE TABLE streamview.offset_marks (
    source_id      int NOT NULL REFERENCES streamview.sources ON DELETE CASCADE,
    partition      int NOT NULL,
    next_offset    bigint NOT NULL,
    max_event_time timestamptz NOT NULL,
    PRIMARY KEY (source_id, partition, next_offset)
);

CREATE INDEX offset_marks_time ON streamview.offset_marks (source_id, partition, max_event_time);

-- event_ids applied by a version, remembered while an event carrying the same
-- id could still be applied (see docs/architecture.md, "Deduplication").
-- Kept as their SHA-256: an id is whatever a producer wrote.  The worker
-- keeps them in memory; each batch stores the ids it applied in one row per
-- partition (two arrays, in the same order), and the worker deletes a row
-- once every id in it is forgotten (max_event_time below the partition's
-- watermark minus allowed lateness).  The hashes do not compress: stored
-- as they are.
CREATE TABLE streamview.seen_ids (
    version_id      int NOT NULL REFERENCES streamview.versions (version_id) ON DELETE CASCADE,
    partition       int NOT NULL,
    last_offset     bigint NOT NULL,
    max_event_time  timestamptz NOT NULL,
    event_id_hashes bytea[] NOT NULL,
    event_times     timestamptz[] NOT NULL,
    PRIMARY KEY (version_id, partition, last_offset)
);
ALTER TABLE streamview.seen_ids ALTER COLUMN event_id_hashes SET STORAGE EXTERNAL;

CREATE INDEX seen_ids_expiry ON streamview.seen_ids (version_id, partition, max_event_time);

-- Messages that were consumed but not applied, with why.  Unreadable messages
-- are recorded once per source (view_name NULL); too-late ones per version.
CREATE TABLE streamview.dead_letters (
    dead_letter_id bigserial PRIMARY KEY,
    source_name    text NOT NULL,
    view_name      text,
    version        int,
    partition      int NOT NULL,
    "offset"       bigint NOT NULL,
    reason         text NOT NULL
                   CHECK (reason IN ('invalid_json', 'missing_field', 'invalid_value',
                                     'too_late', 'query_error', 'future_time',
                                     'schema_error', 'invalid_message')),
    key            bytea,
    payload        bytea,
    error          text,
    event_time     timestamptz,
    recorded_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE NULLS NOT DISTINCT (source_name, partition, "offset", view_name, version)
);

-- User invariants checked by validate(): rows violating predicate are counted.
CREATE TABLE streamview.checks (
    view_id    int NOT NULL REFERENCES streamview.views ON DELETE CASCADE,
    name       text NOT NULL,
    predicate  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (view_id, name)
);

-- Every validation ever run, one row per check.
CREATE TABLE streamview.validations (
    validation_id bigserial PRIMARY KEY,
    view_name     text NOT NULL,
    version       int NOT NULL,
    run           bigint NOT NULL,
    "check"       text NOT NULL,
    passed        bool NOT NULL,
    detail        text,
    validated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    validated_by  name NOT NULL
);

CREATE SEQUENCE streamview.validation_runs;

-- Every swap and rollback: what the view read before and after, who, when.
CREATE TABLE streamview.swaps (
    swap_id      bigserial PRIMARY KEY,
    view_name    text NOT NULL,
    from_version int,
    to_version   int NOT NULL,
    forced       bool NOT NULL,
    is_rollback  bool NOT NULL,
    swapped_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    swapped_by   name NOT NULL
);

-- Why workers stopped, newest last.  Kept for the DBA; never read by the code.
CREATE TABLE streamview.worker_errors (
    worker_error_id bigserial PRIMARY KEY,
    source_name     text NOT NULL,
    message         text NOT NULL,
    detail          text,
    occurred_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- the errors go with their source: the next source of that name, perhaps
    -- another role's, must not read them
    source_id       int REFERENCES streamview.sources ON DELETE CASCADE
);

-- Every change made to a source after create_source (alter_source,
-- replay_dead_letters): who, when, and what changed, as an object with one
-- member per argument that changed, {"old": ..., "new": ...}; options show
-- one member per property that changed, and the values of secret
-- properties (passwords, keys) are never written here, only that they
-- changed.  Columns: add_columns {name: spec}, drop_columns [name],
-- alter_columns {name: {"old": spec, "new": spec}}; a replay of dead
-- letters: replay_dead_letters {what it read and applied}.  Changes go
-- with their source, as its worker errors do.
CREATE TABLE streamview.source_changes (
    change_id   bigserial PRIMARY KEY,
    source_id   int NOT NULL REFERENCES streamview.sources ON DELETE CASCADE,
    source_name text NOT NULL,
    changes     jsonb NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    changed_by  name NOT NULL
);

-- Snapshots of a version's state at one consistent point (snapshot(),
-- docs/snapshots.md): this manifest, the version's rows in a table of their
-- own, streamview_internal.snapshot_<snapshot_id> (typed columns as in the
-- version's table, written once, dropped whole), and the event ids the
-- version remembered then (snapshot_seen_ids).  checksum is the SHA-256 of
-- the manifest, the rows and the ids (_snapshot_checksum); restore() refuses
-- a snapshot whose content no longer hashes to it.  Snapshots go with their
-- view (drop_view), not with the version they were taken of.
CREATE TABLE streamview.snapshots (
    snapshot_id       bigserial PRIMARY KEY,
    view_id           int NOT NULL REFERENCES streamview.views ON DELETE CASCADE,
    view_name         text NOT NULL,
    version           int NOT NULL,
    definition_hash   text NOT NULL,
    extension_version text NOT NULL,
    -- per partition, the next offset to read: {"0": 1200, "1": null}
    offsets           jsonb NOT NULL,
    -- per partition, the ledger row: next_offset, max_event_time (the
    -- event-time history that classifies late events) and the counters
    ledger            jsonb NOT NULL,
    watermark         timestamptz,
    -- the version's cut, if it was rebuilt from a point in time
    start_from        timestamptz,
    rows              bigint NOT NULL,
    seen_ids          bigint NOT NULL,
    checksum          text,
    taken_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    taken_by          name NOT NULL
);

CREATE INDEX snapshots_view ON streamview.snapshots (view_id, snapshot_id);

-- The seen_ids rows of the version at the snapshot's point, as they were.
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

SELECT pg_catalog.pg_extension_config_dump('streamview.sources', '');

SELECT pg_catalog.pg_extension_config_dump('streamview.source_columns', '');

SELECT pg_catalog.pg_extension_config_dump('streamview.views', '');

SELECT pg_catalog.pg_extension_config_dump('streamview.versions', '');

SELECT pg_catalog.pg_extension_config_dump('streamview.offsets', '');

SELECT pg_catalog.pg_extension_config_dump('streamview.seen_ids', '');

SELECT pg_catalog.pg_extension_config_dump('streamview.offset_marks', '');

SELECT pg_catalog.pg_extension_config_dump('streamview.dead_letters', '');

SELECT pg_catalog.pg_extension_config_dump('streamview.worker_errors', '');

SELECT pg_catalog.pg_extension_config_dump('streamview.source_usage', '');

SELECT pg_catalog.pg_extension_config_dump('streamview.checks', '');

SELECT pg_catalog.pg_extension_config_dump('streamview.validations', '');

SELECT pg_catalog.pg_extension_config_dump('streamview.swaps', '');

SELECT pg_catalog.pg_extension_config_dump('streamview.source_changes', '');

SELECT pg_catalog.pg_extension_config_dump('streamview.version_stats', '');

SELECT pg_catalog.pg_extension_config_dump('streamview.snapshots', '');

SELECT pg_catalog.pg_extension_config_dump('streamview.snapshot_seen_ids', '');

-- Their sequences too: a restored catalog must not hand out ids it holds.
SELECT pg_catalog.pg_extension_config_dump('streamview.sources_source_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.views_view_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.versions_version_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.dead_letters_dead_letter_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.validations_validation_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.swaps_swap_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.worker_errors_worker_error_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.source_changes_change_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.validation_runs', '');
SELECT pg_catalog.pg_extension_config_dump('streamview.snapshots_snapshot_id_seq', '');

-- Catalog tables are written by the extension's functions (as the extension
-- owner), never directly by users.
REVOKE ALL ON ALL TABLES IN SCHEMA streamview FROM PUBLIC;

-- Views read the watermark of their version from here; the queries are no secret.
GRANT SELECT ON streamview.versions, streamview.views, streamview.dead_letters,
                streamview.worker_errors, streamview.validations, streamview.swaps,
                streamview.checks, streamview.source_changes, streamview.snapshots TO PUBLIC;
