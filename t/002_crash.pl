# Exactly-once under crashes: a stream produced in chunks while PostgreSQL is
# restarted in immediate mode and the source worker is killed with SIGKILL,
# mid-stream, several times.  With a small batch size the crashes land
# between (and inside) many batches.  At the end every table, counter, dead
# letter and the watermark equal the oracle: nothing lost, nothing counted twice.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use JSON::PP;
use StreamViewTest;

my $t_start = time;
my $P       = 3;
my $MOOO    = 5000;

my $broker = broker_start('b002', { clicks => $P });
my $node   = new_node('n002', batch_size => 200);

my %columns = gen_columns();
my @views = (
	test_view(
		source      => 'clicks',
		name        => 'crash_rev',
		lateness_ms => 20_000,
		window      => [ 'tumble', 60_000 ],
		keys        => [qw(user_id)],
		aggs        => [
			[ n       => 'count_star' ],
			[ revenue => 'sum', 'amount_cents' ],
			[ lo      => 'min', 'amount_cents' ],
			[ hi      => 'max', 'amount_cents' ],
			[ any_flag => 'bool_or', 'flag' ],
		],
	),
	test_view(
		source      => 'clicks',
		name        => 'crash_hop',
		lateness_ms => 10_000,
		window      => [ 'hop', 120_000, 60_000 ],
		keys        => [qw(region)],
		aggs        => [ [ n => 'count_star' ], [ qty => 'sum', 'qty' ] ],
	),
);

my $oracle = oracle_new(
	columns                 => \%columns,
	event_time              => 'ts',
	event_id                => 'event_id',
	max_out_of_orderness_ms => $MOOO,
	views                   => \@views);

# Chunks continue one stream (same generator state).
my $chunks = stream_chunker(broker => $broker, topic => 'clicks', oracle => $oracle,
	partitions => $P, seed => 4242, base_ms => 1_710_000_000_000, mooo_ms => $MOOO, views => \@views);
my $total = 0;
sub next_chunk
{
	my $n = $chunks->{next}->(@_);
	$total = $chunks->{total}->();
	return $n;
}

sub consumed
{
	my $r = query_rows($node,
		"SELECT coalesce(min(consumed), 0) FROM streamview.status WHERE is_live");
	return $r->[0][0];
}

# Wait until the stream moved past $n (but maybe not to its end) and return
# how far it is, so that the crash that follows lands mid-stream.
sub wait_progress
{
	my ($n) = @_;
	wait_for($node, "SELECT coalesce(min(consumed), 0) > $n FROM streamview.status WHERE is_live");
	return consumed();
}

create_gen_source($node, $broker, 'clicks', 'clicks');
create_views($node, \@views);

my @mid;    # [what, consumed at the crash, produced by then]

# 1. a first chunk, fully applied
next_chunk(1000);
ok(wait_consumed($node, $_->{name}, $total), "chunk 1: $_->{name} consumed $total") for @views;

# 2. PostgreSQL restarted in immediate mode while a large chunk streams in
my $before = consumed();
next_chunk(4000);
my $at = wait_progress($before + 200);
$node->stop('immediate');
push @mid, [ 'immediate restart', $at, $total ];
$node->start;
ok(1, 'PostgreSQL restarted after an immediate stop');

# 3. the worker killed with SIGKILL while the next chunk streams in
for my $round (1 .. 3)
{
	my $pid = worker_pid($node, 'clicks');
	ok($pid, "round $round: the source worker is running (pid " . ($pid // 'none') . ")");
	$before = consumed();
	next_chunk(3000);
	$at = wait_progress($before + 200 * $round);
	kill 'KILL', $pid;
	push @mid, [ "SIGKILL $round", $at, $total ];
	# the postmaster reinitializes; wait until it accepts connections again
	# and a new worker serves the source
	ok(wait_for($node,
			"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_streamview source' "
			  . "AND pid <> $pid"),
		"round $round: a new worker replaced the killed one");
}

# 4. a SIGKILL right after producing, before the worker has caught up
my $pid = worker_pid($node, 'clicks');
next_chunk(2000);
kill 'KILL', $pid if $pid;
push @mid, [ 'SIGKILL right after produce', '?', $total ];

# 5. the last chunk, then everything must equal the oracle
next_chunk(1000);
for my $v (@views)
{
	ok(wait_consumed($node, $v->{name}, $total), "$v->{name}: consumed all $total messages")
	  or diag($node->safe_psql('postgres',
		  'SELECT * FROM streamview.status; SELECT * FROM streamview.worker_errors'));
}
my $mid_stream = 0;
for (@mid)
{
	note "crash '$_->[0]': consumed $_->[1] of $_->[2] produced";
	$mid_stream++ if $_->[1] ne '?' && $_->[1] < $_->[2];
}
ok($mid_stream >= 2, "at least two crashes landed mid-stream ($mid_stream of " . scalar(@mid) . ")");

for my $v (@views)
{
	check_view_against_oracle($node, $oracle, $v->{name});
}
check_unreadable_dead_letters($node, $oracle, 'clicks');

is($node->safe_psql('postgres',
		'SELECT count(*) FROM streamview.partitions WHERE NOT balanced'),
	'0', 'every partition ledger balances');

note sprintf('002 took %.1fs', time - $t_start);
broker_stop($broker);
$node->stop;
done_testing();
