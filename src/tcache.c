/* SPDX-License-Identifier: MIT */
/*
 * Per-thread caches: two magazines per (thread, pool), exchanged whole with
 * the depot (Bonwick). They serve what the per-CPU caches (ccache.c) do not:
 * every pool when rseq is not registered or IOPOOL_CACHE=thread, checked and
 * bounded pools, and threads whose rseq registration failed. Nothing inline
 * reads them: every call that uses them is a library call, and the slots
 * are found through the registry (registry.c).
 *
 * Bounded pools: an idle thread's slot must be reachable by a waiter. The
 * owner and a thief meet in a handshake without a lock on the owner's side
 * (internal.h, _iop_slot_raise).
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static inline void set_loaded(struct iop_tcache *tc, struct iop_mag *m, uint32_t count);

/* Give both of a slot's magazines to the depot (the slot's fields are left
 * for the caller to reset). */
static void slot_to_depot(struct iop_pool *pool, struct iop_tcache *tc)
{
	pthread_mutex_lock(&pool->lock);
	if (tc->objs) {
		TC_LOADED(tc)->count = ALOAD(&tc->count);
		_iop_depot_put(pool, TC_LOADED(tc));
	}
	if (tc->prev) {
		TC_PREV(tc)->count = ALOAD(&tc->prev_count);
		_iop_depot_put(pool, tc->prev);
	}
	pthread_mutex_unlock(&pool->lock);
}

void _iop_tcache_drain(struct iop_pool *pool, struct iop_tcache *tc, void *unused)
{
	(void)unused;
	slot_to_depot(pool, tc);
	COUNT(&pool->alloc_fast, ALOAD(&tc->alloc_fast));
	/* Everyone who reads other threads' slots holds the registry lock, as
	 * we do. The handshake's words stay: a map hook that flushes runs
	 * inside a call of its own thread on the slot (busy counts it, and
	 * the call lowers it on return), and a thief may be waiting on it. */
	set_loaded(tc, NULL, 0);
	tc->prev = NULL;
	ASTORE(&tc->prev_count, 0);
	ASTORE(&tc->alloc_fast, 0);
	tc->ready = 0;
	ASTORE(&tc->trim, 0);
}

/* A slot of a thread that did not come along into a child of fork(): its
 * magazines go to the depot when the slot is whole; one caught in the
 * middle of a change (torn, or counts that do not fit) is dropped with
 * its objects, which the child never hands out. Registry locked. */
void _iop_tcache_forget(struct iop_pool *pool, struct iop_tcache *tc)
{
	uint32_t n = ALOAD(&tc->count), pn = ALOAD(&tc->prev_count);
	bool whole = !ALOAD(&tc->torn) && n <= pool->mag_cap && pn <= pool->mag_cap && (tc->objs || !n) &&
		     (tc->prev || !pn) && (!tc->prev || tc->prev != (void *)TC_LOADED(tc));
	if (whole) {
		_iop_tcache_drain(pool, tc, NULL);
		return;
	}
	COUNT(&pool->alloc_fast, ALOAD(&tc->alloc_fast));
	memset(tc, 0, sizeof(*tc));
}

/* ---- magazine exchange (Bonwick) ------------------------------------------ */

static inline void set_loaded(struct iop_tcache *tc, struct iop_mag *m, uint32_t count)
{
	tc->objs = m ? m->obj : NULL;
	tc->loaded = m;
	ASTORE(&tc->count, count);
}

/* A change of several of the slot's words made without a lock: a child
 * forked meanwhile sees `torn` and does not trust the slot. Compiler
 * barriers keep the stores in order; a fork copies this thread's stores
 * in program order (fork's own fences on the forking side). */
static inline void torn_begin(struct iop_tcache *tc)
{
	ASTORE(&tc->torn, 1);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
}

static inline void torn_end(struct iop_tcache *tc)
{
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	ASTORE(&tc->torn, 0);
}

static void swap_mags(struct iop_tcache *tc)
{
	struct iop_mag *m = TC_PREV(tc);
	uint32_t n = ALOAD(&tc->prev_count);
	torn_begin(tc);
	tc->prev = TC_LOADED(tc);
	ASTORE(&tc->prev_count, ALOAD(&tc->count));
	set_loaded(tc, m, n);
	torn_end(tc);
}

/* The pool lock. Without grow, never wait for it: a few tries, then give
 * up (a contended mutex would sleep in the kernel). */
bool _iop_pool_lock(struct iop_pool *pool, bool grow)
{
	if (grow) {
		pthread_mutex_lock(&pool->lock);
		return true;
	}
	for (int i = 0; i < 64; i++) {
		if (pthread_mutex_trylock(&pool->lock) == 0)
			return true;
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
	}
	return false;
}

/* A full magazine of domain d (without grow, of any domain rather than
 * none), waking d's worker when the depot is below its reserve. Pool
 * locked. */
struct iop_mag *_iop_cache_take_full(struct iop_pool *pool, unsigned d, bool grow)
{
	struct iop_mag *m = _iop_depot_take_full(pool, d, !grow);
	if (pool->depot.dom[d].objs < pool->reserve_low)
		_iop_worker_wake(pool, d, m ? IOP_WAKE_LOW : IOP_WAKE_EMPTY);
	return m;
}

unsigned _iop_take_objs(struct iop_pool *pool, unsigned d, bool grow, void **dst, unsigned n)
{
	unsigned got = _iop_depot_get_objs(pool, d, !grow, dst, n);
	if (pool->depot.dom[d].objs < pool->reserve_low)
		_iop_worker_wake(pool, d, got ? IOP_WAKE_LOW : IOP_WAKE_EMPTY);
	return got;
}

/* The loaded magazine is empty: make it hold objects. Returns how many it
 * holds, 0 when no memory could be had. Without grow, only the depot serves
 * (no chunk is mapped, no lock waited for). */
static unsigned reload(struct iop_pool *pool, struct iop_tcache *tc, bool grow)
{
	/* The worker asked for the previous magazine (decay); it waits for
	 * a call that may take the lock. */
	if (unlikely(ALOAD(&tc->trim)) && grow)
		_iop_slot_trim(pool, tc);
	if (tc->prev && ALOAD(&tc->prev_count)) {
		swap_mags(tc);
		return ALOAD(&tc->count);
	}
	unsigned d = _iop_domain_here();
	if (grow)
		_iop_fork_resume();
	if (!_iop_pool_lock(pool, grow))
		return 0;
	struct iop_mag *m = _iop_cache_take_full(pool, d, grow);
	if (m) {
		/* prev and loaded (if any) are both empty: loaded becomes
		 * prev, and the old prev goes back to the depot. */
		if (tc->prev) {
			TC_PREV(tc)->count = 0;
			_iop_depot_put(pool, TC_PREV(tc));
		}
		tc->prev = TC_LOADED(tc);
		ASTORE(&tc->prev_count, 0);
		set_loaded(tc, m, m->count);
	} else if (grow) {
		/* Fill a magazine detached from the slot: the fill drops the
		 * lock to map a chunk, and the map hook may call iopool on this
		 * thread (flush this slot, or allocate and load another
		 * magazine into it). */
		m = TC_LOADED(tc);
		set_loaded(tc, NULL, 0);
		if (!m)
			m = _iop_depot_take_empty(pool);
		if (m) {
			m->count = 0;
			if (_iop_depot_fill(pool, d, m) == 0) {
				/* No local memory to be had: another
				 * domain's will do. */
				struct iop_mag *o = _iop_depot_take_full(pool, d, true);
				if (o) {
					_iop_depot_put(pool, m);
					m = o;
				}
			}
			/* The hook may have loaded a magazine meanwhile:
			 * keep it if it holds objects, else ours serves. */
			if (tc->objs && ALOAD(&tc->count)) {
				_iop_depot_put(pool, m);
			} else {
				if (tc->objs) {
					TC_LOADED(tc)->count = 0;
					_iop_depot_put(pool, TC_LOADED(tc));
				}
				set_loaded(tc, m, m->count);
			}
		}
	}
	pthread_mutex_unlock(&pool->lock);
	/* A flush from a hook resets the slot; set it up again so that its
	 * magazine stays visible to statistics, destroy and thread exit. (An
	 * exited thread never gets here: its calls skip the cache.) */
	if (!tc->ready)
		_iop_slot_reready(tc);
	return ALOAD(&tc->count);
}

/* The loaded magazine is full (or missing): make room. False when no empty
 * magazine could be had. */
static bool spill(struct iop_pool *pool, struct iop_tcache *tc)
{
	if (unlikely(ALOAD(&tc->trim)))
		_iop_slot_trim(pool, tc);
	if (tc->objs && tc->prev && ALOAD(&tc->prev_count) == 0) {
		swap_mags(tc);
		return true;
	}
	pthread_mutex_lock(&pool->lock);
	if (tc->objs) {
		/* Both full: the older one goes to the depot. */
		if (tc->prev) {
			TC_PREV(tc)->count = ALOAD(&tc->prev_count);
			_iop_depot_put(pool, TC_PREV(tc));
		}
		tc->prev = TC_LOADED(tc);
		ASTORE(&tc->prev_count, ALOAD(&tc->count));
	}
	set_loaded(tc, _iop_depot_take_empty(pool), 0);
	pthread_mutex_unlock(&pool->lock);
	return tc->objs != NULL;
}

static void push_or_spill(struct iop_pool *pool, struct iop_tcache *tc, void *obj)
{
	uint32_t n = ALOAD(&tc->count);
	if (!tc->objs || n == pool->mag_cap) {
		if (!spill(pool, tc)) {
			/* No memory for a magazine: straight back to the slab. */
			pthread_mutex_lock(&pool->lock);
			_iop_slab_put(pool, &obj, 1);
			pthread_mutex_unlock(&pool->lock);
			return;
		}
		n = ALOAD(&tc->count);
	}
	tc->objs[n] = obj;
	ASTORE(&tc->count, n + 1);
}

/* ---- a thread past its exit flush: no cache ---------------------------------- */

void *_iop_depot_or_slab_get(struct iop_pool *pool, bool grow)
{
	void *p = NULL;
	unsigned d = _iop_domain_here();
	if (grow)
		_iop_fork_resume();
	if (!_iop_pool_lock(pool, grow))
		return NULL;
	struct iop_mag *m = _iop_cache_take_full(pool, d, grow);
	int status;
	if (!m && grow && _iop_slab_get_or_grow(pool, d, &p, 1, &status) == 0) {
		m = _iop_depot_take_full(pool, d, true);
		/* For the caller, when m is NULL too (as _iop_depot_fill). */
		errno = status == -ENOBUFS ? ENOMEM : -status;
	}
	if (m) {
		p = m->obj[--m->count];
		_iop_depot_put(pool, m);
	}
	pthread_mutex_unlock(&pool->lock);
	return p;
}

static void uncached_free(struct iop_pool *pool, void *obj)
{
	pthread_mutex_lock(&pool->lock);
	_iop_slab_put(pool, &obj, 1);
	pthread_mutex_unlock(&pool->lock);
	COUNT(&pool->free_slow, 1);
}

/* ---- the slot, for the slow paths here and in bound.c ------------------- */

void *_iop_slot_pop(struct iop_pool *pool, struct iop_tcache *tc, bool grow)
{
	void *p = NULL;
	if (ALOAD(&tc->count) || reload(pool, tc, grow)) {
		uint32_t n = ALOAD(&tc->count) - 1;
		p = tc->objs[n];
		_iop_vg_forget(&tc->objs[n], sizeof(void *));
		ASTORE(&tc->count, n);
	}
	return p;
}

void _iop_slot_push(struct iop_pool *pool, struct iop_tcache *tc, void *obj)
{
	push_or_spill(pool, tc, obj);
}

void _iop_slot_trim(struct iop_pool *pool, struct iop_tcache *tc)
{
	ASTORE(&tc->trim, 0);
	if (!tc->prev || !ALOAD(&tc->prev_count))
		return;
	torn_begin(tc);
	pthread_mutex_lock(&pool->lock);
	TC_PREV(tc)->count = ALOAD(&tc->prev_count);
	_iop_depot_put(pool, TC_PREV(tc));
	pthread_mutex_unlock(&pool->lock);
	tc->prev = NULL;
	ASTORE(&tc->prev_count, 0);
	torn_end(tc);
	COUNT(&pool->trims, 1);
}

void _iop_slot_settle(struct iop_tcache *tc)
{
	while (tc->busy == 1 && __atomic_load_n(&tc->steal, __ATOMIC_SEQ_CST)) {
		_iop_slot_lower(tc);
		while (__atomic_load_n(&tc->steal, __ATOMIC_ACQUIRE))
			sched_yield();
		_iop_slot_raise_fenced(tc);
	}
}

/* How long a thief waits for a busy owner before it skips the slot: the
 * owner is inside a call of a few hundred instructions, unless it was
 * preempted or runs a map hook; the waiter's next pass tries again. */
#define STEAL_SPINS 200

bool _iop_slot_steal(struct iop_pool *pool, struct iop_tcache *tc)
{
	__atomic_exchange_n(&tc->steal, 1u, __ATOMIC_SEQ_CST);
	for (int i = 0; __atomic_load_n(&tc->busy, __ATOMIC_SEQ_CST); i++) {
		if (i == STEAL_SPINS) {
			__atomic_store_n(&tc->steal, 0u, __ATOMIC_RELEASE);
			return false;
		}
		sched_yield();
	}
	slot_to_depot(pool, tc);
	set_loaded(tc, NULL, 0);
	tc->prev = NULL;
	ASTORE(&tc->prev_count, 0);
	__atomic_store_n(&tc->steal, 0u, __ATOMIC_RELEASE);
	return true;
}

void _iop_slot_retire(struct iop_pool *pool, struct iop_tcache *tc, void *unused)
{
	(void)unused;
	while (!_iop_slot_steal(pool, tc))
		sched_yield();
	/* busy and steal stay: they are the handshake's, and 0 again once
	 * the owner is out. */
	COUNT(&pool->alloc_fast, ALOAD(&tc->alloc_fast));
	ASTORE(&tc->alloc_fast, 0);
	ASTORE(&tc->trim, 0);
	tc->ready = 0;
}

static void steal_one(struct iop_pool *pool, struct iop_tcache *tc, void *arg)
{
	uint64_t n = _iop_tcache_objs(tc);
	if (n && _iop_slot_steal(pool, tc))
		*(uint64_t *)arg += n;
}

uint64_t _iop_scavenge(struct iop_pool *pool)
{
	uint64_t moved = 0;
	_iop_registry_lock();
	_iop_for_each_tcache(pool, steal_one, &moved);
	_iop_registry_unlock();
	return moved;
}

/* ---- the per-thread calls (cache.c dispatches to them) ------------------- */

/* An unbounded pool's allocation through the thread's slot; without grow,
 * from the slot and the depot only. Counts: served by the slot's loaded
 * magazine as it stood, alloc_fast (the slot's); otherwise alloc_slow. */
void *_iop_thread_alloc(struct iop_pool *pool, bool grow)
{
	struct iop_tcache *tc = _iop_my_slot(pool);
	if (!tc) {
		void *p = _iop_depot_or_slab_get(pool, grow);
		if (p)
			COUNT(&pool->alloc_slow, 1);
		return p;
	}
	if (likely(ALOAD(&tc->count))) {
		uint32_t n = ALOAD(&tc->count) - 1;
		void *p = tc->objs[n];
		_iop_vg_forget(&tc->objs[n], sizeof(void *));
		ASTORE(&tc->count, n);
		ASTORE(&tc->alloc_fast, tc->alloc_fast + 1);
		return p;
	}
	void *p = _iop_slot_pop(pool, tc, grow);
	if (p)
		COUNT(&pool->alloc_slow, 1);
	return p;
}

/* obj passed the owner check and the bookkeeping (checked mode, ASan). */
void _iop_thread_free(struct iop_pool *pool, void *obj)
{
	struct iop_tcache *tc = _iop_my_slot(pool);
	if (!tc) {
		uncached_free(pool, obj);
		return;
	}
	uint32_t n = ALOAD(&tc->count);
	if (likely(tc->objs && n < pool->mag_cap)) {
		tc->objs[n] = obj;
		ASTORE(&tc->count, n + 1);
		return;
	}
	COUNT(&pool->free_slow, 1);
	push_or_spill(pool, tc, obj);
}

unsigned _iop_thread_alloc_bulk(struct iop_pool *pool, void **objs, unsigned n)
{
	struct iop_tcache *tc = _iop_my_slot(pool);
	if (!tc) {
		unsigned i = 0;
		while (i < n && (objs[i] = _iop_thread_alloc(pool, true)) != NULL)
			i++;
		return i;
	}
	unsigned got = 0;
	while (got < n) {
		uint32_t c = ALOAD(&tc->count);
		if (c == 0 && (c = reload(pool, tc, true)) == 0)
			break;
		uint32_t take = c < n - got ? c : n - got;
		c -= take;
		memcpy(objs + got, tc->objs + c, take * sizeof(void *));
		_iop_vg_forget(tc->objs + c, take * sizeof(void *));
		ASTORE(&tc->count, c);
		got += take;
	}
	COUNT(&pool->alloc_slow, got);
	return got;
}

/* Every object passed the owner check and the bookkeeping; no NULLs. */
void _iop_thread_free_bulk(struct iop_pool *pool, void *const *objs, unsigned n)
{
	struct iop_tcache *tc = _iop_my_slot(pool);
	for (unsigned i = 0; i < n; i++) {
		if (tc)
			push_or_spill(pool, tc, objs[i]);
		else
			uncached_free(pool, objs[i]);
	}
	COUNT(&pool->free_slow, n);
}
