/* SPDX-License-Identifier: MIT */
/*
 * README's table of IOPOOL_* variables, printed from the one table of them
 * (src/options.h), so that the two cannot drift apart.
 *
 *   options-table                 print the table (markdown)
 *   options-table --check FILE    exit 1, showing both, when FILE's table
 *                                 (between the marker lines) differs
 *
 * Built by tests/CMakeLists.txt for that check; scripts/options-table.sh
 * builds and runs it without a build directory.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

#define BEGIN "<!-- options table: scripts/options-table.sh prints it from src/options.h -->\n"
#define END "<!-- end of options table -->\n"

static char table[16384];
static size_t used;

static void put(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void put(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(table + used, sizeof(table) - used, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(table) - used) {
		fprintf(stderr, "options-table: the table is too long\n");
		exit(2);
	}
	used += (size_t)n;
}

static void row(const char *name, enum iop_opt_type type, unsigned long long lo, unsigned long long hi,
		const char *unset, const char *doc)
{
	put("| `%s` | ", name);
	switch (type) {
	case IOP_OPT_BOOL:
		put("`0` or `1`");
		break;
	case IOP_OPT_UINT:
		put("`%llu` to `%llu`", lo, hi);
		break;
	case IOP_OPT_PERCENT:
		put("above `%llu`, up to `%llu`", lo, hi);
		break;
	case IOP_OPT_PATH:
		put("a file");
		break;
	case IOP_OPT_WORD:
		put("a word");
		break;
	}
	put(" | %s | %s |\n", unset, doc);
}

int main(int argc, char **argv)
{
	put("%s| variable | values | unset | effect |\n|---|---|---|---|\n", BEGIN);
#define ROW(name, type, lo, hi, unset, doc) \
	row("IOPOOL_" #name, IOP_OPT_##type, (unsigned long long)(lo), (unsigned long long)(hi), unset, doc);
	IOP_OPTIONS(ROW)
#undef ROW
	put("%s", END);
	if (argc == 1) {
		fputs(table, stdout);
		return 0;
	}
	if (argc != 3 || strcmp(argv[1], "--check") != 0) {
		fprintf(stderr, "usage: %s [--check FILE]\n", argv[0]);
		return 2;
	}
	FILE *f = fopen(argv[2], "r");
	if (!f) {
		perror(argv[2]);
		return 2;
	}
	static char text[1 << 20];
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	const char *b = strstr(text, BEGIN), *e = b ? strstr(b, END) : NULL;
	if (b && e && (size_t)(e + strlen(END) - b) == used && memcmp(b, table, used) == 0)
		return 0;
	fprintf(stderr, "%s: the table of IOPOOL_* variables is not the one src/options.h gives; "
		"replace it (scripts/options-table.sh --update %s) with:\n%s", argv[2], argv[2], table);
	return 1;
}
