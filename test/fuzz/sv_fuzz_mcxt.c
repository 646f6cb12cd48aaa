/*-------------------------------------------------------------------------
 *
 * sv_fuzz_mcxt.c
 *	  A memory context that AddressSanitizer can see into: one malloc per
 *	  palloc.
 *
 * PostgreSQL's own contexts carve many chunks out of one malloc'd block, so
 * a read past the end of a palloc'd buffer usually lands in a neighbour
 * chunk of the same block, which ASan considers valid memory.  Here every
 * chunk is its own malloc of exactly the size asked for, so ASan reports the
 * first byte read or written past it, and, since repalloc always moves and
 * pfree really frees, any use after either.  Everything the decoder
 * allocates (its state, the JSON lexer's strings, the type input functions'
 * results) goes through the context the fuzz target makes current.
 *
 * PostgreSQL 15 finds a chunk's context in the word just before the chunk
 * (GetMemoryChunkContext), so that is where the header keeps it.  The
 * context is slow and wasteful, which is fine for fuzzing and nothing else.
 *
 *-------------------------------------------------------------------------
 */
#include "sv_fuzz.h"

#include "lib/ilist.h"
#include "nodes/memnodes.h"
#include "utils/memutils.h"

typedef struct SvFuzzChunk
{
	dlist_node	node;			/* in the context's list of live chunks */
	Size		size;			/* exactly what was asked for */
	MemoryContext context;		/* last: GetMemoryChunkContext reads it */
} SvFuzzChunk;

StaticAssertDecl(sizeof(SvFuzzChunk) == MAXALIGN(sizeof(SvFuzzChunk)),
				 "a chunk's header keeps the chunk MAXALIGNed");

typedef struct SvFuzzContext
{
	MemoryContextData header;
	dlist_head	chunks;
} SvFuzzContext;

#define SV_CHUNK(pointer) (((SvFuzzChunk *) (pointer)) - 1)

static void *
sv_mcxt_alloc(MemoryContext context, Size size)
{
	SvFuzzContext *set = (SvFuzzContext *) context;
	SvFuzzChunk *chunk = malloc(sizeof(SvFuzzChunk) + size);

	if (chunk == NULL)
		return NULL;			/* palloc reports out of memory */
	chunk->size = size;
	chunk->context = context;
	dlist_push_head(&set->chunks, &chunk->node);
	context->mem_allocated += size;
	return chunk + 1;
}

static void
sv_mcxt_free(MemoryContext context, void *pointer)
{
	SvFuzzChunk *chunk = SV_CHUNK(pointer);

	dlist_delete(&chunk->node);
	context->mem_allocated -= chunk->size;
	free(chunk);
}

/* Always moves, so that a pointer kept across repalloc is caught. */
static void *
sv_mcxt_realloc(MemoryContext context, void *pointer, Size size)
{
	void	   *moved = sv_mcxt_alloc(context, size);

	if (moved == NULL)
		return NULL;
	memcpy(moved, pointer, Min(size, SV_CHUNK(pointer)->size));
	sv_mcxt_free(context, pointer);
	return moved;
}

static void
sv_mcxt_reset(MemoryContext context)
{
	SvFuzzContext *set = (SvFuzzContext *) context;
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &set->chunks)
		sv_mcxt_free(context, dlist_container(SvFuzzChunk, node, iter.cur) + 1);
}

static void
sv_mcxt_delete(MemoryContext context)
{
	sv_mcxt_reset(context);
	free(context);
}

static Size
sv_mcxt_chunk_space(MemoryContext context, void *pointer)
{
	return sizeof(SvFuzzChunk) + SV_CHUNK(pointer)->size;
}

static bool
sv_mcxt_is_empty(MemoryContext context)
{
	return dlist_is_empty(&((SvFuzzContext *) context)->chunks);
}

static void
sv_mcxt_stats(MemoryContext context, MemoryStatsPrintFunc printfunc, void *passthru,
			  MemoryContextCounters *totals, bool print_to_stderr)
{
	if (printfunc)
	{
		char		line[64];

		snprintf(line, sizeof(line), "%zu bytes in malloc'd chunks", context->mem_allocated);
		printfunc(context, passthru, line, print_to_stderr);
	}
	if (totals)
		totals->totalspace += context->mem_allocated;
}

#ifdef MEMORY_CONTEXT_CHECKING
static void
sv_mcxt_check(MemoryContext context)
{
	/* ASan checks every access; nothing to add. */
}
#endif

static const MemoryContextMethods sv_mcxt_methods = {
	sv_mcxt_alloc,
	sv_mcxt_free,
	sv_mcxt_realloc,
	sv_mcxt_reset,
	sv_mcxt_delete,
	sv_mcxt_chunk_space,
	sv_mcxt_is_empty,
	sv_mcxt_stats
#ifdef MEMORY_CONTEXT_CHECKING
	,sv_mcxt_check
#endif
};

/*
 * A new context under parent.  It says it is an AllocSet: the tag only
 * feeds assertions (MemoryContextIsValid), and every call goes through the
 * methods above.
 */
MemoryContext
sv_fuzz_context_create(MemoryContext parent, const char *name)
{
	SvFuzzContext *set = malloc(sizeof(SvFuzzContext));

	if (set == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	dlist_init(&set->chunks);
	MemoryContextCreate((MemoryContext) set, T_AllocSetContext, &sv_mcxt_methods,
						parent, name);
	return (MemoryContext) set;
}
