/*-------------------------------------------------------------------------
 *
 * ledger.c
 *	  The one owner of the ledger rows: every read and write of
 *	  streamview.offsets, seen_ids, dead_letters and offset_marks, and of a
 *	  version's stored watermark.  (The ids a version remembers are kept in
 *	  memory by seen.c; this file loads and stores them.)
 *
 * Per version and partition, streamview.offsets holds where the version is
 * in the log, its event-time high mark and the ledger
 *	 consumed = applied + duplicates + too_late + dead_lettered,
 * written in the same transaction as the upserts it accounts for.  Its
 * columns are listed once, in sv_ledger_columns, which drives both the load
 * and the store.  Everything is written in bulk, one statement per table
 * per batch, from arrays (unnest).
 *
 * Callers are inside a transaction with SPI connected, as the extension
 * owner (the worker's user).
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

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

static int64
sv_int8(HeapTuple tup, TupleDesc desc, int col, int64 if_null)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? if_null : DatumGetInt64(d);
}

/* ---------- streamview.offsets: one column list ---------- */

/* When a column of the ledger row is NULL, and what NULL reads back as. */
typedef enum SvNullRule
{
	SV_NEVER_NULL,
	SV_NULL_IF_NO_MAX,			/* max_event_time: NULL until an event was read */
	SV_NULL_IF_NO_BROKER_TIME,	/* max_broker_time: NULL until a message had one */
	SV_NULL_IF_NEGATIVE,		/* next_offset: -1, nothing read; log_end: -1, not known */
	SV_NULL_IF_ZERO				/* last_message_at: 0, never */
} SvNullRule;

typedef struct SvLedgerColumn
{
	const char *name;
	Oid			type;			/* INT8OID or TIMESTAMPTZOID: both int64 in memory */
	size_t		field;			/* offsetof(SvPartState, ...) */
	SvNullRule	null_rule;
} SvLedgerColumn;

static const SvLedgerColumn sv_ledger_columns[] = {
	{"next_offset", INT8OID, offsetof(SvPartState, next_offset), SV_NULL_IF_NEGATIVE},
	{"max_event_time", TIMESTAMPTZOID, offsetof(SvPartState, max_event_time), SV_NULL_IF_NO_MAX},
	{"consumed", INT8OID, offsetof(SvPartState, consumed), SV_NEVER_NULL},
	{"applied", INT8OID, offsetof(SvPartState, applied), SV_NEVER_NULL},
	{"duplicates", INT8OID, offsetof(SvPartState, duplicates), SV_NEVER_NULL},
	{"too_late", INT8OID, offsetof(SvPartState, too_late), SV_NEVER_NULL},
	{"dead_lettered", INT8OID, offsetof(SvPartState, dead_lettered), SV_NEVER_NULL},
	{"log_end", INT8OID, offsetof(SvPartState, log_end), SV_NULL_IF_NEGATIVE},
	{"last_message_at", TIMESTAMPTZOID, offsetof(SvPartState, last_message_at), SV_NULL_IF_ZERO},
	{"max_broker_time", TIMESTAMPTZOID, offsetof(SvPartState, max_broker_time), SV_NULL_IF_NO_BROKER_TIME},
};

#define SV_NLEDGER lengthof(sv_ledger_columns)

static int64 *
sv_ledger_field(SvPartState *ps, const SvLedgerColumn *col)
{
	return (int64 *) ((char *) ps + col->field);
}

static bool
sv_ledger_isnull(const SvPartState *ps, const SvLedgerColumn *col)
{
	int64		value = *sv_ledger_field((SvPartState *) ps, col);

	switch (col->null_rule)
	{
		case SV_NULL_IF_NO_MAX:
			return !ps->has_max;
		case SV_NULL_IF_NO_BROKER_TIME:
			return !ps->has_broker_time;
		case SV_NULL_IF_NEGATIVE:
			return value < 0;
		case SV_NULL_IF_ZERO:
			return value == 0;
		default:
			return false;
	}
}

static void
sv_ledger_read(SvPartState *ps, const SvLedgerColumn *col, Datum d, bool isnull)
{
	int64	   *field = sv_ledger_field(ps, col);

	if (col->null_rule == SV_NULL_IF_NO_MAX)
		ps->has_max = !isnull;
	if (col->null_rule == SV_NULL_IF_NO_BROKER_TIME)
		ps->has_broker_time = !isnull;
	if (!isnull)
		*field = DatumGetInt64(d);	/* timestamptz is an int64 too */
	else
		*field = col->null_rule == SV_NULL_IF_NEGATIVE ? -1 : 0;
}

/* "a, b, c" of the ledger's columns, with a prefix before each. */
static char *
sv_ledger_list(const char *prefix)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int c = 0; c < SV_NLEDGER; c++)
		appendStringInfo(&buf, "%s%s%s", c ? ", " : "", prefix, sv_ledger_columns[c].name);
	return buf.data;
}

/* One row of the query below into its partition's state. */
static void
sv_ledger_read_row(SvVersion *v, HeapTuple tup, TupleDesc desc)
{
	SvPartState *ps = streamview_part(v, (int32) sv_int8(tup, desc, 1, 0));

	ps->known = true;
	for (int c = 0; c < SV_NLEDGER; c++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(tup, desc, c + 2, &isnull);

		sv_ledger_read(ps, &sv_ledger_columns[c], d, isnull);
	}
}

/*
 * Load a version's ledger rows into v->parts (in v's own memory context).
 * Partitions without a row start at no offset (-1: the start of the log).
 */
void
streamview_load_offsets(SvVersion *v)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(v->version_id)};
	MemoryContext cxt = GetMemoryChunkContext(v);
	int			maxp = -1;

	SPI_execute_with_args(psprintf("SELECT partition, %s FROM streamview.offsets "
								   "WHERE version_id = $1 ORDER BY partition", sv_ledger_list("")),
						  1, argtypes, args, NULL, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
		maxp = Max(maxp, (int) sv_int8(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, 0));
	v->nparts = Max(maxp + 1, 1);
	v->parts = MemoryContextAllocZero(cxt, v->nparts * sizeof(SvPartState));
	for (int p = 0; p < v->nparts; p++)
	{
		v->parts[p].next_offset = -1;
		v->parts[p].log_end = -1;
	}
	for (uint64 i = 0; i < SPI_processed; i++)
		sv_ledger_read_row(v, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
}

/*
 * Store the ledger rows of the partitions the batch changed (dirty), in one
 * upsert.  A partition the version has not read from yet (assigned, and
 * marked dirty by the worker so that streamview.partitions lists it) gets
 * its row with next_offset NULL and no updated_at: no batch went through it.
 */
void
streamview_store_offsets(SvVersion *v)
{
	int			n = 0;
	Datum	   *parts = palloc(v->nparts * sizeof(Datum));
	Datum	   *cols[SV_NLEDGER];
	bool	   *nulls[SV_NLEDGER];
	Oid			argtypes[SV_NLEDGER + 2];
	Datum		args[SV_NLEDGER + 2];
	StringInfoData params,
				sets;

	for (int c = 0; c < SV_NLEDGER; c++)
	{
		cols[c] = palloc(v->nparts * sizeof(Datum));
		nulls[c] = palloc(v->nparts * sizeof(bool));
	}
	for (int p = 0; p < v->nparts; p++)
	{
		SvPartState *ps = &v->parts[p];

		if (!ps->dirty)
			continue;
		parts[n] = Int32GetDatum(p);
		for (int c = 0; c < SV_NLEDGER; c++)
		{
			nulls[c][n] = sv_ledger_isnull(ps, &sv_ledger_columns[c]);
			cols[c][n] = Int64GetDatum(*sv_ledger_field(ps, &sv_ledger_columns[c]));
		}
		n++;
	}
	if (n == 0)
		return;

	argtypes[0] = INT4OID;
	args[0] = Int32GetDatum(v->version_id);
	argtypes[1] = INT4ARRAYOID;
	args[1] = sv_array(parts, NULL, n, INT4OID);
	initStringInfo(&params);
	initStringInfo(&sets);
	appendStringInfoString(&params, "$2");
	for (int c = 0; c < SV_NLEDGER; c++)
	{
		const SvLedgerColumn *col = &sv_ledger_columns[c];

		argtypes[c + 2] = col->type == INT8OID ? INT8ARRAYOID : TIMESTAMPTZARRAYOID;
		args[c + 2] = sv_array(cols[c], nulls[c], n, col->type);
		appendStringInfo(&params, ", $%d", c + 3);
		appendStringInfo(&sets, "%s = excluded.%s, ", col->name, col->name);
	}
	/*
	 * visible_delay, freshness: from the newest broker timestamp read to now,
	 * the end of the batch, for a partition the batch read from (its offset
	 * moved); kept as it was for one only its log end changed.
	 */
	SPI_execute_with_args(psprintf("INSERT INTO streamview.offsets AS o "
								   "(version_id, partition, %s, updated_at, visible_delay) "
								   "SELECT $1, u.*, CASE WHEN u.next_offset IS NOT NULL THEN now() END, "
								   "CASE WHEN u.next_offset IS NOT NULL "
								   "THEN greatest(clock_timestamp() - u.max_broker_time, interval '0') END "
								   "FROM unnest(%s) AS u (partition, %s) "
								   "ON CONFLICT (version_id, partition) DO UPDATE SET %s"
								   "updated_at = excluded.updated_at, "
								   "visible_delay = CASE WHEN excluded.next_offset IS DISTINCT FROM o.next_offset "
								   "THEN excluded.visible_delay ELSE o.visible_delay END",
								   sv_ledger_list(""), params.data, sv_ledger_list(""), sets.data),
						  SV_NLEDGER + 2, argtypes, args, NULL, false, 0);
	for (int p = 0; p < v->nparts; p++)
		if (v->parts[p].dirty)
		{
			v->parts[p].known = true;
			v->parts[p].dirty = false;
		}
}

/*
 * The broker's log end of partition p, as last seen: stored with the next
 * ledger row of the partition (and only then, for a partition that has one).
 */
void
streamview_note_log_end(SvVersion *v, int32 p, int64 end)
{
	if (p < v->nparts && end >= 0 && v->parts[p].log_end != end)
	{
		v->parts[p].log_end = end;
		v->parts[p].dirty = v->parts[p].dirty || v->parts[p].known;
	}
}

/*
 * Idle, the log end the fetcher last saw, stored at once for a partition
 * that has a ledger row: the last batch may have come before the fetcher
 * knew it, and with no batch after it, lag would stay unknown (or stale).
 * Only log_end changes: updated_at tells when a batch last went through.
 */
void
streamview_store_log_end(SvVersion *v, int32 p, int64 end)
{
	Oid			argtypes[3] = {INT4OID, INT4OID, INT8OID};
	Datum		args[3];

	if (p >= v->nparts || end < 0 || !v->parts[p].known || v->parts[p].log_end == end)
		return;
	v->parts[p].log_end = end;
	args[0] = Int32GetDatum(v->version_id);
	args[1] = Int32GetDatum(p);
	args[2] = Int64GetDatum(end);
	SPI_execute_with_args("UPDATE streamview.offsets SET log_end = $3 "
						  "WHERE version_id = $1 AND partition = $2", 3, argtypes, args, NULL, false, 0);
}

/* ---------- streamview.seen_ids ---------- */

/*
 * The ids a version remembers live in the worker's memory (seen.c), loaded
 * once with the version; each batch stores the ids it applied in bulk, one
 * row per partition (the hashes and event times as two arrays), in the
 * batch's own transaction: a crash loses none and a restart loads them all
 * again.  A row goes once all its ids are forgotten (its max_event_time is
 * below its partition's lateness floor), in the worker's housekeeping.
 */

/* The lateness floor of each of the version's partitions (has_floor false: none yet). */
static void
sv_floors(const SvSource *src, SvVersion *v, TimestampTz **floors, bool **has_floor)
{
	*floors = palloc(Max(v->nparts, 1) * sizeof(TimestampTz));
	*has_floor = palloc(Max(v->nparts, 1) * sizeof(bool));
	for (int p = 0; p < v->nparts; p++)
		(*has_floor)[p] = streamview_lateness_floor(src, v, p, &(*floors)[p]);
}

/*
 * Load the ids version v remembers into a new set, v->seen; after its
 * offsets (streamview_load_offsets), whose event-time high marks tell
 * which stored ids are forgotten already.  An id stored twice (applied
 * again after it was forgotten) is remembered at most once: its earlier
 * row is past the floor, which never moves back.
 */
void
streamview_load_seen(const SvSource *src, SvVersion *v)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(v->version_id)};
	TimestampTz *floors;
	bool	   *has_floor;
	uint64		nrows;
	SPITupleTable *tt;
	MemoryContext rowcxt = AllocSetContextCreate(CurrentMemoryContext, "pg_streamview seen row",
												 ALLOCSET_DEFAULT_SIZES);
	MemoryContext old;

	v->seen = streamview_seen_create(GetMemoryChunkContext(v), 0);
	sv_floors(src, v, &floors, &has_floor);
	SPI_execute_with_args("SELECT partition, max_event_time, event_id_hashes, event_times "
						  "FROM streamview.seen_ids WHERE version_id = $1",
						  1, argtypes, args, NULL, true, 0);
	nrows = SPI_processed;
	tt = SPI_tuptable;
	for (uint64 i = 0; i < nrows; i++)
	{
		HeapTuple	tup = tt->vals[i];
		int32		p = (int32) sv_int8(tup, tt->tupdesc, 1, 0);
		bool		floored = p < v->nparts && has_floor[p];
		bool		isnull;
		Datum	   *h,
				   *t;
		int			nh,
					nt;

		if (floored && DatumGetTimestampTz(SPI_getbinval(tup, tt->tupdesc, 2, &isnull)) < floors[p])
			continue;			/* every id in it is forgotten */
		/* detoasted in a context reset per row: one row's arrays at a time */
		MemoryContextReset(rowcxt);
		old = MemoryContextSwitchTo(rowcxt);
		deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, tt->tupdesc, 3, &isnull)),
						  BYTEAOID, -1, false, TYPALIGN_INT, &h, NULL, &nh);
		deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, tt->tupdesc, 4, &isnull)),
						  TIMESTAMPTZOID, sizeof(TimestampTz), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
						  &t, NULL, &nt);
		MemoryContextSwitchTo(old);
		for (int k = 0; k < nh && k < nt; k++)
		{
			bytea	   *id = DatumGetByteaPP(h[k]);
			TimestampTz et = DatumGetTimestampTz(t[k]);

			if (VARSIZE_ANY_EXHDR(id) != SV_ID_HASH_LEN || (floored && et < floors[p]))
				continue;
			streamview_seen_add(v->seen, (const uint8 *) VARDATA_ANY(id), p, et);
		}
	}
	MemoryContextDelete(rowcxt);
	pfree(floors);
	pfree(has_floor);
}

/*
 * Store the ids of the events idx[0..n) that the batch applied (they are in
 * v->seen already): one row per partition.  An id whose event time is
 * below its partition's lateness floor at the end of the batch is
 * forgotten already and not stored (a batch spanning more event time than
 * the horizon stores only its tail).
 */
void
streamview_store_seen(const SvSource *src, SvVersion *v, const SvEvent *events, const int *idx, int n)
{
	static SPIPlanPtr plan = NULL;
	int			nparts = Max(v->nparts, 1);
	int		   *count = palloc0(nparts * sizeof(int));
	int		   *next = palloc(nparts * sizeof(int));	/* where its next id goes */
	int64	   *last = palloc(nparts * sizeof(int64));
	TimestampTz *max = palloc(nparts * sizeof(TimestampTz));
	Datum	   *ids = palloc(Max(n, 1) * sizeof(Datum));
	Datum	   *times = palloc(Max(n, 1) * sizeof(Datum));
	TimestampTz *floors;
	bool	   *has_floor;
	int			total = 0;

	sv_floors(src, v, &floors, &has_floor);
#define SV_STORED(ev) ((ev)->event_id != NULL && \
					   !(has_floor[(ev)->partition] && (ev)->event_time < floors[(ev)->partition]))
	for (int i = 0; i < n; i++)
	{
		const SvEvent *ev = &events[idx[i]];
		int32		p = ev->partition;

		if (!SV_STORED(ev))
			continue;
		if (count[p]++ == 0 || ev->offset > last[p])
			last[p] = ev->offset;
		if (count[p] == 1 || ev->event_time > max[p])
			max[p] = ev->event_time;
		total++;
	}
	if (total == 0)
		return;
	/* the ids grouped by partition, in the batch's order within each */
	for (int p = 0, at = 0; p < nparts; p++)
	{
		next[p] = at;
		at += count[p];
	}
	for (int i = 0; i < n; i++)
	{
		const SvEvent *ev = &events[idx[i]];
		int			slot;

		if (!SV_STORED(ev))
			continue;
		slot = next[ev->partition]++;
		ids[slot] = sv_bytea((const char *) ev->event_id_hash, SV_ID_HASH_LEN);
		times[slot] = TimestampTzGetDatum(ev->event_time);
	}
#undef SV_STORED

	if (plan == NULL)
	{
		Oid			argtypes[6] = {INT4OID, INT4OID, INT8OID, TIMESTAMPTZOID,
		BYTEAARRAYOID, TIMESTAMPTZARRAYOID};

		plan = SPI_prepare("INSERT INTO streamview.seen_ids (version_id, partition, last_offset, "
						   "max_event_time, event_id_hashes, event_times) "
						   "VALUES ($1, $2, $3, $4, $5, $6)", 6, argtypes);
		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare the statement that stores seen ids: %s",
				 SPI_result_code_string(SPI_result));
	}
	for (int p = 0; p < nparts; p++)
	{
		Datum		args[6];
		int			at = next[p] - count[p];

		if (count[p] == 0)
			continue;
		args[0] = Int32GetDatum(v->version_id);
		args[1] = Int32GetDatum(p);
		args[2] = Int64GetDatum(last[p]);
		args[3] = TimestampTzGetDatum(max[p]);
		args[4] = sv_array(ids + at, NULL, count[p], BYTEAOID);
		args[5] = sv_array(times + at, NULL, count[p], TIMESTAMPTZOID);
		if (SPI_execute_plan(plan, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not store the seen ids of partition %d", p);
	}
}

/*
 * Housekeeping: delete the rows whose ids are all forgotten, and evict the
 * forgotten ids from memory (seen.c decides whether a sweep is due).
 */
void
streamview_expire_seen(const SvSource *src, SvVersion *v)
{
	Datum	   *parts = palloc(Max(v->nparts, 1) * sizeof(Datum));
	Datum	   *floors = palloc(Max(v->nparts, 1) * sizeof(Datum));
	int			k = 0;
	Oid			argtypes[3] = {INT4OID, INT4ARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		args[3];

	if (v->seen == NULL)
		return;
	for (int p = 0; p < v->nparts; p++)
	{
		TimestampTz floor;

		if (streamview_lateness_floor(src, v, p, &floor))
		{
			parts[k] = Int32GetDatum(p);
			floors[k] = TimestampTzGetDatum(floor);
			k++;
		}
	}
	if (k > 0)
	{
		args[0] = Int32GetDatum(v->version_id);
		args[1] = sv_array(parts, NULL, k, INT4OID);
		args[2] = sv_array(floors, NULL, k, TIMESTAMPTZOID);
		SPI_execute_with_args("DELETE FROM streamview.seen_ids s USING unnest($2, $3) AS u(p, floor) "
							  "WHERE s.version_id = $1 AND s.partition = u.p AND s.max_event_time < u.floor",
							  3, argtypes, args, NULL, false, 0);
	}
	streamview_seen_evict(src, v);
}

/* ---------- streamview.dead_letters ---------- */

/*
 * Record events idx[0..n) as dead letters of version v (NULL: of the
 * source, for unreadable messages), with reason (SV_REASON_NONE: each
 * event's own), raw key and payload, and the error that explains it.
 */
void
streamview_store_dead_letters(const SvSource *src, SvVersion *v, SvEvent *events, const int *idx,
							  int n, SvReason reason)
{
	Oid			argtypes[10] = {TEXTOID, TEXTOID, INT4OID, INT4ARRAYOID, INT8ARRAYOID,
	TEXTARRAYOID, BYTEAARRAYOID, BYTEAARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		args[10];
	char		argnulls[10];
	Datum	   *part,
			   *off,
			   *why,
			   *key,
			   *pay,
			   *msg,
			   *ets;
	bool	   *keyn,
			   *payn,
			   *msgn,
			   *etn;

	if (n == 0)
		return;
	part = palloc(n * sizeof(Datum));
	off = palloc(n * sizeof(Datum));
	why = palloc(n * sizeof(Datum));
	key = palloc(n * sizeof(Datum));
	pay = palloc(n * sizeof(Datum));
	msg = palloc(n * sizeof(Datum));
	ets = palloc(n * sizeof(Datum));
	keyn = palloc(n * sizeof(bool));
	payn = palloc(n * sizeof(bool));
	msgn = palloc(n * sizeof(bool));
	etn = palloc(n * sizeof(bool));
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

/* ---------- the stored watermark ---------- */

/*
 * A worker that reads some of the source's partitions (a source with
 * several workers, streamview_owns_partition) knows the others' state only
 * as their workers committed it.  Before computing the version's watermark
 * over every partition the source reads, it locks the version's row, and then reads the
 * other partitions' ledger rows and the stored watermark with a snapshot
 * taken after the lock: a worker that held the lock before has committed,
 * so the last of them to commit computes the watermark from every
 * partition's latest state, and none lowers what another stored.  Workers
 * lock the rows of their versions in one order (by version_id, as the
 * versions are loaded), after the upserts of the batch, so they cannot
 * deadlock on them.
 */
static void
sv_refresh_others(const SvSource *src, SvVersion *v)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(v->version_id)};
	bool		isnull;
	Datum		wm;

	SPI_execute_with_args("SELECT watermark FROM streamview.versions WHERE version_id = $1 "
						  "FOR NO KEY UPDATE", 1, argtypes, args, NULL, false, 1);
	if (SPI_processed == 0)
		return;					/* dropped meanwhile: the signature will say so */
	wm = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull && (!v->has_watermark || DatumGetTimestampTz(wm) > v->watermark))
	{
		v->has_watermark = true;
		v->watermark = DatumGetTimestampTz(wm);
	}
	/* not read-only: a new snapshot, which sees what committed before the lock */
	SPI_execute_with_args(psprintf("SELECT partition, %s FROM streamview.offsets "
								   "WHERE version_id = $1 ORDER BY partition", sv_ledger_list("")),
						  1, argtypes, args, NULL, false, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		int32		p = (int32) sv_int8(tup, SPI_tuptable->tupdesc, 1, 0);

		/*
		 * the other workers' partitions of the source: this worker's own are
		 * newer in its memory, and the rows of partitions the source no
		 * longer reads (partitions =>) count for nothing
		 */
		if (streamview_source_reads_partition(src, p) && !streamview_owns_partition(src, p))
			sv_ledger_read_row(v, tup, SPI_tuptable->tupdesc);
	}
}

/*
 * Store each version's watermark if it moved (see streamview_compute_watermark),
 * computed over every partition (sv_refresh_others).
 */
void
streamview_refresh_watermarks(const SvSource *src, List *versions)
{
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();

	foreach(lc, versions)
	{
		SvVersion  *v = lfirst(lc);
		TimestampTz wm;
		Oid			argtypes[2] = {INT4OID, TIMESTAMPTZOID};
		Datum		args[2];

		if (v->failed)
			continue;
		if (src->worker_count > 1)
			sv_refresh_others(src, v);
		if (!streamview_compute_watermark(src, v, now, &wm))
			continue;
		args[0] = Int32GetDatum(v->version_id);
		args[1] = TimestampTzGetDatum(wm);
		SPI_execute_with_args("UPDATE streamview.versions SET watermark = greatest(watermark, $2) "
							  "WHERE version_id = $1", 2, argtypes, args, NULL, false, 0);
		v->has_watermark = true;
		v->watermark = wm;
	}
}

/* ---------- streamview.offset_marks and start offsets ---------- */

/* Where a replay began in each partition (for progress), once. */
void
streamview_record_start_offsets(SvVersion *v, int nparts, const int64 *low)
{
	StringInfoData buf;
	Oid			argtypes[2] = {INT4OID, TEXTOID};
	Datum		args[2];

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int p = 0; p < nparts; p++)
	{
		int64		start = (p < v->nparts && v->parts[p].next_offset >= 0)
			? v->parts[p].next_offset : low[p];

		appendStringInfo(&buf, "%s\"%d\": " INT64_FORMAT, p ? ", " : "", p, Max(start, 0));
	}
	appendStringInfoChar(&buf, '}');
	args[0] = Int32GetDatum(v->version_id);
	args[1] = CStringGetTextDatum(buf.data);
	SPI_execute_with_args("UPDATE streamview.versions SET start_offsets = $2::jsonb, "
						  "replay_started_at = coalesce(replay_started_at, now()) "
						  "WHERE version_id = $1 AND start_offsets IS NULL",
						  2, argtypes, args, NULL, false, 0);
}

/*
 * Offset marks (see streamview.offset_marks): after a batch, for each
 * partition whose highest event time entered a new minute since its last
 * mark, record (next offset, highest event time).  last[p] holds the minute
 * of partition p's last mark (-1: none yet), loaded when it is first needed.
 */
#define SV_MARK_STEP_US USECS_PER_MINUTE

/* Record the offset marks of this batch (see above); loads last[] first. */
void
streamview_record_marks(const SvSource *src, SvVersion *v, int64 **last, int *nlast)
{
	Datum	   *parts = palloc(v->nparts * sizeof(Datum)),
			   *offs = palloc(v->nparts * sizeof(Datum)),
			   *times = palloc(v->nparts * sizeof(Datum));
	int			n = 0;
	Oid			argtypes[4] = {INT4OID, INT4ARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		args[4];

	if (*last == NULL || *nlast < v->nparts)
	{
		Oid			t[1] = {INT4OID};
		Datum		a[1] = {Int32GetDatum(src->source_id)};
		int64	   *grown = MemoryContextAlloc(TopMemoryContext, v->nparts * sizeof(int64));

		for (int p = 0; p < v->nparts; p++)
			grown[p] = -1;
		SPI_execute_with_args("SELECT partition, (extract(epoch FROM max(max_event_time)) * 1000000)::int8 "
							  "FROM streamview.offset_marks WHERE source_id = $1 GROUP BY 1",
							  1, t, a, NULL, true, 0);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			int			p = (int) sv_int8(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, 0);

			if (p < v->nparts)
				grown[p] = sv_int8(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, 0) / SV_MARK_STEP_US;
		}
		if (*last)
			pfree(*last);
		*last = grown;
		*nlast = v->nparts;
	}
	for (int p = 0; p < v->nparts; p++)
	{
		SvPartState *ps = &v->parts[p];
		/* minutes since the Unix epoch, like the loaded values */
		int64		minute = ps->has_max
			? (ps->max_event_time + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY) / SV_MARK_STEP_US
			: -1;

		/* another worker's partition: its state here is as last read */
		if (!streamview_owns_partition(src, p) ||
			!ps->has_max || ps->next_offset < 0 || minute <= (*last)[p])
			continue;
		parts[n] = Int32GetDatum(p);
		offs[n] = Int64GetDatum(ps->next_offset);
		times[n] = TimestampTzGetDatum(ps->max_event_time);
		(*last)[p] = minute;
		n++;
	}
	if (n == 0)
		return;
	args[0] = Int32GetDatum(src->source_id);
	args[1] = PointerGetDatum(construct_array(parts, n, INT4OID, 4, true, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_array(offs, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = PointerGetDatum(construct_array(times, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	SPI_execute_with_args("INSERT INTO streamview.offset_marks (source_id, partition, next_offset, max_event_time) "
						  "SELECT $1, u.* FROM unnest($2, $3, $4) AS u ON CONFLICT DO NOTHING",
						  4, argtypes, args, NULL, false, 0);
}
