/* SPDX-License-Identifier: MIT */
/*
 * iopool-mempool-perf: DPDK's own mempool benchmark (app/test/
 * test_mempool_perf.c, "mempool_perf_autotest"), written from its
 * description, for DPDK's rte_mempool, iopool and a bounded iopool, in one
 * run, interleaved cell by cell.
 *
 * Matrix
 *   loop         each core: get n_keep objects in bulks of n_get_bulk, put
 *                them back in bulks of n_put_bulk; again until the cell's
 *                time is up (the clock is read every 65536 objects, DPDK's
 *                N); rate = objects got per second, summed over the cores;
 *                the objects are held in a per-core table on a cache line,
 *                as DPDK's test_loop() declares its obj_table
 *                (__rte_cache_aligned)
 *   n_get_bulk   1, 4, 8, 32
 *   n_put_bulk   1, 4, 8, 32
 *   n_keep       32, 128, 512
 *   sizes        in variables (48 cells), and get = put as literal
 *                constants in an inlined copy of the loop (12 cells:
 *                DPDK's const variants)
 *   cores        1 and 2: one worker thread per core, each pinned to its
 *                own CPU; with 2, both run the cell at once on one pool
 *   allocators   dpdk            rte_mempool, per-lcore cache of 512,
 *                                rte_mempool_get_bulk/put_bulk inlined; a
 *                                child process (EAL), workers registered
 *                                as lcores
 *                iopool          default parameters; iop_alloc_bulk/
 *                                iop_free_bulk, iop_alloc/iop_free for 1
 *                iopool-bounded  the same with params.limit = the DPDK
 *                                pool's objects
 *   pool         DPDK: 2 x (512 kept + 768, its cache's flush threshold,
 *                + 32) objects rounded up to 2^k - 1 (the ring's exact
 *                fit): 4095; the bounded pool's limit is the same
 *   objects      2 KiB (--size)
 *   order        per repetition, per core count, per cell: the three
 *                allocators one after the other, the first rotating, so
 *                drift hits all alike; a cell's rate is the median over
 *                --reps, and a ratio the median of the repetitions' own
 *                ratios (cell_ratio): each pairs two runs made moments apart
 *   processes    each repetition in a fresh process of its own (both
 *                iopool pools, the workers and DPDK's EAL child created
 *                anew), which sends its rates back; so a median is also
 *                over what one process keeps for its whole life and the
 *                next does not (docs/BENCHMARKS.md, twelfth session);
 *                --one-process runs them all in this one
 *   also         per iopool cell: depot exchanges, slow allocs and frees
 *                (iop_pool_stats deltas), and iopool's mutex acquisitions
 *                and the contended ones (pthread_mutex_lock is wrapped at
 *                link time: a failed trylock first counts as contended)
 *
 * Running:
 *   iopool-mempool-perf                    the matrix, ~2-3 min on 2 CPUs
 *   iopool-mempool-perf --quick            a smoke test (~1-2 s)
 *   iopool-mempool-perf --cores 1 --seconds 1 --reps 5
 * Exit status: 0; 1 when a cell failed or a child died; 2 usage.
 */
#include "mempool_perf.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iopool.h>

#define DEFAULT_SECONDS 0.1
#define DEFAULT_REPS 3u
#define QUICK_SECONDS 0.002
#define DEFAULT_JSON "build/mempool-perf-results.json"
#define MP_ALLOCS 3u

enum { A_DPDK, A_IOPOOL, A_BOUNDED };
static const char *const alloc_names[MP_ALLOCS] = { "dpdk", "iopool", "iopool-bounded" };

const unsigned mp_bulks[MP_NBULK] = { 1, 4, 8, 32 };
const unsigned mp_keeps[MP_NKEEP] = { 32, 128, 512 };

void mp_cell_get(unsigned i, struct mp_cell *c)
{
	memset(c, 0, sizeof(*c));
	if (i < MP_VAR_CELLS) {
		c->keep_idx = i / (MP_NBULK * MP_NBULK);
		c->keep = mp_keeps[c->keep_idx];
		c->get = mp_bulks[i / MP_NBULK % MP_NBULK];
		c->put = mp_bulks[i % MP_NBULK];
		return;
	}
	i -= MP_VAR_CELLS;
	c->is_const = 1;
	c->keep_idx = i / MP_NBULK;
	c->bulk_idx = i % MP_NBULK;
	c->keep = mp_keeps[c->keep_idx];
	c->get = c->put = mp_bulks[c->bulk_idx];
}

/* ------------------------------------------------------------------------ */
/* iopool's mutexes, counted                                                  */
/* ------------------------------------------------------------------------ */

/*
 * The link maps every pthread_mutex_lock of this program and of the static
 * library to this wrapper (CMake: --wrap=pthread_mutex_lock). A trylock that
 * succeeds costs what the lock would; one that fails is a contended
 * acquisition, then waits in the real lock. Per-thread counts, read by the
 * worker around its timed loop.
 */
int __real_pthread_mutex_lock(pthread_mutex_t *m);
int __wrap_pthread_mutex_lock(pthread_mutex_t *m);
int __real_pthread_mutex_unlock(pthread_mutex_t *m);
int __wrap_pthread_mutex_unlock(pthread_mutex_t *m);
static __thread uint64_t tl_locks, tl_contended, tl_wait_ns, tl_lock_ns, tl_hold_ns;
/* --lock-timing: every acquisition and hold timed (two clock reads each,
 * tens of ns per depot exchange: the rates of that run are not quoted). */
static int lock_timing;
#define HOLD_DEPTH 8
static __thread uint64_t tl_held_at[HOLD_DEPTH];
static __thread unsigned tl_depth;

int __wrap_pthread_mutex_lock(pthread_mutex_t *m)
{
	uint64_t t0 = lock_timing ? now_ns() : 0;
	int err = 0;

	tl_locks++;
	if (pthread_mutex_trylock(m) != 0) {
		/* Contended: timed (two clock reads would add about 40 ns to
		 * every acquisition otherwise). */
		uint64_t w0 = now_ns();
		err = __real_pthread_mutex_lock(m);
		tl_contended++;
		tl_wait_ns += now_ns() - w0;
	}
	if (lock_timing) {
		uint64_t t1 = now_ns();
		tl_lock_ns += t1 - t0;
		if (tl_depth < HOLD_DEPTH)
			tl_held_at[tl_depth] = t1;
		tl_depth++;
	}
	return err;
}

int __wrap_pthread_mutex_unlock(pthread_mutex_t *m)
{
	if (lock_timing && tl_depth > 0 && --tl_depth < HOLD_DEPTH)
		tl_hold_ns += now_ns() - tl_held_at[tl_depth];
	return __real_pthread_mutex_unlock(m);
}

/* ------------------------------------------------------------------------ */
/* Workers                                                                    */
/* ------------------------------------------------------------------------ */

struct mp_worker {
	pthread_t th;
	unsigned idx;
	int cpu;
	struct mp_runner *r;
	uint64_t done, ns, locks, contended, wait_ns, lock_ns, hold_ns;
	char why[160];
	/* On a cache line, as DPDK's obj_table: where a table of pointers
	 * starts decides whether 16- and 32-byte copies of it straddle
	 * lines (mp_runner_start allocates the runner aligned). */
	void *table[MP_KEEP_MAX] __attribute__((aligned(64)));
};

struct mp_runner {
	pthread_mutex_t mu;
	pthread_cond_t cv, done_cv;
	unsigned nthreads, gen, cores, finished, inited, init_failed;
	int stop;
	mp_loop_fn fn;
	void *ctx;
	const struct mp_cell *cell;
	uint64_t dur_ns;
	_Atomic unsigned ready;
	int (*init)(char *why, size_t len);
	char init_why[160];
	struct mp_worker w[MP_CORES_MAX];
};

static void *worker_main(void *arg)
{
	struct mp_worker *w = arg;
	struct mp_runner *r = w->r;
	cpu_set_t one;
	unsigned seen = 0;
	int failed = 0;
	char why[160] = "";

	CPU_ZERO(&one);
	CPU_SET(w->cpu, &one);
	if ((errno = pthread_setaffinity_np(pthread_self(), sizeof(one), &one)) != 0) {
		snprintf(why, sizeof(why), "pinning worker %u to CPU %d: %s", w->idx, w->cpu, strerror(errno));
		failed = 1;
	} else if (r->init != NULL && r->init(why, sizeof(why)) != 0) {
		failed = 1;
	}
	pthread_mutex_lock(&r->mu);
	if (failed && !r->init_failed++)
		snprintf(r->init_why, sizeof(r->init_why), "%s", why);
	r->inited++;
	pthread_cond_broadcast(&r->done_cv);
	for (;;) {
		while (r->gen == seen && !r->stop)
			pthread_cond_wait(&r->cv, &r->mu);
		if (r->stop)
			break;
		seen = r->gen;
		if (w->idx >= r->cores)
			continue;
		pthread_mutex_unlock(&r->mu);

		/* Start together: the cell's cores spin until all are here. */
		atomic_fetch_add(&r->ready, 1);
		while (atomic_load(&r->ready) < r->cores)
			cpu_relax();
		uint64_t l0 = tl_locks, c0 = tl_contended, w0 = tl_wait_ns, k0 = tl_lock_ns, h0 = tl_hold_ns;
		uint64_t t0 = now_ns();
		w->why[0] = 0;
		w->done = r->fn(r->ctx, r->cell, w->table, t0 + r->dur_ns, w->why, sizeof(w->why));
		w->ns = now_ns() - t0;
		w->locks = tl_locks - l0;
		w->contended = tl_contended - c0;
		w->wait_ns = tl_wait_ns - w0;
		w->lock_ns = tl_lock_ns - k0;
		w->hold_ns = tl_hold_ns - h0;

		pthread_mutex_lock(&r->mu);
		r->finished++;
		pthread_cond_broadcast(&r->done_cv);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

struct mp_runner *mp_runner_start(unsigned nthreads, int (*thread_init)(char *why, size_t len), char *why,
				  size_t len)
{
	/* Aligned as its workers' tables are (calloc gives 16 bytes). */
	struct mp_runner *r = aligned_alloc(_Alignof(struct mp_runner), sizeof(*r));
	cpu_set_t cpus;
	int cpu = -1;

	if (r == NULL || nthreads == 0 || nthreads > MP_CORES_MAX)
		die("mp_runner_start(%u threads)", nthreads);
	memset(r, 0, sizeof(*r));
	if (sched_getaffinity(0, sizeof(cpus), &cpus) != 0)
		die("sched_getaffinity: %s", strerror(errno));
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	pthread_cond_init(&r->done_cv, NULL);
	r->nthreads = nthreads;
	r->init = thread_init;
	for (unsigned i = 0; i < nthreads; i++) {
		struct mp_worker *w = &r->w[i];

		/* The i-th CPU this process may run on. */
		do
			cpu++;
		while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &cpus));
		if (cpu >= CPU_SETSIZE) {
			snprintf(why, len, "%u workers need %u CPUs; this process may use %d", nthreads, nthreads,
				 CPU_COUNT(&cpus));
			free(r);
			return NULL;
		}
		w->idx = i;
		w->cpu = cpu;
		w->r = r;
		if ((errno = pthread_create(&w->th, NULL, worker_main, w)) != 0)
			die("pthread_create: %s", strerror(errno));
	}
	pthread_mutex_lock(&r->mu);
	while (r->inited < nthreads)
		pthread_cond_wait(&r->done_cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
	if (r->init_failed) {
		snprintf(why, len, "%s", r->init_why);
		mp_runner_stop(r);
		return NULL;
	}
	return r;
}

void mp_runner_run(struct mp_runner *r, unsigned cores, mp_loop_fn fn, void *ctx, const struct mp_cell *c,
		   double seconds, struct mp_result *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&r->mu);
	r->fn = fn;
	r->ctx = ctx;
	r->cell = c;
	r->cores = cores;
	r->dur_ns = (uint64_t)(seconds * 1e9);
	r->finished = 0;
	atomic_store(&r->ready, 0);
	r->gen++;
	pthread_cond_broadcast(&r->cv);
	while (r->finished < cores)
		pthread_cond_wait(&r->done_cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
	for (unsigned i = 0; i < cores; i++) {
		const struct mp_worker *w = &r->w[i];

		if (w->why[0] && !out->why[0])
			snprintf(out->why, sizeof(out->why), "core %u: %s", i, w->why);
		out->core_rate[i] = (double)w->done * 1e9 / (double)(w->ns ? w->ns : 1);
		out->rate += out->core_rate[i];
		out->locks += w->locks;
		out->contended += w->contended;
		out->wait_ns += w->wait_ns;
		out->lock_ns += w->lock_ns;
		out->hold_ns += w->hold_ns;
	}
}

void mp_runner_stop(struct mp_runner *r)
{
	pthread_mutex_lock(&r->mu);
	r->stop = 1;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	for (unsigned i = 0; i < r->nthreads; i++)
		pthread_join(r->w[i].th, NULL);
	free(r);
}

/* ------------------------------------------------------------------------ */
/* iopool, as a user would call it                                            */
/* ------------------------------------------------------------------------ */

#include "iop_getput.h"

#define A_CTX iop_pool_t
#define A_GET(pool, objs, n) iop_get((pool), (objs), (n))
#define A_PUT(pool, objs, n) iop_put((pool), (objs), (n))
MP_DEFINE_LOOPS(iop_loop)

/* ------------------------------------------------------------------------ */
/* The run                                                                    */
/* ------------------------------------------------------------------------ */

/* What iop_pool_stats says changed over one cell, summed over repetitions. */
struct iop_delta {
	uint64_t objs, depot_get, depot_put, alloc_slow, free_slow, locks, contended, wait_ns, lock_ns, hold_ns;
};

struct mp_cellres {
	unsigned n[MP_ALLOCS];
	double rate[MP_ALLOCS][MAX_REPS];
	double core_rate[MP_ALLOCS][MAX_REPS][MP_CORES_MAX];
	char why[MP_ALLOCS][160];
	struct iop_delta st[MP_ALLOCS];
};

struct mp_run {
	double seconds;
	unsigned reps, ncores, cores[MP_CORES_MAX], pool_objs;
	unsigned keep_mask;      /* bit i: mp_keeps[i] is run */
	unsigned char only[MP_CELLS];   /* --cells: 1 where a cell is run */
	int only_set;
	unsigned cache;          /* iopool's params.cache_size; 0: default */
	size_t obj_size;
	int quick;
	const char *json_path, *md_path;
	const char *cg_loop;     /* --callgrind-loop ALLOC:KEEP:GET:PUT:KIND:CALLS */
	char alloc_why[MP_ALLOCS][256];
	struct machine machine;
	struct mp_cellres res[MP_CORES_MAX][MP_CELLS];   /* by index in cores[] */
	unsigned failures;
	int one_process;         /* --one-process: every repetition in this one */
	long rep_pid[MAX_REPS];  /* the process each repetition ran in */
};

static void usage(FILE *f)
{
	fputs("usage: iopool-mempool-perf [options]\n"
	      "  --seconds S      time per cell and allocator (default 0.1; --quick: 0.002)\n"
	      "  --reps R         repetitions, median reported (default 3; --quick: 1)\n"
	      "  --cores LIST     core counts to run, from 1,2 (default 1,2)\n"
	      "  --size BYTES     object size (default 2048)\n"
	      "  --keep LIST      only these n_keep, from 32,128,512 (default all)\n"
	      "  --cells LIST     only these cells, each KEEP:GET:PUT:KIND (KIND var or const),\n"
	      "                   e.g. 32:32:4:var,512:8:8:const\n"
	      "  --cache N        iopool's params.cache_size (default 0: iopool's choice)\n"
	      "  --quick          a smoke test\n"
	      "  --lock-timing    time every mutex acquisition and hold (slows the depot)\n"
	      "  --one-process    every repetition in this process (default: a fresh\n"
	      "                   process, pools and DPDK child for each)\n"
	      "  --json PATH      results as JSON (default " DEFAULT_JSON ")\n"
	      "  --markdown PATH  the tables as markdown too\n"
	      "  --callgrind-loop ALLOC:KEEP:GET:PUT:KIND:CALLS\n"
	      "                   only call one cell's loop CALLS times, one round of 65536 objects\n"
	      "                   each, on this thread (for bench/mp_callgrind.sh); ALLOC iopool,\n"
	      "                   bounded (limited to DPDK's pool size) or dpdk, KIND var or const\n"
	      "  --help\n",
	      f);
}

/* The index of cell "KEEP:GET:PUT:KIND" (KIND var or const), followed in
 * spec by nothing or by ':' (*rest then points there); MP_CELLS when spec
 * names no cell of the matrix, with a message. */
static unsigned find_cell(const char *spec, const char **rest)
{
	unsigned keep, get, put;
	char kind[8];
	int used = 0;

	if (sscanf(spec, "%u:%u:%u:%7[a-z]%n", &keep, &get, &put, kind, &used) != 4 ||
	    (spec[used] != 0 && spec[used] != ':') || (strcmp(kind, "var") != 0 && strcmp(kind, "const") != 0)) {
		fprintf(stderr, "iopool-mempool-perf: a cell is KEEP:GET:PUT:KIND (KIND var or const), not '%s'\n", spec);
		return MP_CELLS;
	}
	*rest = spec + used;
	for (unsigned i = 0; i < MP_CELLS; i++) {
		struct mp_cell c;
		mp_cell_get(i, &c);
		if (c.keep == keep && c.get == get && c.put == put && c.is_const == (strcmp(kind, "const") == 0))
			return i;
	}
	fprintf(stderr, "iopool-mempool-perf: no cell %u %u %u %s in the matrix\n", keep, get, put, kind);
	return MP_CELLS;
}

static void parse_args(int argc, char **argv, struct mp_run *r)
{
	int seconds_set = 0, reps_set = 0;

	r->seconds = DEFAULT_SECONDS;
	r->reps = DEFAULT_REPS;
	r->ncores = 2;
	r->cores[0] = 1;
	r->cores[1] = 2;
	r->obj_size = OBJ_SIZE_DEFAULT;
	r->json_path = DEFAULT_JSON;
	r->keep_mask = (1u << MP_NKEEP) - 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end;

		if (strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		} else if (strcmp(a, "--quick") == 0) {
			r->quick = 1;
			continue;
		} else if (strcmp(a, "--lock-timing") == 0) {
			lock_timing = 1;
			continue;
		} else if (strcmp(a, "--one-process") == 0) {
			r->one_process = 1;
			continue;
		}
		if (v == NULL) {
			fprintf(stderr, "iopool-mempool-perf: %s needs a value (or is unknown)\n", a);
			usage(stderr);
			exit(2);
		}
		i++;
		errno = 0;
		if (strcmp(a, "--seconds") == 0) {
			r->seconds = strtod(v, &end);
			if (*end || errno || !(r->seconds > 0 && r->seconds <= 60))
				goto bad;
			seconds_set = 1;
		} else if (strcmp(a, "--reps") == 0) {
			unsigned long n = strtoul(v, &end, 10);
			if (*end || errno || n < 1 || n > MAX_REPS)
				goto bad;
			r->reps = (unsigned)n;
			reps_set = 1;
		} else if (strcmp(a, "--size") == 0) {
			unsigned long n = strtoul(v, &end, 10);
			if (*end || errno || n < IOP_OBJ_SIZE_MIN || n > 65536)
				goto bad;
			r->obj_size = n;
		} else if (strcmp(a, "--cores") == 0) {
			char buf[64], *save = NULL;
			r->ncores = 0;
			snprintf(buf, sizeof(buf), "%s", v);
			for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
				unsigned long n = strtoul(t, &end, 10);
				if (*end || n < 1 || n > MP_CORES_MAX || r->ncores == MP_CORES_MAX)
					goto bad;
				r->cores[r->ncores++] = (unsigned)n;
			}
			if (r->ncores == 0)
				goto bad;
		} else if (strcmp(a, "--keep") == 0) {
			char buf[64], *save = NULL;
			r->keep_mask = 0;
			snprintf(buf, sizeof(buf), "%s", v);
			for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
				unsigned long n = strtoul(t, &end, 10);
				unsigned k = 0;
				while (k < MP_NKEEP && mp_keeps[k] != n)
					k++;
				if (*end || k == MP_NKEEP)
					goto bad;
				r->keep_mask |= 1u << k;
			}
			if (r->keep_mask == 0)
				goto bad;
		} else if (strcmp(a, "--cells") == 0) {
			char buf[512], *save = NULL;
			const char *rest;
			snprintf(buf, sizeof(buf), "%s", v);
			for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
				unsigned ci = find_cell(t, &rest);
				if (ci == MP_CELLS || *rest)
					goto bad;
				r->only[ci] = 1;
				r->only_set = 1;
			}
			if (!r->only_set)
				goto bad;
		} else if (strcmp(a, "--cache") == 0) {
			unsigned long n = strtoul(v, &end, 10);
			if (*end || errno || n > IOP_CACHE_SIZE_MAX)
				goto bad;
			r->cache = (unsigned)n;
		} else if (strcmp(a, "--json") == 0) {
			r->json_path = v;
		} else if (strcmp(a, "--markdown") == 0) {
			r->md_path = v;
		} else if (strcmp(a, "--callgrind-loop") == 0) {
			r->cg_loop = v;
		} else {
			fprintf(stderr, "iopool-mempool-perf: unknown option %s\n", a);
			usage(stderr);
			exit(2);
		}
		continue;
bad:
		fprintf(stderr, "iopool-mempool-perf: bad value for %s: '%s'\n", a, v);
		exit(2);
	}
	if (r->quick && !seconds_set)
		r->seconds = QUICK_SECONDS;
	if (r->quick && !reps_set)
		r->reps = 1;
}

static void stats_of(iop_pool_t *p, struct iop_pool_stats *s)
{
	memset(s, 0, sizeof(*s));
	s->struct_size = sizeof(*s);
	if (iop_pool_stats(p, s) != 0)
		die("iop_pool_stats failed");
}

/* Run allocator a on cell ci with the cores of cores[k]. */
static void run_one(struct mp_run *r, unsigned a, unsigned k, unsigned ci, struct mp_dpdk *dpdk,
		    struct mp_runner *run, iop_pool_t *pools[MP_ALLOCS], int keep)
{
	struct mp_cellres *cr = &r->res[k][ci];
	struct mp_result res;
	struct mp_cell c;

	mp_cell_get(ci, &c);
	if (a == A_DPDK) {
		if (dpdk == NULL || r->alloc_why[A_DPDK][0])
			return;
		if (mp_dpdk_run(dpdk, ci, r->cores[k], r->seconds, &res) != 0) {
			snprintf(r->alloc_why[A_DPDK], sizeof(r->alloc_why[A_DPDK]),
				 "n/a: the DPDK child died mid-run (see its message)");
			r->failures++;
			return;
		}
	} else {
		struct iop_pool_stats s0, s1;

		stats_of(pools[a], &s0);
		mp_runner_run(run, r->cores[k], iop_loop_pick(&c), pools[a], &c, r->seconds, &res);
		stats_of(pools[a], &s1);
		if (keep) {
			struct iop_delta *d = &cr->st[a];
			d->objs += (uint64_t)(res.rate * r->seconds);
			d->depot_get += s1.depot_get - s0.depot_get;
			d->depot_put += s1.depot_put - s0.depot_put;
			d->alloc_slow += s1.alloc_slow - s0.alloc_slow;
			d->free_slow += s1.free_slow - s0.free_slow;
			d->locks += res.locks;
			d->contended += res.contended;
			d->wait_ns += res.wait_ns;
			d->lock_ns += res.lock_ns;
			d->hold_ns += res.hold_ns;
		}
	}
	if (!keep)
		return;
	if (res.why[0]) {
		if (!cr->why[a][0])
			r->failures++;
		snprintf(cr->why[a], sizeof(cr->why[a]), "%s", res.why);
		return;
	}
	unsigned n = cr->n[a]++;
	cr->rate[a][n] = res.rate;
	for (unsigned i = 0; i < r->cores[k]; i++)
		cr->core_rate[a][n][i] = res.core_rate[i];
}

static int cell_on(const struct mp_run *r, unsigned ci)
{
	struct mp_cell c;

	mp_cell_get(ci, &c);
	return ((r->keep_mask >> c.keep_idx) & 1) && (!r->only_set || r->only[ci]);
}

static double cell_median(const struct mp_cellres *cr, unsigned a)
{
	return cr->n[a] && !cr->why[a][0] ? median(cr->rate[a], cr->n[a]) : NAN;
}

/*
 * Allocator a's rate over b's in one cell: the median of the per-repetition
 * ratios. Repetition i ran a and b one right after the other (the order
 * rotating), so a burst of host noise that slows one repetition slows both
 * sides of its ratio; the ratio of the two medians can take a's median from
 * one repetition and b's from another. NAN when either failed or has no run.
 */
static double cell_ratio(const struct mp_cellres *cr, unsigned a, unsigned b)
{
	double q[MAX_REPS];
	unsigned n = cr->n[a] < cr->n[b] ? cr->n[a] : cr->n[b];

	if (n == 0 || cr->why[a][0] || cr->why[b][0])
		return NAN;
	for (unsigned i = 0; i < n; i++)
		q[i] = cr->rate[a][i] / cr->rate[b][i];
	return median(q, n);
}

static void cell_name(const struct mp_cell *c, char *buf, size_t len)
{
	snprintf(buf, len, "%u %u %u %s", c->keep, c->get, c->put, c->is_const ? "const" : "var");
}

/* Geometric means of ratios over a set of cells. */
struct gm {
	double log_sum;
	unsigned n, leads;
};

static void gm_add(struct gm *g, double ratio, double lead_at)
{
	if (!(ratio > 0))
		return;
	g->log_sum += log(ratio);
	g->n++;
	if (ratio >= lead_at)
		g->leads++;
}

static double gm_val(const struct gm *g)
{
	return g->n ? exp(g->log_sum / g->n) : NAN;
}

static void fmt(char *buf, size_t len, double v, const char *f)
{
	if (isnan(v))
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, f, v);
}

static void report_cores(FILE *f, const struct mp_run *r, unsigned k, int md)
{
	const char *sep = md ? " | " : "  ";
	char cn[48], v[MP_ALLOCS][24], q[2][16], dep[16], slow[16], lk[24];

	fprintf(f, md ? "\n#### %u core%s: objects got per second (millions), median of %u; each ratio the median of "
			"the %u repetitions' ratios\n\n"
		      : "\n%u core%s: objects got per second (millions), median of %u; each ratio the median of the %u "
			"repetitions' ratios\n",
		r->cores[k], r->cores[k] > 1 ? "s" : "", r->reps, r->reps);
	if (md)
		fprintf(f, "| n_keep get put sizes | dpdk | iopool | bounded | iopool/dpdk | bounded/iopool | "
			   "depot mags per kobj | slow-path objects per kobj | locks (contended) per kobj |\n"
			   "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
	else
		fprintf(f, "%-20s%s%8s%s%8s%s%8s%s%8s%s%8s%s%8s%s%8s%s%s\n", "keep get put sizes", sep, "dpdk", sep,
			"iopool", sep, "bounded", sep, "iop/dpdk", sep, "bnd/iop", sep, "mag/ko", sep, "slowobj/ko", sep,
			"locks(cont)/ko");
	for (unsigned ci = 0; ci < MP_CELLS; ci++) {
		const struct mp_cellres *cr = &r->res[k][ci];
		const struct iop_delta *d = &cr->st[A_IOPOOL];
		double m[MP_ALLOCS];

		if (!cell_on(r, ci))
			continue;
		struct mp_cell c;

		mp_cell_get(ci, &c);
		cell_name(&c, cn, sizeof(cn));
		for (unsigned a = 0; a < MP_ALLOCS; a++) {
			m[a] = cell_median(cr, a);
			if (cr->why[a][0])
				snprintf(v[a], sizeof(v[a]), "failed");
			else
				fmt(v[a], sizeof(v[a]), m[a] / 1e6, "%.1f");
		}
		fmt(q[0], sizeof(q[0]), cell_ratio(cr, A_IOPOOL, A_DPDK), "%.2fx");
		fmt(q[1], sizeof(q[1]), cell_ratio(cr, A_BOUNDED, A_IOPOOL), "%.2fx");
		double ko = d->objs ? (double)d->objs / 1000 : NAN;
		fmt(dep, sizeof(dep), (double)(d->depot_get + d->depot_put) / ko, "%.2f");
		fmt(slow, sizeof(slow), (double)(d->alloc_slow + d->free_slow) / ko, "%.2f");
		if (isnan(ko))
			snprintf(lk, sizeof(lk), "-");
		else
			snprintf(lk, sizeof(lk), "%.2f (%.3f)", (double)d->locks / ko, (double)d->contended / ko);
		if (md)
			fprintf(f, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", cn, v[0], v[1], v[2], q[0], q[1],
				dep, slow, lk);
		else
			fprintf(f, "%-20s%s%8s%s%8s%s%8s%s%8s%s%8s%s%8s%s%8s%s%s\n", cn, sep, v[0], sep, v[1], sep,
				v[2], sep, q[0], sep, q[1], sep, dep, sep, slow, sep, lk);
	}
	for (unsigned a = 0; a < MP_ALLOCS; a++)
		for (unsigned ci = 0; ci < MP_CELLS; ci++)
			if (r->res[k][ci].why[a][0]) {
				fprintf(f, "%s%s failed in %s: %s\n", md ? "\n" : "", alloc_names[a],
					"at least one cell", r->res[k][ci].why[a]);
				break;
			}
}

/* The summary lines: geometric means and leads, overall and by slice. */
static void report_summary(FILE *f, const struct mp_run *r, int md)
{
	fprintf(f, md ? "\n#### Summary (geometric means of per-cell ratios)\n\n"
		      "| cores | slice | iopool/dpdk | iopool leads | bounded/dpdk | bounded/iopool | bounded >= 0.9x "
		      "iopool |\n|---|---|---:|---:|---:|---:|---:|\n"
		      : "\nSummary (geometric means of per-cell ratios)\n");
	for (unsigned k = 0; k < r->ncores; k++) {
		static const char *const slices[] = { "all cells", "get=put=1 var", "get=put=4 var", "get=put=8 var",
						      "get=put=32 var", "const (12)", "n_keep 32", "n_keep 128",
						      "n_keep 512" };
		for (unsigned s = 0; s < sizeof(slices) / sizeof(slices[0]); s++) {
			struct gm id = { 0 }, bd = { 0 }, bi = { 0 };
			for (unsigned ci = 0; ci < MP_CELLS; ci++) {
				const struct mp_cellres *cr = &r->res[k][ci];
				struct mp_cell c;
				int in;

				mp_cell_get(ci, &c);
				if (s == 0)
					in = 1;
				else if (s <= 4)
					in = !c.is_const && c.get == mp_bulks[s - 1] && c.put == c.get;
				else if (s == 5)
					in = c.is_const;
				else
					in = c.keep == mp_keeps[s - 6];
				if (!in || !cell_on(r, ci))
					continue;
				gm_add(&id, cell_ratio(cr, A_IOPOOL, A_DPDK), 1.0);
				gm_add(&bd, cell_ratio(cr, A_BOUNDED, A_DPDK), 1.0);
				gm_add(&bi, cell_ratio(cr, A_BOUNDED, A_IOPOOL), 0.9);
			}
			if (id.n == 0 && bd.n == 0 && bi.n == 0)
				continue;
			char a[16], b[16], c2[16];
			fmt(a, sizeof(a), gm_val(&id), "%.2fx");
			fmt(b, sizeof(b), gm_val(&bd), "%.2fx");
			fmt(c2, sizeof(c2), gm_val(&bi), "%.2fx");
			if (md)
				fprintf(f, "| %u | %s | %s | %u of %u | %s | %s | %u of %u |\n", r->cores[k], slices[s], a,
					id.leads, id.n, b, c2, bi.leads, bi.n);
			else
				fprintf(f, "  %u core%s %-16s iopool/dpdk %7s (iopool leads %2u of %2u)  bounded/dpdk %7s  "
					   "bounded/iopool %7s (>= 0.9x in %2u of %2u)\n",
					r->cores[k], r->cores[k] > 1 ? "s" : " ", slices[s], a, id.leads, id.n, b, c2,
					bi.leads, bi.n);
		}
	}
	/* Where iopool's time went: its depot, per 1000 objects. */
	for (unsigned k = 0; k < r->ncores; k++) {
		struct iop_delta t = { 0 };
		for (unsigned ci = 0; ci < MP_CELLS; ci++) {
			const struct iop_delta *d = &r->res[k][ci].st[A_IOPOOL];
			t.objs += d->objs, t.depot_get += d->depot_get, t.depot_put += d->depot_put;
			t.alloc_slow += d->alloc_slow, t.free_slow += d->free_slow, t.locks += d->locks;
			t.contended += d->contended, t.wait_ns += d->wait_ns;
			t.lock_ns += d->lock_ns, t.hold_ns += d->hold_ns;
		}
		double ko = t.objs ? (double)t.objs / 1000 : NAN;
		fprintf(f, "%siopool, %u core%s, per 1000 objects: %.2f magazines through the depot, %.1f objects "
			   "on slow paths, %.2f mutex acquisitions, %.3f contended, %.0f ns waited on them\n",
			md ? "\n" : (k ? "" : "\n"), r->cores[k], r->cores[k] > 1 ? "s" : "",
			(double)(t.depot_get + t.depot_put) / ko, (double)(t.alloc_slow + t.free_slow) / ko,
			(double)t.locks / ko, (double)t.contended / ko, (double)t.wait_ns / ko);
		if (lock_timing && t.locks)
			fprintf(f, "  per acquisition: %.0f ns to acquire, %.0f ns held (--lock-timing)\n",
				(double)t.lock_ns / (double)t.locks, (double)t.hold_ns / (double)t.locks);
	}
	/* Per-core scaling: what a core does with two running against alone. */
	unsigned k1 = MP_CORES_MAX, k2 = MP_CORES_MAX;
	for (unsigned k = 0; k < r->ncores; k++) {
		if (r->cores[k] == 1)
			k1 = k;
		if (r->cores[k] == 2)
			k2 = k;
	}
	if (k1 == MP_CORES_MAX || k2 == MP_CORES_MAX)
		return;
	fprintf(f, md ? "\nPer-core rate with 2 cores over the rate with 1 core (geometric mean over the cells):"
		      : "\nPer-core rate, 2 cores / 1 core (geometric mean over the cells):");
	for (unsigned a = 0; a < MP_ALLOCS; a++) {
		struct gm g = { 0 };
		char v[16];
		for (unsigned ci = 0; ci < MP_CELLS; ci++)
			if (cell_on(r, ci))
				gm_add(&g, cell_median(&r->res[k2][ci], a) / 2 / cell_median(&r->res[k1][ci], a), 1.0);
		fmt(v, sizeof(v), gm_val(&g), "%.2fx");
		fprintf(f, " %s %s%s", alloc_names[a], v, a + 1 < MP_ALLOCS ? "," : "\n");
	}
}

static void report(FILE *f, const struct mp_run *r, int md)
{
	fprintf(f, md ? "### iopool-mempool-perf\n\n" : "iopool-mempool-perf\n");
	fprintf(f, "%s%s, %ld CPUs, %s; %s; DPDK %s\n", md ? "Machine: " : "machine: ", r->machine.cpu,
		r->machine.cores, r->machine.kernel, r->machine.compiler,
		mp_dpdk_version[0] ? mp_dpdk_version : "not built in");
	fprintf(f, "%s%zu B objects, %.3f s per cell and allocator, %u repetition%s (%s), pool %u objects (DPDK: "
		   "cache 512; bounded iopool: limit %u); iopool cache_size %u%s\n",
		md ? "\n" : "", r->obj_size, r->seconds, r->reps, r->reps > 1 ? "s" : "",
		r->one_process ? "all in one process" : "each in a fresh process, pools and DPDK child", r->pool_objs,
		r->pool_objs, r->cache, r->cache ? "" : " (its default)");
	for (unsigned a = 0; a < MP_ALLOCS; a++)
		if (r->alloc_why[a][0])
			fprintf(f, "%s%s: %s\n", md ? "\n" : "", alloc_names[a], r->alloc_why[a]);
	for (unsigned k = 0; k < r->ncores; k++)
		report_cores(f, r, k, md);
	report_summary(f, r, md);
}

static void json_rates(FILE *f, const double *v, unsigned n)
{
	fputc('[', f);
	for (unsigned i = 0; i < n; i++)
		fprintf(f, "%s%.0f", i ? ", " : "", v[i]);
	fputc(']', f);
}

static int write_json(const struct mp_run *r)
{
	FILE *f;

	if (make_parent_dirs(r->json_path) != 0 || (f = fopen(r->json_path, "w")) == NULL) {
		fprintf(stderr, "iopool-mempool-perf: %s: %s\n", r->json_path, strerror(errno));
		return -1;
	}
	fprintf(f, "{\n  \"bench\": \"iopool-mempool-perf\",\n  \"machine\": ");
	json_machine(f, &r->machine);
	fprintf(f, ",\n  \"config\": {\"seconds\": %g, \"reps\": %u, \"quick\": %s, \"object_size\": %zu, "
		   "\"pool_objs\": %u, \"dpdk_cache\": 512, \"bounded_limit\": %u, \"iopool_cache_size\": %u, "
		   "\"unit\": \"objects/s\", \"one_process\": %s},\n",
		r->seconds, r->reps, r->quick ? "true" : "false", r->obj_size, r->pool_objs, r->pool_objs, r->cache,
		r->one_process ? "true" : "false");
	/* The process each repetition ran in, and this one: with a fresh
	 * process per repetition they all differ. */
	fprintf(f, "  \"pid\": %ld, \"rep_pids\": [", (long)getpid());
	for (unsigned rep = 0; rep < r->reps; rep++)
		fprintf(f, "%s%ld", rep ? ", " : "", r->rep_pid[rep]);
	fprintf(f, "],\n  \"allocators\": {");
	for (unsigned a = 0; a < MP_ALLOCS; a++) {
		fprintf(f, "%s\"%s\": ", a ? ", " : "", alloc_names[a]);
		json_str(f, r->alloc_why[a][0] ? r->alloc_why[a] : "ok");
	}
	fprintf(f, "},\n  \"cells\": [");
	for (unsigned k = 0, first = 1; k < r->ncores; k++) {
		for (unsigned ci = 0; ci < MP_CELLS; ci++) {
			const struct mp_cellres *cr = &r->res[k][ci];
			struct mp_cell c;

			if (!cell_on(r, ci))
				continue;
			mp_cell_get(ci, &c);
			fprintf(f, "%s\n    {\"cores\": %u, \"n_keep\": %u, \"n_get_bulk\": %u, \"n_put_bulk\": %u, "
				   "\"const\": %s",
				first ? "" : ",", r->cores[k], c.keep, c.get, c.put, c.is_const ? "true" : "false");
			for (unsigned a = 0; a < MP_ALLOCS; a++) {
				double m = cell_median(cr, a);
				fprintf(f, ", \"%s\": {", alloc_names[a]);
				if (cr->why[a][0]) {
					fprintf(f, "\"failed\": ");
					json_str(f, cr->why[a]);
				} else if (isnan(m)) {
					fprintf(f, "\"median\": null");
				} else {
					fprintf(f, "\"median\": %.0f, \"reps\": ", m);
					json_rates(f, cr->rate[a], cr->n[a]);
				}
				if (a != A_DPDK) {
					const struct iop_delta *e = &cr->st[a];
					fprintf(f, ", \"objs\": %llu, \"depot_get\": %llu, \"depot_put\": %llu, "
						   "\"alloc_slow\": %llu, \"free_slow\": %llu, \"mutex_locks\": %llu, "
						   "\"mutex_contended\": %llu, \"mutex_wait_ns\": %llu, \"mutex_lock_ns\": %llu, "
						   "\"mutex_hold_ns\": %llu",
						(unsigned long long)e->objs, (unsigned long long)e->depot_get,
						(unsigned long long)e->depot_put, (unsigned long long)e->alloc_slow,
						(unsigned long long)e->free_slow, (unsigned long long)e->locks,
						(unsigned long long)e->contended, (unsigned long long)e->wait_ns,
						(unsigned long long)e->lock_ns, (unsigned long long)e->hold_ns);
				}
				fputc('}', f);
			}
			/* The ratios the tables print (cell_ratio). */
			static const unsigned num[] = { A_IOPOOL, A_BOUNDED, A_BOUNDED }, den[] = { A_DPDK, A_DPDK, A_IOPOOL };
			fprintf(f, ", \"ratios\": {");
			for (unsigned q = 0; q < sizeof(num) / sizeof(num[0]); q++) {
				double v = cell_ratio(cr, num[q], den[q]);
				fprintf(f, "%s\"%s/%s\": ", q ? ", " : "", alloc_names[num[q]], alloc_names[den[q]]);
				if (isnan(v))
					fprintf(f, "null");
				else
					fprintf(f, "%.4f", v);
			}
			fprintf(f, "}}");
			first = 0;
		}
	}
	fprintf(f, "\n  ]\n}\n");
	return fclose(f) == 0 ? 0 : -1;
}

/*
 * DPDK's pool (and the bounded pool's limit): each of MP_CORES_MAX cores
 * keeps up to 512 and caches up to its flush threshold (1.5 x 512) plus a
 * bulk; the ring's exact fit above that. The same size whatever --cores
 * says.
 */
static unsigned pool_objs(void)
{
	unsigned need = MP_CORES_MAX * (MP_KEEP_MAX + 768 + MP_BULK_MAX), n = 1;
	while (n < need)
		n = n * 2 + 1;
	return n;
}

/*
 * --callgrind-loop (bench/mp_callgrind.sh): CALLS calls of one cell's loop,
 * each one round of MP_ROUND objects (the deadline is 0, so the loop's
 * clock is read once a call), on this thread, and nothing else timed.
 * Under callgrind with --toggle-collect on the loop (iop_loop_* or
 * dpdk_loop_*), the difference between two CALLS is one round's
 * instructions: the first call's misses of an empty cache drop out. iopool
 * gets the rseq stand-in (bench_rseq_stand_in), so that the per-CPU
 * sequences are what is counted; DPDK runs in this process, as lcore 0.
 */
static int callgrind_loop(const struct mp_run *r)
{
	char alloc[16];
	unsigned calls, cell;
	const char *colon = strchr(r->cg_loop, ':'), *rest = NULL;
	int used = 0;

	if (!colon || (size_t)(colon - r->cg_loop) >= sizeof(alloc)) {
		fprintf(stderr, "iopool-mempool-perf: --callgrind-loop ALLOC:KEEP:GET:PUT:KIND:CALLS, not '%s'\n",
			r->cg_loop);
		return 2;
	}
	snprintf(alloc, sizeof(alloc), "%.*s", (int)(colon - r->cg_loop), r->cg_loop);
	cell = find_cell(colon + 1, &rest);
	if (cell == MP_CELLS)
		return 2;
	if (sscanf(rest, ":%u%n", &calls, &used) != 1 || rest[used] != 0 || calls < 1) {
		fprintf(stderr, "iopool-mempool-perf: --callgrind-loop ALLOC:KEEP:GET:PUT:KIND:CALLS, not '%s'\n",
			r->cg_loop);
		return 2;
	}
	char why[256] = "";
	if (strcmp(alloc, "dpdk") == 0) {
		if (mp_dpdk_count(cell, calls, pool_objs(), r->obj_size, why, sizeof(why)) != 0) {
			fprintf(stderr, "iopool-mempool-perf: dpdk: %s\n", why);
			return 1;
		}
		return 0;
	}
	int bounded = strcmp(alloc, "bounded") == 0;
	if (strcmp(alloc, "iopool") != 0 && !bounded) {
		fprintf(stderr, "iopool-mempool-perf: --callgrind-loop: ALLOC is iopool, bounded or dpdk, not '%s'\n",
			alloc);
		return 2;
	}
	static void *table[MP_KEEP_MAX] __attribute__((aligned(64)));
	struct iop_pool_params p = IOP_POOL_PARAMS_INIT;
	struct mp_cell c;
	bench_rseq_stand_in();
	p.obj_size = r->obj_size;
	p.cache_size = r->cache;
	p.name = "mempool_perf";
	if (bounded)
		p.limit = pool_objs();
	iop_pool_t *pool = iop_pool_create(&p);
	if (pool == NULL)
		die("iop_pool_create: %s", strerror(errno));
	mp_cell_get(cell, &c);
	mp_loop_fn fn = iop_loop_pick(&c);
	for (unsigned i = 0; i < calls; i++) {
		fn(pool, &c, table, 0, why, sizeof(why));
		if (why[0])
			die("%s", why);
	}
	iop_pool_destroy(pool);
	return 0;
}

/*
 * Repetitions [from, to) of the matrix, appended to r->res: DPDK's child,
 * both iopool pools and the workers started here and stopped at the end.
 * Called in a fresh process per repetition (the default), or once for all
 * of them (--one-process).
 */
static void run_reps(struct mp_run *r, unsigned from, unsigned to, unsigned cores_max)
{
	struct mp_dpdk *dpdk = NULL;
	struct mp_runner *run;
	iop_pool_t *pools[MP_ALLOCS] = { NULL };
	char why[256];

	for (unsigned rep = from; rep < to; rep++)
		r->rep_pid[rep] = (long)getpid();
	/* DPDK first: its child is forked before this process starts a thread. */
	if (!r->alloc_why[A_DPDK][0]) {
		dpdk = mp_dpdk_open(cores_max, r->pool_objs, r->obj_size, why, sizeof(why));
		if (dpdk == NULL)
			snprintf(r->alloc_why[A_DPDK], sizeof(r->alloc_why[A_DPDK]), "%s", why);
	}

	struct iop_pool_params p = IOP_POOL_PARAMS_INIT;
	p.obj_size = r->obj_size;
	p.cache_size = r->cache;
	p.name = "mempool_perf";
	pools[A_IOPOOL] = iop_pool_create(&p);
	p.name = "mempool_perf_bounded";
	p.limit = r->pool_objs;
	pools[A_BOUNDED] = iop_pool_create(&p);
	if (pools[A_IOPOOL] == NULL || pools[A_BOUNDED] == NULL)
		die("iop_pool_create: %s", strerror(errno));
	run = mp_runner_start(cores_max, NULL, why, sizeof(why));
	if (run == NULL)
		die("%s", why);

	/* Warm-up, not kept: every allocator maps and caches what the
	 * largest cell needs. */
	unsigned last = MP_CORES_MAX - 1;
	for (unsigned k = 0; k < r->ncores; k++)
		if (r->cores[k] == cores_max)
			last = k;
	for (unsigned a = 0; a < MP_ALLOCS; a++)
		run_one(r, a, last, MP_VAR_CELLS - 1, dpdk, run, pools, 0);

	for (unsigned rep = from; rep < to; rep++) {
		for (unsigned k = 0; k < r->ncores; k++) {
			fprintf(stderr, "\rrep %u/%u, %u core%s ...   ", rep + 1, r->reps, r->cores[k],
				r->cores[k] > 1 ? "s" : "");
			for (unsigned ci = 0; ci < MP_CELLS; ci++)
				for (unsigned j = 0; j < MP_ALLOCS && cell_on(r, ci); j++)
					run_one(r, (ci + rep + j) % MP_ALLOCS, k, ci, dpdk, run, pools, 1);
		}
	}
	mp_runner_stop(run);
	if (dpdk != NULL)
		mp_dpdk_close(dpdk);
	iop_pool_destroy(pools[A_IOPOOL]);
	iop_pool_destroy(pools[A_BOUNDED]);
}

/*
 * Repetition `rep` in a child process of its own, which starts from a copy
 * of *r, adds its repetition and sends the whole of *r back. A process
 * keeps, for its whole life, whatever makes one allocator's runs slower
 * in it (docs/BENCHMARKS.md: one pool, or DPDK's child, slow in every cell
 * of a group through one run, and not in the next run); with a process per
 * repetition, the median of the paired ratios is over that too.
 */
static void run_rep_forked(struct mp_run *r, unsigned rep, unsigned cores_max)
{
	/* Shared with the child, which copies *r into it when done: no pipe
	 * that DPDK's child (forked by ours) would inherit and hold open. */
	struct mp_run *got = mmap(NULL, sizeof(*got), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pid;
	int status;

	if (got == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		run_reps(r, rep, rep + 1, cores_max);
		memcpy(got, r, sizeof(*r));
		_exit(0);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die("waitpid: %s", strerror(errno));
	if (WIFSIGNALED(status))
		die("repetition %u: its process died of signal %d", rep + 1, WTERMSIG(status));
	if (WEXITSTATUS(status) != 0)
		die("repetition %u: its process exited with status %d", rep + 1, WEXITSTATUS(status));
	memcpy(r, got, sizeof(*r));
	munmap(got, sizeof(*got));
}

int main(int argc, char **argv)
{
	struct mp_run *r = calloc(1, sizeof(*r));
	unsigned cores_max = 0;

	if (r == NULL)
		die("out of memory");
	parse_args(argc, argv, r);
	if (r->cg_loop)
		return callgrind_loop(r);
	/* A core count above the CPUs this process may use cannot pin its
	 * workers apart: left out, and said so (CI machines may have one). */
	cpu_set_t cpus;
	if (sched_getaffinity(0, sizeof(cpus), &cpus) != 0)
		die("sched_getaffinity: %s", strerror(errno));
	unsigned ncpu = (unsigned)CPU_COUNT(&cpus), kept = 0;
	for (unsigned k = 0; k < r->ncores; k++) {
		if (r->cores[k] > ncpu) {
			fprintf(stderr, "iopool-mempool-perf: %u cores left out: this process may use %u CPU%s\n",
				r->cores[k], ncpu, ncpu == 1 ? "" : "s");
			continue;
		}
		r->cores[kept++] = r->cores[k];
		if (r->cores[k] > cores_max)
			cores_max = r->cores[k];
	}
	r->ncores = kept;
	machine_probe(&r->machine);
	read_loadavg(r->machine.load_start, sizeof(r->machine.load_start));
	r->pool_objs = pool_objs();

	if (r->one_process) {
		run_reps(r, 0, r->reps, cores_max);
	} else {
		for (unsigned rep = 0; rep < r->reps; rep++)
			run_rep_forked(r, rep, cores_max);
	}
	fprintf(stderr, "\r%40s\r", "");
	read_loadavg(r->machine.load_end, sizeof(r->machine.load_end));

	report(stdout, r, 0);
	if (write_json(r) != 0)
		r->failures++;
	else
		printf("\nJSON: %s\n", r->json_path);
	if (r->md_path) {
		FILE *f;
		if (make_parent_dirs(r->md_path) != 0 || (f = fopen(r->md_path, "w")) == NULL) {
			fprintf(stderr, "iopool-mempool-perf: %s: %s\n", r->md_path, strerror(errno));
			r->failures++;
		} else {
			report(f, r, 1);
			fclose(f);
			printf("markdown: %s\n", r->md_path);
		}
	}
	int rc = r->failures ? 1 : 0;
	free(r);
	return rc;
}
