# Parallel source workers (workers => N): a source whose partitions are
# split over two workers gives exactly the oracle's tables, the same as a
# source over the same topic read by one worker, with every offset of every
# partition accounted for (ledger, dead letters) and the view's watermark
# the minimum over all partitions, although each worker reads only half of
# them.  alter_source changes the split (2 → 1 → 3) while messages arrive,
# and a worker terminated mid-stream is started again: nothing is lost or
# applied twice.  A source limited to some partitions (partitions =>) and
# read by two workers reads those partitions only, split between them, and
# its watermark is the lowest of those.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use StreamViewTest;

my $P      = 6;
my $MOOO   = 5000;
my $broker = broker_start('b024', { clicks => $P });
# small batches: the workers' transactions interleave many times
my $node   = new_node('n024', batch_size => 200);

# The generator's columns; event_id is read as a plain column (a source
# that deduplicates by it keeps one worker).
my %columns = gen_columns();

# Two views over the split source (their upserts lock rows of two tables),
# and the first one again over a source read by one worker.
my $sum_view = sub {
	my ($name, $source) = @_;
	return test_view(
		source      => $source,
		name        => $name,
		lateness_ms => 30_000,
		window      => [ 'tumble', 60_000 ],
		keys        => [qw(user_id region)],
		aggs        => [
			[ n       => 'count_star' ],
			[ revenue => 'sum', 'amount_cents' ],
			[ min_amt => 'min', 'amount_cents' ],
			[ max_amt => 'max', 'amount_cents' ],
			[ avg_amt => 'avg', 'amount_cents' ],
		]);
};
my @par_views = (
	$sum_view->('pv', 'par'),
	test_view(
		source      => 'par',
		name        => 'ph',
		lateness_ms => 10_000,
		window      => [ 'hop', 180_000, 60_000 ],
		keys        => [qw(region)],
		aggs        => [ [ n => 'count_star' ], [ qty => 'sum', 'qty' ] ]));
my @one_views = ($sum_view->('ov', 'one'));

# No event_id for the oracle either: the generator's repeated ids are
# applied like any other event, by both sources.
my $oracle = oracle_new(
	columns                 => \%columns,
	event_time              => 'ts',
	event_id                => undef,
	max_out_of_orderness_ms => $MOOO,
	views                   => [ @par_views, @one_views ]);
my $stream = stream_chunker(
	broker     => $broker,
	topic      => 'clicks',
	oracle     => $oracle,
	partitions => $P,
	seed       => 24,
	base_ms    => 1_704_067_200_000,
	mooo_ms    => $MOOO,
	views      => [ @par_views, @one_views ]);

# Part of the log is there before the sources.
$stream->{next}->(1000);

my $cols_json = JSON::PP->new->canonical->encode(\%columns);
my $options   = JSON::PP->new->canonical->encode({ 'session.timeout.ms' => '6000', %{ $broker->{options} // {} } });
for ([ 'par', 2 ], [ 'one', 1 ])
{
	my ($name, $workers) = @$_;
	$node->safe_psql('postgres', qq{
		SELECT streamview.create_source(name => '$name', brokers => '$broker->{addr}',
		  topic => 'clicks', columns => '$cols_json', event_time => 'ts',
		  max_out_of_orderness => '5 seconds', options => '$options', workers => $workers)});
}
create_views($node, [ @par_views, @one_views ]);
$stream->{next}->(500);

# The source's worker backends, as a DBA sees them: application_name.
sub workers_of
{
	my ($source) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT string_agg(application_name, ',' ORDER BY application_name) FROM pg_stat_activity
		 WHERE backend_type = 'pg_streamview source' AND application_name LIKE 'pg_streamview source $source%'});
}

sub check_all
{
	my ($label) = @_;
	my $total = $stream->{total}->();
	for my $v (@par_views, @one_views)
	{
		ok(wait_consumed($node, $v->{name}, $total), "$label $v->{name}: consumed the whole log ($total)")
		  or diag($node->safe_psql('postgres',
			'SELECT * FROM streamview.status; SELECT * FROM streamview.partitions; SELECT * FROM streamview.worker_errors'));
	}
	# every offset of every partition accounted for, the counters, the
	# too-late dead letters and the watermark, against the oracle
	check_view_against_oracle($node, $oracle, $_->{name}, label => "$label $_->{name}")
	  for @par_views, @one_views;
	check_unreadable_dead_letters($node, $oracle, $_, "$label $_") for qw(par one);

	# the same table as one worker's, row for row
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM ((TABLE pv EXCEPT ALL TABLE ov) UNION ALL (TABLE ov EXCEPT ALL TABLE pv)) d}),
		'0', "$label the split source's table equals the one-worker source's");

	# the watermark stored is the minimum over every partition's, whichever
	# worker read it
	ok(wait_for($node, q{
		SELECT bool_and(s.watermark = (SELECT min(p.watermark) FROM streamview.partitions p
		                                WHERE p.view_name = s.view_name AND p.version = s.version))
		  FROM streamview.status s WHERE s.view_name IN ('pv', 'ph')}),
		"$label the watermark is the minimum over all partitions");
	return;
}

is(workers_of('par'), 'pg_streamview source par 1/2,pg_streamview source par 2/2',
	'two workers read the split source, each named with its index');
is(workers_of('one'), 'pg_streamview source one', 'one worker reads the other source');
check_all('2 workers:');
is($node->safe_psql('postgres', q{
	SELECT count(DISTINCT (p.view_name, p.partition)) FROM streamview.partitions p
	 WHERE p.view_name IN ('pv', 'ph') AND p.next_offset IS NOT NULL}),
	2 * $P, 'both views have a ledger row for every partition');
ok(wait_for($node, q{SELECT bool_and(health = 'ok') FROM streamview.status WHERE view_name IN ('pv', 'ph', 'ov')}),
	'status: the views are served (every worker runs) and healthy')
  or diag($node->safe_psql('postgres', 'SELECT view_name, health, error, lag FROM streamview.status'));
is($node->safe_psql('postgres', q{
	SELECT count(DISTINCT worker) FROM streamview.version_stats st
	  JOIN streamview.versions v USING (version_id) WHERE v.view_name = 'pv'}),
	'2', 'each worker keeps its own stats row');
ok($node->safe_psql('postgres', q{SELECT events_per_second IS NOT NULL FROM streamview.status WHERE view_name = 'pv'}),
	'status adds up the workers\' rates');

# alter_source changes the split while messages keep coming: 2 → 1 → 3.
$stream->{next}->(400);
ok($node->safe_psql('postgres', q{SELECT streamview.alter_source('par', workers => 1) IS NOT NULL}),
	'workers => 1: a change');
$stream->{next}->(400);
ok(wait_for($node, q{SELECT string_agg(application_name, ',') = 'pg_streamview source par'
	FROM pg_stat_activity WHERE application_name LIKE 'pg_streamview source par%'}),
	'one worker reads the source after the change');
ok($node->safe_psql('postgres', q{SELECT streamview.alter_source('par', workers => 3) IS NOT NULL}),
	'workers => 3: a change');
$stream->{next}->(400);
ok(wait_for($node, q{SELECT string_agg(application_name, ',' ORDER BY application_name) =
	'pg_streamview source par 1/3,pg_streamview source par 2/3,pg_streamview source par 3/3'
	FROM pg_stat_activity WHERE application_name LIKE 'pg_streamview source par%'}),
	'three workers read the source after the change');
is($node->safe_psql('postgres', q{
	SELECT string_agg(changes::text, ' ' ORDER BY change_id) FROM streamview.source_changes
	 WHERE source_name = 'par'}),
	'{"workers": {"new": 1, "old": 2}} {"workers": {"new": 3, "old": 1}}',
	'the changes are in the source\'s history');
check_all('2 -> 1 -> 3 workers:');

# A worker terminated while messages arrive is started again; what it had
# not committed is read again, once.
my $victim = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity WHERE application_name = 'pg_streamview source par 2/3'});
ok($victim, "worker 2/3 runs (pid $victim)");
$stream->{next}->(300);
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($victim)"), 't', 'worker 2/3 terminated');
$stream->{next}->(300);
ok(wait_for($node, qq{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE application_name = 'pg_streamview source par 2/3' AND pid <> $victim}),
	'worker 2/3 was started again');
check_all('a worker terminated:');

# With partitions => too, the workers split the partitions the source reads
# (1-4 of 0-5: worker 1/2 reads 2 and 4, worker 2/2 reads 1 and 3), and the
# watermark is the lowest of those four, whichever worker read them.  What
# each partition holds is counted against the one-worker source's view,
# which the oracle checked above; the log is complete by now.
$node->safe_psql('postgres', qq{
	SELECT streamview.create_source(name => 'sub', brokers => '$broker->{addr}',
	  topic => 'clicks', columns => '$cols_json', event_time => 'ts',
	  max_out_of_orderness => '5 seconds', options => '$options', partitions => '1-4', workers => 2);
	SELECT streamview.create_view('sub_n', \$\$ SELECT streamview.tumble(ts, '1 minute') AS window_start,
	  count(*) AS n FROM sub GROUP BY 1 \$\$)});
ok(wait_for($node, q{
	SELECT (SELECT sum(consumed) FROM streamview.partitions WHERE view_name = 'ov' AND partition BETWEEN 1 AND 4)
	     = (SELECT consumed FROM streamview.status WHERE view_name = 'sub_n')}),
	'partitions => 1-4 over 2 workers: consumed partitions 1 to 4')
  or diag($node->safe_psql('postgres', "SELECT * FROM streamview.partitions WHERE view_name IN ('ov', 'sub_n')"));
is(workers_of('sub'), 'pg_streamview source sub 1/2,pg_streamview source sub 2/2',
	'two workers read the source limited to partitions 1-4');
is($node->safe_psql('postgres', q{
	SELECT string_agg(s.partition || ':' || (s.consumed = o.consumed), ',' ORDER BY s.partition)
	  FROM streamview.partitions s JOIN streamview.partitions o ON o.partition = s.partition AND o.view_name = 'ov'
	 WHERE s.view_name = 'sub_n'}),
	'1:true,2:true,3:true,4:true', 'each of partitions 1-4 read whole, and no other');
is($node->safe_psql('postgres', q{
	SELECT string_agg(DISTINCT o.partition::text, ',' ORDER BY o.partition::text) FROM streamview.offsets o
	  JOIN streamview.versions v USING (version_id) WHERE v.view_name = 'sub_n'}),
	'1,2,3,4', 'ledger rows for partitions 1-4 only');
is($node->safe_psql('postgres', q{
	SELECT (SELECT sum(n) FROM sub_n) = (SELECT applied FROM streamview.status WHERE view_name = 'sub_n')}),
	't', 'the view counts every message applied');
ok(wait_for($node, q{
	SELECT s.watermark = (SELECT min(p.watermark) FROM streamview.partitions p
	                       WHERE p.view_name = 'ov' AND p.partition BETWEEN 1 AND 4)
	  FROM streamview.status s WHERE s.view_name = 'sub_n'}),
	'the watermark is the lowest of partitions 1-4, over both workers')
  or diag($node->safe_psql('postgres', "SELECT view_name, watermark, held_back_by FROM streamview.status"));

broker_stop($broker);
$node->stop;
done_testing();
