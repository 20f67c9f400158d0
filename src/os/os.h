/* SPDX-License-Identifier: MIT */
/*
 * The OS layer: every system call iopool makes about memory, CPUs and
 * NUMA nodes, every /proc and /sys read, and the fault injection that tests
 * use to make chunk requests fail or slow (iop_fault.h). The layers above
 * decide (which pages, which node, when); this file only asks the kernel,
 * and reports failures as NULL or -1 with errno, or as a neutral value
 * where the caller only wants a hint (a /proc file that cannot be read
 * reads as 0). Nothing here calls up the stack: only messages and options.
 *
 *   os.c     mappings (reserve, aligned map, advise, prefault, residency),
 *            files under /proc and /sys, PSI triggers and the eventfd that
 *            wakes their watcher, CPUs, membarrier, NUMA (libnuma), the
 *            shared-memory segment of the statistics publisher
 *   fault.c  fault injection of chunk requests (iop_fault.h)
 */
#ifndef IOP_OS_H
#define IOP_OS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../internal.h"

/* ---- memory ------------------------------------------------------------------ */

/* The base page size (sysconf, read once). */
IOP_HIDDEN size_t _iop_os_page_size(void);
/* Reserve `bytes` of zero-filled address space, committed page by page on
 * first touch (MAP_NORESERVE): tables indexed by address, side arrays.
 * NULL with errno on failure. */
IOP_HIDDEN void *_iop_os_reserve(size_t bytes);
/* The one aligned mapping: `len` bytes (a multiple of the page size)
 * starting at a multiple of `align` (a power of two, at least the page
 * size), followed by `tail` more bytes; the excess of an over-sized mapping
 * is trimmed at both ends. hugetlb: 2 MiB hugetlbfs pages (len and align
 * multiples of 2 MiB, no tail), which the kernel reserves now: ENOMEM at
 * once when too few are free. NULL with errno on failure. */
IOP_HIDDEN void *_iop_os_map_aligned(size_t len, size_t align, size_t tail, bool hugetlb);
/* Unmap [p, p + len); clears ASan's poison of the range first, so the next
 * mapping at this address does not start out poisoned. */
IOP_HIDDEN void _iop_os_unmap(void *p, size_t len);
/* Ask for transparent hugepages on [p, p + len): true when the advice was
 * taken and THP is not disabled system-wide ("[never]"). */
IOP_HIDDEN bool _iop_os_advise_thp(void *p, size_t len);
/* Huge pages reserved in the system's hugetlbfs pool (nr_hugepages). */
IOP_HIDDEN long _iop_os_hugetlb_reserved(void);
/* Give the pages of [p, p + len) (page aligned) back to the OS, keeping
 * the mapping: MADV_DONTNEED, so the next touch faults in a zero page.
 * 0 or -errno. */
IOP_HIDDEN int _iop_os_release(void *p, size_t len);
/* Fault [base, base + len) in without changing its contents. */
IOP_HIDDEN void _iop_os_prefault(char *base, size_t len);
/* Bytes of the n mappings bases[i] .. bases[i] + len that are in memory
 * (mincore); a range no longer mapped counts nothing. Takes no lock: call
 * it with none held, it makes one system call per range. */
IOP_HIDDEN uint64_t _iop_os_resident(char *const *bases, size_t n, size_t len);

/* ---- CPUs, fences, files --------------------------------------------------------- */

/* Possible CPUs: what the kernel may ever report as a CPU number. */
IOP_HIDDEN unsigned _iop_os_possible_cpus(void);
/* The CPU the caller runs on (getcpu, a vDSO call); -1 when unknown. */
IOP_HIDDEN int _iop_os_cpu(void);
/* membarrier(2): 0, or -1 with errno. */
IOP_HIDDEN int _iop_os_membarrier(int cmd, unsigned flags, int cpu);
/* The first line of a /proc or /sys file into buf (NUL-terminated, the
 * newline kept): its length, or -1 when it cannot be read. */
IOP_HIDDEN int _iop_os_read_line(const char *path, char *buf, size_t size);

/* ---- memory pressure: PSI triggers (worker.c) ------------------------------------ */

/* What _iop_os_psi_wait() saw (or'ed). */
enum { IOP_OS_PSI_EVENT = 1, IOP_OS_PSI_WOKEN = 2 };
/* Open the PSI file `path` (/proc/pressure/memory, or a cgroup v2
 * memory.pressure) and arm a trigger on it: an event once tasks stalled on
 * memory ("some") for stall_us within a window of window_us. The kernel
 * fires at most one event per window while the stall lasts. The file
 * descriptor, or -errno: EOPNOTSUPP when path is neither a procfs nor a
 * cgroup2 file (a regular file is never written to), EINVAL or EPERM when
 * the kernel refuses the trigger (a window it does not take from this
 * process, PSI disabled), EACCES or ENOENT when the file cannot be opened
 * for writing. */
IOP_HIDDEN int _iop_os_psi_open(const char *path, uint64_t stall_us, uint64_t window_us);
/* Wait up to timeout_ms (-1: no limit) for an event of the trigger psi_fd
 * (-1: none, wait for wake_fd only) or a signal of wake_fd, which this
 * consumes: IOP_OS_PSI_EVENT and/or IOP_OS_PSI_WOKEN; 0 when the time
 * passed (or a signal interrupted the wait); -EIO when the trigger is
 * gone (its cgroup was removed); -EBADF when wake_fd is no longer open. */
IOP_HIDDEN int _iop_os_psi_wait(int psi_fd, int wake_fd, int timeout_ms);
IOP_HIDDEN void _iop_os_psi_close(int psi_fd);
/* An eventfd to wake a thread in _iop_os_psi_wait(): the descriptor, or
 * -errno. Signalling never blocks and is async-signal-safe. */
IOP_HIDDEN int _iop_os_wake_open(void);
IOP_HIDDEN void _iop_os_wake_signal(int wake_fd);
IOP_HIDDEN void _iop_os_wake_close(int wake_fd);

/* ---- NUMA nodes (libnuma; one node without it) ------------------------------------- */

/* The highest node number, 0 with one node or without libnuma. */
IOP_HIDDEN int _iop_os_numa_max_node(void);
/* Whether node has memory of its own. */
IOP_HIDDEN bool _iop_os_numa_has_memory(int node);
/* The node of a CPU, -1 when unknown. */
IOP_HIDDEN int _iop_os_numa_node_of_cpu(int cpu);
/* Place [p, p + len) on node (mbind; before the first touch). */
IOP_HIDDEN void _iop_os_numa_bind(void *p, size_t len, int node);
/* Run the calling thread on node's CPUs. */
IOP_HIDDEN void _iop_os_numa_run_on(int node);

/* ---- the shared-memory segment (publish.c) ----------------------------------------- */

/* Create the POSIX shared-memory object `name` (replacing a stale one a
 * dead process of the same pid left), allocate `size` bytes of it and map
 * it shared: the mapping, or NULL with *err set to the errno. */
IOP_HIDDEN void *_iop_os_shm_create(const char *name, size_t size, int *err);
/* Unmap it, and remove the name when `remove`. */
IOP_HIDDEN void _iop_os_shm_close(const char *name, void *p, size_t size, bool remove);

/* ---- fault injection (fault.c, iop_fault.h) ---------------------------------------- */

/* Read the IOPOOL_FAULT_* variables (once; at the map's set-up). */
IOP_HIDDEN void _iop_os_fault_env(void);
/* A chunk request: should it fail (ENOMEM)? Sleeps first when asked to. */
IOP_HIDDEN bool _iop_os_fault(void);

#endif /* IOP_OS_H */
