-- Windows: the markers a stream view query groups by.

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
