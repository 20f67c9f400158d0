/* SPDX-License-Identifier: MIT */
/*
 * Backing: chunks from the OS (which pages, which node), and the address
 * map that names the owner of every 2 MiB granule: a pool's chunk, or a
 * large block of the heap (a chunk record with no pool).
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"
#include "os/os.h"

iop_pool_t **iop__map;
struct iop_chunk **_iop_map_chunk;
/* Reserved at the first profiled heap block: profiling costs unprofiled
 * programs no address space. */
uint32_t **iop__map_sites;

static pthread_once_t map_once = PTHREAD_ONCE_INIT;
static int map_err;

static void *reserve(size_t bytes)
{
	/* Untouched pages read as zero ("no owner") and cost nothing. */
	void *p = _iop_os_reserve(bytes);
	if (!p)
		map_err = errno;
	return p;
}

static void map_reserve(void)
{
	size_t bytes = IOP_MAP_ENTRIES * sizeof(void *);
	struct iop_chunk **chunks = reserve(bytes);
	iop_pool_t **pools = chunks ? reserve(bytes) : NULL;
	if (!pools) {
		if (chunks)
			_iop_os_unmap(chunks, bytes);
		return;
	}
	_iop_map_chunk = chunks;
	/* Release: the heap's inline free reads it without any pool in hand. */
	__atomic_store_n(&iop__map, pools, __ATOMIC_RELEASE);
}

int _iop_map_init(void)
{
	_iop_os_fault_env();
	_iop_domains_init();
	pthread_once(&map_once, map_reserve);
	return iop__map ? 0 : -(map_err ? map_err : ENOMEM);
}

intptr_t _iop_map_index(const void *p)
{
	uintptr_t g = (uintptr_t)p >> IOP_GRANULE_SHIFT;
	return iop__map && g < IOP_MAP_ENTRIES ? (intptr_t)g : -1;
}

struct iop_pool *_iop_map_pool(const void *p)
{
	intptr_t g = _iop_map_index(p);
	return g < 0 ? NULL : ALOAD(&iop__map[g]);
}

struct iop_chunk *_iop_map_chunk_of(const void *p)
{
	intptr_t g = _iop_map_index(p);
	return g < 0 ? NULL : ALOAD(&_iop_map_chunk[g]);
}

void _iop_map_set(char *base, size_t size, struct iop_pool *pool, struct iop_chunk *chunk)
{
	size_t g = (uintptr_t)base >> IOP_GRANULE_SHIFT;
	/* Every granule the range touches: a large block's last may be
	 * partly its own (the rest of it is no chunk's: chunks and blocks
	 * start on granules). */
	for (size_t i = 0; i < (size + IOP_GRANULE - 1) >> IOP_GRANULE_SHIFT; i++) {
		/* Chunk first: whoever sees the pool may look up the chunk.
		 * Objects reach other threads through the user's own
		 * synchronisation, which orders these stores before them. */
		ASTORE(&_iop_map_chunk[g + i], chunk);
		ASTORE(&iop__map[g + i], pool);
	}
	/* A new owner starts with no site array: the old one goes with its
	 * chunk (slab.c), and every object of it was free, so none had a
	 * site left to count. */
	uint32_t **ms = __atomic_load_n(&iop__map_sites, __ATOMIC_ACQUIRE);
	if (ms)
		for (size_t i = 0; i < (size + IOP_GRANULE - 1) >> IOP_GRANULE_SHIFT; i++)
			if (ALOAD(&ms[g + i]))
				ASTORE(&ms[g + i], NULL);
}

static pthread_once_t sites_once = PTHREAD_ONCE_INIT;

static void sites_reserve(void)
{
	/* Release: the inline code reads the entries without a lock. */
	uint32_t **ms = _iop_os_reserve(IOP_MAP_ENTRIES * sizeof(*ms));
	if (ms)
		__atomic_store_n(&iop__map_sites, ms, __ATOMIC_RELEASE);
}

int _iop_map_sites_init(void)
{
	pthread_once(&sites_once, sites_reserve);
	return iop__map_sites ? 0 : -ENOMEM;
}

void _iop_map_set_sites(char *base, size_t size, uint32_t *sites)
{
	size_t g = (uintptr_t)base >> IOP_GRANULE_SHIFT;
	/* Release: a thread that reads an entry may write the array. */
	for (size_t i = 0; i < size >> IOP_GRANULE_SHIFT; i++)
		__atomic_store_n(&iop__map_sites[g + i], sites, __ATOMIC_RELEASE);
}

/* ---- chunks from the OS ------------------------------------------------------ */

/*
 * Map `len` bytes aligned to `align` (a power of two >= 2 MiB, so no other
 * chunk or block shares the map entries of its granules), followed by
 * `tail` bytes (a multiple of the page size; the reference counts of a
 * refcounted chunk), in domain d: hugetlbfs pages when asked for or
 * reserved (the tail would need its own mapping, so not with one, nor for
 * a length that is no multiple of the huge page), else advised for THP,
 * else 4 KiB pages. Pools' chunks and the heap's large blocks both come
 * from here, so both get the same policy and fault injection.
 */
void *_iop_backing_map(size_t len, size_t align, size_t tail, uint32_t flags, unsigned d, uint8_t *kind)
{
	if (_iop_os_fault()) {
		errno = ENOMEM;
		return NULL;
	}
	char *base = NULL;
	if (!tail && !(len & (IOP_GRANULE - 1)) &&
	    ((flags & IOP_F_HUGETLB) || (!(flags & IOP_F_NO_THP) && _iop_os_hugetlb_reserved() > 0))) {
		/* Fails at once (ENOMEM) when too few huge pages are free: the
		 * kernel reserves them at mmap time. */
		base = _iop_os_map_aligned(len, align, 0, true);
		if (base)
			*kind = IOP_PAGES_HUGETLB;
	}
	if (!base) {
		base = _iop_os_map_aligned(len, align, tail, false);
		if (!base)
			return NULL;
		*kind = IOP_PAGES_4K;
		/* A hint; failure is fine. */
		if (!(flags & IOP_F_NO_THP) && _iop_os_advise_thp(base, len))
			*kind = IOP_PAGES_THP;
	}
	/* Before the first touch, which places the pages. */
	_iop_domain_bind(base, len, d);
	if (flags & IOP_F_PREFAULT)
		_iop_os_prefault(base, len);
	return base;
}
