/* SPDX-License-Identifier: MIT */
/*
 * Per-call-site profiling of the heap, after the kernel's memory allocation
 * profiling (/proc/allocinfo): every profiled call site has a static record
 * (struct iop__site, made by the IOP_PROFILE macros in iopool.h), and live
 * bytes and live allocations are counted per site.
 *
 * The counters are per thread: a thread that profiles gets a table of
 * IOP_PROFILE_SITES slots indexed by the site's id, and only it writes its
 * table, so counting is two loads and two stores with no atomic
 * read-modify-write. A block freed on another thread than the one that
 * allocated it makes the freeing thread's slot go negative; the sum over
 * threads is exact. A thread's table is folded into its sites' records
 * when it exits. Readers (iop_profile_dump) sum under the lock that keeps
 * the list of tables, reading other threads' slots racily (relaxed).
 *
 *   site record (static, in the caller)       thread T's table (mapped)
 *   +-------------------------+               +-----------------------+
 *   | file line func  id = 3 -+------------>  | [3] bytes  calls      |
 *   | bytes calls (folded)    |               +-----------------------+
 *   +-------------------------+
 *
 * Which site a live block came from is kept by the heap (heap.c): per
 * object of a class chunk, its site's id in the chunk's array of ids (which
 * iop__map_sites names per granule), in the record of a large block.
 *
 * The common case runs inline in the caller (inline.h): an IOP_PROFILE
 * allocation of a class block stores its site's id and adds to
 * iop__prof_table[id]; every heap free reads the id back and subtracts.
 * What is here is the rest: a site's first use (its id), a thread's first
 * profiled call (its table), sites past the table, exiting threads, the
 * dump and fork().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "os/os.h"

#define counter iop__prof_counter

_Static_assert(IOP_PROFILE_SITES == IOP__PROFILE_SITES, "the inline code indexes the same table");

/* Site ids: 1 .. SITE_IDS - 1, each naming one site (the heap's site
 * arrays keep ids, 4 bytes an object, not pointers); those below
 * IOP_PROFILE_SITES also index the per-thread tables. Past SITE_IDS sites
 * (a million call sites) a site gets ID_NONE: its large blocks count on
 * its record, its class blocks go uncounted. */
#define SITE_IDS (1u << 20)
#define ID_NONE UINT32_MAX

struct prof_thread {
	struct prof_thread *next;
	struct counter *table; /* IOP_PROFILE_SITES slots */
	bool exited;           /* folded at exit: count on the records */
	struct iop_exit_hook exit; /* the registry's (registry.c) */
};
static __thread struct prof_thread me __attribute__((tls_model("initial-exec")));
/* me.table, where the inline counting (inline.h) finds it in one load. */
__thread struct counter *iop__prof_table __attribute__((tls_model("initial-exec")));

static pthread_mutex_t prof_lock = PTHREAD_MUTEX_INITIALIZER;
static struct iop__site *sites;                  /* every registered site */
/* The site of each id (SITE_IDS entries, reserved at the first site):
 * written under prof_lock before the id is published, read by the frees
 * that find an id in a site array. */
static struct iop__site **by_id;
static uint32_t nsites;
static struct prof_thread *threads;              /* threads with a table */

/* A site's first use: its id (from 1) indexes the per-thread tables. */
static uint32_t site_register(struct iop__site *site)
{
	pthread_mutex_lock(&prof_lock);
	uint32_t id = ALOAD(&site->id);
	if (id == 0) {
		site->next = sites;
		sites = site;
		if (!by_id)
			by_id = _iop_os_reserve(SITE_IDS * sizeof(*by_id));
		if (by_id && nsites + 1 < SITE_IDS) {
			id = ++nsites;
			__atomic_store_n(&by_id[id], site, __ATOMIC_RELEASE);
		} else {
			id = ID_NONE;
		}
		ASTORE(&site->id, id);
	}
	pthread_mutex_unlock(&prof_lock);
	return id;
}

static void fold(struct iop__site *site, int64_t bytes, int64_t calls)
{
	__atomic_fetch_add(&site->bytes, bytes, __ATOMIC_RELAXED);
	__atomic_fetch_add(&site->calls, calls, __ATOMIC_RELAXED);
}

/* Thread exit: fold the table into the records, then count on them. */
static void thread_exit(struct iop_exit_hook *hook)
{
	struct prof_thread *t = (struct prof_thread *)(void *)((char *)hook - offsetof(struct prof_thread, exit));
	pthread_mutex_lock(&prof_lock);
	for (uint32_t id = 1; id <= nsites && id < IOP_PROFILE_SITES; id++) {
		struct counter *c = &t->table[id];
		if (c->bytes || c->calls)
			fold(by_id[id], c->bytes, c->calls);
	}
	struct prof_thread **pp = &threads;
	while (*pp != t)
		pp = &(*pp)->next;
	*pp = t->next;
	struct counter *table = t->table;
	t->table = NULL;
	iop__prof_table = NULL;
	t->exited = true;
	pthread_mutex_unlock(&prof_lock);
	_iop_os_unmap(table, IOP_PROFILE_SITES * sizeof(struct counter));
}

/* The calling thread's table, made at its first profiled call; NULL when it
 * is exiting or no memory could be had (then it counts on the records). */
static IOP_COLD struct counter *table_setup(void)
{
	if (me.exited)
		return NULL;
	void *m = _iop_os_reserve(IOP_PROFILE_SITES * sizeof(struct counter));
	if (!m)
		return NULL;
	/* The registry's exit hook folds the table; a thread past it (or
	 * without memory for its record) counts on the records. */
	me.exit.fn = thread_exit;
	if (!_iop_on_thread_exit(&me.exit)) {
		_iop_os_unmap(m, IOP_PROFILE_SITES * sizeof(struct counter));
		me.exited = true;
		return NULL;
	}
	pthread_mutex_lock(&prof_lock);
	me.table = m;
	me.next = threads;
	threads = &me;
	iop__prof_table = m;
	pthread_mutex_unlock(&prof_lock);
	return m;
}

uint32_t _iop_profile_site_id(struct iop__site *site)
{
	uint32_t id = ALOAD(&site->id);
	if (id == 0)
		id = site_register(site);
	return id == ID_NONE ? 0 : id;
}

struct iop__site *_iop_profile_site_of(uint32_t id)
{
	/* Acquire: the record's fields were written before by_id[id]. */
	return __atomic_load_n(&by_id[id], __ATOMIC_ACQUIRE);
}

void _iop_profile_count_slow(struct iop__site *site, int64_t bytes)
{
	int64_t calls = bytes < 0 ? -1 : 1;
	uint32_t id = ALOAD(&site->id);
	if (id == 0)
		id = site_register(site);
	struct counter *t = me.table;
	if ((!t && !(t = table_setup())) || id >= IOP_PROFILE_SITES) {
		fold(site, bytes, calls);
		return;
	}
	_iop_prof_add(&t[id].bytes, bytes);
	_iop_prof_add(&t[id].calls, calls);
}

/* ---- fork() (fork.c) ----------------------------------------------------------- */

/* prof_lock nests nothing: the last lock taken. The child folds the
 * tables of the threads that did not come along into their sites, as
 * their exit would have. */
void _iop_profile_atfork(int phase)
{
	if (phase == IOP_FORK_PREPARE) {
		pthread_mutex_lock(&prof_lock);
		return;
	}
	if (phase == IOP_FORK_PARENT) {
		pthread_mutex_unlock(&prof_lock);
		return;
	}
	pthread_mutex_init(&prof_lock, NULL);
	struct prof_thread *t = threads, *next;
	threads = NULL;
	for (; t; t = next) {
		next = t->next;
		if (t == &me) {
			t->next = threads;
			threads = t;
			continue;
		}
		for (uint32_t id = 1; id <= nsites && id < IOP_PROFILE_SITES; id++) {
			struct counter *c = &t->table[id];
			if (c->bytes || c->calls)
				fold(by_id[id], c->bytes, c->calls);
		}
		_iop_os_unmap(t->table, IOP_PROFILE_SITES * sizeof(struct counter));
	}
}

/* ---- the dump ------------------------------------------------------------------ */

struct row {
	const struct iop__site *site;
	int64_t bytes, calls;
};

static int row_cmp(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	if (x->calls != y->calls)
		return x->calls > y->calls ? -1 : 1;
	int c = strcmp(x->site->file, y->site->file);
	if (c)
		return c;
	return x->site->line < y->site->line ? -1 : x->site->line > y->site->line;
}

int iop_profile_dump(FILE *f)
{
	if (!f)
		return -EINVAL;
	pthread_mutex_lock(&prof_lock);
	size_t n = 0;
	for (struct iop__site *s = sites; s; s = s->next)
		n++;
	struct row *rows = calloc(n ? n : 1, sizeof(*rows));
	if (!rows) {
		pthread_mutex_unlock(&prof_lock);
		return -ENOMEM;
	}
	size_t i = 0;
	for (struct iop__site *s = sites; s; s = s->next, i++) {
		struct row *r = &rows[i];
		r->site = s;
		r->bytes = __atomic_load_n(&s->bytes, __ATOMIC_RELAXED);
		r->calls = __atomic_load_n(&s->calls, __ATOMIC_RELAXED);
		uint32_t id = ALOAD(&s->id);
		if (id >= IOP_PROFILE_SITES)
			continue; /* counted on the record only */
		for (struct prof_thread *t = threads; t; t = t->next) {
			r->bytes += __atomic_load_n(&t->table[id].bytes, __ATOMIC_RELAXED);
			r->calls += __atomic_load_n(&t->table[id].calls, __ATOMIC_RELAXED);
		}
	}
	pthread_mutex_unlock(&prof_lock);
	qsort(rows, n, sizeof(*rows), row_cmp);
	int bad = fprintf(f, "# iopool allocinfo: <live bytes> <live allocations> <file>:<line> func:<function>\n") < 0;
	for (i = 0; i < n && !bad; i++)
		bad = fprintf(f, "%12lld %8lld %s:%u func:%s\n", (long long)rows[i].bytes, (long long)rows[i].calls,
			      rows[i].site->file, rows[i].site->line, rows[i].site->func) < 0;
	free(rows);
	if (fflush(f) != 0)
		bad = 1;
	return bad ? -EIO : 0;
}
