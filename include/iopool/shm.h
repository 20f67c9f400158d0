/* SPDX-License-Identifier: MIT */
/*
 * iopool/shm.h: the shared-memory statistics segment, for readers.
 *
 * What a publishing process writes (iop_stats_publish(), or IOPOOL_PUBLISH=1
 * in its environment) and what tools/iopool-top, or any other reader, reads.
 * It needs only libc and POSIX.1-2008 (_POSIX_C_SOURCE 200809L, which gcc's
 * default gnu modes imply); a reader does not link libiopool.
 *
 * It also holds IOP_POOL_STATS_FIELDS, the one list of the fields of struct
 * iop_pool_stats (iopool.h) after struct_size: the library's text and JSON
 * printers, the segment's record below and iopool-top's output are all
 * generated from it, and the library's build checks that the public struct
 * has exactly these fields, in this order.
 *
 * A process that publishes owns one POSIX shared-memory object named
 * IOP_SHM_PREFIX followed by its pid in decimal: /dev/shm/iopool.<pid> on
 * Linux. It is created with mode 0600 (the statistics say what a process is
 * doing), sized once, and holds a header and room for one record per
 * possible pool:
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
 * iop_shm_load_words() below. The magic is written last, when the segment
 * is set up: a reader takes a segment whose magic is still zero for "not
 * ready yet".
 *
 * Stale segments: a process killed by a signal leaves its segment behind.
 * `pid` and `start_time` (the process's start time in clock ticks since
 * boot, field 22 of /proc/<pid>/stat) tell a reader whether the process
 * that wrote it still runs: a pid reused by another process has another
 * start time.
 */
#ifndef IOPOOL_SHM_H
#define IOPOOL_SHM_H

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * The fields of struct iop_pool_stats after struct_size, in its order:
 * X(type, name) once per field. Append only (a new field is one line here
 * and its line at the end of struct iop_pool_stats; the library's build
 * fails until both agree). The meaning of each field is documented at
 * struct iop_pool_stats in iopool.h.
 */
#define IOP_POOL_STATS_FIELDS(X)                                                      \
	X(uint32_t, cache_size) X(uint64_t, obj_size) X(uint64_t, obj_stride)          \
	X(uint64_t, chunk_size) X(uint64_t, objs_per_chunk) X(uint64_t, total)         \
	X(uint64_t, in_flight) X(uint64_t, cached) X(uint64_t, depot)                  \
	X(uint64_t, slab_free) X(uint64_t, chunks) X(uint64_t, bytes_mapped)           \
	X(uint64_t, alloc_fast) X(uint64_t, alloc_slow) X(uint64_t, alloc_fail)        \
	X(uint64_t, free_fast) X(uint64_t, free_slow) X(uint64_t, depot_get)           \
	X(uint64_t, depot_put) X(uint64_t, mag_alloc) X(uint64_t, chunk_acquire)       \
	X(uint64_t, chunk_release)                                                     \
	/* since 0.2 */                                                                \
	X(uint64_t, map_calls) X(uint64_t, unmap_calls) X(uint64_t, release_hook)      \
	X(uint64_t, hook_kept)                                                         \
	/* since 0.3 */                                                                \
	X(uint64_t, limit) X(uint64_t, throttle_on) X(uint64_t, throttle_off)          \
	X(uint64_t, high_water) X(uint64_t, waiters) X(uint64_t, limit_hits)           \
	X(uint64_t, waits) X(uint64_t, throttled) X(uint64_t, throttled_ns)            \
	X(uint64_t, wait_ns) X(uint64_t, wait_p50_ns) X(uint64_t, wait_p99_ns)         \
	X(uint64_t, wait_max_ns) X(uint64_t, timeouts) X(uint64_t, fail_nowait)        \
	X(uint64_t, fail_default) X(uint64_t, fail_wait)                               \
	/* since 0.4 */                                                                \
	X(uint64_t, reserve_low) X(uint64_t, reserve_high) X(uint64_t, reserve_short)  \
	X(uint64_t, wake_low) X(uint64_t, wake_empty) X(uint64_t, wake_fail)           \
	X(uint64_t, refill_passes) X(uint64_t, refill_objs) X(uint64_t, refill_fail)   \
	X(uint64_t, decay_passes) X(uint64_t, decay_objs) X(uint64_t, trims)           \
	X(uint64_t, bytes_resident) X(uint64_t, page_kind) X(uint64_t, chunks_hugetlb) \
	X(uint64_t, chunks_thp) X(uint64_t, domains) X(uint64_t, sent_home) \
	X(uint64_t, cache_mode) X(uint64_t, cpu_drains) X(uint64_t, cpu_cache_size)     \
	X(uint64_t, bytes_released) X(uint64_t, page_release) X(uint64_t, page_reuse)

/* How many fields the list has, and their bytes (without padding). */
#define IOP_POOL_STATS_COUNT_ONE_(t, n) +1
#define IOP_POOL_STATS_BYTES_ONE_(t, n) +sizeof(t)
#define IOP_POOL_STATS_NFIELDS (0 IOP_POOL_STATS_FIELDS(IOP_POOL_STATS_COUNT_ONE_))
#define IOP_POOL_STATS_FIELD_BYTES (0 IOP_POOL_STATS_FIELDS(IOP_POOL_STATS_BYTES_ONE_))

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

#define IOP_SHM_NAME_MAX 32u /* NUL included, as IOP_NAME_MAX */

/* A record's size is part of format version 1: its fixed head (name, kind,
 * flags, id), the statistics fields, then reserved words that the fields
 * appended later take over (older writers leave them zero, so a newer
 * reader sees 0 for a field an older library did not have). */
#define IOP_SHM_RECORD_SIZE 600u
#define IOP_SHM_RECORD_HEAD (IOP_SHM_NAME_MAX + 3 * sizeof(uint32_t))
#define IOP_SHM_RECORD_RESERVED \
	((IOP_SHM_RECORD_SIZE - IOP_SHM_RECORD_HEAD - IOP_POOL_STATS_FIELD_BYTES) / 8)

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

/* One pool: its name, kind and identity, then every field of
 * IOP_POOL_STATS_FIELDS under the same name (cache_size first). */
struct iop_shm_record {
	char name[IOP_SHM_NAME_MAX]; /* the pool's name, NUL-terminated */
	uint32_t kind;          /* IOP_SHM_KIND_* */
	uint32_t flags;         /* the pool's IOP_F_* flags */
	uint32_t id;            /* the pool's slot in the process */
#define IOP_SHM_FIELD_(t, n) t n;
	IOP_POOL_STATS_FIELDS(IOP_SHM_FIELD_)
#undef IOP_SHM_FIELD_
	uint64_t reserved[IOP_SHM_RECORD_RESERVED]; /* zero */
};

#ifdef __cplusplus
#define IOP_SHM_ASSERT_ static_assert
#else
#define IOP_SHM_ASSERT_ _Static_assert
#endif
IOP_SHM_ASSERT_(sizeof(struct iop_shm_header) == 512, "the header's size is part of the format");
IOP_SHM_ASSERT_(offsetof(struct iop_shm_record, cache_size) == IOP_SHM_RECORD_HEAD &&
			offsetof(struct iop_shm_record, obj_size) == 48,
		"the statistics start where format version 1 has them");
/* Fails when the list outgrows the record: a new format version is due. */
IOP_SHM_ASSERT_(sizeof(struct iop_shm_record) == IOP_SHM_RECORD_SIZE, "the record's size is part of the format");

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

#endif /* IOPOOL_SHM_H */
