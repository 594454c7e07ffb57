/* SPDX-License-Identifier: MIT */
/*
 * spool_recover: see spool_recover.h. One pass over each segment through
 * spool_read_segment() (large reads, CRC per record); MSG records go into the
 * index, DONE records take recipients out, NOTE records mark messages,
 * SCHED records set a queue entry's next attempt; damage is logged once per
 * region as "spool: SEGMENT: offset N: REASON (M bytes skipped)".
 */
#include "store/spool_recover.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "store/spool_read.h"

#define REC_SEG_HEX_LEN 16          /* "%016" PRIx64, as store/spool.c names */
#define REC_SEG_SUFFIX ".seg"
#define REC_SEGS_MIN 64
#define REC_ADDRS_MIN 64
#define REC_DEAD_BATCH 64
#define REC_QID_LEN 32              /* spool_msgid_format() needs 15 */

struct rec_ctx {
	struct spool_index *idx;
	struct spool_recover_result *res;
	const char *path;
	uint32_t seg_id;
	struct spool_rec_addr *addrs;   /* reused for every MSG record */
	size_t capaddrs;
	uint64_t seg_dups;
	uint64_t first_dup;
	uint64_t seg_scheds;            /* SCHEDs applied from this segment */
	uint32_t *sched_segs;           /* segments with applied SCHEDs, */
	size_t nsched_segs, capsched_segs; /* ascending ids */
	int err;                        /* -ENOMEM from the index */
};

static const char *rec_reason(int why)
{
	switch (why) {
	case SPOOL_REC_BAD_MAGIC:
		return "bad magic";
	case SPOOL_REC_BAD_VERSION:
		return "bad version";
	case SPOOL_REC_BAD_LENGTH:
		return "bad length";
	case SPOOL_REC_BAD_CRC:
		return "bad CRC";
	case SPOOL_REC_BAD_PAYLOAD:
		return "bad payload";
	default:
		return "damaged record";
	}
}

static void rec_bad(void *arg, uint64_t off, uint64_t len, int why)
{
	struct rec_ctx *c = arg;

	log_warn("spool: %s: offset %" PRIu64 ": %s (%" PRIu64
			" bytes skipped)", c->path, off, rec_reason(why), len);
	c->res->bad_regions++;
	c->res->bad_bytes += len;
	spool_index_segment_account(c->idx, c->seg_id, len);
}

/* A record with a good CRC whose contents we cannot use: only a bug of ours
 * writes one, but it costs that record only. */
static void rec_unusable(struct rec_ctx *c, uint64_t off, uint64_t len,
		const char *why, int accounted)
{
	log_warn("spool: %s: offset %" PRIu64 ": %s (%" PRIu64
			" bytes skipped)", c->path, off, why, len);
	c->res->bad_regions++;
	c->res->bad_bytes += len;
	if (!accounted)
		spool_index_segment_account(c->idx, c->seg_id, len);
}

static int rec_msg(struct rec_ctx *c, uint64_t off,
		const struct spool_rec_hdr *hdr, const char *payload)
{
	uint64_t rec_len = SPOOL_REC_HDR_SIZE + (uint64_t)hdr->length;
	struct spool_rec_msg msg;

	if (spool_rec_decode_msg(payload, hdr->length, &msg) != SPOOL_REC_OK) {
		rec_unusable(c, off, rec_len, "MSG envelope does not parse", 0);
		return 0;
	}
	if (msg.nrcpt > c->capaddrs) {
		size_t cap = c->capaddrs ? c->capaddrs : REC_ADDRS_MIN;
		while (cap < msg.nrcpt)
			cap *= 2;
		struct spool_rec_addr *na = realloc(c->addrs, cap * sizeof *na);
		if (na == NULL) {
			c->err = -ENOMEM;
			return 1;
		}
		c->addrs = na;
		c->capaddrs = cap;
	}
	size_t cursor = 0;
	for (uint32_t i = 0; i < msg.nrcpt; i++)
		c->addrs[i] = spool_rec_msg_rcpt_next(&msg, &cursor);

	struct spool_index_msg m = {
		.msgid = hdr->msgid,
		.segment_id = c->seg_id,
		.rec_len = (uint32_t)rec_len,
		.off = off,
		.time_us = hdr->time_us,
		.body_len = msg.body_len,
		.nrcpt = msg.nrcpt,
		.rcpts = c->addrs,
		.held = (hdr->flags & SPOOL_MSG_HELD) != 0,
	};
	int r = spool_index_add_msg(c->idx, &m);
	if (r == -EEXIST) {
		/* A second copy (a compaction cut short copies before it
		 * unlinks): the older one stays. Summarised per segment. */
		if (c->seg_dups++ == 0)
			c->first_dup = hdr->msgid;
		c->res->duplicates++;
	} else if (r == -EINVAL) {
		rec_unusable(c, off, rec_len, "MSG without recipients", 1);
	} else if (r < 0) {
		c->err = r;
		return 1;
	}
	return 0;
}

static int rec_done(struct rec_ctx *c, uint64_t off,
		const struct spool_rec_hdr *hdr, const char *payload)
{
	uint32_t rcpt;
	enum spool_done_status st;
	char qid[REC_QID_LEN];

	if (spool_rec_decode_done(payload, hdr->length, &rcpt, &st) !=
			SPOOL_REC_OK) {
		rec_unusable(c, off, SPOOL_REC_HDR_SIZE + (uint64_t)hdr->length,
				"DONE payload does not parse", 0);
		return 0;
	}
	int r = spool_index_done(c->idx, hdr->msgid, rcpt, st, c->seg_id,
			NULL);
	switch (r) {
	case 0:
		break;
	case -ENOENT:
		/* Normal once the MSG's segment was unlinked; also what a
		 * MSG lost to damage looks like. */
		c->res->unknown_dones++;
		if (log_enabled(LOGL_DEBUG)) {
			spool_msgid_format(hdr->msgid, qid, sizeof qid);
			log_debug("spool: %s: offset %" PRIu64 ": DONE for %s "
					"recipient %u: message not in the spool",
					c->path, off, qid, rcpt);
		}
		break;
	case -EALREADY:
		c->res->repeated_dones++;
		break;
	case -EINVAL:
		spool_msgid_format(hdr->msgid, qid, sizeof qid);
		log_warn("spool: %s: offset %" PRIu64 ": DONE for %s names "
				"recipient %u, which it does not have", c->path,
				off, qid, rcpt);
		c->res->bad_regions++;
		break;
	default:
		c->err = r;
		return 1;
	}
	return 0;
}

static int rec_note(struct rec_ctx *c, uint64_t off,
		const struct spool_rec_hdr *hdr, const char *payload)
{
	enum spool_note_kind kind;

	if (spool_rec_decode_note(payload, hdr->length, &kind) !=
			SPOOL_REC_OK) {
		rec_unusable(c, off, SPOOL_REC_HDR_SIZE + (uint64_t)hdr->length,
				"NOTE payload does not parse", 0);
		return 0;
	}
	int r = spool_index_note(c->idx, hdr->msgid, kind, c->seg_id);
	/* -ENOENT: the message is finished (its segment unlinked) or lost;
	 * -EALREADY: a copy's NOTE after the original's. Both harmless. */
	if (r == 0 || r == -ENOENT || r == -EALREADY)
		return 0;
	if (r == -EINVAL)
		panic("NOTE kind %d decoded but not indexable", (int)kind);
	c->err = r;
	return 1;
}

/* Advisory: never an error (but the index's -ENOMEM), never a pin, no
 * live byte. The MSG precedes it
 * in scan order when it applies (a copy's SCHEDs follow the copy, and the
 * ones before a compaction, which then name a message not indexed yet, are
 * ignored); a later one overwrites an earlier one. */
static int rec_sched(struct rec_ctx *c, uint64_t off,
		const struct spool_rec_hdr *hdr, const char *payload)
{
	uint64_t rec_len = SPOOL_REC_HDR_SIZE + (uint64_t)hdr->length;
	uint64_t next_us;
	const char *dom;
	size_t dl;

	if (spool_rec_decode_sched(payload, hdr->length, &next_us, &dom, &dl) !=
			SPOOL_REC_OK) {
		rec_unusable(c, off, rec_len, "SCHED payload does not parse", 0);
		return 0;
	}
	spool_index_segment_account(c->idx, c->seg_id, rec_len);
	int r = spool_index_set_next(c->idx, hdr->msgid, dom, dl, next_us);
	if (r == -ENOMEM) {
		/* A compact entry found no memory for its time: like any
		 * index allocation, recovery fails rather than forget it. */
		c->err = r;
		return 1;
	}
	if (r < 0)
		c->res->sched_ignored++;
	else
		c->seg_scheds++;
	return 0;
}

/* The segment just read applied SCHEDs: remember it, so that its death at
 * start is reported (spool.c then writes the schedule again). */
static int rec_note_sched_seg(struct rec_ctx *c)
{
	if (c->seg_scheds == 0)
		return 0;
	if (c->nsched_segs == c->capsched_segs) {
		size_t cap = c->capsched_segs ? 2 * c->capsched_segs : REC_SEGS_MIN;
		uint32_t *n = realloc(c->sched_segs, cap * sizeof *n);
		if (n == NULL)
			return -ENOMEM;
		c->sched_segs = n;
		c->capsched_segs = cap;
	}
	c->sched_segs[c->nsched_segs++] = c->seg_id;
	return 0;
}

/* 1 when seg_id applied SCHEDs (binary search: ids ascend). */
static int rec_had_scheds(const struct rec_ctx *c, uint32_t seg_id)
{
	size_t lo = 0, hi = c->nsched_segs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (c->sched_segs[mid] == seg_id)
			return 1;
		if (c->sched_segs[mid] < seg_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

static int rec_record(void *arg, uint64_t off, const struct spool_rec_hdr *hdr,
		const char *payload)
{
	struct rec_ctx *c = arg;
	uint64_t seq = spool_msgid_seq(hdr->msgid);

	if (seq > c->res->max_seq)
		c->res->max_seq = seq;
	if (hdr->type == SPOOL_REC_MSG) {
		c->res->msg_records++;
		return rec_msg(c, off, hdr, payload);
	}
	if (hdr->type == SPOOL_REC_NOTE) {
		c->res->note_records++;
		return rec_note(c, off, hdr, payload);
	}
	if (hdr->type == SPOOL_REC_SCHED) {
		c->res->sched_records++;
		return rec_sched(c, off, hdr, payload);
	}
	c->res->done_records++;
	return rec_done(c, off, hdr, payload);
}

static int seg_name_parse(const char *name, uint64_t *first_seq)
{
	uint64_t v = 0;

	for (int i = 0; i < REC_SEG_HEX_LEN; i++) {
		char ch = name[i];
		if (ch >= '0' && ch <= '9')
			v = (v << 4) | (uint64_t)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			v = (v << 4) | (uint64_t)(ch - 'a' + 10);
		else
			return -1;
	}
	if (strcmp(name + REC_SEG_HEX_LEN, REC_SEG_SUFFIX) != 0)
		return -1;
	*first_seq = v;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The segment names in shard_dir, sorted. */
static int list_segments(const char *dir, uint64_t **out, size_t *n,
		char *err, size_t errlen)
{
	uint64_t *v = NULL;
	size_t cap = 0;
	struct dirent *de;
	int ret = 0;

	*n = 0;
	DIR *d = opendir(dir);
	if (d == NULL) {
		if (errno == ENOENT) {
			*out = NULL;
			return 0;
		}
		ret = -errno;
		(void)snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return ret;
	}
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		uint64_t seq;
		if (seg_name_parse(de->d_name, &seq) < 0) {
			if (strcmp(de->d_name, ".") != 0 &&
			    strcmp(de->d_name, "..") != 0)
				log_info("spool: %s: ignoring %s (not a segment "
						"name)", dir, de->d_name);
			continue;
		}
		if (*n == cap) {
			size_t nc = cap ? cap * 2 : REC_SEGS_MIN;
			uint64_t *nv = realloc(v, nc * sizeof *nv);
			if (nv == NULL) {
				ret = -ENOMEM;
				(void)snprintf(err, errlen, "out of memory");
				goto fail;
			}
			v = nv;
			cap = nc;
		}
		v[(*n)++] = seq;
		errno = 0;
	}
	if (errno != 0) {
		ret = -errno;
		(void)snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	closedir(d);
	if (*n > 1)
		qsort(v, *n, sizeof *v, cmp_u64);
	*out = v;
	return 0;
fail:
	closedir(d);
	free(v);
	*n = 0;
	return ret;
}

/* Cut the torn tail off and make the new size durable before anything is
 * appended or delivered on the strength of this scan. */
static int truncate_tail(const char *path, uint64_t at, char *err,
		size_t errlen)
{
	int ret = 0;
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		goto fail;
	if (ftruncate(fd, (off_t)at) < 0 || fdatasync(fd) < 0)
		goto fail;
	close(fd);
	return 0;
fail:
	ret = -errno;
	(void)snprintf(err, errlen, "%s: truncating torn tail: %s", path,
			strerror(errno));
	if (fd >= 0)
		close(fd);
	return ret;
}

static int dead_push(struct spool_recover_result *res, size_t *cap,
		uint64_t seq)
{
	if (res->ndead == *cap) {
		size_t nc = *cap ? *cap * 2 : REC_SEGS_MIN;
		uint64_t *nd = realloc(res->dead, nc * sizeof *nd);
		if (nd == NULL)
			return -ENOMEM;
		res->dead = nd;
		*cap = nc;
	}
	res->dead[res->ndead++] = seq;
	return 0;
}

/* Take the dead segments out of the index one batch at a time: removing one
 * releases the pins of its DONEs' holders, which may die in turn, so the
 * order of the list is the order in which unlinking them is safe. */
static int collect_dead(const struct rec_ctx *c, struct spool_index *idx,
		struct spool_recover_result *res)
{
	uint32_t ids[REC_DEAD_BATCH];
	size_t cap = 0, n;

	while ((n = spool_index_take_dead(idx, ids, REC_DEAD_BATCH)) > 0) {
		for (size_t i = 0; i < n; i++) {
			struct spool_index_seg_stat st;
			if (spool_index_segment_stat(idx, ids[i], &st) < 0 ||
			    spool_index_segment_remove(idx, ids[i]) < 0)
				panic("dead segment %u vanished", ids[i]);
			if (dead_push(res, &cap, st.first_seq) < 0)
				return -ENOMEM;
			res->sched_dead_segments += (uint64_t)rec_had_scheds(c, ids[i]);
		}
	}
	return 0;
}

/* The failure every index allocation comes to: the caller's report names the
 * shard, not the segment, since the whole rebuild is lost. */
static int rec_nomem(const char *shard_dir, char *err, size_t errlen)
{
	(void)snprintf(err, errlen, "%s: out of memory rebuilding the queue "
			"index", shard_dir);
	return -ENOMEM;
}

/* One line per segment for all the second copies in it (see rec_msg). */
static void rec_log_dups(const struct rec_ctx *c)
{
	char qid[REC_QID_LEN];

	if (c->seg_dups == 0)
		return;
	spool_msgid_format(c->first_dup, qid, sizeof qid);
	log_warn("spool: %s: %" PRIu64 " messages already seen in "
			"an older segment, first copy kept "
			"(first: %s)", c->path, c->seg_dups, qid);
}

/* Cut a torn tail found by the read (the end of an append cut short by a
 * crash; only the newest segment should ever have one), or the zeros
 * written ahead of a segment's records (store/spool_prezero.h), which are
 * no damage: said at info and counted apart. */
static int rec_cut_torn(struct rec_ctx *c, const struct spool_read_result *rr,
		int newest, char *err, size_t errlen)
{
	uint64_t at = rr->file_size - rr->torn_bytes;
	int ret;

	if (rr->torn_bytes == 0)
		return 0;
	if (rr->zero_tail)
		log_info("spool: %s: cut %" PRIu64 " bytes of zeros after the last "
			 "record (space written ahead)", c->path, rr->torn_bytes);
	else
		log_warn("spool: %s: truncated torn tail of %" PRIu64
				" bytes at offset %" PRIu64 "%s", c->path,
				rr->torn_bytes, at, newest ? "" :
				" (not the newest segment)");
	ret = truncate_tail(c->path, at, err, errlen);
	if (ret < 0)
		return ret;
	if (rr->zero_tail) {
		c->res->zero_bytes += rr->torn_bytes;
	} else {
		c->res->torn_segments++;
		c->res->torn_bytes += rr->torn_bytes;
	}
	return 0;
}

/* Read segment seq of shard_dir into the index and seal it. Returns 0 (also
 * for a name that is not a regular file, which is skipped), or -errno with
 * err filled. */
static int rec_segment(struct rec_ctx *c, const char *shard_dir, uint64_t seq,
		int newest, char *err, size_t errlen)
{
	struct spool_read_result rr;
	struct stat sb;
	char path[PATH_MAX];
	int ret;

	int n = snprintf(path, sizeof path, "%s/%016" PRIx64 "%s",
			shard_dir, seq, REC_SEG_SUFFIX);
	if (n < 0 || (size_t)n >= sizeof path) {
		(void)snprintf(err, errlen, "%s: path too long", shard_dir);
		return -ENAMETOOLONG;
	}
	if (seq > c->res->max_seq)
		c->res->max_seq = seq;
	if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
		/* Nothing of ours, and never to be unlinked. */
		log_warn("spool: %s: not a regular file, ignored", path);
		return 0;
	}
	if (spool_index_segment_add(c->idx, seq, &c->seg_id) < 0)
		return rec_nomem(shard_dir, err, errlen);
	c->path = path;
	c->seg_dups = 0;
	c->seg_scheds = 0;
	ret = spool_read_segment(path, rec_record, rec_bad, c, &rr);
	if (ret < 0) {
		(void)snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		goto out;
	}
	if (ret > 0) {
		/* A callback stopped the read: c->err, always an index
		 * allocation. */
		ret = rec_nomem(shard_dir, err, errlen);
		goto out;
	}
	c->res->segments++;
	c->res->bytes += rr.file_size;
	rec_log_dups(c);
	ret = rec_cut_torn(c, &rr, newest, err, errlen);
	if (ret < 0)
		goto out;
	if (rec_note_sched_seg(c) < 0) {
		ret = rec_nomem(shard_dir, err, errlen);
		goto out;
	}
	if (spool_index_segment_seal(c->idx, c->seg_id) < 0)
		panic("segment %u vanished", c->seg_id);
out:
	c->path = NULL;         /* path dies with this frame */
	return ret;
}

static void rec_log_summary(const char *shard_dir,
		const struct spool_recover_result *res)
{
	log_info("spool: %s: %" PRIu64 " messages (%" PRIu64 " recipients) "
			"queued; read %" PRIu64 " segments, %" PRIu64 " MSG, %"
			PRIu64 " DONE, %" PRIu64 " NOTE and %" PRIu64 " SCHED "
			"records, %" PRIu64 " bad regions, %" PRIu64 " torn "
			"bytes; %zu segments to unlink", shard_dir,
			res->live_messages, res->live_recipients, res->segments,
			res->msg_records, res->done_records, res->note_records,
			res->sched_records, res->bad_regions,
			res->torn_bytes, res->ndead);
}

int spool_recover_shard(const char *shard_dir, struct spool_index *idx,
		struct spool_recover_result *res, char *err, size_t errlen)
{
	struct rec_ctx c = { .idx = idx, .res = res };
	struct spool_index_totals t;
	uint64_t *segs = NULL;
	size_t nsegs = 0;
	int ret;

	memset(res, 0, sizeof *res);
	ret = list_segments(shard_dir, &segs, &nsegs, err, errlen);
	if (ret < 0)
		return ret;
	for (size_t i = 0; i < nsegs; i++) {
		ret = rec_segment(&c, shard_dir, segs[i], i + 1 == nsegs, err,
				errlen);
		if (ret < 0)
			goto fail;
	}
	if (collect_dead(&c, idx, res) < 0) {
		ret = rec_nomem(shard_dir, err, errlen);
		goto fail;
	}
	spool_index_totals(idx, &t);
	res->live_messages = t.messages;
	res->live_recipients = t.recipients;
	rec_log_summary(shard_dir, res);
	free(segs);
	free(c.addrs);
	free(c.sched_segs);
	return 0;
fail:
	spool_recover_result_free(res);
	free(segs);
	free(c.addrs);
	free(c.sched_segs);
	return ret;
}

void spool_recover_result_free(struct spool_recover_result *res)
{
	if (res == NULL)
		return;
	free(res->dead);
	res->dead = NULL;
	res->ndead = 0;
}
