-- Validation: add_check, drop_check, validate.

CREATE FUNCTION streamview.add_check(view_name text, name text, predicate text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.add_check(text, text, text) IS
'registers an invariant (a boolean expression over the view''s columns) that validate() checks; returns how many rows of the live version violate it now';

CREATE FUNCTION streamview_internal._add_check_impl(caller regrole, view_name text, name text, predicate text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v    streamview.views;
    live streamview.versions;
    violations bigint;
BEGIN
    v := streamview_internal._lock_view(caller, view_name);
    PERFORM streamview_internal._require(name, 'name');
    PERFORM streamview_internal._require(predicate, 'predicate');
    IF EXISTS (SELECT 1 FROM streamview.checks c WHERE c.view_id = v.view_id AND c.name = _add_check_impl.name) THEN
        RAISE EXCEPTION 'check "%" of stream view "%" already exists', name, view_name
            USING ERRCODE = 'duplicate_object';
    END IF;
    live := streamview_internal._live_version(v.view_id);
    BEGIN
        violations := streamview_internal._count_as(v.owner, format('SELECT count(*) FROM (%s) AS t WHERE NOT (%s)',
                                                           live.view_sql, predicate));
    EXCEPTION WHEN syntax_error OR undefined_column OR undefined_function OR datatype_mismatch THEN
        RAISE EXCEPTION 'invalid check "%" for stream view "%": %', name, view_name, SQLERRM
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A check is a boolean expression over the view''s columns, such as revenue >= 0.';
    END;
    INSERT INTO streamview.checks (view_id, name, predicate) VALUES (v.view_id, name, predicate);
    RETURN violations;   -- rows of the live version that violate it now
END $$;

CREATE FUNCTION streamview.drop_check(view_name text, name text)
RETURNS text
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION streamview.drop_check(text, text) IS
'removes an invariant registered with add_check(); returns its predicate';

CREATE FUNCTION streamview_internal._drop_check_impl(caller regrole, view_name text, name text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v       streamview.views;
    dropped text;
BEGIN
    v := streamview_internal._lock_view(caller, view_name);
    DELETE FROM streamview.checks c WHERE c.view_id = v.view_id AND c.name = _drop_check_impl.name
    RETURNING c.predicate INTO dropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'check "%" of stream view "%" does not exist', name, view_name
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN dropped;   -- its predicate, to add it back
END $$;

-- Do two t-digests (as text, of the tdigest extension in schema nsp) differ
-- by more than the order of merging explains?  They are the same when they
-- hold as many values and each one's percentiles 1% ... 99% lie between the
-- other's percentiles 3/compression of rank below and above: batch
-- boundaries move a t-digest's centroids, and its percentiles by about
-- 1/compression of rank.  NULL and NULL are the same.  Run as the view's
-- owner (in _compare), who can use the extension.
CREATE FUNCTION streamview_internal._tdigests_differ(nsp name, a text, b text)
RETURNS bool
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    differ bool;
BEGIN
    IF a IS NULL OR b IS NULL THEN
        RETURN (a IS NULL) <> (b IS NULL);
    END IF;
    EXECUTE format($q$
        WITH d AS (SELECT $1::%1$I.tdigest AS a, $2::%1$I.tdigest AS b,
                          '{0.01,0.05,0.1,0.25,0.5,0.75,0.9,0.95,0.99}'::float8[] AS qs,
                          3.0 / (regexp_match($1, 'compression (\d+)'))[1]::float8 AS t),
             p AS (SELECT d.a, d.b,
                          (SELECT %1$I.tdigest_percentile(x, d.qs) FROM (VALUES (d.a)) AS v(x)) AS pa,
                          (SELECT %1$I.tdigest_percentile(x, d.qs) FROM (VALUES (d.b)) AS v(x)) AS pb,
                          (SELECT %1$I.tdigest_percentile(x, array(SELECT greatest(q - d.t, 0) FROM unnest(d.qs) AS q))
                             FROM (VALUES (d.a)) AS v(x)) AS la,
                          (SELECT %1$I.tdigest_percentile(x, array(SELECT least(q + d.t, 1) FROM unnest(d.qs) AS q))
                             FROM (VALUES (d.a)) AS v(x)) AS ha,
                          (SELECT %1$I.tdigest_percentile(x, array(SELECT greatest(q - d.t, 0) FROM unnest(d.qs) AS q))
                             FROM (VALUES (d.b)) AS v(x)) AS lb,
                          (SELECT %1$I.tdigest_percentile(x, array(SELECT least(q + d.t, 1) FROM unnest(d.qs) AS q))
                             FROM (VALUES (d.b)) AS v(x)) AS hb
                     FROM d)
        SELECT %1$I.tdigest_count(p.a) <> %1$I.tdigest_count(p.b)
               OR EXISTS (SELECT FROM unnest(p.pa, p.pb, p.la, p.ha, p.lb, p.hb) AS u(pa, pb, la, ha, lb, hb)
                           WHERE u.pb NOT BETWEEN u.la AND u.ha OR u.pa NOT BETWEEN u.lb AND u.hb)
          FROM p $q$, nsp) INTO differ USING a, b;
    RETURN differ;
END $$;

-- Differences between two versions over the windows final in both.
CREATE FUNCTION streamview_internal._compare(v streamview.views, a streamview.versions, b streamview.versions,
                                    OUT comparable bool, OUT only_a bigint, OUT only_b bigint,
                                    OUT differ bigint, OUT samples text, OUT totals text,
                                    OUT totals_equal bool, OUT horizon timestamptz, OUT note text,
                                    OUT compared text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keys_a text[];
    keys_b text[];
    cols   text[];
    sums   text[];
    jn     text;
    q      text;
    r      jsonb;
    b_owner regrole := v.owner;   -- the versions' tables belong to the view's owner
    kept_from timestamptz;
    states text[];
    digests text[];
    digest_schemas text[];
BEGIN
    SELECT array_agg(o->>'name' ORDER BY o->>'name') INTO keys_a
      FROM jsonb_array_elements(a.definition->'outputs') o WHERE o->>'kind' = 'key';
    SELECT array_agg(o->>'name' ORDER BY o->>'name') INTO keys_b
      FROM jsonb_array_elements(b.definition->'outputs') o WHERE o->>'kind' = 'key';
    horizon := least(a.watermark, b.watermark) - v.allowed_lateness;
    -- With a retention, windows the housekeeping may already have deleted
    -- from either version are not compared (the furthest watermark says
    -- which).
    kept_from := coalesce(greatest(a.watermark, b.watermark) - v.retention, '-infinity');
    comparable := coalesce(keys_a, '{}') = coalesce(keys_b, '{}');
    IF NOT comparable THEN
        note := format('the versions group by different keys (%s and %s)',
                       coalesce(array_to_string(keys_a, ', '), 'none'), coalesce(array_to_string(keys_b, ', '), 'none'));
        RETURN;
    END IF;
    IF horizon IS NULL THEN
        only_a := 0; only_b := 0; differ := 0; totals_equal := true;
        note := 'no window is final in both versions yet';
        RETURN;
    END IF;
    SELECT array_agg(oa->>'name' ORDER BY oa->>'name') INTO cols
      FROM jsonb_array_elements(a.definition->'outputs') oa
      JOIN jsonb_array_elements(b.definition->'outputs') ob ON ob->>'name' = oa->>'name'
     WHERE oa->>'kind' <> 'key';
    -- The sketches' states (hll, tdigest) have no equality the comparison,
    -- run with search_path = pg_catalog, can name: hll states, and a state
    -- compared with a column of another kind, are compared by their text,
    -- which is their bytes.
    SELECT array_agg(oa->>'name' ORDER BY oa->>'name') INTO states
      FROM jsonb_array_elements(a.definition->'outputs') oa
      JOIN jsonb_array_elements(b.definition->'outputs') ob ON ob->>'name' = oa->>'name'
     WHERE (oa->>'kind' IN ('hll', 'tdigest') OR ob->>'kind' IN ('hll', 'tdigest'))
       AND NOT (oa->>'kind' = 'tdigest' AND ob->>'kind' = 'tdigest');
    -- A t-digest depends on the order in which values were merged, so batch
    -- boundaries change it (docs/architecture.md): tdigest columns are
    -- compared by _tdigests_differ, in the schema of the column's type.
    SELECT array_agg(oa->>'name' ORDER BY oa->>'name'), array_agg(n.nspname ORDER BY oa->>'name')
      INTO digests, digest_schemas
      FROM jsonb_array_elements(a.definition->'outputs') oa
      JOIN jsonb_array_elements(b.definition->'outputs') ob ON ob->>'name' = oa->>'name'
      JOIN pg_type t ON t.oid = (oa->>'type')::regtype
      JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE oa->>'kind' = 'tdigest' AND ob->>'kind' = 'tdigest';
    IF digests IS NOT NULL THEN
        compared := format('tdigest columns %s compared by count and percentiles, within 3/compression of rank',
                           array_to_string(digests, ', '));
    END IF;
    SELECT array_agg(oa->>'name' ORDER BY oa->>'name') INTO sums
      FROM jsonb_array_elements(a.definition->'outputs') oa
      JOIN jsonb_array_elements(b.definition->'outputs') ob ON ob->>'name' = oa->>'name'
     WHERE oa->>'kind' IN ('count', 'sum') AND ob->>'kind' IN ('count', 'sum');
    -- Rows match on (window_start, keys), NULL keys included: a jsonb array
    -- of them is a key that FULL JOIN can hash.
    SELECT 'jsonb_build_array(' || string_agg(format('s.%I', k), ', ') || ')'
      INTO jn FROM unnest(array['window_start'] || coalesce(keys_a, '{}')) k;
    q := format($q$
        WITH x AS (SELECT %4$s AS sv_key, s AS r FROM (%1$s) s WHERE s.window_end <= %3$L AND s.window_end >= %9$L),
             y AS (SELECT %4$s AS sv_key, s AS r FROM (%2$s) s WHERE s.window_end <= %3$L AND s.window_end >= %9$L),
             j AS (SELECT x.r AS x, y.r AS y FROM x FULL JOIN y ON x.sv_key = y.sv_key)
        SELECT count(*) FILTER (WHERE y IS NULL) AS only_a,
               count(*) FILTER (WHERE x IS NULL) AS only_b,
               count(*) FILTER (WHERE x IS NOT NULL AND y IS NOT NULL AND %5$s) AS differ,
               (SELECT string_agg(d, '; ') FROM (
                    SELECT CASE WHEN y IS NULL THEN 'only in version %6$s: ' || (x)::text
                                WHEN x IS NULL THEN 'only in version %7$s: ' || (y)::text
                                ELSE 'differs: ' || (x)::text || ' vs ' || (y)::text END AS d
                      FROM j WHERE y IS NULL OR x IS NULL OR %5$s LIMIT 5) s) AS samples,
               %8$s AS totals
          FROM j $q$,
        a.view_sql, b.view_sql, horizon, jn,
        coalesce((SELECT '(' || string_agg(d, ' OR ') || ')' FROM (
                    SELECT format('(x).%1$I IS DISTINCT FROM (y).%1$I', c) AS d FROM unnest(cols) c
                     WHERE c <> ALL (coalesce(states, '{}')) AND c <> ALL (coalesce(digests, '{}'))
                    UNION ALL
                    SELECT format('(x).%1$I::text IS DISTINCT FROM (y).%1$I::text', c) FROM unnest(states) c
                    UNION ALL
                    SELECT format('streamview_internal._tdigests_differ(%2$L, (x).%1$I::text, (y).%1$I::text)', c, nsp)
                      FROM unnest(digests, digest_schemas) AS g(c, nsp)
                    ) e), 'false'),
        a.version, b.version,
        coalesce((SELECT 'concat_ws(''; '', ' || string_agg(
                      format('%1$L || '': '' || coalesce(sum((x).%1$I), 0) || '' vs '' || coalesce(sum((y).%1$I), 0)', c), ', ')
                      || ')' FROM unnest(sums) c), ''''''),
        kept_from
    );
    r := streamview_internal._run_as(b_owner, format('SELECT to_jsonb(z) FROM (%s) AS z', q));
    only_a := (r->>'only_a')::bigint; only_b := (r->>'only_b')::bigint; differ := (r->>'differ')::bigint;
    samples := r->>'samples'; totals := nullif(r->>'totals', '');
    totals_equal := NOT EXISTS (
        SELECT 1 FROM unnest(string_to_array(coalesce(totals, ''), '; ')) t
         WHERE t <> '' AND split_part(split_part(t, ': ', 2), ' vs ', 1) <> split_part(t, ' vs ', 2));
END $$;

CREATE FUNCTION streamview.validate(view_name text, version int, expect_identical bool DEFAULT false)
RETURNS TABLE ("check" text, passed bool, detail text)
AS 'MODULE_PATHNAME', 'streamview_api_dispatch'
LANGUAGE C VOLATILE ROWS 8;

COMMENT ON FUNCTION streamview.validate(text, int, bool) IS
'checks a version against the live one (offsets, ledger, differences, invariants) and records the result';

CREATE FUNCTION streamview_internal._validate_impl(caller regrole, view_name text, version int,
                                          expect_identical bool DEFAULT false)
RETURNS TABLE ("check" text, passed bool, detail text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v       streamview.views;
    cand    streamview.versions;
    live    streamview.versions;
    run_id  bigint := nextval('streamview.validation_runs');
    n       bigint;
    m       bigint;
    cmp     record;
    chk     record;
    ran     text[] := '{}';
    oks     bool[] := '{}';
    details text[] := '{}';
BEGIN
    v := streamview_internal._lock_view(caller, view_name, lock => false);
    cand := streamview_internal._get_version(v, version);
    live := streamview_internal._live_version(v.view_id);

    -- 1. caught up to the same offsets as the live version
    n := streamview_internal._partitions_behind(cand.version_id, live.version_id, exact => true);
    SELECT count(DISTINCT o.partition) INTO m
      FROM streamview.offsets o, streamview.sources s
     WHERE o.version_id IN (cand.version_id, live.version_id) AND s.source_id = v.source_id
       AND streamview_internal._reads_partition(s.partitions, o.partition);
    "check" := 'caught_up';
    passed := cand.state IN ('caught_up', 'live') AND n = 0;
    detail := CASE WHEN cand.state NOT IN ('caught_up', 'live')
                   THEN format('version %s is %s', cand.version, cand.state)
                   WHEN n = 0 THEN format('same offsets as live version %s in %s partitions', live.version, m)
                   ELSE format('%s of %s partitions are at other offsets than live version %s', n, m, live.version) END;
    RETURN NEXT;
    ran := ran || "check"; oks := oks || passed; details := details || detail;

    -- 2. the per-partition ledger balances
    SELECT count(*) FILTER (WHERE o.consumed <> o.applied + o.duplicates + o.too_late + o.dead_lettered),
           sum(o.consumed)
      INTO n, m FROM streamview.offsets o WHERE o.version_id = cand.version_id;
    "check" := 'ledger';
    passed := n = 0;
    detail := format('consumed = applied + duplicates + too_late + dead_lettered in every partition (%s consumed)', coalesce(m, 0));
    IF n > 0 THEN
        detail := format('%s partitions do not balance', n);
    END IF;
    RETURN NEXT;
    ran := ran || "check"; oks := oks || passed; details := details || detail;

    -- 3. differences from the live version over windows final in both
    IF cand.version_id <> live.version_id THEN
        SELECT * INTO cmp FROM streamview_internal._compare(v, live, cand);
        "check" := 'differences';
        IF NOT cmp.comparable THEN
            passed := NOT expect_identical;
            detail := 'not compared: ' || cmp.note;
        ELSIF cmp.note IS NOT NULL THEN
            passed := NOT expect_identical;
            detail := cmp.note;
        ELSE
            passed := NOT expect_identical OR (cmp.only_a + cmp.only_b + cmp.differ = 0 AND cmp.totals_equal);
            detail := format('windows ending by %s: %s rows only in live version %s, %s only in version %s, %s differ',
                             cmp.horizon, cmp.only_a, live.version, cmp.only_b, cand.version, cmp.differ)
                      || coalesce('; totals ' || cmp.totals, '')
                      || coalesce('; ' || cmp.compared, '')
                      || coalesce('; e.g. ' || cmp.samples, '');
        END IF;
        RETURN NEXT;
        ran := ran || "check"; oks := oks || passed; details := details || detail;
    END IF;

    -- 4. user invariants, evaluated as the view's owner
    FOR chk IN SELECT c.name, c.predicate FROM streamview.checks c WHERE c.view_id = v.view_id ORDER BY c.name LOOP
        n := streamview_internal._count_as(v.owner, format('SELECT count(*) FROM (%s) AS t WHERE NOT (%s)',
                                                  cand.view_sql, chk.predicate));
        "check" := 'check ' || chk.name;
        passed := n = 0;
        detail := format('%s rows violate %s', n, chk.predicate);
        RETURN NEXT;
        ran := ran || "check"; oks := oks || passed; details := details || detail;
    END LOOP;

    -- Record this run: one row per check, as returned.
    INSERT INTO streamview.validations (view_name, version, run, "check", passed, detail, validated_by)
    SELECT v.name, cand.version, run_id, r.c, r.p, r.d, caller::name
      FROM unnest(ran, oks, details) AS r(c, p, d);
    UPDATE streamview.versions x SET validated_at = now(), validated_by = caller::name
     WHERE x.version_id = cand.version_id;
END $$;
