/* SPDX-License-Identifier: MIT */
/*
 * iopool internal ABI: the owner check of a whole array of freed pointers
 * (iop_free_bulk). Not an API: everything here is named iop__* and may
 * change with the inline ABI. Self-contained: the caller passes the pool's
 * hot fields (struct iop__pool_hot in iopool.h) and the address map.
 *
 * The guarantee is iop__owned()'s, for every pointer: its 2 MiB granule is
 * in the map and names this pool, and its offset in the chunk is
 * q * stride with q < objs_per_chunk. NULL, a foreign, interior or
 * past-the-end pointer makes the answer 0; the caller then finds which one
 * with the scalar check, to name it.
 *
 * How it is fast (the offsets of a chunk are below 1 GiB, IOP_CHUNK_MAX):
 *
 *  - One chunk, one map load. Chunks are naturally aligned and the map
 *    names their every granule, so when the first pointer's granule names
 *    this pool, every address of its chunk [base, base + chunk) is this
 *    pool's. d = p ^ base is then p's offset for a pointer of that chunk,
 *    and is >= chunk for any other: the OR of all d, masked with
 *    ~chunk_mask, is zero exactly when every pointer is in the chunk.
 *  - The stride's power of two for free. stride = 2^k * m (m odd); the same
 *    OR masked with 2^k - 1 is zero exactly when every offset is a
 *    multiple of 2^k. A power-of-two stride (m = 1) fills its chunk, so
 *    for it the OR is the whole check: one XOR and one OR per pointer.
 *  - The odd part in 32 bits, no rotate. For an offset d = 2^k * d'
 *    (d < 2^32), t = d * inv(m) mod 2^32 = 2^k * (d' * inv(m) mod 2^(32-k)),
 *    and multiplication by inv(m) maps the multiples q * m below 2^(32-k)
 *    exactly onto 0..(2^(32-k) - 1) / m; so t < objs_per_chunk * 2^k iff d'
 *    is q * m with q < objs_per_chunk (objs_per_chunk * stride <= chunk
 *    keeps the bound in range). The low 32 bits of the 64-bit inverse are
 *    the 32-bit inverse. One multiply and one unsigned max per pointer,
 *    one compare per array.
 *  - In vector lanes: AVX2 does 16 pointers a step with 4 XORs (loads
 *    folded), 3 ORs and one test of the OR, then per 8 a shuffle to the
 *    low halves, a vpmulld and a vpmaxud: 15 (power-of-two stride) to 22
 *    instructions per 16 pointers (bench/owner_callgrind.sh). SSE2 (the
 *    x86-64 baseline) has no 32-bit multiply-low or unsigned max; it uses
 *    pmuludq on 2 lanes and a subtraction's sign. AVX2 is taken when the
 *    compiler targets it, or when the CPU has it (checked per call: one
 *    load and a test; the AVX2 kernel is then a call, not inlined).
 *    Elsewhere: scalar. Under 16 pointers AVX2's set-up costs more than
 *    it saves: 2 to 15 pointers take the SSE2 one-chunk test (x86-64), a
 *    single pointer the scalar loop below, inline.
 *  - Pointers of several chunks: the AVX2 kernel stops at the first 16
 *    pointers that leave the first chunk; with AVX2, pointers of exactly
 *    two chunks (both in the map) take a second vector pass that compares
 *    each pointer's chunk with both; anything else, a scalar loop (the map
 *    loaded when the granule changes, the 32-bit test rotated) gives the
 *    exact answer, at about iop__owned_all()'s cost.
 */
#ifndef IOPOOL_OWNER_H
#define IOPOOL_OWNER_H

#include <stdint.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define IOP__OWNER_X86 1
#endif

#ifdef __cplusplus
extern "C" {
#endif

struct iop_pool;

/* The same values as iopool.h (which may be included before or after). */
/* The casts C and C++ both compile (iopool.h defines them; a reader that
 * includes this header alone gets the C forms). */
#ifndef IOP__SCAST
#define IOP__SCAST(T, x) ((T)(x))
#define IOP__RCAST(T, x) ((T)(x))
#endif

#ifndef IOP__GRANULE_SHIFT
#define IOP__GRANULE_SHIFT 21
#endif
#ifndef IOP__MAP_ENTRIES
#if defined(__aarch64__)
#define IOP__MAP_ENTRIES (IOP__SCAST(uintptr_t, 1) << (48 - IOP__GRANULE_SHIFT))
#else
#define IOP__MAP_ENTRIES (IOP__SCAST(uintptr_t, 1) << (47 - IOP__GRANULE_SHIFT))
#endif
#endif

/*
 * Scalar: pointers of several chunks, and the exact answer whatever the
 * chunks (the fallback of the one-chunk kernels). The map is read with a
 * relaxed atomic load, when the granule changes: chunks are mapped
 * concurrently by other threads. The 32-bit product rotated right by k is
 * the object's number when the offset is a multiple of the stride, and at
 * least 2^(32-k) >= objs_per_chunk otherwise; one compare and an early
 * exit per pointer (iop__owned_all()'s shape, in 32 bits).
 */
static inline int iop__owned_array_scalar(const struct iop_pool *pool, struct iop_pool *const *map,
					  uintptr_t chunk_mask, uint64_t div_mul, unsigned div_shift,
					  uint64_t objs_per_chunk, void *const *objs, unsigned n)
{
	const uint32_t mul = IOP__SCAST(uint32_t, div_mul), lim = IOP__SCAST(uint32_t, objs_per_chunk);
	const unsigned k = div_shift;
	uintptr_t known = ~IOP__SCAST(uintptr_t, 0);

	for (unsigned i = 0; i < n; i++) {
		uintptr_t a = IOP__RCAST(uintptr_t, objs[i]), g = a >> IOP__GRANULE_SHIFT;
		if (__builtin_expect(g != known, 0)) {
			if (g >= IOP__MAP_ENTRIES || __atomic_load_n(&map[g], __ATOMIC_RELAXED) != pool)
				return 0;
			known = g;
		}
		uint32_t t = IOP__SCAST(uint32_t, a & chunk_mask) * mul;
		t = (t >> k) | (t << ((32 - k) & 31));
		if (__builtin_expect(t >= lim, 0))
			return 0;
	}
	return 1;
}

/*
 * The one-chunk kernels: 1 when every objs[i] (i < n) is in the chunk at
 * base with a valid offset; 0 otherwise (another chunk, or a bad pointer:
 * the caller then asks iop__owned_array_scalar()). bad is ~chunk_mask |
 * (2^k - 1), mul the 32-bit inverse, lim objs_per_chunk << k.
 */
static inline int iop__owner_one_chunk(uintptr_t base, uintptr_t bad, uint32_t mul, uint32_t lim,
				       void *const *objs, unsigned n)
{
	uintptr_t bits = 0;
	uint32_t max = 0;

	for (unsigned i = 0; i < n; i++) {
		uintptr_t d = IOP__RCAST(uintptr_t, objs[i]) ^ base;
		uint32_t t = IOP__SCAST(uint32_t, d) * mul;
		bits |= d;
		max = t > max ? t : max;
	}
	return (bits & bad) == 0 && max < lim;
}

#if defined(IOP__OWNER_X86)
/* SSE2: two pointers per register. pmuludq multiplies the low halves into
 * 64-bit products; t (their low 32 bits) - lim is negative in 64 bits
 * exactly when t < lim, so the AND of all differences keeps bit 63 of both
 * lanes set when every t passed. */
static inline int iop__owner_sse2(uintptr_t base, uintptr_t bad, uint32_t mul, uint32_t lim, void *const *objs,
				  unsigned n, const int pow2)
{
	__asm__("" : "+r"(objs)); /* as in iop__owner_runs8() */
	const __m128i vbase = _mm_set1_epi64x(IOP__SCAST(long long, base)), vmul = _mm_set1_epi64x(mul);
	const __m128i vlim = _mm_set1_epi64x(lim), lo32 = _mm_set1_epi64x(0xffffffffll);
	__m128i bits = _mm_setzero_si128(), neg = _mm_set1_epi64x(-1);
	unsigned i = 0;

	for (; i + 4 <= n; i += 4) {
		__m128i a = _mm_xor_si128(_mm_loadu_si128(IOP__RCAST(const __m128i *, (objs + i))), vbase);
		__m128i b = _mm_xor_si128(_mm_loadu_si128(IOP__RCAST(const __m128i *, (objs + i + 2))), vbase);
		bits = _mm_or_si128(bits, _mm_or_si128(a, b));
		if (!pow2) {
			__m128i ta = _mm_and_si128(_mm_mul_epu32(a, vmul), lo32);
			__m128i tb = _mm_and_si128(_mm_mul_epu32(b, vmul), lo32);
			neg = _mm_and_si128(neg, _mm_and_si128(_mm_sub_epi64(ta, vlim), _mm_sub_epi64(tb, vlim)));
		}
	}
	bits = _mm_or_si128(bits, _mm_unpackhi_epi64(bits, bits));
	if ((IOP__SCAST(uintptr_t, _mm_cvtsi128_si64(bits)) & bad) != 0 || (_mm_movemask_pd(_mm_castsi128_pd(neg)) & 3) != 3)
		return 0;
	return iop__owner_one_chunk(base, bad, mul, lim, objs + i, n - i);
}

/*
 * SSE2 for 2 <= n <= 8, no loop: the array as four 16-byte runs that
 * overlap where n is not 8 (OR and the sign test do not mind a pointer
 * seen twice): a = objs[0..1], b = objs[2..3], c = objs[n-4..n-3],
 * e = objs[n-2..n-1] from 4 pointers up; under 4, a and e, with b = a and
 * c = e. The runs are left in *r: iop_free_bulk() stores them into the
 * CPU's slot without loading the array again (iop__seq_push_runs). A
 * power-of-two stride is the OR alone: 4 pointers are 2 loads, 2 XORs and
 * an OR, then the reduction.
 */
struct iop__runs {
	__m128i a, b, c, e;
};

__attribute__((always_inline)) static inline int iop__owner_runs8(uintptr_t base, uintptr_t bad, uint32_t mul,
								 uint32_t lim, void *const *objs, unsigned n,
								 struct iop__runs *r, const int pow2)
{
	/* The array's size is n, which the compiler may not know: hidden,
	 * so that its -Warray-bounds does not judge a short array (void
	 * *b[3]) by the loads of the branch for 4 and more. No instruction. */
	__asm__("" : "+r"(objs));
#define IOP__SSE2_L(i) _mm_loadu_si128(IOP__RCAST(const __m128i *, (objs + (i))))
	const __m128i vbase = _mm_set1_epi64x(IOP__SCAST(long long, base));
	r->a = IOP__SSE2_L(0);
	r->e = IOP__SSE2_L(n - 2);
	__m128i da = _mm_xor_si128(r->a, vbase), de = _mm_xor_si128(r->e, vbase);
	__m128i bits = _mm_or_si128(da, de), db = da, dc = de;
	if (n >= 4) {
		r->b = IOP__SSE2_L(2);
		r->c = IOP__SSE2_L(n - 4);
		db = _mm_xor_si128(r->b, vbase);
		dc = _mm_xor_si128(r->c, vbase);
		bits = _mm_or_si128(bits, _mm_or_si128(db, dc));
	} else {
		r->b = r->a;
		r->c = r->e;
	}
#undef IOP__SSE2_L
	bits = _mm_or_si128(bits, _mm_unpackhi_epi64(bits, bits));
	if ((IOP__SCAST(uintptr_t, _mm_cvtsi128_si64(bits)) & bad) != 0)
		return 0;
	if (pow2)
		return 1;
	const __m128i vmul = _mm_set1_epi64x(mul), vlim = _mm_set1_epi64x(lim), lo32 = _mm_set1_epi64x(0xffffffffll);
#define IOP__SSE2_T(d) _mm_sub_epi64(_mm_and_si128(_mm_mul_epu32((d), vmul), lo32), vlim)
	__m128i neg = _mm_and_si128(_mm_and_si128(IOP__SSE2_T(da), IOP__SSE2_T(db)),
				    _mm_and_si128(IOP__SSE2_T(dc), IOP__SSE2_T(de)));
#undef IOP__SSE2_T
	return (_mm_movemask_pd(_mm_castsi128_pd(neg)) & 3) == 3;
}

/*
 * SSE2 for 2 <= n <= 16 (IOP__OWNER_SHORT_MAX), inline in the caller
 * (iop_free_bulk): up to 8 the four runs above; 9 to 16 the first eight
 * and the last eight, as the sequences' copy does (at 16 they do not
 * overlap).
 */
__attribute__((always_inline)) static inline int iop__owner_sse2_runs(uintptr_t base, uintptr_t bad, uint32_t mul,
								     uint32_t lim, void *const *objs, unsigned n,
								     const int pow2)
{
	if (n <= 8) {
		struct iop__runs r;
		return iop__owner_runs8(base, bad, mul, lim, objs, n, &r, pow2);
	}
	__asm__("" : "+r"(objs)); /* as in iop__owner_runs8() */
	const __m128i vbase = _mm_set1_epi64x(IOP__SCAST(long long, base));
	const __m128i vmul = _mm_set1_epi64x(mul), vlim = _mm_set1_epi64x(lim), lo32 = _mm_set1_epi64x(0xffffffffll);
	__m128i bits = _mm_setzero_si128(), neg = _mm_set1_epi64x(-1);
#define IOP__SSE2_D(i)                                                                                   \
	do {                                                                                             \
		__m128i d_ = _mm_xor_si128(_mm_loadu_si128(IOP__RCAST(const __m128i *, (objs + (i)))), vbase); \
		bits = _mm_or_si128(bits, d_);                                                           \
		if (!pow2)                                                                               \
			neg = _mm_and_si128(neg, _mm_sub_epi64(_mm_and_si128(_mm_mul_epu32(d_, vmul), lo32), vlim)); \
	} while (0)
	IOP__SSE2_D(0);
	IOP__SSE2_D(2);
	IOP__SSE2_D(4);
	IOP__SSE2_D(6);
	IOP__SSE2_D(n - 8);
	IOP__SSE2_D(n - 6);
	IOP__SSE2_D(n - 4);
	IOP__SSE2_D(n - 2);
#undef IOP__SSE2_D
	bits = _mm_or_si128(bits, _mm_unpackhi_epi64(bits, bits));
	if (pow2)
		return (IOP__SCAST(uintptr_t, _mm_cvtsi128_si64(bits)) & bad) == 0;
	return (IOP__SCAST(uintptr_t, _mm_cvtsi128_si64(bits)) & bad) == 0 &&
	       (_mm_movemask_pd(_mm_castsi128_pd(neg)) & 3) == 3;
}

__attribute__((always_inline)) static inline int iop__owner_sse2_short(uintptr_t base, uintptr_t bad, uint32_t mul,
								      uint32_t lim, void *const *objs, unsigned n)
{
	return mul == 1 ? iop__owner_sse2_runs(base, bad, mul, lim, objs, n, 1)
			: iop__owner_sse2_runs(base, bad, mul, lim, objs, n, 0);
}

/*
 * AVX2: 16 pointers per step, in four registers: the XOR with the base (the
 * load folded in), their OR into one register of bits (tested against
 * bad once, after the loop), then the 8 low halves of each pair (in some
 * order: the max does not care), vpmulld and vpmaxud. The last 8 pointers
 * overlap the ones before when n is not a multiple of 8: OR and max do not
 * mind seeing a pointer twice. The max of the lanes is compared once.
 */
#define IOP__AVX2_D(p) _mm256_xor_si256(_mm256_loadu_si256(IOP__RCAST(const __m256i *, (p))), vbase)
#define IOP__AVX2_LO(a, b) \
	_mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), 0x88))

__attribute__((target("avx2"), always_inline)) static inline int
iop__owner_avx2_body(uintptr_t base, uintptr_t bad, uint32_t mul, uint32_t lim, void *const *objs, unsigned n)
{
	if (n < 8)
		return iop__owner_one_chunk(base, bad, mul, lim, objs, n);
	const __m256i vbase = _mm256_set1_epi64x(IOP__SCAST(long long, base)), vbad = _mm256_set1_epi64x(IOP__SCAST(long long, bad));
	const __m256i vmul = _mm256_set1_epi32(IOP__SCAST(int, mul));
	__m256i max = _mm256_setzero_si256(), bits = _mm256_setzero_si256();
	void *const *p = objs, *const *end = objs + n, *const *last16 = end - 16;

	/* Pointers, not an unsigned index: no zero-extension per load, and
	 * one compare per step (p <= last16 is only formed when n >= 16).
	 * The bits are tested once, after the loop: an array of another
	 * chunk is rare, and its exact pass reads the array again anyway. */
	for (; n >= 16 && p <= last16; p += 16) {
		__m256i a = IOP__AVX2_D(p), b = IOP__AVX2_D(p + 4), c = IOP__AVX2_D(p + 8), d = IOP__AVX2_D(p + 12);
		bits = _mm256_or_si256(bits, _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d)));
		max = _mm256_max_epu32(max, _mm256_mullo_epi32(IOP__AVX2_LO(a, b), vmul));
		max = _mm256_max_epu32(max, _mm256_mullo_epi32(IOP__AVX2_LO(c, d), vmul));
	}
	for (; p < end; p += 8) {
		if (end - p < 8)
			p = end - 8;
		__m256i a = IOP__AVX2_D(p), b = IOP__AVX2_D(p + 4);
		bits = _mm256_or_si256(bits, _mm256_or_si256(a, b));
		max = _mm256_max_epu32(max, _mm256_mullo_epi32(IOP__AVX2_LO(a, b), vmul));
	}
	if (!_mm256_testz_si256(bits, vbad))
		return 0;
	__m128i m = _mm_max_epu32(_mm256_castsi256_si128(max), _mm256_extracti128_si256(max, 1));
	m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4e));
	m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xb1));
	return IOP__SCAST(uint32_t, _mm_cvtsi128_si32(m)) < lim;
}
#undef IOP__AVX2_D
#undef IOP__AVX2_LO

/*
 * Two chunks (a magazine that straddles a chunk boundary, or objects of two
 * chunks interleaved): every pointer's chunk base (a & ~chunk_mask) must be
 * one of base0 and base1, both already found in the map; the offset a &
 * chunk_mask then takes the same 32-bit test. 8 pointers: 2 loads, 2 ANDs
 * for the bases, 4 compares, 2 ORs and 2 ANDs to keep the verdict, 2
 * XORs for the offsets, 2 ORs of their bits, then shuffle, multiply, max:
 * about 2.4 instructions per pointer, against iop__owned_all()'s 16 when
 * the granule keeps changing. 1 when all passed, 0 otherwise (the caller
 * then asks the scalar check). n >= 8.
 */
__attribute__((target("avx2"))) static inline int iop__owner_avx2_two(uintptr_t base0, uintptr_t base1,
								      uintptr_t chunk_mask, uintptr_t low, uint32_t mul,
								      uint32_t lim, void *const *objs, unsigned n)
{
	const __m256i vb0 = _mm256_set1_epi64x(IOP__SCAST(long long, base0)), vb1 = _mm256_set1_epi64x(IOP__SCAST(long long, base1));
	const __m256i vhi = _mm256_set1_epi64x(IOP__SCAST(long long, ~chunk_mask)), vmul = _mm256_set1_epi32(IOP__SCAST(int, mul));
	__m256i ok = _mm256_set1_epi64x(-1), bits = _mm256_setzero_si256(), max = _mm256_setzero_si256();
	void *const *p = objs, *const *end = objs + n;

	for (; p < end; p += 8) {
		if (end - p < 8)
			p = end - 8;
		__m256i a = _mm256_loadu_si256(IOP__RCAST(const __m256i *, p));
		__m256i b = _mm256_loadu_si256(IOP__RCAST(const __m256i *, (p + 4)));
		__m256i ca = _mm256_and_si256(a, vhi), cb = _mm256_and_si256(b, vhi);
		ok = _mm256_and_si256(ok, _mm256_or_si256(_mm256_cmpeq_epi64(ca, vb0), _mm256_cmpeq_epi64(ca, vb1)));
		ok = _mm256_and_si256(ok, _mm256_or_si256(_mm256_cmpeq_epi64(cb, vb0), _mm256_cmpeq_epi64(cb, vb1)));
		a = _mm256_xor_si256(a, ca);
		b = _mm256_xor_si256(b, cb);
		bits = _mm256_or_si256(bits, _mm256_or_si256(a, b));
		__m256i d = _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), 0x88));
		max = _mm256_max_epu32(max, _mm256_mullo_epi32(d, vmul));
	}
	if (_mm256_movemask_epi8(ok) != -1)
		return 0;
	__m128i b2 = _mm_or_si128(_mm256_castsi256_si128(bits), _mm256_extracti128_si256(bits, 1));
	b2 = _mm_or_si128(b2, _mm_unpackhi_epi64(b2, b2));
	__m128i m = _mm_max_epu32(_mm256_castsi256_si128(max), _mm256_extracti128_si256(max, 1));
	m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4e));
	m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xb1));
	return (IOP__SCAST(uintptr_t, _mm_cvtsi128_si64(b2)) & low) == 0 && IOP__SCAST(uint32_t, _mm_cvtsi128_si32(m)) < lim;
}

/* A stride with an odd part, and a power-of-two stride (the OR is the
 * whole check): separate functions, so each loop carries only its work. */
__attribute__((target("avx2"))) static inline int iop__owner_avx2(uintptr_t base, uintptr_t bad, uint32_t mul,
								  uint32_t lim, void *const *objs, unsigned n)
{
	return iop__owner_avx2_body(base, bad, mul, lim, objs, n);
}

/*
 * A power-of-two stride: the OR of the XORs alone, 32 pointers a step (8
 * loads folded into 8 XORs, 8 ORs), then a run of 16, the last 1 to 15 as
 * one or two runs of 8 that end at the array's end; the bits reduced to
 * one word and tested in a general register (a broadcast of bad would
 * cost a stack frame).
 */
__attribute__((target("avx2"))) static inline int iop__owner_avx2_pow2(uintptr_t base, uintptr_t bad, uint32_t mul,
								       uint32_t lim, void *const *objs, unsigned n)
{
	if (n < 8)
		return iop__owner_one_chunk(base, bad, mul, lim, objs, n);
	const __m256i vbase = _mm256_set1_epi64x(IOP__SCAST(long long, base));
	__m256i bits = _mm256_setzero_si256();
	size_t i = 0;
#define IOP__AVX2_D(q) _mm256_xor_si256(_mm256_loadu_si256(IOP__RCAST(const __m256i *, (q))), vbase)
#define IOP__AVX2_16(q) \
	_mm256_or_si256(_mm256_or_si256(IOP__AVX2_D((q)), IOP__AVX2_D((q) + 4)), \
			_mm256_or_si256(IOP__AVX2_D((q) + 8), IOP__AVX2_D((q) + 12)))
	/* 32 a step: the loop's compare, branch and add count per step. */
	for (; i + 32 <= n; i += 32)
		bits = _mm256_or_si256(bits, _mm256_or_si256(IOP__AVX2_16(objs + i), IOP__AVX2_16(objs + i + 16)));
	if (i + 16 <= n) {
		bits = _mm256_or_si256(bits, IOP__AVX2_16(objs + i));
		i += 16;
	}
#undef IOP__AVX2_16
	if (i != n) {
		if (n - i > 8)
			bits = _mm256_or_si256(bits, _mm256_or_si256(IOP__AVX2_D(objs + i), IOP__AVX2_D(objs + i + 4)));
		bits = _mm256_or_si256(bits, _mm256_or_si256(IOP__AVX2_D(objs + n - 8), IOP__AVX2_D(objs + n - 4)));
	}
#undef IOP__AVX2_D
	__m128i b = _mm_or_si128(_mm256_castsi256_si128(bits), _mm256_extracti128_si256(bits, 1));
	b = _mm_or_si128(b, _mm_unpackhi_epi64(b, b));
	return (IOP__SCAST(uintptr_t, _mm_cvtsi128_si64(b)) & bad) == 0;
}
#endif /* IOP__OWNER_X86 */

/* Kernels, for tests and measurements: which one iop__owned_array() uses. */
#define IOP__OWNER_SCALAR 0
#define IOP__OWNER_SSE2 1
#define IOP__OWNER_AVX2 2
/* Arrays shorter than this never reach a kernel (iop__owned_array_with:
 * SSE2 runs, or the scalar loop). */
#define IOP__OWNER_VECTOR_MIN 16u
/* The longest array iop__owned_array() tests inline (iop__owner_sse2_runs)
 * rather than with a call of the AVX2 kernel. */
#define IOP__OWNER_SHORT_MAX 16u

/* Which kernel tests an array of pool h: AVX2 where the caller is built for
 * it or the pool's simd byte says the CPU has it (the library set the byte
 * from __builtin_cpu_supports(): inline.h, IOP__SIMD_AVX2). */
static inline unsigned iop__owner_kernel(const struct iop__pool_hot *h)
{
#if defined(IOP__OWNER_X86) && defined(__AVX2__)
	(void)h;
	return IOP__OWNER_AVX2;
#elif defined(IOP__OWNER_X86)
	return (h->simd & IOP__SIMD_AVX2) ? IOP__OWNER_AVX2 : IOP__OWNER_SSE2;
#else
	(void)h;
	return IOP__OWNER_SCALAR;
#endif
}

/*
 * The check with a chosen kernel (the kernel must run on this CPU): 1 when
 * every objs[i] is an object of pool, else 0. pool, map and the hot fields
 * as in struct iop__pool_hot; chunk_mask below 4 GiB. Not inlined: the
 * caller's loop (an inlined iop_free_bulk) keeps its registers; the call
 * is paid once per array of 2 or more.
 *
 * Under 16 pointers the AVX2 set-up (and its vzeroupper) costs more than it
 * saves, so short arrays take the SSE2 one-chunk test (the x86-64
 * baseline: no CPU check) whatever the kernel, or the scalar one-chunk
 * loop for IOP__OWNER_SCALAR: 8 pointers of one chunk are 4 XORs, 4 ORs
 * and a reduction for a power-of-two stride, against about 11
 * instructions per pointer in iop__owned_array_scalar(), which stays the
 * exact answer for arrays of several chunks.
 */
__attribute__((noinline, unused)) static int iop__owned_array_with(unsigned kernel, const struct iop_pool *pool, struct iop_pool *const *map,
					uintptr_t chunk_mask, uint64_t div_mul, unsigned div_shift,
					uint64_t objs_per_chunk, void *const *objs, unsigned n)
{
	if (n == 0)
		return 1;
	uintptr_t a0 = IOP__RCAST(uintptr_t, objs[0]), g = a0 >> IOP__GRANULE_SHIFT;
	if (g >= IOP__MAP_ENTRIES || __atomic_load_n(&map[g], __ATOMIC_RELAXED) != pool)
		return 0;
	const uintptr_t base = a0 & ~chunk_mask, bad = ~chunk_mask | ((IOP__SCAST(uintptr_t, 1) << div_shift) - 1);
	const uint32_t mul = IOP__SCAST(uint32_t, div_mul), lim = IOP__SCAST(uint32_t, objs_per_chunk << div_shift);
	int one_chunk;
	(void)kernel;
	if (n < IOP__OWNER_VECTOR_MIN) {
#if defined(IOP__OWNER_X86)
		if (kernel != IOP__OWNER_SCALAR && n >= 2)
			one_chunk = iop__owner_sse2_short(base, bad, mul, lim, objs, n);
		else
#endif
			one_chunk = iop__owner_one_chunk(base, bad, mul, lim, objs, n);
	} else {
		switch (kernel) {
#if defined(IOP__OWNER_X86)
		case IOP__OWNER_AVX2:
			one_chunk = mul == 1 ? iop__owner_avx2_pow2(base, bad, mul, lim, objs, n)
					     : iop__owner_avx2(base, bad, mul, lim, objs, n);
			if (__builtin_expect(!one_chunk, 0) && n >= 8) {
				/* A second chunk, if the map says it is this pool's too. */
				unsigned j = 1;
				while (j < n && ((IOP__RCAST(uintptr_t, objs[j]) ^ a0) & ~chunk_mask) == 0)
					j++;
				uintptr_t a1 = j < n ? IOP__RCAST(uintptr_t, objs[j]) : 0, g1 = a1 >> IOP__GRANULE_SHIFT;
				if (j < n && g1 < IOP__MAP_ENTRIES && __atomic_load_n(&map[g1], __ATOMIC_RELAXED) == pool)
					one_chunk = iop__owner_avx2_two(base, a1 & ~chunk_mask, chunk_mask,
								       (IOP__SCAST(uintptr_t, 1) << div_shift) - 1, mul, lim,
								       objs, n);
			}
			break;
		case IOP__OWNER_SSE2:
			one_chunk = mul == 1 ? iop__owner_sse2(base, bad, mul, lim, objs, n, 1)
					     : iop__owner_sse2(base, bad, mul, lim, objs, n, 0);
			break;
#endif
		default:
			one_chunk = iop__owner_one_chunk(base, bad, mul, lim, objs, n);
			break;
		}
	}
	if (__builtin_expect(one_chunk, 1))
		return 1;
	/* Several chunks, or a bad pointer: the exact answer. */
	return iop__owned_array_scalar(pool, map, chunk_mask, div_mul, div_shift, objs_per_chunk, objs, n);
}

#if defined(IOP__OWNER_X86)
/*
 * The first pointer, as the inline one-chunk tests start. A power-of-two
 * stride: iop__owned()'s test (none of free_bad's bits, then the map);
 * passing it, p0 is an object at an object boundary, so XORing the others
 * with p0 rather than with its chunk's base leaves the same bits of
 * owner_bad (the high ones: another chunk; the low ones: not at a
 * boundary), and *base is p0 itself: IOP__FIRST_P2, without the index's
 * range test, the base's mask or a test of the stride. Any other stride
 * has every bit of free_bad (only a NULL passes, and the map refuses
 * it): the map, then *base = p0's chunk base, IOP__FIRST_MUL. 0 when p0
 * is not an object of pool (a power-of-two stride that fails the test,
 * a granule the map does not give to pool).
 */
#define IOP__FIRST_P2 1
#define IOP__FIRST_MUL 2
__attribute__((always_inline)) static inline int iop__owner_first(const struct iop_pool *pool,
								  struct iop_pool *const *map,
								  const struct iop__pool_hot *h, const void *p0,
								  uintptr_t *base)
{
	uintptr_t a0 = IOP__RCAST(uintptr_t, p0), g = a0 >> IOP__GRANULE_SHIFT;
	if (__builtin_expect((a0 & h->free_bad) == 0, 1)) {
		*base = a0;
		return __atomic_load_n(&map[g], __ATOMIC_RELAXED) == pool ? IOP__FIRST_P2 : 0;
	}
	if (IOP__SCAST(uint32_t, h->div_mul) == 1 || g >= IOP__MAP_ENTRIES ||
	    __atomic_load_n(&map[g], __ATOMIC_RELAXED) != pool)
		return 0;
	*base = a0 & ~h->chunk_mask;
	return IOP__FIRST_MUL;
}

/* The offset limit the stride's multiply is tested against. */
#define IOP__OWNER_LIM(h) IOP__SCAST(uint32_t, (h)->objs_per_chunk << (h)->div_shift)
#endif

/*
 * Is every objs[0..n) an object of pool? 1 if so (and for n = 0), else 0.
 * h is the pool's struct iop__pool_hot, map iop__map. Inline: the first
 * pointer's map entry, then (x86-64) the SSE2 one-chunk test up to
 * IOP__OWNER_SHORT_MAX pointers or without AVX2, else a call of the AVX2
 * kernel above (at 16 pointers the inline test took 0.49-0.50 ns per object
 * allocated and freed in bulk, iopool-bench --cases bulk, against
 * 0.52-0.54 with the call, and DPDK's 0.51); iop__owned_array_with() only
 * when that says no (several chunks, or a bad pointer), for the exact
 * answer. iop_free_bulk() of 16 and more with AVX2 and a power-of-two
 * stride checks inside its push instead (inline.h, iop__seq_push_bulk_own)
 * and asks this only when that says no.
 */
static inline int iop__owned_array(const struct iop_pool *pool, struct iop_pool *const *map,
				   const struct iop__pool_hot *h, void *const *objs, unsigned n)
{
	if (n <= 1)
		return iop__owned_array_scalar(pool, map, h->chunk_mask, h->div_mul, h->div_shift, h->objs_per_chunk,
					       objs, n);
#if defined(IOP__OWNER_X86)
	uintptr_t base;
	const int first = iop__owner_first(pool, map, h, objs[0], &base);
	if (!first)
		return 0;
	const uintptr_t bad = h->owner_bad;
	int ok;
	if (__builtin_expect(first == IOP__FIRST_P2, 1)) {
		if (n <= IOP__OWNER_SHORT_MAX)
			ok = iop__owner_sse2_runs(base, bad, 1, 0, objs, n, 1);
		else if (iop__owner_kernel(h) == IOP__OWNER_AVX2)
			ok = iop__owner_avx2_pow2(base, bad, 1, 0, objs, n);
		else
			ok = iop__owner_sse2(base, bad, 1, 0, objs, n, 1);
	} else {
		const uint32_t mul = IOP__SCAST(uint32_t, h->div_mul), lim = IOP__OWNER_LIM(h);
		if (n <= IOP__OWNER_SHORT_MAX)
			ok = iop__owner_sse2_runs(base, bad, mul, lim, objs, n, 0);
		else if (iop__owner_kernel(h) == IOP__OWNER_AVX2)
			ok = iop__owner_avx2(base, bad, mul, lim, objs, n);
		else
			ok = iop__owner_sse2(base, bad, mul, lim, objs, n, 0);
	}
	if (__builtin_expect(ok, 1))
		return 1;
#endif
	return iop__owned_array_with(iop__owner_kernel(h), pool, map, h->chunk_mask, h->div_mul, h->div_shift,
				     h->objs_per_chunk, objs, n);
}

#if defined(IOP__OWNER_X86)
/*
 * iop__owned_array() for 2 <= n <= 8, keeping the array's runs in *r for
 * the caller's push (iop_free_bulk). 1 when every objs[i] is an object of
 * the chunk of objs[0], which the map says is pool's; 0 otherwise (the
 * caller then takes the slow path, which finds the exact answer).
 */
__attribute__((always_inline)) static inline int iop__owned_runs8(const struct iop_pool *pool,
								 struct iop_pool *const *map,
								 const struct iop__pool_hot *h, void *const *objs,
								 unsigned n, struct iop__runs *r)
{
	uintptr_t base;
	const int first = iop__owner_first(pool, map, h, objs[0], &base);
	if (__builtin_expect(first == IOP__FIRST_P2, 1))
		return iop__owner_runs8(base, h->owner_bad, 1, 0, objs, n, r, 1);
	if (!first)
		return 0;
	return iop__owner_runs8(base, h->owner_bad, IOP__SCAST(uint32_t, h->div_mul), IOP__OWNER_LIM(h), objs, n, r, 0);
}
#endif

#ifdef __cplusplus
}
#endif

#endif /* IOPOOL_OWNER_H */
