/*-------------------------------------------------------------------------
 *
 * align.c
 *	  Reading a backlog's partitions in step, by event time.
 *
 * librdkafka asks a broker for all its partitions in one fixed order, and
 * the broker fills its answer (fetch.max.bytes) from the first of them:
 * reading a backlog, a consumer reads a few partitions to their end before
 * the others begin (measured on the benchmark's topic of 32 partitions:
 * partitions 0-5 first, 40,000 messages ahead of 26 others not yet read).
 * A (window, keys) whose events lie in several partitions is then upserted
 * once per batch that reads one of them: in make bench's workload (a), 0.59
 * rows per event whatever the batch's size, where reading in step makes it
 * 0.43 in batches of 300,000 events and 0.31 in batches of 1,000,000 (the
 * topic has 0.285 (minute, user) groups per event).
 *
 * So a worker pauses (streamview_kafka_pause) a partition whose latest event
 * time read is more than streamview.max_partition_skew ahead of the slowest
 * partition that has a backlog, and resumes it once it is within half of
 * that, or has no backlog left: the fetcher then serves the partitions
 * behind.  A partition at its log end is never paused (it has no backlog),
 * so a stream that keeps up is read as it comes; a partition far behind the
 * others (a producer that was down) holds them back until it has caught up,
 * read alone and so at full speed.  The watermark waited for it anyway.
 *
 * A partition not read from yet, with a backlog, counts as the slowest: the
 * others pause until it brings its first message.  A round that brings
 * nothing resumes every partition, and a partition still not read from then
 * counts no more until it brings a message: a log whose messages cannot be
 * read (deleted by retention while the consumer looked) must not hold the
 * others paused.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "utils/memutils.h"

int			streamview_max_partition_skew_ms = 600000;

/* Per partition of the current assignment. */
typedef struct SvAlignPart
{
	bool		read;			/* a message with an event time was read */
	bool		ignored;		/* not read from, and a round brought nothing */
	TimestampTz latest;			/* the latest event time read */
} SvAlignPart;

static SvAlignPart *sv_parts = NULL;
static int	sv_nparts = 0;

/* A new assignment (librdkafka resumes every partition): start afresh. */
void
streamview_align_reset(int nparts)
{
	if (sv_parts)
		pfree(sv_parts);
	sv_parts = MemoryContextAllocZero(TopMemoryContext, Max(nparts, 1) * sizeof(SvAlignPart));
	sv_nparts = nparts;
}

/* The event times of a round's events, once parsed. */
void
streamview_align_note(const SvEvent *events, int n)
{
	for (int i = 0; i < n; i++)
	{
		const SvEvent *ev = &events[i];
		SvAlignPart *ap;

		if (ev->reason != SV_REASON_NONE || ev->partition < 0 || ev->partition >= sv_nparts)
			continue;
		ap = &sv_parts[ev->partition];
		if (!ap->read || ev->event_time > ap->latest)
			ap->latest = ev->event_time;
		ap->read = true;
		ap->ignored = false;
	}
}

static void
sv_resume_all(SvKafka *k)
{
	for (int p = 0; p < sv_nparts; p++)
		if (streamview_kafka_paused(k, p))
			streamview_kafka_pause(k, p, false);
}

/*
 * After a round (got_messages: it brought any), pause the partitions read
 * too far ahead and resume those the others have come near; or, when
 * reading in step does not pay (pays: see source_worker.c), resume them all.
 */
void
streamview_align(SvKafka *k, const SvSource *src, bool got_messages, bool pays)
{
	int64		skew = (int64) streamview_max_partition_skew_ms * 1000;
	TimestampTz slowest = DT_NOEND;
	bool		unread = false;

	if (sv_parts == NULL)
		return;
	if (skew <= 0 || !got_messages || !pays)
	{
		for (int p = 0; !got_messages && p < sv_nparts; p++)
			if (!sv_parts[p].read)
				sv_parts[p].ignored = true;
		sv_resume_all(k);
		return;
	}

	for (int p = 0; p < sv_nparts; p++)
	{
		if (!streamview_owns_partition(src, p) || !streamview_kafka_partition_behind(k, p))
			continue;
		if (sv_parts[p].read)
			slowest = Min(slowest, sv_parts[p].latest);
		else if (!sv_parts[p].ignored)
			unread = true;
	}
	if (slowest == DT_NOEND && !unread)
	{
		sv_resume_all(k);		/* no backlog anywhere */
		return;
	}

	for (int p = 0; p < sv_nparts; p++)
	{
		bool		behind;
		bool		paused;

		if (!sv_parts[p].read || !streamview_owns_partition(src, p))
			continue;
		behind = streamview_kafka_partition_behind(k, p);
		paused = streamview_kafka_paused(k, p);
		if (!paused && behind && (unread || sv_parts[p].latest - slowest > skew))
		{
			elog(DEBUG1, "pg_streamview: pausing partition %d of topic \"%s\": %s", p, src->topic,
				 unread ? "a partition with a backlog was not read yet"
				 : psprintf(INT64_FORMAT " ms ahead of the slowest partition with a backlog",
							(sv_parts[p].latest - slowest) / 1000));
			streamview_kafka_pause(k, p, true);
		}
		else if (paused && (!behind || (!unread && sv_parts[p].latest - slowest <= skew / 2)))
		{
			elog(DEBUG1, "pg_streamview: resuming partition %d of topic \"%s\"", p, src->topic);
			streamview_kafka_pause(k, p, false);
		}
	}
}
