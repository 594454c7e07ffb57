/* SPDX-License-Identifier: MIT */
/*
 * A stand-in for <criterion/criterion.h> in the TSan build (ETRND_TSAN):
 * Criterion 2.4 cannot start under ThreadSanitizer (Snaipe/Criterion#274,
 * "Could not initialize inheritable arena"). It gives the subset our
 * concurrency tests use: Test() (options such as .timeout ignored: ctest's
 * TIMEOUT bounds the run), the cr_assert / cr_expect checks and
 * cr_log_warn (to stderr), cr_skip_test. Each test runs
 * in its own forked process, as under Criterion; an assert ends that test,
 * an expect marks it failed and goes on. crs_main.c holds main().
 */
#ifndef ETRND_TESTS_TSAN_CRITERION_H
#define ETRND_TESTS_TSAN_CRITERION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*crs_fn)(void);
void crs_register(const char *suite, const char *name, crs_fn fn);
/* Report a failed check: fmt (possibly "") and its arguments say why. A
 * fatal one ends the test's process. */
void crs_fail(const char *file, int line, int fatal, const char *what, const char *fmt, ...);

#define Test(suite, name, ...) \
	static void crs_##suite##_##name(void); \
	__attribute__((constructor)) static void crs_reg_##suite##_##name(void) \
	{ crs_register(#suite, #name, crs_##suite##_##name); } \
	static void crs_##suite##_##name(void)

#define CRS_CHECK(fatal, cond, what, ...) \
	do { if (!(cond)) crs_fail(__FILE__, __LINE__, fatal, what, "" __VA_ARGS__); } while (0)

#define cr_assert(c, ...) CRS_CHECK(1, (c), #c, __VA_ARGS__)
#define cr_expect(c, ...) CRS_CHECK(0, (c), #c, __VA_ARGS__)
#define cr_assert_not(c, ...) CRS_CHECK(1, !(c), "!" #c, __VA_ARGS__)
#define cr_expect_not(c, ...) CRS_CHECK(0, !(c), "!" #c, __VA_ARGS__)
#define cr_assert_fail(...) CRS_CHECK(1, 0, "fail", __VA_ARGS__)
#define cr_expect_fail(...) CRS_CHECK(0, 0, "fail", __VA_ARGS__)
#define CRS_OP(fatal, a, op, b, ...) CRS_CHECK(fatal, (a) op (b), #a " " #op " " #b, __VA_ARGS__)
#define cr_assert_eq(a, b, ...) CRS_OP(1, a, ==, b, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) CRS_OP(0, a, ==, b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) CRS_OP(1, a, !=, b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...) CRS_OP(0, a, !=, b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) CRS_OP(1, a, >, b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...) CRS_OP(0, a, >, b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) CRS_OP(1, a, >=, b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...) CRS_OP(0, a, >=, b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) CRS_OP(1, a, <, b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...) CRS_OP(0, a, <, b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) CRS_OP(1, a, <=, b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...) CRS_OP(0, a, <=, b, __VA_ARGS__)
#define cr_assert_null(p, ...) CRS_CHECK(1, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_expect_null(p, ...) CRS_CHECK(0, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) CRS_CHECK(1, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_expect_not_null(p, ...) CRS_CHECK(0, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) CRS_CHECK(1, !strcmp((a), (b)), #a " eq " #b, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) CRS_CHECK(0, !strcmp((a), (b)), #a " eq " #b, __VA_ARGS__)

/* The test's process ends here, counted as passed; the reason goes to
 * stderr. */
#define cr_skip_test(...) \
	do { fprintf(stderr, "[SKIP] " __VA_ARGS__); fputc('\n', stderr); exit(0); } while (0)

#define cr_log_warn(...) \
	do { fprintf(stderr, "[WARN] " __VA_ARGS__); fputc('\n', stderr); } while (0)

#endif
