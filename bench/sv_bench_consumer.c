/*
 * sv_bench_consumer: the hand-written C consumer that `make bench` sets
 * beside pg_streamview (bench/run.sh, docs/benchmarks.md).  It is what a
 * careful engineer writes by hand for one stream view, and nothing more:
 *
 *   - librdkafka, every partition assigned from the beginning (no group
 *     join), queued.min.messages raised so the prefetch queue stays deep;
 *   - a minimal scanner that finds the few fields it needs in the JSON
 *     bytes (no JSON parser: the benchmark's producer writes flat objects
 *     without escapes);
 *   - an open-addressing hash table of (view, window, key) -> count and
 *     sum or max, windows assigned by integer arithmetic on epoch ms;
 *   - every BATCH events (50,000): COPY of the aggregated rows into a
 *     staging table and one INSERT ... ON CONFLICT into the target, with
 *     the partitions' offsets, in one transaction;
 *   - with --id, an in-memory set of event ids; the ids first seen in a
 *     batch are copied to a table in the same transaction.
 *
 * Without --conninfo it only reads, scans and aggregates (no database):
 * the "parse only" reference of the benchmark.
 *
 * Usage (bench/bench.py builds the command line):
 *   sv_bench_consumer --brokers B --topic T --time F [--key F] [--value F]
 *       [--agg sum|max|none] [--id F] --window SIZE_MS:SLIDE_MS [--window ...]
 *       [--conninfo C --table NAME] [--batch N]
 * Prints "events N" and "rows N" (rows sent to the upsert) at the end, and
 * with a database, "backend CPU_TICKS VMHWM_KB" of its backend.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#define MAX_VIEWS 16
#define MAX_PARTS 1024

typedef struct Window
{
	int64_t		size;
	int64_t		slide;
} Window;

typedef struct Group
{
	uint64_t	hash;			/* 0: empty slot */
	int32_t		view;
	int64_t		window_start;
	char	   *key;
	uint32_t	keylen;
	int64_t		n;
	int64_t		value;
	int			has_value;
} Group;

typedef struct Table
{
	Group	   *slots;
	size_t		cap;
	size_t		used;
} Table;

typedef struct IdSet
{
	uint64_t   *hashes;			/* 0: empty */
	char	  **ids;
	size_t		cap;
	size_t		used;
} IdSet;

static const char *brokers, *topic, *time_field, *key_field, *value_field, *id_field;
static const char *conninfo, *target;
static const char *agg = "sum";
static Window windows[MAX_VIEWS];
static int	nwindows;
static long batch_events = 50000;

static Table groups;
static IdSet seen;
static char **batch_ids;		/* ids first seen in this batch */
static size_t nbatch_ids, cap_batch_ids;
static int64_t next_offset[MAX_PARTS];
static int	nparts;
static PGconn *conn;
static long long rows_sent;

static void
die(const char *fmt, const char *arg)
{
	fprintf(stderr, "sv_bench_consumer: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(1);
}

static void *
xmalloc(size_t n)
{
	void	   *p = calloc(1, n);

	if (p == NULL)
		die("out of memory%s", "");
	return p;
}

static uint64_t
hash_bytes(const char *s, size_t n, uint64_t h)
{
	/* FNV-1a: short keys, good enough spread for open addressing */
	for (size_t i = 0; i < n; i++)
	{
		h ^= (unsigned char) s[i];
		h *= 1099511628211ULL;
	}
	return h ? h : 1;
}

/*
 * The value of "field": in a flat JSON object: a pointer to its first byte
 * (after the opening quote for a string) and its length; NULL if absent.
 */
static const char *
scan_field(const char *json, size_t len, const char *field, size_t flen, size_t *vlen)
{
	const char *end = json + len;
	const char *p = json;

	while ((p = memmem(p, end - p, field, flen)) != NULL)
	{
		const char *v = p + flen;

		/* field holds "\"name\":" so a value inside a string cannot match */
		if (p > json && (p[-1] == '{' || p[-1] == ',' || p[-1] == ' '))
		{
			while (v < end && *v == ' ')
				v++;
			if (v < end && *v == '"')
			{
				const char *q = memchr(v + 1, '"', end - v - 1);

				if (q == NULL)
					return NULL;
				*vlen = q - v - 1;
				return v + 1;
			}
			else
			{
				const char *q = v;

				while (q < end && *q != ',' && *q != '}' && *q != ' ')
					q++;
				*vlen = q - v;
				return v;
			}
		}
		p = v;
	}
	return NULL;
}

static int64_t
to_int64(const char *s, size_t n)
{
	int64_t		v = 0;
	int			neg = 0;
	size_t		i = 0;

	if (n > 0 && s[0] == '-')
		neg = 1, i = 1;
	for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
		v = v * 10 + (s[i] - '0');
	return neg ? -v : v;
}

static void
table_grow(Table *t)
{
	Table		old = *t;

	t->cap = old.cap ? old.cap * 2 : 1024;
	t->slots = xmalloc(t->cap * sizeof(Group));
	t->used = 0;
	for (size_t i = 0; i < old.cap; i++)
	{
		Group	   *g = &old.slots[i];

		if (g->hash)
		{
			size_t		j = g->hash & (t->cap - 1);

			while (t->slots[j].hash)
				j = (j + 1) & (t->cap - 1);
			t->slots[j] = *g;
			t->used++;
		}
	}
	free(old.slots);
}

static void
table_add(int view, int64_t ws, const char *key, size_t keylen, int has_value, int64_t value)
{
	uint64_t	h;
	size_t		j;

	if ((groups.used + 1) * 2 > groups.cap)
		table_grow(&groups);
	h = hash_bytes(key, keylen, 14695981039346656037ULL ^ (uint64_t) ws * 31 ^ (uint64_t) view);
	j = h & (groups.cap - 1);
	for (;;)
	{
		Group	   *g = &groups.slots[j];

		if (g->hash == 0)
		{
			g->hash = h;
			g->view = view;
			g->window_start = ws;
			g->key = xmalloc(keylen + 1);
			memcpy(g->key, key, keylen);
			g->keylen = keylen;
			g->n = 1;
			g->has_value = has_value;
			g->value = value;
			groups.used++;
			return;
		}
		if (g->hash == h && g->view == view && g->window_start == ws &&
			g->keylen == keylen && memcmp(g->key, key, keylen) == 0)
		{
			g->n++;
			if (has_value)
			{
				if (!g->has_value)
					g->value = value;
				else if (agg[0] == 'm')
					g->value = value > g->value ? value : g->value;
				else
					g->value += value;
				g->has_value = 1;
			}
			return;
		}
		j = (j + 1) & (groups.cap - 1);
	}
}

/* True if the id is new (and remembers it). */
static int
idset_add(const char *id, size_t n)
{
	uint64_t	h = hash_bytes(id, n, 14695981039346656037ULL);
	size_t		j;

	if ((seen.used + 1) * 2 > seen.cap)
	{
		IdSet		old = seen;

		seen.cap = old.cap ? old.cap * 2 : 65536;
		seen.hashes = xmalloc(seen.cap * sizeof(uint64_t));
		seen.ids = xmalloc(seen.cap * sizeof(char *));
		for (size_t i = 0; i < old.cap; i++)
			if (old.hashes[i])
			{
				size_t		k = old.hashes[i] & (seen.cap - 1);

				while (seen.hashes[k])
					k = (k + 1) & (seen.cap - 1);
				seen.hashes[k] = old.hashes[i];
				seen.ids[k] = old.ids[i];
			}
		free(old.hashes);
		free(old.ids);
	}
	j = h & (seen.cap - 1);
	while (seen.hashes[j])
	{
		if (seen.hashes[j] == h && strlen(seen.ids[j]) == n && memcmp(seen.ids[j], id, n) == 0)
			return 0;
		j = (j + 1) & (seen.cap - 1);
	}
	seen.hashes[j] = h;
	seen.ids[j] = xmalloc(n + 1);
	memcpy(seen.ids[j], id, n);
	seen.used++;
	if (nbatch_ids == cap_batch_ids)
	{
		cap_batch_ids = cap_batch_ids ? cap_batch_ids * 2 : 65536;
		batch_ids = realloc(batch_ids, cap_batch_ids * sizeof(char *));
		if (batch_ids == NULL)
			die("out of memory%s", "");
	}
	batch_ids[nbatch_ids++] = seen.ids[j];
	return 1;
}

static void
exec_ok(const char *sql)
{
	PGresult   *r = PQexec(conn, sql);

	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		die("%s", PQerrorMessage(conn));
	PQclear(r);
}

/* COPY buffered lines: one PQputCopyData per ~64 kB. */
static char copybuf[1 << 16];
static size_t copylen;

static void
copy_flush(void)
{
	if (copylen > 0 && PQputCopyData(conn, copybuf, copylen) != 1)
		die("%s", PQerrorMessage(conn));
	copylen = 0;
}

static void
copy_line(const char *line, size_t n)
{
	if (copylen + n > sizeof(copybuf))
		copy_flush();
	memcpy(copybuf + copylen, line, n);
	copylen += n;
}

static void
copy_begin(const char *sql)
{
	PGresult   *r = PQexec(conn, sql);

	if (PQresultStatus(r) != PGRES_COPY_IN)
		die("%s", PQerrorMessage(conn));
	PQclear(r);
}

static void
copy_end(void)
{
	PGresult   *r;

	copy_flush();
	if (PQputCopyEnd(conn, NULL) != 1)
		die("%s", PQerrorMessage(conn));
	r = PQgetResult(conn);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		die("%s", PQerrorMessage(conn));
	PQclear(r);
}

/* One transaction: the batch's groups, its new ids and the offsets. */
static void
flush_batch(void)
{
	char		line[512];
	char		sql[1024];
	const char *merge = agg[0] == 'm' ? "greatest(t.s, excluded.s)" : "t.s + excluded.s";

	if (conn == NULL)
	{
		/* parse-only mode: forget the groups as the database mode does */
		for (size_t i = 0; i < groups.cap; i++)
			if (groups.slots[i].hash)
				free(groups.slots[i].key);
		memset(groups.slots, 0, groups.cap * sizeof(Group));
		groups.used = 0;
		nbatch_ids = 0;
		return;
	}
	exec_ok("BEGIN");
	copy_begin("COPY bench_stage FROM STDIN");
	for (size_t i = 0; i < groups.cap; i++)
	{
		Group	   *g = &groups.slots[i];
		int			n;

		if (!g->hash)
			continue;
		if (g->has_value)
			n = snprintf(line, sizeof(line), "%d\t%" PRId64 "\t%.*s\t%" PRId64 "\t%" PRId64 "\n",
						 g->view, g->window_start, (int) g->keylen, g->key, g->n, g->value);
		else
			n = snprintf(line, sizeof(line), "%d\t%" PRId64 "\t%.*s\t%" PRId64 "\t\\N\n",
						 g->view, g->window_start, (int) g->keylen, g->key, g->n);
		copy_line(line, n);
		free(g->key);
		rows_sent++;
	}
	copy_end();
	memset(groups.slots, 0, groups.cap * sizeof(Group));
	groups.used = 0;

	snprintf(sql, sizeof(sql),
			 "INSERT INTO %s AS t (view_no, window_start, k, n, s) "
			 "SELECT v, 'epoch'::timestamptz + w * interval '1 millisecond', k, n, s FROM bench_stage "
			 "ON CONFLICT (view_no, window_start, k) DO UPDATE SET n = t.n + excluded.n, s = %s",
			 target, agg[0] == 'n' ? "NULL" : merge);
	exec_ok(sql);
	exec_ok("TRUNCATE bench_stage");

	if (id_field && nbatch_ids > 0)
	{
		copy_begin("COPY bench_seen_ids FROM STDIN");
		for (size_t i = 0; i < nbatch_ids; i++)
		{
			int			n = snprintf(line, sizeof(line), "%s\n", batch_ids[i]);

			copy_line(line, n);
		}
		copy_end();
		nbatch_ids = 0;
	}

	copy_begin("COPY bench_offsets_stage FROM STDIN");
	for (int p = 0; p < nparts; p++)
	{
		int			n = snprintf(line, sizeof(line), "%d\t%" PRId64 "\n", p, next_offset[p]);

		copy_line(line, n);
	}
	copy_end();
	exec_ok("INSERT INTO bench_offsets AS o SELECT * FROM bench_offsets_stage "
			"ON CONFLICT (partition) DO UPDATE SET next_offset = excluded.next_offset");
	exec_ok("TRUNCATE bench_offsets_stage");
	exec_ok("COMMIT");
}

static void
setup_database(void)
{
	char		sql[1024];

	conn = PQconnectdb(conninfo);
	if (PQstatus(conn) != CONNECTION_OK)
		die("%s", PQerrorMessage(conn));
	exec_ok("SET client_min_messages = warning");
	exec_ok("CREATE TEMP TABLE bench_stage (v int, w bigint, k text, n bigint, s bigint)");
	exec_ok("CREATE TEMP TABLE bench_offsets_stage (partition int, next_offset bigint)");
	exec_ok("DROP TABLE IF EXISTS bench_offsets, bench_seen_ids");
	exec_ok("CREATE TABLE bench_offsets (partition int PRIMARY KEY, next_offset bigint)");
	exec_ok("CREATE TABLE bench_seen_ids (id text PRIMARY KEY)");
	snprintf(sql, sizeof(sql), "TRUNCATE %s", target);
	exec_ok(sql);
}

static void
report_backend(void)
{
	PGresult   *r = PQexec(conn, "SELECT bench_backend_usage()");

	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		die("%s", PQerrorMessage(conn));
	printf("backend %s\n", PQgetvalue(r, 0, 0));
	PQclear(r);
}

static void
parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v == NULL)
			die("option %s needs a value", a);
		i++;
		if (strcmp(a, "--brokers") == 0)
			brokers = v;
		else if (strcmp(a, "--topic") == 0)
			topic = v;
		else if (strcmp(a, "--time") == 0)
			time_field = v;
		else if (strcmp(a, "--key") == 0)
			key_field = v;
		else if (strcmp(a, "--value") == 0)
			value_field = v;
		else if (strcmp(a, "--agg") == 0)
			agg = v;
		else if (strcmp(a, "--id") == 0)
			id_field = v;
		else if (strcmp(a, "--conninfo") == 0)
			conninfo = v;
		else if (strcmp(a, "--table") == 0)
			target = v;
		else if (strcmp(a, "--batch") == 0)
			batch_events = atol(v);
		else if (strcmp(a, "--window") == 0)
		{
			if (nwindows == MAX_VIEWS)
				die("too many windows%s", "");
			if (sscanf(v, "%" SCNd64 ":%" SCNd64, &windows[nwindows].size, &windows[nwindows].slide) != 2 ||
				windows[nwindows].size <= 0 || windows[nwindows].slide <= 0)
				die("invalid --window %s (SIZE_MS:SLIDE_MS)", v);
			nwindows++;
		}
		else
			die("unknown option %s", a);
	}
	if (!brokers || !topic || !time_field || nwindows == 0 || (conninfo && !target) ||
		batch_events <= 0 || (strcmp(agg, "sum") && strcmp(agg, "max") && strcmp(agg, "none")))
		die("usage: see the comment at the top of sv_bench_consumer.c%s", "");
}

static char *
quoted(const char *field)
{
	char	   *s = xmalloc(strlen(field) + 4);

	sprintf(s, "\"%s\":", field);
	return s;
}

int
main(int argc, char **argv)
{
	char		err[512];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	const struct rd_kafka_metadata *md;
	rd_kafka_topic_t *rkt;
	rd_kafka_topic_partition_list_t *assign;
	char	   *qt, *qk = NULL, *qv = NULL, *qi = NULL;
	int			at_eof = 0;
	char	   *eof;
	long long	events = 0, in_batch = 0;

	parse_args(argc, argv);
	qt = quoted(time_field);
	if (key_field)
		qk = quoted(key_field);
	if (value_field && strcmp(agg, "none") != 0)
		qv = quoted(value_field);
	if (id_field)
		qi = quoted(id_field);
	if (conninfo)
		setup_database();

	conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)) ||
		rd_kafka_conf_set(conf, "group.id", "sv_bench_consumer", err, sizeof(err)) ||
		rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)) ||
		rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err)) ||
		rd_kafka_conf_set(conf, "queued.min.messages", "1000000", err, sizeof(err)))
		die("%s", err);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
	if (rk == NULL)
		die("%s", err);
	rd_kafka_poll_set_consumer(rk);

	rkt = rd_kafka_topic_new(rk, topic, NULL);
	if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR ||
		md->topic_cnt != 1 || md->topics[0].partition_cnt == 0)
		die("no metadata for topic %s", topic);
	nparts = md->topics[0].partition_cnt;
	if (nparts > MAX_PARTS)
		die("too many partitions in %s", topic);
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);

	assign = rd_kafka_topic_partition_list_new(nparts);
	for (int p = 0; p < nparts; p++)
		rd_kafka_topic_partition_list_add(assign, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
	if (rd_kafka_assign(rk, assign))
		die("assign failed%s", "");
	rd_kafka_topic_partition_list_destroy(assign);
	eof = xmalloc(nparts);

	while (at_eof < nparts)
	{
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
		const char *json, *v;
		size_t		len, vlen, klen = 0;
		const char *kv = "";
		int64_t		ts, value = 0;
		int			has_value = 0;

		if (m == NULL)
			continue;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
		{
			if (!eof[m->partition])
				eof[m->partition] = 1, at_eof++;
			rd_kafka_message_destroy(m);
			continue;
		}
		if (m->err)
			die("%s", rd_kafka_message_errstr(m));
		json = m->payload;
		len = m->len;
		events++;
		next_offset[m->partition] = m->offset + 1;

		if ((v = scan_field(json, len, qt, strlen(qt), &vlen)) == NULL)
			die("event without its time field: %s", time_field);
		ts = to_int64(v, vlen);
		if (qk && (kv = scan_field(json, len, qk, strlen(qk), &klen)) == NULL)
			kv = "", klen = 0;
		if (qv && (v = scan_field(json, len, qv, strlen(qv), &vlen)) != NULL)
			value = to_int64(v, vlen), has_value = 1;
		if (qi && (v = scan_field(json, len, qi, strlen(qi), &vlen)) != NULL && !idset_add(v, vlen))
			goto next;			/* a duplicate */

		for (int w = 0; w < nwindows; w++)
		{
			/* every window of slide multiples that contains ts */
			int64_t		size = windows[w].size, slide = windows[w].slide;
			int64_t		last = ts >= 0 ? ts / slide * slide : ((ts - slide + 1) / slide) * slide;

			for (int64_t ws = last; ws > ts - size; ws -= slide)
				table_add(w, ws, kv, klen, has_value, value);
		}
next:
		rd_kafka_message_destroy(m);
		if (++in_batch >= batch_events)
		{
			flush_batch();
			in_batch = 0;
		}
	}
	if (in_batch > 0)
		flush_batch();
	printf("events %lld\nrows %lld\n", events, rows_sent);
	if (conn)
	{
		report_backend();
		PQfinish(conn);
	}
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return 0;
}
