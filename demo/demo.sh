#!/usr/bin/env bash
# `make demo`: install what is missing, build and install pg_streamview, start a
# throwaway PostgreSQL 15 and a local Kafka broker (librdkafka's mock cluster),
# stream 30 minutes of purchase events into a topic, create stream views over
# it, and show what a DBA sees: the views, their status, the per-partition
# ledger, the dead letters, a live update, then a change of a view's logic
# (rebuild, validate, swap, roll back).  Every line fits 100 columns.
#
#   bash demo/demo.sh             run the demo, then stop and remove everything
#   KEEP=1 bash demo/demo.sh      leave PostgreSQL and the broker running, for
#                                 the tour of README.md (it prints how to connect)
#   bash demo/demo.sh stop DIR    stop what KEEP=1 left running in DIR
#
# The broker also has an empty topic "orders" (1 partition): the tour's; and
# "payments", Avro messages whose schemas a small local schema registry
# serves (test/bin/sv_registry.py, stopped with the rest).
# demo/produce.sh sends messages to the running demo's broker.
#
# Environment: KEEP=1 (see above), DEMO_PORT (first port to try, 55499);
# for t/021_tour.pl: DEMO_DIR (the scratch directory, new or empty, instead
# of one under /tmp) and DEMO_BUILD=0 (use the installed extension and the
# built broker: no packages, no build, no install).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. test/bin/common.sh

MARKER=.pg_streamview-demo
TOPIC=purchases
PARTITIONS=4
TOUR_TOPIC=orders           # README.md's tour: created empty, one partition
AVRO_TOPIC=payments         # Avro messages, one partition
CONSUME_TIMEOUT=60          # seconds the worker gets to consume the history

# --- output --------------------------------------------------------------------
if [ -t 1 ]; then B=$'\e[1m' D=$'\e[2m' R=$'\e[0m'; else B='' D='' R=''; fi
T0=$(date +%s%N)
elapsed() { local ms=$((($(date +%s%N) - T0) / 1000000)); printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100)); }
heading() { printf '\n%s== %s ==%s %s[%s]%s\n' "$B" "$*" "$R" "$D" "$(elapsed)" "$R"; }
say() { local l; for l in "$@"; do printf '%s-- %s%s\n' "$D" "$l" "$R"; done; }
die() { printf '\ndemo: %s\n' "$*" >&2; exit 1; }

# --- stop DIR ----------------------------------------------------------------------
stop_all() {
    local dir=$1
    if [ -f "$dir/data/postmaster.pid" ]; then
        sv_as_server_user pg_ctl stop -D "$dir/data" -m fast -w -t 30 >/dev/null 2>&1 ||
            echo "demo: pg_ctl stop failed; see $dir/postgres.log" >&2
    fi
    [ -d "$dir/broker" ] && bash "$ROOT/test/bin/broker.sh" stop "$dir/broker"
    if [ -s "$dir/registry/pid" ]; then kill "$(cat "$dir/registry/pid")" 2>/dev/null || true; fi
    rm -rf "$dir"
}

if [ "${1:-}" = stop ]; then
    dir=${2:-}
    [ -n "$dir" ] && [ -f "$dir/$MARKER" ] || die "usage: bash demo/demo.sh stop DIR (a directory that KEEP=1 make demo printed)"
    stop_all "$dir"
    echo "stopped PostgreSQL and the broker, removed $dir"
    exit 0
fi
[ $# -eq 0 ] || die "usage: bash demo/demo.sh | KEEP=1 bash demo/demo.sh | bash demo/demo.sh stop DIR"

# --- install, build ---------------------------------------------------------------
VERSION=$(sed -n "s/^default_version = '\(.*\)'/pg_streamview \1/p" pg_streamview.control)
if [ "${DEMO_BUILD:-1}" = 0 ]; then
    heading "Using the installed pg_streamview"
    say "$VERSION, from $($SV_PG_BIN/pg_config --pkglibdir)"
else
    heading "Installing and building pg_streamview"
    sv_install_deps
    sv_build_install || die "the build failed (run make to see why)"
    say "built and installed $VERSION into $($SV_PG_BIN/pg_config --pkglibdir)"
fi

# --- scratch directory, cleanup ---------------------------------------------------
if [ -n "${DEMO_DIR:-}" ]; then
    mkdir -p "$DEMO_DIR" && [ -z "$(ls -A "$DEMO_DIR")" ] || die "DEMO_DIR $DEMO_DIR is not a new or empty directory"
    DIR=$(cd "$DEMO_DIR" && pwd)
else
    DIR=$(mktemp -d /tmp/pg_streamview-demo.XXXXXX)
fi
touch "$DIR/$MARKER"
mkdir -p "$DIR/events" "$DIR/live" "$DIR/broker"
chown -R "$(sv_server_user)" "$DIR"
chmod 755 "$DIR"
PORT=
BOOTSTRAP=

on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    if [ $rc -eq 130 ] || [ $rc -eq 143 ]; then
        printf '\ndemo interrupted after %s\n' "$(elapsed)" >&2
    elif [ $rc -ne 0 ]; then
        printf '\n%sdemo FAILED%s (exit %d) after %s\n' "$B" "$R" $rc "$(elapsed)" >&2
        if [ -f "$DIR/postgres.log" ]; then
            echo "---- last lines of the PostgreSQL log ($DIR/postgres.log):" >&2
            tail -n 25 "$DIR/postgres.log" >&2
        fi
        if [ -s "$DIR/broker/broker.log" ]; then
            echo "---- last lines of the broker log:" >&2
            tail -n 10 "$DIR/broker/broker.log" >&2
        fi
    fi
    if [ "${KEEP:-0}" = 1 ] && [ -d "$DIR" ]; then
        [ $rc -ne 0 ] && echo "KEEP=1: leaving everything running in $DIR; stop it with: bash $ROOT/demo/demo.sh stop $DIR" >&2
        exit $rc
    fi
    stop_all "$DIR"
    [ $rc -eq 0 ] || echo "stopped PostgreSQL and the broker, removed $DIR" >&2
    exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- broker ------------------------------------------------------------------------
heading "Starting a local Kafka broker"
BOOTSTRAP=$(bash test/bin/broker.sh start "$DIR/broker" --topic "$TOPIC:$PARTITIONS" \
                --topic "$TOUR_TOPIC:1" --topic "$AVRO_TOPIC:1") || die "the broker did not start"
say "librdkafka's mock cluster (test/mockbroker/sv_mockbroker), in memory, on $BOOTSTRAP;" \
    "topic \"$TOPIC\" with $PARTITIONS partitions, \"$TOUR_TOPIC\", empty, for README.md's tour," \
    "and \"$AVRO_TOPIC\", for an Avro source"

# --- PostgreSQL ------------------------------------------------------------------------
heading "Starting a throwaway PostgreSQL 15"
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for ((p = ${DEMO_PORT:-55499}; p < ${DEMO_PORT:-55499} + 50; p++)); do
    if port_free "$p"; then PORT=$p; break; fi
done
[ -n "$PORT" ] || die "no free TCP port from ${DEMO_PORT:-55499} on"
SUPERUSER=$(sv_server_user)
sv_as_server_user initdb -D "$DIR/data" -U "$SUPERUSER" -A trust -E UTF8 --no-locale -N \
    > "$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
cat >> "$DIR/data/postgresql.conf" <<EOF

# pg_streamview demo
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
shared_preload_libraries = 'pg_streamview'
streamview.database = 'postgres'
timezone = 'UTC'
EOF
sv_as_server_user pg_ctl start -D "$DIR/data" -l "$DIR/postgres.log" -w -t 30 >/dev/null ||
    die "PostgreSQL did not start"
say "listening on 127.0.0.1:$PORT, with shared_preload_libraries = 'pg_streamview';" \
    "data directory:" "  $DIR/data"

export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=$SUPERUSER PGDATABASE=postgres
# Tables wider than 100 columns wrap (psql's wrapped format); the queries
# below are chosen so that few do.
PSQL=("$SV_PG_BIN/psql" -X -P pager=off -P format=wrapped -P columns=100 -v ON_ERROR_STOP=1)

# Prints SQL as typed at the psql prompt, then runs it and prints what psql shows.
sql() {
    local q=$1 line prompt='postgres=#'
    echo
    while IFS= read -r line; do
        printf '%s%s%s %s\n' "$B" "$prompt" "$R" "$line"
        case $line in *';' | *'\gx') prompt='postgres=#' ;; *) prompt='postgres-#' ;; esac
    done <<<"$q"
    "${PSQL[@]}" <<<"$q" || die "this statement failed"
}
# One value, quietly.
value() { "${PSQL[@]}" -qAt -c "$1"; }

# Produces the files in directory $1 (p<N>.tsv) to their partitions, with
# demo/produce.sh (kcat); prints the count.
produce() {
    local dir=$1 p n total=0
    for ((p = 0; p < PARTITIONS; p++)); do
        [ -s "$dir/p$p.tsv" ] || continue
        DEMO_DIR=$DIR bash demo/produce.sh -p "$p" "$TOPIC" < "$dir/p$p.tsv" > /dev/null ||
            die "demo/produce.sh could not send to partition $p"
        n=$(wc -l < "$dir/p$p.tsv")
        total=$((total + n))
    done
    echo "$total"
}

# Prints key<TAB>json lines as the demo shows messages: indented, the JSON
# wrapped after a comma so that a line fits 100 columns.
show_messages() {
    perl -ne 'chomp; my ($k, $v) = split /\t/, $_, 2; my $line = "   $k  "; my $pad = " " x length $line;
              for my $part (split /(?<=,)/, $v) {
                  if (length($line) + length($part) > 99 && $line =~ /,$/) { print "$line\n"; $line = $pad }
                  $line .= $part }
              print "$line\n"'
}

# Waits until every stream view has consumed $1 messages, at most $2 seconds.
wait_consumed() {
    local want=$1 timeout=$2 deadline got
    deadline=$(($(date +%s%N) + timeout * 1000000000))
    while :; do
        got=$(value "SELECT coalesce(min(consumed), 0) FROM streamview.status") || got=0
        [ "$got" -ge "$want" ] && return 0
        if [ "$(date +%s%N)" -gt "$deadline" ]; then
            echo >&2
            echo "demo: the stream worker consumed $got of $want messages within ${timeout}s." >&2
            "${PSQL[@]}" -c "SELECT view_name, version, state, consumed, lag, error FROM streamview.status" \
                -c "SELECT source_name, message, detail, occurred_at FROM streamview.worker_errors" \
                -c "SELECT name, last_error FROM streamview.source_list" >&2 || true
            die "the worker did not keep up; see the PostgreSQL log below"
        fi
        sleep 0.1
    done
}

# --- events ------------------------------------------------------------------------
heading "Streaming 30 minutes of purchases into the topic"
START_MS=$((($(date +%s) / 60 * 60 - 30 * 60) * 1000))   # 30 minutes ago, on a minute
perl demo/generate.pl --out "$DIR/events" --start-ms "$START_MS" --partitions "$PARTITIONS" |
    while IFS= read -r l; do say "$l"; done
PRODUCED=$(produce "$DIR/events")
say "produced $PRODUCED messages with kcat, one partition at a time, through demo/produce.sh:"
echo "   bash demo/produce.sh -p 0 $TOPIC < p0.tsv    # key<TAB>json lines"
say "two of them:"
sed -n '1p;$p' "$DIR/events/p0.tsv" | show_messages

# --- SQL ---------------------------------------------------------------------------
heading "Creating the extension, a source and three stream views"
say "The topic already holds the history: each new view replays it from the start of the log."
sql "CREATE EXTENSION pg_streamview;"
sql "SELECT streamview.create_source(
  name        => 'purchases',
  brokers     => '$BOOTSTRAP',
  topic       => '$TOPIC',
  columns     => '{\"event_id\": \"text\", \"user_id\": \"text\",
                   \"country\": {\"type\": \"text\", \"default\": \"unknown\"},
                   \"amount_cents\": \"bigint\",
                   \"os\": {\"type\": \"text\", \"path\": \"device.os\"},
                   \"ts\": \"timestamptz\"}',
  event_time  => 'ts',                  -- ISO-8601 text or epoch milliseconds
  event_id    => 'event_id',            -- a message sent twice is counted once
  max_out_of_orderness => '5 seconds');"
sql "SELECT streamview.create_view(
  name  => 'revenue_per_minute',
  query => \$\$ SELECT streamview.tumble(ts, '1 minute') AS window_start, country,
                   count(*) AS purchases, sum(amount_cents) AS revenue_cents,
                   avg(amount_cents) AS avg_cents
              FROM purchases GROUP BY 1, 2 \$\$,
  allowed_lateness => '2 minutes');"
sql "SELECT streamview.create_view(
  name  => 'sales_by_os_10min',
  query => \$\$ SELECT streamview.hop(ts, '10 minutes', '5 minutes') AS window_start, os,
                   count(*) AS purchases, sum(amount_cents) AS revenue_cents,
                   max(amount_cents) AS biggest_cents
              FROM purchases GROUP BY 1, 2 \$\$,
  allowed_lateness => '1 minute');"
sql "SELECT streamview.create_view(
  name  => 'big_spenders_5min',
  query => \$\$ SELECT streamview.tumble(ts, '5 minutes') AS window_start, user_id,
                   count(*) AS purchases, sum(amount_cents) AS spent_cents,
                   bool_or(amount_cents >= 10000) AS any_over_100
              FROM purchases WHERE amount_cents > 0 GROUP BY 1, 2 \$\$,
  allowed_lateness => '5 minutes');"

t_wait=$(date +%s%N)
printf '\n%s-- waiting until every view has consumed all %d messages (at most %ds) ...%s' "$D" "$PRODUCED" "$CONSUME_TIMEOUT" "$R"
wait_consumed "$PRODUCED" "$CONSUME_TIMEOUT"
printf '%s done in %d ms%s\n' "$D" $((($(date +%s%N) - t_wait) / 1000000)) "$R"

# --- results -------------------------------------------------------------------------
heading "The views: ordinary views over ordinary tables, queried with plain SQL"
say "Each row is one (window, keys) group: window_start, window_end, the keys, the aggregates," \
    "and is_final: true once window_end + allowed_lateness <= the view's watermark, i.e." \
    "no event that may still arrive can change the row. The newest minutes are not final yet."
sql "SELECT window_start, country, purchases, revenue_cents,
       round(avg_cents) AS avg_cents, is_final
  FROM revenue_per_minute ORDER BY window_start, country LIMIT 12;"
say "Country 'unknown' is the column's declared default: an old app version sends no country."
say "Hopping windows: every purchase counts in two overlapping 10-minute windows."
sql "SELECT window_start, window_end, os, purchases, biggest_cents, is_final
  FROM sales_by_os_10min ORDER BY window_start, os LIMIT 9;"
say "An analyst's question, answered from the view: who spent most in the latest final 5 minutes?"
sql "SELECT window_start, user_id, purchases, spent_cents, any_over_100
  FROM big_spenders_5min
 WHERE window_start = (SELECT max(window_start) FROM big_spenders_5min WHERE is_final)
 ORDER BY spent_cents DESC LIMIT 5;"

heading "Status: one row per view version"
say "watermark: the minimum over the partitions of (latest event time seen - max_out_of_orderness)." \
    "lag: messages behind the log end."
sql "SELECT view_name, version, state, watermark, lag
  FROM streamview.status ORDER BY view_name;"
say "Nothing is lost silently: consumed = applied + duplicates + too_late + dead_lettered." \
    "duplicates: messages whose event_id was already applied (the producer retries)." \
    "too_late: behind the partition's watermark by more than the view's allowed_lateness;" \
    "  each view has its own, so the 80-110 s late events are too late only for the 1-minute one." \
    "dead_lettered: messages that cannot be read."
sql "SELECT view_name, consumed, applied, duplicates, too_late, dead_lettered
  FROM streamview.status ORDER BY view_name;"

heading "Per partition: offsets, event-time watermark, the same ledger"
say "next_offset is stored in PostgreSQL in the same transaction as the rows it produced" \
    "(exactly once: a crash neither loses nor double-counts an event). One view shown;" \
    "streamview.partitions has a row per view version and partition."
sql "SELECT partition, next_offset, log_end, lag, watermark, consumed, balanced
  FROM streamview.partitions WHERE view_name = 'revenue_per_minute' ORDER BY partition;"

heading "Dead letters: what was not applied, and why"
say "Unreadable messages are recorded once for the source, with partition, offset and raw bytes." \
    "The stream never stops for them: the rest of the partition was applied."
sql "SELECT partition, \"offset\", reason, error, convert_from(payload, 'UTF8') AS payload
  FROM streamview.dead_letters WHERE reason <> 'too_late' ORDER BY 1, 2 \\gx"
say "Too-late events are recorded once per view that refused them, with their event time:"
sql "SELECT view_name, allowed_lateness, count(*) AS too_late,
       min(event_time)::timestamp(0) AS oldest, max(event_time)::timestamp(0) AS newest
  FROM streamview.dead_letters JOIN streamview.views ON views.name = view_name
 WHERE reason = 'too_late' GROUP BY 1, 2 ORDER BY 1;"
sql "SELECT partition, \"offset\", event_time,
       convert_from(payload, 'UTF8')::json->>'event_id' AS event_id
  FROM streamview.dead_letters
 WHERE view_name = 'revenue_per_minute' AND reason = 'too_late' ORDER BY 1, 2;"

# --- live ---------------------------------------------------------------------------
heading "Live: a few more purchases arrive"
FROM_TS=$(date -u -d "@$((START_MS / 1000 + 27 * 60))" '+%Y-%m-%d %H:%M:%S+00')
WATERMARK="SELECT view_name, watermark
  FROM streamview.status WHERE view_name = 'revenue_per_minute';"
LATEST="SELECT window_start, sum(purchases) AS purchases, sum(revenue_cents) AS revenue_cents,
       bool_and(is_final) AS is_final
  FROM revenue_per_minute WHERE window_start >= '$FROM_TS'
 GROUP BY window_start ORDER BY window_start;"
say "The latest minutes, all countries together, before:"
sql "$WATERMARK"
sql "$LATEST"
NOW_MS=$(date +%s%3N)
perl demo/generate.pl --live --out "$DIR/live" --start-ms "$NOW_MS" --partitions "$PARTITIONS" |
    while IFS= read -r l; do say "$l"; done
t_live=$(date +%s%N)
LIVE=$(produce "$DIR/live")
wait_consumed $((PRODUCED + LIVE)) 30
say "all views applied the $LIVE new messages $((($(date +%s%N) - t_live) / 1000000)) ms after kcat started sending them. After:"
sql "$WATERMARK"
sql "$LATEST"
say "The current minute appeared; the purchases from 70-80 s ago were added to an already" \
    "published minute (an upsert corrects the row); the watermark moved on, and windows with" \
    "window_end + 2 minutes <= watermark became final."

# --- change the logic ---------------------------------------------------------------
heading "Changing a view's logic: rebuild, validate, swap, roll back"
say "A rebuild replays the topic into version 2 of the view, next to the live version 1," \
    "which readers go on reading and the worker keeps current. Version 2 has one more column," \
    "the biggest purchase, and leaves out purchases under \$10."
sql "SELECT streamview.rebuild('revenue_per_minute', query => \$\$
  SELECT streamview.tumble(ts, '1 minute') AS window_start, country,
         count(*) AS purchases, sum(amount_cents) AS revenue_cents,
         avg(amount_cents) AS avg_cents, max(amount_cents) AS biggest_cents
    FROM purchases WHERE amount_cents >= 1000 GROUP BY 1, 2 \$\$);"
say "It has caught up once it has read as far as version 1 in every partition." \
    "wait_for waits for that (here at most $CONSUME_TIMEOUT seconds), reporting progress:"
sql "SELECT streamview.wait_for('revenue_per_minute', 2, timeout => '$CONSUME_TIMEOUT seconds');"
say "validate compares it with version 1 over the windows final in both. 'differences' reports" \
    "what changed, for you to judge (with expect_identical => true it fails on any difference);" \
    "its detail also quotes up to 5 rows that differ, left out here:"
sql "SELECT \"check\", passed, split_part(detail, '; e.g.', 1) AS detail
  FROM streamview.validate('revenue_per_minute', 2) \\gx"
say "The purchases under \$10 are gone from version 2, as intended. It passed: swap readers to it." \
    "The view is redefined in one transaction; readers see version 1, then version 2."
sql "SELECT streamview.swap('revenue_per_minute', 2);"
sql "SELECT window_start, country, purchases, revenue_cents, biggest_cents, is_final
  FROM revenue_per_minute ORDER BY window_start, country LIMIT 5;"
say "Version 1 is still kept current, so going back is instant:"
sql "SELECT streamview.rollback('revenue_per_minute');"
sql "SELECT window_start, country, purchases, revenue_cents, is_final
  FROM revenue_per_minute ORDER BY window_start, country LIMIT 5;"
sql "SELECT view_name, version, state, consumed, lag
  FROM streamview.status WHERE view_name = 'revenue_per_minute' ORDER BY version;"
say "docs/runbook.md has the whole procedure: checks (add_check), abandoning a rebuild" \
    "(drop_version), a rebuild from a point in time."

# --- Avro ----------------------------------------------------------------------------
heading "An Avro source next to the JSON one"
say "Topic \"$AVRO_TOPIC\" holds payments in Avro, in Confluent's wire format (a schema id," \
    "then the body), written with python3-avro; a schema registry serves the schemas by id" \
    "(test/bin/sv_registry.py, a stand-in for Confluent's, on 127.0.0.1). Two versions of" \
    "the schema wrote them: the second reorders the fields, adds one, makes the buyer nullable."
mkdir -p "$DIR/registry/schemas" "$DIR/avro"
perl -MJSON::PP -e '
    my ($dir, $start_ms) = @ARGV;
    my $json = JSON::PP->new->canonical;
    my $dec = { type => "bytes", logicalType => "decimal", precision => 10, scale => 2 };
    my $v1 = { type => "record", name => "Payment", namespace => "demo", fields => [
        { name => "payment_id", type => "string" },
        { name => "ts", type => { type => "long", logicalType => "timestamp-millis" } },
        { name => "amount", type => $dec },
        { name => "method", type => { type => "enum", name => "Method",
                                      symbols => [ "card", "paypal", "transfer" ] } },
        { name => "buyer", type => { type => "record", name => "Buyer",
                                     fields => [ { name => "country", type => "string" } ] } } ] };
    my $v2 = { type => "record", name => "Payment", namespace => "demo", fields => [
        { name => "ts", type => { type => "long", logicalType => "timestamp-micros" } },
        { name => "buyer", type => [ "null", { type => "record", name => "Buyer", fields => [
            { name => "city", type => "string" }, { name => "country", type => "string" } ] } ] },
        { name => "payment_id", type => "string" },
        { name => "amount", type => $dec },
        { name => "method", type => "string" },
        { name => "channel", type => "string" } ] };
    for ([ 1, $v1 ], [ 2, $v2 ]) {
        open my $f, ">", "$dir/registry/schemas/$_->[0].json" or die;
        print $f $json->encode({ schema => $json->encode($_->[1]) });
    }
    my @spec;
    for my $i (0 .. 59) {
        my $ms = $start_ms + $i * 30_000;
        my $cents = 500 + $i * 7_919 % 20_000;
        my $amount = sprintf("%d.%02d", $cents / 100, $cents % 100);
        my $method = ("card", "paypal", "transfer")[$i % 3];
        my $country = ("DE", "FR", "US")[$i * 7 % 3];
        push @spec, $i < 30
          ? { id => 1, schema => $v1, record => { payment_id => "p$i", ts => $ms, amount => $amount,
                method => $method, buyer => { country => $country } } }
          : { id => 2, schema => $v2, record => { payment_id => "p$i", ts => $ms * 1000,
                amount => $amount, method => $method, channel => "web",
                buyer => $i % 10 == 0 ? undef : { city => "x", country => $country } } };
    }
    open my $f, ">", "$dir/avro.json" or die;
    print $f $json->encode(\@spec);' "$DIR" "$START_MS"
/usr/bin/python3 test/bin/sv_registry.py encode "$DIR/avro.json" "$DIR/avro" ||
    die "python3-avro could not write the Avro messages"
/usr/bin/python3 test/bin/sv_registry.py serve "$DIR/registry/schemas" 0 "$DIR/registry/port" \
    > "$DIR/registry/log" 2>&1 &
echo $! > "$DIR/registry/pid"
for _ in $(seq 100); do [ -s "$DIR/registry/port" ] && break; sleep 0.1; done
[ -s "$DIR/registry/port" ] || die "the schema registry did not start; see $DIR/registry/log"
REGISTRY=http://127.0.0.1:$(cat "$DIR/registry/port")
AVRO_SENT=$(find "$DIR/avro" -type f | wc -l)
kcat -P -b "$BOOTSTRAP" -t "$AVRO_TOPIC" -p 0 $(find "$DIR/avro" -type f | sort) ||
    die "kcat could not send the Avro messages"
say "the registry listens on $REGISTRY;" \
    "produced $AVRO_SENT Avro messages, one file each, with kcat."
say "The source names the format and the registry; columns are found by field name and path," \
    "whichever version wrote the message (the registry is asked once per schema id):"
sql "SELECT streamview.create_source(
  name            => 'payments',
  brokers         => '$BOOTSTRAP',
  topic           => '$AVRO_TOPIC',
  columns         => '{\"payment_id\": \"text\", \"method\": \"text\", \"amount\": \"numeric\",
                       \"country\": {\"type\": \"text\", \"path\": \"buyer.country\"},
                       \"ts\": \"timestamptz\"}',
  event_time      => 'ts',
  format          => 'avro',
  schema_registry => '$REGISTRY');"
sql "SELECT streamview.create_view(
  name  => 'payments_per_10min',
  query => \$\$ SELECT streamview.tumble(ts, '10 minutes') AS window_start, method,
                   count(*) AS payments, sum(amount) AS amount,
                   count(country) AS with_country
              FROM payments GROUP BY 1, 2 \$\$);"
deadline=$(($(date +%s) + CONSUME_TIMEOUT))
until [ "$(value "SELECT coalesce(max(consumed), 0) >= $AVRO_SENT FROM streamview.status
                  WHERE view_name = 'payments_per_10min'")" = t ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "the Avro source did not consume its $AVRO_SENT messages"
    sleep 0.1
done
sql "SELECT window_start, method, payments, amount, with_country, is_final
  FROM payments_per_10min ORDER BY window_start, method;"
say "Decimals are exact, timestamps are the schema's (ms in version 1, µs in version 2); a null" \
    "buyer gives a null country. A message whose schema id the registry does not know is a dead" \
    "letter (schema_error); while the registry is down, the source waits and says so in status."

# --- end -----------------------------------------------------------------------------
heading "Done"
if [ "${KEEP:-0}" = 1 ]; then
    cat <<EOF
PostgreSQL and the broker keep running (KEEP=1). Next, take the tour in README.md
("A five-minute tour"): it runs as written on them. Connect with

  psql -h 127.0.0.1 -p $PORT -U $SUPERUSER -v broker=$BOOTSTRAP postgres

(-v broker=... gives psql the broker's address as :'broker', which the tour's
create_source uses), and run the tour's shell steps in $ROOT,
where demo/produce.sh sends messages to this broker:

  bash demo/produce.sh $TOUR_TOPIC < messages    # one JSON message a line

Stop everything (and remove the scratch directory):

  bash demo/demo.sh stop $DIR

PostgreSQL's log: $DIR/postgres.log
EOF
else
    echo "Stopping PostgreSQL and the broker, removing $DIR."
    echo "To keep them running and take the tour of README.md on them: KEEP=1 make demo"
fi
