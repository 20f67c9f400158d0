/* SPDX-License-Identifier: MIT */
/*
 * iopool-owner-bench: the owner check of a freed array, in each form, ns per
 * object (and, under callgrind, instructions per object: see
 * bench/owner_callgrind.sh).
 *
 * Matrix
 *   form     owned_all  iop__owned_all() of iopool.h: the map when the
 *                       granule changes, a 64-bit multiply and rotate
 *                       per pointer (what iop_free_bulk checks today)
 *            scalar     include/iopool/owner.h's kernels: one map load per
 *            sse2       chunk, a 32-bit multiply and max per pointer
 *            avx2       (AVX2 only where the CPU has it)
 *            owned_array  iop__owned_array(): the kernel it picks (the
 *                       dispatch included)
 *   n        8, 16, 32, 64, 256 pointers per array
 *   stride   2048 (a power of two) and 2064 (16 x 129)
 *   layout   one chunk; two chunks (each pointer from either at random)
 *   timing   one array checked over and over (the array escapes each
 *            time, so nothing is hoisted), ~2 ms per run, the fastest of
 *            15 runs (--quick: 1 run of 0.2 ms): the work is
 *            deterministic, so the fastest run is the one least disturbed
 *            by the other processes of a shared machine (the median moved
 *            by 3x between runs on the 2-vCPU VM; callgrind's counts,
 *            bench/owner_callgrind.sh, do not move at all)
 *
 *   iopool-owner-bench [--quick] [--json PATH]
 *   iopool-owner-bench --callgrind FORM N STRIDE LAYOUT ITERS
 *       runs ITERS checks of one array in cg_owner_loop (for callgrind)
 */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iopool.h>
#include <iopool/owner.h>

enum form { F_OWNED_ALL, F_SCALAR, F_SSE2, F_AVX2, F_OWNED_ARRAY, F_COUNT };
static const char *const form_names[F_COUNT] = { "owned_all", "scalar", "sse2", "avx2", "owned_array" };
static const unsigned ns_[] = { 8, 16, 32, 64, 256 };
static const size_t strides[] = { 2048, 2064 };
static const char *const layouts[] = { "one chunk", "two chunks" };
#define NN (sizeof(ns_) / sizeof(ns_[0]))
#define NSTRIDE (sizeof(strides) / sizeof(strides[0]))
#define RUNS 15

struct setup {
	iop_pool_t *pool;
	const struct iop__pool_hot *h;
	void **all;
	size_t nall;
	void *arr[2][256];     /* by layout */
};

static void setup_make(struct setup *s, size_t stride)
{
	struct iop_pool_params p = IOP_POOL_PARAMS_INIT;
	uint32_t x = 0x2545f491u;

	p.obj_size = stride;
	s->pool = iop_pool_create(&p);
	if (s->pool == NULL)
		die("iop_pool_create(%zu): %s", stride, strerror(errno));
	s->h = (const struct iop__pool_hot *)(const void *)s->pool;
	s->nall = s->h->objs_per_chunk + 1;
	s->all = calloc(s->nall, sizeof(void *));
	for (size_t i = 0; i < s->nall; i++)
		if (s->all == NULL || (s->all[i] = iop_alloc(s->pool)) == NULL)
			die("iop_alloc failed");
	/* Group by the first object's chunk. */
	uintptr_t base = (uintptr_t)s->all[0] & ~s->h->chunk_mask;
	size_t in = 0, out = 0;
	void *other[256];
	for (size_t i = 0; i < s->nall; i++) {
		if (((uintptr_t)s->all[i] & ~s->h->chunk_mask) == base) {
			if (in < 256)
				s->arr[0][in++] = s->all[i];
		} else if (out < 256) {
			other[out++] = s->all[i];
		}
	}
	if (in < 256 || out == 0)
		die("stride %zu: %zu objects in the first chunk, %zu in others", stride, in, out);
	for (unsigned i = 0; i < 256; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		s->arr[1][i] = x & 1 ? other[x % out] : s->arr[0][i];
	}
}

static void setup_free(struct setup *s)
{
	for (size_t i = 0; i < s->nall; i++)
		iop_free(s->pool, s->all[i]);
	free(s->all);
	iop_pool_destroy(s->pool);
}

static inline int check(enum form f, const struct setup *s, void *const *a, unsigned n)
{
	const struct iop__pool_hot *h = s->h;
	const struct iop_pool *pool = (const struct iop_pool *)s->pool;
	struct iop_pool *const *map = (struct iop_pool *const *)iop__map;

	switch (f) {
	case F_OWNED_ALL:
		return iop__owned_all(s->pool, a, n);
	case F_SCALAR:
		return iop__owned_array_with(IOP__OWNER_SCALAR, pool, map, h->chunk_mask, h->div_mul, h->div_shift,
					     h->objs_per_chunk, a, n);
	case F_SSE2:
		return iop__owned_array_with(IOP__OWNER_SSE2, pool, map, h->chunk_mask, h->div_mul, h->div_shift,
					     h->objs_per_chunk, a, n);
	case F_AVX2:
		return iop__owned_array_with(IOP__OWNER_AVX2, pool, map, h->chunk_mask, h->div_mul, h->div_shift,
					     h->objs_per_chunk, a, n);
	default:
		return iop__owned_array(pool, map, h, a, n);
	}
}

/* One loop per form, so that each is compiled as a caller would see it. */
#define FORM_LOOP(name, F)                                                                     \
	CG_LOOP static unsigned long name(const struct setup *s, void *const *a, unsigned n,   \
					  unsigned long iters)                                  \
	{                                                                                      \
		unsigned long good = 0;                                                        \
		for (unsigned long i = 0; i < iters; i++) {                                    \
			escape(a);                                                             \
			good += (unsigned long)check(F, s, a, n);                              \
		}                                                                              \
		return good;                                                                   \
	}
FORM_LOOP(loop_owned_all, F_OWNED_ALL)
FORM_LOOP(loop_scalar, F_SCALAR)
FORM_LOOP(loop_sse2, F_SSE2)
FORM_LOOP(loop_avx2, F_AVX2)
FORM_LOOP(loop_owned_array, F_OWNED_ARRAY)

typedef unsigned long (*form_loop)(const struct setup *, void *const *, unsigned, unsigned long);
static const form_loop loops[F_COUNT] = { loop_owned_all, loop_scalar, loop_sse2, loop_avx2, loop_owned_array };

/* callgrind counts inside this one function (--toggle-collect). */
CG_LOOP unsigned long cg_owner_loop(form_loop fn, const struct setup *s, void *const *a, unsigned n,
				    unsigned long iters);
CG_LOOP unsigned long cg_owner_loop(form_loop fn, const struct setup *s, void *const *a, unsigned n,
				    unsigned long iters)
{
	return fn(s, a, n, iters);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double time_form(enum form f, const struct setup *s, void *const *a, unsigned n, uint64_t target_ns,
			unsigned runs)
{
	unsigned long iters = 64;
	double v[RUNS];
	uint64_t t;

	for (;;) {
		t = now_ns();
		if (loops[f](s, a, n, iters) != iters)
			die("%s: a good array was refused", form_names[f]);
		t = now_ns() - t;
		if (t >= target_ns / 4)
			break;
		iters *= 4;
	}
	iters = (unsigned long)((double)iters * (double)target_ns / (double)(t ? t : 1)) + 1;
	for (unsigned r = 0; r < runs; r++) {
		t = now_ns();
		loops[f](s, a, n, iters);
		v[r] = (double)(now_ns() - t) / ((double)iters * n);
	}
	qsort(v, runs, sizeof(v[0]), cmp_double);
	return v[0];
}

static int parse_form(const char *s)
{
	for (int f = 0; f < F_COUNT; f++)
		if (strcmp(s, form_names[f]) == 0)
			return f;
	return -1;
}

int main(int argc, char **argv)
{
	int quick = 0, have_avx2 = 0;
	const char *json = NULL;

#if defined(__x86_64__)
	have_avx2 = __builtin_cpu_supports("avx2");
#endif
	if (argc == 7 && strcmp(argv[1], "--callgrind") == 0) {
		int f = parse_form(argv[2]);
		unsigned n = (unsigned)strtoul(argv[3], NULL, 10);
		size_t stride = strtoul(argv[4], NULL, 10);
		unsigned layout = (unsigned)strtoul(argv[5], NULL, 10);
		unsigned long iters = strtoul(argv[6], NULL, 10);
		struct setup s;

		if (f < 0 || n == 0 || n > 256 || layout > 1 || (f == F_AVX2 && !have_avx2)) {
			fprintf(stderr, "iopool-owner-bench: bad --callgrind arguments (or no AVX2)\n");
			return 2;
		}
		setup_make(&s, stride);
		unsigned long good = cg_owner_loop(loops[f], &s, s.arr[layout], n, iters);
		printf("cg_owner_loop: %s n=%u stride=%zu %s: %lu checks, %lu good\n", form_names[f], n, stride,
		       layouts[layout], iters, good);
		setup_free(&s);
		return good == iters ? 0 : 1;
	}
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0)
			quick = 1;
		else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
			json = argv[++i];
		else {
			fprintf(stderr, "usage: iopool-owner-bench [--quick] [--json PATH]\n"
					"       iopool-owner-bench --callgrind FORM N STRIDE LAYOUT(0|1) ITERS\n");
			return 2;
		}
	}
	uint64_t target = quick ? 200000 : 2000000;
	unsigned runs = quick ? 1 : RUNS;
	FILE *jf = json ? fopen(json, "w") : NULL;
	if (json && jf == NULL)
		die("%s: %s", json, strerror(errno));
	if (jf)
		fprintf(jf, "{\"bench\": \"iopool-owner-bench\", \"unit\": \"ns/object\", \"cells\": [");
	printf("owner check of a freed array, ns per object (fastest of %u runs)\n", runs);
	unsigned first = 1;
	for (size_t si = 0; si < NSTRIDE; si++) {
		struct setup s;
		setup_make(&s, strides[si]);
		for (unsigned l = 0; l < 2; l++) {
			printf("\nstride %zu, %s\n%-12s", strides[si], layouts[l], "form");
			for (unsigned k = 0; k < NN; k++)
				printf("  n=%-5u", ns_[k]);
			putchar('\n');
			for (int f = 0; f < F_COUNT; f++) {
				if (f == F_AVX2 && !have_avx2)
					continue;
				printf("%-12s", form_names[f]);
				for (unsigned k = 0; k < NN; k++) {
					double ns = time_form((enum form)f, &s, s.arr[l], ns_[k], target, runs);
					printf("  %7.3f", ns);
					if (jf)
						fprintf(jf, "%s\n  {\"form\": \"%s\", \"stride\": %zu, \"layout\": \"%s\", "
							    "\"n\": %u, \"ns_per_object\": %.4f}",
							first ? "" : ",", form_names[f], strides[si], layouts[l],
							ns_[k], ns);
					first = 0;
				}
				putchar('\n');
			}
		}
		setup_free(&s);
	}
	if (jf) {
		fprintf(jf, "\n]}\n");
		fclose(jf);
	}
	return 0;
}
