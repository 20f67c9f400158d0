/* SPDX-License-Identifier: MIT */
/*
 * valgrind's memcheck, told what the library knows (issue 13). Under
 * memcheck every pool is a memcheck mempool: an object is a block from
 * when it is handed out (VALGRIND_MEMPOOL_ALLOC: addressable, undefined)
 * until it is given back (VALGRIND_MEMPOOL_FREE: no access), so memcheck
 * reports a write after free, an overflow past an object, a branch on bytes
 * never written and a leaked object as it does for malloc's blocks. Free
 * objects, and the bytes between objects, are no-access; the library's
 * own touches of them (checked mode's poison, prefaulting) make them
 * addressable for the moment (FREE_UNPOISON, internal.h).
 *
 * Decided once, at load (vg.c): _iop_vg is set only under memcheck
 * (RUNNING_ON_VALGRIND, and a memcheck request answered as memcheck
 * answers it), so callgrind still counts the per-CPU fast paths. Under
 * memcheck the library uses per-thread caches (ccache.c), whose slots the
 * inline code never opens: every call reaches the library, where the
 * requests are made. Each helper is one test of a flag that does not
 * change, predicted; nothing at all without valgrind's headers.
 */
#ifndef IOP_VG_H
#define IOP_VG_H

#include <stdbool.h>
#include <stddef.h>

#ifdef IOP_HAVE_VALGRIND
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>

/* Running under memcheck (vg.c sets it in a constructor). */
extern bool _iop_vg __attribute__((visibility("hidden")));
#define IOP_VG_ON __builtin_expect(_iop_vg, 0)
#define IOP_VG_DO(req)         \
	do {                   \
		if (IOP_VG_ON) { \
			req;     \
		}                \
	} while (0)
#else
#define IOP_VG_ON 0
#define IOP_VG_DO(req) ((void)0)
#endif

/* Bytes of no-access gap after each object of a pool (not the heap's
 * classes) under memcheck: an 8-byte overflow lands in it whatever the
 * neighbour's state (pool.c). */
#define IOP_VG_REDZONE 16

/* A pool is a mempool named by its address; its objects are blocks. */
#define _iop_vg_pool_create(pool) IOP_VG_DO(VALGRIND_CREATE_MEMPOOL((pool), 0, 0))
#define _iop_vg_pool_destroy(pool) IOP_VG_DO(VALGRIND_DESTROY_MEMPOOL((pool)))
/* An object handed out: its obj_size bytes become a block, undefined; the
 * rest of its stride stays no-access (an overflow into it is reported). */
#define _iop_vg_obj_alloc(pool, p, stride, size)                 \
	do {                                                     \
		IOP_VG_DO(VALGRIND_MAKE_MEM_NOACCESS((p), (stride))); \
		IOP_VG_DO(VALGRIND_MEMPOOL_ALLOC((pool), (p), (size))); \
	} while (0)
/* An object given back: no access until it is handed out again. A second
 * free of it is reported ("Illegal memory pool address"). */
#define _iop_vg_obj_free(pool, p) IOP_VG_DO(VALGRIND_MEMPOOL_FREE((pool), (p)))
/* Free memory the user must not touch, and the library's own visit of it. */
#define _iop_vg_noaccess(p, n) IOP_VG_DO(VALGRIND_MAKE_MEM_NOACCESS((p), (n)))
#define _iop_vg_defined(p, n) IOP_VG_DO(VALGRIND_MAKE_MEM_DEFINED((p), (n)))
/* Array entries that no longer hold an object (a magazine's top after a
 * pop): undefined, so memcheck's leak check does not take the stale
 * pointer for a reference to an object now in flight, which would hide
 * its leak. The library reads only the entries below a magazine's count. */
#define _iop_vg_forget(p, n) IOP_VG_DO(VALGRIND_MAKE_MEM_UNDEFINED((p), (n)))
/* A large heap block, mapped on its own: a malloc-like block. */
#define _iop_vg_block_alloc(p, n) IOP_VG_DO(VALGRIND_MALLOCLIKE_BLOCK((p), (n), 0, 0))
#define _iop_vg_block_free(p) IOP_VG_DO(VALGRIND_FREELIKE_BLOCK((p), 0))

#endif /* IOP_VG_H */
