/*-------------------------------------------------------------------------
 *
 * fuzz_json.c
 *	  The fuzz target of the JSON message decoder, streamview_parse_event
 *	  (src/parse.c).
 *
 * Each input is one message payload.  It is decoded five times: by a source
 * with a column of every supported type (nested paths, a required column,
 * defaults, an event id, max_future of one day), under each kind of broker
 * timestamp kafka.c can hand over (none, an ordinary one, 1970, and the
 * largest it converts exactly), and by a second source that addresses
 * fields in odd ways (a column whose path is a prefix of another's,
 * non-ASCII field names, an event time under another name) and has neither
 * an event id nor max_future.  Every result is checked (sv_fuzz_check.c).
 *
 *-------------------------------------------------------------------------
 */
#include "sv_fuzz.h"

#include "catalog/pg_type.h"

PG_FUNCTION_INFO_V1(sv_fuzz_json);

#define SV_DAY_US	((int64) 86400 * 1000000)

static const SvFuzzColumn sv_every_type[] = {
	{"event_id", TEXTOID, NULL, false, NULL},
	{"user_id", TEXTOID, NULL, true, NULL},
	{"user_name", VARCHAROID, "user.name", false, NULL},
	{"amount", INT8OID, "payload.amount", false, NULL},
	{"currency", TEXTOID, "payload.currency", false, "USD"},
	{"qty", INT4OID, "meta.qty", false, "1"},
	{"small", INT2OID, NULL, false, NULL},
	{"total", NUMERICOID, NULL, false, NULL},
	{"price", FLOAT8OID, NULL, false, NULL},
	{"ratio", FLOAT4OID, NULL, false, "0.5"},
	{"flag", BOOLOID, NULL, false, "false"},
	{"ts", TIMESTAMPTZOID, NULL, false, NULL},
	{"local_ts", TIMESTAMPOID, NULL, false, NULL},
	{"day", DATEOID, NULL, false, "2024-05-01"},
	{"uid", UUIDOID, NULL, false, NULL},
	{"deep", TEXTOID, "a.b.c.d.e.f.g.h", false, NULL},
};

static const SvFuzzColumn sv_odd_paths[] = {
	{"ts", TIMESTAMPTZOID, "time", true, NULL},
	{"seq", INT8OID, NULL, false, NULL},
	{"meta", TEXTOID, NULL, false, NULL},
	{"qty", INT4OID, "meta.qty", false, NULL},
	{"cafe", TEXTOID, "café.ñ", false, "é"},
	{"n", NUMERICOID, "x.x.x", false, NULL},
};

static SvSource *sv_json_every_type;
static SvSource *sv_json_odd_paths;

/* The broker timestamps of the first source's passes; has: one is given. */
static struct
{
	bool		has;
	int64		kafka_ms;
}			sv_json_broker_times[] = {
	{false, 0},
	{true, INT64CONST(1714564800000)},	/* 2024-05-01 12:00:00 UTC */
	{true, 0},
	{true, PG_INT64_MAX / 1000},	/* the largest kafka.c converts exactly */
};

static int64 sv_json_offset;

/* The sources; and a null payload (a tombstone), which no input can be. */
static void
sv_json_init(void)
{
	SvEvent		tombstone = {0};

	sv_json_every_type = sv_fuzz_make_source("every_type", sv_every_type, lengthof(sv_every_type),
											 "ts", "event_id", SV_DAY_US);
	sv_json_odd_paths = sv_fuzz_make_source("odd_paths", sv_odd_paths, lengthof(sv_odd_paths),
											"ts", NULL, -1);
	streamview_parse_event(sv_json_every_type, &tombstone);
	if (tombstone.reason != SV_REASON_INVALID_JSON)
		sv_fuzz_fail("a null payload is not invalid_json");
}

/* One pass: a message as kafka.c makes it, decoded, checked. */
static void
sv_json_pass(const SvSource *src, bool has_broker_time, int64 kafka_ms,
			 const uint8_t *data, size_t size)
{
	SvEvent		ev = {0};

	ev.partition = 0;
	ev.offset = sv_json_offset++;
	ev.has_broker_time = has_broker_time;
	if (has_broker_time)
		ev.broker_time = sv_fuzz_kafka_time(kafka_ms);
	ev.payload = sv_fuzz_copy_bytes(data, size);
	ev.paylen = size;
	streamview_parse_event(src, &ev);
	sv_fuzz_check_event(src, &ev, data, size);
}

static void
sv_json_decode(const uint8_t *data, size_t size)
{
	for (int i = 0; i < lengthof(sv_json_broker_times); i++)
		sv_json_pass(sv_json_every_type, sv_json_broker_times[i].has,
					 sv_json_broker_times[i].kafka_ms, data, size);
	sv_json_pass(sv_json_odd_paths, true, INT64CONST(1714564800000), data, size);
}

static int
sv_json_callback(const uint8_t *data, size_t size)
{
	return sv_fuzz_one(sv_json_decode, data, size);
}

/*
 * sv_fuzz_json(argv text[]): run libFuzzer with this command line over the
 * JSON decoder.  Does not return.
 */
Datum
sv_fuzz_json(PG_FUNCTION_ARGS)
{
	sv_fuzz_run_driver(fcinfo, sv_json_init, sv_json_callback);
	PG_RETURN_INT32(0);
}
