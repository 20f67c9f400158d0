/* SPDX-License-Identifier: MIT */
/*
 * The driver's output: the matrix and the machine, the baselines, one table
 * per case (text or markdown), and the JSON file.
 */
#include "bench.h"

#include <errno.h>
#include <gnu/libc-version.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <iopool.h>

#ifndef IOP_BENCH_BUILD
#define IOP_BENCH_BUILD "unknown"
#endif
#ifndef IOP_BENCH_DPDK_VERSION
#define IOP_BENCH_DPDK_VERSION ""
#endif

#define STR_(x) #x
#define STR(x) STR_(x)
#define IOP_VERSION_STRING STR(IOP_VERSION_MAJOR) "." \
	STR(IOP_VERSION_MINOR) "." STR(IOP_VERSION_PATCH)

static const char *const base_names[BASE_COUNT] = {
	[BASE_EMPTY] = "empty loop",
	[BASE_ATOMIC] = "atomic increment",
	[BASE_MUTEX] = "mutex lock+unlock",
};
static const char *const base_notes[BASE_COUNT] = {
	[BASE_EMPTY] = "one iteration of a loop with a compiler barrier",
	[BASE_ATOMIC] = "__atomic_fetch_add, seq_cst, uncontended",
	[BASE_MUTEX] = "pthread_mutex_lock + unlock pair, uncontended",
};
static const char *const base_keys[BASE_COUNT] = {
	[BASE_EMPTY] = "empty_loop_ns",
	[BASE_ATOMIC] = "atomic_inc_ns",
	[BASE_MUTEX] = "mutex_lock_unlock_ns",
};

/* ------------------------------------------------------------------------ */

void read_loadavg(char *out, size_t len)
{
	FILE *f = fopen("/proc/loadavg", "r");
	double l1, l5, l15;

	if (f != NULL && fscanf(f, "%lf %lf %lf", &l1, &l5, &l15) == 3)
		snprintf(out, len, "%.2f %.2f %.2f", l1, l5, l15);
	else
		snprintf(out, len, "unknown");
	if (f != NULL)
		fclose(f);
}

void machine_probe(struct machine *m)
{
	struct utsname u;
	char line[512];
	FILE *f;

	snprintf(m->cpu, sizeof(m->cpu), "unknown");
	f = fopen("/proc/cpuinfo", "r");
	if (f != NULL) {
		while (fgets(line, sizeof(line), f)) {
			char *colon = strchr(line, ':');

			if (strncmp(line, "model name", 10) != 0 || !colon)
				continue;
			colon++;
			colon += strspn(colon, " \t");
			colon[strcspn(colon, "\n")] = '\0';
			snprintf(m->cpu, sizeof(m->cpu), "%s", colon);
			break;
		}
		fclose(f);
	}
	m->cores = sysconf(_SC_NPROCESSORS_ONLN);
	if (uname(&u) == 0)
		snprintf(m->kernel, sizeof(m->kernel), "%s %s %s", u.sysname,
			 u.release, u.machine);
	else
		snprintf(m->kernel, sizeof(m->kernel), "unknown");
#ifdef __clang__
	snprintf(m->compiler, sizeof(m->compiler), "clang %s", __clang_version__);
#else
	snprintf(m->compiler, sizeof(m->compiler), "gcc %s", __VERSION__);
#endif
	snprintf(m->libc, sizeof(m->libc), "glibc %s", gnu_get_libc_version());
	snprintf(m->build, sizeof(m->build), "%s", IOP_BENCH_BUILD);
	snprintf(m->dpdk, sizeof(m->dpdk), "%s", IOP_BENCH_DPDK_VERSION);
	read_loadavg(m->load_start, sizeof(m->load_start));
}

double median(const double *v, unsigned n)
{
	double s[MAX_REPS];

	if (n == 0)
		return 0;
	memcpy(s, v, n * sizeof(*s));
	for (unsigned i = 1; i < n; i++) {
		double x = s[i];
		unsigned j = i;

		for (; j > 0 && s[j - 1] > x; j--)
			s[j] = s[j - 1];
		s[j] = x;
	}
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

int alloc_in_case(const struct run *r, enum alloc_id a, enum bench_case c)
{
	if (!(r->alloc_mask & (1u << a)))
		return 0;
	return a != ALLOC_RING || c == CASE_CROSSTHREAD;
}

int make_parent_dirs(const char *path)
{
	char buf[4096];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0777) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return 0;
}

/* ------------------------------------------------------------------------ */

static const char *alloc_what(enum alloc_id a)
{
	switch (a) {
	case ALLOC_IOPOOL:
#ifdef iop_alloc
		return "iop_alloc/iop_free/iop_alloc_bulk/iop_free_bulk (fast "
		       "paths inline from iopool.h), default pool params, static "
		       "library";
#else
		return "iop_alloc/iop_free/iop_alloc_bulk/iop_free_bulk, default "
		       "pool params, static library";
#endif
	case ALLOC_DPDK:
		return "rte_mempool, per-lcore cache 512, rte_mempool_get/put "
		       "(+_bulk) inlined; EAL --no-huge --no-pci -l 0 -m 512";
	case ALLOC_GLIBC:
		return "malloc/free, no preload";
	case ALLOC_RING:
		return "the crossthread ring passing dummy pointers (crossthread "
		       "only)";
	default:
		return "malloc/free, LD_PRELOAD=";
	}
}

void report_matrix(FILE *f, const struct run *r)
{
	const struct machine *m = &r->machine;

	fprintf(f, "iopool-bench: iopool %s against its peers\n\nmatrix\n",
		IOP_VERSION_STRING);
	for (unsigned c = 0; c < CASE_COUNT; c++)
		if (r->case_mask & (1u << c))
			fprintf(f, "  %-12s %s [%s]\n", bench_cases[c].name,
				bench_cases[c].what, bench_cases[c].unit);
	fprintf(f, "  allocators\n");
	for (unsigned a = 0; a < ALLOC_COUNT; a++) {
		const struct alloc_desc *d = &bench_allocs[a];

		if (!(r->alloc_mask & (1u << a)))
			continue;
		fprintf(f, "    %-10s %s", d->name, alloc_what((enum alloc_id)a));
		if (d->preload != NULL)
			fprintf(f, "%s", d->preload[0] ? d->preload : "(none)");
		if (a == ALLOC_DPDK && m->dpdk[0])
			fprintf(f, " (DPDK %s)", m->dpdk);
		if (a == ALLOC_GLIBC)
			fprintf(f, " (%s)", m->libc);
		if (r->alloc_why[a][0])
			fprintf(f, "\n               -> %s", r->alloc_why[a]);
		fputc('\n', f);
	}
	fprintf(f, "  bulk         the malloc peers have no bulk API: bulk n = "
		"n malloc() then n free()\n"
		"  object size  %u B unless the case varies it; each object "
		"handed out gets one byte written (bulk: not touched)\n"
		"  timing       CLOCK_MONOTONIC around one loop of ~%.0f ms "
		"after calibration/warm-up runs; a loop whose thread was "
		"preempted for over 10%% of it runs again (at most %u runs, the "
		"fastest kept); threads: each thread does as many pairs as one "
		"thread of that allocator does in one such loop\n"
		"  repetitions  %u, interleaved (every allocator once per "
		"repetition, each in a fresh child process, rotating order); a "
		"cell is the median\n"
		"  cells        ns per op; (Nx) = N times iopool's time, so "
		"2.0x is twice as slow as iopool\n\n",
		OBJ_SIZE_DEFAULT, (double)r->copts.target_ns / 1e6,
		PREEMPTED_RETRIES, r->reps);
	fprintf(f, "machine\n  cpu          %s\n  cores        %ld online\n"
		"  kernel       %s\n  compiler     %s\n  libc         %s\n"
		"  build        %s\n  load average %s (1, 5, 15 min; other "
		"work on the machine skews the threads and crossthread cases "
		"most)\n\n", m->cpu, m->cores, m->kernel, m->compiler, m->libc,
		m->build, m->load_start);
}

void report_baselines(FILE *f, const struct run *r, int markdown)
{
	const struct machine *m = &r->machine;

	if (markdown) {
		fprintf(f, "Machine: %s, %ld cores, %s, %s, %s; build %s. "
			"Every cell is the median of %u interleaved "
			"repetitions%s. Load average before/after: %s / "
			"%s.\n\n", m->cpu, m->cores, m->kernel, m->compiler,
			m->libc, m->build, r->reps,
			r->quick ? " (--quick: short loops)" : "",
			m->load_start, m->load_end);
		fprintf(f, "#### baselines\n\n| baseline | ns | what |\n"
			"|:--|--:|:--|\n");
		for (unsigned b = 0; b < BASE_COUNT; b++)
			fprintf(f, "| %s | %.2f | %s |\n", base_names[b],
				r->base_ns[b], base_notes[b]);
		fputc('\n', f);
		return;
	}
	fprintf(f, "baselines (ns, median of %u)\n", r->base_reps);
	for (unsigned b = 0; b < BASE_COUNT; b++)
		fprintf(f, "  %-20s %8.2f   %s\n", base_names[b], r->base_ns[b],
			base_notes[b]);
	fputc('\n', f);
}

/* ------------------------------------------------------------------------ */

enum cell_kind { CELL_VALUE, CELL_NOT_INSTALLED, CELL_NA, CELL_FAILED };

/* What a cell holds; *v is the median (ns, or Mops/s when mops). */
static enum cell_kind cell_get(const struct run *r, unsigned c, unsigned p,
			       unsigned a, int mops, double *v)
{
	const struct cell *cell = &r->cells[c][p][a];

	if (r->alloc_why[a][0])
		return strncmp(r->alloc_why[a], "not installed", 13) == 0
		       ? CELL_NOT_INSTALLED : CELL_NA;
	if (cell->n > 0) {
		*v = median(mops ? cell->mops : cell->ns, cell->n);
		return CELL_VALUE;
	}
	return cell->why[0] ? CELL_NA : CELL_FAILED;
}

static void fmt_num(char *buf, size_t len, double v)
{
	if (v < 100)
		snprintf(buf, len, "%.2f", v);
	else if (v < 1000)
		snprintf(buf, len, "%.1f", v);
	else
		snprintf(buf, len, "%.0f", v);
}

/* The cell's text; returns 1 when it holds no result and no reason. */
static int cell_text(const struct run *r, unsigned c, unsigned p, unsigned a,
		     int mops, char *buf, size_t len)
{
	double v = 0, base = 0;
	char num[32];

	switch (cell_get(r, c, p, a, mops, &v)) {
	case CELL_NOT_INSTALLED:
		snprintf(buf, len, "not installed");
		return 0;
	case CELL_NA:
		snprintf(buf, len, "n/a");
		return 0;
	case CELL_FAILED:
		snprintf(buf, len, "FAILED");
		return 1;
	case CELL_VALUE:
		break;
	}
	fmt_num(num, sizeof(num), v);
	if (a == ALLOC_IOPOOL || a == ALLOC_RING || v <= 0 ||
	    !alloc_in_case(r, ALLOC_IOPOOL, (enum bench_case)c) ||
	    cell_get(r, c, p, ALLOC_IOPOOL, mops, &base) != CELL_VALUE ||
	    base <= 0) {
		snprintf(buf, len, "%s", num);
		return 0;
	}
	/* Always "times iopool's time": for rates that is iopool's / theirs. */
	double x = mops ? base / v : v / base;

	snprintf(buf, len, x >= 0.95 ? "%s (%.1fx)" : "%s (%.2fx)", num, x);
	return 0;
}

/* Reasons for n/a cells, each once, with the params it covers; returns how
 * many lines it printed. */
static unsigned report_reasons(FILE *f, const struct run *r, unsigned c,
			   int markdown)
{
	const struct case_desc *cd = &bench_cases[c];
	unsigned lines = 0;

	for (unsigned a = 0; a < ALLOC_COUNT; a++) {
		if (!alloc_in_case(r, (enum alloc_id)a, (enum bench_case)c))
			continue;
		if (r->alloc_why[a][0]) {
			fprintf(f, markdown ? "- %s: %s\n" : "  %s: %s\n",
				bench_allocs[a].name, r->alloc_why[a]);
			lines++;
			continue;
		}
		for (unsigned p = 0; p < cd->nparams; p++) {
			const char *why = r->cells[c][p][a].why;
			int seen = 0;

			if (!why[0] || r->cells[c][p][a].n > 0)
				continue;
			for (unsigned q = 0; q < p && !seen; q++)
				seen = r->cells[c][q][a].n == 0 &&
				       strcmp(r->cells[c][q][a].why, why) == 0;
			if (seen)
				continue;
			fprintf(f, markdown ? "- %s n/a for %s" : "  %s n/a for %s",
				bench_allocs[a].name, cd->params[p]);
			for (unsigned q = p + 1; q < cd->nparams; q++)
				if (r->cells[c][q][a].n == 0 &&
				    strcmp(r->cells[c][q][a].why, why) == 0)
					fprintf(f, ", %s", cd->params[q]);
			fprintf(f, ": %s\n", why);
			lines++;
		}
	}
	return lines;
}

/* recycle: what the count costs: buf_put's pair over free's (the count's
 * whole cost, allocation included), and over buf_alloc+free's (the put's
 * own cost); returns the lines printed. */
static unsigned report_recycle_cost(FILE *f, const struct run *r, int markdown)
{
	double fr = 0, bp = 0, bf = 0;
	const char *pre = markdown ? "- " : "  ";
	unsigned lines = 0;

	if (!alloc_in_case(r, ALLOC_IOPOOL, CASE_RECYCLE) ||
	    cell_get(r, CASE_RECYCLE, 0, ALLOC_IOPOOL, 0, &fr) != CELL_VALUE ||
	    cell_get(r, CASE_RECYCLE, 1, ALLOC_IOPOOL, 0, &bp) != CELL_VALUE)
		return 0;
	fprintf(f, "%siopool: buf_put pair - free pair = %+.2f ns (the count's "
		"whole cost; medians)\n", pre, bp - fr);
	lines++;
	if (cell_get(r, CASE_RECYCLE, 2, ALLOC_IOPOOL, 0, &bf) == CELL_VALUE) {
		fprintf(f, "%siopool: buf_put - free of the same buffer = %+.2f ns "
			"(the put's own cost; buf_put - buf_alloc+free, medians)\n",
			pre, bp - bf);
		lines++;
	}
	return lines;
}

#define CELL_LEN 48

static unsigned report_table(FILE *f, const struct run *r, unsigned c,
			     int mops, int markdown)
{
	const struct case_desc *cd = &bench_cases[c];
	char cells[BENCH_MAX_PARAMS][ALLOC_COUNT][CELL_LEN];
	unsigned width[ALLOC_COUNT] = { 0 }, pw = 5, missing = 0, notes = 0;
	const char *title = mops ? "threads, aggregate" : cd->name;
	const char *what = mops ? "T threads each doing alloc+free pairs (2 "
				  "KiB), all pairs / wall time from the start "
				  "flag to the last thread's end" : cd->what;

	for (unsigned p = 0; p < cd->nparams; p++) {
		if (strlen(cd->params[p]) > pw)
			pw = (unsigned)strlen(cd->params[p]);
		for (unsigned a = 0; a < ALLOC_COUNT; a++) {
			if (!alloc_in_case(r, (enum alloc_id)a,
					   (enum bench_case)c))
				continue;
			missing += (unsigned)cell_text(r, c, p, a, mops,
						       cells[p][a], CELL_LEN);
			if (strlen(cells[p][a]) > width[a])
				width[a] = (unsigned)strlen(cells[p][a]);
			if (strlen(bench_allocs[a].name) > width[a])
				width[a] = (unsigned)strlen(bench_allocs[a].name);
		}
	}

	if (markdown) {
		fprintf(f, "#### %s\n\n%s. %s, median of %u; (Nx) = N times "
			"iopool's time%s.\n\n| %s |", title, what,
			mops ? "Mops/s (higher is better)" : cd->unit, r->reps,
			mops ? " (iopool's rate / this rate)" : "",
			c == CASE_THREADS ? "threads" : "param");
		for (unsigned a = 0; a < ALLOC_COUNT; a++)
			if (alloc_in_case(r, (enum alloc_id)a,
					  (enum bench_case)c))
				fprintf(f, " %s |", bench_allocs[a].name);
		fprintf(f, "\n|:--|");
		for (unsigned a = 0; a < ALLOC_COUNT; a++)
			if (alloc_in_case(r, (enum alloc_id)a,
					  (enum bench_case)c))
				fprintf(f, "--:|");
		fputc('\n', f);
		for (unsigned p = 0; p < cd->nparams; p++) {
			fprintf(f, "| %s |", cd->params[p]);
			for (unsigned a = 0; a < ALLOC_COUNT; a++)
				if (alloc_in_case(r, (enum alloc_id)a,
						  (enum bench_case)c))
					fprintf(f, " %s |", cells[p][a]);
			fputc('\n', f);
		}
		fputc('\n', f);
	} else {
		fprintf(f, "%s: %s\n  [%s, median of %u; (Nx) = N times "
			"iopool's time%s]\n  %-*s", title, what,
			mops ? "Mops/s, higher is better" : cd->unit, r->reps,
			mops ? ", i.e. iopool's rate / this rate" : "", (int)pw,
			c == CASE_THREADS ? "T" : "param");
		for (unsigned a = 0; a < ALLOC_COUNT; a++)
			if (alloc_in_case(r, (enum alloc_id)a,
					  (enum bench_case)c))
				fprintf(f, "  %*s", (int)width[a],
					bench_allocs[a].name);
		fputc('\n', f);
		for (unsigned p = 0; p < cd->nparams; p++) {
			fprintf(f, "  %-*s", (int)pw, cd->params[p]);
			for (unsigned a = 0; a < ALLOC_COUNT; a++)
				if (alloc_in_case(r, (enum alloc_id)a,
						  (enum bench_case)c))
					fprintf(f, "  %*s", (int)width[a],
						cells[p][a]);
			fputc('\n', f);
		}
	}
	if (!mops)
		notes = report_reasons(f, r, c, markdown);
	if (c == CASE_RECYCLE && !mops)
		notes += report_recycle_cost(f, r, markdown);
	if (missing) {
		fprintf(f, markdown ? "- FAILED: the child process failed or "
			"gave no result\n" : "  FAILED: the child process "
			"failed or gave no result (see its message above)\n");
		notes++;
	}
	/* markdown: the blank line after the table is already there */
	if (!markdown || notes)
		fputc('\n', f);
	return missing;
}

unsigned report_tables(FILE *f, const struct run *r, int markdown)
{
	unsigned missing = 0;

	if (!markdown)
		fputc('\n', f);
	for (unsigned c = 0; c < CASE_COUNT; c++) {
		if (!(r->case_mask & (1u << c)))
			continue;
		missing += report_table(f, r, c, 0, markdown);
		if (c == CASE_THREADS)
			report_table(f, r, c, 1, markdown);
	}
	return missing;
}

/* ------------------------------------------------------------------------ */

void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

void json_machine(FILE *f, const struct machine *m)
{
	const char *const keys[] = { "cpu", "kernel", "compiler", "libc", "build", "dpdk", "loadavg_start",
				     "loadavg_end" };
	const char *const vals[] = { m->cpu, m->kernel, m->compiler, m->libc, m->build, m->dpdk, m->load_start,
				     m->load_end };

	fprintf(f, "{\"cores\": %ld", m->cores);
	for (unsigned i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		fprintf(f, ", \"%s\": ", keys[i]);
		json_str(f, vals[i]);
	}
	fputc('}', f);
}

static void json_doubles(FILE *f, const double *v, unsigned n)
{
	fputc('[', f);
	for (unsigned i = 0; i < n; i++)
		fprintf(f, "%s%.4f", i ? ", " : "", v[i]);
	fputc(']', f);
}

static void json_row(FILE *f, const struct run *r, unsigned c, unsigned p,
		     unsigned a, int *first)
{
	const struct cell *cell = &r->cells[c][p][a];
	double v = 0, base = 0, mops = 0;
	enum cell_kind k = cell_get(r, c, p, a, 0, &v);

	fprintf(f, "%s\n    {\"case\": ", *first ? "" : ",");
	*first = 0;
	json_str(f, bench_cases[c].name);
	fprintf(f, ", \"param\": ");
	json_str(f, bench_cases[c].params[p]);
	fprintf(f, ", \"allocator\": ");
	json_str(f, bench_allocs[a].name);
	fprintf(f, ", \"unit\": ");
	json_str(f, bench_cases[c].unit);
	if (k != CELL_VALUE) {
		static const char *const status[] = {
			[CELL_NOT_INSTALLED] = "not installed",
			[CELL_NA] = "n/a",
			[CELL_FAILED] = "failed",
		};

		fprintf(f, ", \"ns_per_op\": null, \"status\": \"%s\"",
			status[k]);
		if (r->alloc_why[a][0] || cell->why[0]) {
			fprintf(f, ", \"reason\": ");
			json_str(f, r->alloc_why[a][0] ? r->alloc_why[a]
						       : cell->why);
		}
		fputc('}', f);
		return;
	}
	fprintf(f, ", \"ns_per_op\": %.4f, \"status\": \"ok\", \"reps\": ", v);
	json_doubles(f, cell->ns, cell->n);
	if (a != ALLOC_IOPOOL && a != ALLOC_RING &&
	    alloc_in_case(r, ALLOC_IOPOOL, (enum bench_case)c) &&
	    cell_get(r, c, p, ALLOC_IOPOOL, 0, &base) == CELL_VALUE && base > 0)
		fprintf(f, ", \"ratio_to_iopool\": %.3f", v / base);
	if (c == CASE_THREADS) {
		cell_get(r, c, p, a, 1, &mops);
		fprintf(f, ", \"mops\": %.4f, \"mops_reps\": ", mops);
		json_doubles(f, cell->mops, cell->n);
	}
	fputc('}', f);
}

int report_json(const char *path, const struct run *r)
{
	const struct machine *m = &r->machine;
	int first = 1;
	FILE *f;

	if (make_parent_dirs(path) != 0 || (f = fopen(path, "w")) == NULL) {
		fprintf(stderr, "iopool-bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	fprintf(f, "{\n  \"tool\": \"iopool-bench\",\n  \"iopool_version\": "
		"\"%s\",\n  \"machine\": ", IOP_VERSION_STRING);
	json_machine(f, m);
	fprintf(f, ",\n  \"config\": {\"reps\": %u, \"quick\": %s, "
		"\"object_size\": %u, \"loop_target_ns\": %llu},\n"
		"  \"allocators\": {",
		r->reps, r->quick ? "true" : "false", OBJ_SIZE_DEFAULT,
		(unsigned long long)r->copts.target_ns);
	for (unsigned a = 0, n = 0; a < ALLOC_COUNT; a++) {
		if (!(r->alloc_mask & (1u << a)))
			continue;
		fprintf(f, "%s\n    ", n++ ? "," : "");
		json_str(f, bench_allocs[a].name);
		fprintf(f, ": {\"status\": ");
		json_str(f, r->alloc_why[a][0] ? r->alloc_why[a]
			 : r->alloc_fails[a] ? "failed" : "ok");
		if (bench_allocs[a].preload != NULL) {
			fprintf(f, ", \"preload\": ");
			json_str(f, bench_allocs[a].preload);
		}
		fputc('}', f);
	}
	fprintf(f, "\n  },\n  \"baselines\": {");
	for (unsigned b = 0; b < BASE_COUNT; b++)
		fprintf(f, "%s\"%s\": %.4f", b ? ", " : "", base_keys[b],
			r->base_ns[b]);
	fprintf(f, "},\n  \"results\": [");
	for (unsigned c = 0; c < CASE_COUNT; c++) {
		if (!(r->case_mask & (1u << c)))
			continue;
		for (unsigned p = 0; p < bench_cases[c].nparams; p++)
			for (unsigned a = 0; a < ALLOC_COUNT; a++)
				if (alloc_in_case(r, (enum alloc_id)a,
						  (enum bench_case)c))
					json_row(f, r, c, p, a, &first);
	}
	fprintf(f, "\n  ]\n}\n");
	if (fclose(f) != 0) {
		fprintf(stderr, "iopool-bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}
