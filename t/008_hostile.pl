# Hostile input: a corpus of bad messages of every kind, between good ones,
# produced in chunks with the source worker killed (SIGKILL) between them.
# Each bad message is a dead letter with the reason written here (the spec
# is DESIGN.md's; the expectations are written by hand, not taken from the
# extension), the good ones are all applied once, nothing stops the source,
# and every partition's ledger balances.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use StreamViewTest;

my $broker = broker_start('b008', { hostile => 1 });
my $node   = new_node('n008', batch_size => 7);
my $B      = $broker->{addr};

$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('hostile', '$B', 'hostile', '{
	    "event_id": "text",
	    "user_id":  {"type": "text", "required": true},
	    "amount":   "bigint",
	    "qty":      {"type": "integer", "path": "meta.qty", "default": 1},
	    "price":    "double precision",
	    "total":    "numeric",
	    "flag":     "boolean",
	    "ts":       "timestamptz"}', 'ts', event_id => 'event_id');
	SELECT streamview.create_view('public.hostile_n', \$\$
	  SELECT streamview.tumble(ts, '1 hour') AS window_start, user_id, count(*) AS n,
	         sum(amount) AS amount, sum(qty) AS qty, sum(price) AS price, sum(total) AS total
	    FROM hostile GROUP BY 1, 2 \$\$, allowed_lateness => '1 day');
});

my $now_ms = int($node->safe_psql('postgres', q{SELECT extract(epoch FROM now()) * 1000}));
my $second = 0;
sub ts { return sprintf('2024-05-01T12:%02d:%02dZ', int($second / 60), $second++ % 60) }
sub obj { my (%f) = @_; return JSON::PP->new->canonical->encode({ user_id => 'bad', ts => ts(), %f }) }

# [kind, key, payload (bytes; undef: a null payload), expected reason, or
# 'applied' for a message that is odd but readable]
my @corpus = (
	[ 'invalid UTF-8',            undef, qq({"user_id":"\xff\xfe","ts":"${\ts()}"}),        'invalid_json' ],
	[ 'truncated JSON',           undef, '{"user_id":"u","ts":"2024-',                      'invalid_json' ],
	[ 'trailing garbage',         undef, obj() . ' xyz',                                    'invalid_json' ],
	[ 'two objects',              undef, obj() . obj(),                                     'invalid_json' ],
	[ '10,000-deep nesting',      undef, '{"x":' . ('[' x 10_000) . (']' x 10_000) . '}',  'invalid_json' ],
	[ 'empty payload',            undef, '',                                                'invalid_json' ],
	[ 'null payload (tombstone)', undef, undef,                                             'invalid_json' ],
	[ 'whitespace only',          undef, "  \n\t ",                                         'invalid_json' ],
	[ 'an array',                 undef, '[1,2,3]',                                         'invalid_json' ],
	[ 'a string',                 undef, '"hello"',                                         'invalid_json' ],
	[ 'a number',                 undef, '42',                                              'invalid_json' ],
	[ 'JSON null',                undef, 'null',                                            'invalid_json' ],
	[ 'NUL byte',                 undef, qq({"user_id":"a\0b","ts":"${\ts()}"}),            'invalid_json' ],
	[ 'byte order mark',          undef, "\xEF\xBB\xBF" . obj(),                            'invalid_json' ],
	[ 'single quotes',            undef, q({'user_id':'u'}),                                'invalid_json' ],
	[ 'a comment',                undef, '{"user_id":"u" /* hi */}',                        'invalid_json' ],
	[ 'unescaped control char',   undef, qq({"user_id":"a\x01b","ts":"${\ts()}"}),          'invalid_json' ],
	[ 'lone surrogate escape',    undef, qq({"user_id":"\\ud800","ts":"${\ts()}"}),         'invalid_json' ],
	[ 'NaN literal',              undef, qq({"user_id":"u","price":NaN,"ts":"${\ts()}"}),   'invalid_json' ],
	[ 'leading zeros',            undef, qq({"user_id":"u","amount":007,"ts":"${\ts()}"}),  'invalid_json' ],
	[ 'duplicate key',            undef, qq({"user_id":"u","amount":1,"amount":2,"ts":"${\ts()}"}), 'invalid_json' ],
	[ 'duplicate nested key',     undef, qq({"user_id":"u","meta":{"qty":1},"meta":{"qty":2},"ts":"${\ts()}"}), 'invalid_json' ],
	[ 'bigint overflow',          undef, obj(amount => 1e30),                               'invalid_value' ],
	[ 'integer overflow',         undef, obj(meta => { qty => 3_000_000_000 }),              'invalid_value' ],
	[ 'float for an integer',     undef, obj(meta => { qty => 1.5 }),                        'invalid_value' ],
	[ 'exponent for a bigint',    undef, qq({"user_id":"u","amount":1e3,"ts":"${\ts()}"}),  'invalid_value' ],
	[ 'string in a numeric column', undef, obj(amount => 'abc'),                            'invalid_value' ],
	[ 'hex string',               undef, obj(amount => '0x10'),                             'invalid_value' ],
	[ '"NaN" in a float column',  undef, obj(price => 'NaN'),                               'invalid_value' ],
	[ '"Infinity" in a float column', undef, obj(price => 'Infinity'),                      'invalid_value' ],
	[ '"NaN" in a numeric column', undef, obj(total => 'NaN'),                              'invalid_value' ],
	[ '"-Infinity" in a numeric column', undef, obj(total => '-Infinity'),                  'invalid_value' ],
	[ 'float out of range',       undef, qq({"user_id":"u","price":1e400,"ts":"${\ts()}"}), 'invalid_value' ],
	[ 'object for a scalar',      undef, obj(amount => { x => 1 }),                         'invalid_value' ],
	[ 'array for a scalar',       undef, obj(amount => [1]),                                'invalid_value' ],
	[ 'event_id an object',       undef, obj(event_id => { a => 1 }),                       'invalid_value' ],
	[ 'boolean word',             undef, obj(flag => 'maybe'),                              'invalid_value' ],
	[ 'missing event time',       undef, '{"user_id":"u"}',                                 'missing_field' ],
	[ 'null event time',          undef, '{"user_id":"u","ts":null}',                       'missing_field' ],
	[ 'missing required field',   undef, qq({"ts":"${\ts()}"}),                             'missing_field' ],
	[ 'null required field',      undef, qq({"user_id":null,"ts":"${\ts()}"}),              'missing_field' ],
	[ 'impossible date',          undef, '{"user_id":"u","ts":"2024-02-30T00:00:00Z"}',     'invalid_value' ],
	[ 'time word',                undef, '{"user_id":"u","ts":"now"}',                      'invalid_value' ],
	[ 'offset out of range',      undef, '{"user_id":"u","ts":"2024-05-01T12:00:00+25:00"}', 'invalid_value' ],
	[ 'epoch ms as a string',     undef, '{"user_id":"u","ts":"1714564805000"}',            'invalid_value' ],
	[ 'epoch ms far too large',   undef, '{"user_id":"u","ts":1e20}',                       'invalid_value' ],
	[ 'year 0',                   undef, '{"user_id":"u","ts":"0000-01-01T00:00:00Z"}',     'invalid_value' ],
	[ 'before year 1 (epoch ms)', undef, '{"user_id":"u","ts":-62135596800001}',            'invalid_value' ],
	[ 'after year 9999',          undef, '{"user_id":"u","ts":"10000-01-01T00:00:00Z"}',    'invalid_value' ],
	[ 'year 99999',               undef, '{"user_id":"u","ts":"99999-01-01T00:00:00Z"}',    'invalid_value' ],
	[ 'far ahead of its broker time', undef, ('{"user_id":"u","ts":' . ($now_ms + 3 * 86_400_000) . '}'), 'future_time' ],
	# odd but readable: applied
	[ 'huge key',                 'k' x 100_000, obj(user_id => 'odd'),                     'applied' ],
	[ 'empty key',                '', obj(user_id => 'odd'),                                'applied' ],
	[ 'unknown fields, 5,000 of them', undef,
	  '{' . join(',', map { "\"f$_\":$_" } 1 .. 5000) . qq(,"user_id":"odd","ts":"${\ts()}"}), 'applied' ],
	[ '60 levels of unknown nesting', undef,
	  qq({"user_id":"odd","ts":"${\ts()}","x":) . ('{"y":' x 60) . '1' . ('}' x 60) . '}', 'applied' ],
	[ 'a 500 kB string field',    undef, obj(user_id => 'odd', note => 'z' x 500_000),      'applied' ],
	[ 'meta not an object',       undef, obj(user_id => 'odd', meta => 5),                  'applied' ],
	[ 'numbers as strings',       undef, obj(user_id => 'odd', amount => '12', price => '1.5'), 'applied' ],
);
cmp_ok(scalar(grep { $_->[3] ne 'applied' } @corpus), '>=', 40, 'the corpus has at least 40 kinds of bad message');

# Produce [key, payload] pairs in order to partition 0.  kcat with its own
# delimiters, so that payloads may hold newlines, tabs and NUL bytes; null
# payloads (tombstones) go through -Z on their own.
sub send_raw
{
	my (@msgs) = @_;
	for my $m (@msgs)
	{
		my ($key, $value) = @$m;
		my $in = ($key // '') . "\x1e" . ($value // '') . "\x1d";
		my ($o, $e);
		IPC::Run::run([ 'kcat', '-P', '-b', $B, '-t', 'hostile', '-p', '0', '-K', "\x1e", '-D', "\x1d",
				defined $value ? () : ('-Z') ], '<', \$in, '>', \$o, '2>', \$e)
		  or die "kcat: $e";
	}
	return;
}

# Good events between the bad ones: user "good", one a second.
my ($good, @offsets) = (0);
my $offset = 0;
my @chunks = ([ @corpus[0 .. 14] ], [ @corpus[15 .. 29] ], [ @corpus[30 .. 44] ], [ @corpus[45 .. $#corpus] ]);
for my $c (0 .. $#chunks)
{
	my @batch;
	for my $bad (@{ $chunks[$c] })
	{
		push @batch, [ undef, JSON::PP->new->canonical->encode({ user_id => 'good', amount => 1, ts => ts() }) ];
		$good++;
		$offset++;
		push @batch, [ $bad->[1], $bad->[2] ];
		push @offsets, [ $offset++, $bad ];
	}
	send_raw(@batch);
	ok(wait_consumed($node, 'hostile_n', $offset), "chunk " . ($c + 1) . ": read to offset $offset");
	my $pid = worker_pid($node, 'hostile');
	kill 'KILL', $pid;
	ok(wait_for($node, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_streamview source' "
			  . "AND application_name = 'pg_streamview source hostile' AND pid <> $pid"),
		"chunk " . ($c + 1) . ": the worker was killed and a new one goes on");
}

my %reason = map { $_->[0] => $_->[1] } @{ query_rows($node,
	q{SELECT "offset", reason FROM streamview.dead_letters WHERE source_name = 'hostile' AND view_name IS NULL}) };
for my $o (@offsets)
{
	my ($off, $bad) = @$o;
	is($reason{$off} // 'applied', $bad->[3], "$bad->[0]: $bad->[3]");
}
my $odd = grep { $_->[3] eq 'applied' } @corpus;
is($node->safe_psql('postgres', q{SELECT sum(n) FILTER (WHERE user_id = 'good') || ' ' || sum(n) FILTER (WHERE user_id = 'odd')
                                    FROM hostile_n}),
	"$good $odd", "every good event ($good) and every odd but readable one ($odd) is applied, once");
is($node->safe_psql('postgres', q{SELECT sum(amount) FROM hostile_n WHERE user_id = 'good'}), $good,
	'their amounts sum as sent');
is($node->safe_psql('postgres', q{SELECT consumed || ' ' || applied || ' ' || dead_lettered FROM streamview.status}),
	"$offset " . ($good + $odd) . ' ' . ($offset - $good - $odd), 'the ledger: consumed = applied + dead lettered');
is($node->safe_psql('postgres', q{SELECT count(*) FROM streamview.partitions WHERE NOT balanced}), '0',
	'every partition ledger balances');
is($node->safe_psql('postgres', q{SELECT coalesce(error, 'none') FROM streamview.status}), 'none',
	'nothing stops the source');
like($node->safe_psql('postgres', q{SELECT error FROM streamview.dead_letters WHERE reason = 'invalid_json'
                                      AND payload LIKE '%"amount":1,"amount":2%'}),
	qr/field "amount" \(column "amount"\) appears more than once/, 'a duplicate key says which');

$node->stop;
done_testing();
