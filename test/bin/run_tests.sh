#!/usr/bin/env bash
# `make test`: install what is missing, build, install, then run every test
# (pg_regress for the SQL surface, Perl TAP for the broker, workers, crashes)
# as the server user in a scratch directory, and print "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
. test/bin/common.sh

sv_install_deps || exit 1
# make test SANITIZE=1 (make test-sanitize): the same suite under ASan and
# UBSan, with a PostgreSQL built for it (test/bin/pg_asan.sh); the extension
# is built and installed from the scratch copy below, never here.
if [ -n "${SANITIZE:-}" ]; then
    sv_use_sanitized_pg || { echo "0 passed, 1 failed"; exit 1; }
else
    sv_build_install || { echo "0 passed, 1 failed"; exit 1; }
fi
# the real Kafka 0.9.0.1 of the fault tests (Java and its jars, from npm), once
if [ "${SV_TAP:-}" != none ]; then
    sv_log "fetching Apache Kafka 0.9.0.1 for the fault tests"
    bash test/bin/kafka09.sh fetch || { echo "0 passed, 1 failed"; exit 1; }
fi

WORK=$(mktemp -d /tmp/pg_streamview-test.XXXXXX)
cleanup() {
    # Stop anything a test left behind: brokers and servers under $WORK.
    for pidf in "$WORK"/tree/tmp_check/*/broker.pid "$WORK"/*/broker.pid \
                "$WORK"/tree*/tmp_check/*/kafka.pid "$WORK"/tree*/tmp_check/*/zk.pid; do
        [ -f "$pidf" ] && kill "$(cat "$pidf")" 2>/dev/null
    done
    pkill -f "$WORK" 2>/dev/null
    mountpoint -q "$WORK/tinyfs" && { umount "$WORK/tinyfs" 2>/dev/null || umount -l "$WORK/tinyfs"; }
    rm -rf "$WORK"
}
trap cleanup EXIT
# A copy the server user can read and write, wherever this clone lives.
mkdir -p "$WORK/tree"
tar -C "$ROOT" --exclude=.git -cf - . | tar -C "$WORK/tree" -xf -
if [ -n "${SANITIZE:-}" ]; then
    (cd "$WORK/tree" && sv_build_install_sanitized) || { echo "0 passed, 1 failed"; exit 1; }
fi
chown -R "$(sv_server_user)" "$WORK"
cd "$WORK/tree"

passed=0
failed=0

# Fixed ports of the pg_regress, isolation and pgTAP servers; a sanitized
# run uses others, so that it can run next to a plain one.
port_offset=0
if [ -n "${SANITIZE:-}" ]; then
    port_offset=100
    # Every sanitized program started from here (servers, psql, pg_regress)
    # aborts at its first report and writes it to a file under
    # $WORK/sanitizer; each file counts as a failure at the end: a backend
    # that aborts is otherwise hidden by crash recovery.  Leaks are not
    # checked: PostgreSQL frees memory by context.
    mkdir -p "$WORK/sanitizer" && chmod 1777 "$WORK/sanitizer"
    export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$WORK/sanitizer/report"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1:log_path=$WORK/sanitizer/report"
    sv_log "sanitizers: ASan and UBSan, PostgreSQL in $(dirname "$SV_PG_BIN"), reports in $WORK/sanitizer"
fi

# SV_REGRESS / SV_ISOLATION / SV_PGTAP / SV_TAP narrow a run while developing
# (names, or "none").
taps=${SV_TAP:-t/}
# run_regress LABEL DRIVER NAME PORT TESTS...: pg_regress or
# pg_isolation_regress under a temporary preloaded instance, counted; on a
# failure the diffs are shown and the results kept in $ROOT/results-NAME.
run_regress() {
    local label=$1 driver=$2 name=$3 port=$4 ok bad
    shift 4
    sv_log "$label"
    sv_as_server_user "$driver" \
        --temp-instance="$WORK/$name-instance" --temp-config=test/pg_streamview.conf \
        --inputdir=test --outputdir="$WORK/$name" --bindir="$SV_PG_BIN" \
        --port="$port" "$@" > "$WORK/$name.log" 2>&1
    cat "$WORK/$name.log"
    ok=$(grep -cE '\.\.\. ok|^ok ' "$WORK/$name.log")
    bad=$(grep -cE '\.\.\. FAILED|^not ok ' "$WORK/$name.log")
    passed=$((passed + ok)); failed=$((failed + bad))
    if [ "$bad" -gt 0 ] || [ "$ok" -eq 0 ]; then
        [ "$ok" -eq 0 ] && [ "$bad" -eq 0 ] && failed=$((failed + 1))
        cat "$WORK/$name/regression.diffs" 2>/dev/null
        # kept for a look after the scratch directory is gone
        rm -rf "$ROOT/results-$name" && cp -r "$WORK/$name/results" "$ROOT/results-$name" 2>/dev/null
    fi
}

if [ "${SV_REGRESS:-}" != none ]; then
    run_regress "pg_regress (SQL surface)" "$SV_PGXS_DIR/src/test/regress/pg_regress" regress $((55431 + port_offset)) \
        ${SV_REGRESS:-$(ls test/sql/*.sql | xargs -n1 basename | sed 's/\.sql$//' | sort)}
fi
if [ "${SV_ISOLATION:-}" != none ]; then
    run_regress "isolation (concurrent sessions)" "$SV_PGXS_DIR/src/test/isolation/pg_isolation_regress" \
        isolation $((55434 + port_offset)) --dbname=regression ${SV_ISOLATION:-$(ls test/specs/*.spec | xargs -n1 basename | sed 's/\.spec$//' | sort)}
fi

if [ "${SV_PGTAP:-}" != none ]; then
sv_log "pgTAP (SQL-level assertions, with pg_prove)"
PGT="$WORK/pgtap"
mkdir -p "$PGT" && chown "$(sv_server_user)" "$PGT"
sv_as_server_user initdb -D "$PGT/data" -A trust -U postgres > "$PGT/initdb.log" 2>&1
{ cat test/pg_streamview.conf
  # pgTAP runs in the database the workers serve, with the workers on
  echo "streamview.database = 'postgres'"
  echo "streamview.enabled = on"
  echo "listen_addresses = ''"
  echo "unix_socket_directories = '$PGT'"
  echo "port = $((55433 + port_offset))"; } >> "$PGT/data/postgresql.conf"
sv_as_server_user pg_ctl -D "$PGT/data" -l "$PGT/server.log" -w start > /dev/null
sv_as_server_user pg_prove -h "$PGT" -p $((55433 + port_offset)) -U postgres -d postgres -v \
    ${SV_PGTAP:-test/pgtap/*.sql} > "$WORK/pgtap.log" 2>&1
pgtap_rc=$?
sv_as_server_user pg_ctl -D "$PGT/data" -m fast -w stop > /dev/null
cat "$WORK/pgtap.log"
ok=$(grep -cE '^\s*ok [0-9]+' "$WORK/pgtap.log")
bad=$(grep -cE '^\s*not ok [0-9]+' "$WORK/pgtap.log")
passed=$((passed + ok)); failed=$((failed + bad))
if { [ $pgtap_rc -ne 0 ] && [ "$bad" -eq 0 ]; } || [ "$ok" -eq 0 ]; then
    failed=$((failed + 1))    # a file died, planned more than it ran, or nothing ran
    tail -n 30 "$PGT/server.log"
fi
fi

# run_tap LABEL TESTDIR SV_BROKER TESTS...: prove, counted; logs shown on failure
run_tap() {
    local label=$1 testdir=$2 broker=$3
    shift 3
    sv_log "$label"
    mkdir -p "$testdir" && chown "$(sv_server_user)" "$testdir"
    sv_as_server_user env TESTDIR="$testdir" PG_REGRESS="$SV_PGXS_DIR/src/test/regress/pg_regress" \
        SV_BROKER="$broker" SV_TINY_FS="${SV_TINY_FS:-}" SV_RELEASE_0_1_SRC="${SV_RELEASE_0_1_SRC:-}" \
        PERL5LIB="$SV_PGXS_DIR/src/test/perl:$WORK/tree/t/lib" \
        prove -v -j1 --ext .pl "$@" > "$testdir/tap.log" 2>&1
    local rc=$? ok bad f
    cat "$testdir/tap.log"
    ok=$(grep -cE '^\s*ok [0-9]+' "$testdir/tap.log")
    bad=$(grep -cE '^\s*not ok [0-9]+' "$testdir/tap.log")
    passed=$((passed + ok)); failed=$((failed + bad))
    if { [ $rc -ne 0 ] && [ "$bad" -eq 0 ]; } || [ "$ok" -eq 0 ]; then
        failed=$((failed + 1))    # a script died, planned more than it ran, or nothing ran
    fi
    if [ $rc -ne 0 ]; then
        for f in "$testdir"/tmp_check/log/*; do
            [ -f "$f" ] && { echo "---- $f (tail)"; tail -n 60 "$f"; }
        done
    fi
}

# t/009 fills a small file system of its own (a full disk under a view's
# table): a tmpfs, which only root may mount.  Elsewhere t/009 skips.
if [ "${SV_TAP:-}" != none ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$WORK/tinyfs"
    if mount -t tmpfs -o size=4m,mode=0700 tmpfs "$WORK/tinyfs"; then
        chown "$(sv_server_user)" "$WORK/tinyfs"
        export SV_TINY_FS="$WORK/tinyfs"
    else
        echo "could not mount a 4 MB tmpfs for t/009 (a full disk)"
        failed=$((failed + 1))
    fi
fi

# t/020 upgrades a live install of release 0.1, built from its source in
# git history (the scratch copy has no .git).
SV_RELEASE_0_1=faa1c8611b56b7fb625b0adbc0943ef5d2d4602f
if [ "${SV_TAP:-}" != none ] && git -C "$ROOT" cat-file -e "$SV_RELEASE_0_1^{commit}" 2>/dev/null; then
    mkdir -p "$WORK/release-0.1"
    git -C "$ROOT" archive "$SV_RELEASE_0_1" | tar -x -C "$WORK/release-0.1"
    chown -R "$(sv_server_user)" "$WORK/release-0.1"
    export SV_RELEASE_0_1_SRC="$WORK/release-0.1"
fi

if [ "${SV_TAP:-}" != none ]; then
run_tap "TAP (broker, workers, crashes)" "$WORK/tree" "${SV_BROKER:-}" $taps
fi

# The core cases again, against a real Apache Kafka 0.9.0.1 (old protocol:
# no message timestamps, no headers; nothing here needs them).
if [ -z "${SV_TAP:-}" ]; then
    run_tap "TAP core cases against Apache Kafka 0.9.0.1" "$WORK/tree-kafka09" kafka09 \
        t/001_oracle.pl t/004_rebuild.pl
fi

if [ -n "${SANITIZE:-}" ]; then
    for f in "$WORK"/sanitizer/*; do
        [ -f "$f" ] || continue
        echo "---- sanitizer report $f"
        head -n 60 "$f"
        failed=$((failed + 1))
    done
    # A report on stderr (a program that lost the options above), and a
    # failed assertion (that PostgreSQL is built with), are in a server log
    # or a test's output; each distinct one counts once.
    mapfile -t stray < <(grep -rIhoE --exclude-dir=sanitizer \
        '[^ ]+:[0-9]+:[0-9]+: runtime error: .*|==[0-9]+==ERROR: [A-Za-z]+Sanitizer: .*|TRAP: [A-Za-z]+\(.*' \
        "$WORK" | sort -u)
    for r in "${stray[@]}"; do
        f=$(grep -rlIF --exclude-dir=sanitizer -- "$r" "$WORK" | head -n 1)
        echo "---- report in $f"
        grep -F -A 20 -- "$r" "$f" | head -n 24
        failed=$((failed + 1))
    done
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
