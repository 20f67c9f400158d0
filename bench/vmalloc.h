/* SPDX-License-Identifier: MIT */
/*
 * iopool-vmalloc-bench: the kernel's test_vmalloc (lib/test_vmalloc.c)
 * brought to user space, run against iopool's heap and the malloc family.
 * Shared by the driver (vmalloc.c) and the per-allocator test bodies
 * (vmalloc_tests.h, instantiated by vmalloc_heap.c and vmalloc_malloc.c).
 */
#ifndef IOPOOL_VMALLOC_BENCH_H
#define IOPOOL_VMALLOC_BENCH_H

#include <stdint.h>

/* The tests, numbered as test_vmalloc numbers them: bit i of
 * run_test_mask selects test i. */
enum vm_test {
	VM_FIX_SIZE,          /* 1:   3 pages, alloc+free */
	VM_FULL_FIT,          /* 2:   fill, punch holes, then 1 page each */
	VM_LONG_BUSY_LIST,    /* 4:   15000 pages held while 100+1 churn */
	VM_RANDOM_SIZE,       /* 8:   1-100 pages */
	VM_FIX_ALIGN,         /* 16:  5 pages aligned to 32 KiB */
	VM_RANDOM_SIZE_ALIGN, /* 32:  1-10 pages aligned to 2^(0..22) */
	VM_ALIGN_SHIFT,       /* 64:  meant to fail in the kernel: not run */
	VM_PCPU,              /* 128: 35000 small objects held, then freed */
	VM_NTESTS
};

#define VM_PAGE 4096u
/* The kernel's full_fit fills 32 MiB per bit of the CPU count (fls); here
 * 4 MiB, so that 64 threads stay within a few GiB. */
#define VM_JUNK_PAGES_PER_FLS 1024u
#define VM_BUSY_LIST 15000u      /* the kernel's */
#define VM_PCPU_OBJECTS 35000u   /* the kernel's */

struct vm_params {
	unsigned loops;    /* test_loop_count */
	unsigned ncpus;    /* for full_fit's fls(num_online_cpus()) */
	uint64_t seed;
};

/* One run of a test on the calling thread; adds the alloc+free pairs it
 * made to *pairs. 0, or -1 when an allocation failed. */
typedef int (*vm_test_fn)(const struct vm_params *p, uint64_t *pairs);

extern const vm_test_fn vm_heap_tests[VM_NTESTS];
extern const vm_test_fn vm_malloc_tests[VM_NTESTS];

/* iop_heap_alloc(size) + iop_heap_free() pairs, without and with
 * IOP_PROFILE (vmalloc_heap.c, vmalloc_profiled.c); elapsed ns. */
uint64_t vm_heap_pairs(void *size, uint64_t iters);
uint64_t vm_heap_pairs_profiled(void *size, uint64_t iters);

#endif /* IOPOOL_VMALLOC_BENCH_H */
