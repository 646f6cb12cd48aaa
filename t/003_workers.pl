# Workers: the launcher starts a worker per source and stops it with
# drop_source; a view owned by a non-superuser is written with that owner's
# rights; SIGTERM'd workers are restarted and the stream goes on; a source
# whose broker is down records an error without crashing anything; a query
# error on some messages dead-letters them while the others are applied.
use strict;
use warnings;

use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use JSON::PP;
use StreamViewTest;

my $t_start = time;
my $P       = 2;

my $broker = broker_start('b003', { orders => $P, secure => 1, late_part => 2 });
my $node   = new_node('n003', batch_size => 100);

sub as_alice
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', $sql, extra_params => [ '-U', 'alice' ]);
}

# alice: may log in and create in public, and run the mutators (which are
# revoked from PUBLIC), nothing more.
$node->safe_psql('postgres', q{
	CREATE ROLE alice LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB;
	GRANT CREATE ON SCHEMA public TO alice;
	DO $$
	DECLARE f regprocedure;
	BEGIN
		FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
		           JOIN pg_namespace n ON n.oid = p.pronamespace
		          WHERE n.nspname = 'streamview'
		            AND p.proname IN ('create_source', 'drop_source', 'create_view', 'drop_view')
		LOOP
			EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO alice', f);
		END LOOP;
	END $$;
});
is(as_alice('SELECT rolsuper FROM pg_roles WHERE rolname = current_user'), 'f',
	'alice is not a superuser');

my $start_time = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

my %columns = (
	event_id     => 'text',
	user_id      => { type => 'text', required => 1 },
	amount_cents => { type => 'bigint', required => 1 },
	ts           => 'timestamptz',
);
my $cols_json = JSON::PP->new->canonical->encode(\%columns);

my @views = (
	test_view(
		source      => 'orders',
		name        => 'order_totals',
		lateness_ms => 60_000,
		window      => [ 'tumble', 60_000 ],
		keys        => [qw(user_id)],
		aggs        => [ [ n => 'count_star' ], [ revenue => 'sum', 'amount_cents' ] ],
	),
	test_view(
		source      => 'orders',
		name        => 'order_inv',
		lateness_ms => 60_000,
		window      => [ 'tumble', 60_000 ],
		keys        => [qw(user_id)],
		aggs        => [
			[ n   => 'count_star' ],
			[ inv => 'sum', { sql => '100 / amount_cents', perl => sub { int(100 / $_[0]{amount_cents}) } } ],
		],
		error => sub { $_[0]{amount_cents} == 0 },    # 100 / 0
	),
);
my $oracle = oracle_new(
	columns                 => \%columns,
	event_time              => 'ts',
	event_id                => 'event_id',
	max_out_of_orderness_ms => 2000,
	views                   => \@views);

# An orderly stream: one event a second per partition; every 7th amount is 0.
my $seq = 0;
sub orders_chunk
{
	my ($n) = @_;
	my @m;
	for (1 .. $n)
	{
		my $i = $seq++;
		my $p = $i % $P;
		my $ev = {
			event_id     => "o$i",
			user_id      => 'user' . ($i % 5),
			amount_cents => ($i % 7 == 3 ? 0 : 1 + ($i * 37) % 250),
			ts           => 1_720_000_000_000 + int($i / $P) * 1000 + $p * 10,
		};
		push @m, [ $p, $ev->{user_id}, JSON::PP->new->canonical->encode($ev) ];
	}
	$oracle->feed(\@m);
	produce($broker, 'orders', \@m);
	return scalar @m;
}

sub workers
{
	return query_rows($node,
		"SELECT application_name FROM pg_stat_activity "
		  . "WHERE backend_type = 'pg_streamview source' ORDER BY 1");
}

# 1. the launcher starts a worker when a source is created
as_alice(qq{
	SELECT streamview.create_source(name => 'orders', brokers => '$broker->{addr}',
	  topic => 'orders', columns => '$cols_json', event_time => 'ts', event_id => 'event_id',
	  max_out_of_orderness => '2 seconds', options => '{"session.timeout.ms":"6000"}');
});
my $pid1 = worker_pid($node, 'orders');
ok($pid1, "a worker started for source orders (pid " . ($pid1 // 'none') . ")");
is_deeply(workers(), [ ['pg_streamview source orders'] ],
	"pg_stat_activity shows one 'pg_streamview source' named after the source");

# 2. views created by alice are hers, and the worker fills them
for my $v (@views)
{
	as_alice("SELECT streamview.create_view(name => '$v->{name}', query => \$q\$ $v->{sql} \$q\$, "
		  . "allowed_lateness => '$v->{lateness_sql}')");
}
# One event in each partition first, so that the view watermark is the
# minimum over all partitions whatever order the worker reads them in.
my $total = orders_chunk($P);
ok(wait_consumed($node, $_->{name}, $total), "$_->{name}: consumed the first event of each partition")
  for @views;
$total += orders_chunk(600);
ok(wait_consumed($node, $_->{name}, $total), "$_->{name}: consumed $total") for @views;

for my $v (@views)
{
	is($node->safe_psql('postgres',
			"SELECT c.relowner::regrole FROM pg_class c "
			  . "WHERE c.oid = (SELECT table_name FROM streamview.status WHERE view_name = '$v->{name}' AND is_live)"),
		'alice', "$v->{name}: its table is owned by alice");
	is($node->safe_psql('postgres',
			"SELECT c.relowner::regrole FROM pg_class c WHERE c.oid = 'public.$v->{name}'::regclass"),
		'alice', "$v->{name}: the view is owned by alice");
	cmp_ok(as_alice("SELECT count(*) FROM $v->{name}"), '>', 0, "$v->{name}: alice reads rows");
}

sub check_orders
{
	my ($label) = @_;
	check_view_against_oracle($node, $oracle, 'order_totals', label => "$label order_totals");
	compare_rows(view_sql_rows($node, $oracle, 'order_inv'), $oracle->rows('order_inv'), 3, {},
		"$label order_inv: rows equal the oracle (messages that divide by zero left out)");
	my $qe = query_rows($node,
		"SELECT partition, \"offset\" FROM streamview.dead_letters "
		  . "WHERE view_name = 'order_inv' AND reason = 'query_error' ORDER BY 1, 2");
	my @exp = sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] } @{ $oracle->query_errors('order_inv') };
	is_deeply([ map { "$_->[0]:$_->[1]" } @$qe ], [ map { "$_->[0]:$_->[1]" } @exp ],
		"$label order_inv: the messages that divide by zero are dead letters with reason query_error ("
		  . scalar(@exp) . ")");
	my %tot;
	for my $c (values %{ $oracle->counters('order_inv') }) { $tot{$_} += $c->{$_} for keys %$c }
	my $st = status_row($node, 'order_inv');
	is("$st->{consumed} $st->{applied} $st->{dead_lettered}",
		"$tot{consumed} $tot{applied} $tot{dead_lettered}",
		"$label order_inv: consumed, applied, dead_lettered");
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM streamview.partitions WHERE view_name = 'order_inv' AND NOT balanced"),
		'0', "$label order_inv: ledgers balance");
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM streamview.dead_letters WHERE view_name = 'order_totals'"),
		'0', "$label order_totals: no dead letters for the view without errors");
}
check_orders('first chunk:');

# 3. SIGTERM: the launcher restarts the worker and the stream goes on
kill 'TERM', $pid1;
ok(wait_for($node,
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_streamview source' "
		  . "AND application_name = 'pg_streamview source orders' AND pid <> $pid1"),
	'after SIGTERM the launcher started a new worker');
my $pid2 = worker_pid($node, 'orders');
isnt($pid2, $pid1, "new worker pid $pid2");
$total += orders_chunk(400);
ok(wait_consumed($node, $_->{name}, $total), "after SIGTERM: $_->{name} consumed $total") for @views;
check_orders('after SIGTERM:');

# 4. a source whose broker is down: an error is recorded, nothing crashes
my $sock = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
  or die "no free port: $!";
my $dead_port = $sock->sockport;
close $sock;    # nothing listens there any more
$node->safe_psql('postgres', qq{
	SELECT streamview.create_source(name => 'ghost', brokers => '127.0.0.1:$dead_port',
	  topic => 'ghost', columns => '{"ts":"timestamptz","x":"bigint"}', event_time => 'ts',
	  options => '{"session.timeout.ms":"6000","socket.connection.setup.timeout.ms":"1000"}');
	SELECT streamview.create_view(name => 'ghost_counts',
	  query => \$q\$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n
	               FROM ghost GROUP BY 1 \$q\$);
});
ok(wait_for($node, q{
	SELECT coalesce((SELECT last_error IS NOT NULL FROM streamview.sources WHERE name = 'ghost'), false)
	    OR EXISTS (SELECT 1 FROM streamview.worker_errors WHERE source_name = 'ghost')}),
	'a source whose broker is down records an error');
note 'ghost errors: '
  . $node->safe_psql('postgres',
	q{SELECT coalesce(last_error, '(none)') FROM streamview.sources WHERE name = 'ghost'
	  UNION ALL SELECT message FROM (SELECT message FROM streamview.worker_errors
	                                  WHERE source_name = 'ghost' ORDER BY worker_error_id LIMIT 3) e});
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $start_time,
	'the postmaster did not restart (nothing crashed)');
$total += orders_chunk(200);
ok(wait_consumed($node, $_->{name}, $total), "with a broken source around, $_->{name} consumed $total")
  for @views;
is(worker_pids($node)->{orders}, $pid2, 'the orders worker was not disturbed');
check_orders('next to a broken source:');

# 5. drop_source stops the worker
$node->safe_psql('postgres', "SELECT streamview.drop_source('ghost', cascade => true)");
ok(wait_for($node,
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'pg_streamview source ghost'"),
	'drop_source stopped the ghost worker');
is_deeply(workers(), [ ['pg_streamview source orders'] ], 'only the orders worker is left');

# 6. least privilege: the upserts run as the view owner, not as a superuser.
# alice revokes her own INSERT/UPDATE on the table of a view: writing it
# must then fail with "permission denied" and write nothing; once she grants
# it back and the worker restarts (a live version that failed is retried
# then), the rows arrive.
as_alice(q{
	SELECT streamview.create_source(name => 'secure', brokers => '} . $broker->{addr} . q{',
	  topic => 'secure', columns => '{"ts":"timestamptz","x":"bigint"}', event_time => 'ts',
	  options => '{"session.timeout.ms":"6000"}');
	SELECT streamview.create_view(name => 'secure_sum',
	  query => $q$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n,
	                      sum(x) AS total FROM secure GROUP BY 1 $q$);
});
my $secure_tbl = $node->safe_psql('postgres',
	"SELECT table_name FROM streamview.status WHERE view_name = 'secure_sum' AND is_live");
my $spid1 = worker_pid($node, 'secure');
as_alice("REVOKE INSERT, UPDATE ON $secure_tbl FROM alice");
my $log_pos = -s $node->logfile;
produce($broker, 'secure',
	[ map { [ 0, "k$_", qq({"ts":"2024-07-01T00:00:0${_}Z","x":$_}) ] } 1 .. 5 ]);
ok($node->wait_for_log(qr/permission denied for table \Q$secure_tbl\E/, $log_pos),
	"without INSERT on her table, writing alice's view fails with permission denied");
is($node->safe_psql('postgres', "SELECT count(*) FROM $secure_tbl"), '0',
	'nothing was written to the table alice may not insert into');
note 'secure_sum after the revoke: '
  . $node->safe_psql('postgres',
	"SELECT state, consumed, applied, lag, error FROM streamview.status WHERE view_name = 'secure_sum'")
  . ' / last_error: '
  . $node->safe_psql('postgres', "SELECT last_error FROM streamview.sources WHERE name = 'secure'");
as_alice("GRANT INSERT, UPDATE ON $secure_tbl TO alice");
kill 'TERM', $spid1;
ok(wait_for($node, "SELECT coalesce(sum(n), 0) = 5 AND sum(total) = 15 FROM $secure_tbl"),
	'after the grant and a worker restart, all 5 events are in alice\'s table');
is($node->safe_psql('postgres',
		"SELECT consumed || ' ' || applied FROM streamview.status WHERE view_name = 'secure_sum' AND is_live"),
	'5 5', 'secure_sum: consumed 5, applied 5');

# 7. the view watermark is the minimum over the partitions that have had an
# event: a partition that starts late lowers it (and the windows it can still
# change are not final).  Times in partition 1 first, then in partition 0.
$node->safe_psql('postgres', qq{
	SELECT streamview.create_source(name => 'late_part', brokers => '$broker->{addr}',
	  topic => 'late_part', columns => '{"ts":"timestamptz","x":"bigint"}', event_time => 'ts',
	  options => '{"session.timeout.ms":"6000"}');
	SELECT streamview.create_view(name => 'late_part_v',
	  query => \$q\$ SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n
	               FROM late_part GROUP BY 1 \$q\$);
});
produce($broker, 'late_part', [ [ 1, 'a', '{"ts":"2024-01-01T10:05:00Z","x":1}' ] ]);
ok(wait_consumed($node, 'late_part_v', 1), 'late_part_v: the event of partition 1 is consumed');
produce($broker, 'late_part', [ [ 0, 'b', '{"ts":"2024-01-01T10:01:30Z","x":1}' ] ]);
ok(wait_consumed($node, 'late_part_v', 2), 'late_part_v: the event of partition 0 is consumed');
is($node->safe_psql('postgres',
		"SELECT watermark FROM streamview.status WHERE view_name = 'late_part_v' AND is_live"),
	'2024-01-01 10:01:30+00',
	'the view watermark is the minimum over both partitions once partition 0 has an event');
is($node->safe_psql('postgres',
		"SELECT is_final FROM late_part_v WHERE window_start = '2024-01-01 10:01:00+00'"),
	'f', 'the window partition 0 can still change is not final');
# ... and indeed partition 0 can still change it: 10:01:45 is not too late
produce($broker, 'late_part', [ [ 0, 'c', '{"ts":"2024-01-01T10:01:45Z","x":1}' ] ]);
ok(wait_consumed($node, 'late_part_v', 3), 'late_part_v: the second event of partition 0 is consumed');
is($node->safe_psql('postgres',
		"SELECT n || ' ' || (SELECT too_late FROM streamview.status WHERE view_name = 'late_part_v' AND is_live) "
		  . "FROM late_part_v WHERE window_start = '2024-01-01 10:01:00+00'"),
	'2 0', 'the 10:01 window was updated by an on-time event of partition 0');
$node->safe_psql('postgres', "SELECT streamview.drop_source('late_part', cascade => true)");

# 8. alice drops her source with its views: the worker stops
as_alice("SELECT streamview.drop_source('orders', cascade => true)");
as_alice("SELECT streamview.drop_source('secure', cascade => true)");
ok(wait_for($node,
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_streamview source'"),
	'drop_source stopped the remaining workers');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_class WHERE relname IN ('order_totals', 'order_inv', 'secure_sum')"),
	'0', 'the views are gone');
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $start_time,
	'the postmaster never restarted');

# 9. Routine stops are not failures: no FATAL in the log for the workers
# that drop_source stopped or for the server's shutdown, each says it is
# stopping (LOG), and reloading a source's versions made no NOTICE.
$node->stop;
my $log = slurp_file($node->logfile);
# (a stop that lands inside a batch cancels it with die(), the one FATAL
# allowed: see architecture.md)
my @fatal = grep { /FATAL/ && !/terminating background worker .* due to administrator command/ } split /\n/, $log;
is(scalar @fatal, 0, 'no other FATAL line in the whole log: drops and the shutdown are routine stops')
  or diag(join("\n", @fatal[ 0 .. ($#fatal > 9 ? 9 : $#fatal) ]));
# A stop between batches says so at LOG; one that lands inside a batch (more
# likely since a batch may take several rounds) is the FATAL allowed above.
# A worker that finds its versions gone (the drop's catalog change, seen
# before the drop's signal) says that instead, also at LOG.
my $stops = () = $log =~ /LOG:  pg_streamview (?:source worker for source "[^"]+" stopping|worker for source "[^"]+" has nothing left to do)/g;
my $cancelled = () = $log =~ /FATAL:  terminating background worker "pg_streamview source[^"]*" due to administrator command/g;
cmp_ok($stops + $cancelled, '>=', 3,
	"each stopped source worker says so at LOG, or was cancelled inside a batch ($stops + $cancelled)");
like($log, qr/LOG:  pg_streamview launcher stopping/, 'and so does the launcher at shutdown');
unlike($log, qr/relation "sv_batch_\d+" already exists/, 'reloading versions makes no NOTICE');

note sprintf('003 took %.1fs', time - $t_start);
broker_stop($broker);
done_testing();
