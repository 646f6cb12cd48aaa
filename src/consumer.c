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
 * A replay worker runs the same loop for one version in state 'replaying'
 * (a rebuild), with a consumer of its own so the live version keeps its
 * freshness, at most max_rate events per second; when its offsets reach the
 * live version's it becomes caught_up and exits, and the source worker
 * takes it over.
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
#include "storage/pmsignal.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "catalog/namespace.h"
#include "utils/lsyscache.h"
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
	int32		replay_version; /* replay worker: the version; 0: source worker */
	TimestampTz replay_started;
	int64		replayed;		/* events consumed by this replay run */
	SvSource   *src;
	List	   *versions;
	char	   *signature;
	SvKafka    *kafka;
	int			nparts;
	MemoryContext batch_cxt;
	MemoryContext loop_cxt;		/* reset every round of the main loop */
	int64	   *mark_minutes;	/* per partition: minute of the last offset mark */
	int			nmark_minutes;
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
	/* commit leaves TopMemoryContext current: back to the round's context */
	if (worker.loop_cxt)
		MemoryContextSwitchTo(worker.loop_cxt);
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

static void
sv_prepare_one(void *v)
{
	streamview_prepare_version(worker.src, v);
}

/*
 * Prepare a version in a subtransaction: if that fails for a version no
 * reader sees (its table dropped by hand, say), the version fails alone.
 */
static void
sv_prepare(SvVersion *v)
{
	ErrorData  *err = streamview_in_subtransaction(sv_prepare_one, v);

	if (err != NULL)
		streamview_fail_version(v, err);
}

/* (Re)load the versions; in a transaction.  Returns false if the source is gone. */
static bool
sv_load(void)
{
	ListCell   *lc;
	MemoryContext old;
	char	   *sig = streamview_versions_signature(worker.source_id, worker.replay_version);

	if (sig == NULL)
		return false;
	sv_free_versions();
	old = MemoryContextSwitchTo(TopMemoryContext);
	worker.versions = streamview_load_versions(worker.src, worker.replay_version);
	MemoryContextSwitchTo(old);
	foreach(lc, worker.versions)
		sv_prepare(lfirst(lc));
	if (worker.signature)
		pfree(worker.signature);
	worker.signature = sig;
	return true;
}

/*
 * Assign every partition at the lowest next offset of any version.  With no
 * version to maintain, read nothing.
 */
static void
sv_assign(void)
{
	int64	   *start = palloc(worker.nparts * sizeof(int64));
	ListCell   *lc;

	if (worker.versions == NIL)
	{
		streamview_kafka_assign(worker.kafka, 0, NULL);
		return;
	}

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
	worker.src->assigned_at = GetCurrentTimestamp();
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
		streamview_record_worker_error(worker.source_id, error, NULL, true);
	else
		streamview_clear_source_error(worker.source_id);
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
			worker.src->topic_partitions = n;
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

/*
 * Replay worker: has the version reached the live version's offsets?  If so
 * it becomes caught_up in the current transaction (the one that applied its
 * last batch), and from then on the source worker maintains it from exactly
 * the offsets stored with that batch: no gap, nothing applied twice.
 */
static bool
sv_check_caught_up(void)
{
	SvVersion  *v;

	if (worker.replay_version == 0 || worker.versions == NIL)
		return false;
	v = linitial(worker.versions);
	if (!streamview_caught_up(v))
		return false;
	streamview_mark_caught_up(v);
	return true;
}

static void
sv_replay_done(void)
{
	ereport(LOG,
			(errmsg("pg_streamview replay of view \"%s\" version %d caught up after %lld events",
					((SvVersion *) linitial(worker.versions))->view_name,
					((SvVersion *) linitial(worker.versions))->version,
					(long long) worker.replayed)));
	proc_exit(0);
}

/*
 * Replay worker: keep to max_rate events per second, sleeping on the latch
 * (so SIGTERM still ends the wait at once).
 */
static void
sv_throttle(int n)
{
	SvVersion  *v;
	int64		due_us;
	long		secs;
	int			usecs;

	worker.replayed += n;
	if (worker.replay_version == 0 || worker.versions == NIL)
		return;
	v = linitial(worker.versions);
	if (v->max_rate <= 0)
		return;
	due_us = worker.replayed * USECS_PER_SEC / v->max_rate;
	TimestampDifference(worker.replay_started, GetCurrentTimestamp(), &secs, &usecs);
	if (secs * USECS_PER_SEC + usecs >= due_us)
		return;
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 (due_us - secs * USECS_PER_SEC - usecs) / 1000 + 1, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
}

/* Replay worker: the most messages one batch may take under max_rate. */
static int
sv_batch_limit(int capacity)
{
	SvVersion  *v;

	if (worker.replay_version == 0 || worker.versions == NIL)
		return capacity;
	v = linitial(worker.versions);
	if (v->max_rate <= 0)
		return capacity;
	return (int) Max(1, Min((int64) capacity, v->max_rate / 10));
}

/* Source worker: offset marks, from the first version it maintains. */
static void
sv_record_marks(void)
{
	ListCell   *lc;

	foreach(lc, worker.versions)
	{
		SvVersion  *v = lfirst(lc);

		if (!v->failed)
		{
			streamview_record_marks(worker.src, v, &worker.mark_minutes, &worker.nmark_minutes);
			return;
		}
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

		if (v->state != SV_VERSION_LIVE)
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
	bool		caught_up;

	sv_begin("applying batch");
	sig = streamview_versions_signature(worker.source_id, worker.replay_version);
	if (sig == NULL || strcmp(sig, worker.signature) != 0)
	{
		sv_commit();
		return false;
	}
	pfree(sig);
	for (int p = 0; p < worker.nparts; p++)
	{
		ListCell   *lc;
		int64		end = streamview_kafka_log_end(worker.kafka, p);

		foreach(lc, worker.versions)
			streamview_note_log_end(lfirst(lc), p, end);
	}
	streamview_apply_batch(worker.src, worker.versions, events, n,
						   worker.replay_version == 0);
	if (worker.replay_version == 0)
		sv_record_marks();
	caught_up = sv_check_caught_up();
	sv_commit();
	sv_note_error(NULL);		/* a batch went through: the source is fine */
	if (worker.replay_version == 0)
		sv_commit_to_kafka();
	if (caught_up)
		sv_replay_done();
	return true;
}

static void
sv_reload_and_assign(void)
{
	bool		alive;

	sv_begin("loading stream views");
	alive = sv_load();
	sv_commit();
	if (!alive || (worker.replay_version != 0 && worker.versions == NIL))
	{
		ereport(LOG, (errmsg("pg_streamview worker for source \"%s\" has nothing left to do",
							 worker.src->name)));
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
	bool		caught_up;

	worker.last_housekeeping = now;
	sv_note_error(streamview_kafka_report(worker.kafka));
	sv_begin("refreshing watermarks");
	sig = streamview_versions_signature(worker.source_id, worker.replay_version);
	changed = (sig == NULL || strcmp(sig, worker.signature) != 0);
	if (sig)
		pfree(sig);
	if (!changed)
		streamview_refresh_watermarks(worker.src, worker.versions);
	caught_up = !changed && sv_check_caught_up();
	sv_commit();
	if (caught_up)
		sv_replay_done();
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

	worker.loop_cxt = AllocSetContextCreate(TopMemoryContext, "pg_streamview loop",
											ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		int			n;
		MemoryContext old;

		/* whatever a round allocates outside a transaction dies with it */
		MemoryContextSwitchTo(worker.loop_cxt);
		MemoryContextReset(worker.loop_cxt);
		CHECK_FOR_INTERRUPTS();
		/* a busy worker never sleeps on WL_EXIT_ON_PM_DEATH: look */
		if (!PostmasterIsAlive())
			proc_exit(1);
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
		n = streamview_kafka_consume(worker.kafka, events, sv_batch_limit(capacity),
									 streamview_batch_timeout_ms);
		MemoryContextSwitchTo(old);

		if (n > 0)
		{
			if (!sv_apply(events, n))
				sv_reload_and_assign();
			sv_throttle(n);
			if (TimestampDifferenceExceeds(worker.last_housekeeping, GetCurrentTimestamp(),
										   SV_IDLE_WAIT_MS))
				sv_housekeeping();
			continue;
		}
		sv_housekeeping();
		sv_wait_for_messages(wes);
	}
}

/* Replay worker: record where the replay starts, for progress reporting. */
static void
sv_start_replay(void)
{
	int64	   *low = palloc(worker.nparts * sizeof(int64));

	for (int p = 0; p < worker.nparts; p++)
		low[p] = streamview_kafka_log_start(worker.kafka, p, 5000);
	worker.replay_started = GetCurrentTimestamp();
	sv_begin("starting replay");
	streamview_record_start_offsets(linitial(worker.versions), worker.nparts, low);
	sv_commit();
	pfree(low);
}

/*
 * One worker per source (or per replayed version), even if a second launcher
 * ever runs: a session lock on the catalog row's object, (sources, id) or
 * (versions, id).  Not an advisory lock, which any role could take first
 * and so keep the source from ever starting: no SQL takes object locks on
 * an extension's table.  Released when the process exits.
 */
static bool
sv_take_worker_lock(void)
{
	LOCKTAG		tag;
	Oid			nsp = get_namespace_oid(STREAMVIEW_SCHEMA, false);
	Oid			classid = get_relname_relid(worker.replay_version ? "versions" : "sources", nsp);

	SET_LOCKTAG_OBJECT(tag, MyDatabaseId, classid,
					   worker.replay_version ? worker.replay_version : worker.source_id, 0);
	return LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
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
			streamview_record_worker_error(worker.source_id, err->message, err->detail, true);
			/* a replay fails for good, unless the error was transient */
			if (worker.replay_version != 0 && !streamview_transient_error(err->sqlerrcode))
				streamview_mark_failed(worker.replay_version, err->message);
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
	memcpy(&worker.replay_version, MyBgworkerEntry->bgw_extra + 2 * sizeof(Oid), sizeof(int32));
	worker.source_id = DatumGetInt32(arg);

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, owner, 0);

	/*
	 * A view is a function of the log: settings that change what SQL
	 * computes or whether it runs are pinned, whatever the database or role
	 * defaults say.  Generated SQL names everything it uses; pg_temp comes
	 * last so that temporary objects cannot stand in for catalog ones.
	 */
	{
		static const char *const pinned[][2] = {
			{"TimeZone", "UTC"}, {"DateStyle", "ISO, YMD"}, {"IntervalStyle", "postgres"},
			{"search_path", "pg_catalog, pg_temp"}, {"extra_float_digits", "1"},
			{"lc_monetary", "C"}, {"lc_numeric", "C"}, {"lc_time", "C"},
			{"statement_timeout", "0"}, {"lock_timeout", "0"},
			{"idle_in_transaction_session_timeout", "0"},
			{"default_transaction_read_only", "off"},
			{"default_transaction_isolation", "read committed"},
		};

		for (int i = 0; i < lengthof(pinned); i++)
			SetConfigOption(pinned[i][0], pinned[i][1], PGC_SUSET, PGC_S_OVERRIDE);
	}

	worker.batch_cxt = AllocSetContextCreate(TopMemoryContext, "pg_streamview batch",
											 ALLOCSET_DEFAULT_SIZES);
	before_shmem_exit(sv_on_exit, (Datum) 0);

	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
		sv_fail();
	PG_exception_stack = &local_sigjmp_buf;

	sv_begin("starting");
	locked = sv_take_worker_lock();
	if (locked)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		worker.src = streamview_load_source(worker.source_id);
		MemoryContextSwitchTo(old);
	}
	if (!locked || worker.src == NULL || !sv_load() ||
		(worker.replay_version != 0 && worker.versions == NIL))
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
	if (worker.replay_version == 0)
		pgstat_report_appname(psprintf("pg_streamview source %s", worker.src->name));
	else
		pgstat_report_appname(psprintf("pg_streamview rebuild %s v%d",
									   ((SvVersion *) linitial(worker.versions))->view_name,
									   ((SvVersion *) linitial(worker.versions))->version));

	worker.kafka = streamview_kafka_open(worker.src, group_id);
	sv_check_partitions(true);
	sv_note_error(NULL);
	if (worker.replay_version != 0)
		sv_start_replay();
	ereport(LOG, (errmsg("pg_streamview consuming topic \"%s\" for source \"%s\" (%d partitions, %d versions)",
						 worker.src->topic, worker.src->name, worker.nparts,
						 list_length(worker.versions))));
	sv_main_loop();
}
