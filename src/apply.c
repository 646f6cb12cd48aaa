/*-------------------------------------------------------------------------
 *
 * apply.c
 *	  Apply one micro-batch to every version of a source, in the caller's
 *	  transaction: upserts, offsets, watermarks, counters, dead letters.
 *
 * Per version, each message the version has not consumed yet is classified,
 * in this order (DESIGN.md, "Time semantics"):
 *	 unreadable → dead letter; event_id already applied → duplicate;
 *	 event time < watermark[p] − allowed lateness → too_late; else applied.
 * watermark[p] is max event time seen earlier in partition p minus the
 * source's max_out_of_orderness, so the classification depends only on the
 * partition's own history: the same log gives the same result whatever the
 * batch boundaries.
 *
 * Applied events are written to the version's temporary batch table (one row
 * per event and window it falls in) and the version's compiled statement
 * pre-aggregates them and upserts one row per (window, keys) touched.  That
 * statement runs as the view's owner; everything else as the worker's user,
 * the extension's owner (the launcher starts workers as that role).
 *
 * If the statement fails with a data exception (a division by zero in the
 * user's expression, say), the batch is applied again one event at a time
 * in subtransactions, and the events that fail become dead letters with
 * reason query_error: one bad message never stops the stream.  A transient
 * error (deadlock, lock timeout, out of memory) is the worker's: the batch
 * is rolled back whole and the worker restarts from its stored offsets.
 * Any other error (its table dropped by hand, a privilege revoked) on the
 * live version is the worker's too (retried with back-off until mended);
 * on any other version it fails that version, with the error recorded,
 * and the source's other versions go on.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
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

#define SV_ID_HASH_LEN PG_SHA256_DIGEST_LENGTH

typedef struct SvSeen
{
	uint8		id_hash[SV_ID_HASH_LEN];	/* hash key: SHA-256 of the event_id */
	int32		partition;
	TimestampTz event_time;
	bool		is_new;			/* applied in this batch: to be stored */
} SvSeen;

typedef struct SvVersionBatch
{
	int		   *applied;		/* indexes into the batch's events */
	int			napplied;
	int		   *too_late;
	int			ntoo_late;
	int		   *failed;			/* query_error */
	int			nfailed;
	HTAB	   *seen;
	int			timeouts;		/* statement timeouts met in this batch */
} SvVersionBatch;

/* ---------- arrays for unnest() ---------- */

static Datum
sv_array(Datum *elems, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  elemtype, typlen, typbyval, typalign));
}

static Datum
sv_bytea(const char *p, int len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), p, len);
	return PointerGetDatum(b);
}

/* ---------- per-version state ---------- */

static SvPartState *
sv_part(SvVersion *v, int32 partition)
{
	if (partition >= v->nparts)
	{
		int			n = partition + 1;

		v->parts = repalloc(v->parts, n * sizeof(SvPartState));
		for (int p = v->nparts; p < n; p++)
		{
			memset(&v->parts[p], 0, sizeof(SvPartState));
			v->parts[p].next_offset = -1;
			v->parts[p].log_end = -1;
		}
		v->nparts = n;
	}
	return &v->parts[partition];
}

/*
 * Duplicates are found by the SHA-256 of the event_id, not the id itself:
 * an id is whatever a producer wrote, and one of a few kilobytes would not
 * fit in seen_ids' index ("index row size exceeds maximum"), an error that
 * would stop the whole source on one message.  Computed once per batch,
 * inside its transaction (the hash context belongs to its resource owner).
 */
static void
sv_hash_event_ids(SvEvent *events, int n)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	for (int i = 0; i < n; i++)
	{
		SvEvent    *ev = &events[i];

		if (ev->reason != SV_REASON_NONE || ev->event_id == NULL)
			continue;
		if (pg_cryptohash_init(ctx) < 0 ||
			pg_cryptohash_update(ctx, (const uint8 *) ev->event_id, strlen(ev->event_id)) < 0 ||
			pg_cryptohash_final(ctx, ev->event_id_hash, SV_ID_HASH_LEN) < 0)
			elog(ERROR, "could not compute a SHA-256 hash: %s", pg_cryptohash_error(ctx));
	}
	pg_cryptohash_free(ctx);
}

/*
 * Load the ids of this batch's events that the version already remembers.
 */
static HTAB *
sv_load_seen(const SvSource *src, SvVersion *v, SvEvent *events, int n)
{
	HASHCTL		ctl = {0};
	HTAB	   *seen;
	Datum	   *ids = palloc(n * sizeof(Datum));
	int			nids = 0;
	Oid			argtypes[2] = {INT4OID, BYTEAARRAYOID};
	Datum		args[2];

	ctl.keysize = SV_ID_HASH_LEN;
	ctl.entrysize = sizeof(SvSeen);
	ctl.hcxt = CurrentMemoryContext;
	seen = hash_create("pg_streamview seen ids", Max(n, 16), &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	for (int i = 0; i < n; i++)
		if (events[i].reason == SV_REASON_NONE && events[i].event_id != NULL)
			ids[nids++] = sv_bytea((const char *) events[i].event_id_hash, SV_ID_HASH_LEN);
	if (nids == 0)
		return seen;

	args[0] = Int32GetDatum(v->version_id);
	args[1] = sv_array(ids, NULL, nids, BYTEAOID);
	SPI_execute_with_args("SELECT event_id_hash, partition, event_time FROM streamview.seen_ids "
						  "WHERE version_id = $1 AND event_id_hash = ANY ($2)",
						  2, argtypes, args, NULL, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;
		bytea	   *id = DatumGetByteaPP(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		SvSeen	   *e;

		if (VARSIZE_ANY_EXHDR(id) != SV_ID_HASH_LEN)
			continue;			/* cannot be: the batch asked for hashes */
		e = hash_search(seen, VARDATA_ANY(id), HASH_ENTER, NULL);
		e->partition = DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
		e->event_time = DatumGetTimestampTz(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
		e->is_new = false;
	}
	return seen;
}

/*
 * The lowest event time that can still be applied in partition p, or false
 * when the partition has no history yet (everything can).
 */
static bool
sv_apply_floor(const SvSource *src, SvVersion *v, int32 p, TimestampTz *floor)
{
	SvPartState *ps = sv_part(v, p);

	if (!ps->has_max)
		return false;
	*floor = ps->max_event_time - src->ooo_us - v->lateness_us;
	return true;
}

static bool
sv_is_duplicate(const SvSource *src, SvVersion *v, HTAB *seen, const SvEvent *ev)
{
	SvSeen	   *e;
	TimestampTz floor;

	if (ev->event_id == NULL)
		return false;
	e = hash_search(seen, ev->event_id_hash, HASH_FIND, NULL);
	if (e == NULL)
		return false;

	/*
	 * An id is remembered while an event carrying it could still be applied
	 * in the partition where it was applied.  Past that it counts as
	 * forgotten here, even if the row is still stored (rows are purged in
	 * arrears), so the outcome does not depend on when purging happened.
	 */
	if (sv_apply_floor(src, v, e->partition, &floor) && e->event_time < floor)
		return false;
	return true;
}

static void
sv_remember(HTAB *seen, const SvEvent *ev)
{
	SvSeen	   *e;

	if (ev->event_id == NULL)
		return;
	e = hash_search(seen, ev->event_id_hash, HASH_ENTER, NULL);
	e->partition = ev->partition;
	e->event_time = ev->event_time;
	e->is_new = true;
}

/*
 * Offsets a partition skipped: deleted by retention or compaction, or taken
 * by transaction markers (one offset each, not reported).  Principle 3:
 * nothing disappears without a trace, so larger gaps are recorded.
 */
static void
sv_note_gap(const SvSource *src, SvVersion *v, const SvEvent *ev, StringInfo gaps)
{
	SvPartState *ps = &v->parts[ev->partition];

	if (gaps == NULL || ps->next_offset < 0 || ev->offset <= ps->next_offset + 1)
		return;
	appendStringInfo(gaps, "%spartition %d: offsets " INT64_FORMAT " to " INT64_FORMAT,
					 gaps->len ? "; " : "", ev->partition, ps->next_offset, ev->offset - 1);
}

/* Classify the batch for one version; advances its in-memory state. */
static void
sv_classify(const SvSource *src, SvVersion *v, SvEvent *events, int n, SvVersionBatch *vb,
			StringInfo gaps)
{
	TimestampTz now = GetCurrentTimestamp();

	vb->applied = palloc(n * sizeof(int));
	vb->too_late = palloc(n * sizeof(int));
	vb->failed = palloc(n * sizeof(int));
	vb->seen = src->event_id_col >= 0 ? sv_load_seen(src, v, events, n) : NULL;

	for (int i = 0; i < n; i++)
	{
		SvEvent    *ev = &events[i];
		SvPartState *ps = sv_part(v, ev->partition);
		TimestampTz floor;

		if (ps->next_offset >= 0 && ev->offset < ps->next_offset)
			continue;			/* consumed by this version before */
		sv_note_gap(src, v, ev, gaps);
		ps->consumed++;
		ps->dirty = true;
		ps->next_offset = ev->offset + 1;
		ps->last_message_at = now;
		if (ev->reason != SV_REASON_NONE)
		{
			ps->dead_lettered++;
			continue;
		}
		if (vb->seen && sv_is_duplicate(src, v, vb->seen, ev))
			ps->duplicates++;
		else if (sv_apply_floor(src, v, ev->partition, &floor) && ev->event_time < floor)
		{
			ps->too_late++;
			vb->too_late[vb->ntoo_late++] = i;
		}
		else
		{
			ps->applied++;
			vb->applied[vb->napplied++] = i;
			if (vb->seen)
				sv_remember(vb->seen, ev);
		}
		if (!ps->has_max || ev->event_time > ps->max_event_time)
		{
			ps->has_max = true;
			ps->max_event_time = ev->event_time;
		}
	}
}

/* ---------- applying ---------- */

/* Write events idx[0..n) to the version's batch table, a row per window. */
static void
sv_fill_batch_table(const SvSource *src, SvVersion *v, SvEvent *events, const int *idx, int n)
{
	Relation	rel = table_open(v->batch_relid, RowExclusiveLock);
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *values = palloc((src->ncolumns + 1) * sizeof(Datum));
	bool	   *nulls = palloc((src->ncolumns + 1) * sizeof(bool));
	TimestampTz starts[SV_MAX_WINDOWS_PER_EVENT];
	BulkInsertState bistate = GetBulkInsertState();
	CommandId	cid = GetCurrentCommandId(true);

	for (int i = 0; i < n; i++)
	{
		SvEvent    *ev = &events[idx[i]];
		int			nw = streamview_window_starts(&v->window, ev->event_time, starts);

		memcpy(values, ev->values, src->ncolumns * sizeof(Datum));
		memcpy(nulls, ev->nulls, src->ncolumns * sizeof(bool));
		nulls[src->ncolumns] = false;
		for (int w = 0; w < nw; w++)
		{
			HeapTuple	tup;

			if (v->has_cut && starts[w] < v->cut)
				continue;		/* carried over from the live version */
			values[src->ncolumns] = TimestampTzGetDatum(starts[w]);
			tup = heap_form_tuple(desc, values, nulls);
			heap_insert(rel, tup, cid, 0, bistate);
			heap_freetuple(tup);
		}
	}
	FreeBulkInsertState(bistate);
	table_close(rel, NoLock);
	CommandCounterIncrement();
}

/* The last view statement ran into streamview.statement_timeout. */
static bool sv_timed_out = false;

/*
 * Run the version's compiled statement over its batch table, as the view's
 * owner, for at most streamview.statement_timeout: a view whose function
 * sleeps or loops must not hold the batch's transaction (and the xmin
 * horizon, and its owner's drop_view) without bound.  Background workers
 * get no statement timeout from PostgreSQL: the timer is set here.
 */
static void
sv_run_statement(SvVersion *v)
{
	int			rc;
	SvRunAs		ra;
	int			timeout_ms = streamview_statement_timeout_ms;
	TimestampTz start = GetCurrentTimestamp();

	if (timeout_ms > 0)
		enable_timeout_after(STATEMENT_TIMEOUT, timeout_ms);
	PG_TRY();
	{
		streamview_run_as_begin(v->owner, &ra);
		rc = SPI_execute_plan(v->plan, NULL, NULL, false, 0);
		streamview_run_as_end(&ra);
	}
	PG_CATCH();
	{
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

	SPI_execute(psprintf("DELETE FROM pg_temp.sv_batch_%d", a->v->version_id), false, 0);
	sv_fill_batch_table(a->src, a->v, a->events, a->idx, a->n);
	sv_run_statement(a->v);
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
	ErrorData  *err = streamview_in_subtransaction(sv_apply_events, &a);

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
	SvPartState *ps = sv_part(v, ev->partition);

	ev->error = psprintf("%s", err->message);
	vb->failed[vb->nfailed++] = i;
	ps->applied--;
	ps->dead_lettered++;
	if (vb->seen && ev->event_id)
		hash_search(vb->seen, ev->event_id_hash, HASH_REMOVE, NULL);
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

/* ---------- bookkeeping (as the extension owner) ---------- */

static void
sv_store_dead_letters(const SvSource *src, SvVersion *v, SvEvent *events, const int *idx, int n,
					  SvReason reason)
{
	Oid			argtypes[10] = {TEXTOID, TEXTOID, INT4OID, INT4ARRAYOID, INT8ARRAYOID,
	TEXTARRAYOID, BYTEAARRAYOID, BYTEAARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		args[10];
	char		argnulls[10];
	Datum	   *part = palloc(n * sizeof(Datum)),
			   *off = palloc(n * sizeof(Datum)),
			   *why = palloc(n * sizeof(Datum)),
			   *key = palloc(n * sizeof(Datum)),
			   *pay = palloc(n * sizeof(Datum)),
			   *msg = palloc(n * sizeof(Datum)),
			   *ets = palloc(n * sizeof(Datum));
	bool	   *keyn = palloc(n * sizeof(bool)),
			   *payn = palloc(n * sizeof(bool)),
			   *msgn = palloc(n * sizeof(bool)),
			   *etn = palloc(n * sizeof(bool));

	if (n == 0)
		return;
	for (int i = 0; i < n; i++)
	{
		SvEvent    *ev = &events[idx[i]];
		SvReason	r = reason != SV_REASON_NONE ? reason : ev->reason;

		part[i] = Int32GetDatum(ev->partition);
		off[i] = Int64GetDatum(ev->offset);
		why[i] = CStringGetTextDatum(streamview_reason_name(r));
		keyn[i] = ev->key == NULL;
		key[i] = keyn[i] ? (Datum) 0 : sv_bytea(ev->key, ev->keylen);
		payn[i] = ev->payload == NULL;
		pay[i] = payn[i] ? (Datum) 0 : sv_bytea(ev->payload, ev->paylen);
		if (r == SV_REASON_TOO_LATE)
			ev->error = psprintf("event time is before %s, the oldest time still applied in partition %d",
								 "watermark minus allowed lateness", ev->partition);
		msgn[i] = ev->error == NULL;
		msg[i] = msgn[i] ? (Datum) 0 : CStringGetTextDatum(ev->error);
		etn[i] = ev->reason != SV_REASON_NONE;
		ets[i] = etn[i] ? (Datum) 0 : TimestampTzGetDatum(ev->event_time);
	}
	memset(argnulls, ' ', sizeof(argnulls));
	args[0] = CStringGetTextDatum(src->name);
	args[1] = v ? CStringGetTextDatum(v->view_name) : (Datum) 0;
	args[2] = v ? Int32GetDatum(v->version) : (Datum) 0;
	argnulls[1] = argnulls[2] = v ? ' ' : 'n';
	args[3] = sv_array(part, NULL, n, INT4OID);
	args[4] = sv_array(off, NULL, n, INT8OID);
	args[5] = sv_array(why, NULL, n, TEXTOID);
	args[6] = sv_array(key, keyn, n, BYTEAOID);
	args[7] = sv_array(pay, payn, n, BYTEAOID);
	args[8] = sv_array(msg, msgn, n, TEXTOID);
	args[9] = sv_array(ets, etn, n, TIMESTAMPTZOID);
	SPI_execute_with_args("INSERT INTO streamview.dead_letters (source_name, view_name, version, "
						  "partition, \"offset\", reason, key, payload, error, event_time) "
						  "SELECT $1, $2, $3, u.* FROM unnest($4, $5, $6, $7, $8, $9, $10) AS u "
						  "ON CONFLICT DO NOTHING",
						  10, argtypes, args, argnulls, false, 0);
}

static void
sv_store_seen(const SvSource *src, SvVersion *v, HTAB *seen)
{
	HASH_SEQ_STATUS it;
	SvSeen	   *e;
	long		n = hash_get_num_entries(seen);
	Datum	   *ids = palloc(Max(n, 1) * sizeof(Datum)),
			   *parts = palloc(Max(n, 1) * sizeof(Datum)),
			   *times = palloc(Max(n, 1) * sizeof(Datum));
	int			k = 0;
	Oid			argtypes[4] = {INT4OID, BYTEAARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		args[4];

	hash_seq_init(&it, seen);
	while ((e = hash_seq_search(&it)) != NULL)
	{
		if (!e->is_new)
			continue;
		ids[k] = sv_bytea((const char *) e->id_hash, SV_ID_HASH_LEN);
		parts[k] = Int32GetDatum(e->partition);
		times[k] = TimestampTzGetDatum(e->event_time);
		k++;
	}
	if (k > 0)
	{
		args[0] = Int32GetDatum(v->version_id);
		args[1] = sv_array(ids, NULL, k, BYTEAOID);
		args[2] = sv_array(parts, NULL, k, INT4OID);
		args[3] = sv_array(times, NULL, k, TIMESTAMPTZOID);
		SPI_execute_with_args("INSERT INTO streamview.seen_ids (version_id, event_id_hash, partition, event_time) "
							  "SELECT $1, u.* FROM unnest($2, $3, $4) AS u "
							  "ON CONFLICT (version_id, event_id_hash) DO UPDATE "
							  "SET partition = excluded.partition, event_time = excluded.event_time",
							  4, argtypes, args, NULL, false, 0);
	}

	/* Forget ids that could no longer be applied again anyway. */
	k = 0;
	for (int p = 0; p < v->nparts; p++)
	{
		TimestampTz floor;

		if (v->parts[p].dirty && sv_apply_floor(src, v, p, &floor))
		{
			parts[k] = Int32GetDatum(p);
			times[k] = TimestampTzGetDatum(floor);
			k++;
		}
	}
	if (k > 0)
	{
		Oid			ptypes[3] = {INT4OID, INT4ARRAYOID, TIMESTAMPTZARRAYOID};

		args[0] = Int32GetDatum(v->version_id);
		args[1] = sv_array(parts, NULL, k, INT4OID);
		args[2] = sv_array(times, NULL, k, TIMESTAMPTZOID);
		SPI_execute_with_args("DELETE FROM streamview.seen_ids s USING unnest($2, $3) AS u(p, floor) "
							  "WHERE s.version_id = $1 AND s.partition = u.p AND s.event_time < u.floor",
							  3, ptypes, args, NULL, false, 0);
	}
}

static void
sv_store_offsets(SvVersion *v)
{
	int			n = 0;
	Datum	   *cols[10];
	bool	   *maxn = palloc(v->nparts * sizeof(bool)),
			   *endn = palloc(v->nparts * sizeof(bool)),
			   *lastn = palloc(v->nparts * sizeof(bool));
	Oid			argtypes[11] = {INT4OID, INT4ARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID,
		INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
	TIMESTAMPTZARRAYOID};
	Datum		args[11];

	for (int c = 0; c < 10; c++)
		cols[c] = palloc(v->nparts * sizeof(Datum));
	for (int p = 0; p < v->nparts; p++)
	{
		SvPartState *ps = &v->parts[p];

		if (!ps->dirty)
			continue;
		cols[0][n] = Int32GetDatum(p);
		cols[1][n] = Int64GetDatum(ps->next_offset);
		maxn[n] = !ps->has_max;
		cols[2][n] = TimestampTzGetDatum(ps->max_event_time);
		cols[3][n] = Int64GetDatum(ps->consumed);
		cols[4][n] = Int64GetDatum(ps->applied);
		cols[5][n] = Int64GetDatum(ps->duplicates);
		cols[6][n] = Int64GetDatum(ps->too_late);
		cols[7][n] = Int64GetDatum(ps->dead_lettered);
		endn[n] = ps->log_end < 0;
		cols[8][n] = Int64GetDatum(ps->log_end);
		lastn[n] = ps->last_message_at == 0;
		cols[9][n] = TimestampTzGetDatum(ps->last_message_at);
		n++;
	}
	if (n == 0)
		return;
	args[0] = Int32GetDatum(v->version_id);
	args[1] = sv_array(cols[0], NULL, n, INT4OID);
	args[2] = sv_array(cols[1], NULL, n, INT8OID);
	args[3] = sv_array(cols[2], maxn, n, TIMESTAMPTZOID);
	for (int c = 3; c <= 7; c++)
		args[c + 1] = sv_array(cols[c], NULL, n, INT8OID);
	args[9] = sv_array(cols[8], endn, n, INT8OID);
	args[10] = sv_array(cols[9], lastn, n, TIMESTAMPTZOID);
	SPI_execute_with_args("INSERT INTO streamview.offsets AS o (version_id, partition, next_offset, "
						  "max_event_time, consumed, applied, duplicates, too_late, dead_lettered, "
						  "log_end, last_message_at, updated_at) "
						  "SELECT $1, u.*, now() FROM unnest($2, $3, $4, $5, $6, $7, $8, $9, $10, $11) AS u "
						  "ON CONFLICT (version_id, partition) DO UPDATE SET "
						  "next_offset = excluded.next_offset, max_event_time = excluded.max_event_time, "
						  "consumed = excluded.consumed, applied = excluded.applied, "
						  "duplicates = excluded.duplicates, too_late = excluded.too_late, "
						  "dead_lettered = excluded.dead_lettered, log_end = excluded.log_end, "
						  "last_message_at = excluded.last_message_at, updated_at = excluded.updated_at",
						  11, argtypes, args, NULL, false, 0);
	for (int p = 0; p < v->nparts; p++)
		if (v->parts[p].dirty)
		{
			v->parts[p].known = true;
			v->parts[p].dirty = false;
		}
}

/*
 * The view's watermark: the minimum over the topic's partitions of
 * max event time − max_out_of_orderness.  Every partition counts, so a
 * window shown as final stays final: one that has delivered nothing yet
 * holds the watermark back, unless it is idle (nothing for the source's
 * idle_timeout), and idle partitions are left out.  It never goes back.
 */
static bool
sv_compute_watermark(const SvSource *src, SvVersion *v, TimestampTz *result)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		any = false;
	TimestampTz wm = 0;
	int			nparts = Max(v->nparts, src->topic_partitions);

	for (int p = 0; p < nparts; p++)
	{
		SvPartState *ps = p < v->nparts ? &v->parts[p] : NULL;
		TimestampTz last = (ps && ps->last_message_at != 0) ? ps->last_message_at : src->assigned_at;
		bool		idle = src->idle_timeout_us >= 0 && last != 0 &&
			last < now - src->idle_timeout_us;

		if (idle)
			continue;
		if (ps == NULL || !ps->has_max)
			return false;		/* an active partition without history yet */
		if (!any || ps->max_event_time - src->ooo_us < wm)
			wm = ps->max_event_time - src->ooo_us;
		any = true;
	}
	if (!any || (v->has_watermark && wm <= v->watermark))
		return false;
	*result = wm;
	return true;
}

/*
 * Store each version's watermark if it moved.  Inside a transaction, SPI
 * connected, as the extension owner.
 */
void
streamview_refresh_watermarks(const SvSource *src, List *versions)
{
	ListCell   *lc;

	foreach(lc, versions)
	{
		SvVersion  *v = lfirst(lc);
		TimestampTz wm;
		Oid			argtypes[2] = {INT4OID, TIMESTAMPTZOID};
		Datum		args[2];

		if (v->failed || !sv_compute_watermark(src, v, &wm))
			continue;
		args[0] = Int32GetDatum(v->version_id);
		args[1] = TimestampTzGetDatum(wm);
		SPI_execute_with_args("UPDATE streamview.versions SET watermark = greatest(watermark, $2) "
							  "WHERE version_id = $1", 2, argtypes, args, NULL, false, 0);
		v->has_watermark = true;
		v->watermark = wm;
	}
}

/*
 * Apply a batch of consumed messages to every version.  Inside the batch's
 * transaction, SPI connected, in a memory context reset after the batch.
 * record_unreadable: store the dead letters of unreadable messages.
 */
void
streamview_apply_batch(const SvSource *src, List *versions, SvEvent *events, int nevents,
					   bool record_unreadable)
{
	int		   *unreadable = palloc(nevents * sizeof(int));
	int			nunreadable = 0;
	SvVersionBatch *vbs = palloc0(list_length(versions) * sizeof(SvVersionBatch));
	ListCell   *lc;
	StringInfoData gaps;
	bool		first = true;

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
		sv_classify(src, v, events, nevents, vb, first && record_unreadable ? &gaps : NULL);
		first = false;
		sv_apply_version(src, v, events, vb);
	}

	/*
	 * Unreadable messages are the source's, recorded by its source worker
	 * only: a replay worker reading the same offsets would race it.
	 */
	if (record_unreadable)
		sv_store_dead_letters(src, NULL, events, unreadable, nunreadable, SV_REASON_NONE);
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
		sv_store_dead_letters(src, v, events, vb->too_late, vb->ntoo_late, SV_REASON_TOO_LATE);
		sv_store_dead_letters(src, v, events, vb->failed, vb->nfailed, SV_REASON_QUERY_ERROR);
		if (vb->seen)
			sv_store_seen(src, v, vb->seen);
		sv_store_offsets(v);
	}
	streamview_refresh_watermarks(src, versions);
}
