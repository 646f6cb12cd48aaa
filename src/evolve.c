/*-------------------------------------------------------------------------
 *
 * evolve.c
 *	  Sources that evolve: a source's history read again in the calling
 *	  backend, with its current definition or a candidate one.
 *
 * streamview_internal._check_source_read (streamview.check_source) counts,
 * per dead-letter reason, what a definition makes of every message still
 * available, changing nothing.  streamview_internal._replay_dead_letters_apply
 * (streamview.replay_dead_letters) applies the dead letters that a mended
 * definition now reads, each classified as a rebuild with that definition
 * would have classified it at its own offset.
 *
 * History is read per partition: the archived messages first
 * (sv_history_archived), then Kafka from the next offset up to where the
 * partition ended when its turn came, through kafka.c.  One batch of
 * messages is in memory at a time (streamview.batch_size and
 * batch_max_bytes, as a worker's), in a context reset after each; the
 * Kafka consumer is closed however the reading ends (an error, a cancel,
 * statement_timeout: the loop looks for interrupts after each batch and
 * each wait).  Progress is a NOTICE every streamview.progress_messages
 * messages or SV_PROGRESS_SECONDS seconds.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#define SV_PROGRESS_SECONDS 10
/* How long the brokers may take to say where a partition begins and ends. */
#define SV_HISTORY_BROKER_TIMEOUT_MS 10000
/*
 * A partition that delivers nothing for this long before the end the
 * broker gave is done with: the offsets left may be transaction markers,
 * which are never delivered.
 */
#define SV_HISTORY_IDLE_MS 10000

/* A message read from the history; false: stop reading its partition. */
typedef bool (*SvHistoryFn) (void *arg, SvEvent *ev);

/* Offsets [from, to) of a partition that neither the archive nor Kafka has. */
typedef void (*SvHistoryGapFn) (void *arg, int32 partition, int64 from, int64 to);

typedef struct SvHistory
{
	const SvSource *src;
	const char *what;			/* the function reading, for NOTICEs */
	SvKafka    *kafka;
	int			nparts;			/* the topic's partitions */
	SvHistoryFn on_message;
	SvHistoryGapFn on_gap;		/* may be NULL */
	void	   *arg;
	MemoryContext batch_cxt;	/* one batch of messages, reset after each */
	int64		read;			/* messages read so far */
	int64		reported;		/* read at the last NOTICE */
	TimestampTz reported_at;
} SvHistory;

/* Open the consumer: the topic must exist, with partitions. */
static void
sv_history_open(SvHistory *h)
{
	char	   *problem;

	h->kafka = streamview_kafka_open(h->src, streamview_consumer_group(get_database_name(MyDatabaseId),
																	   h->src->name));
	h->nparts = streamview_kafka_partition_count(h->kafka, SV_HISTORY_BROKER_TIMEOUT_MS);
	problem = streamview_kafka_report(h->kafka);
	if (h->nparts <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("%s: could not read topic \"%s\" of source \"%s\"", h->what,
						h->src->topic, h->src->name),
				 errdetail_internal("%s", problem ? problem : "The topic has no partitions."),
				 errhint("See streamview.status for the source's error; mend its brokers or options with streamview.alter_source().")));
	h->batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_streamview history batch",
										 ALLOCSET_DEFAULT_SIZES);
	h->reported_at = GetCurrentTimestamp();
}

static void
sv_history_progress(SvHistory *h, int32 p, int64 offset, int64 end)
{
	TimestampTz now;

	if (h->read - h->reported < streamview_progress_messages)
	{
		now = GetCurrentTimestamp();
		if (!TimestampDifferenceExceeds(h->reported_at, now, SV_PROGRESS_SECONDS * 1000))
			return;
	}
	else
		now = GetCurrentTimestamp();
	ereport(NOTICE,
			(errmsg("%s: source \"%s\": " INT64_FORMAT " messages read; partition %d of %d at offset "
					INT64_FORMAT " of " INT64_FORMAT, h->what, h->src->name, h->read, p, h->nparts,
					offset, end)));
	h->reported = h->read;
	h->reported_at = now;
}

/*
 * The archived messages of partition p from offset `from` on, below `to`
 * (-1: no bound) and below the first offset Kafka still has, in offset
 * order, handed to h->on_message; returns the offset Kafka goes on from
 * (the one after the last archived message, or `from` when the archive has
 * nothing Kafka lacks), or -1 when on_message asked to stop.
 *
 * Only the offsets Kafka no longer has are read from the archive, as a
 * rebuild reads them (replay.c): what Kafka keeps is read from Kafka, so
 * a source whose archive was switched on late, or whose retention dropped
 * its oldest partitions, is still read whole.  Offsets below the log's
 * start that the archive lacks are reported to h->on_gap, as
 * _archive_missing reports them before a rebuild; those after the last
 * archived one are left to sv_history_kafka, which reports them.  One
 * batch (streamview.batch_size messages) is in memory at a time; the
 * archive is read with its own SPI connection, on_message is called
 * outside it.
 */
static int64
sv_history_archived(SvHistory *h, int32 p, int64 from, int64 to)
{
	int64		first;
	int64		end;
	int64		until;
	int64		next = from;
	SvEvent    *events;

	if (!streamview_kafka_log_bounds(h->kafka, p, SV_HISTORY_BROKER_TIMEOUT_MS, &first, &end))
		return from;			/* sv_history_kafka asks again and says why */
	until = (to >= 0 && to < first) ? to : first;
	if (next >= until)
		return from;

	events = palloc(streamview_batch_size * sizeof(SvEvent));
	for (;;)
	{
		MemoryContext old;
		int			n;
		bool		more = true;

		SPI_connect();
		n = streamview_archive_read(h->src->source_id, p, next, until, streamview_batch_size,
									events, h->batch_cxt);
		SPI_finish();
		old = MemoryContextSwitchTo(h->batch_cxt);
		for (int i = 0; i < n && more; i++)
		{
			SvEvent    *ev = &events[i];

			if (ev->offset > next && h->on_gap)
				h->on_gap(h->arg, p, next, ev->offset);
			next = ev->offset + 1;
			h->read++;
			more = h->on_message(h->arg, ev);
			sv_history_progress(h, p, ev->offset, to >= 0 ? to : end);
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(h->batch_cxt);
		CHECK_FOR_INTERRUPTS();
		if (!more)
		{
			pfree(events);
			return -1;
		}
		if (n < streamview_batch_size || next >= until)
			break;
	}
	pfree(events);
	return next;
}

/*
 * Kafka's messages of partition p from offset `from` on, below `to` (-1:
 * the partition's end when it is asked), handed to h->on_message.  Offsets
 * below the partition's first are reported to h->on_gap.
 */
static void
sv_history_kafka(SvHistory *h, int32 p, int64 from, int64 to)
{
	int64		first;
	int64		end;
	int64	   *starts;
	SvEvent    *events;
	int64		next = from;
	TimestampTz last_message_at = GetCurrentTimestamp();
	bool		more = true;

	if (!streamview_kafka_log_bounds(h->kafka, p, SV_HISTORY_BROKER_TIMEOUT_MS, &first, &end))
	{
		char	   *problem = streamview_kafka_report(h->kafka);

		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("%s: the brokers of source \"%s\" did not say where partition %d of topic \"%s\" begins and ends",
						h->what, h->src->name, p, h->src->topic),
				 problem ? errdetail_internal("%s", problem) : 0));
	}
	if (to < 0 || to > end)
		to = end;
	if (next < first)
	{
		if (h->on_gap && Min(first, to) > next)
			h->on_gap(h->arg, p, next, Min(first, to));
		next = first;
	}
	if (next >= to)
		return;

	starts = palloc((p + 1) * sizeof(int64));
	for (int i = 0; i < p; i++)
		starts[i] = SV_NOT_ASSIGNED;
	starts[p] = next;
	streamview_kafka_assign(h->kafka, p + 1, starts);
	events = palloc(streamview_batch_size * sizeof(SvEvent));
	while (more)
	{
		MemoryContext old = MemoryContextSwitchTo(h->batch_cxt);
		int			n = streamview_kafka_consume(h->kafka, events, streamview_batch_size,
												 (int64) streamview_batch_max_bytes_kb * 1024, 1000);

		for (int i = 0; i < n && more; i++)
		{
			SvEvent    *ev = &events[i];

			if (ev->partition != p || ev->offset < next)
				continue;
			if (ev->offset >= to)
			{
				more = false;
				break;
			}
			next = ev->offset + 1;
			h->read++;
			more = h->on_message(h->arg, ev) && next < to;
			sv_history_progress(h, p, ev->offset, to);
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(h->batch_cxt);
		if (n > 0)
			last_message_at = GetCurrentTimestamp();
		else
		{
			/* a latch set for something else must not make this a busy loop */
			ResetLatch(MyLatch);
			if (more && TimestampDifferenceExceeds(last_message_at, GetCurrentTimestamp(),
												   SV_HISTORY_IDLE_MS))
			{
				char	   *problem = streamview_kafka_report(h->kafka);

				if (problem)
					ereport(ERROR,
							(errcode(ERRCODE_CONNECTION_FAILURE),
							 errmsg("%s: could not read partition %d of topic \"%s\" of source \"%s\"",
									h->what, p, h->src->topic, h->src->name),
							 errdetail_internal("%s", problem)));
				ereport(NOTICE,
						(errmsg("%s: partition %d of topic \"%s\" delivered nothing after offset "
								INT64_FORMAT " for %d seconds; its end is " INT64_FORMAT,
								h->what, p, h->src->topic, next - 1, SV_HISTORY_IDLE_MS / 1000, to),
						 errdetail("The offsets left may be transaction markers, which carry no message.")));
				more = false;
			}
		}
		CHECK_FOR_INTERRUPTS();
	}
	streamview_kafka_assign(h->kafka, 0, starts);	/* none */
	pfree(events);
	pfree(starts);
}

/* Partition p's history from offset `from` on, below `to` (-1: its end). */
static void
sv_history_read(SvHistory *h, int32 p, int64 from, int64 to)
{
	int64		next = sv_history_archived(h, p, from, to);

	if (next >= 0 && (to < 0 || next < to))
		sv_history_kafka(h, p, next, to);
}

/* ---------------------------------------------------------- check_source */

#define SV_CHECK_UNAVAILABLE (SV_REASON_FUTURE_TIME + 1)
#define SV_CHECK_ROWS (SV_CHECK_UNAVAILABLE + 1)

typedef struct SvCheck
{
	const SvSource *src;
	MemoryContext cxt;			/* where samples are kept */
	int64		messages[SV_CHECK_ROWS];
	int32		sample_partition[SV_CHECK_ROWS];
	int64		sample_offset[SV_CHECK_ROWS];
	char	   *sample_error[SV_CHECK_ROWS];
} SvCheck;

/* One row per outcome: reason[r], r indexing the arrays above. */
static const char *
sv_check_reason(int r)
{
	if (r == SV_REASON_NONE)
		return "ok";
	if (r == SV_CHECK_UNAVAILABLE)
		return "unavailable";
	return streamview_reason_name((SvReason) r);
}

static void
sv_check_count(SvCheck *ck, int r, int32 partition, int64 offset, int64 n, const char *error)
{
	if (ck->messages[r] == 0)
	{
		ck->sample_partition[r] = partition;
		ck->sample_offset[r] = offset;
		ck->sample_error[r] = error ? MemoryContextStrdup(ck->cxt, error) : NULL;
	}
	ck->messages[r] += n;
}

static bool
sv_check_message(void *arg, SvEvent *ev)
{
	SvCheck    *ck = arg;

	streamview_parse_event(ck->src, ev);
	sv_check_count(ck, ev->reason, ev->partition, ev->offset, 1, ev->error);
	return true;
}

static void
sv_check_gap(void *arg, int32 partition, int64 from, int64 to)
{
	SvCheck    *ck = arg;

	sv_check_count(ck, SV_CHECK_UNAVAILABLE, partition, from, to - from,
				   psprintf("offsets " INT64_FORMAT " to " INT64_FORMAT " of partition %d are no longer "
							"in Kafka, and not in an archive", from, to - 1, partition));
}

PG_FUNCTION_INFO_V1(streamview_check_source_read);
PGDLLEXPORT Datum streamview_check_source_read(PG_FUNCTION_ARGS);

/*
 * streamview_internal._check_source_read(source_id int, columns jsonb)
 * RETURNS TABLE (reason text, messages bigint, sample_partition int,
 * sample_offset bigint, sample_error text): every message of the source's
 * partitions, read as the source worker would with the source's columns or
 * the candidate ones (checked by _check_source_impl), counted per outcome:
 * 'ok' (the message reads), each dead-letter reason of an unreadable
 * message, and 'unavailable' (offsets neither Kafka nor an archive has
 * any more).  One row per outcome, zero counts too; the sample is the
 * first message of it.  Reads only: nothing is written.
 */
Datum
streamview_check_source_read(PG_FUNCTION_ARGS)
{
	int32		source_id = PG_GETARG_INT32(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SvSource   *src;
	SvCheck		ck = {0};
	SvHistory	h = {0};

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	src = streamview_load_source(source_id);
	if (src == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("source %d does not exist", source_id)));
	PG_TRY();
	{
		if (!PG_ARGISNULL(1))
			streamview_source_use_columns(src, PG_GETARG_DATUM(1));
		SPI_finish();

		ck.src = src;
		ck.cxt = CurrentMemoryContext;
		h.src = src;
		h.what = "check_source";
		h.on_message = sv_check_message;
		h.on_gap = sv_check_gap;
		h.arg = &ck;
		sv_history_open(&h);
		for (int p = 0; p < h.nparts; p++)
			if (streamview_source_reads_partition(src, p))
				sv_history_read(&h, p, 0, -1);
	}
	PG_FINALLY();
	{
		streamview_kafka_close(h.kafka);
		MemoryContextDelete(GetMemoryChunkContext(src));
	}
	PG_END_TRY();

	for (int r = 0; r < SV_CHECK_ROWS; r++)
	{
		Datum		values[5];
		bool		nulls[5] = {false, false, ck.messages[r] == 0, ck.messages[r] == 0,
		ck.sample_error[r] == NULL};

		if (r == SV_REASON_TOO_LATE || r == SV_REASON_QUERY_ERROR)
			continue;			/* a view's, not the source's */
		values[0] = CStringGetTextDatum(sv_check_reason(r));
		values[1] = Int64GetDatum(ck.messages[r]);
		values[2] = Int32GetDatum(ck.sample_partition[r]);
		values[3] = Int64GetDatum(ck.sample_offset[r]);
		values[4] = nulls[4] ? (Datum) 0 : CStringGetTextDatum(ck.sample_error[r]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* ---------------------------------------------------- replay_dead_letters */

/*
 * A version the replay may apply dead letters to, in the partition being
 * read.  It consumed offsets [start, next) of it; it read those below mark
 * (offsets.definition_mark) with an older definition of the source, so the
 * source's dead letters there are its dead letters too, and it read the
 * others with the current one (-1: all of them).  Its event-time high mark
 * in the partition as it read it (live), and as it is once the replayed
 * dead letters count (target: what a rebuild reads).
 */
typedef struct SvReplayVersion
{
	SvVersion  *v;
	int64		start;
	int64		next;
	int64		mark;
	bool		has_live;
	TimestampTz live_max;
	bool		has_target;
	TimestampTz target_max;
	int		   *applied;		/* into the chunk's events */
	int			napplied;
	int		   *too_late;
	int			ntoo_late;
	int64		total_applied;	/* over every partition */
	int64		total_too_late;
	int64		total_failed;
} SvReplayVersion;

typedef struct SvReplay
{
	SvSource   *src;
	int			nversions;
	SvReplayVersion *versions;
	int32		partition;
	/* the partition's dead letters of the source, by offset, and which to replay */
	int64	   *dl;
	bool	   *dl_replay;
	int			ndl;
	int			dl_pos;
	int64		last_replay;	/* the partition's last offset to replay */
	int64		last_consumed;	/* the highest offset a version consumed */
	MemoryContext part_cxt;		/* the partition's: its dead letters' offsets */
	/* mended dead letters not applied yet */
	MemoryContext chunk_cxt;
	SvEvent    *chunk;
	int			nchunk;
	int64		replayed;		/* dead letters that read now */
	int64		unreadable;		/* those that still do not */
} SvReplay;

/* Did version rv consume offset o of the partition being read? */
static inline bool
sv_consumed(const SvReplayVersion *rv, int64 o)
{
	return o >= rv->start && o < rv->next;
}

/* Would the event be too late for version v with the partition's high mark max? */
static inline bool
sv_late(const SvSource *src, const SvVersion *v, bool has_max, TimestampTz max, TimestampTz t)
{
	return has_max && t < max - src->ooo_us - v->lateness_us;
}

static inline void
sv_raise(bool *has, TimestampTz *max, TimestampTz t)
{
	if (!*has || t > *max)
		*max = t;
	*has = true;
}

/* The highest event time of chunk events idx[0..n), into *max. */
static void
sv_chunk_max(const SvReplay *r, const int *idx, int n, bool *has, TimestampTz *max)
{
	for (int i = 0; i < n; i++)
		sv_raise(has, max, r->chunk[idx[i]].event_time);
}

/*
 * Apply the chunk's mended dead letters: to each version, those it
 * dead-lettered, through its own statement (bad events found by halves as
 * in a batch), too-late ones recorded as its dead letters; the ledger moves
 * them from dead_lettered to applied or too_late (query_error ones stay
 * dead letters, now the version's), the partition's high mark rises with
 * them, and the source's dead letters of them go: a second replay cannot
 * apply them again.
 */
static void
sv_replay_flush(SvReplay *r)
{
	Datum	   *offsets;

	if (r->nchunk == 0)
		return;
	for (int i = 0; i < r->nversions; i++)
	{
		SvReplayVersion *rv = &r->versions[i];
		SvVersionBatch vb = {0};
		TimestampTz vmax = 0;
		bool		vhas = false;
		Oid			argtypes[5] = {INT4OID, INT4OID, INT8OID, INT8OID, TIMESTAMPTZOID};
		Datum		args[5];

		sv_chunk_max(r, rv->applied, rv->napplied, &vhas, &vmax);
		sv_chunk_max(r, rv->too_late, rv->ntoo_late, &vhas, &vmax);
		if (!vhas || rv->v->failed)
			continue;
		vb.applied = rv->applied;
		vb.napplied = rv->napplied;
		vb.failed = palloc(Max(rv->napplied, 1) * sizeof(int));
		streamview_apply_version_events(r->src, rv->v, r->chunk, &vb);
		if (rv->v->failed)
			continue;			/* its statement is broken: it failed, as in a batch */
		streamview_store_dead_letters(r->src, rv->v, r->chunk, rv->too_late, rv->ntoo_late,
									  SV_REASON_TOO_LATE);
		streamview_store_dead_letters(r->src, rv->v, r->chunk, vb.failed, vb.nfailed,
									  SV_REASON_QUERY_ERROR);
		args[0] = Int32GetDatum(rv->v->version_id);
		args[1] = Int32GetDatum(r->partition);
		args[2] = Int64GetDatum(vb.napplied);
		args[3] = Int64GetDatum(rv->ntoo_late);
		args[4] = TimestampTzGetDatum(vmax);
		SPI_execute_with_args("UPDATE streamview.offsets SET applied = applied + $3, "
							  "too_late = too_late + $4, dead_lettered = dead_lettered - $3 - $4, "
							  "max_event_time = greatest(max_event_time, $5), updated_at = now() "
							  "WHERE version_id = $1 AND partition = $2",
							  5, argtypes, args, NULL, false, 0);
		rv->total_applied += vb.napplied;
		rv->total_too_late += rv->ntoo_late;
		rv->total_failed += vb.nfailed;
		rv->napplied = 0;
		rv->ntoo_late = 0;
	}

	offsets = palloc(r->nchunk * sizeof(Datum));
	for (int i = 0; i < r->nchunk; i++)
		offsets[i] = Int64GetDatum(r->chunk[i].offset);
	{
		Oid			argtypes[3] = {TEXTOID, INT4OID, INT8ARRAYOID};
		Datum		args[3];

		args[0] = CStringGetTextDatum(r->src->name);
		args[1] = Int32GetDatum(r->partition);
		args[2] = PointerGetDatum(construct_array(offsets, r->nchunk, INT8OID, 8, true, TYPALIGN_DOUBLE));
		SPI_execute_with_args("DELETE FROM streamview.dead_letters WHERE source_name = $1 "
							  "AND view_name IS NULL AND partition = $2 AND \"offset\" = ANY ($3)",
							  3, argtypes, args, NULL, false, 0);
	}
	r->nchunk = 0;
	MemoryContextReset(r->chunk_cxt);
	r->chunk = MemoryContextAlloc(r->chunk_cxt, streamview_batch_size * sizeof(SvEvent));
}

/*
 * A dead letter to replay that reads now: kept (key, payload and values
 * copied out of the batch), its source dead letter to be deleted; returns
 * its index in the chunk.
 */
static int
sv_replay_keep(SvReplay *r, const SvEvent *read)
{
	MemoryContext old = MemoryContextSwitchTo(r->chunk_cxt);
	SvEvent    *ev = &r->chunk[r->nchunk];

	memset(ev, 0, sizeof(SvEvent));
	ev->partition = read->partition;
	ev->offset = read->offset;
	ev->has_broker_time = read->has_broker_time;
	ev->broker_time = read->broker_time;
	if (read->key)
	{
		ev->key = palloc(read->keylen + 1);
		memcpy(ev->key, read->key, read->keylen + 1);
		ev->keylen = read->keylen;
	}
	ev->payload = palloc(read->paylen + 1);
	memcpy(ev->payload, read->payload, read->paylen + 1);
	ev->paylen = read->paylen;
	streamview_parse_event(r->src, ev);	/* again, here: its values live on */
	MemoryContextSwitchTo(old);
	r->replayed++;
	return r->nchunk++;
}

/*
 * A message version rv read itself (applied, too late): while the dead
 * letters replayed so far hold its high mark above where it was, it must
 * be classified the same with either mark, or the version could not equal
 * a rebuild: the replay stops with an error then.
 */
static void
sv_replay_check_live(SvReplay *r, SvReplayVersion *rv, const SvEvent *ev)
{
	bool		was;

	if (rv->has_live == rv->has_target && rv->live_max == rv->target_max)
		return;
	was = sv_late(r->src, rv->v, rv->has_live, rv->live_max, ev->event_time);
	if (was != sv_late(r->src, rv->v, rv->has_target, rv->target_max, ev->event_time))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot replay the dead letters of source \"%s\": stream view \"%s\" would not equal a rebuild",
						r->src->name, rv->v->view_name),
				 errdetail("The dead letters replayed in partition %d raise its event-time high mark, so that "
						   "the message at offset " INT64_FORMAT " would be %s for version %d, where it was %s.",
						   r->partition, ev->offset, was ? "applied" : "too late", rv->v->version,
						   was ? "too late" : "applied"),
				 errhint("Rebuild the view with streamview.rebuild(), validate it and swap: a rebuild reads "
						 "every message with the current definition.")));
}

/* Are the versions' live and target high marks together again? */
static bool
sv_replay_converged(const SvReplay *r)
{
	for (int i = 0; i < r->nversions; i++)
	{
		const SvReplayVersion *rv = &r->versions[i];

		if (rv->has_live != rv->has_target || rv->live_max != rv->target_max)
			return false;
	}
	return true;
}

/*
 * One message of the partition's history, per version that consumed it:
 * a dead letter of the source, to replay, that reads now and that the
 * version read with an older definition is applied to it, or too late, by
 * its target high mark; a message it read itself is checked against both
 * marks (sv_replay_check_live); both marks rise with what it holds.
 */
static bool
sv_replay_message(void *arg, SvEvent *ev)
{
	SvReplay   *r = arg;
	bool		in_dl;
	bool		replay;
	int			kept = -1;

	while (r->dl_pos < r->ndl && r->dl[r->dl_pos] < ev->offset)
		r->dl_pos++;
	in_dl = r->dl_pos < r->ndl && r->dl[r->dl_pos] == ev->offset;
	replay = in_dl && r->dl_replay[r->dl_pos];
	streamview_parse_event(r->src, ev);
	if (ev->reason != SV_REASON_NONE)
	{
		if (!in_dl)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot replay the dead letters of source \"%s\": its current definition does not read a message it read",
							r->src->name),
					 errdetail("Partition %d, offset " INT64_FORMAT ", is no dead letter, but reads now as %s: %s.",
							   ev->partition, ev->offset, streamview_reason_name(ev->reason), ev->error),
					 errhint("Check the definition against the history with streamview.check_source(); "
							 "rebuild the views if the change is meant.")));
		r->unreadable += replay ? 1 : 0;
	}
	else
	{
		if (replay)
			kept = sv_replay_keep(r, ev);
		for (int j = 0; j < r->nversions; j++)
		{
			SvReplayVersion *rv = &r->versions[j];
			bool		read_live = !in_dl || ev->offset >= rv->mark;

			if (!sv_consumed(rv, ev->offset))
				continue;
			if (read_live)
			{
				sv_replay_check_live(r, rv, ev);
				sv_raise(&rv->has_live, &rv->live_max, ev->event_time);
			}
			else if (!replay)
				continue;		/* a dead letter of it that stays one (since) */
			else if (sv_late(r->src, rv->v, rv->has_target, rv->target_max, ev->event_time))
				rv->too_late[rv->ntoo_late++] = kept;
			else
				rv->applied[rv->napplied++] = kept;
			sv_raise(&rv->has_target, &rv->target_max, ev->event_time);
		}
		if (r->nchunk >= streamview_batch_size)
			sv_replay_flush(r);
	}
	/* done: past the last one to replay, with the marks together again */
	if (ev->offset >= r->last_consumed)
		return false;
	return ev->offset < r->last_replay || !sv_replay_converged(r);
}

/* The source's dead letters of partition p, in offset order; which to replay. */
static void
sv_replay_load_partition(SvReplay *r, int32 p, Datum since, bool since_null)
{
	Oid			argtypes[3] = {TEXTOID, INT4OID, TIMESTAMPTZOID};
	Datum		args[3] = {CStringGetTextDatum(r->src->name), Int32GetDatum(p), since};
	char		nulls[3] = {' ', ' ', since_null ? 'n' : ' '};
	MemoryContext cxt = r->part_cxt;

	SPI_execute_with_args("SELECT \"offset\", reason <> 'too_late' AND ($3 IS NULL OR recorded_at >= $3) "
						  "FROM streamview.dead_letters WHERE source_name = $1 AND view_name IS NULL "
						  "AND partition = $2 ORDER BY \"offset\"",
						  3, argtypes, args, nulls, true, 0);
	r->ndl = SPI_processed;
	r->dl = MemoryContextAlloc(cxt, Max(r->ndl, 1) * sizeof(int64));
	r->dl_replay = MemoryContextAlloc(cxt, Max(r->ndl, 1) * sizeof(bool));
	r->dl_pos = 0;
	r->last_replay = -1;
	for (int i = 0; i < r->ndl; i++)
	{
		bool		isnull;

		r->dl[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		r->dl_replay[i] = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		if (r->dl_replay[i])
			r->last_replay = r->dl[i];
	}
}

/*
 * Where to read partition p from: the last offset mark of the source at or
 * before its first dead letter to replay (the partition's high mark there,
 * which every version had, and a rebuild has: nothing before it is
 * replayed), or the start of the log without history.
 */
static int64
sv_replay_start(SvReplay *r, int32 p, int64 first)
{
	Oid			argtypes[3] = {INT4OID, INT4OID, INT8OID};
	Datum		args[3] = {Int32GetDatum(r->src->source_id), Int32GetDatum(p), Int64GetDatum(first)};
	bool		isnull;
	bool		has = false;
	TimestampTz max = 0;
	int64		from = 0;

	SPI_execute_with_args("SELECT next_offset, max_event_time FROM streamview.offset_marks "
						  "WHERE source_id = $1 AND partition = $2 AND next_offset <= $3 "
						  "ORDER BY next_offset DESC LIMIT 1",
						  3, argtypes, args, NULL, true, 1);
	if (SPI_processed > 0)
	{
		has = true;
		from = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		max = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	}
	for (int i = 0; i < r->nversions; i++)
	{
		SvReplayVersion *rv = &r->versions[i];

		rv->has_live = rv->has_target = has;
		rv->live_max = rv->target_max = max;
	}
	return from;
}

/* Where each version's reading of partition p began, ended, and changed definition. */
static void
sv_replay_versions_at(SvReplay *r, int32 p)
{
	r->last_consumed = -1;
	for (int i = 0; i < r->nversions; i++)
	{
		SvReplayVersion *rv = &r->versions[i];
		Oid			argtypes[3] = {INT4OID, TEXTOID, INT4OID};
		Datum		args[3] = {Int32GetDatum(rv->v->version_id), CStringGetTextDatum(psprintf("%d", p)),
		Int32GetDatum(p)};
		bool		isnull;
		Datum		d;

		SPI_execute_with_args("SELECT (v.start_offsets->>$2)::int8, o.definition_mark "
							  "FROM streamview.versions v LEFT JOIN streamview.offsets o "
							  "ON o.version_id = v.version_id AND o.partition = $3 WHERE v.version_id = $1",
							  3, argtypes, args, NULL, true, 1);
		rv->start = 0;
		rv->mark = -1;
		if (SPI_processed > 0)
		{
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			rv->start = isnull ? 0 : DatumGetInt64(d);
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
			rv->mark = isnull ? -1 : DatumGetInt64(d);
		}
		rv->next = p < rv->v->nparts ? rv->v->parts[p].next_offset : -1;
		rv->napplied = rv->ntoo_late = 0;
		r->last_consumed = Max(r->last_consumed, rv->next - 1);
	}
}

static void
sv_replay_add_versions(SvReplay *r, List *versions)
{
	ListCell   *lc;

	foreach(lc, versions)
	{
		SvReplayVersion *rv;

		r->versions = r->nversions == 0 ? palloc0(sizeof(SvReplayVersion))
			: repalloc(r->versions, (r->nversions + 1) * sizeof(SvReplayVersion));
		rv = &r->versions[r->nversions++];
		memset(rv, 0, sizeof(SvReplayVersion));
		rv->v = lfirst(lc);
		rv->applied = palloc(streamview_batch_size * sizeof(int));
		rv->too_late = palloc(streamview_batch_size * sizeof(int));
		streamview_prepare_version(r->src, rv->v);
	}
	list_free(versions);
}

/* Every version workers maintain: live, caught up, replaying. */
static void
sv_replay_load_versions(SvReplay *r)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(r->src->source_id)};
	List	   *replaying = NIL;
	ListCell   *lc;

	sv_replay_add_versions(r, streamview_load_versions(r->src, 0));
	SPI_execute_with_args("SELECT ver.version_id FROM streamview.versions ver "
						  "JOIN streamview.views v USING (view_id) "
						  "WHERE v.source_id = $1 AND ver.state = 'replaying' ORDER BY 1",
						  1, argtypes, args, NULL, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		replaying = lappend_int(replaying, DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
																	   SPI_tuptable->tupdesc, 1, &isnull)));
	}
	foreach(lc, replaying)
		sv_replay_add_versions(r, streamview_load_versions(r->src, lfirst_int(lc)));
}

static Datum
sv_replay_summary(SvReplay *r, int64 read, int64 candidates)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"dead_letters\": " INT64_FORMAT ", \"replayed\": " INT64_FORMAT
					 ", \"still_unreadable\": " INT64_FORMAT ", \"messages_read\": " INT64_FORMAT
					 ", \"versions\": [", candidates, r->replayed, r->unreadable, read);
	for (int i = 0; i < r->nversions; i++)
	{
		SvReplayVersion *rv = &r->versions[i];

		appendStringInfo(&buf, "%s{\"view\": ", i ? ", " : "");
		escape_json(&buf, rv->v->view_name);
		appendStringInfo(&buf, ", \"version\": %d, \"applied\": " INT64_FORMAT ", \"too_late\": "
						 INT64_FORMAT ", \"query_error\": " INT64_FORMAT "}", rv->v->version,
						 rv->total_applied, rv->total_too_late, rv->total_failed);
	}
	appendStringInfoString(&buf, "]}");
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/* The replay itself; see below. */
static Datum
sv_replay_run(SvReplay *r, SvHistory *h, Datum since, bool since_null)
{
	Oid			argtypes[2] = {TEXTOID, TIMESTAMPTZOID};
	Datum		args[2] = {CStringGetTextDatum(r->src->name), since};
	char		nulls[2] = {' ', since_null ? 'n' : ' '};
	List	   *parts = NIL;
	ListCell   *lc;
	int64		candidates = 0;

	SPI_execute_with_args("SELECT partition, count(*) FROM streamview.dead_letters "
						  "WHERE source_name = $1 AND view_name IS NULL AND reason <> 'too_late' "
						  "AND ($2 IS NULL OR recorded_at >= $2) GROUP BY 1 ORDER BY 1",
						  2, argtypes, args, nulls, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		parts = lappend_int(parts, DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
															   SPI_tuptable->tupdesc, 1, &isnull)));
		candidates += DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
	}
	r->chunk_cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_streamview replayed dead letters",
										 ALLOCSET_DEFAULT_SIZES);
	r->part_cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_streamview dead letters' offsets",
										ALLOCSET_DEFAULT_SIZES);
	if (parts != NIL)
	{
		sv_replay_load_versions(r);
		h->src = r->src;
		h->what = "replay_dead_letters";
		h->on_message = sv_replay_message;
		h->arg = r;
		sv_history_open(h);
	}
	foreach(lc, parts)
	{
		int32		p = lfirst_int(lc);
		int64		from = 0;

		MemoryContextReset(r->part_cxt);
		MemoryContextReset(r->chunk_cxt);
		r->partition = p;
		r->nchunk = 0;
		r->chunk = MemoryContextAlloc(r->chunk_cxt, streamview_batch_size * sizeof(SvEvent));
		sv_replay_load_partition(r, p, since, since_null);
		sv_replay_versions_at(r, p);
		if (r->last_replay < 0 || r->last_consumed < 0)
			continue;
		for (int i = 0; i < r->ndl; i++)
			if (r->dl_replay[i])
			{
				from = sv_replay_start(r, p, r->dl[i]);
				break;
			}
		sv_history_read(h, p, from, r->last_consumed + 1);
		sv_replay_flush(r);
	}
	return sv_replay_summary(r, h->read, candidates);
}

PG_FUNCTION_INFO_V1(streamview_replay_dead_letters_apply);
PGDLLEXPORT Datum streamview_replay_dead_letters_apply(PG_FUNCTION_ARGS);

/*
 * streamview_internal._replay_dead_letters_apply(source_id int, since
 * timestamptz) RETURNS jsonb: replays the source's dead letters (recorded
 * at or after since, if given; never too_late ones, which are a version's)
 * with its current definition, in the caller's transaction; the caller
 * holds the source's row FOR UPDATE, so that no worker's batch runs
 * meanwhile, and records the replay.  Per partition that has some, the
 * history is read from the offset mark before the first (sv_replay_start)
 * to past the last, each dead letter that reads now classified against the
 * partition's high mark at its offset, for each version that consumed it.
 * The source must have no event_id (checked by the caller).  Returns what
 * it did, as source_changes records it.
 */
Datum
streamview_replay_dead_letters_apply(PG_FUNCTION_ARGS)
{
	int32		source_id = PG_GETARG_INT32(0);
	SvReplay	r = {0};
	SvHistory	h = {0};
	volatile Datum result = (Datum) 0;

	SPI_connect();
	r.src = streamview_load_source(source_id);
	if (r.src == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("source %d does not exist", source_id)));
	PG_TRY();
	{
		result = SPI_datumTransfer(sv_replay_run(&r, &h, PG_GETARG_DATUM(1), PG_ARGISNULL(1)),
								   false, -1);
	}
	PG_FINALLY();
	{
		streamview_kafka_close(h.kafka);
		for (int i = 0; i < r.nversions; i++)
		{
			if (r.versions[i].v->plan)
				SPI_freeplan(r.versions[i].v->plan);
			MemoryContextDelete(GetMemoryChunkContext(r.versions[i].v));
		}
		MemoryContextDelete(GetMemoryChunkContext(r.src));
	}
	PG_END_TRY();
	SPI_finish();
	PG_RETURN_DATUM(result);
}
