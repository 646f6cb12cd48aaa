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
 * Renames are refused the same way (streamview_guard_alter, on
 * ddl_command_start): the catalog, the monitoring views and every API call
 * name a stream view by the name create_view gave it, and swap recreates
 * the view with its columns' names.  ALTER VIEW/TABLE ... RENAME or SET
 * SCHEMA of a stream view, and renaming, dropping or retyping a column of a
 * table a version uses, would leave them naming what is no longer there.
 * Renaming a version's table itself is harmless (it is kept by OID).
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
#include "catalog/namespace.h"
#include "access/relation.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
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

/* What a relation is to the extension: a stream view, a version's table. */
typedef struct SvRelation
{
	Oid			relid;
	char	   *view;			/* NULL: neither */
	char	   *version;		/* NULL for the stream view itself */
} SvRelation;

static void
sv_find_relation(void *arg)
{
	SvRelation *r = arg;
	MemoryContext caller = CurrentMemoryContext;
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(r->relid)};

	SPI_connect();
	SPI_execute_with_args("SELECT w.name, NULL::int FROM streamview.views w "
						  " WHERE w.relid::pg_catalog.oid = $1 "
						  "UNION ALL "
						  "SELECT x.view_name, x.version FROM streamview.versions x "
						  " WHERE x.table_name::pg_catalog.oid = $1 AND x.state <> 'retired' "
						  "LIMIT 1", 1, argtypes, values, NULL, true, 0);
	if (SPI_processed > 0)
	{
		char	   *version = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

		r->view = MemoryContextStrdup(caller, SPI_getvalue(SPI_tuptable->vals[0],
														   SPI_tuptable->tupdesc, 1));
		r->version = version ? MemoryContextStrdup(caller, version) : NULL;
	}
	SPI_finish();
}

/* The stream view or version table rv names, if any (view NULL if none). */
static SvRelation
sv_relation(RangeVar *rv)
{
	SvRelation	r = {0};

	if (rv == NULL)
		return r;
	r.relid = RangeVarGetRelid(rv, NoLock, true);
	if (OidIsValid(r.relid))
		streamview_as_owner(sv_find_relation, &r);
	return r;
}

static void
sv_refuse_view_rename(const SvRelation *r, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s stream view \"%s\"", what, r->view),
			 errdetail("The extension's catalog, its monitoring views and swap name the view "
					   "by the name create_view gave it."),
			 errhint("To read it under another name, create a plain view over it; "
					 "to move it, create the stream view anew with streamview.create_view.")));
}

static void
sv_refuse_column_change(const SvRelation *r, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s a column of the table of version %s of stream view \"%s\"",
					what, r->version, r->view),
			 errdetail("Its source worker writes those columns by name and type."),
			 errhint("Change the view's query with streamview.rebuild, which makes a new table.")));
}

PG_FUNCTION_INFO_V1(streamview_guard_alter);
PGDLLEXPORT Datum streamview_guard_alter(PG_FUNCTION_ARGS);

/*
 * On ddl_command_start of ALTER TABLE and ALTER VIEW: refuse what would
 * rename a stream view or change the columns a version's table is written
 * through.  Everything else (owner, comments, reloptions, a rename of a
 * version's table) goes through.
 */
Datum
streamview_guard_alter(PG_FUNCTION_ARGS)
{
	Node	   *stmt;
	SvRelation	r;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "streamview_guard_alter: not called by an event trigger");
	if (streamview_in_api())
		PG_RETURN_VOID();
	stmt = ((EventTriggerData *) fcinfo->context)->parsetree;

	if (IsA(stmt, RenameStmt))
	{
		RenameStmt *rs = (RenameStmt *) stmt;

		r = sv_relation(rs->relation);
		if (r.view != NULL && r.version == NULL)
			sv_refuse_view_rename(&r, rs->renameType == OBJECT_COLUMN ?
								  "rename a column of" : "rename");
		if (r.view != NULL && rs->renameType == OBJECT_COLUMN)
			sv_refuse_column_change(&r, "rename");
	}
	else if (IsA(stmt, AlterObjectSchemaStmt))
	{
		r = sv_relation(((AlterObjectSchemaStmt *) stmt)->relation);
		if (r.view != NULL && r.version == NULL)
			sv_refuse_view_rename(&r, "move");
	}
	else if (IsA(stmt, AlterTableStmt))
	{
		AlterTableStmt *at = (AlterTableStmt *) stmt;
		ListCell   *lc;

		r = sv_relation(at->relation);
		if (r.view == NULL || r.version == NULL)
			PG_RETURN_VOID();
		foreach(lc, at->cmds)
		{
			AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

			if (cmd->subtype == AT_DropColumn)
				sv_refuse_column_change(&r, "drop");
			if (cmd->subtype == AT_AlterColumnType)
				sv_refuse_column_change(&r, "change the type of");
		}
	}
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(streamview_depend_on_extension);
PGDLLEXPORT Datum streamview_depend_on_extension(PG_FUNCTION_ARGS);

/*
 * _depend_on_extension(table regclass): the table goes with the extension,
 * and with every other extension whose types its columns hold (the states
 * of the sketches, hll and tdigest: compile.c).  DROP EXTENSION hll then
 * refuses while a version keeps hll states, naming the table; with CASCADE
 * it would drop the whole table, which the drop guard above refuses,
 * rather than quietly dropping the column of a version being built.
 */
Datum
streamview_depend_on_extension(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	ObjectAddress table;
	ObjectAddress ext;
	Relation	rel;
	TupleDesc	desc;
	List	   *exts = NIL;
	ListCell   *lc;

	ObjectAddressSet(table, RelationRelationId, relid);
	ObjectAddressSet(ext, ExtensionRelationId, get_extension_oid("pg_streamview", false));
	recordDependencyOn(&table, &ext, DEPENDENCY_NORMAL);

	rel = relation_open(relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Oid			owner;

		if (att->attisdropped)
			continue;
		owner = getExtensionOfObject(TypeRelationId, att->atttypid);
		if (OidIsValid(owner) && !list_member_oid(exts, owner))
			exts = lappend_oid(exts, owner);
	}
	relation_close(rel, AccessShareLock);
	foreach(lc, exts)
	{
		ObjectAddressSet(ext, ExtensionRelationId, lfirst_oid(lc));
		recordDependencyOn(&table, &ext, DEPENDENCY_NORMAL);
	}
	PG_RETURN_VOID();
}
