# Retention of a view's old windows (set_retention): the launcher's
# housekeeping deletes, from every version's table, the windows that end
# more than drop_after before that version's watermark.  A late event for
# a deleted window is too late (drop_after is at least allowed_lateness),
# so no window comes back half-counted; a rebuild replays the whole log,
# validates against the live version over the windows both keep, and ends
# with the same rows once its housekeeping has run.  The oracle is the
# events this test sends, counted in Perl.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use StreamViewTest;

my $broker = broker_start('b019', { kept => 1 });
my $node   = new_node('n019', batch_size => 20);
my $B      = $broker->{addr};

$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('kept', '$B', 'kept', '{"ts":"timestamptz","k":"text"}', 'ts');
	SELECT streamview.create_view('public.kept_n', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS n FROM kept GROUP BY 1, 2 \$\$,
	  allowed_lateness => '2 minutes');
});

# Ten minutes of events, one every 10 s, keys a and b in turn: 12:00:00 ..
# 12:09:50.  The watermark ends at 12:09:50 (no out-of-orderness allowed).
my (@msgs, %count);
for my $i (0 .. 59)
{
	my ($min, $sec) = (int($i / 6), ($i % 6) * 10);
	my $k = $i % 2 ? 'b' : 'a';
	push @msgs, [ 0, "e$i", sprintf('{"ts":"2024-05-01T12:%02d:%02dZ","k":"%s"}', $min, $sec, $k) ];
	$count{ sprintf('12:%02d', $min) }{$k}++;
}
produce($broker, 'kept', \@msgs);
ok(wait_consumed($node, 'kept_n', 60), 'the view consumed 60 events');

# What a table should hold: the windows ending at or after 12:09:50 - 3
# minutes = 12:06:50, that is from 12:06 on.
sub expected_rows
{
	my ($from) = @_;
	return join("\n", map { my $m = $_; map { "$m $_ $count{$m}{$_}" } sort keys %{ $count{$m} } }
		  grep { $_ ge $from } sort keys %count);
}
my $rows = sub {
	my ($table) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT to_char(window_start AT TIME ZONE 'UTC', 'HH24:MI') || ' ' || k || ' ' || n
		  FROM $table ORDER BY window_start, k});
};
is($rows->('kept_n'), expected_rows('12:00'), 'before any retention the view holds all ten minutes');

my ($rc, $out, $err) = $node->psql('postgres', q{SELECT streamview.set_retention('kept_n', '1 minute')});
like($err, qr/drop_after must be at least the view's allowed_lateness/,
	'a retention shorter than allowed_lateness is refused');
is($node->safe_psql('postgres', q{SELECT streamview.set_retention('kept_n', '3 minutes')}), '00:03:00',
	'set_retention returns the setting');

# The launcher applies retention once a minute, and at once after a reload.
$node->reload;
ok(wait_for($node, q{SELECT min(window_start) AT TIME ZONE 'UTC' FROM kept_n}, '2024-05-01 12:06:00'),
	'the housekeeping deletes the windows that ended more than 3 minutes before the watermark');
is($rows->('kept_n'), expected_rows('12:06'), 'and keeps the others as they were');

# A late event for a deleted window is too late, not a window of one event.
produce($broker, 'kept', [ [ 0, 'late', '{"ts":"2024-05-01T12:01:30Z","k":"a"}' ] ]);
ok(wait_consumed($node, 'kept_n', 61), 'the late event is consumed');
is($node->safe_psql('postgres', q{SELECT too_late || ' ' || applied FROM streamview.status WHERE view_name = 'kept_n'}),
	'1 60', 'and counted too late');
is($rows->('kept_n'), expected_rows('12:06'), 'the deleted window does not come back');

# A rebuild replays the whole log: it holds the old windows until its own
# housekeeping runs, validates against the live version over the windows
# both keep, and ends with the same rows.
is($node->safe_psql('postgres', q{SELECT streamview.rebuild('kept_n')}), '2', 'a rebuild makes version 2');
is($node->safe_psql('postgres', q{SELECT streamview.wait_for('kept_n', 2, '60 seconds')}), 'caught_up',
	'which catches up');
is($node->safe_psql('postgres', q{
	SELECT string_agg("check" || '=' || passed, ' ' ORDER BY "check")
	  FROM streamview.validate('kept_n', 2, expect_identical => true)}),
	'caught_up=true differences=true ledger=true', 'and validates as identical over the windows both keep')
  or diag($node->safe_psql('postgres', q{SELECT * FROM streamview.validate('kept_n', 2, expect_identical => true)}));
$node->reload;
ok(wait_for($node, q{SELECT min(window_start) AT TIME ZONE 'UTC' FROM kept_n_v2}, '2024-05-01 12:06:00'),
	'the housekeeping applies the retention to the rebuilt version too');
is($rows->('kept_n_v2'), expected_rows('12:06'), 'which then holds the same rows as the live version');
$node->safe_psql('postgres', q{SELECT streamview.swap('kept_n', 2)});
is($rows->('kept_n'), expected_rows('12:06'), 'and serves them after the swap');

# Off again: nothing more is deleted.
is($node->safe_psql('postgres', q{SELECT streamview.set_retention('kept_n', NULL) IS NULL}), 't',
	'set_retention(NULL) turns it off');

# The housekeeping deletes as the view's owner, in a security-restricted
# operation: a trigger the owner puts on a version's table cannot use the
# launcher's rights.  Here one tries to make its owner a superuser.
$node->safe_psql('postgres', qq{
	CREATE ROLE mallory LOGIN;
	GRANT CREATE ON SCHEMA public TO mallory;
	GRANT EXECUTE ON FUNCTION
	  streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text, text, text, int, text, text, text),
	  streamview.create_view(text, text, text), streamview.set_retention(text, interval) TO mallory;
});
$node->safe_psql('postgres', qq{
	SELECT streamview.create_source('mal', '$B', 'kept', '{"ts":"timestamptz","k":"text"}', 'ts');
	SELECT streamview.create_view('public.mal_n', \$\$
	  SELECT streamview.tumble(ts, '1 minute') AS window_start, k, count(*) AS n FROM mal GROUP BY 1, 2 \$\$,
	  allowed_lateness => '2 minutes');
	CREATE FUNCTION public.promote() RETURNS trigger LANGUAGE plpgsql AS
	  \$\$ BEGIN ALTER ROLE mallory SUPERUSER; RETURN OLD; END \$\$;
	CREATE TRIGGER promote BEFORE DELETE ON public.mal_n_v1 FOR EACH ROW EXECUTE FUNCTION public.promote();
	SELECT streamview.set_retention('mal_n', '3 minutes');
}, extra_params => [ '-U', 'mallory' ]);
ok(wait_consumed($node, 'mal_n', 61), "mallory's view read the topic");
my $log_pos = -s $node->logfile;
$node->reload;
ok($node->wait_for_log(qr/could not apply the retention of stream view "mal_n" version 1: (permission denied|must be superuser)/, $log_pos),
	'the housekeeping ran the owner\'s trigger with the owner\'s rights, and it failed');
is($node->safe_psql('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}), 'f',
	'the owner of a view did not become a superuser through its retention');
is($node->safe_psql('postgres', q{SELECT count(DISTINCT window_start) FROM mal_n}), '10',
	'and nothing of that view was deleted');

broker_stop($broker);
$node->stop;
done_testing();
