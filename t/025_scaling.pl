# Beyond one server (docs/scaling.md): two PostgreSQL servers share one
# 4-partition topic, server A's source reading partitions 0-1 and server
# B's partitions 2-3, each with the same stream view; server C reads the
# whole topic with the same view, and merges A's and B's through
# postgres_fdw, the mergeable aggregates merged again (sums of counts and
# sums, min of mins, max of maxes, avg from its sum and count, bool_and,
# bool_or; is_final against the lowest of the servers' watermarks).  The
# merge equals C's single-server view and the oracle (computed in Perl from
# the messages this test sends), row for row.  Each server reads, counts
# and dead-letters its own partitions only; B starts with partition 2
# alone and is given partition 3 with alter_source, which reads it from
# the start of its log; a source none of whose partitions the topic has
# yet says so while it waits.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use StreamViewTest;

my $P    = 4;
my $N    = 1500;    # messages per partition
my $MOOO = 5000;    # max_out_of_orderness (create_gen_source), ms

my $broker = broker_start('b023', { clicks => $P });
my %node = map { $_ => new_node("${_}023", batch_size => 500) } qw(a b c);

# postgres_fdw is contrib, shipped with the postgresql-15 package: the
# merge on C needs it.
is($node{c}->safe_psql('postgres',
	"SELECT count(*) FROM pg_available_extensions WHERE name = 'postgres_fdw'"), '1',
	'postgres_fdw (contrib) is available to the servers of this test')
  or BAIL_OUT('postgres_fdw is missing: install the PostgreSQL 15 contrib modules (package postgresql-15)');

my @views = (
	test_view(
		source      => 'clicks',
		name        => 'rev',
		lateness_ms => 30_000,
		window      => [ 'tumble', 60_000 ],
		keys        => [qw(user_id)],
		where       => [ 'amount_cents', '>=', 100 ],
		aggs        => [
			[ n        => 'count_star' ],
			[ revenue  => 'sum', 'amount_cents' ],
			[ min_amt  => 'min', 'amount_cents' ],
			[ max_amt  => 'max', 'amount_cents' ],
			[ avg_amt  => 'avg', 'amount_cents' ],
			[ all_flag => 'bool_and', 'flag' ],
			[ any_flag => 'bool_or', 'flag' ],
		],
	));

my $msgs = gen_stream(
	partitions    => $P,
	per_partition => $N,
	seed          => 20260123,
	base_ms       => 1_767_225_600_000,
	mooo_ms       => $MOOO,
	lateness_ms   => [ map { $_->{lateness_ms} } @views ]);
my %columns = gen_columns();
my $oracle  = oracle_new(
	columns                 => \%columns,
	event_time              => 'ts',
	event_id                => 'event_id',
	max_out_of_orderness_ms => $MOOO,
	views                   => \@views);
$oracle->feed($msgs);
ok(scalar(@{ $oracle->dead }) > 0 && scalar(@{ $oracle->too_late('rev') }) > 0,
	'the stream has unreadable and too-late messages');

# A: partitions 0-1.  B: partition 2 for now.  C: every partition.
create_gen_source($node{a}, $broker, 'clicks', 'clicks', partitions => '0-1');
create_gen_source($node{b}, $broker, 'clicks', 'clicks', partitions => '2');
create_gen_source($node{c}, $broker, 'clicks', 'clicks');
create_views($node{$_}, \@views) for qw(a b c);
is($node{a}->safe_psql('postgres', "SELECT partitions FROM streamview.source_list"), '0-1',
	'source_list shows the partitions A reads');

# A listed partition the topic does not have is waited for; a source that
# has none of them says so.
$node{a}->safe_psql('postgres', q{
	SELECT streamview.create_source('later', '} . $broker->{addr} . q{', 'clicks', '{"ts":"timestamptz"}',
	       'ts', options => '{"session.timeout.ms":"6000"}', partitions => '4-');
	SELECT streamview.create_view('later_n', $$ SELECT streamview.tumble(ts, '1 minute'), count(*) AS n
	                                             FROM later GROUP BY 1 $$);});

produce($broker, 'clicks', $msgs);

# A reads partitions 0 and 1, B partition 2, nothing more.
ok(wait_consumed($node{a}, 'rev', 2 * $N), 'A consumed partitions 0 and 1');
ok(wait_consumed($node{b}, 'rev', $N), 'B consumed partition 2');
ok(wait_consumed($node{c}, 'rev', $P * $N), 'C consumed the whole topic');

sub partitions_of
{
	my ($n, $sql) = @_;
	return $node{$n}->safe_psql('postgres', $sql);
}
is(partitions_of('a', "SELECT string_agg(partition::text, ',' ORDER BY partition) FROM streamview.partitions "
	  . "WHERE view_name = 'rev'"), '0,1', "A's streamview.partitions lists partitions 0 and 1");
is(partitions_of('a', "SELECT string_agg(DISTINCT partition::text, ',' ORDER BY partition::text) FROM streamview.offsets"),
	'0,1', 'A keeps ledger rows for its partitions only');
is(partitions_of('b', "SELECT string_agg(partition::text, ',' ORDER BY partition) FROM streamview.partitions "
	  . "WHERE view_name = 'rev'"), '2', "B's streamview.partitions lists partition 2");
is(partitions_of('b', "SELECT consumed || ' ' || partitions FROM streamview.status WHERE view_name = 'rev'"),
	"$N 1", "B's status counts partition 2 only");

ok(wait_for($node{a},
	q{SELECT last_error LIKE 'topic "clicks" has 4 partitions, none of those source "later" reads'
	    FROM streamview.source_list WHERE name = 'later'}),
	'a source none of whose partitions the topic has yet says so in its error')
  or diag(partitions_of('a', "SELECT last_error FROM streamview.source_list"));
is(partitions_of('a', "SELECT error IS NOT NULL AND consumed = 0 FROM streamview.status WHERE view_name = 'later_n'"),
	't', '... which status shows, with nothing read');

# B is given partition 3: its worker starts again with it, and reads it
# from the start of its log.
ok(defined partitions_of('b', "SELECT streamview.alter_source('clicks', partitions => '2-3')"),
	'alter_source gives B partition 3');
is(partitions_of('b', "SELECT changes FROM streamview.source_changes"),
	'{"partitions": {"new": "2-3", "old": "2"}}', 'the change is in the history');
ok(wait_consumed($node{b}, 'rev', 2 * $N), 'B consumed partitions 2 and 3');

# Each server's watermark is the lowest of its own partitions'; the
# oracle's is the lowest of all.
my $ps = $oracle->part_state;
for ([ a => [ 0, 1 ] ], [ b => [ 2, 3 ] ], [ c => [ 0 .. $P - 1 ] ])
{
	my ($n, $parts) = @$_;
	my ($low) = sort { $a <=> $b } map { $ps->{$_}{max_et} } @$parts;
	my $wm_ms = int(($low - $MOOO * 1000) / 1000);
	ok(wait_for($node{$n},
		"SELECT (extract(epoch FROM watermark) * 1000)::bigint = $wm_ms FROM streamview.status "
		  . "WHERE view_name = 'rev'"),
		"$n: the watermark is the lowest of its partitions' (partitions @$parts)")
	  or diag(partitions_of($n, 'SELECT watermark, held_back_by FROM streamview.status'));
	my $held = partitions_of($n, "SELECT coalesce(array_to_string(held_back_by, ','), '') FROM streamview.status "
		  . "WHERE view_name = 'rev'");
	my %mine = map { $_ => 1 } @$parts;
	ok(!grep({ !$mine{$_} } split /,/, $held), "$n: held_back_by names its own partitions only ($held)");
}

# C: the single-server view equals the oracle.
check_view_against_oracle($node{c}, $oracle, 'rev', label => 'C, every partition');
check_unreadable_dead_letters($node{c}, $oracle, 'clicks', 'C, every partition');

# A and B: each one's dead letters are those of its own partitions.
for ([ a => [ 0, 1 ] ], [ b => [ 2, 3 ] ])
{
	my ($n, $parts) = @$_;
	my %mine = map { $_ => 1 } @$parts;
	my @exp = map { join(':', @$_) }
	  sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] } grep { $mine{ $_->[0] } } @{ $oracle->dead };
	my $got = query_rows($node{$n},
		"SELECT partition, \"offset\", reason FROM streamview.dead_letters "
		  . "WHERE source_name = 'clicks' AND view_name IS NULL ORDER BY 1, 2, 3");
	is_deeply([ map { join(':', @$_) } @$got ], \@exp,
		"$n: unreadable dead letters are those of partitions @$parts (" . scalar(@exp) . ')');
	my @exp_tl = map { "$_->[0]:$_->[1]" }
	  sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] } grep { $mine{ $_->[0] } } @{ $oracle->too_late('rev') };
	my $tl = query_rows($node{$n},
		"SELECT partition, \"offset\" FROM streamview.dead_letters WHERE view_name = 'rev' "
		  . "AND reason = 'too_late' ORDER BY 1, 2");
	is_deeply([ map { "$_->[0]:$_->[1]" } @$tl ], \@exp_tl,
		"$n: too-late dead letters are those of partitions @$parts (" . scalar(@exp_tl) . ')');
}

# C merges A's and B's rows through postgres_fdw.  The avg column of a
# version's table holds the sum, and avg_amt__count the count, so the
# merge reads the live versions' tables (rev_v1 on both), and each
# server's watermark from its streamview.status.
my $C = $node{c};
$C->safe_psql('postgres', 'CREATE EXTENSION postgres_fdw');
for my $n (qw(a b))
{
	my ($host, $port) = ($node{$n}->host, $node{$n}->port);
	$C->safe_psql('postgres', qq{
		CREATE SERVER sv_$n FOREIGN DATA WRAPPER postgres_fdw
		    OPTIONS (host '$host', port '$port', dbname 'postgres');
		CREATE USER MAPPING FOR CURRENT_USER SERVER sv_$n;
		CREATE SCHEMA server_$n;
		IMPORT FOREIGN SCHEMA public LIMIT TO (rev_v1) FROM SERVER sv_$n INTO server_$n;
		CREATE FOREIGN TABLE server_$n.status (view_name text, is_live bool, watermark timestamptz)
		    SERVER sv_$n OPTIONS (schema_name 'streamview', table_name 'status');
	});
}
$C->safe_psql('postgres', q{
	-- the lowest of the servers' watermarks, once every server has one
	CREATE VIEW merged_watermark AS
	SELECT CASE WHEN count(w.watermark) = 2 THEN min(w.watermark) END AS watermark
	  FROM (SELECT s.watermark FROM server_a.status s WHERE s.view_name = 'rev' AND s.is_live
	        UNION ALL
	        SELECT s.watermark FROM server_b.status s WHERE s.view_name = 'rev' AND s.is_live) w;
	CREATE VIEW rev_merged AS
	SELECT r.window_start, r.window_end, r.user_id,
	       sum(r.n)::bigint AS n, sum(r.revenue) AS revenue,
	       min(r.min_amt) AS min_amt, max(r.max_amt) AS max_amt,
	       sum(r.avg_amt)::numeric / nullif(sum(r.avg_amt__count), 0)::numeric AS avg_amt,
	       bool_and(r.all_flag) AS all_flag, bool_or(r.any_flag) AS any_flag,
	       coalesce(r.window_end + interval '30 seconds' <= (SELECT w.watermark FROM merged_watermark w), false)
	           AS is_final
	  FROM (SELECT * FROM server_a.rev_v1 UNION ALL SELECT * FROM server_b.rev_v1) r
	 GROUP BY r.window_start, r.window_end, r.user_id;
});

my $nkey = 3;    # window_start, window_end, user_id
my %avg  = (7 => 1);    # avg_amt: compared with a tolerance, as check_view_against_oracle does
compare_rows(view_sql_rows($C, $oracle, 'rev', 'rev_merged'), $oracle->rows('rev'), $nkey, \%avg,
	'the merge of A and B equals the oracle');
compare_rows(view_sql_rows($C, $oracle, 'rev', 'rev_merged'), view_sql_rows($C, $oracle, 'rev'), $nkey, \%avg,
	"the merge of A and B equals C's single-server view");
is($C->safe_psql('postgres', 'SELECT count(*) FILTER (WHERE is_final) > 0 AND count(*) FILTER (WHERE NOT is_final) > 0 '
	  . 'FROM rev_merged'), 't', 'the merge has final and not yet final windows, as compared');

$node{$_}->stop for qw(a b c);
broker_stop($broker);
done_testing();
