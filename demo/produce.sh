#!/usr/bin/env bash
# Send messages to a topic of the demo's broker, with kcat, as `make demo`
# does: one message per line of standard input, "key<TAB>value" or just the
# value (no key).
#
#   bash demo/produce.sh [-p PARTITION] TOPIC < messages
#
# The broker is the one of the demo that `KEEP=1 make demo` left running:
# DEMO_DIR names its scratch directory (the demo prints it); without it,
# the only running demo's.  Without -p, kcat's partitioner chooses (by key).
# Prints how many messages it sent.
set -euo pipefail

die() { echo "produce.sh: $*" >&2; exit 1; }

partition=()
if [ "${1:-}" = -p ]; then
    [ $# -ge 2 ] || die "usage: bash demo/produce.sh [-p PARTITION] TOPIC < messages"
    partition=(-p "$2")
    shift 2
fi
[ $# -eq 1 ] || die "usage: bash demo/produce.sh [-p PARTITION] TOPIC < messages"
topic=$1

# A demo's directory holds the marker demo.sh writes and a broker that runs.
running() {
    local pid
    [ -f "$1/.pg_streamview-demo" ] && [ -s "$1/broker/bootstrap" ] &&
        read -r pid < "$1/broker/broker.pid" 2>/dev/null && [ -d "/proc/$pid" ]
}

if [ -z "${DEMO_DIR:-}" ]; then
    demos=()
    for d in /tmp/pg_streamview-demo.*; do
        running "$d" && demos+=("$d")
    done
    [ ${#demos[@]} -gt 0 ] || die "no demo is running: start one with KEEP=1 make demo"
    [ ${#demos[@]} -eq 1 ] ||
        die "${#demos[@]} demos are running (${demos[*]}): set DEMO_DIR to the one to use"
    DEMO_DIR=${demos[0]}
fi
running "$DEMO_DIR" || die "no demo with a running broker in $DEMO_DIR"

messages=$(mktemp)
trap 'rm -f "$messages"' EXIT
cat > "$messages"
kcat -P -b "$(cat "$DEMO_DIR/broker/bootstrap")" -t "$topic" "${partition[@]}" -K $'\t' \
    -X enable.idempotence=true < "$messages" ||
    die "kcat could not send to topic \"$topic\""
echo "sent $(grep -c '' "$messages") messages to topic \"$topic\""
