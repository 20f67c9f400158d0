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

void _iop_for_each_tcache(struct iop_pool *pool,
			  void (*fn)(struct iop_pool *, struct iop__tcache *, void *), void *arg)
{
	for (struct iop_thread *t = threads; t; t = t->next) {
		struct iop__tcache *tc = &t->caches[pool->id];
		if (tc->ready)
			fn(pool, tc, arg);
	}
}

void _iop_tcache_drain(struct iop_pool *pool, struct iop__tcache *tc, void *unused)
{
	(void)unused;
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
 * Checked pools keep count and cap at zero so that the inline path always
 * calls the slow path; these move the real count in and out around the same
 * magazine code.
 */
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

/* The loaded magazine is empty: make it hold objects. Returns how many it
 * holds, 0 when no memory could be had. */
static unsigned refill(struct iop_pool *pool, struct iop__tcache *tc)
{
	if (tc->prev && ALOAD(&tc->prev_count)) {
		swap_mags(tc);
		return ALOAD(&tc->count);
	}
	pthread_mutex_lock(&pool->lock);
	struct iop_mag *m = _iop_depot_take_full(pool);
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
	} else {
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
			_iop_depot_fill(pool, m);
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
	if (pool->checked)
		unhide(pool, tc);
	return ALOAD(&tc->count);
}

/* The loaded magazine is full (or missing): make room. False when no empty
 * magazine could be had. */
static bool spill(struct iop_pool *pool, struct iop__tcache *tc)
{
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

static void *uncached_alloc(struct iop_pool *pool)
{
	void *p = NULL;
	pthread_mutex_lock(&pool->lock);
	struct iop_mag *m = _iop_depot_take_full(pool);
	if (m) {
		p = m->obj[--m->count];
		_iop_depot_put(pool, m);
	} else {
		_iop_slab_get_or_grow(pool, &p, 1); /* errno on failure */
	}
	pthread_mutex_unlock(&pool->lock);
	if (!p) {
		COUNT(&pool->alloc_fail, 1);
		return NULL;
	}
	COUNT(&pool->alloc_slow, 1);
	if (pool->checked)
		_iop_checked_on_alloc(pool, p);
	else
		ASAN_UNPOISON(p, pool->hot.stride);
	return p;
}

static void uncached_free(struct iop_pool *pool, void *obj)
{
	if (pool->checked)
		_iop_checked_on_free(pool, obj);
	else
		ASAN_POISON(obj, pool->hot.stride);
	pthread_mutex_lock(&pool->lock);
	_iop_slab_put(pool, &obj, 1);
	pthread_mutex_unlock(&pool->lock);
	COUNT(&pool->free_slow, 1);
}

/* ---- slow paths (called by the inline code in iopool.h) -------------------- */

void *iop__alloc_slow(iop_pool_t *pool)
{
	struct iop__tcache *tc = iop__my_tcache(pool);
	void *p = NULL;
	if (!tc->ready && !tcache_setup(tc))
		return uncached_alloc(pool);
	if (pool->checked)
		unhide(pool, tc);
	if (ALOAD(&tc->count) || refill(pool, tc)) {
		uint32_t n = ALOAD(&tc->count) - 1;
		p = tc->objs[n];
		ASTORE(&tc->count, n);
	}
	if (pool->checked) {
		hide(tc);
		if (p)
			_iop_checked_on_alloc(pool, p);
	} else {
		open_fast(pool, tc);
		if (p)
			ASAN_UNPOISON(p, pool->hot.stride);
	}
	/* Counted once it is known: the fast frees are derived from it. */
	if (p)
		COUNT(&pool->alloc_slow, 1);
	else
		COUNT(&pool->alloc_fail, 1); /* errno: ENOMEM, or the map hook's */
	return p;
}

/* obj has passed the owner check. */
void iop__free_slow(iop_pool_t *pool, void *obj)
{
	struct iop__tcache *tc = iop__my_tcache(pool);
	if (!tc->ready && !tcache_setup(tc)) {
		uncached_free(pool, obj);
		return;
	}
	COUNT(&pool->free_slow, 1);
	if (pool->checked) {
		_iop_checked_on_free(pool, obj);
		unhide(pool, tc);
		push_or_spill(pool, tc, obj);
		hide(tc);
	} else {
		ASAN_POISON(obj, pool->hot.stride);
		push_or_spill(pool, tc, obj);
		open_fast(pool, tc);
	}
}

unsigned iop__alloc_bulk_slow(iop_pool_t *pool, void **objs, unsigned n)
{
	struct iop__tcache *tc = iop__my_tcache(pool);
	if (n == 0)
		return 0;
	if (!tc->ready && !tcache_setup(tc)) {
		unsigned i = 0;
		while (i < n && (objs[i] = uncached_alloc(pool)) != NULL)
			i++;
		return i;
	}
	if (pool->checked)
		unhide(pool, tc);
	unsigned got = 0;
	while (got < n) {
		uint32_t c = ALOAD(&tc->count);
		if (c == 0 && (c = refill(pool, tc)) == 0)
			break;
		uint32_t take = c < n - got ? c : n - got;
		c -= take;
		memcpy(objs + got, tc->objs + c, take * sizeof(void *));
		ASTORE(&tc->count, c);
		got += take;
	}
	COUNT(&pool->alloc_slow, got);
	if (pool->checked) {
		hide(tc);
		for (unsigned i = 0; i < got; i++)
			_iop_checked_on_alloc(pool, objs[i]);
	} else {
		open_fast(pool, tc);
		for (unsigned i = 0; i < got; i++)
			ASAN_UNPOISON(objs[i], pool->hot.stride);
	}
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
	struct iop__tcache *tc = iop__my_tcache(pool);
	if (!tc->ready && !tcache_setup(tc)) {
		for (unsigned i = 0; i < n; i++)
			if (objs[i])
				uncached_free(pool, objs[i]);
		return;
	}
	if (pool->checked) {
		for (unsigned i = 0; i < n; i++)
			if (objs[i])
				_iop_checked_on_free(pool, objs[i]);
		unhide(pool, tc);
	}
	unsigned freed = 0;
	for (unsigned i = 0; i < n; i++) {
		if (!objs[i])
			continue;
		if (!pool->checked)
			ASAN_POISON(objs[i], pool->hot.stride);
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
