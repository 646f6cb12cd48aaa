# Windows on a time zone's wall clock, end to end: stream views whose
# windows are local days in Europe/Paris (from midnight, and from 06:00),
# calendar months in America/New_York and a hop of one day every six hours
# in Australia/Sydney, over seven months of a messy stream (late, too-late,
# duplicate and bad messages, instants on and around local midnights and
# changes of clocks, a leap day), on a 3-partition topic.
#
# The oracle: the Perl model (StreamViewTest/Oracle.pm) decides which
# events count, and PostgreSQL's own date_trunc and date_bin (plain SQL over
# the produced event times, no function of the extension) which windows
# each event falls in; every row (window_start, window_end, keys,
# aggregates, is_final), counter, too-late dead letter and the watermark
# must equal it.  Then rebuilds give identical tables, from the start of
# the log and from a point in time, and a point in time whose month is not
# final yet is refused.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use POSIX ();
use StreamViewTest;

my $P    = 3;
my $MOOO = 3_600_000;    # max_out_of_orderness, ms

my $broker = broker_start('b013', { visits => $P });
# The session's time zone is far from every view's: windows must not
# depend on it (workers pin UTC; the compiler reads only the arguments).
my $node = new_node('n013', batch_size => 250, conf => "timezone = 'Pacific/Chatham'\n");

sub sql { return $node->safe_psql('postgres', $_[0]) }

# The windows of every event time, from plain SQL over the times (filled
# in below, before the oracle reads the stream).
my %windows;    # view name -> event time (us) -> [[start, end], ...]
sub spans
{
	my ($view) = @_;
	return sub {
		my ($t) = @_;
		my $w = $windows{$view}{$t} or die "no oracle windows for $view at $t";
		return @$w;
	};
}

my %columns = (event_id => 'text', shop => 'text', cents => 'bigint', ts => 'timestamptz');
my @views = (
	test_view(
		source      => 'visits',
		name        => 'daily_paris',
		lateness_ms => 6 * 3_600_000,
		window      => [ 'spans', spans('daily_paris') ],
		window_sql  => "streamview.tumble(ts, '1 day', 'Europe/Paris')",
		keys        => [qw(shop)],
		aggs        => [ [ n => 'count_star' ], [ cents => 'sum', 'cents' ], [ most => 'max', 'cents' ] ],
	),
	test_view(
		source      => 'visits',
		name        => 'daily_paris_06',
		lateness_ms => 0,
		window      => [ 'spans', spans('daily_paris_06') ],
		window_sql  => "streamview.tumble(ts, '1 day', 'Europe/Paris', '1970-01-01 06:00')",
		keys        => [],
		aggs        => [ [ n => 'count_star' ] ],
	),
	test_view(
		source      => 'visits',
		name        => 'monthly_ny',
		lateness_ms => 86_400_000,
		window      => [ 'spans', spans('monthly_ny') ],
		window_sql  => "streamview.tumble(ts, interval '1 month', time_zone => 'America/New_York')",
		keys        => [qw(shop)],
		aggs        => [ [ n => 'count_star' ], [ avg_cents => 'avg', 'cents' ] ],
	),
	test_view(
		source      => 'visits',
		name        => 'hop_sydney',
		lateness_ms => 2 * 3_600_000,
		window      => [ 'spans', spans('hop_sydney') ],
		window_sql  => "streamview.hop(ts, '1 day', '6 hours', 'Australia/Sydney')",
		keys        => [],
		aggs        => [ [ n => 'count_star' ], [ least_cents => 'min', 'cents' ] ],
	),
);

# ---------------------------------------------------------------- the stream

# Instants worth an event of their own: local midnights and 06:00 in the
# three zones, and each change of clocks, with the microseconds around
# them (generation input only; the oracle computes windows separately).
my @special = map { $_->[0] } @{ query_rows($node, q{
	SELECT DISTINCT (extract(epoch FROM i) * 1000000)::bigint + e
	  FROM (SELECT (d + h) AT TIME ZONE z AS i
	          FROM generate_series('2023-09-26'::timestamp, '2024-04-20', '1 day') d,
	               (VALUES ('Europe/Paris'), ('America/New_York'), ('Australia/Sydney')) zz(z),
	               (VALUES (interval '0'), (interval '6 hours')) hh(h)
	        UNION ALL
	        SELECT c::timestamptz FROM (VALUES ('2023-10-01 16:00:00+00'), ('2023-10-29 01:00:00+00'),
	               ('2023-11-05 06:00:00+00'), ('2024-03-10 07:00:00+00'), ('2024-03-31 01:00:00+00'),
	               ('2024-04-06 16:00:00+00')) cc(c)) s,
	       (VALUES (-1), (0), (1)) ee(e)
	 ORDER BY 1}) };
cmp_ok(scalar @special, '>', 3000, 'instants on and around local midnights and changes of clocks: ' . scalar @special);

# ISO-8601 with microseconds, at a UTC offset (minutes)
sub iso
{
	my ($us, $off) = @_;
	my $local = $us + $off * 60_000_000;
	my $secs  = POSIX::floor($local / 1_000_000);
	my $frac  = $local - $secs * 1_000_000;
	my @t     = gmtime($secs);
	my $s = sprintf('%04d-%02d-%02dT%02d:%02d:%02d.%06d', $t[5] + 1900, $t[4] + 1, @t[ 3, 2, 1, 0 ], $frac);
	return $s . 'Z' if $off == 0;
	return $s . sprintf('%s%02d:%02d', $off < 0 ? '-' : '+', int(abs($off) / 60), abs($off) % 60);
}

srand(20240331);
my $enc = JSON::PP->new->canonical;
my (@msgs, %times);
my $start_us = 1_695_600_000_000_000;    # 2023-09-25 00:00 UTC
my $end_us   = 1_713_571_200_000_000;    # 2024-04-20 00:00 UTC
my $seq      = 0;
for my $p (0 .. $P - 1)
{
	my $clock  = $start_us + $p * 17 * 60_000_000;
	my $next_s = 0;    # the next special instant for this partition
	my @recent;
	while ($clock < $end_us)
	{
		my $prev = $clock;
		$clock += (10 + int(rand(160))) * 60_000_000 + int(rand(1_000_000));
		my @times;
		# the special instants this partition passed (each partition gets a third)
		while ($next_s < @special && $special[$next_s] <= $clock)
		{
			push @times, $special[$next_s] if $special[$next_s] > $prev && $next_s % $P == $p;
			$next_s++;
		}
		my $r = rand();
		if    ($r < 0.05) { push @times, $clock - $MOOO * 1000 - int(rand(30 * 3_600_000_000)) }    # late
		elsif ($r < 0.07) { push @times, $clock - $MOOO * 1000 - 3 * 86_400_000_000 - int(rand(86_400_000_000)) }
		push @times, $clock - int(rand($MOOO * 500));
		for my $t (@times)
		{
			my %ev = (shop => 's' . int(rand(3)), cents => int(rand(10_000)) - 100, event_id => 'e' . $seq++);
			delete $ev{event_id} if rand() < 0.03;
			my $k = rand();
			$ev{ts} = $k < 0.2 ? int($t / 1000) * 1 : iso($t, (0, 120, -300, 330, 60)[ int(rand(5)) ]);
			$t = int($t / 1000) * 1000 if $k < 0.2;    # epoch milliseconds
			$times{$t} = 1;
			my $v = $enc->encode(\%ev);
			push @msgs, [ $p, $ev{shop}, $v ];
			push @recent, $v;
			shift @recent if @recent > 3;
		}
		if (rand() < 0.03) { push @msgs, [ $p, 'dup', $recent[ int(rand(@recent)) ] ] }    # same event_id
		if (rand() < 0.02)
		{
			push @msgs, [ $p, 'bad', (q({"ts":), q({"shop":"s1","cents":1}), '[1,2]')[ int(rand(3)) ] ];
		}
	}
}
note 'messages: ' . scalar(@msgs) . ', distinct event times: ' . scalar(keys %times);

# ---------------------------------------------------------------- the oracle's windows

# Plain SQL over the event times: PostgreSQL's date_trunc and date_bin, on
# each zone's wall clock, converted back with AT TIME ZONE.
sql('CREATE TABLE oracle_times (t bigint PRIMARY KEY)');
my @t = sort { $a <=> $b } keys %times;
while (my @chunk = splice(@t, 0, 5000))
{
	sql('INSERT INTO oracle_times VALUES ' . join(',', map { "($_)" } @chunk));
}
my $rows = query_rows($node, q{
	WITH x AS (SELECT t, timestamptz 'epoch' + t * interval '1 microsecond' AS ts FROM oracle_times),
	w AS (
	    SELECT 'daily_paris' AS v, t, date_trunc('day', ts, 'Europe/Paris') AS s,
	           (date_trunc('day', ts AT TIME ZONE 'Europe/Paris') + interval '1 day') AT TIME ZONE 'Europe/Paris' AS e
	      FROM x
	    UNION ALL
	    SELECT 'daily_paris_06', t,
	           (date_trunc('day', (ts AT TIME ZONE 'Europe/Paris') - interval '6 hours') + interval '6 hours')
	             AT TIME ZONE 'Europe/Paris',
	           (date_trunc('day', (ts AT TIME ZONE 'Europe/Paris') - interval '6 hours') + interval '30 hours')
	             AT TIME ZONE 'Europe/Paris'
	      FROM x
	    UNION ALL
	    SELECT 'monthly_ny', t, date_trunc('month', ts, 'America/New_York'),
	           (date_trunc('month', ts AT TIME ZONE 'America/New_York') + interval '1 month')
	             AT TIME ZONE 'America/New_York'
	      FROM x
	    UNION ALL
	    SELECT 'hop_sydney', t, l AT TIME ZONE 'Australia/Sydney', (l + interval '1 day') AT TIME ZONE 'Australia/Sydney'
	      FROM x, LATERAL (SELECT date_bin('6 hours', ts AT TIME ZONE 'Australia/Sydney', '1970-01-01')
	                              - k * interval '6 hours' AS l FROM generate_series(0, 3) k) h)
	SELECT v, t, (extract(epoch FROM s) * 1000000)::bigint, (extract(epoch FROM e) * 1000000)::bigint
	  FROM w ORDER BY v, t, 3 DESC});
push @{ $windows{ $_->[0] }{ $_->[1] } }, [ $_->[2], $_->[3] ] for @$rows;
is(scalar(@$rows), 7 * scalar(keys %times), 'oracle windows: one per event time and view, four for the hop');
my %lengths;
for my $w (values %{ $windows{daily_paris} }) { $lengths{ ($w->[0][1] - $w->[0][0]) / 3_600_000_000 }++ }
is(join(' ', sort { $a <=> $b } keys %lengths), '23 24 25', 'the oracle has Paris days of 23, 24 and 25 hours');

my $oracle = oracle_new(
	columns                 => \%columns,
	event_time              => 'ts',
	event_id                => 'event_id',
	max_out_of_orderness_ms => $MOOO,
	views                   => \@views);
$oracle->feed(\@msgs);
for my $v (@views)
{
	my %tot;
	for my $c (values %{ $oracle->counters($v->{name}) }) { $tot{$_} += $c->{$_} for keys %$c }
	note "oracle $v->{name}: " . join(', ', map { "$_=$tot{$_}" } sort keys %tot);
}
my %tl;
$tl{ scalar @{ $oracle->too_late($_->{name}) } } = 1 for @views;
cmp_ok(scalar(keys %tl), '>', 1, 'the lateness of the views gives them different too-late events');
for my $v (@views)
{
	my %final;
	$final{ $_->[-1] }++ for @{ $oracle->rows($v->{name}) };
	ok($final{t} && $final{f}, "$v->{name}: the oracle has final windows ($final{t}) and open ones ("
		  . ($final{f} // 0) . ')');
}

# ---------------------------------------------------------------- the views

my $split = int(@msgs / 2);
produce($broker, 'visits', [ @msgs[ 0 .. $split - 1 ] ]);
my $options = $enc->encode({ 'session.timeout.ms' => '6000', %{ $broker->{options} // {} } });
sql(qq{SELECT streamview.create_source(name => 'visits', brokers => '$broker->{addr}', topic => 'visits',
	columns => '} . $enc->encode(\%columns) . qq{', event_time => 'ts', event_id => 'event_id',
	max_out_of_orderness => '1 hour', options => '$options')});
create_views($node, \@views);
produce($broker, 'visits', [ @msgs[ $split .. $#msgs ] ]);

is(sql("SELECT string_agg(view_name || ':' || coalesce(window_time_zone, '-'), ' ' ORDER BY view_name) "
		  . "FROM streamview.versions"),
	'daily_paris:Europe/Paris daily_paris_06:Europe/Paris hop_sydney:Australia/Sydney monthly_ny:America/New_York',
	'each version records its time zone');

sub check_all
{
	my ($label) = @_;
	for my $v (@views)
	{
		ok(wait_consumed($node, $v->{name}, scalar @msgs), "$label $v->{name}: consumed the whole log")
		  or diag(sql('SELECT * FROM streamview.status; SELECT * FROM streamview.worker_errors'));
	}
	check_view_against_oracle($node, $oracle, $_->{name}, label => "$label $_->{name}") for @views;
	return;
}
check_all('first pass:');

# ---------------------------------------------------------------- rebuilds

# Rows in one table and not the other, both ways.
sub table_difference
{
	my ($a, $b) = @_;
	return sql("SELECT (SELECT count(*) FROM (TABLE $a EXCEPT ALL TABLE $b) x) + "
		  . "(SELECT count(*) FROM (TABLE $b EXCEPT ALL TABLE $a) y)");
}

for my $v (@views)
{
	is(sql("SELECT streamview.rebuild('$v->{name}')"), '2', "$v->{name}: rebuild from the start of the log");
}
for my $v (@views)
{
	is(sql("SELECT streamview.wait_for('$v->{name}', 2, '3 minutes')"), 'caught_up', "$v->{name}: v2 caught up");
	ok(wait_for($node, "SELECT count(*) = 2 FROM streamview.status WHERE view_name = '$v->{name}' "
			  . "AND consumed = " . scalar(@msgs)), "$v->{name}: both versions consumed the log");
	is(table_difference("$v->{name}_v1", "$v->{name}_v2"), '0',
		"$v->{name}: the rebuilt table equals the live one (EXCEPT ALL both ways)");
	is(sql("SELECT string_agg(\"check\" || '=' || passed, ' ' ORDER BY \"check\") "
			  . "FROM streamview.validate('$v->{name}', 2, expect_identical => true)"),
		'caught_up=true differences=true ledger=true', "$v->{name}: validate passes, identical");
}

# From a point in time: windows before the cut (a local midnight in Paris)
# are carried over, the rest replayed.
my $since = sql("SELECT watermark - interval '20 days' FROM streamview.versions "
	  . "WHERE view_name = 'daily_paris' AND state = 'live'");
is(sql("SELECT streamview.rebuild('daily_paris', start_from => '$since')"), '3', "daily_paris: rebuild from $since");
is(sql("SELECT start_from = streamview.tumble('$since'::timestamptz, '1 day', 'Europe/Paris') "
		  . "FROM streamview.versions WHERE view_name = 'daily_paris' AND version = 3"),
	't', 'the cut is the local midnight before start_from');
is(sql("SELECT streamview.wait_for('daily_paris', 3, '3 minutes')"), 'caught_up', 'daily_paris v3 caught up');
ok(wait_for($node, "SELECT count(*) = $P AND bool_and(a.next_offset = b.next_offset) "
		  . "FROM streamview.partitions a JOIN streamview.partitions b USING (view_name, partition) "
		  . "WHERE a.view_name = 'daily_paris' AND a.version = 3 AND b.version = 1"),
	'daily_paris v3 is at the live offsets');
my ($v3, $v1) = split /\|/, sql("SELECT (SELECT consumed FROM streamview.status WHERE view_name = 'daily_paris' "
	  . "AND version = 3), (SELECT consumed FROM streamview.status WHERE view_name = 'daily_paris' AND version = 1)");
ok($v3 < $v1, "the point-in-time replay read less of the log ($v3 of $v1)");
is(table_difference('daily_paris_v1', 'daily_paris_v3'), '0',
	'daily_paris: rebuilt from a point in time, the table equals the live one');

# A cut in the month that holds the watermark: March, before the cut, is
# final, so it is carried over and April replayed.  (Windows of a fixed
# length reach at most their size past the cut; a month is checked by its
# own end.)
my $recent = sql("SELECT watermark - interval '2 days' FROM streamview.versions "
	  . "WHERE view_name = 'monthly_ny' AND state = 'live'");
is(sql("SELECT streamview.rebuild('monthly_ny', start_from => '$recent')"), '3', "monthly_ny: rebuild from $recent");
is(sql("SELECT start_from = timestamp '2024-04-01 00:00' AT TIME ZONE 'America/New_York' "
		  . "FROM streamview.versions WHERE view_name = 'monthly_ny' AND version = 3"),
	't', 'the cut is the start of April in New York');
is(sql("SELECT streamview.wait_for('monthly_ny', 3, '3 minutes')"), 'caught_up', 'monthly_ny v3 caught up');
ok(wait_for($node, "SELECT count(*) = $P AND bool_and(a.next_offset = b.next_offset) "
		  . "FROM streamview.partitions a JOIN streamview.partitions b USING (view_name, partition) "
		  . "WHERE a.view_name = 'monthly_ny' AND a.version = 3 AND b.version = 1"),
	'monthly_ny v3 is at the live offsets');
is(table_difference('monthly_ny_v1', 'monthly_ny_v3'), '0',
	'monthly_ny: rebuilt from the start of April, the table equals the live one');

# A cut whose earlier windows are not final yet is refused: Sydney's hop
# windows last a day, so those that start before a cut three hours before
# the watermark are still open.
my $err;
my $late = sql("SELECT watermark - interval '3 hours' FROM streamview.versions "
	  . "WHERE view_name = 'hop_sydney' AND state = 'live'");
$node->psql('postgres', "SELECT streamview.rebuild('hop_sydney', start_from => '$late')", stderr => \$err);
like($err, qr/windows there are not final yet/, 'hop_sydney: a point in time whose windows are still open is refused');

check_view_against_oracle($node, $oracle, $_->{name}, label => "at the end: $_->{name}") for @views;

broker_stop($broker);
$node->stop;
done_testing();
