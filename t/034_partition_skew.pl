# Reading a backlog's partitions in step (issue 10; src/align.c): a worker
# pauses the partitions whose events are more than
# streamview.max_partition_skew ahead of the slowest partition with a
# backlog, and resumes them once it comes near.
#  1. A backlog whose partition 0 lies an hour behind the three others, read
#     in many small fetches: the partitions ahead are paused and resumed
#     (the worker says so at DEBUG1), and the view equals the Perl oracle,
#     every message counted once (librdkafka drops a paused partition's
#     queued messages and fetches them again: nothing lost, nothing twice).
#  2. With max_partition_skew = 0 the same log is read as the broker sends
#     it, nothing paused, to the same table.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use IPC::Run;
use StreamViewTest;

my $broker = broker_start('b034', { skew => 4 });
my $node = new_node('n034', batch_size => 200,
	conf => "streamview.max_partition_skew = '1min'\nlog_min_messages = debug1\n");
my $B = $broker->{addr};

# 4 partitions of 1,500 events, one a second; partition 0 an hour earlier.
# Record batches of 20 messages and 4 kB fetches behind a 1 kB queue: the
# backlog comes in many fetches, which the worker can steer.
my $ts = 1_714_564_800_000;    # 2024-05-01 12:00:00 UTC
my $PER = 1500;
my %oracle;                    # window start (ms) => [count, sum]
for my $p (0 .. 3)
{
	my $in = '';
	for my $i (1 .. $PER)
	{
		my $t = $ts + ($p == 0 ? 0 : 3_600_000) + $i * 1000;
		my $a = $p * 10_000 + $i;
		$in .= "\t" . JSON::PP->new->canonical->encode({ a => $a, ts => $t }) . "\n";
		my $w = $t - $t % 600_000;
		$oracle{$w}[0]++;
		$oracle{$w}[1] += $a;
	}
	my ($out, $err);
	IPC::Run::run([ 'kcat', '-P', '-b', $B, '-t', 'skew', '-p', $p, '-K', "\t", '-Z',
			'-X', 'batch.num.messages=20', '-X', 'linger.ms=0' ], '<', \$in, '>', \$out, '2>', \$err)
	  or die "kcat failed: $err";
}
my $expected = join "\n", map { "$_|$oracle{$_}[0]|$oracle{$_}[1]" } sort { $a <=> $b } keys %oracle;
my $total = 4 * $PER;

sub read_skew
{
	my ($name) = @_;
	$node->safe_psql('postgres', qq{
		SELECT streamview.create_source('$name', '$B', 'skew', '{"ts":"timestamptz","a":"int8"}', 'ts',
		       options => '{"queued.max.messages.kbytes":"1","fetch.message.max.bytes":"4096"}');
		SELECT streamview.create_view('public.${name}_n', \$\$
		  SELECT streamview.tumble(ts, '10 minutes') AS window_start, count(*) AS n, sum(a) AS s
		    FROM $name GROUP BY 1 \$\$);
	});
	ok(wait_consumed($node, "${name}_n", $total), "$name: the $total events are read");
	is($node->safe_psql('postgres', qq{
		SELECT string_agg((extract(epoch FROM window_start) * 1000)::bigint || '|' || n || '|' || s, E'\\n'
		                  ORDER BY window_start) FROM ${name}_n}),
		$expected, "$name: the view equals the oracle, every event counted once");
	is($node->safe_psql('postgres', qq{
		SELECT applied || ' ' || dead_lettered FROM streamview.status WHERE view_name = '${name}_n'}),
		"$total 0", "$name: the ledger balances");
}

######################################################################
# 1. the partitions ahead wait for partition 0
######################################################################
my $log_at = -s $node->logfile;
read_skew('aligned');
my $log = slurp_file($node->logfile, $log_at);
my @paused = $log =~ /pausing partition (\d) of topic "skew": \d+ ms ahead/g;
my %ahead = map { $_ => 1 } @paused;
ok(@paused > 0 && !$ahead{0},
	'aligned: the partitions an hour ahead were paused (' . scalar(@paused) . ' times: '
	  . join(',', sort keys %ahead) . '), partition 0 never for being ahead');
like($log, qr/resuming partition [123] of topic "skew"/, 'aligned: and resumed');

######################################################################
# 2. max_partition_skew = 0: read as the broker sends
######################################################################
$node->safe_psql('postgres', "ALTER SYSTEM SET streamview.max_partition_skew = 0");
$node->reload;
wait_for($node, "SELECT setting = '0' FROM pg_settings WHERE name = 'streamview.max_partition_skew'")
  or die 'max_partition_skew did not become 0';
$log_at = -s $node->logfile;
read_skew('unaligned');
unlike(slurp_file($node->logfile, $log_at), qr/pausing partition/, 'unaligned: nothing paused');

broker_stop($broker);
$node->stop;
done_testing();
