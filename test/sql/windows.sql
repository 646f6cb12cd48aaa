-- Windows on a time zone's wall clock: streamview.tumble(ts, size,
-- time_zone, origin) and streamview.hop(ts, size, slide, time_zone, origin)
-- against oracles that do not use the extension: PostgreSQL's date_trunc
-- and date_bin where they apply, and plain SQL over a minute grid of the
-- zone's wall clock where they do not (sub-day windows across changes of
-- clocks).  Each check prints how many timestamps it tried next to how many
-- differ, so that it fails if it tries none.  The session's TimeZone and
-- DateStyle are odd on purpose: the windows must not depend on them.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_streamview;
RESET client_min_messages;
\set SHOW_CONTEXT never
\pset null '(null)'
\i test/sql/helpers.psql
SET timezone = 'America/Los_Angeles';
SET datestyle = 'SQL, DMY';

-- The zones tried: both hemispheres, half-hour and 45-minute offsets, a
-- half-hour change of clocks (Lord_Howe), none at all (UTC, Kolkata).
CREATE TEMP TABLE zones (zone text PRIMARY KEY);
INSERT INTO zones VALUES ('Europe/Paris'), ('America/New_York'), ('Australia/Sydney'),
  ('Australia/Lord_Howe'), ('Asia/Kolkata'), ('Pacific/Chatham'), ('America/Sao_Paulo'), ('UTC');

-- Instants: 2023 and 2024 (a leap day, every change of clocks of those
-- years), 1965 to 1970 (before the Unix epoch), and, per zone, each local
-- midnight of 2023-2024 and the microseconds around it.
CREATE TEMP TABLE instants AS
SELECT z.zone, t FROM zones z,
       generate_series('2023-01-01 00:00:00+00'::timestamptz, '2025-01-01 00:00:00+00', '2 hours 47 minutes 11.5 seconds') t
UNION ALL
SELECT z.zone, t FROM zones z,
       generate_series('1965-01-01 00:00:00+00'::timestamptz, '1970-01-02 00:00:00+00', '1 day 13 hours 7 minutes 0.000001 seconds') t
UNION ALL
SELECT z.zone, (d AT TIME ZONE z.zone) + e FROM zones z,
       generate_series('2023-01-01'::timestamp, '2024-12-31', '1 day') d,
       (VALUES (interval '-1 microsecond'), (interval '0'), (interval '1 microsecond')) x(e);
SELECT count(*) > 70000 AS enough_instants FROM instants;

-- 1. Days, weeks, months, quarters and years against date_trunc(unit, ts,
-- zone): the start of the window, and its end as the worker computes it:
-- the start of the next unit on the wall clock (date_trunc of the wall-clock
-- time, plus the unit), as an instant.  (São Paulo's clocks went forward at
-- midnight in 1965: that day starts at 01:00 and lasts 23 hours.)
CREATE TEMP TABLE units (unit text, size interval, origin timestamp);
INSERT INTO units VALUES ('day', '1 day', '1970-01-01'), ('week', '7 days', '1970-01-05'),
  ('month', '1 month', '1970-01-01'), ('quarter', '3 months', '1970-01-01'),
  ('year', '1 year', '1970-01-01');
-- 1970-01-05 is a Monday, as date_trunc's weeks start
SELECT u.unit, u.size, count(*) AS tried,
       count(*) FILTER (WHERE streamview.tumble(i.t, u.size, i.zone, u.origin)
                              IS DISTINCT FROM date_trunc(u.unit, i.t, i.zone)) AS wrong_start,
       count(*) FILTER (WHERE (s.window_start, s.window_end) IS DISTINCT FROM
                              (date_trunc(u.unit, i.t, i.zone),
                               (date_trunc(u.unit, i.t AT TIME ZONE i.zone) + u.size) AT TIME ZONE i.zone))
         AS wrong_span
  FROM instants i, units u,
       LATERAL streamview_internal._window_spans(i.t, u.size, u.size, i.zone, u.origin) s
 GROUP BY 1, 2 ORDER BY 1, 2;
-- the default origin is 1970-01-01 00:00 on the wall clock
SELECT count(*) AS tried,
       count(*) FILTER (WHERE streamview.tumble(t, '1 month', zone)
                              <> streamview.tumble(t, '1 month', zone, '1970-01-01 00:00')) AS differ
  FROM instants;

-- 2. Lengths of time against date_bin.  In UTC (with an origin before or
-- after the timestamps) and without a time zone, and in zones that did not
-- change their clocks in these years, on the local wall clock.
CREATE TEMP TABLE lengths (size interval);
INSERT INTO lengths VALUES ('1 microsecond'), ('37 seconds'), ('15 minutes'), ('1 hour'), ('90 minutes'),
  ('1 day 3 hours'), ('7 days'), ('366 days');
CREATE TEMP TABLE origins (origin timestamp);
INSERT INTO origins VALUES ('1970-01-01 00:00'), ('2100-06-01 00:07:13'), ('1901-03-04 05:06:07.891234');
SELECT l.size, count(*) AS tried,
       count(*) FILTER (WHERE streamview.tumble(i.t, l.size, 'UTC') <> streamview.tumble(i.t, l.size))
         AS utc_differs_from_no_zone,
       count(*) FILTER (WHERE streamview.tumble(i.t, l.size) <> date_bin(l.size, i.t, '1970-01-01 00:00:00+00'))
         AS no_zone_wrong,
       count(*) FILTER (WHERE streamview.tumble(i.t, l.size, 'UTC', o.origin)
                              <> date_bin(l.size, i.t, o.origin AT TIME ZONE 'UTC')) AS utc_wrong,
       count(*) FILTER (WHERE streamview.tumble(i.t, l.size, z.zone, o.origin)
                              <> date_bin(l.size, i.t AT TIME ZONE z.zone, o.origin) AT TIME ZONE z.zone)
         AS fixed_offset_zone_wrong
  FROM instants i, lengths l, origins o, (VALUES ('Asia/Kolkata'), ('Asia/Tokyo')) z(zone)
 WHERE i.zone = 'UTC' AND i.t >= '1966-01-01 00:00:00+00'
 GROUP BY 1 ORDER BY 1;

-- 3. Sub-day windows across changes of clocks.  The oracle: the zone's
-- wall clock minute by minute (t AT TIME ZONE zone), the highest time it
-- has shown so far, date_bin of that on the wall clock; a window starts at
-- the first minute whose highest time reaches its start, and ends where
-- the next one starts.  Havana turns its clocks back from 01:00 to 00:00.
CREATE TEMP TABLE nights (zone text, lo timestamptz, hi timestamptz);
INSERT INTO nights VALUES
  ('Europe/Paris', '2024-03-30 00:00:00+00', '2024-04-01 00:00:00+00'),
  ('Europe/Paris', '2024-10-26 00:00:00+00', '2024-10-28 00:00:00+00'),
  ('America/New_York', '2024-03-09 12:00:00+00', '2024-03-11 12:00:00+00'),
  ('America/New_York', '2024-11-02 12:00:00+00', '2024-11-04 12:00:00+00'),
  ('Australia/Lord_Howe', '2024-04-05 00:00:00+00', '2024-04-07 00:00:00+00'),
  ('Australia/Lord_Howe', '2024-10-04 12:00:00+00', '2024-10-06 12:00:00+00'),
  ('America/Havana', '2024-03-09 12:00:00+00', '2024-03-11 12:00:00+00'),
  ('America/Havana', '2024-11-02 12:00:00+00', '2024-11-04 12:00:00+00');
CREATE TEMP TABLE clock AS
SELECT n.zone, n.lo, n.hi, t, max(t AT TIME ZONE n.zone) OVER (PARTITION BY n.zone, n.lo ORDER BY t) AS high
  FROM nights n, generate_series(n.lo, n.hi, '1 minute') t;
CREATE INDEX ON clock (zone, lo, high);
CREATE TEMP TABLE subday (size interval, origin timestamp);
INSERT INTO subday VALUES ('1 minute', '1970-01-01'), ('30 minutes', '1970-01-01'), ('45 minutes', '1970-01-01'),
  ('1 hour', '1970-01-01'), ('2 hours', '1970-01-01 00:15'), ('7 hours', '2024-01-01 01:00'),
  ('1 day', '1970-01-01 02:30');
CREATE TEMP TABLE binned AS
SELECT c.*, s.size, s.origin, date_bin(s.size, c.high, s.origin) AS l FROM clock c, subday s;
CREATE TEMP TABLE tumbles AS
SELECT zone, lo, size, origin, l, s, lead(s) OVER (PARTITION BY zone, lo, size, origin ORDER BY l) AS e
  FROM (SELECT zone, lo, size, origin, l, min(t) AS s FROM binned GROUP BY 1, 2, 3, 4, 5) x;
-- (the first window may have started before the grid, the last one's end is past it)
SELECT b.zone, b.size, count(*) AS tried,
       count(*) FILTER (WHERE ARRAY(SELECT ROW(x.window_start, x.window_end)
                                      FROM streamview_internal._window_spans(b.t, b.size, b.size, b.zone, b.origin) x)
                              <> ARRAY[ROW(w.s, w.e)]) AS wrong_span,
       count(*) FILTER (WHERE streamview.tumble(b.t, b.size, b.zone, b.origin) <> w.s) AS wrong_start
  FROM binned b JOIN tumbles w USING (zone, lo, size, origin, l)
 WHERE w.e IS NOT NULL AND w.s > b.lo
 GROUP BY 1, 2 ORDER BY 1, 2;

-- Hopping windows: window L (L on the slide's lattice, on the wall clock)
-- runs from the first minute whose highest time reaches L to the first
-- that reaches L + size; of windows that start at the same minute (inside
-- a skipped hour) only the one with the latest L is kept.  Every minute
-- must be in exactly the windows the worker would put it in, and hop()
-- must return the latest one's start.
CREATE TEMP TABLE hops (size interval, slide interval, origin timestamp);
INSERT INTO hops VALUES ('2 hours', '30 minutes', '1970-01-01'), ('3 hours', '1 hour', '1970-01-01 00:15'),
  ('50 minutes', '10 minutes', '1970-01-01 00:05');
CREATE TEMP TABLE lattice AS
SELECT n.zone, n.lo, h.size, h.slide, h.origin, l,
       (SELECT min(c.t) FROM clock c WHERE c.zone = n.zone AND c.lo = n.lo AND c.high >= l) AS s,
       (SELECT min(c.t) FROM clock c WHERE c.zone = n.zone AND c.lo = n.lo AND c.high >= l + h.size) AS e
  FROM nights n, hops h,
       generate_series(date_bin(h.slide, (n.lo AT TIME ZONE n.zone) - interval '1 day', h.origin),
                       (n.hi AT TIME ZONE n.zone) + interval '1 day', h.slide) l
 WHERE n.zone IN ('Europe/Paris', 'Australia/Lord_Howe', 'America/Havana');
CREATE TEMP TABLE hop_windows AS
SELECT DISTINCT ON (zone, lo, size, slide, origin, s) * FROM lattice WHERE s IS NOT NULL AND e IS NOT NULL
 ORDER BY zone, lo, size, slide, origin, s, l DESC;
CREATE INDEX ON hop_windows (zone, lo, size, slide, origin, s);
WITH expected AS (
    SELECT c.zone, c.lo, c.t, h.size, h.slide, h.origin,
           array_agg(ROW(w.s, w.e) ORDER BY w.s DESC) AS windows, max(w.s) AS latest
      FROM clock c CROSS JOIN hops h
      LEFT JOIN hop_windows w
        ON (w.zone, w.lo, w.size, w.slide, w.origin) = (c.zone, c.lo, h.size, h.slide, h.origin)
       AND w.s <= c.t AND c.t < w.e
     WHERE c.zone IN ('Europe/Paris', 'Australia/Lord_Howe', 'America/Havana')
       AND c.t >= c.lo + h.size + interval '2 hours' AND c.t < c.hi - h.size - interval '2 hours'
     GROUP BY 1, 2, 3, 4, 5, 6)
SELECT zone, size, slide, count(*) AS tried,
       count(*) FILTER (WHERE windows IS DISTINCT FROM
                              ARRAY(SELECT ROW(x.window_start, x.window_end)
                                      FROM streamview_internal._window_spans(t, size, slide, zone, origin) x)) AS wrong_windows,
       count(*) FILTER (WHERE streamview.hop(t, size, slide, zone, origin) IS DISTINCT FROM latest) AS wrong_hop
  FROM expected
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

-- What that means, in UTC: Paris's days are 23 and 25 hours long around the
-- changes of clocks; its hour 02:00-03:00 on 27 October lasts two hours; on
-- 31 March the hop windows that would start at 02:00 and 02:30 (skipped)
-- give way to the one that starts at 03:00, at the same instant.
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SELECT t, window_start, window_end, window_end - window_start AS length
  FROM (VALUES ('2024-03-31 12:00:00+00'::timestamptz), ('2024-10-27 12:00:00+00')) v(t),
       streamview_internal._window_spans(t, '1 day', '1 day', 'Europe/Paris', '1970-01-01');
SELECT t, window_start, window_end
  FROM (VALUES ('2024-10-27 00:10:00+00'::timestamptz), ('2024-10-27 01:10:00+00')) v(t),
       streamview_internal._window_spans(t, '1 hour', '1 hour', 'Europe/Paris', '1970-01-01');
SELECT window_start, window_end
  FROM streamview_internal._window_spans('2024-03-31 01:10:00+00', '2 hours', '30 minutes', 'Europe/Paris', '1970-01-01');
-- Havana's clocks go back from 01:00 to 00:00 on 3 November 2024, so
-- midnight comes twice.  The day starts the first time (04:00 UTC), so
-- that every instant's window starts at or before it; date_trunc takes the
-- second midnight, after the instants of the first hour.
SELECT t, streamview.tumble(t, '1 day', 'America/Havana') AS tumble,
       date_trunc('day', t, 'America/Havana') AS date_trunc
  FROM (VALUES ('2024-11-03 04:30:00+00'::timestamptz), ('2024-11-03 05:30:00+00')) v(t);

-- 4. Months from an origin that is not the first: from 31 January, as
-- PostgreSQL adds months (origin + k months, the 31st falling back to the
-- end of shorter months); quarters from 15 February 06:00 in New York.
CREATE TEMP TABLE month_origins (size interval, zone text, origin timestamp);
INSERT INTO month_origins VALUES ('1 month', 'UTC', '2000-01-31 00:00'),
  ('3 months', 'America/New_York', '2024-02-15 06:00'), ('2 months', 'Australia/Sydney', '1969-12-31 23:30');
-- (the oracle: the largest origin + k·size at or before the wall-clock
-- time, k around the number of sizes between them)
SELECT m.size, m.zone, m.origin, count(*) AS tried,
       count(*) FILTER (WHERE streamview.tumble(i.t, m.size, m.zone, m.origin) <> (
           SELECT max(m.origin + k * m.size) AT TIME ZONE m.zone
             FROM generate_series(n.k - 2, n.k + 2) k
            WHERE m.origin + k * m.size <= i.t AT TIME ZONE m.zone)) AS wrong
  FROM instants i, month_origins m,
       LATERAL (SELECT floor(((extract(year FROM i.t AT TIME ZONE m.zone) - extract(year FROM m.origin)) * 12
                              + extract(month FROM i.t AT TIME ZONE m.zone) - extract(month FROM m.origin))
                             / extract(month FROM m.size))::int AS k) n
 WHERE i.zone = 'UTC'
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT window_start, window_end
  FROM streamview_internal._window_spans('2024-02-29 12:00:00+00', '1 month', '1 month', 'UTC', '2000-01-31');

-- 5. The ends of the timestamp range, infinities, NULLs.
SELECT streamview.tumble('294276-12-31 23:59:59+00', '1 month', 'UTC') AS last_month,
       streamview.tumble('294276-12-31 23:59:59+00', '1 day', 'Pacific/Kiritimati') AS last_day_east,
       streamview.hop('294276-12-31 23:59:59+00', '2 hours', '1 hour', 'America/New_York') AS last_hop;
SELECT pg_temp.err($$SELECT streamview.tumble('294276-12-31 23:59:59+00', '1 month', 'Pacific/Kiritimati')$$) AS past_the_end;
SELECT pg_temp.err($$SELECT * FROM streamview_internal._window_spans('294276-12-31 23:59:59+00', '1 hour', '1 hour', 'UTC', '1970-01-01')$$) AS end_past_the_end;
SELECT pg_temp.err($$SELECT * FROM streamview_internal._window_spans('294276-12-31 23:59:59+00', '366 days', '366 days', NULL, NULL)$$) AS end_past_the_end_utc;
SELECT pg_temp.err($$SELECT streamview.tumble('4714-11-24 00:00:00+00 BC', '1 month', 'UTC')$$) AS before_the_first;
SELECT pg_temp.err($$SELECT streamview.tumble('4714-11-24 00:00:00+00 BC', '1 hour', 'America/New_York')$$) AS first_hour_local;
SELECT streamview.tumble('4714-11-24 05:00:00+00 BC', '1 hour', 'America/New_York') AS local_mean_time;
SELECT streamview.tumble('infinity', '1 day', 'Europe/Paris') AS inf,
       streamview.hop('-infinity', '1 month', '1 month', 'UTC') AS minus_inf,
       streamview.tumble(now(), '1 day', NULL) AS null_zone,
       streamview.tumble(now(), '1 day', 'UTC', NULL) AS null_origin;

-- 6. Errors.
SELECT pg_temp.err($$SELECT streamview.tumble(now(), '1 day', 'Mars/Olympus_Mons')$$) AS unknown_zone;
SELECT pg_temp.err($$SELECT streamview.tumble(now(), '1 day', 'CEST')$$) AS abbreviation;
SELECT pg_temp.err($$SELECT streamview.tumble(now(), '1 day', '')$$) AS empty_zone;
SELECT pg_temp.err($$SELECT streamview.tumble(now(), '1 day', 'right/UTC')$$) AS leap_seconds;
SELECT pg_temp.err($$SELECT streamview.tumble(now(), '1 month 1 day', 'UTC')$$) AS mixed;
SELECT pg_temp.err($$SELECT streamview.tumble(now(), '-1 month', 'UTC')$$) AS negative_month;
SELECT pg_temp.err($$SELECT streamview.tumble(now(), '0 days', 'UTC')$$) AS zero;
SELECT pg_temp.err($$SELECT streamview.hop(now(), '1 month', '1 day', 'UTC')$$) AS months_and_days;
SELECT pg_temp.err($$SELECT streamview.hop(now(), '1 month', '2 months', 'UTC')$$) AS slide_too_large;
SELECT pg_temp.err($$SELECT streamview.tumble(now(), '1 day', 'UTC', 'infinity')$$) AS infinite_origin;

-- 7. Stream views over these windows: the compiler accepts literals
-- (positional, named, the origin left out), records the zone by its name
-- in the time zone database and the origin as ISO text, whatever the
-- session's DateStyle; anything else is refused with a hint.
SET timezone = 'America/Los_Angeles';
SET datestyle = 'SQL, DMY';
SELECT streamview.create_source(name => 'sales', brokers => '127.0.0.1:9', topic => 'sales',
  columns => '{"ts":"timestamptz","shop":"text","tz":"text","cents":"bigint"}', event_time => 'ts')
  LIKE 'pg_streamview.%' AS created;
SELECT streamview.create_view('public.daily_paris', $$
  SELECT streamview.tumble(ts, '1 day', 'europe/paris') AS window_start, shop, count(*) AS n, sum(cents) AS cents
    FROM sales GROUP BY 1, 2 $$, allowed_lateness => '1 hour');
SELECT streamview.create_view('public.monthly', $$
  SELECT streamview.tumble(ts, interval '1 month', time_zone => 'America/New_York', origin => '2000-01-01 06:00')
         AS window_start, count(*) AS n FROM sales GROUP BY 1 $$);
SELECT streamview.create_view('public.hop_local', $$
  SELECT streamview.hop(ts, '2 days', '1 day', 'Australia/Sydney', '1970-01-01 00:00'::timestamp), count(*) AS n
    FROM sales GROUP BY 1 $$);
SELECT streamview.create_view('public.utc_minutes', $$
  SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n FROM sales GROUP BY 1 $$);
SELECT view_name, window_kind, window_size, window_slide, window_time_zone, window_origin,
       definition->>'window_time_zone' AS def_zone, definition->>'window_origin' AS def_origin
  FROM streamview.versions WHERE view_name IN ('daily_paris', 'monthly', 'hop_local', 'utc_minutes')
 ORDER BY view_name;
-- a view without a time zone has the definition keys of 0.1, no more
SELECT array_agg(k ORDER BY k) FROM streamview.versions v, jsonb_object_keys(v.definition) k
 WHERE v.view_name = 'utc_minutes';
-- the worker writes each window's end next to its start: the statement takes both
SELECT view_name, regexp_replace(batch_sql, '_batch_rows\([0-9]+\)', '_batch_rows(N)') AS batch_sql
  FROM streamview.versions WHERE view_name IN ('daily_paris', 'utc_minutes') ORDER BY view_name;
SELECT pg_temp.err($$SELECT streamview.create_view('public.v', $q$ SELECT streamview.tumble(ts, '1 day', tz) AS window_start, count(*) FROM sales GROUP BY 1 $q$)$$) AS zone_column;
SELECT pg_temp.err($$SELECT streamview.create_view('public.v', $q$ SELECT streamview.tumble(ts, '1 day', 'Europe/' || 'Paris') AS window_start, count(*) FROM sales GROUP BY 1 $q$)$$) AS zone_expression;
SELECT pg_temp.err($$SELECT streamview.create_view('public.v', $q$ SELECT streamview.tumble(ts, '1 day', 'Europe/Pariss') AS window_start, count(*) FROM sales GROUP BY 1 $q$)$$) AS zone_typo;
SELECT pg_temp.err($$SELECT streamview.create_view('public.v', $q$ SELECT streamview.tumble(ts, '1 day', 'UTC', '1970-01-01'::date) AS window_start, count(*) FROM sales GROUP BY 1 $q$)$$) AS origin_cast;
SELECT pg_temp.err($$SELECT streamview.create_view('public.v', $q$ SELECT streamview.tumble(ts, '1 day', 'UTC', ts::timestamp) AS window_start, count(*) FROM sales GROUP BY 1 $q$)$$) AS origin_column;
SELECT pg_temp.err($$SELECT streamview.create_view('public.v', $q$ SELECT streamview.tumble(ts, make_interval(days => 1), 'UTC') AS window_start, count(*) FROM sales GROUP BY 1 $q$)$$) AS size_expression;
SELECT pg_temp.err($$SELECT streamview.create_view('public.v', $q$ SELECT streamview.tumble(ts, '13 months', 'UTC') AS window_start, count(*) FROM sales GROUP BY 1 $q$)$$) AS over_a_year;
SELECT pg_temp.err($$SELECT streamview.create_view('public.v', $q$ SELECT streamview.tumble(ts, '367 days', 'UTC') AS window_start, count(*) FROM sales GROUP BY 1 $q$)$$) AS over_366_days;
SELECT pg_temp.err($$SELECT streamview.create_view('public.v', $q$ SELECT streamview.tumble(ts, '1 month 2 days', 'UTC') AS window_start, count(*) FROM sales GROUP BY 1 $q$)$$) AS mixed;
SELECT pg_temp.err($$SELECT streamview.create_view('public.v', $q$ SELECT streamview.hop(ts, '1 month', '1 day', 'UTC') AS window_start, count(*) FROM sales GROUP BY 1 $q$)$$) AS months_and_days;
SELECT pg_temp.err($$SELECT streamview.create_view('public.v', $q$ SELECT streamview.hop(ts, '1 day', '1 minute', 'UTC') AS window_start, count(*) FROM sales GROUP BY 1 $q$)$$) AS too_many_slides;
SELECT pg_temp.err($$SELECT streamview.create_view('public.v', $q$ SELECT streamview.tumble(ts, '1 month') AS window_start, count(*) FROM sales GROUP BY 1 $q$)$$) AS months_without_zone;

SELECT streamview.drop_source('sales', cascade => true);
RESET timezone;
RESET datestyle;
