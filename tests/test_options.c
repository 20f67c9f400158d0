/* SPDX-License-Identifier: MIT */
/*
 * The IOPOOL_* environment variables (src/options.h): each one unset, set
 * to a valid value, and set to an invalid one. They are read once per
 * process, so each case sets the environment before its first call of the
 * library (CTest runs each case in its own process; without arguments each
 * runs in a forked child). Where a variable's effect is visible through the
 * public API (checked pools, domains, publishing) the case looks there; the
 * rest through the library's accessors (this program links the static
 * library, which keeps them).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "iop_test.h"
#include "options.h"

#include <signal.h>
#include <sys/stat.h>

static const char *const names[IOP_OPT_COUNT] = {
#define NAME(n, ...) [IOP_OPT_##n] = "IOPOOL_" #n,
	IOP_OPTIONS(NAME)
#undef NAME
};

static void unset_all(void)
{
	for (int o = 0; o < IOP_OPT_COUNT; o++)
		unsetenv(names[o]);
}

static bool segment_exists(void)
{
	char path[64];
	struct stat st;
	snprintf(path, sizeof path, "/dev/shm/iopool.%d", (int)getpid());
	return stat(path, &st) == 0;
}

static void double_free(void *arg)
{
	(void)arg;
	iop_pool_t *p = MKPOOL("env-checked", 64, 0, 0, 0, 0);
	void *o = iop_alloc(p);
	iop_free(p, o);
	iop_free(p, o);
}

TEST(options_unset_mean_their_defaults)
{
	unset_all();
	setenv("IOPOOL_PSI_FILE", "", 1); /* empty counts as unset */
	th_capture_begin();
	iop_pool_t *p = MKPOOL("env-unset", 64, 0, 0, 0, 0);
	char *msg = th_capture_end();
	CHECK_EQ(strlen(msg), 0);
	free(msg);
	for (int o = 0; o < IOP_OPT_COUNT; o++)
		if (_iop_opt_given((enum iop_opt)o))
			th_fail_at(__FILE__, __LINE__, "%s is given while unset", names[o]);
	CHECK_EQ(_iop_opt_uint(IOP_OPT_CHECKED), 0);
	CHECK(_iop_opt_path(IOP_OPT_PSI_FILE) == NULL);
	CHECK(!segment_exists()); /* IOPOOL_PUBLISH unset: nothing published */
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(options_valid_values_are_read)
{
	unset_all();
	setenv("IOPOOL_CHECKED", "1", 1);
	setenv("IOPOOL_PUBLISH", "yes", 1);
	setenv("IOPOOL_PUBLISH_INTERVAL_MS", "20", 1);
	setenv("IOPOOL_WORKER_PERIOD_MS", "3600000", 1);
	setenv("IOPOOL_PSI_RECLAIM", "12.5", 1);
	setenv("IOPOOL_PSI_FILE", "/tmp/no-such-psi", 1);
	setenv("IOPOOL_FAKE_NUMA", "3", 1);
	setenv("IOPOOL_FAULT_CHUNK_FAIL_EVERY", "1000", 1);
	setenv("IOPOOL_FAULT_CHUNK_FAIL_PCT", "0", 1);
	setenv("IOPOOL_FAULT_CHUNK_DELAY_US", "1", 1);
	setenv("IOPOOL_CACHE", "thread", 1);
	setenv("IOPOOL_SPREAD", "on", 1);
	th_capture_begin();
	iop_pool_t *p = MKPOOL("env-valid", 64, 0, 0, 0, 0);
	char *msg = th_capture_end();
	CHECK_EQ(strlen(msg), 0);
	free(msg);
	for (int o = 0; o < IOP_OPT_COUNT; o++)
		if (!_iop_opt_given((enum iop_opt)o))
			th_fail_at(__FILE__, __LINE__, "%s='%s' is not read", names[o], getenv(names[o]));
	CHECK_EQ(_iop_opt_uint(IOP_OPT_CHECKED), 1);
	CHECK_EQ(_iop_opt_uint(IOP_OPT_PUBLISH), 1);
	CHECK_EQ(_iop_opt_uint(IOP_OPT_PUBLISH_INTERVAL_MS), 20);
	CHECK_EQ(_iop_opt_uint(IOP_OPT_WORKER_PERIOD_MS), 3600000);
	CHECK(_iop_opt_percent(IOP_OPT_PSI_RECLAIM) == 12.5);
	CHECK_STR_HAS(_iop_opt_path(IOP_OPT_PSI_FILE), "/tmp/no-such-psi");
	CHECK_STR_HAS(_iop_opt_path(IOP_OPT_CACHE), "thread");
	CHECK_EQ(iop_cache_mode(), IOP_CACHE_MODE_THREAD); /* through the API */
	CHECK_EQ(_iop_opt_uint(IOP_OPT_FAULT_CHUNK_FAIL_EVERY), 1000);
	CHECK_EQ(_iop_opt_uint(IOP_OPT_FAULT_CHUNK_FAIL_PCT), 0);
	CHECK_EQ(_iop_opt_uint(IOP_OPT_FAULT_CHUNK_DELAY_US), 1);
	CHECK_EQ(_iop_opt_uint(IOP_OPT_SPREAD), 1);
	/* and through the API */
	CHECK_EQ(iop_domain_count(), 3);
	CHECK(segment_exists());
	CHECK_EQ(iop_stats_unpublish(), 0);
	EXPECT_DEATH(double_free, NULL, SIGABRT, "iopool: pool 'env-checked': double free of ");
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* Each variable set to something it refuses, and what stderr must say. */
static const struct {
	enum iop_opt opt;
	const char *value;
	const char *says;
} bad[] = {
	{ IOP_OPT_CHECKED, "maybe", "iopool: IOPOOL_CHECKED: 'maybe' is not 0 or 1: ignored" },
	{ IOP_OPT_SPREAD, "2112", "iopool: IOPOOL_SPREAD: '2112' is not 0 or 1: ignored" },
	{ IOP_OPT_PUBLISH, "2", "iopool: IOPOOL_PUBLISH: '2' is not 0 or 1: ignored" },
	{ IOP_OPT_PUBLISH_INTERVAL_MS, "9", "iopool: IOPOOL_PUBLISH_INTERVAL_MS: '9' is not a number from 10 to 3600000" },
	{ IOP_OPT_WORKER_PERIOD_MS, "0", "iopool: IOPOOL_WORKER_PERIOD_MS: '0' is not a number from 1 to 3600000" },
	{ IOP_OPT_PSI_RECLAIM, "0", "iopool: IOPOOL_PSI_RECLAIM: '0' is not a percentage above 0, up to 100" },
	{ IOP_OPT_FAKE_NUMA, "9", "iopool: IOPOOL_FAKE_NUMA: '9' is not a number from 1 to 8: ignored" },
	{ IOP_OPT_FAULT_CHUNK_FAIL_EVERY, "-1", "iopool: IOPOOL_FAULT_CHUNK_FAIL_EVERY: '-1' is not a number" },
	{ IOP_OPT_FAULT_CHUNK_FAIL_PCT, "101", "iopool: IOPOOL_FAULT_CHUNK_FAIL_PCT: '101' is not a number" },
	{ IOP_OPT_FAULT_CHUNK_DELAY_US, "5us", "iopool: IOPOOL_FAULT_CHUNK_DELAY_US: '5us' is not a number" },
};

TEST(options_invalid_values_are_reported_and_ignored)
{
	unset_all();
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		setenv(names[bad[i].opt], bad[i].value, 1);
	th_capture_begin();
	iop_pool_t *p = MKPOOL("env-invalid", 64, 0, 0, 0, 0);
	char *msg = th_capture_end();
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECK_STR_HAS(msg, bad[i].says);
		if (_iop_opt_given(bad[i].opt))
			th_fail_at(__FILE__, __LINE__, "%s='%s' is taken", names[bad[i].opt], bad[i].value);
	}
	free(msg);
	/* the defaults hold: no fake domains, nothing published */
	CHECK_LE(iop_domain_count(), IOP_MAX_DOMAINS);
	CHECK(!segment_exists());
	CHECK_EQ(STATS(p).obj_stride, 64); /* not spread (nor would it be: 64 B) */
	void *o = iop_alloc(p); /* no injected failure */
	CHECK(o != NULL);
	iop_free(p, o);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* IOPOOL_SPREAD=1: a pool created without IOP_F_SPREAD is spread (2 KiB
 * objects 2112 bytes apart), and the heap's classes are not: their blocks
 * stay at multiples of the class size, as iop_heap_alloc_aligned()
 * relies on. */
TEST(spread_option_spreads_pools_but_not_the_heap_classes)
{
	unset_all();
	setenv("IOPOOL_SPREAD", "1", 1);
	iop_pool_t *p = MKPOOL("env-spread", 2048, 0, 0, 0, 0);
	CHECK_EQ(STATS(p).obj_stride, 2112);
	void *b[16];
	for (int i = 0; i < 16; i++) {
		b[i] = iop_heap_alloc(2048);
		REQUIRE(b[i] != NULL);
		CHECK_EQ((uintptr_t)b[i] % 2048, 0);
	}
	for (int i = 0; i < 16; i++)
		iop_heap_free(b[i]);
	CHECK_DESTROY(p);
	return TH_PASS;
}

int main(int argc, char **argv)
{
	return th_main(argc, argv);
}
