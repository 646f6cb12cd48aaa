# A rebuild while events keep arriving, as in production:
#  - the replay catches up and hands over while the stream still runs (the
#    stream goes on until the test has seen that, however long a loaded
#    machine makes the replay take, up to 40 s): the
#    replaying version is within one batch of the live version, not level
#    with it in every partition at the moment it looks (two consumers fetch
#    independently; a replay that waited for that would chase a busy live
#    version for as long as the stream goes on);
#  - the hand-over is exact all the same: once the stream stops, wait_for()
#    returns, validate(expect_identical) passes, and the live table equals
#    an oracle computed here from the messages sent;
#  - streamview.rebuilds says what the replay did: it replayed at least the
#    backlog and at most what had been sent when it caught up, and its rate
#    is what it replayed over the time it took;
#  - a replay fills its batches: over a log of one-message message sets,
#    which librdkafka's mock broker serves one set per partition per fetch,
#    it applies streamview.batch_size messages a batch (as its LOG line
#    counts them), not a few per fetch.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use POSIX ();
use IPC::Run;
use StreamViewTest;

my $P       = 8;
my $BACKLOG = 20_000;
# The stream: rounds of $PER messages per partition every $ROUND_S s (8000
# messages a second), $ROUNDS rounds (10 s) at least and $MAX_ROUNDS (40 s)
# at most, while the replay has not caught up.  The mock broker serves one
# message set per partition per fetch, and kcat makes one of each round:
# a consumer gains on the stream only while its fetches take less than a
# round, so rounds are not shorter than a loaded machine's fetch (rounds
# of 5 ms made the catch-up a race with the machine's load).  At most
# 42500 messages a partition: the mock broker keeps about 70000 (then it
# drops the oldest, which a replay behind them would never read).
my $ROUND_S    = 0.05;
my $PER        = 50;
my $ROUNDS     = 200;
my $MAX_ROUNDS = 800;
my $BASE_MS = 1_720_000_000_000;

my $broker = broker_start('b026', { rt => $P, tiny => 4 });
# batch_timeout: how long a replay's batch may wait to fill (a source worker
# applies as soon as its queue is drained, whatever it is)
my $node   = new_node('n026', batch_size => 1000, conf => "streamview.batch_timeout = '2s'\n");
my $B      = $broker->{addr};

sub sql { my ($query) = @_; return $node->safe_psql('postgres', $query) }

# Message number $seq: partition, payload.  Event time advances 10 ms a
# message, so every partition's event time only grows and nothing is late.
sub message
{
	my ($seq) = @_;
	return ($seq % $P,
		sprintf('{"ts":%d,"k":"k%d","seq":%d,"amount":%d}', $BASE_MS + $seq * 10, $seq % 7, $seq, $seq % 100));
}

# The oracle: count and sum of amount per (minute, k) of messages 0 .. n-1.
sub oracle_rows
{
	my ($n) = @_;
	my %g;
	for my $seq (0 .. $n - 1)
	{
		my $minute = int(($BASE_MS + $seq * 10) / 60_000) * 60;
		my $key = sprintf('%d|k%d', $minute, $seq % 7);
		$g{$key}[0]++;
		$g{$key}[1] += $seq % 100;
	}
	return join("\n", map { "$_|$g{$_}[0]|$g{$_}[1]" } sort keys %g);
}

sql(qq{
	SELECT streamview.create_source('rt', '$B', 'rt', '{"ts":"timestamptz","k":"text","seq":"bigint","amount":"bigint"}',
	                                'ts', max_out_of_orderness => '1 hour');
	SELECT streamview.create_view('public.rt_sum',
	    \$\$ SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS n, sum(amount) AS total
	         FROM rt GROUP BY 1, 2 \$\$);
});
produce($broker, 'rt', [ map { [ (message($_))[0], "m$_", (message($_))[1] ] } 0 .. $BACKLOG - 1 ]);
ok(wait_consumed($node, 'rt_sum', $BACKLOG), "the live version read the backlog of $BACKLOG");

# The stream: a child writes $PER messages per partition every $ROUND_S s
# to one kcat producer per partition, for $ROUNDS rounds (10 s) and until
# the test has seen the replay catch up (SIGUSR1), at most $MAX_ROUNDS;
# then it tells the test how many rounds it sent, on a pipe, and exits.
# How long the replay takes depends on the machine (it competes for the
# CPU with the stream, the live version and the broker): a fixed 10 s of
# stream made "caught up while streaming" a race with the machine's load.
my $caught_up_seen = 0;
local $SIG{USR1} = sub { $caught_up_seen = 1 };    # before the fork: the child has it from its start
pipe(my $rounds_in, my $rounds_out) or die "pipe: $!";
my $child = fork();
die "fork: $!" unless defined $child;
if ($child == 0)
{
	close($rounds_in);
	my @out;
	for my $p (0 .. $P - 1)
	{
		open($out[$p], '|-', 'kcat', '-P', '-b', $B, '-t', 'rt', '-p', $p, '-K', "\t", '-X', 'linger.ms=5')
		  or POSIX::_exit(1);
		$out[$p]->autoflush(1);
	}
	my $seq = $BACKLOG;
	my $t0  = time;
	my $round = 0;
	while ($round < $MAX_ROUNDS && ($round < $ROUNDS || !$caught_up_seen))
	{
		$round++;
		for (1 .. $P * $PER)
		{
			my ($p, $v) = message($seq);
			print { $out[$p] } "m$seq\t$v\n";
			$seq++;
		}
		my $due = $t0 + $round * $ROUND_S;
		usleep(int(($due - time) * 1e6)) if $due > time;
	}
	my $ok = 1;
	close($_) or $ok = 0 for @out;
	print {$rounds_out} "$round\n" or $ok = 0;
	close($rounds_out) or $ok = 0;
	POSIX::_exit($ok ? 0 : 1);
}
close($rounds_out);

ok(wait_consumed($node, 'rt_sum', $BACKLOG + 200 * $P), 'the stream is flowing into the live version');
my $sent_at_rebuild = sql("SELECT consumed FROM streamview.status WHERE view_name = 'rt_sum'");
sql("SELECT streamview.rebuild('rt_sum')");

# Caught up while the child still sends (it sends until told so).
my $caught_while_streaming = 0;
my $child_status;
my $deadline = time + 120;
while (time < $deadline)
{
	my $state = sql("SELECT state FROM streamview.versions WHERE view_name = 'rt_sum' AND version = 2");
	my $streaming = waitpid($child, POSIX::WNOHANG()) == 0;
	if ($state eq 'caught_up')
	{
		$caught_while_streaming = $streaming;
		last;
	}
	die "version 2 is $state" if $state eq 'failed';
	if (!$streaming)
	{
		$child_status = $?;    # reaped: it sent $MAX_ROUNDS rounds
		last;
	}
	usleep(50_000);
}
ok($caught_while_streaming, 'the replay caught up and handed over while the stream went on');
my $consumed_at_catch_up = sql("SELECT consumed FROM streamview.status WHERE view_name = 'rt_sum'");

if (!defined $child_status)
{
	kill('USR1', $child);    # it stops once it has sent $ROUNDS rounds
	waitpid($child, 0);
	$child_status = $?;
}
is($child_status, 0, 'the stream was sent in full');
my $rounds_sent = <$rounds_in> // die 'the stream did not say how many rounds it sent';
close($rounds_in);
chomp($rounds_sent);
note "the stream sent $rounds_sent rounds";
my $total = $BACKLOG + $rounds_sent * $P * $PER;

ok(wait_consumed($node, 'rt_sum', $total), "the live version read all $total messages");
is(sql("SELECT streamview.wait_for('rt_sum', 2, '2 minutes')"), 'caught_up',
	'wait_for: the rebuilt version is level with the live one');
is(sql("SELECT string_agg(\"check\" || '=' || passed, ' ' ORDER BY \"check\") "
	  . "FROM streamview.validate('rt_sum', 2, expect_identical => true)"),
	'caught_up=true differences=true ledger=true', 'validate: identical to the live version');
is(sql("SELECT string_agg(extract(epoch FROM window_start)::bigint || '|' || k || '|' || n || '|' || total, "
	  . "E'\\n' ORDER BY extract(epoch FROM window_start)::bigint::text, k) FROM rt_sum"),
	oracle_rows($total), 'the live table equals the oracle');
sql("SELECT streamview.swap('rt_sum', 2)");
is(sql("SELECT string_agg(extract(epoch FROM window_start)::bigint || '|' || k || '|' || n || '|' || total, "
	  . "E'\\n' ORDER BY extract(epoch FROM window_start)::bigint::text, k) FROM rt_sum"),
	oracle_rows($total), 'swapped in, the rebuilt table equals the oracle');

# What streamview.rebuilds says about the replay.
my ($replayed, $rate, $secs) = split /\|/, sql(
	"SELECT ver.replayed, b.rate, extract(epoch FROM b.caught_up_at - b.replay_started_at) "
	  . "FROM streamview.rebuilds b JOIN streamview.versions ver USING (view_name, version) "
	  . "WHERE b.view_name = 'rt_sum' AND b.version = 2");
ok($replayed >= $sent_at_rebuild - 1000 && $replayed <= $consumed_at_catch_up + 1000,
	"rebuilds: replayed $replayed, within a batch (1000) of the $sent_at_rebuild in the log at rebuild() "
	  . "or beyond, and of the $consumed_at_catch_up the live version had read once caught up or below");
ok($secs > 0 && abs($rate - $replayed / $secs) <= 1,
	"rebuilds: rate $rate is what was replayed over the replay's $secs s");
note sprintf('replayed %d events in %.2f s (%d/s); the stream ran at %d/s', $replayed, $secs, $rate, $P * $PER / $ROUND_S);

# A log of one-message message sets: 4000 messages in 4 partitions.
my $TINY = 4000;
for my $p (0 .. 3)
{
	my $in = join('', map { sprintf("t%d\t{\"ts\":%d,\"k\":\"k%d\",\"seq\":%d,\"amount\":1}\n",
		$_, $BASE_MS + $_ * 10, $_ % 7, $_) } grep { $_ % 4 == $p } 0 .. $TINY - 1);
	my ($out, $err);
	IPC::Run::run([ 'kcat', '-P', '-b', $B, '-t', 'tiny', '-p', $p, '-K', "\t",
			'-X', 'batch.num.messages=1', '-X', 'linger.ms=0' ], '<', \$in, '>', \$out, '2>', \$err)
	  or die "kcat failed: $err";
}
sql(qq{
	SELECT streamview.create_source('tiny', '$B', 'tiny', '{"ts":"timestamptz","k":"text","seq":"bigint","amount":"bigint"}',
	                                'ts', max_out_of_orderness => '1 hour');
	SELECT streamview.create_view('public.tiny_n',
	    \$\$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n FROM tiny GROUP BY 1 \$\$);
});
ok(wait_consumed($node, 'tiny_n', $TINY), "the live version read the $TINY one-message sets");
my $log_offset = -s $node->logfile;
sql("SELECT streamview.rebuild('tiny_n')");
ok(wait_for($node, "SELECT state = 'caught_up' FROM streamview.versions WHERE view_name = 'tiny_n' AND version = 2"),
	'the replay of the one-message sets caught up');
my ($events, $batches);
ok(wait_until_log(qr/replay of view "tiny_n" version 2 caught up after (\d+) events in (\d+) batches/,
		\$events, \$batches), 'the replay worker logged how many events and batches it took');
ok($events >= $TINY - 1000 && $events <= $TINY,
	"it replayed $events of the $TINY messages: all, or all but at most a batch, "
	  . "which the source worker reads for it");
ok($batches <= int($events / 1000) + 2,
	"in $batches batches: full ones of streamview.batch_size (1000), not a few messages per fetch");
is(sql("SELECT streamview.wait_for('tiny_n', 2, '2 minutes')"), 'caught_up',
	'wait_for: taken over by the source worker, level with the live version');
is(sql("SELECT string_agg(\"check\" || '=' || passed, ' ' ORDER BY \"check\") "
	  . "FROM streamview.validate('tiny_n', 2, expect_identical => true)"),
	'caught_up=true differences=true ledger=true', 'and validates as identical');

# Poll the server log (from $log_offset) for $re; its two captures go to $first, $second.
sub wait_until_log
{
	my ($re, $first, $second) = @_;
	for (1 .. 300)
	{
		my $log = substr(slurp_file($node->logfile), $log_offset);
		if ($log =~ $re)
		{
			($$first, $$second) = ($1, $2);
			return 1;
		}
		usleep(100_000);
	}
	return 0;
}

$node->stop;
broker_stop($broker);
done_testing();
