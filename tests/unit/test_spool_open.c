/* SPDX-License-Identifier: MIT */
/*
 * Tests for store/spool.c's spool_shard_open() on spool directories it
 * cannot use, each a real condition: a spool_dir whose parent is missing, a
 * spool_dir or a shard directory that is a file, a path too long for a
 * shard, and a shard whose recovery fails (a segment name that cannot be
 * opened). Each returns NULL with the error naming the path and the
 * reason, which etrnd prints at start-up, and opens nothing it keeps (the
 * descriptors are as before). The good case beside each: the same
 * directory once fixed opens.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/loop.h"
#include "engine_fixture.h"
#include "store/spool.h"
#include "store/spool_rec.h"
#include "loopback.h"

#define T_SHARD 3u
#define T_ERR_MAX (PATH_MAX + 64)

static struct config cfg;
static struct loop *loop;
static char tmp[64];
static char err[T_ERR_MAX];

static void setup(void)
{
	struct loop_conf lc = { 0 };

	snprintf(tmp, sizeof(tmp), "/tmp/etrnd-test-spool-open-XXXXXX");
	cr_assert_not_null(mkdtemp(tmp));
	config_defaults(&cfg);
	cfg.nlisten = 0;
	cfg.max_connections = 1;
	lc.cfg = &cfg;
	lc.ops = engine_fixture_no_ops();
	loop = loop_new(&lc, err, sizeof(err));
	cr_assert_not_null(loop, "%s", err);
}

static void teardown(void)
{
	char cmd[128];

	loop_free(loop);
	config_free(&cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(spool_open, .init = setup, .fini = teardown);

static struct spool_shard *open_at(const char *dir)
{
	struct spool_shard_conf sc = { 0 };

	sc.dir = dir;
	sc.shard = T_SHARD;
	sc.sync = CONFIG_SYNC_BATCH;
	sc.segment_size = 1u << 20;
	err[0] = '\0';
	return spool_shard_open(loop, &sc, err, sizeof(err));
}

/* Fails with exactly want, and leaves no descriptor open. */
static void expect_fail(const char *dir, const char *want)
{
	int before = loopback_lowest_free_fd();
	struct spool_shard *sh = open_at(dir);

	cr_assert_null(sh, "opened %s, wanted \"%s\"", dir, want);
	cr_expect_str_eq(err, want);
	cr_expect_eq(loopback_lowest_free_fd(), before, "a descriptor left open");
}

static void expect_open(const char *dir)
{
	struct spool_shard *sh = open_at(dir);
	cr_assert_not_null(sh, "%s", err);
	spool_shard_close(sh);
}

static void touch(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	close(fd);
}

Test(spool_open, parent_missing)
{
	char dir[128], want[T_ERR_MAX];

	snprintf(dir, sizeof(dir), "%s/no/spool", tmp);
	snprintf(want, sizeof(want), "spool_dir %s: No such file or directory", dir);
	expect_fail(dir, want);
	snprintf(dir, sizeof(dir), "%s/no", tmp);
	cr_assert_eq(mkdir(dir, 0750), 0);
	snprintf(dir, sizeof(dir), "%s/no/spool", tmp);
	expect_open(dir);
}

Test(spool_open, spool_dir_is_a_file)
{
	char dir[128], want[T_ERR_MAX];

	snprintf(dir, sizeof(dir), "%s/spool", tmp);
	touch(dir);
	snprintf(want, sizeof(want), "%s/%u: Not a directory", dir, T_SHARD);
	expect_fail(dir, want);
}

Test(spool_open, shard_dir_is_a_file)
{
	char dir[128], shard[160], want[T_ERR_MAX];

	snprintf(dir, sizeof(dir), "%s/spool", tmp);
	cr_assert_eq(mkdir(dir, 0750), 0);
	snprintf(shard, sizeof(shard), "%s/%u", dir, T_SHARD);
	touch(shard);
	snprintf(want, sizeof(want), "%s: Not a directory", shard);
	expect_fail(dir, want);
	cr_assert_eq(unlink(shard), 0);
	expect_open(dir);
}

Test(spool_open, path_too_long)
{
	static char dir[PATH_MAX + 8], want[PATH_MAX + 64];

	memset(dir, 'x', PATH_MAX - 2);
	dir[0] = '/';
	dir[PATH_MAX - 2] = '\0';
	snprintf(want, sizeof(want), "%s: spool path too long", dir);
	expect_fail(dir, want);
}

/* Recovery's error is the open's: the shard is not used half-read. */
Test(spool_open, recovery_failure)
{
	char dir[128], seg[200], want[T_ERR_MAX];

	snprintf(dir, sizeof(dir), "%s/spool", tmp);
	cr_assert_eq(mkdir(dir, 0750), 0);
	snprintf(seg, sizeof(seg), "%s/%u", dir, T_SHARD);
	cr_assert_eq(mkdir(seg, 0750), 0);
	snprintf(seg, sizeof(seg), "%s/%u/0000000000000010.seg", dir, T_SHARD);
	cr_assert_eq(symlink("/nonexistent/etrnd-test", seg), 0);
	snprintf(want, sizeof(want), "%s: No such file or directory", seg);
	expect_fail(dir, want);
	cr_assert_eq(unlink(seg), 0);
	expect_open(dir);
}

/* ---- appends the shard refuses or cannot write --------------------------- */

struct t_done {
	unsigned pending;
	int err[2];
	unsigned n;
};

static void t_on_done(void *arg, int rc)
{
	struct t_done *d = arg;

	d->err[d->n++] = rc;
	if (--d->pending == 0)
		loop_stop(loop);
}

static struct spool_msg t_msg(uint64_t id, const char *body, size_t body_len)
{
	static const char *const rcpt[] = { "a@demo.test" };
	static const size_t rcpt_len[] = { 11 };
	struct spool_msg m = {
		.msgid = id, .sender = "s@example.org", .sender_len = 13,
		.nrcpt = 1, .rcpt = rcpt, .rcpt_len = rcpt_len,
		.body = body, .body_len = body_len,
	};
	return m;
}

/* Too big for a segment, a domain name too long for a SCHED: refused at
 * once, nothing queued. */
Test(spool_open, append_refuses_what_cannot_fit)
{
	char dir[128], dom[SPOOL_SCHED_DOMAIN_MAX + 2];
	static char body[(1u << 20) + 1];
	struct spool_stats st;

	snprintf(dir, sizeof(dir), "%s/spool", tmp);
	struct spool_shard *sh = open_at(dir);
	cr_assert_not_null(sh, "%s", err);
	memset(body, 'x', sizeof(body));
	struct spool_msg m = t_msg(spool_shard_new_msgid(sh), body, sizeof(body));
	cr_expect_eq(spool_append_msg(sh, &m, NULL, NULL), -E2BIG);
	memset(dom, 'd', sizeof(dom));
	cr_expect_eq(spool_append_sched(sh, m.msgid, dom, SPOOL_SCHED_DOMAIN_MAX + 1, 1, NULL, NULL),
		     -ENAMETOOLONG);
	spool_shard_stats(sh, &st);
	cr_expect_eq(st.messages, 0);
	spool_shard_close(sh);
}

/* The next segment's name is taken (a stray directory): the message fails
 * with the reason (never acknowledged as stored), it is logged, and the
 * next message goes to a segment of a fresh name and is durable. */
Test(spool_open, segment_that_cannot_be_created_fails_the_message)
{
	char dir[128], seg[256];
	struct t_done d = { 0 };
	struct spool_stats st;

	snprintf(dir, sizeof(dir), "%s/spool", tmp);
	struct spool_shard *sh = open_at(dir);
	cr_assert_not_null(sh, "%s", err);
	uint64_t id = spool_shard_new_msgid(sh);
	/* The segment opened at the flush is named by the next sequence. */
	snprintf(seg, sizeof(seg), "%s/%u/%016" PRIx64 ".seg", dir, T_SHARD, spool_msgid_seq(id) + 1);
	cr_assert_eq(mkdir(seg, 0750), 0);
	struct spool_msg m = t_msg(id, "Subject: x\r\n\r\nhi\r\n", 19);
	d.pending = 1;
	cr_assert_eq(spool_append_msg(sh, &m, t_on_done, &d), 0);
	cr_assert_eq(loop_run(loop), 0);
	cr_expect_eq(d.err[0], -EEXIST);
	spool_shard_stats(sh, &st);
	cr_expect_eq(st.errors, 1);
	cr_expect_eq(st.messages, 0);
	spool_shard_close(sh);
	loop_free(loop);

	/* A new loop (one loop_run() each) and the shard again: the next
	 * message is stored. */
	struct loop_conf lc = { 0 };
	lc.cfg = &cfg;
	lc.ops = engine_fixture_no_ops();
	loop = loop_new(&lc, err, sizeof(err));
	cr_assert_not_null(loop, "%s", err);
	sh = open_at(dir);
	cr_assert_not_null(sh, "%s", err);
	m.msgid = spool_shard_new_msgid(sh);
	d = (struct t_done){ .pending = 1 };
	cr_assert_eq(spool_append_msg(sh, &m, t_on_done, &d), 0);
	cr_assert_eq(loop_run(loop), 0);
	cr_expect_eq(d.err[0], 0);
	spool_shard_stats(sh, &st);
	cr_expect_eq(st.messages, 1);
	cr_expect_eq(st.errors, 0);
	spool_shard_close(sh);
}
