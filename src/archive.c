/*-------------------------------------------------------------------------
 *
 * archive.c
 *	  The archive (two-tier log, docs/archive.md): every message a source
 *	  worker consumes, kept in streamview.archive in the transaction of the
 *	  batch that consumed it; read back by a replay for the offsets Kafka no
 *	  longer keeps (replay.c).
 *
 * Writing: straight from the worker's memory into the table that covers
 * now, in groups (heap_multi_insert, as COPY does), with their index
 * entries: no statement, no executor, per message or per batch.  Each
 * message is archived once:
 * a worker that re-reads a partition from a lower offset (a new view
 * starts from the log's beginning) skips the offsets already archived,
 * which it knows per partition (the archive's highest offset, looked up
 * once, then followed in memory).  The INSERT commits or aborts with the
 * batch, and a batch that aborts ends the worker, so what it knows in
 * memory never runs ahead of what was committed.
 *
 * Reading: streamview_archive_read() returns the archived messages of a
 * partition in offset order from an offset, as SvEvents, ready to be
 * applied like messages from Kafka.  It is the one entry point for reading
 * the archive from C; SQL reads streamview.archive (source_id, partition,
 * "offset") directly.
 *
 * Housekeeping: the source's first worker creates the archive's tables
 * for the time ahead and drops those past the source's archive interval
 * (streamview_internal._archive_housekeeping, whole tables, never row by
 * row), and every worker records the first offset each of its partitions'
 * logs still has (streamview.log_starts), which rebuild() checks.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/rel.h"

/* The least time between two runs of the archive's housekeeping. */
#define SV_ARCHIVE_MIN_PERIOD_US USECS_PER_SEC
#define SV_ARCHIVE_MAX_PERIOD_US (60 * USECS_PER_SEC)
/* Columns of streamview.archive, and rows inserted at once. */
#define SV_ARCHIVE_NATTS 8
#define SV_ARCHIVE_GROUP 1000
/* How often the log starts are looked at. */
#define SV_LOG_START_PERIOD_US (5 * USECS_PER_SEC)

/* Per partition: the next offset not archived yet; -2: not looked up yet. */
static int64 *sv_archived_next = NULL;
static int	sv_narchived = 0;
static int32 sv_archived_source = 0;

/* What housekeeping last stored, and when it ran. */
static int64 *sv_log_starts = NULL;
static int	sv_nlog_starts = 0;
static TimestampTz sv_last_retention = 0;
static TimestampTz sv_last_log_starts = 0;

/*
 * The highest archived offset of partition p, plus one (-1: nothing
 * archived), from the index; later followed in memory.
 */
static int64
sv_archived_next_of(const SvSource *src, int32 p)
{
	if (sv_archived_source != src->source_id)
	{
		sv_narchived = 0;
		sv_archived_source = src->source_id;
	}
	if (p >= sv_narchived)
	{
		int			n = Max(p + 1, 2 * sv_narchived);

		sv_archived_next = sv_archived_next == NULL ?
			MemoryContextAlloc(TopMemoryContext, n * sizeof(int64)) :
			repalloc(sv_archived_next, n * sizeof(int64));
		for (int i = sv_narchived; i < n; i++)
			sv_archived_next[i] = -2;
		sv_narchived = n;
	}
	if (sv_archived_next[p] == -2)
	{
		Oid			argtypes[2] = {INT4OID, INT4OID};
		Datum		args[2] = {Int32GetDatum(src->source_id), Int32GetDatum(p)};
		bool		isnull;
		Datum		d;

		SPI_execute_with_args("SELECT max(\"offset\") + 1 FROM streamview.archive "
							  "WHERE source_id = $1 AND partition = $2",
							  2, argtypes, args, NULL, true, 1);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		sv_archived_next[p] = isnull ? -1 : DatumGetInt64(d);
	}
	return sv_archived_next[p];
}

/*
 * The table of the source's archive that takes the rows archived now
 * (archived_at = the transaction's start): the range table that covers it,
 * or the source's default partition while none does (until housekeeping
 * makes one: then looked up again within a second).  Kept from batch to
 * batch while now stays in its range; forgotten by housekeeping, which
 * makes and drops tables.
 */
static Oid	sv_leaf = InvalidOid;
static int64 sv_leaf_lo;		/* Unix seconds, [lo, hi) */
static int64 sv_leaf_hi;

static Oid
sv_archive_leaf(const SvSource *src, int64 now_s)
{
	Oid			argtypes[2] = {TEXTOID, INT8OID};
	Datum		args[2];
	char	   *parent = psprintf("streamview_internal.archive_%d", src->source_id);
	bool		isnull;

	if (OidIsValid(sv_leaf) && now_s >= sv_leaf_lo && now_s < sv_leaf_hi)
		return sv_leaf;
	args[0] = CStringGetTextDatum(parent);
	args[1] = Int64GetDatum(now_s);
	SPI_execute_with_args("(SELECT c.oid, split_part(c.relname, '_', 3)::int8, split_part(c.relname, '_', 4)::int8 "
						  "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
						  "WHERE i.inhparent = to_regclass($1) AND c.relname ~ '^archive_[0-9]+_[0-9]+_[0-9]+$' "
						  "AND split_part(c.relname, '_', 3)::int8 <= $2 AND split_part(c.relname, '_', 4)::int8 > $2) "
						  "UNION ALL SELECT to_regclass($1 || '_default')::oid, $2, $2 + 1 LIMIT 1",
						  2, argtypes, args, NULL, true, 1);
	sv_leaf = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull || !OidIsValid(sv_leaf))
	{
		sv_leaf = InvalidOid;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the archive of source \"%s\" is missing", src->name),
				 errdetail("Table %s or its default partition does not exist.", parent),
				 errhint("Turn the archive off and on again with streamview.alter_source(archive => ...).")));
	}
	sv_leaf_lo = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	sv_leaf_hi = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	return sv_leaf;
}

static Datum
sv_bytea(const char *data, int len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), data, len);
	return PointerGetDatum(b);
}

/* Fill a slot of the archive's table with a message (source_id ... archived_at). */
static void
sv_fill_slot(TupleTableSlot *slot, int32 source_id, const SvEvent *ev, TimestampTz now)
{
	Datum	   *values = slot->tts_values;
	bool	   *nulls = slot->tts_isnull;

	ExecClearTuple(slot);
	memset(nulls, 0, SV_ARCHIVE_NATTS * sizeof(bool));
	values[0] = Int32GetDatum(source_id);
	values[1] = Int32GetDatum(ev->partition);
	values[2] = Int64GetDatum(ev->offset);
	values[3] = TimestampTzGetDatum(ev->broker_time);
	nulls[3] = !ev->has_broker_time;
	nulls[4] = ev->key == NULL;
	if (ev->key)
		values[4] = sv_bytea(ev->key, ev->keylen);
	nulls[5] = ev->payload == NULL;
	if (ev->payload)
		values[5] = sv_bytea(ev->payload, ev->paylen);
	nulls[6] = ev->headers == NULL;
	if (ev->headers)
		values[6] = DirectFunctionCall1(jsonb_in, CStringGetDatum(ev->headers));
	values[7] = TimestampTzGetDatum(now);
	ExecStoreVirtualTuple(slot);
}

/*
 * Archive the messages of a batch the source worker consumed, in the
 * batch's transaction (SPI connected): every message, whatever became of
 * it (applied, duplicate, too late, dead letter), but those already
 * archived.  As COPY does: straight into the table that covers now, in
 * groups of SV_ARCHIVE_GROUP rows (heap_multi_insert: one WAL record per
 * page, not per row), then their index entries; no statement, no executor.
 * The rows go where partition routing would put them (the range table
 * that covers archived_at, else the default partition), so the partition
 * constraint holds without a check.
 */
/*
 * Forget what this process knows of the archive's ends: after a batch's
 * transaction was rolled back, the rows it archived are gone, and the next
 * store must look at the table again rather than skip their offsets.
 */
void
streamview_archive_forget(void)
{
	sv_narchived = 0;
}

void
streamview_archive_store(const SvSource *src, const SvEvent *events, int n)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	int64		now_s;
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	BulkInsertState bistate;
	CommandId	cid;
	TupleTableSlot *slots[SV_ARCHIVE_GROUP];
	int			nslots = 0;
	int			nmade = 0;

	if (src->archive_us < 0 || n == 0)
		return;
	/* Unix seconds, rounded down */
	now_s = (now - (now < 0 && now % USECS_PER_SEC != 0 ? USECS_PER_SEC : 0)) / USECS_PER_SEC +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
	rel = table_open(sv_archive_leaf(src, now_s), RowExclusiveLock);
	if (RelationGetDescr(rel)->natts != SV_ARCHIVE_NATTS)
		elog(ERROR, "archive table \"%s\" has %d columns, not %d",
			 RelationGetRelationName(rel), RelationGetDescr(rel)->natts, SV_ARCHIVE_NATTS);
	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	bistate = GetBulkInsertState();
	cid = GetCurrentCommandId(true);

	for (int i = 0; i < n; i++)
	{
		const SvEvent *ev = &events[i];

		if (ev->offset >= sv_archived_next_of(src, ev->partition))
		{
			if (nslots == nmade)
				slots[nmade++] = table_slot_create(rel, NULL);
			sv_fill_slot(slots[nslots++], src->source_id, ev, now);
			sv_archived_next[ev->partition] = ev->offset + 1;
		}
		if (nslots > 0 && (nslots == SV_ARCHIVE_GROUP || i == n - 1))
		{
			table_multi_insert(rel, slots, nslots, cid, 0, bistate);
			for (int j = 0; j < nslots; j++)
				(void) ExecInsertIndexTuples(rri, slots[j], estate, false, false, NULL, NIL);
			ResetPerTupleExprContext(estate);
			nslots = 0;
		}
	}
	for (int j = 0; j < nmade; j++)
		ExecDropSingleTupleTableSlot(slots[j]);
	FreeBulkInsertState(bistate);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
}

static char *
sv_copy_datum_bytes(Datum d, int *len, MemoryContext cxt)
{
	bytea	   *b = DatumGetByteaPP(d);
	char	   *copy;

	*len = VARSIZE_ANY_EXHDR(b);
	copy = MemoryContextAlloc(cxt, *len + 1);
	memcpy(copy, VARDATA_ANY(b), *len);
	copy[*len] = '\0';
	return copy;
}

/*
 * The archive's entry point for readers: up to max archived messages of
 * the source's partition with from <= offset < before, in offset order,
 * into out[] (allocated in cxt), as kafka.c would have handed them over
 * (partition, offset, broker timestamp, key, payload); returns how many.
 * In a transaction, SPI connected.
 */
int
streamview_archive_read(int32 source_id, int32 partition, int64 from, int64 before,
						int max, SvEvent *out, MemoryContext cxt)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[5] = {Int32GetDatum(source_id), Int32GetDatum(partition),
	Int64GetDatum(from), Int64GetDatum(before), Int32GetDatum(max)};
	int			n;

	if (plan == NULL)
	{
		Oid			argtypes[5] = {INT4OID, INT4OID, INT8OID, INT8OID, INT4OID};

		plan = SPI_prepare("SELECT DISTINCT ON (a.\"offset\") a.\"offset\", a.broker_time, a.key, a.payload "
						   "FROM streamview.archive a WHERE a.source_id = $1 AND a.partition = $2 "
						   "AND a.\"offset\" >= $3 AND a.\"offset\" < $4 "
						   "ORDER BY a.\"offset\" LIMIT $5", 5, argtypes);
		if (plan == NULL)
			elog(ERROR, "could not prepare the archive's read: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
	}
	if (SPI_execute_plan(plan, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading the archive failed");
	n = (int) SPI_processed;
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		SvEvent    *ev = &out[i];
		bool		isnull;
		Datum		d;

		memset(ev, 0, sizeof(SvEvent));
		ev->partition = partition;
		ev->offset = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		d = SPI_getbinval(tup, desc, 2, &isnull);
		ev->has_broker_time = !isnull;
		if (!isnull)
			ev->broker_time = DatumGetTimestampTz(d);
		d = SPI_getbinval(tup, desc, 3, &isnull);
		if (!isnull)
			ev->key = sv_copy_datum_bytes(d, &ev->keylen, cxt);
		d = SPI_getbinval(tup, desc, 4, &isnull);
		if (!isnull)
			ev->payload = sv_copy_datum_bytes(d, &ev->paylen, cxt);
	}
	SPI_freetuptable(SPI_tuptable);
	return n;
}

/*
 * The lowest archived offset of the partition at or after from, or -1 when
 * nothing is archived there.  In a transaction, SPI connected.
 */
int64
streamview_archive_first(int32 source_id, int32 partition, int64 from)
{
	Oid			argtypes[3] = {INT4OID, INT4OID, INT8OID};
	Datum		args[3] = {Int32GetDatum(source_id), Int32GetDatum(partition), Int64GetDatum(from)};
	bool		isnull;
	Datum		d;

	SPI_execute_with_args("SELECT min(\"offset\") FROM streamview.archive "
						  "WHERE source_id = $1 AND partition = $2 AND \"offset\" >= $3",
						  3, argtypes, args, NULL, true, 1);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? -1 : DatumGetInt64(d);
}

/* Store the log starts of the worker's partitions that changed. */
static void
sv_store_log_starts(const SvSource *src, SvKafka *k, int nparts)
{
	if (nparts > sv_nlog_starts)
	{
		sv_log_starts = sv_log_starts == NULL ?
			MemoryContextAlloc(TopMemoryContext, nparts * sizeof(int64)) :
			repalloc(sv_log_starts, nparts * sizeof(int64));
		for (int p = sv_nlog_starts; p < nparts; p++)
			sv_log_starts[p] = -1;
		sv_nlog_starts = nparts;
	}
	for (int p = 0; p < nparts; p++)
	{
		int64		lo;
		Oid			argtypes[3] = {INT4OID, INT4OID, INT8OID};
		Datum		args[3];

		if (!streamview_owns_partition(src, p))
			continue;
		lo = streamview_kafka_log_start_known(k, p);
		if (lo < 0 || lo == sv_log_starts[p])
			continue;
		args[0] = Int32GetDatum(src->source_id);
		args[1] = Int32GetDatum(p);
		args[2] = Int64GetDatum(lo);
		SPI_execute_with_args("INSERT INTO streamview.log_starts AS l (source_id, partition, log_start) "
							  "VALUES ($1, $2, $3) ON CONFLICT (source_id, partition) "
							  "DO UPDATE SET log_start = excluded.log_start, updated_at = now()",
							  3, argtypes, args, NULL, false, 0);
		sv_log_starts[p] = lo;
	}
}

/*
 * A source worker's housekeeping for the archive, in its transaction (SPI
 * connected): the log starts of its partitions, every few seconds; and, by
 * the source's first worker, the archive's tables, as often as needed for
 * the next ones to exist before their time comes (a sixteenth of the
 * archive interval, between a second and a minute).
 */
void
streamview_archive_housekeeping(const SvSource *src, SvKafka *k, int nparts)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		period;

	if (now - sv_last_log_starts >= SV_LOG_START_PERIOD_US)
	{
		sv_last_log_starts = now;
		sv_store_log_starts(src, k, nparts);
	}
	if (src->archive_us < 0 || src->worker_index != 0)
		return;
	period = Max(SV_ARCHIVE_MIN_PERIOD_US, Min(src->archive_us / 16, SV_ARCHIVE_MAX_PERIOD_US));
	if (now - sv_last_retention < period)
		return;
	sv_last_retention = now;
	{
		Oid			argtypes[1] = {INT4OID};
		Datum		args[1] = {Int32GetDatum(src->source_id)};

		SPI_execute_with_args("SELECT streamview_internal._archive_housekeeping($1)",
							  1, argtypes, args, NULL, false, 0);
		sv_leaf = InvalidOid;	/* tables made or dropped: look again */
	}
}
