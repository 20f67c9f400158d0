/* SPDX-License-Identifier: MIT */
/*
 * Messages: every line the library writes to stderr, in one form:
 *
 *   iopool: pool '<name>': <text>     about one pool
 *   iopool: <who>: <text>             otherwise; who is the public call
 *                                     (iop_pool_create), the IOPOOL_*
 *                                     variable, or the part (heap, worker)
 *
 * then a return (a warning, or the reason that goes with an -EINVAL) or
 * abort() (misuse that cannot be reported, a broken invariant).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

/* One write(2) per message, so messages from several threads never
 * interleave and nothing is lost in a stdio buffer before abort(). */
void _iop_vmsg(const struct iop_pool *pool, const char *who, const char *fmt, va_list ap)
{
	char buf[512];
	int n = pool ? snprintf(buf, sizeof(buf), "iopool: pool '%s': ", pool->name)
		     : snprintf(buf, sizeof(buf), "iopool: %s: ", who ? who : "?");
	if (n < 0)
		n = 0;
	if ((size_t)n < sizeof(buf)) {
		int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
		n += m > 0 ? m : 0;
	}
	if ((size_t)n > sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
	(void)w;
}

void _iop_msg(const char *who, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_iop_vmsg(NULL, who, fmt, ap);
	va_end(ap);
}

void _iop_msg_pool(const struct iop_pool *pool, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_iop_vmsg(pool, "pool", fmt, ap);
	va_end(ap);
}

void _iop_fatal(const char *who, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_iop_vmsg(NULL, who, fmt, ap);
	va_end(ap);
	abort();
}

void _iop_die(const struct iop_pool *pool, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	/* NULL only from an internal assertion without a pool in hand. */
	_iop_vmsg(pool, "pool '?'", fmt, ap);
	va_end(ap);
	abort();
}
