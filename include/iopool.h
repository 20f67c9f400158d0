/* SPDX-License-Identifier: MIT */
/*
 * iopool: fast, bounded, recycling buffer pools for high-rate I/O.
 *
 * This is the only public header. Handles are opaque; the parameter and
 * statistics structs carry their own size (`struct_size`) so they can grow
 * without breaking callers built against an older header.
 *
 * Conventions:
 *   - calls return 0 or a negative errno; constructors return NULL and set
 *     errno; each comment lists every errno a call can return;
 *   - flags are IOP_F_* bits, unknown bits are refused with -EINVAL;
 *   - misuse that cannot be reported (an address that is not an object of
 *     the pool; in checked mode also an object of the pool that is not in
 *     flight: a double free, or one never handed out) aborts the process
 *     with a message on stderr that names the pool, the address and the
 *     fault. An unchecked pool accepts a free object of its own (it keeps
 *     no record of which are in flight) and may then hand it out twice.
 *
 * A NULL pool (iop_pool_create() failed and the caller went on) is refused
 * by every call that takes a pool, each as its comment says: calls that
 * return an errno return -EINVAL; calls that return an object or a count
 * return NULL or 0 with errno = EINVAL; calls that cannot report an error
 * (iop_free(), iop_free_bulk() of a non-NULL entry, iop_buf_put(),
 * iop_buf_get(), iop_buf_refcount(), iop_buf_base()) abort with a message
 * ("... with a NULL pool"). One exception: the inline fast paths
 * (iop_alloc(), iop_free(), iop_alloc_bulk(), iop_free_bulk(),
 * iop_buf_alloc(), iop_buf_put() compiled from this header) do not test the
 * pool, to keep a test off every call of the fast path: there a NULL pool
 * is undefined behaviour (in practice a SIGSEGV at the call). The same calls
 * through the library's exported functions (IOP_NO_INLINE, dlsym(), other
 * languages) follow the rule.
 *
 * Threads: every call may be made from any thread, except that a pool must
 * not be used by other threads while it is being destroyed, and
 * iop_pool_audit() wants a quiescent pool (see there).
 *
 * fork(): iopool's pthread_atfork handlers take every iopool lock before
 * the fork, so a child forked while other threads are inside iopool calls
 * inherits whole pools, and may use them, create and destroy pools, and
 * audit them. Only the forking thread lives on in the child: the objects
 * the others held stay in flight there, their per-thread caches go to the
 * depot, and objects they were carrying in the middle of a call are lost
 * to the child (a checked pool takes them back; a bounded pool's in-flight
 * count becomes what the child can account for). The child starts its own
 * refill workers, and publishes its statistics again under its own pid if
 * the parent published, at its first call that may block (an allocation
 * that refills a cache from the depot, a bulk allocation, iop_alloc_ex()
 * without IOP_NOWAIT, iop_pool_create(); an IOP_NOWAIT call starts no
 * thread); a child that execs at once starts none. fork() from inside a
 * hook is allowed (hooks run with no iopool lock held); that child keeps
 * what its thread holds in the call that ran the hook, and so cannot take
 * back what other threads were carrying (a checked pool's audit may report
 * those objects).
 * vfork() and posix_spawn() run no handlers and need none.
 */
#ifndef IOPOOL_H
#define IOPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) || !defined(__GNUC__)
#define IOP_API
#else
#define IOP_API __attribute__((visibility("default")))
#endif

/*
 * The calls with inline fast paths (iop_alloc(), iop_free(), the bulk calls,
 * iop_buf_alloc(), iop_buf_put(), iop_heap_alloc(), iop_heap_free()) are
 * declared with IOPINLINE: static inline bodies in iopool/inline.h, or, with
 * IOP_NO_INLINE defined before this header, calls of the library's exported
 * functions of the same names (same behaviour, same checks).
 */
#ifndef IOPINLINE
#ifdef IOP_NO_INLINE
#define IOPINLINE IOP_API
#else
#define IOPINLINE static inline
#endif
#endif

/* Casts and the null pointer in code that C and C++ both compile (the
 * inline fast paths, the macros): C++ builds with -Wold-style-cast and
 * -Wzero-as-null-pointer-constant see the C++ forms. */
#ifdef __cplusplus
#define IOP__SCAST(T, x) static_cast<T>(x)
#define IOP__RCAST(T, x) reinterpret_cast<T>(x)
#define IOP__NULL nullptr
#else
#define IOP__SCAST(T, x) ((T)(x))
#define IOP__RCAST(T, x) ((T)(x))
#define IOP__NULL NULL
#endif

#define IOP_VERSION_MAJOR 0
#define IOP_VERSION_MINOR 4
#define IOP_VERSION_PATCH 0

/** A pool of fixed-size objects. Opaque. */
typedef struct iop_pool iop_pool_t;

/* ------------------------------------------------------------------------ */
/* Pool flags (struct iop_pool_params.flags)                                 */
/* ------------------------------------------------------------------------ */

/** Checked mode: detect double frees (also across threads and inside one bulk
 *  array), poison free objects and verify the poison when they are handed out
 *  again. Costs the fast path: every call goes through the checked slow path.
 *  Builds with IOP_DEBUG >= 2 check every pool whatever this flag says. */
#define IOP_F_CHECKED (1u << 0)
/** Do not advise chunks for transparent hugepages (madvise MADV_HUGEPAGE). */
#define IOP_F_NO_THP (1u << 1)
/** Fault chunk memory in when the chunk is mapped (MAP_POPULATE), so the first
 *  touch of a new object does not page-fault on the I/O path. */
#define IOP_F_PREFAULT (1u << 2)
/** Every object carries a reference count, kept outside its bytes: allocate
 *  with iop_buf_alloc(), share with iop_buf_get(), release with
 *  iop_buf_put(); the last put recycles the object (or hands it to the
 *  release hook). Needed by iop_frag_*(). */
#define IOP_F_REFCOUNT (1u << 3)
/** Back chunks with hugetlbfs 2 MiB pages (MAP_HUGETLB) when any are free,
 *  falling back to transparent hugepages, then 4 KiB pages. Pools without
 *  IOP_F_NO_THP try hugetlbfs pages by default whenever the system has
 *  reserved some (vm.nr_hugepages); IOP_F_REFCOUNT pools never use them
 *  (their counts are mapped right after each chunk). */
#define IOP_F_HUGETLB (1u << 4)
/** Spread objects over the CPU caches' sets: when the stride (obj_size
 *  rounded up to align) is a multiple of 8 cache lines (of 8 times align
 *  when align is above 64), add one line (one align) between objects.
 *  With a stride of 2048, the first bytes of every object of a chunk fall
 *  into 2 of an L1 cache's 64 sets; with 2112, into all of them. A program
 *  that touches many objects at once (a ring of 1024 receive buffers)
 *  then keeps them in cache: 1024 objects allocated, each touched, then
 *  freed, 3.9-4.1 against 7.9 ns per pair (iopool-bench --cases
 *  outstanding, docs/BENCHMARKS.md). Costs 64 bytes per object, and the
 *  owner check of a stride that is not a power of two (a multiply per
 *  pointer; bulk calls of 64, 4.33 instructions per object against
 *  3.52). iop_pool_stats() reports the stride. IOPOOL_SPREAD=1 sets it
 *  for every pool but the heap's classes. */
#define IOP_F_SPREAD (1u << 5)
/** Every pool flag. */
#define IOP_F_ALL (IOP_F_CHECKED | IOP_F_NO_THP | IOP_F_PREFAULT | IOP_F_REFCOUNT | IOP_F_HUGETLB | IOP_F_SPREAD)

/* ------------------------------------------------------------------------ */
/* Limits                                                                    */
/* ------------------------------------------------------------------------ */

#define IOP_OBJ_SIZE_MIN 16u               /**< smallest object size */
#define IOP_OBJ_SIZE_MAX (1u << 20)        /**< largest object size: 1 MiB */
#define IOP_CACHE_SIZE_MAX 1024u           /**< largest magazine (objects) */
#define IOP_NAME_MAX 32u                   /**< name length, NUL included */

/* ------------------------------------------------------------------------ */
/* Creating and destroying pools                                             */
/* ------------------------------------------------------------------------ */

/**
 * Parameters of a pool. Initialise with IOP_POOL_PARAMS_INIT or
 * iop_pool_params_init() (or zero it and set struct_size =
 * sizeof(struct iop_pool_params)); fields a newer library
 * adds past struct_size take their defaults.
 */
struct iop_pool_params {
	uint32_t struct_size; /**< sizeof(struct iop_pool_params) */
	uint32_t flags;       /**< IOP_F_* */
	const char *name;     /**< for messages and statistics; copied;
	                           NULL gives "pool<N>"; at most IOP_NAME_MAX-1 */
	size_t obj_size;      /**< bytes per object, IOP_OBJ_SIZE_MIN to
	                           IOP_OBJ_SIZE_MAX */
	size_t align;         /**< power of two up to 2 MiB; 0 gives 16 (what
	                           malloc gives), values below 8 give 8; objects
	                           are spaced by obj_size rounded up to this */
	uint32_t cache_size;  /**< objects per magazine; a thread caches up to two
	                           magazines per pool, and so does a CPU when
	                           this is given; 0 chooses from obj_size
	                           (about 256 KiB per magazine, 4 to 256 objects;
	                           a CPU about 2 MiB, up to 1024 objects: see
	                           iop_pool_stats.cpu_cache_size); at most
	                           IOP_CACHE_SIZE_MAX */
	uint32_t reserved0;   /**< must be zero */
	size_t populate;      /**< objects to carve, fault in and place in the
	                           depot at creation, so the first allocations do
	                           not go to the OS; 0 for none */
	size_t chunk_size;    /**< bytes per chunk from the OS, a power of two of
	                           at least 2 MiB (the granule of the address
	                           map) and at most 1 GiB; 0 gives 2 MiB, or
	                           more when fewer than 8 objects would fit */

	/* Since 0.2: hooks. Each gets hook_arg first. They run on the thread
	 * whose call needed them (the map hook also in iop_pool_create() for
	 * `populate` and on a refill worker; the unmap hook in shrink,
	 * reclaim, decay on a worker, and iop_pool_destroy()), with no iopool
	 * lock held, and may call iopool as the table "What a hook may call"
	 * below says. */

	/** Called once per chunk, when it is obtained from the OS and before
	 *  any of its objects is handed out: map it for a device (a DMA map, an
	 *  io_uring buffer registration, an RDMA memory region) and store a
	 *  handle for iop_buf_mapping(). Returns 0, or a negative errno, which
	 *  fails the allocation that needed the chunk (the chunk goes back to
	 *  the OS). Never called again for the chunk, however often its objects
	 *  recycle. NULL: no hook. */
	int (*map)(void *arg, void *base, size_t len, uint64_t *handle);
	/** Called once per chunk just before it goes back to the OS, with the
	 *  handle `map` stored. NULL: no hook. */
	void (*unmap)(void *arg, void *base, size_t len, uint64_t handle);
	/** IOP_F_REFCOUNT pools: called when the last reference to a buffer is
	 *  put, instead of recycling it. Return IOP_RELEASE_KEEP to keep (steal)
	 *  the buffer: the caller then owns it again with one reference, as if
	 *  just allocated. Return IOP_RELEASE_RECYCLE to have the pool recycle
	 *  it (thread cache first). NULL: always recycle. */
	int (*release)(void *arg, iop_pool_t *pool, void *buf);
	void *hook_arg;

	/* Since 0.3: bounds (see "Bounded pools" below). */

	/** The most objects that may be in flight at once; 0: no limit. A
	 *  bounded pool never hands out more, under any interleaving, and
	 *  never carves more from its chunks: its memory is capped too. */
	uint64_t limit;
	/** The same limit in bytes, for convenience: limit_bytes / obj_size
	 *  objects (at least 1). Set limit or limit_bytes, not both. */
	uint64_t limit_bytes;
	/** Throttling, in percent of the limit: once the objects in flight
	 *  reach throttle_on_pct, blocking allocations (IOP_WAIT) wait even
	 *  though buffers remain, until fewer than throttle_off_pct are in
	 *  flight; the headroom above stays for callers that cannot wait.
	 *  0 gives 70 and 65; throttle_on_pct = 100 turns throttling off (the
	 *  waiting callers then wait only at the limit). 1 <= off < on <= 100. */
	uint32_t throttle_on_pct;
	uint32_t throttle_off_pct;

	/* Since 0.4: reserve and decay (see "Refill, decay, NUMA and
	 * hugepages" below). */

	/** Low watermark of the reserve: free objects kept in each memory
	 *  domain's depot for IOP_NOWAIT callers. When a domain's depot falls
	 *  below it, that domain's refill worker maps, faults in and carves
	 *  chunks until it holds reserve_high. 0: no reserve, no refill. */
	uint64_t reserve_low;
	/** High watermark: at least reserve_low; 0 gives reserve_low plus two
	 *  magazines. A bounded pool's reserve never makes it carve more than
	 *  its limit. */
	uint64_t reserve_high;
	/** Decay interval: every decay_ms the depot objects that the interval
	 *  did not need (above the reserve) shrink by decay_pct, and chunks
	 *  whose objects are all free go back to the OS. 0: no decay. */
	uint32_t decay_ms;
	/** Percent of the idle memory returned per interval; 0 gives 25. */
	uint32_t decay_pct;
};

/** What a release hook returns. */
#define IOP_RELEASE_RECYCLE 0
#define IOP_RELEASE_KEEP 1

/*
 * What a hook may call. P is the pool whose hook runs, Q any other pool.
 * "yes": the call works as anywhere else; EDEADLK: it is refused with a
 * message on stderr naming the pool, the hook and the call (-EDEADLK, or
 * NULL / 0 with errno = EDEADLK for the calls that report so).
 *
 *   call on P                      map hook  unmap hook      unmap hook   release
 *                                            (shrink, decay, (destroy of  hook
 *                                            reclaim)        P) (a)
 *   iop_alloc(), iop_alloc_ex(),
 *   iop_buf_alloc*(), bulk allocs  yes (b)   yes             EDEADLK      yes
 *   iop_free(), iop_free_bulk(),
 *   iop_buf_put()                  yes       yes             aborts (c)   yes
 *   iop_pool_flush()               yes       yes             EDEADLK      yes
 *   iop_pool_stats(),
 *   iop_pool_domain_stats(),
 *   iop_pool_stats_print()         yes       yes             EDEADLK      yes
 *   iop_pool_audit()               yes (d)   yes             EDEADLK      yes
 *   iop_pool_shrink()              yes       yes             EDEADLK      yes
 *   iop_pool_destroy()             EDEADLK   EDEADLK         EDEADLK      EDEADLK
 *
 *   not about P alone              map hook  unmap hook      unmap hook   release
 *   iop_thread_flush()             yes       yes             yes          yes
 *   iop_reclaim()                  yes (e)   yes             yes          yes
 *   iop_pool_create()              yes       yes             yes          yes
 *   any call on Q, destroy too     yes (f)   yes (f)         yes (f)      yes (f)
 *
 * (a) also the unmap hooks of a failed iop_pool_create(): the pool is going
 *     away, and none of its objects is in flight.
 * (b) served from P's caches, depot and chunks, or from another chunk,
 *     whose map hook then runs nested in this one; at IOP_HOOK_NEST_MAX
 *     (4) nested map hooks of P on one thread, an allocation that needs
 *     yet another chunk fails with EDEADLK (a hook that allocates at
 *     every chunk would otherwise recurse until the stack overflows).
 * (c) a free of P there cannot be of an object in flight: it aborts with
 *     a message, as any bad free does.
 * (d) the allocation whose chunk the hook maps may hold its place under a
 *     bounded pool's limit without an object yet; the audit allows it.
 * (e) pools still inside iop_pool_create() are left alone (populate
 *     finishes), here and on every thread.
 * (f) the rules for P apply to every pool whose hook runs up the calling
 *     thread's stack: a hook of Q called from inside a hook of P (P's map
 *     hook allocates from Q, which maps a chunk) may not destroy P.
 * An IOP_WAIT allocation in a hook waits as anywhere else: give it a
 * timeout if only the hook's caller could free what it waits for.
 */
/** Nested map hooks of one pool on one thread at which its allocations stop
 *  mapping chunks (EDEADLK): one level is what a hook that sets a chunk up
 *  with one of its own pool's objects needs; four leave room for pools
 *  whose hooks call each other. */
#define IOP_HOOK_NEST_MAX 4u

/** The first version of struct iop_pool_params (0.1, without hooks): the
 *  smallest struct_size accepted. */
#define IOP_POOL_PARAMS_SIZE_V1 offsetof(struct iop_pool_params, map)
/** struct iop_pool_params of 0.2 (hooks, no bounds). */
#define IOP_POOL_PARAMS_SIZE_V2 offsetof(struct iop_pool_params, limit)
/** struct iop_pool_params of 0.3 (bounds, no reserve or decay). */
#define IOP_POOL_PARAMS_SIZE_V3 offsetof(struct iop_pool_params, reserve_low)

#define IOP_POOL_PARAMS_INIT { .struct_size = sizeof(struct iop_pool_params) }

/**
 * Initialise *params for iop_pool_create(): every field zero (its
 * default), struct_size set. The same as IOP_POOL_PARAMS_INIT, for C++
 * (which has no designated initializers before C++20 and warns about the
 * macro's missing fields) and for C code that prefers a call. NULL does
 * nothing.
 *
 * Inline on purpose: it runs in the caller's build, so struct_size is the
 * size of the struct the caller was compiled with and the zeroing never
 * writes past it, whichever library version runs.
 */
static inline void iop_pool_params_init(struct iop_pool_params *params)
{
	if (params) {
		__builtin_memset(params, 0, sizeof(*params));
		params->struct_size = sizeof(*params);
	}
}

/**
 * Create a pool.
 *
 * Returns the pool, or NULL with errno set:
 *   EINVAL  a message on stderr says which of these:
 *           - params is NULL; struct_size is below IOP_POOL_PARAMS_SIZE_V1,
 *             or larger than this library knows with non-zero bytes past
 *             what it knows; unknown flags; reserved0 not zero;
 *           - obj_size outside [IOP_OBJ_SIZE_MIN, IOP_OBJ_SIZE_MAX]; align
 *             not a power of two, or above 2 MiB; cache_size above
 *             IOP_CACHE_SIZE_MAX; chunk_size neither 0 nor a power of two
 *             from 2 MiB to 1 GiB; a name of IOP_NAME_MAX characters or
 *             more; a release hook without IOP_F_REFCOUNT;
 *           - limit and limit_bytes both set; limit_bytes below obj_size;
 *             a limit (or limit_bytes / obj_size) above 2^40;
 *           - throttle_on_pct or throttle_off_pct set without a limit;
 *             throttle_on_pct above 100, or 0 while throttle_off_pct is
 *             set; throttle_off_pct 0 (unless throttle_on_pct is 100: no
 *             throttling) or not below throttle_on_pct;
 *           - populate above the limit;
 *           - reserve_high set and below reserve_low; reserve_low above the
 *             limit; reserve_low or reserve_high above 2^40;
 *           - decay_pct above 100; decay_pct set without decay_ms.
 *   other   the negative errno the map hook returned for a `populate`
 *           chunk (EDEADLK when the map hook's own allocations nest too
 *           deep: see "What a hook may call").
 *   ENOMEM  memory for the pool or for `populate` objects could not be had.
 * Nothing is leaked on failure. `populate` finishes whatever other threads
 * (or the map hook) do meanwhile: iop_reclaim() and the workers' decay
 * leave a pool alone until iop_pool_create() has returned it.
 */
IOP_API iop_pool_t *iop_pool_create(const struct iop_pool_params *params);

/**
 * Destroy a pool: flush every thread's cache of it, then unmap its memory.
 *
 * No other thread may use the pool during the call. If objects are still in
 * flight (allocated and not freed), the pool is left exactly as it was and
 * usable, a warning naming the pool and the in-flight count is printed on
 * stderr, and -EBUSY is returned: free them and call again. Memory is never
 * freed under a live object.
 *
 * Returns 0, -EBUSY (objects in flight), -EINVAL (pool is NULL), -EPERM
 * (the pool is one of the heap's size classes, which live as long as the
 * process), or -EDEADLK (called from a hook of the pool, or from a hook
 * running inside one of its calls: see "What a hook may call").
 */
IOP_API int iop_pool_destroy(iop_pool_t *pool);

/* ------------------------------------------------------------------------ */
/* Allocation                                                                */
/* ------------------------------------------------------------------------ */

/**
 * Allocate one object. Fast path: a pop from the calling thread's magazine,
 * with no lock, no atomic read-modify-write and no system call.
 *
 * Returns the object (aligned to the pool's alignment; contents undefined),
 * or NULL with errno = ENOMEM when no memory could be had from the OS or a
 * bounded pool is at its limit, ESHUTDOWN when a bounded pool is being
 * destroyed, the errno the map hook returned for the chunk this needed, or
 * EDEADLK when a hook refuses it (see "What a hook may call").
 * iop_alloc_ex() chooses a mode (never block, or wait at the limit).
 * A NULL pool: NULL with errno = EINVAL through the exported function;
 * undefined behaviour inline (see "A NULL pool" at the top).
 */
IOPINLINE void *(iop_alloc)(iop_pool_t *pool);

/**
 * Free one object to its pool. Any thread may free any object of the pool.
 * obj == NULL does nothing.
 *
 * Aborts with a message (pool, address, fault) when obj is not an object of
 * this pool: an address of no pool, of another pool, an interior or
 * misaligned address. In checked mode also when the object is not in
 * flight: a double free, or an object the pool never handed out ("double
 * free of <obj>: the object is not in flight"). Unchecked, such an object
 * is accepted and may be handed out twice. A NULL pool aborts ("with a NULL
 * pool") through the exported function, unless obj is NULL; inline it is
 * undefined behaviour. Also aborts from the pool's unmap hook inside its
 * destroy (see "What a hook may call").
 */
IOPINLINE void (iop_free)(iop_pool_t *pool, void *obj);

/**
 * Allocate up to n objects into objs[0..n).
 *
 * Returns how many were stored: n, or fewer (possibly 0) with errno = ENOMEM
 * when memory ran out (or the map hook's errno, or EDEADLK, as for
 * iop_alloc());
 * objs[0..returned) are valid either way. Returns 0 and
 * leaves errno alone when n is 0. A NULL pool: 0 with errno = EINVAL
 * through the exported function; undefined behaviour inline.
 */
IOPINLINE unsigned (iop_alloc_bulk)(iop_pool_t *pool, void **objs, unsigned n);

/**
 * Free n objects. Each object is checked as
 * iop_free() checks it, and a bad one aborts before any object is freed.
 * NULL entries are skipped. A NULL pool aborts at the first non-NULL entry
 * through the exported function; inline it is undefined behaviour.
 */
IOPINLINE void (iop_free_bulk)(iop_pool_t *pool, void *const *objs, unsigned n);

/* ------------------------------------------------------------------------ */
/* Queries and maintenance                                                   */
/* ------------------------------------------------------------------------ */

/** The pool that owns the memory at p (any address inside one of its chunks),
 *  found in O(1) from the address; NULL when no pool does. */
IOP_API iop_pool_t *iop_pool_of(const void *p);

/** The pool's name (never NULL); "(null)" for a NULL pool. */
IOP_API const char *iop_pool_name(const iop_pool_t *pool);

/** Bytes per object as asked for at creation; 0 with errno = EINVAL for a
 *  NULL pool. */
IOP_API size_t iop_pool_obj_size(const iop_pool_t *pool);

/**
 * Return the calling thread's per-thread cached objects of every pool to the
 * pools' depots (checked and bounded pools, and every pool in the per-thread
 * mode; see iop_cache_mode()). A thread that exits does this by itself.
 * Per-CPU caches belong to no thread: iop_pool_shrink(), iop_reclaim() and
 * decay drain them.
 */
IOP_API void iop_thread_flush(void);

/**
 * Move every cached object of the pool to its depot: every CPU's slot
 * (each CPU is fenced first, so no thread on it is inside a sequence) and
 * the calling thread's own slot; other threads' per-thread slots stay
 * (they empty at thread exit or with iop_thread_flush() in that thread).
 * Nothing is unmapped (iop_pool_shrink() does that). Returns the number of
 * objects moved (>= 0), -EINVAL when pool is NULL, or -EDEADLK from the
 * pool's unmap hook inside its destroy (see "What a hook may call").
 */
IOP_API int64_t iop_pool_flush(iop_pool_t *pool);

/** iop_cache_mode(): caches per thread (IOPOOL_CACHE=thread, or where
 *  restartable sequences are not registered: valgrind,
 *  GLIBC_TUNABLES=glibc.pthread.rseq=0, seccomp, ThreadSanitizer builds). */
#define IOP_CACHE_MODE_THREAD 1
/** iop_cache_mode(): caches per CPU, on restartable sequences. */
#define IOP_CACHE_MODE_CPU 2

/**
 * Which caches the process uses: IOP_CACHE_MODE_CPU (the default where rseq
 * is registered for the process and membarrier's RSEQ fence works) or
 * IOP_CACHE_MODE_THREAD. Chosen once, at the first pool creation (or this
 * call), from IOPOOL_CACHE=cpu|thread when set. Checked and bounded pools
 * use per-thread caches in either mode.
 */
IOP_API int iop_cache_mode(void);

/* ------------------------------------------------------------------------ */
/* Bounded pools and allocation modes                                        */
/* ------------------------------------------------------------------------ */
/*
 * A pool created with a limit (params.limit or limit_bytes) never has more
 * than `limit` objects in flight, and never carves more than that from its
 * chunks, so its memory is capped as well. Each allocation chooses how to
 * behave at the limit (swiotlb throttling, blk-mq tags):
 *
 *   IOP_NOWAIT   never sleeps and never enters the kernel: the calling
 *                thread's cache and the depot only (no chunk is mapped, no
 *                lock is waited for); fails at once with -ENOMEM when they
 *                are empty. For callers that cannot block (interrupt-like
 *                contexts, event loops); keep them fed with `populate`.
 *                (A thread's first call of a pool sets up its cache, which
 *                takes a lock once.)
 *   (default)    may map chunks from the OS up to the limit; fails with
 *                -ENOMEM at the limit. iop_alloc() and the bulk calls work
 *                this way.
 *   IOP_WAIT     waits until a buffer is freed or the timeout passes.
 *                Waiters are served first come, first served; a free hands
 *                its object straight to the oldest waiter, so a burst of N
 *                frees wakes N waiters and no more. Above the throttle
 *                threshold (throttle_on_pct) waiting callers wait even
 *                though buffers remain, leaving the headroom to NOWAIT and
 *                default callers, until the pool drops below
 *                throttle_off_pct. Signals neither end a wait early nor
 *                lose a buffer.
 *
 * Per-CPU mode (the default, iop_cache_mode()): bounded pools keep the
 * inline fast path of every pool. The limit is enforced where objects are
 * carved from chunks (never more than `limit`), so it is exact under any
 * interleaving. Objects cached by a CPU whose threads never call iopool
 * again serve other callers: a caller that may block drains the CPUs'
 * caches (a fence) before it fails at the limit, and while IOP_WAIT
 * callers wait, every CPU's cache stays closed, so each free reaches the
 * library and hands its object to the oldest waiter. Throttling and the
 * high-water mark work from an estimate of the objects in flight: exact
 * when no other thread is inside a call of the pool; otherwise off by at
 * most cpu_cache_size objects per CPU, plus cache_size per thread inside a
 * slow path at that moment. The high-water mark is sampled when an
 * allocation fails, by IOP_WAIT calls and by iop_pool_stats(), so a peak
 * between samples may be missed.
 *
 * Per-thread mode (IOPOOL_CACHE=thread, no rseq, checked pools): the
 * objects in flight are counted exactly (one atomic operation per call,
 * in the library), and a waiter takes objects from idle threads' caches
 * (a handshake with that thread's next call).
 *
 * Destroying a bounded pool wakes every waiter with -ESHUTDOWN, and every
 * later allocation fails with -ESHUTDOWN; if objects are still in flight,
 * iop_pool_destroy() returns -EBUSY as usual and can be called again once
 * they are freed.
 */

/** Allocation modes (the `how` of iop_alloc_ex()). */
#define IOP_NOWAIT 0x1u   /**< never sleep, never enter the kernel */
#define IOP_WAIT 0x2u     /**< wait for a buffer, up to the timeout */
#define IOP_ABSTIME 0x4u  /**< with IOP_WAIT: timeout_ns is an absolute
                               CLOCK_MONOTONIC time, not a duration */
/** timeout_ns for a wait without end. */
#define IOP_FOREVER INT64_MAX

/**
 * Allocate one object in the mode `how` (0, IOP_NOWAIT, or IOP_WAIT with
 * optional IOP_ABSTIME) and store it in *objp. With IOP_WAIT, timeout_ns
 * is how long to wait (0: try once without waiting; IOP_FOREVER: no end),
 * or with IOP_ABSTIME the CLOCK_MONOTONIC time to give up at. Works on
 * every pool; an unbounded pool never waits (IOP_WAIT behaves as the
 * default mode there).
 *
 * Returns 0 and the object in *objp, or a negative errno with *objp = NULL:
 *   -ENOMEM     nothing cached (IOP_NOWAIT), the pool is at its limit
 *               (default mode), or the OS has no memory;
 *   -ETIMEDOUT  IOP_WAIT and the timeout passed (also at once for a zero
 *               timeout);
 *   -ESHUTDOWN  the pool is being destroyed (iop_pool_destroy() was
 *               called while this call waited, or before it);
 *   -EINVAL     pool or objp is NULL, unknown bits in `how`, IOP_NOWAIT
 *               with IOP_WAIT, IOP_ABSTIME without IOP_WAIT, or a negative
 *               relative timeout;
 *   -EDEADLK    refused from a hook (see "What a hook may call");
 *   the map hook's errno, as for iop_alloc().
 */
IOP_API int iop_alloc_ex(iop_pool_t *pool, void **objp, unsigned how, int64_t timeout_ns);

/**
 * Allocate up to n objects into objs[0..n) in the mode `how`, as
 * iop_alloc_ex() allocates one: for a driver refilling a ring that may
 * wait for a burst. The first object is allocated exactly as
 * iop_alloc_ex() would (IOP_WAIT waits for it, first come first served,
 * throttled, up to the timeout); the others are those to be had at once
 * without waiting: IOP_NOWAIT takes them from the caller's cache and the
 * depot only; the default mode and IOP_WAIT may map chunks up to a bounded
 * pool's limit, and IOP_WAIT stops where a waiting caller would be held
 * back (other waiters queued, or the throttle threshold). So a call
 * returns as soon as one object is there, with as many as were available
 * then.
 *
 * Returns the number of objects stored (1 to n), or a negative errno with
 * nothing stored: the errors of iop_alloc_ex() (-EINVAL for a NULL pool
 * among them), and -EINVAL also when objs is NULL, n is 0 or n is above
 * INT_MAX.
 */
IOP_API int iop_alloc_bulk_ex(iop_pool_t *pool, void **objs, unsigned n, unsigned how, int64_t timeout_ns);

/** iop_alloc_ex() for an IOP_F_REFCOUNT pool: the buffer comes with one
 *  reference. Returns as iop_alloc_ex() does, and -EINVAL when the pool is
 *  NULL or not IOP_F_REFCOUNT. */
IOP_API int iop_buf_alloc_ex(iop_pool_t *pool, void **bufp, unsigned how, int64_t timeout_ns);

/** Start a new high-water mark from the objects in flight now, and return
 *  the old one. 0 for an unbounded pool (which keeps no high-water mark)
 *  and for a NULL pool. */
IOP_API uint64_t iop_pool_reset_high_water(iop_pool_t *pool);

/* ------------------------------------------------------------------------ */
/* Statistics and audit                                                      */
/* ------------------------------------------------------------------------ */

/**
 * A pool's statistics. Object counts are a snapshot: exact when no thread is
 * using the pool, approximate (each read once, without stopping threads)
 * while threads run. Counters only grow.
 *
 * The fields after struct_size are also listed, in this order, by
 * IOP_POOL_STATS_FIELDS in <iopool/shm.h>, which generates the printers and
 * the shared-memory record; a new field is appended here and there (the
 * library's build checks that both agree).
 */
struct iop_pool_stats {
	uint32_t struct_size;   /**< sizeof(struct iop_pool_stats), set by caller */
	uint32_t cache_size;    /**< objects per magazine */
	uint64_t obj_size;      /**< bytes asked for per object */
	uint64_t obj_stride;    /**< bytes between objects (size rounded up) */
	uint64_t chunk_size;    /**< bytes per chunk */
	uint64_t objs_per_chunk;

	/* where the objects are: in_flight + cached + depot + slab_free == total */
	uint64_t total;         /**< objects in all mapped chunks */
	uint64_t in_flight;     /**< handed out and not yet freed */
	uint64_t cached;        /**< in threads' magazines */
	uint64_t depot;         /**< in full magazines in the depot */
	uint64_t slab_free;     /**< free in chunks (never handed out or returned) */

	uint64_t chunks;        /**< chunks mapped now */
	uint64_t bytes_mapped;  /**< chunks * chunk_size */

	uint64_t alloc_fast;    /**< allocations served by a thread's magazine */
	uint64_t alloc_slow;    /**< allocations that needed the slow path */
	uint64_t alloc_fail;    /**< allocations that failed (ENOMEM) */
	uint64_t free_fast;     /**< frees into a thread's magazine; derived, not
	                             counted (every object handed out comes back
	                             once): alloc_fast + alloc_slow - free_slow -
	                             in_flight, exact when no thread is using
	                             the pool */
	uint64_t free_slow;     /**< frees that needed the slow path */
	uint64_t depot_get;     /**< full magazines taken from the depot */
	uint64_t depot_put;     /**< full magazines given to the depot */
	uint64_t mag_alloc;     /**< empty magazines created */
	uint64_t chunk_acquire; /**< chunks obtained from the OS */
	uint64_t chunk_release; /**< chunks given back to the OS */

	/* Since 0.2: hooks and reference counts (page_pool's recycle stats:
	 * recycled into the thread cache = free_fast, cache full = free_slow,
	 * into the depot = depot_put). */
	uint64_t map_calls;     /**< map hook calls: one per chunk acquired, plus
	                             the failed ones */
	uint64_t unmap_calls;   /**< unmap hook calls (one per chunk released) */
	uint64_t release_hook;  /**< released buffers handed to the release hook */
	uint64_t hook_kept;     /**< of those, kept (stolen) by the hook */

	/* Since 0.3: bounds and allocation modes. The wait figures and the
	 * high-water mark are kept by bounded pools only (0 otherwise); the
	 * failures by mode by every pool. */
	uint64_t limit;         /**< most objects in flight; 0: no limit */
	uint64_t throttle_on;   /**< in flight at which IOP_WAIT callers start
	                             to wait (objects; = limit: no throttling) */
	uint64_t throttle_off;  /**< ...and below which they stop */
	uint64_t high_water;    /**< most objects in flight at once since
	                             creation or iop_pool_reset_high_water() */
	uint64_t waiters;       /**< IOP_WAIT callers waiting now */
	uint64_t limit_hits;    /**< allocations that found the pool at its
	                             limit (each failed or waited) */
	uint64_t waits;         /**< IOP_WAIT allocations that waited */
	uint64_t throttled;     /**< of those, the ones that waited while
	                             buffers remained (throttled) */
	uint64_t throttled_ns;  /**< total time the throttled ones waited */
	uint64_t wait_ns;       /**< total time all waits took */
	uint64_t wait_p50_ns;   /**< median wait (histogram, within 7%) */
	uint64_t wait_p99_ns;   /**< 99th percentile wait */
	uint64_t wait_max_ns;   /**< longest wait */
	uint64_t timeouts;      /**< IOP_WAIT allocations that timed out */
	uint64_t fail_nowait;   /**< failed IOP_NOWAIT allocations */
	uint64_t fail_default;  /**< failed allocations of the default mode */
	uint64_t fail_wait;     /**< failed IOP_WAIT allocations (timeouts,
	                             shutdown, no memory) */

	/* Since 0.4: reserve, refill workers, decay, domains, pages. */
	uint64_t reserve_low;   /**< per domain (params); 0: no reserve */
	uint64_t reserve_high;
	uint64_t reserve_short; /**< domains whose depot (their reserve) is
	                             below reserve_low now */
	uint64_t wake_low;      /**< worker wake-ups: a depot found below the
	                             low watermark */
	uint64_t wake_empty;    /**< ...an IOP_NOWAIT call found it empty */
	uint64_t wake_fail;     /**< ...an allocation failed */
	uint64_t refill_passes; /**< worker refills of a domain's reserve */
	uint64_t refill_objs;   /**< objects they put into depots */
	uint64_t refill_fail;   /**< chunk requests of the worker that failed
	                             (it backs off and retries) */
	uint64_t decay_passes;  /**< decay passes over a domain */
	uint64_t decay_objs;    /**< depot objects decay returned to chunks */
	uint64_t trims;         /**< thread caches trimmed at the worker's
	                             request (or taken, bounded pools) */
	uint64_t bytes_resident;/**< bytes of the chunks in memory now
	                             (mincore) */
	uint64_t page_kind;     /**< IOP_PAGES_* of the latest chunk; 0: none */
	uint64_t chunks_hugetlb;/**< chunks obtained as hugetlbfs pages */
	uint64_t chunks_thp;    /**< ...advised for transparent hugepages */
	uint64_t domains;       /**< memory domains of the process */
	uint64_t sent_home;     /**< objects freed on another domain and sent
	                             back to their own */

	/* Since 0.5: per-CPU caches. */
	uint64_t cache_mode;    /**< IOP_CACHE_MODE_CPU: this pool's objects are
	                             cached per CPU (cached counts the CPUs'
	                             slots and any per-thread ones);
	                             IOP_CACHE_MODE_THREAD: per thread only */
	uint64_t cpu_drains;    /**< CPU slots drained by other threads (after
	                             a fence): shrink, reclaim, decay, flush */
	uint64_t cpu_cache_size;/**< objects a CPU's slot holds at most (per-CPU
	                             mode): 2 * cache_size when given, else
	                             about 2 MiB of objects (2 magazines to
	                             1024); a bounded pool's slots together
	                             hold at most half its limit */

	/* Since 0.5: free pages of partly used chunks given back to the OS
	 * by shrink, reclaim and decay (see iop_pool_shrink()). */
	uint64_t bytes_released;/**< bytes of the mapped chunks given back now
	                             (released pages not yet used again);
	                             bytes_mapped - bytes_released is the most
	                             the chunks can hold in memory */
	uint64_t page_release;  /**< pages given back (counter) */
	uint64_t page_reuse;    /**< released pages used again: an object on
	                             them handed out, the page faulted in anew
	                             (counter) */
};

/** What backs a pool's chunks (iop_pool_stats.page_kind). */
#define IOP_PAGES_4K 1       /**< 4 KiB pages */
#define IOP_PAGES_THP 2      /**< advised for transparent hugepages */
#define IOP_PAGES_HUGETLB 3  /**< hugetlbfs 2 MiB pages */

/** The first version of struct iop_pool_stats (0.1): the smallest
 *  struct_size iop_pool_stats() accepts. */
#define IOP_POOL_STATS_SIZE_V1 offsetof(struct iop_pool_stats, map_calls)
/** struct iop_pool_stats of 0.2 (without the bounds). */
#define IOP_POOL_STATS_SIZE_V2 offsetof(struct iop_pool_stats, limit)
/** struct iop_pool_stats of 0.3 (without reserve, decay, domains). */
#define IOP_POOL_STATS_SIZE_V3 offsetof(struct iop_pool_stats, reserve_low)
/** struct iop_pool_stats of 0.4 (without the per-CPU caches). */
#define IOP_POOL_STATS_SIZE_V4 offsetof(struct iop_pool_stats, cache_mode)

/**
 * Fill *out (set out->struct_size first; fields past it are not written).
 * Returns 0, -EINVAL when pool or out is NULL or out->struct_size is
 * smaller than IOP_POOL_STATS_SIZE_V1, or -EDEADLK from the pool's unmap
 * hook inside its destroy (see "What a hook may call").
 */
#if defined(__cplusplus) && defined(__GNUC__)
/* In C++ the function hides the struct's implicit constructor, which
 * g++ -Wshadow reports in the user's build; C's `struct stat` and stat()
 * do the same, and the name is the API, so the warning is off here. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#endif
IOP_API int iop_pool_stats(iop_pool_t *pool, struct iop_pool_stats *out);
#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

/** Output formats for iop_pool_stats_print(). */
#define IOP_FMT_TEXT 0
#define IOP_FMT_JSON 1

/**
 * Print the pool's statistics to f: IOP_FMT_TEXT (a block of "key value"
 * lines headed by the pool's name) or IOP_FMT_JSON (one JSON object).
 * Returns 0, -EINVAL (NULL pool or f, unknown format), -EIO (write error)
 * or -EDEADLK (as iop_pool_stats()).
 */
IOP_API int iop_pool_stats_print(iop_pool_t *pool, FILE *f, int format);

/**
 * Verify the pool's invariants: every object is in exactly one place (in
 * flight, in one thread's magazine, in the depot, or free in its slab), no
 * cached or depot object lies outside the pool or twice, and the counters
 * agree with what a full walk finds. In checked mode also that no free object
 * is marked in use and that the poison of free objects is intact.
 *
 * The pool must be quiescent: no other thread may be calling it (threads
 * may hold objects and cached magazines). Returns 0, -EUCLEAN with a message
 * on stderr naming the pool and the first fault found, -ENOMEM when the walk
 * could not get scratch memory, -EINVAL when pool is NULL, or -EDEADLK from
 * the pool's unmap hook inside its destroy (see "What a hook may call").
 * From the pool's own hooks it audits as from outside.
 */
IOP_API int iop_pool_audit(iop_pool_t *pool);

/* ------------------------------------------------------------------------ */
/* Refcounted buffers, mapping handles, fragments                            */
/* ------------------------------------------------------------------------ */
/*
 * In an IOP_F_REFCOUNT pool every object ("buffer") has a reference count
 * kept outside its bytes, in a tail mapped right after its chunk (4 bytes
 * per object; not part of what the map hook sees). The put that drops the
 * last reference recycles the buffer through the normal free path (thread
 * cache first) or hands it to the pool's release hook, which may keep it.
 * Expensive per-buffer setup belongs in the map hook: it runs once per
 * chunk and the mapping survives every recycle.
 *
 * Wherever a call below takes `p`, any address inside a live buffer will do
 * (the buffer's start or a fragment of it). A buffer is released with
 * iop_buf_put(), not iop_free() (which would bypass the count; checked mode
 * aborts on it).
 */

/**
 * Allocate a buffer with one reference. Returns NULL with errno ENOMEM (no
 * memory), the map hook's errno, EDEADLK (as iop_alloc()), or EINVAL (the
 * pool is not IOP_F_REFCOUNT; a NULL pool through the exported function,
 * undefined behaviour inline).
 */
IOPINLINE void *(iop_buf_alloc)(iop_pool_t *pool);

/**
 * Allocate up to n buffers, each with one reference, into bufs[0..n).
 * Returns how many, as iop_alloc_bulk() does (errno ENOMEM, the map hook's
 * or EDEADLK when fewer than n); 0 with errno EINVAL when the pool is NULL or not
 * IOP_F_REFCOUNT.
 */
IOP_API unsigned iop_buf_alloc_bulk(iop_pool_t *pool, void **bufs, unsigned n);

/**
 * Take one more reference to the buffer holding p (an atomic increment;
 * any thread). Aborts with a message naming the pool and the address when
 * p is not inside a buffer of this IOP_F_REFCOUNT pool, or the buffer has
 * no reference (it was released), or the pool is NULL.
 */
IOP_API void iop_buf_get(iop_pool_t *pool, void *p);

/**
 * Drop one reference to the buffer holding p (any thread). The last put
 * runs the release hook, if any, or recycles the buffer. Inlined (see
 * below): when the caller holds the only reference to a buffer start and
 * the pool has no release hook, the put is a plain load and store of the
 * count and a push onto the thread's magazine. Aborts with a message
 * naming the pool and the address on a put below zero ("refcount
 * underflow"), or when p is not inside a buffer of this IOP_F_REFCOUNT pool.
 * A NULL pool aborts through the exported function; inline it is
 * undefined behaviour.
 */
IOPINLINE void (iop_buf_put)(iop_pool_t *pool, void *p);

/** References to the buffer holding p now (0 once released); a snapshot.
 *  Aborts as iop_buf_get() does on a bad p or a NULL pool. */
IOP_API unsigned iop_buf_refcount(iop_pool_t *pool, const void *p);

/** The start of the buffer (object) holding p. Aborts as iop_buf_get() does
 *  on an address that is not inside an object of this pool, or a NULL
 *  pool; works in any pool. */
IOP_API void *iop_buf_base(iop_pool_t *pool, const void *p);

/**
 * The mapping of the chunk holding p, in O(1): the handle the map hook
 * stored (0 without a hook) and p's byte offset from the chunk's start,
 * which is what a device or io_uring needs (registered buffer index and
 * offset, an IOVA base, an RDMA key). Any pool, any address inside one of
 * its chunks. Returns 0, or -EINVAL when pool is NULL or p is not in one of
 * its chunks; handle and offset may be NULL.
 */
IOP_API int iop_buf_mapping(iop_pool_t *pool, const void *p, uint64_t *handle, size_t *offset);

/** A fragment allocator over a refcounted pool. Opaque. */
typedef struct iop_frag iop_frag_t;

/**
 * Create a fragment allocator (page_frag style): it carves variable-size
 * fragments out of one buffer at a time, and the buffer recycles when its
 * last fragment is put. One thread uses an allocator at a time (keep one
 * per thread or per queue); fragments may be put from any thread with
 * iop_buf_put(pool, fragment). Returns NULL with errno EINVAL (pool is NULL
 * or not IOP_F_REFCOUNT) or ENOMEM.
 */
IOP_API iop_frag_t *iop_frag_create(iop_pool_t *pool);

/**
 * A fragment of len bytes aligned to align (a power of two; 0 means 1),
 * from the current buffer, or from a new one when it does not fit. The
 * fragment holds a reference to its buffer. Returns NULL with errno EINVAL
 * (len is 0 or does not fit in one buffer at that alignment, or align is
 * not a power of two) or ENOMEM.
 */
IOP_API void *iop_frag_alloc(iop_frag_t *fc, size_t len, size_t align);

/** Destroy the allocator: it drops its hold on the current buffer, which
 *  recycles once its fragments are put. NULL does nothing. */
IOP_API void iop_frag_destroy(iop_frag_t *fc);

/* ======================================================================== */
/* Size-class heap and per-call-site profiling (since 0.3)                   */
/* ======================================================================== */
/*
 * A general-purpose heap on top of the pools: any size from 1 byte to
 * IOP_HEAP_CLASS_MAX (1 MiB, the largest pooled object) is served by one of
 * IOP_HEAP_CLASSES size classes, each an ordinary pool named "heap-<size>"
 * (so it has the thread caches, the owner lookup iop_pool_of(), statistics
 * and the audit); a class's pool is created the first time a size of that
 * class is asked for. Larger requests are mapped straight from the OS and
 * tracked, so that iop_heap_free() and iop_heap_size() find them and refuse
 * any address that is not the start of a live large block or of a class
 * block (a free class block is refused only when its pool is checked).
 *
 * Spacing of the classes (the request is rounded up to the next class):
 *
 *   sizes            step               classes  worst waste
 *   1 - 64 B         16 B               4        15 B (small sizes only)
 *   (2^k, 2^(k+1)]   2^k / 8            8 each   below 1/8 of the request
 *   for k = 6..19    (8 B at 64 B,                and below 1/9 of the block
 *                     64 KiB at 512 KiB)
 *
 * so internal waste stays under 12.5% for every size above 64 B, with 116
 * classes at most (only the classes a program uses become pools). Blocks are aligned to 16 bytes, except blocks of the four
 * classes 72, 88, 104 and 120 B, which are aligned to 8: no C object of 65
 * to 72 B (81-88, ...) can need 16 (its size would be a multiple of 16).
 *
 * The fast path of an allocation is a pop from the calling thread's magazine
 * of the class's pool, of a free a push, after the owner lookup of the
 * address: no lock, no atomic read-modify-write. The heap's pools must not
 * be destroyed (iop_pool_destroy() refuses with -EPERM).
 */

/** The largest size served by a size class; larger go to the OS. */
#define IOP_HEAP_CLASS_MAX (IOP__SCAST(size_t, 1) << 20)
/** The number of size classes (pools the heap may create). */
#define IOP_HEAP_CLASSES 116u
/** The largest size iop_heap_alloc() and iop_heap_alloc_aligned() accept:
 *  half the address space the address map covers (2^46 bytes, 64 TiB, on
 *  x86-64; 2^47 on arm64). A larger size fails with ENOMEM at once; one up
 *  to it is mapped from the OS, which may still refuse it (ENOMEM). A
 *  page-size multiple. */
#define IOP_HEAP_SIZE_MAX ((IOP__MAP_ENTRIES << IOP__GRANULE_SHIFT) / 2)
/** The largest alignment iop_heap_alloc_aligned() accepts (1 GiB). */
#define IOP_HEAP_ALIGN_MAX (IOP__SCAST(size_t, 1) << 30)

/**
 * Allocate size bytes (0 is taken as 1), aligned to 16 bytes (8 for the
 * classes noted above), contents undefined. Any thread; free from any thread.
 *
 * Returns the block, or NULL with errno ENOMEM: no memory from the OS (also
 * for the pool of the size's class, the first time it is used), or size
 * too large to map.
 */
IOPINLINE void *(iop_heap_alloc)(size_t size);

/**
 * Allocate size bytes aligned to align, a power of two from 1 to
 * IOP_HEAP_ALIGN_MAX. Served by the smallest class that fits size and whose
 * blocks fall on multiples of align (a class of size c places its blocks at
 * multiples of c's lowest set bit), else mapped from the OS.
 *
 * Returns the block, or NULL with errno ENOMEM (as iop_heap_alloc()), or EINVAL (align is not a power of two or is above
 * IOP_HEAP_ALIGN_MAX; a message on stderr says which).
 */
IOP_API void *iop_heap_alloc_aligned(size_t size, size_t align);

/**
 * Free a block from iop_heap_alloc() or iop_heap_alloc_aligned(), from any
 * thread; its size is found from the address. NULL does nothing.
 *
 * Aborts with a message naming the address and the fault when p is not the
 * start of a heap block: an address of no pool and no live large block
 * ("not from the heap"; a freed large block too), an object of an
 * application's pool ("it belongs to pool '<name>', not to the heap"), an
 * address inside a block ("interior pointer, N bytes into ..."). A class
 * block that is not in flight (a double free) aborts when its class pool is
 * checked (IOPOOL_CHECKED=1, IOP_DEBUG >= 2) and is accepted otherwise, as
 * iop_free() does.
 */
IOPINLINE void (iop_heap_free)(void *p);

/**
 * The usable size of a live block: its class's size, or for a large block
 * the bytes mapped for it (the size rounded up to the page size); at least
 * what was asked for, and all of it may be written. 0 for NULL.
 *
 * Aborts as iop_heap_free() does when p is not the start of a block of the
 * heap: not from the heap, an application pool's object, an interior
 * pointer, a freed large block. A freed class block (or one never handed
 * out) aborts too ("the block is free") when its class pool is checked
 * (IOPOOL_CHECKED=1, or a build with IOP_DEBUG >= 2); unchecked, the class
 * pools keep no record of which blocks are in flight, so such a block
 * passes and its class's size is returned.
 */
IOP_API size_t iop_heap_size(const void *p);

/**
 * What iop_heap_alloc(size) would give, allocating nothing: the size of
 * size's class (0 is taken as 1, so 16), or for a size above
 * IOP_HEAP_CLASS_MAX up to IOP_HEAP_SIZE_MAX the size rounded up to the
 * page size. 0 for a size above IOP_HEAP_SIZE_MAX, which iop_heap_alloc()
 * refuses (ENOMEM). A size it returns may still fail to allocate when the
 * OS has no memory for it.
 */
IOP_API size_t iop_heap_class_size(size_t size);

/*
 * Per-call-site profiling, in the style of the kernel's /proc/allocinfo.
 *
 * Define IOP_PROFILE before including this header (or build with
 * -DIOP_PROFILE) and iop_heap_alloc() and iop_heap_alloc_aligned() become
 * macros that pass a static record of their call site (file, line,
 * function): no lookup on the allocation path, and for sizes up to
 * IOP_HEAP_CLASS_MAX no library call (the site's id goes into the block's
 * chunk, the size into the thread's counters, inline). Every free,
 * whichever file it is compiled in, finds the site of the block it
 * releases, so each site's live bytes and live allocations are exact.
 * Counters are per thread (no atomic read-modify-write) and summed when
 * read. Blocks from unprofiled calls are not counted anywhere. Bytes are
 * usable sizes (iop_heap_size()), as allocinfo counts slab object sizes.
 * Unprofiled programs pay one load per free (of the site arrays' table,
 * NULL until a profiled block is handed out).
 */

/**
 * Print one line per call site seen so far, sorted by live bytes, largest
 * first, after a header line starting with '#':
 *
 *   <live bytes> <live allocations> <file>:<line> func:<function>
 *
 * (the columns of /proc/allocinfo). A snapshot: exact when no other thread
 * allocates or frees meanwhile. Returns 0, -EINVAL (f is NULL), -ENOMEM
 * (no memory for the snapshot) or -EIO (a write failed).
 */
IOP_API int iop_profile_dump(FILE *f);

/* With IOP_PROFILE, the macros are in iopool/inline.h. */

/* ------------------------------------------------------------------------ */
/* Live statistics outside the process                                       */
/* ------------------------------------------------------------------------ */
/*
 * A process may publish the statistics of all its pools in a small POSIX
 * shared-memory segment, /dev/shm/iopool.<pid>, for tools/iopool-top (or any
 * reader of the format in <iopool/shm.h>) to show while it runs. A
 * background thread rewrites the segment from iop_pool_stats() snapshots
 * every interval; the fast paths are not touched. Pools created later
 * appear at the next update, destroyed ones disappear. The segment is
 * removed by iop_stats_unpublish() and at exit(); a process killed by a
 * signal leaves it behind (iopool-top reports it as stale and removes it
 * with --clean).
 *
 * Programs that cannot be changed: IOPOOL_PUBLISH=1 in the environment
 * publishes with the defaults from the first iop_pool_create(), and
 * IOPOOL_PUBLISH_INTERVAL_MS=N sets the interval; a failure is reported on
 * stderr.
 */

/** Parameters of iop_stats_publish(). Initialise with
 *  IOP_PUBLISH_PARAMS_INIT or iop_publish_params_init(); unset fields take
 *  their defaults. */
struct iop_publish_params {
	uint32_t struct_size;  /**< sizeof(struct iop_publish_params) */
	uint32_t interval_ms;  /**< update period: 0 gives 1000; at least
	                            IOP_PUBLISH_INTERVAL_MIN_MS, at most
	                            IOP_PUBLISH_INTERVAL_MAX_MS */
	const char *name;      /**< the process name the tools show; copied;
	                            NULL gives the program's name; at most
	                            IOP_NAME_MAX-1 characters */
	uint32_t flags;        /**< none yet: must be zero */
	uint32_t reserved0;    /**< must be zero */
};

#define IOP_PUBLISH_PARAMS_INIT { .struct_size = sizeof(struct iop_publish_params) }

/**
 * Initialise *params for iop_stats_publish(): every field zero (its
 * default), struct_size set; IOP_PUBLISH_PARAMS_INIT as a call, for C++
 * and C alike. NULL does nothing. Inline for the reason given at
 * iop_pool_params_init().
 */
static inline void iop_publish_params_init(struct iop_publish_params *params)
{
	if (params) {
		__builtin_memset(params, 0, sizeof(*params));
		params->struct_size = sizeof(*params);
	}
}
#define IOP_PUBLISH_INTERVAL_MIN_MS 10u      /**< a reader cannot use more */
#define IOP_PUBLISH_INTERVAL_MAX_MS 3600000u /**< one hour */

/**
 * Start publishing this process's pool statistics (params may be NULL for
 * the defaults): create /dev/shm/iopool.<pid> (replacing one that a dead
 * process with the same pid left behind), write a first update at once, and
 * start the background thread that updates it every interval.
 *
 * Returns 0, or:
 *   -EINVAL   struct_size too small, or larger with non-zero bytes this
 *             library does not know; interval_ms out of range; name too
 *             long; flags or reserved0 not zero (a message on stderr says
 *             which)
 *   -EALREADY the process already publishes (call iop_stats_unpublish()
 *             first to change the parameters)
 *   other     the negative errno of shm_open(), ftruncate(), mmap() or
 *             pthread_create() (EACCES, EMFILE, ENOSPC, ENOMEM, EAGAIN, ...)
 * Nothing is left behind on failure.
 */
IOP_API int iop_stats_publish(const struct iop_publish_params *params);

/**
 * Stop publishing: stop the background thread and remove the segment.
 * Returns 0, or -ENOENT when the process does not publish.
 */
IOP_API int iop_stats_unpublish(void);

/* ------------------------------------------------------------------------ */
/* Refill, decay, NUMA and hugepages                                         */
/* ------------------------------------------------------------------------ */
/*
 * Memory domains. A pool keeps a depot and its partial chunks per memory
 * domain (NUMA node). Its slow paths prefer the caller's domain (getcpu),
 * and take another domain's magazines rather than fail; new chunks are
 * bound to the caller's domain (libnuma, when the library was built with it
 * and the machine has several nodes). A magazine of objects freed on
 * another domain goes to the depot of its objects' domain, and objects of
 * a third domain in it go back to their chunks: memory goes home. Nodes
 * without memory get no domain (their CPUs use node 0's). Setting
 * IOPOOL_FAKE_NUMA=N in the environment pretends there are N domains
 * (1..8), CPU i belonging to domain i % N, without binding memory.
 *
 * Refill workers. One thread per domain, shared by all pools, started with
 * the first pool that has a reserve or decay and joined when the last one
 * is destroyed or the process exits. A pool's reserve (params.reserve_low
 * and reserve_high, per domain) is the objects in that domain's depot: the
 * slow paths wake the domain's worker, cheaply and at most once per 100 us,
 * when an IOP_NOWAIT call finds the depot below the low watermark or
 * empty, or an allocation fails; it also looks once a period (1 s). The
 * worker does the slow work (maps chunks, faults them in, hugepages, NUMA
 * binding, the map hook) and puts whole magazines into the depot, so an
 * IOP_NOWAIT allocation does not fail for want of a refill. It is never
 * needed for correctness; when the OS refuses a chunk it backs off and
 * retries. A child of fork() starts its own workers at its first call that
 * may block (see fork() at the top of this file).
 *
 * Decay (params.decay_ms, decay_pct). Each interval, the depot objects the
 * interval did not need (its lowest depot level, above reserve_high) shrink
 * by decay_pct and go back to their chunks; chunks whose objects are all
 * free are unmapped (the unmap hook first). Thread caches take part: a
 * bounded pool's idle threads' caches are taken (the handshake above); an
 * unbounded pool's threads give back their previous magazine on their next
 * slow-path call, so a thread that never calls again keeps at most two
 * magazines until it exits.
 *
 * Pages. Chunks are hugetlbfs 2 MiB pages when IOP_F_HUGETLB asks or pages
 * are reserved (and free), else advised for transparent hugepages (unless
 * IOP_F_NO_THP or THP is off), else 4 KiB pages; statistics say which.
 */

/** Domain statistics of a pool (iop_pool_domain_stats()). */
struct iop_domain_stats {
	uint32_t struct_size; /**< sizeof(struct iop_domain_stats), set by caller */
	uint32_t domain;
	uint64_t depot;       /**< objects in this domain's depot (its reserve) */
	uint64_t slab_free;   /**< free objects in this domain's chunks */
	uint64_t chunks;      /**< chunks of this domain */
};

/**
 * Memory domains. iop_domain_count() returns how many domains this process
 * has (1 without NUMA; N with IOPOOL_FAKE_NUMA=N); iop_domain_current() the
 * domain of the calling thread's CPU now; iop_domain_of() the domain of the
 * chunk holding p, or -EINVAL when p is in no pool.
 */
IOP_API unsigned iop_domain_count(void);
IOP_API unsigned iop_domain_current(void);
IOP_API int iop_domain_of(const void *p);

/**
 * Fill *out with the pool's figures in one domain (set out->struct_size
 * first). Returns 0, -EINVAL when pool or out is NULL, struct_size is 0,
 * or domain >= iop_domain_count(), or -EDEADLK (as iop_pool_stats()).
 */
IOP_API int iop_pool_domain_stats(iop_pool_t *pool, unsigned domain, struct iop_domain_stats *out);

/**
 * Return memory to the OS now, until the pool maps at most target_bytes or
 * nothing more can go: every CPU's cache of the pool (each CPU fenced
 * first), the calling thread's per-thread cache, a bounded pool's other
 * threads' caches (those not inside a call just then) and the depots down
 * to reserve_low go back to their chunks, what the depot keeps taken from
 * the fullest chunks; then every chunk whose objects are all free is
 * unmapped, and, while the pool still maps more than target_bytes, every
 * whole page of the other chunks that holds only free objects is given
 * back to the OS (MADV_DONTNEED; not for pools with a map hook, nor
 * hugetlbfs chunks), counted in bytes_released and page_release; such a
 * page is faulted in again by the library when an object on it is
 * handed out (page_reuse). Decay does the same for the chunks it returned
 * objects to. Other threads' per-thread caches of an unbounded pool are only
 * asked to give back their previous magazine on their next slow-path call.
 * Never touches an object in flight.
 *
 * While threads use the pool, a chunk comes back when none of its objects
 * is in flight or in a cache that shrink cannot reach (the per-thread
 * caches above). A pool that a burst grew comes down to about the chunks
 * its steady load holds (tested: two threads with up to 64 objects each in
 * flight bring a pool grown to 9-16 chunks of 2048 objects down to at most
 * 4, usually 1 or 2, both cache modes, plain and bounded); chunks the load
 * needs again are mapped again. A load whose objects in flight are spread
 * over every chunk keeps them all.
 *
 * Returns the bytes unmapped (>= 0; pages given back inside chunks are
 * not included: see bytes_released), -EINVAL when pool is NULL, or
 * -EDEADLK from the pool's unmap hook inside its destroy (see "What a hook
 * may call"). Not while the pool is being destroyed.
 */
IOP_API int64_t iop_pool_shrink(iop_pool_t *pool, uint64_t target_bytes);

/** iop_pool_shrink(pool, 0) for every pool of the process; returns the
 *  bytes unmapped in all (>= 0). Safe while other threads create and destroy
 *  pools (a destroyed pool's id is given to the next pool created); leaves
 *  alone the pools still inside iop_pool_create(). */
IOP_API int64_t iop_reclaim(void);

/* The inline fast paths (iop_alloc() and friends, above) and the internal
 * ABI they use. */
#include <iopool/inline.h>

#ifdef __cplusplus
}
#endif

#endif /* IOPOOL_H */
