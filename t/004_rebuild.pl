# Versioned rebuilds end to end, against the broker:
#  - determinism: a rebuild of the unchanged query from the start of the log
#    gives tables identical to the live ones (EXCEPT both ways), for tumbling
#    and hopping windows, over a messy stream (late, too-late, duplicate and
#    bad messages), with PostgreSQL restarted in the middle of the replay and
#    events arriving while it replays;
#  - validate (expect_identical), swap with a reader running throughout (old
#    rows or new rows, never an error or a mix), a new column list, grants
#    carried over, the old version kept current, rollback, drop_version;
#  - a replay that fails at run time ends 'failed' and leaves the live
#    version untouched.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use JSON::PP;
use IPC::Run;
use StreamViewTest;

my $t_start = time;
my $P       = 3;
my $MOOO    = 5000;

my $broker = broker_start('b004', { orders => $P });
my $node   = new_node('n004', batch_size => 300);

my %columns = gen_columns();
my @views = (
	test_view(
		source      => 'orders',
		name        => 'rev',
		lateness_ms => 20_000,
		window      => [ 'tumble', 60_000 ],
		keys        => [qw(user_id)],
		aggs => [ [ n => 'count_star' ], [ revenue => 'sum', 'amount_cents' ], [ avg_cents => 'avg', 'amount_cents' ] ],
	),
	test_view(
		source      => 'orders',
		name        => 'hops',
		lateness_ms => 10_000,
		window      => [ 'hop', 120_000, 60_000 ],
		keys        => [qw(region)],
		aggs        => [ [ n => 'count_star' ], [ qty => 'sum', 'qty' ], [ any_flag => 'bool_or', 'flag' ] ],
	),
);
my $oracle = oracle_new(
	columns                 => \%columns,
	event_time              => 'ts',
	event_id                => 'event_id',
	max_out_of_orderness_ms => $MOOO,
	views                   => \@views);

# Chunks continue one stream (same generator state).
my $chunks = stream_chunker(broker => $broker, topic => 'orders', oracle => $oracle,
	partitions => $P, seed => 4004, base_ms => 1_720_000_000_000, mooo_ms => $MOOO, views => \@views);
my $total = 0;
sub next_chunk
{
	my $n = $chunks->{next}->(@_);
	$total = $chunks->{total}->();
	return $n;
}

sub sql { return $node->safe_psql('postgres', $_[0]) }

# Both versions of a view have consumed every message produced so far.
sub wait_versions_consumed
{
	my ($view, $n) = @_;
	return wait_for($node,
		"SELECT count(*) = 2 FROM streamview.status WHERE view_name = '$view' "
		  . "AND state IN ('live', 'caught_up') AND consumed >= $n");
}

# Rows in one table and not the other, both ways.
sub table_difference
{
	my ($a, $b) = @_;
	return sql("SELECT (SELECT count(*) FROM (TABLE $a EXCEPT ALL TABLE $b) x) + "
		  . "(SELECT count(*) FROM (TABLE $b EXCEPT ALL TABLE $a) y)");
}

create_gen_source($node, $broker, 'orders', 'orders');
create_views($node, \@views);

# 1. history
next_chunk(1500);
ok(wait_consumed($node, $_->{name}, $total), "history: $_->{name} consumed $total") for @views;

# 2. rebuilds of the unchanged queries, throttled, with a restart in the middle
#    and new events arriving meanwhile
for my $v (@views)
{
	is(sql("SELECT streamview.rebuild('$v->{name}', max_rate => 500)"), '2',
		"$v->{name}: rebuild returns version 2");
}
ok(wait_for($node, "SELECT bool_and(done > 300 AND state = 'replaying') FROM streamview.rebuilds"),
	'both replays are under way');
my $replay_workers = sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_streamview replay'");
is($replay_workers, '2', 'one replay worker per rebuild, apart from the source worker');
my ($rate) = split /\|/, sql("SELECT max(rate) FROM streamview.rebuilds");
ok($rate > 0 && $rate <= 500 * 1.5, "replays keep to max_rate (rate $rate/s for max_rate 500)");
my $live_lag = sql("SELECT max(consumed) FROM streamview.status WHERE is_live");
is($live_lag, $total, 'the live versions stay current while the replays run');

$node->restart;
ok(1, 'PostgreSQL restarted during the replays');
next_chunk(300);
for my $v (@views)
{
	my ($stdout, $stderr);
	$node->psql('postgres', "SELECT streamview.wait_for('$v->{name}', 2, '3 minutes')",
		stdout => \$stdout, stderr => \$stderr);
	is($stdout, 'caught_up', "$v->{name}: wait_for returns caught_up after the restart");
	like($stderr // '', qr/NOTICE:.*version 2: \d+ of \d+ events/, "$v->{name}: wait_for reports progress")
	  if $v->{name} eq 'rev';
}
next_chunk(200);
for my $v (@views)
{
	ok(wait_versions_consumed($v->{name}, $total), "$v->{name}: both versions consumed $total");
	is(table_difference("$v->{name}_v1", "$v->{name}_v2"), '0',
		"$v->{name}: the rebuilt table equals the live one (EXCEPT ALL both ways)");
	my $checks = sql("SELECT string_agg(\"check\" || '=' || passed, ' ' ORDER BY \"check\") "
		  . "FROM streamview.validate('$v->{name}', 2, expect_identical => true)");
	is($checks, 'caught_up=true differences=true ledger=true', "$v->{name}: validate passes, identical");
	check_view_against_oracle($node, $oracle, $v->{name}, label => "$v->{name} (live v1)");
}

# 2b. a rebuild from a point in time: windows before the cut carried over,
#     each partition replayed from its last offset mark before the cut
my $since = sql("SELECT watermark - interval '4 minutes' FROM streamview.versions "
	  . "WHERE view_name = 'hops' AND state = 'live'");
is(sql("SELECT streamview.rebuild('hops', start_from => '$since')"), '3', "hops: rebuild from $since is version 3");
is(sql("SELECT streamview.wait_for('hops', 3, '3 minutes')"), 'caught_up', 'hops v3 caught up');
ok(wait_for($node,
		"SELECT (SELECT consumed FROM streamview.status WHERE view_name = 'hops' AND version = 3) > 0 "
		  . "AND (SELECT next_offset FROM streamview.partitions WHERE view_name = 'hops' AND version = 3 AND partition = 0) "
		  . "= (SELECT next_offset FROM streamview.partitions WHERE view_name = 'hops' AND version = 1 AND partition = 0)"),
	'hops v3 is at the live offsets');
my ($v3_consumed, $v1_consumed) = split /\|/, sql(
	"SELECT (SELECT consumed FROM streamview.status WHERE view_name = 'hops' AND version = 3), "
	  . "(SELECT consumed FROM streamview.status WHERE view_name = 'hops' AND version = 1)");
ok($v3_consumed < $v1_consumed, "the point-in-time replay read less of the log ($v3_consumed of $v1_consumed)");
ok(sql("SELECT bool_or((start_offsets->>'0')::bigint > 0) FROM streamview.versions "
		  . "WHERE view_name = 'hops' AND version = 3") eq 't', 'it started past the beginning of the log');
is(table_difference('hops_v1', 'hops_v3'), '0',
	'hops: rebuilt from a point in time, the table equals the live one (EXCEPT ALL both ways)');
my $err;
$node->psql('postgres', "SELECT streamview.rebuild('rev', start_from => now()::text)", stderr => \$err);
like($err, qr/windows there are not final yet/, 'a point in time whose windows are not final is refused');
sql("SELECT streamview.drop_version('hops', 3)");

# 3. a new query with another column list; swapped in while a reader reads
sql("SELECT streamview.add_check('rev', 'positive', 'n > 0')");
sql("CREATE ROLE analyst; GRANT SELECT ON rev TO analyst");
is(sql(q{SELECT streamview.rebuild('rev', query => $q$
	SELECT streamview.tumble(ts, '1 minute') AS window_start, user_id, count(*) AS n,
	       sum(amount_cents) AS revenue, max(amount_cents) AS biggest
	FROM orders WHERE amount_cents >= 5000 GROUP BY 1, 2 $q$)}), '3', 'rev: rebuild with a new query is version 3');
is(sql("SELECT streamview.wait_for('rev', 3, '3 minutes')"), 'caught_up', 'rev v3 caught up');
ok(wait_for($node,
		"SELECT (SELECT consumed FROM streamview.status WHERE view_name = 'rev' AND version = 3) = $total"),
	'rev v3 consumed everything');
my $old = sql("SELECT count(*) || ':' || sum(n) FROM rev");
my $new = sql("SELECT count(*) || ':' || sum(n) FROM rev_v3");
isnt($old, $new, "the new query gives other rows ($old vs $new)");

my %val = map { split /=/ } split /;/, sql(
	"SELECT string_agg(\"check\" || '=' || passed, ';') FROM streamview.validate('rev', 3)");
is_deeply(\%val, { caught_up => 'true', ledger => 'true', differences => 'true', 'check positive' => 'true' },
	'validate reports the differences without failing, and the invariant holds');
like(sql("SELECT detail FROM streamview.validations WHERE version = 3 AND \"check\" = 'differences' "
		  . "ORDER BY validation_id DESC LIMIT 1"),
	qr/rows only in live version 1, \d+ only in version 3, \d+ differ; totals n: \d+ vs \d+.*; e\.g\. differs: /,
	'the differences are counted, with totals and samples');
my ($ok, $out) = (0);
$node->psql('postgres', "SELECT * FROM streamview.validate('rev', 3, expect_identical => true)");
$node->psql('postgres', "SELECT streamview.swap('rev', 3)", stderr => \$err);
like($err, qr/has not passed validation/, 'swap refuses a version whose latest validation failed');
sql("SELECT * FROM streamview.validate('rev', 3)");

# the reader: one psql session, many statements, all before, during, after the swap
my $reads = 3000;
my ($rout, $rerr) = ('', '');
my $rin  = join('', ("SELECT count(*) || ':' || sum(n) FROM rev;\n") x $reads);
my $reader = IPC::Run::start(
	[ 'psql', '-X', '-A', '-t', '-h', $node->host, '-p', $node->port, '-d', 'postgres' ],
	'<', \$rin, '>', \$rout, '2>', \$rerr);
$reader->pump until ($rout =~ tr/\n//) >= 200;    # reading before the swap
sql("SELECT streamview.swap('rev', 3)");
$reader->finish;
my %seen;
$seen{$_}++ for grep { length } split /\n/, $rout;
my @odd = grep { $_ ne $old && $_ ne $new } keys %seen;
ok(!@odd && $rerr eq '' && $seen{$old} && $seen{$new},
	"a reader during the swap saw old ($old), then new ($new) rows, nothing else, no error")
  or diag("odd: @odd; stderr: $rerr");
note "reader: " . join(', ', map { "$_ x$seen{$_}" } sort keys %seen);
is(sql("SELECT count(*) || ':' || sum(n) FROM rev"), $new, 'after the swap the view reads version 3');
is(sql("SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute "
		  . "WHERE attrelid = 'rev'::regclass AND attnum > 0"),
	'window_start,window_end,user_id,n,revenue,biggest,is_final', 'the view has the new columns');
is(sql("SELECT has_table_privilege('analyst', 'rev', 'SELECT')"), 't', 'grants on the view survive the swap');
is(sql("SELECT string_agg(version || '=' || state, ' ' ORDER BY version) FROM streamview.versions "
		  . "WHERE view_name = 'rev'"), '1=caught_up 2=caught_up 3=live', 'version states after the swap');

# the old versions are kept current
next_chunk(200);
ok(wait_for($node,
		"SELECT bool_and(consumed = $total) FROM streamview.status WHERE view_name = 'rev'"),
	'all versions of rev, live or not, consumed the new events');

# 4. rollback: instant, and current
is(sql("SELECT streamview.rollback('rev')"), '1', 'rollback returns the version live before the swap');
is(sql("SELECT string_agg(version || '=' || state, ' ' ORDER BY version) FROM streamview.versions "
		  . "WHERE view_name = 'rev'"), '1=live 2=caught_up 3=caught_up', 'version 1 is live again');
is(sql("SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute "
		  . "WHERE attrelid = 'rev'::regclass AND attnum > 0"),
	'window_start,window_end,user_id,n,revenue,avg_cents,is_final', 'the view has its old columns again');
is(table_difference('rev_v1', 'rev_v2'), '0', 'after rollback, versions 1 and 2 are still identical');
is(sql("SELECT string_agg(from_version || '>' || to_version || (CASE WHEN is_rollback THEN 'R' ELSE '' END), ' ' "
		  . "ORDER BY swap_id) FROM streamview.swaps WHERE view_name = 'rev'"),
	'1>3 3>1R', 'swaps are recorded');
check_view_against_oracle($node, $oracle, 'rev', label => 'rev (v1 live again)');

# 5. drop_version
sql("SELECT streamview.drop_version('rev', 2)");
sql("SELECT streamview.drop_version('rev', 3)");
is(sql("SELECT string_agg(version || '=' || state, ' ' ORDER BY version) FROM streamview.versions "
		  . "WHERE view_name = 'rev'"), '1=live 2=retired 3=retired', 'dropped versions are retired');
is(sql("SELECT to_regclass('rev_v2') IS NULL AND to_regclass('rev_v3') IS NULL"), 't', 'their tables are gone');
is(sql("SELECT count(*) FROM streamview.offsets o JOIN streamview.versions v USING (version_id) "
		  . "WHERE v.state = 'retired'"), '0', 'their offsets are gone');

# 6. a replay that fails at run time.  An error that only some events
# cause is theirs (query_error dead letters, t/006_security.pl); one that the
# statement meets whatever the events, here a statement trigger the owner put
# on the new version's table, fails the version.
sql(q{CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN RAISE EXCEPTION 'boom at statement'; END $$});
is(sql(q{BEGIN;
	SELECT streamview.rebuild('hops', query => $q$
	SELECT streamview.hop(ts, '2 minutes', '1 minute') AS window_start, region,
	       count(*) AS n, sum(amount_cents) AS qty FROM orders GROUP BY 1, 2 $q$);
	CREATE TRIGGER boom BEFORE INSERT ON hops_v4 FOR EACH STATEMENT EXECUTE FUNCTION boom();
	COMMIT}),
	'4', 'hops: a rebuild whose statement fails at run time');
$node->psql('postgres', "SELECT streamview.wait_for('hops', 4, '2 minutes')", stderr => \$err);
like($err, qr/rebuild of stream view "hops" version 4 failed.*\n.*DETAIL:\s+boom at/,
	'wait_for reports the failure with the error');
is(sql("SELECT state FROM streamview.versions WHERE view_name = 'hops' AND version = 4"), 'failed',
	'the version is failed');
next_chunk(100);
ok(wait_consumed($node, 'hops', $total), 'the live version of hops goes on');
check_view_against_oracle($node, $oracle, 'hops', label => 'hops (live v1) at the end');
$node->psql('postgres', "SELECT streamview.swap('hops', 4, force => true)", stderr => \$err);
like($err, qr/has failed/, 'a failed version cannot be swapped in, even forced');

note sprintf('004 took %.1fs', time - $t_start);
broker_stop($broker);
$node->stop;
done_testing();
