-- The archive (two-tier log, docs/archive.md): every message a source worker
-- consumes, kept in PostgreSQL for the source's `archive` interval, written
-- in the transaction of the batch that consumed it; a rebuild reads it for
-- the offsets Kafka no longer keeps.

-- One table for every source, partitioned by source (LIST), each source's
-- part by the time its rows were archived (RANGE on archived_at), so that
-- retention drops whole tables.  The source worker's housekeeping creates
-- the tables (_archive_housekeeping); rows that fall outside them go to the
-- source's DEFAULT partition.  The documented format for COPY-loaded history
-- is this table's columns (docs/archive.md).
CREATE TABLE streamview.archive (
    source_id   int NOT NULL,
    partition   int NOT NULL,
    "offset"    bigint NOT NULL,
    broker_time timestamptz,
    key         bytea,
    payload     bytea,
    -- [[name, value in base64 or null], ...]; NULL when the message has none
    headers     jsonb,
    archived_at timestamptz NOT NULL DEFAULT pg_catalog.now()
) PARTITION BY LIST (source_id);

-- The index a rebuild reads a partition's messages with, in offset order
-- from an offset, is made per source on its table (_archive_create), not
-- here: an index of the extension's table would be created again on each
-- source's table when pg_restore attaches it, and the dump's own CREATE
-- INDEX for that table would then fail (t/011_dump.pl).

-- payloads of a few kilobytes (those TOAST compresses at all) compress
-- faster with lz4, where the server has it
DO $$
BEGIN
    ALTER TABLE streamview.archive ALTER COLUMN payload SET COMPRESSION lz4;
    ALTER TABLE streamview.archive ALTER COLUMN headers SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END $$;

-- The first offset each partition's log still has, as the source's workers
-- last heard from the brokers: what a rebuild checks, before it starts,
-- against the archive (_archive_missing).
CREATE TABLE streamview.log_starts (
    source_id  int NOT NULL REFERENCES streamview.sources ON DELETE CASCADE,
    partition  int NOT NULL,
    log_start  bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (source_id, partition)
);

SELECT pg_catalog.pg_extension_config_dump('streamview.log_starts', '');

-- archive => as create_source and alter_source take it: a positive interval
-- without months; 'off' (alter_source) is NULL.
CREATE FUNCTION streamview_internal._archive_arg(value text)
RETURNS interval
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF lower(btrim(value)) = 'off' THEN
        RETURN NULL;
    END IF;
    RETURN streamview_internal._interval_arg(value, 'archive');
END $$;

-- A source's archive table (the LIST partition of streamview.archive).
CREATE FUNCTION streamview_internal._archive_table(source_id int)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT 'streamview_internal.archive_' || source_id $$;

-- How much time one table of a source's archive covers: an eighth of the
-- archive interval (so retention keeps at most an eighth more than asked),
-- between a second and a day.
CREATE FUNCTION streamview_internal._archive_width(archive interval)
RETURNS bigint
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT greatest(1, least(86400, floor(extract(epoch FROM archive) / 8)))::bigint $$;

-- The tablespace clause for new archive tables: streamview.archive_tablespace
-- (empty: the database's default).
CREATE FUNCTION streamview_internal._archive_tablespace()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE WHEN coalesce(current_setting('streamview.archive_tablespace', true), '') = '' THEN ''
            ELSE format(' TABLESPACE %I', current_setting('streamview.archive_tablespace')) END
$$;

-- Create a source's archive table and its default partition, then the
-- tables for the time ahead (create_source, alter_source turning it on).
CREATE FUNCTION streamview_internal._archive_create(sid int)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text := streamview_internal._archive_table(sid);
BEGIN
    IF to_regclass(t) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE %s PARTITION OF streamview.archive FOR VALUES IN (%s) '
                   'PARTITION BY RANGE (archived_at)%s', t, sid, streamview_internal._archive_tablespace());
    EXECUTE format('CREATE INDEX ON %s (partition, "offset")%s', t, streamview_internal._archive_tablespace());
    EXECUTE format('CREATE TABLE %s_default PARTITION OF %s DEFAULT%s',
                   t, t, streamview_internal._archive_tablespace());
    PERFORM streamview_internal._archive_housekeeping(sid);
END $$;

-- Drop a source's archive, all of it (alter_source archive => 'off',
-- drop_source).
CREATE FUNCTION streamview_internal._archive_drop(sid int)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_regclass(streamview_internal._archive_table(sid)) IS NOT NULL THEN
        EXECUTE format('DROP TABLE %s', streamview_internal._archive_table(sid));
    END IF;
END $$;

-- Retention of a source's archive, run by its first source worker's
-- housekeeping (and on creation): the tables for the time ahead are
-- created (the current one and the next two), and those whose whole range
-- is older than the source's archive interval are dropped; rows in the
-- default partition that old are deleted.  A table is named after its
-- range in Unix seconds, archive_<source>_<from>_<to>; ranges follow one
-- another from the last one made, so a change of width never overlaps.
-- Returns how many tables were dropped.
CREATE FUNCTION streamview_internal._archive_housekeeping(sid int)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keep    interval;
    t       text := streamview_internal._archive_table(sid);
    w       bigint;
    now_s   bigint := floor(extract(epoch FROM now()))::bigint;
    cutoff  bigint;
    lo      bigint;
    hi      bigint;
    last_hi bigint;
    r       record;
    dropped int := 0;
    taken   bool;
BEGIN
    SELECT s.archive INTO keep FROM streamview.sources s WHERE s.source_id = sid;
    IF keep IS NULL OR to_regclass(t) IS NULL THEN
        RETURN 0;
    END IF;
    w := streamview_internal._archive_width(keep);
    cutoff := floor(extract(epoch FROM now() - keep))::bigint;
    FOR r IN SELECT c.oid::regclass AS rel, split_part(c.relname, '_', 3)::bigint AS lo,
                    split_part(c.relname, '_', 4)::bigint AS hi
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = t::regclass AND c.relname ~ '^archive_[0-9]+_[0-9]+_[0-9]+$'
              ORDER BY 2 LOOP
        IF r.hi <= cutoff THEN
            EXECUTE format('DROP TABLE %s', r.rel);
            dropped := dropped + 1;
        ELSE
            last_hi := greatest(last_hi, r.hi);
        END IF;
    END LOOP;
    EXECUTE format('DELETE FROM %s_default WHERE archived_at < to_timestamp(%s)', t, cutoff);
    lo := greatest(coalesce(last_hi, 0), now_s / w * w);
    WHILE lo < now_s + 2 * w LOOP
        hi := (lo / w + 1) * w;
        -- rows already in the default partition for that range stay there
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s_default WHERE archived_at >= to_timestamp(%s) '
                       'AND archived_at < to_timestamp(%s))', t, lo, hi) INTO taken;
        IF NOT taken THEN
            BEGIN
                EXECUTE format('CREATE TABLE %s_%s_%s PARTITION OF %s FOR VALUES FROM (%L) TO (%L)%s',
                               t, lo, hi, t, to_timestamp(lo), to_timestamp(hi),
                               streamview_internal._archive_tablespace());
            EXCEPTION WHEN check_violation THEN
                -- another of the source's workers committed rows for that
                -- range to the default partition meanwhile: they stay there
                NULL;
            END;
        END IF;
        lo := hi;
    END LOOP;
    RETURN dropped;
END $$;

-- What a replay from the given offsets could not read, per partition: the
-- ranges of offsets below the log's start (log_starts) that the archive
-- does not hold.  parts, wants and starts go together: partition, the
-- offset the replay starts from there (NULL: the start of the partition,
-- offset 0) and the first offset the log still has.  Used by rebuild (with
-- streamview.log_starts, before it starts) and by the replay worker (with
-- what the brokers answer when it starts, replay.c).
CREATE FUNCTION streamview_internal._archive_missing(sid int, parts int[], wants bigint[], starts bigint[])
RETURNS TABLE (partition int, first_offset bigint, last_offset bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i      int;
    want   bigint;
    nxt    bigint;
    r      record;
BEGIN
    FOR i IN 1 .. coalesce(array_length(parts, 1), 0) LOOP
        want := coalesce(wants[i], 0);
        CONTINUE WHEN starts[i] IS NULL OR want >= starts[i];
        nxt := want;
        -- islands of consecutive archived offsets in [want, start)
        FOR r IN SELECT min(x.o) AS lo, max(x.o) AS hi
                   FROM (SELECT a."offset" AS o, a."offset" - row_number() OVER (ORDER BY a."offset") AS g
                           FROM (SELECT DISTINCT a."offset" FROM streamview.archive a
                                  WHERE a.source_id = sid AND a.partition = parts[i]
                                    AND a."offset" >= want AND a."offset" < starts[i]) a) x
                  GROUP BY x.g ORDER BY 1 LOOP
            IF r.lo > nxt THEN
                partition := parts[i]; first_offset := nxt; last_offset := r.lo - 1;
                RETURN NEXT;
            END IF;
            nxt := r.hi + 1;
        END LOOP;
        IF nxt < starts[i] THEN
            partition := parts[i]; first_offset := nxt; last_offset := starts[i] - 1;
            RETURN NEXT;
        END IF;
    END LOOP;
END $$;

-- The missing ranges as one line for an error's DETAIL.
CREATE FUNCTION streamview_internal._archive_missing_text(sid int, parts int[], wants bigint[], starts bigint[])
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT string_agg(format('partition %s: offsets %s to %s', m.partition, m.first_offset, m.last_offset),
                  '; ' ORDER BY m.partition, m.first_offset)
  FROM streamview_internal._archive_missing(sid, parts, wants, starts) m
$$;

-- Per source and partition, what the archive keeps.  bytes are as stored
-- (after compression); oldest and newest are broker timestamps.  Every
-- row of the archive is read: a look now and then, not a dashboard's poll.
-- Each role sees the sources it owns (or is a member of the owner of).
CREATE VIEW streamview.archives AS
SELECT s.name AS source_name, a.partition, min(a."offset") AS first_offset, max(a."offset") AS last_offset,
       count(*) AS messages,
       sum(coalesce(pg_catalog.pg_column_size(a.key), 0) + coalesce(pg_catalog.pg_column_size(a.payload), 0)
           + coalesce(pg_catalog.pg_column_size(a.headers), 0))::bigint AS bytes,
       min(a.broker_time) AS oldest, max(a.broker_time) AS newest
  FROM streamview.archive a JOIN streamview.sources s ON s.source_id = a.source_id
 WHERE pg_catalog.pg_has_role(s.owner, 'USAGE')
 GROUP BY s.name, a.partition;

GRANT SELECT ON streamview.archives TO PUBLIC;
