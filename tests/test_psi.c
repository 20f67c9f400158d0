/* SPDX-License-Identifier: MIT */
/*
 * Memory pressure (IOPOOL_PSI_RECLAIM): a PSI trigger watched by one
 * thread, "iop-psi", which shrinks every pool within a window of a stall;
 * the fallback to polling avg10, said once, where the kernel (or the file)
 * takes no trigger; the watcher's life: with the workers, at exit, after
 * fork().
 *
 * The real stall: a child process in a cgroup of its own with a 16 MiB
 * memory limit reads a 64 MiB file again and again (each page it reads is
 * charged there, and the charge reclaims: a memory stall the kernel counts
 * in PSI). The watcher's trigger is on that cgroup's memory.pressure
 * (cgroup v2; the limit is v2's memory.max where the memory controller is
 * there, else v1's memory.limit_in_bytes). Without root or such cgroups
 * the case is skipped (77).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "iop_test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FALLBACK_MSG "refuses a PSI trigger"

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) != 0)
		;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Until cond holds, at most ms milliseconds (four times that under a
 * sanitizer): whether it came true. No watchdog: a case cleans up. */
#define WITHIN(ms, cond)                                                               \
	({                                                                             \
		int64_t until_ = now_ms() + (TH_TSAN || TH_ASAN ? 4 : 1) * (int64_t)(ms); \
		while (!(cond) && now_ms() < until_)                                    \
			sleep_ms(2);                                                   \
		(bool)(cond);                                                          \
	})

static bool write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool ok = write(fd, s, strlen(s)) == (ssize_t)strlen(s);
	return close(fd) == 0 && ok;
}

/* A pool of free chunks, which a reclaim unmaps: its chunk count. */
static iop_pool_t *pressed_pool(void)
{
	iop_pool_t *p = MKPOOL("pressed", 4096, 0, 0, 0, 0);
	void *o[1000];
	if (iop_alloc_bulk(p, o, 1000) != 1000)
		return NULL;
	iop_free_bulk(p, o, 1000);
	iop_thread_flush();
	iop_pool_flush(p);
	return p;
}

/* A pool that starts the workers (and so the watcher), with a decay too
 * slow to do anything in a test. */
static iop_pool_t *worker_pool(const char *name)
{
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = name;
	pp.obj_size = 256;
	pp.decay_ms = 600000;
	return iop_pool_create(&pp);
}

/* How often the captured stderr (th_capture_begin) holds needle. */
static int captured_count(const char *needle)
{
	fflush(stderr);
	char buf[8192];
	ssize_t n = pread(2, buf, sizeof buf - 1, 0);
	buf[n > 0 ? n : 0] = 0;
	int count = 0;
	for (char *s = buf; (s = strstr(s, needle)); s += strlen(needle))
		count++;
	return count;
}

/* ---- the fallback ------------------------------------------------------------------ */

/*
 * A regular file takes no trigger (nothing would ever wake its poller):
 * the domain-0 worker polls its avg10 instead, says so once for the
 * process, and starts no watcher; reclaim still follows the figure.
 */
TEST(a_file_without_triggers_falls_back_to_polling_avg10_once)
{
	char path[64];
	snprintf(path, sizeof path, "/tmp/iopool-test-psi-%d", (int)getpid());
	th_write_psi(path, "0.00");
	setenv("IOPOOL_PSI_RECLAIM", "10", 1);
	setenv("IOPOOL_PSI_FILE", path, 1);
	setenv("IOPOOL_WORKER_PERIOD_MS", "10", 1);
	iop_pool_t *p = pressed_pool();
	REQUIRE(p);
	uint64_t chunks = STATS(p).chunks;
	CHECK_GE(chunks, 2);
	th_capture_begin();
	iop_pool_t *w = worker_pool("workers");
	bool made = w != NULL;
	int watchers = th_threads_named("iop-psi");
	int passes = 0;
	/* Twice: stopping and starting the workers says nothing more. */
	for (int i = 0; made && i < 2; i++) {
		iop_pool_destroy(w);
		made = (w = worker_pool("workers")) != NULL;
		passes++;
	}
	sleep_ms(50); /* some polls of 0.00 */
	uint64_t before = STATS(p).chunks;
	th_write_psi(path, "42.50");
	bool shrunk = WITHIN(10000, STATS(p).chunks == 0);
	int msgs = captured_count(FALLBACK_MSG);
	char *err = th_capture_end();
	REQUIRE(made);
	CHECK_EQ(passes, 2);
	CHECK_EQ(watchers, 0);
	CHECK_EQ(th_threads_named("iop-psi"), 0);
	CHECK_EQ(msgs, 1);
	CHECK_STR_HAS(err, path);
	CHECK_STR_HAS(err, "Operation not supported");
	CHECK_EQ(before, chunks); /* no pressure, no shrink */
	CHECK(shrunk);
	free(err);
	th_write_psi(path, "0.00");
	CHECK_AUDIT(p);
	CHECK_DESTROY(w);
	CHECK_DESTROY(p);
	unlink(path);
	return TH_PASS;
}

/* ---- the watcher's life ---------------------------------------------------------- */

/* Whether this kernel arms a trigger on /proc/pressure/memory for this
 * process with the library's window. */
static bool proc_triggers(void)
{
	int fd = open("/proc/pressure/memory", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool ok = write(fd, "some 1000000 2000000", 21) == 21;
	close(fd);
	return ok;
}

static void exit_check(void)
{
	_exit(th_threads_named("iop-psi") == 0 ? 0 : 4);
}

/* A child that exits with its pools alive: the library's exit handler
 * stops the watcher before exit_check (registered first, run last; so the
 * parent must not have made a pool yet). */
static int exit_child(void)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		atexit(exit_check);
		iop_pool_t *w = worker_pool("at-exit");
		if (!w || th_threads_named("iop-psi") != 1)
			_exit(3);
		exit(0);
	}
	int status;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* A child of fork() has no watcher until its first call that may block,
 * then its own. */
static int fork_child(iop_pool_t *w)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (th_threads_named("iop-psi") != 0)
			_exit(3);
		iop_pool_t *c = worker_pool("child"); /* restarts the workers */
		if (!c)
			_exit(4);
		if (th_threads_named("iop-psi") != 1)
			_exit(5);
		if (iop_pool_destroy(c) != 0 || iop_pool_destroy(w) != 0)
			_exit(6);
		_exit(th_threads_named("iop-psi") == 0 ? 0 : 7);
	}
	int status;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

TEST(the_watcher_runs_with_the_workers_and_stops_at_exit_and_after_fork)
{
	TH_SKIP_IF(!proc_triggers(), "this kernel takes no PSI trigger on /proc/pressure/memory from this process");
	setenv("IOPOOL_PSI_RECLAIM", "50", 1);
	setenv("IOPOOL_PSI_FILE", "/proc/pressure/memory", 1);
	/* First, while this process has made no pool: the child's exit
	 * handler must be registered before the library's. */
	if (!TH_TSAN)
		CHECK_EQ(exit_child(), 0);
	th_capture_begin();
	/* A pool without workers starts no watcher. */
	iop_pool_t *p = MKPOOL("plain", 256, 0, 0, 0, 0);
	int alone = th_threads_named("iop-psi");
	iop_pool_t *w = worker_pool("workers");
	int with = th_threads_named("iop-psi");
	CHECK(w != NULL);
	CHECK_EQ(iop_pool_destroy(w), 0);
	int after = th_threads_named("iop-psi");
	w = worker_pool("again");
	int again = th_threads_named("iop-psi");
	char *err = th_capture_end();
	CHECK_EQ(alone, 0);
	CHECK_EQ(with, 1);
	CHECK_EQ(after, 0); /* joined with the last pool's workers */
	CHECK_EQ(again, 1);
	CHECK(strstr(err, "IOPOOL_PSI_RECLAIM") == NULL); /* no fallback */
	free(err);
	REQUIRE(w);
	/* The TSan build of iopool has no fork handlers; under ASan a child
	 * that starts threads can hang in ASan's allocator, whose lock a busy
	 * parent thread held at the fork (test_fork.c's publisher case says
	 * so; this case hung once in CI's asan stage, in fork_child). */
	if (!TH_TSAN && !TH_ASAN) {
		CHECK_EQ(fork_child(w), 0);
		CHECK_EQ(th_threads_named("iop-psi"), 1); /* the parent's is still there */
	}
	CHECK_DESTROY(w);
	CHECK_DESTROY(p);
	CHECK_EQ(th_threads_named("iop-psi"), 0);
	return TH_PASS;
}

/* ---- a real stall, in a cgroup ---------------------------------------------------- */

enum { LIMIT = 16 << 20, DATA = 64 << 20 };

static struct {
	char v2[1100];    /* the cgroup v2 directory made for the test */
	char v1[1100];    /* a v1 memory cgroup, where v2 has no memory controller */
	char data[512];    /* the file the child reads */
	pid_t child;
	int go;            /* the child starts on a byte written here */
} cg = { .child = -1, .go = -1 };

/* The mount point of the first file system of type fstype (with option
 * opt among its super options, if given). */
static bool mount_of(const char *fstype, const char *opt, char *out, size_t size)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	char line[1024];
	bool found = false;
	while (!found && fgets(line, sizeof line, f)) {
		char mnt[512], type[64], super[512];
		char *dash = strstr(line, " - ");
		if (!dash || sscanf(line, "%*s %*s %*s %*s %511s", mnt) != 1 ||
		    sscanf(dash + 3, "%63s %*s %511s", type, super) != 2)
			continue;
		if (strcmp(type, fstype) != 0)
			continue;
		if (opt) {
			bool has = false;
			for (char *t = strtok(super, ","); t && !has; t = strtok(NULL, ","))
				has = strcmp(t, opt) == 0;
			if (!has)
				continue;
		}
		snprintf(out, size, "%s", mnt);
		found = true;
	}
	fclose(f);
	return found;
}

/* This process's cgroup path in the hierarchy named by key ("" for v2,
 * "memory" for v1's memory controller), from /proc/self/cgroup. */
static bool cgroup_of(const char *key, char *out, size_t size)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return false;
	char line[1024];
	bool found = false;
	while (!found && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
		if (!b)
			continue;
		*b = 0;
		if (strcmp(a + 1, key) == 0) {
			snprintf(out, size, "%s", strcmp(b + 1, "/") == 0 ? "" : b + 1);
			found = true;
		}
	}
	fclose(f);
	return found;
}

static void cg_cleanup(void)
{
	if (cg.child > 0) {
		kill(cg.child, SIGKILL);
		waitpid(cg.child, NULL, 0);
		cg.child = -1;
	}
	if (cg.go >= 0)
		close(cg.go);
	cg.go = -1;
	if (cg.v2[0])
		rmdir(cg.v2);
	if (cg.v1[0])
		rmdir(cg.v1);
	if (cg.data[0])
		unlink(cg.data);
	cg.v2[0] = cg.v1[0] = cg.data[0] = 0;
}

/* The data file, on a file system whose pages can be dropped (not tmpfs:
 * without swap its pages stay, and nothing would stall). */
static bool make_data(void)
{
	const char *dirs[] = { ".", "/var/tmp", "/tmp" };
	for (unsigned i = 0; i < sizeof dirs / sizeof *dirs; i++) {
		struct statfs fs;
		if (statfs(dirs[i], &fs) != 0 || fs.f_type == 0x01021994 /* TMPFS_MAGIC */)
			continue;
		snprintf(cg.data, sizeof cg.data, "%s/iopool-psi-data-%d", dirs[i], (int)getpid());
		int fd = open(cg.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			continue;
		static char block[1 << 20];
		memset(block, 0x5a, sizeof block);
		bool ok = true;
		for (int j = 0; ok && j < DATA / (int)sizeof block; j++)
			ok = write(fd, block, sizeof block) == (ssize_t)sizeof block;
		ok = fsync(fd) == 0 && ok;
		close(fd);
		if (ok)
			return true;
		unlink(cg.data);
	}
	cg.data[0] = 0;
	return false;
}

/* The stalling child: in both cgroups, then reads the data file over and
 * over (dropping its pages each time) once told to go. */
static void staller(int go)
{
	char pid[32], path[1200];
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	snprintf(path, sizeof path, "%s/cgroup.procs", cg.v2);
	if (!write_str(path, pid))
		_exit(2);
	if (cg.v1[0]) {
		snprintf(path, sizeof path, "%s/cgroup.procs", cg.v1);
		if (!write_str(path, pid))
			_exit(2);
	}
	char c;
	if (read(go, &c, 1) != 1)
		_exit(0);
	static char buf[1 << 20];
	for (;;) {
		int fd = open(cg.data, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			_exit(3);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		while (read(fd, buf, sizeof buf) > 0)
			;
		close(fd);
	}
}

/* A cgroup v2 directory with a memory limit (v2's own, or a v1 memory
 * cgroup's), and the child in it waiting: NULL, or why not. */
static const char *cg_setup(void)
{
	if (geteuid() != 0)
		return "needs root (to make a cgroup)";
	char mnt[512], path[512];
	if (!mount_of("cgroup2", NULL, mnt, sizeof mnt) || !cgroup_of("", path, sizeof path))
		return "no cgroup v2 hierarchy";
	snprintf(cg.v2, sizeof cg.v2, "%s%s/iopool-psi-%d", mnt, path, (int)getpid());
	if (mkdir(cg.v2, 0755) != 0) {
		cg.v2[0] = 0;
		return "cannot make a cgroup v2 directory";
	}
	char file[1200];
	snprintf(file, sizeof file, "%s/memory.pressure", cg.v2);
	if (access(file, F_OK) != 0)
		return "the cgroup has no memory.pressure (PSI off)";
	char limit[32];
	snprintf(limit, sizeof limit, "%d", LIMIT);
	snprintf(file, sizeof file, "%s/memory.max", cg.v2);
	if (access(file, F_OK) != 0 || !write_str(file, limit)) {
		/* No v2 memory controller here: v1's, if mounted. */
		if (!mount_of("cgroup", "memory", mnt, sizeof mnt) || !cgroup_of("memory", path, sizeof path))
			return "no memory controller (cgroup v2 memory.max or v1 memory)";
		snprintf(cg.v1, sizeof cg.v1, "%s%s/iopool-psi-%d", mnt, path, (int)getpid());
		if (mkdir(cg.v1, 0755) != 0) {
			cg.v1[0] = 0;
			return "cannot make a v1 memory cgroup";
		}
		snprintf(file, sizeof file, "%s/memory.limit_in_bytes", cg.v1);
		if (!write_str(file, limit))
			return "cannot set the v1 memory limit";
	}
	if (!make_data())
		return "no file system for the data file that is not tmpfs";
	int fds[2];
	if (pipe(fds) != 0)
		return "pipe";
	fflush(NULL);
	cg.child = fork();
	if (cg.child < 0)
		return "fork";
	if (cg.child == 0) {
		close(fds[1]);
		staller(fds[0]);
	}
	close(fds[0]);
	cg.go = fds[1];
	/* The child is in the cgroup once its cgroup.procs lists it. */
	snprintf(file, sizeof file, "%s/cgroup.procs", cg.v2);
	for (int i = 0; i < 5000; i++) {
		char buf[64] = "";
		FILE *f = fopen(file, "re");
		bool in = f && fgets(buf, sizeof buf, f) && atoi(buf) == cg.child;
		if (f)
			fclose(f);
		if (in)
			return NULL;
		sleep_ms(1);
	}
	return "the child did not join the cgroup";
}

/*
 * With a one-minute worker period, polling would see the stall a minute
 * late (its first read was before it); the trigger's watcher shrinks
 * every pool within a window or two (2 s each) of the stall's start. Then
 * the cgroup goes, and the trigger with it: the watcher says so once and
 * the worker polls.
 */
TEST(a_memory_stall_in_a_cgroup_reclaims_within_a_window)
{
	const char *why = cg_setup();
	if (why) {
		cg_cleanup();
		TH_SKIP_IF(true, why);
	}
	char pressure[1200];
	snprintf(pressure, sizeof pressure, "%s/memory.pressure", cg.v2);
	setenv("IOPOOL_PSI_RECLAIM", "1", 1); /* 20 ms of stall in 2 s */
	setenv("IOPOOL_PSI_FILE", pressure, 1);
	setenv("IOPOOL_WORKER_PERIOD_MS", "60000", 1);
	th_capture_begin();
	iop_pool_t *p = pressed_pool();
	iop_pool_t *w = worker_pool("workers");
	uint64_t chunks = p ? STATS(p).chunks : 0;
	int watchers = th_threads_named("iop-psi");
	int64_t t0 = now_ms();
	bool go = write(cg.go, "g", 1) == 1;
	bool shrunk = go && p && WITHIN(15000, STATS(p).chunks == 0);
	int64_t took = now_ms() - t0;
	/* The cgroup goes while the watcher waits on its trigger. */
	kill(cg.child, SIGKILL);
	waitpid(cg.child, NULL, 0);
	cg.child = -1;
	bool removed = rmdir(cg.v2) == 0;
	if (removed)
		cg.v2[0] = 0;
	bool lost = removed && WITHIN(5000, captured_count("lost its PSI trigger") == 1);
	char *err = th_capture_end();
	printf("%llu chunks of 2 MiB shrunk %lld ms after the stall began (window 2000 ms)\n",
	       (unsigned long long)chunks, (long long)took);
	cg_cleanup();
	REQUIRE(p && w && go);
	CHECK_GE(chunks, 2);
	CHECK_EQ(watchers, 1);
	CHECK(strstr(err, FALLBACK_MSG) == NULL);
	CHECK(shrunk);
	CHECK(removed);
	CHECK(lost);
	free(err);
	CHECK_AUDIT(p);
	CHECK_DESTROY(w);
	CHECK_EQ(th_threads_named("iop-psi"), 0);
	CHECK_DESTROY(p);
	return TH_PASS;
}

int main(int argc, char **argv)
{
	return th_main(argc, argv);
}
