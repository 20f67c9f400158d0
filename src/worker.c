/* SPDX-License-Identifier: MIT */
/*
 * Refill workers, decay, shrink and reclaim.
 *
 * One worker thread per memory domain, shared by every pool with a reserve
 * or decay, started with the first such pool and joined with the last (or
 * at exit). Its pass over the pools does, for its domain:
 *
 *   refill  a depot below the pool's low watermark is filled to the high
 *           one with whole magazines, carved from the domain's chunks or
 *           from new ones that the worker maps, binds and faults in (the
 *           slow work the FreeBSD KTLS thread does for its zone), so that
 *           IOP_NOWAIT callers, which take only from caches and depots,
 *           find objects. A failed chunk request backs it off (1 ms,
 *           doubling up to the period) and it retries.
 *   decay   every decay interval, the depot objects the interval did not
 *           need (its lowest depot level above reserve_high) shrink by
 *           decay_pct, back into their chunks; wholly free chunks are
 *           unmapped (the vmap series' lazy drain).
 *
 * and the domain-0 worker asks idle pools' thread caches to take part.
 *
 * Memory pressure (IOPOOL_PSI_RECLAIM=P): every pool is shrunk
 * (iop_reclaim()) once tasks stalled on memory for P% of a PSI window
 * (IOP_PSI_WINDOW_US). A watcher thread, "iop-psi", started and stopped
 * with the workers, sleeps in poll() on a PSI trigger of the pressure file,
 * so the reclaim starts within one window of the stall. Where the kernel
 * refuses the trigger, the domain-0 worker reads the file's "some avg10"
 * once a period instead (said once, on stderr).
 *
 * Slow paths wake a worker with _iop_worker_wake(): a racy, rate-limited
 * store and a signal when the worker's mutex is free, so no caller ever
 * waits; a wake-up lost in that race is made up by the next period.
 *
 * Pools and workers: a pass holds a reference on the pool it works on
 * (pool->wref, under wk_lock), taken while the pool is registered, and
 * iop_pool_destroy() waits for it after unregistering the pool. Lock
 * order: wk_ctl (start and stop) before the registry lock before wk_lock
 * and a pool's lock; a worker's own mutex is taken with nothing else held
 * (or tried, by wake-ups). fork() takes them all (internal.h, fork.c); a
 * child starts its own workers at its first call that may block.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "os/os.h"
#include "options.h"

struct worker {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;    /* CLOCK_MONOTONIC */
	_Atomic int kick;     /* a slow path wants a pass */
	bool stop;            /* under mu */
	bool started;         /* under wk_ctl */
	/* Raised by each start (under mu and wk_ctl). A thread runs while
	 * the generation it was started with is current: a worker detached
	 * by a stop from its own pass (a hook that destroyed the last pool)
	 * ends even when a start has meanwhile cleared stop for its
	 * successor, so two threads never run one domain's passes. */
	_Atomic unsigned gen;
};

static struct worker workers[IOP_MAX_DOMAINS];
static pthread_once_t wk_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t wk_ctl = PTHREAD_MUTEX_INITIALIZER;  /* start/stop */
static pthread_mutex_t wk_lock = PTHREAD_MUTEX_INITIALIZER; /* wref, users */
static pthread_cond_t wk_released = PTHREAD_COND_INITIALIZER;
static unsigned wk_users;   /* pools using the workers; under wk_ctl */
static bool wk_running;     /* under wk_ctl */
static bool wk_exiting;     /* under wk_ctl: no start after exit began */
static int64_t wk_period_ns = (int64_t)IOP_WORKER_PERIOD_MS * 1000000;
/* Memory pressure (PSI): how IOPOOL_PSI_RECLAIM's threshold is watched.
 * PSI_TRIGGER until the kernel refuses a trigger on psi_path (or the one
 * armed goes away); then PSI_POLL for good: the domain-0 worker reads the
 * "some avg10" figure of psi_path once a period and shrinks every pool
 * while it is at or above the threshold. */
enum { PSI_OFF, PSI_TRIGGER, PSI_POLL };
static _Atomic int psi_mode;
static double psi_threshold;
static const char *psi_path = "/proc/pressure/memory";
static int64_t psi_next; /* the domain-0 worker's only */

/* The watcher of a PSI trigger: one per start of the workers. Its stopper
 * joins it and frees it; stopped from its own thread (a hook run by its
 * reclaim destroyed the last pool), it is an orphan that ends by itself
 * and frees itself, while the next start makes a new one. */
struct psi_watch {
	pthread_t thread;
	int psi_fd, wake_fd;
	_Atomic bool stop;
	bool orphan; /* written by the watcher's own thread only */
};
static struct psi_watch *watch; /* the current one; under wk_ctl */

/* ---- wake-ups -------------------------------------------------------------- */

void _iop_worker_kick(struct iop_pool *pool, unsigned d, int why)
{
	struct iop_dom *dom = &pool->dom[d];
	int64_t now = _iop_now_coarse_ns();
	int64_t at = LOAD(&dom->wake_at);
	/* One caller per gap wins; the others return after a load. */
	if (now < at || !atomic_compare_exchange_strong_explicit(&dom->wake_at, &at, now + IOP_WAKE_GAP_NS,
								 memory_order_relaxed, memory_order_relaxed))
		return;
	COUNT(why == IOP_WAKE_LOW ? &pool->wake_low : why == IOP_WAKE_EMPTY ? &pool->wake_empty : &pool->wake_fail, 1);
	struct worker *w = &workers[d];
	atomic_store_explicit(&w->kick, 1, memory_order_relaxed);
	/* Never wait here: if the worker holds its mutex it is awake, or
	 * about to sleep and wake again within a period. */
	if (pthread_mutex_trylock(&w->mu) == 0) {
		pthread_cond_signal(&w->cv);
		pthread_mutex_unlock(&w->mu);
	}
}

/* ---- holding pools ------------------------------------------------------------ */

/* The pools this thread holds (a hook run from a pass may reclaim), so
 * that a child of fork() counts only its own thread's references. */
#define HOLDS_KEPT 4
static __thread struct iop_pool *my_holds[HOLDS_KEPT];
static __thread unsigned my_nholds;

/* The registered pool with this id, held against destruction; NULL when
 * there is none, it is still being created (populate must not race a
 * reclaim that undoes it), or, with workers_only, it does not use the
 * workers. */
static struct iop_pool *hold(uint32_t id, bool workers_only)
{
	_iop_registry_lock();
	struct iop_pool *pool = _iop_pool_by_id(id);
	if (pool && !pool->creating && (pool->uses_worker || !workers_only)) {
		pthread_mutex_lock(&wk_lock);
		pool->wref++;
		pthread_mutex_unlock(&wk_lock);
		if (my_nholds < HOLDS_KEPT)
			my_holds[my_nholds] = pool;
		my_nholds++;
	} else {
		pool = NULL;
	}
	_iop_registry_unlock();
	return pool;
}

static void unhold(struct iop_pool *pool)
{
	my_nholds--;
	pthread_mutex_lock(&wk_lock);
	if (--pool->wref == 0)
		pthread_cond_broadcast(&wk_released);
	pthread_mutex_unlock(&wk_lock);
}

/* ---- the worker's work on one pool ---------------------------------------------- */

static void back_off(struct iop_dom *dom, int64_t now)
{
	uint32_t cap = (uint32_t)(wk_period_ns / 1000000);
	dom->backoff_ms = dom->backoff_ms ? dom->backoff_ms * 2 : IOP_BACKOFF_MIN_MS;
	if (dom->backoff_ms > cap)
		dom->backoff_ms = cap;
	dom->retry_ns = now + (int64_t)dom->backoff_ms * 1000000;
}

/* Depot traffic, the workers' own (upkeep) included. */
static uint64_t depot_traffic(struct iop_pool *pool)
{
	return LOAD(&pool->depot_get) + LOAD(&pool->depot_put);
}

/* Fill domain d's depot to reserve_high once it is below reserve_low. */
static void refill(struct iop_pool *pool, unsigned d, int64_t now)
{
	struct iop_dom *dom = &pool->dom[d];
	pthread_mutex_lock(&pool->lock);
	if (pool->depot.dom[d].objs >= pool->reserve_low) {
		pthread_mutex_unlock(&pool->lock);
		return;
	}
	COUNT(&pool->refill_passes, 1);
	uint64_t added, before = depot_traffic(pool);
	int rc = _iop_depot_reserve(pool, d, pool->reserve_high, &added);
	/* Every depot call runs under the lock, which the reserve drops only
	 * around a chunk's mapping: this is the refill's own traffic. */
	COUNT(&pool->upkeep, depot_traffic(pool) - before);
	if (rc == 0 || added)
		dom->backoff_ms = 0;
	/* At a bounded pool's carving limit, try again later, not at every
	 * wake-up; after a failed chunk request, likewise. */
	if (rc && rc != -ENOBUFS)
		COUNT(&pool->refill_fail, 1);
	if (rc)
		back_off(dom, now);
	pthread_mutex_unlock(&pool->lock);
}

/* A bounded pool's idle threads' caches are taken; an unbounded pool's
 * threads are asked to give back their previous magazine on their next
 * slow-path call (their slot is the inline path's, which another thread
 * must not touch). Only when nothing used the pool since the last pass. */
static void mark(struct iop_pool *pool, struct iop_tcache *tc, void *arg)
{
	(void)pool;
	if (arg)
		*(uint64_t *)arg += ALOAD(&tc->alloc_fast);
	else if (ALOAD(&tc->prev_count))
		ASTORE(&tc->trim, 1);
}

/* What the pool's users did: slow paths, the slots' fast allocations, and
 * depot traffic less the workers' own refills and decays (which would
 * otherwise keep a decaying pool from ever looking idle). */
static uint64_t activity(struct iop_pool *pool)
{
	uint64_t a = LOAD(&pool->alloc_slow) + LOAD(&pool->free_slow) + depot_traffic(pool) - LOAD(&pool->upkeep);
	_iop_for_each_tcache(pool, mark, &a);
	return a;
}

static void trim_caches(struct iop_pool *pool)
{
	/* Idle or not is decided before this pass moves anything itself. */
	_iop_registry_lock();
	uint64_t a = activity(pool);
	bool idle = a == pool->activity;
	if (idle && !pool->bound)
		_iop_for_each_tcache(pool, mark, NULL);
	_iop_registry_unlock();
	/* Per-CPU slots that served nothing since the last pass are drained
	 * from here, whatever the pool's other activity. */
	if (_iop_cpu_drain_idle(pool))
		COUNT(&pool->trims, 1);
	if (idle && pool->bound && !pool->cpu_mode && _iop_scavenge(pool))
		COUNT(&pool->trims, 1);
	_iop_registry_lock();
	pool->activity = activity(pool);
	_iop_registry_unlock();
}

static void decay(struct iop_pool *pool, unsigned d)
{
	pthread_mutex_lock(&pool->lock);
	uint64_t before = depot_traffic(pool);
	uint64_t moved = _iop_depot_decay(pool, d, pool->reserve_high, pool->decay_pct);
	COUNT(&pool->upkeep, depot_traffic(pool) - before);
	struct iop_chunk *gone = _iop_slab_unlink_free(pool, d, 0);
	/* What decay sent to partly used chunks: their wholly free pages. */
	_iop_slab_release_pages(pool, d);
	COUNT(&pool->decay_passes, 1);
	COUNT(&pool->decay_objs, moved);
	pthread_mutex_unlock(&pool->lock);
	_iop_slab_free_chunks(pool, gone);
}

/* Returns when this pool next wants the worker. */
static int64_t work(struct iop_pool *pool, unsigned d, int64_t now)
{
	struct iop_dom *dom = &pool->dom[d];
	int64_t due = INT64_MAX;
	if (pool->reserve_low) {
		if (now >= dom->retry_ns)
			refill(pool, d, now);
		if (dom->retry_ns > now)
			due = dom->retry_ns;
	}
	if (pool->decay_ns) {
		if (dom->next_decay_ns && now >= dom->next_decay_ns) {
			if (d == 0)
				trim_caches(pool);
			decay(pool, d);
		}
		if (now >= dom->next_decay_ns)
			dom->next_decay_ns = now + pool->decay_ns;
		if (dom->next_decay_ns < due)
			due = dom->next_decay_ns;
	}
	return due;
}

/* The share of the last 10 s in which some task stalled on memory, in
 * percent; -1 when the kernel has no PSI (or the file cannot be read). */
static double psi_avg10(void)
{
	char buf[256];
	double v = -1;
	if (_iop_os_read_line(psi_path, buf, sizeof(buf)) > 0 && sscanf(buf, "some avg10=%lf", &v) != 1)
		v = -1;
	return v;
}

/* Give up the trigger for avg10 polling: once, with one message. */
static void psi_fall_back(const char *what, int err)
{
	int mode = PSI_TRIGGER;
	if (atomic_compare_exchange_strong(&psi_mode, &mode, PSI_POLL))
		_iop_msg("IOPOOL_PSI_RECLAIM", "%s %s (%s): reading its avg10 once a worker period instead", psi_path,
			 what, strerror(err));
}

static void *watch_main(void *arg)
{
	struct psi_watch *pw = arg;
	int fd = pw->psi_fd;
	while (!atomic_load(&pw->stop)) {
		int rc = _iop_os_psi_wait(fd, pw->wake_fd, -1);
		if (atomic_load(&pw->stop))
			break;
		if (rc == -EBADF) {
			/* Its eventfd was closed under it: it cannot be woken
			 * any more, so it ends; the workers poll instead. */
			psi_fall_back("lost its watcher's eventfd", EBADF);
			break;
		}
		if (rc < 0 && fd >= 0) {
			/* Its cgroup was removed: wait only to be stopped. */
			psi_fall_back("lost its PSI trigger", -rc);
			fd = -1;
		} else if (rc > 0 && (rc & IOP_OS_PSI_EVENT)) {
			iop_reclaim();
		}
	}
	if (pw->orphan) {
		_iop_os_psi_close(pw->psi_fd);
		_iop_os_wake_close(pw->wake_fd);
		free(pw);
	}
	return NULL;
}

/* The thread started as generation gen of worker w is to end. */
static bool superseded(struct worker *w, unsigned gen)
{
	return atomic_load_explicit(&w->gen, memory_order_acquire) != gen;
}

static void *worker_main(void *arg)
{
	unsigned d = (unsigned)((uintptr_t)arg % IOP_MAX_DOMAINS);
	unsigned gen = (unsigned)((uintptr_t)arg / IOP_MAX_DOMAINS);
	struct worker *w = &workers[d];
	_iop_domain_enter(d);
	int64_t next = 0;
	for (;;) {
		pthread_mutex_lock(&w->mu);
		while (!w->stop && !superseded(w, gen) && !atomic_load_explicit(&w->kick, memory_order_relaxed) &&
		       _iop_now_ns() < next) {
			struct timespec ts = _iop_timespec(next);
			pthread_cond_timedwait(&w->cv, &w->mu, &ts);
		}
		bool stop = w->stop || superseded(w, gen);
		/* Cleared under mu: a kick after this unlock (one that
		 * _iop_worker_fill() makes surely) gets a pass of its own. */
		atomic_store_explicit(&w->kick, 0, memory_order_relaxed);
		pthread_mutex_unlock(&w->mu);
		if (stop)
			break;
		int64_t now = _iop_now_ns();
		next = now + wk_period_ns;
		if (d == 0 && atomic_load_explicit(&psi_mode, memory_order_relaxed) == PSI_POLL && now >= psi_next) {
			psi_next = now + wk_period_ns;
			if (psi_avg10() >= psi_threshold)
				iop_reclaim();
		}
		_iop_registry_lock();
		uint32_t ids = _iop_pool_ids();
		_iop_registry_unlock();
		/* A hook run by this pass may have stopped this worker and
		 * started its successor: leave the rest of the pass to it. */
		for (uint32_t id = 0; id < ids && !superseded(w, gen); id++) {
			struct iop_pool *pool = hold(id, true);
			if (!pool)
				continue;
			int64_t due = work(pool, d, now);
			unhold(pool);
			if (due < next)
				next = due;
		}
	}
	return NULL;
}

/* ---- starting and stopping (wk_ctl held) -------------------------------------------- */

/* The PSI watcher, with its trigger armed; or the fallback to polling. */
static void start_watch(void)
{
	if (atomic_load(&psi_mode) != PSI_TRIGGER)
		return;
	/* P% of the window; the kernel refuses a zero stall. */
	uint64_t stall = (uint64_t)(psi_threshold / 100 * IOP_PSI_WINDOW_US);
	stall = stall ? stall : 1;
	struct psi_watch *pw = calloc(1, sizeof(*pw));
	if (!pw) {
		psi_fall_back("has no watcher", ENOMEM);
		return;
	}
	pw->psi_fd = _iop_os_psi_open(psi_path, stall, IOP_PSI_WINDOW_US);
	pw->wake_fd = pw->psi_fd < 0 ? -1 : _iop_os_wake_open();
	int err = pw->psi_fd < 0 ? pw->psi_fd : pw->wake_fd < 0 ? pw->wake_fd : 0;
	if (!err)
		err = -pthread_create(&pw->thread, NULL, watch_main, pw);
	if (err) {
		psi_fall_back(pw->psi_fd < 0 ? "refuses a PSI trigger" : "has no watcher", -err);
		_iop_os_psi_close(pw->psi_fd);
		_iop_os_wake_close(pw->wake_fd);
		free(pw);
		return;
	}
	pthread_setname_np(pw->thread, "iop-psi");
	watch = pw;
}

static void stop_watch(void)
{
	struct psi_watch *pw = watch;
	if (!pw)
		return;
	watch = NULL;
	atomic_store(&pw->stop, true);
	if (pthread_equal(pw->thread, pthread_self())) {
		pthread_detach(pw->thread);
		pw->orphan = true;
		return;
	}
	_iop_os_wake_signal(pw->wake_fd);
	pthread_join(pw->thread, NULL);
	_iop_os_psi_close(pw->psi_fd);
	_iop_os_wake_close(pw->wake_fd);
	free(pw);
}

static void stop_all(void)
{
	stop_watch();
	for (unsigned d = 0; d < IOP_MAX_DOMAINS; d++) {
		struct worker *w = &workers[d];
		if (!w->started)
			continue;
		pthread_mutex_lock(&w->mu);
		w->stop = true;
		pthread_cond_signal(&w->cv);
		pthread_mutex_unlock(&w->mu);
	}
	for (unsigned d = 0; d < IOP_MAX_DOMAINS; d++) {
		struct worker *w = &workers[d];
		if (!w->started)
			continue;
		/* exit() or a pool's destroy called from a hook the worker
		 * runs: it ends after this pass by itself. */
		if (pthread_equal(w->thread, pthread_self()))
			pthread_detach(w->thread);
		else
			pthread_join(w->thread, NULL);
		w->started = false;
	}
	wk_running = false;
}

static void start_all(void)
{
	/* Workers take no signals: the application's handlers run on its
	 * own threads. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	start_watch();
	for (unsigned d = 0; d < _iop_ndomains; d++) {
		struct worker *w = &workers[d];
		pthread_mutex_lock(&w->mu);
		w->stop = false;
		/* Wraps after 2^32 / IOP_MAX_DOMAINS starts; only a thread
		 * still running from that many starts ago could be confused. */
		unsigned gen = (atomic_load(&w->gen) + 1) % (UINT_MAX / IOP_MAX_DOMAINS);
		atomic_store_explicit(&w->gen, gen, memory_order_release);
		pthread_mutex_unlock(&w->mu);
		atomic_store(&w->kick, 0);
		int rc = pthread_create(&w->thread, NULL, worker_main, (void *)((uintptr_t)gen * IOP_MAX_DOMAINS + d));
		if (rc == 0) {
			char name[16] = "iop-refill/0"; /* d < IOP_MAX_DOMAINS */
			name[11] = (char)('0' + d % 10);
			pthread_setname_np(w->thread, name); /* for top and gdb */
			w->started = true;
		}
		else
			_iop_msg("worker", "cannot start the refill worker of domain %u (%s); "
				 "reserves will not be refilled, nor memory decay",
				 d, strerror(rc));
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	wk_running = true;
}

static void stop_at_exit(void)
{
	pthread_mutex_lock(&wk_ctl);
	wk_exiting = true;
	if (wk_running)
		stop_all();
	pthread_mutex_unlock(&wk_ctl);
}

static void wk_init(void)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	for (unsigned d = 0; d < IOP_MAX_DOMAINS; d++) {
		pthread_mutex_init(&workers[d].mu, NULL);
		pthread_cond_init(&workers[d].cv, &ca);
	}
	pthread_condattr_destroy(&ca);
	if (_iop_opt_given(IOP_OPT_WORKER_PERIOD_MS))
		wk_period_ns = (int64_t)_iop_opt_uint(IOP_OPT_WORKER_PERIOD_MS) * 1000000;
	psi_threshold = _iop_opt_percent(IOP_OPT_PSI_RECLAIM);
	if (psi_threshold > 0)
		atomic_store(&psi_mode, PSI_TRIGGER);
	if (_iop_opt_given(IOP_OPT_PSI_FILE))
		psi_path = _iop_opt_path(IOP_OPT_PSI_FILE);
	atexit(stop_at_exit);
}

void _iop_worker_attach(struct iop_pool *pool)
{
	(void)pool;
	pthread_once(&wk_once, wk_init);
	pthread_mutex_lock(&wk_ctl);
	wk_users++;
	if (!wk_running && !wk_exiting)
		start_all();
	pthread_mutex_unlock(&wk_ctl);
}

void _iop_worker_fill(struct iop_pool *pool)
{
	if (!pool->reserve_low)
		return;
	for (unsigned d = 0; d < _iop_ndomains; d++) {
		struct worker *w = &workers[d];
		/* With the mutex, unlike a slow path's kick: this caller may
		 * wait, and the kick is then never lost. */
		pthread_mutex_lock(&w->mu);
		atomic_store_explicit(&w->kick, 1, memory_order_relaxed);
		pthread_cond_signal(&w->cv);
		pthread_mutex_unlock(&w->mu);
	}
}

void _iop_worker_detach(struct iop_pool *pool)
{
	pthread_mutex_lock(&wk_lock);
	while (pool->wref)
		pthread_cond_wait(&wk_released, &wk_lock);
	pthread_mutex_unlock(&wk_lock);
	if (!pool->uses_worker)
		return;
	pthread_mutex_lock(&wk_ctl);
	if (--wk_users == 0 && wk_running)
		stop_all();
	pthread_mutex_unlock(&wk_ctl);
}

/* ---- fork() (fork.c) ------------------------------------------------------------------ */

/* Workers that a child of fork() must start again (it has none). */
static _Atomic bool wk_lost;

/* wk_ctl is held while workers are joined, and they take the registry
 * and pools' locks: it comes before those (leaf false). wk_lock and the
 * workers' mutexes are taken with nothing of theirs nested: after them
 * (leaf true). */
void _iop_worker_atfork(int phase, bool leaf)
{
	if (!leaf) {
		if (phase == IOP_FORK_PREPARE)
			pthread_mutex_lock(&wk_ctl);
		else if (phase == IOP_FORK_PARENT)
			pthread_mutex_unlock(&wk_ctl);
		else
			pthread_mutex_init(&wk_ctl, NULL);
		return;
	}
	if (phase == IOP_FORK_PREPARE) {
		pthread_mutex_lock(&wk_lock);
		for (unsigned d = 0; d < IOP_MAX_DOMAINS; d++)
			pthread_mutex_lock(&workers[d].mu);
		return;
	}
	if (phase == IOP_FORK_PARENT) {
		for (unsigned d = IOP_MAX_DOMAINS; d-- > 0;)
			pthread_mutex_unlock(&workers[d].mu);
		pthread_mutex_unlock(&wk_lock);
		return;
	}
	/* The child: no worker came along (unless this thread is one, forking
	 * from a hook, which ends its pass as usual), nor the PSI watcher,
	 * whose trigger is the parent's: the child arms its own at its
	 * restart (a trigger's event goes to one poller only). */
	if (watch) {
		if (pthread_equal(watch->thread, pthread_self())) {
			atomic_store(&watch->stop, true);
			watch->orphan = true;
		} else {
			_iop_os_psi_close(watch->psi_fd);
			_iop_os_wake_close(watch->wake_fd);
			free(watch);
		}
		watch = NULL;
	}
	pthread_mutex_init(&wk_lock, NULL);
	pthread_cond_init(&wk_released, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	for (unsigned d = 0; d < IOP_MAX_DOMAINS; d++) {
		struct worker *w = &workers[d];
		pthread_mutex_init(&w->mu, NULL);
		pthread_cond_init(&w->cv, &ca);
		w->started = false;
		w->stop = false;
		atomic_store(&w->kick, 0);
	}
	pthread_condattr_destroy(&ca);
	atomic_store(&wk_lost, wk_running);
	wk_running = false;
}

/* The child: passes and reclaims of threads that did not come along hold
 * the pool no more. */
void _iop_worker_fork_pool(struct iop_pool *pool)
{
	uint32_t mine = 0;
	for (unsigned i = 0; i < my_nholds && i < HOLDS_KEPT; i++)
		mine += my_holds[i] == pool;
	pool->wref = mine;
}

/* The child's first call that may block: its own workers. */
void _iop_worker_resume(void)
{
	if (!atomic_load(&wk_lost))
		return;
	pthread_mutex_lock(&wk_ctl);
	if (atomic_exchange(&wk_lost, false) && wk_users && !wk_running && !wk_exiting)
		start_all();
	pthread_mutex_unlock(&wk_ctl);
}

/* ---- shrink and reclaim ------------------------------------------------------------- */

static void drain_own(struct iop_pool *pool, struct iop_tcache *tc, void *me)
{
	if (tc == me)
		_iop_tcache_drain(pool, tc, NULL);
	else if (ALOAD(&tc->prev_count))
		ASTORE(&tc->trim, 1);
}

static int64_t shrink(struct iop_pool *pool, uint64_t target)
{
	pthread_mutex_lock(&pool->lock);
	bool above = pool->slab.nchunks * pool->chunk_size > target;
	pthread_mutex_unlock(&pool->lock);
	if (!above)
		return 0;
	if (pool->bound && !pool->cpu_mode) {
		_iop_scavenge(pool);
	} else {
		_iop_cpu_drain(pool);
		_iop_registry_lock();
		_iop_for_each_tcache(pool, drain_own, _iop_my_slot_if_any(pool));
		_iop_registry_unlock();
	}
	pthread_mutex_lock(&pool->lock);
	for (unsigned d = 0; d < _iop_ndomains; d++)
		_iop_depot_compact(pool, d, pool->reserve_low);
	struct iop_chunk *gone = _iop_slab_unlink_free(pool, IOP_MAX_DOMAINS, target);
	/* Still above the target with every wholly free chunk gone: the
	 * free pages of the partly used ones go too (under the lock, so no
	 * object on them can be carved meanwhile; see slab.c). */
	if (pool->slab.nchunks * pool->chunk_size > target)
		_iop_slab_release_pages(pool, IOP_MAX_DOMAINS);
	pthread_mutex_unlock(&pool->lock);
	return (int64_t)_iop_slab_free_chunks(pool, gone);
}

int64_t iop_pool_shrink(iop_pool_t *pool, uint64_t target_bytes)
{
	if (!pool)
		return -EINVAL;
	int err = _iop_hook_check(pool, IOP_CALL_SHRINK);
	if (err)
		return err;
	return shrink(pool, target_bytes);
}

int64_t iop_reclaim(void)
{
	int64_t bytes = 0;
	_iop_registry_lock();
	uint32_t ids = _iop_pool_ids();
	_iop_registry_unlock();
	for (uint32_t id = 0; id < ids; id++) {
		struct iop_pool *pool = hold(id, false);
		if (pool) {
			bytes += shrink(pool, 0);
			unhold(pool);
		}
	}
	return bytes;
}
