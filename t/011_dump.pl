# pg_dump and pg_restore of a database with stream views and a source
# changed by alter_source.  The catalog tables and their sequences are
# dumped (pg_extension_config_dump), so in the restored cluster the worker
# resumes from the stored offsets (nothing read twice, nothing skipped),
# the history of changes is there, and new sources, views, rebuilds and
# changes get ids of their own (0.1 did not dump the sequences: the next
# create_source failed with a duplicate key).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use StreamViewTest;

my $broker = broker_start('b011', { dumped => 2, other => 1 });
my $B      = $broker->{addr};
my $old    = new_node('n011a');

my $sent = 0;
my %expected;
sub send_events
{
	my ($n) = @_;
	my @m;
	for (1 .. $n)
	{
		my $i = $sent++;
		my $k = 'k' . ($i % 3);
		$expected{$k}++;
		push @m, [ $i % 2, $k, JSON::PP->new->canonical->encode(
			{ ts => sprintf('2024-06-01T10:%02d:%02dZ', int($i / 60) % 60, $i % 60), k => $k }) ];
	}
	produce($broker, 'dumped', \@m);
	return;
}
sub view_is
{
	my ($node, $label) = @_;
	my %got = map { split / / } split /\n/,
	  $node->safe_psql('postgres', q{SELECT k || ' ' || sum(n) FROM dumped_n GROUP BY k});
	is_deeply(\%got, \%expected, "$label: the view counts every event sent ($sent) once");
	return;
}

$old->safe_psql('postgres', qq{
	SELECT streamview.create_source('dumped', '$B', 'dumped', '{"ts":"timestamptz","k":"text"}', 'ts',
	                                archive => '1 day');
	SELECT streamview.create_view('public.dumped_n', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS n FROM dumped GROUP BY 1, 2 \$\$);
	COMMENT ON VIEW public.dumped_n IS 'events per minute and key';
	SELECT streamview.alter_source('dumped', options => '{"fetch.wait.max.ms":"50"}');
});
send_events(300);
ok(wait_consumed($old, 'dumped_n', 300), 'the first cluster consumed 300 events');
view_is($old, 'before the dump');
# a snapshot of the view: its manifest is a catalog table, its rows a
# table of the extension's schema that is no member of the extension
my $snapshot = $old->safe_psql('postgres', q{SELECT streamview.snapshot('dumped_n')});

# The dump, taken while the worker runs; then the first cluster stops, as
# when a database moves to a new server.
my $dump = "$PostgreSQL::Test::Utils::tmp_check/n011.dump";
command_ok([ 'pg_dump', '-Fc', '-d', $old->connstr('postgres'), '-f', $dump ], 'pg_dump');
my %before = map { split /\|/ } split /\n/, $old->safe_psql('postgres',
	q{SELECT 'sources', last_value FROM streamview.sources_source_id_seq
	  UNION ALL SELECT 'versions', last_value FROM streamview.versions_version_id_seq});
my $archives_q = q{SELECT string_agg(concat_ws(':', partition, first_offset, last_offset, messages), ' '
	                          ORDER BY partition) FROM streamview.archives WHERE source_name = 'dumped'};
my $old_archives = $old->safe_psql('postgres', $archives_q);
my $old_group = $old->safe_psql('postgres', q{SELECT consumer_group FROM streamview.source_list});
is($old_group, 'pg_streamview.' . $old->safe_psql('postgres',
		q{SELECT system_identifier FROM pg_control_system()}) . '.postgres.dumped',
	'the consumer group names the cluster, the database and the source');
$old->stop;

my $new = PostgreSQL::Test::Cluster->new('n011b');
$new->init;
$new->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_streamview'\n"
	  . "streamview.restart_delay = 1\nstreamview.launcher_naptime = 200\nmax_worker_processes = 16\n");
$new->start;
command_ok([ 'pg_restore', '--exit-on-error', '-d', $new->connstr('postgres'), $dump ], 'pg_restore');

is($new->safe_psql('postgres', q{
	SELECT string_agg(name || ':' || state, ' ' ORDER BY name)
	  FROM streamview.source_list s, streamview.status st WHERE st.source_name = s.name}),
	'dumped:live', 'the restored catalog has the source and its live view');
is($new->safe_psql('postgres', q{SELECT obj_description('public.dumped_n'::regclass, 'pg_class')}),
	'events per minute and key', 'and the view keeps its comment');
is($new->safe_psql('postgres',
		q{SELECT last_value FROM streamview.sources_source_id_seq}), $before{sources},
	'the sources sequence is restored');
is($new->safe_psql('postgres',
		q{SELECT last_value FROM streamview.versions_version_id_seq}), $before{versions},
	'the versions sequence is restored');
is($new->safe_psql('postgres', q{SELECT change_id || ' ' || changes FROM streamview.source_changes}),
	'1 {"options": {"fetch.wait.max.ms": {"new": "50", "old": null}}}', 'and so is the history of changes');
is($new->safe_psql('postgres', qq{SELECT rows > 0 AND streamview.verify_snapshot(snapshot_id)
	FROM streamview.snapshots WHERE snapshot_id = $snapshot}), 't',
	'the snapshot is restored, rows and manifest, and verifies');
view_is($new, 'right after the restore');
is($new->safe_psql('postgres', $archives_q), $old_archives,
	"the archive is restored, partition by partition ($old_archives)");
is($new->safe_psql('postgres', q{SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
	WHERE i.inhparent = 'streamview.archive'::regclass}), '1', 'the archive\'s partition tree is restored');

# The restored source is a consumer of its own: it never commits into the
# original's consumer group, which may still be running elsewhere.
my $new_group = $new->safe_psql('postgres', q{SELECT consumer_group FROM streamview.source_list});
isnt($new_group, $old_group, 'the restored source has a consumer group of its own');
like($new_group, qr/^pg_streamview\.\d+\.postgres\.dumped$/, 'named like the original\'s');
ok($new->wait_for_log(qr/consumer group "\Q$new_group\E"/),
	'and its worker commits to that group, not the original\'s');

# The worker resumes from the stored offsets: the next events are counted
# once, the old ones not again.
send_events(200);
ok(wait_consumed($new, 'dumped_n', 500), 'the restored cluster goes on from the stored offsets');
wait_settled();
view_is($new, 'after 200 more events');
# the oracle: each partition's messages, counted from what was sent
my %per_part;
$per_part{ $_ % 2 }++ for 0 .. $sent - 1;
wait_for($new, qq{SELECT coalesce(sum(messages), 0) = $sent FROM streamview.archives WHERE source_name = 'dumped'});
is($new->safe_psql('postgres', $archives_q),
	join(' ', map { "$_:0:" . ($per_part{$_} - 1) . ":$per_part{$_}" } sort keys %per_part),
	'the restored worker goes on archiving: every offset of each partition once, no gap, no duplicate');
is($new->safe_psql('postgres', q{SELECT count(*) FROM streamview.partitions WHERE NOT balanced}),
	'0', 'every partition ledger balances');

# New objects get ids of their own.
$new->safe_psql('postgres', qq{
	SELECT streamview.create_source('other', '$B', 'other', '{"ts":"timestamptz"}', 'ts');
	SELECT streamview.create_view('public.other_n', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n FROM other GROUP BY 1 \$\$);
});
is($new->safe_psql('postgres', q{SELECT string_agg(name, ' ' ORDER BY name) FROM streamview.source_list}),
	'dumped other', 'create_source and create_view work after the restore');
is($new->safe_psql('postgres', q{SELECT streamview.alter_source('other', options => '{"fetch.wait.max.ms":"60"}')}),
	'2', 'and alter_source, with a change id of its own');
is($new->safe_psql('postgres', q{SELECT streamview.rebuild('dumped_n')}), '2', 'and so does rebuild');
is($new->safe_psql('postgres', qq{SELECT streamview.wait_for('dumped_n', 2, '60 seconds')}), 'caught_up',
	'the rebuild replays the topic');
is($new->safe_psql('postgres', q{
	SELECT count(*) FROM ((TABLE dumped_n_v1 EXCEPT ALL TABLE dumped_n_v2)
	                      UNION ALL (TABLE dumped_n_v2 EXCEPT ALL TABLE dumped_n_v1)) d}), '0',
	'and equals the restored live version, row for row');

# Until the live version has read to the log end of every partition.
sub wait_settled
{
	wait_for($new, q{SELECT count(*) = 0 FROM streamview.partitions
	                 WHERE view_name = 'dumped_n' AND (log_end IS NULL OR next_offset < log_end)});
	return;
}

broker_stop($broker);
$new->stop;
done_testing();
