/* SPDX-License-Identifier: MIT */
/*
 * iopool-spike: the swiotlb throttling experiment, with a simulated device.
 *
 * P producer threads submit bursts of I/O requests on a fixed schedule (burst
 * k of every producer starts at t0 + k * gap, so the bursts of all producers
 * coincide: the spike). Each request needs a buffer for the time the device
 * holds it; a completion thread frees each buffer `latency` after its
 * submission. The same load runs with four buffer sources:
 *
 *   wait    iopool, limit L, blocking allocation (IOP_WAIT) with the default
 *           throttling (70% / 65% of L)
 *   fail    iopool, limit L, default mode: an allocation fails at the limit
 *   malloc  malloc(), no limit
 *   array   a fixed array of L buffers that fails when empty (what a DPDK
 *           mempool or an io_uring provided-buffer ring gives)
 *
 * A failed allocation is an I/O error: the request is dropped and counted.
 * For each: requests completed, errors, the high-water mark of buffers in
 * flight, the memory the buffers took, throughput, and the latency of a
 * request from the moment its producer asked for a buffer to its completion
 * (p50, p99). Medians over --reps runs.
 *
 * usage: iopool-spike [--producers P] [--burst B] [--bursts N] [--gap-us G]
 *                     [--latency-us D] [--limit L] [--size S] [--reps R]
 *                     [--modes wait,fail,malloc,array] [--quick]
 *                     [--json FILE]
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
#include <time.h>
#include <gnu/libc-version.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <iopool.h>

enum mode { M_WAIT, M_FAIL, M_MALLOC, M_ARRAY, M_COUNT };
static const char *const mode_names[M_COUNT] = { "wait", "fail", "malloc", "array" };
static const char *const mode_what[M_COUNT] = {
	"iopool, limit L, IOP_WAIT with throttling at 70%/65%",
	"iopool, limit L, fails at the limit",
	"malloc, no limit",
	"fixed array of L buffers, fails when empty",
};

struct opts {
	unsigned producers, burst, bursts, gap_us, latency_us, reps;
	uint64_t limit;
	size_t size;
	bool modes[M_COUNT];
	const char *json;
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_until(int64_t t)
{
	struct timespec ts = { .tv_sec = t / 1000000000, .tv_nsec = t % 1000000000 };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static _Noreturn void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "iopool-spike: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(2);
}

/* ---- buffer sources -------------------------------------------------------- */

struct source {
	enum mode mode;
	size_t size;
	iop_pool_t *pool;
	pthread_mutex_t mu;   /* array */
	void **stack;
	uint64_t nfree;
	char *slab;
};

static void source_init(struct source *s, enum mode m, const struct opts *o)
{
	memset(s, 0, sizeof(*s));
	s->mode = m;
	s->size = o->size;
	if (m == M_WAIT || m == M_FAIL) {
		struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
		pp.name = m == M_WAIT ? "spike-wait" : "spike-fail";
		pp.obj_size = o->size;
		pp.limit = o->limit;
		s->pool = iop_pool_create(&pp);
		if (!s->pool)
			die("cannot create the pool: %s", strerror(errno));
	} else if (m == M_ARRAY) {
		pthread_mutex_init(&s->mu, NULL);
		s->slab = malloc(o->limit * o->size);
		s->stack = malloc(o->limit * sizeof(void *));
		if (!s->slab || !s->stack)
			die("%s", "out of memory");
		for (uint64_t i = 0; i < o->limit; i++)
			s->stack[i] = s->slab + i * o->size;
		s->nfree = o->limit;
	}
}

static void *source_get(struct source *s)
{
	void *p = NULL;
	switch (s->mode) {
	case M_WAIT:
		return iop_alloc_ex(s->pool, &p, IOP_WAIT, IOP_FOREVER) == 0 ? p : NULL;
	case M_FAIL:
		return iop_alloc_ex(s->pool, &p, 0, 0) == 0 ? p : NULL;
	case M_MALLOC:
		return malloc(s->size);
	case M_ARRAY:
		pthread_mutex_lock(&s->mu);
		if (s->nfree)
			p = s->stack[--s->nfree];
		pthread_mutex_unlock(&s->mu);
		return p;
	default:
		return NULL;
	}
}

static void source_put(struct source *s, void *p)
{
	switch (s->mode) {
	case M_WAIT:
	case M_FAIL:
		iop_free(s->pool, p);
		break;
	case M_MALLOC:
		free(p);
		break;
	case M_ARRAY:
		pthread_mutex_lock(&s->mu);
		s->stack[s->nfree++] = p;
		pthread_mutex_unlock(&s->mu);
		break;
	default:
		break;
	}
}

/* Bytes the buffers took: what the pool carved, what malloc had out at the
 * peak, the whole array. */
static uint64_t source_memory(struct source *s, uint64_t high_water, const struct opts *o)
{
	if (s->pool) {
		struct iop_pool_stats st = { .struct_size = sizeof(st) };
		iop_pool_stats(s->pool, &st);
		return (st.total - st.slab_free) * st.obj_stride;
	}
	return s->mode == M_ARRAY ? o->limit * o->size : high_water * o->size;
}

static void source_fini(struct source *s)
{
	if (s->pool && iop_pool_destroy(s->pool) != 0)
		die("%s", "pool not empty at the end of a run");
	free(s->slab);
	free(s->stack);
}

/* ---- the device ------------------------------------------------------------ */

struct req {
	void *buf;
	int64_t start;  /* the producer asked for a buffer */
	int64_t due;    /* the device completes it */
};

#define SERIES_MAX 20000

struct run {
	const struct opts *o;
	struct source src;
	/* submission queue, FIFO by due time */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct req *q;
	size_t qcap, qhead, qtail;
	unsigned producers_left;
	int64_t t0, t_last;
	atomic_llong in_flight, high_water, errors;
	uint64_t *lat;   /* completion thread only */
	uint64_t completed;
	/* in flight over time, sampled */
	atomic_bool sampling;
	uint32_t series_n;
	float series_t[SERIES_MAX];
	uint32_t series_v[SERIES_MAX];
};

static void *producer_main(void *arg)
{
	struct run *r = arg;
	const struct opts *o = r->o;
	int64_t gap = (int64_t)o->gap_us * 1000, lat = (int64_t)o->latency_us * 1000;
	for (unsigned k = 0; k < o->bursts; k++) {
		sleep_until(r->t0 + (int64_t)k * gap);
		for (unsigned i = 0; i < o->burst; i++) {
			int64_t start = now_ns();
			void *buf = source_get(&r->src);
			if (!buf) {
				atomic_fetch_add(&r->errors, 1);
				continue;
			}
			memset(buf, (int)i, 64); /* the driver fills the bounce buffer */
			long long f = atomic_fetch_add(&r->in_flight, 1) + 1;
			long long h = atomic_load(&r->high_water);
			while (f > h && !atomic_compare_exchange_weak(&r->high_water, &h, f))
				;
			pthread_mutex_lock(&r->mu);
			int64_t now = now_ns();
			r->q[r->qtail++ % r->qcap] = (struct req){ buf, start, now + lat };
			pthread_cond_signal(&r->cv);
			pthread_mutex_unlock(&r->mu);
		}
	}
	pthread_mutex_lock(&r->mu);
	r->producers_left--;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

static void *device_main(void *arg)
{
	struct run *r = arg;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		while (r->qhead == r->qtail && r->producers_left)
			pthread_cond_wait(&r->cv, &r->mu);
		if (r->qhead == r->qtail)
			break;
		struct req q = r->q[r->qhead % r->qcap];
		int64_t now = now_ns();
		if (q.due > now) {
			pthread_mutex_unlock(&r->mu);
			sleep_until(q.due);
			pthread_mutex_lock(&r->mu);
			continue;
		}
		r->qhead++;
		pthread_mutex_unlock(&r->mu);
		atomic_fetch_sub(&r->in_flight, 1);
		source_put(&r->src, q.buf);
		now = now_ns();
		r->lat[r->completed++] = (uint64_t)(now - q.start);
		r->t_last = now;
		pthread_mutex_lock(&r->mu);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

static void *sampler_main(void *arg)
{
	struct run *r = arg;
	while (atomic_load(&r->sampling) && r->series_n < SERIES_MAX) {
		r->series_t[r->series_n] = (float)((now_ns() - r->t0) / 1e6);
		r->series_v[r->series_n] = (uint32_t)atomic_load(&r->in_flight);
		r->series_n++;
		sleep_until(now_ns() + 100000); /* 100 us */
	}
	return NULL;
}

struct result {
	uint64_t completed, errors, high_water, memory;
	double throughput, p50_us, p99_us;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static struct run *run_once(enum mode m, const struct opts *o, struct result *res)
{
	struct run *r = calloc(1, sizeof(*r));
	uint64_t total = (uint64_t)o->producers * o->burst * o->bursts;
	if (!r)
		die("%s", "out of memory");
	r->o = o;
	r->qcap = total + 1;
	r->q = malloc(r->qcap * sizeof(*r->q));
	r->lat = malloc(total * sizeof(*r->lat));
	if (!r->q || !r->lat)
		die("%s", "out of memory");
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	source_init(&r->src, m, o);
	r->producers_left = o->producers;
	r->t0 = now_ns() + 20 * 1000000; /* all threads started */
	r->t_last = r->t0;
	atomic_store(&r->sampling, true);

	pthread_t dev, sam, prod[64];
	pthread_create(&dev, NULL, device_main, r);
	pthread_create(&sam, NULL, sampler_main, r);
	for (unsigned i = 0; i < o->producers; i++)
		pthread_create(&prod[i], NULL, producer_main, r);
	for (unsigned i = 0; i < o->producers; i++)
		pthread_join(prod[i], NULL);
	pthread_join(dev, NULL);
	atomic_store(&r->sampling, false);
	pthread_join(sam, NULL);

	res->completed = r->completed;
	res->errors = (uint64_t)atomic_load(&r->errors);
	res->high_water = (uint64_t)atomic_load(&r->high_water);
	res->memory = source_memory(&r->src, res->high_water, o);
	double secs = (double)(r->t_last - r->t0) / 1e9;
	res->throughput = secs > 0 ? (double)r->completed / secs : 0;
	qsort(r->lat, r->completed, sizeof(*r->lat), cmp_u64);
	res->p50_us = r->completed ? (double)r->lat[r->completed / 2] / 1e3 : 0;
	res->p99_us = r->completed ? (double)r->lat[(r->completed * 99) / 100] / 1e3 : 0;
	if (r->src.pool) {
		struct iop_pool_stats st = { .struct_size = sizeof(st) };
		iop_pool_stats(r->src.pool, &st);
		if (st.high_water > o->limit)
			die("%s", "the pool's high-water mark is above its limit");
	}
	source_fini(&r->src);
	free(r->q);
	free(r->lat);
	return r;
}

/* ---- what a bounded pool costs per call ---------------------------------------- */

/* ns per alloc+free pair on one thread, best of 5 runs of 2^20 pairs:
 * kind 0 an unbounded pool (inline path), 1 a bounded pool (default mode),
 * 2 the bounded pool with IOP_WAIT. */
static double pair_ns(int kind, size_t size)
{
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.obj_size = size;
	pp.limit = kind ? 1024 : 0;
	iop_pool_t *pool = iop_pool_create(&pp);
	if (!pool)
		die("cannot create the pool: %s", strerror(errno));
	double best = 1e30;
	for (int rep = 0; rep < 5; rep++) {
		int64_t t0 = now_ns();
		for (int i = 0; i < (1 << 20); i++) {
			void *p;
			if (kind == 2) {
				if (iop_alloc_ex(pool, &p, IOP_WAIT, IOP_FOREVER) != 0)
					die("%s", "alloc failed");
			} else if (!(p = iop_alloc(pool))) {
				die("%s", "alloc failed");
			}
			__asm__ volatile("" : : "r"(p) : "memory");
			iop_free(pool, p);
		}
		double ns = (double)(now_ns() - t0) / (1 << 20);
		if (ns < best)
			best = ns;
	}
	iop_thread_flush();
	if (iop_pool_destroy(pool) != 0)
		die("%s", "pool not empty");
	return best;
}

/* ---- reporting --------------------------------------------------------------- */

static double median_d(double *v, unsigned n)
{
	for (unsigned i = 1; i < n; i++)
		for (unsigned j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void cpu_model(char *out, size_t len)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[256];
	snprintf(out, len, "unknown CPU");
	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "model name", 10) == 0) {
			char *c = strchr(line, ':');
			if (c) {
				snprintf(out, len, "%s", c + 2);
				out[strcspn(out, "\n")] = 0;
			}
			break;
		}
	}
	if (f)
		fclose(f);
}

int main(int argc, char **argv)
{
	struct opts o = { .producers = 4, .burst = 128, .bursts = 200, .gap_us = 2000, .latency_us = 200,
			  .reps = 3, .limit = 256, .size = 4096 };
	for (int m = 0; m < M_COUNT; m++)
		o.modes[m] = true;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define UOPT(name, field)                                   \
	if (strcmp(a, name) == 0 && v) {                     \
		o.field = (unsigned)strtoul(v, NULL, 0);      \
		i++;                                          \
		continue;                                     \
	}
		UOPT("--producers", producers)
		UOPT("--burst", burst)
		UOPT("--bursts", bursts)
		UOPT("--gap-us", gap_us)
		UOPT("--latency-us", latency_us)
		UOPT("--reps", reps)
		if (strcmp(a, "--limit") == 0 && v) {
			o.limit = strtoull(v, NULL, 0);
			i++;
		} else if (strcmp(a, "--size") == 0 && v) {
			o.size = strtoull(v, NULL, 0);
			i++;
		} else if (strcmp(a, "--json") == 0 && v) {
			o.json = v;
			i++;
		} else if (strcmp(a, "--quick") == 0) {
			o.bursts = 40;
			o.reps = 1;
		} else if (strcmp(a, "--modes") == 0 && v) {
			for (int m = 0; m < M_COUNT; m++)
				o.modes[m] = strstr(v, mode_names[m]) != NULL;
			i++;
		} else {
			fprintf(stderr, "usage: %s [--producers P] [--burst B] [--bursts N] [--gap-us G] "
					"[--latency-us D] [--limit L] [--size S] [--reps R] "
					"[--modes wait,fail,malloc,array] [--quick] [--json FILE]\n",
				argv[0]);
			return strcmp(a, "--help") == 0 ? 0 : 2;
		}
	}
	if (!o.producers || o.producers > 64 || !o.burst || !o.bursts || !o.limit || !o.reps || o.reps > 32 ||
	    o.size < 64)
		die("%s", "bad parameters (producers 1..64, reps 1..32, size >= 64, the rest > 0)");

	char cpu[128];
	cpu_model(cpu, sizeof(cpu));
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	printf("spike: %u producers x bursts of %u every %u us, %u bursts; device latency %u us; "
	       "L = %llu buffers of %zu bytes; median of %u runs\n",
	       o.producers, o.burst, o.gap_us, o.bursts, o.latency_us, (unsigned long long)o.limit, o.size, o.reps);
	printf("machine: %s, %ld CPUs\n", cpu, ncpu);
	double pair[3];
	for (int k = 0; k < 3; k++)
		pair[k] = pair_ns(k, o.size);
	printf("alloc+free pair, one thread (best of 5): unbounded pool %.2f ns, bounded pool %.2f ns, "
	       "bounded with IOP_WAIT %.2f ns\n\n",
	       pair[0], pair[1], pair[2]);
	printf("| mode | what | completed | errors | high-water (buffers) | memory (KiB) | throughput (req/s) "
	       "| p50 latency (us) | p99 latency (us) |\n");
	printf("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");

	FILE *js = NULL;
	if (o.json) {
		js = fopen(o.json, "w");
		if (!js)
			die("cannot write %s", o.json);
		struct utsname u;
		if (uname(&u) != 0)
			snprintf(u.release, sizeof(u.release), "unknown");
		fprintf(js,
			"{\"bench\":\"spike\",\"machine\":{\"cpu\":\"%s\",\"cores\":%ld,\"kernel\":\"Linux %s\","
			"\"compiler\":\"gcc %s\",\"libc\":\"glibc %s\",\"build\":\"Release\"},"
			"\"params\":{\"producers\":%u,"
			"\"burst\":%u,\"bursts\":%u,\"gap_us\":%u,\"latency_us\":%u,\"limit\":%llu,\"size\":%zu,"
			"\"reps\":%u},\"pair_ns\":{\"unbounded\":%.2f,\"bounded\":%.2f,\"bounded_wait\":%.2f},"
			"\"results\":[",
			cpu, ncpu, u.release, __VERSION__, gnu_get_libc_version(), o.producers, o.burst, o.bursts, o.gap_us, o.latency_us, (unsigned long long)o.limit,
			o.size, o.reps, pair[0], pair[1], pair[2]);
	}
	bool first = true;
	for (int m = 0; m < M_COUNT; m++) {
		if (!o.modes[m])
			continue;
		struct result res[32];
		struct run *keep = NULL;
		double thr[32] = { 0 }, p50[32] = { 0 }, p99[32] = { 0 }, comp[32] = { 0 }, err[32] = { 0 };
		uint64_t hw = 0, mem = 0;
		for (unsigned k = 0; k < o.reps; k++) {
			struct run *r = run_once((enum mode)m, &o, &res[k]);
			if (k == 0)
				keep = r;
			else
				free(r);
			thr[k] = res[k].throughput;
			p50[k] = res[k].p50_us;
			p99[k] = res[k].p99_us;
			comp[k] = (double)res[k].completed;
			err[k] = (double)res[k].errors;
			if (res[k].high_water > hw)
				hw = res[k].high_water;
			if (res[k].memory > mem)
				mem = res[k].memory;
		}
		double mt = median_d(thr, o.reps), m50 = median_d(p50, o.reps), m99 = median_d(p99, o.reps);
		double mc = median_d(comp, o.reps), me = median_d(err, o.reps);
		printf("| %s | %s | %.0f | %.0f | %llu | %llu | %.0f | %.0f | %.0f |\n", mode_names[m], mode_what[m],
		       mc, me, (unsigned long long)hw, (unsigned long long)(mem >> 10), mt, m50, m99);
		fflush(stdout);
		if (js) {
			fprintf(js,
				"%s{\"mode\":\"%s\",\"what\":\"%s\",\"completed\":%.0f,\"errors\":%.0f,"
				"\"high_water\":%llu,\"memory_bytes\":%llu,\"throughput\":%.1f,\"p50_us\":%.1f,"
				"\"p99_us\":%.1f,\"series\":[",
				first ? "" : ",", mode_names[m], mode_what[m], mc, me, (unsigned long long)hw,
				(unsigned long long)mem, mt, m50, m99);
			/* In flight over time (first run), at most 2000 points,
			 * each the peak of its stretch. */
			uint32_t step = keep->series_n / 2000 + 1;
			for (uint32_t i = 0; i < keep->series_n; i += step) {
				uint32_t peak = 0;
				for (uint32_t j = i; j < i + step && j < keep->series_n; j++)
					if (keep->series_v[j] > peak)
						peak = keep->series_v[j];
				fprintf(js, "%s[%.3f,%u]", i ? "," : "", keep->series_t[i], peak);
			}
			fputs("]}", js);
			first = false;
		}
		free(keep);
	}
	if (js) {
		fputs("]}\n", js);
		if (fclose(js) != 0)
			die("cannot write %s", o.json);
		printf("\nJSON: %s\n", o.json);
	}
	return 0;
}
