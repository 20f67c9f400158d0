/* SPDX-License-Identifier: MIT */
/*
 * Slab: chunks carved into objects.
 *
 * A chunk's free objects are described outside the chunk, so chunk memory is
 * all objects (it can be registered with a device whole) and a free object is
 * never written by the allocator (outside checked mode). Objects above the
 * bump index have never been handed out, so a fresh chunk costs no page
 * faults until its objects are used.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static size_t bitmap_words(uint64_t nobj)
{
	return (size_t)((nobj + 63) / 64);
}

struct iop_chunk *_iop_chunk_new(struct iop_pool *pool, unsigned d, uint32_t more)
{
	size_t words = bitmap_words(pool->hot.objs_per_chunk);
	size_t maps = pool->checked ? 2 : 1;
	struct iop_chunk *c = calloc(1, sizeof(*c) + maps * words * sizeof(uint64_t));
	if (!c)
		return NULL;
	c->base = _iop_os_map(pool->chunk_size, pool->refs_tail, pool->flags | more, d, &c->kind);
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
		int rc = pool->map(pool->hook_arg, c->base, pool->chunk_size, &c->handle);
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
	if (pool->refcount)
		c->refs = (uint32_t *)(c->base + pool->chunk_size);
	/* Under ASan every object that is not in flight is poisoned. */
	ASAN_POISON(c->base, pool->chunk_size);
	return c;
}

void _iop_chunk_add(struct iop_pool *pool, struct iop_chunk *c)
{
	struct iop_dom *dom = &pool->dom[c->domain];
	_iop_map_set(c->base, pool->chunk_size, pool, c);
	c->next = pool->chunks;
	c->prev = NULL;
	if (pool->chunks)
		pool->chunks->prev = c;
	pool->chunks = c;
	c->next_partial = dom->partial;
	c->on_partial = true;
	dom->partial = c;
	pool->nchunks++;
	dom->nchunks++;
	pool->slab_free += c->nfree;
	pool->page_kind = c->kind;
	COUNT(&pool->chunk_acquire, 1);
	if (c->kind == IOP_PAGES_HUGETLB)
		COUNT(&pool->chunks_hugetlb, 1);
	else if (c->kind == IOP_PAGES_THP)
		COUNT(&pool->chunks_thp, 1);
}

void _iop_chunk_unlink(struct iop_pool *pool, struct iop_chunk *c)
{
	struct iop_dom *dom = &pool->dom[c->domain];
	IOP_ASSERT(pool, c->nfree == c->nobj);
	if (c->prev)
		c->prev->next = c->next;
	else
		pool->chunks = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->on_partial) {
		struct iop_chunk **pp = &dom->partial;
		while (*pp != c)
			pp = &(*pp)->next_partial;
		*pp = c->next_partial;
		c->on_partial = false;
	}
	pool->nchunks--;
	dom->nchunks--;
	pool->slab_free -= c->nfree;
	/* Nothing of it is in flight or cached, so no lookup can want it. */
	_iop_map_set(c->base, pool->chunk_size, NULL, NULL);
	/* Counted here, with nchunks, so statistics always see
	 * chunks == chunk_acquire - chunk_release. */
	COUNT(&pool->chunk_release, 1);
}

void _iop_chunk_free(struct iop_pool *pool, struct iop_chunk *c)
{
	if (pool->unmap) {
		COUNT(&pool->unmap_calls, 1);
		pool->unmap(pool->hook_arg, c->base, pool->chunk_size, c->handle);
	}
	_iop_os_unmap(c->base, pool->chunk_size + pool->refs_tail);
	free(c);
}

/* Objects a bounded pool may still carve: it never carves more than its
 * limit, which caps its memory (and so the objects in flight). */
uint64_t _iop_carve_room(const struct iop_pool *pool)
{
	if (!pool->bound)
		return UINT64_MAX;
	uint64_t carved = pool->nchunks * pool->hot.objs_per_chunk - pool->slab_free;
	return carved < pool->bound->limit ? pool->bound->limit - carved : 0;
}

unsigned _iop_slab_get(struct iop_pool *pool, unsigned d, void **objs, unsigned n)
{
	struct iop_dom *dom = &pool->dom[d];
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
				objs[got++] = c->base + ((uint64_t)w * 64 + b) * pool->hot.stride;
				c->nfree--;
			}
		}
		while (got < n && c->bump < c->nobj) {
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
	pool->slab_free -= got;
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

unsigned _iop_slab_get_or_grow(struct iop_pool *pool, unsigned d, void **objs, unsigned n)
{
	unsigned got = _iop_slab_get(pool, d, objs, n);
	if (got || !n)
		return got;
	if (_iop_carve_room(pool) == 0) {
		/* A bounded pool at its limit: no slab may hand out more. */
		errno = ENOBUFS; /* bound.c */
	} else {
		/* mmap and page-table work happen outside the lock so other
		 * threads keep trading magazines meanwhile. Two threads may
		 * both map a chunk; the spare one serves the next fill. */
		pthread_mutex_unlock(&pool->lock);
		struct iop_chunk *c = _iop_chunk_new(pool, d, 0);
		int err = errno;
		pthread_mutex_lock(&pool->lock);
		if (c)
			_iop_chunk_add(pool, c);
		got = slab_get_any(pool, d, objs, n);
		if (got == 0)
			errno = c ? ENOMEM : err;
	}
	return got;
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
			c->next_partial = pool->dom[c->domain].partial;
			c->on_partial = true;
			pool->dom[c->domain].partial = c;
		}
	}
	pool->slab_free += n;
}

/* ---- checked mode -------------------------------------------------------- */

void _iop_poison_fill(const struct iop_pool *pool, void *p)
{
	ASAN_UNPOISON(p, pool->hot.stride);
	memset(p, IOP_POISON_BYTE, pool->hot.stride);
	ASAN_POISON(p, pool->hot.stride);
}

long _iop_poison_check(const struct iop_pool *pool, const void *p)
{
	const uint64_t pattern = 0x0101010101010101ull * IOP_POISON_BYTE;
	const uint64_t *w = p;
	/* The stride is a multiple of 8 (align >= 8), so whole words cover it. */
	for (size_t i = 0; i < pool->hot.stride / 8; i++) {
		if (w[i] != pattern) {
			const unsigned char *b = (const unsigned char *)&w[i];
			size_t j = 0;
			while (b[j] == IOP_POISON_BYTE)
				j++;
			return (long)(i * 8 + j);
		}
	}
	return -1;
}

static _Atomic uint64_t *inuse_word(struct iop_pool *pool, void *p, uint64_t *bit)
{
	struct iop_chunk *c = _iop_map_chunk_of(p);
	uint32_t idx = (uint32_t)iop__obj_number(pool, p);
	*bit = 1ull << (idx & 63);
	return &c->inuse[idx >> 6];
}

void _iop_checked_on_alloc(struct iop_pool *pool, void *p)
{
	uint64_t bit;
	_Atomic uint64_t *w = inuse_word(pool, p, &bit);
	if (atomic_fetch_or_explicit(w, bit, memory_order_acq_rel) & bit)
		_iop_die(pool, "object %p handed out while in flight: the pool's free lists are corrupt", p);
	ASAN_UNPOISON(p, pool->hot.stride);
	long off = _iop_poison_check(pool, p);
	if (off >= 0)
		_iop_die(pool, "use after free: object %p was written at offset %ld while it was free", p, off);
}

void _iop_checked_on_free(struct iop_pool *pool, void *p)
{
	uint64_t bit;
	_Atomic uint64_t *w = inuse_word(pool, p, &bit);
	if (pool->refcount) {
		_iop_buf_check_free(pool, _iop_map_chunk_of(p), (uint32_t)iop__obj_number(pool, p), p);
	}
	if (!(atomic_fetch_and_explicit(w, ~bit, memory_order_acq_rel) & bit))
		_iop_die(pool, "double free of %p", p);
	_iop_poison_fill(pool, p);
}
