/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  The rows of the batch a worker is applying, fed from its memory to the
 *	  version's statement: streamview_internal._batch_rows(version_id).
 *
 * A version's per-batch statement (codegen.c) reads its events as
 *
 *	 FROM streamview_internal._batch_rows(<version_id>)
 *		  AS b(<the source's columns>, sv_window_start timestamptz,
 *			   sv_window_end timestamptz)
 *
 * one row per event and window it falls in, with the window's bounds
 * (window.c computes both: a window's length is not always its size, as
 * with months or a change of clocks).  PostgreSQL's own executor then
 * evaluates the WHERE clause, the keys and the aggregates, as it would over
 * a table; only the table is gone: no heap_insert, buffer or catalog entry
 * per event.  The rows are handed over in one tuplestore (materialize mode),
 * which the function scan reads as it is.
 *
 * apply.c names the events (streamview_batch_feed) just for the time its
 * statement runs, and takes them back after (streamview_batch_unfeed), also
 * when the statement fails.  (A batch of several rounds feeds each round
 * the same way to the version's partial statement, and its partial rows to
 * the merge statement through _batch_partials: see the end of this file.)
 * The function returns them only to a call for
 * that version, in that worker, at that time: anywhere else (a session, a
 * worker between statements, another version's id) it raises an error, so
 * it never shows one role the events of another's view.  The statement runs
 * as the view's owner, who may execute the function (PUBLIC may: it is
 * harmless outside the worker) and has USAGE on streamview_internal.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/resowner.h"
#include "utils/tuplestore.h"

/*
 * Up to this many kilobytes of a batch's rows stay in memory (or work_mem,
 * if larger); beyond, the tuplestore writes them to a temporary file, as a
 * temporary table would have.  A default batch of 10,000 ~100-byte events
 * with a few windows each fits several times over.
 */
#define SV_BATCH_ROWS_MEMORY_KB (32 * 1024)

/*
 * A batch of several rounds keeps its partial rows in memory up to this
 * (or work_mem), beyond in a temporary file: up to batch_max_groups
 * (1,000,000) rows of ~80 bytes would otherwise take most of a worker's
 * memory budget (docs/architecture.md, "Memory"), and they are written
 * once and read once, by the merge.
 */
#define SV_PARTIAL_ROWS_MEMORY_KB (8 * 1024)

/* The events the worker is applying now; version NULL when none. */
typedef struct SvBatchFeed
{
	const SvSource *src;
	const SvVersion *version;
	const SvEvent *events;
	const int  *idx;
	int			n;
} SvBatchFeed;

static SvBatchFeed sv_feed;

/*
 * From now until streamview_batch_unfeed, _batch_rows(v->version_id)
 * returns events idx[0..n) (n = 0: no event at all).
 */
void
streamview_batch_feed(const SvSource *src, const SvVersion *v, const SvEvent *events,
					  const int *idx, int n)
{
	sv_feed.src = src;
	sv_feed.version = v;
	sv_feed.events = events;
	sv_feed.idx = idx;
	sv_feed.n = n;
}

void
streamview_batch_unfeed(void)
{
	memset(&sv_feed, 0, sizeof(sv_feed));
}

/*
 * The FROM item of a version's statement: the call and its column list, the
 * source's columns in their order (attnum), as the worker parses them.
 * Allocated in the caller's memory context.
 */
char *
streamview_batch_rows_from(const char *source, int32 version_id)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(source)};
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, STREAMVIEW_INTERNAL_SCHEMA "._batch_rows(%d) AS b(", version_id);
	SPI_connect();
	SPI_execute_with_args("SELECT c.name, c.type::oid FROM streamview.source_columns c "
						  "JOIN streamview.sources s USING (source_id) "
						  "WHERE s.name = $1 ORDER BY c.attnum",
						  1, argtypes, args, NULL, true, 0);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("source \"%s\" does not exist", source)));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		/* buf grows in the caller's context, where it was made */
		appendStringInfo(&buf, "%s %s, ", quote_identifier(SPI_getvalue(tup, desc, 1)),
						 format_type_be_qualified(DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull))));
	}
	SPI_finish();
	appendStringInfoString(&buf, "sv_window_start timestamptz, sv_window_end timestamptz)");
	return buf.data;
}

/*
 * Which of the source's columns each column of the statement's list is:
 * map[i] for list column i (the window's bounds come last).  Columns are
 * matched by name, so that a version's statement, whose list is the
 * source's columns when the version was made, goes on reading after
 * alter_source added columns (add_columns) or dropped or changed ones it
 * does not read: alter_source refuses to drop or retype a column a version
 * reads, so a listed column that is gone, or has another type, can only be
 * one the statement does not use, and reads as NULL.  (A statement written
 * by hand into versions.batch_sql with the window's bounds elsewhere is
 * refused.)
 */
static int *
sv_map_columns(const SvSource *src, TupleDesc desc)
{
	int			nlisted = desc->natts - 2;
	int		   *map = palloc(Max(nlisted, 1) * sizeof(int));

	if (nlisted < 0 ||
		TupleDescAttr(desc, nlisted)->atttypid != TIMESTAMPTZOID ||
		TupleDescAttr(desc, nlisted + 1)->atttypid != TIMESTAMPTZOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("the column list of %s._batch_rows does not match source \"%s\"",
						STREAMVIEW_INTERNAL_SCHEMA, src->name),
				 errdetail("It must list the source's columns with their types, "
						   "then sv_window_start and sv_window_end (timestamptz).")));
	for (int i = 0; i < nlisted; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		map[i] = -1;
		for (int c = 0; c < src->ncolumns; c++)
			if (strcmp(NameStr(att->attname), src->columns[c].name) == 0 &&
				att->atttypid == src->columns[c].type)
				map[i] = c;
	}
	return map;
}

PG_FUNCTION_INFO_V1(streamview_batch_rows);
PGDLLEXPORT Datum streamview_batch_rows(PG_FUNCTION_ARGS);

/*
 * streamview_internal._batch_rows(version_id int) RETURNS SETOF record: the
 * rows of the events the worker is applying to that version now, one per
 * event and window, skipping the windows that a version rebuilt from a
 * point in time carries over from the live one (those before its cut).
 */
Datum
streamview_batch_rows(PG_FUNCTION_ARGS)
{
	int32		version_id = PG_GETARG_INT32(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const SvSource *src = sv_feed.src;
	const SvVersion *v = sv_feed.version;
	TupleDesc	desc;
	Tuplestorestate *store;
	MemoryContext old;
	Datum	   *values;
	bool	   *nulls;
	TimestampTz starts[SV_MAX_WINDOWS_PER_EVENT];
	TimestampTz ends[SV_MAX_WINDOWS_PER_EVENT];
	int		   *map;
	int			nlisted;

	if (v == NULL || v->version_id != version_id)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no batch of version %d is being applied here", version_id),
				 errdetail("%s._batch_rows returns the events a stream view's worker is applying, "
						   "to that version's own statement only.", STREAMVIEW_INTERNAL_SCHEMA),
				 errhint("Query the stream view, or the table of its version, instead.")));
	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0 || rsinfo->expectedDesc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s._batch_rows must be called in FROM, with a column list",
						STREAMVIEW_INTERNAL_SCHEMA)));
	map = sv_map_columns(src, rsinfo->expectedDesc);
	nlisted = rsinfo->expectedDesc->natts - 2;

	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	desc = CreateTupleDescCopy(rsinfo->expectedDesc);
	store = tuplestore_begin_heap((rsinfo->allowedModes & SFRM_Materialize_Random) != 0, false,
								  Max(work_mem, SV_BATCH_ROWS_MEMORY_KB));
	MemoryContextSwitchTo(old);

	values = palloc((nlisted + 2) * sizeof(Datum));
	nulls = palloc((nlisted + 2) * sizeof(bool));
	nulls[nlisted] = false;
	nulls[nlisted + 1] = false;
	for (int i = 0; i < sv_feed.n; i++)
	{
		const SvEvent *ev = &sv_feed.events[sv_feed.idx[i]];
		int			nw = streamview_window_spans(&v->window, ev->event_time, starts, ends);

		for (int c = 0; c < nlisted; c++)
		{
			values[c] = map[c] >= 0 ? ev->values[map[c]] : (Datum) 0;
			nulls[c] = map[c] >= 0 ? ev->nulls[map[c]] : true;
		}
		for (int w = 0; w < nw; w++)
		{
			if (v->has_cut && starts[w] < v->cut)
				continue;		/* carried over from the live version */
			values[nlisted] = TimestampTzGetDatum(starts[w]);
			values[nlisted + 1] = TimestampTzGetDatum(ends[w]);
			tuplestore_putvalues(store, desc, values, nulls);
		}
		CHECK_FOR_INTERRUPTS();
	}
	pfree(values);
	pfree(nulls);
	pfree(map);

	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = store;
	rsinfo->setDesc = desc;
	return (Datum) 0;
}

/* ---------- pre-aggregating across rounds ----------
 *
 * Under load a source worker's batch spans several rounds: it takes what the
 * queue has ready (streamview.batch_size messages at most), applies it, and
 * takes more, in the batch's one transaction, until the queue is drained or
 * the batch reaches streamview.batch_max_time or streamview.batch_max_groups
 * (source_worker.c).  A round's events are aggregated by the version's
 * partial statement (codegen.c: its batch_sql's SELECT) into partial rows,
 * one per (window, keys) of the round, which the version keeps here; only
 * the round's events are in memory at a time.  At the batch's end the merge
 * statement reads them through _batch_partials(version_id), groups them
 * again with the aggregates that merge partial values, and upserts each
 * (window, keys) once.  The executor does every step, as for one round.
 */

/* The partial rows a merge statement is reading now; NULL when none. */
static SvVersion *sv_merging;

/*
 * Prepare the partial and merge statements of a version, as its owner (in
 * the caller's run-as), when its batch_sql has the form codegen.c writes;
 * otherwise the version upserts every round.
 */
void
streamview_prepare_rounds(const SvSource *src, SvVersion *v)
{
	MemoryContext vcxt = GetMemoryChunkContext(v);
	char	   *partial_sql;
	char	   *merge_sql;
	SPIPlanPtr	partial;
	CachedPlanSource *ps;

	if (v->output_kinds == NULL || (partial_sql = streamview_partial_sql(v->batch_sql)) == NULL)
		return;
	partial = SPI_prepare(partial_sql, 0, NULL);
	if (partial == NULL || list_length(SPI_plan_get_plan_sources(partial)) != 1 ||
		(ps = linitial(SPI_plan_get_plan_sources(partial)))->resultDesc == NULL)
		return;
	merge_sql = streamview_merge_sql(v->batch_sql, v->version_id, v->output_kinds, ps->resultDesc,
									 src->worker_count > 1);
	if (merge_sql == NULL)
		return;
	v->merge_plan = SPI_prepare(merge_sql, 0, NULL);
	if (v->merge_plan == NULL)
		elog(ERROR, "could not prepare the merge statement of view \"%s\": %s",
			 v->view_name, SPI_result_code_string(SPI_result));
	SPI_keepplan(v->merge_plan);
	SPI_keepplan(partial);
	v->partial_plan = partial;
	v->partial_desc = MemoryContextAllocZero(vcxt, TupleDescSize(ps->resultDesc));
	TupleDescCopy(v->partial_desc, ps->resultDesc);
	v->partial_cxt = AllocSetContextCreate(vcxt, "pg_streamview partial rows", ALLOCSET_DEFAULT_SIZES);
}

/*
 * Keep the n rows a partial statement returned (tt) for the batch's merge.
 * Called once the statement succeeded, so that a round applied by halves
 * (apply.c) keeps the rows of the halves that went through, and only those.
 */
void
streamview_keep_partials(SvVersion *v, SPITupleTable *tt, uint64 n)
{
	if (v->partials == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(v->partial_cxt);
		ResourceOwner owner = CurrentResourceOwner;

		/*
		 * Beyond work_mem (or 8 MB), the rows go to a temporary file,
		 * which belongs to the resource owner current here.  Here is a
		 * round's subtransaction (apply.c), which would close the file
		 * when it commits, and is freed: the rows of the rounds before
		 * were silently lost.  The rows live as long as the batch's
		 * transaction, and so must their file.
		 */
		CurrentResourceOwner = TopTransactionResourceOwner;
		v->partials = tuplestore_begin_heap(false, false, Max(work_mem, SV_PARTIAL_ROWS_MEMORY_KB));
		CurrentResourceOwner = owner;
		MemoryContextSwitchTo(old);
	}
	for (uint64 i = 0; i < n; i++)
		tuplestore_puttuple(v->partials, tt->vals[i]);
	v->npartials += n;
}

/* Partial rows the versions hold: at most streamview.batch_max_groups. */
int64
streamview_partial_rows(List *versions)
{
	ListCell   *lc;
	int64		n = 0;

	foreach(lc, versions)
		n += ((SvVersion *) lfirst(lc))->npartials;
	return n;
}

/*
 * The batch ends (merged, or its merge failed), in its transaction: forget
 * its partial rows, closing their temporary file if they spilled to one.
 */
void
streamview_drop_partials(SvVersion *v)
{
	if (v->partials)
		tuplestore_end(v->partials);
	v->partials = NULL;
	v->npartials = 0;
	if (v->partial_cxt)
		MemoryContextReset(v->partial_cxt);
}

/* From now until streamview_merge_unfeed, _batch_partials(v) returns v's partial rows. */
void
streamview_merge_feed(SvVersion *v)
{
	sv_merging = v;
}

void
streamview_merge_unfeed(void)
{
	sv_merging = NULL;
}

PG_FUNCTION_INFO_V1(streamview_batch_partials);
PGDLLEXPORT Datum streamview_batch_partials(PG_FUNCTION_ARGS);

/*
 * streamview_internal._batch_partials(version_id int) RETURNS SETOF record:
 * the partial rows of the batch a worker is merging into that version now,
 * to that version's merge statement only (as _batch_rows).  The rows are
 * handed over once: the function scan owns them from then on.
 */
Datum
streamview_batch_partials(PG_FUNCTION_ARGS)
{
	int32		version_id = PG_GETARG_INT32(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SvVersion  *v = sv_merging;
	TupleDesc	expected;
	bool		same;

	if (v == NULL || v->version_id != version_id)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no batch of version %d is being merged here", version_id),
				 errdetail("%s._batch_partials returns the partial rows a stream view's worker is merging, "
						   "to that version's own statement only.", STREAMVIEW_INTERNAL_SCHEMA),
				 errhint("Query the stream view, or the table of its version, instead.")));
	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0 || rsinfo->expectedDesc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s._batch_partials must be called in FROM, with a column list",
						STREAMVIEW_INTERNAL_SCHEMA)));
	expected = rsinfo->expectedDesc;
	same = expected->natts == v->partial_desc->natts;
	for (int c = 0; same && c < expected->natts; c++)
		same = TupleDescAttr(expected, c)->atttypid == TupleDescAttr(v->partial_desc, c)->atttypid;
	if (!same)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("the column list of %s._batch_partials does not match view \"%s\"",
						STREAMVIEW_INTERNAL_SCHEMA, v->view_name)));

	if (v->partials == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);

		rsinfo->setResult = tuplestore_begin_heap(false, false, work_mem);
		MemoryContextSwitchTo(old);
	}
	else
		rsinfo->setResult = v->partials;
	/* the function scan ends the tuplestore: the version no longer has it */
	v->partials = NULL;
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setDesc = CreateTupleDescCopy(v->partial_desc);
	return (Datum) 0;
}
