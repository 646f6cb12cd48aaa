#!/usr/bin/env bash
# `make installcheck`, before the SQL suite runs: can it run on the server
# that PGHOST, PGPORT and PGUSER name, and leave it as it found it?
#
#   installcheck_prereqs.sh BINDIR
#
# The suite runs in the database that the server's streamview.database
# names (the only one where the extension can be created), which must
# exist; pg_regress uses it as it is (--use-existing) and never drops it.
# The tests create and drop sources, stream views, roles and a database of
# their own, so this refuses a server where the library is not preloaded,
# a role that is not a superuser, a served database that holds sources or
# an extension of another version, and a server that already has a role or
# database of the names the tests create (a user's own, or left behind by a
# run that was interrupted).  Each refusal says what to do.
set -uo pipefail
cd "$(dirname "$0")/../.."

BINDIR=${1:?usage: installcheck_prereqs.sh BINDIR}
WHERE="the server at ${PGHOST:-the default socket}, port ${PGPORT:-5432}, as role ${PGUSER:-$(id -un)}"

fail() {
    local line
    printf 'installcheck: %s\n' "$1" >&2
    shift
    for line in "$@"; do printf '  %s\n' "$line" >&2; done
    exit 1
}

# One query (on stdin, with psql variables) in database $1; its rows, unaligned.
query() {
    local db=$1
    shift
    "$BINDIR/psql" -X -A -t -q -v ON_ERROR_STOP=1 -d "$db" "$@"
}

out=$(query "${PGDATABASE:-postgres}" <<'SQL' 2>&1
SELECT current_setting('streamview.database', true),
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
       (SELECT default_version FROM pg_available_extensions WHERE name = 'pg_streamview')
SQL
) || fail "cannot connect to $WHERE:" "$out" \
          "Set PGHOST, PGPORT and PGUSER (and PGDATABASE if it has no database postgres)."
IFS='|' read -r served super available <<<"$out"

[ -n "$available" ] ||
    fail "pg_streamview is not installed for $WHERE." "Run make install (as root) first."
[ -n "$served" ] ||
    fail "pg_streamview is not in shared_preload_libraries of $WHERE." \
         "Add shared_preload_libraries = 'pg_streamview' to its postgresql.conf and restart it."
[ "$super" = t ] ||
    fail "${PGUSER:-$(id -un)} is not a superuser: the tests create the extension and roles." \
         "Set PGUSER to a superuser."
exists=$(query "${PGDATABASE:-postgres}" -v db="$served" <<'SQL'
SELECT count(*) FROM pg_database WHERE datname = :'db'
SQL
)
[ "$exists" = 1 ] ||
    fail "database \"$served\", which streamview.database names, does not exist on $WHERE." \
         "Create it (createdb \"$served\"): the suite runs there, the only database where the extension can be created."

installed=$(query "$served" <<'SQL'
SELECT extversion FROM pg_extension WHERE extname = 'pg_streamview'
SQL
) || fail "cannot connect to database \"$served\" on $WHERE."
if [ -n "$installed" ]; then
    [ "$installed" = "$available" ] ||
        fail "database \"$served\" has pg_streamview $installed, and $available is installed." \
             "Run ALTER EXTENSION pg_streamview UPDATE there first."
    held=$(query "$served" <<'SQL'
SELECT string_agg(format('source "%s"', name), ', ' ORDER BY name) FROM streamview.sources
SQL
)
    [ -z "$held" ] ||
        fail "database \"$served\" holds $held: installcheck runs there, and" \
             "its tests create and drop sources and delete dead letters. Run it on a server" \
             "whose streamview.database is a database for tests (see docs/development.md)."
fi

# The approximate aggregates' test (test/sql/sketches.sql) creates the hll
# and tdigest extensions in a schema "sketches" of the served database, and
# drops them: they must be installed, and not already there.
missing=$(query "$served" <<'SQL'
SELECT string_agg(e, ' ') FROM unnest(ARRAY['hll', 'tdigest']) AS e
 WHERE NOT EXISTS (SELECT FROM pg_available_extensions a WHERE a.name = e)
SQL
) || fail "cannot list the extensions available on $WHERE."
[ -z "$missing" ] ||
    fail "the extensions $missing are not installed for $WHERE: the tests of the approximate aggregates use them." \
         "Install them (Debian: postgresql-15-hll, postgresql-15-tdigest)."
present=$(query "$served" <<'SQL'
SELECT string_agg(what, ', ') FROM (
    SELECT format('extension %s', extname) AS what FROM pg_extension WHERE extname IN ('hll', 'tdigest')
    UNION ALL SELECT 'schema sketches' FROM pg_namespace WHERE nspname = 'sketches') o
SQL
) || fail "cannot list the extensions of database \"$served\" on $WHERE."
[ -z "$present" ] ||
    fail "database \"$served\" has $present, which the tests create and drop." \
         "Run installcheck on a server whose streamview.database is a database for tests."

# The roles and databases the tests create, as their files spell them.
mapfile -t names < <(grep -ohiE 'CREATE (ROLE|DATABASE) +("[^"]+"|[A-Za-z_][A-Za-z0-9_]*)' \
                         test/sql/*.sql test/specs/*.spec |
                     sed -E 's/^CREATE (ROLE|DATABASE) +//I; s/^"(.*)"$/\1/' | sort -u)
taken=$(query "${PGDATABASE:-postgres}" -v names="$(printf '%s\n' "${names[@]}")" <<'SQL' 2>&1
SELECT string_agg(format('%s "%s"', kind, name), ', ' ORDER BY name)
  FROM (SELECT 'role' AS kind, rolname::text AS name FROM pg_roles
        UNION ALL SELECT 'database', datname::text FROM pg_database) o
 WHERE name = ANY (string_to_array(:'names', E'\n'))
SQL
) || fail "cannot list the roles of $WHERE:" "$taken"
[ -z "$taken" ] ||
    fail "$WHERE has $taken, which the tests create and drop." \
         "Drop them if an interrupted run left them behind (DROP OWNED BY, then DROP ROLE, in" \
         "each database), or run installcheck on another server."

echo "installcheck: the SQL suite runs in database \"$served\" (streamview.database) of $WHERE"
