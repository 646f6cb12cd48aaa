/*-------------------------------------------------------------------------
 *
 * fuzz_protobuf.c
 *	  The fuzz target of the Protobuf decoder: streamview_parse_event of a
 *	  Protobuf source (src/registry.c's wire format, src/format_protobuf.c
 *	  and src/protobuf_glue.cpp's decoding with libprotobuf).
 *
 * Each input is one message, header included (magic byte, schema id,
 * message-index list).  The source's registry cache holds two schemas as
 * .proto text, as a worker's would after asking the registry: id 1 with a
 * field of every scalar kind, a Timestamp, a nested message, an enum, a
 * repeated field and a map, in proto3; id 2 in proto2 (fields with
 * presence, a required one, the event time in epoch milliseconds), its
 * messages nested so that the message-index list matters.  Any other id is unknown.  Every result is checked
 * (sv_fuzz_check.c).
 *
 *-------------------------------------------------------------------------
 */
#include "sv_fuzz.h"

#include "catalog/pg_type.h"

PG_FUNCTION_INFO_V1(sv_fuzz_protobuf);

static const char sv_schema_1[] =
"syntax = \"proto3\";\n"
"package fuzz;\n"
"import \"google/protobuf/timestamp.proto\";\n"
"enum Kind { A = 0; B = 1; C = 2; }\n"
"message Event {\n"
"  string event_id = 1;\n"
"  google.protobuf.Timestamp ts = 2;\n"
"  sint64 total = 3;\n"
"  double amount = 4;\n"
"  float ratio = 5;\n"
"  bool flag = 6;\n"
"  uint32 qty = 7;\n"
"  fixed64 big = 8;\n"
"  optional int32 small = 9;\n"
"  Kind kind = 10;\n"
"  bytes raw = 11;\n"
"  repeated string tags = 12;\n"
"  map<string, double> attrs = 13;\n"
"  message User { string name = 1; sfixed32 id = 2; google.protobuf.Timestamp seen = 3; }\n"
"  User user = 14;\n"
"  string uid = 15;\n"
"}\n";

static const char sv_schema_2[] =
"syntax = \"proto2\";\n"
"package fuzz2;\n"
"message Other { optional int32 n = 1; }\n"
"message Outer {\n"
"  message Event {\n"
"    required int64 ts = 1;\n"
"    optional string event_id = 2;\n"
"    optional int64 total = 3;\n"
"    optional string kind = 4;\n"
"    message User { optional string name = 1; optional int64 id = 2; }\n"
"    optional User user = 5;\n"
"    optional bool flag = 6;\n"
"    repeated int32 codes = 7;\n"
"  }\n"
"}\n";

static const SvFuzzColumn sv_pb_columns[] = {
	{"event_id", TEXTOID, NULL, false, NULL},
	{"ts", TIMESTAMPTZOID, NULL, true, NULL},
	{"total", NUMERICOID, NULL, false, NULL},
	{"amount", FLOAT8OID, NULL, false, NULL},
	{"ratio", FLOAT4OID, NULL, false, NULL},
	{"flag", BOOLOID, NULL, false, NULL},
	{"qty", INT4OID, NULL, false, "1"},
	{"big", NUMERICOID, NULL, false, NULL},
	{"small", INT2OID, NULL, false, NULL},
	{"kind", VARCHAROID, NULL, false, NULL},
	{"raw", TEXTOID, NULL, false, NULL},
	{"uid", TEXTOID, NULL, false, "none"},
	{"user_name", TEXTOID, "user.name", false, NULL},
	{"user_id", INT8OID, "user.id", false, NULL},
	{"user_seen", TIMESTAMPOID, "user.seen", false, NULL},
	{"deep", TEXTOID, "user.name.first", false, NULL},
};

static SvSource *sv_pb_source;
static int64 sv_pb_offset;

static void
sv_pb_init(void)
{
	SvEvent		tombstone = {0};

	sv_pb_source = sv_fuzz_make_source("protobuf", sv_pb_columns, lengthof(sv_pb_columns),
									   "ts", "event_id", (int64) 86400 * 1000000);
	sv_pb_source->format = SV_FORMAT_PROTOBUF;
	for (int id = 1; id <= 2; id++)
	{
		const char *text = id == 1 ? sv_schema_1 : sv_schema_2;
		SvSchema   *schema = streamview_registry_put(sv_pb_source, id, SV_FORMAT_PROTOBUF, text,
													 strlen(text));

		if (schema->error != NULL)
			sv_fuzz_fail("schema %d of the fuzz target does not compile: %s", id, schema->error);
	}
	streamview_parse_event(sv_pb_source, &tombstone);
	if (tombstone.reason != SV_REASON_INVALID_MESSAGE)
		sv_fuzz_fail("a null payload is not invalid_message");
}

static void
sv_pb_decode(const uint8_t *data, size_t size)
{
	SvEvent		ev = {0};

	ev.offset = sv_pb_offset++;
	ev.has_broker_time = true;
	ev.broker_time = sv_fuzz_kafka_time(INT64CONST(1714564800000));
	ev.payload = sv_fuzz_copy_bytes(data, size);
	ev.paylen = size;
	streamview_parse_event(sv_pb_source, &ev);
	sv_fuzz_check_event(sv_pb_source, &ev, data, size);
	/* repro (run.sh repro FILE) with SV_FUZZ_SHOW=1 says what became of each input */
	if (getenv("SV_FUZZ_SHOW") != NULL)
		fprintf(stderr, "sv_fuzz_protobuf: %s%s%s\n",
				ev.reason == SV_REASON_NONE ? "readable" : streamview_reason_name(ev.reason),
				ev.error ? ": " : "", ev.error ? ev.error : "");
}

static int
sv_pb_callback(const uint8_t *data, size_t size)
{
	return sv_fuzz_one(sv_pb_decode, data, size);
}

/* sv_fuzz_protobuf(argv text[]): libFuzzer over the Protobuf decoder.  Does not return. */
Datum
sv_fuzz_protobuf(PG_FUNCTION_ARGS)
{
	sv_fuzz_run_driver(fcinfo, sv_pb_init, sv_pb_callback);
	PG_RETURN_INT32(0);
}
