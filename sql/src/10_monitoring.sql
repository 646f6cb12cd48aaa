-- Monitoring views, and the row-level security that reads them.

CREATE VIEW streamview.source_list AS
SELECT s.name, s.brokers, s.topic, s.event_time, s.event_id, s.max_out_of_orderness,
       s.idle_timeout,
       CASE WHEN pg_catalog.pg_has_role(s.owner, 'USAGE') THEN s.options END AS options,
       s.owner, s.created_at, s.last_error, s.last_error_at, s.max_future,
       ARRAY(SELECT u.grantee FROM streamview.source_usage u
              WHERE u.source_id = s.source_id ORDER BY u.granted_at, u.grantee::oid) AS usage,
       s.paused_at
  FROM streamview.sources s;

CREATE VIEW streamview.partitions AS
SELECT ver.view_name, ver.version, o.partition, o.next_offset, o.log_end,
       -- a partition not read yet (next_offset NULL) is behind from offset 0
       CASE WHEN o.log_end IS NOT NULL THEN greatest(o.log_end - coalesce(o.next_offset, 0), 0) END AS lag,
       o.max_event_time, o.max_event_time - s.max_out_of_orderness AS watermark,
       o.consumed, o.applied, o.duplicates, o.too_late, o.dead_lettered,
       o.consumed = o.applied + o.duplicates + o.too_late + o.dead_lettered AS balanced,
       o.last_message_at, o.updated_at
  FROM streamview.offsets o
  JOIN streamview.versions ver USING (version_id)
  JOIN streamview.views v ON v.view_id = ver.view_id
  JOIN streamview.sources s ON s.source_id = v.source_id;

CREATE VIEW streamview.status AS
SELECT ver.view_name, ver.version, ver.state, ver.state = 'live' AS is_live, ver.watermark,
       coalesce(pg_catalog.sum(o.consumed), 0)::bigint AS consumed,
       coalesce(pg_catalog.sum(o.applied), 0)::bigint AS applied,
       coalesce(pg_catalog.sum(o.duplicates), 0)::bigint AS duplicates,
       coalesce(pg_catalog.sum(o.too_late), 0)::bigint AS too_late,
       coalesce(pg_catalog.sum(o.dead_lettered), 0)::bigint AS dead_lettered,
       -- NULL until every partition's log end is known: a source that never
       -- reached its broker is not caught up
       CASE WHEN pg_catalog.count(o.partition) > 0 AND pg_catalog.bool_and(o.log_end IS NOT NULL)
            THEN pg_catalog.sum(greatest(o.log_end - coalesce(o.next_offset, 0), 0))::bigint END AS lag,
       pg_catalog.count(o.partition)::int AS partitions,
       s.name AS source_name, ver.table_name, pg_catalog.max(o.updated_at) AS last_batch_at,
       -- a version's own failure, or what currently stops its source's worker
       coalesce(ver.error, CASE WHEN ver.state IN ('live', 'caught_up') THEN s.last_error END) AS error
  FROM streamview.versions ver
  JOIN streamview.views v ON v.view_id = ver.view_id
  JOIN streamview.sources s ON s.source_id = v.source_id
  LEFT JOIN streamview.offsets o ON o.version_id = ver.version_id
 GROUP BY ver.version_id, ver.view_name, ver.version, ver.state, ver.watermark, s.name,
          ver.table_name, ver.error, s.last_error;

-- Progress of rebuilds: events replayed out of those in the log when asked.
CREATE VIEW streamview.rebuilds AS
SELECT ver.view_name, ver.version, ver.state, p.done, p.total,
       CASE WHEN p.total > 0 THEN round(100.0 * least(p.done, p.total) / p.total, 1)
            WHEN ver.state <> 'replaying' THEN 100.0 END AS percent,
       CASE WHEN p.elapsed > 0 THEN round(p.done / p.elapsed) END::bigint AS rate,
       CASE WHEN ver.state = 'replaying' AND p.done > 0 AND p.elapsed > 0
            THEN make_interval(secs => greatest(p.total - p.done, 0) / (p.done / p.elapsed)) END AS eta,
       ver.max_rate, ver.replay_started_at, ver.caught_up_at, ver.error
  FROM streamview.versions ver
  JOIN streamview.views v ON v.view_id = ver.view_id
  LEFT JOIN LATERAL (
      SELECT sum(greatest(coalesce(mine.next_offset, s.start) - s.start, 0))::bigint AS done,
             sum(greatest(coalesce(live.log_end, live.next_offset, mine.log_end, s.start) - s.start, 0))::bigint AS total,
             extract(epoch FROM coalesce(ver.caught_up_at, clock_timestamp()) - ver.replay_started_at) AS elapsed
        FROM (SELECT e.key::int AS partition, e.value::bigint AS start
                FROM jsonb_each_text(ver.start_offsets) e) s
        LEFT JOIN streamview.offsets mine
               ON mine.version_id = ver.version_id AND mine.partition = s.partition
        LEFT JOIN streamview.versions lv ON lv.view_id = ver.view_id AND lv.state = 'live'
        LEFT JOIN streamview.offsets live
               ON live.version_id = lv.version_id AND live.partition = s.partition) p ON true
 WHERE (ver.start_offsets IS NOT NULL OR ver.state = 'replaying') AND ver.state <> 'retired';

GRANT SELECT ON streamview.status, streamview.partitions, streamview.source_list,
                streamview.rebuilds TO PUBLIC;

-- Dead letters and worker errors hold the topic's data: each role sees the
-- rows of the sources it owns (or is a member of the owner of) or has USAGE
-- on.  Which role owns which source, and who has USAGE on it, is no secret:
-- the policies read it from streamview.source_list, which shows it to
-- everyone.
ALTER TABLE streamview.dead_letters ENABLE ROW LEVEL SECURITY;

ALTER TABLE streamview.worker_errors ENABLE ROW LEVEL SECURITY;

CREATE POLICY owner_reads ON streamview.dead_letters FOR SELECT
    USING (EXISTS (SELECT 1 FROM streamview.source_list s
                    WHERE s.name = dead_letters.source_name
                      AND (pg_catalog.pg_has_role(s.owner, 'USAGE')
                           OR EXISTS (SELECT 1 FROM pg_catalog.unnest(s.usage) g
                                       WHERE pg_catalog.pg_has_role(g, 'USAGE')))));

CREATE POLICY owner_reads ON streamview.worker_errors FOR SELECT
    USING (EXISTS (SELECT 1 FROM streamview.source_list s
                    WHERE s.name = worker_errors.source_name
                      AND (pg_catalog.pg_has_role(s.owner, 'USAGE')
                           OR EXISTS (SELECT 1 FROM pg_catalog.unnest(s.usage) g
                                       WHERE pg_catalog.pg_has_role(g, 'USAGE')))));

-- A validation's detail quotes rows and totals of the versions it compared:
-- the view's owner (and its members) may read it, like the versions' tables.
ALTER TABLE streamview.validations ENABLE ROW LEVEL SECURITY;

CREATE POLICY owner_reads ON streamview.validations FOR SELECT
    USING (EXISTS (SELECT 1 FROM streamview.views v
                    WHERE v.name = validations.view_name AND pg_catalog.pg_has_role(v.owner, 'USAGE')));

-- For monitoring roles (pg_monitor): how many dead letters and worker errors
-- each source has, without payloads, keys or details.  The tables are under
-- row level security, where such a role sees no row (and would read zero);
-- these views read them as the extension's owner and are granted to
-- pg_monitor only.
CREATE VIEW streamview.dead_letter_counts AS
SELECT d.source_name, d.view_name, d.reason, pg_catalog.count(*) AS dead_letters,
       pg_catalog.max(d.recorded_at) AS last_recorded_at
  FROM streamview.dead_letters d
 GROUP BY d.source_name, d.view_name, d.reason;

CREATE VIEW streamview.worker_error_counts AS
SELECT e.source_name, pg_catalog.count(*) AS worker_errors,
       pg_catalog.max(e.occurred_at) AS last_occurred_at
  FROM streamview.worker_errors e
 GROUP BY e.source_name;

REVOKE ALL ON streamview.dead_letter_counts, streamview.worker_error_counts FROM PUBLIC;
GRANT SELECT ON streamview.dead_letter_counts, streamview.worker_error_counts TO pg_monitor;
