/* SPDX-License-Identifier: MIT */
/*
 * The malloc peers: glibc, jemalloc, mimalloc and tcmalloc, all through plain
 * malloc()/free(). This one translation unit serves them all: the driver runs
 * it with LD_PRELOAD set to the allocator's library (glibc: none), and the
 * child first proves that malloc really resolves to that library.
 *
 * They have no bulk API: "bulk n" is n malloc() calls, then n free() calls.
 */
#include "bench.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *peer_name = "malloc";
#define A_NAME peer_name

typedef struct {
	size_t size;
} actx_t;

static int actx_open(actx_t *c, size_t obj_size, char *why, size_t len)
{
	(void)why;
	(void)len;
	c->size = obj_size;
	return 0;
}

static void actx_close(actx_t *c)
{
	(void)c;
}

static inline void *a_alloc(actx_t *c)
{
	return malloc(c->size);
}

static inline void a_free(actx_t *c, void *p)
{
	(void)c;
	free(p);
}

static inline int a_alloc_bulk(actx_t *c, void **objs, unsigned n)
{
	for (unsigned k = 0; k < n; k++) {
		objs[k] = malloc(c->size);
		if (objs[k] == NULL) {
			while (k-- > 0)
				free(objs[k]);
			return -1;
		}
	}
	return 0;
}

static inline void a_free_bulk(actx_t *c, void **objs, unsigned n)
{
	(void)c;
	for (unsigned k = 0; k < n; k++)
		free(objs[k]);
}

static int a_thread_enter(char *why, size_t len)
{
	(void)why;
	(void)len;
	return 0;
}

static void a_thread_exit(void)
{
}

#include "cases.h"

/* Where the process's malloc symbol comes from, as a resolved path. */
static void malloc_origin(char *out, size_t len)
{
	void *sym = dlsym(RTLD_DEFAULT, "malloc");
	Dl_info di;
	char *real;

	if (sym == NULL || dladdr(sym, &di) == 0 || di.dli_fname == NULL)
		die("cannot tell which library provides malloc");
	real = realpath(di.dli_fname, NULL);
	snprintf(out, len, "%s", real ? real : di.dli_fname);
	free(real);
}

/*
 * Fail loudly unless the allocator under test is the one serving malloc: a
 * preload that silently did not take effect would time glibc under another
 * name.
 */
void verify_preload(const struct alloc_desc *d)
{
	char origin[PATH_MAX];

	malloc_origin(origin, sizeof(origin));
	if (d->preload == NULL) {
		const char *base = strrchr(origin, '/');

		base = base ? base + 1 : origin;
		if (strncmp(base, "libc.so", 7) == 0 ||
		    strncmp(base, "libc-", 5) == 0)
			return;
#ifdef IOP_BENCH_SANITIZED
		/* The sanitizer runtime wraps glibc's malloc. */
		if (strncmp(base, "libasan", 7) == 0 ||
		    strncmp(base, "libtsan", 7) == 0)
			return;
#endif
		die("malloc comes from %s, not from glibc (is LD_PRELOAD "
		    "set?)", origin);
	}
	char *want = realpath(d->preload, NULL);

	if (want == NULL)
		die("%s: not installed", d->preload);
	if (strcmp(want, origin) != 0)
		die("LD_PRELOAD=%s did not take effect: malloc comes from %s",
		    d->preload, origin);
	free(want);
	if (d->probe != NULL && dlsym(RTLD_DEFAULT, d->probe) == NULL)
		die("LD_PRELOAD=%s did not take effect: no symbol %s",
		    d->preload, d->probe);
}

int child_malloc(const struct child_opts *o, enum alloc_id id)
{
	const struct alloc_desc *d = &bench_allocs[id];

	peer_name = d->name;
	verify_preload(d);
	run_cases(o);
	return 0;
}
