# Snapshots end to end, against the broker (docs/snapshots.md):
#  - snapshots taken while the source streams are each one consistent
#    point: rows, per-partition offsets, counters and event-time history all
#    equal the oracle fed with exactly the messages before those offsets;
#  - restore from one: the new version replays only from the snapshot's
#    offsets, catches up, validates identical to the live version and to a
#    full rebuild (EXCEPT ALL both ways), and swaps in like any rebuild;
#  - a corrupted snapshot is found by verify_snapshot and refused by
#    restore; a snapshot of another definition is refused; keep => N;
#  - pg_cron takes one on schedule.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use IPC::Run;
use StreamViewTest;

my $t_start = time;
my $P       = 3;
my $MOOO    = 5000;
my $BASE_MS = 1_722_000_000_000;

my $broker = broker_start('b026', { orders => $P });
# pg_cron runs its jobs in background workers (no connection to make), in
# database postgres, where the extension is.
# Batches of one round (batch_max_time = 0) of at most batch_size messages,
# so that snapshots land between the many commits of a chunk.
my $node = new_node('n026', batch_size => 100,
	conf => "streamview.batch_max_time = 0\n"
	  . "shared_preload_libraries = 'pg_streamview,pg_cron'\n"
	  . "cron.database_name = 'postgres'\n"
	  . "cron.use_background_workers = on\n"
	  . "max_worker_processes = 24\n");

my %columns = gen_columns();
my @views = (
	test_view(
		source      => 'orders',
		name        => 'rev',
		lateness_ms => 20_000,
		window      => [ 'tumble', 60_000 ],
		keys        => [qw(user_id)],
		aggs => [ [ n => 'count_star' ], [ revenue => 'sum', 'amount_cents' ], [ avg_cents => 'avg', 'amount_cents' ] ],
	),
	test_view(
		source      => 'orders',
		name        => 'hops',
		lateness_ms => 10_000,
		window      => [ 'hop', 120_000, 60_000 ],
		keys        => [qw(region)],
		aggs        => [ [ n => 'count_star' ], [ qty => 'sum', 'qty' ] ],
	),
);
my %oracle_args = (
	columns                 => \%columns,
	event_time              => 'ts',
	event_id                => 'event_id',
	max_out_of_orderness_ms => $MOOO,
	views                   => \@views);
my $oracle = oracle_new(%oracle_args);

# The stream, in chunks that continue each other; every message kept, in
# the order produced, so that an oracle can be fed any per-partition prefix.
my (%gen_state, @all);
my $first_chunk = 1;
sub gen_chunk
{
	my ($per_partition) = @_;
	my $msgs = gen_stream(
		partitions    => $P,
		per_partition => $per_partition,
		($first_chunk ? (seed => 4026) : ()),
		state       => \%gen_state,
		base_ms     => $BASE_MS,
		mooo_ms     => $MOOO,
		lateness_ms => [ map { $_->{lateness_ms} } @views ]);
	$first_chunk = 0;
	$oracle->feed($msgs);
	push @all, @$msgs;
	return $msgs;
}

sub sql { return $node->safe_psql('postgres', $_[0]) }

# Rows in one table and not the other, both ways.
sub table_difference
{
	my ($a, $b) = @_;
	return sql("SELECT (SELECT count(*) FROM (TABLE $a EXCEPT ALL TABLE $b) x) + "
		  . "(SELECT count(*) FROM (TABLE $b EXCEPT ALL TABLE $a) y)");
}

# The oracle fed with the first $next->{p} messages of each partition p.
sub prefix_oracle
{
	my ($next) = @_;
	my %seen;
	my @prefix = grep { ($seen{ $_->[0] }++ // 0) < ($next->{ $_->[0] } // 0) } @all;
	return oracle_run(oracle_new(%oracle_args), \@prefix);
}

# Snapshot $id of view $name against the oracle of the messages before its
# offsets: per partition the ledger (offsets, counters, event-time history),
# then the rows (avg and is_final as the view shows them, is_final from the
# oracle's watermark: the stored one is checked apart, as no later than it).
sub check_snapshot_against_oracle
{
	my ($id, $name, $label) = @_;
	my %ledger;
	for my $r (@{ query_rows($node,
			"SELECT l.key, coalesce(l.value->>'next_offset', '0'), l.value->>'consumed', l.value->>'applied', "
			  . "l.value->>'duplicates', l.value->>'too_late', l.value->>'dead_lettered', "
			  . "coalesce((extract(epoch FROM (l.value->>'max_event_time')::timestamptz) * 1000)::bigint::text, 'NULL') "
			  . "FROM streamview.snapshots s, jsonb_each(s.ledger) l WHERE s.snapshot_id = $id") })
	{
		my ($p, @f) = @$r;
		$ledger{$p} = \@f;
	}
	my %next = map { $_ => $ledger{$_}[0] } keys %ledger;
	my $o = prefix_oracle(\%next);
	my $exp = $o->counters($name);
	my $ps  = $o->part_state;
	my @bad;
	for my $p (0 .. $P - 1)
	{
		my $c = $exp->{$p} // { map { $_ => 0 } qw(consumed applied duplicates too_late dead_lettered) };
		my $met = defined $ps->{$p}{max_et} ? int($ps->{$p}{max_et} / 1000) : 'NULL';
		my $want = join(' ', $ps->{$p}{n} // 0, (map { $c->{$_} } qw(consumed applied duplicates too_late dead_lettered)), $met);
		my $got = join(' ', @{ $ledger{$p} // [] });
		push @bad, "p$p: got [$got], expected [$want]" if $got ne $want;
	}
	ok(!@bad, "$label: per-partition offsets, counters and event-time history equal the oracle of the messages before them")
	  or diag(join("\n", @bad));

	my $wm = $o->watermark;
	my $wm_sql = defined $wm ? "'" . us_to_iso($wm) . "'::timestamptz" : 'NULL::timestamptz';
	my $view_sql = sql("SELECT x.view_sql FROM streamview.versions x JOIN streamview.snapshots s "
		  . "ON s.view_id = x.view_id AND s.version = x.version WHERE s.snapshot_id = $id");
	$view_sql =~ s/\(SELECT v\.watermark FROM streamview\.versions v WHERE v\.version_id = \d+\)/$wm_sql/
	  or die "no watermark in $view_sql";
	$view_sql =~ s/ FROM \S+ t$/ FROM streamview_internal.snapshot_$id t/ or die "no table in $view_sql";
	my $v = $o->view($name);
	my %tol;
	my $i = 2 + @{ $v->{keys} };
	for (@{ $v->{aggs} }) { $tol{$i} = 1 if $_->[1] eq 'avg'; $i++ }
	compare_rows(view_sql_rows($node, $o, $name, "($view_sql) AS s"), $o->rows($name),
		2 + @{ $v->{keys} }, \%tol, "$label: rows equal the oracle of the messages before its offsets");
	my $stored = sql("SELECT coalesce((extract(epoch FROM watermark) * 1000000)::bigint::text, 'NULL') "
		  . "FROM streamview.snapshots WHERE snapshot_id = $id");
	ok($stored eq 'NULL' || (defined $wm && $stored <= $wm),
		"$label: its watermark ($stored) is no later than the oracle's (" . ($wm // 'none') . ")");
	return;
}

create_gen_source($node, $broker, 'orders', 'orders');
create_views($node, \@views);

# pg_cron: a snapshot of hops every minute, the newest two kept.  It runs
# while the rest goes on; its outcome is checked at the end.
sql('CREATE EXTENSION pg_cron');
sql(q{SELECT cron.schedule('snapshot-hops', '* * * * *', $$SELECT streamview.snapshot('hops', keep => 2)$$)});

# 1. history
my $msgs = gen_chunk(400);
produce($broker, 'orders', $msgs);
ok(wait_consumed($node, $_->{name}, scalar @all), "history: $_->{name} consumed " . scalar(@all)) for @views;
my $history = @all;

# 2. snapshots while the source streams: one session takes snapshot after
#    snapshot while the next chunk is produced and consumed (and no more
#    once rev has consumed it all)
$msgs = gen_chunk(3000);
my $total = @all;
my $loop = join('', map {
	"SELECT streamview.snapshot('rev') WHERE (SELECT consumed FROM streamview.status "
	  . "WHERE view_name = 'rev' AND is_live) < $total;\n" } 1 .. 200);
my ($sout, $serr) = ('', '');
my $snapper = IPC::Run::start(
	[ 'psql', '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', $node->host, '-p', $node->port, '-d', 'postgres' ],
	'<', \$loop, '>', \$sout, '2>', \$serr);
produce($broker, 'orders', $msgs);
$snapper->finish;
is($serr, '', 'the snapshots taken while streaming raised no error');
my @snaps = grep { length } split /\n/, $sout;
ok(wait_consumed($node, 'rev', $total), "rev consumed $total");
# the distinct points the snapshots were taken at, by their offsets
my @points = split /\n/, sql("SELECT min(snapshot_id) || ' ' || sum(o.value::bigint) FROM streamview.snapshots s, "
	  . "jsonb_each_text(s.offsets) o WHERE s.view_name = 'rev' GROUP BY s.offsets ORDER BY 1");
my @mid = map { (split / /)[0] } grep { my $n = (split / /)[1]; $n > $history && $n < $total } @points;
ok(scalar @mid, scalar(@snaps) . ' snapshots taken at ' . scalar(@points) . ' points, '
	  . scalar(@mid) . ' of them in the middle of the chunk');
is(sql("SELECT count(*) FROM streamview.snapshots WHERE view_name = 'rev' AND checksum IS NOT NULL"),
	scalar @snaps, 'each has its manifest and checksum');
check_snapshot_against_oracle((split / /)[0], 'rev', 'snapshot ' . (split / /)[0]) for @points;
is(sql("SELECT bool_and(streamview.verify_snapshot(snapshot_id)) FROM streamview.snapshots WHERE view_name = 'rev'"),
	't', 'verify_snapshot: every snapshot is intact');

# 3. restore from a snapshot in the middle; events go on arriving
my $snap = $mid[ $#mid / 2 ] // $snaps[0];
is(sql("SELECT streamview.restore('rev', $snap)"), '2', "restore from snapshot $snap is version 2");
$msgs = gen_chunk(300);
produce($broker, 'orders', $msgs);
is(sql("SELECT streamview.wait_for('rev', 2, '3 minutes')"), 'caught_up', 'the restored version caught up');
ok(wait_for($node,
		"SELECT bool_and(consumed = " . scalar(@all) . ") FROM streamview.status WHERE view_name = 'rev'"),
	'both versions consumed ' . scalar(@all));
is(sql("SELECT x.start_offsets = s.offsets "
		  . "FROM streamview.versions x, streamview.snapshots s "
		  . "WHERE x.view_name = 'rev' AND x.version = 2 AND s.snapshot_id = $snap"),
	't', "its replay started at the snapshot's offsets");
my ($replayed, $consumed) = split /\|/, sql("SELECT x.replayed, st.consumed FROM streamview.versions x "
	  . "JOIN streamview.status st USING (view_name, version) WHERE x.view_name = 'rev' AND x.version = 2");
ok($replayed > 0 && $replayed < $consumed,
	"it replayed only what came after the snapshot ($replayed of the $consumed messages its ledger counts)");
is(sql("SELECT restored_from FROM streamview.versions WHERE view_name = 'rev' AND version = 2"), $snap,
	'the version records the snapshot it started from');
is(table_difference('rev_v1', 'rev_v2'), '0', 'the restored table equals the live one (EXCEPT ALL both ways)');
is(sql("SELECT string_agg(\"check\" || '=' || passed, ' ' ORDER BY \"check\") "
		  . "FROM streamview.validate('rev', 2, expect_identical => true)"),
	'caught_up=true differences=true ledger=true', 'validate: the restored version is identical to the live one');

# ... and to a full rebuild from the start of the log
is(sql("SELECT streamview.rebuild('rev')"), '3', 'a full rebuild is version 3');
is(sql("SELECT streamview.wait_for('rev', 3, '3 minutes')"), 'caught_up', 'the full rebuild caught up');
ok(wait_for($node,
		"SELECT bool_and(consumed = " . scalar(@all) . ") FROM streamview.status WHERE view_name = 'rev'"),
	'all three versions consumed ' . scalar(@all));
is(table_difference('rev_v2', 'rev_v3'), '0', 'the restored table equals the full rebuild (EXCEPT ALL both ways)');
my ($r2, $r3) = split /\|/, sql("SELECT string_agg(replayed::text, '|' ORDER BY version) FROM streamview.versions "
	  . "WHERE view_name = 'rev' AND version IN (2, 3)");
ok($r2 < $r3, "the restore replayed less of the log than the rebuild ($r2 vs $r3 messages)");
is(sql("SELECT string_agg(a.partition || ':' || (a.consumed = b.consumed AND a.applied = b.applied "
		  . "AND a.duplicates = b.duplicates AND a.too_late = b.too_late AND a.dead_lettered = b.dead_lettered "
		  . "AND a.max_event_time = b.max_event_time), ' ' ORDER BY a.partition) "
		  . "FROM streamview.partitions a JOIN streamview.partitions b USING (view_name, partition) "
		  . "WHERE view_name = 'rev' AND a.version = 2 AND b.version = 3"),
	join(' ', map { "$_:true" } 0 .. $P - 1), 'their ledgers and event-time histories agree in every partition');

# swapped in like any rebuild; the view then reads what the oracle says
sql("SELECT streamview.drop_version('rev', 3)");
sql("SELECT streamview.swap('rev', 2)");
is(sql("SELECT state FROM streamview.versions WHERE view_name = 'rev' AND version = 2"), 'live',
	'the restored version swaps in');
my $v = $oracle->view('rev');
compare_rows(view_sql_rows($node, $oracle, 'rev'), $oracle->rows('rev'), 2 + @{ $v->{keys} }, { 5 => 1 },
	'rev (restored v2 live): rows equal the oracle (avg_cents within 1e-6)');

# 4. a corrupted snapshot: found, and refused
my $bad = $snaps[-1];
sql("UPDATE streamview_internal.snapshot_$bad SET n = n + 1 WHERE (window_start, user_id) = "
	  . "(SELECT window_start, user_id FROM streamview_internal.snapshot_$bad ORDER BY 1, 2 LIMIT 1)");
is(sql("SELECT streamview.verify_snapshot($bad)"), 'f', 'verify_snapshot finds the changed row');
my ($rc, $out, $err) = $node->psql('postgres', "SELECT streamview.restore('rev', $bad)",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:\s+XX001: snapshot $bad of stream view "rev" is corrupted\n.*DETAIL:\s+Its manifest, rows and event ids hash to [0-9a-f]{64}, not to its checksum [0-9a-f]{64}/,
	'restore refuses it (data_corrupted, with the two hashes)');
like($err, qr/HINT:\s+Restore another snapshot/, '... and says what to do');
is(sql("SELECT count(*) FROM streamview.versions WHERE view_name = 'rev'"), '3', 'no version was made');

# 5. keep => 2: the newest two of the view's snapshots stay
my $before = sql("SELECT count(*) FROM streamview.snapshots WHERE view_name = 'rev'");
my @kept = map { sql("SELECT streamview.snapshot('rev', keep => 2)") } 1 .. 2;
is(sql("SELECT string_agg(snapshot_id::text, ' ' ORDER BY snapshot_id) FROM streamview.snapshots WHERE view_name = 'rev'"),
	"@kept", "keep => 2 dropped the $before older snapshots of rev, and only those");
is(sql("SELECT count(*) FROM pg_class WHERE relnamespace = 'streamview_internal'::regnamespace "
		  . "AND relname ~ '^snapshot_\\d+\$' AND substr(relname, 10)::bigint IN (" . join(', ', @snaps, $bad) . ")"),
	'0', 'with their tables');
check_snapshot_against_oracle($kept[-1], 'rev', "snapshot $kept[-1] of the restored live version");

# 6. another definition: a snapshot of the old query is refused
is(sql(q{SELECT streamview.rebuild('rev', query => $q$
	SELECT streamview.tumble(ts, '1 minute') AS window_start, user_id, count(*) AS n,
	       sum(amount_cents) AS revenue, max(amount_cents) AS biggest
	FROM orders GROUP BY 1, 2 $q$)}), '4', 'rev: a rebuild with a new query is version 4');
is(sql("SELECT streamview.wait_for('rev', 4, '3 minutes')"), 'caught_up', 'it caught up');
sql("SELECT * FROM streamview.validate('rev', 4)");
sql("SELECT streamview.swap('rev', 4)");
is(sql("SELECT state FROM streamview.versions WHERE view_name = 'rev' AND version = 4"), 'live', 'and swapped in');
($rc, $out, $err) = $node->psql('postgres', "SELECT streamview.restore('rev', $kept[-1])",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:\s+55000: snapshot $kept[-1] of stream view "rev" was taken with another definition\n.*DETAIL:\s+The snapshot is of version 2, definition \w+; live version 4 has definition \w+/,
	'restore refuses a snapshot of another definition (object_not_in_prerequisite_state)');
is(sql("SELECT count(*) FROM streamview.versions WHERE view_name = 'rev'"), '4', 'no version was made');

# 7. pg_cron took a snapshot of hops, on schedule
ok(wait_for($node,
		"SELECT EXISTS (SELECT 1 FROM cron.job_run_details d JOIN cron.job j USING (jobid) "
		  . "WHERE j.jobname = 'snapshot-hops' AND d.status = 'succeeded')"),
	'the pg_cron job ran and succeeded');
my ($hops_snaps, $by, $intact) = split /\|/, sql(
	"SELECT count(*), string_agg(DISTINCT taken_by, ','), bool_and(streamview.verify_snapshot(snapshot_id)) "
	  . "FROM streamview.snapshots WHERE view_name = 'hops'");
ok($hops_snaps >= 1 && $hops_snaps <= 2, "hops has $hops_snaps snapshots (keep => 2)");
is($by, sql('SELECT current_user'), 'taken by the role that scheduled the job');
is($intact, 't', 'intact');
sql("SELECT cron.unschedule('snapshot-hops')");

# 8. drop_view takes the snapshots with it
sql("SELECT streamview.drop_view('hops')");
is(sql("SELECT count(*) FROM streamview.snapshots WHERE view_name = 'hops'"), '0', 'drop_view drops its snapshots');

note sprintf('026 took %.1fs', time - $t_start);
broker_stop($broker);
$node->stop;
done_testing();
