/* SPDX-License-Identifier: MIT */
/*
 * The clock: every time the library reads, in nanoseconds. Monotonic for
 * deadlines, waits and periods (condition variables are set to
 * CLOCK_MONOTONIC to match); the coarse one where a tick of a few
 * milliseconds is fine and ~20 ns matter (the racy worker wake-up on slow
 * paths); the wall clock only for timestamps that a reader in another
 * process shows (the shm segment).
 */
#ifndef IOP_CLOCK_H
#define IOP_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t _iop_clock_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t _iop_now_ns(void)
{
	return _iop_clock_ns(CLOCK_MONOTONIC);
}

static inline int64_t _iop_now_coarse_ns(void)
{
	return _iop_clock_ns(CLOCK_MONOTONIC_COARSE);
}

static inline int64_t _iop_wall_ns(void)
{
	return _iop_clock_ns(CLOCK_REALTIME);
}

/* A time in ns as the timespec pthread_cond_timedwait() takes. */
static inline struct timespec _iop_timespec(int64_t ns)
{
	return (struct timespec){ .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
}

#endif /* IOP_CLOCK_H */
