/*-------------------------------------------------------------------------
 *
 * seen.c
 *	  The event ids a version remembers, in the worker's memory: a hash set
 *	  of their SHA-256, each with the partition and event time of the event
 *	  it was applied with.  Pure state, no SPI: ledger.c loads it from
 *	  streamview.seen_ids when the worker loads the version and stores each
 *	  batch's new ids; classify.c asks and adds.
 *
 * The set is bounded by the lateness horizon.  An id counts as remembered
 * while an event carrying it could still be applied in the partition it was
 * applied in (its event time is not below that partition's lateness floor,
 * see streamview_lateness_floor); the floor only moves forward, so an id
 * past it is forgotten for good and can be evicted.  Lookups check the
 * floor themselves, so when eviction runs never changes an outcome: it only
 * bounds memory.  The set therefore holds the ids applied within the
 * horizon, plus those applied since the last sweep.
 *
 * Memory: an entry is 48 bytes (the 32-byte hash, the event time, the
 * partition, simplehash's status), in an array kept between 45% and 90%
 * full: 53 to 107 bytes per id, about 80 MB per million ids within the
 * horizon (max_out_of_orderness + allowed_lateness of event time, times
 * the source's id rate).  The array never shrinks by itself; a sweep that
 * leaves it under an eighth full builds a smaller one.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_streamview.h"

#include "common/pg_prng.h"
#include "utils/memutils.h"

/* simplehash copies keys by assignment: the hash as a struct */
typedef struct SvIdHash
{
	uint8		b[SV_ID_HASH_LEN];
} SvIdHash;

typedef struct SvSeenEntry
{
	SvIdHash	id;
	TimestampTz event_time;
	int32		partition;
	char		status;			/* simplehash's */
} SvSeenEntry;

/*
 * The slot of a hash in the array: from the id's SHA-256 (already uniform),
 * mixed with a seed of the process's own, so that producers who choose
 * their ids cannot aim many at one slot (simplehash grows on long probe
 * runs, and would grow without bound).
 */
static uint64 sv_seen_seed;

static inline uint32
sv_seen_slot(const uint8 *id_hash)
{
	uint64		h;

	memcpy(&h, id_hash, sizeof(h));
	h ^= sv_seen_seed;
	/* the finalizer of splitmix64: every bit of h moves the slot */
	h = (h ^ (h >> 30)) * UINT64CONST(0xbf58476d1ce4e5b9);
	h = (h ^ (h >> 27)) * UINT64CONST(0x94d049bb133111eb);
	return (uint32) (h ^ (h >> 31));
}

#define SH_PREFIX		sv_seen
#define SH_ELEMENT_TYPE	SvSeenEntry
#define SH_KEY_TYPE		SvIdHash
#define SH_KEY			id
#define SH_HASH_KEY(tb, key)	sv_seen_slot((key).b)
#define SH_EQUAL(tb, x, y)	(memcmp((x).b, (y).b, SV_ID_HASH_LEN) == 0)
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

struct SvSeenSet
{
	MemoryContext cxt;			/* holds the array alone: its size is the set's */
	sv_seen_hash *hash;
	uint32		next_sweep;		/* sweep when it has this many members */
};

/* An empty set, in a memory context of its own under parent, for about n ids. */
SvSeenSet *
streamview_seen_create(MemoryContext parent, uint32 n)
{
	SvSeenSet  *set = MemoryContextAllocZero(parent, sizeof(SvSeenSet));

	if (sv_seen_seed == 0)
		sv_seen_seed = pg_prng_uint64(&pg_global_prng_state) | 1;
	set->cxt = AllocSetContextCreate(parent, "pg_streamview seen ids", ALLOCSET_DEFAULT_SIZES);
	set->hash = sv_seen_create(set->cxt, Max(n, 256), NULL);
	return set;
}

/* Is the id in the set?  Then *partition and *event_time say where and when it was applied. */
bool
streamview_seen_find(SvSeenSet *set, const uint8 *id_hash, int32 *partition, TimestampTz *event_time)
{
	SvSeenEntry *e = sv_seen_lookup(set->hash, *(const SvIdHash *) id_hash);

	if (e == NULL)
		return false;
	*partition = e->partition;
	*event_time = e->event_time;
	return true;
}

/* Remember an id, applied in partition at event_time (replacing what was known of it). */
void
streamview_seen_add(SvSeenSet *set, const uint8 *id_hash, int32 partition, TimestampTz event_time)
{
	bool		found;
	SvSeenEntry *e = sv_seen_insert(set->hash, *(const SvIdHash *) id_hash, &found);

	e->partition = partition;
	e->event_time = event_time;
}

/* Forget an id. */
void
streamview_seen_remove(SvSeenSet *set, const uint8 *id_hash)
{
	(void) sv_seen_delete(set->hash, *(const SvIdHash *) id_hash);
}

/*
 * Evict the ids past their partition's lateness floor.  A sweep reads the
 * whole set, so it only runs once the set has grown by a quarter since the
 * last one: a constant cost per id added.
 */
void
streamview_seen_evict(const SvSource *src, SvVersion *v)
{
	SvSeenSet  *set = v->seen;
	TimestampTz *floors;
	bool	   *has_floor;
	sv_seen_iterator it;
	SvSeenEntry *e;
	uint32		before;

	if (set == NULL || set->hash->members == 0 || set->hash->members < set->next_sweep)
		return;
	floors = palloc(v->nparts * sizeof(TimestampTz));
	has_floor = palloc(v->nparts * sizeof(bool));
	for (int p = 0; p < v->nparts; p++)
		has_floor[p] = streamview_lateness_floor(src, v, p, &floors[p]);

	/* simplehash allows deleting the current entry while iterating */
	before = set->hash->members;
	sv_seen_start_iterate(set->hash, &it);
	while ((e = sv_seen_iterate(set->hash, &it)) != NULL)
	{
		int32		p = e->partition;

		if (p < v->nparts && has_floor[p] && e->event_time < floors[p])
			sv_seen_delete_item(set->hash, e);
	}
	set->next_sweep = set->hash->members + set->hash->members / 4 + 1024;

	/*
	 * A burst made the array large: keep it no larger than needed.  Not
	 * when it was fuller before this sweep: the ids that come between two
	 * sweeps need the room again (it would grow back at every batch).
	 */
	if (set->hash->size > 1024 && before < set->hash->size / 8)
	{
		MemoryContext cxt = AllocSetContextCreate(GetMemoryChunkContext(set), "pg_streamview seen ids",
												  ALLOCSET_DEFAULT_SIZES);
		sv_seen_hash *smaller = sv_seen_create(cxt, Max(set->hash->members * 2, 256), NULL);

		sv_seen_start_iterate(set->hash, &it);
		while ((e = sv_seen_iterate(set->hash, &it)) != NULL)
		{
			bool		found;
			SvSeenEntry *n = sv_seen_insert(smaller, e->id, &found);

			n->partition = e->partition;
			n->event_time = e->event_time;
		}
		MemoryContextDelete(set->cxt);
		set->cxt = cxt;
		set->hash = smaller;
	}
	pfree(floors);
	pfree(has_floor);
}
