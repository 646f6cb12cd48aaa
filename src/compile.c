/*-------------------------------------------------------------------------
 *
 * compile.c
 *	  Turns a stream view's SELECT into the SQL that maintains it.
 *
 * The user writes an ordinary grouped SELECT over the source's name:
 *
 *	 SELECT streamview.tumble(ts, '1 minute') AS window_start, user_id,
 *			count(*) AS n, sum(amount) AS revenue
 *	 FROM purchases WHERE amount > 0 GROUP BY 1, 2
 *
 * We parse-analyse it against a stand-in temporary table that has the
 * source's columns (so PostgreSQL itself resolves names, types, operators
 * and functions, with the caller's search_path and privileges), check that
 * every output is the window, a group key or an aggregate that can be
 * merged incrementally, and then deparse the parts again with only
 * pg_catalog on the search_path, so that the generated SQL means the same
 * thing in a worker whatever its own search_path.
 *
 * The result is an SvCompiled: the window, the WHERE clause, and per output
 * column whether it is a group key or which mergeable aggregate, with its
 * SQL as deparsed.  codegen.c turns it into the statements a version needs.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_aggregate.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parse_func.h"
#include "parser/parser.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"

static const char *const sv_agg_names[] = {
	"count", "sum", "min", "max", "avg", "bool_and", "bool_or", "hll", "tdigest"
};

/*
 * The approximate aggregates: states of the hll and tdigest extensions,
 * kept in the version's table and merged batch by batch with the
 * extension's own union of two states, as count is merged with +.  They
 * are found by the extension that owns them (pg_depend), so that they are
 * recognised in whatever schema the extension was created, and the merge
 * function is looked up in that same schema; the compiled SQL names both
 * with their schema.
 */
typedef struct SvSketch
{
	SvAggKind	kind;
	const char *extension;		/* its name in pg_extension */
	const char *package;		/* the Debian package that installs it */
	const char *type;			/* the state's type, in the extension's schema */
	const char *merge_fn;		/* the union of two states: merge_fn(type, type[, bool]) */
	int			merge_nargs;
	const char *use;			/* the aggregate to write, for hints */
	const char *read;			/* how to read the state, for hints */
} SvSketch;

static const SvSketch sv_sketches[] = {
	{SV_AGG_HLL, "hll", "postgresql-15-hll", "hll", "hll_union", 2,
	"hll_add_agg(hll_hash_text(x))", "hll_cardinality(column)"},
	{SV_AGG_TDIGEST, "tdigest", "postgresql-15-tdigest", "tdigest", "tdigest_union", 3,
	"tdigest(x, 100)", "tdigest_percentile(column, 0.99)"},
};

/* An aggregate kind as SQL (and the compiled definition) names it. */
const char *
streamview_agg_name(SvAggKind kind)
{
	return sv_agg_names[kind];
}

/* ---------- small helpers ---------- */

/*
 * The source named in the query's FROM clause.  Raw parse only, so that the
 * caller can find the source before anything is analysed.
 */
static char *
sv_raw_source_name(const char *query)
{
	List	   *stmts = raw_parser(query, RAW_PARSE_DEFAULT);
	RawStmt    *raw;
	SelectStmt *select;
	Node	   *from;

	if (list_length(stmts) != 1 ||
		!IsA((raw = linitial_node(RawStmt, stmts))->stmt, SelectStmt))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a stream view query must be a single SELECT"),
				 errhint("Write SELECT streamview.tumble(ts, '1 minute') AS window_start, ..., count(*) FROM source GROUP BY 1, ....")));
	select = (SelectStmt *) raw->stmt;
	if (select->op != SETOP_NONE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a stream view query cannot use UNION, INTERSECT or EXCEPT"),
				 errhint("Create one stream view per query.")));
	if (list_length(select->fromClause) != 1 ||
		!IsA((from = linitial(select->fromClause)), RangeVar))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a stream view query must read exactly one source"),
				 errdetail("Joins, subqueries and functions in FROM are not supported."),
				 errhint("Write FROM <source name>, with the name given to streamview.create_source().")));
	if (((RangeVar *) from)->schemaname != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("source name \"%s.%s\" must not be schema-qualified",
						((RangeVar *) from)->schemaname, ((RangeVar *) from)->relname),
				 errhint("Sources are not tables; name them as given to streamview.create_source().")));
	return ((RangeVar *) from)->relname;
}

PG_FUNCTION_INFO_V1(streamview_query_source);
PGDLLEXPORT Datum streamview_query_source(PG_FUNCTION_ARGS);

Datum
streamview_query_source(PG_FUNCTION_ARGS)
{
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *name = sv_raw_source_name(query);
	bool		isnull;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];

	args[0] = CStringGetTextDatum(name);
	SPI_connect();
	SPI_execute_with_args("SELECT 1 FROM streamview.sources WHERE name = $1",
						  1, argtypes, args, NULL, true, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("source \"%s\" does not exist", name),
				 errhint("Create it with streamview.create_source(), or check the FROM clause.")));
	(void) isnull;
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(name));
}

/*
 * Creates pg_temp.<source> with the source's columns, for parse analysis.
 * Returns its OID and the event time column's attribute number.
 */
static Oid
sv_create_stand_in(const char *source, AttrNumber *event_time_attno)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	StringInfoData sql;
	char	   *event_time;
	Oid			relid;

	args[0] = CStringGetTextDatum(source);
	SPI_execute_with_args("SELECT c.name, format_type(c.type, NULL), s.event_time "
						  "FROM streamview.sources s JOIN streamview.source_columns c USING (source_id) "
						  "WHERE s.name = $1 ORDER BY c.attnum",
						  1, argtypes, args, NULL, true, 0);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("source \"%s\" does not exist", source)));

	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE TEMP TABLE %s (", quote_identifier(source));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		appendStringInfo(&sql, "%s%s %s", i ? ", " : "",
						 quote_identifier(SPI_getvalue(tup, desc, 1)),
						 SPI_getvalue(tup, desc, 2));
	}
	appendStringInfoString(&sql, ") ON COMMIT DROP");
	event_time = pstrdup(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3));

	if (OidIsValid(get_relname_relid(source, LookupCreationNamespace("pg_temp"))))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("a temporary table named \"%s\" hides the source", source),
				 errhint("Drop or rename the temporary table in this session, then try again.")));
	SPI_execute(sql.data, false, 0);
	relid = get_relname_relid(source, LookupCreationNamespace("pg_temp"));
	*event_time_attno = get_attnum(relid, event_time);
	return relid;
}

/* ---------- validation ---------- */

/*
 * streamview.tumble or streamview.hop, without a time zone or with one:
 * tumble(ts, size[, time_zone, origin]), hop(ts, size, slide[, time_zone,
 * origin]).
 */
static Oid
sv_window_func_oid(SvWindowKind kind, bool zoned)
{
	Oid			argtypes[5] = {TIMESTAMPTZOID, INTERVALOID};
	int			nargs = 2;

	if (kind == SV_WINDOW_HOP)
		argtypes[nargs++] = INTERVALOID;
	if (zoned)
	{
		argtypes[nargs++] = TEXTOID;
		argtypes[nargs++] = TIMESTAMPOID;
	}
	return LookupFuncName(list_make2(makeString(STREAMVIEW_SCHEMA),
									 makeString(kind == SV_WINDOW_HOP ? "hop" : "tumble")),
						  nargs, argtypes, false);
}

/*
 * A window argument that must be a literal: the Const under any binary
 * coercion, or NULL when it is something else.  Never evaluated: this runs
 * as the extension owner, and a function call here would run with its
 * rights.
 */
static Const *
sv_literal(Node *arg, Oid type)
{
	while (IsA(arg, RelabelType))
		arg = (Node *) ((RelabelType *) arg)->arg;
	if (!IsA(arg, Const) || ((Const *) arg)->constisnull ||
		(((Const *) arg)->consttype != type && type != TEXTOID))
		return NULL;
	return (Const *) arg;
}

/*
 * A window's size or slide: a literal interval, positive and at most a
 * year.  Without a time zone, a fixed length; with one, a length of
 * wall-clock time or a number of months (window.c).
 */
static Interval *
sv_const_interval(Node *arg, const char *what, bool zoned, char **text)
{
	Const	   *c = sv_literal(arg, INTERVALOID);
	Interval   *iv;
	int32		months = 0;
	int64		us;

	if (c == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a constant interval", what),
				 errhint("Write a literal such as '1 minute'.")));
	iv = DatumGetIntervalP(c->constvalue);
	*text = DatumGetCString(DirectFunctionCall1(interval_out, c->constvalue));
	if (zoned)
		streamview_window_length(iv, what, &months, &us);
	else
	{
		us = streamview_interval_usecs(iv, what);
		if (us <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must be positive", what),
					 errhint("Write a positive interval such as '1 minute'.")));
	}
	if (us > SV_MAX_WINDOW_US)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be at most 366 days", what),
				 errdetail("The value given was %s.", *text),
				 errhint("For longer periods, aggregate the windows of a stream view in a view over it.")));
	if (months > MONTHS_PER_YEAR)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be at most 12 months", what),
				 errdetail("The value given was %s.", *text),
				 errhint("For longer periods, aggregate the windows of a stream view in a view over it.")));
	return iv;
}

/* A window's time zone: a literal name, looked up now (window.c). */
static pg_tz *
sv_const_time_zone(Node *arg, char **name)
{
	Const	   *c = sv_literal(arg, TEXTOID);
	pg_tz	   *tz;

	if (c == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("window time zone must be a constant"),
				 errdetail("The time zone is part of the view's definition: every event's windows are laid out in the same one."),
				 errhint("Write a literal such as 'Europe/Paris'.")));
	tz = streamview_time_zone(TextDatumGetCString(c->constvalue));
	*name = pstrdup(pg_get_timezone_name(tz));
	return tz;
}

/* A window's origin: a literal timestamp (without time zone). */
static Timestamp
sv_const_origin(Node *arg)
{
	Const	   *c = sv_literal(arg, TIMESTAMPOID);

	if (c == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("window origin must be a constant timestamp"),
				 errdetail("The origin is part of the view's definition: a wall-clock time in the window's time zone at which a window starts."),
				 errhint("Write a literal such as '1970-01-01 06:00', or leave the origin out.")));
	return DatumGetTimestamp(c->constvalue);
}

/* A wall-clock time as ISO text, whatever the session's DateStyle. */
static char *
sv_iso_timestamp(Timestamp t)
{
	struct pg_tm tm;
	fsec_t		fsec;
	char		buf[MAXDATELEN + 1];

	if (timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	EncodeDateTime(&tm, fsec, false, 0, NULL, USE_ISO_DATES, buf);
	return pstrdup(buf);
}

/*
 * The window function's arguments in declared order, defaults filled in
 * (parse analysis keeps them as written: named, and without defaults).
 */
static List *
sv_window_args(FuncExpr *f)
{
	HeapTuple	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(f->funcid));
	List	   *args;

	if (!HeapTupleIsValid(proc))
		elog(ERROR, "cache lookup failed for function %u", f->funcid);
	args = expand_function_arguments(f->args, false, f->funcresulttype, proc);
	ReleaseSysCache(proc);
	return args;
}

/*
 * Is expr the window marker, streamview.tumble(ts, size[, time_zone[,
 * origin]]) or streamview.hop(ts, size, slide[, time_zone[, origin]])?  If
 * so, record it in c, after checking that it is computed from the event
 * time column with literal arguments (never evaluated: the compiler runs
 * as the extension's owner) of a sane size.
 */
static bool
sv_check_window(Node *expr, AttrNumber event_time_attno, const char *event_time,
				SvCompiled *c)
{
	FuncExpr   *f;
	List	   *args;
	Node	   *ts;
	SvWindowKind kind;
	bool		zoned;
	Interval   *size;
	Interval   *slide;
	pg_tz	   *tz = NULL;
	Timestamp	origin = 0;
	int64		windows;
	int			form;

	if (!IsA(expr, FuncExpr))
		return false;
	f = (FuncExpr *) expr;
	for (form = 0; form < 4; form++)
	{
		kind = form < 2 ? SV_WINDOW_TUMBLE : SV_WINDOW_HOP;
		zoned = form % 2 == 1;
		if (f->funcid == sv_window_func_oid(kind, zoned))
			break;
	}
	if (form == 4)
		return false;
	args = sv_window_args(f);

	ts = linitial(args);
	if (!IsA(ts, Var) || ((Var *) ts)->varattno != event_time_attno)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the window must be computed from the event time column \"%s\"", event_time),
				 errdetail("Watermarks, lateness and is_final are defined on event time."),
				 errhint("Write streamview.tumble(%s, '1 minute').", event_time)));
	size = sv_const_interval(lsecond(args), "window size", zoned, &c->window_size_text);
	slide = size;
	c->window_slide_text = c->window_size_text;
	if (kind == SV_WINDOW_HOP)
		slide = sv_const_interval(lthird(args), "window slide", zoned, &c->window_slide_text);
	if (zoned)
	{
		tz = sv_const_time_zone(list_nth(args, list_length(args) - 2), &c->window_time_zone);
		origin = sv_const_origin(llast(args));
	}
	streamview_window_init(&c->window, kind, size, slide, tz, origin);
	if (zoned)
		c->window_origin_text = sv_iso_timestamp(origin);

	windows = c->window.size_months != 0 ? c->window.size_months / c->window.slide_months
		: c->window.size_us / c->window.slide_us;
	if (windows >= SV_MAX_WINDOWS_PER_EVENT)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a hopping window may cover at most %d slides", SV_MAX_WINDOWS_PER_EVENT - 1),
				 errhint("Use a larger slide.")));
	return true;
}

/*
 * Functions whose result depends on when or where the query runs rather
 * than on the log: the clock, the session, settings, the catalog.  (STABLE
 * functions that depend only on TimeZone or DateStyle are fine: workers pin
 * those.)  A user's own function must be IMMUTABLE.
 */
static const char *const sv_session_functions[] = {
	"now", "transaction_timestamp", "statement_timestamp", "current_setting",
	"current_database", "current_schema", "current_schemas", "current_query",
	"pg_backend_pid", "inet_client_addr", "inet_client_port", "inet_server_addr",
	"inet_server_port", "pg_postmaster_start_time", "pg_conf_load_time", "version",
	"has_table_privilege", "has_column_privilege", "has_schema_privilege",
	"has_function_privilege", "pg_has_role", "to_regclass", "to_regtype", "to_regproc",
};

static bool
sv_session_function(Oid funcid, void *context)
{
	char	   *name;

	if (func_volatile(funcid) == PROVOLATILE_IMMUTABLE)
		return false;
	if (get_func_namespace(funcid) != PG_CATALOG_NAMESPACE)
		return true;
	name = get_func_name(funcid);
	for (int i = 0; i < lengthof(sv_session_functions); i++)
		if (strcmp(name, sv_session_functions[i]) == 0)
			return true;
	return false;
}

static bool
sv_reads_session_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, SQLValueFunction) || IsA(node, Param))
		return true;
	if (check_functions_in_node(node, sv_session_function, context))
		return true;
	return expression_tree_walker(node, sv_reads_session_walker, context);
}

/*
 * What a stream view query may not be: anything but one SELECT over the
 * source, with subqueries, window functions, DISTINCT, HAVING, ORDER BY,
 * LIMIT, set-returning functions or grouping sets.  Each gets its own error
 * and hint.
 */
static void
sv_check_query_shape(Query *q, Oid stand_in)
{
	RangeTblEntry *rte;

	if (q->commandType != CMD_SELECT || q->utilityStmt != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a stream view query must be a single SELECT")));
	if (list_length(q->rtable) != 1 ||
		(rte = linitial_node(RangeTblEntry, q->rtable))->rtekind != RTE_RELATION ||
		rte->relid != stand_in)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a stream view query must read exactly one source"),
				 errdetail("Joins, subqueries and functions in FROM are not supported.")));
	if (q->cteList || q->hasSubLinks)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("subqueries are not supported in a stream view query")));
	if (q->hasWindowFuncs)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("window functions (OVER) are not supported in a stream view query"),
				 errhint("Event-time windows are written streamview.tumble() or streamview.hop() in GROUP BY.")));
	if (q->hasTargetSRFs)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-returning functions are not supported in a stream view query")));
	if (q->distinctClause || q->sortClause || q->limitCount || q->limitOffset)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("DISTINCT, ORDER BY, LIMIT and OFFSET are not supported in a stream view query"),
				 errhint("Apply them when reading the view.")));
	if (q->havingQual)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("HAVING is not supported in a stream view query"),
				 errdetail("A group that fails HAVING now may pass it after later events."),
				 errhint("Filter on the aggregate when reading the view.")));
	if (q->groupingSets)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("GROUPING SETS, ROLLUP and CUBE are not supported in a stream view query")));
	if (contain_volatile_functions((Node *) q->targetList) ||
		contain_volatile_functions(q->jointree->quals))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a stream view query must not call volatile functions"),
				 errdetail("A view is a deterministic function of the log; a rebuild must compute the same rows."),
				 errhint("Remove calls such as random(), clock_timestamp() or nextval().")));
}

/*
 * The hint for an aggregate that a sketch replaces: which one to write, how
 * to read it, and, where its extension is not installed in this database,
 * how to install it.
 */
static char *
sv_sketch_hint(const SvSketch *sk, const char *use, const char *read)
{
	if (OidIsValid(get_extension_oid(sk->extension, true)))
		return psprintf("Use %s, and read the state with %s.", use, read);
	return psprintf("Use %s from the %s extension, and read the state with %s. "
					"Install it first: the Debian package %s, then CREATE EXTENSION %s;",
					use, sk->extension, read, sk->package, sk->extension);
}

/* The hll hash function for a value of type typid, as a hint writes it. */
static const char *
sv_hll_hash_for(Oid typid)
{
	switch (typid)
	{
		case BOOLOID:
			return "hll_hash_boolean";
		case INT2OID:
			return "hll_hash_smallint";
		case INT4OID:
			return "hll_hash_integer";
		case INT8OID:
			return "hll_hash_bigint";
		case BYTEAOID:
			return "hll_hash_bytea";
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			return "hll_hash_text";
		default:
			return "hll_hash_any";
	}
}

static char *sv_deparse(Node *expr, List *ctx);

/* The sketch whose extension owns the aggregate, or NULL. */
static const SvSketch *
sv_sketch_of(Oid aggfnoid)
{
	Oid			ext = getExtensionOfObject(ProcedureRelationId, aggfnoid);
	char	   *extname;

	if (!OidIsValid(ext) || (extname = get_extension_name(ext)) == NULL)
		return NULL;
	for (int i = 0; i < lengthof(sv_sketches); i++)
		if (strcmp(extname, sv_sketches[i].extension) == 0)
			return &sv_sketches[i];
	return NULL;
}

/*
 * A sketch aggregate: one that returns the state type of its extension
 * (hll_add_agg, hll_union_agg, tdigest(x, compression), ...), written
 * plainly.  Its extension's merge function is looked up in the
 * extension's schema now, and the caller (the view's owner: the batch
 * statement runs as that role) must be able to use both.  Any other
 * aggregate of those extensions (tdigest_percentile, tdigest_avg, ...)
 * computes a final value that cannot be merged: refused, with the hint to
 * store the state instead.
 */
static void
sv_check_sketch(const SvSketch *sk, Aggref *agg, Oid caller, const char *colname, SvOutput *o)
{
	Oid			nsp = get_func_namespace(agg->aggfnoid);	/* the extension's schema */
	char	   *nspname = get_namespace_name(nsp);
	Oid			type = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
									   CStringGetDatum(sk->type), ObjectIdGetDatum(nsp));
	Oid			argtypes[3] = {type, type, BOOLOID};
	Oid			merge;

	if (agg->aggkind != AGGKIND_NORMAL || agg->aggdistinct != NIL || agg->aggorder != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("aggregate %s in column \"%s\" cannot be maintained incrementally",
						get_func_name(agg->aggfnoid), colname),
				 errdetail("DISTINCT and ORDER BY inside an aggregate need all of a window's values at once."),
				 errhint("Write %s plainly.", sk->use)));
	if (agg->aggtype != type || !OidIsValid(type))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("aggregate %s in column \"%s\" cannot be maintained incrementally",
						get_func_name(agg->aggfnoid), colname),
				 errdetail("A stream view stores the %s state, which later batches merge into; "
						   "a value computed from the state cannot be merged.", sk->type),
				 errhint("%s", sv_sketch_hint(sk, sk->use, sk->read))));
	merge = LookupFuncName(list_make2(makeString(nspname), makeString((char *) sk->merge_fn)),
						   sk->merge_nargs, argtypes, true);
	if (!OidIsValid(merge))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function %s.%s, which merges %s states, does not exist",
						nspname, sk->merge_fn, sk->type),
				 errdetail("The %s extension in schema %s has no such function.", sk->extension, nspname),
				 errhint("Update the extension: ALTER EXTENSION %s UPDATE;", sk->extension)));
	if (pg_namespace_aclcheck(nsp, caller, ACL_USAGE) != ACLCHECK_OK ||
		pg_proc_aclcheck(agg->aggfnoid, caller, ACL_EXECUTE) != ACLCHECK_OK ||
		pg_proc_aclcheck(merge, caller, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" cannot use the %s extension for column \"%s\"",
						GetUserNameFromId(caller, false), sk->extension, colname),
				 errdetail("Each batch runs %s and %s.%s as the view's owner.",
						   get_func_name(agg->aggfnoid), nspname, sk->merge_fn),
				 errhint("Grant USAGE on schema %s and EXECUTE on those functions to the view's owner.",
						 quote_identifier(nspname))));
	o->agg = sk->kind;
	o->merge_fn_sql = quote_qualified_identifier(nspname, sk->merge_fn);
}

/*
 * Which mergeable aggregate agg is (filling o), or an error saying why it
 * is not, with the alternative where there is one: count(DISTINCT) and
 * the percentiles have approximate, mergeable counterparts (the sketches).
 */
static void
sv_check_aggregate(Aggref *agg, const char *colname, Oid caller, List *ctx, SvOutput *o)
{
	char	   *name = get_func_name(agg->aggfnoid);
	const SvSketch *sk = sv_sketch_of(agg->aggfnoid);

	if (sk != NULL)
	{
		sv_check_sketch(sk, agg, caller, colname, o);
		return;
	}
	if (get_func_namespace(agg->aggfnoid) == PG_CATALOG_NAMESPACE &&
		agg->aggkind == AGGKIND_NORMAL && agg->aggdistinct == NIL && agg->aggorder == NIL)
	{
		for (int k = 0; k <= SV_AGG_BOOL_OR; k++)
			if (strcmp(name, sv_agg_names[k]) == 0)
			{
				o->agg = (SvAggKind) k;
				return;
			}
		if (strcmp(name, "every") == 0)
		{
			o->agg = SV_AGG_BOOL_AND;
			return;
		}
	}
	if (get_func_namespace(agg->aggfnoid) == PG_CATALOG_NAMESPACE &&
		strcmp(name, "count") == 0 && agg->aggdistinct != NIL && !agg->aggstar)
	{
		Node	   *arg = (Node *) linitial_node(TargetEntry, agg->args)->expr;
		char	   *x = sv_deparse(arg, ctx);

		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("aggregate count (DISTINCT) in column \"%s\" cannot be maintained incrementally", colname),
				 errdetail("A batch's distinct values cannot be merged with a stored count; "
						   "a HyperLogLog state can, and estimates the count within a few percent."),
				 errhint("%s", sv_sketch_hint(&sv_sketches[0],
											 psprintf("hll_add_agg(%s(%s)) AS %s",
													  sv_hll_hash_for(exprType(arg)), x,
													  quote_identifier(colname)),
											 psprintf("hll_cardinality(%s)", quote_identifier(colname))))));
	}
	if (get_func_namespace(agg->aggfnoid) == PG_CATALOG_NAMESPACE &&
		(strcmp(name, "percentile_cont") == 0 || strcmp(name, "percentile_disc") == 0) &&
		agg->args != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("aggregate %s in column \"%s\" cannot be maintained incrementally", name, colname),
				 errdetail("An exact percentile needs all of a window's values at once; "
						   "a t-digest state can be merged batch by batch, and estimates percentiles closely."),
				 errhint("%s", sv_sketch_hint(&sv_sketches[1],
											 psprintf("tdigest(%s, 100) AS %s",
													  sv_deparse((Node *) linitial_node(TargetEntry, agg->args)->expr,
																 ctx),
													  quote_identifier(colname)),
											 psprintf("tdigest_percentile(%s, %s)", quote_identifier(colname),
													  agg->aggdirectargs != NIL
													  ? sv_deparse(linitial(agg->aggdirectargs), ctx)
													  : "0.99")))));
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("aggregate %s%s in column \"%s\" cannot be maintained incrementally",
					name, agg->aggdistinct ? " (DISTINCT)" : "", colname),
			 errdetail("A stream view merges each batch into its stored rows, so every aggregate must be mergeable."),
			 errhint("Use count, sum, min, max, avg, bool_and or bool_or, or the sketches "
					 "hll_add_agg and tdigest of the hll and tdigest extensions.")));
}

/* ---------- deparsing ---------- */

static char *
sv_deparse(Node *expr, List *ctx)
{
	return deparse_expression(expr, ctx, false, false);
}

static char *
sv_agg_args_sql(Aggref *agg, List *ctx)
{
	if (agg->aggstar || agg->args == NIL)
		return "*";
	return sv_deparse((Node *) linitial_node(TargetEntry, agg->args)->expr, ctx);
}

static char *
sv_agg_call(const char *fname, Aggref *agg, List *ctx)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s(%s)", fname, sv_agg_args_sql(agg, ctx));
	if (agg->aggfilter)
		appendStringInfo(&buf, " FILTER (WHERE %s)", sv_deparse((Node *) agg->aggfilter, ctx));
	return buf.data;
}

static SvOutput *
sv_compile_aggregate(TargetEntry *tle, Oid caller, List *ctx)
{
	Aggref	   *agg = (Aggref *) tle->expr;
	SvOutput   *o = palloc0(sizeof(SvOutput));

	o->name = pstrdup(tle->resname);
	sv_check_aggregate(agg, tle->resname, caller, ctx, o);
	o->type_sql = format_type_with_typemod(agg->aggtype, -1);
	if (o->agg == SV_AGG_HLL || o->agg == SV_AGG_TDIGEST)
		/* the whole call, all arguments and FILTER, names schema-qualified */
		o->expr_sql = sv_deparse((Node *) agg, ctx);
	else if (o->agg == SV_AGG_COUNT)
		o->expr_sql = sv_agg_call("count", agg, ctx);
	else if (o->agg == SV_AGG_AVG)
	{
		Oid			argtype = exprType((Node *) linitial_node(TargetEntry, agg->args)->expr);
		Oid			sumfn = LookupFuncName(list_make1(makeString("sum")), 1, &argtype, false);

		o->expr_sql = sv_agg_call("sum", agg, ctx);
		o->count_sql = sv_agg_call("count", agg, ctx);
		o->type_sql = format_type_be(get_func_rettype(sumfn));
		o->avg_type = agg->aggtype;
		o->avg_type_sql = format_type_be(agg->aggtype);
	}
	else
		o->expr_sql = sv_agg_call(sv_agg_names[o->agg], agg, ctx);
	return o;
}

static void
sv_check_column_name(List *outputs, const char *name)
{
	ListCell   *lc;

	if (strcmp(name, "window_start") == 0 || strcmp(name, "window_end") == 0 ||
		strcmp(name, "is_final") == 0 || strncmp(name, "sv_", 3) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_COLUMN),
				 errmsg("column name \"%s\" is reserved in a stream view", name),
				 errhint("Give the column another name with AS.")));
	foreach(lc, outputs)
		if (strcmp(((SvOutput *) lfirst(lc))->name, name) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_COLUMN),
					 errmsg("column \"%s\" appears more than once in the stream view query", name),
					 errhint("Give each column its own name with AS.")));
}

/* Walks the analysed query and fills c.  Runs with search_path = pg_catalog. */
static void
sv_compile_query(Query *q, Oid caller, Oid stand_in, const char *source, AttrNumber et_attno,
				 const char *event_time, SvCompiled *c)
{
	List	   *ctx = deparse_context_for(source, stand_in);
	Index		window_ref = 0;
	ListCell   *lc;

	sv_check_query_shape(q, stand_in);
	if (q->groupClause == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a stream view query must GROUP BY an event-time window"),
				 errhint("Add streamview.tumble(%s, '1 minute') to the select list and GROUP BY.", event_time)));

	foreach(lc, q->groupClause)
	{
		SortGroupClause *sgc = lfirst_node(SortGroupClause, lc);
		TargetEntry *tle = get_sortgroupclause_tle(sgc, q->targetList);

		if (sv_check_window((Node *) tle->expr, et_attno, event_time, c))
		{
			if (window_ref != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("a stream view query must GROUP BY exactly one window")));
			window_ref = sgc->tleSortGroupRef;
			if (tle->resjunk)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("the window must appear in the select list"),
						 errhint("Write streamview.tumble(%s, '1 minute') AS window_start.", event_time)));
			if (strcmp(tle->resname, "window_start") != 0 &&
				strcmp(tle->resname, "tumble") != 0 && strcmp(tle->resname, "hop") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("the window column must be named window_start, not \"%s\"", tle->resname),
						 errdetail("Every stream view has the columns window_start and window_end.")));
		}
		else if (tle->resjunk)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("every GROUP BY expression must appear in the select list"),
					 errdetail("Group keys form the key of the view's rows."),
					 errhint("Add %s to the select list.", sv_deparse((Node *) tle->expr, ctx))));
	}
	if (window_ref == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a stream view query must GROUP BY an event-time window"),
				 errhint("Add streamview.tumble(%s, '1 minute') to the select list and GROUP BY.", event_time)));

	foreach(lc, q->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		SvOutput   *o;

		if (tle->resjunk || tle->ressortgroupref == window_ref)
			continue;
		sv_check_column_name(c->outputs, tle->resname);
		if (tle->ressortgroupref != 0)
		{
			o = palloc0(sizeof(SvOutput));
			o->name = pstrdup(tle->resname);
			o->is_key = true;
			o->expr_sql = sv_deparse((Node *) tle->expr, ctx);
			o->type_sql = format_type_with_typemod(exprType((Node *) tle->expr),
												   exprTypmod((Node *) tle->expr));
		}
		else if (IsA(tle->expr, Aggref))
			o = sv_compile_aggregate(tle, caller, ctx);
		else
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("column \"%s\" must be a group key or a single aggregate", tle->resname),
					 errdetail("Expressions over aggregates cannot be merged batch by batch."),
					 errhint("Select the aggregates themselves, and compute \"%s\" in a view over the stream view.",
							 tle->resname)));
		c->outputs = lappend(c->outputs, o);
	}
	if (q->jointree->quals)
		c->where_sql = sv_deparse(q->jointree->quals, ctx);
	if (sv_reads_session_walker((Node *) q->targetList, NULL) ||
		sv_reads_session_walker(q->jointree->quals, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a stream view query must not depend on the clock, the session or settings"),
				 errdetail("A view is a deterministic function of the log; a rebuild must compute the same rows."),
				 errhint("Use event time instead of now() or CURRENT_TIMESTAMP, and mark your own functions IMMUTABLE.")));
}

/*
 * Compile a stream view query over source.  Analysis runs as the calling
 * role with its search_path (names in the query mean what they mean to the
 * user); deparsing runs with search_path = pg_catalog, pg_temp (the compiled
 * SQL names everything else explicitly).  Inside a transaction; creates and
 * drops a temporary stand-in table for the source.
 */
SvCompiled *
streamview_compile_view(Oid caller, const char *caller_path, const char *source, const char *query)
{
	SvCompiled *c = palloc0(sizeof(SvCompiled));
	MemoryContext cxt = CurrentMemoryContext;
	AttrNumber	et_attno;
	Oid			stand_in;
	List	   *raw;
	Query	   *q;
	Oid			save_user;
	int			save_sec;
	int			nest;
	char	   *event_time;

	SPI_connect();
	stand_in = sv_create_stand_in(source, &et_attno);
	event_time = get_attname(stand_in, et_attno, false);

	GetUserIdAndSecContext(&save_user, &save_sec);
	nest = NewGUCNestLevel();
	SetUserIdAndSecContext(caller, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	if (caller_path)
		(void) set_config_option("search_path", caller_path,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	raw = raw_parser(query, RAW_PARSE_DEFAULT);
	q = parse_analyze_fixedparams(linitial_node(RawStmt, raw), query, NULL, 0, NULL);
	AtEOXact_GUC(true, nest);
	SetUserIdAndSecContext(save_user, save_sec);

	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	{
		/* the compiled form outlives SPI */
		MemoryContext spi = MemoryContextSwitchTo(cxt);

		sv_compile_query(q, caller, stand_in, source, et_attno, event_time, c);
		MemoryContextSwitchTo(spi);
	}
	AtEOXact_GUC(true, nest);

	SPI_execute(psprintf("DROP TABLE pg_temp.%s", quote_identifier(source)), false, 0);
	SPI_finish();
	return c;
}

PG_FUNCTION_INFO_V1(streamview_compile);
PGDLLEXPORT Datum streamview_compile(PG_FUNCTION_ARGS);

/*
 * streamview_internal._compile of version 0.1, whose script still declares it: the
 * library of a later version refuses it with a hint (see
 * streamview_internal._version_sql instead).
 */
Datum
streamview_compile(PG_FUNCTION_ARGS)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("the SQL objects of pg_streamview are older than its library"),
			 errhint("Run ALTER EXTENSION pg_streamview UPDATE.")));
	PG_RETURN_NULL();
}
