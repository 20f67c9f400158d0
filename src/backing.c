/* SPDX-License-Identifier: MIT */
/*
 * Backing: chunks from the OS, and the address map that names their owners.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "options.h"
#include "iop_fault.h"

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

static void fault_env(void);

int _iop_map_init(void)
{
	static pthread_once_t env_once = PTHREAD_ONCE_INIT;
	pthread_once(&env_once, fault_env);
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
	for (size_t i = 0; i < size >> IOP_GRANULE_SHIFT; i++) {
		/* Chunk first: whoever sees the pool may look up the chunk.
		 * Objects reach other threads through the user's own
		 * synchronisation, which orders these stores before them. */
		ASTORE(&_iop_map_chunk[g + i], chunk);
		ASTORE(&iop__map[g + i], pool);
	}
}

/* ---- fault injection (iop_fault.h) ------------------------------------------ */

static _Atomic unsigned f_every, f_nth, f_pct, f_delay_us;
static _Atomic uint64_t f_requests, f_injected, f_base;

static void fault_env(void)
{
	struct iop__fault f = {
		.fail_every = (unsigned)_iop_opt_uint(IOP_OPT_FAULT_CHUNK_FAIL_EVERY),
		.fail_pct = (unsigned)_iop_opt_uint(IOP_OPT_FAULT_CHUNK_FAIL_PCT),
		.delay_us = (unsigned)_iop_opt_uint(IOP_OPT_FAULT_CHUNK_DELAY_US),
	};
	if (f.fail_every || f.fail_pct || f.delay_us)
		iop__fault_set(&f);
}

void iop__fault_set(const struct iop__fault *f)
{
	struct iop__fault off = { 0 };
	if (!f)
		f = &off;
	atomic_store(&f_base, atomic_load(&f_requests));
	atomic_store(&f_every, f->fail_every);
	atomic_store(&f_nth, f->fail_nth);
	atomic_store(&f_pct, f->fail_pct > 100 ? 100 : f->fail_pct);
	atomic_store(&f_delay_us, f->delay_us);
}

uint64_t iop__fault_requests(void)
{
	return atomic_load(&f_requests);
}

uint64_t iop__fault_injected(void)
{
	return atomic_load(&f_injected);
}

/* Should this chunk request fail? Sleeps first when asked to. Relaxed
 * loads: the settings change between test phases, not during a request. */
static bool fault_now(void)
{
	uint64_t k = atomic_fetch_add(&f_requests, 1) + 1 - LOAD(&f_base);
	unsigned delay = LOAD(&f_delay_us);
	if (delay) {
		struct timespec ts = { delay / 1000000, (long)(delay % 1000000) * 1000 };
		while (nanosleep(&ts, &ts) != 0)
			;
	}
	unsigned every = LOAD(&f_every), nth = LOAD(&f_nth), pct = LOAD(&f_pct);
	/* A fixed sequence (the request number hashed), so runs repeat. */
	uint64_t h = k * 0x9e3779b97f4a7c15ull;
	h ^= h >> 29;
	bool fail = (every && k % every == 0) || (nth && k == nth) || (pct && (h >> 7) % 100 < pct);
	if (fail)
		COUNT(&f_injected, 1);
	return fail;
}

/* ---- pages -------------------------------------------------------------------- */

#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)

/* A small number from a /proc or /sys file; 0 when it cannot be read. */
static long read_long(const char *path)
{
	char buf[32];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	return strtol(buf, NULL, 10);
}

/* Whether THP can back an madvise()d range ("[never]" says no). Read once:
 * an administrator changing it meanwhile only changes what stats say. */
static bool thp_enabled(void)
{
	static int known = -1;
	int k = ALOAD(&known);
	if (k < 0) {
		char buf[128] = { 0 };
		int fd = open("/sys/kernel/mm/transparent_hugepage/enabled", O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
		if (fd >= 0)
			close(fd);
		k = n > 0 && !strstr(buf, "[never]");
		ASTORE(&known, k);
	}
	return k;
}

/* Map `span` bytes and keep `size` of them aligned to `size`, followed by
 * `tail` bytes: trim both ends (two munmap calls once per chunk). hugetlbfs
 * mappings come 2 MiB-aligned and are trimmed at 2 MiB boundaries. */
static char *map_aligned(size_t size, size_t tail, int extra)
{
	size_t span = size == IOP_GRANULE && (extra & MAP_HUGETLB) ? size : size * 2 + tail;
	char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	char *base = (char *)(((uintptr_t)raw + size - 1) & ~(uintptr_t)(size - 1));
	if (base > raw)
		munmap(raw, (size_t)(base - raw));
	if (base + size + tail < raw + span)
		munmap(base + size + tail, (size_t)(raw + span - (base + size + tail)));
	return base;
}

/*
 * Map a chunk of `size` bytes aligned to `size` (a power of two >= 2 MiB),
 * followed by `tail` bytes (a multiple of the page size; the reference
 * counts of a refcounted chunk), in domain d: hugetlbfs pages when asked
 * for or reserved (the tail would need its own mapping, so not with one),
 * else advised for THP, else 4 KiB pages.
 */
void *_iop_os_map(size_t size, size_t tail, uint32_t flags, unsigned d, uint8_t *kind)
{
	if (fault_now()) {
		errno = ENOMEM;
		return NULL;
	}
	char *base = NULL;
	if (!tail && ((flags & IOP_F_HUGETLB) ||
		      (!(flags & IOP_F_NO_THP) && read_long("/proc/sys/vm/nr_hugepages") > 0))) {
		/* Fails at once (ENOMEM) when too few huge pages are free: the
		 * kernel reserves them at mmap time. */
		base = map_aligned(size, 0, MAP_HUGETLB | MAP_HUGE_2MB);
		if (base)
			*kind = IOP_PAGES_HUGETLB;
	}
	if (!base) {
		base = map_aligned(size, tail, 0);
		if (!base)
			return NULL;
		*kind = IOP_PAGES_4K;
		/* A hint; failure is fine. */
		if (!(flags & IOP_F_NO_THP) && madvise(base, size, MADV_HUGEPAGE) == 0 && thp_enabled())
			*kind = IOP_PAGES_THP;
	}
	/* Before the first touch, which places the pages. */
	_iop_domain_bind(base, size, d);
	if (flags & IOP_F_PREFAULT)
		_iop_os_prefault(base, size);
	return base;
}

void _iop_os_prefault(char *base, size_t len)
{
	if (madvise(base, len, MADV_POPULATE_WRITE) == 0)
		return;
	/* Before Linux 5.14: write each page with what it holds. Object
	 * memory may be poisoned for ASan or no-access for memcheck;
	 * nothing is in flight here. */
	FREE_UNPOISON(base, len);
	long page = sysconf(_SC_PAGESIZE);
	for (size_t off = 0; off < len; off += (size_t)page) {
		volatile char *b = base + off;
		*b = *b;
	}
	FREE_POISON(base, len);
}

void _iop_os_unmap(void *p, size_t size)
{
	/* ASan keeps shadow across munmap: clear ours so the next mapping at
	 * this address does not start out poisoned. */
	IOP__UNPOISON(p, size);
	munmap(p, size);
}
