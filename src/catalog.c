/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  Reading a source and its versions from the streamview catalog.
 *
 * Callers are inside a transaction with SPI connected.  Note that every SPI
 * call returns with CurrentMemoryContext set to SPI's procedure context,
 * which SPI_finish frees; long-lived data is allocated in explicit contexts.
 * What is loaded is
 * copied into a memory context of its own (one per source, one per version
 * set) so that it outlives the transaction and can be dropped whole when the
 * catalog changes.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/array.h"
#include "utils/memutils.h"

static char *
sv_text(HeapTuple tup, TupleDesc desc, int col)
{
	return SPI_getvalue(tup, desc, col);
}

static int64
sv_int8(HeapTuple tup, TupleDesc desc, int col, int64 if_null)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? if_null : DatumGetInt64(d);
}

/*
 * The source's typed columns, in declaration order, with each one's path,
 * input function and default (already converted), in the source's memory
 * context; marks which columns are the event time and the event id.
 * columns: 0 for those of the catalog, else a candidate set (a jsonb), as
 * create_source's columns => takes it (check_source), already checked.
 */
static void
sv_load_columns(SvSource *src, const char *event_time, const char *event_id, Datum columns)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(src->source_id)};
	MemoryContext cxt = GetMemoryChunkContext(src);

	if (columns == (Datum) 0)
		SPI_execute_with_args("SELECT name, type::oid, array_length(path, 1), array_to_string(path, '.'), "
							  "required, default_value FROM streamview.source_columns "
							  "WHERE source_id = $1 ORDER BY attnum",
							  1, argtypes, args, NULL, true, 0);
	else
	{
		argtypes[0] = JSONBOID;
		args[0] = columns;
		SPI_execute_with_args("SELECT d.name, d.type::oid, array_length(d.path, 1), "
							  "array_to_string(d.path, '.'), d.required, d.default_value "
							  "FROM jsonb_each($1) e, " STREAMVIEW_INTERNAL_SCHEMA "._column_spec(e.key, e.value) d "
							  "ORDER BY d.name",
							  1, argtypes, args, NULL, true, 0);
	}
	src->ncolumns = SPI_processed;
	src->columns = MemoryContextAllocZero(cxt, src->ncolumns * sizeof(SvColumn));
	src->event_id_col = -1;
	for (int c = 0; c < src->ncolumns; c++)
	{
		HeapTuple	tup = SPI_tuptable->vals[c];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		SvColumn   *col = &src->columns[c];
		MemoryContext old = MemoryContextSwitchTo(cxt);
		char	   *dflt = sv_text(tup, desc, 6);
		char	   *path = sv_text(tup, desc, 4);
		Oid			infunc;
		bool		isnull;

		col->name = pstrdup(sv_text(tup, desc, 1));
		col->type = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		col->npath = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		col->path = palloc(col->npath * sizeof(char *));
		for (int i = 0; i < col->npath; i++)
		{
			char	   *dot = strchr(path, '.');

			if (dot)
				*dot = '\0';
			col->path[i] = pstrdup(path);
			path = dot ? dot + 1 : path + strlen(path);
		}
		col->required = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
		get_typlenbyval(col->type, &col->typlen, &col->typbyval);
		getTypeInputInfo(col->type, &infunc, &col->ioparam);
		fmgr_info_cxt(infunc, &col->input, cxt);
		if (dflt != NULL)
		{
			col->has_default = true;
			col->default_value = InputFunctionCall(&col->input, dflt, col->ioparam, -1);
		}
		if (strcmp(col->name, event_time) == 0)
			src->event_time_col = c;
		if (event_id && strcmp(col->name, event_id) == 0)
			src->event_id_col = c;
		MemoryContextSwitchTo(old);
	}
}

/*
 * The source's partitions => (columns col and col + 1 of its row as
 * streamview_load_source reads it: the first and last partition of each
 * range, in order; the first NULL when the source reads every partition).
 */
static void
sv_load_partitions(SvSource *src, HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		firsts = SPI_getbinval(tup, desc, col, &isnull);
	Datum		lasts;
	Datum	   *first,
			   *last;
	int			n;
	MemoryContext cxt = GetMemoryChunkContext(src);

	src->npartition_ranges = -1;
	if (isnull)
		return;
	lasts = SPI_getbinval(tup, desc, col + 1, &isnull);
	deconstruct_array(DatumGetArrayTypeP(firsts), INT4OID, 4, true, TYPALIGN_INT, &first, NULL, &n);
	deconstruct_array(DatumGetArrayTypeP(lasts), INT4OID, 4, true, TYPALIGN_INT, &last, NULL, &n);
	src->npartition_ranges = n;
	src->partition_first = MemoryContextAlloc(cxt, Max(n, 1) * sizeof(int32));
	src->partition_last = MemoryContextAlloc(cxt, Max(n, 1) * sizeof(int32));
	for (int i = 0; i < n; i++)
	{
		src->partition_first[i] = DatumGetInt32(first[i]);
		src->partition_last[i] = DatumGetInt32(last[i]);
	}
}

/*
 * Does the source read partition p of its topic?  The one test of it in C
 * (partitions =>, docs/scaling.md): the source's workers assign, store
 * ledger rows for and wait for only the partitions it reads, split between
 * them by streamview_owns_partition, and the watermark counts exactly these,
 * whichever worker reads them.  streamview_internal._reads_partition
 * answers the same for SQL.
 */
bool
streamview_source_reads_partition(const SvSource *src, int32 p)
{
	if (src->npartition_ranges < 0)
		return true;
	for (int i = 0; i < src->npartition_ranges; i++)
		if (p >= src->partition_first[i] && p <= src->partition_last[i])
			return true;
	return false;
}

/* The source, or NULL when it no longer exists. */
SvSource *
streamview_load_source(int32 source_id)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(source_id)};
	MemoryContext cxt;
	SvSource   *src;
	HeapTuple	tup;
	TupleDesc	desc;
	char	   *event_time;
	char	   *event_id;
	uint64		nopts;

	SPI_execute_with_args("SELECT name, brokers, topic, event_time, event_id, "
						  "(extract(epoch FROM max_out_of_orderness) * 1000000)::int8, "
						  "(extract(epoch FROM idle_timeout) * 1000000)::int8, owner::oid, "
						  "(extract(epoch FROM max_future) * 1000000)::int8, " SV_SOURCE_SETTINGS ", "
						  "CASE WHEN s.partitions IS NOT NULL THEN ARRAY(SELECT lower(r) FROM unnest(s.partitions) r "
						  "ORDER BY 1) END, "
						  "ARRAY(SELECT coalesce(upper(r) - 1, 2147483647) FROM unnest(s.partitions) r ORDER BY lower(r)), "
						  "workers, format, schema_registry, (extract(epoch FROM archive) * 1000000)::int8 "
						  "FROM streamview.sources s WHERE source_id = $1",
						  1, argtypes, args, NULL, true, 1);
	if (SPI_processed == 0)
		return NULL;

	cxt = AllocSetContextCreate(TopMemoryContext, "pg_streamview source", ALLOCSET_DEFAULT_SIZES);
	src = MemoryContextAllocZero(cxt, sizeof(SvSource));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	src->source_id = source_id;
	src->name = MemoryContextStrdup(cxt, sv_text(tup, desc, 1));
	src->brokers = MemoryContextStrdup(cxt, sv_text(tup, desc, 2));
	src->topic = MemoryContextStrdup(cxt, sv_text(tup, desc, 3));
	event_time = pstrdup(sv_text(tup, desc, 4));
	event_id = sv_text(tup, desc, 5) ? pstrdup(sv_text(tup, desc, 5)) : NULL;
	src->ooo_us = sv_int8(tup, desc, 6, 0);
	src->idle_timeout_us = sv_int8(tup, desc, 7, -1);
	src->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 8, &(bool){false}));
	src->max_future_us = sv_int8(tup, desc, 9, -1);
	src->settings = MemoryContextStrdup(cxt, sv_text(tup, desc, 10));
	sv_load_partitions(src, tup, desc, 11);	/* and 12 */
	src->workers = Max(DatumGetInt32(SPI_getbinval(tup, desc, 13, &(bool){false})), 1);
	src->worker_count = 1;		/* until a source worker says otherwise */
	src->format = streamview_format(sv_text(tup, desc, 14));
	if (sv_text(tup, desc, 15))
		src->schema_registry = MemoryContextStrdup(cxt, sv_text(tup, desc, 15));
	src->archive_us = sv_int8(tup, desc, 16, -1);

	sv_load_columns(src, event_time, event_id, (Datum) 0);

	SPI_execute_with_args("SELECT key, value FROM streamview.sources, jsonb_each_text(options) "
						  "WHERE source_id = $1 ORDER BY key",
						  1, argtypes, args, NULL, true, 0);
	nopts = SPI_processed;
	for (uint64 i = 0; i < nopts; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);
		char	   *name = pstrdup(sv_text(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		char	   *value = pstrdup(sv_text(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));

		/* the schema registry's credentials are registry.c's, not librdkafka's */
		if (strcmp(name, "schema.registry.username") == 0)
			src->registry_username = value;
		else if (strcmp(name, "schema.registry.password") == 0)
			src->registry_password = value;
		else
		{
			src->option_names = lappend(src->option_names, name);
			src->option_values = lappend(src->option_values, value);
		}
		MemoryContextSwitchTo(old);
	}
	return src;
}

static List *
lappend_cxt(MemoryContext cxt, List *list, void *datum)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);

	list = lappend(list, datum);
	MemoryContextSwitchTo(old);
	return list;
}

/*
 * Read the source with another set of columns than its own (check_source's
 * candidate definition, checked by the caller: it has the event time column,
 * and the event id's): the columns are replaced, the rest is kept.
 */
void
streamview_source_use_columns(SvSource *src, Datum columns)
{
	char	   *event_time = pstrdup(src->columns[src->event_time_col].name);
	char	   *event_id = src->event_id_col >= 0 ? pstrdup(src->columns[src->event_id_col].name) : NULL;

	src->event_time_col = -1;
	src->paths = NULL;			/* parse.c builds it again for these columns */
	sv_load_columns(src, event_time, event_id, columns);
	if (src->event_time_col < 0)
		elog(ERROR, "the columns of source \"%s\" lack its event time \"%s\"", src->name, event_time);
}

/*
 * Which versions a worker maintains: a source worker (replay_version_id 0) the
 * live and caught-up ones; a replay worker just its replaying version.
 */
#define SV_WORKER_VERSIONS \
	"CASE WHEN $2 = 0 THEN ver.state IN ('live', 'caught_up') " \
	"ELSE ver.version_id = $2 AND ver.state = 'replaying' END"

/*
 * A version's window from its row (columns 7 to 9, 15 and 16 of the query
 * below), checked again as window.c checks a new one: a time zone the
 * time zone data no longer knows is an error here, not a silent UTC.
 */
static void
sv_load_window(HeapTuple tup, TupleDesc desc, SvWindow *w)
{
	bool		isnull;
	Datum		size = SPI_getbinval(tup, desc, 8, &isnull);
	Datum		slide = SPI_getbinval(tup, desc, 9, &isnull);
	Datum		origin = SPI_getbinval(tup, desc, 16, &isnull);
	char	   *zone = sv_text(tup, desc, 15);

	streamview_window_init(w, strcmp(sv_text(tup, desc, 7), "hop") == 0 ? SV_WINDOW_HOP : SV_WINDOW_TUMBLE,
						   DatumGetIntervalP(size), DatumGetIntervalP(slide),
						   zone ? streamview_time_zone(zone) : NULL,
						   isnull ? 0 : DatumGetTimestamp(origin));
}

/*
 * The versions of the source's views that the source worker maintains, each
 * in a memory context of its own (a child of TopMemoryContext).
 */
List *
streamview_load_versions(const SvSource *src, int32 replay_version_id)
{
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		args[2] = {Int32GetDatum(src->source_id), Int32GetDatum(replay_version_id)};
	List	   *result = NIL;
	uint64		n;
	SPITupleTable *tt;

	SPI_execute_with_args("SELECT ver.version_id, ver.version, ver.view_name, ver.state, v.owner::oid, "
						  "(extract(epoch FROM v.allowed_lateness) * 1000000)::int8, ver.window_kind, "
						  "ver.window_size, ver.window_slide, ver.batch_sql, "
						  "ver.definition_hash, ver.watermark, ver.max_rate, ver.start_from, "
						  "ver.window_time_zone, ver.window_origin, "
						  "(SELECT string_agg(o->>'kind', ',' ORDER BY n) "
						  " FROM jsonb_array_elements(ver.definition->'outputs') WITH ORDINALITY AS a(o, n)) "
						  "FROM streamview.versions ver JOIN streamview.views v USING (view_id) "
						  "WHERE v.source_id = $1 AND " SV_WORKER_VERSIONS
						  " ORDER BY ver.version_id",
						  2, argtypes, args, NULL, true, 0);
	n = SPI_processed;
	tt = SPI_tuptable;
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = tt->vals[i];
		TupleDesc	desc = tt->tupdesc;
		MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "pg_streamview version",
												  ALLOCSET_SMALL_SIZES);
		SvVersion  *v = MemoryContextAllocZero(cxt, sizeof(SvVersion));
		bool		isnull;
		Datum		wm;

		v->version_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		v->version = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		v->view_name = MemoryContextStrdup(cxt, sv_text(tup, desc, 3));
		v->state = streamview_version_state(sv_text(tup, desc, 4));
		v->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
		v->lateness_us = sv_int8(tup, desc, 6, 0);
		sv_load_window(tup, desc, &v->window);
		v->batch_sql = MemoryContextStrdup(cxt, sv_text(tup, desc, 10));
		v->definition_hash = MemoryContextStrdup(cxt, sv_text(tup, desc, 11));
		wm = SPI_getbinval(tup, desc, 12, &isnull);
		v->has_watermark = !isnull;
		v->watermark = isnull ? 0 : DatumGetTimestampTz(wm);
		v->max_rate = sv_int8(tup, desc, 13, 0);
		wm = SPI_getbinval(tup, desc, 14, &isnull);
		v->has_cut = !isnull;
		v->cut = isnull ? 0 : DatumGetTimestampTz(wm);
		(void) SPI_getbinval(tup, desc, 17, &isnull);
		v->output_kinds = isnull ? NULL : MemoryContextStrdup(cxt, sv_text(tup, desc, 17));
		streamview_load_offsets(v);
		if (src->event_id_col >= 0)
			streamview_load_seen(src, v);
		/* SPI calls leave CurrentMemoryContext in SPI's: be explicit */
		result = lappend_cxt(TopMemoryContext, result, v);
	}
	return result;
}

/*
 * A short text that changes whenever the set of versions this source's
 * worker maintains changes; NULL when the source is gone.  *settings: the
 * source's SV_SOURCE_SETTINGS now.  Takes KEY SHARE locks on the source and
 * its views, so that drop_source(), drop_view() and alter_source() (which
 * lock those rows FOR UPDATE) wait for the batch to commit; the settings
 * are read from the row as locked, so a batch that waited for
 * alter_source() sees what it changed.
 */
char *
streamview_versions_signature(int32 source_id, int32 replay_version_id, char **settings)
{
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		args[2] = {Int32GetDatum(source_id), Int32GetDatum(replay_version_id)};
	char	   *sig;

	SPI_execute_with_args("SELECT " SV_SOURCE_SETTINGS " FROM streamview.sources s "
						  "WHERE source_id = $1 FOR KEY SHARE",
						  1, argtypes, args, NULL, false, 1);
	if (SPI_processed == 0)
		return NULL;
	*settings = MemoryContextStrdup(TopMemoryContext,
									sv_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	SPI_execute_with_args("SELECT 1 FROM streamview.views WHERE source_id = $1 FOR KEY SHARE",
						  1, argtypes, args, NULL, false, 0);
	SPI_execute_with_args("SELECT coalesce(string_agg(ver.version_id || ':' || ver.state, ',' "
						  "ORDER BY ver.version_id), '') "
						  "FROM streamview.versions ver JOIN streamview.views v USING (view_id) "
						  "WHERE v.source_id = $1 AND " SV_WORKER_VERSIONS,
						  2, argtypes, args, NULL, true, 1);
	sig = sv_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return MemoryContextStrdup(TopMemoryContext, sig ? sig : "");
}

/*
 * Keep the reason a worker stopped, or a problem it met, in worker_errors
 * (in the caller's transaction).  current: it is what stops the source now,
 * shown as sources.last_error (and status.error) until the source recovers.
 */
void
streamview_record_worker_error(int32 source_id, const char *message, const char *detail,
							   bool current)
{
	Oid			argtypes[4] = {INT4OID, TEXTOID, TEXTOID, BOOLOID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', detail ? ' ' : 'n', ' '};

	/* nothing is recorded for a source dropped meanwhile */
	args[0] = Int32GetDatum(source_id);
	args[1] = CStringGetTextDatum(message);
	args[2] = detail ? CStringGetTextDatum(detail) : (Datum) 0;
	args[3] = BoolGetDatum(current);
	SPI_execute_with_args("WITH e AS (INSERT INTO streamview.worker_errors (source_id, source_name, message, detail) "
						  "SELECT source_id, name, $2, $3 FROM streamview.sources WHERE source_id = $1) "
						  "UPDATE streamview.sources SET last_error = $2, last_error_at = now() "
						  "WHERE source_id = $1 AND $4",
						  4, argtypes, args, nulls, false, 0);
}

/* The source's last_error, as recorded (NULL: none), in TopMemoryContext. */
char *
streamview_source_error(int32 source_id)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(source_id)};
	char	   *error;

	SPI_execute_with_args("SELECT last_error FROM streamview.sources WHERE source_id = $1",
						  1, argtypes, args, NULL, true, 1);
	if (SPI_processed == 0)
		return NULL;
	error = sv_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return error ? MemoryContextStrdup(TopMemoryContext, error) : NULL;
}

/*
 * The source is fine again, as far as this worker can tell: its error
 * goes, if it is still the one this worker recorded (or found when it
 * started).  Another of the source's workers may have recorded its own
 * since, which stays until that worker reads again.
 */
void
streamview_clear_source_error(int32 source_id, const char *error)
{
	Oid			argtypes[2] = {INT4OID, TEXTOID};
	Datum		args[2] = {Int32GetDatum(source_id), CStringGetTextDatum(error)};

	SPI_execute_with_args("UPDATE streamview.sources SET last_error = NULL "
						  "WHERE source_id = $1 AND last_error = $2",
						  2, argtypes, args, NULL, false, 0);
}

/*
 * The Kafka consumer group a source's worker commits its advisory offsets
 * to.  It names the cluster (its system identifier), the database and the
 * source, so that a copy restored from a dump (another cluster, or another
 * database) never commits into the group of the original: lag tools would
 * otherwise show two servers' positions as one, silently.  A promoted
 * standby keeps its primary's identifier, and so its group: it is the same
 * consumer.
 */
char *
streamview_consumer_group(const char *dbname, const char *source_name)
{
	return psprintf("pg_streamview." UINT64_FORMAT ".%s.%s",
					GetSystemIdentifier(), dbname, source_name);
}

PG_FUNCTION_INFO_V1(streamview_consumer_group_fn);
PGDLLEXPORT Datum streamview_consumer_group_fn(PG_FUNCTION_ARGS);

/* streamview_internal._consumer_group(source_name): for streamview.source_list. */
Datum
streamview_consumer_group_fn(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_TEXT_P(cstring_to_text(streamview_consumer_group(get_database_name(MyDatabaseId),
															   name)));
}
