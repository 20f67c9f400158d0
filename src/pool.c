/* SPDX-License-Identifier: MIT */
/*
 * Pools: creation with parameter checks, destruction, queries, and the
 * checks of a freed address.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "os/os.h"
#include "options.h"

static void *einval(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void *einval(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_iop_vmsg(NULL, "iop_pool_create", fmt, ap);
	va_end(ap);
	errno = EINVAL;
	return NULL;
}

/* ---- creation ----------------------------------------------------------- */

static bool is_pow2(size_t x)
{
	return x && !(x & (x - 1));
}

/* Inverse of an odd number modulo 2^64 by Newton's iteration: each step
 * doubles the number of correct low bits, starting from 3 (m*m == 1 mod 8). */
static uint64_t inverse_odd(uint64_t m)
{
	uint64_t inv = m;
	for (int i = 0; i < 5; i++)
		inv *= 2 - m * inv;
	return inv;
}

/* What the inline bursts may use on this CPU (inline.h, IOP__SIMD_*). */
static uint8_t cpu_simd(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_cpu_init();
	return (uint8_t)((__builtin_cpu_supports("avx") ? IOP__SIMD_AVX : 0) |
			 (__builtin_cpu_supports("avx2") ? IOP__SIMD_AVX2 : 0));
#else
	return 0;
#endif
}

static void pool_free_memory(struct iop_pool *pool)
{
	_iop_depot_free_all(pool);
	_iop_slab_free_all(pool);
	_iop_cpu_pool_fini(pool);
	_iop_bound_free_memory(pool);
	pthread_mutex_destroy(&pool->lock);
	/* Under memcheck: the pool's blocks are forgotten with it. */
	_iop_vg_pool_destroy(pool);
	free(pool);
}

iop_pool_t *iop_pool_create(const struct iop_pool_params *params)
{
	return _iop_pool_make(params, false);
}

struct iop_pool *_iop_pool_make(const struct iop_pool_params *params, bool heap_class)
{
	struct iop_pool_params p = { 0 };
	if (!params)
		return einval("params is NULL");
	if (params->struct_size < IOP_POOL_PARAMS_SIZE_V1)
		return einval("params->struct_size is %u, want at least %zu (use IOP_POOL_PARAMS_INIT)",
			      params->struct_size, (size_t)IOP_POOL_PARAMS_SIZE_V1);
	/* A newer caller's extra fields must be at their defaults (zero); an
	 * older caller's missing ones take them. */
	for (size_t i = sizeof(p); i < params->struct_size; i++)
		if (((const unsigned char *)params)[i])
			return einval("params sets fields this library does not know (byte %zu)", i);
	memcpy(&p, params, params->struct_size < sizeof(p) ? params->struct_size : sizeof(p));

	if (p.flags & ~IOP_F_ALL)
		return einval("unknown flags 0x%x", p.flags & ~IOP_F_ALL);
	if (p.reserved0)
		return einval("reserved0 must be zero");
	if (p.obj_size < IOP_OBJ_SIZE_MIN || p.obj_size > IOP_OBJ_SIZE_MAX)
		return einval("obj_size %zu is outside [%u, %u]", p.obj_size, IOP_OBJ_SIZE_MIN,
			      IOP_OBJ_SIZE_MAX);
	if (p.align == 0)
		p.align = IOP_ALIGN_DEFAULT;
	if (!is_pow2(p.align) || p.align > IOP_GRANULE)
		return einval("align %zu is not a power of two up to %zu", p.align, IOP_GRANULE);
	if (p.align < 8)
		p.align = 8; /* poisoning and ASan work in 8-byte words */
	if (p.cache_size > IOP_CACHE_SIZE_MAX)
		return einval("cache_size %u is above %u", p.cache_size, IOP_CACHE_SIZE_MAX);
	if (p.release && !(p.flags & IOP_F_REFCOUNT))
		return einval("a release hook needs IOP_F_REFCOUNT");
	if (p.name && strlen(p.name) >= IOP_NAME_MAX)
		return einval("name '%.40s...' is longer than %u characters", p.name, IOP_NAME_MAX - 1);

	/* Bounds. */
	uint64_t limit = p.limit;
	uint32_t on = p.throttle_on_pct, off = p.throttle_off_pct;
	if (p.limit && p.limit_bytes)
		return einval("set limit or limit_bytes, not both");
	if (p.limit_bytes) {
		if (p.limit_bytes < p.obj_size)
			return einval("limit_bytes %llu is less than one object of %zu bytes",
				      (unsigned long long)p.limit_bytes, p.obj_size);
		limit = p.limit_bytes / p.obj_size;
	}
	if (limit > IOP_LIMIT_MAX)
		return einval("limit %llu is above %llu", (unsigned long long)limit, (unsigned long long)IOP_LIMIT_MAX);
	if (!limit && (on || off))
		return einval("throttle thresholds without a limit");
	if (on == 0 && off == 0) {
		on = IOP_THROTTLE_ON_DEFAULT;
		off = IOP_THROTTLE_OFF_DEFAULT;
	} else if (on == 0 || on > 100) {
		return einval("throttle_on_pct %u is not in [1, 100]", on);
	} else if (off == 0 && on == 100) {
		off = 100; /* throttling off */
	} else if (off == 0 || off >= on) {
		return einval("throttle_off_pct %u is not in [1, throttle_on_pct %u)", off, on);
	}
	if (limit && p.populate > limit)
		return einval("populate %zu is above the limit %llu", p.populate, (unsigned long long)limit);
	if (p.reserve_high && p.reserve_high < p.reserve_low)
		return einval("reserve_high %llu is below reserve_low %llu", (unsigned long long)p.reserve_high,
			      (unsigned long long)p.reserve_low);
	if (limit && p.reserve_low > limit)
		return einval("reserve_low %llu is above the limit %llu", (unsigned long long)p.reserve_low,
			      (unsigned long long)limit);
	if (p.reserve_low > IOP_LIMIT_MAX || p.reserve_high > IOP_LIMIT_MAX)
		return einval("a reserve watermark is above %llu", (unsigned long long)IOP_LIMIT_MAX);
	if (p.decay_pct > 100)
		return einval("decay_pct %u is above 100", p.decay_pct);
	if (p.decay_pct && !p.decay_ms)
		return einval("decay_pct without decay_ms");

	size_t stride = (p.obj_size + p.align - 1) & ~(p.align - 1);
	/* IOP_F_SPREAD: a stride of a multiple of 8 cache lines puts every
	 * object's first line into at most 8 of 64 L1 sets (a stride of 2048,
	 * into 2); one more unit (a line, or the alignment when larger)
	 * shifts each object by a set from the one before. */
	const size_t spread_unit = p.align > 64 ? p.align : 64;
	const bool spread = (p.flags & IOP_F_SPREAD) || (!heap_class && _iop_opt_uint(IOP_OPT_SPREAD));
	if (spread && stride % (8 * spread_unit) == 0)
		stride += spread_unit;
	/* Under memcheck, a no-access gap after every object, so that an
	 * overflow is reported even into a neighbour in flight. Not in the
	 * heap's classes, whose blocks sit at multiples of the class size
	 * (heap.c), nor where the gap would not fit the caller's chunk. */
	size_t vg_stride = (p.obj_size + IOP_VG_REDZONE + p.align - 1) & ~(p.align - 1);
	if (IOP_VG_ON && !heap_class && (!p.chunk_size || p.chunk_size / vg_stride >= 1))
		stride = vg_stride;
	size_t chunk = p.chunk_size;
	if (chunk == 0) {
		chunk = IOP_CHUNK_DEFAULT;
		while (chunk / stride < IOP_CHUNK_MIN_OBJS)
			chunk *= 2;
	} else if (!is_pow2(chunk) || chunk < IOP_GRANULE || chunk > IOP_CHUNK_MAX) {
		return einval("chunk_size %zu is not a power of two in [%zu, %zu]", chunk, IOP_GRANULE,
			      IOP_CHUNK_MAX);
	} else if (chunk / stride < 1) {
		return einval("chunk_size %zu cannot hold one object of %zu bytes", chunk, stride);
	}

	_iop_fork_resume();
	int err = _iop_map_init();
	if (err) {
		errno = -err;
		return NULL;
	}
	/* On a cache line of its own: the inline paths read the whole hot
	 * struct (64 bytes) on every call, which calloc's 16-byte alignment
	 * spread over two lines unless malloc returned a multiple of 64. */
	size_t bytes = (sizeof(struct iop_pool) + IOP_CACHELINE - 1) & ~(size_t)(IOP_CACHELINE - 1);
	struct iop_pool *pool = aligned_alloc(IOP_CACHELINE, bytes);
	if (!pool) {
		errno = ENOMEM;
		return NULL;
	}
	memset(pool, 0, bytes);
	pool->obj_size = p.obj_size;
	pool->align = p.align;
	pool->hot.stride = stride;
	pool->chunk_size = chunk;
	pool->hot.chunk_mask = chunk - 1;
	pool->hot.objs_per_chunk = chunk / stride;
	pool->hot.div_shift = (uint8_t)__builtin_ctzll(stride);
	pool->hot.div_mul = inverse_odd(stride >> pool->hot.div_shift);
	pool->hot.owner_bad = ~pool->hot.chunk_mask | (((uint64_t)1 << pool->hot.div_shift) - 1);
	pool->hot.simd = cpu_simd();
	/* iop__owned(): a power-of-two stride fills its chunk. */
	pool->hot.free_bad = pool->hot.div_mul == 1 ? ~(((uint64_t)IOP_MAP_ENTRIES << IOP_GRANULE_SHIFT) - 1) | (stride - 1)
						    : UINT64_MAX;
	pool->flags = p.flags;
	pool->checked = (p.flags & IOP_F_CHECKED) || IOP_DEBUG >= 2 || _iop_opt_uint(IOP_OPT_CHECKED);
	pool->refcount = (p.flags & IOP_F_REFCOUNT) != 0;
	if (pool->refcount) {
		size_t page = _iop_os_page_size();
		pool->refs_tail = (pool->hot.objs_per_chunk * sizeof(uint32_t) + page - 1) & ~(page - 1);
	}
	pool->map = p.map;
	pool->unmap = p.unmap;
	pool->release = p.release;
	pool->hook_arg = p.hook_arg;
	/* The inline put handles only the last put of a plain refcounted
	 * buffer; hooks and checks need the library. */
	pool->hot.put_slow = !pool->refcount || pool->release || pool->checked;
	if (p.cache_size) {
		pool->mag_cap = p.cache_size;
	} else {
		size_t m = IOP_MAG_BYTES / stride;
		pool->mag_cap = (uint32_t)(m < IOP_MAG_MIN ? IOP_MAG_MIN : m > IOP_MAG_MAX_AUTO ? IOP_MAG_MAX_AUTO : m);
		/* A bounded pool's objects should mostly be where any thread
		 * finds them: a thread caches at most 2/IOP_BOUND_MAG_DIV of
		 * the limit. */
		if (limit && pool->mag_cap > limit / IOP_BOUND_MAG_DIV)
			pool->mag_cap = limit / IOP_BOUND_MAG_DIV ? (uint32_t)(limit / IOP_BOUND_MAG_DIV) : 1;
	}
	pool->reserve_low = p.reserve_low;
	pool->reserve_high = p.reserve_high ? p.reserve_high : p.reserve_low ? p.reserve_low + 2 * pool->mag_cap : 0;
	if (limit && pool->reserve_high > limit)
		pool->reserve_high = limit;
	pool->decay_ns = (int64_t)p.decay_ms * 1000000;
	pool->decay_pct = p.decay_pct ? p.decay_pct : IOP_DECAY_PCT_DEFAULT;
	pool->uses_worker = pool->reserve_low || pool->decay_ns;
	/* The depot's lock is held for a magazine's copy (well under a
	 * microsecond); glibc's default mutex sleeps in futex at the first
	 * contended try, tens of microseconds on a loaded machine. Its
	 * adaptive kind spins a while first (docs/BENCHMARKS.md, issue 12:
	 * what a second core costs). */
	pthread_mutexattr_t lock_attr;
	pthread_mutexattr_init(&lock_attr);
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
	pthread_mutexattr_settype(&lock_attr, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
	pthread_mutex_init(&pool->lock, &lock_attr);
	pthread_mutexattr_destroy(&lock_attr);
	_iop_slab_init(pool, limit ? limit : UINT64_MAX);
	if ((limit && (err = _iop_bound_init(pool, limit, on, off)) != 0) || (err = _iop_cpu_pool_init(pool, p.cache_size, limit)) != 0) {
		_iop_bound_free_memory(pool);
		pthread_mutex_destroy(&pool->lock);
		free(pool);
		errno = -err;
		return NULL;
	}

	/* The name is set under the registry lock: the statistics publisher
	 * (publish.c) reads registered pools' names under it. */
	pool->creating = true;
	_iop_registry_lock();
	err = _iop_pool_register(pool);
	if (!err && p.name)
		memcpy(pool->name, p.name, strlen(p.name) + 1);
	else if (!err)
		snprintf(pool->name, sizeof(pool->name), "pool%u", pool->id);
	_iop_registry_unlock();
	if (err) {
		_iop_cpu_pool_fini(pool);
		_iop_bound_free_memory(pool);
		pthread_mutex_destroy(&pool->lock);
		free(pool);
		errno = -err;
		return NULL;
	}

	/* Under memcheck, a mempool whose blocks are its objects in flight
	 * (vg.h); before the first chunk, which starts out no-access. */
	_iop_vg_pool_create(pool);
	if (pool->uses_worker)
		_iop_worker_attach(pool);
	if (p.populate && (err = _iop_depot_populate(pool, _iop_domain_here(), p.populate)) != 0) {
		_iop_registry_lock();
		_iop_pool_unregister(pool);
		_iop_registry_unlock();
		_iop_worker_detach(pool);
		pool_free_memory(pool);
		errno = -err;
		return NULL;
	}
	_iop_registry_lock();
	pool->creating = false;
	_iop_registry_unlock();
	_iop_worker_fill(pool);
	_iop_publish_autostart();
	return pool;
}

/* ---- destruction -------------------------------------------------------- */

int iop_pool_destroy(iop_pool_t *pool)
{
	if (!pool)
		return -EINVAL;
	int err = _iop_hook_check(pool, IOP_CALL_DESTROY);
	if (err)
		return err;
	if (pool->hot.heap) {
		_iop_msg_pool(pool, "not destroyed: it is one of the heap's size classes");
		return -EPERM;
	}
	/* Waiters of a bounded pool get -ESHUTDOWN, and so does every later
	 * allocation; they have all left the pool when this returns. */
	if (pool->bound)
		_iop_bound_shutdown(pool);
	/* Every CPU's slot closes for good (no thread may use the pool any
	 * more) and gives its objects to the depot. */
	_iop_cpu_close(pool);
	_iop_registry_lock();
	/* A bounded pool's slots are taken by the handshake: a thread that
	 * was just refused may still be on its way out of a call. */
	_iop_for_each_tcache(pool, pool->bound ? _iop_slot_retire : _iop_tcache_drain, NULL);
	pthread_mutex_lock(&pool->lock);
	uint64_t in_flight = pool->slab.nchunks * pool->hot.objs_per_chunk - pool->slab.free - pool->depot.objs;
	pthread_mutex_unlock(&pool->lock);
	if (pool->bound && LOAD(&pool->bound->in_flight) > 0 && (uint64_t)LOAD(&pool->bound->in_flight) > in_flight)
		in_flight = (uint64_t)LOAD(&pool->bound->in_flight);
	if (in_flight) {
		_iop_registry_unlock();
		_iop_msg_pool(pool, "not destroyed: %llu objects still in flight; free them and destroy again",
			      (unsigned long long)in_flight);
		return -EBUSY;
	}
	_iop_pool_unregister(pool);
	_iop_registry_unlock();
	/* Unregistered: no worker pass (or iop_reclaim()) starts on it; wait
	 * for one under way. */
	_iop_worker_detach(pool);
#if IOP_DEBUG >= 3
	/* Unregistered, so no thread slot refers to it: audit the depot and
	 * slab alone. */
	if (iop_pool_audit(pool) == -EUCLEAN)
		_iop_die(pool, "audit failed at destroy (IOP_DEBUG=3); see the message above");
#endif
	pool_free_memory(pool);
	return 0;
}

/* ---- fork() (fork.c) ------------------------------------------------------ */

/* cpu_lock before lock (a drain empties slots into the depot under both),
 * and the waiter lock, which is taken with no other held, last. */
void _iop_pool_atfork(struct iop_pool *pool, int phase)
{
	if (phase == IOP_FORK_PREPARE) {
		_iop_cpu_atfork(pool, phase);
		pthread_mutex_lock(&pool->lock);
		_iop_bound_atfork(pool, phase);
		return;
	}
	_iop_bound_atfork(pool, phase);
	if (phase == IOP_FORK_PARENT)
		pthread_mutex_unlock(&pool->lock);
	else
		pthread_mutex_init(&pool->lock, NULL);
	_iop_cpu_atfork(pool, phase);
}

/* ---- queries ------------------------------------------------------------ */

iop_pool_t *iop_pool_of(const void *p)
{
	return _iop_map_pool(p);
}

const char *iop_pool_name(const iop_pool_t *pool)
{
	return pool ? pool->name : "(null)";
}

size_t iop_pool_obj_size(const iop_pool_t *pool)
{
	if (!pool) {
		errno = EINVAL;
		return 0;
	}
	return pool->obj_size;
}
