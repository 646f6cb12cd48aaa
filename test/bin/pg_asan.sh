#!/usr/bin/env bash
# A PostgreSQL 15 built with AddressSanitizer and UndefinedBehaviorSanitizer,
# for `make test SANITIZE=1` (make test-sanitize).
#
# Debian's own binaries cannot host a sanitized library: preloading libasan
# into them deadlocks at start (libgpg-error's and gnutls's constructors call
# bindtextdomain() before ASan is initialised, which leaves glibc's locale
# lock corrupted).  So this builds PostgreSQL itself, with the sanitizer
# runtimes linked into postgres, psql and the rest, with clang (clang-14,
# which postgresql-server-dev-15 already needs).  Not gcc: gcc's UBSan
# runtime, next to ASan, reads UBSAN_OPTIONS only at its first report, from
# /proc/self/environ, which a backend has overwritten with its process title
# by then; so a backend's UBSan report lost its stack trace and log_path.
# clang's one runtime reads both options at start.
#
# ASan alone sees malloc'd, stack and global memory, but PostgreSQL hands out
# palloc chunks from blocks it mallocs itself.  So PostgreSQL is also built
# with --enable-cassert (assertions; freed chunks are wiped, allocations
# checked) and USE_VALGRIND, with a valgrind/memcheck.h of our own that turns
# Valgrind's client requests into ASan poisoning: what PostgreSQL would mark
# inaccessible for Valgrind (the unused end of a chunk, a pfree'd or reset
# chunk, the old elements of a List that grew, a shared buffer this backend
# no longer pins) is poisoned, so reading or writing it is an ASan report.
#
# The same version as the installed postgresql-15 package, from its Debian
# source package (upstream source; Debian's patches are not applied),
# configured small (no SSL, ICU, readline, NLS or languages: the tests use
# plain sockets and SQL), with the TAP modules, pg_regress and
# pg_isolation_regress.  It is installed into a prefix of its own, never
# into /usr/lib/postgresql, built once and reused until the compiler, flags
# or options change (a stamp file in the prefix; `rebuild` forces it).
# pgTAP (plain SQL in Debian's postgresql-15-pgtap) is copied into its share.
#
#   pg_asan.sh build     build and install unless the stamp is current;
#                        prints the prefix on stdout
#   pg_asan.sh rebuild   build and install anyway
#   pg_asan.sh prefix    prints the prefix
#
# As root it installs what the build needs (apt-get), adds deb-src entries if
# apt knows no source of postgresql-15, and downloads the source with
# `apt-get source --download-only` into a cache ($PREFIX.src).  The version
# is the installed package's if the mirror still has its source, else the
# newest 15.x source it has (a security update's source may be gone from a
# snapshot mirror); the extension is built against and tested with this
# PostgreSQL only, so a minor version apart from Debian's does not matter.
# The build is niced and runs `make -j2`.
set -euo pipefail

PREFIX=${SV_ASAN_PREFIX:-/var/tmp/pg_streamview-pg15-asan}
BUILD=$PREFIX.build
SRC_CACHE=$PREFIX.src
STAMP=$PREFIX/.pg_streamview-stamp
SANITIZE_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS_ASAN="-O1 -g $SANITIZE_FLAGS"
CC_ASAN=clang-14
CONFIGURE_OPTS=(--enable-debug --enable-cassert --enable-tap-tests --without-readline --without-icu
                --with-system-tzdata=/usr/share/zoneinfo)
DEPS=(bison flex zlib1g-dev clang-14 libclang-rt-14-dev make perl libipc-run-perl bzip2
      postgresql-15-pgtap)

# Its programs run with LeakSanitizer off (pg_config itself "leaks").
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'pg_asan.sh: %s\n' "$*" >&2; exit 1; }

pg_version() {
    dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null ||
        die "postgresql-15 is not installed (make test installs it)"
}

install_deps() {
    local missing=() p
    for p in "${DEPS[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    [ "$(id -u)" = 0 ] || die "missing Debian packages: ${missing[*]} (run as root, or install them)"
    log "installing ${missing[*]}"
    apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The source versions of postgresql-15 apt knows, newest first.
source_versions() {
    apt-cache showsrc postgresql-15 2>/dev/null | sed -n 's/^Version: //p' | sort -urV
}

# deb-src entries mirroring Debian's deb entries, if apt knows no source.
add_deb_src() {
    local f=/etc/apt/sources.list.d/pg_streamview-debian-src.sources
    [ -n "$(source_versions)" ] && return 0
    [ "$(id -u)" = 0 ] || die "apt knows no source of postgresql-15 (as root, this adds deb-src entries)"
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        log "adding deb-src entries ($f)"
        sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$f"
    elif [ -f /etc/apt/sources.list ]; then
        f=${f%.sources}.list
        log "adding deb-src entries ($f)"
        sed -n 's/^deb \(.*\)$/deb-src \1/p' /etc/apt/sources.list >"$f"
    fi
    apt-get update -qq
    [ -n "$(source_versions)" ] || die "apt knows no source of postgresql-15"
}

# Sets src_tarball to an upstream tarball of 15.x in the cache: the installed
# version's if it can be had, else the newest apt can download.
fetch_source() {
    local installed v
    installed=$(pg_version)
    mkdir -p "$SRC_CACHE"
    for v in "$installed" $(source_versions | grep -vxF "$installed"); do
        [[ $v == 15.* ]] || continue
        src_tarball=$SRC_CACHE/postgresql-15_${v%%-*}.orig.tar.bz2
        [ -s "$src_tarball" ] && return 0
        [ "$(id -u)" = 0 ] || die "no PostgreSQL source in $SRC_CACHE (as root, this downloads it)"
        log "downloading the source of postgresql-15 $v"
        if (cd "$SRC_CACHE" && apt-get source -qq --download-only "postgresql-15=$v" >/dev/null 2>&1) &&
           [ -s "$src_tarball" ]; then
            return 0
        fi
        log "the source of postgresql-15 $v cannot be downloaded"
    done
    die "no source of postgresql-15 could be downloaded"
}

# Valgrind's client requests as PostgreSQL uses them (utils/memdebug.h), in
# ASan's terms: inaccessible is poisoned, accessible (defined or not) is
# unpoisoned.  A chunk handed out (MEMPOOL_ALLOC, _CHANGE) is unpoisoned for
# its requested size; a freed one is poisoned by the wipe cassert does.
memcheck_shim() {
    cat <<'EOF'
/* Generated by pg_streamview's test/bin/pg_asan.sh: Valgrind client requests as ASan poisoning. */
#ifndef SV_VALGRIND_ASAN_MEMCHECK_H
#define SV_VALGRIND_ASAN_MEMCHECK_H
#include <sanitizer/asan_interface.h>
#define VALGRIND_MAKE_MEM_NOACCESS(addr, size)	ASAN_POISON_MEMORY_REGION((addr), (size))
#define VALGRIND_MAKE_MEM_UNDEFINED(addr, size)	ASAN_UNPOISON_MEMORY_REGION((addr), (size))
#define VALGRIND_MAKE_MEM_DEFINED(addr, size)	ASAN_UNPOISON_MEMORY_REGION((addr), (size))
#define VALGRIND_CHECK_MEM_IS_DEFINED(addr, size)	do {} while (0)
#define VALGRIND_CREATE_MEMPOOL(context, redzones, zeroed)	do {} while (0)
#define VALGRIND_DESTROY_MEMPOOL(context)	do {} while (0)
#define VALGRIND_MEMPOOL_ALLOC(context, addr, size)	ASAN_UNPOISON_MEMORY_REGION((addr), (size))
#define VALGRIND_MEMPOOL_FREE(context, addr)	do {} while (0)
#define VALGRIND_MEMPOOL_CHANGE(context, optr, nptr, size)	ASAN_UNPOISON_MEMORY_REGION((nptr), (size))
#endif
EOF
}

build() {
    local want=$1 upstream
    install_deps
    add_deb_src
    fetch_source
    upstream=${src_tarball##*_}
    upstream=${upstream%.orig.tar.bz2}
    log "building PostgreSQL $upstream with ASan and UBSan into $PREFIX (once; make -j2, niced)"
    local t0=$SECONDS
    rm -rf "$BUILD" "$PREFIX"
    mkdir -p "$BUILD"
    tar -C "$BUILD" -xjf "$src_tarball"
    local src=$BUILD/postgresql-$upstream
    [ -f "$src/configure" ] || die "no source tree in $src"
    # in the prefix: extensions built against it include it too
    local shim=$PREFIX/include/valgrind-asan
    mkdir -p "$shim/valgrind"
    memcheck_shim >"$shim/valgrind/memcheck.h"
    if ! (cd "$src" &&
          ./configure --prefix="$PREFIX" "${CONFIGURE_OPTS[@]}" \
              CC="$CC_ASAN" CFLAGS="$CFLAGS_ASAN" LDFLAGS="$SANITIZE_FLAGS" \
              CPPFLAGS="-DUSE_VALGRIND -I$shim" &&
          nice -n 10 make -j2 &&
          make install) >"$BUILD/build.log" 2>&1; then
        tail -n 40 "$BUILD/build.log" >&2
        die "the build failed (log: $BUILD/build.log)"
    fi
    # pgTAP: Debian's package is SQL only
    cp /usr/share/postgresql/15/extension/pgtap* "$("$PREFIX/bin/pg_config" --sharedir)/extension/"
    chmod -R a+rX "$PREFIX"
    printf '%s\nbuilt from %s\n' "$want" "${src_tarball##*/}" >"$STAMP"
    rm -rf "$BUILD"
    log "PostgreSQL $upstream with sanitizers built in $((SECONDS - t0)) s"
}

case "${1:-}" in
    build|rebuild)
        # one build at a time; a second run waits and then finds the stamp
        mkdir -p "$(dirname "$PREFIX")"
        exec 9>"$PREFIX.lock"
        flock 9
        want="CC=$CC_ASAN; CFLAGS=$CFLAGS_ASAN; configure ${CONFIGURE_OPTS[*]}; memcheck.h $(memcheck_shim | md5sum | cut -c1-8)"
        if [ "$1" = rebuild ] || [ "$(head -n 1 "$STAMP" 2>/dev/null)" != "$want" ]; then
            build "$want"
        fi
        echo "$PREFIX" ;;
    prefix) echo "$PREFIX" ;;
    *) die "usage: pg_asan.sh build|prefix" ;;
esac
