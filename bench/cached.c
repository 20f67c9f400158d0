/* SPDX-License-Identifier: MIT */
/*
 * Cached memory against threads, per-CPU against per-thread caches (issue
 * "Per-CPU caches on restartable sequences"): T threads (1, 2, 16, 64,
 * 256) each allocate a burst from one pool of 2 KiB objects and free it,
 * then go idle without exiting or flushing. Measured with every thread
 * idle: the bytes the pool's caches hold (iop_pool_stats: cached objects
 * times the object size), then what iop_reclaim() called from the main
 * thread gives back (cached bytes, and VmRSS).
 *
 * The cache mode is chosen once per process, so the bench runs itself
 * once per mode with IOPOOL_CACHE set.
 *
 *   iopool-cached-bench [--json FILE] [--quick]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <iopool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define OBJ 2048
#define BURST 512 /* objects per thread: more than two magazines */

static const unsigned idle_threads[] = { 1, 2, 16, 64, 256 };
#define NCOUNTS (sizeof(idle_threads) / sizeof(idle_threads[0]))

struct shared {
	iop_pool_t *pool;
	pthread_barrier_t filled, done;
};

static void *worker(void *arg)
{
	struct shared *sh = arg;
	void **o = malloc(BURST * sizeof(void *));
	if (!o)
		abort();
	unsigned got = iop_alloc_bulk(sh->pool, o, BURST);
	for (unsigned i = 0; i < got; i++)
		memset(o[i], 0x5a, OBJ);
	for (unsigned i = 0; i < got; i++)
		iop_free(sh->pool, o[i]);
	free(o);
	pthread_barrier_wait(&sh->filled); /* idle from here */
	pthread_barrier_wait(&sh->done);
	return NULL;
}

static long vmrss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	long kib = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

/* One mode (this process's), every thread count; rows on stdout as
 * "T cached_bytes reclaimed_bytes rss_drop_kib". */
static int run_mode(void)
{
	for (size_t k = 0; k < NCOUNTS; k++) {
		unsigned t = idle_threads[k];
		struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
		pp.name = "cached-bench";
		pp.obj_size = OBJ;
		struct shared sh;
		if ((sh.pool = iop_pool_create(&pp)) == NULL) {
			fprintf(stderr, "iopool-cached-bench: iop_pool_create: %s\n", strerror(errno));
			return 1;
		}
		pthread_barrier_init(&sh.filled, NULL, t + 1);
		pthread_barrier_init(&sh.done, NULL, t + 1);
		pthread_t *th = calloc(t, sizeof(*th));
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, 64 * 1024);
		for (unsigned i = 0; i < t; i++)
			if (!th || pthread_create(&th[i], &attr, worker, &sh) != 0) {
				fprintf(stderr, "iopool-cached-bench: pthread_create failed\n");
				return 1;
			}
		pthread_barrier_wait(&sh.filled);
		struct iop_pool_stats st = { .struct_size = sizeof(st) };
		iop_pool_stats(sh.pool, &st);
		uint64_t cached = st.cached * OBJ;
		long rss0 = vmrss_kib();
		int64_t unmapped = iop_reclaim();
		long rss1 = vmrss_kib();
		iop_pool_stats(sh.pool, &st);
		uint64_t left = st.cached * OBJ;
		printf("%u %llu %llu %ld %lld\n", t, (unsigned long long)cached,
		       (unsigned long long)(cached - left), rss0 - rss1, (long long)unmapped);
		fflush(stdout);
		pthread_barrier_wait(&sh.done);
		for (unsigned i = 0; i < t; i++)
			pthread_join(th[i], NULL);
		free(th);
		pthread_attr_destroy(&attr);
		pthread_barrier_destroy(&sh.filled);
		pthread_barrier_destroy(&sh.done);
		iop_pool_destroy(sh.pool);
	}
	return 0;
}

struct row {
	unsigned threads;
	unsigned long long cached, reclaimed;
	long rss_drop_kib;
	long long unmapped;
};

/* Run this program in mode `mode` (IOPOOL_CACHE) and read its rows. */
static int run_child(const char *self, const char *mode, struct row *rows)
{
	int fd[2];
	if (pipe(fd) != 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(fd[1], 1);
		close(fd[0]);
		close(fd[1]);
		setenv("IOPOOL_CACHE", mode, 1);
		execl(self, self, "--child", (char *)NULL);
		_exit(127);
	}
	close(fd[1]);
	FILE *f = fdopen(fd[0], "r");
	unsigned n = 0;
	while (f && n < NCOUNTS && fscanf(f, "%u %llu %llu %ld %lld", &rows[n].threads, &rows[n].cached,
					  &rows[n].reclaimed, &rows[n].rss_drop_kib, &rows[n].unmapped) == 5)
		n++;
	if (f)
		fclose(f);
	int status;
	waitpid(pid, &status, 0);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 && n == NCOUNTS ? 0 : -1;
}

int main(int argc, char **argv)
{
	const char *json = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--child"))
			return run_mode();
		if (!strcmp(argv[i], "--json") && i + 1 < argc)
			json = argv[++i];
		else if (!strcmp(argv[i], "--quick"))
			; /* one pass is all it does */
		else {
			fprintf(stderr, "usage: iopool-cached-bench [--json FILE] [--quick]\n");
			return 2;
		}
	}
	struct machine m;
	machine_probe(&m);
	static const char *modes[2] = { "cpu", "thread" };
	struct row rows[2][NCOUNTS];
	for (int k = 0; k < 2; k++)
		if (run_child("/proc/self/exe", modes[k], rows[k]) != 0) {
			fprintf(stderr, "iopool-cached-bench: the %s-mode run failed\n", modes[k]);
			return 1;
		}
	read_loadavg(m.load_end, sizeof(m.load_end));
	printf("Cached memory of one pool (2 KiB objects) with T idle threads that each\n"
	       "allocated and freed %u objects; then iop_reclaim() from another thread.\n\n", BURST);
	printf("| mode | threads | cached KiB | reclaimed | VmRSS drop KiB |\n|---|---:|---:|---:|---:|\n");
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; i < NCOUNTS; i++) {
			const struct row *r = &rows[k][i];
			printf("| %s | %u | %llu | %.1f%% | %ld |\n", modes[k], r->threads, r->cached / 1024,
			       r->cached ? 100.0 * (double)r->reclaimed / (double)r->cached : 100.0, r->rss_drop_kib);
		}
	if (json) {
		FILE *f = fopen(json, "w");
		if (!f) {
			fprintf(stderr, "iopool-cached-bench: %s: %s\n", json, strerror(errno));
			return 1;
		}
		fputs("{\"bench\":\"cached\",\"machine\":", f);
		json_machine(f, &m);
		fputs(",\"results\":[", f);
		for (int k = 0; k < 2; k++)
			for (size_t i = 0; i < NCOUNTS; i++) {
				const struct row *r = &rows[k][i];
				fprintf(f,
					"%s{\"mode\":\"%s\",\"threads\":%u,\"cached_bytes\":%llu,\"reclaimed_bytes\":%llu,"
					"\"rss_drop_kib\":%ld,\"unmapped_bytes\":%lld}",
					k || i ? "," : "", modes[k], r->threads, r->cached, r->reclaimed, r->rss_drop_kib,
					r->unmapped);
			}
		fputs("]}\n", f);
		fclose(f);
	}
	return 0;
}
