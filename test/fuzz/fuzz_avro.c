/*-------------------------------------------------------------------------
 *
 * fuzz_avro.c
 *	  The fuzz target of the Avro decoder: streamview_parse_event of an Avro
 *	  source (src/registry.c's wire format, src/format_avro.c's decoding).
 *
 * Each input is one message, header included (magic byte, schema id).  The
 * source's registry cache holds two writer schemas, as a worker's would
 * after asking the registry: id 1, with a field of every kind (logical
 * types, unions with null, a nested record, an enum, an array, a map, a
 * fixed), and id 2, another version with the fields in another order and
 * others types for some; any other id is unknown (there is no registry to
 * ask: schema_error).  Each input is decoded by a source with a column of
 * every supported type, and checked (sv_fuzz_check.c).
 *
 *-------------------------------------------------------------------------
 */
#include "sv_fuzz.h"

#include "catalog/pg_type.h"

PG_FUNCTION_INFO_V1(sv_fuzz_avro);

static const char sv_schema_1[] =
"{\"type\":\"record\",\"name\":\"Event\",\"namespace\":\"fuzz\",\"fields\":["
"{\"name\":\"event_id\",\"type\":\"string\"},"
"{\"name\":\"ts\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}},"
"{\"name\":\"local_ts\",\"type\":[\"null\",{\"type\":\"long\",\"logicalType\":\"local-timestamp-micros\"}]},"
"{\"name\":\"day\",\"type\":{\"type\":\"int\",\"logicalType\":\"date\"}},"
"{\"name\":\"total\",\"type\":{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":20,\"scale\":4}},"
"{\"name\":\"price\",\"type\":{\"type\":\"fixed\",\"name\":\"Money\",\"size\":9,\"logicalType\":\"decimal\",\"precision\":18,\"scale\":2}},"
"{\"name\":\"ratio\",\"type\":\"float\"},"
"{\"name\":\"amount\",\"type\":\"double\"},"
"{\"name\":\"flag\",\"type\":\"boolean\"},"
"{\"name\":\"qty\",\"type\":\"int\"},"
"{\"name\":\"small\",\"type\":[\"null\",\"long\"]},"
"{\"name\":\"uid\",\"type\":[\"null\",\"string\"]},"
"{\"name\":\"kind\",\"type\":{\"type\":\"enum\",\"name\":\"Kind\",\"symbols\":[\"A\",\"B\",\"C\"]}},"
"{\"name\":\"raw\",\"type\":\"bytes\"},"
"{\"name\":\"tags\",\"type\":{\"type\":\"array\",\"items\":\"string\"}},"
"{\"name\":\"attrs\",\"type\":{\"type\":\"map\",\"values\":[\"null\",\"double\"]}},"
"{\"name\":\"user\",\"type\":[\"null\",{\"type\":\"record\",\"name\":\"User\",\"fields\":["
"  {\"name\":\"name\",\"type\":\"string\"},{\"name\":\"id\",\"type\":\"Money\"}]}]}]}";

static const char sv_schema_2[] =
"{\"type\":\"record\",\"name\":\"Event\",\"namespace\":\"fuzz\",\"fields\":["
"{\"name\":\"user\",\"type\":{\"type\":\"record\",\"name\":\"User\",\"fields\":["
"  {\"name\":\"name\",\"type\":[\"null\",\"string\"]},{\"name\":\"id\",\"type\":\"long\"}]}},"
"{\"name\":\"ts\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-micros\"}},"
"{\"name\":\"event_id\",\"type\":\"long\"},"
"{\"name\":\"total\",\"type\":\"string\"},"
"{\"name\":\"day\",\"type\":\"string\"},"
"{\"name\":\"flag\",\"type\":[\"boolean\",\"null\",\"int\"]},"
"{\"name\":\"qty\",\"type\":\"long\"},"
"{\"name\":\"kind\",\"type\":\"string\"}]}";

static const SvFuzzColumn sv_avro_columns[] = {
	{"event_id", TEXTOID, NULL, false, NULL},
	{"ts", TIMESTAMPTZOID, NULL, true, NULL},
	{"local_ts", TIMESTAMPOID, NULL, false, NULL},
	{"day", DATEOID, NULL, false, "2024-05-01"},
	{"total", NUMERICOID, NULL, false, NULL},
	{"price", NUMERICOID, NULL, false, NULL},
	{"ratio", FLOAT4OID, NULL, false, NULL},
	{"amount", FLOAT8OID, NULL, false, NULL},
	{"flag", BOOLOID, NULL, false, NULL},
	{"qty", INT4OID, NULL, false, "1"},
	{"small", INT2OID, NULL, false, NULL},
	{"uid", UUIDOID, NULL, false, NULL},
	{"kind", VARCHAROID, NULL, false, NULL},
	{"raw", TEXTOID, NULL, false, NULL},
	{"tagline", TEXTOID, "tags.first", false, NULL},	/* a path into an array: missing */
	{"user_name", TEXTOID, "user.name", false, NULL},
	{"user_id", NUMERICOID, "user.id", false, NULL},
	{"deep", TEXTOID, "user.name.first", false, NULL},
};

static SvSource *sv_avro_source;
static int64 sv_avro_offset;

static void
sv_avro_init(void)
{
	SvEvent		tombstone = {0};

	sv_avro_source = sv_fuzz_make_source("avro", sv_avro_columns, lengthof(sv_avro_columns),
										 "ts", "event_id", (int64) 86400 * 1000000);
	sv_avro_source->format = SV_FORMAT_AVRO;
	for (int id = 1; id <= 2; id++)
	{
		const char *text = id == 1 ? sv_schema_1 : sv_schema_2;
		SvSchema   *schema = streamview_registry_put(sv_avro_source, id, SV_FORMAT_AVRO, text,
													 strlen(text));

		if (schema->error != NULL)
			sv_fuzz_fail("schema %d of the fuzz target does not compile: %s", id, schema->error);
	}
	streamview_parse_event(sv_avro_source, &tombstone);
	if (tombstone.reason != SV_REASON_INVALID_MESSAGE)
		sv_fuzz_fail("a null payload is not invalid_message");
}

static void
sv_avro_decode(const uint8_t *data, size_t size)
{
	SvEvent		ev = {0};

	ev.offset = sv_avro_offset++;
	ev.has_broker_time = true;
	ev.broker_time = sv_fuzz_kafka_time(INT64CONST(1714564800000));
	ev.payload = sv_fuzz_copy_bytes(data, size);
	ev.paylen = size;
	streamview_parse_event(sv_avro_source, &ev);
	sv_fuzz_check_event(sv_avro_source, &ev, data, size);
	/* repro (run.sh repro FILE) with SV_FUZZ_SHOW=1 says what became of each input */
	if (getenv("SV_FUZZ_SHOW") != NULL)
		fprintf(stderr, "sv_fuzz_avro: %s%s%s\n",
				ev.reason == SV_REASON_NONE ? "readable" : streamview_reason_name(ev.reason),
				ev.error ? ": " : "", ev.error ? ev.error : "");
}

static int
sv_avro_callback(const uint8_t *data, size_t size)
{
	return sv_fuzz_one(sv_avro_decode, data, size);
}

/* sv_fuzz_avro(argv text[]): libFuzzer over the Avro decoder.  Does not return. */
Datum
sv_fuzz_avro(PG_FUNCTION_ARGS)
{
	sv_fuzz_run_driver(fcinfo, sv_avro_init, sv_avro_callback);
	PG_RETURN_INT32(0);
}
