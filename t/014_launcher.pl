# The supervisor and the launcher, as a DBA meets them:
#  1. streamview.database names a database that does not exist: over 11 s
#     the log has one WARNING about it (with a DETAIL and a HINT naming the
#     setting and CREATE DATABASE) and no FATAL; the supervisor runs, in no
#     database, and no launcher does;
#  2. CREATE DATABASE, CREATE EXTENSION in it, a source and a view: the
#     launcher starts by itself and the view fills, without a restart;
#  3. streamview.database changed and reloaded: it needs a restart, says so,
#     and nothing moves meanwhile;
#  4. the kill switch with three sources, off and on twice: each source gets
#     its worker back, and no lock is left to a process that is gone (a
#     worker's session lock once outlived it, and after off and on a source
#     could find "another worker serves it" and never start again);
#  5. the launcher terminated: the supervisor starts it again and it starts
#     the workers again; the supervisor terminated: the postmaster starts it
#     again, and one launcher runs, not two.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use StreamViewTest;

my @topics = qw(t1 t2 t3);
my $broker = broker_start('b013', { map { ($_ => 1) } @topics });
my $node   = PostgreSQL::Test::Cluster->new('n013');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_streamview'\n"
	  . "streamview.database = 'streams'\n"
	  . "streamview.restart_delay = 1\n"
	  . "streamview.max_restart_delay = 2\n"
	  . "streamview.launcher_naptime = 200\n"
	  . "max_worker_processes = 16\n"
	  . "log_min_messages = info\n");
$node->start;
my $start_time = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

sub sql { return $node->safe_psql('streams', $_[0]) }

sub poll
{
	my ($sql, $db) = @_;
	return $node->poll_query_until($db // 'streams', $sql);
}

sub processes
{
	return $node->safe_psql('postgres', q{
		SELECT backend_type || ' ' || coalesce(datname, '(no database)') FROM pg_stat_activity
		 WHERE backend_type IN ('pg_streamview supervisor', 'pg_streamview launcher') ORDER BY 1});
}

sub pid_of
{
	my ($type) = @_;
	return $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = '$type'");
}

# FATAL lines; a worker stopped inside a batch is the one allowed (see
# "The source worker's loop" in docs/architecture.md).
sub fatal_lines
{
	my ($from) = @_;
	return grep { /FATAL/ && !/terminating background worker .* due to administrator command/ }
	  split /\n/, slurp_file($node->logfile, $from // 0);
}

my $missing_re = qr/WARNING:  database "streams" named by streamview\.database does not exist/;

# 1. No database: one warning, no FATAL, over a window of 11 s (the
# launcher used to FATAL every 5 s).
my $t0 = time;
my @fatal;
while (time - $t0 < 11)
{
	@fatal = fatal_lines();
	last if @fatal;
	usleep(250_000);
}
my $log = slurp_file($node->logfile);
is(scalar @fatal, 0, sprintf('no FATAL in %.1f s without the database', time - $t0))
  or diag(join("\n", @fatal[ 0 .. ($#fatal > 9 ? 9 : $#fatal) ]));
my $warnings = () = $log =~ /$missing_re/g;
is($warnings, 1, 'one WARNING that the database is missing');
like($log, qr/$missing_re\n.*DETAIL:  pg_streamview runs no stream source until it does; .*streamview\.launcher_naptime/,
	'its DETAIL says nothing runs until it exists, and that it is looked for');
like($log, qr/HINT:  Create it \(CREATE DATABASE streams\) and run CREATE EXTENSION pg_streamview in it, or set streamview\.database/,
	'its HINT names CREATE DATABASE and streamview.database');
is(processes(), 'pg_streamview supervisor (no database)', 'the supervisor runs, in no database, and no launcher');

# 2. The database appears: the launcher starts by itself, the view fills.
$node->safe_psql('postgres', 'CREATE DATABASE streams');
sql('CREATE EXTENSION pg_streamview');
ok(poll(q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_streamview launcher' AND datname = 'streams'}),
	'the launcher starts in the new database');
for my $t (@topics)
{
	sql(qq{
		SELECT streamview.create_source('$t', '$broker->{addr}', '$t', '{"ts":"timestamptz","x":"bigint"}', 'ts',
		                                options => '{"session.timeout.ms":"6000"}');
		SELECT streamview.create_view('public.${t}_n', \$\$
		  SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n, sum(x) AS x FROM $t GROUP BY 1 \$\$);
	});
}

my %sent;
sub send_to
{
	my ($t, $n) = @_;
	# a second apart: never too late
	my @m = map { [ 0, "k$_", sprintf('{"ts":"2024-07-01T10:%02d:%02dZ","x":%d}', int($_ / 60), $_ % 60, $_) ] }
	  ($sent{$t} // 0) + 1 .. ($sent{$t} // 0) + $n;
	$sent{$t} += $n;
	produce($broker, $t, \@m);
	return;
}

sub all_consumed
{
	my ($label) = @_;
	for my $t (@topics)
	{
		send_to($t, 10);
		ok(poll("SELECT coalesce(sum(n), 0) = $sent{$t} FROM ${t}_n"), "$label: ${t}_n has all $sent{$t} events");
	}
	return;
}

all_consumed('after CREATE DATABASE');
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $start_time, 'without a restart');

# 3. streamview.database needs a restart: a reload says so, and the launcher
# stays where it is.
my $log_pos = -s $node->logfile;
$node->safe_psql('postgres', "ALTER SYSTEM SET streamview.database = 'postgres'");
$node->reload;
ok(poll(q{SELECT pending_restart FROM pg_settings WHERE name = 'streamview.database'}, 'postgres'),
	'a changed streamview.database waits for a restart (pg_settings.pending_restart)');
ok($node->wait_for_log(qr/parameter "streamview\.database" cannot be changed without restarting the server/, $log_pos),
	'and the log says so');
all_consumed('after the reload');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET streamview.database');
$node->reload;

# 4. The kill switch, off and on, twice.
my $locks_of_gone = q{
	SELECT count(*) FROM pg_locks l
	 WHERE l.pid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.pid)};
# a source's worker lock, held by anyone but that source's worker
my $stray_worker_locks = q{
	SELECT count(*) FROM pg_locks l
	 WHERE l.locktype = 'object' AND l.classid = 'streamview.sources'::regclass
	   AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a JOIN streamview.sources s
	                       ON a.application_name = 'pg_streamview source ' || s.name
	                    WHERE a.pid = l.pid AND s.source_id = l.objid
	                      AND a.backend_type = 'pg_streamview source')};
my $every_source_served = q{
	SELECT count(*) = 3 FROM streamview.sources s
	  JOIN pg_stat_activity a ON a.application_name = 'pg_streamview source ' || s.name
	  JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'object'
	                 AND l.classid = 'streamview.sources'::regclass AND l.objid = s.source_id
	                 AND l.granted};
ok(poll($every_source_served), 'each of the three sources has its worker, holding its worker lock');
for my $round (1, 2)
{
	$node->safe_psql('postgres', 'ALTER SYSTEM SET streamview.enabled = off');
	$node->reload;
	ok(poll(q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_streamview source'}),
		"off ($round): every source worker stops");
	ok(poll(q{SELECT count(*) = 0 FROM pg_locks WHERE locktype = 'object'
	           AND classid = 'streamview.sources'::regclass}),
		"off ($round): no worker lock is left behind")
	  or diag(sql(q{SELECT l.pid, l.objid, l.mode, l.granted FROM pg_locks l
	                WHERE l.locktype = 'object' AND l.classid = 'streamview.sources'::regclass}));
	ok(poll("SELECT ($locks_of_gone) = 0"), "off ($round): no lock is held by a process that is gone");

	$node->safe_psql('postgres', 'ALTER SYSTEM RESET streamview.enabled');
	$node->reload;
	ok(poll($every_source_served), "on ($round): each source has its worker again, holding its worker lock")
	  or diag(sql(q{SELECT s.name, a.pid, s.last_error FROM streamview.sources s
	                LEFT JOIN pg_stat_activity a ON a.application_name = 'pg_streamview source ' || s.name}));
	ok(poll("SELECT ($stray_worker_locks) = 0 AND ($locks_of_gone) = 0"),
		"on ($round): no worker lock is held by anyone but its source's worker, none by a process that is gone");
	all_consumed("on ($round)");
}

# 5. The launcher terminated: the supervisor starts it again, and it starts
# the workers again (its workers went with it).
my $launcher = pid_of('pg_streamview launcher');
my @workers  = split /\n/, sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_streamview source'});
$log_pos = -s $node->logfile;
sql("SELECT pg_terminate_backend($launcher)");
ok(poll("SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_streamview launcher' AND pid <> $launcher"),
	'a terminated launcher is started again by the supervisor');
ok(poll(q{SELECT count(*) = 3 FROM pg_stat_activity WHERE backend_type = 'pg_streamview source' AND pid NOT IN (}
		  . join(', ', @workers) . ')'),
	'and it starts the source workers again (the old ones went with the old launcher)');
ok(poll($every_source_served), 'each source has its worker');
all_consumed('after the launcher was terminated');

# The supervisor terminated: the postmaster starts it again (after 5 s), and
# one launcher runs.
my $supervisor = pid_of('pg_streamview supervisor');
$launcher = pid_of('pg_streamview launcher');
sql("SELECT pg_terminate_backend($supervisor)");
ok(poll("SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_streamview supervisor' AND pid <> $supervisor"),
	'a terminated supervisor is started again by the postmaster');
ok(poll("SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_streamview launcher' AND pid <> $launcher"),
	'with a launcher of its own');
ok(poll($every_source_served), 'each source has its worker');
all_consumed('after the supervisor was terminated');
is(processes(), "pg_streamview launcher streams\npg_streamview supervisor (no database)",
	'one supervisor, one launcher');
@fatal = fatal_lines($log_pos);
is(scalar @fatal, 0, 'no FATAL when the launcher or the supervisor is terminated') or diag(join("\n", @fatal));
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $start_time, 'the server never restarted');

$node->stop;
$log = slurp_file($node->logfile);
$warnings = () = $log =~ /$missing_re/g;
is($warnings, 1, 'in the whole log, the missing database was reported once');
@fatal = fatal_lines();
is(scalar @fatal, 0, 'and there is no FATAL');
broker_stop($broker);
done_testing();
