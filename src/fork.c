/* SPDX-License-Identifier: MIT */
/*
 * fork(): the pthread_atfork handlers.
 *
 * Before the fork, the forking thread takes every iopool lock, in the order
 * internal.h gives (heap_lock, pub.ctl, wk_ctl, the registry, each pool's
 * cpu_lock, lock and waiter lock by id, wk_lock, the workers' mutexes,
 * pub.lock, the heap's cache_lock, prof_lock): no other thread is then in
 * the middle of changing what a lock guards, so the child's copy of every
 * depot, slab, list and table is whole. The parent lets go of them. The
 * child makes them anew (and the condition variables that threads of the
 * parent were waiting on: glibc's would still count those waiters), and
 * then, with its one thread and locks taken as usual:
 *
 *   - forgets the threads that did not come along: their per-thread
 *     caches go to the depot (registry.c), worker references and bounded
 *     waiters they held are dropped; checked pools get back the objects
 *     those threads were carrying between a cache and the caller, and a
 *     bounded pool's in-flight count is what the child can account for;
 *   - per-CPU slots are process memory and stay: a drain holds cpu_lock
 *     from closing a slot to reopening it, so none is left closed;
 *   - the refill workers and the publisher are started again, as this
 *     process's own (the publisher under its pid), by the child's first
 *     call that may block (_iop_fork_resume): a child that execs at once
 *     starts no thread;
 *   - profiling folds the counts of threads that did not come along into
 *     their sites (profile.c).
 *
 * A fork() from inside a hook works: hooks run with no iopool lock held.
 * The child then keeps whatever its thread holds in the middle of the call
 * that ran the hook (objects of a bulk allocation not yet handed out, a
 * bounded pool's reservation, bound.c counts it), so it does not take back
 * other threads' objects in transit: it could not tell them from its own.
 * A checked pool's audit in that child may then report them.
 */
#include <pthread.h>

#include "internal.h"

static void pool_prepare(struct iop_pool *pool, void *arg)
{
	(void)arg;
	_iop_pool_atfork(pool, IOP_FORK_PREPARE);
}

static void pool_parent(struct iop_pool *pool, void *arg)
{
	(void)arg;
	_iop_pool_atfork(pool, IOP_FORK_PARENT);
}

static void pool_child(struct iop_pool *pool, void *arg)
{
	(void)arg;
	_iop_pool_atfork(pool, IOP_FORK_CHILD);
}

static void prepare(void)
{
	_iop_heap_atfork(IOP_FORK_PREPARE, false);
	_iop_publish_atfork(IOP_FORK_PREPARE, false);
	_iop_worker_atfork(IOP_FORK_PREPARE, false);
	_iop_registry_atfork(IOP_FORK_PREPARE);
	_iop_for_each_pool(pool_prepare, NULL);
	_iop_worker_atfork(IOP_FORK_PREPARE, true);
	_iop_publish_atfork(IOP_FORK_PREPARE, true);
	_iop_heap_atfork(IOP_FORK_PREPARE, true);
	_iop_profile_atfork(IOP_FORK_PREPARE);
}

/* In reverse: the pools are reached through the registry, still held. */
static void release(int phase, void (*each)(struct iop_pool *, void *))
{
	_iop_profile_atfork(phase);
	_iop_heap_atfork(phase, true);
	_iop_publish_atfork(phase, true);
	_iop_worker_atfork(phase, true);
	_iop_for_each_pool(each, NULL);
	_iop_registry_atfork(phase);
	_iop_worker_atfork(phase, false);
	_iop_publish_atfork(phase, false);
	_iop_heap_atfork(phase, false);
}

static void parent(void)
{
	release(IOP_FORK_PARENT, pool_parent);
}

/* What the child keeps of a pool: see the top of the file. */
static void pool_reset(struct iop_pool *pool, void *arg)
{
	bool in_hook = *(bool *)arg;
	_iop_worker_fork_pool(pool);
	if (!pool->checked && !pool->bound)
		return;
	uint64_t in_flight = _iop_pool_fork_recover(pool, !in_hook);
	if (pool->bound && in_flight != UINT64_MAX)
		_iop_bound_fork_in_flight(pool, in_flight);
}

static void child(void)
{
	release(IOP_FORK_CHILD, pool_child);
	_iop_registry_forget_threads();
	bool in_hook = _iop_hook_top != NULL;
	_iop_registry_lock();
	_iop_for_each_pool(pool_reset, &in_hook);
	_iop_registry_unlock();
}

/* At load: a process may fork before its first pool (a publisher, the
 * heap). Handlers of a dlopen()ed copy go when it is unloaded (glibc
 * registers them with the object's handle). */
__attribute__((constructor)) static void fork_init(void)
{
	/* Not in a ThreadSanitizer build: gcc 12's TSan sees the locks the
	 * prepare handler takes but not the parent handler's unlocks, and
	 * reports every later lock of them as a double lock. */
	if (IOP__LIB_TSAN)
		return;
	if (pthread_atfork(prepare, parent, child) != 0)
		_iop_msg("fork", "pthread_atfork failed: a child of fork() may inherit locks held by other threads");
}
