/*-------------------------------------------------------------------------
 *
 * kafka.c
 *	  Everything pg_streamview does with librdkafka, and the only file that
 *	  includes its headers.
 *
 * Rules this file keeps:
 *  - librdkafka's own threads never call into PostgreSQL.  Logs and errors
 *	  are routed to librdkafka's main queue (log.queue=true) and served only
 *	  by rd_kafka_poll() on the worker's thread, where the callbacks merely
 *	  copy text into a fixed buffer; streamview_kafka_report() ereports it
 *	  after rd_kafka_poll() has returned, so no ERROR ever unwinds through
 *	  librdkafka frames.
 *  - No librdkafka object escapes: messages are copied into palloc'd
 *	  SvEvents and destroyed at once.
 *  - Partitions are assigned explicitly (rd_kafka_assign) at offsets read
 *	  from PostgreSQL, which is where offsets are authoritative.  The group
 *	  coordinator gets the same offsets afterwards, for lag tools only.
 *  - The consumer queue signals a pipe when it becomes non-empty, so the
 *	  worker can sleep on a WaitEventSet with its latch and that pipe.
 *  - A connection problem is kept until there is evidence of health, and
 *	  a retry that fails the same way does not make it a new problem
 *	  (sv_error_cb).
 *  - A batch (or a round of one) is what the queue has ready, never held
 *	  back to fill up (streamview_kafka_consume); whether the queue was
 *	  drained tells the worker to end its batch (streamview_kafka_drained).
 *  - A worker asked to stop stops within a second, whatever the broker
 *	  does: the wait for messages is on the worker's latch too, every other
 *	  wait for the broker is cut in steps of SV_KAFKA_STEP_MS with the stop
 *	  request looked at between them, and closing shuts the broker
 *	  connections down first (streamview_kafka_close).
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "common/base64.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/json.h"
#include "utils/memutils.h"

#define SV_KAFKA_MAX_NOTES 16
#define SV_KAFKA_NOTE_LEN 512
/* Longest a call waits for the broker before the stop request is looked at. */
#define SV_KAFKA_STEP_MS 200
/* Broker connections a consumer has at once: far more than a cluster's brokers. */
#define SV_KAFKA_MAX_SOCKETS 64

struct SvKafka
{
	rd_kafka_t *rk;
	rd_kafka_queue_t *queue;	/* consumer queue: fetched messages */
	rd_kafka_topic_t *topic;
	char	   *topic_name;
	int			nparts;
	int			pipefd[2];
	int			nnotes;
	int			note_level[SV_KAFKA_MAX_NOTES];
	char		notes[SV_KAFKA_MAX_NOTES][SV_KAFKA_NOTE_LEN];
	/*
	 * What is wrong with the connection now: set by the errors librdkafka
	 * reports (sv_error_cb) and by a failed metadata request, and kept
	 * until there is evidence of health (a message consumed, or metadata
	 * answered).  librdkafka reports a broker going away once, not for as
	 * long as it is away, so the problem must be remembered, not consumed
	 * by a report.
	 */
	char		problem[SV_KAFKA_NOTE_LEN];
	bool		problem_is_credentials; /* an SSL or authentication error */
	/*
	 * The broker connections librdkafka's threads have open (sv_socket_cb,
	 * sv_closesocket_cb), so that closing can shut them down; and whether
	 * closing has begun, after which no new one is opened.  The only state
	 * those threads share with the worker's, under its own mutex.
	 */
	pthread_mutex_t sockets_lock;
	int			nsockets;
	int			sockets[SV_KAFKA_MAX_SOCKETS];
	bool		closing;
	bool		drained;		/* the last consume ended with nothing more ready */
	/*
	 * The prefetch queue's byte bound (queued.max.messages.kbytes, in
	 * bytes), the bytes taken from the queue since the fetcher was last
	 * woken, and the partition of the last message taken: see
	 * sv_wake_fetcher.
	 */
	int64		queue_bound;
	int64		taken_since_wake;
	int32		last_partition;
	int64		wake_us;		/* how long the last wake took, in µs */
	int64	   *next_offset;	/* per assigned partition, or -1: see
								 * streamview_kafka_behind */
	bool	   *paused;			/* per partition: streamview_kafka_pause */
};

/* Defaults that differ from librdkafka's, before the user's options. */
static const char *const sv_defaults[][2] = {
	{"enable.auto.commit", "false"},
	{"enable.auto.offset.store", "false"},
	{"enable.partition.eof", "false"},
	{"auto.offset.reset", "earliest"},
	/* keep the prefetch queue deep: 2.0.2's defaults pause fetching */
	{"queued.min.messages", "1000000"},
	/*
	 * but bound it in bytes: for the whole consumer queue, which every
	 * assigned partition's fetch queue is forwarded to (librdkafka's
	 * CONFIGURATION.md: "applies to the single consumer queue").  The bound
	 * counts payloads only; librdkafka's own ~400 bytes per message come on
	 * top, so 4 MB of ~100-byte events is ~20 MB of memory
	 * (docs/architecture.md, "Memory").  sv_wake_fetcher keeps so small a
	 * queue from running dry.
	 */
	{"queued.max.messages.kbytes", "4096"},
	{"fetch.wait.max.ms", "50"},
	{"log.queue", "true"},
	{"log_level", "5"},
};

/*
 * Set after the source's options, whatever they say.  The consumer joins no
 * group (its partitions are assigned), so for it session.timeout.ms means
 * only how long a commit waits for the group's coordinator; and closing the
 * consumer waits for that too (streamview_kafka_close).
 */
static const char *const sv_overrides[][2] = {
	{"session.timeout.ms", "100"},
};

static void
sv_note(SvKafka *k, int level, const char *fmt, const char *a, const char *b)
{
	if (k->nnotes >= SV_KAFKA_MAX_NOTES)
		return;
	k->note_level[k->nnotes] = level;
	snprintf(k->notes[k->nnotes], SV_KAFKA_NOTE_LEN, fmt, a, b);
	k->nnotes++;
}

/*
 * Served only from rd_kafka_poll() on our thread (log.queue=true).  A
 * broker connection's failure ("FAIL") is not logged here: librdkafka
 * sends the same failure to sv_error_cb, which logs a lasting problem once;
 * logged here too it was a line at every retry whenever two failures
 * alternate (librdkafka suppresses only an error identical to the last).
 */
static void
sv_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	SvKafka    *k = rd_kafka_opaque(rk);

	if (k == NULL || level > 4 || strcmp(fac, "FAIL") == 0)
		return;

	/*
	 * A failed commit is only an advisory one (streamview_kafka_commit): the
	 * offsets are PostgreSQL's, and the next commit carries the same ones.
	 * While the group coordinator is not known yet every commit fails so, a
	 * WARNING a batch; it is worth a DEBUG line, not an alert.
	 */
	sv_note(k, strcmp(fac, "COMMITFAIL") == 0 ? DEBUG1 : WARNING, "librdkafka %s: %s", fac, buf);
}

static bool
sv_is_credentials_error(int err)
{
	return err == RD_KAFKA_RESP_ERR__SSL ||
		err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
		err == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED;
}

/*
 * An error librdkafka reports becomes the source's problem (kept until
 * there is evidence of health), and is logged, when its text differs from
 * the problem's.  A lasting failure is retried about once a second, and
 * each retry reports an error again; so that a retry that fails the same
 * way is not a new problem (a new status.error, worker_errors row and log
 * line each time):
 *  - what librdkafka appends in parentheses, which changes at each retry
 *	  ("(after 49ms in state SSL_HANDSHAKE, 1 identical error(s)
 *	  suppressed)"), is cut off;
 *  - "1/1 brokers are down", which follows the error that brought the last
 *	  broker down, does not replace that error: it names the cause;
 *  - an SSL or authentication error, once noted, is replaced by nothing
 *	  until the broker accepts the connection: a rejected client certificate
 *	  is reported in turn as "_SSL: ... SSL handshake failed: ... client SSL
 *	  authentication might be required ..." and as "_TRANSPORT: ...
 *	  unexpected message", as the timing goes, and the first says what to
 *	  fix.
 */
static void
sv_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	SvKafka    *k = opaque;
	char		problem[SV_KAFKA_NOTE_LEN];
	char	   *after;

	if (k->problem[0] != '\0' &&
		(k->problem_is_credentials || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN))
		return;
	snprintf(problem, SV_KAFKA_NOTE_LEN, "%s: %s",
			 rd_kafka_err2name((rd_kafka_resp_err_t) err), reason);
	after = strstr(problem, " (after ");
	if (after != NULL && problem[strlen(problem) - 1] == ')')
		*after = '\0';
	if (strcmp(problem, k->problem) == 0)
		return;
	strlcpy(k->problem, problem, SV_KAFKA_NOTE_LEN);
	k->problem_is_credentials = sv_is_credentials_error(err);
	sv_note(k, LOG, "Kafka error: %s%s", k->problem, "");
}

/*
 * librdkafka opens each broker connection through this callback (on one of
 * its threads), as its default does, and the consumer keeps it in a list,
 * so that streamview_kafka_close can shut it down.  Once closing has begun,
 * no connection is opened any more.  Plain system calls only: a librdkafka
 * thread never calls PostgreSQL.
 */
static int
sv_socket_cb(int domain, int type, int protocol, void *opaque)
{
	SvKafka    *k = opaque;
	int			fd = -1;
	int			save_errno = ECONNABORTED;

	pthread_mutex_lock(&k->sockets_lock);
	if (!k->closing)
	{
		fd = socket(domain, type | SOCK_CLOEXEC, protocol);
		save_errno = errno;
		if (fd >= 0 && k->nsockets < SV_KAFKA_MAX_SOCKETS)
			k->sockets[k->nsockets++] = fd;
	}
	pthread_mutex_unlock(&k->sockets_lock);
	errno = save_errno;
	return fd;
}

/*
 * And closes it through this one: out of the list first, so that the list
 * never names a descriptor that may already be reused.
 */
static int
sv_closesocket_cb(int fd, void *opaque)
{
	SvKafka    *k = opaque;

	pthread_mutex_lock(&k->sockets_lock);
	for (int i = 0; i < k->nsockets; i++)
		if (k->sockets[i] == fd)
		{
			k->sockets[i] = k->sockets[--k->nsockets];
			break;
		}
	pthread_mutex_unlock(&k->sockets_lock);
	return close(fd);
}

/*
 * librdkafka's explanation of a bad option quotes the value given (for an
 * enumerated property).  The value may be a secret put in the wrong field,
 * and the explanation goes to the server log and worker_errors: it is
 * replaced by a placeholder.
 */
static char *
sv_redact(const char *errstr, const char *value)
{
	StringInfoData buf;
	const char *p = errstr;
	const char *hit;

	initStringInfo(&buf);
	if (value[0] == '\0')
	{
		appendStringInfoString(&buf, errstr);
		return buf.data;
	}
	while ((hit = strstr(p, value)) != NULL)
	{
		appendBinaryStringInfo(&buf, p, hit - p);
		appendStringInfoString(&buf, "(the value given)");
		p = hit + strlen(value);
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

static void
sv_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
			const char *source_name)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Kafka option \"%s\" for source \"%s\"", name, source_name),
				 errdetail_internal("%s", sv_redact(errstr, value)),
				 errhint("Options are librdkafka configuration properties.")));
	}
}

/* A numeric librdkafka property as configured; 0 if unknown. */
static int64
sv_conf_number(rd_kafka_conf_t *conf, const char *name)
{
	char		value[64];
	size_t		size = sizeof(value);

	if (rd_kafka_conf_get(conf, name, value, &size) != RD_KAFKA_CONF_OK)
		return 0;
	return strtoll(value, NULL, 10);
}

/*
 * Bound a fetch response to 1 MB unless the source's options say otherwise.
 * librdkafka lets one response bring up to fetch.max.bytes (its default is
 * the prefetch queue's bound) whatever the queue holds already, and a
 * megabyte of lz4-compressed ~100-byte events is some 40,000 messages.  It
 * must be at least message.max.bytes, which librdkafka checks.
 */
static void
sv_bound_fetch(rd_kafka_conf_t *conf, const SvSource *src)
{
	int64		bytes = Max(1024 * 1024, sv_conf_number(conf, "message.max.bytes"));
	ListCell   *n;

	foreach(n, src->option_names)
		if (strcmp(lfirst(n), "fetch.max.bytes") == 0)
			return;
	sv_conf_set(conf, "fetch.max.bytes", psprintf(INT64_FORMAT, bytes), src->name);
}

/*
 * A consumer for the source: pg_streamview's defaults, then the broker list,
 * group and client id, then the source's own options; logs and errors on
 * the main queue, served only by the worker's thread; the consumer queue
 * signalling a pipe the worker can wait on.  A bad option is an error that
 * names it, with librdkafka's explanation, never its value, as detail.
 */
SvKafka *
streamview_kafka_open(const SvSource *src, const char *group_id)
{
	SvKafka    *k = palloc0(sizeof(SvKafka));
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errstr[512];
	ListCell   *n,
			   *v;

	for (int i = 0; i < lengthof(sv_defaults); i++)
		sv_conf_set(conf, sv_defaults[i][0], sv_defaults[i][1], src->name);
	sv_conf_set(conf, "bootstrap.servers", src->brokers, src->name);
	sv_conf_set(conf, "group.id", group_id, src->name);
	sv_conf_set(conf, "client.id", psprintf("pg_streamview/%s", src->name), src->name);
	forboth(n, src->option_names, v, src->option_values)
		sv_conf_set(conf, lfirst(n), lfirst(v), src->name);
	sv_bound_fetch(conf, src);
	for (int i = 0; i < lengthof(sv_overrides); i++)
		sv_conf_set(conf, sv_overrides[i][0], sv_overrides[i][1], src->name);
	rd_kafka_conf_set_log_cb(conf, sv_log_cb);
	rd_kafka_conf_set_error_cb(conf, sv_error_cb);
	rd_kafka_conf_set_socket_cb(conf, sv_socket_cb);
	rd_kafka_conf_set_closesocket_cb(conf, sv_closesocket_cb);
	rd_kafka_conf_set_opaque(conf, k);
	pthread_mutex_init(&k->sockets_lock, NULL);
	k->queue_bound = sv_conf_number(conf, "queued.max.messages.kbytes") * 1024;
	k->last_partition = -1;

	if (pipe(k->pipefd) != 0)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not create pipe: %m")));
	}
	fcntl(k->pipefd[0], F_SETFL, O_NONBLOCK);
	fcntl(k->pipefd[1], F_SETFL, O_NONBLOCK);

	k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (k->rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not create Kafka consumer for source \"%s\"", src->name),
				 errdetail_internal("%s", errstr)));
	}
	rd_kafka_set_log_queue(k->rk, NULL);	/* logs to the main queue */
	k->queue = rd_kafka_queue_get_consumer(k->rk);
	rd_kafka_queue_io_event_enable(k->queue, k->pipefd[1], "1", 1);
	k->topic_name = pstrdup(src->topic);
	k->topic = rd_kafka_topic_new(k->rk, src->topic, NULL);
	return k;
}

/*
 * Between two steps of a wait for the broker: a worker asked to stop stops
 * here, at once, whether or not the broker ever answers.
 */
static void
sv_between_steps(void)
{
	CHECK_FOR_INTERRUPTS();
	if (streamview_stop_requested())
		streamview_stop();
}

/*
 * Number of partitions of the topic, or 0 when it does not exist (yet) or
 * the brokers do not answer within timeout_ms.  Asks in steps of
 * SV_KAFKA_STEP_MS (sv_between_steps).  An answer clears the problem noted;
 * no answer, or an error about the topic, notes one.
 */
int
streamview_kafka_partition_count(SvKafka *k, int timeout_ms)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err;
	int			n = 0;

	for (int waited = 0;; waited += SV_KAFKA_STEP_MS)
	{
		err = rd_kafka_metadata(k->rk, 0, k->topic, &md, SV_KAFKA_STEP_MS);
		if (err != RD_KAFKA_RESP_ERR__TIMED_OUT || waited + SV_KAFKA_STEP_MS >= timeout_ms)
			break;
		sv_between_steps();
	}
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		/* keep what librdkafka said first: it says more than a timeout */
		if (k->problem[0] == '\0')
		{
			snprintf(k->problem, SV_KAFKA_NOTE_LEN, "metadata for topic %s: %s",
					 k->topic_name, rd_kafka_err2str(err));
			k->problem_is_credentials = false;
		}
		return 0;
	}
	k->problem[0] = '\0';
	if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
		n = md->topics[0].partition_cnt;
	else if (md->topic_cnt == 1)
	{
		snprintf(k->problem, SV_KAFKA_NOTE_LEN, "topic %s: %s",
				 k->topic_name, rd_kafka_err2str(md->topics[0].err));
		k->problem_is_credentials = false;
	}
	rd_kafka_metadata_destroy(md);
	return n;
}

/*
 * Assign partitions 0..nparts-1 at the given offsets (-1: the beginning),
 * but those at SV_NOT_ASSIGNED: the source does not read them, or another
 * of its workers does.
 */
void
streamview_kafka_assign(SvKafka *k, int nparts, const int64 *start_offsets)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(nparts);
	rd_kafka_resp_err_t err;

	for (int p = 0; p < nparts; p++)
		if (start_offsets[p] != SV_NOT_ASSIGNED)
			rd_kafka_topic_partition_list_add(list, k->topic_name, p)->offset =
				start_offsets[p] < 0 ? RD_KAFKA_OFFSET_BEGINNING : start_offsets[p];
	/*
	 * A pause outlives an assignment in librdkafka (it is a flag of the
	 * partition's object): resume what align.c paused, first.  Not after
	 * the assignment, nor of every partition: a resume also outdates the
	 * partition's operations in flight, and one right after rd_kafka_assign
	 * could outdate the fetch start, leaving the partition never fetched
	 * (seen under load: a replay that read nothing more).
	 */
	for (int p = 0; p < k->nparts; p++)
		if (k->paused[p])
			streamview_kafka_pause(k, p, false);
	err = rd_kafka_assign(k->rk, nparts > 0 ? list : NULL);
	rd_kafka_topic_partition_list_destroy(list);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not assign partitions of topic \"%s\"", k->topic_name),
				 errdetail_internal("%s", rd_kafka_err2str(err))));
	if (nparts > 0)
	{
		if (k->next_offset)
			pfree(k->next_offset);
		if (k->paused)
			pfree(k->paused);
		k->next_offset = MemoryContextAlloc(GetMemoryChunkContext(k), nparts * sizeof(int64));
		k->paused = MemoryContextAlloc(GetMemoryChunkContext(k), nparts * sizeof(bool));
		k->nparts = nparts;
	}
	for (int p = 0; p < k->nparts; p++)
	{
		k->next_offset[p] = (nparts > 0 && start_offsets[p] >= 0) ? start_offsets[p] : -1;
		k->paused[p] = false;
	}
}

static char *
sv_copy_bytes(const void *p, size_t len)
{
	char	   *copy = palloc(len + 1);

	memcpy(copy, p, len);
	copy[len] = '\0';
	return copy;
}

/*
 * The message's broker timestamp (CreateTime, or LogAppendTime if the topic
 * says so), in PostgreSQL's epoch.  Brokers before 0.10 have none.  A
 * producer may set any CreateTime: one too large for microseconds is taken
 * as none (instead of overflowing into a time that means nothing).
 */
static void
sv_broker_time(const rd_kafka_message_t *m, SvEvent *ev)
{
	rd_kafka_timestamp_type_t type;
	int64_t		ms = rd_kafka_message_timestamp(m, &type);

	if (type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE || ms < 0 || ms > PG_INT64_MAX / 1000)
		return;
	ev->has_broker_time = true;
	ev->broker_time = (TimestampTz) ms * 1000 -
		(TimestampTz) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
}

/*
 * The message's headers, for the archive: a JSON array of [name, value]
 * pairs, the value in base64 (headers are bytes) or null; NULL when the
 * message has none (brokers before 0.11 never send any).
 */
static char *
sv_headers(rd_kafka_message_t *m)
{
	rd_kafka_headers_t *hdrs;
	StringInfoData buf;
	const char *name;
	const void *value;
	size_t		size;

	if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
		rd_kafka_header_cnt(hdrs) == 0)
		return NULL;
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) ==
		 RD_KAFKA_RESP_ERR_NO_ERROR; i++)
	{
		appendStringInfoString(&buf, i ? ", [" : "[");
		escape_json(&buf, name);
		if (value == NULL)
			appendStringInfoString(&buf, ", null]");
		else
		{
			int			len = pg_b64_enc_len(size);
			char	   *enc = palloc(len + 1);

			len = pg_b64_encode(value, size, enc, len);
			enc[Max(len, 0)] = '\0';
			appendStringInfo(&buf, ", \"%s\"]", enc);
			pfree(enc);
		}
	}
	appendStringInfoChar(&buf, ']');
	return buf.data;
}

/*
 * Copy the messages librdkafka handed over into out[] (from out[*n] on) and
 * destroy them; note consumer errors (broker down, ...) for
 * streamview_kafka_report(): they do not stop the stream, librdkafka keeps
 * retrying.  Returns the bytes of key and payload copied.
 */
static int64
sv_take_messages(SvKafka *k, rd_kafka_message_t **msgs, ssize_t got, SvEvent *out, int *n)
{
	int64		bytes = 0;

	for (ssize_t i = 0; i < got; i++)
	{
		rd_kafka_message_t *m = msgs[i];

		if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			SvEvent    *ev = &out[(*n)++];

			memset(ev, 0, sizeof(SvEvent));
			ev->partition = m->partition;
			ev->offset = m->offset;
			sv_broker_time(m, ev);
			if (m->key)
			{
				ev->key = sv_copy_bytes(m->key, m->key_len);
				ev->keylen = m->key_len;
			}
			if (m->payload)
			{
				ev->payload = sv_copy_bytes(m->payload, m->len);
				ev->paylen = m->len;
			}
			ev->headers = sv_headers(m);
			bytes += m->key_len + m->len;
			k->last_partition = m->partition;
			if (m->partition < k->nparts)
				k->next_offset[m->partition] = m->offset + 1;
		}
		else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
		{
			snprintf(k->problem, SV_KAFKA_NOTE_LEN, "partition %d: %s",
					 (int) m->partition, rd_kafka_message_errstr(m));
			k->problem_is_credentials = false;
			sv_note(k, LOG, "Kafka consumer error: %s%s", k->problem, "");
		}
		rd_kafka_message_destroy(m);
	}
	return bytes;
}

/*
 * Wake the fetcher after half the prefetch queue's bound has been taken
 * from it.  librdkafka 2.0.2 stops fetching a partition while the consumer
 * queue holds more than queued.max.messages.kbytes, and looks again only
 * when its broker thread next wakes: after up to a second when nothing else
 * happens (rd_kafka_max_block_ms in rdkafka_broker.c; 2.1 added
 * fetch.queue.backoff.ms for this).  Meanwhile the worker empties the queue
 * and waits, which is why a small bound used to cost a third of the
 * throughput.  Any request through the broker wakes its thread: ask for the
 * latest offset of the partition last read (rd_kafka_offsets_for_times),
 * whose leader is the broker that filled the queue.
 *
 * The request waits for its answer, at most SV_KAFKA_WAKE_TIMEOUT_MS: the
 * wake is in the sending, and an answer later than that is dropped.  (Not
 * rd_kafka_query_watermark_offsets, which in 2.0.2 waits without the
 * timeout it is given, up to socket.timeout.ms, 60 s, when a broker hangs:
 * a worker asked to stop meanwhile would not, and t/015_shutdown.pl saw a
 * fast shutdown time out so.)  A near broker answers in well under a
 * millisecond, and the fetcher is woken before the queue runs dry; a far
 * one (an answer slower than SV_KAFKA_WAKE_FAR_US) is woken only once the
 * queue is empty (idle), when the worker has nothing else to do; so is one
 * behind a queue bound so small that half of it is a few messages.  While
 * a broker is known to be gone, it is not asked at all.
 */
#define SV_KAFKA_WAKE_TIMEOUT_MS 20
#define SV_KAFKA_WAKE_FAR_US 2000
/* and, before the queue is empty, at most once per this many bytes taken */
#define SV_KAFKA_WAKE_BUSY_BYTES (256 * 1024)

static void
sv_wake_fetcher(SvKafka *k, bool idle)
{
	rd_kafka_topic_partition_list_t *list;
	TimestampTz start;

	if (k->queue_bound <= 0 || k->last_partition < 0 ||
		k->taken_since_wake < k->queue_bound / 2 || k->problem[0] != '\0')
		return;
	if (!idle && (k->wake_us > SV_KAFKA_WAKE_FAR_US ||
				  k->taken_since_wake < SV_KAFKA_WAKE_BUSY_BYTES))
		return;
	k->taken_since_wake = 0;
	list = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(list, k->topic_name, k->last_partition)->offset =
		RD_KAFKA_OFFSET_END;
	start = GetCurrentTimestamp();
	(void) rd_kafka_offsets_for_times(k->rk, list, SV_KAFKA_WAKE_TIMEOUT_MS);
	k->wake_us = GetCurrentTimestamp() - start;
	rd_kafka_topic_partition_list_destroy(list);
}

/*
 * A batch: the messages the consumer queue has ready, copied into out[] (in
 * CurrentMemoryContext); returns how many.  The batch ends as soon as the
 * queue has nothing ready and it holds a message, or when it holds max
 * messages (streamview.batch_size) or max_bytes of keys and payloads
 * (streamview.batch_max_bytes), whichever comes first.  A batch is never
 * held back to fill up: under load the queue is never empty and batches
 * fill by themselves, and at a modest rate each message is applied as soon
 * as it arrives (event-to-visible is then the time to apply, not
 * batch_timeout).
 *
 * With nothing ready, it waits at most timeout_ms (streamview.batch_timeout)
 * for a first message, on the queue's pipe and the worker's latch; it
 * returns 0 early when the latch is set (a stop request, a reload, a new
 * view: the caller looks), and leaves the latch set for the caller's own
 * wait to see.  Asked to stop, it returns at once with what it has: the
 * caller begins no batch then, and those messages are read again after the
 * restart.
 *
 * Messages are taken SV_KAFKA_TAKE at a time so that max_bytes is kept to
 * within that many messages.  The pipe is emptied before the queue is
 * looked at: a message that arrives after the look writes to it again, so
 * the wait cannot miss it.
 */
#define SV_KAFKA_TAKE 1024

int
streamview_kafka_consume(SvKafka *k, SvEvent *out, int max, int64 max_bytes, int timeout_ms)
{
	rd_kafka_message_t **msgs = palloc(Min(max, SV_KAFKA_TAKE) * sizeof(rd_kafka_message_t *));
	TimestampTz deadline = GetCurrentTimestamp() + (int64) timeout_ms * 1000;
	int64		bytes = 0;
	int			n = 0;

	k->drained = false;
	for (;;)
	{
		int			want = Min(max - n, SV_KAFKA_TAKE);
		ssize_t		got;
		int64		taken;
		long		left_ms;

		streamview_kafka_drain_fd(k);
		got = rd_kafka_consume_batch_queue(k->queue, 0, msgs, want);
		taken = sv_take_messages(k, msgs, got, out, &n);
		bytes += taken;
		k->taken_since_wake += taken;
		if (n >= max || bytes >= max_bytes || streamview_stop_requested())
			break;
		sv_wake_fetcher(k, got < want);
		if (got == want)
			continue;			/* there may be more ready */
		k->drained = true;
		if (n > 0)
			break;				/* drained: apply what came */
		left_ms = (long) ((deadline - GetCurrentTimestamp()) / 1000);
		if (left_ms <= 0)
			break;
		if (WaitLatchOrSocket(MyLatch,
							  WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							  k->pipefd[0], left_ms, PG_WAIT_EXTENSION) & WL_LATCH_SET)
			break;
	}
	pfree(msgs);
	if (n > 0)
		k->problem[0] = '\0';	/* messages arrive: the brokers are there */
	return n;
}

/*
 * Whether the last streamview_kafka_consume ended because the queue had
 * nothing more ready (rather than at its bounds): a source worker ends its
 * batch then (source_worker.c), so that a modest stream is applied at once.
 */
bool
streamview_kafka_drained(SvKafka *k)
{
	return k->drained;
}

int
streamview_kafka_wait_fd(SvKafka *k)
{
	return k->pipefd[0];
}

void
streamview_kafka_drain_fd(SvKafka *k)
{
	char		buf[64];

	while (read(k->pipefd[0], buf, sizeof(buf)) > 0)
		;
}

/*
 * Stop (pause) or start again fetching partition p, which must be assigned.
 * librdkafka drops p's messages still in the queue and, on resume, fetches
 * again from the offset after the last message taken: nothing is skipped
 * or read twice (align.c reads a backlog's partitions in step with it).
 */
void
streamview_kafka_pause(SvKafka *k, int32 p, bool pause)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);

	rd_kafka_topic_partition_list_add(list, k->topic_name, p);
	if ((pause ? rd_kafka_pause_partitions(k->rk, list) : rd_kafka_resume_partitions(k->rk, list)) ==
		RD_KAFKA_RESP_ERR_NO_ERROR && list->elems[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
		k->paused[p] = pause;
	rd_kafka_topic_partition_list_destroy(list);

	/*
	 * Either way the fetcher has work: a pause empties the queue of p's
	 * messages (and the fetcher, stopped by a full queue, looks again only
	 * when its thread wakes), a resume wants p fetched.  The next consume
	 * wakes it (sv_wake_fetcher), as if half the queue had been taken.
	 */
	k->taken_since_wake = Max(k->queue_bound, SV_KAFKA_WAKE_BUSY_BYTES);
}

bool
streamview_kafka_paused(SvKafka *k, int32 p)
{
	return p < k->nparts && k->paused[p];
}

/*
 * Whether partition p has a backlog: the fetcher has seen its log end
 * beyond the next offset taken.  A partition not read from yet has one if
 * its log end is beyond its start (or the start is not known yet).
 */
bool
streamview_kafka_partition_behind(SvKafka *k, int32 p)
{
	int64_t		lo,
				hi;

	if (p >= k->nparts ||
		rd_kafka_get_watermark_offsets(k->rk, k->topic_name, p, &lo, &hi) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return false;
	if (k->next_offset[p] >= 0)
		return hi > k->next_offset[p];
	return hi > 0 && hi > lo;
}

/*
 * Whether the fetcher has seen messages of an assigned partition that have
 * not been taken from the queue: the log end it last saw lies beyond the
 * partition's next offset.  A source worker whose queue runs dry while this
 * holds waits a moment for the next fetch rather than end its batch
 * (source_worker.c).  A partition not read from yet, at a logical offset,
 * does not count, nor does a paused one, which the fetcher does not read.
 */
bool
streamview_kafka_behind(SvKafka *k)
{
	for (int p = 0; p < k->nparts; p++)
	{
		int64_t		lo,
					hi;

		if (k->next_offset[p] < 0 || k->paused[p])
			continue;
		if (rd_kafka_get_watermark_offsets(k->rk, k->topic_name, p, &lo, &hi) ==
			RD_KAFKA_RESP_ERR_NO_ERROR && hi > k->next_offset[p])
			return true;
	}
	return false;
}

/* The partition's log end offset as last seen by the fetcher, or -1. */
int64
streamview_kafka_log_end(SvKafka *k, int32 partition)
{
	int64_t		lo = -1,
				hi = -1;

	if (rd_kafka_get_watermark_offsets(k->rk, k->topic_name, partition, &lo, &hi) !=
		RD_KAFKA_RESP_ERR_NO_ERROR)
		return -1;
	return hi;
}

/* Advisory: tell the group coordinator where we are, for lag tools. */
void
streamview_kafka_commit(SvKafka *k, int nparts, const int64 *next_offsets)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(nparts);

	for (int p = 0; p < nparts; p++)
		if (next_offsets[p] >= 0)
			rd_kafka_topic_partition_list_add(list, k->topic_name, p)->offset = next_offsets[p];
	if (list->cnt > 0)
		(void) rd_kafka_commit(k->rk, list, 1);
	rd_kafka_topic_partition_list_destroy(list);
}

/*
 * Serve librdkafka's callbacks, log what they noted, and return the problem
 * the connection has now (palloc'd), or NULL when there is none.
 */
char *
streamview_kafka_report(SvKafka *k)
{
	rd_kafka_poll(k->rk, 0);
	for (int i = 0; i < k->nnotes; i++)
		ereport(k->note_level[i], (errmsg_internal("%s", k->notes[i])));
	k->nnotes = 0;
	return k->problem[0] != '\0' ? pstrdup(k->problem) : NULL;
}

/*
 * Close the consumer within a second, whatever the broker does.
 *
 * rd_kafka_destroy() returns only once the group's commits in flight (the
 * advisory ones after each batch) are done.  A broker that hangs with its
 * connections open answers them only when they time out (socket.timeout.ms,
 * a minute): a worker asked to stop took that long to go (t/015_shutdown.pl
 * measured 48 s).  So the broker connections are shut down first
 * (shutdown(2); librdkafka's threads still close them) and none is opened
 * again: what is in flight fails at once.  A commit that fails so waits for
 * a coordinator at most session.timeout.ms (sv_overrides), and then gives
 * up.  The consumer leaves no group (RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE):
 * it never joined one, and the offsets that count are PostgreSQL's.
 */
void
streamview_kafka_close(SvKafka *k)
{
	if (k == NULL)
		return;
	if (k->topic)
		rd_kafka_topic_destroy(k->topic);
	if (k->queue)
		rd_kafka_queue_destroy(k->queue);
	if (k->rk)
	{
		pthread_mutex_lock(&k->sockets_lock);
		k->closing = true;
		for (int i = 0; i < k->nsockets; i++)
			(void) shutdown(k->sockets[i], SHUT_RDWR);
		pthread_mutex_unlock(&k->sockets_lock);
		rd_kafka_destroy_flags(k->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
		pthread_mutex_destroy(&k->sockets_lock);
	}
	close(k->pipefd[0]);
	close(k->pipefd[1]);
	k->rk = NULL;
}

/*
 * The partition's first offset and its end (the offset the next message
 * will have), as the broker says them now; false when it does not answer
 * within timeout_ms.  Asks in steps of SV_KAFKA_STEP_MS (sv_between_steps).
 */
bool
streamview_kafka_log_bounds(SvKafka *k, int32 partition, int timeout_ms, int64 *first, int64 *end)
{
	int64_t		lo = -1,
				hi = -1;
	rd_kafka_resp_err_t err;

	for (int waited = 0;; waited += SV_KAFKA_STEP_MS)
	{
		err = rd_kafka_query_watermark_offsets(k->rk, k->topic_name, partition, &lo, &hi,
											   SV_KAFKA_STEP_MS);
		if (err != RD_KAFKA_RESP_ERR__TIMED_OUT || waited + SV_KAFKA_STEP_MS >= timeout_ms)
			break;
		sv_between_steps();
	}
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		return false;
	*first = lo;
	*end = hi;
	return true;
}

/*
 * The partition's first offset, or -1 when the broker does not say within
 * timeout_ms.
 */
int64
streamview_kafka_log_start(SvKafka *k, int32 partition, int timeout_ms)
{
	int64		first,
				end;

	return streamview_kafka_log_bounds(k, partition, timeout_ms, &first, &end) ? first : -1;
}

/*
 * The partition's first offset as the fetcher last heard it (fetch
 * responses carry the log start), or -1 when it has not yet: no round trip
 * to the broker, so housekeeping may ask every partition often.
 */
int64
streamview_kafka_log_start_known(SvKafka *k, int32 partition)
{
	int64_t		lo = -1,
				hi = -1;

	if (rd_kafka_get_watermark_offsets(k->rk, k->topic_name, partition, &lo, &hi) !=
		RD_KAFKA_RESP_ERR_NO_ERROR)
		return -1;
	return lo;
}
