/*-------------------------------------------------------------------------
 *
 * replay.c
 *	  What only a replay worker does: it replays one version (a rebuild) from
 *	  the start of the log, or from offset marks, with a consumer of its own,
 *	  at most max_rate events per second, until it has caught up with the
 *	  live version; then it hands the version over to the source worker and
 *	  exits.
 *
 * The hand-over is exact: the version turns caught_up in the transaction of
 * the batch that brought it level with the live version (version.c), and
 * the source worker maintains it from the offsets stored with that batch,
 * so nothing is skipped and nothing is applied twice.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/wait_event.h"

static TimestampTz sv_replay_started = 0;
static int64 sv_replayed = 0;	/* events consumed by this replay run */

/* Record where the replay starts in each partition, for progress. */
void
streamview_replay_start(SvVersion *v, SvKafka *kafka, int nparts)
{
	int64	   *low = palloc(nparts * sizeof(int64));

	for (int p = 0; p < nparts; p++)
		low[p] = streamview_kafka_log_start(kafka, p, 5000);
	sv_replay_started = GetCurrentTimestamp();
	streamview_begin_batch("starting replay");
	streamview_record_start_offsets(v, nparts, low);
	streamview_commit_batch();
	pfree(low);
}

/* The most messages one batch may take under max_rate. */
int
streamview_replay_batch_limit(SvVersion *v, int capacity)
{
	if (v->max_rate <= 0)
		return capacity;
	return (int) Max(1, Min((int64) capacity, v->max_rate / 10));
}

/*
 * Count n more events, and keep to max_rate events per second by sleeping
 * on the latch (so SIGTERM still ends the wait at once).
 */
void
streamview_replay_throttle(SvVersion *v, int n)
{
	int64		due_us;
	long		secs;
	int			usecs;

	sv_replayed += n;
	if (v->max_rate <= 0)
		return;
	due_us = sv_replayed * USECS_PER_SEC / v->max_rate;
	TimestampDifference(sv_replay_started, GetCurrentTimestamp(), &secs, &usecs);
	if (secs * USECS_PER_SEC + usecs >= due_us)
		return;
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 (due_us - secs * USECS_PER_SEC - usecs) / 1000 + 1, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
}

/*
 * Has the version reached the live version's offsets?  If so it becomes
 * caught_up in the current transaction (the one that applied its last
 * batch).  Inside a transaction, SPI connected.
 */
bool
streamview_replay_check_caught_up(SvVersion *v)
{
	if (!streamview_caught_up(v))
		return false;
	streamview_mark_caught_up(v);
	return true;
}

/* Caught up and committed: the source worker takes the version over. */
void
streamview_replay_done(SvVersion *v)
{
	ereport(LOG,
			(errmsg("pg_streamview replay of view \"%s\" version %d caught up after %lld events",
					v->view_name, v->version, (long long) sv_replayed)));
	proc_exit(0);
}
