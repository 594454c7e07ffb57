/* SPDX-License-Identifier: MIT */
/*
 * failalloc: the --wrap'ed allocators (failalloc.h). Each __wrap_X counts
 * the call on the calling thread when armed and fails the chosen one;
 * otherwise it is __real_X. free() is not wrapped: nothing to inject there.
 */
#include "failalloc.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/lsan_interface.h>
#endif

void *__real_malloc(size_t size);
void *__real_calloc(size_t nmemb, size_t size);
void *__real_realloc(void *ptr, size_t size);
void *__real_aligned_alloc(size_t align, size_t size);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t nmemb, size_t size);
void *__wrap_realloc(void *ptr, size_t size);
void *__wrap_aligned_alloc(size_t align, size_t size);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

static _Thread_local struct {
	bool counting; /* armed by failalloc_fail_nth() or failalloc_count() */
	bool failing;  /* a failure is armed */
	bool injected; /* ... and was injected */
	size_t seen;   /* allocations counted */
	size_t nth;    /* the one to fail */
} fa;

void failalloc_fail_nth(size_t n)
{
	fa.counting = true;
	fa.failing = true;
	fa.injected = false;
	fa.seen = 0;
	fa.nth = n;
}

void failalloc_count(void)
{
	fa.counting = true;
	fa.failing = false;
	fa.injected = false;
	fa.seen = 0;
}

int failalloc_off(void)
{
	int injected = fa.injected;

	fa.counting = false;
	fa.failing = false;
	return injected;
}

size_t failalloc_seen(void)
{
	return fa.seen;
}

/* true: this allocation fails. */
static bool fa_step(void)
{
	if (!fa.counting)
		return false;
	if (fa.failing && !fa.injected && fa.seen == fa.nth) {
		fa.seen++;
		fa.injected = true;
#if defined(__SANITIZE_ADDRESS__)
		/* FAILALLOC_TRACE=1: where each injected failure hit (to find
		 * the caller that swallowed one). */
		if (getenv("FAILALLOC_TRACE"))
			__sanitizer_print_stack_trace();
#endif
		errno = ENOMEM;
		return true;
	}
	fa.seen++;
	return false;
}

void *__wrap_malloc(size_t size)
{
	return fa_step() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t nmemb, size_t size)
{
	return fa_step() ? NULL : __real_calloc(nmemb, size);
}

void *__wrap_realloc(void *ptr, size_t size)
{
	return fa_step() ? NULL : __real_realloc(ptr, size);
}

void *__wrap_aligned_alloc(size_t align, size_t size)
{
	return fa_step() ? NULL : __real_aligned_alloc(align, size);
}

char *__wrap_strdup(const char *s)
{
	return fa_step() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
	return fa_step() ? NULL : __real_strndup(s, n);
}

int failalloc_leaks(void)
{
#if defined(__SANITIZE_ADDRESS__)
	return __lsan_do_recoverable_leak_check() ? 1 : 0;
#else
	return 0;
#endif
}

long failalloc_run(const struct failalloc_case *c, size_t limit)
{
	for (size_t n = 0; n < limit; n++) {
		void *ctx = c->setup ? c->setup() : NULL;
		int rc, injected;

		failalloc_fail_nth(n);
		rc = c->op(ctx);
		injected = failalloc_off();
		c->check(ctx, rc, injected);
		if (c->teardown)
			c->teardown(ctx);
		if (!injected)
			return (long)n;
	}
	return -1;
}

void failalloc_run_all(const struct failalloc_case *cases, size_t n, size_t limit)
{
	for (size_t i = 0; i < n; i++) {
		long runs = failalloc_run(&cases[i], limit);

		cr_assert_gt(runs, 0, "%s: %ld failing runs", cases[i].name, runs);
		cr_assert_eq(failalloc_leaks(), 0, "%s: leaked (report above)", cases[i].name);
	}
}

void failalloc_check_enomem(void *ctx, int rc, int injected)
{
	(void)ctx;
	cr_assert_eq(rc, injected ? -ENOMEM : 0, "rc %d injected %d", rc, injected);
}
