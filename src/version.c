/*-------------------------------------------------------------------------
 *
 * version.c
 *	  A version's lifecycle, as the worker sees it.
 *
 * The states and their transitions are owned by SQL (sql/src/04_lifecycle.sql:
 * the enum streamview.version_state, _set_state, _live_version and
 * _partitions_behind); this file is the worker's side of them, and the one
 * place in C that knows what a state means:
 *
 *	 replaying ──caught up──▶ caught_up ──swap──▶ live ──swap/rollback──▶ caught_up
 *		 │						 │									  │
 *		 └──────────failed───────┴──────────drop_version──────────────┴──▶ retired
 *
 * (the diagram with every transition is in docs/architecture.md, "Version
 * states").  A worker maintains a version while it is replaying (a replay
 * worker) or live or caught up (the source worker); a live version never
 * fails, because it is what readers see: its errors are the worker's.
 *
 * Callers are inside a transaction with SPI connected.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

static const char *const sv_state_names[] = {
	[SV_VERSION_REPLAYING] = "replaying",
	[SV_VERSION_CAUGHT_UP] = "caught_up",
	[SV_VERSION_LIVE] = "live",
	[SV_VERSION_RETIRED] = "retired",
	[SV_VERSION_FAILED] = "failed",
};

/* A state as streamview.version_state spells it, and back. */
const char *
streamview_version_state_name(SvVersionState state)
{
	return sv_state_names[state];
}

SvVersionState
streamview_version_state(const char *name)
{
	for (int s = 0; s < lengthof(sv_state_names); s++)
		if (strcmp(name, sv_state_names[s]) == 0)
			return (SvVersionState) s;
	elog(ERROR, "unknown version state \"%s\"", name);
	return SV_VERSION_FAILED;	/* keep the compiler quiet */
}

/*
 * A replaying version has caught up when it is within one batch of the
 * view's live version (as committed now: a swap may have changed which one
 * that is): at most streamview.batch_size messages behind it, over the
 * partitions the source reads.  Requiring it to be level in every partition
 * would make a replay chase a busy live version without end: the two
 * consumers fetch independently, and whenever the replay looks, the live
 * worker has often applied a few messages it has not fetched yet.  Within
 * a batch is exact all the same: the source worker that takes the version
 * over assigns each partition at the lowest offset of its versions
 * (source_worker.c), reads the messages the version lacks again, and each
 * version skips what it has already read.  streamview.wait_for() then waits
 * for the two to be level.
 */
bool
streamview_caught_up(SvVersion *v)
{
	Oid			argtypes[2] = {INT4OID, INT8OID};
	Datum		args[2] = {Int32GetDatum(v->version_id), Int64GetDatum((int64) streamview_batch_size)};

	SPI_execute_with_args("SELECT streamview_internal._messages_behind(me.version_id, "
						  "(streamview_internal._live_version(me.view_id)).version_id) <= $2 "
						  "FROM streamview.versions me WHERE me.version_id = $1",
						  2, argtypes, args, NULL, true, 1);
	if (SPI_processed == 0)
		return false;
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
									  &(bool){false}));
}

/* Move version_id from one of the states in from (a SQL array) to target. */
static void
sv_set_state(int32 version_id, const char *from, SvVersionState target, const char *error)
{
	Oid			argtypes[4] = {INT4OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', error ? ' ' : 'n'};

	args[0] = Int32GetDatum(version_id);
	args[1] = CStringGetTextDatum(from);
	args[2] = CStringGetTextDatum(streamview_version_state_name(target));
	args[3] = error ? CStringGetTextDatum(error) : (Datum) 0;
	/* not strict: a drop_version or swap meanwhile makes the transition moot */
	SPI_execute_with_args("SELECT streamview_internal._set_state($1, $2::streamview.version_state[], "
						  "$3::streamview.version_state, error => $4, strict => false)",
						  4, argtypes, args, nulls, false, 0);
}

void
streamview_mark_caught_up(SvVersion *v)
{
	sv_set_state(v->version_id, "{replaying}", SV_VERSION_CAUGHT_UP, NULL);
}

void
streamview_mark_failed(int32 version_id, const char *error)
{
	sv_set_state(version_id, "{replaying,caught_up}", SV_VERSION_FAILED, error);
}

/*
 * A version's statement cannot run (its table was dropped by hand, a
 * privilege was revoked, ...).  The live version is what readers see: its
 * error is the worker's, recorded and retried with back-off until someone
 * mends it.  Any other version fails with the error, in the current
 * transaction, and the source's other versions go on.
 */
void
streamview_fail_version(SvVersion *v, ErrorData *err)
{
	if (v->state == SV_VERSION_LIVE)
		ReThrowError(err);
	ereport(WARNING,
			(errmsg("stream view \"%s\" version %d failed: %s", v->view_name, v->version,
					err->message)));
	streamview_mark_failed(v->version_id, err->message);
	v->failed = true;
}

/*
 * Prepare the version's statement, as its owner: the names in it resolve,
 * and its privileges are checked, as that role's.  It reads the batch from
 * the worker's memory (batch.c), so there is nothing else to make but
 * the partial and merge statements a batch of several rounds runs instead.
 */
void
streamview_prepare_version(const SvSource *src, SvVersion *v)
{
	SvRunAs		ra;

	streamview_run_as_begin(v->owner, &ra);
	v->plan = SPI_prepare(v->batch_sql, 0, NULL);
	streamview_run_as_end(&ra);
	if (v->plan == NULL)
		elog(ERROR, "could not prepare the statement of view \"%s\": %s",
			 v->view_name, SPI_result_code_string(SPI_result));
	SPI_keepplan(v->plan);
	/* and the two that pre-aggregate a batch across rounds (batch.c) */
	streamview_run_as_begin(v->owner, &ra);
	streamview_prepare_rounds(src, v);
	streamview_run_as_end(&ra);
}
