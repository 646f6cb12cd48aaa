# Sources that evolve, against the mock broker.
#
# 1. alter_source(add_columns) on a running source: the live view goes on,
#    and a rebuild whose query uses the new column reads the old events
#    with its default and the new ones with their values.
# 2. check_source counts what a definition (the source's, or a candidate)
#    makes of every message of the history, per reason, with a sample of
#    each, and changes nothing.
# 3. A definition mended (a column no view reads retyped), a rebuild made
#    after the mend, then replay_dead_letters: every version over the source
#    then equals what a rebuild with the mended definition computes,
#    too-late dead letters included, and the rebuild, which read the
#    mended messages itself, gets none of them twice; a second replay
#    applies nothing.  Two replays at once: the second waits, then applies nothing.
# 4. A replay that could not make the view equal a rebuild (a mended
#    message would make a later one too late) is refused, changing nothing.
#
# The oracle is computed here from what the test produced: per partition,
# in offset order, a message reads or not with a definition, and a
# readable one is too late when its event time is before the partition's
# highest event time so far minus the view's allowed lateness (the
# source's max_out_of_orderness is 0); the view's rows are then summed.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use StreamViewTest;

my $P      = 2;
my $broker = broker_start('b026', { ev => $P, ev2 => 1 });
my $node   = new_node('n026', batch_size => 7);
my $B      = $broker->{addr};
my $json   = JSON::PP->new->canonical;
my $opts   = $json->encode($broker->{options});
my $LATE_S = 30;    # the views' allowed lateness

sub sql { return $node->safe_psql('postgres', $_[0]) }

# Every message produced: [partition, offset, payload, kind, %fields].
# kind: ok, invalid_json, missing_field, bad_n (n is not a number, never
# mended), bad_code (code is not an int: readable once code is text),
# future (event time far ahead of the broker's timestamp).
my @msgs;
my %next_offset;
my $base_ms = 1_714_564_800_000;    # 2024-05-01 12:00 UTC
my $future_ms = (time() + 10 * 86400) * 1000;

sub message
{
	my ($i, %o) = @_;
	my $p = $i % $P;
	my $kind = $o{kind} // 'ok';
	my $ts = $o{ts} // $base_ms + $i * 1000;
	my %f = (ts => $ts, k => 'k' . ($i % 3), n => $i, code => $o{code} // $i);
	$f{channel} = $o{channel} if defined $o{channel};
	my $payload =
	    $kind eq 'invalid_json'  ? 'not json {'
	  : $kind eq 'missing_field' ? $json->encode({ k => $f{k}, n => $i })
	  : $kind eq 'bad_n'         ? $json->encode({ %f, n => 'many' })
	  : $kind eq 'future'        ? $json->encode({ %f, ts => $future_ms })
	  :                            $json->encode(\%f);
	my $m = { i => $i, p => $p, offset => $next_offset{$p}++, payload => $payload, kind => $kind, %f };
	push @msgs, $m;
	return [ $p, $f{k}, $payload ];
}

sub send_range
{
	my ($from, $to, $special) = @_;
	produce($broker, 'ev', [ map { message($_, %{ $special->{$_} // {} }) } $from .. $to ]);
	return;
}

# Does message $m read with a definition ('old': code is an int; 'new': text)?
sub readable
{
	my ($m, $def) = @_;
	return 0 if $m->{kind} =~ /^(invalid_json|missing_field|bad_n|future)$/;
	return 0 if $m->{code} !~ /^-?\d+$/ && $def eq 'old';
	return 1;
}

# The rows a view over the messages read with $def holds, as "minute k[ channel] count sum".
sub oracle
{
	my ($def, $by_channel) = @_;
	my (%rows, %max);
	for my $m (sort { $a->{p} <=> $b->{p} || $a->{offset} <=> $b->{offset} } @msgs)
	{
		next unless readable($m, $def);
		my $late = defined $max{ $m->{p} } && $m->{ts} < $max{ $m->{p} } - $LATE_S * 1000;
		$max{ $m->{p} } = $m->{ts} if !defined $max{ $m->{p} } || $m->{ts} > $max{ $m->{p} };
		next if $late;
		my $key = int($m->{ts} / 60_000) * 60 . " $m->{k}";
		$key .= ' ' . ($m->{channel} // 'web') if $by_channel;
		$rows{$key}[0]++;
		$rows{$key}[1] += $m->{n};
	}
	return join("\n", map { "$_ $rows{$_}[0] $rows{$_}[1]" } sort keys %rows);
}

sub table_rows
{
	my ($view, $version, $by_channel) = @_;
	my $table = sql("SELECT table_name FROM streamview.versions WHERE view_name = '$view' AND version = $version");
	my $rows = query_rows($node,
		"SELECT extract(epoch FROM window_start)::bigint, k" . ($by_channel ? ', channel' : '')
		  . ", c, total FROM $table");
	return join("\n", sort map { join(' ', @$_) } @$rows);
}

sub consumed_by_all
{
	my ($n) = @_;
	return wait_for($node,
		"SELECT bool_and(x.c >= $n) FROM (SELECT sum(o.consumed) AS c FROM streamview.offsets o "
		  . "JOIN streamview.versions v USING (version_id) WHERE v.state IN ('live', 'caught_up') "
		  . "GROUP BY o.version_id) x");
}

sql(qq{SELECT streamview.create_source('ev', '$B', 'ev',
	'{"k":"text","n":"bigint","code":"int","ts":"timestamptz"}', 'ts', options => '$opts')});
sql(qq{SELECT streamview.create_view('ev_sum', \$\$
	SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS c, sum(n) AS total
	FROM ev GROUP BY 1, 2 \$\$, allowed_lateness => '$LATE_S seconds')});

# ---------------------------------------------------------------- 1. add_columns
# Old events: no channel; some unreadable; one too late (i = 40); codes
# that are not ints (16, 21, 30: the last also too late, by its time).
send_range(0, 59, {
	7  => { kind => 'invalid_json' },
	10 => { kind => 'missing_field' },
	13 => { kind => 'bad_n' },
	16 => { code => 'X16' },
	21 => { code => 'X21' },
	25 => { kind => 'future' },
	30 => { code => 'X30', ts => $base_ms + 30_000 - 300_000 },
	40 => { ts => $base_ms + 40_000 - 300_000 },
});
ok(consumed_by_all(60), 'the first 60 messages are consumed');

my $change = sql(q{SELECT streamview.alter_source('ev', add_columns => '{"channel":{"type":"text","default":"web"}}')});
ok($change ne '', "alter_source(add_columns) records change $change");
is(sql("SELECT changes FROM streamview.source_changes WHERE change_id = $change"),
	'{"add_columns": {"channel": {"path": "channel", "type": "text", "default": "web", "required": false}}}',
	'source_changes records the column added');

# New events carry a channel (or not: the default), one code that is not an int.
send_range(60, 99, {
	(map { ($_ => { channel => (qw(app shop web))[ $_ % 3 ] }) } grep { $_ % 4 } 60 .. 99),
	70 => { code => 'Y70', channel => 'app' },
});
ok(consumed_by_all(100), 'the live view goes on after add_columns: 100 messages consumed');
is(table_rows('ev_sum', 1), oracle('old'), 'live version 1 equals the oracle (old definition)');

# A rebuild that groups by the new column, over every event.
is(sql(q{SELECT streamview.rebuild('ev_sum', query => $$
	SELECT streamview.tumble(ts, '1 minute') AS window_start, k, channel, count(*) AS c, sum(n) AS total
	FROM ev GROUP BY 1, 2, 3 $$)}), '2', 'rebuild with channel is version 2');
is(sql("SELECT streamview.wait_for('ev_sum', 2, '2 minutes')"), 'caught_up', 'version 2 caught up');
ok(consumed_by_all(100), 'both versions consumed 100 messages');
is(table_rows('ev_sum', 2, 1), oracle('old', 1),
	'version 2 equals the oracle: old events read with channel = web');
is(sql("SELECT (source_definition->>'change_id')::bigint = $change AND source_definition->'columns' ? 'channel' "
	  . "AND NOT (SELECT source_definition->'columns' ? 'channel' FROM streamview.versions "
	  . "WHERE view_name = 'ev_sum' AND version = 1) FROM streamview.versions WHERE view_name = 'ev_sum' AND version = 2"),
	't', 'each version records the source definition it was made with');

# ---------------------------------------------------------------- 2. check_source
sub expected_check
{
	my ($def) = @_;
	my %n;
	my %sample;
	for my $m (sort { $a->{p} <=> $b->{p} || $a->{offset} <=> $b->{offset} } @msgs)
	{
		my $r = readable($m, $def) ? 'ok'
		  : $m->{kind} eq 'invalid_json'  ? 'invalid_json'
		  : $m->{kind} eq 'missing_field' ? 'missing_field'
		  : $m->{kind} eq 'future'        ? 'future_time'
		  :                                 'invalid_value';
		$n{$r}++;
		$sample{$r} //= "$m->{p} $m->{offset}";
	}
	return join("\n", map { "$_ " . ($n{$_} // 0) . ' ' . ($sample{$_} // 'NULL NULL') }
		qw(ok invalid_json missing_field invalid_value future_time unavailable));
}

sub check_rows
{
	my ($columns) = @_;
	my $arg = defined $columns ? ", columns => '$columns'" : '';
	my $rows = query_rows($node, "SELECT reason, messages, sample_partition, sample_offset "
		  . "FROM streamview.check_source('ev'$arg)");
	return join("\n", map { join(' ', @$_) } @$rows);
}

my $state_sql = "SELECT (SELECT count(*) FROM streamview.dead_letters) || '/' || "
  . "(SELECT count(*) FROM streamview.source_changes) || '/' || "
  . "(SELECT sum(consumed) FROM streamview.offsets)";
my $before = sql($state_sql);
is(check_rows(undef), expected_check('old'), 'check_source with the current definition: counts and samples per reason');
my $candidate = '{"k":"text","n":"bigint","code":"text","ts":"timestamptz","channel":{"type":"text","default":"web"}}';
is(check_rows($candidate), expected_check('new'), 'check_source with code as text: the codes read');
like(sql("SELECT sample_error FROM streamview.check_source('ev') WHERE reason = 'invalid_value'"),
	qr/column "code"/, 'the sample says what is wrong with it');
is(sql($state_sql), $before, 'check_source changed nothing (dead letters, changes, ledger)');
is(sql("SELECT count(*) FROM streamview.source_columns c JOIN streamview.sources s USING (source_id) "
	  . "WHERE s.name = 'ev' AND c.name = 'code' AND c.type = 'int'::regtype"), '1',
	'nor the source\'s columns');
my ($rc, $out, $err) = $node->psql('postgres',
	"SET statement_timeout = 1; SELECT * FROM streamview.check_source('ev')");
like($err, qr/canceling statement due to statement timeout/, 'check_source honours statement_timeout');
is(sql("SELECT count(*) FROM streamview.check_source('ev')"), '6', 'and the session reads again after it');

# ---------------------------------------------------------------- 3. replay_dead_letters
like(sql(q{SELECT count(*) FROM streamview.dead_letters WHERE source_name = 'ev' AND view_name IS NULL}),
	qr/^8$/, 'eight dead letters of the source before the mend');
sql(qq{SELECT streamview.alter_source('ev', columns => '$candidate')});
is(sql("SELECT changes->'alter_columns'->'code'->'new'->>'type' FROM streamview.source_changes "
	  . "ORDER BY change_id DESC LIMIT 1"), 'text', 'code retyped to text: no view reads it');

# A rebuild made after the mend reads the codes itself: the replay must not
# apply them to it a second time.
is(sql("SELECT streamview.rebuild('ev_sum')"), '3', 'a rebuild of the live query is version 3');
is(sql("SELECT streamview.wait_for('ev_sum', 3, '2 minutes')"), 'caught_up', 'version 3 caught up');
ok(consumed_by_all(100), 'every version consumed 100 messages');
is(table_rows('ev_sum', 3), oracle('new'), 'version 3, made after the mend, equals the oracle');

# Two replays at once: the second waits for the first (the source's row
# lock), then finds nothing left to apply.
my $first = $node->background_psql('postgres');
is($first->query_safe("BEGIN; SELECT streamview.replay_dead_letters('ev');"), '4',
	'replay_dead_letters: the four codes read now');
my $second = $node->background_psql('postgres');
$second->query_until(qr/started/, "\\echo started\nSELECT 'second:' || streamview.replay_dead_letters('ev');\n");
ok(wait_for($node, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
	  . "AND query LIKE 'SELECT ''second:''%'", '1'), 'a second replay at the same time waits for the first');
$first->query_safe('COMMIT');
$first->quit;
like($second->query_safe("SELECT 'done'"), qr/^second:0\ndone$/,
	'then applies nothing: no dead letter is applied twice');
$second->quit;
is(sql("SELECT string_agg(reason, ',' ORDER BY reason) FROM streamview.dead_letters "
	  . "WHERE source_name = 'ev' AND view_name IS NULL"), 'future_time,invalid_json,invalid_value,missing_field',
	'the dead letters that still do not read stay');
is(sql("SELECT string_agg(view_name || ' v' || version, ',' ORDER BY version) "
	  . "FROM streamview.dead_letters WHERE source_name = 'ev' AND reason = 'too_late' AND \"offset\" = 15 "
	  . "AND partition = 0"), 'ev_sum v1,ev_sum v2,ev_sum v3',
	'the mended message 30 is too late at its offset: replayed as such to versions 1 and 2');
is(sql("SELECT string_agg(changed_by || ':' || (changes->'replay_dead_letters'->>'replayed'), ',' ORDER BY change_id) "
	  . "FROM streamview.source_changes WHERE changes ? 'replay_dead_letters'"),
	'postgres:4,postgres:0', 'each replay is recorded, with who and what');

send_range(100, 119);
ok(consumed_by_all(120), 'the workers go on after the replay: 120 messages consumed');
is(table_rows('ev_sum', 1), oracle('new'), 'live version 1 equals the oracle with the mended definition');
is(table_rows('ev_sum', 2, 1), oracle('new', 1), 'version 2 too');
is(table_rows('ev_sum', 3), oracle('new'), 'version 3 too: nothing applied twice');
is(sql("SELECT bool_and(consumed = applied + duplicates + too_late + dead_lettered) FROM streamview.offsets"),
	't', 'every ledger balances');

is(sql("SELECT streamview.replay_dead_letters('ev')"), '0', 'a second replay applies nothing');
is(table_rows('ev_sum', 1), oracle('new'), 'and the view is unchanged');

is(sql("SELECT string_agg(\"check\" || '=' || passed, ' ' ORDER BY \"check\") "
	  . "FROM streamview.validate('ev_sum', 3, expect_identical => true)"),
	'caught_up=true differences=true ledger=true', 'validate: the live view equals the rebuild');
is(sql("SELECT string_agg(o.too_late || '/' || o.dead_lettered, ',' ORDER BY v.version, o.partition) "
	  . "FROM streamview.offsets o JOIN streamview.versions v USING (version_id) WHERE v.view_name = 'ev_sum'"),
	join(',', ('2/1,0/3') x 3), 'the ledgers of the live version, version 2 and the rebuild agree');

# ---------------------------------------------------------------- 4. a replay that cannot be exact
# Message 1 is a dead letter an hour ahead of the others; message 2, ten
# seconds after message 0, was applied.  With message 1 read, message 2
# would have been too late: the replay refuses, and changes nothing.
sql(qq{SELECT streamview.create_source('ev2', '$B', 'ev2', '{"k":"text","n":"bigint","code":"int","ts":"timestamptz"}',
	'ts', options => '$opts')});
sql(q{SELECT streamview.create_view('ev2_n', $$
	SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS c FROM ev2 GROUP BY 1, 2 $$)});
produce($broker, 'ev2', [
	[ 0, 'a', $json->encode({ ts => $base_ms, k => 'a', n => 1, code => 1 }) ],
	[ 0, 'a', $json->encode({ ts => $base_ms + 3_600_000, k => 'a', n => 1, code => 'X' }) ],
	[ 0, 'a', $json->encode({ ts => $base_ms + 10_000, k => 'a', n => 1, code => 2 }) ] ]);
ok(wait_consumed($node, 'ev2_n', 3), 'ev2: three messages consumed, one a dead letter');
sql(q{SELECT streamview.alter_source('ev2', columns => '{"k":"text","n":"bigint","code":"text","ts":"timestamptz"}')});
($rc, $out, $err) = $node->psql('postgres', "SELECT streamview.replay_dead_letters('ev2')");
like($err, qr/stream view "ev2_n" would not equal a rebuild.*\n.*offset 2 would be too late for version 1, where it was applied/,
	'the replay is refused: message 2 would have been too late');
like($err, qr/HINT:  Rebuild the view/, 'with a hint to rebuild');
is(sql(q{SELECT count(*) FROM streamview.dead_letters WHERE source_name = 'ev2'}) . ' '
	  . sql(q{SELECT applied || '/' || dead_lettered FROM streamview.status WHERE view_name = 'ev2_n'}),
	'1 2/1', 'and nothing changed');

done_testing();
