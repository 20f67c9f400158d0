/* SPDX-License-Identifier: MIT */
/*
 * DPDK's rte_mempool under the cases, in a child of its own (EAL state is
 * process-wide). EAL runs without hugepages or PCI, from anonymous memory:
 *   --no-huge --no-pci -l 0 -m 512 --no-shconf --no-telemetry
 * (--in-memory would be the tidier choice but EAL refuses it together with
 * --no-huge, so --no-shconf and a unique --file-prefix keep runs apart, and
 * the runtime directory EAL creates anyway is removed at exit).
 *
 * Pools: per-lcore cache of 512 objects (RTE_MEMPOOL_CACHE_MAX_SIZE), the
 * default multi-producer/multi-consumer ring behind it, and enough objects
 * that every registered lcore of the threads case can fill its cache.
 * Objects go through rte_mempool_get/put and their _bulk variants, inlined
 * from rte_mempool.h. Threads other than the main one register with
 * rte_thread_register() to get an lcore id, and so a cache.
 */
#include "bench.h"

#ifdef IOP_BENCH_HAVE_DPDK

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mempool.h>

#define A_NAME "dpdk"

/* EAL's memory (-m, MiB): the largest single pool below must fit. */
#define EAL_MEM_MB "512"
/* Bytes one pool should take, so the big objects of `size` fit in -m 512. */
#define POOL_BYTES_MAX (160u << 20)
/* But never fewer objects than a cache of 512 needs: mempool refuses a cache
 * whose flush threshold (1.5 x 512 = 768) exceeds the pool; 2^10 - 1 is the
 * ring's exact fit. The 256 KiB pool then takes 256 MiB. */
#define POOL_OBJS_MIN 1023u
/* 64 lcores x (512 cached + the 1.5x flush headroom) fit in 65535. */
#define POOL_OBJS_MAX 65535u

typedef struct {
	struct rte_mempool *mp;
} actx_t;

static int actx_open(actx_t *c, size_t obj_size, char *why, size_t len)
{
	static unsigned seq;
	unsigned n = POOL_BYTES_MAX / (unsigned)(obj_size + 128), cache = 512;
	char name[RTE_MEMPOOL_NAMESIZE];

	if (n < POOL_OBJS_MIN)
		n = POOL_OBJS_MIN;
	if (n > POOL_OBJS_MAX)
		n = POOL_OBJS_MAX;
	snprintf(name, sizeof(name), "bench%u", seq++);
	c->mp = rte_mempool_create(name, n, (unsigned)obj_size, cache, 0, NULL,
				   NULL, NULL, NULL, SOCKET_ID_ANY, 0);
	if (c->mp == NULL) {
		snprintf(why, len, "rte_mempool_create(%u x %zu B, cache %u): %s",
			 n, obj_size, cache, rte_strerror(rte_errno));
		return -1;
	}
	return 0;
}

static void actx_close(actx_t *c)
{
	rte_mempool_free(c->mp);
}

static inline void *a_alloc(actx_t *c)
{
	void *p;

	if (rte_mempool_get(c->mp, &p) != 0)
		return NULL;
	return p;
}

static inline void a_free(actx_t *c, void *p)
{
	rte_mempool_put(c->mp, p);
}

static inline int a_alloc_bulk(actx_t *c, void **objs, unsigned n)
{
	return rte_mempool_get_bulk(c->mp, objs, n) == 0 ? 0 : -1;
}

static inline void a_free_bulk(actx_t *c, void **objs, unsigned n)
{
	rte_mempool_put_bulk(c->mp, objs, n);
}

static int a_thread_enter(char *why, size_t len)
{
	if (rte_thread_register() == 0)
		return 0;
	snprintf(why, len, "rte_thread_register: %s", rte_strerror(rte_errno));
	return -1;
}

static void a_thread_exit(void)
{
	rte_thread_unregister();
}

#include "cases.h"

static char runtime_dir[512];

/* Also iopool-mempool-perf's (bench.h). */
void bench_eal_up(void)
{
	char prefix[64];
	char *argv[] = {
		"iopool-bench", "--no-huge", "--no-pci", "-l", "0",
		"-m", EAL_MEM_MB, "--no-shconf", "--no-telemetry",
		"--log-level=lib.*:error", prefix, NULL
	};
	cpu_set_t cpus;

	snprintf(prefix, sizeof(prefix), "--file-prefix=iopoolbench%ld",
		 (long)getpid());
	if (sched_getaffinity(0, sizeof(cpus), &cpus) != 0)
		die("sched_getaffinity: %s", strerror(errno));
	if (rte_eal_init((int)(sizeof(argv) / sizeof(argv[0])) - 1, argv) < 0)
		die("rte_eal_init: %s", rte_strerror(rte_errno));
	snprintf(runtime_dir, sizeof(runtime_dir), "%s",
		 rte_eal_get_runtime_dir());
	/* EAL pinned this thread to the CPU of lcore 0, and new threads would
	 * inherit that; give the affinity back so that the crossthread and
	 * threads cases are scheduled as they are for every other allocator. */
	errno = pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
	if (errno != 0)
		die("pthread_setaffinity_np: %s", strerror(errno));
}

void bench_eal_down(void)
{
	DIR *d;
	struct dirent *e;

	rte_eal_cleanup();
	/* Remove what EAL left in its runtime directory, then the directory. */
	d = opendir(runtime_dir);
	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		char path[1024];

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", runtime_dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(runtime_dir);
}

int child_dpdk(const struct child_opts *o)
{
	bench_eal_up();
	run_cases(o);
	bench_eal_down();
	return 0;
}

/* ---- callgrind: exactly n get+put pairs, inlined from rte_mempool.h ---- */

void cg_dpdk_loop(struct rte_mempool *mp, unsigned long n);

CG_LOOP
void cg_dpdk_loop(struct rte_mempool *mp, unsigned long n)
{
	for (unsigned long i = 0; i < n; i++) {
		void *p;

		if (rte_mempool_get(mp, &p) != 0)
			die("rte_mempool_get failed");
		escape_reg(p);
		rte_mempool_put(mp, p);
	}
}

/* rte_mempool_get_bulk+put_bulk of CG_BULK, as cg_bulk_loop. */
void cg_dpdk_bulk_loop(struct rte_mempool *mp, unsigned long n);

CG_LOOP
void cg_dpdk_bulk_loop(struct rte_mempool *mp, unsigned long n)
{
	void *objs[CG_BULK];

	for (unsigned long i = 0; i < n / CG_BULK; i++) {
		if (rte_mempool_get_bulk(mp, objs, CG_BULK) != 0)
			die("rte_mempool_get_bulk failed");
		escape_reg(objs[0]);
		rte_mempool_put_bulk(mp, objs, CG_BULK);
	}
}

int callgrind_dpdk_bulk(unsigned long n)
{
	actx_t c;
	char why[192];

	bench_eal_up();
	if (actx_open(&c, OBJ_SIZE_DEFAULT, why, sizeof(why)) != 0)
		die("%s", why);
	cg_dpdk_bulk_loop(c.mp, n);
	actx_close(&c);
	bench_eal_down();
	printf("cg_dpdk_bulk_loop: %lu objects through rte_mempool_get_bulk+put_bulk of %u\n", n, CG_BULK);
	return 0;
}

int callgrind_dpdk(unsigned long n)
{
	actx_t c;
	char why[192];

	bench_eal_up();
	if (actx_open(&c, OBJ_SIZE_DEFAULT, why, sizeof(why)) != 0)
		die("%s", why);
	cg_dpdk_loop(c.mp, n);
	actx_close(&c);
	bench_eal_down();
	printf("cg_dpdk_loop: %lu rte_mempool_get+put pairs of %u B\n", n,
	       OBJ_SIZE_DEFAULT);
	return 0;
}

#else /* !IOP_BENCH_HAVE_DPDK */

#include <stdio.h>

int child_dpdk(const struct child_opts *o)
{
	(void)o;
	die("%s", bench_allocs[ALLOC_DPDK].why_not);
}

int callgrind_dpdk_bulk(unsigned long n)
{
	return callgrind_dpdk(n);
}

int callgrind_dpdk(unsigned long n)
{
	(void)n;
	fprintf(stderr, "iopool-bench: dpdk: %s\n",
		bench_allocs[ALLOC_DPDK].why_not);
	return 77;
}

#endif /* IOP_BENCH_HAVE_DPDK */
