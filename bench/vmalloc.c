/* SPDX-License-Identifier: MIT */
/*
 * iopool-vmalloc-bench: the shape of the kernel's test_vmalloc
 * (lib/test_vmalloc.c, tools/testing/selftests/mm/test_vmalloc.sh), whose
 * run_test_mask=7 nr_threads=64 showed 64 threads spending 93% of their
 * time on one global lock, in user space: iopool's heap against glibc,
 * jemalloc, mimalloc and tcmalloc in one run.
 *
 * Matrix
 *   tests (run_test_mask bits, as the kernel numbers them)
 *     1    fix_size_alloc_test           3 pages, alloc+free
 *     2    full_fit_alloc_test           fls(cpus) * 1024 page pairs, every
 *                                        other freed, then 1-page alloc+free
 *                                        (the kernel: fls(cpus) * 8192)
 *     4    long_busy_list_alloc_test     15000 pages held while 100 pages +
 *                                        1 page are allocated and freed
 *     8    random_size_alloc_test        1..100 pages
 *     16   fix_align_alloc_test          5 pages aligned to 32 KiB
 *     32   random_size_align_alloc_test  1..10 pages aligned to 2^(0..22)
 *     64   align_shift_alloc_test        not run: meant to fail (2^63)
 *     128  pcpu_alloc_test               35000 objects of 1..1024 B aligned
 *                                        to 2..2048, held, then freed
 *   nr_threads   a list (default 1, the CPU count, and 64: far more
 *                threads than cores, as in the thread above)
 *   allocators   iopool (iop_heap_alloc/_aligned/free), glibc, and
 *                jemalloc, mimalloc, tcmalloc through LD_PRELOAD
 *                (posix_memalign for the aligned tests)
 *
 *   one phase    T threads created, released together by one flag, each
 *                running the test test_repeat_count times; the phase's
 *                wall time runs from the release to the last thread's end
 *   result       ns per alloc+free pair = wall time / all threads' pairs
 *                (inverse throughput; at 1 thread, the latency of a pair),
 *                and Mpairs/s; the median over R repetitions, each in a
 *                fresh child process per allocator, the order of the
 *                allocators rotating between repetitions
 *   profiling    the heap's iop_heap_alloc(64)+iop_heap_free pair, plain
 *                and built with IOP_PROFILE, in one child: the cost per
 *                pair of recording the call site
 *
 * Running:
 *   iopool-vmalloc-bench                                  everything
 *   iopool-vmalloc-bench run_test_mask=7 nr_threads=64    the thread's run
 *   iopool-vmalloc-bench --quick --reps 1                 a smoke run
 * Results also go to --json PATH (default build/vmalloc-results.json) and,
 * with --markdown PATH, as a markdown table. Exit status: 0; 1 when a child
 * failed or a cell has no result; 2 on a usage error.
 */
#include "bench.h"
#include "vmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char *const test_names[VM_NTESTS] = {
	[VM_FIX_SIZE] = "fix_size_alloc_test",
	[VM_FULL_FIT] = "full_fit_alloc_test",
	[VM_LONG_BUSY_LIST] = "long_busy_list_alloc_test",
	[VM_RANDOM_SIZE] = "random_size_alloc_test",
	[VM_FIX_ALIGN] = "fix_align_alloc_test",
	[VM_RANDOM_SIZE_ALIGN] = "random_size_align_alloc_test",
	[VM_ALIGN_SHIFT] = "align_shift_alloc_test",
	[VM_PCPU] = "pcpu_alloc_test",
};

/* Every test but align_shift, which the kernel expects to fail. */
#define MASK_ALL (((1u << VM_NTESTS) - 1) & ~(1u << VM_ALIGN_SHIFT))
#define MAX_THREAD_COUNTS 8
#define MAX_THREADS 1024u
#define DEFAULT_REPS 3u
#define DEFAULT_LOOPS 100000u  /* the kernel's test_loop_count is 10^6 */
#define QUICK_LOOPS 2000u
#define DEFAULT_JSON "build/vmalloc-results.json"
#define PROFILE_SIZE 64u       /* smallest class: the cost shows most */
#define CHILD_ALARM_S 900u

/* The allocators of this benchmark (bench_allocs[] names them). */
static const enum alloc_id allocs[] = {
	ALLOC_IOPOOL, ALLOC_GLIBC, ALLOC_JEMALLOC, ALLOC_MIMALLOC, ALLOC_TCMALLOC
};
#define NALLOCS (sizeof(allocs) / sizeof(allocs[0]))

struct config {
	unsigned mask;
	unsigned threads[MAX_THREAD_COUNTS];
	unsigned nthreads;
	unsigned loops;
	unsigned repeat;
	unsigned reps;
	unsigned alloc_mask;       /* bit i: allocs[i] */
	int quick;
	const char *json_path, *md_path;
};

struct results {
	struct cell cells[VM_NTESTS][MAX_THREAD_COUNTS][NALLOCS];
	struct cell profile[2];    /* plain, profiled */
	char why[NALLOCS][256];    /* not installed: why */
	unsigned fails[NALLOCS];
	struct machine machine;
};

/* ------------------------------------------------------------------------ */
/* Child: the phases                                                         */
/* ------------------------------------------------------------------------ */

struct worker {
	pthread_t tid;
	vm_test_fn fn;
	struct vm_params params;
	unsigned repeat;
	uint64_t pairs, end_ns;
	int failed;
};

static _Atomic unsigned ready;
static _Atomic int go;

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	atomic_fetch_add(&ready, 1);
	/* More threads than cores is intended: wait without spinning hard. */
	while (!atomic_load_explicit(&go, memory_order_acquire))
		sched_yield();
	for (unsigned r = 0; r < w->repeat && !w->failed; r++)
		w->failed = w->fn(&w->params, &w->pairs) != 0;
	w->end_ns = now_ns();
	return NULL;
}

/* One phase: returns ns per pair (aggregate), and Mpairs/s in *mops. */
static double run_phase(vm_test_fn fn, unsigned nthreads, const struct config *c, unsigned rep, double *mops)
{
	static struct worker w[MAX_THREADS];
	atomic_store(&ready, 0);
	atomic_store(&go, 0);
	for (unsigned i = 0; i < nthreads; i++) {
		w[i] = (struct worker){ .fn = fn, .repeat = c->repeat };
		w[i].params.loops = c->loops;
		w[i].params.ncpus = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
		w[i].params.seed = 0x9e3779b97f4a7c15ull * (i + 1) + rep;
		if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0)
			die("pthread_create: %s", strerror(errno));
	}
	while (atomic_load(&ready) < nthreads)
		sched_yield();
	uint64_t t0 = now_ns(), end = t0, pairs = 0;
	atomic_store_explicit(&go, 1, memory_order_release);
	int failed = 0;
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(w[i].tid, NULL);
		end = w[i].end_ns > end ? w[i].end_ns : end;
		pairs += w[i].pairs;
		failed |= w[i].failed;
	}
	if (failed || pairs == 0)
		return -1;
	*mops = (double)pairs * 1e3 / (double)(end - t0);
	return (double)(end - t0) / (double)pairs;
}

static void child_profile_cost(const struct config *c)
{
	struct child_opts o = { .quick = c->quick };
	size_t size = PROFILE_SIZE;
	o.target_ns = c->quick ? 3000000u : 25000000u;
	o.calib_ns = c->quick ? 500000u : 3000000u;
	/* Interleaved, best of each: drift hits both alike. */
	double plain = -1, prof = -1;
	for (int k = 0; k < 3; k++) {
		double a = measure(&o, vm_heap_pairs, &size, 1);
		double b = measure(&o, vm_heap_pairs_profiled, &size, 1);
		if (a < 0 || b < 0)
			die("profiling cost: an allocation failed");
		plain = plain < 0 || a < plain ? a : plain;
		prof = prof < 0 || b < prof ? b : prof;
	}
	printf("PROFILE plain %.4f\nPROFILE profiled %.4f\n", plain, prof);
}

static int child_main(enum alloc_id a, const struct config *c, unsigned rep)
{
	const vm_test_fn *tests = a == ALLOC_IOPOOL ? vm_heap_tests : vm_malloc_tests;
	bench_child_name = bench_allocs[a].name;
	alarm(CHILD_ALARM_S);
	if (a != ALLOC_IOPOOL)
		verify_preload(&bench_allocs[a]);
	for (unsigned t = 0; t < VM_NTESTS; t++) {
		if (!(c->mask & (1u << t)) || !tests[t])
			continue;
		for (unsigned k = 0; k < c->nthreads; k++) {
			double mops = 0, ns = run_phase(tests[t], c->threads[k], c, rep, &mops);
			if (ns < 0)
				printf("NA %s %u an allocation failed\n", test_names[t], c->threads[k]);
			else
				printf("ROW %s %u %.4f %.4f\n", test_names[t], c->threads[k], ns, mops);
			fflush(stdout);
		}
	}
	if (a == ALLOC_IOPOOL)
		child_profile_cost(c);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Driver                                                                    */
/* ------------------------------------------------------------------------ */

static int thread_index(const struct config *c, unsigned threads)
{
	for (unsigned k = 0; k < c->nthreads; k++)
		if (c->threads[k] == threads)
			return (int)k;
	return -1;
}

static void cell_add(struct cell *cell, double ns, double mops)
{
	if (cell->n < MAX_REPS) {
		cell->ns[cell->n] = ns;
		cell->mops[cell->n] = mops;
		cell->n++;
	}
}

/* One line from a child; -1 when it is none of ours. */
static int take_line(struct results *r, const struct config *c, unsigned ai, char *line)
{
	char kind[16], name[64];
	unsigned threads;
	double ns, mops;
	int used = 0;
	if (sscanf(line, "PROFILE %63s %lf", name, &ns) == 2) {
		cell_add(&r->profile[strcmp(name, "profiled") == 0], ns, -1);
		return 0;
	}
	if (sscanf(line, "%15s %63s %u %n", kind, name, &threads, &used) < 3)
		return -1;
	unsigned t = 0;
	while (t < VM_NTESTS && strcmp(name, test_names[t]) != 0)
		t++;
	int k = thread_index(c, threads);
	if (t == VM_NTESTS || k < 0)
		return -1;
	struct cell *cell = &r->cells[t][k][ai];
	if (strcmp(kind, "NA") == 0) {
		line[strcspn(line, "\n")] = '\0';
		snprintf(cell->why, sizeof(cell->why), "%s", line + used);
		return 0;
	}
	if (strcmp(kind, "ROW") != 0 || sscanf(line + used, "%lf %lf", &ns, &mops) != 2)
		return -1;
	cell_add(cell, ns, mops);
	return 0;
}

static void run_child(struct results *r, const struct config *c, unsigned ai, unsigned rep, char **argv_base,
		      int argc_base)
{
	const struct alloc_desc *d = &bench_allocs[allocs[ai]];
	char repbuf[16], *argv[32], *line = NULL;
	static char pre[4096 + 16];
	size_t cap = 0, n = 0;
	int fds[2], status, bad = 0;

	memcpy(argv, argv_base, (size_t)argc_base * sizeof(*argv));
	snprintf(repbuf, sizeof(repbuf), "%u", rep);
	argv[argc_base] = "--child";
	argv[argc_base + 1] = (char *)d->name;
	argv[argc_base + 2] = "--rep";
	argv[argc_base + 3] = repbuf;
	argv[argc_base + 4] = NULL;

	/* Our environment without LD_PRELOAD, plus the peer's. */
	while (environ[n])
		n++;
	char **env = calloc(n + 2, sizeof(*env));
	if (!env)
		die("out of memory");
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0)
			env[k++] = environ[i];
	if (d->preload) {
		snprintf(pre, sizeof(pre), "LD_PRELOAD=%s", d->preload);
		env[k++] = pre;
	}

	if (pipe2(fds, O_CLOEXEC) != 0)
		die("pipe: %s", strerror(errno));
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		execve("/proc/self/exe", argv, env);
		_exit(127);
	}
	free(env);
	close(fds[1]);
	FILE *in = fdopen(fds[0], "r");
	if (!in)
		die("fdopen: %s", strerror(errno));
	while (getline(&line, &cap, in) > 0)
		if (take_line(r, c, ai, line) != 0) {
			fprintf(stderr, "iopool-vmalloc-bench: %s: unexpected line: %s", d->name, line);
			bad = 1;
		}
	free(line);
	fclose(in);
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || bad) {
		fprintf(stderr, "iopool-vmalloc-bench: FAILED: child %s (repetition %u) %s %d\n", d->name, rep,
			WIFSIGNALED(status) ? "killed by signal" : "exited with status",
			WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		r->fails[ai]++;
	}
}

/* ------------------------------------------------------------------------ */
/* Output                                                                    */
/* ------------------------------------------------------------------------ */

static int runs(const struct config *c, const struct results *r, unsigned ai)
{
	return (c->alloc_mask & (1u << ai)) && !r->why[ai][0];
}

/* The table: one row per (test, threads), one column per allocator, the
 * best peer and the heap's lead over it. Returns the cells with no result. */
static unsigned print_table(FILE *f, const struct config *c, const struct results *r, int md)
{
	unsigned missing = 0;
	char buf[32];
	fprintf(f, md ? "| test | threads |" : "%-30s %7s", "test", "threads");
	for (unsigned ai = 0; ai < NALLOCS; ai++)
		if (c->alloc_mask & (1u << ai))
			fprintf(f, md ? " %s |" : " %10s", bench_allocs[allocs[ai]].name);
	fprintf(f, md ? " best peer | peer / iopool |\n" : " %10s %12s\n", "best peer", "peer/iopool");
	if (md) {
		fprintf(f, "|---|---:|");
		for (unsigned ai = 0; ai < NALLOCS; ai++)
			if (c->alloc_mask & (1u << ai))
				fprintf(f, "---:|");
		fprintf(f, "---|---:|\n");
	}
	for (unsigned t = 0; t < VM_NTESTS; t++) {
		if (!(c->mask & (1u << t)) || t == VM_ALIGN_SHIFT)
			continue;
		for (unsigned k = 0; k < c->nthreads; k++) {
			double heap = -1, best = -1;
			unsigned best_ai = 0;
			fprintf(f, md ? "| %s | %u |" : "%-30s %7u", test_names[t], c->threads[k]);
			for (unsigned ai = 0; ai < NALLOCS; ai++) {
				if (!(c->alloc_mask & (1u << ai)))
					continue;
				const struct cell *cell = &r->cells[t][k][ai];
				if (!runs(c, r, ai)) {
					snprintf(buf, sizeof(buf), "n/inst");
				} else if (cell->n == 0) {
					snprintf(buf, sizeof(buf), "%s", cell->why[0] ? "n/a" : "FAILED");
					missing++;
				} else {
					double v = median(cell->ns, cell->n);
					snprintf(buf, sizeof(buf), "%.1f", v);
					if (allocs[ai] == ALLOC_IOPOOL)
						heap = v;
					else if (best < 0 || v < best)
						best = v, best_ai = ai;
				}
				fprintf(f, md ? " %s |" : " %10s", buf);
			}
			if (best > 0 && heap > 0)
				fprintf(f, md ? " %s | %.2f%s |\n" : " %10s %11.2f%s\n",
					bench_allocs[allocs[best_ai]].name, best / heap, best < heap ? " *" : "");
			else
				fprintf(f, md ? " - | - |\n" : " %10s %12s\n", "-", "-");
		}
	}
	fprintf(f, "%sns per alloc+free pair: wall time / all threads' pairs, median of %u; "
		"peer/iopool above 1: the heap leads; * marks a test the heap does not lead\n",
		md ? "\n" : "", c->reps);
	for (unsigned ai = 0; ai < NALLOCS; ai++)
		if ((c->alloc_mask & (1u << ai)) && r->why[ai][0])
			fprintf(f, "%s%s: %s\n", md ? "\n" : "", bench_allocs[allocs[ai]].name, r->why[ai]);
	if (r->profile[0].n && r->profile[1].n) {
		double a = median(r->profile[0].ns, r->profile[0].n), b = median(r->profile[1].ns, r->profile[1].n);
		fprintf(f, "%sprofiling cost (iop_heap_alloc(%u)+iop_heap_free, one thread): %.2f ns plain, "
			"%.2f ns with IOP_PROFILE: %+.2f ns per pair\n", md ? "\n" : "\n", PROFILE_SIZE, a, b, b - a);
	} else if (c->alloc_mask & 1u) {
		missing++;
	}
	return missing;
}

static void json_cell(FILE *f, const struct cell *cell)
{
	fprintf(f, "{\"ns_per_pair\": %.4f, \"mpairs_per_s\": %.4f, \"reps\": [", median(cell->ns, cell->n),
		median(cell->mops, cell->n));
	for (unsigned i = 0; i < cell->n; i++)
		fprintf(f, "%s%.4f", i ? ", " : "", cell->ns[i]);
	fputs("]}", f);
}

static int write_json(const struct config *c, const struct results *r)
{
	FILE *f;
	if (make_parent_dirs(c->json_path) != 0 || !(f = fopen(c->json_path, "w"))) {
		fprintf(stderr, "iopool-vmalloc-bench: %s: %s\n", c->json_path, strerror(errno));
		return -1;
	}
	fprintf(f, "{\n  \"tool\": \"iopool-vmalloc-bench\",\n  \"machine\": ");
	json_machine(f, &r->machine);
	fprintf(f, ",\n  \"config\": {\"run_test_mask\": %u, \"test_loop_count\": %u, \"test_repeat_count\": %u, "
		"\"reps\": %u, \"nr_threads\": [", c->mask, c->loops, c->repeat, c->reps);
	for (unsigned k = 0; k < c->nthreads; k++)
		fprintf(f, "%s%u", k ? ", " : "", c->threads[k]);
	fprintf(f, "]},\n  \"allocators\": {");
	for (unsigned ai = 0, n = 0; ai < NALLOCS; ai++) {
		if (!(c->alloc_mask & (1u << ai)))
			continue;
		fprintf(f, "%s\"%s\": ", n++ ? ", " : "", bench_allocs[allocs[ai]].name);
		json_str(f, r->why[ai][0] ? r->why[ai] : r->fails[ai] ? "failed" : "ok");
	}
	fprintf(f, "},\n  \"results\": [");
	int first = 1;
	for (unsigned t = 0; t < VM_NTESTS; t++)
		for (unsigned k = 0; k < c->nthreads && (c->mask & (1u << t)); k++)
			for (unsigned ai = 0; ai < NALLOCS; ai++) {
				const struct cell *cell = &r->cells[t][k][ai];
				if (!runs(c, r, ai) || cell->n == 0)
					continue;
				fprintf(f, "%s\n    {\"test\": \"%s\", \"mask_bit\": %u, \"threads\": %u, "
					"\"allocator\": \"%s\", \"result\": ", first ? "" : ",", test_names[t],
					1u << t, c->threads[k], bench_allocs[allocs[ai]].name);
				json_cell(f, cell);
				fputc('}', f);
				first = 0;
			}
	fprintf(f, "\n  ]");
	if (r->profile[0].n && r->profile[1].n)
		fprintf(f, ",\n  \"profiling\": {\"size\": %u, \"plain_ns_per_pair\": %.4f, "
			"\"profiled_ns_per_pair\": %.4f}", PROFILE_SIZE, median(r->profile[0].ns, r->profile[0].n),
			median(r->profile[1].ns, r->profile[1].n));
	fprintf(f, "\n}\n");
	return fclose(f) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* Arguments                                                                 */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fputs("usage: iopool-vmalloc-bench [key=value ...] [options]\n"
	      "  run_test_mask=N       tests to run, as test_vmalloc numbers them (default 191:\n"
	      "                        all but 64, align_shift, which is meant to fail)\n"
	      "  nr_threads=LIST       comma-separated thread counts (default 1,<cpus>,64)\n"
	      "  test_loop_count=N     iterations per test run (default 100000; --quick 2000)\n"
	      "  test_repeat_count=N   runs of each test per thread (default 1)\n"
	      "  --reps R              repetitions, median reported (default 3; --quick 1)\n"
	      "  --allocators LIST     iopool,glibc,jemalloc,mimalloc,tcmalloc (default all)\n"
	      "  --quick               short runs for a smoke test\n"
	      "  --json PATH           results as JSON (default " DEFAULT_JSON ")\n"
	      "  --markdown PATH       the table as markdown too\n", f);
}

static int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 0);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static int parse_threads(const char *s, struct config *c)
{
	char buf[256], *save = NULL;
	snprintf(buf, sizeof(buf), "%s", s);
	c->nthreads = 0;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned v;
		if (c->nthreads == MAX_THREAD_COUNTS || parse_uint(tok, 1, MAX_THREADS, &v) != 0)
			return -1;
		if (thread_index(c, v) < 0)
			c->threads[c->nthreads++] = v;
	}
	return c->nthreads ? 0 : -1;
}

static int parse_allocs(const char *s, unsigned *mask)
{
	char buf[256], *save = NULL;
	snprintf(buf, sizeof(buf), "%s", s);
	*mask = 0;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned ai = 0;
		while (ai < NALLOCS && strcmp(tok, bench_allocs[allocs[ai]].name) != 0)
			ai++;
		if (ai == NALLOCS)
			return -1;
		*mask |= 1u << ai;
	}
	return *mask ? 0 : -1;
}

int main(int argc, char **argv)
{
	static struct config c;
	static struct results r;
	const char *child = NULL;
	unsigned rep = 1, loops_given = 0, reps_given = 0;
	/* What each child gets: the test parameters, never the options. */
	char *child_argv[24];
	int child_argc = 0;

	c.mask = MASK_ALL;
	c.repeat = 1;
	c.alloc_mask = (1u << NALLOCS) - 1;
	c.json_path = DEFAULT_JSON;
	child_argv[child_argc++] = argv[0];
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		int bad = 0;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strncmp(a, "run_test_mask=", 14) == 0) {
			bad = parse_uint(a + 14, 1, (1u << VM_NTESTS) - 1, &c.mask);
		} else if (strncmp(a, "nr_threads=", 11) == 0) {
			bad = parse_threads(a + 11, &c);
		} else if (strncmp(a, "test_loop_count=", 16) == 0) {
			bad = parse_uint(a + 16, 1, 100000000, &c.loops);
			loops_given = 1;
		} else if (strncmp(a, "test_repeat_count=", 18) == 0) {
			bad = parse_uint(a + 18, 1, 1000, &c.repeat);
		} else if (strcmp(a, "--quick") == 0) {
			c.quick = 1;
		} else if (!val) {
			bad = 1;
		} else if (strcmp(a, "--reps") == 0) {
			bad = parse_uint(argv[++i], 1, MAX_REPS, &c.reps);
			reps_given = 1;
			continue;
		} else if (strcmp(a, "--allocators") == 0) {
			bad = parse_allocs(argv[++i], &c.alloc_mask);
			continue;
		} else if (strcmp(a, "--json") == 0) {
			c.json_path = argv[++i];
			continue;
		} else if (strcmp(a, "--markdown") == 0) {
			c.md_path = argv[++i];
			continue;
		} else if (strcmp(a, "--child") == 0) {
			child = argv[++i];
			continue;
		} else if (strcmp(a, "--rep") == 0) {
			bad = parse_uint(argv[++i], 1, MAX_REPS, &rep);
			continue;
		} else {
			bad = 1;
		}
		if (bad) {
			fprintf(stderr, "iopool-vmalloc-bench: bad argument '%s'\n", a);
			usage(stderr);
			return 2;
		}
		if (child_argc < 18)
			child_argv[child_argc++] = argv[i];
	}
	if (!c.nthreads) {
		unsigned cpus = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
		c.threads[c.nthreads++] = 1;
		if (cpus > 1 && cpus < 64)
			c.threads[c.nthreads++] = cpus;
		c.threads[c.nthreads++] = 64;
	}
	if (!loops_given)
		c.loops = c.quick ? QUICK_LOOPS : DEFAULT_LOOPS;
	if (!reps_given)
		c.reps = c.quick ? 1 : DEFAULT_REPS;

	if (child) {
		for (unsigned ai = 0; ai < NALLOCS; ai++)
			if (strcmp(child, bench_allocs[allocs[ai]].name) == 0)
				return child_main(allocs[ai], &c, rep);
		die("--child: unknown allocator '%s'", child);
	}

	signal(SIGPIPE, SIG_IGN);
	machine_probe(&r.machine);
	for (unsigned ai = 0; ai < NALLOCS; ai++) {
		const struct alloc_desc *d = &bench_allocs[allocs[ai]];
		if (d->why_not)
			snprintf(r.why[ai], sizeof(r.why[ai]), "%s", d->why_not);
		else if (d->preload && (!d->preload[0] || access(d->preload, R_OK) != 0))
			snprintf(r.why[ai], sizeof(r.why[ai]), "not installed (%s)",
				 d->preload[0] ? d->preload : "no library found when the bench was configured");
	}
	printf("iopool-vmalloc-bench: run_test_mask=%u nr_threads=", c.mask);
	for (unsigned k = 0; k < c.nthreads; k++)
		printf("%s%u", k ? "," : "", c.threads[k]);
	printf(" test_loop_count=%u test_repeat_count=%u, %u repetitions\n", c.loops, c.repeat, c.reps);
	printf("machine: %s, %ld cores, %s, %s; load %s\n", r.machine.cpu, r.machine.cores, r.machine.kernel,
	       r.machine.libc, r.machine.load_start);
	if (c.mask & (1u << VM_ALIGN_SHIFT))
		printf("align_shift_alloc_test (64) is not run: the kernel expects it to fail\n");
	unsigned order[NALLOCS], n = 0;
	for (unsigned ai = 0; ai < NALLOCS; ai++)
		if (runs(&c, &r, ai))
			order[n++] = ai;
	for (unsigned k = 1; k <= c.reps; k++) {
		uint64_t t0 = now_ns();
		fprintf(stderr, "repetition %u/%u:", k, c.reps);
		for (unsigned j = 0; j < n; j++) {
			unsigned ai = order[(j + k - 1) % n];
			fprintf(stderr, " %s", bench_allocs[allocs[ai]].name);
			run_child(&r, &c, ai, k, child_argv, child_argc);
		}
		fprintf(stderr, " (%.1f s)\n", (double)(now_ns() - t0) / 1e9);
	}
	read_loadavg(r.machine.load_end, sizeof(r.machine.load_end));
	printf("load average after the run: %s\n\n", r.machine.load_end);
	int status = print_table(stdout, &c, &r, 0) ? 1 : 0;
	for (unsigned ai = 0; ai < NALLOCS; ai++)
		if (r.fails[ai])
			status = 1;
	if (write_json(&c, &r) != 0)
		status = 1;
	else
		printf("\nJSON: %s\n", c.json_path);
	if (c.md_path) {
		FILE *f = make_parent_dirs(c.md_path) == 0 ? fopen(c.md_path, "w") : NULL;
		if (!f) {
			fprintf(stderr, "iopool-vmalloc-bench: %s: %s\n", c.md_path, strerror(errno));
			status = 1;
		} else {
			print_table(f, &c, &r, 1);
			fclose(f);
			printf("markdown: %s\n", c.md_path);
		}
	}
	return status;
}
