/*-------------------------------------------------------------------------
 *
 * protobuf_glue.h
 *	  The C interface of src/protobuf_glue.cpp (libprotobuf, in C++), used by
 *	  src/format_protobuf.c only.  Plain C types: no PostgreSQL, no C++.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PROTOBUF_GLUE_H
#define PROTOBUF_GLUE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C"
{
#endif

typedef struct SvPbSchema SvPbSchema;

/* What a column's path found in a message. */
enum
{
	SV_PB_MISSING = 0,			/* no such field */
	SV_PB_NULL,					/* a field with presence, not set; or under an absent message */
	SV_PB_INT,					/* number */
	SV_PB_UINT,					/* unumber */
	SV_PB_DOUBLE,				/* real */
	SV_PB_FLOAT,				/* real, a float's value */
	SV_PB_BOOL,					/* number: 0 or 1 */
	SV_PB_STRING,				/* text, len: a string or an enum's name */
	SV_PB_BYTES,				/* text, len */
	SV_PB_TIMESTAMP,			/* google.protobuf.Timestamp: number seconds, nanos */
	SV_PB_NOT_SCALAR			/* a message, a repeated field or a map */
};

typedef struct SvPbValue
{
	int			kind;
	int64_t		number;
	uint64_t	unumber;
	double		real;
	int32_t		nanos;
	char	   *text;			/* malloc'd, NUL-terminated after len bytes */
	size_t		len;
} SvPbValue;

extern SvPbSchema *sv_pb_compile(const char *text, int len, char *errbuf, int errlen);
extern void sv_pb_free_schema(SvPbSchema *schema);
extern SvPbValue *sv_pb_decode(SvPbSchema *schema, const uint8_t *body, int len, int ncolumns,
							   const int *npath, char **const *paths, char *errbuf, int errlen);
extern void sv_pb_free_result(SvPbValue *values, int ncolumns);

#ifdef __cplusplus
}
#endif

#endif							/* PROTOBUF_GLUE_H */
