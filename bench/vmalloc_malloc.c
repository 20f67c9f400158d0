/* SPDX-License-Identifier: MIT */
/*
 * The test_vmalloc bodies on malloc: glibc's, or jemalloc's, mimalloc's or
 * tcmalloc's when the driver preloads them. Aligned blocks come from
 * posix_memalign(), which wants at least the size of a pointer.
 */
#include <stdlib.h>

static inline void *vm_malloc_aligned(size_t size, size_t align)
{
	void *p;
	if (align < sizeof(void *))
		align = sizeof(void *);
	return posix_memalign(&p, align, size) == 0 ? p : NULL;
}

#define VM_ALLOC(size) malloc(size)
#define VM_ALLOC_ALIGNED(size, align) vm_malloc_aligned((size), (align))
#define VM_FREE(p) free(p)
#define VM_TESTS vm_malloc_tests
#include "vmalloc_tests.h"
