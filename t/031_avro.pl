# Avro sources: messages in the Confluent wire format written by Debian's
# python3-avro, schemas served by a small local schema registry
# (test/bin/sv_registry.py, started and stopped here).  Two versions of one
# topic's schema (fields reordered, added, a union with null, timestamp-
# millis then timestamp-micros) map to the same columns by name and path;
# a message with an unknown schema id is a dead letter schema_error;
# truncated bodies, bytes left over, wrong magic bytes and short messages
# are invalid_message.  The worker asks the registry once per id.  While
# the registry is down the source shows the error in streamview.status and
# nothing is applied or dead-lettered; once it is back, everything is.
# The oracle: the records this test asked to write, summed here in Perl.
use strict;
use warnings;

use File::Path qw(make_path);
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use StreamViewTest;

my $REGISTRY_PY = "$StreamViewTest::ROOT/test/bin/sv_registry.py";
my $tmp         = "$PostgreSQL::Test::Utils::tmp_check/t026";
make_path("$tmp/schemas");
my $json = JSON::PP->new->canonical;

# The writer's schemas: version 1, and version 2 with the fields in another
# order, one more field, the region in a nullable string, and times in µs.
my $v1 = {
	type => 'record', name => 'Payment', namespace => 'shop',
	fields => [
		{ name => 'user', type => 'string' },
		{ name => 'amount', type => { type => 'bytes', logicalType => 'decimal', precision => 10, scale => 2 } },
		{ name => 'ts', type => { type => 'long', logicalType => 'timestamp-millis' } },
		{ name => 'day', type => { type => 'int', logicalType => 'date' } },
		{ name => 'meta', type => [ 'null', { type => 'record', name => 'Meta',
			fields => [ { name => 'region', type => 'string' } ] } ] },
	] };
my $v2 = {
	type => 'record', name => 'Payment', namespace => 'shop',
	fields => [
		{ name => 'ts', type => { type => 'long', logicalType => 'timestamp-micros' } },
		{ name => 'meta', type => { type => 'record', name => 'Meta',
			fields => [ { name => 'channel', type => 'string' }, { name => 'region', type => [ 'null', 'string' ] } ] } },
		{ name => 'quantity', type => 'long' },
		{ name => 'user', type => 'string' },
		{ name => 'amount', type => { type => 'bytes', logicalType => 'decimal', precision => 10, scale => 2 } },
		{ name => 'day', type => { type => 'int', logicalType => 'date' } },
	] };
sub register
{
	my ($id, $schema) = @_;
	open my $f, '>', "$tmp/schemas/$id.json" or die;
	print $f $json->encode({ schema => $json->encode($schema) });
	close $f;
}
register(1, $v1);
register(2, $v2);
register(3, $v1);    # same as 1: the one asked while the registry is down

# The registry, on a free port; started again on the same port below.
my ($registry, $port);
sub registry_start
{
	unlink "$tmp/port";
	$registry = IPC::Run::start([ '/usr/bin/python3', $REGISTRY_PY, 'serve', "$tmp/schemas", $port // 0, "$tmp/port" ],
		'>', "$tmp/registry.log", '2>>', "$tmp/registry.log");
	for (1 .. 100) { last if -e "$tmp/port"; select(undef, undef, undef, 0.1) }
	die "the registry did not start" unless -e "$tmp/port";
	$port = do { open my $f, '<', "$tmp/port" or die; local $/; <$f> };
	return;
}
sub registry_stop
{
	$registry->kill_kill;
	$registry->finish;
	undef $registry;
}
END
{
	my $rc = $?;
	registry_stop() if $registry;
	$? = $rc;
}
registry_start();

my $broker = broker_start('b026', { pay => 1 });
my $node   = new_node('n026', batch_size => 25);

# Messages: each one written to a file by sv_registry.py, produced in order.
my (@spec, %expect_dead, %rows);
my $BASE_MS = 1_714_564_800_000;    # 2024-05-01T12:00:00Z
sub pay
{
	my ($version, $n) = @_;
	my $ms     = $BASE_MS + $n * 7_919 % 300_000;
	my $cents  = ($n * 7_877 % 20_000) - 5_000;    # some negative
	my $amount = sprintf('%s%d.%02d', $cents < 0 ? '-' : '', abs($cents) / 100, abs($cents) % 100);
	my $region = $n % 5 == 0 ? undef : ('eu', 'us', 'ap')[ $n % 3 ];
	my $day    = 19_844 + $n % 3;    # 2024-05-01 and the two days after
	my $record = $version != 2
	  ? { user => "u$n", amount => $amount, ts => $ms, day => $day,
		  meta => defined $region ? { region => $region } : undef }
	  : { user => "u$n", amount => $amount, ts => $ms * 1000 + 123, day => $day, quantity => $n,
		  meta => { channel => 'web', region => $region } };
	my $w = $ms - $ms % 60_000;
	my $key = ($region // 'NULL');
	$rows{"$w $key"}[0]++;
	$rows{"$w $key"}[1] += $cents;
	$rows{"$w $key"}[2] += $day - 19_844;
	push @spec, { id => $version, schema => $version == 2 ? $v2 : $v1,
		record => $record };
	return;
}
sub dead
{
	my ($reason, $m) = @_;
	$expect_dead{ scalar @spec } = $reason;
	push @spec, $m;
}
my $bad = { user => 'bad', amount => '1.00', ts => $BASE_MS, day => 19_844, meta => undef };
pay(1, $_) for 1 .. 40;
dead('schema_error', { id => 99, schema => $v1, record => $bad });
dead('invalid_message', { id => 1, schema => $v1, record => $bad, truncate => 3 });
dead('invalid_message', { id => 1, schema => $v1, record => $bad, magic => 1 });
dead('invalid_message', { raw => '000000' });
dead('invalid_message', { raw => unpack('H*', pack('N', 0) . "\x01\x00") . '02' });    # id 1: a bad string length
pay(2, $_) for 41 .. 80;
dead('invalid_message', { raw => '0000000002' . 'ff' x 12 });
pay(1, $_) for 81 .. 90;
dead('schema_error', { id => 99, schema => $v1, record => $bad });

sub produce_files
{
	my ($spec, $dir) = @_;
	open my $f, '>', "$dir.json" or die;
	print $f $json->encode($spec);
	close $f;
	my ($err, $kerr);
	IPC::Run::run([ '/usr/bin/python3', $REGISTRY_PY, 'encode', "$dir.json", $dir ], '2>', \$err)
	  or die "encode: $err";
	my @files = sort glob("$dir/*");
	IPC::Run::run([ 'kcat', '-P', '-b', $broker->{addr}, '-t', 'pay', '-p', '0', @files ], '2>', \$kerr)
	  or die "kcat: $kerr";
	return scalar @files;
}
my $sent = produce_files(\@spec, "$tmp/m1");

$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('pay', '$broker->{addr}', 'pay',
	  '{"user":"text","amount":"numeric","ts":"timestamptz","day":"date",
	    "region":{"type":"text","path":"meta.region"}}', 'ts',
	  max_out_of_orderness => '10 minutes', format => 'avro', schema_registry => 'http://127.0.0.1:$port',
	  options => '{"schema.registry.username":"reader","schema.registry.password":"s3cret"}');
	SELECT streamview.create_view('public.pay_min', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, region,
	         count(*) AS n, sum(amount) AS amount, sum(day - date '2024-05-01') AS days
	    FROM pay GROUP BY 1, 2 \$\$);
});

sub check_view
{
	my ($label) = @_;
	my %got = map { my @f = split /\|/; ("$f[0] $f[1]" => [ $f[2], $f[3], $f[4] ]) } split /\n/,
	  $node->safe_psql('postgres', q{
		SELECT (extract(epoch FROM window_start) * 1000)::int8, coalesce(region, 'NULL'), n,
		       (amount * 100)::int8, days FROM pay_min});
	my %want = map { $_ => [ $rows{$_}[0], $rows{$_}[1], $rows{$_}[2] ] } keys %rows;
	is_deeply(\%got, \%want, "$label: the view equals the oracle (" . scalar(keys %want) . " windows)");
}
sub check_dead
{
	my ($label) = @_;
	my %got = map { my @f = split /\|/; ($f[0] => $f[1]) } split /\n/,
	  $node->safe_psql('postgres', q{SELECT "offset", reason FROM streamview.dead_letters
	                                  WHERE source_name = 'pay' AND view_name IS NULL});
	is_deeply(\%got, \%expect_dead, "$label: dead letters by offset and reason");
}

ok(wait_consumed($node, 'pay_min', $sent), "the view consumed all $sent messages");
check_view('two schema versions');
is($node->safe_psql('postgres', q{SELECT applied, dead_lettered, too_late FROM streamview.status WHERE view_name = 'pay_min'}),
	($sent - keys %expect_dead) . '|' . (keys %expect_dead) . '|0', 'applied and dead-lettered as the oracle says');
check_dead('two schema versions');
like($node->safe_psql('postgres', q{SELECT error FROM streamview.dead_letters
                                     WHERE reason = 'schema_error' ORDER BY "offset" LIMIT 1}),
	qr/schema id 99: the schema registry has no schema with id 99/, 'an unknown id says so');
like($node->safe_psql('postgres', q{SELECT string_agg(error, ' / ' ORDER BY "offset") FROM streamview.dead_letters
                                     WHERE reason = 'invalid_message'}),
	qr/shorter than the wire format.*magic byte is 1|magic byte is 1.*shorter than/s, 'bad headers say why');

# Once per id, not per message: 91 messages with ids 1 and 2, 2 with 99.
my $req = decode_json(`curl -s http://127.0.0.1:$port/requests`);
is_deeply($req, { 1 => 1, 2 => 1, 99 => 1 }, 'the registry was asked once per schema id');

# The options' secrets stay hidden: the registry password is an option
# like sasl.password, shown to the source's owner only.
$node->safe_psql('postgres', q{
	CREATE ROLE r026;
	GRANT USAGE ON SCHEMA streamview TO r026;});
is($node->safe_psql('postgres', q{SET ROLE r026; SELECT options IS NULL, format, schema_registry IS NOT NULL
                                   FROM streamview.source_list WHERE name = 'pay'}),
	't|avro|t', 'another role sees the format and the registry, not the credentials');

# The registry goes down; messages of a new id wait, shown as the source's error.
registry_stop();
my $before = $node->safe_psql('postgres', q{SELECT consumed FROM streamview.status WHERE view_name = 'pay_min'});
@spec = ();
pay(3, $_) for 91 .. 100;
$sent += produce_files(\@spec, "$tmp/m2");
ok(wait_for($node, q{SELECT error LIKE '%did not answer for schema id 3%' FROM streamview.status
                      WHERE view_name = 'pay_min'}),
	'the registry down is the source\'s error in streamview.status');
is($node->safe_psql('postgres', q{SELECT consumed FROM streamview.status WHERE view_name = 'pay_min'}),
	$before, 'meanwhile nothing of the batch is applied');
check_dead('registry down');

registry_start();
ok(wait_consumed($node, 'pay_min', $sent), "back: the view consumed all $sent messages");
check_view('after the registry came back');
check_dead('after the registry came back');
ok(wait_for($node, q{SELECT error IS NULL FROM streamview.status WHERE view_name = 'pay_min'}),
	'the source\'s error is cleared');

done_testing();
