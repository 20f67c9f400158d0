/* SPDX-License-Identifier: MIT */
/*
 * bench_rseq_stand_in(), for programs that count instructions under
 * valgrind: the benchmarks' callgrind loops (bench/) and
 * tests/simd_count.c.
 *
 * valgrind does not implement rseq, so glibc's registration fails under it
 * and cpu_id reads -2: the library would serve every call through the
 * per-thread fallback, and callgrind would count that path instead of the
 * per-CPU sequences a real run takes. A one-thread measurement stands in
 * for the kernel: it writes CPU 0 into the thread's rseq area before the
 * first pool is made (the library then picks the per-CPU mode, and
 * membarrier works under valgrind). Nothing can preempt a sequence here
 * that another thread could race with: there is no other thread.
 */
#ifndef IOPOOL_BENCH_RSEQ_STAND_IN_H
#define IOPOOL_BENCH_RSEQ_STAND_IN_H

#include <stdint.h>

#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 35)
#include <sys/rseq.h>
#endif

static inline void bench_rseq_stand_in(void)
{
#if defined(__x86_64__) && defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 35)
	int32_t *cpu_id = (int32_t *)(void *)((char *)__builtin_thread_pointer() + __rseq_offset + 4);
	if (*cpu_id < 0)
		*cpu_id = 0;
#endif
}

#endif
