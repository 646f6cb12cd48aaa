#!/usr/bin/env bash
# The benchmark suite (`make bench`; not a test, CI does not run it).
#
#   make bench                      2M events per topic, 3 interleaved rounds
#   make bench BENCH_QUICK=1        200k events, 1 round, short freshness run
#   bash bench/run.sh [EVENTS] [PARTITIONS]
#
# Starts a throwaway PostgreSQL and the project's mock broker, then
# bench/bench.py produces the topics and runs every contender on every
# workload (bare read, C scan with no database, kcat > COPY > INSERT ON
# CONFLICT whole and in 50k chunks, a Python consumer, a hand-written C
# consumer, pg_streamview), checks that their tables agree, measures
# freshness and replay, and writes bench/results/<date>.{tsv,md}; with
# gnuplot, docs/bench-throughput.png and docs/bench-freshness.png.
# Installs the extension system-wide: run it under the install lock
# (flock -o /tmp/pg_streamview-install.lock make bench).
# Knobs (environment or make variables), all described in docs/benchmarks.md:
# BENCH_EVENTS, BENCH_ROUNDS, BENCH_QUICK, BENCH_PARTITIONS, BENCH_ONLY,
# BENCH_CONTENDERS, BENCH_SV_SOURCE_ARGS, BENCH_SV_OPTIONS, BENCH_SV_SETTINGS,
# BENCH_FRESHNESS, BENCH_FRESHNESS_SECONDS, BENCH_FRESHNESS_RATE, BENCH_PORT,
# BENCH_NO_INSTALL.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/bin/common.sh

[ -n "${1:-}" ] && export BENCH_EVENTS=$1
[ -n "${2:-}" ] && export BENCH_PARTITIONS=$2
PORT=${BENCH_PORT:-55488}

# The contenders' clients, from Debian (the Python consumer uses Debian's
# python3, not one first on PATH).
SV_PACKAGES+=(python3 python3-confluent-kafka python3-psycopg2 gnuplot-nox)
sv_install_deps
# BENCH_NO_INSTALL=1: measure the extension as installed (no build, no install).
[ -n "${BENCH_NO_INSTALL:-}" ] || sv_build_install
make -s mockbroker >/dev/null
make -s PG_CONFIG="$SV_PG_BIN/pg_config" bench/sv_bench_consumer >/dev/null

DIR=$(mktemp -d /tmp/pg_streamview-bench.XXXXXX)
chown "$(sv_server_user)" "$DIR"
cleanup() {
    sv_as_server_user pg_ctl -D "$DIR/data" -m fast stop >/dev/null 2>&1 || true
    bash test/bin/broker.sh stop "$DIR/broker" >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT

PARTS=${BENCH_PARTITIONS:-32}
ADDR=$(bash test/bin/broker.sh start "$DIR/broker" --topic "users10k:$PARTS" --topic "users100:$PARTS" \
       --topic "users100dup:$PARTS" --topic "keys1m:$PARTS" --topic "bids:$PARTS" --topic "fresh:${BENCH_FRESHNESS_PARTITIONS:-16}")
sv_as_server_user initdb -D "$DIR/data" -A trust >/dev/null
cat >> "$DIR/data/postgresql.conf" <<CONF
shared_preload_libraries = 'pg_streamview'
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
shared_buffers = '512MB'
max_wal_size = '4GB'
CONF
sv_as_server_user pg_ctl -D "$DIR/data" -l "$DIR/pg.log" -w start >/dev/null

export BENCH_STAMP=${BENCH_STAMP:-$(date -u +%Y-%m-%d-%H%M)}
status=0
BENCH_ADDR=$ADDR BENCH_PORT=$PORT BENCH_DIR=$DIR /usr/bin/python3 bench/bench.py || status=$?
R=${BENCH_RESULTS:-bench/results}
[ -f "$R/$BENCH_STAMP.tsv" ] && bash bench/plot.sh "$R/$BENCH_STAMP.tsv" || true
exit $status
