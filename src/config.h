/* SPDX-License-Identifier: MIT */
/*
 * Compile-time configuration. Every default lives here, with its reason.
 */
#ifndef IOP_CONFIG_H
#define IOP_CONFIG_H

/*
 * Debug level (set by the build: cmake -DIOP_DEBUG=N):
 *   0  release: foreign pointers are still refused (that check is cheap and
 *      always on); nothing else.
 *   1  cheap internal assertions on the slow paths.
 *   2  every pool is checked (IOP_F_CHECKED): double-free detection,
 *      poisoning of free objects, poison verified on reuse.
 *   3  as 2, and iop_pool_destroy() runs a full audit of the pool it frees
 *      (the one moment a pool is known to be quiescent).
 */
#ifndef IOP_DEBUG
#define IOP_DEBUG 0
#endif

/*
 * Pools whose statistics the publisher writes to the shared-memory segment
 * (publish.c): the segment is sized once, so the first this many pools (by
 * id) are shown; 1024 records are well under a megabyte.
 */
#define IOP_PUBLISH_MAX_POOLS 1024

/*
 * Granule of the address map: the smallest chunk and the unit in which the
 * owner of an address is looked up. 2 MiB is the x86-64 and arm64 huge page,
 * so a chunk can be one transparent hugepage and the map stays small.
 */
#define IOP_GRANULE_SHIFT 21
#define IOP_GRANULE ((size_t)1 << IOP_GRANULE_SHIFT)

/*
 * User address bits covered by the map. Linux hands out user addresses below
 * 2^47 on x86-64 (also with 5-level paging, unless a caller asks for more)
 * and below 2^48 on arm64. The map is reserved, not committed: 2^26 entries of
 * 16 bytes is 1 GiB of address space, of which only the pages describing
 * mapped chunks are ever touched (one 4 KiB page covers 512 MiB of chunks).
 */
#if defined(__aarch64__)
#define IOP_ADDR_BITS 48
#else
#define IOP_ADDR_BITS 47
#endif
#define IOP_MAP_ENTRIES ((size_t)1 << (IOP_ADDR_BITS - IOP_GRANULE_SHIFT))

/* Default chunk: one huge page. */
#define IOP_CHUNK_DEFAULT IOP_GRANULE
/* Largest chunk a caller may ask for; larger gains nothing but latency. */
#define IOP_CHUNK_MAX ((size_t)1 << 30)
/* A chunk should hold at least this many objects, or the per-chunk overhead
 * (a map entry, a descriptor, an mmap call) is paid too often for big
 * objects; the default chunk grows until it does (1 MiB objects: 8 MiB). */
#define IOP_CHUNK_MIN_OBJS 8

/* Default alignment: what malloc gives on 64-bit Linux. */
#define IOP_ALIGN_DEFAULT 16
/* The cache line the pool's layout is cut to (pool.c: the pool starts on
 * one, so that its hot struct fills exactly one). */
#define IOP_CACHELINE 64u

/*
 * Automatic magazine size: about this many bytes per magazine, the unit the
 * depot trades in. A thread's cache, in the per-thread mode, holds two
 * magazines; the depot lock is taken about once per 64 objects of 2 KiB
 * (the slow paths move half a magazine).
 */
#define IOP_MAG_BYTES (256u << 10)
/* Bounds of the automatic size: below 4, the depot lock is taken every few
 * operations; above 256 (for small objects), a magazine no longer fits in a
 * few cache lines' worth of pointers to walk and drain quickly (2 KiB). */
#define IOP_MAG_MIN 4u
#define IOP_MAG_MAX_AUTO 256u

/*
 * A CPU's cache (per-CPU mode), automatic size: about this many bytes,
 * between two magazines and IOP_CPU_CACHE_MAX_AUTO objects (1024 objects of
 * 2 KiB: DPDK's mempool cache is 512 with a flush threshold of 768). The
 * slot holds what a burst-at-a-time caller keeps in flight, so that a
 * pipeline holding 512 objects in bulks never reaches the shared depot:
 * between a full and an empty slot its slow paths move half a slot, so a
 * caller that swings by s objects stays on the CPU when the slot holds
 * about 2s (docs/BENCHMARKS.md, issue 12). With an explicit cache_size the
 * slot holds two magazines (a thread's two in the per-thread mode). CPUs
 * are few next to threads, and decay, shrink and reclaim drain the slots
 * of idle CPUs.
 */
#define IOP_CPU_CACHE_BYTES (2u << 20)
#define IOP_CPU_CACHE_MAX_AUTO 1024u
/* A bounded pool's CPUs together cache at most 1/IOP_BOUND_CPU_DIV of its
 * limit (each its share): the rest is always where IOP_NOWAIT finds it. */
#define IOP_BOUND_CPU_DIV 2u

/*
 * Bounded pools. Blocking callers are throttled from 70% of the limit until
 * the pool is below 65% (the RFC's example: the headroom above stays for
 * callers that cannot wait). A bounded pool's automatic magazine holds at
 * most 1/16 of the limit, so two magazines in one idle thread hold at most
 * 1/8 of it before a waiter takes them. The largest limit keeps the
 * in-flight count far from overflow.
 */
#define IOP_THROTTLE_ON_DEFAULT 70u
#define IOP_THROTTLE_OFF_DEFAULT 65u
#define IOP_BOUND_MAG_DIV 16u
#define IOP_LIMIT_MAX ((uint64_t)1 << 40)

/*
 * Refill workers and decay (worker.c).
 *
 * Memory domains: at most 8 (a pool keeps a depot per domain in itself;
 * machines with more NUMA nodes fold them, node % 8). The worker of each
 * domain wakes at least once a period (1 s: the longest a lost wake-up may
 * delay a refill, and the resolution of decay intervals above it), and a
 * slow path wakes it at most once per IOP_WAKE_GAP_NS per pool and domain
 * (100 us: a storm of failures costs one clock read each, and the worker is
 * woken far more often than one chunk can be mapped). After a failed chunk
 * request the worker backs off from 1 ms, doubling, up to the period.
 * Decay returns 25% of the idle memory per interval by default (the vmap
 * series' lazy drain).
 */
#define IOP_MAX_DOMAINS 8
#define IOP_WORKER_PERIOD_MS 1000
#define IOP_WAKE_GAP_NS 100000
#define IOP_BACKOFF_MIN_MS 1
#define IOP_DECAY_PCT_DEFAULT 25

/*
 * Memory pressure (IOPOOL_PSI_RECLAIM=P, worker.c): the PSI trigger's
 * window. Reclaim starts once tasks stalled on memory for P% of it. 2 s
 * is the shortest window the kernel gives a process without
 * CAP_SYS_RESOURCE (it wants a multiple of 2 s from those, and updates
 * their triggers every 2 s), so one value works for every process. The
 * stall is measured over those 2 s alone, where avg10 (the fallback)
 * climbs to P only after seconds of stall: 12 to 14 s for a 15% stall at
 * P = 10 in tests/test_psi.c, against 2 s for the trigger.
 */
#define IOP_PSI_WINDOW_US 2000000u

/* Byte written over free objects in checked mode ("iopool free"). */
#define IOP_POISON_BYTE 0xa5

/*
 * Heap (heap.c). Requests above IOP_HEAP_CLASS_MAX (iopool.h, 1 MiB, the
 * largest pool object) are mapped from the OS on their own, aligned to at
 * least a granule so that each granule of the address map names at most one
 * of them (the owner lookup of a free stays O(1)).
 *
 * Profiling (profile.c): call sites that get a slot in every profiling
 * thread's counter table (16 bytes each; the table is mapped, not
 * committed, so 4096 sites reserve 64 KiB per thread and touch a page per
 * 256 sites in use). Sites past it count with atomic adds on their record:
 * correct, only slower.
 */
#define IOP_PROFILE_SITES 4096u

/*
 * Freed large blocks the heap keeps mapped for reuse rather than unmapping
 * (an mmap and two munmaps saved per reuse: about 20 us, against a lock and
 * a short list walk): blocks of at most 8 MiB, 64 of them and 64 MiB in all
 * at most, so what a quiet program keeps is bounded. A block is reused for
 * a request of 8/9 of its size or more, the classes' waste bound.
 */
#define IOP_HEAP_LARGE_CACHE_BLOCK ((size_t)8 << 20)
#define IOP_HEAP_LARGE_CACHE_BLOCKS 64u
#define IOP_HEAP_LARGE_CACHE_BYTES ((size_t)64 << 20)

/*
 * Statistics publishing (publish.c): how often the background thread
 * rewrites the shared-memory segment by default. Once a second is what
 * slabtop and top refresh at; each update walks every pool and every
 * thread's cache slot under the registry lock, which a faster default
 * would hold more often for nothing a person can read.
 */
#define IOP_PUBLISH_INTERVAL_DEFAULT_MS 1000u

#endif /* IOP_CONFIG_H */
