#!/usr/bin/env bash
# Fuzz the message decoders (`make fuzz`; not part of `make test`).
#
#   test/fuzz/run.sh [SECONDS]        fuzz each target for SECONDS in all (default 600)
#   test/fuzz/run.sh repro FILE...    run the (first) target once on each FILE
#
# Builds the targets (Makefile) and runs libFuzzer in single-user backends
# (backend.sh) of throwaway clusters in a scratch directory: one cluster per
# database encoding in SV_FUZZ_ENCODINGS (default "UTF8 EUC_JP": messages
# are UTF-8, and a database in another encoding converts them), each for an
# equal share of SECONDS.  Each pass starts from the committed corpus
# (corpus/<target>/) and the hand-written seeds (seeds/<target>/), with
# <target>.dict, and merges what it found back into the corpus, minimally
# (-merge=1, whose children are backends too: sv_fuzz_merge.c).  Prints the
# runs, their speed, the coverage and the crashes.  A crash's input is
# copied here as <target>-crash-<sha1>, and the run exits non-zero.
#
# SV_FUZZ_TARGETS (default "json avro protobuf") names the targets; SV_FUZZ_KEEP=1 keeps the
# scratch directory (<target>.<encoding>.log is libFuzzer's whole output).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/../bin/common.sh"

SV_PACKAGES=(postgresql-15 postgresql-server-dev-15 clang-14 libclang-rt-14-dev make
             libavro-dev libcurl4-openssl-dev python3-avro libprotobuf-dev libprotoc-dev)
targets=(${SV_FUZZ_TARGETS:-json avro protobuf})
encodings=(${SV_FUZZ_ENCODINGS:-UTF8 EUC_JP})
max_len=4096

sv_install_deps
make -s -C "$here"
asan_rt="$(clang-14 -print-resource-dir)/lib/linux/libclang_rt.asan-x86_64.so"

W=$(mktemp -d /tmp/sv_fuzz.XXXXXX)
[ "${SV_FUZZ_KEEP:-}" = 1 ] && echo "scratch directory: $W" || trap 'rm -rf "$W"' EXIT
cp "$here"/{sv_fuzz.so,sv_fuzz_preload.so,sv_fuzz_merge,backend.sh} "$W/"
for t in "${targets[@]}"; do
    mkdir -p "$W/seeds/$t"
    cp "$here/$t.dict" "$W/"
    cp -r "$here/seeds/$t/." "$W/seeds/$t/"
done
mkdir "$W/artifacts"
chown -R "$(sv_server_user)" "$W"

# As the server user, in W (libFuzzer's temporary files go there too).
in_scratch() {
    (cd "$W" && sv_as_server_user env TMPDIR="$W" SV_FUZZ_DIR="$W" SV_FUZZ_ASAN_RT="$asan_rt" "$@")
}

# A cluster in W/data, in encoding $1, where the targets' functions exist.
new_cluster() {
    rm -rf "$W/data"
    sv_log "a throwaway $1 cluster in $W/data"
    in_scratch initdb -D "$W/data" -E "$1" --locale=C -A trust --no-sync >"$W/initdb.log"
    in_scratch "$W/backend.sh" --setup "${targets[@]}" 2>"$W/setup.log" || { cat "$W/setup.log"; exit 1; }
}

stat() { grep -a "^stat::$1:" "$2" | awk '{print $2}'; }

if [ "${1:-}" = repro ]; then
    shift
    new_cluster "${encodings[0]}"
    files=()
    for f in "$@"; do
        cp "$f" "$W/artifacts/" && files+=("$W/artifacts/$(basename "$f")")
    done
    chown -R "$(sv_server_user)" "$W/artifacts"
    in_scratch env SV_FUZZ_TARGET="${targets[0]}" "$W/backend.sh" "${files[@]}"
    exit
fi

seconds=${1:-600}
share=$((seconds / ${#encodings[@]}))
status=0
for e in "${encodings[@]}"; do
    new_cluster "$e"
    for t in "${targets[@]}"; do
        log="$W/$t.$e.log"
        rm -rf "$W/corpus" "$W/new" "$W/min" && mkdir -p "$W/corpus" "$W/new" "$W/min"
        [ ! -d "$here/corpus/$t" ] || cp -r "$here/corpus/$t/." "$W/corpus/"
        chown -R "$(sv_server_user)" "$W/corpus" "$W/new" "$W/min"

        sv_log "fuzzing $t in $e for $share s"
        rc=0
        in_scratch env SV_FUZZ_TARGET="$t" "$W/backend.sh" -max_total_time="$share" \
            -max_len=$max_len -timeout=30 -dict="$W/$t.dict" -print_final_stats=1 \
            -artifact_prefix="$W/artifacts/$t-" "$W/new" "$W/corpus" "$W/seeds/$t" \
            2>"$log" || rc=$?

        # The corpus is what the seeds do not already cover.
        sv_log "merging into corpus/$t"
        cp -r "$W/seeds/$t/." "$W/min/"
        in_scratch env SV_FUZZ_TARGET="$t" SV_FUZZ_CHILD="$W/backend.sh" "$W/sv_fuzz_merge" \
            -merge=1 -max_len=$max_len -timeout=30 "$W/min" "$W/corpus" "$W/new" \
            2>"$W/$t.$e.merge.log" || { tail -20 "$W/$t.$e.merge.log"; status=1; }
        rm -rf "$here/corpus/$t.new" && mkdir -p "$here/corpus/$t.new"
        for f in "$W/min"/*; do
            [ -e "$W/seeds/$t/$(basename "$f")" ] || cp "$f" "$here/corpus/$t.new/"
        done
        rm -rf "$here/corpus/$t" && mv "$here/corpus/$t.new" "$here/corpus/$t"

        crashes=$(find "$W/artifacts" -name "$t-*" | wc -l)
        cp "$W/artifacts/$t-"* "$here/" 2>/dev/null || true
        echo "== $t, $e database: $(grep -a '^Done ' "$log" || echo 'did not finish')"
        echo "   executions: $(stat number_of_executed_units "$log")," \
             "per second: $(stat average_exec_per_sec "$log")," \
             "peak RSS: $(stat peak_rss_mb "$log") MB"
        echo "   last status: $(grep -a '^#[0-9]' "$log" | tail -1)"
        echo "   corpus/$t: $(find "$here/corpus/$t" -type f | wc -l) files" \
             "($(cat "$here/corpus/$t"/* 2>/dev/null | wc -c) bytes)," \
             "seeds/$t: $(find "$here/seeds/$t" -type f | wc -l) files"
        echo "   crashes: $crashes"
        if [ "$crashes" != 0 ] || [ "$rc" != 0 ]; then
            grep -a -B2 -A12 '^sv_fuzz: \|ERROR: \(AddressSanitizer\|libFuzzer\)\|runtime error' "$log" | head -60
            ls "$here/$t-"* 2>/dev/null || true
            echo "   libFuzzer exited with $rc; reproduce with: SV_FUZZ_ENCODINGS=$e test/fuzz/run.sh repro FILE"
            status=1
        fi
    done
done
exit $status
