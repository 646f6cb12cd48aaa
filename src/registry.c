/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  Avro and Protobuf messages in the Confluent wire format, and the
 *	  schema registry their schemas come from.
 *
 * A message is magic byte 0, then the id of its writer's schema in 4
 * bytes, big-endian, then the body (Protobuf's starts with the list of
 * message indexes, which format_protobuf.c reads).  The schema of an id is asked of the registry's REST API
 * (GET {schema_registry}/schemas/ids/{id}) with libcurl the first time a
 * worker meets the id, compiled by the format's file (format_avro.c,
 * format_protobuf.c), and cached in the worker for its lifetime: a schema id
 * names one schema for good, so it is never asked again, and never per
 * message.
 *
 * Two kinds of failure, told apart by whether the registry answered
 * (docs/formats.md, "Registry down or schema unknown"):
 *	- The registry did not answer about the id: no connection, a timeout, an
 *	  HTTP status other than 200 and 404 (a 5xx, 429, or 401/403 for wrong
 *	  credentials).  Nothing is known about the message, so it is neither
 *	  applied nor dead-lettered: the worker stops with an ERROR (SQLSTATE
 *	  58030, shown in streamview.status.error); the launcher starts it again
 *	  with its backoff, and it reads the same batch again from the committed
 *	  offsets.  Nothing is cached, so the id is asked again then.
 *	- The registry answered, and the answer cannot be used: 404 (no such
 *	  id), a reply that is not the registry's JSON, a schema its library
 *	  cannot parse, one of the other format, or one this file refuses
 *	  (references, too large).  Every message with that id is a dead letter
 *	  schema_error, and the answer is cached like a good one.
 *
 * Bounded memory: a reply is read up to SV_REGISTRY_MAX_REPLY bytes (a
 * larger one is a schema_error), and the cache holds at most
 * SV_REGISTRY_MAX_SCHEMAS schemas; when full it is emptied and filled again
 * as ids come.  The cache lives in its own memory context under the
 * source's; compiled schemas are freed by their format's free function.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#define SV_REGISTRY_MAX_REPLY	(4 * 1024 * 1024)
#define SV_REGISTRY_MAX_SCHEMAS 1000
#define SV_REGISTRY_CONNECT_TIMEOUT_MS	5000
#define SV_REGISTRY_TIMEOUT_MS	10000

struct SvRegistry
{
	MemoryContext cxt;			/* the cache's entries and compiled schemas */
	HTAB	   *schemas;		/* int32 id → SvSchema */
	CURL	   *curl;			/* kept, so that connections are reused */
};

static const char *const sv_format_names[] = {"json", "avro", "protobuf"};

const char *
streamview_format_name(SvFormat format)
{
	return sv_format_names[format];
}

/* A format's name as sources.format holds it (the catalog checks it). */
SvFormat
streamview_format(const char *name)
{
	for (int f = 0; f < lengthof(sv_format_names); f++)
		if (strcmp(name, sv_format_names[f]) == 0)
			return (SvFormat) f;
	elog(ERROR, "unknown format \"%s\"", name);
	return SV_FORMAT_JSON;		/* keep the compiler quiet */
}

static void
sv_free_decoder(SvSchema *schema)
{
	if (schema->decoder == NULL)
		return;
	if (schema->format == SV_FORMAT_AVRO)
		streamview_avro_free(schema->decoder);
	else if (schema->format == SV_FORMAT_PROTOBUF)
		streamview_protobuf_free(schema->decoder);
	schema->decoder = NULL;
}

static void
sv_registry_reset(SvRegistry *reg)
{
	HASH_SEQ_STATUS seq;
	SvSchema   *schema;

	if (reg->schemas != NULL)
	{
		hash_seq_init(&seq, reg->schemas);
		while ((schema = hash_seq_search(&seq)) != NULL)
			sv_free_decoder(schema);
	}
	MemoryContextReset(reg->cxt);
	reg->schemas = NULL;
}

static SvRegistry *
sv_registry(const SvSource *src)
{
	SvRegistry *reg = src->registry;

	if (reg == NULL)
	{
		MemoryContext parent = GetMemoryChunkContext((void *) src);

		reg = MemoryContextAllocZero(parent, sizeof(SvRegistry));
		reg->cxt = AllocSetContextCreate(parent, "pg_streamview schemas", ALLOCSET_DEFAULT_SIZES);
		((SvSource *) src)->registry = reg;
	}
	if (reg->schemas == NULL)
	{
		HASHCTL		ctl = {0};

		ctl.keysize = sizeof(int32);
		ctl.entrysize = sizeof(SvSchema);
		ctl.hcxt = reg->cxt;
		reg->schemas = hash_create("pg_streamview schemas", 64, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	return reg;
}

/*
 * Cache the schema text the registry gave for id, compiled by its format's
 * file, or the reason it cannot be used.  Also how the fuzz target gives
 * its decoders a schema (test/fuzz), without a registry.
 */
SvSchema *
streamview_registry_put(const SvSource *src, int32 id, SvFormat format, const char *text, int len)
{
	SvRegistry *reg = sv_registry(src);
	SvSchema   *schema;
	bool		found;
	char	   *error = NULL;
	void	   *decoder = NULL;
	MemoryContext old;

	if (hash_get_num_entries(reg->schemas) >= SV_REGISTRY_MAX_SCHEMAS)
	{
		sv_registry_reset(reg);
		reg = sv_registry(src);
	}
	old = MemoryContextSwitchTo(reg->cxt);
	if (format == SV_FORMAT_AVRO)
		decoder = streamview_avro_compile(text, len, &error);
	else if (format == SV_FORMAT_PROTOBUF)
		decoder = streamview_protobuf_compile(text, len, &error);
	else
		error = psprintf("%s schemas are not read", streamview_format_name(format));
	schema = hash_search(reg->schemas, &id, HASH_ENTER, &found);
	if (found)
		sv_free_decoder(schema);
	schema->id = id;
	schema->format = format;
	schema->decoder = decoder;
	schema->error = error;
	MemoryContextSwitchTo(old);
	return schema;
}

/* Cache that id cannot be used, and why. */
static SvSchema *
sv_registry_refuse(const SvSource *src, int32 id, SvFormat format, const char *why)
{
	SvRegistry *reg = sv_registry(src);
	SvSchema   *schema;

	if (hash_get_num_entries(reg->schemas) >= SV_REGISTRY_MAX_SCHEMAS)
	{
		sv_registry_reset(reg);
		reg = sv_registry(src);
	}
	schema = hash_search(reg->schemas, &id, HASH_ENTER, NULL);
	schema->id = id;
	schema->format = format;
	schema->decoder = NULL;
	schema->error = MemoryContextStrdup(reg->cxt, why);
	return schema;
}

/* ---------- the REST API ---------- */

typedef struct SvReply
{
	StringInfoData body;
	bool		too_large;
} SvReply;

static size_t
sv_curl_write(char *data, size_t size, size_t nmemb, void *arg)
{
	SvReply    *reply = arg;
	size_t		n = size * nmemb;

	if (reply->body.len + n > SV_REGISTRY_MAX_REPLY)
	{
		reply->too_large = true;
		return 0;				/* makes curl stop with CURLE_WRITE_ERROR */
	}
	appendBinaryStringInfo(&reply->body, data, n);
	return n;
}

/* A request in flight gives way to a shutdown or cancel of the worker. */
static int
sv_curl_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
				 curl_off_t ulnow)
{
	return InterruptPending ? 1 : 0;
}

static CURL *
sv_curl(SvRegistry *reg, const SvSource *src)
{
	static bool initialized = false;

	if (reg->curl != NULL)
		return reg->curl;
	if (!initialized)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_IO_ERROR),
					 errmsg("could not initialize libcurl for the schema registry")));
		initialized = true;
	}
	reg->curl = curl_easy_init();
	if (reg->curl == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not make a libcurl handle for the schema registry")));
	return reg->curl;
}

/*
 * GET {registry}/schemas/ids/{id}.  Returns the HTTP status, with the body
 * in reply; raises the source's ERROR when there is no answer at all.
 */
static long
sv_registry_get(const SvSource *src, SvRegistry *reg, int32 id, SvReply *reply)
{
	CURL	   *curl = sv_curl(reg, src);
	char		errbuf[CURL_ERROR_SIZE] = "";
	const char *base = src->schema_registry;
	int			baselen = strlen(base);
	char	   *url;
	struct curl_slist *headers = NULL;
	CURLcode	rc;
	long		status = 0;

	while (baselen > 0 && base[baselen - 1] == '/')
		baselen--;
	url = psprintf("%.*s/schemas/ids/%d", baselen, base, id);
	initStringInfo(&reply->body);
	reply->too_large = false;
	headers = curl_slist_append(headers, "Accept: application/vnd.schemaregistry.v1+json, application/json");

	curl_easy_reset(curl);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long) SV_REGISTRY_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long) SV_REGISTRY_TIMEOUT_MS);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, sv_curl_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, reply);
	curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, sv_curl_progress);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "pg_streamview/" STREAMVIEW_VERSION);
	if (src->registry_username != NULL)
	{
		curl_easy_setopt(curl, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
		curl_easy_setopt(curl, CURLOPT_USERNAME, src->registry_username);
		curl_easy_setopt(curl, CURLOPT_PASSWORD,
						 src->registry_password ? src->registry_password : "");
	}
	rc = curl_easy_perform(curl);
	curl_slist_free_all(headers);
	if (rc == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
	CHECK_FOR_INTERRUPTS();
	if (reply->too_large)
		return 200;				/* an answer, too large to use: the caller says so */
	if (rc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("schema registry %s did not answer for schema id %d: %s", url, id,
						errbuf[0] ? errbuf : curl_easy_strerror(rc)),
				 errdetail("Messages are neither applied nor dead-lettered while the registry "
						   "cannot be asked: the worker reads them again when it restarts."),
				 errhint("Check that the registry runs and that schema_registry names it.")));
	return status;
}

/* A text field of the registry's JSON reply, or NULL. */
static char *
sv_reply_field(Jsonb *reply, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&reply->root, key, strlen(key), NULL);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

static bool
sv_reply_has_references(Jsonb *reply)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&reply->root, "references", 10, NULL);

	return v != NULL && v->type == jbvBinary && JsonContainerSize(v->val.binary.data) > 0;
}

/*
 * text as jsonb, or NULL, with *error (when not NULL) saying why, when it
 * is not JSON or nested too deep.  The registry's replies and the Avro
 * schemas in them are read with it.
 */
Jsonb *
streamview_parse_jsonb(const char *text, int len, char **error)
{
	MemoryContext cxt = CurrentMemoryContext;
	Jsonb	   *volatile result = NULL;

	if (memchr(text, '\0', len) != NULL)
	{
		if (error)
			*error = pstrdup("it holds a NUL byte");
		return NULL;
	}
	PG_TRY();
	{
		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(pnstrdup(text, len))));
	}
	PG_CATCH();
	{
		ErrorData  *err;

		MemoryContextSwitchTo(cxt);
		err = CopyErrorData();
		if (ERRCODE_TO_CATEGORY(err->sqlerrcode) != ERRCODE_DATA_EXCEPTION &&
			err->sqlerrcode != ERRCODE_STATEMENT_TOO_COMPLEX)
			PG_RE_THROW();
		FlushErrorState();
		if (error)
			*error = err->message;
	}
	PG_END_TRY();
	return result;
}

/* Ask the registry for id, and cache what it says. */
static SvSchema *
sv_registry_fetch(const SvSource *src, int32 id)
{
	SvRegistry *reg = sv_registry(src);
	SvReply		reply;
	long		status;
	Jsonb	   *json;
	char	   *text;
	char	   *type;
	SvFormat	format;

	status = sv_registry_get(src, reg, id, &reply);
	if (status == 404)
		return sv_registry_refuse(src, id, src->format,
								  psprintf("the schema registry has no schema with id %d", id));
	if (status != 200)
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("schema registry %s answered HTTP %ld for schema id %d",
						src->schema_registry, status, id),
				 errdetail("%s Messages are neither applied nor dead-lettered while the registry "
						   "cannot be asked: the worker reads them again when it restarts.",
						   status == 401 || status == 403 ?
						   "The registry refused the credentials." : ""),
				 errhint(status == 401 || status == 403 ?
						 "Set schema.registry.username and schema.registry.password in the source's options." :
						 "Check the registry's health.")));
	if (reply.too_large)
		return sv_registry_refuse(src, id, src->format,
								  psprintf("the registry's reply for schema id %d is larger than %d bytes",
										   id, SV_REGISTRY_MAX_REPLY));
	json = streamview_parse_jsonb(reply.body.data, reply.body.len, NULL);
	text = json && JB_ROOT_IS_OBJECT(json) ? sv_reply_field(json, "schema") : NULL;
	if (text == NULL)
		return sv_registry_refuse(src, id, src->format,
								  psprintf("the registry's reply for schema id %d is not a JSON object "
										   "with a \"schema\"", id));
	/* Confluent's registry leaves schemaType out for Avro */
	type = sv_reply_field(json, "schemaType");
	if (type == NULL || pg_strcasecmp(type, "AVRO") == 0)
		format = SV_FORMAT_AVRO;
	else if (pg_strcasecmp(type, "PROTOBUF") == 0)
		format = SV_FORMAT_PROTOBUF;
	else
		return sv_registry_refuse(src, id, src->format,
								  psprintf("schema id %d is of type %s, which pg_streamview does not read", id, type));
	if (sv_reply_has_references(json))
		return sv_registry_refuse(src, id, format,
								  psprintf("schema id %d refers to other schemas, which pg_streamview does not read", id));
	return streamview_registry_put(src, id, format, text, strlen(text));
}

/* The schema of id: cached, or asked of the registry once. */
static SvSchema *
sv_schema(const SvSource *src, int32 id)
{
	SvRegistry *reg = sv_registry(src);
	SvSchema   *schema = hash_search(reg->schemas, &id, HASH_FIND, NULL);

	if (schema != NULL)
		return schema;
	if (src->schema_registry == NULL)
		return sv_registry_refuse(src, id, src->format,
								  psprintf("schema id %d is not known and there is no schema registry", id));
	return sv_registry_fetch(src, id);
}

/*
 * Decode an Avro or Protobuf message in the wire format into ev's columns,
 * or make it a dead letter.  Raises an ERROR only when the registry cannot
 * be asked (above).
 */
void
streamview_decode_registry_event(const SvSource *src, SvEvent *ev)
{
	const uint8 *p = (const uint8 *) ev->payload;
	int32		id;
	SvSchema   *schema;
	SvFields   *fields;

	if (ev->payload == NULL)
	{
		streamview_reject(ev, SV_REASON_INVALID_MESSAGE, "message has no payload (null value)");
		return;
	}
	if (ev->paylen < SV_WIRE_HEADER_LEN)
	{
		streamview_reject(ev, SV_REASON_INVALID_MESSAGE,
						  "message of %d bytes is shorter than the wire format's %d-byte header",
						  ev->paylen, SV_WIRE_HEADER_LEN);
		return;
	}
	if (p[0] != 0)
	{
		streamview_reject(ev, SV_REASON_INVALID_MESSAGE,
						  "magic byte is %d, not 0: the message is not in the Confluent wire format",
						  p[0]);
		return;
	}
	id = (int32) (((uint32) p[1] << 24) | ((uint32) p[2] << 16) | ((uint32) p[3] << 8) | p[4]);
	schema = sv_schema(src, id);
	if (schema->error != NULL)
	{
		streamview_reject(ev, SV_REASON_SCHEMA_ERROR, "schema id %d: %s", id, schema->error);
		return;
	}
	if (schema->format != src->format)
	{
		streamview_reject(ev, SV_REASON_SCHEMA_ERROR, "schema id %d is a %s schema; the source reads %s",
						  id, streamview_format_name(schema->format),
						  streamview_format_name(src->format));
		return;
	}
	fields = streamview_fields_new(src->ncolumns);
	if (src->format == SV_FORMAT_AVRO)
		streamview_avro_decode(src, schema->decoder, ev->payload + SV_WIRE_HEADER_LEN,
							   ev->paylen - SV_WIRE_HEADER_LEN, fields, ev);
	else
		streamview_protobuf_decode(src, schema->decoder, ev->payload + SV_WIRE_HEADER_LEN,
								   ev->paylen - SV_WIRE_HEADER_LEN, fields, ev);
	if (ev->reason == SV_REASON_NONE)
		streamview_finish_event(src, fields, ev);
}
