#!/usr/bin/env bash
# Ingest benchmark: pg_streamview against a bare read of the same topic,
# side by side on this machine, reported as rates and ratios.
#
#   bash bench/run.sh [EVENTS] [PARTITIONS]     (defaults: 1000000 32)
#   BENCH_WORKERS=2 bash bench/run.sh ...       (source workers: default 1)
#
# Baseline: kcat reading the whole topic to /dev/null (the bare read rate of
# ../shared/KAFKA.md).  Each scenario then creates a view on a fresh source
# over the same topic (a new view replays the log from the start) and times
# how long until it has consumed every event.  Not part of `make test`:
# numbers depend on the machine; ratios are what to compare across changes.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/bin/common.sh

EVENTS=${1:-1000000}
PARTS=${2:-32}
PORT=${BENCH_PORT:-55488}
# workers => N for the sources without an event_id (one with keeps one)
WORKERS=${BENCH_WORKERS:-1}
sv_install_deps
sv_build_install

DIR=$(mktemp -d /tmp/pg_streamview-bench.XXXXXX)
chown "$(sv_server_user)" "$DIR"
cleanup() {
    sv_as_server_user pg_ctl -D "$DIR/data" -m fast stop >/dev/null 2>&1 || true
    bash test/bin/broker.sh stop "$DIR/broker" >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT

ADDR=$(bash test/bin/broker.sh start "$DIR/broker" --topic "bench:$PARTS")
sv_as_server_user initdb -D "$DIR/data" -A trust >/dev/null
cat >> "$DIR/data/postgresql.conf" <<CONF
shared_preload_libraries = 'pg_streamview'
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
shared_buffers = '512MB'
max_wal_size = '4GB'
synchronous_commit = on
streamview.batch_size = 50000
streamview.batch_timeout = 100
CONF
sv_as_server_user pg_ctl -D "$DIR/data" -l "$DIR/pg.log" -w start >/dev/null
PSQL=(psql -X -q -A -t -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1)
"${PSQL[@]}" -c "CREATE EXTENSION pg_streamview"

# ~100-byte JSON events, 2000 users, one event per 20 ms of event time per partition.
sv_log "producing $EVENTS events into $PARTS partitions"
perl -e '
  my ($n, $parts, $dir) = @ARGV;
  my @fh;
  for my $p (0 .. $parts - 1) { open($fh[$p], ">", "$dir/p$p.txt") or die }
  for my $i (0 .. $n - 1) {
    my $p = $i % $parts; my $u = int(rand(2000));
    my $ts = 1700000000000 + int($i / $parts) * 20 + $p;
    printf { $fh[$p] } "u%d\t{\"event_id\":\"e%d\",\"user_id\":\"u%d\",\"amount_cents\":%d,\"ts\":%d}\n",
      $u, $i, $u, int(rand(10000)), $ts;
  }' "$EVENTS" "$PARTS" "$DIR"
for ((p = 0; p < PARTS; p++)); do
    kcat -P -b "$ADDR" -t bench -p "$p" -K $'\t' -z lz4 < "$DIR/p$p.txt"
done

now() { date +%s.%N; }
rate() { perl -e 'printf "%.0f", $ARGV[0] / ($ARGV[2] - $ARGV[1])' "$EVENTS" "$1" "$2"; }

t0=$(now)
got=$(kcat -C -b "$ADDR" -t bench -o beginning -e -q -f '\n' | wc -l)
t1=$(now)
[ "$got" -eq "$EVENTS" ] || { echo "baseline read $got of $EVENTS events" >&2; exit 1; }
BASE=$(rate "$t0" "$t1")

run_scenario() {    # name, event_id (text or NULL), query
    local name=$1 event_id=$2 query=$3 t0 t1 r workers=1
    if [ "$event_id" = NULL ] && [ "$WORKERS" -gt 1 ]; then
        workers=$WORKERS
        name="$name, $workers workers"
    fi
    "${PSQL[@]}" -o /dev/null -c "SELECT streamview.create_source(name => 'bench', brokers => '$ADDR', topic => 'bench',
        columns => '{\"event_id\":\"text\",\"user_id\":\"text\",\"amount_cents\":\"bigint\",\"ts\":\"timestamptz\"}',
        event_time => 'ts', event_id => $event_id, max_out_of_orderness => '5 seconds', workers => $workers)"
    t0=$(now)
    "${PSQL[@]}" -o /dev/null -c "SELECT streamview.create_view('bench_view', \$q\$ $query \$q\$)"
    until [ "$("${PSQL[@]}" -c "SELECT coalesce(sum(consumed), 0) FROM streamview.status")" -ge "$EVENTS" ]; do
        sleep 0.1
    done
    t1=$(now)
    r=$(rate "$t0" "$t1")
    local groups
    groups=$("${PSQL[@]}" -c "SELECT count(*) FROM bench_view")
    printf '%-34s %10s ev/s   %5.2f x bare read   (%s rows)\n' "$name" "$r" \
        "$(perl -e 'print $ARGV[0] / $ARGV[1]' "$r" "$BASE")" "$groups"
    "${PSQL[@]}" -o /dev/null -c "SELECT streamview.drop_source('bench', cascade => true)"
}

echo
printf '%-34s %10s ev/s\n' "bare read (kcat, baseline)" "$BASE"
run_scenario "few groups (1-minute totals)" NULL \
    "SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n, sum(amount_cents) AS cents FROM bench GROUP BY 1"
run_scenario "many groups (per user per minute)" NULL \
    "SELECT streamview.tumble(ts, '1 minute') AS window_start, user_id, count(*) AS n, sum(amount_cents) AS cents FROM bench GROUP BY 1, 2"
run_scenario "few groups, dedup by event_id" "'event_id'" \
    "SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n, sum(amount_cents) AS cents FROM bench GROUP BY 1"
