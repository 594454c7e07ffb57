/* SPDX-License-Identifier: MIT */
/*
 * store/spool_recover.c on records whose CRC is good but whose contents it
 * cannot use (only a writer of another version, or a bug of ours, makes
 * one): a DONE with an unknown status or naming a recipient the message
 * does not have, a NOTE of an unknown kind, a MSG without recipients. Each
 * costs that record only: it is counted as a bad region, nothing of it is
 * applied, the records around it are, and the segment is not cut.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/spool_index.h"
#include "store/spool_rec.h"
#include "store/spool_recover.h"

#define T_IMG_MAX 8192
#define T_SEQ0 0x100
#define T_TIME_US 1700000000000000ull
#define T_STATUS_UNKNOWN 9   /* no enum spool_done_status has it */
#define T_NOTE_UNKNOWN 7     /* past SPOOL_NOTE_KIND_MAX */
#define T_RCPT_MISSING 5     /* the message has one recipient */

static char t_dir[64];
static char t_img[T_IMG_MAX];
static size_t t_len;

static void t_mkdir(void)
{
	snprintf(t_dir, sizeof(t_dir), "/tmp/test_spool_recover_bad.XXXXXX");
	cr_assert_not_null(mkdtemp(t_dir));
}

static void t_rmdir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t_dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(spool_recover_bad, .init = t_mkdir, .fini = t_rmdir);

/* A MSG for id to rcpt (nrcpt 0 or 1), body "body\r\n", appended to t_img. */
static void t_msg(uint64_t id, uint32_t nrcpt)
{
	static const char *const rcpt[] = { "u@a.example" };
	static const char body[] = "body\r\n";
	const char *sender = "s@sender.example";
	size_t rl[] = { strlen(rcpt[0]) };
	size_t head = spool_rec_msg_head_size(strlen(sender), nrcpt, rl);

	cr_assert_leq(t_len + head + sizeof(body) - 1, T_IMG_MAX);
	cr_assert_eq(spool_rec_encode_msg_head(t_img + t_len, id, T_TIME_US, 0, sender,
					       strlen(sender), nrcpt, rcpt, rl, body,
					       sizeof(body) - 1), head);
	t_len += head;
	memcpy(t_img + t_len, body, sizeof(body) - 1);
	t_len += sizeof(body) - 1;
}

static void t_done(uint64_t id, uint32_t rcpt, int status)
{
	cr_assert_leq(t_len + SPOOL_REC_HDR_SIZE + SPOOL_DONE_PAYLOAD_SIZE, T_IMG_MAX);
	t_len += spool_rec_encode_done(t_img + t_len, id, T_TIME_US, rcpt,
				       (enum spool_done_status)status);
}

static void t_note(uint64_t id, int kind)
{
	cr_assert_leq(t_len + SPOOL_REC_HDR_SIZE + SPOOL_NOTE_PAYLOAD_SIZE, T_IMG_MAX);
	t_len += spool_rec_encode_note(t_img + t_len, id, T_TIME_US,
				       (enum spool_note_kind)kind);
}

static off_t t_write_seg(void)
{
	char path[128];
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "%s/%016" PRIx64 ".seg", t_dir, (uint64_t)T_SEQ0);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, t_img, t_len), (ssize_t)t_len);
	close(fd);
	cr_assert_eq(stat(path, &st), 0);
	return st.st_size;
}

static uint32_t t_pending(const struct spool_index *idx, uint64_t id)
{
	struct spool_index_entry e;

	return spool_index_msg_find(idx, id, &e) < 0 ? 0 : e.npending;
}

Test(spool_recover_bad, good_crc_unusable_contents_cost_one_record)
{
	uint64_t a = spool_msgid_make(0, T_SEQ0 + 1), empty = spool_msgid_make(0, T_SEQ0 + 2);
	uint64_t b = spool_msgid_make(0, T_SEQ0 + 3), c = spool_msgid_make(0, T_SEQ0 + 4);
	struct spool_recover_result res;
	struct spool_index *idx = spool_index_new();
	char err[256] = "";
	struct stat st;
	char path[128];
	off_t size;

	cr_assert_not_null(idx);
	t_len = 0;
	t_msg(a, 1);
	t_done(a, T_RCPT_MISSING, SPOOL_DONE_DELIVERED); /* no such recipient */
	t_done(a, 0, T_STATUS_UNKNOWN);                  /* does not parse */
	t_note(a, T_NOTE_UNKNOWN);                       /* does not parse */
	t_msg(empty, 0);                                 /* no recipients */
	t_msg(b, 1);
	t_msg(c, 1);
	t_done(c, 0, SPOOL_DONE_DELIVERED);              /* a good one after them */
	size = t_write_seg();

	memset(&res, 0, sizeof(res));
	cr_assert_eq(spool_recover_shard(t_dir, idx, &res, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(res.bad_regions, 4);
	cr_expect_eq(res.torn_segments, 0);
	cr_expect_eq(t_pending(idx, a), 1, "a bad DONE or NOTE was applied");
	cr_expect_eq(t_pending(idx, empty), 0);
	cr_expect_eq(spool_index_msg_find(idx, empty, &(struct spool_index_entry){ 0 }), -ENOENT);
	cr_expect_eq(t_pending(idx, b), 1);
	cr_expect_eq(t_pending(idx, c), 0, "the good DONE after the bad ones was not applied");
	snprintf(path, sizeof(path), "%s/%016" PRIx64 ".seg", t_dir, (uint64_t)T_SEQ0);
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq(st.st_size, size, "the segment was cut");
	spool_recover_result_free(&res);
	spool_index_free(idx);
}
