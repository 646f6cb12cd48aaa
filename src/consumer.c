/*-------------------------------------------------------------------------
 *
 * consumer.c
 *	  The source worker: one per source, started by the launcher.
 *
 * Loop: take up to streamview.batch_size messages (waiting at most
 * streamview.batch_timeout), then apply them in ONE transaction that holds
 * the upserts of every version, their offsets, watermarks, counters, seen
 * ids and dead letters.  Offsets are only ever read from PostgreSQL, so a
 * crash at any point resumes exactly after the last committed batch.
 *
 * When nothing arrives the worker sleeps on a WaitEventSet holding its latch
 * and the Kafka queue's wake-up pipe, and every second refreshes watermarks
 * (partitions go idle with time) and looks at the catalog.
 *
 * If the set of versions changes (a view created or dropped), the batch in
 * hand is not applied: the worker reloads the versions and re-assigns every
 * partition at the lowest stored offset of any version (a new version starts
 * from the beginning of the log), so each version sees every message once.
 *
 * Connects as the extension's owner, which does the catalog bookkeeping;
 * each view's statement runs as that view's owner (apply.c).
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "commands/dbcommands.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#define SV_IDLE_WAIT_MS			1000
#define SV_PARTITION_CHECK_MS	10000

typedef struct SvWorker
{
	int32		source_id;
	SvSource   *src;
	List	   *versions;
	char	   *signature;
	SvKafka    *kafka;
	int			nparts;
	MemoryContext batch_cxt;
	char	   *last_error;
	TimestampTz last_partition_check;
	TimestampTz last_housekeeping;
} SvWorker;

static SvWorker worker;

static void
sv_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
sv_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

static void
sv_free_versions(void)
{
	ListCell   *lc;

	foreach(lc, worker.versions)
	{
		SvVersion  *v = lfirst(lc);

		if (v->plan)
			SPI_freeplan(v->plan);
		MemoryContextDelete(GetMemoryChunkContext(v));
	}
	list_free(worker.versions);
	worker.versions = NIL;
}

/* (Re)load the versions; in a transaction.  Returns false if the source is gone. */
static bool
sv_load(void)
{
	ListCell   *lc;
	MemoryContext old;
	char	   *sig = streamview_versions_signature(worker.source_id);

	if (sig == NULL)
		return false;
	sv_free_versions();
	old = MemoryContextSwitchTo(TopMemoryContext);
	worker.versions = streamview_load_versions(worker.src);
	MemoryContextSwitchTo(old);
	foreach(lc, worker.versions)
		streamview_prepare_version(worker.src, lfirst(lc));
	if (worker.signature)
		pfree(worker.signature);
	worker.signature = sig;
	return true;
}

/* Assign every partition at the lowest next offset of any version. */
static void
sv_assign(void)
{
	int64	   *start = palloc(worker.nparts * sizeof(int64));
	ListCell   *lc;

	for (int p = 0; p < worker.nparts; p++)
	{
		start[p] = PG_INT64_MAX;
		foreach(lc, worker.versions)
		{
			SvVersion  *v = lfirst(lc);
			int64		next = p < v->nparts ? v->parts[p].next_offset : -1;

			start[p] = Min(start[p], next);
		}
		if (start[p] == PG_INT64_MAX)
			start[p] = -1;
	}
	streamview_kafka_assign(worker.kafka, worker.nparts, start);
	pfree(start);
}

static void
sv_note_error(const char *error)
{
	if (error == NULL && worker.last_error == NULL)
		return;
	if (error && worker.last_error && strcmp(error, worker.last_error) == 0)
		return;
	sv_begin("recording source error");
	if (error)
		streamview_record_worker_error(worker.src->name, error, NULL);
	sv_commit();
	if (worker.last_error)
		pfree(worker.last_error);
	worker.last_error = error ? MemoryContextStrdup(TopMemoryContext, error) : NULL;
}

/* Wait until the topic exists and has partitions; re-check now and then. */
static void
sv_check_partitions(bool wait)
{
	for (;;)
	{
		int			n = streamview_kafka_partition_count(worker.kafka, 5000);
		char	   *err = streamview_kafka_report(worker.kafka);

		worker.last_partition_check = GetCurrentTimestamp();
		if (n > worker.nparts)
		{
			worker.nparts = n;
			sv_assign();
		}
		if (n > 0 || !wait)
			return;
		sv_note_error(err ? err : psprintf("topic \"%s\" has no partitions", worker.src->topic));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 SV_IDLE_WAIT_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* Advisory: the group's committed offsets follow the live version, for lag tools. */
static void
sv_commit_to_kafka(void)
{
	int64	   *next = palloc(worker.nparts * sizeof(int64));
	ListCell   *lc;

	for (int p = 0; p < worker.nparts; p++)
		next[p] = -1;
	foreach(lc, worker.versions)
	{
		SvVersion  *v = lfirst(lc);

		if (strcmp(v->state, "live") != 0)
			continue;
		for (int p = 0; p < worker.nparts && p < v->nparts; p++)
			next[p] = v->parts[p].next_offset;
	}
	streamview_kafka_commit(worker.kafka, worker.nparts, next);
	pfree(next);
}

/*
 * Apply one batch.  Returns false when the catalog changed under us; the
 * batch was then not applied, and the caller must reload and re-assign.
 */
static bool
sv_apply(SvEvent *events, int n)
{
	char	   *sig;

	sv_begin("applying batch");
	sig = streamview_versions_signature(worker.source_id);
	if (sig == NULL || strcmp(sig, worker.signature) != 0)
	{
		sv_commit();
		return false;
	}
	for (int p = 0; p < worker.nparts; p++)
	{
		ListCell   *lc;
		int64		end = streamview_kafka_log_end(worker.kafka, p);

		foreach(lc, worker.versions)
		{
			SvVersion  *v = lfirst(lc);

			if (p < v->nparts && end >= 0 && v->parts[p].log_end != end)
			{
				v->parts[p].log_end = end;
				v->parts[p].dirty = v->parts[p].dirty || v->parts[p].known;
			}
		}
	}
	streamview_apply_batch(worker.src, worker.versions, events, n);
	sv_commit();
	sv_commit_to_kafka();
	return true;
}

static void
sv_reload_and_assign(void)
{
	bool		alive;

	sv_begin("loading stream views");
	alive = sv_load();
	sv_commit();
	if (!alive)
	{
		ereport(LOG, (errmsg("source \"%s\" was dropped; its worker exits", worker.src->name)));
		proc_exit(0);
	}
	sv_assign();
}

/* Idle: refresh watermarks, notice catalog changes and new partitions. */
static void
sv_housekeeping(void)
{
	TimestampTz now = GetCurrentTimestamp();
	char	   *sig;
	bool		changed;

	worker.last_housekeeping = now;
	sv_note_error(streamview_kafka_report(worker.kafka));
	sv_begin("refreshing watermarks");
	sig = streamview_versions_signature(worker.source_id);
	changed = (sig == NULL || strcmp(sig, worker.signature) != 0);
	if (!changed)
		streamview_refresh_watermarks(worker.src, worker.versions, false);
	sv_commit();
	if (changed)
		sv_reload_and_assign();
	if (TimestampDifferenceExceeds(worker.last_partition_check, now, SV_PARTITION_CHECK_MS))
		sv_check_partitions(false);
}

static void
sv_wait_for_messages(WaitEventSet *wes)
{
	WaitEvent	ev;

	(void) WaitEventSetWait(wes, SV_IDLE_WAIT_MS, &ev, 1, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	streamview_kafka_drain_fd(worker.kafka);
}

static void
sv_main_loop(void)
{
	SvEvent    *events = NULL;
	WaitEventSet *wes = CreateWaitEventSet(TopMemoryContext, 3);
	int			capacity = 0;

	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wes, WL_SOCKET_READABLE, streamview_kafka_wait_fd(worker.kafka), NULL, NULL);

	for (;;)
	{
		int			n;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (capacity != streamview_batch_size)
		{
			capacity = streamview_batch_size;
			events = events ? repalloc(events, capacity * sizeof(SvEvent))
				: MemoryContextAlloc(TopMemoryContext, capacity * sizeof(SvEvent));
		}

		MemoryContextReset(worker.batch_cxt);
		old = MemoryContextSwitchTo(worker.batch_cxt);
		n = streamview_kafka_consume(worker.kafka, events, capacity, streamview_batch_timeout_ms);
		MemoryContextSwitchTo(old);

		if (n > 0)
		{
			if (!sv_apply(events, n))
				sv_reload_and_assign();
			if (TimestampDifferenceExceeds(worker.last_housekeeping, GetCurrentTimestamp(),
										   SV_IDLE_WAIT_MS))
				sv_housekeeping();
			continue;
		}
		sv_housekeeping();
		sv_wait_for_messages(wes);
	}
}

static void
sv_on_exit(int code, Datum arg)
{
	streamview_kafka_close(worker.kafka);
	worker.kafka = NULL;
}

/* Record why the worker stops, in a transaction of its own, then exit(1). */
static void
sv_fail(void)
{
	ErrorData  *err;
	MemoryContext cxt = worker.batch_cxt ? worker.batch_cxt : TopMemoryContext;

	HOLD_INTERRUPTS();
	EmitErrorReport();
	MemoryContextSwitchTo(cxt);
	err = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	RESUME_INTERRUPTS();

	if (worker.src != NULL)
	{
		PG_TRY();
		{
			sv_begin("recording worker error");
			streamview_record_worker_error(worker.src->name, err->message, err->detail);
			sv_commit();
		}
		PG_CATCH();
		{
			EmitErrorReport();
			FlushErrorState();
		}
		PG_END_TRY();
	}
	proc_exit(1);
}

void
streamview_source_main(Datum arg)
{
	Oid			dboid;
	Oid			owner;
	sigjmp_buf	local_sigjmp_buf;
	bool		locked;
	char	   *group_id;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	memcpy(&owner, MyBgworkerEntry->bgw_extra + sizeof(Oid), sizeof(Oid));
	worker.source_id = DatumGetInt32(arg);

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, owner, 0);

	/* Event time is UTC; generated SQL names everything it uses. */
	SetConfigOption("TimeZone", "UTC", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("DateStyle", "ISO, YMD", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);

	worker.batch_cxt = AllocSetContextCreate(TopMemoryContext, "pg_streamview batch",
											 ALLOCSET_DEFAULT_SIZES);
	before_shmem_exit(sv_on_exit, (Datum) 0);

	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
		sv_fail();
	PG_exception_stack = &local_sigjmp_buf;

	sv_begin("starting");
	locked = DatumGetBool(DirectFunctionCall2(pg_try_advisory_lock_int4,
											  Int32GetDatum(STREAMVIEW_LOCK_CLASS),
											  Int32GetDatum(worker.source_id)));
	if (locked)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		worker.src = streamview_load_source(worker.source_id);
		MemoryContextSwitchTo(old);
	}
	if (!locked || worker.src == NULL || !sv_load())
	{
		sv_commit();
		ereport(LOG, (errmsg("pg_streamview source worker for source %d has nothing to do",
							 worker.source_id),
					  errdetail(locked ? "The source no longer exists." : "Another worker serves it.")));
		proc_exit(0);
	}
	streamview_clear_source_error(worker.source_id);
	group_id = MemoryContextStrdup(TopMemoryContext,
								   psprintf("pg_streamview.%s.%s", get_database_name(dboid),
											worker.src->name));
	sv_commit();
	pgstat_report_appname(psprintf("pg_streamview source %s", worker.src->name));

	worker.kafka = streamview_kafka_open(worker.src, group_id);
	sv_check_partitions(true);
	sv_note_error(NULL);
	ereport(LOG, (errmsg("pg_streamview consuming topic \"%s\" for source \"%s\" (%d partitions, %d versions)",
						 worker.src->topic, worker.src->name, worker.nparts,
						 list_length(worker.versions))));
	sv_main_loop();
}
