-- Grants: internals and mutators are closed to PUBLIC; windows are open.

-- Internals run only through the dispatcher.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA streamview FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA streamview_internal FROM PUBLIC;

GRANT EXECUTE ON FUNCTION streamview.tumble(timestamptz, interval),
                          streamview.hop(timestamptz, interval, interval),
                          streamview.tumble(timestamptz, interval, text, timestamp),
                          streamview.hop(timestamptz, interval, interval, text, timestamp) TO PUBLIC;

-- source_list shows every source's consumer group; the view calls it with
-- the reader's rights.  It reveals the cluster's system identifier, which
-- names the server to Kafka and is no credential.
GRANT EXECUTE ON FUNCTION streamview_internal._consumer_group(text) TO PUBLIC;

-- source_list and the monitoring views show and filter by the partitions a
-- source reads; pure functions of their arguments.
GRANT EXECUTE ON FUNCTION streamview_internal._partitions_text(int4multirange),
                          streamview_internal._reads_partition(int4multirange, int) TO PUBLIC;

-- A version's per-batch statement reads its events with _batch_rows, as the
-- view's owner.  It returns rows only to that statement, inside the worker
-- applying the batch (batch.c), and raises an error anywhere else.
GRANT EXECUTE ON FUNCTION streamview_internal._batch_rows(int) TO PUBLIC;
-- and merges a batch of several rounds with _batch_partials, likewise.
GRANT EXECUTE ON FUNCTION streamview_internal._batch_partials(int) TO PUBLIC;

-- validate compares t-digest columns with _tdigests_differ, as the view's
-- owner; it computes from its arguments only.
GRANT EXECUTE ON FUNCTION streamview_internal._tdigests_differ(name, text, text) TO PUBLIC;

GRANT USAGE ON SCHEMA streamview TO PUBLIC;
GRANT USAGE ON SCHEMA streamview_internal TO PUBLIC;

-- Mutators are for roles the DBA chooses: a stream source opens a network
-- connection from inside the server, and a view starts a worker.
REVOKE ALL ON FUNCTION streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text, text, text, int, text, text, text),
                       streamview.alter_source(text, text, jsonb, text, text, jsonb, text, text, text, text, int, jsonb, text),
                       streamview.drop_source(text, bool),
                       streamview.check_source(text, jsonb),
                       streamview.replay_dead_letters(text, timestamptz),
                       streamview.grant_usage(text, regrole),
                       streamview.revoke_usage(text, regrole),
                       streamview.pause(text),
                       streamview.resume(text),
                       streamview.create_view(text, text, text),
                       streamview.drop_view(text),
                       streamview.set_retention(text, interval),
                       streamview.rebuild(text, text, text, bigint, bool),
                       streamview.wait_for(text, int, interval),
                       streamview.add_check(text, text, text),
                       streamview.drop_check(text, text),
                       streamview.validate(text, int, bool),
                       streamview.swap(text, int, bool),
                       streamview.rollback(text),
                       streamview.drop_version(text, int),
                       streamview.snapshot(text, int, int),
                       streamview.verify_snapshot(bigint),
                       streamview.restore(text, bigint, bool),
                       streamview.drop_snapshot(bigint) FROM PUBLIC;
