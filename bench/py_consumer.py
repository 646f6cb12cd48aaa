#!/usr/bin/python3
"""The Python consumer a DBA writes today (a contender of `make bench`).

confluent-kafka reads every partition from the beginning (assigned, no group
join), json.loads each message, a dict aggregates (view, window, key) ->
count and sum or max; every BATCH events the groups are copied into a
staging table and merged with one INSERT ... ON CONFLICT, with the offsets,
in one transaction.  With --id, duplicate event ids are dropped (a set in
memory; the batch's new ids are copied to a table in the same transaction).

Same options as sv_bench_consumer.c; prints "events N", "rows N" and
"backend CPU_TICKS VMHWM_KB" at the end.
"""
import argparse
import io
import json
import sys

import psycopg2
from confluent_kafka import Consumer, KafkaError, TopicPartition


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--brokers', required=True)
    ap.add_argument('--topic', required=True)
    ap.add_argument('--time', required=True)
    ap.add_argument('--key')
    ap.add_argument('--value')
    ap.add_argument('--agg', default='sum', choices=['sum', 'max', 'none'])
    ap.add_argument('--id')
    ap.add_argument('--window', action='append', required=True)
    ap.add_argument('--conninfo', required=True)
    ap.add_argument('--table', required=True)
    ap.add_argument('--batch', type=int, default=50000)
    a = ap.parse_args()
    windows = [tuple(int(x) for x in w.split(':')) for w in a.window]
    use_value = a.value and a.agg != 'none'

    db = psycopg2.connect(a.conninfo)
    cur = db.cursor()
    cur.execute("SET client_min_messages = warning")
    cur.execute("CREATE TEMP TABLE bench_stage (v int, w bigint, k text, n bigint, s bigint)")
    cur.execute("DROP TABLE IF EXISTS bench_offsets, bench_seen_ids")
    cur.execute("CREATE TABLE bench_offsets (partition int PRIMARY KEY, next_offset bigint)")
    cur.execute("CREATE TABLE bench_seen_ids (id text PRIMARY KEY)")
    cur.execute("TRUNCATE " + a.table)
    db.commit()
    merge = {'sum': 't.s + excluded.s', 'max': 'greatest(t.s, excluded.s)', 'none': 'NULL'}[a.agg]
    upsert = ("INSERT INTO %s AS t (view_no, window_start, k, n, s) "
              "SELECT v, 'epoch'::timestamptz + w * interval '1 millisecond', k, n, s FROM bench_stage "
              "ON CONFLICT (view_no, window_start, k) DO UPDATE SET n = t.n + excluded.n, s = %s"
              % (a.table, merge))

    c = Consumer({'bootstrap.servers': a.brokers, 'group.id': 'bench_py',
                  'enable.auto.commit': False, 'enable.partition.eof': True,
                  'queued.min.messages': 1000000})
    parts = c.list_topics(a.topic, timeout=10).topics[a.topic].partitions
    c.assign([TopicPartition(a.topic, p, -2) for p in parts])    # -2: beginning
    at_eof = set()
    groups = {}
    seen = set()
    new_ids = []
    offsets = {}
    events = rows = in_batch = 0

    def flush():
        nonlocal rows
        buf = io.StringIO()
        for (v, w, k), (n, s) in groups.items():
            buf.write('%d\t%d\t%s\t%d\t%s\n' % (v, w, k, n, '\\N' if s is None else s))
        rows += len(groups)
        buf.seek(0)
        cur.copy_expert("COPY bench_stage FROM STDIN", buf)
        cur.execute(upsert)
        cur.execute("TRUNCATE bench_stage")
        if new_ids:
            cur.copy_expert("COPY bench_seen_ids FROM STDIN", io.StringIO(''.join(i + '\n' for i in new_ids)))
            new_ids.clear()
        cur.executemany("INSERT INTO bench_offsets VALUES (%s, %s) ON CONFLICT (partition) "
                        "DO UPDATE SET next_offset = excluded.next_offset", list(offsets.items()))
        db.commit()
        groups.clear()

    while len(at_eof) < len(parts):
        for m in c.consume(1000, 1.0):
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_eof.add(m.partition())
                    continue
                sys.exit('py_consumer: %s' % err)
            events += 1
            in_batch += 1
            offsets[m.partition()] = m.offset() + 1
            e = json.loads(m.value())
            if a.id:
                i = e.get(a.id)
                if i in seen:
                    i = None
                else:
                    seen.add(i)
                    new_ids.append(i)
            if not a.id or i is not None:
                ts = e[a.time]
                k = str(e.get(a.key, '')) if a.key else ''
                val = e.get(a.value) if use_value else None
                for v, (size, slide) in enumerate(windows):
                    w = ts // slide * slide
                    while w > ts - size:
                        g = groups.get((v, w, k))
                        if g is None:
                            groups[(v, w, k)] = [1, val]
                        else:
                            g[0] += 1
                            if val is not None:
                                g[1] = val if g[1] is None else (max(g[1], val) if a.agg == 'max' else g[1] + val)
                        w -= slide
            if in_batch >= a.batch:
                flush()
                in_batch = 0
    if in_batch:
        flush()
    cur.execute("SELECT bench_backend_usage()")
    print('events %d\nrows %d\nbackend %s' % (events, rows, cur.fetchone()[0]))
    db.commit()
    db.close()
    c.close()


if __name__ == '__main__':
    main()
