#!/usr/bin/env bash
# Manage the standalone mock Kafka broker (test/mockbroker/sv_mockbroker).
#
#   broker.sh start DIR [--topic NAME:PARTS ...] [--brokers N]
#   broker.sh stop DIR
#   broker.sh addr DIR
#
# State lives in DIR: bootstrap (address), broker.pid, broker.log.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
BIN="$here/../mockbroker/sv_mockbroker"

die() { echo "broker.sh: $*" >&2; exit 1; }

usage() {
    echo "usage: broker.sh start DIR [--topic NAME:PARTS ...] [--brokers N]" >&2
    echo "       broker.sh stop DIR" >&2
    echo "       broker.sh addr DIR" >&2
    exit 2
}

# True if pid $1 exists and is not a zombie (an unreaped zombie can linger if
# the container's init does not reap orphans).
alive() {
    local pid="${1:-}" state=""
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    if [ -r "/proc/$pid/stat" ]; then
        state="$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || true
        [ "$state" != "Z" ] || return 1
    fi
    return 0
}

read_pid() {
    local f="$1/broker.pid" pid=""
    [ -f "$f" ] && read -r pid < "$f" || true
    printf '%s' "$pid"
}

cmd_start() {
    local dir="$1"; shift
    [ -x "$BIN" ] || die "$BIN not built (run: make -C $(dirname "$BIN"))"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"

    local old; old="$(read_pid "$dir")"
    if alive "$old"; then
        die "broker already running in $dir (pid $old)"
    fi
    rm -f "$dir/bootstrap" "$dir/bootstrap.tmp" "$dir/broker.pid"

    "$BIN" --bootstrap-file "$dir/bootstrap" "$@" \
        </dev/null >>"$dir/broker.log" 2>&1 &
    local pid=$!
    echo "$pid" > "$dir/broker.pid"

    local i
    for ((i = 0; i < 100; i++)); do
        if [ -s "$dir/bootstrap" ]; then
            cat "$dir/bootstrap"
            return 0
        fi
        if ! alive "$pid"; then
            rm -f "$dir/broker.pid"
            die "sv_mockbroker exited during startup; see $dir/broker.log:
$(tail -n 20 "$dir/broker.log" 2>/dev/null)"
        fi
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$dir/broker.pid"
    die "sv_mockbroker did not write $dir/bootstrap within 10s; see $dir/broker.log"
}

cmd_stop() {
    local dir="$1"
    local pid; pid="$(read_pid "$dir")"
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        local i
        for ((i = 0; i < 50; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            echo "broker.sh: pid $pid did not exit after SIGTERM, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$dir/broker.pid"
}

cmd_addr() {
    local dir="$1"
    [ -s "$dir/bootstrap" ] || die "no bootstrap file in $dir (broker not started?)"
    cat "$dir/bootstrap"
}

[ $# -ge 2 ] || usage
cmd="$1"; dir="$2"; shift 2
case "$cmd" in
    start) cmd_start "$dir" "$@" ;;
    stop)  [ $# -eq 0 ] || usage; cmd_stop "$dir" ;;
    addr)  [ $# -eq 0 ] || usage; cmd_addr "$dir" ;;
    *)     usage ;;
esac
