/*-------------------------------------------------------------------------
 *
 * sv_fuzz_source.c
 *	  Sources and broker timestamps for the fuzz targets, made the way the
 *	  worker makes them.
 *
 * catalog.c loads a source from the catalog; here the same SvSource is
 * built from a column table, with the same steps (the type's input
 * function, the default converted once, the path split at dots, all in a
 * memory context of the source's own).  Paths and defaults are written in
 * UTF-8 and converted to the database's encoding, as the catalog holds
 * them.  kafka.c's conversion of a Kafka timestamp is repeated in
 * sv_fuzz_kafka_time.
 *
 *-------------------------------------------------------------------------
 */
#include "sv_fuzz.h"

#include "mb/pg_wchar.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

/* A writable copy of UTF-8 text in the database's encoding. */
static char *
sv_server_text(const char *utf8)
{
	return pstrdup(pg_any_to_server(utf8, strlen(utf8), PG_UTF8));
}

static void
sv_fuzz_make_column(SvColumn *col, const SvFuzzColumn *spec, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	char	   *path = sv_server_text(spec->path ? spec->path : spec->name);
	Oid			infunc;

	col->name = pstrdup(spec->name);
	col->type = spec->type;
	col->npath = 1;
	for (const char *p = path; *p; p++)
		col->npath += (*p == '.');
	col->path = palloc(col->npath * sizeof(char *));
	for (int i = 0; i < col->npath; i++)
	{
		char	   *dot = strchr(path, '.');

		if (dot)
			*dot = '\0';
		col->path[i] = pstrdup(path);
		path = dot ? dot + 1 : path + strlen(path);
	}
	col->required = spec->required;
	get_typlenbyval(col->type, &col->typlen, &col->typbyval);
	getTypeInputInfo(col->type, &infunc, &col->ioparam);
	fmgr_info_cxt(infunc, &col->input, cxt);
	if (spec->default_value)
	{
		col->has_default = true;
		col->default_value = InputFunctionCall(&col->input, sv_server_text(spec->default_value),
											   col->ioparam, -1);
	}
	MemoryContextSwitchTo(old);
}

/*
 * A source with these columns; event_id may be NULL, max_future_us -1 (not
 * checked).  The source's context is an ASan-visible one (sv_fuzz_mcxt.c),
 * where parse.c also builds its trie of paths.
 */
SvSource *
sv_fuzz_make_source(const char *name, const SvFuzzColumn *columns, int ncolumns,
					const char *event_time, const char *event_id, int64 max_future_us)
{
	MemoryContext cxt = sv_fuzz_context_create(TopMemoryContext, "sv_fuzz source");
	SvSource   *src = MemoryContextAllocZero(cxt, sizeof(SvSource));

	src->source_id = 1;
	src->name = MemoryContextStrdup(cxt, name);
	src->ooo_us = 0;
	src->idle_timeout_us = -1;
	src->max_future_us = max_future_us;
	src->ncolumns = ncolumns;
	src->columns = MemoryContextAllocZero(cxt, ncolumns * sizeof(SvColumn));
	src->event_time_col = -1;
	src->event_id_col = -1;
	for (int c = 0; c < ncolumns; c++)
	{
		sv_fuzz_make_column(&src->columns[c], &columns[c], cxt);
		if (strcmp(columns[c].name, event_time) == 0)
			src->event_time_col = c;
		if (event_id && strcmp(columns[c].name, event_id) == 0)
			src->event_id_col = c;
	}
	if (src->event_time_col < 0 || src->columns[src->event_time_col].type != TIMESTAMPTZOID)
		elog(ERROR, "source \"%s\" has no timestamptz column \"%s\"", name, event_time);
	return src;
}

/* A Kafka timestamp (ms since 1970) as kafka.c hands it over. */
TimestampTz
sv_fuzz_kafka_time(int64 ms)
{
	return (TimestampTz) ms * 1000 -
		(TimestampTz) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
}
