/* SPDX-License-Identifier: MIT */
/*
 * A publishing process for the iopool-top screen tests
 * (tests/test_top_tmux.sh): application pools, the heap's size classes
 * (about 40 of them, enough to fill a screen by themselves), and a stream
 * of allocations so that the rates move. Prints "ready <pid>" once the
 * first update is written, then runs until killed or until its standard
 * input closes.
 *
 *   top_publisher [NAME]     (default name "toppub")
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <iopool.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static iop_pool_t *make(const char *name, size_t size, unsigned hold)
{
	struct iop_pool_params pp;
	iop_pool_params_init(&pp);
	pp.name = name;
	pp.obj_size = size;
	iop_pool_t *p = iop_pool_create(&pp);
	if (!p) {
		fprintf(stderr, "top_publisher: iop_pool_create(%s): %s\n", name, strerror(errno));
		exit(1);
	}
	for (unsigned i = 0; i < hold; i++)
		if (!iop_alloc(p)) /* held until exit: they show as in flight */
			exit(1);
	return p;
}

int main(int argc, char **argv)
{
	iop_pool_t *rx = make("app-rx-buffers", 2048, 300);
	make("app-tx-frames", 9000, 40);
	make("app-sessions", 192, 1000);

	/* Sizes from 16 B to 64 KiB: one block of each of about 40 classes,
	 * held, and a few large ones. */
	for (size_t s = 16; s <= 65536; s += s / 4 > 16 ? s / 4 : 16)
		if (!iop_heap_alloc(s))
			return 1;
	/* Classes 104 and 1024, which a lexical sort puts the wrong way round. */
	if (!iop_heap_alloc(100) || !iop_heap_alloc(1000))
		return 1;

	struct iop_publish_params pp;
	iop_publish_params_init(&pp);
	pp.name = argc > 1 ? argv[1] : "toppub";
	pp.interval_ms = 100;
	int err = iop_stats_publish(&pp);
	if (err) {
		fprintf(stderr, "top_publisher: iop_stats_publish: %s\n", strerror(-err));
		return 1;
	}
	printf("ready %d\n", (int)getpid());
	fflush(stdout);

	/* Churn until stdin closes (the test's end) or a signal. */
	for (;;) {
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		if (poll(&pfd, 1, 10) > 0) {
			char c;
			if (read(STDIN_FILENO, &c, 1) <= 0)
				break;
		}
		void *b[32];
		unsigned n = iop_alloc_bulk(rx, b, 32);
		iop_free_bulk(rx, b, n);
	}
	iop_stats_unpublish();
	return 0;
}
