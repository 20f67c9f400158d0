/* SPDX-License-Identifier: MIT */
/*
 * iopool internals shared between the layer files.
 *
 * Glossary
 *   object    one fixed-size buffer handed to the user.
 *   chunk     a naturally aligned block from the OS (default 2 MiB) carved
 *             into objects; objects never straddle chunks.
 *   map       a reserved array with one entry per 2 MiB granule of the
 *             address space naming the pool and chunk that own it, so the
 *             owner of any address is found with a shift and a load.
 *   slab      the per-chunk record of free objects: a bitmap of objects
 *             returned to the chunk, plus a bump index below which objects
 *             have been carved at least once (above it: never touched);
 *             the pool's chunk lists, counts and carving limit are struct
 *             iop_slab, written only by slab.c.
 *   magazine  a small array of free objects (Bonwick). A thread cache holds a
 *             "loaded" magazine it pops from and pushes to, and a "previous"
 *             one that is always either full or empty.
 *   depot     per pool and domain: full magazines, and the pool's empty
 *             ones; threads trade whole magazines with it under a short
 *             lock. struct iop_depot, written only by depot.c.
 *   domain    a memory (NUMA) domain: each pool keeps a depot and a list of
 *             partial chunks per domain, and every chunk belongs to one
 *             (domain.c; the worker's state per domain: struct iop_dom).
 *   reserve   the objects in a domain's depot, which IOP_NOWAIT callers may
 *             take; the domain's refill worker keeps it between the pool's
 *             low and high watermarks (worker.c).
 *   decay     the worker's periodic return of idle depot objects to their
 *             chunks and of wholly free chunks to the OS (worker.c).
 *
 *   slot      one cache's hold on one pool: a CPU's (struct iop__cslot,
 *             per-CPU mode, inline.h, ccache.c) or a thread's (struct
 *             iop_tcache, per-thread mode, tcache.c; registry.c keeps them).
 *
 *   CPU c (per-CPU mode: rseq)          thread T (per-thread mode)
 *   pool->hot.cpu[c]                    self (TLS) -> struct iop_thread
 *   +-----------------------+           blocks[P->id / 64][P->id % 64]
 *   | head: count | allocs  |           +-----------------------------+
 *   | cap (0: closed) objs -+-> [o o ]  | count objs -> loaded [o o ] |
 *   +-----------------------+           | prev (full or empty)        |
 *              |                        +-----------------------------+
 *              |    whole magazines, under P->lock    |
 *              v                                      v
 *   pool P: struct iop_depot   dom[d].full -> [ooo] -> [oo]   empty -> [   ]
 *           struct iop_slab    chunks; dom[d].partial -> C1 -> C3; limit
 *                                      |
 *   iop__map[addr >> 21] = P           |   _iop_map_chunk[addr >> 21] = C
 *   (a large heap block: NULL, and C   v    is the block's record)
 *   chunk C: [obj|obj|...|obj](refcount tail)   record: freemap, bump,
 *            from _iop_backing_map (backing.c)   inuse bits (checked),
 *            through src/os/ (mmap, madvise,     side (heap call sites)
 *            mbind, fault injection)
 *
 * Data moves down on allocation (cache -> depot -> slab -> backing -> os)
 * and up on free. Lock order: the registry lock (registry.c) before a
 * pool's cpu_lock before its lock; every lock's place is in the fork.c
 * section below. Statistics make no system call under the
 * registry lock (they copy what they need, and measure after it).
 */
#ifndef IOP_INTERNAL_H
#define IOP_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "config.h"
#include "iopool.h"
#include "vg.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define IOP_NOINLINE __attribute__((noinline))
#define IOP_COLD __attribute__((cold, noinline))
#define IOP_HIDDEN __attribute__((visibility("hidden")))

/* ---- sanitizer support and relaxed atomics -------------------------------- */

/* Memory that is not in flight (free objects, the gaps between objects),
 * hidden from the checkers and shown to the library's own visits: ASan's
 * poison (iopool/inline.h's macros, which follow the library's build,
 * buildconf.h) and, under valgrind's memcheck, its access bits (vg.h). So
 * a use after free is reported by either. */
#define FREE_POISON(p, n)                   \
	do {                                \
		IOP__POISON((p), (n));      \
		_iop_vg_noaccess((p), (n)); \
	} while (0)
#define FREE_UNPOISON(p, n)                \
	do {                               \
		IOP__UNPOISON((p), (n));   \
		_iop_vg_defined((p), (n)); \
	} while (0)

/* _Atomic fields (shared counters). Relaxed: counters only. */
#define LOAD(p) atomic_load_explicit((p), memory_order_relaxed)
/* Shared counter bumped from slow paths by any thread. */
#define COUNT(p, n) atomic_fetch_add_explicit((p), (n), memory_order_relaxed)
/* Plain fields shared with the inline code (thread slots) and the map: read
 * by other threads for statistics and owner lookups, so accessed relaxed. */
#define ALOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define ASTORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

/* ---- magazines ---------------------------------------------------------- */

struct iop_mag {
	struct iop_mag *next; /* depot list link */
	uint32_t count;       /* objects held; valid while in the depot */
	uint32_t cap;
	void *obj[];
};

/* ---- per-thread cache slots: one per (thread, pool) (tcache.c) ------------ */

/*
 * A thread's slot of one pool: a loaded magazine it pops from and pushes
 * to, and a previous one that is always full or empty. Only library calls
 * use it (nothing inline reads it). count, prev_count and alloc_fast are
 * read by other threads (statistics) under the registry lock, so they are
 * written with ASTORE. objs is the loaded magazine's array (TC_LOADED
 * gives the magazine), prev a struct iop_mag.
 */
struct iop_tcache {
	uint32_t count;      /* objects in the loaded magazine */
	uint32_t prev_count; /* objects in prev */
	void **objs;
	void *prev;
	uint64_t alloc_fast; /* allocations the loaded magazine served */
	uint32_t busy;       /* bounded pools: the owner is in a call on this
	                        slot (depth); another thread may take the
	                        slot's objects only while it is 0 */
	uint32_t steal;      /* bounded pools: another thread wants them */
	uint32_t ready;      /* set up (registry.c) */
	uint32_t trim;       /* the worker asked for the previous magazine */
	uint32_t torn;       /* the owner is between the stores of a change
	                        of both magazines, done without a lock: a
	                        child of fork() must not trust the slot */
	struct iop_mag *loaded; /* the magazine objs points into: a pointer to
	                           its start, so that a leak checker finds it
	                           reachable (valgrind calls a block known only
	                           by an interior pointer "possibly lost") */
} __attribute__((aligned(64)));
#define TC_LOADED(tc) ((tc)->objs ? (struct iop_mag *)((char *)(tc)->objs - offsetof(struct iop_mag, obj)) : NULL)
#define TC_PREV(tc) ((struct iop_mag *)(tc)->prev)
_Static_assert(sizeof(struct iop_tcache) == 64, "one cache line per slot");

/* ---- chunks and the address map ----------------------------------------- */

struct iop_chunk {
	struct iop_chunk *next, *prev; /* all chunks of the pool */
	struct iop_chunk *next_partial;
	bool on_partial;               /* has free objects, is on the list */
	struct iop_pool *pool;
	char *base;
	uint32_t nobj;
	uint32_t nfree;                /* free bits set + never-carved objects */
	uint32_t bump;                 /* objects [bump, nobj) never carved */
	uint64_t *freemap;             /* bit i: object i (< bump) free in slab */
	_Atomic uint64_t *inuse;       /* checked: bit i: object i in flight */
	uint32_t *refs;                /* IOP_F_REFCOUNT: count of object i
	                                  (__atomic ops), in the tail mapped
	                                  right after the chunk (iop__refs()) */
	uint64_t handle;               /* what the map hook stored */
	uint64_t *audit_seen;          /* scratch of iop_pool_audit() */
	uint8_t domain;                /* memory domain (struct iop_dom) */
	uint8_t kind;                  /* IOP_PAGES_* it got from the OS */
	void *side;                    /* a front end's array per object (the
	                                  heap's call sites when profiling),
	                                  set once; unmapped with the chunk */
	size_t side_bytes;
	uint64_t *released;            /* bit i: page i given back to the OS
	                                  (slab.c: _iop_slab_release_pages) */
	uint32_t nreleased;            /* bits set in released */
};

/*
 * The map is two parallel arrays indexed by address >> IOP_GRANULE_SHIFT,
 * reserved at the first pool creation (or large heap block) and never
 * freed: iop__map (iopool.h) names the owning pool, which the inline free
 * path compares with a single scaled load; _iop_map_chunk names the chunk,
 * for the slow paths. A large block of the heap is a chunk with no pool
 * (iop__map NULL, chunk->pool NULL). Entries are read and written with
 * ALOAD and ASTORE.
 */
IOP_HIDDEN extern struct iop_chunk **_iop_map_chunk;

/* ---- bounded pools (bound.c) --------------------------------------------- */

/* Wait-time histogram: log-linear, 8 buckets per power of two of ns, so a
 * percentile read from it is within 1/16 (about 6%) of the true one. */
#define IOP_HIST_SUB 3
#define IOP_HIST_BUCKETS (64 << IOP_HIST_SUB)

struct iop_waiter;

struct iop_bound {
	struct iop_pool *pool;
	uint64_t limit;
	uint64_t throttle_on;  /* the most in flight an IOP_WAIT caller
	                          may bring about (throttling starts) */
	uint64_t throttle_off; /* throttled waiters are served again once
	                          fewer are in flight */
	/* Objects reserved for or held by callers. An allocation reserves
	 * (atomic add) before it takes an object and gives the reservation
	 * back if it gets none; a free releases after the caller let go. So
	 * it is never below what callers hold, and an accepted reservation
	 * never brings it above the limit. Signed: undone reservations may
	 * make a transient reader see it high, never negative for long. */
	_Atomic int64_t in_flight;
	_Atomic uint64_t high_water;
	_Atomic uint32_t nwaiters;  /* queued IOP_WAIT callers */
	_Atomic bool throttled;     /* hysteresis state: set at throttle_on,
	                               cleared below throttle_off */
	_Atomic bool shutdown;      /* iop_pool_destroy() was called */

	/* The FIFO of waiters, under wlock. No other lock is taken while
	 * wlock is held (statistics take it under the registry lock). */
	pthread_mutex_t wlock;
	pthread_cond_t idle;        /* destroy waits here for waiters to go */
	struct iop_waiter *head, *tail;
	uint32_t inside;            /* callers between queueing and return */
	_Atomic uint32_t pass_pending; /* grant passes asked of wlock's holder */

	/* Wait statistics, under wlock. */
	uint64_t wait_ns, throttled_ns, wait_max_ns;
	uint64_t hist[IOP_HIST_BUCKETS];
	_Atomic uint64_t limit_hits, waits, throttled_waits, timeouts;
};

/* ---- memory domains (domain.c) ------------------------------------------ */

/* A pool's worker state in one memory domain (worker.c); the domain's depot
 * and slab are in struct iop_depot and struct iop_slab. */
struct iop_dom {
	/* The worker: after a failed chunk request, no refill before
	 * retry_ns; backoff_ms doubles per failure up to the period. */
	int64_t retry_ns;
	uint32_t backoff_ms;
	int64_t next_decay_ns;
	/* Wake-ups: none before this (CLOCK_MONOTONIC_COARSE) time; racy by
	 * design, so a storm of failures costs one clock read each. */
	_Atomic int64_t wake_at;
};

/* Domains in this process (>= 1) and the caller's. */
IOP_HIDDEN extern unsigned _iop_ndomains;
IOP_HIDDEN void _iop_domains_init(void);
IOP_HIDDEN unsigned _iop_domain_cpu(void);
/* The caller's domain: 0 with one domain, a worker's own, else from the CPU
 * it runs on (getcpu, a vDSO call; slow paths only). */
static inline unsigned _iop_domain_here(void)
{
	return _iop_ndomains == 1 ? 0 : _iop_domain_cpu();
}
/* Bind [base, base+len) to domain d's memory (libnuma; nothing otherwise). */
IOP_HIDDEN void _iop_domain_bind(void *base, size_t len, unsigned d);
/* The worker of domain d runs on its CPUs (libnuma) and calls itself d. */
IOP_HIDDEN void _iop_domain_enter(unsigned d);

/* ---- depot and slab state (depot.c, slab.c) ------------------------------ */

/* The depot (depot.c owns it; others read it under pool->lock): full
 * magazines per memory domain, whose objects are that domain's reserve,
 * and the pool's empty magazines. Totals are kept for the pool and per
 * domain, and only depot.c changes either. */
struct iop_depot {
	struct iop_mag *empty;
	uint64_t nempty;
	uint64_t nfull;         /* all domains' */
	uint64_t objs;          /* objects in all domains' full lists */
	struct iop_depot_dom {
		struct iop_mag *full; /* magazines of this domain's objects */
		uint64_t nfull;
		uint64_t objs;        /* objects in `full` */
		uint64_t min;         /* lowest `objs` since the last decay
		                         pass: what the interval did not need */
	} dom[IOP_MAX_DOMAINS];
};

/* The slab (slab.c owns it; others read it under pool->lock): every chunk
 * of the pool, the chunks with free objects per domain, and the carving
 * limit. */
struct iop_slab {
	struct iop_chunk *chunks; /* all chunks, through chunk->next */
	uint64_t nchunks;
	uint64_t free;            /* sum of chunk->nfree */
	/* Objects the slab may carve: a bounded pool's limit, which caps its
	 * memory; UINT64_MAX for an unbounded pool. */
	uint64_t limit;
	uint8_t page_kind;        /* IOP_PAGES_* of the latest chunk */
	uint8_t page_shift;       /* log2 of the OS page size */
	uint64_t released;        /* pages of the chunks given back now */
	uint64_t page_release, page_reuse; /* counters (statistics) */
	struct iop_slab_dom {
		struct iop_chunk *partial; /* chunks with free objects */
		uint64_t nchunks;
	} dom[IOP_MAX_DOMAINS];
};

/* ---- the pool ----------------------------------------------------------- */

struct iop_pool {
	/* Read by the inline fast paths (iopool.h); must come first. */
	struct iop__pool_hot hot;
	uint32_t mag_cap;     /* objects per magazine (the depot's unit) */
	uint32_t cpu_cap;     /* objects per CPU slot (config.h) */
	bool cpu_mode;        /* served by per-CPU slots (ccache.c) */
	bool cpu_closing;     /* destroy closed the slots for good */
	bool cpu_held;        /* bounded: waiters hold the slots closed
	                         (under cpu_lock) */
	pthread_mutex_t cpu_lock; /* opening, draining, closing slots */
	void *cpu_mem;        /* the slots' allocation (hot.cpu - 2) */
	bool checked;
	bool refcount;        /* IOP_F_REFCOUNT */
	size_t refs_tail;     /* bytes mapped after each chunk for the counts */

	/* Hooks (struct iop_pool_params); called with no lock held. */
	int (*map)(void *arg, void *base, size_t len, uint64_t *handle);
	void (*unmap)(void *arg, void *base, size_t len, uint64_t handle);
	int (*release)(void *arg, iop_pool_t *pool, void *buf);
	void *hook_arg;

	uint32_t id;          /* registry.c: index of its thread slots */
	char name[IOP_NAME_MAX];
	size_t obj_size;
	size_t align;
	size_t chunk_size;
	uint32_t flags;

	/* Depot and slab, under lock; each written only by its own file. */
	pthread_mutex_t lock;
	struct iop_depot depot;
	struct iop_slab slab;

	/* Counters; the per-thread fast counters of exited threads are folded
	 * into alloc_fast; fast frees are derived (iop_pool_stats). */
	_Atomic uint64_t alloc_fast, alloc_slow, alloc_fail;
	_Atomic uint64_t free_slow;
	_Atomic uint64_t depot_get, depot_put, mag_alloc;
	_Atomic uint64_t chunk_acquire, chunk_release;
	_Atomic uint64_t map_calls, unmap_calls, release_hook, hook_kept;
	_Atomic uint64_t fail_nowait, fail_default, fail_wait;

	/* NULL for an unbounded pool. */
	struct iop_bound *bound;

	/* Reserve and decay (worker.c); fixed at creation. */
	uint64_t reserve_low, reserve_high; /* objects per domain */
	int64_t decay_ns;     /* 0: no decay */
	uint32_t decay_pct;
	bool uses_worker;     /* a reserve or decay */
	/* iop_pool_create() has not returned yet (it populates): worker
	 * passes and iop_reclaim() leave the pool alone, or they could take
	 * back what populate carved as fast as it carves (registry lock). */
	bool creating;
	uint32_t wref;        /* worker passes and reclaims under way on the
	                         pool (worker.c's lock); destroy waits for 0 */
	uint64_t activity;    /* worker 0: slow-path counters at the last
	                         decay pass, to tell an idle pool */
	_Atomic uint64_t upkeep; /* depot gets and puts of the workers' own
	                         refills and decays: not use (worker.c) */
	_Atomic uint64_t wake_low, wake_empty, wake_fail;
	_Atomic uint64_t refill_passes, refill_objs, refill_fail;
	_Atomic uint64_t decay_passes, decay_objs, trims, sent_home;
	_Atomic uint64_t chunks_hugetlb, chunks_thp;
	_Atomic uint64_t cpu_drains;

	struct iop_dom dom[IOP_MAX_DOMAINS];
};
_Static_assert(IOP__GRANULE_SHIFT == IOP_GRANULE_SHIFT && IOP__MAP_ENTRIES == IOP_MAP_ENTRIES,
	       "the inline owner check and the library agree on the map");
_Static_assert(offsetof(struct iop_pool, hot) == 0, "the inline code reads the pool's first bytes");
_Static_assert(sizeof(struct iop__pool_hot) <= IOP_CACHELINE,
	       "the inline paths read one cache line of the pool (pool.c aligns the pool to it)");

/* ---- errors ------------------------------------------------------------- */

/* Messages (msg.c): one line on stderr, "iopool: pool '<name>': <text>"
 * about a pool, "iopool: <who>: <text>" otherwise (who: the public call,
 * the IOPOOL_* variable or the part that speaks). _iop_msg and
 * _iop_msg_pool return (a warning, or the reason for an -EINVAL);
 * _iop_fatal and _iop_die abort. */
IOP_HIDDEN void _iop_msg(const char *who, const char *fmt, ...) __attribute__((format(printf, 2, 3), cold));
IOP_HIDDEN void _iop_msg_pool(const struct iop_pool *pool, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), cold));
IOP_HIDDEN _Noreturn void _iop_fatal(const char *who, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), cold));
IOP_HIDDEN _Noreturn void _iop_die(const struct iop_pool *pool, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), cold));
/* The same with a va_list: about pool when it is not NULL, else who. */
IOP_HIDDEN void _iop_vmsg(const struct iop_pool *pool, const char *who, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0), cold));
/* The chunk of this pool that holds p; aborts with "<what> of <p>: not from
 * any pool" or "...: it belongs to pool '<name>'" when there is none. */
IOP_HIDDEN struct iop_chunk *_iop_chunk_or_die(struct iop_pool *pool, const void *p, const char *what);

#if IOP_DEBUG >= 1
#define IOP_ASSERT(pool, c) \
	((c) ? (void)0 : _iop_die((pool), "internal assertion failed: %s (%s:%d)", #c, __FILE__, __LINE__))
#else
#define IOP_ASSERT(pool, c) ((void)0)
#endif

/* ---- hook.c: hooks that call back into iopool ---------------------------- */

/* The hooks a thread is running, innermost first, in frames on its stack
 * (one TLS word names the innermost; NULL outside hooks). */
enum iop_hook { IOP_HOOK_MAP, IOP_HOOK_UNMAP, IOP_HOOK_RELEASE };
struct iop_hook_frame {
	struct iop_hook_frame *up;
	struct iop_pool *pool;
	enum iop_hook hook;
	bool dying; /* unmap hooks of iop_pool_destroy() (or a failed create) */
};
IOP_HIDDEN extern __thread struct iop_hook_frame *_iop_hook_top __attribute__((tls_model("initial-exec")));
static inline void _iop_hook_enter(struct iop_hook_frame *f, struct iop_pool *pool, enum iop_hook hook, bool dying)
{
	f->up = _iop_hook_top;
	f->pool = pool;
	f->hook = hook;
	f->dying = dying;
	_iop_hook_top = f;
}
static inline void _iop_hook_leave(struct iop_hook_frame *f)
{
	_iop_hook_top = f->up;
}
/* The calls on a pool that a hook up the stack may forbid (the table in
 * iopool.h). */
enum iop_call {
	IOP_CALL_ALLOC, IOP_CALL_FREE, IOP_CALL_FLUSH, IOP_CALL_STATS, IOP_CALL_AUDIT,
	IOP_CALL_SHRINK, IOP_CALL_DESTROY, IOP_CALL_CHUNK,
};
/* -EDEADLK with a message naming the hook and the call when the table
 * forbids `call` on pool from the hooks this thread is inside, else 0. */
IOP_HIDDEN int _iop_hook_refuse(struct iop_pool *pool, enum iop_call call) IOP_COLD;
static inline int _iop_hook_check(struct iop_pool *pool, enum iop_call call)
{
	return unlikely(_iop_hook_top != NULL) ? _iop_hook_refuse(pool, call) : 0;
}
/* How many of the thread's running hooks are pool's `hook`. */
IOP_HIDDEN unsigned _iop_hook_depth(const struct iop_pool *pool, enum iop_hook hook);

/* ---- backing.c: chunks and the map (the system calls: os/os.h) ----------- */

IOP_HIDDEN int _iop_map_init(void);
/* Map len bytes aligned to align (>= 2 MiB), plus tail bytes, in domain d:
 * hugetlbfs pages, else THP, else 4 KiB pages (*kind says which), as flags
 * (IOP_F_HUGETLB, IOP_F_NO_THP, IOP_F_PREFAULT) allow; fault injection
 * first (os/iop_fault.h). A pool's chunk or a large heap block. NULL with
 * errno ENOMEM on failure; _iop_os_unmap() gives it back. */
IOP_HIDDEN void *_iop_backing_map(size_t len, size_t align, size_t tail, uint32_t flags, unsigned d,
				  uint8_t *kind);
/* Name pool and chunk as the owners of every granule of [base, base+size);
 * a large heap block is a chunk with no pool. */
IOP_HIDDEN void _iop_map_set(char *base, size_t size, struct iop_pool *pool, struct iop_chunk *chunk);
/* Reserve iop__map_sites (once; 0 or -ENOMEM), and name sites, a class
 * chunk's site array (heap.c), in the entries of its granules. Setting a
 * granule's owner (_iop_map_set) clears its site entry. */
IOP_HIDDEN int _iop_map_sites_init(void);
IOP_HIDDEN void _iop_map_set_sites(char *base, size_t size, uint32_t *sites);
/* The map index of p, or -1 when p lies outside the mapped range. */
IOP_HIDDEN intptr_t _iop_map_index(const void *p);
/* The pool and chunk owning p, NULL when none. */
IOP_HIDDEN struct iop_pool *_iop_map_pool(const void *p);
IOP_HIDDEN struct iop_chunk *_iop_map_chunk_of(const void *p);

/* ---- slab.c: chunks carved into objects (pool lock held unless noted) ---- */

/* Set the carving limit (UINT64_MAX: none); at creation. */
IOP_HIDDEN void _iop_slab_init(struct iop_pool *pool, uint64_t limit);
/* Take up to n free objects from domain d's slab. */
IOP_HIDDEN unsigned _iop_slab_get(struct iop_pool *pool, unsigned d, void **objs, unsigned n);
/* The same, mapping a chunk in d when its slab is empty (other domains'
 * slabs when that fails); drops the lock around the mmap (and the map
 * hook). When it gets nothing, *status says why: -ENOBUFS at the carving
 * limit, else the OS's or the map hook's -errno. */
IOP_HIDDEN unsigned _iop_slab_get_or_grow(struct iop_pool *pool, unsigned d, void **objs, unsigned n,
					  int *status);
/* Map a chunk in domain d (with `more` flags, e.g. IOP_F_PREFAULT) and add
 * it, dropping the lock around the mmap: 0, -ENOBUFS at the carving limit,
 * or the -errno of the OS or the map hook. */
IOP_HIDDEN int _iop_slab_grow(struct iop_pool *pool, unsigned d, uint32_t more);
/* After a failed get (the lock not held): would trying again help? True
 * at the carving limit (the objects are in caches) or when objects came
 * back since; false when the slab is empty below its limit (the OS or the
 * map hook failed). */
IOP_HIDDEN bool _iop_slab_retry_helps(struct iop_pool *pool);
/* Objects the slab may still carve before the limit: UINT64_MAX for an
 * unbounded pool. */
IOP_HIDDEN uint64_t _iop_carve_room(const struct iop_pool *pool);
/* The memory domain of an object of some pool (its chunk's); no lock. */
IOP_HIDDEN unsigned _iop_slab_domain_of(const void *obj);
/* Return n objects to their chunks. */
IOP_HIDDEN void _iop_slab_put(struct iop_pool *pool, void *const *objs, unsigned n);
/* Order domain d's partial chunks by free objects, fewest first, so that
 * the next gets empty the fullest chunks and the rest can become wholly
 * free (decay). */
IOP_HIDDEN void _iop_slab_sort_partial(struct iop_pool *pool, unsigned d);
/* Fault in every object carved so far (populate). */
IOP_HIDDEN void _iop_slab_prefault(struct iop_pool *pool);
/* Unlink wholly free chunks of domain d (every domain when d is
 * IOP_MAX_DOMAINS) while the pool maps more than target bytes; returns
 * them linked through ->next, for _iop_slab_free_chunks() once the lock is
 * dropped (the unmap hook runs with no lock held). */
IOP_HIDDEN struct iop_chunk *_iop_slab_unlink_free(struct iop_pool *pool, unsigned d, uint64_t target);
/* Unmap unlinked chunks; no lock held. Returns the bytes unmapped. */
IOP_HIDDEN uint64_t _iop_slab_free_chunks(struct iop_pool *pool, struct iop_chunk *gone);
/* Unmap every chunk, whatever it holds (destroy, or a failed create). */
IOP_HIDDEN void _iop_slab_free_all(struct iop_pool *pool);
/* Give back to the OS the whole pages of domain d's chunks (every domain
 * with IOP_MAX_DOMAINS) that hold only free objects of the slab (decay,
 * shrink). Returns the pages released. */
IOP_HIDDEN uint64_t _iop_slab_release_pages(struct iop_pool *pool, unsigned d);
/* For the audit: page pg of chunk c holds only free objects of the slab;
 * object idx of c has a byte on a released page. */
IOP_HIDDEN bool _iop_slab_page_is_free(const struct iop_pool *pool, const struct iop_chunk *c, uint64_t pg);
IOP_HIDDEN bool _iop_slab_obj_released(const struct iop_pool *pool, const struct iop_chunk *c, uint64_t idx);

/* ---- depot.c: magazine exchange (pool lock held) ------------------------- */

IOP_HIDDEN struct iop_mag *_iop_mag_new(struct iop_pool *pool);
/* A full magazine from domain d's depot, else (any) from another domain's.
 * Callers that may grow ask d's depot, then d's slab and new chunks, and
 * only then other domains': local memory first. */
IOP_HIDDEN struct iop_mag *_iop_depot_take_full(struct iop_pool *pool, unsigned d, bool any);
IOP_HIDDEN struct iop_mag *_iop_depot_take_empty(struct iop_pool *pool);
/* Put a magazine back: onto the full list of its objects' domain if it
 * holds objects (objects of other domains go home to their chunks), else
 * onto the empty list. */
IOP_HIDDEN void _iop_depot_put(struct iop_pool *pool, struct iop_mag *m);
/* Up to n objects of domain d's full magazines (with any, of any domain)
 * copied into dst, from as many magazines as it takes; returns how many. */
IOP_HIDDEN unsigned _iop_depot_get_objs(struct iop_pool *pool, unsigned d, bool any, void **dst, unsigned n);
/* src[0..n) into the depot, a magazine at a time (to the slab when no
 * magazine can be had). */
IOP_HIDDEN void _iop_depot_put_objs(struct iop_pool *pool, void *const *src, unsigned n);
/* Fill a magazine from domain d's slab (_iop_slab_get_or_grow). Called and
 * returns with the lock held; drops it around the mmap. 0 with errno when
 * nothing could be had (ENOMEM at a bounded pool's carving limit: a caller
 * that can do better asks _iop_slab_retry_helps()). */
IOP_HIDDEN unsigned _iop_depot_fill(struct iop_pool *pool, unsigned d, struct iop_mag *m);
/* Fill domain d's depot with whole magazines of d's objects until it holds
 * `high`, mapping prefaulted chunks as needed (the refill worker). *added
 * counts the objects put in (and the pool's refill_objs). 0, -ENOBUFS at the carving limit, or the
 * -errno of the OS or a failed magazine allocation. */
IOP_HIDDEN int _iop_depot_reserve(struct iop_pool *pool, unsigned d, uint64_t high, uint64_t *added);
/* Move up to n objects of domain d's depot back to their chunks, freeing
 * the magazines they empty. Returns how many moved. */
IOP_HIDDEN uint64_t _iop_depot_release(struct iop_pool *pool, unsigned d, uint64_t n);
/* Keep `keep` objects in domain d's depot, from the fullest chunks, and
 * return the rest to their chunks. Returns how many left the depot. */
IOP_HIDDEN uint64_t _iop_depot_compact(struct iop_pool *pool, unsigned d, uint64_t keep);
/* A decay pass on domain d: pct percent of the objects that stayed in the
 * depot all interval above `floor` go back to their chunks; the interval's
 * low mark restarts. Returns how many went. */
IOP_HIDDEN uint64_t _iop_depot_decay(struct iop_pool *pool, unsigned d, uint64_t floor, uint32_t pct);
/* Fill the depot with `want` objects of domain d (and others' when d has
 * none), faulted in; lock not held, pool not yet shared. 0 or -errno. */
IOP_HIDDEN int _iop_depot_populate(struct iop_pool *pool, unsigned d, uint64_t want);
/* Free every magazine of the depot (destroy); their objects are forgotten,
 * the slab frees their chunks whole. */
IOP_HIDDEN void _iop_depot_free_all(struct iop_pool *pool);

/* ---- checked.c: checked mode (IOP_F_CHECKED, IOP_DEBUG >= 2) -------------- */

/* The chunk of this pool that holds p; aborts with "<what> of <p>: not from
 * any pool" or "...: it belongs to pool '<name>'" when there is none (in
 * every build, as iop__bad_free()). */
IOP_HIDDEN struct iop_chunk *_iop_chunk_or_die(struct iop_pool *pool, const void *p, const char *what);

/* An object handed out / given back: its in-flight bit, its poison, and
 * for a refcounted pool its count (a checked free of a buffer that still
 * has references is refused). Abort with a message on a fault. */
IOP_HIDDEN void _iop_checked_on_alloc(struct iop_pool *pool, void *p);
IOP_HIDDEN void _iop_checked_on_free(struct iop_pool *pool, void *p);
/* Checked pools: is the object at p (an object of the pool) in flight? */
IOP_HIDDEN bool _iop_checked_in_flight(struct iop_pool *pool, const void *p);
/* Fill a free object with IOP_POISON_BYTE (the slab, as it carves). */
IOP_HIDDEN void _iop_poison_fill(const struct iop_pool *pool, void *p);

/* The bookkeeping of every object handed out, and of every object given
 * back, off the inline path: the checked-mode checks, or under ASan the
 * poison of free objects; under memcheck the object's block (vg.h). */
static inline void _iop_on_alloc(struct iop_pool *pool, void *p)
{
	if (pool->checked)
		_iop_checked_on_alloc(pool, p);
	else
		IOP__UNPOISON(p, pool->hot.stride);
	_iop_vg_obj_alloc(pool, p, pool->hot.stride, pool->obj_size);
}
static inline void _iop_on_free(struct iop_pool *pool, void *p)
{
	_iop_vg_obj_free(pool, p);
	if (pool->checked)
		_iop_checked_on_free(pool, p);
	else
		IOP__POISON(p, pool->hot.stride);
}
/* Give an object that passed the owner check back to this CPU's slot, or
 * through the slow path (bookkeeping included) when that cannot be done. */
static inline void _iop_push(struct iop_pool *pool, void *p)
{
	IOP__POISON(p, pool->hot.stride);
	if (!iop__seq_push(&pool->hot, p))
		iop__free_slow(pool, p);
}
/* Offset of the first byte of p that does not hold the poison, or -1. */
IOP_HIDDEN long _iop_poison_check(const struct iop_pool *pool, const void *p);

/* ---- registry.c: pools and threads --------------------------------------- */

/* The registry lock guards the pool table and the list of threads. */
/* Run hook->fn(hook) once when the calling thread exits, after its cache
 * slots are emptied; the hook (usually in the caller's TLS) must live until
 * then. False past the thread's exit hook or without memory: no call will
 * come. */
struct iop_exit_hook {
	struct iop_exit_hook *next;
	void (*fn)(struct iop_exit_hook *hook);
};
IOP_HIDDEN bool _iop_on_thread_exit(struct iop_exit_hook *hook);
IOP_HIDDEN void _iop_registry_lock(void);
IOP_HIDDEN void _iop_registry_unlock(void);
IOP_HIDDEN int _iop_pool_register(struct iop_pool *pool); /* registry locked */
IOP_HIDDEN void _iop_pool_unregister(struct iop_pool *pool); /* registry locked */
/* Call fn(pool, arg) for every registered pool, by id; registry locked. */
IOP_HIDDEN void _iop_for_each_pool(void (*fn)(struct iop_pool *, void *), void *arg);
/* The registered pool with this id, or NULL; registry locked. Ids run
 * below _iop_pool_ids(). */
IOP_HIDDEN struct iop_pool *_iop_pool_by_id(uint32_t id);
IOP_HIDDEN uint32_t _iop_pool_ids(void);
/* Call fn(pool, tc, arg) for every thread's slot of this pool that is set
 * up; registry locked. */
IOP_HIDDEN void _iop_for_each_tcache(struct iop_pool *pool,
				     void (*fn)(struct iop_pool *, struct iop_tcache *, void *), void *arg);
/* The calling thread's slot of the pool, set up; NULL when the thread is
 * past its exit hook (no cache) or no memory could be had. */
IOP_HIDDEN struct iop_tcache *_iop_my_slot(struct iop_pool *pool);
/* The same, or NULL when it has none yet (never sets one up). */
IOP_HIDDEN struct iop_tcache *_iop_my_slot_if_any(struct iop_pool *pool);
/* Mark a slot set up again after a hook's flush reset it. */
IOP_HIDDEN void _iop_slot_reready(struct iop_tcache *tc);

/* ---- tcache.c: per-thread caches ---------------------------------------------- */

/* Return a thread cache's magazines to the depot and reset the slot, folding
 * its counters into the pool; registry locked, pool unlocked. */
IOP_HIDDEN void _iop_tcache_drain(struct iop_pool *pool, struct iop_tcache *tc, void *unused);
/* Objects a slot holds. */
static inline uint64_t _iop_tcache_objs(struct iop_tcache *tc)
{
	return (uint64_t)ALOAD(&tc->count) + ALOAD(&tc->prev_count);
}
/* The pool lock; without grow only a few tries (never sleeps in the
 * kernel). */
IOP_HIDDEN bool _iop_pool_lock(struct iop_pool *pool, bool grow);
/* A full magazine of domain d (without grow, of any domain rather than
 * none), waking d's worker when the depot is below its reserve. Pool
 * locked. */
IOP_HIDDEN struct iop_mag *_iop_cache_take_full(struct iop_pool *pool, unsigned d, bool grow);
/* The same for up to n objects copied into dst (_iop_depot_get_objs). */
IOP_HIDDEN unsigned _iop_take_objs(struct iop_pool *pool, unsigned d, bool grow, void **dst, unsigned n);
/* The per-thread calls: objects already checked and accounted for on
 * free; allocations return unaccounted objects (cache.c does that). */
IOP_HIDDEN void *_iop_thread_alloc(struct iop_pool *pool, bool grow);
IOP_HIDDEN void _iop_thread_free(struct iop_pool *pool, void *obj);
IOP_HIDDEN unsigned _iop_thread_alloc_bulk(struct iop_pool *pool, void **objs, unsigned n);
IOP_HIDDEN void _iop_thread_free_bulk(struct iop_pool *pool, void *const *objs, unsigned n);

/* ---- ccache.c: per-CPU caches ------------------------------------------------- */

enum { IOP_CACHE_THREAD = IOP_CACHE_MODE_THREAD, IOP_CACHE_CPU = IOP_CACHE_MODE_CPU };
/* The process's mode, decided once (_iop_cache_init), and the number of
 * possible CPUs (slots per pool). */
IOP_HIDDEN extern int _iop_cache_mode;
IOP_HIDDEN extern unsigned _iop_ncpu;
IOP_HIDDEN void _iop_cache_init(void);
/* IOPOOL_CACHE: IOP_CACHE_CPU, IOP_CACHE_THREAD, or -1 (unset: choose). */
IOP_HIDDEN int _iop_opt_cache(void);
/* A pool's slots (all closed), and whether it uses them. */
IOP_HIDDEN int _iop_cpu_pool_init(struct iop_pool *pool, uint32_t cache_size, uint64_t limit);
IOP_HIDDEN void _iop_cpu_pool_fini(struct iop_pool *pool);
/* The slow paths of the per-CPU mode. Each returns 1 when the caller must
 * use the per-thread path instead (no rseq on this thread, no memory for a
 * slot, the pool closing), else 0; an allocation stores NULL with errno
 * when no memory could be had. Objects are not accounted for. */
IOP_HIDDEN int _iop_cpu_alloc(struct iop_pool *pool, bool grow, void **objp);
IOP_HIDDEN int _iop_cpu_free(struct iop_pool *pool, void *obj);
IOP_HIDDEN int _iop_cpu_alloc_bulk(struct iop_pool *pool, void **objs, unsigned n, unsigned *got);
IOP_HIDDEN int _iop_cpu_free_bulk(struct iop_pool *pool, void *const *objs, unsigned n);
/* Drain every CPU's slot of the pool into the depot (fencing the CPUs),
 * or only the slots that served no allocation since the last such pass
 * (decay), or close them for good (destroy). Returns the objects moved. */
IOP_HIDDEN uint64_t _iop_cpu_drain(struct iop_pool *pool);
IOP_HIDDEN uint64_t _iop_cpu_drain_idle(struct iop_pool *pool);
IOP_HIDDEN void _iop_cpu_close(struct iop_pool *pool);
/* A bounded pool's waiters hold every slot closed (on) or no longer (off):
 * slots do not open while held; turning it on closes and drains the open
 * ones. Returns the objects moved to the depot. Takes cpu_lock. */
IOP_HIDDEN uint64_t _iop_cpu_hold(struct iop_pool *pool, bool on);
/* Objects cached in the pool's CPU slots and the allocations they served
 * (added to *cached and *allocs); a snapshot. */
IOP_HIDDEN void _iop_cpu_sum(struct iop_pool *pool, uint64_t *cached, uint64_t *allocs);
/* fn(pool, obj, arg) for every object in a CPU slot (audits). */
IOP_HIDDEN void _iop_cpu_for_each_obj(struct iop_pool *pool, void (*fn)(struct iop_pool *, void *, void *),
				      void *arg);
/* Hold off drains (shrink, reclaim, decay on other threads) while an audit
 * walks the slots and the depot: a drain moves a slot's objects to the
 * depot before it clears the slot's count. Taken before the pool's lock. */
IOP_HIDDEN void _iop_cpu_drains_hold(struct iop_pool *pool);
IOP_HIDDEN void _iop_cpu_drains_release(struct iop_pool *pool);

/* Threads that hold a slot of a bounded pool (never the inline path: the
 * slot is hidden) and other threads that take its objects meet in a
 * handshake without a lock on the owner's side (Dekker's): the owner raises
 * tc->busy, passes a full fence (the atomic operation on the pool's
 * in-flight count), and then backs off if tc->steal is set; a thief raises
 * tc->steal, fences, and takes the slot's objects only once tc->busy is 0.
 * busy counts nesting (a hook may call the pool again on the same thread).
 * The owner's side: */
static inline void _iop_slot_raise(struct iop_tcache *tc)
{
	ASTORE(&tc->busy, tc->busy + 1);
}
/* The same, and a full fence (a seq_cst read-modify-write: ThreadSanitizer
 * does not model atomic_thread_fence). */
static inline void _iop_slot_raise_fenced(struct iop_tcache *tc)
{
	__atomic_fetch_add(&tc->busy, 1u, __ATOMIC_SEQ_CST);
}
/* After the fence: wait while a thief holds the slot. */
IOP_HIDDEN void _iop_slot_settle(struct iop_tcache *tc);
static inline void _iop_slot_lower(struct iop_tcache *tc)
{
	__atomic_store_n(&tc->busy, tc->busy - 1, __ATOMIC_RELEASE);
}
/* The x86 lock prefix is a full fence already; elsewhere a relaxed store
 * followed by a seq_cst read-modify-write does not order the store before
 * later loads. */
#if defined(__x86_64__) || defined(__i386__)
#define IOP_FENCE_AFTER_RMW() __asm__ volatile("" ::: "memory")
#else
#define IOP_FENCE_AFTER_RMW() atomic_thread_fence(memory_order_seq_cst)
#endif

/* Pop one object from the slot, refilling it from the depot and (when grow)
 * from the slab; NULL when there is none (errno from the slab). No
 * statistics, no checked-mode or ASan bookkeeping. Without grow nothing
 * waits for a lock or enters the kernel. */
IOP_HIDDEN void *_iop_slot_pop(struct iop_pool *pool, struct iop_tcache *tc, bool grow);
/* Push one object (already accounted for) onto the slot. */
IOP_HIDDEN void _iop_slot_push(struct iop_pool *pool, struct iop_tcache *tc, void *obj);
/* One object from the depot or the slab, for a thread without a slot. */
IOP_HIDDEN void *_iop_depot_or_slab_get(struct iop_pool *pool, bool grow);
/* Move the objects cached by every thread (the caller included) into the
 * depot, taking each slot by the handshake; slots whose owner stays busy
 * are skipped. Returns the objects moved. Takes the registry lock. */
IOP_HIDDEN uint64_t _iop_scavenge(struct iop_pool *pool);
/* The same for one slot (registry locked): false if its owner stayed busy. */
IOP_HIDDEN bool _iop_slot_steal(struct iop_pool *pool, struct iop_tcache *tc);
/* Destroy of a bounded pool: steal the slot (waiting out an owner still on
 * its way out of a refused call) and reset it, so that the pool given this
 * id next starts without the old one's counts. Registry locked. */
IOP_HIDDEN void _iop_slot_retire(struct iop_pool *pool, struct iop_tcache *tc, void *unused);

/* bound.c: the bounded slow paths (every call of a bounded pool lands here). */
/* limit and the throttle thresholds already checked by iop_pool_create(). */
IOP_HIDDEN int _iop_bound_init(struct iop_pool *pool, uint64_t limit, uint32_t on_pct, uint32_t off_pct);
/* The CLOCK_MONOTONIC time timeout_ns from now (0 for <= 0, INT64_MAX for
 * IOP_FOREVER). */
IOP_HIDDEN int64_t _iop_deadline(int64_t timeout_ns);
IOP_HIDDEN void _iop_bound_free_memory(struct iop_pool *pool);
IOP_HIDDEN int _iop_bounded_alloc(struct iop_pool *pool, void **objp, unsigned how, int64_t deadline);
IOP_HIDDEN void _iop_bounded_free(struct iop_pool *pool, void *obj);
/* A per-thread-mode bulk free of objs[0..n) (NULL entries skipped, every
 * other one past the owner check): checked mode checks all before any is
 * freed; one subtraction from the in-flight count for the whole call. */
IOP_HIDDEN void _iop_bounded_free_bulk(struct iop_pool *pool, void *const *objs, unsigned n);
/* Up to n objects (fewer at the limit, errno set); frees of a bounded pool
 * in the per-CPU mode go through the per-CPU bulk path, then wake waiters
 * (_iop_bound_kick) from the depot. */
IOP_HIDDEN unsigned _iop_bounded_alloc_bulk(struct iop_pool *pool, void **objs, unsigned n);
IOP_HIDDEN void _iop_bound_kick(struct iop_pool *pool);
/* iop_alloc_bulk_ex()'s objects after the first: up to n to be had at once
 * in the mode how (see the header). Handed out and counted; no failure is
 * counted. */
IOP_HIDDEN unsigned _iop_bounded_take_more(struct iop_pool *pool, void **objs, unsigned n, unsigned how);
/* Wake every waiter with -ESHUTDOWN, refuse later allocations, and wait
 * until no caller is inside a wait. */
IOP_HIDDEN void _iop_bound_shutdown(struct iop_pool *pool);
IOP_HIDDEN void _iop_bound_stats(struct iop_pool *pool, struct iop_pool_stats *s);

/* ---- worker.c: refill workers, decay, shrink ----------------------------- */

/* Why a slow path woke the worker (statistics). */
enum { IOP_WAKE_LOW, IOP_WAKE_EMPTY, IOP_WAKE_FAIL };
IOP_HIDDEN void _iop_worker_kick(struct iop_pool *pool, unsigned d, int why);
/* Ask domain d's worker to refill the pool's reserve: cheap and racy, rate
 * limited, never blocks; a lost wake-up costs at most one worker period. */
static inline void _iop_worker_wake(struct iop_pool *pool, unsigned d, int why)
{
	if (pool->reserve_low)
		_iop_worker_kick(pool, d, why);
}
/* A pool with a reserve or decay starts using the workers (starting them)
 * and stops (waiting for a pass on it to end; the last pool stops and joins
 * them). */
IOP_HIDDEN void _iop_worker_attach(struct iop_pool *pool);
IOP_HIDDEN void _iop_worker_detach(struct iop_pool *pool);
/* A new pool with a reserve: its workers fill it now (after creation, once
 * a pass may take the pool), not up to a period later. May wait for a
 * worker's mutex. */
IOP_HIDDEN void _iop_worker_fill(struct iop_pool *pool);
/* A slot the worker asked to trim (tc->trim, unbounded pools in the
 * per-thread mode): its owner gives back its previous magazine on its
 * next call. */
IOP_HIDDEN void _iop_slot_trim(struct iop_pool *pool, struct iop_tcache *tc);

/* ---- pool.c --------------------------------------------------------------- */

/* iop_pool_create(); heap_class: one of the heap's size classes, whose
 * objects sit exactly one class size apart (no memcheck gap, vg.h). */
IOP_HIDDEN struct iop_pool *_iop_pool_make(const struct iop_pool_params *params, bool heap_class);

/* ---- heap.c and profile.c -------------------------------------------------- */

/* The counters (struct iop__prof_counter), each thread's table
 * (iop__prof_table) and the heap's site arrays (iop__map_sites) are in
 * inline.h: the IOP_PROFILE allocation and every heap free count inline. */
/* The rest of _iop_profile_count(): a site's first use, a thread's first
 * call, a site past the table. */
IOP_HIDDEN void _iop_profile_count_slow(struct iop__site *site, int64_t bytes);
/* The site's id (registering it at its first use), 0 when it has none
 * (past a million sites: its class blocks go uncounted). */
IOP_HIDDEN uint32_t _iop_profile_site_id(struct iop__site *site);
/* The site of an id that _iop_profile_site_id() returned. */
IOP_HIDDEN struct iop__site *_iop_profile_site_of(uint32_t id);

#define _iop_prof_add iop__prof_add

/* Count a profiled block of `bytes` at its site: +bytes on allocation,
 * -bytes on free (live allocations move by one either way). Two loads and
 * two stores to the thread's own table; no atomic read-modify-write. */
static inline void _iop_profile_count(struct iop__site *site, int64_t bytes)
{
	uint32_t id = ALOAD(&site->id);
	struct iop__prof_counter *t = iop__prof_table;
	if (unlikely(!t || id - 1 >= IOP_PROFILE_SITES - 1)) {
		_iop_profile_count_slow(site, bytes);
		return;
	}
	_iop_prof_add(&t[id].bytes, bytes);
	_iop_prof_add(&t[id].calls, bytes < 0 ? -1 : 1);
}

/* ---- stats.c ------------------------------------------------------------- */

/* The chunks of a pool, copied under its lock, whose residency is measured
 * (mincore, one system call per chunk) once no lock is held. */
struct iop_resident {
	char **bases;
	size_t n, chunk_size;
};
/* iop_pool_stats() with the registry lock already held: every field of
 * *out but bytes_resident is written (out->struct_size is set to sizeof);
 * *res gets the chunks for _iop_resident_bytes(), which the caller runs
 * after dropping the registry lock, so that no thread's first call of a
 * pool waits for the system calls. */
IOP_HIDDEN void _iop_pool_stats_locked(struct iop_pool *pool, struct iop_pool_stats *out,
				       struct iop_resident *res);
/* Bytes of res's chunks in memory now (0 when the copy failed); frees the
 * copy. Call it with no lock held; a chunk unmapped meanwhile counts
 * nothing. */
IOP_HIDDEN uint64_t _iop_resident_bytes(struct iop_resident *res);

/* ---- fork.c: pthread_atfork handlers ------------------------------------- */

/*
 * fork() takes every iopool lock in one order before the fork and lets go
 * of them after it, in the parent by unlocking, in the child by making
 * them anew (the child has one thread; condition variables other threads
 * waited on are made anew too). The order, outermost first (each module's
 * own comment says why its lock sits where it does):
 *
 *    1 heap_lock           heap.c     held while a size class is created
 *    2 pub.ctl             publish.c  held through a first update
 *    3 wk_ctl              worker.c   held while workers are joined
 *    4 registry            registry.c
 *    5 per pool, by id:    cpu_lock (ccache.c), lock (depot and slab),
 *                          bound->wlock (bound.c)
 *    6 wk_lock             worker.c
 *    7 each worker's mu    worker.c
 *    8 pub.lock            publish.c
 *    9 cache_lock          heap.c     large blocks kept for reuse
 *   10 prof_lock           profile.c
 *
 * Each module's _iop_*_atfork(phase) takes (IOP_FORK_PREPARE), releases
 * (IOP_FORK_PARENT) or makes anew (IOP_FORK_CHILD) its own; fork.c calls
 * them in this order and the other two phases in the reverse one.
 */
enum { IOP_FORK_PREPARE, IOP_FORK_PARENT, IOP_FORK_CHILD };
IOP_HIDDEN void _iop_heap_atfork(int phase, bool leaf);
IOP_HIDDEN void _iop_publish_atfork(int phase, bool leaf);
IOP_HIDDEN void _iop_worker_atfork(int phase, bool leaf);
IOP_HIDDEN void _iop_registry_atfork(int phase);
IOP_HIDDEN void _iop_pool_atfork(struct iop_pool *pool, int phase);
IOP_HIDDEN void _iop_cpu_atfork(struct iop_pool *pool, int phase);
IOP_HIDDEN void _iop_bound_atfork(struct iop_pool *pool, int phase);
IOP_HIDDEN void _iop_profile_atfork(int phase);
/* The child, after its locks are new (single-threaded, locks taken as
 * usual): the threads that did not come along are forgotten, their
 * per-thread caches' objects go to the depot (registry.c), and the pool's
 * state that named them is reset. */
IOP_HIDDEN void _iop_registry_forget_threads(void);
IOP_HIDDEN void _iop_tcache_forget(struct iop_pool *pool, struct iop_tcache *tc);
IOP_HIDDEN void _iop_worker_fork_pool(struct iop_pool *pool);
/* Checked pools: objects that were between a cache and the caller on a
 * thread that did not come along (neither marked in flight nor anywhere)
 * go back to their chunks. Returns the objects in flight (what the audit
 * derives); registry locked. */
IOP_HIDDEN uint64_t _iop_pool_fork_recover(struct iop_pool *pool, bool recover);
IOP_HIDDEN void _iop_bound_fork_in_flight(struct iop_pool *pool, uint64_t in_flight);
/* Set in a child until its first call that may block restarts the refill
 * workers and the publisher (_iop_fork_resume). */
IOP_HIDDEN extern _Atomic int _iop_forked;
IOP_HIDDEN void _iop_fork_resume_slow(void);
static inline void _iop_fork_resume(void)
{
	if (unlikely(atomic_load_explicit(&_iop_forked, memory_order_relaxed)))
		_iop_fork_resume_slow();
}
IOP_HIDDEN void _iop_worker_resume(void);
IOP_HIDDEN void _iop_publish_resume(void);

/* ---- publish.c ----------------------------------------------------------- */

/* Start publishing if IOPOOL_PUBLISH asks for it; checked once per process,
 * at the end of the first successful iop_pool_create(). */
IOP_HIDDEN void _iop_publish_autostart(void);

#endif /* IOP_INTERNAL_H */
