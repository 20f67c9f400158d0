/* SPDX-License-Identifier: MIT */
/*
 * iopool-mempool-perf: DPDK's rte_mempool, in a child process of its own
 * (EAL is process-wide: its memory, its lcores, its signal handling), with
 * the EAL set-up of iopool-bench (alloc_dpdk.c: no hugepages, no PCI).
 *
 * The pool: a per-lcore cache of 512 (RTE_MEMPOOL_CACHE_MAX_SIZE), the
 * default multi-producer/multi-consumer ring, the objects the driver asks
 * for. Each worker thread registers as an lcore (rte_thread_register) so
 * that rte_mempool_get_bulk/put_bulk, inlined from rte_mempool.h, use its
 * cache, as the lcores of DPDK's own test do.
 *
 * The driver writes one request per cell on a pipe; the child answers with
 * a struct mp_result. The first answer, before any request, says whether
 * EAL and the pool came up.
 */
#include "mempool_perf.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef IOP_BENCH_HAVE_DPDK

#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mempool.h>

#ifndef IOP_BENCH_DPDK_VERSION
#define IOP_BENCH_DPDK_VERSION "unknown"
#endif
const char mp_dpdk_version[] = IOP_BENCH_DPDK_VERSION;

#define A_CTX struct rte_mempool
#define A_GET(mp, objs, n) rte_mempool_get_bulk((mp), (objs), (n))
#define A_PUT(mp, objs, n) rte_mempool_put_bulk((mp), (objs), (n))
MP_DEFINE_LOOPS(dpdk_loop)

struct mp_dpdk {
	pid_t pid;
	int to, from;   /* request pipe (write end), answer pipe (read end) */
};

struct mp_request {
	uint32_t cell, cores;
	double seconds;
};

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* 1: read all, 0: end of file before anything, -1: error or short. */
static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t r = read(fd, p + got, len - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return got == 0 && r == 0 ? 0 : -1;
		got += (size_t)r;
	}
	return 1;
}

static int lcore_register(char *why, size_t len)
{
	if (rte_thread_register() == 0)
		return 0;
	snprintf(why, len, "rte_thread_register: %s", rte_strerror(rte_errno));
	return -1;
}

/* The pool both the matrix and --callgrind-loop use: pool_objs objects of
 * obj_size bytes, a cache of 512 per lcore. NULL with a reason. */
static struct rte_mempool *pool_make(unsigned pool_objs, size_t obj_size, char *why, size_t len)
{
	struct rte_mempool *mp = rte_mempool_create("mempool_perf", pool_objs, (unsigned)obj_size,
						    RTE_MEMPOOL_CACHE_MAX_SIZE, 0, NULL, NULL, NULL, NULL,
						    SOCKET_ID_ANY, 0);
	if (mp == NULL)
		snprintf(why, len, "rte_mempool_create(%u x %zu B, cache %u): %s", pool_objs, obj_size,
			 RTE_MEMPOOL_CACHE_MAX_SIZE, rte_strerror(rte_errno));
	return mp;
}

static void child_main(int in, int out, unsigned cores_max, unsigned pool_objs, size_t obj_size)
{
	struct mp_result res;
	struct mp_request req;
	struct rte_mempool *mp;
	struct mp_runner *run;

	bench_child_name = "dpdk";
	memset(&res, 0, sizeof(res));
	bench_eal_up();
	mp = pool_make(pool_objs, obj_size, res.why, sizeof(res.why));
	if (mp == NULL) {
		write_all(out, &res, sizeof(res));
		bench_eal_down();
		_exit(1);
	}
	run = mp_runner_start(cores_max, lcore_register, res.why, sizeof(res.why));
	if (write_all(out, &res, sizeof(res)) != 0 || run == NULL)
		_exit(1);
	while (read_all(in, &req, sizeof(req)) == 1) {
		struct mp_cell c;

		mp_cell_get(req.cell, &c);
		mp_runner_run(run, req.cores, dpdk_loop_pick(&c), mp, &c, req.seconds, &res);
		if (write_all(out, &res, sizeof(res)) != 0)
			break;
	}
	mp_runner_stop(run);
	rte_mempool_free(mp);
	bench_eal_down();
	_exit(0);
}

int mp_dpdk_count(unsigned cell, unsigned calls, unsigned pool_objs, size_t obj_size, char *why, size_t len)
{
	static void *table[MP_KEEP_MAX];
	struct rte_mempool *mp;
	struct mp_cell c;

	bench_child_name = "dpdk";
	bench_eal_up();
	mp = pool_make(pool_objs, obj_size, why, len);
	if (mp == NULL) {
		bench_eal_down();
		return -1;
	}
	mp_cell_get(cell, &c);
	mp_loop_fn fn = dpdk_loop_pick(&c);
	int rc = 0;
	for (unsigned i = 0; i < calls && rc == 0; i++) {
		why[0] = 0;
		fn(mp, &c, table, 0, why, len);
		rc = why[0] ? -1 : 0;
	}
	rte_mempool_free(mp);
	bench_eal_down();
	return rc;
}

struct mp_dpdk *mp_dpdk_open(unsigned cores_max, unsigned pool_objs, size_t obj_size, char *why, size_t len)
{
	int req[2], ans[2];
	struct mp_dpdk *d = calloc(1, sizeof(*d));
	struct mp_result hello;

	if (d == NULL || pipe(req) != 0 || pipe(ans) != 0)
		die("pipe: %s", strerror(errno));
	fflush(NULL);
	d->pid = fork();
	if (d->pid < 0)
		die("fork: %s", strerror(errno));
	if (d->pid == 0) {
		close(req[1]);
		close(ans[0]);
		child_main(req[0], ans[1], cores_max, pool_objs, obj_size);
	}
	close(req[0]);
	close(ans[1]);
	d->to = req[1];
	d->from = ans[0];
	/* A child that dies must not kill the driver with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	if (read_all(d->from, &hello, sizeof(hello)) != 1 || hello.why[0]) {
		snprintf(why, len, "n/a: %s", hello.why[0] ? hello.why : "the DPDK child died (see its message)");
		mp_dpdk_close(d);
		return NULL;
	}
	return d;
}

int mp_dpdk_run(struct mp_dpdk *d, unsigned cell, unsigned cores, double seconds, struct mp_result *out)
{
	struct mp_request r = { cell, cores, seconds };

	if (write_all(d->to, &r, sizeof(r)) != 0 || read_all(d->from, out, sizeof(*out)) != 1)
		return -1;
	return 0;
}

void mp_dpdk_close(struct mp_dpdk *d)
{
	int st;

	close(d->to);
	close(d->from);
	waitpid(d->pid, &st, 0);
	free(d);
}

#else /* !IOP_BENCH_HAVE_DPDK */

const char mp_dpdk_version[] = "";

struct mp_dpdk *mp_dpdk_open(unsigned cores_max, unsigned pool_objs, size_t obj_size, char *why, size_t len)
{
	(void)cores_max;
	(void)pool_objs;
	(void)obj_size;
	snprintf(why, len, "%s", bench_allocs[ALLOC_DPDK].why_not);
	return NULL;
}

int mp_dpdk_run(struct mp_dpdk *d, unsigned cell, unsigned cores, double seconds, struct mp_result *out)
{
	(void)d;
	(void)cell;
	(void)cores;
	(void)seconds;
	(void)out;
	return -1;
}

void mp_dpdk_close(struct mp_dpdk *d)
{
	(void)d;
}

int mp_dpdk_count(unsigned cell, unsigned calls, unsigned pool_objs, size_t obj_size, char *why, size_t len)
{
	(void)cell;
	(void)calls;
	(void)pool_objs;
	(void)obj_size;
	snprintf(why, len, "%s", bench_allocs[ALLOC_DPDK].why_not);
	return -1;
}

#endif /* IOP_BENCH_HAVE_DPDK */
