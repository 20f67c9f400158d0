/* SPDX-License-Identifier: MIT */
/*
 * iopool-top: the pools of a running process, like slabtop.
 *
 *   iopool-top                      list the processes that publish
 *   iopool-top PID|NAME             a full-screen view of that process's
 *                                   pools, refreshed every second
 *   iopool-top --once PID|NAME      one screen to stdout
 *   iopool-top --json [PID|NAME]    the same as JSON
 *   iopool-top --clean [PID]        remove segments of dead processes
 *
 * A process publishes with iop_stats_publish() or IOPOOL_PUBLISH=1; its
 * statistics are in /dev/shm/iopool.<pid>, in the format of <iopool/shm.h>.
 * This tool only reads that segment (through a seqlock, so it never shows a
 * torn record) and does not link the library. A segment whose process is
 * gone (killed, or its pid now runs something else) is "stale": listed as
 * such, its last numbers shown on request, and removed by --clean.
 *
 * Exit status: 0; 1 when the process is not found, its segment cannot be
 * read, or it is stale (its last numbers are still printed); 2 on a usage
 * error.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "iopool/shm.h"

/* IOP_CACHE_MODE_CPU of <iopool.h> (this reader does not link iopool). */
#define TOP_CACHE_MODE_CPU 2

#define MAX_PROCS 1024
/* How long a reader waits for an update in progress to finish before it
 * calls the segment torn: an update copies at most 80 KiB, so 100 ms means
 * the writer stopped in the middle (it died). */
#define SEQ_WAIT_NS 100000000ull
/* A segment not updated for STALE_INTERVALS of its publisher's intervals,
 * and for at least STALE_MIN_NS, is stale even though its process exists:
 * the publishing thread stopped (a process killed but not yet reaped, a
 * hung process). Five intervals tolerate a publisher delayed by a loaded
 * machine; the floor keeps a 10 ms publisher from being called stale (and
 * cleaned) over a scheduling hiccup. */
#define STALE_INTERVALS 5u
#define STALE_MIN_NS 2000000000ull

/* ---- reading a segment ---------------------------------------------------- */

enum status { ST_LIVE, ST_STALE, ST_TORN, ST_BAD };
static const char *const status_names[] = {
	[ST_LIVE] = "live", [ST_STALE] = "stale", [ST_TORN] = "torn", [ST_BAD] = "unreadable",
};

struct proc {
	int pid;                  /* from the segment's file name */
	enum status status;
	bool alive;               /* a process with that pid and start time runs */
	char why[160];            /* for stale, torn and unreadable */
	struct iop_shm_header h;  /* valid unless ST_BAD */
	struct iop_shm_record *rec;
	uint32_t n;
};

static uint64_t clock_ns(clockid_t clock)
{
	struct timespec t;
	clock_gettime(clock, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* The start time of process pid, 0 when it does not run. */
static uint64_t start_time_of(int pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	return iop_shm_read_start_time(path);
}

/* The state letter of process pid (field 3 of /proc/<pid>/stat: R, S, D,
 * Z for a zombie, T for stopped, ...), or 0 when it cannot be read. Counted
 * from the last ')', as the name in parentheses may hold anything. */
static char state_of(int pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

/* Copy the segment between two equal even sequence numbers (shm.h);
 * the bytes past the last whole word, if any, are not the format's. */
static int seq_copy(const unsigned char *map, size_t size, unsigned char *out)
{
	const struct iop_shm_header *h = (const struct iop_shm_header *)(const void *)map;
	uint64_t give_up = clock_ns(CLOCK_MONOTONIC) + SEQ_WAIT_NS;
	memset(out, 0, size);
	for (unsigned tries = 0;; tries++) {
		uint64_t s1 = __atomic_load_n(&h->seq, __ATOMIC_ACQUIRE);
		if (!(s1 & 1)) {
			iop_shm_load_words(out, map, size & ~(size_t)7);
			if (__atomic_load_n(&h->seq, __ATOMIC_RELAXED) == s1)
				return 0;
		}
		if (clock_ns(CLOCK_MONOTONIC) > give_up) {
			/* The writer stopped in the middle (it died): the copy
			 * as it is, torn, so that the header, written once at
			 * set-up, still says whose segment this is. */
			iop_shm_load_words(out, map, size & ~(size_t)7);
			return -1;
		}
		if (tries > 16)
			usleep(100);
	}
}

/* Read the segment of pid into *p (p->rec is malloc'd, or NULL). */
static void proc_read(int pid, struct proc *p)
{
	char name[64];
	memset(p, 0, sizeof(*p));
	p->pid = pid;
	p->status = ST_BAD;
	snprintf(name, sizeof(name), "%s%d", IOP_SHM_PREFIX, pid);

	uint64_t st = start_time_of(pid);
	/* Alive until the header says the segment is an older process's:
	 * every early return below must keep a live process's segment safe
	 * from --clean. */
	p->alive = st != 0;
	int fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) != 0) {
		snprintf(p->why, sizeof(p->why), "%s%s: %s", IOP_SHM_DIR, name, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	size_t size = (size_t)sb.st_size;
	void *map = size >= sizeof(p->h) ? mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
	close(fd);
	if (map == MAP_FAILED) {
		snprintf(p->why, sizeof(p->why), "%zu bytes: not a segment of this format", size);
		return;
	}
	unsigned char *copy = malloc(size);
	int torn = copy ? seq_copy(map, size, copy) : -1;
	munmap(map, size);
	if (!copy) {
		snprintf(p->why, sizeof(p->why), "out of memory");
		return;
	}
	memcpy(&p->h, copy, sizeof(p->h));
	const struct iop_shm_header *h = &p->h;
	static const char zero[sizeof(h->magic)];
	if (memcmp(h->magic, zero, sizeof(zero)) == 0) {
		/* shm_open() made it and the header is not written yet */
		snprintf(p->why, sizeof(p->why), "not set up yet (its process is starting to publish)");
	} else if (memcmp(h->magic, IOP_SHM_MAGIC, sizeof(h->magic)) != 0) {
		snprintf(p->why, sizeof(p->why), "not an iopool statistics segment (bad magic)");
	} else if (h->version != IOP_SHM_VERSION) {
		snprintf(p->why, sizeof(p->why), "format version %u; this tool reads version %u", h->version,
			 IOP_SHM_VERSION);
	} else if (h->header_size < sizeof(*h) || h->record_size < sizeof(struct iop_shm_record) ||
		   h->nrecords > h->max_records ||
		   (uint64_t)h->header_size + (uint64_t)h->max_records * h->record_size > size) {
		snprintf(p->why, sizeof(p->why), "inconsistent sizes (header %u, record %u, %u of %u records, %zu bytes)",
			 h->header_size, h->record_size, h->nrecords, h->max_records, size);
	} else {
		p->status = ST_LIVE;
	}
	p->alive = st != 0 && (p->status == ST_BAD || st == h->start_time);
	if (p->status == ST_LIVE) {
		p->rec = calloc(h->nrecords ? h->nrecords : 1, sizeof(*p->rec));
		for (uint32_t i = 0; p->rec && i < h->nrecords; i++) {
			struct iop_shm_record *r = &p->rec[p->n];
			/* The fields this version knows; a longer record's
			 * tail is a later version's. */
			memcpy(r, copy + h->header_size + (size_t)i * h->record_size, sizeof(*r));
			r->name[IOP_SHM_NAME_MAX - 1] = '\0';
			p->n += r->kind == IOP_SHM_KIND_POOL; /* skip kinds not shown */
		}
		p->h.name[IOP_SHM_NAME_MAX - 1] = '\0';
		if (torn) {
			p->status = ST_TORN;
			snprintf(p->why, sizeof(p->why), "an update never finished (the writer stopped in the middle)");
		}
	}
	free(copy);
	if (p->status != ST_BAD && !p->alive) {
		p->status = ST_STALE;
		snprintf(p->why, sizeof(p->why), "%s", st ? "the pid now runs another process" : "the process is gone");
	} else if (p->status == ST_LIVE) {
		/* The process exists; is it still publishing? A zombie (killed,
		 * not yet reaped by its parent) keeps its pid and start time
		 * but will never update again: stale, and --clean removes it.
		 * So does a segment several intervals old. A stopped process
		 * (SIGSTOP, a debugger) is shown stale but keeps its segment:
		 * it resumes publishing when continued. */
		char state = state_of(pid);
		uint64_t now = clock_ns(CLOCK_REALTIME), age = now > h->updated_ns ? now - h->updated_ns : 0;
		uint64_t limit = (uint64_t)STALE_INTERVALS * h->interval_ms * 1000000u;
		if (limit < STALE_MIN_NS)
			limit = STALE_MIN_NS;
		if (state == 'Z' || state == 'X') {
			p->status = ST_STALE;
			p->alive = false;
			snprintf(p->why, sizeof(p->why), "the process is a zombie (killed, not yet reaped)");
		} else if (age > limit) {
			p->status = ST_STALE;
			bool stopped = state == 'T' || state == 't';
			p->alive = stopped;
			snprintf(p->why, sizeof(p->why), "%snot updated for %.1fs (%llu of its %u ms intervals)",
				 stopped ? "the process is stopped; " : "", (double)age / 1e9,
				 (unsigned long long)(age / ((uint64_t)h->interval_ms * 1000000u + 1)), h->interval_ms);
		}
	}
}

static void proc_free(struct proc *p)
{
	free(p->rec);
	p->rec = NULL;
}

/* The pids of every segment in IOP_SHM_DIR, ascending; returns how many. */
static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

static int list_pids(int *pids, int max)
{
	const char *prefix = IOP_SHM_PREFIX + 1; /* without the '/' */
	size_t plen = strlen(prefix);
	DIR *d = opendir(IOP_SHM_DIR);
	int n = 0;
	if (!d)
		return 0;
	for (struct dirent *e; (e = readdir(d)) != NULL && n < max;) {
		const char *s = e->d_name;
		if (strncmp(s, prefix, plen) != 0 || !s[plen])
			continue;
		char *end;
		long pid = strtol(s + plen, &end, 10);
		if (*end || pid <= 0 || pid > INT32_MAX || !isdigit((unsigned char)s[plen]))
			continue;
		pids[n++] = (int)pid;
	}
	closedir(d);
	qsort(pids, (size_t)n, sizeof(*pids), cmp_int);
	return n;
}

/* ---- formatting ------------------------------------------------------------ */

/* v in units of `base` (1024 or 1000), one decimal past the first:
 * "512", "2.0M", "1.5k"; with a unit, bytes in binary units: "2.0 MiB". */
static void scaled(char *buf, size_t len, double v, double base, const char *unit)
{
	static const char prefix[] = "KMGTP";
	const char *sep = *unit ? " " : "";
	int i = 0;
	while (v >= base && i < 5) {
		v /= base;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%.0f%s%s", v, sep, unit);
	else
		snprintf(buf, len, "%.1f%s%c%s%s", v, sep, base == 1000 && i == 1 ? 'k' : prefix[i - 1],
			 base == 1024 && *unit ? "i" : "", unit);
}

static void age_str(char *buf, size_t len, uint64_t ns_then)
{
	uint64_t now = clock_ns(CLOCK_REALTIME);
	double s = now > ns_then ? (double)(now - ns_then) / 1e9 : 0;
	if (s < 60)
		snprintf(buf, len, "%.1fs", s);
	else if (s < 3600)
		snprintf(buf, len, "%.0fm", s / 60);
	else if (s < 86400)
		snprintf(buf, len, "%.1fh", s / 3600);
	else
		snprintf(buf, len, "%.1fd", s / 86400);
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* ---- the list of processes ------------------------------------------------- */

static uint64_t sum_field(const struct proc *p, size_t off)
{
	uint64_t s = 0;
	for (uint32_t i = 0; i < p->n; i++) {
		uint64_t v;
		memcpy(&v, (const char *)&p->rec[i] + off, sizeof(v));
		s += v;
	}
	return s;
}

static int list_processes(bool json)
{
	static int pids[MAX_PROCS];
	int n = list_pids(pids, MAX_PROCS), stale = 0;

	if (json)
		fputs("{\"processes\": [", stdout);
	else if (n == 0)
		printf("no process publishes iopool statistics (%s/%s*); start one with IOPOOL_PUBLISH=1 or "
		       "iop_stats_publish()\n", IOP_SHM_DIR, IOP_SHM_PREFIX + 1);
	else
		printf("%-8s %-20s %6s %12s %10s %10s %8s  %s\n", "PID", "NAME", "POOLS", "IN-FLIGHT", "MAPPED",
		       "RESIDENT", "UPDATED", "STATUS");
	for (int i = 0; i < n; i++) {
		struct proc p;
		proc_read(pids[i], &p);
		bool data = p.status != ST_BAD;
		uint64_t inflight = sum_field(&p, offsetof(struct iop_shm_record, in_flight));
		uint64_t mapped = sum_field(&p, offsetof(struct iop_shm_record, bytes_mapped));
		uint64_t resident = sum_field(&p, offsetof(struct iop_shm_record, bytes_resident));
		stale += !p.alive;
		if (json) {
			printf("%s\n  {\"pid\": %d, \"status\": \"%s\", \"segment\": \"%s/%s%d\"", i ? "," : "", p.pid,
			       status_names[p.status], IOP_SHM_DIR, IOP_SHM_PREFIX + 1, p.pid);
			if (data) {
				fputs(", \"name\": ", stdout);
				json_str(stdout, p.h.name);
				printf(", \"pools\": %u, \"in_flight\": %llu, \"bytes_mapped\": %llu, "
				       "\"bytes_resident\": %llu, \"updated_ns\": %llu, \"updates\": %llu",
				       p.n, (unsigned long long)inflight, (unsigned long long)mapped,
				       (unsigned long long)resident, (unsigned long long)p.h.updated_ns,
				       (unsigned long long)p.h.updates);
			}
			if (p.why[0]) {
				fputs(", \"why\": ", stdout);
				json_str(stdout, p.why);
			}
			fputc('}', stdout);
		} else {
			char m[32], r[32], age[32];
			scaled(m, sizeof(m), (double)mapped, 1024, "B");
			scaled(r, sizeof(r), (double)resident, 1024, "B");
			age_str(age, sizeof(age), p.h.updated_ns);
			if (data)
				printf("%-8d %-20s %6u %12llu %10s %10s %8s  %s%s%s\n", p.pid, p.h.name, p.n,
				       (unsigned long long)inflight, m, r, age, status_names[p.status],
				       p.why[0] ? ": " : "", p.why);
			else
				printf("%-8d %-20s %6s %12s %10s %10s %8s  %s: %s\n", p.pid, "?", "-", "-", "-", "-", "-",
				       status_names[p.status], p.why);
		}
		proc_free(&p);
	}
	if (json)
		fputs(n ? "\n]}\n" : "]}\n", stdout);
	else if (stale)
		printf("\n%d segment%s of processes that are gone: 'iopool-top --clean' removes %s\n", stale,
		       stale == 1 ? "" : "s", stale == 1 ? "it" : "them");
	return 0;
}

/* Remove the segments of processes that no longer run (only pid's when
 * pid > 0). Returns the exit status. */
static int clean(int pid)
{
	static int pids[MAX_PROCS];
	int n = pid > 0 ? 1 : list_pids(pids, MAX_PROCS), removed = 0, rc = 0;
	if (pid > 0)
		pids[0] = pid;
	for (int i = 0; i < n; i++) {
		struct proc p;
		char name[64];
		proc_read(pids[i], &p);
		snprintf(name, sizeof(name), "%s%d", IOP_SHM_PREFIX, pids[i]);
		if (p.alive) {
			if (pid > 0) {
				fprintf(stderr, "iopool-top: process %d runs: its segment stays\n", pid);
				rc = 1;
			}
		} else if (shm_unlink(name) == 0) {
			printf("removed %s%s (pid %d%s%s, %s)\n", IOP_SHM_DIR, name, pids[i],
			       p.status != ST_BAD ? ", " : "", p.status != ST_BAD ? p.h.name : "",
			       p.why[0] ? p.why : "the process is gone");
			removed++;
		} else {
			fprintf(stderr, "iopool-top: cannot remove %s%s: %s\n", IOP_SHM_DIR, name, strerror(errno));
			rc = 1;
		}
		proc_free(&p);
	}
	if (pid <= 0 && removed == 0)
		printf("no stale segments\n");
	return rc;
}

/* ---- the pool view ----------------------------------------------------------- */

enum col {
	C_NAME, C_SIZE, C_TOTAL, C_INFLIGHT, C_USE, C_CACHED, C_DEPOT, C_FREE,
	C_CHUNKS, C_MAPPED, C_RESIDENT, C_ALLOCS, C_RATE, C_SLOW, C_FAIL, NCOLS
};

static const struct {
	const char *head; /* the heading */
	const char *opt;  /* its --sort name */
	char key;         /* the key that sorts by it */
	int width;
	const char *what;
} cols[NCOLS] = {
	[C_NAME] = { "NAME", "name", 'n', -24, "pool name" },
	[C_SIZE] = { "SIZE", "size", 's', 8, "bytes per object" },
	[C_TOTAL] = { "TOTAL", "total", 't', 10, "objects in mapped chunks" },
	[C_INFLIGHT] = { "INFLIGHT", "inflight", 'i', 10, "objects handed out" },
	[C_USE] = { "USE", "use", 'u', 5, "in flight / total" },
	[C_CACHED] = { "CACHED", "cached", 'c', 9, "objects in threads' magazines" },
	[C_DEPOT] = { "DEPOT", "depot", 'd', 9, "objects in the depot" },
	[C_FREE] = { "FREE", "free", 'f', 10, "objects free in chunks" },
	[C_CHUNKS] = { "CHUNKS", "chunks", 'k', 7, "chunks mapped" },
	[C_MAPPED] = { "MAPPED", "mapped", 'm', 8, "bytes mapped" },
	[C_RESIDENT] = { "RESIDENT", "resident", 'e', 8, "bytes of it in memory (mincore)" },
	[C_ALLOCS] = { "ALLOCS", "allocs", 'a', 12, "allocations so far" },
	[C_RATE] = { "ALLOC/S", "rate", 'r', 8, "allocations per second since the last screen" },
	[C_SLOW] = { "SLOW", "slow", 'w', 6, "allocations that took the slow path" },
	[C_FAIL] = { "FAIL", "fail", 'x', 6, "failed allocations" },
};

struct row {
	struct iop_shm_record r;
	double rate;     /* < 0: not known */
	uint32_t folded; /* > 0: the heap's row, summing this many classes */
	bool indent;     /* a heap class listed under the heap's row */
};

/* The columns left to right; NAME stays, the others scroll sideways when
 * the terminal is too narrow for all of them. The order puts what a person
 * looks for first (how much is in use, how much memory, how busy) so that
 * an 80-column terminal shows it without scrolling. */
static const enum col order[NCOLS] = {
	C_NAME, C_SIZE, C_INFLIGHT, C_TOTAL, C_USE, C_MAPPED, C_RESIDENT, C_RATE, C_ALLOCS,
	C_SLOW, C_FAIL, C_CACHED, C_DEPOT, C_FREE, C_CHUNKS,
};

static enum col sort_col = C_MAPPED;
static bool sort_rev; /* against the column's natural order */

/* Names compared with their digit runs as numbers, so that heap-104 comes
 * before heap-1024 and pool9 before pool10. */
static int name_cmp(const char *a, const char *b)
{
	while (*a && *b) {
		if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
			while (*a == '0' && isdigit((unsigned char)a[1]))
				a++;
			while (*b == '0' && isdigit((unsigned char)b[1]))
				b++;
			size_t la = 0, lb = 0;
			while (isdigit((unsigned char)a[la]))
				la++;
			while (isdigit((unsigned char)b[lb]))
				lb++;
			if (la != lb)
				return la < lb ? -1 : 1;
			int d = memcmp(a, b, la);
			if (d)
				return d < 0 ? -1 : 1;
			a += la;
			b += lb;
			continue;
		}
		if (*a != *b)
			return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
		a++;
		b++;
	}
	return (*a != 0) - (*b != 0);
}

/* One of the size-class heap's pools: "heap-" and digits. */
static bool is_heap_class(const char *name)
{
	if (strncmp(name, "heap-", 5) != 0 || !name[5])
		return false;
	for (const char *c = name + 5; *c; c++)
		if (!isdigit((unsigned char)*c))
			return false;
	return true;
}

static double value(const struct row *w, enum col c)
{
	const struct iop_shm_record *r = &w->r;
	double allocs = (double)(r->alloc_fast + r->alloc_slow);
	switch (c) {
	case C_SIZE: return (double)r->obj_size;
	case C_TOTAL: return (double)r->total;
	case C_INFLIGHT: return (double)r->in_flight;
	case C_USE: return r->total ? 100.0 * (double)r->in_flight / (double)r->total : 0;
	case C_CACHED: return (double)r->cached;
	case C_DEPOT: return (double)r->depot;
	case C_FREE: return (double)r->slab_free;
	case C_CHUNKS: return (double)r->chunks;
	case C_MAPPED: return (double)r->bytes_mapped;
	case C_RESIDENT: return (double)r->bytes_resident;
	case C_ALLOCS: return allocs;
	case C_RATE: return w->rate;
	case C_SLOW: return allocs ? 100.0 * (double)r->alloc_slow / allocs : 0;
	case C_FAIL: return (double)r->alloc_fail;
	default: return 0;
	}
}

/* Names ascend, numbers descend (the biggest first, as slabtop does);
 * ties by name. */
static int cmp_rows(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	int by_name = name_cmp(x->r.name, y->r.name), d;
	if (sort_col == C_NAME) {
		d = by_name;
	} else {
		double u = value(x, sort_col), v = value(y, sort_col);
		d = (u < v) - (u > v);
	}
	if (sort_rev)
		d = -d;
	return d ? d : by_name;
}

static void cell(char *buf, size_t len, const struct row *w, enum col c)
{
	double v = value(w, c);
	switch (c) {
	case C_NAME:
		snprintf(buf, len, "%s%s", w->indent ? "  " : "", w->r.name);
		break;
	case C_SIZE:
		if (w->folded)
			snprintf(buf, len, "-"); /* classes of every size */
		else
			snprintf(buf, len, "%.0f", v);
		break;
	case C_MAPPED:
	case C_RESIDENT:
		scaled(buf, len, v, 1024, "");
		break;
	case C_USE:
		snprintf(buf, len, "%.0f%%", v);
		break;
	case C_SLOW:
		snprintf(buf, len, "%.1f%%", v);
		break;
	case C_RATE:
		if (v < 0)
			snprintf(buf, len, "-");
		else
			scaled(buf, len, v, 1000, "");
		break;
	default:
		snprintf(buf, len, "%.0f", v);
		break;
	}
}

/* A screen is built in memory, line by line, then written at once. */
struct screen {
	char *buf;
	size_t len, cap;
	int cols;     /* truncate lines to this width; 0: do not */
	int rows;     /* stop after this many lines; 0: do not */
	int lines;
	bool ansi;    /* clear each line's tail */
};

static void put_line(struct screen *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_line(struct screen *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	if (s->rows && s->lines >= s->rows)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (s->cols > 0 && (int)strlen(line) > s->cols)
		line[s->cols] = '\0';
	size_t need = s->len + strlen(line) + 8;
	if (need > s->cap) {
		s->cap = need * 2;
		s->buf = realloc(s->buf, s->cap);
		if (!s->buf) {
			perror("iopool-top");
			exit(1);
		}
	}
	s->len += (size_t)sprintf(s->buf + s->len, "%s%s\n", line, s->ansi ? "\033[K" : "");
	s->lines++;
}

/* Rates from the previous sample of the same pool (same id and name). */
static void set_rates(struct row *rows, uint32_t n, const struct proc *prev, const struct proc *cur)
{
	double dt = prev && cur->h.updated_ns > prev->h.updated_ns
			    ? (double)(cur->h.updated_ns - prev->h.updated_ns) / 1e9 : 0;
	for (uint32_t i = 0; i < n; i++) {
		rows[i].rate = -1;
		for (uint32_t j = 0; dt > 0 && j < prev->n; j++) {
			const struct iop_shm_record *o = &prev->rec[j], *r = &rows[i].r;
			if (o->id != r->id || strcmp(o->name, r->name) != 0)
				continue;
			uint64_t a = r->alloc_fast + r->alloc_slow, b = o->alloc_fast + o->alloc_slow;
			rows[i].rate = a >= b ? (double)(a - b) / dt : -1;
		}
	}
}

/* What the person at the terminal chose: scrolling, filter, the heap. */
struct view {
	int top;             /* first row shown */
	int hoff;            /* columns scrolled off to the left (after NAME) */
	int page;            /* rows that fit, from the last screen */
	int shown_from, shown_to, ncols_shown; /* columns of the last screen */
	bool heap_open;      /* the heap's classes listed under its row */
	char filter[IOP_SHM_NAME_MAX]; /* pools whose name holds this */
	bool editing;        /* typing a filter after '/' */
	char edit[IOP_SHM_NAME_MAX];
	double rate;         /* the process's allocations per second (all
	                        pools, whatever the filter); < 0: not known */
};

/*
 * The rows to show, in order: the pools whose name holds the filter (any
 * case), with the heap's size classes folded into one row (their sums)
 * that takes its place in the sort; when the view opens the heap, its
 * classes follow that row, indented, in the same order. A program that
 * uses the heap has up to 116 classes, which would push its own pools off
 * the screen. Returns how many rows *out holds (malloc'd).
 */
static uint32_t build_rows(const struct proc *cur, const struct proc *prev, struct view *v,
			   struct row **out)
{
	uint32_t n = cur->n, napp = 0, nheap = 0;
	struct row *all = calloc(n + 1, sizeof(*all)), *rows = calloc(n + 1, sizeof(*rows));
	if (!all || !rows) {
		perror("iopool-top");
		exit(1);
	}
	for (uint32_t i = 0; i < n; i++)
		all[i].r = cur->rec[i];
	set_rates(all, n, prev, cur);
	v->rate = -1;
	for (uint32_t i = 0; i < n; i++)
		if (all[i].rate >= 0)
			v->rate = (v->rate < 0 ? 0 : v->rate) + all[i].rate;

	/* Applications' pools first in `rows`, the heap's classes at its end. */
	struct row sum = { .rate = -1 };
	for (uint32_t i = 0; i < n; i++) {
		if (v->filter[0] && !strcasestr(all[i].r.name, v->filter))
			continue;
		if (!is_heap_class(all[i].r.name)) {
			rows[napp++] = all[i];
			continue;
		}
		rows[n - nheap++] = all[i];
		const struct iop_shm_record *r = &all[i].r;
		sum.r.total += r->total;
		sum.r.in_flight += r->in_flight;
		sum.r.cached += r->cached;
		sum.r.depot += r->depot;
		sum.r.slab_free += r->slab_free;
		sum.r.chunks += r->chunks;
		sum.r.bytes_mapped += r->bytes_mapped;
		sum.r.bytes_resident += r->bytes_resident;
		sum.r.alloc_fast += r->alloc_fast;
		sum.r.alloc_slow += r->alloc_slow;
		sum.r.alloc_fail += r->alloc_fail;
		if (all[i].rate >= 0)
			sum.rate = (sum.rate < 0 ? 0 : sum.rate) + all[i].rate;
	}
	free(all);
	struct row *classes = rows + n + 1 - nheap;
	if (nheap) {
		sum.folded = nheap;
		snprintf(sum.r.name, sizeof(sum.r.name), "heap (%u class%s)", nheap, nheap == 1 ? "" : "es");
		rows[napp++] = sum;
	}
	qsort(rows, napp, sizeof(*rows), cmp_rows);
	if (!v->heap_open || !nheap) {
		*out = rows;
		return napp;
	}
	/* Open: the classes, sorted, right after the heap's row. */
	struct row *tmp = malloc(nheap * sizeof(*tmp)), *res = calloc(napp + nheap, sizeof(*res));
	if (!tmp || !res) {
		perror("iopool-top");
		exit(1);
	}
	memcpy(tmp, classes, nheap * sizeof(*tmp));
	qsort(tmp, nheap, sizeof(*tmp), cmp_rows);
	uint32_t k = 0;
	for (uint32_t i = 0; i < napp; i++) {
		res[k++] = rows[i];
		if (rows[i].folded) {
			for (uint32_t j = 0; j < nheap; j++) {
				res[k] = tmp[j];
				res[k++].indent = true;
			}
		}
	}
	free(tmp);
	free(rows);
	*out = res;
	return k;
}

/* Format one row (or the heading when w is NULL) into line with the
 * columns `shown` (indexes into order[]), the name width name_w. */
static void format_row(char *line, size_t len, const struct row *w, const int *shown, int nshown, int name_w)
{
	char c[64];
	size_t at = 0;
	for (int k = 0; k < nshown && at < len; k++) {
		enum col col = order[shown[k]];
		if (w)
			cell(c, sizeof(c), w, col);
		else
			snprintf(c, sizeof(c), "%s", cols[col].head);
		if (col == C_NAME) {
			/* Names longer than the column end in '~'. */
			if ((int)strlen(c) > name_w && name_w > 1) {
				c[name_w - 1] = '~';
				c[name_w] = '\0';
			}
			at += (size_t)snprintf(line + at, len - at, "%-*s", name_w, c);
		} else {
			at += (size_t)snprintf(line + at, len - at, " %*s", cols[col].width, c);
		}
	}
}

/* Which columns fit in width (0: all of them): NAME, then from the
 * (hoff+1)th on, as many whole columns as fit. Returns how many. */
static int fit_columns(int width, int name_w, int hoff, int *shown)
{
	int n = 0, used = name_w;
	shown[n++] = 0;
	for (int k = 1 + hoff; k < NCOLS; k++) {
		int w = 1 + cols[order[k]].width;
		if (width > 0 && used + w > width)
			break;
		shown[n++] = k;
		used += w;
	}
	return n;
}

static void render(struct screen *s, const struct proc *p, const struct row *rows, uint32_t nrows,
		   struct view *v, bool interactive)
{
	char up[32], age[32], mapped[32], resident[32], rate[32];
	uint64_t total = 0, inflight = 0, bytes = 0, res = 0, allocs = 0, slow = 0, fails = 0;
	uint32_t per_cpu = 0;
	/* The totals are the process's, whatever the filter hides. */
	for (uint32_t i = 0; i < p->n; i++) {
		const struct iop_shm_record *x = &p->rec[i];
		per_cpu += x->cache_mode == TOP_CACHE_MODE_CPU;
		total += x->total;
		inflight += x->in_flight;
		bytes += x->bytes_mapped;
		res += x->bytes_resident;
		allocs += x->alloc_fast + x->alloc_slow;
		slow += x->alloc_slow;
		fails += x->alloc_fail;
	}
	age_str(up, sizeof(up), p->h.published_ns);
	age_str(age, sizeof(age), p->h.updated_ns);
	scaled(mapped, sizeof(mapped), (double)bytes, 1024, "B");
	scaled(resident, sizeof(resident), (double)res, 1024, "B");
	if (v->rate >= 0)
		scaled(rate, sizeof(rate), v->rate, 1000, "");
	else
		snprintf(rate, sizeof(rate), "-");

	put_line(s, "iopool-top - pid %d (%s), %u pools, updated %s ago (update %llu, every %u ms), "
		 "publishing for %s", p->pid, p->h.name, p->n, age, (unsigned long long)p->h.updates,
		 p->h.interval_ms, up);
	if (p->status != ST_LIVE)
		put_line(s, " %s: %s%s", p->status == ST_STALE ? "STALE" : "TORN", p->why,
			 p->alive ? "" : "; these are its last numbers (iopool-top --clean removes them)");
	put_line(s, " Objects in flight / total : %llu / %llu (%.1f%%)", (unsigned long long)inflight,
		 (unsigned long long)total, total ? 100.0 * (double)inflight / (double)total : 0.0);
	/* Which caches serve the pools (iop_cache_mode(); checked pools use
	 * per-thread caches in either mode). */
	/* Resident beside mapped: the heap maps a chunk per size class, of
	 * which a few pages may be all that is touched (README, "Mapped and
	 * resident"). */
	put_line(s, " Memory mapped / resident  : %s / %s; caches: %u pools per CPU, %u per thread", mapped,
		 resident, per_cpu, p->n - per_cpu);
	put_line(s, " Allocations               : %llu (%s/s), slow path %.2f%%, failed %llu",
		 (unsigned long long)allocs, rate, allocs ? 100.0 * (double)slow / (double)allocs : 0.0,
		 (unsigned long long)fails);
	const char *dir = (sort_col == C_NAME) != sort_rev ? "ascending" : "descending";
	if (interactive)
		put_line(s, " Sorted by %s (%s); sort keys: n s t i u c d f k m e a r w x (again: reverse)",
			 cols[sort_col].head, dir);
	else
		put_line(s, " Sorted by %s (%s)", cols[sort_col].head, dir);
	if (v->filter[0])
		put_line(s, " Filter: '%s' (%u row%s)", v->filter, nrows, nrows == 1 ? "" : "s");
	put_line(s, "%s", "");

	/* The name column: as wide as the longest name shown, 10 to 24. */
	int name_w = 24, shown[NCOLS];
	if (s->cols > 0) {
		name_w = 10;
		for (uint32_t i = 0; i < nrows; i++) {
			int l = (int)strlen(rows[i].r.name) + (rows[i].indent ? 2 : 0);
			name_w = l > name_w ? l : name_w;
		}
		name_w = name_w > 24 ? 24 : name_w;
		if (name_w > s->cols)
			name_w = s->cols;
	}
	if (v->hoff > NCOLS - 2)
		v->hoff = NCOLS - 2;
	int nshown = fit_columns(s->cols, name_w, v->hoff, shown);
	v->shown_from = nshown > 1 ? shown[1] : 0;
	v->shown_to = shown[nshown - 1];
	v->ncols_shown = nshown;

	char line[1024];
	format_row(line, sizeof(line), NULL, shown, nshown, name_w);
	put_line(s, "%s", line);

	/* Rows: all of them, or (on a terminal) the page from v->top, and a
	 * status line at the bottom. */
	int area = s->rows > 0 ? s->rows - s->lines - (interactive ? 1 : 0) : (int)nrows;
	if (area < 1)
		area = 1;
	v->page = area;
	if (v->top > (int)nrows - area)
		v->top = (int)nrows - area;
	if (v->top < 0)
		v->top = 0;
	for (int i = v->top; i < (int)nrows && i < v->top + area; i++) {
		format_row(line, sizeof(line), &rows[i], shown, nshown, name_w);
		put_line(s, "%s", line);
	}
	if (!interactive)
		return;
	while (s->lines < s->rows - 1)
		put_line(s, "%s", "");
	int last = v->top + area < (int)nrows ? v->top + area : (int)nrows;
	if (v->editing)
		put_line(s, "/%s_   (filter by name: Enter applies, Esc cancels, empty clears)", v->edit);
	else
		put_line(s, " rows %d-%d of %u%s  cols %d-%d of %d%s  h heap  / filter  arrows  q quit",
			 nrows ? v->top + 1 : 0, last, nrows, v->top + area < (int)nrows ? " v" : "", v->shown_from,
			 v->shown_to, NCOLS - 1, v->shown_to < NCOLS - 1 ? " >" : "");
}

static void print_json(const struct proc *p, const struct row *rows)
{
	printf("{\"pid\": %d, \"name\": ", p->pid);
	json_str(stdout, p->h.name);
	printf(", \"status\": \"%s\", \"version\": %u, \"published_ns\": %llu, \"updated_ns\": %llu, "
	       "\"updates\": %llu, \"interval_ms\": %u",
	       status_names[p->status], p->h.version, (unsigned long long)p->h.published_ns,
	       (unsigned long long)p->h.updated_ns, (unsigned long long)p->h.updates, p->h.interval_ms);
	if (p->why[0]) {
		fputs(", \"why\": ", stdout);
		json_str(stdout, p->why);
	}
	fputs(", \"pools\": [", stdout);
	for (uint32_t i = 0; i < p->n; i++) {
		const struct iop_shm_record *r = &rows[i].r;
		fputs(i ? ",\n  {\"name\": " : "\n  {\"name\": ", stdout);
		json_str(stdout, r->name);
		printf(", \"kind\": \"pool\", \"id\": %u, \"flags\": %u", r->id, r->flags);
#define JSON_FIELD(t, n) printf(", \"" #n "\": %llu", (unsigned long long)r->n);
		IOP_POOL_STATS_FIELDS(JSON_FIELD)
#undef JSON_FIELD
		fputc('}', stdout);
	}
	fputs(p->n ? "\n]}\n" : "]}\n", stdout);
}

/* ---- the terminal -------------------------------------------------------------- */

static struct termios saved_tty;
static bool tty_raw, alt_screen;
static volatile sig_atomic_t quit_signal;

static void restore_tty(void)
{
	if (alt_screen) {
		fputs("\033[?25h\033[?1049l", stdout);
		fflush(stdout);
		alt_screen = false;
	}
	if (tty_raw) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
		tty_raw = false;
	}
}

static void on_signal(int sig)
{
	quit_signal = sig;
}

static void on_winch(int sig)
{
	(void)sig; /* only interrupts poll(), which redraws */
}

static void term_size(int *rows, int *cols_)
{
	struct winsize ws;
	*rows = 0;
	*cols_ = 0;
	if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) {
		*rows = ws.ws_row;
		*cols_ = ws.ws_col;
	}
}

/* A sort key: pick the column, or reverse it when it is already picked. */
static void sort_key(int ch)
{
	for (int k = 0; k < NCOLS; k++) {
		if (cols[k].key != ch)
			continue;
		sort_rev = sort_col == (enum col)k && !sort_rev;
		sort_col = (enum col)k;
	}
}

/* Input as read from the terminal: keys, and the escape sequences of the
 * arrows, PgUp/PgDn and Home/End (xterm's, which tmux and the Linux
 * console send too). Returns false on q. */
static bool on_input(struct view *v, const char *in, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)in[i];
		if (ch == 27 && i + 2 < n && (in[i + 1] == '[' || in[i + 1] == 'O')) {
			/* ESC [ A, ESC O A, ESC [ 5 ~ ... */
			size_t j = i + 2;
			int num = 0;
			while (j < n && isdigit((unsigned char)in[j]))
				num = num * 10 + (in[j++] - '0');
			char fin = j < n ? in[j] : 0;
			i = j;
			if (v->editing)
				continue;
			switch (fin) {
			case 'A': v->top--; break;
			case 'B': v->top++; break;
			case 'C': v->hoff += v->shown_to < NCOLS - 1; break;
			case 'D': v->hoff -= v->hoff > 0; break;
			case 'H': v->top = 0; break;
			case 'F': v->top = INT32_MAX / 2; break;
			case '~':
				if (num == 5)
					v->top -= v->page;
				else if (num == 6)
					v->top += v->page;
				else if (num == 1 || num == 7)
					v->top = 0;
				else if (num == 4 || num == 8)
					v->top = INT32_MAX / 2;
				break;
			default: break;
			}
			continue;
		}
		if (v->editing) {
			size_t l = strlen(v->edit);
			if (ch == 27) {
				v->editing = false;
			} else if (ch == '\r' || ch == '\n') {
				snprintf(v->filter, sizeof(v->filter), "%s", v->edit);
				v->editing = false;
				v->top = 0;
			} else if (ch == 127 || ch == 8) {
				if (l)
					v->edit[l - 1] = '\0';
			} else if (isprint(ch) && l + 1 < sizeof(v->edit)) {
				v->edit[l] = (char)ch;
				v->edit[l + 1] = '\0';
			}
			continue;
		}
		switch (ch) {
		case 'q':
		case 'Q':
			return false;
		case '/':
			v->editing = true;
			snprintf(v->edit, sizeof(v->edit), "%s", v->filter);
			break;
		case 'h':
			v->heap_open = !v->heap_open;
			break;
		case ' ':
			v->top += v->page;
			break;
		case '<':
			v->hoff -= v->hoff > 0;
			break;
		case '>':
			v->hoff += v->shown_to < NCOLS - 1;
			break;
		default:
			sort_key(ch);
			break;
		}
	}
	return true;
}

/* ---- main ------------------------------------------------------------------- */

/* The pid of the process named by arg (a pid, or a name that one live
 * publishing process has); -1 with a message when none or several. */
static int find_process(const char *arg)
{
	static int pids[MAX_PROCS];
	char *end;
	long v = strtol(arg, &end, 10);
	if (*arg && !*end && v > 0 && v <= INT32_MAX)
		return (int)v;

	int n = list_pids(pids, MAX_PROCS), found = -1, matches = 0;
	char others[256] = "";
	for (int i = 0; i < n; i++) {
		struct proc p;
		proc_read(pids[i], &p);
		if (p.status == ST_LIVE && strcmp(p.h.name, arg) == 0) {
			size_t l = strlen(others);
			snprintf(others + l, sizeof(others) - l, "%s%d", matches ? ", " : "", p.pid);
			found = p.pid;
			matches++;
		}
		proc_free(&p);
	}
	if (matches == 0)
		fprintf(stderr, "iopool-top: no live process named '%s' publishes statistics (iopool-top lists "
				"those that do)\n", arg);
	else if (matches > 1)
		fprintf(stderr, "iopool-top: %d processes are named '%s' (pids %s): give a pid\n", matches, arg,
			others);
	return matches == 1 ? found : -1;
}

static void usage(FILE *f)
{
	fputs("usage: iopool-top [options] [PID|NAME]\n"
	      "  Without PID or NAME: list the processes that publish iopool statistics.\n"
	      "  With one: show its pools like slabtop, refreshed every second.\n"
	      "  -o, --once            print one screen to stdout and exit\n"
	      "  -j, --json            machine-readable output (one screen; implies --once)\n"
	      "  -s, --sort COLUMN     sort by COLUMN (default mapped):\n", f);
	for (int k = 0; k < NCOLS; k++)
		fprintf(f, "                          %-9s (key %c) %s\n", cols[k].opt, cols[k].key, cols[k].what);
	fputs("  -r, --reverse         reverse the order (names ascend, numbers descend by default;\n"
	      "                        numbers inside names compare as numbers: heap-104 < heap-1024)\n"
	      "  -f, --filter TEXT     show only the pools whose name holds TEXT (any case)\n"
	      "  -H, --heap-classes    list the heap's size classes (heap-*) under its row, which\n"
	      "                        otherwise sums them\n"
	      "  -d, --delay SECONDS   refresh period of the view (default 1; fractions allowed)\n"
	      "  -n, --iterations N    stop the view after N screens\n"
	      "      --clean [PID]     remove the segments of processes that are gone (or only PID's)\n"
	      "  -h, --help            this text\n"
	      "Keys in the view: a column's key sorts by it (pressed again: reverses); h opens or\n"
	      "folds the heap's row; / types a filter (Enter applies, Esc cancels, empty clears);\n"
	      "Up, Down, PgUp, PgDn (or space), Home, End scroll the rows; Left, Right (or < >)\n"
	      "scroll the columns that do not fit the terminal's width; q quits.\n"
	      "A process is stale when it is gone, is a zombie (killed, not reaped), or has not\n"
	      "updated its segment for 5 of its intervals (2 s at least); --clean removes those\n"
	      "segments, except a stopped process's (it publishes again when continued).\n"
	      "Exit status: 0; 1 when the process is not found, its segment cannot be read or it is\n"
	      "stale (its last numbers are still shown); 2 on a usage error.\n", f);
}

static int show(int pid, bool once, bool json, double delay, long iterations, struct view *v)
{
	struct proc prev = { 0 }, cur;
	bool have_prev = false, interactive = false;
	struct screen s = { 0 };
	int rc = 0;

	proc_read(pid, &cur);
	if (cur.status == ST_BAD) {
		fprintf(stderr, "iopool-top: process %d: %s\n", pid, cur.why);
		proc_free(&cur);
		return 1;
	}
	if (!once) {
		s.ansi = true;
		if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_tty) == 0) {
			struct termios raw = saved_tty;
			raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
			raw.c_cc[VMIN] = 0;
			raw.c_cc[VTIME] = 0;
			tty_raw = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
			interactive = tty_raw;
		}
		if (isatty(STDOUT_FILENO)) {
			fputs("\033[?1049h\033[?25l", stdout);
			alt_screen = true;
		}
		atexit(restore_tty);
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		signal(SIGHUP, on_signal);
		struct sigaction sa = { .sa_handler = on_winch };
		sigaction(SIGWINCH, &sa, NULL); /* no SA_RESTART: poll() returns */
	}

	for (long screen = 0;; screen++) {
		if (cur.status != ST_LIVE)
			rc = 1;
		if (json) {
			/* Every pool as published: no filter, no folding. */
			struct row *rows = calloc(cur.n ? cur.n : 1, sizeof(*rows));
			if (!rows) {
				perror("iopool-top");
				return 1;
			}
			for (uint32_t i = 0; i < cur.n; i++)
				rows[i].r = cur.rec[i];
			qsort(rows, cur.n, sizeof(*rows), cmp_rows);
			print_json(&cur, rows);
			free(rows);
		} else {
			struct row *rows;
			uint32_t nrows = build_rows(&cur, have_prev ? &prev : NULL, v, &rows);
			s.len = 0;
			s.lines = 0;
			term_size(&s.rows, &s.cols);
			if (s.rows > 0)
				s.rows--; /* the cursor's line */
			render(&s, &cur, rows, nrows, v, interactive);
			if (!once)
				fputs("\033[H", stdout);
			fwrite(s.buf, 1, s.len, stdout);
			if (!once)
				fputs("\033[J", stdout);
			free(rows);
		}
		fflush(stdout);
		if (once || json || (iterations > 0 && screen + 1 >= iterations))
			break;

		/* Wait for the delay, or a key, or a signal. */
		uint64_t until = clock_ns(CLOCK_MONOTONIC) + (uint64_t)(delay * 1e9);
		bool redraw = false;
		while (!redraw && !quit_signal) {
			uint64_t t = clock_ns(CLOCK_MONOTONIC);
			if (t >= until)
				break;
			struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
			int ms = (int)((until - t + 999999) / 1000000);
			int r = poll(&pfd, interactive ? 1 : 0, ms);
			if (r < 0 && errno == EINTR) {
				redraw = true; /* a resize */
			} else if (r > 0) {
				/* A key, or a whole escape sequence (one read). */
				char in[64];
				ssize_t got = read(STDIN_FILENO, in, sizeof(in));
				if (got > 0) {
					if (!on_input(v, in, (size_t)got))
						quit_signal = -1;
					redraw = true;
				}
			}
		}
		if (quit_signal)
			break;
		if (redraw)
			continue; /* the same sample, sorted, scrolled or resized anew */
		proc_free(&prev);
		prev = cur;
		have_prev = true;
		proc_read(pid, &cur);
		if (cur.status == ST_BAD) {
			restore_tty();
			printf("process %d stopped publishing (%s)\n", pid, cur.why);
			proc_free(&cur);
			proc_free(&prev);
			free(s.buf);
			return 0;
		}
	}
	restore_tty();
	proc_free(&cur);
	proc_free(&prev);
	free(s.buf);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "once", no_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },
		{ "sort", required_argument, NULL, 's' },
		{ "reverse", no_argument, NULL, 'r' },
		{ "delay", required_argument, NULL, 'd' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "clean", no_argument, NULL, 'C' },
		{ "filter", required_argument, NULL, 'f' },
		{ "heap-classes", no_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool once = false, json = false, do_clean = false;
	double delay = 1.0;
	long iterations = 0;
	int c;

	struct view view = { 0 };
	while ((c = getopt_long(argc, argv, "ojs:rd:n:f:Hh", opts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'o':
			once = true;
			break;
		case 'j':
			json = true;
			break;
		case 's': {
			int k;
			for (k = 0; k < NCOLS && strcmp(cols[k].opt, optarg) != 0; k++)
				;
			if (k == NCOLS) {
				fprintf(stderr, "iopool-top: no column '%s' (--help lists them)\n", optarg);
				return 2;
			}
			sort_col = (enum col)k;
			break;
		}
		case 'r':
			sort_rev = true;
			break;
		case 'd':
			delay = strtod(optarg, &end);
			if (*end || !(delay >= 0.01 && delay <= 3600)) {
				fprintf(stderr, "iopool-top: --delay wants seconds from 0.01 to 3600, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'n':
			iterations = strtol(optarg, &end, 10);
			if (*end || iterations <= 0) {
				fprintf(stderr, "iopool-top: --iterations wants a positive number, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'C':
			do_clean = true;
			break;
		case 'f':
			if (strlen(optarg) >= sizeof(view.filter)) {
				fprintf(stderr, "iopool-top: --filter wants at most %zu characters (a pool name's "
						"length), not '%s'\n", sizeof(view.filter) - 1, optarg);
				return 2;
			}
			snprintf(view.filter, sizeof(view.filter), "%s", optarg);
			break;
		case 'H':
			view.heap_open = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind > 1) {
		usage(stderr);
		return 2;
	}
	const char *target = optind < argc ? argv[optind] : NULL;

	if (do_clean) {
		int pid = 0;
		if (target) {
			char *end;
			long v = strtol(target, &end, 10);
			if (*end || v <= 0 || v > INT32_MAX) {
				fprintf(stderr, "iopool-top: --clean takes a pid, not '%s'\n", target);
				return 2;
			}
			pid = (int)v;
		}
		return clean(pid);
	}
	if (!target)
		return list_processes(json);
	int pid = find_process(target);
	if (pid < 0)
		return 1;
	return show(pid, once || json, json, delay, iterations, &view);
}
