/* SPDX-License-Identifier: MIT */
/*
 * A model-based random test: a seeded random walk of public calls from
 * several threads, checked against a shadow model of what every object
 * should be.
 *
 *   test_model [threads] [seconds] [seed]      defaults: 4 1 1
 *
 * Each walker thread (a "slot") holds live objects of every kind of pool:
 * plain, checked, bounded (each allocation mode: IOP_NOWAIT, the default,
 * IOP_WAIT with short timeouts), bounded and checked, refcounted with a
 * release hook that keeps some buffers, refcounted and bounded (the inline
 * put), a pool with a reserve and decay (refill workers running), and heap
 * blocks of every size range and alignment. The model of each object: its
 * pool, its length, its references, and a stamp written over its whole
 * length when it is handed out and verified before it is given back (an
 * object handed out twice, or overlapping another, breaks a stamp). Mixed
 * in: bulk calls, references taken and put, objects handed to other
 * threads through an exchange (cross-thread frees), iop_thread_flush(),
 * iop_pool_flush(), iop_pool_shrink(), iop_reclaim(), and threads that exit
 * (the slot goes on in a new thread with the same objects).
 *
 * At random quiescent points every walker parks outside iopool and the
 * coordinator compares the model with the library: per pool, the objects
 * in flight, the limit and the high-water mark of bounded pools, the
 * release hook's calls and keeps, every live buffer's reference count
 * (iop_buf_refcount), conservation, iop_pool_audit(); and over all live
 * objects, their stamps and that no two overlap. At the end every object
 * is freed and every pool must be empty, audit clean and destroyable.
 *
 * Each slot draws from its own generator, seeded from the seed and the
 * slot, so a seed fixes every thread's call sequence (not their
 * interleaving). A failure prints the seed and, for every slot, the last
 * RING calls it made; a library abort (SIGABRT) prints them too.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "iop_test.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>

#define MAX_SLOTS 64
#define MAX_LIVE 48     /* objects a slot holds at most */
#define EXCHANGE 32     /* objects in flight between threads */
#define RING 48         /* calls remembered per slot */
#define BULK_MAX 12
/* A walk makes at least this many calls (ThreadSanitizer runs this code
 * some 20 times slower). */
#define MIN_CALLS (TH_TSAN ? 2000 : 4000)

/* ---- the pools ---------------------------------------------------------- */

enum kind { K_PLAIN, K_CHECKED, K_BOUND, K_BOUND_CHECKED, K_REFS_HOOK, K_REFS_BOUND, K_RESERVE, NPOOLS, K_HEAP = NPOOLS };

struct pool_def {
	const char *name;
	size_t obj_size, align;
	uint32_t cache, flags;
	uint64_t limit, reserve_low;
	uint32_t decay_ms;
	int hook;
};

static const struct pool_def defs[NPOOLS] = {
	[K_PLAIN] = { "m-plain", 64, 0, 8, 0, 0, 0, 0, 0 },
	[K_CHECKED] = { "m-checked", 200, 64, 4, IOP_F_CHECKED, 0, 0, 0, 0 },
	[K_BOUND] = { "m-bound", 128, 0, 0, 0, 40, 0, 0, 0 },
	[K_BOUND_CHECKED] = { "m-bound-chk", 96, 32, 2, IOP_F_CHECKED, 24, 0, 0, 0 },
	[K_REFS_HOOK] = { "m-refs-hook", 256, 0, 8, IOP_F_REFCOUNT, 0, 0, 0, 1 },
	[K_REFS_BOUND] = { "m-refs-bound", 512, 0, 4, IOP_F_REFCOUNT, 32, 0, 0, 0 },
	[K_RESERVE] = { "m-reserve", 4096, 4096, 4, 0, 0, 16, 20, 0 },
};

static iop_pool_t *pools[NPOOLS];

static int is_refs(int k)
{
	return k < NPOOLS && (defs[k].flags & IOP_F_REFCOUNT);
}

/* ---- the model ------------------------------------------------------------ */

struct obj {
	char *p;
	size_t len;      /* stamped bytes: obj_size, or the heap's usable size */
	uint64_t tag;    /* what the stamp is made of */
	int kind;        /* enum kind */
	unsigned refs;   /* refcounted pools: references held */
};

enum op {
	OP_ALLOC, OP_ALLOC_EX, OP_ALLOC_BULK, OP_BUF_ALLOC, OP_BUF_ALLOC_EX, OP_BUF_ALLOC_BULK, OP_FREE,
	OP_FREE_BULK, OP_BUF_GET, OP_BUF_PUT, OP_HEAP_ALLOC, OP_HEAP_ALIGNED, OP_HEAP_FREE, OP_GIVE, OP_TAKE,
	OP_THREAD_FLUSH, OP_POOL_FLUSH, OP_SHRINK, OP_RECLAIM, OP_EXIT, NOPS
};

static const char *const op_names[NOPS] = {
	"iop_alloc", "iop_alloc_ex", "iop_alloc_bulk", "iop_buf_alloc", "iop_buf_alloc_ex", "iop_buf_alloc_bulk",
	"iop_free", "iop_free_bulk", "iop_buf_get", "iop_buf_put", "iop_heap_alloc", "iop_heap_alloc_aligned",
	"iop_heap_free", "give (to another thread)", "take (from another thread)", "iop_thread_flush",
	"iop_pool_flush", "iop_pool_shrink", "iop_reclaim", "thread exit",
};

struct call {
	uint8_t op, kind;
	int16_t rc;
	uint32_t n;      /* a count, size or mode */
	uint64_t arg;    /* a timeout, an alignment, a target */
	const void *p;   /* the first object */
};

struct slot {
	pthread_t thread;
	int id;
	uint64_t rng;
	struct obj live[MAX_LIVE];
	int nlive;
	uint64_t serial;
	uint64_t calls;
	uint64_t lives;        /* threads that ran this slot */
	struct call ring[RING];
	_Atomic uint64_t ring_pos;
	int exit_now;
} __attribute__((aligned(64)));

static struct slot slots[MAX_SLOTS];
static int nslots = 4;
static uint64_t seed = 1;
static double seconds = 1;

static pthread_mutex_t xlock = PTHREAD_MUTEX_INITIALIZER;
static struct obj exchange[EXCHANGE];
static int nexchange;

/* Bounded pools: objects the model holds now, updated after an allocation
 * and before a free, so never above what the library counts. */
static _Atomic int64_t model_bound[NPOOLS];
/* The release hook: calls and keeps expected by the model, and seen. */
static _Atomic uint64_t hook_expect, hook_keep_expect, hook_seen, hook_kept_seen;
static __thread int tl_keep = -1; /* what the hook returns; -1: not expected */
/* TEST_MODEL_LOSE_A_FREE=1 in the environment: one iop_free() is left out
 * while the model drops the object, so the checks must fail (a check of the
 * checker: tests/CMakeLists.txt runs it). */
static int lose_one;
static _Atomic int lost;

/* The pause protocol of the quiescent points. */
static pthread_mutex_t plock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pcond = PTHREAD_COND_INITIALIZER;
static int pause_wanted, parked, generation;
static _Atomic int stop, failed;

/* ---- failures --------------------------------------------------------------- */

static void dump_rings(void)
{
	char buf[256];
	int n = snprintf(buf, sizeof buf, "test_model: reproduce with: test_model %d %g %llu\n", nslots, seconds,
			 (unsigned long long)seed);
	ssize_t w = write(2, buf, (size_t)n);
	for (int s = 0; s < nslots; s++) {
		struct slot *sl = &slots[s];
		uint64_t end = atomic_load(&sl->ring_pos);
		n = snprintf(buf, sizeof buf, "slot %d (life %llu, %llu calls, %d live): its last calls, oldest first:\n",
			     s, (unsigned long long)sl->lives, (unsigned long long)sl->calls, sl->nlive);
		w = write(2, buf, (size_t)n);
		for (uint64_t i = end > RING ? end - RING : 0; i < end; i++) {
			const struct call *c = &sl->ring[i % RING];
			n = snprintf(buf, sizeof buf, "  #%llu %s pool=%s n=%u arg=%llu p=%p -> %d\n",
				     (unsigned long long)i, c->op < NOPS ? op_names[c->op] : "?",
				     c->kind < NPOOLS ? defs[c->kind].name : "heap", c->n, (unsigned long long)c->arg, c->p,
				     c->rc);
			w = write(2, buf, (size_t)n);
		}
	}
	(void)w;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;
	char msg[512];
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fprintf(stderr, "test_model: FAIL (seed %llu): %s\n", (unsigned long long)seed, msg);
	if (atomic_exchange(&failed, 1) == 0)
		dump_rings();
	atomic_store(&stop, 1);
	/* The coordinator may be waiting for this thread to park. */
	pthread_mutex_lock(&plock);
	pthread_cond_broadcast(&pcond);
	pthread_mutex_unlock(&plock);
}

static void on_abort(int sig)
{
	static const char m[] = "test_model: the library aborted; the calls that led there:\n";
	ssize_t w = write(2, m, sizeof m - 1);
	(void)w;
	dump_rings();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* No hang: a walk that has not ended well after its time names the calls
 * each slot was making. */
static void on_alarm(int sig)
{
	(void)sig;
	static const char m[] = "test_model: still running long after its time: a call hangs? The last calls:\n";
	ssize_t w = write(2, m, sizeof m - 1);
	(void)w;
	dump_rings();
	_exit(1);
}

static void record(struct slot *sl, int op, int kind, uint32_t n, uint64_t arg, const void *p, int rc)
{
	uint64_t i = atomic_load_explicit(&sl->ring_pos, memory_order_relaxed);
	sl->ring[i % RING] = (struct call){ .op = (uint8_t)op, .kind = (uint8_t)kind, .rc = (int16_t)rc, .n = n,
					    .arg = arg, .p = p };
	atomic_store_explicit(&sl->ring_pos, i + 1, memory_order_release);
	sl->calls++;
}

/* ---- random numbers and stamps ------------------------------------------------ */

static uint64_t next(uint64_t *s)
{
	/* splitmix64 */
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned below(uint64_t *s, unsigned n)
{
	return (unsigned)(next(s) % n);
}

/* Stamps are 8-byte words (every length here is a multiple of 8: object
 * sizes, class sizes, pages), each a function of the object's tag and the
 * word's place, so a word moved within an object or between objects shows. */
static inline uint64_t stamp_word(uint64_t tag, size_t i)
{
	return (tag * 0x9e3779b97f4a7c15ull) ^ (i * 0xff51afd7ed558ccdull) ^ (uint64_t)i;
}

static void stamp(struct obj *o)
{
	uint64_t *w = (uint64_t *)(void *)o->p;
	for (size_t i = 0; i < o->len / 8; i++)
		w[i] = stamp_word(o->tag, i);
}

static int stamp_ok(const struct obj *o, const char *when)
{
	const uint64_t *w = (const uint64_t *)(const void *)o->p;
	for (size_t i = 0; i < o->len / 8; i++)
		if (w[i] != stamp_word(o->tag, i)) {
			fail("%s: object %p of %s (%zu bytes, tag %llu) was overwritten at offset %zu", when,
			     (void *)o->p, o->kind < NPOOLS ? defs[o->kind].name : "the heap", o->len,
			     (unsigned long long)o->tag, i * 8);
			return 0;
		}
	return 1;
}

/* ---- the release hook -------------------------------------------------------- */

static int release_hook(void *arg, iop_pool_t *pool, void *buf)
{
	(void)arg;
	(void)buf;
	atomic_fetch_add(&hook_seen, 1);
	if (pool != pools[K_REFS_HOOK] || tl_keep < 0)
		fail("release hook called for %p when the model expected no release", buf);
	int keep = tl_keep == 1;
	tl_keep = -1;
	if (keep)
		atomic_fetch_add(&hook_kept_seen, 1);
	return keep ? IOP_RELEASE_KEEP : IOP_RELEASE_RECYCLE;
}

/* ---- one slot's walk ---------------------------------------------------------- */

static void adopt(struct slot *sl, int kind, void *p, size_t len)
{
	struct obj *o = &sl->live[sl->nlive++];
	o->p = p;
	o->len = len;
	o->kind = kind;
	o->refs = is_refs(kind) ? 1 : 0;
	o->tag = ((uint64_t)sl->id << 40) | ++sl->serial;
	if (kind < NPOOLS && defs[kind].limit) {
		int64_t now = atomic_fetch_add(&model_bound[kind], 1) + 1;
		if ((uint64_t)now > defs[kind].limit)
			fail("%s: %lld objects in flight, above its limit %llu", defs[kind].name, (long long)now,
			     (unsigned long long)defs[kind].limit);
	}
	if (kind < NPOOLS) {
		if (iop_pool_of(p) != pools[kind])
			fail("%p from %s: iop_pool_of() says %s", p, defs[kind].name,
			     iop_pool_of(p) ? iop_pool_name(iop_pool_of(p)) : "no pool");
		if (defs[kind].align && ((uintptr_t)p & (defs[kind].align - 1)))
			fail("%p from %s is not aligned to %zu", p, defs[kind].name, defs[kind].align);
	}
	stamp(o);
}

/* The model's side of giving object i back: verify, then drop it. */
static struct obj release_obj(struct slot *sl, int i)
{
	struct obj o = sl->live[i];
	stamp_ok(&o, "before free");
	sl->live[i] = sl->live[--sl->nlive];
	if (o.kind < NPOOLS && defs[o.kind].limit)
		atomic_fetch_sub(&model_bound[o.kind], 1);
	return o;
}

static void give_back(struct slot *sl, int i)
{
	struct obj o = sl->live[i];
	if (o.kind == K_HEAP) {
		release_obj(sl, i);
		iop_heap_free(o.p);
		record(sl, OP_HEAP_FREE, K_HEAP, (uint32_t)o.len, 0, o.p, 0);
		return;
	}
	if (is_refs(o.kind)) {
		/* Every reference but the last, then the last. */
		stamp_ok(&o, "before put");
		while (sl->live[i].refs > 1) {
			iop_buf_put(pools[o.kind], o.p);
			sl->live[i].refs--;
			record(sl, OP_BUF_PUT, o.kind, sl->live[i].refs, 0, o.p, 0);
		}
		int keep = o.kind == K_REFS_HOOK && below(&sl->rng, 4) == 0;
		if (o.kind == K_REFS_HOOK) {
			atomic_fetch_add(&hook_expect, 1);
			if (keep)
				atomic_fetch_add(&hook_keep_expect, 1);
			tl_keep = keep;
		}
		if (keep) {
			/* Still ours, with one reference: the hook kept it. */
			iop_buf_put(pools[o.kind], o.p);
			record(sl, OP_BUF_PUT, o.kind, 0, 1, o.p, 0);
			if (tl_keep != -1)
				fail("the release hook was not called for the last put of %p", (void *)o.p);
			unsigned r = iop_buf_refcount(pools[o.kind], o.p);
			if (r != 1)
				fail("%p kept by the release hook has %u references, not 1", (void *)o.p, r);
			stamp_ok(&sl->live[i], "after the hook kept it");
			return;
		}
		release_obj(sl, i);
		iop_buf_put(pools[o.kind], o.p);
		record(sl, OP_BUF_PUT, o.kind, 0, 0, o.p, 0);
		if (o.kind == K_REFS_HOOK && tl_keep != -1)
			fail("the release hook was not called for the last put of %p", (void *)o.p);
		tl_keep = -1;
		return;
	}
	release_obj(sl, i);
	if (lose_one && atomic_exchange(&lost, 1) == 0) {
		/* TEST_MODEL_LOSE_A_FREE: the model forgets an object it never
		 * gave back, and the walk must notice. */
		record(sl, OP_FREE, o.kind, 0, 0, o.p, 0);
		return;
	}
	iop_free(pools[o.kind], o.p);
	record(sl, OP_FREE, o.kind, 1, 0, o.p, 0);
}

static void check_alloc_error(struct slot *sl, int kind, int how, int err)
{
	(void)sl;
	int ok;
	if (!defs[kind].limit)
		ok = (how == IOP_NOWAIT && err == ENOMEM);
	else if (how == IOP_WAIT)
		ok = err == ETIMEDOUT;
	else
		ok = err == ENOMEM;
	if (!ok)
		fail("%s: allocation (mode %d) failed with %d (%s)", defs[kind].name, how, err, strerror(err));
}

static void do_alloc(struct slot *sl, int op)
{
	int kind;
	if (op == OP_BUF_ALLOC || op == OP_BUF_ALLOC_EX || op == OP_BUF_ALLOC_BULK)
		kind = below(&sl->rng, 2) ? K_REFS_HOOK : K_REFS_BOUND;
	else
		kind = (int)below(&sl->rng, NPOOLS);
	iop_pool_t *pool = pools[kind];
	size_t len = defs[kind].obj_size;
	if (is_refs(kind) && (op == OP_ALLOC || op == OP_ALLOC_EX || op == OP_ALLOC_BULK))
		op = op == OP_ALLOC ? OP_BUF_ALLOC : op == OP_ALLOC_EX ? OP_BUF_ALLOC_EX : OP_BUF_ALLOC_BULK;
	if (op == OP_ALLOC || op == OP_BUF_ALLOC) {
		errno = 0;
		void *p = op == OP_ALLOC ? iop_alloc(pool) : iop_buf_alloc(pool);
		int err = errno;
		record(sl, op, kind, 1, 0, p, p ? 0 : -err);
		if (p)
			adopt(sl, kind, p, len);
		else
			check_alloc_error(sl, kind, 0, err);
	} else if (op == OP_ALLOC_EX || op == OP_BUF_ALLOC_EX) {
		static const unsigned modes[3] = { 0, IOP_NOWAIT, IOP_WAIT };
		unsigned how = modes[below(&sl->rng, 3)];
		int64_t timeout = how == IOP_WAIT ? (int64_t)below(&sl->rng, 2000000) : 0; /* up to 2 ms */
		void *p = (void *)1;
		int rc = op == OP_ALLOC_EX ? iop_alloc_ex(pool, &p, how, timeout) : iop_buf_alloc_ex(pool, &p, how, timeout);
		record(sl, op, kind, how, (uint64_t)timeout, p, rc);
		if (rc == 0 && p)
			adopt(sl, kind, p, len);
		else if (rc == 0 || p)
			fail("%s returned %d and %p", op_names[op], rc, p);
		else
			check_alloc_error(sl, kind, (int)how, -rc);
	} else {
		void *objs[BULK_MAX];
		unsigned n = 1 + below(&sl->rng, BULK_MAX);
		if (n > (unsigned)(MAX_LIVE - sl->nlive))
			n = (unsigned)(MAX_LIVE - sl->nlive);
		if (!n)
			return;
		errno = 0;
		unsigned got = op == OP_ALLOC_BULK ? iop_alloc_bulk(pool, objs, n) : iop_buf_alloc_bulk(pool, objs, n);
		int err = errno;
		record(sl, op, kind, n, got, got ? objs[0] : NULL, got < n ? -err : 0);
		for (unsigned i = 0; i < got; i++)
			adopt(sl, kind, objs[i], len);
		if (got > n)
			fail("%s returned %u of %u", op_names[op], got, n);
		else if (got < n)
			check_alloc_error(sl, kind, 0, err);
	}
}

static void do_free_bulk(struct slot *sl)
{
	/* The plain objects of one pool, up to BULK_MAX, with a NULL among them. */
	int kind = (int)below(&sl->rng, NPOOLS);
	if (is_refs(kind))
		return;
	void *objs[BULK_MAX + 1];
	unsigned n = 0;
	for (int i = sl->nlive - 1; i >= 0 && n < BULK_MAX; i--)
		if (sl->live[i].kind == kind) {
			objs[n++] = release_obj(sl, i).p;
			if (n == 2)
				objs[n++] = NULL;
		}
	if (!n)
		return;
	iop_free_bulk(pools[kind], objs, n);
	record(sl, OP_FREE_BULK, kind, n, 0, objs[0], 0);
}

static void do_heap_alloc(struct slot *sl, int aligned)
{
	size_t size;
	unsigned r = below(&sl->rng, 1000);
	if (r < 700)
		size = below(&sl->rng, 256);
	else if (r < 950)
		size = 256 + below(&sl->rng, 16384);
	else if (r < 998)
		size = 16384 + below(&sl->rng, (unsigned)IOP_HEAP_CLASS_MAX);
	else
		size = IOP_HEAP_CLASS_MAX + below(&sl->rng, 3 * (unsigned)MiB); /* mapped from the OS */
	size_t align = aligned ? (size_t)1 << below(&sl->rng, 14) : 16;
	errno = 0;
	char *p = aligned ? iop_heap_alloc_aligned(size, align) : iop_heap_alloc(size);
	record(sl, aligned ? OP_HEAP_ALIGNED : OP_HEAP_ALLOC, K_HEAP, (uint32_t)size, align, p, p ? 0 : -errno);
	if (!p) {
		fail("%s(%zu, %zu) failed: %s", aligned ? "iop_heap_alloc_aligned" : "iop_heap_alloc", size, align,
		     strerror(errno));
		return;
	}
	size_t usable = iop_heap_size(p);
	size_t want = aligned ? 0 : iop_heap_class_size(size);
	if (usable < (size ? size : 1) || (!aligned && usable != want))
		fail("heap block %p of %zu bytes: iop_heap_size %zu, iop_heap_class_size %zu", (void *)p, size, usable,
		     want);
	size_t need = aligned ? align : (usable % 16 == 8 ? 8 : 16);
	if ((uintptr_t)p % need)
		fail("heap block %p of %zu bytes is not aligned to %zu", (void *)p, size, need);
	if (usable % 8)
		fail("heap block %p: usable size %zu is not a multiple of 8", (void *)p, usable);
	adopt(sl, K_HEAP, p, usable);
}

static void do_buf_get(struct slot *sl)
{
	for (int tries = 0; tries < 4 && sl->nlive; tries++) {
		struct obj *o = &sl->live[below(&sl->rng, (unsigned)sl->nlive)];
		if (!is_refs(o->kind) || o->refs >= 8)
			continue;
		/* Any address inside the buffer will do. */
		char *inside = o->p + below(&sl->rng, (unsigned)o->len);
		iop_buf_get(pools[o->kind], inside);
		o->refs++;
		record(sl, OP_BUF_GET, o->kind, o->refs, 0, inside, 0);
		if (iop_buf_base(pools[o->kind], inside) != o->p)
			fail("iop_buf_base(%p) is %p, not %p", (void *)inside, iop_buf_base(pools[o->kind], inside),
			     (void *)o->p);
		return;
	}
}

static void do_buf_put(struct slot *sl)
{
	for (int tries = 0; tries < 4 && sl->nlive; tries++) {
		struct obj *o = &sl->live[below(&sl->rng, (unsigned)sl->nlive)];
		if (!is_refs(o->kind) || o->refs < 2)
			continue;
		iop_buf_put(pools[o->kind], o->p + o->len - 1);
		o->refs--;
		record(sl, OP_BUF_PUT, o->kind, o->refs, 0, o->p, 0);
		return;
	}
}

static void do_give(struct slot *sl)
{
	if (!sl->nlive)
		return;
	int i = (int)below(&sl->rng, (unsigned)sl->nlive);
	pthread_mutex_lock(&xlock);
	if (nexchange < EXCHANGE) {
		exchange[nexchange++] = sl->live[i];
		record(sl, OP_GIVE, sl->live[i].kind, 0, 0, sl->live[i].p, 0);
		sl->live[i] = sl->live[--sl->nlive];
	}
	pthread_mutex_unlock(&xlock);
}

static void do_take(struct slot *sl)
{
	pthread_mutex_lock(&xlock);
	if (nexchange && sl->nlive < MAX_LIVE) {
		int i = (int)below(&sl->rng, (unsigned)nexchange);
		sl->live[sl->nlive++] = exchange[i];
		exchange[i] = exchange[--nexchange];
		record(sl, OP_TAKE, sl->live[sl->nlive - 1].kind, 0, 0, sl->live[sl->nlive - 1].p, 0);
	}
	pthread_mutex_unlock(&xlock);
}

/* Park until the coordinator has checked the model; 1 when the walk ends.
 * A walker parked in one generation stays until the coordinator starts
 * the next (resume_all()), which also zeroes the count: one slow to wake
 * never counts as parked for the next quiescent point. */
static int park(void)
{
	pthread_mutex_lock(&plock);
	int gen = generation;
	parked++;
	pthread_cond_broadcast(&pcond);
	while (gen == generation && !atomic_load(&stop))
		pthread_cond_wait(&pcond, &plock);
	pthread_mutex_unlock(&plock);
	return atomic_load(&stop);
}

static void step(struct slot *sl)
{
	/* Weights: allocations and frees dominate; the maintenance calls are
	 * rare enough that caches fill between them. */
	static const uint8_t weights[NOPS] = {
		[OP_ALLOC] = 14, [OP_ALLOC_EX] = 8, [OP_ALLOC_BULK] = 4, [OP_BUF_ALLOC] = 5, [OP_BUF_ALLOC_EX] = 3,
		[OP_BUF_ALLOC_BULK] = 2, [OP_FREE] = 30, [OP_FREE_BULK] = 5, [OP_BUF_GET] = 5, [OP_BUF_PUT] = 5,
		[OP_HEAP_ALLOC] = 10, [OP_HEAP_ALIGNED] = 3, [OP_GIVE] = 4, [OP_TAKE] = 4, [OP_THREAD_FLUSH] = 1,
		[OP_POOL_FLUSH] = 1, [OP_SHRINK] = 1, [OP_RECLAIM] = 1, [OP_EXIT] = 1,
	};
	unsigned total = 0;
	for (int i = 0; i < NOPS; i++)
		total += weights[i];
	unsigned r = below(&sl->rng, total);
	int op = 0;
	while (r >= weights[op])
		r -= weights[op++];
	if (sl->nlive >= MAX_LIVE - 1 && op != OP_GIVE)
		op = OP_FREE;
	switch (op) {
	case OP_ALLOC:
	case OP_ALLOC_EX:
	case OP_ALLOC_BULK:
	case OP_BUF_ALLOC:
	case OP_BUF_ALLOC_EX:
	case OP_BUF_ALLOC_BULK:
		do_alloc(sl, op);
		break;
	case OP_FREE:
	case OP_HEAP_FREE:
		if (sl->nlive)
			give_back(sl, (int)below(&sl->rng, (unsigned)sl->nlive));
		break;
	case OP_FREE_BULK:
		do_free_bulk(sl);
		break;
	case OP_BUF_GET:
		do_buf_get(sl);
		break;
	case OP_BUF_PUT:
		do_buf_put(sl);
		break;
	case OP_HEAP_ALLOC:
	case OP_HEAP_ALIGNED:
		if (sl->nlive < MAX_LIVE)
			do_heap_alloc(sl, op == OP_HEAP_ALIGNED);
		break;
	case OP_GIVE:
		do_give(sl);
		break;
	case OP_TAKE:
		do_take(sl);
		break;
	case OP_THREAD_FLUSH:
		iop_thread_flush();
		record(sl, op, K_HEAP, 0, 0, NULL, 0);
		break;
	case OP_POOL_FLUSH: {
		int k = (int)below(&sl->rng, NPOOLS);
		int64_t moved = iop_pool_flush(pools[k]);
		record(sl, op, k, 0, 0, NULL, moved < 0 ? (int)moved : 0);
		if (moved < 0)
			fail("iop_pool_flush(%s) returned %lld", defs[k].name, (long long)moved);
		break;
	}
	case OP_SHRINK: {
		int k = (int)below(&sl->rng, NPOOLS);
		uint64_t target = below(&sl->rng, 2) ? 0 : (uint64_t)below(&sl->rng, 8) << 21;
		int64_t got = iop_pool_shrink(pools[k], target);
		record(sl, op, k, 0, target, NULL, got < 0 ? (int)got : 0);
		if (got < 0)
			fail("iop_pool_shrink(%s, %llu) returned %lld", defs[k].name, (unsigned long long)target,
			     (long long)got);
		break;
	}
	case OP_RECLAIM: {
		int64_t got = iop_reclaim();
		record(sl, op, K_HEAP, 0, 0, NULL, got < 0 ? (int)got : 0);
		if (got < 0)
			fail("iop_reclaim() returned %lld", (long long)got);
		break;
	}
	case OP_EXIT:
		record(sl, op, K_HEAP, 0, 0, NULL, 0);
		sl->exit_now = 1;
		break;
	}
}

static void *walker(void *arg)
{
	struct slot *sl = arg;
	while (!atomic_load(&stop)) {
		if (__atomic_load_n(&pause_wanted, __ATOMIC_RELAXED) && park())
			break;
		step(sl);
		if (sl->exit_now) {
			sl->exit_now = 0;
			return (void *)1; /* a new thread takes the slot over */
		}
	}
	return NULL;
}

/* Runs a slot's lives one after another: each life is a thread. */
static void *slot_runner(void *arg)
{
	struct slot *sl = arg;
	for (;;) {
		pthread_t t;
		void *again = NULL;
		sl->lives++;
		if (pthread_create(&t, NULL, walker, sl) != 0) {
			fail("pthread_create failed");
			return NULL;
		}
		pthread_join(t, &again);
		if (!again)
			return NULL;
	}
}

/* ---- the quiescent checks --------------------------------------------------- */

static int cmp_obj(const void *a, const void *b)
{
	const struct obj *x = *(const struct obj *const *)a, *y = *(const struct obj *const *)b;
	return x->p < y->p ? -1 : x->p > y->p;
}

static void check_model(int final)
{
	static struct obj *all[MAX_SLOTS * MAX_LIVE + EXCHANGE];
	int n = 0;
	for (int s = 0; s < nslots; s++)
		for (int i = 0; i < slots[s].nlive; i++)
			all[n++] = &slots[s].live[i];
	for (int i = 0; i < nexchange; i++)
		all[n++] = &exchange[i];

	/* Stamps, references, and no two objects overlap. */
	uint64_t count[NPOOLS] = { 0 };
	for (int i = 0; i < n; i++) {
		const struct obj *o = all[i];
		stamp_ok(o, "at a quiescent point");
		if (o->kind < NPOOLS)
			count[o->kind]++;
		if (is_refs(o->kind)) {
			unsigned r = iop_buf_refcount(pools[o->kind], o->p);
			if (r != o->refs)
				fail("buffer %p of %s: iop_buf_refcount %u, the model %u", (void *)o->p,
				     defs[o->kind].name, r, o->refs);
		}
	}
	qsort(all, (size_t)n, sizeof all[0], cmp_obj);
	for (int i = 1; i < n; i++)
		if (all[i - 1]->p + all[i - 1]->len > all[i]->p)
			fail("live objects overlap: %p (%zu bytes) and %p", (void *)all[i - 1]->p, all[i - 1]->len,
			     (void *)all[i]->p);

	/* Per pool: what the library counts against the model. */
	for (int k = 0; k < NPOOLS; k++) {
		struct iop_pool_stats st = { .struct_size = sizeof st };
		if (iop_pool_stats(pools[k], &st) != 0) {
			fail("iop_pool_stats(%s) failed", defs[k].name);
			continue;
		}
		if (st.in_flight != count[k])
			fail("%s: iop_pool_stats says %llu in flight, the model holds %llu", defs[k].name,
			     (unsigned long long)st.in_flight, (unsigned long long)count[k]);
		if (st.in_flight + st.cached + st.depot + st.slab_free != st.total ||
		    st.total != st.chunks * st.objs_per_chunk)
			fail("%s: conservation: %llu + %llu + %llu + %llu != %llu (%llu chunks)", defs[k].name,
			     (unsigned long long)st.in_flight, (unsigned long long)st.cached,
			     (unsigned long long)st.depot, (unsigned long long)st.slab_free,
			     (unsigned long long)st.total, (unsigned long long)st.chunks);
		if (st.limit != defs[k].limit)
			fail("%s: limit %llu, created with %llu", defs[k].name, (unsigned long long)st.limit,
			     (unsigned long long)defs[k].limit);
		if (defs[k].limit && (st.high_water > defs[k].limit || st.high_water < count[k]))
			fail("%s: high water %llu, limit %llu, %llu in flight", defs[k].name,
			     (unsigned long long)st.high_water, (unsigned long long)defs[k].limit,
			     (unsigned long long)count[k]);
		if (defs[k].limit && (uint64_t)atomic_load(&model_bound[k]) != count[k])
			fail("%s: the model's bounded count %lld is not its %llu objects", defs[k].name,
			     (long long)atomic_load(&model_bound[k]), (unsigned long long)count[k]);
		if (k == K_REFS_HOOK &&
		    (st.release_hook != atomic_load(&hook_expect) || st.hook_kept != atomic_load(&hook_keep_expect) ||
		     atomic_load(&hook_seen) != st.release_hook || atomic_load(&hook_kept_seen) != st.hook_kept))
			fail("%s: release_hook %llu (hook saw %llu, model %llu), hook_kept %llu (saw %llu, model %llu)",
			     defs[k].name, (unsigned long long)st.release_hook, (unsigned long long)atomic_load(&hook_seen),
			     (unsigned long long)atomic_load(&hook_expect), (unsigned long long)st.hook_kept,
			     (unsigned long long)atomic_load(&hook_kept_seen),
			     (unsigned long long)atomic_load(&hook_keep_expect));
		if (iop_pool_audit(pools[k]) != 0)
			fail("%s: iop_pool_audit failed (message above)", defs[k].name);
	}
	/* The heap's class pools. */
	for (unsigned c = 0; c < IOP_HEAP_CLASSES; c++) {
		iop_pool_t *cp = __atomic_load_n(&iop__heap_class[c], __ATOMIC_ACQUIRE);
		if (!cp)
			continue;
		struct iop_pool_stats st = { .struct_size = sizeof st };
		iop_pool_stats(cp, &st);
		if (iop_pool_audit(cp) != 0)
			fail("%s: iop_pool_audit failed (message above)", iop_pool_name(cp));
		if (final && st.in_flight != 0)
			fail("%s: %llu blocks in flight after every block was freed", iop_pool_name(cp),
			     (unsigned long long)st.in_flight);
	}
}

/* The heap classes' in-flight counts against the model, in one pass. */
static void check_heap_counts(void)
{
	for (unsigned c = 0; c < IOP_HEAP_CLASSES; c++) {
		iop_pool_t *cp = __atomic_load_n(&iop__heap_class[c], __ATOMIC_ACQUIRE);
		if (!cp)
			continue;
		uint64_t held = 0;
		for (int s = 0; s < nslots; s++)
			for (int i = 0; i < slots[s].nlive; i++)
				held += slots[s].live[i].kind == K_HEAP && iop_pool_of(slots[s].live[i].p) == cp;
		for (int i = 0; i < nexchange; i++)
			held += exchange[i].kind == K_HEAP && iop_pool_of(exchange[i].p) == cp;
		struct iop_pool_stats st = { .struct_size = sizeof st };
		iop_pool_stats(cp, &st);
		if (st.in_flight != held)
			fail("%s: iop_pool_stats says %llu in flight, the model holds %llu", iop_pool_name(cp),
			     (unsigned long long)st.in_flight, (unsigned long long)held);
	}
}

static void pause_all(void)
{
	pthread_mutex_lock(&plock);
	__atomic_store_n(&pause_wanted, 1, __ATOMIC_RELAXED);
	while (parked < nslots && !atomic_load(&stop)) {
		struct timespec t;
		clock_gettime(CLOCK_REALTIME, &t);
		t.tv_nsec += 50000000;
		if (t.tv_nsec >= 1000000000) {
			t.tv_sec++;
			t.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&pcond, &plock, &t);
	}
	pthread_mutex_unlock(&plock);
}

static void resume_all(void)
{
	pthread_mutex_lock(&plock);
	__atomic_store_n(&pause_wanted, 0, __ATOMIC_RELAXED);
	parked = 0;
	generation++;
	pthread_cond_broadcast(&pcond);
	pthread_mutex_unlock(&plock);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		nslots = atoi(argv[1]);
	if (argc > 2)
		seconds = atof(argv[2]);
	if (argc > 3)
		seed = strtoull(argv[3], NULL, 0);
	if (nslots < 1 || nslots > MAX_SLOTS || !(seconds > 0)) {
		fprintf(stderr, "usage: test_model [threads 1..%d] [seconds] [seed]\n", MAX_SLOTS);
		return 2;
	}
	lose_one = getenv("TEST_MODEL_LOSE_A_FREE") != NULL;
	signal(SIGABRT, on_abort);
	signal(SIGSEGV, on_abort);
	signal(SIGALRM, on_alarm);
	alarm((unsigned)seconds + 60);
	for (int k = 0; k < NPOOLS; k++) {
		struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
		pp.name = defs[k].name;
		pp.obj_size = defs[k].obj_size;
		pp.align = defs[k].align;
		pp.cache_size = defs[k].cache;
		pp.flags = defs[k].flags;
		pp.limit = defs[k].limit;
		pp.reserve_low = defs[k].reserve_low;
		pp.decay_ms = defs[k].decay_ms;
		if (defs[k].hook)
			pp.release = release_hook;
		pools[k] = iop_pool_create(&pp);
		if (!pools[k]) {
			fprintf(stderr, "test_model: iop_pool_create(%s): %s\n", defs[k].name, strerror(errno));
			return 1;
		}
	}
	printf("test_model: %d threads, %g s, seed %llu, %s caches\n", nslots, seconds, (unsigned long long)seed,
	       iop_cache_mode() == IOP_CACHE_MODE_CPU ? "per-CPU" : "per-thread");
	fflush(stdout);

	uint64_t pick = seed ^ 0x5eedull;
	pthread_t runners[MAX_SLOTS];
	for (int s = 0; s < nslots; s++) {
		slots[s].id = s;
		slots[s].rng = seed * 0x100000001b3ull + (uint64_t)s * 0x9e3779b97f4a7c15ull;
		if (pthread_create(&runners[s], NULL, slot_runner, &slots[s]) != 0) {
			fprintf(stderr, "test_model: pthread_create failed\n");
			return 1;
		}
	}
	/* At least MIN_CALLS calls, however slow the machine (sanitizers, a
	 * loaded CI runner), within 30 s more than asked. */
	double end = now_s() + seconds;
	unsigned checks = 0;
	uint64_t made = 0;
	double pause_s = 0, check_s = 0;
	while ((now_s() < end || made < MIN_CALLS) && now_s() < end + 30 && !atomic_load(&stop)) {
		struct timespec d = { 0, (long)(5 + below(&pick, 60)) * 1000000L };
		nanosleep(&d, NULL);
		double t0 = now_s();
		pause_all();
		double t1 = now_s();
		if (!atomic_load(&stop)) {
			check_model(0);
			check_heap_counts();
			checks++;
			made = 0;
			for (int s = 0; s < nslots; s++)
				made += slots[s].calls;
		}
		pause_s += t1 - t0;
		check_s += now_s() - t1;
		resume_all();
	}
	atomic_store(&stop, 1);
	resume_all();
	for (int s = 0; s < nslots; s++)
		pthread_join(runners[s], NULL);
	if (atomic_load(&failed))
		return 1;

	/* The end: the model gives everything back; nothing may be left. */
	check_model(0);
	check_heap_counts();
	uint64_t calls = 0;
	for (int s = 0; s < nslots; s++) {
		struct slot *sl = &slots[s];
		calls += sl->calls;
		while (sl->nlive) /* the hook keeps a buffer 1 time in 4: again */
			give_back(sl, 0);
	}
	pthread_mutex_lock(&xlock);
	while (nexchange) {
		slots[0].live[slots[0].nlive++] = exchange[--nexchange];
		while (slots[0].nlive)
			give_back(&slots[0], 0);
	}
	pthread_mutex_unlock(&xlock);
	if (atomic_load(&failed))
		return 1;
	check_model(1);
	check_heap_counts();
	for (int k = 0; k < NPOOLS; k++) {
		int rc = iop_pool_destroy(pools[k]);
		if (rc != 0)
			fail("iop_pool_destroy(%s) returned %d", defs[k].name, rc);
	}
	if (atomic_load(&failed))
		return 1;
	uint64_t lives = 0;
	for (int s = 0; s < nslots; s++)
		lives += slots[s].lives;
	printf("test_model: passed: %llu calls, %u quiescent checks (%.2f s to park, %.2f s to check), %llu threads, "
	       "release hook %llu calls (%llu kept)\n",
	       (unsigned long long)calls, checks, pause_s, check_s, (unsigned long long)lives,
	       (unsigned long long)atomic_load(&hook_seen), (unsigned long long)atomic_load(&hook_kept_seen));
	return 0;
}
