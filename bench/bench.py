#!/usr/bin/python3
"""The driver of `make bench` (bench/run.sh starts PostgreSQL and the mock
broker, then runs this).  See docs/benchmarks.md for what it measures.

Every contender reads the same topic from the beginning into the same final
table; the tables are compared by a digest after every run, and a mismatch
fails the benchmark (exit status 1, after the tables are printed).  Rounds
are interleaved (round 1 of every workload and contender, then round 2...)
and the medians reported.

Environment (set by run.sh): BENCH_ADDR (broker), BENCH_PORT (PostgreSQL),
BENCH_DIR (scratch), BENCH_EVENTS, BENCH_ROUNDS, BENCH_QUICK, BENCH_ONLY
(workload names), BENCH_CONTENDERS, BENCH_SV_SOURCE_ARGS, BENCH_SV_OPTIONS,
BENCH_FRESHNESS_SECONDS, BENCH_RESULTS.
"""
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time

import psycopg2
from confluent_kafka import Consumer, Producer, TopicPartition

ENV = os.environ
ADDR = ENV['BENCH_ADDR']
PORT = ENV['BENCH_PORT']
DIR = ENV['BENCH_DIR']
QUICK = ENV.get('BENCH_QUICK', '') not in ('', '0')
EVENTS = int(ENV.get('BENCH_EVENTS') or (200000 if QUICK else 2000000))
ROUNDS = int(ENV.get('BENCH_ROUNDS') or (1 if QUICK else 3))
PARTS = int(ENV.get('BENCH_PARTITIONS') or 32)
FRESH_SECONDS = int(ENV.get('BENCH_FRESHNESS_SECONDS') or (12 if QUICK else 40))
FRESH_RATE = int(ENV.get('BENCH_FRESHNESS_RATE') or 20000)
# (rate x seconds x 1.25) ~100-byte events must stay under the broker's ~5 MiB a partition
FRESH_PARTS = int(ENV.get('BENCH_FRESHNESS_PARTITIONS') or 16)
SV_SOURCE_ARGS = ENV.get('BENCH_SV_SOURCE_ARGS', '')       # e.g. ", workers => 2"
SV_OPTIONS = json.loads(ENV.get('BENCH_SV_OPTIONS') or '{}')  # librdkafka options of the sources
# Server settings for the throughput runs (not for freshness, which runs with
# the defaults); a setting the server does not know is skipped.
SV_SETTINGS = ENV.get('BENCH_SV_SETTINGS', '').split()
RESULTS = ENV.get('BENCH_RESULTS', 'bench/results')
WARMUP = 2      # seconds of the freshness stream not sampled (clients connecting)
PROBES = 50     # probe events a second in the freshness stream
HERE = os.path.dirname(os.path.abspath(__file__))
CONNINFO = 'host=127.0.0.1 port=%s user=postgres dbname=postgres' % PORT
PSQL = ['psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', PORT,
        '-U', 'postgres', '-d', 'postgres']
TICK = os.sysconf('SC_CLK_TCK')
T0 = 1700000000000          # event time of the first event, epoch ms

# ---------------------------------------------------------------- datasets
# ~100-byte JSON events; event time advances 1.75 ms per event over the
# topic (34k events a minute), which gives (a) 0.29 and (b) 0.003 distinct
# (minute, user) groups per event, as in issue 10.
USERS_COLUMNS = {"event_id": "text", "user_id": "text", "amount_cents": "bigint", "ts": "timestamptz"}
BIDS_COLUMNS = {"auction": "bigint", "price": "bigint",
                "date_time": {"type": "timestamptz", "path": "dateTime"}}
CHANNELS = ['Google', 'Facebook', 'Baidu', 'Apple']


def gen_users(users, dup_every=0, key_mult=1):
    """(partition, json) per message, round robin.  dup_every: every n-th
    event is sent twice in a row (same partition, same payload), as a
    producer's retry does."""
    rnd = random.Random(users)
    out = []
    for i in range(EVENTS):
        u = (i * 7919) % users if key_mult else rnd.randrange(users)
        line = '{"event_id":"e%d","user_id":"u%d","amount_cents":%d,"ts":%d}' % (
            i, u, rnd.randrange(10000), T0 + i * 7 // 4)
        out.append((i % PARTS, line))
        if dup_every and i % dup_every == 0:
            out.append((i % PARTS, line))
    return out


def gen_bids():
    """Nexmark-style Bid events (auction, bidder, price, channel, url,
    dateTime, extra): half the bids go to the current hot auction, the rest
    to one of the 1000 most recent; auctions appear at 3 per 50 events as in
    Nexmark's 1:3:46 person:auction:bid mix; 10 bids per ms of event time."""
    rnd = random.Random(46)
    out = []
    for i in range(EVENTS):
        newest = 1000 + i * 3 // 50
        auction = newest // 100 * 100 if rnd.random() < 0.5 else max(1000, newest - rnd.randrange(1000))
        bidder = 1000 + rnd.randrange(max(1, i // 50 + 1))
        ch = rnd.randrange(10000)
        channel = CHANNELS[ch] if ch < 4 else 'channel-%d' % ch
        out.append((i % PARTS, '{"auction":%d,"bidder":%d,"price":%d,"channel":"%s","url":'
                    '"https://www.nexmark.com/%s/item.htm?query=1&channel_id=%d","dateTime":%d,"extra":""}'
                    % (auction, bidder, int(100 * 10 ** (rnd.random() * 4)), channel,
                       channel.lower(), ch, T0 + i // 10)))
    return out


DATASETS = {
    'users10k': (lambda: gen_users(10000, key_mult=0), USERS_COLUMNS),
    'users100': (lambda: gen_users(100, key_mult=0), USERS_COLUMNS),
    'users100dup': (lambda: gen_users(100, dup_every=20, key_mult=0), USERS_COLUMNS),
    'keys1m': (lambda: gen_users(1000000), USERS_COLUMNS),
    'bids': (gen_bids, BIDS_COLUMNS),
}

# ---------------------------------------------------------------- workloads
# windows: (size ms, slide ms), one view each; agg of the value: sum, max or none.
U = dict(dataset='users10k', time='ts', key='user_id', value='amount_cents', agg='sum', id=None)
WORKLOADS = [
    dict(U, name='a', title='(a) 10,000 users, tumble 1 min, count+sum by user', windows=[(60000, 60000)]),
    dict(U, name='b', title='(b) 100 users, tumble 1 min, count+sum by user', dataset='users100',
         windows=[(60000, 60000)]),
    dict(U, name='a_hop', title='(a) with hop 5 min / 1 min', windows=[(300000, 60000)]),
    dict(U, name='keys_1m', title='1M distinct keys, tumble 1 h, count+sum by key', dataset='keys1m',
         windows=[(3600000, 3600000)]),
    dict(U, name='views_10', title='10 views on one source: (a) with tumble 1..10 min',
         windows=[(60000 * i, 60000 * i) for i in range(1, 11)]),
    dict(U, name='dedup', title='(b) with dedup on event_id (5% duplicates)', dataset='users100dup',
         id='event_id', windows=[(60000, 60000)]),
    dict(name='q5', title='Nexmark q5-like: bids per auction, hop 10 s / 2 s', dataset='bids',
         time='dateTime', key='auction', value=None, agg='none', id=None, windows=[(10000, 2000)]),
    dict(name='q7', title='Nexmark q7-like: max price, tumble 10 s', dataset='bids',
         time='dateTime', key=None, value='price', agg='max', id=None, windows=[(10000, 10000)]),
]
ONLY = ENV.get('BENCH_ONLY', '').split()
if ONLY:
    WORKLOADS = [w for w in WORKLOADS if w['name'] in ONLY]

CONTENDERS = ['bare_read', 'c_nodb', 'kcat_copy', 'kcat_copy_50k', 'python', 'c_consumer', 'pg_streamview']
LABELS = {
    'bare_read': 'bare read (kcat)',
    'c_nodb': 'C scan+aggregate, no database',
    'kcat_copy': 'kcat > COPY > INSERT ON CONFLICT (whole topic)',
    'kcat_copy_50k': 'kcat > COPY > INSERT ON CONFLICT (50k chunks)',
    'python': 'Python (confluent-kafka + psycopg2)',
    'c_consumer': 'hand-written C consumer',
    'pg_streamview': 'pg_streamview',
}
if ENV.get('BENCH_CONTENDERS'):
    CONTENDERS = [c for c in CONTENDERS if c in ENV['BENCH_CONTENDERS'].split()]
REFERENCE_ONLY = {'bare_read', 'c_nodb'}    # no table: "ratio to the best other" leaves them out


def log(msg):
    print('==> %s' % msg, file=sys.stderr, flush=True)


def db():
    c = psycopg2.connect(CONNINFO)
    c.autocommit = True
    return c


def q(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


def q1(conn, sql, args=None):
    r = q(conn, sql, args)
    return r[0][0] if r else None


# pg_streamview's first-round runs, for the worker's memory over each run.
MEMORY = []


def proc_usage(pid):
    """(utime+stime ticks, VmHWM kB, RssAnon kB) of a process, or None."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            s = f.read()
        with open('/proc/%d/status' % pid) as f:
            st = dict(l.split(':', 1) for l in f if ':' in l)
    except OSError:
        return None
    fields = s[s.rindex(')') + 2:].split()
    kb = lambda k: int(st.get(k, '0 kB').split()[0])
    return int(fields[11]) + int(fields[12]), kb('VmHWM'), kb('RssAnon')


# ---------------------------------------------------------------- setup
def produce_datasets(conn):
    needed = sorted({w['dataset'] for w in WORKLOADS})
    counts = {}
    for name in needed:
        gen, _ = DATASETS[name]
        log('producing dataset %s' % name)
        lines = gen()
        counts[name] = len(lines)
        files = [open('%s/%s.p%d' % (DIR, name, p), 'w') for p in range(PARTS)]
        for p, l in lines:
            files[p].write(l + '\n')
        for f in files:
            f.close()
        procs = []
        for p in range(PARTS):
            with open('%s/%s.p%d' % (DIR, name, p)) as f:
                procs.append(subprocess.Popen(['kcat', '-P', '-b', ADDR, '-t', name, '-p', str(p), '-z', 'lz4',
                                               '-X', 'linger.ms=50'], stdin=f))
            if len(procs) >= 4:
                if procs.pop(0).wait() != 0:
                    sys.exit('kcat failed to produce %s' % name)
        for pr in procs:
            if pr.wait() != 0:
                sys.exit('kcat failed to produce %s' % name)
        for p in range(PARTS):
            os.unlink('%s/%s.p%d' % (DIR, name, p))
        check_retention(name, counts[name])
    return counts


def check_retention(topic, expected):
    """The mock broker keeps ~5 MiB per partition and drops older data
    silently: every partition must still start at offset 0 and hold all."""
    c = Consumer({'bootstrap.servers': ADDR, 'group.id': 'bench_check'})
    total = 0
    for p in range(PARTS):
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if lo != 0:
            sys.exit('topic %s partition %d starts at offset %d, not 0: the mock broker dropped data '
                     '(its retention is ~5 MiB per partition); use more partitions (BENCH_PARTITIONS) '
                     'or fewer events (BENCH_EVENTS)' % (topic, p, lo))
        total += hi
    c.close()
    if total != expected:
        sys.exit('topic %s holds %d messages, %d produced' % (topic, total, expected))


def setup_database(conn):
    q(conn, "CREATE EXTENSION IF NOT EXISTS pg_streamview")
    # What a client's backend used (CPU ticks and peak RSS), read by the
    # contenders themselves before they disconnect.
    q(conn, r"""CREATE OR REPLACE FUNCTION bench_backend_usage() RETURNS text LANGUAGE sql AS $$
      SELECT (split_part(st, ' ', 12)::bigint + split_part(st, ' ', 13)::bigint)::text || ' ' ||
             substring(status from 'VmHWM:\s+(\d+)')
        FROM (SELECT substr(s, strpos(s, ') ') + 2) AS st, status
                FROM (SELECT pg_read_file('/proc/' || pg_backend_pid() || '/stat') AS s,
                             pg_read_file('/proc/' || pg_backend_pid() || '/status') AS status) r) x $$""")


def apply_settings(conn, settings):
    """ALTER SYSTEM for the known ones of NAME=VALUE settings; [] resets them."""
    applied = []
    for s in SV_SETTINGS:
        name, value = s.split('=', 1)
        if q1(conn, "SELECT count(*) FROM pg_settings WHERE name = %s", (name,)):
            if settings:
                q(conn, "ALTER SYSTEM SET %s = %%s" % name, (value,))
                applied.append(s)
            else:
                q(conn, "ALTER SYSTEM RESET %s" % name)
        else:
            log('setting %s unknown to this server: skipped' % name)
    q(conn, "SELECT pg_reload_conf()")
    return applied


def create_target(conn, table):
    q(conn, "DROP TABLE IF EXISTS %s; CREATE TABLE %s (view_no int, window_start timestamptz, k text, "
            "n bigint, s numeric, PRIMARY KEY (view_no, window_start, k))" % (table, table))


DIGEST = ("SELECT count(*), coalesce(md5(string_agg(concat_ws('|', view_no, window_start, k, n, s), "
          "E'\\n' ORDER BY view_no, window_start, k)), '') FROM (%s) r")


def digest(conn, rows_sql):
    return tuple(q(conn, DIGEST % rows_sql)[0])


# ---------------------------------------------------------------- contenders
def tree_hwm(root):
    """Sum of VmHWM (kB) over a process and its live descendants."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open('/proc/%d/status' % pid) as f:
                for line in f:
                    if line.startswith('VmHWM:'):
                        total += int(line.split()[1])
            for task in os.listdir('/proc/%d/task' % pid):
                with open('/proc/%d/task/%s/children' % (pid, task)) as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            pass
    return total


def run_process(cmd, **kw):
    """Runs a command (a list, or a shell string), returns (seconds, stdout,
    CPU ticks of the process tree, its peak RSS kB).  The peak is sampled
    every 50 ms from /proc as the largest sum of the tree's VmHWM (the
    rusage maxrss of a child spawned by this Python process would count
    this process's own memory, inherited across vfork)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, shell=isinstance(cmd, str), **kw)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.wait(0.05):
            peak[0] = max(peak[0], tree_hwm(p.pid))
    th = threading.Thread(target=sample)
    th.start()
    out = p.stdout.read().decode()
    _, status, ru = os.wait4(p.pid, 0)
    secs = time.monotonic() - t0
    done.set()
    th.join()
    if status != 0:
        sys.exit('contender failed (%s): %s\n%s' % (status, cmd, out[-2000:]))
    return secs, out, round((ru.ru_utime + ru.ru_stime) * TICK), peak[0]


def parse_report(out):
    """Sums the "rows N" and "backend TICKS HWM" lines of a contender."""
    rows = ticks = hwm = 0
    for line in out.splitlines():
        f = line.split()
        if f[:1] == ['rows']:
            rows += int(f[1])
        elif f[:1] == ['backend']:
            ticks += int(f[1])
            hwm = max(hwm, int(f[2]))
    return rows, ticks, hwm


def consumer_args(w):
    a = ['--brokers', ADDR, '--topic', w['dataset'], '--time', w['time'], '--agg', w['agg']]
    for k in ('key', 'value', 'id'):
        if w[k]:
            a += ['--' + k, w[k]]
    for size, slide in w['windows']:
        a += ['--window', '%d:%d' % (size, slide)]
    return a


def run_bare_read(conn, w, n):
    secs, out, ticks, rss = run_process("kcat -C -b %s -t %s -o beginning -e -q -f '%%s\\n' | wc -l"
                                        % (ADDR, w['dataset']))
    if int(out.strip()) != n:
        sys.exit('bare read got %s of %d messages' % (out.strip(), n))
    return dict(secs=secs, ticks=ticks, rss_kb=rss, rows=None, rows_sql=None)


def run_c_nodb(conn, w, n):
    secs, out, ticks, rss = run_process([os.path.join(HERE, 'sv_bench_consumer')] + consumer_args(w))
    return dict(secs=secs, ticks=ticks, rss_kb=rss, rows=None, rows_sql=None)


def run_consumer(conn, w, n, prog):
    table = 'bench_out'
    create_target(conn, table)
    secs, out, ticks, rss = run_process(prog + consumer_args(w) + ['--conninfo', CONNINFO, '--table', table])
    rows, bticks, bhwm = parse_report(out)
    return dict(secs=secs, ticks=ticks + bticks, rss_kb=rss + bhwm, rows=rows, rows_sql='SELECT * FROM ' + table)


def run_c_consumer(conn, w, n):
    return run_consumer(conn, w, n, [os.path.join(HERE, 'sv_bench_consumer')])


def run_python(conn, w, n):
    return run_consumer(conn, w, n, ['/usr/bin/python3', os.path.join(HERE, 'py_consumer.py')])


def sql_aggregate(w, table):
    """The INSERT ... ON CONFLICT a DBA writes over a staging table of raw
    JSON (bench_raw(j jsonb)); with dedup, the ids not seen before."""
    val = "(j->>'%s')::bigint" % w['value'] if w['value'] and w['agg'] != 'none' else 'NULL::bigint'
    key = "coalesce(j->>'%s', '')" % w['key'] if w['key'] else "''"
    agg = {'sum': 'sum(v)', 'max': 'max(v)', 'none': 'NULL::numeric'}[w['agg']]
    merge = {'sum': 't.s + excluded.s', 'max': 'greatest(t.s, excluded.s)', 'none': 'NULL'}[w['agg']]
    wins = ', '.join('(%d, %d, %d)' % (i, s, sl) for i, (s, sl) in enumerate(w['windows']))
    src = 'bench_raw'
    pre = ''
    if w['id']:
        pre = ("CREATE TEMP TABLE bench_fresh AS WITH ins AS (INSERT INTO bench_seen_ids "
               "SELECT DISTINCT j->>'{id}' FROM bench_raw ON CONFLICT DO NOTHING RETURNING id) "
               "SELECT DISTINCT ON (j->>'{id}') j FROM bench_raw JOIN ins ON ins.id = j->>'{id}';\n"
               ).format(id=w['id'])
        src = 'bench_fresh'
    return pre + """INSERT INTO {table} AS t (view_no, window_start, k, n, s)
SELECT view_no, 'epoch'::timestamptz + ws * interval '1 millisecond', k, count(*), {agg}
  FROM (SELECT (j->>'{time}')::bigint AS ts, {key} AS k, {val} AS v FROM {src}) e
 CROSS JOIN (VALUES {wins}) w(view_no, size, slide)
 CROSS JOIN LATERAL generate_series(e.ts / w.slide * w.slide, e.ts - w.size + 1, -w.slide) ws
 GROUP BY 1, 2, 3
ON CONFLICT (view_no, window_start, k) DO UPDATE SET n = t.n + excluded.n, s = {merge};
\\echo rows :ROW_COUNT
""".format(table=table, agg=agg, time=w['time'], key=key, val=val, src=src, wins=wins, merge=merge)


def run_kcat_copy(conn, w, n, chunk=None):
    table = 'bench_out'
    create_target(conn, table)
    q(conn, "DROP TABLE IF EXISTS bench_seen_ids; CREATE TABLE bench_seen_ids (id text PRIMARY KEY)")
    script = os.path.join(DIR, 'kcat_copy.sql')
    with open(script, 'w') as f:
        f.write("SET client_min_messages = warning;\nCREATE TEMP TABLE bench_raw (j jsonb);\n"
                "\\copy bench_raw FROM pstdin\nBEGIN;\n" + sql_aggregate(w, table) +
                "COMMIT;\nSELECT 'backend ' || bench_backend_usage();\n")
    psql = ' '.join(PSQL + ['-f', script])
    kcat = "kcat -C -b %s -t %s -o beginning -e -q -f '%%s\\n'" % (ADDR, w['dataset'])
    if chunk:
        cmd = "%s | split -l %d --filter='%s'" % (kcat, chunk, psql)
    else:
        cmd = "%s | %s" % (kcat, psql)
    secs, out, ticks, rss = run_process(cmd)
    rows, bticks, bhwm = parse_report(out)
    return dict(secs=secs, ticks=ticks + bticks, rss_kb=rss + bhwm, rows=rows, rows_sql='SELECT * FROM ' + table)


def source_sql(w):
    cols = DATASETS[w['dataset']][1]
    opts = dict({'session.timeout.ms': '6000'}, **SV_OPTIONS)
    return ("SELECT streamview.create_source(name => 'bench_src', brokers => %%s, topic => %%s, "
            "columns => %%s, event_time => %%s, event_id => %%s, max_out_of_orderness => '5 seconds', "
            "options => %%s %s)" % SV_SOURCE_ARGS,
            (ADDR, w['dataset'], json.dumps(cols), 'date_time' if w['time'] == 'dateTime' else w['time'],
             w['id'], json.dumps(opts)))


def view_sql(w, i):
    size, slide = w['windows'][i]
    tcol = 'date_time' if w['time'] == 'dateTime' else w['time']
    win = ("streamview.tumble(%s, '%d milliseconds')" % (tcol, size) if size == slide else
           "streamview.hop(%s, '%d milliseconds', '%d milliseconds')" % (tcol, size, slide))
    keys = ', %s AS k' % (w['key'] if w['key'] != 'dateTime' else tcol) if w['key'] else ''
    aggs = ', count(*) AS n'
    if w['agg'] != 'none':
        aggs += ', %s(%s) AS s' % (w['agg'], w['value'])
    return ("SELECT %s AS window_start%s%s FROM bench_src GROUP BY 1%s"
            % (win, keys, aggs, ', 2' if w['key'] else ''))


def sv_workers(conn):
    return [r[0] for r in q(conn, "SELECT pid FROM pg_stat_activity WHERE backend_type IN "
                                  "('pg_streamview source', 'pg_streamview replay')")]


def wait_until(what, pred, timeout=600, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    sys.exit('timed out waiting for %s' % what)


def drop_sv(conn):
    if q1(conn, "SELECT count(*) FROM streamview.source_list WHERE name = 'bench_src'"):
        q(conn, "SELECT streamview.drop_source('bench_src', cascade => true)")
    wait_until('the source workers to exit', lambda: not sv_workers(conn), timeout=60)


def run_pg_streamview(conn, w, n):
    drop_sv(conn)
    q(conn, *source_sql(w))
    pids = wait_until('the source worker', lambda: sv_workers(conn), timeout=60)
    time.sleep(0.2)     # any further workers of the source (workers => N)
    pids = sv_workers(conn)
    before = {p: proc_usage(p) for p in pids}
    views = ['bench_v%d' % i for i in range(len(w['windows']))]
    # batches: each writes its version's stats row once (version_stats)
    stats_sql = ("SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables "
                 "WHERE relid = 'streamview.version_stats'::regclass")
    q(conn, "SELECT pg_stat_clear_snapshot()")
    stats_before = q1(conn, stats_sql) or 0
    t0 = time.monotonic()
    for i, v in enumerate(views):
        q(conn, "SELECT streamview.create_view(%s, %s)", (v, view_sql(w, i)))
    # the workers' private memory (RssAnon) over the run, every half second:
    # (seconds, messages consumed, kB)
    mem = []

    def consumed_all():
        c = q1(conn, "SELECT min(consumed) FROM streamview.status WHERE view_name LIKE 'bench_v%%'") or 0
        now = time.monotonic() - t0
        if not mem or now - mem[-1][0] >= 0.5 or c >= n:
            mem.append((now, c, sum((proc_usage(p) or (0, 0, 0))[2] for p in sv_workers(conn))))
        return c >= n
    wait_until('pg_streamview to consume the topic', consumed_all, step=0.02)
    secs = time.monotonic() - t0
    after = {p: proc_usage(p) for p in sv_workers(conn)}
    ticks = sum(after[p][0] - (before.get(p) or (0,))[0] for p in after if after[p])
    rss = sum(after[p][1] for p in after if after[p])
    anon = sum(after[p][2] for p in after if after[p])
    # rows upserted: the tables' insert and update counters.  A worker
    # reports its statistics at most once a second, and at exit: stop it
    # (the launcher restarts it; the source is dropped next anyway).
    q(conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY(%s)", (list(after),))
    wait_until('the workers to exit', lambda: not set(after) & set(sv_workers(conn)), timeout=30)
    time.sleep(0.2)
    tables = ', '.join("'%s_v1'::regclass" % v for v in views)
    rows = q1(conn, "SELECT sum(n_tup_ins + n_tup_upd) FROM pg_stat_user_tables WHERE relid IN (%s)" % tables)
    batches = ((q1(conn, stats_sql) or 0) - stats_before) // len(views)
    log('pg_streamview: %d events in about %d batches, %.0f events a batch'
        % (n, batches, n / max(batches, 1)))
    sel = ' UNION ALL '.join("SELECT %d AS view_no, window_start, %s AS k, n, %s AS s FROM %s"
                             % (i, "k::text" if w['key'] else "''", 's::numeric' if w['agg'] != 'none'
                                else 'NULL::numeric', v) for i, v in enumerate(views))
    return dict(secs=secs, ticks=ticks, rss_kb=rss, rss_anon_kb=anon, rows=int(rows or 0), rows_sql=sel, mem=mem)


RUNNERS = {
    'bare_read': run_bare_read,
    'c_nodb': run_c_nodb,
    'kcat_copy': run_kcat_copy,
    'kcat_copy_50k': lambda c, w, n: run_kcat_copy(c, w, n, chunk=50000),
    'python': run_python,
    'c_consumer': run_c_consumer,
    'pg_streamview': run_pg_streamview,
}


# ---------------------------------------------------------------- freshness and replay
def freshness(conn):
    """Freshness and replay.  A backlog (half the stream's size, event time
    an hour back) is read first: the time the view takes to catch up is its
    ingest rate.  Then FRESH_RATE events/s stream into 8 partitions for
    FRESH_SECONDS, event time = produce time, with 10 probe events a second
    under keys of their own; a sampler polls the view every 5 ms and records
    when each probe becomes visible.  Halfway, the view is rebuilt (a replay
    of the whole log) while the stream goes on."""
    topic, parts = 'fresh', FRESH_PARTS
    log('freshness and replay at %d events/s for %d s' % (FRESH_RATE, FRESH_SECONDS))
    drop_sv(conn)
    backlog = FRESH_RATE * FRESH_SECONDS // 4
    p = Producer({'bootstrap.servers': ADDR, 'linger.ms': 50, 'compression.type': 'lz4'})
    back0 = int(time.time() * 1000) - 3600000
    for i in range(backlog):
        while True:
            try:
                p.produce(topic, partition=i % parts, value='{"event_id":"b%d","user_id":"u%d","amount_cents":%d,'
                          '"ts":%d}' % (i, i % 100, i % 1000, back0 + i * 7 // 4))
                break
            except BufferError:
                p.poll(0.01)
    p.flush()
    q(conn, "SELECT streamview.create_source(name => 'bench_src', brokers => %%s, topic => %%s, "
            "columns => %%s, event_time => 'ts', max_out_of_orderness => '1 second', options => %%s %s)"
          % SV_SOURCE_ARGS, (ADDR, topic, json.dumps(USERS_COLUMNS),
                             json.dumps(dict({'session.timeout.ms': '6000'}, **SV_OPTIONS))))
    wait_until('the source worker', lambda: sv_workers(conn), timeout=60)
    first = fill_view(conn, 'bench_fresh', backlog)
    ingest = backlog / first['secs']
    sent = {}                     # probe key -> produce time (epoch s)
    seen = {}                     # probe key -> first time visible
    stop = threading.Event()
    prod_done = threading.Event()

    # BENCH_FRESHNESS_PARTITIONER=roundrobin: event i to partition i % parts
    # (tiny message sets); default: keyless, librdkafka's sticky partitioner
    rr = ENV.get('BENCH_FRESHNESS_PARTITIONER', 'sticky') == 'roundrobin'
    stream_part = (lambda i: {'partition': i % parts}) if rr else (lambda i: {})

    def producer():
        p = Producer({'bootstrap.servers': ADDR, 'linger.ms': 2, 'compression.type': 'lz4'})
        p.list_topics(topic, timeout=10)    # connected before the clock starts
        t0 = time.time()
        i = probe = 0
        total = FRESH_RATE * FRESH_SECONDS
        while i < total:
            due = min(total, int((time.time() - t0) * FRESH_RATE))
            while i < due:
                now = time.time()
                if i % (FRESH_RATE // PROBES) == 0:
                    key = 'probe%d' % probe
                    probe += 1
                    sent[key] = now
                else:
                    key = 'u%d' % (i % 100)
                p.produce(topic, **stream_part(i), value='{"event_id":"f%d","user_id":"%s","amount_cents":%d,'
                          '"ts":%d}' % (i, key, i % 1000, int(now * 1000)))
                i += 1
            p.poll(0)
            time.sleep(0.002)
        p.flush()
        prod_done.set()

    def sampler():
        c = db()
        while not stop.is_set():
            for (k,) in q(c, "SELECT user_id FROM bench_fresh WHERE user_id LIKE 'probe%%' "
                             "AND window_start >= now() - interval '120 seconds'"):
                if k not in seen:
                    seen[k] = time.time()
            time.sleep(0.005)
        c.close()

    trace = []                    # (seconds, role, pid, cpu ticks, wait event, activity, done)

    try:
        broker_pid = int(open(os.path.join(DIR, 'broker', 'broker.pid')).read())
    except (OSError, ValueError):
        broker_pid = 0

    def tracer():
        # what the workers do during the run: every 100 ms, each worker's
        # CPU ticks (/proc), wait event and activity, and the rebuild's done
        c = db()
        while not stop.is_set():
            now = time.time() - t_start
            done = q1(c, "SELECT done FROM streamview.rebuilds WHERE view_name = 'bench_fresh' AND version = 2")
            for pid, bt, wt, we, act in q(c, "SELECT pid, backend_type, wait_event_type, wait_event, "
                                             "coalesce(state, '') || ': ' || coalesce(query, '') FROM pg_stat_activity WHERE backend_type IN "
                                             "('pg_streamview source', 'pg_streamview replay')"):
                u = proc_usage(pid)
                trace.append((now, bt.split()[-1], pid, u[0] if u else -1,
                              '%s:%s' % (wt, we) if wt else 'cpu', act[:40], done or 0))
            for role, pid in (('bench.py', os.getpid()), ('broker', broker_pid)):
                u = proc_usage(pid) if pid else None
                trace.append((now, role, pid, u[0] if u else -1, '', '', done or 0))
            with open('/proc/stat') as f:
                cpu = f.readline().split()[1:]
            trace.append((now, 'machine_idle', 0, int(cpu[3]), '', '', sum(int(x) for x in cpu[:8])))
            time.sleep(0.1)
        c.close()

    threads = [threading.Thread(target=producer), threading.Thread(target=sampler),
               threading.Thread(target=tracer)]
    t_start = time.time()
    for t in threads:
        t.start()
    time.sleep(FRESH_SECONDS / 2)
    t_rebuild = time.time()
    q(conn, "SELECT streamview.rebuild('bench_fresh')")
    replay = None
    while time.time() - t_rebuild < 600:
        r = q(conn, "SELECT done, replay_started_at, caught_up_at, clock_timestamp() - replay_started_at "
                    "FROM streamview.rebuilds WHERE view_name = 'bench_fresh' AND version = 2")
        if r and r[0][2] is not None:
            done, started, caught, ago = r[0]
            secs = (caught - started).total_seconds()
            # t_caught on this clock: the database's caught_up_at, not when the poll saw it
            replay = dict(done=done, secs=secs, t_caught=time.time() - ago.total_seconds() + secs)
            break
        time.sleep(0.02)
    # three quarters in (or once the rebuild caught up): a new view on the running source
    time.sleep(max(0, t_start + FRESH_SECONDS * 3 / 4 - time.time()))
    new_view = None
    if not prod_done.is_set():
        # the same query as bench_fresh: the source worker's rate on the same log, under the same load
        new_view = fill_view(conn, 'bench_fresh_new', lambda: q1(
            conn, "SELECT consumed FROM streamview.status WHERE view_name = 'bench_fresh'"))
    prod_done.wait(FRESH_SECONDS * 3)
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join()
    rows = []
    for k, ts in sent.items():
        if ts - t_start < WARMUP or k not in seen:
            continue
        phase = 0
        if replay and t_rebuild <= ts <= replay['t_caught']:
            phase = 1
        elif new_view and new_view['t_create'] <= ts <= new_view['t_done']:
            phase = 2
        rows.append((ts - t_start, (seen[k] - ts) * 1000, phase))
    c = Consumer({'bootstrap.servers': ADDR, 'group.id': 'bench_check'})
    dropped = sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0] for p in range(parts))
    c.close()
    missing = sum(1 for k, ts in sent.items() if ts - t_start >= WARMUP and k not in seen)
    drop_sv(conn)
    rows.sort()
    return dict(samples=rows, missing=missing, replay=replay, t_rebuild=t_rebuild - t_start, trace=trace,
                t_start=t_start,
                ingest=ingest, backlog=backlog, dropped=dropped, first=first, new_view=new_view,
                partitioner='round robin' if rr else 'sticky')


def fill_view(conn, view, events):
    """Creates view, then times it: until its first events are applied
    (streamview.status.consumed > 0) and until it has consumed events (a
    number, or a function called right after create_view: the events it
    must read).  Times on time.time()'s clock, polled every 10 ms."""
    t_create = time.time()
    q(conn, "SELECT streamview.create_view(%s, $$ SELECT streamview.tumble(ts, '1 second') AS window_start, "
            "user_id, count(*) AS n, sum(amount_cents) AS s FROM bench_src GROUP BY 1, 2 $$)", (view,))
    if callable(events):
        events = events()
    consumed = lambda: q1(conn, "SELECT coalesce(consumed, 0) FROM streamview.status WHERE view_name = %s",
                          (view,)) or 0
    t_first = wait_until('the first events of ' + view, lambda: consumed() > 0 and time.time(), step=0.01)
    t_done = wait_until('view ' + view + ' to catch up', lambda: consumed() >= events and time.time(), step=0.01)
    return dict(t_create=t_create, first_ms=(t_first - t_create) * 1000, t_done=t_done,
                secs=t_done - t_create, events=events)


def trace_cpu(trace, t0, t1):
    """From the tracer's samples: each process's CPU between t0 and t1
    (seconds since the stream started), in % of one core, and the machine's
    idle share (%)."""
    first, last = {}, {}
    for t, role, pid, ticks, _, _, extra in trace:
        if t0 <= t <= t1 and ticks >= 0:
            first.setdefault((role, pid), (t, ticks, extra))
            last[(role, pid)] = (t, ticks, extra)
    out = {}
    for k, (ta, a, ea) in first.items():
        tb, b, eb = last[k]
        if k[0] == 'machine_idle':
            out['idle'] = 100.0 * (b - a) / max(eb - ea, 1)
        elif tb > ta:
            out[k[0]] = out.get(k[0], 0) + 100.0 * (b - a) / TICK / (tb - ta)
    return out


def freshness_report(fr):
    """The freshness and replay part of the results, as markdown lines."""
    md = []
    phases = [('steady, no rebuild', 0), ('while a rebuild replays', 1), ('while a new view fills', 2)]
    md += ['', '| freshness at %d events/s (%d partitions, %s partitioner, 1 s tumble, default settings) '
           '| p50 ms | p99 ms | probes |' % (FRESH_RATE, FRESH_PARTS, fr['partitioner']), '|---|---|---|---|']
    for title, ph in phases:
        v = [s[1] for s in fr['samples'] if s[2] == ph]
        md.append('| %s | %.0f | %.0f | %d |' % (title, pct(v, 50), pct(v, 99), len(v)))
    if fr['dropped']:
        md.append('\nTHE BROKER DROPPED %d MESSAGES of the freshness topic (its ~5 MiB per partition '
                  'retention): the replay read a moving log start; raise BENCH_FRESHNESS_PARTITIONS or '
                  'lower BENCH_FRESHNESS_SECONDS.' % fr['dropped'])
    if fr['missing']:
        md.append('\n%d probes were never seen by the sampler.' % fr['missing'])
    first = fr['first']
    md.append('\nIngest: the view created on the backlog of %d events read its first events %.0f ms after '
              'create_view and the whole backlog in %.2f s: %s.' % (fr['backlog'], first['first_ms'],
                                                                  first['secs'], fmt_rate(fr['ingest'])))
    rp = fr['replay']
    if rp:
        cpu = trace_cpu(fr['trace'], fr['t_rebuild'], rp['t_caught'] - fr['t_start'])
        md.append('\nReplay: a rebuild replayed %d events in %.2f s = %s, **%.2f× the ingest rate**, while the '
                  'stream went on. CPU meanwhile, %% of one core: %s; machine idle %.0f%%.'
                  % (rp['done'], rp['secs'], fmt_rate(rp['done'] / rp['secs']),
                     rp['done'] / rp['secs'] / fr['ingest'],
                     ', '.join('%s %.0f' % kv for kv in sorted(cpu.items()) if kv[0] != 'idle'),
                     cpu.get('idle', float('nan'))))
    else:
        md.append('\nReplay: the rebuild did not catch up.')
    nv = fr['new_view']
    if nv:
        md.append('\nNew view: the same query created on the running source read its first events %.0f ms '
                  'after create_view and the %d events of the log in %.2f s (%s), the source worker reading '
                  'the same log under the same load%s.'
                  % (nv['first_ms'], nv['events'], nv['secs'], fmt_rate(nv['events'] / nv['secs']),
                     ': the replay ran at %.2f× that' % (rp['done'] / rp['secs'] / (nv['events'] / nv['secs']))
                     if rp else ''))
    return md


def pct(v, p):
    if not v:
        return float('nan')
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def save_diff(conn, rows_sql, name):
    """Writes the rows only the reference has (-) and only the contender has (+)."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, 'mismatch-%s.tsv' % name)
    rows = q(conn, "(SELECT '-' AS side, * FROM (TABLE bench_ref EXCEPT ALL (%s)) a) UNION ALL "
                   "(SELECT '+', * FROM ((%s) EXCEPT ALL TABLE bench_ref) b) ORDER BY 2, 3, 4, 1 LIMIT 10000"
             % (rows_sql, rows_sql))
    with open(path, 'w') as f:
        for r in rows:
            f.write('\t'.join(str(x) for x in r) + '\n')
    log('differences written to %s' % path)


# ---------------------------------------------------------------- main
def machine():
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '?')
    mem = next((int(l.split()[1]) for l in open('/proc/meminfo') if l.startswith('MemTotal')), 0)
    return '%d cores, %s, %.1f GiB RAM' % (os.cpu_count(), cpu, mem / 1048576)


def fmt_rate(r):
    return '%.3f M/s' % (r / 1e6)


def main():
    conn = db()
    setup_database(conn)
    counts = produce_datasets(conn)
    global APPLIED
    APPLIED = apply_settings(conn, SV_SETTINGS)
    raw = []                       # one dict per run
    failures = []
    for rnd in range(1, ROUNDS + 1):
        for w in WORKLOADS:
            n = counts[w['dataset']]
            ref = None
            for c in CONTENDERS:
                log('round %d/%d, workload %s, %s' % (rnd, ROUNDS, w['name'], c))
                r = RUNNERS[c](conn, w, n)
                r.update(round=rnd, workload=w['name'], contender=c, events=n)
                raw.append(r)
                if c == 'pg_streamview' and rnd == 1:
                    MEMORY.append((w['name'], r))
                r['digest'] = digest(conn, r['rows_sql']) if r['rows_sql'] else None
                if r['digest'] is not None:
                    if ref is None:
                        # the first table is the reference the others must equal
                        ref = (c, r['digest'])
                        q(conn, "DROP TABLE IF EXISTS bench_ref; CREATE TABLE bench_ref AS " + r['rows_sql'])
                    elif r['digest'] != ref[1]:
                        failures.append('workload %s round %d: %s has %s rows, digest %s; %s has %s rows, '
                                        'digest %s' % (w['name'], rnd, c, r['digest'][0], r['digest'][1],
                                                       ref[0], ref[1][0], ref[1][1]))
                        log('MISMATCH: ' + failures[-1])
                        save_diff(conn, r['rows_sql'], '%s-%s-%s' % (w['name'], c, ref[0]))
                log('  %.2f s, %s, %s groups' % (r['secs'], fmt_rate(n / r['secs']),
                                                 r['digest'][0] if r['digest'] else '-'))

    # medians per (workload, contender)
    table = []
    for w in WORKLOADS:
        meds = {}
        for c in CONTENDERS:
            rs = [r for r in raw if r['workload'] == w['name'] and r['contender'] == c]
            if not rs:
                continue
            n = rs[0]['events']
            meds[c] = dict(
                workload=w['name'], contender=c, events=n, rounds=len(rs),
                rate=statistics.median(n / r['secs'] for r in rs),
                cpu_us=statistics.median(r['ticks'] / TICK * 1e6 / n for r in rs),
                rss_mb=statistics.median(r['rss_kb'] for r in rs) / 1024,
                rss_anon_mb=(statistics.median(r['rss_anon_kb'] for r in rs) / 1024
                             if 'rss_anon_kb' in rs[0] else None),
                rows_per_event=(statistics.median(r['rows'] / n for r in rs) if rs[0]['rows'] is not None
                                else None),
                groups=rs[0]['digest'][0] if rs[0]['digest'] else None)
        bare = meds.get('bare_read', {}).get('rate')
        for c, m in meds.items():
            others = [o['rate'] for oc, o in meds.items() if oc != c and oc not in REFERENCE_ONLY]
            m['vs_bare'] = m['rate'] / bare if bare else None
            m['vs_best_other'] = m['rate'] / max(others) if others and c not in REFERENCE_ONLY else None
            m['best_other'] = (max(((o['rate'], oc) for oc, o in meds.items()
                                    if oc != c and oc not in REFERENCE_ONLY), default=(0, ''))[1])
            table.append(m)

    apply_settings(conn, [])
    fr = freshness(conn) if 'pg_streamview' in CONTENDERS and ENV.get('BENCH_FRESHNESS', '1') != '0' else None
    report(table, fr, failures, counts)
    if failures:
        print('\nBENCHMARK FAILED: the contenders\' tables differ:\n  ' + '\n  '.join(failures), file=sys.stderr)
        sys.exit(1)


def report(table, fr, failures, counts):
    os.makedirs(RESULTS, exist_ok=True)
    stamp = ENV.get('BENCH_STAMP') or time.strftime('%Y-%m-%d-%H%M', time.gmtime())
    base = os.path.join(RESULTS, stamp)
    cols = ['workload', 'contender', 'events', 'rounds', 'rate', 'cpu_us', 'rss_mb', 'rss_anon_mb',
            'rows_per_event', 'groups', 'vs_bare', 'vs_best_other', 'best_other']
    f3 = lambda v: '' if v is None else ('%.3f' % v if isinstance(v, float) else str(v))
    with open(base + '.tsv', 'w') as f:
        f.write('\t'.join(cols) + '\n')
        for m in table:
            f.write('\t'.join(f3(m.get(c)) for c in cols) + '\n')
    titles = {w['name']: w['title'] for w in WORKLOADS}
    md = ['Machine: %s. %s events per topic (%d partitions, lz4), medians of %d interleaved rounds.'
          % (machine(), ', '.join('%s %d' % kv for kv in sorted(counts.items())), PARTS, ROUNDS), '',
          '| workload | contender | events/s | CPU µs/event | peak RSS MB | rows upserted/event | '
          '× bare read | × best other |', '|---|---|---|---|---|---|---|---|']
    for m in table:
        md.append('| %s | %s | %s | %.2f | %.0f%s | %s | %s | %s |' % (
            titles[m['workload']], LABELS[m['contender']], fmt_rate(m['rate']), m['cpu_us'], m['rss_mb'],
            ' (%.0f private)' % m['rss_anon_mb'] if m['rss_anon_mb'] is not None else '',
            '%.3f' % m['rows_per_event'] if m['rows_per_event'] is not None else '-',
            '%.2f×' % m['vs_bare'] if m['vs_bare'] else '-',
            '%.2f× (%s)' % (m['vs_best_other'], LABELS[m['best_other']]) if m['vs_best_other'] else '-'))
    if MEMORY:
        # RssAnon when the worker had read the first million events (or the
        # first tenth of a smaller topic), and at the end: flat, or growing?
        md += ['', '| workload | pg_streamview worker RssAnon MB after 1M events (a tenth of a smaller topic) '
               '| at the end (events) | largest | growth |', '|---|---|---|---|---|']
        with open(base + '-memory.tsv', 'w') as f:
            f.write('workload\tseconds\tconsumed\trss_anon_kb\n')
            for wname, r in MEMORY:
                for t, c, kb in r['mem']:
                    f.write('%s\t%.1f\t%d\t%d\n' % (wname, t, c, kb))
                mark = 1000000 if r['mem'][-1][1] >= 2000000 else r['mem'][-1][1] // 10
                at = next((kb for t, c, kb in r['mem'] if c >= mark and kb), 0)
                end = r['mem'][-1][2]
                md.append('| %s | %.0f | %.0f (%d) | %.0f | %+.0f%% |' % (
                    titles[wname], at / 1024, end / 1024, r['mem'][-1][1], max(kb for _, _, kb in r['mem']) / 1024,
                    100.0 * (end - at) / at if at else 0))
    nex = [m for m in table if m['workload'] in ('q5', 'q7') and m['contender'] == 'pg_streamview']
    if nex:
        md += ['', '| Nexmark-like query | pg_streamview events per CPU-second | Flink 1.13, full query, '
               'published (nexmark/nexmark README) |', '|---|---|---|']
        for m in nex:
            md.append('| %s | %.1f K/s | %s |' % (m['workload'], 1e3 / m['cpu_us'],
                                                 {'q5': '22.14 K/s', 'q7': '12.33 K/s'}[m['workload']]))
    if fr:
        md += freshness_report(fr)
        with open(base + '-trace.tsv', 'w') as f:
            f.write('seconds\trole\tpid\tcpu_ticks\twait\tactivity\tdone\n')
            for s in fr['trace']:
                f.write('%.2f\t%s\t%d\t%d\t%s\t%s\t%d\n' % s)
        with open(base + '-freshness.tsv', 'w') as f:
            f.write('seconds\tlatency_ms\tphase\n')
            for s in fr['samples']:
                f.write('%.3f\t%.1f\t%d\n' % s)
    with open(base + '.md', 'w') as f:
        f.write('\n'.join(md) + '\n')
    print('\n'.join(md))
    print('\nwritten: %s.tsv, %s.md%s' % (base, base, ', %s-freshness.tsv' % base if fr else ''))


if __name__ == '__main__':
    main()
