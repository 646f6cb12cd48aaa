# Exactly-once under crashes: a stream produced in chunks while PostgreSQL is
# restarted in immediate mode and the source worker is killed with SIGKILL,
# mid-stream, ten times at random points; then a replay worker is killed ten
# times and PostgreSQL stopped in immediate mode in the middle of its replay.
# With a small batch size the crashes land between (and inside) many batches.  At the end every table, counter, dead
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
# Batches of one round (batch_max_time = 0) of at most batch_size
# messages: many commits per chunk, so that the crashes land between them;
# t/026_batch_rounds.pl crashes batches of several rounds.
my $node   = new_node('n002', batch_size => 200, conf => "streamview.batch_max_time = 0\n");

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

# 3. the worker killed with SIGKILL while the next chunk streams in, nine
# times, each at a point drawn at random (seeded, so a failure repeats)
srand(20241125);
for my $round (1 .. 9)
{
	my $pid = worker_pid($node, 'clicks');
	ok($pid, "round $round: the source worker is running (pid " . ($pid // 'none') . ")");
	$before = consumed();
	next_chunk(1500);
	$at = wait_progress($before + 100 + int(rand(3000)));
	kill 'KILL', $pid;
	push @mid, [ "SIGKILL $round", $at, $total ];
	# the postmaster reinitializes; wait until it accepts connections again
	# and a new worker serves the source
	ok(wait_for($node,
			"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_streamview source' "
			  . "AND pid <> $pid"),
		"round $round: a new worker replaced the killed one");
}

# 4. a tenth SIGKILL, right after producing, before the worker has caught up
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

# 6. a replay worker killed with SIGKILL ten times at random points of its
# replay, and PostgreSQL stopped in immediate mode in the middle of it: the
# rebuilt version still equals the live one, row for row.
my $replay_done = sub {
	return $node->safe_psql('postgres',
		"SELECT coalesce((SELECT done FROM streamview.rebuilds WHERE view_name = 'crash_rev' AND version = 2), 0)");
};
is($node->safe_psql('postgres', q{SELECT streamview.rebuild('crash_rev', max_rate => 4000)}), '2',
	'a throttled rebuild of crash_rev');
my @replay_kills;
for my $round (1 .. 10)
{
	my $goal = $replay_done->() + 200 + int(rand(1500));
	wait_for($node, "SELECT coalesce((SELECT done FROM streamview.rebuilds "
		  . "WHERE view_name = 'crash_rev' AND version = 2), 0) >= $goal "
		  . "OR (SELECT state FROM streamview.versions WHERE view_name = 'crash_rev' AND version = 2) <> 'replaying'");
	my $rpid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_streamview replay'");
	last unless $rpid;
	push @replay_kills, $replay_done->();
	kill 'KILL', $rpid;
	ok(wait_for($node, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_streamview replay' "
			  . "AND pid <> $rpid OR (SELECT state FROM streamview.versions "
			  . "WHERE view_name = 'crash_rev' AND version = 2) <> 'replaying'"),
		"replay kill $round: a new replay worker goes on");
	if ($round == 5)
	{
		$node->stop('immediate');
		$node->start;
		push @replay_kills, 'immediate';
	}
}
note 'replay killed at done = ' . join(', ', @replay_kills);
cmp_ok(scalar(grep { $_ ne 'immediate' } @replay_kills), '>=', 10, 'ten SIGKILLs landed mid-replay');
is($node->safe_psql('postgres', q{SELECT streamview.wait_for('crash_rev', 2, '3 minutes')}), 'caught_up',
	'the rebuild catches up after its crashes');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM ((TABLE crash_rev_v1 EXCEPT ALL TABLE crash_rev_v2)
	                      UNION ALL (TABLE crash_rev_v2 EXCEPT ALL TABLE crash_rev_v1)) d}), '0',
	'the rebuilt version equals the live one, row for row');
is($node->safe_psql('postgres', q{
	SELECT bool_and(passed) FROM streamview.validate('crash_rev', 2, expect_identical => true)}), 't',
	'validate (expect_identical) passes');

note sprintf('002 took %.1fs', time - $t_start);
broker_stop($broker);
$node->stop;
done_testing();
