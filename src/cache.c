/* SPDX-License-Identifier: MIT */
/*
 * The library side of the inline calls: what runs when the inline code in
 * include/iopool/inline.h cannot finish, and iop_alloc_ex(). Each call goes
 * to the cache that serves its pool: the per-CPU slots (ccache.c) for
 * unchecked, unbounded pools in the per-CPU mode; per-thread slots
 * (tcache.c) for the rest; bound.c for bounded pools. The bookkeeping of
 * every object handed out or given back off the inline path (checked
 * mode, ASan poisoning) happens here, once.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "internal.h"

/* A child of fork() starts its refill workers and its publisher at its
 * first call that may block: a cache refilled from the depot with grow,
 * a bulk allocation, iop_alloc_ex() without IOP_NOWAIT, a pool's
 * creation. No IOP_NOWAIT call starts a thread, and the per-object paths
 * check only when they go to the depot. */
void _iop_fork_resume_slow(void)
{
	if (!atomic_exchange(&_iop_forked, 0))
		return;
	_iop_worker_resume();
	_iop_publish_resume();
}

static void *handed_out(struct iop_pool *pool, void *p)
{
	if (p) {
		_iop_on_alloc(pool, p);
	} else {
		COUNT(&pool->alloc_fail, 1); /* errno: ENOMEM, or the map hook's */
		_iop_worker_wake(pool, _iop_domain_here(), IOP_WAKE_FAIL);
	}
	return p;
}

/* An unbounded pool's allocation off the inline path; without grow, from
 * the caches and the depot only (no chunk mapped, no lock waited for). */
static void *unbounded_alloc(struct iop_pool *pool, bool grow)
{
	void *p;
	if (!pool->cpu_mode || _iop_cpu_alloc(pool, grow, &p))
		p = _iop_thread_alloc(pool, grow);
	return handed_out(pool, p);
}

/* A free the hooks up the stack forbid: the pool is being destroyed, so
 * nothing of it is in flight (iopool.h's table). */
static _Noreturn IOP_COLD void refused_free(struct iop_pool *pool, const void *obj)
{
	_iop_die(pool, "free of %p refused: see the message above", obj);
}

/* Inside a hook: the table may refuse the allocation (a call of its own,
 * as free_in_hook()). */
static IOP_COLD void *alloc_in_hook(iop_pool_t *pool)
{
	int err = _iop_hook_refuse(pool, IOP_CALL_ALLOC);
	if (err) {
		errno = -err;
		return NULL;
	}
	return unbounded_alloc(pool, true);
}

/* IOP_NOWAIT, without counting a failure (iop_alloc_bulk_ex's extras). */
static void *unbounded_alloc_quiet(struct iop_pool *pool)
{
	void *p;
	if (!pool->cpu_mode || _iop_cpu_alloc(pool, false, &p))
		p = _iop_thread_alloc(pool, false);
	if (p)
		_iop_on_alloc(pool, p);
	return p;
}

/* A NULL pool reaches the library only from the exported calls (the inline
 * ones never test it; iopool.h, "A NULL pool"). */
static IOP_COLD void *null_pool(const char *who)
{
	_iop_msg(who, "pool is NULL");
	errno = EINVAL;
	return NULL;
}

void *iop__alloc_slow(iop_pool_t *pool)
{
	if (unlikely(!pool))
		return null_pool("iop_alloc");
	if (pool->bound) {
		/* The hooks' refusals: bound.c, once the pool is shut down. */
		void *p;
		int rc = _iop_bounded_alloc(pool, &p, 0, 0);
		if (rc)
			errno = -rc;
		return p;
	}
	if (unlikely(_iop_hook_top != NULL))
		return alloc_in_hook(pool);
	return unbounded_alloc(pool, true);
}

int iop_alloc_ex(iop_pool_t *pool, void **objp, unsigned how, int64_t timeout_ns)
{
	if (objp)
		*objp = NULL;
	if (!pool || !objp || (how & ~(IOP_NOWAIT | IOP_WAIT | IOP_ABSTIME)) ||
	    ((how & IOP_NOWAIT) && (how & (IOP_WAIT | IOP_ABSTIME))) || ((how & IOP_ABSTIME) && !(how & IOP_WAIT)) ||
	    ((how & IOP_WAIT) && !(how & IOP_ABSTIME) && timeout_ns < 0))
		return -EINVAL;
	if (!(how & IOP_NOWAIT))
		_iop_fork_resume();
	if (pool->bound) {
		int64_t deadline = 0;
		if (how & IOP_WAIT)
			deadline = (how & IOP_ABSTIME) ? timeout_ns : _iop_deadline(timeout_ns);
		return _iop_bounded_alloc(pool, objp, how, deadline);
	}
	int refused = _iop_hook_check(pool, IOP_CALL_ALLOC);
	if (refused)
		return refused;
	void *p;
	if (how & IOP_NOWAIT) {
		p = unbounded_alloc(pool, false);
		if (!p) {
			COUNT(&pool->fail_nowait, 1);
			return -ENOMEM;
		}
	} else {
		int saved = errno;
		p = iop_alloc(pool);
		if (!p) {
			int err = errno;
			errno = saved;
			COUNT(how & IOP_WAIT ? &pool->fail_wait : &pool->fail_default, 1);
			return -err;
		}
	}
	*objp = p;
	return 0;
}

int iop_alloc_bulk_ex(iop_pool_t *pool, void **objs, unsigned n, unsigned how, int64_t timeout_ns)
{
	if (!objs || n == 0 || n > INT_MAX)
		return -EINVAL;
	int rc = iop_alloc_ex(pool, &objs[0], how, timeout_ns);
	if (rc)
		return rc;
	unsigned got = 1;
	if (n == 1)
		return 1;
	if (pool->bound) {
		got += _iop_bounded_take_more(pool, objs + 1, n - 1, how);
	} else if (how & IOP_NOWAIT) {
		void *p;
		while (got < n && (p = unbounded_alloc_quiet(pool)) != NULL)
			objs[got++] = p;
	} else {
		int saved = errno;
		got += iop_alloc_bulk(pool, objs + 1, n - 1);
		errno = saved;
	}
	return (int)got;
}

static inline void free_to_cache(iop_pool_t *pool, void *obj)
{
	if (pool->bound) {
		_iop_bounded_free(pool, obj);
		return;
	}
	_iop_on_free(pool, obj);
	if (!pool->cpu_mode || _iop_cpu_free(pool, obj))
		_iop_thread_free(pool, obj);
}

/* Inside a hook: the table may refuse the free. A call of its own, so that
 * the common path needs no stack frame (a tail call each way). */
static IOP_COLD void free_in_hook(iop_pool_t *pool, void *obj)
{
	if (_iop_hook_refuse(pool, IOP_CALL_FREE))
		refused_free(pool, obj);
	free_to_cache(pool, obj);
}

/* obj passed the owner check (or pool is NULL). */
void iop__free_slow(iop_pool_t *pool, void *obj)
{
	if (unlikely(!pool)) {
		if (obj)
			iop__bad_free(pool, obj);
		return;
	}
	if (unlikely(_iop_hook_top != NULL))
		free_in_hook(pool, obj);
	else
		free_to_cache(pool, obj);
}

unsigned iop__alloc_bulk_slow(iop_pool_t *pool, void **objs, unsigned n)
{
	if (unlikely(!pool)) {
		null_pool("iop_alloc_bulk");
		return 0;
	}
	if (n == 0)
		return 0;
	_iop_fork_resume();
	unsigned got = 0;
	if (pool->bound)
		return _iop_bounded_alloc_bulk(pool, objs, n);
	int err = _iop_hook_check(pool, IOP_CALL_ALLOC);
	if (err) {
		errno = -err;
		return 0;
	}
	if (!pool->cpu_mode || _iop_cpu_alloc_bulk(pool, objs, n, &got))
		got = _iop_thread_alloc_bulk(pool, objs, n);
	for (unsigned i = 0; i < got; i++)
		_iop_on_alloc(pool, objs[i]);
	if (got < n)
		handed_out(pool, NULL); /* errno: ENOMEM, or the map hook's */
	return got;
}

/* Called with objects the inline code has not vouched for: check them all
 * before freeing any. */
void iop__free_bulk_slow(iop_pool_t *pool, void *const *objs, unsigned n)
{
	if (unlikely(!pool)) {
		for (unsigned i = 0; i < n; i++)
			if (objs[i])
				iop__bad_free(pool, objs[i]);
		return;
	}
	if (n && _iop_hook_check(pool, IOP_CALL_FREE))
		refused_free(pool, objs[0]);
	for (unsigned i = 0; i < n; i++)
		if (objs[i] && !iop__owned(pool, objs[i]))
			iop__bad_free(pool, objs[i]);
	if (pool->bound && !pool->cpu_mode) {
		_iop_bounded_free_bulk(pool, objs, n);
		return;
	}
	/* Checked mode checks every object (double frees inside the array
	 * too) before any is freed. */
	for (unsigned i = 0; i < n; i++)
		if (objs[i])
			_iop_on_free(pool, objs[i]);
	/* Runs without NULL entries, a batch at a time. */
	void *batch[64];
	unsigned k = 0;
	for (unsigned i = 0; i <= n; i++) {
		if (i < n && objs[i])
			batch[k++] = objs[i];
		if (k && (k == 64 || i == n)) {
			if (!pool->cpu_mode || _iop_cpu_free_bulk(pool, batch, k))
				_iop_thread_free_bulk(pool, batch, k);
			k = 0;
		}
	}
	if (pool->bound)
		_iop_bound_kick(pool);
}

int64_t iop_pool_flush(iop_pool_t *pool)
{
	if (!pool)
		return -EINVAL;
	int err = _iop_hook_check(pool, IOP_CALL_FLUSH);
	if (err)
		return err;
	int64_t moved = (int64_t)_iop_cpu_drain(pool);
	_iop_registry_lock();
	struct iop_tcache *tc = _iop_my_slot_if_any(pool);
	if (tc) {
		moved += (int64_t)_iop_tcache_objs(tc);
		_iop_tcache_drain(pool, tc, NULL);
	}
	_iop_registry_unlock();
	return moved;
}
