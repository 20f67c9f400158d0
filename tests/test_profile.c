/* SPDX-License-Identifier: MIT */
/*
 * Per-call-site profiling: built with IOP_PROFILE, so iop_heap_alloc() and
 * iop_heap_alloc_aligned() are the macros that record their call site. Each
 * case makes a known sequence of calls and checks iop_profile_dump()'s line
 * for every site: live bytes (usable sizes) and live allocations.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define IOP_PROFILE
#include "iop_test.h"

#include <pthread.h>

/* One parsed dump line. */
struct line {
	long long bytes, calls;
	char file[300];
	unsigned lineno;
	char func[64];
};

#define MAX_LINES 64

/* Parse the dump; returns the number of lines, checks the header and the
 * order (live bytes, largest first). */
static unsigned dump(struct line *out)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	REQUIRE(f);
	CHECK_EQ(iop_profile_dump(f), 0);
	fclose(f);
	unsigned n = 0;
	char *save = NULL;
	int first = 1;
	for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		if (first) {
			CHECK_STR_HAS(l, "# iopool allocinfo: <live bytes> <live allocations>");
			first = 0;
			continue;
		}
		REQUIRE(n < MAX_LINES);
		struct line *x = &out[n];
		char where[300];
		if (sscanf(l, "%lld %lld %299s func:%63s", &x->bytes, &x->calls, where, x->func) != 4) {
			CHECK_STR_HAS(l, "<a dump line>");
			continue;
		}
		char *colon = strrchr(where, ':');
		REQUIRE(colon);
		*colon = '\0';
		snprintf(x->file, sizeof x->file, "%s", where);
		x->lineno = (unsigned)atoi(colon + 1);
		if (n > 0)
			CHECK_LE(x->bytes, out[n - 1].bytes);
		n++;
	}
	CHECK(!first);
	free(buf);
	return n;
}

/* The dump line of the site at `lineno` of this file, or NULL. */
static const struct line *site(const struct line *l, unsigned n, unsigned lineno)
{
	for (unsigned i = 0; i < n; i++)
		if (l[i].lineno == lineno && strstr(l[i].file, "test_profile.c"))
			return &l[i];
	return NULL;
}

#define CHECK_SITE(lines, n, at, want_bytes, want_calls, fn)                 \
	do {                                                                  \
		const struct line *s_ = site((lines), (n), (at));             \
		if (!s_) {                                                    \
			th_fail_at(__FILE__, __LINE__, "no dump line for line %u", (unsigned)(at)); \
			break;                                                \
		}                                                             \
		CHECK_EQ(s_->bytes, (want_bytes));                            \
		CHECK_EQ(s_->calls, (want_calls));                            \
		CHECK_STR_HAS(s_->func, (fn));                                \
	} while (0)

TEST(profile_counts_live_bytes_and_calls_per_site)
{
	struct line l[MAX_LINES];
	void *a[5], *b[2], *c;
	unsigned line_a, line_b, line_c;

	for (int i = 0; i < 5; i++) {
		line_a = __LINE__ + 1;
		a[i] = iop_heap_alloc(100); /* class 104 */
	}
	for (int i = 0; i < 2; i++) {
		line_b = __LINE__ + 1;
		b[i] = iop_heap_alloc_aligned(5000, 4096); /* 8192: the first class at 4 KiB multiples */
	}
	line_c = __LINE__ + 1;
	c = iop_heap_alloc(3 * MiB + 1); /* large: page-rounded */
	REQUIRE(a[4] && b[1] && c);
	CHECK_EQ(iop_heap_size(b[0]), 8192);

	unsigned n = dump(l);
	CHECK_SITE(l, n, line_a, 5 * 104, 5, "profile_counts_live_bytes_and_calls_per_site");
	CHECK_SITE(l, n, line_b, 2 * 8192, 2, "profile_counts");
	CHECK_SITE(l, n, line_c, 3 * MiB + 4096, 1, "profile_counts");
	/* largest first */
	CHECK_EQ(l[0].lineno, line_c);

	iop_heap_free(a[0]);
	iop_heap_free(a[3]);
	iop_heap_free(b[1]);
	iop_heap_free(c);
	n = dump(l);
	CHECK_SITE(l, n, line_a, 3 * 104, 3, "profile_counts");
	CHECK_SITE(l, n, line_b, 8192, 1, "profile_counts");
	CHECK_SITE(l, n, line_c, 0, 0, "profile_counts"); /* still listed, at zero */
	CHECK_EQ(l[0].lineno, line_b);

	for (int i = 1; i < 5; i++)
		if (i != 3)
			iop_heap_free(a[i]);
	iop_heap_free(b[0]);
	n = dump(l);
	CHECK_EQ(n, 3);
	for (unsigned i = 0; i < n; i++) {
		CHECK_EQ(l[i].bytes, 0);
		CHECK_EQ(l[i].calls, 0);
	}
	return TH_PASS;
}

TEST(profile_ignores_unprofiled_calls_and_their_frees)
{
	struct line l[MAX_LINES];
	unsigned at = __LINE__ + 1;
	void *p = iop_heap_alloc(64);
	/* The parentheses stop the macro: the exported, unprofiled call. */
	void *q = (iop_heap_alloc)(64);
	void *r = (iop_heap_alloc_aligned)(64, 64);
	REQUIRE(p && q && r);
	iop_heap_free(q);
	iop_heap_free(r);
	unsigned n = dump(l);
	CHECK_EQ(n, 1);
	CHECK_SITE(l, n, at, 64, 1, "profile_ignores");
	iop_heap_free(p);
	n = dump(l);
	CHECK_SITE(l, n, at, 0, 0, "profile_ignores");
	return TH_PASS;
}

/* Blocks allocated on threads that then exit, freed on the main thread;
 * and blocks allocated here, freed on threads. */
#define XT_THREADS 8
#define XT_BLOCKS 1000
static void *xt_blocks[XT_THREADS][XT_BLOCKS];
static const unsigned xt_line = __LINE__ + 1;
static void *xt_one(size_t n) { return iop_heap_alloc(n); }

static void *xt_alloc(void *arg)
{
	void **mine = arg;
	for (int i = 0; i < XT_BLOCKS; i++)
		mine[i] = xt_one(200 + (size_t)(i % 3) * 1000);
	return NULL;
}

static void *xt_free(void *arg)
{
	void **mine = arg;
	for (int i = 0; i < XT_BLOCKS; i += 2)
		iop_heap_free(mine[i]);
	return NULL;
}

TEST(profile_counts_stay_exact_across_threads_and_thread_exit)
{
	struct line l[MAX_LINES];
	pthread_t t[XT_THREADS];
	for (int i = 0; i < XT_THREADS; i++)
		REQUIRE(pthread_create(&t[i], NULL, xt_alloc, xt_blocks[i]) == 0);
	for (int i = 0; i < XT_THREADS; i++)
		pthread_join(t[i], NULL);
	/* the usable sizes of the three request sizes */
	long long per = 0;
	for (int i = 0; i < XT_BLOCKS; i++)
		per += (long long)iop_heap_class_size(200 + (size_t)(i % 3) * 1000);
	unsigned n = dump(l);
	CHECK_SITE(l, n, xt_line, XT_THREADS * per, XT_THREADS * XT_BLOCKS, "xt_one");

	/* half freed by other threads (which exit too), half here */
	for (int i = 0; i < XT_THREADS; i++)
		REQUIRE(pthread_create(&t[i], NULL, xt_free, xt_blocks[i]) == 0);
	for (int i = 0; i < XT_THREADS; i++)
		pthread_join(t[i], NULL);
	long long left = 0;
	for (int i = 1; i < XT_BLOCKS; i += 2)
		left += (long long)iop_heap_class_size(200 + (size_t)(i % 3) * 1000);
	n = dump(l);
	CHECK_SITE(l, n, xt_line, XT_THREADS * left, XT_THREADS * XT_BLOCKS / 2, "xt_one");
	for (int k = 0; k < XT_THREADS; k++)
		for (int i = 1; i < XT_BLOCKS; i += 2)
			iop_heap_free(xt_blocks[k][i]);
	n = dump(l);
	CHECK_SITE(l, n, xt_line, 0, 0, "xt_one");
	return TH_PASS;
}

/* A class's chunks unmapped (shrink) while profiling, and mapped again,
 * most likely at the same addresses: the new chunks start with no site
 * array (the old ones went with their chunks), profiled blocks of them
 * count at their new site, unprofiled ones nowhere. 12 KiB: 170 blocks a
 * chunk, so RM_BLOCKS spans three chunks. */
#define RM_SIZE 12288u
#define RM_BLOCKS 400
TEST(profile_counts_stay_exact_when_chunks_are_unmapped_and_mapped_again)
{
	struct line l[MAX_LINES];
	static void *b[RM_BLOCKS];
	unsigned at_a = 0, at_b = 0;
	for (int i = 0; i < RM_BLOCKS; i++) {
		at_a = __LINE__ + 1;
		b[i] = iop_heap_alloc(RM_SIZE);
		REQUIRE(b[i]);
	}
	iop_pool_t *pool = iop_pool_of(b[0]);
	REQUIRE(pool);
	unsigned n = dump(l);
	CHECK_SITE(l, n, at_a, (long long)RM_BLOCKS * RM_SIZE, RM_BLOCKS, "profile_counts_stay_exact_when");
	for (int i = 0; i < RM_BLOCKS; i++)
		iop_heap_free(b[i]);
	/* Every chunk of the class back to the OS, site arrays too. */
	iop_pool_shrink(pool, 0);
	struct iop_pool_stats st = { .struct_size = sizeof(st) };
	CHECK_EQ(iop_pool_stats(pool, &st), 0);
	CHECK_EQ(st.chunks, 0);
	n = dump(l);
	CHECK_SITE(l, n, at_a, 0, 0, "profile_counts_stay_exact_when");

	/* Mapped again: odd blocks profiled at a second site, even ones not
	 * (the parentheses stop the macro). */
	for (int i = 0; i < RM_BLOCKS; i++) {
		if (i % 2) {
			at_b = __LINE__ + 1;
			b[i] = iop_heap_alloc(RM_SIZE);
		} else {
			b[i] = (iop_heap_alloc)(RM_SIZE);
		}
		REQUIRE(b[i]);
	}
	CHECK_EQ(iop_pool_stats(pool, &st), 0);
	CHECK_GE(st.chunks, 3);
	n = dump(l);
	CHECK_SITE(l, n, at_a, 0, 0, "profile_counts_stay_exact_when");
	CHECK_SITE(l, n, at_b, (long long)RM_BLOCKS / 2 * RM_SIZE, RM_BLOCKS / 2, "profile_counts_stay_exact_when");
	/* Unprofiled blocks first: they take nothing from either site. */
	for (int i = 0; i < RM_BLOCKS; i += 2)
		iop_heap_free(b[i]);
	n = dump(l);
	CHECK_SITE(l, n, at_a, 0, 0, "profile_counts_stay_exact_when");
	CHECK_SITE(l, n, at_b, (long long)RM_BLOCKS / 2 * RM_SIZE, RM_BLOCKS / 2, "profile_counts_stay_exact_when");
	for (int i = 1; i < RM_BLOCKS; i += 2)
		iop_heap_free(b[i]);
	n = dump(l);
	CHECK_SITE(l, n, at_b, 0, 0, "profile_counts_stay_exact_when");
	iop_pool_shrink(pool, 0);
	return TH_PASS;
}

TEST(profile_dump_refuses_a_null_stream)
{
	CHECK_EQ(iop_profile_dump(NULL), -EINVAL);
	return TH_PASS;
}

int main(int argc, char **argv)
{
	return th_main(argc, argv);
}
