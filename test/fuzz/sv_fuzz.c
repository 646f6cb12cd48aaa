/*-------------------------------------------------------------------------
 *
 * sv_fuzz.c
 *	  What every fuzz target shares: handing libFuzzer the SQL function's
 *	  arguments, and running one input.
 *
 * libFuzzer runs inside the SQL function call, in its transaction, until it
 * is done; then it exits the process itself (so the function never
 * returns).  Each input is decoded with a fresh memory context current
 * (sv_fuzz_mcxt.c: one malloc per palloc, so ASan sees every overrun),
 * which is dropped afterwards, as the worker drops its batch's memory.
 *
 * A decoder turns bad input into a dead-letter reason, never into an ERROR:
 * an ERROR that escapes one would stop the source worker, again and again
 * on the same message.  So an ERROR escaping the callback is a crash, and
 * so is a broken promise of the decoder's result (sv_fuzz_check.c): both
 * abort(), and libFuzzer saves the input as crash-<sha1>.
 *
 *-------------------------------------------------------------------------
 */
#include "sv_fuzz.h"

#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

PG_MODULE_MAGIC;

static MemoryContext sv_fuzz_input_context;

/*
 * The input as kafka.c hands a payload over: a palloc'd copy with a NUL
 * after it (not part of the payload).
 */
char *
sv_fuzz_copy_bytes(const uint8_t *data, size_t size)
{
	char	   *copy = palloc(size + 1);

	memcpy(copy, data, size);
	copy[size] = '\0';
	return copy;
}

/* A broken promise: say which, and crash so that libFuzzer keeps the input. */
void
sv_fuzz_fail(const char *fmt,...)
{
	va_list		args;

	fprintf(stderr, "sv_fuzz: ");
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fprintf(stderr, "\n");
	abort();
}

/* Decode one input in a fresh memory context; an escaping ERROR is a crash. */
int
sv_fuzz_one(void (*decode) (const uint8_t *data, size_t size), const uint8_t *data, size_t size)
{
	MemoryContext old = MemoryContextSwitchTo(sv_fuzz_input_context);

	PG_TRY();
	{
		decode(data, size);
	}
	PG_CATCH();
	{
		ErrorData  *err;

		MemoryContextSwitchTo(sv_fuzz_input_context);
		err = CopyErrorData();
		sv_fuzz_fail("an ERROR escaped the decoder: %s (SQLSTATE %s)%s%s",
					 err->message, unpack_sql_state(err->sqlerrcode),
					 err->detail ? "; detail: " : "", err->detail ? err->detail : "");
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	MemoryContextReset(sv_fuzz_input_context);
	return 0;
}

/*
 * libFuzzer's command line from the SQL function's text[] argument (its
 * first element is argv[0]); the settings a worker pins (worker.c), which
 * type input depends on; the target's init (its sources); then fuzz.  Does
 * not return: libFuzzer exits.
 */
void
sv_fuzz_run_driver(FunctionCallInfo fcinfo, void (*init) (void),
				   int (*callback) (const uint8_t *data, size_t size))
{
	ArrayType  *array = PG_GETARG_ARRAYTYPE_P(0);
	Datum	   *elems;
	bool	   *nulls;
	int			argc;
	char	  **argv;

	if (sv_fuzz_input_context == NULL)
		sv_fuzz_input_context = sv_fuzz_context_create(TopMemoryContext, "sv_fuzz input");
	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &argc);
	if (argc < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the arguments must start with a program name (argv[0])")));
	argv = MemoryContextAlloc(TopMemoryContext, (argc + 1) * sizeof(char *));
	for (int i = 0; i < argc; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("the arguments must not be null")));
		argv[i] = MemoryContextStrdup(TopMemoryContext, TextDatumGetCString(elems[i]));
	}
	argv[argc] = NULL;
	streamview_pin_worker_settings();
	init();
	LLVMFuzzerRunDriver(&argc, &argv, callback);
}
