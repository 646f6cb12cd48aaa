/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  Stream views and DDL: drops that would break one behind the
 *	  extension's back are refused, and version tables go with the
 *	  extension.
 *
 * A plain DROP VIEW of a stream view, or DROP TABLE of one of its
 * versions' tables, used to go unnoticed: the catalog kept the view live
 * and the worker went on writing, or failed, far from the cause.  An event
 * trigger on sql_drop (streamview_guard_drop, in the install script) looks
 * at what a command dropped and refuses the command, with a hint naming the
 * function that does it properly.  The extension's own drops, made inside
 * the API (drop_view, drop_version, swap), go through; code a user wrote,
 * which runs restricted even when the API runs it, does not.
 *
 * The trigger's own queries run as the extension's owner: the catalog is
 * closed to PUBLIC, and any role's DROP fires it.
 *
 * A version's table belongs to the view's owner, not to the extension
 * (pg_dump must dump it), but it depends on the extension: DROP EXTENSION
 * refuses while stream views exist, and with CASCADE drops their tables
 * too, instead of leaving them behind.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "catalog/dependency.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

/* The first stream view or live version table that a command dropped. */
typedef struct SvDropped
{
	char	   *what;			/* "view public.x", "table public.x_v1" */
	char	   *view;
	char	   *version;		/* NULL for the view itself */
} SvDropped;

static void
sv_find_dropped(void *arg)
{
	SvDropped  *d = arg;
	MemoryContext caller = CurrentMemoryContext;	/* SPI_finish frees its own */

	SPI_connect();
	SPI_execute("SELECT d.object_type || ' ' || d.object_identity, w.name, NULL::int "
				"  FROM pg_catalog.pg_event_trigger_dropped_objects() d "
				"  JOIN streamview.views w ON w.relid::pg_catalog.oid = d.objid "
				" WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = 0 "
				"UNION ALL "
				"SELECT d.object_type || ' ' || d.object_identity, x.view_name, x.version "
				"  FROM pg_catalog.pg_event_trigger_dropped_objects() d "
				"  JOIN streamview.versions x ON x.table_name::pg_catalog.oid = d.objid "
				" WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = 0 "
				"   AND x.state <> 'retired' "
				"LIMIT 1", true, 0);
	if (SPI_processed > 0)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		char	   *version = SPI_getvalue(tup, desc, 3);

		d->what = MemoryContextStrdup(caller, SPI_getvalue(tup, desc, 1));
		d->view = MemoryContextStrdup(caller, SPI_getvalue(tup, desc, 2));
		d->version = version ? MemoryContextStrdup(caller, version) : NULL;
	}
	SPI_finish();
}

PG_FUNCTION_INFO_V1(streamview_guard_drop);
PGDLLEXPORT Datum streamview_guard_drop(PG_FUNCTION_ARGS);

Datum
streamview_guard_drop(PG_FUNCTION_ARGS)
{
	SvDropped	d = {0};

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "streamview_guard_drop: not called by an event trigger");
	if (streamview_in_api())
		PG_RETURN_VOID();

	streamview_as_owner(sv_find_dropped, &d);
	if (d.what != NULL && d.version == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop %s: it is stream view \"%s\"", d.what, d.view),
				 errdetail("The extension's catalog and workers would go on maintaining it."),
				 errhint("Use SELECT streamview.drop_view(%s);", quote_literal_cstr(d.view))));
	if (d.what != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop %s: it holds version %s of stream view \"%s\"",
						d.what, d.version, d.view),
				 errdetail("The extension's catalog and workers would go on maintaining it."),
				 errhint("Use SELECT streamview.drop_version(%s, %s); or streamview.drop_view(%s);",
						 quote_literal_cstr(d.view), d.version, quote_literal_cstr(d.view))));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(streamview_depend_on_extension);
PGDLLEXPORT Datum streamview_depend_on_extension(PG_FUNCTION_ARGS);

/* _depend_on_extension(table regclass): the table goes with the extension. */
Datum
streamview_depend_on_extension(PG_FUNCTION_ARGS)
{
	ObjectAddress table;
	ObjectAddress ext;

	ObjectAddressSet(table, RelationRelationId, PG_GETARG_OID(0));
	ObjectAddressSet(ext, ExtensionRelationId, get_extension_oid("pg_streamview", false));
	recordDependencyOn(&table, &ext, DEPENDENCY_NORMAL);
	PG_RETURN_VOID();
}
