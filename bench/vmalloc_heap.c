/* SPDX-License-Identifier: MIT */
/*
 * The test_vmalloc bodies on iopool's heap, and the plain side of the
 * profiling cost (vmalloc_profiled.c has the other).
 */
#include <iopool.h>

#define VM_ALLOC(size) iop_heap_alloc(size)
#define VM_ALLOC_ALIGNED(size, align) iop_heap_alloc_aligned((size), (align))
#define VM_FREE(p) iop_heap_free(p)
#define VM_TESTS vm_heap_tests
#include "vmalloc_tests.h"

/* VM_PAIRS_FN: iop_heap_alloc + iop_heap_free pairs of *size bytes, each
 * block's first byte written; shared with vmalloc_profiled.c. */
#define VM_PAIRS_FN vm_heap_pairs
#include "vmalloc_pairs.h"
