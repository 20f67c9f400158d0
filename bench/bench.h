/* SPDX-License-Identifier: MIT */
/*
 * iopool-bench internals shared by the driver (bench.c, report.c), the child
 * side (common.c) and the one translation unit per allocator (alloc_*.c, each
 * of which instantiates the case template cases.h once).
 *
 * Process model: the driver re-executes /proc/self/exe as
 * `iopool-bench --child ALLOC ...` once per allocator per repetition; the
 * child runs the selected cases once and prints one line per result on
 * stdout:
 *
 *   ROW <case> <param> <ns_per_op> [<mops>]
 *   NA  <case> <param> <reason, may contain spaces>
 *
 * which the driver parses, keeps per repetition and reduces to a median.
 */
#ifndef IOPOOL_BENCH_H
#define IOPOOL_BENCH_H

#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* The matrix                                                                */
/* ------------------------------------------------------------------------ */

enum bench_case {
	CASE_FASTPATH,
	CASE_SIZE,
	CASE_OUTSTANDING,
	CASE_CROSSTHREAD,
	CASE_BULK,
	CASE_THREADS,
	CASE_RECYCLE,
	CASE_COUNT
};

#define BENCH_MAX_PARAMS 16

struct case_desc {
	const char *name;
	const char *unit;     /* for JSON: "ns/pair", "ns/object", ... */
	const char *what;     /* one line: what one op is */
	unsigned nparams;
	const char *params[BENCH_MAX_PARAMS];
};

extern const struct case_desc bench_cases[CASE_COUNT];

/* Parameters of the cases, in the order of bench_cases[].params. */
#define OBJ_SIZE_DEFAULT 2048u
extern const size_t size_case_sizes[];       /* CASE_SIZE */
extern const unsigned outstanding_counts[];  /* CASE_OUTSTANDING */
extern const unsigned bulk_sizes[];          /* CASE_BULK; 0 = random 1..64 */
extern const unsigned thread_counts[];       /* CASE_THREADS */
#define THREADS_MAX 64u                      /* the largest of them */
/* Bounds of the calibrated pairs per thread: enough to amortise a thread's
 * first slow paths, few enough that 64 threads of a slow peer finish. */
#define THREAD_PAIRS_MIN (1u << 12)
#define THREAD_PAIRS_MAX (1u << 24)

/* Largest number of objects one iteration holds at once: outstanding 4096. */
#define MAX_LIVE 4096u
/* Largest bulk (the NAPI budget, 64 packets, as in page_pool's bulk). */
#define BULK_MAX 64u
/* Entries of the precomputed pseudo-random bulk-size table (power of two). */
#define BULK_RAND_TABLE 4096u
/* SPSC ring slots for the crossthread case: far more than a burst, and the
 * 8 KiB of slots stay in L1/L2 of both cores. */
#define XRING_SIZE 1024u

enum alloc_id {
	ALLOC_IOPOOL,
	ALLOC_DPDK,
	ALLOC_GLIBC,
	ALLOC_JEMALLOC,
	ALLOC_MIMALLOC,
	ALLOC_TCMALLOC,
	ALLOC_RING,     /* "ring-only": the crossthread ring with dummy pointers */
	ALLOC_COUNT
};

struct alloc_desc {
	const char *name;
	const char *preload;   /* shared library to LD_PRELOAD; NULL = none */
	const char *probe;     /* a symbol only that allocator exports */
	const char *why_not;   /* non-NULL: not available in this build */
};

extern const struct alloc_desc bench_allocs[ALLOC_COUNT];

/* ------------------------------------------------------------------------ */
/* Child side                                                                */
/* ------------------------------------------------------------------------ */

struct child_opts {
	unsigned case_mask;     /* 1u << enum bench_case */
	unsigned rep;           /* 1-based repetition: seeds the bulk order */
	int quick;
	uint64_t target_ns;     /* length of one timed loop */
	uint64_t calib_ns;      /* calibration stops once a loop runs this long */
};

/* Per-allocator entry points (alloc_*.c); return the child's exit status. */
int child_iopool(const struct child_opts *o);
int child_malloc(const struct child_opts *o, enum alloc_id id);
int child_dpdk(const struct child_opts *o);
int child_ring(const struct child_opts *o);
/* Exit with a message unless malloc comes from the allocator d names
 * (alloc_malloc.c; also used by iopool-vmalloc-bench). */
void verify_preload(const struct alloc_desc *d);

/* callgrind modes: run exactly n fast-path pairs in a noinline function. */
int callgrind_iopool(unsigned long n);
int callgrind_iopool_buf(unsigned long n);
int callgrind_iopool_bounded(unsigned long n);
int callgrind_heap(unsigned long n);
/* iop_heap_alloc(64)+iop_heap_free pairs, plain and with IOP_PROFILE (the
 * profiling cost in instructions; cg_heap_prof.c has the profiled loop). */
#define CG_HEAP64_SIZE 64u
int callgrind_heap64(unsigned long n);
int callgrind_heap64_prof(unsigned long n);
void cg_heap64_prof_loop(unsigned long n);
int callgrind_malloc(unsigned long n);
int callgrind_dpdk(unsigned long n);
/* The same for bulk calls of CG_BULK objects; n counts objects. */
#define CG_BULK 64
#define IOP_BENCH_STR_(x) #x
#define IOP_BENCH_STR(x) IOP_BENCH_STR_(x)
int callgrind_iopool_bulk(unsigned long n);
int callgrind_dpdk_bulk(unsigned long n);
/* DPDK builds: EAL up in this process without hugepages or PCI, and down
 * again, its runtime directory removed (alloc_dpdk.c); die() on failure. */
void bench_eal_up(void);
void bench_eal_down(void);
/* Under valgrind (no rseq): CPU 0 in this thread's rseq area, so that
 * pools made after it use the per-CPU sequences a real run takes
 * (rseq_stand_in.h says why that is sound for one thread). */
#include "rseq_stand_in.h"

/* The callgrind loops must stay one function under their own name, which
 * --toggle-collect matches: not inlined, and not cloned into a renamed copy
 * (GCC's IPA may specialise a function; clang has no such pass or flag). */
#if defined(__clang__)
#define CG_LOOP __attribute__((noinline, used))
#else
#define CG_LOOP __attribute__((noinline, noclone, used))
#endif

/* Result lines (common.c). */
void emit_row(enum bench_case c, const char *param, double ns, double mops);
void emit_na(enum bench_case c, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Report every param of a case as n/a (a case that cannot run at all). */
void emit_case_na(enum bench_case c, const char *reason);

/* Who is speaking in messages: "driver" or the child's allocator. */
extern const char *bench_child_name;

/* Fatal error: message on stderr naming bench_child_name, exit 1. */
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* A timed loop: run `iters` iterations, return elapsed ns, or LOOP_FAILED
 * (the loop function then has said why through *arg). */
typedef uint64_t (*loop_fn)(void *arg, uint64_t iters);
#define LOOP_FAILED UINT64_MAX

/* Timed runs of one loop, at most, while this thread keeps being preempted. */
#define PREEMPTED_RETRIES 3u

/*
 * Calibrate, then time one loop of about o->target_ns; returns ns per op
 * (elapsed / (iters * ops_per_iter)) or a negative value when fn failed.
 * The calibration runs double as warm-up.
 */
double measure(const struct child_opts *o, loop_fn fn, void *arg,
	       double ops_per_iter);

/* The bulk-size table for "rand1-64" and the per-repetition order of the
 * bulk params (a permutation of 0..nparams-1). */
extern unsigned bulk_rand_table[BULK_RAND_TABLE];
void bulk_prepare(unsigned rep, unsigned order[BENCH_MAX_PARAMS]);

/* ------------------------------------------------------------------------ */
/* Small helpers used in timed loops                                         */
/* ------------------------------------------------------------------------ */

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The compiler must assume p escapes and memory changed: no allocation can be
 * elided or hoisted across it. Costs no instruction. */
static inline void escape(const void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
}

/* Write one byte of a fresh object, as a user would, so no allocator gets
 * credit for never touching the memory it hands out. */
/* Like escape(), without claiming that memory changed: the compiler may keep
 * what it loaded in registers across it. For the callgrind loops, whose
 * count should be the allocator's instructions and not reloads forced by a
 * barrier. */
static inline void escape_reg(const void *p)
{
	__asm__ volatile("" : : "r"(p));
}

/* A callgrind loop of n iop_heap_alloc(size)+iop_heap_free pairs, named
 * for --toggle-collect (the profiled one is compiled in its own file, with
 * IOP_PROFILE). The includer has <iopool.h>. */
#define CG_HEAP_PAIR_LOOP(name, size)                                    \
	void name(unsigned long n);                                      \
	CG_LOOP void name(unsigned long n)                               \
	{                                                                \
		for (unsigned long i = 0; i < n; i++) {                  \
			void *p = iop_heap_alloc(size);                  \
			if (p == NULL)                                   \
				die("iop_heap_alloc failed");            \
			escape_reg(p);                                   \
			iop_heap_free(p);                                \
		}                                                        \
	}

static inline void touch(void *p, uint64_t i)
{
	*(volatile unsigned char *)p = (unsigned char)i;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield" ::: "memory");
#endif
}

/* ------------------------------------------------------------------------ */
/* Single-producer single-consumer ring (crossthread case)                   */
/* ------------------------------------------------------------------------ */

/*
 * Lamport ring whose sides publish their index once per XRING_BATCH
 * objects (and always before they wait), and cache the other side's index,
 * so that the index cache lines move between the cores once per batch
 * rather than once per object, as with ptr_ring's batched consume that
 * page_pool uses. head is written by the producer only, tail by the
 * consumer only; a release store of an index publishes the slots before it
 * (to the consumer) or hands the slots back (to the producer), and the
 * acquire load on the other side pairs with it.
 */
#define XRING_BATCH 16u
/* Pauses before a waiting side yields the CPU (tens of microseconds): never
 * reached while both threads run, but on a loaded machine the other side
 * may be preempted, and spinning through its time slice would measure the
 * scheduler instead of the ring. */
#define XRING_SPINS_BEFORE_YIELD 4096u

struct xring {
	_Alignas(64) _Atomic uint64_t head; /* published by the producer */
	uint64_t head_local;                /* producer: next slot to fill */
	uint64_t tail_seen;                 /* producer's copy of tail */
	_Alignas(64) _Atomic uint64_t tail; /* published by the consumer */
	uint64_t tail_local;                /* consumer: next slot to take */
	uint64_t head_seen;                 /* consumer's copy of head */
	_Alignas(64) void *slot[XRING_SIZE];
};

static inline void xring_wait(unsigned spins)
{
	if (spins < XRING_SPINS_BEFORE_YIELD)
		cpu_relax();
	else
		sched_yield();
}

static inline void xring_reset(struct xring *r)
{
	atomic_store(&r->head, 0);
	atomic_store(&r->tail, 0);
	r->head_local = r->tail_seen = r->tail_local = r->head_seen = 0;
}

static inline void xring_push(struct xring *r, void *p)
{
	uint64_t h = r->head_local;

	for (unsigned spins = 0; h - r->tail_seen == XRING_SIZE; spins++) {
		atomic_store_explicit(&r->head, h, memory_order_release);
		r->tail_seen = atomic_load_explicit(&r->tail,
						    memory_order_acquire);
		if (h - r->tail_seen == XRING_SIZE)
			xring_wait(spins);
	}
	r->slot[h & (XRING_SIZE - 1)] = p;
	r->head_local = ++h;
	if (h % XRING_BATCH == 0)
		atomic_store_explicit(&r->head, h, memory_order_release);
}

/* The producer is done: publish what it has not yet. */
static inline void xring_flush(struct xring *r)
{
	atomic_store_explicit(&r->head, r->head_local, memory_order_release);
}

static inline void *xring_pop(struct xring *r)
{
	uint64_t t = r->tail_local;
	void *p;

	for (unsigned spins = 0; t == r->head_seen; spins++) {
		atomic_store_explicit(&r->tail, t, memory_order_release);
		r->head_seen = atomic_load_explicit(&r->head,
						    memory_order_acquire);
		if (t == r->head_seen)
			xring_wait(spins);
	}
	p = r->slot[t & (XRING_SIZE - 1)];
	r->tail_local = ++t;
	if (t % XRING_BATCH == 0)
		atomic_store_explicit(&r->tail, t, memory_order_release);
	return p;
}

/* ------------------------------------------------------------------------ */
/* Driver side                                                               */
/* ------------------------------------------------------------------------ */

#define MAX_REPS 64u

enum baseline {
	BASE_EMPTY,     /* an empty loop iteration */
	BASE_ATOMIC,    /* __atomic_fetch_add on one counter, uncontended */
	BASE_MUTEX,     /* pthread_mutex_lock + unlock, uncontended */
	BASE_COUNT
};

/* One (case, param, allocator): what each repetition measured. */
struct cell {
	unsigned n;                /* repetitions that measured it */
	double ns[MAX_REPS];
	double mops[MAX_REPS];     /* threads only */
	char why[192];             /* the child said n/a, and why */
};

struct machine {
	char cpu[128];
	long cores;
	char kernel[256];
	char compiler[64];
	char libc[32];
	char build[192];
	char dpdk[32];
	char load_start[64];        /* /proc/loadavg before and after the run */
	char load_end[64];
};

struct run {
	/* what to run */
	unsigned reps;
	unsigned case_mask;
	unsigned alloc_mask;          /* 1u << enum alloc_id */
	int quick;
	const char *json_path;
	const char *md_path;
	struct child_opts copts;      /* handed to each child */

	/* what happened */
	struct machine machine;
	double base_ns[BASE_COUNT];   /* medians */
	unsigned base_reps;
	char alloc_why[ALLOC_COUNT][256]; /* not installed / n/a, for all */
	unsigned alloc_fails[ALLOC_COUNT]; /* children that failed */
	struct cell cells[CASE_COUNT][BENCH_MAX_PARAMS][ALLOC_COUNT];
};

/* report.c */
void machine_probe(struct machine *m);
void read_loadavg(char *out, size_t len);
double median(const double *v, unsigned n);
/* Whether allocator a has a column in case c's table. */
int alloc_in_case(const struct run *r, enum alloc_id a, enum bench_case c);
void report_matrix(FILE *f, const struct run *r);
void report_baselines(FILE *f, const struct run *r, int markdown);
/* Prints every table; returns how many cells hold no result and no reason
 * (a child failed or said nothing). */
unsigned report_tables(FILE *f, const struct run *r, int markdown);
int report_json(const char *path, const struct run *r);
/* mkdir -p of the directory part of path. */
int make_parent_dirs(const char *path);
/* s as a JSON string, quoted and escaped. */
void json_str(FILE *f, const char *s);
/* The machine as one JSON object. */
void json_machine(FILE *f, const struct machine *m);

#endif /* IOPOOL_BENCH_H */
