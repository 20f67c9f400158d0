/* SPDX-License-Identifier: MIT */
/*
 * A program and a library built differently for AddressSanitizer
 * (issue 10): the inline fast paths poison and unpoison as the *library*
 * was built (iopool/buildconf.h), never as the program is.
 *
 *   sanitized program, Release library (release build's ctest
 *     asan_program_with_release_library_reports_nothing): the library
 *     hands out objects it never poisoned, so the program's inline code
 *     must not poison them on free, or the next write into a recycled
 *     object is a false "use-after-poison".
 *   plain program, ASan library (ASan build's ctest
 *     plain_program_with_asan_library_runs): the program links and runs
 *     against the sanitized library (ASan's runtime preloaded), and its
 *     inline code keeps the library's poison: a free object is poisoned,
 *     an allocated one is not.
 *
 * The reproduction of the issue: a pool of 64-byte objects, cache_size 8;
 * allocate 64, free 64, iop_thread_flush(), allocate 64 and memset each.
 * Exit 0 when all is well; an ASan report exits non-zero by itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iopool.h"

/* Weak: present when ASan's runtime is in the process (a sanitized
 * program, or one with libasan preloaded), NULL otherwise. */
extern int __asan_address_is_poisoned(void const volatile *addr) __attribute__((weak));

#define N 64

static int fail(const char *what)
{
	fprintf(stderr, "test_mixed_sanitizer: %s\n", what);
	return 1;
}

int main(void)
{
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = "mixed";
	pp.obj_size = 64;
	pp.cache_size = 8;
	iop_pool_t *pool = iop_pool_create(&pp);
	if (!pool)
		return fail("iop_pool_create failed");
	void *p[N];
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++)
			if (!(p[i] = iop_alloc(pool)))
				return fail("iop_alloc failed");
		for (int i = 0; i < N; i++) {
			/* The write a false report would flag. */
			memset(p[i], 0xa5, 64);
			if (__asan_address_is_poisoned && __asan_address_is_poisoned(p[i]))
				return fail("an allocated object is poisoned");
		}
		for (int i = 0; i < N; i++)
			iop_free(pool, p[i]);
		if (IOP__LIB_ASAN && __asan_address_is_poisoned && !__asan_address_is_poisoned(p[0]))
			return fail("the library is built with ASan, and a free object is not poisoned");
		iop_thread_flush();
	}
	if (iop_pool_flush(pool) < 0 || iop_pool_destroy(pool) != 0)
		return fail("flush or destroy failed");
	printf("test_mixed_sanitizer: ok (library %s ASan, ASan runtime %s)\n", IOP__LIB_ASAN ? "with" : "without",
	       __asan_address_is_poisoned ? "present" : "absent");
	return 0;
}
