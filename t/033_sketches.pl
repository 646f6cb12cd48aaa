# The approximate aggregates end to end, against the broker: a stream view
# keeps an hll and a t-digest state per window and key, merged batch by
# batch (with late events correcting published windows), through an
# immediate stop in the middle of the stream, and in a rebuild of the same
# query.  The oracle is plain SQL over the events this test produced, in a
# table of their own: the exact count and distinct count, the exact
# percentiles, and the hll state computed in one pass.
#  - hll: a HyperLogLog state does not depend on the order in which values
#    are added or states merged, so the view's state is the one-pass state,
#    byte for byte, after the restart and in the rebuild, and its
#    cardinality is within the sketch's error of the exact distinct count.
#  - tdigest: it holds every value (count) and its percentiles are within
#    2% of rank of the exact ones; across the rebuild, where batch
#    boundaries change its last digits, validate(expect_identical) compares
#    it by percentiles within tolerance, and still catches a real change.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use StreamViewTest;

my $P       = 2;
my $N       = 4000;
my $BASE_MS = 1_714_564_800_000;    # 2024-05-01T12:00:00Z

my $broker = broker_start('b026', { visits => $P });
my $node   = new_node('n026', batch_size => 50);
sub sql { return $node->safe_psql('postgres', $_[0]) }

# The extensions, in a schema of their own
sql(q{
	CREATE SCHEMA sk;
	CREATE EXTENSION hll SCHEMA sk;
	CREATE EXTENSION tdigest SCHEMA sk;
});
sql(qq{
	SELECT streamview.create_source('visits', '$broker->{addr}', 'visits',
	         '{"uid":"text","page":"text","latency":"double precision","ts":"timestamptz"}', 'ts');
	SELECT streamview.create_view('vv', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, page, count(*) AS n,
	         sk.hll_add_agg(sk.hll_hash_text(uid)) AS users,
	         sk.tdigest(latency, 100) AS lat
	    FROM visits GROUP BY 1, 2 \$\$, allowed_lateness => '1 minute');
	-- thousands of values per t-digest: it compacts, and batch boundaries show
	SELECT streamview.create_view('vh', \$\$
	  SELECT streamview.tumble(ts, '1 hour') AS window_start, page, count(*) AS n,
	         sk.hll_add_agg(sk.hll_hash_text(uid)) AS users,
	         sk.tdigest(latency, 100) AS lat
	    FROM visits GROUP BY 1, 2 \$\$, allowed_lateness => '1 minute');
	CREATE TABLE oracle_events (ts timestamptz, page text, uid text, latency float8);
});

# A deterministic stream: event i at 150 ms per i, one in ten up to 30 s
# late (inside the allowed lateness: every event is applied); users skewed
# over a pool of 1500; latencies log-normal-ish.
my $seed = 26;
sub rnd { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed / 2147483648 }
my @events;
for my $i (1 .. $N)
{
	my $ms = $BASE_MS + $i * 150;
	$ms -= int(rnd() * 30_000) if rnd() < 0.1;
	my $uid = 'u' . int(rnd()**2 * 1500);
	my $lat = sprintf('%.3f', 5 * exp(2 * (rnd() + rnd() + rnd() - 1.5)));
	push @events, [ $i % $P, $ms, $i % 3 ? 'a' : 'b', $uid, $lat ];
}
# and last, one event per partition an hour later: every window before it
# is final, the hourly ones too (validate compares final windows)
push @events, map { [ $_, $BASE_MS + 62 * 60_000, 'a', 'u0', '1.000' ] } 0 .. $P - 1;

# produce events [from, to) (0-based); record() then puts the events
# produced so far in the oracle's table (PostgreSQL may be down meanwhile)
my $sent = 0;
my @unrecorded;
sub send_events
{
	my ($from, $to) = @_;
	my @e = @events[ $from .. $to - 1 ];
	produce($broker, 'visits',
		[ map { [ $_->[0], undef, sprintf('{"uid":"%s","page":"%s","latency":%s,"ts":%d}', @$_[ 3, 2, 4, 1 ]) ] } @e ]);
	push @unrecorded, @e;
	$sent += @e;
	return;
}
sub record
{
	sql('INSERT INTO oracle_events VALUES '
		  . join(', ', map { sprintf("(to_timestamp(%d / 1000.0), '%s', '%s', %s)", @$_[ 1, 2, 3, 4 ]) } @unrecorded));
	@unrecorded = ();
	return;
}

# The oracle, per window and page: exact count and distinct count, the hll
# state in one pass, and the exact values at each percentile +-2% of rank.
for my $unit (qw(minute hour))
{
	sql(qq{
		CREATE VIEW oracle_$unit AS
		SELECT date_trunc('$unit', ts) AS window_start, page, count(*) AS n,
		       count(DISTINCT uid) AS distinct_users,
		       sk.hll_add_agg(sk.hll_hash_text(uid)) AS users,
		       percentile_disc(ARRAY[0, 0.08, 0.48, 0.88, 0.97]) WITHIN GROUP (ORDER BY latency) AS lo,
		       percentile_disc(ARRAY[0.03, 0.12, 0.52, 0.92, 1]) WITHIN GROUP (ORDER BY latency) AS hi
		  FROM oracle_events GROUP BY 1, 2});
}
my @Q = (0.01, 0.1, 0.5, 0.9, 0.99);

# check($label, $table, $oracle): the rows of a version's table (or a view)
# against the oracle; "bad" counts are 0 when all is well
sub check
{
	my ($label, $rel, $oracle) = @_;
	my $q = join(',', @Q);
	my ($rows, $missing, $counts, $hll_bytes, $hll_err, $max_err, $td_count, $td_pct) = split /\|/, sql(qq{
		SET search_path = public, sk;
		WITH j AS (SELECT o.*, v.n AS v_n, v.users AS v_users, v.lat AS v_lat
		             FROM $oracle o LEFT JOIN $rel v USING (window_start, page)),
		     p AS (SELECT j.*, (SELECT tdigest_percentile(d, '{$q}'::float8[]) FROM (VALUES (j.v_lat)) AS x(d)) AS est
		             FROM j)
		SELECT count(*),
		       count(*) FILTER (WHERE v_n IS NULL),
		       count(*) FILTER (WHERE v_n IS DISTINCT FROM n),
		       count(*) FILTER (WHERE v_users IS NULL OR v_users::text <> users::text),
		       count(*) FILTER (WHERE abs(hll_cardinality(v_users) - distinct_users) > 0.07 * distinct_users + 1),
		       round(max(abs(hll_cardinality(v_users) - distinct_users) / distinct_users)::numeric, 4),
		       count(*) FILTER (WHERE tdigest_count(v_lat) IS DISTINCT FROM n),
		       count(*) FILTER (WHERE EXISTS (SELECT FROM unnest(est, lo, hi) AS e(est, lo, hi)
		                                        WHERE e.est IS NULL OR e.est < e.lo - 1e-9 OR e.est > e.hi + 1e-9))
		  FROM p});
	cmp_ok($rows, '>=', 2, "$label: the oracle has $rows windows and pages");
	is($missing, 0, "$label: every window and page of the oracle is in $rel");
	is($counts, 0, "$label: count(*) is exact in every row");
	is($hll_bytes, 0, "$label: every hll state is the one-pass state, byte for byte");
	is($hll_err, 0, "$label: hll_cardinality within 7% of the exact distinct count (largest error $max_err)");
	is($td_count, 0, "$label: every t-digest holds all the window's values");
	is($td_pct, 0, "$label: t-digest percentiles @Q within 2% of rank of the exact ones");
	is(sql("SELECT count(*) FROM $rel v WHERE NOT EXISTS "
		  . "(SELECT FROM $oracle o WHERE (o.window_start, o.page) = (v.window_start, v.page))"),
		0, "$label: no row that the oracle does not have");
	return;
}

# 1. the first half, with late events correcting published windows
send_events(0, $N / 2);
record();
ok(wait_consumed($node, $_, $sent), "$_ consumed the first $sent events") for qw(vv vh);
check('first half', 'vv', 'oracle_minute');

# 2. a restart in the middle of the stream: PostgreSQL stopped in immediate
# mode right after a quarter more was produced (whatever the worker had not
# committed is read again), the last quarter produced while it is down
send_events($N / 2, $N * 3 / 4);
$node->stop('immediate');
send_events($N * 3 / 4, scalar @events);
$node->start;
record();
for my $v (qw(vv vh))
{
	ok(wait_consumed($node, $v, $sent), "$v: after the restart all $sent events are consumed");
	is(sql("SELECT applied || ' ' || too_late || ' ' || dead_lettered FROM streamview.status WHERE view_name = '$v'"),
		"$sent 0 0", "$v: every event applied once, none too late");
}
check('after an immediate stop', 'vv', 'oracle_minute');
check('after an immediate stop, by the hour', 'vh', 'oracle_hour');

# 3. rebuilds of the same queries, from the start of the log
for my $v (qw(vv vh))
{
	is(sql("SELECT streamview.rebuild('$v')"), '2', "$v: rebuild of the same query is version 2");
	is(sql("SELECT streamview.wait_for('$v', 2, '3 minutes')"), 'caught_up', "$v: version 2 caught up");
	check("$v rebuilt", "${v}_v2", $v eq 'vv' ? 'oracle_minute' : 'oracle_hour');
	is(sql(qq{SELECT count(*) FROM ${v}_v1 a FULL JOIN ${v}_v2 b USING (window_start, page)
	          WHERE a.users::text IS DISTINCT FROM b.users::text}),
		0, "$v: the hll states of both versions are identical, byte for byte");
	note "$v: t-digest states whose bytes differ from the live version's (batch boundaries): "
	  . sql(qq{SELECT count(*) FROM ${v}_v1 a JOIN ${v}_v2 b USING (window_start, page)
	           WHERE a.lat::text <> b.lat::text});
	my $checks = sql(qq{SELECT string_agg("check" || '=' || passed, ' ' ORDER BY "check")
	                      FROM streamview.validate('$v', 2, expect_identical => true)});
	is($checks, 'caught_up=true differences=true ledger=true', "$v: validate(expect_identical) passes");
	like(sql(qq{SELECT detail FROM streamview.validations WHERE view_name = '$v' AND "check" = 'differences'
	            ORDER BY run DESC LIMIT 1}),
		qr/0 differ; .*tdigest columns lat compared by count and percentiles/,
		"$v: validate says how it compared the t-digests");
}
note 'vh: t-digest states whose bytes differ between the versions: '
  . sql(q{SELECT count(*) FROM vh_v1 a JOIN vh_v2 b USING (window_start, page) WHERE a.lat::text <> b.lat::text});

# 4. what validate calls the same t-digest, and what not.  With thousands
# of values a digest compacts as it goes, so the same values merged from
# two digests (of the first and the second five minutes) give other bytes:
# within the tolerance.
my $first = q{(window_start, page) = (SELECT window_start, page FROM vh_v2 ORDER BY n DESC LIMIT 1)};
sub differences
{
	return sql(q{SELECT passed || ' ' || detail FROM streamview.validate('vh', 2, expect_identical => true)
	              WHERE "check" = 'differences'});
}
sql(qq{UPDATE vh_v2 v SET lat = (SELECT sk.tdigest_union(sk.tdigest(e.latency, 100) FILTER (WHERE e.ts < '2024-05-01 12:05:00+00'),
                                                     sk.tdigest(e.latency, 100) FILTER (WHERE e.ts >= '2024-05-01 12:05:00+00'))
                                    FROM oracle_events e
                                   WHERE e.page = v.page AND date_trunc('hour', e.ts) = v.window_start)
        WHERE $first});
is(sql(qq{SELECT count(*) FROM vh_v1 a JOIN vh_v2 b USING (window_start, page) WHERE a.lat::text <> b.lat::text AND $first}),
	1, 'a t-digest of the same values merged from two halves has other bytes');
like(differences(), qr/^true .* 0 differ/, 'and is the same to validate');
# values half as large again: percentiles far off
sql(qq{UPDATE vh_v2 v SET lat = (SELECT sk.tdigest(e.latency * 1.5, 100) FROM oracle_events e
                                  WHERE e.page = v.page AND date_trunc('hour', e.ts) = v.window_start)
        WHERE $first});
like(differences(), qr/^false .* 1 differ/, 'a t-digest with percentiles beyond the tolerance is a difference');
# one value fewer: counts differ
sql(qq{UPDATE vh_v2 v SET lat = (SELECT sk.tdigest(e.latency, 100) FROM oracle_events e
                                  WHERE e.page = v.page AND date_trunc('hour', e.ts) = v.window_start
                                    AND e.latency <> (SELECT max(f.latency) FROM oracle_events f WHERE f.page = v.page))
        WHERE $first});
like(differences(), qr/^false .* 1 differ/, 'a t-digest with one value fewer is a difference');
# the t-digests back as they were; one hll with one more user
sql(qq{UPDATE vh_v2 b SET lat = a.lat FROM vh_v1 a WHERE (a.window_start, a.page) = (b.window_start, b.page);
       UPDATE vh_v2 SET users = sk.hll_add(users, sk.hll_hash_text('someone else')) WHERE $first});
like(differences(), qr/^false .* 1 differ/, 'an hll with one more value is a difference');

broker_stop($broker);
$node->stop;
done_testing();
