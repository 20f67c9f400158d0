/* SPDX-License-Identifier: MIT */
/*
 * The owner check over a whole array (include/iopool/owner.h) against the
 * scalar one of the inline free (iop__owned() in iopool.h, one pointer at
 * a time), on real pools made through the public API: every kernel this
 * CPU runs (scalar, SSE2, AVX2), strides from 64 B to 1 MiB (powers of two
 * and not), arrays of n = 0..300 drawn from one chunk or several, and with
 * one bad pointer (NULL, another pool's object, interior, past the last
 * object of a chunk, foreign addresses) at every position. The hot fields
 * are read as the inline code reads them, through struct iop__pool_hot.
 */
#include <iopool.h>
#include <iopool/owner.h>

#include "harness.h"

#define N_MAX 300u

/* Strides: a power of two, small odd parts, large ones, 1 MiB. */
static const size_t strides[] = { 64, 80, 96, 192, 1008, 2048, 2064, 4160, 12288, 65536, 100000, 786432, 1048576 };
#define NSTRIDES (sizeof(strides) / sizeof(strides[0]))

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* A pool with its objects (at least two chunks' worth, so that arrays can
 * mix chunks), grouped by chunk. */
struct tpool {
	iop_pool_t *pool;
	const struct iop__pool_hot *h;
	void **objs;
	size_t nobjs;
	void **first;          /* the objects of the first chunk */
	size_t nfirst;
};

static int tpool_make(struct tpool *t, size_t stride)
{
	struct iop_pool_params p = IOP_POOL_PARAMS_INIT;

	memset(t, 0, sizeof(*t));
	p.obj_size = stride;
	p.align = 16;
	t->pool = iop_pool_create(&p);
	if (t->pool == NULL)
		return -1;
	t->h = (const struct iop__pool_hot *)(const void *)t->pool;
	if (t->h->stride != stride)
		return -1;
	t->nobjs = 2 * t->h->objs_per_chunk + 3;
	t->objs = calloc(t->nobjs, sizeof(void *));
	t->first = calloc(t->nobjs, sizeof(void *));
	if (t->objs == NULL || t->first == NULL)
		return -1;
	for (size_t i = 0; i < t->nobjs; i++)
		if ((t->objs[i] = iop_alloc(t->pool)) == NULL)
			return -1;
	uintptr_t base = (uintptr_t)t->objs[0] & ~t->h->chunk_mask;
	for (size_t i = 0; i < t->nobjs; i++)
		if (((uintptr_t)t->objs[i] & ~t->h->chunk_mask) == base)
			t->first[t->nfirst++] = t->objs[i];
	return 0;
}

static void tpool_free(struct tpool *t)
{
	if (t->objs)
		for (size_t i = 0; i < t->nobjs; i++)
			if (t->objs[i])
				iop_free(t->pool, t->objs[i]);
	free(t->objs);
	free(t->first);
	if (t->pool)
		iop_pool_destroy(t->pool);
}

/* The scalar check of the inline free, pointer by pointer. */
static int reference(const struct tpool *t, void *const *a, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (!iop__owned(t->pool, a[i]))
			return 0;
	return 1;
}

static unsigned kernels[3], nkernels;

static void find_kernels(void)
{
	nkernels = 0;
	kernels[nkernels++] = IOP__OWNER_SCALAR;
#if defined(__x86_64__)
	kernels[nkernels++] = IOP__OWNER_SSE2;
	if (__builtin_cpu_supports("avx2"))
		kernels[nkernels++] = IOP__OWNER_AVX2;
#endif
}

static int check_with(unsigned k, const struct tpool *t, void *const *a, unsigned n)
{
	const struct iop__pool_hot *h = t->h;
	return iop__owned_array_with(k, (const struct iop_pool *)t->pool, (struct iop_pool *const *)iop__map,
				     h->chunk_mask, h->div_mul, h->div_shift, h->objs_per_chunk, a, n);
}

/* Every kernel, and the dispatching iop__owned_array(), must say what the
 * reference says, and the reference must say `want`. Returns 0 on a
 * mismatch (already reported). */
static int agree(const struct tpool *t, void *const *a, unsigned n, int want, const char *what, unsigned pos)
{
	int ref = reference(t, a, n), ok = 1;

	if (ref != want) {
		th_fail_at(__FILE__, __LINE__, "stride %zu, n %u, %s at %u: the scalar check says %d, expected %d",
			(size_t)t->h->stride, n, what, pos, ref, want);
		return 0;
	}
	for (unsigned k = 0; k < nkernels; k++) {
		int got = check_with(kernels[k], t, a, n);
		if (got != ref) {
			th_fail_at(__FILE__, __LINE__, "stride %zu, n %u, %s at %u: kernel %u says %d, scalar %d",
				(size_t)t->h->stride, n, what, pos, kernels[k], got, ref);
			ok = 0;
		}
	}
	const struct iop__pool_hot *h = t->h;
#if defined(IOP__OWNER_X86)
	/* iop_free_bulk's check of 2 to 8 pointers, and the runs it stores
	 * into the CPU's slot: they must be the array's pointers. It tests
	 * one chunk, the first pointer's: an array of several chunks of the
	 * pool goes to the slow path (0 here), never a bad one through. */
	if (n >= 2 && n <= 8) {
		struct iop__runs r;
		int one_chunk = 1;
		for (unsigned i = 1; i < n; i++)
			if (((uintptr_t)a[i] ^ (uintptr_t)a[0]) & ~h->chunk_mask)
				one_chunk = 0;
		int got = iop__owned_runs8((const struct iop_pool *)t->pool, (struct iop_pool *const *)iop__map, h, a, n,
					   &r);
		if (got != (ref && one_chunk)) {
			th_fail_at(__FILE__, __LINE__, "stride %zu, n %u, %s at %u: iop__owned_runs8 says %d, scalar %d%s",
				(size_t)h->stride, n, what, pos, got, ref, one_chunk ? "" : " (several chunks)");
			ok = 0;
		} else if (got) {
			void *run[4][2];
			memcpy(run[0], &r.a, 16);
			memcpy(run[1], &r.b, 16);
			memcpy(run[2], &r.c, 16);
			memcpy(run[3], &r.e, 16);
			unsigned at[4] = { 0, n >= 4 ? 2 : 0, n >= 4 ? n - 4 : n - 2, n - 2 };
			for (unsigned q = 0; q < 4; q++)
				if (run[q][0] != a[at[q]] || run[q][1] != a[at[q] + 1]) {
					th_fail_at(__FILE__, __LINE__, "n %u: run %u is not objs[%u..%u]", n, q, at[q],
						at[q] + 1);
					ok = 0;
				}
		}
	}
#endif
	if (iop__owned_array((const struct iop_pool *)t->pool, (struct iop_pool *const *)iop__map, h, a, n) != ref) {
		th_fail_at(__FILE__, __LINE__, "stride %zu, n %u, %s at %u: iop__owned_array disagrees", (size_t)h->stride,
			n, what, pos);
		ok = 0;
	}
	return ok;
}

/* n pointers drawn (with repeats) from the first chunk, or from all. */
static void fill(const struct tpool *t, void **a, unsigned n, int one_chunk)
{
	for (unsigned i = 0; i < n; i++)
		a[i] = one_chunk ? t->first[rnd() % t->nfirst] : t->objs[rnd() % t->nobjs];
}

/* The positions to spoil in an array of n: all of them for every n up to
 * 40 and around the vector widths, a few elsewhere (the rest of 0..300
 * would only repeat these, slowly under the sanitizers). */
static int all_positions(unsigned n)
{
	return n <= 40 || (n >= 63 && n <= 65) || (n >= 127 && n <= 129) || n == 255 || n == 256 || n == N_MAX;
}

typedef void *(*spoil_fn)(const struct tpool *t, const struct tpool *other, void *good);

/* Run `spoil` at every position of arrays of every n, for every stride.
 * The spoiled pointer replaces one from the first chunk (one_chunk) or from
 * anywhere. */
static int each_position(spoil_fn spoil, const char *what)
{
	void **a = malloc(N_MAX * sizeof(void *));
	struct tpool other;

	find_kernels();
	REQUIRE(a != NULL);
	REQUIRE(tpool_make(&other, 2048) == 0);
	for (size_t s = 0; s < NSTRIDES; s++) {
		struct tpool t;
		REQUIRE(tpool_make(&t, strides[s]) == 0);
		for (unsigned n = 1; n <= N_MAX; n++) {
			for (int one = 0; one < 2; one++) {
				unsigned npos = all_positions(n) ? n : 3;
				for (unsigned j = 0; j < npos; j++) {
					unsigned pos = all_positions(n) ? j : (unsigned)(rnd() % n);
					fill(&t, a, n, one);
					void *keep = a[pos];
					a[pos] = spoil(&t, &other, keep);
					if (!agree(&t, a, n, 0, what, pos)) {
						tpool_free(&t);
						goto out;
					}
					a[pos] = keep;
				}
			}
		}
		tpool_free(&t);
	}
out:
	tpool_free(&other);
	free(a);
	return th_failed() ? TH_FAIL : TH_PASS;
}

TEST(owner_check_accepts_arrays_of_one_chunk)
{
	void **a = malloc(N_MAX * sizeof(void *));

	find_kernels();
	REQUIRE(a != NULL);
	for (size_t s = 0; s < NSTRIDES; s++) {
		struct tpool t;
		REQUIRE(tpool_make(&t, strides[s]) == 0);
		/* Also the first and the last object of the chunk. */
		for (unsigned n = 0; n <= N_MAX; n++) {
			fill(&t, a, n, 1);
			agree(&t, a, n, 1, "good, one chunk", 0);
		}
		uintptr_t base = (uintptr_t)t.first[0] & ~t.h->chunk_mask;
		a[0] = (void *)base;
		a[1] = (void *)(base + (t.h->objs_per_chunk - 1) * t.h->stride);
		for (unsigned i = 2; i < 20; i++)
			a[i] = a[i % 2];
		if (iop__owned(t.pool, a[0]) && iop__owned(t.pool, a[1]))
			agree(&t, a, 20, 1, "first and last objects", 0);
		tpool_free(&t);
	}
	free(a);
	return th_failed() ? TH_FAIL : TH_PASS;
}

TEST(owner_check_accepts_arrays_of_mixed_chunks)
{
	void **a = malloc(N_MAX * sizeof(void *));

	find_kernels();
	REQUIRE(a != NULL);
	for (size_t s = 0; s < NSTRIDES; s++) {
		struct tpool t;
		REQUIRE(tpool_make(&t, strides[s]) == 0);
		/* Two chunks at least: the check must not take "another chunk"
		 * for "another pool". */
		REQUIRE(t.nfirst < t.nobjs);
		for (unsigned n = 0; n <= N_MAX; n++) {
			fill(&t, a, n, 0);
			agree(&t, a, n, 1, "good, mixed chunks", 0);
			/* One object of another chunk at every position of an
			 * otherwise one-chunk array. */
			if (all_positions(n)) {
				for (unsigned pos = 0; pos < n; pos++) {
					fill(&t, a, n, 1);
					for (size_t i = 0; i < t.nobjs; i++)
						if (((uintptr_t)t.objs[i] ^ (uintptr_t)a[0]) & ~t.h->chunk_mask) {
							a[pos] = t.objs[i];
							break;
						}
					agree(&t, a, n, 1, "another chunk", pos);
				}
			}
		}
		tpool_free(&t);
	}
	free(a);
	return th_failed() ? TH_FAIL : TH_PASS;
}

static void *spoil_null(const struct tpool *t, const struct tpool *other, void *good)
{
	(void)t, (void)other, (void)good;
	return NULL;
}

TEST(owner_check_refuses_null_at_every_position)
{
	return each_position(spoil_null, "NULL");
}

static void *spoil_other_pool(const struct tpool *t, const struct tpool *other, void *good)
{
	(void)t, (void)good;
	return other->objs[rnd() % other->nobjs];
}

TEST(owner_check_refuses_another_pools_object_at_every_position)
{
	return each_position(spoil_other_pool, "another pool's object");
}

/* Inside an object: one byte in, a multiple of the stride's power of two
 * that is not one of the stride (the odd part's test), the middle. */
static void *spoil_interior(const struct tpool *t, const struct tpool *other, void *good)
{
	size_t stride = t->h->stride, two = (size_t)1 << t->h->div_shift, off;
	(void)other;
	switch (rnd() % 3) {
	case 0:
		off = 1 + rnd() % (stride - 1);
		break;
	case 1:
		off = stride > two ? two * (1 + rnd() % (stride / two - 1)) : stride / 2;
		break;
	default:
		off = stride / 2;
		break;
	}
	/* Integer arithmetic: good may be a foreign address already. */
	return (void *)((uintptr_t)good + off);
}

TEST(owner_check_refuses_interior_pointers_at_every_position)
{
	return each_position(spoil_interior, "interior pointer");
}

/* Past the last object of a chunk: object number objs_per_chunk while
 * still in the chunk (strides that do not divide it), and a few bytes past
 * the last object (in the chunk, or at the start of the next one). */
static void *spoil_past_end(const struct tpool *t, const struct tpool *other, void *good)
{
	uintptr_t base = (uintptr_t)good & ~t->h->chunk_mask, chunk = t->h->chunk_mask + 1;
	uintptr_t end = base + t->h->objs_per_chunk * t->h->stride;
	(void)other;
	if (end < base + chunk && rnd() % 2)
		return (void *)end;
	return (void *)(end + 16 * (1 + rnd() % 3));
}

TEST(owner_check_refuses_pointers_past_the_last_object_at_every_position)
{
	return each_position(spoil_past_end, "past the last object");
}

/* Addresses no pool has: static data, malloc, the top of the address space
 * (beyond the map), a pool object with bit 32, 40 or 46 flipped (the same
 * low 32 bits: the 64-bit part of the check must see it). */
static void *spoil_foreign(const struct tpool *t, const struct tpool *other, void *good)
{
	static char static_data[64];
	static void *heap;
	(void)t, (void)other;
	if (heap == NULL)
		heap = malloc(4096);
	switch (rnd() % 6) {
	case 0:
		return static_data + 16;
	case 1:
		return heap;
	case 2:
		return (void *)(~(uintptr_t)0 - 4095);
	case 3:
		return (void *)((uintptr_t)good ^ ((uintptr_t)1 << 32));
	case 4:
		return (void *)((uintptr_t)good ^ ((uintptr_t)1 << 40));
	default:
		return (void *)((uintptr_t)good ^ ((uintptr_t)1 << 46));
	}
}

TEST(owner_check_refuses_foreign_addresses_at_every_position)
{
	return each_position(spoil_foreign, "foreign address");
}

/* Random arrays mixing everything above (several bad pointers too). */
TEST(owner_check_agrees_with_the_scalar_check_on_random_arrays)
{
	static const spoil_fn spoils[] = { spoil_null, spoil_other_pool, spoil_interior, spoil_past_end,
					   spoil_foreign };
	void **a = malloc(N_MAX * sizeof(void *));
	struct tpool other;

	find_kernels();
	REQUIRE(a != NULL);
	REQUIRE(tpool_make(&other, 96) == 0);
	for (size_t s = 0; s < NSTRIDES; s++) {
		struct tpool t;
		REQUIRE(tpool_make(&t, strides[s]) == 0);
		for (unsigned iter = 0; iter < 2000; iter++) {
			unsigned n = (unsigned)(rnd() % (N_MAX + 1));
			fill(&t, a, n, rnd() % 2);
			unsigned bad = n ? (unsigned)(rnd() % 4) : 0;
			for (unsigned b = 0; b < bad; b++) {
				unsigned pos = (unsigned)(rnd() % n);
				a[pos] = spoils[rnd() % 5](&t, &other, a[pos]);
			}
			agree(&t, a, n, reference(&t, a, n), "random", 0);
		}
		tpool_free(&t);
	}
	tpool_free(&other);
	free(a);
	return th_failed() ? TH_FAIL : TH_PASS;
}

int main(int argc, char **argv)
{
	return th_main(argc, argv);
}
