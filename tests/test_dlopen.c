/* SPDX-License-Identifier: MIT */
/*
 * A program that does not link iopool loads it with dlopen() and uses a
 * pool through dlsym(): what a plugin, a language binding or a server
 * module does. 0.4 failed here ("cannot allocate memory in static TLS
 * block"): its thread caches were 16 KiB of initial-exec TLS.
 *
 *   test_dlopen PATH-TO-libiopool.so
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define IOP_NO_INLINE
#include "iopool.h"

#define LOAD(lib, name) ((void)(*(void **)&name##_p = dlsym(lib, #name)), name##_p)

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s LIBRARY\n", argv[0]);
		return 2;
	}
	void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		printf("FAIL: dlopen: %s\n", dlerror());
		return 1;
	}
	iop_pool_t *(*iop_pool_create_p)(const struct iop_pool_params *);
	void *(*iop_alloc_p)(iop_pool_t *);
	void (*iop_free_p)(iop_pool_t *, void *);
	int (*iop_pool_destroy_p)(iop_pool_t *);
	int (*iop_pool_audit_p)(iop_pool_t *);
	if (!LOAD(lib, iop_pool_create) || !LOAD(lib, iop_alloc) || !LOAD(lib, iop_free) ||
	    !LOAD(lib, iop_pool_destroy) || !LOAD(lib, iop_pool_audit)) {
		printf("FAIL: dlsym: %s\n", dlerror());
		return 1;
	}
	struct iop_pool_params p;
	memset(&p, 0, sizeof(p));
	p.struct_size = sizeof(p);
	p.obj_size = 256;
	p.name = "dlopened";
	iop_pool_t *pool = iop_pool_create_p(&p);
	if (!pool) {
		printf("FAIL: iop_pool_create\n");
		return 1;
	}
	void *o[1000];
	for (int r = 0; r < 3; r++) {
		for (int i = 0; i < 1000; i++) {
			if (!(o[i] = iop_alloc_p(pool))) {
				printf("FAIL: iop_alloc\n");
				return 1;
			}
			memset(o[i], i, 256);
		}
		for (int i = 0; i < 1000; i++)
			iop_free_p(pool, o[i]);
	}
	if (iop_pool_audit_p(pool) != 0 || iop_pool_destroy_p(pool) != 0) {
		printf("FAIL: audit or destroy\n");
		return 1;
	}
	printf("dlopen: 3000 pairs through a dlopen()ed libiopool: ok\n");
	return 0;
}
