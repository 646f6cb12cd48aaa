# Monitoring that plugs in: Debian's prometheus-postgres-exporter, started
# against the test server on 127.0.0.1 with docs/monitoring/queries.yaml and
# a role that is only a member of pg_monitor, is scraped for real; the
# stream metrics are there with the values streamview.status holds.  And
# pg_monitor sees dead-letter and worker-error counts (never payloads),
# instead of the zero rows that row level security gives it on the tables.
# And retention of that history, run by the launcher.
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
ok(wait_for($node, q{SELECT lag = 0 AND lag_time = '0' AND health = 'ok' FROM streamview.status WHERE view_name = 'mon_n'}),
	'and knows it is caught up (lag 0 messages, 0 seconds, health ok)')
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
is(metric('pg_streamview_status_lag_seconds', ['view_name="mon_n"']), '0', 'lag_seconds is status.lag_time (0 s)');
is(metric('pg_streamview_status_health_code', ['view_name="mon_n"']), '0', 'health_code is 0: ok');
is(join(' ', map { "$_=" . (metric('pg_streamview_health_status', [ 'view_name="mon_n"', qq{health="$_"} ]) // 'missing') }
			qw(ok lagging stalled error paused)),
	'ok=1 lagging=0 stalled=0 error=0 paused=0', 'pg_streamview_health_status: 1 for ok, 0 for every other state');
like(metric('pg_streamview_status_events_per_second', ['view_name="mon_n"']) // '', qr/^\d+(\.\d+)?(e[-+]\d+)?$/,
	'events_per_second is scraped');
cmp_ok(metric('pg_streamview_status_last_batch_duration_seconds', ['view_name="mon_n"']) // -1, '>', 0,
	'and last_batch_duration_seconds, above 0');
my $visible_delay = $node->safe_psql('postgres',
	q{SELECT extract(epoch FROM visible_delay) FROM streamview.status WHERE view_name = 'mon_n'});
my $scraped_delay = metric('pg_streamview_status_visible_delay_seconds', ['view_name="mon_n"']);
# NULL (no broker timestamps: Kafka 0.9) is NaN
ok(defined $scraped_delay
	  && ($visible_delay eq '' ? $scraped_delay eq 'NaN' : abs($scraped_delay - $visible_delay) < 1e-6),
	"visible_delay_seconds is status.visible_delay ($visible_delay s)")
  or diag("scraped: " . ($scraped_delay // 'missing'));
is(metric('pg_streamview_partitions_unbalanced', []), '0', 'no partition ledger is unbalanced');
is(metric('pg_streamview_dead_letters_dead_letters', [ 'source_name="mon"', 'reason="invalid_json"' ]), '2',
	'dead letters are counted by source and reason');
is(metric('pg_streamview_worker_errors_worker_errors', ['source_name="mon"']), '1', 'and worker errors by source');
unlike($metrics, qr/SECRET/, 'no payload or error detail in the metrics');

$exporter->kill_kill;
$exporter->finish;

# Retention (streamview.*_retention): the launcher deletes history older
# than each setting, at once after a reload and then once a minute, but
# keeps what other work reads: the latest validation run of a version, the
# newest offset mark of a partition.
$node->safe_psql('postgres', q{
	UPDATE streamview.dead_letters SET recorded_at = now() - interval '2 days'
	 WHERE dead_letter_id = (SELECT min(dead_letter_id) FROM streamview.dead_letters);
	UPDATE streamview.worker_errors SET occurred_at = now() - interval '2 days';
	INSERT INTO streamview.validations (view_name, version, run, "check", passed, validated_at, validated_by)
	VALUES ('mon_n', 1, 1, 'old run', true, now() - interval '3 days', 'test'),
	       ('mon_n', 1, 2, 'latest run, old too', true, now() - interval '2 days', 'test');
	INSERT INTO streamview.offset_marks (source_id, partition, next_offset, max_event_time)
	SELECT source_id, 0, o, now() - interval '10 days' + (o - 1000) * interval '1 hour'
	  FROM streamview.sources, generate_series(1000, 1002) o;
});
my $history = q{SELECT (SELECT count(*) FROM streamview.dead_letters) || ' ' || (SELECT count(*) FROM streamview.worker_errors)
  || ' ' || (SELECT string_agg("check", ',') FROM streamview.validations WHERE view_name = 'mon_n')
  || ' ' || (SELECT string_agg(next_offset::text, ',' ORDER BY next_offset) FROM streamview.offset_marks WHERE next_offset >= 1000)};
is($node->safe_psql('postgres', $history), '2 1 old run,latest run, old too 1000,1001,1002',
	'the history before retention: 2 dead letters, 1 worker error, 2 validation runs, 3 old marks');
$node->append_conf('postgresql.conf', "streamview.dead_letter_retention = '1d'\n"
	  . "streamview.worker_error_retention = '1d'\nstreamview.validation_retention = '1d'\n"
	  . "streamview.offset_mark_retention = '1d'\n");
$node->reload;
ok(wait_for($node, $history, '1 0 latest run, old too 1002'),
	'after a reload the launcher applies retention, keeping the latest validation run and the newest mark')
  or diag($node->safe_psql('postgres', $history));
broker_stop($broker);
$node->stop;
done_testing();
