/*
 * sv_fuzz_merge - libFuzzer's -merge=1, for targets that live in a backend.
 *
 * A merge runs inputs in child processes (so that a crashing input cannot
 * stop it), and starts them as argv[0] with extra flags.  Our targets run
 * inside a single-user PostgreSQL backend, and only one of those may use a
 * data directory at a time, so the parent cannot be a backend itself.  This
 * program is that parent: it runs no input, and starts the script named in
 * SV_FUZZ_CHILD (test/fuzz/backend.sh), which runs the children in
 * backends.  Its own callback is never called.
 *
 * usage: SV_FUZZ_CHILD=backend.sh sv_fuzz_merge -merge=1 [flags] NEW_DIR DIR...
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern int	LLVMFuzzerRunDriver(int *argc, char ***argv,
								int (*callback) (const uint8_t *data, size_t size));

static int
never_called(const uint8_t *data, size_t size)
{
	fprintf(stderr, "sv_fuzz_merge: an input was run in the parent\n");
	abort();
}

int
main(int argc, char **argv)
{
	char	   *child = getenv("SV_FUZZ_CHILD");

	if (child == NULL)
	{
		fprintf(stderr, "sv_fuzz_merge: SV_FUZZ_CHILD is not set\n");
		return 2;
	}
	argv[0] = child;
	return LLVMFuzzerRunDriver(&argc, &argv, never_called);
}
