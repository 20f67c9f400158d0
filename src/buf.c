/* SPDX-License-Identifier: MIT */
/*
 * Refcounted buffers (page_pool's recycling in user space), mapping handles
 * and fragments (page_frag).
 *
 * A buffer's count lives in a tail mapped right after its chunk
 * (chunk->refs[i], iop__refs() in iopool.h), never in its bytes. A
 * released buffer has count 0; the put that takes it there recycles it
 * through the normal free path or hands it to the release hook. The inline
 * put in iopool.h handles the common last put of an unshared buffer; this
 * file handles everything else.
 *
 * Memory ordering: puts that do not release decrement with release
 * semantics; the put that releases reads the count with acquire semantics
 * (the inline load or the acq_rel decrement), so every thread's writes to
 * the buffer happen before it is recycled and handed out again.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

/* References a fragment allocator preloads onto a fresh buffer, so that
 * handing out a fragment costs no atomic operation: each fragment takes one
 * of them, and the allocator gives back the ones it did not hand out in one
 * subtraction when it moves on. Far above the most fragments a 1 MiB
 * buffer can hold (one per byte: 2^20). */
#define FRAG_BIAS (1u << 30)

struct iop_frag {
	struct iop_pool *pool;
	char *buf;       /* current buffer, NULL before the first fragment */
	size_t off;      /* first free byte in it */
	uint32_t unused; /* preloaded references not yet handed out */
};

/* The buffer holding any address p of the pool: its chunk and number.
 * Aborts, naming the fault, when p is not inside an object of this pool. */
static void locate(struct iop_pool *pool, const void *p, const char *what, struct iop_chunk **cp, uint32_t *idxp)
{
	struct iop_chunk *c = _iop_chunk_or_die(pool, p, what);
	uint64_t idx = (uint64_t)((uintptr_t)p - (uintptr_t)c->base) / pool->hot.stride;
	if (idx >= pool->hot.objs_per_chunk)
		_iop_die(pool, "%s of %p: not inside a buffer (past the last object of its chunk)", what, p);
	*cp = c;
	*idxp = (uint32_t)idx;
}

static uint32_t *refs_of(struct iop_pool *pool, const void *p, const char *what, char **base)
{
	struct iop_chunk *c;
	uint32_t idx;
	locate(pool, p, what, &c, &idx);
	if (!pool->refcount)
		_iop_die(pool, "%s of %p: the pool has no reference counts (create it with IOP_F_REFCOUNT)", what, p);
	if (base)
		*base = c->base + (uint64_t)idx * pool->hot.stride;
	return &c->refs[idx];
}

/* The count of a buffer the caller has just been handed out: it was 0. */
static void arm(struct iop_pool *pool, void *buf, uint32_t refs)
{
	uint32_t *r = iop__refs(pool, buf, iop__obj_number(pool, buf));
	if (pool->checked && ALOAD(r))
		_iop_die(pool, "buffer %p was handed out with %u references: its count is corrupt", buf, ALOAD(r));
	ASTORE(r, refs);
}

/* Pools whose buffers the inline code does not handle: not refcounted (an
 * error), with hooks, or checked. */
void *iop__buf_alloc_slow(iop_pool_t *pool)
{
	if (!pool || !pool->refcount) {
		errno = EINVAL;
		return NULL;
	}
	void *p = iop_alloc(pool);
	if (p)
		arm(pool, p, 1);
	return p;
}

unsigned iop_buf_alloc_bulk(iop_pool_t *pool, void **bufs, unsigned n)
{
	if (!pool || !pool->refcount) {
		errno = EINVAL;
		return 0;
	}
	unsigned got = iop_alloc_bulk(pool, bufs, n);
	for (unsigned i = 0; i < got; i++)
		arm(pool, bufs[i], 1);
	return got;
}

int iop_buf_alloc_ex(iop_pool_t *pool, void **bufp, unsigned how, int64_t timeout_ns)
{
	if (bufp)
		*bufp = NULL;
	if (!pool || !pool->refcount || !bufp)
		return -EINVAL;
	int rc = iop_alloc_ex(pool, bufp, how, timeout_ns);
	if (rc == 0)
		arm(pool, *bufp, 1);
	return rc;
}

void iop_buf_get(iop_pool_t *pool, void *p)
{
	uint32_t *r = refs_of(pool, p, "iop_buf_get", NULL);
	/* Relaxed: taking a reference needs one already, which orders it. */
	if (__atomic_fetch_add(r, 1, __ATOMIC_RELAXED) == 0)
		_iop_die(pool, "iop_buf_get of %p: the buffer has no reference (it was released)", p);
}

/* The last reference is gone: the hook may keep the buffer, else recycle. */
static void release(struct iop_pool *pool, uint32_t *r, void *base)
{
	if (pool->release) {
		COUNT(&pool->release_hook, 1);
		_iop_hook_depth++;
		int kept = pool->release(pool->hook_arg, pool, base) == IOP_RELEASE_KEEP;
		_iop_hook_depth--;
		if (kept) {
			COUNT(&pool->hook_kept, 1);
			ASTORE(r, 1u); /* the keeper owns it, as if just allocated */
			return;
		}
	}
	_iop_push(pool, base);
}

static _Noreturn void underflow(struct iop_pool *pool, const void *p, const void *base)
{
	_iop_die(pool, "refcount underflow: put of %p, in the buffer at %p, which has no reference left", p, base);
}

void iop__buf_put_slow(iop_pool_t *pool, void *p)
{
	char *base;
	uint32_t *r = refs_of(pool, p, "iop_buf_put", &base);
	uint32_t n = __atomic_load_n(r, __ATOMIC_ACQUIRE);
	if (n == 0)
		underflow(pool, p, base);
	if (n == 1) {
		/* Only we hold it: nobody can take a reference meanwhile. */
		ASTORE(r, 0u);
	} else {
		n = __atomic_fetch_sub(r, 1, __ATOMIC_ACQ_REL);
		if (n == 0)
			underflow(pool, p, base);
		if (n != 1)
			return;
	}
	release(pool, r, base);
}

unsigned iop_buf_refcount(iop_pool_t *pool, const void *p)
{
	return __atomic_load_n(refs_of(pool, p, "iop_buf_refcount", NULL), __ATOMIC_RELAXED);
}

void *iop_buf_base(iop_pool_t *pool, const void *p)
{
	struct iop_chunk *c;
	uint32_t idx;
	locate(pool, p, "iop_buf_base", &c, &idx);
	return c->base + (uint64_t)idx * pool->hot.stride;
}

int iop_buf_mapping(iop_pool_t *pool, const void *p, uint64_t *handle, size_t *offset)
{
	if (!pool || _iop_map_pool(p) != pool)
		return -EINVAL;
	struct iop_chunk *c = _iop_map_chunk_of(p);
	if (handle)
		*handle = c->handle;
	if (offset)
		*offset = (size_t)((uintptr_t)p - (uintptr_t)c->base);
	return 0;
}

/* ---- fragments ------------------------------------------------------------ */

iop_frag_t *iop_frag_create(iop_pool_t *pool)
{
	if (!pool || !pool->refcount) {
		errno = EINVAL;
		return NULL;
	}
	struct iop_frag *fc = calloc(1, sizeof(*fc));
	if (!fc)
		return NULL;
	fc->pool = pool;
	return fc;
}

/* Give back the references the allocator did not hand out; the buffer is
 * released here if every fragment was already put. */
static void frag_drop(struct iop_frag *fc)
{
	if (!fc->buf)
		return;
	uint32_t *r = refs_of(fc->pool, fc->buf, "iop_frag", NULL);
	uint32_t n = __atomic_sub_fetch(r, fc->unused, __ATOMIC_ACQ_REL);
	if (n == 0)
		release(fc->pool, r, fc->buf);
	fc->buf = NULL;
}

void *iop_frag_alloc(iop_frag_t *fc, size_t len, size_t align)
{
	if (align == 0)
		align = 1;
	if (!fc || len == 0 || len > fc->pool->obj_size || (align & (align - 1))) {
		errno = EINVAL;
		return NULL;
	}
	for (int fresh = 0;; fresh = 1) {
		if (fc->buf) {
			uintptr_t end = (uintptr_t)fc->buf + fc->pool->obj_size;
			uintptr_t at = ((uintptr_t)fc->buf + fc->off + align - 1) & ~(uintptr_t)(align - 1);
			if (at >= (uintptr_t)fc->buf && at <= end && end - at >= len) {
				fc->off = at + len - (uintptr_t)fc->buf;
				fc->unused--;
				return (void *)at;
			}
			if (fresh) {
				/* Does not fit even an empty buffer. */
				errno = EINVAL;
				return NULL;
			}
			frag_drop(fc);
		}
		char *b = iop_buf_alloc(fc->pool);
		if (!b)
			return NULL;
		/* Ours alone until the first fragment is handed out. */
		ASTORE(refs_of(fc->pool, b, "iop_frag", NULL), FRAG_BIAS);
		fc->buf = b;
		fc->off = 0;
		fc->unused = FRAG_BIAS;
	}
}

void iop_frag_destroy(iop_frag_t *fc)
{
	if (!fc)
		return;
	frag_drop(fc);
	free(fc);
}
