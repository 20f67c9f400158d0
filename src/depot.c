/* SPDX-License-Identifier: MIT */
/*
 * Depot: full and empty magazines per pool, traded with thread caches a
 * whole magazine at a time, so the lock is taken once per magazine rather
 * than once per object. All calls here run under pool->lock.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

struct iop_mag *_iop_mag_new(struct iop_pool *pool)
{
	struct iop_mag *m = malloc(sizeof(*m) + pool->mag_cap * sizeof(void *));
	if (!m)
		return NULL;
	m->next = NULL;
	m->count = 0;
	m->cap = pool->mag_cap;
	COUNT(&pool->mag_alloc, 1);
	return m;
}

static struct iop_mag *take_full(struct iop_pool *pool, struct iop_dom *dom)
{
	struct iop_mag *m = dom->full;
	if (m) {
		dom->full = m->next;
		dom->nfull--;
		pool->nfull--;
		dom->depot_objs -= m->count;
		pool->depot_objs -= m->count;
		if (dom->depot_objs < dom->depot_min)
			dom->depot_min = dom->depot_objs;
		COUNT(&pool->depot_get, 1);
	}
	return m;
}

struct iop_mag *_iop_depot_take_full(struct iop_pool *pool, unsigned d, bool any)
{
	struct iop_mag *m = take_full(pool, &pool->dom[d]);
	for (unsigned i = 1; !m && any && i < _iop_ndomains; i++)
		m = take_full(pool, &pool->dom[(d + i) % _iop_ndomains]);
	return m;
}

struct iop_mag *_iop_depot_take_empty(struct iop_pool *pool)
{
	struct iop_mag *m = pool->empty;
	if (m) {
		pool->empty = m->next;
		pool->nempty--;
		return m;
	}
	return _iop_mag_new(pool);
}

/* The domain of m's first object; objects of other domains in m (freed by
 * threads that took them from another domain's depot or slab) go back to
 * their chunks, so no depot holds another domain's memory. One map load
 * per object, once per magazine, and only with several domains. */
static unsigned send_home(struct iop_pool *pool, struct iop_mag *m)
{
	unsigned d = _iop_map_chunk_of(m->obj[0])->domain, keep = 1;
	for (unsigned i = 1; i < m->count; i++) {
		if (_iop_map_chunk_of(m->obj[i])->domain == d) {
			m->obj[keep++] = m->obj[i];
		} else {
			_iop_slab_put(pool, &m->obj[i], 1);
			COUNT(&pool->sent_home, 1);
		}
	}
	m->count = keep;
	return d;
}

void _iop_depot_put(struct iop_pool *pool, struct iop_mag *m)
{
	if (m->count) {
		struct iop_dom *dom = &pool->dom[_iop_ndomains > 1 ? send_home(pool, m) : 0];
		m->next = dom->full;
		dom->full = m;
		dom->nfull++;
		pool->nfull++;
		dom->depot_objs += m->count;
		pool->depot_objs += m->count;
		COUNT(&pool->depot_put, 1);
	} else {
		m->next = pool->empty;
		pool->empty = m;
		pool->nempty++;
	}
}

unsigned _iop_depot_fill(struct iop_pool *pool, unsigned d, struct iop_mag *m)
{
	unsigned got = _iop_slab_get_or_grow(pool, d, m->obj + m->count, m->cap - m->count);
	m->count += got;
	return got;
}

static void free_list(struct iop_mag *m)
{
	while (m) {
		struct iop_mag *next = m->next;
		free(m);
		m = next;
	}
}

void _iop_depot_free_all(struct iop_pool *pool)
{
	for (unsigned d = 0; d < IOP_MAX_DOMAINS; d++) {
		free_list(pool->dom[d].full);
		pool->dom[d].full = NULL;
		pool->dom[d].nfull = pool->dom[d].depot_objs = 0;
	}
	free_list(pool->empty);
	pool->empty = NULL;
	pool->nfull = pool->nempty = 0;
	pool->depot_objs = 0;
}
