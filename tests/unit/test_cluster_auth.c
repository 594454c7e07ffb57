/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for admin/cluster_auth.c: the secret file (a table of files,
 * good and bad, with the exact error), reload keeping the old secret on a
 * bad file, the node id syntax, and the AUTH check answered on a real
 * running loop (right secret, wrong secret, a name that is no node id,
 * the failure limit per address).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/cluster_auth.h"
#include "core/config.h"
#include "core/loop.h"

#define T_SECRET "0123456789abcdef-cluster"

static char t_dir[64];

static const char *t_file(const char *name, const char *text, size_t len)
{
	static char path[128];
	FILE *f;

	if (!t_dir[0]) {
		snprintf(t_dir, sizeof(t_dir), "/tmp/test_cluster_auth.XXXXXX");
		cr_assert_not_null(mkdtemp(t_dir));
	}
	snprintf(path, sizeof(path), "%s/%s", t_dir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(text, 1, len, f), len);
	fclose(f);
	return path;
}

/* Each test runs in its own process with its own directory: remove it
 * and what the test wrote there, so the suite leaves nothing in /tmp. */
static void t_rm(void)
{
	char path[192];
	struct dirent *e;
	DIR *dir;

	if (!t_dir[0] || !(dir = opendir(t_dir)))
		return;
	while ((e = readdir(dir)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
		    snprintf(path, sizeof(path), "%s/%s", t_dir, e->d_name) < (int)sizeof(path))
			(void)unlink(path);
	closedir(dir);
	(void)rmdir(t_dir);
	t_dir[0] = '\0';
}

TestSuite(cluster_auth, .fini = t_rm);

static void t_cfg(struct config *c, const char *path)
{
	config_defaults(c);
	snprintf(c->cluster_secret_file, sizeof(c->cluster_secret_file), "%s", path);
	c->auth_failure_limit = 3;
}

struct t_file_case {
	const char *name;
	const char *text;
	size_t len;                /* 0: strlen(text) */
	const char *want_err;      /* NULL: loads; else a part of the error */
	const char *want_secret;
};

static const struct t_file_case t_files[] = {
	{ "plain", T_SECRET "\n", 0, NULL, T_SECRET },
	{ "crlf", T_SECRET "\r\nsecond line\n", 0, NULL, T_SECRET },
	{ "no newline", T_SECRET, 0, NULL, T_SECRET },
	{ "short", "0123456789abcde\n", 0, "is 15 bytes: want 16 to", NULL },
	{ "empty", "", 0, "is 0 bytes", NULL },
	{ "empty first line", "\n" T_SECRET "\n", 0, "is 0 bytes", NULL },
	{ "nul", "0123456789\0abcdefghij\n", 22, "holds a NUL byte", NULL },
};

Test(cluster_auth, secret_files)
{
	for (size_t i = 0; i < sizeof(t_files) / sizeof(t_files[0]); i++) {
		const struct t_file_case *tc = &t_files[i];
		struct config c;
		char err[512], got[CLUSTER_AUTH_SECRET_MAX + 1];
		struct cluster_auth *ca;

		t_cfg(&c, t_file("f", tc->text, tc->len ? tc->len : strlen(tc->text)));
		ca = cluster_auth_new(&c, err, sizeof(err));
		if (!tc->want_err) {
			cr_assert_not_null(ca, "%s: %s", tc->name, err);
			cr_expect_eq(cluster_auth_secret(ca, got, sizeof(got)),
				     (int)strlen(tc->want_secret), "%s", tc->name);
			cr_expect_str_eq(got, tc->want_secret, "%s", tc->name);
		} else {
			cr_expect_null(ca, "%s", tc->name);
			cr_expect(strstr(err, tc->want_err) != NULL, "%s: %s", tc->name, err);
			cr_expect(strncmp(err, c.cluster_secret_file, strlen(c.cluster_secret_file)) == 0,
				  "%s: FILE: first: %s", tc->name, err);
		}
		cluster_auth_free(ca);
		config_free(&c);
	}
}

Test(cluster_auth, too_long_missing_and_none)
{
	char big[CLUSTER_AUTH_SECRET_MAX + 2], err[512];
	struct config c;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\n';
	t_cfg(&c, t_file("big", big, sizeof(big)));
	cr_expect_null(cluster_auth_new(&c, err, sizeof(err)));
	cr_expect(strstr(err, "is over 255 bytes") != NULL, "%s", err);
	config_free(&c);
	t_cfg(&c, "/nonexistent/secret");
	cr_expect_null(cluster_auth_new(&c, err, sizeof(err)));
	cr_expect(strstr(err, "/nonexistent/secret: cannot open") != NULL, "%s", err);
	config_free(&c);
	t_cfg(&c, "");
	cr_expect_null(cluster_auth_new(&c, err, sizeof(err)));
	cr_expect_str_eq(err, "", "no file: no secret, no error");
	config_free(&c);
}

Test(cluster_auth, reload_keeps_the_old_on_a_bad_file)
{
	char err[512], got[CLUSTER_AUTH_SECRET_MAX + 1];
	struct config c;
	struct cluster_auth *ca;

	t_cfg(&c, t_file("r", T_SECRET "\n", strlen(T_SECRET) + 1));
	ca = cluster_auth_new(&c, err, sizeof(err));
	cr_assert_not_null(ca, "%s", err);
	cr_expect_eq(cluster_auth_reload(ca, t_file("r2", "short\n", 6), err, sizeof(err)), -1);
	cr_expect_eq(cluster_auth_secret(ca, got, sizeof(got)), (int)strlen(T_SECRET));
	cr_expect_str_eq(got, T_SECRET);
	cr_expect_eq(cluster_auth_reload(ca, t_file("r3", "another-secret-of-20\n", 21), err,
					 sizeof(err)), 0, "%s", err);
	cluster_auth_secret(ca, got, sizeof(got));
	cr_expect_str_eq(got, "another-secret-of-20");
	cr_expect_eq(cluster_auth_secret(ca, got, 5), -ENOSPC);
	cluster_auth_free(ca);
	config_free(&c);
}

Test(cluster_auth, node_id_syntax)
{
	static const struct { const char *s; int want; } ids[] = {
		{ "node1", 1 }, { "a.b_c-D9", 1 }, { "", 0 }, { "bad id", 0 }, { "x{y}", 0 },
		{ "n\x80", 0 }, { "user@dom", 0 },
		{ "123456789012345678901234567890123456789012345678901234567890123", 1 },
		{ "1234567890123456789012345678901234567890123456789012345678901234", 0 },
	};

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		cr_expect_eq(cluster_auth_id_ok(ids[i].s, strlen(ids[i].s)), ids[i].want, "%s",
			     ids[i].s);
}

/* ---- the check on a running loop ----------------------------------------- */

static void *t_no_open(void *arg, struct conn *c, const char *peer)
{
	(void)arg, (void)c, (void)peer;
	return NULL;
}

static size_t t_no_data(void *arg, struct conn *c, void *st, const char *p, size_t n)
{
	(void)arg, (void)c, (void)st, (void)p;
	return n;
}

static void t_no_cb(void *arg, struct conn *c, void *st)
{
	(void)arg, (void)c, (void)st;
}

static const struct conn_ops t_ops = {
	.open = t_no_open, .data = t_no_data, .timeout = t_no_cb, .shutdown = t_no_cb,
	.close = t_no_cb,
};

struct t_loop {
	struct config *cfg;
	struct loop *l;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int ready, answers;
	enum auth_result last;
};

static void *t_loop_main(void *arg)
{
	struct t_loop *t = arg;
	struct loop_conf lc = { .cfg = t->cfg, .ops = &t_ops };
	char err[CONFIG_ERR_MAX];
	struct loop *l = loop_new(&lc, err, sizeof(err));

	pthread_mutex_lock(&t->mu);
	t->l = l;
	t->ready = l ? 1 : -1;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
	if (l)
		(void)loop_run(l);
	return NULL;
}

static void t_done(void *arg, uint64_t handle, enum auth_result r)
{
	struct t_loop *t = arg;

	cr_expect_eq(handle, 42u);
	pthread_mutex_lock(&t->mu);
	t->last = r;
	t->answers++;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
}

/* One check: its immediate return (negative) or the posted answer. */
static int t_check(struct t_loop *t, const struct auth_backend *b, const char *user,
		   const char *pass)
{
	int before = t->answers, rc;

	rc = b->check(b->arg, t->l, 42, "192.0.2.7", user, pass, strlen(pass), t_done, t);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&t->mu);
	while (t->answers == before)
		pthread_cond_wait(&t->cv, &t->mu);
	pthread_mutex_unlock(&t->mu);
	return (int)t->last;
}

Test(cluster_auth, check_on_a_loop)
{
	struct t_loop t = { 0 };
	struct config c;
	char err[512];
	struct cluster_auth *ca;
	const struct auth_backend *b;
	pthread_t th;

	t_cfg(&c, t_file("k", T_SECRET "\n", strlen(T_SECRET) + 1));
	c.listen[0].text[0] = '\0';
	c.nlisten = 0;
	ca = cluster_auth_new(&c, err, sizeof(err));
	cr_assert_not_null(ca, "%s", err);
	b = cluster_auth_backend(ca);
	t.cfg = &c;
	pthread_mutex_init(&t.mu, NULL);
	pthread_cond_init(&t.cv, NULL);
	cr_assert_eq(pthread_create(&th, NULL, t_loop_main, &t), 0);
	pthread_mutex_lock(&t.mu);
	while (!t.ready)
		pthread_cond_wait(&t.cv, &t.mu);
	pthread_mutex_unlock(&t.mu);
	cr_assert_eq(t.ready, 1);
	cr_expect_eq(t_check(&t, b, "node2", T_SECRET), AUTH_OK);
	cr_expect_eq(t_check(&t, b, "node2", T_SECRET "x"), AUTH_BAD, "longer");
	cr_expect_eq(t_check(&t, b, "node2", "0123456789abcdef-clustex"), AUTH_BAD, "last byte");
	cr_expect_eq(t_check(&t, b, "bad id", T_SECRET), AUTH_BAD, "not a node id");
	/* auth_failure_limit = 3: three failures used it up; a success
	 * costs nothing, so the right secret is refused too now. */
	cr_expect_eq(t_check(&t, b, "node2", T_SECRET), -AUTH_LIMITED);
	loop_stop(t.l);
	pthread_join(th, NULL);
	loop_free(t.l);
	cluster_auth_free(ca);
	config_free(&c);
}
