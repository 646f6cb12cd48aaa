# Protobuf sources: messages in the Confluent wire format (magic byte, schema
# id, message-index list, message) written by Debian's python3-protobuf from
# classes protoc generated, schemas served as .proto text by the local
# schema registry (test/bin/sv_registry.py).  Two versions of the schema
# (a field renumbered and one added, the event time a
# google.protobuf.Timestamp, the region in a nested message, and in the
# second version a message nested in another, picked by a message-index
# list of two) map to the same columns by name and path; an unknown schema
# id is a dead letter schema_error; truncated bodies, a bad message-index
# list and wrong magic bytes are invalid_message.  The oracle: the records
# this test asked to write, summed here in Perl.
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
my $tmp         = "$PostgreSQL::Test::Utils::tmp_check/t027";
make_path("$tmp/schemas");
my $json = JSON::PP->new->canonical;

# Version 1: Order first in the file.  Version 2: another message first,
# Order's fields renumbered, a field added, and Order nested in Envelope.
my %proto = (
	v1 => <<'EOF',
syntax = "proto3";
package shop.v1;
import "google/protobuf/timestamp.proto";
message Order {
  string user = 1;
  int64 cents = 2;
  google.protobuf.Timestamp ts = 3;
  message Meta { string region = 1; }
  Meta meta = 4;
  bool gift = 5;
}
EOF
	v2 => <<'EOF',
syntax = "proto3";
package shop.v2;
import "google/protobuf/timestamp.proto";
message Ping { int32 n = 1; }
message Envelope {
  string source = 1;
  message Order {
    google.protobuf.Timestamp ts = 1;
    int64 cents = 7;
    string user = 8;
    message Meta { string channel = 1; string region = 2; }
    Meta meta = 9;
    bool gift = 10;
    repeated string tags = 11;
  }
}
EOF
);
for my $v (keys %proto)
{
	open my $f, '>', "$tmp/order_$v.proto" or die;
	print $f $proto{$v};
	close $f;
}
sub register
{
	my ($id, $text) = @_;
	open my $f, '>', "$tmp/schemas/$id.json" or die;
	print $f $json->encode({ schemaType => 'PROTOBUF', schema => $text });
	close $f;
}
register(1, $proto{v1});
register(2, $proto{v2});

my $registry = IPC::Run::start([ '/usr/bin/python3', $REGISTRY_PY, 'serve', "$tmp/schemas", 0, "$tmp/port" ],
	'>', "$tmp/registry.log", '2>>', "$tmp/registry.log");
END
{
	my $rc = $?;
	if ($registry) { $registry->kill_kill; $registry->finish }
	$? = $rc;
}
for (1 .. 100) { last if -e "$tmp/port"; select(undef, undef, undef, 0.1) }
die "the registry did not start" unless -e "$tmp/port";
my $port = do { open my $f, '<', "$tmp/port" or die; local $/; <$f> };

my $broker = broker_start('b027', { ord => 1 });
my $node   = new_node('n027', batch_size => 25);

my (@spec, %expect_dead, %rows);
my $BASE_S = 1_714_564_800;    # 2024-05-01T12:00:00Z
sub iso
{
	my ($s, $ms) = @_;
	my @t = gmtime($s);
	return sprintf('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', $t[5] + 1900, $t[4] + 1, @t[ 3, 2, 1, 0 ], $ms);
}
sub order
{
	my ($version, $n) = @_;
	my $s      = $BASE_S + $n * 7_919 % 300;
	my $ms     = $n * 37 % 1000;
	my $cents  = $n * 7_877 % 20_000 - 5_000;
	my $region = $n % 5 == 0 ? undef : ('eu', 'us', 'ap')[ $n % 3 ];
	my $gift   = $n % 4 == 0 ? JSON::PP::true : JSON::PP::false;
	my %rec    = (user => "u$n", cents => "$cents", ts => iso($s, $ms), gift => $gift);
	$rec{meta} = { region => $region } if defined $region;
	if ($version == 2)
	{
		$rec{tags} = [ 'a', 'b' ];
		$rec{meta} = { channel => 'web', defined $region ? (region => $region) : () };
	}
	# proto3: an empty region reads as '' (no presence); a missing meta as NULL
	my $key = $version == 2 ? ($region // '') : ($region // 'NULL');
	my $w = ($s - $s % 60) * 1000;
	$rows{"$w $key"}[0]++;
	$rows{"$w $key"}[1] += $cents;
	$rows{"$w $key"}[2] += $gift ? 1 : 0;
	push @spec, $version == 1
	  ? { id => 1, proto => 'order_v1.proto', message => 'Order', index => [0], record => \%rec }
	  : { id => 2, proto => 'order_v2.proto', message => 'Envelope.Order', index => [ 1, 0 ], record => \%rec };
	return;
}
sub dead
{
	my ($reason, $m) = @_;
	$expect_dead{ scalar @spec } = $reason;
	push @spec, $m;
}
my $bad = { user => 'bad', cents => '1', ts => iso($BASE_S, 0) };
order(1, $_) for 1 .. 40;
dead('schema_error', { id => 99, proto => 'order_v1.proto', message => 'Order', record => $bad });
dead('invalid_message', { id => 1, proto => 'order_v1.proto', message => 'Order', record => $bad, truncate => 3 });
dead('invalid_message', { id => 1, proto => 'order_v1.proto', message => 'Order', record => $bad, magic => 1 });
dead('invalid_message', { raw => '0000000001' . '0402' });       # a message-index list naming no message
dead('invalid_message', { raw => '00000000' });                  # shorter than the header
order(2, $_) for 41 .. 80;
dead('missing_field', { id => 2, proto => 'order_v2.proto', message => 'Envelope.Order', index => [ 1, 0 ],
		record => { user => 'no time', cents => '5' } });
order(1, $_) for 81 .. 90;

open my $f, '>', "$tmp/m.json" or die;
print $f $json->encode(\@spec);
close $f;
my ($err, $kerr);
IPC::Run::run([ '/usr/bin/python3', $REGISTRY_PY, 'encode', "$tmp/m.json", "$tmp/m" ], '2>', \$err)
  or die "encode: $err";
my @files = sort glob("$tmp/m/*");
IPC::Run::run([ 'kcat', '-P', '-b', $broker->{addr}, '-t', 'ord', '-p', '0', @files ], '2>', \$kerr)
  or die "kcat: $kerr";
my $sent = scalar @files;

$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('ord', '$broker->{addr}', 'ord',
	  '{"user":"text","cents":"bigint","ts":"timestamptz","gift":"boolean",
	    "region":{"type":"text","path":"meta.region"}}', 'ts',
	  max_out_of_orderness => '10 minutes', format => 'protobuf',
	  schema_registry => 'http://127.0.0.1:$port');
	SELECT streamview.create_view('public.ord_min', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, region,
	         count(*) AS n, sum(cents) AS cents, count(*) FILTER (WHERE gift) AS gifts
	    FROM ord GROUP BY 1, 2 \$\$);
});

ok(wait_consumed($node, 'ord_min', $sent), "the view consumed all $sent messages");
my %got = map { my @f = split /\|/; ("$f[0] $f[1]" => [ $f[2], $f[3], $f[4] ]) } split /\n/,
  $node->safe_psql('postgres', q{
	SELECT (extract(epoch FROM window_start) * 1000)::int8, coalesce(region, 'NULL'), n, cents, gifts
	  FROM ord_min});
is_deeply(\%got, \%rows, 'the view equals the oracle (' . scalar(keys %rows) . ' windows)');
is($node->safe_psql('postgres', q{SELECT applied, dead_lettered, too_late FROM streamview.status WHERE view_name = 'ord_min'}),
	($sent - keys %expect_dead) . '|' . (keys %expect_dead) . '|0', 'applied and dead-lettered as the oracle says');
my %dead = map { my @f = split /\|/; ($f[0] => $f[1]) } split /\n/,
  $node->safe_psql('postgres', q{SELECT "offset", reason FROM streamview.dead_letters
                                  WHERE source_name = 'ord' AND view_name IS NULL});
is_deeply(\%dead, \%expect_dead, 'dead letters by offset and reason');
like($node->safe_psql('postgres', q{SELECT string_agg(error, ' / ' ORDER BY "offset") FROM streamview.dead_letters
                                     WHERE source_name = 'ord'}),
	qr/no schema with id 99.*not a valid shop\.v1\.Order message.*magic byte is 1.*names no message.*shorter than/s,
	'each dead letter says why');
my $req = decode_json(`curl -s http://127.0.0.1:$port/requests`);
is_deeply($req, { 1 => 1, 2 => 1, 99 => 1 }, 'the registry was asked once per schema id');

done_testing();
