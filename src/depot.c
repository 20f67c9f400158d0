/* SPDX-License-Identifier: MIT */
/*
 * Depot: full and empty magazines per pool, traded with thread caches a
 * whole magazine at a time, so the lock is taken once per magazine rather
 * than once per object. All calls here run under pool->lock unless said.
 *
 * struct iop_depot is this file's: the lists and every total over them
 * (the pool's and each domain's) change only here. The refill worker, the
 * decay, shrink and iop_pool_create() call the operations below; the
 * objects move down to the slab and come up from it through slab.c's calls.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

/* The low mark of decay: the fewest objects the domain held since the
 * last pass. */
static void note_low(struct iop_depot_dom *dom)
{
	if (dom->objs < dom->min)
		dom->min = dom->objs;
}

/* k objects left domain dom's full lists (taken, or sent to the slab). */
static void count_out(struct iop_depot *dp, struct iop_depot_dom *dom, uint64_t k)
{
	dom->objs -= k;
	dp->objs -= k;
	note_low(dom);
}

static void unlink_full(struct iop_depot *dp, struct iop_depot_dom *dom, struct iop_mag *m)
{
	dom->full = m->next;
	dom->nfull--;
	dp->nfull--;
}

static struct iop_mag *take_full(struct iop_pool *pool, struct iop_depot_dom *dom)
{
	struct iop_mag *m = dom->full;
	if (m) {
		unlink_full(&pool->depot, dom, m);
		count_out(&pool->depot, dom, m->count);
		COUNT(&pool->depot_get, 1);
	}
	return m;
}

struct iop_mag *_iop_depot_take_full(struct iop_pool *pool, unsigned d, bool any)
{
	struct iop_mag *m = take_full(pool, &pool->depot.dom[d]);
	for (unsigned i = 1; !m && any && i < _iop_ndomains; i++)
		m = take_full(pool, &pool->depot.dom[(d + i) % _iop_ndomains]);
	return m;
}

struct iop_mag *_iop_depot_take_empty(struct iop_pool *pool)
{
	struct iop_depot *dp = &pool->depot;
	struct iop_mag *m = dp->empty;
	if (m) {
		dp->empty = m->next;
		dp->nempty--;
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
	unsigned d = _iop_slab_domain_of(m->obj[0]), keep = 1;
	for (unsigned i = 1; i < m->count; i++) {
		if (_iop_slab_domain_of(m->obj[i]) == d) {
			m->obj[keep++] = m->obj[i];
		} else {
			_iop_slab_put(pool, &m->obj[i], 1);
			COUNT(&pool->sent_home, 1);
		}
	}
	_iop_vg_forget(m->obj + keep, (m->count - keep) * sizeof(void *));
	m->count = keep;
	return d;
}

void _iop_depot_put(struct iop_pool *pool, struct iop_mag *m)
{
	struct iop_depot *dp = &pool->depot;
	if (m->count) {
		struct iop_depot_dom *dom = &dp->dom[_iop_ndomains > 1 ? send_home(pool, m) : 0];
		m->next = dom->full;
		dom->full = m;
		dom->nfull++;
		dp->nfull++;
		dom->objs += m->count;
		dp->objs += m->count;
		COUNT(&pool->depot_put, 1);
	} else {
		m->next = dp->empty;
		dp->empty = m;
		dp->nempty++;
	}
}

/*
 * Up to n objects for a bulk call, copied into dst from the tops of domain
 * d's full magazines (then, with any, other domains'): a magazine emptied
 * goes to the empty list, one left partly full stays where it is. So a
 * call that spans several magazines takes the lock once.
 */
unsigned _iop_depot_get_objs(struct iop_pool *pool, unsigned d, bool any, void **dst, unsigned n)
{
	struct iop_depot *dp = &pool->depot;
	unsigned got = 0;
	for (unsigned i = 0; got < n && i < (any ? _iop_ndomains : 1); i++) {
		struct iop_depot_dom *dom = &dp->dom[(d + i) % _iop_ndomains];
		while (got < n && dom->full) {
			struct iop_mag *m = dom->full;
			unsigned k = n - got < m->count ? n - got : m->count;
			memcpy(dst + got, m->obj + m->count - k, k * sizeof(void *));
			m->count -= k;
			count_out(dp, dom, k);
			got += k;
			COUNT(&pool->depot_get, 1);
			if (m->count == 0) {
				unlink_full(dp, dom, m);
				_iop_depot_put(pool, m);
			}
		}
	}
	return got;
}

void _iop_depot_put_objs(struct iop_pool *pool, void *const *src, unsigned n)
{
	while (n) {
		struct iop_mag *m = _iop_depot_take_empty(pool);
		if (!m) {
			/* No memory for a magazine: back to their chunks. */
			_iop_slab_put(pool, src, n);
			return;
		}
		unsigned k = n < m->cap ? n : m->cap;
		memcpy(m->obj, src, k * sizeof(void *));
		m->count = k;
		_iop_depot_put(pool, m);
		src += k;
		n -= k;
	}
}

unsigned _iop_depot_fill(struct iop_pool *pool, unsigned d, struct iop_mag *m)
{
	int status;
	unsigned got = _iop_slab_get_or_grow(pool, d, m->obj + m->count, m->cap - m->count, &status);
	m->count += got;
	/* For the thread cache, whose callers report errno. At the carving
	 * limit there is no memory to be had here; bound.c asks the slab
	 * whether waiting on other threads' caches can help. */
	if (!got && status)
		errno = status == -ENOBUFS ? ENOMEM : -status;
	return got;
}

int _iop_depot_reserve(struct iop_pool *pool, unsigned d, uint64_t high, uint64_t *added)
{
	struct iop_depot_dom *dom = &pool->depot.dom[d];
	*added = 0;
	while (dom->objs < high) {
		struct iop_mag *m = _iop_depot_take_empty(pool);
		if (!m)
			return -ENOMEM;
		/* Whole magazines, of this domain's objects only. */
		m->count = _iop_slab_get(pool, d, m->obj, m->cap);
		*added += m->count;
		/* Counted before the lock is dropped (around a later mmap), so
		 * no reader sees more objects taken than refilled. */
		COUNT(&pool->refill_objs, m->count);
		bool got = m->count != 0;
		_iop_depot_put(pool, m);
		if (got)
			continue;
		/* The worker's chunks come faulted in: that is the slow work
		 * it does so that IOP_NOWAIT callers need not. */
		int rc = _iop_slab_grow(pool, d, IOP_F_PREFAULT);
		if (rc)
			return rc;
	}
	return 0;
}

uint64_t _iop_depot_release(struct iop_pool *pool, unsigned d, uint64_t n)
{
	struct iop_depot *dp = &pool->depot;
	struct iop_depot_dom *dom = &dp->dom[d];
	uint64_t moved = 0;
	while (moved < n && dom->full) {
		struct iop_mag *m = dom->full;
		unsigned k = n - moved < m->count ? (unsigned)(n - moved) : m->count;
		_iop_slab_put(pool, m->obj + m->count - k, k);
		m->count -= k;
		_iop_vg_forget(m->obj + m->count, k * sizeof(void *));
		count_out(dp, dom, k);
		moved += k;
		if (m->count == 0) {
			unlink_full(dp, dom, m);
			free(m);
		}
	}
	note_low(dom);
	return moved;
}

/*
 * All of d's depot objects go back to their chunks, the partial list is
 * sorted by free objects (fewest first), and the depot is refilled from its
 * head. Otherwise the objects decay keeps would be spread over every chunk
 * and no chunk would ever be wholly free.
 */
uint64_t _iop_depot_compact(struct iop_pool *pool, unsigned d, uint64_t keep)
{
	uint64_t had = pool->depot.dom[d].objs;
	if (had <= keep)
		return 0;
	_iop_depot_release(pool, d, had);
	_iop_slab_sort_partial(pool, d);
	uint64_t kept = 0;
	while (kept < keep) {
		struct iop_mag *m = _iop_depot_take_empty(pool);
		if (!m)
			break;
		uint64_t want = keep - kept < m->cap ? keep - kept : m->cap;
		m->count = _iop_slab_get(pool, d, m->obj, (unsigned)want);
		kept += m->count;
		_iop_depot_put(pool, m);
		if (m->count < want)
			break;
	}
	return had - kept;
}

uint64_t _iop_depot_decay(struct iop_pool *pool, unsigned d, uint64_t floor, uint32_t pct)
{
	struct iop_depot_dom *dom = &pool->depot.dom[d];
	uint64_t idle = dom->min > floor ? dom->min - floor : 0;
	uint64_t n = (idle * pct + 99) / 100, moved = 0;
	if (n)
		moved = _iop_depot_compact(pool, d, dom->objs - n);
	dom->min = dom->objs;
	return moved;
}

int _iop_depot_populate(struct iop_pool *pool, unsigned d, uint64_t want)
{
	pthread_mutex_lock(&pool->lock);
	while (pool->depot.objs < want) {
		struct iop_mag *m = _iop_mag_new(pool);
		if (!m || _iop_depot_fill(pool, d, m) == 0) {
			int err = m ? errno : ENOMEM;
			free(m);
			pthread_mutex_unlock(&pool->lock);
			return -err;
		}
		_iop_depot_put(pool, m);
	}
	_iop_slab_prefault(pool);
	pthread_mutex_unlock(&pool->lock);
	return 0;
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
	struct iop_depot *dp = &pool->depot;
	for (unsigned d = 0; d < IOP_MAX_DOMAINS; d++) {
		free_list(dp->dom[d].full);
		dp->dom[d].full = NULL;
		dp->dom[d].nfull = dp->dom[d].objs = 0;
	}
	free_list(dp->empty);
	dp->empty = NULL;
	dp->nfull = dp->nempty = 0;
	dp->objs = 0;
}
