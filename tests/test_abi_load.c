// SPDX-License-Identifier: MIT
/*
 * The inline ABI is versioned: a program's references to iop__* symbols
 * carry the version node IOPOOL_INLINE_<n> of the library it was linked
 * against, and the dynamic loader refuses to start it with a library of
 * another number. tests/CMakeLists.txt links this program twice: against
 * libiopool (it must load and print "loaded") and against a stub
 * libiopool.so.0 whose iop__* symbols are in the node of the next number;
 * run with the real library, that one must fail to load ("version
 * `IOPOOL_INLINE_<n+1>' not found"), as a program built against a newer or
 * older header would.
 */
#include <stdio.h>

#include <iopool.h>

int main(int argc, char **argv)
{
	(void)argv;
	/* Referenced, never called: the reference alone carries the
	 * version, and the loader checks it at start. */
	if (argc > 1000)
		iop__free_slow(NULL, NULL);
	puts("loaded");
	return 0;
}
