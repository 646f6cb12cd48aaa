# Workers stop within a second even when the broker is gone, against a real
# Kafka 0.9.0.1, twice: once while it hangs (SIGSTOP: its connections stay
# open and nothing answers, so requests in flight wait for their timeout),
# once after it died (SIGKILL: nothing listens).  Each time a source worker
# terminated alone (pg_terminate_backend, as drop_source and the launcher
# stop one) and then every worker at a fast shutdown (pg_ctl stop -m fast,
# with a replay worker running) exit well within the bound; the times are
# printed.  Events stream in as the broker goes, so that the worker has
# Kafka commits in flight, and streamview.batch_timeout is 10 s, so that a
# worker that waited out its wait for messages before looking at its stop
# request would show.  After each round the broker and the server start
# again, and at the end the view, and the rebuilt version once it has caught
# up, equal the events produced: a stop loses no offset.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use JSON::PP;
use StreamViewTest;

# What a stop may take on a loaded 2-core machine; the goal is under 1 s.
my $BOUND_S = 2;
my $P       = 2;

my $kafka = kafka09_start('k014', { gone => $P });
my $node  = new_node('n014', batch_size => 50, conf => "streamview.batch_timeout = 10s\n");
my $opts  = JSON::PP->new->canonical->encode($kafka->{options});

$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('gone', '$kafka->{addr}', 'gone', '{"ts":"timestamptz","k":"text"}', 'ts',
	                                options => '$opts');
	SELECT streamview.create_view('public.gone_n', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS n FROM gone GROUP BY 1, 2 \$\$);
});

# The oracle: counts per minute and key of the events sent.
my (%expected, $sent);
sub send_events
{
	my ($n) = @_;
	my @m;
	for (1 .. $n)
	{
		my $i  = $sent++;
		my $ts = sprintf('2024-06-01T%02d:%02d:%02dZ', int($i / 3600), int($i / 60) % 60, $i % 60);
		my $k  = 'k' . ($i % 3);
		$expected{ sprintf('2024-06-01 %02d:%02d:00+00', int($i / 3600), int($i / 60) % 60) . " $k" }++;
		push @m, [ $i % $P, $k, JSON::PP->new->canonical->encode({ ts => $ts, k => $k }) ];
	}
	produce($kafka, 'gone', \@m);
	return;
}

sub table_is_exact
{
	my ($table, $label) = @_;
	my %got = map { ("$_->[0] $_->[1]" => $_->[2]) }
	  @{ query_rows($node, "SELECT window_start, k, n FROM $table ORDER BY 1, 2") };
	is_deeply(\%got, \%expected, "$label: equals the $sent events produced");
	return;
}

sub workers_running
{
	return wait_for($node, q{SELECT count(*) = 2 FROM pg_stat_activity
	                          WHERE backend_type IN ('pg_streamview source', 'pg_streamview replay')});
}

# Seconds until process $pid is gone (a child of the server: the test runs
# as the server's user).
sub seconds_until_gone
{
	my ($pid, $t0) = @_;
	usleep(2_000) while kill(0, $pid) && time - $t0 < 120;
	return time - $t0;
}

# The broker goes ('STOP': it hangs; 'KILL': it dies) while events stream
# in; a source worker is terminated alone, then the server stops; both
# timed.  Then the broker and the server start again.
sub stop_with_broker_gone
{
	my ($signal, $how) = @_;
	ok(workers_running(), "$how: a source worker and a replay worker run");
	send_events(500);
	kafka09_signal_broker($kafka, $signal);
	ok(wait_for($node, q{SELECT last_error IS NOT NULL FROM streamview.source_list WHERE name = 'gone'}),
		"$how: the source sees that the broker is gone");
	note "$how: last_error: " . $node->safe_psql('postgres', q{SELECT last_error FROM streamview.source_list});

	my $pid = $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_streamview source'});
	my $t0 = time;
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
	my $alone_s = seconds_until_gone($pid, $t0);
	note sprintf('%s: the source worker exited %.3f s after pg_terminate_backend', $how, $alone_s);
	cmp_ok($alone_s, '<', $BOUND_S,
		sprintf('%s: a terminated source worker exits at once (%.3f s)', $how, $alone_s));

	ok(wait_for($node, "SELECT count(*) = 1 FROM pg_stat_activity "
			  . "WHERE backend_type = 'pg_streamview source' AND pid <> $pid"),
		"$how: the launcher starts the source worker again");
	ok(workers_running(), "$how: with the replay worker");
	my @pids = split /\n/, $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type LIKE 'pg_streamview %'});
	my $log_pos = -s $node->logfile;
	$t0 = time;
	$node->stop('fast');
	my $stop_s = time - $t0;
	note sprintf('%s: pg_ctl stop -m fast took %.3f s (%d pg_streamview processes)', $how, $stop_s,
		scalar @pids);
	is(scalar(grep { kill(0, $_) } @pids), 0, "$how: every pg_streamview process has exited");
	cmp_ok($stop_s, '<', $BOUND_S, sprintf('%s: a fast shutdown takes %.3f s', $how, $stop_s));
	my @fatal = grep { /FATAL/ && !/terminating background worker .* due to administrator command/ }
	  split /\n/, slurp_file($node->logfile, $log_pos);
	is(scalar @fatal, 0, "$how: no FATAL in the log") or diag(join("\n", @fatal));

	kafka09_signal_broker($kafka, 'KILL') if $signal eq 'STOP';
	kafka09_start_broker($kafka);
	$node->start;
	ok(wait_consumed($node, 'gone_n', $sent), "$how: after the restarts the source has consumed all $sent events");
	return;
}

send_events(3000);
ok(wait_consumed($node, 'gone_n', 3000), 'the source reads the broker');
# A rebuild replays slowly (60 events/s), so that its replay worker runs
# throughout.
is($node->safe_psql('postgres', q{SELECT streamview.rebuild('gone_n', max_rate => 60)}), '2',
	'a rebuild starts (version 2)');

stop_with_broker_gone('STOP', 'broker hung');
stop_with_broker_gone('KILL', 'broker dead');

send_events(500);
ok(wait_consumed($node, 'gone_n', $sent), "the source has consumed all $sent events");
table_is_exact('gone_n', 'the view');
is($node->safe_psql('postgres',
		q{SELECT consumed = applied FROM streamview.status WHERE view_name = 'gone_n' AND is_live}),
	't', 'every event applied once');
is($node->safe_psql('postgres', q{SELECT count(*) FROM streamview.partitions WHERE NOT balanced}), '0',
	'every ledger balances');
ok(wait_for($node, q{SELECT state = 'caught_up' FROM streamview.versions WHERE view_name = 'gone_n' AND version = 2}),
	'the rebuild catches up');
ok(wait_for($node, "SELECT consumed = $sent FROM streamview.status WHERE view_name = 'gone_n' AND version = 2"),
	'and its version has consumed every event');
table_is_exact($node->safe_psql('postgres',
		q{SELECT table_name FROM streamview.status WHERE view_name = 'gone_n' AND version = 2}),
	'the rebuilt version');

$node->stop;
broker_stop($kafka);
done_testing();
