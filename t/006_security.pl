# The security review's findings that live in the workers
# (../shared/reviews/security.md): each attack as the review ran it, against
# a real broker and the real workers, shown closed.  The SQL-surface ones
# are in test/sql/security.sql.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use StreamViewTest;

my $broker = broker_start('b006', { guarded => 2, mtopic => 1, future => 1, poison => 1, slow => 1, usercode => 1 });
my $node   = new_node('n006', batch_size => 50);
my $B      = $broker->{addr};

# The README's grants, to a role that is not a superuser.
sub grant_api
{
	my ($role) = @_;
	$node->safe_psql('postgres', qq{
		CREATE ROLE $role LOGIN;
		CREATE SCHEMA $role AUTHORIZATION $role;
		GRANT USAGE ON SCHEMA $role TO PUBLIC;
		DO \$\$
		DECLARE f regprocedure;
		BEGIN
			FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
			          WHERE p.pronamespace = 'streamview'::regnamespace
			            AND p.proname !~ '^_' AND p.prokind = 'f'
			            AND NOT has_function_privilege('public', p.oid, 'EXECUTE')
			LOOP
				EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO $role', f);
			END LOOP;
		END \$\$;
	});
	return;
}

sub as
{
	my ($role, $sql) = @_;
	return $node->safe_psql('postgres', $sql, extra_params => [ '-U', $role ]);
}

sub ev
{
	my ($p, %f) = @_;
	return [ $p, '', JSON::PP->new->canonical->encode(\%f) ];
}

######################################################################
# F4: advisory locks that any role could take kept sources and rebuilds
# from starting.  The workers' lock is one no SQL can take.
######################################################################
$node->safe_psql('postgres', 'CREATE ROLE nobody LOGIN');
my $squatter = $node->background_psql('postgres', extra_params => [ '-U', 'nobody' ]);
is($squatter->query_safe(q{
	SELECT count(*) FILTER (WHERE pg_try_advisory_lock(x'7376'::int, i))
	     + count(*) FILTER (WHERE pg_try_advisory_lock(x'7377'::int, i))
	  FROM generate_series(1, 400) i}), '800', 'an unprivileged role holds 800 advisory locks');

$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('guarded', '$B', 'guarded', '{"ts":"timestamptz","k":"text"}', 'ts');
	SELECT streamview.create_view('public.guarded_n', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS n FROM guarded GROUP BY 1, 2 \$\$);
});
produce($broker, 'guarded',
	[ map { ev($_ % 2, k => "k$_", ts => "2024-05-01T12:00:0${\($_ % 10)}Z") } 0 .. 19 ]);
ok(wait_consumed($node, 'guarded_n', 20), 'the source worker starts and consumes despite the squatter');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	 WHERE l.locktype = 'object' AND l.classid = 'streamview.sources'::regclass
	   AND a.application_name = 'pg_streamview source guarded'}), '1',
	'the source worker holds its object lock');
my $v2 = $node->safe_psql('postgres', q{SELECT streamview.rebuild('guarded_n')});
is($node->safe_psql('postgres', qq{SELECT streamview.wait_for('guarded_n', $v2, '60 seconds')}),
	'caught_up', 'a rebuild replays despite the squatter');
$squatter->quit;

######################################################################
# F1, in the worker: a trigger on a version's table calls the API (a second
# bracket) and then sets search_path for the session; the worker's own
# bookkeeping then ran as the extension owner through mallory's now().
######################################################################
grant_api('mallory');
as('mallory', qq{
	SET search_path = mallory;
	SELECT streamview.create_source('msrc', '$B', 'mtopic', '{"ts":"timestamptz","user_id":"text"}', 'ts');
	SELECT streamview.create_view('mallory.mv1', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, user_id, count(*) AS n FROM msrc GROUP BY 1, 2 \$\$);
	SELECT streamview.create_view('mallory.mv2', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, count(*) AS n FROM msrc GROUP BY 1 \$\$);
	SELECT streamview.add_check('mv2', 'trivial', 'true');
	CREATE TABLE mallory.probe (what text, who name, sp text);
	CREATE FUNCTION mallory.trg() RETURNS trigger LANGUAGE plpgsql AS \$f\$
	BEGIN
	  BEGIN
	    PERFORM * FROM streamview.validate('mv2', 1);
	    INSERT INTO mallory.probe VALUES ('nested validate ran', current_user, current_setting('search_path'));
	  EXCEPTION WHEN OTHERS THEN
	    INSERT INTO mallory.probe VALUES (SQLERRM, current_user, current_setting('search_path'));
	  END;
	  PERFORM pg_catalog.set_config('search_path', 'mallory, pg_catalog, pg_temp', false);
	  RETURN NULL;
	END \$f\$;
	CREATE TRIGGER t AFTER INSERT ON mallory.mv1_v1 FOR EACH STATEMENT EXECUTE FUNCTION mallory.trg();
	CREATE FUNCTION mallory.now() RETURNS timestamptz LANGUAGE plpgsql VOLATILE AS \$f\$
	BEGIN
	  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
	    EXECUTE 'ALTER ROLE mallory SUPERUSER';
	  END IF;
	  RETURN pg_catalog.now();
	END \$f\$;
	GRANT EXECUTE ON FUNCTION mallory.now() TO PUBLIC;
});
produce($broker, 'mtopic', [ ev(0, user_id => 'm1', ts => '2024-05-01T12:00:10Z') ]);
ok(wait_consumed($node, 'mv1', 1), 'the message is applied');
produce($broker, 'mtopic', [ ev(0, user_id => 'm2', ts => '2024-05-01T12:00:20Z') ]);
ok(wait_consumed($node, 'mv1', 2), 'and the next one, after the trigger set search_path');
is(as('mallory', q{SELECT string_agg(DISTINCT what || ' / ' || who, '; ') FROM mallory.probe}),
	'cannot call streamview.validate() from code that a stream view runs / mallory',
	'the nested API call is refused, in the worker too');
is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}), 'f',
	'mallory is not a superuser');
is(as('mallory', q{SELECT sum(n) FROM mallory.mv1}), '2', 'both events are in the view');

######################################################################
# F7: one far-future event pushed its partition's watermark ahead and made
# every later event there too late.  Event times outside the years 1 to
# 9999 are invalid_value; one more than max_future (default 1 day) ahead of
# its message's broker timestamp is future_time.
######################################################################
my $now_ms = int($node->safe_psql('postgres', q{SELECT extract(epoch FROM now()) * 1000}));
my @future = (
	ev(0, k => 'before',   ts => '2024-05-01T12:00:00Z'),
	ev(0, k => 'y99999',   ts => '99999-01-01T00:00:00Z'),
	ev(0, k => 'y200000',  ts => '200000-01-01T00:00:00Z'),
	ev(0, k => 'ms200000', ts => 6_249_000_000_000_000),
	ev(0, k => 'year0',    ts => -62_135_596_800_001),
	ev(0, k => 'twodays',  ts => $now_ms + 2 * 86_400_000),
	ev(0, k => 'after',    ts => '2024-05-01T12:00:30Z'),
	ev(0, k => 'onehour',  ts => $now_ms + 3_600_000),
);
$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('fut', '$B', 'future', '{"ts":"timestamptz","k":"text"}', 'ts');
	SELECT streamview.create_source('fut_unchecked', '$B', 'future', '{"ts":"timestamptz","k":"text"}', 'ts',
	                                max_future => NULL);
	SELECT streamview.create_view('public.fut_n', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS n FROM fut GROUP BY 1, 2 \$\$);
	SELECT streamview.create_view('public.fut_unchecked_n', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS n FROM fut_unchecked GROUP BY 1, 2 \$\$);
});
produce($broker, 'future', \@future);
ok(wait_consumed($node, 'fut_n', scalar @future), 'the source read every message');
ok(wait_consumed($node, 'fut_unchecked_n', scalar @future), 'so did the one without max_future');
is($node->safe_psql('postgres', q{
	SELECT string_agg("offset" || ':' || reason, ' ' ORDER BY "offset") FROM streamview.dead_letters
	 WHERE source_name = 'fut'}),
	'1:invalid_value 2:invalid_value 3:invalid_value 4:invalid_value 5:future_time',
	'years outside 1..9999 are invalid_value, two days ahead of the broker is future_time');
is($node->safe_psql('postgres', q{SELECT string_agg(k, ' ' ORDER BY window_start, k) FROM fut_n}),
	'after before onehour', 'the events after the poison are applied, not too late');
is($node->safe_psql('postgres', q{
	SELECT applied || ' ' || too_late || ' ' || dead_lettered FROM streamview.status WHERE view_name = 'fut_n'}),
	'3 0 5', 'the ledger: 3 applied, none too late, 5 dead letters');
like($node->safe_psql('postgres', q{
	SELECT error FROM streamview.dead_letters WHERE source_name = 'fut' AND reason = 'future_time'}),
	qr/is more than the source's max_future \(1 day\) ahead of the message's broker timestamp/,
	'the dead letter says why');
is($node->safe_psql('postgres', q{SELECT string_agg(k, ' ' ORDER BY window_start, k) FROM fut_unchecked_n}),
	'before twodays', 'max_future => NULL: the far event is applied, and the next is too late, as documented');

######################################################################
# F2: one message whose event_id or group key is a few kilobytes long
# raised "index row size exceeds maximum" (not a data exception), and the
# source retried that batch for ever.  Any error one event's data causes is
# that event's dead letter.
######################################################################
# random letters: a long run of one letter would compress to fit the index
my $big = join '', map { chr(97 + int(rand(26))) } 1 .. 8000;
$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('poison', '$B', 'poison',
	       '{"ts":"timestamptz","id":"text","user_id":"text"}', 'ts', event_id => 'id');
	SELECT streamview.create_view('public.poison_n', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, user_id, count(*) AS n
	    FROM poison GROUP BY 1, 2 \$\$, allowed_lateness => '1 hour');
	CREATE FUNCTION public.picky(u text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS \$f\$
	BEGIN
	  IF u = 'boom' THEN RAISE EXCEPTION 'picky: % is not welcome', u; END IF;
	  RETURN u;
	END \$f\$;
	SELECT streamview.create_view('public.poison_picky', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, public.picky(user_id) AS u, count(*) AS n
	    FROM poison GROUP BY 1, 2 \$\$);
});
my @poison = (
	ev(0, id => 'a', user_id => 'u1',  ts => '2024-05-01T12:00:01Z'),
	ev(0, id => $big, user_id => 'u2', ts => '2024-05-01T12:00:02Z'),
	ev(0, id => 'b', user_id => $big,  ts => '2024-05-01T12:00:03Z'),
	ev(0, id => 'c', user_id => 'boom', ts => '2024-05-01T12:00:04Z'),
	ev(0, id => $big, user_id => 'u3', ts => '2024-05-01T12:00:05Z'),
	ev(0, id => 'd', user_id => 'u4',  ts => '2024-05-01T12:00:06Z'),
);
produce($broker, 'poison', \@poison);
ok(wait_consumed($node, 'poison_n', 6), 'the source goes past the long id and the long key');
ok(wait_consumed($node, 'poison_picky', 6), 'and past the event a function refuses');
is($node->safe_psql('postgres', q{
	SELECT string_agg(view_name || ':' || "offset" || ':' || reason, ' ' ORDER BY view_name, "offset")
	  FROM streamview.dead_letters WHERE source_name = 'poison'}),
	'poison_n:2:query_error poison_picky:2:query_error poison_picky:3:query_error',
	'the long key is a dead letter in both views, the refused event in its view');
like($node->safe_psql('postgres', q{
	SELECT error FROM streamview.dead_letters WHERE view_name = 'poison_n' AND "offset" = 2}),
	qr/index row size \d+ exceeds/, 'the dead letter says why');
is($node->safe_psql('postgres', q{SELECT string_agg(user_id || '=' || n, ' ' ORDER BY user_id COLLATE "C") FROM poison_n}),
	'boom=1 u1=1 u2=1 u4=1', 'the long id is applied once, its repeat is a duplicate');
is($node->safe_psql('postgres', q{
	SELECT applied || ' ' || duplicates || ' ' || dead_lettered FROM streamview.status WHERE view_name = 'poison_n'}),
	'4 1 1', 'the ledger balances: 4 applied, 1 duplicate, 1 dead letter');
is($node->safe_psql('postgres', q{SELECT count(*) FROM streamview.worker_errors WHERE source_name = 'poison'}),
	'0', 'the source never stopped');

######################################################################
# F10: a view whose function sleeps held the batch's transaction (and its
# owner's drop_view) without bound.  streamview.statement_timeout bounds
# each run of a view's statement; a slow event becomes a dead letter.
######################################################################
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET streamview.statement_timeout = '300ms';
	SELECT pg_reload_conf();
});
$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('slow', '$B', 'slow', '{"ts":"timestamptz","k":"text"}', 'ts');
	CREATE FUNCTION public.slow(k text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS \$f\$
	BEGIN
	  IF k LIKE 'slow%' THEN PERFORM pg_sleep(3600); END IF;
	  RETURN k;
	END \$f\$;
	SELECT streamview.create_view('public.slow_n', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, public.slow(k) AS k, count(*) AS n
	    FROM slow GROUP BY 1, 2 \$\$);
});
produce($broker, 'slow', [
	(map { ev(0, k => "k$_", ts => "2024-05-01T12:00:0${_}Z") } 0 .. 4),
	ev(0, k => 'slow1', ts => '2024-05-01T12:00:05Z'),
	(map { ev(0, k => "k$_", ts => "2024-05-01T12:00:0${_}Z") } 6 .. 9) ]);
ok(wait_consumed($node, 'slow_n', 10), 'the stream goes past the slow event');
is($node->safe_psql('postgres', q{SELECT count(*) FROM slow_n}), '9', 'the other nine are applied');
like($node->safe_psql('postgres', q{
	SELECT "offset" || ' ' || reason || ' ' || error FROM streamview.dead_letters WHERE view_name = 'slow_n'}),
	qr/^5 query_error the statement ran longer than streamview.statement_timeout \(300 ms\)$/,
	'the slow event is a dead letter that names the setting');
# every event slow: the view's statement is the problem, shown as its error;
# each attempt is bounded, so its owner can still drop it
produce($broker, 'slow', [ map { ev(0, k => "slow$_", ts => "2024-05-01T12:01:0${_}Z") } 0 .. 9 ]);
ok(wait_for($node, q{SELECT error LIKE '%too slow for its events%' FROM streamview.status WHERE view_name = 'slow_n'}),
	'a view too slow for every event shows it in status.error');
ok($node->log_contains(qr/too slow for its events[^\n]*\n(?:[^\n]*\n){0,30}?\s*(?:CONTEXT:\s+)?pg_streamview source worker for source "slow"/),
	'the worker\'s log lines name its source (error context)');
my $t0 = time;
$node->safe_psql('postgres', q{SET statement_timeout = '60s'; SELECT streamview.drop_view('slow_n')});
cmp_ok(time - $t0, '<', 30, 'drop_view does not wait for the slow view without bound (' . (time - $t0) . ' s)');

######################################################################
# F8: a grantee could create sources until max_worker_processes was used
# up.  streamview.max_workers_per_role caps what a role that is not a
# superuser may start; streamview.max_workers caps what the launcher runs.
######################################################################
sub set_conf
{
	my ($name, $value) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET $name = '$value'; SELECT pg_reload_conf();");
	wait_for($node, "SELECT current_setting('$name') = '$value'") or die "$name not reloaded";
	return;
}
set_conf('streamview.max_workers_per_role', 2);
as('mallory', qq{SELECT streamview.create_source('msrc2', '$B', 'mtopic', '{"ts":"timestamptz"}', 'ts')});
my ($rc, $out, $err) = $node->psql('postgres',
	qq{SELECT streamview.create_source('msrc3', '$B', 'mtopic', '{"ts":"timestamptz"}', 'ts')},
	extra_params => [ '-U', 'mallory' ]);
like($err, qr/ERROR:\s+role mallory may not start another worker for a new source/,
	'a third source is refused to mallory with max_workers_per_role = 2');
like($err, qr/HINT:.*streamview.max_workers_per_role/, 'the hint names the setting');
ok(wait_for($node, q{SELECT count(*) = 7 FROM pg_stat_activity WHERE backend_type = 'pg_streamview source'}),
	'seven source workers run');
set_conf('streamview.max_workers', 7);
$node->safe_psql('postgres',
	qq{SELECT streamview.create_source('capped', '$B', 'mtopic', '{"ts":"timestamptz"}', 'ts')});
ok(wait_for($node, q{SELECT last_error LIKE 'waiting for a worker: all 7 of streamview.max_workers are busy'
                       FROM streamview.source_list WHERE name = 'capped'}),
	'an eighth source waits, and says why');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_streamview source'}),
	'7', 'no worker beyond streamview.max_workers');
set_conf('streamview.max_workers', 8);
ok(wait_for($node, q{SELECT count(*) = 8 FROM pg_stat_activity WHERE backend_type = 'pg_streamview source'}),
	'with room again, its worker starts');
ok(wait_for($node, q{SELECT last_error IS NULL FROM streamview.source_list WHERE name = 'capped'}),
	'and its error clears');

######################################################################
# Issue 8, item 11, in the worker: the code a user writes and the worker
# runs (a view's functions, triggers on its table) runs as the view's owner
# and restricted.  It cannot read what its owner cannot, become another
# role, create temporary objects, write the extension's tables, call the API,
# or leave settings behind for the worker's own SQL (search_path and an
# operator of trudy's, TimeZone for the next batch's event times).  Each
# refusal is that event's dead letter; the source goes on.
######################################################################
set_conf('streamview.max_workers', 12);
grant_api('trudy');
$node->safe_psql('postgres', q{
	CREATE TABLE public.vault (secret text);
	INSERT INTO public.vault VALUES ('the crown jewels')});
as('trudy', qq{
	SET search_path = trudy;
	CREATE FUNCTION trudy.look(k text) RETURNS int LANGUAGE plpgsql IMMUTABLE AS \$f\$
	BEGIN
	  IF k = 'peek' THEN PERFORM * FROM public.vault; END IF;
	  IF k = 'become' THEN PERFORM pg_catalog.set_config('role', 'postgres', false); END IF;
	  IF k = 'settings' THEN
	    PERFORM pg_catalog.set_config('TimeZone', 'Pacific/Chatham', false),
	            pg_catalog.set_config('DateStyle', 'SQL, DMY', false),
	            pg_catalog.set_config('search_path', 'trudy, pg_catalog', false);
	  END IF;
	  RETURN 1;
	END \$f\$;
	-- would make trudy a superuser if the extension's own SQL ran it as its owner
	CREATE FUNCTION trudy.eq(int8, int8) RETURNS bool LANGUAGE plpgsql AS \$f\$
	BEGIN
	  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
	    EXECUTE 'ALTER ROLE trudy SUPERUSER';
	  END IF;
	  RETURN \$1 OPERATOR(pg_catalog.=) \$2;
	END \$f\$;
	CREATE FUNCTION trudy.eq(int4, int4) RETURNS bool LANGUAGE sql
	  AS 'SELECT trudy.eq(\$1::int8, \$2::int8)';
	CREATE OPERATOR trudy.= (LEFTARG = int8, RIGHTARG = int8, FUNCTION = trudy.eq);
	CREATE OPERATOR trudy.= (LEFTARG = int4, RIGHTARG = int4, FUNCTION = trudy.eq);
	SELECT streamview.create_source('ucsrc', '$B', 'usercode', '{"ts":"timestamptz","k":"text"}', 'ts');
	SELECT streamview.create_view('trudy.uc', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS n, sum(trudy.look(k)) AS looked
	    FROM ucsrc GROUP BY 1, 2 \$\$, allowed_lateness => '1 day');
	CREATE FUNCTION trudy.uc_trg() RETURNS trigger LANGUAGE plpgsql AS \$f\$
	BEGIN
	  IF NEW.k = 'temp' THEN CREATE TEMP TABLE offsets (x int); END IF;
	  IF NEW.k = 'setrole' THEN SET ROLE postgres; END IF;
	  IF NEW.k = 'ledger' THEN UPDATE streamview.offsets SET next_offset = 0; END IF;
	  IF NEW.k = 'api' THEN PERFORM streamview.drop_view('trudy.uc'); END IF;
	  RETURN NEW;
	END \$f\$;
	CREATE TRIGGER uc_t BEFORE INSERT ON trudy.uc_v1 FOR EACH ROW EXECUTE FUNCTION trudy.uc_trg();
});
my @attacks = qw(ok peek become temp setrole ledger api settings);
produce($broker, 'usercode', [ map { ev(0, k => $attacks[$_], ts => "2024-05-01T12:00:0${_}Z") } 0 .. $#attacks ]);
ok(wait_consumed($node, 'uc', scalar @attacks), 'the source goes past every attack');
# a later batch: its event time has no zone, so it is read in the worker's
# UTC, whatever the last batch's user code set
produce($broker, 'usercode', [ ev(0, k => 'after', ts => '2024-05-01T12:30:00') ]);
ok(wait_consumed($node, 'uc', @attacks + 1), 'and goes on with the next batch');
is($node->safe_psql('postgres', q{
	SELECT string_agg((convert_from(payload, 'UTF8')::json ->> 'k') || ': ' || error, E'\n' ORDER BY "offset")
	  FROM streamview.dead_letters WHERE source_name = 'ucsrc'}),
	join("\n",
		'peek: permission denied for table vault',
		'become: cannot set parameter "role" within security-definer function',
		'temp: cannot create temporary table within security-restricted operation',
		'setrole: cannot set parameter "role" within security-definer function',
		'ledger: permission denied for table offsets',
		'api: cannot call streamview.drop_view() from code that a stream view runs'),
	'each attack is refused and becomes its event\'s dead letter, saying why');
is(as('trudy', q{SELECT string_agg(k || '@' || to_char(window_start AT TIME ZONE 'UTC', 'HH24:MI'), ' ' ORDER BY k)
                   FROM trudy.uc}),
	'after@12:30 ok@12:00 settings@12:00', 'the settings user code set are gone by the next batch');
is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'trudy'}), 'f',
	'trudy\'s operator never ran as the extension\'s owner');
is($node->safe_psql('postgres', q{
	SELECT consumed || ' ' || applied || ' ' || dead_lettered FROM streamview.status WHERE view_name = 'uc'}),
	'9 3 6', 'the ledger balances: 3 applied, 6 dead letters');
is($node->safe_psql('postgres', q{SELECT count(*) FROM streamview.worker_errors WHERE source_name = 'ucsrc'}),
	'0', 'the source never stopped');

######################################################################
# Secrets (issue 8): a value put in the wrong option is not echoed into
# the server log or worker_errors by librdkafka's explanation (review A11).
######################################################################
$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('leaky', '$B', 'mtopic', '{"ts":"timestamptz"}', 'ts',
	       options => '{"ssl.endpoint.identification.algorithm":"SECRET-IN-WRONG-FIELD-42"}')});
ok(wait_for($node, q{SELECT count(*) > 0 FROM streamview.worker_errors
                      WHERE source_name = 'leaky' AND message LIKE 'invalid Kafka option%'}),
	'the worker fails on the bad option and says which');
is($node->safe_psql('postgres', q{SELECT count(*) FROM streamview.worker_errors
                                   WHERE source_name = 'leaky' AND detail LIKE '%SECRET-IN-WRONG-FIELD-42%'}),
	'0', 'worker_errors does not quote the value');
# (lines that start with white space continue a logged statement)
my @leaks = grep { /SECRET-IN-WRONG-FIELD-42/ && !/statement: / && !/^\s/ } split /\n/, slurp_file($node->logfile);
is(scalar @leaks, 0, 'nor does the server log (beyond the test\'s own statements)')
  or diag(join("\n", @leaks));
$node->safe_psql('postgres', q{SELECT streamview.drop_source('leaky')});

# A source that runs with a password among its options (ignored by a
# plaintext connection): its worker shows it in no activity and no log line.
$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('quiet', '$B', 'mtopic', '{"ts":"timestamptz"}', 'ts',
	       options => '{"sasl.username":"svc","sasl.password":"SECRET-PASSWORD-77"}')});
ok(worker_pid($node, 'quiet'), 'the source with a password runs');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity
                                   WHERE query LIKE '%SECRET-PASSWORD%' AND pid <> pg_backend_pid()}),
	'0', 'no session or worker shows the password in pg_stat_activity');
my @pw = grep { /SECRET-PASSWORD-77/ && !/statement: / && !/^\s/ } split /\n/, slurp_file($node->logfile);
is(scalar @pw, 0, 'nor does any line of the server log (beyond the test\'s own statements)')
  or diag(join("\n", @pw));

$node->stop;
done_testing();
