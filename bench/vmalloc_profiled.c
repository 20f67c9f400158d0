/* SPDX-License-Identifier: MIT */
/*
 * The profiled side of the profiling cost: the same loop as
 * vmalloc_heap.c's, with IOP_PROFILE, so its iop_heap_alloc() records its
 * call site and every free finds it.
 */
#define IOP_PROFILE
#include <iopool.h>

#include "vmalloc.h"

#define VM_PAIRS_FN vm_heap_pairs_profiled
#include "vmalloc_pairs.h"
