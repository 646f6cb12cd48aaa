# Faults on a real broker: Apache Kafka 0.9.0.1 (test/bin/kafka09.sh), whose
# log survives a restart.  The broker stops while PostgreSQL runs, for
# longer than the client's timeouts: streamview.status shows the outage for
# as long as it lasts (sampled every second), the worker reconnects by
# itself, and the view is exact.  PostgreSQL starts while the broker is
# down.  A source dropped during an outage stops its worker at once.
# (Kafka 0.9 has no message timestamps, so max_future checks nothing here.)
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use JSON::PP;
use StreamViewTest;

my $P      = 2;
my $kafka  = kafka09_start('k007', { faults => $P, spare => 1, late => 1 });
my $node   = new_node('n007', batch_size => 50);
my $B      = $kafka->{addr};
my $opts   = JSON::PP->new->canonical->encode($kafka->{options});

$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('faults', '$B', 'faults', '{"ts":"timestamptz","k":"text"}', 'ts',
	                                options => '$opts');
	SELECT streamview.create_view('public.faults_n', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS n FROM faults GROUP BY 1, 2 \$\$);
});

# The oracle of this view is simple enough to keep here: counts per minute and key.
my (%expected, $sent);
sub send_events
{
	my ($n) = @_;
	my @m;
	for (1 .. $n)
	{
		my $i = $sent++;
		my $ts = sprintf('2024-05-01T12:%02d:%02dZ', int($i / 60) % 60, $i % 60);
		my $k = 'k' . ($i % 3);
		$expected{ sprintf('2024-05-01 12:%02d:00+00', int($i / 60) % 60) . " $k" }++;
		push @m, [ $i % $P, $k, JSON::PP->new->canonical->encode({ ts => $ts, k => $k }) ];
	}
	produce($kafka, 'faults', \@m);
	return;
}

sub view_is_exact
{
	my ($label) = @_;
	my %got = map { ("$_->[0] $_->[1]" => $_->[2]) } @{ query_rows($node,
		"SELECT window_start, k, n FROM faults_n ORDER BY 1, 2") };
	is_deeply(\%got, \%expected, "$label: the view equals the events sent ($sent)");
	is($node->safe_psql('postgres', q{SELECT consumed = applied FROM streamview.status WHERE view_name = 'faults_n'}),
		't', "$label: every message applied once")
	  or diag($node->safe_psql('postgres', q{
		SELECT consumed, applied, duplicates, too_late, dead_lettered FROM streamview.status WHERE view_name = 'faults_n';
		SELECT partition, "offset", reason, convert_from(payload, 'UTF8'), error FROM streamview.dead_letters
		 WHERE source_name = 'faults' ORDER BY 1, 2}));
	return;
}

sub error_now
{
	return $node->safe_psql('postgres', q{SELECT coalesce(error, '') FROM streamview.status WHERE view_name = 'faults_n'});
}

send_events(200);
ok(wait_consumed($node, 'faults_n', 200), 'the worker reads the real broker');
view_is_exact('before any fault');
is(error_now(), '', 'no error while the broker is up');

# 1. The broker stops for 25 s, longer than librdkafka's socket and metadata
# timeouts: the outage shows in status.error, every second of it.
my $log_offset = -s $node->logfile;
my $errors_before = $node->safe_psql('postgres', q{SELECT count(*) FROM streamview.worker_errors});
kafka09_stop_broker($kafka);
my $t_down = time;
ok(wait_for($node, q{SELECT error IS NOT NULL FROM streamview.status WHERE view_name = 'faults_n'}),
	'the outage shows in streamview.status');
note sprintf('shown %.1f s after the broker stopped', time - $t_down);
my @samples;
for (1 .. 25)
{
	push @samples, error_now();
	usleep(1_000_000);
}
is(scalar(grep { $_ eq '' } @samples), 0, 'status.error shows the outage in each of 25 samples, a second apart')
  or diag(explain(\@samples));
note "status.error during the outage: $samples[-1]";
my $outage_s = time - $t_down;
# the worker's lines (the test's own statements are logged too: log_statement = all)
my @worker_lines = grep { !/ (?:LOG|ERROR):  statement: / && !/^\s/ } split /\n/,
  slurp_file($node->logfile, $log_offset);
my $per_minute = @worker_lines / ($outage_s / 60);
cmp_ok($per_minute, '<', 30,
	sprintf('no log flood: %d lines from the worker in %.0f s of outage', scalar @worker_lines, $outage_s))
  or diag(join("\n", @worker_lines));
my $errors_during = $node->safe_psql('postgres', q{SELECT count(*) FROM streamview.worker_errors}) - $errors_before;
cmp_ok($errors_during, '<=', 5, "worker_errors records the outage, not every second of it ($errors_during rows)");

# 2. It comes back: the worker reconnects by itself, and nothing is lost or doubled.
kafka09_start_broker($kafka);
my $t_up = time;
send_events(200);
ok(wait_consumed($node, 'faults_n', 400), 'the worker reconnects by itself and goes on');
note sprintf('caught up %.1f s after the broker was back', time - $t_up);
ok(wait_for($node, q{SELECT error IS NULL FROM streamview.status WHERE view_name = 'faults_n'}),
	'and the error clears');
view_is_exact('after a 25 s outage');

# 3. PostgreSQL starts while the broker is down.
kafka09_stop_broker($kafka);
$node->restart;
ok(wait_for($node, q{SELECT error IS NOT NULL FROM streamview.status WHERE view_name = 'faults_n'}),
	'after a restart with the broker down, the outage shows');
kafka09_start_broker($kafka);
send_events(100);
ok(wait_consumed($node, 'faults_n', 500), 'the worker goes on once the broker is back');
view_is_exact('after PostgreSQL started without its broker');

# 4. Partitions added to the topic are found and read, without a restart.
kafka09_add_partitions($kafka, 'faults', 3);
$P = 3;
send_events(90);
ok(wait_consumed($node, 'faults_n', 590), 'a partition added to the topic is read');
is($node->safe_psql('postgres', q{SELECT count(*) FROM streamview.partitions WHERE view_name = 'faults_n'}), '3',
	'and has its ledger row');
view_is_exact('after a partition was added');

# 5. A source created while its broker is away says so, and starts reading
# when the broker is back.
kafka09_stop_broker($kafka);
$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('late', '$B', 'late', '{"ts":"timestamptz","k":"text"}', 'ts', options => '$opts');
	SELECT streamview.create_view('public.late_n', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n FROM late GROUP BY 1 \$\$);
});
ok(wait_for($node, q{SELECT last_error IS NOT NULL FROM streamview.source_list WHERE name = 'late'}),
	'a source created while the broker is away shows the error');
kafka09_start_broker($kafka);
produce($kafka, 'late', [ map { [ 0, "k$_", qq({"ts":"2024-05-01T12:00:0${_}Z","k":"k$_"}) ] } 0 .. 4 ]);
ok(wait_consumed($node, 'late_n', 5), 'and reads once the broker is back');
is($node->safe_psql('postgres', q{SELECT sum(n) FROM late_n}), '5', 'all of it');

# 6. The topic deleted and created again under a running source: the new
# messages start again at offset 0, below what the view has read.  They
# must not be skipped as "read before": the source stops and says why.
$node->safe_psql('postgres', q{SELECT streamview.drop_source('late', cascade => true)});
kafka09_recreate_topic($kafka, 'faults', 3);
produce($kafka, 'faults', [ map { [ $_ % 3, "n$_", qq({"ts":"2024-05-01T13:00:0${_}Z","k":"n$_"}) ] } 0 .. 5 ]);
ok(wait_for($node, q{SELECT error LIKE '%before offset%already read%' FROM streamview.status WHERE view_name = 'faults_n'}),
	'a topic deleted and created again stops the source with an error that says so');
note 'status.error: ' . error_now();
is($node->safe_psql('postgres', q{SELECT count(*) FROM faults_n WHERE window_start >= '2024-05-01 13:00+00'}), '0',
	'and nothing of the new topic was taken for read, or applied');
$node->safe_psql('postgres', q{SELECT streamview.drop_source('faults', cascade => true)});

# 7. A source dropped during an outage: its worker stops at once, not after
# a blocking metadata call.
$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('spare', '$B', 'spare', '{"ts":"timestamptz"}', 'ts', options => '$opts')});
ok(wait_for($node, q{SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'pg_streamview source spare'}),
	'a second source runs');
kafka09_stop_broker($kafka);
ok(wait_for($node, q{SELECT last_error IS NOT NULL FROM streamview.source_list WHERE name = 'spare'}),
	'and sees the outage');
my $t_drop = time;
$node->safe_psql('postgres', q{SELECT streamview.drop_source('spare')});
ok(wait_for($node, q{SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'pg_streamview source spare'}),
	'dropped during the outage, its worker goes');
my $stop_s = time - $t_drop;
cmp_ok($stop_s, '<', 3, sprintf('within %.1f s', $stop_s));

$node->stop;
broker_stop($kafka);
done_testing();
