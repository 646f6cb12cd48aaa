# Shared by `make test` (test/bin/run_tests.sh) and `make demo` (demo/demo.sh).
# Installs what is missing, builds and installs the extension and the broker.

SV_PG_BIN=/usr/lib/postgresql/15/bin
SV_PGXS_DIR=/usr/lib/postgresql/15/lib/pgxs
SV_PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl
             librdkafka-dev libssl-dev kcat postgresql-15-cron
             libavro-dev libcurl4-openssl-dev python3-avro
             libprotobuf-dev libprotoc-dev protobuf-compiler python3-protobuf g++
             libipc-run-perl perl procps make gcc curl prometheus-postgres-exporter
             postgresql-15-hll postgresql-15-tdigest)

sv_log() { printf '==> %s\n' "$*" >&2; }

sv_install_deps() {
    local missing=() p
    for p in "${SV_PACKAGES[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
        return 1
    fi
    sv_log "installing ${missing[*]}"
    # Installing postgresql-15 must not create and start a cluster of its own.
    mkdir -p /etc/postgresql-common
    grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf ||
        echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
    apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

sv_build_install() {
    sv_log "building and installing pg_streamview"
    make -s WERROR=1 PG_CONFIG="$SV_PG_BIN/pg_config" all mockbroker >/dev/null &&
        make -s PG_CONFIG="$SV_PG_BIN/pg_config" install >/dev/null
}

# The user that runs servers: PostgreSQL refuses to run as root.
sv_server_user() {
    if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi
}

sv_as_server_user() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- env PATH="$SV_PG_BIN:$PATH" "$@"
    else
        env PATH="$SV_PG_BIN:$PATH" "$@"
    fi
}

# make test SANITIZE=1: a PostgreSQL of its own, built with ASan and UBSan
# (test/bin/pg_asan.sh, once), whose binaries, pg_regress and TAP modules
# the run uses instead of the system's.
sv_use_sanitized_pg() {
    local prefix
    # LeakSanitizer is off: PostgreSQL frees memory by context (and
    # pg_config, which every make calls, would fail on its "leaks").
    export ASAN_OPTIONS=detect_leaks=0
    prefix=$(bash test/bin/pg_asan.sh build) || return 1
    SV_PG_BIN=$prefix/bin
    SV_PGXS_DIR=$(dirname "$(dirname "$(dirname "$("$SV_PG_BIN/pg_config" --pgxs)")")")
}

# Builds and installs the extension against that PostgreSQL, in the current
# directory, which must be a copy of the tree: the objects in the tree are
# shared with plain builds, and the system's PostgreSQL never gets a
# sanitized library.  The compiler and linker flags come from its pg_config.
sv_build_install_sanitized() {
    sv_log "building pg_streamview with ASan and UBSan, installing into $(dirname "$SV_PG_BIN")"
    make -s PG_CONFIG="$SV_PG_BIN/pg_config" clean >/dev/null &&
        make -s WERROR=1 PG_CONFIG="$SV_PG_BIN/pg_config" all mockbroker >/dev/null &&
        make -s PG_CONFIG="$SV_PG_BIN/pg_config" install >/dev/null
}
