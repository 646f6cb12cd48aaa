/*
 * sv_fuzz_preload.so - lets the ASan runtime start inside postgres.
 *
 * Preloaded (LD_PRELOAD) after the ASan runtime.  The runtime starts on the
 * first malloc, which in postgres comes from libgpg-error's constructor
 * while it holds glibc's gettext lock (bindtextdomain).  Starting, the
 * runtime looks up swift_demangle and clears the lookup's error with
 * dlerror(), which translates the message and so takes the same lock: the
 * lock's state is corrupted and postgres hangs in its own bindtextdomain
 * (llvm/llvm-project#49223).  When the symbol exists, the lookup does not
 * fail and dlerror() takes no lock.  Demangling nothing is what the runtime
 * does without it.
 */
#include <stddef.h>
#include <stdint.h>

extern char *swift_demangle(const char *mangled, size_t length, char *buffer,
							size_t *buffer_size, uint32_t flags);

char *
swift_demangle(const char *mangled, size_t length, char *buffer, size_t *buffer_size,
			   uint32_t flags)
{
	return NULL;
}
