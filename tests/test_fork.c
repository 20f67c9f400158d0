/* SPDX-License-Identifier: MIT */
/*
 * fork(): the pre-fork server pattern (issue 13, part 2).
 *
 * The parent makes three pools (plain, bounded, and one with a reserve kept
 * by the refill worker) and two threads that allocate and free them in
 * bulk, past what a cache holds, so that they are in the slow paths (the
 * depot's lock, the slab, flushes and their fences) most of the time. It
 * forks children while they run. Each child allocates and frees 200,000
 * times, bulk-allocates on the slow path, drains the reserve and sees its
 * own refill worker fill it again, creates and destroys a pool, audits
 * every pool and exits 0. A child that does not exit in time is killed
 * and counted as a hang: the test reports it and fails, it never hangs.
 *
 * Also: a child that exec()s at once, and a fork() from inside a map hook
 * (the hook runs with no iopool lock held, so it must not deadlock).
 *
 * Environment: IOP_FORK_RUNS (children in all, default 100; 20 under
 * TSan), IOP_FORK_CHILD_S (seconds before a child counts as hung).
 */

#include "iop_test.h"
#include "iopool/shm.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#define RESERVE_LOW 128
#define RESERVE_HIGH 256

static iop_pool_t *plain, *bounded, *reserved;
static atomic_bool stop;
/* While children run, the threads wait: they matter at the fork, and the
 * children need the CPUs. */
static atomic_bool paused;
static atomic_ulong rounds[2];

static unsigned env_uint(const char *name, unsigned dflt)
{
	const char *v = getenv(name);
	return v && *v ? (unsigned)strtoul(v, NULL, 10) : dflt;
}

static uint64_t ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static iop_pool_t *mk(const char *name, size_t obj, uint64_t limit, uint64_t reserve_low)
{
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = name;
	pp.obj_size = obj;
	pp.limit = limit;
	pp.reserve_low = reserve_low;
	pp.reserve_high = reserve_low ? RESERVE_HIGH : 0;
	iop_pool_t *p = iop_pool_create(&pp);
	if (!p) {
		fprintf(stderr, "iop_pool_create(%s): %s\n", name, strerror(errno));
		exit(TH_FAIL);
	}
	return p;
}

/* ---- the parent's threads: bulk calls past a cache, flushes -------------------- */

static void churn(iop_pool_t *p, void **objs, uint64_t *seed)
{
	unsigned n = 100 + (unsigned)(th_rand(seed) % 400);
	unsigned got = iop_alloc_bulk(p, objs, n);
	for (unsigned i = 0; i < got; i++)
		*(uint64_t *)objs[i] = i; /* touch it */
	iop_free_bulk(p, objs, got);
}

static void *busy(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg;
	void *objs[512];
	uint64_t seed = th_seed(me, 13);
	for (unsigned long r = 0; !atomic_load_explicit(&stop, memory_order_relaxed); r++) {
		while (atomic_load_explicit(&paused, memory_order_relaxed) &&
		       !atomic_load_explicit(&stop, memory_order_relaxed))
			usleep(200);
		churn(plain, objs, &seed);
		churn(bounded, objs, &seed);
		churn(reserved, objs, &seed);
		if (r % 16 == me)
			iop_pool_flush(plain); /* a drain: the CPU lock and a fence */
		atomic_store_explicit(&rounds[me], r, memory_order_relaxed);
	}
	return NULL;
}

static pthread_t threads[2];

static void start_busy(void)
{
	plain = mk("fork-plain", 256, 0, 0);
	bounded = mk("fork-bounded", 512, 8192, 0);
	reserved = mk("fork-reserve", 1024, 0, RESERVE_LOW);
	atomic_store(&stop, false);
	for (uintptr_t i = 0; i < 2; i++)
		REQUIRE(pthread_create(&threads[i], NULL, busy, (void *)i) == 0);
	/* Both in their loops before the first fork. */
	while (atomic_load(&rounds[0]) < 2 || atomic_load(&rounds[1]) < 2)
		sched_yield();
}

/* Let the threads run and wait until both are in their loops again. */
static void resume_busy(void)
{
	unsigned long r0 = atomic_load(&rounds[0]), r1 = atomic_load(&rounds[1]);
	atomic_store(&paused, false);
	while (atomic_load(&rounds[0]) < r0 + 2 || atomic_load(&rounds[1]) < r1 + 2)
		sched_yield();
}

static void stop_busy(void)
{
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(threads[i], NULL);
	CHECK_EQ(iop_pool_audit(plain), 0);
	CHECK_EQ(iop_pool_audit(bounded), 0);
	CHECK_EQ(iop_pool_audit(reserved), 0);
	CHECK_EQ(iop_pool_destroy(plain), 0);
	CHECK_EQ(iop_pool_destroy(bounded), 0);
	CHECK_EQ(iop_pool_destroy(reserved), 0);
}

/* ---- the child ---------------------------------------------------------------- */

static int child_fail(const char *what, long v)
{
	fprintf(stderr, "child %d: %s (%ld)\n", (int)getpid(), what, v);
	return 1;
}

/* A thread of this process named `name` (the refill worker's). */
static bool has_thread(const char *name)
{
	bool found = false;
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return false;
	for (struct dirent *e; !found && (e = readdir(d));) {
		char path[300], comm[32] = "";
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "re");
		if (f) {
			found = fgets(comm, sizeof(comm), f) && strncmp(comm, name, strlen(name)) == 0;
			fclose(f);
		}
	}
	closedir(d);
	return found;
}

static struct iop_pool_stats stats(iop_pool_t *p)
{
	struct iop_pool_stats s = { .struct_size = sizeof(s) };
	iop_pool_stats(p, &s);
	return s;
}

/* Empty the reserve into held[*n..cap) with IOP_NOWAIT calls (which map
 * nothing and never block). */
static void drain_reserve(void **held, size_t cap, size_t *n)
{
	while (*n < cap && iop_alloc_ex(reserved, &held[*n], IOP_NOWAIT, 0) == 0)
		(*n)++;
}

/* The reserve, emptied by IOP_NOWAIT calls, is filled again by this
 * process's own worker (the parent's cannot reach the child's memory). */
static int child_reserve(void)
{
	size_t cap = 1u << 16, n = 0;
	void **held = malloc(cap * sizeof(void *));
	if (!held)
		return child_fail("malloc", 0);
	uint64_t passes = stats(reserved).refill_passes;
	drain_reserve(held, cap, &n);
	/* A call that may block: the first after the fork starts the
	 * child's workers. */
	void *x = iop_alloc(reserved);
	if (!x)
		return child_fail("iop_alloc(reserved)", errno);
	uint64_t give_up = ms_now() + 5000;
	struct iop_pool_stats s = stats(reserved);
	unsigned redrained = 0;
	while ((s.depot < RESERVE_LOW || s.refill_passes == passes) && ms_now() < give_up) {
		/* Filled, but not by a worker pass: the objects this thread's
		 * own slow path could not put in its CPU's slot (it moved to
		 * a CPU whose slot was full) went to the depot. Empty it
		 * again, so that only the worker can fill it. */
		if (s.depot >= RESERVE_LOW && s.refill_passes == passes) {
			drain_reserve(held, cap, &n);
			redrained++;
		}
		usleep(1000);
		s = stats(reserved);
	}
	int rc = 0;
	if (s.depot < RESERVE_LOW || s.refill_passes == passes) {
		fprintf(stderr,
			"child %d: drained %zu (%u times again); refill passes %llu before, %llu after; "
			"depot_get %llu depot_put %llu alloc_slow %llu\n",
			(int)getpid(), n, redrained, (unsigned long long)passes, (unsigned long long)s.refill_passes,
			(unsigned long long)s.depot_get, (unsigned long long)s.depot_put,
			(unsigned long long)s.alloc_slow);
		rc = child_fail("the reserve was not refilled: depot", (long)s.depot);
	} else if (!has_thread("iop-refill/0")) {
		rc = child_fail("no refill worker thread in the child", 0);
	}
	if (redrained)
		fprintf(stderr, "child %d: the depot was filled by this thread's own slow path %u times\n",
			(int)getpid(), redrained);
	iop_free(reserved, x);
	iop_free_bulk(reserved, held, (unsigned)n);
	free(held);
	return rc;
}

/* audit_busy: audit the pools the parent's threads were using (a child
 * forked from a hook does not take back what they were carrying). */
static int child_body(unsigned pairs, bool audit_busy)
{
	void *objs[600];
	/* 200,000 allocations and frees, single and a few at a time. */
	for (unsigned i = 0; i < pairs; i++) {
		iop_pool_t *p = i % 3 == 0 ? plain : i % 3 == 1 ? bounded : reserved;
		void *o = iop_alloc(p);
		if (!o)
			return child_fail("iop_alloc", errno);
		*(volatile char *)o = 1;
		iop_free(p, o);
	}
	/* Bulk past a cache: the slow path, the depot and the slab. */
	iop_pool_t *all[3] = { plain, bounded, reserved };
	for (int k = 0; k < 3; k++) {
		for (int rep = 0; rep < 4; rep++) {
			unsigned got = iop_alloc_bulk(all[k], objs, 600);
			if (got != 600)
				return child_fail("iop_alloc_bulk got", got);
			iop_free_bulk(all[k], objs, got);
		}
	}
	if (child_reserve())
		return 1;
	iop_pool_t *fresh = mk("fork-fresh", 128, 0, 16);
	unsigned got = iop_alloc_bulk(fresh, objs, 300);
	iop_free_bulk(fresh, objs, got);
	if (got != 300)
		return child_fail("fresh pool: iop_alloc_bulk got", got);
	int rc = iop_pool_destroy(fresh);
	if (rc)
		return child_fail("iop_pool_destroy(fresh)", rc);
	for (int k = 0; audit_busy && k < 3; k++)
		if ((rc = iop_pool_audit(all[k])) != 0)
			return child_fail(iop_pool_name(all[k]), rc);
	return 0;
}

/* ---- forking with a watchdog ------------------------------------------------------ */

struct kid {
	pid_t pid;
	uint64_t deadline;
	int status;
	bool hung;
};

/* Wait for the children; one past its deadline is killed and counted as a
 * hang. Returns the hangs. */
static unsigned reap(struct kid *k, int n)
{
	unsigned hangs = 0;
	for (int i = 0; i < n; i++) {
		for (;;) {
			pid_t r = waitpid(k[i].pid, &k[i].status, WNOHANG);
			if (r == k[i].pid)
				break;
			if (r < 0 && errno != EINTR) {
				k[i].status = -1;
				break;
			}
			if (ms_now() > k[i].deadline && !k[i].hung) {
				k[i].hung = true;
				hangs++;
				kill(k[i].pid, SIGKILL);
			}
			usleep(1000);
		}
	}
	return hangs;
}

static void report(const char *what, struct kid *k, unsigned *fails)
{
	if (k->hung) {
		fprintf(stderr, "%s: child %d hung; killed\n", what, (int)k->pid);
		return;
	}
	if (WIFEXITED(k->status) && WEXITSTATUS(k->status) == 0)
		return;
	(*fails)++;
	if (WIFSIGNALED(k->status))
		fprintf(stderr, "%s: child %d killed by signal %d\n", what, (int)k->pid, WTERMSIG(k->status));
	else
		fprintf(stderr, "%s: child %d exited with %d\n", what, (int)k->pid, WEXITSTATUS(k->status));
}

static void parent_stuck(int sig)
{
	(void)sig;
	static const char msg[] = "test_fork: the parent made no progress (fork() or a call deadlocked)\n";
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(3);
	_exit(TH_FAIL);
}

/* A ThreadSanitizer build of the library installs no atfork handlers
 * (src/fork.c: gcc 12's TSan misreads the locks they take). */
#define SKIP_UNDER_TSAN() TH_SKIP_IF(TH_TSAN, "the TSan build of iopool has no fork handlers")

static unsigned runs(void)
{
	return env_uint("IOP_FORK_RUNS", TH_TSAN ? 20 : 100);
}

static unsigned child_s(void)
{
	return env_uint("IOP_FORK_CHILD_S", TH_TSAN ? 60 : 20);
}

TEST(prefork_children_of_busy_threads_run_audit_and_refill_their_reserve)
{
	SKIP_UNDER_TSAN();
	unsigned nruns = runs(), hangs = 0, fails = 0;
	unsigned pairs = TH_TSAN ? 20000 : 200000;
	signal(SIGALRM, parent_stuck);
	start_busy();
	for (unsigned run = 0; run < nruns; run += 2) {
		struct kid k[2] = { { 0 } };
		alarm(child_s() * 2 + 30); /* the parent itself (fork, the calls) */
		resume_busy();
		for (int i = 0; i < 2; i++) {
			fflush(stdout);
			fflush(stderr);
			k[i].pid = fork();
			REQUIRE(k[i].pid >= 0);
			if (k[i].pid == 0) {
				alarm(0);
				exit(child_body(pairs, true));
			}
			k[i].deadline = ms_now() + child_s() * 1000;
		}
		atomic_store(&paused, true);
		hangs += reap(k, 2);
		for (int i = 0; i < 2; i++)
			report("prefork", &k[i], &fails);
	}
	alarm(60);
	stop_busy();
	alarm(0);
	printf("%u children: %u hung, %u failed\n", nruns, hangs, fails);
	CHECK_EQ(hangs, 0);
	CHECK_EQ(fails, 0);
	return TH_PASS;
}

TEST(child_that_execs_at_once_runs)
{
	SKIP_UNDER_TSAN();
	unsigned hangs = 0, fails = 0, n = 20;
	signal(SIGALRM, parent_stuck);
	start_busy();
	for (unsigned run = 0; run < n; run++) {
		struct kid k = { 0 };
		alarm(child_s() + 30);
		k.pid = fork();
		REQUIRE(k.pid >= 0);
		if (k.pid == 0) {
			execl("/bin/sh", "sh", "-c", "exit 0", (char *)NULL);
			_exit(127);
		}
		k.deadline = ms_now() + child_s() * 1000;
		hangs += reap(&k, 1);
		report("exec", &k, &fails);
	}
	alarm(60);
	stop_busy();
	alarm(0);
	CHECK_EQ(hangs, 0);
	CHECK_EQ(fails, 0);
	return TH_PASS;
}

/* ---- fork() from inside a hook -------------------------------------------------------- */

static atomic_int hook_forks;
static pid_t hook_child; /* in the parent: the child; in the child: 0 */
static bool in_hook_child;

static int forking_map(void *arg, void *base, size_t len, uint64_t *handle)
{
	(void)arg;
	(void)base;
	(void)len;
	*handle = 0;
	if (atomic_fetch_add(&hook_forks, 1) == 0) {
		fflush(stdout);
		fflush(stderr);
		pid_t pid = fork();
		if (pid == 0)
			in_hook_child = true;
		else
			hook_child = pid;
	}
	return 0;
}

TEST(fork_from_a_map_hook_does_not_deadlock)
{
	SKIP_UNDER_TSAN();
	signal(SIGALRM, parent_stuck);
	alarm(child_s() + 30);
	start_busy();
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = "fork-hook";
	pp.obj_size = 4096;
	pp.map = forking_map;
	iop_pool_t *p = iop_pool_create(&pp);
	REQUIRE(p != NULL);
	void *objs[64];
	/* The first chunk is mapped in this call: the hook forks in it. */
	unsigned got = iop_alloc_bulk(p, objs, 64);
	if (in_hook_child) {
		/* The child goes on from inside the call that forked. */
		int rc = got == 64 ? 0 : 1;
		iop_free_bulk(p, objs, got);
		void *more[600];
		unsigned m = iop_alloc_bulk(p, more, 600);
		rc |= m != 600;
		iop_free_bulk(p, more, m);
		rc |= iop_pool_audit(p) != 0;
		rc |= iop_pool_destroy(p) != 0;
		rc |= child_body(20000, TH_ALL_CHECKED ? false : true);
		exit(rc);
	}
	CHECK_EQ(got, 64);
	iop_free_bulk(p, objs, got);
	REQUIRE(hook_child > 0);
	struct kid k = { .pid = hook_child, .deadline = ms_now() + child_s() * 1000 };
	unsigned fails = 0;
	CHECK_EQ(reap(&k, 1), 0);
	report("hook", &k, &fails);
	CHECK_EQ(fails, 0);
	CHECK_EQ(iop_pool_audit(p), 0);
	CHECK_EQ(iop_pool_destroy(p), 0);
	stop_busy();
	alarm(0);
	return TH_PASS;
}

/* ---- the publisher ---------------------------------------------------------------- */

static bool segment_of(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/dev/shm%s%d", IOP_SHM_PREFIX, (int)pid);
	return access(path, F_OK) == 0;
}

/* Segment of the parent left alone, and one of the child's own from its
 * first call that may block; removed at its exit. */
static int publishing_child(iop_pool_t *p)
{
	if (segment_of(getpid()))
		return child_fail("a segment under the child's pid before any call", 0);
	void *o;
	int rc = iop_alloc_ex(p, &o, 0, 0); /* may block: the child publishes */
	if (rc)
		return child_fail("iop_alloc_ex", rc);
	iop_free(p, o);
	if (!segment_of(getpid()))
		return child_fail("no segment under the child's pid", 0);
	if (!segment_of(getppid()))
		return child_fail("the parent's segment is gone", 0);
	if (iop_stats_publish(NULL) != -EALREADY)
		return child_fail("the child is not publishing", 0);
	return 0;
}

TEST(child_of_a_publisher_publishes_under_its_own_pid)
{
	SKIP_UNDER_TSAN();
	/* gcc 12's ASan allocator takes no lock across fork(): a busy parent
	 * thread inside ASan's malloc at the fork leaves its lock held in the
	 * child, and the child's new publisher and refill threads hang in
	 * __sanitizer::SizeClassAllocator64::GetFromAllocator (seen in gdb).
	 * The same case runs in the Release and TSan-less builds. */
	TH_SKIP_IF(TH_ASAN, "ASan's allocator is not fork-safe for a child that starts threads");
	signal(SIGALRM, parent_stuck);
	alarm(child_s() + 30);
	start_busy();
	struct iop_publish_params pp = IOP_PUBLISH_PARAMS_INIT;
	pp.name = "forkpub";
	pp.interval_ms = 50;
	int rc = iop_stats_publish(&pp);
	TH_SKIP_IF(rc == -EACCES || rc == -ENOENT || rc == -ENOSPC, "no /dev/shm to publish in");
	REQUIRE(rc == 0);
	struct kid k = { 0 };
	fflush(stdout);
	fflush(stderr);
	k.pid = fork();
	REQUIRE(k.pid >= 0);
	if (k.pid == 0)
		exit(publishing_child(plain)); /* exit: atexit unpublishes */
	k.deadline = ms_now() + child_s() * 1000;
	unsigned fails = 0;
	CHECK_EQ(reap(&k, 1), 0);
	report("publish", &k, &fails);
	CHECK_EQ(fails, 0);
	CHECK(!segment_of(k.pid)); /* the child removed its own at exit */
	CHECK(segment_of(getpid()));
	CHECK_EQ(iop_stats_unpublish(), 0);
	stop_busy();
	alarm(0);
	return TH_PASS;
}

int main(int argc, char **argv)
{
	return th_main(argc, argv);
}
