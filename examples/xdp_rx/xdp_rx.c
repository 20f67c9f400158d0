// SPDX-License-Identifier: MIT
/*
 * iop-xdp-rx: AF_XDP receive (and forward) with UMEM frames from an iopool
 * pool, against the hand-rolled free stack of frame addresses that AF_XDP
 * programs usually keep (xdp-tutorial, the kernel's xdpsock).
 *
 * Topology. Everything happens inside a network namespace that the program
 * creates, named iopool-xdp-<pid>, holding one veth pair: iopx0 (the
 * receiver: the XDP program of xdp_redirect.bpf.c attached in native mode,
 * and an AF_XDP socket on its queue 0) and iopx1 (the generator: an
 * AF_PACKET socket sending Ethernet/IPv4/UDP frames with sendmmsg). Nothing
 * outside the namespace is touched. The namespace is removed at exit, on
 * SIGINT/SIGTERM, and by the next run when a run was killed (any
 * iopool-xdp-<pid> whose process is gone).
 *
 * The UMEM, and why the pool is created over one registered region. A UMEM
 * is ONE contiguous area registered with the socket once
 * (xsk_umem__create(area, size)); descriptors carry offsets into it. So
 * the frames cannot be objects scattered over several pool chunks, each
 * registered as it comes (as io_uring's fixed buffers are in udp_rx): a
 * second chunk cannot join a UMEM. The pool is therefore created with one
 * chunk that holds every frame: chunk_size = the frames' bytes rounded up
 * to a power of two, `populate` = all frames (so the chunk is mapped inside
 * iop_pool_create()), align = the frame size (so frame i is at offset
 * i * FRAME, which AF_XDP's aligned mode requires). The map hook, called
 * once for that chunk, creates the UMEM over it (handle 0, base = the
 * UMEM's start), and refuses any further chunk with -ENOSPC: a pool asked
 * for more frames than the UMEM holds fails that allocation (counted as a
 * short refill), and never hands out memory the socket cannot address. The
 * unmap hook deletes the UMEM when the pool is destroyed. A frame's UMEM
 * address is its offset from the chunk's start (iop_buf_mapping() gives
 * exactly that; the checks at start-up compare). The pool is also bounded
 * (limit = the UMEM's frames): when the rings hold every frame, a refill
 * gets fewer at once (counted), where an unbounded pool would map a new
 * chunk for the map hook to refuse, an mmap and munmap per failed refill.
 *
 * Modes, each run in the same invocation on a fresh socket and UMEM:
 *
 *   pool-rx     the fill ring is refilled in bulk with iop_alloc_bulk();
 *               received frames are checked (every byte, by checksum) and
 *               go back with iop_free_bulk().
 *   stack-rx    the same with a free stack of frame addresses (the usual
 *               choice): pop to refill, push to free.
 *   pool-fwd    frames are refcounted buffers (IOP_F_REFCOUNT,
 *               iop_buf_alloc_bulk()); a good frame has its MAC addresses
 *               swapped and is sent back on the socket's TX ring holding
 *               its reference; the reference is put (iop_buf_put) when the
 *               frame's address comes back on the completion ring. The
 *               generator receives the forwarded frames and checks them.
 *   stack-fwd   the same with the free stack.
 *
 * What is measured per mode (medians over --reps repetitions, the modes
 * interleaved): packets per second (received / generator start to last
 * packet), the receiving thread's CPU time per packet
 * (CLOCK_THREAD_CPUTIME_ID; in copy mode the kernel copies each frame into
 * the UMEM in the veth's NAPI, on the generator's CPU, not here), the
 * allocator's share (rdtsc around each refill and each free batch, as in
 * udp_rx), loss (sent - received), fill-ring empty events (the kernel's
 * XDP_STATISTICS rx_fill_ring_empty_descs, and refills that found no free
 * frame), and the kernel's drops (rx ring full, other).
 *
 * Bad input. The generator first sends --bad short frames (shorter than
 * the headers) and --bad malformed frames (valid headers, corrupted
 * payload), slowly; the receiver must count each kind exactly and recycle
 * their frames. --stall-ms makes the receiver stop reading for a while in
 * the middle of the flood, so the rings overflow: the kernel drops and
 * counts, and no frame is lost to the pool (in flight 0, audit clean,
 * every frame back at the end, the UMEM deleted without -EBUSY).
 *
 * Exit status: 0; 1 when a check failed; 2 on a usage error; 77 when this
 * machine cannot run it (not root, no `ip`, no network namespaces, veth,
 * BPF, native XDP on veth or AF_XDP sockets), with what was missing.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xdp/xsk.h>

#include <iopool.h>

#define FRAME 2048u          /* UMEM frame = pool object; AF_XDP allows 2048 or 4096 */
#define NFRAMES 4096u        /* frames in the UMEM: the fill and RX rings full at once */
#define RING 2048u           /* entries of each of the four rings */
#define BATCH 64u            /* RX descriptors handled per batch (NAPI's budget is 64) */
#define FILL_BATCH 256u      /* most frames put on the fill ring per refill */
#define SEND_BATCH 64u       /* frames per sendmmsg */
#define PAYLOAD_MIN 32u      /* the test header below */
#define PAYLOAD_MAX 1472u    /* a 1500-byte MTU's UDP payload */
#define UDP_PORT 9u          /* discard: the frames never reach a stack */
#define MAGIC 0x584f5049u    /* "IOPX" */
#define NS_PREFIX "iopool-xdp-"
#define IF_RX "iopx0"
#define IF_GEN "iopx1"
#define HDRS (14u + 20u + 8u) /* Ethernet + IPv4 + UDP */
#define EXIT_SKIP 77

enum mode { M_POOL_RX, M_STACK_RX, M_POOL_FWD, M_STACK_FWD, M_COUNT };
static const char *const mode_name[M_COUNT] = { "pool-rx", "stack-rx", "pool-fwd", "stack-fwd" };
static bool mode_pool(int m) { return m == M_POOL_RX || m == M_POOL_FWD; }
static bool mode_fwd(int m) { return m == M_POOL_FWD || m == M_STACK_FWD; }

/* The UDP payload of a test frame: this header, then body bytes that are a
 * function of (seq, position), covered by csum. */
struct test_hdr {
	uint32_t magic;
	uint32_t body_len;
	uint64_t seq;
	uint32_t csum; /* csum16(body) ^ (uint16_t)seq */
	uint32_t pad;
	uint64_t pad2;
};
_Static_assert(sizeof(struct test_hdr) == PAYLOAD_MIN, "test header is PAYLOAD_MIN bytes");

struct opts {
	uint64_t packets;
	unsigned payload;
	unsigned reps;
	unsigned bad;
	unsigned stall_ms;
	unsigned quiet_ms;
	unsigned deadline_s;
	unsigned modes;
	const char *json;
	bool verbose, crash_test;
};

static volatile sig_atomic_t g_stop; /* SIGINT or SIGTERM: finish, clean up */
static bool g_unbounded; /* --unbounded: pools without the limit */

/* ------------------------------------------------------------------ */
/* Clocks (as in udp_rx)                                               */
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

static double g_ticks_per_ns = 1.0;
static uint64_t g_pair_ticks; /* an empty pair of reads, subtracted per timing */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void calibrate_clock(void)
{
	uint64_t m0 = mono_ns(), t0 = ticks();
	while (mono_ns() - m0 < 20000000u) /* 20 ms */
		;
	uint64_t m1 = mono_ns(), t1 = ticks();
	g_ticks_per_ns = (double)(t1 - t0) / (double)(m1 - m0);
	if (!(g_ticks_per_ns > 0))
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

static uint64_t timed_since(uint64_t a)
{
	uint64_t d = ticks() - a;
	return d > g_pair_ticks ? d - g_pair_ticks : 0;
}

/* 16-bit ones'-complement sum (the Internet checksum's sum), as udp_rx. */
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
/* The namespace and the veth pair                                     */
/* ------------------------------------------------------------------ */

static char g_ns[64];          /* our namespace's name, "" when none */
static int g_orig_ns = -1;     /* fd of the namespace we started in */
static bool g_in_ns;

/* Run `ip` with these arguments (no shell); returns its exit status, or -1
 * when it could not be started. Its output goes to /dev/null unless
 * verbose: the callers report what failed. */
static int run_ip(bool quiet, const char *const *args)
{
	char *argv[16];
	unsigned n = 0;
	argv[n++] = (char *)"ip";
	for (; args[n - 1] && n < 15; n++)
		argv[n] = (char *)args[n - 1];
	argv[n] = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	if (quiet) {
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
		posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	}
	extern char **environ;
	pid_t pid;
	int e = posix_spawnp(&pid, "ip", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (e)
		return -1;
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define IP(quiet, ...) run_ip((quiet), (const char *const[]){ __VA_ARGS__, NULL })

static bool ns_exists(const char *name)
{
	char path[128];
	if ((size_t)snprintf(path, sizeof path, "/run/netns/%.64s", name) >= sizeof path)
		return false;
	struct stat st;
	return stat(path, &st) == 0;
}

/* Remove namespaces that a killed run left: iopool-xdp-<pid> whose process
 * is gone. A live process's namespace is never touched. Returns how many
 * were removed. */
static unsigned clean_leftovers(void)
{
	DIR *d = opendir("/run/netns");
	if (!d)
		return 0;
	unsigned removed = 0;
	char names[32][64];
	unsigned n = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < 32) {
		if (strncmp(e->d_name, NS_PREFIX, strlen(NS_PREFIX)) != 0 || strlen(e->d_name) >= sizeof names[0])
			continue;
		char *end;
		long pid = strtol(e->d_name + strlen(NS_PREFIX), &end, 10);
		if (*end || pid <= 0 || pid == getpid())
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue; /* alive (or not ours to judge) */
		memcpy(names[n++], e->d_name, strlen(e->d_name) + 1);
	}
	closedir(d);
	for (unsigned i = 0; i < n; i++) {
		if (IP(true, "netns", "del", names[i]) == 0 && !ns_exists(names[i])) {
			printf("xdp_rx: removed namespace %s left by a run that was killed\n", names[i]);
			removed++;
		} else {
			fprintf(stderr, "xdp_rx: could not remove leftover namespace %s\n", names[i]);
		}
	}
	return removed;
}

/* Leave the namespace and delete it (and with it the veth pair). Safe to
 * call twice; called at exit too. Every socket and BPF fd in the namespace
 * must be closed first, or it would outlive its name. */
static void ns_teardown(void)
{
	if (g_in_ns && g_orig_ns >= 0) {
		if (setns(g_orig_ns, CLONE_NEWNET) != 0)
			fprintf(stderr, "xdp_rx: returning to the original namespace: %s\n", strerror(errno));
		g_in_ns = false;
	}
	if (g_orig_ns >= 0) {
		close(g_orig_ns);
		g_orig_ns = -1;
	}
	if (g_ns[0]) {
		if (IP(true, "netns", "del", g_ns) != 0 && ns_exists(g_ns))
			fprintf(stderr, "xdp_rx: could not delete namespace %s\n", g_ns);
		g_ns[0] = 0;
	}
}

/* Create the namespace and the veth pair in it, and move this thread (and
 * so every thread it starts) into it. Returns 0, or EXIT_SKIP with `why`
 * filled, or -1 on another failure. */
static int ns_setup(char *why, size_t whylen)
{
	snprintf(g_ns, sizeof g_ns, NS_PREFIX "%d", (int)getpid());
	int rc = IP(true, "netns", "add", g_ns);
	if (rc != 0) {
		snprintf(why, whylen, rc < 0 ? "the `ip` command (iproute2) is not installed"
					     : "`ip netns add %s` failed: no network namespaces here"
					       " (needs CAP_SYS_ADMIN and a writable /run/netns)", g_ns);
		g_ns[0] = 0;
		return EXIT_SKIP;
	}
	if (IP(true, "-n", g_ns, "link", "add", IF_RX, "type", "veth", "peer", "name", IF_GEN) != 0) {
		snprintf(why, whylen, "creating a veth pair failed (no veth driver?)");
		return EXIT_SKIP;
	}
	/* No IPv6 on the pair: its neighbour discovery would be foreign frames. */
	IP(true, "netns", "exec", g_ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1");
	if (IP(true, "-n", g_ns, "link", "set", IF_RX, "up") != 0 ||
	    IP(true, "-n", g_ns, "link", "set", IF_GEN, "up") != 0) {
		snprintf(why, whylen, "setting the veth pair up failed");
		return -1;
	}
	g_orig_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	char path[128];
	snprintf(path, sizeof path, "/run/netns/%s", g_ns);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (g_orig_ns < 0 || fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
		snprintf(why, whylen, "entering namespace %s: %s", g_ns, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	g_in_ns = true;
	return 0;
}

/* After teardown: neither the namespace nor the veth may be left. */
static int check_nothing_left(const char *name)
{
	int bad = 0;
	if (ns_exists(name)) {
		fprintf(stderr, "xdp_rx: FAIL: namespace %s is still there\n", name);
		bad = 1;
	}
	if (if_nametoindex(IF_RX) || if_nametoindex(IF_GEN)) {
		fprintf(stderr, "xdp_rx: FAIL: a veth %s/%s is visible in the original namespace\n", IF_RX,
			IF_GEN);
		bad = 1;
	}
	return bad;
}

static int if_mac(const char *ifname, unsigned char mac[6])
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
	int r = ioctl(fd, SIOCGIFHWADDR, &ifr);
	int e = errno;
	close(fd);
	if (r != 0)
		return -e;
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	return 0;
}

/* ------------------------------------------------------------------ */
/* The XDP program (embedded at build time)                            */
/* ------------------------------------------------------------------ */

__asm__(".section .rodata\n"
	".balign 8\n"
	".globl iop_xdp_obj_start\n"
	".hidden iop_xdp_obj_start\n"
	"iop_xdp_obj_start:\n"
	".incbin \"" IOP_XDP_OBJ "\"\n"
	".globl iop_xdp_obj_end\n"
	".hidden iop_xdp_obj_end\n"
	"iop_xdp_obj_end:\n"
	".previous\n");
extern const unsigned char iop_xdp_obj_start[], iop_xdp_obj_end[];

struct xdp_prog {
	struct bpf_object *obj;
	int prog_fd, xsks_fd, seen_fd;
	int ifindex;
	bool attached;
};

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	(void)fmt;
	(void)ap;
	return 0;
}

/* Load the program and attach it to iopx0 in native (driver) mode.
 * Returns 0, or EXIT_SKIP with `why` filled. */
static int xdp_load(struct xdp_prog *x, bool verbose, char *why, size_t whylen)
{
	memset(x, 0, sizeof *x);
	x->prog_fd = x->xsks_fd = x->seen_fd = -1;
	if (!verbose)
		libbpf_set_print(libbpf_quiet);
	x->ifindex = (int)if_nametoindex(IF_RX);
	if (!x->ifindex) {
		snprintf(why, whylen, "no interface %s in the namespace", IF_RX);
		return -1;
	}
	x->obj = bpf_object__open_mem(iop_xdp_obj_start, (size_t)(iop_xdp_obj_end - iop_xdp_obj_start), NULL);
	if (!x->obj) {
		snprintf(why, whylen, "opening the embedded BPF object: %s", strerror(errno));
		return -1;
	}
	int r = bpf_object__load(x->obj);
	if (r) {
		snprintf(why, whylen, "loading the XDP program (BPF): %s%s", strerror(-r),
			 r == -EPERM ? " (needs CAP_BPF/CAP_SYS_ADMIN; a seccomp filter or"
				       " kernel.unprivileged_bpf_disabled?)" : "");
		return EXIT_SKIP;
	}
	struct bpf_program *p = bpf_object__find_program_by_name(x->obj, "iop_xdp_redirect");
	x->prog_fd = p ? bpf_program__fd(p) : -1;
	x->xsks_fd = bpf_object__find_map_fd_by_name(x->obj, "xsks_map");
	x->seen_fd = bpf_object__find_map_fd_by_name(x->obj, "seen_map");
	if (x->prog_fd < 0 || x->xsks_fd < 0 || x->seen_fd < 0) {
		snprintf(why, whylen, "the embedded BPF object lacks its program or maps");
		return -1;
	}
	r = bpf_xdp_attach(x->ifindex, x->prog_fd, XDP_FLAGS_DRV_MODE, NULL);
	if (r) {
		snprintf(why, whylen, "attaching XDP in native mode to veth %s: %s", IF_RX, strerror(-r));
		return EXIT_SKIP;
	}
	x->attached = true;
	return 0;
}

static uint64_t xdp_seen(const struct xdp_prog *x)
{
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0 || ncpu > 4096)
		return 0;
	uint64_t v[4096];
	uint32_t k = 0;
	if (bpf_map_lookup_elem(x->seen_fd, &k, v) != 0)
		return 0;
	uint64_t s = 0;
	for (int i = 0; i < ncpu; i++)
		s += v[i];
	return s;
}

static void xdp_unload(struct xdp_prog *x)
{
	if (x->attached)
		bpf_xdp_detach(x->ifindex, XDP_FLAGS_DRV_MODE, NULL);
	x->attached = false;
	if (x->obj)
		bpf_object__close(x->obj);
	x->obj = NULL;
}

/* ------------------------------------------------------------------ */
/* Frames: a pool over one UMEM, or a free stack                       */
/* ------------------------------------------------------------------ */

struct frames {
	bool pool_mode, refcount;
	iop_pool_t *pool;
	unsigned char *area; /* the UMEM: the pool's chunk, or an mmap */
	size_t area_len;
	struct xsk_umem *umem;
	struct xsk_ring_prod fq;
	struct xsk_ring_cons cq;
	uint64_t *stack; /* free frame addresses (stack mode) */
	unsigned top;
	/* Where each frame is, by index (addr / FRAME): the receiver's own
	 * check that the kernel gives back only frames it was given, once. */
	uint8_t *state;
	unsigned maps, unmaps, map_refused;
	int hook_err;
};

enum { F_APP = 0, F_KERNEL = 1, F_TX = 2 };

static struct xsk_umem_config umem_config(void)
{
	struct xsk_umem_config c = {
		.fill_size = RING,
		.comp_size = RING,
		.frame_size = FRAME,
		.frame_headroom = 0,
		.flags = 0,
	};
	return c;
}

/* The map hook: called once, inside iop_pool_create() (populate), for the
 * chunk that holds every frame; that chunk becomes the UMEM. A further chunk
 * cannot join the UMEM, so it is refused. */
static int umem_map(void *arg, void *base, size_t len, uint64_t *handle)
{
	struct frames *f = arg;
	if (f->umem) {
		f->map_refused++;
		return -ENOSPC;
	}
	struct xsk_umem_config c = umem_config();
	int r = xsk_umem__create(&f->umem, base, len, &f->fq, &f->cq, &c);
	if (r) {
		f->umem = NULL;
		f->hook_err = r;
		return r;
	}
	f->area = base;
	f->area_len = len;
	f->maps++;
	*handle = 0;
	return 0;
}

/* The unmap hook: the pool is being destroyed; the socket is gone, so the
 * UMEM must be free (-EBUSY would mean a socket still uses it). */
static void umem_unmap(void *arg, void *base, size_t len, uint64_t handle)
{
	struct frames *f = arg;
	(void)len;
	(void)handle;
	f->unmaps++;
	if (base != f->area || !f->umem) {
		fprintf(stderr, "xdp_rx: unmap hook: %p is not the UMEM's chunk\n", base);
		f->hook_err = -EINVAL;
		return;
	}
	int r = xsk_umem__delete(f->umem);
	if (r) {
		fprintf(stderr, "xdp_rx: xsk_umem__delete: %s\n", strerror(-r));
		f->hook_err = r;
	}
	f->umem = NULL;
}

static size_t pow2_at_least(size_t x)
{
	size_t p = 1;
	while (p < x)
		p <<= 1;
	return p;
}

/* Returns 0 or a negative errno (with a message). */
static int frames_init(struct frames *f, bool pool_mode, bool refcount, const char *name)
{
	memset(f, 0, sizeof *f);
	f->pool_mode = pool_mode;
	f->refcount = refcount;
	f->state = calloc(NFRAMES, 1);
	if (!f->state)
		return -ENOMEM;
	if (pool_mode) {
		struct iop_pool_params p = IOP_POOL_PARAMS_INIT;
		p.name = name;
		p.obj_size = FRAME;
		p.align = FRAME;
		p.chunk_size = pow2_at_least((size_t)NFRAMES * FRAME);
		if (p.chunk_size < (2u << 20))
			p.chunk_size = 2u << 20;
		p.populate = NFRAMES;
		/* Magazines as large as they go (2 x 1024 frames): the free
		 * frames' working set is the fill ring's 2048, and smaller
		 * ones trade with the depot on nearly every refill. */
		p.cache_size = IOP_CACHE_SIZE_MAX;
		/* The UMEM's capacity is a hard limit: at it, a refill gets
		 * fewer frames at once, instead of the pool mapping a chunk
		 * that the map hook must refuse. */
		p.limit = g_unbounded ? 0 : NFRAMES;
		p.flags = IOP_F_PREFAULT | (refcount ? IOP_F_REFCOUNT : 0);
		p.map = umem_map;
		p.unmap = umem_unmap;
		p.hook_arg = f;
		f->pool = iop_pool_create(&p);
		if (!f->pool) {
			int e = errno;
			fprintf(stderr, "xdp_rx: iop_pool_create: %s%s\n", strerror(e),
				f->hook_err ? " (xsk_umem__create in the map hook)" : "");
			return -e;
		}
		/* Every frame the pool can hand out lies in the UMEM. */
		if (!f->umem || f->area_len < (size_t)NFRAMES * FRAME) {
			fprintf(stderr, "xdp_rx: the pool's chunk did not become a UMEM of %u frames\n", NFRAMES);
			return -EINVAL;
		}
		return 0;
	}
	f->area_len = (size_t)NFRAMES * FRAME;
	f->area = mmap(NULL, f->area_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		       -1, 0);
	if (f->area == MAP_FAILED) {
		f->area = NULL;
		return -errno;
	}
	struct xsk_umem_config c = umem_config();
	int r = xsk_umem__create(&f->umem, f->area, f->area_len, &f->fq, &f->cq, &c);
	if (r) {
		fprintf(stderr, "xdp_rx: xsk_umem__create: %s\n", strerror(-r));
		f->umem = NULL;
		return r;
	}
	f->stack = malloc(NFRAMES * sizeof *f->stack);
	if (!f->stack)
		return -ENOMEM;
	for (unsigned i = 0; i < NFRAMES; i++)
		f->stack[i] = (uint64_t)(NFRAMES - 1 - i) * FRAME;
	f->top = NFRAMES;
	return 0;
}

/* Up to n free frames, as UMEM addresses. The allocator's work. */
static inline unsigned frames_get(struct frames *f, uint64_t *addrs, unsigned n)
{
	if (!f->pool_mode) {
		unsigned k = n < f->top ? n : f->top;
		for (unsigned i = 0; i < k; i++)
			addrs[i] = f->stack[--f->top];
		return k;
	}
	void *p[FILL_BATCH];
	unsigned got = f->refcount ? iop_buf_alloc_bulk(f->pool, p, n) : iop_alloc_bulk(f->pool, p, n);
	for (unsigned i = 0; i < got; i++)
		addrs[i] = (uint64_t)((unsigned char *)p[i] - f->area);
	return got;
}

/* Give back n frames (their UMEM base addresses). The allocator's work. */
static inline void frames_put(struct frames *f, const uint64_t *addrs, unsigned n)
{
	if (!f->pool_mode) {
		for (unsigned i = 0; i < n; i++)
			f->stack[f->top++] = addrs[i];
		return;
	}
	if (f->refcount) {
		/* No bulk put in the API: one inline put each. */
		for (unsigned i = 0; i < n; i++)
			iop_buf_put(f->pool, f->area + addrs[i]);
		return;
	}
	void *p[FILL_BATCH];
	for (unsigned i = 0; i < n; i++)
		p[i] = f->area + addrs[i];
	iop_free_bulk(f->pool, p, n);
}

/* ------------------------------------------------------------------ */
/* Test frames                                                         */
/* ------------------------------------------------------------------ */

enum kind { K_GOOD, K_SHORT, K_MALFORMED, K_FOREIGN };

static uint16_t ip_csum(const void *hdr, size_t n)
{
	return (uint16_t)~csum16(hdr, n);
}

/* Build the headers of a frame carrying `payload` UDP bytes. */
static void build_headers(unsigned char *fr, const unsigned char dst[6], const unsigned char src[6],
			  unsigned payload)
{
	memcpy(fr, dst, 6);
	memcpy(fr + 6, src, 6);
	fr[12] = 0x08;
	fr[13] = 0x00;
	struct iphdr ip;
	memset(&ip, 0, sizeof ip);
	ip.version = 4;
	ip.ihl = 5;
	ip.tot_len = htons((uint16_t)(20 + 8 + payload));
	ip.ttl = 64;
	ip.protocol = IPPROTO_UDP;
	ip.saddr = htonl(0xc0000201); /* 192.0.2.1 and .2: TEST-NET-1, never routed */
	ip.daddr = htonl(0xc0000202);
	ip.check = ip_csum(&ip, sizeof ip);
	memcpy(fr + 14, &ip, sizeof ip);
	struct udphdr u;
	memset(&u, 0, sizeof u);
	u.source = htons(UDP_PORT);
	u.dest = htons(UDP_PORT);
	u.len = htons((uint16_t)(8 + payload));
	memcpy(fr + 34, &u, sizeof u);
}

/* Stamp seq and fill the body; returns the frame length. */
static unsigned stamp(unsigned char *fr, unsigned payload, uint64_t seq)
{
	struct test_hdr h;
	unsigned char *body = fr + HDRS + sizeof h;
	unsigned blen = payload - (unsigned)sizeof h;
	for (unsigned j = 0; j < blen; j++)
		body[j] = (unsigned char)(seq * 13u + j * 7u + 1u);
	memset(&h, 0, sizeof h);
	h.magic = MAGIC;
	h.body_len = blen;
	h.seq = seq;
	h.csum = (uint32_t)(csum16(body, blen) ^ (uint16_t)seq);
	memcpy(fr + HDRS, &h, sizeof h);
	return HDRS + payload;
}

/* What a received frame is; for a good one, its checksum. Every byte of a
 * good frame is covered: the headers by these comparisons, the body by the
 * checksum. */
static enum kind classify(const unsigned char *fr, unsigned len, unsigned payload, uint32_t *sum)
{
	if (len < 14)
		return K_SHORT;
	if (fr[12] != 0x08 || fr[13] != 0x00)
		return K_FOREIGN;
	if (len < HDRS + sizeof(struct test_hdr))
		return K_SHORT;
	if (fr[14 + 9] != IPPROTO_UDP)
		return K_FOREIGN;
	uint16_t dport;
	memcpy(&dport, fr + 36, 2);
	if (dport != htons(UDP_PORT))
		return K_FOREIGN;
	struct test_hdr h;
	memcpy(&h, fr + HDRS, sizeof h);
	if (h.magic != MAGIC || h.body_len != len - HDRS - sizeof h || len != HDRS + payload)
		return K_MALFORMED;
	uint32_t c = (uint32_t)(csum16(fr + HDRS + sizeof h, h.body_len) ^ (uint16_t)h.seq);
	if (c != h.csum)
		return K_MALFORMED;
	*sum += c;
	return K_GOOD;
}

/* ------------------------------------------------------------------ */
/* Generator (and, when forwarding, the sink of returned frames)       */
/* ------------------------------------------------------------------ */

struct gen {
	pthread_t th;
	int cpu;
	bool fwd;
	unsigned payload, bad;
	uint64_t total;
	uint64_t deadline_ns;
	unsigned char src[6], dst[6];
	_Atomic uint64_t sent;
	_Atomic int bad_done, done, stop;
	uint64_t sent_short, sent_malformed, sent_csum;
	uint64_t ret_good, ret_bad, ret_csum; /* forwarded frames seen back */
	uint64_t enobufs;
	int err;
	uint64_t t_start, t_end;
};

static void gen_drain(struct gen *g, int fd, unsigned char *rbuf, struct mmsghdr *rm)
{
	for (;;) {
		int r = recvmmsg(fd, rm, SEND_BATCH, MSG_DONTWAIT, NULL);
		if (r <= 0)
			return;
		for (int i = 0; i < r; i++) {
			uint32_t s = 0;
			const unsigned char *fr = rbuf + (size_t)i * FRAME;
			/* The receiver swapped the MACs: back to us. */
			if (classify(fr, rm[i].msg_len, g->payload, &s) == K_GOOD && !memcmp(fr, g->src, 6)) {
				g->ret_good++;
				g->ret_csum += s;
			} else {
				g->ret_bad++;
			}
		}
	}
}

static void *gen_main(void *arg)
{
	struct gen *g = arg;
	if (g->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(g->cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof set, &set);
	}
	unsigned char *bufs = calloc(SEND_BATCH, FRAME), *rbuf = calloc(SEND_BATCH, FRAME);
	struct mmsghdr *msgs = calloc(SEND_BATCH, sizeof *msgs), *rm = calloc(SEND_BATCH, sizeof *rm);
	struct iovec *iov = calloc(SEND_BATCH, sizeof *iov), *riov = calloc(SEND_BATCH, sizeof *riov);
	/* Protocol 0: a send-only socket, unless frames come back to us. */
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, g->fwd ? htons(ETH_P_IP) : 0);
	uint64_t sent = 0, seq = 0;
	g->t_start = mono_ns();
	if (!bufs || !rbuf || !msgs || !rm || !iov || !riov || fd < 0) {
		g->err = errno ? errno : ENOMEM;
		goto out;
	}
	struct sockaddr_ll sll;
	memset(&sll, 0, sizeof sll);
	sll.sll_family = AF_PACKET;
	sll.sll_ifindex = (int)if_nametoindex(IF_GEN);
	sll.sll_protocol = g->fwd ? htons(ETH_P_IP) : 0;
	int one = 1, rcvbuf = 32 << 20; /* room for the frames coming back while we send */
	setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
	if (g->fwd && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	if (bind(fd, (struct sockaddr *)&sll, sizeof sll) != 0) {
		g->err = errno;
		goto out;
	}
	for (unsigned i = 0; i < SEND_BATCH; i++) {
		build_headers(bufs + (size_t)i * FRAME, g->dst, g->src, g->payload);
		iov[i].iov_base = bufs + (size_t)i * FRAME;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
		riov[i].iov_base = rbuf + (size_t)i * FRAME;
		riov[i].iov_len = FRAME;
		rm[i].msg_hdr.msg_iov = &riov[i];
		rm[i].msg_hdr.msg_iovlen = 1;
	}

	/* Bad frames first, one at a time and slowly, so none is lost and the
	 * receiver's counts can be compared exactly. */
	for (unsigned i = 0; i < 2 * g->bad && !atomic_load(&g->stop); i++) {
		unsigned char *fr = bufs;
		unsigned len = stamp(fr, g->payload, UINT64_MAX - i);
		if (i & 1) {
			len = 14 + 16; /* an Ethernet header and half an IPv4 header */
		} else {
			fr[len - 1] ^= 0x5a; /* a body byte changed after the checksum */
		}
		ssize_t w = send(fd, fr, len, 0);
		if (w == (ssize_t)len) {
			if (i & 1)
				g->sent_short++;
			else
				g->sent_malformed++;
		}
		struct timespec ts = { 0, 200000 }; /* 200 us */
		nanosleep(&ts, NULL);
	}
	build_headers(bufs, g->dst, g->src, g->payload);
	atomic_store_explicit(&g->bad_done, 1, memory_order_release);

	unsigned iter = 0;
	while (sent < g->total) {
		if (atomic_load_explicit(&g->stop, memory_order_relaxed))
			break;
		if ((++iter & 255u) == 0 && mono_ns() > g->deadline_ns)
			break;
		unsigned k = g->total - sent < SEND_BATCH ? (unsigned)(g->total - sent) : SEND_BATCH;
		for (unsigned i = 0; i < k; i++)
			iov[i].iov_len = stamp(bufs + (size_t)i * FRAME, g->payload, seq + i);
		int r = sendmmsg(fd, msgs, k, 0);
		if (r < 0) {
			/* ENOBUFS: the veth's queue to the receiver is full
			 * (NET_XMIT_DROP); that frame was not sent: retry. */
			if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR) {
				g->enobufs++;
				if (g->fwd)
					gen_drain(g, fd, rbuf, rm);
				sched_yield();
				continue;
			}
			g->err = errno;
			break;
		}
		for (int i = 0; i < r; i++) {
			struct test_hdr h;
			memcpy(&h, bufs + (size_t)i * FRAME + HDRS, sizeof h);
			g->sent_csum += h.csum;
		}
		/* Frames r.. were not sent; restamp them with the next seqs. */
		sent += (unsigned)r;
		seq += (unsigned)r;
		atomic_store_explicit(&g->sent, sent, memory_order_relaxed);
		if (g->fwd)
			gen_drain(g, fd, rbuf, rm);
	}
	g->t_end = mono_ns();
	atomic_store_explicit(&g->sent, sent, memory_order_relaxed);
	atomic_store_explicit(&g->done, 1, memory_order_release);
	/* Forwarding: keep taking returned frames until told to stop. */
	while (g->fwd && !atomic_load(&g->stop)) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		poll(&pf, 1, 5);
		gen_drain(g, fd, rbuf, rm);
	}
out:
	if (!g->t_end)
		g->t_end = mono_ns();
	atomic_store_explicit(&g->done, 1, memory_order_release);
	atomic_store_explicit(&g->bad_done, 1, memory_order_release);
	if (fd >= 0)
		close(fd);
	free(bufs);
	free(rbuf);
	free(msgs);
	free(rm);
	free(iov);
	free(riov);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* One run of one mode                                                 */
/* ------------------------------------------------------------------ */

struct result {
	bool ran, failed;
	uint64_t sent, received, good, shorts, malformed, foreign, bytes;
	uint64_t sent_short, sent_malformed;
	uint64_t rx_csum, sent_csum;
	uint64_t forwarded, tx_done, tx_full, ret_good, ret_bad;
	uint64_t bad_desc, refill_short, fill_empty_user, kicks;
	struct xdp_statistics xs;
	uint64_t xdp_seen;
	double rx_wall_ns, cpu_ns, alloc_ns;
	uint64_t in_flight_end, maps, unmaps, map_refused;
	int audit, destroy;
	bool zerocopy, deadline_hit, stalled;
};

static int g_rx_cpu = -1, g_gen_cpu = -1;
static bool g_zerocopy; /* the driver took XDP_ZEROCOPY in the probe */

static void choose_cpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) != 0 || CPU_COUNT(&set) < 2)
		return;
	int found[2], n = 0;
	for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET(c, &set))
			found[n++] = c;
	g_rx_cpu = found[0];
	g_gen_cpu = found[1];
}

static void note_fail(struct result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_fail(struct result *res, const char *fmt, ...)
{
	va_list ap;
	res->failed = true;
	fputs("xdp_rx: FAIL: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

struct rx {
	struct frames f;
	struct xsk_socket *xsk;
	struct xsk_ring_cons rxr;
	struct xsk_ring_prod txr;
	int fd;
};

static int xsk_open(struct rx *r, const struct xdp_prog *x, bool zerocopy)
{
	struct xsk_socket_config c;
	memset(&c, 0, sizeof c);
	c.rx_size = RING;
	c.tx_size = RING;
	c.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD; /* ours is attached */
	c.xdp_flags = XDP_FLAGS_DRV_MODE;
	c.bind_flags = (uint16_t)((zerocopy ? XDP_ZEROCOPY : XDP_COPY) | XDP_USE_NEED_WAKEUP);
	int ret;
	/* The previous run's socket releases the queue in deferred work:
	 * EBUSY for a moment after it is closed. */
	for (unsigned tries = 0;; tries++) {
		ret = xsk_socket__create(&r->xsk, IF_RX, 0, r->f.umem, &r->rxr, &r->txr, &c);
		if (ret != -EBUSY || tries == 200)
			break;
		struct timespec ts = { 0, 5000000 }; /* 5 ms, up to 1 s */
		nanosleep(&ts, NULL);
	}
	if (ret) {
		r->xsk = NULL;
		return ret;
	}
	r->fd = xsk_socket__fd(r->xsk);
	ret = xsk_socket__update_xskmap(r->xsk, x->xsks_fd);
	if (ret) {
		xsk_socket__delete(r->xsk);
		r->xsk = NULL;
	}
	return ret;
}

/* Top the fill ring up from the allocator (timed). */
static void refill(struct rx *r, struct result *res)
{
	struct frames *f = &r->f;
	uint32_t free_slots = xsk_prod_nb_free(&f->fq, FILL_BATCH);
	if (free_slots < BATCH && free_slots < RING)
		return; /* refill in batches, not frame by frame */
	unsigned want = free_slots > FILL_BATCH ? FILL_BATCH : free_slots;
	uint64_t addrs[FILL_BATCH];
	uint64_t a = ticks();
	unsigned got = frames_get(f, addrs, want);
	res->alloc_ns += (double)timed_since(a);
	if (got < want) {
		res->refill_short++;
		if (got == 0 && xsk_prod_nb_free(&f->fq, RING) == RING)
			res->fill_empty_user++;
	}
	if (!got)
		return;
	uint32_t idx = 0;
	xsk_ring_prod__reserve(&f->fq, got, &idx); /* room was counted above */
	for (unsigned i = 0; i < got; i++) {
		*xsk_ring_prod__fill_addr(&f->fq, idx + i) = addrs[i];
		f->state[addrs[i] / FRAME] = F_KERNEL;
	}
	xsk_ring_prod__submit(&f->fq, got);
}

/* Frames whose transmission completed go back to the allocator (timed). */
static void complete_tx(struct rx *r, struct result *res)
{
	struct frames *f = &r->f;
	uint32_t idx;
	unsigned n = xsk_ring_cons__peek(&f->cq, FILL_BATCH, &idx);
	if (!n)
		return;
	uint64_t base[FILL_BATCH];
	unsigned k = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t b = *xsk_ring_cons__comp_addr(&f->cq, idx + i) & ~(uint64_t)(FRAME - 1);
		if (b / FRAME >= NFRAMES || f->state[b / FRAME] != F_TX) {
			res->bad_desc++;
			continue;
		}
		f->state[b / FRAME] = F_APP;
		base[k++] = b;
	}
	xsk_ring_cons__release(&f->cq, n);
	res->tx_done += k;
	uint64_t a = ticks();
	frames_put(f, base, k);
	res->alloc_ns += (double)timed_since(a);
}

static void kick_tx(struct rx *r, struct result *res)
{
	/* Copy mode transmits inside sendto(); EAGAIN/EBUSY/ENOBUFS: later. */
	sendto(r->fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
	res->kicks++;
}

/* Handle one batch of received descriptors. Returns how many. */
static unsigned rx_batch(struct rx *r, const struct opts *o, bool fwd, struct result *res)
{
	struct frames *f = &r->f;
	uint32_t idx;
	unsigned n = xsk_ring_cons__peek(&r->rxr, BATCH, &idx);
	if (!n)
		return 0;
	uint64_t done[BATCH];
	unsigned nd = 0;
	uint64_t tx_addr[BATCH];
	uint32_t tx_len[BATCH];
	unsigned nt = 0;
	for (unsigned i = 0; i < n; i++) {
		const struct xdp_desc *d = xsk_ring_cons__rx_desc(&r->rxr, idx + i);
		uint64_t b = d->addr & ~(uint64_t)(FRAME - 1); /* aligned mode: the frame's start */
		if (b / FRAME >= NFRAMES || f->state[b / FRAME] != F_KERNEL ||
		    (d->addr - b) + d->len > FRAME) {
			res->bad_desc++; /* not a frame we gave: never touched, never freed */
			continue;
		}
		f->state[b / FRAME] = F_APP;
		unsigned char *p = f->area + d->addr;
		uint32_t s = 0;
		enum kind k = classify(p, d->len, o->payload, &s);
		res->received++;
		switch (k) {
		case K_GOOD:
			res->good++;
			res->bytes += d->len;
			res->rx_csum += s;
			break;
		case K_SHORT:
			res->shorts++;
			break;
		case K_MALFORMED:
			res->malformed++;
			break;
		case K_FOREIGN:
			res->foreign++;
			break;
		}
		if (fwd && k == K_GOOD) {
			unsigned char t[6];
			memcpy(t, p, 6);
			memcpy(p, p + 6, 6);
			memcpy(p + 6, t, 6);
			tx_addr[nt] = d->addr;
			tx_len[nt] = d->len;
			nt++;
		} else {
			done[nd++] = b;
		}
	}
	xsk_ring_cons__release(&r->rxr, n);
	if (nt) {
		uint32_t ti = 0;
		unsigned room = xsk_ring_prod__reserve(&r->txr, nt, &ti) ? nt : 0;
		for (unsigned i = 0; i < room; i++) {
			struct xdp_desc *td = xsk_ring_prod__tx_desc(&r->txr, ti + i);
			td->addr = tx_addr[i];
			td->len = tx_len[i];
			td->options = 0;
			f->state[tx_addr[i] / FRAME] = F_TX; /* the ring holds the reference now */
		}
		if (room) {
			xsk_ring_prod__submit(&r->txr, room);
			res->forwarded += room;
			kick_tx(r, res);
		} else {
			res->tx_full += nt; /* TX ring full: drop them */
			for (unsigned i = 0; i < nt; i++)
				done[nd++] = tx_addr[i] & ~(uint64_t)(FRAME - 1);
		}
	}
	if (nd) {
		uint64_t a = ticks();
		frames_put(f, done, nd);
		res->alloc_ns += (double)timed_since(a);
	}
	return n;
}

/* The frames still on the rings when the socket is gone are the program's
 * again: give every one back. */
static void reclaim_all(struct frames *f)
{
	uint64_t b[FILL_BATCH];
	unsigned k = 0;
	for (unsigned i = 0; i < NFRAMES; i++) {
		if (f->state[i] == F_APP)
			continue;
		f->state[i] = F_APP;
		b[k++] = (uint64_t)i * FRAME;
		if (k == FILL_BATCH) {
			frames_put(f, b, k);
			k = 0;
		}
	}
	frames_put(f, b, k);
}

/* The pool's end: nothing in flight, audit clean, destroy unmaps the chunk
 * (the unmap hook deletes the UMEM). The stack's end: every frame back. */
static void frames_finish(struct frames *f, struct result *res, const char *mode, bool verbose)
{
	if (!f->pool_mode) {
		if (f->top != NFRAMES)
			note_fail(res, "%s: %u of %u frames are not back on the stack", mode, f->top, NFRAMES);
		if (f->umem) {
			int r = xsk_umem__delete(f->umem);
			if (r)
				note_fail(res, "%s: xsk_umem__delete: %s", mode, strerror(-r));
		}
		if (f->area)
			munmap(f->area, f->area_len);
		free(f->stack);
		free(f->state);
		return;
	}
	if (!f->pool) {
		free(f->state);
		return;
	}
	struct iop_pool_stats st;
	memset(&st, 0, sizeof st);
	st.struct_size = sizeof st;
	iop_pool_stats(f->pool, &st);
	if (verbose)
		iop_pool_stats_print(f->pool, stdout, IOP_FMT_TEXT);
	res->in_flight_end = st.in_flight;
	if (st.in_flight)
		note_fail(res, "%s: %" PRIu64 " frames still in flight (leaked)", mode, st.in_flight);
	if (st.chunk_acquire != 1 || st.map_calls != 1 + f->map_refused)
		note_fail(res, "%s: %" PRIu64 " chunks, %" PRIu64 " map calls: the UMEM must be one chunk", mode,
			  st.chunk_acquire, st.map_calls);
	res->audit = iop_pool_audit(f->pool);
	if (res->audit)
		note_fail(res, "%s: iop_pool_audit returned %d", mode, res->audit);
	res->destroy = iop_pool_destroy(f->pool);
	if (res->destroy)
		note_fail(res, "%s: iop_pool_destroy returned %d", mode, res->destroy);
	res->maps = f->maps;
	res->unmaps = f->unmaps;
	res->map_refused = f->map_refused;
	if (res->destroy == 0 && f->unmaps != f->maps)
		note_fail(res, "%s: unmap hook called %u times for %u maps", mode, f->unmaps, f->maps);
	if (f->hook_err)
		note_fail(res, "%s: a hook failed: %s", mode, strerror(-f->hook_err));
	free(f->state);
}

/* Stop when the generator is done and nothing came for quiet_ms, at the
 * deadline, or on a signal. */
static bool should_stop(const struct opts *o, struct gen *g, uint64_t *done_seen, uint64_t last_rx,
			struct result *res, uint64_t deadline)
{
	uint64_t now = mono_ns();
	if (g_stop)
		return true;
	if (now > deadline) {
		res->deadline_hit = true;
		return true;
	}
	if (!*done_seen) {
		if (!atomic_load_explicit(&g->done, memory_order_acquire))
			return false;
		*done_seen = now;
	}
	uint64_t from = last_rx > *done_seen ? last_rx : *done_seen;
	return now - from >= (uint64_t)o->quiet_ms * 1000000u;
}

static void run_mode(int m, const struct opts *o, const struct xdp_prog *x, struct result *res)
{
	const char *name = mode_name[m];
	bool fwd = mode_fwd(m);
	struct rx r;
	memset(&r, 0, sizeof r);
	r.fd = -1;
	res->ran = true;
	struct gen *g = NULL;
	bool gen_running = false;

	int ret = frames_init(&r.f, mode_pool(m), fwd, fwd ? "xdp-fwd-frames" : "xdp-rx-frames");
	if (ret) {
		note_fail(res, "%s: frames: %s", name, strerror(-ret));
		goto out;
	}
	ret = xsk_open(&r, x, g_zerocopy);
	if (ret) {
		note_fail(res, "%s: xsk_socket__create: %s", name, strerror(-ret));
		goto out;
	}
	res->zerocopy = g_zerocopy;
	if (r.f.pool_mode) {
		/* A frame's UMEM address is its offset in the pool's chunk. */
		void *p = r.f.refcount ? iop_buf_alloc(r.f.pool) : iop_alloc(r.f.pool);
		uint64_t h = 1;
		size_t off = 0;
		int mr = p ? iop_buf_mapping(r.f.pool, p, &h, &off) : -ENOMEM;
		if (mr || h != 0 || (unsigned char *)p != r.f.area + off || off % FRAME ||
		    iop_buf_base(r.f.pool, (unsigned char *)p + 300) != p) {
			note_fail(res, "%s: iop_buf_mapping(%p) = %d, handle %" PRIu64 ", offset %zu: not the UMEM"
				  " address", name, p, mr, h, off);
		}
		if (p) {
			if (r.f.refcount)
				iop_buf_put(r.f.pool, p);
			else
				iop_free(r.f.pool, p);
		}
		if (res->failed)
			goto out;
	}
	while (xsk_prod_nb_free(&r.f.fq, RING) >= BATCH) {
		uint64_t before = res->refill_short;
		refill(&r, res);
		if (res->refill_short != before)
			break;
	}
	res->alloc_ns = 0; /* the initial fill is setup, not the steady state */
	res->refill_short = 0;
	res->fill_empty_user = 0;

	g = calloc(1, sizeof *g);
	if (!g) {
		note_fail(res, "%s: out of memory", name);
		goto out;
	}
	g->cpu = g_gen_cpu;
	g->fwd = fwd;
	g->payload = o->payload;
	g->bad = o->bad;
	g->total = o->packets;
	g->deadline_ns = mono_ns() + (uint64_t)o->deadline_s * 1000000000u;
	if (if_mac(IF_RX, g->dst) != 0 || if_mac(IF_GEN, g->src) != 0) {
		note_fail(res, "%s: reading the veth MAC addresses failed", name);
		goto out;
	}
	uint64_t seen0 = xdp_seen(x);
	uint64_t t0 = mono_ns(), cpu0 = thread_cpu_ns();
	uint64_t deadline = t0 + (uint64_t)o->deadline_s * 1000000000u + 2000000000u;
	if ((ret = pthread_create(&g->th, NULL, gen_main, g)) != 0) {
		note_fail(res, "%s: pthread_create: %s", name, strerror(ret));
		goto out;
	}
	gen_running = true;

	uint64_t last_rx = t0, done_seen = 0;
	bool stalled = false;
	uint64_t stall_at = o->packets / 2;
	for (;;) {
		unsigned n = rx_batch(&r, o, fwd, res);
		if (fwd)
			complete_tx(&r, res);
		refill(&r, res);
		if (n) {
			last_rx = mono_ns();
			if (g_stop)
				break; /* SIGINT/SIGTERM mid-flood: clean up now */
			/* Overflow on purpose: stop reading for stall_ms in the
			 * middle of the flood; the rings fill and the kernel
			 * drops and counts. */
			if (o->stall_ms && !stalled && res->good >= stall_at) {
				stalled = true;
				res->stalled = true;
				struct timespec ts = { (time_t)(o->stall_ms / 1000), (long)(o->stall_ms % 1000) * 1000000 };
				nanosleep(&ts, NULL);
			}
			continue;
		}
		if (fwd && xsk_ring_prod__needs_wakeup(&r.txr))
			kick_tx(&r, res);
		if (should_stop(o, g, &done_seen, last_rx, res, deadline))
			break;
		struct pollfd pf = { .fd = r.fd, .events = POLLIN };
		poll(&pf, 1, fwd ? 1 : 10);
	}
	res->cpu_ns = (double)(thread_cpu_ns() - cpu0);
	res->rx_wall_ns = (double)(last_rx - t0);
	res->alloc_ns /= g_ticks_per_ns;
	/* Completions of the last forwarded frames (bounded wait). */
	for (uint64_t until = mono_ns() + 200000000u; fwd && res->tx_done < res->forwarded && mono_ns() < until;) {
		kick_tx(&r, res);
		complete_tx(&r, res);
	}
	socklen_t sl = sizeof res->xs;
	if (getsockopt(r.fd, SOL_XDP, XDP_STATISTICS, &res->xs, &sl) != 0)
		memset(&res->xs, 0, sizeof res->xs);
	res->xdp_seen = xdp_seen(x) - seen0;

out:
	if (gen_running) {
		atomic_store(&g->stop, 1);
		pthread_join(g->th, NULL);
		res->sent = atomic_load(&g->sent);
		res->sent_short = g->sent_short;
		res->sent_malformed = g->sent_malformed;
		res->sent_csum = g->sent_csum;
		res->ret_good = g->ret_good;
		res->ret_bad = g->ret_bad;
		if (g->err)
			note_fail(res, "%s: generator: %s", name, strerror(g->err));
	}
	free(g);
	if (r.xsk) {
		/* Unhook the socket first, so no frame is redirected to it. */
		uint32_t k = 0;
		bpf_map_delete_elem(x->xsks_fd, &k);
		xsk_socket__delete(r.xsk);
	}
	if (r.f.state)
		reclaim_all(&r.f);
	res->map_refused = r.f.map_refused;
	frames_finish(&r.f, res, name, o->verbose);
}

/* ------------------------------------------------------------------ */
/* Checks and the report                                               */
/* ------------------------------------------------------------------ */

static void check_result(int m, const struct opts *o, struct result *x)
{
	const char *name = mode_name[m];
	if (!x->ran || g_stop)
		return;
	if (x->sent == 0)
		note_fail(x, "%s: nothing was sent", name);
	if (x->bad_desc)
		note_fail(x, "%s: %" PRIu64 " descriptors named frames the kernel did not hold", name, x->bad_desc);
	if (x->good > x->sent)
		note_fail(x, "%s: %" PRIu64 " good frames received of %" PRIu64 " sent", name, x->good, x->sent);
	if (x->malformed != x->sent_malformed || x->shorts != x->sent_short)
		note_fail(x, "%s: malformed %" PRIu64 " of %" PRIu64 " sent, short %" PRIu64 " of %" PRIu64 " sent",
			  name, x->malformed, x->sent_malformed, x->shorts, x->sent_short);
	/* Without loss the sums agree: every byte arrived as sent. */
	if (x->good == x->sent && x->rx_csum != x->sent_csum)
		note_fail(x, "%s: checksum sum %" PRIx64 " received, %" PRIx64 " sent", name, x->rx_csum,
			  x->sent_csum);
	if (x->good == 0)
		note_fail(x, "%s: no good frame arrived", name);
	/* Loss depends on speed (a sanitizer build loses more); what must hold
	 * at any speed is that every frame sent arrived or was counted dropped
	 * by the kernel: rx ring full, or no fill-ring frame (rx_dropped). */
	uint64_t counted = x->xs.rx_ring_full + x->xs.rx_dropped;
	if (!x->deadline_hit && x->good + counted != x->sent)
		note_fail(x, "%s: %" PRIu64 " sent, %" PRIu64 " good + %" PRIu64 " counted drops (ring full %" PRIu64
			  ", no fill frame %" PRIu64 "): frames went missing", name, x->sent, x->good, counted,
			  (uint64_t)x->xs.rx_ring_full, (uint64_t)x->xs.rx_dropped);
	if (mode_fwd(m)) {
		if (x->tx_done != x->forwarded)
			note_fail(x, "%s: %" PRIu64 " frames forwarded, %" PRIu64 " completed", name, x->forwarded,
				  x->tx_done);
		if (x->ret_good == 0 || x->ret_good > x->forwarded || x->ret_bad)
			note_fail(x, "%s: %" PRIu64 " good and %" PRIu64 " bad frames came back of %" PRIu64
				  " forwarded", name, x->ret_good, x->ret_bad, x->forwarded);
	}
	(void)o;
}

struct agg {
	unsigned n;
	double pps[16], cpu[16], al[16];
	struct result last;
	uint64_t sent, good, lost, fill_empty, ring_full, dropped, refill_short, ret_good;
	bool failed;
};

static double median(double *v, unsigned n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof v[0], cmp_dbl);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void agg_add(struct agg *a, const struct result *x)
{
	if (a->n < 16) {
		a->pps[a->n] = x->rx_wall_ns > 0 ? (double)x->good / (x->rx_wall_ns / 1e9) : 0;
		a->cpu[a->n] = x->received ? x->cpu_ns / (double)x->received : 0;
		a->al[a->n] = x->received ? x->alloc_ns / (double)x->received : 0;
		a->n++;
	}
	a->last = *x;
	a->sent += x->sent;
	a->good += x->good;
	a->lost += x->sent > x->good ? x->sent - x->good : 0;
	a->fill_empty += x->xs.rx_fill_ring_empty_descs;
	a->ring_full += x->xs.rx_ring_full;
	a->dropped += x->xs.rx_dropped;
	a->refill_short += x->refill_short;
	a->ret_good += x->ret_good;
	a->failed |= x->failed;
}

static void print_table(const struct opts *o, struct agg *a)
{
	printf("\n%-10s %5s %10s %10s %7s %10s %11s %12s %8s %10s %9s %9s %8s\n", "mode", "reps", "sent", "good",
	       "loss", "rx pps", "cpu ns/pkt", "alloc ns/pkt", "alloc %", "fill-empty", "ring-full", "dropped",
	       "returned");
	for (int m = 0; m < M_COUNT; m++) {
		if (!(o->modes & (1u << m)) || !a[m].n)
			continue;
		struct agg *x = &a[m];
		double pps = median(x->pps, x->n), cpu = median(x->cpu, x->n), al = median(x->al, x->n);
		char ret[24] = "-";
		if (mode_fwd(m))
			snprintf(ret, sizeof ret, "%" PRIu64, x->ret_good);
		printf("%-10s %5u %10" PRIu64 " %10" PRIu64 " %6.2f%% %10.0f %11.1f %12.2f %7.2f%% %10" PRIu64
		       " %9" PRIu64 " %9" PRIu64 " %8s%s\n",
		       mode_name[m], x->n, x->sent, x->good, x->sent ? 100.0 * (double)x->lost / (double)x->sent : 0,
		       pps, cpu, al, cpu > 0 ? 100 * al / cpu : 0, x->fill_empty, x->ring_full, x->dropped, ret,
		       x->failed ? "  FAILED" : "");
	}
}

static int append_json(const struct opts *o, struct agg *a)
{
	FILE *f = fopen(o->json, "a");
	if (!f) {
		fprintf(stderr, "xdp_rx: %s: %s\n", o->json, strerror(errno));
		return -1;
	}
	for (int m = 0; m < M_COUNT; m++) {
		struct agg *x = &a[m];
		if (!(o->modes & (1u << m)) || !x->n)
			continue;
		double pps = median(x->pps, x->n), cpu = median(x->cpu, x->n), al = median(x->al, x->n);
		fprintf(f,
			"{\"case\": \"xdp_rx\", \"param\": \"%uB\", \"allocator\": \"%s\", \"reps\": %u, "
			"\"pps\": %.0f, \"ns_per_pkt_cpu\": %.2f, \"alloc_ns_per_pkt\": %.3f, \"alloc_share\": %.4f, "
			"\"sent\": %" PRIu64 ", \"good\": %" PRIu64 ", \"lost\": %" PRIu64 ", \"fill_ring_empty\": %" PRIu64
			", \"rx_ring_full\": %" PRIu64 ", \"rx_dropped\": %" PRIu64 ", \"refill_short\": %" PRIu64
			", \"returned\": %" PRIu64 ", \"frames\": %u, \"frame_size\": %u, \"ring\": %u, "
			"\"pool_limit\": %u, \"zerocopy\": %s, \"rx_cpu\": %d, \"gen_cpu\": %d, \"clock\": \"%s\", \"status\": \"%s\"}\n",
			o->payload, mode_name[m], x->n, pps, cpu, al, cpu > 0 ? al / cpu : 0, x->sent, x->good, x->lost,
			x->fill_empty, x->ring_full, x->dropped, x->refill_short, x->ret_good, NFRAMES, FRAME, RING,
			g_unbounded ? 0u : NFRAMES, x->last.zerocopy ? "true" : "false", g_rx_cpu, g_gen_cpu, TICKS_NAME,
			x->failed ? "failed" : "ok");
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
		"usage: iop-xdp-rx [options]\n"
		"  --mode M        pool-rx, stack-rx, pool-fwd, stack-fwd or all (default all)\n"
		"  --packets N     frames sent per run (default 1000000; --quick 100000)\n"
		"  --payload N     UDP payload bytes, %u..%u (default 64)\n"
		"  --reps N        repetitions of every mode, medians reported (default 3; --quick 1)\n"
		"  --bad N         short and malformed frames sent first, N of each (default 8)\n"
		"  --stall-ms N    stop reading for N ms mid-flood so the rings overflow (default 0;\n"
		"                  --quick 30)\n"
		"  --quick         the short form of the test: the numbers above, plus a crash test\n"
		"  --unbounded     pools without the limit (the map hook still refuses a second\n"
		"                  chunk): what the bounded pool's slow path costs\n"
		"  --crash-test    first start a child that sets up and is killed, then check that\n"
		"                  this run removes the namespace it left\n"
		"  --quiet-ms N    stop N ms after the last frame once all are sent (default 200)\n"
		"  --deadline S    give up on a run after S seconds (default 20)\n"
		"  --json PATH     append one JSON object per mode to PATH (JSON lines)\n"
		"  -v, --verbose   pool statistics, libbpf messages\n"
		"exit: 0 ok, 1 a check failed, 2 usage, 77 XDP/AF_XDP/namespaces not available\n",
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

static bool in_range(uint64_t n, uint64_t lo, uint64_t hi)
{
	return n >= lo && n <= hi;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	bool quick = false, packets_set = false, reps_set = false, stall_set = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t n;
#define NEED_NUM(lo, hi)                                                                        \
	do {                                                                                    \
		if (!v || !parse_u64(v, &n) || !in_range(n, (lo), (hi))) {                      \
			fprintf(stderr, "xdp_rx: %s wants a number from %llu to %llu\n", a,     \
				(unsigned long long)(lo), (unsigned long long)(hi));            \
			return -1;                                                              \
		}                                                                               \
		i++;                                                                            \
	} while (0)
		if (!strcmp(a, "--quick")) {
			quick = true;
		} else if (!strcmp(a, "--unbounded")) {
			g_unbounded = true;
		} else if (!strcmp(a, "--crash-test")) {
			o->crash_test = true;
		} else if (!strcmp(a, "--packets")) {
			NEED_NUM(1, 1000000000);
			o->packets = n;
			packets_set = true;
		} else if (!strcmp(a, "--payload")) {
			NEED_NUM(PAYLOAD_MIN, PAYLOAD_MAX);
			o->payload = (unsigned)n;
		} else if (!strcmp(a, "--reps")) {
			NEED_NUM(1, 16);
			o->reps = (unsigned)n;
			reps_set = true;
		} else if (!strcmp(a, "--bad")) {
			NEED_NUM(0, 10000);
			o->bad = (unsigned)n;
		} else if (!strcmp(a, "--stall-ms")) {
			NEED_NUM(0, 10000);
			o->stall_ms = (unsigned)n;
			stall_set = true;
		} else if (!strcmp(a, "--quiet-ms")) {
			NEED_NUM(10, 10000);
			o->quiet_ms = (unsigned)n;
		} else if (!strcmp(a, "--deadline")) {
			NEED_NUM(1, 3600);
			o->deadline_s = (unsigned)n;
		} else if (!strcmp(a, "--json")) {
			if (!v) {
				fprintf(stderr, "xdp_rx: --json wants a path\n");
				return -1;
			}
			o->json = v;
			i++;
		} else if (!strcmp(a, "--mode")) {
			if (!v) {
				fprintf(stderr, "xdp_rx: --mode wants a mode\n");
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
					fprintf(stderr, "xdp_rx: unknown mode '%s'\n", v);
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
			fprintf(stderr, "xdp_rx: unknown option '%s'\n", a);
			return -1;
		}
#undef NEED_NUM
	}
	if (quick) {
		if (!packets_set)
			o->packets = 100000;
		if (!reps_set)
			o->reps = 1;
		if (!stall_set)
			o->stall_ms = 30;
		o->crash_test = true;
	}
	return 0;
}

/* The crash test: a child sets up a namespace and is killed before it can
 * clean up; the parent must find and remove what it left. Returns 0 when
 * the leftover was removed, 1 when not, EXIT_SKIP when the child could not
 * set up. */
static int crash_test(void)
{
	int pfd[2];
	if (pipe(pfd) != 0)
		return 1;
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		close(pfd[0]);
		char why[200];
		char ok = ns_setup(why, sizeof why) == 0 ? 'y' : 'n';
		if (write(pfd[1], &ok, 1) != 1)
			_exit(1);
		for (;;)
			pause(); /* until SIGKILL: no cleanup runs */
	}
	close(pfd[1]);
	char ok = 'n';
	if (read(pfd[0], &ok, 1) != 1)
		ok = 'n';
	close(pfd[0]);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	char name[64];
	snprintf(name, sizeof name, NS_PREFIX "%d", (int)pid);
	if (ok != 'y') {
		if (ns_exists(name))
			IP(true, "netns", "del", name);
		return EXIT_SKIP;
	}
	if (!ns_exists(name)) {
		fprintf(stderr, "xdp_rx: FAIL: the killed child's namespace %s is not there to clean\n", name);
		return 1;
	}
	unsigned removed = clean_leftovers();
	if (ns_exists(name) || removed == 0) {
		fprintf(stderr, "xdp_rx: FAIL: the namespace %s of a killed run was not removed\n", name);
		return 1;
	}
	printf("xdp_rx: crash test: the namespace of killed pid %d was removed by this run\n", (int)pid);
	return 0;
}

/* Does the driver take XDP_ZEROCOPY? A throwaway UMEM and socket. */
static bool probe_zerocopy(const struct xdp_prog *x)
{
	struct rx r;
	memset(&r, 0, sizeof r);
	if (frames_init(&r.f, false, false, NULL) != 0) {
		frames_finish(&r.f, &(struct result){ 0 }, "probe", false);
		return false;
	}
	bool zc = xsk_open(&r, x, true) == 0;
	if (zc) {
		uint32_t k = 0;
		bpf_map_delete_elem(x->xsks_fd, &k);
		xsk_socket__delete(r.xsk);
	}
	struct result dummy;
	memset(&dummy, 0, sizeof dummy);
	frames_finish(&r.f, &dummy, "probe", false);
	return zc;
}

int main(int argc, char **argv)
{
	struct opts o = {
		.packets = 1000000,
		.payload = 64,
		.reps = 3,
		.bad = 8,
		.quiet_ms = 200,
		.deadline_s = 20,
		.modes = (1u << M_COUNT) - 1,
	};
	if (parse_args(argc, argv, &o) != 0) {
		usage(stderr);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (geteuid() != 0) {
		printf("xdp_rx: skipped: needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for the namespace,"
		       " CAP_BPF for XDP)\n");
		return EXIT_SKIP;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	clean_leftovers();
	int rc = 0;
	if (o.crash_test) {
		int c = crash_test();
		if (c == EXIT_SKIP) {
			printf("xdp_rx: skipped: a namespace with a veth pair could not be set up\n");
			return EXIT_SKIP;
		}
		rc |= c;
	}

	char why[256] = "";
	char ns_name[64];
	atexit(ns_teardown);
	int s = ns_setup(why, sizeof why);
	snprintf(ns_name, sizeof ns_name, "%s", g_ns);
	if (s) {
		ns_teardown();
		printf("xdp_rx: %s: %s\n", s == EXIT_SKIP ? "skipped" : "FAILED", why);
		return s == EXIT_SKIP ? EXIT_SKIP : 1;
	}
	struct xdp_prog x;
	s = xdp_load(&x, o.verbose, why, sizeof why);
	if (s) {
		xdp_unload(&x);
		ns_teardown();
		printf("xdp_rx: %s: %s\n", s == EXIT_SKIP ? "skipped" : "FAILED", why);
		return s == EXIT_SKIP ? EXIT_SKIP : 1;
	}
	/* AF_XDP itself: a socket on a throwaway UMEM. */
	{
		int fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			int e = errno;
			xdp_unload(&x);
			ns_teardown();
			printf("xdp_rx: skipped: AF_XDP sockets: %s (CONFIG_XDP_SOCKETS?)\n", strerror(e));
			return EXIT_SKIP;
		}
		close(fd);
	}
	g_zerocopy = probe_zerocopy(&x);
	choose_cpus();
	calibrate_clock();
	if (g_rx_cpu >= 0) {
		cpu_set_t one;
		CPU_ZERO(&one);
		CPU_SET(g_rx_cpu, &one);
		if (sched_setaffinity(0, sizeof one, &one) != 0)
			g_rx_cpu = g_gen_cpu = -1;
	}
	printf("iop-xdp-rx: namespace %s, veth %s (XDP native, AF_XDP %s mode) <- %s (AF_PACKET generator);"
	       " %" PRIu64 " frames of %u B UDP payload per run, %u reps; UMEM %u frames of %u B, rings %u\n",
	       ns_name, IF_RX, g_zerocopy ? "zero-copy" : "copy", IF_GEN, o.packets, o.payload, o.reps, NFRAMES,
	       FRAME, RING);
	if (g_rx_cpu >= 0)
		printf("pinned: receiver on CPU %d, generator on CPU %d\n", g_rx_cpu, g_gen_cpu);
	printf("pools: one chunk = the UMEM, magazines of %u frames, %s; allocator time: %s pairs around"
	       " each refill and free batch, empty pair subtracted\n", IOP_CACHE_SIZE_MAX,
	       g_unbounded ? "no limit (--unbounded)" : "limit = the UMEM's frames", TICKS_NAME);

	struct agg agg[M_COUNT];
	memset(agg, 0, sizeof agg);
	for (unsigned rep = 0; rep < o.reps && !g_stop; rep++) {
		for (int m = 0; m < M_COUNT && !g_stop; m++) {
			if (!(o.modes & (1u << m)))
				continue;
			struct result res;
			memset(&res, 0, sizeof res);
			run_mode(m, &o, &x, &res);
			check_result(m, &o, &res);
			if (o.verbose || res.failed)
				printf("  %s rep %u: sent %" PRIu64 ", good %" PRIu64 ", short %" PRIu64 "/%" PRIu64
				       ", malformed %" PRIu64 "/%" PRIu64 ", foreign %" PRIu64 ", XDP saw %" PRIu64
				       ", forwarded %" PRIu64 ", returned %" PRIu64 ", kernel drops: ring full %" PRIu64
				       ", fill empty %" PRIu64 ", other %" PRIu64 ", refills short %" PRIu64
				       ", map refused %" PRIu64 "%s\n",
				       mode_name[m], rep, res.sent, res.good, res.shorts, res.sent_short, res.malformed,
				       res.sent_malformed, res.foreign, res.xdp_seen, res.forwarded, res.ret_good,
				       (uint64_t)res.xs.rx_ring_full, (uint64_t)res.xs.rx_fill_ring_empty_descs,
				       (uint64_t)res.xs.rx_dropped, res.refill_short, res.map_refused,
				       res.deadline_hit ? ", deadline hit" : "");
			agg_add(&agg[m], &res);
			if (res.failed)
				rc = 1;
		}
	}
	print_table(&o, agg);
	if (o.json && append_json(&o, agg) != 0)
		rc = 1;
	xdp_unload(&x);
	ns_teardown();
	rc |= check_nothing_left(ns_name);
	if (g_stop) {
		printf("xdp_rx: interrupted; namespace %s removed\n", ns_name);
		return 1;
	}
	printf("%s\n", rc ? "xdp_rx: FAILED" : "xdp_rx: ok (every frame verified, pools empty and audited,"
						" namespace and veth removed)");
	return rc;
}
