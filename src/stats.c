/* SPDX-License-Identifier: MIT */
/*
 * Statistics, their text and JSON forms, and the conservation audit.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "os/os.h"
#include "iopool/shm.h"

/* ---- statistics --------------------------------------------------------- */

struct tc_sum {
	uint64_t cached, alloc_fast;
};

static void sum_tcache(struct iop_pool *pool, struct iop_tcache *tc, void *arg)
{
	(void)pool;
	struct tc_sum *s = arg;
	s->cached += _iop_tcache_objs(tc);
	s->alloc_fast += ALOAD(&tc->alloc_fast);
}

void _iop_pool_stats_locked(struct iop_pool *pool, struct iop_pool_stats *out, struct iop_resident *res)
{
	struct iop_pool_stats s = { .struct_size = sizeof(s) };
	struct tc_sum t = { 0 };

	_iop_for_each_tcache(pool, sum_tcache, &t);
	_iop_cpu_sum(pool, &t.cached, &t.alloc_fast);
	pthread_mutex_lock(&pool->lock);
	s.chunks = pool->slab.nchunks;
	s.depot = pool->depot.objs;
	s.slab_free = pool->slab.free;
	for (unsigned d = 0; d < _iop_ndomains; d++)
		s.reserve_short += pool->reserve_low && pool->depot.dom[d].objs < pool->reserve_low;
	s.page_kind = pool->slab.page_kind;
	s.bytes_released = pool->slab.released << pool->slab.page_shift;
	s.page_release = pool->slab.page_release;
	s.page_reuse = pool->slab.page_reuse;
	/* Only the chunks' addresses here: their residency is measured
	 * without the registry lock (and without this one). */
	res->chunk_size = pool->chunk_size;
	res->n = 0;
	res->bases = s.chunks ? malloc(s.chunks * sizeof(char *)) : NULL;
	for (struct iop_chunk *c = pool->slab.chunks; res->bases && c; c = c->next)
		res->bases[res->n++] = c->base;
	pthread_mutex_unlock(&pool->lock);

	s.reserve_low = pool->reserve_low;
	s.reserve_high = pool->reserve_high;
	s.wake_low = LOAD(&pool->wake_low);
	s.wake_empty = LOAD(&pool->wake_empty);
	s.wake_fail = LOAD(&pool->wake_fail);
	s.refill_passes = LOAD(&pool->refill_passes);
	s.refill_objs = LOAD(&pool->refill_objs);
	s.refill_fail = LOAD(&pool->refill_fail);
	s.decay_passes = LOAD(&pool->decay_passes);
	s.decay_objs = LOAD(&pool->decay_objs);
	s.trims = LOAD(&pool->trims);
	s.chunks_hugetlb = LOAD(&pool->chunks_hugetlb);
	s.chunks_thp = LOAD(&pool->chunks_thp);
	s.domains = _iop_ndomains;
	s.sent_home = LOAD(&pool->sent_home);
	s.cache_mode = pool->cpu_mode ? IOP_CACHE_MODE_CPU : IOP_CACHE_MODE_THREAD;
	s.cpu_drains = LOAD(&pool->cpu_drains);
	s.cpu_cache_size = pool->cpu_mode ? pool->cpu_cap : 0;

	s.cache_size = pool->mag_cap;
	s.obj_size = pool->obj_size;
	s.obj_stride = pool->hot.stride;
	s.chunk_size = pool->chunk_size;
	s.objs_per_chunk = pool->hot.objs_per_chunk;
	s.total = s.chunks * s.objs_per_chunk;
	s.cached = t.cached;
	/* Threads may move objects while we read: never report a negative. */
	uint64_t elsewhere = s.cached + s.depot + s.slab_free;
	s.in_flight = s.total > elsewhere ? s.total - elsewhere : 0;
	s.bytes_mapped = s.chunks * s.chunk_size;
	s.alloc_fast = LOAD(&pool->alloc_fast) + t.alloc_fast;
	s.alloc_slow = LOAD(&pool->alloc_slow);
	s.alloc_fail = LOAD(&pool->alloc_fail);
	s.free_slow = LOAD(&pool->free_slow);
	/* Every object handed out comes back once, so the fast frees need no
	 * counter of their own on the fast path. */
	uint64_t handed = s.alloc_fast + s.alloc_slow;
	uint64_t back = s.free_slow + s.in_flight;
	s.free_fast = handed > back ? handed - back : 0;
	s.depot_get = LOAD(&pool->depot_get);
	s.depot_put = LOAD(&pool->depot_put);
	s.mag_alloc = LOAD(&pool->mag_alloc);
	s.chunk_acquire = LOAD(&pool->chunk_acquire);
	s.chunk_release = LOAD(&pool->chunk_release);
	s.map_calls = LOAD(&pool->map_calls);
	s.unmap_calls = LOAD(&pool->unmap_calls);
	s.release_hook = LOAD(&pool->release_hook);
	s.hook_kept = LOAD(&pool->hook_kept);
	_iop_bound_stats(pool, &s);
	*out = s;
}

int iop_pool_stats(iop_pool_t *pool, struct iop_pool_stats *out)
{
	if (!pool || !out || out->struct_size < IOP_POOL_STATS_SIZE_V1)
		return -EINVAL;
	int err = _iop_hook_check(pool, IOP_CALL_STATS);
	if (err)
		return err;
	struct iop_pool_stats s;
	struct iop_resident res;
	_iop_registry_lock();
	_iop_pool_stats_locked(pool, &s, &res);
	_iop_registry_unlock();
	s.bytes_resident = _iop_resident_bytes(&res);

	uint32_t keep = out->struct_size;
	memcpy(out, &s, keep < sizeof(s) ? keep : sizeof(s));
	out->struct_size = keep;
	return 0;
}

uint64_t _iop_resident_bytes(struct iop_resident *res)
{
	uint64_t bytes = _iop_os_resident(res->bases, res->bases ? res->n : 0, res->chunk_size);
	free(res->bases);
	res->bases = NULL;
	return bytes;
}

/*
 * The printers and the layout check, both from IOP_POOL_STATS_FIELDS
 * (iopool/shm.h), the one list of the fields: a mirror of the struct built
 * from the list must match struct iop_pool_stats (iopool.h, written out for
 * its readers) field by field, in offset and type, and in size, so the
 * public struct has exactly the listed fields in their order.
 */
struct stats_from_list {
	uint32_t struct_size;
#define MIRROR(t, n) t n;
	IOP_POOL_STATS_FIELDS(MIRROR)
#undef MIRROR
};
#define SAME_FIELD(t, n)                                                                          \
	_Static_assert(offsetof(struct iop_pool_stats, n) == offsetof(struct stats_from_list, n) &&   \
			       _Generic(((struct iop_pool_stats *)0)->n, t: 1, default: 0) &&             \
			       (sizeof(t) == 4 || sizeof(t) == 8), /* what field() reads */               \
		       "struct iop_pool_stats." #n " is not where IOP_POOL_STATS_FIELDS puts it, or not a " #t);
IOP_POOL_STATS_FIELDS(SAME_FIELD)
#undef SAME_FIELD
_Static_assert(sizeof(struct iop_pool_stats) == sizeof(struct stats_from_list),
	       "struct iop_pool_stats has fields that IOP_POOL_STATS_FIELDS does not list");

#define FIELD(t, n) { #n, offsetof(struct iop_pool_stats, n), sizeof(t) },
static const struct {
	const char *name;
	uint16_t off, size;
} fields[] = { IOP_POOL_STATS_FIELDS(FIELD) };
#undef FIELD

int iop_pool_domain_stats(iop_pool_t *pool, unsigned domain, struct iop_domain_stats *out)
{
	if (!pool || !out || !out->struct_size || domain >= _iop_ndomains)
		return -EINVAL;
	int err = _iop_hook_check(pool, IOP_CALL_STATS);
	if (err)
		return err;
	struct iop_domain_stats s = { .struct_size = sizeof(s), .domain = domain };
	pthread_mutex_lock(&pool->lock);
	s.depot = pool->depot.dom[domain].objs;
	s.chunks = pool->slab.dom[domain].nchunks;
	for (struct iop_chunk *c = pool->slab.dom[domain].partial; c; c = c->next_partial)
		s.slab_free += c->nfree;
	pthread_mutex_unlock(&pool->lock);
	uint32_t keep = out->struct_size;
	memcpy(out, &s, keep < sizeof(s) ? keep : sizeof(s));
	out->struct_size = keep;
	return 0;
}

static uint64_t field(const struct iop_pool_stats *s, size_t i)
{
	const char *at = (const char *)s + fields[i].off;
	if (fields[i].size == sizeof(uint32_t)) {
		uint32_t v;
		memcpy(&v, at, sizeof(v));
		return v;
	}
	uint64_t v;
	memcpy(&v, at, sizeof(v));
	return v;
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

int iop_pool_stats_print(iop_pool_t *pool, FILE *f, int format)
{
	struct iop_pool_stats s = { .struct_size = sizeof(s) };
	if (!pool || !f || (format != IOP_FMT_TEXT && format != IOP_FMT_JSON))
		return -EINVAL;
	int err = iop_pool_stats(pool, &s);
	if (err)
		return err;
	size_t n = sizeof(fields) / sizeof(fields[0]);
	if (format == IOP_FMT_TEXT) {
		fprintf(f, "pool '%s'\n", pool->name);
		for (size_t i = 0; i < n; i++)
			fprintf(f, "  %-15s %llu\n", fields[i].name, (unsigned long long)field(&s, i));
	} else {
		fputs("{\"name\":", f);
		json_string(f, pool->name);
		for (size_t i = 0; i < n; i++)
			fprintf(f, ",\"%s\":%llu", fields[i].name, (unsigned long long)field(&s, i));
		fputs("}\n", f);
	}
	return ferror(f) || fflush(f) ? -EIO : 0;
}

/* ---- audit -------------------------------------------------------------- */

struct audit {
	struct iop_pool *pool;
	uint64_t seen;    /* objects found in magazines */
	char fault[256];  /* first fault found */
	bool nomem;
};

static void fault(struct audit *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fault(struct audit *a, const char *fmt, ...)
{
	if (a->fault[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(a->fault, sizeof(a->fault), fmt, ap);
	va_end(ap);
}

/* Every free object must be poisoned in checked mode. */
static void check_poison(struct audit *a, void *p, const char *where)
{
	FREE_UNPOISON(p, a->pool->hot.stride);
	long off = _iop_poison_check(a->pool, p);
	FREE_POISON(p, a->pool->hot.stride);
	if (off >= 0)
		fault(a, "free object %p (%s) was written at offset %ld", p, where, off);
}

/* One object found in a magazine: it must be a valid object of this pool,
 * not free in its slab, not in flight, and seen only once. */
static void visit(struct audit *a, void *p, const char *where)
{
	struct iop_pool *pool = a->pool;
	if (_iop_map_pool(p) != pool) {
		fault(a, "%p in %s is not an address of this pool", p, where);
		return;
	}
	struct iop_chunk *c = _iop_map_chunk_of(p);
	uint64_t off = (uint64_t)((char *)p - c->base);
	if (off % pool->hot.stride || off / pool->hot.stride >= c->nobj) {
		fault(a, "%p in %s is not the start of an object", p, where);
		return;
	}
	uint32_t idx = (uint32_t)(off / pool->hot.stride);
	uint64_t bit = 1ull << (idx & 63);
	if (idx >= c->bump)
		fault(a, "%p in %s was never carved from its chunk", p, where);
	else if (c->freemap[idx >> 6] & bit)
		fault(a, "%p in %s is also free in its chunk", p, where);
	else if (c->audit_seen[idx >> 6] & bit)
		fault(a, "%p is in two places (again in %s)", p, where);
	else if (pool->checked && (LOAD(&c->inuse[idx >> 6]) & bit))
		fault(a, "%p in %s is marked in flight", p, where);
	else if (pool->refcount && ALOAD(&c->refs[idx]))
		fault(a, "%p in %s has %u references", p, where, ALOAD(&c->refs[idx]));
	else if (c->nreleased && _iop_slab_obj_released(pool, c, idx))
		fault(a, "%p in %s is on a page given back to the OS", p, where);
	c->audit_seen[idx >> 6] |= bit;
	a->seen++;
	if (pool->checked)
		check_poison(a, p, where);
}

static void visit_mag(struct audit *a, struct iop_mag *m, uint32_t count, const char *where)
{
	if (count > m->cap) {
		fault(a, "%s holds %u objects, more than its %u slots", where, count, m->cap);
		return;
	}
	for (uint32_t i = 0; i < count; i++)
		visit(a, m->obj[i], where);
}

static void visit_tcache(struct iop_pool *pool, struct iop_tcache *tc, void *arg)
{
	struct audit *a = arg;
	uint32_t prev = ALOAD(&tc->prev_count);
	if (tc->objs)
		visit_mag(a, TC_LOADED(tc), ALOAD(&tc->count), "a thread's loaded magazine");
	else if (ALOAD(&tc->count))
		fault(a, "a thread cache counts objects without a magazine");
	if (tc->prev) {
		if (prev != 0 && prev != pool->mag_cap)
			fault(a, "a thread's previous magazine holds %u of %u: neither full nor empty", prev,
			      pool->mag_cap);
		visit_mag(a, TC_PREV(tc), prev, "a thread's previous magazine");
	} else if (prev) {
		fault(a, "a thread cache counts a previous magazine it does not have");
	}
}

static void visit_cpu_obj(struct iop_pool *pool, void *obj, void *arg)
{
	(void)pool;
	visit(arg, obj, "a CPU's cache");
}

static uint64_t popcount_words(const uint64_t *w, size_t n)
{
	uint64_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += (uint64_t)__builtin_popcountll(w[i]);
	return s;
}

static void audit_locked(struct audit *a)
{
	struct iop_pool *pool = a->pool;
	size_t words = (size_t)((pool->hot.objs_per_chunk + 63) / 64);
	uint64_t slab_free = 0, nchunks = 0, npartial = 0, marked = 0, released = 0;

	for (struct iop_chunk *c = pool->slab.chunks; c; c = c->next) {
		nchunks++;
		c->audit_seen = calloc(words, sizeof(uint64_t));
		if (!c->audit_seen) {
			a->nomem = true;
			return;
		}
		if (_iop_map_pool(c->base) != pool || _iop_map_chunk_of(c->base) != c)
			fault(a, "the address map does not name chunk %p", (void *)c->base);
		uint64_t returned = popcount_words(c->freemap, words);
		if (c->nfree != returned + (c->nobj - c->bump))
			fault(a, "chunk %p counts %u free objects, its bitmap and bump say %llu", (void *)c->base,
			      c->nfree, (unsigned long long)(returned + (c->nobj - c->bump)));
		if (c->on_partial != (c->nfree > 0))
			fault(a, "chunk %p with %u free objects is %son the partial list", (void *)c->base, c->nfree,
			      c->on_partial ? "" : "not ");
		slab_free += c->nfree;
		/* Released pages: counted right, and each holds only free
		 * objects (a page released under an object handed out would
		 * lose what the object's user wrote). */
		uint64_t npg = pool->chunk_size >> pool->slab.page_shift;
		uint64_t rel = popcount_words(c->released, (size_t)((npg + 63) / 64));
		if (rel != c->nreleased)
			fault(a, "chunk %p counts %u released pages, its bitmap says %llu", (void *)c->base,
			      c->nreleased, (unsigned long long)rel);
		released += rel;
		for (uint64_t pg = 0; rel && pg < npg; pg++)
			if (((c->released[pg >> 6] >> (pg & 63)) & 1) && !_iop_slab_page_is_free(pool, c, pg))
				fault(a, "page %p of chunk %p was given back to the OS while an object on it is not free",
				      (void *)(c->base + (pg << pool->slab.page_shift)), (void *)c->base);
		if (pool->checked) {
			/* A released page reads as zero until it is used again
			 * (and poisoned then). */
			for (uint32_t i = 0; i < c->bump; i++)
				if ((c->freemap[i >> 6] & (1ull << (i & 63))) &&
				    !(c->nreleased && _iop_slab_obj_released(pool, c, i)))
					check_poison(a, c->base + (uint64_t)i * pool->hot.stride, "its chunk");
			for (size_t w = 0; w < words; w++)
				marked += (uint64_t)__builtin_popcountll(LOAD(&c->inuse[w]));
		}
	}
	for (unsigned d = 0; d < IOP_MAX_DOMAINS; d++) {
		for (struct iop_chunk *c = pool->slab.dom[d].partial; c && npartial <= nchunks; c = c->next_partial) {
			npartial++;
			if (c->domain != d)
				fault(a, "chunk %p of domain %u is on domain %u's partial list", (void *)c->base,
				      c->domain, d);
		}
	}
	if (nchunks != pool->slab.nchunks)
		fault(a, "%llu chunks are listed, %llu counted", (unsigned long long)nchunks,
		      (unsigned long long)pool->slab.nchunks);
	if (npartial > nchunks)
		fault(a, "the partial chunk list loops");
	if (slab_free != pool->slab.free)
		fault(a, "chunks hold %llu free objects, the pool counts %llu", (unsigned long long)slab_free,
		      (unsigned long long)pool->slab.free);
	if (released != pool->slab.released)
		fault(a, "chunks hold %llu released pages, the pool counts %llu", (unsigned long long)released,
		      (unsigned long long)pool->slab.released);

	_iop_for_each_tcache(pool, visit_tcache, a);
	_iop_cpu_for_each_obj(pool, visit_cpu_obj, a);
	uint64_t in_caches = a->seen;

	uint64_t depot = 0, nfull = 0, nempty = 0;
	for (unsigned d = 0; d < IOP_MAX_DOMAINS; d++) {
		uint64_t here = 0, n = 0;
		for (struct iop_mag *m = pool->depot.dom[d].full; m; m = m->next) {
			if (m->count == 0)
				fault(a, "an empty magazine is on the depot's full list");
			visit_mag(a, m, m->count, "the depot");
			for (uint32_t i = 0; i < m->count && i < m->cap; i++) {
				struct iop_chunk *c = _iop_map_chunk_of(m->obj[i]);
				if (c && c->domain != d)
					fault(a, "%p of domain %u is in domain %u's depot", m->obj[i], c->domain, d);
			}
			here += m->count;
			n++;
		}
		if (here != pool->depot.dom[d].objs || n != pool->depot.dom[d].nfull)
			fault(a, "domain %u's depot holds %llu objects in %llu magazines, it counts %llu in %llu", d,
			      (unsigned long long)here, (unsigned long long)n,
			      (unsigned long long)pool->depot.dom[d].objs, (unsigned long long)pool->depot.dom[d].nfull);
		depot += here;
		nfull += n;
	}
	for (struct iop_mag *m = pool->depot.empty; m; m = m->next)
		nempty++;
	if (depot != pool->depot.objs || nfull != pool->depot.nfull || nempty != pool->depot.nempty)
		fault(a, "the depot holds %llu objects in %llu+%llu magazines, it counts %llu in %llu+%llu",
		      (unsigned long long)depot, (unsigned long long)nfull, (unsigned long long)nempty,
		      (unsigned long long)pool->depot.objs, (unsigned long long)pool->depot.nfull,
		      (unsigned long long)pool->depot.nempty);

	uint64_t total = nchunks * pool->hot.objs_per_chunk;
	if (in_caches + depot + slab_free > total)
		fault(a, "conservation: %llu cached + %llu in the depot + %llu free in chunks exceed the %llu objects",
		      (unsigned long long)in_caches, (unsigned long long)depot, (unsigned long long)slab_free,
		      (unsigned long long)total);
	else if (pool->checked && marked != total - in_caches - depot - slab_free)
		fault(a, "conservation: %llu objects are marked in flight, %llu are unaccounted for",
		      (unsigned long long)marked,
		      (unsigned long long)(total - in_caches - depot - slab_free));
	else if (pool->bound) {
		struct iop_bound *b = pool->bound;
		uint64_t in_flight = total - in_caches - depot - slab_free;
		/* Per-CPU mode counts no reservations: the carving limit is
		 * what holds. */
		int64_t counted = LOAD(&b->in_flight);
		if (total - slab_free > b->limit)
			fault(a, "%llu objects are carved, above the limit of %llu",
			      (unsigned long long)(total - slab_free), (unsigned long long)b->limit);
		/* Each map hook of the pool that this thread is inside
		 * (the audit's caller) may run for an allocation that has
		 * reserved its object and not yet taken it. */
		else if (!pool->cpu_mode && (counted < 0 || (uint64_t)counted < in_flight ||
					     (uint64_t)counted > in_flight + _iop_hook_depth(pool, IOP_HOOK_MAP)))
			fault(a, "%lld objects are counted in flight, %llu are unaccounted for", (long long)counted,
			      (unsigned long long)in_flight);
		else if (LOAD(&b->high_water) > b->limit)
			fault(a, "the high-water mark %llu is above the limit %llu",
			      (unsigned long long)LOAD(&b->high_water), (unsigned long long)b->limit);
	}
}

/* The audit's walk in a child of fork() (registry locked). Objects of a
 * checked pool that are neither in flight (their bit) nor in a cache, the
 * depot or their chunk were between a cache and the caller on a thread
 * that did not come along: with `recover` they go back to their chunks,
 * poisoned again. Returns the objects in flight, UINT64_MAX without
 * memory for the walk. */
uint64_t _iop_pool_fork_recover(struct iop_pool *pool, bool recover)
{
	struct audit a = { .pool = pool };
	uint64_t in_flight = UINT64_MAX;
	pthread_mutex_lock(&pool->lock);
	audit_locked(&a);
	if (!a.nomem) {
		for (struct iop_chunk *c = pool->slab.chunks; recover && pool->checked && c; c = c->next) {
			for (uint32_t i = 0; i < c->bump; i++) {
				uint64_t bit = 1ull << (i & 63);
				if ((c->freemap[i >> 6] | c->audit_seen[i >> 6] | LOAD(&c->inuse[i >> 6])) & bit)
					continue;
				void *p = c->base + (uint64_t)i * pool->hot.stride;
				_iop_poison_fill(pool, p);
				FREE_POISON(p, pool->hot.stride);
				_iop_slab_put(pool, &p, 1);
			}
		}
		uint64_t total = pool->slab.nchunks * pool->hot.objs_per_chunk;
		uint64_t here = a.seen + pool->slab.free;
		in_flight = total > here ? total - here : 0;
	}
	for (struct iop_chunk *c = pool->slab.chunks; c; c = c->next) {
		free(c->audit_seen);
		c->audit_seen = NULL;
	}
	pthread_mutex_unlock(&pool->lock);
	return in_flight;
}

int iop_pool_audit(iop_pool_t *pool)
{
	if (!pool)
		return -EINVAL;
	int err = _iop_hook_check(pool, IOP_CALL_AUDIT);
	if (err)
		return err;
	struct audit a = { .pool = pool };
	_iop_registry_lock();
	_iop_cpu_drains_hold(pool);
	pthread_mutex_lock(&pool->lock);
	audit_locked(&a);
	for (struct iop_chunk *c = pool->slab.chunks; c; c = c->next) {
		free(c->audit_seen);
		c->audit_seen = NULL;
	}
	pthread_mutex_unlock(&pool->lock);
	_iop_cpu_drains_release(pool);
	_iop_registry_unlock();
	if (a.nomem)
		return -ENOMEM;
	if (a.fault[0]) {
		_iop_msg_pool(pool, "audit failed: %s", a.fault);
		return -EUCLEAN;
	}
	return 0;
}
