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

CG_HEAP_PAIR_LOOP(cg_heap64_prof_loop, CG_HEAP64_SIZE)
