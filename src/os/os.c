/* SPDX-License-Identifier: MIT */
/*
 * The OS layer (os.h): the system calls and the /proc and /sys reads.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "os.h"

#ifdef IOP_HAVE_NUMA
#include <numa.h>
#endif

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels say EINVAL */
#endif
#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
/* statfs(2) f_type of the two file systems that have PSI files. */
#define PROC_FS_MAGIC 0x9fa0
#define CGROUP2_FS_MAGIC 0x63677270

/* ---- memory ------------------------------------------------------------------ */

size_t _iop_os_page_size(void)
{
	static size_t page;
	size_t p = ALOAD(&page);
	if (!p) {
		long v = sysconf(_SC_PAGESIZE);
		p = v > 0 ? (size_t)v : 4096;
		ASTORE(&page, p);
	}
	return p;
}

void *_iop_os_reserve(size_t bytes)
{
	/* Reserved, not committed: untouched pages read as zero and cost
	 * nothing. */
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void *_iop_os_map_aligned(size_t len, size_t align, size_t tail, bool hugetlb)
{
	/* Over-map by align, keep the aligned part, trim both ends (two
	 * munmap calls once per mapping). hugetlbfs mappings come 2 MiB
	 * aligned: a 2 MiB-aligned one needs no excess. */
	size_t span = hugetlb && align == IOP_GRANULE ? len : len + align + tail;
	if (span < len) {
		errno = ENOMEM;
		return NULL;
	}
	int extra = hugetlb ? MAP_HUGETLB | MAP_HUGE_2MB : 0;
	char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	char *base = (char *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
	if (base > raw)
		munmap(raw, (size_t)(base - raw));
	if (base + len + tail < raw + span)
		munmap(base + len + tail, (size_t)(raw + span - (base + len + tail)));
	return base;
}

void _iop_os_unmap(void *p, size_t len)
{
	/* ASan keeps shadow across munmap. */
	IOP__UNPOISON(p, len);
	munmap(p, len);
}

/* Whether THP can back an madvise()d range ("[never]" says no). Read once:
 * an administrator changing it meanwhile only changes what stats say. */
static bool thp_enabled(void)
{
	static int known = -1;
	int k = ALOAD(&known);
	if (k < 0) {
		char buf[128];
		k = _iop_os_read_line("/sys/kernel/mm/transparent_hugepage/enabled", buf, sizeof(buf)) > 0 &&
		    !strstr(buf, "[never]");
		ASTORE(&known, k);
	}
	return k;
}

bool _iop_os_advise_thp(void *p, size_t len)
{
	return madvise(p, len, MADV_HUGEPAGE) == 0 && thp_enabled();
}

long _iop_os_hugetlb_reserved(void)
{
	char buf[32];
	return _iop_os_read_line("/proc/sys/vm/nr_hugepages", buf, sizeof(buf)) > 0 ? strtol(buf, NULL, 10) : 0;
}

int _iop_os_release(void *p, size_t len)
{
	/* DONTNEED, not FREE: the resident set falls now, not at the next
	 * memory pressure, and what a released page reads is always zero
	 * (checked mode poisons it again on reuse). */
	return madvise(p, len, MADV_DONTNEED) == 0 ? 0 : -errno;
}

void _iop_os_prefault(char *base, size_t len)
{
	if (madvise(base, len, MADV_POPULATE_WRITE) == 0)
		return;
	/* Before Linux 5.14: write each page with what it holds. Object
	 * memory may be poisoned for ASan or no-access for memcheck;
	 * nothing is in flight here. */
	FREE_UNPOISON(base, len);
	size_t page = _iop_os_page_size();
	for (size_t off = 0; off < len; off += page) {
		volatile char *b = base + off;
		*b = *b;
	}
	FREE_POISON(base, len);
}

uint64_t _iop_os_resident(char *const *bases, size_t n, size_t len)
{
	size_t page = _iop_os_page_size(), pages = (len + page - 1) / page;
	unsigned char *vec = n ? malloc(pages) : NULL;
	uint64_t resident = 0;
	for (size_t i = 0; vec && i < n; i++) {
		if (mincore(bases[i], len, vec) != 0)
			continue; /* unmapped meanwhile: ENOMEM */
		for (size_t j = 0; j < pages; j++)
			resident += vec[j] & 1;
	}
	free(vec);
	return resident * page;
}

/* ---- CPUs, fences, files --------------------------------------------------------- */

int _iop_os_read_line(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || size == 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	ssize_t n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	char *nl = strchr(buf, '\n');
	if (nl)
		nl[1] = 0;
	return (int)strlen(buf);
}

/* ---- memory pressure: PSI triggers ------------------------------------------------ */

int _iop_os_psi_open(const char *path, uint64_t stall_us, uint64_t window_us)
{
	int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* Only procfs and cgroup2 files take triggers: anything else (a
	 * test's fake file) would take the text as data and never wake. */
	struct statfs fs;
	int err = 0;
	if (fstatfs(fd, &fs) != 0)
		err = -errno;
	else if (fs.f_type != PROC_FS_MAGIC && fs.f_type != CGROUP2_FS_MAGIC)
		err = -EOPNOTSUPP;
	if (!err) {
		/* The kernel wants the terminating NUL too (psi(7),
		 * Documentation/accounting/psi.rst). */
		char trig[64];
		int n = snprintf(trig, sizeof(trig), "some %llu %llu", (unsigned long long)stall_us,
				 (unsigned long long)window_us);
		if (write(fd, trig, (size_t)n + 1) < 0)
			err = -errno;
	}
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

int _iop_os_psi_wait(int psi_fd, int wake_fd, int timeout_ms)
{
	struct pollfd p[2] = { { .fd = wake_fd, .events = POLLIN }, { .fd = psi_fd, .events = POLLPRI } };
	int n = poll(p, psi_fd >= 0 ? 2 : 1, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	/* The eventfd closed under the library (a program that closes every
	 * descriptor): say so rather than return at once for ever. */
	if (p[0].revents & (POLLERR | POLLNVAL))
		return -EBADF;
	int got = 0;
	if (p[0].revents & POLLIN) {
		uint64_t v;
		ssize_t r = read(wake_fd, &v, sizeof(v));
		(void)r; /* EAGAIN: another waiter took it; woken all the same */
		got |= IOP_OS_PSI_WOKEN;
	}
	/* A trigger whose cgroup is gone polls as an error (with POLLPRI). */
	if (psi_fd >= 0 && (p[1].revents & (POLLERR | POLLHUP | POLLNVAL)))
		return -EIO;
	if (psi_fd >= 0 && (p[1].revents & POLLPRI))
		got |= IOP_OS_PSI_EVENT;
	return got;
}

void _iop_os_psi_close(int psi_fd)
{
	if (psi_fd >= 0)
		close(psi_fd);
}

int _iop_os_wake_open(void)
{
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

void _iop_os_wake_signal(int wake_fd)
{
	uint64_t one = 1;
	ssize_t r = write(wake_fd, &one, sizeof(one));
	(void)r; /* EAGAIN: the counter is full, so it is signalled already */
}

void _iop_os_wake_close(int wake_fd)
{
	if (wake_fd >= 0)
		close(wake_fd);
}

unsigned _iop_os_possible_cpus(void)
{
	unsigned n = 0;
	char buf[256];
	if (_iop_os_read_line("/sys/devices/system/cpu/possible", buf, sizeof(buf)) > 0) {
		/* "0-3" or "0,2-5": the last number is the highest id. */
		char *p = buf + strlen(buf);
		while (p > buf && (p[-1] < '0' || p[-1] > '9'))
			p--;
		while (p > buf && p[-1] >= '0' && p[-1] <= '9')
			p--;
		n = (unsigned)strtoul(p, NULL, 10) + 1;
	}
	long conf = sysconf(_SC_NPROCESSORS_CONF);
	if (conf > 0 && (unsigned)conf > n)
		n = (unsigned)conf;
	return n ? n : 1;
}

int _iop_os_cpu(void)
{
	return sched_getcpu();
}

int _iop_os_membarrier(int cmd, unsigned flags, int cpu)
{
	return (int)syscall(__NR_membarrier, cmd, flags, cpu);
}

/* ---- NUMA nodes ------------------------------------------------------------------ */

int _iop_os_numa_max_node(void)
{
#ifdef IOP_HAVE_NUMA
	if (numa_available() < 0)
		return 0;
	int n = numa_max_node();
	return n > 0 ? n : 0;
#else
	return 0;
#endif
}

bool _iop_os_numa_has_memory(int node)
{
#ifdef IOP_HAVE_NUMA
	long long freemem;
	return numa_node_size64(node, &freemem) > 0;
#else
	return node == 0;
#endif
}

int _iop_os_numa_node_of_cpu(int cpu)
{
#ifdef IOP_HAVE_NUMA
	return numa_node_of_cpu(cpu);
#else
	(void)cpu;
	return 0;
#endif
}

void _iop_os_numa_bind(void *p, size_t len, int node)
{
#ifdef IOP_HAVE_NUMA
	numa_tonode_memory(p, len, node);
#else
	(void)p;
	(void)len;
	(void)node;
#endif
}

void _iop_os_numa_run_on(int node)
{
#ifdef IOP_HAVE_NUMA
	numa_run_on_node(node);
#else
	(void)node;
#endif
}

/* ---- the shared-memory segment ---------------------------------------------------- */

void *_iop_os_shm_create(const char *name, size_t size, int *err)
{
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EEXIST) {
		/* No live process but this one has this pid: a dead one with
		 * the same pid left it. */
		shm_unlink(name);
		fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	}
	if (fd < 0) {
		*err = errno;
		return NULL;
	}
	/* Allocated now, not on first touch: a full /dev/shm fails here with
	 * ENOSPC instead of killing the thread later with SIGBUS. */
	int e = posix_fallocate(fd, 0, (off_t)size);
	void *m = e ? MAP_FAILED : mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (!e && m == MAP_FAILED)
		e = errno;
	close(fd);
	if (e) {
		shm_unlink(name);
		*err = e;
		return NULL;
	}
	return m;
}

void _iop_os_shm_close(const char *name, void *p, size_t size, bool remove)
{
	munmap(p, size);
	if (remove)
		shm_unlink(name);
}
