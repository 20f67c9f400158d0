/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of every public call of iopool and every error path it
 * documents: creation and its parameter checks, allocation and free (single
 * and bulk), owner lookup, names, statistics and their printing, destroy,
 * thread flush, and the ENOMEM paths (under an address-space limit).
 *
 * Built twice: test_pool (shared library, the real ABI) and test_pool_static.
 * Usage: test_pool [case...]   (no argument: every case, each in a child)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "iop_test.h"
#include "iopool/shm.h"

#include <ctype.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/resource.h>

/* ------------------------------------------------------------------------ */
/* Creation                                                                  */
/* ------------------------------------------------------------------------ */

static struct iop_pool_params good_params(void)
{
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = "good";
	pp.obj_size = 256;
	return pp;
}

/* Expect NULL + EINVAL and a message on stderr; `what` names the case. */
static void expect_einval(const struct iop_pool_params *pp, const char *what)
{
	th_capture_begin();
	errno = 0;
	iop_pool_t *p = iop_pool_create(pp);
	int err = errno;
	char *msg = th_capture_end();
	if (p) {
		th_fail_at(__FILE__, __LINE__,
			   "%s: iop_pool_create() succeeded", what);
		iop_pool_destroy(p);
	} else if (err != EINVAL) {
		th_fail_at(__FILE__, __LINE__,
			   "%s: errno %d (%s), expected EINVAL", what, err,
			   strerror(err));
	} else if (msg[0] == '\0') {
		th_fail_at(__FILE__, __LINE__,
			   "%s: EINVAL without a message on stderr", what);
	}
	free(msg);
}

/* Hooks that must not run: each call is a failure. */
static int never_release(void *arg, iop_pool_t *pool, void *buf)
{
	(void)arg;
	th_fail_at(__FILE__, __LINE__, "release hook called: pool %p buf %p",
		   (void *)pool, buf);
	return IOP_RELEASE_RECYCLE;
}

static int never_map(void *arg, void *base, size_t len, uint64_t *handle)
{
	(void)arg;
	(void)handle;
	th_fail_at(__FILE__, __LINE__, "map hook called: base %p len %zu",
		   base, len);
	return -EIO;
}

static void never_unmap(void *arg, void *base, size_t len, uint64_t handle)
{
	(void)arg;
	th_fail_at(__FILE__, __LINE__, "unmap hook called: base %p len %zu "
		   "handle %llu", base, len, (unsigned long long)handle);
}

TEST(pool_create_rejects_bad_params)
{
	struct iop_pool_params pp;

	th_capture_begin();
	errno = 0;
	iop_pool_t *p = iop_pool_create(NULL);
	int err = errno;
	free(th_capture_end());
	CHECK(p == NULL);
	CHECK_EQ(err, EINVAL);

	/* below IOP_POOL_PARAMS_SIZE_V1, the 0.1 struct without hooks */
	static const uint32_t small_sizes[] = {
		0, 1, 4, 8, (uint32_t)offsetof(struct iop_pool_params, obj_size),
		(uint32_t)offsetof(struct iop_pool_params, chunk_size),
		(uint32_t)IOP_POOL_PARAMS_SIZE_V1 - 8,
		(uint32_t)IOP_POOL_PARAMS_SIZE_V1 - 1,
	};
	for (size_t i = 0; i < sizeof small_sizes / sizeof *small_sizes; i++) {
		pp = good_params();
		pp.struct_size = small_sizes[i];
		char what[64];
		snprintf(what, sizeof what, "struct_size %u", small_sizes[i]);
		expect_einval(&pp, what);
	}

	static const size_t bad_obj[] = { 0, 1, IOP_OBJ_SIZE_MIN - 1,
					  IOP_OBJ_SIZE_MAX + 1,
					  2 * (size_t)IOP_OBJ_SIZE_MAX,
					  SIZE_MAX };
	for (size_t i = 0; i < sizeof bad_obj / sizeof *bad_obj; i++) {
		pp = good_params();
		pp.obj_size = bad_obj[i];
		char what[64];
		snprintf(what, sizeof what, "obj_size %zu", bad_obj[i]);
		expect_einval(&pp, what);
	}

	static const size_t bad_align[] = { 3, 24, 48, 100, 4097,
					    ((size_t)1 << 12) + 16,
					    4 * MiB, /* above 2 MiB */
					    (size_t)1 << 40, SIZE_MAX };
	for (size_t i = 0; i < sizeof bad_align / sizeof *bad_align; i++) {
		pp = good_params();
		pp.align = bad_align[i];
		char what[64];
		snprintf(what, sizeof what, "align %zu", bad_align[i]);
		expect_einval(&pp, what);
	}

	pp = good_params();
	pp.cache_size = IOP_CACHE_SIZE_MAX + 1;
	expect_einval(&pp, "cache_size IOP_CACHE_SIZE_MAX + 1");
	pp.cache_size = UINT32_MAX;
	expect_einval(&pp, "cache_size UINT32_MAX");

	/* a power of two from 2 MiB to 1 GiB */
	static const size_t bad_chunk[] = { 1, 4096, 64 * KiB, 1 * MiB,
					    2 * MiB - 1, 2 * MiB + 4096,
					    3 * MiB, 2048 * MiB,
					    (size_t)1 << 40, SIZE_MAX };
	for (size_t i = 0; i < sizeof bad_chunk / sizeof *bad_chunk; i++) {
		pp = good_params();
		pp.chunk_size = bad_chunk[i];
		char what[64];
		snprintf(what, sizeof what, "chunk_size %zu", bad_chunk[i]);
		expect_einval(&pp, what);
	}
	pp = good_params();
	pp.obj_size = IOP_OBJ_SIZE_MAX;
	pp.chunk_size = 1 * MiB;
	expect_einval(&pp, "chunk_size 1 MiB for 1 MiB objects");

	static const uint32_t bad_flags[] = { IOP_F_ALL + 1, 1u << 6, 1u << 16,
					      1u << 31, ~IOP_F_ALL, UINT32_MAX };
	for (size_t i = 0; i < sizeof bad_flags / sizeof *bad_flags; i++) {
		pp = good_params();
		pp.flags = bad_flags[i];
		char what[64];
		snprintf(what, sizeof what, "flags %#x", bad_flags[i]);
		expect_einval(&pp, what);
	}

	pp = good_params();
	pp.reserved0 = 1;
	expect_einval(&pp, "reserved0 1");
	pp.reserved0 = 0x80000000u;
	expect_einval(&pp, "reserved0 0x80000000");

	char longname[IOP_NAME_MAX + 8];
	memset(longname, 'n', sizeof longname);
	longname[IOP_NAME_MAX] = '\0'; /* IOP_NAME_MAX characters: too long */
	pp = good_params();
	pp.name = longname;
	expect_einval(&pp, "name of IOP_NAME_MAX characters");
	longname[IOP_NAME_MAX + 7] = '\0';
	expect_einval(&pp, "name of IOP_NAME_MAX + 7 characters");

	/* A newer caller's larger struct is refused only when the bytes this
	 * library does not know are not zero. */
	struct {
		struct iop_pool_params p;
		uint64_t newer[2];
	} big;
	memset(&big, 0, sizeof big);
	big.p = good_params();
	big.p.struct_size = sizeof big;
	big.newer[1] = 1;
	expect_einval(&big.p, "larger struct with non-zero unknown bytes");

	/* a release hook needs IOP_F_REFCOUNT */
	pp = good_params();
	pp.release = never_release;
	expect_einval(&pp, "release hook without IOP_F_REFCOUNT");
	pp.flags = IOP_F_CHECKED | IOP_F_NO_THP | IOP_F_PREFAULT;
	expect_einval(&pp, "release hook with every flag but IOP_F_REFCOUNT");
	return TH_PASS;
}

/* The bounds, reserve, decay and populate cases of the EINVAL list in
 * iopool.h, one by one (the other cases are above). */
TEST(pool_create_refuses_each_documented_einval_of_bounds_reserve_decay_populate)
{
	const uint64_t max = (uint64_t)1 << 40;
	struct iop_pool_params pp;
#define EINVAL_CASE(what, ...)          \
	do {                            \
		pp = good_params();     \
		__VA_ARGS__;            \
		expect_einval(&pp, what); \
	} while (0)
	EINVAL_CASE("limit and limit_bytes both set", pp.limit = 10, pp.limit_bytes = 2560);
	EINVAL_CASE("limit_bytes below obj_size", pp.limit_bytes = 255);
	EINVAL_CASE("limit above 2^40", pp.limit = max + 1);
	EINVAL_CASE("limit UINT64_MAX", pp.limit = UINT64_MAX);
	EINVAL_CASE("limit_bytes / obj_size above 2^40", pp.obj_size = 16, pp.limit_bytes = (max + 1) * 16);
	EINVAL_CASE("throttle_on_pct without a limit", pp.throttle_on_pct = 50);
	EINVAL_CASE("throttle_off_pct without a limit", pp.throttle_off_pct = 40);
	EINVAL_CASE("throttle_on_pct above 100", pp.limit = 10, pp.throttle_on_pct = 101);
	EINVAL_CASE("throttle_on_pct 0 with throttle_off_pct set", pp.limit = 10, pp.throttle_off_pct = 40);
	EINVAL_CASE("throttle_off_pct 0 below a throttle_on_pct under 100", pp.limit = 10, pp.throttle_on_pct = 70);
	EINVAL_CASE("throttle_off_pct equal to throttle_on_pct", pp.limit = 10, pp.throttle_on_pct = 70,
		    pp.throttle_off_pct = 70);
	EINVAL_CASE("throttle_off_pct above throttle_on_pct", pp.limit = 10, pp.throttle_on_pct = 70,
		    pp.throttle_off_pct = 90);
	EINVAL_CASE("throttle_off_pct 100 with throttle_on_pct 100", pp.limit = 10, pp.throttle_on_pct = 100,
		    pp.throttle_off_pct = 100);
	EINVAL_CASE("populate above the limit", pp.limit = 10, pp.populate = 11);
	EINVAL_CASE("populate above limit_bytes / obj_size", pp.limit_bytes = 2560, pp.populate = 11);
	EINVAL_CASE("reserve_high below reserve_low", pp.reserve_low = 100, pp.reserve_high = 99);
	EINVAL_CASE("reserve_low above the limit", pp.limit = 10, pp.reserve_low = 11);
	EINVAL_CASE("reserve_low above 2^40", pp.reserve_low = max + 1);
	EINVAL_CASE("reserve_high above 2^40", pp.reserve_high = max + 1);
	EINVAL_CASE("decay_pct above 100", pp.decay_ms = 10, pp.decay_pct = 101);
	EINVAL_CASE("decay_pct without decay_ms", pp.decay_pct = 30);
#undef EINVAL_CASE
	/* The boundaries just inside each rule are accepted. */
	pp = good_params();
	pp.limit = max;
	pp.throttle_on_pct = 100; /* off 0: no throttling */
	pp.populate = 1;
	pp.reserve_low = 1;
	pp.reserve_high = 1;
	pp.decay_ms = 1000;
	pp.decay_pct = 100;
	iop_pool_t *p = iop_pool_create(&pp);
	CHECK(p != NULL);
	if (p)
		CHECK_EQ(iop_pool_destroy(p), 0);
	return TH_PASS;
}

TEST(pool_create_accepts_boundary_params)
{
	struct {
		const char *what;
		size_t obj, align, chunk;
		uint32_t cache, flags;
	} ok[] = {
		{ "smallest object", IOP_OBJ_SIZE_MIN, 0, 0, 0, 0 },
		{ "largest object", IOP_OBJ_SIZE_MAX, 0, 0, 0, 0 },
		{ "largest object, 2 MiB chunk", IOP_OBJ_SIZE_MAX, 0, 2 * MiB,
		  0, 0 },
		{ "align 1", 100, 1, 0, 0, 0 },
		{ "align 4096", 100, 4096, 0, 0, 0 },
		{ "align 2 MiB", 100, 2 * MiB, 0, 0, IOP_F_NO_THP },
		{ "largest object, align 2 MiB", IOP_OBJ_SIZE_MAX, 2 * MiB,
		  2 * MiB, 0, IOP_F_NO_THP },
		{ "cache_size 1", 64, 0, 0, 1, 0 },
		{ "cache_size max", 64, 0, 0, IOP_CACHE_SIZE_MAX, 0 },
		{ "smallest chunk", 64, 0, 2 * MiB, 0, 0 },
		{ "4 MiB chunk", 64, 0, 4 * MiB, 0, 0 },
		{ "largest chunk", 64, 0, 1024 * MiB, 0, IOP_F_NO_THP },
		{ "all flags", 64, 0, 0, 0, IOP_F_ALL },
		{ "checked", 64, 0, 0, 0, IOP_F_CHECKED },
		{ "no THP", 64, 0, 0, 0, IOP_F_NO_THP },
		{ "prefault", 64, 0, 0, 0, IOP_F_PREFAULT },
		{ "refcount", 64, 0, 0, 0, IOP_F_REFCOUNT },
		{ "refcount, checked", 64, 0, 0, 0,
		  IOP_F_REFCOUNT | IOP_F_CHECKED },
	};
	for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
		struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
		pp.name = ok[i].what;
		pp.obj_size = ok[i].obj;
		pp.align = ok[i].align;
		pp.chunk_size = ok[i].chunk;
		pp.cache_size = ok[i].cache;
		pp.flags = ok[i].flags;
		errno = 0;
		iop_pool_t *p = iop_pool_create(&pp);
		if (!p) {
			th_fail_at(__FILE__, __LINE__, "%s: create failed: %s",
				   ok[i].what, strerror(errno));
			continue;
		}
		CHECK_EQ(iop_pool_obj_size(p), ok[i].obj);
		/* a refcounted pool's buffers go through iop_buf_* */
		int rc = (ok[i].flags & IOP_F_REFCOUNT) != 0;
		void *o = rc ? iop_buf_alloc(p) : iop_alloc(p);
		CHECK(o != NULL);
		if (o) {
			memset(o, 0x5a, ok[i].obj);
			CHECK_PTR_EQ(iop_pool_of(o), p);
			size_t align = ok[i].align ? ok[i].align : 16;
			CHECK_EQ((uintptr_t)o % align, 0);
		}
		if (rc && o)
			iop_buf_put(p, o);
		else if (!rc)
			iop_free(p, o);
		struct iop_pool_stats st = STATS(p);
		CHECK_EQ(st.in_flight, 0);
		CHECK_CONSERVED(st);
		if (ok[i].cache)
			CHECK_EQ(st.cache_size, ok[i].cache);
		if (ok[i].chunk)
			CHECK_EQ(st.chunk_size, ok[i].chunk);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}

	/* name of IOP_NAME_MAX - 1 characters: the longest allowed */
	char name[IOP_NAME_MAX];
	memset(name, 'x', sizeof name);
	name[IOP_NAME_MAX - 1] = '\0';
	iop_pool_t *p = MKPOOL(name, 64, 0, 0, 0, 0);
	CHECK(strcmp(iop_pool_name(p), name) == 0);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);

	/* A larger struct from a newer header with zero bytes past what the
	 * library knows is accepted. */
	struct {
		struct iop_pool_params p;
		uint64_t newer[2];
	} big;
	memset(&big, 0, sizeof big);
	big.p = good_params();
	big.p.struct_size = sizeof big;
	errno = 0;
	p = iop_pool_create(&big.p);
	CHECK(p != NULL);
	if (p) {
		CHECK_EQ(iop_pool_obj_size(p), 256);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
	return TH_PASS;
}

/* A caller built against 0.1 passes a struct that ends before the hooks:
 * what lies past struct_size is not read, and the hooks take their defaults
 * (none). The bytes after it here hold hooks that fail the test if called,
 * and a release hook without IOP_F_REFCOUNT, which would be refused if it
 * were read. */
TEST(pool_create_accepts_a_v1_sized_params_struct)
{
	CHECK_EQ(IOP_POOL_PARAMS_SIZE_V1,
		 offsetof(struct iop_pool_params, chunk_size) + sizeof(size_t));
	static const uint32_t flags[] = { 0, IOP_F_REFCOUNT };
	for (int f = 0; f < 2; f++) {
		struct iop_pool_params pp = good_params();
		pp.struct_size = (uint32_t)IOP_POOL_PARAMS_SIZE_V1;
		pp.flags = flags[f];
		pp.map = never_map;
		pp.unmap = never_unmap;
		pp.release = never_release;
		pp.hook_arg = (void *)&pp;
		errno = 0;
		iop_pool_t *p = iop_pool_create(&pp);
		if (!p) {
			th_fail_at(__FILE__, __LINE__, "V1-sized params, flags "
				   "%#x: create failed: %s", flags[f],
				   strerror(errno));
			continue;
		}
		CHECK_EQ(iop_pool_obj_size(p), 256);
		void *objs[600];
		for (int i = 0; i < 600; i++) {
			objs[i] = flags[f] ? iop_buf_alloc(p) : iop_alloc(p);
			REQUIRE(objs[i]);
			uint64_t h = 77;
			CHECK_EQ(iop_buf_mapping(p, objs[i], &h, NULL), 0);
			CHECK_EQ(h, 0); /* no map hook: handle 0 */
		}
		for (int i = 0; i < 600; i++) {
			if (flags[f])
				iop_buf_put(p, objs[i]);
			else
				iop_free(p, objs[i]);
		}
		struct iop_pool_stats st = STATS(p);
		CHECK_EQ(st.in_flight, 0);
		CHECK_EQ(st.map_calls, 0);
		CHECK_EQ(st.release_hook, 0);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
	return TH_PASS;
}

/* iop_pool_params_init() gives what IOP_POOL_PARAMS_INIT gives: the size
 * set, every other byte zero (padding included, so no garbage reaches a
 * field a later library reads), whatever the struct held before; a pool
 * created from it has the defaults; NULL is ignored. */
TEST(params_init_zeroes_every_field_and_sets_the_size)
{
	struct iop_pool_params pp;
	memset(&pp, 0xa5, sizeof(pp));
	iop_pool_params_init(&pp);
	CHECK_EQ(pp.struct_size, sizeof(struct iop_pool_params));
	const unsigned char *b = (const unsigned char *)&pp;
	for (size_t i = sizeof(pp.struct_size); i < sizeof(pp); i++) {
		if (b[i] != 0) {
			th_fail_at(__FILE__, __LINE__, "byte %zu of the params is %#x after iop_pool_params_init()",
				   i, b[i]);
			break;
		}
	}
	struct iop_pool_params macro = IOP_POOL_PARAMS_INIT;
	CHECK_EQ(pp.struct_size, macro.struct_size);
	CHECK_EQ(pp.flags, macro.flags);
	CHECK_EQ(pp.cache_size, macro.cache_size);
	CHECK_EQ(pp.limit, macro.limit);
	CHECK_EQ(pp.decay_ms, macro.decay_ms);
	CHECK(pp.name == NULL && pp.map == NULL && pp.release == NULL);

	pp.obj_size = 100;
	iop_pool_t *p = iop_pool_create(&pp);
	REQUIRE(p);
	CHECK_STR_HAS(iop_pool_name(p), "pool");
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.limit, 0);
	CHECK_EQ(st.reserve_low, 0);
	CHECK_GE(st.cache_size, 4);
	void *o = iop_alloc(p);
	CHECK(o != NULL);
	iop_free(p, o);
	CHECK_DESTROY(p);

	iop_pool_params_init(NULL); /* does nothing, does not crash */
	return TH_PASS;
}

TEST(pool_name_defaults_to_pool_n)
{
	iop_pool_t *a = MKPOOL(NULL, 64, 0, 0, 0, 0);
	iop_pool_t *b = MKPOOL(NULL, 64, 0, 0, 0, 0);
	const char *na = iop_pool_name(a), *nb = iop_pool_name(b);
	REQUIRE(na != NULL && nb != NULL);
	CHECK(strncmp(na, "pool", 4) == 0);
	CHECK(strncmp(nb, "pool", 4) == 0);
	CHECK(na[4] != '\0' && nb[4] != '\0');
	for (const char *c = na + 4; *c; c++)
		CHECK(isdigit((unsigned char)*c));
	for (const char *c = nb + 4; *c; c++)
		CHECK(isdigit((unsigned char)*c));
	CHECK(strcmp(na, nb) != 0);
	CHECK_AUDIT(a);
	CHECK_AUDIT(b);
	CHECK_DESTROY(a);
	CHECK_DESTROY(b);
	return TH_PASS;
}

TEST(pool_name_is_copied)
{
	char name[IOP_NAME_MAX] = "rx-ring";
	iop_pool_t *p = MKPOOL(name, 2048, 0, 0, 0, 0);
	memset(name, 'z', sizeof name - 1);
	CHECK(strcmp(iop_pool_name(p), "rx-ring") == 0);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(pool_reports_obj_size_and_stride)
{
	static const struct {
		size_t obj, align, stride;
	} c[] = {
		{ 16, 0, 16 },     { 17, 0, 32 },       { 100, 64, 128 },
		{ 128, 64, 128 },  { 1000, 512, 1024 }, { 4096, 4096, 4096 },
		{ 4097, 4096, 8192 }, { 24, 8, 24 },
		/* alignments below 8 give 8 */
		{ 20, 1, 24 },     { 20, 2, 24 },       { 20, 4, 24 },
		{ 16, 2 * MiB, 2 * MiB },
	};
	for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
		iop_pool_t *p = MKPOOL("stride", c[i].obj, c[i].align, 0, 0, 0);
		CHECK_EQ(iop_pool_obj_size(p), c[i].obj);
		struct iop_pool_stats st = STATS(p);
		CHECK_EQ(st.obj_size, c[i].obj);
		CHECK_EQ(st.obj_stride, c[i].stride);
		CHECK_EQ(st.total, 0);
		CHECK_EQ(st.chunks, 0);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
	return TH_PASS;
}

/*
 * IOP_F_SPREAD pads a stride of 8 cache lines or a multiple (8 alignment
 * units when align is above 64) by one line (one unit), and leaves every
 * other stride alone. What it is for, counted from the addresses: the
 * first lines of 1024 objects of one chunk fall into all 64 sets of an L1
 * cache (64-byte lines), against 2 without the flag; and the pool works
 * as any pool whose stride is not a power of two (frees checked, nothing
 * lost).
 */
TEST(spread_pads_strides_of_eight_lines_and_fills_every_cache_set)
{
	static const struct {
		size_t obj, align, stride;
	} c[] = {
		{ 2048, 0, 2112 }, { 4096, 0, 4160 }, { 512, 0, 576 },   { 1536, 0, 1600 },
		{ 2000, 0, 2000 }, { 100, 0, 112 },   { 448, 0, 448 },   { 2048, 128, 2176 },
		{ 2048, 512, 2048 }, { 4096, 4096, 4096 }, { 65536, 0, 65600 },
	};
	for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
		iop_pool_t *p = MKPOOL("spread", c[i].obj, c[i].align, 0, 0, IOP_F_SPREAD);
		struct iop_pool_stats st = STATS(p);
		CHECK_EQ(st.obj_stride, c[i].stride);
		CHECK_EQ(iop_pool_obj_size(p), c[i].obj);
		CHECK_DESTROY(p);
	}
	enum { N = 1024 };
	void **objs = calloc(N, sizeof *objs);
	REQUIRE(objs);
	for (int flag = 0; flag < 2; flag++) {
		iop_pool_t *p = MKPOOL("spreadsets", 2048, 0, 0, 0, flag ? IOP_F_SPREAD : 0);
		CHECK_EQ(iop_alloc_bulk(p, objs, N), N);
		uint64_t sets = 0;
		for (int i = 0; i < N; i++) {
			memset(objs[i], 0x5a, 2048);
			sets |= 1ull << (((uintptr_t)objs[i] >> 6) & 63);
		}
		CHECK_EQ(__builtin_popcountll(sets), flag ? 64 : 2);
		iop_free_bulk(p, objs, N);
		for (int i = 0; i < N; i++)
			objs[i] = iop_alloc(p);
		for (int i = 0; i < N; i++)
			iop_free(p, objs[i]);
		struct iop_pool_stats st = STATS(p);
		CHECK_EQ(st.in_flight, 0);
		CHECK_CONSERVED(st);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
	free(objs);
	return TH_PASS;
}

TEST(pool_default_cache_size_follows_obj_size)
{
	/* about 256 KiB per magazine, 4 to 256 objects */
	static const struct {
		size_t obj;
		uint32_t lo, hi;
	} c[] = {
		{ 16, 256, 256 },     { 64, 256, 256 },
		{ 1024, 256, 256 },   { 4096, 48, 80 },
		{ 16384, 12, 20 },    { 64 * KiB, 4, 5 },
		{ IOP_OBJ_SIZE_MAX, 4, 4 },
	};
	for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
		iop_pool_t *p = MKPOOL("cache", c[i].obj, 0, 0, 0, 0);
		struct iop_pool_stats st = STATS(p);
		if (st.cache_size < c[i].lo || st.cache_size > c[i].hi)
			th_fail_at(__FILE__, __LINE__,
				   "obj_size %zu: cache_size %u, expected "
				   "%u..%u", c[i].obj, st.cache_size, c[i].lo,
				   c[i].hi);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
	iop_pool_t *p = MKPOOL("cache7", 64, 0, 7, 0, 0);
	CHECK_EQ(STATS(p).cache_size, 7);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

static int is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

TEST(pool_chunk_size_default_explicit_and_grown)
{
	iop_pool_t *p = MKPOOL("chunk-default", 256, 0, 0, 0, 0);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.chunk_size, 2 * MiB);
	CHECK_GE(st.objs_per_chunk, 2 * MiB / 256 - 64);
	CHECK_LE(st.objs_per_chunk, 2 * MiB / 256);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);

	p = MKPOOL("chunk-4m", 1024, 0, 0, 4 * MiB, 0);
	st = STATS(p);
	CHECK_EQ(st.chunk_size, 4 * MiB);
	CHECK_GE(st.objs_per_chunk, 4 * MiB / 1024 - 64);
	CHECK_LE(st.objs_per_chunk, 4 * MiB / 1024);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);

	/* Fewer than 8 objects would fit in 2 MiB: the default grows. */
	static const size_t big[] = { 300 * KiB, 512 * KiB, IOP_OBJ_SIZE_MAX };
	for (size_t i = 0; i < sizeof big / sizeof *big; i++) {
		p = MKPOOL("chunk-grown", big[i], 0, 0, 0, 0);
		st = STATS(p);
		CHECK(is_pow2(st.chunk_size));
		CHECK_GT(st.chunk_size, 2 * MiB);
		CHECK_GE(st.objs_per_chunk, 8);
		/* and not far past what is needed (a header may cost
		 * one doubling): a quarter of the chunk holds < 8 */
		CHECK_LT(st.chunk_size / 4 / st.obj_stride, 8);
		void *o = iop_alloc(p);
		REQUIRE(o);
		uintptr_t base = (uintptr_t)o & ~(uintptr_t)(st.chunk_size - 1);
		CHECK_EQ(base, ((uintptr_t)o + big[i] - 1) &
				       ~(uintptr_t)(st.chunk_size - 1));
		iop_free(p, o);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}

	/* An explicit chunk is honoured even when it holds few objects. */
	p = MKPOOL("chunk-explicit", 512 * KiB, 0, 0, 2 * MiB, 0);
	st = STATS(p);
	CHECK_EQ(st.chunk_size, 2 * MiB);
	CHECK_GE(st.objs_per_chunk, 1);
	CHECK_LE(st.objs_per_chunk, 4);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Allocation                                                                */
/* ------------------------------------------------------------------------ */

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (void *const *)a;
	uintptr_t y = (uintptr_t) * (void *const *)b;
	return x < y ? -1 : x > y;
}

/* Sort and check that no two of objs[0..n) overlap by `size` bytes. */
static void check_disjoint(void **objs, size_t n, size_t size)
{
	qsort(objs, n, sizeof *objs, cmp_ptr);
	for (size_t i = 1; i < n; i++)
		if ((uintptr_t)objs[i - 1] + size > (uintptr_t)objs[i]) {
			th_fail_at(__FILE__, __LINE__,
				   "objects %p and %p overlap (size %zu)",
				   objs[i - 1], objs[i], size);
			return;
		}
}

TEST(alloc_returns_aligned_objects_for_every_align)
{
	static const size_t sizes[] = { 16, 100, 5000 };
	for (size_t align = 16; align <= 4096; align *= 2) {
		for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
			size_t obj = sizes[s];
			iop_pool_t *p = MKPOOL("align", obj, align, 0, 0,
					       0);
			struct iop_pool_stats st = STATS(p);
			size_t stride = (obj + align - 1) & ~(align - 1);
			CHECK_EQ(st.obj_stride, stride);
			/* three chunks' worth where that is cheap, so later
			 * chunks are covered for the larger strides */
			size_t n = 3 * st.objs_per_chunk + 1;
			if (n > 20000)
				n = 20000;
			void **objs = calloc(n, sizeof *objs);
			REQUIRE(objs);
			for (size_t i = 0; i < n; i++) {
				objs[i] = iop_alloc(p);
				REQUIRE(objs[i]);
				if ((uintptr_t)objs[i] % align)
					th_fail_at(__FILE__, __LINE__,
						   "align %zu obj %zu: %p "
						   "misaligned", align, obj,
						   objs[i]);
				uintptr_t m = ~(uintptr_t)(st.chunk_size - 1);
				if (((uintptr_t)objs[i] & m) !=
				    (((uintptr_t)objs[i] + obj - 1) & m))
					th_fail_at(__FILE__, __LINE__,
						   "%p straddles a chunk",
						   objs[i]);
				CHECK_PTR_EQ(iop_pool_of(objs[i]), p);
				memset(objs[i], (int)i, obj);
			}
			st = STATS(p);
			CHECK_EQ(st.in_flight, n);
			CHECK_GE(st.chunks, (n + st.objs_per_chunk - 1) /
						    st.objs_per_chunk);
			CHECK_CONSERVED(st);
			check_disjoint(objs, n, obj);
			iop_free_bulk(p, objs, (unsigned)n);
			free(objs);
			CHECK_AUDIT(p);
			CHECK_DESTROY(p);
		}
	}
	/* align 0 gives 16 */
	iop_pool_t *p = MKPOOL("align0", 17, 0, 0, 0, 0);
	CHECK_EQ(STATS(p).obj_stride, 32);
	for (int i = 0; i < 100; i++) {
		void *o = iop_alloc(p);
		CHECK_EQ((uintptr_t)o % 16, 0);
		iop_free(p, o);
	}
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(alloc_objects_of_smallest_and_largest_size_are_usable)
{
	static const size_t sizes[] = { IOP_OBJ_SIZE_MIN, IOP_OBJ_SIZE_MAX };
	for (size_t s = 0; s < 2; s++) {
		size_t size = sizes[s];
		iop_pool_t *p = MKPOOL("extreme", size, 0, 0, 0, 0);
		size_t n = size == IOP_OBJ_SIZE_MAX ? 20 : 50000;
		void **objs = calloc(n, sizeof *objs);
		REQUIRE(objs);
		for (size_t i = 0; i < n; i++) {
			objs[i] = iop_alloc(p);
			REQUIRE(objs[i]);
			th_fill(objs[i], size, i);
		}
		for (size_t i = 0; i < n; i++) {
			size_t bad = th_verify(objs[i], size, i);
			if (bad != (size_t)-1) {
				th_fail_at(__FILE__, __LINE__,
					   "size %zu object %zu (%p) changed "
					   "at byte %zu", size, i, objs[i],
					   bad);
				break;
			}
		}
		struct iop_pool_stats st = STATS(p);
		CHECK_EQ(st.in_flight, n);
		CHECK_CONSERVED(st);
		check_disjoint(objs, n, size);
		for (size_t i = 0; i < n; i++)
			iop_free(p, objs[i]);
		free(objs);
		CHECK_EQ(STATS(p).in_flight, 0);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
	return TH_PASS;
}

TEST(alloc_free_single_updates_stats)
{
	iop_pool_t *p = MKPOOL("single", 128, 0, 0, 0, 0);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_EQ(st.chunk_acquire, 0);
	void *a = iop_alloc(p);
	REQUIRE(a);
	st = STATS(p);
	CHECK_EQ(st.in_flight, 1);
	CHECK_EQ(st.chunks, 1);
	CHECK_EQ(st.chunk_acquire, 1);
	CHECK_EQ(st.bytes_mapped, 2 * MiB);
	CHECK_GE(st.alloc_fast + st.alloc_slow, 1);
	CHECK_CONSERVED(st);
	void *b = iop_alloc(p);
	REQUIRE(b);
	CHECK(a != b);
	CHECK_EQ(STATS(p).in_flight, 2);
	iop_free(p, a);
	st = STATS(p);
	CHECK_EQ(st.in_flight, 1);
	CHECK_COUNTS(p, 1, 2, 1);
	iop_free(p, b);
	st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_EQ(st.alloc_fail, 0);
	CHECK_COUNTS(p, 0, 2, 2);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* Pin the calling thread to the CPU it runs on (best effort): per CPU,
 * objects freed on one CPU are cached there, and a thread that moves
 * meets an empty cache on the other. */
static void pin_here(void)
{
	int cpu = sched_getcpu();
	if (cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		(void)sched_setaffinity(0, sizeof(set), &set);
	}
}

/* Pinned: in the per-CPU mode, a thread moved to the other CPU between its
 * frees and its allocations finds the objects in the first CPU's slot,
 * and the pool rightly maps a chunk (seen once under ctest -j2). */
TEST(alloc_reuses_freed_objects_without_new_chunks)
{
	pin_here();
	iop_pool_t *p = MKPOOL("reuse", 512, 0, 0, 0, 0);
	enum { N = 20000 };
	void **objs = calloc(N, sizeof *objs);
	REQUIRE(objs);
	CHECK_EQ(iop_alloc_bulk(p, objs, N), N);
	iop_free_bulk(p, objs, N);
	struct iop_pool_stats before = STATS(p);
	for (int round = 0; round < 5; round++) {
		for (int i = 0; i < N; i++)
			objs[i] = iop_alloc(p);
		for (int i = 0; i < N; i++)
			iop_free(p, objs[i]);
	}
	struct iop_pool_stats after = STATS(p);
	CHECK_EQ(after.chunk_acquire, before.chunk_acquire);
	CHECK_EQ(after.total, before.total);
	CHECK_EQ(after.in_flight, 0);
	CHECK_CONSERVED(after);
	free(objs);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(alloc_bulk_of_zero_returns_zero_and_keeps_errno)
{
	iop_pool_t *p = MKPOOL("bulk0", 64, 0, 0, 0, 0);
	void *objs[4] = { (void *)1, (void *)2, (void *)3, (void *)4 };
	errno = 12345;
	CHECK_EQ(iop_alloc_bulk(p, objs, 0), 0);
	CHECK_EQ(errno, 12345);
	CHECK(objs[0] == (void *)1);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	iop_free_bulk(p, objs, 0); /* n = 0 frees nothing, reads nothing */
	CHECK_EQ(STATS(p).in_flight, 0);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(alloc_bulk_larger_than_a_magazine)
{
	iop_pool_t *p = MKPOOL("bulkbig", 64, 0, 32, 0, 0);
	CHECK_EQ(STATS(p).cache_size, 32);
	enum { N = 1000 };
	void *objs[N];
	errno = 0;
	CHECK_EQ(iop_alloc_bulk(p, objs, N), N);
	for (int i = 0; i < N; i++)
		th_stamp(objs[i], 64, (uint64_t)i);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.in_flight, N);
	CHECK_CONSERVED(st);
	for (int i = 0; i < N; i++)
		CHECK_STAMP(objs[i], 64, (uint64_t)i);
	void *sorted[N];
	memcpy(sorted, objs, sizeof objs);
	check_disjoint(sorted, N, 64);
	/* free in odd-sized slices, some larger than a magazine */
	unsigned done = 0, slice = 1;
	while (done < N) {
		unsigned k = slice < N - done ? slice : N - done;
		iop_free_bulk(p, objs + done, k);
		done += k;
		slice = slice * 3 + 1;
	}
	st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_CONSERVED(st);
	/* and again: bulk alloc of 1000 now served from the caches/depot */
	CHECK_EQ(iop_alloc_bulk(p, objs, N), N);
	CHECK_EQ(STATS(p).chunk_acquire, st.chunk_acquire);
	iop_free_bulk(p, objs, N);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(alloc_bulk_spans_many_chunks)
{
	enum { N = 1000, OBJ = 32 * 1024 };
	iop_pool_t *p = MKPOOL("bulkchunks", OBJ, 0, 0, 0, IOP_F_NO_THP);
	struct iop_pool_stats st;
	void **objs = calloc(N, sizeof *objs);
	REQUIRE(objs);
	CHECK_EQ(iop_alloc_bulk(p, objs, N), N);
	st = STATS(p);
	CHECK_EQ(st.in_flight, N);
	CHECK_GE(st.chunks, (N + st.objs_per_chunk - 1) / st.objs_per_chunk);
	CHECK_GE(st.chunk_acquire, st.chunks);
	CHECK_CONSERVED(st);
	size_t nbases = 0;
	uintptr_t *bases = calloc(N, sizeof *bases);
	REQUIRE(bases);
	for (int i = 0; i < N; i++) {
		CHECK_PTR_EQ(iop_pool_of(objs[i]), p);
		bases[i] = (uintptr_t)objs[i] & ~(uintptr_t)(st.chunk_size - 1);
		th_fill(objs[i], OBJ, (uint64_t)i);
	}
	qsort(bases, N, sizeof *bases, cmp_ptr);
	for (int i = 0; i < N; i++)
		nbases += i == 0 || bases[i] != bases[i - 1];
	CHECK_GE(nbases, N / st.objs_per_chunk);
	CHECK_LE(nbases, st.chunks);
	for (int i = 0; i < N; i++)
		CHECK_EQ(th_verify(objs[i], OBJ, (uint64_t)i), (size_t)-1);
	iop_free_bulk(p, objs, N);
	CHECK_EQ(STATS(p).in_flight, 0);
	free(bases);
	free(objs);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/*
 * Every bulk size from 1 to past three slots: each call hands out k
 * distinct objects of the pool, and a free_bulk of them followed by an
 * alloc_bulk of the same size gets the same objects back whenever neither
 * call went to the depot: in the same order from a per-CPU slot (a stack:
 * the copies into it and out of it must keep every pointer and its place),
 * as the same set from a thread's two magazines (whose bulk allocation
 * takes the newer one first). The thread is pinned to one CPU so that both
 * calls use one slot; the stats say which calls stayed off the depot (and,
 * per CPU, off the slow paths), and at least every size up to a slot must
 * have.
 */
/* One size of the two tests below, k objects: 1 when neither call went to
 * the depot (nor, per CPU, to a slow path) and so the same objects had to
 * come back. always_inline, so that a constant k stays one at the bulk
 * calls. */
enum { RT_MAXK = 128 };
static inline __attribute__((always_inline)) unsigned bulk_roundtrip(iop_pool_t *p, bool per_cpu, void **a, void **b,
								    unsigned k)
{
	void *sorted[RT_MAXK];
	unsigned fast = 0;
	CHECK_EQ(iop_alloc_bulk(p, a, k), k);
	for (unsigned i = 0; i < k; i++)
		CHECK_PTR_EQ(iop_pool_of(a[i]), p);
	memcpy(sorted, a, k * sizeof(void *));
	check_disjoint(sorted, k, 64);
	CHECK_EQ(STATS(p).in_flight, k);
	/* Freed in the reverse order: the slot's places then change value,
	 * so a store the push's copy left out shows (the pop that handed
	 * them out leaves the old values there). */
	for (unsigned i = 0; i < k / 2; i++) {
		void *t = a[i];
		a[i] = a[k - 1 - i];
		a[k - 1 - i] = t;
	}
	struct iop_pool_stats st0 = STATS(p);
	iop_free_bulk(p, a, k);
	CHECK_EQ(iop_alloc_bulk(p, b, k), k);
	struct iop_pool_stats st1 = STATS(p);
	bool off_depot = st1.depot_get == st0.depot_get && st1.depot_put == st0.depot_put;
	if (per_cpu && off_depot && st1.alloc_slow == st0.alloc_slow && st1.free_slow == st0.free_slow) {
		fast = 1;
		for (unsigned i = 0; i < k; i++)
			CHECK_PTR_EQ(b[i], a[i]);
	} else if (!per_cpu && off_depot) {
		fast = 1;
		void *sb[RT_MAXK];
		memcpy(sb, b, k * sizeof(void *));
		qsort(sb, k, sizeof(void *), cmp_ptr);
		for (unsigned i = 0; i < k; i++)
			CHECK_PTR_EQ(sb[i], sorted[i]);
	}
	iop_free_bulk(p, b, k);
	CHECK_EQ(STATS(p).in_flight, 0);
	return fast;
}

/*
 * The inline bursts ask the pool's simd byte (inline.h, IOP__SIMD_*), not
 * __builtin_cpu_supports(), whether they may use AVX and AVX2; 0 is what a
 * library from before the byte left in its zeroed struct, and must keep
 * them to SSE2. The tests below run with the byte as the library set it
 * and cleared.
 */
static void clear_simd(iop_pool_t *p)
{
	IOP__RCAST(struct iop__pool_hot *, p)->simd = 0;
}

/* Does the first "flags" line of /proc/cpuinfo (what the kernel lets
 * programs use) name flag? -1 when it cannot be read. */
static int cpuinfo_has(const char *flag)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[8192];
	int has = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f)) {
		char *colon = strchr(line, ':');
		if (strncmp(line, "flags", 5) != 0 || colon == NULL)
			continue;
		has = 0;
		for (char *t = strtok(colon + 1, " \n"); t; t = strtok(NULL, " \n"))
			has |= strcmp(t, flag) == 0;
		break;
	}
	fclose(f);
	return has;
}

TEST(pool_simd_byte_says_what_the_cpu_runs)
{
	unsigned want = 0;
#if defined(__x86_64__) || defined(__i386__)
	__builtin_cpu_init();
	want = (__builtin_cpu_supports("avx") ? IOP__SIMD_AVX : 0) | (__builtin_cpu_supports("avx2") ? IOP__SIMD_AVX2 : 0);
#endif
	iop_pool_t *p = MKPOOL("simd", 64, 0, 0, 0, 0);
	CHECK_EQ(IOP__HOT(p)->simd, want);
	/* And against the kernel's own list, a source the library does not
	 * read (x86 only: elsewhere the byte stays 0). */
#if defined(__x86_64__) || defined(__i386__)
	int avx = cpuinfo_has("avx"), avx2 = cpuinfo_has("avx2");
	if (avx >= 0) {
		CHECK_EQ(!!(IOP__HOT(p)->simd & IOP__SIMD_AVX), avx);
		CHECK_EQ(!!(IOP__HOT(p)->simd & IOP__SIMD_AVX2), avx2);
	}
#else
	CHECK_EQ(IOP__HOT(p)->simd, 0);
#endif
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* The inline paths read the whole hot struct on every call: each pool
 * starts on a cache line, so that it is one line and not two (calloc's
 * 16-byte alignment split it unless malloc returned a multiple of 64).
 * Pools of several kinds, and a heap class's, between mallocs of odd
 * sizes. */
TEST(every_pool_starts_on_a_cache_line)
{
	iop_pool_t *pools[12];
	void *gaps[12];
	for (unsigned i = 0; i < 12; i++) {
		gaps[i] = malloc(16 * (i + 1));
		CHECK(gaps[i] != NULL);
		pools[i] = MKPOOL("aligned", 64 + 32 * i, 0, i % 3 ? 8 * i : 0, 0, i % 2 ? IOP_F_REFCOUNT : 0);
		CHECK_EQ((uintptr_t)pools[i] % 64, 0);
	}
	void *h = iop_heap_alloc(100);
	CHECK(h != NULL);
	CHECK_EQ((uintptr_t)iop_pool_of(h) % 64, 0);
	iop_heap_free(h);
	for (unsigned i = 0; i < 12; i++) {
		CHECK_DESTROY(pools[i]);
		free(gaps[i]);
	}
	return TH_PASS;
}

static void every_size_to_three_slots(bool clear)
{
	enum { CAP = 32, MAXK = 3 * CAP + 9 };
	_Static_assert((int)MAXK <= (int)RT_MAXK, "bulk_roundtrip's arrays");
	pin_here();
	/* A power-of-two stride (iop_free_bulk of 16 and more checks the
	 * owner inside the push's copy, with AVX2) and another (the check,
	 * then the copy). */
	static const size_t objsz[] = { 64, 96 };
	for (size_t s = 0; s < sizeof objsz / sizeof *objsz; s++) {
		iop_pool_t *p = MKPOOL("bulkorder", objsz[s], 0, CAP, 0, 0);
		if (clear)
			clear_simd(p);
		uint64_t stride = STATS(p).obj_stride;
		CHECK_EQ((stride & (stride - 1)) == 0, s == 0);
		bool per_cpu = STATS(p).cache_mode == IOP_CACHE_MODE_CPU;
		void *a[MAXK], *b[MAXK];
		unsigned fast = 0;
		for (unsigned round = 0; round < 3; round++)
			for (unsigned k = 1; k <= MAXK; k++)
				fast += bulk_roundtrip(p, per_cpu, a, b, k);
		CHECK_GE(fast, 3 * CAP);
		struct iop_pool_stats st = STATS(p);
		CHECK_CONSERVED(st);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
}

TEST(bulk_of_every_size_to_three_slots_gets_back_what_it_freed)
{
	every_size_to_three_slots(false);
	return TH_PASS;
}

TEST(bulk_of_every_size_gets_back_what_it_freed_with_the_simd_byte_cleared)
{
	every_size_to_three_slots(true);
	return TH_PASS;
}

/*
 * The same with the size a constant at each call, 1 to 64
 * (IOP__SEQ_CONST_MAX) and 65, past it: there the bulk calls take the
 * sequences whose copies the assembler lays out for that size (inline.h,
 * IOP__SEQ_COPYC: one 8-byte move, one to four 16-byte moves, or groups of
 * four 16- or 32-byte moves with the last group ending at k), and iop_
 * free_bulk() of 2 to 8 only the stores that size needs. A copy that
 * dropped, doubled or moved a pointer gives back other objects or another
 * order. Every size fits the slot (cache 80), so every call must stay on
 * the fast path (per CPU; a thread's magazines, without rseq).
 */
static void every_constant_size(bool clear)
{
	pin_here();
	/* a power-of-two stride and another, as above */
	static const size_t objsz[] = { 64, 96 };
	for (size_t s = 0; s < sizeof objsz / sizeof *objsz; s++) {
		iop_pool_t *p = MKPOOL("bulkconst", objsz[s], 0, 80, 0, 0);
		if (clear)
			clear_simd(p);
		bool per_cpu = STATS(p).cache_mode == IOP_CACHE_MODE_CPU;
		void *a[RT_MAXK], *b[RT_MAXK];
		unsigned fast = 0;
		for (unsigned round = 0; round < 3; round++) {
#define RT(k) fast += bulk_roundtrip(p, per_cpu, a, b, k);
#define RT8(k) RT(k + 1) RT(k + 2) RT(k + 3) RT(k + 4) RT(k + 5) RT(k + 6) RT(k + 7) RT(k + 8)
			RT8(0) RT8(8) RT8(16) RT8(24) RT8(32) RT8(40) RT8(48) RT8(56) RT(65)
#undef RT8
#undef RT
		}
		CHECK_GE(fast, 3 * 65);
		struct iop_pool_stats st = STATS(p);
		CHECK_CONSERVED(st);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
}

TEST(bulk_of_every_constant_size_gets_back_what_it_freed)
{
	every_constant_size(false);
	return TH_PASS;
}

TEST(bulk_of_every_constant_size_gets_back_what_it_freed_with_the_simd_byte_cleared)
{
	every_constant_size(true);
	return TH_PASS;
}

/*
 * Bulk frees of 16 to 65 objects whose arrays mix chunks: with AVX2 the
 * owner check runs inside the push's copy (inline.h,
 * iop__seq_push_bulk_own), which accepts only the first pointer's chunk;
 * an array that leaves it must still be freed whole, by the check that
 * knows several chunks. Objects of 32 KiB (a power of two, 64 to a chunk)
 * and 24 KiB (85): the arrays take every 37th of the pool's 260 objects
 * sorted by address, so that neighbours in an array are chunks apart.
 * Every object is freed once: the counts balance, the audit agrees, and
 * the next allocation of all 260 gives 260 distinct objects of the pool.
 */
enum { ACROSS_N = 260, ACROSS_STEP = 37 };
static void free_bulk_across(size_t obj)
{
	iop_pool_t *p = MKPOOL("bulkacross", obj, 0, 80, 0, IOP_F_NO_THP);
	static void *objs[ACROSS_N], *arr[ACROSS_N];
	const unsigned n = ACROSS_N;
	for (unsigned k = 16; k <= 65; k++) {
		CHECK_EQ(iop_alloc_bulk(p, objs, n), n);
		qsort(objs, n, sizeof *objs, cmp_ptr);
		CHECK_GE(((uintptr_t)objs[n - 1] - (uintptr_t)objs[0]) / (2 * MiB), 2);
		for (unsigned i = 0; i < n; i++)
			arr[i] = objs[(i * ACROSS_STEP) % n];
		/* k = 32 and 64 also as literals (the copy laid out for them) */
		unsigned i = 0;
		if (k == 32)
			for (; i + 32 <= n; i += 32)
				iop_free_bulk(p, arr + i, 32);
		if (k == 64)
			for (; i + 64 <= n; i += 64)
				iop_free_bulk(p, arr + i, 64);
		for (; i < n; i += k)
			iop_free_bulk(p, arr + i, n - i < k ? n - i : k);
		struct iop_pool_stats st = STATS(p);
		CHECK_EQ(st.in_flight, 0);
		CHECK_CONSERVED(st);
	}
	CHECK_EQ(iop_alloc_bulk(p, objs, n), n);
	for (unsigned i = 0; i < n; i++)
		CHECK_PTR_EQ(iop_pool_of(objs[i]), p);
	memcpy(arr, objs, sizeof objs);
	check_disjoint(arr, n, obj);
	iop_free_bulk(p, objs, n);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
}

TEST(free_bulk_of_16_to_65_across_chunks_frees_every_object)
{
	pin_here();
	free_bulk_across(32 * 1024);
	free_bulk_across(24 * 1024);
	return TH_PASS;
}

/*
 * Bulk calls of exactly a slot, one more and one less, two slots and many
 * magazines (the depot's side of one call spans them), alternating with
 * frees of other sizes so that the slot is empty, full and in between when
 * a call arrives: every object handed out once, none lost, and the chunks
 * mapped by the first round serve all the later ones.
 */
TEST(bulk_calls_of_a_slot_and_of_many_magazines_lose_nothing)
{
	enum { CAP = 32, N = 40 * CAP };
	iop_pool_t *p = MKPOOL("bulkmags", 64, 0, CAP, 0, 0);
	CHECK_EQ(STATS(p).cache_size, CAP);
	static const unsigned sizes[] = { CAP, CAP - 1, CAP + 1, 2 * CAP, 2 * CAP + 1, 5 * CAP + 3, 17 * CAP, N };
	void **objs = calloc(N, sizeof(void *)), **sorted = calloc(N, sizeof(void *));
	REQUIRE(objs && sorted);
	uint64_t chunks = 0;
	for (unsigned round = 0; round < 4; round++) {
		for (unsigned s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			unsigned k = sizes[s];
			CHECK_EQ(iop_alloc_bulk(p, objs, k), k);
			for (unsigned i = 0; i < k; i++) {
				CHECK_PTR_EQ(iop_pool_of(objs[i]), p);
				th_stamp(objs[i], 64, ((uint64_t)s << 32) + i);
			}
			memcpy(sorted, objs, k * sizeof(void *));
			check_disjoint(sorted, k, 64);
			struct iop_pool_stats st = STATS(p);
			CHECK_EQ(st.in_flight, k);
			CHECK_CONSERVED(st);
			for (unsigned i = 0; i < k; i++)
				CHECK_STAMP(objs[i], 64, ((uint64_t)s << 32) + i);
			/* Freed in one call, or in two of unequal sizes. */
			if (s % 2) {
				iop_free_bulk(p, objs, k);
			} else {
				iop_free_bulk(p, objs, k / 3);
				iop_free_bulk(p, objs + k / 3, k - k / 3);
			}
			st = STATS(p);
			CHECK_EQ(st.in_flight, 0);
			CHECK_CONSERVED(st);
		}
		if (round == 0)
			chunks = STATS(p).chunk_acquire;
	}
	CHECK_EQ(STATS(p).chunk_acquire, chunks);
	free(objs);
	free(sorted);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(free_bulk_skips_null_entries)
{
	iop_pool_t *p = MKPOOL("bulknull", 64, 0, 0, 0, 0);
	void *objs[8] = { 0 };
	objs[1] = iop_alloc(p);
	objs[4] = iop_alloc(p);
	objs[7] = iop_alloc(p);
	REQUIRE(objs[1] && objs[4] && objs[7]);
	CHECK_EQ(STATS(p).in_flight, 3);
	iop_free_bulk(p, objs, 8);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_CONSERVED(st);
	void *nulls[3] = { NULL, NULL, NULL };
	iop_free_bulk(p, nulls, 3);
	CHECK_EQ(STATS(p).in_flight, 0);
	/* A bulk of one NULL (inline, iop_free()'s path): the size a
	 * constant, then a variable. */
	iop_free_bulk(p, nulls, 1);
	volatile unsigned one = 1;
	iop_free_bulk(p, nulls, one);
	st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_EQ(st.alloc_fast + st.alloc_slow, 3);
	CHECK_EQ(st.free_fast + st.free_slow, 3);
	CHECK_CONSERVED(st);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(free_of_null_does_nothing)
{
	iop_pool_t *p = MKPOOL("freenull", 64, 0, 0, 0, 0);
	void *o = iop_alloc(p);
	REQUIRE(o);
	struct iop_pool_stats a = STATS(p);
	iop_free(p, NULL);
	iop_free(p, NULL);
	struct iop_pool_stats b = STATS(p);
	CHECK(memcmp(&a, &b, sizeof a) == 0);
	CHECK_EQ(b.in_flight, 1);
	iop_free(p, o);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(objects_are_distinct_and_keep_their_contents)
{
	iop_pool_t *p = MKPOOL("contents", 200, 8, 0, 0, 0);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.obj_stride, 200);
	enum { N = 5000 };
	void **objs = calloc(N, sizeof *objs);
	REQUIRE(objs);
	for (int i = 0; i < N; i++) {
		objs[i] = iop_alloc(p);
		REQUIRE(objs[i]);
		th_fill(objs[i], 200, 1000003ULL * (uint64_t)i);
		/* interleave frees and reallocations of older objects */
		if (i % 7 == 6) {
			int j = i - 3;
			iop_free(p, objs[j]);
			objs[j] = iop_alloc(p);
			REQUIRE(objs[j]);
			th_fill(objs[j], 200, 1000003ULL * (uint64_t)j);
		}
	}
	for (int i = 0; i < N; i++) {
		size_t bad = th_verify(objs[i], 200, 1000003ULL * (uint64_t)i);
		if (bad != (size_t)-1) {
			th_fail_at(__FILE__, __LINE__,
				   "object %d (%p) changed at byte %zu", i,
				   objs[i], bad);
			break;
		}
	}
	void **sorted = calloc(N, sizeof *sorted);
	REQUIRE(sorted);
	memcpy(sorted, objs, N * sizeof *objs);
	check_disjoint(sorted, N, 200);
	free(sorted);
	st = STATS(p);
	CHECK_EQ(st.in_flight, N);
	CHECK_CONSERVED(st);
	CHECK_AUDIT(p); /* objects in flight are fine for the audit */
	for (int i = 0; i < N; i++)
		iop_free(p, objs[i]);
	free(objs);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(checked_pool_allocates_and_frees_normally)
{
	iop_pool_t *p = MKPOOL("checked", 96, 0, 8, 0, IOP_F_CHECKED);
	enum { N = 3000 };
	void **objs = calloc(N, sizeof *objs);
	REQUIRE(objs);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++) {
			objs[i] = iop_alloc(p);
			REQUIRE(objs[i]);
			th_stamp(objs[i], 96, (uint64_t)i);
		}
		CHECK_EQ(STATS(p).in_flight, N);
		CHECK_AUDIT(p);
		for (int i = 0; i < N; i++) {
			CHECK_STAMP(objs[i], 96, (uint64_t)i);
			iop_free(p, objs[i]);
		}
		struct iop_pool_stats st = STATS(p);
		CHECK_EQ(st.in_flight, 0);
		CHECK_CONSERVED(st);
		CHECK_AUDIT(p);
	}
	CHECK_EQ(iop_alloc_bulk(p, objs, N), N);
	iop_free_bulk(p, objs, N);
	free(objs);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(million_alloc_free_pairs_take_the_fast_path)
{
	iop_pool_t *p = MKPOOL("million", 64, 0, 0, 0, 0);
	enum { N = 1000000 };
	uintptr_t sum = 0;
	for (int i = 0; i < N; i++) {
		void *o = iop_alloc(p);
		REQUIRE(o);
		sum += (uintptr_t)o;
		*(volatile int *)o = i;
		iop_free(p, o);
	}
	CHECK(sum != 0);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_LE(st.chunks, 1);
	CHECK_CONSERVED(st);
	CHECK_EQ(st.alloc_fail, 0);
	/* every allocation is counted once, on one path or the other */
	CHECK_COUNTS(p, 0, N, N);
	if (!TH_ALL_CHECKED) {
		/* a warm cache serves nearly all of them */
		CHECK_GE(st.alloc_fast, N - N / 100);
		CHECK_GE(st.free_fast, N - N / 100);
		CHECK_LE(st.depot_get + st.depot_put, 10);
	}
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* populate                                                                  */
/* ------------------------------------------------------------------------ */

TEST(populate_fills_depot_so_first_allocations_map_nothing)
{
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = "populated";
	pp.obj_size = 1024;
	pp.cache_size = 64;
	pp.populate = 1000;
	iop_pool_t *p = iop_pool_create(&pp);
	REQUIRE(p);
	struct iop_pool_stats st = STATS(p);
	CHECK_GE(st.depot, 1000 / 64 * 64);
	CHECK_GE(st.depot + st.slab_free, 1000);
	CHECK_EQ(st.in_flight, 0);
	CHECK_EQ(st.cached, 0);
	CHECK_GE(st.chunk_acquire, 1);
	CHECK_GE(st.total, 1000);
	CHECK_CONSERVED(st);
	uint64_t acquired = st.chunk_acquire;

	enum { N = 1000 };
	void *objs[N];
	long page = sysconf(_SC_PAGESIZE);
	unsigned char vec[1];
	size_t not_resident = 0;
	for (int i = 0; i < N; i++) {
		objs[i] = iop_alloc(p);
		REQUIRE(objs[i]);
		/* faulted in at creation: resident before we touch it */
		void *pg = (void *)((uintptr_t)objs[i] & ~(uintptr_t)(page - 1));
		if (mincore(pg, (size_t)page, vec) == 0 && !(vec[0] & 1))
			not_resident++;
	}
	CHECK_EQ(not_resident, 0);
	st = STATS(p);
	CHECK_EQ(st.chunk_acquire, acquired);
	CHECK_EQ(st.in_flight, N);
	CHECK_GE(st.depot_get, 1);
	CHECK_CONSERVED(st);
	iop_free_bulk(p, objs, N);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);

	/* without populate, nothing is mapped at creation */
	p = MKPOOL("lazy", 1024, 0, 64, 0, 0);
	st = STATS(p);
	CHECK_EQ(st.chunk_acquire, 0);
	CHECK_EQ(st.depot, 0);
	CHECK_EQ(st.total, 0);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Flags that change how chunks are mapped                                   */
/* ------------------------------------------------------------------------ */

/* How many of the pages of [base, base + len) are resident. */
static size_t resident_pages(uintptr_t base, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), n = len / page, r = 0;
	unsigned char *vec = malloc(n);
	REQUIRE(vec);
	REQUIRE(mincore((void *)base, len, vec) == 0);
	for (size_t i = 0; i < n; i++)
		r += vec[i] & 1;
	free(vec);
	return r;
}

TEST(prefault_flag_faults_in_the_whole_chunk)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	iop_pool_t *p = MKPOOL("prefault", 4096, 0, 0, 0,
			       IOP_F_PREFAULT | IOP_F_NO_THP);
	void *o = iop_alloc(p);
	REQUIRE(o);
	struct iop_pool_stats st = STATS(p);
	uintptr_t base = (uintptr_t)o & ~(uintptr_t)(st.chunk_size - 1);
	CHECK_EQ(resident_pages(base, st.chunk_size), st.chunk_size / page);
	iop_free(p, o);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);

	/* the control: without the flag, untouched pages stay out */
	if (!TH_ALL_CHECKED) {
		p = MKPOOL("lazy", 4096, 0, 0, 0, IOP_F_NO_THP);
		o = iop_alloc(p);
		REQUIRE(o);
		st = STATS(p);
		base = (uintptr_t)o & ~(uintptr_t)(st.chunk_size - 1);
		CHECK_LT(resident_pages(base, st.chunk_size),
			 st.chunk_size / page / 2);
		iop_free(p, o);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
	return TH_PASS;
}

/* The THPeligible line of the /proc/self/smaps entry that holds addr. */
static int thp_eligible(uintptr_t addr)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	char line[512];
	int inside = 0, r = -1;
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			inside = addr >= lo && addr < hi;
			continue;
		}
		int v;
		if (inside && sscanf(line, "THPeligible: %d", &v) == 1) {
			r = v;
			break;
		}
	}
	fclose(f);
	return r;
}

TEST(chunks_are_advised_for_hugepages_unless_no_thp)
{
	char mode[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	TH_SKIP_IF(!f, "no transparent hugepages here");
	if (!fgets(mode, sizeof mode, f))
		mode[0] = '\0';
	fclose(f);
	TH_SKIP_IF(strstr(mode, "[never]") || !strstr(mode, "["),
		   "transparent hugepages are off");

	iop_pool_t *p = MKPOOL("thp", 4096, 0, 0, 0, 0);
	void *o = iop_alloc(p);
	REQUIRE(o);
	int e = thp_eligible((uintptr_t)o);
	TH_SKIP_IF(e < 0, "no THPeligible in /proc/self/smaps");
	CHECK_EQ(e, 1);
	iop_free(p, o);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);

	/* with "always", every mapping is eligible: only "madvise" shows
	 * that the flag kept the advice away */
	if (strstr(mode, "[madvise]")) {
		p = MKPOOL("no-thp", 4096, 0, 0, 0, IOP_F_NO_THP);
		o = iop_alloc(p);
		REQUIRE(o);
		CHECK_EQ(thp_eligible((uintptr_t)o), 0);
		iop_free(p, o);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Many pools                                                                */
/* ------------------------------------------------------------------------ */

/* No fixed limit on pools (0.4 had 256, and the heap's classes counted):
 * 4096 pools with the heap in use, each used from two threads. */
struct many_arg {
	iop_pool_t **pools;
	int n;
	int bad;
};

static void *many_pools_thread(void *arg)
{
	struct many_arg *m = arg;
	for (int i = 0; i < m->n; i++) {
		void *o = iop_alloc(m->pools[i]);
		if (!o || iop_pool_of(o) != m->pools[i]) {
			m->bad++;
			continue;
		}
		th_stamp(o, 32, (uint64_t)i);
		void *h = iop_heap_alloc((size_t)(i % 5000) + 1);
		if (!h)
			m->bad++;
		CHECK_STAMP(o, 32, (uint64_t)i);
		iop_free(m->pools[i], o);
		iop_heap_free(h);
	}
	return NULL;
}

TEST(pool_create_has_no_fixed_limit_4096_pools_with_the_heap_in_use)
{
	enum { MANY = 4096 };
	iop_pool_t **pools = calloc(MANY, sizeof *pools);
	REQUIRE(pools);
	void *h = iop_heap_alloc(100); /* the heap has pools of its own */
	REQUIRE(h);
	for (int n = 0; n < MANY; n++) {
		char name[IOP_NAME_MAX];
		snprintf(name, sizeof name, "many%d", n);
		struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
		pp.name = name;
		pp.obj_size = 32;
		pp.flags = IOP_F_NO_THP;
		pp.cache_size = 4;
		pools[n] = iop_pool_create(&pp);
		REQUIRE(pools[n]);
	}
	struct many_arg a = { pools, MANY, 0 }, b = { pools, MANY, 0 };
	pthread_t ta, tb;
	REQUIRE(pthread_create(&ta, NULL, many_pools_thread, &a) == 0);
	REQUIRE(pthread_create(&tb, NULL, many_pools_thread, &b) == 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	CHECK_EQ(a.bad + b.bad, 0);
	for (int n = 0; n < MANY; n++) {
		struct iop_pool_stats st = STATS(pools[n]);
		CHECK_EQ(st.in_flight, 0);
		CHECK_EQ(st.alloc_fast + st.alloc_slow, 2);
		if (n % 512 == 0)
			CHECK_AUDIT(pools[n]);
		CHECK_DESTROY(pools[n]);
	}
	iop_heap_free(h);
	free(pools);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* iop_pool_of                                                               */
/* ------------------------------------------------------------------------ */

static int static_object[64];

TEST(pool_of_finds_the_owner_of_any_chunk_address)
{
	iop_pool_t *a = MKPOOL("owner-a", 256, 0, 0, 0, 0);
	iop_pool_t *b = MKPOOL("owner-b", 256, 0, 0, 4 * MiB, 0);
	iop_pool_t *c = MKPOOL("owner-c", 3000, 0, 0, 0, 0);
	struct iop_pool_stats sa, sb;
	void *oa[300], *ob[300], *oc[300];
	/* interleaved, so the chunks of the three pools sit near each other */
	for (int i = 0; i < 300; i++) {
		oa[i] = iop_alloc(a);
		ob[i] = iop_alloc(b);
		oc[i] = iop_alloc(c);
		REQUIRE(oa[i] && ob[i] && oc[i]);
	}
	sa = STATS(a);
	sb = STATS(b);
	for (int i = 0; i < 300; i++) {
		CHECK_PTR_EQ(iop_pool_of(oa[i]), a);
		CHECK_PTR_EQ(iop_pool_of(ob[i]), b);
		CHECK_PTR_EQ(iop_pool_of(oc[i]), c);
		/* interior and last byte of the object */
		CHECK_PTR_EQ(iop_pool_of((char *)oa[i] + 1), a);
		CHECK_PTR_EQ(iop_pool_of((char *)ob[i] + 255), b);
		CHECK_PTR_EQ(iop_pool_of((char *)oc[i] + 2999), c);
	}
	/* any address inside the chunk, object or not: base, middle, end */
	uintptr_t base = (uintptr_t)oa[0] & ~(uintptr_t)(sa.chunk_size - 1);
	CHECK_PTR_EQ(iop_pool_of((void *)base), a);
	CHECK_PTR_EQ(iop_pool_of((void *)(base + sa.chunk_size / 2)), a);
	CHECK_PTR_EQ(iop_pool_of((void *)(base + sa.chunk_size - 1)), a);
	base = (uintptr_t)ob[0] & ~(uintptr_t)(sb.chunk_size - 1);
	CHECK_PTR_EQ(iop_pool_of((void *)base), b);
	CHECK_PTR_EQ(iop_pool_of((void *)(base + sb.chunk_size - 1)), b);

	CHECK_STR_HAS(iop_pool_name(iop_pool_of(ob[7])), "owner-b");
	iop_free_bulk(a, oa, 300);
	iop_free_bulk(b, ob, 300);
	iop_free_bulk(c, oc, 300);
	CHECK_AUDIT(a);
	CHECK_AUDIT(b);
	CHECK_AUDIT(c);
	CHECK_DESTROY(a);
	CHECK_DESTROY(b);
	CHECK_DESTROY(c);
	return TH_PASS;
}

/* Two pools growing side by side in the smallest chunks. Just outside each
 * chunk's first and last byte, the owner is whichever of the two pools has a
 * chunk there, or no pool: no other pool exists in this process. */
static int has_base(const uintptr_t *bases, size_t n, uintptr_t x)
{
	for (size_t i = 0; i < n; i++)
		if (bases[i] == x)
			return 1;
	return 0;
}

static iop_pool_t *expected_owner(iop_pool_t *a, const uintptr_t *ba,
				  iop_pool_t *b, const uintptr_t *bb, size_t n,
				  uintptr_t addr)
{
	uintptr_t base = addr & ~(uintptr_t)(2 * MiB - 1);
	if (has_base(ba, n, base))
		return a;
	if (has_base(bb, n, base))
		return b;
	return NULL;
}

TEST(pool_of_is_exact_at_the_edges_of_chunks)
{
	enum { OBJ = 64 * 1024, N = 200 };
	iop_pool_t *a = MKPOOL("side-a", OBJ, 0, 4, 2 * MiB, IOP_F_NO_THP);
	iop_pool_t *b = MKPOOL("side-b", OBJ, 0, 4, 2 * MiB, IOP_F_NO_THP);
	struct iop_pool_stats st = STATS(a);
	CHECK_EQ(st.chunk_size, 2 * MiB);
	void **oa = calloc(N, sizeof *oa), **ob = calloc(N, sizeof *ob);
	uintptr_t *ba = calloc(N, sizeof *ba), *bb = calloc(N, sizeof *bb);
	REQUIRE(oa && ob && ba && bb);
	for (int i = 0; i < N; i++) {
		oa[i] = iop_alloc(a);
		ob[i] = iop_alloc(b);
		REQUIRE(oa[i] && ob[i]);
		ba[i] = (uintptr_t)oa[i] & ~(uintptr_t)(2 * MiB - 1);
		bb[i] = (uintptr_t)ob[i] & ~(uintptr_t)(2 * MiB - 1);
	}
	size_t owned_edges = 0;
	for (int i = 0; i < N; i++) {
		CHECK_PTR_EQ(iop_pool_of(oa[i]), a);
		CHECK_PTR_EQ(iop_pool_of(ob[i]), b);
		uintptr_t bases[2] = { ba[i], bb[i] };
		iop_pool_t *owner[2] = { a, b };
		for (int k = 0; k < 2; k++) {
			uintptr_t lo = bases[k], hi = bases[k] + 2 * MiB;
			CHECK_PTR_EQ(iop_pool_of((void *)lo), owner[k]);
			CHECK_PTR_EQ(iop_pool_of((void *)(hi - 1)), owner[k]);
			iop_pool_t *below = expected_owner(a, ba, b, bb, N,
							   lo - 1);
			iop_pool_t *above = expected_owner(a, ba, b, bb, N, hi);
			CHECK_PTR_EQ(iop_pool_of((void *)(lo - 1)), below);
			CHECK_PTR_EQ(iop_pool_of((void *)hi), above);
			owned_edges += (below != NULL) + (above != NULL);
		}
		th_fill(oa[i], 256, (uint64_t)i);
		th_fill(ob[i], 256, (uint64_t)i + N);
	}
	printf("%zu chunk edges touch another chunk\n", owned_edges);
	for (int i = 0; i < N; i++) {
		CHECK_EQ(th_verify(oa[i], 256, (uint64_t)i), (size_t)-1);
		CHECK_EQ(th_verify(ob[i], 256, (uint64_t)i + N), (size_t)-1);
	}
	st = STATS(a);
	CHECK_GE(st.chunks, N / 32);
	CHECK_CONSERVED(st);
	iop_free_bulk(a, oa, N);
	iop_free_bulk(b, ob, N);
	free(oa);
	free(ob);
	free(ba);
	free(bb);
	CHECK_AUDIT(a);
	CHECK_AUDIT(b);
	CHECK_DESTROY(a);
	CHECK_DESTROY(b);
	return TH_PASS;
}

TEST(pool_of_returns_null_for_foreign_addresses)
{
	iop_pool_t *p = MKPOOL("foreign", 64, 0, 0, 0, 0);
	void *o = iop_alloc(p); /* make sure the address map exists */
	REQUIRE(o);
	char *m = malloc(100);
	REQUIRE(m);
	char *big = malloc(8 * MiB); /* mmap'd by malloc */
	REQUIRE(big);
	int local = 0;
	CHECK(iop_pool_of(m) == NULL);
	CHECK(iop_pool_of(big) == NULL);
	CHECK(iop_pool_of(big + 4 * MiB) == NULL);
	CHECK(iop_pool_of(&local) == NULL);
	CHECK(iop_pool_of(static_object) == NULL);
	CHECK(iop_pool_of((void *)iop_pool_of) == NULL);
	CHECK(iop_pool_of(NULL) == NULL);
	CHECK(iop_pool_of((void *)(uintptr_t)4096) == NULL);
	CHECK(iop_pool_of((void *)~(uintptr_t)0) == NULL);
	CHECK(iop_pool_of((void *)((uintptr_t)1 << 62)) == NULL);
	free(big);
	free(m);
	iop_free(p, o);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(pool_of_forgets_a_destroyed_pool)
{
	iop_pool_t *p = MKPOOL("gone", 64, 0, 0, 0, 0);
	void *o = iop_alloc(p);
	REQUIRE(o);
	CHECK_PTR_EQ(iop_pool_of(o), p);
	iop_free(p, o);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	CHECK(iop_pool_of(o) == NULL);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Statistics                                                                */
/* ------------------------------------------------------------------------ */

TEST(stats_rejects_null_and_short_structs)
{
	iop_pool_t *p = MKPOOL("stats-args", 64, 0, 0, 0, 0);
	struct iop_pool_stats st;
	memset(&st, 0, sizeof st);
	st.struct_size = sizeof st;
	CHECK_EQ(iop_pool_stats(NULL, &st), -EINVAL);
	CHECK_EQ(iop_pool_stats(p, NULL), -EINVAL);
	/* below IOP_POOL_STATS_SIZE_V1, the 0.1 struct */
	static const uint32_t sizes[] = {
		0, 4, 8, 16, (uint32_t)offsetof(struct iop_pool_stats, total),
		(uint32_t)IOP_POOL_STATS_SIZE_V1 - 8,
		(uint32_t)IOP_POOL_STATS_SIZE_V1 - 1,
	};
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		memset(&st, 0xee, sizeof st);
		st.struct_size = sizes[i];
		CHECK_EQ(iop_pool_stats(p, &st), -EINVAL);
		CHECK_EQ(st.struct_size, sizes[i]);
		CHECK_EQ(st.obj_size, 0xeeeeeeeeeeeeeeeeULL); /* untouched */
	}
	/* from V1 up to the whole struct: accepted */
	static const uint32_t ok[] = {
		(uint32_t)IOP_POOL_STATS_SIZE_V1,
		(uint32_t)IOP_POOL_STATS_SIZE_V1 + 8,
		(uint32_t)sizeof st - 8,
		(uint32_t)sizeof st,
	};
	for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
		memset(&st, 0xee, sizeof st);
		st.struct_size = ok[i];
		CHECK_EQ(iop_pool_stats(p, &st), 0);
		CHECK_EQ(st.struct_size, ok[i]);
		CHECK_EQ(st.obj_size, 64);
	}
	memset(&st, 0, sizeof st);
	st.struct_size = sizeof st;
	CHECK_EQ(iop_pool_stats(p, &st), 0);
	CHECK_EQ(st.obj_size, 64);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(stats_writes_nothing_past_struct_size)
{
	iop_pool_t *p = MKPOOL("stats-size", 64, 0, 0, 0, 0);
	void *o = iop_alloc(p);
	REQUIRE(o);
	union {
		struct iop_pool_stats st;
		unsigned char raw[sizeof(struct iop_pool_stats) + 64];
	} u;
	memset(&u, 0xcd, sizeof u);
	u.st.struct_size = sizeof u.st;
	CHECK_EQ(iop_pool_stats(p, &u.st), 0);
	for (size_t i = sizeof u.st; i < sizeof u.raw; i++)
		if (u.raw[i] != 0xcd) {
			th_fail_at(__FILE__, __LINE__,
				   "byte %zu past struct_size written", i);
			break;
		}
	CHECK_EQ(u.st.struct_size, sizeof u.st);
	CHECK_EQ(u.st.in_flight, 1);
	CHECK_EQ(u.st.obj_size, 64);
	CHECK_EQ(u.st.chunk_size, 2 * MiB);

	/* a newer caller's larger struct: what this library knows is filled */
	memset(&u, 0xcd, sizeof u);
	u.st.struct_size = sizeof u.raw;
	CHECK_EQ(iop_pool_stats(p, &u.st), 0);
	CHECK_EQ(u.st.in_flight, 1);
	CHECK_EQ(u.st.chunk_release, 0);
	CHECK_EQ(u.st.hook_kept, 0); /* the last field this library knows */
	iop_free(p, o);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* A caller built against 0.1 passes the 0.1 struct: it gets the V1 fields,
 * and nothing from map_calls on is written. */
TEST(stats_fills_a_v1_sized_struct_and_nothing_past_it)
{
	CHECK_EQ(IOP_POOL_STATS_SIZE_V1,
		 offsetof(struct iop_pool_stats, chunk_release) +
			 sizeof(uint64_t));
	iop_pool_t *p = MKPOOL("stats-v1", 64, 0, 0, 0, 0);
	void *o = iop_alloc(p);
	REQUIRE(o);
	union {
		struct iop_pool_stats st;
		unsigned char raw[sizeof(struct iop_pool_stats) + 64];
	} u;
	memset(&u, 0xcd, sizeof u);
	u.st.struct_size = (uint32_t)IOP_POOL_STATS_SIZE_V1;
	CHECK_EQ(iop_pool_stats(p, &u.st), 0);
	for (size_t i = IOP_POOL_STATS_SIZE_V1; i < sizeof u.raw; i++)
		if (u.raw[i] != 0xcd) {
			th_fail_at(__FILE__, __LINE__,
				   "byte %zu past a V1 struct_size (%zu) "
				   "written", i, (size_t)IOP_POOL_STATS_SIZE_V1);
			break;
		}
	CHECK_EQ(u.st.struct_size, IOP_POOL_STATS_SIZE_V1);
	CHECK_EQ(u.st.obj_size, 64);
	CHECK_EQ(u.st.in_flight, 1);
	CHECK_EQ(u.st.chunks, 1);
	CHECK_EQ(u.st.chunk_acquire, 1);
	CHECK_EQ(u.st.chunk_release, 0); /* the last V1 field */
	CHECK_CONSERVED(u.st);

	/* the whole struct: the 0.2 fields are written, zero here */
	memset(&u, 0xcd, sizeof u);
	u.st.struct_size = sizeof u.st;
	CHECK_EQ(iop_pool_stats(p, &u.st), 0);
	CHECK_EQ(u.st.map_calls, 0);
	CHECK_EQ(u.st.unmap_calls, 0);
	CHECK_EQ(u.st.release_hook, 0);
	CHECK_EQ(u.st.hook_kept, 0);
	for (size_t i = sizeof u.st; i < sizeof u.raw; i++)
		if (u.raw[i] != 0xcd) {
			th_fail_at(__FILE__, __LINE__,
				   "byte %zu past struct_size written", i);
			break;
		}
	iop_free(p, o);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(stats_counters_track_magazine_exchanges)
{
	iop_pool_t *p = MKPOOL("exchanges", 64, 0, 16, 0, 0);
	enum { N = 16 * 20 };
	void *objs[N];
	for (int i = 0; i < N; i++)
		objs[i] = iop_alloc(p);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.in_flight, N);
	CHECK_GE(st.mag_alloc, 1);
	CHECK_GE(st.chunk_acquire, 1);
	for (int i = 0; i < N; i++)
		iop_free(p, objs[i]);
	st = STATS(p);
	/* 320 frees overflow two magazines of 16 many times over */
	CHECK_GE(st.depot_put, (N - 2 * 16) / 16);
	CHECK_GE(st.depot, (N - 2 * 16) / 16 * 16);
	CHECK_LE(st.cached, 2 * 16);
	CHECK_CONSERVED(st);
	uint64_t gets = st.depot_get;
	for (int i = 0; i < N; i++)
		objs[i] = iop_alloc(p);
	st = STATS(p);
	CHECK_GE(st.depot_get - gets, (N - 2 * 16) / 16);
	CHECK_EQ(st.in_flight, N);
	CHECK_CONSERVED(st);
	for (int i = 0; i < N; i++)
		iop_free(p, objs[i]);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* ---- a minimal JSON validator: enough to say "one well-formed object" ---- */

struct json {
	const char *s;
	int depth;
};

static void json_ws(struct json *j)
{
	while (*j->s == ' ' || *j->s == '\t' || *j->s == '\n' || *j->s == '\r')
		j->s++;
}

static int json_value(struct json *j);

static int json_string(struct json *j)
{
	if (*j->s != '"')
		return 0;
	j->s++;
	while (*j->s != '"') {
		if ((unsigned char)*j->s < 0x20)
			return 0; /* includes the terminating NUL */
		if (*j->s == '\\') {
			j->s++;
			if (*j->s == 'u') {
				for (int i = 1; i <= 4; i++)
					if (!isxdigit((unsigned char)j->s[i]))
						return 0;
				j->s += 4;
			} else if (!*j->s || !strchr("\"\\/bfnrt", *j->s)) {
				return 0;
			}
		}
		j->s++;
	}
	j->s++;
	return 1;
}

static int json_number(struct json *j)
{
	const char *s = j->s;
	if (*s == '-')
		s++;
	if (*s == '0')
		s++;
	else if (isdigit((unsigned char)*s))
		while (isdigit((unsigned char)*s))
			s++;
	else
		return 0;
	if (*s == '.') {
		s++;
		if (!isdigit((unsigned char)*s))
			return 0;
		while (isdigit((unsigned char)*s))
			s++;
	}
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (!isdigit((unsigned char)*s))
			return 0;
		while (isdigit((unsigned char)*s))
			s++;
	}
	j->s = s;
	return 1;
}

static int json_container(struct json *j, char open, char close)
{
	if (*j->s != open || ++j->depth > 64)
		return 0;
	j->s++;
	json_ws(j);
	if (*j->s == close) {
		j->s++;
		j->depth--;
		return 1;
	}
	for (;;) {
		json_ws(j);
		if (open == '{') {
			if (!json_string(j))
				return 0;
			json_ws(j);
			if (*j->s != ':')
				return 0;
			j->s++;
			json_ws(j);
		}
		if (!json_value(j))
			return 0;
		json_ws(j);
		if (*j->s == ',') {
			j->s++;
			continue;
		}
		if (*j->s != close)
			return 0;
		j->s++;
		j->depth--;
		return 1;
	}
}

static int json_value(struct json *j)
{
	switch (*j->s) {
	case '{':
		return json_container(j, '{', '}');
	case '[':
		return json_container(j, '[', ']');
	case '"':
		return json_string(j);
	case 't':
		return strncmp(j->s, "true", 4) == 0 ? (j->s += 4, 1) : 0;
	case 'f':
		return strncmp(j->s, "false", 5) == 0 ? (j->s += 5, 1) : 0;
	case 'n':
		return strncmp(j->s, "null", 4) == 0 ? (j->s += 4, 1) : 0;
	default:
		return json_number(j);
	}
}

/* 1 when text is exactly one JSON object (surrounding whitespace allowed) */
static int json_is_one_object(const char *text)
{
	struct json j = { text, 0 };
	json_ws(&j);
	if (*j.s != '{' || !json_value(&j))
		return 0;
	json_ws(&j);
	return *j.s == '\0';
}

/* The number after "key": in JSON text; -1 when absent. */
static long long json_number_of(const char *text, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof pat, "\"%s\"", key);
	const char *s = strstr(text, pat);
	if (!s)
		return -1;
	s += strlen(pat);
	while (*s == ' ' || *s == '\t' || *s == '\n')
		s++;
	if (*s++ != ':')
		return -1;
	while (*s == ' ' || *s == '\t' || *s == '\n')
		s++;
	if (!isdigit((unsigned char)*s))
		return -1;
	return strtoll(s, NULL, 10);
}

/* The number on the "key value" line of text output; -1 when absent. */
static long long text_number_of(const char *text, const char *key)
{
	size_t len = strlen(key);
	for (const char *line = text; line && *line;) {
		const char *s = line;
		while (*s == ' ' || *s == '\t')
			s++;
		if (strncmp(s, key, len) == 0 &&
		    strchr(" \t:=", s[len]) && s[len] != '\0') {
			s += len;
			while (*s && strchr(" \t:=", *s))
				s++;
			if (isdigit((unsigned char)*s))
				return strtoll(s, NULL, 10);
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return -1;
}

/* Print a pool's statistics into a malloc'd string. */
static char *print_stats(iop_pool_t *p, int format, int *rc)
{
	FILE *f = tmpfile();
	REQUIRE(f);
	*rc = iop_pool_stats_print(p, f, format);
	REQUIRE(fflush(f) == 0);
	REQUIRE(lseek(fileno(f), 0, SEEK_SET) == 0);
	char *out = th_read_all(fileno(f));
	fclose(f);
	return out;
}

/* Every field of struct iop_pool_stats but struct_size: the library's list
 * (iopool/shm.h), which its build checks against the struct. */
#define STAT_KEY(t, n) #n,
static const char *const stat_keys[] = { IOP_POOL_STATS_FIELDS(STAT_KEY) NULL };
#undef STAT_KEY

/* How many times `needle` occurs in text. */
static int occurrences(const char *text, const char *needle)
{
	int n = 0;
	for (const char *s = text; (s = strstr(s, needle)) != NULL; s += strlen(needle))
		n++;
	return n;
}

TEST(stats_print_shows_every_listed_field_once_with_its_value)
{
	iop_pool_t *p = MKPOOL("every-field", 192, 0, 0, 0, 0);
	void *objs[21];
	CHECK_EQ(iop_alloc_bulk(p, objs, 21), 21);
	iop_free_bulk(p, objs, 5);
	struct iop_pool_stats st = STATS(p); /* nothing moves from here */
	int rc;
	char *text = print_stats(p, IOP_FMT_TEXT, &rc);
	CHECK_EQ(rc, 0);
	char *json = print_stats(p, IOP_FMT_JSON, &rc);
	CHECK_EQ(rc, 0);
	/* the name, then one line or key per field; nothing else */
	CHECK_EQ(occurrences(text, "\n"), IOP_POOL_STATS_NFIELDS + 1);
	CHECK_EQ(occurrences(json, "\":"), IOP_POOL_STATS_NFIELDS + 1);
	char key[64];
#define SHOWN(t, n)                                                                          \
	snprintf(key, sizeof key, "\n  %s ", #n);                                            \
	if (occurrences(text, key) != 1 || text_number_of(text, #n) != (long long)st.n)       \
		th_fail_at(__FILE__, __LINE__, "text: %s is not shown once as %llu:\n%s", #n,  \
			   (unsigned long long)st.n, text);                                  \
	snprintf(key, sizeof key, "\"%s\":", #n);                                            \
	if (occurrences(json, key) != 1 || json_number_of(json, #n) != (long long)st.n)       \
		th_fail_at(__FILE__, __LINE__, "JSON: %s is not shown once as %llu:\n%s", #n,  \
			   (unsigned long long)st.n, json);
	IOP_POOL_STATS_FIELDS(SHOWN)
#undef SHOWN
	CHECK_EQ(st.in_flight, 16);
	free(text);
	free(json);
	iop_free_bulk(p, objs + 5, 16);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(stats_print_text_lists_every_key_with_its_value)
{
	iop_pool_t *p = MKPOOL("text-pool", 128, 0, 0, 0, 0);
	void *objs[37];
	CHECK_EQ(iop_alloc_bulk(p, objs, 37), 37);
	struct iop_pool_stats st = STATS(p);
	int rc;
	char *out = print_stats(p, IOP_FMT_TEXT, &rc);
	CHECK_EQ(rc, 0);
	/* headed by the pool's name: in the first line */
	const char *nl = strchr(out, '\n');
	CHECK(nl != NULL);
	char *first = strndup(out, nl ? (size_t)(nl - out) : strlen(out));
	CHECK_STR_HAS(first, "text-pool");
	free(first);
	for (const char *const *k = stat_keys; *k; k++)
		if (text_number_of(out, *k) < 0)
			th_fail_at(__FILE__, __LINE__,
				   "no \"%s <number>\" line in:\n%s", *k, out);
	CHECK_EQ(text_number_of(out, "in_flight"), 37);
	CHECK_EQ(text_number_of(out, "total"), st.total);
	CHECK_EQ(text_number_of(out, "chunks"), st.chunks);
	free(out);
	iop_free_bulk(p, objs, 37);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(stats_print_json_is_one_valid_object)
{
	iop_pool_t *p = MKPOOL("json-pool", 128, 0, 0, 0, 0);
	void *objs[37];
	CHECK_EQ(iop_alloc_bulk(p, objs, 37), 37);
	struct iop_pool_stats st = STATS(p);
	int rc;
	char *out = print_stats(p, IOP_FMT_JSON, &rc);
	CHECK_EQ(rc, 0);
	if (!json_is_one_object(out))
		th_fail_at(__FILE__, __LINE__, "not one JSON object:\n%s",
			   out);
	for (const char *const *k = stat_keys; *k; k++)
		if (json_number_of(out, *k) < 0)
			th_fail_at(__FILE__, __LINE__,
				   "no \"%s\": <number> in:\n%s", *k, out);
	CHECK_EQ(json_number_of(out, "in_flight"), 37);
	CHECK_EQ(json_number_of(out, "total"), st.total);
	CHECK_EQ(json_number_of(out, "chunk_size"), 2 * MiB);
	free(out);
	iop_free_bulk(p, objs, 37);
	out = print_stats(p, IOP_FMT_JSON, &rc);
	CHECK_EQ(rc, 0);
	CHECK(json_is_one_object(out));
	CHECK_EQ(json_number_of(out, "in_flight"), 0);
	free(out);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* Hooks for the printed hook counters: map counts, release keeps every
 * other buffer it sees. */
struct print_hooks {
	int maps, unmaps, releases;
};

static int print_map(void *arg, void *base, size_t len, uint64_t *handle)
{
	struct print_hooks *h = arg;
	(void)base;
	(void)len;
	*handle = (uint64_t)++h->maps;
	return 0;
}

static void print_unmap(void *arg, void *base, size_t len, uint64_t handle)
{
	struct print_hooks *h = arg;
	(void)base;
	(void)len;
	(void)handle;
	h->unmaps++;
}

static int print_release(void *arg, iop_pool_t *pool, void *buf)
{
	struct print_hooks *h = arg;
	(void)pool;
	(void)buf;
	return h->releases++ % 2 ? IOP_RELEASE_RECYCLE : IOP_RELEASE_KEEP;
}

TEST(stats_print_shows_the_hook_counters)
{
	struct print_hooks h = { 0, 0, 0 };
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = "hook-print";
	pp.obj_size = 512 * KiB; /* four objects per 2 MiB chunk at most */
	pp.chunk_size = 2 * MiB;
	pp.flags = IOP_F_REFCOUNT | IOP_F_NO_THP;
	pp.map = print_map;
	pp.unmap = print_unmap;
	pp.release = print_release;
	pp.hook_arg = &h;
	iop_pool_t *p = iop_pool_create(&pp);
	REQUIRE(p);
	enum { N = 10 };
	void *bufs[N];
	for (int i = 0; i < N; i++) {
		bufs[i] = iop_buf_alloc(p);
		REQUIRE(bufs[i]);
	}
	/* each put: kept, put again: recycled */
	for (int i = 0; i < 3; i++) {
		iop_buf_put(p, bufs[i]);
		CHECK_EQ(iop_buf_refcount(p, bufs[i]), 1);
		iop_buf_put(p, bufs[i]);
	}
	struct iop_pool_stats st = STATS(p);
	CHECK_GE(st.map_calls, 3);
	CHECK_EQ(st.map_calls, h.maps);
	CHECK_EQ(st.release_hook, 6);
	CHECK_EQ(st.hook_kept, 3);
	static const char *const hook_keys[] = { "map_calls", "unmap_calls",
						 "release_hook", "hook_kept" };
	const uint64_t want[] = { st.map_calls, st.unmap_calls,
				  st.release_hook, st.hook_kept };
	for (int fmt = 0; fmt < 2; fmt++) {
		int rc;
		char *out = print_stats(p, fmt ? IOP_FMT_JSON : IOP_FMT_TEXT,
					&rc);
		CHECK_EQ(rc, 0);
		for (int k = 0; k < 4; k++) {
			long long v = fmt ? json_number_of(out, hook_keys[k])
					  : text_number_of(out, hook_keys[k]);
			if (v != (long long)want[k])
				th_fail_at(__FILE__, __LINE__,
					   "%s: %s is %lld, want %llu in:\n%s",
					   fmt ? "JSON" : "text", hook_keys[k],
					   v, (unsigned long long)want[k], out);
		}
		if (fmt)
			CHECK(json_is_one_object(out));
		free(out);
	}
	for (int i = 3; i < N; i++) {
		iop_buf_put(p, bufs[i]);
		if (iop_buf_refcount(p, bufs[i]) == 1) /* kept */
			iop_buf_put(p, bufs[i]);
	}
	CHECK_EQ(STATS(p).in_flight, 0);
	CHECK_AUDIT(p);
	int maps = h.maps;
	CHECK_DESTROY(p);
	CHECK_EQ(h.unmaps, maps);
	return TH_PASS;
}

TEST(stats_print_json_escapes_the_pool_name)
{
	/* any name is valid; the JSON must stay valid whatever it holds */
	iop_pool_t *p = MKPOOL("say \"hi\" \\ \t", 128, 0, 0, 0, 0);
	int rc;
	char *out = print_stats(p, IOP_FMT_JSON, &rc);
	CHECK_EQ(rc, 0);
	if (!json_is_one_object(out))
		th_fail_at(__FILE__, __LINE__, "not one JSON object:\n%s",
			   out);
	free(out);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(stats_print_rejects_bad_args)
{
	iop_pool_t *p = MKPOOL("print-args", 64, 0, 0, 0, 0);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	REQUIRE(f);
	CHECK_EQ(iop_pool_stats_print(NULL, f, IOP_FMT_TEXT), -EINVAL);
	CHECK_EQ(iop_pool_stats_print(p, NULL, IOP_FMT_TEXT), -EINVAL);
	CHECK_EQ(iop_pool_stats_print(p, f, 2), -EINVAL);
	CHECK_EQ(iop_pool_stats_print(p, f, -1), -EINVAL);
	CHECK_EQ(iop_pool_stats_print(p, f, 1000), -EINVAL);
	fclose(f);
	free(buf);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(stats_print_reports_write_errors_as_eio)
{
	iop_pool_t *p = MKPOOL("print-eio", 64, 0, 0, 0, 0);
	FILE *f = fopen("/dev/full", "w");
	TH_SKIP_IF(!f, "no /dev/full");
	setvbuf(f, NULL, _IONBF, 0); /* every write reaches the device */
	CHECK_EQ(iop_pool_stats_print(p, f, IOP_FMT_TEXT), -EIO);
	clearerr(f);
	CHECK_EQ(iop_pool_stats_print(p, f, IOP_FMT_JSON), -EIO);
	fclose(f);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Destroy                                                                   */
/* ------------------------------------------------------------------------ */

TEST(destroy_with_objects_in_flight_returns_ebusy_and_keeps_pool)
{
	iop_pool_t *p = MKPOOL("busy-pool", 256, 0, 0, 0, 0);
	void *objs[37];
	CHECK_EQ(iop_alloc_bulk(p, objs, 37), 37);
	for (int i = 0; i < 37; i++)
		th_stamp(objs[i], 256, (uint64_t)i);
	struct iop_pool_stats before = STATS(p);

	th_capture_begin();
	int rc = iop_pool_destroy(p);
	char *warn = th_capture_end();
	CHECK_EQ(rc, -EBUSY);
	CHECK_STR_HAS(warn, "iopool: pool 'busy-pool': not destroyed: 37 objects still in flight");
	free(warn);

	/* left exactly as it was, and usable */
	struct iop_pool_stats after = STATS(p);
	CHECK_EQ(after.in_flight, 37);
	CHECK_EQ(after.total, before.total);
	CHECK_EQ(after.chunks, before.chunks);
	CHECK_EQ(after.chunk_release, before.chunk_release);
	CHECK_STR_HAS(iop_pool_name(p), "busy-pool");
	for (int i = 0; i < 37; i++) {
		CHECK_PTR_EQ(iop_pool_of(objs[i]), p);
		CHECK_STAMP(objs[i], 256, (uint64_t)i);
	}
	void *more = iop_alloc(p);
	REQUIRE(more);
	CHECK_AUDIT(p);

	iop_free_bulk(p, objs, 36);
	th_capture_begin();
	rc = iop_pool_destroy(p); /* still two: objs[36] and more */
	warn = th_capture_end();
	CHECK_EQ(rc, -EBUSY);
	CHECK_STR_HAS(warn, "busy-pool");
	free(warn);
	CHECK_EQ(STATS(p).in_flight, 2);
	iop_free(p, objs[36]);
	iop_free(p, more);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(destroy_and_audit_reject_null)
{
	CHECK_EQ(iop_pool_destroy(NULL), -EINVAL);
	CHECK_EQ(iop_pool_audit(NULL), -EINVAL);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Threads and caches                                                        */
/* ------------------------------------------------------------------------ */

/* iopool.h, "A NULL pool": every call that takes a pool and can report an
 * error refuses NULL with EINVAL. The inline fast paths do not test it
 * (undefined behaviour); the same calls through the exported functions
 * (this case's _noinline variant) and the library's slow paths, which
 * the inline code calls, refuse it. (0.4: iop_alloc(NULL) and
 * iop_buf_alloc(NULL) crashed with SIGSEGV through the exported calls.)
 * The calls that abort on a NULL pool are in test_death. */
TEST(null_pool_is_refused_by_every_call_that_takes_one)
{
	void *obj = (void *)1, *objs[4] = { (void *)1, (void *)1, (void *)1, (void *)1 };
	struct iop_pool_stats st = { .struct_size = sizeof st };
	struct iop_domain_stats ds = { .struct_size = sizeof ds };
	uint64_t h;

	th_capture_begin();
#ifdef IOP_NO_INLINE
	errno = 0;
	CHECK(iop_alloc(NULL) == NULL);
	CHECK_EQ(errno, EINVAL);
	errno = 0;
	CHECK_EQ(iop_alloc_bulk(NULL, objs, 4), 0);
	CHECK_EQ(errno, EINVAL);
	errno = 0;
	CHECK(iop_buf_alloc(NULL) == NULL);
	CHECK_EQ(errno, EINVAL);
	iop_free(NULL, NULL);           /* obj NULL: nothing, as for any pool */
	void *nulls[3] = { NULL, NULL, NULL };
	iop_free_bulk(NULL, nulls, 3);  /* no entry to free */
	iop_free_bulk(NULL, objs, 0);
#endif
	/* The slow paths the inline code calls. */
	errno = 0;
	CHECK(iop__alloc_slow(NULL) == NULL);
	CHECK_EQ(errno, EINVAL);
	errno = 0;
	CHECK_EQ(iop__alloc_bulk_slow(NULL, objs, 4), 0);
	CHECK_EQ(errno, EINVAL);
	errno = 0;
	CHECK(iop__buf_alloc_slow(NULL) == NULL);
	CHECK_EQ(errno, EINVAL);
	iop__free_slow(NULL, NULL);
	/* The calls that were always in the library. */
	CHECK_EQ(iop_alloc_bulk_ex(NULL, objs, 4, 0, 0), -EINVAL);
	CHECK_EQ(iop_alloc_ex(NULL, &obj, 0, 0), -EINVAL);
	CHECK(obj == NULL);
	obj = (void *)1;
	CHECK_EQ(iop_buf_alloc_ex(NULL, &obj, IOP_WAIT, 1000), -EINVAL);
	CHECK(obj == NULL);
	errno = 0;
	CHECK_EQ(iop_buf_alloc_bulk(NULL, objs, 4), 0);
	CHECK_EQ(errno, EINVAL);
	CHECK_EQ(iop_pool_destroy(NULL), -EINVAL);
	CHECK_EQ(iop_pool_flush(NULL), -EINVAL);
	CHECK_EQ(iop_pool_shrink(NULL, 0), -EINVAL);
	CHECK_EQ(iop_pool_stats(NULL, &st), -EINVAL);
	CHECK_EQ(iop_pool_stats_print(NULL, stdout, IOP_FMT_TEXT), -EINVAL);
	CHECK_EQ(iop_pool_audit(NULL), -EINVAL);
	CHECK_EQ(iop_pool_domain_stats(NULL, 0, &ds), -EINVAL);
	CHECK_EQ(iop_buf_mapping(NULL, objs, &h, NULL), -EINVAL);
	CHECK_EQ(iop_pool_reset_high_water(NULL), 0);
	errno = 0;
	CHECK(iop_frag_create(NULL) == NULL);
	CHECK_EQ(errno, EINVAL);
	errno = 0;
	CHECK_EQ(iop_pool_obj_size(NULL), 0);
	CHECK_EQ(errno, EINVAL);
	CHECK_STR_HAS(iop_pool_name(NULL), "(null)");
	char *msg = th_capture_end();
#ifdef IOP_NO_INLINE
	CHECK_STR_HAS(msg, "iopool: iop_alloc: pool is NULL");
	CHECK_STR_HAS(msg, "iopool: iop_buf_alloc: pool is NULL");
#endif
	CHECK_STR_HAS(msg, "iopool: iop_alloc_bulk: pool is NULL");
	free(msg);
	return TH_PASS;
}

TEST(thread_flush_moves_cached_objects_to_the_depot)
{
	iop_pool_t *p = MKPOOL("flush", 64, 0, 16, 0, 0);
	iop_pool_t *q = MKPOOL("flush2", 512, 0, 16, 0, 0);
	enum { N = 70 };
	void *objs[N], *qobjs[N];
	for (int i = 0; i < N; i++) {
		objs[i] = iop_alloc(p);
		qobjs[i] = iop_alloc(q);
	}
	for (int i = 0; i < N; i++) {
		iop_free(p, objs[i]);
		iop_free(q, qobjs[i]);
	}
	struct iop_pool_stats a = STATS(p), qa = STATS(q);
	if (!TH_ALL_CHECKED) {
		CHECK_GT(a.cached, 0);
		CHECK_GT(qa.cached, 0);
	}
	CHECK_LE(a.cached, a.cache_mode == IOP_CACHE_MODE_CPU ? a.cpu_cache_size : 32);
	CHECK_CONSERVED(a);

	iop_thread_flush();
	/* Per-CPU slots are no thread's: they are emptied per pool. */
	if (a.cache_mode == IOP_CACHE_MODE_CPU) {
		CHECK_EQ(STATS(p).cached, a.cached);
		CHECK_EQ(iop_pool_flush(p), (int64_t)a.cached);
		CHECK_EQ(iop_pool_flush(q), (int64_t)qa.cached);
	}
	struct iop_pool_stats b = STATS(p), qb = STATS(q);
	CHECK_EQ(b.cached, 0);
	CHECK_EQ(qb.cached, 0); /* every pool, not one */
	CHECK_EQ(b.in_flight, 0);
	CHECK_EQ(b.depot + b.slab_free, a.depot + a.slab_free + a.cached);
	if (a.cached)
		CHECK_GT(b.depot, a.depot);
	CHECK_CONSERVED(b);
	CHECK_CONSERVED(qb);

	iop_thread_flush(); /* idempotent */
	CHECK_EQ(STATS(p).cached, 0);

	/* the pool works after a flush */
	void *o = iop_alloc(p);
	REQUIRE(o);
	iop_free(p, o);
	CHECK_AUDIT(p);
	CHECK_AUDIT(q);
	CHECK_DESTROY(p);
	CHECK_DESTROY(q);
	return TH_PASS;
}

static void *flush_no_pools_thread(void *arg)
{
	(void)arg;
	iop_thread_flush(); /* a thread that never touched a pool */
	return NULL;
}

struct cache_fill_arg {
	iop_pool_t *pool;
	int n;
};

static void *cache_fill_thread(void *arg)
{
	struct cache_fill_arg *a = arg;
	void *objs[256];
	for (int i = 0; i < a->n; i++)
		objs[i] = iop_alloc(a->pool);
	for (int i = 0; i < a->n; i++)
		iop_free(a->pool, objs[i]);
	return NULL; /* exits with a full cache */
}

TEST(thread_exit_returns_cached_objects)
{
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, flush_no_pools_thread, NULL) == 0);
	pthread_join(t, NULL);

	iop_pool_t *p = MKPOOL("exit", 64, 0, 16, 0, 0);
	struct cache_fill_arg arg = { p, 200 };
	for (int round = 0; round < 10; round++) {
		REQUIRE(pthread_create(&t, NULL, cache_fill_thread, &arg) == 0);
		pthread_join(t, NULL);
		struct iop_pool_stats st = STATS(p);
		CHECK_CACHED_BY_NO_THREAD(st); /* this thread has no cache of p */
		CHECK_EQ(st.in_flight, 0);
		CHECK_CONSERVED(st);
	}
	/* the exited threads' fast-path counters are kept */
	CHECK_COUNTS(p, 0, 10 * 200, 10 * 200);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

struct parked {
	iop_pool_t *pool;
	pthread_barrier_t bar;
	int ok;
};

static void *parked_thread(void *arg)
{
	struct parked *pk = arg;
	void *objs[100];
	for (int i = 0; i < 100; i++)
		objs[i] = iop_alloc(pk->pool);
	for (int i = 0; i < 100; i++)
		iop_free(pk->pool, objs[i]);
	pthread_barrier_wait(&pk->bar); /* 1: cache full, main destroys */
	pthread_barrier_wait(&pk->bar); /* 2: main made a new pool */
	iop_thread_flush(); /* must not touch the destroyed pool */
	for (int i = 0; i < 100; i++) {
		objs[i] = iop_alloc(pk->pool);
		if (!objs[i] || iop_pool_of(objs[i]) != pk->pool)
			pk->ok = 0;
		else
			th_stamp(objs[i], 64, (uint64_t)i);
	}
	for (int i = 0; i < 100; i++) {
		if (objs[i]) {
			CHECK_STAMP(objs[i], 64, (uint64_t)i);
			iop_free(pk->pool, objs[i]);
		}
	}
	return NULL; /* exits: must not touch the destroyed pool */
}

TEST(destroy_flushes_other_threads_caches)
{
	struct parked pk;
	pk.pool = MKPOOL("parked", 64, 0, 16, 0, 0);
	pk.ok = 1;
	pthread_barrier_init(&pk.bar, NULL, 2);
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, parked_thread, &pk) == 0);
	pthread_barrier_wait(&pk.bar);
	struct iop_pool_stats st = STATS(pk.pool);
	CHECK_EQ(st.in_flight, 0);
	if (!TH_ALL_CHECKED)
		CHECK_GT(st.cached, 0);
	CHECK_AUDIT(pk.pool);
	/* objects cached by another thread are not in flight */
	CHECK_DESTROY(pk.pool);
	/* a new pool, likely in the destroyed one's slot */
	pk.pool = MKPOOL("parked2", 64, 0, 16, 0, 0);
	pthread_barrier_wait(&pk.bar);
	pthread_join(t, NULL);
	CHECK(pk.ok);
	st = STATS(pk.pool);
	CHECK_CACHED_BY_NO_THREAD(st);
	CHECK_EQ(st.in_flight, 0);
	CHECK_CONSERVED(st);
	CHECK_AUDIT(pk.pool);
	CHECK_DESTROY(pk.pool);
	pthread_barrier_destroy(&pk.bar);
	return TH_PASS;
}

/* Objects freed from other thread-specific-data destructors, which may run
 * before or after the library's own exit flush: none may be stranded.
 * POSIX runs destructors in rounds, and glibc in key order, so one key made
 * before the library's and one after cover both orders. */
static pthread_key_t tsd_early, tsd_late;
static iop_pool_t *tsd_pool;

static void tsd_destructor(void *arg)
{
	void **objs = arg;
	for (int i = 0; i < 50; i++)
		iop_free(tsd_pool, objs[i]);
	free(objs);
}

static void *tsd_thread(void *arg)
{
	(void)arg;
	pthread_key_t keys[2] = { tsd_early, tsd_late };
	for (int k = 0; k < 2; k++) {
		void **objs = malloc(50 * sizeof *objs);
		if (!objs)
			abort();
		for (int i = 0; i < 50; i++)
			objs[i] = iop_alloc(tsd_pool);
		pthread_setspecific(keys[k], objs);
	}
	return NULL;
}

/* A key destructor that uses a pool in every destructor round, re-arming
 * itself until glibc stops (PTHREAD_DESTRUCTOR_ITERATIONS): the thread must
 * not stay on iopool's list of threads once it is gone (its TLS is reused
 * by the next thread; statistics would then walk freed memory). */
static iop_pool_t *every_round_pool;
static pthread_key_t every_round_key;
static atomic_int every_round_calls;
static void every_round_dtor(void *v)
{
	(void)v;
	atomic_fetch_add(&every_round_calls, 1);
	void *o = iop_alloc(every_round_pool);
	if (o)
		iop_free(every_round_pool, o);
	void *b[3];
	unsigned n = iop_alloc_bulk(every_round_pool, b, 3);
	iop_free_bulk(every_round_pool, b, n);
	pthread_setspecific(every_round_key, (void *)1);
}

static void *every_round_thread(void *arg)
{
	(void)arg;
	iop_free(every_round_pool, iop_alloc(every_round_pool)); /* iopool's key first */
	pthread_setspecific(every_round_key, (void *)1);
	return NULL;
}

TEST(thread_using_a_pool_in_every_destructor_round_leaves_no_trace)
{
	/* TSan finalises a thread from its own key destructor in the last
	 * round; intercepted calls after that fault inside its runtime. */
	TH_SKIP_IF(TH_TSAN, "TSan cannot run code in the last destructor round");
	alarm(60); /* a corrupt thread list loops forever: die, not hang */
	every_round_pool = MKPOOL("every-round", 64, 0, 0, 0, 0);
	REQUIRE(pthread_key_create(&every_round_key, every_round_dtor) == 0);
	for (int i = 0; i < 6; i++) {
		pthread_t t;
		REQUIRE(pthread_create(&t, NULL, every_round_thread, NULL) == 0);
		pthread_join(t, NULL);
		struct iop_pool_stats st = STATS(every_round_pool);
		CHECK_EQ(st.in_flight, 0);
		CHECK_CACHED_BY_NO_THREAD(st);
		CHECK_CONSERVED(st);
	}
	CHECK_GE(atomic_load(&every_round_calls), 6);
	CHECK_AUDIT(every_round_pool);
	CHECK_DESTROY(every_round_pool);
	pthread_key_delete(every_round_key);
	alarm(0);
	return TH_PASS;
}

TEST(thread_exit_returns_objects_freed_by_other_tsd_destructors)
{
	REQUIRE(pthread_key_create(&tsd_early, tsd_destructor) == 0);
	tsd_pool = MKPOOL("tsd", 64, 0, 16, 0, 0);
	iop_free(tsd_pool, iop_alloc(tsd_pool)); /* the library is set up */
	iop_thread_flush();
	REQUIRE(pthread_key_create(&tsd_late, tsd_destructor) == 0);
	for (int round = 0; round < 4; round++) {
		pthread_t t;
		REQUIRE(pthread_create(&t, NULL, tsd_thread, NULL) == 0);
		pthread_join(t, NULL);
		struct iop_pool_stats st = STATS(tsd_pool);
		CHECK_EQ(st.in_flight, 0);
		CHECK_CACHED_BY_NO_THREAD(st);
		CHECK_CONSERVED(st);
	}
	CHECK_AUDIT(tsd_pool);
	CHECK_DESTROY(tsd_pool);
	pthread_key_delete(tsd_early);
	pthread_key_delete(tsd_late);
	return TH_PASS;
}

TEST(magazines_of_one_object_keep_the_books)
{
	iop_pool_t *p = MKPOOL("mag1", 32, 0, 1, 0, 0);
	CHECK_EQ(STATS(p).cache_size, 1);
	enum { N = 3000 };
	void **objs = calloc(N, sizeof *objs);
	REQUIRE(objs);
	uint64_t rng = th_seed(1, 1);
	size_t n = 0;
	for (int op = 0; op < 100000; op++) {
		if (n < N && (n == 0 || th_rand(&rng) % 2)) {
			objs[n] = iop_alloc(p);
			REQUIRE(objs[n]);
			th_stamp(objs[n], 32, n);
			n++;
		} else {
			n--;
			CHECK_STAMP(objs[n], 32, n);
			iop_free(p, objs[n]);
		}
	}
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.in_flight, n);
	CHECK_LE(st.cached, 2);
	CHECK_CONSERVED(st);
	CHECK_AUDIT(p);
	iop_free_bulk(p, objs, (unsigned)n);
	free(objs);
	st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_CONSERVED(st);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* The audit finds what it promises to find                                  */
/* ------------------------------------------------------------------------ */

TEST(audit_finds_an_object_cached_twice)
{
	TH_SKIP_IF(TH_ALL_CHECKED, "every pool is checked: a double free "
				   "aborts before the audit can see it");
	/* An unchecked pool does not catch a double free; the audit must. */
	iop_pool_t *p = MKPOOL("twice", 64, 0, 0, 0, 0);
	void *o = iop_alloc(p), *keep = iop_alloc(p);
	REQUIRE(o && keep);
	CHECK_AUDIT(p);
	iop_free(p, o);
	iop_free(p, o);
	th_capture_begin();
	int rc = iop_pool_audit(p);
	char *msg = th_capture_end();
	CHECK_EQ(rc, -EUCLEAN);
	CHECK_STR_HAS(msg, "iopool: pool 'twice': audit failed: ");
	free(msg);
	/* the pool is corrupt now: leave it */
	return TH_PASS;
}

TEST(audit_finds_a_write_into_a_free_object_in_checked_pool)
{
	TH_SKIP_IF(TH_ASAN, "AddressSanitizer reports the write itself");
	iop_pool_t *p = MKPOOL("scribbled", 128, 0, 0, 0, IOP_F_CHECKED);
	void *o = iop_alloc(p);
	REQUIRE(o);
	iop_free(p, o);
	CHECK_AUDIT(p);
	((volatile unsigned char *)o)[77] ^= 0xff; /* the stray write */
	th_capture_begin();
	int rc = iop_pool_audit(p);
	char *msg = th_capture_end();
	CHECK_EQ(rc, -EUCLEAN);
	CHECK_STR_HAS(msg, "scribbled");
	free(msg);
	((volatile unsigned char *)o)[77] ^= 0xff; /* undo it */
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Out of memory, under an address-space limit                               */
/* ------------------------------------------------------------------------ */

static int limit_address_space(size_t bytes, struct rlimit *old)
{
	if (getrlimit(RLIMIT_AS, old) != 0)
		return -1;
	struct rlimit rl = { bytes, old->rlim_max };
	return setrlimit(RLIMIT_AS, &rl);
}

TEST(alloc_fails_with_enomem_at_the_address_space_limit)
{
	TH_SKIP_IF(TH_ASAN || TH_TSAN,
		   "sanitizers reserve more address space than any limit");
	enum { CAP = 8192 };
	void **objs = calloc(CAP, sizeof *objs);
	REQUIRE(objs);
	/* a first pool sets up the address map before we measure */
	iop_pool_t *p = MKPOOL("enomem", 64 * KiB, 0, 0, 0, 0);
	objs[0] = iop_alloc(p);
	REQUIRE(objs[0]);
	size_t vs = th_vm_size();
	TH_SKIP_IF(vs == 0, "no /proc/self/status");
	struct rlimit old;
	REQUIRE(limit_address_space(vs + 64 * MiB, &old) == 0);

	size_t n = 1;
	int err = 0;
	while (n < CAP) {
		errno = 0;
		void *o = iop_alloc(p);
		if (!o) {
			err = errno;
			break;
		}
		objs[n++] = o;
	}
	CHECK_LT(n, CAP);
	CHECK_EQ(err, ENOMEM);
	CHECK_GT(n, 64); /* what was allowed was used */
	struct iop_pool_stats st = STATS(p);
	CHECK_GE(st.alloc_fail, 1);
	CHECK_EQ(st.in_flight, n);
	CHECK_CONSERVED(st);

	/* bulk: fewer than asked, errno ENOMEM, the stored ones valid */
	void *more[16];
	errno = 0;
	unsigned got = iop_alloc_bulk(p, more, 16);
	CHECK_LT(got, 16);
	CHECK_EQ(errno, ENOMEM);
	for (unsigned i = 0; i < got; i++)
		CHECK_PTR_EQ(iop_pool_of(more[i]), p);
	iop_free_bulk(p, more, got);

	/* freed objects are served again without the OS */
	iop_free_bulk(p, objs + n - 10, 10);
	for (int i = 0; i < 10; i++) {
		objs[n - 10 + (size_t)i] = iop_alloc(p);
		CHECK(objs[n - 10 + (size_t)i] != NULL);
	}
	CHECK_AUDIT(p);
	iop_free_bulk(p, objs, (unsigned)n);
	REQUIRE(setrlimit(RLIMIT_AS, &old) == 0);
	st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_CONSERVED(st);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	free(objs);
	return TH_PASS;
}

TEST(populate_that_cannot_be_had_fails_with_enomem_and_leaks_nothing)
{
	TH_SKIP_IF(TH_ASAN || TH_TSAN,
		   "sanitizers reserve more address space than any limit");
	iop_pool_t *warm = MKPOOL("warm", 64, 0, 0, 0, 0);
	void *o = iop_alloc(warm);
	REQUIRE(o);
	size_t vs = th_vm_size();
	TH_SKIP_IF(vs == 0, "no /proc/self/status");
	struct rlimit old;
	REQUIRE(limit_address_space(vs + 48 * MiB, &old) == 0);

	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = "too-big";
	pp.obj_size = 64 * KiB;
	pp.populate = 4096; /* 256 MiB */
	errno = 0;
	th_capture_begin();
	iop_pool_t *p = iop_pool_create(&pp);
	int err = errno;
	free(th_capture_end());
	CHECK(p == NULL);
	CHECK_EQ(err, ENOMEM);
	size_t after = th_vm_size();
	REQUIRE(setrlimit(RLIMIT_AS, &old) == 0);
	/* the chunks mapped before the failure were unmapped */
	CHECK_LE(after, vs + 4 * MiB);
	if (p)
		iop_pool_destroy(p);

	/* a populate that fits still works */
	pp.populate = 64;
	p = iop_pool_create(&pp);
	CHECK(p != NULL);
	if (p) {
		CHECK_GE(STATS(p).depot + STATS(p).slab_free, 64);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
	iop_free(warm, o);
	CHECK_AUDIT(warm);
	CHECK_DESTROY(warm);
	return TH_PASS;
}

int main(int argc, char **argv)
{
	return th_main(argc, argv);
}
