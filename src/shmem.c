/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  The little shared state pg_streamview needs: where the launcher is.
 *
 * Backends that change sources or views wake the launcher when their
 * transaction commits, so workers start and stop within moments instead of
 * at the next naptime.  The launcher publishes its PGPROC here; the spinlock
 * covers only that pointer.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"

typedef struct SvShared
{
	slock_t		mutex;
	PGPROC	   *launcher;
} SvShared;

static SvShared *sv_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
sv_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(SvShared)));
}

static void
sv_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	sv_shared = ShmemInitStruct("pg_streamview", sizeof(SvShared), &found);
	if (!found)
	{
		SpinLockInit(&sv_shared->mutex);
		sv_shared->launcher = NULL;
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
