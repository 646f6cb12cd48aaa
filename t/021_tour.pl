# The demo and README.md's tour, as a new user meets them (issue 9, bug 7).
#
# The demo runs with KEEP=1 (on the installed extension, in a scratch
# directory here): it must succeed, fit every line in 100 columns, show
# the headline (a rebuild with a changed query, validate, swap, rollback)
# and end by printing how to connect and where the broker is.  Its
# revenue_per_minute, both versions, must equal the oracle fed with the
# very messages it produced.
#
# Then the tour's blocks run in order on it, as written: its SQL blocks
# through the psql command line the demo printed, its shell steps in the
# tree.  Each must succeed; an output the README shows after a block must
# be what the block gives; the tour's views must equal the oracle fed with
# the messages its shell step produced; its clean-up must leave the demo's
# objects alone.  A README that drifts from the product (a renamed
# function, a column, a changed result) fails here.
use strict;
use warnings;

use Cwd qw(getcwd);
use IPC::Run;
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use StreamViewTest;

# A server that the test did not start, reached the way the demo says:
# what StreamViewTest's helpers need of a node (safe_psql,
# poll_query_until), over psql.
package DemoServer;

sub new
{
	my ($class, %o) = @_;
	return bless {%o}, $class;
}

sub psql
{
	my ($self, $db, $sql, @extra) = @_;
	my ($out, $err);
	my $ok = IPC::Run::run([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-h', $self->{host},
			'-p', $self->{port}, '-U', $self->{user}, '-d', $db, @extra ],
		'<', \$sql, '>', \$out, '2>', \$err);
	chomp $out;
	return ($ok, $out, $err);
}

sub safe_psql
{
	my ($self, $db, $sql, %o) = @_;
	my ($ok, $out, $err) = $self->psql($db, $sql, @{ $o{extra_params} // [] });
	die "psql failed: $err\nwhile running: $sql" unless $ok;
	return $out;
}

# Polls $sql every 0.1 s until it returns $expected, for at most 180 s.
sub poll_query_until
{
	my ($self, $db, $sql, $expected) = @_;
	$expected //= 't';
	for (1 .. 1800)
	{
		my ($ok, $out) = $self->psql($db, $sql);
		return 1 if $ok && $out eq $expected;
		Time::HiRes::usleep(100_000);
	}
	Test::More::diag("timed out waiting for $expected from: $sql");
	return 0;
}

package main;

my $tree = getcwd();
# Short: the demo prints paths under it, and its lines must fit 100 columns.
my $dir = "$PostgreSQL::Test::Utils::tmp_check/demo021";

END
{
	my $rc = $?;
	# Stop what KEEP=1 left running, whatever happened above.
	IPC::Run::run([ 'bash', "$tree/demo/demo.sh", 'stop', $dir ], '>', \my $o, '2>', \my $e)
	  if -f "$dir/.pg_streamview-demo";
	$? = $rc;
}

######################################################################
# The demo
######################################################################

my ($out, $err);
{
	local $ENV{KEEP}       = 1;
	local $ENV{DEMO_BUILD} = 0;    # installed by make test; the broker is built
	local $ENV{DEMO_DIR}   = $dir;
	local $ENV{DEMO_PORT}  = PostgreSQL::Test::Cluster::get_free_port();
	IPC::Run::run([ 'bash', "$tree/demo/demo.sh" ], '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(600));
}
is($?, 0, 'KEEP=1 make demo succeeds') or diag("stdout:\n$out\nstderr:\n$err");
my @wide = grep { length > 100 } split /\n/, "$out\n$err";
is(scalar @wide, 0, 'every line the demo prints fits 100 columns') or diag(join("\n", @wide));
like($out, qr/== Changing a view's logic: rebuild, validate, swap, roll back ==/,
	'the demo shows the headline after the rest');
like($out, qr/take the tour in README\.md/, 'it ends with a pointer to the tour');

my ($connect) = $out =~ /^  (psql -h 127\.0\.0\.1 -p \d+ -U \S+ -v broker=\S+ postgres)$/m;
ok($connect, 'it prints the psql command line that connects to it') or BAIL_OUT('no psql line to follow');
my ($host, $port, $user, $broker) = $connect =~ /-h (\S+) -p (\d+) -U (\S+) -v broker=(\S+)/;
is($broker, slurp_file("$dir/broker/bootstrap") =~ s/\s+$//r, 'the broker address it prints is its broker\'s');
my $node = DemoServer->new(host => $host, port => $port, user => $user);

# The headline left version 1 live (rolled back) and version 2 current.
is($node->safe_psql('postgres', q{
	SELECT string_agg(version || ' ' || state, ', ' ORDER BY version) FROM streamview.status
	 WHERE view_name = 'revenue_per_minute'}), '1 live, 2 caught_up', 'the demo rolled back to version 1, version 2 kept');
is($node->safe_psql('postgres', q{
	SELECT string_agg(to_version || ' ' || is_rollback, ', ' ORDER BY swap_id) FROM streamview.swaps
	 WHERE view_name = 'revenue_per_minute'}), '2 false, 1 true', 'it swapped to version 2 and rolled back');

# Both versions against the oracle, fed with the files the demo produced.
my @demo_msgs;
for my $part ('events', 'live')
{
	for my $f (sort glob("$dir/$part/p*.tsv"))
	{
		my ($p) = $f =~ /p(\d+)\.tsv$/;
		push @demo_msgs, map { [ $p, split /\t/, $_, 2 ] } split /\n/, slurp_file($f);
	}
}
my %demo_cols = (
	event_id     => 'text',
	user_id      => 'text',
	country      => { type => 'text', default => 'unknown' },
	amount_cents => 'bigint',
	os           => { type => 'text', path => 'device.os' },
	ts           => 'timestamptz');
my @per_minute = ([ purchases => 'count_star' ], [ revenue_cents => 'sum', 'amount_cents' ],
	[ avg_cents => 'avg', 'amount_cents' ]);
my $demo_oracle = oracle_run(oracle_new(
		columns => \%demo_cols, event_time => 'ts', event_id => 'event_id', max_out_of_orderness_ms => 5000,
		views => [
			{ name => 'revenue_per_minute', lateness_ms => 120_000, window => [ 'tumble', 60_000 ],
				keys => ['country'], aggs => \@per_minute },
			{ name => 'revenue_per_minute_v2', lateness_ms => 120_000, window => [ 'tumble', 60_000 ],
				keys => ['country'], where => sub { ($_[0]{amount_cents} // 0) >= 1000 },
				aggs => [ @per_minute, [ biggest_cents => 'max', 'amount_cents' ] ] } ]),
	\@demo_msgs);
cmp_ok(scalar @demo_msgs, '>', 12000, 'the demo produced its history and the live burst (' . scalar(@demo_msgs) . ')');
check_view_against_oracle($node, $demo_oracle, 'revenue_per_minute', label => 'demo: revenue_per_minute v1');
compare_version($demo_oracle, 'revenue_per_minute', 2, 'demo: revenue_per_minute v2 (the rebuild)');

# A version that is not live against the oracle's rows: read as the view
# reads it while the version is live (its view_sql: avg from its sum and
# count, is_final from its watermark).
sub compare_version
{
	my ($oracle, $view, $version, $label) = @_;
	my $name = "${view}_v$version";
	my $v    = $oracle->view($name);
	my $nkey = 2 + @{ $v->{keys} };
	my %tol;
	my $i = $nkey;
	for (@{ $v->{aggs} }) { $tol{$i} = 1 if $_->[1] eq 'avg'; $i++ }
	my $sql = $node->safe_psql('postgres',
		"SELECT view_sql FROM streamview.versions WHERE view_name = '$view' AND version = $version");
	return compare_rows(view_sql_rows($node, $oracle, $name, "($sql) AS v"), $oracle->rows($name),
		$nkey, \%tol, "$label: rows equal the oracle");
}

######################################################################
# The tour
######################################################################

my ($tour) = slurp_file("$tree/README.md") =~ /^## A five-minute tour\n(.*?)^## /ms;
ok($tour, 'README.md has a tour') or BAIL_OUT('no tour');
my @blocks;
push @blocks, { lang => $1, text => $2 } while $tour =~ /^```(\w*)\n(.*?)^```$/msg;
ok((grep { $_->{lang} eq 'sql' } @blocks) >= 5, scalar(@blocks) . ' blocks in the tour');

my @psql = split / /, $connect;
splice @psql, -1, 0, '-X', '-v', 'ON_ERROR_STOP=1';    # before the database name

# The oracle of the tour's source and views, as the README declares them.
my $tour_oracle = oracle_new(
	columns => {
		event_id     => 'text',
		user_id      => { type => 'text', required => 1 },
		amount_cents => { type => 'bigint', path => 'payload.amount' },
		currency     => { type => 'text', default => 'USD' },
		ts           => 'timestamptz' },
	event_time => 'ts', event_id => 'event_id', max_out_of_orderness_ms => 5000,
	views => [
		{ name => 'spend_per_minute', lateness_ms => 60_000, window => [ 'tumble', 60_000 ],
			keys => ['user_id'],
			aggs => [ [ orders => 'count_star' ], [ revenue => 'sum', 'amount_cents' ],
				[ avg_cents => 'avg', 'amount_cents' ] ] },
		{ name => 'orders_last_5m', lateness_ms => 0, window => [ 'hop', 300_000, 60_000 ],
			keys => ['currency'], where => sub { ($_[0]{amount_cents} // 0) > 0 },
			aggs => [ [ orders => 'count_star' ], [ largest => 'max', 'amount_cents' ] ] },
		{ name => 'spend_per_minute_v2', lateness_ms => 60_000, window => [ 'tumble', 60_000 ],
			keys => ['user_id'], where => sub { ($_[0]{amount_cents} // 0) >= 200 },
			aggs => [ [ orders => 'count_star' ], [ revenue => 'sum', 'amount_cents' ],
				[ avg_cents => 'avg', 'amount_cents' ], [ largest => 'max', 'amount_cents' ] ] } ]);
my %produced;    # topic => messages the tour's shell steps sent
my $checked;     # the tour's views were compared with the oracle

for my $i (0 .. $#blocks)
{
	my $blk = $blocks[$i];
	(my $first = $blk->{text}) =~ s/\n.*//s;
	if ($blk->{lang} eq 'sh')
	{
		my ($o, $e);
		local $ENV{DEMO_DIR} = $dir;
		IPC::Run::run([ 'bash', '-e', '-o', 'pipefail', '-c', $blk->{text} ], '<', \undef,
			'>', \$o, '2>', \$e, init => sub { chdir $tree });
		is($?, 0, "tour shell step $i ($first) succeeds") or diag("$o\n$e");
		while ($blk->{text} =~ /produce\.sh (\w+) <<'(\w+)'\n(.*?)^\2$/msg)
		{
			my ($topic, $lines) = ($1, $3);
			push @{ $produced{$topic} }, map { [ 0, undef, $_ ] } split /\n/, $lines;
		}
		next;
	}
	next unless $blk->{lang} eq 'sql';

	# The tour reads what the worker applied: give it the messages sent.
	wait_applied() if %produced;
	if (!$checked && $blk->{text} =~ /drop_source/)
	{
		check_tour_views();
		$checked = 1;
	}
	my ($o, $e);
	IPC::Run::run(\@psql, '<', \$blk->{text}, '>', \$o, '2>', \$e);
	is($?, 0, "tour SQL block $i ($first) succeeds") or diag("$o\n$e");
	if ($i < $#blocks && $blocks[ $i + 1 ]{lang} eq '')
	{
		is_deeply(last_table($o), last_table($blocks[ $i + 1 ]{text}),
			"the output README.md shows after block $i is the block's");
	}
}
ok($checked, 'the tour ends with a clean-up, and its views were checked before');
is_deeply([ sort keys %produced ], ['orders'], 'the tour produced to its own topic');

# Clean-up dropped the tour's objects and left the demo's.
is($node->safe_psql('postgres', q{
	SELECT (SELECT string_agg(name, ',' ORDER BY name) FROM streamview.sources) || ' / ' ||
	       (SELECT string_agg(name, ',' ORDER BY name) FROM streamview.views)}),
	'payments,purchases / big_spenders_5min,payments_per_10min,revenue_per_minute,sales_by_os_10min',
	'after the clean-up only the demo\'s sources (JSON and Avro) and views remain');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_class WHERE relname ~ '^(spend_per_minute|orders_last_5m)(_v\d+)?$'}),
	'0', 'and the tour\'s views and tables are gone');
check_view_against_oracle($node, $demo_oracle, 'revenue_per_minute', label => 'demo after the tour');

IPC::Run::run([ 'bash', "$tree/demo/demo.sh", 'stop', $dir ], '>', \my $so, '2>', \my $se);
is($?, 0, 'demo.sh stop stops it') or diag("$so\n$se");
ok(!-d $dir, '... and removes its directory');

done_testing();

# Until every live version of every view of the topics the tour produced to
# has consumed all that was sent there.
sub wait_applied
{
	for my $topic (sort keys %produced)
	{
		my $n = @{ $produced{$topic} };
		wait_for($node, qq{
			SELECT coalesce(bool_and(s.consumed >= $n), true) FROM streamview.status s
			  JOIN streamview.views v ON v.name = s.view_name
			  JOIN streamview.sources src USING (source_id)
			 WHERE src.topic = '$topic' AND s.is_live})
		  or diag("the views of topic $topic did not consume its $n messages");
	}
	return;
}

# The tour's views, before its clean-up, against the oracle fed with what
# its shell step sent.
sub check_tour_views
{
	oracle_run($tour_oracle, $produced{orders} // []);
	check_view_against_oracle($node, $tour_oracle, $_, label => "tour: $_") for qw(spend_per_minute orders_last_5m);
	check_unreadable_dead_letters($node, $tour_oracle, 'orders', 'tour: orders');
	compare_version($tour_oracle, 'spend_per_minute', 2, 'tour: spend_per_minute v2 (the rebuild)');
	is($node->safe_psql('postgres', q{
		SELECT string_agg(to_version || ' ' || is_rollback, ', ' ORDER BY swap_id) FROM streamview.swaps
		 WHERE view_name = 'spend_per_minute'}), '2 false, 1 true', 'tour: swapped to version 2, rolled back');
	return;
}

# The last table in psql's aligned output: its header and rows, as trimmed
# cells, and its "(N rows)" line.
sub last_table
{
	my @lines = split /\n/, shift;
	my $last;
	for my $i (1 .. $#lines)
	{
		next unless $lines[$i] =~ /^-+(\+-+)*$/;
		my @rows;
		my $j = $i + 1;
		push @rows, $lines[ $j++ ] while $j <= $#lines && $lines[$j] !~ /^\(\d+ rows?\)$/;
		my $cells = sub { [ map { s/^\s+|\s+$//gr } split /\|/, $_[0], -1 ] };
		$last = { header => $cells->($lines[ $i - 1 ]), rows => [ map { $cells->($_) } @rows ],
			count => $lines[$j] };
	}
	return $last;
}
