-- Monitoring views, and the row-level security that reads them.

CREATE VIEW streamview.source_list AS
SELECT s.name, s.brokers, s.topic, s.event_time, s.event_id, s.max_out_of_orderness,
       s.idle_timeout,
       CASE WHEN pg_catalog.pg_has_role(s.owner, 'USAGE') THEN s.options END AS options,
       s.owner, s.created_at, s.last_error, s.last_error_at, s.max_future,
       ARRAY(SELECT u.grantee FROM streamview.source_usage u
              WHERE u.source_id = s.source_id ORDER BY u.granted_at, u.grantee::oid) AS usage,
       s.paused_at, streamview_internal._consumer_group(s.name) AS consumer_group,
       streamview_internal._partitions_text(s.partitions) AS partitions, s.workers,
       s.format, s.schema_registry, s.archive
  FROM streamview.sources s;

-- One row per version and partition: every partition the version's workers
-- was assigned, from before its first message; of a source limited to some
-- partitions (partitions =>), those only.  lag_time and
-- holds_watermark are defined in docs/monitoring.md ("Health").
CREATE VIEW streamview.partitions AS
SELECT ver.view_name, ver.version, o.partition, o.next_offset, o.log_end,
       -- a partition not read yet (next_offset NULL) is behind from offset 0
       CASE WHEN o.log_end IS NOT NULL THEN greatest(o.log_end - coalesce(o.next_offset, 0), 0) END AS lag,
       o.max_event_time, o.max_event_time - s.max_out_of_orderness AS watermark,
       o.consumed, o.applied, o.duplicates, o.too_late, o.dead_lettered,
       o.consumed = o.applied + o.duplicates + o.too_late + o.dead_lettered AS balanced,
       o.last_message_at, o.updated_at, o.max_broker_time,
       -- how far behind the log end, in time: 0 once read up to it; else how
       -- old the newest message read is (NULL when no log end or no broker
       -- timestamp is known: never a 0 that only means "unknown")
       CASE WHEN o.log_end IS NULL THEN NULL
            WHEN coalesce(o.next_offset, 0) >= o.log_end THEN interval '0'
            WHEN o.max_broker_time IS NULL THEN NULL
            ELSE greatest(now() - o.max_broker_time, interval '0') END AS lag_time,
       -- as the worker last computed the watermark (NULL: not yet); each of
       -- a source's workers computes it over every partition the source
       -- reads: the first's
       o.partition = ANY (st.held_back_by) AS holds_watermark,
       -- freshness: the newest broker timestamp applied, and how long after
       -- it the batch that applied it ended (docs/monitoring.md, "Freshness")
       o.max_broker_time AS applied_broker_time, o.visible_delay
  FROM streamview.offsets o
  JOIN streamview.versions ver USING (version_id)
  JOIN streamview.views v ON v.view_id = ver.view_id
  JOIN streamview.sources s ON s.source_id = v.source_id
  LEFT JOIN LATERAL (SELECT h.held_back_by FROM streamview.version_stats h
                      WHERE h.version_id = o.version_id ORDER BY h.worker LIMIT 1) st ON true
 WHERE streamview_internal._reads_partition(s.partitions, o.partition);

-- One row per version.  The columns after error tell its health; the rules
-- are in docs/monitoring.md ("Health"), with the settings they read.  Cheap
-- enough to scrape often: the catalog's small tables, and one look each at
-- pg_locks (the lock a worker holds on what it serves, so "no worker serves
-- it" cannot be faked with an application_name) and pg_stat_activity (how
-- long the worker's batch has been running, for roles allowed to see it).
CREATE VIEW streamview.status AS
SELECT x.view_name, x.version, x.state, x.is_live, x.watermark, x.consumed, x.applied,
       x.duplicates, x.too_late, x.dead_lettered, x.lag, x.partitions, x.source_name,
       x.table_name, x.last_batch_at, x.error,
       CASE WHEN x.state = 'retired' THEN NULL
            WHEN x.state = 'failed' THEN 'error'
            WHEN x.paused THEN 'paused'
            WHEN x.error IS NOT NULL THEN 'error'
            WHEN NOT x.served
              OR x.batch_started_at < now() - x.stall_threshold
              OR ((x.lag IS NULL OR x.lag > 0) AND x.last_progress_at < now() - x.stall_threshold)
                 THEN 'stalled'
            WHEN x.state <> 'replaying' AND x.lag_time > x.lag_threshold THEN 'lagging'
            ELSE 'ok' END AS health,
       x.lag_time, now() - x.watermark AS watermark_delay,
       -- the rate of the version's last batch, while it is recent (stats.c
       -- counts the 10 seconds before the batch)
       CASE WHEN x.batch_at >= now() - interval '10 seconds'
            THEN round(x.events_per_second::numeric, 1) WHEN x.batch_at IS NOT NULL THEN 0 END AS events_per_second,
       x.last_batch_duration, x.held_back_by, x.applied_broker_time, x.visible_delay
  FROM (SELECT ver.view_name, ver.version, ver.state, ver.state = 'live' AS is_live, ver.watermark,
               coalesce(p.consumed, 0) AS consumed, coalesce(p.applied, 0) AS applied,
               coalesce(p.duplicates, 0) AS duplicates, coalesce(p.too_late, 0) AS too_late,
               coalesce(p.dead_lettered, 0) AS dead_lettered, p.lag, coalesce(p.partitions, 0) AS partitions,
               s.name AS source_name, ver.table_name, p.last_batch_at,
               -- a version's own failure, or what currently stops its source's worker
               coalesce(ver.error, CASE WHEN ver.state IN ('live', 'caught_up') THEN s.last_error END) AS error,
               s.paused_at IS NOT NULL AS paused,
               w.running >= CASE WHEN ver.state = 'replaying' THEN 1 ELSE s.workers END AS served,
               w.batch_started_at,
               coalesce(p.last_message_at, ver.replay_started_at, ver.created_at) AS last_progress_at,
               p.lag_time, st.batch_at, st.events_per_second, st.batch_duration AS last_batch_duration,
               st.held_back_by, p.applied_broker_time, p.visible_delay,
               pg_catalog.current_setting('streamview.stall_threshold')::interval AS stall_threshold,
               pg_catalog.current_setting('streamview.lag_threshold')::interval AS lag_threshold
          FROM streamview.versions ver
          JOIN streamview.views v ON v.view_id = ver.view_id
          JOIN streamview.sources s ON s.source_id = v.source_id
          LEFT JOIN (SELECT q.view_name, q.version, pg_catalog.count(*)::int AS partitions,
                            pg_catalog.sum(q.consumed)::bigint AS consumed,
                            pg_catalog.sum(q.applied)::bigint AS applied,
                            pg_catalog.sum(q.duplicates)::bigint AS duplicates,
                            pg_catalog.sum(q.too_late)::bigint AS too_late,
                            pg_catalog.sum(q.dead_lettered)::bigint AS dead_lettered,
                            -- NULL until every partition's log end is known: a
                            -- source that never reached its broker is not caught up
                            CASE WHEN pg_catalog.bool_and(q.lag IS NOT NULL)
                                 THEN pg_catalog.sum(q.lag)::bigint END AS lag,
                            -- the partition furthest behind; NULL if one is unknown
                            CASE WHEN pg_catalog.bool_and(q.lag_time IS NOT NULL)
                                 THEN pg_catalog.max(q.lag_time) END AS lag_time,
                            pg_catalog.max(q.updated_at) AS last_batch_at,
                            pg_catalog.max(q.last_message_at) AS last_message_at,
                            -- the newest message applied, and its partition's delay
                            pg_catalog.max(q.applied_broker_time) AS applied_broker_time,
                            (pg_catalog.array_agg(q.visible_delay ORDER BY q.applied_broker_time DESC NULLS LAST))[1]
                                AS visible_delay
                       FROM streamview.partitions q
                      GROUP BY q.view_name, q.version) p
                 ON p.view_name = ver.view_name AND p.version = ver.version
          -- the source's workers each count what they read: the rates add up
          LEFT JOIN LATERAL (
              SELECT pg_catalog.max(h.batch_at) AS batch_at,
                     pg_catalog.sum(h.events_per_second)
                         FILTER (WHERE h.batch_at >= now() - interval '10 seconds') AS events_per_second,
                     (pg_catalog.array_agg(h.batch_duration ORDER BY h.batch_at DESC NULLS LAST))[1] AS batch_duration,
                     (SELECT f.held_back_by FROM streamview.version_stats f
                       WHERE f.version_id = ver.version_id ORDER BY f.worker LIMIT 1) AS held_back_by
                FROM streamview.version_stats h WHERE h.version_id = ver.version_id) st ON true
          -- the workers that serve the version: a replaying version's replay
          -- worker, any other the source's workers, one lock each (source_worker.c,
          -- sv_take_worker_lock: objsubid is the worker's index)
          LEFT JOIN LATERAL (
              SELECT pg_catalog.count(*) AS running, pg_catalog.min(a.xact_start) AS batch_started_at
                FROM pg_catalog.pg_locks w
                LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = w.pid
               WHERE w.locktype = 'object' AND w.granted
                 AND w.database = (SELECT d.oid FROM pg_catalog.pg_database d
                                    WHERE d.datname = pg_catalog.current_database())
                 AND (w.classid, w.objid) =
                     (CASE WHEN ver.state = 'replaying' THEN 'streamview.versions'::regclass
                           ELSE 'streamview.sources'::regclass END::oid,
                      CASE WHEN ver.state = 'replaying' THEN ver.version_id ELSE s.source_id END::oid)
                 AND w.objsubid < CASE WHEN ver.state = 'replaying' THEN 1 ELSE s.workers END) w ON true) x;

-- Progress of rebuilds: events replayed out of those in the log when asked.
-- Once caught up, the version goes on reading (done grows) but its replay is
-- over: rate is what it replayed (versions.replayed) over the replay's time.
CREATE VIEW streamview.rebuilds AS
SELECT ver.view_name, ver.version, ver.state, p.done, p.total,
       CASE WHEN p.total > 0 THEN round(100.0 * least(p.done, p.total) / p.total, 1)
            WHEN ver.state <> 'replaying' THEN 100.0 END AS percent,
       CASE WHEN p.elapsed > 0 THEN round(coalesce(ver.replayed, p.done) / p.elapsed) END::bigint AS rate,
       CASE WHEN ver.state = 'replaying' AND p.done > 0 AND p.elapsed > 0
            THEN make_interval(secs => greatest(p.total - p.done, 0) / (p.done / p.elapsed)) END AS eta,
       ver.max_rate, ver.replay_started_at, ver.caught_up_at, ver.error
  FROM streamview.versions ver
  JOIN streamview.views v ON v.view_id = ver.view_id
  JOIN streamview.sources src ON src.source_id = v.source_id
  LEFT JOIN LATERAL (
      SELECT sum(greatest(coalesce(mine.next_offset, s.start) - s.start, 0))::bigint AS done,
             sum(greatest(coalesce(live.log_end, live.next_offset, mine.log_end, s.start) - s.start, 0))::bigint AS total,
             extract(epoch FROM coalesce(ver.caught_up_at, clock_timestamp()) - ver.replay_started_at) AS elapsed
        FROM (SELECT e.key::int AS partition, e.value::bigint AS start
                FROM jsonb_each_text(ver.start_offsets) e
               WHERE streamview_internal._reads_partition(src.partitions, e.key::int)) s
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

-- A source's changes hold its brokers and the options it had and has:
-- like source_list.options, they are for its owner (and the owner role's
-- members), not for the roles it granted USAGE to.
ALTER TABLE streamview.source_changes ENABLE ROW LEVEL SECURITY;

CREATE POLICY owner_reads ON streamview.source_changes FOR SELECT
    USING (EXISTS (SELECT 1 FROM streamview.source_list s
                    WHERE s.name = source_changes.source_name AND pg_catalog.pg_has_role(s.owner, 'USAGE')));

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
