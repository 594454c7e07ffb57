/* SPDX-License-Identifier: MIT */
/*
 * etrnd-spoolgen: write a synthetic spool for recovery benchmarks: SHARDS
 * shard directories of segment files laid out exactly as store/spool.c
 * writes them (records from store/spool_rec.h, "%016x.seg" named after the
 * first sequence, rotated at the segment size), with recipients spread over
 * many customer domains and a share of recipients already DONE.
 *
 *   etrnd-spoolgen [-s shards] [-n messages] [-b body_bytes] [-d domains]
 *                  [-D done_percent] [-S segment_bytes] SPOOL_DIR
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/spool_rec.h"

#define GEN_SEGMENT_SIZE (64ull << 20) /* DESIGN.md section 5 */
#define GEN_BUF_SIZE (4u << 20)        /* write(2) size */
#define GEN_RCPT_MAX 3                 /* recipients per message: 1..3 */
#define GEN_ADDR_MAX 64
/* Header + envelope: 32 + 10 + sender + GEN_RCPT_MAX x (2 + address). */
#define GEN_HEAD_MAX 512
#define GEN_SEQ_BASE 0x10000ull        /* first sequence of each shard */
/* Records are stamped "now" (one microsecond apart): a generated spool is
 * fresh mail, so an etrnd started on it recovers it rather than expiring it
 * all at once. */

struct gen_shard {
	char dir[PATH_MAX];
	int fd;
	uint64_t seg_off;
	char *buf;
	size_t len;
	uint64_t seq;
	uint64_t bytes;
	uint64_t segments;
};

static uint64_t gen_rng = 88172645463325252ull;

static uint64_t gen_rand(void)
{
	gen_rng ^= gen_rng << 13;
	gen_rng ^= gen_rng >> 7;
	gen_rng ^= gen_rng << 17;
	return gen_rng;
}

static int gen_flush(struct gen_shard *sh)
{
	size_t done = 0;
	while (done < sh->len) {
		ssize_t w = write(sh->fd, sh->buf + done, sh->len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		done += (size_t)w;
	}
	sh->len = 0;
	return 0;
}

/* Append one record, starting a new segment (named after seq) when it
 * would not fit the current one. */
static int gen_append(struct gen_shard *sh, const char *p, size_t n,
		const char *p2, size_t n2, uint64_t seq, uint64_t segsize)
{
	int r;
	if (sh->fd < 0 || sh->seg_off + n + n2 > segsize) {
		char path[PATH_MAX + 32];
		if (sh->fd >= 0) {
			if ((r = gen_flush(sh)) < 0)
				return r;
			close(sh->fd);
		}
		snprintf(path, sizeof path, "%s/%016" PRIx64 ".seg", sh->dir,
				seq);
		sh->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
				0640);
		if (sh->fd < 0)
			return -errno;
		sh->seg_off = 0;
		sh->segments++;
	}
	if (sh->len + n + n2 > GEN_BUF_SIZE && (r = gen_flush(sh)) < 0)
		return r;
	if (n + n2 > GEN_BUF_SIZE)
		return -E2BIG;
	memcpy(sh->buf + sh->len, p, n);
	memcpy(sh->buf + sh->len + n, p2, n2);
	sh->len += n + n2;
	sh->seg_off += n + n2;
	sh->bytes += n + n2;
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: etrnd-spoolgen [-s shards] [-n messages] "
			"[-b body_bytes] [-d domains] [-D done_percent] "
			"[-S segment_bytes] SPOOL_DIR\n");
	exit(2);
}

int main(int argc, char **argv)
{
	unsigned shards = 2, domains = 1000, done_pct = 10;
	uint64_t messages = 1000000, body_len = 1024;
	uint64_t segsize = GEN_SEGMENT_SIZE;
	uint64_t time_base = (uint64_t)time(NULL) * 1000000u;
	int opt;

	while ((opt = getopt(argc, argv, "s:n:b:d:D:S:")) != -1) {
		switch (opt) {
		case 's': shards = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'n': messages = strtoull(optarg, NULL, 0); break;
		case 'b': body_len = strtoull(optarg, NULL, 0); break;
		case 'd': domains = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'D': done_pct = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'S': segsize = strtoull(optarg, NULL, 0); break;
		default: usage();
		}
	}
	if (optind + 1 != argc || shards == 0 || shards > 255 ||
	    domains == 0 || body_len > (64u << 20) || done_pct > 100)
		usage();
	const char *spool = argv[optind];
	if (mkdir(spool, 0750) < 0 && errno != EEXIST) {
		fprintf(stderr, "%s: %s\n", spool, strerror(errno));
		return 1;
	}

	/* The body as it goes on the wire: CRLF lines of 78 characters. */
	char *body = malloc(body_len + 1);
	struct gen_shard *sh = calloc(shards, sizeof *sh);
	if (body == NULL || sh == NULL)
		return 1;
	for (uint64_t i = 0; i < body_len; i++)
		body[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' :
			(char)('a' + i % 26);
	for (unsigned s = 0; s < shards; s++) {
		snprintf(sh[s].dir, sizeof sh[s].dir, "%s/%u", spool, s);
		if (mkdir(sh[s].dir, 0750) < 0 && errno != EEXIST) {
			fprintf(stderr, "%s: %s\n", sh[s].dir, strerror(errno));
			return 1;
		}
		sh[s].fd = -1;
		sh[s].seq = GEN_SEQ_BASE;
		sh[s].buf = malloc(GEN_BUF_SIZE);
		if (sh[s].buf == NULL)
			return 1;
	}

	uint64_t dones = 0;
	const char *sender = "bounces@sender.example";
	for (uint64_t i = 0; i < messages; i++) {
		struct gen_shard *g = &sh[i % shards];
		char addr[GEN_RCPT_MAX][GEN_ADDR_MAX];
		const char *rcpt[GEN_RCPT_MAX];
		size_t rl[GEN_RCPT_MAX];
		/* Mostly one recipient, like mail to a small business. */
		uint32_t n = 1 + (gen_rand() % 8 == 0) + (gen_rand() % 32 == 0);
		for (uint32_t r = 0; r < n; r++) {
			int k = snprintf(addr[r], GEN_ADDR_MAX,
					"user%u@customer%u.example",
					(unsigned)(gen_rand() % 100),
					(unsigned)(gen_rand() % domains));
			rcpt[r] = addr[r];
			rl[r] = (size_t)k;
		}
		uint64_t seq = g->seq++;
		uint64_t id = spool_msgid_make(i % shards, seq);
		char head[GEN_HEAD_MAX];
		size_t hl = spool_rec_encode_msg_head(head, id,
				time_base + i, 0, sender, strlen(sender), n,
				rcpt, rl, body, body_len);
		int r = gen_append(g, head, hl, body, body_len, seq, segsize);
		if (r == 0 && gen_rand() % 100 < done_pct) {
			/* Delivered later, its DONE lands a bit further on. */
			char d[SPOOL_REC_HDR_SIZE + SPOOL_DONE_PAYLOAD_SIZE];
			spool_rec_encode_done(d, id, time_base + i + 1, 0,
					SPOOL_DONE_DELIVERED);
			r = gen_append(g, d, sizeof d, "", 0, g->seq, segsize);
			dones++;
		}
		if (r < 0) {
			fprintf(stderr, "%s: %s\n", g->dir, strerror(-r));
			return 1;
		}
	}
	uint64_t bytes = 0, segs = 0;
	for (unsigned s = 0; s < shards; s++) {
		if (sh[s].fd >= 0) {
			if (gen_flush(&sh[s]) < 0 || close(sh[s].fd) < 0) {
				fprintf(stderr, "%s: write failed\n", sh[s].dir);
				return 1;
			}
		}
		bytes += sh[s].bytes;
		segs += sh[s].segments;
		free(sh[s].buf);
	}
	printf("spoolgen: %s: %u shards, %" PRIu64 " messages of %" PRIu64
			" body bytes, %" PRIu64 " DONE records, %" PRIu64
			" segments, %" PRIu64 " bytes\n", spool, shards, messages,
			body_len, dones, segs, bytes);
	free(sh);
	free(body);
	return 0;
}
