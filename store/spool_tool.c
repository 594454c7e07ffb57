/* SPDX-License-Identifier: MIT */
/*
 * etrnd-spool: offline inspection of a spool directory (stats, list, show,
 * json; every record type, SCHED included); list and show say each
 * message's state (store/spool_state.h). Reads segments with spool_read
 * and never writes to the spool, so it is safe next to a running etrnd (a
 * record being appended shows as a torn tail). Exit status: 0 fine, 1 an
 * error (unreadable directory or segment, queue id not found), 2 usage, 3
 * damaged regions found (and no error).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "store/spool_read.h"
#include "store/spool_rec.h"
#include "store/spool_state.h"

#define TOOL_NAME "etrnd-spool"
#define TOOL_EXIT_OK 0
#define TOOL_EXIT_ERR 1
#define TOOL_EXIT_USAGE 2
#define TOOL_EXIT_DAMAGE 3

#define SEG_HEX_DIGITS 16
#define SEG_SUFFIX ".seg"
#define SHARD_NAME_MAX 5 /* decimal digits of the largest shard, 65535 */
#define QID_HEX_MAX 16
#define QID_TEXT_SIZE 24
#define ISO_DAY_SIZE 32  /* "YYYY-MM-DDTHH:MM:SS", years of any width */
#define ISO_TIME_SIZE 40 /* ISO_DAY_SIZE - 1 + ".uuuuuuZ" + NUL */
#define PRINTABLE_MAX 2048 /* longest address is 65535; rare, truncated */
#define OUT_BUF_SIZE (1u << 20)
#define B64_CHUNK 49152 /* input bytes per output flush; multiple of 3 */
#define US_PER_S 1000000ull
#define SHOW_SCHEDS_MIN 4
#define NAMES_MIN 16

enum tool_cmd { CMD_STATS, CMD_LIST, CMD_SHOW, CMD_JSON };

/* list reads each shard twice: the states first (a message's DONEs come
 * after its MSG), then the messages with them. */
enum tool_pass { PASS_ONLY, PASS_STATE, PASS_PRINT };

struct shard_stats {
	uint64_t segments, records, msg, done, note, sched, bytes;
	uint64_t torn_segments, torn_bytes, bad_regions;
};

/* show: the last SCHED per domain after the message's first copy (what
 * recovery would apply). */
struct sched_ent {
	char dom[SPOOL_SCHED_DOMAIN_MAX];
	size_t len;
	uint64_t next_us;
};

/* One record as decoded: the fields of its type. */
struct rec_view {
	struct spool_rec_msg m;
	uint32_t rcpt;
	enum spool_done_status status;
	enum spool_note_kind kind;
	uint64_t next_us;
	const char *dom;
	size_t dom_len;
};

struct tool {
	enum tool_cmd cmd;
	enum tool_pass pass;
	int all;                /* list --all: finished messages too */
	const char *spool_dir;
	const char *qid_arg;    /* show: the queue id as given */
	struct spool_state *state; /* list: the shard's message states;
	                              show: the one message's */
	const char *path;       /* segment being read */
	unsigned shard;
	int damage;
	int error;
	struct shard_stats st;
	/* show */
	uint64_t want_id;
	int found;
	struct spool_rec_hdr found_hdr;
	char *found_payload;    /* a copy: payloads live only in the callback */
	char *found_path;
	uint64_t found_off;
	int delay_warned;       /* a NOTE(delay warned) for want_id */
	int released;           /* a NOTE(released) for want_id */
	struct sched_ent *scheds;
	size_t nsched, sched_cap;
};

static void usage(void)
{
	fprintf(stderr,
		"usage: " TOOL_NAME " stats SPOOL_DIR\n"
		"       " TOOL_NAME " list [--all] SPOOL_DIR\n"
		"       " TOOL_NAME " show SPOOL_DIR QUEUE_ID\n"
		"       " TOOL_NAME " json SPOOL_DIR\n"
		"list shows live mail (held, deferred); --all adds the delivered,\n"
		"bounced, expired and finished (mixed) messages still on disk.\n");
}

static const char *rec_why(int why)
{
	switch (why) {
	case SPOOL_REC_AGAIN: return "record cut short";
	case SPOOL_REC_BAD_MAGIC: return "bad magic";
	case SPOOL_REC_BAD_VERSION: return "unknown record version";
	case SPOOL_REC_BAD_LENGTH: return "bad record length";
	case SPOOL_REC_BAD_CRC: return "CRC mismatch";
	case SPOOL_REC_BAD_PAYLOAD: return "bad payload";
	default: return "damaged";
	}
}

static const char *done_status_name(enum spool_done_status s)
{
	return spool_state_rcpt_name((uint8_t)s);
}

static const char *note_kind_name(enum spool_note_kind k)
{
	switch (k) {
	case SPOOL_NOTE_DELAY_WARNED: return "delay_warned";
	case SPOOL_NOTE_RELEASED: return "released";
	}
	return "unknown";
}

/* Addresses came from the network: show them printable, \xNN otherwise. */
static const char *printable(char *dst, size_t dstlen, const char *s,
		size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (o + 5 >= dstlen) {
			/* "..." right after what was written (never past
			 * room for it and the NUL): moving it further would
			 * leave bytes of an earlier call in between. */
			if (o > dstlen - 4)
				o = dstlen - 4;
			memcpy(dst + o, "...", 3);
			o += 3;
			break;
		}
		if (c >= 0x21 && c < 0x7f && c != '\\') {
			dst[o++] = (char)c;
		} else {
			int r = snprintf(dst + o, dstlen - o, "\\x%02X", c);
			o += (size_t)r; /* fits: o + 5 < dstlen */
		}
	}
	dst[o] = '\0';
	return dst;
}

static void iso_time(char *out, size_t outlen, uint64_t time_us)
{
	time_t t = (time_t)(time_us / US_PER_S);
	struct tm tm;
	char day[ISO_DAY_SIZE];

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
		int r = snprintf(out, outlen, "@%" PRIu64 "us", time_us);
		(void)r; /* a truncated fallback is still a hint */
		return;
	}
	int r = snprintf(out, outlen, "%s.%06uZ", day,
			(unsigned)(time_us % US_PER_S));
	if (r < 0 || (size_t)r >= outlen)
		out[0] = '\0'; /* cannot happen with ISO_TIME_SIZE */
}

/* JSON strings carry bytes, not text: '"' and '\\' are escaped, and bytes
 * below 0x20, 0x7F and every byte from 0x80 up (UTF-8 or not) are written
 * as \u00XX of the byte, so a reader gets the exact bytes back with
 * str.encode("latin-1"). */
static void json_str(const char *s, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04X", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void json_b64(const char *s, size_t n)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	static char out[B64_CHUNK / 3 * 4];
	const unsigned char *u = (const unsigned char *)s;

	putchar('"');
	while (n > 0) {
		size_t take = n < B64_CHUNK ? n : B64_CHUNK;
		size_t o = 0, i = 0;
		for (; i + 3 <= take; i += 3) {
			uint32_t v = ((uint32_t)u[i] << 16) |
				((uint32_t)u[i + 1] << 8) | u[i + 2];
			out[o++] = tab[v >> 18];
			out[o++] = tab[(v >> 12) & 63];
			out[o++] = tab[(v >> 6) & 63];
			out[o++] = tab[v & 63];
		}
		if (i < take) { /* only in the last chunk: B64_CHUNK % 3 == 0 */
			uint32_t v = (uint32_t)u[i] << 16;
			if (i + 1 < take)
				v |= (uint32_t)u[i + 1] << 8;
			out[o++] = tab[v >> 18];
			out[o++] = tab[(v >> 12) & 63];
			out[o++] = i + 1 < take ? tab[(v >> 6) & 63] : '=';
			out[o++] = '=';
		}
		fwrite(out, 1, o, stdout);
		u += take;
		n -= take;
	}
	putchar('"');
}

static void report_bad_payload(struct tool *t, uint64_t off, uint32_t len)
{
	fprintf(stderr, TOOL_NAME ": %s: offset %" PRIu64
			": %s (%" PRIu64 " bytes skipped)\n", t->path, off,
			rec_why(SPOOL_REC_BAD_PAYLOAD),
			(uint64_t)SPOOL_REC_HDR_SIZE + len);
	t->st.bad_regions++;
	t->damage = 1;
}

static void on_bad(void *arg, uint64_t off, uint64_t len, int why)
{
	struct tool *t = arg;
	if (t->pass == PASS_PRINT)
		return; /* said in the first pass */
	fprintf(stderr, TOOL_NAME ": %s: offset %" PRIu64
			": %s (%" PRIu64 " bytes skipped)\n", t->path, off,
			rec_why(why), len);
	t->damage = 1;
}

/* One line per message: queue id, state, arrival, size, sender, the
 * number of recipients and each recipient, followed by its own state in
 * parentheses where that differs from the message's. */
static void print_msg_list(const struct spool_rec_hdr *hdr,
		const struct spool_rec_msg *m, enum spool_state_kind kind,
		const uint8_t *rcpts)
{
	char qid[QID_TEXT_SIZE], when[ISO_TIME_SIZE], a[PRINTABLE_MAX];
	size_t cur = 0;

	spool_msgid_format(hdr->msgid, qid, sizeof qid);
	iso_time(when, sizeof when, hdr->time_us);
	printf("%s %s %s %zu <%s> %" PRIu32, qid, spool_state_name(kind),
			when, m->body_len,
			printable(a, sizeof a, m->sender.p, m->sender.len),
			m->nrcpt);
	for (uint32_t i = 0; i < m->nrcpt; i++) {
		struct spool_rec_addr r = spool_rec_msg_rcpt_next(m, &cur);
		printf(" <%s>", printable(a, sizeof a, r.p, r.len));
		/* Where the message's state does not say it: a done
		 * recipient of a live or a finished (mixed) message. */
		if (rcpts[i] != SPOOL_STATE_RCPT_PENDING &&
		    (spool_state_live(kind) || kind == SPOOL_STATE_FINISHED))
			printf("(%s)", spool_state_rcpt_name(rcpts[i]));
	}
	putchar('\n');
}

/* list's first pass, and show: what each record does to its message's
 * state (t->state). Only -ENOMEM is an error; the rest is what recovery
 * ignores too. */
static int state_track(struct tool *t, const struct spool_rec_hdr *hdr,
		const struct rec_view *v)
{
	int r = 0;

	switch (hdr->type) {
	case SPOOL_REC_MSG:
		r = spool_state_msg(t->state, hdr->msgid, v->m.nrcpt);
		break;
	case SPOOL_REC_DONE:
		r = spool_state_done(t->state, hdr->msgid, v->rcpt, v->status);
		break;
	case SPOOL_REC_SCHED:
		r = spool_state_sched(t->state, hdr->msgid);
		break;
	}
	return r == -ENOMEM ? r : 0;
}

/* list, second pass: each message once (its first copy), with its state;
 * finished ones only with --all. A message written between the passes is
 * known only from now: held, nothing done. */
static int list_print(struct tool *t, const struct spool_rec_hdr *hdr,
		const struct rec_view *v)
{
	enum spool_state_kind kind;
	const uint8_t *rcpts;

	if (hdr->type != SPOOL_REC_MSG)
		return 0;
	int r = spool_state_msg(t->state, hdr->msgid, v->m.nrcpt);
	if (r == -ENOMEM)
		return r;
	if (spool_state_visit(t->state, hdr->msgid) != 1 ||
	    spool_state_get(t->state, hdr->msgid, &kind, &rcpts, NULL) < 0)
		return 0; /* a later copy, or no recipients (damage) */
	if (spool_state_live(kind) || t->all)
		print_msg_list(hdr, &v->m, kind, rcpts);
	return 0;
}

static const char *rec_type_name(uint8_t type)
{
	switch (type) {
	case SPOOL_REC_MSG: return "MSG";
	case SPOOL_REC_DONE: return "DONE";
	case SPOOL_REC_NOTE: return "NOTE";
	case SPOOL_REC_SCHED: return "SCHED";
	}
	return "unknown";
}

static void print_json(struct tool *t, uint64_t off,
		const struct spool_rec_hdr *hdr, const struct rec_view *v)
{
	char qid[QID_TEXT_SIZE];
	const struct spool_rec_msg *m = &v->m;

	spool_msgid_format(hdr->msgid, qid, sizeof qid);
	printf("{\"qid\":\"%s\",\"type\":\"%s\",\"shard\":%u,\"segment\":",
			qid, rec_type_name(hdr->type), t->shard);
	json_str(t->path, strlen(t->path));
	printf(",\"offset\":%" PRIu64 ",\"time_us\":%" PRIu64
			",\"flags\":%u", off, hdr->time_us, hdr->flags);
	switch (hdr->type) {
	case SPOOL_REC_NOTE:
		printf(",\"kind\":\"%s\"}\n", note_kind_name(v->kind));
		return;
	case SPOOL_REC_DONE:
		printf(",\"rcpt\":%" PRIu32 ",\"status\":\"%s\"}\n", v->rcpt,
				done_status_name(v->status));
		return;
	case SPOOL_REC_SCHED:
		printf(",\"domain\":");
		json_str(v->dom, v->dom_len);
		printf(",\"next_us\":%" PRIu64 "}\n", v->next_us);
		return;
	}
	size_t cur = 0;
	printf(",\"sender\":");
	json_str(m->sender.p, m->sender.len);
	printf(",\"rcpts\":[");
	for (uint32_t i = 0; i < m->nrcpt; i++) {
		struct spool_rec_addr r = spool_rec_msg_rcpt_next(m, &cur);
		if (i > 0)
			putchar(',');
		json_str(r.p, r.len);
	}
	printf("],\"body_b64\":");
	json_b64(m->body, m->body_len);
	printf("}\n");
}

static int show_keep_msg(struct tool *t, uint64_t off,
		const struct spool_rec_hdr *hdr, const char *payload)
{
	if (t->found) /* a duplicate (compaction copy): keep the first */
		return 0;
	t->found_payload = malloc(hdr->length);
	t->found_path = strdup(t->path);
	if (t->found_payload == NULL || t->found_path == NULL)
		return -ENOMEM;
	memcpy(t->found_payload, payload, hdr->length);
	t->found_hdr = *hdr;
	t->found_off = off;
	t->found = 1;
	return 0;
}

/* Room for one more element of elem bytes in array v (n in use, *cap
 * allocated, first: the first allocation): v itself or its new place, NULL
 * when out of memory (v is then unchanged and still owned by the caller). */
static void *grow(void *v, size_t n, size_t *cap, size_t elem, size_t first)
{
	size_t c = *cap ? 2 * *cap : first;
	void *nv;

	if (n < *cap)
		return v;
	nv = realloc(v, c * elem);
	if (nv != NULL)
		*cap = c;
	return nv;
}

static int show_keep_sched(struct tool *t, const struct rec_view *v)
{
	struct sched_ent *s = NULL;

	/* Before the first copy of its MSG, recovery ignores it too. */
	if (!t->found)
		return 0;
	for (size_t i = 0; i < t->nsched && s == NULL; i++)
		if (t->scheds[i].len == v->dom_len &&
		    memcmp(t->scheds[i].dom, v->dom, v->dom_len) == 0)
			s = &t->scheds[i];
	if (s == NULL) {
		struct sched_ent *n = grow(t->scheds, t->nsched, &t->sched_cap,
				sizeof *n, SHOW_SCHEDS_MIN);
		if (n == NULL)
			return -ENOMEM;
		t->scheds = n;
		s = &t->scheds[t->nsched++];
		memcpy(s->dom, v->dom, v->dom_len); /* <= SPOOL_SCHED_DOMAIN_MAX */
		s->len = v->dom_len;
	}
	s->next_us = v->next_us; /* the last one in scan order wins */
	return 0;
}

/* Decode the payload of hdr's type into *v: 0, or -1 when it does not
 * parse. */
static int rec_decode(const struct spool_rec_hdr *hdr, const char *payload,
		struct rec_view *v)
{
	int r = SPOOL_REC_BAD_PAYLOAD;

	switch (hdr->type) {
	case SPOOL_REC_MSG:
		r = spool_rec_decode_msg(payload, hdr->length, &v->m);
		break;
	case SPOOL_REC_DONE:
		r = spool_rec_decode_done(payload, hdr->length, &v->rcpt, &v->status);
		break;
	case SPOOL_REC_NOTE:
		r = spool_rec_decode_note(payload, hdr->length, &v->kind);
		break;
	case SPOOL_REC_SCHED:
		r = spool_rec_decode_sched(payload, hdr->length, &v->next_us,
				&v->dom, &v->dom_len);
		break;
	}
	return r == SPOOL_REC_OK ? 0 : -1;
}

static void count_record(struct shard_stats *st, uint8_t type)
{
	st->records++;
	switch (type) {
	case SPOOL_REC_MSG: st->msg++; break;
	case SPOOL_REC_DONE: st->done++; break;
	case SPOOL_REC_NOTE: st->note++; break;
	case SPOOL_REC_SCHED: st->sched++; break;
	}
}

static int on_record(void *arg, uint64_t off, const struct spool_rec_hdr *hdr,
		const char *payload)
{
	struct tool *t = arg;
	struct rec_view v;

	memset(&v, 0, sizeof v);
	if (rec_decode(hdr, payload, &v) < 0) {
		if (t->pass != PASS_PRINT)
			report_bad_payload(t, off, hdr->length);
		return 0;
	}
	if (t->pass != PASS_PRINT)
		count_record(&t->st, hdr->type);
	switch (t->cmd) {
	case CMD_STATS:
		break;
	case CMD_LIST:
		return t->pass == PASS_STATE ? state_track(t, hdr, &v) :
			list_print(t, hdr, &v);
	case CMD_JSON:
		print_json(t, off, hdr, &v);
		break;
	case CMD_SHOW:
		if (hdr->msgid != t->want_id)
			break;
		if (state_track(t, hdr, &v) < 0)
			return -ENOMEM;
		switch (hdr->type) {
		case SPOOL_REC_MSG:
			return show_keep_msg(t, off, hdr, payload);
		case SPOOL_REC_NOTE:
			if (v.kind == SPOOL_NOTE_DELAY_WARNED)
				t->delay_warned = 1;
			else if (v.kind == SPOOL_NOTE_RELEASED)
				t->released = 1;
			return 0;
		case SPOOL_REC_SCHED:
			return show_keep_sched(t, &v);
		}
		return 0;
	}
	return 0;
}

static int is_segment_name(const char *name)
{
	size_t n = strlen(name);
	if (n != SEG_HEX_DIGITS + strlen(SEG_SUFFIX) ||
	    strcmp(name + SEG_HEX_DIGITS, SEG_SUFFIX) != 0)
		return 0;
	for (size_t i = 0; i < SEG_HEX_DIGITS; i++)
		if (!isdigit((unsigned char)name[i]) &&
		    !(name[i] >= 'a' && name[i] <= 'f'))
			return 0;
	return 1;
}

static int is_shard_name(const char *name, unsigned *shard)
{
	size_t n = strlen(name);
	if (n == 0 || n > SHARD_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)name[i]))
			return 0;
	unsigned long v = strtoul(name, NULL, 10);
	if (v > UINT16_MAX)
		return 0;
	*shard = (unsigned)v;
	return 1;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

struct name_list {
	char **v;
	size_t n, cap;
};

static int names_add(struct name_list *l, const char *name)
{
	char **v = grow(l->v, l->n, &l->cap, sizeof *v, NAMES_MIN);

	if (v == NULL)
		return -ENOMEM;
	l->v = v;
	if ((l->v[l->n] = strdup(name)) == NULL)
		return -ENOMEM;
	l->n++;
	return 0;
}

static void names_free(struct name_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

static int path_join(char *out, const char *dir, const char *name)
{
	int r = snprintf(out, PATH_MAX, "%s/%s", dir, name);
	if (r < 0 || r >= PATH_MAX) {
		fprintf(stderr, TOOL_NAME ": %s/%s: %s\n", dir, name,
				strerror(ENAMETOOLONG));
		return -ENAMETOOLONG;
	}
	return 0;
}

/*
 * Read the entries of dir that match want(); report every other entry as
 * skipped. Directory entries need want_dir (shards) or a regular file
 * (segments). The list comes back sorted by name.
 */
static int list_dir(const char *dir, int want_dir, struct name_list *out)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[PATH_MAX];
	int ret = 0;

	if (d == NULL) {
		ret = -errno;
		fprintf(stderr, TOOL_NAME ": %s: %s\n", dir, strerror(errno));
		return ret;
	}
	while ((errno = 0, e = readdir(d)) != NULL) {
		unsigned shard;
		struct stat st;
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		int ok = want_dir ? is_shard_name(e->d_name, &shard) :
			is_segment_name(e->d_name);
		if (path_join(path, dir, e->d_name) < 0)
			continue;
		if (ok && stat(path, &st) == 0)
			ok = want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode);
		if (!ok) {
			fprintf(stderr, TOOL_NAME ": %s: not a %s, skipped\n",
					path, want_dir ? "shard" : "segment");
			continue;
		}
		if (names_add(out, e->d_name) < 0) {
			ret = -ENOMEM;
			fprintf(stderr, TOOL_NAME ": %s\n", strerror(ENOMEM));
			goto fail;
		}
	}
	if (errno != 0) {
		ret = -errno;
		fprintf(stderr, TOOL_NAME ": %s: %s\n", dir, strerror(errno));
		goto fail;
	}
	if (out->n > 1)
		qsort(out->v, out->n, sizeof *out->v, cmp_str);
fail:
	closedir(d);
	return ret;
}

static int cmp_shard(const void *a, const void *b)
{
	unsigned long x = strtoul(*(char *const *)a, NULL, 10);
	unsigned long y = strtoul(*(char *const *)b, NULL, 10);
	return x < y ? -1 : x > y;
}

static void print_stats_row(const char *name, const struct shard_stats *s)
{
	printf("%-6s %8" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10" PRIu64
			" %8" PRIu64 " %8" PRIu64 " %14" PRIu64 " %5" PRIu64
			" %10" PRIu64 " %4" PRIu64 "\n",
			name, s->segments, s->records, s->msg, s->done,
			s->note, s->sched, s->bytes, s->torn_segments,
			s->torn_bytes, s->bad_regions);
}

/* Read the segments segs of shard directory dir, in order, through
 * on_record(); -ENOMEM, else 0 with other errors recorded in t->error. The
 * second pass of list reports nothing the first did, and skips a segment
 * unlinked in between (its messages were all done). */
static int scan_segments(struct tool *t, const char *dir,
		const struct name_list *segs)
{
	char path[PATH_MAX];

	for (size_t i = 0; i < segs->n; i++) {
		struct spool_read_result res;
		if (path_join(path, dir, segs->v[i]) < 0) {
			t->error = 1;
			continue;
		}
		t->path = path;
		int r = spool_read_segment(path, on_record, on_bad, t, &res);
		if (r == -ENOMEM)
			return r;
		if (t->pass == PASS_PRINT && r == -ENOENT)
			continue;
		if (r < 0) {
			fprintf(stderr, TOOL_NAME ": %s: %s\n", path,
					strerror(-r));
			t->error = 1;
			continue;
		}
		if (t->pass == PASS_PRINT)
			continue;
		t->st.segments++;
		/* Zeros after the last record are space written ahead of a
		 * segment's tail (store/spool_prezero.h): neither bytes of
		 * the spool nor a torn tail. */
		t->st.bytes += res.file_size - (res.zero_tail ? res.torn_bytes : 0);
		t->st.bad_regions += res.bad_regions;
		if (res.torn_bytes > 0 && !res.zero_tail) {
			/* Normal after a crash, or for a segment being
			 * written now: noted, not counted as damage. */
			fprintf(stderr, TOOL_NAME ": %s: offset %" PRIu64
					": torn tail (%" PRIu64
					" bytes ignored)\n", path,
					res.valid_end, res.torn_bytes);
			t->st.torn_segments++;
			t->st.torn_bytes += res.torn_bytes;
		}
	}
	return 0;
}

/* Read one shard directory; returns -errno only when nothing more can be
 * done (out of memory), after recording other errors in t->error. */
static int scan_shard(struct tool *t, const char *spool, const char *name,
		struct shard_stats *total)
{
	char dir[PATH_MAX];
	struct name_list segs = { 0 };
	int ret = 0;

	if (path_join(dir, spool, name) < 0) {
		t->error = 1;
		return 0;
	}
	t->shard = (unsigned)strtoul(name, NULL, 10);
	memset(&t->st, 0, sizeof t->st);
	ret = list_dir(dir, 0, &segs);
	if (ret == -ENOMEM)
		goto fail;
	if (ret < 0) {
		t->error = 1;
		ret = 0;
		goto fail;
	}
	if (t->cmd == CMD_LIST) {
		spool_state_clear(t->state);
		t->pass = PASS_STATE;
		ret = scan_segments(t, dir, &segs);
		if (ret < 0)
			goto fail;
		t->pass = PASS_PRINT;
	}
	ret = scan_segments(t, dir, &segs);
	if (ret < 0)
		goto fail;
	if (t->cmd == CMD_STATS)
		print_stats_row(name, &t->st);
	total->segments += t->st.segments;
	total->records += t->st.records;
	total->msg += t->st.msg;
	total->done += t->st.done;
	total->note += t->st.note;
	total->sched += t->st.sched;
	total->bytes += t->st.bytes;
	total->torn_segments += t->st.torn_segments;
	total->torn_bytes += t->st.torn_bytes;
	total->bad_regions += t->st.bad_regions;
fail:
	names_free(&segs);
	return ret;
}

static int parse_qid(const char *s, uint64_t *id)
{
	size_t n = strlen(s);
	if (n == 0 || n > QID_HEX_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return -EINVAL;
	*id = strtoull(s, NULL, 16);
	return 0;
}

static void show_print(struct tool *t)
{
	struct spool_rec_msg m;
	char qid[QID_TEXT_SIZE], when[ISO_TIME_SIZE], a[PRINTABLE_MAX];
	const struct spool_rec_hdr *h = &t->found_hdr;
	enum spool_state_kind kind;
	const uint8_t *rcpts;
	size_t cur = 0;

	/* Decoded once already in on_record(), and tracked in t->state:
	 * neither can fail on the copy. */
	if (spool_rec_decode_msg(t->found_payload, h->length, &m) !=
			SPOOL_REC_OK ||
	    spool_state_get(t->state, h->msgid, &kind, &rcpts, NULL) < 0)
		return;
	spool_msgid_format(h->msgid, qid, sizeof qid);
	iso_time(when, sizeof when, h->time_us);
	printf("queue_id: %s\n", qid);
	printf("state: %s\n", spool_state_name(kind));
	printf("segment: %s offset %" PRIu64 "\n", t->found_path,
			t->found_off);
	printf("time: %s\n", when);
	printf("flags:%s%s%s%s\n", h->flags & SPOOL_MSG_8BITMIME ?
			" 8BITMIME" : "", h->flags & SPOOL_MSG_SMTPUTF8 ?
			" SMTPUTF8" : "", h->flags & SPOOL_MSG_HELD ? " HELD" : "",
			h->flags == 0 ? " none" : "");
	if (h->flags & SPOOL_MSG_HELD)
		printf("quarantine: %s\n", t->released ? "released" : "held");
	printf("size: %zu\n", m.body_len);
	printf("delay_warned: %s\n", t->delay_warned ? "yes" : "no");
	for (size_t i = 0; i < t->nsched; i++) {
		const struct sched_ent *e = &t->scheds[i];
		if (e->next_us == 0)
			(void)snprintf(when, sizeof when, "at once"); /* fits */
		else
			iso_time(when, sizeof when, e->next_us);
		printf("next_attempt: %s %s\n", e->len > 0 ? printable(a,
				sizeof a, e->dom, e->len) : "(no domain)", when);
	}
	printf("sender: <%s>\n", printable(a, sizeof a, m.sender.p,
			m.sender.len));
	for (uint32_t i = 0; i < m.nrcpt; i++) {
		struct spool_rec_addr r = spool_rec_msg_rcpt_next(&m, &cur);
		printf("recipient: <%s> %s\n",
				printable(a, sizeof a, r.p, r.len),
				spool_state_rcpt_name(rcpts[i]));
	}
	putchar('\n');

	/* Undo the dot-stuffing of RFC 5321 4.5.2: a line that was stored
	 * as ".." began with "." when the client sent it. */
	const char *b = m.body, *end = m.body + m.body_len;
	while (b < end) {
		const char *nl = memchr(b, '\n', (size_t)(end - b));
		const char *stop = nl != NULL ? nl + 1 : end;
		if (stop - b >= 2 && b[0] == '.' && b[1] == '.')
			b++;
		fwrite(b, 1, (size_t)(stop - b), stdout);
		b = stop;
	}
}

/* The command and its arguments into t; -1 (usage already said) when they
 * do not fit. */
static int parse_args(int argc, char **argv, struct tool *t)
{
	const char *pos[2] = { NULL, NULL };
	int npos = 0;

	if (argc < 3) {
		usage();
		return -1;
	}
	const char *cmd = argv[1];
	/* Operands, and list's --all before or after them. */
	for (int i = 2; i < argc; i++) {
		if (strcmp(cmd, "list") == 0 && strcmp(argv[i], "--all") == 0)
			t->all = 1;
		else if (npos < 2)
			pos[npos++] = argv[i];
		else
			npos = 3; /* too many */
	}
	if (strcmp(cmd, "stats") == 0 && npos == 1)
		t->cmd = CMD_STATS;
	else if (strcmp(cmd, "list") == 0 && npos == 1)
		t->cmd = CMD_LIST;
	else if (strcmp(cmd, "json") == 0 && npos == 1)
		t->cmd = CMD_JSON;
	else if (strcmp(cmd, "show") == 0 && npos == 2)
		t->cmd = CMD_SHOW;
	else {
		usage();
		return -1;
	}
	t->spool_dir = pos[0];
	t->qid_arg = pos[1];
	if (t->cmd == CMD_SHOW && parse_qid(t->qid_arg, &t->want_id) < 0) {
		fprintf(stderr, TOOL_NAME ": %s: not a queue id\n", t->qid_arg);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static char outbuf[OUT_BUF_SIZE];
	struct tool t = { 0 };
	struct name_list shards = { 0 };
	struct shard_stats total = { 0 };
	int status = TOOL_EXIT_OK;

	if (parse_args(argc, argv, &t) < 0)
		return TOOL_EXIT_USAGE;
	const char *spool = t.spool_dir;
	(void)setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
	if ((t.cmd == CMD_LIST || t.cmd == CMD_SHOW) &&
	    (t.state = spool_state_new()) == NULL) {
		fprintf(stderr, TOOL_NAME ": %s\n", strerror(ENOMEM));
		return TOOL_EXIT_ERR;
	}

	if (list_dir(spool, 1, &shards) < 0) {
		status = TOOL_EXIT_ERR;
		goto fail;
	}
	if (shards.n > 1)
		qsort(shards.v, shards.n, sizeof *shards.v, cmp_shard);
	if (t.cmd == CMD_STATS)
		printf("%-6s %8s %10s %10s %10s %8s %8s %14s %5s %10s %4s\n",
				"shard", "segments", "records", "msg", "done",
				"note", "sched", "bytes",
				"torn", "torn_bytes", "bad");
	for (size_t i = 0; i < shards.n; i++) {
		unsigned shard;
		/* show: the queue id names its shard; skip the others. */
		if (t.cmd == CMD_SHOW && is_shard_name(shards.v[i], &shard) &&
		    shard != spool_msgid_shard(t.want_id))
			continue;
		if (scan_shard(&t, spool, shards.v[i], &total) < 0) {
			fprintf(stderr, TOOL_NAME ": %s\n", strerror(ENOMEM));
			status = TOOL_EXIT_ERR;
			goto fail;
		}
	}
	if (t.cmd == CMD_STATS)
		print_stats_row("total", &total);
	if (t.cmd == CMD_SHOW) {
		if (t.found) {
			show_print(&t);
		} else {
			fprintf(stderr, TOOL_NAME ": %s: not found\n",
					t.qid_arg);
			t.error = 1;
		}
	}
	if (t.error)
		status = TOOL_EXIT_ERR;
	else if (t.damage)
		status = TOOL_EXIT_DAMAGE;
fail:
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, TOOL_NAME ": stdout: %s\n", strerror(errno));
		status = TOOL_EXIT_ERR;
	}
	names_free(&shards);
	free(t.found_payload);
	free(t.found_path);
	free(t.scheds);
	spool_state_free(t.state);
	return status;
}
