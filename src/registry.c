/* SPDX-License-Identifier: MIT */
/*
 * The registry: every live pool by id, and every thread that holds
 * per-thread cache slots, with the thread-exit hook that empties them.
 *
 * Pool ids index the threads' slot tables; the table of pools grows as
 * pools are created (no fixed limit) and ids are reused after destroy.
 * A thread's slots live in blocks of SLOTS_PER_BLOCK, allocated when the
 * thread first calls a pool whose id falls in the block, and never moved,
 * so a slot's address stays valid while a hook run from inside a call on
 * it creates more pools. The thread reaches its record through one TLS
 * pointer (dynamic TLS model: the library may be dlopen()ed).
 *
 * Lock order: the registry lock before a pool's cpu_lock and lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* 64 slots of 64 bytes: one 4 KiB page per block. */
#define SLOTS_PER_BLOCK 64u

struct iop_thread {
	struct iop_thread *next, *prev;
	struct iop_tcache **blocks; /* by pool id / SLOTS_PER_BLOCK */
	uint32_t nblocks;
};

/* NULL: the thread has no record yet; &exited: its exit hook ran, and its
 * calls from now on bypass the per-thread caches. */
static __thread struct iop_thread *self;
static struct iop_thread exited;

static pthread_mutex_t registry = PTHREAD_MUTEX_INITIALIZER;
static struct iop_thread *threads; /* with a record */
static struct iop_pool **pools;    /* by id; NULL: free id */
static uint32_t npools;            /* entries in pools[] */
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

void _iop_registry_lock(void)
{
	pthread_mutex_lock(&registry);
}

void _iop_registry_unlock(void)
{
	pthread_mutex_unlock(&registry);
}

int _iop_pool_register(struct iop_pool *pool)
{
	uint32_t id = 0;
	while (id < npools && pools[id])
		id++;
	if (id == npools) {
		uint32_t n = npools ? npools * 2 : 64;
		struct iop_pool **p = realloc(pools, n * sizeof(*p));
		if (!p)
			return -ENOMEM;
		memset(p + npools, 0, (n - npools) * sizeof(*p));
		pools = p;
		npools = n;
	}
	pools[id] = pool;
	pool->id = id;
	return 0;
}

void _iop_pool_unregister(struct iop_pool *pool)
{
	pools[pool->id] = NULL;
}

void _iop_for_each_pool(void (*fn)(struct iop_pool *, void *), void *arg)
{
	for (uint32_t id = 0; id < npools; id++)
		if (pools[id])
			fn(pools[id], arg);
}

struct iop_pool *_iop_pool_by_id(uint32_t id)
{
	return id < npools ? pools[id] : NULL;
}

uint32_t _iop_pool_ids(void)
{
	return npools;
}

static struct iop_tcache *slot_of(struct iop_thread *t, uint32_t id)
{
	uint32_t b = id / SLOTS_PER_BLOCK;
	return b < t->nblocks && t->blocks[b] ? &t->blocks[b][id % SLOTS_PER_BLOCK] : NULL;
}

/* The slots of a pool are found by its id, and a destroyed pool's id is
 * given to the next pool created: a pool that is no longer registered has
 * no slots (its destroy emptied them while it was). iop_reclaim() and the
 * workers hold a pool across its unregistering, and must not take the new
 * pool's objects into the old one's depot (issue 17). */
static bool registered(const struct iop_pool *pool)
{
	return pool->id < npools && pools[pool->id] == pool;
}

void _iop_for_each_tcache(struct iop_pool *pool, void (*fn)(struct iop_pool *, struct iop_tcache *, void *),
			  void *arg)
{
	if (!registered(pool))
		return;
	for (struct iop_thread *t = threads; t; t = t->next) {
		struct iop_tcache *tc = slot_of(t, pool->id);
		if (tc && tc->ready)
			fn(pool, tc, arg);
	}
}

/* Every set-up slot of thread t; registry locked. */
static void drain_thread(struct iop_thread *t)
{
	for (uint32_t b = 0; b < t->nblocks; b++) {
		for (uint32_t i = 0; t->blocks[b] && i < SLOTS_PER_BLOCK; i++) {
			struct iop_tcache *tc = &t->blocks[b][i];
			struct iop_pool *pool = _iop_pool_by_id(b * SLOTS_PER_BLOCK + i);
			if (tc->ready && pool)
				_iop_tcache_drain(pool, tc, NULL);
		}
	}
}

/* Runs at thread exit (a pthread key destructor): nothing stays stranded. */
static void thread_exit(void *arg)
{
	struct iop_thread *t = arg;
	_iop_registry_lock();
	drain_thread(t);
	if (t->prev)
		t->prev->next = t->next;
	else
		threads = t->next;
	if (t->next)
		t->next->prev = t->prev;
	_iop_registry_unlock();
	for (uint32_t b = 0; b < t->nblocks; b++)
		free(t->blocks[b]);
	free(t->blocks);
	free(t);
	/* Other key destructors may still use iopool on this thread, also in
	 * glibc's last destructor round, after which nothing would unlink the
	 * thread again: from here on its calls bypass the per-thread caches. */
	self = &exited;
}

static void make_exit_key(void)
{
	if (pthread_key_create(&exit_key, thread_exit) != 0)
		_iop_fatal("thread registry", "cannot create the thread-exit key; "
					      "exiting threads would strand their cached objects");
}

/* The calling thread's record, made on its first call that needs one;
 * NULL past its exit hook or without memory. */
static struct iop_thread *my_thread(void)
{
	struct iop_thread *t = self;
	if (t)
		return t == &exited ? NULL : t;
	pthread_once(&exit_key_once, make_exit_key);
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	_iop_registry_lock();
	t->next = threads;
	if (threads)
		threads->prev = t;
	threads = t;
	_iop_registry_unlock();
	self = t;
	pthread_setspecific(exit_key, t);
	return t;
}

struct iop_tcache *_iop_my_slot(struct iop_pool *pool)
{
	struct iop_thread *t = my_thread();
	if (!t)
		return NULL;
	struct iop_tcache *tc = slot_of(t, pool->id);
	if (likely(tc && tc->ready))
		return tc;
	/* A new block, or a slot not set up since its pool's last destroy:
	 * under the registry lock, which every reader of other threads'
	 * slots holds. */
	uint32_t b = pool->id / SLOTS_PER_BLOCK;
	_iop_registry_lock();
	if (b >= t->nblocks) {
		uint32_t n = b + 1 > 2 * t->nblocks ? b + 1 : 2 * t->nblocks;
		struct iop_tcache **nb = realloc(t->blocks, n * sizeof(*nb));
		if (!nb) {
			_iop_registry_unlock();
			return NULL;
		}
		memset(nb + t->nblocks, 0, (n - t->nblocks) * sizeof(*nb));
		t->blocks = nb;
		t->nblocks = n;
	}
	if (!t->blocks[b] && !(t->blocks[b] = aligned_alloc(64, SLOTS_PER_BLOCK * sizeof(struct iop_tcache)))) {
		_iop_registry_unlock();
		return NULL;
	}
	if (!tc)
		memset(t->blocks[b], 0, SLOTS_PER_BLOCK * sizeof(struct iop_tcache));
	tc = &t->blocks[b][pool->id % SLOTS_PER_BLOCK];
	tc->ready = 1;
	_iop_registry_unlock();
	return tc;
}

void _iop_slot_reready(struct iop_tcache *tc)
{
	_iop_registry_lock();
	tc->ready = 1;
	_iop_registry_unlock();
}

struct iop_tcache *_iop_my_slot_if_any(struct iop_pool *pool)
{
	struct iop_thread *t = self;
	if (!t || t == &exited || !registered(pool))
		return NULL;
	struct iop_tcache *tc = slot_of(t, pool->id);
	return tc && tc->ready ? tc : NULL;
}

void iop_thread_flush(void)
{
	struct iop_thread *t = self;
	if (!t || t == &exited)
		return;
	_iop_registry_lock();
	drain_thread(t);
	_iop_registry_unlock();
}
