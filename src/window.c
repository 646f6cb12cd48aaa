/*-------------------------------------------------------------------------
 *
 * window.c
 *	  Event-time window arithmetic: pure functions, no catalog access.
 *
 * Without a time zone (streamview.tumble(ts, size), streamview.hop(ts,
 * size, slide)), windows have a fixed length and are aligned to the Unix
 * epoch in UTC, so a window's bounds depend only on the event time and the
 * window's size and slide, never on the server's time zone or on when the
 * event was read.
 *
 * With a time zone (streamview.tumble(ts, size, time_zone, origin) and
 * streamview.hop(ts, size, slide, time_zone, origin)), windows are laid
 * out on that zone's wall clock: they start at origin + k·slide, wall-clock
 * times, where the size and slide are either lengths of wall-clock time
 * (a day is 24 hours of the wall clock, so '1 day' is a calendar day) or a
 * number of calendar months (added as PostgreSQL adds months: from the
 * 31st, a month later is the last day of a shorter month).  A window runs
 * from the instant the wall clock first shows its start to the instant it
 * first shows its end, which is the next window's start: a '1 day' window
 * in Europe/Paris runs from local midnight to local midnight, 23 or 25
 * hours across a change of clocks.  "First shows" settles both kinds of
 * change:
 *	 - clocks going back show some times twice: windows go by the highest
 *	   time the clock has shown so far, so the repeated hour stays in the
 *	   window that was open when the clocks went back (which is longer);
 *	 - clocks going forward skip some times: a skipped time is first shown
 *	   at the jump, so a window that starts in the gap starts at the jump,
 *	   and one that starts and ends in it is empty (no event falls in it).
 * Windows so cover the time line once, each event's window has start <=
 * event time < end, and hop windows that start in the same gap would start
 * at the same instant: a view keeps one row per window start, so of those
 * only the one that starts last on the wall clock (the longest) is used.
 *
 * The zone is an argument, never the session's TimeZone, and is looked up
 * only among the time zone database's names (never in the
 * timezone_abbreviations setting), so these functions are IMMUTABLE in the
 * sense that PostgreSQL's own AT TIME ZONE is: until the time zone data
 * itself changes.
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
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/tuplestore.h"

/* Microseconds from the Unix epoch to PostgreSQL's (2000-01-01). */
#define SV_UNIX_TO_PG_USECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)
#define SV_UNIX_TO_PG_SECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY)

/* ---------- sizes and zones ---------- */

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

static int64
sv_positive_usecs(const Interval *iv, const char *what)
{
	int64		us = streamview_interval_usecs(iv, what);

	if (us <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be positive", what),
				 errhint("Write a positive interval such as '1 minute'.")));
	return us;
}

/*
 * A window's size or slide on a zone's wall clock: a number of calendar
 * months, or a length of wall-clock time.  Both at once has no clear
 * meaning (how long is '1 month 1 day' from January 31?) and is refused,
 * as TimescaleDB's time_bucket refuses it.
 */
void
streamview_window_length(const Interval *iv, const char *what, int32 *months, int64 *usecs)
{
	if (iv->month != 0 && (iv->day != 0 || iv->time != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not mix months with days or time", what),
				 errdetail("The value given was %s.",
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(iv)))),
				 errhint("Use whole months, such as '3 months', or days and time, such as '90 days'.")));
	*months = iv->month;
	*usecs = iv->month != 0 ? 0 : streamview_interval_usecs(iv, what);
	if (*months < 0 || *usecs < 0 || (*months == 0 && *usecs == 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be positive", what),
				 errhint("Write a positive interval such as '1 day' or '1 month'.")));
}

/*
 * A time zone by its name in the time zone database (pg_timezone_names),
 * or a POSIX time zone specification.  Abbreviations are not looked up:
 * what they mean is a setting (timezone_abbreviations), and a window must
 * not depend on settings.
 */
pg_tz *
streamview_time_zone(const char *name)
{
	pg_tz	   *tz = pg_tzset(name);

	if (tz == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time zone \"%s\" not recognized", name),
				 errdetail("A window's time zone is a name from the time zone database; abbreviations are not looked up."),
				 errhint("Use a name from pg_timezone_names, such as 'Europe/Paris' or 'UTC'.")));
	if (!pg_tz_acceptable(tz))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time zone \"%s\" counts leap seconds", name),
				 errdetail("PostgreSQL's timestamps do not count leap seconds."),
				 errhint("Use the zone's name without \"right/\".")));
	return tz;
}

/*
 * A window from its parts, checked.  tz NULL: epoch-aligned UTC windows of
 * fixed length (origin is not used).  For a tumbling window, slide is the
 * size.
 */
void
streamview_window_init(SvWindow *w, SvWindowKind kind, const Interval *size,
					   const Interval *slide, pg_tz *tz, Timestamp origin)
{
	memset(w, 0, sizeof(SvWindow));
	w->kind = kind;
	w->tz = tz;
	if (tz == NULL)
	{
		w->size_us = sv_positive_usecs(size, "window size");
		w->slide_us = kind == SV_WINDOW_HOP ? sv_positive_usecs(slide, "window slide") : w->size_us;
	}
	else
	{
		if (TIMESTAMP_NOT_FINITE(origin))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("window origin must be finite"),
					 errhint("Give a wall-clock time at which a window starts, such as '1970-01-01 00:00'.")));
		w->origin = origin;
		streamview_window_length(size, "window size", &w->size_months, &w->size_us);
		w->slide_months = w->size_months;
		w->slide_us = w->size_us;
		if (kind == SV_WINDOW_HOP)
			streamview_window_length(slide, "window slide", &w->slide_months, &w->slide_us);
		if ((w->size_months == 0) != (w->slide_months == 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("window size and slide must both be in months, or both without months"),
					 errhint("Write both in months, such as '3 months' and '1 month', or both in days and time, such as '7 days' and '1 day'.")));
	}
	if (w->slide_us > w->size_us || w->slide_months > w->size_months)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("window slide must not be larger than the window size"),
				 errhint("Use streamview.tumble() for windows that do not overlap.")));
}

/* ---------- arithmetic that stays in range ---------- */

static void pg_attribute_noreturn()
sv_out_of_range(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
			 errmsg("timestamp out of range"),
			 errdetail("A window's bounds would be outside the range of timestamps.")));
}

static int64
sv_add(int64 a, int64 b)
{
	int64		r;

	if (pg_add_s64_overflow(a, b, &r))
		sv_out_of_range();
	return r;
}

/* a / b rounded down, for b > 0 */
static int64
sv_floor_div(int64 a, int64 b)
{
	return a / b - (a % b < 0 ? 1 : 0);
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

/* ---------- windows without a time zone ---------- */

/*
 * Largest multiple of step (counted from the Unix epoch) that is <= ts.
 * (ts + epoch shift) mod step, computed as the sum of the two remainders so
 * that nothing overflows near the ends of the timestamp range.
 */
static TimestampTz
sv_utc_floor(TimestampTz ts, int64 step_us)
{
	int64		r = ts % step_us + SV_UNIX_TO_PG_USECS % step_us;

	r %= step_us;
	if (r < 0)
		r += step_us;
	return ts - r;
}

/* ---------- a zone's wall clock ---------- */

/* The Unix second that contains t (an instant, or a wall-clock time read as one). */
static pg_time_t
sv_unix_seconds(int64 t)
{
	return sv_floor_div(t, USECS_PER_SEC) + SV_UNIX_TO_PG_SECS;
}

/*
 * A change of the zone's UTC offset: the first instant of the new offset,
 * and the offsets before and after, in microseconds east of UTC.
 */
typedef struct SvShift
{
	bool		found;			/* false: no change after the time asked */
	TimestampTz at;
	pg_time_t	at_secs;
	int64		before_us;		/* in force at the time asked, if !found */
	int64		after_us;
} SvShift;

/* The zone's first change of offset after Unix second s. */
static void
sv_next_shift(const SvWindow *w, pg_time_t s, SvShift *sh)
{
	long int	before;
	long int	after;
	int			before_dst;
	int			after_dst;
	pg_time_t	boundary;
	int			r = pg_next_dst_boundary(&s, &before, &before_dst, &boundary,
										 &after, &after_dst, w->tz);

	if (r < 0)
		elog(ERROR, "could not read the changes of time zone \"%s\"", pg_get_timezone_name(w->tz));
	sh->before_us = (int64) before * USECS_PER_SEC;
	sh->after_us = (int64) after * USECS_PER_SEC;
	sh->at_secs = boundary;
	/* a change past the end of the timestamp range is no change for us */
	sh->found = r == 1 &&
		!pg_mul_s64_overflow(boundary - SV_UNIX_TO_PG_SECS, USECS_PER_SEC, &sh->at);
}

/*
 * The highest wall-clock time the zone's clock has shown by instant ts:
 * its time at ts, except for a while after the clocks went back, when it
 * shows times it showed before.  UTC offsets are less than a day, so only
 * the changes of the last two days can matter.
 */
static Timestamp
sv_wall_high(const SvWindow *w, TimestampTz ts)
{
	pg_time_t	s = sv_unix_seconds(ts) - 2 * SECS_PER_DAY;
	int64		high = PG_INT64_MIN;
	SvShift		sh;

	for (;;)
	{
		sv_next_shift(w, s, &sh);
		if (!sh.found || sh.at > ts)
			break;
		/* what it showed the microsecond before the change */
		high = Max(high, sv_add(sh.at - 1, sh.before_us));
		s = sh.at_secs;
	}
	return Max(high, sv_add(ts, sh.before_us));
}

/*
 * The first instant at which the zone's clock shows wall-clock time l or a
 * later one: l itself if it is ever shown, the jump if the clocks skip it.
 * Walks the stretches of one offset from a day before l (no instant
 * earlier than that can show l) and returns the first instant, in the
 * first stretch that has one, whose wall-clock time is >= l.
 */
static TimestampTz
sv_first_shown(const SvWindow *w, Timestamp l)
{
	pg_time_t	s = sv_unix_seconds(l) - SECS_PER_DAY;
	TimestampTz stretch_start = PG_INT64_MIN;
	SvShift		sh;

	for (;;)
	{
		TimestampTz t;

		sv_next_shift(w, s, &sh);
		t = Max(stretch_start, sv_add(l, -sh.before_us));
		if (!sh.found || t < sh.at)
			return t;
		stretch_start = sh.at;
		s = sh.at_secs;
	}
}

/* Months from 0000-01 to t's month, on the wall clock. */
static int64
sv_month_number(Timestamp t)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
		sv_out_of_range();
	return (int64) tm.tm_year * MONTHS_PER_YEAR + tm.tm_mon - 1;
}

/* t + months, as PostgreSQL adds months to a timestamp. */
static Timestamp
sv_add_months(Timestamp t, int64 months)
{
	struct pg_tm tm;
	fsec_t		fsec;
	Timestamp	result;
	int64		m;

	if (timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
		sv_out_of_range();
	m = (int64) tm.tm_year * MONTHS_PER_YEAR + tm.tm_mon - 1 + months;
	if (m < (int64) -300000 * MONTHS_PER_YEAR || m > (int64) 300000 * MONTHS_PER_YEAR)
		sv_out_of_range();
	tm.tm_year = (int) sv_floor_div(m, MONTHS_PER_YEAR);
	tm.tm_mon = (int) (m - (int64) tm.tm_year * MONTHS_PER_YEAR) + 1;
	if (tm.tm_mday > day_tab[isleap(tm.tm_year)][tm.tm_mon - 1])
		tm.tm_mday = day_tab[isleap(tm.tm_year)][tm.tm_mon - 1];
	if (tm2timestamp(&tm, fsec, NULL, &result) != 0 || !IS_VALID_TIMESTAMP(result))
		sv_out_of_range();
	return result;
}

/*
 * Window starts on the wall clock are origin + k·slide.  The largest k
 * whose start is <= wall-clock time high: its number, and (for a slide of
 * fixed length) its start.
 */
static int64
sv_wall_floor(const SvWindow *w, Timestamp high, Timestamp *start)
{
	int64		k;

	if (w->slide_months == 0)
	{
		/* (high - origin) mod slide, without overflow */
		int64		r = (high % w->slide_us - w->origin % w->slide_us) % w->slide_us;

		if (r < 0)
			r += w->slide_us;
		*start = sv_add(high, -r);
		return 0;
	}
	k = sv_floor_div(sv_month_number(high) - sv_month_number(w->origin), w->slide_months);
	*start = sv_add_months(w->origin, k * w->slide_months);
	if (*start > high)
	{
		/* high is in the same month as that start, but earlier in it */
		k--;
		*start = sv_add_months(w->origin, k * w->slide_months);
	}
	return k;
}

/*
 * The wall-clock bounds of the window j slides before the one found by
 * sv_wall_floor (k, start).  Months are counted from the origin each time,
 * so that a window's end is always the next one's start.
 */
static void
sv_wall_window(const SvWindow *w, int64 k, Timestamp start, int j,
			   Timestamp *lo, Timestamp *hi)
{
	if (w->slide_months == 0)
	{
		*lo = sv_add(start, -(j * w->slide_us));
		*hi = sv_add(*lo, w->size_us);
	}
	else
	{
		*lo = sv_add_months(w->origin, (k - j) * w->slide_months);
		*hi = sv_add_months(w->origin, (k - j) * w->slide_months + w->size_months);
	}
}

/* ---------- what the rest of the extension asks ---------- */

/*
 * Start and end of every window that contains ts, latest first.  A
 * tumbling window gives one; a hopping window of size S and slide D gives
 * those that start at the multiples of D in (ts - S, ts] (on the zone's
 * wall clock, with a time zone), which is S/D of them when D divides S.
 */
int
streamview_window_spans(const SvWindow *w, TimestampTz ts, TimestampTz *starts, TimestampTz *ends)
{
	int			n = 0;
	Timestamp	start;
	int64		k;

	if (w->tz == NULL)
	{
		TimestampTz s = sv_utc_floor(ts, w->slide_us);

		do
		{
			starts[n] = s;
			ends[n++] = sv_add(s, w->size_us);
			s -= w->slide_us;
		} while (w->kind == SV_WINDOW_HOP && s > ts - w->size_us && n < SV_MAX_WINDOWS_PER_EVENT);
		return n;
	}

	k = sv_wall_floor(w, sv_wall_high(w, ts), &start);
	for (int j = 0; j < SV_MAX_WINDOWS_PER_EVENT; j++)
	{
		Timestamp	lo;
		Timestamp	hi;
		TimestampTz s;
		TimestampTz e;

		sv_wall_window(w, k, start, j, &lo, &hi);
		e = sv_first_shown(w, hi);
		if (e <= ts)
			break;				/* this window and every earlier one end by ts */
		s = sv_first_shown(w, lo);
		if (n > 0 && s == starts[n - 1])
			continue;			/* starts with a later, longer one: a gap */
		starts[n] = s;
		ends[n++] = e;
		if (w->kind == SV_WINDOW_TUMBLE)
			break;
	}
	return n;
}

/*
 * The start of the latest window that contains ts (ts finite): what
 * streamview.tumble() and streamview.hop() return.
 */
static TimestampTz
sv_latest_start(const SvWindow *w, TimestampTz ts)
{
	Timestamp	start;

	if (w->tz == NULL)
		return sv_utc_floor(ts, w->slide_us);
	(void) sv_wall_floor(w, sv_wall_high(w, ts), &start);
	return sv_first_shown(w, start);
}

/* ---------- SQL functions ---------- */

PG_FUNCTION_INFO_V1(streamview_tumble);
PGDLLEXPORT Datum streamview_tumble(PG_FUNCTION_ARGS);

Datum
streamview_tumble(PG_FUNCTION_ARGS)
{
	TimestampTz ts = PG_GETARG_TIMESTAMPTZ(0);
	int64		size = sv_positive_usecs(PG_GETARG_INTERVAL_P(1), "window size");

	if (TIMESTAMP_NOT_FINITE(ts))
		PG_RETURN_TIMESTAMPTZ(ts);
	PG_RETURN_TIMESTAMPTZ(sv_checked(sv_utc_floor(ts, size)));
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
	PG_RETURN_TIMESTAMPTZ(sv_checked(sv_utc_floor(ts, slide)));
}

/* A window with a time zone from SQL arguments (size, [slide,] zone, origin). */
static void
sv_window_from_args(SvWindow *w, SvWindowKind kind, const Interval *size, const Interval *slide,
					text *zone, Timestamp origin)
{
	streamview_window_init(w, kind, size, slide, streamview_time_zone(text_to_cstring(zone)), origin);
}

PG_FUNCTION_INFO_V1(streamview_tumble_tz);
PGDLLEXPORT Datum streamview_tumble_tz(PG_FUNCTION_ARGS);

/* streamview.tumble(ts, size, time_zone, origin) */
Datum
streamview_tumble_tz(PG_FUNCTION_ARGS)
{
	TimestampTz ts = PG_GETARG_TIMESTAMPTZ(0);
	SvWindow	w;

	sv_window_from_args(&w, SV_WINDOW_TUMBLE, PG_GETARG_INTERVAL_P(1), PG_GETARG_INTERVAL_P(1),
						PG_GETARG_TEXT_PP(2), PG_GETARG_TIMESTAMP(3));
	if (TIMESTAMP_NOT_FINITE(ts))
		PG_RETURN_TIMESTAMPTZ(ts);
	PG_RETURN_TIMESTAMPTZ(sv_checked(sv_latest_start(&w, ts)));
}

PG_FUNCTION_INFO_V1(streamview_hop_tz);
PGDLLEXPORT Datum streamview_hop_tz(PG_FUNCTION_ARGS);

/* streamview.hop(ts, size, slide, time_zone, origin) */
Datum
streamview_hop_tz(PG_FUNCTION_ARGS)
{
	TimestampTz ts = PG_GETARG_TIMESTAMPTZ(0);
	SvWindow	w;

	sv_window_from_args(&w, SV_WINDOW_HOP, PG_GETARG_INTERVAL_P(1), PG_GETARG_INTERVAL_P(2),
						PG_GETARG_TEXT_PP(3), PG_GETARG_TIMESTAMP(4));
	if (TIMESTAMP_NOT_FINITE(ts))
		PG_RETURN_TIMESTAMPTZ(ts);
	PG_RETURN_TIMESTAMPTZ(sv_checked(sv_latest_start(&w, ts)));
}

PG_FUNCTION_INFO_V1(streamview_window_spans_sql);
PGDLLEXPORT Datum streamview_window_spans_sql(PG_FUNCTION_ARGS);

/*
 * streamview_internal._window_spans(ts, size, slide, time_zone, origin): the windows
 * of a hop (a tumble when slide = size) that contain ts, as a stream view's
 * worker computes them (streamview_window_spans), latest first.
 * time_zone NULL: epoch-aligned UTC windows.  rebuild(start_from) asks it
 * how far the windows it carries over reach; the tests, what the worker
 * does with each event.
 */
Datum
streamview_window_spans_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz starts[SV_MAX_WINDOWS_PER_EVENT];
	TimestampTz ends[SV_MAX_WINDOWS_PER_EVENT];
	TimestampTz ts;
	SvWindow	w;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		return (Datum) 0;
	ts = PG_GETARG_TIMESTAMPTZ(0);
	if (PG_ARGISNULL(3))
		streamview_window_init(&w, SV_WINDOW_HOP, PG_GETARG_INTERVAL_P(1), PG_GETARG_INTERVAL_P(2),
							   NULL, 0);
	else
		sv_window_from_args(&w, SV_WINDOW_HOP, PG_GETARG_INTERVAL_P(1), PG_GETARG_INTERVAL_P(2),
							PG_GETARG_TEXT_PP(3), PG_ARGISNULL(4) ? DT_NOBEGIN : PG_GETARG_TIMESTAMP(4));
	if (TIMESTAMP_NOT_FINITE(ts))
		return (Datum) 0;
	n = streamview_window_spans(&w, ts, starts, ends);
	for (int i = 0; i < n; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		if (!IS_VALID_TIMESTAMP(ends[i]))
			sv_out_of_range();
		values[0] = TimestampTzGetDatum(sv_checked(starts[i]));
		values[1] = TimestampTzGetDatum(ends[i]);

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
