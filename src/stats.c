/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  What streamview.status shows of a version's recent work: how many
 *	  messages per second it reads, how long its last batch took, and which
 *	  partitions hold its watermark back.  The one owner of
 *	  streamview.version_stats.
 *
 * The worker counts, per version, the messages each batch read into one of
 * SV_RATE_WINDOW_S one-second buckets; the rate is their sum over the
 * seconds they cover (fewer when the worker started less than the window
 * ago).  It is stored with each batch that read messages for the version,
 * in that batch's transaction: one statement per batch for all versions,
 * never a write per message.  held_back_by is stored with it, and by the
 * idle worker's housekeeping when the partitions that hold the watermark
 * change (partitions go idle with time).  Each of a source's workers keeps
 * a row of its own (version_stats.worker), counting the messages it reads:
 * streamview.status adds their rates up.  status shows the rate while the
 * batch is recent, 0 after SV_RATE_WINDOW_S seconds without one.
 *
 * Callers are inside the batch's transaction with SPI connected, as the
 * extension owner.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"

/* Count n messages the version read in the batch at hand, at time now. */
void
streamview_stats_count(SvVersion *v, int n, TimestampTz now)
{
	int64		second = now / USECS_PER_SEC;
	int			slot = (int) (second % SV_RATE_WINDOW_S);

	if (n <= 0)
		return;
	if (v->rate_second[slot] != second)
	{
		v->rate_second[slot] = second;
		v->rate_count[slot] = 0;
	}
	v->rate_count[slot] += n;
	v->batch_read = true;
}

/*
 * Messages per second over the buckets of the last SV_RATE_WINDOW_S
 * seconds, up to now: they cover SV_RATE_WINDOW_S - 1 whole seconds and the
 * part of the current one that has passed, or less if the worker was
 * assigned the topic since (then at least a second, so that the first
 * batch does not read as a burst).
 */
static double
sv_rate(const SvSource *src, const SvVersion *v, TimestampTz now)
{
	int64		second = now / USECS_PER_SEC;
	int64		sum = 0;
	double		span;

	for (int i = 0; i < SV_RATE_WINDOW_S; i++)
		if (v->rate_second[i] > second - SV_RATE_WINDOW_S)
			sum += v->rate_count[i];
	span = (now - (second - SV_RATE_WINDOW_S + 1) * USECS_PER_SEC) / (double) USECS_PER_SEC;
	if (src->assigned_at != 0)
		span = Min(span, (now - src->assigned_at) / (double) USECS_PER_SEC);
	return sum / Max(span, 1.0);
}

/* held_back_by as an int[] literal, from each partition's holds_watermark. */
static char *
sv_holders(const SvVersion *v)
{
	StringInfoData buf;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int p = 0; p < v->nparts; p++)
		if (v->parts[p].holds_watermark)
		{
			appendStringInfo(&buf, "%s%d", first ? "" : ",", p);
			first = false;
		}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/*
 * Store the stats of the versions whose batch read messages (their rate as
 * of now, the batch's time and duration so far), and of those whose
 * watermark holders changed since they were last stored, in one upsert.
 * Call after the watermarks were computed (streamview_refresh_watermarks).
 */
void
streamview_store_stats(const SvSource *src, List *versions, TimestampTz now)
{
	int			nv = list_length(versions);
	Datum	   *ids = palloc(Max(nv, 1) * sizeof(Datum));
	Datum	   *read = palloc(Max(nv, 1) * sizeof(Datum));
	Datum	   *rates = palloc(Max(nv, 1) * sizeof(Datum));
	Datum	   *held = palloc(Max(nv, 1) * sizeof(Datum));
	int			n = 0;
	ListCell   *lc;
	Oid			argtypes[5] = {INT4ARRAYOID, BOOLARRAYOID, FLOAT8ARRAYOID, TEXTARRAYOID, INT4OID};
	Datum		args[5];

	foreach(lc, versions)
	{
		SvVersion  *v = lfirst(lc);

		if (v->failed || (!v->batch_read && v->holders_saved))
			continue;
		ids[n] = Int32GetDatum(v->version_id);
		read[n] = BoolGetDatum(v->batch_read);
		rates[n] = Float8GetDatum(sv_rate(src, v, now));
		held[n] = CStringGetTextDatum(sv_holders(v));
		n++;
		v->batch_read = false;
		v->holders_saved = true;
	}
	if (n == 0)
		return;
	args[0] = PointerGetDatum(construct_array(ids, n, INT4OID, 4, true, TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(read, n, BOOLOID, 1, true, TYPALIGN_CHAR));
	args[2] = PointerGetDatum(construct_array(rates, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = PointerGetDatum(construct_array(held, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[4] = Int32GetDatum(src->worker_index);
	SPI_execute_with_args("INSERT INTO streamview.version_stats AS st "
						  "(version_id, worker, batch_at, batch_duration, events_per_second, held_back_by) "
						  "SELECT u.id, $5, CASE WHEN u.read THEN now() END, "
						  "CASE WHEN u.read THEN clock_timestamp() - now() END, "
						  "CASE WHEN u.read THEN u.rate END, u.held::int[] "
						  "FROM unnest($1, $2, $3, $4) AS u (id, read, rate, held) "
						  "ON CONFLICT (version_id, worker) DO UPDATE SET "
						  "batch_at = coalesce(excluded.batch_at, st.batch_at), "
						  "batch_duration = coalesce(excluded.batch_duration, st.batch_duration), "
						  "events_per_second = coalesce(excluded.events_per_second, st.events_per_second), "
						  "held_back_by = excluded.held_back_by",
						  5, argtypes, args, NULL, false, 0);
}
