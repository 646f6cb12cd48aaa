/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The SQL API's thin C layer: who is calling, and running as the owner.
 *
 * Catalog tables are closed to PUBLIC.  Each public function of the API is
 * declared in SQL as streamview_api_dispatch: it remembers the calling role
 * and its search_path, switches to the extension's owner, and calls the
 * PL/pgSQL function streamview._<name>_impl(caller regrole, <same args>),
 * which checks what the caller may do and hands what it creates (tables,
 * views) to the caller.  Errors propagate unchanged; the user switch is
 * undone by transaction abort as well as on the way out.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/genam.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"

static Oid	sv_caller = InvalidOid;
static char *sv_caller_path = NULL;
static Oid	sv_caller_namespace = InvalidOid;
static bool sv_wake_at_commit = false;
static bool sv_xact_callback_registered = false;

Oid
streamview_caller(void)
{
	return sv_caller;
}

const char *
streamview_caller_search_path(void)
{
	return sv_caller_path;
}

/* The role that owns the extension (the one that ran CREATE EXTENSION). */
Oid
streamview_extension_owner(void)
{
	Oid			extoid = get_extension_oid(STREAMVIEW_EXTENSION, false);
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			owner = InvalidOid;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return owner;
}

void
streamview_as_extension_owner(Oid *save_user, int *save_sec)
{
	GetUserIdAndSecContext(save_user, save_sec);
	SetUserIdAndSecContext(streamview_extension_owner(),
						   *save_sec | SECURITY_LOCAL_USERID_CHANGE);
}

void
streamview_restore_user(Oid save_user, int save_sec)
{
	SetUserIdAndSecContext(save_user, save_sec);
}

PG_FUNCTION_INFO_V1(streamview_api_dispatch);
PGDLLEXPORT Datum streamview_api_dispatch(PG_FUNCTION_ARGS);

Datum
streamview_api_dispatch(PG_FUNCTION_ARGS)
{
	Oid			fn = fcinfo->flinfo->fn_oid;
	int			nargs = PG_NARGS();
	Oid		   *argtypes;
	Oid			impl;
	LOCAL_FCINFO(call, FUNC_MAX_ARGS);
	FmgrInfo	flinfo;
	Oid			prev_caller = sv_caller;
	char	   *prev_path = sv_caller_path;
	Oid			prev_ns = sv_caller_namespace;
	Oid			save_user;
	int			save_sec;
	volatile Datum result = (Datum) 0;
	List	   *path;

	/* Find _<name>_impl(regrole, <our declared argument types>). */
	{
		Oid		   *decl;
		int			ndecl;

		(void) get_func_signature(fn, &decl, &ndecl);
		argtypes = palloc((nargs + 1) * sizeof(Oid));
		argtypes[0] = REGROLEOID;
		memcpy(argtypes + 1, decl, nargs * sizeof(Oid));
	}
	impl = LookupFuncName(list_make2(makeString(STREAMVIEW_SCHEMA),
									 makeString(psprintf("_%s_impl", get_func_name(fn)))),
						  nargs + 1, argtypes, false);

	sv_caller = GetUserId();
	sv_caller_path = pstrdup(namespace_search_path);
	path = fetch_search_path(false);
	sv_caller_namespace = path ? linitial_oid(path) : InvalidOid;

	fmgr_info(impl, &flinfo);
	/* resultinfo passes through: set-returning functions (validate) work too */
	InitFunctionCallInfoData(*call, &flinfo, nargs + 1, fcinfo->fncollation,
							 fcinfo->context, fcinfo->resultinfo);
	call->args[0].value = ObjectIdGetDatum(sv_caller);
	call->args[0].isnull = false;
	for (int i = 0; i < nargs; i++)
		call->args[i + 1] = fcinfo->args[i];

	streamview_as_extension_owner(&save_user, &save_sec);
	PG_TRY();
	{
		result = FunctionCallInvoke(call);
	}
	PG_FINALLY();
	{
		streamview_restore_user(save_user, save_sec);
		sv_caller = prev_caller;
		sv_caller_path = prev_path;
		sv_caller_namespace = prev_ns;
	}
	PG_END_TRY();
	fcinfo->isnull = call->isnull;
	return result;
}

PG_FUNCTION_INFO_V1(streamview_caller_schema);
PGDLLEXPORT Datum streamview_caller_schema(PG_FUNCTION_ARGS);

/* The schema an unqualified CREATE of the API's caller would use. */
Datum
streamview_caller_schema(PG_FUNCTION_ARGS)
{
	if (!OidIsValid(sv_caller_namespace))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_SCHEMA),
				 errmsg("no schema has been selected to create in"),
				 errhint("Qualify the view name with a schema: schema.view.")));
	PG_RETURN_DATUM(DirectFunctionCall1(namein,
										CStringGetDatum(get_namespace_name(sv_caller_namespace))));
}

static void
sv_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && sv_wake_at_commit)
		streamview_wake_launcher();
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT)
		sv_wake_at_commit = false;
}

PG_FUNCTION_INFO_V1(streamview_notify_launcher);
PGDLLEXPORT Datum streamview_notify_launcher(PG_FUNCTION_ARGS);

/*
 * Wake the launcher when this transaction commits (not before: it would
 * read the catalog as it was).
 */
Datum
streamview_notify_launcher(PG_FUNCTION_ARGS)
{
	if (!sv_xact_callback_registered)
	{
		RegisterXactCallback(sv_xact_callback, NULL);
		sv_xact_callback_registered = true;
	}
	sv_wake_at_commit = true;
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(streamview_count_as);
PGDLLEXPORT Datum streamview_count_as(PG_FUNCTION_ARGS);

/*
 * streamview._count_as(role, query) → bigint: run one SELECT that returns a
 * single count, as role, in a security-restricted operation.  The API's
 * implementations run as the extension owner; anything that embeds text a
 * user wrote (an invariant's predicate) goes through here instead, so it can
 * do no more than the view's owner could.
 */
Datum
streamview_count_as(PG_FUNCTION_ARGS)
{
	Oid			role = PG_GETARG_OID(0);
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	List	   *raw = raw_parser(query, RAW_PARSE_DEFAULT);
	Oid			save_user;
	int			save_sec;
	int64		count = 0;
	bool		isnull = true;

	if (list_length(raw) != 1 || !IsA(linitial_node(RawStmt, raw)->stmt, SelectStmt))
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("a check must be a single boolean expression")));

	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(role, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	SPI_connect();
	SPI_execute(query, true, 2);
	if (SPI_processed == 1 && SPI_tuptable->tupdesc->natts == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			count = DatumGetInt64(d);
	}
	SPI_finish();
	SetUserIdAndSecContext(save_user, save_sec);
	if (isnull)
		elog(ERROR, "streamview._count_as: the query must return one count");
	PG_RETURN_INT64(count);
}
