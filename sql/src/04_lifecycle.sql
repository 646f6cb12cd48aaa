-- The version lifecycle: its one owner.  A version's state changes only in
-- _set_state; "the live version" and "caught up" are defined here once, for
-- the worker (src/version.c calls them), wait_for, validate and swap.  The
-- state diagram is in docs/architecture.md, "Version states".

-- The live version of a view (NULL fields when it has none, which only a
-- view being dropped can have).
CREATE FUNCTION streamview_internal._live_version(view_id int)
RETURNS streamview.versions
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT x.* FROM streamview.versions x
       WHERE x.view_id = _live_version.view_id AND x.state = 'live' $$;

-- How many partitions version_id is behind reference_id (by the offsets
-- committed).  exact => false: partitions where the reference has read
-- further.  exact => true: partitions where the two are at other offsets, or that only
-- one of them has read, which is what wait_for and validate want: taken over,
-- at the same offsets as the live version.  Only the partitions the source
-- reads count: a partition taken out of its partitions (alter_source) keeps
-- its rows in the versions that read it, and a new version never reads it.
CREATE FUNCTION streamview_internal._partitions_behind(version_id int, reference_id int, exact bool)
RETURNS int
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*)::int
      FROM (SELECT o.partition, o.next_offset FROM streamview.offsets o
             WHERE o.version_id = _partitions_behind.version_id) mine
      FULL JOIN (SELECT o.partition, o.next_offset FROM streamview.offsets o
                  WHERE o.version_id = _partitions_behind.reference_id) ref USING (partition)
     WHERE CASE WHEN exact THEN mine.next_offset IS DISTINCT FROM ref.next_offset
                ELSE coalesce(mine.next_offset, -1) < ref.next_offset END
       AND streamview_internal._reads_partition(
               (SELECT s.partitions FROM streamview.versions x
                  JOIN streamview.views v ON v.view_id = x.view_id
                  JOIN streamview.sources s ON s.source_id = v.source_id
                 WHERE x.version_id = _partitions_behind.version_id), partition)
$$;

-- How many messages version_id is behind reference_id (by the offsets
-- committed), over the partitions the source reads: in each partition where
-- the reference has read further, the messages between the two (from the
-- log's start where version_id has read nothing yet).  A replay hands over
-- to the source worker when this is at most one batch (src/version.c).
CREATE FUNCTION streamview_internal._messages_behind(version_id int, reference_id int)
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(sum(ref.next_offset - greatest(mine.next_offset, 0)), 0)::bigint
      FROM streamview.offsets ref
      LEFT JOIN streamview.offsets mine
             ON mine.version_id = _messages_behind.version_id AND mine.partition = ref.partition
     WHERE ref.version_id = _messages_behind.reference_id
       AND coalesce(mine.next_offset, -1) < ref.next_offset
       AND streamview_internal._reads_partition(
               (SELECT s.partitions FROM streamview.versions x
                  JOIN streamview.views v ON v.view_id = x.view_id
                  JOIN streamview.sources s ON s.source_id = v.source_id
                 WHERE x.version_id = _messages_behind.version_id), ref.partition)
$$;

-- The only statement that changes a version's state.  The version must be
-- in one of allowed_from: otherwise an error (object_not_in_prerequisite_state),
-- or, with strict => false, nothing happens (a worker's transition that a
-- concurrent drop_version or swap made moot).  Stamps what the transition
-- means: caught_up_at and replayed on catching up (replayed: the rebuild's
-- done then, from streamview.rebuilds, so that its rate stops with it),
-- swapped_at/by on going live,
-- retired_at/by on retirement, failed_at and error on failure.
CREATE FUNCTION streamview_internal._set_state(version_id int, allowed_from streamview.version_state[],
                                      target streamview.version_state, by name DEFAULT NULL,
                                      error text DEFAULT NULL, strict bool DEFAULT true)
RETURNS streamview.versions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r streamview.versions;
BEGIN
    UPDATE streamview.versions x
       SET state = target,
           caught_up_at = CASE WHEN target = 'caught_up' AND x.state = 'replaying' THEN now()
                               ELSE x.caught_up_at END,
           replayed = CASE WHEN target = 'caught_up' AND x.state = 'replaying'
                           THEN (SELECT b.done FROM streamview.rebuilds b
                                  WHERE b.view_name = x.view_name AND b.version = x.version)
                           ELSE x.replayed END,
           swapped_at = CASE WHEN target = 'live' THEN now() ELSE x.swapped_at END,
           swapped_by = CASE WHEN target = 'live' THEN by ELSE x.swapped_by END,
           retired_at = CASE WHEN target = 'retired' THEN now() ELSE x.retired_at END,
           retired_by = CASE WHEN target = 'retired' THEN by ELSE x.retired_by END,
           failed_at = CASE WHEN target = 'failed' THEN now() ELSE x.failed_at END,
           error = CASE WHEN target = 'failed' THEN _set_state.error ELSE x.error END
     WHERE x.version_id = _set_state.version_id AND x.state = ANY (allowed_from)
    RETURNING x.* INTO r;
    IF r.version_id IS NULL AND strict THEN
        SELECT * INTO r FROM streamview.versions x WHERE x.version_id = _set_state.version_id;
        RAISE EXCEPTION 'version % of stream view "%" is %, not %', r.version, r.view_name, r.state,
                        array_to_string(allowed_from, ' or ')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('It cannot become %s from there.', target);
    END IF;
    RETURN r;
END $$;
