/*-------------------------------------------------------------------------
 *
 * archive.c
 *	  The archive (two-tier log, docs/archive.md): every message a source
 *	  worker consumes, kept in streamview.archive in the transaction of the
 *	  batch that consumed it; read back by a replay for the offsets Kafka no
 *	  longer keeps (replay.c).
 *
 * Writing: one INSERT ... SELECT per batch, whose rows come from the
 * worker's memory (streamview_internal._archive_rows, fed like batch.c's
 * _batch_rows): no statement per message.  Each message is archived once:
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

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

/* The least time between two runs of the archive's housekeeping. */
#define SV_ARCHIVE_MIN_PERIOD_US USECS_PER_SEC
#define SV_ARCHIVE_MAX_PERIOD_US (60 * USECS_PER_SEC)
/* How often the log starts are looked at. */
#define SV_LOG_START_PERIOD_US (5 * USECS_PER_SEC)

/* The messages the worker is archiving now; n < 0 when none. */
static const SvEvent *sv_arch_events;
static const int *sv_arch_idx;
static int	sv_arch_n = -1;

/* Per partition: the next offset not archived yet; -2: not looked up yet. */
static int64 *sv_archived_next = NULL;
static int	sv_narchived = 0;
static int32 sv_archived_source = 0;

/* The prepared INSERT of the source's archive. */
static SPIPlanPtr sv_insert_plan = NULL;

/* What housekeeping last stored, and when it ran. */
static int64 *sv_log_starts = NULL;
static int	sv_nlog_starts = 0;
static TimestampTz sv_last_retention = 0;
static TimestampTz sv_last_log_starts = 0;

PG_FUNCTION_INFO_V1(streamview_archive_rows);
PGDLLEXPORT Datum streamview_archive_rows(PG_FUNCTION_ARGS);

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
 * Archive the messages of a batch the source worker consumed, in the
 * batch's transaction (SPI connected): every message, whatever became of
 * it (applied, duplicate, too late, dead letter), but those already
 * archived.
 */
void
streamview_archive_store(const SvSource *src, const SvEvent *events, int n)
{
	int		   *idx;
	int			k = 0;

	if (src->archive_us < 0 || n == 0)
		return;
	idx = palloc(n * sizeof(int));
	for (int i = 0; i < n; i++)
		if (events[i].offset >= sv_archived_next_of(src, events[i].partition))
			idx[k++] = i;
	if (k == 0)
		return;

	if (sv_insert_plan == NULL)
	{
		char	   *sql = psprintf("INSERT INTO streamview_internal.archive_%d "
								   "(source_id, partition, \"offset\", broker_time, key, payload, headers) "
								   "SELECT %d, r.* FROM streamview_internal._archive_rows() r",
								   src->source_id, src->source_id);

		sv_insert_plan = SPI_prepare(sql, 0, NULL);
		if (sv_insert_plan == NULL)
			elog(ERROR, "could not prepare the archive's INSERT: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(sv_insert_plan);
	}
	sv_arch_events = events;
	sv_arch_idx = idx;
	sv_arch_n = k;
	PG_TRY();
	{
		int			rc = SPI_execute_plan(sv_insert_plan, NULL, NULL, false, 0);

		if (rc != SPI_OK_INSERT)
			elog(ERROR, "archiving a batch failed: %s", SPI_result_code_string(rc));
	}
	PG_FINALLY();
	{
		sv_arch_n = -1;
	}
	PG_END_TRY();
	for (int i = 0; i < k; i++)
	{
		const SvEvent *ev = &events[idx[i]];

		sv_archived_next[ev->partition] = Max(sv_archived_next[ev->partition], ev->offset + 1);
	}
	pfree(idx);
}

static Datum
sv_bytea(const char *data, int len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), data, len);
	return PointerGetDatum(b);
}

/*
 * streamview_internal._archive_rows(): the messages being archived, to the
 * archive's INSERT in the worker that archives them; an error anywhere else.
 */
Datum
streamview_archive_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	if (sv_arch_n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("streamview_internal._archive_rows() returns rows only to a source worker archiving a batch"),
				 errhint("Read the archive from streamview.archive.")));
	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < sv_arch_n; i++)
	{
		const SvEvent *ev = &sv_arch_events[sv_arch_idx[i]];
		Datum		values[6];
		bool		nulls[6] = {false};

		values[0] = Int32GetDatum(ev->partition);
		values[1] = Int64GetDatum(ev->offset);
		values[2] = TimestampTzGetDatum(ev->broker_time);
		nulls[2] = !ev->has_broker_time;
		nulls[3] = ev->key == NULL;
		if (ev->key)
			values[3] = sv_bytea(ev->key, ev->keylen);
		nulls[4] = ev->payload == NULL;
		if (ev->payload)
			values[4] = sv_bytea(ev->payload, ev->paylen);
		nulls[5] = ev->headers == NULL;
		if (ev->headers)
			values[5] = DirectFunctionCall1(jsonb_in, CStringGetDatum(ev->headers));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
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
	}
}
