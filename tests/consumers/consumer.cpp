// SPDX-License-Identifier: MIT
// A C++ user of iopool.h: built by tests/consumers/build.sh with g++ and
// clang++ at C++11, 17 and 20 under -Wall -Wextra -pedantic -Wshadow
// -Wold-style-cast -Werror (clang++ also -Wzero-as-null-pointer-constant),
// so that a C++ project with -Werror can include the header and call its
// inline fast paths. It runs too: every call is checked.
#include <iopool.h>

#include <cstdio>
#include <cstring>

static int fail(const char *what)
{
	std::fprintf(stderr, "consumer.cpp: %s failed\n", what);
	return 1;
}

int main()
{
	struct iop_pool_params params;
	iop_pool_params_init(&params); // the C++ way: no designated initializers
	params.name = "cxx-pool";
	params.obj_size = 256;
	iop_pool_t *pool = iop_pool_create(&params);
	if (!pool)
		return fail("iop_pool_create");

	void *obj = iop_alloc(pool); // inline fast path
	if (!obj || iop_pool_of(obj) != pool)
		return fail("iop_alloc");
	std::memset(obj, 1, iop_pool_obj_size(pool));
	iop_free(pool, obj);

	void *batch[32];
	unsigned n = iop_alloc_bulk(pool, batch, 32);
	if (n != 32)
		return fail("iop_alloc_bulk");
	iop_free_bulk(pool, batch, n);

	struct iop_pool_params bp;
	iop_pool_params_init(&bp);
	bp.name = "cxx-bufs";
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

	char *h = static_cast<char *>(iop_heap_alloc(100));
	if (!h || iop_heap_size(h) < 100)
		return fail("iop_heap_alloc");
	std::memset(h, 2, 100);
	iop_heap_free(h);

	struct iop_publish_params pp;
	iop_publish_params_init(&pp);
	if (pp.struct_size != sizeof(pp) || pp.interval_ms != 0)
		return fail("iop_publish_params_init");

	if (iop_pool_destroy(bufs) != 0 || iop_pool_destroy(pool) != 0)
		return fail("iop_pool_destroy");
	std::puts("consumer.cpp: ok");
	return 0;
}
