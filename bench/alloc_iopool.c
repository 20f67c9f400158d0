/* SPDX-License-Identifier: MIT */
/*
 * iopool under the cases: one pool per case (per size in `size`), default
 * parameters (magazine size chosen from the object size), the public calls
 * only, linked statically as an application would. The recycle case's
 * buf_put uses a pool that differs only by IOP_F_REFCOUNT.
 */
#include "bench.h"

#include <errno.h>
#include <string.h>

#include <iopool.h>

#define A_NAME "iopool"

typedef struct {
	iop_pool_t *pool;
} actx_t;

static int open_pool(actx_t *c, size_t obj_size, uint32_t flags, char *why,
		     size_t len)
{
	struct iop_pool_params p = IOP_POOL_PARAMS_INIT;

	p.name = "bench";
	p.obj_size = obj_size;
	p.flags = flags;
	c->pool = iop_pool_create(&p);
	if (c->pool == NULL) {
		snprintf(why, len, "iop_pool_create(obj_size %zu, flags %#x): "
			 "%s", obj_size, flags, strerror(errno));
		return -1;
	}
	return 0;
}

static int actx_open(actx_t *c, size_t obj_size, char *why, size_t len)
{
	return open_pool(c, obj_size, 0, why, len);
}

#define A_HAS_BUF 1

static int actx_open_buf(actx_t *c, size_t obj_size, char *why, size_t len)
{
	return open_pool(c, obj_size, IOP_F_REFCOUNT, why, len);
}

static inline void *a_buf_alloc(actx_t *c)
{
	return iop_buf_alloc(c->pool);
}

static inline void a_buf_put(actx_t *c, void *p)
{
	iop_buf_put(c->pool, p);
}

static void actx_close(actx_t *c)
{
	int rc = iop_pool_destroy(c->pool);

	if (rc != 0)
		die("iop_pool_destroy: %s", strerror(-rc));
}

static inline void *a_alloc(actx_t *c)
{
	return iop_alloc(c->pool);
}

static inline void a_free(actx_t *c, void *p)
{
	iop_free(c->pool, p);
}

static inline int a_alloc_bulk(actx_t *c, void **objs, unsigned n)
{
	return iop_alloc_bulk(c->pool, objs, n) == n ? 0 : -1;
}

static inline void a_free_bulk(actx_t *c, void **objs, unsigned n)
{
	iop_free_bulk(c->pool, objs, n);
}

static int a_thread_enter(char *why, size_t len)
{
	(void)why;
	(void)len;
	return 0;
}

static void a_thread_exit(void)
{
	/* A thread that exits returns its magazines by itself. */
}

#include "cases.h"

int child_iopool(const struct child_opts *o)
{
	run_cases(o);
	return 0;
}

/* ---- callgrind: exactly n fast-path pairs, nothing else in the frame ---- */

void cg_fastpath_loop(iop_pool_t *pool, unsigned long n);

CG_LOOP
void cg_fastpath_loop(iop_pool_t *pool, unsigned long n)
{
	for (unsigned long i = 0; i < n; i++) {
		void *p = iop_alloc(pool);

		if (p == NULL)
			die("iop_alloc failed");
		escape_reg(p);
		iop_free(pool, p);
	}
}

/* The same for refcounted buffers: n iop_buf_alloc+iop_buf_put pairs. */
void cg_buf_loop(iop_pool_t *pool, unsigned long n);

CG_LOOP
void cg_buf_loop(iop_pool_t *pool, unsigned long n)
{
	for (unsigned long i = 0; i < n; i++) {
		void *p = iop_buf_alloc(pool);

		if (p == NULL)
			die("iop_buf_alloc failed");
		escape_reg(p);
		iop_buf_put(pool, p);
	}
}

/* Create the pool, run one of the loops above n times in it, destroy it. */
static int callgrind_run(const char *name, uint64_t limit, uint32_t flags,
			 void (*loop)(iop_pool_t *, unsigned long), unsigned long n,
			 const char *what)
{
	struct iop_pool_params p = IOP_POOL_PARAMS_INIT;
	iop_pool_t *pool;
	int rc;

	bench_rseq_stand_in();
	p.name = name;
	p.obj_size = OBJ_SIZE_DEFAULT;
	p.limit = limit;
	p.flags = flags;
	pool = iop_pool_create(&p);
	if (pool == NULL)
		die("iop_pool_create: %s", strerror(errno));
	loop(pool, n);
	iop_thread_flush();
	rc = iop_pool_destroy(pool);
	if (rc != 0)
		die("iop_pool_destroy: %s", strerror(-rc));
	printf("%s: %lu %s pairs of %u B\n", name, n, what, OBJ_SIZE_DEFAULT);
	return 0;
}

int callgrind_iopool(unsigned long n)
{
	return callgrind_run("cg_fastpath_loop", 0, 0, cg_fastpath_loop, n, "iop_alloc+iop_free");
}

int callgrind_iopool_buf(unsigned long n)
{
	return callgrind_run("cg_buf_loop", 0, IOP_F_REFCOUNT, cg_buf_loop, n, "iop_buf_alloc+iop_buf_put");
}

int callgrind_iopool_bounded(unsigned long n)
{
	/* The same loop as the unbounded pair: a bounded pool's calls run in
	 * the library (one atomic on the in-flight count each). */
	return callgrind_run("cg_fastpath_loop (bounded)", 1024, 0, cg_fastpath_loop, n,
			     "iop_alloc+iop_free (limit 1024)");
}

/* Bulk calls of CG_BULK objects (DPDK's burst of 64): n objects in all,
 * n / CG_BULK iop_alloc_bulk+iop_free_bulk pairs, so that callgrind.sh's
 * difference over n is instructions per object. */
void cg_bulk_loop(iop_pool_t *pool, unsigned long n);

CG_LOOP
void cg_bulk_loop(iop_pool_t *pool, unsigned long n)
{
	void *objs[CG_BULK];

	for (unsigned long i = 0; i < n / CG_BULK; i++) {
		if (iop_alloc_bulk(pool, objs, CG_BULK) != CG_BULK)
			die("iop_alloc_bulk failed");
		escape_reg(objs[0]);
		iop_free_bulk(pool, objs, CG_BULK);
	}
}

int callgrind_iopool_bulk(unsigned long n)
{
	return callgrind_run("cg_bulk_loop", 0, 0, cg_bulk_loop, n,
			     "objects through iop_alloc_bulk+iop_free_bulk of " IOP_BENCH_STR(CG_BULK) ",");
}

/* The heap's inline pair and a malloc pair of the same size (3 pages, as
 * test_vmalloc's fix_size_alloc_test), for bench/callgrind.sh. */
#define CG_HEAP_SIZE 12288u

void cg_malloc_loop(unsigned long n);

CG_HEAP_PAIR_LOOP(cg_heap_loop, CG_HEAP_SIZE)

CG_LOOP
void cg_malloc_loop(unsigned long n)
{
	for (unsigned long i = 0; i < n; i++) {
		void *p = malloc(CG_HEAP_SIZE);

		if (p == NULL)
			die("malloc failed");
		escape_reg(p);
		free(p);
	}
}

/* Run one of the heap pair loops n times, its class pool made first. */
static int heap_pairs(void (*loop)(unsigned long), const char *name, unsigned size, unsigned long n)
{
	bench_rseq_stand_in();
	iop_heap_free(iop_heap_alloc(size)); /* the class pool exists */
	loop(n);
	printf("%s: %lu iop_heap_alloc+iop_heap_free pairs of %u B\n", name, n, size);
	return 0;
}

int callgrind_heap(unsigned long n)
{
	return heap_pairs(cg_heap_loop, "cg_heap_loop", CG_HEAP_SIZE, n);
}

/* The profiling cost: the same pair of 64 B, plain here, with IOP_PROFILE
 * in cg_heap_prof.c. The plain run makes no profiled call, so its frees
 * see profiling off; the profiled run's first pair registers the site and
 * makes the thread's table and the chunk's site array. */
CG_HEAP_PAIR_LOOP(cg_heap64_loop, CG_HEAP64_SIZE)

int callgrind_heap64(unsigned long n)
{
	return heap_pairs(cg_heap64_loop, "cg_heap64_loop", CG_HEAP64_SIZE, n);
}

int callgrind_heap64_prof(unsigned long n)
{
	bench_rseq_stand_in();
	cg_heap64_prof_loop(1); /* the pool, the site, the table, the array */
	cg_heap64_prof_loop(n);
	printf("cg_heap64_prof_loop: %lu profiled iop_heap_alloc+iop_heap_free pairs of %u B\n", n,
	       CG_HEAP64_SIZE);
	return 0;
}

int callgrind_malloc(unsigned long n)
{
	free(malloc(CG_HEAP_SIZE));
	cg_malloc_loop(n);
	printf("cg_malloc_loop: %lu malloc+free pairs of %u B\n", n, CG_HEAP_SIZE);
	return 0;
}
