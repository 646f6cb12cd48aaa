/*-------------------------------------------------------------------------
 *
 * sv_fuzz.h
 *	  Shared by the fuzz targets of pg_streamview's message decoders.
 *
 * The targets are not part of the extension: test/fuzz/Makefile builds them,
 * with the decoder's own source file (src/parse.c, ...), into sv_fuzz.so, a
 * module that run.sh loads into a real single-user PostgreSQL backend.  One
 * SQL function per decoder hands libFuzzer its arguments; libFuzzer then
 * calls the target's callback once per input, in that backend.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SV_FUZZ_H
#define SV_FUZZ_H

#include "pg_streamview.h"

/* libFuzzer's entry point when it is linked without its main(). */
extern int	LLVMFuzzerRunDriver(int *argc, char ***argv,
								int (*callback) (const uint8_t *data, size_t size));

/* ------------------------------------------------------ in sv_fuzz_mcxt.c */
extern MemoryContext sv_fuzz_context_create(MemoryContext parent, const char *name);

/* ----------------------------------------------------------- in sv_fuzz.c */
extern char *sv_fuzz_copy_bytes(const uint8_t *data, size_t size);
extern int	sv_fuzz_one(void (*decode) (const uint8_t *data, size_t size),
						const uint8_t *data, size_t size);
extern void sv_fuzz_fail(const char *fmt,...) pg_attribute_printf(1, 2) pg_attribute_noreturn();
extern void sv_fuzz_run_driver(FunctionCallInfo fcinfo, void (*init) (void),
							   int (*callback) (const uint8_t *data, size_t size));

/* --------------------------------------------------- in sv_fuzz_source.c */

/* A column as create_source declares it; NULL path: the column's name. */
typedef struct SvFuzzColumn
{
	const char *name;
	Oid			type;
	const char *path;
	bool		required;
	const char *default_value;
} SvFuzzColumn;

extern SvSource *sv_fuzz_make_source(const char *name, const SvFuzzColumn *columns, int ncolumns,
									 const char *event_time, const char *event_id,
									 int64 max_future_us);
extern TimestampTz sv_fuzz_kafka_time(int64 ms);

/* ----------------------------------------------------- in sv_fuzz_check.c */
extern void sv_fuzz_check_event(const SvSource *src, const SvEvent *ev,
								const uint8_t *data, size_t size);

#endif							/* SV_FUZZ_H */
