# Monitoring that plugs in: Debian's prometheus-postgres-exporter, started
# against the test server on 127.0.0.1 with docs/monitoring/queries.yaml and
# a role that is only a member of pg_monitor, is scraped for real; the
# stream metrics are there with the values streamview.status holds.  And
# pg_monitor sees dead-letter and worker-error counts (never payloads),
# instead of the zero rows that row level security gives it on the tables.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use IPC::Run;
use StreamViewTest;

my $exporter_bin = '/usr/bin/prometheus-postgres-exporter';
plan skip_all => "$exporter_bin is missing (make test installs prometheus-postgres-exporter)"
  unless -x $exporter_bin;

my $broker = broker_start('b012', { mon => 2 });
my $node   = new_node('n012', batch_size => 50);
my $B      = $broker->{addr};

$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('mon', '$B', 'mon', '{"ts":"timestamptz","k":"text"}', 'ts');
	SELECT streamview.create_view('public.mon_n', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS n FROM mon GROUP BY 1, 2 \$\$);
	CREATE ROLE metrics LOGIN IN ROLE pg_monitor;
	-- a worker error, as a worker records one
	INSERT INTO streamview.worker_errors (source_id, source_name, message, detail)
	SELECT source_id, name, 'a test error', 'SECRET-DETAIL' FROM streamview.sources;
});
my @m = map { [ $_ % 2, "k$_", sprintf('{"ts":"2024-05-01T12:00:%02dZ","k":"k%d"}', $_, $_ % 3) ] } 0 .. 39;
push @m, [ 0, 'bad', '{"ts": oops' ], [ 1, 'bad', 'SECRET-PAYLOAD' ];
produce($broker, 'mon', \@m);
ok(wait_consumed($node, 'mon_n', 42), 'the view consumed 42 messages (2 of them unreadable)');
ok(wait_for($node, q{SELECT lag = 0 FROM streamview.status WHERE view_name = 'mon_n'}),
	'and knows it is caught up (lag 0)')
  or diag($node->safe_psql('postgres', 'SELECT * FROM streamview.partitions'));

# pg_monitor: counts, not rows
my $as_metrics = sub { $node->safe_psql('postgres', $_[0], extra_params => [ '-U', 'metrics' ]) };
is($as_metrics->(q{SELECT count(*) FROM streamview.dead_letters}), '0',
	'the dead letters themselves stay hidden from pg_monitor (row level security)');
is($as_metrics->(q{SELECT reason || '=' || dead_letters FROM streamview.dead_letter_counts}),
	'invalid_json=2', 'but it sees how many there are, and why');
is($as_metrics->(q{SELECT source_name || '=' || worker_errors FROM streamview.worker_error_counts}),
	'mon=1', 'and how many worker errors');

# The exporter, on a free port, as the pg_monitor role.
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $dsn  = sprintf('host=%s port=%d user=metrics dbname=postgres sslmode=disable', $node->host, $node->port);
my ($out, $err) = ('', '');
my $exporter = IPC::Run::start(
	[ $exporter_bin, "--web.listen-address=127.0.0.1:$port",
		"--extend.query-path=$StreamViewTest::ROOT/docs/monitoring/queries.yaml",
		'--disable-settings-metrics' ],
	'>', \$out, '2>', \$err,
	init => sub { $ENV{DATA_SOURCE_NAME} = $dsn });
my $metrics = '';
for (1 .. 100)
{
	$metrics = `curl -s --max-time 5 http://127.0.0.1:$port/metrics 2>/dev/null`;
	last if $metrics =~ /pg_streamview_status_consumed/;
	usleep(200_000);
}
like($metrics, qr/^pg_up 1$/m, 'the exporter reaches the server as the pg_monitor role');

sub metric
{
	my ($name, $labels) = @_;
	for my $line (split /\n/, $metrics)
	{
		next unless $line =~ /^\Q$name\E\{([^}]*)\} (\S+)$/;
		my ($l, $v) = ($1, $2);
		return $v if !grep { $l !~ /\Q$_\E/ } @$labels;
	}
	return undef;
}
my $status = $node->safe_psql('postgres',
	q{SELECT concat_ws(' ', consumed, applied, dead_lettered, coalesce(lag::text, 'NaN'), (error IS NOT NULL)::int)
	    FROM streamview.status WHERE view_name = 'mon_n'});
my ($consumed, $applied, $dead, $lag, $error) = split / /, $status;
is(metric('pg_streamview_status_consumed', [ 'view_name="mon_n"', 'state="live"', 'version="1"' ]), $consumed,
	"pg_streamview_status_consumed is status.consumed ($consumed)");
is(metric('pg_streamview_status_applied', ['view_name="mon_n"']), $applied, 'and applied');
is(metric('pg_streamview_status_dead_lettered', ['view_name="mon_n"']), $dead, 'and dead_lettered');
is(metric('pg_streamview_status_lag', ['view_name="mon_n"']), $lag, 'and lag');
is(metric('pg_streamview_status_error', ['view_name="mon_n"']), $error, "error is status.error IS NOT NULL ($error)");
is(metric('pg_streamview_partitions_unbalanced', []), '0', 'no partition ledger is unbalanced');
is(metric('pg_streamview_dead_letters_dead_letters', [ 'source_name="mon"', 'reason="invalid_json"' ]), '2',
	'dead letters are counted by source and reason');
is(metric('pg_streamview_worker_errors_worker_errors', ['source_name="mon"']), '1', 'and worker errors by source');
unlike($metrics, qr/SECRET/, 'no payload or error detail in the metrics');

$exporter->kill_kill;
$exporter->finish;
broker_stop($broker);
$node->stop;
done_testing();
