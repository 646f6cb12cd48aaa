/*-------------------------------------------------------------------------
 *
 * format_avro.c
 *	  Avro messages: decoded by Apache Avro C (libavro) with the schema that
 *	  wrote them, and resolved to the source's columns by field name.
 *
 * Each message is decoded with its writer's schema (the registry's, by the
 * id the message carries; registry.c), into a generic value that libavro
 * reuses from message to message.  The source's columns are then looked up
 * in that value by name, along their paths into records, so that old and
 * new versions of one topic's schema (fields added, removed or reordered)
 * map to the same columns; a field a version lacks is missing, as in JSON.
 * Unions are followed to the branch the message holds; a null branch is a
 * null value.
 *
 * libavro 1.11 parses but does not keep logical types (timestamp-millis,
 * date, decimal...), so this file reads the schema's JSON too, into a tree
 * of SvAvroNode that mirrors libavro's schema field for field and branch
 * for branch (checked when compiled), and keeps the logical types there.
 * That tree also lets it refuse, once per schema (schema_error), what would
 * make decoding unbounded: recursive schemas (a message could nest as deep
 * as it is long, and libavro reads by recursion), schemas nested deeper
 * than SV_AVRO_MAX_DEPTH, and arrays of values that take no bytes (a few
 * bytes could declare billions of them).  Everything else a message can
 * say is bounded by its length, and the memory libavro takes for one
 * message by SV_AVRO_MAX_MESSAGE_MEMORY (its allocator, below): anything
 * libavro cannot read, or reads with bytes left over, is invalid_message.
 *
 * Types: docs/reference.md, "Formats".
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include <avro.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "common/shortest_dec.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#define SV_AVRO_MAX_DEPTH	64
#define SV_AVRO_MAX_MESSAGE_MEMORY	(64 * 1024 * 1024)
#define SV_AVRO_MAX_DECIMAL_BYTES	16

typedef enum SvAvroKind
{
	SV_AVRO_NULL,
	SV_AVRO_BOOLEAN,
	SV_AVRO_INT,
	SV_AVRO_LONG,
	SV_AVRO_FLOAT,
	SV_AVRO_DOUBLE,
	SV_AVRO_BYTES,
	SV_AVRO_STRING,
	SV_AVRO_RECORD,
	SV_AVRO_ENUM,
	SV_AVRO_ARRAY,
	SV_AVRO_MAP,
	SV_AVRO_FIXED,
	SV_AVRO_UNION
} SvAvroKind;

typedef enum SvAvroLogical
{
	SV_LOGICAL_NONE,
	SV_LOGICAL_DATE,			/* int: days since 1970-01-01 */
	SV_LOGICAL_TIMESTAMP_MILLIS,	/* long: since the epoch, UTC */
	SV_LOGICAL_TIMESTAMP_MICROS,
	SV_LOGICAL_LOCAL_TIMESTAMP_MILLIS,	/* long: wall-clock time, no zone */
	SV_LOGICAL_LOCAL_TIMESTAMP_MICROS,
	SV_LOGICAL_DECIMAL			/* bytes or fixed: unscaled, two's complement */
} SvAvroLogical;

typedef struct SvAvroNode SvAvroNode;

struct SvAvroNode
{
	SvAvroKind	kind;
	SvAvroLogical logical;
	int			scale;			/* decimal */
	char	   *fullname;		/* named types */
	bool		complete;		/* named types: defined; a reference before is recursion */
	int			nchildren;		/* record fields, union branches, array items, map values */
	SvAvroNode **children;
	char	  **field_names;
	int			nsymbols;		/* enum */
	char	  **symbols;
	int64		fixed_size;
	bool		may_be_empty;	/* can be written in zero bytes */
};

/* A compiled schema: registry.c caches it by id. */
typedef struct SvAvroSchema
{
	SvAvroNode *root;
	avro_schema_t schema;
	avro_value_iface_t *iface;
	avro_value_t value;			/* reused for every message; iface NULL: to be made */
	avro_reader_t reader;
	int64		held;			/* what libavro held once it was made */
} SvAvroSchema;

/* A value that grew by more than this for a message is made anew after it. */
#define SV_AVRO_KEEP_MEMORY (8 * 1024 * 1024)

/* What compiling the schema's JSON needs. */
typedef struct SvAvroCompile
{
	List	   *named;			/* of SvAvroNode *, by fullname */
	char	   *error;
} SvAvroCompile;

/* ---------- libavro's memory ---------- */

/*
 * libavro allocates through one function that is told the old size of
 * every block, so the bytes it holds can be counted: decoding one message
 * may take at most SV_AVRO_MAX_MESSAGE_MEMORY more than it held before (a
 * string's length is read from the message, and libavro allocates it
 * before it finds the message too short).  malloc, not palloc: libavro
 * cannot be left by an ERROR halfway through.
 */
static int64 sv_avro_held = 0;
static int64 sv_avro_limit = -1;	/* -1: no limit */

static void *
sv_avro_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	void	   *p;

	if (nsize == 0)
	{
		free(ptr);
		sv_avro_held -= osize;
		return NULL;
	}
	if (sv_avro_limit >= 0 && nsize > osize &&
		(nsize - osize > (size_t) PG_INT64_MAX / 2 || sv_avro_held + (int64) (nsize - osize) > sv_avro_limit))
		return NULL;
	p = realloc(ptr, nsize);
	if (p == NULL)
		return NULL;
	sv_avro_held += (int64) nsize - (int64) osize;
	return p;
}

static void
sv_avro_init(void)
{
	static bool done = false;

	if (!done)
	{
		avro_set_allocator(sv_avro_alloc, NULL);
		done = true;
	}
}

/* ---------- compiling: the schema's JSON ---------- */

static SvAvroNode *sv_avro_node(SvAvroCompile *ac, JsonbValue *v, const char *ns, int depth);

static char *
sv_json_text(JsonbValue *v)
{
	return v && v->type == jbvString ? pnstrdup(v->val.string.val, v->val.string.len) : NULL;
}

static JsonbValue *
sv_json_get(JsonbValue *obj, const char *key)
{
	if (obj->type != jbvBinary || !JsonContainerIsObject(obj->val.binary.data))
		return NULL;
	return getKeyJsonValueFromContainer(obj->val.binary.data, key, strlen(key), NULL);
}

static bool
sv_avro_fail(SvAvroCompile *ac, const char *fmt,...) pg_attribute_printf(2, 3);

static bool
sv_avro_fail(SvAvroCompile *ac, const char *fmt,...)
{
	va_list		args;
	char		buf[512];

	if (ac->error != NULL)
		return false;
	va_start(args, fmt);
	vsnprintf(buf, sizeof(buf), fmt, args);
	va_end(args);
	ac->error = pstrdup(buf);
	return false;
}

static const char *const sv_avro_primitives[] = {
	"null", "boolean", "int", "long", "float", "double", "bytes", "string"
};

static int
sv_avro_primitive(const char *name)
{
	for (int k = 0; k < lengthof(sv_avro_primitives); k++)
		if (strcmp(name, sv_avro_primitives[k]) == 0)
			return k;			/* the same order as SvAvroKind */
	return -1;
}

static SvAvroNode *
sv_avro_new(SvAvroKind kind)
{
	SvAvroNode *node = palloc0(sizeof(SvAvroNode));

	node->kind = kind;
	node->may_be_empty = (kind == SV_AVRO_NULL);
	return node;
}

/* A named type's full name: name, in namespace ns unless it has dots. */
static char *
sv_avro_fullname(const char *name, const char *ns)
{
	if (strchr(name, '.') != NULL || ns == NULL || ns[0] == '\0')
		return pstrdup(name);
	return psprintf("%s.%s", ns, name);
}

static SvAvroNode *
sv_avro_lookup(SvAvroCompile *ac, const char *name, const char *ns)
{
	char	   *full = sv_avro_fullname(name, ns);
	ListCell   *lc;

	foreach(lc, ac->named)
	{
		SvAvroNode *node = lfirst(lc);

		if (strcmp(node->fullname, full) == 0 || strcmp(node->fullname, name) == 0)
			return node;
	}
	return NULL;
}

/* The namespace a named type's own definitions are in. */
static char *
sv_avro_namespace_of(const char *fullname)
{
	const char *dot = strrchr(fullname, '.');

	return dot ? pnstrdup(fullname, dot - fullname) : "";
}

static SvAvroLogical
sv_avro_logical(SvAvroCompile *ac, JsonbValue *obj, SvAvroNode *node)
{
	char	   *lt = sv_json_text(sv_json_get(obj, "logicalType"));

	if (lt == NULL)
		return SV_LOGICAL_NONE;
	/* a logical type on the wrong type is ignored, as the specification says */
	if (strcmp(lt, "date") == 0 && node->kind == SV_AVRO_INT)
		return SV_LOGICAL_DATE;
	if (node->kind == SV_AVRO_LONG)
	{
		if (strcmp(lt, "timestamp-millis") == 0)
			return SV_LOGICAL_TIMESTAMP_MILLIS;
		if (strcmp(lt, "timestamp-micros") == 0)
			return SV_LOGICAL_TIMESTAMP_MICROS;
		if (strcmp(lt, "local-timestamp-millis") == 0)
			return SV_LOGICAL_LOCAL_TIMESTAMP_MILLIS;
		if (strcmp(lt, "local-timestamp-micros") == 0)
			return SV_LOGICAL_LOCAL_TIMESTAMP_MICROS;
	}
	if (strcmp(lt, "decimal") == 0 && (node->kind == SV_AVRO_BYTES || node->kind == SV_AVRO_FIXED))
	{
		JsonbValue *scale = sv_json_get(obj, "scale");

		node->scale = 0;
		if (scale != NULL)
		{
			if (scale->type != jbvNumeric ||
				!DatumGetBool(DirectFunctionCall2(numeric_le, NumericGetDatum(scale->val.numeric),
												  DirectFunctionCall1(int4_numeric, Int32GetDatum(NUMERIC_MAX_DISPLAY_SCALE)))) ||
				DatumGetBool(DirectFunctionCall2(numeric_lt, NumericGetDatum(scale->val.numeric),
												 DirectFunctionCall1(int4_numeric, Int32GetDatum(0)))))
			{
				sv_avro_fail(ac, "decimal scale must be a number from 0 to %d", NUMERIC_MAX_DISPLAY_SCALE);
				return SV_LOGICAL_NONE;
			}
			node->scale = DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(scale->val.numeric)));
		}
		return SV_LOGICAL_DECIMAL;
	}
	return SV_LOGICAL_NONE;
}

/* Register a named type before its body, so that a reference in it is recursion. */
static SvAvroNode *
sv_avro_named(SvAvroCompile *ac, SvAvroKind kind, JsonbValue *obj, const char *ns)
{
	char	   *name = sv_json_text(sv_json_get(obj, "name"));
	char	   *own_ns = sv_json_text(sv_json_get(obj, "namespace"));
	SvAvroNode *node;

	if (name == NULL || name[0] == '\0')
	{
		sv_avro_fail(ac, "a named type has no name");
		return NULL;
	}
	node = sv_avro_new(kind);
	node->fullname = sv_avro_fullname(name, own_ns && strchr(name, '.') == NULL ? own_ns : ns);
	if (sv_avro_lookup(ac, node->fullname, ""))
	{
		sv_avro_fail(ac, "type \"%s\" is defined twice", node->fullname);
		return NULL;
	}
	ac->named = lappend(ac->named, node);
	return node;
}

static bool
sv_avro_record(SvAvroCompile *ac, SvAvroNode *node, JsonbValue *obj, int depth)
{
	JsonbValue *fields = sv_json_get(obj, "fields");
	const char *ns = sv_avro_namespace_of(node->fullname);
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;

	if (fields == NULL || fields->type != jbvBinary || !JsonContainerIsArray(fields->val.binary.data))
		return sv_avro_fail(ac, "record \"%s\" has no fields array", node->fullname);
	n = JsonContainerSize(fields->val.binary.data);
	node->children = palloc0(Max(n, 1) * sizeof(SvAvroNode *));
	node->field_names = palloc0(Max(n, 1) * sizeof(char *));
	node->may_be_empty = true;
	it = JsonbIteratorInit(fields->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbValue *type;

		if (tok != WJB_ELEM)
			continue;
		node->field_names[node->nchildren] = sv_json_text(sv_json_get(&v, "name"));
		type = sv_json_get(&v, "type");
		if (node->field_names[node->nchildren] == NULL || type == NULL)
			return sv_avro_fail(ac, "a field of record \"%s\" has no name or no type", node->fullname);
		node->children[node->nchildren] = sv_avro_node(ac, type, ns, depth + 1);
		if (node->children[node->nchildren] == NULL)
			return false;
		node->may_be_empty &= node->children[node->nchildren]->may_be_empty;
		node->nchildren++;
	}
	return true;
}

static bool
sv_avro_enum(SvAvroCompile *ac, SvAvroNode *node, JsonbValue *obj)
{
	JsonbValue *symbols = sv_json_get(obj, "symbols");
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (symbols == NULL || symbols->type != jbvBinary || !JsonContainerIsArray(symbols->val.binary.data))
		return sv_avro_fail(ac, "enum \"%s\" has no symbols array", node->fullname);
	node->symbols = palloc0(Max(JsonContainerSize(symbols->val.binary.data), 1) * sizeof(char *));
	it = JsonbIteratorInit(symbols->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (tok == WJB_ELEM)
		{
			if ((node->symbols[node->nsymbols++] = sv_json_text(&v)) == NULL)
				return sv_avro_fail(ac, "a symbol of enum \"%s\" is not a string", node->fullname);
		}
	return true;
}

static SvAvroNode *
sv_avro_union(SvAvroCompile *ac, JsonbValue *arr, const char *ns, int depth)
{
	SvAvroNode *node = sv_avro_new(SV_AVRO_UNION);
	int			n = JsonContainerSize(arr->val.binary.data);
	JsonbIterator *it = JsonbIteratorInit(arr->val.binary.data);
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (n == 0)
		return sv_avro_fail(ac, "a union has no branches"), NULL;
	node->children = palloc0(n * sizeof(SvAvroNode *));
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if ((node->children[node->nchildren] = sv_avro_node(ac, &v, ns, depth + 1)) == NULL)
			return NULL;
		if (node->children[node->nchildren]->kind == SV_AVRO_UNION)
			return sv_avro_fail(ac, "a union directly in a union"), NULL;
		node->nchildren++;
	}
	/* the branch index itself takes a byte */
	node->may_be_empty = false;
	return node;
}

/*
 * The node of a schema's JSON value v: a type name, a union (an array), or
 * a type object.  ns: the enclosing namespace.
 */
static SvAvroNode *
sv_avro_node(SvAvroCompile *ac, JsonbValue *v, const char *ns, int depth)
{
	char	   *type;
	SvAvroNode *node;
	int			prim;

	if (ac->error)
		return NULL;
	if (depth > SV_AVRO_MAX_DEPTH)
		return sv_avro_fail(ac, "the schema is nested deeper than %d levels", SV_AVRO_MAX_DEPTH), NULL;
	if (v->type == jbvString)
	{
		type = sv_json_text(v);
		if ((prim = sv_avro_primitive(type)) >= 0)
			return sv_avro_new((SvAvroKind) prim);
		node = sv_avro_lookup(ac, type, ns);
		if (node == NULL)
			return sv_avro_fail(ac, "unknown type \"%s\"", type), NULL;
		if (!node->complete)
			return sv_avro_fail(ac, "type \"%s\" refers to itself: recursive schemas are not read",
								node->fullname), NULL;
		return node;
	}
	if (v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data))
		return sv_avro_union(ac, v, ns, depth);
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		return sv_avro_fail(ac, "a type is neither a name, an array nor an object"), NULL;

	if (sv_json_get(v, "type") == NULL)
		return sv_avro_fail(ac, "a type object has no \"type\""), NULL;
	type = sv_json_text(sv_json_get(v, "type"));
	if (type == NULL)			/* {"type": {...}} or {"type": [...]} */
		return sv_avro_node(ac, sv_json_get(v, "type"), ns, depth + 1);
	if ((prim = sv_avro_primitive(type)) >= 0)
	{
		node = sv_avro_new((SvAvroKind) prim);
		node->logical = sv_avro_logical(ac, v, node);
		return ac->error ? NULL : node;
	}
	if (strcmp(type, "record") == 0 || strcmp(type, "error") == 0)
	{
		if ((node = sv_avro_named(ac, SV_AVRO_RECORD, v, ns)) == NULL ||
			!sv_avro_record(ac, node, v, depth))
			return NULL;
	}
	else if (strcmp(type, "enum") == 0)
	{
		if ((node = sv_avro_named(ac, SV_AVRO_ENUM, v, ns)) == NULL || !sv_avro_enum(ac, node, v))
			return NULL;
	}
	else if (strcmp(type, "fixed") == 0)
	{
		JsonbValue *size = sv_json_get(v, "size");

		if ((node = sv_avro_named(ac, SV_AVRO_FIXED, v, ns)) == NULL)
			return NULL;
		if (size == NULL || size->type != jbvNumeric)
			return sv_avro_fail(ac, "fixed \"%s\" has no size", node->fullname), NULL;
		node->fixed_size = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(size->val.numeric)));
		if (node->fixed_size < 0 || node->fixed_size > 1024 * 1024)
			return sv_avro_fail(ac, "fixed \"%s\" has a size outside 0 to 1 MB", node->fullname), NULL;
		node->may_be_empty = node->fixed_size == 0;
		node->logical = sv_avro_logical(ac, v, node);
	}
	else if (strcmp(type, "array") == 0 || strcmp(type, "map") == 0)
	{
		bool		array = type[0] == 'a';
		JsonbValue *items = sv_json_get(v, array ? "items" : "values");

		if (items == NULL)
			return sv_avro_fail(ac, "an %s has no %s", type, array ? "items" : "values"), NULL;
		node = sv_avro_new(array ? SV_AVRO_ARRAY : SV_AVRO_MAP);
		node->nchildren = 1;
		node->children = palloc(sizeof(SvAvroNode *));
		if ((node->children[0] = sv_avro_node(ac, items, ns, depth + 1)) == NULL)
			return NULL;
		/* a map's entries have a key, at least one byte; an array's items may have nothing */
		if (array && node->children[0]->may_be_empty)
			return sv_avro_fail(ac, "an array of values written in zero bytes (such as null) "
								"could hold billions of them in a few bytes: not read"), NULL;
		return node;
	}
	else
		return sv_avro_fail(ac, "unknown type \"%s\"", type), NULL;
	node->complete = true;
	return ac->error ? NULL : node;
}

/* Does libavro's schema have the shape of ours?  (It should: the same JSON.) */
static bool
sv_avro_same_shape(SvAvroNode *node, avro_schema_t schema, int depth)
{
	static const avro_type_t types[] = {
		AVRO_NULL, AVRO_BOOLEAN, AVRO_INT32, AVRO_INT64, AVRO_FLOAT, AVRO_DOUBLE, AVRO_BYTES,
		AVRO_STRING, AVRO_RECORD, AVRO_ENUM, AVRO_ARRAY, AVRO_MAP, AVRO_FIXED, AVRO_UNION
	};

	/* a named type used again by name is a link to its definition */
	while (schema != NULL && avro_typeof(schema) == AVRO_LINK && depth++ <= SV_AVRO_MAX_DEPTH)
		schema = avro_schema_link_target(schema);
	if (depth > SV_AVRO_MAX_DEPTH + 1 || schema == NULL || avro_typeof(schema) != types[node->kind])
		return false;
	switch (node->kind)
	{
		case SV_AVRO_RECORD:
			if (avro_schema_record_size(schema) != (size_t) node->nchildren)
				return false;
			for (int i = 0; i < node->nchildren; i++)
			{
				const char *name = avro_schema_record_field_name(schema, i);

				if (name == NULL || strcmp(name, node->field_names[i]) != 0 ||
					!sv_avro_same_shape(node->children[i],
										avro_schema_record_field_get_by_index(schema, i), depth + 1))
					return false;
			}
			return true;
		case SV_AVRO_UNION:
			if (avro_schema_union_size(schema) != (size_t) node->nchildren)
				return false;
			for (int i = 0; i < node->nchildren; i++)
				if (!sv_avro_same_shape(node->children[i], avro_schema_union_branch(schema, i), depth + 1))
					return false;
			return true;
		case SV_AVRO_ARRAY:
			return sv_avro_same_shape(node->children[0], avro_schema_array_items(schema), depth + 1);
		case SV_AVRO_MAP:
			return sv_avro_same_shape(node->children[0], avro_schema_map_values(schema), depth + 1);
		case SV_AVRO_FIXED:
			return avro_schema_fixed_size(schema) == node->fixed_size;
		case SV_AVRO_ENUM:
			return avro_schema_enum_number_of_symbols(schema) == node->nsymbols;
		default:
			return true;
	}
}

/*
 * Compile an Avro schema's JSON text: our tree, then libavro's schema and
 * generic value.  Returns NULL, with *error set, for a schema that cannot
 * be read.  Allocates in CurrentMemoryContext (the registry cache's).
 */
void *
streamview_avro_compile(const char *json, int len, char **error)
{
	SvAvroCompile ac = {0};
	SvAvroSchema *s = palloc0(sizeof(SvAvroSchema));
	Jsonb	   *jb;
	JsonbValue	root;

	sv_avro_init();
	*error = NULL;
	jb = streamview_parse_jsonb(json, len, &ac.error);
	if (jb == NULL)
		return (*error = psprintf("the schema is not JSON: %s", ac.error)), NULL;
	if (JB_ROOT_IS_SCALAR(jb))
	{
		JsonbValue *v = getIthJsonbValueFromContainer(&jb->root, 0);

		root = *v;
	}
	else
	{
		root.type = jbvBinary;
		root.val.binary.data = &jb->root;
		root.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
	s->root = sv_avro_node(&ac, &root, "", 0);
	if (s->root == NULL)
		return (*error = ac.error ? ac.error : pstrdup("the schema cannot be read")), NULL;
	if (s->root->kind != SV_AVRO_RECORD)
		return (*error = pstrdup("the schema is not a record: its fields cannot be columns")), NULL;

	sv_avro_limit = sv_avro_held + SV_AVRO_MAX_MESSAGE_MEMORY;
	if (avro_schema_from_json_length(json, len, &s->schema) != 0)
	{
		sv_avro_limit = -1;
		*error = psprintf("libavro cannot read the schema: %s", avro_strerror());
		return NULL;
	}
	if (!sv_avro_same_shape(s->root, s->schema, 0))
	{
		sv_avro_limit = -1;
		*error = pstrdup("libavro reads the schema otherwise than its JSON says");
		streamview_avro_free(s);
		return NULL;
	}
	if ((s->iface = avro_generic_class_from_schema(s->schema)) == NULL ||
		avro_generic_value_new(s->iface, &s->value) != 0 ||
		(s->reader = avro_reader_memory("", 0)) == NULL)
	{
		sv_avro_limit = -1;
		*error = psprintf("libavro cannot read the schema%s%s",
						  s->iface ? ": " : "", s->iface ? avro_strerror() : "");
		streamview_avro_free(s);
		return NULL;
	}
	sv_avro_limit = -1;
	s->held = sv_avro_held;
	return s;
}

/* Free libavro's part of a compiled schema; ours goes with its memory context. */
void
streamview_avro_free(void *schema)
{
	SvAvroSchema *s = schema;

	if (s->reader)
		avro_reader_free(s->reader);
	if (s->iface)
	{
		if (s->value.iface)
			avro_value_decref(&s->value);
		avro_value_iface_decref(s->iface);
	}
	if (s->schema)
		avro_schema_decref(s->schema);
	s->reader = NULL;
	s->iface = NULL;
	s->schema = NULL;
}

/* ---------- decoding ---------- */

/* An Avro decimal (big-endian two's complement, unscaled) as numeric text. */
static char *
sv_avro_decimal(const SvColumn *col, const uint8 *bytes, size_t len, int scale, SvEvent *ev)
{
	uint128		mag = 0;
	bool		negative = len > 0 && (bytes[0] & 0x80);
	char		digits[48];
	int			n = 0;
	StringInfoData buf;

	if (len > SV_AVRO_MAX_DECIMAL_BYTES)
	{
		streamview_reject(ev, SV_REASON_INVALID_VALUE,
						  "column \"%s\": a decimal of %zu bytes is wider than the %d bytes read",
						  col->name, len, SV_AVRO_MAX_DECIMAL_BYTES);
		return NULL;
	}
	for (size_t i = 0; i < len; i++)
		mag = (mag << 8) | (negative ? (uint8) ~bytes[i] : bytes[i]);
	if (negative)
		mag += 1;				/* two's complement: -(~x + 1) */
	do
	{
		digits[n++] = '0' + (int) (mag % 10);
		mag /= 10;
	} while (mag != 0);
	initStringInfo(&buf);
	if (negative)
		appendStringInfoChar(&buf, '-');
	for (int i = Max(n, scale + 1) - 1; i >= 0; i--)
	{
		appendStringInfoChar(&buf, i < n ? digits[i] : '0');
		if (i == scale && scale > 0)
			appendStringInfoChar(&buf, '.');
	}
	return buf.data;
}

/* Epoch time in unit microseconds (1000 for millis) as PostgreSQL's, or false. */
static bool
sv_avro_epoch(int64 t, int64 unit, int64 *result)
{
	int64		us;

	if (pg_mul_s64_overflow(t, unit, &us) ||
		pg_sub_s64_overflow(us, (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY, &us) ||
		!IS_VALID_TIMESTAMP(us))
		return false;
	*result = us;
	return true;
}

/* Column c's value: node's, in value v (not a union). */
static bool
sv_avro_leaf(const SvSource *src, int c, SvAvroNode *node, avro_value_t *v, SvFields *f, SvEvent *ev)
{
	const SvColumn *col = &src->columns[c];
	char		buf[64];
	int32		i32 = 0;
	int64		i64 = 0;
	int64		ts;
	const void *bytes = NULL;
	size_t		len = 0;
	int			rc = 0;

	f->found[c] = true;
	switch (node->kind)
	{
		case SV_AVRO_NULL:
			f->types[c] = JSON_TOKEN_NULL;
			return true;
		case SV_AVRO_BOOLEAN:
			rc = avro_value_get_boolean(v, &i32);
			f->tokens[c] = i32 ? "true" : "false";
			f->types[c] = i32 ? JSON_TOKEN_TRUE : JSON_TOKEN_FALSE;
			break;
		case SV_AVRO_INT:
			rc = avro_value_get_int(v, &i32);
			if (node->logical == SV_LOGICAL_DATE)
			{
				DateADT		d = (DateADT) i32 + (UNIX_EPOCH_JDATE - POSTGRES_EPOCH_JDATE);

				if (i32 < -(2147483647 - 3000000) || !IS_VALID_DATE(d))
				{
					streamview_reject(ev, SV_REASON_INVALID_VALUE,
									  "column \"%s\": date %d days from 1970-01-01 is out of range",
									  col->name, i32);
					return false;
				}
				f->direct_type[c] = DATEOID;
				f->direct[c] = DateADTGetDatum(d);
				break;
			}
			snprintf(buf, sizeof(buf), "%d", i32);
			f->tokens[c] = pstrdup(buf);
			f->types[c] = JSON_TOKEN_NUMBER;
			break;
		case SV_AVRO_LONG:
			rc = avro_value_get_long(v, &i64);
			if (node->logical != SV_LOGICAL_NONE)
			{
				bool		millis = node->logical == SV_LOGICAL_TIMESTAMP_MILLIS ||
					node->logical == SV_LOGICAL_LOCAL_TIMESTAMP_MILLIS;

				if (!sv_avro_epoch(i64, millis ? 1000 : 1, &ts))
				{
					streamview_reject(ev, SV_REASON_INVALID_VALUE,
									  "column \"%s\": timestamp " INT64_FORMAT " %s from the epoch is out of range",
									  col->name, i64, millis ? "ms" : "µs");
					return false;
				}
				f->direct_type[c] = node->logical == SV_LOGICAL_TIMESTAMP_MILLIS ||
					node->logical == SV_LOGICAL_TIMESTAMP_MICROS ? TIMESTAMPTZOID : TIMESTAMPOID;
				f->direct[c] = Int64GetDatum(ts);
				break;
			}
			snprintf(buf, sizeof(buf), INT64_FORMAT, i64);
			f->tokens[c] = pstrdup(buf);
			f->types[c] = JSON_TOKEN_NUMBER;
			break;
		case SV_AVRO_FLOAT:
			{
				float		x = 0;

				rc = avro_value_get_float(v, &x);
				float_to_shortest_decimal_buf(x, buf);
				f->tokens[c] = pstrdup(buf);
				f->types[c] = JSON_TOKEN_NUMBER;
				break;
			}
		case SV_AVRO_DOUBLE:
			{
				double		x = 0;

				rc = avro_value_get_double(v, &x);
				double_to_shortest_decimal_buf(x, buf);
				f->tokens[c] = pstrdup(buf);
				f->types[c] = JSON_TOKEN_NUMBER;
				break;
			}
		case SV_AVRO_STRING:
			rc = avro_value_get_string(v, (const char **) &bytes, &len);
			if (rc == 0 && (f->tokens[c] = streamview_field_text(col, bytes, len > 0 ? len - 1 : 0, ev)) == NULL)
				return false;
			f->types[c] = JSON_TOKEN_STRING;
			break;
		case SV_AVRO_BYTES:
		case SV_AVRO_FIXED:
			rc = node->kind == SV_AVRO_BYTES ? avro_value_get_bytes(v, &bytes, &len)
				: avro_value_get_fixed(v, &bytes, &len);
			if (rc != 0)
				break;
			if (node->logical == SV_LOGICAL_DECIMAL)
			{
				if ((f->tokens[c] = sv_avro_decimal(col, bytes, len, node->scale, ev)) == NULL)
					return false;
				f->types[c] = JSON_TOKEN_NUMBER;
			}
			else
			{
				f->tokens[c] = streamview_field_hex(bytes, len);
				f->types[c] = JSON_TOKEN_STRING;
			}
			break;
		case SV_AVRO_ENUM:
			rc = avro_value_get_enum(v, &i32);
			if (rc == 0 && (i32 < 0 || i32 >= node->nsymbols))
			{
				streamview_reject(ev, SV_REASON_INVALID_MESSAGE,
								  "column \"%s\": enum index %d is not one of %s's %d symbols",
								  col->name, i32, node->fullname, node->nsymbols);
				return false;
			}
			f->tokens[c] = node->symbols[i32];
			f->types[c] = JSON_TOKEN_STRING;
			break;
		default:				/* record, array, map */
			f->not_scalar[c] = true;
			break;
	}
	if (rc != 0)
	{
		streamview_reject(ev, SV_REASON_INVALID_MESSAGE, "column \"%s\": %s", col->name, avro_strerror());
		return false;
	}
	return true;
}

/* Follow a union to the branch the message holds. */
static bool
sv_avro_branch(SvAvroNode **node, avro_value_t *v, SvEvent *ev)
{
	while ((*node)->kind == SV_AVRO_UNION)
	{
		int			disc;
		avro_value_t branch;

		if (avro_value_get_discriminant(v, &disc) != 0 || disc < 0 || disc >= (*node)->nchildren ||
			avro_value_get_current_branch(v, &branch) != 0)
		{
			streamview_reject(ev, SV_REASON_INVALID_MESSAGE, "a union holds no valid branch: %s",
							  avro_strerror());
			return false;
		}
		*node = (*node)->children[disc];
		*v = branch;
	}
	return true;
}

/* Find column c along its path; a field the schema lacks is missing. */
static bool
sv_avro_column(const SvSource *src, int c, SvAvroSchema *s, SvFields *f, SvEvent *ev)
{
	const SvColumn *col = &src->columns[c];
	SvAvroNode *node = s->root;
	avro_value_t v = s->value;

	for (int i = 0; i < col->npath; i++)
	{
		int			field = -1;
		avro_value_t child;

		if (!sv_avro_branch(&node, &v, ev))
			return false;
		if (node->kind == SV_AVRO_NULL)
		{
			f->found[c] = true;
			f->types[c] = JSON_TOKEN_NULL;	/* a null record: its fields are null */
			return true;
		}
		if (node->kind != SV_AVRO_RECORD)
			return true;		/* no such field: missing */
		for (int k = 0; k < node->nchildren && field < 0; k++)
			if (strcmp(node->field_names[k], col->path[i]) == 0)
				field = k;
		if (field < 0)
			return true;
		if (avro_value_get_by_index(&v, field, &child, NULL) != 0)
		{
			streamview_reject(ev, SV_REASON_INVALID_MESSAGE, "column \"%s\": %s", col->name,
							  avro_strerror());
			return false;
		}
		node = node->children[field];
		v = child;
	}
	if (!sv_avro_branch(&node, &v, ev))
		return false;
	return sv_avro_leaf(src, c, node, &v, f, ev);
}

static void
sv_avro_trim(SvAvroSchema *s)
{
	if (s->value.iface != NULL && sv_avro_held > s->held + SV_AVRO_KEEP_MEMORY)
	{
		avro_value_decref(&s->value);
		s->value.iface = NULL;
	}
}

/*
 * Decode one message's body (after the wire format's header) with its
 * writer's schema, and find the source's columns in it.  Any problem is a
 * dead letter, with ev->reason set.
 */
void
streamview_avro_decode(const SvSource *src, void *schema, const char *body, int len,
					   SvFields *f, SvEvent *ev)
{
	SvAvroSchema *s = schema;
	int			rc;
	char		extra;

	sv_avro_limit = sv_avro_held + SV_AVRO_MAX_MESSAGE_MEMORY;
	if (s->value.iface == NULL && avro_generic_value_new(s->iface, &s->value) != 0)
	{
		sv_avro_limit = -1;
		s->value.iface = NULL;
		streamview_reject(ev, SV_REASON_INVALID_MESSAGE, "libavro could not make a value: %s",
						  avro_strerror());
		return;
	}
	avro_reader_memory_set_source(s->reader, body, len);
	/* libavro adds to its last error message: start each message afresh */
	avro_set_error("%s", "");
	rc = avro_value_read(s->reader, &s->value);
	sv_avro_limit = -1;

	/*
	 * libavro keeps the memory of arrays and strings for the next message;
	 * not more than SV_AVRO_KEEP_MEMORY of it (the columns' values are
	 * copied out below, before the value is dropped).
	 */
	if (rc != 0)
	{
		streamview_reject(ev, SV_REASON_INVALID_MESSAGE,
						  "the Avro body does not match its schema: %s", avro_strerror());
		sv_avro_trim(s);
		return;
	}
	if (avro_read(s->reader, &extra, 1) == 0)
	{
		streamview_reject(ev, SV_REASON_INVALID_MESSAGE,
						  "the Avro body has bytes left over after its schema's record");
		sv_avro_trim(s);
		return;
	}
	for (int c = 0; c < src->ncolumns; c++)
		if (!sv_avro_column(src, c, s, f, ev))
			break;
	sv_avro_trim(s);
}
