/* SPDX-License-Identifier: MIT */
/*
 * The test bodies of lib/test_vmalloc.c, written once and instantiated per
 * allocator so that each calls its allocator directly (no function pointer
 * per allocation). Include after defining:
 *
 *   VM_ALLOC(size)              a block, NULL on failure
 *   VM_ALLOC_ALIGNED(size, a)   a block aligned to a (a power of two)
 *   VM_FREE(p)
 *   VM_TESTS                    the name of the table to define
 *
 * As in the kernel, each block handed out has its first byte written (the
 * kernel's vmalloc also populates every page; here a block's pages are
 * touched only by what the allocator writes and by that one byte, except
 * the blocks that are held, which are touched once each).
 */
#include "bench.h"
#include "vmalloc.h"

#include <stdlib.h>

static inline uint64_t vm_rand(uint64_t *s)
{
	/* xorshift64*: every allocator sees the same sequence */
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static int fix_size(const struct vm_params *p, uint64_t *pairs)
{
	for (unsigned i = 0; i < p->loops; i++) {
		void *b = VM_ALLOC(3 * VM_PAGE);
		if (!b)
			return -1;
		touch(b, 0);
		VM_FREE(b);
	}
	*pairs += p->loops;
	return 0;
}

static int full_fit(const struct vm_params *p, uint64_t *pairs)
{
	unsigned fls = 0;
	int rv = 0;
	for (unsigned c = p->ncpus; c; c >>= 1)
		fls++;
	unsigned junk = fls * VM_JUNK_PAGES_PER_FLS;
	void **ptr = VM_ALLOC(sizeof(void *) * junk);
	void **junk_ptr = VM_ALLOC(sizeof(void *) * junk);
	if (!ptr || !junk_ptr)
		return -1;
	for (unsigned i = 0; i < junk; i++) {
		ptr[i] = VM_ALLOC(VM_PAGE);
		junk_ptr[i] = VM_ALLOC(VM_PAGE);
		if (!ptr[i] || !junk_ptr[i])
			return -1;
		touch(ptr[i], 1);
		touch(junk_ptr[i], 1);
	}
	for (unsigned i = 0; i < junk; i++)
		VM_FREE(junk_ptr[i]);
	for (unsigned i = 0; i < p->loops; i++) {
		void *b = VM_ALLOC(VM_PAGE);
		if (!b) {
			rv = -1;
			break;
		}
		touch(b, 1);
		VM_FREE(b);
	}
	for (unsigned i = 0; i < junk; i++)
		VM_FREE(ptr[i]);
	VM_FREE(ptr);
	VM_FREE(junk_ptr);
	*pairs += 2 + 2ull * junk + p->loops;
	return rv;
}

static int long_busy_list(const struct vm_params *p, uint64_t *pairs)
{
	void **ptr = VM_ALLOC(sizeof(void *) * VM_BUSY_LIST);
	int rv = 0;
	if (!ptr)
		return -1;
	for (unsigned i = 0; i < VM_BUSY_LIST; i++) {
		if (!(ptr[i] = VM_ALLOC(VM_PAGE)))
			return -1;
		touch(ptr[i], 1);
	}
	for (unsigned i = 0; i < p->loops; i++) {
		void *b1 = VM_ALLOC(100 * VM_PAGE);
		void *b2 = VM_ALLOC(VM_PAGE);
		if (!b1 || !b2) {
			rv = -1;
			break;
		}
		touch(b1, 0);
		touch(b2, 1);
		VM_FREE(b1);
		VM_FREE(b2);
	}
	for (unsigned i = 0; i < VM_BUSY_LIST; i++)
		VM_FREE(ptr[i]);
	VM_FREE(ptr);
	*pairs += 1 + VM_BUSY_LIST + 2ull * p->loops;
	return rv;
}

static int random_size(const struct vm_params *p, uint64_t *pairs)
{
	uint64_t s = p->seed;
	for (unsigned i = 0; i < p->loops; i++) {
		unsigned n = (unsigned)(vm_rand(&s) % 100) + 1;
		void *b = VM_ALLOC((size_t)n * VM_PAGE);
		if (!b)
			return -1;
		touch(b, 1);
		VM_FREE(b);
	}
	*pairs += p->loops;
	return 0;
}

static int fix_align(const struct vm_params *p, uint64_t *pairs)
{
	/* THREAD_ALIGN << 1 on x86-64: 2 * 16 KiB */
	for (unsigned i = 0; i < p->loops; i++) {
		void *b = VM_ALLOC_ALIGNED(5 * VM_PAGE, 32768);
		if (!b)
			return -1;
		touch(b, 0);
		VM_FREE(b);
	}
	*pairs += p->loops;
	return 0;
}

static int random_size_align(const struct vm_params *p, uint64_t *pairs)
{
	uint64_t s = p->seed;
	for (unsigned i = 0; i < p->loops; i++) {
		uint64_t rnd = vm_rand(&s);
		size_t align = (size_t)1 << (rnd % 23);   /* up to 1024 pages */
		size_t size = ((rnd % 10) + 1) * VM_PAGE; /* up to 10 pages */
		void *b = VM_ALLOC_ALIGNED(size, align);
		if (!b)
			return -1;
		touch(b, 0);
		VM_FREE(b);
	}
	*pairs += p->loops;
	return 0;
}

static int pcpu(const struct vm_params *p, uint64_t *pairs)
{
	uint64_t s = p->seed;
	void **obj = VM_ALLOC(sizeof(void *) * VM_PCPU_OBJECTS);
	int rv = 0;
	if (!obj)
		return -1;
	for (unsigned i = 0; i < VM_PCPU_OBJECTS; i++) {
		size_t size = (size_t)(vm_rand(&s) % (VM_PAGE / 4)) + 1;
		size_t align = (size_t)1 << ((i % 11) + 1);
		obj[i] = VM_ALLOC_ALIGNED(size, align);
		if (obj[i])
			touch(obj[i], 0);
		else
			rv = -1;
	}
	for (unsigned i = 0; i < VM_PCPU_OBJECTS; i++)
		if (obj[i])
			VM_FREE(obj[i]);
	VM_FREE(obj);
	*pairs += 1 + VM_PCPU_OBJECTS;
	return rv;
}

const vm_test_fn VM_TESTS[VM_NTESTS] = {
	[VM_FIX_SIZE] = fix_size,
	[VM_FULL_FIT] = full_fit,
	[VM_LONG_BUSY_LIST] = long_busy_list,
	[VM_RANDOM_SIZE] = random_size,
	[VM_FIX_ALIGN] = fix_align,
	[VM_RANDOM_SIZE_ALIGN] = random_size_align,
	[VM_PCPU] = pcpu,
};
