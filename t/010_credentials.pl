# Wrong credentials, on a real broker: Apache Kafka 0.9.0.1 with an SSL
# listener that requires a client certificate (test/bin/kafka09.sh --ssl).
# A source whose certificate the broker trusts reads exactly.  A source
# whose certificate is signed by a CA the broker does not trust shows the
# handshake failure in streamview.status.error for as long as it lasts
# (sampled every second), consumes nothing, records it once in
# worker_errors, keeps retrying without flooding the log, and quotes no
# certificate or key.  When the operator adds its CA to the broker's
# truststore, it recovers by itself: every message is read, once.
# Both sources belong to a role that is not a superuser and pass their
# certificates inline (ssl.ca.pem, ssl.certificate.pem, ssl.key.pem).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use JSON::PP;
use StreamViewTest;

my $P     = 2;
my $kafka = kafka09_start('k010', { creds => $P }, ssl => 1);
my $node  = new_node('n010', batch_size => 50);
my $S     = $kafka->{ssl_addr};
my $json  = JSON::PP->new->canonical;

# A role that is not a superuser, with the README's grants.  Its statements
# carry private keys: they stay out of the log (log_statement = all in
# TAP nodes), so that the whole log can be searched for them below.
$node->safe_psql('postgres', q{
	CREATE ROLE streamer LOGIN;
	ALTER ROLE streamer SET log_statement = 'none';
	CREATE SCHEMA streamer AUTHORIZATION streamer;
	DO $$
	DECLARE f regprocedure;
	BEGIN
		FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
		          WHERE p.pronamespace = 'streamview'::regnamespace
		            AND p.proname !~ '^_' AND p.prokind = 'f'
		            AND NOT has_function_privilege('public', p.oid, 'EXECUTE')
		LOOP
			EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO streamer', f);
		END LOOP;
	END $$;
});

sub as_streamer
{
	return $node->safe_psql('postgres', $_[0], extra_params => [ '-U', 'streamer' ]);
}

sub create_ssl_source
{
	my ($name, $who) = @_;
	my $opts = $json->encode(kafka09_ssl_options($kafka, $who));
	as_streamer(qq{
		SELECT streamview.create_source('$name', '$S', 'creds', '{"ts":"timestamptz","k":"text"}', 'ts',
		                                options => '$opts');
		SELECT streamview.create_view('streamer.${name}_n', \$\$
		  SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS n FROM $name GROUP BY 1, 2 \$\$);
	});
	return;
}

# Counts per minute and key, of everything sent (over PLAINTEXT, with kcat).
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
		push @m, [ $i % $P, $k, $json->encode({ ts => $ts, k => $k }) ];
	}
	produce($kafka, 'creds', \@m);
	return;
}

sub view_is_exact
{
	my ($view, $label) = @_;
	my %got = map { ("$_->[0] $_->[1]" => $_->[2]) } @{ query_rows($node,
		"SELECT window_start, k, n FROM streamer.$view ORDER BY 1, 2") };
	is_deeply(\%got, \%expected, "$label: the view equals the events sent ($sent)");
	is($node->safe_psql('postgres', qq{SELECT consumed = applied FROM streamview.status WHERE view_name = '$view'}),
		't', "$label: every message applied once");
	return;
}

sub error_of
{
	my ($view) = @_;
	return $node->safe_psql('postgres',
		qq{SELECT coalesce(error, '') FROM streamview.status WHERE view_name = '$view'});
}

# Pieces of every certificate and key the test made: no log line, error or
# status may contain one.
my @secrets;
for my $pem ($kafka->{ssl}{ca}, map { @{ $kafka->{ssl}{$_} }{qw(cert key)} } qw(good rogue))
{
	push @secrets, map { substr($_, 0, 24) } grep { !/^-----/ && length($_) >= 24 } split /\n/, $pem;
}
ok(@secrets > 40, 'the test knows its certificates and keys (' . scalar(@secrets) . ' pieces)');
sub leaks
{
	my ($text) = @_;
	return grep { /-----BEGIN/ || do { my $l = $_; grep { index($l, $_) >= 0 } @secrets } }
	  split /\n/, $text;
}
my $one_line = (split /\n/, $kafka->{ssl}{rogue}{key})[5];
is(scalar(leaks("LOG:  something $one_line something")), 1, 'and finds a line of a key quoted in a text');

######################################################################
# 1. The trusted certificate reads exactly.
######################################################################
send_events(300);
create_ssl_source('trusted', 'good');
ok(wait_consumed($node, 'trusted_n', 300), 'a source with a certificate the broker trusts reads over SSL');
view_is_exact('trusted_n', 'trusted certificate');
is(error_of('trusted_n'), '', 'and shows no error');

######################################################################
# 2. A certificate signed by a CA the broker does not trust.
######################################################################
my $log_offset = -s $node->logfile;
create_ssl_source('rogue', 'rogue');
my $t0 = time;
ok(wait_for($node, q{SELECT error LIKE '%SSL handshake failed%' FROM streamview.status WHERE view_name = 'rogue_n'}),
	'an untrusted certificate shows in streamview.status: the SSL handshake failed');
my $shown_s = time - $t0;
my $error = error_of('rogue_n');
note sprintf('status.error, shown %.1f s after the source was created: %s', $shown_s, $error);
like($error, qr/client SSL authentication|certificate/, 'and it points at the client certificate');
my $rows_shown = $node->safe_psql('postgres', q{SELECT count(*) FROM streamview.worker_errors WHERE source_name = 'rogue'});

# 15 s of retries (librdkafka tries again about once a second)
send_events(100);    # sent while the source cannot read
my (@samples, @consumed);
for (1 .. 15)
{
	usleep(1_000_000);
	push @samples, error_of('rogue_n');
	push @consumed, $node->safe_psql('postgres',
		q{SELECT coalesce(consumed, 0) + (SELECT count(*) FROM streamer.rogue_n)
		    FROM streamview.status WHERE view_name = 'rogue_n'});
}
my $span_s = time - $t0;
is(scalar(grep { $_ eq '' } @samples), 0,
	'status.error shows the failure in each of 15 samples, a second apart')
  or diag(explain(\@samples));
# one failure, one text: not what changes at each retry (the time it took,
# how many were suppressed, another wording of the same rejection), nor
# "1/1 brokers are down" instead of the cause
is_deeply([ sort keys %{ { map { ($_ => 1) } $error, @samples } } ], [$error],
	'and the same text in every sample')
  or diag(explain(\@samples));
is(scalar(grep { $_ ne '0' } @consumed), 0, 'and nothing is consumed meanwhile')
  or diag(explain(\@consumed));

my $rows = query_rows($node, q{SELECT message FROM streamview.worker_errors WHERE source_name = 'rogue' ORDER BY 1});
note sprintf('worker_errors: %d rows in %.0f s', scalar @$rows, $span_s);
is(scalar(grep { $_->[0] =~ /SSL handshake failed/ } @$rows), 1, 'worker_errors records the handshake failure once')
  or diag(explain($rows));
is(scalar @$rows - $rows_shown, 0, 'and not again at each retry')
  or diag(explain($rows));

# The server log since the source was created, but for the test's own
# statements: the first report of the failure, then what the retries add.
my @lines = grep { !/ (?:LOG|ERROR):  statement: / && !/^\s/ } split /\n/,
  slurp_file($node->logfile, $log_offset);
sub log_time { my ($h, $m, $s) = $_[0] =~ / (\d\d):(\d\d):(\d\d\.\d+) / or return 0; return $h * 3600 + $m * 60 + $s }
my $first = @lines ? log_time($lines[0]) : 0;
my @first_report = grep { log_time($_) - $first < 2 } @lines;
my $later = @lines - @first_report;
my $later_s = $span_s - $shown_s - 2;
note sprintf('log: %d lines in %.0f s (%.1f a minute): %d when the failure began, then %d in %.0f s',
	scalar @lines, $span_s, @lines / ($span_s / 60), scalar @first_report, $later, $later_s);
note "log: $_" for @lines;
cmp_ok(scalar @first_report, '<=', 8, 'the failure is logged in a few lines (at most 4, with their CONTEXT)')
  or diag(join("\n", @first_report));
cmp_ok($later / ($later_s / 60), '<=', 10,
	sprintf('no log flood: then the retries add %d lines in %.0f s', $later, $later_s))
  or diag(join("\n", @lines));

######################################################################
# 3. The operator adds the client's CA to the broker's truststore: the
# source recovers by itself.
######################################################################
my $pid = worker_pids($node)->{rogue};
my $t_restart = time;
kafka09_trust($kafka, 'rogue');    # returns once the broker serves the good client again
my $t_trust = time;
send_events(100);
ok(wait_consumed($node, 'rogue_n', $sent), 'once its CA is trusted, the source reads by itself');
note sprintf('recovered %.1f s after the broker, restarted with the CA in its truststore (%.1f s), was back',
	time - $t_trust, $t_trust - $t_restart);
ok(wait_for($node, q{SELECT error IS NULL FROM streamview.status WHERE view_name = 'rogue_n'}),
	'and the error clears');
view_is_exact('rogue_n', 'after its CA was trusted');
ok(wait_consumed($node, 'trusted_n', $sent), 'the trusted source goes on after the broker restarted');
view_is_exact('trusted_n', 'trusted certificate, at the end');
note 'rogue worker ' . ($pid // 'none') . ' before, ' . (worker_pids($node)->{rogue} // 'none') . ' after';

######################################################################
# 4. No certificate or key anywhere it could be read.
######################################################################
my @leaked = (leaks(slurp_file($node->logfile)),
	leaks($node->safe_psql('postgres', q{SELECT string_agg(concat_ws(' ', message, detail), E'\n') FROM streamview.worker_errors})),
	leaks($node->safe_psql('postgres', q{SELECT string_agg(coalesce(error, ''), E'\n') FROM streamview.status})));
is(scalar @leaked, 0, 'no certificate or key in the server log, worker_errors or status')
  or diag(join("\n", @leaked[ 0 .. ($#leaked > 9 ? 9 : $#leaked) ]));

$node->stop;
broker_stop($kafka);
done_testing();
