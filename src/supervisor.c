/*-------------------------------------------------------------------------
 *
 * supervisor.c
 *	  The supervisor: keeps the launcher running in streamview.database.
 *
 * A static background worker, registered at preload, connected to no
 * database: it reads only pg_database, a shared catalog, so it cannot fail
 * for want of a database.  Every streamview.launcher_naptime it looks for
 * streamview.database:
 *  - missing, not accepting connections, or invalid: it says so once, a
 *	  WARNING with a DETAIL and a HINT, and looks again the next round;
 *	  nothing more is logged while that lasts;
 *  - there: it starts the launcher, a dynamic background worker connected
 *	  to it by OID, and starts it again whenever it stops, with the back-off
 *	  of any worker (streamview_restart_backoff).
 * So a missing database is one warning, and CREATE DATABASE is enough for
 * the launcher to start within a naptime, without a restart.  (The launcher
 * used to be the static worker itself: its connection failed with FATAL,
 * and the postmaster started it again every 5 s, a FATAL each time.)
 *
 * One launcher at a time.  A supervisor that exits terminates its launcher,
 * which terminates its workers (launcher.c); and a supervisor starts a
 * launcher only while none is registered in shared memory (shmem.c), so one
 * the postmaster started again waits for the launcher of the one before to
 * be gone.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

/* After an error of its own, the postmaster starts the supervisor again after this. */
#define SV_SUPERVISOR_RESTART_S 5

/* What stands between streamview.database and a launcher. */
typedef enum SvDatabaseProblem
{
	SV_DATABASE_OK,
	SV_DATABASE_MISSING,
	SV_DATABASE_NO_CONNECTIONS,
	SV_DATABASE_INVALID
} SvDatabaseProblem;

/* The launcher this supervisor started; NULL while none runs. */
static BackgroundWorkerHandle *sv_launcher = NULL;
static TimestampTz sv_launcher_started_at = 0;
static TimestampTz sv_launcher_next_start = 0;
static int	sv_launcher_failures = 0;

void
streamview_register_supervisor(void)
{
	BackgroundWorker bgw = {0};

	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = SV_SUPERVISOR_RESTART_S;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "pg_streamview");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "streamview_supervisor_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, SV_BGW_TYPE_SUPERVISOR);
	snprintf(bgw.bgw_type, BGW_MAXLEN, SV_BGW_TYPE_SUPERVISOR);
	RegisterBackgroundWorker(&bgw);
}

/*
 * Say what is wrong with streamview.database, once for as long as it lasts
 * (a log line per naptime would be a flood, and alerts trip on it).
 */
static void
sv_report_database(SvDatabaseProblem problem)
{
	static SvDatabaseProblem reported = SV_DATABASE_OK;
	const char *db = streamview_database;

	if (problem == reported)
		return;
	reported = problem;
	switch (problem)
	{
		case SV_DATABASE_OK:
			break;
		case SV_DATABASE_MISSING:
			ereport(WARNING,
					(errcode(ERRCODE_UNDEFINED_DATABASE),
					 errmsg("database \"%s\" named by streamview.database does not exist", db),
					 errdetail("pg_streamview runs no stream source until it does; it looks for the database "
							   "every streamview.launcher_naptime and starts its launcher there."),
					 errhint("Create it (CREATE DATABASE %s) and run CREATE EXTENSION pg_streamview in it, "
							 "or set streamview.database to the database that has the extension and "
							 "restart the server.", quote_identifier(db))));
			break;
		case SV_DATABASE_NO_CONNECTIONS:
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("database \"%s\" named by streamview.database does not allow connections", db),
					 errdetail("pg_streamview runs no stream source until it does."),
					 errhint("Run ALTER DATABASE %s ALLOW_CONNECTIONS true, or set streamview.database "
							 "to another database and restart the server.", quote_identifier(db))));
			break;
		case SV_DATABASE_INVALID:
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("database \"%s\" named by streamview.database is invalid", db),
					 errdetail("A DROP DATABASE of it was interrupted; pg_streamview runs no stream source in it."),
					 errhint("Drop it (DROP DATABASE %s) and create it again, or set streamview.database "
							 "to another database and restart the server.", quote_identifier(db))));
			break;
	}
}

/*
 * The OID of streamview.database if a launcher can connect to it, else
 * InvalidOid (and the reason is reported, once).  Reads pg_database, a
 * shared catalog, in a transaction of its own, and not through its index:
 * in no database, the relation cache knows a shared catalog's indexes only
 * from the init file that a backend connected to a database writes, and
 * right after initdb there is none yet; opening the index then reads
 * pg_class, which needs a database (FATAL).  pg_database is small.
 */
static Oid
sv_served_database(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			dboid = InvalidOid;
	SvDatabaseProblem problem = SV_DATABASE_MISSING;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_database_datname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum(streamview_database));
	scan = systable_beginscan(rel, DatabaseNameIndexId, false, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (!db->datallowconn)
			problem = SV_DATABASE_NO_CONNECTIONS;
#ifdef DATCONNLIMIT_INVALID_DB	/* 15.4 and later */
		else if (db->datconnlimit == DATCONNLIMIT_INVALID_DB)
			problem = SV_DATABASE_INVALID;
#endif
		else
		{
			problem = SV_DATABASE_OK;
			dboid = db->oid;
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	sv_report_database(problem);
	return dboid;
}

/*
 * Start the launcher in the database, a dynamic background worker that the
 * postmaster never restarts (this supervisor does), and wait until it has
 * started.  When no background worker slot is free, warn and try again
 * after the back-off.
 */
static void
sv_start_launcher(Oid dboid)
{
	BackgroundWorker bgw = {0};
	MemoryContext old;
	bool		registered;
	pid_t		pid;

	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "pg_streamview");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "streamview_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, SV_BGW_TYPE_LAUNCHER);
	snprintf(bgw.bgw_type, BGW_MAXLEN, SV_BGW_TYPE_LAUNCHER);
	bgw.bgw_main_arg = ObjectIdGetDatum(dboid);
	bgw.bgw_notify_pid = MyProcPid;

	sv_launcher_started_at = GetCurrentTimestamp();
	old = MemoryContextSwitchTo(TopMemoryContext);
	registered = RegisterDynamicBackgroundWorker(&bgw, &sv_launcher);
	MemoryContextSwitchTo(old);
	if (!registered)
	{
		int64		delay = streamview_restart_backoff(sv_launcher_started_at, &sv_launcher_failures);

		sv_launcher = NULL;
		sv_launcher_next_start = sv_launcher_started_at + delay;
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the pg_streamview launcher: no background worker slot is free"),
				 errdetail("Trying again in %.1f s.", delay / 1e6),
				 errhint("Raise max_worker_processes.")));
		return;
	}
	if (WaitForBackgroundWorkerStartup(sv_launcher, &pid) == BGWH_POSTMASTER_DIED)
		proc_exit(1);
}

/* The launcher stopped: when to start it again. */
static void
sv_launcher_stopped(void)
{
	int64		delay = streamview_restart_backoff(sv_launcher_started_at, &sv_launcher_failures);

	sv_launcher_next_start = GetCurrentTimestamp() + delay;
	pfree(sv_launcher);
	sv_launcher = NULL;
	ereport(LOG, (errmsg("pg_streamview launcher stopped; starting it again in %.1f s", delay / 1e6)));
}

/*
 * One round: keep a launcher running in streamview.database if it can be
 * served.  Returns how long to sleep, in ms: a naptime, or less when the
 * launcher's back-off ends sooner.  (The postmaster wakes the supervisor
 * when the launcher stops: bgw_notify_pid.)
 */
static long
sv_supervise(void)
{
	TimestampTz now = GetCurrentTimestamp();
	pid_t		pid;
	Oid			dboid;

	if (sv_launcher != NULL)
	{
		if (GetBackgroundWorkerPid(sv_launcher, &pid) != BGWH_STOPPED)
			return streamview_launcher_naptime_ms;
		sv_launcher_stopped();
	}
	if (now < sv_launcher_next_start)
		return Min(streamview_launcher_naptime_ms, (sv_launcher_next_start - now) / 1000 + 1);
	/* the launcher of a supervisor before this one is still stopping */
	if (streamview_launcher_running())
		return streamview_launcher_naptime_ms;
	dboid = sv_served_database();
	if (OidIsValid(dboid))
		sv_start_launcher(dboid);
	return streamview_launcher_naptime_ms;
}

/* Exiting: the launcher goes too (and its workers with it). */
static void
sv_stop_launcher(int code, Datum arg)
{
	if (sv_launcher != NULL)
		TerminateBackgroundWorker(sv_launcher);
}

void
streamview_supervisor_main(Datum arg)
{
	long		nap;

	streamview_worker_signals();
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	streamview_worker_context(SV_BGW_TYPE_SUPERVISOR);
	before_shmem_exit(sv_stop_launcher, (Datum) 0);

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();

		/*
		 * Asked to stop (a shutdown, or pg_terminate_backend): a LOG line,
		 * and exit code 1, with which the postmaster starts a static worker
		 * again unless the server is shutting down (0 would unregister it).
		 */
		if (streamview_stop_requested())
		{
			ereport(LOG, (errmsg("%s stopping", SV_BGW_TYPE_SUPERVISOR)));
			proc_exit(1);
		}
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		nap = sv_supervise();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 nap, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
