/* SPDX-License-Identifier: MIT */
/*
 * A tiny test harness for iopool's test programs (one program per area).
 *
 *   TEST(behaviour_name) { ...; return TH_PASS; }   registers a test case
 *   CHECK(cond), CHECK_EQ(a, b), CHECK_NE, CHECK_LE, CHECK_GE, CHECK_PTR_EQ,
 *   CHECK_STR_HAS(haystack, needle)  record a failure (file:line and the
 *                                    values) and carry on
 *   REQUIRE(cond)                    the same, then end the test at once
 *   TH_SKIP_IF(cond, why)            end the test as skipped (exit code 77)
 *   EXPECT_DEATH(fn, arg, sig, "needle", ...)
 *                                    run fn(arg) in a forked child with its
 *                                    stderr captured through a pipe; pass
 *                                    when the child dies by signal `sig`
 *                                    and stderr holds every needle
 *   EXPECT_DEATH_OR_EXIT(fn, arg, "needle", ...)
 *                                    the same, but any fatal signal or a
 *                                    non-zero exit status counts as death
 *                                    (AddressSanitizer reports exit with 1)
 *   th_capture_begin()/th_capture_end()
 *                                    collect what the library prints on fd 2
 *
 * main() calls th_main(): with no argument every case runs in its own forked
 * child (so one case's pools never change another's); with a case name only
 * that case runs, in this process, which is how CTest runs them (see
 * tests/CMakeLists.txt: one CTest entry per TEST()). Exit status: 0 pass,
 * 1 fail, 77 skipped.
 *
 * Checks are thread-safe: failures are counted atomically and the first
 * TH_MAX_REPORTS are printed, so a broken invariant in a hot loop does not
 * drown the log.
 */
#ifndef IOP_TEST_HARNESS_H
#define IOP_TEST_HARNESS_H

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define TH_PASS 0
#define TH_FAIL 1
#define TH_SKIP 77

/* The library's debug level and sanitizer, passed in by tests/CMakeLists.txt
 * (the library's own IOP_DEBUG definition is private to it). */
#ifndef IOP_TEST_DEBUG
#define IOP_TEST_DEBUG 0
#endif

#if defined(__SANITIZE_ADDRESS__) || defined(IOP_TEST_ASAN)
#define TH_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define TH_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(TH_ASAN)
#define TH_ASAN 1
#endif
#if __has_feature(thread_sanitizer) && !defined(TH_TSAN)
#define TH_TSAN 1
#endif
#endif
#ifndef TH_ASAN
#define TH_ASAN 0
#endif
#ifndef TH_TSAN
#define TH_TSAN 0
#endif
/* Every pool is checked (double-free detection, poison, no fast path) in
 * builds with IOP_DEBUG >= 2, and when IOPOOL_CHECKED is set in the
 * environment. */
#define TH_ALL_CHECKED th_all_checked()

#define TH_MAX_CASES 128
#define TH_MAX_REPORTS 25

#define TH_UNUSED __attribute__((unused))

struct th_case {
	const char *name;
	int (*fn)(void);
};

static struct th_case th_cases[TH_MAX_CASES];
static int th_ncases;
static atomic_int th_failures;
static const char *th_current = "(none)";

TH_UNUSED static void th_register(const char *name, int (*fn)(void))
{
	if (th_ncases == TH_MAX_CASES) {
		fprintf(stderr, "harness: more than %d test cases\n", TH_MAX_CASES);
		abort();
	}
	th_cases[th_ncases].name = name;
	th_cases[th_ncases].fn = fn;
	th_ncases++;
}

/* tests/CMakeLists.txt reads the names out of lines that start with TEST( */
#define TEST(name)                                                            \
	static int th_test_##name(void);                                      \
	__attribute__((constructor)) static void th_reg_##name(void)         \
	{                                                                     \
		th_register(#name, th_test_##name);                          \
	}                                                                     \
	static int th_test_##name(void)

__attribute__((format(printf, 3, 4))) TH_UNUSED static void
th_fail_at(const char *file, int line, const char *fmt, ...)
{
	int n = atomic_fetch_add(&th_failures, 1);
	if (n >= TH_MAX_REPORTS) {
		if (n == TH_MAX_REPORTS)
			fprintf(stderr, "%s:%d: [%s] further failures not shown\n",
				file, line, th_current);
		return;
	}
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s:%d: [%s] FAIL: %s\n", file, line, th_current, msg);
	fflush(stderr);
}

TH_UNUSED static int th_all_checked(void)
{
	/* As src/options.c reads it: 1, yes, true or on (any case). */
	const char *v = getenv("IOPOOL_CHECKED");
	return IOP_TEST_DEBUG >= 2 ||
	       (v && (!strcasecmp(v, "1") || !strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcasecmp(v, "on")));
}

TH_UNUSED static int th_failed(void)
{
	return atomic_load(&th_failures) != 0;
}

#define CHECK(cond)                                                           \
	do {                                                                  \
		if (!(cond))                                                  \
			th_fail_at(__FILE__, __LINE__, "CHECK(%s)", #cond);   \
	} while (0)

#define REQUIRE(cond)                                                         \
	do {                                                                  \
		if (!(cond)) {                                                \
			th_fail_at(__FILE__, __LINE__, "REQUIRE(%s)", #cond); \
			exit(TH_FAIL);                                        \
		}                                                             \
	} while (0)

/* Integer comparisons: both sides are widened to long long, which holds every
 * value these tests compare (counts, negative errnos, sizes below 2^63). */
#define TH_CHECK_CMP(a, op, b)                                                \
	do {                                                                  \
		long long th_a_ = (long long)(a), th_b_ = (long long)(b);     \
		if (!(th_a_ op th_b_))                                        \
			th_fail_at(__FILE__, __LINE__,                        \
				   "CHECK(%s %s %s): %lld vs %lld", #a, #op,  \
				   #b, th_a_, th_b_);                         \
	} while (0)
#define CHECK_EQ(a, b) TH_CHECK_CMP(a, ==, b)
#define CHECK_NE(a, b) TH_CHECK_CMP(a, !=, b)
#define CHECK_LE(a, b) TH_CHECK_CMP(a, <=, b)
#define CHECK_GE(a, b) TH_CHECK_CMP(a, >=, b)
#define CHECK_LT(a, b) TH_CHECK_CMP(a, <, b)
#define CHECK_GT(a, b) TH_CHECK_CMP(a, >, b)

#define CHECK_PTR_EQ(a, b)                                                    \
	do {                                                                  \
		const void *th_a_ = (a), *th_b_ = (b);                        \
		if (th_a_ != th_b_)                                           \
			th_fail_at(__FILE__, __LINE__,                        \
				   "CHECK(%s == %s): %p vs %p", #a, #b,       \
				   th_a_, th_b_);                             \
	} while (0)

#define CHECK_STR_HAS(hay, needle)                                            \
	do {                                                                  \
		const char *th_h_ = (hay), *th_n_ = (needle);                 \
		if (th_h_ == NULL || strstr(th_h_, th_n_) == NULL)            \
			th_fail_at(__FILE__, __LINE__,                        \
				   "%s does not contain \"%s\"; it is:\n"     \
				   "----\n%s----",                            \
				   #hay, th_n_, th_h_ ? th_h_ : "(null)");    \
	} while (0)

#define TH_SKIP_IF(cond, why)                                                 \
	do {                                                                  \
		if (cond) {                                                   \
			printf("[%s] skipped: %s\n", th_current, why);        \
			return TH_SKIP;                                       \
		}                                                             \
	} while (0)

/* ------------------------------------------------------------------------ */
/* Reading a file descriptor to the end                                      */
/* ------------------------------------------------------------------------ */

/* Returns a malloc'd NUL-terminated buffer (at most 1 MiB kept). */
TH_UNUSED static char *th_read_all(int fd)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		abort();
	for (;;) {
		if (cap - len < 2) {
			if (cap >= (1u << 20)) {
				char sink[4096];
				if (read(fd, sink, sizeof sink) <= 0)
					break;
				continue;
			}
			cap *= 2;
			buf = realloc(buf, cap);
			if (!buf)
				abort();
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return buf;
}

/* ------------------------------------------------------------------------ */
/* Capturing what the library writes to stderr (single-threaded use)         */
/* ------------------------------------------------------------------------ */

static int th_cap_saved = -1;
static FILE *th_cap_file;

TH_UNUSED static void th_capture_begin(void)
{
	fflush(stderr);
	th_cap_file = tmpfile();
	if (!th_cap_file)
		abort();
	th_cap_saved = dup(2);
	if (th_cap_saved < 0 || dup2(fileno(th_cap_file), 2) < 0)
		abort();
}

/* Returns a malloc'd copy of everything written to fd 2 since begin. */
TH_UNUSED static char *th_capture_end(void)
{
	fflush(stderr);
	if (dup2(th_cap_saved, 2) < 0)
		abort();
	close(th_cap_saved);
	th_cap_saved = -1;
	int fd = fileno(th_cap_file);
	if (lseek(fd, 0, SEEK_SET) != 0)
		abort();
	char *s = th_read_all(fd);
	fclose(th_cap_file);
	th_cap_file = NULL;
	return s;
}

/* ------------------------------------------------------------------------ */
/* Death tests                                                               */
/* ------------------------------------------------------------------------ */

#define TH_DEATH_TIMEOUT_S 60

/*
 * Run fn(arg) in a forked child whose stderr goes into a pipe. The child
 * passes when it dies by signal `sig` (or, with allow_exit, by any signal or
 * a non-zero exit status) and its stderr contains every string of the
 * NULL-terminated `needles`. A child that returns from fn exits 0 and fails.
 * Returns 1 on a pass; on a failure records it and returns 0.
 */
TH_UNUSED static int th_expect_death_at(const char *file, int line,
					const char *what, void (*fn)(void *),
					void *arg, int sig, int allow_exit,
					const char *const *needles)
{
	int fds[2];
	if (pipe(fds) != 0)
		abort();
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		abort();
	if (pid == 0) {
		close(fds[0]);
		if (dup2(fds[1], 2) < 0)
			_exit(125);
		close(fds[1]);
		/* abort without a core dump, also where core_pattern pipes
		 * dumps to a handler (which ignores RLIMIT_CORE) */
		struct rlimit no_core = { 0, 0 };
		setrlimit(RLIMIT_CORE, &no_core);
		prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
		signal(SIGABRT, SIG_DFL);
		alarm(TH_DEATH_TIMEOUT_S); /* a hang dies by SIGALRM: a failure */
		fn(arg);
		fprintf(stderr, "harness: %s returned instead of dying\n", what);
		_exit(0);
	}
	close(fds[1]);
	char *out = th_read_all(fds[0]);
	close(fds[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			abort();

	int ok = 1;
	char how[128];
	if (WIFSIGNALED(status)) {
		snprintf(how, sizeof how, "killed by signal %d (%s)",
			 WTERMSIG(status), strsignal(WTERMSIG(status)));
		if (!(WTERMSIG(status) == sig || allow_exit))
			ok = 0;
	} else {
		snprintf(how, sizeof how, "exited with status %d",
			 WEXITSTATUS(status));
		if (!(allow_exit && WEXITSTATUS(status) != 0))
			ok = 0;
	}
	if (!ok)
		th_fail_at(file, line,
			   "%s: expected death by signal %d (%s)%s, child %s; "
			   "its stderr:\n----\n%s----",
			   what, sig, strsignal(sig),
			   allow_exit ? " or a non-zero exit" : "", how, out);
	for (const char *const *n = needles; ok && *n; n++) {
		if (!strstr(out, *n)) {
			th_fail_at(file, line,
				   "%s: child %s as expected, but its stderr "
				   "lacks \"%s\"; it is:\n----\n%s----",
				   what, how, *n, out);
			ok = 0;
		}
	}
	free(out);
	return ok;
}

#define EXPECT_DEATH(fn, arg, sig, ...)                                       \
	th_expect_death_at(__FILE__, __LINE__, #fn, (fn), (arg), (sig), 0,    \
			   (const char *const[]){ __VA_ARGS__, NULL })
#define EXPECT_DEATH_OR_EXIT(fn, arg, ...)                                    \
	th_expect_death_at(__FILE__, __LINE__, #fn, (fn), (arg), SIGABRT, 1,  \
			   (const char *const[]){ __VA_ARGS__, NULL })

/* ------------------------------------------------------------------------ */
/* Deterministic randomness                                                  */
/* ------------------------------------------------------------------------ */

/* xorshift64*: per-thread state, never zero */
TH_UNUSED static inline uint64_t th_rand(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

TH_UNUSED static inline uint64_t th_seed(uint64_t a, uint64_t b)
{
	uint64_t z = a * 0x9E3779B97F4A7C15ULL + b + 0x632BE59BD9B4E019ULL;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	z ^= z >> 31;
	return z ? z : 1;
}

/* ------------------------------------------------------------------------ */
/* Running the cases                                                         */
/* ------------------------------------------------------------------------ */

TH_UNUSED static int th_run_one(const struct th_case *c)
{
	th_current = c->name;
	atomic_store(&th_failures, 0);
	int rc = c->fn();
	fflush(stdout);
	if (th_failed())
		rc = TH_FAIL;
	if (rc != TH_PASS && rc != TH_SKIP)
		rc = TH_FAIL;
	return rc;
}

TH_UNUSED static int th_main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && strcmp(argv[1], "--list") == 0) {
		for (int i = 0; i < th_ncases; i++)
			printf("%s\n", th_cases[i].name);
		return 0;
	}
	if (argc > 1) {
		int rc = TH_PASS, skipped = 0;
		for (int a = 1; a < argc; a++) {
			int i;
			for (i = 0; i < th_ncases; i++)
				if (strcmp(th_cases[i].name, argv[a]) == 0)
					break;
			if (i == th_ncases) {
				fprintf(stderr, "no test case named '%s' "
					"(--list lists them)\n", argv[a]);
				return 2;
			}
			int r = th_run_one(&th_cases[i]);
			printf("%s: %s\n", r == TH_PASS ? "PASS" :
			       r == TH_SKIP ? "SKIP" : "FAIL", argv[a]);
			if (r == TH_FAIL)
				rc = TH_FAIL;
			skipped += r == TH_SKIP;
		}
		if (rc == TH_PASS && skipped == argc - 1)
			rc = TH_SKIP;
		return rc;
	}

	int pass = 0, fail = 0, skip = 0;
	for (int i = 0; i < th_ncases; i++) {
		fflush(stdout);
		fflush(stderr);
		pid_t pid = fork();
		if (pid < 0)
			abort();
		if (pid == 0)
			exit(th_run_one(&th_cases[i]));
		int status;
		while (waitpid(pid, &status, 0) < 0)
			if (errno != EINTR)
				abort();
		int r = WIFEXITED(status) ? WEXITSTATUS(status) : TH_FAIL;
		if (WIFSIGNALED(status))
			fprintf(stderr, "%s: killed by signal %d\n",
				th_cases[i].name, WTERMSIG(status));
		const char *verdict = r == TH_PASS ? "PASS" :
				      r == TH_SKIP ? "SKIP" : "FAIL";
		printf("%s: %s\n", verdict, th_cases[i].name);
		pass += r == TH_PASS;
		skip += r == TH_SKIP;
		fail += r != TH_PASS && r != TH_SKIP;
	}
	printf("%d passed, %d failed, %d skipped\n", pass, fail, skip);
	if (fail)
		return TH_FAIL;
	return pass == 0 && skip > 0 ? TH_SKIP : TH_PASS;
}

#endif /* IOP_TEST_HARNESS_H */
