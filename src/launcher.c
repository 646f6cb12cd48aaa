/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: keeps a source's source workers running.
 *
 * A dynamic background worker connected to streamview.database, started
 * (and started again when it stops) by the supervisor (supervisor.c).  Each
 * round (every streamview.launcher_naptime, or at once when an API call
 * commits and sets our latch) it reads the sources and reconciles them with
 * the workers it started, one slot per source and worker index (a source
 * has sources.workers of them: alter_source changes that like any setting,
 * the slots the source no longer has are terminated and the others restart
 * with the new split):
 *  - a source without a running worker gets one, unless that source's worker
 *	  failed recently: then it waits restart_delay · 2^(failures-1), capped at
 *	  max_restart_delay (a worker that ran for a minute is forgiven:
 *	  streamview_restart_backoff);
 *  - a worker whose source is gone is terminated;
 *  - a worker that stopped because its source's settings changed
 *	  (alter_source; it stops by itself, see source_worker.c) is started
 *	  again at once: the slot remembers the settings its worker started
 *	  with (SV_SOURCE_SETTINGS), and a stop with other settings in the
 *	  catalog is no failure.
 * Workers record why they failed themselves (streamview.worker_errors).
 * Each version in state 'replaying' (a rebuild) gets a replay worker the
 * same way; when it exits because its version caught up, the version is no
 * longer replaying and the slot is simply forgotten.
 * A worker also takes a session lock on its source's (or version's) catalog
 * object, one no role can take from SQL, so even a second launcher (after a launcher crash) cannot make two consumers.
 * The launcher's workers go with it: when it exits, it terminates them, and
 * the launcher that the supervisor starts next starts them again from their
 * stored offsets.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

typedef struct SvWorkerSlot
{
	int32		source_id;
	int32		replay_version_id; /* 0 for a source worker */
	int32		worker_index;	/* which of the source's workers (0 for a replay worker) */
	int32		worker_count;	/* of how many, for its name (1 for a replay worker) */
	char		name[NAMEDATALEN];
	Oid			owner;
	BackgroundWorkerHandle *handle;
	TimestampTz started_at;
	TimestampTz next_start;
	int			failures;
	bool		seen;			/* still in the catalog this round */
	bool		waiting;		/* kept from starting by streamview.max_workers */
	char		settings[SV_SOURCE_SETTINGS_LEN];	/* the source's, when the worker was started */
} SvWorkerSlot;

static List *slots = NIL;
static bool sv_was_enabled = true;

/*
 * A worker (or the launcher) that ran since started_at stopped: how long to
 * wait before starting it again, in microseconds, counting this failure in
 * *failures: restart_delay · 2^(failures-1), capped at max_restart_delay.
 * One that ran for a minute is forgiven its earlier failures.
 */
int64
streamview_restart_backoff(TimestampTz started_at, int *failures)
{
	int64		delay;

	if (TimestampDifferenceExceeds(started_at, GetCurrentTimestamp(), 60 * 1000))
		*failures = 0;
	(*failures)++;
	delay = (int64) streamview_restart_delay_s * USECS_PER_SEC << Min(*failures - 1, 16);
	return Min(delay, (int64) streamview_max_restart_delay_s * USECS_PER_SEC);
}

static SvWorkerSlot *
sv_find_slot(int32 source_id, int32 replay_version_id, int32 worker_index)
{
	ListCell   *lc;

	foreach(lc, slots)
	{
		SvWorkerSlot *slot = lfirst(lc);

		if (slot->source_id == source_id && slot->replay_version_id == replay_version_id &&
			slot->worker_index == worker_index)
			return slot;
	}
	return NULL;
}

/*
 * Register a dynamic background worker for the slot, as the kind it needs
 * (source or replay), with its SvWorkerParams in bgw_extra, and wait until it
 * has started.  When no worker slot is free, warn and try again after
 * streamview.restart_delay.
 */
static void
sv_start_worker(SvWorkerSlot *slot)
{
	BackgroundWorker bgw = {0};
	pid_t		pid;
	MemoryContext old;
	bool		registered;
	SvWorkerParams params = {
		.dboid = MyDatabaseId,
		.owner = slot->owner,
		.kind = slot->replay_version_id ? SV_WORKER_REPLAY : SV_WORKER_SOURCE,
		.source_id = slot->source_id,
		.replay_version_id = slot->replay_version_id,
		.worker_index = slot->worker_index,
	};

	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "pg_streamview");

	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "streamview_worker_main");
	if (params.kind == SV_WORKER_SOURCE && slot->worker_count > 1)
	{
		snprintf(bgw.bgw_name, BGW_MAXLEN, "%s %s %d/%d", SV_BGW_TYPE_SOURCE, slot->name,
				 slot->worker_index + 1, slot->worker_count);
		snprintf(bgw.bgw_type, BGW_MAXLEN, SV_BGW_TYPE_SOURCE);
	}
	else if (params.kind == SV_WORKER_SOURCE)
	{
		snprintf(bgw.bgw_name, BGW_MAXLEN, "%s %s", SV_BGW_TYPE_SOURCE, slot->name);
		snprintf(bgw.bgw_type, BGW_MAXLEN, SV_BGW_TYPE_SOURCE);
	}
	else
	{
		snprintf(bgw.bgw_name, BGW_MAXLEN, "%s %s", SV_BGW_TYPE_REPLAY, slot->name);
		snprintf(bgw.bgw_type, BGW_MAXLEN, SV_BGW_TYPE_REPLAY);
	}
	bgw.bgw_main_arg = Int32GetDatum(slot->source_id);
	bgw.bgw_notify_pid = MyProcPid;
	memcpy(bgw.bgw_extra, &params, sizeof(params));

	/* The handle must outlive this round's SPI memory. */
	old = MemoryContextSwitchTo(TopMemoryContext);
	registered = RegisterDynamicBackgroundWorker(&bgw, &slot->handle);
	MemoryContextSwitchTo(old);
	if (!registered)
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a worker for source \"%s\"", slot->name),
				 errhint("Raise max_worker_processes.")));
		slot->handle = NULL;
		slot->next_start = GetCurrentTimestamp() + streamview_restart_delay_s * USECS_PER_SEC;
		return;
	}
	if (WaitForBackgroundWorkerStartup(slot->handle, &pid) != BGWH_STARTED)
		slot->handle = NULL;
	slot->started_at = GetCurrentTimestamp();
}

/* A worker stopped: note the failure and when to try again. */
static void
sv_worker_stopped(SvWorkerSlot *slot)
{
	int64		delay = streamview_restart_backoff(slot->started_at, &slot->failures);

	slot->next_start = GetCurrentTimestamp() + delay;
	pfree(slot->handle);
	slot->handle = NULL;
	ereport(LOG,
			(errmsg("pg_streamview worker for source \"%s\" stopped; restarting in %.1f s",
					slot->name, delay / 1e6)));
}

/*
 * A worker stopped because its source's settings changed (alter_source):
 * not a failure; it is started again at once, with the failures forgotten.
 */
static void
sv_worker_changed(SvWorkerSlot *slot)
{
	pfree(slot->handle);
	slot->handle = NULL;
	slot->failures = 0;
	slot->next_start = 0;
	ereport(LOG,
			(errmsg("pg_streamview worker for source \"%s\" stopped: its source was changed; restarting",
					slot->name)));
}

/* Workers this launcher has running (or starting). */
static int
sv_running_workers(void)
{
	ListCell   *lc;
	int			n = 0;

	foreach(lc, slots)
		if (((SvWorkerSlot *) lfirst(lc))->handle != NULL)
			n++;
	return n;
}

/*
 * All streamview.max_workers are busy: the slot waits for one, and its
 * source says so (status.error) until its worker starts and clears it.
 */
static void
sv_wait_for_worker(SvWorkerSlot *slot)
{
	char	   *msg;

	if (slot->waiting)
		return;
	slot->waiting = true;
	msg = psprintf("waiting for a worker: all %d of streamview.max_workers are busy",
				   streamview_max_workers);
	ereport(LOG,
			(errmsg("pg_streamview: %s for %s \"%s\"", msg,
					slot->replay_version_id ? "the rebuild of" : "source", slot->name),
			 errhint("Raise streamview.max_workers (and max_worker_processes), or drop sources.")));
	if (slot->replay_version_id == 0)
		SPI_execute_with_args("UPDATE streamview.sources SET last_error = $2, last_error_at = now() "
							  "WHERE source_id = $1",
							  2, (Oid[]) {INT4OID, TEXTOID},
							  (Datum[]) {Int32GetDatum(slot->source_id), CStringGetTextDatum(msg)},
							  NULL, false, 0);
}

/*
 * The source's SV_SOURCE_SETTINGS as committed now, not as this round's
 * snapshot has them (a statement of its own takes a new snapshot); NULL
 * when the source is gone.
 */
static char *
sv_current_settings(int32 source_id)
{
	SPI_execute_with_args("SELECT " SV_SOURCE_SETTINGS " FROM streamview.sources s WHERE s.source_id = $1",
						  1, (Oid[]) {INT4OID}, (Datum[]) {Int32GetDatum(source_id)}, NULL, false, 1);
	if (SPI_processed == 0)
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * Source workers connect as the extension's owner (catalog bookkeeping is
 * theirs) and run each view's statement as that view's owner.
 */
static void
sv_reconcile_source(int32 source_id, int32 replay_version_id, int32 worker_index,
					int32 worker_count, const char *name, Oid owner, const char *settings)
{
	SvWorkerSlot *slot = sv_find_slot(source_id, replay_version_id, worker_index);
	pid_t		pid;
	bool		changed;

	if (slot == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		slot = palloc0(sizeof(SvWorkerSlot));
		slot->source_id = source_id;
		slot->replay_version_id = replay_version_id;
		slot->worker_index = worker_index;
		slots = lappend(slots, slot);
		MemoryContextSwitchTo(old);
	}
	strlcpy(slot->name, name, NAMEDATALEN);
	slot->worker_count = worker_count;
	slot->owner = owner;
	slot->seen = true;

	/*
	 * A running worker whose source changed stops by itself at its next
	 * batch or look at the catalog (source_worker.c); then, or when it was
	 * waiting to be restarted after a failure, the next one starts at once.
	 * A worker stops on a change as soon as it is committed, which may be
	 * after this round's snapshot was taken: a stopped worker's source is
	 * read again before its stop is called a failure.
	 */
	changed = strcmp(slot->settings, settings) != 0;
	if (slot->handle && GetBackgroundWorkerPid(slot->handle, &pid) == BGWH_STOPPED)
	{
		if (!changed)
		{
			char	   *now = sv_current_settings(source_id);

			if (now != NULL && strcmp(slot->settings, now) != 0)
			{
				changed = true;
				settings = now;
			}
		}
		if (changed)
			sv_worker_changed(slot);
		else
			sv_worker_stopped(slot);
	}
	if (slot->handle == NULL && (changed || GetCurrentTimestamp() >= slot->next_start))
	{
		if (sv_running_workers() >= streamview_max_workers)
		{
			sv_wait_for_worker(slot);
			return;
		}
		slot->waiting = false;
		if (changed)
			slot->failures = 0;
		strlcpy(slot->settings, settings, SV_SOURCE_SETTINGS_LEN);
		sv_start_worker(slot);
	}
}

/*
 * Is the extension installed, with SQL objects of the library's version?
 * Workers of one version over a catalog of another would fail batch after
 * batch: until ALTER EXTENSION ... UPDATE, none is started (said once).
 */
static bool
sv_sql_version_matches(void)
{
	static char *reported = NULL;
	char	   *installed = streamview_installed_version();

	if (installed == NULL || strcmp(installed, STREAMVIEW_VERSION) == 0)
	{
		reported = NULL;
		return installed != NULL;
	}
	if (reported == NULL || strcmp(reported, installed) != 0)
	{
		ereport(WARNING,
				(errmsg("pg_streamview's SQL objects are version %s, its library version %s: no worker runs",
						installed, STREAMVIEW_VERSION),
				 errhint("Run ALTER EXTENSION pg_streamview UPDATE in database \"%s\" as a superuser.",
						 streamview_database)));
		reported = MemoryContextStrdup(TopMemoryContext, installed);
	}
	return false;
}

/*
 * Retention of the catalog's history (streamview.*_retention), in a round's
 * transaction: once a minute, and at once after the settings change.  Housekeeping, not per event; _apply_retention knows what must
 * stay (the latest validation of a version, the newest offset mark of a
 * partition).
 */
static void
sv_retention(void)
{
	Oid			argtypes[4] = {INT4OID, INT4OID, INT4OID, INT4OID};
	Datum		args[4];

	char	   *installed = streamview_installed_version();

	/* not installed, or of another version (sv_sql_version_matches says so) */
	if (installed == NULL || strcmp(installed, STREAMVIEW_VERSION) != 0)
		return;
	args[0] = Int32GetDatum(streamview_dead_letter_retention_s);
	args[1] = Int32GetDatum(streamview_worker_error_retention_s);
	args[2] = Int32GetDatum(streamview_validation_retention_s);
	args[3] = Int32GetDatum(streamview_offset_mark_retention_s);
	SPI_execute_with_args("SELECT streamview_internal._apply_retention("
						  "pg_catalog.make_interval(secs => nullif($1, 0)), "
						  "pg_catalog.make_interval(secs => nullif($2, 0)), "
						  "pg_catalog.make_interval(secs => nullif($3, 0)), "
						  "pg_catalog.make_interval(secs => nullif($4, 0)))",
						  4, argtypes, args, NULL, false, 0);
}

/*
 * One round of the launcher, in a transaction of its own: read the sources
 * and the replaying versions, start the workers that are missing (with
 * back-off, within streamview.max_workers), and terminate the workers whose
 * source or version is gone.
 */
static void
sv_reconcile(bool retention_due)
{
	ListCell   *lc;
	bool		have_extension;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "reconciling source workers");

	foreach(lc, slots)
		((SvWorkerSlot *) lfirst(lc))->seen = false;

	/* switched off: no slot is seen, so every running worker is stopped */
	if (streamview_enabled != sv_was_enabled)
		ereport(LOG, (errmsg(streamview_enabled ? "pg_streamview workers enabled"
							 : "pg_streamview workers disabled (streamview.enabled = off): stopping them")));
	sv_was_enabled = streamview_enabled;
	have_extension = streamview_enabled && sv_sql_version_matches();
	if (have_extension)
	{
		Oid			extowner = streamview_extension_owner();

		/*
		 * sources.workers source workers per source, one replay worker per
		 * replaying version (none for a paused source: its running workers
		 * are stopped below).
		 */
		SPITupleTable *tt;
		uint64		n;

		SPI_execute("SELECT s.source_id, 0, s.name, " SV_SOURCE_SETTINGS ", k.k, greatest(s.workers, 1)"
					" FROM streamview.sources s, generate_series(0, greatest(s.workers, 1) - 1) k (k)"
					" WHERE s.paused_at IS NULL "
					"UNION ALL "
					"SELECT v.source_id, ver.version_id, ver.view_name || ' version ' || ver.version, "
					SV_SOURCE_SETTINGS ", 0, 1"
					" FROM streamview.versions ver JOIN streamview.views v USING (view_id) "
					"JOIN streamview.sources s ON s.source_id = v.source_id "
					"WHERE ver.state = 'replaying' AND s.paused_at IS NULL ORDER BY 1, 2, 5", true, 0);
		/* kept: reconciling a source may run statements of its own */
		tt = SPI_tuptable;
		n = SPI_processed;
		for (uint64 i = 0; i < n; i++)
		{
			HeapTuple	tup = tt->vals[i];
			bool		isnull;

			sv_reconcile_source(DatumGetInt32(SPI_getbinval(tup, tt->tupdesc, 1, &isnull)),
								DatumGetInt32(SPI_getbinval(tup, tt->tupdesc, 2, &isnull)),
								DatumGetInt32(SPI_getbinval(tup, tt->tupdesc, 5, &isnull)),
								DatumGetInt32(SPI_getbinval(tup, tt->tupdesc, 6, &isnull)),
								SPI_getvalue(tup, tt->tupdesc, 3), extowner,
								SPI_getvalue(tup, tt->tupdesc, 4));
		}
	}

	foreach(lc, slots)
	{
		SvWorkerSlot *slot = lfirst(lc);

		if (slot->seen)
			continue;
		if (slot->handle)
		{
			TerminateBackgroundWorker(slot->handle);
			pfree(slot->handle);
		}
		slots = foreach_delete_current(slots, lc);
		pfree(slot);
	}

	if (retention_due)
		sv_retention();
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}


/*
 * Exiting: the workers go too.  Left running they would serve on unwatched,
 * and the next launcher's workers for their sources would find them holding
 * the worker locks ("Another worker serves it") and stop, again and again.
 */
static void
sv_stop_workers(int code, Datum arg)
{
	ListCell   *lc;

	foreach(lc, slots)
	{
		SvWorkerSlot *slot = lfirst(lc);

		if (slot->handle)
			TerminateBackgroundWorker(slot->handle);
	}
}

/* The supervisor hands it the database's OID (bgw_main_arg). */
void
streamview_launcher_main(Datum arg)
{
	TimestampTz last_retention = 0;

	streamview_worker_signals();
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), InvalidOid, 0);
	streamview_worker_context(SV_BGW_TYPE_LAUNCHER);
	streamview_register_launcher_latch();
	before_shmem_exit(sv_stop_workers, (Datum) 0);
	ereport(LOG, (errmsg("pg_streamview launcher started in database \"%s\"", streamview_database)));

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (streamview_stop_requested())
			streamview_stop();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			last_retention = 0;
		}
		if (TimestampDifferenceExceeds(last_retention, GetCurrentTimestamp(), 60 * 1000))
		{
			sv_reconcile(true);
			last_retention = GetCurrentTimestamp();
		}
		else
			sv_reconcile(false);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 streamview_launcher_naptime_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
