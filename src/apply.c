/*-------------------------------------------------------------------------
 *
 * apply.c
 *	  Apply one micro-batch to every version of a source, in the caller's
 *	  transaction: upserts, offsets, watermarks, counters, dead letters.
 *
 * The order of work for one batch: parse every message once (parse.c),
 * hash the event ids, then per version classify (classify.c: duplicates,
 * by the ids the version remembers in memory (seen.c), too late, applied), apply
 * the applied events, and last store the ledger, seen ids and dead letters
 * (ledger.c) and the versions' stats (stats.c), all in the batch's one
 * transaction.
 *
 * The version's compiled statement (codegen.c) reads the applied events from
 * the worker's memory, one row per event and window it falls in
 * (streamview_internal._batch_rows, batch.c: no table, no heap_insert per
 * event), pre-aggregates them with the executor and upserts one row per
 * (window, keys) touched.  That statement runs as the view's owner, for at
 * most streamview.statement_timeout; everything else as the worker's user,
 * the extension's owner (the launcher starts workers as that role).  A
 * subset of the events (below: the halves that isolate a bad event) is fed
 * to the same prepared statement, by index, without copying anything.
 *
 * Any error one event's data can cause is that event's (a query_error dead
 * letter), never the source's: when the batch's statement fails, it is run
 * on no event at all to tell a broken statement (the version's error) from
 * bad events, which are then found by applying the batch by halves.  A
 * transient error (deadlock, lock timeout, out of memory) is the worker's:
 * the batch is rolled back whole and the worker restarts from its stored
 * offsets.  A broken statement on the live version is the worker's too
 * (retried with back-off until mended); on any other version it fails that
 * version (version.c), and the source's other versions go on.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/sha2.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

#include <openssl/evp.h>

/*
 * Duplicates are found by the SHA-256 of the event_id, not the id itself:
 * an id is whatever a producer wrote, and one of a few kilobytes would not
 * fit in an index ("index row size exceeds maximum"), an error that would
 * stop the whole source on one message; and a hash of fixed length keeps
 * the worker's set of remembered ids small.
 *
 * Straight from OpenSSL's EVP interface, with the digest fetched once per
 * process: pg_cryptohash_init() looks the algorithm up again for every
 * hash (OpenSSL 3 takes locks and allocates for it): 0.65 µs an id, an
 * eighth of a deduplicating worker's time; with the digest fetched once,
 * 0.2 µs.  The context lives as long as the process, so an
 * error in between leaks nothing.
 */
static void
sv_hash_event_ids(SvEvent *events, int n)
{
	static EVP_MD_CTX *ctx = NULL;
	static EVP_MD *sha256 = NULL;

	if (ctx == NULL)
	{
		sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
		ctx = EVP_MD_CTX_new();
		if (sha256 == NULL || ctx == NULL)
			elog(ERROR, "could not set up SHA-256 from OpenSSL");
	}
	for (int i = 0; i < n; i++)
	{
		SvEvent    *ev = &events[i];

		if (ev->reason != SV_REASON_NONE || ev->event_id == NULL)
			continue;
		if (EVP_DigestInit_ex2(ctx, sha256, NULL) != 1 ||
			EVP_DigestUpdate(ctx, ev->event_id, strlen(ev->event_id)) != 1 ||
			EVP_DigestFinal_ex(ctx, ev->event_id_hash, NULL) != 1)
			elog(ERROR, "could not compute a SHA-256 hash");
	}
}

/* ---------- applying ---------- */

/* The last view statement ran into streamview.statement_timeout. */
static bool sv_timed_out = false;

/*
 * The round being applied is one of a batch that pre-aggregates across
 * rounds (streamview_apply_round): versions that can run their partial
 * statement instead of their upsert, and keep its rows for the merge.
 */
static bool sv_partial_round = false;

/*
 * Rows upserted so far, by rounds applied directly and by merges, in all
 * versions (a running count: the caller takes differences).
 */
static int64 sv_upserted_rows = 0;

int64
streamview_upserted_rows(void)
{
	return sv_upserted_rows;
}

/*
 * Run the version's compiled statement over events idx[0..n), which it reads
 * from the worker's memory (batch.c), as the view's owner, for at most
 * streamview.statement_timeout: a view whose function sleeps or loops must
 * not hold the batch's transaction (and the xmin horizon, and its owner's
 * drop_view) without bound.  Background workers get no statement timeout
 * from PostgreSQL: the timer is set here.  The events are handed back
 * however the statement ends.  In a pre-aggregated round, the statement is
 * the version's partial statement, whose rows are kept (batch.c).
 */
static void
sv_run_statement(const SvSource *src, SvVersion *v, SvEvent *events, const int *idx, int n)
{
	int			rc;
	SvRunAs		ra;
	bool		partial = sv_partial_round && v->partial_plan != NULL;
	int			timeout_ms = streamview_statement_timeout_ms;
	TimestampTz start = GetCurrentTimestamp();

	if (timeout_ms > 0)
		enable_timeout_after(STATEMENT_TIMEOUT, timeout_ms);
	PG_TRY();
	{
		streamview_batch_feed(src, v, events, idx, n);
		streamview_run_as_begin(v->owner, &ra);
		rc = SPI_execute_plan(partial ? v->partial_plan : v->plan, NULL, NULL, false, 0);
		streamview_run_as_end(&ra);
		streamview_batch_unfeed();
	}
	PG_CATCH();
	{
		streamview_batch_unfeed();
		if (timeout_ms > 0)
		{
			disable_timeout(STATEMENT_TIMEOUT, false);
			/* ours, not a pg_cancel_backend(): that one is retried whole */
			if (geterrcode() == ERRCODE_QUERY_CANCELED &&
				TimestampDifferenceExceeds(start, GetCurrentTimestamp(), timeout_ms))
				sv_timed_out = true;
		}
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (timeout_ms > 0)
		disable_timeout(STATEMENT_TIMEOUT, false);
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed for view \"%s\": %s", v->view_name,
			 SPI_result_code_string(rc));
	if (partial)
	{
		/* once it went through: a half that fails keeps nothing */
		streamview_keep_partials(v, SPI_tuptable, SPI_processed);
		SPI_freetuptable(SPI_tuptable);
	}
	else
		sv_upserted_rows += SPI_processed;
}

/*
 * Errors that say nothing about the version itself: the batch is retried
 * whole after the worker restarts.  (Class 40: serialization failures and
 * deadlocks; 53: out of resources; 55P03: lock not available; 57: operator
 * intervention; 58: system errors.)
 */
bool
streamview_transient_error(int sqlerrcode)
{
	int			category = ERRCODE_TO_CATEGORY(sqlerrcode);

	return category == ERRCODE_TRANSACTION_ROLLBACK ||
		category == ERRCODE_INSUFFICIENT_RESOURCES ||
		category == ERRCODE_OPERATOR_INTERVENTION ||
		category == ERRCODE_SYSTEM_ERROR ||
		sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
}

/*
 * Run fn(arg) in a subtransaction.  Returns NULL on success.  On an error,
 * rolls the subtransaction back and returns the error, unless it is
 * transient: that is re-thrown (the worker retries after a restart).  A view
 * statement's timeout is not transient: it is returned (as 57014, with a
 * message that names the setting), for the caller to isolate slow events.
 */
ErrorData *
streamview_in_subtransaction(void (*fn) (void *), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile err = NULL;

	sv_timed_out = false;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		err = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (sv_timed_out)
			err->message = psprintf("the statement ran longer than streamview.statement_timeout (%d ms)",
									streamview_statement_timeout_ms);
		else if (streamview_transient_error(err->sqlerrcode))
			ReThrowError(err);
	}
	PG_END_TRY();
	return err;
}

typedef struct SvApplyArgs
{
	const SvSource *src;
	SvVersion  *v;
	SvEvent    *events;
	const int  *idx;
	int			n;
} SvApplyArgs;

static void
sv_apply_events(void *arg)
{
	SvApplyArgs *a = arg;

	sv_run_statement(a->src, a->v, a->events, a->idx, a->n);
}

/*
 * Apply events idx[0..n) in a subtransaction; see streamview_in_subtransaction.
 * n = 0 runs the statement on no event at all.
 */
static ErrorData *
sv_try_apply(const SvSource *src, SvVersion *v, SvEvent *events, const int *idx, int n,
			 SvVersionBatch *vb)
{
	SvApplyArgs a = {src, v, events, idx, n};
	ErrorData  *err;

	/* what is logged while one event is tried alone names it */
	if (n == 1)
		streamview_worker_context_event(events[idx[0]].partition, events[idx[0]].offset);
	err = streamview_in_subtransaction(sv_apply_events, &a);
	streamview_worker_context_event(-1, -1);

	if (err != NULL && err->sqlerrcode == ERRCODE_QUERY_CANCELED)
		vb->timeouts++;			/* the only cancel that comes back */
	return err;
}

/* Timeouts one batch of one version may meet while its slow events are found. */
static int
sv_timeout_budget(int n)
{
	int			levels = 0;

	while ((1 << levels) < n + 1)
		levels++;
	return 4 + 2 * levels;
}

/* Event i could not be applied by itself: a query_error dead letter. */
static void
sv_reject_event(const SvSource *src, SvVersion *v, SvEvent *events, int i, SvVersionBatch *vb,
				const ErrorData *err)
{
	SvEvent    *ev = &events[i];
	SvPartState *ps = streamview_part(v, ev->partition);

	ev->error = psprintf("%s", err->message);
	vb->failed[vb->nfailed++] = i;
	ps->applied--;
	ps->dead_lettered++;
	streamview_unremember(v, ev);
}

/*
 * Events idx[0..n) failed together with err.  Apply them by halves; a half
 * that goes through is kept (its subtransaction is committed), one that
 * fails is split again, down to the single events that fail by themselves.
 * k bad events out of n cost about 2·k·log2(n) statements, not n.  The
 * events applied are appended to ok[].  Returns false, with *last set, when
 * the batch has met more statement timeouts than its budget.
 */
static bool
sv_isolate(const SvSource *src, SvVersion *v, SvEvent *events, SvVersionBatch *vb,
		   const int *idx, int n, ErrorData *err, int *ok, int *nok, ErrorData **last)
{
	int			half = n / 2;

	*last = err;
	if (vb->timeouts > sv_timeout_budget(vb->napplied))
		return false;
	if (n == 1)
	{
		sv_reject_event(src, v, events, idx[0], vb, err);
		return true;
	}
	for (int part = 0; part < 2; part++)
	{
		const int  *sub = part ? idx + half : idx;
		int			m = part ? n - half : half;
		ErrorData  *e = sv_try_apply(src, v, events, sub, m, vb);

		if (e == NULL)
		{
			memcpy(ok + *nok, sub, m * sizeof(int));
			*nok += m;
		}
		else if (!sv_isolate(src, v, events, vb, sub, m, e, ok, nok, last))
			return false;
	}
	return true;
}

/*
 * Apply the version's events.  Any error that one event's data can cause
 * must become that event's dead letter, never the version's or the
 * source's: a data exception, but also a key too long for the table's index
 * ("index row size exceeds maximum", 54000), an error a user's function
 * raises, a statement timeout.  So when the batch fails (and the error is
 * not transient, which the worker retries whole), the statement is first
 * run on no event at all: if that fails too, the statement itself is broken
 * (its table dropped, a privilege revoked) and the version fails; otherwise
 * the events that fail by themselves are found by halves and dead-lettered.
 * A timeout is first retried whole, once: the slowness may have been the
 * server's, not an event's.
 */
static void
sv_apply_version(const SvSource *src, SvVersion *v, SvEvent *events, SvVersionBatch *vb)
{
	ErrorData  *err;
	ErrorData  *last;
	int		   *ok;
	int			nok = 0;

	if (vb->napplied == 0)
		return;
	err = sv_try_apply(src, v, events, vb->applied, vb->napplied, vb);
	if (err != NULL && err->sqlerrcode == ERRCODE_QUERY_CANCELED)
		err = sv_try_apply(src, v, events, vb->applied, vb->napplied, vb);
	if (err == NULL)
		return;
	if (ERRCODE_TO_CATEGORY(err->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
	{
		ErrorData  *probe = sv_try_apply(src, v, events, NULL, 0, vb);

		if (probe != NULL)
		{
			streamview_fail_version(v, probe);
			return;
		}
	}

	ok = palloc(vb->napplied * sizeof(int));
	if (!sv_isolate(src, v, events, vb, vb->applied, vb->napplied, err, ok, &nok, &last))
	{
		last->message = psprintf("%s, %d times in one batch: the view's statement is too slow "
								 "for its events", last->message, vb->timeouts);
		streamview_fail_version(v, last);
		return;
	}
	/* The subtransactions of the halves that went through committed their rows. */
	vb->applied = ok;
	vb->napplied = nok;
}

/*
 * Apply events vb->applied[0..napplied) to version v outside a worker's
 * batch, in the calling backend's transaction (replay_dead_letters): as a
 * batch applies them, bad events found by halves and moved to vb->failed
 * (query_error).  The view's statement is bounded by the caller's own
 * statement_timeout here, not streamview.statement_timeout: the timer is a
 * backend's, and setting it for each statement would cancel the caller's.
 */
void
streamview_apply_version_events(const SvSource *src, SvVersion *v, SvEvent *events,
								SvVersionBatch *vb)
{
	int			save = streamview_statement_timeout_ms;

	streamview_statement_timeout_ms = 0;
	PG_TRY();
	{
		sv_apply_version(src, v, events, vb);
	}
	PG_FINALLY();
	{
		streamview_statement_timeout_ms = save;
	}
	PG_END_TRY();
}

/*
 * Apply one round of consumed messages to every version: all but what ends
 * the batch (streamview_end_batch).  Inside the batch's transaction, SPI
 * connected; what the round allocates is freed when it ends, so that a
 * batch of many rounds holds one round's events at a time.
 * record_unreadable: store the dead letters of unreadable messages.
 * pre_aggregate: the batch may take further rounds; the versions that can
 * aggregate the round into partial rows do, and merge them at its end.
 */
void
streamview_apply_round(const SvSource *src, List *versions, SvEvent *events, int nevents,
					   bool record_unreadable, bool pre_aggregate)
{
	MemoryContext round_cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_streamview round",
													ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(round_cxt);
	int		   *unreadable = palloc(nevents * sizeof(int));
	int			nunreadable = 0;
	SvVersionBatch *vbs = palloc0(list_length(versions) * sizeof(SvVersionBatch));
	ListCell   *lc;
	StringInfoData gaps;
	bool		first = true;
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < nevents; i++)
	{
		streamview_parse_event(src, &events[i]);
		if (events[i].reason != SV_REASON_NONE)
			unreadable[nunreadable++] = i;
	}
	if (src->event_id_col >= 0)
		sv_hash_event_ids(events, nevents);

	foreach(lc, versions)
	{
		SvVersion  *v = lfirst(lc);
		SvVersionBatch *vb = &vbs[foreach_current_index(lc)];

		if (v->failed)
			continue;
		if (first)
			initStringInfo(&gaps);
		streamview_classify(src, v, events, nevents, vb, now,
							first && record_unreadable ? &gaps : NULL);
		streamview_stats_count(v, vb->consumed, now);
		first = false;
		sv_partial_round = pre_aggregate;
		sv_apply_version(src, v, events, vb);
		sv_partial_round = false;
	}

	/*
	 * Unreadable messages are the source's, recorded by its source worker
	 * only: a replay worker reading the same offsets would race it.
	 */
	if (record_unreadable)
		streamview_store_dead_letters(src, NULL, events, unreadable, nunreadable, SV_REASON_NONE);
	if (!first && record_unreadable && gaps.len > 0)
	{
		ereport(WARNING,
				(errmsg("source \"%s\": offsets missing from the log", src->name),
				 errdetail("%s (deleted by retention or compaction before they were read).", gaps.data)));
		streamview_record_worker_error(src->source_id, "offsets missing from the log", gaps.data, false);
	}
	foreach(lc, versions)
	{
		SvVersion  *v = lfirst(lc);
		SvVersionBatch *vb = &vbs[foreach_current_index(lc)];

		if (v->failed)
			continue;
		streamview_store_dead_letters(src, v, events, vb->too_late, vb->ntoo_late, SV_REASON_TOO_LATE);
		streamview_store_dead_letters(src, v, events, vb->failed, vb->nfailed, SV_REASON_QUERY_ERROR);
		if (v->seen)
			streamview_store_seen(src, v, events, vb->applied, vb->napplied);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(round_cxt);
}

typedef struct SvMergeArgs
{
	SvVersion  *v;
} SvMergeArgs;

/* Merge the version's partial rows into its table, as its owner. */
static void
sv_merge(void *arg)
{
	SvVersion  *v = ((SvMergeArgs *) arg)->v;
	SvRunAs		ra;
	int			rc;
	int			timeout_ms = streamview_statement_timeout_ms;

	if (timeout_ms > 0)
		enable_timeout_after(STATEMENT_TIMEOUT, timeout_ms);
	PG_TRY();
	{
		streamview_merge_feed(v);
		streamview_run_as_begin(v->owner, &ra);
		rc = SPI_execute_plan(v->merge_plan, NULL, NULL, false, 0);
		streamview_run_as_end(&ra);
		if (rc < 0)
			elog(ERROR, "SPI_execute_plan failed for view \"%s\": %s", v->view_name,
				 SPI_result_code_string(rc));
		sv_upserted_rows += SPI_processed;
	}
	PG_FINALLY();
	{
		streamview_merge_unfeed();
		if (timeout_ms > 0)
			disable_timeout(STATEMENT_TIMEOUT, false);
	}
	PG_END_TRY();
}

/*
 * End the batch: merge the partial rows its rounds kept into every
 * version's table (each (window, keys) upserted once), then store the
 * offsets, watermarks and stats.  Returns false, having stored nothing
 * more, when a merge failed: the events behind its partial rows are gone,
 * so the error cannot be pinned on one of them; the caller rolls the batch
 * back and reads its messages again one round a batch, where the event
 * that fails is found and dead-lettered (source_worker.c).  A transient
 * error is re-thrown, as everywhere.
 */
bool
streamview_end_batch(const SvSource *src, List *versions)
{
	ListCell   *lc;
	bool		merged = true;

	foreach(lc, versions)
	{
		SvVersion  *v = lfirst(lc);
		SvMergeArgs a = {v};
		ErrorData  *err;

		if (v->npartials > 0 && !v->failed && merged)
		{
			err = streamview_in_subtransaction(sv_merge, &a);
			if (err != NULL)
			{
				ereport(LOG,
						(errmsg("stream view \"%s\": merging a batch's partial rows failed: %s",
								v->view_name, err->message),
						 errdetail("The batch is rolled back and read again one round a batch.")));
				merged = false;
			}
		}
		streamview_drop_partials(v);
	}
	if (!merged)
		return false;
	foreach(lc, versions)
	{
		SvVersion  *v = lfirst(lc);

		if (!v->failed)
			streamview_store_offsets(v);
	}
	streamview_refresh_watermarks(src, versions);
	streamview_store_stats(src, versions, GetCurrentTimestamp());
	return true;
}

/* Apply a batch of one round (see above): a replay worker's, each time. */
void
streamview_apply_batch(const SvSource *src, List *versions, SvEvent *events, int nevents,
					   bool record_unreadable)
{
	streamview_apply_round(src, versions, events, nevents, record_unreadable, false);
	(void) streamview_end_batch(src, versions);
}
