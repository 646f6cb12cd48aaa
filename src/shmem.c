/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  The little shared state pg_streamview needs: where the launcher and
 *	  the workers are.
 *
 * Backends that change sources or views wake the launcher and the workers
 * when their transaction commits, so that workers start and stop, and a new
 * view starts being filled, within moments instead of at the next naptime
 * or idle round.  The launcher and each source or replay worker publish
 * their PGPROC here (a worker in one of max_worker_processes slots); the
 * spinlock covers only those pointers.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "miscadmin.h"
#include "postmaster/bgworker_internals.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"

typedef struct SvShared
{
	slock_t		mutex;
	PGPROC	   *launcher;
	int			nworkers;		/* slots: max_worker_processes */
	PGPROC	   *workers[FLEXIBLE_ARRAY_MEMBER];	/* NULL: free */
} SvShared;

static SvShared *sv_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* max_worker_processes is fixed at server start: no worker can miss a slot. */
static Size
sv_shmem_size(void)
{
	return add_size(offsetof(SvShared, workers),
					mul_size(max_worker_processes, sizeof(PGPROC *)));
}

static void
sv_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sv_shmem_size()));
}

static void
sv_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	sv_shared = ShmemInitStruct("pg_streamview", sv_shmem_size(), &found);
	if (!found)
	{
		SpinLockInit(&sv_shared->mutex);
		sv_shared->launcher = NULL;
		sv_shared->nworkers = max_worker_processes;
		for (int i = 0; i < sv_shared->nworkers; i++)
			sv_shared->workers[i] = NULL;
	}
	LWLockRelease(AddinShmemInitLock);
}

void
streamview_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = sv_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = sv_shmem_startup;
}

static void
sv_unregister_launcher(int code, Datum arg)
{
	SpinLockAcquire(&sv_shared->mutex);
	if (sv_shared->launcher == MyProc)
		sv_shared->launcher = NULL;
	SpinLockRelease(&sv_shared->mutex);
}

/* Called by the launcher once it is running. */
void
streamview_register_launcher_latch(void)
{
	SpinLockAcquire(&sv_shared->mutex);
	sv_shared->launcher = MyProc;
	SpinLockRelease(&sv_shared->mutex);
	before_shmem_exit(sv_unregister_launcher, (Datum) 0);
}

/* Is a launcher running?  (Published from its start to its exit.) */
bool
streamview_launcher_running(void)
{
	bool		running;

	SpinLockAcquire(&sv_shared->mutex);
	running = sv_shared->launcher != NULL;
	SpinLockRelease(&sv_shared->mutex);
	return running;
}

static void
sv_unregister_worker(int code, Datum arg)
{
	SpinLockAcquire(&sv_shared->mutex);
	for (int i = 0; i < sv_shared->nworkers; i++)
		if (sv_shared->workers[i] == MyProc)
			sv_shared->workers[i] = NULL;
	SpinLockRelease(&sv_shared->mutex);
}

/*
 * Called by a source or replay worker once it serves its source: from now
 * to its exit, streamview_wake_workers sets its latch.
 */
void
streamview_register_worker_latch(void)
{
	SpinLockAcquire(&sv_shared->mutex);
	for (int i = 0; i < sv_shared->nworkers; i++)
		if (sv_shared->workers[i] == NULL)
		{
			sv_shared->workers[i] = MyProc;
			break;
		}
	SpinLockRelease(&sv_shared->mutex);
	before_shmem_exit(sv_unregister_worker, (Datum) 0);
}

/*
 * Wake every worker of this database: one whose source got a new view, or
 * lost one, sees it at once (source_worker.c looks at the catalog when its
 * latch is set).  The others look and find nothing changed: API calls are
 * rare, a look is one query.  A latch is set outside the spinlock; a slot
 * freed meanwhile costs its PGPROC's next owner a spurious wake-up, no more.
 */
void
streamview_wake_workers(void)
{
	if (sv_shared == NULL)
		return;
	for (int i = 0; i < sv_shared->nworkers; i++)
	{
		PGPROC	   *proc;

		SpinLockAcquire(&sv_shared->mutex);
		proc = sv_shared->workers[i];
		SpinLockRelease(&sv_shared->mutex);
		if (proc != NULL && proc->databaseId == MyDatabaseId)
			SetLatch(&proc->procLatch);
	}
}

void
streamview_wake_launcher(void)
{
	PGPROC	   *proc;

	if (sv_shared == NULL)
		return;
	SpinLockAcquire(&sv_shared->mutex);
	proc = sv_shared->launcher;
	SpinLockRelease(&sv_shared->mutex);
	if (proc != NULL)
		SetLatch(&proc->procLatch);
}
