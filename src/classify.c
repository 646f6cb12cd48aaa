/*-------------------------------------------------------------------------
 *
 * classify.c
 *	  The time semantics of DESIGN.md as pure rules: what each message is to
 *	  a version (applied, duplicate, too late, dead letter), and the
 *	  watermark.  No SPI, no catalog: state in, state out, like window.c.
 *
 * Per version, each message the version has not consumed yet is classified,
 * in this order (DESIGN.md, "Time semantics"):
 *	 unreadable → dead letter; event_id already applied → duplicate;
 *	 event time < watermark[p] − allowed lateness → too_late; else applied.
 * watermark[p] is max event time seen earlier in partition p minus the
 * source's max_out_of_orderness, so the classification depends only on the
 * partition's own history: the same log gives the same result whatever the
 * batch boundaries.  The ids a version remembers are in v->seen (seen.c),
 * loaded by ledger.c with the version; classification adds the ids it
 * applies, and ledger.c stores them with the batch.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"


/* A version's state for partition p, growing the array when p is new. */
SvPartState *
streamview_part(SvVersion *v, int32 partition)
{
	if (partition >= v->nparts)
	{
		int			n = partition + 1;

		v->parts = repalloc(v->parts, n * sizeof(SvPartState));
		for (int p = v->nparts; p < n; p++)
		{
			memset(&v->parts[p], 0, sizeof(SvPartState));
			v->parts[p].next_offset = -1;
			v->parts[p].log_end = -1;
		}
		v->nparts = n;
	}
	return &v->parts[partition];
}

/*
 * The lowest event time that can still be applied in partition p (its
 * watermark minus the view's allowed lateness), or false when the partition
 * has no history yet (everything can).
 */
bool
streamview_lateness_floor(const SvSource *src, SvVersion *v, int32 p, TimestampTz *floor)
{
	SvPartState *ps = streamview_part(v, p);

	if (!ps->has_max)
		return false;
	*floor = ps->max_event_time - src->ooo_us - v->lateness_us;
	return true;
}

static bool
sv_is_duplicate(const SvSource *src, SvVersion *v, const SvEvent *ev)
{
	int32		partition;
	TimestampTz event_time;
	TimestampTz floor;

	if (ev->event_id == NULL || !streamview_seen_find(v->seen, ev->event_id_hash, &partition, &event_time))
		return false;

	/*
	 * An id is remembered while an event carrying it could still be applied
	 * in the partition where it was applied.  Past that it counts as
	 * forgotten here, even if it is still in the set or stored (both are
	 * purged in arrears), so the outcome does not depend on when purging
	 * happened.
	 */
	if (streamview_lateness_floor(src, v, partition, &floor) && event_time < floor)
		return false;
	return true;
}

/*
 * Remember the id of an event just applied.  The set is swept as it grows,
 * within the batch too: a batch can span far more event time than the
 * horizon, and a set kept near the horizon's size stays in the CPU's cache.
 */
static void
sv_remember(const SvSource *src, SvVersion *v, const SvEvent *ev)
{
	if (ev->event_id == NULL)
		return;
	streamview_seen_add(v->seen, ev->event_id_hash, ev->partition, ev->event_time);
	streamview_seen_evict(src, v);
}

/* An event classified as applied could not be: its id is not remembered. */
void
streamview_unremember(SvVersion *v, const SvEvent *ev)
{
	if (v->seen != NULL && ev->event_id != NULL)
		streamview_seen_remove(v->seen, ev->event_id_hash);
}

/*
 * Offsets a partition skipped: deleted by retention or compaction, or taken
 * by transaction markers (one offset each, not reported).  Principle 3:
 * nothing disappears without a trace, so larger gaps are recorded.
 */
static void
sv_note_gap(SvVersion *v, const SvEvent *ev, StringInfo gaps)
{
	SvPartState *ps = &v->parts[ev->partition];

	if (gaps == NULL || ps->next_offset < 0 || ev->offset <= ps->next_offset + 1)
		return;
	appendStringInfo(gaps, "%spartition %d: offsets " INT64_FORMAT " to " INT64_FORMAT,
					 gaps->len ? "; " : "", ev->partition, ps->next_offset, ev->offset - 1);
}

/*
 * Classify the batch for one version, advancing its in-memory state (the
 * ledger, offsets, event-time high marks) and filling vb's lists of applied
 * and too-late events.  v->seen, when the source has event ids, holds the
 * ids the version remembers.  now stamps the partitions'
 * last_message_at; gaps, when not NULL, collects skipped offsets.
 */
void
streamview_classify(const SvSource *src, SvVersion *v, SvEvent *events, int n,
					SvVersionBatch *vb, TimestampTz now, StringInfo gaps)
{
	vb->applied = palloc(n * sizeof(int));
	vb->too_late = palloc(n * sizeof(int));
	vb->failed = palloc(n * sizeof(int));

	for (int i = 0; i < n; i++)
	{
		SvEvent    *ev = &events[i];
		SvPartState *ps = streamview_part(v, ev->partition);
		TimestampTz floor;

		if (ps->next_offset >= 0 && ev->offset < ps->next_offset)
			continue;			/* consumed by this version before */
		sv_note_gap(v, ev, gaps);
		ps->consumed++;
		vb->consumed++;
		ps->dirty = true;
		ps->next_offset = ev->offset + 1;
		ps->last_message_at = now;
		if (ev->has_broker_time && (!ps->has_broker_time || ev->broker_time > ps->max_broker_time))
		{
			ps->has_broker_time = true;
			ps->max_broker_time = ev->broker_time;
		}
		if (ev->reason != SV_REASON_NONE)
		{
			ps->dead_lettered++;
			continue;
		}
		if (v->seen && sv_is_duplicate(src, v, ev))
			ps->duplicates++;
		else if (streamview_lateness_floor(src, v, ev->partition, &floor) && ev->event_time < floor)
		{
			ps->too_late++;
			vb->too_late[vb->ntoo_late++] = i;
		}
		else
		{
			ps->applied++;
			vb->applied[vb->napplied++] = i;
			if (v->seen)
				sv_remember(src, v, ev);
		}
		if (!ps->has_max || ev->event_time > ps->max_event_time)
		{
			ps->has_max = true;
			ps->max_event_time = ev->event_time;
		}
	}
}

/*
 * Is partition p idle: nothing read from it for the source's idle_timeout,
 * as of now?  One that never delivered counts from when the worker was
 * assigned the topic.
 */
static bool
sv_idle(const SvSource *src, const SvPartState *ps, TimestampTz now)
{
	TimestampTz last = ps->last_message_at != 0 ? ps->last_message_at : src->assigned_at;

	return src->idle_timeout_us >= 0 && last != 0 && last < now - src->idle_timeout_us;
}

/*
 * The view's watermark: the minimum over the topic's partitions of
 * max event time − max_out_of_orderness.  Every partition the source reads
 * counts (all of them, unless partitions => names some), so a
 * window shown as final stays final: one that has delivered nothing yet
 * holds the watermark back, unless it is idle (nothing for the source's
 * idle_timeout, as of now), and idle partitions are left out.  It never
 * goes back: false when there is none, or it would not move forward.
 *
 * Each partition's holds_watermark says whether it is what keeps the
 * watermark where it is (streamview.status.held_back_by): the active
 * partitions that have delivered nothing yet, or else those at the
 * minimum; none when every partition is idle.  A change of them unsets
 * v->holders_saved.
 */
bool
streamview_compute_watermark(const SvSource *src, SvVersion *v, TimestampTz now,
							 TimestampTz *result)
{
	bool		any = false;
	bool		complete = true;	/* every active partition has history */
	TimestampTz wm = 0;
	int			nparts = Max(v->nparts, src->topic_partitions);

	(void) streamview_part(v, nparts - 1);	/* every partition has a state */
	for (int p = 0; p < nparts; p++)
	{
		SvPartState *ps = &v->parts[p];

		if (!streamview_source_reads_partition(src, p) || sv_idle(src, ps, now))
			continue;
		if (!ps->has_max)
			complete = false;	/* an active partition without history yet */
		else if (!any || ps->max_event_time - src->ooo_us < wm)
		{
			wm = ps->max_event_time - src->ooo_us;
			any = true;
		}
	}
	for (int p = 0; p < nparts; p++)
	{
		SvPartState *ps = &v->parts[p];
		bool		holds = streamview_source_reads_partition(src, p) && !sv_idle(src, ps, now) &&
			(complete ? ps->max_event_time - src->ooo_us == wm : !ps->has_max);

		if (holds != ps->holds_watermark)
			v->holders_saved = false;
		ps->holds_watermark = holds;
	}
	if (!complete || !any || (v->has_watermark && wm <= v->watermark))
		return false;
	*result = wm;
	return true;
}
