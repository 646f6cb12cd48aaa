# Batches of several rounds (issue 10, item 3): under load a source worker's
# batch takes round after round of messages, aggregates each into partial
# rows and upserts each (window, keys) once at the batch's end, bounded by
# streamview.batch_max_groups and streamview.batch_max_time.
#  1. Pre-aggregation happens: 200 events of one group read one message a
#     round are upserted far fewer than 200 times; with batch_max_time = 0
#     (one round a batch) exactly 200 times.
#  2. A merge that fails (a key too long for the index, which only the
#     upsert finds) rolls the batch back and reads it again one round a
#     batch: the long key becomes a dead letter, nothing else is lost or
#     counted twice.
#  3. A messy stream (duplicates, late and bad messages) equals the Perl
#     oracle with a tiny distinct-groups bound, across an immediate restart
#     and a killed worker; then, rebuilt from the log with a time bound only,
#     again.
#  4. A backlog that arrives in many small fetches (a 1 kB prefetch queue,
#     4 kB fetches, the log in record batches of 20 messages) is read at
#     once and applied in a few batches, not in one batch per fetch: the
#     fetcher is woken when the queue runs dry, and a round that finds the
#     queue empty while the fetcher has seen more waits for the next fetch.
#  5. A batch whose partial rows outgrow memory (8 MB) spills them to a
#     temporary file and still merges every one: the file belongs to the
#     batch's transaction, not to the round's subtransaction that closed it
#     (and so lost the rows of a whole batch, silently).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use IPC::Run;
use StreamViewTest;

my $broker = broker_start('b026', { one => 1, poison => 1, rounds => 3, backlog => 1, wide => 1 });
my $node = new_node('n026', batch_size => 1,
	conf => "streamview.batch_max_time = 60000\nstreamview.batch_max_groups = 1000000\nlog_temp_files = 0\n");
my $B = $broker->{addr};

sub ev
{
	my ($p, %f) = @_;
	return [ $p, '', JSON::PP->new->canonical->encode(\%f) ];
}

sub set_conf
{
	my (%s) = @_;
	$node->safe_psql('postgres', join '', map { "ALTER SYSTEM SET streamview.$_ = '$s{$_}';" } sort keys %s);
	$node->reload;
	for (sort keys %s)
	{
		wait_for($node, "SELECT setting = '$s{$_}' FROM pg_settings WHERE name = 'streamview.$_'")
		  or die "streamview.$_ did not become $s{$_}";
	}
}

# Upserts of a view's table (inserts + updates) so far.  A worker reports
# its statistics at most once a second, and all of them when it exits: the
# source's worker is stopped first (the launcher starts another).
sub upserts
{
	my ($source, $table) = @_;
	my $pid = worker_pid($node, $source);
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
	wait_for($node, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_streamview source' "
		  . "AND application_name = 'pg_streamview source $source' AND pid <> $pid")
	  or die "no new worker for $source";
	return $node->safe_psql('postgres',
		"SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables WHERE relid = '$table'::regclass");
}

######################################################################
# 1. 200 events of one group, one message a round
######################################################################
my $ts = 1_714_564_800_000;    # 2024-05-01 12:00:00 UTC
produce($broker, 'one', [ map { ev(0, u => 'u1', a => $_, ts => $ts + $_) } 1 .. 200 ]);
$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('one', '$B', 'one', '{"ts":"timestamptz","u":"text","a":"int8"}', 'ts');
	SELECT streamview.create_view('public.one_n', \$\$
	  SELECT streamview.tumble(ts, '1 hour') AS window_start, u, count(*) AS n, sum(a) AS s,
	         min(a) AS lo, max(a) AS hi, avg(a) AS av
	    FROM one GROUP BY 1, 2 \$\$);
});
ok(wait_consumed($node, 'one_n', 200), 'pre-aggregated: the 200 events are read');
is($node->safe_psql('postgres', 'SELECT u, n, s, lo, hi, av FROM one_n'),
	'u1|200|20100|1|200|100.5000000000000000', 'pre-aggregated: the row is the sum of the 200 events');
my $pre = upserts('one', 'one_n_v1');
cmp_ok($pre, '<', 50, "pre-aggregated: 200 one-message rounds upserted the row $pre times, not 200");

set_conf(batch_max_time => 0);
$node->safe_psql('postgres', q{SELECT streamview.drop_view('one_n')});
$node->safe_psql('postgres', q{
	SELECT streamview.create_view('public.one_n', $$
	  SELECT streamview.tumble(ts, '1 hour') AS window_start, u, count(*) AS n, sum(a) AS s,
	         min(a) AS lo, max(a) AS hi, avg(a) AS av
	    FROM one GROUP BY 1, 2 $$);
});
ok(wait_consumed($node, 'one_n', 200), 'one round a batch: the 200 events are read');
is($node->safe_psql('postgres', 'SELECT u, n, s, lo, hi, av FROM one_n'),
	'u1|200|20100|1|200|100.5000000000000000', 'one round a batch: the same row');
is(upserts('one', 'one_n_v1'), '200', 'one round a batch (batch_max_time = 0): 200 upserts');
set_conf(batch_max_time => 60000);

######################################################################
# 2. a merge that fails is read again one round a batch
######################################################################
# random letters: a long run of one letter would compress to fit the index
my $big = join '', map { chr(97 + int(rand(26))) } 1 .. 8000;
my $log_at = -s $node->logfile;
produce($broker, 'poison',
	[ (map { ev(0, u => "u$_", ts => $ts + $_) } 1 .. 20), ev(0, u => $big, ts => $ts + 21),
	  (map { ev(0, u => 'u1', ts => $ts + 21 + $_) } 1 .. 20) ]);
$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('poison', '$B', 'poison', '{"ts":"timestamptz","u":"text"}', 'ts');
	SELECT streamview.create_view('public.poison_n', \$\$
	  SELECT streamview.tumble(ts, '1 hour') AS window_start, u, count(*) AS n FROM poison GROUP BY 1, 2 \$\$);
});
ok(wait_consumed($node, 'poison_n', 41), 'a failed merge: the source goes past the long key');
ok($node->log_contains(qr/merging a batch's partial rows failed: index row size \d+ exceeds/, $log_at),
	'a failed merge: the merge did fail, and says why in the log');
is($node->safe_psql('postgres', q{
	SELECT string_agg("offset" || ':' || reason, ' ') FROM streamview.dead_letters WHERE view_name = 'poison_n'}),
	'20:query_error', 'a failed merge: the long key, read again alone, is the one dead letter');
is($node->safe_psql('postgres', q{SELECT sum(n) || ' ' || count(*) || ' ' || max(n) FROM poison_n}),
	'40 20 21', 'a failed merge: every other event counted once (u1 = 21)');
is($node->safe_psql('postgres', q{
	SELECT applied || ' ' || dead_lettered FROM streamview.status WHERE view_name = 'poison_n'}),
	'40 1', 'a failed merge: the ledger balances');

######################################################################
# 3. the messy stream against the oracle
######################################################################
my $P    = 3;
my $MOOO = 5000;
my %columns = gen_columns();
my @views = (
	test_view(
		source      => 'rounds',
		name        => 'rounds_rev',
		lateness_ms => 20_000,
		window      => [ 'tumble', 60_000 ],
		keys        => [qw(user_id region)],
		aggs        => [
			[ n       => 'count_star' ],
			[ revenue => 'sum', 'amount_cents' ],
			[ lo      => 'min', 'amount_cents' ],
			[ hi      => 'max', 'amount_cents' ],
			[ avg_amt => 'avg', 'amount_cents' ],
			[ any_flag => 'bool_or', 'flag' ],
			[ all_flag => 'bool_and', 'flag' ],
		],
	),
	test_view(
		source      => 'rounds',
		name        => 'rounds_hop',
		lateness_ms => 10_000,
		window      => [ 'hop', 120_000, 60_000 ],
		keys        => [qw(region)],
		aggs        => [ [ n => 'count_star' ], [ qty => 'sum', 'qty' ] ],
	),
);
my $oracle = oracle_new(
	columns                 => \%columns,
	event_time              => 'ts',
	event_id                => 'event_id',
	max_out_of_orderness_ms => $MOOO,
	views                   => \@views);
my $chunks = stream_chunker(broker => $broker, topic => 'rounds', oracle => $oracle,
	partitions => $P, seed => 2026, base_ms => 1_712_000_000_000, mooo_ms => $MOOO, views => \@views);

# rounds of 7 messages; a batch ends at 40 partial rows
set_conf(batch_size => 7, batch_max_groups => 40);
$chunks->{next}->(1500);
create_gen_source($node, $broker, 'rounds', 'rounds');
create_views($node, \@views);
wait_for($node, "SELECT coalesce(min(consumed), 0) > 1500 FROM streamview.status WHERE view_name LIKE 'rounds%'");
$node->stop('immediate');
$node->start;
ok(1, 'PostgreSQL restarted in immediate mode mid-stream');
$chunks->{next}->(1000);
my $pid = worker_pid($node, 'rounds');
wait_for($node, "SELECT coalesce(min(consumed), 0) > 6000 FROM streamview.status WHERE view_name LIKE 'rounds%'");
kill 'KILL', $pid if $pid;
ok(wait_for($node, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_streamview source' "
		  . "AND application_name = 'pg_streamview source rounds' AND pid <> " . ($pid // 0)),
	'a new worker replaced the killed one');
my $total = $chunks->{total}->();
ok(wait_consumed($node, $_->{name}, $total), "groups bound: $_->{name} consumed $total") for @views;
check_view_against_oracle($node, $oracle, $_->{name}, label => "groups bound 40: $_->{name}") for @views;
check_unreadable_dead_letters($node, $oracle, 'rounds', 'groups bound 40');
is($node->safe_psql('postgres', 'SELECT count(*) FROM streamview.partitions WHERE NOT balanced'),
	'0', 'groups bound 40: every partition ledger balances');

# the same log again, with a time bound only: rounds of 50 messages, a
# batch ends after 200 ms (or when the queue is drained)
set_conf(batch_size => 50, batch_max_groups => 1000000, batch_max_time => 200);
$node->safe_psql('postgres', "SELECT streamview.drop_view('$_->{name}')") for @views;
create_views($node, \@views);
ok(wait_consumed($node, $_->{name}, $total), "time bound: $_->{name} consumed $total") for @views;
check_view_against_oracle($node, $oracle, $_->{name}, label => "time bound 200 ms: $_->{name}") for @views;

######################################################################
# 4. a backlog in small fetches is applied in full batches
######################################################################
set_conf(batch_size => 10000, batch_max_groups => 1000000, batch_max_time => 60000);
my $n4 = 20000;
{
	# record batches of 20 messages, so that a 4 kB fetch holds a few
	my $in = join '', map { "\t" . JSON::PP->new->canonical->encode({ u => 'u1', a => $_, ts => $ts + $_ }) . "\n" } 1 .. $n4;
	my ($out, $err);
	IPC::Run::run([ 'kcat', '-P', '-b', $B, '-t', 'backlog', '-p', 0, '-K', "\t", '-Z',
			'-X', 'batch.num.messages=20', '-X', 'linger.ms=0' ], '<', \$in, '>', \$out, '2>', \$err)
	  or die "kcat failed: $err";
}
$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('backlog', '$B', 'backlog', '{"ts":"timestamptz","u":"text","a":"int8"}', 'ts',
	       options => '{"queued.max.messages.kbytes":"1","fetch.message.max.bytes":"4096"}');
	SELECT streamview.create_view('public.backlog_n', \$\$
	  SELECT streamview.tumble(ts, '1 hour') AS window_start, u, count(*) AS n, sum(a) AS s
	    FROM backlog GROUP BY 1, 2 \$\$);
});
ok(wait_consumed($node, 'backlog_n', $n4), "small fetches: the $n4 events are read");
is($node->safe_psql('postgres', 'SELECT n, s FROM backlog_n'), "$n4|" . ($n4 * ($n4 + 1) / 2),
	'small fetches: the row is the sum of the events');
# one batch per fetch would upsert the row hundreds of times
my $upserts = upserts('backlog', 'backlog_n_v1');
cmp_ok($upserts, '<', 50, "small fetches: the row was upserted $upserts times, in a few batches");

######################################################################
# 5. partial rows beyond memory
######################################################################
# 20,000 groups of a 4 kB key each: 80 MB of partial rows, in batches of
# rounds of 1,000 (lz4 makes the log small, the rows stay wide)
set_conf(batch_size => 1000);
my $n5 = 20000;
my $pad = 'x' x 4000;
{
	my $in = join '', map { "\t" . JSON::PP->new->canonical->encode({ u => "u$_$pad", a => $_, ts => $ts + $_ }) . "\n" } 1 .. $n5;
	my ($out, $err);
	IPC::Run::run([ 'kcat', '-P', '-b', $B, '-t', 'wide', '-p', 0, '-K', "\t", '-z', 'lz4' ],
		'<', \$in, '>', \$out, '2>', \$err)
	  or die "kcat failed: $err";
}
$log_at = -s $node->logfile;
$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('wide', '$B', 'wide', '{"ts":"timestamptz","u":"text","a":"int8"}', 'ts');
	SELECT streamview.create_view('public.wide_n', \$\$
	  SELECT streamview.tumble(ts, '1 hour') AS window_start, u, count(*) AS n, sum(a) AS s
	    FROM wide GROUP BY 1, 2 \$\$);
});
ok(wait_consumed($node, 'wide_n', $n5), "wide partial rows: the $n5 events are read");
is($node->safe_psql('postgres', 'SELECT count(*) || \' \' || sum(n) || \' \' || sum(s) || \' \' || min(length(u)) FROM wide_n'),
	"$n5 $n5 " . ($n5 * ($n5 + 1) / 2) . " 4002", 'wide partial rows: every group merged, once');
my @spills = slurp_file($node->logfile, $log_at) =~ /temporary file: path "[^"]*", size (\d+)/g;
ok((grep { $_ > 32 * 1024 * 1024 } @spills),
	'wide partial rows: a batch did spill them to a temporary file, of more than 32 MB (sizes: '
	  . join(', ', @spills) . ')');

broker_stop($broker);
$node->stop;
done_testing();
