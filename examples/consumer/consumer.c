/* SPDX-License-Identifier: MIT */
/* A minimal iopool user. This is the usage example of README.md, line for
 * line from the #include down (CI checks that they match); CI builds it
 * against the installed library with pkg-config (Makefile) and with CMake's
 * find_package(iopool) (CMakeLists.txt), and runs it. */
#include <iopool.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
	struct iop_pool_params params = IOP_POOL_PARAMS_INIT;
	params.name = "rx-buffers";
	params.obj_size = 2048;

	iop_pool_t *pool = iop_pool_create(&params);
	if (!pool) {
		perror("iop_pool_create");
		return 1;
	}

	char *buf = iop_alloc(pool); /* fast path: a pop from this thread's cache */
	if (!buf || iop_pool_of(buf) != pool) /* owner found from the address */
		return 1;
	memset(buf, 0, iop_pool_obj_size(pool));
	iop_free(pool, buf);

	void *batch[64]; /* the bulk calls are the primitives */
	unsigned n = iop_alloc_bulk(pool, batch, 64); /* fewer only on ENOMEM */
	iop_free_bulk(pool, batch, n);

	iop_pool_stats_print(pool, stdout, IOP_FMT_TEXT);
	return iop_pool_destroy(pool) == 0 ? 0 : 1; /* -EBUSY if any in flight */
}
