/* SPDX-License-Identifier: MIT */
/*
 * The IOPOOL_* environment variables: one table, one parser (options.c).
 *
 * X(NAME, TYPE, MIN, MAX, DEFAULT, DOC) once per variable IOPOOL_<NAME>:
 *   TYPE     BOOL     0 or 1 (also no/yes, false/true, off/on)
 *            UINT     a decimal integer in [MIN, MAX]
 *            PERCENT  a decimal number above MIN, up to MAX
 *            PATH     any text (a file name)
 *            WORD     one of the words the doc line lists (its reader checks)
 *   DEFAULT  what an unset variable means, as README shows it; the code
 *            that reads the variable keeps that behaviour when
 *            _iop_opt_given() is false
 *   DOC      one line for README's table (scripts/options-table.sh prints
 *            it; a test fails when README differs)
 *
 * Every variable is read once, the first time the library asks for any of
 * them (the first pool creation, domain count or publish at the latest).
 * An empty variable is unset. A value that does not parse or is out of
 * range is reported on stderr ("iopool: IOPOOL_<NAME>: '<value>' is not
 * ...: ignored") and ignored: the default applies.
 */
#ifndef IOP_OPTIONS_H
#define IOP_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "iopool.h"

#ifndef IOP_HIDDEN
#define IOP_HIDDEN __attribute__((visibility("hidden")))
#endif

#define IOP_OPTIONS(X)                                                                                          \
	X(CHECKED, BOOL, 0, 1, "0",                                                                             \
	  "1: every pool is checked, as if created with `IOP_F_CHECKED` (double frees and writes to free "     \
	  "objects are caught)")                                                                                \
	X(SPREAD, BOOL, 0, 1, "0",                                                                              \
	  "1: every pool is spread over the cache sets, as if created with `IOP_F_SPREAD` (the heap's "        \
	  "classes excepted)")                                                                                  \
	X(PUBLISH, BOOL, 0, 1, "0",                                                                             \
	  "1: publish statistics from the first `iop_pool_create()`, as `iop_stats_publish(NULL)` (for "       \
	  "`iopool-top`)")                                                                                      \
	X(PUBLISH_INTERVAL_MS, UINT, IOP_PUBLISH_INTERVAL_MIN_MS, IOP_PUBLISH_INTERVAL_MAX_MS, "1000",         \
	  "the publishing period of `IOPOOL_PUBLISH`, in milliseconds")                                        \
	X(WORKER_PERIOD_MS, UINT, 1, 3600000, "1000", "the refill and decay workers' period, in milliseconds") \
	X(PSI_RECLAIM, PERCENT, 0, 100, "off",                                                                  \
	  "memory pressure (PSI: tasks stalled on memory this percentage of a 2 s window) at which every pool " \
	  "is shrunk (`iop_reclaim()`), by a PSI trigger; where the kernel refuses one, `some avg10` polled "   \
	  "once a worker period")                                                                               \
	X(PSI_FILE, PATH, 0, 0, "`/proc/pressure/memory`",                                                      \
	  "the PSI file `IOPOOL_PSI_RECLAIM` watches (a cgroup's `memory.pressure`, a test's file)")           \
	X(CACHE, WORD, 0, 0, "per CPU where rseq is registered",                                               \
	  "`cpu` or `thread`: per-CPU caches on restartable sequences, or per-thread caches "                  \
	  "(`iop_cache_mode()`); any other value is reported and ignored")                                      \
	X(FAKE_NUMA, UINT, 1, IOP_MAX_DOMAINS, "the machine's",                                                 \
	  "pretend to have N memory domains (the CPUs split among them), to exercise the NUMA paths on one "   \
	  "node")                                                                                               \
	X(FAULT_CHUNK_FAIL_EVERY, UINT, 0, 100000000, "0",                                                      \
	  "fault injection: every Nth chunk request fails, as mmap's ENOMEM (0: none)")                        \
	X(FAULT_CHUNK_FAIL_PCT, UINT, 0, 100, "0",                                                              \
	  "fault injection: this percentage of chunk requests fails (a fixed-seed sequence)")                  \
	X(FAULT_CHUNK_DELAY_US, UINT, 0, 100000000, "0",                                                        \
	  "fault injection: each chunk request first sleeps this many microseconds")

enum iop_opt {
#define IOP_OPT_ENUM_(name, ...) IOP_OPT_##name,
	IOP_OPTIONS(IOP_OPT_ENUM_)
#undef IOP_OPT_ENUM_
	IOP_OPT_COUNT
};

enum iop_opt_type { IOP_OPT_BOOL, IOP_OPT_UINT, IOP_OPT_PERCENT, IOP_OPT_PATH, IOP_OPT_WORD };

/* Whether IOPOOL_<NAME> is set to a valid value. */
IOP_HIDDEN bool _iop_opt_given(enum iop_opt o);
/* Its value: BOOL and UINT as an integer, PERCENT as a number, PATH as
 * text; 0 (NULL) when not given. */
IOP_HIDDEN uint64_t _iop_opt_uint(enum iop_opt o);
IOP_HIDDEN double _iop_opt_percent(enum iop_opt o);
IOP_HIDDEN const char *_iop_opt_path(enum iop_opt o);

#endif /* IOP_OPTIONS_H */
