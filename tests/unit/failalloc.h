/* SPDX-License-Identifier: MIT */
/*
 * failalloc: allocation-failure injection for the unit tests. A test binary
 * linked with it (tests/unit/CMakeLists.txt: -Wl,--wrap=malloc,...) sends the
 * allocations of our own code (core/ proto/ store/ admin/, the test file)
 * through here; libraries' own (libc internals, Criterion, hiredis) are not
 * wrapped. Off by default: nothing fails and nothing is counted until a test
 * arms it. State is per thread: only the arming thread's allocations count.
 * failalloc_run_all() and failalloc_check_enomem() assert with Criterion.
 */
#ifndef ETRND_TESTS_FAILALLOC_H
#define ETRND_TESTS_FAILALLOC_H

#include <stddef.h>

/* Make the n-th allocation from now (0: the very next) on this thread fail
 * (NULL, errno = ENOMEM), and only that one; counting starts at 0. */
void failalloc_fail_nth(size_t n);

/* Stop failing and counting on this thread. Returns 1 when the armed
 * failure was injected since the last failalloc_fail_nth(), else 0 (the
 * operation made fewer than n + 1 allocations). */
int failalloc_off(void);

/* Count this thread's allocations from now on, failing none. */
void failalloc_count(void);

/* Allocations counted on this thread since failalloc_fail_nth() or
 * failalloc_count(). */
size_t failalloc_seen(void);

/* Under ASan (the test build): run LeakSanitizer now; 1 when it found
 * memory leaked so far (it prints where), else 0; always 0 without ASan. Unit
 * tests need it explicitly: the leak report at a Criterion worker's exit
 * is printed but does not fail the test. */
int failalloc_leaks(void);

/*
 * One OOM case, run by failalloc_run() in the classic loop: for n = 0, 1, ...
 * ctx = setup() (not injected; NULL setup: ctx NULL), op(ctx) with the n-th
 * allocation failing, then with injection off check(ctx, rc, injected)
 * (the test's assertions: the documented error, nothing half-done, the
 * object usable by a follow-up call) and teardown(ctx) (may be NULL). The
 * loop ends with the first run in which nothing was injected: op made fewer
 * than n + 1 allocations and must have succeeded (check asserts that).
 */
struct failalloc_case {
	const char *name;
	void *(*setup)(void);
	int (*op)(void *ctx);              /* 0 or what the call returned */
	void (*check)(void *ctx, int rc, int injected);
	void (*teardown)(void *ctx);
};

/* Run c until a run without injection, at most limit runs. Returns the
 * number of runs in which an allocation failed (the allocations op makes),
 * or -1 when limit came first. */
long failalloc_run(const struct failalloc_case *c, size_t limit);

/* Criterion: run each of the n cases with failalloc_run() and assert that
 * each failed at least one allocation and then succeeded within limit
 * runs, and leaked nothing (failalloc_leaks()). */
void failalloc_run_all(const struct failalloc_case *cases, size_t n, size_t limit);

/* The check of a case whose op has no state to look at: rc is -ENOMEM
 * when an allocation failed, else 0 (Criterion asserts). */
void failalloc_check_enomem(void *ctx, int rc, int injected);

#endif
