/*-------------------------------------------------------------------------
 *
 * pg_streamview.c
 *	  Module load: settings, shared memory hooks, the supervisor.
 *
 * pg_streamview only works preloaded (shared_preload_libraries): its
 * supervisor, which starts the launcher, is a static background worker,
 * registered here once.  Loaded any other way (a plain LOAD, or CREATE
 * EXTENSION without preloading) it refuses with a hint rather than
 * half-working.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

char	   *streamview_database = NULL;
int			streamview_batch_size = 10000;
int			streamview_batch_timeout_ms = 100;
int			streamview_batch_max_bytes_kb = 16384;
int			streamview_batch_max_groups = 1000000;
int			streamview_batch_max_time_ms = 5000;
char	   *streamview_archive_tablespace = NULL;
int			streamview_launcher_naptime_ms = 1000;
int			streamview_max_restart_delay_s = 60;
int			streamview_restart_delay_s = 1;
int			streamview_statement_timeout_ms = 30000;
int			streamview_max_workers = 8;
bool		streamview_enabled = true;
int			streamview_dead_letter_retention_s = 0;
int			streamview_worker_error_retention_s = 0;
int			streamview_validation_retention_s = 0;
int			streamview_offset_mark_retention_s = 0;
int			streamview_max_workers_per_role = 4;
int			streamview_lock_timeout_ms = 10000;
int			streamview_progress_messages = 100000;
int			streamview_lag_threshold_s = 60;
int			streamview_stall_threshold_s = 60;

PGDLLEXPORT void _PG_init(void);

/*
 * Load time: refuse unless preloaded, define the settings (alphabetical),
 * reserve the prefix, request shared memory and register the supervisor.
 */
void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_streamview must be loaded via shared_preload_libraries"),
				 errhint("Add pg_streamview to shared_preload_libraries in postgresql.conf and restart the server.")));

	/* Alphabetical. */
	DefineCustomStringVariable("streamview.archive_tablespace",
							   "Tablespace of the archive's new tables (empty: the database's default).",
							   "Sources with archive => keep every message they consume there "
							   "(docs/archive.md); tables made before a change stay where they are.",
							   &streamview_archive_tablespace, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.batch_max_bytes",
							"Most bytes of message keys and payloads a source worker holds in memory at once.",
							"A round of a batch ends at batch_size messages or at this many bytes, whichever comes first.",
							&streamview_batch_max_bytes_kb, 16384, 64, 1048576,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.batch_max_groups",
							"Most partial rows a source worker's batch holds before it ends.",
							"Under load a batch takes several rounds of messages, each aggregated into "
							"partial rows (one per window and keys of the round), and upserts each window "
							"and keys once at its end; it ends when the queue is drained, or at this many "
							"partial rows, or at batch_max_time.",
							&streamview_batch_max_groups, 1000000, 1, 10000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.batch_max_time",
							"Longest a source worker's batch of several rounds takes in rounds before it ends.",
							"Under load, what is read is visible at most this long (plus the time to apply "
							"it) after the batch began; a batch also ends when the queue is drained.",
							&streamview_batch_max_time_ms, 5000, 0, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.batch_size",
							"Most messages a source worker holds in memory at once: one round of a batch.",
							"A round takes what the worker's queue has ready, up to this many messages.",
							&streamview_batch_size, 10000, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.progress_messages",
							"Messages check_source and replay_dead_letters read between two progress NOTICEs.",
							"A NOTICE also comes every 10 seconds, whichever is first.  A session may lower "
							"it to watch a short history closely.",
							&streamview_progress_messages, 100000, 1, INT_MAX,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.batch_timeout",
							"Longest an idle source worker waits for a first message before its housekeeping.",
							"A batch is applied as soon as the worker's queue has nothing more ready; "
							"it never waits to fill up.",
							&streamview_batch_timeout_ms, 100, 1, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("streamview.database",
							   "Database in which the launcher runs stream sources.",
							   "Until it exists, no source runs: the supervisor warns once and looks for it "
							   "every streamview.launcher_naptime.",
							   &streamview_database, "postgres",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.lag_threshold",
							"How far behind its log, in time, a version may be before status.health says lagging.",
							"Only how streamview.status reads: a role or session may set its own.",
							&streamview_lag_threshold_s, 60, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.launcher_naptime",
							"How often the launcher checks sources and workers.",
							NULL, &streamview_launcher_naptime_ms, 1000, 100, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.lock_timeout",
							"Longest swap, rollback, drop_view and drop_version wait for a lock a reader holds.",
							"Past it they fail with lock_not_available instead of waiting on; 0 waits for ever.",
							&streamview_lock_timeout_ms, 10000, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.max_partition_skew",
							"How far ahead, in event time, a worker reads one partition of a backlog beyond the slowest.",
							"A partition read further ahead than this of the slowest partition that has a backlog "
							"is paused until that one comes within half of it, so that partitions are read in "
							"step and each window and keys is upserted about once per batch (docs/architecture.md). "
							"Partitions at their log end are never paused.  0 reads partitions as the brokers send them.",
							&streamview_max_partition_skew_ms, 600000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.max_restart_delay",
							"Longest back-off before restarting a failed source worker.",
							NULL, &streamview_max_restart_delay_s, 60, 1, 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomBoolVariable("streamview.enabled",
							 "Whether pg_streamview runs its background workers.",
							 "Off stops every source and replay worker (a kill switch, or for "
							 "maintenance); on starts them again where their offsets stand.",
							 &streamview_enabled, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.dead_letter_retention",
							"How long dead letters are kept; 0 keeps them for ever.",
							"The launcher deletes older ones once a minute.",
							&streamview_dead_letter_retention_s, 0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.worker_error_retention",
							"How long worker errors are kept; 0 keeps them for ever.",
							"The launcher deletes older ones once a minute.",
							&streamview_worker_error_retention_s, 0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.validation_retention",
							"How long validation runs are kept; 0 keeps them for ever.",
							"The latest run of each version stays: swap reads it.",
							&streamview_validation_retention_s, 0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.offset_mark_retention",
							"How far back in event time offset marks are kept; 0 keeps them for ever.",
							"The newest mark of each partition stays. A rebuild from a point in time "
							"before the oldest mark kept replays from the earliest offset.",
							&streamview_offset_mark_retention_s, 0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.max_workers",
							"Most background workers pg_streamview runs at once (sources and rebuilds).",
							"Sources and rebuilds beyond it wait for a worker; keep it below max_worker_processes.",
							&streamview_max_workers, 8, 1, 1024,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.max_workers_per_role",
							"Most source workers plus running rebuilds a role that is not a superuser may have.",
							"0 means no limit.",
							&streamview_max_workers_per_role, 4, 0, 1024,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.restart_delay",
							"First back-off before restarting a failed source worker; doubles on each failure.",
							NULL, &streamview_restart_delay_s, 1, 0, 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.stall_threshold",
							"How long a version may read nothing while messages wait, or a batch may run, before status.health says stalled.",
							"Only how streamview.status reads: a role or session may set its own.",
							&streamview_stall_threshold_s, 60, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("streamview.statement_timeout",
							"Longest a view's statement may run on one batch; 0 turns it off.",
							"A batch that runs longer is retried, then its slow events are isolated as dead letters.",
							&streamview_statement_timeout_ms, 30000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	MarkGUCPrefixReserved("streamview");

	streamview_shmem_init();
	streamview_register_supervisor();
}
