/* SPDX-License-Identifier: MIT */
/*
 * iop-udp-rx: a UDP receive path on iopool buffers, page_pool style.
 *
 * A load generator thread floods 127.0.0.1 with UDP datagrams (sendmmsg,
 * batches of 64); the receiving thread takes them in, checksums every
 * payload and drops it (the "early drop" of the netdev BoF), and recycles
 * the buffer. Three receive paths run in one invocation, each with a fresh
 * socket and a fresh generator, so the table compares them on one machine
 * at one moment:
 *
 *   uring-pool     io_uring multishot recv (io_uring_prep_recv_multishot)
 *                  selecting from a provided buffer ring whose buffers are
 *                  iopool buffers (IOP_F_REFCOUNT pool). Each completion's
 *                  buffer is put (iop_buf_put) and its ring slot refilled
 *                  with iop_buf_alloc: the buffer just put comes straight
 *                  back from the thread's cache. The pool's chunks are
 *                  registered with the ring as fixed buffers once, by the
 *                  pool's map hook, and stay registered however often their
 *                  buffers recycle (checked: map calls == chunks).
 *   uring-malloc   the same io_uring path, each buffer malloc()ed when it
 *                  goes on the ring and free()d after processing: the
 *                  baseline.
 *   recvmmsg-pool  a plain recvmmsg loop (batches of 64) into pool buffers
 *                  (iop_buf_alloc_bulk, iop_buf_put each), no io_uring.
 *
 * Allocator share: the put+alloc (free+malloc) of each refill batch is
 * bracketed by a pair of cheap clock reads (rdtsc on x86-64, calibrated
 * against CLOCK_MONOTONIC over the run, with the cost of an empty pair
 * subtracted per batch; CLOCK_MONOTONIC elsewhere), and compared with the
 * receiving thread's CPU time (CLOCK_THREAD_CPUTIME_ID, kernel time of its
 * system calls and io_uring task work included).
 *
 * Exit status: 0; 1 when a check failed (fewer than half the packets
 * arrived in uring-pool mode, none arrived in another mode, the audit
 * failed, map calls != chunks, unmap calls != map calls, a buffer leaked,
 * the pool would not be destroyed); 2 on a usage error; 77 when io_uring,
 * provided buffer rings, sparse registered buffers or multishot recv are
 * not available here.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <liburing.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <iopool.h>

#define OBJ_SIZE 2048u        /* bytes per pool buffer and per ring buffer */
#define PAYLOAD_MAX 1472u     /* a full 1500-byte Ethernet frame's UDP payload */
#define PAYLOAD_MIN 8u        /* room for the sequence number */
#define SEND_BATCH 64u        /* datagrams per sendmmsg */
#define RECV_BATCH 64u        /* datagrams per recvmmsg */
#define CQE_BATCH 256u        /* completions handled per refill batch */
#define REG_SLOTS 64u         /* sparse registered-buffer table (chunks) */
#define BGID 7u               /* provided buffer group */
#define UD_RECV 1u            /* user_data of the multishot recv */
#define UD_CANCEL 2u
#define UD_FIXED 3u
#define MAX_ERRORS 1000u      /* failed completions before a mode gives up */
#define EXIT_SKIP 77

enum mode { M_URING_POOL, M_URING_MALLOC, M_RECVMMSG_POOL, M_COUNT };
static const char *const mode_name[M_COUNT] = { "uring-pool", "uring-malloc", "recvmmsg-pool" };

struct opts {
	uint64_t packets;
	unsigned payload;
	unsigned ring_entries;
	unsigned quiet_ms;
	unsigned deadline_s;
	int rcvbuf;
	unsigned modes; /* bit per enum mode */
	const char *json;
	bool verbose;
};

/* ------------------------------------------------------------------ */
/* Clocks                                                              */
/* ------------------------------------------------------------------ */

static uint64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* The cheap clock around refill batches. */
#if defined(__x86_64__) || defined(__i386__)
#define TICKS_NAME "rdtsc"
static inline uint64_t ticks(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}
#else
#define TICKS_NAME "CLOCK_MONOTONIC"
static inline uint64_t ticks(void)
{
	return mono_ns();
}
#endif

static double g_ticks_per_ns = 1.0; /* startup calibration (deadlines) */
static uint64_t g_pair_ticks;       /* cost of an empty pair of reads */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void calibrate_clock(void)
{
	uint64_t m0 = mono_ns(), t0 = ticks();
	while (mono_ns() - m0 < 20000000u) /* 20 ms */
		;
	uint64_t m1 = mono_ns(), t1 = ticks();
	g_ticks_per_ns = (double)(t1 - t0) / (double)(m1 - m0);
	if (g_ticks_per_ns <= 0)
		g_ticks_per_ns = 1.0;
	enum { N = 1001 };
	static uint64_t d[N];
	for (unsigned i = 0; i < N; i++) {
		uint64_t a = ticks();
		uint64_t b = ticks();
		d[i] = b - a;
	}
	qsort(d, N, sizeof d[0], cmp_u64);
	g_pair_ticks = d[N / 2];
}

static uint64_t ns_to_ticks(uint64_t ns)
{
	return (uint64_t)((double)ns * g_ticks_per_ns);
}

/* ------------------------------------------------------------------ */
/* Processing: checksum the payload, then drop it                      */
/* ------------------------------------------------------------------ */

/* 16-bit ones'-complement sum of the bytes (the Internet checksum's sum). */
static uint16_t csum16(const unsigned char *p, size_t n)
{
	uint64_t s = 0;
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		s += (w & 0xffffffffu) + (w >> 32);
		p += 8;
		n -= 8;
	}
	while (n >= 2) {
		uint16_t h;
		memcpy(&h, p, 2);
		s += h;
		p += 2;
		n -= 2;
	}
	if (n)
		s += *p;
	while (s >> 16)
		s = (s & 0xffffu) + (s >> 16);
	return (uint16_t)s;
}

/* ------------------------------------------------------------------ */
/* Load generator                                                      */
/* ------------------------------------------------------------------ */

struct gen {
	pthread_t th;
	int cpu; /* -1: not pinned */
	uint16_t port;
	uint64_t total;
	unsigned payload;
	uint64_t deadline_ns; /* CLOCK_MONOTONIC */
	_Atomic uint64_t sent;
	_Atomic int done;
	_Atomic int stop;
	int err; /* errno of a fatal send error, 0 if none */
	bool pinned;
	uint64_t t_start, t_end;
};

static void *gen_main(void *arg)
{
	struct gen *g = arg;
	if (g->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(g->cpu, &set);
		g->pinned = pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
	}
	unsigned char *bufs = calloc(SEND_BATCH, g->payload);
	struct mmsghdr *msgs = calloc(SEND_BATCH, sizeof *msgs);
	struct iovec *iov = calloc(SEND_BATCH, sizeof *iov);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	uint64_t sent = 0, seq = 0;
	g->t_start = mono_ns();
	if (!bufs || !msgs || !iov || fd < 0) {
		g->err = errno ? errno : ENOMEM;
		goto out;
	}
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(g->port) };
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100000 }; /* a send never blocks for long */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&to, sizeof to) != 0) {
		g->err = errno;
		goto out;
	}
	for (unsigned i = 0; i < SEND_BATCH; i++) {
		unsigned char *p = bufs + (size_t)i * g->payload;
		for (unsigned j = 0; j < g->payload; j++)
			p[j] = (unsigned char)(j * 7u + 1u);
		iov[i].iov_base = p;
		iov[i].iov_len = g->payload;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	unsigned iter = 0;
	while (sent < g->total) {
		if (atomic_load_explicit(&g->stop, memory_order_relaxed))
			break;
		if ((++iter & 255u) == 0 && mono_ns() > g->deadline_ns)
			break;
		unsigned k = g->total - sent < SEND_BATCH ? (unsigned)(g->total - sent) : SEND_BATCH;
		for (unsigned i = 0; i < k; i++) {
			uint64_t s = seq + i;
			memcpy(bufs + (size_t)i * g->payload, &s, sizeof s);
		}
		int r = sendmmsg(fd, msgs, k, 0);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == ENOBUFS ||
			    errno == ECONNREFUSED) {
				sched_yield();
				continue;
			}
			g->err = errno;
			break;
		}
		sent += (unsigned)r;
		seq += (unsigned)r;
		atomic_store_explicit(&g->sent, sent, memory_order_relaxed);
	}
out:
	g->t_end = mono_ns();
	atomic_store_explicit(&g->sent, sent, memory_order_relaxed);
	atomic_store_explicit(&g->done, 1, memory_order_release);
	if (fd >= 0)
		close(fd);
	free(bufs);
	free(msgs);
	free(iov);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Registration of pool chunks: the map and unmap hooks                */
/* ------------------------------------------------------------------ */

struct reg {
	struct io_uring *ring; /* NULL: count and number the chunks only */
	void *base[REG_SLOTS];
	size_t len[REG_SLOTS];
	uint64_t maps, unmaps;
	int err; /* first failure in a hook */
};

/* Called once per chunk, before any of its buffers is handed out: register
 * the chunk as a fixed buffer in a free slot of the ring's sparse table.
 * The slot is the handle iop_buf_mapping() gives back for any address in
 * the chunk: io_uring_prep_read_fixed(..., buf_index = handle) and friends
 * can then do I/O on the pool's buffers with no per-I/O page pinning. */
static int reg_map(void *arg, void *base, size_t len, uint64_t *handle)
{
	struct reg *r = arg;
	unsigned s = 0;
	while (s < REG_SLOTS && r->base[s])
		s++;
	if (s == REG_SLOTS) {
		if (!r->err)
			r->err = -ENOSPC;
		return -ENOSPC;
	}
	if (r->ring) {
		struct iovec iov = { .iov_base = base, .iov_len = len };
		__u64 tag = 0; /* no completion when the kernel drops it */
		int ret = io_uring_register_buffers_update_tag(r->ring, s, &iov, &tag, 1);
		if (ret < 0) {
			if (!r->err)
				r->err = ret;
			return ret;
		}
	}
	r->base[s] = base;
	r->len[s] = len;
	r->maps++;
	*handle = s;
	return 0;
}

/* Called once per chunk before it goes back to the OS: empty the slot. */
static void reg_unmap(void *arg, void *base, size_t len, uint64_t handle)
{
	struct reg *r = arg;
	r->unmaps++;
	if (handle >= REG_SLOTS || r->base[handle] != base || r->len[handle] != len) {
		fprintf(stderr, "udp_rx: unmap hook: chunk %p+%zu with handle %" PRIu64
			" was not mapped under that handle\n", base, len, handle);
		if (!r->err)
			r->err = -EINVAL;
		return;
	}
	if (r->ring) {
		struct iovec iov = { .iov_base = NULL, .iov_len = 0 };
		__u64 tag = 0;
		int ret = io_uring_register_buffers_update_tag(r->ring, (unsigned)handle, &iov, &tag, 1);
		if (ret < 0) {
			fprintf(stderr, "udp_rx: unmap hook: unregistering slot %" PRIu64 ": %s\n",
				handle, strerror(-ret));
			if (!r->err)
				r->err = ret;
		}
	}
	r->base[handle] = NULL;
	r->len[handle] = 0;
}

static iop_pool_t *make_pool(struct reg *r, const char *name)
{
	struct iop_pool_params p = IOP_POOL_PARAMS_INIT;
	p.name = name;
	p.obj_size = OBJ_SIZE;
	p.flags = IOP_F_REFCOUNT;
	p.map = reg_map;
	p.unmap = reg_unmap;
	p.hook_arg = r;
	iop_pool_t *pool = iop_pool_create(&p);
	if (!pool)
		fprintf(stderr, "udp_rx: iop_pool_create: %s\n", strerror(errno));
	return pool;
}

/* ------------------------------------------------------------------ */
/* Results                                                             */
/* ------------------------------------------------------------------ */

struct result {
	bool ran, failed, skipped;
	char why[160]; /* skip reason */
	uint64_t sent, received, bad_len, bytes;
	uint32_t csum;
	double rx_wall_ns;   /* generator start to the last packet's refill */
	double cpu_ns;       /* receiving thread, whole receive loop */
	double alloc_ns;     /* put+alloc (free+malloc) of the refill batches */
	uint64_t recycled;   /* buffers put and replaced in the loop */
	uint64_t batches;
	uint64_t enobufs, rearm, cqe_errors, alloc_fail;
	bool deadline_hit;
	bool has_pool;
	uint64_t chunks, chunk_acquire, map_calls, unmap_calls;
	uint64_t hook_maps, hook_unmaps; /* counted by the hooks themselves */
	uint64_t in_flight_end;
	int audit, destroy;
	bool gen_pinned;
	double gen_wall_ns;
	int gen_err;
};

static void note_fail(struct result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_fail(struct result *res, const char *fmt, ...)
{
	va_list ap;
	res->failed = true;
	fputs("udp_rx: FAIL: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* The pool's end of a mode: everything must be back; map calls must equal
 * the chunks; the audit must pass; destroy must unmap every chunk. */
static void finish_pool(struct result *res, iop_pool_t *pool, struct reg *reg,
			const char *mode, bool verbose)
{
	struct iop_pool_stats st;
	memset(&st, 0, sizeof st);
	st.struct_size = sizeof st;
	if (iop_pool_stats(pool, &st) != 0) {
		note_fail(res, "%s: iop_pool_stats failed", mode);
	}
	if (verbose)
		iop_pool_stats_print(pool, stdout, IOP_FMT_TEXT);
	res->has_pool = true;
	res->chunks = st.chunks;
	res->chunk_acquire = st.chunk_acquire;
	res->map_calls = st.map_calls;
	res->in_flight_end = st.in_flight;
	if (st.in_flight != 0)
		note_fail(res, "%s: %" PRIu64 " buffers still in flight (leaked)", mode, st.in_flight);
	if (st.map_calls != st.chunk_acquire || st.map_calls != reg->maps)
		note_fail(res, "%s: map hook called %" PRIu64 " times (hook counted %" PRIu64
			  ") for %" PRIu64 " chunks acquired", mode, st.map_calls, reg->maps,
			  st.chunk_acquire);
	if (st.chunks != st.chunk_acquire - st.chunk_release)
		note_fail(res, "%s: chunk counters disagree: %" PRIu64 " mapped, %" PRIu64
			  " acquired, %" PRIu64 " released", mode, st.chunks, st.chunk_acquire,
			  st.chunk_release);
	res->audit = iop_pool_audit(pool);
	if (res->audit != 0)
		note_fail(res, "%s: iop_pool_audit returned %d", mode, res->audit);
	res->destroy = iop_pool_destroy(pool);
	if (res->destroy != 0)
		note_fail(res, "%s: iop_pool_destroy returned %d", mode, res->destroy);
	res->hook_maps = reg->maps;
	res->hook_unmaps = reg->unmaps;
	res->unmap_calls = reg->unmaps;
	if (res->destroy == 0 && reg->unmaps != reg->maps)
		note_fail(res, "%s: unmap hook called %" PRIu64 " times for %" PRIu64
			  " map calls after destroy", mode, reg->unmaps, reg->maps);
	if (reg->err)
		note_fail(res, "%s: a hook failed: %s", mode, strerror(-reg->err));
}

/* ------------------------------------------------------------------ */
/* Sockets, pinning, the stop rule                                     */
/* ------------------------------------------------------------------ */

static int g_rcvbuf; /* what the kernel gave the last receive socket */

static int rx_socket(int rcvbuf, uint16_t *port, unsigned timeout_ms)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* As root, past net.core.rmem_max; otherwise as much as it allows. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	if (timeout_ms) {
		struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	}
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0 };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t al = sizeof a;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	*port = ntohs(a.sin_port);
	socklen_t vl = sizeof g_rcvbuf;
	getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &g_rcvbuf, &vl);
	return fd;
}

static int g_rx_cpu = -1, g_gen_cpu = -1;

static void choose_cpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) != 0 || CPU_COUNT(&set) < 2)
		return;
	int found[2], n = 0;
	for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET(c, &set))
			found[n++] = c;
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(found[0], &one);
	if (sched_setaffinity(0, sizeof one, &one) != 0) {
		fprintf(stderr, "udp_rx: pinning the receiver to CPU %d: %s (not pinned)\n",
			found[0], strerror(errno));
		return;
	}
	g_rx_cpu = found[0];
	g_gen_cpu = found[1];
}

struct rx_clock {
	uint64_t t0_ns, t0_ticks, cpu0;
	uint64_t deadline_ticks, quiet_ticks;
	uint64_t last_ticks;    /* the last batch with packets */
	uint64_t gen_done_seen; /* 0 until the generator is seen done */
};

static void rx_clock_start(struct rx_clock *c, const struct opts *o)
{
	c->t0_ns = mono_ns();
	c->t0_ticks = ticks();
	c->cpu0 = thread_cpu_ns();
	c->deadline_ticks = c->t0_ticks + ns_to_ticks((uint64_t)o->deadline_s * 1000000000u);
	c->quiet_ticks = ns_to_ticks((uint64_t)o->quiet_ms * 1000000u);
	c->last_ticks = c->t0_ticks;
	c->gen_done_seen = 0;
}

/* Stop when the generator is done and nothing came for the quiet time, or
 * at the deadline. */
static bool rx_should_stop(struct rx_clock *c, struct gen *g, struct result *res)
{
	uint64_t now = ticks();
	if (now > c->deadline_ticks) {
		res->deadline_hit = true;
		return true;
	}
	if (!c->gen_done_seen) {
		if (!atomic_load_explicit(&g->done, memory_order_acquire))
			return false;
		c->gen_done_seen = now;
	}
	uint64_t from = c->last_ticks > c->gen_done_seen ? c->last_ticks : c->gen_done_seen;
	return now - from >= c->quiet_ticks;
}

static void rx_clock_stop(struct rx_clock *c, struct result *res)
{
	uint64_t cpu1 = thread_cpu_ns();
	uint64_t t1_ns = mono_ns(), t1_ticks = ticks();
	res->cpu_ns = (double)(cpu1 - c->cpu0);
	/* This mode's own calibration: ticks per ns over the whole loop. */
	double tpn = (double)(t1_ticks - c->t0_ticks) / (double)(t1_ns - c->t0_ns);
	if (!(tpn > 0))
		tpn = g_ticks_per_ns;
	res->rx_wall_ns = (double)(c->last_ticks - c->t0_ticks) / tpn;
	res->alloc_ns /= tpn; /* accumulated in ticks until now */
}

static int gen_start(struct gen *g, const struct opts *o, uint16_t port)
{
	memset(g, 0, sizeof *g);
	g->cpu = g_gen_cpu;
	g->port = port;
	g->total = o->packets;
	g->payload = o->payload;
	g->deadline_ns = mono_ns() + (uint64_t)o->deadline_s * 1000000000u;
	int e = pthread_create(&g->th, NULL, gen_main, g);
	if (e)
		fprintf(stderr, "udp_rx: pthread_create: %s\n", strerror(e));
	return -e;
}

static void gen_finish(struct gen *g, struct result *res)
{
	atomic_store(&g->stop, 1);
	pthread_join(g->th, NULL);
	res->sent = atomic_load(&g->sent);
	res->gen_pinned = g->pinned;
	res->gen_wall_ns = (double)(g->t_end - g->t_start);
	res->gen_err = g->err;
	if (g->err)
		fprintf(stderr, "udp_rx: generator: %s\n", strerror(g->err));
}

/* ------------------------------------------------------------------ */
/* io_uring receive path                                               */
/* ------------------------------------------------------------------ */

/* A ring with a large CQ (multishot posts a completion per datagram) and,
 * where the kernel has them, single-issuer deferred task work. Returns 0 or
 * a negative errno. */
static int ring_init(struct io_uring *ring)
{
	static const unsigned flag_sets[] = {
		IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN,
		IORING_SETUP_CQSIZE,
	};
	int ret = -EINVAL;
	for (unsigned i = 0; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof p);
		p.flags = flag_sets[i];
		p.cq_entries = 4096;
		ret = io_uring_queue_init_params(64, ring, &p);
		if (ret != -EINVAL)
			break;
	}
	return ret;
}

struct uring_rx {
	struct io_uring ring;
	bool ring_ok;
	struct io_uring_buf_ring *br;
	size_t br_bytes;
	bool br_registered;
	unsigned entries, mask;
	void **table;     /* bid -> the buffer on the ring at that id */
	unsigned *holes;  /* bids left without a buffer (allocation failed) */
	unsigned nholes;
	bool armed;
	int fd;
	iop_pool_t *pool; /* NULL: malloc mode */
};

static void *rx_get(struct uring_rx *u)
{
	return u->pool ? iop_buf_alloc(u->pool) : malloc(OBJ_SIZE);
}

static void rx_put(struct uring_rx *u, void *p)
{
	if (u->pool)
		iop_buf_put(u->pool, p);
	else
		free(p);
}

static struct io_uring_sqe *get_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	if (!sqe) {
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	return sqe;
}

static int arm_recv(struct uring_rx *u)
{
	struct io_uring_sqe *sqe = get_sqe(&u->ring);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_recv_multishot(sqe, u->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, UD_RECV);
	u->armed = true;
	return 0;
}

/* Register an mmap()ed provided buffer ring of `entries` entries. */
static int buf_ring_setup(struct io_uring *ring, unsigned entries, struct io_uring_buf_ring **out,
			  size_t *bytes)
{
	size_t len = (size_t)entries * sizeof(struct io_uring_buf);
	void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	struct io_uring_buf_ring *br = mem;
	io_uring_buf_ring_init(br);
	struct io_uring_buf_reg reg;
	memset(&reg, 0, sizeof reg);
	reg.ring_addr = (uintptr_t)mem;
	reg.ring_entries = entries;
	reg.bgid = BGID;
	int ret = io_uring_register_buf_ring(ring, &reg, 0);
	if (ret < 0) {
		munmap(mem, len);
		return ret;
	}
	*out = br;
	*bytes = len;
	return 0;
}

/* Can this kernel and this process do what the uring modes need? Returns 0,
 * or a negative errno with `why` filled in. */
static int uring_probe(char *why, size_t whylen)
{
	struct io_uring ring;
	int ret = ring_init(&ring);
	if (ret < 0) {
		snprintf(why, whylen, "io_uring_queue_init: %s%s", strerror(-ret),
			 ret == -EPERM ? " (kernel.io_uring_disabled, or a seccomp filter)" : "");
		return ret;
	}
	ret = io_uring_register_buffers_sparse(&ring, REG_SLOTS);
	if (ret < 0) {
		snprintf(why, whylen, "sparse registered buffers (io_uring_register_buffers_sparse): %s",
			 strerror(-ret));
		io_uring_queue_exit(&ring);
		return ret;
	}
	struct io_uring_buf_ring *br = NULL;
	size_t len = 0;
	ret = buf_ring_setup(&ring, 8, &br, &len);
	if (ret < 0) {
		snprintf(why, whylen, "provided buffer rings (io_uring_register_buf_ring): %s",
			 strerror(-ret));
		io_uring_queue_exit(&ring);
		return ret;
	}
	io_uring_unregister_buf_ring(&ring, BGID);
	munmap(br, len);
	io_uring_queue_exit(&ring);
	return 0;
}

/* Does iop_buf_mapping() give, for buf, the slot and offset under which the
 * map hook registered buf's chunk? */
static int check_mapping(iop_pool_t *pool, const struct reg *reg, const void *buf,
			 uint64_t *handle, size_t *off)
{
	*handle = UINT64_MAX;
	*off = SIZE_MAX;
	int ret = iop_buf_mapping(pool, buf, handle, off);
	if (ret != 0 || *handle >= REG_SLOTS || !reg->base[*handle] ||
	    (const unsigned char *)reg->base[*handle] + *off != buf ||
	    *off + OBJ_SIZE > reg->len[*handle]) {
		fprintf(stderr, "udp_rx: iop_buf_mapping(%p) = %d, handle %" PRIu64 ", offset %zu:"
			" not where the map hook registered it\n", buf, ret, *handle, *off);
		return -1;
	}
	return 0;
}

/* Fixed-buffer I/O on a pool buffer, as a user of the map hook would do it:
 * iop_buf_mapping() gives the registration slot (the handle) and the offset
 * in the chunk; read 64 bytes from a pipe into the buffer with
 * io_uring_prep_read_fixed(buf_index = handle). Call before the recv is
 * armed. Returns 0 or -1. */
static int fixed_buffer_check(struct uring_rx *u, const struct reg *reg, unsigned char *buf,
			      bool verbose)
{
	uint64_t handle;
	size_t off;
	if (check_mapping(u->pool, reg, buf, &handle, &off) != 0)
		return -1;
	int pfd[2];
	if (pipe(pfd) != 0) {
		perror("udp_rx: pipe");
		return -1;
	}
	unsigned char msg[64];
	for (unsigned i = 0; i < sizeof msg; i++)
		msg[i] = (unsigned char)(0xa5 ^ i ^ handle);
	int rc = -1;
	if (write(pfd[1], msg, sizeof msg) != (ssize_t)sizeof msg) {
		perror("udp_rx: write");
		goto out;
	}
	struct io_uring_sqe *sqe = get_sqe(&u->ring);
	io_uring_prep_read_fixed(sqe, pfd[0], buf, sizeof msg, (__u64)-1, (int)handle);
	io_uring_sqe_set_data64(sqe, UD_FIXED);
	struct io_uring_cqe *cqe;
	int ret = io_uring_submit_and_wait(&u->ring, 1);
	if (ret >= 0)
		ret = io_uring_wait_cqe(&u->ring, &cqe);
	if (ret < 0) {
		fprintf(stderr, "udp_rx: read_fixed: %s\n", strerror(-ret));
		goto out;
	}
	int res = cqe->res;
	io_uring_cqe_seen(&u->ring, cqe);
	if (res != (int)sizeof msg || memcmp(buf, msg, sizeof msg) != 0) {
		fprintf(stderr, "udp_rx: read_fixed into registered buffer %" PRIu64 " + %zu: %s\n",
			handle, off, res < 0 ? strerror(-res) : "wrong bytes");
		goto out;
	}
	if (verbose)
		printf("  fixed-buffer check: read_fixed(buf_index %" PRIu64 ") into %p"
		       " = chunk + %zu: ok\n", handle, (void *)buf, off);
	rc = 0;
out:
	close(pfd[0]);
	close(pfd[1]);
	return rc;
}

/* The refill of one CQE batch: put the batch's buffers and allocate their
 * replacements, timed as a whole; then hand the new ones to the ring under
 * the same buffer ids and publish them with one tail update. */
static void refill(struct uring_rx *u, void **done, const unsigned short *bids, unsigned n,
		   struct result *res)
{
	void *fresh[CQE_BATCH];
	unsigned k = 0;
	if (n) {
		uint64_t a = ticks();
		if (u->pool) {
			for (unsigned i = 0; i < n; i++) {
				iop_buf_put(u->pool, done[i]);
				fresh[i] = iop_buf_alloc(u->pool);
			}
		} else {
			for (unsigned i = 0; i < n; i++) {
				free(done[i]);
				fresh[i] = malloc(OBJ_SIZE);
			}
		}
		uint64_t d = ticks() - a;
		res->alloc_ns += (double)(d > g_pair_ticks ? d - g_pair_ticks : 0); /* ticks for now */
		res->recycled += n;
		res->batches++;
		for (unsigned i = 0; i < n; i++) {
			if (!fresh[i]) {
				res->alloc_fail++;
				u->holes[u->nholes++] = bids[i];
				continue;
			}
			u->table[bids[i]] = fresh[i];
			io_uring_buf_ring_add(u->br, fresh[i], OBJ_SIZE, bids[i], (int)u->mask, (int)k++);
		}
	}
	/* Ids left empty by an earlier failed allocation (rare; untimed). */
	while (u->nholes) {
		void *p = rx_get(u);
		if (!p)
			break;
		unsigned bid = u->holes[--u->nholes];
		u->table[bid] = p;
		io_uring_buf_ring_add(u->br, p, OBJ_SIZE, (unsigned short)bid, (int)u->mask, (int)k++);
	}
	if (k)
		io_uring_buf_ring_advance(u->br, (int)k);
}

static void uring_teardown(struct uring_rx *u, struct result *res, const struct opts *o)
{
	/* Cancel the multishot recv and wait (bounded) for its last completion;
	 * buffers it still hands over stay in the table and are put below. */
	if (u->ring_ok && u->armed) {
		struct io_uring_sqe *sqe = get_sqe(&u->ring);
		if (sqe) {
			io_uring_prep_cancel64(sqe, UD_RECV, 0);
			io_uring_sqe_set_data64(sqe, UD_CANCEL);
		}
		bool cancel_done = sqe == NULL;
		uint64_t until = mono_ns() + 2000000000u;
		while ((u->armed || !cancel_done) && mono_ns() < until) {
			struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 100000000 };
			struct io_uring_cqe *cqe;
			int ret = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
			if (ret < 0 && ret != -ETIME && ret != -EINTR)
				break;
			unsigned head, seen = 0;
			io_uring_for_each_cqe(&u->ring, head, cqe) {
				seen++;
				uint64_t ud = io_uring_cqe_get_data64(cqe);
				if (ud == UD_CANCEL) {
					cancel_done = true;
				} else if (ud == UD_RECV) {
					if ((cqe->flags & IORING_CQE_F_BUFFER) && cqe->res >= 0) {
						unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
						res->received++;
						res->bytes += (unsigned)cqe->res;
						if ((unsigned)cqe->res != o->payload)
							res->bad_len++;
						if (u->table[bid])
							res->csum += csum16(u->table[bid], (size_t)cqe->res);
					}
					if (!(cqe->flags & IORING_CQE_F_MORE))
						u->armed = false;
				}
			}
			io_uring_cq_advance(&u->ring, seen);
		}
		if (u->armed)
			fprintf(stderr, "udp_rx: the multishot recv did not end after cancel\n");
	}
	if (u->br_registered) {
		int ret = io_uring_unregister_buf_ring(&u->ring, BGID);
		if (ret < 0)
			fprintf(stderr, "udp_rx: io_uring_unregister_buf_ring: %s\n", strerror(-ret));
	}
	if (u->br)
		munmap(u->br, u->br_bytes);
	/* Every buffer on the ring goes back to its allocator. */
	if (u->table)
		for (unsigned i = 0; i < u->entries; i++)
			if (u->table[i])
				rx_put(u, u->table[i]);
	free(u->table);
	free(u->holes);
	if (u->fd >= 0)
		close(u->fd);
}

static void run_uring(enum mode m, const struct opts *o, struct result *res)
{
	const char *name = mode_name[m];
	struct uring_rx u;
	memset(&u, 0, sizeof u);
	u.fd = -1;
	struct reg reg;
	memset(&reg, 0, sizeof reg);
	iop_pool_t *pool = NULL;
	struct gen g;
	bool gen_running = false;
	res->ran = true;

	int ret = ring_init(&u.ring);
	if (ret < 0) {
		snprintf(res->why, sizeof res->why, "io_uring_queue_init: %s", strerror(-ret));
		res->skipped = true;
		return;
	}
	u.ring_ok = true;
	ret = io_uring_register_buffers_sparse(&u.ring, REG_SLOTS);
	if (ret < 0) {
		snprintf(res->why, sizeof res->why, "io_uring_register_buffers_sparse: %s", strerror(-ret));
		res->skipped = true;
		goto out;
	}
	uint16_t port;
	u.fd = rx_socket(o->rcvbuf, &port, 0);
	if (u.fd < 0) {
		fprintf(stderr, "udp_rx: socket: %s\n", strerror(-u.fd));
		res->failed = true;
		goto out;
	}
	if (m == M_URING_POOL) {
		reg.ring = &u.ring;
		pool = make_pool(&reg, "udp-rx-uring");
		if (!pool) {
			res->failed = true;
			goto out;
		}
		u.pool = pool;
	}
	u.entries = o->ring_entries;
	u.mask = (unsigned)io_uring_buf_ring_mask(u.entries);
	u.table = calloc(u.entries, sizeof *u.table);
	u.holes = calloc(u.entries, sizeof *u.holes);
	if (!u.table || !u.holes) {
		res->failed = true;
		goto out;
	}
	ret = buf_ring_setup(&u.ring, u.entries, &u.br, &u.br_bytes);
	if (ret < 0) {
		snprintf(res->why, sizeof res->why, "io_uring_register_buf_ring: %s", strerror(-ret));
		res->skipped = true;
		goto out;
	}
	u.br_registered = true;
	/* Fill the ring: buffer id i holds table[i]. The pool's first chunk is
	 * mapped (and registered) here, before the clock starts. */
	for (unsigned i = 0; i < u.entries; i++) {
		void *p = rx_get(&u);
		if (!p) {
			fprintf(stderr, "udp_rx: filling the ring: %s\n", strerror(errno));
			res->failed = true;
			goto out;
		}
		u.table[i] = p;
		io_uring_buf_ring_add(u.br, p, OBJ_SIZE, (unsigned short)i, (int)u.mask, (int)i);
	}
	io_uring_buf_ring_advance(u.br, (int)u.entries);
	if (u.pool) {
		/* Every ring buffer's mapping is where its chunk was registered;
		 * and fixed-buffer I/O works on the first and the last of them
		 * (usually the first and the last chunk). */
		uint64_t h;
		size_t off;
		for (unsigned i = 0; i < u.entries; i++) {
			if (check_mapping(u.pool, &reg, u.table[i], &h, &off) != 0) {
				res->failed = true;
				goto out;
			}
		}
		if (fixed_buffer_check(&u, &reg, u.table[0], o->verbose) != 0 ||
		    fixed_buffer_check(&u, &reg, u.table[u.entries - 1], o->verbose) != 0) {
			res->failed = true;
			goto out;
		}
	}
	if (arm_recv(&u) != 0 || io_uring_submit(&u.ring) < 0) {
		fprintf(stderr, "udp_rx: arming the multishot recv failed\n");
		res->failed = true;
		goto out;
	}

	struct rx_clock clk;
	rx_clock_start(&clk, o);
	if (gen_start(&g, o, port) != 0) {
		res->failed = true;
		goto out;
	}
	gen_running = true;

	struct io_uring_cqe *cqes[CQE_BATCH];
	void *done[CQE_BATCH];
	unsigned short bids[CQE_BATCH];
	bool shown = false;
	for (uint64_t iter = 1;; iter++) {
		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 20000000 };
		ret = io_uring_submit_and_wait_timeout(&u.ring, &cqe, 1, &ts, NULL);
		if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
			fprintf(stderr, "udp_rx: %s: io_uring_submit_and_wait_timeout: %s\n", name,
				strerror(-ret));
			res->failed = true;
			break;
		}
		unsigned n = io_uring_peek_batch_cqe(&u.ring, cqes, CQE_BATCH);
		if (n == 0) {
			if (u.nholes)
				refill(&u, done, bids, 0, res);
			if (rx_should_stop(&clk, &g, res))
				break;
			continue;
		}
		unsigned nd = 0;
		bool rearm = false;
		for (unsigned i = 0; i < n; i++) {
			cqe = cqes[i];
			if (io_uring_cqe_get_data64(cqe) != UD_RECV)
				continue;
			if (cqe->flags & IORING_CQE_F_BUFFER) {
				unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
				unsigned char *buf = u.table[bid];
				int len = cqe->res;
				if (len >= 0) {
					res->received++;
					res->bytes += (unsigned)len;
					if ((unsigned)len != o->payload)
						res->bad_len++;
					res->csum += csum16(buf, (size_t)len); /* process, then drop */
				}
				if (o->verbose && !shown && u.pool) {
					uint64_t h = 0;
					size_t off = 0;
					int mr = iop_buf_mapping(u.pool, buf, &h, &off);
					printf("  first packet: bid %u, %d bytes in %p = registered buffer %" PRIu64
					       " + offset %zu (iop_buf_mapping %d), refcount %u\n",
					       bid, len, (void *)buf, h, off, mr, iop_buf_refcount(u.pool, buf));
					shown = true;
				}
				done[nd] = buf;
				bids[nd] = (unsigned short)bid;
				nd++;
				u.table[bid] = NULL;
			} else if (cqe->res < 0) {
				if (cqe->res == -ENOBUFS) {
					res->enobufs++;
				} else if (cqe->res == -EINVAL && res->received == 0) {
					snprintf(res->why, sizeof res->why,
						 "multishot recv with provided buffers: %s", strerror(EINVAL));
					res->skipped = true;
				} else if (res->cqe_errors++ == 0) {
					fprintf(stderr, "udp_rx: %s: recv completion: %s\n", name,
						strerror(-cqe->res));
				}
			}
			if (!(cqe->flags & IORING_CQE_F_MORE)) {
				u.armed = false;
				rearm = true;
			}
		}
		io_uring_cq_advance(&u.ring, n);
		if (nd || u.nholes) {
			refill(&u, done, bids, nd, res);
			if (nd)
				clk.last_ticks = ticks();
		}
		if (res->skipped || res->cqe_errors > MAX_ERRORS) {
			if (!res->skipped)
				res->failed = true;
			break;
		}
		if (rearm) {
			res->rearm++;
			if (arm_recv(&u) != 0) {
				res->failed = true;
				break;
			}
		}
		if ((iter & 1023u) == 0 && ticks() > clk.deadline_ticks) {
			res->deadline_hit = true;
			break;
		}
	}
	rx_clock_stop(&clk, res);

out:
	if (gen_running)
		gen_finish(&g, res);
	uring_teardown(&u, res, o);
	if (pool)
		finish_pool(res, pool, &reg, name, o->verbose);
	if (u.ring_ok)
		io_uring_queue_exit(&u.ring);
}

/* ------------------------------------------------------------------ */
/* recvmmsg receive path                                               */
/* ------------------------------------------------------------------ */

static void run_recvmmsg(const struct opts *o, struct result *res)
{
	const char *name = mode_name[M_RECVMMSG_POOL];
	struct reg reg; /* no io_uring here: the hooks only number the chunks */
	memset(&reg, 0, sizeof reg);
	void *bufs[RECV_BATCH];
	struct mmsghdr msgs[RECV_BATCH];
	struct iovec iov[RECV_BATCH];
	unsigned have = 0;
	struct gen g;
	bool gen_running = false;
	res->ran = true;

	uint16_t port;
	int fd = rx_socket(o->rcvbuf, &port, 20); /* 20 ms receive timeout */
	if (fd < 0) {
		fprintf(stderr, "udp_rx: socket: %s\n", strerror(-fd));
		res->failed = true;
		return;
	}
	iop_pool_t *pool = make_pool(&reg, "udp-rx-recvmmsg");
	if (!pool) {
		res->failed = true;
		close(fd);
		return;
	}
	have = iop_buf_alloc_bulk(pool, bufs, RECV_BATCH);
	if (have != RECV_BATCH) {
		fprintf(stderr, "udp_rx: iop_buf_alloc_bulk: %s\n", strerror(errno));
		res->failed = true;
		goto out;
	}
	memset(msgs, 0, sizeof msgs);
	for (unsigned i = 0; i < RECV_BATCH; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = OBJ_SIZE;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}

	struct rx_clock clk;
	rx_clock_start(&clk, o);
	if (gen_start(&g, o, port) != 0) {
		res->failed = true;
		goto out;
	}
	gen_running = true;
	for (uint64_t iter = 1;; iter++) {
		int r = recvmmsg(fd, msgs, RECV_BATCH, MSG_WAITFORONE, NULL);
		if (r <= 0) {
			if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				fprintf(stderr, "udp_rx: %s: recvmmsg: %s\n", name, strerror(errno));
				res->failed = true;
				break;
			}
			if (rx_should_stop(&clk, &g, res))
				break;
			continue;
		}
		unsigned n = (unsigned)r;
		for (unsigned i = 0; i < n; i++) {
			unsigned len = msgs[i].msg_len;
			res->received++;
			res->bytes += len;
			if (len != o->payload)
				res->bad_len++;
			res->csum += csum16(bufs[i], len); /* process, then drop */
		}
		/* Recycle the n used buffers and refill their places, timed. */
		uint64_t a = ticks();
		for (unsigned i = 0; i < n; i++)
			iop_buf_put(pool, bufs[i]);
		unsigned got = iop_buf_alloc_bulk(pool, bufs, n);
		uint64_t b = ticks();
		uint64_t d = b - a;
		res->alloc_ns += (double)(d > g_pair_ticks ? d - g_pair_ticks : 0);
		res->recycled += n;
		res->batches++;
		clk.last_ticks = b;
		if (got != n) {
			/* bufs[got..RECV_BATCH) are still ours, bufs[0..got) new */
			res->alloc_fail += n - got;
			for (unsigned i = got; i < n; i++)
				bufs[i] = NULL;
			fprintf(stderr, "udp_rx: %s: iop_buf_alloc_bulk: %s\n", name, strerror(errno));
			res->failed = true;
			break;
		}
		for (unsigned i = 0; i < n; i++)
			iov[i].iov_base = bufs[i];
		if ((iter & 1023u) == 0 && ticks() > clk.deadline_ticks) {
			res->deadline_hit = true;
			break;
		}
	}
	rx_clock_stop(&clk, res);
out:
	if (gen_running)
		gen_finish(&g, res);
	for (unsigned i = 0; i < have; i++)
		if (bufs[i])
			iop_buf_put(pool, bufs[i]);
	close(fd);
	finish_pool(res, pool, &reg, name, o->verbose);
}

/* ------------------------------------------------------------------ */
/* Report                                                              */
/* ------------------------------------------------------------------ */

static double per_pkt(double total, uint64_t pkts)
{
	return pkts ? total / (double)pkts : 0.0;
}

static void print_table(const struct opts *o, const struct result *r)
{
	printf("\n%-14s %9s %9s %7s %10s %11s %12s %8s %8s %6s %9s\n", "mode", "sent", "received",
	       "loss", "rx pps", "cpu ns/pkt", "alloc ns/pkt", "alloc %", "enobufs", "rearm",
	       "map/unmap");
	for (int m = 0; m < M_COUNT; m++) {
		if (!(o->modes & (1u << m)) || !r[m].ran)
			continue;
		const struct result *x = &r[m];
		if (x->skipped) {
			printf("%-14s skipped: %s\n", mode_name[m], x->why);
			continue;
		}
		double loss = x->sent ? 100.0 * (double)(x->sent - (x->received < x->sent ? x->received : x->sent)) / (double)x->sent : 0.0;
		double pps = x->rx_wall_ns > 0 ? (double)x->received / (x->rx_wall_ns / 1e9) : 0.0;
		double cpu = per_pkt(x->cpu_ns, x->received);
		double al = per_pkt(x->alloc_ns, x->received);
		char mu[32];
		if (x->has_pool)
			snprintf(mu, sizeof mu, "%" PRIu64 "/%" PRIu64, x->map_calls, x->unmap_calls);
		else
			snprintf(mu, sizeof mu, "-");
		printf("%-14s %9" PRIu64 " %9" PRIu64 " %6.2f%% %10.0f %11.1f %12.2f %7.2f%% %8" PRIu64
		       " %6" PRIu64 " %9s%s\n",
		       mode_name[m], x->sent, x->received, loss, pps, cpu, al,
		       cpu > 0 ? 100.0 * al / cpu : 0.0, x->enobufs, x->rearm, mu,
		       x->failed ? "  FAILED" : (x->deadline_hit ? "  (deadline)" : ""));
	}
}

static int append_json(const struct opts *o, const struct result *r)
{
	FILE *f = fopen(o->json, "a");
	if (!f) {
		fprintf(stderr, "udp_rx: %s: %s\n", o->json, strerror(errno));
		return -1;
	}
	for (int m = 0; m < M_COUNT; m++) {
		const struct result *x = &r[m];
		if (!(o->modes & (1u << m)) || !x->ran || x->skipped)
			continue;
		double cpu = per_pkt(x->cpu_ns, x->received);
		double al = per_pkt(x->alloc_ns, x->received);
		double pps = x->rx_wall_ns > 0 ? (double)x->received / (x->rx_wall_ns / 1e9) : 0.0;
		fprintf(f, "{\"case\": \"udp_rx\", \"param\": \"%uB\", \"allocator\": \"%s\", "
			   "\"pps\": %.0f, \"ns_per_pkt_cpu\": %.2f, \"alloc_ns_per_pkt\": %.3f, "
			   "\"alloc_share\": %.4f, \"received\": %" PRIu64 ", \"sent\": %" PRIu64 ", "
			   "\"enobufs\": %" PRIu64 ", \"rearm\": %" PRIu64 ", \"map_calls\": %" PRIu64
			   ", \"unmap_calls\": %" PRIu64 ", \"chunks\": %" PRIu64 ", \"ring_entries\": %u, "
			   "\"rx_cpu\": %d, \"gen_cpu\": %d, \"clock\": \"%s\", \"status\": \"%s\"}\n",
			o->payload, mode_name[m], pps, cpu, al, cpu > 0 ? al / cpu : 0.0, x->received,
			x->sent, x->enobufs, x->rearm, x->has_pool ? x->map_calls : 0,
			x->has_pool ? x->unmap_calls : 0, x->has_pool ? x->chunk_acquire : 0,
			m == M_RECVMMSG_POOL ? 0u : o->ring_entries, g_rx_cpu, g_gen_cpu, TICKS_NAME,
			x->failed ? "failed" : "ok");
	}
	int bad = ferror(f);
	if (fclose(f) != 0 || bad) {
		fprintf(stderr, "udp_rx: writing %s failed\n", o->json);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Main                                                                */
/* ------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: iop-udp-rx [options]\n"
		"  --mode M         uring-pool, uring-malloc, recvmmsg-pool or all (default all)\n"
		"  --packets N      datagrams sent per mode (default 2000000; --quick 200000)\n"
		"  --payload N      UDP payload bytes, %u..%u (default 64)\n"
		"  --quick          200000 packets per mode (unless --packets says otherwise)\n"
		"  --ring N         provided buffer ring entries, a power of two 8..32768 (default 512)\n"
		"  --quiet-ms N     stop after N ms without packets once all are sent (default 200)\n"
		"  --deadline S     give up on a mode after S seconds (default 60)\n"
		"  --rcvbuf BYTES   socket receive buffer (default 16 MiB; SO_RCVBUFFORCE as root)\n"
		"  --json PATH      append one JSON object per mode to PATH (JSON lines)\n"
		"  -v, --verbose    pool statistics, the first packet's mapping, details\n"
		"exit: 0 ok, 1 a check failed, 2 usage, 77 io_uring not available\n",
		PAYLOAD_MIN, PAYLOAD_MAX);
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-')
		return false;
	*out = v;
	return true;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	bool quick = false, packets_set = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t n;
#define NEED_NUM(lo, hi)                                                                  \
	do {                                                                              \
		if (!v || !parse_u64(v, &n) || n < (lo) || n > (hi)) {                    \
			fprintf(stderr, "udp_rx: %s wants a number from %llu to %llu\n", a, \
				(unsigned long long)(lo), (unsigned long long)(hi));      \
			return -1;                                                        \
		}                                                                         \
		i++;                                                                      \
	} while (0)
		if (!strcmp(a, "--quick")) {
			quick = true;
		} else if (!strcmp(a, "--packets")) {
			NEED_NUM(1, 1000000000);
			o->packets = n;
			packets_set = true;
		} else if (!strcmp(a, "--payload")) {
			NEED_NUM(PAYLOAD_MIN, PAYLOAD_MAX);
			o->payload = (unsigned)n;
		} else if (!strcmp(a, "--ring")) {
			NEED_NUM(8, 32768);
			if (n & (n - 1)) {
				fprintf(stderr, "udp_rx: --ring wants a power of two\n");
				return -1;
			}
			o->ring_entries = (unsigned)n;
		} else if (!strcmp(a, "--quiet-ms")) {
			NEED_NUM(10, 10000);
			o->quiet_ms = (unsigned)n;
		} else if (!strcmp(a, "--deadline")) {
			NEED_NUM(1, 3600);
			o->deadline_s = (unsigned)n;
		} else if (!strcmp(a, "--rcvbuf")) {
			NEED_NUM(4096, 1u << 30);
			o->rcvbuf = (int)n;
		} else if (!strcmp(a, "--json")) {
			if (!v) {
				fprintf(stderr, "udp_rx: --json wants a path\n");
				return -1;
			}
			o->json = v;
			i++;
		} else if (!strcmp(a, "--mode")) {
			if (!v) {
				fprintf(stderr, "udp_rx: --mode wants a mode\n");
				return -1;
			}
			i++;
			if (!strcmp(v, "all")) {
				o->modes = (1u << M_COUNT) - 1;
			} else {
				int m;
				for (m = 0; m < M_COUNT && strcmp(v, mode_name[m]); m++)
					;
				if (m == M_COUNT) {
					fprintf(stderr, "udp_rx: unknown mode '%s'\n", v);
					return -1;
				}
				o->modes = 1u << m;
			}
		} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
			o->verbose = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			exit(0);
		} else {
			fprintf(stderr, "udp_rx: unknown option '%s'\n", a);
			return -1;
		}
#undef NEED_NUM
	}
	if (quick && !packets_set)
		o->packets = 200000;
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = {
		.packets = 2000000,
		.payload = 64,
		.ring_entries = 512,
		.quiet_ms = 200,
		.deadline_s = 60,
		.rcvbuf = 16 << 20,
		.modes = (1u << M_COUNT) - 1,
	};
	if (parse_args(argc, argv, &o) != 0) {
		usage(stderr);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	if (o.modes & ((1u << M_URING_POOL) | (1u << M_URING_MALLOC))) {
		char why[200];
		if (uring_probe(why, sizeof why) != 0) {
			printf("udp_rx: skipped: io_uring cannot be used here: %s\n", why);
			return EXIT_SKIP;
		}
	}
	choose_cpus();
	calibrate_clock();

	printf("iop-udp-rx: UDP on 127.0.0.1, payload %u B, %" PRIu64 " packets per mode, "
	       "buffers %u B, provided buffer ring %u entries\n",
	       o.payload, o.packets, OBJ_SIZE, o.ring_entries);
	if (g_rx_cpu >= 0)
		printf("pinned: receiver on CPU %d, generator on CPU %d\n", g_rx_cpu, g_gen_cpu);
	else
		printf("not pinned (fewer than 2 CPUs allowed, or pinning refused)\n");
	printf("allocator time: %s pair around each refill batch (put+alloc, or free+malloc, of the"
	       " batch's buffers), calibrated against CLOCK_MONOTONIC over the run;"
	       " empty pair %.1f ns subtracted per batch\n",
	       TICKS_NAME, (double)g_pair_ticks / g_ticks_per_ns);
	printf("cpu ns/pkt: receiving thread's CLOCK_THREAD_CPUTIME_ID over the receive loop"
	       " (syscalls and io_uring task work included) / packets received;"
	       " rx pps: received / (generator start to last packet)\n");

	struct result res[M_COUNT];
	memset(res, 0, sizeof res);
	int rc = 0;
	for (int m = 0; m < M_COUNT; m++) {
		if (!(o.modes & (1u << m)))
			continue;
		if (o.verbose)
			printf("\n== %s\n", mode_name[m]);
		if (m == M_RECVMMSG_POOL)
			run_recvmmsg(&o, &res[m]);
		else
			run_uring((enum mode)m, &o, &res[m]);
		struct result *x = &res[m];
		if (x->skipped) {
			printf("udp_rx: %s skipped: %s\n", mode_name[m], x->why);
			continue;
		}
		if (o.verbose)
			printf("  sent %" PRIu64 " in %.1f ms (%.0f pps, generator %s), received %" PRIu64
			       " (%" PRIu64 " bytes, %" PRIu64 " of another length, checksum sum %08" PRIx32
			       "), %" PRIu64 " refill batches (%.1f buffers each), %" PRIu64
			       " allocation failures%s\n",
			       x->sent, x->gen_wall_ns / 1e6,
			       x->gen_wall_ns > 0 ? (double)x->sent / (x->gen_wall_ns / 1e9) : 0.0,
			       x->gen_pinned ? "pinned" : "not pinned", x->received, x->bytes, x->bad_len,
			       x->csum, x->batches, per_pkt((double)x->recycled, x->batches),
			       x->alloc_fail, x->deadline_hit ? ", deadline hit" : "");
		if (x->has_pool)
			printf("%s: map hook calls %" PRIu64 ", unmap hook calls %" PRIu64 ", chunks %" PRIu64
			       ", %" PRIu64 " buffers recycled, in flight at the end %" PRIu64
			       ", audit %d, destroy %d\n",
			       mode_name[m], x->map_calls, x->unmap_calls, x->chunk_acquire, x->recycled,
			       x->in_flight_end, x->audit, x->destroy);
		if (x->sent == 0) {
			fprintf(stderr, "udp_rx: FAIL: %s: nothing was sent\n", mode_name[m]);
			x->failed = true;
		} else if (m == M_URING_POOL && x->received * 2 < x->sent) {
			fprintf(stderr, "udp_rx: FAIL: %s: %" PRIu64 " of %" PRIu64
				" packets arrived (under 50%%)\n", mode_name[m], x->received, x->sent);
			x->failed = true;
		} else if (x->received == 0) {
			fprintf(stderr, "udp_rx: FAIL: %s: no packet arrived\n", mode_name[m]);
			x->failed = true;
		} else if (x->received * 2 < x->sent) {
			fprintf(stderr, "udp_rx: warning: %s: only %" PRIu64 " of %" PRIu64
				" packets arrived\n", mode_name[m], x->received, x->sent);
		}
		if (x->failed)
			rc = 1;
	}
	bool any_skip = false;
	for (int m = 0; m < M_COUNT; m++)
		any_skip |= res[m].ran && res[m].skipped;
	if (g_rcvbuf)
		printf("socket receive buffer: asked %d bytes, the kernel granted %d%s\n", o.rcvbuf,
		       g_rcvbuf, g_rcvbuf < o.rcvbuf ? " (SO_RCVBUFFORCE needs CAP_NET_ADMIN;"
		       " net.core.rmem_max caps SO_RCVBUF)" : "");
	print_table(&o, res);
	if (o.json && append_json(&o, res) != 0)
		rc = 1;
	/* io_uring turned out unusable mid-way (multishot recv refused). */
	if (rc == 0 && any_skip) {
		printf("udp_rx: skipped (io_uring path not available)\n");
		return EXIT_SKIP;
	}
	printf("%s\n", rc ? "udp_rx: FAILED" : "udp_rx: ok");
	return rc;
}
