// SPDX-License-Identifier: MIT
/*
 * iop-tcp-zc: an io_uring TCP request/response server on loopback that
 * sends its responses with zero-copy send (IORING_OP_SEND_ZC) from
 * refcounted pool buffers, against the same server copying each response
 * out of a malloc()ed buffer. A load generator in the same process drives
 * both in one invocation.
 *
 * The server (one thread, one ring):
 *   - accepts with a multishot accept, and receives with one multishot
 *     recv per connection that selects from a provided buffer ring whose
 *     buffers come from an IOP_F_REFCOUNT pool (as examples/udp_rx does);
 *     each receive buffer is put and its ring slot refilled once parsed;
 *   - parses requests as they stream in (a 32-byte header, a body whose
 *     checksum it verifies across buffer boundaries) and answers each with
 *     a response built in a buffer of the send pool: an IOP_F_REFCOUNT pool
 *     whose map hook registers every chunk with the ring as a fixed buffer
 *     (once per chunk; iop_buf_mapping() gives the slot and offset), sent
 *     with io_uring_prep_send_zc_fixed(). Each send operation holds a
 *     reference (iop_buf_get), put when its notification completion
 *     (IORING_CQE_F_NOTIF) says the kernel let go of the pages; the
 *     response's own reference is put once it is wholly sent. The last
 *     put runs the pool's release hook, which counts the buffer back and
 *     lets the loop serve a connection that was waiting for one, and
 *     recycles it;
 *   - the send pool is bounded (--send-limit buffers): a client that stops
 *     reading keeps its buffers in its socket, the pool reaches its limit
 *     and the server either waits (--on-full wait: the connection's
 *     requests are parked, its later ones queue behind, nothing more is
 *     allocated; served again when a buffer comes back) or sheds (--on-full
 *     shed: the request is answered "busy"). The event loop never sleeps in
 *     the allocator (iop_buf_alloc_ex() in the default mode, which fails at
 *     the limit): the buffers it waits for are released by its own
 *     completions, so an IOP_WAIT on this thread could never be woken. The pool's high-water mark is
 *     reported.
 *
 * Modes (same loop, same generator, each on a fresh ring and listener):
 *   zc-pool      the above.
 *   copy-malloc  each response malloc()ed, sent with IORING_OP_SEND (the
 *                kernel copies it), freed when the send completes.
 *
 * Loopback caveat: the kernel delivers a zero-copy skb to a local socket by
 * copying it (skb_orphan_frags_rx), so on 127.0.0.1 the notification comes
 * once the receiver's socket has the bytes (or they are dropped), and says
 * "copied" (IORING_SEND_ZC_REPORT_USAGE, counted). The buffer protocol is
 * the one a NIC path uses; the copy is saved only on a real device.
 *
 * The generator: --conns connections, each with one request in flight
 * (closed loop), requests of --req-size bytes, responses of --resp-size
 * (both 64 B to 64 KiB, headers included), for --duration-ms; every
 * response is verified (header, sequence, checksum of every byte), its
 * latency kept for the percentiles. In the test form (--quick) it also
 * runs the bad clients: one sends a malformed header (the server counts it
 * and closes the connection), one pipelines large requests and resets the
 * connection (SO_LINGER 0) while the server is sending (counted, every
 * buffer still comes back), and one pipelines requests and stops reading
 * for --stall-ms (the pool reaches its limit; the server waits or sheds;
 * memory does not grow; every response is verified after it reads again).
 *
 * Exit status: 0; 1 when a check failed; 2 on a usage error; 77 when
 * io_uring, SEND_ZC, provided buffer rings, multishot recv/accept or
 * registered buffers are not available here, with what was missing.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <iopool.h>

/* Not in liburing 2.3's headers (kernel 6.2 ABI). */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

#define HDR 32u               /* request and response header bytes */
#define MSG_MIN 64u           /* smallest request or response */
#define MSG_MAX 65536u        /* largest: 64 KiB */
#define RX_BUF 16384u         /* receive buffer (pool object) */
#define RX_ENTRIES 256u       /* provided buffer ring entries */
#define REG_SLOTS 64u         /* sparse registered-buffer table (send chunks) */
#define MAX_CONNS 256u        /* server connections */
#define PEND_MAX 1024u        /* requests queued per connection before it is cut */
#define BGID 3u
#define MAGIC_REQ 0x51504f49u /* "IOPQ" */
#define MAGIC_RSP 0x52504f49u /* "IOPR" */
#define ST_OK 0u
#define ST_BUSY 1u
#define LAT_MAX (1u << 21)    /* latency samples kept per run */
#define EXIT_SKIP 77

enum mode { M_ZC_POOL, M_COPY_MALLOC, M_COUNT };
static const char *const mode_name[M_COUNT] = { "zc-pool", "copy-malloc" };

struct opts {
	unsigned conns, req_size, resp_size, duration_ms, reps, send_limit, stall_ms;
	bool shed, quick, verbose;
	unsigned modes;
	const char *json;
};

/* The wire format: both directions start with this header. */
struct msg_hdr {
	uint32_t magic;
	uint32_t len;    /* whole message, header included */
	uint32_t status; /* request: the response length asked for; response: ST_* */
	uint32_t csum;   /* csum16 of the body ^ (uint16_t)seq */
	uint64_t seq;
	uint64_t pad;
};
_Static_assert(sizeof(struct msg_hdr) == HDR, "header is HDR bytes");

static volatile sig_atomic_t g_stop;

/* ------------------------------------------------------------------ */
/* Clocks and checksums                                                */
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

static uint32_t csum_add(uint32_t s, uint32_t x)
{
	uint64_t t = (uint64_t)s + x;
	while (t >> 16)
		t = (t & 0xffffu) + (t >> 16);
	return (uint32_t)t;
}

/* 16-bit ones'-complement sum, as in udp_rx. */
static uint32_t csum16(const unsigned char *p, size_t n)
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
	return (uint32_t)s;
}

/* The sum of a piece that starts at byte `off` of the body: a piece at an
 * odd offset has its bytes in the other halves of the 16-bit words, so its
 * sum is byte-swapped (RFC 1071's incremental update). Lets a receiver sum
 * a body as it arrives, in pieces of any size. */
static uint32_t csum_piece(uint32_t s, const unsigned char *p, size_t n, uint64_t off)
{
	uint32_t c = csum16(p, n);
	if (off & 1)
		c = ((c & 0xffu) << 8) | (c >> 8);
	return csum_add(s, c);
}

/* Body bytes: a function of the position; one template per run, so that
 * building a message is a copy (as a real server's would be). */
static unsigned char g_pattern[MSG_MAX];

static void pattern_init(void)
{
	for (unsigned j = 0; j < MSG_MAX; j++)
		g_pattern[j] = (unsigned char)(j * 7u + 3u + (j >> 8));
}

/* Write a whole message of len bytes into p. */
static void build_msg(unsigned char *p, uint32_t magic, uint32_t len, uint32_t status, uint64_t seq)
{
	struct msg_hdr h;
	memset(&h, 0, sizeof h);
	h.magic = magic;
	h.len = len;
	h.status = status;
	h.seq = seq;
	memcpy(p + HDR, g_pattern, len - HDR);
	h.csum = csum16(p + HDR, len - HDR) ^ (uint16_t)seq;
	memcpy(p, &h, HDR);
}

/* ------------------------------------------------------------------ */
/* Registration of send-pool chunks (as in udp_rx)                     */
/* ------------------------------------------------------------------ */

struct reg {
	struct io_uring *ring;
	void *base[REG_SLOTS];
	size_t len[REG_SLOTS];
	uint64_t maps, unmaps, released;
	int err;
};

static int reg_map(void *arg, void *base, size_t len, uint64_t *handle)
{
	struct reg *r = arg;
	unsigned s = 0;
	while (s < REG_SLOTS && r->base[s])
		s++;
	if (s == REG_SLOTS) {
		r->err = r->err ? r->err : -ENOSPC;
		return -ENOSPC;
	}
	struct iovec iov = { .iov_base = base, .iov_len = len };
	__u64 tag = 0;
	int ret = io_uring_register_buffers_update_tag(r->ring, s, &iov, &tag, 1);
	if (ret < 0) {
		r->err = r->err ? r->err : ret;
		return ret;
	}
	r->base[s] = base;
	r->len[s] = len;
	r->maps++;
	*handle = s;
	return 0;
}

static void reg_unmap(void *arg, void *base, size_t len, uint64_t handle)
{
	struct reg *r = arg;
	r->unmaps++;
	if (handle >= REG_SLOTS || r->base[handle] != base || r->len[handle] != len) {
		r->err = r->err ? r->err : -EINVAL;
		return;
	}
	struct iovec iov = { .iov_base = NULL, .iov_len = 0 };
	__u64 tag = 0;
	int ret = io_uring_register_buffers_update_tag(r->ring, (unsigned)handle, &iov, &tag, 1);
	if (ret < 0)
		r->err = r->err ? r->err : ret;
	r->base[handle] = NULL;
}

/* The release hook: the last reference to a response buffer was put (its
 * last notification came). Count it, so that the loop knows a waiting
 * connection may be served now, and let the pool recycle it. */
static int send_release(void *arg, iop_pool_t *pool, void *buf)
{
	(void)pool;
	(void)buf;
	((struct reg *)arg)->released++;
	return IOP_RELEASE_RECYCLE;
}

/* ------------------------------------------------------------------ */
/* The server                                                          */
/* ------------------------------------------------------------------ */

/* user_data: the kind in the low 4 bits, an index above. */
enum { UD_ACCEPT = 1, UD_RECV, UD_SEND, UD_BUSY, UD_CANCEL };
#define UD(kind, idx) (((uint64_t)(idx) << 4) | (kind))

struct pend {
	uint64_t seq;
	uint32_t resp_len;
};

struct conn {
	int fd;
	bool open, closing, recv_armed;
	unsigned char hdr[HDR];
	unsigned hdr_have;
	struct msg_hdr req;
	uint32_t body_left, body_off, sum;
	struct pend *pend; /* ring of PEND_MAX */
	unsigned ph, pt;
	int sending;       /* tx slot being sent, -1 none; -2 a busy reply */
	bool parked;
	unsigned park_next; /* FIFO of parked connections */
};

/* A response on its way: which buffer, how much is sent, and how many send
 * operations still hold a reference to it (each until its notification). */
struct tx {
	unsigned char *buf;
	uint32_t len, off;
	int conn;       /* -1 once the connection is gone */
	uint32_t ops;   /* operations whose notification has not come */
	bool owner;     /* the response still holds its own reference */
	bool pooled;    /* a send-pool buffer (else malloc()ed) */
	int next_free;
};

struct srv_stats {
	uint64_t requests, responses, busy, malformed, resets, send_err, enobufs, rearm, accepted;
	uint64_t notifs, notif_copied, parked, overflow, cq_overflow, partial;
	uint64_t live_bytes, live_bytes_hw; /* response bytes held now / at most */
	uint64_t send_ops;
	double cpu_ns;
};

struct server {
	enum mode mode;
	const struct opts *o;
	struct io_uring ring;
	bool ring_ok;
	int lfd;
	uint16_t port;
	bool accept_armed;
	iop_pool_t *rx_pool, *tx_pool;
	struct reg reg;
	struct io_uring_buf_ring *br;
	size_t br_bytes;
	bool br_registered;
	void *rx_table[RX_ENTRIES];
	struct conn conns[MAX_CONNS];
	struct tx *tx;
	unsigned ntx;
	int tx_free;
	unsigned park_head, park_tail; /* MAX_CONNS: empty */
	uint64_t released_seen;
	struct srv_stats st;
	unsigned char busy_msg[MSG_MIN];
	char why[200];
	bool skipped, failed;
};

static struct io_uring_sqe *get_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	if (!sqe) {
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	return sqe;
}

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
		p.cq_entries = 8192;
		ret = io_uring_queue_init_params(256, ring, &p);
		if (ret != -EINVAL)
			break;
	}
	return ret;
}

static int buf_ring_setup(struct server *s)
{
	size_t len = (size_t)RX_ENTRIES * sizeof(struct io_uring_buf);
	void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	s->br = mem;
	s->br_bytes = len;
	io_uring_buf_ring_init(s->br);
	struct io_uring_buf_reg reg;
	memset(&reg, 0, sizeof reg);
	reg.ring_addr = (uintptr_t)mem;
	reg.ring_entries = RX_ENTRIES;
	reg.bgid = BGID;
	int ret = io_uring_register_buf_ring(&s->ring, &reg, 0);
	if (ret < 0)
		return ret;
	s->br_registered = true;
	return 0;
}

/* Can this kernel do what the server needs? 0, or a negative errno and why. */
static int uring_probe(char *why, size_t whylen)
{
	struct io_uring ring;
	int ret = ring_init(&ring);
	if (ret < 0) {
		snprintf(why, whylen, "io_uring_queue_init: %s%s", strerror(-ret),
			 ret == -EPERM ? " (kernel.io_uring_disabled, or a seccomp filter)" : "");
		return ret;
	}
	struct io_uring_probe *p = io_uring_get_probe_ring(&ring);
	if (!p || !io_uring_opcode_supported(p, IORING_OP_SEND_ZC)) {
		snprintf(why, whylen, "IORING_OP_SEND_ZC (zero-copy send, Linux 6.0) is not supported");
		ret = -EOPNOTSUPP;
	} else if ((ret = io_uring_register_buffers_sparse(&ring, REG_SLOTS)) < 0) {
		snprintf(why, whylen, "sparse registered buffers: %s", strerror(-ret));
	}
	if (p)
		io_uring_free_probe(p);
	io_uring_queue_exit(&ring);
	return ret < 0 ? ret : 0;
}

static void *rx_get(struct server *s)
{
	return iop_buf_alloc(s->rx_pool);
}

static int arm_accept(struct server *s)
{
	struct io_uring_sqe *sqe = get_sqe(&s->ring);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_multishot_accept(sqe, s->lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, UD(UD_ACCEPT, 0));
	s->accept_armed = true;
	return 0;
}

static int arm_recv(struct server *s, unsigned ci)
{
	struct io_uring_sqe *sqe = get_sqe(&s->ring);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_recv_multishot(sqe, s->conns[ci].fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, UD(UD_RECV, ci));
	s->conns[ci].recv_armed = true;
	return 0;
}

static int tx_slot(struct server *s)
{
	int t = s->tx_free;
	if (t >= 0)
		s->tx_free = s->tx[t].next_free;
	return t;
}

static void tx_slot_free(struct server *s, int t)
{
	s->tx[t].buf = NULL;
	s->tx[t].next_free = s->tx_free;
	s->tx_free = t;
}

/* Drop one hold on a response: an operation's (its notification came) or
 * the response's own. The buffer goes back on the last. */
static void tx_put(struct server *s, int t, bool owner)
{
	struct tx *x = &s->tx[t];
	if (owner)
		x->owner = false;
	else
		x->ops--;
	if (x->pooled)
		iop_buf_put(s->tx_pool, x->buf);
	if (x->owner || x->ops)
		return;
	s->st.live_bytes -= x->len;
	if (!x->pooled)
		free(x->buf);
	tx_slot_free(s, t);
}

static int submit_send(struct server *s, int t)
{
	struct tx *x = &s->tx[t];
	struct conn *c = &s->conns[x->conn];
	struct io_uring_sqe *sqe = get_sqe(&s->ring);
	if (!sqe)
		return -EBUSY;
	if (s->mode == M_ZC_POOL) {
		uint64_t h = 0;
		iop_buf_mapping(s->tx_pool, x->buf, &h, NULL);
		io_uring_prep_send_zc_fixed(sqe, c->fd, x->buf + x->off, x->len - x->off, MSG_NOSIGNAL,
					    IORING_SEND_ZC_REPORT_USAGE, (unsigned)h);
		iop_buf_get(s->tx_pool, x->buf); /* the operation's reference */
	} else {
		io_uring_prep_send(sqe, c->fd, x->buf + x->off, x->len - x->off, MSG_NOSIGNAL);
	}
	io_uring_sqe_set_data64(sqe, UD(UD_SEND, t));
	x->ops++;
	s->st.send_ops++;
	c->sending = t;
	return 0;
}

static void park(struct server *s, unsigned ci)
{
	struct conn *c = &s->conns[ci];
	if (c->parked)
		return;
	c->parked = true;
	c->park_next = MAX_CONNS;
	if (s->park_head == MAX_CONNS)
		s->park_head = ci;
	else
		s->conns[s->park_tail].park_next = ci;
	s->park_tail = ci;
	s->st.parked++;
}

static void conn_close(struct server *s, unsigned ci);

/* Start the next response of a connection if none is being sent. Returns
 * false when it had to wait for a buffer (the connection is parked). */
static bool serve(struct server *s, unsigned ci)
{
	struct conn *c = &s->conns[ci];
	while (c->open && !c->closing && c->sending == -1 && c->ph != c->pt) {
		struct pend *p = &c->pend[c->ph % PEND_MAX];
		void *buf = NULL;
		if (s->mode == M_ZC_POOL) {
			/* The default mode: maps a chunk below the limit, fails
			 * at it; never sleeps (IOP_WAIT could not be woken: the
			 * buffers come back through this very loop). */
			int r = iop_buf_alloc_ex(s->tx_pool, &buf, 0, 0);
			if (r != 0) {
				if (!s->o->shed) {
					park(s, ci);
					return false;
				}
				/* Shed: answer busy from a static buffer. */
				struct msg_hdr h;
				memcpy(&h, s->busy_msg, HDR);
				h.seq = p->seq;
				h.csum = csum16(s->busy_msg + HDR, MSG_MIN - HDR) ^ (uint16_t)p->seq;
				unsigned char *m = malloc(MSG_MIN); /* rare: only when shedding */
				if (!m) {
					conn_close(s, ci);
					return false;
				}
				memcpy(m, s->busy_msg, MSG_MIN);
				memcpy(m, &h, HDR);
				int t = tx_slot(s);
				if (t < 0) {
					free(m);
					park(s, ci);
					return false;
				}
				/* A busy reply is a copying send of a malloc()ed copy. */
				s->tx[t] = (struct tx){ .buf = m, .len = MSG_MIN, .conn = (int)ci, .owner = true,
							.next_free = -1 };
				struct io_uring_sqe *sqe = get_sqe(&s->ring);
				if (!sqe) {
					free(m);
					tx_slot_free(s, t);
					return false;
				}
				io_uring_prep_send(sqe, c->fd, m, MSG_MIN, MSG_NOSIGNAL);
				io_uring_sqe_set_data64(sqe, UD(UD_BUSY, t));
				s->tx[t].ops = 1;
				s->st.live_bytes += MSG_MIN;
				c->sending = t;
				s->st.busy++;
				c->ph++;
				return true;
			}
		} else {
			buf = malloc(p->resp_len);
			if (!buf) {
				park(s, ci);
				return false;
			}
		}
		int t = tx_slot(s);
		if (t < 0) { /* more responses in flight than slots: wait */
			if (s->mode == M_ZC_POOL)
				iop_buf_put(s->tx_pool, buf);
			else
				free(buf);
			park(s, ci);
			return false;
		}
		build_msg(buf, MAGIC_RSP, p->resp_len, ST_OK, p->seq);
		s->tx[t] = (struct tx){ .buf = buf, .len = p->resp_len, .conn = (int)ci, .owner = true,
					.pooled = s->mode == M_ZC_POOL, .next_free = -1 };
		s->st.live_bytes += p->resp_len;
		if (s->st.live_bytes > s->st.live_bytes_hw)
			s->st.live_bytes_hw = s->st.live_bytes;
		c->ph++;
		if (submit_send(s, t) != 0) {
			tx_put(s, t, true);
			conn_close(s, ci);
			return false;
		}
		s->st.responses++;
	}
	return true;
}

/* Buffers came back: serve the parked connections, oldest first; those
 * that still find none park again, in the same order. */
static void serve_parked(struct server *s)
{
	unsigned ci = s->park_head;
	s->park_head = s->park_tail = MAX_CONNS;
	while (ci != MAX_CONNS) {
		unsigned next = s->conns[ci].park_next;
		s->conns[ci].parked = false;
		serve(s, ci);
		ci = next;
	}
}

static void conn_close(struct server *s, unsigned ci)
{
	struct conn *c = &s->conns[ci];
	if (!c->open || c->closing)
		return;
	c->closing = true;
	/* Ends the multishot recv and fails a pending send; close() waits for
	 * both to complete (conn_reap). */
	shutdown(c->fd, SHUT_RDWR);
}

/* A closing connection is freed once nothing refers to it. */
static void conn_reap(struct server *s, unsigned ci)
{
	struct conn *c = &s->conns[ci];
	if (!c->open || !c->closing || c->recv_armed || c->sending != -1)
		return;
	if (c->parked) {
		/* unlink from the park FIFO */
		unsigned *pp = &s->park_head, prev = MAX_CONNS;
		while (*pp != MAX_CONNS && *pp != ci) {
			prev = *pp;
			pp = &s->conns[*pp].park_next;
		}
		if (*pp == ci) {
			*pp = c->park_next;
			if (s->park_tail == ci)
				s->park_tail = prev;
		}
		c->parked = false;
	}
	close(c->fd);
	c->open = false;
	c->fd = -1;
}

static void conn_open(struct server *s, int fd)
{
	unsigned ci;
	for (ci = 0; ci < MAX_CONNS && s->conns[ci].open; ci++)
		;
	if (ci == MAX_CONNS) {
		close(fd);
		s->st.overflow++;
		return;
	}
	struct conn *c = &s->conns[ci];
	struct pend *pend = c->pend;
	memset(c, 0, sizeof *c);
	c->pend = pend;
	c->fd = fd;
	c->open = true;
	c->sending = -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	s->st.accepted++;
	if (arm_recv(s, ci) != 0)
		conn_close(s, ci);
}

/* Parse received bytes of a connection. Returns false when the stream is
 * malformed (the connection is then closed). */
static bool parse(struct server *s, unsigned ci, const unsigned char *p, size_t n)
{
	struct conn *c = &s->conns[ci];
	while (n) {
		if (c->hdr_have < HDR) {
			size_t k = HDR - c->hdr_have < n ? HDR - c->hdr_have : n;
			memcpy(c->hdr + c->hdr_have, p, k);
			c->hdr_have += (unsigned)k;
			p += k;
			n -= k;
			if (c->hdr_have < HDR)
				return true;
			memcpy(&c->req, c->hdr, HDR);
			if (c->req.magic != MAGIC_REQ || c->req.len < MSG_MIN || c->req.len > MSG_MAX ||
			    c->req.status < MSG_MIN || c->req.status > s->o->resp_size)
				return false;
			c->body_left = c->req.len - HDR;
			c->body_off = 0;
			c->sum = 0;
		}
		size_t k = c->body_left < n ? c->body_left : n;
		c->sum = csum_piece(c->sum, p, k, c->body_off);
		c->body_off += (uint32_t)k;
		c->body_left -= (uint32_t)k;
		p += k;
		n -= k;
		if (c->body_left)
			return true;
		if ((c->sum ^ (uint16_t)c->req.seq) != c->req.csum)
			return false;
		s->st.requests++;
		c->hdr_have = 0;
		if (c->pt - c->ph == PEND_MAX) {
			s->st.overflow++; /* a client pipelining without end */
			return false;
		}
		c->pend[c->pt % PEND_MAX] = (struct pend){ .seq = c->req.seq, .resp_len = c->req.status };
		c->pt++;
	}
	return true;
}

static void on_send(struct server *s, int t, struct io_uring_cqe *cqe)
{
	struct tx *x = &s->tx[t];
	if (cqe->flags & IORING_CQE_F_NOTIF) {
		s->st.notifs++;
		if (cqe->res & IORING_NOTIF_USAGE_ZC_COPIED)
			s->st.notif_copied++;
		tx_put(s, t, false);
		return;
	}
	int ci = x->conn;
	bool more = cqe->flags & IORING_CQE_F_MORE; /* a notification follows */
	if (cqe->res >= 0)
		x->off += (uint32_t)cqe->res;
	if (!more)
		tx_put(s, t, false); /* no notification: the reference is ours to put */
	struct conn *c = &s->conns[ci];
	c->sending = -1;
	if (cqe->res < 0) {
		if (cqe->res == -ECONNRESET || cqe->res == -EPIPE)
			s->st.resets++;
		else
			s->st.send_err++;
		tx_put(s, t, true);
		conn_close(s, (unsigned)ci);
		conn_reap(s, (unsigned)ci);
		return;
	}
	if (x->off < x->len && !c->closing) {
		s->st.partial++;
		if (submit_send(s, t) == 0)
			return;
	}
	tx_put(s, t, true);
	if (c->closing)
		conn_reap(s, (unsigned)ci);
	else
		serve(s, (unsigned)ci);
}

static void on_busy(struct server *s, int t, struct io_uring_cqe *cqe)
{
	int ci = s->tx[t].conn;
	s->tx[t].ops = 0;
	tx_put(s, t, true);
	struct conn *c = &s->conns[ci];
	c->sending = -1;
	if (cqe->res < 0) {
		s->st.resets++;
		conn_close(s, (unsigned)ci);
		conn_reap(s, (unsigned)ci);
		return;
	}
	serve(s, (unsigned)ci);
}

/* The receive buffers of one batch go back, and their ring slots are
 * refilled from the pool (the buffer just put comes straight back). */
static void rx_refill(struct server *s, const unsigned short *bids, unsigned n)
{
	unsigned mask = (unsigned)io_uring_buf_ring_mask(RX_ENTRIES), k = 0;
	for (unsigned i = 0; i < n; i++) {
		iop_buf_put(s->rx_pool, s->rx_table[bids[i]]);
		void *p = rx_get(s);
		s->rx_table[bids[i]] = p;
		if (!p)
			continue; /* the slot stays empty: ENOBUFS, counted */
		io_uring_buf_ring_add(s->br, p, RX_BUF, bids[i], (int)mask, (int)k++);
	}
	if (k)
		io_uring_buf_ring_advance(s->br, (int)k);
}

static void server_teardown(struct server *s)
{
	if (s->br_registered)
		io_uring_unregister_buf_ring(&s->ring, BGID);
	if (s->br)
		munmap(s->br, s->br_bytes);
	for (unsigned i = 0; i < RX_ENTRIES; i++)
		if (s->rx_table[i])
			iop_buf_put(s->rx_pool, s->rx_table[i]);
	for (unsigned i = 0; i < MAX_CONNS; i++) {
		if (s->conns[i].open)
			close(s->conns[i].fd);
		free(s->conns[i].pend);
	}
	if (s->lfd >= 0)
		close(s->lfd);
}

/* ------------------------------------------------------------------ */
/* The load generator                                                  */
/* ------------------------------------------------------------------ */

enum ckind { C_NORMAL, C_STALL, C_RESET, C_BAD };

struct cconn {
	int fd;
	enum ckind kind;
	unsigned char *rbuf;
	uint32_t rhave;
	unsigned char *wbuf;
	uint32_t woff, wlen;
	uint64_t next_seq, expect_seq;
	uint64_t t_sent;
	unsigned outstanding;
	bool reading, done;
	uint64_t stall_until;
};

struct client {
	pthread_t th;
	const struct opts *o;
	uint16_t port;
	int cpu;
	uint64_t end_ns;
	uint64_t ok, busy, bad, bytes, stall_ok, bad_closed, resets_sent, conn_err;
	uint64_t *lat;
	uint64_t nlat;
	int err;
	_Atomic int done;
};

static int connect_to(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static bool write_all(int fd, const unsigned char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd pf = { .fd = fd, .events = POLLOUT };
				poll(&pf, 1, 100);
				continue;
			}
			return false;
		}
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* A connection whose receive window stays tiny, so that the server's sends
 * to it block in the kernel (a reset then comes mid-send). */
static int connect_to_small(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int small = 4096;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* Check a whole response at c->rbuf. */
static bool check_response(struct client *cl, struct cconn *c)
{
	struct msg_hdr h;
	memcpy(&h, c->rbuf, HDR);
	if (h.magic != MAGIC_RSP || h.seq != c->expect_seq)
		return false;
	uint32_t want = h.status == ST_BUSY ? MSG_MIN : cl->o->resp_size;
	if (h.len != want || (csum16(c->rbuf + HDR, h.len - HDR) ^ (uint16_t)h.seq) != h.csum)
		return false;
	if (h.status == ST_BUSY)
		cl->busy++;
	else
		cl->ok++;
	cl->bytes += h.len;
	return true;
}

static void send_request(struct client *cl, struct cconn *c)
{
	build_msg(c->wbuf, MAGIC_REQ, cl->o->req_size, cl->o->resp_size, c->next_seq++);
	c->wlen = cl->o->req_size;
	c->woff = 0;
	c->t_sent = mono_ns();
	c->outstanding++;
}

/* Read what is there; handle every complete response. Returns false on a
 * closed or failed connection. */
static bool client_read(struct client *cl, struct cconn *c)
{
	for (;;) {
		uint32_t need = HDR;
		if (c->rhave >= HDR) {
			struct msg_hdr h;
			memcpy(&h, c->rbuf, HDR);
			need = h.len >= HDR && h.len <= MSG_MAX ? h.len : HDR;
			if (h.len < HDR || h.len > MSG_MAX) {
				cl->bad++;
				return false;
			}
		}
		if (c->rhave < need) {
			ssize_t r = recv(c->fd, c->rbuf + c->rhave, need - c->rhave, MSG_DONTWAIT);
			if (r == 0)
				return false;
			if (r < 0)
				return errno == EAGAIN || errno == EINTR;
			c->rhave += (uint32_t)r;
			continue;
		}
		if (!check_response(cl, c))
			cl->bad++;
		else if (c->kind == C_STALL)
			cl->stall_ok++;
		else if (cl->nlat < LAT_MAX)
			cl->lat[cl->nlat++] = mono_ns() - c->t_sent;
		c->expect_seq++;
		c->outstanding--;
		c->rhave = 0;
		if (c->kind == C_NORMAL) {
			if (mono_ns() < cl->end_ns) {
				send_request(cl, c);
				if (!write_all(c->fd, c->wbuf, c->wlen))
					return false;
			} else {
				c->done = true;
				return true;
			}
		} else if (c->outstanding == 0) {
			c->done = true;
			return true;
		}
	}
}

/* The bad clients of the test form, one after the other. */
static void client_bad(struct client *cl)
{
	/* A malformed header: the server must count it and close. */
	int fd = connect_to(cl->port);
	if (fd >= 0) {
		unsigned char junk[HDR];
		memset(junk, 0xee, sizeof junk);
		if (write_all(fd, junk, sizeof junk)) {
			struct pollfd pf = { .fd = fd, .events = POLLIN };
			unsigned char b[64];
			if (poll(&pf, 1, 2000) == 1) {
				ssize_t r = recv(fd, b, sizeof b, 0);
				if (r <= 0)
					cl->bad_closed++;
			}
		}
		close(fd);
	}
	/* A reset while the server sends: many pipelined requests for the
	 * largest responses, none read, then SO_LINGER 0. */
	fd = connect_to_small(cl->port);
	if (fd >= 0) {
		unsigned char *req = malloc(MSG_MAX);
		if (req) {
			for (unsigned i = 0; i < 256; i++) {
				build_msg(req, MAGIC_REQ, MSG_MIN, cl->o->resp_size, i);
				if (!write_all(fd, req, MSG_MIN))
					break;
			}
			free(req);
		}
		struct timespec ts = { 0, 20000000 }; /* let the server start sending */
		nanosleep(&ts, NULL);
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		close(fd);
		cl->resets_sent++;
	}
}

static void *client_main(void *arg)
{
	struct client *cl = arg;
	const struct opts *o = cl->o;
	if (cl->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cl->cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof set, &set);
	}
	unsigned n = o->conns + (o->stall_ms ? 1u : 0u);
	struct cconn *cs = calloc(n, sizeof *cs);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (!cs || ep < 0) {
		cl->err = ENOMEM;
		goto out;
	}
	if (o->quick)
		client_bad(cl);
	uint64_t t0 = mono_ns();
	for (unsigned i = 0; i < n; i++) {
		struct cconn *c = &cs[i];
		c->kind = i < o->conns ? C_NORMAL : C_STALL;
		c->fd = connect_to(cl->port);
		c->rbuf = malloc(MSG_MAX);
		c->wbuf = malloc(MSG_MAX);
		if (c->fd < 0 || !c->rbuf || !c->wbuf) {
			cl->err = c->fd < 0 ? -c->fd : ENOMEM;
			c->done = true;
			continue;
		}
		if (c->kind == C_STALL) {
			/* Pipelined requests for more bytes than the send pool
			 * holds, not read until the stall ends. */
			unsigned k = (unsigned)(((uint64_t)o->send_limit * 4u) > PEND_MAX / 2 ? PEND_MAX / 2
										: o->send_limit * 4u);
			for (unsigned j = 0; j < k; j++) {
				send_request(cl, c);
				if (!write_all(c->fd, c->wbuf, c->wlen)) {
					cl->conn_err++;
					break;
				}
			}
			c->stall_until = t0 + (uint64_t)o->stall_ms * 1000000u;
			continue;
		}
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
		send_request(cl, c);
		if (!write_all(c->fd, c->wbuf, c->wlen))
			cl->conn_err++;
	}
	for (;;) {
		unsigned open = 0;
		uint64_t now = mono_ns();
		for (unsigned i = 0; i < n; i++) {
			struct cconn *c = &cs[i];
			if (!c->done)
				open++;
			if (c->kind == C_STALL && !c->reading && !c->done && now >= c->stall_until) {
				c->reading = true;
				struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };
				epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
			}
		}
		if (!open || g_stop || now > cl->end_ns + 5000000000u)
			break;
		struct epoll_event evs[64];
		int k = epoll_wait(ep, evs, 64, 10);
		for (int i = 0; i < k; i++) {
			struct cconn *c = &cs[evs[i].data.u32];
			if (c->done)
				continue;
			if (!client_read(cl, c)) {
				cl->conn_err++;
				c->done = true;
			}
			if (c->done)
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
		}
	}
	for (unsigned i = 0; i < n; i++) {
		if (!cs[i].done && cs[i].fd >= 0)
			cl->conn_err++; /* never finished: counted as a failure */
		if (cs[i].fd >= 0)
			close(cs[i].fd);
		free(cs[i].rbuf);
		free(cs[i].wbuf);
	}
out:
	free(cs);
	if (ep >= 0)
		close(ep);
	atomic_store_explicit(&cl->done, 1, memory_order_release);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* One run                                                             */
/* ------------------------------------------------------------------ */

struct result {
	bool ran, failed, skipped;
	char why[200];
	struct srv_stats st;
	double wall_ns;
	uint64_t ok, busy, bad, bytes, stall_ok, bad_closed, resets_sent, conn_err;
	double p50, p99, p999;
	uint64_t high_water, limit, limit_hits, chunks, bytes_mapped, map_calls, unmap_calls, in_flight_end;
	uint64_t rx_map_calls;
	int audit, destroy;
};

static int g_srv_cpu = -1, g_cli_cpu = -1;

static void note_fail(struct result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_fail(struct result *res, const char *fmt, ...)
{
	va_list ap;
	res->failed = true;
	fputs("tcp_zc: FAIL: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void finish_pool(struct result *res, iop_pool_t *pool, const char *what, bool tx, bool verbose)
{
	struct iop_pool_stats st;
	memset(&st, 0, sizeof st);
	st.struct_size = sizeof st;
	iop_pool_stats(pool, &st);
	if (verbose)
		iop_pool_stats_print(pool, stdout, IOP_FMT_TEXT);
	if (st.in_flight)
		note_fail(res, "%s: %" PRIu64 " buffers still in flight (leaked)", what, st.in_flight);
	if (tx) {
		res->high_water = st.high_water;
		res->limit = st.limit;
		res->limit_hits = st.limit_hits;
		res->chunks = st.chunk_acquire;
		res->bytes_mapped = st.chunk_acquire * st.chunk_size;
		res->map_calls = st.map_calls;
		res->in_flight_end = st.in_flight;
		if (st.limit && st.high_water > st.limit)
			note_fail(res, "%s: high water %" PRIu64 " above the limit %" PRIu64, what, st.high_water,
				  st.limit);
	} else {
		res->rx_map_calls = st.map_calls;
	}
	int a = iop_pool_audit(pool);
	if (a)
		note_fail(res, "%s: iop_pool_audit returned %d", what, a);
	res->audit |= a;
	int d = iop_pool_destroy(pool);
	if (d)
		note_fail(res, "%s: iop_pool_destroy returned %d", what, d);
	res->destroy |= d;
}

static int listen_socket(uint16_t *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0 };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t al = sizeof a;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 512) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

static iop_pool_t *make_pool(const char *name, size_t obj, uint64_t limit, struct reg *reg)
{
	struct iop_pool_params p = IOP_POOL_PARAMS_INIT;
	p.name = name;
	p.obj_size = obj;
	p.flags = IOP_F_REFCOUNT;
	p.limit = limit;
	if (reg) {
		p.map = reg_map;
		p.unmap = reg_unmap;
		p.release = send_release;
		p.hook_arg = reg;
	}
	iop_pool_t *pool = iop_pool_create(&p);
	if (!pool)
		fprintf(stderr, "tcp_zc: iop_pool_create(%s): %s\n", name, strerror(errno));
	return pool;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void run_mode(enum mode m, const struct opts *o, struct result *res)
{
	const char *name = mode_name[m];
	struct server *s = calloc(1, sizeof *s);
	struct client *cl = calloc(1, sizeof *cl);
	bool client_running = false;
	res->ran = true;
	if (!s || !cl) {
		note_fail(res, "%s: out of memory", name);
		free(s);
		free(cl);
		return;
	}
	s->mode = m;
	s->o = o;
	s->lfd = -1;
	s->tx_free = -1;
	s->park_head = s->park_tail = MAX_CONNS;
	for (unsigned i = 0; i < MAX_CONNS; i++) {
		s->conns[i].fd = -1;
		s->conns[i].pend = malloc(PEND_MAX * sizeof(struct pend));
		if (!s->conns[i].pend) {
			note_fail(res, "%s: out of memory", name);
			goto out;
		}
	}
	build_msg(s->busy_msg, MAGIC_RSP, MSG_MIN, ST_BUSY, 0);
	/* Responses in flight at once: the pool's limit, and as many for a
	 * copying server (whose memory is not bounded otherwise). */
	s->ntx = o->send_limit + MAX_CONNS;
	s->tx = calloc(s->ntx, sizeof *s->tx);
	if (!s->tx) {
		note_fail(res, "%s: out of memory", name);
		goto out;
	}
	for (unsigned i = s->ntx; i-- > 0;)
		tx_slot_free(s, (int)i);
	int ret = ring_init(&s->ring);
	if (ret < 0) {
		snprintf(res->why, sizeof res->why, "io_uring_queue_init: %s", strerror(-ret));
		res->skipped = true;
		goto out;
	}
	s->ring_ok = true;
	s->reg.ring = &s->ring;
	if ((ret = io_uring_register_buffers_sparse(&s->ring, REG_SLOTS)) < 0) {
		snprintf(res->why, sizeof res->why, "io_uring_register_buffers_sparse: %s", strerror(-ret));
		res->skipped = true;
		goto out;
	}
	s->rx_pool = make_pool("tcp-rx", RX_BUF, 0, NULL);
	if (m == M_ZC_POOL)
		s->tx_pool = make_pool("tcp-tx", o->resp_size, o->send_limit, &s->reg);
	if (!s->rx_pool || (m == M_ZC_POOL && !s->tx_pool)) {
		note_fail(res, "%s: pools could not be created", name);
		goto out;
	}
	if ((ret = buf_ring_setup(s)) < 0) {
		snprintf(res->why, sizeof res->why, "provided buffer ring: %s", strerror(-ret));
		res->skipped = true;
		goto out;
	}
	unsigned mask = (unsigned)io_uring_buf_ring_mask(RX_ENTRIES);
	for (unsigned i = 0; i < RX_ENTRIES; i++) {
		s->rx_table[i] = rx_get(s);
		if (!s->rx_table[i]) {
			note_fail(res, "%s: filling the receive ring: %s", name, strerror(errno));
			goto out;
		}
		io_uring_buf_ring_add(s->br, s->rx_table[i], RX_BUF, (unsigned short)i, (int)mask, (int)i);
	}
	io_uring_buf_ring_advance(s->br, RX_ENTRIES);
	s->lfd = listen_socket(&s->port);
	if (s->lfd < 0) {
		note_fail(res, "%s: listen: %s", name, strerror(-s->lfd));
		goto out;
	}
	if (arm_accept(s) != 0 || io_uring_submit(&s->ring) < 0) {
		note_fail(res, "%s: arming accept failed", name);
		goto out;
	}

	cl->o = o;
	cl->port = s->port;
	cl->cpu = g_cli_cpu;
	cl->lat = malloc(LAT_MAX * sizeof *cl->lat);
	if (!cl->lat) {
		note_fail(res, "%s: out of memory", name);
		goto out;
	}
	uint64_t t0 = mono_ns(), cpu0 = thread_cpu_ns();
	cl->end_ns = t0 + (uint64_t)o->duration_ms * 1000000u;
	if ((ret = pthread_create(&cl->th, NULL, client_main, cl)) != 0) {
		note_fail(res, "%s: pthread_create: %s", name, strerror(ret));
		goto out;
	}
	client_running = true;

	struct io_uring_cqe *cqes[256];
	unsigned short bids[256];
	uint64_t deadline = cl->end_ns + 10000000000u; /* 10 s past the end: give up */
	bool client_done = false;
	for (;;) {
		if (!client_done && atomic_load_explicit(&cl->done, memory_order_acquire))
			client_done = true;
		if (client_done) {
			/* Finished when every connection is closed and every
			 * notification has come. */
			bool busy = false;
			for (unsigned i = 0; i < MAX_CONNS && !busy; i++)
				busy = s->conns[i].open;
			if (!busy && s->st.live_bytes == 0)
				break;
			if (mono_ns() > deadline) {
				note_fail(res, "%s: the server did not wind down (live bytes %" PRIu64 ")", name,
					  s->st.live_bytes);
				break;
			}
		}
		if (g_stop)
			break;
		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 10000000 };
		ret = io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, &ts, NULL);
		if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
			note_fail(res, "%s: io_uring_submit_and_wait_timeout: %s", name, strerror(-ret));
			break;
		}
		if (IO_URING_READ_ONCE(*s->ring.sq.kflags) & IORING_SQ_CQ_OVERFLOW)
			s->st.cq_overflow++;
		unsigned n = io_uring_peek_batch_cqe(&s->ring, cqes, 256);
		unsigned nb = 0;
		for (unsigned i = 0; i < n; i++) {
			cqe = cqes[i];
			uint64_t ud = io_uring_cqe_get_data64(cqe);
			unsigned kind = (unsigned)(ud & 15u), idx = (unsigned)(ud >> 4);
			switch (kind) {
			case UD_ACCEPT:
				if (cqe->res >= 0)
					conn_open(s, cqe->res);
				if (!(cqe->flags & IORING_CQE_F_MORE))
					arm_accept(s);
				break;
			case UD_RECV: {
				struct conn *c = &s->conns[idx];
				if (cqe->flags & IORING_CQE_F_BUFFER) {
					unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
					if (cqe->res > 0 && !c->closing &&
					    !parse(s, idx, s->rx_table[bid], (size_t)cqe->res)) {
						s->st.malformed++;
						conn_close(s, idx);
					}
					bids[nb++] = (unsigned short)bid;
				} else if (cqe->res == -ENOBUFS) {
					s->st.enobufs++;
				} else if (cqe->res == -ECONNRESET) {
					s->st.resets++;
					conn_close(s, idx);
				} else if (cqe->res <= 0 && !c->closing) {
					conn_close(s, idx); /* EOF or an error */
				}
				if (!(cqe->flags & IORING_CQE_F_MORE)) {
					c->recv_armed = false;
					if (!c->closing && c->open) {
						s->st.rearm++;
						arm_recv(s, idx);
					}
				}
				if (!c->closing)
					serve(s, idx);
				conn_reap(s, idx);
				break;
			}
			case UD_SEND:
				on_send(s, (int)idx, cqe);
				break;
			case UD_BUSY:
				on_busy(s, (int)idx, cqe);
				break;
			default:
				break;
			}
		}
		io_uring_cq_advance(&s->ring, n);
		if (nb)
			rx_refill(s, bids, nb);
		if (s->released_seen != s->reg.released || (m == M_COPY_MALLOC && s->park_head != MAX_CONNS)) {
			s->released_seen = s->reg.released;
			serve_parked(s);
		}
	}
	res->wall_ns = (double)(mono_ns() - t0);
	s->st.cpu_ns = (double)(thread_cpu_ns() - cpu0);

out:
	if (client_running) {
		pthread_join(cl->th, NULL);
		res->ok = cl->ok;
		res->busy = cl->busy;
		res->bad = cl->bad;
		res->bytes = cl->bytes;
		res->stall_ok = cl->stall_ok;
		res->bad_closed = cl->bad_closed;
		res->resets_sent = cl->resets_sent;
		res->conn_err = cl->conn_err;
		if (cl->err)
			note_fail(res, "%s: client: %s", name, strerror(cl->err));
		if (cl->nlat) {
			qsort(cl->lat, cl->nlat, sizeof *cl->lat, cmp_u64);
			res->p50 = (double)cl->lat[cl->nlat / 2];
			res->p99 = (double)cl->lat[(size_t)((double)cl->nlat * 0.99)];
			res->p999 = (double)cl->lat[(size_t)((double)cl->nlat * 0.999)];
		}
		res->wall_ns = res->wall_ns > 0 ? res->wall_ns : 1;
	}
	free(cl->lat);
	free(cl);
	res->st = s->st;
	server_teardown(s);
	if (s->tx_pool)
		finish_pool(res, s->tx_pool, "tcp-tx", true, o->verbose);
	if (s->rx_pool)
		finish_pool(res, s->rx_pool, "tcp-rx", false, o->verbose);
	res->unmap_calls = s->reg.unmaps;
	if (s->tx_pool && res->destroy == 0 && s->reg.unmaps != s->reg.maps)
		note_fail(res, "%s: unmap hook called %" PRIu64 " times for %" PRIu64 " maps", name, s->reg.unmaps,
			  s->reg.maps);
	if (s->reg.err)
		note_fail(res, "%s: a registration hook failed: %s", name, strerror(-s->reg.err));
	if (s->ring_ok)
		io_uring_queue_exit(&s->ring);
	free(s->tx);
	free(s);
}

/* ------------------------------------------------------------------ */
/* Report                                                              */
/* ------------------------------------------------------------------ */

static void check_result(enum mode m, const struct opts *o, struct result *x)
{
	const char *name = mode_name[m];
	if (!x->ran || x->skipped || g_stop)
		return;
	if (x->ok == 0)
		note_fail(x, "%s: no response arrived", name);
	if (x->bad)
		note_fail(x, "%s: %" PRIu64 " responses failed verification", name, x->bad);
	if (x->conn_err)
		note_fail(x, "%s: %" PRIu64 " client connections failed", name, x->conn_err);
	if (o->quick) {
		if (x->st.malformed != 1 || x->bad_closed != 1)
			note_fail(x, "%s: the malformed request: server counted %" PRIu64 ", client saw %" PRIu64
				  " closed", name, x->st.malformed, x->bad_closed);
		if (x->st.resets == 0)
			note_fail(x, "%s: the reset connection was not counted", name);
	}
	if (o->stall_ms) {
		uint64_t k = (uint64_t)o->send_limit * 4u > PEND_MAX / 2 ? PEND_MAX / 2 : (uint64_t)o->send_limit * 4u;
		if (x->stall_ok + (o->shed ? 0 : 0) < k && !o->shed)
			note_fail(x, "%s: the stalled client got %" PRIu64 " of %" PRIu64 " responses", name, x->stall_ok,
				  k);
		if (m == M_ZC_POOL && x->limit_hits == 0)
			note_fail(x, "%s: the stalled client never brought the send pool to its limit", name);
		if (m == M_ZC_POOL && !o->shed && x->st.parked == 0)
			note_fail(x, "%s: nothing waited for a buffer while the client stalled", name);
		if (m == M_ZC_POOL && o->shed && x->st.busy == 0)
			note_fail(x, "%s: nothing was shed while the client stalled", name);
	}
	if (m == M_ZC_POOL && x->st.notifs != x->st.send_ops - x->st.send_err - x->st.resets &&
	    x->st.notifs > x->st.send_ops)
		note_fail(x, "%s: %" PRIu64 " notifications for %" PRIu64 " zero-copy sends", name, x->st.notifs,
			  x->st.send_ops);
}

struct agg {
	unsigned n;
	double rps[16], cpu[16], p50[16], p99[16];
	uint64_t hw_bytes, mapped, ok, busy, parked, resets, malformed, copied, notifs, high_water;
	bool failed;
};

static double median(double *v, unsigned n)
{
	if (!n)
		return 0;
	for (unsigned i = 1; i < n; i++)
		for (unsigned j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void agg_add(struct agg *a, const struct result *x)
{
	uint64_t done = x->ok + x->busy;
	if (a->n < 16) {
		a->rps[a->n] = (double)done / (x->wall_ns / 1e9);
		a->cpu[a->n] = done ? x->st.cpu_ns / (double)done : 0;
		a->p50[a->n] = x->p50;
		a->p99[a->n] = x->p99;
		a->n++;
	}
	if (x->st.live_bytes_hw > a->hw_bytes)
		a->hw_bytes = x->st.live_bytes_hw;
	if (x->bytes_mapped > a->mapped)
		a->mapped = x->bytes_mapped;
	if (x->high_water > a->high_water)
		a->high_water = x->high_water;
	a->ok += x->ok;
	a->busy += x->busy;
	a->parked += x->st.parked;
	a->resets += x->st.resets;
	a->malformed += x->st.malformed;
	a->copied += x->st.notif_copied;
	a->notifs += x->st.notifs;
	a->failed |= x->failed;
}

static void print_table(const struct opts *o, struct agg *a)
{
	printf("\n%-12s %4s %10s %11s %9s %9s %12s %11s %10s %7s %7s %8s\n", "mode", "reps", "req/s",
	       "cpu ns/req", "p50 us", "p99 us", "live hw KiB", "mapped KiB", "responses", "busy", "parked",
	       "notif cp");
	for (int m = 0; m < M_COUNT; m++) {
		struct agg *x = &a[m];
		if (!(o->modes & (1u << m)) || !x->n)
			continue;
		char cp[32] = "-";
		if (m == M_ZC_POOL)
			snprintf(cp, sizeof cp, "%" PRIu64 "/%" PRIu64, x->copied, x->notifs);
		printf("%-12s %4u %10.0f %11.0f %9.1f %9.1f %12.0f %11.0f %10" PRIu64 " %7" PRIu64 " %7" PRIu64
		       " %8s%s\n",
		       mode_name[m], x->n, median(x->rps, x->n), median(x->cpu, x->n), median(x->p50, x->n) / 1e3,
		       median(x->p99, x->n) / 1e3, (double)x->hw_bytes / 1024, (double)x->mapped / 1024, x->ok,
		       x->busy, x->parked, cp, x->failed ? "  FAILED" : "");
	}
}

static int append_json(const struct opts *o, struct agg *a)
{
	FILE *f = fopen(o->json, "a");
	if (!f) {
		fprintf(stderr, "tcp_zc: %s: %s\n", o->json, strerror(errno));
		return -1;
	}
	for (int m = 0; m < M_COUNT; m++) {
		struct agg *x = &a[m];
		if (!(o->modes & (1u << m)) || !x->n)
			continue;
		fprintf(f,
			"{\"case\": \"tcp_zc\", \"param\": \"%uB/%uB\", \"server\": \"%s\", \"reps\": %u, "
			"\"conns\": %u, \"rps\": %.0f, \"cpu_ns_per_req\": %.1f, \"p50_ns\": %.0f, \"p99_ns\": %.0f, "
			"\"live_bytes_hw\": %" PRIu64 ", \"pool_bytes_mapped\": %" PRIu64 ", \"pool_high_water\": %" PRIu64
			", \"send_limit\": %u, \"responses\": %" PRIu64 ", \"busy\": %" PRIu64 ", \"parked\": %" PRIu64
			", \"notifs\": %" PRIu64 ", \"notifs_copied\": %" PRIu64 ", \"srv_cpu\": %d, \"cli_cpu\": %d, "
			"\"status\": \"%s\"}\n",
			o->req_size, o->resp_size, mode_name[m], x->n, o->conns, median(x->rps, x->n),
			median(x->cpu, x->n), median(x->p50, x->n), median(x->p99, x->n), x->hw_bytes, x->mapped,
			x->high_water, o->send_limit, x->ok, x->busy, x->parked, x->notifs, x->copied, g_srv_cpu,
			g_cli_cpu, x->failed ? "failed" : "ok");
	}
	int bad = ferror(f);
	if (fclose(f) != 0 || bad)
		return -1;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Main                                                                */
/* ------------------------------------------------------------------ */

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: iop-tcp-zc [options]\n"
		"  --mode M          zc-pool, copy-malloc or all (default all)\n"
		"  --conns N         client connections, one request in flight each (default 16)\n"
		"  --req-size N      request bytes, header included, %u..%u (default 64)\n"
		"  --resp-size N     response bytes, header included, %u..%u (default 4096)\n"
		"  --duration-ms N   load per run (default 2000; --quick 400)\n"
		"  --reps N          repetitions, medians reported (default 3; --quick 1)\n"
		"  --send-limit N    the send pool's limit in buffers (default 64)\n"
		"  --on-full wait|shed  what the server does at the limit (default wait)\n"
		"  --stall-ms N      add a client that pipelines requests and does not read for N ms\n"
		"                    (default 0; --quick 300, with --send-limit 16)\n"
		"  --quick           the short test form: also a malformed request and a reset peer\n"
		"  --json PATH       append one JSON object per mode to PATH (JSON lines)\n"
		"  -v, --verbose     pool statistics, per-run details\n"
		"exit: 0 ok, 1 a check failed, 2 usage, 77 io_uring/SEND_ZC not available\n",
		MSG_MIN, MSG_MAX, MSG_MIN, MSG_MAX);
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

static bool in_range(uint64_t n, uint64_t lo, uint64_t hi)
{
	return n >= lo && n <= hi;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	bool dur_set = false, reps_set = false, stall_set = false, limit_set = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t n;
#define NEED_NUM(lo, hi)                                                                    \
	do {                                                                                \
		if (!v || !parse_u64(v, &n) || !in_range(n, (lo), (hi))) {                  \
			fprintf(stderr, "tcp_zc: %s wants a number from %llu to %llu\n", a, \
				(unsigned long long)(lo), (unsigned long long)(hi));        \
			return -1;                                                          \
		}                                                                           \
		i++;                                                                        \
	} while (0)
		if (!strcmp(a, "--quick")) {
			o->quick = true;
		} else if (!strcmp(a, "--conns")) {
			NEED_NUM(1, MAX_CONNS - 8);
			o->conns = (unsigned)n;
		} else if (!strcmp(a, "--req-size")) {
			NEED_NUM(MSG_MIN, MSG_MAX);
			o->req_size = (unsigned)n;
		} else if (!strcmp(a, "--resp-size")) {
			NEED_NUM(MSG_MIN, MSG_MAX);
			o->resp_size = (unsigned)n;
		} else if (!strcmp(a, "--duration-ms")) {
			NEED_NUM(50, 600000);
			o->duration_ms = (unsigned)n;
			dur_set = true;
		} else if (!strcmp(a, "--reps")) {
			NEED_NUM(1, 16);
			o->reps = (unsigned)n;
			reps_set = true;
		} else if (!strcmp(a, "--send-limit")) {
			NEED_NUM(4, 100000);
			o->send_limit = (unsigned)n;
			limit_set = true;
		} else if (!strcmp(a, "--stall-ms")) {
			NEED_NUM(0, 60000);
			o->stall_ms = (unsigned)n;
			stall_set = true;
		} else if (!strcmp(a, "--on-full")) {
			if (!v || (strcmp(v, "wait") && strcmp(v, "shed"))) {
				fprintf(stderr, "tcp_zc: --on-full wants wait or shed\n");
				return -1;
			}
			o->shed = !strcmp(v, "shed");
			i++;
		} else if (!strcmp(a, "--json")) {
			if (!v) {
				fprintf(stderr, "tcp_zc: --json wants a path\n");
				return -1;
			}
			o->json = v;
			i++;
		} else if (!strcmp(a, "--mode")) {
			if (!v) {
				fprintf(stderr, "tcp_zc: --mode wants a mode\n");
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
					fprintf(stderr, "tcp_zc: unknown mode '%s'\n", v);
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
			fprintf(stderr, "tcp_zc: unknown option '%s'\n", a);
			return -1;
		}
#undef NEED_NUM
	}
	if (o->quick) {
		if (!dur_set)
			o->duration_ms = 400;
		if (!reps_set)
			o->reps = 1;
		if (!stall_set)
			o->stall_ms = 300;
		/* A limit far below what one socket's buffers hold, so that the
		 * stalled client surely brings the pool to it at any speed. */
		if (!limit_set)
			o->send_limit = 16;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = {
		.conns = 16,
		.req_size = 64,
		.resp_size = 4096,
		.duration_ms = 2000,
		.reps = 3,
		.send_limit = 64,
		.modes = (1u << M_COUNT) - 1,
	};
	if (parse_args(argc, argv, &o) != 0) {
		usage(stderr);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	char why[200];
	if (uring_probe(why, sizeof why) != 0) {
		printf("tcp_zc: skipped: %s\n", why);
		return EXIT_SKIP;
	}
	pattern_init();
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) >= 2) {
		int found[2], n = 0;
		for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
			if (CPU_ISSET(c, &set))
				found[n++] = c;
		cpu_set_t one;
		CPU_ZERO(&one);
		CPU_SET(found[0], &one);
		if (sched_setaffinity(0, sizeof one, &one) == 0) {
			g_srv_cpu = found[0];
			g_cli_cpu = found[1];
		}
	}
	printf("iop-tcp-zc: TCP on 127.0.0.1, %u connections, requests %u B, responses %u B, %u ms x %u reps"
	       " per mode; send pool limit %u buffers, at the limit: %s%s\n",
	       o.conns, o.req_size, o.resp_size, o.duration_ms, o.reps, o.send_limit, o.shed ? "shed" : "wait",
	       o.stall_ms ? ", with a client that stalls" : "");
	if (g_srv_cpu >= 0)
		printf("pinned: server on CPU %d, clients on CPU %d\n", g_srv_cpu, g_cli_cpu);
	printf("cpu ns/req: the server thread's CLOCK_THREAD_CPUTIME_ID / responses; latency: request written"
	       " to response verified, at the client; live hw: most response bytes held at once\n");

	struct agg agg[M_COUNT];
	memset(agg, 0, sizeof agg);
	int rc = 0;
	bool skipped = false;
	for (unsigned rep = 0; rep < o.reps && !g_stop; rep++) {
		for (int m = 0; m < M_COUNT && !g_stop; m++) {
			if (!(o.modes & (1u << m)))
				continue;
			struct result res;
			memset(&res, 0, sizeof res);
			run_mode((enum mode)m, &o, &res);
			if (res.skipped) {
				printf("tcp_zc: %s skipped: %s\n", mode_name[m], res.why);
				skipped = true;
				continue;
			}
			check_result((enum mode)m, &o, &res);
			if (o.verbose || res.failed)
				printf("  %s rep %u: %" PRIu64 " ok, %" PRIu64 " busy, %" PRIu64 " bad; server: %" PRIu64
				       " requests, %" PRIu64 " responses, malformed %" PRIu64 ", resets %" PRIu64
				       ", send errors %" PRIu64 ", partial %" PRIu64 ", parked %" PRIu64 ", enobufs %" PRIu64
				       ", notifs %" PRIu64 " (%" PRIu64 " copied), cq overflow %" PRIu64
				       "; pool high water %" PRIu64 "/%" PRIu64 ", limit hits %" PRIu64 ", chunks %" PRIu64
				       ", map/unmap %" PRIu64 "/%" PRIu64 "; stalled client %" PRIu64 " ok\n",
				       mode_name[m], rep, res.ok, res.busy, res.bad, res.st.requests, res.st.responses,
				       res.st.malformed, res.st.resets, res.st.send_err, res.st.partial, res.st.parked,
				       res.st.enobufs, res.st.notifs, res.st.notif_copied, res.st.cq_overflow,
				       res.high_water, res.limit, res.limit_hits, res.chunks, res.map_calls,
				       res.unmap_calls, res.stall_ok);
			agg_add(&agg[m], &res);
			if (res.failed)
				rc = 1;
		}
	}
	print_table(&o, agg);
	if (o.json && append_json(&o, agg) != 0)
		rc = 1;
	if (g_stop) {
		printf("tcp_zc: interrupted\n");
		return 1;
	}
	if (rc == 0 && skipped) {
		printf("tcp_zc: skipped (an io_uring feature is missing)\n");
		return EXIT_SKIP;
	}
	printf("%s\n", rc ? "tcp_zc: FAILED" : "tcp_zc: ok (every byte verified, pools empty and audited)");
	return rc;
}
