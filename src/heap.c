/* SPDX-License-Identifier: MIT */
/*
 * Heap: any size from 1 byte to 1 MiB through size classes, each an
 * ordinary pool; larger blocks mapped from the OS and tracked.
 *
 *   iop_heap_alloc(size)                    iop_heap_free(p)
 *        |                                       |
 *   class = iop__heap_class_of(size)     pool = iop__map[p >> 21]
 *   pool = iop__heap_class[class] --+     hot.heap set? -- no --> large[p >> 21]
 *        |  (created lazily)       |          |                  |
 *   iop__alloc_inline(pool)        +----> iop__free_inline()   munmap, or abort:
 *   (the thread's magazine)              (owner and interior    "not from the heap",
 *                                          checks, magazine)     "interior pointer"
 *
 * Class spacing (iopool.h has the table): 16-byte steps up to 64 B, then
 * eight classes per power of two, so the step in (2^k, 2^(k+1)] is 2^k / 8
 * and a request wastes less than an eighth of itself. Blocks of a class of
 * size c sit at multiples of c's lowest set bit (chunks are aligned to at
 * least 2 MiB and the stride is c), which is what the aligned allocation
 * looks for.
 *
 * Large blocks are on the address map as every pool's chunks are
 * (backing.c): a large block is a chunk record with no pool, mapped by
 * _iop_backing_map() (the caller's memory domain, fault injection) and
 * named by the map entries of the granules it covers. When profiling is
 * on, a class chunk's record holds the array of its objects' site ids
 * (chunk->side, unmapped with the chunk), which iop__map_sites names per
 * granule for the inline code: an IOP_PROFILE allocation writes its site's
 * id there and counts in the thread's table (profile.c), and every heap
 * free reads the id back, clears it and counts, inline (inline.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "os/os.h"

_Static_assert(IOP_HEAP_CLASS_MAX == IOP_OBJ_SIZE_MAX, "the largest class is the largest pool object");

/* A block above IOP_HEAP_CLASS_MAX, mapped on its own. */
struct large {
	struct iop_chunk chunk; /* on the map: base, domain, kind; no pool */
	char *base;
	size_t len;             /* usable bytes: the request rounded up to
	                           the page (what iop_heap_size() says) */
	size_t mapped;          /* bytes mapped, >= len (a reused block may
	                           be up to len/8 larger) */
	struct iop__site *site; /* profiled: its call site */
	struct large *next;     /* in the cache of freed blocks */
};

iop_pool_t *iop__heap_class[IOP_HEAP_CLASSES];  /* NULL until first used (iopool.h) */
static pthread_mutex_t heap_lock = PTHREAD_MUTEX_INITIALIZER;

/* Freed large blocks kept mapped for reuse (as the vmap nodes keep freed
 * areas instead of returning them to the global space): a syscall pair
 * saved per reuse. Bounded by IOP_HEAP_LARGE_CACHE_* (config.h). */
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct large *cache;
static size_t cache_bytes;
static unsigned cache_blocks;

/* fork(): heap_lock is held while a class's pool is created (which takes
 * every other lock but the leaves): first of all (leaf false). cache_lock
 * nests nothing: among the last (leaf true). */
void _iop_heap_atfork(int phase, bool leaf)
{
	pthread_mutex_t *m = leaf ? &cache_lock : &heap_lock;
	if (phase == IOP_FORK_PREPARE)
		pthread_mutex_lock(m);
	else if (phase == IOP_FORK_PARENT)
		pthread_mutex_unlock(m);
	else
		pthread_mutex_init(m, NULL);
}

/* ---- size classes ---------------------------------------------------------- */

static inline size_t class_bytes(unsigned c)
{
	if (c < 4)
		return (size_t)(c + 1) * 16;
	c -= 4;
	return (size_t)(9 + c % 8) << (c / 8 + 3);
}

_Static_assert(IOP_HEAP_CLASSES == 4 + (20 - 6) * 8, "4 classes to 64 B, 8 per power of two to 1 MiB");

static inline size_t lowest_bit(size_t x)
{
	return x & -x;
}


/* ---- the map ------------------------------------------------------------------ */

/* The pool that owns the granule of p, NULL when none (or no pool yet:
 * the map is published with release when the first pool is made). */
static inline iop_pool_t *map_owner(const void *p)
{
	uintptr_t g = (uintptr_t)p >> IOP_GRANULE_SHIFT;
	iop_pool_t **m = __atomic_load_n(&iop__map, __ATOMIC_ACQUIRE);
	return m && g < IOP_MAP_ENTRIES ? ALOAD(&m[g]) : NULL;
}

/* ---- class pools ------------------------------------------------------------ */

static IOP_COLD iop_pool_t *class_pool_create(unsigned c)
{
	pthread_mutex_lock(&heap_lock);
	iop_pool_t *pool = iop__heap_class[c];
	if (!pool) {
		char name[IOP_NAME_MAX];
		size_t bytes = class_bytes(c);
		struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
		snprintf(name, sizeof(name), "heap-%zu", bytes);
		pp.name = name;
		pp.obj_size = bytes;
		pp.flags = IOP_F_NO_THP;
		/* 16 (what malloc gives) unless the class is not a multiple
		 * of it; the pool then spaces objects by exactly the class. */
		pp.align = lowest_bit(bytes) < 16 ? lowest_bit(bytes) : 16;
		pool = _iop_pool_make(&pp, true);
		if (pool) {
			/* Before the class is published: a free sees the
			 * pool in the map only once a block of it was handed
			 * out, which is after. */
			pool->hot.heap = 1;
			__atomic_store_n(&iop__heap_class[c], pool, __ATOMIC_RELEASE);
		}
	}
	int err = errno;
	pthread_mutex_unlock(&heap_lock);
	errno = err;
	return pool;
}

static inline iop_pool_t *class_pool(unsigned c)
{
	iop_pool_t *pool = __atomic_load_n(&iop__heap_class[c], __ATOMIC_ACQUIRE);
	return likely(pool != NULL) ? pool : class_pool_create(c);
}

/* ---- large blocks ----------------------------------------------------------- */


/* A cached block of len to len + len/8 bytes (the classes' waste bound)
 * whose start is a multiple of align; NULL when there is none. */
static struct large *cache_take(size_t len, size_t align)
{
	struct large *b = NULL;
	if (!ALOAD(&cache))
		return NULL;
	pthread_mutex_lock(&cache_lock);
	for (struct large **pp = &cache; *pp; pp = &(*pp)->next) {
		struct large *c = *pp;
		if (c->mapped >= len && c->mapped - len <= len / 8 && !((uintptr_t)c->base & (align - 1))) {
			ASTORE(pp, c->next);
			cache_bytes -= c->mapped;
			cache_blocks--;
			b = c;
			break;
		}
	}
	pthread_mutex_unlock(&cache_lock);
	return b;
}

/* Keep a freed block for reuse if it fits the bounds. */
static bool cache_put(struct large *b)
{
	bool kept = false;
	if (b->mapped > IOP_HEAP_LARGE_CACHE_BLOCK)
		return false;
	pthread_mutex_lock(&cache_lock);
	if (cache_bytes + b->mapped <= IOP_HEAP_LARGE_CACHE_BYTES && cache_blocks < IOP_HEAP_LARGE_CACHE_BLOCKS) {
		b->next = cache;
		ASTORE(&cache, b);
		cache_bytes += b->mapped;
		cache_blocks++;
		kept = true;
	}
	pthread_mutex_unlock(&cache_lock);
	return kept;
}

static IOP_NOINLINE void *large_alloc(size_t size, size_t align, struct iop__site *site)
{
	if (_iop_map_init() != 0) {
		errno = ENOMEM;
		return NULL;
	}
	/* A granule at least: each granule then holds at most one block. */
	size_t a = align > IOP_GRANULE ? align : IOP_GRANULE;
	/* len + a cannot wrap then (a <= 1 GiB), and the block lies where
	 * the address map reaches. */
	if (size > IOP_HEAP_SIZE_MAX) {
		errno = ENOMEM;
		return NULL;
	}
	size_t page = _iop_os_page_size();
	size_t len = (size + page - 1) & ~(page - 1);
	struct large *b = cache_take(len, a);
	if (b)
		goto found;
	if (!(b = calloc(1, sizeof(*b))))
		return NULL;
	/* The heap's pools' policy: no THP (nor hugetlbfs), the caller's
	 * domain. */
	unsigned d = _iop_domain_here();
	char *base = _iop_backing_map(len, a, 0, IOP_F_NO_THP, d, &b->chunk.kind);
	if (!base) {
		free(b);
		errno = ENOMEM;
		return NULL;
	}
	b->chunk.base = b->base = base;
	b->chunk.domain = (uint8_t)d;
	b->mapped = len;
found:
	b->len = len;
	b->site = site;
	if (site)
		_iop_profile_count(site, (int64_t)b->len);
	_iop_map_set(b->base, b->mapped, NULL, &b->chunk);
	/* Under memcheck, a malloc-like block (vg.h). */
	_iop_vg_block_alloc(b->base, b->len);
	return b->base;
}

/* The large block holding p, or NULL. */
static struct large *large_of(const void *p)
{
	struct iop_chunk *c = _iop_map_chunk_of(p);
	if (!c || c->pool)
		return NULL; /* no block, or a pool's chunk */
	struct large *b = (struct large *)(void *)((char *)c - offsetof(struct large, chunk));
	if ((const char *)p < b->base || (const char *)p >= b->base + b->mapped)
		return NULL; /* the granule's other part: not the block */
	return b;
}

/* ---- faults ----------------------------------------------------------------- */

/* p is neither an object of one of our pools nor a large block's start:
 * say what it is, and abort. */
static IOP_COLD _Noreturn void bad_pointer(const char *what, const void *p)
{
	iop_pool_t *owner = map_owner(p);
	if (owner && owner->hot.heap) {
		/* Inside a class chunk: inside a block, or past the last. */
		uint64_t off = (uint64_t)((uintptr_t)p & owner->hot.chunk_mask);
		uint64_t idx = off / owner->hot.stride;
		if (idx < owner->hot.objs_per_chunk)
			_iop_fatal("heap", "%s of %p: interior pointer, %llu bytes into the block at %p (pool '%s')",
				   what, p, (unsigned long long)(off - idx * owner->hot.stride),
				   (void *)((uintptr_t)p - (off - idx * owner->hot.stride)), owner->name);
		_iop_fatal("heap", "%s of %p: not a block, past the last block of its chunk (pool '%s')", what,
			   p, owner->name);
	}
	if (owner)
		_iop_fatal("heap", "%s of %p: it belongs to pool '%s', not to the heap", what, p,
			   iop_pool_name(owner));
	struct large *b = large_of(p);
	if (b)
		_iop_fatal("heap", "%s of %p: interior pointer, %zu bytes into the large block at %p (%zu bytes)",
			   what, p, (size_t)((const char *)p - b->base), (void *)b->base, b->len);
	_iop_fatal("heap", "%s of %p: not from the heap", what, p);
}

/* ---- profiling: the site of each class object ------------------------------- */

/* The chunk's array of site ids, one per object: made at the first
 * profiled allocation from the chunk, named by the address map's
 * iop__map_sites entries of its granules (where the inline code finds it),
 * unmapped with the chunk (slab.c). */
static IOP_COLD uint32_t *sites_make(struct iop_chunk *c, struct iop_pool *pool)
{
	if (_iop_map_sites_init() != 0)
		return NULL;
	pthread_mutex_lock(&heap_lock);
	uint32_t *s = __atomic_load_n(&c->side, __ATOMIC_ACQUIRE);
	if (!s) {
		size_t bytes = (size_t)pool->hot.objs_per_chunk * sizeof(*s);
		s = _iop_os_reserve(bytes);
		if (s) {
			c->side_bytes = bytes;
			__atomic_store_n(&c->side, (void *)s, __ATOMIC_RELEASE); /* after side_bytes */
			_iop_map_set_sites(c->base, pool->chunk_size, s);
		}
	}
	pthread_mutex_unlock(&heap_lock);
	return s;
}

/* The slot for the site id of object p (in flight) of pool, made when
 * `make`; NULL when there is none (profiling could not get memory: the
 * block goes uncounted). */
static inline uint32_t *site_slot(struct iop_pool *pool, void *p, bool make)
{
	struct iop_chunk *c = _iop_map_chunk_of(p);
	uint32_t *s = __atomic_load_n(&c->side, __ATOMIC_ACQUIRE);
	if (unlikely(!s)) {
		if (!make)
			return NULL;
		if (!(s = sites_make(c, pool)))
			return NULL;
	}
	return &s[iop__obj_number(pool, p)];
}

/* What the inline path of an IOP_PROFILE allocation (inline.h) does, when
 * it cannot: register the site, make the chunk's array or the thread's
 * table. */
static void profile_alloc(struct iop_pool *pool, void *p, struct iop__site *site)
{
	uint32_t id = _iop_profile_site_id(site);
	uint32_t *slot = id ? site_slot(pool, p, true) : NULL;
	if (slot) {
		*slot = id;
		_iop_profile_count(site, (int64_t)pool->hot.stride);
	}
}

/* What the inline free does, when the thread has no table (exiting) or
 * the site is past it. */
static void profile_free(struct iop_pool *pool, void *p)
{
	uint32_t *slot = site_slot(pool, p, false);
	uint32_t id = slot ? *slot : 0;
	if (id) {
		*slot = 0;
		_iop_profile_count(_iop_profile_site_of(id), -(int64_t)pool->hot.stride);
	}
}

void *iop__heap_site_record(iop_pool_t *pool, void *p, struct iop__site *site)
{
	profile_alloc(pool, p, site);
	return p;
}

/* ---- allocation --------------------------------------------------------------- */

/* The smallest class that fits size and places blocks on multiples of
 * align; IOP_HEAP_CLASSES when none does. */
static unsigned class_aligned(size_t size, size_t align)
{
	size_t need = size > align ? size : align;
	if (need > IOP_HEAP_CLASS_MAX)
		return IOP_HEAP_CLASSES;
	unsigned c = iop__heap_class_of(need ? need : 1);
	/* At most eight steps: the next power of two is a class, and its
	 * blocks fall on multiples of itself. */
	while (c < IOP_HEAP_CLASSES && lowest_bit(class_bytes(c)) < align)
		c++;
	return c;
}

static inline void *class_alloc(unsigned c, struct iop__site *site)
{
	iop_pool_t *pool = class_pool(c);
	if (unlikely(!pool))
		return NULL;
	void *p = iop_alloc(pool);
	if (unlikely(site != NULL) && p)
		profile_alloc(pool, p, site);
	return p;
}

static void *heap_alloc(size_t size, struct iop__site *site)
{
	if (likely(size - 1 < IOP_HEAP_CLASS_MAX))
		return class_alloc(iop__heap_class_of(size), site);
	if (size == 0)
		return class_alloc(0, site);
	return large_alloc(size, 0, site);
}

static void *heap_alloc_aligned(size_t size, size_t align, struct iop__site *site)
{
	if (!align || (align & (align - 1)) || align > IOP_HEAP_ALIGN_MAX) {
		_iop_msg("iop_heap_alloc_aligned", "align %zu is not a power of two up to %zu", align,
			 IOP_HEAP_ALIGN_MAX);
		errno = EINVAL;
		return NULL;
	}
	unsigned c = class_aligned(size, align);
	if (c < IOP_HEAP_CLASSES)
		return class_alloc(c, site);
	return large_alloc(size ? size : 1, align, site);
}

void *iop__heap_alloc_slow(size_t size)
{
	return heap_alloc(size, NULL);
}

void *iop_heap_alloc_aligned(size_t size, size_t align)
{
	return heap_alloc_aligned(size, align, NULL);
}

void *iop__heap_alloc_site(size_t size, struct iop__site *site)
{
	return heap_alloc(size, site);
}

void *iop__heap_alloc_aligned_site(size_t size, size_t align, struct iop__site *site)
{
	return heap_alloc_aligned(size, align, site);
}

/* ---- free and size -------------------------------------------------------------- */

static IOP_NOINLINE void large_free(void *p)
{
	struct large *b = large_of(p);
	if (!b || b->base != p)
		bad_pointer("invalid free", p);
	_iop_map_set(b->base, b->mapped, NULL, NULL);
	_iop_vg_block_free(b->base);
	if (b->site)
		_iop_profile_count(b->site, -(int64_t)b->len);
	if (cache_put(b))
		return;
	_iop_os_unmap(b->base, b->mapped);
	free(b);
}

void iop__heap_free_slow(void *p)
{
	iop_pool_t *pool = map_owner(p);
	if (likely(pool != NULL && pool->hot.heap)) {
		/* The map said whose chunk it is: only the division test. */
		if (unlikely(iop__obj_number(pool, p) >= pool->hot.objs_per_chunk))
			bad_pointer("invalid free", p);
		if (unlikely(ALOAD(&iop__map_sites) != NULL))
			profile_free(pool, p);
		_iop_push(pool, p);
		return;
	}
	if (!p)
		return;
	if (pool)
		bad_pointer("invalid free", p);
	large_free(p);
}

size_t iop_heap_size(const void *p)
{
	if (!p)
		return 0;
	iop_pool_t *pool = map_owner(p);
	if (pool && pool->hot.heap && iop__obj_number(pool, p) < pool->hot.objs_per_chunk) {
		/* Unchecked, a class block is known only by its address: a
		 * free one passes. A checked pool knows which are in flight. */
		if (pool->checked && !_iop_checked_in_flight(pool, p))
			_iop_fatal("heap", "size query of %p: the block is free (freed already, or never handed out; pool '%s')",
				   p, pool->name);
		return pool->hot.stride;
	}
	struct large *b = pool ? NULL : large_of(p);
	if (!b || b->base != p)
		bad_pointer("size query", p);
	return b->len;
}

size_t iop_heap_class_size(size_t size)
{
	if (size <= IOP_HEAP_CLASS_MAX)
		return class_bytes(iop__heap_class_of(size ? size : 1));
	/* What large_alloc() refuses, whatever the OS would give. */
	if (size > IOP_HEAP_SIZE_MAX)
		return 0;
	size_t page = _iop_os_page_size();
	return (size + page - 1) & ~(page - 1);
}
