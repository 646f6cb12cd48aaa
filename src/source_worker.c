/*-------------------------------------------------------------------------
 *
 * source_worker.c
 *	  The source worker, sources.workers per source, and the loop it shares
 *	  with the replay worker; both are started by the launcher.
 *
 * Loop: take the messages the consumer queue has ready (a round: at most
 * streamview.batch_size messages and streamview.batch_max_bytes; idle, wait
 * at most streamview.batch_timeout for a first one), then apply them in ONE
 * transaction that holds the upserts of every version, their offsets,
 * watermarks, counters, seen ids and dead letters.  Under load the batch
 * takes further rounds in that transaction, pre-aggregated, until the queue
 * is drained or streamview.batch_max_groups or batch_max_time is reached
 * (sv_apply, batch.c).  Offsets are only ever read from PostgreSQL, so a
 * crash at any point resumes exactly after the last committed batch.
 *
 * When nothing arrives the worker sleeps on a WaitEventSet holding its latch
 * and the Kafka queue's wake-up pipe, and every second refreshes watermarks
 * (partitions go idle with time) and looks at the catalog; at once when an
 * API call that changed the catalog sets its latch (streamview_wake_workers).
 *
 * If the set of versions changes (a view created or dropped), the batch in
 * hand is not applied: the worker reloads the versions and re-assigns every
 * partition at the lowest stored offset of any version (a new version starts
 * from the beginning of the log), so each version sees every message once.
 * If the source's settings change (alter_source), the batch in hand is not
 * applied either, and the worker stops: the launcher starts the next one at
 * once, with a consumer made with the new settings (sv_signature).
 *
 * A source has sources.workers source workers (create_source, alter_source):
 * worker k of N reads the partitions p with p % N = k, and only those
 * (streamview_owns_partition), for every version it maintains; the rows
 * of the ledger, dead letters and offset marks it writes are those of its
 * partitions, and its stats are a row of its own.  Rows two of them can
 * both write are written in one order: a version's table rows in the order
 * of its conflict key (codegen.c), then each version's row in
 * streamview.versions in version order, locked before the watermark is
 * computed from every partition's ledger as the other workers committed
 * it (ledger.c).  A change of workers is a change of settings: every
 * worker stops, and the launcher starts the new split.
 *
 * A replay worker (SV_WORKER_REPLAY) runs the same loop for one version in
 * state 'replaying' (a rebuild), with a consumer of its own so the live
 * version keeps its freshness; what only it does (max_rate, catching up,
 * the hand-over) is in replay.c.  worker.c holds what both share.
 *
 * Connects as the extension's owner, which does the catalog bookkeeping;
 * each view's statement runs as that view's owner (apply.c).
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"


#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "catalog/namespace.h"
#include "utils/lsyscache.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "commands/dbcommands.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#define SV_IDLE_WAIT_MS			1000
#define SV_PARTITION_CHECK_MS	10000
#define SV_PROBLEM_CHECK_MS		3000

typedef struct SvWorker
{
	SvWorkerKind kind;
	int32		source_id;
	int32		replay_version_id;	/* a replay worker's version; 0 for a source worker */
	int32		worker_index;	/* a source worker's: which of the source's workers */
	SvSource   *src;
	List	   *versions;
	char	   *signature;
	SvKafka    *kafka;
	int			nparts;
	MemoryContext batch_cxt;
	MemoryContext loop_cxt;		/* reset every round of the main loop */
	int64	   *mark_minutes;	/* per partition: minute of the last offset mark */
	int			nmark_minutes;
	char	   *last_error;
	TimestampTz last_partition_check;
	TimestampTz last_housekeeping;
	int			capacity;		/* of the events array: streamview.batch_size */
	int64		one_round_left; /* messages to read one round a batch (a merge failed) */
	bool		reading_archive;	/* a replay worker reading the archive, not Kafka */
	bool		align_pays;		/* read a backlog's partitions in step: sv_note_align */
} SvWorker;

static SvWorker worker;

static void sv_reload_and_assign(void);

/*
 * Does this worker read partition p?  Of the partitions the source reads
 * (partitions =>, streamview_source_reads_partition), a source worker reads
 * its share, p % worker_count = worker_index; a replay worker (worker_count
 * 1) reads them all.  The one place that says which partitions a worker
 * reads; the watermark, though, is the source's, over every partition the
 * source reads (classify.c, sv_refresh_others in ledger.c).
 */
bool
streamview_owns_partition(const SvSource *src, int32 partition)
{
	return streamview_source_reads_partition(src, partition) &&
		(src->worker_count <= 1 || partition % src->worker_count == src->worker_index);
}

/* A replay worker's one version. */
static SvVersion *
sv_replayed_version(void)
{
	Assert(worker.kind == SV_WORKER_REPLAY && worker.versions != NIL);
	return linitial(worker.versions);
}

static void
sv_free_versions(void)
{
	ListCell   *lc;

	foreach(lc, worker.versions)
	{
		SvVersion  *v = lfirst(lc);

		if (v->plan)
			SPI_freeplan(v->plan);
		if (v->partial_plan)
			SPI_freeplan(v->partial_plan);
		if (v->merge_plan)
			SPI_freeplan(v->merge_plan);
		MemoryContextDelete(GetMemoryChunkContext(v));
	}
	list_free(worker.versions);
	worker.versions = NIL;
}

static void
sv_prepare_one(void *v)
{
	streamview_prepare_version(worker.src, v);
}

/*
 * Prepare a version in a subtransaction: if that fails for a version no
 * reader sees (its table dropped by hand, say), the version fails alone.
 */
static void
sv_prepare(SvVersion *v)
{
	ErrorData  *err = streamview_in_subtransaction(sv_prepare_one, v);

	if (err != NULL)
		streamview_fail_version(v, err);
}

/*
 * The signature of the versions the worker maintains (NULL: the source is
 * gone); in a batch's transaction, before anything is written.  A worker
 * whose source's settings changed since it loaded them (alter_source:
 * brokers, options, max_future) ends the transaction and stops here, so
 * that nothing is applied with the old settings once the new ones are
 * committed; the batch in hand is read again by the next worker, which the
 * launcher starts at once (a change is not a failure) from the stored
 * offsets.
 */
static char *
sv_signature(void)
{
	char	   *settings = NULL;
	char	   *sig = streamview_versions_signature(worker.source_id, worker.replay_version_id,
												   &settings);
	bool		changed = sig != NULL && strcmp(settings, worker.src->settings) != 0;

	if (settings)
		pfree(settings);
	if (changed)
	{
		streamview_commit_batch();
		streamview_stop_because("its source was changed",
								"The launcher starts it again at once, with the source's new settings, "
								"from the stored offsets.");
	}
	return sig;
}

/* (Re)load the versions; in a transaction.  Returns false if the source is gone. */
static bool
sv_load(void)
{
	ListCell   *lc;
	MemoryContext old;
	char	   *sig = sv_signature();

	if (sig == NULL)
		return false;
	sv_free_versions();
	old = MemoryContextSwitchTo(TopMemoryContext);
	worker.versions = streamview_load_versions(worker.src, worker.replay_version_id);
	MemoryContextSwitchTo(old);
	foreach(lc, worker.versions)
		sv_prepare(lfirst(lc));
	if (worker.signature)
		pfree(worker.signature);
	worker.signature = sig;
	return true;
}

/*
 * Assign every partition this worker reads (streamview_owns_partition: the
 * source's partitions =>, its share of them) at the lowest next offset of
 * any version.  With no version to maintain, read nothing.  Each version
 * gets a ledger row for every partition read, stored with the
 * next batch or housekeeping: one that has delivered nothing yet shows in
 * streamview.partitions too, holding the watermark back.  A partition
 * taken out of the source's partitions keeps its rows, untouched.
 */
static void
sv_assign(void)
{
	int64	   *start = palloc(worker.nparts * sizeof(int64));
	ListCell   *lc;

	if (worker.versions == NIL)
	{
		streamview_kafka_assign(worker.kafka, 0, NULL);
		streamview_align_reset(0);
		return;
	}

	for (int p = 0; p < worker.nparts; p++)
	{
		if (!streamview_owns_partition(worker.src, p))
		{
			start[p] = SV_NOT_ASSIGNED;
			continue;
		}
		start[p] = PG_INT64_MAX;
		foreach(lc, worker.versions)
		{
			SvVersion  *v = lfirst(lc);
			int64		next = p < v->nparts ? v->parts[p].next_offset : -1;

			start[p] = Min(start[p], next);
		}
		if (start[p] == PG_INT64_MAX)
			start[p] = -1;
	}
	foreach(lc, worker.versions)
	{
		SvVersion  *v = lfirst(lc);

		for (int p = 0; p < worker.nparts; p++)
		{
			SvPartState *ps;

			if (!streamview_owns_partition(worker.src, p))
				continue;
			ps = streamview_part(v, p);
			ps->dirty = ps->dirty || !ps->known;
		}
	}
	streamview_kafka_assign(worker.kafka, worker.nparts, start);
	streamview_align_reset(worker.nparts);
	worker.src->assigned_at = GetCurrentTimestamp();
	pfree(start);

	/*
	 * The first batch after an assignment is one round: a new view (or a
	 * worker that starts) shows its first rows at once, not after a whole
	 * batch of its backlog (streamview.batch_max_time).
	 */
	worker.one_round_left = Max(worker.one_round_left, 1);
}

static void
sv_note_error(const char *error)
{
	if (error == NULL && worker.last_error == NULL)
		return;
	if (error && worker.last_error && strcmp(error, worker.last_error) == 0)
		return;
	streamview_begin_batch("recording source error");
	if (error)
		streamview_record_worker_error(worker.source_id, error, NULL, true);
	else
		streamview_clear_source_error(worker.source_id, worker.last_error);
	streamview_commit_batch();
	if (worker.last_error)
		pfree(worker.last_error);
	worker.last_error = error ? MemoryContextStrdup(TopMemoryContext, error) : NULL;
}

/*
 * While the worker waits for its topic: a look at the catalog, so that a
 * change of the source's settings (brokers that were wrong, say) is not
 * waited out.
 */
static void
sv_check_source(void)
{
	char	   *sig;

	streamview_begin_batch("checking the source");
	sig = sv_signature();
	streamview_commit_batch();
	if (sig)
		pfree(sig);
}

/*
 * Ask the brokers about the topic: new partitions are assigned, and what is
 * wrong (brokers away, topic missing) is the source's error until it is
 * mended (sv_note_error: status.error shows it for as long as it lasts).
 * wait: until the topic exists and has partitions, looking at the source
 * in the catalog between tries.  A source limited to some partitions
 * (partitions =>) waits the same way while the topic has none of them; one
 * it has only some of reads those, and the others once they exist.
 */
static void
sv_check_partitions(bool wait)
{
	for (;;)
	{
		int			n = streamview_kafka_partition_count(worker.kafka, 2000);
		char	   *err = streamview_kafka_report(worker.kafka);
		/*
		 * has the topic a partition the source reads?  The source's question,
		 * not this worker's: one of several workers may have none of them
		 * (more workers than partitions) and just reads nothing
		 */
		bool		any = false;

		for (int p = 0; p < n && !any; p++)
			any = streamview_source_reads_partition(worker.src, p);

		worker.last_partition_check = GetCurrentTimestamp();
		if (n > worker.nparts)
		{
			worker.nparts = n;
			worker.src->topic_partitions = n;
			sv_assign();
		}
		if (n == 0 && err == NULL)
			err = psprintf("topic \"%s\" has no partitions", worker.src->topic);
		else if (!any && err == NULL)
			err = psprintf("topic \"%s\" has %d partitions, none of those source \"%s\" reads",
						   worker.src->topic, n, worker.src->name);
		sv_note_error(err);
		if (any || !wait)
			return;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 SV_IDLE_WAIT_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (streamview_stop_requested())
			streamview_stop();
		sv_check_source();
	}
}

/* Source worker: offset marks, from the first version it maintains. */
static void
sv_record_marks(void)
{
	ListCell   *lc;

	foreach(lc, worker.versions)
	{
		SvVersion  *v = lfirst(lc);

		if (!v->failed)
		{
			streamview_record_marks(worker.src, v, &worker.mark_minutes, &worker.nmark_minutes);
			return;
		}
	}
}

/*
 * Advisory: the group's committed offsets follow the live version, for lag
 * tools; each worker commits its own partitions only.
 */
static void
sv_commit_to_kafka(void)
{
	int64	   *next = palloc(worker.nparts * sizeof(int64));
	ListCell   *lc;

	for (int p = 0; p < worker.nparts; p++)
		next[p] = -1;
	foreach(lc, worker.versions)
	{
		SvVersion  *v = lfirst(lc);

		if (v->state != SV_VERSION_LIVE)
			continue;
		for (int p = 0; p < worker.nparts && p < v->nparts; p++)
			if (streamview_owns_partition(worker.src, p))
				next[p] = v->parts[p].next_offset;
	}
	streamview_kafka_commit(worker.kafka, worker.nparts, next);
	pfree(next);
}

/*
 * A partition's log that ends before what a version has already consumed
 * was deleted and created again (or truncated): the broker then serves its
 * new messages from offset 0, and they would be taken for messages the
 * version consumed before, and skipped without a trace.  That is never
 * silently accepted: the worker stops with an error that says so, shown in
 * status.error, until someone decides what the new topic means.
 */
static void
sv_check_log_end(SvVersion *v, int32 p, int64 end)
{
	if (end < 0 || p >= v->nparts || v->parts[p].next_offset <= end)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("partition %d of topic \"%s\" ends at offset " INT64_FORMAT
					", before offset " INT64_FORMAT " that stream view \"%s\" has already read",
					p, worker.src->topic, end, v->parts[p].next_offset, v->view_name),
			 errdetail("The topic was deleted and created again, or its log was truncated: "
					   "its new messages would be taken for ones already read."),
			 errhint("Drop the source and create it again to read the new topic from its start.")));
}

/*
 * The next round of a batch of several, in the batch's memory (the previous
 * round's is freed): what the queue has ready now, without waiting, unless
 * the fetcher has seen messages not in the queue yet (the worker is behind,
 * reading a backlog faster than one fetch brings it).  Then the round waits
 * for the next fetches, up to SV_FETCH_WAIT_MS, until it is full
 * (streamview.batch_size messages or batch_max_bytes): a backlog is read in
 * full rounds, each pre-aggregating many events, and in full batches,
 * rather than in a batch per fetch, each upserting the same groups again.
 * At the log end the batch ends at once, as before.
 */
#define SV_FETCH_WAIT_MS 50

static int
sv_next_round(SvEvent *events)
{
	int64		max_bytes = (int64) streamview_batch_max_bytes_kb * 1024;
	TimestampTz deadline = GetCurrentTimestamp() + SV_FETCH_WAIT_MS * 1000L;
	MemoryContext old;
	int64		bytes = 0;
	int			n = 0;

	MemoryContextReset(worker.batch_cxt);
	old = MemoryContextSwitchTo(worker.batch_cxt);
	for (;;)
	{
		long		left_ms = (long) ((deadline - GetCurrentTimestamp()) / 1000);
		bool		behind = left_ms > 0 && streamview_kafka_behind(worker.kafka);
		int			got;

		got = streamview_kafka_consume(worker.kafka, events + n, worker.capacity - n,
									   max_bytes - bytes, behind ? left_ms : 0);
		for (int i = n; i < n + got; i++)
			bytes += events[i].keylen + events[i].paylen;
		n += got;
		if (!behind || got == 0 || n >= worker.capacity || bytes >= max_bytes ||
			streamview_stop_requested())
			break;
	}
	MemoryContextSwitchTo(old);
	return n;
}

/*
 * A replay worker's next round, in the batch's memory as sv_next_round's:
 * a full one (streamview_replay_consume waits for it), or what is left up
 * to the log end.
 */
static int
sv_next_replay_round(SvEvent *events)
{
	MemoryContext old;
	int			n;

	MemoryContextReset(worker.batch_cxt);
	old = MemoryContextSwitchTo(worker.batch_cxt);
	n = streamview_replay_consume(sv_replayed_version(), worker.kafka, events, worker.capacity,
								  (int64) streamview_batch_max_bytes_kb * 1024,
								  streamview_batch_timeout_ms);
	MemoryContextSwitchTo(old);
	return n;
}

/*
 * Is there more for this batch than the round in hand (n messages, not
 * applied yet)?  A source worker: the queue has more ready, or the fetcher
 * has seen more.  A replay worker: the log goes on beyond the round, as
 * its fetches last saw it; not from the archive, whose batches are read in
 * a transaction of their own, and not under max_rate, which paces batches.
 */
static bool
sv_more_rounds(int n)
{
	if (streamview_batch_max_time_ms <= 0 || worker.one_round_left > 0)
		return false;
	if (worker.kind == SV_WORKER_SOURCE)
		return !streamview_kafka_drained(worker.kafka) || streamview_kafka_behind(worker.kafka);
	return !worker.reading_archive &&
		streamview_replay_more_rounds(sv_replayed_version(), worker.kafka, n);
}

/*
 * Does reading a backlog's partitions in step pay (align.c)?  It costs the
 * fetcher: a paused partition's messages already in the queue are dropped
 * and fetched again (make bench's workload (b), 100 users, read 20% slower
 * with it).  It saves upserts of (window, keys) whose events lie in
 * several partitions (workload (a), 10,000 users: half of them), and pays
 * where upserts are a large part of the work: while the last batch of at
 * least SV_ALIGN_MIN_EVENTS messages upserted a row per
 * SV_ALIGN_EVENTS_PER_ROW events or more.  The first batch after an
 * assignment is one round, so a backlog is judged by its first round:
 * (a) upserts 0.9 rows per event there, (b) 0.05.  A worker starts with it
 * on.
 */
#define SV_ALIGN_EVENTS_PER_ROW 5
#define SV_ALIGN_MIN_EVENTS 1000

static void
sv_note_align(int64 consumed, int64 upserted)
{
	if (consumed >= Min(worker.capacity, SV_ALIGN_MIN_EVENTS))
		worker.align_pays = upserted * SV_ALIGN_EVENTS_PER_ROW >= consumed;
}

/*
 * Roll back a batch whose merge failed, and read its messages again one
 * round a batch: a round that is a batch of its own upserts its events
 * directly, and an event that fails is found and dead-lettered there
 * (apply.c).  The versions are loaded again (their offsets and remembered
 * ids as committed) and the partitions re-assigned at the stored offsets.
 */
static void
sv_roll_back_batch(int64 consumed)
{
	AbortCurrentTransaction();
	streamview_batch_aborted();
	streamview_archive_forget();	/* its rows went with the transaction */
	if (worker.mark_minutes)	/* and so did its offset marks: reload */
	{
		pfree(worker.mark_minutes);
		worker.mark_minutes = NULL;
		worker.nmark_minutes = 0;
	}
	MemoryContextSwitchTo(worker.loop_cxt);
	worker.one_round_left = consumed;
	sv_reload_and_assign();
}

/*
 * Apply one batch, starting with the round in events[0..n).  Returns false
 * when the catalog changed under us; the batch was then not applied, and
 * the caller must reload and re-assign.
 *
 * A source worker's batch takes further rounds while the queue still has
 * messages ready (each round at most streamview.batch_size messages in
 * memory), pre-aggregating them (batch.c), until the queue is drained, the
 * batch has taken streamview.batch_max_time, or its versions hold
 * streamview.batch_max_groups partial rows; then it merges them, upserting
 * each (window, keys) once, and commits the offsets with them.  A round
 * that drained the queue at once, with nothing more fetched, is a batch by
 * itself, upserted directly: a modest stream is applied as soon as it
 * arrives.  A replay worker's batch takes rounds alike, each a full one
 * (streamview_replay_consume), until the round that reaches the log end
 * or the limits above, so that a replay pre-aggregates as the live
 * version's backlog does; under max_rate, or from the archive, a batch is
 * one round.
 */
static bool
sv_apply(SvEvent *events, int n)
{
	char	   *sig;
	bool		caught_up;
	TimestampTz start = GetCurrentTimestamp();
	bool		rounds;
	int64		consumed = 0;
	int64		upserted_before = streamview_upserted_rows();

	streamview_begin_batch("applying batch");
	sig = sv_signature();
	if (sig == NULL || strcmp(sig, worker.signature) != 0)
	{
		streamview_commit_batch();
		return false;
	}
	pfree(sig);
	for (int p = 0; p < worker.nparts; p++)
	{
		ListCell   *lc;
		int64		end;

		if (!streamview_owns_partition(worker.src, p))
			continue;
		end = streamview_kafka_log_end(worker.kafka, p);
		foreach(lc, worker.versions)
		{
			sv_check_log_end(lfirst(lc), p, end);
			streamview_note_log_end(lfirst(lc), p, end);
		}
	}
	rounds = sv_more_rounds(n);
	for (;;)
	{
		streamview_apply_round(worker.src, worker.versions, events, n,
							   worker.kind == SV_WORKER_SOURCE, rounds);
		/*
		 * Each round's messages archived before the next round's replace
		 * them, and the offset marks of each round, so that a batch of
		 * several rounds leaves marks as fine as one-round batches do.
		 */
		if (worker.kind == SV_WORKER_SOURCE)
		{
			streamview_archive_store(worker.src, events, n);	/* archive.c */
			sv_record_marks();
		}
		/* read the partitions of a backlog in step (align.c) */
		if (!worker.reading_archive)
		{
			streamview_align_note(events, n);
			streamview_align(worker.kafka, worker.src, true, worker.align_pays);
		}
		consumed += n;
		if (!rounds || streamview_stop_requested() ||
			streamview_partial_rows(worker.versions) >= streamview_batch_max_groups ||
			TimestampDifferenceExceeds(start, GetCurrentTimestamp(), streamview_batch_max_time_ms) ||
			(worker.kind == SV_WORKER_REPLAY && !sv_more_rounds(0)))
			break;
		n = worker.kind == SV_WORKER_REPLAY ? sv_next_replay_round(events) : sv_next_round(events);
		if (n == 0)
			break;
		pgstat_report_activity(STATE_RUNNING, "applying batch");
	}
	if (worker.one_round_left > 0)
		worker.one_round_left -= consumed;
	if (!streamview_end_batch(worker.src, worker.versions))
	{
		sv_roll_back_batch(consumed);
		return true;
	}
	sv_note_align(consumed, streamview_upserted_rows() - upserted_before);
	caught_up = worker.kind == SV_WORKER_REPLAY && streamview_replay_check_caught_up(sv_replayed_version());
	streamview_commit_batch();
	sv_note_error(NULL);		/* a batch went through: the source is fine */
	if (worker.kind == SV_WORKER_SOURCE)
		sv_commit_to_kafka();
	if (caught_up)
		streamview_replay_done(sv_replayed_version());
	return true;
}

static void
sv_reload_and_assign(void)
{
	bool		alive;

	streamview_begin_batch("loading stream views");
	alive = sv_load();
	streamview_commit_batch();
	if (!alive || (worker.kind == SV_WORKER_REPLAY && worker.versions == NIL))
	{
		ereport(LOG, (errmsg("pg_streamview worker for source \"%s\" has nothing left to do",
							 worker.src->name)));
		proc_exit(0);
	}
	sv_assign();
}

/*
 * Idle: refresh watermarks (and what holds them back), store the ledger
 * rows of partitions just assigned and the log ends, expire the seen ids
 * no event can need any more, notice catalog changes and new partitions.
 */
static void
sv_housekeeping(void)
{
	TimestampTz now = GetCurrentTimestamp();
	char	   *sig;
	bool		changed;
	bool		caught_up;

	worker.last_housekeeping = now;
	sv_note_error(streamview_kafka_report(worker.kafka));
	streamview_begin_batch("refreshing watermarks");
	sig = sv_signature();
	changed = (sig == NULL || strcmp(sig, worker.signature) != 0);
	if (sig)
		pfree(sig);
	if (!changed)
	{
		ListCell   *lc;

		streamview_refresh_watermarks(worker.src, worker.versions);
		streamview_store_stats(worker.src, worker.versions, now);
		foreach(lc, worker.versions)
		{
			SvVersion  *v = lfirst(lc);

			if (v->failed)
				continue;
			streamview_store_offsets(v);	/* the rows sv_assign added */
			streamview_expire_seen(worker.src, v);
			for (int p = 0; p < worker.nparts; p++)
				if (streamview_owns_partition(worker.src, p))
					streamview_store_log_end(v, p, streamview_kafka_log_end(worker.kafka, p));
		}
		if (worker.kind == SV_WORKER_SOURCE)
			streamview_archive_housekeeping(worker.src, worker.kafka, worker.nparts);
	}
	caught_up = !changed && worker.kind == SV_WORKER_REPLAY &&
		streamview_replay_check_caught_up(sv_replayed_version());
	streamview_commit_batch();
	if (caught_up)
		streamview_replay_done(sv_replayed_version());
	if (changed)
		sv_reload_and_assign();
	/* while something is wrong, look every few seconds whether it still is */
	if (TimestampDifferenceExceeds(worker.last_partition_check, now,
								   worker.last_error ? SV_PROBLEM_CHECK_MS : SV_PARTITION_CHECK_MS))
		sv_check_partitions(false);
}

/*
 * Sleep until messages arrive, the latch is set or a second has passed.
 * Returns whether the latch was set: an API call that committed wakes the
 * worker (streamview_wake_workers), and a view created or dropped is then
 * looked at at once, not at the next idle round.
 */
static bool
sv_wait_for_messages(WaitEventSet *wes)
{
	WaitEvent	ev;
	bool		woken;

	woken = WaitEventSetWait(wes, SV_IDLE_WAIT_MS, &ev, 1, PG_WAIT_EXTENSION) == 1 &&
		ev.events == WL_LATCH_SET;
	ResetLatch(MyLatch);
	streamview_kafka_drain_fd(worker.kafka);
	return woken;
}

/*
 * A replay worker, before it reads Kafka: the offsets the brokers no longer
 * keep come from the source's archive (replay.c says which), batch by
 * batch, applied like messages from Kafka; then, once the log's start has
 * not moved past what was read, Kafka is assigned at the version's next
 * offsets, exactly after the last message the archive gave.
 */
static void
sv_replay_archive(void)
{
	int			capacity = streamview_batch_size;
	SvEvent    *events = MemoryContextAlloc(TopMemoryContext, capacity * sizeof(SvEvent));

	worker.reading_archive = true;
	do
	{
		for (;;)
		{
			int			n;

			CHECK_FOR_INTERRUPTS();
			if (streamview_stop_requested())
				streamview_stop();
			MemoryContextReset(worker.batch_cxt);
			streamview_begin_batch("reading the archive");
			n = streamview_replay_archive_batch(sv_replayed_version(), worker.src, events,
												streamview_replay_batch_limit(sv_replayed_version(), capacity),
												worker.batch_cxt);
			streamview_commit_batch();
			if (n == 0)
				break;
			if (!sv_apply(events, n))
				sv_reload_and_assign();
			streamview_replay_after_batch(sv_replayed_version());
		}
	} while (streamview_replay_archive_recheck(sv_replayed_version(), worker.src, worker.kafka,
											   worker.nparts));
	pfree(events);
	worker.reading_archive = false;
	sv_assign();
}

/*
 * The loop of both kinds of worker.  Each round, in a memory context reset
 * every round: check for interrupts and postmaster death, reload the
 * configuration on SIGHUP, take the messages ready (streamview_kafka_consume:
 * up to streamview.batch_size and streamview.batch_max_bytes; idle, waiting
 * at most streamview.batch_timeout for a first one), and apply them in one
 * transaction; when nothing came, do the housekeeping (watermarks, catalog
 * changes, new partitions) and sleep on the latch and the Kafka queue's
 * pipe for up to a second.
 */
static void
sv_main_loop(void)
{
	SvEvent    *events = NULL;
	WaitEventSet *wes = CreateWaitEventSet(TopMemoryContext, 3);
	int			capacity = 0;

	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wes, WL_SOCKET_READABLE, streamview_kafka_wait_fd(worker.kafka), NULL, NULL);

	worker.loop_cxt = AllocSetContextCreate(TopMemoryContext, "pg_streamview loop",
											ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		int			n;
		MemoryContext old;

		/* whatever a round allocates outside a transaction dies with it */
		MemoryContextSwitchTo(worker.loop_cxt);
		MemoryContextReset(worker.loop_cxt);
		CHECK_FOR_INTERRUPTS();
		if (streamview_stop_requested())
			streamview_stop();
		/* a busy worker never sleeps on WL_EXIT_ON_PM_DEATH: look */
		if (!PostmasterIsAlive())
			proc_exit(1);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (capacity != streamview_batch_size)
		{
			capacity = streamview_batch_size;
			events = events ? repalloc(events, capacity * sizeof(SvEvent))
				: MemoryContextAlloc(TopMemoryContext, capacity * sizeof(SvEvent));
			worker.capacity = capacity;
		}

		MemoryContextReset(worker.batch_cxt);
		old = MemoryContextSwitchTo(worker.batch_cxt);
		if (worker.kind == SV_WORKER_REPLAY)
			n = streamview_replay_consume(sv_replayed_version(), worker.kafka, events, capacity,
										  (int64) streamview_batch_max_bytes_kb * 1024,
										  streamview_batch_timeout_ms);
		else
			n = streamview_kafka_consume(worker.kafka, events, capacity,
										 (int64) streamview_batch_max_bytes_kb * 1024,
										 streamview_batch_timeout_ms);
		MemoryContextSwitchTo(old);

		if (n > 0)
		{
			/*
			 * A set latch means: stop, reload (flags looked at above), or
			 * look at the catalog, which the batch does before it applies
			 * (sv_apply).  Reset it here, before that look: left set while
			 * batches keep coming, it would end every later wait for a fetch
			 * at once, and cut a replay's batches to what each fetch brings.
			 * Idle, the latch is left for sv_wait_for_messages to see.
			 */
			ResetLatch(MyLatch);
			if (!sv_apply(events, n))
				sv_reload_and_assign();
			if (worker.kind == SV_WORKER_REPLAY)
				streamview_replay_after_batch(sv_replayed_version());
			if (TimestampDifferenceExceeds(worker.last_housekeeping, GetCurrentTimestamp(),
										   SV_IDLE_WAIT_MS))
				sv_housekeeping();
			continue;
		}
		streamview_align(worker.kafka, worker.src, false, worker.align_pays);
		sv_housekeeping();
		if (sv_wait_for_messages(wes) && !streamview_stop_requested())
			sv_housekeeping();
	}
}

/*
 * One worker per source and worker index (or per replayed version), even if
 * a second launcher ever runs: a session lock on the catalog row's object,
 * (sources, id, index) or (versions, id, 0); streamview.status counts them
 * to tell whether every worker of a version runs.  Not an advisory lock,
 * which any role could take first and so keep the source from ever
 * starting: no SQL takes object locks on an extension's table.  Released
 * by sv_on_exit.
 */
static bool
sv_take_worker_lock(void)
{
	LOCKTAG		tag;
	Oid			nsp = get_namespace_oid(STREAMVIEW_SCHEMA, false);
	bool		replay = worker.kind == SV_WORKER_REPLAY;
	Oid			classid = get_relname_relid(replay ? "versions" : "sources", nsp);

	SET_LOCKTAG_OBJECT(tag, MyDatabaseId, classid,
					   replay ? worker.replay_version_id : worker.source_id,
					   replay ? 0 : worker.worker_index);
	return LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

static void
sv_on_exit(int code, Datum arg)
{
	streamview_kafka_close(worker.kafka);
	worker.kafka = NULL;

	/*
	 * The worker lock.  Process exit does not release a session lock: only
	 * a transaction's abort does, and a worker that stops (streamview_stop,
	 * nothing to do, a replay done) exits outside one.  The lock then stayed
	 * in the shared lock table under a dead pid, and a later worker for the
	 * source could find "another worker serves it" and never start (seen
	 * after streamview.enabled off and on).  make test SANITIZE=1 found it:
	 * with assertions, ProcKill checks that a process leaves no lock behind.
	 */
	LockReleaseSession(DEFAULT_LOCKMETHOD);
}

/* Record why the worker stops, in a transaction of its own, then exit(1). */
static void
sv_fail(void)
{
	ErrorData  *err;
	MemoryContext cxt = worker.batch_cxt ? worker.batch_cxt : TopMemoryContext;

	HOLD_INTERRUPTS();
	EmitErrorReport();
	MemoryContextSwitchTo(cxt);
	err = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	streamview_batch_aborted();
	RESUME_INTERRUPTS();

	if (worker.src != NULL)
	{
		PG_TRY();
		{
			streamview_begin_batch("recording worker error");
			streamview_record_worker_error(worker.source_id, err->message, err->detail, true);
			/* a replay fails for good, unless the error was transient */
			if (worker.kind == SV_WORKER_REPLAY && !streamview_transient_error(err->sqlerrcode))
				streamview_mark_failed(worker.replay_version_id, err->message);
			streamview_commit_batch();
		}
		PG_CATCH();
		{
			EmitErrorReport();
			FlushErrorState();
		}
		PG_END_TRY();
	}
	proc_exit(1);
}

/*
 * The entry point of both kinds of worker.  Connects as the extension's
 * owner, pins its settings, takes its lock, loads its source and versions,
 * opens its consumer and runs the loop; any error ends in sv_fail.
 */
void
streamview_worker_main(Datum arg)
{
	SvWorkerParams params;
	sigjmp_buf	local_sigjmp_buf;
	bool		locked;
	char	   *group_id;

	memcpy(&params, MyBgworkerEntry->bgw_extra, sizeof(params));
	worker.kind = params.kind;
	worker.align_pays = true;
	worker.source_id = params.source_id;
	worker.replay_version_id = params.replay_version_id;
	worker.worker_index = params.kind == SV_WORKER_SOURCE ? params.worker_index : 0;

	streamview_worker_signals();
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(params.dboid, params.owner, 0);
	streamview_pin_worker_settings();

	worker.batch_cxt = AllocSetContextCreate(TopMemoryContext, "pg_streamview batch",
											 ALLOCSET_DEFAULT_SIZES);
	before_shmem_exit(sv_on_exit, (Datum) 0);

	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
		sv_fail();
	PG_exception_stack = &local_sigjmp_buf;

	streamview_begin_batch("starting");
	locked = sv_take_worker_lock();
	if (locked)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		worker.src = streamview_load_source(worker.source_id);
		MemoryContextSwitchTo(old);
	}
	if (worker.src != NULL && worker.kind == SV_WORKER_SOURCE)
	{
		/* before sv_load: preparing a version reads nothing, but be plain */
		worker.src->worker_index = worker.worker_index;
		worker.src->worker_count = worker.src->workers;
	}
	/* a worker index the source no longer has (workers lowered meanwhile) */
	if (!locked || worker.src == NULL ||
		worker.worker_index >= worker.src->worker_count || !sv_load() ||
		(worker.kind == SV_WORKER_REPLAY && worker.versions == NIL))
	{
		streamview_commit_batch();
		ereport(LOG, (errmsg("pg_streamview %s for source %d has nothing to do",
							 worker.kind == SV_WORKER_REPLAY ? "replay worker" : "source worker",
							 worker.source_id),
					  !locked ? errdetail("Another worker serves it.") :
					  worker.src != NULL && worker.worker_index >= worker.src->worker_count ?
					  errdetail("The source has %d workers now.", worker.src->worker_count) :
					  errdetail("The source no longer exists.")));
		proc_exit(0);
	}
	/*
	 * What the source's last worker recorded stays until this one reads the
	 * topic (sv_note_error), rather than being cleared now: restarted with
	 * settings that are still wrong, the source shows its error throughout.
	 */
	worker.last_error = streamview_source_error(worker.source_id);
	streamview_register_worker_latch();
	group_id = MemoryContextStrdup(TopMemoryContext,
								   streamview_consumer_group(get_database_name(params.dboid),
															 worker.src->name));
	streamview_commit_batch();
	if (worker.kind == SV_WORKER_SOURCE)
	{
		/* with several workers, which one: "1/2" is the first of two */
		char	   *which = worker.src->worker_count > 1 ?
			psprintf(" %d/%d", worker.worker_index + 1, worker.src->worker_count) : "";

		pgstat_report_appname(psprintf("%s %s%s", SV_BGW_TYPE_SOURCE, worker.src->name, which));
		streamview_worker_context(psprintf("pg_streamview source worker%s for source \"%s\"",
										   which, worker.src->name));
	}
	else
	{
		SvVersion  *v = sv_replayed_version();

		pgstat_report_appname(psprintf("%s %s v%d", SV_BGW_TYPE_REPLAY, v->view_name, v->version));
		streamview_worker_context(psprintf("pg_streamview replay worker for view \"%s\" version %d",
										   v->view_name, v->version));
	}

	worker.kafka = streamview_kafka_open(worker.src, group_id);
	sv_check_partitions(true);
	sv_note_error(NULL);
	if (worker.kind == SV_WORKER_REPLAY)
	{
		streamview_replay_start(worker.src, sv_replayed_version(), worker.kafka, worker.nparts);
		sv_replay_archive();
	}
	ereport(LOG, (errmsg("pg_streamview consuming topic \"%s\" for source \"%s\" (%d partitions, %d versions, worker %d of %d)",
						 worker.src->topic, worker.src->name, worker.nparts,
						 list_length(worker.versions), worker.worker_index + 1,
						 worker.src->worker_count),
				  errdetail("Advisory offsets go to consumer group \"%s\".", group_id)));
	sv_main_loop();
}
