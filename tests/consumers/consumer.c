/* SPDX-License-Identifier: MIT */
/*
 * A C user of iopool.h: built by tests/consumers/build.sh at -std=c99 and
 * -std=c11 with -Wall -Wextra -pedantic -Wshadow -Werror, against the inline fast
 * paths (iop_alloc, iop_free, the bulk calls, refcounted buffers, the
 * heap) and both ways of initialising parameters. It runs too: every call
 * is checked.
 */
#include <iopool.h>

#include <stdio.h>
#include <string.h>

static int fail(const char *what)
{
	fprintf(stderr, "consumer.c: %s failed\n", what);
	return 1;
}

int main(void)
{
	struct iop_pool_params params = IOP_POOL_PARAMS_INIT; /* the macro */
	params.name = "c-pool";
	params.obj_size = 256;
	iop_pool_t *pool = iop_pool_create(&params);
	if (!pool)
		return fail("iop_pool_create");

	void *obj = iop_alloc(pool);
	if (!obj || iop_pool_of(obj) != pool)
		return fail("iop_alloc");
	memset(obj, 1, iop_pool_obj_size(pool));
	iop_free(pool, obj);

	void *batch[32];
	unsigned n = iop_alloc_bulk(pool, batch, 32);
	if (n != 32)
		return fail("iop_alloc_bulk");
	iop_free_bulk(pool, batch, n);

	struct iop_pool_params bp;
	iop_pool_params_init(&bp); /* the call */
	bp.name = "c-bufs";
	bp.obj_size = 2048;
	bp.flags = IOP_F_REFCOUNT;
	iop_pool_t *bufs = iop_pool_create(&bp);
	if (!bufs)
		return fail("iop_pool_create (refcount)");
	void *buf = iop_buf_alloc(bufs);
	if (!buf)
		return fail("iop_buf_alloc");
	iop_buf_get(bufs, buf);
	if (iop_buf_refcount(bufs, buf) != 2)
		return fail("iop_buf_refcount");
	iop_buf_put(bufs, buf);
	iop_buf_put(bufs, buf);

	char *h = iop_heap_alloc(100);
	if (!h || iop_heap_size(h) < 100)
		return fail("iop_heap_alloc");
	memset(h, 2, 100);
	iop_heap_free(h);

	struct iop_publish_params pp = IOP_PUBLISH_PARAMS_INIT, pq;
	iop_publish_params_init(&pq);
	if (memcmp(&pp, &pq, sizeof(pp)) != 0)
		return fail("iop_publish_params_init");

	if (iop_pool_destroy(bufs) != 0 || iop_pool_destroy(pool) != 0)
		return fail("iop_pool_destroy");
	puts("consumer.c: ok");
	return 0;
}
