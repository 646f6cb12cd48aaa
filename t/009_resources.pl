# Out of resources during a batch: a full disk under the view's table, and
# statements cancelled in the middle of a batch; the kill switch and
# pause/resume.  Each batch is one
# transaction, so a batch that fails rolls back whole (the view's rows, its
# offsets, counters and dead letters together); the worker is restarted with
# back-off and reads again from its stored offsets; once the cause goes it
# goes on by itself.  At the end the table equals the oracle and every
# partition's ledger balances: nothing lost, nothing counted twice.
#
# The full disk is real: a small tmpfs that `make test` mounts (as root) and
# names in SV_TINY_FS; a tablespace on it holds the view's table, and a
# filler file takes its free space, as another program would.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use StreamViewTest;

my $tiny = $ENV{SV_TINY_FS};
plan skip_all => 'needs a small file system the server user can fill: run make test as root, '
  . 'or set SV_TINY_FS to a small mounted directory'
  unless defined $tiny && -d $tiny && -w $tiny;

my $P    = 3;
my $MOOO = 5000;

my $broker = broker_start('b009', { res => $P });
my $node   = new_node('n009', batch_size => 100);

my %columns = gen_columns();
# One row per event: every batch needs new pages of the table.
my @views = (
	test_view(
		source      => 'res',
		name        => 'res_ev',
		lateness_ms => 20_000,
		window      => [ 'tumble', 60_000 ],
		keys        => [qw(event_id)],
		aggs        => [ [ n => 'count_star' ], [ revenue => 'sum', 'amount_cents' ] ]),
	test_view(
		source      => 'res',
		name        => 'res_user',
		lateness_ms => 10_000,
		window      => [ 'tumble', 60_000 ],
		keys        => [qw(user_id)],
		aggs        => [ [ n => 'count_star' ], [ qty => 'sum', 'qty' ] ]),
);
my $oracle = oracle_new(
	columns                 => \%columns,
	event_time              => 'ts',
	event_id                => 'event_id',
	max_out_of_orderness_ms => $MOOO,
	views                   => \@views);
my $chunks = stream_chunker(broker => $broker, topic => 'res', oracle => $oracle,
	partitions => $P, seed => 9009, base_ms => 1_720_000_000_000, mooo_ms => $MOOO, views => \@views);
my $total = 0;
sub next_chunk { my $n = $chunks->{next}->(@_); $total = $chunks->{total}->(); return $n }

sub consumed
{
	return $node->safe_psql('postgres',
		q{SELECT coalesce(min(consumed), 0) FROM streamview.status WHERE is_live});
}

sub unbalanced
{
	return $node->safe_psql('postgres', 'SELECT count(*) FROM streamview.partitions WHERE NOT balanced');
}

create_gen_source($node, $broker, 'res', 'res');
create_views($node, \@views);

# res_ev's table and indexes go to the small file system.
mkdir "$tiny/ts" or die "mkdir $tiny/ts: $!";
$node->safe_psql('postgres', qq{CREATE TABLESPACE tiny LOCATION '$tiny/ts'});
$node->safe_psql('postgres', q{
	DO $$
	DECLARE i regclass;
	BEGIN
	  EXECUTE 'ALTER TABLE public.res_ev_v1 SET TABLESPACE tiny';
	  FOR i IN SELECT indexrelid FROM pg_index WHERE indrelid = 'public.res_ev_v1'::regclass LOOP
	    EXECUTE format('ALTER INDEX %s SET TABLESPACE tiny', i);
	  END LOOP;
	END $$});
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE t.spcname = 'tiny') = count(*) AND count(*) >= 2
	FROM pg_class c LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
	WHERE c.oid = 'public.res_ev_v1'::regclass
	   OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'public.res_ev_v1'::regclass)}),
	't', "res_ev's table and its indexes are on the small file system");

# 1. With room to spare, a first chunk.
next_chunk(300);
ok(wait_consumed($node, $_->{name}, $total), "room to spare: $_->{name} consumed $total") for @views;

# 2. Another program fills the disk; then more events arrive.
my $filler = "$tiny/filler";
system("dd if=/dev/zero of=$filler bs=64k 2>/dev/null");
ok(-s $filler > 0, 'the file system is full (' . (-s $filler) . ' bytes of filler)');
my $before = consumed();
my $log_offset = -s $node->logfile;
next_chunk(600);
ok(wait_for($node, q{SELECT count(*) > 0 FROM streamview.worker_errors
                     WHERE message ~ 'No space left on device'}),
	'the full disk is recorded in streamview.worker_errors');
like($node->safe_psql('postgres', q{
	SELECT message || ' / ' || coalesce(detail, '') FROM streamview.worker_errors
	WHERE message ~ 'No space left' ORDER BY occurred_at DESC LIMIT 1}),
	qr/could not extend file .*No space left on device/, 'it says which file could not grow, and why');

# While the disk stays full: no batch goes through in part.  The ledger
# balances at every sample and the stream does not move past what was
# applied before the disk filled (a batch may still fit in free space left in
# existing pages; none is half applied).
my (@stuck, $unbalanced_seen);
for (1 .. 6)
{
	push @stuck, consumed();
	$unbalanced_seen++ if unbalanced() ne '0';
	usleep(500_000);
}
note 'consumed while the disk is full: ' . join(', ', @stuck) . " (before: $before, produced: $total)";
cmp_ok($stuck[-1], '<', $total, 'the stream stops while the disk is full');
is($stuck[-1], $stuck[-3], 'and stays where it stopped');
ok(!$unbalanced_seen, 'every partition ledger balances while the disk is full');
is($node->safe_psql('postgres', q{SELECT count(*) FROM streamview.dead_letters WHERE reason = 'query_error'}),
	'0', 'a full disk makes no dead letters: it is the server\'s problem, not an event\'s');
my @restarts = grep { /pg_streamview worker for source "res" stopped; restarting in/ }
  split /\n/, substr(slurp_file($node->logfile), $log_offset);
note scalar(@restarts) . " restarts while the disk was full; last: " . ($restarts[-1] // 'none');
cmp_ok(scalar(@restarts), '>=', 1, 'the worker is restarted with back-off');

# 3. The space comes back: the worker goes on by itself.
unlink $filler or die "unlink $filler: $!";
ok(wait_consumed($node, $_->{name}, $total), "space freed: $_->{name} consumed all $total") for @views;

# 4. Statements cancelled mid-batch (as statement_timeout or a DBA's
# pg_cancel_backend would): the batch rolls back whole and is read again.  A
# statement_timeout on the worker's role is ignored (the worker pins its
# settings; streamview.statement_timeout bounds a view's statement), so it
# stops nothing.  psql sessions of this test keep their own settings.
{
	local $ENV{PGOPTIONS} = '-c statement_timeout=0 -c lock_timeout=0';
	$node->safe_psql('postgres', q{ALTER ROLE CURRENT_USER SET statement_timeout = '1ms';
	                               ALTER ROLE CURRENT_USER SET lock_timeout = '1ms'});
	my $old = worker_pid($node, 'res');
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($old)");
	ok(wait_for($node, "SELECT count(*) = 1 FROM pg_stat_activity "
		  . "WHERE backend_type = 'pg_streamview source' AND pid <> $old"),
		'a new worker starts under a 1 ms statement_timeout on its role');
	my $cancels = 0;
	for my $round (1 .. 5)
	{
		$before = consumed();
		next_chunk(300);
		wait_for($node, "SELECT coalesce(min(consumed), 0) > $before + 50 FROM streamview.status WHERE is_live");
		my $pid = worker_pid($node, 'res');
		$cancels += $node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)") eq 't' ? 1 : 0;
	}
	is($cancels, 5, 'five cancels sent mid-stream');
	ok(wait_consumed($node, $_->{name}, $total), "after the cancels: $_->{name} consumed all $total")
	  for @views;
	like($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT message, '; ') FROM streamview.worker_errors
	                                    WHERE message ~ 'cancel'}),
		qr/canceling statement due to user request/, 'the cancels are recorded as worker errors');
	$node->safe_psql('postgres', q{ALTER ROLE CURRENT_USER RESET statement_timeout;
	                               ALTER ROLE CURRENT_USER RESET lock_timeout});
}

# 5. The kill switch: streamview.enabled = off stops every worker, and what
# arrives meanwhile waits in the broker; on starts them again from the
# stored offsets.
$node->safe_psql('postgres', 'ALTER SYSTEM SET streamview.enabled = off');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok(wait_for($node, q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_streamview source'}),
	'streamview.enabled = off stops the source worker');
$before = consumed();
next_chunk(200);
sleep(2);
is(consumed(), $before, 'nothing is consumed while it is off');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET streamview.enabled');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok(wait_consumed($node, $_->{name}, $total), "on again: $_->{name} consumed all $total") for @views;

# 6. pause() stops one source's worker until resume(), which reads on from
# the stored offsets.
my $paused_at = $node->safe_psql('postgres', q{SELECT streamview.pause('res')});
ok($paused_at ne '', "pause returns when the source was paused ($paused_at)");
is($node->safe_psql('postgres', q{SELECT streamview.pause('res')}), $paused_at, 'pausing again changes nothing');
ok(wait_for($node, q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_streamview source'}),
	'the paused source has no worker');
is($node->safe_psql('postgres', q{SELECT paused_at IS NOT NULL FROM streamview.source_list WHERE name = 'res'}),
	't', 'source_list shows it paused');
$before = consumed();
next_chunk(200);
sleep(2);
is(consumed(), $before, 'nothing is consumed while it is paused');
is($node->safe_psql('postgres', q{SELECT streamview.resume('res')}), $paused_at, 'resume returns when it had been paused');
ok(wait_consumed($node, $_->{name}, $total), "resumed: $_->{name} consumed all $total") for @views;
is($node->safe_psql('postgres', q{SELECT streamview.resume('res') IS NULL}), 't', 'resuming a running source returns NULL');

# 7. Everything equals the oracle; every ledger balances.
check_view_against_oracle($node, $oracle, $_->{name}) for @views;
check_unreadable_dead_letters($node, $oracle, 'res');
is(unbalanced(), '0', 'every partition ledger balances');
is($node->safe_psql('postgres', q{SELECT count(*) FROM streamview.dead_letters WHERE reason = 'query_error'}),
	'0', 'no event was blamed for the server\'s faults');

broker_stop($broker);
$node->stop;
done_testing();
