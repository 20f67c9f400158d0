/* SPDX-License-Identifier: MIT */
/*
 * The profiled side of --callgrind-loop-heap64-prof (bench/callgrind.sh):
 * the same loop as alloc_iopool.c's cg_heap64_loop, compiled with
 * IOP_PROFILE, so its iop_heap_alloc() records its call site and its free
 * finds it again.
 */
#define IOP_PROFILE
#include "bench.h"

#include <iopool.h>

void cg_heap64_prof_loop(unsigned long n);

CG_LOOP
void cg_heap64_prof_loop(unsigned long n)
{
	for (unsigned long i = 0; i < n; i++) {
		void *p = iop_heap_alloc(CG_HEAP64_SIZE);

		if (p == NULL)
			die("iop_heap_alloc failed");
		escape_reg(p);
		iop_heap_free(p);
	}
}
