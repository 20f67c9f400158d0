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

struct iop_mag *_iop_depot_take_full(struct iop_pool *pool)
{
	struct iop_mag *m = pool->full;
	if (m) {
		pool->full = m->next;
		pool->nfull--;
		pool->depot_objs -= m->count;
		COUNT(&pool->depot_get, 1);
	}
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

void _iop_depot_put(struct iop_pool *pool, struct iop_mag *m)
{
	if (m->count) {
		m->next = pool->full;
		pool->full = m;
		pool->nfull++;
		pool->depot_objs += m->count;
		COUNT(&pool->depot_put, 1);
	} else {
		m->next = pool->empty;
		pool->empty = m;
		pool->nempty++;
	}
}

unsigned _iop_depot_fill(struct iop_pool *pool, struct iop_mag *m)
{
	unsigned got = _iop_slab_get_or_grow(pool, m->obj + m->count, m->cap - m->count);
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
	free_list(pool->full);
	free_list(pool->empty);
	pool->full = pool->empty = NULL;
	pool->nfull = pool->nempty = 0;
	pool->depot_objs = 0;
}
