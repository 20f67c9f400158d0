// SPDX-License-Identifier: MIT
/* A stand-in libiopool.so.0 of another inline ABI number, for
 * tests/test_abi_load.c to link against: it defines only the symbol that
 * program references. */
#include <iopool.h>

void iop__free_slow(iop_pool_t *pool, void *obj)
{
	(void)pool;
	(void)obj;
}
