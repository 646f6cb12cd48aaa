/*-------------------------------------------------------------------------
 *
 * parse.c
 *	  Parse a message once, from bytes straight to the typed column values.
 *
 * PostgreSQL's own JSON lexer (common/jsonapi.h) walks the payload with
 * semantic callbacks; no json or jsonb value is built.  A trie of the
 * source's column paths ("payload.amount" is payload → amount) tells, at
 * each field, whether it is one we want.  The tokens we want are then turned
 * into Datums by each type's input function.
 *
 * A message that cannot be read is never an ERROR for the worker: it gets a
 * reason (invalid_json, missing_field, invalid_value) and an explanation,
 * and becomes a dead letter.  Type input functions report bad values by
 * throwing, and so does the conversion of a payload to a database encoding
 * other than UTF-8, so each runs under PG_TRY; only data exceptions
 * (SQLSTATE class 22, and the feature_not_supported of escapes in a
 * SQL_ASCII database) are caught, which these pure functions raise without
 * holding any resource, so no subtransaction is needed.  Anything else is
 * re-thrown.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include <math.h>

#include "common/jsonapi.h"
#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"
#include "utils/elog.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

struct SvPathNode
{
	char	   *key;
	int			column;			/* -1 unless a column ends here */
	int			nchildren;
	SvPathNode **children;
};

#define SV_MAX_DEPTH 64

typedef struct SvParseState
{
	const SvSource *src;
	JsonLexContext *lex;
	SvPathNode *stack[SV_MAX_DEPTH];	/* trie node of each open object */
	int			depth;
	SvPathNode *field;			/* node of the field whose value comes next */
	SvFields   *f;				/* per column: what was found of it */
	int			duplicate;		/* a column whose field was met twice, or -1 */
} SvParseState;

static const char *const sv_reason_names[] = {
	NULL, "invalid_json", "missing_field", "invalid_value", "too_late", "query_error",
	"future_time", "schema_error", "invalid_message"
};

const char *
streamview_reason_name(SvReason reason)
{
	return sv_reason_names[reason];
}

static SvPathNode *
sv_path_child(SvPathNode *node, const char *key, bool create)
{
	for (int i = 0; i < node->nchildren; i++)
		if (strcmp(node->children[i]->key, key) == 0)
			return node->children[i];
	if (!create)
		return NULL;
	node->children = node->nchildren
		? repalloc(node->children, (node->nchildren + 1) * sizeof(SvPathNode *))
		: palloc(sizeof(SvPathNode *));
	node->children[node->nchildren] = palloc0(sizeof(SvPathNode));
	node->children[node->nchildren]->key = pstrdup(key);
	node->children[node->nchildren]->column = -1;
	return node->children[node->nchildren++];
}

/* Build the trie in the source's own memory context. */
static SvPathNode *
sv_build_paths(const SvSource *src)
{
	MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext((void *) src));
	SvPathNode *root = palloc0(sizeof(SvPathNode));

	root->column = -1;
	for (int c = 0; c < src->ncolumns; c++)
	{
		SvPathNode *node = root;

		for (int i = 0; i < src->columns[c].npath; i++)
			node = sv_path_child(node, src->columns[c].path[i], true);
		node->column = c;
	}
	MemoryContextSwitchTo(old);
	return root;
}

/*
 * The field of column c is met.  Twice is a duplicate key: JSON parsers do
 * not agree on which one wins, so such a message is not read at all.
 */
static void
sv_met(SvParseState *ps, int c)
{
	if (ps->f->found[c] && ps->duplicate < 0)
		ps->duplicate = c;
	ps->f->found[c] = true;
}

static void
sv_object_start(void *state)
{
	SvParseState *ps = state;
	SvPathNode *node = ps->depth == 0 ? ps->src->paths : ps->field;

	if (node && node->column >= 0)
	{
		ps->f->not_scalar[node->column] = true;
		if (ps->depth > 0)
			sv_met(ps, node->column);
	}
	if (ps->depth < SV_MAX_DEPTH)
		ps->stack[ps->depth] = node;
	ps->depth++;
	ps->field = NULL;
}

static void
sv_object_end(void *state)
{
	((SvParseState *) state)->depth--;
}

static void
sv_array_start(void *state)
{
	SvParseState *ps = state;

	if (ps->field && ps->field->column >= 0)
	{
		ps->f->not_scalar[ps->field->column] = true;
		sv_met(ps, ps->field->column);
	}
	if (ps->depth < SV_MAX_DEPTH)
		ps->stack[ps->depth] = NULL;	/* nothing inside arrays is addressed */
	ps->depth++;
	ps->field = NULL;
}

static void
sv_field_start(void *state, char *fname, bool isnull)
{
	SvParseState *ps = state;
	SvPathNode *parent = ps->depth <= SV_MAX_DEPTH ? ps->stack[ps->depth - 1] : NULL;

	ps->field = parent ? sv_path_child(parent, fname, false) : NULL;
}

static void
sv_scalar(void *state, char *token, JsonTokenType type)
{
	SvParseState *ps = state;

	if (ps->depth > 0 && ps->field && ps->field->column >= 0)
	{
		sv_met(ps, ps->field->column);
		ps->f->tokens[ps->field->column] = token;
		ps->f->types[ps->field->column] = type;
		ps->f->not_scalar[ps->field->column] = false;
	}
	ps->field = NULL;
}

/* Mark the message unreadable, with a reason and an explanation. */
void
streamview_reject(SvEvent *ev, SvReason reason, const char *fmt,...)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&buf, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	ev->reason = reason;
	ev->error = buf.data;
}

/*
 * Deeper than SV_MAX_DEPTH?  The JSON parser recurses per level and would
 * stop the worker with "stack depth limit exceeded" on a hostile message, so
 * count first: brackets outside strings.
 */
static bool
sv_too_deep(const char *p, int len)
{
	int			depth = 0;
	bool		in_string = false;

	for (const char *end = p + len; p < end; p++)
	{
		if (in_string)
		{
			if (*p == '\\')
				p++;
			else if (*p == '"')
				in_string = false;
		}
		else if (*p == '"')
			in_string = true;
		else if (*p == '{' || *p == '[')
		{
			if (++depth > SV_MAX_DEPTH)
				return true;
		}
		else if (*p == '}' || *p == ']')
			depth--;
	}
	return false;
}

static Interval *
sv_usecs_interval(int64 us)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->day = us / USECS_PER_DAY;
	iv->time = us % USECS_PER_DAY;
	return iv;
}

/* Epoch milliseconds (a JSON number) as a timestamptz. */
static bool
sv_epoch_ms(const char *token, TimestampTz *result)
{
	char	   *end;
	double		ms = strtod(token, &end);
	double		us;

	if (*end != '\0' || isnan(ms))
		return false;
	us = ms * 1000.0 - (double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
	if (!(us >= (double) MIN_TIMESTAMP && us < (double) END_TIMESTAMP))
		return false;
	*result = (TimestampTz) rint(us);
	return true;
}

/*
 * NaN and infinities are valid values of float and numeric types, but not
 * events' numbers: one would make every sum and average of its window NaN
 * or infinite for good, in every rebuild too.
 */
static bool
sv_finite(Oid type, Datum value)
{
	switch (type)
	{
		case FLOAT8OID:
			return isfinite(DatumGetFloat8(value));
		case FLOAT4OID:
			return isfinite(DatumGetFloat4(value));
		case NUMERICOID:
			return !numeric_is_nan(DatumGetNumeric(value)) &&
				!numeric_is_inf(DatumGetNumeric(value));
		default:
			return true;
	}
}

/*
 * Convert one scalar token with the column type's input function.  Returns
 * false, with ev->error set, when the value is not valid for the type.
 */
static bool
sv_convert(const SvColumn *col, const char *token, JsonTokenType type, Datum *value,
		   SvEvent *ev)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	/*
	 * Date and time input also accepts words such as "now" and "yesterday",
	 * whose meaning depends on when the message is read: a view must be a
	 * function of the log alone, so times must be written out in ISO-8601
	 * (digits, '-', ':', '.', 'T', 'Z', offsets; no words such as "today")
	 * or given as epoch milliseconds.
	 */
	if ((col->type == TIMESTAMPTZOID || col->type == TIMESTAMPOID || col->type == DATEOID) &&
		type == JSON_TOKEN_STRING &&
		(!isdigit((unsigned char) token[0]) || token[strspn(token, "0123456789-:.+ TtZz")] != '\0'))
	{
		streamview_reject(ev, SV_REASON_INVALID_VALUE,
				  "column \"%s\": \"%s\" is not an ISO-8601 date or time", col->name, token);
		return false;
	}
	if (col->type == TIMESTAMPTZOID && type == JSON_TOKEN_NUMBER)
	{
		TimestampTz ts;

		if (!sv_epoch_ms(token, &ts))
		{
			streamview_reject(ev, SV_REASON_INVALID_VALUE,
					  "column \"%s\": %s is not a valid epoch time in milliseconds", col->name, token);
			return false;
		}
		*value = TimestampTzGetDatum(ts);
		return true;
	}
	PG_TRY();
	{
		*value = InputFunctionCall((FmgrInfo *) &col->input, (char *) token, col->ioparam, -1);
	}
	PG_CATCH();
	{
		ErrorData  *err;

		MemoryContextSwitchTo(cxt);
		err = CopyErrorData();
		if (ERRCODE_TO_CATEGORY(err->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			PG_RE_THROW();
		FlushErrorState();
		streamview_reject(ev, SV_REASON_INVALID_VALUE, "column \"%s\": %s", col->name, err->message);
		ok = false;
	}
	PG_END_TRY();
	if (ok && !sv_finite(col->type, *value))
	{
		streamview_reject(ev, SV_REASON_INVALID_VALUE,
				  "column \"%s\": \"%s\" is not a finite number", col->name, token);
		ok = false;
	}
	return ok;
}

/*
 * A decoder's typed value (a timestamp of Avro or Protobuf) for a column of
 * another type: its text, as the column's input function then reads it.
 */
static char *
sv_direct_text(SvFields *f, int c)
{
	Oid			output;
	bool		varlena;

	getTypeOutputInfo(f->direct_type[c], &output, &varlena);
	return OidOutputFunctionCall(output, f->direct[c]);
}

static bool
sv_fill_column(const SvSource *src, int c, SvFields *f, SvEvent *ev)
{
	const SvColumn *col = &src->columns[c];
	const char *token = f->tokens[c];
	bool		is_event_time = (c == src->event_time_col);

	if (f->not_scalar[c])
	{
		streamview_reject(ev, SV_REASON_INVALID_VALUE,
						  "column \"%s\": expected a scalar, found an object or array", col->name);
		return false;
	}
	if (f->direct_type[c] != InvalidOid)
	{
		if (f->direct_type[c] == col->type)
		{
			ev->nulls[c] = false;
			ev->values[c] = f->direct[c];
			return true;
		}
		token = f->tokens[c] = sv_direct_text(f, c);
		f->types[c] = JSON_TOKEN_STRING;
	}
	if (token == NULL || f->types[c] == JSON_TOKEN_NULL)
	{
		if (col->required || is_event_time)
		{
			streamview_reject(ev, SV_REASON_MISSING_FIELD, "%s \"%s\" is %s",
							  is_event_time ? "event time field" : "required field",
							  col->name, f->found[c] ? "null" : "missing");
			return false;
		}
		ev->nulls[c] = !col->has_default || f->found[c];
		ev->values[c] = ev->nulls[c] ? (Datum) 0 : col->default_value;
		return true;
	}
	ev->nulls[c] = false;
	return sv_convert(col, token, f->types[c], &ev->values[c], ev);
}

/*
 * Event time is checked, not trusted (DESIGN.md).  One far-future event
 * would push its partition's watermark ahead and make every later event
 * there too late, in every rebuild too.  So a time outside the years 1 to
 * 9999 (UTC) is invalid_value, and one that is more than the source's
 * max_future ahead of the message's broker timestamp is future_time.  Both
 * depend on the message alone (the broker timestamp is part of the log), so
 * a replay decides the same.  Messages without a broker timestamp (brokers
 * before 0.10) are not checked against it.
 */
static bool
sv_check_event_time(const SvSource *src, SvEvent *ev)
{
	const TimestampTz first = (TimestampTz) (date2j(1, 1, 1) - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY;
	const TimestampTz end = (TimestampTz) (date2j(10000, 1, 1) - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY;
	const char *name = src->columns[src->event_time_col].name;

	if (TIMESTAMP_NOT_FINITE(ev->event_time))
	{
		streamview_reject(ev, SV_REASON_INVALID_VALUE, "event time \"%s\" is not finite", name);
		return false;
	}
	if (ev->event_time < first || ev->event_time >= end)
	{
		streamview_reject(ev, SV_REASON_INVALID_VALUE,
				  "event time \"%s\" (%s) is outside the years 1 to 9999", name,
				  timestamptz_to_str(ev->event_time));
		return false;
	}
	/*
	 * Not event_time - broker_time > max_future: a producer may set any
	 * broker timestamp, up to some 290,000 years from now, and then the
	 * difference for an event before 1970 overflows and wraps around to
	 * "far ahead" (found by test/fuzz).  So: ahead at all, and then by how
	 * much, in unsigned arithmetic, which is exact for two int64 values in
	 * that order.
	 */
	if (src->max_future_us >= 0 && ev->has_broker_time && ev->event_time > ev->broker_time &&
		(uint64) ev->event_time - (uint64) ev->broker_time > (uint64) src->max_future_us)
	{
		streamview_reject(ev, SV_REASON_FUTURE_TIME,
				  "event time \"%s\" (%s) is more than the source's max_future (%s) "
				  "ahead of the message's broker timestamp (%s)", name,
				  timestamptz_to_str(ev->event_time),
				  DatumGetCString(DirectFunctionCall1(interval_out,
													  IntervalPGetDatum(sv_usecs_interval(src->max_future_us)))),
				  timestamptz_to_str(ev->broker_time));
		return false;
	}
	return true;
}

/*
 * Run the JSON parser over the payload with our callbacks.  Messages are
 * UTF-8, but the values made of them, the field names compared with the
 * columns' paths and the explanations of dead letters are text of the
 * database, in its encoding; the lexer already converts \u escapes to it.
 * So in a database that is not UTF-8 the payload is converted first, and a
 * character that encoding lacks (raw or escaped) makes the message
 * invalid_json, instead of an ERROR that would stop the source on this
 * message again and again (found by test/fuzz in a LATIN1 database).
 * Returns false, with ev->reason set, when the message is not read.
 */
static bool
sv_parse_json(SvParseState *ps, JsonSemAction *sem, SvEvent *ev)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		char	   *text = ev->payload;
		int			len = ev->paylen;
		JsonParseErrorType rc;

		if (GetDatabaseEncoding() != PG_UTF8)
		{
			text = pg_any_to_server(ev->payload, ev->paylen, PG_UTF8);
			len = strlen(text);
		}
		ps->lex = makeJsonLexContextCstringLen(text, len, GetDatabaseEncoding(), true);
		rc = pg_parse_json(ps->lex, sem);
		if (rc != JSON_SUCCESS)
		{
			streamview_reject(ev, SV_REASON_INVALID_JSON, "invalid JSON: %s", json_errdetail(rc, ps->lex));
			ok = false;
		}
	}
	PG_CATCH();
	{
		ErrorData  *err;

		MemoryContextSwitchTo(cxt);
		err = CopyErrorData();
		/* untranslatable characters; SQL_ASCII: no conversion of escapes */
		if (ERRCODE_TO_CATEGORY(err->sqlerrcode) != ERRCODE_DATA_EXCEPTION &&
			err->sqlerrcode != ERRCODE_FEATURE_NOT_SUPPORTED)
			PG_RE_THROW();
		FlushErrorState();
		streamview_reject(ev, SV_REASON_INVALID_JSON, "invalid JSON: %s", err->message);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * A string field of a binary format (Avro, Protobuf) as column col's text,
 * in the database's encoding: UTF-8 without NUL bytes, as a JSON payload
 * must be.  NULL, with ev rejected (invalid_value), if it is not.
 */
char *
streamview_field_text(const SvColumn *col, const char *str, size_t len, SvEvent *ev)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *volatile text = NULL;

	if (!pg_verify_mbstr(PG_UTF8, str, len, true) || memchr(str, '\0', len) != NULL)
	{
		streamview_reject(ev, SV_REASON_INVALID_VALUE, "column \"%s\": the string is not valid UTF-8 text",
						  col->name);
		return NULL;
	}
	PG_TRY();
	{
		text = pg_any_to_server(str, len, PG_UTF8);
		if (text == str)
			text = pnstrdup(str, len);
	}
	PG_CATCH();
	{
		ErrorData  *err;

		MemoryContextSwitchTo(cxt);
		err = CopyErrorData();
		if (ERRCODE_TO_CATEGORY(err->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			PG_RE_THROW();
		FlushErrorState();
		streamview_reject(ev, SV_REASON_INVALID_VALUE, "column \"%s\": %s", col->name, err->message);
	}
	PG_END_TRY();
	return text;
}

/* Bytes of a binary format, without a type of their own, as bytea's hex text. */
char *
streamview_field_hex(const char *bytes, size_t len)
{
	char	   *out = palloc(2 * len + 3);

	out[0] = '\\';
	out[1] = 'x';
	hex_encode(bytes, len, out + 2);
	out[2 * len + 2] = '\0';
	return out;
}

/* Room for what a decoder finds of each of ncolumns columns. */
SvFields *
streamview_fields_new(int ncolumns)
{
	SvFields   *f = palloc(sizeof(SvFields));

	f->tokens = palloc0(ncolumns * sizeof(char *));
	f->types = palloc0(ncolumns * sizeof(int));
	f->not_scalar = palloc0(ncolumns * sizeof(bool));
	f->found = palloc0(ncolumns * sizeof(bool));
	f->direct_type = palloc0(ncolumns * sizeof(Oid));
	f->direct = palloc0(ncolumns * sizeof(Datum));
	return f;
}

/*
 * What every format shares once its decoder has found the fields: each
 * column's value of its type (or its default, or a dead letter), then the
 * event time, checked, and the event id.
 */
void
streamview_finish_event(const SvSource *src, SvFields *f, SvEvent *ev)
{
	int			id = src->event_id_col;

	for (int c = 0; c < src->ncolumns; c++)
		if (!sv_fill_column(src, c, f, ev))
			return;

	ev->event_time = DatumGetTimestampTz(ev->values[src->event_time_col]);
	if (!sv_check_event_time(src, ev))
		return;
	/* The id as written in the message: "42" and 42 are the same id. */
	if (id >= 0 && !ev->nulls[id])
		ev->event_id = f->tokens[id] ? f->tokens[id] : sv_direct_text(f, id);
}

/*
 * Parse ev->payload into ev->values/nulls/event_time/event_id, or set
 * ev->reason and ev->error.  Allocates in CurrentMemoryContext (the batch's).
 * JSON is read here; Avro and Protobuf through their schemas (registry.c).
 */
void
streamview_parse_event(const SvSource *src, SvEvent *ev)
{
	SvParseState ps = {0};
	JsonSemAction sem = {0};

	ev->reason = SV_REASON_NONE;
	ev->values = palloc0(src->ncolumns * sizeof(Datum));
	ev->nulls = palloc0(src->ncolumns * sizeof(bool));
	if (src->format != SV_FORMAT_JSON)
	{
		streamview_decode_registry_event(src, ev);
		return;
	}
	if (ev->payload == NULL)
	{
		streamview_reject(ev, SV_REASON_INVALID_JSON, "message has no payload (null value)");
		return;
	}
	if (!pg_verify_mbstr(PG_UTF8, ev->payload, ev->paylen, true) ||
		memchr(ev->payload, '\0', ev->paylen) != NULL)
	{
		streamview_reject(ev, SV_REASON_INVALID_JSON, "payload is not valid UTF-8 text");
		return;
	}
	if (sv_too_deep(ev->payload, ev->paylen))
	{
		streamview_reject(ev, SV_REASON_INVALID_JSON, "JSON nested deeper than %d levels", SV_MAX_DEPTH);
		return;
	}
	if (src->paths == NULL)
		((SvSource *) src)->paths = sv_build_paths(src);

	ps.src = src;
	ps.f = streamview_fields_new(src->ncolumns);
	ps.duplicate = -1;
	sem.semstate = &ps;
	sem.object_start = sv_object_start;
	sem.object_end = sv_object_end;
	sem.array_start = sv_array_start;
	sem.array_end = sv_object_end;
	sem.object_field_start = sv_field_start;
	sem.scalar = sv_scalar;

	if (ev->paylen == 0)
	{
		streamview_reject(ev, SV_REASON_INVALID_JSON, "invalid JSON: the payload is empty");
		return;
	}
	if (!sv_parse_json(&ps, &sem, ev))
		return;
	if (ps.lex->input[strspn(ps.lex->input, " \t\r\n")] != '{')
	{
		streamview_reject(ev, SV_REASON_INVALID_JSON, "the payload is not a JSON object");
		return;
	}
	if (ps.duplicate >= 0)
	{
		streamview_reject(ev, SV_REASON_INVALID_JSON, "field \"%s\" (column \"%s\") appears more than once",
						  src->columns[ps.duplicate].path[src->columns[ps.duplicate].npath - 1],
						  src->columns[ps.duplicate].name);
		return;
	}
	streamview_finish_event(src, ps.f, ev);
}
