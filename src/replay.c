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
 * the batch that brought it within one batch of the live version
 * (version.c), and the source worker maintains it from the offsets stored
 * with that batch, reading again what it lacks, so nothing is skipped and
 * nothing is applied twice.
 *
 * Its batches fill up (streamview_replay_consume): nobody reads a replay
 * before it catches up, so it has no freshness to keep, and a batch's fixed
 * cost is paid once per batch_size messages rather than once per fetch.
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
static int64 sv_replay_batches = 0;	/* and the batches they came in */

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

/* Messages left between the version's offsets and the log ends its consumer saw. */
static int64
sv_replay_behind(SvVersion *v, SvKafka *kafka)
{
	int64		behind = 0;

	for (int p = 0; p < v->nparts; p++)
	{
		int64		end = streamview_kafka_log_end(kafka, p);

		if (end > 0)
			behind += end - Max(v->parts[p].next_offset, 0);
	}
	return behind;
}

/*
 * A replay's batch.  A source worker applies what its queue has ready as
 * soon as the queue is drained, for freshness; a replay is not read by
 * anyone until it catches up, so it fills its batches instead: until the
 * batch is full or holds every message up to the log end (as its fetches
 * last saw it), it waits (at most timeout_ms, streamview.batch_timeout) for
 * the next fetch rather than applying a part-filled batch.  A fetch may
 * bring only a few messages per partition (small message sets, a broker
 * that returns one set per partition), and a batch's fixed cost (its
 * transaction, the catalog look, the offsets, the catch-up test) would
 * then be paid every few dozen events.  At the log end a batch ends with
 * what the last fetches brought, so that the replay meets the live
 * version's offsets and hands over.  The limits are those of
 * streamview_kafka_consume, and max_rate's (streamview_replay_batch_limit).
 */
int
streamview_replay_consume(SvVersion *v, SvKafka *kafka, SvEvent *events, int capacity,
						  int64 max_bytes, int timeout_ms)
{
	int			limit = streamview_replay_batch_limit(v, capacity);
	TimestampTz deadline = GetCurrentTimestamp() + (int64) timeout_ms * 1000;
	int64		bytes = 0;
	int			n = 0;

	while (n < limit && bytes < max_bytes)
	{
		long		left_ms = n == 0 ? timeout_ms
			: (long) ((deadline - GetCurrentTimestamp()) / 1000);
		int			got;

		if (left_ms <= 0)
			break;
		got = streamview_kafka_consume(kafka, events + n, limit - n, max_bytes - bytes, left_ms);
		for (int i = n; i < n + got; i++)
			bytes += events[i].keylen + events[i].paylen;
		n += got;
		/* nothing came in time, or the latch is set (a stop, a reload): the caller looks */
		if (got == 0 || streamview_stop_requested())
			break;
		if (sv_replay_behind(v, kafka) <= n)
			break;				/* the batch holds the log up to its end: at the end */
	}
	if (n > 0)
	{
		sv_replayed += n;
		sv_replay_batches++;
	}
	return n;
}

/*
 * Keep to max_rate events per second (counted as they are taken, by
 * streamview_replay_consume) by sleeping on the latch (so SIGTERM still
 * ends the wait at once).
 */
void
streamview_replay_throttle(SvVersion *v)
{
	int64		due_us;
	long		secs;
	int			usecs;

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
 * Is the version within a batch of the live version (streamview_caught_up)?
 * If so it becomes caught_up in the current transaction (the one that
 * applied its last batch).  Inside a transaction, SPI connected.
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
			(errmsg("pg_streamview replay of view \"%s\" version %d caught up after %lld events in %lld batches",
					v->view_name, v->version, (long long) sv_replayed, (long long) sv_replay_batches)));
	proc_exit(0);
}
