# Freshness, as a DBA reads it and as a reader sees it:
#  - a batch is applied as soon as the worker's queue is drained, never held
#    back to fill up: with streamview.batch_timeout at 10 s and batches that
#    never fill, messages produced at a steady modest rate are visible within
#    seconds (waiting for the timeout, each would take 10 s);
#  - streamview.partitions.applied_broker_time is the broker timestamp of the
#    newest message of each partition, as kcat reads it back from the broker
#    (not as the extension reports it), and visible_delay is set, not
#    negative and below a loose bound; streamview.status shows the newest of
#    them, with its partition's delay;
#  - a view created on a running source has rows within a short wait (its
#    worker is woken when create_view commits, not at its next idle round,
#    which batch_timeout = 10 s would make 10 s away);
#  - streamview.rebuilds.rate stops with the replay: read twice after catch-up,
#    with messages consumed in between, it does not change.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use JSON::PP;
use StreamViewTest;

my $P      = 3;
my $broker = broker_start('b022', { fr => $P });
my $node   = new_node('n022', conf => "streamview.batch_timeout = '10s'\n");
my $B      = $broker->{addr};
my $json   = JSON::PP->new->canonical;

sub sql { my ($query) = @_; return $node->safe_psql('postgres', $query) }

# Generous bounds: CI is a loaded 2-core machine.
my $VISIBLE_BOUND_S = 5;    # half of batch_timeout: a batch that waited for it fails
my $DELAY_BOUND_S   = 5;

my $produced = 0;
my $seq      = 0;

# One message per partition, event time now.
sub produce_round
{
	my $ts = int(time * 1000);
	produce($broker, 'fr',
		[ map { [ $_, "k$_", $json->encode({ ts => $ts, k => "k$_", seq => $seq++ }) ] } 0 .. $P - 1 ]);
	$produced += $P;
	return;
}

# Each partition's newest message's broker timestamp (ms), read back from the
# broker with kcat: the oracle for applied_broker_time.
sub broker_times
{
	my ($out, $err);
	IPC::Run::run([ 'kcat', '-C', '-b', $B, '-t', 'fr', '-o', 'beginning', '-e', '-q',
			'-f', "%p %o %T\\n" ], '>', \$out, '2>', \$err)
	  or die "kcat -C failed: $err";
	my %newest;
	for (split /\n/, $out)
	{
		my ($p, $o, $t) = split / /;
		$newest{$p} = [ $o, $t ] if !$newest{$p} || $o > $newest{$p}[0];
	}
	return { map { $_ => $newest{$_}[1] } keys %newest };
}

sql(qq{
	SELECT streamview.create_source('fr', '$B', 'fr', '{"ts":"timestamptz","k":"text","seq":"bigint"}', 'ts',
	                                max_out_of_orderness => '1 hour');
	SELECT streamview.create_view('public.fr_n',
	    \$\$ SELECT streamview.tumble(ts, '1 second') AS window_start, k, count(*) AS n, max(seq) AS last_seq
	         FROM fr GROUP BY 1, 2 \$\$);
});
ok(worker_pid($node, 'fr'), 'the source has a worker');

# A steady modest rate: a round every 200 ms.  After each round, the round's
# last message is visible in the view within the bound.
my @visible_s;
for my $round (1 .. 10)
{
	produce_round();
	my $want = $seq - 1;
	my $t0   = time;
	my $ok   = 0;
	while (time - $t0 < 30)
	{
		if (sql("SELECT coalesce(max(last_seq), -1) >= $want FROM public.fr_n") eq 't')
		{
			$ok = 1;
			last;
		}
		usleep(20_000);
	}
	ok($ok, "round $round: its messages are visible") or last;
	push @visible_s, time - $t0;
	usleep(200_000);
}
my @sorted = sort { $a <=> $b } @visible_s;
my $median = $sorted[ int(@sorted / 2) ];
note sprintf('produced-to-visible (kcat and psql included): median %.3f s, max %.3f s', $median, $sorted[-1]);
cmp_ok($median, '<', $VISIBLE_BOUND_S,
	"messages are visible without waiting for batch_timeout (median ${\ sprintf('%.3f', $median)} s)");

ok(wait_consumed($node, 'fr_n', $produced), "all $produced messages consumed");

# Per partition: the newest broker timestamp, as the broker has it.
my $bt = broker_times();
is(scalar(keys %$bt), $P, "kcat read back every partition's messages");
my $rows = query_rows($node,
	"SELECT partition, (extract(epoch FROM applied_broker_time) * 1000)::bigint, "
	  . "extract(epoch FROM visible_delay), applied_broker_time = max_broker_time "
	  . "FROM streamview.partitions WHERE view_name = 'fr_n' AND version = 1 ORDER BY 1");
is(scalar(@$rows), $P, 'partitions: a row per partition');
for my $r (@$rows)
{
	my ($p, $abt, $delay, $same) = @$r;
	is($abt, $bt->{$p}, "partition $p: applied_broker_time is its newest message's broker timestamp");
	isnt($delay, 'NULL', "partition $p: visible_delay is set");
	cmp_ok($delay, '>=', 0, "partition $p: visible_delay is not negative") if $delay ne 'NULL';
	cmp_ok($delay, '<', $DELAY_BOUND_S, "partition $p: visible_delay ($delay s) is below the bound")
	  if $delay ne 'NULL';
	is($same, 't', "partition $p: applied_broker_time agrees with max_broker_time");
}

# status: the newest over the partitions, and that partition's delay.
my ($newest_p) = sort { $bt->{$b} <=> $bt->{$a} || $a <=> $b } keys %$bt;
my $st = query_rows($node,
	"SELECT (extract(epoch FROM s.applied_broker_time) * 1000)::bigint, "
	  . "extract(epoch FROM s.visible_delay), "
	  . "s.visible_delay IN (SELECT p.visible_delay FROM streamview.partitions p "
	  . "  WHERE p.view_name = s.view_name AND p.version = s.version "
	  . "    AND p.applied_broker_time = s.applied_broker_time) "
	  . "FROM streamview.status s WHERE view_name = 'fr_n' AND version = 1")->[0];
is($st->[0], $bt->{$newest_p}, 'status: applied_broker_time is the newest broker timestamp produced');
isnt($st->[1], 'NULL', 'status: visible_delay is set');
cmp_ok($st->[1], '>=', 0, 'status: visible_delay is not negative') if $st->[1] ne 'NULL';
cmp_ok($st->[1], '<', $DELAY_BOUND_S, "status: visible_delay ($st->[1] s) is below the bound")
  if $st->[1] ne 'NULL';
is($st->[2], 't', "status: visible_delay is that of the partition with the newest message");

# A view created on the running, idle source is filled at once: its worker
# is woken when create_view commits.  A round just before, so that the
# worker has just applied a batch and is waiting for the next message (a
# worker that is not woken looks at the catalog only batch_timeout later).
produce_round();
ok(wait_for($node, "SELECT coalesce(max(last_seq), -1) >= " . ($seq - 1) . " FROM public.fr_n"),
	'the round before the new view is visible');
my $t0 = time;
sql(q{SELECT streamview.create_view('public.fr_m',
	    $$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n FROM fr GROUP BY 1 $$)});
my $filled = 0;
while (time - $t0 < 60)
{
	if (sql("SELECT coalesce(sum(n), 0) = $produced FROM public.fr_m") eq 't')
	{
		$filled = 1;
		last;
	}
	usleep(20_000);
}
my $took = time - $t0;
ok($filled, 'a view created on a running source gets every message');
note sprintf('new view filled after %.3f s', $took);
cmp_ok($took, '<', $VISIBLE_BOUND_S, 'the new view is filled without waiting for the worker\'s idle round');

# rebuilds.rate stops with the replay.
is(sql("SELECT streamview.rebuild('fr_n')"), '2', 'rebuild: version 2');
ok(wait_for($node, "SELECT state <> 'replaying' FROM streamview.rebuilds WHERE view_name = 'fr_n' AND version = 2"),
	'the rebuild caught up');
my $rate1 = sql("SELECT rate FROM streamview.rebuilds WHERE view_name = 'fr_n' AND version = 2");
isnt($rate1, '', 'rebuilds.rate is set after catch-up');
produce_round() for 1 .. 3;
ok(wait_for($node,
		"SELECT consumed >= $produced FROM streamview.status WHERE view_name = 'fr_n' AND version = 2"),
	'the caught-up version reads on');
my ($rate2, $done2) = split /\|/,
  sql("SELECT rate, done FROM streamview.rebuilds WHERE view_name = 'fr_n' AND version = 2");
cmp_ok($done2, '>=', $produced, 'rebuilds.done counts what it read since');
is($rate2, $rate1, 'rebuilds.rate does not grow after catch-up');

done_testing();
