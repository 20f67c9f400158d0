/* SPDX-License-Identifier: MIT */
/*
 * Programs for memcheck (tests/valgrind.sh runs each under valgrind and
 * reads its report). Four carry one bug each in a pool object, which
 * memcheck must name as it names the same bug in a malloc'd block:
 *
 *   write_after_free   a write to an object after iop_free()
 *   overflow           an 8-byte write just past an object
 *   uninit_branch      a branch on a fresh object's bytes, never written
 *   leak               an object whose last pointer is dropped
 *
 * The others are correct and must run clean, leaks included:
 *
 *   heap               iop_heap_alloc/free of many sizes, aligned and large
 *   bufs_bulk          refcounted buffers, fragments, the bulk calls and a
 *                      bounded pool
 *
 * Small loops: valgrind runs this 20-50 times slower than the CPU.
 */
#include <iopool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OBJ_SIZE 256

static iop_pool_t *make_pool(const char *name, uint32_t flags, uint64_t limit)
{
	struct iop_pool_params p = IOP_POOL_PARAMS_INIT;
	p.name = name;
	p.obj_size = OBJ_SIZE;
	p.flags = flags;
	p.limit = limit;
	iop_pool_t *pool = iop_pool_create(&p);
	if (!pool) {
		perror("iop_pool_create");
		exit(2);
	}
	return pool;
}

static void destroy(iop_pool_t *pool)
{
	int rc = iop_pool_destroy(pool);
	if (rc) {
		fprintf(stderr, "iop_pool_destroy: %s\n", strerror(-rc));
		exit(2);
	}
}

/* Keeps the compiler from proving the bugs away. */
static void *volatile sink;

static int write_after_free(void)
{
	iop_pool_t *pool = make_pool("vg-uaf", 0, 0);
	char *p = iop_alloc(pool);
	memset(p, 1, OBJ_SIZE);
	iop_free(pool, p);
	((volatile char *)p)[16] = 2; /* the bug */
	destroy(pool);
	return 0;
}

static int overflow(void)
{
	iop_pool_t *pool = make_pool("vg-overflow", 0, 0);
	/* Eight objects in flight: the one overflowed has a neighbour in
	 * flight right after it, unless the pool left a gap. */
	char *v[8];
	for (int i = 0; i < 8; i++) {
		v[i] = iop_alloc(pool);
		memset(v[i], 1, OBJ_SIZE);
	}
	char *p = v[0];
	for (int i = 1; i < 8; i++)
		if (v[i] < p)
			p = v[i];
	*(volatile uint64_t *)(p + OBJ_SIZE) = 3; /* the bug: 8 bytes past the end */
	for (int i = 0; i < 8; i++)
		iop_free(pool, v[i]);
	destroy(pool);
	return 0;
}

static int uninit_branch(void)
{
	iop_pool_t *pool = make_pool("vg-uninit", 0, 0);
	/* A recycled object too: its old bytes must not count as written. */
	char *q = iop_alloc(pool);
	memset(q, 0, OBJ_SIZE);
	iop_free(pool, q);
	char *p = iop_alloc(pool);
	if (((volatile char *)p)[8] == 7) /* the bug: never written */
		puts("seven");
	iop_free(pool, p);
	destroy(pool);
	return 0;
}

static __attribute__((noinline)) void lose_one(iop_pool_t *pool)
{
	char *p = iop_alloc(pool);
	memset(p, 1, OBJ_SIZE);
	p = NULL; /* the bug */
}

static int leak(void)
{
	iop_pool_t *pool = make_pool("vg-leak", 0, 0);
	/* Others come and go around it, as in a real program. */
	void *keep[8];
	for (int i = 0; i < 8; i++)
		keep[i] = iop_alloc(pool);
	lose_one(pool);
	for (int i = 0; i < 8; i++)
		iop_free(pool, keep[i]);
	/* Not destroyed: it would refuse (-EBUSY) with the object in flight. */
	return 0;
}

static int heap(void)
{
	void *b[64];
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 64; i++) {
			size_t size = (size_t)1 << (i % 21); /* 1 B to 1 MiB */
			b[i] = iop_heap_alloc(size + (size_t)i);
			if (!b[i])
				return 2;
			memset(b[i], i, size < 4096 ? size : 4096);
		}
		for (int i = 0; i < 64; i += 2)
			iop_heap_free(b[i]);
		for (int i = 0; i < 64; i += 2) {
			b[i] = iop_heap_alloc_aligned(100, 64);
			if (!b[i] || (uintptr_t)b[i] % 64)
				return 2;
			memset(b[i], 0, 100);
		}
		for (int i = 0; i < 64; i++)
			iop_heap_free(b[i]);
	}
	/* Above the classes: mapped on its own. */
	char *big = iop_heap_alloc((size_t)3 << 20);
	if (!big)
		return 2;
	memset(big, 1, 4096);
	big[((size_t)3 << 20) - 1] = 1;
	iop_heap_free(big);
	return 0;
}

static int bufs_bulk(void)
{
	iop_pool_t *pool = make_pool("vg-bufs", IOP_F_REFCOUNT, 0);
	void *v[32];
	for (int round = 0; round < 4; round++) {
		char *b = iop_buf_alloc(pool);
		memset(b, 1, OBJ_SIZE);
		iop_buf_get(pool, b);
		iop_buf_put(pool, b);
		iop_buf_put(pool, b);
		unsigned n = iop_buf_alloc_bulk(pool, v, 32);
		for (unsigned i = 0; i < n; i++) {
			memset(v[i], 2, OBJ_SIZE);
			iop_buf_put(pool, v[i]);
		}
		n = iop_alloc_bulk(pool, v, 32);
		for (unsigned i = 0; i < n; i++)
			memset(v[i], 3, OBJ_SIZE);
		iop_free_bulk(pool, v, n);
	}
	iop_frag_t *fc = iop_frag_create(pool);
	for (int i = 0; i < 40; i++) {
		char *f = iop_frag_alloc(fc, 24, 8);
		memset(f, 4, 24);
		sink = f;
		iop_buf_put(pool, f);
	}
	iop_frag_destroy(fc);
	/* Not destroyed: a pool that lives as long as the process, as a
	 * server's do; its thread's magazines must not look lost at exit. */
	(void)pool;

	iop_pool_t *bounded = make_pool("vg-bounded", 0, 64);
	for (int round = 0; round < 4; round++) {
		unsigned n = iop_alloc_bulk(bounded, v, 32);
		for (unsigned i = 0; i < n; i++)
			memset(v[i], 5, OBJ_SIZE);
		iop_free_bulk(bounded, v, n);
		void *p = NULL;
		if (iop_alloc_ex(bounded, &p, IOP_NOWAIT, 0) == 0) {
			memset(p, 6, OBJ_SIZE);
			iop_free(bounded, p);
		}
	}
	destroy(bounded);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{ "write_after_free", write_after_free },
		{ "overflow", overflow },
		{ "uninit_branch", uninit_branch },
		{ "leak", leak },
		{ "heap", heap },
		{ "bufs_bulk", bufs_bulk },
	};
	for (size_t i = 0; argc == 2 && i < sizeof(cases) / sizeof(cases[0]); i++)
		if (!strcmp(argv[1], cases[i].name))
			return cases[i].fn();
	fprintf(stderr, "usage: %s write_after_free|overflow|uninit_branch|leak|heap|bufs_bulk\n", argv[0]);
	return 2;
}
