/* SPDX-License-Identifier: MIT */
/*
 * iopool-uptime: the FreeBSD KTLS buffer-zone story in one run.
 *
 * A consumer that must not block (a NIC's receive path, KTLS encryption)
 * keeps a working set of 16 KiB buffers in flight, allocating one and
 * freeing the oldest every --gap-us. Load comes and goes: a load phase, a
 * quiet phase long enough for decay to trim the idle memory, then a sudden
 * return of load (the whole working set at once), --cycles times. The OS
 * layer is slow and failing (fault injection: every chunk request sleeps
 * --delay-us, like page faulting and compaction on a fragmented machine,
 * and --fail-pct of them fail). The same run, with three buffer sources:
 *
 *   worker  iopool, reserve (--reserve-low/--reserve-high per domain) kept
 *           by the refill worker, decay every --decay-ms; IOP_NOWAIT only
 *   inline  iopool, same decay, no reserve, so no refill worker: IOP_NOWAIT
 *           first, and when it fails the default mode, which maps chunks
 *           inline, on the consumer's own time (a failure loses the buffer)
 *   malloc  malloc()/free() (glibc trims freed memory by itself; its faults
 *           cannot be injected)
 *
 * Measured per variant (each in its own forked process, so resident memory
 * is its own): allocations, non-blocking failures (IOP_NOWAIT returning
 * -ENOMEM), lost buffers (no buffer at all), the latency of getting a
 * usable buffer (the allocation plus a write to each of its pages, so
 * page faults count) at p50/p99/max, and resident memory (VmRSS) over
 * time, sampled every --sample-ms: at the end of each load phase, at the
 * end of each quiet phase, and how long after the quiet phase began it
 * fell by half of the working set.
 *
 * usage: iopool-uptime [--cycles N] [--load-ms L] [--quiet-ms Q] [--gap-us G]
 *                      [--working W] [--size S] [--decay-ms D]
 *                      [--reserve-low R] [--reserve-high H] [--delay-us U]
 *                      [--fail-pct P] [--sample-ms M] [--variants a,b,c]
 *                      [--cache N (objects per magazine; 0: automatic)]
 *                      [--quick] [--json FILE] [--data FILE]
 *
 * The JSON holds each variant's samples [t_s, resident_mib, nowait_failures]
 * (bench/plots/uptime.jq and uptime.gp draw them, through bench/plot.sh);
 * --data writes the same as one whitespace-separated block per variant,
 * separated by two blank lines, for other tools.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <iopool.h>

#include "bench.h"
#include "iop_fault.h"

enum variant { V_WORKER, V_INLINE, V_MALLOC, V_COUNT };
static const char *const vnames[V_COUNT] = { "worker", "inline", "malloc" };
static const char *const vwhat[V_COUNT] = {
	"iopool, reserve kept by the refill worker, decay; IOP_NOWAIT only",
	"iopool, decay, no reserve: IOP_NOWAIT, else the default mode maps inline",
	"malloc/free (glibc trims by itself; no fault injection)",
};

#define MAX_SAMPLES 8192
#define MAX_CYCLES 32

struct sample {
	double t;        /* seconds since the start */
	double rss_mib;
	uint64_t fails;  /* non-blocking failures so far */
};

struct result {
	bool done;
	uint64_t allocs, nowait_fail, lost;
	uint64_t p50, p99, max; /* ns */
	double rss_load[MAX_CYCLES], rss_quiet[MAX_CYCLES], half_ms[MAX_CYCLES];
	unsigned nsamples;
	struct sample s[MAX_SAMPLES];
	/* iopool's own figures at the end */
	uint64_t chunk_acquire, chunk_release, refill_fail, decay_passes, wakes, page_kind;
};

struct opts {
	unsigned cycles, load_ms, quiet_ms, gap_us, working, decay_ms, delay_us, fail_pct, sample_ms, cache;
	size_t size;
	uint64_t reserve_low, reserve_high;
	bool variants[V_COUNT];
	const char *json, *data;
};

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double rss_mib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, res = 0;
	if (f) {
		if (fscanf(f, "%lu %lu", &size, &res) != 2)
			res = 0;
		fclose(f);
	}
	return (double)res * (double)sysconf(_SC_PAGESIZE) / (1 << 20);
}

/* ---- one variant, in a child process --------------------------------------- */

struct urun {
	const struct opts *o;
	enum variant v;
	iop_pool_t *pool;
	struct result *r;
	int64_t t0;
	_Atomic bool stop;
	_Atomic uint64_t fails;
	uint64_t *lat;
	size_t nlat, maxlat;
};

static void *sampler(void *arg)
{
	struct urun *run = arg;
	struct result *r = run->r;
	while (!atomic_load(&run->stop) && r->nsamples < MAX_SAMPLES) {
		struct sample *s = &r->s[r->nsamples];
		s->t = (double)(mono_ns() - run->t0) / 1e9;
		s->rss_mib = rss_mib();
		s->fails = atomic_load(&run->fails);
		r->nsamples++;
		struct timespec ts = { 0, (long)run->o->sample_ms * 1000000 };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* One usable buffer, or NULL (lost); its latency is recorded. */
static void *get(struct urun *run)
{
	const struct opts *o = run->o;
	int64_t t = mono_ns();
	void *p = NULL;
	if (run->v == V_MALLOC) {
		p = malloc(o->size);
	} else if (iop_alloc_ex(run->pool, &p, IOP_NOWAIT, 0) != 0) {
		atomic_fetch_add(&run->fails, 1);
		run->r->nowait_fail++;
		if (run->v == V_INLINE && iop_alloc_ex(run->pool, &p, 0, 0) != 0)
			p = NULL;
	}
	if (p) {
		for (size_t off = 0; off < o->size; off += 4096)
			((volatile char *)p)[off] = 1;
	}
	int64_t d = mono_ns() - t;
	if (run->nlat < run->maxlat)
		run->lat[run->nlat++] = (uint64_t)d;
	run->r->allocs++;
	if (!p)
		run->r->lost++;
	return p;
}

static void put(struct urun *run, void *p)
{
	if (!p)
		return;
	if (run->v == V_MALLOC)
		free(p);
	else
		iop_free(run->pool, p);
}

static void spin_until(int64_t t)
{
	while (mono_ns() < t)
		;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void run_variant(const struct opts *o, enum variant v, struct result *r)
{
	struct urun run = { .o = o, .v = v, .r = r };
	run.maxlat = (size_t)o->cycles * (o->load_ms * 1000u / o->gap_us + o->working) + 16;
	run.lat = malloc(run.maxlat * sizeof(uint64_t));
	void **ring = calloc(o->working, sizeof(void *));
	if (!run.lat || !ring) {
		fprintf(stderr, "iopool-uptime: out of memory\n");
		exit(1);
	}
	if (v != V_MALLOC) {
		struct iop__fault f = { .fail_pct = o->fail_pct, .delay_us = o->delay_us };
		iop__fault_set(&f);
		struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
		pp.name = vnames[v];
		pp.obj_size = o->size;
		pp.decay_ms = o->decay_ms;
		pp.cache_size = o->cache;
		if (v == V_WORKER) {
			pp.reserve_low = o->reserve_low;
			pp.reserve_high = o->reserve_high;
		}
		run.pool = iop_pool_create(&pp);
		if (!run.pool) {
			fprintf(stderr, "iopool-uptime: iop_pool_create: %s\n", strerror(errno));
			exit(1);
		}
		/* Start from a filled reserve, as a server that has run a while. */
		if (v == V_WORKER) {
			struct iop_pool_stats st = { .struct_size = sizeof(st) };
			for (int i = 0; i < 10000; i++) {
				iop_pool_stats(run.pool, &st);
				if (st.depot >= o->reserve_high)
					break;
				struct timespec ts = { 0, 1000000 };
				nanosleep(&ts, NULL);
			}
		}
	}
	pthread_t smp;
	run.t0 = mono_ns();
	pthread_create(&smp, NULL, sampler, &run);
	int64_t t = run.t0;
	for (unsigned c = 0; c < o->cycles && c < MAX_CYCLES; c++) {
		/* The load returns at once: the whole working set. */
		for (unsigned i = 0; i < o->working; i++) {
			t += (int64_t)o->gap_us * 1000 / 4;
			spin_until(t);
			ring[i] = get(&run);
		}
		int64_t end = t + (int64_t)o->load_ms * 1000000;
		for (unsigned i = 0; t < end; i = (i + 1) % o->working) {
			t += (int64_t)o->gap_us * 1000;
			spin_until(t);
			put(&run, ring[i]);
			ring[i] = get(&run);
		}
		r->rss_load[c] = rss_mib();
		double quiet_start = (double)(mono_ns() - run.t0) / 1e9;
		for (unsigned i = 0; i < o->working; i++) {
			put(&run, ring[i]);
			ring[i] = NULL;
		}
		/* A thread going idle hands its cache back, as the README
		 * says to; decay then sees every idle object. */
		if (run.pool)
			iop_thread_flush();
		t = mono_ns() + (int64_t)o->quiet_ms * 1000000;
		struct timespec ts = { o->quiet_ms / 1000, (long)(o->quiet_ms % 1000) * 1000000 };
		nanosleep(&ts, NULL);
		t = mono_ns() > t ? mono_ns() : t;
		r->rss_quiet[c] = rss_mib();
		/* When resident memory fell by half the working set. */
		double goal = r->rss_load[c] - (double)o->working * (double)o->size / (1 << 20) / 2;
		r->half_ms[c] = -1;
		for (unsigned i = 0; i < r->nsamples; i++)
			if (r->s[i].t >= quiet_start && r->s[i].rss_mib <= goal) {
				r->half_ms[c] = (r->s[i].t - quiet_start) * 1000;
				break;
			}
	}
	atomic_store(&run.stop, true);
	pthread_join(smp, NULL);
	qsort(run.lat, run.nlat, sizeof(uint64_t), cmp_u64);
	if (run.nlat) {
		r->p50 = run.lat[run.nlat / 2];
		r->p99 = run.lat[run.nlat * 99 / 100];
		r->max = run.lat[run.nlat - 1];
	}
	if (run.pool) {
		struct iop_pool_stats st = { .struct_size = sizeof(st) };
		iop_pool_stats(run.pool, &st);
		r->chunk_acquire = st.chunk_acquire;
		r->chunk_release = st.chunk_release;
		r->refill_fail = st.refill_fail;
		r->decay_passes = st.decay_passes;
		r->wakes = st.wake_low + st.wake_empty + st.wake_fail;
		r->page_kind = st.page_kind;
		iop__fault_set(NULL);
		iop_pool_destroy(run.pool);
	}
	free(ring);
	free(run.lat);
	r->done = true;
}

/* ---- output ------------------------------------------------------------------ */

static double median_of(const double *v, unsigned n)
{
	double t[MAX_CYCLES];
	memcpy(t, v, n * sizeof(double));
	for (unsigned i = 1; i < n; i++)
		for (unsigned j = i; j > 0 && t[j] < t[j - 1]; j--) {
			double x = t[j];
			t[j] = t[j - 1];
			t[j - 1] = x;
		}
	return n ? t[n / 2] : 0;
}

static const char *kind_name(uint64_t k)
{
	return k == IOP_PAGES_HUGETLB ? "hugetlb" : k == IOP_PAGES_THP ? "thp" : k == IOP_PAGES_4K ? "4k" : "-";
}

static void print_table(const struct opts *o, struct result *res)
{
	printf("\n## uptime: %u cycles of %u ms load / %u ms quiet, %u x %zu B working set, "
	       "1 buffer per %u us; OS: %u us per chunk, %u%% of chunk requests fail; decay every %u ms\n\n",
	       o->cycles, o->load_ms, o->quiet_ms, o->working, o->size, o->gap_us, o->delay_us, o->fail_pct,
	       o->decay_ms);
	printf("| variant | allocations | non-blocking failures | lost | p50 ns | p99 ns | max ns | "
	       "resident, end of load (MiB) | resident, end of quiet (MiB) | half trimmed after (ms) |\n");
	printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
	for (int v = 0; v < V_COUNT; v++) {
		struct result *r = &res[v];
		if (!o->variants[v])
			continue;
		if (!r->done) {
			printf("| %s | (failed) |||||||||\n", vnames[v]);
			continue;
		}
		unsigned n = o->cycles < MAX_CYCLES ? o->cycles : MAX_CYCLES;
		double half = median_of(r->half_ms, n);
		char hb[32];
		if (half < 0)
			snprintf(hb, sizeof hb, "not within the phase");
		else
			snprintf(hb, sizeof hb, "%.0f", half);
		printf("| %s | %llu | %llu | %llu | %llu | %llu | %llu | %.1f | %.1f | %s |\n", vnames[v],
		       (unsigned long long)r->allocs, (unsigned long long)r->nowait_fail,
		       (unsigned long long)r->lost, (unsigned long long)r->p50, (unsigned long long)r->p99,
		       (unsigned long long)r->max, median_of(r->rss_load, n), median_of(r->rss_quiet, n), hb);
	}
	printf("\nResident memory: medians over the cycles (the process's VmRSS). ");
	printf("Half trimmed: the median time from the start of a quiet phase until VmRSS fell by half "
	       "the working set.\n");
	for (int v = 0; v < V_MALLOC; v++)
		if (o->variants[v] && res[v].done)
			printf("%s: %llu chunks mapped, %llu returned, %llu worker chunk failures, %llu decay passes, "
			       "%llu wake-ups, pages: %s\n",
			       vnames[v], (unsigned long long)res[v].chunk_acquire,
			       (unsigned long long)res[v].chunk_release, (unsigned long long)res[v].refill_fail,
			       (unsigned long long)res[v].decay_passes, (unsigned long long)res[v].wakes,
			       kind_name(res[v].page_kind));
	for (int v = 0; v < V_COUNT; v++)
		if (o->variants[v])
			printf("  %-7s %s\n", vnames[v], vwhat[v]);
}

static int write_json(const struct opts *o, struct result *res, const struct machine *m)
{
	FILE *f = fopen(o->json, "w");
	if (!f) {
		fprintf(stderr, "iopool-uptime: %s: %s\n", o->json, strerror(errno));
		return -1;
	}
	fputs("{\"bench\":\"uptime\",\"machine\":", f);
	json_machine(f, m);
	fprintf(f, ",\"cycles\":%u,\"load_ms\":%u,\"quiet_ms\":%u,\"gap_us\":%u,"
		   "\"working\":%u,\"size\":%zu,\"decay_ms\":%u,\"reserve_low\":%llu,\"reserve_high\":%llu,"
		   "\"delay_us\":%u,\"fail_pct\":%u,\"variants\":[",
		o->cycles, o->load_ms, o->quiet_ms, o->gap_us, o->working, o->size, o->decay_ms,
		(unsigned long long)o->reserve_low, (unsigned long long)o->reserve_high, o->delay_us, o->fail_pct);
	bool first = true;
	for (int v = 0; v < V_COUNT; v++) {
		struct result *r = &res[v];
		if (!o->variants[v] || !r->done)
			continue;
		fprintf(f, "%s{\"name\":\"%s\",\"allocs\":%llu,\"nowait_failures\":%llu,\"lost\":%llu,"
			   "\"p50_ns\":%llu,\"p99_ns\":%llu,\"max_ns\":%llu,\"chunk_acquire\":%llu,"
			   "\"chunk_release\":%llu,\"decay_passes\":%llu,\"samples\":[",
			first ? "" : ",", vnames[v], (unsigned long long)r->allocs,
			(unsigned long long)r->nowait_fail, (unsigned long long)r->lost, (unsigned long long)r->p50,
			(unsigned long long)r->p99, (unsigned long long)r->max, (unsigned long long)r->chunk_acquire,
			(unsigned long long)r->chunk_release, (unsigned long long)r->decay_passes);
		for (unsigned i = 0; i < r->nsamples; i++)
			fprintf(f, "%s[%.3f,%.2f,%llu]", i ? "," : "", r->s[i].t, r->s[i].rss_mib,
				(unsigned long long)r->s[i].fails);
		fputs("]}", f);
		first = false;
	}
	fputs("]}\n", f);
	return fclose(f);
}

static int write_data(const struct opts *o, struct result *res)
{
	FILE *f = fopen(o->data, "w");
	if (!f) {
		fprintf(stderr, "iopool-uptime: %s: %s\n", o->data, strerror(errno));
		return -1;
	}
	/* Always three blocks, in variant order, so the plot's `index` is
	 * fixed; a variant not run is one zero row. */
	for (int v = 0; v < V_COUNT; v++) {
		struct result *r = &res[v];
		fprintf(f, "# %s: t_s resident_mib nowait_failures\n", vnames[v]);
		if (!o->variants[v] || !r->done || !r->nsamples)
			fputs("0 0 0\n", f);
		for (unsigned i = 0; o->variants[v] && r->done && i < r->nsamples; i++)
			fprintf(f, "%.3f %.2f %llu\n", r->s[i].t, r->s[i].rss_mib, (unsigned long long)r->s[i].fails);
		fputs("\n\n", f);
	}
	return fclose(f);
}

/* ---- options ----------------------------------------------------------------- */

static unsigned num(const char *s, const char *what, unsigned lo, unsigned hi)
{
	char *end;
	unsigned long v = strtoul(s ? s : "", &end, 10);
	if (!s || *end || v < lo || v > hi) {
		fprintf(stderr, "iopool-uptime: %s must be %u..%u\n", what, lo, hi);
		exit(2);
	}
	return (unsigned)v;
}

int main(int argc, char **argv)
{
	struct opts o = {
		.cycles = 3, .load_ms = 600, .quiet_ms = 1500, .gap_us = 10, .working = 512, .size = 16384,
		.decay_ms = 100, .reserve_low = 512, .reserve_high = 768, .delay_us = 2000, .fail_pct = 25,
		.sample_ms = 10, .variants = { true, true, true },
	};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--quick")) {
			o.cycles = 2;
			o.load_ms = 100;
			o.quiet_ms = 400;
			o.decay_ms = 20;
			o.working = 256;
			o.reserve_low = 256;
			o.reserve_high = 384;
			continue;
		}
		i++;
		if (!strcmp(a, "--cycles"))
			o.cycles = num(v, a, 1, MAX_CYCLES);
		else if (!strcmp(a, "--load-ms"))
			o.load_ms = num(v, a, 1, 600000);
		else if (!strcmp(a, "--quiet-ms"))
			o.quiet_ms = num(v, a, 1, 600000);
		else if (!strcmp(a, "--gap-us"))
			o.gap_us = num(v, a, 1, 1000000);
		else if (!strcmp(a, "--working"))
			o.working = num(v, a, 1, 1000000);
		else if (!strcmp(a, "--size"))
			o.size = num(v, a, 16, 1u << 20);
		else if (!strcmp(a, "--decay-ms"))
			o.decay_ms = num(v, a, 1, 600000);
		else if (!strcmp(a, "--reserve-low"))
			o.reserve_low = num(v, a, 1, 10000000);
		else if (!strcmp(a, "--reserve-high"))
			o.reserve_high = num(v, a, 1, 10000000);
		else if (!strcmp(a, "--delay-us"))
			o.delay_us = num(v, a, 0, 10000000);
		else if (!strcmp(a, "--fail-pct"))
			o.fail_pct = num(v, a, 0, 99);
		else if (!strcmp(a, "--cache"))
			o.cache = num(v, a, 0, 1024);
		else if (!strcmp(a, "--sample-ms"))
			o.sample_ms = num(v, a, 1, 10000);
		else if (!strcmp(a, "--json") && v)
			o.json = v;
		else if (!strcmp(a, "--data") && v)
			o.data = v;
		else if (!strcmp(a, "--variants") && v) {
			memset(o.variants, 0, sizeof(o.variants));
			char buf[64];
			snprintf(buf, sizeof buf, "%s", v);
			for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
				int k = 0;
				while (k < V_COUNT && strcmp(tok, vnames[k]))
					k++;
				if (k == V_COUNT) {
					fprintf(stderr, "iopool-uptime: unknown variant '%s'\n", tok);
					return 2;
				}
				o.variants[k] = true;
			}
		} else {
			fprintf(stderr, "usage: see the comment at the top of bench/uptime.c ('%s'?)\n", a);
			return 2;
		}
	}
	if (o.reserve_high < o.reserve_low)
		o.reserve_high = o.reserve_low;
	struct result *res = mmap(NULL, sizeof(struct result) * V_COUNT, PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (res == MAP_FAILED) {
		perror("iopool-uptime: mmap");
		return 1;
	}
	struct machine machine;
	machine_probe(&machine);
	for (int v = 0; v < V_COUNT; v++) {
		if (!o.variants[v])
			continue;
		fflush(stdout);
		pid_t pid = fork();
		if (pid < 0) {
			perror("iopool-uptime: fork");
			return 1;
		}
		if (pid == 0) {
			run_variant(&o, (enum variant)v, &res[v]);
			_exit(0);
		}
		int status;
		waitpid(pid, &status, 0);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fprintf(stderr, "iopool-uptime: variant %s failed (status %#x)\n", vnames[v], status);
	}
	print_table(&o, res);
	int rc = 0;
	read_loadavg(machine.load_end, sizeof(machine.load_end));
	if (o.json && write_json(&o, res, &machine) != 0)
		rc = 1;
	if (o.data && write_data(&o, res) != 0)
		rc = 1;
	for (int v = 0; v < V_COUNT; v++)
		if (o.variants[v] && !res[v].done)
			rc = 1;
	return rc;
}
