/*
 * Backing: chunks from the OS, and the address map that names their owners.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels say EINVAL */
#endif

iop_pool_t **iop__map;
struct iop_chunk **_iop_map_chunk;

static pthread_once_t map_once = PTHREAD_ONCE_INIT;
static int map_err;

static void *reserve(size_t bytes)
{
	/* Reserved, not committed: untouched pages read as zero ("no owner")
	 * and cost nothing. */
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		map_err = errno;
		return NULL;
	}
	return p;
}

static void map_reserve(void)
{
	size_t bytes = IOP_MAP_ENTRIES * sizeof(void *);
	struct iop_chunk **chunks = reserve(bytes);
	iop_pool_t **pools = chunks ? reserve(bytes) : NULL;
	if (!pools) {
		if (chunks)
			munmap(chunks, bytes);
		return;
	}
	_iop_map_chunk = chunks;
	/* Release: the heap's inline free reads it without any pool in hand. */
	__atomic_store_n(&iop__map, pools, __ATOMIC_RELEASE);
}

int _iop_map_init(void)
{
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
	for (size_t i = 0; i < size >> IOP_GRANULE_SHIFT; i++) {
		/* Chunk first: whoever sees the pool may look up the chunk.
		 * Objects reach other threads through the user's own
		 * synchronisation, which orders these stores before them. */
		ASTORE(&_iop_map_chunk[g + i], chunk);
		ASTORE(&iop__map[g + i], pool);
	}
}

/*
 * Map `size` bytes aligned to `size` (a power of two >= 2 MiB), followed by
 * `tail` bytes (a multiple of the page size; the reference counts of a
 * refcounted chunk): map twice the size plus the tail and trim both ends,
 * which costs two munmap calls once per chunk.
 */
void *_iop_os_map(size_t size, size_t tail, uint32_t flags)
{
	size_t span = size * 2 + tail;
	char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	char *base = (char *)(((uintptr_t)raw + size - 1) & ~(uintptr_t)(size - 1));
	if (base > raw)
		munmap(raw, (size_t)(base - raw));
	if (base + size + tail < raw + span)
		munmap(base + size + tail, (size_t)(raw + span - (base + size + tail)));

	if (!(flags & IOP_F_NO_THP))
		madvise(base, size, MADV_HUGEPAGE); /* a hint; failure is fine */
	if (flags & IOP_F_PREFAULT)
		_iop_os_prefault(base, size);
	return base;
}

void _iop_os_prefault(char *base, size_t len)
{
	if (madvise(base, len, MADV_POPULATE_WRITE) == 0)
		return;
	/* Before Linux 5.14: write each page with what it holds. Object
	 * memory may be poisoned for ASan; nothing is in flight here. */
	ASAN_UNPOISON(base, len);
	long page = sysconf(_SC_PAGESIZE);
	for (size_t off = 0; off < len; off += (size_t)page) {
		volatile char *b = base + off;
		*b = *b;
	}
	ASAN_POISON(base, len);
}

void _iop_os_unmap(void *p, size_t size)
{
	/* ASan keeps shadow across munmap: clear ours so the next mapping at
	 * this address does not start out poisoned. */
	ASAN_UNPOISON(p, size);
	munmap(p, size);
}
