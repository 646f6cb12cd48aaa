/*-------------------------------------------------------------------------
 *
 * codegen.c
 *	  The SQL a stream view version needs, generated in one place from its
 *	  compiled query (compile.c): its table, its unique index, the per-batch
 *	  upsert, the view's SELECT, and the definition stored with it.
 *
 * streamview_internal._version_sql(caller, caller_path, source, query, table_name,
 * version_id, lateness) compiles the query and returns all of them, with the
 * version's real names in place: SQL only executes and records them.
 *
 * The definition (streamview.versions.definition, hashed with the view's
 * allowed lateness into definition_hash) is a jsonb object:
 *	 window_kind		"tumble" or "hop"
 *	 window_size		the window's size, as interval text
 *	 window_slide		its slide (the size for tumble)
 *	 window_time_zone	with a time zone only: the zone's name
 *	 window_origin		with a time zone only: the origin, ISO wall-clock time
 *	 where				the query's WHERE clause as deparsed, or null
 *	 outputs			[{name, kind, sql, type}] in select-list order: kind is
 *						"key" or the aggregate (count, sum, min, max, avg,
 *						bool_and, bool_or, or the sketches hll and tdigest);
 *						sql the key expression or aggregate call; type the
 *						column's type as the view shows it
 *	 table_columns		[{name, type}] of the version's table, in order
 *	 conflict_columns	the table's key: window_start and the group keys
 * _compare reads outputs (name, kind) to match two versions' columns.
 *
 * The per-batch upsert reads the batch from the worker's memory through
 * streamview_internal._batch_rows (batch.c): one row per event and window,
 * with the source's columns and the window's bounds in sv_window_start and
 * sv_window_end (window.c computes both: a window's length is not always
 * its size, as with months or a change of clocks):
 *	 INSERT INTO <table> AS t (window_start, window_end, <outputs>)
 *	 SELECT sv_window_start, sv_window_end, <outputs' SQL>
 *	 FROM streamview_internal._batch_rows(<version_id>) AS b(<source columns>,
 *		  sv_window_start timestamptz, sv_window_end timestamptz)
 *	 [WHERE ...] GROUP BY 1, 2, <keys>
 *	 ON CONFLICT (window_start, <keys>) DO UPDATE SET <merge of each aggregate>
 * so a batch is pre-aggregated by the executor and each (window, keys) it
 * touches is upserted once.  avg is kept as a sum and a count (column
 * <name>__count).  The sketches (hll, tdigest) keep the extension's state,
 * merged with its union function, named with the extension's schema.  Versions made by 0.1 read a temporary table,
 * pg_temp.sv_batch_<version_id>, instead; the update to 0.2 rewrites their
 * statement (_batch_sql_0_2, below).
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/ruleutils.h"

/*
 * A version's table keeps this much of each page for its rows, the rest for
 * their next versions: every batch updates the rows it touches, and with
 * room on the page the update is HOT, which adds no index entry.  On many
 * groups, index insertions were a sixth of a worker's time
 * (docs/architecture.md).
 */
#define SV_TABLE_FILLFACTOR 70

static void
sv_json_kv(StringInfo buf, const char *key, const char *value, bool comma)
{
	if (comma)
		appendStringInfoChar(buf, ',');
	escape_json(buf, key);
	appendStringInfoChar(buf, ':');
	if (value)
		escape_json(buf, value);
	else
		appendStringInfoString(buf, "null");
}

/* How an aggregate's column takes in a batch's partial value. */
static char *
sv_merge_sql(const SvOutput *o, const char *col)
{
	const char *q = quote_identifier(col);

	switch (o->agg)
	{
		case SV_AGG_COUNT:
			return psprintf("%s = t.%s + excluded.%s", q, q, q);
		case SV_AGG_SUM:
		case SV_AGG_AVG:
			return psprintf("%s = coalesce(t.%s + excluded.%s, t.%s, excluded.%s)", q, q, q, q, q);
		case SV_AGG_MIN:
			return psprintf("%s = least(t.%s, excluded.%s)", q, q, q);
		case SV_AGG_MAX:
			return psprintf("%s = greatest(t.%s, excluded.%s)", q, q, q);
		case SV_AGG_BOOL_AND:
			return psprintf("%s = coalesce(t.%s AND excluded.%s, t.%s, excluded.%s)", q, q, q, q, q);
		case SV_AGG_BOOL_OR:
			return psprintf("%s = coalesce(t.%s OR excluded.%s, t.%s, excluded.%s)", q, q, q, q, q);
		case SV_AGG_HLL:
		case SV_AGG_TDIGEST:
			/* the extension's union of two states (compile.c); a FILTER may leave either NULL */
			return psprintf("%s = coalesce(%s(t.%s, excluded.%s), t.%s, excluded.%s)",
							q, o->merge_fn_sql, q, q, q, q);
	}
	return NULL;
}

static char *
sv_count_col(const SvOutput *o)
{
	return psprintf("%s__count", o->name);
}

/*
 * The per-batch upsert (see the file header): one statement that
 * pre-aggregates the batch (from: the FROM item that reads it) and
 * merges it into the version's table.
 */
static char *
sv_batch_sql(const SvCompiled *c, const char *table, const char *from)
{
	StringInfoData cols,
				sel,
				grp,
				ord,
				conflict,
				merge;
	ListCell   *lc;
	int			pos = 2;

	initStringInfo(&cols);
	initStringInfo(&sel);
	initStringInfo(&grp);
	initStringInfo(&ord);
	initStringInfo(&conflict);
	initStringInfo(&merge);
	appendStringInfoString(&cols, "window_start, window_end");
	appendStringInfoString(&sel, "sv_window_start, sv_window_end");
	appendStringInfoString(&grp, "1, 2");
	appendStringInfoString(&ord, "1");
	appendStringInfoString(&conflict, "window_start");
	foreach(lc, c->outputs)
	{
		SvOutput   *o = lfirst(lc);

		appendStringInfo(&cols, ", %s", quote_identifier(o->name));
		appendStringInfo(&sel, ", %s", o->expr_sql);
		pos++;
		if (o->is_key)
		{
			appendStringInfo(&grp, ", %d", pos);
			appendStringInfo(&ord, ", %d", pos);
			appendStringInfo(&conflict, ", %s", quote_identifier(o->name));
			continue;
		}
		appendStringInfo(&merge, "%s%s", merge.len ? ", " : "", sv_merge_sql(o, o->name));
		if (o->agg == SV_AGG_AVG)
		{
			char	   *cc = sv_count_col(o);
			SvOutput	counter = {.agg = SV_AGG_COUNT};

			appendStringInfo(&cols, ", %s", quote_identifier(cc));
			appendStringInfo(&sel, ", %s", o->count_sql);
			pos++;
			appendStringInfo(&merge, ", %s", sv_merge_sql(&counter, cc));
		}
	}
	/*
	 * ORDER BY the conflict key: rows are inserted, and their rows locked, in
	 * that order, so that two of a source's workers upserting the same
	 * windows and keys wait for each other rather than deadlock.
	 */
	return psprintf("INSERT INTO %s AS t (%s) SELECT %s FROM %s%s%s GROUP BY %s "
					"ORDER BY %s ON CONFLICT (%s) DO %s%s",
					table, cols.data, sel.data, from,
					c->where_sql ? " WHERE " : "", c->where_sql ? c->where_sql : "",
					grp.data, ord.data, conflict.data, merge.len ? "UPDATE SET " : "NOTHING", merge.data);
}

/*
 * The SELECT the stream view is defined as while this version is live:
 * its rows, avg computed from its sum and count, and is_final from the
 * version's watermark.
 */
static char *
sv_view_sql(const SvCompiled *c, const char *table, int32 version_id, const char *lateness)
{
	StringInfoData sel;
	ListCell   *lc;

	initStringInfo(&sel);
	appendStringInfoString(&sel, "SELECT t.window_start, t.window_end");
	foreach(lc, c->outputs)
	{
		SvOutput   *o = lfirst(lc);
		const char *q = quote_identifier(o->name);

		if (o->agg == SV_AGG_AVG && !o->is_key)
		{
			const char *cc = quote_identifier(sv_count_col(o));

			if (o->avg_type == INTERVALOID)
				appendStringInfo(&sel, ", CASE WHEN t.%s > 0 THEN t.%s / t.%s::float8 END AS %s",
								 cc, q, cc, q);
			else
				appendStringInfo(&sel, ", CASE WHEN t.%s > 0 THEN t.%s::%s / t.%s::%s END AS %s",
								 cc, q, o->avg_type_sql, cc, o->avg_type_sql, q);
		}
		else
			appendStringInfo(&sel, ", t.%s", q);
	}
	appendStringInfo(&sel,
					 ", coalesce(t.window_end + %s::interval <= "
					 "(SELECT v.watermark FROM streamview.versions v WHERE v.version_id = %d), false)"
					 " AS is_final FROM %s t",
					 quote_literal_cstr(lateness), version_id, table);
	return sel.data;
}

/* The table's column list, "name type, ...", for CREATE TABLE. */
static char *
sv_table_columns(const SvCompiled *c)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "window_start timestamptz NOT NULL, window_end timestamptz NOT NULL");
	foreach(lc, c->outputs)
	{
		SvOutput   *o = lfirst(lc);

		appendStringInfo(&buf, ", %s %s%s", quote_identifier(o->name), o->type_sql,
						 (o->is_key || o->agg != SV_AGG_COUNT) ? "" : " NOT NULL");
		if (o->agg == SV_AGG_AVG && !o->is_key)
			appendStringInfo(&buf, ", %s bigint NOT NULL", quote_identifier(sv_count_col(o)));
	}
	return buf.data;
}

/* The table's key, "window_start, key, ...". */
static char *
sv_key_columns(const SvCompiled *c)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "window_start");
	foreach(lc, c->outputs)
		if (((SvOutput *) lfirst(lc))->is_key)
			appendStringInfo(&buf, ", %s", quote_identifier(((SvOutput *) lfirst(lc))->name));
	return buf.data;
}

/* The definition stored with the version (see the file header). */
static Datum
sv_definition(const SvCompiled *c)
{
	StringInfoData buf;
	ListCell   *lc;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	sv_json_kv(&buf, "window_kind", c->window.kind == SV_WINDOW_TUMBLE ? "tumble" : "hop", false);
	sv_json_kv(&buf, "window_size", c->window_size_text, true);
	sv_json_kv(&buf, "window_slide", c->window_slide_text, true);
	/* only with a time zone: a definition without one reads as in 0.1 */
	if (c->window_time_zone != NULL)
	{
		sv_json_kv(&buf, "window_time_zone", c->window_time_zone, true);
		sv_json_kv(&buf, "window_origin", c->window_origin_text, true);
	}
	sv_json_kv(&buf, "where", c->where_sql, true);
	appendStringInfoString(&buf, ",\"outputs\":[");
	foreach(lc, c->outputs)
	{
		SvOutput   *o = lfirst(lc);

		appendStringInfoString(&buf, first ? "{" : ",{");
		sv_json_kv(&buf, "name", o->name, false);
		sv_json_kv(&buf, "kind", o->is_key ? "key" : streamview_agg_name(o->agg), true);
		sv_json_kv(&buf, "sql", o->expr_sql, true);
		sv_json_kv(&buf, "type", o->avg_type_sql ? o->avg_type_sql : o->type_sql, true);
		appendStringInfoChar(&buf, '}');
		first = false;
	}
	appendStringInfoString(&buf, "],\"table_columns\":[{\"name\":\"window_start\",\"type\":\"timestamptz NOT NULL\"},"
						   "{\"name\":\"window_end\",\"type\":\"timestamptz NOT NULL\"}");
	foreach(lc, c->outputs)
	{
		SvOutput   *o = lfirst(lc);

		appendStringInfoString(&buf, ",{");
		sv_json_kv(&buf, "name", o->name, false);
		sv_json_kv(&buf, "type", psprintf("%s%s", o->type_sql,
										  (o->is_key || o->agg != SV_AGG_COUNT) ? "" : " NOT NULL"), true);
		appendStringInfoChar(&buf, '}');
		if (o->agg == SV_AGG_AVG && !o->is_key)
		{
			appendStringInfoString(&buf, ",{");
			sv_json_kv(&buf, "name", sv_count_col(o), false);
			sv_json_kv(&buf, "type", "bigint NOT NULL", true);
			appendStringInfoChar(&buf, '}');
		}
	}
	appendStringInfoString(&buf, "],\"conflict_columns\":[\"window_start\"");
	foreach(lc, c->outputs)
	{
		SvOutput   *o = lfirst(lc);

		if (o->is_key)
		{
			appendStringInfoChar(&buf, ',');
			escape_json(&buf, o->name);
		}
	}
	appendStringInfoString(&buf, "]}");
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

PG_FUNCTION_INFO_V1(streamview_version_sql);
PGDLLEXPORT Datum streamview_version_sql(PG_FUNCTION_ARGS);

/*
 * streamview_internal._version_sql(caller regrole, caller_path text, source text,
 * query text, table_name text, version_id int, lateness interval)
 * → (definition jsonb, create_table text, create_index text, batch_sql text,
 *    view_sql text).  table_name is already quoted (schema.table).
 */
Datum
streamview_version_sql(PG_FUNCTION_ARGS)
{
	Oid			caller = PG_GETARG_OID(0);
	char	   *caller_path = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *source = text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(3));
	char	   *table = text_to_cstring(PG_GETARG_TEXT_PP(4));
	int32		version_id = PG_GETARG_INT32(5);
	char	   *lateness = DatumGetCString(DirectFunctionCall1(interval_out, PG_GETARG_DATUM(6)));
	SvCompiled *c;
	TupleDesc	desc;
	Datum		values[5];
	bool		nulls[5] = {false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "streamview_internal._version_sql must return a record");
	c = streamview_compile_view(caller, caller_path, source, query);
	values[0] = sv_definition(c);
	values[1] = CStringGetTextDatum(psprintf("CREATE TABLE %s (%s) WITH (fillfactor = " CppAsString2(SV_TABLE_FILLFACTOR) ")", table, sv_table_columns(c)));
	values[2] = CStringGetTextDatum(psprintf("CREATE UNIQUE INDEX ON %s (%s) NULLS NOT DISTINCT",
											 table, sv_key_columns(c)));
	values[3] = CStringGetTextDatum(sv_batch_sql(c, table, streamview_batch_rows_from(source, version_id)));
	values[4] = CStringGetTextDatum(sv_view_sql(c, table, version_id, lateness));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

PG_FUNCTION_INFO_V1(streamview_batch_sql_0_2);
PGDLLEXPORT Datum streamview_batch_sql_0_2(PG_FUNCTION_ARGS);

/*
 * streamview_internal._batch_sql_0_2(version_id int) RETURNS text: the
 * version's batch_sql as 0.2 runs it, for the update from 0.1.  A statement
 * made by 0.1 reads the worker's temporary table pg_temp.sv_batch_<id>;
 * that one FROM item, found where the parser says it is (never by searching
 * the text, which holds the user's expressions), becomes the call of
 * _batch_rows, and nothing else changes.  Any other statement is returned
 * as it is.  NULL for an unknown version.
 */
Datum
streamview_batch_sql_0_2(PG_FUNCTION_ARGS)
{
	int32		version_id = PG_GETARG_INT32(0);
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(version_id)};
	MemoryContext cxt = CurrentMemoryContext;
	char	   *sql;
	char	   *source;
	char	   *old_from = psprintf("pg_temp." SV_BATCH_TABLE_0_1, version_id);
	RawStmt    *raw;
	SelectStmt *select;
	RangeVar   *rv;
	List	   *stmts;

	SPI_connect();
	SPI_execute_with_args("SELECT ver.batch_sql, s.name FROM streamview.versions ver "
						  "JOIN streamview.views v USING (view_id) JOIN streamview.sources s USING (source_id) "
						  "WHERE ver.version_id = $1",
						  1, argtypes, args, NULL, true, 1);
	if (SPI_processed == 0)
	{
		SPI_finish();
		PG_RETURN_NULL();
	}
	sql = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	source = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
	SPI_finish();

	stmts = raw_parser(sql, RAW_PARSE_DEFAULT);
	if (list_length(stmts) != 1 ||
		!IsA((raw = linitial_node(RawStmt, stmts))->stmt, InsertStmt) ||
		(select = (SelectStmt *) castNode(InsertStmt, raw->stmt)->selectStmt) == NULL ||
		!IsA(select, SelectStmt) || list_length(select->fromClause) != 1 ||
		!IsA(linitial(select->fromClause), RangeVar))
		PG_RETURN_TEXT_P(cstring_to_text(sql));
	rv = linitial_node(RangeVar, select->fromClause);
	if (rv->schemaname == NULL || strcmp(rv->schemaname, "pg_temp") != 0 ||
		strcmp(rv->relname, old_from + strlen("pg_temp.")) != 0 ||
		rv->location < 0 || strncmp(sql + rv->location, old_from, strlen(old_from)) != 0)
		PG_RETURN_TEXT_P(cstring_to_text(sql));
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("%.*s%s%s", rv->location, sql,
											  streamview_batch_rows_from(source, version_id),
											  sql + rv->location + strlen(old_from))));
}

/*
 * Pre-aggregating across rounds (batch.c).  A batch that spans several
 * rounds of messages aggregates each round with the SELECT part of the
 * version's batch_sql (the partial statement) and keeps the partial rows;
 * at the batch's end the merge statement groups them again, combining each
 * aggregate with the SQL aggregate that merges its partial values (count
 * and sum by sum, min by min, max by max, bool_and and bool_or by
 * themselves: the same merges the upsert's DO UPDATE makes), and upserts
 * them with batch_sql's own INSERT, ORDER BY and ON CONFLICT clauses.  So
 * each (window, keys) is upserted once per batch, however many rounds it
 * took.
 *
 * Both are cut from batch_sql where the parser says its parts are (never by
 * searching the user's expressions): the select list starts at its first
 * target, ON CONFLICT at its clause; ORDER BY, which sv_batch_sql writes
 * last before ON CONFLICT with column numbers only, is the last " ORDER BY "
 * before it.  A statement of another form (a version made by 0.1, which
 * has no ORDER BY) returns NULL: that version upserts every round.
 *
 * The merge keeps the ORDER BY only when it is needed (ordered): it is
 * there so that two workers of a source lock rows in one order; a source
 * with one worker has no one to wait for, and sorting a batch's rows was a
 * tenth of a worker's time on many groups (docs/architecture.md).
 */
static bool
sv_batch_sql_parts(const char *sql, int *select_at, int *order_at, int *conflict_at)
{
	List	   *stmts = raw_parser(sql, RAW_PARSE_DEFAULT);
	RawStmt    *raw;
	InsertStmt *ins;
	SelectStmt *select;
	const char *p;

	if (list_length(stmts) != 1 ||
		!IsA((raw = linitial_node(RawStmt, stmts))->stmt, InsertStmt))
		return false;
	ins = (InsertStmt *) raw->stmt;
	select = (SelectStmt *) ins->selectStmt;
	if (select == NULL || !IsA(select, SelectStmt) || select->targetList == NIL ||
		select->groupClause == NIL || select->sortClause == NIL ||
		ins->onConflictClause == NULL || ins->onConflictClause->location < 0 ||
		linitial_node(ResTarget, select->targetList)->location < 0)
		return false;
	*select_at = linitial_node(ResTarget, select->targetList)->location;
	*conflict_at = ins->onConflictClause->location;
	*order_at = -1;
	for (p = sql + *select_at; (p = strstr(p, " ORDER BY ")) != NULL && p < sql + *conflict_at; p++)
		*order_at = p - sql;
	return *order_at > *select_at &&
		strncmp(sql + *select_at - strlen("SELECT "), "SELECT ", strlen("SELECT ")) == 0;
}

/* The partial statement of a batch_sql, or NULL (see above). */
char *
streamview_partial_sql(const char *batch_sql)
{
	int			select_at,
				order_at,
				conflict_at;

	if (!sv_batch_sql_parts(batch_sql, &select_at, &order_at, &conflict_at))
		return NULL;
	return psprintf("SELECT %.*s", order_at - select_at, batch_sql + select_at);
}

/*
 * The merge statement of a batch_sql whose partial statement returns rows
 * of partial_desc, for outputs of those kinds (definition's outputs, in
 * order, comma-separated), or NULL if they do not match.
 */
char *
streamview_merge_sql(const char *batch_sql, int32 version_id, const char *kinds,
					 TupleDesc partial_desc, bool ordered)
{
	int			select_at,
				order_at,
				conflict_at;
	StringInfoData sel,
				cols,
				grp;
	int			c = 2;			/* after window_start and window_end */
	char	   *list = pstrdup(kinds);
	char	   *kind;
	char	   *save;

	if (!sv_batch_sql_parts(batch_sql, &select_at, &order_at, &conflict_at))
		return NULL;
	initStringInfo(&sel);
	initStringInfo(&cols);
	initStringInfo(&grp);
	appendStringInfoString(&sel, "p.c1, p.c2");
	appendStringInfoString(&grp, "1, 2");
	for (kind = strtok_r(list, ",", &save); kind != NULL; kind = strtok_r(NULL, ",", &save))
	{
		if (c >= partial_desc->natts)
			return NULL;
		c++;
		if (strcmp(kind, "key") == 0)
		{
			appendStringInfo(&sel, ", p.c%d", c);
			appendStringInfo(&grp, ", %d", c);
		}
		else if (strcmp(kind, "count") == 0)
			appendStringInfo(&sel, ", sum(p.c%d)::bigint", c);
		else if (strcmp(kind, "sum") == 0 || strcmp(kind, "avg") == 0)
		{
			Form_pg_attribute a = TupleDescAttr(partial_desc, c - 1);

			appendStringInfo(&sel, ", sum(p.c%d)::%s", c,
							 format_type_with_typemod(a->atttypid, a->atttypmod));
			if (strcmp(kind, "avg") == 0)
			{
				if (c >= partial_desc->natts)
					return NULL;
				c++;
				appendStringInfo(&sel, ", sum(p.c%d)::bigint", c);
			}
		}
		else if (strcmp(kind, "min") == 0 || strcmp(kind, "max") == 0 ||
				 strcmp(kind, "bool_and") == 0 || strcmp(kind, "bool_or") == 0)
			appendStringInfo(&sel, ", %s(p.c%d)", kind, c);
		else
			return NULL;
	}
	if (c != partial_desc->natts)
		return NULL;
	for (int i = 0; i < partial_desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(partial_desc, i);

		appendStringInfo(&cols, "%sc%d %s", i ? ", " : "", i + 1,
						 format_type_with_typemod(a->atttypid, a->atttypmod));
		if (OidIsValid(a->attcollation) && a->attcollation != get_typcollation(a->atttypid))
			appendStringInfo(&cols, " COLLATE %s", generate_collation_name(a->attcollation));
	}
	return psprintf("%.*s%s FROM " STREAMVIEW_INTERNAL_SCHEMA "._batch_partials(%d) AS p(%s) GROUP BY %s %s",
					select_at, batch_sql, sel.data, version_id, cols.data, grp.data,
					batch_sql + (ordered ? order_at + 1 : conflict_at));
}
