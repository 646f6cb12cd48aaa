#!/usr/bin/env bash
# Soak: stream at a steady rate for a while, kill the source worker every
# minute, and sample the worker's memory (RssAnon) and lag every second.
# Passes when the view is exact at the end (its count equals the events
# sent, the ledger balances), memory stays flat and lag does not grow.
# Not part of `make test` (it runs for minutes): `make soak`.
#
#   bash bench/soak.sh [MINUTES] [EVENTS_PER_SECOND]     (defaults: 10 2000)
#
# Writes bench/results/soak.tsv (one line a second: seconds, rss_kb, lag,
# consumed, kills) and, with gnuplot, docs/soak.png.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/bin/common.sh

MINUTES=${1:-10}
RATE=${2:-2000}
PORT=${SOAK_PORT:-55489}
PARTS=8
sv_install_deps
dpkg -s gnuplot-nox >/dev/null 2>&1 || { [ "$(id -u)" = 0 ] &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null; } || true
sv_build_install

DIR=$(mktemp -d /tmp/pg_streamview-soak.XXXXXX)
chown "$(sv_server_user)" "$DIR"
PRODUCER=
cleanup() {
    [ -n "$PRODUCER" ] && kill "$PRODUCER" 2>/dev/null || true
    sv_as_server_user pg_ctl -D "$DIR/data" -m fast stop >/dev/null 2>&1 || true
    bash test/bin/broker.sh stop "$DIR/broker" >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT

ADDR=$(bash test/bin/broker.sh start "$DIR/broker" --topic "soak:$PARTS")
sv_as_server_user initdb -D "$DIR/data" -A trust >/dev/null
cat >> "$DIR/data/postgresql.conf" <<CONF
shared_preload_libraries = 'pg_streamview'
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
streamview.restart_delay = 1
streamview.max_restart_delay = 2
CONF
sv_as_server_user pg_ctl -D "$DIR/data" -l "$DIR/pg.log" -w start >/dev/null
PSQL=(psql -X -q -A -t -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1)
"${PSQL[@]}" -c "CREATE EXTENSION pg_streamview" -c "
  SELECT streamview.create_source('soak', '$ADDR', 'soak',
    '{\"event_id\":\"text\",\"user_id\":\"text\",\"amount\":\"bigint\",\"ts\":\"timestamptz\"}', 'ts',
    event_id => 'event_id', max_out_of_orderness => '5 seconds', options => '{\"session.timeout.ms\":\"6000\"}');
  SELECT streamview.create_view('soak_n', \$q\$ SELECT streamview.tumble(ts, '1 minute') AS window_start,
    user_id, count(*) AS n, sum(amount) AS amount FROM soak GROUP BY 1, 2 \$q\$, allowed_lateness => '1 minute');" >/dev/null

# The producer: RATE events a second, in 10 bursts a second, 500 users,
# event time = now, lz4 (the mock broker keeps 5 MiB per partition).
TOTAL=$((MINUTES * 60 * RATE))
perl -e '
  use Time::HiRes qw(time sleep);
  my ($addr, $rate, $total, $parts) = @ARGV;
  my @k;
  for my $p (0 .. $parts - 1) {
    open($k[$p], "|-", "kcat", "-P", "-b", $addr, "-t", "soak", "-p", $p, "-K", "\t", "-z", "lz4",
         "-X", "linger.ms=5") or die;
    select((select($k[$p]), $| = 1)[0]);
  }
  my $t0 = time; my $i = 0;
  while ($i < $total) {
    my $due = int((time - $t0) * $rate);
    while ($i < $due && $i < $total) {
      my $p = $i % $parts; my $u = int(rand(500));
      my $ms = int(time * 1000);
      printf { $k[$p] } "u%d\t{\"event_id\":\"e%d\",\"user_id\":\"u%d\",\"amount\":%d,\"ts\":%d}\n",
        $u, $i, $u, 1 + $i % 100, $ms;
      $i++;
    }
    sleep(0.1);
  }
  close($_) for @k;' "$ADDR" "$RATE" "$TOTAL" "$PARTS" &
PRODUCER=$!

mkdir -p bench/results
OUT=bench/results/soak.tsv
printf 'seconds\trss_kb\tlag\tconsumed\tkills\n' > "$OUT"
worker_pid() {
    "${PSQL[@]}" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_streamview source'"
}
kills=0
start=$(date +%s)
sv_log "streaming $RATE events/s for $MINUTES minutes, killing the worker every minute"
while :; do
    now=$(date +%s)
    t=$((now - start))
    pid=$(worker_pid || true)
    rss=$( [ -n "$pid" ] && awk '/^RssAnon/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo)
    row=$("${PSQL[@]}" -F $'\t' -c "SELECT coalesce(lag, -1), consumed FROM streamview.status" 2>/dev/null || echo)
    printf '%s\t%s\t%s\t%s\n' "$t" "${rss:-}" "$row" "$kills" >> "$OUT"
    if [ "$t" -gt 0 ] && [ $((t % 60)) -eq 30 ] && [ -n "$pid" ] && [ "$t" -lt $((MINUTES * 60)) ]; then
        kill -9 "$pid" && kills=$((kills + 1))
        sleep 1
    fi
    kill -0 "$PRODUCER" 2>/dev/null || break
    sleep 1
done
wait "$PRODUCER" || true
PRODUCER=
sv_log "producer done; waiting for the worker to catch up"
for ((i = 0; i < 600; i++)); do
    [ "$("${PSQL[@]}" -c "SELECT consumed FROM streamview.status" 2>/dev/null || echo 0)" -ge "$TOTAL" ] && break
    sleep 1
done

consumed=$("${PSQL[@]}" -c "SELECT consumed FROM streamview.status")
counted=$("${PSQL[@]}" -c "SELECT sum(n) FROM soak_n")
balanced=$("${PSQL[@]}" -c "SELECT bool_and(balanced) FROM streamview.partitions")
dups=$("${PSQL[@]}" -c "SELECT duplicates FROM streamview.status")
# memory: the median of each minute's samples, first full minute against the last
read -r first last < <(perl -F'\t' -lane '
  next if $. == 1 || $F[1] eq "";
  push @{ $m{ int($F[0] / 60) } }, $F[1];
  END {
    my @min = sort { $a <=> $b } keys %m;
    my $med = sub { my @v = sort { $a <=> $b } @{ $m{ $_[0] } }; $v[ int(@v / 2) ] };
    print $med->($min[1] // $min[0]), " ", $med->($min[-2] // $min[-1]);
  }' "$OUT")
maxlag=$(perl -F'\t' -lane 'next if $. == 1 || $F[0] < 60 || $F[2] eq ""; $m = $F[2] if $F[2] > $m;
  END { print $m + 0 }' "$OUT")
echo
echo "events sent          $TOTAL"
echo "consumed             $consumed"
echo "counted in the view  $counted  (duplicates $dups, ledger balanced: $balanced)"
echo "worker kills         $kills"
echo "RssAnon (median kB)  minute 1: $first, last minute: $last"
echo "largest lag (events) $maxlag"

if command -v gnuplot >/dev/null; then
    gnuplot <<GP
set terminal png size 900,500 noenhanced
set output 'docs/soak.png'
set title "pg_streamview soak: $RATE events/s for $MINUTES min, source worker killed every minute"
set xlabel 'seconds'
set ylabel 'worker RssAnon (kB)'
set y2label 'lag (events)'
set y2tics
set ytics nomirror
set key top left
set datafile separator '\t'
plot '$OUT' every ::1 using 1:2 with lines title 'RssAnon (kB)', \
     '$OUT' every ::1 using 1:3 axes x1y2 with lines title 'lag (events)'
GP
    echo "plot: docs/soak.png"
fi

ok=1
[ "$consumed" -eq "$TOTAL" ] || ok=0
[ "$counted" -eq "$TOTAL" ] || ok=0
[ "$balanced" = t ] || ok=0
[ -n "$first" ] && [ -n "$last" ] && [ "$last" -le $((first * 11 / 10 + 1024)) ] || ok=0
[ "$ok" = 1 ] && echo "soak: PASS" || { echo "soak: FAIL"; exit 1; }
