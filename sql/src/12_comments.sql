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
COMMENT ON COLUMN streamview.versions.validated_at IS 'its latest validation';
COMMENT ON COLUMN streamview.versions.validated_by IS 'who ran its latest validation';
COMMENT ON COLUMN streamview.versions.swapped_at IS 'when it was last swapped in';
COMMENT ON COLUMN streamview.versions.swapped_by IS 'who swapped it in';
COMMENT ON COLUMN streamview.versions.retired_at IS 'when it was dropped';
COMMENT ON COLUMN streamview.versions.retired_by IS 'who dropped it';
COMMENT ON COLUMN streamview.versions.failed_at IS 'when it failed';

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

COMMENT ON TABLE streamview.seen_ids IS 'SHA-256 of event ids applied by a version, kept while a duplicate could still be applied';
COMMENT ON COLUMN streamview.seen_ids.version_id IS 'the version';
COMMENT ON COLUMN streamview.seen_ids.partition IS 'Kafka partition';
COMMENT ON COLUMN streamview.seen_ids.event_time IS 'the event''s time, for expiry';
COMMENT ON COLUMN streamview.seen_ids.event_id_hash IS 'SHA-256 of the event id';

COMMENT ON TABLE streamview.dead_letters IS 'messages consumed but not applied, with why; row-level security: own sources only (holds payloads)';
COMMENT ON COLUMN streamview.dead_letters.dead_letter_id IS 'internal id';
COMMENT ON COLUMN streamview.dead_letters.source_name IS 'the source';
COMMENT ON COLUMN streamview.dead_letters.view_name IS 'the view, for too_late and query_error; NULL for unreadable messages';
COMMENT ON COLUMN streamview.dead_letters.version IS 'the version, for too_late and query_error';
COMMENT ON COLUMN streamview.dead_letters.partition IS 'Kafka partition';
COMMENT ON COLUMN streamview.dead_letters."offset" IS 'Kafka offset';
COMMENT ON COLUMN streamview.dead_letters.reason IS 'invalid_json, missing_field, invalid_value, future_time, too_late or query_error';
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
COMMENT ON COLUMN streamview.rebuilds.rate IS 'messages per second replayed';
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

COMMENT ON TABLE streamview.source_changes IS 'every alter_source: who changed what on a source, and when (secrets as ********); row-level security: the source''s owner only';
COMMENT ON COLUMN streamview.source_changes.change_id IS 'internal id, returned by alter_source';
COMMENT ON COLUMN streamview.source_changes.source_id IS 'the source';
COMMENT ON COLUMN streamview.source_changes.source_name IS 'the source''s name';
COMMENT ON COLUMN streamview.source_changes.changes IS 'per argument (and per option key): {"old": ..., "new": ...}';
COMMENT ON COLUMN streamview.source_changes.changed_at IS 'when';
COMMENT ON COLUMN streamview.source_changes.changed_by IS 'who';

COMMENT ON COLUMN streamview.offsets.max_broker_time IS 'broker timestamp of the newest message read (for lag_time); NULL when the broker gives none';
COMMENT ON TABLE streamview.version_stats IS 'per version, how its batches go: written once per batch, read by streamview.status';
COMMENT ON COLUMN streamview.version_stats.version_id IS 'the version';
COMMENT ON COLUMN streamview.version_stats.batch_at IS 'when its last batch committed';
COMMENT ON COLUMN streamview.version_stats.batch_duration IS 'how long its last batch took';
COMMENT ON COLUMN streamview.version_stats.events_per_second IS 'messages read in the 10 seconds before the last batch, per second';
COMMENT ON COLUMN streamview.version_stats.held_back_by IS 'the partitions holding its watermark back';

COMMENT ON COLUMN streamview.partitions.max_broker_time IS 'broker timestamp of the newest message read';
COMMENT ON COLUMN streamview.partitions.lag_time IS 'behind the log end in time: 0 once read up to it, else now minus max_broker_time; NULL when unknown';
COMMENT ON COLUMN streamview.partitions.holds_watermark IS 'this partition holds the version''s watermark back';

COMMENT ON COLUMN streamview.status.health IS 'ok, lagging, stalled, error or paused (docs/monitoring.md, "Health"); NULL for a retired version';
COMMENT ON COLUMN streamview.status.lag_time IS 'behind the log end in time, worst partition; NULL when unknown';
COMMENT ON COLUMN streamview.status.watermark_delay IS 'now minus the watermark';
COMMENT ON COLUMN streamview.status.events_per_second IS 'messages read per second over the 10 seconds before the last batch; 0 when none recently';
COMMENT ON COLUMN streamview.status.last_batch_duration IS 'how long the last batch took';
COMMENT ON COLUMN streamview.status.held_back_by IS 'the partitions holding the watermark back, including ones that never had a message';
