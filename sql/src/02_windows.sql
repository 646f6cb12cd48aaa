-- Windows: the markers a stream view query groups by.  window.c computes
-- them; a stream view's worker uses the same code (docs/reference.md,
-- "streamview.tumble, streamview.hop").

-- Without a time zone: fixed lengths, aligned to the Unix epoch in UTC.
CREATE FUNCTION streamview.tumble(ts timestamptz, size interval)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'streamview_tumble'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION streamview.tumble(timestamptz, interval) IS
'start of the tumbling window of the given size that contains ts (windows aligned to the Unix epoch, UTC)';

CREATE FUNCTION streamview.hop(ts timestamptz, size interval, slide interval)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'streamview_hop'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION streamview.hop(timestamptz, interval, interval) IS
'hopping window marker for GROUP BY in a stream view; called directly, the start of the latest window that contains ts';

-- With a time zone: windows laid out on that zone's wall clock from origin
-- (a wall-clock time there), in lengths of wall-clock time or in calendar
-- months.  The zone is an argument, never the session's TimeZone.
CREATE FUNCTION streamview.tumble(ts timestamptz, size interval, time_zone text,
                                  origin timestamp DEFAULT '1970-01-01 00:00:00')
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'streamview_tumble_tz'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION streamview.tumble(timestamptz, interval, text, timestamp) IS
'start of the tumbling window that contains ts, windows laid out on the wall clock of time_zone from origin (sizes in months allowed)';

CREATE FUNCTION streamview.hop(ts timestamptz, size interval, slide interval, time_zone text,
                               origin timestamp DEFAULT '1970-01-01 00:00:00')
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'streamview_hop_tz'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION streamview.hop(timestamptz, interval, interval, text, timestamp) IS
'hopping window marker on the wall clock of time_zone from origin; called directly, the start of the latest window that contains ts';

-- The windows of a hop (a tumble when slide = size) that contain ts, as a
-- stream view's worker computes them (time_zone NULL: epoch-aligned UTC
-- windows): rebuild(start_from) asks how far the windows it carries over
-- reach.
CREATE FUNCTION streamview_internal._window_spans(ts timestamptz, size interval, slide interval,
                                         time_zone text, origin timestamp,
                                         OUT window_start timestamptz, OUT window_end timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'streamview_window_spans_sql'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
