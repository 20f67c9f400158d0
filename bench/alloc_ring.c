/* SPDX-License-Identifier: MIT */
/*
 * "ring-only": the crossthread case with dummy pointers and no allocator, so
 * the ring's own share of the crossthread numbers can be subtracted.
 */
#include "bench.h"

#define A_NAME "ring-only"

typedef struct {
	_Alignas(64) unsigned char dummy[64];
} actx_t;

static int actx_open(actx_t *c, size_t obj_size, char *why, size_t len)
{
	(void)c;
	(void)obj_size;
	(void)why;
	(void)len;
	return 0;
}

static void actx_close(actx_t *c)
{
	(void)c;
}

static inline void *a_alloc(actx_t *c)
{
	return c->dummy;
}

static inline void a_free(actx_t *c, void *p)
{
	(void)c;
	escape(p);
}

static inline int a_alloc_bulk(actx_t *c, void **objs, unsigned n)
{
	for (unsigned k = 0; k < n; k++)
		objs[k] = c->dummy;
	return 0;
}

static inline void a_free_bulk(actx_t *c, void **objs, unsigned n)
{
	(void)c;
	(void)objs;
	(void)n;
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

int child_ring(const struct child_opts *o)
{
	struct child_opts only = *o;

	/* The ring alone means something for crossthread only. */
	only.case_mask &= 1u << CASE_CROSSTHREAD;
	run_cases(&only);
	return 0;
}
