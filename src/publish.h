/* SPDX-License-Identifier: MIT */
/*
 * The shared-memory statistics segment: what a publishing process writes
 * (src/publish.c) and what tools/iopool-top reads. This header is shared by
 * the two and by nothing else; it needs only libc.
 *
 * A process that publishes (iop_stats_publish(), or IOPOOL_PUBLISH=1 in its
 * environment) owns one POSIX shared-memory object named IOP_SHM_PREFIX
 * followed by its pid in decimal: /dev/shm/iopool.<pid> on Linux. It is
 * created with mode 0600 (the statistics say what a process is doing), sized
 * once, and holds a header and room for one record per possible pool:
 *
 *   offset 0             struct iop_shm_header   (header_size bytes)
 *   header_size          record 0                (record_size bytes each)
 *   + i * record_size    record i, valid for i < nrecords
 *   ...                  up to max_records
 *
 * Readers use header_size and record_size from the segment, never sizeof,
 * so a later version may grow either by appending fields; a reader reads
 * the fields it knows that fit. `version` changes only when a field changes
 * meaning or place. Every number is in the writer's native byte order (the
 * reader runs on the same machine).
 *
 * Consistency: a seqlock over the whole segment. The publisher makes `seq`
 * odd, rewrites the header's variable fields and every record, then makes
 * `seq` even again (release). A reader copies the segment between two
 * loads of `seq` and retries unless both are the same even number, so it
 * never sees a torn record. A `seq` that stays odd means the writer died in
 * the middle of an update. Both sides copy with iop_shm_store_words() and
 * iop_shm_load_words() below.
 *
 * Stale segments: a process killed by a signal leaves its segment behind.
 * `pid` and `start_time` (the process's start time in clock ticks since
 * boot, field 22 of /proc/<pid>/stat) tell a reader whether the process
 * that wrote it still runs: a pid reused by another process has another
 * start time.
 */
#ifndef IOP_PUBLISH_H
#define IOP_PUBLISH_H

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* shm_open() name: the prefix, then the pid. */
#define IOP_SHM_PREFIX "/iopool."
/* Where Linux keeps POSIX shared memory, for listing the segments. */
#define IOP_SHM_DIR "/dev/shm"

#define IOP_SHM_MAGIC "IOPSTATS" /* 8 bytes, no NUL */
#define IOP_SHM_VERSION 1u

/* Record kinds. Version 1 writes only pools (a size-class heap's classes are
 * pools too, named like "heap-64"). IOP_SHM_KIND_HEAP is set aside for a
 * summary record of a heap (its totals across classes); a reader skips kinds
 * it does not know. */
#define IOP_SHM_KIND_POOL 1u
#define IOP_SHM_KIND_HEAP 2u

/* The counters of one pool: the 64-bit fields of struct iop_pool_stats, in
 * its order. X(name) once per field; the publisher copies them by name, the
 * tool prints them by name. Append only. */
#define IOP_SHM_STATS(X)                                                        \
	X(obj_size) X(obj_stride) X(chunk_size) X(objs_per_chunk) X(total)       \
	X(in_flight) X(cached) X(depot) X(slab_free) X(chunks) X(bytes_mapped)   \
	X(alloc_fast) X(alloc_slow) X(alloc_fail) X(free_fast) X(free_slow)      \
	X(depot_get) X(depot_put) X(mag_alloc) X(chunk_acquire)                  \
	X(chunk_release) X(map_calls) X(unmap_calls) X(release_hook) X(hook_kept) \
	X(limit) X(throttle_on) X(throttle_off) X(high_water) X(waiters)         \
	X(limit_hits) X(waits) X(throttled) X(throttled_ns) X(wait_ns)           \
	X(wait_p50_ns) X(wait_p99_ns) X(wait_max_ns) X(timeouts) X(fail_nowait)  \
	X(fail_default) X(fail_wait) X(reserve_low) X(reserve_high)              \
	X(reserve_short) X(wake_low) X(wake_empty) X(wake_fail) X(refill_passes) \
	X(refill_objs) X(refill_fail) X(decay_passes) X(decay_objs) X(trims)     \
	X(bytes_resident) X(page_kind) X(chunks_hugetlb) X(chunks_thp)           \
	X(domains) X(sent_home) X(cache_mode) X(cpu_drains)

#define IOP_SHM_NAME_MAX 32u /* NUL included, as IOP_NAME_MAX */

struct iop_shm_header {
	char magic[8];          /* IOP_SHM_MAGIC */
	uint32_t version;       /* IOP_SHM_VERSION */
	uint32_t header_size;   /* bytes before record 0 */
	uint32_t record_size;   /* bytes per record */
	uint32_t max_records;   /* records the segment has room for */
	uint64_t seq;           /* seqlock: odd while an update is written */
	int32_t pid;            /* the publishing process */
	uint32_t nrecords;      /* records [0, nrecords) are valid */
	uint64_t start_time;    /* the process's start, in clock ticks since
	                           boot (/proc/<pid>/stat field 22) */
	uint64_t published_ns;  /* CLOCK_REALTIME when publishing began */
	uint64_t updated_ns;    /* CLOCK_REALTIME of the last update */
	uint64_t updates;       /* updates written so far */
	uint32_t interval_ms;   /* the publisher's period */
	uint32_t flags;         /* none in version 1: zero */
	char name[IOP_SHM_NAME_MAX]; /* process name, NUL-terminated */
	/* Zero in version 1. Set aside for a heap summary (totals, profiling
	 * tags) so that adding one does not move the records. */
	uint8_t reserved[400];
};

struct iop_shm_record {
	char name[IOP_SHM_NAME_MAX]; /* the pool's name, NUL-terminated */
	uint32_t kind;          /* IOP_SHM_KIND_* */
	uint32_t flags;         /* the pool's IOP_F_* flags */
	uint32_t id;            /* the pool's slot in the process */
	uint32_t cache_size;    /* objects per magazine */
#define IOP_SHM_FIELD(n) uint64_t n;
	IOP_SHM_STATS(IOP_SHM_FIELD)
#undef IOP_SHM_FIELD
	uint64_t reserved[7];   /* zero; room for counters a pool gains */
};

_Static_assert(sizeof(struct iop_shm_header) == 512, "the header's size is part of the format");
_Static_assert(sizeof(struct iop_shm_record) % 8 == 0, "records are copied in 8-byte words");
_Static_assert(sizeof(struct iop_shm_record) == 600, "the record's size is part of the format");

/*
 * The seqlock's copies, word by word (what the kernel's seqlocks do with
 * barriers, in C11 without fences, which ThreadSanitizer does not model):
 * the writer's stores are release stores, so none becomes visible before
 * the odd sequence number stored ahead of them; the reader's loads are
 * acquire loads, so the sequence number loaded after them is loaded after
 * them. On x86-64 both are plain moves. bytes is a multiple of 8; both
 * pointers are 8-byte aligned.
 */
static inline void iop_shm_store_words(void *dst, const void *src, size_t bytes)
{
	uint64_t *d = (uint64_t *)dst;
	const uint64_t *s = (const uint64_t *)src;
	for (size_t i = 0; i < bytes / 8; i++)
		__atomic_store_n(&d[i], s[i], __ATOMIC_RELEASE);
}

static inline void iop_shm_load_words(void *dst, const void *src, size_t bytes)
{
	uint64_t *d = (uint64_t *)dst;
	const uint64_t *s = (const uint64_t *)src;
	for (size_t i = 0; i < bytes / 8; i++)
		d[i] = __atomic_load_n(&s[i], __ATOMIC_ACQUIRE);
}

/*
 * The start time (field 22, in clock ticks since boot) from the text of a
 * /proc/<pid>/stat file; 0 when it cannot be read. The process name (field
 * 2, in parentheses) may itself hold spaces and ')', so fields are counted
 * from the last ')'.
 */
static inline uint64_t iop_shm_start_time(const char *stat)
{
	const char *p = strrchr(stat, ')');
	if (!p)
		return 0;
	p++;
	for (int field = 3; field < 22; field++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return 0;
	}
	return strtoull(p + 1, NULL, 10);
}

/* The start time from the stat file at path ("/proc/self/stat",
 * "/proc/<pid>/stat"); 0 when the process does not exist. */
static inline uint64_t iop_shm_read_start_time(const char *path)
{
	char buf[1024];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return iop_shm_start_time(buf);
}

#endif /* IOP_PUBLISH_H */
