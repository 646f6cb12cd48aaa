# Deduplication by event_id across restarts, and the horizon that bounds it.
# The worker remembers the ids it applied in memory and stores each batch's
# in bulk with the batch: after PostgreSQL is stopped in immediate mode, and
# after the source worker is killed with SIGKILL, copies of ids applied
# before are still recognised as long as their event could still be applied
# (the lateness horizon), and ids past it are forgotten: deleted from
# streamview.seen_ids by the worker's housekeeping, and an id used again
# with a new time counts again.  The oracle: the rule of DESIGN.md, run
# over the messages this test sends, in Perl.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use StreamViewTest;

my $P        = 2;
my $OOO_MS   = 5_000;
my $LATE_MS  = 10_000;
my $BASE_MS  = 1_714_564_800_000;    # 2024-05-01T12:00:00Z

my $broker = broker_start('b023', { d => $P });
my $node   = new_node('n023', batch_size => 40);

$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('d', '$broker->{addr}', 'd',
	         '{"id":"text","k":"text","cents":"bigint","ts":"timestamptz"}', 'ts',
	         event_id => 'id', max_out_of_orderness => '5 seconds');
	SELECT streamview.create_view('public.dd', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS n, sum(cents) AS cents
	    FROM d GROUP BY 1, 2 \$\$, allowed_lateness => '10 seconds');
});

# The oracle: per partition, in offset order (each id is sent to one
# partition only, so partitions do not interleave).  An id is remembered
# while its event time is not below its partition's floor, max event time
# - max_out_of_orderness - allowed_lateness.
my (%max_ms, %seen_ms, %rows, %count, $sent);
sub classify
{
	my ($p, $id, $ts) = @_;
	my $floor = defined $max_ms{$p} ? $max_ms{$p} - $OOO_MS - $LATE_MS : undef;
	my $what;
	if (defined $seen_ms{$id} && (!defined $floor || $seen_ms{$id} >= $floor)) { $what = 'duplicates' }
	elsif (defined $floor && $ts < $floor) { $what = 'too_late' }
	else { $what = 'applied'; $seen_ms{$id} = $ts }
	$max_ms{$p} = $ts if !defined $max_ms{$p} || $ts > $max_ms{$p};
	$count{$what}++;
	return $what eq 'applied';
}

# Send events [id number, time in ms]: event n goes to partition n % P.
sub send_events
{
	my @m;
	for my $e (@_)
	{
		my ($n, $ms) = @$e;
		my ($p, $k, $cents) = ($n % $P, 'k' . ($n % 3), $n * 7 % 1000);
		if (classify($p, "e$n", $ms))
		{
			my $w = $ms - $ms % 60_000;
			$rows{"$w $k"}[0]++;
			$rows{"$w $k"}[1] += $cents;
		}
		push @m, [ $p, "e$n", sprintf('{"id":"e%d","k":"%s","cents":%d,"ts":%d}', $n, $k, $cents, $ms) ];
		$sent++;
	}
	produce($broker, 'd', \@m);
	return;
}

sub check
{
	my ($label) = @_;
	ok(wait_consumed($node, 'dd', $sent), "$label: the view consumed all $sent messages");
	my %got = map { my @f = split /\|/; ("$f[0] $f[1]" => [ $f[2], $f[3] ]) } split /\n/,
	  $node->safe_psql('postgres', q{
		SELECT (extract(epoch FROM window_start) * 1000)::int8, k, n, cents FROM dd});
	is_deeply(\%got, \%rows, "$label: each window counts each id once (" . scalar(keys %rows) . ' rows)');
	is($node->safe_psql('postgres', q{
		SELECT applied || ' ' || duplicates || ' ' || too_late FROM streamview.status WHERE view_name = 'dd'}),
		join(' ', map { $count{$_} // 0 } qw(applied duplicates too_late)),
		"$label: applied, duplicates and too_late as the oracle says");
	return;
}

# Event n at 500 ms per n: each partition moves by a second per event.
sub at { my ($n, $shift) = @_; return $BASE_MS + $n * 500 + ($shift // 0) }

# 1. 200 events, and copies of ten of them in the same stream
send_events(map { [ $_, at($_) ] } 1 .. 200);
send_events(map { [ $_, at($_) ] } 191 .. 200);
check('first events');

# 2. PostgreSQL stopped in immediate mode: the ids applied before are
# recognised after it: the last 40 sent again, with their own times (those
# within the horizon are duplicates, the older ones too late), and ten
# recent ones used with a new time (duplicates).
$node->stop('immediate');
$node->start;
send_events(map { [ $_, at($_) ] } 161 .. 200);
send_events(map { [ $_, at(201, $_) ] } 195 .. 200);
check('after an immediate stop');
cmp_ok($count{duplicates}, '>=', 20, "copies within the horizon were duplicates ($count{duplicates})");
cmp_ok($count{too_late}, '>=', 5, "older copies were too late ($count{too_late})");

# 3. the source worker killed with SIGKILL while a stream with copies of
# ids from the batches just before comes in
my $pid = worker_pid($node, 'd');
ok($pid, 'the source worker runs');
send_events(map { ([ $_, at($_) ], [ $_ - 3, at($_ - 3) ]) } 201 .. 300);
kill 'KILL', $pid;
ok(wait_for($node, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_streamview source' "
		  . "AND pid <> $pid"), 'a new worker replaced the killed one');
send_events(map { [ $_, at($_) ] } 281 .. 300);
check('after a SIGKILL');

# 4. the horizon: rows whose ids are all forgotten are deleted by the
# housekeeping, and an id forgotten counts again when it comes with a new
# time (e1 .. e10, 150 seconds behind the partitions' high marks).
ok(wait_for($node, q{
	SELECT count(*) = 0 FROM streamview.seen_ids s
	  JOIN streamview.offsets o USING (version_id, partition)
	 WHERE s.max_event_time < o.max_event_time - interval '15 seconds'}),
	'housekeeping deletes the rows whose ids are all past the horizon');
my $stored = $node->safe_psql('postgres', q{
	SELECT coalesce(sum(cardinality(event_id_hashes)), 0) FROM streamview.seen_ids});
cmp_ok($stored, '>', 0, "the ids within the horizon stay stored ($stored)");
# within 15 s of event time a partition has 15 ids; a row may hold older ids with newer ones
cmp_ok($stored, '<=', $P * (15 + 40), 'and no more than a batch beyond them');
is($node->safe_psql('postgres', q{
	SELECT string_agg(id, ',' ORDER BY id) FROM unnest(ARRAY['e1', 'e299', 'e300']) AS id
	 WHERE EXISTS (SELECT FROM streamview.seen_ids s
	                WHERE pg_catalog.sha256(convert_to(id, 'UTF8')) = ANY (s.event_id_hashes))}),
	'e299,e300', 'a DBA finds whether an id is remembered: recent ones are, e1 is not');
send_events(map { [ $_, at(300, $_) ] } 1 .. 10);
check('ids past the horizon, used again');

broker_stop($broker);
$node->stop;
done_testing();
