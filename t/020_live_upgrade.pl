# Upgrading a live install of release 0.1, as a DBA does it: the 0.2
# package is installed while the 0.1 library runs and consumes, the server
# restarts (the 0.2 library refuses to work on 0.1's SQL objects and says
# why), ALTER EXTENSION pg_streamview UPDATE, and the views go on from
# their stored offsets: every event sent, before, during and after, is
# counted once (oracle: the events this test sends, counted in Perl).
#
# Release 0.1 is built from its source in git history (run_tests.sh puts it
# in SV_RELEASE_0_1_SRC) and installed, with the 0.2 build after it, into a
# copy of this machine's PostgreSQL installation that this test owns, so
# the installation the other tests use is never touched.
use strict;
use warnings;

use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use StreamViewTest;

my $src01 = $ENV{SV_RELEASE_0_1_SRC} // '';
BAIL_OUT('release 0.1 source missing: run through make test from a git clone (SV_RELEASE_0_1_SRC)')
  unless -f "$src01/pg_streamview.control";

# A PostgreSQL installation of our own: bin, lib and share copied under
# $tree at their own paths.  PostgreSQL finds its lib and share directories
# relative to its binaries, and PGXS installs under DESTDIR=$tree there.
my $tree = "$PostgreSQL::Test::Utils::tmp_check/pg-install";
my %dir = map { chomp(my $d = `pg_config --$_`); ($_ => $d) } qw(bindir pkglibdir sharedir);
for my $d (values %dir)
{
	make_path("$tree$d");
	system('cp', '-a', "$d/.", "$tree$d/") == 0 or die "could not copy $d";
}
unlink glob("$tree$dir{sharedir}/extension/pg_streamview*"), "$tree$dir{pkglibdir}/pg_streamview.so";

sub install_from
{
	my ($srcdir, $what) = @_;
	my $out = `make -C '$srcdir' -s PG_CONFIG=$dir{bindir}/pg_config install DESTDIR='$tree' 2>&1`;
	ok($? == 0, "$what built and installed into the test's PostgreSQL installation")
	  or diag($out);
	return;
}
sub sql_versions
{
	return join ' ', sort map { /--([0-9.]+(?:--[0-9.]+)?)\.sql$/ ? $1 : () }
	  glob("$tree$dir{sharedir}/extension/pg_streamview--*.sql");
}

# Release 0.1, from git history.
system("make -C '$src01' -s PG_CONFIG=$dir{bindir}/pg_config >/dev/null 2>&1");
install_from($src01, 'release 0.1');
is(sql_versions(), '0.1', 'that installation offers 0.1 only');

my $broker = broker_start('b020', { up => 2 });
my $B      = $broker->{addr};
my $node   = PostgreSQL::Test::Cluster->new('n020', install_path => "$tree" . ($dir{bindir} =~ s{/bin$}{}r));
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_streamview'\n"
	  . "streamview.restart_delay = 1\nstreamview.launcher_naptime = 200\nmax_worker_processes = 16\n"
	  . "log_min_messages = info\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_streamview');
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'pg_streamview'}), '0.1',
	'a 0.1 install');

$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('up', '$B', 'up', '{"ts":"timestamptz","k":"text","id":"text"}', 'ts',
	                                event_id => 'id');
	SELECT streamview.create_view('public.up_n', \$\$
	  SELECT streamview.tumble(ts, '1 hour') AS window_start, k, count(*) AS n FROM up GROUP BY 1, 2 \$\$,
	  allowed_lateness => '1 day');
});

my (%sent, $n);
sub send_events
{
	my ($count) = @_;
	my @m;
	for (1 .. $count)
	{
		$n++;
		my $k = "k" . ($n % 5);
		$sent{$k}++;
		push @m, [ $n % 2, "e$n", sprintf('{"ts":"2024-05-01T%02d:%02d:00Z","k":"%s","id":"e%d"}',
				int($n / 60) % 24, $n % 60, $k, $n) ];
	}
	produce($broker, 'up', \@m);
	return;
}
sub view_is
{
	my ($label) = @_;
	my %got = map { split / / } split /\n/,
	  $node->safe_psql('postgres', q{SELECT k || ' ' || sum(n) FROM up_n GROUP BY k});
	is_deeply(\%got, \%sent, "$label: the view counts each of the $n events once");
	return;
}

send_events(200);
ok(wait_consumed($node, 'up_n', 200), 'the 0.1 worker consumed 200 events');
view_is('on 0.1');

# The 0.2 package is installed under the running server: its workers go on
# with the 0.1 library they loaded.
install_from($StreamViewTest::ROOT, 'the 0.2 build');
is(sql_versions(), '0.1 0.1--0.2 0.2', 'the installation now offers 0.2 and the update from 0.1');
send_events(100);
ok(wait_consumed($node, 'up_n', 300), 'the running 0.1 library goes on consuming meanwhile');

# Restart: the 0.2 library on 0.1's SQL objects starts no worker and says why.
my $log_pos = -s $node->logfile;
$node->restart;
ok($node->wait_for_log(qr/pg_streamview's SQL objects are version 0\.1, its library version 0\.2: no worker runs/, $log_pos),
	'after the restart the launcher says the SQL objects must be updated');
send_events(100);
my ($rc, $out, $err) = $node->psql('postgres', q{SELECT streamview.rebuild('up_n')});
like($err, qr/ALTER EXTENSION pg_streamview UPDATE/, 'the API refuses to run on 0.1 objects, naming the command');
is($node->safe_psql('postgres', q{SELECT consumed FROM streamview.status WHERE view_name = 'up_n'}), '300',
	'and nothing is consumed until the update');

$node->safe_psql('postgres', 'ALTER EXTENSION pg_streamview UPDATE');
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'pg_streamview'}), '0.2',
	'ALTER EXTENSION pg_streamview UPDATE makes it 0.2');
ok(wait_consumed($node, 'up_n', 400), 'the 0.2 worker resumes from the stored offsets');
send_events(100);
ok(wait_consumed($node, 'up_n', 500), 'and reads what comes next');
view_is('after the update');
is($node->safe_psql('postgres', q{
	SELECT consumed || ' ' || applied || ' ' || duplicates || ' ' || dead_lettered
	  FROM streamview.status WHERE view_name = 'up_n'}), '500 500 0 0',
	'nothing read twice, nothing dead-lettered');
is($node->safe_psql('postgres', q{SELECT count(*) FROM streamview.partitions WHERE NOT balanced}), '0',
	'every partition ledger balances');

# The ids 0.1 remembered are remembered after the update: copies of the
# first 20 events, which the 0.1 library applied, are duplicates.
produce($broker, 'up', [ map {
	[ $_ % 2, "e$_", sprintf('{"ts":"2024-05-01T%02d:%02d:00Z","k":"k%d","id":"e%d"}',
			int($_ / 60) % 24, $_ % 60, $_ % 5, $_) ] } 1 .. 20 ]);
ok(wait_consumed($node, 'up_n', 520), 'copies of 20 events applied by 0.1 consumed');
view_is('copies of ids 0.1 applied');
is($node->safe_psql('postgres', q{
	SELECT applied || ' ' || duplicates FROM streamview.status WHERE view_name = 'up_n'}), '500 20',
	'they are duplicates: the update kept the ids 0.1 remembered');

# What 0.2 adds works on the updated install: a rebuild validates as
# identical to the version 0.1 built.
is($node->safe_psql('postgres', q{SELECT streamview.rebuild('up_n')}), '2', 'a rebuild on the updated install');
is($node->safe_psql('postgres', q{SELECT streamview.wait_for('up_n', 2, '60 seconds')}), 'caught_up',
	'catches up');
is($node->safe_psql('postgres', q{
	SELECT string_agg("check" || '=' || passed, ' ' ORDER BY "check")
	  FROM streamview.validate('up_n', 2, expect_identical => true)}),
	'caught_up=true differences=true ledger=true', 'and is identical to the version 0.1 built');

broker_stop($broker);
$node->stop;
done_testing();
