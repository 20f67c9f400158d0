/* SPDX-License-Identifier: MIT */
/*
 * Live statistics outside the process: a POSIX shared-memory segment
 * (format in include/iopool/shm.h) that a background thread rewrites every interval
 * from iop_pool_stats() snapshots, for tools/iopool-top to read.
 *
 * The fast paths are not touched: the thread reads what iop_pool_stats()
 * reads (the pools' counters, and every thread's cache slot with relaxed
 * loads), under the registry lock, so pools can be neither created nor
 * destroyed during the walk and a pool created or destroyed since the last
 * update appears or disappears at the next one. The records are built in
 * private memory first; only the copy into the segment is inside the
 * seqlock, so a reader retries for a few microseconds at most.
 *
 * Lock order: pub.ctl before the registry lock (iop_stats_publish() writes
 * the first update holding pub.ctl); the thread takes pub.lock and the
 * registry lock, never both (the whole order: internal.h, fork.c).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "os/os.h"
#include "options.h"
#include "iopool/shm.h"

_Static_assert(IOP_SHM_NAME_MAX == IOP_NAME_MAX, "a pool's name fits a record's");

static struct {
	pthread_mutex_t ctl;    /* held through each publish and unpublish
	                           call, so they never overlap */
	pthread_mutex_t lock;   /* the thread's sleep and `stop` */
	pthread_cond_t wake;    /* signalled to stop the thread */
	bool active;
	bool stop;              /* the thread is to exit */
	bool atexit_done;
	pid_t owner;            /* the publishing process: a child forked
	                           from it inherits this state, not the
	                           thread, and must leave the segment alone */
	pthread_t thread;
	char shm_name[32];
	struct iop_shm_header *seg;
	size_t seg_size;
	uint32_t interval_ms;
	struct iop_shm_record *scratch; /* the next update's records */
	/* A child of fork() publishes again, under its pid, with these. */
	bool restart;
	char restart_name[IOP_SHM_NAME_MAX];
	uint32_t restart_interval_ms;
} pub = { .ctl = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER };

/* ---- one update ---------------------------------------------------------- */

struct fill {
	struct iop_shm_record *rec;
	struct iop_resident *res; /* each record's chunks, measured unlocked */
	uint32_t n;
};

/* Registry locked: the pool cannot be destroyed under us, and its name was
 * set under the same lock (iop_pool_create). */
static void fill_record(struct iop_pool *pool, void *arg)
{
	struct fill *f = arg;
	struct iop_pool_stats s;
	if (f->n >= IOP_PUBLISH_MAX_POOLS)
		return; /* the segment's size (config.h) */
	struct iop_resident *res = &f->res[f->n];
	struct iop_shm_record *r = &f->rec[f->n++];

	_iop_pool_stats_locked(pool, &s, res);
	memset(r, 0, sizeof(*r));
	memcpy(r->name, pool->name, sizeof(r->name));
	r->kind = IOP_SHM_KIND_POOL;
	r->flags = pool->flags;
	r->id = pool->id;
#define COPY(t, n) r->n = s.n;
	IOP_POOL_STATS_FIELDS(COPY)
#undef COPY
}

/* Called by one thread at a time: iop_stats_publish() before the thread
 * starts, then only the thread; the segment and scratch stay until it is
 * joined. */
static void update(void)
{
	struct iop_shm_header *h = pub.seg;
	struct iop_shm_record *rec = (struct iop_shm_record *)(void *)((char *)h + sizeof(*h));
	static struct iop_resident res[IOP_PUBLISH_MAX_POOLS];
	struct fill f = { pub.scratch, res, 0 };

	_iop_registry_lock();
	_iop_for_each_pool(fill_record, &f);
	_iop_registry_unlock();
	/* The system calls, with no lock held. */
	for (uint32_t i = 0; i < f.n; i++)
		f.rec[i].bytes_resident = _iop_resident_bytes(&res[i]);

	/* Seqlock write side, as the kernel's write_seqcount_begin/end: an
	 * odd count; the records and the header's variable fields as release
	 * stores, none of which can be seen before the odd count; then the
	 * even count, with release, so a reader who sees it sees them all.
	 * Only this thread writes the segment (other processes read it). */
	uint64_t seq = __atomic_load_n(&h->seq, __ATOMIC_RELAXED);
	__atomic_store_n(&h->seq, seq + 1, __ATOMIC_RELAXED);
	iop_shm_store_words(rec, f.rec, (size_t)f.n * sizeof(*rec));
	__atomic_store_n(&h->nrecords, f.n, __ATOMIC_RELEASE);
	__atomic_store_n(&h->updated_ns, (uint64_t)_iop_wall_ns(), __ATOMIC_RELEASE);
	__atomic_store_n(&h->updates, h->updates + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&h->seq, seq + 2, __ATOMIC_RELEASE);
}

static void *publisher(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&pub.lock);
	while (!pub.stop) {
		struct timespec until = _iop_timespec(_iop_now_ns() + (int64_t)pub.interval_ms * 1000000);
		while (!pub.stop && pthread_cond_timedwait(&pub.wake, &pub.lock, &until) != ETIMEDOUT)
			;
		if (pub.stop)
			break;
		pthread_mutex_unlock(&pub.lock);
		update();
		pthread_mutex_lock(&pub.lock);
	}
	pthread_mutex_unlock(&pub.lock);
	return NULL;
}

/* ---- the segment ---------------------------------------------------------- */

/* Create, size and map the segment, and fill its header; pub.ctl held. */
static int segment_open(const struct iop_publish_params *p)
{
	size_t size = sizeof(struct iop_shm_header) + (size_t)IOP_PUBLISH_MAX_POOLS * sizeof(struct iop_shm_record);
	snprintf(pub.shm_name, sizeof(pub.shm_name), "%s%d", IOP_SHM_PREFIX, (int)getpid());

	int err = 0;
	void *m = _iop_os_shm_create(pub.shm_name, size, &err);
	if (!m)
		return -err;

	struct iop_shm_header *h = m;
	h->version = IOP_SHM_VERSION;
	h->header_size = sizeof(*h);
	h->record_size = sizeof(struct iop_shm_record);
	h->max_records = IOP_PUBLISH_MAX_POOLS;
	h->pid = (int32_t)getpid();
	h->start_time = iop_shm_read_start_time("/proc/self/stat");
	h->published_ns = (uint64_t)_iop_wall_ns();
	h->interval_ms = p->interval_ms;
	snprintf(h->name, sizeof(h->name), "%s", p->name ? p->name : program_invocation_short_name);
	/* The magic last, with release: a reader loads it first (acquire)
	 * and takes a zero magic for "not set up yet", so it never sees the
	 * magic with the sizes still zero. */
	uint64_t magic;
	memcpy(&magic, IOP_SHM_MAGIC, sizeof(magic));
	__atomic_store_n((uint64_t *)(void *)h->magic, magic, __ATOMIC_RELEASE);
	pub.seg = h;
	pub.seg_size = size;
	return 0;
}

static void segment_close(bool remove)
{
	_iop_os_shm_close(pub.shm_name, pub.seg, pub.seg_size, remove);
	pub.seg = NULL;
	free(pub.scratch);
	pub.scratch = NULL;
	pub.active = false;
}

/* ---- the calls ------------------------------------------------------------ */

static int stop_publishing(void)
{
	int err = 0;
	pthread_mutex_lock(&pub.ctl);
	if (!pub.active) {
		err = -ENOENT;
	} else if (pub.owner != getpid()) {
		/* A forked child: the parent's thread is not here and the
		 * segment is the parent's. Drop our mapping of it. */
		segment_close(false);
		err = -ENOENT;
	} else {
		pthread_mutex_lock(&pub.lock);
		pub.stop = true;
		pthread_cond_signal(&pub.wake);
		pthread_mutex_unlock(&pub.lock);
		pthread_join(pub.thread, NULL);
		pthread_cond_destroy(&pub.wake);
		segment_close(true);
	}
	pthread_mutex_unlock(&pub.ctl);
	return err;
}

static void publish_at_exit(void)
{
	stop_publishing();
}

static int bad_param(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad_param(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_iop_vmsg(NULL, "iop_stats_publish", fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int check_params(const struct iop_publish_params *params, struct iop_publish_params *p)
{
	*p = (struct iop_publish_params)IOP_PUBLISH_PARAMS_INIT;
	if (params) {
		if (params->struct_size < sizeof(*p)) /* every field exists since the first version */
			return bad_param("params->struct_size is %u, want %zu (use IOP_PUBLISH_PARAMS_INIT)",
					 params->struct_size, sizeof(*p));
		for (size_t i = sizeof(*p); i < params->struct_size; i++)
			if (((const unsigned char *)params)[i])
				return bad_param("params sets fields this library does not know (byte %zu)", i);
		memcpy(p, params, sizeof(*p));
	}
	if (p->interval_ms == 0)
		p->interval_ms = IOP_PUBLISH_INTERVAL_DEFAULT_MS;
	if (p->interval_ms < IOP_PUBLISH_INTERVAL_MIN_MS || p->interval_ms > IOP_PUBLISH_INTERVAL_MAX_MS)
		return bad_param("interval_ms %u is outside [%u, %u]", p->interval_ms, IOP_PUBLISH_INTERVAL_MIN_MS,
				 IOP_PUBLISH_INTERVAL_MAX_MS);
	if (p->name && strlen(p->name) >= IOP_SHM_NAME_MAX)
		return bad_param("name '%.40s...' is longer than %u characters", p->name, IOP_SHM_NAME_MAX - 1);
	if (p->flags)
		return bad_param("unknown flags 0x%x", p->flags);
	if (p->reserved0)
		return bad_param("reserved0 must be zero");
	return 0;
}

int iop_stats_publish(const struct iop_publish_params *params)
{
	struct iop_publish_params p;
	int err = check_params(params, &p);
	if (err)
		return err;

	pthread_mutex_lock(&pub.ctl);
	if (pub.active && pub.owner == getpid()) {
		pthread_mutex_unlock(&pub.ctl);
		return -EALREADY;
	}
	if (pub.active) /* inherited from the parent: not ours to write */
		segment_close(false);
	pub.scratch = calloc(IOP_PUBLISH_MAX_POOLS, sizeof(*pub.scratch));
	if (!pub.scratch) {
		pthread_mutex_unlock(&pub.ctl);
		return -ENOMEM;
	}
	if ((err = segment_open(&p)) != 0) {
		free(pub.scratch);
		pub.scratch = NULL;
		pthread_mutex_unlock(&pub.ctl);
		return err;
	}
	pub.interval_ms = p.interval_ms;
	pub.stop = false;
	pub.owner = getpid();
	update(); /* readable at once, not one interval from now */

	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pub.wake, &ca);
	pthread_condattr_destroy(&ca);

	/* The thread takes no signal meant for the program. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&pub.thread, NULL, publisher, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		pthread_cond_destroy(&pub.wake);
		segment_close(true);
		pthread_mutex_unlock(&pub.ctl);
		return -err;
	}
	pthread_setname_np(pub.thread, "iop-publish");
	pub.active = true;
	if (!pub.atexit_done)
		pub.atexit_done = atexit(publish_at_exit) == 0;
	pthread_mutex_unlock(&pub.ctl);
	return 0;
}

int iop_stats_unpublish(void)
{
	return stop_publishing();
}

/* ---- fork() (fork.c) --------------------------------------------------------- */

/* pub.ctl is held through a first update, which takes the registry: it
 * comes before it (leaf false); pub.lock nests nothing: late (leaf true).
 * The child drops its mapping of the parent's segment (it must never
 * write it) and publishes again, under its own pid, at its first call
 * that may block. */
void _iop_publish_atfork(int phase, bool leaf)
{
	pthread_mutex_t *m = leaf ? &pub.lock : &pub.ctl;
	if (phase == IOP_FORK_PREPARE) {
		pthread_mutex_lock(m);
		return;
	}
	if (phase == IOP_FORK_PARENT) {
		pthread_mutex_unlock(m);
		return;
	}
	pthread_mutex_init(m, NULL);
	if (leaf || !pub.active)
		return;
	if (pub.owner != getpid()) {
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&pub.wake, &ca);
		pthread_condattr_destroy(&ca);
		memcpy(pub.restart_name, pub.seg->name, sizeof(pub.restart_name));
		pub.restart_name[sizeof(pub.restart_name) - 1] = 0;
		pub.restart_interval_ms = pub.interval_ms;
		pub.restart = true;
		segment_close(false);
	}
}

void _iop_publish_resume(void)
{
	pthread_mutex_lock(&pub.ctl);
	bool again = pub.restart;
	pub.restart = false;
	pthread_mutex_unlock(&pub.ctl);
	if (!again)
		return;
	struct iop_publish_params p = IOP_PUBLISH_PARAMS_INIT;
	p.name = pub.restart_name;
	p.interval_ms = pub.restart_interval_ms;
	int err = iop_stats_publish(&p);
	if (err && err != -EALREADY)
		_iop_msg("fork", "the child cannot publish its statistics: %s", strerror(-err));
}

/* ---- IOPOOL_PUBLISH ------------------------------------------------------- */

static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static void env_publish(void)
{
	if (!_iop_opt_uint(IOP_OPT_PUBLISH))
		return;
	struct iop_publish_params p = IOP_PUBLISH_PARAMS_INIT;
	/* 0 when not given: iop_stats_publish()'s default */
	p.interval_ms = (uint32_t)_iop_opt_uint(IOP_OPT_PUBLISH_INTERVAL_MS);
	int err = iop_stats_publish(&p);
	if (err && err != -EALREADY)
		_iop_msg("IOPOOL_PUBLISH", "cannot publish statistics: %s", strerror(-err));
}

void _iop_publish_autostart(void)
{
	pthread_once(&env_once, env_publish);
}
