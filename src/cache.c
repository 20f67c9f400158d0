/*
 * Thread cache: two magazines per pool per thread, the fast paths, and the
 * registry of threads that hold caches.
 *
 * Each thread has an array of cache slots in static TLS, indexed by pool id,
 * so the fast path finds its slot with one TLS-relative address computation
 * and no lookup. Slots are set up lazily on a thread's first slow-path call
 * for a pool; a set-up thread is on the registry list, so pool destruction,
 * statistics and thread exit can reach every slot.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* initial-exec: the slot is found at a fixed offset from the thread pointer
 * (no __tls_get_addr call); the price is that the library must be loaded at
 * program start, not dlopen()ed later (README, Limits). Declared in iopool.h
 * for the inline fast paths. */
__thread struct iop__tcache iop__tls[IOP_MAX_POOLS] __attribute__((tls_model("initial-exec"), aligned(64)));

struct iop_thread {
	struct iop_thread *next, *prev;
	struct iop__tcache *caches;
	bool registered;
	bool exited;   /* its exit flush ran: no cache from now on */
};
static __thread struct iop_thread tls_thread __attribute__((tls_model("initial-exec")));

static pthread_mutex_t registry = PTHREAD_MUTEX_INITIALIZER;
static struct iop_thread *threads;            /* registered threads */
static struct iop_pool *pools[IOP_MAX_POOLS]; /* by id */
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

void _iop_registry_lock(void)
{
	pthread_mutex_lock(&registry);
}

void _iop_registry_unlock(void)
{
	pthread_mutex_unlock(&registry);
}

int _iop_pool_register(struct iop_pool *pool)
{
	for (uint32_t id = 0; id < IOP_MAX_POOLS; id++) {
		if (!pools[id]) {
			pools[id] = pool;
			pool->id = id;
			pool->hot.tc_off = id * (uint32_t)sizeof(struct iop__tcache);
			return 0;
		}
	}
	return -ENOSPC;
}

void _iop_pool_unregister(struct iop_pool *pool)
{
	pools[pool->id] = NULL;
}

void _iop_for_each_pool(void (*fn)(struct iop_pool *, void *), void *arg)
{
	for (uint32_t id = 0; id < IOP_MAX_POOLS; id++)
		if (pools[id])
			fn(pools[id], arg);
}

struct iop_pool *_iop_pool_by_id(uint32_t id)
{
	return id < IOP_MAX_POOLS ? pools[id] : NULL;
}

void _iop_for_each_tcache(struct iop_pool *pool,
			  void (*fn)(struct iop_pool *, struct iop__tcache *, void *), void *arg)
{
	for (struct iop_thread *t = threads; t; t = t->next) {
		struct iop__tcache *tc = &t->caches[pool->id];
		if (tc->ready)
			fn(pool, tc, arg);
	}
}

/* Give both of a slot's magazines to the depot (the slot's fields are left
 * for the caller to reset). */
static void slot_to_depot(struct iop_pool *pool, struct iop__tcache *tc)
{
	pthread_mutex_lock(&pool->lock);
	if (tc->objs) {
		TC_LOADED(tc)->count = ALOAD(&tc->count) + ALOAD(&tc->ccount);
		_iop_depot_put(pool, TC_LOADED(tc));
	}
	if (tc->prev) {
		TC_PREV(tc)->count = ALOAD(&tc->prev_count);
		_iop_depot_put(pool, tc->prev);
	}
	pthread_mutex_unlock(&pool->lock);
}

void _iop_tcache_drain(struct iop_pool *pool, struct iop__tcache *tc, void *unused)
{
	(void)unused;
	slot_to_depot(pool, tc);
	COUNT(&pool->alloc_fast, ALOAD(&tc->alloc_fast));
	/* Everyone who reads other threads' slots holds the registry lock, as
	 * we do. */
	memset(tc, 0, sizeof(*tc));
}

/* Runs at thread exit (a pthread key destructor): nothing stays stranded. */
static void thread_exit(void *arg)
{
	struct iop_thread *t = arg;
	_iop_registry_lock();
	for (uint32_t id = 0; id < IOP_MAX_POOLS; id++) {
		if (t->caches[id].ready && pools[id])
			_iop_tcache_drain(pools[id], &t->caches[id], NULL);
	}
	if (t->prev)
		t->prev->next = t->next;
	else
		threads = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->registered = false;
	/* Other key destructors may still use iopool on this thread, also in
	 * glibc's last destructor round, after which nothing would unlink the
	 * thread again: from here on its calls bypass the cache. */
	t->exited = true;
	_iop_registry_unlock();
}

static void make_exit_key(void)
{
	if (pthread_key_create(&exit_key, thread_exit) != 0) {
		fprintf(stderr, "iopool: cannot create the thread-exit key; "
				"exiting threads would strand their cached objects\n");
		abort();
	}
}

/* First slow-path call of this thread for this pool. False when the thread
 * is exiting and must not cache (its calls then go to the depot and slab
 * directly). */
static IOP_COLD bool tcache_setup(struct iop__tcache *tc)
{
	if (tls_thread.exited)
		return false;
	pthread_once(&exit_key_once, make_exit_key);
	_iop_registry_lock();
	if (!tls_thread.registered) {
		tls_thread.caches = iop__tls;
		tls_thread.prev = NULL;
		tls_thread.next = threads;
		if (threads)
			threads->prev = &tls_thread;
		threads = &tls_thread;
		tls_thread.registered = true;
	}
	tc->ready = 1;
	_iop_registry_unlock();
	pthread_setspecific(exit_key, &tls_thread);
	return true;
}

void iop_thread_flush(void)
{
	if (!tls_thread.registered)
		return;
	_iop_registry_lock();
	for (uint32_t id = 0; id < IOP_MAX_POOLS; id++) {
		if (iop__tls[id].ready && pools[id])
			_iop_tcache_drain(pools[id], &iop__tls[id], NULL);
	}
	_iop_registry_unlock();
}

/* ---- magazine exchange (Bonwick) ------------------------------------------ */

static inline void set_loaded(struct iop__tcache *tc, struct iop_mag *m, uint32_t count)
{
	tc->objs = m ? m->obj : NULL;
	ASTORE(&tc->count, count);
}

static void swap_mags(struct iop__tcache *tc)
{
	struct iop_mag *m = TC_PREV(tc);
	uint32_t n = ALOAD(&tc->prev_count);
	tc->prev = TC_LOADED(tc);
	ASTORE(&tc->prev_count, ALOAD(&tc->count));
	set_loaded(tc, m, n);
}

/*
 * Checked and bounded pools keep count and cap at zero so that the inline
 * path always calls the slow path; these move the real count in and out
 * around the same magazine code.
 */
static inline bool hidden(const struct iop_pool *pool)
{
	return pool->checked || pool->bound;
}

static void unhide(struct iop_pool *pool, struct iop__tcache *tc)
{
	/* The real count is in one of the two (both are 0 in a fresh or
	 * flushed slot), so adding makes this idempotent. */
	ASTORE(&tc->count, ALOAD(&tc->count) + ALOAD(&tc->ccount));
	ASTORE(&tc->ccount, 0);
	tc->cap = pool->mag_cap;
}

static void hide(struct iop__tcache *tc)
{
	ASTORE(&tc->ccount, ALOAD(&tc->count));
	ASTORE(&tc->count, 0);
	tc->cap = 0;
}

/* The pool lock. Without grow, never wait for it: a few tries, then give
 * up (a contended mutex would sleep in the kernel). */
static bool lock_pool(struct iop_pool *pool, bool grow)
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
static struct iop_mag *take_full(struct iop_pool *pool, unsigned d, bool grow)
{
	struct iop_mag *m = _iop_depot_take_full(pool, d, !grow);
	if (pool->depot.dom[d].objs < pool->reserve_low)
		_iop_worker_wake(pool, d, m ? IOP_WAKE_LOW : IOP_WAKE_EMPTY);
	return m;
}

/* The loaded magazine is empty: make it hold objects. Returns how many it
 * holds, 0 when no memory could be had. Without grow, only the depot serves
 * (no chunk is mapped, no lock waited for). */
static unsigned refill(struct iop_pool *pool, struct iop__tcache *tc, bool grow)
{
	/* The worker asked for the previous magazine (decay); it waits for
	 * a call that may take the lock. */
	if (unlikely(ALOAD(&TC_TRIM(tc))) && grow)
		_iop_slot_trim(pool, tc);
	if (tc->prev && ALOAD(&tc->prev_count)) {
		swap_mags(tc);
		return ALOAD(&tc->count);
	}
	unsigned d = _iop_domain_here();
	if (!lock_pool(pool, grow))
		return 0;
	struct iop_mag *m = take_full(pool, d, grow);
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
		tc->cap = 0; /* and close the inline push until it is back */
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
			if (tc->objs)
				_iop_depot_put(pool, m);
			else
				set_loaded(tc, m, m->count);
		}
	}
	pthread_mutex_unlock(&pool->lock);
	/* A flush from a hook resets the slot; set it up again so that its
	 * magazine stays visible to statistics, destroy and thread exit. (An
	 * exited thread never gets here: its calls skip the cache.) */
	if (!tc->ready)
		(void)tcache_setup(tc);
	/* A checked call from a hook hides the count again when it returns,
	 * and a flush resets the slot; our caller works on the real count. */
	if (hidden(pool))
		unhide(pool, tc);
	return ALOAD(&tc->count);
}

/* The loaded magazine is full (or missing): make room. False when no empty
 * magazine could be had. */
static bool spill(struct iop_pool *pool, struct iop__tcache *tc)
{
	if (unlikely(ALOAD(&TC_TRIM(tc))))
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

static void push_or_spill(struct iop_pool *pool, struct iop__tcache *tc, void *obj)
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

/* Open the inline path, which needs a loaded magazine to push into. */
static void open_fast(struct iop_pool *pool, struct iop__tcache *tc)
{
	tc->cap = tc->objs ? pool->mag_cap : 0;
}

/* ---- a thread past its exit flush: no cache ---------------------------------- */

void *_iop_depot_or_slab_get(struct iop_pool *pool, bool grow)
{
	void *p = NULL;
	unsigned d = _iop_domain_here();
	if (!lock_pool(pool, grow))
		return NULL;
	struct iop_mag *m = take_full(pool, d, grow);
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
	_iop_on_free(pool, obj);
	pthread_mutex_lock(&pool->lock);
	_iop_slab_put(pool, &obj, 1);
	pthread_mutex_unlock(&pool->lock);
	COUNT(&pool->free_slow, 1);
}

/* ---- the slot, for the slow paths here and in bound.c ------------------- */

struct iop__tcache *_iop_my_slot(struct iop_pool *pool)
{
	struct iop__tcache *tc = iop__my_tcache(pool);
	if (!tc->ready && !tcache_setup(tc))
		return NULL;
	return tc;
}

void *_iop_slot_pop(struct iop_pool *pool, struct iop__tcache *tc, bool grow)
{
	void *p = NULL;
	if (hidden(pool))
		unhide(pool, tc);
	if (ALOAD(&tc->count) || refill(pool, tc, grow)) {
		uint32_t n = ALOAD(&tc->count) - 1;
		p = tc->objs[n];
		ASTORE(&tc->count, n);
	}
	if (hidden(pool))
		hide(tc);
	else
		open_fast(pool, tc);
	return p;
}

void _iop_slot_push(struct iop_pool *pool, struct iop__tcache *tc, void *obj)
{
	if (hidden(pool)) {
		unhide(pool, tc);
		push_or_spill(pool, tc, obj);
		hide(tc);
	} else {
		push_or_spill(pool, tc, obj);
		open_fast(pool, tc);
	}
}

void _iop_slot_trim(struct iop_pool *pool, struct iop__tcache *tc)
{
	ASTORE(&TC_TRIM(tc), 0);
	if (!tc->prev || !ALOAD(&tc->prev_count))
		return;
	pthread_mutex_lock(&pool->lock);
	TC_PREV(tc)->count = ALOAD(&tc->prev_count);
	_iop_depot_put(pool, TC_PREV(tc));
	pthread_mutex_unlock(&pool->lock);
	tc->prev = NULL;
	ASTORE(&tc->prev_count, 0);
	COUNT(&pool->trims, 1);
}

void _iop_slot_settle(struct iop__tcache *tc)
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

bool _iop_slot_steal(struct iop_pool *pool, struct iop__tcache *tc)
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
	ASTORE(&tc->ccount, 0);
	/* cap is 0 already (a bounded slot is hidden between calls); the
	 * owner's inline code reads it, so it is not written here. */
	__atomic_store_n(&tc->steal, 0u, __ATOMIC_RELEASE);
	return true;
}

uint64_t _iop_scavenge(struct iop_pool *pool)
{
	uint64_t moved = 0;
	_iop_registry_lock();
	for (struct iop_thread *t = threads; t; t = t->next) {
		struct iop__tcache *tc = &t->caches[pool->id];
		uint64_t n = _iop_tcache_objs(tc);
		if (tc->ready && n && _iop_slot_steal(pool, tc))
			moved += n;
	}
	_iop_registry_unlock();
	return moved;
}

/* ---- slow paths (called by the inline code in iopool.h) -------------------- */

static void *count_alloc(struct iop_pool *pool, void *p)
{
	if (p) {
		_iop_on_alloc(pool, p);
		/* Counted once it is known: the fast frees are derived from
		 * it. */
		COUNT(&pool->alloc_slow, 1);
	} else {
		COUNT(&pool->alloc_fail, 1); /* errno: ENOMEM, or the map hook's */
		_iop_worker_wake(pool, _iop_domain_here(), IOP_WAKE_FAIL);
	}
	return p;
}

/* An unbounded pool's allocation off the inline path; without grow, from
 * the thread's cache and the depot only. */
static void *cached_alloc(struct iop_pool *pool, bool grow)
{
	struct iop__tcache *tc = _iop_my_slot(pool);
	return count_alloc(pool, tc ? _iop_slot_pop(pool, tc, grow) : _iop_depot_or_slab_get(pool, grow));
}

void *iop__alloc_slow(iop_pool_t *pool)
{
	if (pool->bound) {
		void *p;
		int rc = _iop_bounded_alloc(pool, &p, 0, 0);
		if (rc)
			errno = -rc;
		return p;
	}
	return cached_alloc(pool, true);
}

int iop_alloc_ex(iop_pool_t *pool, void **objp, unsigned how, int64_t timeout_ns)
{
	if (objp)
		*objp = NULL;
	if (!pool || !objp || (how & ~(IOP_NOWAIT | IOP_WAIT | IOP_ABSTIME)) ||
	    ((how & IOP_NOWAIT) && (how & (IOP_WAIT | IOP_ABSTIME))) || ((how & IOP_ABSTIME) && !(how & IOP_WAIT)) ||
	    ((how & IOP_WAIT) && !(how & IOP_ABSTIME) && timeout_ns < 0))
		return -EINVAL;
	if (pool->bound) {
		int64_t deadline = 0;
		if (how & IOP_WAIT)
			deadline = (how & IOP_ABSTIME) ? timeout_ns : _iop_deadline(timeout_ns);
		return _iop_bounded_alloc(pool, objp, how, deadline);
	}
	void *p;
	if (how & IOP_NOWAIT) {
		p = cached_alloc(pool, false);
		if (!p) {
			COUNT(&pool->fail_nowait, 1);
			return -ENOMEM;
		}
	} else {
		int saved = errno;
		p = iop__alloc_inline(pool);
		if (!p) {
			int err = errno;
			errno = saved;
			COUNT(how & IOP_WAIT ? &pool->fail_wait : &pool->fail_default, 1);
			return -err;
		}
	}
	*objp = p;
	return 0;
}

/* obj has passed the owner check. */
void iop__free_slow(iop_pool_t *pool, void *obj)
{
	if (pool->bound) {
		_iop_bounded_free(pool, obj);
		return;
	}
	struct iop__tcache *tc = _iop_my_slot(pool);
	if (!tc) {
		uncached_free(pool, obj);
		return;
	}
	COUNT(&pool->free_slow, 1);
	_iop_on_free(pool, obj);
	_iop_slot_push(pool, tc, obj);
}

unsigned iop__alloc_bulk_slow(iop_pool_t *pool, void **objs, unsigned n)
{
	if (n == 0)
		return 0;
	struct iop__tcache *tc = pool->bound ? NULL : _iop_my_slot(pool);
	if (!tc) {
		/* A bounded pool, or a thread without a cache: one by one. */
		unsigned i = 0;
		while (i < n && (objs[i] = iop__alloc_slow(pool)) != NULL)
			i++;
		return i;
	}
	if (pool->checked)
		unhide(pool, tc);
	unsigned got = 0;
	while (got < n) {
		uint32_t c = ALOAD(&tc->count);
		if (c == 0 && (c = refill(pool, tc, true)) == 0)
			break;
		uint32_t take = c < n - got ? c : n - got;
		c -= take;
		memcpy(objs + got, tc->objs + c, take * sizeof(void *));
		ASTORE(&tc->count, c);
		got += take;
	}
	COUNT(&pool->alloc_slow, got);
	if (pool->checked)
		hide(tc);
	else
		open_fast(pool, tc);
	for (unsigned i = 0; i < got; i++)
		_iop_on_alloc(pool, objs[i]);
	if (got < n)
		COUNT(&pool->alloc_fail, 1); /* errno: ENOMEM, or the map hook's */
	return got;
}

/* Called with objects the inline code has not vouched for: check them all
 * before freeing any. */
void iop__free_bulk_slow(iop_pool_t *pool, void *const *objs, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (objs[i] && !iop__owned(pool, objs[i]))
			iop__bad_free(pool, objs[i]);
	struct iop__tcache *tc = pool->bound ? NULL : _iop_my_slot(pool);
	if (!tc) {
		/* A bounded pool, or a thread without a cache: one by one. */
		for (unsigned i = 0; i < n; i++)
			if (objs[i])
				iop__free_slow(pool, objs[i]);
		return;
	}
	/* Checked mode checks every object (double frees inside the array
	 * too) before any is freed. */
	for (unsigned i = 0; i < n; i++)
		if (objs[i])
			_iop_on_free(pool, objs[i]);
	if (pool->checked)
		unhide(pool, tc);
	unsigned freed = 0;
	for (unsigned i = 0; i < n; i++) {
		if (!objs[i])
			continue;
		push_or_spill(pool, tc, objs[i]);
		freed++;
	}
	COUNT(&pool->free_slow, freed);
	if (pool->checked)
		hide(tc);
	else
		open_fast(pool, tc);
}

/* ---- out-of-line entry points ------------------------------------------------
 *
 * For callers built with IOP_NO_INLINE, other languages, and dlsym(): the same
 * inline code, compiled once here.
 */

void *iop_alloc(iop_pool_t *pool)
{
	return iop__alloc_inline(pool);
}

void iop_free(iop_pool_t *pool, void *obj)
{
	iop__free_inline(pool, obj);
}

unsigned iop_alloc_bulk(iop_pool_t *pool, void **objs, unsigned n)
{
	return iop__alloc_bulk_inline(pool, objs, n);
}

void iop_free_bulk(iop_pool_t *pool, void *const *objs, unsigned n)
{
	iop__free_bulk_inline(pool, objs, n);
}
