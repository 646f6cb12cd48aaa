# StreamViewTest: helpers for pg_streamview's TAP tests.
#
#  - a mock Kafka broker (test/bin/broker.sh) under tmp_check, stopped at exit;
#  - producing [partition, key, value-or-undef] messages with kcat, in order;
#  - a PostgreSQL node with the extension preloaded;
#  - polling and fetching helpers;
#  - an ORACLE: an independent Perl model of the contract (how messages are
#    read, duplicates, too-late events, windows, aggregates, counters,
#    dead letters, watermark), written from DESIGN.md, not from the C code;
#  - a deterministic generator of messy streams.
package StreamViewTest;

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use IPC::Run;
use JSON::PP;
use Time::Local qw(timegm);
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use StreamViewTest::Oracle;

use Exporter 'import';
our @EXPORT = qw(
  broker_start broker_stop produce new_node kafka09_start kafka09_stop_broker kafka09_start_broker
  kafka09_add_partitions kafka09_recreate_topic kafka09_trust kafka09_ssl_options kafka09_signal_broker
  wait_consumed wait_for query_rows status_row partition_rows worker_pids worker_pid
  oracle_new oracle_run view_sql_rows compare_rows
  check_view_against_oracle check_unreadable_dead_letters us_to_iso iso_ms gen_stream
  gen_columns create_gen_source create_views stream_chunker test_view
);

our $ROOT      = abs_path(dirname(__FILE__) . '/../..');
our $BROKER_SH = "$ROOT/test/bin/broker.sh";
our $KAFKA09_SH = "$ROOT/test/bin/kafka09.sh";

my @brokers;    # started here, stopped at exit

######################################################################
# Broker
######################################################################

# broker_start($name, {topic => partitions, ...}) -> {dir, addr, options}:
# the mock broker, or, with SV_BROKER=kafka09 in the environment (make
# test-kafka09), a real Kafka 0.9.0.1; options are what a source needs for it.
sub broker_start
{
	my ($name, $topics) = @_;
	return kafka09_start($name, $topics) if ($ENV{SV_BROKER} // '') eq 'kafka09';
	my $dir = "$PostgreSQL::Test::Utils::tmp_check/broker_$name";
	make_path($dir);
	my @args = ($BROKER_SH, 'start', $dir);
	push @args, '--topic', "$_:$topics->{$_}" for sort keys %$topics;
	my ($out, $err);
	IPC::Run::run(\@args, '>', \$out, '2>', \$err)
	  or die "broker.sh start failed: $err";
	chomp $out;
	my $brk = { dir => $dir, addr => $out, name => $name, options => {} };
	push @brokers, $brk;
	note "broker $name at $out";
	return $brk;
}

# kafka09_start($name, {topic => partitions, ...}[, ssl => 1]) -> {dir, addr, kafka09}:
# a real Apache Kafka 0.9.0.1 (test/bin/kafka09.sh), whose log survives a
# restart; kafka09_stop_broker / kafka09_start_broker stop and start the
# broker alone; broker_stop stops everything (also at exit).
# With ssl => 1 the broker also has an SSL listener that requires a client
# certificate: ssl_addr is its address, and ssl => {ca, good => {cert, key},
# rogue => {cert, key}} the PEM texts of the CA and of a client the broker
# trusts and one it does not (signed by another CA), until kafka09_trust.
# kafka09_ssl_options($brk, 'good' or 'rogue') are a source's options for it.
sub kafka09_start
{
	my ($name, $topics, %o) = @_;
	my $dir = "$PostgreSQL::Test::Utils::tmp_check/kafka09_$name";
	make_path($dir);
	my ($out, $err);
	IPC::Run::run([ 'bash', $KAFKA09_SH, 'start', $dir, ($o{ssl} ? '--ssl' : ()),
			map { "$_:$topics->{$_}" } sort keys %$topics ],
		'>', \$out, '2>', \$err)
	  or die "kafka09.sh start failed: $err";
	chomp $out;
	my $brk = {
		dir => $dir, addr => $out, name => $name, kafka09 => 1,
		# format v0: no timestamps, no headers; keep the order across a leader change
		kcat_args => [ '-X', 'api.version.request=false', '-X', 'broker.version.fallback=0.9.0.1',
			'-X', 'max.in.flight.requests.per.connection=1' ],
		options => { 'api.version.request' => 'false', 'broker.version.fallback' => '0.9.0.1' },
	};
	if ($o{ssl})
	{
		chomp($brk->{ssl_addr} = slurp_file("$dir/ssl_bootstrap"));
		$brk->{ssl} = {
			ca => slurp_file("$dir/ssl/ca.pem"),
			map { ($_ => { cert => slurp_file("$dir/ssl/$_.pem"), key => slurp_file("$dir/ssl/$_.key") }) }
			  qw(good rogue) };
	}
	push @brokers, $brk;
	note "kafka 0.9.0.1 $name at $out" . ($o{ssl} ? ", SSL at $brk->{ssl_addr}" : '');
	return $brk;
}

# A source's options for the SSL listener, as client $who ('good' or 'rogue'):
# the certificates inline (allowed to roles that are not superusers).
sub kafka09_ssl_options
{
	my ($brk, $who) = @_;
	return {
		%{ $brk->{options} },
		'security.protocol'   => 'ssl',
		'ssl.ca.pem'          => $brk->{ssl}{ca},
		'ssl.certificate.pem' => $brk->{ssl}{$who}{cert},
		'ssl.key.pem'         => $brk->{ssl}{$who}{key},
	};
}

# test/bin/kafka09.sh COMMAND on the broker's directory, with more arguments.
sub kafka09_run
{
	my ($brk, $command, @args) = @_;
	my ($o, $e);
	IPC::Run::run([ 'bash', $KAFKA09_SH, $command, $brk->{dir}, @args ], '>', \$o, '2>', \$e)
	  or die "kafka09.sh $command failed: $e";
	return;
}

sub kafka09_stop_broker { kafka09_run($_[0], 'stop-kafka') }
sub kafka09_start_broker { kafka09_run($_[0], 'start-kafka') }
sub kafka09_add_partitions { kafka09_run($_[0], 'partitions', $_[1], $_[2]) }
sub kafka09_recreate_topic { kafka09_run($_[0], 'recreate', $_[1], $_[2]) }
# the broker trusts the rogue client's CA from now on (it restarts)
sub kafka09_trust { kafka09_run($_[0], 'trust', $_[1]) }

# kafka09_signal_broker($brk, 'STOP' | 'CONT' | 'KILL'): a broker that hangs
# (its connections stay open, nothing answers), goes on, or dies at once;
# kafka09_start_broker starts a killed one again on the same log.
sub kafka09_signal_broker
{
	my ($brk, $signal) = @_;
	chomp(my $pid = slurp_file("$brk->{dir}/kafka.pid"));
	kill($signal, $pid) or die "could not send SIG$signal to the broker (pid $pid): $!";
	return;
}

sub broker_stop
{
	my ($brk) = @_;
	return unless $brk && !$brk->{stopped};
	IPC::Run::run([ $brk->{kafka09} ? ('bash', $KAFKA09_SH) : $BROKER_SH, 'stop', $brk->{dir} ],
		'>', \my $o, '2>', \my $e);
	$brk->{stopped} = 1;
	return;
}

END
{
	my $rc = $?;
	broker_stop($_) for @brokers;
	$? = $rc;
}

# produce($broker, $topic, [[partition, key, value-or-undef], ...]):
# messages go to their partition in list order; undef value = NULL payload.
sub produce
{
	my ($brk, $topic, $msgs) = @_;
	my %byp;
	for my $m (@$msgs)
	{
		my ($p, $k, $v) = @$m;
		$k = '' unless defined $k;
		die "key/value with tab or newline" if $k =~ /[\t\n]/ || (defined $v && $v =~ /[\t\n]/);
		die "empty value would become NULL" if defined $v && $v eq '';
		push @{ $byp{$p} }, $k . "\t" . (defined $v ? $v : '') . "\n";
	}
	for my $p (sort { $a <=> $b } keys %byp)
	{
		my $in = join('', @{ $byp{$p} });
		my ($out, $err);
		IPC::Run::run(
			[ 'kcat', '-P', '-b', $brk->{addr}, '-t', $topic, '-p', $p, '-K', "\t", '-Z',
				@{ $brk->{kcat_args} // [] } ],
			'<', \$in, '>', \$out, '2>', \$err)
		  or die "kcat failed for partition $p: $err";
	}
	return;
}

######################################################################
# PostgreSQL
######################################################################

# new_node($name, batch_size => N, conf => "extra lines")
sub new_node
{
	my ($name, %o) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my $conf = "shared_preload_libraries = 'pg_streamview'\n"
	  . "streamview.restart_delay = 1\n"
	  . "streamview.max_restart_delay = 2\n"
	  . "streamview.launcher_naptime = 200\n"
	  . "max_worker_processes = 16\n"
	  . "restart_after_crash = on\n"    # Cluster.pm turns it off; a killed worker must not stop the server
	  . "log_min_messages = info\n";
	$conf .= "streamview.batch_size = $o{batch_size}\n" if $o{batch_size};
	$conf .= $o{conf} if $o{conf};
	$node->append_conf('postgresql.conf', $conf);
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION pg_streamview');
	return $node;
}

# Poll until $sql returns $expected (default 't'); returns true/false.  A
# crash restart (a worker killed with SIGKILL) can cut psql's connection
# while it sends the query, and IPC::Run then dies of the broken pipe: that
# poll is started again, a few times.
sub wait_for
{
	my ($node, $sql, $expected) = @_;
	for my $try (1 .. 5)
	{
		my $ok = eval { $node->poll_query_until('postgres', $sql, $expected // 't') };
		return $ok unless $@;
		note "poll interrupted, started again: $@";
		usleep(200_000);
	}
	return 0;
}

# Wait until the live version of $view has consumed at least $n messages.
sub wait_consumed
{
	my ($node, $view, $n) = @_;
	return wait_for($node,
		"SELECT coalesce((SELECT consumed FROM streamview.status "
		  . "WHERE view_name = '$view' AND is_live), -1) >= $n");
}

# Rows of a query, as arrays of strings (NULL -> 'NULL'), in the order
# returned (sort in SQL or with sort_rows).
sub query_rows
{
	my ($node, $sql) = @_;
	my $out = $node->safe_psql('postgres', $sql,
		extra_params => [ '-P', 'null=NULL', '-F', "\x1f" ]);
	return [ map { [ split /\x1f/, $_, -1 ] } grep { $_ ne '' } split /\n/, $out ];
}

sub status_row
{
	my ($node, $view) = @_;
	my $r = query_rows($node,
		"SELECT consumed, applied, duplicates, too_late, dead_lettered, "
		  . "(extract(epoch FROM watermark) * 1000)::bigint, state "
		  . "FROM streamview.status WHERE view_name = '$view' AND is_live");
	return undef unless @$r;
	my %h;
	@h{qw(consumed applied duplicates too_late dead_lettered watermark_ms state)} = @{ $r->[0] };
	return \%h;
}

# {partition => {next_offset, consumed, applied, duplicates, too_late,
#                dead_lettered, balanced, max_et_ms}} of the live version
sub partition_rows
{
	my ($node, $view) = @_;
	my $r = query_rows($node,
		"SELECT p.partition, p.next_offset, p.consumed, p.applied, p.duplicates, "
		  . "p.too_late, p.dead_lettered, p.balanced, "
		  . "(extract(epoch FROM p.max_event_time) * 1000)::bigint "
		  . "FROM streamview.partitions p JOIN streamview.status s USING (view_name, version) "
		  . "WHERE p.view_name = '$view' AND s.is_live ORDER BY 1");
	my %h;
	for (@$r)
	{
		my %x;
		@x{qw(next_offset consumed applied duplicates too_late dead_lettered balanced max_et_ms)} =
		  @$_[ 1 .. 8 ];
		$h{ $_->[0] } = \%x;
	}
	return \%h;
}

# pids of the source workers: {source_name => pid}
sub worker_pids
{
	my ($node) = @_;
	my $r = query_rows($node,
		"SELECT application_name, pid FROM pg_stat_activity "
		  . "WHERE backend_type = 'pg_streamview source' ORDER BY 1");
	my %h;
	for (@$r)
	{
		my ($app, $pid) = @$_;
		(my $src = $app) =~ s/^pg_streamview source //;
		$h{$src} = $pid;
	}
	return \%h;
}

# Wait until the source has a worker; returns its pid (or undef on timeout).
sub worker_pid
{
	my ($node, $source) = @_;
	return undef
	  unless wait_for($node,
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_streamview source' "
		  . "AND application_name = 'pg_streamview source $source'");
	return worker_pids($node)->{$source};
}

######################################################################
# Time helpers (all times are integer microseconds since the Unix epoch)
######################################################################

sub us_to_iso
{
	my ($us, $offset_min) = @_;
	$offset_min //= 0;
	my $local = $us + $offset_min * 60_000_000;
	my $secs  = int($local / 1_000_000);
	my $frac  = $local - $secs * 1_000_000;
	my @t     = gmtime($secs);
	my $s = sprintf('%04d-%02d-%02dT%02d:%02d:%02d', $t[5] + 1900, $t[4] + 1, @t[ 3, 2, 1, 0 ]);
	$s .= sprintf('.%03d', $frac / 1000) if $frac;
	if ($offset_min == 0) { $s .= 'Z' }
	else
	{
		my $sign = $offset_min < 0 ? '-' : '+';
		my $a    = abs $offset_min;
		$s .= sprintf('%s%02d:%02d', $sign, int($a / 60), $a % 60);
	}
	return $s;
}

# ISO-8601 (as the generator writes it) -> microseconds, or undef
sub iso_us
{
	my ($s) = @_;
	return undef
	  unless $s =~ /^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(Z|[+-]\d\d:?\d\d)$/;
	my ($Y, $M, $D, $h, $m, $sec, $frac, $tz) = ($1, $2, $3, $4, $5, $6, $7, $8);
	return undef if $M < 1 || $M > 12 || $D < 1 || $D > 31 || $h > 23 || $m > 59 || $sec > 59;
	my $t = eval { timegm($sec, $m, $h, $D, $M - 1, $Y) };
	return undef unless defined $t;
	my $us = $t * 1_000_000;
	$us += substr($frac . '000000', 0, 6) if defined $frac;
	if ($tz ne 'Z')
	{
		my ($sg, $oh, $om) = $tz =~ /^([+-])(\d\d):?(\d\d)$/;
		my $off = ($oh * 60 + $om) * 60_000_000;
		$us -= $sg eq '+' ? $off : -$off;
	}
	return $us;
}

sub iso_ms { my $us = iso_us(@_); return defined $us ? int($us / 1000) : undef }


######################################################################
# The oracle (StreamViewTest/Oracle.pm)
######################################################################

sub oracle_new { return StreamViewTest::Oracle->new(@_) }
sub oracle_run { my ($o, $msgs) = @_; $o->feed($msgs); return $o }

# The SQL that reads a view in the oracle's row format.
sub view_sql_rows
{
	my ($node, $oracle, $name, $relation) = @_;
	my $v = $oracle->view($name);
	$relation //= $name;
	my @cols = (
		'(extract(epoch FROM window_start) * 1000000)::bigint',
		'(extract(epoch FROM window_end) * 1000000)::bigint',
		(map { qq{"$_"} } @{ $v->{keys} }),
		(map { qq{"$_->[0]"} } @{ $v->{aggs} }),
		'is_final');
	return query_rows($node, 'SELECT ' . join(', ', @cols) . " FROM $relation");
}

# compare_rows(\@got, \@expected, nkeycols, \%tolerant_col_index, $label):
# one test; both directions; diagnostics list up to 10 differences.
sub compare_rows
{
	my ($got, $exp, $nkey, $tol, $label) = @_;
	my (%g, %e, @problems);
	my $kf = sub { join("\x1e", @{ $_[0] }[ 0 .. $nkey - 1 ]) };
	for (@$got)
	{
		my $k = $kf->($_);
		push @problems, "duplicate row in table: @$_" if exists $g{$k};
		$g{$k} = $_;
	}
	$e{ $kf->($_) } = $_ for @$exp;
	my ($missing, $extra, $diff) = (0, 0, 0);
	for my $k (sort keys %e)
	{
		if (!exists $g{$k}) { $missing++; push @problems, "missing: @{$e{$k}}"; next }
		my ($gr, $er) = ($g{$k}, $e{$k});
		my $same = @$gr == @$er;
		for my $i (0 .. $#$er)
		{
			last unless $same;
			if ($tol->{$i} && $gr->[$i] ne 'NULL' && $er->[$i] ne 'NULL')
			{
				$same = 0 if abs($gr->[$i] - $er->[$i]) > 1e-6 * (1 + abs($er->[$i]));
			}
			else { $same = 0 if $gr->[$i] ne $er->[$i] }
		}
		if (!$same) { $diff++; push @problems, "differs: got [@$gr] expected [@$er]" }
	}
	for my $k (sort keys %g)
	{
		next if exists $e{$k};
		$extra++;
		push @problems, "extra: @{$g{$k}}";
	}
	my $ok = ok(!@problems,
		"$label: " . scalar(@$got) . " rows vs " . scalar(@$exp) . " expected "
		  . "(missing $missing, extra $extra, different $diff)");
	if (!$ok)
	{
		diag($_) for @problems[ 0 .. ($#problems > 9 ? 9 : $#problems) ];
	}
	return $ok;
}

# Compare one view's table, counters, dead letters and watermark with the
# oracle.  Returns nothing; emits several tests.
sub check_view_against_oracle
{
	my ($node, $oracle, $name, %o) = @_;
	my $label = $o{label} // $name;
	my $v     = $oracle->view($name);
	my $nkey  = 2 + @{ $v->{keys} };
	my %tol;
	my $i = $nkey;
	for (@{ $v->{aggs} }) { $tol{$i} = 1 if $_->[1] eq 'avg'; $i++ }

	# The rows' is_final and the watermark below are compared once the
	# stored watermark is the oracle's, or after the poll's bound.  A source
	# split over several workers (workers => N) stores the watermark each
	# worker computes from the others' committed ledger rows: two workers
	# that commit at the same time each see the other's previous state, and
	# the stored watermark lags until their next idle round
	# (streamview.batch_timeout later), which the view's consumed count does
	# not wait for.  With one worker it is written in the batch's
	# transaction, with the counts, and this returns at once.
	my $wm = $oracle->watermark;
	wait_for($node,
		"SELECT coalesce(((extract(epoch FROM watermark) * 1000)::bigint)::text, '') "
		  . "FROM streamview.status WHERE view_name = '$name' AND is_live",
		defined $wm ? int($wm / 1000) : '');

	compare_rows(view_sql_rows($node, $oracle, $name), $oracle->rows($name), $nkey, \%tol,
		"$label: rows equal the oracle");

	# per-partition counters
	my $parts = partition_rows($node, $name);
	my $exp   = $oracle->counters($name);
	my $ps    = $oracle->part_state;
	my @bad;
	for my $p (sort { $a <=> $b } keys %$exp)
	{
		my $g = $parts->{$p};
		if (!$g) { push @bad, "partition $p missing"; next }
		for my $f (qw(consumed applied duplicates too_late dead_lettered))
		{
			push @bad, "p$p $f: got $g->{$f}, expected $exp->{$p}{$f}"
			  if $g->{$f} != $exp->{$p}{$f};
		}
		push @bad, "p$p next_offset: got $g->{next_offset}, expected $ps->{$p}{n}"
		  if $g->{next_offset} != $ps->{$p}{n};
		push @bad, "p$p not balanced" unless $g->{balanced} eq 't';
		my $met = defined $ps->{$p}{max_et} ? int($ps->{$p}{max_et} / 1000) : 'NULL';
		push @bad, "p$p max_event_time: got $g->{max_et_ms}, expected $met"
		  if $g->{max_et_ms} ne $met;
	}
	for my $p (keys %$parts) { push @bad, "unexpected partition $p" unless $exp->{$p} }
	ok(!@bad, "$label: per-partition offsets, counters and max event time equal the oracle")
	  or diag(join("\n", @bad));

	my %tot;
	for my $c (values %$exp) { $tot{$_} += $c->{$_} for keys %$c }
	my $st = status_row($node, $name);
	is(join(' ', map { $st->{$_} } qw(consumed applied duplicates too_late dead_lettered)),
		join(' ', map { $tot{$_} } qw(consumed applied duplicates too_late dead_lettered)),
		"$label: status totals (consumed applied duplicates too_late dead_lettered)");

	is($st->{watermark_ms}, defined $wm ? int($wm / 1000) : '', "$label: watermark equals the oracle");

	# too-late dead letters of this view (live version)
	my $tl = query_rows($node,
		"SELECT d.partition, d.\"offset\" FROM streamview.dead_letters d "
		  . "JOIN streamview.status s ON s.view_name = d.view_name AND s.version = d.version AND s.is_live "
		  . "WHERE d.view_name = '$name' AND d.reason = 'too_late' ORDER BY 1, 2");
	my @exp_tl = sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] } @{ $oracle->too_late($name) };
	is_deeply([ map { "$_->[0]:$_->[1]" } @$tl ], [ map { "$_->[0]:$_->[1]" } @exp_tl ],
		"$label: too_late dead letters (partition, offset) equal the oracle ("
		  . scalar(@exp_tl) . ")");
	return;
}

# Unreadable dead letters (view_name NULL) of a source vs the oracle.
sub check_unreadable_dead_letters
{
	my ($node, $oracle, $source, $label) = @_;
	my $got = query_rows($node,
		"SELECT partition, \"offset\", reason FROM streamview.dead_letters "
		  . "WHERE source_name = '$source' AND view_name IS NULL ORDER BY 1, 2, 3");
	my @exp = sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] } @{ $oracle->dead };
	is_deeply([ map { join(':', @$_) } @$got ], [ map { join(':', @$_) } @exp ],
		($label // $source) . ": unreadable dead letters (partition, offset, reason) equal the oracle ("
		  . scalar(@exp) . ")");
	return;
}

######################################################################
# Generator
######################################################################

# gen_stream(partitions => 4, per_partition => 5000, seed => 42,
#            base_ms => ..., mooo_ms => 5000, lateness_ms => [10000, 20000, 30000],
#            users => 8, first_id => 0, clock => \%clock_state)
# Returns [[p, key, value-or-undef], ...] partition-interleaved.  A messy
# mix: disorder within max_out_of_orderness, late events within the largest
# lateness, too-late events, exact lateness boundaries, duplicate ids (same
# partition, shortly after), events without an id, bad messages of every
# kind, ISO (Z and offsets) and epoch-ms times, nested and defaulted columns.
# Pass the same state hash to continue a stream in chunks.
# The columns of the messages gen_stream writes, as a source declares them.
sub gen_columns
{
	return (
		event_id     => 'text',
		user_id      => { type => 'text', required => 1 },
		amount_cents => { type => 'bigint', required => 1 },
		qty          => { type => 'integer', path => 'meta.qty', default => 1 },
		region       => { type => 'text', default => 'eu' },
		flag         => 'boolean',
		ts           => 'timestamptz',
	);
}

# A source over a topic of gen_stream messages (event_id deduplicated, 5 s
# out of orderness, a short session timeout for the mock broker); with
# partitions => '0-1', of those partitions only.
sub create_gen_source
{
	my ($node, $broker, $name, $topic, %o) = @_;
	my $partitions = defined $o{partitions} ? "'$o{partitions}'" : 'NULL';
	my %columns   = gen_columns();
	my $cols_json = JSON::PP->new->canonical->encode(\%columns);
	my $options   = JSON::PP->new->canonical->encode({ 'session.timeout.ms' => '6000', %{ $broker->{options} // {} } });
	$node->safe_psql('postgres', qq{
		SELECT streamview.create_source(name => '$name', brokers => '$broker->{addr}',
		  topic => '$topic', columns => '$cols_json', event_time => 'ts',
		  event_id => 'event_id', max_out_of_orderness => '5 seconds',
		  options => '$options', partitions => $partitions);
	});
	return;
}

# A test view, written once: the oracle reads the spec, and its SQL is made
# from the same spec.
#   test_view(name => 'rev', source => 'purchases', lateness_ms => 30_000,
#             window => ['tumble', 60_000] | ['hop', size_ms, slide_ms]
#                       | ['spans', sub], window_sql => the window's SQL (with 'spans'),
#             keys => [cols], where => [col, op, constant] (optional),
#             aggs => [[out, kind, col | {sql => expr, perl => sub}], ...],
#             error => sub { rows the query fails for } (optional))
# kinds: count_star, count, sum, min, max, avg, bool_and, bool_or.  Adds
# sql (the query), lateness_sql and a where predicate for the oracle.
sub test_view
{
	my (%v) = @_;
	my $interval = sub {
		my ($ms) = @_;
		return $ms % 1000 ? "$ms milliseconds" : ($ms / 1000) . ' seconds';
	};
	my ($kind, $size, $slide) = @{ $v{window} };
	my $window = $kind eq 'spans' ? $v{window_sql}
	  : $kind eq 'tumble' ? "streamview.tumble(ts, '" . $interval->($size) . "')"
	  : "streamview.hop(ts, '" . $interval->($size) . "', '" . $interval->($slide) . "')";
	my @select = ("$window AS window_start", @{ $v{keys} });
	for my $a (@{ $v{aggs} })
	{
		my ($out, $agg, $col) = @$a;
		my $arg = ref $col eq 'HASH' ? $col->{sql} : $col;
		push @select, ($agg eq 'count_star' ? 'count(*)' : "$agg($arg)") . " AS $out";
	}
	my $where = '';
	if (my $w = $v{where})
	{
		my ($col, $op, $const) = @$w;
		my %perl = (
			'>=' => sub { $_[0] >= $_[1] }, '>' => sub { $_[0] > $_[1] },
			'<=' => sub { $_[0] <= $_[1] }, '<' => sub { $_[0] < $_[1] },
			'=' => sub { $_[0] == $_[1] }, '<>' => sub { $_[0] != $_[1] });
		my $cmp = $perl{$op} or die "test_view: unknown operator $op";
		$where = " WHERE $col $op $const";
		# NULL compares to nothing, in SQL as here
		$v{where} = sub { defined $_[0]{$col} && $cmp->($_[0]{$col}, $const) };
	}
	$v{sql} = 'SELECT ' . join(', ', @select) . " FROM $v{source}$where GROUP BY "
	  . join(', ', 1 .. 1 + @{ $v{keys} });
	$v{lateness_sql} = $interval->($v{lateness_ms});
	return \%v;
}

# create_view for each {name, sql, lateness_sql} of @$views.
sub create_views
{
	my ($node, $views) = @_;
	for my $v (@$views)
	{
		$node->safe_psql('postgres',
			"SELECT streamview.create_view(name => '$v->{name}', query => \$q\$ $v->{sql} \$q\$, "
			  . "allowed_lateness => '$v->{lateness_sql}')");
	}
	return;
}

# One generated stream produced in chunks that continue each other, fed to
# the oracle as it goes.  stream_chunker(broker, topic, oracle, partitions,
# seed, base_ms, mooo_ms, views) -> $c; $c->{next}->($per_partition) returns
# how many messages it produced; $c->{total}->() how many in all.
sub stream_chunker
{
	my (%o) = @_;
	my (%state, $total);
	my $first = 1;
	my $next  = sub {
		my ($per_partition) = @_;
		my $msgs = gen_stream(
			partitions    => $o{partitions},
			per_partition => $per_partition,
			($first ? (seed => $o{seed}) : ()),
			state       => \%state,
			base_ms     => $o{base_ms},
			mooo_ms     => $o{mooo_ms},
			lateness_ms => [ map { $_->{lateness_ms} } @{ $o{views} } ]);
		$first = 0;
		$o{oracle}->feed($msgs);
		produce($o{broker}, $o{topic}, $msgs);
		$total += @$msgs;
		return scalar @$msgs;
	};
	return { next => $next, total => sub { $total // 0 } };
}

sub gen_stream
{
	my (%o) = @_;
	my $P     = $o{partitions};
	my $n     = $o{per_partition};
	my $mooo  = $o{mooo_ms} // 5000;
	my @lat   = @{ $o{lateness_ms} // [10000] };
	my $maxl  = (sort { $b <=> $a } @lat)[0];
	my $st    = $o{state} // {};
	my $enc   = JSON::PP->new->canonical->ascii;
	srand($o{seed}) if defined $o{seed};
	$st->{seq} //= 0;
	my @users = map { "u$_" } 1 .. ($o{users} // 8);
	push @users, 'u"q\\x' if $o{odd_users};
	my @regions = qw(eu us ap);

	my @bad_kinds = qw(bad_json null_payload non_object missing_ts null_ts missing_amount
	  null_user bad_amount bad_ts bad_qty bad_flag array_amount);

	my @out;
	for my $p (0 .. $P - 1)
	{
		my $ps = $st->{p}{$p} //= { clock => $o{base_ms} + $p * 7_000 + 123, max_et => undef, recent => [] };
		for my $i (1 .. $n)
		{
			$ps->{clock} += 100 + int(rand(300));
			my $clock = $ps->{clock};
			my $r     = rand();
			my $id    = sprintf('e%d-%d', $p, $st->{seq}++);
			my $user  = $users[ int(rand(@users)) ];
			my %ev    = (
				event_id     => $id,
				user_id      => $user,
				amount_cents => int(rand(10000)),
			);
			$ev{meta}   = { qty => 1 + int(rand(5)), src => 'web' } if rand() < 0.7;
			$ev{region} = $regions[ int(rand(@regions)) ] if rand() < 0.8;
			$ev{flag}   = (rand() < 0.7 ? JSON::PP::true : JSON::PP::false) if rand() < 0.85;
			$ev{extra}  = 'ignored' if rand() < 0.1;
			my $t;        # event time in ms
			my $kind = 'normal';
			if    ($r < 0.05) { $kind = 'late';     $t = $clock - $mooo - int(rand($maxl - 1000)) }
			elsif ($r < 0.07) { $kind = 'too_late'; $t = $clock - $mooo - $maxl - 60_000 - int(rand(60_000)) }
			elsif ($r < 0.075 && defined $ps->{max_et})
			{
				$kind = 'boundary';
				my $l = $lat[ int(rand(@lat)) ];
				$t = $ps->{max_et} - $mooo - $l - (rand() < 0.5 ? 0 : 1);
			}
			elsif ($r < 0.105 && @{ $ps->{recent} }) { $kind = 'dup' }
			elsif ($r < 0.135) { $kind = 'noid'; delete $ev{event_id} }
			elsif ($r < 0.175) { $kind = $bad_kinds[ int(rand(@bad_kinds)) ] }
			$t //= $clock - int(rand($mooo + 1));
			if ($kind eq 'normal' && rand() < 0.03)
			{
				# exactly on a minute: the first instant of a window
				my $edge = int($clock / 60_000) * 60_000;
				$t = $edge if $edge >= $clock - $mooo;
			}

			my $value;
			if ($kind eq 'dup')
			{
				my $orig = $ps->{recent}[ int(rand(@{ $ps->{recent} })) ];
				$value = $orig->{value};
				if (rand() < 0.3)    # same id, different content: still a duplicate
				{
					my $d = $enc->decode($value);
					$d->{amount_cents} = 1 + ($d->{amount_cents} // 0);
					$value = $enc->encode($d);
				}
				push @out, [ $p, $orig->{key}, $value ];
				$ps->{recent} = [] if ++$ps->{since} > 2;
				next;    # same event time as the original: max_et unchanged
			}
			$ev{ts} = ts_value($t, $i);
			if    ($kind eq 'bad_json')       { $value = '{"event_id":"' . $id . '","ts":' }
			elsif ($kind eq 'null_payload')   { $value = undef }
			elsif ($kind eq 'non_object')     { $value = ('[1,2,3]', '"just_a_string"', '42', 'null', 'true')[ int(rand(5)) ] }
			elsif ($kind eq 'missing_ts')     { delete $ev{ts} }
			elsif ($kind eq 'null_ts')        { $ev{ts} = undef }
			elsif ($kind eq 'missing_amount') { delete $ev{amount_cents} }
			elsif ($kind eq 'null_user')      { $ev{user_id} = undef }
			elsif ($kind eq 'bad_amount')     { $ev{amount_cents} = 'abc' }
			elsif ($kind eq 'bad_ts')         { $ev{ts} = 'not-a-time' }
			elsif ($kind eq 'bad_qty')        { $ev{meta} = { qty => 'many' } }
			elsif ($kind eq 'bad_flag')       { $ev{flag} = 'maybe' }
			elsif ($kind eq 'array_amount')   { $ev{amount_cents} = [1] }
			$value = $enc->encode(\%ev) if !defined $value && $kind ne 'null_payload';
			push @out, [ $p, $user, $value ];
			my $readable = $kind =~ /^(normal|late|too_late|boundary|noid)$/;
			$ps->{max_et} = $t if $readable && (!defined $ps->{max_et} || $t > $ps->{max_et});
			# a duplicate repeats the latest on-time event, at most 3 messages later
			if ($kind eq 'normal') { $ps->{recent} = [ { key => $user, value => $value } ]; $ps->{since} = 0 }
			elsif (++$ps->{since} > 2) { $ps->{recent} = [] }
		}
	}
	# interleave partitions round-robin (order within a partition is kept)
	my %byp;
	push @{ $byp{ $_->[0] } }, $_ for @out;
	my @mixed;
	while (grep { @{ $byp{$_} } } keys %byp)
	{
		for my $p (sort keys %byp) { push @mixed, shift @{ $byp{$p} } if @{ $byp{$p} } }
	}
	return \@mixed;
}

# Event time (ms) as a JSON value: epoch-ms numbers and ISO strings, some
# with a UTC offset.
sub ts_value
{
	my ($ms, $i) = @_;
	my $r = $i % 4;
	return $ms + 0 if $r == 0 || $r == 1;
	return us_to_iso($ms * 1000, 0) if $r == 2;
	return us_to_iso($ms * 1000, ($i % 8 == 3) ? 120 : -330);
}

1;
