/*-------------------------------------------------------------------------
 *
 * sv_fuzz_check.c
 *	  What a decoder promises about the event it fills, whatever the input.
 *
 * Not crashing is not enough: the rest of the worker trusts the event.
 * apply.c stores a readable event's values in a table and its event time in
 * the ledger, and a dead letter's error in a text column, so each must be a
 * valid value of its type in the database's encoding.  These checks are
 * written from the contract (docs/reference.md, DESIGN.md), not from the
 * decoder's code; the event time bounds are worked out here a second time
 * on purpose, in 128 bits, so that an overflow in the decoder's own
 * arithmetic cannot hide.  A broken promise aborts (sv_fuzz_fail).
 *
 *-------------------------------------------------------------------------
 */
#include "sv_fuzz.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

/* Text we hand to the database must be valid in its encoding. */
static void
sv_check_text(const char *what, const char *s)
{
	if (s == NULL)
		sv_fuzz_fail("%s is NULL", what);
	if (!pg_verify_mbstr(GetDatabaseEncoding(), s, strlen(s), true))
		sv_fuzz_fail("%s is not valid in the database encoding %s: \"%s\"",
					 what, GetDatabaseEncodingName(), s);
}

/* Is the event time more than max_future ahead of the broker's?  Exactly. */
static bool
sv_is_future(const SvSource *src, const SvEvent *ev)
{
	return src->max_future_us >= 0 && ev->has_broker_time &&
		(__int128) ev->event_time - (__int128) ev->broker_time > (__int128) src->max_future_us;
}

static void
sv_check_event_time(const SvEvent *ev)
{
	const int64 first = (int64) (date2j(1, 1, 1) - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY;
	const int64 end = (int64) (date2j(10000, 1, 1) - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY;

	if (ev->event_time < first || ev->event_time >= end)
		sv_fuzz_fail("event time " INT64_FORMAT " is outside the years 1 to 9999", ev->event_time);
}

/* A column's value: finite if a number, and it prints (as apply.c stores it). */
static void
sv_check_value(const SvColumn *col, Datum value)
{
	Oid			output;
	bool		varlena;
	char	   *text;

	if ((col->type == FLOAT8OID && !isfinite(DatumGetFloat8(value))) ||
		(col->type == FLOAT4OID && !isfinite(DatumGetFloat4(value))) ||
		(col->type == NUMERICOID && (numeric_is_nan(DatumGetNumeric(value)) ||
									 numeric_is_inf(DatumGetNumeric(value)))))
		sv_fuzz_fail("column \"%s\": a value that is not finite was accepted", col->name);
	getTypeOutputInfo(col->type, &output, &varlena);
	text = OidOutputFunctionCall(output, value);
	sv_check_text(col->name, text);
}

static void
sv_check_readable(const SvSource *src, const SvEvent *ev)
{
	if (ev->error != NULL)
		sv_fuzz_fail("a readable event has an error: %s", ev->error);
	if (ev->nulls[src->event_time_col])
		sv_fuzz_fail("a readable event has no event time");
	if (ev->event_time != DatumGetTimestampTz(ev->values[src->event_time_col]))
		sv_fuzz_fail("the event time is not its column's value");
	sv_check_event_time(ev);
	if (sv_is_future(src, ev))
		sv_fuzz_fail("an event more than max_future ahead of its broker time was accepted");
	for (int c = 0; c < src->ncolumns; c++)
	{
		if (ev->nulls[c])
		{
			if (src->columns[c].required)
				sv_fuzz_fail("required column \"%s\" is null", src->columns[c].name);
			continue;
		}
		sv_check_value(&src->columns[c], ev->values[c]);
	}
	if (src->event_id_col < 0 || ev->nulls[src->event_id_col])
	{
		if (ev->event_id != NULL)
			sv_fuzz_fail("an event without an id has one: %s", ev->event_id);
	}
	else
		sv_check_text("the event id", ev->event_id);
}

static void
sv_check_unreadable(const SvSource *src, const SvEvent *ev)
{
	switch (ev->reason)
	{
		case SV_REASON_INVALID_JSON:
		case SV_REASON_MISSING_FIELD:
		case SV_REASON_INVALID_VALUE:
		case SV_REASON_SCHEMA_ERROR:
		case SV_REASON_INVALID_MESSAGE:
			break;
		case SV_REASON_FUTURE_TIME:
			sv_check_event_time(ev);
			if (!sv_is_future(src, ev))
				sv_fuzz_fail("future_time for an event that is not more than max_future ahead "
							 "(event time " INT64_FORMAT ", broker time " INT64_FORMAT ")",
							 ev->event_time, ev->broker_time);
			break;
		default:
			sv_fuzz_fail("a decoder gave reason %d", (int) ev->reason);
	}
	sv_check_text("the dead letter's error", ev->error);
	if (ev->error[0] == '\0')
		sv_fuzz_fail("a dead letter without an explanation (%s)",
					 streamview_reason_name(ev->reason));
}

/*
 * Check the event a decoder made of data, size: it is readable and right,
 * or a dead letter with a reason and an explanation.  Either way its
 * payload is still the message's bytes, which a dead letter stores.
 */
void
sv_fuzz_check_event(const SvSource *src, const SvEvent *ev, const uint8_t *data, size_t size)
{
	if (ev->paylen != (int) size || memcmp(ev->payload, data, size) != 0)
		sv_fuzz_fail("the decoder changed the payload");
	if (ev->values == NULL || ev->nulls == NULL)
		sv_fuzz_fail("the event has no values");
	if (ev->reason == SV_REASON_NONE)
		sv_check_readable(src, ev);
	else
		sv_check_unreadable(src, ev);
}
