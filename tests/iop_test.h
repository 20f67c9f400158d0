/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the iopool test programs: making pools, reading and
 * checking statistics, and stamping objects so that a test can tell when the
 * pool handed out memory it should not have.
 */
#ifndef IOP_TEST_IOP_TEST_H
#define IOP_TEST_IOP_TEST_H

#include "harness.h"
#include "iopool.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* Create a pool or end the test. */
#define MKPOOL(...) th_mkpool_at(__FILE__, __LINE__, __VA_ARGS__)

/*
 * A watchdog for a case that could hang: after `seconds` (four times as
 * long under sanitizers) the case fails with a message naming `what`,
 * instead of running into CTest's timeout. th_watchdog(NULL, 0) disarms it.
 */
static const char *th_watchdog_what = "";

TH_UNUSED static void th_watchdog_fired(int sig)
{
	(void)sig;
	static const char msg[] = "watchdog: this took too long: ";
	ssize_t w = write(2, msg, sizeof(msg) - 1);
	w = write(2, th_watchdog_what, strlen(th_watchdog_what));
	w = write(2, "\n", 1);
	(void)w;
	_exit(TH_FAIL);
}

TH_UNUSED static void th_watchdog(const char *what, unsigned seconds)
{
	if (!seconds) {
		alarm(0);
		return;
	}
	th_watchdog_what = what;
	signal(SIGALRM, th_watchdog_fired);
	alarm(TH_TSAN || TH_ASAN ? seconds * 4 : seconds);
}

TH_UNUSED static iop_pool_t *th_mkpool_at(const char *file, int line,
					  const char *name, size_t obj_size,
					  size_t align, uint32_t cache_size,
					  size_t chunk_size, uint32_t flags)
{
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = name;
	pp.obj_size = obj_size;
	pp.align = align;
	pp.cache_size = cache_size;
	pp.chunk_size = chunk_size;
	pp.flags = flags;
	errno = 0;
	iop_pool_t *p = iop_pool_create(&pp);
	if (!p) {
		th_fail_at(file, line,
			   "iop_pool_create(name=%s obj=%zu align=%zu cache=%u "
			   "chunk=%zu flags=%#x) failed: %s",
			   name ? name : "NULL", obj_size, align, cache_size,
			   chunk_size, flags, strerror(errno));
		exit(TH_FAIL);
	}
	return p;
}

#define STATS(pool) th_stats_at(__FILE__, __LINE__, (pool))

TH_UNUSED static struct iop_pool_stats th_stats_at(const char *file, int line,
						   iop_pool_t *pool)
{
	struct iop_pool_stats st;
	memset(&st, 0xff, sizeof st);
	st.struct_size = sizeof st;
	int rc = iop_pool_stats(pool, &st);
	if (rc != 0)
		th_fail_at(file, line, "iop_pool_stats() returned %d", rc);
	return st;
}

/*
 * Check the bookkeeping identities of a quiescent pool:
 *   in_flight + cached + depot + slab_free == total
 *   total == chunks * objs_per_chunk, bytes_mapped == chunks * chunk_size
 *   chunks == chunk_acquire - chunk_release
 * The first two hold by construction: iop_pool_stats() derives in_flight
 * as total less the rest, total and bytes_mapped from chunks (src/stats.c),
 * and free_fast from in_flight. Only the last compares two counters. So a
 * pool that lost or doubled an object passes; CHECK_COUNTS below checks
 * the same figures against counts the library does not derive.
 */
#define CHECK_CONSERVED(st) th_check_conserved_at(__FILE__, __LINE__, &(st))

TH_UNUSED static void th_check_conserved_at(const char *file, int line,
					    const struct iop_pool_stats *st)
{
	uint64_t sum = st->in_flight + st->cached + st->depot + st->slab_free;
	if (sum != st->total)
		th_fail_at(file, line,
			   "conservation: in_flight %llu + cached %llu + depot "
			   "%llu + slab_free %llu = %llu != total %llu",
			   (unsigned long long)st->in_flight,
			   (unsigned long long)st->cached,
			   (unsigned long long)st->depot,
			   (unsigned long long)st->slab_free,
			   (unsigned long long)sum,
			   (unsigned long long)st->total);
	if (st->total != st->chunks * st->objs_per_chunk)
		th_fail_at(file, line,
			   "total %llu != chunks %llu * objs_per_chunk %llu",
			   (unsigned long long)st->total,
			   (unsigned long long)st->chunks,
			   (unsigned long long)st->objs_per_chunk);
	if (st->bytes_mapped != st->chunks * st->chunk_size)
		th_fail_at(file, line,
			   "bytes_mapped %llu != chunks %llu * chunk_size %llu",
			   (unsigned long long)st->bytes_mapped,
			   (unsigned long long)st->chunks,
			   (unsigned long long)st->chunk_size);
	if (st->chunks != st->chunk_acquire - st->chunk_release)
		th_fail_at(file, line,
			   "chunks %llu != chunk_acquire %llu - chunk_release "
			   "%llu",
			   (unsigned long long)st->chunks,
			   (unsigned long long)st->chunk_acquire,
			   (unsigned long long)st->chunk_release);
}

/*
 * The derived figures against independent counts: the objects the test
 * holds now (held), and the allocations and frees it made (allocs, frees),
 * which give in_flight, alloc_fast + alloc_slow and free_fast + free_slow;
 * and iop_pool_audit(), which walks every chunk, magazine and cache and
 * fails when an object is in two places, or in none, or a counter
 * disagrees with the walk. Then the identities of CHECK_CONSERVED. A
 * quiescent pool whose objects all came from this test.
 */
#define CHECK_COUNTS(pool, held, allocs, frees) \
	th_check_counts_at(__FILE__, __LINE__, (pool), (held), (allocs), (frees))

TH_UNUSED static void th_check_counts_at(const char *file, int line, iop_pool_t *pool, uint64_t held,
					 uint64_t allocs, uint64_t frees)
{
	struct iop_pool_stats st = th_stats_at(file, line, pool);
	if (st.in_flight != held)
		th_fail_at(file, line, "in_flight %llu, the test holds %llu", (unsigned long long)st.in_flight,
			   (unsigned long long)held);
	if (st.alloc_fast + st.alloc_slow != allocs)
		th_fail_at(file, line, "alloc_fast %llu + alloc_slow %llu, the test allocated %llu",
			   (unsigned long long)st.alloc_fast, (unsigned long long)st.alloc_slow,
			   (unsigned long long)allocs);
	if (st.free_fast + st.free_slow != frees)
		th_fail_at(file, line, "free_fast %llu + free_slow %llu, the test freed %llu",
			   (unsigned long long)st.free_fast, (unsigned long long)st.free_slow,
			   (unsigned long long)frees);
	int rc = iop_pool_audit(pool);
	if (rc != 0)
		th_fail_at(file, line, "iop_pool_audit() returned %d", rc);
	th_check_conserved_at(file, line, &st);
}

/*
 * Caches that belong to no live thread. With per-thread caches a thread's
 * exit empties its slots, so none may hold anything; per-CPU slots belong
 * to no thread and keep up to cpu_cache_size objects per CPU until drained
 * (iop_pool_flush(), shrink, decay). th_unowned_max() is that bound for the
 * pool the statistics describe.
 */
#include <unistd.h>
TH_UNUSED static uint64_t th_unowned_max(const struct iop_pool_stats *st)
{
	if (st->cache_mode != IOP_CACHE_MODE_CPU)
		return 0;
	long n = sysconf(_SC_NPROCESSORS_CONF);
	return (uint64_t)(n > 0 ? n : 1) * st->cpu_cache_size;
}
#define CHECK_CACHED_BY_NO_THREAD(st) CHECK_LE((st).cached, th_unowned_max(&(st)))

/* The calling thread's caches and every CPU's cache of pool: empty them
 * (iop_thread_flush() alone leaves the CPUs' slots). */
#define FLUSH_ALL(pool) (iop_thread_flush(), (void)iop_pool_flush(pool))

/* Threads of this process named `name` (/proc/self/task/N/comm): the
 * library names its own ("iop-refill/0", "iop-psi"). */
TH_UNUSED static int th_threads_named(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return -1;
	int n = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		char path[300], comm[32] = "";
		snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		if (fgets(comm, sizeof comm, f))
			comm[strcspn(comm, "\n")] = 0;
		fclose(f);
		n += strcmp(comm, name) == 0;
	}
	closedir(d);
	return n;
}

/* A fake PSI file (IOPOOL_PSI_FILE) whose "some avg10" reads avg10: a
 * regular file, which takes no trigger, so the library polls it. Written
 * whole and renamed into place: a reader sees the old file or the new. */
TH_UNUSED static void th_write_psi(const char *path, const char *avg10)
{
	char tmp[256];
	snprintf(tmp, sizeof tmp, "%s.new", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return;
	fprintf(f, "some avg10=%s avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
		avg10);
	fclose(f);
	rename(tmp, path);
}

/* Audit, free of every pool test's end. */
#define CHECK_AUDIT(pool) CHECK_EQ(iop_pool_audit(pool), 0)
#define CHECK_DESTROY(pool) CHECK_EQ(iop_pool_destroy(pool), 0)

/* ------------------------------------------------------------------------ */
/* Patterns                                                                  */
/* ------------------------------------------------------------------------ */

TH_UNUSED static inline uint64_t th_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* Fill n bytes at p with a pattern derived from seed (every byte). */
TH_UNUSED static void th_fill(void *p, size_t n, uint64_t seed)
{
	unsigned char *b = p;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w = th_mix(seed + i);
		memcpy(b + i, &w, 8);
	}
	uint64_t w = th_mix(seed + i);
	for (; i < n; i++, w >>= 8)
		b[i] = (unsigned char)w;
}

/* Returns the offset of the first wrong byte, or (size_t)-1. */
TH_UNUSED static size_t th_verify(const void *p, size_t n, uint64_t seed)
{
	const unsigned char *b = p;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w = th_mix(seed + i), got;
		memcpy(&got, b + i, 8);
		if (got != w)
			return i;
	}
	uint64_t w = th_mix(seed + i);
	for (; i < n; i++, w >>= 8)
		if (b[i] != (unsigned char)w)
			return i;
	return (size_t)-1;
}

/* ------------------------------------------------------------------------ */
/* Owner stamps for objects that travel between threads                     */
/* ------------------------------------------------------------------------ */

/*
 * An object of any size (>= 16 bytes) is stamped with
 *   word 0: its own address ^ cookie        (catches an object handed out at
 *                                            a different address, or twice)
 *   word 1: tag ^ cookie                    (the test's owner/sequence tag)
 *   bytes 16 .. min(size, 16 + TH_STAMP_BODY): a pattern from address + tag
 *   last 8 bytes (size >= 32): ~(address ^ cookie)  (catches overlap with the
 *                                            next object)
 */
#define TH_STAMP_BODY 240

static uint64_t th_cookie = 0x6a09e667f3bcc908ULL;

TH_UNUSED static void th_stamp(void *obj, size_t size, uint64_t tag)
{
	uint64_t *w = obj;
	uintptr_t a = (uintptr_t)obj;
	w[0] = a ^ th_cookie;
	w[1] = tag ^ th_cookie;
	size_t body = size - 16 < TH_STAMP_BODY ? size - 16 : TH_STAMP_BODY;
	if (size >= 32 && body > size - 24)
		body = size - 24;
	th_fill((char *)obj + 16, body, a + tag);
	if (size >= 32) {
		uint64_t tail = ~(a ^ th_cookie);
		memcpy((char *)obj + size - 8, &tail, 8);
	}
}

/* Returns 1 when obj carries the stamp for (size, tag); else records a
 * failure naming what was wrong. */
#define CHECK_STAMP(obj, size, tag) \
	th_check_stamp_at(__FILE__, __LINE__, (obj), (size), (tag))

TH_UNUSED static int th_check_stamp_at(const char *file, int line,
				       const void *obj, size_t size,
				       uint64_t tag)
{
	const uint64_t *w = obj;
	uintptr_t a = (uintptr_t)obj;
	if (w[0] != (a ^ th_cookie)) {
		th_fail_at(file, line, "object %p: address stamp %#llx, "
			   "expected %#llx", obj, (unsigned long long)w[0],
			   (unsigned long long)(a ^ th_cookie));
		return 0;
	}
	if (w[1] != (tag ^ th_cookie)) {
		th_fail_at(file, line, "object %p: tag %#llx, expected %#llx",
			   obj, (unsigned long long)(w[1] ^ th_cookie),
			   (unsigned long long)tag);
		return 0;
	}
	size_t body = size - 16 < TH_STAMP_BODY ? size - 16 : TH_STAMP_BODY;
	if (size >= 32 && body > size - 24)
		body = size - 24;
	size_t bad = th_verify((const char *)obj + 16, body, a + tag);
	if (bad != (size_t)-1) {
		th_fail_at(file, line, "object %p: pattern broken at byte %zu",
			   obj, 16 + bad);
		return 0;
	}
	if (size >= 32) {
		uint64_t tail;
		memcpy(&tail, (const char *)obj + size - 8, 8);
		if (tail != ~(a ^ th_cookie)) {
			th_fail_at(file, line, "object %p: tail stamp broken",
				   obj);
			return 0;
		}
	}
	return 1;
}

/* A command-line argument of a stress program: an integer in [lo, hi], or
 * exit 2 with a message. */
static inline int th_parse_arg(const char *s, int lo, int hi, const char *what)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*end || v < lo || v > hi) {
		fprintf(stderr, "%s must be %d..%d, not '%s'\n", what, lo, hi, s);
		exit(2);
	}
	return (int)v;
}

/* Virtual size of this process in bytes (VmSize), or 0. */
static inline size_t th_vm_size(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return 0;
	char line[256];
	size_t kb = 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmSize: %zu kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

#endif /* IOP_TEST_IOP_TEST_H */
