# Upgrade: an install of 0.1 updated with ALTER EXTENSION ... UPDATE has the
# same objects as a fresh install of the current version: every function
# (signature, body, settings, security, grants), table (columns, defaults,
# constraints, indexes, grants, row level security and policies) and view.
# The oracle is the fresh install; the update scripts are what is tested.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use StreamViewTest;

my $node = new_node('n005');
my ($current) = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'pg_streamview'");
isnt($current, '0.1', "the current version ($current) is not 0.1");

# The fresh install is new_node's, in postgres (the database the workers
# serve: CREATE EXTENSION is refused anywhere else); the update scripts run
# elsewhere, as ALTER EXTENSION does not check.
$node->safe_psql('postgres', 'CREATE DATABASE updated');
$node->safe_psql('updated', "CREATE EXTENSION pg_streamview VERSION '0.1'");
is($node->safe_psql('updated', "SELECT extversion FROM pg_extension WHERE extname = 'pg_streamview'"),
	'0.1', 'version 0.1 installs');
$node->safe_psql('updated', 'ALTER EXTENSION pg_streamview UPDATE');
is($node->safe_psql('updated', "SELECT extversion FROM pg_extension WHERE extname = 'pg_streamview'"),
	$current, "ALTER EXTENSION UPDATE reaches $current");

# One line per object of the extension, with what defines it.  OIDs differ
# between databases, so everything is shown by name.
my $fingerprint = q{
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'pg_streamview'),
members AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e')
SELECT 'function ' || p.oid::regprocedure::text
       || ' returns ' || pg_get_function_result(p.oid)
       || ' args ' || pg_get_function_arguments(p.oid)
       || ' lang ' || l.lanname || ' vol ' || p.provolatile::text || ' strict ' || p.proisstrict
       || ' secdef ' || p.prosecdef || ' config ' || coalesce(p.proconfig::text, '-')
       || ' acl ' || coalesce(p.proacl::text, '-')
       || ' body ' || md5(coalesce(p.prosrc, '') || coalesce(p.probin, ''))
       || ' comment ' || coalesce(obj_description(p.oid, 'pg_proc'), '-')
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
  JOIN pg_language l ON l.oid = p.prolang
UNION ALL
SELECT 'relation ' || c.relkind::text || ' ' || c.oid::regclass::text
       || ' acl ' || coalesce(c.relacl::text, '-') || ' rls ' || c.relrowsecurity
       || ' comment ' || coalesce(obj_description(c.oid, 'pg_class'), '-')
       || CASE WHEN c.relkind = 'v' THEN ' def ' || md5(pg_get_viewdef(c.oid)) ELSE '' END
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
UNION ALL
SELECT 'column ' || c.oid::regclass::text || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || ' notnull ' || a.attnotnull || ' default ' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '-')
       || ' acl ' || coalesce(a.attacl::text, '-')
       || ' comment ' || coalesce(col_description(c.oid, a.attnum), '-')
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
UNION ALL
SELECT 'constraint ' || con.conrelid::regclass::text || ' ' || pg_get_constraintdef(con.oid)
  FROM members m JOIN pg_constraint con ON m.classid = 'pg_class'::regclass AND con.conrelid = m.objid
UNION ALL
SELECT 'index ' || regexp_replace(pg_get_indexdef(i.indexrelid), 'INDEX \S+ ON', 'INDEX ON')
  FROM members m JOIN pg_index i ON m.classid = 'pg_class'::regclass AND i.indrelid = m.objid
UNION ALL
SELECT 'policy ' || pol.polrelid::regclass::text || ' ' || pol.polname || ' ' || pol.polcmd::text
       || ' ' || coalesce(pg_get_expr(pol.polqual, pol.polrelid), '-')
  FROM members m JOIN pg_policy pol ON m.classid = 'pg_class'::regclass AND pol.polrelid = m.objid
UNION ALL
SELECT 'type ' || t.oid::regtype::text || ' ' || coalesce(
         (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid), '-')
       || ' comment ' || coalesce(obj_description(t.oid, 'pg_type'), '-')
  FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
UNION ALL
SELECT 'config dump ' || cfg::regclass::text || ' ' || coalesce(cond, '-')
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(cfg, cond)
 WHERE e.extname = 'pg_streamview'
UNION ALL
SELECT 'schema ' || n.nspname || ' acl ' || coalesce(n.nspacl::text, '-')
       || ' comment ' || coalesce(obj_description(n.oid, 'pg_namespace'), '-')
  FROM pg_namespace n WHERE n.nspname IN ('streamview', 'streamview_internal')
ORDER BY 1
};

my @fresh   = split /\n/, $node->safe_psql('postgres', $fingerprint);
my @updated = split /\n/, $node->safe_psql('updated', $fingerprint);
cmp_ok(scalar @fresh, '>', 50, 'the fingerprint lists the extension\'s objects (' . scalar(@fresh) . ')');

my %in_fresh   = map { $_ => 1 } @fresh;
my %in_updated = map { $_ => 1 } @updated;
my @missing = grep { !$in_updated{$_} } @fresh;
my @extra   = grep { !$in_fresh{$_} } @updated;
is(scalar @missing, 0, 'nothing of a fresh install is missing after the update')
  or diag(join("\n", 'only in the fresh install:', @missing));
is(scalar @extra, 0, 'the update leaves nothing a fresh install does not have')
  or diag(join("\n", 'only in the updated install:', @extra));

# A grant a DBA made on 0.1 survives the update.
$node->safe_psql('postgres', 'CREATE ROLE upgrade_grantee');
$node->safe_psql('postgres', 'CREATE DATABASE granted');
$node->safe_psql('granted', "CREATE EXTENSION pg_streamview VERSION '0.1'");
$node->safe_psql('granted', q{
	GRANT EXECUTE ON FUNCTION
	  streamview.create_source(text, text, text, jsonb, text, text, text, jsonb, text),
	  streamview.create_view(text, text, text), streamview.validate(text, int, bool) TO upgrade_grantee});
# A source of 0.1 (its row written as 0.1's create_source writes it: the
# library refuses 0.1's API) is read by one worker after the update.
$node->safe_psql('granted', q{
	INSERT INTO streamview.sources (name, brokers, topic, event_time, max_out_of_orderness, owner)
	VALUES ('old_source', '127.0.0.1:9', 't', 'ts', '0', 'postgres')});
$node->safe_psql('granted', 'ALTER EXTENSION pg_streamview UPDATE');
is($node->safe_psql('granted', q{SELECT workers FROM streamview.source_list WHERE name = 'old_source'}),
	'1', 'a source made by 0.1 has one worker after the update');
is($node->safe_psql('granted', q{
	SELECT string_agg(p.proname, ',' ORDER BY p.proname) FROM pg_proc p
	 WHERE p.pronamespace = 'streamview'::regnamespace
	   AND has_function_privilege('upgrade_grantee', p.oid, 'EXECUTE')
	   AND p.proname NOT IN ('tumble', 'hop', '_consumer_group')}),
	'create_source,create_view,validate', 'grants on the API survive the update');

# The library refuses to work with SQL objects of another version: the API
# says so with a hint, and the launcher starts no worker (and says so, once),
# until ALTER EXTENSION ... UPDATE.
my $old = PostgreSQL::Test::Cluster->new('n005old');
$old->init;
$old->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_streamview'\n"
	  . "streamview.launcher_naptime = 200\nlog_min_messages = info\n");
$old->start;
$old->safe_psql('postgres', "CREATE EXTENSION pg_streamview VERSION '0.1'");
my $call = q{SELECT streamview.create_source('s', '127.0.0.1:9', 't', '{"ts":"timestamptz"}', 'ts')};
my ($rc, $out, $err) = $old->psql('postgres', $call, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/pg_streamview's SQL objects are version 0\.1, its library version $current/,
	'an API call against the 0.1 catalog is refused, naming both versions');
like($err, qr/HINT:  Run ALTER EXTENSION pg_streamview UPDATE/, 'with the command that mends it');
ok($old->wait_for_log(qr/WARNING:  pg_streamview's SQL objects are version 0\.1, its library version $current: no worker runs/),
	'the launcher says why it starts no worker');
$old->safe_psql('postgres', 'ALTER EXTENSION pg_streamview UPDATE');
$old->safe_psql('postgres', $call);
is($old->safe_psql('postgres', 'SELECT name FROM streamview.source_list'), 's', 'after the update the API works');
ok($old->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_streamview source'}),
	'and the launcher starts the source\'s worker');
my $warnings = () = slurp_file($old->logfile) =~ /no worker runs/g;
is($warnings, 1, 'the launcher said it once');
$old->stop;

$node->stop;
done_testing();
