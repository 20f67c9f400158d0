/* SPDX-License-Identifier: MIT */
/*
 * Options: the one parser of the IOPOOL_* environment variables listed in
 * options.h. All are read together, once per process (pthread_once), so
 * every reader sees the same values and none calls getenv() on its own.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "options.h"

static const struct {
	const char *name;
	enum iop_opt_type type;
	uint64_t min, max;
} table[IOP_OPT_COUNT] = {
#define ROW(n, t, lo, hi, def, doc) [IOP_OPT_##n] = { "IOPOOL_" #n, IOP_OPT_##t, lo, hi },
	IOP_OPTIONS(ROW)
#undef ROW
};

static struct {
	bool given;
	uint64_t u;
	double pct;
	const char *path;
} value[IOP_OPT_COUNT];

static pthread_once_t once = PTHREAD_ONCE_INIT;

static bool parse_bool(const char *v, uint64_t *out)
{
	static const char *const words[][2] = { { "0", "1" }, { "no", "yes" }, { "false", "true" }, { "off", "on" } };
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		for (int b = 0; b < 2; b++)
			if (strcasecmp(v, words[i][b]) == 0) {
				*out = (uint64_t)b;
				return true;
			}
	return false;
}

static void parse_one(enum iop_opt o, const char *v)
{
	const char *name = table[o].name;
	char *end;
	switch (table[o].type) {
	case IOP_OPT_BOOL:
		if (!parse_bool(v, &value[o].u)) {
			_iop_msg(name, "'%s' is not 0 or 1: ignored", v);
			return;
		}
		break;
	case IOP_OPT_UINT:
		errno = 0;
		value[o].u = strtoull(v, &end, 10);
		if (*v < '0' || *v > '9' || *end || errno || value[o].u < table[o].min || value[o].u > table[o].max) {
			_iop_msg(name, "'%s' is not a number from %llu to %llu: ignored", v,
				      (unsigned long long)table[o].min, (unsigned long long)table[o].max);
			return;
		}
		break;
	case IOP_OPT_PERCENT:
		value[o].pct = strtod(v, &end);
		if (end == v || *end || !(value[o].pct > (double)table[o].min && value[o].pct <= (double)table[o].max)) {
			_iop_msg(name, "'%s' is not a percentage above %llu, up to %llu: ignored", v,
				      (unsigned long long)table[o].min, (unsigned long long)table[o].max);
			return;
		}
		break;
	case IOP_OPT_PATH:
	case IOP_OPT_WORD:
		/* A copy: the program may change its environment later. */
		if (!(value[o].path = strdup(v)))
			return;
		break;
	}
	value[o].given = true;
}

static void parse_all(void)
{
	for (int o = 0; o < IOP_OPT_COUNT; o++) {
		const char *v = getenv(table[o].name);
		if (v && *v)
			parse_one((enum iop_opt)o, v);
	}
}

bool _iop_opt_given(enum iop_opt o)
{
	pthread_once(&once, parse_all);
	return value[o].given;
}

uint64_t _iop_opt_uint(enum iop_opt o)
{
	return _iop_opt_given(o) ? value[o].u : 0;
}

double _iop_opt_percent(enum iop_opt o)
{
	return _iop_opt_given(o) ? value[o].pct : 0;
}

const char *_iop_opt_path(enum iop_opt o)
{
	return _iop_opt_given(o) ? value[o].path : NULL;
}
