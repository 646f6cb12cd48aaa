/*-------------------------------------------------------------------------
 *
 * format_protobuf.c
 *	  Protobuf messages: the registry's .proto text compiled, and messages
 *	  decoded, by libprotobuf (protobuf_glue.cpp), then resolved to the
 *	  source's columns by field name.
 *
 * Why libprotobuf's C++ library and not protobuf-c: the registry hands out
 * Protobuf schemas as .proto text, and only libprotobuf's compiler
 * (compiler::Parser, in libprotoc) reads that text into descriptors;
 * protobuf-c's runtime needs descriptors generated ahead of time, for a
 * schema known when the extension is built.  DynamicMessage then decodes
 * any message of the parsed schema.  The C++ sits behind a C interface
 * that catches every exception and never calls PostgreSQL
 * (protobuf_glue.h); this file turns what it found into columns.
 *
 * The body starts with the message-index list of the wire format (which
 * message of the schema, nested ones by their path of indexes; a single 0
 * for the first), then the message.  Columns are looked up by field name
 * along their path into nested messages; a field the schema lacks is
 * missing, a message field not set makes the fields under it null, and a
 * scalar field without presence (proto3) has its default value, as
 * Protobuf defines.  google.protobuf.Timestamp is a timestamptz.
 * Bounded: libprotobuf allocates about what the message's bytes say (a
 * Kafka message's size), and nests at most 64 messages deep.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "catalog/pg_type.h"
#include "common/int.h"
#include "common/jsonapi.h"
#include "common/shortest_dec.h"
#include "protobuf_glue.h"

/* Compile a schema's .proto text; NULL with *error set when it cannot be read. */
void *
streamview_protobuf_compile(const char *proto, int len, char **error)
{
	char		errbuf[1024];
	SvPbSchema *schema = sv_pb_compile(proto, len, errbuf, sizeof(errbuf));

	*error = schema ? NULL : pstrdup(errbuf);
	return schema;
}

void
streamview_protobuf_free(void *schema)
{
	sv_pb_free_schema(schema);
}

/* A Timestamp as PostgreSQL's, or false when out of its range. */
static bool
sv_pb_timestamp(int64 seconds, int32 nanos, TimestampTz *result)
{
	int64		us;

	if (nanos < 0 || nanos > 999999999 ||
		pg_mul_s64_overflow(seconds, USECS_PER_SEC, &us) ||
		pg_add_s64_overflow(us, nanos / 1000, &us) ||
		pg_sub_s64_overflow(us, (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY, &us) ||
		!IS_VALID_TIMESTAMP(us))
		return false;
	*result = us;
	return true;
}

/* Column c's value as libprotobuf found it; false when ev is rejected. */
static bool
sv_pb_column(const SvSource *src, int c, const SvPbValue *v, SvFields *f, SvEvent *ev)
{
	const SvColumn *col = &src->columns[c];
	char		buf[64];
	TimestampTz ts;

	f->found[c] = v->kind != SV_PB_MISSING;
	switch (v->kind)
	{
		case SV_PB_MISSING:
			break;
		case SV_PB_NULL:
			f->types[c] = JSON_TOKEN_NULL;
			break;
		case SV_PB_INT:
			snprintf(buf, sizeof(buf), INT64_FORMAT, (int64) v->number);
			f->tokens[c] = pstrdup(buf);
			f->types[c] = JSON_TOKEN_NUMBER;
			break;
		case SV_PB_UINT:
			snprintf(buf, sizeof(buf), UINT64_FORMAT, (uint64) v->unumber);
			f->tokens[c] = pstrdup(buf);
			f->types[c] = JSON_TOKEN_NUMBER;
			break;
		case SV_PB_DOUBLE:
			double_to_shortest_decimal_buf(v->real, buf);
			f->tokens[c] = pstrdup(buf);
			f->types[c] = JSON_TOKEN_NUMBER;
			break;
		case SV_PB_FLOAT:
			float_to_shortest_decimal_buf((float) v->real, buf);
			f->tokens[c] = pstrdup(buf);
			f->types[c] = JSON_TOKEN_NUMBER;
			break;
		case SV_PB_BOOL:
			f->tokens[c] = v->number ? "true" : "false";
			f->types[c] = v->number ? JSON_TOKEN_TRUE : JSON_TOKEN_FALSE;
			break;
		case SV_PB_STRING:
			if ((f->tokens[c] = streamview_field_text(col, v->text, v->len, ev)) == NULL)
				return false;
			f->types[c] = JSON_TOKEN_STRING;
			break;
		case SV_PB_BYTES:
			f->tokens[c] = streamview_field_hex(v->text, v->len);
			f->types[c] = JSON_TOKEN_STRING;
			break;
		case SV_PB_TIMESTAMP:
			if (!sv_pb_timestamp(v->number, v->nanos, &ts))
			{
				streamview_reject(ev, SV_REASON_INVALID_VALUE,
								  "column \"%s\": Timestamp " INT64_FORMAT " s, %d ns is out of range",
								  col->name, (int64) v->number, v->nanos);
				return false;
			}
			f->direct_type[c] = TIMESTAMPTZOID;
			f->direct[c] = TimestampTzGetDatum(ts);
			break;
		default:				/* a message, a list or a map */
			f->not_scalar[c] = true;
			break;
	}
	return true;
}

/*
 * Decode one message's body (after the wire format's header) and find the
 * source's columns in it.  Any problem is a dead letter, with ev->reason
 * set.
 */
void
streamview_protobuf_decode(const SvSource *src, void *schema, const char *body, int len,
						   SvFields *f, SvEvent *ev)
{
	int		   *npath = palloc(Max(src->ncolumns, 1) * sizeof(int));
	char	 ***paths = palloc(Max(src->ncolumns, 1) * sizeof(char **));
	char		errbuf[1024];
	SvPbValue  *values;
	int			c;

	for (c = 0; c < src->ncolumns; c++)
	{
		npath[c] = src->columns[c].npath;
		paths[c] = src->columns[c].path;
	}
	values = sv_pb_decode(schema, (const uint8 *) body, len, src->ncolumns, npath, paths,
						  errbuf, sizeof(errbuf));
	if (values == NULL)
	{
		streamview_reject(ev, SV_REASON_INVALID_MESSAGE, "%s", errbuf);
		return;
	}
	/* copied into palloc'd memory, then libprotobuf's malloc'd result is freed */
	PG_TRY();
	{
		for (c = 0; c < src->ncolumns; c++)
			if (!sv_pb_column(src, c, &values[c], f, ev))
				break;
	}
	PG_FINALLY();
	{
		sv_pb_free_result(values, src->ncolumns);
	}
	PG_END_TRY();
}
