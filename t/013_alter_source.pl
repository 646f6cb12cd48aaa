# alter_source on running sources, against a broker.  A source created with
# a wrong broker address shows the error and reads nothing; alter_source
# with the right brokers makes it read everything, once, and the error
# clears.  Options changed three times while the worker has messages to
# read, and once while a rebuild replays, leave the view and the rebuild
# exact: each worker stops before it applies anything with the old
# settings and the next one reads on from the stored offsets.  max_future
# changed: what was read before keeps its dead letters, what comes after
# is read with the new bound.  The passwords given to create_source and
# alter_source (by a role whose statements are not logged) are nowhere in
# the server log, worker errors, pg_stat_activity, the change history or
# what other roles read.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use StreamViewTest;

my $P      = 2;
my $broker = broker_start('b013', { moved => $P });
# small batches: a few hundred messages keep the worker busy for a while
my $node   = new_node('n013', batch_size => 5);
my $B      = $broker->{addr};
my $json   = JSON::PP->new->canonical;
my $log_start = -s $node->logfile;

# A role that is not a superuser owns the source; its statements carry
# passwords and stay out of the log (log_statement = all in TAP nodes), so
# that the whole log can be searched for them below.
$node->safe_psql('postgres', q{
	CREATE ROLE streamer LOGIN;
	ALTER ROLE streamer SET log_statement = 'none';
	CREATE SCHEMA streamer AUTHORIZATION streamer;
	GRANT EXECUTE ON FUNCTION
	  streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text, text, text, int, text, text, text),
	  streamview.alter_source(text, text, jsonb, text, text, jsonb, text, text, text, text, int, jsonb, text),
	  streamview.create_view(text, text, text),
	  streamview.rebuild(text, text, text, bigint, bool),
	  streamview.wait_for(text, int, interval) TO streamer;
	CREATE ROLE onlooker LOGIN;
});
sub as_role
{
	my ($role, $sql) = @_;
	return $node->safe_psql('postgres', $sql, extra_params => [ '-U', $role ]);
}
sub as_streamer { return as_role('streamer', $_[0]) }
sub options_json { return $json->encode({ 'session.timeout.ms' => '6000', %{ $broker->{options} }, @_ }) }

# The oracle: what was sent, counted per minute (epoch seconds) and key.
# Event times rise by a second per message, so none is ever too late.
my (%expected, $sent);
my $base_ms = 1_714_564_800_000;    # 2024-05-01 12:00 UTC
sub send_events
{
	my ($n) = @_;
	my @m;
	for (1 .. $n)
	{
		my $i  = $sent++;
		my $ms = $base_ms + $i * 1000;
		my $k  = 'k' . ($i % 3);
		$expected{ int($ms / 60_000) * 60 . " $k" }++;
		push @m, [ $i % $P, $k, $json->encode({ ts => $ms, k => $k }) ];
	}
	produce($broker, 'moved', \@m);
	return;
}

# The view's rows (but the far-future key "f" of the last part) equal the
# oracle, and the ledger says every message was applied once.
sub view_is_exact
{
	my ($label, $dead) = @_;
	$dead //= 0;
	my %got = map { ("$_->[0] $_->[1]" => $_->[2]) } @{ query_rows($node,
		q{SELECT extract(epoch FROM window_start)::bigint, k, n FROM streamer.moved_n WHERE k <> 'f'}) };
	is_deeply(\%got, \%expected, "$label: the view equals the events sent ($sent)");
	is($node->safe_psql('postgres', q{
		SELECT consumed || ' ' || applied || ' ' || duplicates || ' ' || too_late || ' ' || dead_lettered
		  FROM streamview.status WHERE view_name = 'moved_n' AND is_live}),
		"$sent " . ($sent - $dead) . " 0 0 $dead",
		"$label: consumed, applied, duplicates, too_late, dead_lettered");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM streamview.partitions WHERE NOT balanced}),
		'0', "$label: every partition's ledger balances");
	return;
}

sub consumed
{
	return $node->safe_psql('postgres',
		q{SELECT coalesce((SELECT consumed FROM streamview.status WHERE view_name = 'moved_n' AND is_live), 0)});
}

# A worker of the given kind other than $pid serves the source.
sub new_worker
{
	my ($kind, $pid) = @_;
	return wait_for($node, qq{SELECT count(*) = 1 FROM pg_stat_activity
	                          WHERE backend_type = 'pg_streamview $kind' AND pid <> $pid});
}
sub worker_of
{
	my ($kind) = @_;
	return $node->safe_psql('postgres',
		qq{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_streamview $kind'});
}

######################################################################
# 1. A wrong broker address, mended.
######################################################################
send_events(300);
as_streamer(qq{
	SELECT streamview.create_source('moved', '127.0.0.1:9', 'moved', '{"ts":"timestamptz","k":"text"}', 'ts',
	       options => '${\ options_json('sasl.username' => 'svc', 'sasl.password' => 'SECRET-FIRST-13') }');
	SELECT streamview.create_view('streamer.moved_n', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS n FROM moved GROUP BY 1, 2 \$\$);
});
ok(wait_for($node, q{SELECT error IS NOT NULL FROM streamview.status WHERE view_name = 'moved_n'}),
	'a source with a wrong broker address shows the error');
note 'status.error: ' . $node->safe_psql('postgres', q{SELECT error FROM streamview.status WHERE view_name = 'moved_n'});
is(consumed(), '0', 'and reads nothing');
my $pid = worker_pid($node, 'moved');
ok($pid, 'its worker runs meanwhile');

my $change = as_streamer(qq{SELECT streamview.alter_source('moved', brokers => '$B')});
like($change, qr/^\d+$/, "alter_source(brokers => the right one) returns the change's id ($change)");
ok(wait_consumed($node, 'moved_n', 300), 'the source then reads everything');
ok(wait_for($node, q{SELECT error IS NULL FROM streamview.status WHERE view_name = 'moved_n'}),
	'and the error clears');
ok(new_worker('source', $pid), 'a new worker, with the new brokers');
view_is_exact('after the brokers were mended');
cmp_ok($node->safe_psql('postgres', q{SELECT count(*) FROM streamview.worker_errors WHERE source_name = 'moved'}),
	'>=', 1, 'worker_errors keeps what went wrong');

######################################################################
# 2. Options changed while the worker has messages to read.
######################################################################
# Each change is made in a transaction that the test commits only once the
# round's messages are sent: alter_source holds the source's row FOR UPDATE
# until then, and the worker's batches, which lock it FOR KEY SHARE, wait,
# so the messages wait unread in the worker's queue when the change comes.
# (Sent first and the change made next, a worker that read the 600 before
# the test looked made the round one without messages in flight: under
# some timings all three were.)
my @in_flight;
for my $round (1 .. 3)
{
	$pid = worker_pid($node, 'moved');
	my $changer = $node->background_psql('postgres', extra_params => [ '-U', 'streamer' ]);
	my $id = $changer->query_safe(qq{
		BEGIN;
		SELECT streamview.alter_source('moved',
		       options => '${\ $json->encode({ 'sasl.password' => "SECRET-ROUND-$round-13", 'fetch.wait.max.ms' => 10 + $round }) }');});
	send_events(600);
	my $before = consumed();
	$changer->query_safe('COMMIT');
	$changer->quit;
	push @in_flight, $before < $sent;
	note "round $round: change $id committed after $before of $sent messages were read";
	ok(new_worker('source', $pid), "round $round: a new worker reads with the new options");
}
ok(wait_consumed($node, 'moved_n', $sent), 'every message is read');
view_is_exact('after three changes of options on a busy source');
is(join(' ', map { $_ ? 'yes' : 'no' } @in_flight), 'yes yes yes',
	'each change came while its round\'s messages were waiting to be read');
is($node->safe_psql('postgres', q{SELECT options->>'fetch.wait.max.ms' FROM streamview.sources WHERE name = 'moved'}),
	'13', 'the options are the last ones given');

######################################################################
# 3. Options changed while a rebuild replays: its worker picks them up
# too, and the rebuild equals the live version.
######################################################################
is(as_streamer(q{SELECT streamview.rebuild('moved_n', max_rate => 400)}), '2', 'a rebuild starts, throttled');
ok(wait_for($node, q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_streamview replay'}),
	'its replay worker runs');
my $replay = worker_of('replay');
$pid = worker_pid($node, 'moved');
as_streamer(q{SELECT streamview.alter_source('moved', options => '{"fetch.wait.max.ms":20}')});
is($node->safe_psql('postgres', q{SELECT state FROM streamview.versions WHERE view_name = 'moved_n' AND version = 2}),
	'replaying', 'the change came while it replayed');
ok(new_worker('replay', $replay), 'a new replay worker reads on with the new options');
ok(new_worker('source', $pid), 'and a new source worker');
is(as_streamer(q{SELECT streamview.wait_for('moved_n', 2, '120 seconds')}), 'caught_up', 'the rebuild catches up');
is(as_streamer(q{
	SELECT count(*) FROM ((TABLE streamer.moved_n_v1 EXCEPT ALL TABLE streamer.moved_n_v2)
	                      UNION ALL (TABLE streamer.moved_n_v2 EXCEPT ALL TABLE streamer.moved_n_v1)) d}), '0',
	'and equals the live version, row for row');
view_is_exact('after the rebuild');

######################################################################
# 4. max_future changed: events ten days ahead of their broker timestamp
# read before the change stay future_time dead letters; the ones produced
# after it are applied.  (Last: applied, they move the watermark ahead.)
######################################################################
my $far_ms = int($node->safe_psql('postgres', q{SELECT extract(epoch FROM now()) * 1000})) + 10 * 86_400_000;
my @far = map { [ $_ % $P, 'f', $json->encode({ ts => $far_ms, k => 'f' }) ] } 1 .. 10;
produce($broker, 'moved', \@far);
$sent += 10;
ok(wait_consumed($node, 'moved_n', $sent), 'ten events far ahead of the broker are read');
is($node->safe_psql('postgres', q{SELECT count(*) FROM streamview.dead_letters
                                   WHERE source_name = 'moved' AND reason = 'future_time'}),
	'10', 'as future_time dead letters (max_future is one day)');
as_streamer(q{SELECT streamview.alter_source('moved', max_future => 'infinity')});
produce($broker, 'moved', \@far);
$sent += 10;
ok(wait_consumed($node, 'moved_n', $sent), 'ten more are read after max_future was turned off');
is($node->safe_psql('postgres', q{SELECT sum(n) FROM streamer.moved_n WHERE k = 'f'}), '10',
	'those are applied');
is($node->safe_psql('postgres', q{SELECT count(*) FROM streamview.dead_letters
                                   WHERE source_name = 'moved' AND reason = 'future_time'}),
	'10', 'and the dead letters of the first ten stay');
view_is_exact('at the end', 10);

######################################################################
# 5. The passwords, and how the workers stopped.
######################################################################
my $log = slurp_file($node->logfile, $log_start);
my @leaks = grep { /SECRET-/ } split /\n/, $log;
is(scalar @leaks, 0, 'no password anywhere in the server log')
  or diag(join("\n", @leaks[ 0 .. ($#leaks > 9 ? 9 : $#leaks) ]));
is($node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM streamview.worker_errors WHERE concat(message, detail) LIKE '%SECRET-%')
	     + (SELECT count(*) FROM streamview.source_changes WHERE changes::text LIKE '%SECRET-%')
	     + (SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%SECRET-%' AND pid <> pg_backend_pid())}),
	'0', 'nor in worker_errors, the change history or pg_stat_activity');
is(as_streamer(q{SELECT string_agg(c.k, ' ' ORDER BY c.change_id)
                   FROM (SELECT change_id, jsonb_object_keys(changes) AS k FROM streamview.source_changes) c}),
	'brokers options options options options max_future', 'the owner reads every change');
is(as_streamer(q{SELECT count(*) FROM streamview.source_changes
                  WHERE changes->'options'->'sasl.password' = '{"old":"********","new":"********"}'}),
	'3', 'the password changes are there, without the passwords');
is(as_role('onlooker', q{SELECT count(*) FROM streamview.source_changes}), '0',
	'another role reads none of them');
is(as_role('onlooker', q{SELECT coalesce(options::text, 'hidden') FROM streamview.source_list}), 'hidden',
	'nor the options');
is(as_streamer(q{SELECT options->>'sasl.password' FROM streamview.source_list}), 'SECRET-ROUND-3-13',
	'the owner reads the current password (so the searches above could find it)');

my @stops = $log =~ /stopping: its source was changed/g;
is(scalar @stops, 7, 'each change stopped the source worker (and once the replay worker) between batches');
my @fatal = grep { /FATAL:/ } split /\n/, $log;
is(scalar @fatal, 0, 'with no FATAL line') or diag(join("\n", @fatal));
unlike($log, qr/restarting in [\d.]+ s/, 'and the launcher restarted them at once, not after a back-off');

$node->stop;
broker_stop($broker);
done_testing();
