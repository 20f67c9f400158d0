/* SPDX-License-Identifier: MIT */
/*
 * iopool-bench: iopool's paths against its peers, after Jesper Brouer's
 * page-allocator and page_pool microbenchmarks (prototype-kernel's
 * page_bench and bench_page_pool_simple: baselines first, a fast-path pair,
 * N outstanding, a cross-CPU ring), with bulk sizes randomised as DPDK's
 * mempool test does.
 *
 * Matrix
 *   cases        param                         one "op"
 *   fastpath     2 KiB                         alloc+free pair, same thread
 *   size         64 B, 256 B, 1, 2, 4, 16,     alloc+free pair, same thread
 *                64, 256 KiB
 *   outstanding  N = 1, 2, 4, ... 4096         N allocs then N frees; per pair
 *   crossthread  2 KiB                         alloc on thread A, pass through
 *                                              an SPSC ring (1024 slots), free
 *                                              on thread B; per object, ring
 *                                              included ("ring-only" column:
 *                                              the ring with dummy pointers)
 *   bulk         n = 1, 8, 16, 32, 64,         alloc_bulk(n) + free_bulk(n);
 *                rand1-64                      per object; rand1-64 takes n
 *                                              from a precomputed table; the
 *                                              sizes run in a different order
 *                                              in every repetition
 *   threads      T = 1, 2, 4, ... 64           T threads doing pairs, released
 *                                              by one flag; thread CPU ns per
 *                                              pair, and aggregate Mops/s
 *                                              (more threads than cores is
 *                                              intended); pairs per thread:
 *                                              what one thread does in one
 *                                              timed loop, same for every T
 *   recycle      free, buf_put                 iopool only: one pair of a
 *                                              2 KiB object, same thread;
 *                                              free = iop_alloc+iop_free,
 *                                              buf_put = iop_buf_alloc+
 *                                              iop_buf_put in an
 *                                              IOP_F_REFCOUNT pool (the
 *                                              cost of the count); the
 *                                              others have no refcounted
 *                                              buffers (n/a)
 *
 *   allocators   iopool    iop_alloc/iop_free/iop_*_bulk, default params
 *                dpdk      rte_mempool, per-lcore cache 512, get/put inlined
 *                glibc     malloc/free
 *                jemalloc, mimalloc, tcmalloc: malloc/free via LD_PRELOAD
 *                (the malloc peers do "bulk n" as n mallocs then n frees)
 *
 *   timing       CLOCK_MONOTONIC around one loop calibrated to ~25 ms (3 ms
 *                with --quick), after calibration runs that warm it up; a
 *                loop whose thread was preempted for over 10% of it is run
 *                again (3 runs at most, the fastest kept);
 *                each object handed out has one byte written (bulk: the
 *                array escapes instead), so no allocator can be elided
 *   repetitions  R (default 5, --quick 3), interleaved: each repetition runs
 *                every allocator once, each in a fresh child process, in an
 *                order that rotates; a cell is the median over R
 *   baselines    empty loop, atomic increment, mutex lock+unlock, timed in
 *                the driver before anything else
 *
 * Running (see --help):
 *   iopool-bench                         everything, 5 repetitions (~2 min)
 *   iopool-bench --quick                 short loops, 3 repetitions
 *   iopool-bench --cases fastpath,bulk --allocators iopool,dpdk --reps 9
 *   iopool-bench --markdown docs.md      tables as markdown as well
 *   sh bench/callgrind.sh iopool-bench   instructions per fast-path pair
 *                                        (and per iop_buf_alloc+put pair)
 * Results also go to --json PATH (default build/bench-results.json).
 * Exit status: 0, 1 when any child failed or a cell has no result, 2 usage.
 *
 * Process model: this driver re-executes /proc/self/exe as
 * `iopool-bench --child ALLOC` per allocator and repetition (LD_PRELOAD set
 * for the malloc peers, nothing for the others; DPDK's EAL is process-wide),
 * reads the child's result lines from a pipe, and prints the tables, a JSON
 * file and optionally a markdown file. See bench.h for the line format.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define DEFAULT_REPS 5u
#define QUICK_REPS 3u
#define DEFAULT_JSON "build/bench-results.json"
/* A child that runs longer than this has hung (a full run of one allocator
 * takes a few seconds). */
#define CHILD_ALARM_S 600u
#define QUICK_CHILD_ALARM_S 60u

static void usage(FILE *f)
{
	fputs("usage: iopool-bench [options]\n"
	      "  --reps R            repetitions per cell, median reported "
	      "(default 5; --quick: 3)\n"
	      "  --cases LIST        comma-separated: fastpath,size,outstanding,"
	      "crossthread,bulk,threads,recycle (default all)\n"
	      "  --allocators LIST   comma-separated: iopool,dpdk,glibc,"
	      "jemalloc,mimalloc,tcmalloc,ring-only (default all)\n"
	      "  --quick             short loops for a smoke run\n"
	      "  --json PATH         results as JSON (default "
	      DEFAULT_JSON ")\n"
	      "  --markdown PATH     the tables as markdown too\n"
	      "  --callgrind-loop N  only run N iopool fast-path pairs in "
	      "cg_fastpath_loop (for callgrind.sh)\n"
	      "  --callgrind-loop-buf N    the same for iop_buf_alloc+"
	      "iop_buf_put pairs, in cg_buf_loop\n"
	      "  --callgrind-loop-dpdk N   the same for rte_mempool, in "
	      "cg_dpdk_loop\n"
	      "  --callgrind-loop-bounded N  the same for a bounded pool "
	      "(limit 1024), in cg_fastpath_loop\n"
	      "  --callgrind-loop-heap N   iop_heap_alloc(12288)+iop_heap_free "
	      "pairs, in cg_heap_loop\n"
	      "  --callgrind-loop-heap64 N iop_heap_alloc(64)+iop_heap_free "
	      "pairs, in cg_heap64_loop\n"
	      "  --callgrind-loop-heap64-prof N  the same with IOP_PROFILE, "
	      "in cg_heap64_prof_loop\n"
	      "  --callgrind-loop-malloc N malloc(12288)+free pairs (preload a "
	      "peer to count it), in cg_malloc_loop\n"
	      "  --callgrind-loop-bulk N   N objects through iop_alloc_bulk+"
	      "iop_free_bulk of 64, in cg_bulk_loop\n"
	      "  --callgrind-loop-dpdk-bulk N  the same for rte_mempool_get_bulk+"
	      "put_bulk, in cg_dpdk_bulk_loop\n"
	      "  --help\n", f);
}

/* --callgrind-loop* N: run exactly N pairs of one loop (bench/callgrind.sh). */
static int (*callgrind_loop(const char *opt))(unsigned long)
{
	static const struct {
		const char *opt;
		int (*fn)(unsigned long);
	} loops[] = {
		{ "--callgrind-loop", callgrind_iopool },
		{ "--callgrind-loop-dpdk", callgrind_dpdk },
		{ "--callgrind-loop-buf", callgrind_iopool_buf },
		{ "--callgrind-loop-bounded", callgrind_iopool_bounded },
		{ "--callgrind-loop-heap", callgrind_heap },
		{ "--callgrind-loop-heap64", callgrind_heap64 },
		{ "--callgrind-loop-heap64-prof", callgrind_heap64_prof },
		{ "--callgrind-loop-malloc", callgrind_malloc },
		{ "--callgrind-loop-bulk", callgrind_iopool_bulk },
		{ "--callgrind-loop-dpdk-bulk", callgrind_dpdk_bulk },
	};
	for (size_t i = 0; i < sizeof(loops) / sizeof(loops[0]); i++)
		if (strcmp(opt, loops[i].opt) == 0)
			return loops[i].fn;
	return NULL;
}

static int parse_list(const char *list, int cases, unsigned *mask)
{
	char buf[256], *save = NULL, *tok;

	snprintf(buf, sizeof(buf), "%s", list);
	*mask = 0;
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		unsigned n = cases ? CASE_COUNT : ALLOC_COUNT, i;

		for (i = 0; i < n; i++)
			if (strcmp(tok, cases ? bench_cases[i].name
					      : bench_allocs[i].name) == 0)
				break;
		if (i == n) {
			fprintf(stderr, "iopool-bench: unknown %s '%s'\n",
				cases ? "case" : "allocator", tok);
			return -1;
		}
		*mask |= 1u << i;
	}
	return *mask ? 0 : -1;
}

static void mask_to_list(unsigned mask, char *out, size_t len)
{
	size_t at = 0;

	out[0] = '\0';
	for (unsigned i = 0; i < CASE_COUNT; i++)
		if (mask & (1u << i))
			at += (size_t)snprintf(out + at, len - at, "%s%s",
					       at ? "," : "",
					       bench_cases[i].name);
}

static int parse_ulong(const char *s, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return errno || end == s || *end ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Baselines                                                                 */
/* ------------------------------------------------------------------------ */

static uint64_t base_counter;
static pthread_mutex_t base_mutex = PTHREAD_MUTEX_INITIALIZER;

static uint64_t base_empty(void *arg, uint64_t iters)
{
	uint64_t t0 = now_ns();

	(void)arg;
	for (uint64_t i = 0; i < iters; i++)
		__asm__ volatile("" : : "r"(i) : "memory");
	return now_ns() - t0;
}

static uint64_t base_atomic(void *arg, uint64_t iters)
{
	uint64_t t0 = now_ns();

	(void)arg;
	for (uint64_t i = 0; i < iters; i++)
		__atomic_fetch_add(&base_counter, 1, __ATOMIC_SEQ_CST);
	return now_ns() - t0;
}

static uint64_t base_mutex_pair(void *arg, uint64_t iters)
{
	uint64_t t0 = now_ns();

	(void)arg;
	for (uint64_t i = 0; i < iters; i++) {
		pthread_mutex_lock(&base_mutex);
		pthread_mutex_unlock(&base_mutex);
	}
	return now_ns() - t0;
}

static void run_baselines(struct run *r)
{
	static const loop_fn fns[BASE_COUNT] = {
		[BASE_EMPTY] = base_empty,
		[BASE_ATOMIC] = base_atomic,
		[BASE_MUTEX] = base_mutex_pair,
	};
	double v[MAX_REPS];

	r->base_reps = r->reps < 3 ? 3 : r->reps;
	for (unsigned b = 0; b < BASE_COUNT; b++) {
		for (unsigned k = 0; k < r->base_reps; k++)
			v[k] = measure(&r->copts, fns[b], NULL, 1);
		r->base_ns[b] = median(v, r->base_reps);
	}
}

/* ------------------------------------------------------------------------ */
/* Children                                                                  */
/* ------------------------------------------------------------------------ */

static int find_case(const char *name)
{
	for (unsigned i = 0; i < CASE_COUNT; i++)
		if (strcmp(name, bench_cases[i].name) == 0)
			return (int)i;
	return -1;
}

static int find_param(enum bench_case c, const char *param)
{
	for (unsigned i = 0; i < bench_cases[c].nparams; i++)
		if (strcmp(param, bench_cases[c].params[i]) == 0)
			return (int)i;
	return -1;
}

/* Parse one child line into r; -1 when it is not a result line. */
static int take_line(struct run *r, enum alloc_id a, char *line)
{
	char kind[8], cname[32], param[32];
	double ns, mops;
	int used = 0, ci, pi, got;
	struct cell *cell;

	line[strcspn(line, "\n")] = '\0';
	if (sscanf(line, "%7s %31s %31s %n", kind, cname, param, &used) < 3)
		return -1;
	ci = find_case(cname);
	if (ci < 0 || (pi = find_param((enum bench_case)ci, param)) < 0)
		return -1;
	cell = &r->cells[ci][pi][a];
	if (strcmp(kind, "NA") == 0) {
		snprintf(cell->why, sizeof(cell->why), "%s", line + used);
		return 0;
	}
	if (strcmp(kind, "ROW") != 0)
		return -1;
	got = sscanf(line + used, "%lf %lf", &ns, &mops);
	if (got < 1 || cell->n >= MAX_REPS)
		return -1;
	cell->ns[cell->n] = ns;
	cell->mops[cell->n] = got == 2 ? mops : -1;
	cell->n++;
	return 0;
}

/* The environment for a child: ours without LD_PRELOAD, plus the peer's. */
static char **child_env(const char *preload)
{
	static char pre[4096 + 16];
	size_t n = 0, k = 0;
	char **env;

	while (environ[n])
		n++;
	env = calloc(n + 2, sizeof(*env));
	if (env == NULL)
		die("out of memory");
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0)
			env[k++] = environ[i];
	if (preload != NULL) {
		snprintf(pre, sizeof(pre), "LD_PRELOAD=%s", preload);
		env[k++] = pre;
	}
	env[k] = NULL;
	return env;
}

static int run_child(struct run *r, enum alloc_id a, unsigned rep,
		     const char *argv0)
{
	const struct alloc_desc *d = &bench_allocs[a];
	char cases[256], repbuf[16], *line = NULL;
	char *argv[12];
	size_t cap = 0;
	int fds[2], status, argc = 0, bad = 0;
	char **env;
	FILE *in;
	pid_t pid;

	mask_to_list(r->case_mask, cases, sizeof(cases));
	snprintf(repbuf, sizeof(repbuf), "%u", rep);
	argv[argc++] = (char *)argv0;
	argv[argc++] = "--child";
	argv[argc++] = (char *)d->name;
	argv[argc++] = "--cases";
	argv[argc++] = cases;
	argv[argc++] = "--rep";
	argv[argc++] = repbuf;
	if (r->quick)
		argv[argc++] = "--quick";
	argv[argc] = NULL;
	env = child_env(d->preload);

	if (pipe2(fds, O_CLOEXEC) != 0)
		die("pipe: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		execve("/proc/self/exe", argv, env);
		fprintf(stderr, "iopool-bench: exec /proc/self/exe: %s\n",
			strerror(errno));
		_exit(127);
	}
	free(env);
	close(fds[1]);
	in = fdopen(fds[0], "r");
	if (in == NULL)
		die("fdopen: %s", strerror(errno));
	while (getline(&line, &cap, in) > 0)
		if (take_line(r, a, line) != 0) {
			fprintf(stderr, "iopool-bench: %s: unexpected line: "
				"%s\n", d->name, line);
			bad = 1;
		}
	free(line);
	fclose(in);
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid: %s", strerror(errno));
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && !bad)
		return 0;
	if (WIFSIGNALED(status))
		fprintf(stderr, "iopool-bench: FAILED: child %s (repetition %u) "
			"killed by signal %d (%s)\n", d->name, rep,
			WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		fprintf(stderr, "iopool-bench: FAILED: child %s (repetition %u) "
			"exited with status %d\n", d->name, rep,
			WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	r->alloc_fails[a]++;
	return -1;
}

/* Decide, once, which allocators cannot run here and why. */
static void check_allocators(struct run *r)
{
	for (unsigned a = 0; a < ALLOC_COUNT; a++) {
		const struct alloc_desc *d = &bench_allocs[a];

		if (d->why_not != NULL)
			snprintf(r->alloc_why[a], sizeof(r->alloc_why[a]), "%s",
				 d->why_not);
		else if (d->preload != NULL && d->preload[0] == '\0')
			snprintf(r->alloc_why[a], sizeof(r->alloc_why[a]),
				 "not installed (no library found when the "
				 "bench was configured)");
		else if (d->preload != NULL && access(d->preload, R_OK) != 0)
			snprintf(r->alloc_why[a], sizeof(r->alloc_why[a]),
				 "not installed (%s: %s)", d->preload,
				 strerror(errno));
	}
}

static int runs_child(const struct run *r, enum alloc_id a)
{
	if (!(r->alloc_mask & (1u << a)) || r->alloc_why[a][0])
		return 0;
	if (a == ALLOC_RING)
		return (r->case_mask & (1u << CASE_CROSSTHREAD)) != 0;
	return 1;
}

static void run_all(struct run *r, const char *argv0)
{
	enum alloc_id order[ALLOC_COUNT];
	unsigned n = 0;

	for (unsigned a = 0; a < ALLOC_COUNT; a++)
		if (runs_child(r, (enum alloc_id)a))
			order[n++] = (enum alloc_id)a;
	for (unsigned rep = 1; rep <= r->reps; rep++) {
		uint64_t t0 = now_ns();

		fprintf(stderr, "repetition %u/%u:", rep, r->reps);
		/* Rotate who goes first, so no allocator always runs on a
		 * machine the previous child left hot or cold. */
		for (unsigned k = 0; k < n; k++) {
			enum alloc_id a = order[(k + rep - 1) % n];

			fprintf(stderr, " %s", bench_allocs[a].name);
			run_child(r, a, rep, argv0);
		}
		fprintf(stderr, " (%.1f s)\n", (double)(now_ns() - t0) / 1e9);
	}
}

/* ------------------------------------------------------------------------ */

static int child_main(const char *alloc, const struct child_opts *o)
{
	for (unsigned a = 0; a < ALLOC_COUNT; a++) {
		if (strcmp(alloc, bench_allocs[a].name) != 0)
			continue;
		bench_child_name = bench_allocs[a].name;
		alarm(o->quick ? QUICK_CHILD_ALARM_S : CHILD_ALARM_S);
		switch ((enum alloc_id)a) {
		case ALLOC_IOPOOL:
			return child_iopool(o);
		case ALLOC_DPDK:
			return child_dpdk(o);
		case ALLOC_RING:
			return child_ring(o);
		default:
			return child_malloc(o, (enum alloc_id)a);
		}
	}
	die("--child: unknown allocator '%s'", alloc);
}

static int write_markdown(const struct run *r)
{
	FILE *f;

	if (make_parent_dirs(r->md_path) != 0 ||
	    (f = fopen(r->md_path, "w")) == NULL) {
		fprintf(stderr, "iopool-bench: %s: %s\n", r->md_path,
			strerror(errno));
		return -1;
	}
	report_baselines(f, r, 1);
	report_tables(f, r, 1);
	if (fclose(f) != 0) {
		fprintf(stderr, "iopool-bench: %s: %s\n", r->md_path,
			strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct run run;
	struct run *r = &run;
	const char *child = NULL, *val;
	unsigned long n = 0;
	int reps_given = 0, status = 0;
	int (*cg)(unsigned long) = NULL, (*cg_run)(unsigned long) = NULL;

	r->case_mask = (1u << CASE_COUNT) - 1;
	r->alloc_mask = (1u << ALLOC_COUNT) - 1;
	r->json_path = DEFAULT_JSON;
	r->copts.rep = 1;
	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i];
		char name[32];
		const char *eq = strchr(opt, '=');

		if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (strcmp(opt, "--quick") == 0) {
			r->quick = 1;
			continue;
		}
		/* Every other option takes a value: --opt V or --opt=V. */
		if (eq != NULL) {
			snprintf(name, sizeof(name), "%.*s", (int)(eq - opt),
				 opt);
			val = eq + 1;
		} else {
			snprintf(name, sizeof(name), "%s", opt);
			if (i + 1 >= argc) {
				fprintf(stderr, "iopool-bench: %s needs a "
					"value\n", opt);
				return 2;
			}
			val = argv[++i];
		}
		if (strcmp(name, "--reps") == 0) {
			if (parse_ulong(val, &n) || n < 1 || n > MAX_REPS) {
				fprintf(stderr, "iopool-bench: --reps 1..%u\n",
					MAX_REPS);
				return 2;
			}
			r->reps = (unsigned)n;
			reps_given = 1;
		} else if (strcmp(name, "--cases") == 0) {
			if (parse_list(val, 1, &r->case_mask) != 0)
				return 2;
		} else if (strcmp(name, "--allocators") == 0) {
			if (parse_list(val, 0, &r->alloc_mask) != 0)
				return 2;
		} else if (strcmp(name, "--json") == 0) {
			r->json_path = val;
		} else if (strcmp(name, "--markdown") == 0) {
			r->md_path = val;
		} else if (strcmp(name, "--child") == 0) {
			child = val;
		} else if (strcmp(name, "--rep") == 0) {
			if (parse_ulong(val, &n) || n < 1 || n > MAX_REPS)
				return 2;
			r->copts.rep = (unsigned)n;
		} else if ((cg = callgrind_loop(name)) != NULL) {
			if (parse_ulong(val, &n)) {
				fprintf(stderr, "iopool-bench: %s N\n", name);
				return 2;
			}
			cg_run = cg;
		} else {
			fprintf(stderr, "iopool-bench: unknown option %s\n",
				opt);
			usage(stderr);
			return 2;
		}
	}
	if (cg_run)
		return cg_run(n);

	if (!reps_given)
		r->reps = r->quick ? QUICK_REPS : DEFAULT_REPS;
	r->copts.case_mask = r->case_mask;
	r->copts.quick = r->quick;
	/* Loops of ~25 ms are long against timer and scheduler noise and
	 * short against frequency drift; --quick trades that for speed. */
	r->copts.target_ns = r->quick ? 3000000u : 25000000u;
	r->copts.calib_ns = r->quick ? 500000u : 3000000u;
	if (child != NULL)
		return child_main(child, &r->copts);

	signal(SIGPIPE, SIG_IGN);
	check_allocators(r);
	machine_probe(&r->machine);
	run_baselines(r);
	report_matrix(stdout, r);
	report_baselines(stdout, r, 0);
	fflush(stdout);
	run_all(r, argv[0]);
	read_loadavg(r->machine.load_end, sizeof(r->machine.load_end));
	printf("\nload average after the run: %s\n", r->machine.load_end);
	if (report_tables(stdout, r, 0) != 0)
		status = 1;
	for (unsigned a = 0; a < ALLOC_COUNT; a++)
		if (r->alloc_fails[a])
			status = 1;
	if (report_json(r->json_path, r) != 0)
		status = 1;
	else
		printf("\nJSON: %s\n", r->json_path);
	if (r->md_path != NULL) {
		if (write_markdown(r) != 0)
			status = 1;
		else
			printf("markdown: %s\n", r->md_path);
	}
	if (status != 0)
		fprintf(stderr, "iopool-bench: some results are missing "
			"(see FAILED above)\n");
	return status;
}
