/* SPDX-License-Identifier: MIT */
/*
 * What driver and children share: the matrix (cases, params, allocators),
 * the calibrated timer, and the child's result lines.
 */
#include "bench.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef IOP_BENCH_JEMALLOC_PATH
#define IOP_BENCH_JEMALLOC_PATH ""
#endif
#ifndef IOP_BENCH_MIMALLOC_PATH
#define IOP_BENCH_MIMALLOC_PATH ""
#endif
#ifndef IOP_BENCH_TCMALLOC_PATH
#define IOP_BENCH_TCMALLOC_PATH ""
#endif

const struct case_desc bench_cases[CASE_COUNT] = {
	[CASE_FASTPATH] = {
		"fastpath", "ns/pair",
		"one alloc+free pair of a 2 KiB object, same thread",
		1, { "2KiB" } },
	[CASE_SIZE] = {
		"size", "ns/pair",
		"one alloc+free pair, same thread, object size varied",
		8, { "64B", "256B", "1KiB", "2KiB", "4KiB", "16KiB", "64KiB",
		     "256KiB" } },
	[CASE_OUTSTANDING] = {
		"outstanding", "ns/pair",
		"N allocs then N frees (2 KiB), per alloc+free pair",
		13, { "1", "2", "4", "8", "16", "32", "64", "128", "256", "512",
		      "1024", "2048", "4096" } },
	[CASE_CROSSTHREAD] = {
		"crossthread", "ns/object",
		"alloc on one thread, free on another via an SPSC ring of "
		"1024, per object, ring included",
		1, { "2KiB" } },
	[CASE_BULK] = {
		"bulk", "ns/object",
		"alloc_bulk(n) then free_bulk(n) (2 KiB), per object",
		6, { "1", "8", "16", "32", "64", "rand1-64" } },
	[CASE_THREADS] = {
		"threads", "ns/pair/thread",
		"T threads each doing alloc+free pairs (2 KiB): thread CPU ns "
		"per pair, and aggregate Mops/s",
		7, { "1", "2", "4", "8", "16", "32", "64" } },
	[CASE_RECYCLE] = {
		"recycle", "ns/pair",
		"one alloc+release pair of a 2 KiB object, same thread: "
		"alloc+free (free) against a refcounted buffer's "
		"iop_buf_alloc+iop_buf_put (buf_put); buf_alloc+free releases "
		"the refcounted buffer with a plain free, so that buf_put minus "
		"it is the put's own cost",
		3, { "free", "buf_put", "buf_alloc+free" } },
};

const size_t size_case_sizes[] = {
	64, 256, 1024, 2048, 4096, 16384, 65536, 262144
};
const unsigned outstanding_counts[] = {
	1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096
};
const unsigned bulk_sizes[] = { 1, 8, 16, 32, 64, 0 };
const unsigned thread_counts[] = { 1, 2, 4, 8, 16, 32, 64 };

#ifdef IOP_BENCH_SANITIZED
#define PEER_WHY_NOT "n/a: sanitizer build (a preloaded malloc and the " \
		     "sanitizer runtime do not mix)"
#else
#define PEER_WHY_NOT NULL
#endif

const struct alloc_desc bench_allocs[ALLOC_COUNT] = {
	[ALLOC_IOPOOL] = { "iopool", NULL, NULL, NULL },
#ifdef IOP_BENCH_HAVE_DPDK
	[ALLOC_DPDK] = { "dpdk", NULL, NULL, NULL },
#elif defined(IOP_BENCH_SANITIZED)
	[ALLOC_DPDK] = { "dpdk", NULL, NULL,
			 "n/a: DPDK is left out of sanitizer builds" },
#else
	[ALLOC_DPDK] = { "dpdk", NULL, NULL,
			 "not installed (pkg-config found no libdpdk when "
			 "the bench was configured)" },
#endif
	[ALLOC_GLIBC] = { "glibc", NULL, NULL, NULL },
	[ALLOC_JEMALLOC] = { "jemalloc", IOP_BENCH_JEMALLOC_PATH, "mallocx",
			     PEER_WHY_NOT },
	[ALLOC_MIMALLOC] = { "mimalloc", IOP_BENCH_MIMALLOC_PATH, "mi_malloc",
			     PEER_WHY_NOT },
	[ALLOC_TCMALLOC] = { "tcmalloc", IOP_BENCH_TCMALLOC_PATH, "tc_malloc",
			     PEER_WHY_NOT },
	[ALLOC_RING] = { "ring-only", NULL, NULL, NULL },
};

/* ------------------------------------------------------------------------ */

/* Iterations that would make a loop that ran `iters` in `ns` take target. */
static uint64_t scale_iters(uint64_t iters, uint64_t ns, uint64_t target)
{
	double x = (double)iters * (double)target / (double)(ns ? ns : 1);

	return x < 1 ? 1 : (uint64_t)x;
}

double measure(const struct child_opts *o, loop_fn fn, void *arg,
	       double ops_per_iter)
{
	uint64_t iters = 1, ns, best = 0, best_iters = 1;
	unsigned attempts = 0, resized = 0;

	/* Grow the loop until it runs calib_ns; these runs are the warm-up. */
	for (;;) {
		ns = fn(arg, iters);
		if (ns == LOOP_FAILED)
			return -1;
		if (ns >= o->calib_ns || iters >= (UINT64_C(1) << 40))
			break;
		iters *= ns < o->calib_ns / 16 ? 8 : 2;
	}
	iters = scale_iters(iters, ns, o->target_ns);
	/*
	 * The timed run. One far shorter than meant says the calibration was
	 * thrown by a slow early run (the first allocation mapping and
	 * faulting in a chunk, or a preemption): size it again from this run.
	 * A run during which this thread was off the CPU for more than a
	 * tenth of the wall time (another process had it: these machines are
	 * shared) is run again, and the fastest run is kept. Time on the CPU
	 * comes from the thread's CPU clock; the result is the loop's wall
	 * time.
	 */
	while (attempts < PREEMPTED_RETRIES) {
		uint64_t c0 = thread_cpu_ns(), cpu;

		ns = fn(arg, iters);
		cpu = thread_cpu_ns() - c0;
		if (ns == LOOP_FAILED)
			return -1;
		if (ns < o->target_ns / 4 && resized++ < 8) {
			iters = scale_iters(iters, ns, o->target_ns);
			continue;
		}
		if (attempts++ == 0 || ns < best) {
			best = ns;
			best_iters = iters;
		}
		if ((double)cpu >= 0.9 * (double)ns)
			break;
	}
	return (double)best / ((double)best_iters * ops_per_iter);
}

unsigned bulk_rand_table[BULK_RAND_TABLE];

/* xorshift32: deterministic, so every allocator and every run sees the same
 * sequence of bulk sizes. */
static uint32_t xorshift32(uint32_t *s)
{
	uint32_t x = *s;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

void bulk_prepare(unsigned rep, unsigned order[BENCH_MAX_PARAMS])
{
	const unsigned n = bench_cases[CASE_BULK].nparams;
	uint32_t s = 0x9e3779b9u;

	for (unsigned k = 0; k < BULK_RAND_TABLE; k++)
		bulk_rand_table[k] = 1 + xorshift32(&s) % BULK_MAX;
	/* A different order of the bulk sizes in each repetition, so that a
	 * size never always follows the same one (Fisher-Yates). */
	s = 0x85ebca6bu * (rep + 1);
	for (unsigned k = 0; k < n; k++)
		order[k] = k;
	for (unsigned k = n - 1; k > 0; k--) {
		unsigned j = xorshift32(&s) % (k + 1), t = order[k];

		order[k] = order[j];
		order[j] = t;
	}
}

/* ------------------------------------------------------------------------ */

const char *bench_child_name = "driver";

void die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	/* A child's message lands in the middle of the driver's progress
	 * line: start it on a line of its own. */
	fprintf(stderr, "%siopool-bench: %s: ",
		strcmp(bench_child_name, "driver") ? "\n" : "", bench_child_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void emit_row(enum bench_case c, const char *param, double ns, double mops)
{
	if (mops >= 0)
		printf("ROW %s %s %.4f %.4f\n", bench_cases[c].name, param, ns,
		       mops);
	else
		printf("ROW %s %s %.4f\n", bench_cases[c].name, param, ns);
	fflush(stdout);
}

void emit_na(enum bench_case c, const char *param, const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	for (char *p = buf; *p; p++)
		if (*p == '\n')
			*p = ' ';
	printf("NA %s %s %s\n", bench_cases[c].name, param, buf);
	fflush(stdout);
}

void emit_case_na(enum bench_case c, const char *reason)
{
	for (unsigned pi = 0; pi < bench_cases[c].nparams; pi++)
		emit_na(c, bench_cases[c].params[pi], "%s", reason);
}
