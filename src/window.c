/*-------------------------------------------------------------------------
 *
 * window.c
 *	  Event-time window arithmetic: pure functions, no catalog access.
 *
 * Windows are aligned to the Unix epoch in UTC, so a window's bounds depend
 * only on the event time and the window's size and slide, never on the
 * server's time zone or on when the event was read.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

/*
 * For pg_mul_s64_overflow and pg_add_s64_overflow.  Not to be had through
 * access/tupmacs.h: 15.20's includes common/int.h, 15.18's does not, and
 * the build failed against 15.18 (make test SANITIZE=1 builds against it).
 */
#include "common/int.h"
#include "fmgr.h"
#include "utils/builtins.h"

/* Microseconds from the Unix epoch to PostgreSQL's (2000-01-01). */
#define SV_UNIX_TO_PG_USECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

/*
 * Length of an interval in microseconds.  Days count as 24 hours (windows
 * are UTC); months have no fixed length and are refused.
 */
int64
streamview_interval_usecs(const Interval *iv, const char *what)
{
	int64		result;

	if (iv->month != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not contain months or years", what),
				 errdetail("Months and years have no fixed length."),
				 errhint("Use days instead, such as '30 days'.")));
	if (pg_mul_s64_overflow((int64) iv->day, USECS_PER_DAY, &result) ||
		pg_add_s64_overflow(result, iv->time, &result))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("%s is out of range", what)));
	return result;
}

/*
 * Largest multiple of step (counted from the Unix epoch) that is <= ts.
 * (ts + epoch shift) mod step, computed as the sum of the two remainders so
 * that nothing overflows near the ends of the timestamp range.
 */
TimestampTz
streamview_window_floor(TimestampTz ts, int64 step_us)
{
	int64		r = ts % step_us + SV_UNIX_TO_PG_USECS % step_us;

	r %= step_us;
	if (r < 0)
		r += step_us;
	return ts - r;
}

/* A window start computed from a timestamp the SQL caller gave: in range? */
static TimestampTz
sv_checked(TimestampTz start)
{
	if (!IS_VALID_TIMESTAMP(start))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range"),
				 errdetail("The window that contains it starts before the earliest timestamp.")));
	return start;
}

/*
 * Starts of every window that contains ts, latest first.  A tumbling window
 * gives one; a hopping window of size S and slide D gives the multiples of D
 * in (ts - S, ts], which is S/D of them when D divides S.
 */
int
streamview_window_starts(const SvWindow *w, TimestampTz ts, TimestampTz *starts)
{
	TimestampTz s = streamview_window_floor(ts, w->slide_us);
	int			n = 0;

	if (w->kind == SV_WINDOW_TUMBLE)
	{
		starts[0] = s;
		return 1;
	}
	while (s > ts - w->size_us && n < SV_MAX_WINDOWS_PER_EVENT)
	{
		starts[n++] = s;
		s -= w->slide_us;
	}
	return n;
}

static int64
sv_positive_usecs(Interval *iv, const char *what)
{
	int64		us = streamview_interval_usecs(iv, what);

	if (us <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be positive", what),
				 errhint("Write a positive interval such as '1 minute'.")));
	return us;
}

PG_FUNCTION_INFO_V1(streamview_tumble);
PGDLLEXPORT Datum streamview_tumble(PG_FUNCTION_ARGS);

Datum
streamview_tumble(PG_FUNCTION_ARGS)
{
	TimestampTz ts = PG_GETARG_TIMESTAMPTZ(0);
	int64		size = sv_positive_usecs(PG_GETARG_INTERVAL_P(1), "window size");

	if (TIMESTAMP_NOT_FINITE(ts))
		PG_RETURN_TIMESTAMPTZ(ts);
	PG_RETURN_TIMESTAMPTZ(sv_checked(streamview_window_floor(ts, size)));
}

PG_FUNCTION_INFO_V1(streamview_hop);
PGDLLEXPORT Datum streamview_hop(PG_FUNCTION_ARGS);

Datum
streamview_hop(PG_FUNCTION_ARGS)
{
	TimestampTz ts = PG_GETARG_TIMESTAMPTZ(0);
	int64		size = sv_positive_usecs(PG_GETARG_INTERVAL_P(1), "window size");
	int64		slide = sv_positive_usecs(PG_GETARG_INTERVAL_P(2), "window slide");

	if (slide > size)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("window slide must not be larger than the window size")));
	if (TIMESTAMP_NOT_FINITE(ts))
		PG_RETURN_TIMESTAMPTZ(ts);
	PG_RETURN_TIMESTAMPTZ(sv_checked(streamview_window_floor(ts, slide)));
}
