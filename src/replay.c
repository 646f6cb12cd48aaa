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
 * Its rounds fill up (streamview_replay_consume), and its batches take
 * rounds until the log end (source_worker.c): nobody reads a replay before
 * it catches up, so it has no freshness to keep, and a batch's fixed cost
 * is paid once per batch rather than once per fetch.
 *
 * Offsets the brokers no longer keep are read from the source's archive
 * (archive.c) first, partition by partition, up to the first offset the
 * log still has; then Kafka is read from exactly the next offset.  A replay
 * that would miss messages (neither the log nor the archive has them)
 * fails before it applies anything, saying which, unless its rebuild was
 * called with accept_data_loss => true.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

static TimestampTz sv_replay_started = 0;
static int64 sv_replayed = 0;	/* events consumed by this replay run */
static int64 sv_replay_batches = 0;	/* and the batches they came in */

/*
 * Per partition: the first offset the log had when the replay started;
 * below it, the replay reads the archive.  -1: nothing to read there.
 */
static int64 *sv_archive_until = NULL;
static int	sv_archive_nparts = 0;

/*
 * Record where the replay starts in each partition, for progress (the
 * archive's first offset where the replay begins below the log's start),
 * after checking that the log and the archive have every message the
 * replay would read (streamview_replay_archive_plan).
 */
void
streamview_replay_start(const SvSource *src, SvVersion *v, SvKafka *kafka, int nparts)
{
	int64	   *low = palloc(nparts * sizeof(int64));

	for (int p = 0; p < nparts; p++)
		low[p] = streamview_kafka_log_start(kafka, p, 5000);
	sv_replay_started = GetCurrentTimestamp();
	streamview_begin_batch("starting replay");
	(void) streamview_replay_archive_plan(v, src, low, nparts);
	streamview_record_start_offsets(v, nparts, low);
	streamview_commit_batch();
	pfree(low);
}

/*
 * Which offsets the replay reads from the archive: in each partition, from
 * where the version is up to the first offset the log has (log_start[p]).
 * Refuses a replay that would miss messages there (neither the archive nor
 * the log has them: _archive_missing), unless its rebuild accepted it.
 * Where the version starts from the beginning and the archive has
 * messages below the log's start, log_start[p] becomes the first of them
 * (where the replay starts, for progress).  Returns whether there is
 * anything to read from the archive.  In a transaction, SPI connected.
 */
bool
streamview_replay_archive_plan(SvVersion *v, const SvSource *src, int64 *log_start, int nparts)
{
	StringInfoData parts,
				wants,
				starts;
	Oid			argtypes[5] = {INT4OID, TEXTOID, TEXTOID, TEXTOID, INT4OID};
	Datum		args[5];
	bool		isnull;
	bool		accept;
	bool		any = false;
	char	   *missing;

	initStringInfo(&parts);
	initStringInfo(&wants);
	initStringInfo(&starts);
	for (int p = 0; p < nparts; p++)
	{
		int64		next = p < v->nparts ? v->parts[p].next_offset : -1;

		if (!streamview_owns_partition(src, p) || log_start[p] < 0)
			continue;
		appendStringInfo(&parts, "%s%d", parts.len ? "," : "", p);
		if (next >= 0)
			appendStringInfo(&wants, "%s" INT64_FORMAT, wants.len ? "," : "", next);
		else
			appendStringInfo(&wants, "%sNULL", wants.len ? "," : "");
		appendStringInfo(&starts, "%s" INT64_FORMAT, starts.len ? "," : "", log_start[p]);
	}
	args[0] = Int32GetDatum(src->source_id);
	args[1] = CStringGetTextDatum(psprintf("{%s}", parts.data));
	args[2] = CStringGetTextDatum(psprintf("{%s}", wants.data));
	args[3] = CStringGetTextDatum(psprintf("{%s}", starts.data));
	args[4] = Int32GetDatum(v->version_id);
	SPI_execute_with_args("SELECT streamview_internal._archive_missing_text($1, $2::int[], $3::bigint[], $4::bigint[]), "
						  "(SELECT x.accept_data_loss FROM streamview.versions x WHERE x.version_id = $5)",
						  5, argtypes, args, NULL, true, 1);
	missing = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	accept = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)) && !isnull;
	if (missing != NULL)
		ereport(accept ? LOG : ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the replay of stream view \"%s\" version %d %s messages that Kafka no longer keeps",
						v->view_name, v->version, accept ? "misses" : "would miss"),
				 errdetail("Neither the topic's log nor the source's archive has %s.", missing),
				 accept ? 0 : errhint("Rebuild with accept_data_loss => true to replay what is left.")));

	if (sv_archive_until == NULL)
		sv_archive_until = MemoryContextAllocZero(TopMemoryContext, nparts * sizeof(int64));
	else if (nparts > sv_archive_nparts)
		sv_archive_until = repalloc(sv_archive_until, nparts * sizeof(int64));
	sv_archive_nparts = nparts;
	for (int p = 0; p < nparts; p++)
	{
		int64		next = p < v->nparts ? v->parts[p].next_offset : -1;
		int64		first;

		sv_archive_until[p] = -1;
		if (!streamview_owns_partition(src, p) || log_start[p] <= Max(next, 0))
			continue;
		first = streamview_archive_first(src->source_id, p, Max(next, 0));
		if (first < 0 || first >= log_start[p])
			continue;
		sv_archive_until[p] = log_start[p];
		any = true;
		if (next < 0)
			log_start[p] = first;
	}
	return any;
}

/*
 * The next batch from the archive (streamview_replay_archive_plan said
 * which offsets): up to max messages of the first partition that has some
 * left, from where the version is; 0 when the archive has nothing more
 * to give.  In a transaction, SPI connected; the messages are in cxt.
 */
int
streamview_replay_archive_batch(SvVersion *v, const SvSource *src, SvEvent *out, int max,
								MemoryContext cxt)
{
	for (int p = 0; p < sv_archive_nparts; p++)
	{
		int64		from;
		int			n;

		if (sv_archive_until[p] < 0)
			continue;
		from = p < v->nparts ? Max(v->parts[p].next_offset, 0) : 0;
		if (from < sv_archive_until[p])
		{
			n = streamview_archive_read(src->source_id, p, from, sv_archive_until[p], max, out, cxt);
			if (n > 0)
			{
				/* counted as taken, as streamview_replay_consume counts Kafka's */
				sv_replayed += n;
				return n;
			}
		}
		sv_archive_until[p] = -1;	/* read up to the log's start */
	}
	return 0;
}

/*
 * Once the archive is read: has the log lost more meanwhile?  Plans the
 * archive again with the log's start now; returns whether there is more to
 * read from it (else Kafka is read from the version's next offsets).
 */
bool
streamview_replay_archive_recheck(SvVersion *v, const SvSource *src, SvKafka *kafka, int nparts)
{
	int64	   *low = palloc(nparts * sizeof(int64));
	bool		more;

	for (int p = 0; p < nparts; p++)
		low[p] = streamview_owns_partition(src, p) ? streamview_kafka_log_start(kafka, p, 5000) : -1;
	streamview_begin_batch("checking the log's start");
	more = streamview_replay_archive_plan(v, src, low, nparts);
	streamview_commit_batch();
	pfree(low);
	return more;
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
 * Does the log go on beyond the n messages in hand (taken, not applied
 * yet), as the replay's fetches last saw it?  Then its batch takes another
 * round (source_worker.c); not under max_rate, which paces batches.
 */
bool
streamview_replay_more_rounds(SvVersion *v, SvKafka *kafka, int n)
{
	return v->max_rate <= 0 && sv_replay_behind(v, kafka) > n;
}

/*
 * A replay's round.  A source worker applies what its queue has ready as
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
	sv_replayed += n;
	return n;
}

/*
 * After each batch applied: count it, and keep to max_rate events per
 * second (counted as they are taken, by streamview_replay_consume) by
 * sleeping on the latch (so SIGTERM still ends the wait at once).
 */
void
streamview_replay_after_batch(SvVersion *v)
{
	int64		due_us;
	long		secs;
	int			usecs;

	sv_replay_batches++;
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
