-- streamview.status's health and its lag in time, at the SQL surface: the
-- rules of docs/monitoring.md ("Health") over catalog rows set by hand, in
-- one transaction so that now() is the same everywhere.  No worker serves
-- this database, so no version is served: 'ok' and 'lagging' need a worker
-- and are tested with a broker in t/016_health.pl.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_streamview;
RESET client_min_messages;
\set SHOW_CONTEXT never
\pset null '(null)'
\i test/sql/helpers.psql

SHOW streamview.lag_threshold;
SHOW streamview.stall_threshold;

SELECT streamview.create_source('hs', '127.0.0.1:9', 'hs', '{"k":"text","ts":"timestamptz"}', 'ts',
                                max_out_of_orderness => '5 seconds') LIKE 'pg_streamview.%' AS created;
SELECT streamview.create_view('hv', $$
  SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS n FROM hs GROUP BY 1, 2 $$);

-- A new version no worker has read for: no partition, nothing known, and
-- no worker serves it
SELECT view_name, version, state, health, lag, lag_time, watermark_delay, events_per_second,
       last_batch_duration, held_back_by, partitions
  FROM streamview.status WHERE view_name = 'hv';

BEGIN;
-- Partitions as a worker leaves them:
--  0: read up to its log end                       lag 0, lag_time 0
--  1: 3 behind; its newest message is 90 s old     lag 3, lag_time 90 s
--  2: never had a message, its log is empty       lag 0, lag_time 0
--  3: 4 behind, no broker timestamp (Kafka 0.9)    lag 4, lag_time unknown
--  4: not read yet, 5 messages wait                lag 5, lag_time unknown
INSERT INTO streamview.offsets (version_id, partition, next_offset, log_end, max_broker_time, max_event_time,
                                consumed, applied, last_message_at, updated_at)
SELECT x.version_id, p.partition, p.next_offset, p.log_end, now() - p.age, p.met, p.consumed, p.consumed,
       CASE WHEN p.consumed > 0 THEN now() - interval '1 second' END,
       CASE WHEN p.consumed > 0 THEN now() - interval '1 second' END
  FROM streamview.versions x,
       (VALUES (0, 10, 10, interval '90 seconds', timestamptz '2024-05-01 12:00:30+00', 10),
               (1, 5, 8, interval '90 seconds', timestamptz '2024-05-01 12:00:20+00', 5),
               (2, NULL, 0, NULL, NULL, 0),
               (3, 3, 7, NULL, timestamptz '2024-05-01 12:00:40+00', 3),
               (4, NULL, 5, NULL, NULL, 0)) AS p (partition, next_offset, log_end, age, met, consumed)
 WHERE x.view_name = 'hv';
INSERT INTO streamview.version_stats (version_id, batch_at, batch_duration, events_per_second, held_back_by)
SELECT version_id, now() - interval '3 seconds', interval '0.25 seconds', 123.456, '{2,4}'
  FROM streamview.versions WHERE view_name = 'hv';
UPDATE streamview.versions SET watermark = now() - interval '42 seconds' WHERE view_name = 'hv';

SELECT partition, next_offset, log_end, lag, lag_time, holds_watermark, updated_at IS NOT NULL AS updated
  FROM streamview.partitions WHERE view_name = 'hv' ORDER BY partition;
-- lag sums the partitions'; lag_time is unknown while one partition's is
SELECT health, lag, lag_time, watermark_delay, events_per_second, last_batch_duration, held_back_by, partitions
  FROM streamview.status WHERE view_name = 'hv';

-- Once every partition's is known, lag_time is the largest
UPDATE streamview.offsets SET max_broker_time = now() - interval '2 minutes' WHERE partition = 3;
UPDATE streamview.offsets SET next_offset = 5, max_broker_time = now() - interval '30 seconds' WHERE partition = 4;
SELECT lag, lag_time FROM streamview.status WHERE view_name = 'hv';
-- Freshness: each partition's newest broker timestamp applied and its delay;
-- status shows the newest (partition 4's, 30 s old) with that partition's
-- delay, not the largest or the smallest
UPDATE streamview.offsets o SET visible_delay = d.delay
  FROM (VALUES (0, interval '0.05 seconds'), (1, interval '0.2 seconds'), (3, interval '1 second'),
               (4, interval '0.5 seconds')) AS d (partition, delay)
 WHERE o.partition = d.partition;
SELECT partition, now() - applied_broker_time AS age, visible_delay
  FROM streamview.partitions WHERE view_name = 'hv' ORDER BY partition;
SELECT now() - applied_broker_time AS age, visible_delay FROM streamview.status WHERE view_name = 'hv';
-- a log end unknown makes both unknown, not 0
UPDATE streamview.offsets SET log_end = NULL WHERE partition = 0;
SELECT lag, lag_time FROM streamview.status WHERE view_name = 'hv';
-- a broker timestamp ahead of the server's clock is not a negative lag
UPDATE streamview.offsets SET log_end = 10 WHERE partition = 0;
UPDATE streamview.offsets SET max_broker_time = now() + interval '1 hour' WHERE partition IN (1, 3, 4);
SELECT lag, lag_time FROM streamview.status WHERE view_name = 'hv';

-- Each of a source's workers keeps its row: the rates of those with a
-- recent batch add up, the last batch is the latest worker's, held_back_by
-- the first worker's (each computes it over every partition)
INSERT INTO streamview.version_stats (version_id, worker, batch_at, batch_duration, events_per_second, held_back_by)
SELECT version_id, w, now() - age, d, rate, '{1}'
  FROM streamview.versions,
       (VALUES (1, interval '2 seconds', interval '0.5 seconds', 100),
               (2, interval '20 seconds', interval '9 seconds', 1000)) AS x (w, age, d, rate)
 WHERE view_name = 'hv';
SELECT events_per_second, last_batch_duration, held_back_by FROM streamview.status WHERE view_name = 'hv';
SELECT partition FROM streamview.partitions WHERE view_name = 'hv' AND holds_watermark ORDER BY 1;
DELETE FROM streamview.version_stats WHERE worker > 0;

-- events_per_second: the last batch's rate while it is recent, 0 after 10 s
UPDATE streamview.version_stats SET batch_at = now() - interval '11 seconds';
SELECT events_per_second, last_batch_duration FROM streamview.status WHERE view_name = 'hv';
COMMIT;

-- Health, rule by rule, first match wins.  No worker serves it: stalled
SELECT health FROM streamview.status WHERE view_name = 'hv';
-- its source's worker has an error
UPDATE streamview.sources SET last_error = 'broker down' WHERE name = 'hs';
SELECT health, error FROM streamview.status WHERE view_name = 'hv';
-- paused comes before the source's error
SELECT streamview.pause('hs') IS NOT NULL AS paused;
SELECT health FROM streamview.status WHERE view_name = 'hv';
SELECT streamview.resume('hs') IS NOT NULL AS resumed;
UPDATE streamview.sources SET last_error = NULL WHERE name = 'hs';

-- A rebuild: replaying, no replay worker serves it: stalled; failed: error;
-- retired (dropped): no health at all
SELECT streamview.rebuild('hv') AS v2;
SELECT version, state, health FROM streamview.status WHERE view_name = 'hv' ORDER BY version;
SELECT state FROM streamview_internal._set_state((SELECT version_id FROM streamview.versions WHERE view_name = 'hv' AND version = 2),
                                        '{replaying}', 'failed', error => 'a test failure');
SELECT version, state, health, error FROM streamview.status WHERE view_name = 'hv' ORDER BY version;
INSERT INTO streamview.version_stats (version_id, batch_at, batch_duration, events_per_second, held_back_by)
SELECT version_id, now(), interval '1 second', 1, '{0}' FROM streamview.versions WHERE view_name = 'hv' AND version = 2;
SELECT streamview.drop_version('hv', 2);
-- its stats go with its offsets
SELECT version, state, health, events_per_second, last_batch_duration, held_back_by
  FROM streamview.status WHERE view_name = 'hv' ORDER BY version;

-- The thresholds are read as intervals, per session
SET streamview.stall_threshold = '90s';
SET streamview.lag_threshold = '2min';
SELECT current_setting('streamview.stall_threshold')::interval AS stall,
       current_setting('streamview.lag_threshold')::interval AS lag;
SELECT pg_temp.err($$ SET streamview.lag_threshold = 0 $$) AS zero_lag_threshold;
RESET streamview.stall_threshold;
RESET streamview.lag_threshold;

SELECT streamview.drop_view('hv');
SELECT streamview.drop_source('hs');
