/* SPDX-License-Identifier: MIT */
/*
 * Released pages (issue 15): shrink, reclaim and decay give back to the OS
 * the whole pages of partly used chunks that hold only free objects, and
 * those pages come back when an object on them is handed out again.
 *
 * - a pool of 1000 chunks, each keeping one object in flight: shrink
 *   unmaps nothing, and VmRSS falls by at least 80% of the free bytes that
 *   were in memory; the statistics match a count made here;
 * - the audit is clean after the release and after every page is used
 *   again, and reused objects are writable and read back;
 * - checked pools (objects straddling pages) poison released pages again
 *   on reuse, so no false "use after free";
 * - decay gives back the pages of the chunks it returns objects to;
 * - pools with a map hook keep their pages (a device may have pinned them).
 *
 * Registered twice: in the process's cache mode (per-CPU where rseq works)
 * and with IOPOOL_CACHE=thread. Shrink racing a stamped load is in
 * test_races.c.
 */
#include "iop_test.h"

#include <stdbool.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>



/* VmRSS of this process, in bytes. */
static uint64_t vm_rss(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	uint64_t kb = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %llu kB", (unsigned long long *)&kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb * 1024;
}

/* Pages of [p, p + len) in memory (mincore), counted here, not by iopool. */
static uint64_t resident_pages(void *p, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), n = (len + page - 1) / page;
	unsigned char v[64];
	uint64_t in = 0;
	for (size_t done = 0; done < n;) {
		size_t k = n - done < sizeof(v) ? n - done : sizeof(v);
		if (mincore((char *)p + done * page, k * page, v) != 0)
			return UINT64_MAX;
		for (size_t i = 0; i < k; i++)
			in += v[i] & 1;
		done += k;
	}
	return in;
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
	return x < y ? -1 : x > y;
}

/* At IOP_DEBUG >= 2 every pool is checked, and checked mode poisons every
 * object it carves: 1000 chunks would be 2 GiB in memory. */
#define NCHUNKS (IOP_TEST_DEBUG >= 2 ? 64 : 1000)
enum { OBJ = 32 * 1024, PER_CHUNK = 2 * MiB / OBJ, TOUCHED_FREE = 2 };

static uintptr_t chunk_of(void *p)
{
	return (uintptr_t)p & ~(uintptr_t)(2 * MiB - 1);
}

/*
 * 1000 chunks of 64 objects of 32 KiB (2 GiB of address space, about
 * 94 MiB touched: under ASan add 1/8 of 2 GiB of shadow). Each chunk keeps
 * its first object in flight; two of its other objects are written and
 * freed. No THP: a touched 2 MiB chunk would be one huge page.
 */
static int one_live_object_per_chunk(bool bounded)
{
	th_watchdog(__func__, 120);
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = bounded ? "pages-bounded" : "pages";
	pp.obj_size = OBJ;
	pp.flags = IOP_F_NO_THP;
	if (bounded)
		pp.limit = (uint64_t)NCHUNKS * PER_CHUNK; /* carves exactly 1000 chunks */
	iop_pool_t *p = iop_pool_create(&pp);
	REQUIRE(p);
	size_t n = (size_t)NCHUNKS * PER_CHUNK;
	void **objs = calloc(n, sizeof(void *));
	REQUIRE(objs);
	REQUIRE(iop_alloc_bulk(p, objs, (unsigned)n) == n);
	/* Sorted by address, so each chunk's objects are adjacent. */
	qsort(objs, n, sizeof(void *), cmp_ptr);
	void **live = calloc(NCHUNKS + 2, sizeof(void *));
	REQUIRE(live);
	/* Objects carved: none was given back yet, so the slab's free ones
	 * are the never-carved ones. */
	struct iop_pool_stats st = STATS(p);
	uint64_t carved = st.total - st.slab_free;
	size_t nlive = 0, nfree = 0, j = 0;
	uint64_t touched_free = 0;
	for (size_t i = 0; i < n; i++) {
		if (i == 0 || chunk_of(objs[i]) != chunk_of(objs[i - 1])) {
			/* The chunk's first object of ours stays in flight. */
			REQUIRE(nlive < NCHUNKS + 2);
			th_stamp(objs[i], OBJ, nlive);
			memset((char *)objs[i] + 256, 0x5a, OBJ - 512);
			live[nlive++] = objs[i];
			j = 0;
			continue;
		}
		if (++j <= TOUCHED_FREE) {
			memset(objs[i], 0xa7, OBJ); /* in memory, then free */
			touched_free += OBJ;
		}
		objs[nfree++] = objs[i];
	}
	/* Per-CPU and per-thread caches may carve a few objects more than
	 * asked: a 1001st chunk; the bounded pool carves exactly 1000. */
	CHECK_GE(nlive, NCHUNKS);
	CHECK_LE(nlive, bounded ? NCHUNKS : NCHUNKS + 1);
	CHECK_GE(touched_free, (uint64_t)NCHUNKS * TOUCHED_FREE * OBJ);
	iop_free_bulk(p, objs, (unsigned)nfree);
	iop_thread_flush();

	st = STATS(p);
	CHECK_EQ(st.chunks, nlive);
	CHECK_EQ(st.in_flight, nlive);
	CHECK_EQ(st.bytes_released, 0);
	uint64_t rss_before = vm_rss();
	int64_t unmapped = iop_pool_shrink(p, 0);
	uint64_t rss_after = vm_rss();
	st = STATS(p);
	/* Every chunk keeps an object in flight: none is unmapped. */
	CHECK_EQ(unmapped, 0);
	CHECK_EQ(st.chunks, nlive);
	uint64_t fell = rss_before > rss_after ? rss_before - rss_after : 0;
	printf("%s, %s caches: VmRSS %llu -> %llu KiB (fell %llu KiB) for %llu KiB of free objects in memory; "
	       "bytes_released %llu KiB, page_release %llu\n",
	       pp.name, st.cache_mode == IOP_CACHE_MODE_CPU ? "per-CPU" : "per-thread",
	       (unsigned long long)rss_before >> 10, (unsigned long long)rss_after >> 10,
	       (unsigned long long)fell >> 10, (unsigned long long)touched_free >> 10,
	       (unsigned long long)st.bytes_released >> 10, (unsigned long long)st.page_release);
	CHECK_GE(fell, touched_free / 10 * 8);

	/* The count made here: objects of 8 whole pages each, no padding;
	 * every carved object but the live ones is free, and every page
	 * of it goes. */
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	uint64_t want = (carved - nlive) * (OBJ / page);
	CHECK_EQ(st.page_release, want);
	CHECK_EQ(st.page_reuse, 0);
	CHECK_EQ(st.bytes_released, want * page);
	/* What mincore sees: per chunk, the live object's pages only. */
	uint64_t resident = 0;
	for (size_t i = 0; i < nlive; i++)
		resident += resident_pages((void *)chunk_of(live[i]), 2 * MiB);
	CHECK_EQ(resident, (uint64_t)nlive * (OBJ / page));
	CHECK_LE(st.bytes_resident, (uint64_t)nlive * OBJ);
	CHECK_AUDIT(p);
	/* Nothing more to give: a second shrink releases nothing. */
	CHECK_EQ(iop_pool_shrink(p, 0), 0);
	CHECK_EQ(STATS(p).page_release, want);
	for (size_t i = 0; i < nlive; i++)
		CHECK_STAMP(live[i], OBJ, i);

	/* Reuse: the free objects again, written and read back; each
	 * released page counted once as it comes back. */
	REQUIRE(iop_alloc_bulk(p, objs, (unsigned)nfree) == nfree);
	st = STATS(p);
	CHECK_LE(st.page_reuse, want);
	CHECK_GE(st.page_reuse, (uint64_t)nfree * (OBJ / page));
	CHECK_EQ(st.bytes_released, (want - st.page_reuse) * page);
	for (size_t i = 0; i < nfree; i += 97) {
		th_stamp(objs[i], OBJ, i);
		CHECK_STAMP(objs[i], OBJ, i);
	}
	CHECK_AUDIT(p);
	iop_free_bulk(p, objs, (unsigned)nfree);
	iop_free_bulk(p, live, (unsigned)nlive);
	iop_thread_flush();
	iop_pool_shrink(p, 0);
	st = STATS(p);
	CHECK_EQ(st.chunks, 0);
	CHECK_EQ(st.bytes_released, 0);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	free(objs);
	free(live);
	alarm(0);
	return TH_PASS;
}

TEST(shrink_gives_back_the_free_pages_of_1000_chunks_each_holding_one_object)
{
	return one_live_object_per_chunk(false);
}

TEST(shrink_gives_back_the_free_pages_of_a_bounded_pool)
{
	return one_live_object_per_chunk(true);
}

/* Objects of 3000 bytes straddle pages: only pages wholly covered by free
 * objects go, a page goes back to the process when any object on it is
 * handed out, and a checked pool's poison survives (no false use after
 * free when the reused objects' neighbours are handed out later). */
static int straddling(uint32_t flags)
{
	iop_pool_t *p = th_mkpool_at(__FILE__, __LINE__, "straddle", 3000, 8, 0, 0, flags | IOP_F_NO_THP);
	enum { N = 699 }; /* one 2 MiB chunk */
	void *o[N];
	REQUIRE(iop_alloc_bulk(p, o, N) == N);
	for (int i = 0; i < N; i++)
		th_stamp(o[i], 3000, (uint64_t)i);
	/* Keep every 16th object: a page in 12 holds one of them. */
	void *f[N];
	unsigned nf = 0;
	for (int i = 0; i < N; i++)
		if (i % 16)
			f[nf++] = o[i];
	iop_free_bulk(p, f, nf);
	iop_thread_flush();
	iop_pool_shrink(p, 0);
	struct iop_pool_stats st = STATS(p);
	CHECK_GT(st.page_release, 0);
	CHECK_EQ(st.bytes_released, (st.page_release - st.page_reuse) * (uint64_t)sysconf(_SC_PAGESIZE));
	CHECK_AUDIT(p);
	for (int i = 0; i < N; i += 16)
		CHECK_STAMP(o[i], 3000, (uint64_t)i);
	/* Half back (their neighbours stay released or free), then all. */
	REQUIRE(iop_alloc_bulk(p, f, nf / 2) == nf / 2);
	CHECK_AUDIT(p);
	for (unsigned i = 0; i < nf / 2; i++)
		th_stamp(f[i], 3000, i);
	REQUIRE(iop_alloc_bulk(p, f + nf / 2, nf - nf / 2) == nf - nf / 2);
	st = STATS(p);
	CHECK_EQ(st.page_reuse, st.page_release);
	CHECK_EQ(st.bytes_released, 0);
	CHECK_AUDIT(p);
	for (unsigned i = 0; i < nf / 2; i++)
		CHECK_STAMP(f[i], 3000, i);
	iop_free_bulk(p, f, nf);
	for (int i = 0; i < N; i += 16)
		iop_free(p, o[i]);
	iop_thread_flush();
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(pages_of_straddling_objects_go_only_when_wholly_free)
{
	return straddling(0);
}

TEST(checked_pool_poisons_released_pages_again_on_reuse)
{
	return straddling(IOP_F_CHECKED);
}

/* Decay gives back the free pages of the chunks it returns objects to:
 * two chunks each keep one object, the rest goes idle in the depot. */
TEST(decay_gives_back_the_free_pages_of_partly_used_chunks)
{
	th_watchdog(__func__, 60);
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = "decaying";
	pp.obj_size = OBJ;
	pp.flags = IOP_F_NO_THP;
	pp.decay_ms = 50;
	pp.decay_pct = 100;
	iop_pool_t *p = iop_pool_create(&pp);
	REQUIRE(p);
	enum { N = 2 * PER_CHUNK };
	void *o[N];
	REQUIRE(iop_alloc_bulk(p, o, N) == N);
	qsort(o, N, sizeof(void *), cmp_ptr);
	void *keep[2] = { o[0], o[N - 1] };
	for (int i = 0; i < N; i++)
		th_stamp(o[i], OBJ, (uint64_t)i);
	iop_free_bulk(p, o + 1, N - 2);
	/* This thread's cache to the depot (a per-thread cache is only asked
	 * to trim); the CPUs' idle caches the worker drains itself. */
	iop_thread_flush();
	while (STATS(p).page_release == 0)
		usleep(1000);
	struct iop_pool_stats st = STATS(p);
	printf("decay: %llu passes, %llu objects back to their chunks, %llu pages released, %llu chunks left\n",
	       (unsigned long long)st.decay_passes, (unsigned long long)st.decay_objs,
	       (unsigned long long)st.page_release, (unsigned long long)st.chunks);
	CHECK_GT(st.decay_passes, 0);
	CHECK_LE(st.bytes_released, st.page_release * (uint64_t)sysconf(_SC_PAGESIZE));
	CHECK_STAMP(keep[0], OBJ, 0);
	CHECK_STAMP(keep[1], OBJ, N - 1);
	CHECK_AUDIT(p);
	iop_free(p, keep[0]);
	iop_free(p, keep[1]);
	iop_thread_flush();
	CHECK_DESTROY(p);
	alarm(0);
	return TH_PASS;
}

static int keep_map(void *arg, void *base, size_t len, uint64_t *handle)
{
	(void)arg, (void)base, (void)len;
	*handle = 1;
	return 0;
}

TEST(pool_with_a_map_hook_keeps_its_pages)
{
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = "mapped";
	pp.obj_size = 4096;
	pp.map = keep_map;
	iop_pool_t *p = iop_pool_create(&pp);
	REQUIRE(p);
	enum { N = 512 };
	void *o[N];
	REQUIRE(iop_alloc_bulk(p, o, N) == N);
	iop_free_bulk(p, o + 1, N - 1);
	iop_thread_flush();
	iop_pool_shrink(p, 0);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.page_release, 0);
	CHECK_EQ(st.bytes_released, 0);
	iop_free(p, o[0]);
	CHECK_DESTROY(p);
	return TH_PASS;
}

int main(int argc, char **argv)
{
	return th_main(argc, argv);
}
