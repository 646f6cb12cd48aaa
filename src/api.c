/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The SQL API's thin C layer: who is calling, and running as the owner.
 *
 * Catalog tables are closed to PUBLIC.  Each public function of the API is
 * declared in SQL as streamview_api_dispatch: it remembers the calling role
 * and its search_path, switches to the extension's owner, and calls the
 * PL/pgSQL function streamview_internal._<name>_impl(caller regrole, <same args>),
 * which checks what the caller may do and hands what it creates (tables,
 * views) to the caller.  Errors propagate unchanged; the user switch is
 * undone by transaction abort as well as on the way out.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "utils/jsonb.h"
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

/*
 * The extension's row in pg_extension: its owner and the version of its SQL
 * objects.  Returns false when it is not installed in this database.
 */
static bool
sv_read_extension(Oid *owner, char **version)
{
	Oid			extoid = get_extension_oid(STREAMVIEW_EXTENSION, true);
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found;

	if (!OidIsValid(extoid))
		return false;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	found = HeapTupleIsValid(tup);
	if (found)
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion, RelationGetDescr(rel), &isnull);

		*owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
		*version = isnull ? NULL : TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/* The role that owns the extension (the one that ran CREATE EXTENSION). */
Oid
streamview_extension_owner(void)
{
	Oid			owner;
	char	   *version;

	if (!sv_read_extension(&owner, &version))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"%s\" does not exist", STREAMVIEW_EXTENSION)));
	return owner;
}

/*
 * The version of the extension's SQL objects (pg_extension.extversion), or
 * NULL when it is not installed in this database.
 */
char *
streamview_installed_version(void)
{
	Oid			owner;
	char	   *version = NULL;

	if (!sv_read_extension(&owner, &version))
		return NULL;
	return version;
}

/*
 * The library and the SQL objects must be of one version: after a new
 * library is installed, the catalog keeps the old shape until ALTER
 * EXTENSION ... UPDATE, and code of one version run against the other fails
 * in ways that say nothing of the cause.  The API refuses with a hint.
 */
static void
sv_check_sql_version(void)
{
	char	   *installed = streamview_installed_version();

	if (installed != NULL && strcmp(installed, STREAMVIEW_VERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_streamview's SQL objects are version %s, its library version %s",
						installed, STREAMVIEW_VERSION),
				 errdetail("The library was updated; the extension in this database was not."),
				 errhint("Run ALTER EXTENSION pg_streamview UPDATE as a superuser.")));
}

static void
streamview_as_extension_owner(Oid *save_user, int *save_sec)
{
	GetUserIdAndSecContext(save_user, save_sec);
	SetUserIdAndSecContext(streamview_extension_owner(),
						   *save_sec | SECURITY_LOCAL_USERID_CHANGE);
}

static void
streamview_restore_user(Oid save_user, int save_sec)
{
	SetUserIdAndSecContext(save_user, save_sec);
}

/*
 * The implementation behind dispatcher fn: _<name>_impl in the dispatcher's
 * own schema, and a member of this extension.  Found through the schema's
 * OID and checked by membership, so a schema or function planted under the
 * name "streamview" is never run as the extension owner.
 */
static Oid
sv_lookup_impl(Oid fn, int nargs, Oid *argtypes)
{
	char	   *name = psprintf("_%s_impl", get_func_name(fn));
	Oid			nsp = get_namespace_oid(STREAMVIEW_INTERNAL_SCHEMA, true);
	Oid			impl = OidIsValid(nsp) ?
		LookupFuncName(list_make2(makeString(STREAMVIEW_INTERNAL_SCHEMA), makeString(name)),
					   nargs, argtypes, true) : InvalidOid;

	if (!OidIsValid(impl) || get_func_namespace(impl) != nsp ||
		getExtensionOfObject(ProcedureRelationId, impl) !=
		get_extension_oid(STREAMVIEW_EXTENSION, false))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the implementation of streamview.%s() is missing", get_func_name(fn)),
				 errdetail("No function %s.%s of extension %s was found.",
						   STREAMVIEW_INTERNAL_SCHEMA, name, STREAMVIEW_EXTENSION),
				 errhint("Reinstall the extension with DROP EXTENSION and CREATE EXTENSION, "
						 "or update it with ALTER EXTENSION pg_streamview UPDATE.")));
	return impl;
}

PG_FUNCTION_INFO_V1(streamview_api_dispatch);
PGDLLEXPORT Datum streamview_api_dispatch(PG_FUNCTION_ARGS);

/*
 * The body of every public function of the API.  Refuses to run inside a
 * security-restricted operation (user code), remembers the calling role and
 * its search_path (restored on the way out, so calls may nest), finds the
 * implementation streamview_internal._<name>_impl, and calls it
 * as the extension's owner with the caller as its first argument.  Errors
 * propagate unchanged; the user switch is undone on the way out, and by
 * transaction abort.
 */
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

	/*
	 * Code a user wrote (a view's query, a check, a trigger or default on a
	 * version's table) runs restricted, as that user: it must not reach the
	 * API, whose implementations run as the extension's owner.
	 */
	if (InSecurityRestrictedOperation())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot call streamview.%s() from code that a stream view runs",
						get_func_name(fn)),
				 errdetail("View queries, checks, and triggers and defaults on a version's table "
						   "run in a security-restricted operation."),
				 errhint("Call it from your own session instead.")));

	sv_check_sql_version();

	/* Find _<name>_impl(regrole, <our declared argument types>). */
	{
		Oid		   *decl;
		int			ndecl;

		(void) get_func_signature(fn, &decl, &ndecl);
		argtypes = palloc((nargs + 1) * sizeof(Oid));
		argtypes[0] = REGROLEOID;
		memcpy(argtypes + 1, decl, nargs * sizeof(Oid));
	}
	impl = sv_lookup_impl(fn, nargs + 1, argtypes);

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

/*
 * Run fn(arg) as the extension's owner: for code that must read the
 * catalog, which is closed to PUBLIC, whoever set it off (guard.c).
 */
void
streamview_as_owner(void (*fn) (void *), void *arg)
{
	Oid			save_user;
	int			save_sec;

	streamview_as_extension_owner(&save_user, &save_sec);
	PG_TRY();
	{
		fn(arg);
	}
	PG_FINALLY();
	{
		streamview_restore_user(save_user, save_sec);
	}
	PG_END_TRY();
}

/*
 * Is the extension's own code running, inside a public function of the API,
 * and not code a user wrote that the API runs (restricted)?  guard.c lets
 * the API's own DDL through.
 */
bool
streamview_in_api(void)
{
	return OidIsValid(sv_caller) && !InSecurityRestrictedOperation();
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

PG_FUNCTION_INFO_V1(streamview_caller_search_path_fn);
PGDLLEXPORT Datum streamview_caller_search_path_fn(PG_FUNCTION_ARGS);

/* The search_path of the API's caller, as the dispatcher found it. */
Datum
streamview_caller_search_path_fn(PG_FUNCTION_ARGS)
{
	if (sv_caller_path == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(sv_caller_path));
}

static void
sv_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && sv_wake_at_commit)
	{
		streamview_wake_launcher();
		streamview_wake_workers();
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT)
		sv_wake_at_commit = false;
}

PG_FUNCTION_INFO_V1(streamview_notify_launcher);
PGDLLEXPORT Datum streamview_notify_launcher(PG_FUNCTION_ARGS);

/*
 * Wake the launcher, and the workers (a source's worker fills a new view at
 * once), when this transaction commits (not before: they would read the
 * catalog as it was).
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

PG_FUNCTION_INFO_V1(streamview_run_as);
PGDLLEXPORT Datum streamview_run_as(PG_FUNCTION_ARGS);

/*
 * streamview_internal._run_as(role, query) → jsonb: run one SELECT (it may hold a
 * data-modifying WITH) whose first column is jsonb, as role, and return that
 * value from its first row (NULL if none).  The API's implementations run as
 * the extension owner; everything that may call code a user wrote (a check's
 * predicate, a version's table, which its owner may have replaced) runs
 * through here instead: as the view's owner, in a security-restricted
 * operation, with search_path pinned and every setting the code changes
 * undone on the way out, so it can do no more than its owner could.
 */
Datum
streamview_run_as(PG_FUNCTION_ARGS)
{
	Oid			role = PG_GETARG_OID(0);
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	List	   *raw = raw_parser(query, RAW_PARSE_DEFAULT);
	Datum		result = (Datum) 0;
	bool		isnull = true;
	SvRunAs		ra;

	if (list_length(raw) != 1 || !IsA(linitial_node(RawStmt, raw)->stmt, SelectStmt))
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("a check must be a single boolean expression")));

	streamview_run_as_begin(role, &ra);
	SPI_connect();
	SPI_execute(query, false, 1);
	if (SPI_processed == 1)
	{
		if (SPI_gettypeid(SPI_tuptable->tupdesc, 1) != JSONBOID)
			elog(ERROR, "streamview_internal._run_as: the query must return jsonb");
		result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			result = SPI_datumTransfer(result, false, -1);
	}
	SPI_finish();
	streamview_run_as_end(&ra);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/*
 * Bracket for running code a user wrote as role: a restricted operation
 * (no SET ROLE, no temporary objects, no session-lasting state) in a GUC
 * nest level that is rolled back at the end, with search_path pinned.
 *
 * What must be restored lives in the caller's SvRunAs, on its stack: user
 * code can reach another bracket (a trigger on a version's table firing
 * while a check runs, say), and state kept anywhere else would be
 * overwritten by the inner one, leaving the outer GUC level, and whatever
 * search_path the user code set in it, in force for the extension owner's
 * code that follows.  streamview_api_dispatch also refuses to run inside a
 * restricted operation, so the API cannot be called from user code at all.
 */
void
streamview_run_as_begin(Oid role, SvRunAs *ra)
{
	GetUserIdAndSecContext(&ra->save_user, &ra->save_sec);
	ra->nest = NewGUCNestLevel();
	SetUserIdAndSecContext(role, ra->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

void
streamview_run_as_end(const SvRunAs *ra)
{
	AtEOXact_GUC(false, ra->nest);
	SetUserIdAndSecContext(ra->save_user, ra->save_sec);
}
