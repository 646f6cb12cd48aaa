# Health, in time, not only in messages: streamview.status.health goes
# through ok, lagging, stalled, error and paused as a DBA would see them
# happen; lag_time is now minus the broker timestamp of the messages the
# test produced (it knows when it produced them); watermark_delay is now
# minus the watermark the test computes from the event times it produced;
# events_per_second and last_batch_duration follow the batches; held_back_by
# names the partition the watermark waits for, also one that never had a
# message (listed in streamview.partitions before its first message), and
# leaves out idle partitions (idle_timeout) as the watermark does.  The
# rules are in docs/monitoring.md ("Health").
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use JSON::PP;
use StreamViewTest;

my $broker = broker_start('b013', { h => 3, hidle => 2, lagt => 1 });
my $node   = new_node('n013', batch_size => 5,
	conf => "streamview.lag_threshold = 2\nstreamview.stall_threshold = 5\n");
my $B      = $broker->{addr};
my $json   = JSON::PP->new->canonical;

# A message of a source with columns ts and k.
sub ev
{
	my ($p, $k, $ts) = @_;
	return [ $p, $k, $json->encode({ ts => $ts, k => $k }) ];
}

sub sql { my ($query) = @_; return $node->safe_psql('postgres', $query) }

# The query of a version's health.
sub health
{
	my ($view, $version) = @_;
	$version //= 1;
	return "SELECT health FROM streamview.status WHERE view_name = '$view' AND version = $version";
}

# Poll $sql (one row, fields separated by |) until $accept->(@fields) holds;
# returns the fields of that row, or the last ones seen (undef if none).
sub poll_row
{
	my ($sql, $accept, $timeout) = @_;
	my $deadline = time + ($timeout // 60);
	my @f;
	while (time < $deadline)
	{
		@f = split /\|/, sql($sql), -1;
		return @f if @f && $accept->(@f);
		usleep(100_000);
	}
	return @f;
}

my $view_sql = sub {
	my ($src, $k) = @_;
	return "SELECT streamview.tumble(ts, '1 minute') AS window_start, $k AS k, count(*) AS n "
	  . "FROM $src GROUP BY 1, 2";
};
sql(qq{
	SELECT streamview.create_source('h', '$B', 'h', '{"ts":"timestamptz","k":"text"}', 'ts',
	                                max_out_of_orderness => '5 seconds');
	SELECT streamview.create_view('public.h_n', \$\$ ${\ $view_sql->('h', 'k')} \$\$);
	SELECT streamview.create_source('hidle', '$B', 'hidle', '{"ts":"timestamptz","k":"text"}', 'ts',
	                                max_out_of_orderness => '5 seconds', idle_timeout => '4 seconds');
	SELECT streamview.create_view('public.hidle_n', \$\$ ${\ $view_sql->('hidle', 'k')} \$\$);
	-- a view that takes 0.25 s per event: a batch of 5 takes over a second
	CREATE FUNCTION public.slow_k(k text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS \$f\$
	BEGIN PERFORM pg_sleep(0.25); RETURN k; END \$f\$;
	SELECT streamview.create_source('lagt', '$B', 'lagt', '{"ts":"timestamptz","k":"text"}', 'ts');
	SELECT streamview.create_view('public.lagt_n', \$\$ ${\ $view_sql->('lagt', 'public.slow_k(k)')} \$\$);
	-- nothing listens there
	SELECT streamview.create_source('broken', '127.0.0.1:1', 'broken', '{"ts":"timestamptz","k":"text"}', 'ts');
	SELECT streamview.create_view('public.broken_n', \$\$ ${\ $view_sql->('broken', 'k')} \$\$);
});

######################################################################
# 1. Caught up: ok, lag 0 in messages and in time.  Partition 2 of h never
# had a message: it is listed, and it holds the watermark back (NULL).
######################################################################
my %max_et;    # the oracle: per partition of h, the highest event time produced (epoch s)
my @h = map { ev($_ % 2, "k$_", sprintf('2024-05-01T12:00:%02dZ', 10 + $_)) } 0 .. 9;
for (@h) { my $t = $json->decode($_->[2])->{ts}; $max_et{ $_->[0] } = $t if !defined $max_et{ $_->[0] } || $t gt $max_et{ $_->[0] } }
produce($broker, 'h', \@h);
ok(wait_consumed($node, 'h_n', 10), 'h consumed its 10 messages');
ok(wait_for($node, health('h_n'), 'ok'), 'caught up: health is ok')
  or diag(sql('SELECT * FROM streamview.status; SELECT * FROM streamview.partitions'));
ok(wait_for($node, q{SELECT lag || ' ' || lag_time || ' ' || partitions FROM streamview.status WHERE view_name = 'h_n'},
		'0 00:00:00 3'), 'lag is 0 messages and 0 seconds, over the 3 partitions of the topic')
  or diag(sql('SELECT * FROM streamview.partitions'));
ok(wait_for($node, q{SELECT held_back_by = '{2}' FROM streamview.status WHERE view_name = 'h_n'}),
	'held_back_by names partition 2, which never had a message')
  or diag(sql('SELECT held_back_by FROM streamview.status'));
is(sql(q{SELECT concat_ws(' ', coalesce(next_offset::text, 'NULL'), coalesce(max_event_time::text, 'NULL'),
                        consumed, lag, lag_time, holds_watermark)
         FROM streamview.partitions WHERE view_name = 'h_n' AND partition = 2}),
	'NULL NULL 0 0 00:00:00 t',
	'streamview.partitions lists it: nothing read, no event time, caught up, holding the watermark');
is(sql(q{SELECT string_agg(partition::text, ',' ORDER BY partition) FROM streamview.partitions
        WHERE view_name = 'h_n' AND NOT holds_watermark}), '0,1', 'partitions 0 and 1 do not hold it');
is(sql(q{SELECT coalesce(watermark::text, 'NULL') || ' ' || coalesce(watermark_delay::text, 'NULL')
         FROM streamview.status WHERE view_name = 'h_n'}), 'NULL NULL',
	'so there is no watermark, and watermark_delay is NULL, not a misleading 0');

# Partition 2 gets events, later than those of partitions 0 and 1: the one
# with the lowest high mark holds the watermark now.
my @h2 = map { ev(2, "k2$_", sprintf('2024-05-01T12:00:%02dZ', 20 + $_)) } 0 .. 2;
$max_et{2} = '2024-05-01T12:00:22Z';
produce($broker, 'h', \@h2);
ok(wait_consumed($node, 'h_n', 13), 'h consumed the 3 messages of partition 2');
my ($min_p) = sort { $max_et{$a} cmp $max_et{$b} || $a <=> $b } keys %max_et;
my $wm = sql(qq{SELECT timestamptz '$max_et{$min_p}' - interval '5 seconds'});
ok(wait_for($node, qq{SELECT held_back_by = '{$min_p}' FROM streamview.status WHERE view_name = 'h_n'}),
	"held_back_by moves to partition $min_p, whose high mark is the lowest ($max_et{$min_p})")
  or diag(sql('SELECT * FROM streamview.partitions'));
is(sql(q{SELECT watermark || ' ' || (extract(epoch FROM watermark_delay) = extract(epoch FROM now()) - extract(epoch FROM watermark))
         FROM streamview.status WHERE view_name = 'h_n'}), "$wm true",
	"the watermark is its high mark minus 5 s ($wm), and watermark_delay is now minus it");

######################################################################
# 2. idle_timeout: idle partitions hold nothing back, as in the watermark.
######################################################################
ok(wait_for($node, q{SELECT count(*) = 2 FROM streamview.partitions WHERE view_name = 'hidle_n'}),
	'hidle: both partitions are listed before any message');
ok(wait_for($node, q{SELECT held_back_by = '{}' FROM streamview.status WHERE view_name = 'hidle_n'}),
	'idle for 4 s, neither partition holds the watermark back');
produce($broker, 'hidle', [ ev(0, 'a', '2024-05-01T13:00:30Z') ]);
ok(wait_for($node, q{SELECT held_back_by::text || ' ' || watermark FROM streamview.status WHERE view_name = 'hidle_n'},
		'{0} ' . sql(q{SELECT timestamptz '2024-05-01T13:00:25Z'})),
	'a message on partition 0: it holds the watermark (its event time minus 5 s); idle partition 1 does not');
ok(wait_for($node, q{SELECT held_back_by::text || ' ' || watermark FROM streamview.status WHERE view_name = 'hidle_n'},
		'{} ' . sql(q{SELECT timestamptz '2024-05-01T13:00:25Z'})),
	'once partition 0 is idle too, nothing holds it, and the watermark stays');

######################################################################
# 3. error: a source whose broker cannot be reached.
######################################################################
ok(wait_for($node, health('broken_n'), 'error'), 'an unreachable broker: health is error');
isnt(sql(q{SELECT error FROM streamview.status WHERE view_name = 'broken_n'}), '', 'and status.error says why');

######################################################################
# 4. lagging: 30 messages that the view applies at 4 per second.  lag_time
# is now minus the broker timestamp of the newest message applied, which
# kcat gave it while the test produced them.
######################################################################
ok(wait_for($node, health('lagt_n'), 'ok'), 'lagt: ok before anything arrives');
my $t0 = time;
produce($broker, 'lagt', [ map { ev(0, "k$_", sprintf('2024-05-01T14:00:%02dZ', $_)) } 0 .. 29 ]);
my $t1 = time;
my ($hl, $applied_at, $lag_s, $newest) = poll_row(q{
	SELECT s.health, extract(epoch FROM now()) - extract(epoch FROM s.lag_time), extract(epoch FROM s.lag_time),
	       extract(epoch FROM p.max_broker_time)
	  FROM streamview.status s JOIN streamview.partitions p USING (view_name, version)
	 WHERE s.view_name = 'lagt_n'}, sub { $_[0] eq 'lagging' });
is($hl, 'lagging', 'behind by more than streamview.lag_threshold (2 s) while it applies them: lagging');
ok($applied_at >= $t0 - 0.001 && $applied_at <= $t1 + 0.001,
	sprintf('now - lag_time (%.3f) is when the test produced them (%.3f .. %.3f)', $applied_at, $t0, $t1));
ok(abs($applied_at - $newest) < 0.001 && $lag_s > 2,
	"it is partitions.max_broker_time, and lag_time ($lag_s s) is past the threshold");
ok(wait_consumed($node, 'lagt_n', 30), 'lagt consumed all 30');
ok(wait_for($node, q{SELECT health || ' ' || lag_time FROM streamview.status WHERE view_name = 'lagt_n'},
		'ok 00:00:00'), 'caught up again: ok, lag_time 0');

######################################################################
# 5. A rebuild that replays at its max_rate is ok, not lagging (it is
# behind by design: streamview.rebuilds shows its progress) nor stalled.
######################################################################
is(sql(q{SELECT streamview.rebuild('lagt_n', max_rate => 4)}), '2', 'a rebuild of lagt_n at 4 events/s');
my ($st, $hr, $behind) = poll_row(q{
	SELECT state, health, lag_time > interval '2 seconds' FROM streamview.status
	 WHERE view_name = 'lagt_n' AND version = 2 AND consumed >= 8}, sub { 1 });
is("$st $hr $behind", 'replaying ok t', 'replaying, behind by more than the lag threshold, and ok');
ok(wait_for($node, q{SELECT state FROM streamview.status WHERE view_name = 'lagt_n' AND version = 2}, 'caught_up'),
	'the rebuild catches up');
sql(q{SELECT streamview.drop_version('lagt_n', 2)});
is(sql(q{SELECT state || ' ' || coalesce(health, 'NULL') FROM streamview.status WHERE view_name = 'lagt_n' AND version = 2}),
	'retired NULL', 'a retired version has no health (NULL)');

######################################################################
# 6. events_per_second and last_batch_duration.
######################################################################
ok(wait_for($node, q{SELECT events_per_second = 0 FROM streamview.status WHERE view_name = 'h_n'}),
	'h: no batch for 10 seconds, 0 events per second');
my $n = 200;
my $consumed = sql(q{SELECT consumed FROM streamview.status WHERE view_name = 'h_n'});
produce($broker, 'h', [ map { ev($_ % 3, "r$_", '2024-05-01T12:01:00Z') } 1 .. $n ]);
ok(wait_consumed($node, 'h_n', $consumed + $n), "h consumed $n more");
my ($eps, $dur_ok) = split /\|/, sql(q{SELECT events_per_second,
	last_batch_duration > interval '0' AND last_batch_duration < interval '10 seconds'
	FROM streamview.status WHERE view_name = 'h_n'});
ok($eps >= $n / 10 && $eps <= $n,
	"events_per_second ($eps) counts the $n messages over at most 10 seconds (between @{[$n / 10]} and $n)");
is($dur_ok, 't', 'last_batch_duration is the last batch\'s, above 0 and below 10 s');

######################################################################
# 7. stalled: a batch that cannot go on (a DBA holds a lock on the view's
# table) and, later, no worker at all (streamview.enabled = off) while
# messages wait.
######################################################################
my $table = sql(q{SELECT table_name FROM streamview.status WHERE view_name = 'h_n'});
my $locker = $node->background_psql('postgres');
$locker->query_safe("BEGIN; LOCK TABLE $table IN ACCESS EXCLUSIVE MODE;");
$consumed = sql(q{SELECT consumed FROM streamview.status WHERE view_name = 'h_n'});
produce($broker, 'h', [ ev(0, 'stuck', '2024-05-01T12:01:30Z') ]);
ok(wait_for($node, health('h_n'), 'stalled'),
	'its batch waits for a lock longer than streamview.stall_threshold (5 s): stalled');
is(sql(q{SELECT consumed FROM streamview.status WHERE view_name = 'h_n'}), $consumed, 'nothing was applied');
$locker->query_safe('COMMIT');
$locker->quit;
ok(wait_consumed($node, 'h_n', $consumed + 1) && wait_for($node, health('h_n'), 'ok'),
	'the lock released, the batch goes through: ok');

sql(q{ALTER SYSTEM SET streamview.enabled = off});
sql(q{SELECT pg_reload_conf()});
ok(wait_for($node, q{SELECT string_agg(view_name || ' ' || health, ', ' ORDER BY view_name) FROM streamview.status
                     WHERE version = 1}, 'broken_n error, h_n stalled, hidle_n stalled, lagt_n stalled'),
	'streamview.enabled = off: every version no worker serves is stalled (the broken one keeps its error)');
produce($broker, 'h', [ ev(1, 'off', '2024-05-01T12:01:40Z') ]);
sql(q{ALTER SYSTEM RESET streamview.enabled});
sql(q{SELECT pg_reload_conf()});
ok(wait_consumed($node, 'h_n', $consumed + 2) && wait_for($node, health('h_n'), 'ok'),
	'on again: the waiting message is applied, ok');

######################################################################
# 8. paused, until resumed.
######################################################################
sql(q{SELECT streamview.pause('h')});
is(sql(health('h_n')), 'paused', 'pause(): paused');
sql(q{SELECT streamview.resume('h')});
ok(wait_for($node, health('h_n'), 'ok'), 'resume(): ok again');

broker_stop($broker);
$node->stop;
done_testing();
