/* SPDX-License-Identifier: MIT */
/*
 * Whether the library runs under valgrind's memcheck (src/vg.h), decided
 * once, before main(): the caches pick their mode from it (ccache.c) and
 * every pool's creation asks it.
 */
#include "vg.h"

#ifdef IOP_HAVE_VALGRIND
bool _iop_vg;

__attribute__((constructor)) static void vg_detect(void)
{
	/* Memcheck answers MAKE_MEM_DEFINED with -1; other tools (callgrind,
	 * helgrind) leave a request they do not know at its default, 0.
	 * Under callgrind the library keeps its per-CPU fast paths, which
	 * is what bench/callgrind.sh counts. */
	int probe = 0;
	_iop_vg = RUNNING_ON_VALGRIND && (long)VALGRIND_MAKE_MEM_DEFINED(&probe, sizeof(probe)) == -1;
}
#else
/* ISO C wants something in a translation unit. */
typedef int iop_vg_unused;
#endif
