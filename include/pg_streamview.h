/*-------------------------------------------------------------------------
 *
 * pg_streamview.h
 *	  Private declarations shared by the modules of pg_streamview.
 *
 * The types first: a source, a version and its per-partition state, an
 * event, a batch's per-version lists, the worker's parameters.  Then one
 * section per source file, as postgres_fdw.h does.  Nothing here includes
 * librdkafka: kafka.c is the only file that does, and it hands the rest of
 * the extension plain, palloc'd copies of messages.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_STREAMVIEW_H
#define PG_STREAMVIEW_H

#include "postgres.h"

#include "common/sha2.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "pgtime.h"
#include "postmaster/bgworker.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#define STREAMVIEW_SCHEMA		"streamview"
/* where the internal functions live: the API's implementations and helpers */
#define STREAMVIEW_INTERNAL_SCHEMA	"streamview_internal"
#define STREAMVIEW_EXTENSION	"pg_streamview"
/* The SQL version this library is built for: default_version in the control file. */
#define STREAMVIEW_VERSION		"0.2"

/* ---------------------------------------------------------------- types */

typedef enum SvWindowKind
{
	SV_WINDOW_TUMBLE,
	SV_WINDOW_HOP
} SvWindowKind;

/*
 * A window, as window.c computes it.  Without a time zone, windows have a
 * fixed length and are aligned to the Unix epoch in UTC.  With one
 * (streamview.tumble(ts, size, time_zone, origin)), they are aligned to
 * origin on the zone's wall clock, and their size is either a length of
 * wall-clock time (size_us) or a number of calendar months (size_months).
 */
typedef struct SvWindow
{
	SvWindowKind kind;
	int64		size_us;		/* 0 when the size is in months */
	int64		slide_us;		/* == size_us for tumbling windows */
	int32		size_months;	/* only with a time zone */
	int32		slide_months;
	pg_tz	   *tz;				/* NULL: epoch-aligned UTC windows */
	Timestamp	origin;			/* a window start, on the zone's wall clock */
} SvWindow;

#define SV_MAX_WINDOWS_PER_EVENT 1024
#define SV_MAX_WINDOW_US (366 * USECS_PER_DAY)	/* windows are at most a year long */

/*
 * The temporary table a 0.1 worker filled with a version's batch, by
 * version_id: what the statements of versions made by 0.1 read (codegen.c
 * rewrites them on the update to 0.2).
 */
#define SV_BATCH_TABLE_0_1 "sv_batch_%d"

/* A column of a source, as the worker reads it from messages. */
typedef struct SvColumn
{
	char	   *name;
	Oid			type;
	int			npath;
	char	  **path;
	bool		required;
	bool		has_default;
	Datum		default_value;
	int16		typlen;
	bool		typbyval;
	FmgrInfo	input;			/* the type's input function */
	Oid			ioparam;
} SvColumn;

typedef struct SvPathNode SvPathNode;	/* parse.c: trie of column paths */
typedef struct SvRegistry SvRegistry;	/* registry.c: a schema registry and its cache */

/* How a source's messages are written (sources.format; docs/formats.md). */
typedef enum SvFormat
{
	SV_FORMAT_JSON,
	SV_FORMAT_AVRO,
	SV_FORMAT_PROTOBUF
} SvFormat;
typedef struct SvKafka SvKafka; /* kafka.c: a consumer */

/*
 * What a worker reads of its source's row, as one text that changes
 * whenever any of it does (intervals as numbers, whatever IntervalStyle
 * says): a worker that finds its source's settings changed (alter_source)
 * stops before it applies anything with the old ones, and the launcher
 * starts it again at once (docs/architecture.md, "Catalog changes").  The
 * source's last change (last_change_id) is part of it: a change of its
 * columns (alter_source) or a replay of its dead letters, which rewrites
 * the ledger the workers hold in memory, restarts them too.  An SQL
 * expression over streamview.sources s.
 */
#define SV_SOURCE_SETTINGS \
	"md5(row(s.brokers, s.topic, s.event_time, s.event_id, s.options, " \
	"extract(epoch FROM s.max_out_of_orderness), extract(epoch FROM s.idle_timeout), " \
	"extract(epoch FROM s.max_future), s.partitions, s.workers, s.last_change_id, " \
	"extract(epoch FROM s.archive))::text)"
#define SV_SOURCE_SETTINGS_LEN 33	/* an md5 in hex, and its NUL */

/* A source, as the worker sees it (catalog.c loads it). */
typedef struct SvSource
{
	int32		source_id;
	char	   *name;
	char	   *brokers;
	char	   *topic;
	int			ncolumns;
	SvColumn   *columns;
	int			event_time_col;
	int			event_id_col;	/* -1 when the source has no event_id */
	int64		ooo_us;
	int64		idle_timeout_us;	/* -1: partitions never count as idle */
	int64		max_future_us;	/* -1: event times ahead of the broker's are not checked */
	List	   *option_names;
	List	   *option_values;
	Oid			owner;
	SvPathNode *paths;			/* built by parse.c on first use */
	int			topic_partitions;	/* set by the worker from the topic's metadata */
	TimestampTz assigned_at;	/* when the worker started reading */
	char	   *settings;		/* SV_SOURCE_SETTINGS, as loaded */
	/* partitions =>: ranges first..last (last INT32_MAX: open); -1: all */
	int			npartition_ranges;
	int32	   *partition_first;
	int32	   *partition_last;
	int			workers;		/* sources.workers, as loaded */
	/*
	 * set by a source worker: of the partitions the source reads, it reads
	 * those with p % worker_count = worker_index (streamview_owns_partition)
	 */
	int			worker_index;
	int			worker_count;	/* 1 for a replay worker, which reads them all */
	SvFormat	format;
	char	   *schema_registry;	/* its URL; NULL for JSON */
	char	   *registry_username;	/* options' schema.registry.username, or NULL */
	char	   *registry_password;	/* options' schema.registry.password, or NULL */
	SvRegistry *registry;		/* registry.c: schemas by id, made on first use */
	int64		archive_us;		/* sources.archive; -1: no archive (archive.c) */
} SvSource;

/*
 * Per version and partition: position in the log, event-time high mark, the
 * ledger.  ledger.c loads and stores it (streamview.offsets); classify.c
 * advances it.
 */
typedef struct SvPartState
{
	bool		known;			/* a row exists (or will) in streamview.offsets */
	bool		dirty;			/* changed in the current batch */
	int64		next_offset;	/* -1: from the start of the log */
	bool		has_max;
	TimestampTz max_event_time;
	int64		consumed;
	int64		applied;
	int64		duplicates;
	int64		too_late;
	int64		dead_lettered;
	int64		log_end;		/* -1 unknown */
	TimestampTz last_message_at;
	bool		has_broker_time;
	TimestampTz max_broker_time;	/* newest broker timestamp of the messages read */
	bool		holds_watermark;	/* as streamview_compute_watermark last found */
} SvPartState;

/* streamview.status.events_per_second counts the messages of the last this many seconds. */
#define SV_RATE_WINDOW_S 10

/* See "Version states" in docs/architecture.md; streamview.version_state in SQL. */
typedef enum SvVersionState
{
	SV_VERSION_REPLAYING,
	SV_VERSION_CAUGHT_UP,
	SV_VERSION_LIVE,
	SV_VERSION_RETIRED,
	SV_VERSION_FAILED
} SvVersionState;

/* The event ids a version remembers, by their SHA-256 (seen.c). */
typedef struct SvSeenSet SvSeenSet;

/* A version a worker maintains. */
typedef struct SvVersion
{
	int32		version_id;
	int32		version;
	char	   *view_name;
	SvVersionState state;
	Oid			owner;
	int64		lateness_us;
	SvWindow	window;
	char	   *batch_sql;
	char	   *definition_hash;
	SPIPlanPtr	plan;
	int			nparts;
	SvPartState *parts;			/* indexed by partition number */
	bool		has_watermark;
	TimestampTz watermark;
	bool		failed;			/* failed in this worker; not routed any more */
	int64		max_rate;		/* replay: events per second, 0 = unlimited */
	bool		has_cut;		/* rebuilt from a point in time: */
	TimestampTz cut;			/* windows starting before it are carried over */
	/* stats.c: what streamview.status shows of the version's recent batches */
	int64		rate_second[SV_RATE_WINDOW_S];	/* the second each count is of */
	int64		rate_count[SV_RATE_WINDOW_S];	/* messages read in that second */
	bool		batch_read;		/* the current batch read messages for it */
	bool		holders_saved;	/* held_back_by as stored matches holds_watermark */
	SvSeenSet  *seen;			/* the ids it remembers (seen.c); NULL without event ids */
	/*
	 * Pre-aggregating across rounds (batch.c): the kinds of its outputs
	 * ("key,count,sum,..." from its definition), the statements that
	 * aggregate one round into partial rows and merge them at the batch's
	 * end (NULL: the version upserts every round with plan), and the
	 * partial rows the batch holds so far.
	 */
	char	   *output_kinds;
	SPIPlanPtr	partial_plan;
	SPIPlanPtr	merge_plan;
	TupleDesc	partial_desc;
	MemoryContext partial_cxt;
	struct Tuplestorestate *partials;
	int64		npartials;
} SvVersion;

/* Why a message was not applied (streamview.dead_letters.reason). */
typedef enum SvReason
{
	SV_REASON_NONE = 0,
	SV_REASON_INVALID_JSON,
	SV_REASON_MISSING_FIELD,
	SV_REASON_INVALID_VALUE,
	SV_REASON_TOO_LATE,
	SV_REASON_QUERY_ERROR,
	SV_REASON_FUTURE_TIME,
	SV_REASON_SCHEMA_ERROR,		/* Avro/Protobuf: the message's schema cannot be had or read */
	SV_REASON_INVALID_MESSAGE	/* Avro/Protobuf: not in the wire format, or not as its schema says */
} SvReason;

#define SV_ID_HASH_LEN PG_SHA256_DIGEST_LENGTH

/* One message: filled by kafka.c, parsed by parse.c. */
typedef struct SvEvent
{
	int32		partition;
	int64		offset;
	char	   *key;			/* NULL for a null key */
	int			keylen;
	char	   *payload;		/* NULL for a null payload */
	int			paylen;
	bool		has_broker_time;	/* the broker gave the message a timestamp */
	TimestampTz broker_time;	/* its CreateTime or LogAppendTime */
	char	   *headers;		/* JSON [[name, base64 value or null], ...]; NULL: none */
	SvReason	reason;			/* SV_REASON_NONE when readable */
	char	   *error;
	Datum	   *values;
	bool	   *nulls;
	TimestampTz event_time;
	char	   *event_id;
	uint8		event_id_hash[SV_ID_HASH_LEN];	/* SHA-256 of event_id: what dedup stores */
} SvEvent;

/* One version's share of a batch: what classification decided. */
typedef struct SvVersionBatch
{
	int		   *applied;		/* indexes into the batch's events */
	int			napplied;
	int		   *too_late;
	int			ntoo_late;
	int		   *failed;			/* query_error */
	int			nfailed;
	int			timeouts;		/* statement timeouts met in this batch */
	int			consumed;		/* messages the version read in this batch */
} SvVersionBatch;

/* A stream view query, compiled (compile.c); codegen.c makes its SQL. */
typedef enum SvAggKind
{
	SV_AGG_COUNT,
	SV_AGG_SUM,
	SV_AGG_MIN,
	SV_AGG_MAX,
	SV_AGG_AVG,
	SV_AGG_BOOL_AND,
	SV_AGG_BOOL_OR,
	SV_AGG_HLL,					/* a state of the hll extension */
	SV_AGG_TDIGEST				/* a state of the tdigest extension */
} SvAggKind;

typedef struct SvOutput
{
	char	   *name;
	bool		is_key;
	SvAggKind	agg;
	char	   *expr_sql;		/* key expression, or the aggregate call */
	char	   *type_sql;
	/* hll and tdigest only: the extension's union function, qualified */
	char	   *merge_fn_sql;
	/* avg only: */
	char	   *count_sql;
	char	   *avg_type_sql;
	Oid			avg_type;
} SvOutput;

typedef struct SvCompiled
{
	SvWindow	window;
	char	   *window_size_text;
	char	   *window_slide_text;
	char	   *window_time_zone;	/* the zone's name, or NULL */
	char	   *window_origin_text; /* ISO text, with a time zone only */
	char	   *where_sql;
	List	   *outputs;		/* of SvOutput *, in select-list order */
} SvCompiled;

/*
 * The two kinds of background worker the launcher starts, and what it hands
 * each in bgw_extra.  One name each, in code, docs, bgw_type and
 * application_name: "source worker" (pg_streamview source) and "replay
 * worker" (pg_streamview replay).  The supervisor (pg_streamview supervisor,
 * in no database) starts the launcher (pg_streamview launcher).
 */
typedef enum SvWorkerKind
{
	SV_WORKER_SOURCE,			/* sources.workers per source: every live and caught-up version */
	SV_WORKER_REPLAY			/* one per replaying version (a rebuild) */
} SvWorkerKind;

#define SV_BGW_TYPE_SOURCE "pg_streamview source"
#define SV_BGW_TYPE_REPLAY "pg_streamview replay"
#define SV_BGW_TYPE_LAUNCHER "pg_streamview launcher"
#define SV_BGW_TYPE_SUPERVISOR "pg_streamview supervisor"

typedef struct SvWorkerParams
{
	Oid			dboid;
	Oid			owner;			/* the role it connects as: the extension's owner */
	SvWorkerKind kind;
	int32		source_id;
	int32		replay_version_id;	/* SV_WORKER_REPLAY: versions.version_id */
	int32		worker_index;	/* SV_WORKER_SOURCE: which of the source's workers */
} SvWorkerParams;

StaticAssertDecl(sizeof(SvWorkerParams) <= BGW_EXTRALEN,
				 "SvWorkerParams must fit in bgw_extra");

/* What streamview_run_as_end restores: kept by the caller, on its stack. */
typedef struct SvRunAs
{
	Oid			save_user;
	int			save_sec;
	int			nest;			/* GUC nest level rolled back at the end */
} SvRunAs;

/* ------------------------------------------- in pg_streamview.c: settings */
extern char *streamview_database;
extern int	streamview_batch_size;
extern int	streamview_progress_messages;
extern int	streamview_batch_timeout_ms;
extern int	streamview_batch_max_bytes_kb;
extern int	streamview_batch_max_groups;
extern int	streamview_batch_max_time_ms;
extern int	streamview_max_partition_skew_ms;
extern char *streamview_archive_tablespace;
extern int	streamview_launcher_naptime_ms;
extern int	streamview_restart_delay_s;
extern int	streamview_max_restart_delay_s;
extern int	streamview_statement_timeout_ms;
extern int	streamview_max_workers;
extern bool streamview_enabled;
extern int	streamview_dead_letter_retention_s;
extern int	streamview_worker_error_retention_s;
extern int	streamview_validation_retention_s;
extern int	streamview_offset_mark_retention_s;
extern int	streamview_max_workers_per_role;
extern int	streamview_lock_timeout_ms;
extern int	streamview_lag_threshold_s;
extern int	streamview_stall_threshold_s;

/* -------------------------------------------------------------- in shmem.c */
extern void streamview_shmem_init(void);
extern void streamview_register_launcher_latch(void);
extern bool streamview_launcher_running(void);
extern void streamview_wake_launcher(void);
extern void streamview_register_worker_latch(void);
extern void streamview_wake_workers(void);

/* --------------------------------------------------------- in supervisor.c */
extern PGDLLEXPORT void streamview_supervisor_main(Datum arg);
extern void streamview_register_supervisor(void);

/* ----------------------------------------------------------- in launcher.c */
extern PGDLLEXPORT void streamview_launcher_main(Datum arg);
extern int64 streamview_restart_backoff(TimestampTz started_at, int *failures);

/* ----------------------------------------------------------- in compile.c */
extern SvCompiled *streamview_compile_view(Oid caller, const char *caller_path,
										   const char *source, const char *query);
extern const char *streamview_agg_name(SvAggKind kind);

/* ------------------------------------------------------ in source_worker.c */
extern PGDLLEXPORT void streamview_worker_main(Datum arg);
extern bool streamview_owns_partition(const SvSource *src, int32 partition);

/* ------------------------------------------------------------- in worker.c */
extern void streamview_worker_signals(void);
extern bool streamview_stop_requested(void);
extern void streamview_stop(void) pg_attribute_noreturn();
extern void streamview_stop_because(const char *why, const char *detail) pg_attribute_noreturn();
extern void streamview_batch_aborted(void);
extern void streamview_begin_batch(const char *activity);
extern void streamview_commit_batch(void);
extern void streamview_pin_worker_settings(void);
extern void streamview_worker_context(const char *description);
extern void streamview_worker_context_event(int32 partition, int64 offset);

/* ------------------------------------------------------------- in replay.c */
extern void streamview_replay_start(const SvSource *src, SvVersion *v, SvKafka *kafka, int nparts);
extern int	streamview_replay_batch_limit(SvVersion *v, int capacity);
extern bool streamview_replay_more_rounds(SvVersion *v, SvKafka *kafka, int n);
extern int	streamview_replay_consume(SvVersion *v, SvKafka *kafka, SvEvent *events, int capacity,
									  int64 max_bytes, int timeout_ms);
extern void streamview_replay_after_batch(SvVersion *v);
extern bool streamview_replay_check_caught_up(SvVersion *v);
extern void streamview_replay_done(SvVersion *v) pg_attribute_noreturn();

extern bool streamview_replay_archive_plan(SvVersion *v, const SvSource *src, int64 *log_start,
										  int nparts);
extern bool streamview_replay_archive_recheck(SvVersion *v, const SvSource *src, SvKafka *kafka,
											  int nparts);
extern int	streamview_replay_archive_batch(SvVersion *v, const SvSource *src, SvEvent *out,
											int max, MemoryContext cxt);

/* ------------------------------------------------------------ in archive.c */
extern void streamview_archive_forget(void);
extern void streamview_archive_store(const SvSource *src, const SvEvent *events, int n);
extern int	streamview_archive_read(int32 source_id, int32 partition, int64 from, int64 before,
									int max, SvEvent *out, MemoryContext cxt);
extern int64 streamview_archive_first(int32 source_id, int32 partition, int64 from);
extern void streamview_archive_housekeeping(const SvSource *src, SvKafka *k, int nparts);

/* ------------------------------------------------------------- in window.c */
extern int64 streamview_interval_usecs(const Interval *iv, const char *what);
extern pg_tz *streamview_time_zone(const char *name);
extern void streamview_window_length(const Interval *iv, const char *what,
									 int32 *months, int64 *usecs);
extern void streamview_window_init(SvWindow *w, SvWindowKind kind, const Interval *size,
								   const Interval *slide, pg_tz *tz, Timestamp origin);
extern int	streamview_window_spans(const SvWindow *w, TimestampTz ts,
									TimestampTz *starts, TimestampTz *ends);

/* ------------------------------------------------------------ in catalog.c */
extern SvSource *streamview_load_source(int32 source_id);
extern void streamview_source_use_columns(SvSource *src, Datum columns);
extern List *streamview_load_versions(const SvSource *src, int32 replay_version_id);
extern char *streamview_versions_signature(int32 source_id, int32 replay_version_id,
											char **settings);
extern char *streamview_source_error(int32 source_id);
extern void streamview_record_worker_error(int32 source_id, const char *message,
										   const char *detail, bool current);
extern void streamview_clear_source_error(int32 source_id, const char *error);
extern char *streamview_consumer_group(const char *dbname, const char *source_name);
extern bool streamview_source_reads_partition(const SvSource *src, int32 p);

/* ------------------------------------------------------------ in version.c */
extern const char *streamview_version_state_name(SvVersionState state);
extern SvVersionState streamview_version_state(const char *name);
extern bool streamview_caught_up(SvVersion *v);
extern void streamview_mark_caught_up(SvVersion *v);
extern void streamview_mark_failed(int32 version_id, const char *error);
extern void streamview_fail_version(SvVersion *v, ErrorData *err);
extern void streamview_prepare_version(const SvSource *src, SvVersion *v);

/* -------------------------------------------------------------- in parse.c */

/*
 * What a decoder found of each column of a source in one message, before
 * the column's type is applied (parse.c does that, the same way for every
 * format): the field's text as JSON would have written it (tokens, with
 * its JSON token type), or a value already of a PostgreSQL type
 * (direct_type, for Avro's and Protobuf's timestamps and dates), or an
 * object or array where a scalar was wanted (not_scalar); found says
 * whether the field was there at all (a null one is: token NULL, type
 * JSON_TOKEN_NULL).
 */
typedef struct SvFields
{
	char	  **tokens;
	int		   *types;			/* JsonTokenType */
	bool	   *not_scalar;
	bool	   *found;
	Oid		   *direct_type;	/* InvalidOid unless a typed value is in direct */
	Datum	   *direct;
} SvFields;

extern const char *streamview_reason_name(SvReason reason);
extern void streamview_parse_event(const SvSource *src, SvEvent *ev);
extern SvFields *streamview_fields_new(int ncolumns);
extern void streamview_reject(SvEvent *ev, SvReason reason, const char *fmt,...) pg_attribute_printf(3, 4);
extern void streamview_finish_event(const SvSource *src, SvFields *fields, SvEvent *ev);
extern char *streamview_field_text(const SvColumn *col, const char *str, size_t len, SvEvent *ev);
extern char *streamview_field_hex(const char *bytes, size_t len);

/* ----------------------------------------------------------- in registry.c */

/* What a schema registry's id stands for, as the worker cached it. */
typedef struct SvSchema
{
	int32		id;
	SvFormat	format;			/* of the schema as the registry typed it */
	char	   *error;			/* why it cannot be used (schema_error), or NULL */
	void	   *decoder;		/* format_avro.c's / format_protobuf.c's compiled schema */
} SvSchema;

#define SV_WIRE_HEADER_LEN 5	/* magic byte 0, then the schema id in 4 bytes, big-endian */

extern void streamview_decode_registry_event(const SvSource *src, SvEvent *ev);
extern SvSchema *streamview_registry_put(const SvSource *src, int32 id, SvFormat format,
										  const char *text, int len);
extern const char *streamview_format_name(SvFormat format);
extern Jsonb *streamview_parse_jsonb(const char *text, int len, char **error);
extern SvFormat streamview_format(const char *name);

/* -------------------------------------------------------- in format_avro.c */
extern void *streamview_avro_compile(const char *json, int len, char **error);
extern void streamview_avro_free(void *schema);
extern void streamview_avro_decode(const SvSource *src, void *schema, const char *body, int len,
								   SvFields *fields, SvEvent *ev);

/* ---------------------------------------------------- in format_protobuf.c */
extern void *streamview_protobuf_compile(const char *proto, int len, char **error);
extern void streamview_protobuf_free(void *schema);
extern void streamview_protobuf_decode(const SvSource *src, void *schema, const char *body,
									   int len, SvFields *fields, SvEvent *ev);

/* ----------------------------- in align.c: reading a backlog's partitions in step */
extern void streamview_align_reset(int nparts);
extern void streamview_align_note(const SvEvent *events, int n);
extern void streamview_align(SvKafka *k, const SvSource *src, bool got_messages, bool pays);

/* ----------------------------- in kafka.c: the only file that knows librdkafka */

extern SvKafka *streamview_kafka_open(const SvSource *src, const char *group_id);
extern int	streamview_kafka_partition_count(SvKafka *k, int timeout_ms);
/*
 * streamview_kafka_assign's start offset of a partition not to be read: the
 * source does not read it, or another of its workers does
 * (streamview_owns_partition)
 */
#define SV_NOT_ASSIGNED (-2)
extern void streamview_kafka_assign(SvKafka *k, int nparts, const int64 *start_offsets);
extern int	streamview_kafka_consume(SvKafka *k, SvEvent *out, int max, int64 max_bytes,
									 int timeout_ms);
extern bool streamview_kafka_drained(SvKafka *k);
extern bool streamview_kafka_behind(SvKafka *k);
extern void streamview_kafka_pause(SvKafka *k, int32 p, bool pause);
extern bool streamview_kafka_paused(SvKafka *k, int32 p);
extern bool streamview_kafka_partition_behind(SvKafka *k, int32 p);
extern int	streamview_kafka_wait_fd(SvKafka *k);
extern void streamview_kafka_drain_fd(SvKafka *k);
extern int64 streamview_kafka_log_end(SvKafka *k, int32 partition);
extern int64 streamview_kafka_log_start(SvKafka *k, int32 partition, int timeout_ms);
extern bool streamview_kafka_log_bounds(SvKafka *k, int32 partition, int timeout_ms,
										int64 *first, int64 *end);
extern int64 streamview_kafka_log_start_known(SvKafka *k, int32 partition);
extern void streamview_kafka_commit(SvKafka *k, int nparts, const int64 *next_offsets);
extern char *streamview_kafka_report(SvKafka *k);
extern void streamview_kafka_close(SvKafka *k);

/* ----------------------------------- in classify.c: pure rules, no SPI */
extern SvPartState *streamview_part(SvVersion *v, int32 partition);
extern bool streamview_lateness_floor(const SvSource *src, SvVersion *v, int32 p, TimestampTz *floor);
extern void streamview_unremember(SvVersion *v, const SvEvent *ev);
extern void streamview_classify(const SvSource *src, SvVersion *v, SvEvent *events, int n,
								SvVersionBatch *vb, TimestampTz now, StringInfo gaps);
extern bool streamview_compute_watermark(const SvSource *src, SvVersion *v, TimestampTz now,
										 TimestampTz *result);

/* ---------------------------- in ledger.c: every read and write of the ledger */
extern void streamview_load_offsets(SvVersion *v);
extern void streamview_store_offsets(SvVersion *v);
extern void streamview_store_log_end(SvVersion *v, int32 p, int64 end);
extern void streamview_note_log_end(SvVersion *v, int32 p, int64 end);
extern void streamview_load_seen(const SvSource *src, SvVersion *v);
extern void streamview_store_seen(const SvSource *src, SvVersion *v, const SvEvent *events,
								  const int *idx, int n);
extern void streamview_expire_seen(const SvSource *src, SvVersion *v);
extern void streamview_store_dead_letters(const SvSource *src, SvVersion *v, SvEvent *events,
										  const int *idx, int n, SvReason reason);
extern void streamview_refresh_watermarks(const SvSource *src, List *versions);
extern void streamview_record_start_offsets(SvVersion *v, int nparts, const int64 *low);
extern void streamview_record_marks(const SvSource *src, SvVersion *v, int64 **last, int *nlast);

/* --------------------------------------------------------------- in seen.c */
extern SvSeenSet *streamview_seen_create(MemoryContext parent, uint32 n);
extern bool streamview_seen_find(SvSeenSet *set, const uint8 *id_hash, int32 *partition,
								 TimestampTz *event_time);
extern void streamview_seen_add(SvSeenSet *set, const uint8 *id_hash, int32 partition,
								TimestampTz event_time);
extern void streamview_seen_remove(SvSeenSet *set, const uint8 *id_hash);
extern void streamview_seen_evict(const SvSource *src, SvVersion *v);

/* -------------------------------------------------------------- in stats.c */
extern void streamview_stats_count(SvVersion *v, int n, TimestampTz now);
extern void streamview_store_stats(const SvSource *src, List *versions, TimestampTz now);

/* -------------------------------------------------------------- in apply.c */
extern void streamview_apply_batch(const SvSource *src, List *versions,
								   SvEvent *events, int nevents, bool record_unreadable);
extern void streamview_apply_version_events(const SvSource *src, SvVersion *v, SvEvent *events,
											SvVersionBatch *vb);
extern void streamview_apply_round(const SvSource *src, List *versions, SvEvent *events,
								   int nevents, bool record_unreadable, bool pre_aggregate);
extern int64 streamview_upserted_rows(void);
extern bool streamview_end_batch(const SvSource *src, List *versions);
extern bool streamview_transient_error(int sqlerrcode);
extern ErrorData *streamview_in_subtransaction(void (*fn) (void *), void *arg);

/* -------------------------------------------------------------- in batch.c */
extern void streamview_batch_feed(const SvSource *src, const SvVersion *v, const SvEvent *events,
								  const int *idx, int n);
extern void streamview_batch_unfeed(void);
extern char *streamview_batch_rows_from(const char *source, int32 version_id);
extern void streamview_prepare_rounds(const SvSource *src, SvVersion *v);
extern void streamview_keep_partials(SvVersion *v, SPITupleTable *tt, uint64 n);
extern int64 streamview_partial_rows(List *versions);
extern void streamview_merge_feed(SvVersion *v);
extern void streamview_merge_unfeed(void);
extern void streamview_drop_partials(SvVersion *v);

/* ------------------------------------------------------------ in codegen.c */
extern char *streamview_partial_sql(const char *batch_sql);
extern char *streamview_merge_sql(const char *batch_sql, int32 version_id, const char *kinds,
								  TupleDesc partial_desc, bool ordered);

/* ---------------------------------------------------------------- in api.c */
extern void streamview_as_owner(void (*fn) (void *), void *arg);
extern bool streamview_in_api(void);
extern char *streamview_installed_version(void);
extern Oid	streamview_extension_owner(void);
extern void streamview_run_as_begin(Oid role, SvRunAs *ra);
extern void streamview_run_as_end(const SvRunAs *ra);

#endif							/* PG_STREAMVIEW_H */
