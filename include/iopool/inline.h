/* SPDX-License-Identifier: MIT */
/*
 * iopool's inline fast paths and the internal ABI they rely on. Included by
 * iopool.h; never include it on its own.
 *
 * iop_alloc(), iop_free(), the bulk calls, iop_buf_alloc()/iop_buf_put()
 * and the heap's alloc/free are defined here, inline in the caller (as
 * DPDK's rte_mempool_get/put are): through a call, the cache's count makes
 * a round trip through memory between an alloc and a free. src/ffi.c
 * compiles the same bodies once more as the exported functions (liburing's
 * IOURINGINLINE pattern), for IOP_NO_INLINE callers, other languages and
 * dlsym().
 *
 * Everything named iop__* / IOP__* is internal ABI: it changes with
 * IOP__INLINE_ABI, which the library's symbol versions carry
 * (IOPOOL_INLINE_<n>), so a program built against another inline ABI fails
 * to load rather than misread the library's structures.
 *
 * Per-CPU caches (DESIGN.md, layer 1). Every pool has one slot per possible
 * CPU: an array of free objects and a count. The inline code pops and
 * pushes the slot of the CPU it runs on inside a restartable sequence
 * (rseq, registered for every thread by glibc): the kernel restarts the
 * sequence if the thread is preempted, migrated or signalled before its one
 * committing store, so no lock and no atomic read-modify-write is needed.
 * Another thread drains a CPU's slot by closing it (cap = 0, which every
 * sequence tests) and then fencing that CPU
 * (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)): after the fence no
 * sequence that saw the slot open can still commit.
 *
 *   pool (first cache line: struct iop__pool_hot)
 *   +-------------+      slot[-2], slot[-1]: always closed (a thread without
 *   | cpu --------+--->  rseq reads cpu_id -1 or -2 and lands there)
 *   | rseq_off    |      slot[0]  | head | cap | objs -+--> [o o o . . .]
 *   | owner check |      slot[1]  | head | cap | objs -+--> [o . . . . .]
 *   +-------------+      ...         head = count | fast allocs << 16
 *
 * Whenever the inline code cannot finish (empty, full or closed slot, no
 * rseq, a checked or bounded pool, a bad pointer) it calls the library,
 * which also keeps per-thread caches for threads and pools the per-CPU
 * caches do not serve.
 */
#ifndef IOPOOL_INLINE_H
#define IOPOOL_INLINE_H

#ifndef IOPOOL_H
#error "include <iopool.h>, not <iopool/inline.h>"
#endif

#include <iopool/buildconf.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The layout of the inline ABI; the library's symbol versions carry it. */
#define IOP__INLINE_ABI 4

/* One per (CPU, pool): 64 bytes, one cache line. */
struct iop__cslot {
	/* The word every sequence commits: the objects in objs (low 16
	 * bits; at most IOP_CACHE_SIZE_MAX) and, above them, the
	 * allocations served by this slot (mod 2^48), so the fast path's
	 * counter needs no store of its own. */
	uint64_t head;
	uint32_t cap;     /* objects objs can hold; 0: closed */
	uint32_t unused_; /* library-private from here on */
	void **objs;
	uint64_t priv_[5];
};

/* The first bytes of every pool: what the inline code reads. */
struct iop__pool_hot {
	struct iop__cslot *cpu; /* slot 0; slots -2 and -1 are never open */
	uintptr_t chunk_mask;   /* chunk size - 1 */
	uint64_t div_mul;       /* inverse of the stride's odd part mod 2^64 */
	uint64_t objs_per_chunk;
	uint64_t stride;        /* bytes between objects */
	uint64_t free_bad;      /* a power-of-two stride: the address bits
	                           above the map's range and stride - 1, the
	                           bits no object's address has set; any other
	                           stride: all ones (iop__owned) */
	int32_t rseq_off;       /* glibc's __rseq_offset, copied (a static
	                           TLS offset: 32 bits, read sign-extended) */
	uint8_t div_shift;      /* trailing zero bits of the stride */
	uint8_t put_slow;       /* iop_buf_put() always takes the library path:
	                           not IOP_F_REFCOUNT, a release hook, checked */
	uint8_t heap;           /* one of the heap's size classes */
	uint8_t simd;           /* IOP__SIMD_*: what the CPU runs, as the
	                           library found it at creation; 0 (what a
	                           library before this field left in the
	                           zeroed struct) keeps to SSE2 */
	uint64_t owner_bad;     /* ~chunk_mask | (2^div_shift - 1): the bits
	                           an object's address never differs from its
	                           chunk's base in (owner.h) */
};

/* The bits of iop__pool_hot.simd. The inline bursts test the pool's byte,
 * on the line they read anyway, rather than __builtin_cpu_supports(): its
 * load of the address of libgcc's __cpu_model is loop-invariant, so a
 * caller's loop kept it in a register or on the stack, and its own
 * variables moved to the stack instead (bench/mempool_perf.c's loops:
 * docs/BENCHMARKS.md, issue 12, ninth session). */
#define IOP__SIMD_AVX 1u  /* AVX, with the OS saving the ymm registers */
#define IOP__SIMD_AVX2 2u /* AVX2 as well */

#define IOP__GRANULE_SHIFT 21
#if defined(__aarch64__)
#define IOP__MAP_ENTRIES (IOP__SCAST(uintptr_t, 1) << (48 - IOP__GRANULE_SHIFT))
#else
#define IOP__MAP_ENTRIES (IOP__SCAST(uintptr_t, 1) << (47 - IOP__GRANULE_SHIFT))
#endif

/* One entry per 2 MiB of address space: the pool that owns it, or NULL. */
IOP_API extern iop_pool_t **iop__map;
#include <iopool/owner.h>

IOP_API void *iop__alloc_slow(iop_pool_t *pool);
IOP_API void iop__free_slow(iop_pool_t *pool, void *obj);
IOP_API unsigned iop__alloc_bulk_slow(iop_pool_t *pool, void **objs, unsigned n);
IOP_API void iop__free_bulk_slow(iop_pool_t *pool, void *const *objs, unsigned n);
IOP_API void iop__buf_put_slow(iop_pool_t *pool, void *p);
IOP_API void *iop__buf_alloc_slow(iop_pool_t *pool);
IOP_API void *iop__heap_alloc_slow(size_t size);
IOP_API void iop__heap_free_slow(void *p);
IOP_API void iop__bad_free(iop_pool_t *pool, const void *obj) __attribute__((cold, noreturn));
/* The heap's class pools (NULL until a class is first used). */
IOP_API extern iop_pool_t *iop__heap_class[IOP_HEAP_CLASSES];
/* Per-call-site profiling (IOP_PROFILE): NULL until the first profiled
 * block is handed out, then one entry per granule of the address map (as
 * iop__map): NULL, or the site ids of the objects of the heap class chunk
 * there, indexed by object number (every granule of a chunk names the same
 * array). An id is written by the profiled allocation, read and cleared
 * by the free, whichever file it is compiled in; 0 is no site. */
IOP_API extern uint32_t **iop__map_sites;

/* The library's build decides (buildconf.h), never the caller's flags: a
 * program built with -fsanitize=address and linked to a Release library
 * must not poison objects that the library's slow paths hand out unpoisoned,
 * and the reverse. */
#if IOP__LIB_ASAN
/* Weak: a program built without sanitizers links against the ASan library
 * too; the library brings ASan's runtime (which must be loaded first, e.g.
 * LD_PRELOAD), and the calls resolve there. */
__attribute__((weak)) void __asan_poison_memory_region(void const volatile *addr, size_t size);
__attribute__((weak)) void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#define IOP__POISON(p, n) __asan_poison_memory_region((p), (n))
#define IOP__UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define IOP__POISON(p, n) ((void)0)
#define IOP__UNPOISON(p, n) ((void)0)
#endif

/* Relaxed loads of words other threads write (the map); plain loads let
 * the compiler schedule them freely. A ThreadSanitizer library runs every
 * call through the library (no sequences, which it cannot see into). */
#if IOP__LIB_TSAN
#define IOP__LD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#else
#define IOP__LD(p) (*(p))
#endif
/* The same for a pointer published (release) after what it points to was
 * mapped: the profiling site arrays. The address dependency orders the
 * loads on every CPU iopool runs on; ThreadSanitizer, which does not see
 * it, is shown an acquire load. Plain otherwise, so that the compiler may
 * keep the value from the allocation for the free (5 instructions per
 * profiled pair, callgrind). */
#if IOP__LIB_TSAN
#define IOP__LD_DEP(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#else
#define IOP__LD_DEP(p) (*(p))
#endif

/* The inline sequences: x86-64 with rseq, in a library that uses them. */
#if defined(__x86_64__) && IOP__LIB_RSEQ && !IOP__LIB_TSAN
#define IOP__SEQ 1
#else
#define IOP__SEQ 0
#endif

#define IOP__HOT(pool) IOP__RCAST(const struct iop__pool_hot *, (pool))

/*
 * Does `pool` own an object that starts at p? One map load, then the offset
 * in the chunk divided by the stride as a multiply and a rotate: an offset
 * q * 2^k * m (m odd) times m's inverse, rotated right by k, gives q; any
 * offset that is not a multiple of the stride gives a number above every
 * valid index.
 */
static inline uint64_t iop__obj_number(const iop_pool_t *pool, const void *p)
{
	const struct iop__pool_hot *h = IOP__HOT(pool);
	uint64_t x = IOP__SCAST(uint64_t, IOP__RCAST(uintptr_t, p) & h->chunk_mask) * h->div_mul;
	unsigned k = h->div_shift;
	return (x >> k) | (x << ((64 - k) & 63));
}

static inline uint64_t iop__obj_index(const iop_pool_t *pool, const void *p)
{
	uintptr_t g = IOP__RCAST(uintptr_t, p) >> IOP__GRANULE_SHIFT;
	if (__builtin_expect(g >= IOP__MAP_ENTRIES, 0) || IOP__LD(&iop__map[g]) != pool)
		return UINT64_MAX;
	return iop__obj_number(pool, p);
}

/*
 * The same answer as iop__obj_index(pool, p) < objs_per_chunk. A
 * power-of-two stride fills its chunk, and chunks are naturally aligned:
 * there an address is an object of the pool when its granule names the
 * pool and it has none of free_bad's bits, the low ones (an object
 * boundary) or the high ones (which also keeps the map index in range).
 * One test and the map load, without the division's multiply and rotate
 * by a register or the index's range test: 8 instructions, not 14; in
 * DPDK's matrix, cells that put back one object at a time after larger
 * gets ran 17-41% faster (docs/BENCHMARKS.md). Other strides, and any
 * address that fails the test, take the division after the test (an
 * alloc+free pair: 56 instructions, was 52).
 */
static inline int iop__owned(const iop_pool_t *pool, const void *p)
{
	const struct iop__pool_hot *h = IOP__HOT(pool);
	uintptr_t a = IOP__RCAST(uintptr_t, p);
	if (__builtin_expect((a & h->free_bad) == 0, 1))
		return IOP__LD(&iop__map[a >> IOP__GRANULE_SHIFT]) == pool;
	return iop__obj_index(pool, p) < h->objs_per_chunk;
}

/*
 * The owner check of iop__owned() over an array: include/iopool/owner.h
 * tests all the objects of one chunk at once (XOR and OR against the first
 * one's chunk, the stride division as a 32-bit multiply, in vector lanes
 * where the CPU has them) and falls back to a scalar loop for other arrays.
 * The loop below is the reference it is tested against (test_owner_check).
 */
static inline int iop__owned_all_scalar(const iop_pool_t *pool, void *const *objs, unsigned n)
{
	const struct iop__pool_hot *h = IOP__HOT(pool);
	const uintptr_t mask = h->chunk_mask;
	const uint64_t mul = h->div_mul, lim = h->objs_per_chunk;
	const unsigned k = h->div_shift;
	uintptr_t known = ~IOP__SCAST(uintptr_t, 0); /* a granule already found to be ours */
	for (unsigned i = 0; i < n; i++) {
		uintptr_t a = IOP__RCAST(uintptr_t, objs[i]);
		uintptr_t g = a >> IOP__GRANULE_SHIFT;
		if (__builtin_expect(g != known, 0)) {
			if (g >= IOP__MAP_ENTRIES || IOP__LD(&iop__map[g]) != pool)
				return 0;
			known = g;
		}
		uint64_t x = IOP__SCAST(uint64_t, a & mask) * mul;
		x = (x >> k) | (x << ((64 - k) & 63));
		if (__builtin_expect(x >= lim, 0))
			return 0;
	}
	return 1;
}

static inline int iop__owned_all(const iop_pool_t *pool, void *const *objs, unsigned n)
{
	return iop__owned_array(pool, iop__map, IOP__HOT(pool), objs, n);
}

/* ---- per-call-site profiling (IOP_PROFILE) ---- */

/** The record of one call site (internal ABI: made by the macros below). */
struct iop__site {
	const char *file;
	const char *func;
	uint32_t line;
	uint32_t id;              /* library-private from here on */
	struct iop__site *next;
	int64_t bytes, calls;     /* of exited threads and sites past the
	                             per-thread table */
};

IOP_API void *iop__heap_alloc_site(size_t size, struct iop__site *site);
IOP_API void *iop__heap_alloc_aligned_site(size_t size, size_t align, struct iop__site *site);
/* Record the site of p, a block of pool just handed out by the inline
 * path, when the inline code could not (no site array or table yet, a
 * site not registered or past the table); returns p. */
IOP_API void *iop__heap_site_record(iop_pool_t *pool, void *p, struct iop__site *site);

/* A profiling thread's counters of one site: live bytes and live
 * allocations. Only the owning thread writes them (a relaxed load and
 * store, no read-modify-write); iop_profile_dump() reads them to sum. */
struct iop__prof_counter {
	int64_t bytes;
	int64_t calls;
};
/* Slots in each thread's table: site ids 1 .. IOP__PROFILE_SITES - 1
 * count there, inline; larger ids count in the library. */
#define IOP__PROFILE_SITES 4096u
/* The calling thread's counter table, indexed by site id; NULL until its
 * first profiled call, and after its exit (then the library counts). */
IOP_API extern __thread struct iop__prof_counter *iop__prof_table __attribute__((tls_model("initial-exec")));

/* One writer per counter, so no read-modify-write: a relaxed load and
 * store (dumps read the word whole). Not a plain `+=`: the compiler may
 * merge the two counters' updates into one 16-byte load and store, which
 * the CPU cannot forward from the two 8-byte stores of the allocation
 * just before (a store-forwarding stall on every profiled pair). */
static inline void iop__prof_add(int64_t *c, int64_t v)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

#if defined(IOP_PROFILE) && !defined(IOP_BUILDING_LIBRARY)
/* One static record per call site, made where the call is written. */
#define IOP__SITE_HERE()                                                     \
	__extension__({                                                      \
		static struct iop__site iop__site_ = { __FILE__, __func__,  \
						       __LINE__, 0, IOP__NULL, 0, 0 }; \
		&iop__site_;                                                 \
	})
#if defined(IOP_NO_INLINE)
#define iop_heap_alloc(size) iop__heap_alloc_site((size), IOP__SITE_HERE())
#else
#define iop_heap_alloc(size) iop__heap_alloc_prof((size), IOP__SITE_HERE())
#endif
#define iop_heap_alloc_aligned(size, align) \
	iop__heap_alloc_aligned_site((size), (align), IOP__SITE_HERE())
#endif

#if IOP__SEQ
/*
 * The restartable sequences' asm strings are longer than the 4095
 * characters C99 requires a compiler to take, which clang's -Wpedantic
 * reports for C (g++, gcc and clang++ do not); every compiler this header
 * supports takes them.
 */
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Woverlength-strings"
#endif
/*
 * The restartable sequences. Each one:
 *   6: arm      store the address of its descriptor (3:) in the thread's
 *               rseq area (rseq_cs, at offset 8);
 *   1: start    read cpu_id (offset 4; -1 or -2 without rseq, which index
 *               the two closed slots before slot 0), find the slot, read
 *               its cap, then its head word, and test the count against
 *               the cap;
 *      commit   one store of the slot's head word;
 *   2: end
 *   4: abort    (in section __rseq_failure, after the 4-byte signature the
 *               kernel checks) jump back to 6: the kernel cleared rseq_cs
 *               and the sequence starts again from the top; its inputs are
 *               never written, so a restart sees them unchanged.
 * A slot whose test fails (empty, full, closed) leaves through %l[slow]
 * before the commit, having stored nothing the slot's readers use.
 *
 * Cap before head: a drain (src/ccache.c) closes the slot (cap = 0),
 * fences, stores the emptied head, then reopens (cap). A sequence that
 * starts after the fence is not restarted by it; it is safe only if a head
 * it reads is the one the drain left. Read after an open cap, it is (x86
 * keeps loads in order, and the drain stores head before cap). Read
 * before it, as the sequences once did, a sequence could load the head
 * before the drain emptied the slot and the cap after it reopened, and
 * commit a count the drain had moved to the depot: a slot's objects
 * handed out twice. The two loads are adjacent; our guess (not measured)
 * is that the vCPU was descheduled between them, which the guest sees as
 * no interrupt and no preemption. tests/test_percpu.c's drain_racing_
 * threads_that_switch_on_a_cpu_hands_nothing_out_twice failed 2 of 50
 * runs beside two busy loops on the 2-vCPU VM before the change, 0 of
 * 200 after. scripts/seq-order.sh checks the order
 * in the compiled code (ctest sequences_read_the_cap_before_the_head).
 */
#define IOP__RSEQ_SIG "0x53053053"
#define IOP__RSEQ_DESC                                 \
	".pushsection __rseq_cs, \"aw\"\n\t"           \
	".balign 32\n\t"                               \
	"3:\n\t"                                       \
	".long 0, 0\n\t"                               \
	".quad 1f, 2f - 1f, 4f\n\t"                    \
	".popsection\n\t"
#define IOP__RSEQ_ARM                                  \
	"6: leaq 3b(%%rip), %[t]\n\t"                  \
	"movq %[t], %%fs:8(%[off])\n\t"                \
	"1: movslq %%fs:4(%[off]), %[t]\n\t"           \
	"shlq $6, %[t]\n\t"                            \
	"addq %[base], %[t]\n\t"
#define IOP__RSEQ_ABORT                                \
	"2:\n\t"                                       \
	".pushsection __rseq_failure, \"ax\"\n\t"      \
	".byte 0x0f, 0xb9, 0x3d\n\t"                   \
	".long " IOP__RSEQ_SIG "\n\t"                  \
	"4: jmp 6b\n\t"                                \
	".popsection\n\t"

/* Pop one object from this CPU's slot into p (a void * lvalue), counting
 * an allocation; jump to `slow` when the slot is empty or closed. A macro so
 * that the jump lands in the caller (no test of the result after it). */
#define IOP__SEQ_POP(h, p, slow)                                                   \
	do {                                                                       \
		uint64_t t_, w_, n_;                                               \
		__asm__ __volatile__ goto(IOP__RSEQ_DESC IOP__RSEQ_ARM             \
					  "movl 8(%[t]), %k[p]\n\t"                \
					  "movq (%[t]), %[w]\n\t"                  \
					  "movzwl %w[w], %k[n]\n\t"                \
					  "subl $1, %k[n]\n\t"                     \
					  "cmpl %k[p], %k[n]\n\t"                  \
					  "jae %l[" #slow "]\n\t"                  \
					  "movq 16(%[t]), %[p]\n\t"                \
					  "movq (%[p],%[n],8), %[p]\n\t"           \
					  "addq $0xffff, %[w]\n\t"                 \
					  "movq %[w], (%[t])\n\t" IOP__RSEQ_ABORT  \
					  : [t] "=&r"(t_), [w] "=&r"(w_), [n] "=&r"(n_), \
					    [p] "=&r"(p)                             \
					  : [off] "r"(IOP__SCAST(int64_t, (h)->rseq_off)), [base] "r"((h)->cpu) \
					  : "cc"                                     \
					  : slow);                                   \
	} while (0)

static inline void *iop__seq_pop(const struct iop__pool_hot *h)
{
	void *p;
	IOP__SEQ_POP(h, p, slow);
	return p;
slow:
	return IOP__NULL;
}

/* Push one object onto this CPU's slot; 0 when it is full or closed. */
static inline int iop__seq_push(const struct iop__pool_hot *h, void *obj)
{
	uint64_t t, w, n, a;
	__asm__ __volatile__ goto(IOP__RSEQ_DESC IOP__RSEQ_ARM
		     "movl 8(%[t]), %k[a]\n\t"
		     "movq (%[t]), %[w]\n\t"
		     "movzwl %w[w], %k[n]\n\t"
		     "cmpl %k[a], %k[n]\n\t"
		     "jae %l[slow]\n\t"
		     "movq 16(%[t]), %[a]\n\t"
		     "movq %[obj], (%[a],%[n],8)\n\t"
		     "addq $1, %[w]\n\t"
		     "movq %[w], (%[t])\n\t"
		     IOP__RSEQ_ABORT
		     : [t] "=&r"(t), [w] "=&r"(w), [n] "=&r"(n), [a] "=&r"(a)
		     : [off] "r"(IOP__SCAST(int64_t, h->rseq_off)), [base] "r"(h->cpu), [obj] "r"(obj)
		     : "cc", "memory"
		     : slow);
	return 1;
slow:
	return 0;
}

/*
 * Copy k >= 1 pointers from %[S] to %[D] (registers holding the addresses)
 * at memcpy speed inside a sequence: 16-byte SSE2 moves (the x86-64
 * baseline), 8 pointers a loop, the last partial block and arrays of up to
 * 8 copied as two overlapping runs (the overlap writes the same values
 * twice), tested 4 to 8 first, then 2 to 3, then 1: bursts of 4 and 8
 * take one compare and no loop. A sequence cannot call memcpy: the kernel
 * restarts only what runs between its start and its commit. Uses %[n] and %[x] as scratch,
 * %q[k] as the count, xmm0-xmm3 (the AVX copy: ymm0-ymm7), and the local
 * labels 0, 5, 7, 8 and 9 (1-4 and 6 belong to the sequence around it).
 */
#define IOP__SEQ_COPY_CLOBBERS
#define IOP__SEQ_COPY(S, D)                                                  \
	"cmpl $8, %k[k]\n\t"                                                 \
	"jbe 7f\n\t"                                                         \
	"xorl %k[n], %k[n]\n\t"                                              \
	"leal -8(%q[k]), %k[x]\n\t"                                          \
	"5: movups (%[" S "],%[n],8), %%xmm0\n\t"                            \
	"movups 16(%[" S "],%[n],8), %%xmm1\n\t"                             \
	"movups 32(%[" S "],%[n],8), %%xmm2\n\t"                             \
	"movups 48(%[" S "],%[n],8), %%xmm3\n\t"                             \
	"movups %%xmm0, (%[" D "],%[n],8)\n\t"                               \
	"movups %%xmm1, 16(%[" D "],%[n],8)\n\t"                             \
	"movups %%xmm2, 32(%[" D "],%[n],8)\n\t"                             \
	"movups %%xmm3, 48(%[" D "],%[n],8)\n\t"                             \
	"addl $8, %k[n]\n\t"                                                 \
	"cmpl %k[x], %k[n]\n\t"                                              \
	"jbe 5b\n\t"                                                         \
	"cmpl %k[k], %k[n]\n\t"                                              \
	"je 8f\n\t"                                                          \
	"movups (%[" S "],%[x],8), %%xmm0\n\t"                               \
	"movups 16(%[" S "],%[x],8), %%xmm1\n\t"                             \
	"movups 32(%[" S "],%[x],8), %%xmm2\n\t"                             \
	"movups 48(%[" S "],%[x],8), %%xmm3\n\t"                             \
	"movups %%xmm0, (%[" D "],%[x],8)\n\t"                               \
	"movups %%xmm1, 16(%[" D "],%[x],8)\n\t"                             \
	"movups %%xmm2, 32(%[" D "],%[x],8)\n\t"                             \
	"movups %%xmm3, 48(%[" D "],%[x],8)\n\t"                             \
	"jmp 8f\n\t"                                                         \
	"7: cmpl $4, %k[k]\n\t"                                              \
	"jb 0f\n\t"                                                          \
	"movups (%[" S "]), %%xmm0\n\t"                                      \
	"movups 16(%[" S "]), %%xmm1\n\t"                                    \
	"movups -32(%[" S "],%q[k],8), %%xmm2\n\t"                           \
	"movups -16(%[" S "],%q[k],8), %%xmm3\n\t"                           \
	"movups %%xmm0, (%[" D "])\n\t"                                      \
	"movups %%xmm1, 16(%[" D "])\n\t"                                    \
	"movups %%xmm2, -32(%[" D "],%q[k],8)\n\t"                           \
	"movups %%xmm3, -16(%[" D "],%q[k],8)\n\t"                           \
	"jmp 8f\n\t"                                                         \
	"0: cmpl $2, %k[k]\n\t"                                              \
	"jb 9f\n\t"                                                          \
	"movups (%[" S "]), %%xmm0\n\t"                                      \
	"movups -16(%[" S "],%q[k],8), %%xmm1\n\t"                           \
	"movups %%xmm0, (%[" D "])\n\t"                                      \
	"movups %%xmm1, -16(%[" D "],%q[k],8)\n\t"                           \
	"jmp 8f\n\t"                                                         \
	"9: movq (%[" S "]), %[x]\n\t"                                       \
	"movq %[x], (%[" D "])\n\t"                                          \
	"8:\n\t"

/*
 * The same with 32-byte AVX moves, for k >= 16 (the callers test), on CPUs
 * that have AVX (the caller tests the pool's simd byte, IOP__HAVE_AVX(h),
 * as owner.h does): 32 pointers a loop in ymm0-ymm7, the last
 * partial block as one run of 32 that ends at k (overlapping the one
 * before); 16 pointers as one run, 17 to 31 as two, the first 16 and the
 * last 16.
 * vzeroupper at the end: SSE code after dirty upper halves is slow on
 * some cores.
 */
#define IOP__SEQ_COPY_AVX32(S, D, I)                                         \
	"vmovups (%[" S "],%[" I "],8), %%ymm0\n\t"                          \
	"vmovups 32(%[" S "],%[" I "],8), %%ymm1\n\t"                        \
	"vmovups 64(%[" S "],%[" I "],8), %%ymm2\n\t"                        \
	"vmovups 96(%[" S "],%[" I "],8), %%ymm3\n\t"                        \
	"vmovups 128(%[" S "],%[" I "],8), %%ymm4\n\t"                       \
	"vmovups 160(%[" S "],%[" I "],8), %%ymm5\n\t"                       \
	"vmovups 192(%[" S "],%[" I "],8), %%ymm6\n\t"                       \
	"vmovups 224(%[" S "],%[" I "],8), %%ymm7\n\t"                       \
	"vmovups %%ymm0, (%[" D "],%[" I "],8)\n\t"                          \
	"vmovups %%ymm1, 32(%[" D "],%[" I "],8)\n\t"                        \
	"vmovups %%ymm2, 64(%[" D "],%[" I "],8)\n\t"                        \
	"vmovups %%ymm3, 96(%[" D "],%[" I "],8)\n\t"                        \
	"vmovups %%ymm4, 128(%[" D "],%[" I "],8)\n\t"                       \
	"vmovups %%ymm5, 160(%[" D "],%[" I "],8)\n\t"                       \
	"vmovups %%ymm6, 192(%[" D "],%[" I "],8)\n\t"                       \
	"vmovups %%ymm7, 224(%[" D "],%[" I "],8)\n\t"
#define IOP__SEQ_COPY_AVX_CLOBBERS , "xmm4", "xmm5", "xmm6", "xmm7"
/* B32 follows each block of 32 (ymm0-ymm7 loaded), B16A the first 16 and
 * B16B the last 16 of 17 to 31 (ymm0-ymm3, ymm4-ymm7): empty for the
 * plain copy, the owner check's XOR/OR for iop__seq_push_bulk_own. */
#define IOP__SEQ_COPY_AVX_(S, D, B32, B16A, B16B)                           \
	"cmpl $32, %k[k]\n\t"                                                \
	"jb 7f\n\t"                                                          \
	"xorl %k[n], %k[n]\n\t"                                              \
	"leal -32(%q[k]), %k[x]\n\t"                                         \
	"5: " IOP__SEQ_COPY_AVX32(S, D, "n") B32                             \
	"addl $32, %k[n]\n\t"                                                \
	"cmpl %k[x], %k[n]\n\t"                                              \
	"jbe 5b\n\t"                                                         \
	"cmpl %k[k], %k[n]\n\t"                                              \
	"je 8f\n\t"                                                          \
	IOP__SEQ_COPY_AVX32(S, D, "x") B32                                   \
	"jmp 8f\n\t"                                                         \
	"7: vmovups (%[" S "]), %%ymm0\n\t"                                  \
	"vmovups 32(%[" S "]), %%ymm1\n\t"                                   \
	"vmovups 64(%[" S "]), %%ymm2\n\t"                                   \
	"vmovups 96(%[" S "]), %%ymm3\n\t"                                   \
	"vmovups %%ymm0, (%[" D "])\n\t"                                     \
	"vmovups %%ymm1, 32(%[" D "])\n\t"                                   \
	"vmovups %%ymm2, 64(%[" D "])\n\t"                                   \
	"vmovups %%ymm3, 96(%[" D "])\n\t"                                   \
	B16A                                                                 \
	"cmpl $16, %k[k]\n\t"                                               \
	"je 8f\n\t"                                                          \
	"vmovups -128(%[" S "],%q[k],8), %%ymm4\n\t"                         \
	"vmovups -96(%[" S "],%q[k],8), %%ymm5\n\t"                          \
	"vmovups -64(%[" S "],%q[k],8), %%ymm6\n\t"                          \
	"vmovups -32(%[" S "],%q[k],8), %%ymm7\n\t"                          \
	"vmovups %%ymm4, -128(%[" D "],%q[k],8)\n\t"                         \
	"vmovups %%ymm5, -96(%[" D "],%q[k],8)\n\t"                          \
	"vmovups %%ymm6, -64(%[" D "],%q[k],8)\n\t"                          \
	"vmovups %%ymm7, -32(%[" D "],%q[k],8)\n\t"                          \
	B16B                                                                 \
	"8:\n\t"
#define IOP__SEQ_COPY_AVX(S, D) IOP__SEQ_COPY_AVX_(S, D, "", "", "") "vzeroupper\n\t"

/*
 * 4 <= k <= 8 with AVX (the caller tests): in[0..3] and in[k-4..k-1] as
 * two 32-byte runs, overlapping under 8; a k the compiler knows takes one
 * run at 4 (and the callers send a 4 in a register there). The
 * owner-checking pushes of 4 to 8 (iop__seq_push8_own) load
 * the same two runs, so a burst freed soon after it was got reads each
 * run from the store that wrote it: the SSE2 copy's four 16-byte stores
 * cannot be forwarded to a 32-byte load, which then waits for them to
 * reach the cache.
 */
#define IOP__SEQ_COPY_AVX8_CLOBBERS
#define IOP__SEQ_COPYC_AVX8_CLOBBERS
/* The moves alone (ymm0 = in[0..3], ymm1 = in[k-4..k-1], the latter only
 * over 4 for a known k), shared with the owner-checking pushes. */
#define IOP__SEQ_MOVE_AVX8(S, D)                                             \
	"vmovdqu (%[" S "]), %%ymm0\n\t"                                     \
	"vmovdqu -32(%[" S "],%q[k],8), %%ymm1\n\t"                          \
	"vmovdqu %%ymm0, (%[" D "])\n\t"                                     \
	"vmovdqu %%ymm1, -32(%[" D "],%q[k],8)\n\t"
#define IOP__SEQ_MOVEC_AVX8(S, D)                                            \
	"vmovdqu (%[" S "]), %%ymm0\n\t"                                     \
	".if %c[k] > 4\n\t"                                                  \
	"vmovdqu %c[k]*8-32(%[" S "]), %%ymm1\n\t"                           \
	"vmovdqu %%ymm1, %c[k]*8-32(%[" D "])\n\t"                           \
	".endif\n\t"                                                         \
	"vmovdqu %%ymm0, (%[" D "])\n\t"
#define IOP__SEQ_COPY_AVX8(S, D) IOP__SEQ_MOVE_AVX8(S, D) "vzeroupper\n\t"
#define IOP__SEQ_COPYC_AVX8(S, D) IOP__SEQ_MOVEC_AVX8(S, D) "vzeroupper\n\t"

/*
 * The copies for a k the compiler knows (bursts of a fixed size, the
 * usual case in a driver: __builtin_constant_p, up to IOP__SEQ_CONST_MAX),
 * with k as the "i" operand %c[k]: the assembler picks the moves, so there
 * is no test of k and no loop, and every address is a register plus a
 * displacement. 1: one 8-byte move; 2-3: one or two 16-byte moves; 4-8:
 * two or four (the last two end at k, overlapping); 9 and up: groups of
 * four 16-byte moves (the AVX copy, from 16 up: four 32-byte moves), the
 * last group ending at k. .Liop_o counts the offset: a local assembler
 * symbol, set again by each copy.
 */
#define IOP__SEQ_CONST_MAX 64u
#define IOP__SEQ_COPYC_CLOBBERS
#define IOP__SEQ_COPYC_AVX_CLOBBERS
#define IOP__SEQ_CONST(k) (__builtin_constant_p(k) && (k) >= 1 && (k) <= IOP__SEQ_CONST_MAX)
#define IOP__SEQ_COPYC_SSE4(S, D, O)                                         \
	"movups " O "(%[" S "]), %%xmm0\n\t"                                 \
	"movups " O "+16(%[" S "]), %%xmm1\n\t"                              \
	"movups " O "+32(%[" S "]), %%xmm2\n\t"                              \
	"movups " O "+48(%[" S "]), %%xmm3\n\t"                              \
	"movups %%xmm0, " O "(%[" D "])\n\t"                                 \
	"movups %%xmm1, " O "+16(%[" D "])\n\t"                              \
	"movups %%xmm2, " O "+32(%[" D "])\n\t"                              \
	"movups %%xmm3, " O "+48(%[" D "])\n\t"
#define IOP__SEQ_COPYC(S, D)                                                 \
	".if %c[k] == 1\n\t"                                                 \
	"movq (%[" S "]), %[x]\n\t"                                          \
	"movq %[x], (%[" D "])\n\t"                                          \
	".elseif %c[k] <= 3\n\t"                                             \
	"movups (%[" S "]), %%xmm0\n\t"                                      \
	".if %c[k] == 3\n\t"                                                 \
	"movups 8(%[" S "]), %%xmm1\n\t"                                     \
	"movups %%xmm1, 8(%[" D "])\n\t"                                     \
	".endif\n\t"                                                         \
	"movups %%xmm0, (%[" D "])\n\t"                                      \
	".elseif %c[k] <= 8\n\t"                                             \
	"movups (%[" S "]), %%xmm0\n\t"                                      \
	"movups 16(%[" S "]), %%xmm1\n\t"                                    \
	".if %c[k] > 4\n\t"                                                  \
	"movups %c[k]*8-32(%[" S "]), %%xmm2\n\t"                            \
	"movups %c[k]*8-16(%[" S "]), %%xmm3\n\t"                            \
	"movups %%xmm2, %c[k]*8-32(%[" D "])\n\t"                            \
	"movups %%xmm3, %c[k]*8-16(%[" D "])\n\t"                            \
	".endif\n\t"                                                         \
	"movups %%xmm0, (%[" D "])\n\t"                                      \
	"movups %%xmm1, 16(%[" D "])\n\t"                                    \
	".else\n\t"                                                          \
	".set .Liop_o, 0\n\t"                                                \
	".rept %c[k]/8\n\t"                                                  \
	IOP__SEQ_COPYC_SSE4(S, D, ".Liop_o")                                 \
	".set .Liop_o, .Liop_o+64\n\t"                                       \
	".endr\n\t"                                                          \
	".if %c[k] %% 8\n\t"                                                 \
	IOP__SEQ_COPYC_SSE4(S, D, "%c[k]*8-64")                              \
	".endif\n\t"                                                         \
	".endif\n\t"
#define IOP__SEQ_COPYC_AVX4(S, D, O)                                         \
	"vmovups " O "(%[" S "]), %%ymm0\n\t"                                \
	"vmovups " O "+32(%[" S "]), %%ymm1\n\t"                             \
	"vmovups " O "+64(%[" S "]), %%ymm2\n\t"                             \
	"vmovups " O "+96(%[" S "]), %%ymm3\n\t"                             \
	"vmovups %%ymm0, " O "(%[" D "])\n\t"                                \
	"vmovups %%ymm1, " O "+32(%[" D "])\n\t"                             \
	"vmovups %%ymm2, " O "+64(%[" D "])\n\t"                             \
	"vmovups %%ymm3, " O "+96(%[" D "])\n\t"
/* k >= 16 (the callers test). */
/* B follows each group (ymm0-ymm3 loaded): empty for the plain copy, the
 * owner check's XOR/OR for iop__seq_push_bulk_own. */
#define IOP__SEQ_COPYC_AVX_(S, D, B)                                         \
	".set .Liop_o, 0\n\t"                                                \
	".rept %c[k]/16\n\t"                                                 \
	IOP__SEQ_COPYC_AVX4(S, D, ".Liop_o") B                               \
	".set .Liop_o, .Liop_o+128\n\t"                                      \
	".endr\n\t"                                                          \
	".if %c[k] %% 16\n\t"                                                \
	IOP__SEQ_COPYC_AVX4(S, D, "%c[k]*8-128") B                           \
	".endif\n\t"
#define IOP__SEQ_COPYC_AVX(S, D) IOP__SEQ_COPYC_AVX_(S, D, "") "vzeroupper\n\t"

/* Pop k >= 1 objects into out[0..k) (the slot's top k, in order); the
 * head moves by dw (-k, plus k << 16 when they count as allocations).
 * 0 when the slot holds fewer or is closed. COPY is IOP__SEQ_COPY or
 * IOP__SEQ_COPY_AVX (k in a register, [k] "r"), or, for a k the compiler
 * knows, IOP__SEQ_COPYC or IOP__SEQ_COPYC_AVX (k an immediate, [k] "i",
 * %c[k] in the text). KCMP compares k with the count in %k[n]; KAT points
 * %[s], the slot's objs, at the first of the k. */
#define IOP__SEQ_POP_BULK_(COPY, KCMP, KAT, KARG, DWARG)                                   \
	{                                                                                  \
		uint64_t t, w, n, s, x;                                                    \
		__asm__ __volatile__ goto(IOP__RSEQ_DESC IOP__RSEQ_ARM                     \
			     "movl 8(%[t]), %k[s]\n\t"                                      \
			     "movq (%[t]), %[w]\n\t"                                        \
			     "movzwl %w[w], %k[n]\n\t"                                      \
			     KCMP                                                           \
			     "jb %l[slow]\n\t"                                              \
			     "cmpl %k[s], %k[n]\n\t"                                        \
			     "ja %l[slow]\n\t"                                              \
			     "movq 16(%[t]), %[s]\n\t"                                      \
			     KAT                                                            \
			     COPY("s", "out")                                               \
			     "addq %[dw], %[w]\n\t"                                         \
			     "movq %[w], (%[t])\n\t"                                        \
			     IOP__RSEQ_ABORT                                                \
			     : [t] "=&r"(t), [w] "=&r"(w), [n] "=&r"(n), [s] "=&r"(s), [x] "=&r"(x) \
			     : [off] "r"(IOP__SCAST(int64_t, h->rseq_off)), [base] "r"(h->cpu), [out] "r"(out),  \
			       KARG, DWARG                                                  \
			     : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3" COPY##_CLOBBERS \
			     : slow);                                                       \
		return 1;                                                                  \
	slow:                                                                              \
		return 0;                                                                  \
	}
#define IOP__SEQ_POP_BULK(COPY)                                                            \
	IOP__SEQ_POP_BULK_(COPY, "cmpl %k[k], %k[n]\n\t",                                  \
			   "subl %k[k], %k[n]\n\t"                                         \
			   "leaq (%[s],%[n],8), %[s]\n\t",                                 \
			   [k] "r"(IOP__SCAST(uint64_t, k)), [dw] "r"(dw))
#define IOP__SEQ_POP_BULK_C(COPY)                                                          \
	IOP__SEQ_POP_BULK_(COPY, "cmpl $%c[k], %k[n]\n\t",                                 \
			   "leaq -%c[k]*8(%[s],%[n],8), %[s]\n\t",                         \
			   [k] "i"(k), [dw] "er"(dw))

/*
 * The text of every push of k: the head, the test that k more fit under
 * the cap (KSUM sets %k[x] to the count plus k), %[d] pointed at the
 * first free place; then, after the stores, the commit (KADD adds k to the
 * head in %[w]). For k in a register (_R) or an immediate (_I).
 */
#define IOP__SEQ_PUSH_HEAD(KSUM)                                             \
	"movl 8(%[t]), %k[d]\n\t"                                             \
	"movq (%[t]), %[w]\n\t"                                               \
	"movzwl %w[w], %k[n]\n\t"                                             \
	KSUM                                                                 \
	"cmpl %k[d], %k[x]\n\t"                                               \
	"ja %l[slow]\n\t"                                                     \
	"movq 16(%[t]), %[d]\n\t"                                             \
	"leaq (%[d],%[n],8), %[d]\n\t"
#define IOP__SEQ_PUSH_COMMIT(KADD) KADD "movq %[w], (%[t])\n\t" IOP__RSEQ_ABORT
#define IOP__SEQ_KSUM_R "leal (%q[n],%q[k]), %k[x]\n\t"
#define IOP__SEQ_KSUM_I "leal %c[k](%q[n]), %k[x]\n\t"
#define IOP__SEQ_KADD_R "addq %q[k], %[w]\n\t"
#define IOP__SEQ_KADD_I "addq $%c[k], %[w]\n\t"

/* Push k >= 1 objects from in[0..k); 0 when they do not all fit or the
 * slot is closed. COPY as above; the rest are the inputs COPY reads
 * besides the sequence's: [k], and for the owner-checking copies [ob] and
 * [obad]. */
#define IOP__SEQ_PUSH_BULK_(COPY, KSUM, KADD, ...)                                         \
	{                                                                                  \
		uint64_t t, w, n, d, x;                                                    \
		__asm__ __volatile__ goto(IOP__RSEQ_DESC IOP__RSEQ_ARM                     \
			     IOP__SEQ_PUSH_HEAD(KSUM)                                       \
			     COPY("in", "d")                                                \
			     IOP__SEQ_PUSH_COMMIT(KADD)                                     \
			     : [t] "=&r"(t), [w] "=&r"(w), [n] "=&r"(n), [d] "=&r"(d), [x] "=&r"(x) \
			     : [off] "r"(IOP__SCAST(int64_t, h->rseq_off)), [base] "r"(h->cpu), [in] "r"(in),    \
			       __VA_ARGS__                                                  \
			     : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3" COPY##_CLOBBERS \
			     : slow);                                                       \
		return 1;                                                                  \
	slow:                                                                              \
		return 0;                                                                  \
	}
#define IOP__SEQ_PUSH_BULK(COPY) \
	IOP__SEQ_PUSH_BULK_(COPY, IOP__SEQ_KSUM_R, IOP__SEQ_KADD_R, [k] "r"(IOP__SCAST(uint64_t, k)))
#define IOP__SEQ_PUSH_BULK_C(COPY) IOP__SEQ_PUSH_BULK_(COPY, IOP__SEQ_KSUM_I, IOP__SEQ_KADD_I, [k] "i"(k))

__attribute__((always_inline)) static inline int iop__seq_pop_bulk_c_sse(const struct iop__pool_hot *h, void **out, unsigned k, uint64_t dw)
	IOP__SEQ_POP_BULK_C(IOP__SEQ_COPYC)
__attribute__((always_inline)) static inline int iop__seq_pop_bulk_c_avx(const struct iop__pool_hot *h, void **out, unsigned k, uint64_t dw)
	IOP__SEQ_POP_BULK_C(IOP__SEQ_COPYC_AVX)
__attribute__((always_inline)) static inline int iop__seq_pop_bulk8_c_avx(const struct iop__pool_hot *h, void **out, unsigned k, uint64_t dw)
	IOP__SEQ_POP_BULK_C(IOP__SEQ_COPYC_AVX8)
__attribute__((always_inline)) static inline int iop__seq_push_bulk_c_sse(const struct iop__pool_hot *h, void *const *in, unsigned k)
	IOP__SEQ_PUSH_BULK_C(IOP__SEQ_COPYC)
__attribute__((always_inline)) static inline int iop__seq_push_bulk_c_avx(const struct iop__pool_hot *h, void *const *in, unsigned k)
	IOP__SEQ_PUSH_BULK_C(IOP__SEQ_COPYC_AVX)

__attribute__((always_inline)) static inline int iop__seq_pop_bulk_sse(const struct iop__pool_hot *h, void **out, unsigned k, uint64_t dw)
	IOP__SEQ_POP_BULK(IOP__SEQ_COPY)
__attribute__((always_inline)) static inline int iop__seq_pop_bulk_avx(const struct iop__pool_hot *h, void **out, unsigned k, uint64_t dw)
	IOP__SEQ_POP_BULK(IOP__SEQ_COPY_AVX)
__attribute__((always_inline)) static inline int iop__seq_pop_bulk8_avx(const struct iop__pool_hot *h, void **out, unsigned k, uint64_t dw)
	IOP__SEQ_POP_BULK(IOP__SEQ_COPY_AVX8)
__attribute__((always_inline)) static inline int iop__seq_push_bulk_sse(const struct iop__pool_hot *h, void *const *in, unsigned k)
	IOP__SEQ_PUSH_BULK(IOP__SEQ_COPY)
__attribute__((always_inline)) static inline int iop__seq_push_bulk_avx(const struct iop__pool_hot *h, void *const *in, unsigned k)
	IOP__SEQ_PUSH_BULK(IOP__SEQ_COPY_AVX)

/* AVX from 16 pointers up, and for the pops of 4 to 8 (IOP__SEQ_COPY_AVX8:
 * the runs the pushes of 4 to 8 load), where the CPU has it (or the caller
 * is built for it). IOP__NO_AVX (internal) leaves it out: tests run the
 * SSE2 copies so on a CPU with AVX (tests/CMakeLists.txt, test_pool_sse). */
#if defined(IOP__NO_AVX)
#define IOP__HAVE_AVX(h) 0
#elif defined(__AVX__)
#define IOP__HAVE_AVX(h) 1
#else
#define IOP__HAVE_AVX(h) ((h)->simd & IOP__SIMD_AVX)
#endif

__attribute__((always_inline)) static inline int iop__seq_pop_bulk(const struct iop__pool_hot *h, void **out, unsigned k, uint64_t dw)
{
	if (IOP__SEQ_CONST(k)) {
		if (k >= 16 && IOP__HAVE_AVX(h))
			return iop__seq_pop_bulk_c_avx(h, out, k, dw);
		if (k - 4u <= 4u && IOP__HAVE_AVX(h))
			return iop__seq_pop_bulk8_c_avx(h, out, k, dw);
		return iop__seq_pop_bulk_c_sse(h, out, k, dw);
	}
	if (k >= 16 && IOP__HAVE_AVX(h))
		return iop__seq_pop_bulk_avx(h, out, k, dw);
	if (k - 4u <= 4u && IOP__HAVE_AVX(h)) {
		/* 4, the commonest small burst, as the literal it usually is
		 * not: one 32-byte run, where the copy for a k in a register
		 * moves the same run twice (iop_free_bulk does the same).
		 * Unoptimised, a literal passed down is no "i" operand. */
#ifdef __OPTIMIZE__
		if (k == 4)
			return iop__seq_pop_bulk8_c_avx(h, out, 4, dw);
#endif
		return iop__seq_pop_bulk8_avx(h, out, k, dw);
	}
	return iop__seq_pop_bulk_sse(h, out, k, dw);
}

__attribute__((always_inline)) static inline int iop__seq_push_bulk(const struct iop__pool_hot *h, void *const *in, unsigned k)
{
	if (IOP__SEQ_CONST(k)) {
		if (k >= 16 && IOP__HAVE_AVX(h))
			return iop__seq_push_bulk_c_avx(h, in, k);
		return iop__seq_push_bulk_c_sse(h, in, k);
	}
	if (k >= 16 && IOP__HAVE_AVX(h))
		return iop__seq_push_bulk_avx(h, in, k);
	return iop__seq_push_bulk_sse(h, in, k);
}

/*
 * Push 2 <= k <= 8 objects that the caller holds as the 16-byte runs of
 * owner.h's iop__owner_runs8() (a = in[0..1], b = in[2..3], c =
 * in[k-4..k-3], e = in[k-2..k-1]; b and c unused under 4): the stores
 * alone inside the sequence, the array's loads done once, by the owner
 * check. 0 when they do not all fit or the slot is closed.
 */
#if defined(IOP__OWNER_X86)
__attribute__((always_inline)) static inline int iop__seq_push_runs(const struct iop__pool_hot *h, const struct iop__runs *r, unsigned k)
{
	uint64_t t, w, n, d, x;
	if (IOP__SEQ_CONST(k)) {
		/* k known: only the stores it needs (2: a; 3: a, e; 4: a, b;
		 * 5-8: all four, c and e ending at k). */
		__asm__ __volatile__ goto(IOP__RSEQ_DESC IOP__RSEQ_ARM
			     IOP__SEQ_PUSH_HEAD(IOP__SEQ_KSUM_I)
			     "movups %[a], (%[d])\n\t"
			     ".if %c[k] == 3\n\t"
			     "movups %[e], 8(%[d])\n\t"
			     ".elseif %c[k] >= 4\n\t"
			     "movups %[b], 16(%[d])\n\t"
			     ".endif\n\t"
			     ".if %c[k] >= 5\n\t"
			     "movups %[c], %c[k]*8-32(%[d])\n\t"
			     "movups %[e], %c[k]*8-16(%[d])\n\t"
			     ".endif\n\t"
			     IOP__SEQ_PUSH_COMMIT(IOP__SEQ_KADD_I)
			     : [t] "=&r"(t), [w] "=&r"(w), [n] "=&r"(n), [d] "=&r"(d), [x] "=&r"(x)
			     : [off] "r"(IOP__SCAST(int64_t, h->rseq_off)), [base] "r"(h->cpu), [k] "i"(k),
			       [a] "x"(r->a), [b] "x"(r->b), [c] "x"(r->c), [e] "x"(r->e)
			     : "cc", "memory"
			     : slow);
		return 1;
	}
	__asm__ __volatile__ goto(IOP__RSEQ_DESC IOP__RSEQ_ARM
		     IOP__SEQ_PUSH_HEAD(IOP__SEQ_KSUM_R)
		     "cmpl $4, %k[k]\n\t"
		     "jb 0f\n\t"
		     "movups %[b], 16(%[d])\n\t"
		     "movups %[c], -32(%[d],%q[k],8)\n\t"
		     "0: movups %[a], (%[d])\n\t"
		     "movups %[e], -16(%[d],%q[k],8)\n\t"
		     IOP__SEQ_PUSH_COMMIT(IOP__SEQ_KADD_R)
		     : [t] "=&r"(t), [w] "=&r"(w), [n] "=&r"(n), [d] "=&r"(d), [x] "=&r"(x)
		     : [off] "r"(IOP__SCAST(int64_t, h->rseq_off)), [base] "r"(h->cpu), [k] "r"(IOP__SCAST(uint64_t, k)),
		       [a] "x"(r->a), [b] "x"(r->b), [c] "x"(r->c), [e] "x"(r->e)
		     : "cc", "memory"
		     : slow);
	return 1;
slow:
	return 0;
}

/*
 * Push k >= 16 objects from in[0..k) with their owner check in the same
 * pass (AVX2): IOP__SEQ_COPY_AVX's loads and stores (or, for a k the
 * compiler knows, IOP__SEQ_COPYC_AVX's), and each loaded register XORed
 * with the chunk's base (%[ob], broadcast in ymm8) and ORed into ymm9. For
 * a stride that is not a power of two, the low 32 bits of each XOR (the
 * offset in the chunk) are also multiplied by the odd part's inverse
 * (%[omul], in ymm11) and their maximum kept in ymm10, as owner.h's AVX2
 * kernel does. After the stores and before the commit, the OR must have no
 * bit of %[obad] (owner.h's owner_bad: outside the chunk, or not at an
 * object boundary) and the maximum must be under %[olim]; otherwise the
 * sequence leaves through %l[slow] having committed nothing, and the
 * caller checks again the slower way (several chunks) or takes the slow
 * path (a bad pointer). One load of each pointer instead of two (the
 * separate check's, then the copy's), and no call of the AVX2 kernel. The
 * caller has checked the first pointer's map entry (iop__owner_first:
 * base is the first pointer itself for a power-of-two stride, its chunk's
 * base for another).
 */
#define IOP__OWN_X(r) "vpxor %%ymm8, %%ymm" #r ", %%ymm" #r "\n\t"
#define IOP__OWN_OR(a, b) "vpor %%ymm" #b ", %%ymm" #a ", %%ymm" #a "\n\t"
/* The multiply of two registers' offsets (their 8 low halves, in some
 * order: the maximum does not care), or nothing for a power of two. */
#define IOP__OWN_MUL(a, b)                                                    \
	"vshufps $0x88, %%ymm" #b ", %%ymm" #a ", %%ymm12\n\t"                 \
	"vpmulld %%ymm11, %%ymm12, %%ymm12\n\t"                                \
	"vpmaxud %%ymm12, %%ymm10, %%ymm10\n\t"
#define IOP__OWN_POW2(a, b)
/* Four loaded registers a..d: XOR, multiply (M), OR into ymm9. */
#define IOP__OWN4(M, a, b, c, d)                                              \
	IOP__OWN_X(a) IOP__OWN_X(b) IOP__OWN_X(c) IOP__OWN_X(d) M(a, b) M(c, d) \
	IOP__OWN_OR(a, b) IOP__OWN_OR(c, d) IOP__OWN_OR(a, c) IOP__OWN_OR(9, a)
#define IOP__OWN8(M) IOP__OWN4(M, 0, 1, 2, 3) IOP__OWN4(M, 4, 5, 6, 7)
#define IOP__OWN03(M) IOP__OWN4(M, 0, 1, 2, 3)
#define IOP__OWN47(M) IOP__OWN4(M, 4, 5, 6, 7)
/* ymm8 = the base in every lane, ymm9 = 0 (and ymm10 = 0, ymm11 = the
 * multiplier in every 32-bit lane); then, after the copy, ymm9 tested
 * against %[obad] (in memory: broadcast from there) in every lane (and
 * the maximum of ymm10's lanes against %[olim]). */
#define IOP__OWN_START_POW2                                                  \
	"vmovq %[ob], %%xmm8\n\t"                                            \
	"vpbroadcastq %%xmm8, %%ymm8\n\t"                                    \
	"vpxor %%ymm9, %%ymm9, %%ymm9\n\t"
#define IOP__OWN_START_MUL                                                   \
	IOP__OWN_START_POW2                                                  \
	"vpxor %%ymm10, %%ymm10, %%ymm10\n\t"                                \
	"vmovd %k[omul], %%xmm11\n\t"                                        \
	"vpbroadcastd %%xmm11, %%ymm11\n\t"
#define IOP__OWN_TEST_POW2                                                   \
	"vpbroadcastq %[obad], %%ymm0\n\t"                                   \
	"vptest %%ymm0, %%ymm9\n\t"                                          \
	"vzeroupper\n\t"                                                     \
	"jnz %l[slow]\n\t"
#define IOP__OWN_TEST_MUL                                                    \
	"vextracti128 $1, %%ymm10, %%xmm0\n\t"                               \
	"vpmaxud %%xmm0, %%xmm10, %%xmm10\n\t"                               \
	"vpshufd $0x4e, %%xmm10, %%xmm0\n\t"                                 \
	"vpmaxud %%xmm0, %%xmm10, %%xmm10\n\t"                               \
	"vpshufd $0xb1, %%xmm10, %%xmm0\n\t"                                 \
	"vpmaxud %%xmm0, %%xmm10, %%xmm10\n\t"                               \
	"vmovd %%xmm10, %k[n]\n\t"                                           \
	IOP__OWN_TEST_POW2                                                   \
	"cmpl %k[olim], %k[n]\n\t"                                           \
	"jae %l[slow]\n\t"
#define IOP__SEQ_COPY_AVX_OWN_(S, D, M, START, TEST)                         \
	START IOP__SEQ_COPY_AVX_(S, D, IOP__OWN8(M), IOP__OWN03(M), IOP__OWN47(M)) TEST
/* For a k the compiler knows: IOP__SEQ_COPYC_AVX's groups of 16, the last
 * ending at k; k >= 16. */
#define IOP__SEQ_COPYC_AVX_OWN_(S, D, M, START, TEST)                        \
	START IOP__SEQ_COPYC_AVX_(S, D, IOP__OWN03(M)) TEST
#define IOP__SEQ_COPY_AVX_OWN(S, D) IOP__SEQ_COPY_AVX_OWN_(S, D, IOP__OWN_POW2, IOP__OWN_START_POW2, IOP__OWN_TEST_POW2)
#define IOP__SEQ_COPYC_AVX_OWN(S, D) IOP__SEQ_COPYC_AVX_OWN_(S, D, IOP__OWN_POW2, IOP__OWN_START_POW2, IOP__OWN_TEST_POW2)
#define IOP__SEQ_COPY_AVX_OWNM(S, D) IOP__SEQ_COPY_AVX_OWN_(S, D, IOP__OWN_MUL, IOP__OWN_START_MUL, IOP__OWN_TEST_MUL)
#define IOP__SEQ_COPYC_AVX_OWNM(S, D) IOP__SEQ_COPYC_AVX_OWN_(S, D, IOP__OWN_MUL, IOP__OWN_START_MUL, IOP__OWN_TEST_MUL)
#define IOP__SEQ_COPY_AVX_OWN_CLOBBERS , "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9"
#define IOP__SEQ_COPYC_AVX_OWN_CLOBBERS , "xmm8", "xmm9"
#define IOP__SEQ_COPY_AVX_OWNM_CLOBBERS IOP__SEQ_COPY_AVX_OWN_CLOBBERS, "xmm10", "xmm11", "xmm12"
#define IOP__SEQ_COPYC_AVX_OWNM_CLOBBERS IOP__SEQ_COPYC_AVX_OWN_CLOBBERS, "xmm10", "xmm11", "xmm12"
#define IOP__OWN_ARGS [ob] "r"(ob), [obad] "m"(h->owner_bad)
#define IOP__OWNM_ARGS IOP__OWN_ARGS, [omul] "r"(omul), [olim] "r"(olim)
/*
 * A family of owner-checking pushes: NAME_p, NAME_pc (a power-of-two
 * stride; k in a register, or known), NAME_m, NAME_mc (another stride,
 * with the multiply), from the copies COPY, COPYC, COPYM and COPYMC; and
 * NAME, which checks in[0] (iop__owner_first: for a power-of-two stride,
 * in[0] itself is what the others are XORed with) and picks one for the
 * pool's stride and k; 0 when in[0] is not the pool's, or the push says no.
 */
#define IOP__SEQ_PUSH_OWN_FAMILY(NAME, COPY, COPYC, COPYM, COPYMC)                                  \
	__attribute__((always_inline)) static inline int NAME##_p(const struct iop__pool_hot *h,     \
								  void *const *in, unsigned k, uintptr_t ob) \
		IOP__SEQ_PUSH_BULK_(COPY, IOP__SEQ_KSUM_R, IOP__SEQ_KADD_R,                          \
				    [k] "r"(IOP__SCAST(uint64_t, k)), IOP__OWN_ARGS)                 \
	__attribute__((always_inline)) static inline int NAME##_pc(const struct iop__pool_hot *h,    \
								   void *const *in, unsigned k, uintptr_t ob) \
		IOP__SEQ_PUSH_BULK_(COPYC, IOP__SEQ_KSUM_I, IOP__SEQ_KADD_I, [k] "i"(k), IOP__OWN_ARGS)  \
	__attribute__((always_inline)) static inline int NAME##_m(const struct iop__pool_hot *h,     \
								  void *const *in, unsigned k, uintptr_t ob, \
								  uint32_t omul, uint32_t olim)             \
		IOP__SEQ_PUSH_BULK_(COPYM, IOP__SEQ_KSUM_R, IOP__SEQ_KADD_R,                         \
				    [k] "r"(IOP__SCAST(uint64_t, k)), IOP__OWNM_ARGS)                \
	__attribute__((always_inline)) static inline int NAME##_mc(const struct iop__pool_hot *h,    \
								   void *const *in, unsigned k, uintptr_t ob, \
								   uint32_t omul, uint32_t olim)            \
		IOP__SEQ_PUSH_BULK_(COPYMC, IOP__SEQ_KSUM_I, IOP__SEQ_KADD_I, [k] "i"(k), IOP__OWNM_ARGS) \
	__attribute__((always_inline)) static inline int NAME(const iop_pool_t *pool, const struct iop__pool_hot *h, \
							      void *const *in, unsigned k)                   \
	{                                                                                            \
		uintptr_t ob;                                                                        \
		const int first = iop__owner_first(pool, iop__map, h, in[0], &ob);                   \
		if (__builtin_expect(first == IOP__FIRST_P2, 1))                                     \
			return IOP__SEQ_CONST(k) ? NAME##_pc(h, in, k, ob) : NAME##_p(h, in, k, ob);     \
		if (!first)                                                                          \
			return 0;                                                                    \
		const uint32_t mul = IOP__SCAST(uint32_t, h->div_mul);                               \
		return IOP__SEQ_CONST(k) ? NAME##_mc(h, in, k, ob, mul, IOP__OWNER_LIM(h))           \
					 : NAME##_m(h, in, k, ob, mul, IOP__OWNER_LIM(h));            \
	}
/* 16 <= k. */
IOP__SEQ_PUSH_OWN_FAMILY(iop__seq_push_bulk_own, IOP__SEQ_COPY_AVX_OWN, IOP__SEQ_COPYC_AVX_OWN, IOP__SEQ_COPY_AVX_OWNM,
			 IOP__SEQ_COPYC_AVX_OWNM)

/*
 * The same for 4 <= k <= 8: in[0..3] and in[k-4..k-1] as two 32-byte runs
 * (overlapping under 8: the OR and the maximum do not mind a pointer seen
 * twice; a k the compiler knows takes one run at 4), stored, then XORed
 * with the chunk's base (and, for a stride that is not a power of two,
 * their offsets multiplied) and tested before the commit. Against the
 * SSE2 runs (iop__owner_runs8, then iop__seq_push_runs): two loads
 * instead of four, no copies between registers, one pass. The XOR and OR
 * end in ymm0.
 */
#define IOP__SEQ_COPY_AVX8_OWN_(S, D, M, START, TEST)                        \
	START IOP__SEQ_MOVE_AVX8(S, D)                                       \
	IOP__OWN_X(0) IOP__OWN_X(1) M(0, 1) IOP__OWN_OR(0, 1) TEST
#define IOP__SEQ_COPYC_AVX8_OWN_(S, D, M, START, TEST)                       \
	START IOP__SEQ_MOVEC_AVX8(S, D)                                      \
	IOP__OWN_X(0)                                                        \
	".if %c[k] > 4\n\t"                                                  \
	IOP__OWN_X(1) M(0, 1) IOP__OWN_OR(0, 1)                              \
	".else\n\t"                                                          \
	M(0, 0)                                                              \
	".endif\n\t" TEST
/* A power of two: the base in ymm8, ymm0 tested against %[obad]
 * broadcast. Another stride: IOP__OWN_START_MUL and IOP__OWN_TEST_MUL,
 * with the OR moved to ymm9. */
#define IOP__OWN8_START_POW2                                                 \
	"vmovq %[ob], %%xmm8\n\t"                                            \
	"vpbroadcastq %%xmm8, %%ymm8\n\t"
#define IOP__OWN8_TEST_POW2                                                  \
	"vpbroadcastq %[obad], %%ymm9\n\t"                                   \
	"vptest %%ymm9, %%ymm0\n\t"                                          \
	"vzeroupper\n\t"                                                     \
	"jnz %l[slow]\n\t"
#define IOP__OWN8_TEST_MUL IOP__OWN_OR(9, 0) IOP__OWN_TEST_MUL
#define IOP__SEQ_COPY_AVX8_OWN(S, D) \
	IOP__SEQ_COPY_AVX8_OWN_(S, D, IOP__OWN_POW2, IOP__OWN8_START_POW2, IOP__OWN8_TEST_POW2)
#define IOP__SEQ_COPY_AVX8_OWNM(S, D) \
	IOP__SEQ_COPY_AVX8_OWN_(S, D, IOP__OWN_MUL, IOP__OWN_START_MUL, IOP__OWN8_TEST_MUL)
#define IOP__SEQ_COPYC_AVX8_OWN(S, D) \
	IOP__SEQ_COPYC_AVX8_OWN_(S, D, IOP__OWN_POW2, IOP__OWN8_START_POW2, IOP__OWN8_TEST_POW2)
#define IOP__SEQ_COPYC_AVX8_OWNM(S, D) \
	IOP__SEQ_COPYC_AVX8_OWN_(S, D, IOP__OWN_MUL, IOP__OWN_START_MUL, IOP__OWN8_TEST_MUL)
#define IOP__SEQ_COPY_AVX8_OWN_CLOBBERS , "xmm8", "xmm9"
#define IOP__SEQ_COPY_AVX8_OWNM_CLOBBERS IOP__SEQ_COPY_AVX8_OWN_CLOBBERS, "xmm10", "xmm11", "xmm12"
#define IOP__SEQ_COPYC_AVX8_OWN_CLOBBERS IOP__SEQ_COPY_AVX8_OWN_CLOBBERS
#define IOP__SEQ_COPYC_AVX8_OWNM_CLOBBERS IOP__SEQ_COPY_AVX8_OWNM_CLOBBERS
/* 4 <= k <= 8. */
IOP__SEQ_PUSH_OWN_FAMILY(iop__seq_push8_own, IOP__SEQ_COPY_AVX8_OWN, IOP__SEQ_COPYC_AVX8_OWN, IOP__SEQ_COPY_AVX8_OWNM,
			 IOP__SEQ_COPYC_AVX8_OWNM)
#endif
#else
#define IOP__SEQ_POP(h, p, slow)         \
	do {                             \
		(void)(h);               \
		(p) = IOP__NULL;         \
		goto slow;               \
	} while (0)
static inline void *iop__seq_pop(const struct iop__pool_hot *h)
{
	(void)h;
	return IOP__NULL;
}
static inline int iop__seq_push(const struct iop__pool_hot *h, void *obj)
{
	(void)h;
	(void)obj;
	return 0;
}
static inline int iop__seq_pop_bulk(const struct iop__pool_hot *h, void **out, unsigned k, uint64_t dw)
{
	(void)h;
	(void)out;
	(void)k;
	(void)dw;
	return 0;
}
static inline int iop__seq_push_bulk(const struct iop__pool_hot *h, void *const *in, unsigned k)
{
	(void)h;
	(void)in;
	(void)k;
	return 0;
}
#if defined(__clang__)
#pragma clang diagnostic pop
#endif
#endif /* IOP__SEQ */

#if !defined(IOP_NO_INLINE) || defined(IOP__EMIT_INLINE)

/*
 * A NULL pool. Inline, these bodies do not test for one: the caller
 * guarantees a live pool (iopool.h, "A NULL pool"), and the test would add
 * two instructions to every call of a pair whose budget is 25 to catch a
 * mistake that stops the program at the faulty call anyway. Compiled as
 * the library's exported functions (src/ffi.c: IOP_NO_INLINE callers,
 * dlsym(), other languages) they test it and hand it to the slow paths,
 * which refuse it as the header says.
 */
#ifdef IOP__EMIT_INLINE
#define IOP__NULL_POOL(pool) __builtin_expect((pool) == IOP__NULL, 0)
#else
#define IOP__NULL_POOL(pool) 0
#endif

/*
 * The bulk calls are inlined whatever the compiler's size estimate: with
 * a path for bursts of 2 to 8 and one for the rest, GCC 12 made
 * iop_free_bulk() an out-of-line call in a loop shaped like DPDK's
 * mempool_perf (get n_keep, put back in bulks), where bursts of 4 took
 * 2.60 ns per object against 1.31 inlined (DPDK marks its bulk calls
 * always_inline too). The exported copies (src/ffi.c) are ordinary functions.
 */
#ifdef IOP__EMIT_INLINE
#define IOP__BULK_INLINE
#else
#define IOP__BULK_INLINE __attribute__((always_inline))
#endif

/*
 * Budget (gcc 12, Release, x86-64): a pop is the sequence's 16
 * instructions; a free is the owner check (iop__owned: 8 for a
 * power-of-two stride, one test and the map load; 18 for another, the test
 * and then the division as a multiply and a rotate) and the push's 15. No lock, no
 * atomic read-modify-write, no call, no system call. The caller guarantees
 * that `pool` is live.
 */
IOPINLINE void *(iop_alloc)(iop_pool_t *pool)
{
	void *p;
	if (IOP__NULL_POOL(pool))
		goto slow;
	IOP__SEQ_POP(IOP__HOT(pool), p, slow);
	IOP__UNPOISON(p, IOP__HOT(pool)->stride);
	return p;
slow:
	return iop__alloc_slow(pool);
}

IOPINLINE void(iop_free)(iop_pool_t *pool, void *obj)
{
	if (IOP__NULL_POOL(pool)) {
		iop__free_slow(pool, obj);
		return;
	}
	if (__builtin_expect(!iop__owned(pool, obj), 0)) {
		if (obj)
			iop__bad_free(pool, obj);
		return;
	}
	IOP__POISON(obj, IOP__HOT(pool)->stride);
	if (__builtin_expect(iop__seq_push(IOP__HOT(pool), obj), 1))
		return;
	iop__free_slow(pool, obj);
}

IOPINLINE IOP__BULK_INLINE unsigned(iop_alloc_bulk)(iop_pool_t *pool, void **objs, unsigned n)
{
	/* One object: the single pop, which has no copy to size. */
	if (n == 1) {
		void *p;
		if (IOP__NULL_POOL(pool))
			goto slow1;
		IOP__SEQ_POP(IOP__HOT(pool), p, slow1);
		IOP__UNPOISON(p, IOP__HOT(pool)->stride);
		objs[0] = p;
		return 1;
	slow1:
		return iop__alloc_bulk_slow(pool, objs, 1);
	}
	/* Each object moves the head by -1 and counts one allocation. */
	if (!IOP__NULL_POOL(pool) && __builtin_expect(n != 0, 1) &&
	    __builtin_expect(iop__seq_pop_bulk(IOP__HOT(pool), objs, n, IOP__SCAST(uint64_t, n) * 0xffffu), 1)) {
#if IOP__LIB_ASAN
		for (unsigned i = 0; i < n; i++)
			IOP__UNPOISON(objs[i], IOP__HOT(pool)->stride);
#endif
		return n;
	}
	return iop__alloc_bulk_slow(pool, objs, n);
}

IOPINLINE IOP__BULK_INLINE void(iop_free_bulk)(iop_pool_t *pool, void *const *objs, unsigned n)
{
	/* One object: iop_free()'s check and push. A NULL entry, which a
	 * bulk free skips, fails the check and goes to the bulk slow path. */
	if (n == 1) {
		void *p = objs[0];
		if (!IOP__NULL_POOL(pool) && __builtin_expect(iop__owned(pool, p), 1)) {
			IOP__POISON(p, IOP__HOT(pool)->stride);
			if (__builtin_expect(iop__seq_push(IOP__HOT(pool), p), 1))
				return;
		}
		iop__free_bulk_slow(pool, objs, 1);
		return;
	}
#if IOP__SEQ && defined(IOP__OWNER_X86) && !IOP__LIB_ASAN && !defined(IOP__NO_AVX)
	/* Bursts of 4 to 8 with AVX2: the owner check inside the push, in two
	 * 32-byte runs (iop__seq_push8_own). When it says no (several chunks,
	 * a bad pointer, a full or closed slot), the slow path decides. A
	 * count of 4 in a register takes the sequence for a literal 4: one
	 * run, not the same 32 bytes loaded, stored and checked twice. In
	 * DPDK's loop on an AMD EPYC (Zen 4), the cells that put back 4 at
	 * a time ran 5-14% faster and 8:8 3% faster (bench/inline_ab.sh,
	 * four code layouts in one process); callgrind, per object: 32:32:4
	 * 16.50 -> 15.78 instructions, 32:4:4 24.88 -> 23.66, 8:8 13.00 ->
	 * 13.63 (the test of 4). A test of k inside the sequence gained less
	 * in the cells of 4 and cost the cells of 8 3%. */
	if (n - 4u <= 4u && !IOP__NULL_POOL(pool) && iop__owner_kernel(IOP__HOT(pool)) == IOP__OWNER_AVX2) {
		if (__builtin_expect(n == 4 ? iop__seq_push8_own(pool, IOP__HOT(pool), objs, 4)
					    : iop__seq_push8_own(pool, IOP__HOT(pool), objs, n), 1))
			return;
		iop__free_bulk_slow(pool, objs, n);
		return;
	}
#endif
#if IOP__SEQ && defined(IOP__OWNER_X86) && !IOP__LIB_ASAN
	/* Bursts of 2 to 8: the owner check's loads are the push's data. */
	if (n - 2u <= 6u) {
		struct iop__runs r;
		if (!IOP__NULL_POOL(pool) &&
		    __builtin_expect(iop__owned_runs8(pool, iop__map, IOP__HOT(pool), objs, n, &r), 1) &&
		    __builtin_expect(iop__seq_push_runs(IOP__HOT(pool), &r, n), 1))
			return;
		iop__free_bulk_slow(pool, objs, n);
		return;
	}
#endif
#if IOP__SEQ && defined(IOP__OWNER_X86) && !IOP__LIB_ASAN && !defined(IOP__NO_AVX)
	/* 16 and more, with AVX2 (which implies AVX; IOP__NO_AVX, the
	 * tests' SSE2 build, leaves this out): the owner check inside the push's copy
	 * (iop__seq_push_bulk_own; a constant count up to
	 * IOP__SEQ_CONST_MAX gets the copy laid out for it). When it says
	 * no (several chunks, a bad pointer, a full or closed slot), the
	 * way below decides. */
	if (n >= 16 && !IOP__NULL_POOL(pool) && iop__owner_kernel(IOP__HOT(pool)) == IOP__OWNER_AVX2) {
		if (__builtin_expect(iop__seq_push_bulk_own(pool, IOP__HOT(pool), objs, n), 1))
			return;
	}
#endif
	if (!IOP__NULL_POOL(pool) && __builtin_expect(n != 0 && iop__owned_all(pool, objs, n), 1)) {
#if IOP__LIB_ASAN
		for (unsigned i = 0; i < n; i++)
			IOP__POISON(objs[i], IOP__HOT(pool)->stride);
#endif
		if (__builtin_expect(iop__seq_push_bulk(IOP__HOT(pool), objs, n), 1))
			return;
	}
	/* Bad pointers, NULL entries, a full or closed slot. */
	iop__free_bulk_slow(pool, objs, n);
}

/*
 * The reference count of object number x of the chunk holding p. An
 * IOP_F_REFCOUNT chunk is mapped with a tail right after its last byte that
 * holds one count per object, outside every buffer and outside the range
 * the map hook registers; so the count's address needs no load.
 */
static inline uint32_t *iop__refs(const iop_pool_t *pool, const void *p, uint64_t x)
{
	return IOP__RCAST(uint32_t *, (IOP__RCAST(uintptr_t, p) | IOP__HOT(pool)->chunk_mask) + 1) + x;
}

/* A buffer with one reference: the inline pop, then the count, which is
 * ours alone until the buffer is handed out. */
IOPINLINE void *(iop_buf_alloc)(iop_pool_t *pool)
{
	if (IOP__NULL_POOL(pool) || __builtin_expect(IOP__HOT(pool)->put_slow, 0))
		return iop__buf_alloc_slow(pool);
	void *p = iop_alloc(pool);
	if (__builtin_expect(p != IOP__NULL, 1))
		__atomic_store_n(iop__refs(pool, p, iop__obj_number(pool, p)), 1u, __ATOMIC_RELAXED);
	return p;
}

/*
 * The last put of a buffer its caller holds alone: no other thread can hold
 * a reference to take, so the count is read and cleared without an atomic
 * read-modify-write (the acquire load pairs with the release decrements of
 * earlier puts on other threads, so their writes to the buffer are seen
 * before it is reused). Everything else (shared buffers, fragments, hooks,
 * checked pools, bad addresses) is the library's.
 */
IOPINLINE void(iop_buf_put)(iop_pool_t *pool, void *p)
{
	if (IOP__NULL_POOL(pool)) {
		iop__buf_put_slow(pool, p);
		return;
	}
	const struct iop__pool_hot *h = IOP__HOT(pool);
	uint64_t x = iop__obj_index(pool, p);
	if (__builtin_expect(x < h->objs_per_chunk && !h->put_slow, 1)) {
		uint32_t *r = iop__refs(pool, p, x);
		if (__builtin_expect(__atomic_load_n(r, __ATOMIC_ACQUIRE) == 1, 1)) {
			__atomic_store_n(r, 0, __ATOMIC_RELAXED);
			IOP__POISON(p, h->stride);
			if (__builtin_expect(iop__seq_push(h, p), 1))
				return;
			iop__free_slow(pool, p);
			return;
		}
	}
	iop__buf_put_slow(pool, p);
}

/*
 * The heap's fast paths: the class of the size (a few shifts), the class
 * pool's inline pop; on free the owner from the address map, a flag saying
 * the pool is one of the heap's, the division test, the inline push.
 * Anything else (a first use of a class, sizes above 1 MiB, profiling, a
 * bad pointer) calls the library.
 */
/* The class of a size in [1, IOP_HEAP_CLASS_MAX]: 16-byte steps to 64 B;
 * above, for 2^k < s <= 2^(k+1) (k >= 6), the three bits below the top one
 * of s - 1 pick one of eight steps of 2^(k-3). */
static inline unsigned iop__heap_class_of(size_t s)
{
	if (s <= 64)
		return IOP__SCAST(unsigned, (s + 15) >> 4) - 1;
	unsigned k = 63u - IOP__SCAST(unsigned, __builtin_clzll(IOP__SCAST(unsigned long long, s - 1)));
	return 4 + (k - 6) * 8 + IOP__SCAST(unsigned, ((s - 1) >> (k - 3)) - 8);
}

IOPINLINE void *(iop_heap_alloc)(size_t size)
{
	if (__builtin_expect(size - 1 < IOP_HEAP_CLASS_MAX, 1)) {
		iop_pool_t *pool = __atomic_load_n(&iop__heap_class[iop__heap_class_of(size)], __ATOMIC_ACQUIRE);
		if (__builtin_expect(pool != IOP__NULL, 1))
			return iop_alloc(pool);
	}
	return iop__heap_alloc_slow(size);
}

/*
 * IOP_PROFILE's allocation: the class pool's inline pop, then the block's
 * site id into its chunk's site array and +stride, +1 into the thread's
 * counters: a few loads and stores more than iop_heap_alloc(), no call.
 * A site's first use, a thread's first profiled call, a chunk's first
 * profiled block and sites past the table take the library path.
 */
static inline void *iop__heap_alloc_prof(size_t size, struct iop__site *site)
{
	if (__builtin_expect(size - 1 < IOP_HEAP_CLASS_MAX, 1)) {
		iop_pool_t *pool = __atomic_load_n(&iop__heap_class[iop__heap_class_of(size)], __ATOMIC_ACQUIRE);
		if (__builtin_expect(pool != IOP__NULL, 1)) {
			void *p = iop_alloc(pool);
			if (__builtin_expect(p == IOP__NULL, 0))
				return p;
			uint32_t id = IOP__LD(&site->id);
			struct iop__prof_counter *t = iop__prof_table;
			uint32_t **ms = IOP__LD_DEP(&iop__map_sites);
			uint32_t *s = ms ? IOP__LD_DEP(&ms[IOP__RCAST(uintptr_t, p) >> IOP__GRANULE_SHIFT]) : IOP__NULL;
			if (__builtin_expect(s && t && id - 1 < IOP__PROFILE_SITES - 1, 1)) {
				s[iop__obj_number(pool, p)] = id;
				iop__prof_add(&t[id].bytes, IOP__SCAST(int64_t, IOP__HOT(pool)->stride));
				iop__prof_add(&t[id].calls, 1);
				return p;
			}
			return iop__heap_site_record(pool, p, site);
		}
	}
	return iop__heap_alloc_site(size, site);
}

IOPINLINE void(iop_heap_free)(void *p)
{
	uintptr_t g = IOP__RCAST(uintptr_t, p) >> IOP__GRANULE_SHIFT;
	iop_pool_t **map = __atomic_load_n(&iop__map, __ATOMIC_ACQUIRE);
	if (__builtin_expect(map && g < IOP__MAP_ENTRIES, 1)) {
		iop_pool_t *pool = IOP__LD(&map[g]);
		/* The map named the pool already: only the division test. */
		if (__builtin_expect(pool && IOP__HOT(pool)->heap &&
					     iop__obj_number(pool, p) < IOP__HOT(pool)->objs_per_chunk,
				     1)) {
			/* Profiling: the block's site, if a profiled call
			 * allocated it, loses it here (unprofiled programs:
			 * one load of iop__map_sites). */
			uint32_t **ms = IOP__LD_DEP(&iop__map_sites);
			uint32_t *s = ms ? IOP__LD_DEP(&ms[g]) : IOP__NULL;
			if (__builtin_expect(s != IOP__NULL, 0)) {
				uint32_t *slot = &s[iop__obj_number(pool, p)];
				uint32_t id = *slot;
				if (id) {
					struct iop__prof_counter *t = iop__prof_table;
					if (__builtin_expect(!t || id >= IOP__PROFILE_SITES, 0)) {
						iop__heap_free_slow(p);
						return;
					}
					*slot = 0;
					iop__prof_add(&t[id].bytes, -IOP__SCAST(int64_t, IOP__HOT(pool)->stride));
					iop__prof_add(&t[id].calls, -1);
				}
			}
			IOP__POISON(p, IOP__HOT(pool)->stride);
			if (__builtin_expect(iop__seq_push(IOP__HOT(pool), p), 1))
				return;
			iop__free_slow(pool, p);
			return;
		}
	}
	iop__heap_free_slow(p);
}

#endif /* !IOP_NO_INLINE || IOP__EMIT_INLINE */

#ifdef __cplusplus
}
#endif

#endif /* IOPOOL_INLINE_H */
