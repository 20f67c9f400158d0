/* SPDX-License-Identifier: MIT */
/*
 * Live statistics outside the process: a child process creates pools, holds
 * known numbers of objects and publishes; tools/iopool-top reads them back
 * (--once --json, --once, the list, the refreshing view) and every counter
 * must equal what the child's own iop_pool_stats() says. Then the segment's
 * end of life: removed at exit, left stale by a killed child, reported as
 * such and removed by --clean. Under TSan the child churns objects and
 * pools on several threads while the publisher runs every 10 ms.
 *
 * The tool's path comes from tests/CMakeLists.txt (IOP_TOOL_TOP).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "iop_test.h"
#include "iopool/shm.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#ifndef IOP_TOOL_TOP
#error "IOP_TOOL_TOP (the path of iopool-top) must be defined by the build"
#endif

/* Sanitized children and tools start slowly; nothing here waits this long
 * unless something is broken. */
#define WAIT_MS 30000
#define INTERVAL_MS 10
#define CHURN_MS 300

/* ---- running the tool ------------------------------------------------------ */

/* Run iopool-top with these arguments; returns its exit status (128 + the
 * signal if it was killed) and its stdout and stderr in *out (malloc'd). */
static int tool(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int tool(char **out, const char *fmt, ...)
{
	char args[512], cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s %s 2>&1", IOP_TOOL_TOP, args);
	fflush(stdout);
	fflush(stderr);
	FILE *f = popen(cmd, "r");
	REQUIRE(f != NULL);
	*out = th_read_all(fileno(f));
	int st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- reading JSON: enough for the flat objects both sides print ----------- */

/* The object whose "name" is `name` (the text from its "name" key to its
 * closing brace, copied), or NULL. */
static char *json_object(const char *json, const char *name)
{
	char quoted[64];
	snprintf(quoted, sizeof(quoted), "\"%s\"", name);
	for (const char *p = json; (p = strstr(p, "\"name\":")) != NULL; p++) {
		const char *v = p + strlen("\"name\":");
		v += strspn(v, " ");
		if (strncmp(v, quoted, strlen(quoted)) != 0)
			continue;
		const char *end = strchr(v, '}');
		if (!end)
			return NULL;
		return strndup(p, (size_t)(end - p));
	}
	return NULL;
}

/* The number after "key": in obj, or -1 when absent. */
static long long json_num(const char *obj, const char *key)
{
	char k[64];
	snprintf(k, sizeof(k), "\"%s\":", key);
	const char *p = obj ? strstr(obj, k) : NULL;
	if (!p)
		return -1;
	return strtoll(p + strlen(k), NULL, 10);
}

/* The keys of a flat object: a quote and then a colon ends each. */
static int json_keys(const char *obj)
{
	int n = 0;
	for (const char *p = obj; (p = strstr(p, "\":")) != NULL; p += 2)
		n++;
	return n;
}

/* The string after "key": in obj, copied into buf ("" when absent). */
static const char *json_text(const char *obj, const char *key, char *buf, size_t len)
{
	char k[64];
	snprintf(k, sizeof(k), "\"%s\":", key);
	const char *p = obj ? strstr(obj, k) : NULL;
	buf[0] = '\0';
	if (p && (p = strchr(p + strlen(k), '"')) != NULL) {
		size_t n = strcspn(p + 1, "\"");
		snprintf(buf, len, "%.*s", (int)(n < len ? n : len - 1), p + 1);
	}
	return buf;
}

static uint64_t ms_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&t, NULL);
}

static bool segment_exists(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "%s%s%d", IOP_SHM_DIR, IOP_SHM_PREFIX, (int)pid);
	return access(path, F_OK) == 0;
}

/* ---- the child -------------------------------------------------------------- */

struct child {
	pid_t pid;
	int cmd;       /* parent -> child: one byte, 'x' exits */
	FILE *report;  /* child -> parent: lines, "ready" last */
};

static void child_report(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void child_report(FILE *f, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fflush(f);
}

/* Wait for the parent's byte, then exit normally (atexit handlers run). */
static _Noreturn void child_wait_and_exit(int cmd)
{
	char c = 0;
	while (read(cmd, &c, 1) < 0 && errno == EINTR)
		;
	exit(c == 'x' ? 0 : 3);
}

static struct child spawn(void (*body)(FILE *report, int cmd))
{
	int down[2], up[2];
	REQUIRE(pipe(down) == 0 && pipe(up) == 0);
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		close(down[1]);
		close(up[0]);
		FILE *report = fdopen(up[1], "w");
		if (!report)
			_exit(4);
		body(report, down[0]);
		_exit(5); /* bodies end in child_wait_and_exit() */
	}
	close(down[0]);
	close(up[1]);
	struct child c = { pid, down[1], fdopen(up[0], "r") };
	REQUIRE(c.report != NULL);
	return c;
}

/* Lines the child reported up to "ready", joined (malloc'd). */
static char *child_ready(struct child *c)
{
	size_t cap = 1 << 16, len = 0;
	char *all = calloc(1, cap), line[4096];
	REQUIRE(all != NULL);
	while (fgets(line, sizeof(line), c->report)) {
		if (strcmp(line, "ready\n") == 0)
			return all;
		size_t n = strlen(line);
		REQUIRE(len + n < cap);
		memcpy(all + len, line, n + 1);
		len += n;
	}
	th_fail_at(__FILE__, __LINE__, "the child ended before it was ready; it said:\n%s", all);
	kill(c->pid, SIGKILL);
	exit(TH_FAIL);
}

static int child_end(struct child *c, bool kill_it)
{
	int st;
	if (kill_it)
		kill(c->pid, SIGKILL);
	else if (write(c->cmd, "x", 1) != 1)
		th_fail_at(__FILE__, __LINE__, "cannot tell the child to exit");
	close(c->cmd);
	fclose(c->report);
	while (waitpid(c->pid, &st, 0) < 0)
		if (errno != EINTR)
			abort();
	return st;
}

/* The tool's --json view of pid once the publisher has finished at least
 * two more updates than `after` shows, so that the state the child
 * reported is in it. */
static char *json_after_two_updates(pid_t pid)
{
	char *out = NULL;
	long long first = -1;
	uint64_t give_up = ms_now() + WAIT_MS;
	for (;;) {
		int rc = tool(&out, "--json %d", (int)pid);
		long long u = json_num(out, "updates");
		if (rc == 0 && first < 0)
			first = u;
		if (rc == 0 && first >= 0 && u >= first + 2)
			return out;
		if (ms_now() > give_up) {
			th_fail_at(__FILE__, __LINE__, "no two updates from pid %d in %d ms; the tool said (exit %d):\n%s",
				   (int)pid, WAIT_MS, rc, out);
			return out;
		}
		free(out);
		sleep_ms(INTERVAL_MS);
	}
}

/* ---- a publishing child with a known state ---------------------------------- */

static atomic_int churn_stop;

static void *churn(void *arg)
{
	iop_pool_t *pool = arg;
	void *held[64];
	uint64_t rng = th_seed((uint64_t)(uintptr_t)arg, 7);
	while (!atomic_load(&churn_stop)) {
		unsigned n = 1 + (unsigned)(th_rand(&rng) % 64);
		unsigned got = iop_alloc_bulk(pool, held, n);
		for (unsigned i = 0; i < got; i++)
			memset(held[i], 0x5a, 16);
		iop_free_bulk(pool, held, got);
	}
	return NULL;
}

/* Pools come and go while the publisher walks them. */
static void *pool_churn(void *arg)
{
	(void)arg;
	for (unsigned i = 0; !atomic_load(&churn_stop); i++) {
		char name[32];
		snprintf(name, sizeof(name), "viz-temp-%u", i % 4);
		iop_pool_t *p = MKPOOL(name, 128, 0, 0, 0, 0);
		void *o = iop_alloc(p);
		iop_free(p, o);
		iop_thread_flush();
		if (iop_pool_destroy(p) != 0)
			_exit(6);
	}
	return NULL;
}

#define SMALL_HELD 1000
#define BIG_HELD 37
#define LATE_HELD 5

static void known_state_child(FILE *report, int cmd)
{
	iop_pool_t *small = MKPOOL("viz-small", 64, 0, 0, 0, 0);
	iop_pool_t *big = MKPOOL("viz-big", 16 * KiB, 0, 0, 0, 0);
	iop_pool_t *gone = MKPOOL("viz-gone", 256, 0, 0, 0, 0);
	struct iop_publish_params pp = IOP_PUBLISH_PARAMS_INIT;
	pp.interval_ms = INTERVAL_MS;
	pp.name = "vizchild";
	int err = iop_stats_publish(&pp);
	if (err) {
		child_report(report, "iop_stats_publish: %s\n", strerror(-err));
		_exit(7);
	}

	pthread_t t[3];
	atomic_store(&churn_stop, 0);
	pthread_create(&t[0], NULL, churn, small);
	pthread_create(&t[1], NULL, churn, big);
	pthread_create(&t[2], NULL, pool_churn, NULL);
	sleep_ms(CHURN_MS);
	atomic_store(&churn_stop, 1);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);

	/* Held until the child exits. */
	for (int i = 0; i < SMALL_HELD; i++)
		if (!iop_alloc(small))
			_exit(9);
	for (int i = 0; i < BIG_HELD; i++)
		if (!iop_alloc(big))
			_exit(9);
	if (iop_pool_destroy(gone) != 0)
		_exit(8);
	iop_pool_t *late = MKPOOL("viz-late", 1 * KiB, 0, 0, 0, 0);
	for (int i = 0; i < LATE_HELD; i++)
		if (!iop_alloc(late))
			_exit(9);
	/* Quiescent from here: the publisher only reads. */
	iop_pool_stats_print(small, report, IOP_FMT_JSON);
	iop_pool_stats_print(big, report, IOP_FMT_JSON);
	iop_pool_stats_print(late, report, IOP_FMT_JSON);
	child_report(report, "ready\n");
	child_wait_and_exit(cmd);
}

/* Every counter of `pool` in the tool's JSON equals the child's own. */
static void check_pool_matches(const char *tool_json, const char *child_json, const char *pool, long long in_flight)
{
	char *mine = json_object(child_json, pool), *theirs = json_object(tool_json, pool);
	REQUIRE(mine != NULL);
	if (!theirs) {
		th_fail_at(__FILE__, __LINE__, "pool %s is not in the tool's JSON:\n%s", pool, tool_json);
		free(mine);
		return;
	}
	CHECK_EQ(json_num(theirs, "in_flight"), in_flight);
	/* Every field of the list, in both: the record carries them all. */
#define SAME(t, n)                                                                               \
	if (json_num(theirs, #n) < 0 || json_num(theirs, #n) != json_num(mine, #n))                \
		th_fail_at(__FILE__, __LINE__, "pool %s: %s is %lld in the tool, %lld in the child", \
			   pool, #n, json_num(theirs, #n), json_num(mine, #n));
	IOP_POOL_STATS_FIELDS(SAME)
#undef SAME
	/* ...and nothing else: the child's name and fields; the tool's name,
	 * kind, id, flags and fields. */
	CHECK_EQ(json_keys(mine), IOP_POOL_STATS_NFIELDS + 1);
	CHECK_EQ(json_keys(theirs), IOP_POOL_STATS_NFIELDS + 4);
	CHECK_EQ(json_num(theirs, "in_flight") + json_num(theirs, "cached") + json_num(theirs, "depot") +
			 json_num(theirs, "slab_free"),
		 json_num(theirs, "total"));
	free(mine);
	free(theirs);
}

/* The order in which the pools' rows appear in the text output. */
static bool rows_in_order(const char *text, const char *a, const char *b, const char *c)
{
	const char *pa = strstr(text, a), *pb = strstr(text, b), *pc = strstr(text, c);
	return pa && pb && pc && pa < pb && pb < pc;
}

TEST(tool_reads_back_every_counter_a_child_publishes)
{
	struct child c = spawn(known_state_child);
	char *mine = child_ready(&c), *out, text[64];
	int pid = (int)c.pid;

	/* --once --json: every counter, after the final state was written */
	char *js = json_after_two_updates(c.pid);
	CHECK_EQ(json_num(js, "pid"), pid);
	CHECK_STR_HAS(json_text(js, "name", text, sizeof(text)), "vizchild");
	CHECK_STR_HAS(json_text(js, "status", text, sizeof(text)), "live");
	CHECK_EQ(json_num(js, "interval_ms"), INTERVAL_MS);
	check_pool_matches(js, mine, "viz-small", SMALL_HELD);
	check_pool_matches(js, mine, "viz-big", BIG_HELD);
	check_pool_matches(js, mine, "viz-late", LATE_HELD);
	/* destroyed, and the churning thread's pools: gone without a trace */
	CHECK(strstr(js, "viz-gone") == NULL);
	CHECK(strstr(js, "viz-temp") == NULL);
	free(js);

	/* --once, found by name: the numbers in the text */
	CHECK_EQ(tool(&out, "--once vizchild"), 0);
	snprintf(text, sizeof(text), "pid %d (vizchild), 3 pools", pid);
	CHECK_STR_HAS(out, text);
	CHECK_STR_HAS(out, "Objects in flight / total : 1042 /");
	/* Resident beside mapped, in the totals and as a column. */
	CHECK_STR_HAS(out, " Memory mapped / resident  : ");
	CHECK_STR_HAS(out, "   MAPPED RESIDENT ");
	/* Which caches serve them: all three per CPU, or (checked pools, the
	 * per-thread mode) all three per thread. */
	CHECK(strstr(out, "caches: 3 pools per CPU, 0 per thread") != NULL ||
	      strstr(out, "caches: 0 pools per CPU, 3 per thread") != NULL);
	const char *row = strstr(out, "\nviz-small ");
	CHECK(row != NULL);
	if (row) {
		char line[512];
		snprintf(line, sizeof(line), "%.*s", (int)strcspn(row + 1, "\n"), row + 1);
		CHECK_STR_HAS(line, " 64 ");
		CHECK_STR_HAS(line, " 1000 ");
	}
	free(out);

	/* sorted by a column, and reversed */
	CHECK_EQ(tool(&out, "--once --sort inflight %d", pid), 0);
	CHECK(rows_in_order(out, "\nviz-small", "\nviz-big", "\nviz-late"));
	free(out);
	CHECK_EQ(tool(&out, "--once --sort size %d", pid), 0);
	CHECK(rows_in_order(out, "\nviz-big", "\nviz-late", "\nviz-small"));
	free(out);
	CHECK_EQ(tool(&out, "--once -s name -r %d", pid), 0);
	CHECK(rows_in_order(out, "\nviz-small", "\nviz-late", "\nviz-big"));
	CHECK_STR_HAS(out, "Sorted by NAME (descending)");
	free(out);
	CHECK_EQ(tool(&out, "--once --sort resident %d", pid), 0);
	CHECK_STR_HAS(out, "Sorted by RESIDENT (descending)");
	free(out);
	CHECK_EQ(tool(&out, "--once --sort nonsense %d", pid), 2);
	CHECK_STR_HAS(out, "no column 'nonsense'");
	free(out);

	/* the list of publishers, text and JSON */
	CHECK_EQ(tool(&out, "%s", ""), 0);
	snprintf(text, sizeof(text), "\n%-8d vizchild ", pid);
	CHECK_STR_HAS(out, text);
	CHECK_STR_HAS(out, "    MAPPED   RESIDENT ");
	free(out);
	CHECK_EQ(tool(&out, "--json"), 0);
	snprintf(text, sizeof(text), "{\"pid\": %d, \"status\": \"live\"", pid);
	CHECK_STR_HAS(out, text);
	{
		/* The process's sums: resident bytes beside mapped ones. */
		const char *me = strstr(out, text);
		long long mapped = me ? json_num(me, "bytes_mapped") : -1;
		long long resident = me ? json_num(me, "bytes_resident") : -1;
		CHECK_GT(mapped, 0);
		CHECK_GE(resident, 0);
		CHECK_LE(resident, mapped);
	}
	free(out);

	/* the refreshing view, twice, with rates from the second screen on */
	CHECK_EQ(tool(&out, "--iterations 2 --delay 0.05 %d", pid), 0);
	CHECK_STR_HAS(out, "\033[H");
	CHECK_STR_HAS(out, "ALLOC/S");
	CHECK_STR_HAS(out, "viz-late");
	free(out);

	/* a live process's segment is not cleaned */
	CHECK_EQ(tool(&out, "--clean %d", pid), 1);
	CHECK_STR_HAS(out, "runs: its segment stays");
	CHECK(segment_exists(c.pid));
	free(out);

	/* exit() removes the segment */
	int st = child_end(&c, false);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK(!segment_exists(c.pid));
	CHECK_EQ(tool(&out, "--once %d", pid), 1);
	CHECK_STR_HAS(out, "No such file");
	free(out);
	free(mine);
	return TH_PASS;
}

/* ---- a killed child leaves a stale segment ----------------------------------- */

static void doomed_child(FILE *report, int cmd)
{
	iop_pool_t *p = MKPOOL("viz-dead", 512, 0, 0, 0, 0);
	for (int i = 0; i < 7; i++)
		(void)iop_alloc(p);
	struct iop_publish_params pp = IOP_PUBLISH_PARAMS_INIT;
	pp.interval_ms = INTERVAL_MS;
	pp.name = "vizdoomed";
	if (iop_stats_publish(&pp) != 0)
		_exit(7);
	child_report(report, "ready\n");
	child_wait_and_exit(cmd);
}

/* The gone doomed_child's segment, as --once and --json show it: its pool
 * with its last numbers (7 in flight), marked stale, exit status 1. */
static void check_doomed_child_shown_stale(int pid)
{
	char *out, text[128];
	CHECK_EQ(tool(&out, "--once %d", pid), 1);
	CHECK_STR_HAS(out, "STALE: the process is gone");
	CHECK_STR_HAS(out, "viz-dead");
	free(out);
	CHECK_EQ(tool(&out, "--json %d", pid), 1);
	CHECK_STR_HAS(json_text(out, "status", text, sizeof(text)), "stale");
	char *obj = json_object(out, "viz-dead");
	CHECK_EQ(json_num(obj, "in_flight"), 7);
	free(obj);
	free(out);
}

TEST(tool_reports_and_cleans_the_segment_a_killed_child_leaves)
{
	struct child c = spawn(doomed_child);
	free(child_ready(&c));
	int pid = (int)c.pid;
	char *out, text[128];

	free(json_after_two_updates(c.pid));
	int st = child_end(&c, true);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	REQUIRE(segment_exists(c.pid));

	CHECK_EQ(tool(&out, "%s", ""), 0);
	snprintf(text, sizeof(text), "\n%-8d vizdoomed ", pid);
	CHECK_STR_HAS(out, text);
	CHECK_STR_HAS(out, "stale: the process is gone");
	CHECK_STR_HAS(out, "'iopool-top --clean' removes");
	free(out);

	/* the last numbers, marked stale, and exit status 1 */
	check_doomed_child_shown_stale(pid);
	/* a name finds only live processes */
	CHECK_EQ(tool(&out, "--once vizdoomed"), 1);
	CHECK_STR_HAS(out, "no live process named 'vizdoomed'");
	free(out);

	CHECK_EQ(tool(&out, "--clean %d", pid), 0);
	snprintf(text, sizeof(text), "removed %s%s%d (pid %d, vizdoomed, the process is gone)", IOP_SHM_DIR,
		 IOP_SHM_PREFIX, pid, pid);
	CHECK_STR_HAS(out, text);
	free(out);
	CHECK(!segment_exists(c.pid));
	CHECK_EQ(tool(&out, "--once %d", pid), 1);
	CHECK_STR_HAS(out, "No such file");
	free(out);
	return TH_PASS;
}

/* A writer killed in the middle of an update leaves seq odd for good: the
 * tool waits SEQ_WAIT_NS, then reads the segment as it is, torn, and
 * still names it (the header is written once, at set-up). Killing the
 * child while it writes is a race; the test makes seq odd itself after a
 * clean kill, as such a death leaves it. */
TEST(tool_reads_the_segment_of_a_child_killed_mid_update)
{
	struct child c = spawn(doomed_child);
	free(child_ready(&c));
	int pid = (int)c.pid;
	char *out, text[128], path[64];

	free(json_after_two_updates(c.pid));
	int st = child_end(&c, true);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	REQUIRE(segment_exists(c.pid));
	snprintf(path, sizeof(path), "%s%s%d", IOP_SHM_DIR, IOP_SHM_PREFIX, pid);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	REQUIRE(fd >= 0);
	struct iop_shm_header *h = mmap(NULL, sizeof(*h), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	REQUIRE(h != MAP_FAILED);
	CHECK_EQ(h->seq % 2, 0);
	h->seq++;
	munmap(h, sizeof(*h));

	check_doomed_child_shown_stale(pid);
	CHECK_EQ(tool(&out, "--clean %d", pid), 0);
	snprintf(text, sizeof(text), "removed %s (pid %d, vizdoomed, the process is gone)", path, pid);
	CHECK_STR_HAS(out, text);
	free(out);
	CHECK(!segment_exists(c.pid));
	return TH_PASS;
}

/* ---- a zombie, a hung publisher, a stopped one ------------------------------ */

/* The state letter of pid in /proc/<pid>/stat (Z: zombie, T: stopped). */
static char proc_state(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

static bool wait_state(pid_t pid, char want)
{
	for (uint64_t give_up = ms_now() + WAIT_MS; ms_now() < give_up; sleep_ms(5))
		if (proc_state(pid) == want)
			return true;
	return false;
}

/* Killed and not reaped, the child keeps its pid and start time: only its
 * state (Z) says that it will never publish again. */
TEST(tool_shows_a_killed_unreaped_child_stale_and_cleans_it)
{
	struct child c = spawn(doomed_child);
	free(child_ready(&c));
	int pid = (int)c.pid;
	char *out, text[160];

	free(json_after_two_updates(c.pid));
	kill(c.pid, SIGKILL);
	REQUIRE(wait_state(c.pid, 'Z'));
	REQUIRE(segment_exists(c.pid));

	CHECK_EQ(tool(&out, "%s", ""), 0);
	CHECK_STR_HAS(out, "stale: the process is a zombie (killed, not yet reaped)");
	free(out);
	CHECK_EQ(tool(&out, "--once %d", pid), 1);
	CHECK_STR_HAS(out, "STALE: the process is a zombie");
	CHECK_STR_HAS(out, "viz-dead");
	free(out);
	CHECK_EQ(tool(&out, "--clean %d", pid), 0);
	snprintf(text, sizeof(text), "removed %s%s%d (pid %d, vizdoomed, the process is a zombie", IOP_SHM_DIR,
		 IOP_SHM_PREFIX, pid, pid);
	CHECK_STR_HAS(out, text);
	free(out);
	CHECK(!segment_exists(c.pid));

	int st = child_end(&c, true); /* reaps it */
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	return TH_PASS;
}

/* A segment that a running process stopped updating (its publishing thread
 * hung), written here for a child that only sleeps: last updated 10 s ago
 * with a 100 ms interval. Stale and cleaned; while the process is stopped
 * (SIGSTOP), stale but kept. */
static void sleeping_child(FILE *report, int cmd)
{
	child_report(report, "ready\n");
	child_wait_and_exit(cmd);
}

TEST(tool_calls_a_segment_not_updated_for_five_intervals_stale)
{
	struct child c = spawn(sleeping_child);
	free(child_ready(&c));
	int pid = (int)c.pid;
	char name[64], path[64], *out;
	snprintf(name, sizeof(name), "%s%d", IOP_SHM_PREFIX, pid);
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);

	size_t size = sizeof(struct iop_shm_header) + sizeof(struct iop_shm_record);
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	REQUIRE(fd >= 0);
	REQUIRE(ftruncate(fd, (off_t)size) == 0);
	unsigned char *seg = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	REQUIRE(seg != MAP_FAILED);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	struct iop_shm_header h = { .version = IOP_SHM_VERSION };
	memcpy(h.magic, IOP_SHM_MAGIC, sizeof(h.magic));
	h.header_size = sizeof(h);
	h.record_size = sizeof(struct iop_shm_record);
	h.max_records = 1;
	h.nrecords = 1;
	h.pid = pid;
	h.start_time = iop_shm_read_start_time(path);
	h.published_ns = now_ns - 20000000000ull;
	h.updated_ns = now_ns - 10000000000ull;
	h.updates = 100;
	h.interval_ms = 100;
	snprintf(h.name, sizeof(h.name), "vizhung");
	struct iop_shm_record r = { .kind = IOP_SHM_KIND_POOL, .obj_size = 64 };
	snprintf(r.name, sizeof(r.name), "viz-hung");
	memcpy(seg, &h, sizeof(h));
	memcpy(seg + sizeof(h), &r, sizeof(r));
	munmap(seg, size);
	CHECK(h.start_time != 0);

	/* Stopped: stale, but --clean keeps the segment. */
	kill(c.pid, SIGSTOP);
	REQUIRE(wait_state(c.pid, 'T'));
	CHECK_EQ(tool(&out, "--once %d", pid), 1);
	CHECK_STR_HAS(out, "STALE: the process is stopped; not updated for 10.");
	CHECK_STR_HAS(out, "of its 100 ms intervals)");
	free(out);
	CHECK_EQ(tool(&out, "--clean %d", pid), 1);
	CHECK_STR_HAS(out, "runs: its segment stays");
	free(out);
	CHECK(segment_exists(c.pid));
	kill(c.pid, SIGCONT);

	/* Running but not publishing: stale, and cleaned. */
	REQUIRE(wait_state(c.pid, 'S'));
	CHECK_EQ(tool(&out, "--once %d", pid), 1);
	CHECK_STR_HAS(out, "STALE: not updated for 10.");
	CHECK_STR_HAS(out, "viz-hung");
	free(out);
	CHECK_EQ(tool(&out, "--clean %d", pid), 0);
	CHECK_STR_HAS(out, "not updated for 10.");
	free(out);
	CHECK(!segment_exists(c.pid));
	if (segment_exists(c.pid))
		shm_unlink(name);

	int st = child_end(&c, false);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	return TH_PASS;
}

/* ---- IOPOOL_PUBLISH ------------------------------------------------------------ */

static void env_child(FILE *report, int cmd)
{
	setenv("IOPOOL_PUBLISH", "1", 1);
	setenv("IOPOOL_PUBLISH_INTERVAL_MS", "10", 1);
	iop_pool_t *p = MKPOOL("viz-env", 2 * KiB, 0, 0, 0, 0);
	for (int i = 0; i < 3; i++)
		(void)iop_alloc(p);
	child_report(report, "ready\n");
	child_wait_and_exit(cmd);
}

TEST(environment_variable_publishes_an_unchanged_program)
{
	struct child c = spawn(env_child);
	free(child_ready(&c));
	char *js = json_after_two_updates(c.pid), text[64];
	CHECK_EQ(json_num(js, "interval_ms"), 10);
	/* the program's own name when none is given */
	CHECK_STR_HAS(json_text(js, "name", text, sizeof(text)), "test_publish");
	char *obj = json_object(js, "viz-env");
	CHECK_EQ(json_num(obj, "in_flight"), 3);
	CHECK_EQ(json_num(obj, "obj_size"), 2048);
	free(obj);
	free(js);
	int st = child_end(&c, false);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK(!segment_exists(c.pid));
	return TH_PASS;
}

/* ---- the calls themselves ---------------------------------------------------- */

/* iop_publish_params_init() gives what IOP_PUBLISH_PARAMS_INIT gives, and
 * the defaults it leaves publish. */
TEST(publish_params_init_gives_the_defaults)
{
	struct iop_publish_params pp, macro = IOP_PUBLISH_PARAMS_INIT;
	memset(&pp, 0xa5, sizeof(pp));
	iop_publish_params_init(&pp);
	CHECK_EQ(pp.struct_size, sizeof(struct iop_publish_params));
	CHECK_EQ(pp.struct_size, macro.struct_size);
	CHECK_EQ(pp.interval_ms, 0);
	CHECK(pp.name == NULL);
	CHECK_EQ(pp.flags, 0);
	CHECK_EQ(pp.reserved0, 0);
	iop_publish_params_init(NULL); /* does nothing, does not crash */
	CHECK_EQ(iop_stats_publish(&pp), 0);
	CHECK_EQ(iop_stats_unpublish(), 0);
	return TH_PASS;
}

TEST(publish_refuses_bad_parameters_and_a_second_start)
{
	struct iop_publish_params pp = IOP_PUBLISH_PARAMS_INIT;
	char *msg;

	CHECK_EQ(iop_stats_unpublish(), -ENOENT);
	pp.struct_size = 4;
	th_capture_begin();
	CHECK_EQ(iop_stats_publish(&pp), -EINVAL);
	msg = th_capture_end();
	CHECK_STR_HAS(msg, "struct_size is 4");
	free(msg);
	pp = (struct iop_publish_params)IOP_PUBLISH_PARAMS_INIT;
	pp.interval_ms = IOP_PUBLISH_INTERVAL_MIN_MS - 1;
	th_capture_begin();
	CHECK_EQ(iop_stats_publish(&pp), -EINVAL);
	msg = th_capture_end();
	CHECK_STR_HAS(msg, "iop_stats_publish: interval_ms 9 is outside [10, 3600000]");
	free(msg);
	pp.interval_ms = IOP_PUBLISH_INTERVAL_MAX_MS + 1;
	th_capture_begin();
	CHECK_EQ(iop_stats_publish(&pp), -EINVAL);
	free(th_capture_end());
	pp.interval_ms = 0;
	pp.name = "a-name-of-thirty-two-characters!";
	th_capture_begin();
	CHECK_EQ(iop_stats_publish(&pp), -EINVAL);
	msg = th_capture_end();
	CHECK_STR_HAS(msg, "longer than 31 characters");
	free(msg);
	pp.name = NULL;
	pp.flags = 1;
	th_capture_begin();
	CHECK_EQ(iop_stats_publish(&pp), -EINVAL);
	free(th_capture_end());
	pp.flags = 0;
	pp.reserved0 = 1;
	th_capture_begin();
	CHECK_EQ(iop_stats_publish(&pp), -EINVAL);
	free(th_capture_end());
	/* a newer caller's struct: unknown fields must be zero */
	struct {
		struct iop_publish_params p;
		uint64_t newer;
	} big = { .p = IOP_PUBLISH_PARAMS_INIT, .newer = 1 };
	big.p.struct_size = sizeof(big);
	th_capture_begin();
	CHECK_EQ(iop_stats_publish(&big.p), -EINVAL);
	msg = th_capture_end();
	CHECK_STR_HAS(msg, "fields this library does not know");
	free(msg);
	CHECK(!segment_exists(getpid()));

	/* a segment left under our pid by a dead process is replaced */
	char name[64];
	snprintf(name, sizeof(name), "%s%d", IOP_SHM_PREFIX, (int)getpid());
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	REQUIRE(fd >= 0);
	CHECK_EQ(write(fd, "junk", 4), 4);
	close(fd);

	big.newer = 0; /* zero past what the library knows: accepted */
	CHECK_EQ(iop_stats_publish(&big.p), 0);
	CHECK(segment_exists(getpid()));
	fd = shm_open(name, O_RDONLY, 0);
	REQUIRE(fd >= 0);
	struct iop_shm_header h;
	CHECK_EQ(read(fd, &h, sizeof(h)), (long long)sizeof(h));
	close(fd);
	CHECK(memcmp(h.magic, IOP_SHM_MAGIC, 8) == 0);
	CHECK_EQ(h.pid, getpid());
	CHECK_EQ(h.interval_ms, 1000);
	CHECK_EQ(h.nrecords, 0); /* no pools in this process */
	CHECK_GE(h.updates, 1);  /* the first update is written at once */

	CHECK_EQ(iop_stats_publish(NULL), -EALREADY);
	CHECK_EQ(iop_stats_unpublish(), 0);
	CHECK(!segment_exists(getpid()));
	CHECK_EQ(iop_stats_unpublish(), -ENOENT);
	/* and again, with the defaults */
	CHECK_EQ(iop_stats_publish(NULL), 0);
	CHECK(segment_exists(getpid()));
	CHECK_EQ(iop_stats_unpublish(), 0);
	CHECK(!segment_exists(getpid()));
	return TH_PASS;
}

int main(int argc, char **argv)
{
	return th_main(argc, argv);
}
