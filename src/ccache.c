/* SPDX-License-Identifier: MIT */
/*
 * Per-CPU caches (layer 1): one slot per (CPU, pool), popped and pushed by
 * the restartable sequences of include/iopool/inline.h, refilled from and
 * spilled to the depot here, and drained by any thread after a fence.
 *
 * A slot is open (cap = the pool's magazine size) or closed (cap = 0).
 * Sequences commit only to open slots. Everything that changes a slot
 * other than its sequences (opening it, draining it, closing it for good)
 * holds the pool's cpu_lock, and a slot it found open is first closed and
 * then fenced: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ) on that
 * CPU restarts any sequence running there, and the restarted one sees
 * cap = 0. After the fence the slot's head and array are the drainer's
 * alone until it reopens the slot (tcmalloc's "fence"; docs/ARCHITECTURE.md): it
 * stores the head first and the cap last, and every sequence reads the
 * cap before the head (include/iopool/inline.h), so one that starts after
 * the fence sees either a closed slot or the head the drain left.
 *
 * The slow paths move whole batches with the same sequences: an empty slot
 * gets a magazine's worth of objects pushed into it (whatever fits), a
 * full one has half its objects popped into an empty magazine for the
 * depot, so at least half a magazine of calls pass between depot visits.
 *
 * The mode is chosen once per process (_iop_cache_init): per-CPU where rseq
 * is registered and the membarrier command works, unless IOPOOL_CACHE says
 * otherwise; per-thread (tcache.c) elsewhere. Checked pools use per-thread
 * caches in either mode: their slots stay closed.
 *
 * Bounded pools (bound.c) hold their slots closed while IOP_WAIT callers
 * wait (_iop_cpu_hold): every free then reaches the library, which hands
 * the object to the oldest waiter, and the objects the slots held are in
 * the depot where a waiter finds them.
 */
#include <errno.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "os/os.h"
#include "options.h"

#if IOP__LIB_RSEQ
#include <sys/rseq.h>
#endif

int _iop_cache_mode = IOP_CACHE_THREAD;
unsigned _iop_ncpu = 1;
static pthread_once_t mode_once = PTHREAD_ONCE_INIT;

/* The head word: objects in the low bits, fast allocations above. */
#define HEAD_COUNT(h) ((uint32_t)((h) & 0xffffu))
#define HEAD_ALLOCS(h) ((h) >> 16)

/* Library-private words of a slot: the allocations it had served at the
 * last decay pass (an idle slot's count has not moved). */
#define SLOT_SEEN(s) ((s)->priv_[0])
/* Set while a drain has closed the slot and will reopen it. */
#define SLOT_CLOSED_HERE(s) ((s)->priv_[1])

_Static_assert(sizeof(struct iop__cslot) == 64, "one cache line per slot");
_Static_assert(2 * IOP_CACHE_SIZE_MAX < 0x10000 && IOP_CPU_CACHE_MAX_AUTO < 0x10000,
	       "a slot's count fits the head's low 16 bits");

/* The CPU the caller runs on according to its rseq area; -1 without rseq. */
static int cpu_now(void)
{
#if IOP__LIB_RSEQ
	const struct rseq *rs = (const struct rseq *)(const void *)((char *)__builtin_thread_pointer() + __rseq_offset);
	return (int)(int32_t)__atomic_load_n(&rs->cpu_id, __ATOMIC_RELAXED);
#else
	return -1;
#endif
}

int _iop_opt_cache(void)
{
	const char *v = _iop_opt_path(IOP_OPT_CACHE);
	if (!v || !*v)
		return -1;
	if (!strcmp(v, "cpu"))
		return IOP_CACHE_CPU;
	if (!strcmp(v, "thread"))
		return IOP_CACHE_THREAD;
	_iop_msg("IOPOOL_CACHE", "'%s' is not 'cpu' or 'thread': ignored", v);
	return -1;
}

static void decide(void)
{
	_iop_ncpu = _iop_os_possible_cpus();
	const char *why = NULL;
	int want = _iop_opt_cache();
#if !IOP__LIB_RSEQ
	why = "this build has no rseq support";
#elif IOP__LIB_TSAN
	why = "ThreadSanitizer cannot see into the sequences";
#else
	if (want == IOP_CACHE_THREAD)
		why = "IOPOOL_CACHE=thread";
	else if (IOP_VG_ON)
		why = "valgrind's memcheck: every call goes through the library, which describes each object to it";
	else if (cpu_now() < 0)
		why = "rseq is not registered (valgrind, GLIBC_TUNABLES=glibc.pthread.rseq=0, seccomp or an old kernel)";
	else if (_iop_os_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) != 0)
		why = "membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ) failed";
#endif
	if (!why) {
		_iop_cache_mode = IOP_CACHE_CPU;
		return;
	}
	_iop_cache_mode = IOP_CACHE_THREAD;
	if (want == IOP_CACHE_CPU)
		_iop_msg("IOPOOL_CACHE", "cpu: per-CPU caches are not available (%s); using per-thread caches", why);
}

void _iop_cache_init(void)
{
	pthread_once(&mode_once, decide);
}

int iop_cache_mode(void)
{
	_iop_cache_init();
	return _iop_cache_mode;
}

/* ---- set-up --------------------------------------------------------------- */

/* Objects per CPU slot (config.h, IOP_CPU_CACHE_BYTES): two magazines
 * when the caller chose the magazine (cache_size), else about 2 MiB of
 * objects; a bounded pool's slots share 1/IOP_BOUND_CPU_DIV of its limit. */
static uint32_t slot_cap(const struct iop_pool *pool, uint32_t cache_size, uint64_t limit)
{
	uint64_t cap;
	if (cache_size) {
		cap = 2 * (uint64_t)cache_size;
	} else {
		cap = IOP_CPU_CACHE_BYTES / pool->hot.stride;
		if (cap > IOP_CPU_CACHE_MAX_AUTO)
			cap = IOP_CPU_CACHE_MAX_AUTO;
		if (cap < 2 * (uint64_t)pool->mag_cap)
			cap = 2 * (uint64_t)pool->mag_cap;
	}
	if (limit) {
		uint64_t share = limit / IOP_BOUND_CPU_DIV / _iop_ncpu;
		if (cap > share)
			cap = share ? share : 1;
	}
	return (uint32_t)cap;
}

int _iop_cpu_pool_init(struct iop_pool *pool, uint32_t cache_size, uint64_t limit)
{
	_iop_cache_init();
	pool->cpu_cap = slot_cap(pool, cache_size, limit);
	/* Two closed slots before slot 0: cpu_id is -1 before and -2 after a
	 * failed registration, and the sequences index with it unchecked. */
	size_t bytes = (size_t)(_iop_ncpu + 2) * sizeof(struct iop__cslot);
	struct iop__cslot *s = aligned_alloc(64, bytes);
	if (!s)
		return -ENOMEM;
	memset(s, 0, bytes);
	pool->cpu_mem = s;
	pool->hot.cpu = s + 2;
	/* The sequences read the rseq area's offset as 32 bits (inline.h);
	 * glibc's is a static TLS offset, which always fits. */
	int off_fits = 1;
#if IOP__LIB_RSEQ
	off_fits = __rseq_offset >= INT32_MIN && __rseq_offset <= INT32_MAX;
	pool->hot.rseq_off = off_fits ? (int32_t)__rseq_offset : 0;
#endif
	pool->cpu_mode = off_fits && _iop_cache_mode == IOP_CACHE_CPU && !pool->checked;
	pthread_mutex_init(&pool->cpu_lock, NULL);
	return 0;
}

void _iop_cpu_pool_fini(struct iop_pool *pool)
{
	if (!pool->cpu_mem)
		return;
	for (unsigned c = 0; c < _iop_ncpu; c++)
		free(pool->hot.cpu[c].objs);
	free(pool->cpu_mem);
	pool->cpu_mem = NULL;
	pthread_mutex_destroy(&pool->cpu_lock);
}

/* fork(): cpu_lock is held from a slot's closing to its reopening, so the
 * child finds none closed by a drain. The child registers for the fence
 * again in case the kernel did not carry the registration over. */
void _iop_cpu_atfork(struct iop_pool *pool, int phase)
{
	if (!pool->cpu_mem)
		return;
	if (phase == IOP_FORK_PREPARE) {
		pthread_mutex_lock(&pool->cpu_lock);
	} else if (phase == IOP_FORK_PARENT) {
		pthread_mutex_unlock(&pool->cpu_lock);
	} else {
		pthread_mutex_init(&pool->cpu_lock, NULL);
		if (pool->cpu_mode)
			_iop_os_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0);
	}
}

/* ---- opening, closing, draining (cpu_lock held) ------------------------------ */

static void fence(struct iop_pool *pool, int cpu)
{
	int rc = cpu < 0 ? _iop_os_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0)
			 : _iop_os_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, MEMBARRIER_CMD_FLAG_CPU, cpu);
	/* Registered at start; without the fence a drain could lose objects,
	 * so there is nothing safe to go on with. */
	if (rc != 0)
		_iop_die(pool, "membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ) failed: %s", strerror(errno));
}

/* Open slot c for the sequences: an array of cpu_cap objects, made on the
 * CPU's first use. False without memory or while the pool is closing. */
static bool open_slot(struct iop_pool *pool, unsigned c)
{
	struct iop__cslot *s = &pool->hot.cpu[c];
	bool ok = true;
	pthread_mutex_lock(&pool->cpu_lock);
	if (pool->cpu_closing || pool->cpu_held) {
		ok = false;
	} else if (!ALOAD(&s->cap)) {
		if (!s->objs)
			/* Whole cache lines: no two CPUs' arrays share one. */
			s->objs = aligned_alloc(64, (pool->cpu_cap * sizeof(void *) + 63) & ~(size_t)63);
		if (s->objs)
			__atomic_store_n(&s->cap, pool->cpu_cap, __ATOMIC_RELEASE);
		else
			ok = false;
	}
	pthread_mutex_unlock(&pool->cpu_lock);
	return ok;
}

/* Give objs[0..n) to the depot, in magazines (or to the slab when no
 * magazine can be had). Pool lock held. */
static void to_depot(struct iop_pool *pool, void *const *objs, uint32_t n)
{
	while (n) {
		struct iop_mag *m = _iop_depot_take_empty(pool);
		if (!m) {
			_iop_slab_put(pool, objs, n);
			return;
		}
		uint32_t k = n < m->cap ? n : m->cap;
		memcpy(m->obj, objs + n - k, k * sizeof(void *));
		m->count = k;
		_iop_depot_put(pool, m);
		n -= k;
	}
}

/* Move a closed and fenced slot's objects to the depot, folding its count
 * of allocations into the pool's. Returns how many moved. */
static uint32_t empty_slot(struct iop_pool *pool, struct iop__cslot *s)
{
	uint64_t h = ALOAD(&s->head);
	uint32_t n = HEAD_COUNT(h);
	if (n) {
		pthread_mutex_lock(&pool->lock);
		to_depot(pool, s->objs, n);
		pthread_mutex_unlock(&pool->lock);
	}
	ASTORE(&s->head, h - n);
	if (n)
		COUNT(&pool->cpu_drains, 1);
	return n;
}

/* The slots of `pool` that drain() may empty. */
enum { DRAIN_ALL, DRAIN_IDLE, DRAIN_CLOSE, DRAIN_HOLD };

/*
 * Empty the pool's CPU slots: every slot (shrink, reclaim), the slots that
 * served no allocation since the last DRAIN_IDLE pass (decay), every slot
 * for good (destroy: they stay closed), or every slot until the hold ends
 * (DRAIN_HOLD, with cpu_held set). Returns the objects moved to the depot.
 */
static uint64_t drain(struct iop_pool *pool, int how)
{
	uint64_t moved = 0;
	unsigned closed = 0;
	int last = -1;
	pthread_mutex_lock(&pool->cpu_lock);
	if (how == DRAIN_CLOSE)
		pool->cpu_closing = true;
	/* Close first, fence once for all of them, then empty. */
	for (unsigned c = 0; c < _iop_ncpu; c++) {
		struct iop__cslot *s = &pool->hot.cpu[c];
		uint64_t h = ALOAD(&s->head);
		bool take = HEAD_COUNT(h) != 0 || how == DRAIN_CLOSE || how == DRAIN_HOLD;
		if (how == DRAIN_IDLE) {
			take = HEAD_COUNT(h) && HEAD_ALLOCS(h) == SLOT_SEEN(s);
			SLOT_SEEN(s) = HEAD_ALLOCS(h);
		}
		if (take && ALOAD(&s->cap)) {
			__atomic_store_n(&s->cap, 0u, __ATOMIC_SEQ_CST);
			SLOT_CLOSED_HERE(s) = 1;
			closed++;
			last = (int)c;
		}
	}
	/*
	 * One CPU: fence just it; several: every CPU of the process. Twice:
	 * the fence IPIs the CPUs whose current task it sees belonging to
	 * this process, so a thread being switched in on one of them while
	 * the fence looks (another thread of the process yielded to it) can
	 * start a sequence that read the slot still open and is neither
	 * interrupted nor preempted before it commits (seen on Linux 6.18,
	 * x86-64: our reading of it, the failure below is measured). After the first
	 * fence every later sequence sees the slot closed; the second
	 * interrupts (and so restarts) any still in flight. Without it,
	 * threads that yield to each other while a drain runs had objects
	 * handed out twice (tests/test_percpu.c, drain_racing_threads_that_
	 * switch_on_a_cpu_hands_nothing_out_twice: 2 of 4 runs).
	 */
	if (closed) {
		fence(pool, closed == 1 ? last : -1);
		fence(pool, closed == 1 ? last : -1);
	}
	for (unsigned c = 0; c < _iop_ncpu; c++) {
		struct iop__cslot *s = &pool->hot.cpu[c];
		if (!SLOT_CLOSED_HERE(s) && !(how == DRAIN_CLOSE && HEAD_COUNT(ALOAD(&s->head))))
			continue;
		moved += empty_slot(pool, s);
		if (SLOT_CLOSED_HERE(s) && how != DRAIN_CLOSE && how != DRAIN_HOLD && !pool->cpu_held)
			__atomic_store_n(&s->cap, pool->cpu_cap, __ATOMIC_RELEASE);
		SLOT_CLOSED_HERE(s) = 0;
	}
	pthread_mutex_unlock(&pool->cpu_lock);
	return moved;
}

uint64_t _iop_cpu_drain(struct iop_pool *pool)
{
	return pool->cpu_mode ? drain(pool, DRAIN_ALL) : 0;
}

uint64_t _iop_cpu_drain_idle(struct iop_pool *pool)
{
	return pool->cpu_mode ? drain(pool, DRAIN_IDLE) : 0;
}

void _iop_cpu_close(struct iop_pool *pool)
{
	if (pool->cpu_mode)
		drain(pool, DRAIN_CLOSE);
}

uint64_t _iop_cpu_hold(struct iop_pool *pool, bool on)
{
	if (!pool->cpu_mode)
		return 0;
	pthread_mutex_lock(&pool->cpu_lock);
	bool was = pool->cpu_held;
	pool->cpu_held = on;
	pthread_mutex_unlock(&pool->cpu_lock);
	/* Slots that open from now on see the hold (open_slot); the drain
	 * closes the open ones. A released hold reopens slots lazily, on
	 * each CPU's next slow-path call. */
	return on && !was ? drain(pool, DRAIN_HOLD) : 0;
}

/* ---- the slow paths ------------------------------------------------------------ */

/* A magazine of objects for this caller: from domain d's depot, else (with
 * grow) filled from the slab. NULL with errno when there is none. */
static struct iop_mag *take_batch(struct iop_pool *pool, bool grow)
{
	unsigned d = _iop_domain_here();
	if (grow)
		_iop_fork_resume();
	if (!_iop_pool_lock(pool, grow)) {
		errno = ENOMEM;
		return NULL;
	}
	struct iop_mag *m = _iop_cache_take_full(pool, d, grow);
	if (!m && grow && (m = _iop_depot_take_empty(pool)) != NULL) {
		m->count = 0;
		if (_iop_depot_fill(pool, d, m) == 0) {
			int err = errno;
			struct iop_mag *o = _iop_depot_take_full(pool, d, true);
			_iop_depot_put(pool, m);
			m = o;
			errno = err;
		}
	} else if (!m) {
		errno = ENOMEM;
	}
	pthread_mutex_unlock(&pool->lock);
	return m;
}

static void put_back(struct iop_pool *pool, struct iop_mag *m)
{
	pthread_mutex_lock(&pool->lock);
	_iop_depot_put(pool, m);
	pthread_mutex_unlock(&pool->lock);
}

/* The slot of the CPU the caller runs on, open; NULL when the caller has
 * no rseq or the slot cannot open: use the per-thread path. */
static struct iop__cslot *my_open_slot(struct iop_pool *pool)
{
	int c = cpu_now();
	if (c < 0 || (unsigned)c >= _iop_ncpu)
		return NULL;
	struct iop__cslot *s = &pool->hot.cpu[c];
	if (!ALOAD(&s->cap) && !open_slot(pool, (unsigned)c))
		return NULL;
	return s;
}

/*
 * The bulk slow paths trade with the depot once per call: the objects the
 * slot cannot serve (or take) move straight between the caller's array and
 * the depot's magazines (_iop_depot_get_objs/_put_objs copy across as many
 * magazines as it takes), together with half a slot's worth for (or from)
 * the slot, staged on the stack: a slot can only be written by its
 * sequences. Half a slot, as in the single-object paths, so that at least
 * half a slot of calls pass between depot visits. TRADE_MAX bounds the
 * stack buffer (4 KiB).
 */
#define TRADE_MAX 512u

static uint32_t half_slot(uint32_t cap)
{
	uint32_t h = cap / 2 ? cap / 2 : 1;
	return h < TRADE_MAX ? h : TRADE_MAX;
}

/* Push what fits of objs[0..n) (its top) into this CPU's slot; returns
 * how many are left: another thread on this CPU filled it, the slot
 * closed, or the caller has no slot. */
static uint32_t push_what_fits(struct iop_pool *pool, void *const *objs, uint32_t n)
{
	for (int tries = 0; n && tries < 4; tries++) {
		struct iop__cslot *s = my_open_slot(pool);
		if (!s)
			break;
		uint32_t c = HEAD_COUNT(ALOAD(&s->head)), cap = ALOAD(&s->cap);
		uint32_t k = cap > c ? cap - c : 0;
		if (k > n)
			k = n;
		if (k == 0)
			break;
		if (iop__seq_push_bulk(&pool->hot, objs + n - k, k))
			n -= k;
	}
	return n;
}

/* Push buf[0..n) into this CPU's slot; the rest goes back to the depot. */
static void stock_objs(struct iop_pool *pool, void **buf, uint32_t n)
{
	n = push_what_fits(pool, buf, n);
	if (n) {
		pthread_mutex_lock(&pool->lock);
		_iop_depot_put_objs(pool, buf, n);
		pthread_mutex_unlock(&pool->lock);
	}
}

/* Push what fits of m's top objects into this CPU's slot. */
static void stock(struct iop_pool *pool, struct iop_mag *m)
{
	m->count = push_what_fits(pool, m->obj, m->count);
}

int _iop_cpu_alloc(struct iop_pool *pool, bool grow, void **objp)
{
	for (;;) {
		void *p = iop__seq_pop(&pool->hot);
		if (p) {
			*objp = p; /* counted in the slot's head */
			return 0;
		}
		struct iop__cslot *s = my_open_slot(pool);
		if (!s)
			return 1; /* per-thread */
		if (HEAD_COUNT(ALOAD(&s->head)))
			continue; /* another thread on this CPU refilled it */
		/* One trip to the depot for half a slot, which may span
		 * several magazines; the slab (which may map a chunk) only
		 * when the depot has none. */
		void *buf[TRADE_MAX];
		if (grow)
			_iop_fork_resume();
		if (_iop_pool_lock(pool, grow)) {
			uint32_t t = _iop_take_objs(pool, _iop_domain_here(), grow, buf, half_slot(ALOAD(&s->cap)));
			pthread_mutex_unlock(&pool->lock);
			if (t) {
				p = buf[--t];
				if (t)
					stock_objs(pool, buf, t);
				COUNT(&pool->alloc_slow, 1);
				*objp = p;
				return 0;
			}
		}
		struct iop_mag *m = take_batch(pool, grow);
		if (!m) {
			*objp = NULL;
			return 0;
		}
		p = m->obj[--m->count];
		stock(pool, m);
		put_back(pool, m);
		COUNT(&pool->alloc_slow, 1);
		*objp = p;
		return 0;
	}
}

int _iop_cpu_free(struct iop_pool *pool, void *obj)
{
	for (;;) {
		if (iop__seq_push(&pool->hot, obj))
			return 0;
		struct iop__cslot *s = my_open_slot(pool);
		if (!s)
			return 1;
		uint32_t cap = ALOAD(&s->cap), n = HEAD_COUNT(ALOAD(&s->head));
		if (n < cap)
			continue;
		/* Full: half of it goes to the depot, across as many
		 * magazines as that takes (a slot holds more than one). */
		void *buf[TRADE_MAX];
		uint32_t h = half_slot(cap);
		if (h > n || !iop__seq_pop_bulk(&pool->hot, buf, h, (uint64_t) - (int64_t)h))
			continue; /* the slot moved under us: look again */
		pthread_mutex_lock(&pool->lock);
		_iop_depot_put_objs(pool, buf, h);
		pthread_mutex_unlock(&pool->lock);
		COUNT(&pool->free_slow, 1);
	}
}

int _iop_cpu_alloc_bulk(struct iop_pool *pool, void **objs, unsigned n, unsigned *got)
{
	unsigned have = 0;
	while (have < n) {
		struct iop__cslot *s = my_open_slot(pool);
		if (!s) {
			if (have == 0)
				return 1;
			break;
		}
		uint32_t c = HEAD_COUNT(ALOAD(&s->head)), cap = ALOAD(&s->cap);
		uint32_t k = c < n - have ? c : n - have;
		if (k && iop__seq_pop_bulk(&pool->hot, objs + have, k, (uint64_t)k * 0xffffu)) {
			have += k;
			continue;
		}
		if (k)
			continue; /* the slot moved under us: look again */
		/* The slot is empty: one trip to the depot for the rest of the
		 * call and half a slot. */
		void *buf[TRADE_MAX];
		uint32_t want = n - have, nbuf = 0;
		if (!_iop_pool_lock(pool, true))
			break;
		unsigned d = _iop_domain_here();
		uint32_t t = _iop_take_objs(pool, d, true, objs + have, want);
		if (t == want)
			nbuf = _iop_take_objs(pool, d, true, buf, half_slot(cap));
		pthread_mutex_unlock(&pool->lock);
		have += t;
		COUNT(&pool->alloc_slow, t);
		if (nbuf)
			stock_objs(pool, buf, nbuf);
		if (t == want)
			continue;
		/* The depot ran dry: a magazine from the slab (which may map
		 * a chunk), the rest of it into the slot. */
		struct iop_mag *m = take_batch(pool, true);
		if (!m)
			break;
		t = m->count < n - have ? m->count : n - have;
		memcpy(objs + have, m->obj + m->count - t, t * sizeof(void *));
		m->count -= t;
		have += t;
		COUNT(&pool->alloc_slow, t);
		stock(pool, m);
		put_back(pool, m);
	}
	*got = have;
	return 0;
}

int _iop_cpu_free_bulk(struct iop_pool *pool, void *const *objs, unsigned n)
{
	unsigned done = 0;
	while (done < n) {
		struct iop__cslot *s = my_open_slot(pool);
		if (!s) {
			if (done == 0 && !pool->bound)
				return 1;
			if (pool->bound) {
				/* Held: the rest to the depot (the waiters' grant
				 * passes find it there). */
				pthread_mutex_lock(&pool->lock);
				to_depot(pool, objs + done, n - done);
				pthread_mutex_unlock(&pool->lock);
				COUNT(&pool->free_slow, n - done);
			} else {
				_iop_thread_free_bulk(pool, objs + done, n - done);
			}
			return 0;
		}
		uint32_t c = HEAD_COUNT(ALOAD(&s->head)), cap = ALOAD(&s->cap);
		uint32_t k = cap > c ? cap - c : 0;
		if (k > n - done)
			k = n - done;
		if (k && iop__seq_push_bulk(&pool->hot, objs + done, k)) {
			done += k;
			continue;
		}
		if (k)
			continue;
		/* Full: half the slot goes to the depot, and in the same trip
		 * whatever of the call the freed half cannot take; the call's
		 * last objects (the most recently used) go into the slot. */
		void *buf[TRADE_MAX];
		uint32_t h = half_slot(cap);
		if (h > c || !iop__seq_pop_bulk(&pool->hot, buf, h, (uint64_t) - (int64_t)h))
			continue;
		uint32_t rest = n - done, over = rest > h ? rest - h : 0;
		pthread_mutex_lock(&pool->lock);
		_iop_depot_put_objs(pool, buf, h);
		_iop_depot_put_objs(pool, objs + done, over);
		pthread_mutex_unlock(&pool->lock);
		COUNT(&pool->free_slow, rest);
		done += over;
	}
	return 0;
}

/* ---- statistics and audits ------------------------------------------------------ */

void _iop_cpu_drains_hold(struct iop_pool *pool)
{
	pthread_mutex_lock(&pool->cpu_lock);
}

void _iop_cpu_drains_release(struct iop_pool *pool)
{
	pthread_mutex_unlock(&pool->cpu_lock);
}

void _iop_cpu_sum(struct iop_pool *pool, uint64_t *cached, uint64_t *allocs)
{
	for (unsigned c = 0; c < _iop_ncpu; c++) {
		uint64_t h = ALOAD(&pool->hot.cpu[c].head);
		*cached += HEAD_COUNT(h);
		*allocs += HEAD_ALLOCS(h);
	}
}

void _iop_cpu_for_each_obj(struct iop_pool *pool, void (*fn)(struct iop_pool *, void *, void *), void *arg)
{
	for (unsigned c = 0; c < _iop_ncpu; c++) {
		struct iop__cslot *s = &pool->hot.cpu[c];
		uint32_t n = HEAD_COUNT(ALOAD(&s->head));
		for (uint32_t i = 0; i < n && s->objs; i++)
			fn(pool, ALOAD(&s->objs[i]), arg);
	}
}
