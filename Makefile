# pg_streamview — PGXS build.
#
# `make test` and `make demo` are the two entry points of README.md: each one
# installs what is missing (as root, through apt), builds, installs, and runs.
# They work even before pg_config exists, which is why PGXS is included only
# when it can be found.

EXTENSION   = pg_streamview
MODULE_big  = pg_streamview
# protobuf_glue.cpp: libprotobuf (C++) behind a C interface (format_protobuf.c)
OBJS        = $(patsubst %.c,%.o,$(wildcard src/*.c)) src/protobuf_glue.o
EXTVERSION  = 0.2
# The install script is built from parts, one per feature (sql/src/), in
# this order; released scripts and update scripts are committed as they are.
SQL_PARTS   = sql/src/header.sql sql/src/00_install.sql sql/src/01_catalog.sql \
              sql/src/02_windows.sql sql/src/03_internal.sql sql/src/04_lifecycle.sql \
              sql/src/05_sources.sql sql/src/06_views.sql sql/src/07_rebuild.sql \
              sql/src/08_validate.sql sql/src/09_swap.sql sql/src/09b_snapshots.sql \
              sql/src/10_monitoring.sql sql/src/13_archive.sql \
              sql/src/11_grants.sql sql/src/12_comments.sql
DATA_built  = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA       := $(filter-out $(DATA_built),$(wildcard sql/pg_streamview--*.sql))
DOCS       := $(wildcard docs/*.md)
PG_CONFIG  ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)

PG_CPPFLAGS = -Iinclude -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
              -Wno-sign-compare -fvisibility=hidden '-DPGDLLEXPORT=__attribute__((visibility("default")))'
ifdef WERROR
PG_CPPFLAGS += -Werror
endif
SHLIB_LINK  = -lrdkafka -lcrypto -lavro -lcurl -lprotobuf -lstdc++

# `make installcheck` runs the SQL suite (pg_regress, then the isolation
# specs) against the installed, running server that PGHOST, PGPORT and
# PGUSER name, as PGXS does, but in the database its streamview.database
# names (set below), which must exist: the extension can be created nowhere
# else, and pg_regress neither drops nor creates it (--use-existing).
# test/bin/installcheck_prereqs.sh checks first that the suite can run
# there and leave the server as it found it.  `make test` runs the same
# files on throwaway servers, and the Perl TAP suite (t/) besides.
# All but health: its rules are checked on versions no worker serves, with
# catalog rows set by hand, and on a user's server the workers run (make
# test runs it on a server where they do not; t/016 with workers).
REGRESS        = $(filter-out health,$(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql))))
REGRESS_OPTS   = --inputdir=test --use-existing
# All but alter_source_lock: its steps interleave with no worker holding the
# source's row; on a user's server the source's worker runs (make test runs it).
ISOLATION      = $(filter-out alter_source_lock,$(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test --use-existing
REGRESS_PREP   = installcheck-prereqs

PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(PGXS),)
include $(PGXS)

# The database the server serves, asked when installcheck runs (after the
# check above), unless given: make installcheck CONTRIB_TESTDB=...
CONTRIB_TESTDB   = $(shell '$(bindir)/psql' -XAtq -d "$${PGDATABASE:-postgres}" -c 'SHOW streamview.database')
ISOLATION_TESTDB = $(CONTRIB_TESTDB)
# What pg_regress sets on the databases it creates, for the sessions of one
# it does not (output in English, hex bytea, as in the expected files).
installcheck: export PGOPTIONS += -c lc_messages=C -c lc_monetary=C -c lc_numeric=C -c lc_time=C \
                                  -c bytea_output=hex -c timezone_abbreviations=Default
endif

.PHONY: installcheck-prereqs
installcheck-prereqs:
	@bash test/bin/installcheck_prereqs.sh '$(bindir)'

$(DATA_built): $(SQL_PARTS)
	cat $^ > $@

# Every module includes the one private header (PGXS tracks no header changes).
$(OBJS): include/pg_streamview.h
src/protobuf_glue.o src/format_protobuf.o: include/protobuf_glue.h

MOCKBROKER = test/mockbroker/sv_mockbroker

$(MOCKBROKER): test/mockbroker/sv_mockbroker.c
	$(MAKE) -C test/mockbroker

.PHONY: test test-sanitize test-kafka09 demo mockbroker bench soak
mockbroker: $(MOCKBROKER)

# Everything: dependencies, build, install, pg_regress, TAP; prints "N passed, M failed".
test:
	bash test/bin/run_tests.sh

# The same under AddressSanitizer and UndefinedBehaviorSanitizer (also
# `make test SANITIZE=1`), with a PostgreSQL 15 built for it once into
# /var/tmp (test/bin/pg_asan.sh); each sanitizer report counts as a failure.
test-sanitize:
	SANITIZE=1 bash test/bin/run_tests.sh

# The integration suite's core cases (the oracle, rebuilds) against a real
# Kafka 0.9.0.1 instead of the mock broker.
test-kafka09:
	SV_BROKER=kafka09 SV_REGRESS=none SV_ISOLATION=none SV_PGTAP=none \
	  SV_TAP="t/001_oracle.pl t/004_rebuild.pl" bash test/bin/run_tests.sh

# Not tests: the benchmark suite (docs/benchmarks.md; `make bench BENCH_QUICK=1`
# for a few minutes' run), and a 10-minute soak with crashes.
bench:
	bash bench/run.sh

# The hand-written C consumer the benchmark sets beside pg_streamview.
bench/sv_bench_consumer: bench/sv_bench_consumer.c
	$(CC) -O2 -Wall -Wextra -I'$(shell $(PG_CONFIG) --includedir)' -o $@ $< \
	  -L'$(shell $(PG_CONFIG) --libdir)' -lpq -lrdkafka

soak:
	bash bench/soak.sh

# Not a test either: fuzz the message decoders, 10 minutes by default
# (`make fuzz FUZZ_SECONDS=60`); see "Fuzzing" in docs/development.md.
.PHONY: fuzz
fuzz:
	bash test/fuzz/run.sh $(FUZZ_SECONDS)

# Build, install, start a throwaway PostgreSQL and broker, stream events, show views.
demo:
	bash demo/demo.sh
