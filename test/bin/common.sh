# Shared by `make test` (test/bin/run_tests.sh) and `make demo` (demo/demo.sh).
# Installs what is missing, builds and installs the extension and the broker.

SV_PG_BIN=/usr/lib/postgresql/15/bin
SV_PGXS_DIR=/usr/lib/postgresql/15/lib/pgxs
SV_PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl
             librdkafka-dev kcat
             libipc-run-perl perl procps make gcc curl prometheus-postgres-exporter)

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
