/* SPDX-License-Identifier: MIT */
/*
 * Reserves, refill workers, decay, shrink, memory domains, hugepages and
 * fault injection.
 *
 * Nothing here checks timing: a case that waits for the worker polls the
 * statistics until what it waits for has happened, under a watchdog that
 * fails the case with a message if it never does. Cases that need several
 * domains set IOPOOL_FAKE_NUMA before the library's first pool (each CTest
 * entry is its own process).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "iop_test.h"
#include "iop_fault.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) != 0)
		;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Poll `cond` every millisecond until it holds; the watchdog ends the case
 * if it never does. */
#define WAIT_FOR(cond)                                                  \
	do {                                                            \
		th_watchdog(#cond, 30);                                 \
		while (!(cond))                                         \
			sleep_ms(1);                                    \
		th_watchdog(NULL, 0);                                   \
	} while (0)

struct rparams {
	size_t obj_size;
	uint64_t reserve_low, reserve_high, limit;
	uint32_t decay_ms, decay_pct, flags, cache_size;
	size_t populate;
	int (*map)(void *, void *, size_t, uint64_t *);
	void (*unmap)(void *, void *, size_t, uint64_t);
	void *hook_arg;
};

static iop_pool_t *mk(const char *name, struct rparams r)
{
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = name;
	pp.obj_size = r.obj_size;
	pp.reserve_low = r.reserve_low;
	pp.reserve_high = r.reserve_high;
	pp.limit = r.limit;
	pp.decay_ms = r.decay_ms;
	pp.decay_pct = r.decay_pct;
	pp.flags = r.flags;
	pp.cache_size = r.cache_size;
	pp.populate = r.populate;
	pp.map = r.map;
	pp.unmap = r.unmap;
	pp.hook_arg = r.hook_arg;
	return iop_pool_create(&pp);
}

static iop_pool_t *mk_or_die(const char *name, struct rparams r)
{
	iop_pool_t *p = mk(name, r);
	if (!p) {
		th_fail_at(__FILE__, __LINE__, "iop_pool_create(%s): %s", name, strerror(errno));
		exit(TH_FAIL);
	}
	return p;
}

static uint64_t field_depot(iop_pool_t *p)
{
	return STATS(p).depot;
}

static size_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, res = 0;
	if (f) {
		if (fscanf(f, "%lu %lu", &size, &res) != 2)
			res = 0;
		fclose(f);
	}
	return res * (size_t)sysconf(_SC_PAGESIZE);
}

static void *nothing(void *arg)
{
	return arg;
}

/* Threads of this process, after any sanitizer's helper thread (started
 * with the first pthread_create) is running. */
static int nthreads(void)
{
	static bool primed;
	if (!primed) {
		pthread_t t;
		if (pthread_create(&t, NULL, nothing, NULL) == 0)
			pthread_join(t, NULL);
		primed = true;
	}
	int n = 0;
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* ---- parameters ------------------------------------------------------------- */

TEST(reserve_and_decay_params_are_checked)
{
	struct rparams r = { .obj_size = 256, .reserve_low = 100, .reserve_high = 50 };
	errno = 0;
	CHECK(mk("bad", r) == NULL);
	CHECK_EQ(errno, EINVAL);
	r = (struct rparams){ .obj_size = 256, .reserve_low = 100, .limit = 50 };
	CHECK(mk("bad", r) == NULL);
	r = (struct rparams){ .obj_size = 256, .decay_ms = 10, .decay_pct = 101 };
	CHECK(mk("bad", r) == NULL);
	r = (struct rparams){ .obj_size = 256, .decay_pct = 30 };
	CHECK(mk("bad", r) == NULL);
	r = (struct rparams){ .obj_size = 256, .reserve_low = 100 };
	iop_pool_t *p = mk_or_die("ok", r);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.reserve_low, 100);
	CHECK_EQ(st.reserve_high, 100 + 2 * st.cache_size);
	CHECK_EQ(st.domains, iop_domain_count());
	/* An older caller's struct ends before the reserve fields. */
	struct iop_pool_stats old;
	memset(&old, 0xab, sizeof old);
	old.struct_size = (uint32_t)IOP_POOL_STATS_SIZE_V3;
	CHECK_EQ(iop_pool_stats(p, &old), 0);
	CHECK_EQ(old.reserve_low, 0xababababababababull);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* ---- refill --------------------------------------------------------------------- */

TEST(nowait_fails_on_an_empty_pool_without_a_reserve)
{
	iop_pool_t *p = mk_or_die("noreserve", (struct rparams){ .obj_size = 2048 });
	void *o;
	CHECK_EQ(iop_alloc_ex(p, &o, IOP_NOWAIT, 0), -ENOMEM);
	sleep_ms(20);
	CHECK_EQ(iop_alloc_ex(p, &o, IOP_NOWAIT, 0), -ENOMEM);
	CHECK_EQ(STATS(p).chunks, 0);
	CHECK_DESTROY(p);
	return TH_PASS;
}

struct consumer {
	iop_pool_t *pool;
	unsigned want;
	uint64_t failures;
	void **held;
};

/* Takes `want` objects with IOP_NOWAIT only, which never maps a chunk:
 * every object it gets was put in a depot by the worker. */
static void *nowait_consumer(void *arg)
{
	struct consumer *c = arg;
	for (unsigned got = 0; got < c->want;) {
		void *o;
		if (iop_alloc_ex(c->pool, &o, IOP_NOWAIT, 0) == 0) {
			c->held[got++] = o;
			memset(o, 0x5a, 64);
		} else {
			c->failures++;
			sleep_ms(1);
		}
	}
	return NULL;
}

TEST(refill_worker_keeps_a_nowait_consumer_fed)
{
	struct rparams r = { .obj_size = 2048, .reserve_low = 256, .reserve_high = 512 };
	iop_pool_t *p = mk_or_die("fed", r);
	/* The worker fills the reserve by itself once the pool exists. */
	WAIT_FOR(field_depot(p) >= 512);
	struct iop_pool_stats st = STATS(p);
	CHECK_GE(st.refill_passes, 1);
	CHECK_GE(st.refill_objs, 512);
	CHECK_EQ(st.reserve_short, 0);
	/* Eight reserves' worth, by a thread that never grows the pool. */
	struct consumer c = { .pool = p, .want = 8 * 512 };
	c.held = calloc(c.want, sizeof(void *));
	REQUIRE(c.held);
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, nowait_consumer, &c) == 0);
	pthread_join(t, NULL);
	st = STATS(p);
	CHECK_EQ(st.in_flight, c.want);
	CHECK_GE(st.refill_objs, c.want);
	CHECK_GE(st.wake_low + st.wake_empty + st.wake_fail, 1);
	CHECK_GE(st.refill_passes, 2);
	CHECK_AUDIT(p);
	iop_free_bulk(p, c.held, c.want);
	free(c.held);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(wakeups_are_rate_limited_under_a_failure_storm)
{
	/* Every chunk request fails: the worker can never refill, and every
	 * NOWAIT call fails and asks for a wake-up. */
	struct iop__fault f = { .fail_every = 1 };
	iop__fault_set(&f);
	iop_pool_t *p = mk_or_die("storm", (struct rparams){ .obj_size = 2048, .reserve_low = 64 });
	int64_t t0 = now_ns();
	unsigned fails = 0;
	for (int i = 0; i < 200000; i++) {
		void *o;
		fails += iop_alloc_ex(p, &o, IOP_NOWAIT, 0) == -ENOMEM;
	}
	int64_t elapsed = now_ns() - t0;
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(fails, 200000);
	uint64_t wakes = st.wake_low + st.wake_empty + st.wake_fail;
	/* At most one per 100 us per domain (IOP_WAKE_GAP_NS), plus the one
	 * that opens the window. */
	CHECK_LE(wakes, (uint64_t)(elapsed / 100000 + 2) * iop_domain_count());
	CHECK_GE(wakes, 1);
	WAIT_FOR(STATS(p).refill_fail >= 1);
	CHECK_EQ(STATS(p).chunks, 0);
	iop__fault_set(NULL);
	/* Once the OS gives memory again, the worker's retry fills it. */
	WAIT_FOR(field_depot(p) >= 64);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(bounded_pool_reserve_stays_within_its_limit)
{
	struct rparams r = { .obj_size = 1024, .limit = 100, .reserve_low = 80, .reserve_high = 500 };
	iop_pool_t *p = mk_or_die("boundres", r);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.reserve_high, 100);
	WAIT_FOR(field_depot(p) >= 80);
	sleep_ms(20);
	st = STATS(p);
	CHECK_LE(st.depot, 100);
	CHECK_AUDIT(p);
	void *objs[101];
	unsigned n = 0;
	while (n < 101 && iop_alloc_ex(p, &objs[n], IOP_NOWAIT, 0) == 0)
		n++;
	CHECK_LE(n, 100);
	CHECK_AUDIT(p);
	iop_free_bulk(p, objs, n);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* ---- decay ------------------------------------------------------------------------ */

struct hooks {
	atomic_int maps, unmaps, bad;
	void *bases[256];
};

static int h_map(void *arg, void *base, size_t len, uint64_t *handle)
{
	struct hooks *h = arg;
	(void)len;
	int i = atomic_fetch_add(&h->maps, 1);
	if (i < 256)
		h->bases[i] = base;
	*handle = (uint64_t)(uintptr_t)base ^ 0x5eed;
	return 0;
}

static void h_unmap(void *arg, void *base, size_t len, uint64_t handle)
{
	struct hooks *h = arg;
	(void)len;
	if (handle != ((uint64_t)(uintptr_t)base ^ 0x5eed))
		atomic_fetch_add(&h->bad, 1);
	atomic_fetch_add(&h->unmaps, 1);
}

TEST(decay_returns_memory_after_load_stops)
{
	static struct hooks h;
	struct rparams r = { .obj_size = 16384, .decay_ms = 10, .decay_pct = 50, .map = h_map, .unmap = h_unmap,
			     .hook_arg = &h };
	iop_pool_t *p = mk_or_die("decay", r);
	enum { N = 2048 }; /* 32 MiB */
	void **objs = calloc(N, sizeof(void *));
	REQUIRE(objs);
	for (int i = 0; i < N; i++) {
		objs[i] = iop_alloc(p);
		REQUIRE(objs[i]);
		memset(objs[i], 0x11, 16384);
	}
	size_t loaded = rss_bytes();
	struct iop_pool_stats st = STATS(p);
	CHECK_GE(st.bytes_resident, (uint64_t)N * 16384);
	uint64_t mapped = st.chunks;
	CHECK_EQ(atomic_load(&h.maps), (int)mapped);
	iop_free_bulk(p, objs, N);
	iop_thread_flush();
	/* Decay takes the depot down to nothing (no reserve), and every
	 * chunk goes back once its objects are all free. */
	WAIT_FOR(STATS(p).chunks == 0 && atomic_load(&h.unmaps) == (int)mapped);
	st = STATS(p);
	CHECK_GE(st.decay_passes, 2);
	/* At least all N: a pass that ran while the loop above allocated may
	 * have sent idle depot objects home before they were handed out. */
	CHECK_GE(st.decay_objs, N);
	CHECK_EQ(st.chunk_release, mapped);
	CHECK_EQ(st.bytes_resident, 0);
	CHECK_CONSERVED(st);
	/* Memory, not just counters: the process shrank by most of it. */
	size_t after = rss_bytes();
	CHECK_LE(after + (size_t)N * 16384 * 3 / 4, loaded);
	/* The unmap hook ran once per chunk, with the handle map stored. */
	CHECK_EQ(atomic_load(&h.unmaps), (int)mapped);
	CHECK_EQ(atomic_load(&h.bad), 0);
	CHECK_EQ(st.unmap_calls, mapped);
	CHECK_AUDIT(p);
	/* And the pool works on: a new chunk, a new map call. */
	void *o = iop_alloc(p);
	REQUIRE(o);
	CHECK_EQ(atomic_load(&h.maps), (int)mapped + 1);
	iop_free(p, o);
	free(objs);
	CHECK_DESTROY(p);
	CHECK_EQ(atomic_load(&h.unmaps), (int)mapped + 1);
	return TH_PASS;
}

TEST(decay_never_goes_below_the_reserve)
{
	struct rparams r = { .obj_size = 4096, .reserve_low = 64, .reserve_high = 128, .decay_ms = 5 };
	iop_pool_t *p = mk_or_die("decayres", r);
	enum { N = 2000 };
	void **objs = calloc(N, sizeof(void *));
	REQUIRE(objs);
	REQUIRE(iop_alloc_bulk(p, objs, N) == N);
	iop_free_bulk(p, objs, N);
	FLUSH_ALL(p);
	CHECK_GE(field_depot(p), N);
	WAIT_FOR(field_depot(p) <= 128 + STATS(p).cache_size);
	/* Several more passes change nothing: the reserve stays. */
	uint64_t passes = STATS(p).decay_passes;
	WAIT_FOR(STATS(p).decay_passes >= passes + 5);
	struct iop_pool_stats st = STATS(p);
	CHECK_GE(st.depot, 64);
	CHECK_EQ(st.in_flight, 0);
	CHECK_AUDIT(p);
	free(objs);
	CHECK_DESTROY(p);
	return TH_PASS;
}

struct idle {
	iop_pool_t *pool;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stage; /* 1: cache filled; 2: may go */
	uint64_t cached; /* the pool's cached objects, just after the fill */
};

static void *idle_thread(void *arg)
{
	struct idle *s = arg;
	void *o[40];
	unsigned n = iop_alloc_bulk(s->pool, o, 40);
	iop_free_bulk(s->pool, o, n);
	/* Read here, not by the main thread once it wakes: an idle pool's
	 * caches may be taken two worker passes (10 ms) after this. */
	s->cached = STATS(s->pool).cached;
	pthread_mutex_lock(&s->mu);
	s->stage = 1;
	pthread_cond_broadcast(&s->cv);
	while (s->stage != 2)
		pthread_cond_wait(&s->cv, &s->mu);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

TEST(decay_takes_idle_threads_caches_of_a_bounded_pool)
{
	struct rparams r = { .obj_size = 4096, .limit = 1000, .cache_size = 16, .decay_ms = 5 };
	iop_pool_t *p = mk_or_die("idlecache", r);
	struct idle s = { .pool = p, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, idle_thread, &s) == 0);
	pthread_mutex_lock(&s.mu);
	while (s.stage != 1)
		pthread_cond_wait(&s.cv, &s.mu);
	pthread_mutex_unlock(&s.mu);
	CHECK_GE(s.cached, 1);
	/* The thread is alive and idle: its cache is taken, then decays. */
	WAIT_FOR(STATS(p).cached == 0 && STATS(p).chunks == 0);
	CHECK_GE(STATS(p).trims, 1);
	CHECK_AUDIT(p);
	pthread_mutex_lock(&s.mu);
	s.stage = 2;
	pthread_cond_broadcast(&s.cv);
	pthread_mutex_unlock(&s.mu);
	pthread_join(t, NULL);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* Two full magazines in this thread's cache; 16 allocations empty the
 * loaded one on the fast path, and the 17th is a slow path. Returns the
 * statistics before and after that 17th call. */
static void seventeen(iop_pool_t *p, void *held[17], struct iop_pool_stats *before, struct iop_pool_stats *after,
		      uint64_t idle_passes)
{
	void *o[32];
	REQUIRE(iop_alloc_bulk(p, o, 32) == 32);
	iop_free_bulk(p, o, 32);
	CHECK_EQ(STATS(p).cached, 32);
	/* Idle for a few passes: a decaying pool's worker asks this slot to
	 * trim. */
	uint64_t passes = STATS(p).decay_passes;
	WAIT_FOR(STATS(p).decay_passes >= passes + idle_passes);
	for (int i = 0; i < 16; i++)
		REQUIRE((held[i] = iop_alloc(p)) != NULL);
	*before = STATS(p);
	REQUIRE((held[16] = iop_alloc(p)) != NULL);
	*after = STATS(p);
}

/* The header: an unbounded pool's idle threads "give back their previous
 * magazine on their next slow-path call". That call here is a refill:
 * without a trim it swaps in the full previous magazine and the depot sees
 * nothing (the control pool, no decay); asked to trim, the thread puts the
 * previous magazine into the depot first (one trim, one depot_put) and the
 * refill takes a full one from there. The objects are counted
 * independently: the test holds 17, so the thread caches 32 - 17. */
TEST(unbounded_thread_gives_back_its_previous_magazine_when_asked)
{
	struct rparams r = { .obj_size = 4096, .cache_size = 16, .decay_ms = 5 };
	iop_pool_t *p = mk_or_die("trim", r);
	/* Per-CPU slots are drained by decay itself
	 * (test_percpu: decay_drains_an_idle_cpu_cache). */
	TH_SKIP_IF(STATS(p).cache_mode == IOP_CACHE_MODE_CPU, "the cooperative trim is the per-thread mode's");
	iop_pool_t *control = mk_or_die("no-trim", (struct rparams){ .obj_size = 4096, .cache_size = 16 });
	void *held[17];
	struct iop_pool_stats a, b;

	seventeen(control, held, &a, &b, 0);
	CHECK_EQ(a.cached, 16);
	CHECK_EQ(b.trims, 0);
	CHECK_EQ(b.depot_put, a.depot_put); /* a swap: the depot sees nothing */
	CHECK_EQ(b.in_flight, 17);
	CHECK_EQ(b.cached, 32 - 17);
	iop_free_bulk(control, held, 17);

	seventeen(p, held, &a, &b, 3);
	CHECK_EQ(a.cached, 16);
	CHECK_EQ(a.trims, 0); /* asked, but nobody took them behind our back */
	CHECK_EQ(b.trims, 1);
	CHECK_EQ(b.depot_put, a.depot_put + 1); /* the previous magazine, given back */
	CHECK_EQ(b.depot_get, a.depot_get + 1); /* ...and the refill's from the depot */
	CHECK_EQ(b.in_flight, 17);
	CHECK_EQ(b.cached, 32 - 17);
	CHECK_EQ(b.in_flight + b.cached + b.depot + b.slab_free, b.total);
	iop_free_bulk(p, held, 17);
	CHECK_AUDIT(p);
	CHECK_AUDIT(control);
	CHECK_DESTROY(p);
	CHECK_DESTROY(control);
	return TH_PASS;
}

/* ---- shrink and reclaim -------------------------------------------------------------- */

TEST(shrink_returns_free_chunks_at_once)
{
	iop_pool_t *p = mk_or_die("shrink", (struct rparams){ .obj_size = 65536 }); /* 32 per chunk */
	enum { N = 320 };
	void *objs[N];
	REQUIRE(iop_alloc_bulk(p, objs, N) == N);
	for (int i = 0; i < N; i++)
		memset(objs[i], 1, 65536);
	uint64_t chunks = STATS(p).chunks;
	CHECK_GE(chunks, 10);
	/* Keep one object of the first chunk in flight. */
	iop_free_bulk(p, objs + 1, N - 1);
	CHECK_EQ(iop_pool_shrink(NULL, 0), -EINVAL);
	int64_t got = iop_pool_shrink(p, 0);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.chunks, 1);
	CHECK_EQ(got, (int64_t)((chunks - 1) * st.chunk_size));
	CHECK_EQ(st.in_flight, 1);
	CHECK_EQ(st.cached + st.depot, 0);
	CHECK_CONSERVED(st);
	CHECK_AUDIT(p);
	/* Above its target already: nothing to do. */
	CHECK_EQ(iop_pool_shrink(p, st.chunk_size), 0);
	iop_free(p, objs[0]);
	CHECK_EQ(iop_reclaim() >= (int64_t)st.chunk_size, 1);
	CHECK_EQ(STATS(p).chunks, 0);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(shrink_to_a_target_keeps_the_rest)
{
	iop_pool_t *p = mk_or_die("target", (struct rparams){ .obj_size = 65536 });
	enum { N = 320 };
	void *objs[N];
	REQUIRE(iop_alloc_bulk(p, objs, N) == N);
	iop_free_bulk(p, objs, N);
	struct iop_pool_stats st = STATS(p);
	iop_pool_shrink(p, 4 * st.chunk_size);
	st = STATS(p);
	CHECK_EQ(st.chunks, 4);
	CHECK_CONSERVED(st);
	CHECK_AUDIT(p);
	REQUIRE(iop_alloc_bulk(p, objs, N) == N);
	iop_free_bulk(p, objs, N);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(shrink_keeps_the_reserve)
{
	struct rparams r = { .obj_size = 4096, .reserve_low = 100, .reserve_high = 200 };
	iop_pool_t *p = mk_or_die("shrinkres", r);
	WAIT_FOR(field_depot(p) >= 200);
	iop_pool_shrink(p, 0);
	CHECK_GE(field_depot(p), 100);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* ---- domains ----------------------------------------------------------------------- */

static bool two_cpus(void)
{
	cpu_set_t set;
	return sched_getaffinity(0, sizeof set, &set) == 0 && CPU_ISSET(0, &set) && CPU_ISSET(1, &set);
}

static void pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

struct remote {
	iop_pool_t *pool;
	void **objs;
	unsigned n, own, own_local;
	int domain;
};

/* On CPU 1 (domain 1): allocate `own` objects of its own domain, then free
 * them together with the other domain's objects it was given. */
static void *remote_freer(void *arg)
{
	struct remote *r = arg;
	pin(1);
	r->domain = (int)iop_domain_current();
	for (unsigned i = 0; i < r->own; i++) {
		r->objs[r->n + i] = iop_alloc(r->pool);
		r->own_local += iop_domain_of(r->objs[r->n + i]) == 1;
	}
	/* Interleave them so magazines hold both domains. */
	for (unsigned i = 0; i < r->n + r->own; i += 3) {
		void *x = r->objs[i];
		r->objs[i] = r->objs[r->n + r->own - 1 - i / 3];
		r->objs[r->n + r->own - 1 - i / 3] = x;
	}
	iop_free_bulk(r->pool, r->objs, r->n + r->own);
	iop_thread_flush();
	return NULL;
}

TEST(cross_domain_frees_go_home_under_fake_numa)
{
	TH_SKIP_IF(!two_cpus(), "needs CPUs 0 and 1");
	setenv("IOPOOL_FAKE_NUMA", "2", 1);
	REQUIRE(iop_domain_count() == 2);
	pin(0);
	CHECK_EQ(iop_domain_current(), 0);
	iop_pool_t *p = mk_or_die("numa", (struct rparams){ .obj_size = 1024, .cache_size = 32 });
	enum { N = 1000, OWN = 300 };
	struct remote r = { .pool = p, .n = N, .own = OWN };
	r.objs = calloc(N + OWN, sizeof(void *));
	REQUIRE(r.objs);
	REQUIRE(iop_alloc_bulk(p, r.objs, N) == N);
	for (int i = 0; i < N; i++)
		CHECK_EQ(iop_domain_of(r.objs[i]), 0);
	iop_thread_flush();
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, remote_freer, &r) == 0);
	pthread_join(t, NULL);
	(void)iop_pool_flush(p); /* the CPUs' slots too */
	CHECK_EQ(r.domain, 1);
	CHECK_EQ(r.own_local, OWN); /* local memory first, not domain 0's depot */
	struct iop_domain_stats d0 = { .struct_size = sizeof d0 }, d1 = { .struct_size = sizeof d1 };
	REQUIRE(iop_pool_domain_stats(p, 0, &d0) == 0);
	REQUIRE(iop_pool_domain_stats(p, 1, &d1) == 0);
	CHECK_EQ(iop_pool_domain_stats(p, 2, &d1), -EINVAL);
	/* Each domain's objects are in its own depot or chunks, none in the
	 * other's depot (the audit checks each object). */
	CHECK_GE(d1.chunks, 1);
	CHECK_EQ(d0.depot + d0.slab_free, d0.chunks * STATS(p).objs_per_chunk);
	CHECK_EQ(d1.depot + d1.slab_free, d1.chunks * STATS(p).objs_per_chunk);
	CHECK_GE(d0.depot, 1);
	CHECK_GE(STATS(p).sent_home, 1);
	CHECK_AUDIT(p);
	free(r.objs);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(each_domain_has_its_own_worker_and_reserve)
{
	TH_SKIP_IF(!two_cpus(), "needs CPUs 0 and 1");
	setenv("IOPOOL_FAKE_NUMA", "2", 1);
	REQUIRE(iop_domain_count() == 2);
	int before = nthreads();
	iop_pool_t *p = mk_or_die("numares", (struct rparams){ .obj_size = 1024, .reserve_low = 100 });
	CHECK_EQ(nthreads(), before + 2);
	struct iop_domain_stats d = { .struct_size = sizeof d };
	for (unsigned i = 0; i < 2; i++)
		WAIT_FOR(iop_pool_domain_stats(p, i, &d) == 0 && d.depot >= 100);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	CHECK_EQ(nthreads(), before);
	return TH_PASS;
}

/* ---- workers' lifetime ------------------------------------------------------------------- */

TEST(workers_start_lazily_and_stop_with_the_last_pool)
{
	int before = nthreads();
	iop_pool_t *plain = mk_or_die("plain", (struct rparams){ .obj_size = 256 });
	CHECK_EQ(nthreads(), before);
	iop_pool_t *a = mk_or_die("a", (struct rparams){ .obj_size = 256, .reserve_low = 10 });
	int with = nthreads();
	CHECK_EQ(with, before + (int)iop_domain_count());
	iop_pool_t *b = mk_or_die("b", (struct rparams){ .obj_size = 256, .decay_ms = 5 });
	CHECK_EQ(nthreads(), with); /* shared */
	CHECK_DESTROY(a);
	CHECK_EQ(nthreads(), with);
	CHECK_DESTROY(b);
	CHECK_EQ(nthreads(), before); /* joined */
	/* And again. */
	a = mk_or_die("a", (struct rparams){ .obj_size = 256, .reserve_low = 10 });
	CHECK_EQ(nthreads(), with);
	WAIT_FOR(field_depot(a) >= 10);
	CHECK_DESTROY(a);
	CHECK_DESTROY(plain);
	return TH_PASS;
}

/* Until the pool's depot holds n objects, at most ms milliseconds: whether
 * it got there. */
static bool depot_reaches(iop_pool_t *p, uint64_t n, int ms)
{
	for (int i = 0; i < ms; i++) {
		if (field_depot(p) >= n)
			return true;
		sleep_ms(1);
	}
	return field_depot(p) >= n;
}

/*
 * With a one-minute worker period, a new pool's reserve is filled within
 * seconds of iop_pool_create(): the workers are woken once the pool can
 * be worked on (the first pool's worker started while the pool was still
 * being created, and skipped it; a later pool's found the worker asleep
 * for the rest of its period).
 */
TEST(reserve_is_filled_at_creation_not_a_period_later)
{
	setenv("IOPOOL_WORKER_PERIOD_MS", "60000", 1);
	iop_pool_t *a = mk_or_die("first", (struct rparams){ .obj_size = 256, .reserve_low = 10 });
	CHECK(depot_reaches(a, 10, 10000));
	/* The worker has done its passes and sleeps for a minute. */
	sleep_ms(100);
	iop_pool_t *b = mk_or_die("second", (struct rparams){ .obj_size = 512, .reserve_low = 20 });
	CHECK(depot_reaches(b, 20, 10000));
	CHECK_EQ(STATS(b).refill_passes, 1);
	CHECK_DESTROY(b);
	CHECK_DESTROY(a);
	return TH_PASS;
}

/* The child of workers_stop_at_exit: a pool with a reserve and a 1 ms
 * decay keeps its worker busy; exit() must stop and join it. A handler
 * registered before the pool (so it runs after the library's, atexit
 * runs them in reverse) checks that the worker's thread is gone and its
 * counters no longer move; registered after the pool (check_too_early) it
 * runs while the worker still works, and must see it: the check can fail. */
static iop_pool_t *exit_pool;
static int exit_threads_before;

static void exit_check(void)
{
	struct iop_pool_stats a = STATS(exit_pool);
	sleep_ms(30); /* 30 decay periods */
	struct iop_pool_stats b = STATS(exit_pool);
	if (nthreads() != exit_threads_before)
		_exit(4); /* a worker thread is still there */
	if (b.decay_passes != a.decay_passes || b.refill_passes != a.refill_passes)
		_exit(5); /* ...or still counting */
	_exit(0);
}

static void exit_with_workers(bool check_too_early)
{
	exit_threads_before = nthreads();
	if (!check_too_early)
		atexit(exit_check);
	exit_pool = mk("exit", (struct rparams){ .obj_size = 256, .reserve_low = 10, .decay_ms = 1 });
	if (!exit_pool)
		_exit(3);
	if (check_too_early)
		atexit(exit_check);
	for (int ms = 0; field_depot(exit_pool) < 10; ms++)
		if (ms > 20000)
			_exit(7);
		else
			sleep_ms(1);
	/* The worker is running: a thread more, and decay passes going on. */
	if (nthreads() <= exit_threads_before)
		_exit(6);
	uint64_t passes = STATS(exit_pool).decay_passes;
	for (int ms = 0; STATS(exit_pool).decay_passes < passes + 3; ms++)
		if (ms > 20000)
			_exit(8);
		else
			sleep_ms(1);
	exit(0); /* the pool stays; atexit stops and joins the workers */
}

static int exit_status(bool check_too_early)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0)
		exit_with_workers(check_too_early);
	int status;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

TEST(workers_stop_at_exit)
{
	/* 0: after exit()'s handlers the worker threads are gone and the
	 * counters stand still. */
	CHECK_EQ(exit_status(false), 0);
	/* The same check run before the library's handler sees the worker
	 * (4: its thread is there). */
	CHECK_EQ(exit_status(true), 4);
	return TH_PASS;
}

/* ---- fault injection ----------------------------------------------------------------------- */

TEST(failing_the_nth_chunk_request_is_never_fatal)
{
	for (unsigned nth = 1; nth <= 12; nth++) {
		struct iop__fault f = { .fail_nth = nth };
		iop__fault_set(&f);
		/* create: populate needs several chunks */
		struct rparams r = { .obj_size = 65536, .populate = 100, .reserve_low = 40, .reserve_high = 80 };
		errno = 0;
		iop_pool_t *p = mk("fault", r);
		if (!p) {
			CHECK_EQ(errno, ENOMEM);
			continue;
		}
		CHECK_AUDIT(p);
		/* alloc: the default mode grows the pool */
		void *objs[300];
		unsigned n = 0;
		for (int i = 0; i < 300; i++) {
			int rc = iop_alloc_ex(p, &objs[n], 0, 0);
			if (rc == 0)
				n++;
			else
				CHECK_EQ(rc, -ENOMEM);
		}
		CHECK_GE(n, 250);
		CHECK_AUDIT(p);
		/* refill: the allocations drained the reserve; the worker
		 * brings it back, retrying a failed request */
		WAIT_FOR(field_depot(p) >= 40);
		CHECK_AUDIT(p);
		iop_free_bulk(p, objs, n);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
	iop__fault_set(NULL);
	return TH_PASS;
}

TEST(a_slow_failing_os_still_fills_the_reserve)
{
	struct iop__fault f = { .fail_pct = 50, .delay_us = 500 };
	iop__fault_set(&f);
	uint64_t before = iop__fault_injected();
	iop_pool_t *p = mk_or_die("slowos", (struct rparams){ .obj_size = 65536, .reserve_low = 200, .reserve_high = 300 });
	WAIT_FOR(field_depot(p) >= 200);
	struct iop_pool_stats st = STATS(p);
	CHECK_GE(st.chunk_acquire, 7);
	CHECK_GE(st.refill_fail, 1);
	CHECK_LE(st.refill_fail, iop__fault_injected() - before);
	CHECK_AUDIT(p);
	/* Default-mode allocations fail with ENOMEM when a request fails. */
	struct iop__fault all = { .fail_every = 1 };
	iop__fault_set(&all);
	void *objs[400];
	unsigned n = 0;
	int rc = 0;
	while (n < 400 && (rc = iop_alloc_ex(p, &objs[n], 0, 0)) == 0)
		n++;
	CHECK_EQ(rc, -ENOMEM);
	CHECK_GE(n, 200);
	CHECK_AUDIT(p);
	iop__fault_set(NULL);
	iop_free_bulk(p, objs, n);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(fault_injection_reads_the_environment)
{
	setenv("IOPOOL_FAULT_CHUNK_FAIL_EVERY", "2", 1);
	setenv("IOPOOL_FAULT_CHUNK_DELAY_US", "100", 1);
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.obj_size = 1 << 20;
	pp.chunk_size = 2 << 20; /* two objects per chunk */
	pp.cache_size = 1;
	iop_pool_t *p = iop_pool_create(&pp);
	REQUIRE(p);
	void *a = iop_alloc(p), *b = iop_alloc(p); /* chunk request 1 */
	CHECK(a && b);
	errno = 0;
	void *c = iop_alloc(p); /* request 2 fails */
	CHECK(c == NULL);
	CHECK_EQ(errno, ENOMEM);
	c = iop_alloc(p); /* request 3 */
	CHECK(c != NULL);
	CHECK_EQ(iop__fault_requests(), 3);
	CHECK_EQ(iop__fault_injected(), 1);
	CHECK_AUDIT(p);
	iop_free(p, a);
	iop_free(p, b);
	iop_free(p, c);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* The heap's large blocks come through the chunks' mapping path (issue
 * 10): a chunk request each, so the fault injection fails them too, and
 * they are on the address map (iop_heap_size() finds them). */
TEST(fault_injection_fails_large_heap_blocks)
{
	uint64_t before = iop__fault_requests();
	struct iop__fault all = { .fail_every = 1 };
	iop__fault_set(&all);
	errno = 0;
	void *big = iop_heap_alloc(4 * MiB);
	CHECK(big == NULL);
	CHECK_EQ(errno, ENOMEM);
	CHECK_EQ(iop__fault_injected(), 1);
	iop__fault_set(NULL);
	big = iop_heap_alloc(4 * MiB);
	REQUIRE(big);
	CHECK_EQ(iop__fault_requests() - before, 2);
	CHECK_EQ(iop_heap_size(big), 4 * MiB);
	memset(big, 1, 4 * MiB);
	CHECK_EQ(iop_domain_of(big), -EINVAL); /* no pool's */
	iop_heap_free(big);
	return TH_PASS;
}

TEST(fault_injection_percentage_from_the_environment)
{
	setenv("IOPOOL_FAULT_CHUNK_FAIL_PCT", "100", 1);
	iop_pool_t *p = mk_or_die("pct", (struct rparams){ .obj_size = 256 });
	void *o;
	CHECK_EQ(iop_alloc_ex(p, &o, 0, 0), -ENOMEM);
	CHECK_EQ(iop_alloc_ex(p, &o, 0, 0), -ENOMEM);
	CHECK_EQ(iop__fault_injected(), 2);
	iop__fault_set(NULL);
	CHECK_EQ(iop_alloc_ex(p, &o, 0, 0), 0);
	iop_free(p, o);
	CHECK_DESTROY(p);
	return TH_PASS;
}

static atomic_bool churn_stop;

static void *pool_churner(void *arg)
{
	(void)arg;
	while (!atomic_load(&churn_stop)) {
		iop_pool_t *p = mk("churn", (struct rparams){ .obj_size = 4096, .decay_ms = 1 });
		if (!p)
			continue;
		void *o[100];
		unsigned n = iop_alloc_bulk(p, o, 100);
		iop_free_bulk(p, o, n);
		iop_thread_flush();
		iop_pool_destroy(p);
	}
	return NULL;
}

TEST(reclaim_is_safe_while_other_threads_destroy_pools)
{
	pthread_t t[2];
	atomic_store(&churn_stop, false);
	for (int i = 0; i < 2; i++)
		REQUIRE(pthread_create(&t[i], NULL, pool_churner, NULL) == 0);
	int64_t bytes = 0;
	for (int i = 0; i < (TH_TSAN ? 200 : 2000); i++) {
		int64_t b = iop_reclaim();
		CHECK_GE(b, 0);
		bytes += b;
	}
	atomic_store(&churn_stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK_GE(bytes, 0);
	return TH_PASS;
}

TEST(memory_pressure_shrinks_every_pool)
{
	char path[64];
	snprintf(path, sizeof path, "/tmp/iopool-psi-%d", (int)getpid());
	th_write_psi(path, "0.00");
	setenv("IOPOOL_PSI_RECLAIM", "10", 1);
	setenv("IOPOOL_PSI_FILE", path, 1);
	setenv("IOPOOL_WORKER_PERIOD_MS", "10", 1);
	/* A pool without a reserve or decay of its own... */
	iop_pool_t *p = mk_or_die("pressed", (struct rparams){ .obj_size = 4096 });
	void *o[1000];
	REQUIRE(iop_alloc_bulk(p, o, 1000) == 1000);
	iop_free_bulk(p, o, 1000);
	iop_thread_flush();
	uint64_t chunks = STATS(p).chunks;
	CHECK_GE(chunks, 2);
	/* ...and one that starts the workers. */
	iop_pool_t *q = mk_or_die("decaying", (struct rparams){ .obj_size = 4096, .decay_ms = 10 });
	WAIT_FOR(STATS(q).decay_passes >= 5);
	CHECK_EQ(STATS(p).chunks, chunks); /* no pressure, no shrink */
	th_write_psi(path, "42.50");
	WAIT_FOR(STATS(p).chunks == 0);
	CHECK_AUDIT(p);
	th_write_psi(path, "0.00");
	CHECK_DESTROY(q);
	CHECK_DESTROY(p);
	unlink(path);
	return TH_PASS;
}

/* ---- pages ------------------------------------------------------------------------------------ */

static long read_num(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static bool write_num(const char *path, long v)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return false;
	bool ok = fprintf(f, "%ld\n", v) > 0;
	return fclose(f) == 0 && ok;
}

#define NR_HUGE "/proc/sys/vm/nr_hugepages"
#define FREE_HUGE "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"

TEST(hugetlb_falls_back_when_no_pages_are_free)
{
	TH_SKIP_IF(read_num(FREE_HUGE) > 0, "hugetlb pages are free on this machine");
	iop_pool_t *p = mk_or_die("nohuge", (struct rparams){ .obj_size = 4096, .flags = IOP_F_HUGETLB });
	void *o = iop_alloc(p);
	REQUIRE(o);
	memset(o, 1, 4096);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.chunks_hugetlb, 0);
	CHECK(st.page_kind == IOP_PAGES_THP || st.page_kind == IOP_PAGES_4K);
	iop_free(p, o);
	iop_pool_t *q = mk_or_die("nothp", (struct rparams){ .obj_size = 4096, .flags = IOP_F_NO_THP });
	o = iop_alloc(q);
	REQUIRE(o);
	CHECK_EQ(STATS(q).page_kind, IOP_PAGES_4K);
	iop_free(q, o);
	CHECK_DESTROY(q);
	CHECK_DESTROY(p);
	return TH_PASS;
}

static long saved_nr = -1;

static void restore_nr(void)
{
	if (saved_nr >= 0)
		write_num(NR_HUGE, saved_nr);
}

TEST(hugetlb_pages_back_chunks_when_reserved)
{
	long nr = read_num(NR_HUGE);
	TH_SKIP_IF(nr < 0 || geteuid() != 0, "needs root and " NR_HUGE);
	saved_nr = nr;
	atexit(restore_nr);
	bool raised = write_num(NR_HUGE, nr + 4) && read_num(FREE_HUGE) >= 2;
	if (!raised) {
		restore_nr();
		TH_SKIP_IF(true, "could not reserve hugetlb pages");
	}
	iop_pool_t *p = mk("huge", (struct rparams){ .obj_size = 4096, .flags = IOP_F_HUGETLB });
	REQUIRE(p);
	void *o = iop_alloc(p);
	REQUIRE(o);
	memset(o, 1, 4096);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.page_kind, IOP_PAGES_HUGETLB);
	CHECK_EQ(st.chunks_hugetlb, 1);
	CHECK_EQ(st.bytes_resident, 2 * MiB);
	CHECK_AUDIT(p);
	/* Released and reused like any chunk. */
	iop_free(p, o);
	CHECK_EQ(iop_pool_shrink(p, 0), (int64_t)(2 * MiB));
	CHECK_DESTROY(p);
	restore_nr();
	saved_nr = -1;
	CHECK_EQ(read_num(NR_HUGE), nr);
	return TH_PASS;
}

int main(int argc, char **argv)
{
	return th_main(argc, argv);
}
