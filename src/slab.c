/* SPDX-License-Identifier: MIT */
/*
 * Slab: chunks carved into objects.
 *
 * A chunk's free objects are described outside the chunk, so chunk memory is
 * all objects (it can be registered with a device whole) and a free object is
 * never written by the allocator (outside checked mode). Objects above the
 * bump index have never been handed out, so a fresh chunk costs no page
 * faults until its objects are used.
 *
 * struct iop_slab is this file's: the chunk lists and counts, and the
 * carving limit of a bounded pool (it never carves more objects than its
 * limit, which caps its memory). Callers learn about the limit from
 * return values (-ENOBUFS), never through errno.
 *
 * Released pages. A chunk goes back to the OS only whole, so decay and
 * shrink also give back the pages inside partly used chunks that hold
 * only free objects of the slab (bits in the freemap, objects above the
 * bump, the padding at the chunk's end): MADV_DONTNEED, with the pool's
 * lock held, and one bit per page in chunk->released. An object is only
 * ever free here while its bit is set, and every carve and every return
 * of a free object happens under the same lock, so no object handed out
 * (in flight, or in a CPU's slot, a thread's magazine or the depot, none
 * of which the freemap counts as free) can be on a page released or being
 * released. When an object is handed out again its released pages are
 * faulted in anew (zero) and their bits cleared (page_reuse); a checked
 * pool poisons those pages again first, since the free objects that share
 * them must read as poison. Chunks that a map hook registered with a
 * device (which may have pinned the old pages) and hugetlbfs chunks keep
 * their pages.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "os/os.h"

static size_t bitmap_words(uint64_t nobj)
{
	return (size_t)((nobj + 63) / 64);
}

static size_t page_words(const struct iop_pool *pool)
{
	return bitmap_words(pool->chunk_size >> pool->slab.page_shift);
}

void _iop_slab_init(struct iop_pool *pool, uint64_t limit)
{
	pool->slab.limit = limit;
	pool->slab.page_shift = (uint8_t)__builtin_ctzll(_iop_os_page_size());
}

/* Map a chunk in domain d and describe it; no lock needed. NULL on failure
 * (errno). IOP_F_PREFAULT in `more` faults it in. */
static struct iop_chunk *chunk_new(struct iop_pool *pool, unsigned d, uint32_t more)
{
	size_t words = bitmap_words(pool->hot.objs_per_chunk);
	size_t maps = pool->checked ? 2 : 1;
	/* Asked for by the pool's own map hook (the table in iopool.h): the
	 * chunk it maps is not the pool's yet, and another would call the
	 * hook again, without end. */
	if (pool->map && _iop_hook_check(pool, IOP_CALL_CHUNK)) {
		errno = EDEADLK;
		return NULL;
	}
	struct iop_chunk *c = calloc(1, sizeof(*c) + (maps * words + page_words(pool)) * sizeof(uint64_t));
	if (!c)
		return NULL;
	c->base = _iop_backing_map(pool->chunk_size, pool->chunk_size, pool->refs_tail, pool->flags | more, d, &c->kind);
	if (!c->base) {
		int e = errno;
		free(c);
		errno = e;
		return NULL;
	}
	if (pool->map) {
		/* Once per chunk: the mapping outlives every recycle of its
		 * objects and goes only with the chunk. */
		COUNT(&pool->map_calls, 1);
		struct iop_hook_frame f;
		_iop_hook_enter(&f, pool, IOP_HOOK_MAP, false);
		int rc = pool->map(pool->hook_arg, c->base, pool->chunk_size, &c->handle);
		_iop_hook_leave(&f);
		if (rc != 0) {
			_iop_os_unmap(c->base, pool->chunk_size + pool->refs_tail);
			free(c);
			errno = rc < 0 ? -rc : EIO;
			return NULL;
		}
	}
	c->pool = pool;
	c->domain = (uint8_t)d;
	c->nobj = (uint32_t)pool->hot.objs_per_chunk;
	c->nfree = c->nobj;
	c->freemap = (uint64_t *)(c + 1);
	if (pool->checked)
		c->inuse = (_Atomic uint64_t *)(c->freemap + words);
	c->released = c->freemap + maps * words;
	if (pool->refcount)
		c->refs = (uint32_t *)(c->base + pool->chunk_size);
	/* Under ASan every object that is not in flight is poisoned; under
	 * memcheck it is no-access. */
	FREE_POISON(c->base, pool->chunk_size);
	return c;
}

static void chunk_add(struct iop_pool *pool, struct iop_chunk *c)
{
	struct iop_slab *s = &pool->slab;
	struct iop_slab_dom *dom = &s->dom[c->domain];
	_iop_map_set(c->base, pool->chunk_size, pool, c);
	c->next = s->chunks;
	c->prev = NULL;
	if (s->chunks)
		s->chunks->prev = c;
	s->chunks = c;
	c->next_partial = dom->partial;
	c->on_partial = true;
	dom->partial = c;
	s->nchunks++;
	dom->nchunks++;
	s->free += c->nfree;
	s->page_kind = c->kind;
	COUNT(&pool->chunk_acquire, 1);
	if (c->kind == IOP_PAGES_HUGETLB)
		COUNT(&pool->chunks_hugetlb, 1);
	else if (c->kind == IOP_PAGES_THP)
		COUNT(&pool->chunks_thp, 1);
}

/* Take a wholly free chunk off the pool's lists and the map (lock held);
 * then chunk_free() it with the lock dropped. */
static void chunk_unlink(struct iop_pool *pool, struct iop_chunk *c)
{
	struct iop_slab *s = &pool->slab;
	struct iop_slab_dom *dom = &s->dom[c->domain];
	IOP_ASSERT(pool, c->nfree == c->nobj);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->chunks = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->on_partial) {
		struct iop_chunk **pp = &dom->partial;
		while (*pp != c)
			pp = &(*pp)->next_partial;
		*pp = c->next_partial;
		c->on_partial = false;
	}
	s->nchunks--;
	dom->nchunks--;
	s->free -= c->nfree;
	s->released -= c->nreleased;
	/* Nothing of it is in flight or cached, so no lookup can want it. */
	_iop_map_set(c->base, pool->chunk_size, NULL, NULL);
	/* Counted here, with nchunks, so statistics always see
	 * chunks == chunk_acquire - chunk_release. */
	COUNT(&pool->chunk_release, 1);
}

/* Unmap an unlinked chunk (the unmap hook first) and free its descriptor;
 * no lock held. dying: the pool goes with it (destroy, a failed create),
 * and its hook may not call it. */
static void chunk_free(struct iop_pool *pool, struct iop_chunk *c, bool dying)
{
	if (pool->unmap) {
		COUNT(&pool->unmap_calls, 1);
		struct iop_hook_frame f;
		_iop_hook_enter(&f, pool, IOP_HOOK_UNMAP, dying);
		pool->unmap(pool->hook_arg, c->base, pool->chunk_size, c->handle);
		_iop_hook_leave(&f);
	}
	_iop_os_unmap(c->base, pool->chunk_size + pool->refs_tail);
	if (c->side)
		_iop_os_unmap(c->side, c->side_bytes);
	free(c);
}

uint64_t _iop_carve_room(const struct iop_pool *pool)
{
	const struct iop_slab *s = &pool->slab;
	if (s->limit == UINT64_MAX)
		return UINT64_MAX;
	uint64_t carved = s->nchunks * pool->hot.objs_per_chunk - s->free;
	return carved < s->limit ? s->limit - carved : 0;
}

/* ---- released pages (pool lock held) ----------------------------------------- */

static bool may_release(const struct iop_pool *pool, const struct iop_chunk *c)
{
	/* A map hook may have registered the chunk with a device that
	 * pinned its pages: after MADV_DONTNEED the process would fault in
	 * new ones and the device keep the old. hugetlbfs pages can only go
	 * whole. */
	return !pool->map && c->kind != IOP_PAGES_HUGETLB;
}

static bool page_released(const struct iop_chunk *c, uint64_t pg)
{
	return (c->released[pg >> 6] >> (pg & 63)) & 1;
}

/* Every object with a byte in chunk offsets [lo, hi) is free in the slab:
 * its bit is set, or it was never carved (above the bump), or it is the
 * padding after the last object. */
static bool span_free(const struct iop_pool *pool, const struct iop_chunk *c, uint64_t lo, uint64_t hi)
{
	uint64_t first = lo / pool->hot.stride, last = (hi - 1) / pool->hot.stride;
	if (first >= c->bump)
		return true;
	if (last >= c->bump)
		last = c->bump - 1;
	for (uint64_t i = first; i <= last;) {
		uint64_t end = (i | 63) < last ? (i | 63) : last;
		unsigned e = (unsigned)(end & 63);
		uint64_t mask = (e == 63 ? ~0ull : (1ull << (e + 1)) - 1) & (~0ull << (i & 63));
		if ((c->freemap[i >> 6] & mask) != mask)
			return false;
		i = end + 1;
	}
	return true;
}

bool _iop_slab_page_is_free(const struct iop_pool *pool, const struct iop_chunk *c, uint64_t pg)
{
	unsigned sh = pool->slab.page_shift;
	return span_free(pool, c, pg << sh, (pg + 1) << sh);
}

bool _iop_slab_obj_released(const struct iop_pool *pool, const struct iop_chunk *c, uint64_t idx)
{
	unsigned sh = pool->slab.page_shift;
	uint64_t start = idx * pool->hot.stride, end = start + pool->hot.stride;
	for (uint64_t pg = start >> sh; pg <= (end - 1) >> sh; pg++)
		if (page_released(c, pg))
			return true;
	return false;
}

/* Object idx is about to be handed out: the pages it covers are the
 * process's again. Their bits go and each page is faulted in here, under
 * the pool's lock, before the object leaves the slab (zero filled); in a
 * checked pool the whole page is poisoned instead, for the free objects
 * that share it (all of them free, or the page would not have been
 * released).
 *
 * Why here and not at the user's first touch: in per-CPU mode, letting
 * the threads that got the objects fault the pages in themselves (a
 * write, or MADV_POPULATE_WRITE from that thread) made shrink_under_load
 * lose a whole CPU slot: after a drain moved the slot's 256 objects to
 * the depot, the slot counted 255 of them again (the audit's surplus of
 * free objects is 255, and an object was found both in a CPU slot and
 * free in its chunk before any page of it was released), the signature
 * of a one-object sequence committing after the drain's fence. 18 of 310
 * runs failed that way on Linux 6.18, 0 of 310 with the pages faulted in
 * here, 0 with memset() instead of MADV_DONTNEED or with no release. The
 * kernel-side mechanism is not pinned down (see the branch's report). */
static void reuse_pages(struct iop_pool *pool, struct iop_chunk *c, uint64_t idx)
{
	unsigned sh = pool->slab.page_shift;
	uint64_t start = idx * pool->hot.stride, end = start + pool->hot.stride;
	for (uint64_t pg = start >> sh; pg <= (end - 1) >> sh; pg++) {
		if (!page_released(c, pg))
			continue;
		c->released[pg >> 6] &= ~(1ull << (pg & 63));
		c->nreleased--;
		pool->slab.released--;
		pool->slab.page_reuse++;
		char *p = c->base + (pg << sh);
		if (pool->checked) {
			FREE_UNPOISON(p, (size_t)1 << sh);
			memset(p, IOP_POISON_BYTE, (size_t)1 << sh);
			FREE_POISON(p, (size_t)1 << sh);
		} else {
			_iop_os_prefault(p, (size_t)1 << sh);
		}
	}
}

/* Release the free pages of chunk c that hold a carved object (the pages
 * above hold objects never handed out, not touched unless prefaulted), in
 * runs of consecutive pages, one madvise() per run. */
static uint64_t release_chunk(struct iop_pool *pool, struct iop_chunk *c)
{
	unsigned sh = pool->slab.page_shift;
	uint64_t npg = ((uint64_t)c->bump * pool->hot.stride + ((uint64_t)1 << sh) - 1) >> sh;
	uint64_t run = 0, gone = 0;
	bool in_run = false;
	for (uint64_t pg = 0; pg <= npg; pg++) {
		bool ok = pg < npg && !page_released(c, pg) && span_free(pool, c, pg << sh, (pg + 1) << sh);
		if (ok && !in_run) {
			run = pg;
			in_run = true;
		} else if (!ok && in_run) {
			in_run = false;
			char *p = c->base + (run << sh);
			size_t len = (size_t)(pg - run) << sh;
			/* Refused (EAGAIN, a seccomp filter): the pages stay
			 * the process's and nothing is lost. */
			if (_iop_os_release(p, len) != 0)
				continue;
			/* Under memcheck a discarded range may read as
			 * defined again: no access, as free memory is. */
			FREE_POISON(p, len);
			for (uint64_t i = run; i < pg; i++)
				c->released[i >> 6] |= 1ull << (i & 63);
			c->nreleased += (uint32_t)(pg - run);
			gone += pg - run;
		}
	}
	return gone;
}

uint64_t _iop_slab_release_pages(struct iop_pool *pool, unsigned d)
{
	struct iop_slab *s = &pool->slab;
	uint64_t gone = 0;
	for (unsigned i = 0; i < _iop_ndomains; i++) {
		if (d != IOP_MAX_DOMAINS && i != d)
			continue;
		/* Chunks with free objects are exactly those on the partial
		 * lists; one with none returned since it was carved has no
		 * free carved object, so no whole free page below its bump. */
		for (struct iop_chunk *c = s->dom[i].partial; c; c = c->next_partial)
			if (c->nfree > c->nobj - c->bump && may_release(pool, c))
				gone += release_chunk(pool, c);
	}
	s->released += gone;
	s->page_release += gone;
	return gone;
}

unsigned _iop_slab_get(struct iop_pool *pool, unsigned d, void **objs, unsigned n)
{
	struct iop_slab_dom *dom = &pool->slab.dom[d];
	unsigned got = 0;
	uint64_t room = _iop_carve_room(pool);
	if (n > room)
		n = (unsigned)room;
	while (got < n && dom->partial) {
		struct iop_chunk *c = dom->partial;
		/* Reuse returned objects first: their pages are already
		 * resident. */
		size_t words = c->nfree > c->nobj - c->bump ? bitmap_words(c->bump) : 0;
		for (size_t w = 0; w < words && got < n; w++) {
			while (c->freemap[w] && got < n) {
				unsigned b = (unsigned)__builtin_ctzll(c->freemap[w]);
				c->freemap[w] &= c->freemap[w] - 1;
				if (c->nreleased)
					reuse_pages(pool, c, (uint64_t)w * 64 + b);
				objs[got++] = c->base + ((uint64_t)w * 64 + b) * pool->hot.stride;
				c->nfree--;
			}
		}
		while (got < n && c->bump < c->nobj) {
			if (c->nreleased)
				reuse_pages(pool, c, c->bump);
			void *p = c->base + (uint64_t)c->bump++ * pool->hot.stride;
			if (pool->checked)
				_iop_poison_fill(pool, p);
			objs[got++] = p;
			c->nfree--;
		}
		if (c->nfree == 0) {
			dom->partial = c->next_partial;
			c->next_partial = NULL;
			c->on_partial = false;
		}
	}
	pool->slab.free -= got;
	return got;
}

/* Any domain's slab, d's first: memory of another domain is better than
 * none. */
static unsigned slab_get_any(struct iop_pool *pool, unsigned d, void **objs, unsigned n)
{
	unsigned got = _iop_slab_get(pool, d, objs, n);
	for (unsigned i = 1; i < _iop_ndomains && got < n; i++)
		got += _iop_slab_get(pool, (d + i) % _iop_ndomains, objs + got, n - got);
	return got;
}

int _iop_slab_grow(struct iop_pool *pool, unsigned d, uint32_t more)
{
	if (_iop_carve_room(pool) == 0)
		return -ENOBUFS;
	/* mmap and page-table work happen outside the lock so other threads
	 * keep trading magazines meanwhile. Two threads may both map a
	 * chunk; the spare one serves the next fill. */
	pthread_mutex_unlock(&pool->lock);
	struct iop_chunk *c = chunk_new(pool, d, more);
	int err = c ? 0 : errno ? -errno : -ENOMEM;
	pthread_mutex_lock(&pool->lock);
	if (c)
		chunk_add(pool, c);
	return err;
}

unsigned _iop_slab_get_or_grow(struct iop_pool *pool, unsigned d, void **objs, unsigned n, int *status)
{
	unsigned got = _iop_slab_get(pool, d, objs, n);
	*status = 0;
	if (got || !n)
		return got;
	int rc = _iop_slab_grow(pool, d, 0);
	if (rc == -ENOBUFS) {
		/* A bounded pool at its limit: no slab may hand out more. */
		*status = rc;
		return 0;
	}
	got = slab_get_any(pool, d, objs, n);
	if (got == 0)
		*status = rc ? rc : -ENOMEM;
	return got;
}

bool _iop_slab_retry_helps(struct iop_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	bool helps = pool->slab.free > 0 || _iop_carve_room(pool) == 0;
	pthread_mutex_unlock(&pool->lock);
	return helps;
}

void _iop_slab_put(struct iop_pool *pool, void *const *objs, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct iop_chunk *c = _iop_map_chunk_of(objs[i]);
		uint32_t idx = (uint32_t)iop__obj_number(pool, objs[i]);
		uint64_t bit = 1ull << (idx & 63);
		IOP_ASSERT(pool, idx < c->bump && !(c->freemap[idx >> 6] & bit));
		c->freemap[idx >> 6] |= bit;
		c->nfree++;
		if (!c->on_partial) {
			c->next_partial = pool->slab.dom[c->domain].partial;
			c->on_partial = true;
			pool->slab.dom[c->domain].partial = c;
		}
	}
	pool->slab.free += n;
}

unsigned _iop_slab_domain_of(const void *obj)
{
	return _iop_map_chunk_of(obj)->domain;
}

static int by_nfree(const void *a, const void *b)
{
	const struct iop_chunk *x = *(struct iop_chunk *const *)a, *y = *(struct iop_chunk *const *)b;
	return x->nfree < y->nfree ? -1 : x->nfree > y->nfree;
}

void _iop_slab_sort_partial(struct iop_pool *pool, unsigned d)
{
	struct iop_slab_dom *dom = &pool->slab.dom[d];
	size_t n = 0;
	for (struct iop_chunk *c = dom->partial; c; c = c->next_partial)
		n++;
	/* Without memory for the sort the order stays: decay then frees
	 * fewer chunks, nothing worse. */
	struct iop_chunk **v = n > 1 ? malloc(n * sizeof(*v)) : NULL;
	if (!v)
		return;
	n = 0;
	for (struct iop_chunk *c = dom->partial; c; c = c->next_partial)
		v[n++] = c;
	qsort(v, n, sizeof(*v), by_nfree);
	for (size_t i = 0; i < n; i++)
		v[i]->next_partial = i + 1 < n ? v[i + 1] : NULL;
	dom->partial = v[0];
	free(v);
}

void _iop_slab_prefault(struct iop_pool *pool)
{
	for (struct iop_chunk *c = pool->slab.chunks; c; c = c->next)
		_iop_os_prefault(c->base, (size_t)c->bump * pool->hot.stride);
}

struct iop_chunk *_iop_slab_unlink_free(struct iop_pool *pool, unsigned d, uint64_t target)
{
	struct iop_slab *s = &pool->slab;
	struct iop_chunk *gone = NULL, *c = s->chunks;
	while (c && s->nchunks * pool->chunk_size > target) {
		struct iop_chunk *next = c->next;
		if (c->nfree == c->nobj && (d == IOP_MAX_DOMAINS || c->domain == d)) {
			chunk_unlink(pool, c);
			c->next = gone;
			gone = c;
		}
		c = next;
	}
	return gone;
}

uint64_t _iop_slab_free_chunks(struct iop_pool *pool, struct iop_chunk *gone)
{
	uint64_t bytes = 0;
	while (gone) {
		struct iop_chunk *next = gone->next;
		chunk_free(pool, gone, false);
		bytes += pool->chunk_size;
		gone = next;
	}
	return bytes;
}

void _iop_slab_free_all(struct iop_pool *pool)
{
	struct iop_slab *s = &pool->slab;
	while (s->chunks) {
		struct iop_chunk *c = s->chunks;
		/* Whatever the depot or a cache held is free too. */
		s->free += c->nobj - c->nfree;
		c->nfree = c->nobj;
		chunk_unlink(pool, c);
		chunk_free(pool, c, true);
	}
}

