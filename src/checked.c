// SPDX-License-Identifier: MIT
/*
 * Checks of what callers hand back. In every build: an address that is not
 * an object of the pool (not from any pool, another pool's, interior, past
 * the last object) is refused with a message that names it. In checked mode
 * (IOP_F_CHECKED, IOPOOL_CHECKED, every pool at IOP_DEBUG >= 2) every object
 * handed out or given back also passes here, off the inline path:
 *
 *   in flight  one bit per object (chunk->inuse, allocated by the slab with
 *              the chunk's descriptor): set when handed out, cleared when
 *              given back, so a double free, or a free of an object never
 *              handed out, is caught at once.
 *   poison     a free object is filled with IOP_POISON_BYTE; an object
 *              handed out must still hold it, so a write after free is
 *              caught (with the offset it was written at).
 *   refcount   a refcounted buffer given back with iop_free() must have no
 *              references left (iop_buf_put releases it instead). The count
 *              lives in the chunk's tail (iop__refs()), so it is read here,
 *              without calling up into buf.c.
 */
#include <string.h>

#include "internal.h"

/* ---- foreign addresses (every build) --------------------------------------- */

struct iop_chunk *_iop_chunk_or_die(struct iop_pool *pool, const void *p, const char *what)
{
	if (!pool)
		_iop_fatal(what, "%p with a NULL pool", p);
	struct iop_pool *owner = _iop_map_pool(p);
	if (!owner)
		_iop_die(pool, "%s of %p: not from any pool", what, p);
	if (owner != pool)
		_iop_die(pool, "%s of %p: it belongs to pool '%s'", what, p, owner->name);
	return _iop_map_chunk_of(p);
}

void iop__bad_free(iop_pool_t *pool, const void *p)
{
	struct iop_chunk *c = _iop_chunk_or_die(pool, p, "invalid free");
	uint64_t off = (uint64_t)((uintptr_t)p - (uintptr_t)c->base);
	uint64_t idx = off / pool->hot.stride;
	if (idx < pool->hot.objs_per_chunk)
		_iop_die(pool, "invalid free of %p: interior pointer, %llu bytes into the object at %p", p,
			 (unsigned long long)(off - idx * pool->hot.stride), (void *)(c->base + idx * pool->hot.stride));
	_iop_die(pool, "invalid free of %p: not an object, %llu bytes past the last object of its chunk", p,
		 (unsigned long long)(off - pool->hot.objs_per_chunk * pool->hot.stride));
}

/* ---- checked mode ---------------------------------------------------------- */


void _iop_poison_fill(const struct iop_pool *pool, void *p)
{
	FREE_UNPOISON(p, pool->hot.stride);
	memset(p, IOP_POISON_BYTE, pool->hot.stride);
	FREE_POISON(p, pool->hot.stride);
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

static _Atomic uint64_t *inuse_word(struct iop_pool *pool, const void *p, uint32_t *idx, uint64_t *bit)
{
	struct iop_chunk *c = _iop_map_chunk_of(p);
	*idx = (uint32_t)iop__obj_number(pool, p);
	*bit = 1ull << (*idx & 63);
	return &c->inuse[*idx >> 6];
}

void _iop_checked_on_alloc(struct iop_pool *pool, void *p)
{
	uint32_t idx;
	uint64_t bit;
	_Atomic uint64_t *w = inuse_word(pool, p, &idx, &bit);
	if (atomic_fetch_or_explicit(w, bit, memory_order_acq_rel) & bit)
		_iop_die(pool, "object %p handed out while in flight: the pool's free lists are corrupt", p);
	FREE_UNPOISON(p, pool->hot.stride);
	long off = _iop_poison_check(pool, p);
	if (off >= 0)
		_iop_die(pool, "use after free: object %p was written at offset %ld while it was free", p, off);
}

void _iop_checked_on_free(struct iop_pool *pool, void *p)
{
	uint32_t idx;
	uint64_t bit;
	_Atomic uint64_t *w = inuse_word(pool, p, &idx, &bit);
	if (pool->refcount) {
		uint32_t n = ALOAD(iop__refs(pool, p, idx));
		if (n)
			_iop_die(pool,
				 "iop_free of %p, a refcounted buffer with %u references: release it with iop_buf_put",
				 p, n);
	}
	/* Not in flight: freed already, or never handed out (an object in a
	 * cache, the depot or the slab). */
	if (!(atomic_fetch_and_explicit(w, ~bit, memory_order_acq_rel) & bit))
		_iop_die(pool, "double free of %p: the object is not in flight (freed already, or never handed out)",
			 p);
	_iop_poison_fill(pool, p);
}

bool _iop_checked_in_flight(struct iop_pool *pool, const void *p)
{
	uint32_t idx;
	uint64_t bit;
	return (atomic_load_explicit(inuse_word(pool, p, &idx, &bit), memory_order_acquire) & bit) != 0;
}
