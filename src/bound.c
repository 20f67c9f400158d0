/* SPDX-License-Identifier: MIT */
/*
 * Bounded pools: the limit, the three allocation modes, first-come
 * first-served waits with throttling, and objects stranded in the caches of
 * other threads.
 *
 * Accounting. b->in_flight counts objects reserved for or held by callers.
 * An allocation reserves first (one atomic add) and takes an object after;
 * a reservation that would pass the caller's ceiling (the limit, or the
 * throttle threshold for IOP_WAIT callers) is given back at once. A free
 * gives its unit back after the caller let go of the object. So callers
 * never hold more than the limit, and an accepted reservation always has an
 * object behind it somewhere: in a magazine of some thread, in the depot,
 * in the slab, or not yet carved (the slab carves at most `limit` objects,
 * which caps the pool's memory too).
 *
 * Per-CPU mode. Where the caches are per CPU (ccache.c), a bounded pool
 * keeps the inline fast path of every pool: the limit holds where objects
 * are carved (the slab carves at most `limit`, so objects in flight never
 * exceed objects carved, which never exceed the limit, under any
 * interleaving), and no reservation is counted. The objects in flight are
 * estimated when a slow path needs them (cpu_estimate): carved, less those
 * in the depot, less those in the CPUs' slots read without stopping them.
 * At a quiescent moment it is exact; while others run it is off by at most
 * one array (cache_size objects) per CPU for slots that change while they
 * are read, plus one array per thread inside a slow path at that moment
 * (a batch between the depot and a slot). Throttling and the high-water
 * mark (sampled when an allocation fails, by IOP_WAIT calls and by
 * statistics) use it. At the
 * carving limit a caller that may block drains the other CPUs' slots (a
 * fence, ccache.c) before it gives up. IOP_WAIT callers that must wait
 * hold every slot closed (_iop_cpu_hold, after moving the slots' objects
 * to the depot): the closed slot is the one word the inline free already
 * reads, so every free then comes here and hands its object to the oldest
 * waiter. The hold ends with the last waiter; slots reopen on their next
 * slow-path call.
 *
 * Stranded objects (per-thread mode). When the calling thread's cache, the depot and the slab
 * have nothing for an accepted reservation, the objects are in other
 * threads' caches. The caller takes them (_iop_scavenge): every slot of a
 * bounded pool is hidden from the inline path, and its owner and a thief
 * meet in a lock-free handshake (internal.h), so an idle thread's cache is
 * emptied without its help and a busy one after its current call.
 *
 * Waiters. IOP_WAIT callers that cannot be served queue in FIFO order under
 * wlock. Whoever changes what a waiter is waiting for runs a grant pass: a
 * free while someone waits (it hands its object to the oldest waiter
 * directly), a reservation given back while someone waits, a new waiter.
 * A pass gives the oldest waiters reservations while the in-flight count
 * stays at or below their ceiling; a granted waiter wakes with the freed
 * object or takes one itself. A free therefore wakes exactly one waiter,
 * and N frees wake N. Throttling is a hysteresis state: set when the count
 * reaches the threshold, cleared by a pass once it is below the lower one.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

enum { W_WAITING, W_GRANTED, W_SHUTDOWN };

struct iop_waiter {
	struct iop_waiter *next, *prev;
	pthread_cond_t cv;
	int state;
	bool throttled; /* held back at some point while buffers remained */
	void *obj;    /* handed over by a free; NULL: a reservation only */
};

/* How often a caller holding a reservation looks for its object before it
 * gives up with ENOMEM: each try scavenges every thread's cache and yields.
 * Objects are only ever in transit for the length of a call. */
#define TAKE_TRIES 10000

int64_t _iop_deadline(int64_t timeout_ns)
{
	if (timeout_ns <= 0)
		return 0; /* in the past: try once */
	if (timeout_ns == IOP_FOREVER)
		return INT64_MAX;
	int64_t now = _iop_now_ns();
	return timeout_ns > INT64_MAX - now ? INT64_MAX : now + timeout_ns;
}

/* ---- set-up --------------------------------------------------------------- */

int _iop_bound_init(struct iop_pool *pool, uint64_t limit, uint32_t on_pct, uint32_t off_pct)
{
	struct iop_bound *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->limit = limit;
	b->throttle_on = (limit * on_pct + 99) / 100;
	if (b->throttle_on == 0)
		b->throttle_on = 1;
	if (on_pct == 100 && off_pct == 100) {
		b->throttle_off = limit; /* no throttling: wait only at the limit */
	} else {
		b->throttle_off = limit * off_pct / 100;
		if (b->throttle_off == 0)
			b->throttle_off = 1;
		if (b->throttle_off > b->throttle_on)
			b->throttle_off = b->throttle_on;
	}
	pthread_mutex_init(&b->wlock, NULL);
	pthread_cond_init(&b->idle, NULL);
	b->pool = pool;
	pool->bound = b;
	return 0;
}

void _iop_bound_free_memory(struct iop_pool *pool)
{
	struct iop_bound *b = pool->bound;
	if (!b)
		return;
	pthread_cond_destroy(&b->idle);
	pthread_mutex_destroy(&b->wlock);
	free(b);
	pool->bound = NULL;
}

/* ---- accounting ----------------------------------------------------------- */

static void note_high(struct iop_bound *b, int64_t v)
{
	uint64_t h = atomic_load_explicit(&b->high_water, memory_order_relaxed);
	while ((uint64_t)v > h && !atomic_compare_exchange_weak_explicit(&b->high_water, &h, (uint64_t)v,
									    memory_order_relaxed, memory_order_relaxed))
		;
}

/* Enter the throttled state (IOP_WAIT callers wait until a grant pass
 * finds the count below throttle_off); no store when it is set already. */
static void throttle(struct iop_bound *b)
{
	if (!LOAD(&b->throttled))
		atomic_store(&b->throttled, true);
}

static void count_fail(struct iop_pool *pool, unsigned how)
{
	COUNT((how & IOP_NOWAIT) ? &pool->fail_nowait : (how & IOP_WAIT) ? &pool->fail_wait : &pool->fail_default, 1);
	COUNT(&pool->alloc_fail, 1);
}

/* ---- the queue (wlock held) ------------------------------------------------- */

static void enqueue(struct iop_bound *b, struct iop_waiter *w)
{
	w->next = NULL;
	w->prev = b->tail;
	if (b->tail)
		b->tail->next = w;
	else
		b->head = w;
	b->tail = w;
	atomic_fetch_add(&b->nwaiters, 1);
}

static void dequeue(struct iop_bound *b, struct iop_waiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		b->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		b->tail = w->prev;
	/* The last waiter gone: the slots may open again. */
	if (atomic_fetch_sub(&b->nwaiters, 1) == 1 && b->pool->cpu_mode)
		_iop_cpu_hold(b->pool, false);
}

/* ---- per-CPU mode: the estimate, spare objects ------------------------------ */

/* Objects in flight, estimated (the header comment says how well). */
static int64_t cpu_estimate(struct iop_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	uint64_t out = pool->slab.nchunks * pool->hot.objs_per_chunk - pool->slab.free - pool->depot.objs;
	pthread_mutex_unlock(&pool->lock);
	uint64_t cached = 0, allocs = 0;
	_iop_cpu_sum(pool, &cached, &allocs);
	return out > cached ? (int64_t)(out - cached) : 0;
}

static int64_t in_flight_now(struct iop_pool *pool)
{
	return pool->cpu_mode ? cpu_estimate(pool) : LOAD(&pool->bound->in_flight);
}

/* An object for a waiter with nothing mapped: from the depot, else the
 * slab's free objects. None: *carve says whether the slab may still carve
 * (a granted waiter then maps a chunk itself). */
static void *cpu_spare(struct iop_pool *pool, bool *carve)
{
	unsigned d = _iop_domain_here();
	void *p = NULL;
	pthread_mutex_lock(&pool->lock);
	struct iop_mag *m = _iop_depot_take_full(pool, d, true);
	if (m) {
		p = m->obj[--m->count];
		_iop_depot_put(pool, m);
	} else if (_iop_slab_get(pool, d, &p, 1) == 0) {
		p = NULL;
		*carve = _iop_carve_room(pool) > 0;
	}
	pthread_mutex_unlock(&pool->lock);
	return p;
}

/* An object from this CPU's slot (refilled from the depot, or the slab up
 * to the limit), or straight from the depot while waiters hold the slots
 * closed or for a thread without rseq. Counted (fast in the slot's head,
 * slow here). With grow, at the carving limit while the estimate says
 * objects remain, the CPUs' slots are drained (a fence) and the take
 * tried again: only objects in flight make it fail. NULL with errno. */
static void *cpu_take(struct iop_pool *pool, bool grow)
{
	for (int tries = 0;; tries++) {
		void *p;
		if (_iop_cpu_alloc(pool, grow, &p) != 0) {
			p = _iop_depot_or_slab_get(pool, grow);
			if (p)
				COUNT(&pool->alloc_slow, 1);
		}
		if (p)
			return p;
		if (!grow) {
			errno = ENOMEM;
			return NULL;
		}
		int err = errno;
		if (!_iop_slab_retry_helps(pool)) {
			errno = err; /* the OS or the map hook failed */
			return NULL;
		}
		if (tries == 3 || cpu_estimate(pool) >= (int64_t)pool->bound->limit) {
			errno = ENOMEM;
			return NULL;
		}
		if (_iop_cpu_drain(pool) == 0)
			sched_yield(); /* in transit in another slow path */
	}
}

/* The grant pass of the per-CPU mode: no reservations; the estimate
 * decides, and each waiter gets an object from the free (obj), the depot
 * or the slab, or leave to carve one (one such waiter per pass). */
static void *grant_pass_cpu(struct iop_bound *b, void *obj)
{
	struct iop_pool *pool = b->pool;
	while (b->head) {
		/* obj is still counted in flight: its caller has let go. */
		int64_t now = cpu_estimate(pool) - (obj ? 1 : 0);
		if (LOAD(&b->throttled)) {
			if (now >= (int64_t)b->throttle_off) {
				if (now < (int64_t)b->limit)
					b->head->throttled = true;
				break;
			}
			atomic_store(&b->throttled, false);
		}
		if ((uint64_t)now + 1 > b->throttle_on) {
			if ((uint64_t)now + 1 <= b->limit)
				b->head->throttled = true;
			break;
		}
		void *p = obj;
		bool carve = false;
		if (!p && (p = cpu_spare(pool, &carve)) == NULL && !carve)
			break;
		note_high(b, now + 1);
		if ((uint64_t)now + 1 >= b->throttle_on)
			throttle(b);
		struct iop_waiter *w = b->head;
		dequeue(b, w);
		w->obj = p;
		if (p && p == obj)
			obj = NULL;
		w->state = W_GRANTED;
		pthread_cond_signal(&w->cv);
		if (!p)
			break; /* it carves its own; the next pass serves the next */
	}
	return obj;
}

/*
 * Serve the oldest waiters while the in-flight count allows, the first one
 * with obj when there is one. Returns obj if nobody took it.
 */
static void *grant_pass(struct iop_bound *b, void *obj)
{
	if (b->pool->cpu_mode)
		return grant_pass_cpu(b, obj);
	while (b->head) {
		if (LOAD(&b->throttled)) {
			int64_t now = LOAD(&b->in_flight);
			if (now >= (int64_t)b->throttle_off) {
				if (now < (int64_t)b->limit)
					b->head->throttled = true;
				break;
			}
			atomic_store(&b->throttled, false);
		}
		int64_t v = atomic_fetch_add(&b->in_flight, 1) + 1;
		if ((uint64_t)v > b->throttle_on) {
			atomic_fetch_sub(&b->in_flight, 1);
			if ((uint64_t)v <= b->limit)
				b->head->throttled = true;
			break;
		}
		note_high(b, v);
		if ((uint64_t)v >= b->throttle_on)
			throttle(b);
		struct iop_waiter *w = b->head;
		dequeue(b, w);
		w->obj = obj;
		obj = NULL;
		w->state = W_GRANTED;
		pthread_cond_signal(&w->cv);
	}
	return obj;
}

/* Unlock wlock, first running the grant passes that IOP_NOWAIT callers
 * asked for while it was held (unreserve()). */
static void wunlock(struct iop_bound *b)
{
	while (atomic_exchange(&b->pass_pending, 0))
		grant_pass(b, NULL);
	pthread_mutex_unlock(&b->wlock);
}

/* Give a reservation back. A grant pass that ran meanwhile may have seen it
 * and stopped short, so run one if anybody waits. An IOP_NOWAIT caller must
 * not sleep on wlock: it leaves the pass to the holder (which runs it before
 * unlocking) and spins only until the holder has taken it on. */
static void unreserve_n(struct iop_bound *b, int64_t n, bool nowait)
{
	atomic_fetch_sub(&b->in_flight, n);
	if (!LOAD(&b->nwaiters))
		return;
	if (!nowait) {
		pthread_mutex_lock(&b->wlock);
		grant_pass(b, NULL);
		wunlock(b);
		return;
	}
	atomic_fetch_add(&b->pass_pending, 1);
	while (pthread_mutex_trylock(&b->wlock) != 0) {
		if (LOAD(&b->pass_pending) == 0)
			return; /* the holder took it on */
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
	}
	wunlock(b);
}

static void unreserve(struct iop_bound *b, bool nowait)
{
	unreserve_n(b, 1, nowait);
}

/* ---- taking an object for an accepted reservation -------------------------- */

/* tc (raised and settled) or NULL for a thread without a cache. NULL with
 * errno when the OS or the map hook failed; without grow (IOP_NOWAIT) only
 * the thread's cache and the depot are tried. */
static void *take(struct iop_pool *pool, struct iop_tcache *tc, bool grow)
{
	for (int tries = 0;; tries++) {
		void *p = tc ? _iop_slot_pop(pool, tc, grow) : _iop_depot_or_slab_get(pool, grow);
		if (p)
			return p;
		if (!grow) {
			errno = ENOMEM;
			return NULL;
		}
		/* At the carving limit (or with objects back in the slab) the
		 * objects are to be found; otherwise the OS or the map hook
		 * failed, and errno says how. */
		if (!_iop_slab_retry_helps(pool))
			return NULL;
		if (tries == TAKE_TRIES) {
			errno = ENOMEM;
			return NULL;
		}
		/* At the carving limit with a reservation: the objects are in
		 * other threads' caches (or in transit for a moment). */
		if (tc)
			_iop_slot_lower(tc);
		if (_iop_scavenge(pool) == 0)
			sched_yield();
		if (tc) {
			_iop_slot_raise_fenced(tc);
			_iop_slot_settle(tc);
		}
	}
}

/* Hand out p: checked-mode and ASan bookkeeping and the counters (in the
 * slot, by its owner, as the inline path counts; frees are derived). */
static int hand_out(struct iop_pool *pool, struct iop_tcache *tc, void *p, void **objp)
{
	_iop_on_alloc(pool, p);
	if (tc)
		ASTORE(&tc->alloc_fast, tc->alloc_fast + 1);
	else
		COUNT(&pool->alloc_slow, 1);
	*objp = p;
	return 0;
}

/* The top object of the slot's loaded magazine (tc raised and settled),
 * NULL when it is empty. */
static void *loaded_pop(struct iop_tcache *tc)
{
	uint32_t n = ALOAD(&tc->count);
	if (!n)
		return NULL;
	void *p = tc->objs[--n];
	_iop_vg_forget(&tc->objs[n], sizeof(void *));
	ASTORE(&tc->count, n);
	return p;
}

/* obj onto the slot's loaded magazine, or through the slot's slow push
 * when it is full (tc raised and settled). */
static void loaded_push(struct iop_pool *pool, struct iop_tcache *tc, void *obj)
{
	uint32_t n = ALOAD(&tc->count);
	if (tc->objs && n < pool->mag_cap) {
		tc->objs[n] = obj;
		ASTORE(&tc->count, n + 1);
	} else {
		_iop_slot_push(pool, tc, obj);
	}
}

/* Take an object for a reservation the caller holds (tc raised and
 * settled, or NULL); on failure give the reservation back. */
static int take_reserved(struct iop_pool *pool, struct iop_tcache *tc, unsigned how, void **objp)
{
	/* The common case: the slot's loaded magazine. */
	void *p = tc ? loaded_pop(tc) : NULL;
	if (!p)
		p = take(pool, tc, !(how & IOP_NOWAIT));
	if (tc)
		_iop_slot_lower(tc);
	if (!p) {
		int err = errno; /* take() set it */
		unreserve(pool->bound, how & IOP_NOWAIT);
		count_fail(pool, how);
		return -err;
	}
	return hand_out(pool, tc, p, objp);
}

/* The slot of the calling thread, raised; NULL for a thread past its exit
 * flush. The caller passes the fence, then settles. */
static inline struct iop_tcache *raise_slot(struct iop_pool *pool, bool fenced)
{
	struct iop_tcache *tc = _iop_my_slot(pool);
	if (!tc)
		return NULL;
	if (fenced)
		_iop_slot_raise_fenced(tc);
	else
		_iop_slot_raise(tc);
	return tc;
}

static inline void settle(struct iop_tcache *tc)
{
	if (tc && __atomic_load_n(&tc->steal, __ATOMIC_SEQ_CST))
		_iop_slot_settle(tc);
}

/* ---- waiting ------------------------------------------------------------- */

static unsigned hist_index(uint64_t x)
{
	if (x < (1u << IOP_HIST_SUB))
		return (unsigned)x;
	unsigned shift = 63u - (unsigned)__builtin_clzll(x) - IOP_HIST_SUB;
	return ((shift + 1) << IOP_HIST_SUB) + (unsigned)((x >> shift) & ((1u << IOP_HIST_SUB) - 1));
}

/* The middle of bucket i. */
static uint64_t hist_value(unsigned i)
{
	if (i < (1u << IOP_HIST_SUB))
		return i;
	unsigned shift = (i >> IOP_HIST_SUB) - 1;
	uint64_t lo = ((uint64_t)(1u << IOP_HIST_SUB) + (i & ((1u << IOP_HIST_SUB) - 1))) << shift;
	return lo + ((1ull << shift) >> 1);
}

static void note_wait(struct iop_bound *b, int64_t ns, bool throttled)
{
	uint64_t d = ns > 0 ? (uint64_t)ns : 0;
	COUNT(&b->waits, 1);
	b->wait_ns += d;
	if (d > b->wait_max_ns)
		b->wait_max_ns = d;
	b->hist[hist_index(d)]++;
	if (throttled) {
		COUNT(&b->throttled_waits, 1);
		b->throttled_ns += d;
	}
}

/* The waits this thread is inside (a hook run from one may wait again),
 * so that a child of fork() counts only its own thread's in b->inside. */
#define WAITS_KEPT 4
static __thread struct iop_bound *my_waits[WAITS_KEPT];
static __thread unsigned my_nwaits;

static void enter(struct iop_bound *b)
{
	b->inside++;
	if (my_nwaits < WAITS_KEPT)
		my_waits[my_nwaits] = b;
	my_nwaits++;
}

static void leave(struct iop_bound *b)
{
	my_nwaits--;
	if (--b->inside == 0 && LOAD(&b->shutdown))
		pthread_cond_broadcast(&b->idle);
}

static int wait_for(struct iop_pool *pool, void **objp, unsigned how, int64_t deadline, bool counted)
{
	struct iop_bound *b = pool->bound;
	struct iop_waiter w = { .state = W_WAITING };
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w.cv, &ca);
	pthread_condattr_destroy(&ca);

	pthread_mutex_lock(&b->wlock);
	if (LOAD(&b->shutdown)) {
		wunlock(b);
		pthread_cond_destroy(&w.cv);
		count_fail(pool, how);
		return -ESHUTDOWN;
	}
	enter(b);
	int64_t t0 = _iop_now_ns();
	/* Buffers remain: this caller is held back by throttling or by the
	 * waiters ahead of it, not by the limit (grant passes that stop at it
	 * for throttling say so too). */
	w.throttled = in_flight_now(pool) < (int64_t)b->limit;
	if (!w.throttled && !counted)
		COUNT(&b->limit_hits, 1);
again:
	if (LOAD(&b->shutdown)) {
		w.state = W_SHUTDOWN; /* back for another round: destroy came */
	} else {
		enqueue(b, &w);
		grant_pass(b, NULL);
	}
	if (pool->cpu_mode && w.state == W_WAITING) {
		/* Close every slot, their objects to the depot: from now on
		 * every free comes to a grant pass. Then look once more. */
		_iop_cpu_hold(pool, true);
		grant_pass(b, NULL);
	}
	bool waited = false;
	while (w.state == W_WAITING) {
		if (_iop_now_ns() >= deadline)
			break;
		waited = true;
		if (deadline == INT64_MAX) {
			pthread_cond_wait(&w.cv, &b->wlock);
		} else {
			struct timespec ts = { .tv_sec = deadline / 1000000000, .tv_nsec = deadline % 1000000000 };
			pthread_cond_timedwait(&w.cv, &b->wlock, &ts);
		}
		/* Woken by a grant, a shutdown, the timeout, or for no reason
		 * (a signal): the state says which. */
	}
	if (w.state == W_WAITING)
		dequeue(b, &w);
	if (waited)
		note_wait(b, _iop_now_ns() - t0, w.throttled);
	int state = w.state;
	wunlock(b);

	int rc;
	if (state == W_GRANTED && !w.obj && pool->cpu_mode) {
		/* Leave to carve: map a chunk. Others may have been quicker;
		 * then wait again, as long as the deadline allows. */
		void *p = cpu_take(pool, true);
		if (!p && errno == ENOMEM && _iop_now_ns() < deadline) {
			pthread_mutex_lock(&b->wlock);
			w.state = W_WAITING;
			goto again;
		}
		if (p) {
			_iop_on_alloc(pool, p);
			*objp = p;
			rc = 0;
		} else {
			rc = -(errno ? errno : ENOMEM);
			count_fail(pool, how);
		}
	} else if (state == W_GRANTED) {
		if (w.obj) {
			rc = hand_out(pool, NULL, w.obj, objp);
		} else {
			struct iop_tcache *tc = raise_slot(pool, true);
			settle(tc);
			rc = take_reserved(pool, tc, how, objp);
		}
	} else {
		if (state == W_WAITING)
			COUNT(&b->timeouts, 1);
		count_fail(pool, how);
		rc = state == W_SHUTDOWN ? -ESHUTDOWN : -ETIMEDOUT;
	}
	pthread_cond_destroy(&w.cv);
	pthread_mutex_lock(&b->wlock);
	leave(b);
	wunlock(b);
	return rc;
}

/* ---- the calls, per-CPU mode ------------------------------------------------ */

void _iop_bound_kick(struct iop_pool *pool)
{
	struct iop_bound *b = pool->bound;
	if (b && LOAD(&b->nwaiters)) {
		pthread_mutex_lock(&b->wlock);
		grant_pass(b, NULL);
		wunlock(b);
	}
}

static int cpu_alloc(struct iop_pool *pool, void **objp, unsigned how, int64_t deadline)
{
	struct iop_bound *b = pool->bound;
	if (how & IOP_WAIT) {
		/* First come, first served: behind the queue, or throttled. */
		if (LOAD(&b->nwaiters) || LOAD(&b->throttled))
			return wait_for(pool, objp, how, deadline, false);
		int64_t v = cpu_estimate(pool);
		if ((uint64_t)v >= b->throttle_on) {
			throttle(b);
			bool at_limit = (uint64_t)v >= b->limit;
			if (at_limit)
				COUNT(&b->limit_hits, 1);
			return wait_for(pool, objp, how, deadline, at_limit);
		}
	}
	void *p = cpu_take(pool, !(how & IOP_NOWAIT));
	int err = errno;
	/* The estimate (the pool lock and every CPU's slot) only where it
	 * decides something: a failure, or a call that may be throttled. A
	 * refill that succeeds pays nothing for it. */
	int64_t v = p && !(how & IOP_WAIT) ? 0 : cpu_estimate(pool);
	note_high(b, v);
	if (!p) {
		if ((uint64_t)v >= b->limit)
			COUNT(&b->limit_hits, 1);
		if ((how & IOP_WAIT) && err == ENOMEM) {
			throttle(b);
			return wait_for(pool, objp, how, deadline, true);
		}
		count_fail(pool, how);
		return -err;
	}
	if ((how & IOP_WAIT) && (uint64_t)v >= b->throttle_on)
		throttle(b);
	_iop_on_alloc(pool, p);
	*objp = p;
	/* A batch this call moved may have passed a waiter's last look. */
	_iop_bound_kick(pool);
	return 0;
}

static void cpu_free(struct iop_pool *pool, void *obj)
{
	struct iop_bound *b = pool->bound;
	_iop_on_free(pool, obj);
	if (LOAD(&b->nwaiters)) {
		/* Somebody waits: the object goes to the oldest waiter. */
		pthread_mutex_lock(&b->wlock);
		obj = grant_pass(b, obj);
		wunlock(b);
		if (!obj) {
			COUNT(&pool->free_slow, 1);
			return;
		}
	}
	if (_iop_cpu_free(pool, obj) != 0) {
		/* Held closed by waiters (or no rseq): to the slab, where the
		 * next grant pass finds it. */
		pthread_mutex_lock(&pool->lock);
		_iop_slab_put(pool, &obj, 1);
		pthread_mutex_unlock(&pool->lock);
		COUNT(&pool->free_slow, 1);
	}
	/* A waiter may have come between its last look and this free. */
	_iop_bound_kick(pool);
}

/*
 * A bulk call in the per-thread mode: one reservation for the whole call
 * (one fetch_add of n), the part above the cap (the limit, or throttle_on
 * for IOP_WAIT) given back at once, then the objects from the thread's
 * slot, the depot and the slab; what could not be had goes back in one
 * more subtraction. So a call makes at most two atomic read-modify-writes
 * on the shared count and one grant decision, whatever its n. Returns how
 * many it stored; *at_limit says whether the limit cut the call short.
 * errno is set when fewer than n came.
 */
static unsigned thread_bulk(struct iop_pool *pool, void **objs, unsigned n, unsigned how, bool *at_limit)
{
	struct iop_bound *b = pool->bound;
	bool wait = how & IOP_WAIT, grow = !(how & IOP_NOWAIT);
	uint64_t cap = wait ? b->throttle_on : b->limit;
	*at_limit = false;
	struct iop_tcache *tc = raise_slot(pool, false);
	int64_t v = atomic_fetch_add(&b->in_flight, (int64_t)n) + (int64_t)n;
	IOP_FENCE_AFTER_RMW();
	int64_t over = (uint64_t)v > cap ? v - (int64_t)cap : 0;
	if (over > (int64_t)n)
		over = n;
	unsigned k = n - (unsigned)over, got = 0;
	if (over) {
		/* Lowered first, as a single call is: a grant pass under
		 * wlock may wait for this slot (_iop_scavenge). */
		*at_limit = (uint64_t)v > b->limit;
		if (tc)
			_iop_slot_lower(tc);
		unreserve_n(b, over, !grow);
		if (k == 0) {
			errno = ENOMEM;
			return 0;
		}
		if (tc)
			_iop_slot_raise_fenced(tc);
	}
	note_high(b, v - over);
	if ((uint64_t)(v - over) >= b->throttle_on)
		throttle(b);
	settle(tc);
	int err = ENOMEM;
	while (got < k) {
		void *p = tc ? loaded_pop(tc) : NULL;
		if (!p && (p = take(pool, tc, grow)) == NULL) {
			err = errno; /* take() set it */
			break;
		}
		hand_out(pool, tc, p, &objs[got++]);
	}
	if (tc)
		_iop_slot_lower(tc);
	if (got < k)
		unreserve_n(b, k - got, !grow);
	if (got < n)
		errno = got < k ? err : ENOMEM;
	return got;
}

unsigned _iop_bounded_alloc_bulk(struct iop_pool *pool, void **objs, unsigned n)
{
	struct iop_bound *b = pool->bound;
	unsigned got = 0;
	if (LOAD(&b->shutdown)) {
		count_fail(pool, 0);
		errno = _iop_hook_check(pool, IOP_CALL_ALLOC) ? EDEADLK : ESHUTDOWN;
		return 0;
	}
	if (!pool->cpu_mode) {
		bool at_limit;
		got = thread_bulk(pool, objs, n, 0, &at_limit);
		if (got < n) {
			int err = errno;
			if (at_limit)
				COUNT(&b->limit_hits, 1);
			count_fail(pool, 0);
			errno = err;
		}
		return got;
	}
	if (_iop_cpu_alloc_bulk(pool, objs, n, &got) != 0)
		got = 0; /* no slot: object by object from the depot */
	void *p;
	int err = 0;
	while (got < n) {
		if ((p = cpu_take(pool, true)) == NULL) {
			err = errno;
			break;
		}
		objs[got++] = p;
	}
	for (unsigned i = 0; i < got; i++)
		_iop_on_alloc(pool, objs[i]);
	if (got < n) {
		int64_t v = cpu_estimate(pool);
		note_high(b, v);
		if ((uint64_t)v >= b->limit)
			COUNT(&b->limit_hits, 1);
		count_fail(pool, 0);
		errno = err;
	}
	_iop_bound_kick(pool);
	return got;
}

unsigned _iop_bounded_take_more(struct iop_pool *pool, void **objs, unsigned n, unsigned how)
{
	struct iop_bound *b = pool->bound;
	unsigned got = 0;
	bool wait = how & IOP_WAIT, grow = !(how & IOP_NOWAIT);
	/* First come, first served: an IOP_WAIT call takes nothing more
	 * behind a queue or while throttled. */
	if (wait && (LOAD(&b->nwaiters) || LOAD(&b->throttled)))
		return 0;
	if (!pool->cpu_mode) {
		bool at_limit;
		int saved = errno;
		got = thread_bulk(pool, objs, n, how, &at_limit);
		errno = saved;
		return got;
	}
	int64_t room = wait ? (int64_t)b->throttle_on - cpu_estimate(pool) : (int64_t)n;
	while (got < n && room-- > 0) {
		void *p = cpu_take(pool, grow);
		if (!p)
			break;
		_iop_on_alloc(pool, p);
		objs[got++] = p;
	}
	note_high(b, cpu_estimate(pool));
	return got;
}

/* ---- the calls ------------------------------------------------------------- */

int _iop_bounded_alloc(struct iop_pool *pool, void **objp, unsigned how, int64_t deadline)
{
	struct iop_bound *b = pool->bound;
	bool wait = how & IOP_WAIT;
	*objp = NULL;
	if (LOAD(&b->shutdown)) {
		/* From the pool's unmap hook inside destroy: the hooks' table
		 * says EDEADLK (checked only here, off the bounded path). */
		int refused = _iop_hook_check(pool, IOP_CALL_ALLOC);
		count_fail(pool, how);
		return refused ? refused : -ESHUTDOWN;
	}
	if (pool->cpu_mode)
		return cpu_alloc(pool, objp, how, deadline);
	/* First come, first served: behind the queue, or throttled. */
	if (wait && (LOAD(&b->nwaiters) || LOAD(&b->throttled)))
		return wait_for(pool, objp, how, deadline, false);

	struct iop_tcache *tc = raise_slot(pool, false);
	int64_t v = atomic_fetch_add(&b->in_flight, 1) + 1;
	IOP_FENCE_AFTER_RMW();
	if ((uint64_t)v > (wait ? b->throttle_on : b->limit)) {
		if (tc)
			_iop_slot_lower(tc);
		unreserve(b, how & IOP_NOWAIT);
		bool at_limit = (uint64_t)v > b->limit;
		if (at_limit)
			COUNT(&b->limit_hits, 1);
		if (wait) {
			throttle(b);
			return wait_for(pool, objp, how, deadline, at_limit);
		}
		count_fail(pool, how);
		return -ENOMEM;
	}
	note_high(b, v);
	if ((uint64_t)v >= b->throttle_on)
		throttle(b);
	settle(tc);
	return take_reserved(pool, tc, how, objp);
}

/* obj passed the owner check. */
void _iop_bounded_free(struct iop_pool *pool, void *obj)
{
	struct iop_bound *b = pool->bound;
	if (pool->cpu_mode) {
		cpu_free(pool, obj);
		return;
	}
	_iop_on_free(pool, obj);
	struct iop_tcache *tc = raise_slot(pool, false);
	if (!tc)
		COUNT(&pool->free_slow, 1); /* the others are derived */
	atomic_fetch_sub(&b->in_flight, 1);
	IOP_FENCE_AFTER_RMW();
	settle(tc);
	if (LOAD(&b->nwaiters)) {
		/* Somebody waits: the object goes to the oldest waiter. */
		if (tc)
			_iop_slot_lower(tc);
		pthread_mutex_lock(&b->wlock);
		obj = grant_pass(b, obj);
		wunlock(b);
		if (!obj)
			return;
	} else if (tc) {
		/* The common case: the slot's loaded magazine. */
		loaded_push(pool, tc, obj);
		_iop_slot_lower(tc);
		return;
	}
	/* Not taken by a waiter (throttled), or a thread without a cache. */
	pthread_mutex_lock(&pool->lock);
	_iop_slab_put(pool, &obj, 1);
	pthread_mutex_unlock(&pool->lock);
}

void _iop_bounded_free_bulk(struct iop_pool *pool, void *const *objs, unsigned n)
{
	struct iop_bound *b = pool->bound;
	int64_t m = 0;
	for (unsigned i = 0; i < n; i++)
		if (objs[i]) {
			_iop_on_free(pool, objs[i]);
			m++;
		}
	if (m == 0)
		return;
	struct iop_tcache *tc = raise_slot(pool, false);
	if (!tc)
		COUNT(&pool->free_slow, (uint64_t)m); /* the others are derived */
	atomic_fetch_sub(&b->in_flight, m);
	IOP_FENCE_AFTER_RMW();
	settle(tc);
	if (tc && !LOAD(&b->nwaiters)) {
		/* The common case: the slot's loaded magazine. */
		for (unsigned i = 0; i < n; i++)
			if (objs[i])
				loaded_push(pool, tc, objs[i]);
		_iop_slot_lower(tc);
		return;
	}
	if (tc)
		_iop_slot_lower(tc);
	/* Somebody waits: the objects go to the oldest waiters, a grant
	 * pass each under one hold of wlock per 64; what they do not take
	 * (throttled), or a thread without a cache's, goes back to the slab
	 * after wlock is dropped (as a single free does). */
	bool waiters = LOAD(&b->nwaiters) != 0;
	for (unsigned i = 0; i < n;) {
		void *rest[64];
		unsigned k = 0;
		if (waiters)
			pthread_mutex_lock(&b->wlock);
		for (; i < n && k < 64; i++) {
			void *obj = objs[i];
			if (obj && waiters)
				obj = grant_pass(b, obj);
			if (obj)
				rest[k++] = obj;
		}
		if (waiters)
			wunlock(b);
		if (k) {
			pthread_mutex_lock(&pool->lock);
			_iop_slab_put(pool, rest, k);
			pthread_mutex_unlock(&pool->lock);
		}
	}
}

void _iop_bound_shutdown(struct iop_pool *pool)
{
	struct iop_bound *b = pool->bound;
	pthread_mutex_lock(&b->wlock);
	atomic_store(&b->shutdown, true);
	while (b->head) {
		struct iop_waiter *w = b->head;
		dequeue(b, w);
		w->state = W_SHUTDOWN;
		pthread_cond_signal(&w->cv);
	}
	while (b->inside)
		pthread_cond_wait(&b->idle, &b->wlock);
	wunlock(b);
}

/* fork(): wlock is taken with no other lock held, so after the pool's
 * others. The parent runs the grant passes IOP_NOWAIT callers left while
 * it was held (wunlock). The child drops the waiters, which are threads
 * that did not come along, and counts only its own thread inside. */
void _iop_bound_atfork(struct iop_pool *pool, int phase)
{
	struct iop_bound *b = pool->bound;
	if (!b)
		return;
	if (phase == IOP_FORK_PREPARE) {
		pthread_mutex_lock(&b->wlock);
		return;
	}
	if (phase == IOP_FORK_PARENT) {
		wunlock(b);
		return;
	}
	pthread_mutex_init(&b->wlock, NULL);
	pthread_cond_init(&b->idle, NULL);
	b->head = b->tail = NULL;
	atomic_store(&b->nwaiters, 0);
	atomic_store(&b->pass_pending, 0);
	b->inside = 0;
	for (unsigned i = 0; i < my_nwaits && i < WAITS_KEPT; i++)
		b->inside += my_waits[i] == b;
}

/* The child's count of objects in flight, from what it can account for:
 * reservations of threads that did not come along are given back. This
 * thread's are kept: a hook (the only place it can fork from inside a
 * call) runs in take(), which holds the call's reservation with the slot
 * raised, once per nested call. Registry locked. */
void _iop_bound_fork_in_flight(struct iop_pool *pool, uint64_t in_flight)
{
	struct iop_tcache *tc = _iop_my_slot_if_any(pool);
	if (tc)
		in_flight += ALOAD(&tc->busy);
	atomic_store(&pool->bound->in_flight, (int64_t)in_flight);
}

uint64_t iop_pool_reset_high_water(iop_pool_t *pool)
{
	if (!pool || !pool->bound)
		return 0;
	struct iop_bound *b = pool->bound;
	int64_t now = in_flight_now(pool);
	return atomic_exchange(&b->high_water, now > 0 ? (uint64_t)now : 0);
}

/* ---- statistics ------------------------------------------------------------ */

static uint64_t percentile(const uint64_t *hist, uint64_t total, uint64_t per_mille, uint64_t max)
{
	if (total == 0)
		return 0;
	uint64_t rank = (total * per_mille + 999) / 1000, seen = 0;
	for (unsigned i = 0; i < IOP_HIST_BUCKETS; i++) {
		seen += hist[i];
		if (seen >= rank) {
			uint64_t v = hist_value(i);
			return v < max ? v : max;
		}
	}
	return max;
}

void _iop_bound_stats(struct iop_pool *pool, struct iop_pool_stats *s)
{
	s->fail_nowait = LOAD(&pool->fail_nowait);
	s->fail_default = LOAD(&pool->fail_default);
	s->fail_wait = LOAD(&pool->fail_wait);
	struct iop_bound *b = pool->bound;
	if (!b)
		return;
	s->limit = b->limit;
	s->throttle_on = b->throttle_on;
	s->throttle_off = b->throttle_off;
	s->high_water = LOAD(&b->high_water);
	/* Per-CPU mode: sampled (failures, IOP_WAIT calls); at least what is in
	 * flight now (s->in_flight is filled first). */
	if (pool->cpu_mode && s->in_flight > s->high_water)
		s->high_water = s->in_flight;
	s->waiters = LOAD(&b->nwaiters);
	s->limit_hits = LOAD(&b->limit_hits);
	s->waits = LOAD(&b->waits);
	s->throttled = LOAD(&b->throttled_waits);
	s->timeouts = LOAD(&b->timeouts);
	pthread_mutex_lock(&b->wlock);
	uint64_t total = 0;
	for (unsigned i = 0; i < IOP_HIST_BUCKETS; i++)
		total += b->hist[i];
	s->throttled_ns = b->throttled_ns;
	s->wait_ns = b->wait_ns;
	s->wait_max_ns = b->wait_max_ns;
	s->wait_p50_ns = percentile(b->hist, total, 500, b->wait_max_ns);
	s->wait_p99_ns = percentile(b->hist, total, 990, b->wait_max_ns);
	wunlock(b);
}
