#!/usr/bin/env bash
# Run libFuzzer inside a single-user PostgreSQL backend: one call of the
# fuzz target's SQL function (sv_fuzz_<target>), with this script's
# arguments as libFuzzer's command line.  run.sh calls it to fuzz, and
# sv_fuzz_merge calls it for each child of a merge.
#
#   SV_FUZZ_DIR=DIR SV_FUZZ_TARGET=json backend.sh [libFuzzer flags] [DIR|FILE]...
#   SV_FUZZ_DIR=DIR backend.sh --setup TARGET...    declare the targets' functions
#
# DIR is run.sh's scratch directory: DIR/data, a cluster, DIR/sv_fuzz.so
# and DIR/sv_fuzz_preload.so.  Run as the cluster's owner.  The ASan runtime
# (SV_FUZZ_ASAN_RT) must be loaded first, with the preload shim after it
# (see sv_fuzz_preload.c); PostgreSQL frees by memory context, not by
# free(), so leak detection is off.  Paths must be absolute: the backend
# runs in its data directory.
set -euo pipefail

: "${SV_FUZZ_DIR:?}" "${SV_FUZZ_ASAN_RT:?}"
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

backend() {
    env LD_PRELOAD="$SV_FUZZ_ASAN_RT $SV_FUZZ_DIR/sv_fuzz_preload.so" \
        ASAN_OPTIONS="detect_leaks=0:${ASAN_OPTIONS:-}" \
        UBSAN_OPTIONS="print_stacktrace=1:${UBSAN_OPTIONS:-}" \
        "$PGBIN/postgres" --single -D "$SV_FUZZ_DIR/data" -c log_min_messages=error postgres >/dev/null
}

if [ "${1:-}" = --setup ]; then
    shift
    for t in "$@"; do
        echo "CREATE FUNCTION sv_fuzz_$t(text[]) RETURNS int AS '$SV_FUZZ_DIR/sv_fuzz.so' LANGUAGE C STRICT;"
    done | backend
    exit
fi

: "${SV_FUZZ_TARGET:?}"
args="'${0//\'/\'\'}'"
for a in "$@"; do
    args+=", '${a//\'/\'\'}'"
done
# The function never returns: libFuzzer exits the backend with its status.
echo "SELECT sv_fuzz_${SV_FUZZ_TARGET}(ARRAY[$args]);" | backend
