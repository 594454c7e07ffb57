/* SPDX-License-Identifier: MIT */
/*
 * main() of the TSan build's Criterion stand-in (criterion/criterion.h):
 * runs every registered test in a forked child, one after the other, and
 * exits 1 when any failed. Arguments (Criterion's --jobs etc.) are ignored.
 * CRS_SKIP="suite::name,..." skips tests (timing bounds TSan cannot meet).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "criterion/criterion.h"

#define CRS_TESTS_MAX 256

struct crs_test {
	const char *suite, *name;
	crs_fn fn;
};

static struct crs_test crs_tests[CRS_TESTS_MAX];
static unsigned crs_n;
static _Atomic int crs_failed; /* in the child: an expect failed (any thread) */

void crs_register(const char *suite, const char *name, crs_fn fn)
{
	if (crs_n == CRS_TESTS_MAX) {
		fprintf(stderr, "crs: more than %d tests\n", CRS_TESTS_MAX);
		abort();
	}
	crs_tests[crs_n++] = (struct crs_test){ suite, name, fn };
}

void crs_fail(const char *file, int line, int fatal, const char *what, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s:%d: %s failed: %s: ", file, line, fatal ? "assert" : "expect", what);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	crs_failed = 1;
	if (fatal)
		exit(1);
}

static int crs_skipped(const struct crs_test *t)
{
	const char *skip = getenv("CRS_SKIP"), *p;
	char full[256];
	size_t n;

	if (!skip)
		return 0;
	n = (size_t)snprintf(full, sizeof(full), "%s::%s", t->suite, t->name);
	for (p = strstr(skip, full); p; p = strstr(p + 1, full))
		if ((p == skip || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	unsigned i, bad = 0;

	(void)argc, (void)argv;
	for (i = 0; i < crs_n; i++) {
		int st = 0;
		pid_t pid;

		if (crs_skipped(&crs_tests[i])) {
			fprintf(stderr, "[SKIP] %s::%s (CRS_SKIP)\n", crs_tests[i].suite,
				crs_tests[i].name);
			continue;
		}
		fflush(NULL);
		pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			crs_tests[i].fn();
			exit(crs_failed);
		}
		if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "[FAIL] %s::%s (status %d)\n", crs_tests[i].suite,
				crs_tests[i].name, st);
			bad++;
		} else {
			fprintf(stderr, "[PASS] %s::%s\n", crs_tests[i].suite, crs_tests[i].name);
		}
	}
	fprintf(stderr, "crs: %u tests, %u failed\n", crs_n, bad);
	return bad ? 1 : 0;
}
