/* SPDX-License-Identifier: MIT */
/*
 * Fault injection of chunk requests (iop_fault.h): every mapping that a
 * pool's chunk or a large heap block asks of the OS layer counts as one
 * request, and the settings may fail it (ENOMEM) or delay it.
 */
#include <pthread.h>
#include <time.h>

#include "os.h"
#include "iop_fault.h"
#include "../options.h"

static _Atomic unsigned f_every, f_nth, f_pct, f_delay_us;
static _Atomic uint64_t f_requests, f_injected, f_base;

static void fault_env(void)
{
	struct iop__fault f = {
		.fail_every = (unsigned)_iop_opt_uint(IOP_OPT_FAULT_CHUNK_FAIL_EVERY),
		.fail_pct = (unsigned)_iop_opt_uint(IOP_OPT_FAULT_CHUNK_FAIL_PCT),
		.delay_us = (unsigned)_iop_opt_uint(IOP_OPT_FAULT_CHUNK_DELAY_US),
	};
	if (f.fail_every || f.fail_pct || f.delay_us)
		iop__fault_set(&f);
}

void iop__fault_set(const struct iop__fault *f)
{
	struct iop__fault off = { 0 };
	if (!f)
		f = &off;
	atomic_store(&f_base, atomic_load(&f_requests));
	atomic_store(&f_every, f->fail_every);
	atomic_store(&f_nth, f->fail_nth);
	atomic_store(&f_pct, f->fail_pct > 100 ? 100 : f->fail_pct);
	atomic_store(&f_delay_us, f->delay_us);
}

uint64_t iop__fault_requests(void)
{
	return atomic_load(&f_requests);
}

uint64_t iop__fault_injected(void)
{
	return atomic_load(&f_injected);
}

/* Relaxed loads: the settings change between test phases, not during a
 * request. */
void _iop_os_fault_env(void)
{
	static pthread_once_t env_once = PTHREAD_ONCE_INIT;
	pthread_once(&env_once, fault_env);
}

bool _iop_os_fault(void)
{
	uint64_t k = atomic_fetch_add(&f_requests, 1) + 1 - LOAD(&f_base);
	unsigned delay = LOAD(&f_delay_us);
	if (delay) {
		struct timespec ts = { delay / 1000000, (long)(delay % 1000000) * 1000 };
		while (nanosleep(&ts, &ts) != 0)
			;
	}
	unsigned every = LOAD(&f_every), nth = LOAD(&f_nth), pct = LOAD(&f_pct);
	/* A fixed sequence (the request number hashed), so runs repeat. */
	uint64_t h = k * 0x9e3779b97f4a7c15ull;
	h ^= h >> 29;
	bool fail = (every && k % every == 0) || (nth && k == nth) || (pct && (h >> 7) % 100 < pct);
	if (fail)
		COUNT(&f_injected, 1);
	return fail;
}
