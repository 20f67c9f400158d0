/* SPDX-License-Identifier: MIT */
/*
 * Fault injection in iopool's OS layer, for tests and benchmarks: make
 * chunk requests slow (a delay per chunk, like page faulting and
 * compaction on a fragmented machine) or fail (every Nth, one chosen one,
 * or a percentage), to reproduce memory exhaustion. A failed request looks
 * like mmap's ENOMEM to the library, which never treats it as fatal.
 *
 * Not part of the public API (the iop__ prefix: it may change at any time);
 * the same settings are read from the environment at the first pool
 * creation:
 *   IOPOOL_FAULT_CHUNK_FAIL_EVERY=N  every Nth chunk request fails
 *   IOPOOL_FAULT_CHUNK_FAIL_PCT=P    P% of them fail (a fixed-seed sequence)
 *   IOPOOL_FAULT_CHUNK_DELAY_US=U    each sleeps U microseconds first
 */
#ifndef IOP_FAULT_H
#define IOP_FAULT_H

#include "iopool.h"

#ifdef __cplusplus
extern "C" {
#endif

struct iop__fault {
	unsigned fail_every; /* every Nth chunk request fails; 0: none */
	unsigned fail_nth;   /* the Nth request from now fails, once; 0: none */
	unsigned fail_pct;   /* this percentage fails; 0: none */
	unsigned delay_us;   /* each request sleeps this long first */
};

/* Replace the settings (NULL: all off) and restart the request count. */
IOP_API void iop__fault_set(const struct iop__fault *f);
/* Chunk requests so far, and how many of them were failed on purpose. */
IOP_API uint64_t iop__fault_requests(void);
IOP_API uint64_t iop__fault_injected(void);

#ifdef __cplusplus
}
#endif

#endif /* IOP_FAULT_H */
