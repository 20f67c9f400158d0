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

#include <dirent.h>
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

static const char *watchdog_what = "";

static void watchdog_fired(int sig)
{
	(void)sig;
	static const char msg[] = "watchdog: this took too long: ";
	ssize_t w = write(2, msg, sizeof(msg) - 1);
	w = write(2, watchdog_what, strlen(watchdog_what));
	w = write(2, "\n", 1);
	(void)w;
	_exit(TH_FAIL);
}

static void watchdog(const char *what, unsigned seconds)
{
	watchdog_what = what;
	signal(SIGALRM, watchdog_fired);
	alarm(seconds);
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

/* Threads of this process named `name` (/proc/self/task/N/comm). */
static int threads_named(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return -1;
	int n = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		char path[300], comm[32] = "";
		snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		if (fgets(comm, sizeof comm, f))
			comm[strcspn(comm, "\n")] = 0;
		fclose(f);
		n += strcmp(comm, name) == 0;
	}
	closedir(d);
	return n;
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
	*bounded = (r >> 16) & 1;
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
	watchdog("reclaim racing create and destroy (a destroy or a call hung)", TH_TSAN || TH_ASAN ? 240 : 60);
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

int main(int argc, char **argv)
{
	return th_main(argc, argv);
}
