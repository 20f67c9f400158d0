/* SPDX-License-Identifier: MIT */
/*
 * Hooks that call back into iopool: which calls a running map, unmap or
 * release hook may make (the table at struct iop_pool_params in
 * include/iopool.h), and the refusal of the others with -EDEADLK.
 *
 * A thread that runs a hook keeps a frame on its own stack (pool, which
 * hook, whether the pool is going away) linked to the frames of the hooks
 * it is already inside, innermost first; one TLS pointer names the
 * innermost. The entry points that a hook could turn against its caller
 * look at that pointer (one load; NULL outside hooks) and walk the chain
 * only when it is set. Nothing on the inline fast paths reads it.
 */
#include <errno.h>

#include "internal.h"

/* One word of initial-exec TLS, as iop__prof_table: glibc's static TLS
 * surplus holds it for a dlopen()ed library; no array. */
__thread struct iop_hook_frame *_iop_hook_top __attribute__((tls_model("initial-exec")));

static const char *const hook_names[] = {
	[IOP_HOOK_MAP] = "map",
	[IOP_HOOK_UNMAP] = "unmap",
	[IOP_HOOK_RELEASE] = "release",
};

static const char *const call_names[] = {
	[IOP_CALL_ALLOC] = "an allocation",
	[IOP_CALL_FREE] = "a free",
	[IOP_CALL_FLUSH] = "iop_pool_flush()",
	[IOP_CALL_STATS] = "its statistics",
	[IOP_CALL_AUDIT] = "iop_pool_audit()",
	[IOP_CALL_SHRINK] = "iop_pool_shrink()",
	[IOP_CALL_DESTROY] = "iop_pool_destroy()",
	[IOP_CALL_CHUNK] = "an allocation that needs another chunk",
};

int _iop_hook_refuse(struct iop_pool *pool, enum iop_call call)
{
	unsigned maps = 0;
	for (const struct iop_hook_frame *f = _iop_hook_top; f; f = f->up) {
		if (f->pool != pool)
			continue;
		const char *why = NULL;
		maps += f->hook == IOP_HOOK_MAP;
		if (f->dying)
			why = "the pool is being destroyed";
		else if (call == IOP_CALL_DESTROY)
			why = "the pool is in use up this thread's stack";
		else if (call == IOP_CALL_CHUNK && f->hook == IOP_HOOK_MAP && maps == IOP_HOOK_NEST_MAX)
			why = "its map hook runs nested IOP_HOOK_NEST_MAX deep (a hook that allocates from its "
			      "own pool at every chunk would recurse without end)";
		if (why) {
			_iop_msg_pool(pool, "%s from inside its %s hook refused (EDEADLK): %s", call_names[call],
				      hook_names[f->hook], why);
			return -EDEADLK;
		}
	}
	return 0;
}

unsigned _iop_hook_depth(const struct iop_pool *pool, enum iop_hook hook)
{
	unsigned n = 0;
	for (const struct iop_hook_frame *f = _iop_hook_top; f; f = f->up)
		n += f->pool == pool && f->hook == hook;
	return n;
}
