/* SPDX-License-Identifier: MIT */
/*
 * Races between maintenance and use: iop_reclaim() and iop_pool_shrink()
 * while other threads create, use and destroy pools (so pool ids are
 * reused); what shrink returns while threads are using the pool; and the
 * refill workers' idle detection and restart.
 *
 * The stress cases run for a bounded time (IOP_RACES_MS overrides it: a
 * person may run them for minutes) under a watchdog that fails the case
 * if a call hangs (a destroy that spins, a worker that never ends).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "iop_test.h"

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

/* How long a stress case runs: ms in Release, less under sanitizers. */
static int64_t run_ns(int ms)
{
	const char *v = getenv("IOP_RACES_MS");
	if (v && *v)
		ms = atoi(v);
	else if (TH_TSAN || TH_ASAN || IOP_TEST_DEBUG >= 2)
		ms = ms / 3;
	return (int64_t)ms * 1000000;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* ---- iop_reclaim() and shrink racing create, use and destroy ------------------ */

enum { CHURNERS = 3, MAXOBJ = 256 };

static atomic_bool churn_stop;
static iop_pool_t *shared_pool; /* used by every churner; shrunk by main */
static atomic_ulong churn_rounds, churn_destroyed;

struct churner {
	int id;
	uint64_t seed;
};

static iop_pool_t *churn_pool(uint64_t *s, bool *bounded)
{
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	uint64_t r = rnd(s);
	pp.name = "churn";
	pp.obj_size = (size_t)64 << (r % 4);
	pp.cache_size = 4 + (uint32_t)(r >> 8) % 13; /* magazines move often */
	*bounded = (r >> 16) % 4 != 0; /* most: their slots are per thread */
	if (*bounded)
		pp.limit = MAXOBJ + (r >> 20) % 512;
	/* Some pools start the workers: their passes race the destroy too. */
	if ((r >> 32) % 3 == 0) {
		pp.decay_ms = 1;
		pp.decay_pct = 100;
	}
	if ((r >> 40) % 5 == 0)
		pp.reserve_low = 8;
	return iop_pool_create(&pp);
}

static void *churner_main(void *arg)
{
	struct churner *c = arg;
	uint64_t s = c->seed;
	void *objs[MAXOBJ], *sh[16];
	while (!atomic_load(&churn_stop)) {
		bool bounded;
		iop_pool_t *p = churn_pool(&s, &bounded);
		if (!p) {
			th_fail_at(__FILE__, __LINE__, "iop_pool_create: %s", strerror(errno));
			break;
		}
		size_t size = iop_pool_obj_size(p);
		uint64_t tag = ((uint64_t)c->id << 48) | atomic_fetch_add(&churn_rounds, 1);
		for (int round = 0, rounds = 1 + (int)(rnd(&s) % 3); round < rounds; round++) {
			unsigned n = 1 + (unsigned)(rnd(&s) % (rnd(&s) % 2 ? 32 : MAXOBJ));
			for (unsigned i = 0; i < n; i++) {
				objs[i] = iop_alloc(p);
				if (!objs[i]) {
					th_fail_at(__FILE__, __LINE__, "iop_alloc %u of %u: %s", i, n, strerror(errno));
					n = i;
					break;
				}
				th_stamp(objs[i], size, tag + i);
			}
			/* The shared pool, that main shrinks meanwhile. */
			unsigned k = (unsigned)(rnd(&s) % 16);
			for (unsigned i = 0; i < k; i++) {
				sh[i] = iop_alloc(shared_pool);
				if (sh[i])
					th_stamp(sh[i], 256, tag ^ i);
			}
			for (unsigned i = 0; i < k; i++) {
				if (sh[i]) {
					CHECK_STAMP(sh[i], 256, tag ^ i);
					iop_free(shared_pool, sh[i]);
				}
			}
			for (unsigned i = 0; i < n; i++) {
				CHECK_STAMP(objs[i], size, tag + i);
				iop_free(p, objs[i]);
			}
			if (rnd(&s) % 8 == 0)
				CHECK_GE(iop_pool_shrink(p, 0), 0);
		}
		if (rnd(&s) % 2)
			iop_thread_flush();
		int rc = iop_pool_audit(p);
		if (rc) {
			th_fail_at(__FILE__, __LINE__, "audit of a %s pool before destroy: %d",
				   bounded ? "bounded" : "plain", rc);
			break;
		}
		struct iop_pool_stats st = STATS(p);
		CHECK_EQ(st.in_flight, 0);
		rc = iop_pool_destroy(p);
		if (rc) {
			th_fail_at(__FILE__, __LINE__, "destroy of an empty %s pool: %d", bounded ? "bounded" : "plain",
				   rc);
			break;
		}
		atomic_fetch_add(&churn_destroyed, 1);
	}
	return NULL;
}

TEST(reclaim_and_shrink_racing_create_and_destroy_keep_pools_intact)
{
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = "shared";
	pp.obj_size = 256;
	pp.cache_size = 8;
	shared_pool = iop_pool_create(&pp);
	REQUIRE(shared_pool);
	th_watchdog("reclaim racing create and destroy (a destroy or a call hung)", 60);
	pthread_t t[CHURNERS];
	struct churner c[CHURNERS];
	for (int i = 0; i < CHURNERS; i++) {
		c[i] = (struct churner){ .id = i + 1, .seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) };
		REQUIRE(pthread_create(&t[i], NULL, churner_main, &c[i]) == 0);
	}
	int64_t end = now_ns() + run_ns(2000);
	uint64_t calls = 0;
	while (now_ns() < end && !th_failed()) {
		CHECK_GE(iop_reclaim(), 0);
		CHECK_GE(iop_pool_shrink(shared_pool, 0), 0);
		calls++;
	}
	atomic_store(&churn_stop, true);
	for (int i = 0; i < CHURNERS; i++)
		pthread_join(t[i], NULL);
	alarm(0);
	printf("%llu reclaim+shrink calls; %lu pools destroyed\n", (unsigned long long)calls,
	       atomic_load(&churn_destroyed));
	CHECK_GE(atomic_load(&churn_destroyed), 10);
	CHECK_AUDIT(shared_pool);
	CHECK_EQ(STATS(shared_pool).in_flight, 0);
	CHECK_DESTROY(shared_pool);
	return TH_PASS;
}

/* ---- ids reused ------------------------------------------------------------------------ */

/* A destroyed pool's id goes to the next pool created, and the threads'
 * slots are found by id: the new pool starts with none of the old one's
 * objects or counts, whatever kind either is. */
TEST(a_pool_given_a_destroyed_pools_id_starts_clean)
{
	for (int kind = 0; kind < 4; kind++) {
		struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
		pp.name = "old";
		pp.obj_size = 128;
		pp.cache_size = 8;
		if (kind & 1)
			pp.limit = 1000;
		iop_pool_t *old = iop_pool_create(&pp);
		REQUIRE(old);
		void *o[100];
		for (int i = 0; i < 100; i++)
			REQUIRE((o[i] = iop_alloc(old)) != NULL);
		for (int i = 0; i < 100; i++)
			iop_free(old, o[i]);
		CHECK_DESTROY(old);
		pp.name = "new";
		pp.limit = kind & 2 ? 1000 : 0;
		iop_pool_t *p = iop_pool_create(&pp);
		REQUIRE(p);
		struct iop_pool_stats st = STATS(p);
		CHECK_EQ(st.alloc_fast + st.alloc_slow, 0);
		CHECK_EQ(st.free_fast + st.free_slow, 0);
		CHECK_EQ(st.cached, 0);
		void *x = iop_alloc(p);
		REQUIRE(x);
		iop_free(p, x);
		iop_thread_flush();
		st = STATS(p);
		CHECK_EQ(st.alloc_fast + st.alloc_slow, 1);
		CHECK_EQ(st.free_fast + st.free_slow, 1);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
	return TH_PASS;
}

/* ---- the workers ------------------------------------------------------------------ */

/* Poll cond every millisecond until it holds; the watchdog fails the case
 * if it never does. */
#define WAIT_FOR(cond)                                                  \
	do {                                                            \
		th_watchdog(#cond, 30);                                 \
		while (!(cond))                                         \
			sleep_ms(1);                                    \
		alarm(0);                                               \
	} while (0)

struct holder {
	iop_pool_t *pool;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stage; /* 1: its cache holds objects; 2: may go */
};

static void *cache_holder(void *arg)
{
	struct holder *h = arg;
	void *o[40];
	unsigned n = iop_alloc_bulk(h->pool, o, 40);
	iop_free_bulk(h->pool, o, n);
	pthread_mutex_lock(&h->mu);
	h->stage = 1;
	pthread_cond_broadcast(&h->cv);
	while (h->stage != 2)
		pthread_cond_wait(&h->cv, &h->mu);
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

/*
 * A bounded pool nobody uses, whose depot decays slowly (1% a pass): each
 * decay pass compacts the depot and puts magazines back into it. That is
 * the worker's own traffic; counted as use, the pool never looked idle
 * while its depot decayed, and an idle thread's cached objects were taken
 * only once the depot was empty (hundreds of passes). Idle, the caches go
 * within a few passes, while most of the depot is still there.
 *
 * Nothing here depends on when this thread runs: the holder's cache may
 * be taken before this thread looks (under load it was, in about one run
 * of ten when this read the cache right after the holder filled it, and
 * then waited for a take that had already happened). So the count of
 * takes is read before the holder starts, with every cache flushed, and
 * the case waits for one more take and empty caches; passes 20 ms apart
 * make half the depot last about 1.4 s, far longer than this thread is
 * ever kept off a CPU.
 */
TEST(a_decaying_pool_whose_only_traffic_is_the_workers_is_idle)
{
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = "idle";
	pp.obj_size = 256;
	pp.limit = 4000;
	pp.cache_size = 16;
	pp.decay_ms = 20;
	pp.decay_pct = 1;
	iop_pool_t *p = iop_pool_create(&pp);
	REQUIRE(p);
	enum { N = 3000 };
	void **objs = calloc(N, sizeof(void *));
	REQUIRE(objs);
	for (int i = 0; i < N; i++)
		REQUIRE((objs[i] = iop_alloc(p)) != NULL);
	iop_free_bulk(p, objs, N);
	free(objs);
	/* The depot decays: each pass from now on puts magazines back. */
	WAIT_FOR(STATS(p).decay_objs >= 1);
	/* No cache holds anything: a take from now on is the holder's. */
	FLUSH_ALL(p);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.cached, 0);
	uint64_t depot0 = st.depot, trims0 = st.trims;
	CHECK_GE(depot0, 2000);
	/* A thread fills its cache (use: the next pass sees it), then
	 * stays idle with it. */
	struct holder h = { .pool = p, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, cache_holder, &h) == 0);
	pthread_mutex_lock(&h.mu);
	while (h.stage != 1)
		pthread_cond_wait(&h.cv, &h.mu);
	pthread_mutex_unlock(&h.mu);
	/* Its cache is taken (a take counted since trims0: it held
	 * objects) and nothing is cached any more. */
	WAIT_FOR(STATS(p).trims > trims0 && STATS(p).cached == 0);
	st = STATS(p);
	printf("caches taken after %llu decay passes, depot %llu of %llu left\n",
	       (unsigned long long)st.decay_passes, (unsigned long long)st.depot, (unsigned long long)depot0);
	/* 1% a pass: half of the depot is left for about 69 passes. */
	CHECK_GE(st.depot, depot0 / 2);
	CHECK_GE(st.decay_objs, 1); /* it did decay meanwhile */
	CHECK_AUDIT(p);
	pthread_mutex_lock(&h.mu);
	h.stage = 2;
	pthread_cond_broadcast(&h.cv);
	pthread_mutex_unlock(&h.mu);
	pthread_join(t, NULL);
	CHECK_DESTROY(p);
	return TH_PASS;
}

static struct {
	iop_pool_t *last;      /* the only pool that uses the workers */
	iop_pool_t *successor; /* made by the hook */
	pthread_t main;
	atomic_int armed;      /* last and main are set */
	atomic_int done;       /* 1: the hook replaced the pool; -1: it failed */
} restart;

static int plain_map(void *arg, void *base, size_t len, uint64_t *handle)
{
	(void)arg, (void)base, (void)len;
	*handle = 0;
	return 0;
}

/* Runs on the domain-0 worker, in the iop_reclaim() that memory pressure
 * starts: destroying the last pool that uses the workers stops them from
 * inside the worker's own pass (it is detached), and the new pool starts
 * them again. */
static void restart_unmap(void *arg, void *base, size_t len, uint64_t handle)
{
	(void)arg, (void)base, (void)len, (void)handle;
	if (!atomic_load(&restart.armed) || pthread_equal(pthread_self(), restart.main) ||
	    atomic_load(&restart.done))
		return;
	if (iop_pool_destroy(restart.last) != 0) {
		atomic_store(&restart.done, -1);
		return;
	}
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = "successor";
	pp.obj_size = 256;
	pp.decay_ms = 5;
	restart.successor = iop_pool_create(&pp);
	atomic_store(&restart.done, restart.successor ? 1 : -1);
}

TEST(a_worker_restarted_from_its_own_pass_runs_once)
{
	char path[64];
	snprintf(path, sizeof path, "/tmp/iopool-races-psi-%d", (int)getpid());
	th_write_psi(path, "0.00");
	setenv("IOPOOL_PSI_RECLAIM", "10", 1);
	setenv("IOPOOL_PSI_FILE", path, 1);
	setenv("IOPOOL_WORKER_PERIOD_MS", "5", 1);
	restart.main = pthread_self();
	/* A pool without workers, with free chunks that a reclaim unmaps. */
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = "pressed";
	pp.obj_size = 4096;
	pp.map = plain_map;
	pp.unmap = restart_unmap;
	iop_pool_t *pressed = iop_pool_create(&pp);
	REQUIRE(pressed);
	void *o[1000];
	REQUIRE(iop_alloc_bulk(pressed, o, 1000) == 1000);
	iop_free_bulk(pressed, o, 1000);
	FLUSH_ALL(pressed);
	REQUIRE(STATS(pressed).chunks >= 2);
	pp = (struct iop_pool_params)IOP_POOL_PARAMS_INIT;
	pp.name = "last";
	pp.obj_size = 256;
	pp.decay_ms = 5;
	restart.last = iop_pool_create(&pp);
	REQUIRE(restart.last);
	atomic_store(&restart.armed, 1);
	CHECK_EQ(th_threads_named("iop-refill/0"), 1);
	th_write_psi(path, "42.50");
	WAIT_FOR(atomic_load(&restart.done) != 0);
	th_write_psi(path, "0.00");
	REQUIRE(atomic_load(&restart.done) == 1);
	/* The successor's worker runs its passes... */
	uint64_t passes = STATS(restart.successor).decay_passes;
	WAIT_FOR(STATS(restart.successor).decay_passes >= passes + 3);
	/* ...and the detached one ends after its pass: one worker, not two
	 * running the same domain's passes. */
	int64_t until = now_ns() + (int64_t)2000 * 1000000;
	while (th_threads_named("iop-refill/0") > 1 && now_ns() < until)
		sleep_ms(5);
	CHECK_EQ(th_threads_named("iop-refill/0"), 1);
	CHECK_DESTROY(restart.successor);
	CHECK_EQ(th_threads_named("iop-refill/0"), 0);
	CHECK_AUDIT(pressed);
	CHECK_DESTROY(pressed);
	unlink(path);
	return TH_PASS;
}

/* ---- shrink under load ------------------------------------------------------------- */

enum { LOADERS = 2, BURST = 16384, STEADY_MAX = 64 };

static atomic_bool load_stop;
static atomic_int load_steady; /* loaders past their burst */

struct loader {
	iop_pool_t *pool;
	uint64_t seed;
	uint64_t pairs;
};

static void *loader_main(void *arg)
{
	struct loader *l = arg;
	size_t size = iop_pool_obj_size(l->pool);
	/* A burst grows the pool... */
	void **burst = calloc(BURST, sizeof(void *));
	unsigned n = 0;
	while (burst && n < BURST && (burst[n] = iop_alloc(l->pool)) != NULL)
		n++;
	if (n < BURST)
		th_fail_at(__FILE__, __LINE__, "burst: %u of %u objects", n, (unsigned)BURST);
	iop_free_bulk(l->pool, burst, n);
	free(burst);
	atomic_fetch_add(&load_steady, 1);
	/* ...then a steady load needs far less of it. */
	void *o[STEADY_MAX];
	uint64_t tag = l->seed << 32;
	while (!atomic_load(&load_stop)) {
		unsigned k = 1 + (unsigned)(rnd(&l->seed) % STEADY_MAX);
		for (unsigned i = 0; i < k; i++) {
			if (!(o[i] = iop_alloc(l->pool))) {
				th_fail_at(__FILE__, __LINE__, "steady alloc: %s", strerror(errno));
				k = i;
				break;
			}
			th_stamp(o[i], size, tag + i);
		}
		for (unsigned i = 0; i < k; i++) {
			CHECK_STAMP(o[i], size, tag + i);
			iop_free(l->pool, o[i]);
		}
		l->pairs += k;
		tag += k;
	}
	return NULL;
}

/*
 * Two threads use a pool that a burst grew to many chunks, while the main
 * thread shrinks it (and reclaims) in a loop. What iop_pool_shrink()
 * promises under load: every chunk whose objects are all in caches, the
 * depot or the slab goes back, so the pool comes down to about what the
 * steady load holds (in flight, in the users' caches) and stays there. The
 * loaders' chunks are re-mapped as they need them; nothing is lost.
 */
static int shrink_under_load(bool bounded, size_t obj_size)
{
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = bounded ? "loaded-bounded" : "loaded";
	pp.obj_size = obj_size;
	if (bounded)
		pp.limit = LOADERS * BURST;
	iop_pool_t *p = iop_pool_create(&pp);
	REQUIRE(p);
	th_watchdog("shrink under load", 60);
	atomic_store(&load_stop, false);
	atomic_store(&load_steady, 0);
	pthread_t t[LOADERS];
	struct loader l[LOADERS];
	for (int i = 0; i < LOADERS; i++) {
		l[i] = (struct loader){ .pool = p, .seed = 0x2545f4914f6cdd1dull * (uint64_t)(i + 1) };
		REQUIRE(pthread_create(&t[i], NULL, loader_main, &l[i]) == 0);
	}
	while (atomic_load(&load_steady) < LOADERS)
		sleep_ms(1);
	struct iop_pool_stats st = STATS(p);
	uint64_t grown = st.chunks;
	int64_t end = now_ns() + run_ns(1500), bytes = 0;
	uint64_t calls = 0, fewest = grown;
	while (now_ns() < end) {
		int64_t b = iop_pool_shrink(p, 0);
		CHECK_GE(b, 0);
		bytes += b;
		b = iop_reclaim();
		CHECK_GE(b, 0);
		bytes += b;
		calls++;
		uint64_t c = STATS(p).chunks;
		if (c < fewest)
			fewest = c;
	}
	atomic_store(&load_stop, true);
	uint64_t pairs = 0;
	for (int i = 0; i < LOADERS; i++) {
		pthread_join(t[i], NULL);
		pairs += l[i].pairs;
	}
	alarm(0);
	st = STATS(p);
	printf("%s, %s caches, %zu-byte objects: grown to %llu chunks; %llu shrink+reclaim calls returned %lld bytes "
	       "(chunk_release %llu, fewest chunks %llu) and released %llu pages (%llu used again) during %llu "
	       "steady pairs\n",
	       bounded ? "bounded" : "plain", st.cache_mode == IOP_CACHE_MODE_CPU ? "per-CPU" : "per-thread",
	       obj_size, (unsigned long long)grown, (unsigned long long)calls, (long long)bytes,
	       (unsigned long long)st.chunk_release, (unsigned long long)fewest, (unsigned long long)st.page_release,
	       (unsigned long long)st.page_reuse, (unsigned long long)pairs);
	/* Pages released and not used again, less those of the chunks
	 * unmapped since: what is released now. */
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	CHECK_LE(st.page_reuse, st.page_release);
	CHECK_LE(st.bytes_released, (st.page_release - st.page_reuse) * page);
	CHECK_LE(st.bytes_released, st.bytes_mapped);
	CHECK_GE(grown, 8);
	/* The steady load holds at most 2 * 64 objects in flight and a few
	 * magazines per thread or CPU, against 2048 objects a chunk: 1 or 2
	 * chunks in Release runs, 3 seen under ThreadSanitizer. */
	CHECK_LE(fewest, 4);
	CHECK_GE(st.chunk_release, grown - 4);
	CHECK_EQ(bytes, (int64_t)(st.chunk_release * st.chunk_size));
	CHECK_EQ(st.in_flight, 0);
	iop_thread_flush();
	CHECK_AUDIT(p);
	/* Quiescent, it all goes. */
	iop_reclaim();
	st = STATS(p);
	CHECK_CACHED_BY_NO_THREAD(st);
	CHECK_EQ(st.chunks, 0);
	CHECK_EQ(st.bytes_released, 0);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* The loaders stamp every object they hold and check it before the free:
 * an object handed out twice, or a page given back to the OS under one,
 * fails the case. */
TEST(shrink_under_load_returns_the_chunks_the_load_does_not_hold)
{
	return shrink_under_load(false, 1024);
}

TEST(shrink_under_load_returns_the_chunks_a_bounded_load_does_not_hold)
{
	return shrink_under_load(true, 1024);
}

/* 3000-byte objects straddle pages: released only when every object on
 * the page is free. */
TEST(shrink_under_load_releases_pages_under_straddling_objects_safely)
{
	return shrink_under_load(false, 3000);
}

TEST(shrink_under_load_releases_pages_of_a_bounded_pool_safely)
{
	return shrink_under_load(true, 3000);
}

int main(int argc, char **argv)
{
	return th_main(argc, argv);
}
