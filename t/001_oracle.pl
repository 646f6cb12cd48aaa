# A generated, messy stream on a 4-partition topic against an independent
# Perl oracle: every view's rows, per-partition counters, dead letters and
# watermark must equal what the contract says; and replaying the same log
# with another batch size must give the same tables.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use StreamViewTest;

my $t_start = time;
my $P       = 4;
my $N       = 5000;    # per partition: 20k messages in all, ~2.5 MB
my $MOOO    = 5000;    # max_out_of_orderness, ms

my $broker = broker_start('b001', { purchases => $P });
my $node   = new_node('n001', batch_size => 1000);

my %columns = gen_columns();

my @views = (
	test_view(
		source      => 'purchases',
		name        => 'rev',
		lateness_ms => 30_000,
		window      => [ 'tumble', 60_000 ],
		keys        => [qw(user_id region)],
		where       => [ 'amount_cents', '>=', 100 ],
		aggs        => [
			[ n       => 'count_star' ],
			[ revenue => 'sum', 'amount_cents' ],
			[ min_amt => 'min', 'amount_cents' ],
			[ max_amt => 'max', 'amount_cents' ],
			[ avg_amt => 'avg', 'amount_cents' ],
		],
	),
	test_view(
		source      => 'purchases',
		name        => 'hopv',
		lateness_ms => 10_000,
		window      => [ 'hop', 180_000, 60_000 ],
		keys        => [qw(user_id)],
		aggs        => [ [ n => 'count_star' ], [ qty => 'sum', 'qty' ] ],
	),
	test_view(
		source      => 'purchases',
		name        => 'flags',
		lateness_ms => 20_000,
		window      => [ 'tumble', 120_000 ],
		keys        => [qw(region)],
		aggs        => [
			[ n        => 'count_star' ],
			[ n_flag   => 'count', 'flag' ],
			[ all_flag => 'bool_and', 'flag' ],
			[ any_flag => 'bool_or', 'flag' ],
		],
	),
);

my $msgs = gen_stream(
	partitions    => $P,
	per_partition => $N,
	seed          => 20240101,
	base_ms       => 1_704_067_200_000,
	mooo_ms       => $MOOO,
	lateness_ms   => [ map { $_->{lateness_ms} } @views ],
	odd_users     => 1);
is(scalar(@$msgs), $P * $N, 'generated the stream');

my $oracle = oracle_new(
	columns                 => \%columns,
	event_time              => 'ts',
	event_id                => 'event_id',
	max_out_of_orderness_ms => $MOOO,
	views                   => \@views);
$oracle->feed($msgs);

my %reasons;
$reasons{ $_->[2] }++ for @{ $oracle->dead };
note "oracle dead letters: " . join(', ', map { "$_=$reasons{$_}" } sort keys %reasons);
for my $v (@views)
{
	my %t;
	for my $c (values %{ $oracle->counters($v->{name}) }) { $t{$_} += $c->{$_} for keys %$c }
	note "oracle $v->{name}: " . join(', ', map { "$_=$t{$_}" } sort keys %t);
	ok($t{duplicates} > 0 && $t{too_late} > 0 && $t{dead_lettered} > 0,
		"the stream exercises duplicates, too-late and bad messages for $v->{name}");
}
is(scalar(keys %reasons), 3, 'the stream has bad messages of every reason');

# Part of the log exists before the source; the rest arrives while the
# views follow it.
my $split = int(@$msgs * 0.6);
produce($broker, 'purchases', [ @$msgs[ 0 .. $split - 1 ] ]);

create_gen_source($node, $broker, 'purchases', 'purchases');
create_views($node, \@views);

produce($broker, 'purchases', [ @$msgs[ $split .. $#$msgs ] ]);

sub check_all
{
	my ($label) = @_;
	for my $v (@views)
	{
		ok(wait_consumed($node, $v->{name}, $P * $N), "$label $v->{name}: consumed the whole log")
		  or diag($node->safe_psql('postgres', 'SELECT * FROM streamview.status; SELECT * FROM streamview.worker_errors'));
	}
	for my $v (@views)
	{
		check_view_against_oracle($node, $oracle, $v->{name}, label => "$label $v->{name}");
	}
	check_unreadable_dead_letters($node, $oracle, 'purchases', "$label purchases");
}

# The raw key and payload bytes of every unreadable message are kept.
sub check_dead_letter_bytes
{
	my (%raw, %next);
	for my $m (@$msgs)
	{
		my $o = $next{ $m->[0] }++;
		$raw{"$m->[0]:$o"} = join(' ', unpack('H*', $m->[1]),
			defined $m->[2] ? unpack('H*', $m->[2]) : 'NULL');
	}
	my $rows = query_rows($node,
		q{SELECT partition, "offset", encode(key, 'hex'), coalesce(encode(payload, 'hex'), 'NULL')
		    FROM streamview.dead_letters WHERE source_name = 'purchases' AND view_name IS NULL});
	my @bad = grep { ($raw{"$_->[0]:$_->[1]"} // '?') ne "$_->[2] $_->[3]" } @$rows;
	ok(@$rows && !@bad, 'unreadable dead letters keep the raw key and payload bytes ('
		  . scalar(@$rows) . ' rows)')
	  or diag(join("\n", map { "p$_->[0] o$_->[1]: got $_->[2] $_->[3], produced " . ($raw{"$_->[0]:$_->[1]"} // '?') }
			@bad[ 0 .. ($#bad > 4 ? 4 : $#bad) ]));
}

check_all('batch_size=1000:');
check_dead_letter_bytes();
my $t_first = time;

# The view is a deterministic function of the log: replay it from the start
# with another batch size.
$node->safe_psql('postgres', 'ALTER SYSTEM SET streamview.batch_size = 37');
$node->reload;
is($node->safe_psql('postgres', 'SHOW streamview.batch_size'), '37', 'batch_size is now 37');
$node->safe_psql('postgres', "SELECT streamview.drop_view('$_->{name}')") for @views;
is($node->safe_psql('postgres',
	"SELECT count(*) FROM pg_class WHERE relname IN ('rev', 'hopv', 'flags')"), '0',
	'drop_view removed the views');
create_views($node, \@views);
check_all('batch_size=37:');

note sprintf('timings: first pass %.1fs, replay %.1fs', $t_first - $t_start, time - $t_first);

broker_stop($broker);
$node->stop;
done_testing();
