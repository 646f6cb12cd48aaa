# The archive (two-tier log, docs/archive.md), against the mock broker, which
# silently drops the oldest data of a partition past 5 MiB:
#  - exactly-once: a source with archive => keeps every message it consumed,
#    per partition offsets 0..n-1 once each (no gap, no duplicate), across a
#    SIGKILL of its worker and an immediate restart of PostgreSQL;
#  - a rebuild from 'earliest' after Kafka dropped the early data reads the
#    archive below the log's start and Kafka after it: validate(...,
#    expect_identical => true) passes, and both equal an oracle computed
#    here from the messages produced;
#  - without the data, rebuild refuses before it starts, naming the
#    partition and the offsets; history loaded with COPY into
#    streamview.archive then makes the same rebuild complete, equal to the
#    oracle over the whole history;
#  - retention drops the archive's old tables whole.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use IPC::Run;
use StreamViewTest;

my $P     = 2;
my $PAD   = 'x' x 1000;                 # ~1 KB messages: 6000 per partition pass 5 MiB
my $BASE  = 1_720_000_000_000;          # event times, ms
my $broker = broker_start('b026', { arch => $P, hist => 1 });
my $node   = new_node('n026', batch_size => 300);

sub sql { return $node->safe_psql('postgres', $_[0]) }

# Message i of partition p: a user among 7, an amount, an event time one
# second after the last (a few out of order, within max_out_of_orderness).
my %produced;                            # "$topic/$p" => [[key, value], ...]
sub message
{
	my ($p, $i) = @_;
	my $ms = $BASE + $i * 1000 + ($i % 5 == 3 ? -1500 : 0) + $p * 7;
	my $json = sprintf('{"user_id":"u%d","ts":"%s","amount":%d,"pad":"%s"}',
		($i * 3 + $p) % 7, us_to_iso($ms * 1000), ($i * 13 + $p) % 100, $PAD);
	return [ "k$i", $json, $ms ];
}

sub produce_range
{
	my ($topic, $p, $from, $to) = @_;
	my @msgs;
	for my $i ($from .. $to - 1)
	{
		my $m = message($p, $i);
		push @{ $produced{"$topic/$p"} }, $m;
		push @msgs, [ $p, $m->[0], $m->[1] ];
	}
	produce($broker, $topic, \@msgs);
	return;
}

# The oracle: per (minute window, user), count and sum of the messages
# given (max_out_of_orderness is larger than any disorder: none is late).
sub oracle_rows
{
	my (@msgs) = @_;
	my %agg;
	for my $m (@msgs)
	{
		my $json = decode_json($m->[1]);
		my $w = int($m->[2] / 60_000) * 60;
		my $k = "$w|$json->{user_id}";
		$agg{$k}[0]++;
		$agg{$k}[1] += $json->{amount};
	}
	return join("\n", map { "$_|$agg{$_}[0]|$agg{$_}[1]" } sort keys %agg);
}

sub table_rows
{
	my ($table) = @_;
	return sql("SELECT extract(epoch FROM window_start)::bigint || '|' || user_id || '|' || n || '|' || total "
		  . "FROM $table ORDER BY 1");
}

# The first offset the broker still has in a partition.
sub log_start
{
	my ($topic, $p) = @_;
	my ($out, $err);
	IPC::Run::run([ 'kcat', '-C', '-b', $broker->{addr}, '-t', $topic, '-p', $p, '-o', 'beginning',
			'-c', '1', '-e', '-q', '-f', '%o\n' ], '>', \$out, '2>', \$err)
	  or die "kcat: $err";
	chomp $out;
	return $out;
}

my $options = JSON::PP->new->canonical->encode({ 'session.timeout.ms' => '6000', %{ $broker->{options} // {} } });
my $columns = '{"user_id":"text","ts":"timestamptz","amount":"int","pad":"text"}';
my $query = q{SELECT streamview.tumble(ts, '1 minute') AS window_start, user_id, count(*) AS n, sum(amount) AS total
	FROM %s GROUP BY 1, 2};

######################################################################
# 1. exactly-once into the archive, across SIGKILL and an immediate restart
######################################################################
sql(qq{SELECT streamview.create_source('arch', '$broker->{addr}', 'arch', '$columns', 'ts',
	max_out_of_orderness => '10 seconds', options => '$options', archive => '30 days')});
sql(sprintf(q{SELECT streamview.create_view('arch_sum', $$%s$$)}, sprintf($query, 'arch')));

my $per = 0;                             # messages produced per partition so far
sub chunk
{
	my ($n) = @_;
	produce_range('arch', $_, $per, $per + $n) for 0 .. $P - 1;
	$per += $n;
	return $per * $P;
}

my $total = chunk(1000);
ok(wait_consumed($node, 'arch_sum', $total), "chunk 1 consumed ($total)");
# a snapshot at offset 1000 of each partition, which Kafka drops later
my $snap = sql(q{SELECT streamview.snapshot('arch_sum')});
is(sql(qq{SELECT string_agg(l.key || ':' || (l.value->>'next_offset'), ' ' ORDER BY l.key)
	FROM streamview.snapshots s, jsonb_each(s.ledger) l WHERE s.snapshot_id = $snap}),
	join(' ', map { "$_:1000" } 0 .. $P - 1), 'a snapshot at offset 1000 of each partition');

$total = chunk(1500);
ok(wait_for($node, "SELECT consumed > " . ($total - 2500) . " FROM streamview.status WHERE view_name = 'arch_sum'"),
	'chunk 2 under way');
my $pid = worker_pid($node, 'arch');
kill 'KILL', $pid;
ok(wait_for($node, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_streamview source' AND pid <> $pid"),
	'a new source worker replaced the one killed with SIGKILL');
ok(wait_consumed($node, 'arch_sum', $total), "chunk 2 consumed ($total)");

$total = chunk(1500);
ok(wait_for($node, "SELECT consumed > " . ($total - 2500) . " FROM streamview.status WHERE view_name = 'arch_sum'"),
	'chunk 3 under way');
$node->stop('immediate');
$node->start;
ok(wait_consumed($node, 'arch_sum', $total), "chunk 3 consumed after an immediate restart ($total)");

$total = chunk(1000) for 1 .. 3;         # past 5 MiB per partition: the broker drops the oldest
ok(wait_consumed($node, 'arch_sum', $total), "every chunk consumed ($total)");

my $exact = sql(q{
	SELECT string_agg(format('%s:%s:%s:%s:%s', a.partition, a.n, a.distinct_offsets, a.lo, a.hi), ' ' ORDER BY a.partition)
	  FROM (SELECT partition, count(*) AS n, count(DISTINCT "offset") AS distinct_offsets,
	               min("offset") AS lo, max("offset") AS hi
	          FROM streamview.archive WHERE source_id = (SELECT source_id FROM streamview.sources WHERE name = 'arch')
	         GROUP BY partition) a});
is($exact, join(' ', map { "$_:$per:$per:0:" . ($per - 1) } 0 .. $P - 1),
	"the archive holds offsets 0..${\($per - 1)} of each partition once each: no gap, no duplicate");
is(sql(q{SELECT string_agg(format('%s:%s', partition, consumed), ' ' ORDER BY partition) FROM streamview.partitions
	WHERE view_name = 'arch_sum' AND version = 1}),
	join(' ', map { "$_:$per" } 0 .. $P - 1), 'as many as the live version consumed, per partition');
is(sql(q{SELECT string_agg(format('%s:%s:%s:%s', partition, first_offset, last_offset, messages), ' ' ORDER BY partition)
	FROM streamview.archives WHERE source_name = 'arch'}),
	join(' ', map { "$_:0:" . ($per - 1) . ":$per" } 0 .. $P - 1), 'streamview.archives shows it');
my $m17 = $produced{'arch/1'}[17];
is(sql(q{SELECT convert_from(key, 'UTF8') FROM streamview.archive WHERE partition = 1 AND "offset" = 17}),
	$m17->[0], 'a message is archived with its key');
is(sql(q{SELECT convert_from(payload, 'UTF8') FROM streamview.archive WHERE partition = 1 AND "offset" = 17}),
	$m17->[1], 'its payload');
is(sql(q{SELECT broker_time IS NOT NULL FROM streamview.archive WHERE partition = 1 AND "offset" = 17}),
	't', 'and its broker timestamp');
is(sql(q{SELECT attcompression FROM pg_attribute WHERE attrelid = 'streamview.archive'::regclass AND attname = 'payload'}),
	'l', 'payloads are compressed with lz4');

######################################################################
# 2. a rebuild after Kafka dropped the early data reads the archive
######################################################################
my @starts = map { log_start('arch', $_) } 0 .. $P - 1;
my ($ret, $out, $err);
ok((grep { $_ > 0 } @starts) == $P, "the broker dropped the oldest messages (log starts @starts)");
ok(wait_for($node, "SELECT count(*) = $P FROM streamview.log_starts WHERE log_start > 0"),
	'the source worker recorded the log starts');
is(table_rows('arch_sum_v1'), oracle_rows(map { @{ $produced{"arch/$_"} } } 0 .. $P - 1),
	'the live version equals the oracle');

is(sql(q{SELECT streamview.rebuild('arch_sum')}), '2', 'rebuild from earliest is accepted: the archive has what Kafka lost');
is(sql(q{SELECT streamview.wait_for('arch_sum', 2, '3 minutes')}), 'caught_up', 'the rebuild caught up');
is(sql(q{SELECT string_agg("check" || '=' || passed, ' ' ORDER BY "check")
	FROM streamview.validate('arch_sum', 2, expect_identical => true)}),
	'caught_up=true differences=true ledger=true', 'validate(expect_identical => true) passes');
is(table_rows('arch_sum_v2'), table_rows('arch_sum_v1'), 'the rebuilt table equals the live one');
is(sql(q{SELECT string_agg(format('%s:%s', partition, consumed), ' ' ORDER BY partition) FROM streamview.partitions
	WHERE view_name = 'arch_sum' AND version = 2}),
	join(' ', map { "$_:$per" } 0 .. $P - 1), 'the rebuild read every offset once: archive, then Kafka');

# from a point in time: each partition starts at its offset mark before it,
# which is below the log's start too
my $cut = us_to_iso(($BASE + 1000 * 1000) * 1000);
my $mark_below = sql(qq{SELECT bool_and(m.next_offset < l.log_start) FROM (SELECT DISTINCT ON (partition) partition, next_offset
	FROM streamview.offset_marks WHERE max_event_time < streamview.tumble('$cut', '1 minute')
	ORDER BY partition, max_event_time DESC, next_offset DESC) m JOIN streamview.log_starts l USING (partition)});
is($mark_below, 't', "the marks before $cut are below the log's start");
is(sql(qq{SELECT streamview.rebuild('arch_sum', start_from => '$cut')}), '3', 'rebuild from a point in time');
is(sql(q{SELECT streamview.wait_for('arch_sum', 3, '3 minutes')}), 'caught_up', 'caught up');
is(sql(q{SELECT string_agg("check" || '=' || passed, ' ' ORDER BY "check")
	FROM streamview.validate('arch_sum', 3, expect_identical => true)}),
	'caught_up=true differences=true ledger=true', 'validate(expect_identical => true) passes');
is(table_rows('arch_sum_v3'), table_rows('arch_sum_v1'), 'the table rebuilt from a point in time equals the live one');

# check_source reads the archive below the log's start, then Kafka: every
# message produced counts (none is unavailable), each once
my $check = q{SELECT string_agg(reason || ':' || messages, ' ' ORDER BY reason) FROM streamview.check_source('%s') WHERE messages > 0};
is(sql(sprintf($check, 'arch')), 'ok:' . ($per * $P),
	"check_source counts every message of the archive and of Kafka (${\($per * $P)}), none unavailable");

# its progress: a NOTICE every streamview.progress_messages messages
my ($pret, $pout, $perr) = $node->psql('postgres',
	"SET streamview.progress_messages = 1000; " . sprintf($check, 'arch'));
is($pret, 0, 'check_source with streamview.progress_messages = 1000');
my @progress = $perr =~ /NOTICE:  check_source: source "arch": (\d+) messages read; partition \d of $P at offset \d+ of \d+/g;
# (one every 10 seconds too, which restarts the count, on a slow machine)
my @gaps = map { $progress[$_] - ($_ ? $progress[$_ - 1] : 0) } 0 .. $#progress;
cmp_ok(scalar(@progress), '>=', int($per * $P / 1000), 'reports its progress at least every 1000 messages read');
is(scalar(grep { $_ < 1 || $_ > 1000 } @gaps), 0, 'with the count read so far, 1000 more each time at most')
  or diag("@progress");

# restore from that snapshot: its offsets are below the log's start, the
# archive has what Kafka lost
ok($starts[0] > 1000, "partition 0's log starts after the snapshot's offset ($starts[0])");
ok(wait_for($node, "SELECT log_start = $starts[0] FROM streamview.log_starts WHERE partition = 0"),
	'the source worker recorded it');
is(sql(qq{SELECT streamview.restore('arch_sum', $snap)}), '4', 'restore from a snapshot below the log\'s start is accepted');
is(sql(q{SELECT streamview.wait_for('arch_sum', 4, '3 minutes')}), 'caught_up', 'the restored version caught up');
is(table_rows('arch_sum_v4'), table_rows('arch_sum_v1'), 'it equals the live version: the archive filled the gap');
sql(q{SELECT streamview.drop_version('arch_sum', 4)});

# the archive loses offsets 1000 .. log start - 1 of partition 0: the same
# restore is refused before it starts, naming them
sql(qq{DELETE FROM streamview.archive WHERE partition = 0 AND "offset" >= 1000 AND "offset" < $starts[0]
	AND source_id = (SELECT source_id FROM streamview.sources WHERE name = 'arch')});
my $versions = sql(q{SELECT count(*) FROM streamview.versions WHERE view_name = 'arch_sum'});
($ret, $out, $err) = $node->psql('postgres', qq{SELECT streamview.restore('arch_sum', $snap)});
isnt($ret, 0, 'restore is refused when neither Kafka nor the archive has its offsets');
like($err, qr/ERROR:  cannot restore snapshot $snap of stream view "arch_sum": its replay would miss messages/,
	'with an error that says so');
like($err, qr/DETAIL:  Neither the topic's log nor the source's archive has partition 0: offsets 1000 to ${\($starts[0] - 1)}\./,
	'naming the partition and the offsets');
like($err, qr/HINT:  .*accept_data_loss => true/, 'and a hint');
is(sql(q{SELECT count(*) FROM streamview.versions WHERE view_name = 'arch_sum'}), $versions, 'no version was made');
my $lossy = sql(qq{SELECT streamview.restore('arch_sum', $snap, accept_data_loss => true)});
ok($lossy > 0, 'restore(accept_data_loss => true) is accepted');
is(sql(qq{SELECT accept_data_loss FROM streamview.versions WHERE view_name = 'arch_sum' AND version = $lossy}), 't',
	'and the version says so');
sql(qq{SELECT streamview.drop_version('arch_sum', $lossy)});

######################################################################
# 3. refusal without the data; COPY-loaded history then replays
######################################################################
# history that predates the source: the broker has dropped its start before
# any source read it
produce_range('hist', 0, 0, 3000);
produce_range('hist', 0, 3000, 7000);
my $hist_start = log_start('hist', 0);
ok($hist_start > 0, "the broker dropped the start of topic hist (log start $hist_start)");
sql(qq{SELECT streamview.create_source('hist', '$broker->{addr}', 'hist', '$columns', 'ts',
	max_out_of_orderness => '10 seconds', options => '$options', archive => '30 days')});
sql(sprintf(q{SELECT streamview.create_view('hist_sum', $$%s$$)}, sprintf($query, 'hist')));
ok(wait_consumed($node, 'hist_sum', 7000 - $hist_start), 'the live version read what the broker still has');
ok(wait_for($node, "SELECT log_start = $hist_start FROM streamview.log_starts l JOIN streamview.sources s USING (source_id) WHERE s.name = 'hist'"),
	'its log start is recorded');

($ret, $out, $err) = $node->psql('postgres', q{SELECT streamview.rebuild('hist_sum')});
isnt($ret, 0, 'rebuild from earliest is refused: the early messages are nowhere');
like($err, qr/ERROR:  cannot rebuild stream view "hist_sum": its replay would miss messages/, 'with an error that says so');
like($err, qr/DETAIL:  Neither the topic's log nor the source's archive has partition 0: offsets 0 to ${\($hist_start - 1)}\./,
	'naming the partition and the offsets');
like($err, qr/HINT:  .*accept_data_loss => true/, 'and a hint');
is(sql(q{SELECT count(*) FROM streamview.versions WHERE view_name = 'hist_sum'}), '1', 'no version was made');
is(sql(sprintf($check, 'hist')), 'ok:' . (7000 - $hist_start) . " unavailable:$hist_start",
	'check_source without an archive of the early data counts its offsets unavailable');
is(sql(q{SELECT sample_partition || ':' || sample_offset FROM streamview.check_source('hist') WHERE reason = 'unavailable'}),
	'0:0', 'the first unavailable offset is the sample');

# a restore needs only what follows its snapshot: one taken at the log's end
# is accepted though the early messages are nowhere (the check is against
# the snapshot's offsets, not the start of the log)
my $hsnap = sql(q{SELECT streamview.snapshot('hist_sum')});
is(sql(qq{SELECT streamview.restore('hist_sum', $hsnap)}), '2', 'restore from a snapshot above the log start is accepted');
is(sql(q{SELECT next_offset FROM streamview.offsets o JOIN streamview.versions v USING (version_id)
	WHERE v.view_name = 'hist_sum' AND v.version = 2 AND o.partition = 0}), '7000', 'its replay starts at the snapshot\'s offset');
sql(q{SELECT streamview.drop_version('hist_sum', 2)});
my $hv = 1 + sql(q{SELECT max(version) FROM streamview.versions WHERE view_name = 'hist_sum'});

# load the history with COPY, in the documented format
my $sid = sql(q{SELECT source_id FROM streamview.sources WHERE name = 'hist'});
my $copy = '';
for my $i (0 .. $hist_start - 1)
{
	my $m = $produced{'hist/0'}[$i];
	$copy .= join("\t", $sid, 0, $i, us_to_iso($m->[2] * 1000), '\\\\x' . unpack('H*', $m->[0]), '\\\\x' . unpack('H*', $m->[1])) . "\n";
}
$node->safe_psql('postgres', qq{COPY streamview.archive (source_id, partition, "offset", broker_time, key, payload) FROM STDIN;
$copy\\.
});
is(sql(q{SELECT first_offset || ':' || last_offset FROM streamview.archives WHERE source_name = 'hist'}),
	'0:6999', 'the archive now holds the whole history');
is(sql(sprintf($check, 'hist')), 'ok:7000', 'check_source reads the loaded history, then Kafka: all 7000 messages');

is(sql(q{SELECT streamview.rebuild('hist_sum')}), $hv, 'the same rebuild is accepted now');
is(sql(qq{SELECT streamview.wait_for('hist_sum', $hv, '3 minutes')}), 'caught_up', 'and caught up');
is(table_rows("hist_sum_v$hv"), oracle_rows(@{ $produced{'hist/0'} }),
	'the rebuilt version equals the oracle over the whole history, loaded and live');
isnt(table_rows('hist_sum_v1'), table_rows("hist_sum_v$hv"), 'which the live version never saw');

# headers are archived too: [[name, base64 value], ...]
my ($kout, $kerr);
IPC::Run::run([ 'kcat', '-P', '-b', $broker->{addr}, '-t', 'hist', '-p', '0', '-H', 'trace=abc', '-H', 'zone=eu-1' ],
	'<', \($produced{'hist/0'}[0][1] . "\n"), '>', \$kout, '2>', \$kerr) or die "kcat: $kerr";
ok(wait_consumed($node, 'hist_sum', 7001 - $hist_start), 'a message with headers consumed');
is(sql(q{SELECT headers FROM streamview.archive WHERE source_id = (SELECT source_id FROM streamview.sources WHERE name = 'hist')
	AND "offset" = 7000}), '[["trace", "YWJj"], ["zone", "ZXUtMQ=="]]', 'its headers are archived, values in base64');

######################################################################
# 4. retention drops whole tables
######################################################################
# a source with a short archive: tables of one second, kept four
sql(qq{SELECT streamview.create_source('short', '$broker->{addr}', 'hist', '$columns', 'ts',
	max_out_of_orderness => '10 seconds', options => '$options', archive => '4 seconds')});
sql(sprintf(q{SELECT streamview.create_view('short_sum', $$%s$$)}, sprintf($query, 'short')));
my $short = sql(q{SELECT source_id FROM streamview.sources WHERE name = 'short'});
ok(wait_consumed($node, 'short_sum', 7000 - $hist_start), 'a source with archive => 4 seconds read the topic');
ok(wait_for($node, qq{SELECT count(*) = 0 FROM streamview.archive WHERE source_id = $short}),
	'after the archive interval, what it archived is gone');
my $tables = qq{SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
	WHERE i.inhparent = 'streamview_internal.archive_$short'::regclass AND c.relname !~ '_default\$'};
my $oldest = qq{SELECT min(split_part(c.relname, '_', 3)::bigint) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
	WHERE i.inhparent = 'streamview_internal.archive_$short'::regclass AND c.relname !~ '_default\$'};
ok(wait_for($node, "SELECT ($oldest) >= extract(epoch FROM now() - interval '6 seconds')"),
	"its tables older than the interval were dropped (the oldest left starts within 6 s)");
cmp_ok(sql($tables), '<=', 8, 'a few tables of one second are left: the kept ones and the next ones');

is(sql(q{SELECT streamview.alter_source('short', archive => 'off') IS NOT NULL}), 't', "alter_source(archive => 'off')");
is(sql(qq{SELECT to_regclass('streamview_internal.archive_$short') IS NULL}), 't', 'drops the source\'s archive');
sql(q{SELECT streamview.drop_source('arch', cascade => true)});
is(sql(q{SELECT count(*) FROM streamview.archive a WHERE NOT EXISTS (SELECT 1 FROM streamview.sources s WHERE s.source_id = a.source_id)}),
	'0', 'drop_source drops its archive');

done_testing();
