# make installcheck, as a PGXS user runs it: the SQL suite (pg_regress and
# the isolation specs) against an installed, running server named by
# PGHOST/PGPORT/PGUSER.  The server here is set up as a user's may be:
# pg_streamview preloaded, its workers on, and streamview.database naming
# a database other than postgres.  The suite runs there twice (the second
# time the extension exists already), leaves nothing of its own behind, and
# installcheck refuses, saying why, a server it cannot run on or could harm.
use strict;
use warnings;

use Cwd qw(getcwd);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $tree      = getcwd();                                   # the tree make test copied
my $pg_config = '/usr/lib/postgresql/15/bin/pg_config';
# all but health, which needs a database no worker serves (see the Makefile)
my @regress   = grep { !m{/health\.sql$} } glob("$tree/test/sql/*.sql");
# and all specs but alter_source_lock, which needs no worker on its source
my @specs     = grep { !m{/alter_source_lock\.spec$} } glob("$tree/test/specs/*.spec");
my $served    = 'sv_served';

my $node = PostgreSQL::Test::Cluster->new('n020');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_streamview'
streamview.database = '$served'
max_worker_processes = 16
log_min_messages = info
});
$node->start;

# make installcheck against $node: (exit code, stdout and stderr)
sub installcheck
{
	my ($n) = @_;
	local $ENV{PGHOST} = $n->host;
	local $ENV{PGPORT} = $n->port;
	local $ENV{PGUSER} = scalar getpwuid($<);
	delete local $ENV{PGDATABASE};
	my $out;
	IPC::Run::run([ 'make', '-C', $tree, '--no-print-directory', "PG_CONFIG=$pg_config", 'installcheck' ],
		'<', \undef, '>&', \$out);
	return ($? >> 8, $out);
}

sub passed_all
{
	my ($rc, $out, $label) = @_;
	my $ok = is($rc, 0, "$label: make installcheck succeeds");
	like($out, qr/All ${\ scalar @regress} tests passed/, "$label: all " . scalar(@regress) . " pg_regress tests pass");
	like($out, qr/All ${\ scalar @specs} tests passed/, "$label: all " . scalar(@specs) . " isolation specs pass");
	if (!$ok)
	{
		diag($out);
		diag(slurp_file("$tree/$_")) for grep { -f "$tree/$_" } qw(regression.diffs output_iso/regression.diffs);
	}
	return;
}

# The test roles and databases, and what is in the served database
sub leftovers
{
	return $node->safe_psql($served, q{
		SELECT string_agg(r, ', ' ORDER BY r) FROM (
		  SELECT 'role ' || rolname AS r FROM pg_roles
		   WHERE rolname IN ('ada', 'analyst', 'bo', 'cy', 'dee', 'eve', 'streamview_admin', 'streamview_author', 'App User')
		      OR rolname LIKE 'sv\_%'
		  UNION ALL SELECT 'database ' || datname FROM pg_database WHERE datname = 'sv_elsewhere'
		  UNION ALL SELECT 'source ' || name FROM streamview.sources
		  UNION ALL SELECT 'view ' || name FROM streamview.views
		  UNION ALL SELECT 'extension ' || extname FROM pg_extension WHERE extname IN ('hll', 'tdigest')
		  UNION ALL SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = 'sketches') x});
}

# The served database does not exist yet: refused, with what to do.
my ($rc, $out) = installcheck($node);
isnt($rc, 0, 'refused while the served database does not exist');
like($out, qr/database "$served", which streamview\.database names, does not exist.*\n.*createdb "$served"/,
	'... saying so, and how to create it');

$node->safe_psql('postgres', "CREATE DATABASE $served");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_streamview launcher' AND datname = '$served'"),
	"the launcher serves $served, workers on");

($rc, $out) = installcheck($node);
passed_all($rc, $out, 'first run');
like($out, qr/the SQL suite runs in database "$served" \(streamview\.database\)/,
	'it says in which database it runs: the served one');
is($node->safe_psql($served, q{SELECT extversion FROM pg_extension WHERE extname = 'pg_streamview'}),
	'0.2', 'the suite ran in the served database (it created the extension there)');
like(slurp_file($node->logfile), qr/pg_streamview source worker for source "\w+"/,
	'source workers ran for the tests\' sources meanwhile');
is(leftovers(), '', 'no test role, database, source, view or extension is left behind');

($rc, $out) = installcheck($node);
passed_all($rc, $out, 'second run, with the extension in place');
is(leftovers(), '', 'still nothing left behind');

# A database that holds a user's stream: refused, and the source is untouched.
$node->safe_psql($served, q{
	SELECT streamview.create_source('mine', '127.0.0.1:9', 'mine', '{"ts":"timestamptz"}', 'ts');
	SELECT streamview.pause('mine');});
($rc, $out) = installcheck($node);
isnt($rc, 0, 'refused while the served database holds a source');
like($out, qr/database "$served" holds source "mine"/, '... naming it');
unlike($out, qr/regress install-check/, '... before any test ran');
is($node->safe_psql($served, q{SELECT name FROM streamview.sources}), 'mine', 'the source is still there');
$node->safe_psql($served, q{SELECT streamview.drop_source('mine')});

# A role of a name the tests create and drop: refused.
$node->safe_psql('postgres', q{CREATE ROLE analyst});
($rc, $out) = installcheck($node);
isnt($rc, 0, 'refused while a role of a name the tests use exists');
like($out, qr/has role "analyst", which the tests create and drop/, '... naming it');
$node->safe_psql('postgres', q{DROP ROLE analyst});

# The hll extension already in the served database (the sketches' test
# creates and drops it): refused.
$node->safe_psql($served, q{CREATE EXTENSION hll});
($rc, $out) = installcheck($node);
isnt($rc, 0, 'refused while the served database has the hll extension');
like($out, qr/database "$served" has extension hll, which the tests create and drop/, '... naming it');
$node->safe_psql($served, q{DROP EXTENSION hll});

# An extension of another version in the served database: refused.
$node->safe_psql($served, q{UPDATE pg_extension SET extversion = '0.1' WHERE extname = 'pg_streamview'});
($rc, $out) = installcheck($node);
isnt($rc, 0, 'refused while the served database has another version of the extension');
like($out, qr/has pg_streamview 0\.1, and 0\.2 is installed.*\n.*ALTER EXTENSION pg_streamview UPDATE/,
	'... with the update to run');
$node->safe_psql($served, q{UPDATE pg_extension SET extversion = '0.2' WHERE extname = 'pg_streamview'});

# A server that does not preload the library.
my $plain = PostgreSQL::Test::Cluster->new('n020_plain');
$plain->init;
$plain->start;
($rc, $out) = installcheck($plain);
isnt($rc, 0, 'refused on a server that does not preload pg_streamview');
like($out, qr/pg_streamview is not in shared_preload_libraries.*\n.*restart/, '... saying what to add');
$plain->stop;

$node->stop;
done_testing();
