/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  What every pg_streamview background worker shares, source worker and
 *	  replay worker alike: the transaction bracket of a batch, the settings
 *	  a worker pins, how it stops, and the error context that names the
 *	  worker's source (and the event at hand) on every line it logs.
 *
 * The two kinds of worker (SvWorkerKind) run the same loop
 * (source_worker.c); replay.c holds what only a replay worker does.  The
 * launcher hands a worker its SvWorkerParams in bgw_extra.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "access/xact.h"
#include "pgstat.h"
#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

/* The memory context that was current when the batch's transaction began. */
static MemoryContext sv_batch_caller_cxt = NULL;

/* ---------- stopping ---------- */

static volatile sig_atomic_t sv_stop_requested = false;
static volatile sig_atomic_t sv_in_batch = false;

/*
 * SIGTERM is how a worker is told to stop: drop_source, drop_view, the
 * launcher, a server shutdown.  That is routine, so it is not the FATAL
 * "terminating background worker" of die(): outside a batch the loop sees
 * the request at its next round, at once since the latch is set, and exits
 * with a LOG line.  Inside a batch it is die() after all, so that a long
 * statement does not hold up the stop; the batch's rollback loses nothing.
 */
static void
sv_handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	sv_stop_requested = true;
	if (sv_in_batch)
		die(postgres_signal_arg);
	SetLatch(MyLatch);
	errno = save_errno;
}

void
streamview_worker_signals(void)
{
	pqsignal(SIGTERM, sv_handle_sigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
}

/* Has the worker been asked to stop?  Waits poll it, as they check interrupts. */
bool
streamview_stop_requested(void)
{
	return sv_stop_requested;
}

static char sv_context_worker[NAMEDATALEN * 3];

/* The worker stops because it was asked to: a LOG line, and exit code 0. */
void
streamview_stop(void)
{
	ereport(LOG, (errmsg("%s stopping", sv_context_worker[0] ? sv_context_worker : "pg_streamview worker")));
	proc_exit(0);
}

/*
 * The worker stops because its work changed under it (why, and what comes
 * next as detail): routine too, a LOG line and exit code 0.  Outside a
 * transaction.
 */
void
streamview_stop_because(const char *why, const char *detail)
{
	ereport(LOG, (errmsg("%s stopping: %s",
						 sv_context_worker[0] ? sv_context_worker : "pg_streamview worker", why),
				  errdetail_internal("%s", detail)));
	proc_exit(0);
}

/* The batch transaction was aborted (the worker's error path). */
void
streamview_batch_aborted(void)
{
	sv_in_batch = false;
}

/*
 * Begin a batch's transaction, the canonical bracket of a background worker
 * (worker_spi): statement start, transaction, SPI, snapshot, activity.
 */
void
streamview_begin_batch(const char *activity)
{
	sv_batch_caller_cxt = CurrentMemoryContext;
	if (sv_stop_requested)
		streamview_stop();		/* asked before the batch began: not worth starting */
	sv_in_batch = true;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* Commit it, and come back to the memory context the caller was in. */
void
streamview_commit_batch(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	sv_in_batch = false;
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	/* commit leaves TopMemoryContext current */
	if (sv_batch_caller_cxt)
		MemoryContextSwitchTo(sv_batch_caller_cxt);
}

/*
 * A view is a function of the log: settings that change what SQL computes
 * or whether it runs are pinned, whatever the database or role defaults
 * say.  Generated SQL names everything it uses; pg_temp comes last so that
 * temporary objects cannot stand in for catalog ones.  (A view's statement
 * gets its own timeout, streamview.statement_timeout: see apply.c.)
 */
void
streamview_pin_worker_settings(void)
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

/* ---------- error context ---------- */

static int32 sv_context_partition = -1;
static int64 sv_context_offset = -1;
static ErrorContextCallback sv_context_callback;

static void
sv_error_context(void *arg)
{
	if (sv_context_partition >= 0)
		errcontext("%s, partition %d, offset " INT64_FORMAT,
				   sv_context_worker, sv_context_partition, sv_context_offset);
	else
		errcontext("%s", sv_context_worker);
}

/*
 * From now on every message the worker reports says which worker it is
 * ("pg_streamview source worker for source \"clicks\"").  Installed at the
 * bottom of the error context stack, for the life of the process.
 */
void
streamview_worker_context(const char *description)
{
	strlcpy(sv_context_worker, description, sizeof(sv_context_worker));
	sv_context_callback.callback = sv_error_context;
	sv_context_callback.arg = NULL;
	sv_context_callback.previous = NULL;
	error_context_stack = &sv_context_callback;
}

/* The event at hand, for the messages reported while it is (-1: none). */
void
streamview_worker_context_event(int32 partition, int64 offset)
{
	sv_context_partition = partition;
	sv_context_offset = offset;
}
