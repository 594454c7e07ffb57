/* SPDX-License-Identifier: MIT */
/*
 * milter_codec: the milter protocol's bytes (see milter_codec.h). Frames
 * are built in the caller's buffer and read through a bounded reader;
 * every reply is checked field by field before the session sees it: the
 * filter is a peer, its bytes are untrusted input like a client's.
 */
#include "proto/milter_codec.h"

#include <string.h>

#include "core/log.h"
#include "proto/smtp_reply.h"

/* Octets of the OPTNEG reply's fixed part: version, actions, protocol. */
#define MILTER_OPTNEG_FIXED 12u

static void milter_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t milter_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
		(uint32_t)p[3];
}

/* ---- Encoders ---- */

/* One frame being written: what does not fit is counted, not written, so
 * the verdict (too big for the protocol, or for the buffer) does not
 * depend on the buffer's size. */
struct milter_writer {
	uint8_t *out;
	size_t cap;
	size_t len;   /* octets the frame has so far, written or not */
	int inval;
};

static void milter_w_start(struct milter_writer *w, uint8_t *out, size_t cap,
		uint8_t cmd)
{
	w->out = out;
	w->cap = cap;
	w->len = MILTER_LEN_OCTETS + 1;
	w->inval = 0;
	if (cap >= w->len)
		out[MILTER_LEN_OCTETS] = cmd;
}

static void milter_w_bytes(struct milter_writer *w, const void *p, size_t n)
{
	if (n > MILTER_CMD_MAX) {
		w->inval = 1;
		return;
	}
	if (n > 0 && w->len <= w->cap && n <= w->cap - w->len)
		memcpy(w->out + w->len, p, n);
	w->len += n;
}

static void milter_w_octet(struct milter_writer *w, uint8_t c)
{
	milter_w_bytes(w, &c, 1);
}

/* A string and its NUL; one with a NUL inside cannot be carried. */
static void milter_w_str(struct milter_writer *w, struct milter_str s)
{
	if (s.len > 0 && memchr(s.p, '\0', s.len) != NULL)
		w->inval = 1;
	milter_w_bytes(w, s.p, s.len);
	milter_w_octet(w, '\0');
}

static ssize_t milter_w_finish(struct milter_writer *w)
{
	size_t data = w->len - MILTER_LEN_OCTETS - 1;

	if (w->inval || data > MILTER_DATA_MAX)
		return -MILTER_E_INVAL;
	if (w->len > w->cap)
		return -MILTER_E_NOSPACE;
	milter_put32(w->out, (uint32_t)(w->len - MILTER_LEN_OCTETS));
	return (ssize_t)w->len;
}

ssize_t milter_encode_optneg(uint8_t *out, size_t cap, uint32_t version,
		uint32_t actions, uint32_t proto)
{
	struct milter_writer w;
	uint8_t v[MILTER_OPTNEG_FIXED];

	milter_put32(v, version);
	milter_put32(v + 4, actions);
	milter_put32(v + 8, proto);
	milter_w_start(&w, out, cap, MILTER_CMD_OPTNEG);
	milter_w_bytes(&w, v, sizeof(v));
	return milter_w_finish(&w);
}

ssize_t milter_encode_macro(uint8_t *out, size_t cap, enum milter_cmd stage,
		const struct milter_str *kv, size_t n)
{
	struct milter_writer w;
	size_t i;

	milter_w_start(&w, out, cap, MILTER_CMD_MACRO);
	milter_w_octet(&w, (uint8_t)stage);
	for (i = 0; i < 2 * n; i++)
		milter_w_str(&w, kv[i]);
	return milter_w_finish(&w);
}

ssize_t milter_encode_connect(uint8_t *out, size_t cap, struct milter_str host,
		char family, uint16_t port, struct milter_str addr)
{
	struct milter_writer w;
	uint8_t pb[2] = { (uint8_t)(port >> 8), (uint8_t)port };

	milter_w_start(&w, out, cap, MILTER_CMD_CONNECT);
	milter_w_str(&w, host);
	milter_w_octet(&w, (uint8_t)family);
	switch (family) {
	case MILTER_FAMILY_UNKNOWN:
		/* libmilter reads neither port nor address for 'U'. */
		break;
	case MILTER_FAMILY_UNIX:
	case MILTER_FAMILY_INET:
	case MILTER_FAMILY_INET6:
		milter_w_bytes(&w, pb, sizeof(pb));
		milter_w_str(&w, addr);
		break;
	default:
		w.inval = 1;
	}
	return milter_w_finish(&w);
}

static ssize_t milter_encode_one(uint8_t *out, size_t cap, enum milter_cmd cmd,
		struct milter_str s)
{
	struct milter_writer w;

	milter_w_start(&w, out, cap, (uint8_t)cmd);
	milter_w_str(&w, s);
	return milter_w_finish(&w);
}

ssize_t milter_encode_helo(uint8_t *out, size_t cap, struct milter_str helo)
{
	return milter_encode_one(out, cap, MILTER_CMD_HELO, helo);
}

ssize_t milter_encode_unknown(uint8_t *out, size_t cap, struct milter_str line)
{
	return milter_encode_one(out, cap, MILTER_CMD_UNKNOWN, line);
}

/* MAIL and RCPT: "<addr>" NUL, then each ESMTP argument NUL (what Postfix
 * sends: the command's arguments split at spaces). */
static ssize_t milter_encode_env(uint8_t *out, size_t cap, enum milter_cmd cmd,
		struct milter_str addr, const struct milter_str *args, size_t nargs)
{
	struct milter_writer w;
	size_t i;

	milter_w_start(&w, out, cap, (uint8_t)cmd);
	milter_w_octet(&w, '<');
	if (addr.len > 0 && memchr(addr.p, '\0', addr.len) != NULL)
		w.inval = 1;
	milter_w_bytes(&w, addr.p, addr.len);
	milter_w_bytes(&w, ">", 2); /* with its NUL */
	for (i = 0; i < nargs; i++)
		milter_w_str(&w, args[i]);
	return milter_w_finish(&w);
}

ssize_t milter_encode_mail(uint8_t *out, size_t cap, struct milter_str addr,
		const struct milter_str *args, size_t nargs)
{
	return milter_encode_env(out, cap, MILTER_CMD_MAIL, addr, args, nargs);
}

ssize_t milter_encode_rcpt(uint8_t *out, size_t cap, struct milter_str addr,
		const struct milter_str *args, size_t nargs)
{
	return milter_encode_env(out, cap, MILTER_CMD_RCPT, addr, args, nargs);
}

ssize_t milter_encode_header(uint8_t *out, size_t cap, struct milter_str name,
		struct milter_str value)
{
	struct milter_writer w;

	milter_w_start(&w, out, cap, MILTER_CMD_HEADER);
	milter_w_str(&w, name);
	milter_w_str(&w, value);
	return milter_w_finish(&w);
}

ssize_t milter_encode_body(uint8_t *out, size_t cap, const void *chunk,
		size_t len)
{
	struct milter_writer w;

	milter_w_start(&w, out, cap, MILTER_CMD_BODY);
	if (len > MILTER_CHUNK_MAX)
		w.inval = 1;
	else
		milter_w_bytes(&w, chunk, len);
	return milter_w_finish(&w);
}

ssize_t milter_encode_simple(uint8_t *out, size_t cap, enum milter_cmd cmd)
{
	struct milter_writer w;

	milter_w_start(&w, out, cap, (uint8_t)cmd);
	switch (cmd) {
	case MILTER_CMD_DATA:
	case MILTER_CMD_EOH:
	case MILTER_CMD_BODYEOB:
	case MILTER_CMD_ABORT:
	case MILTER_CMD_QUIT:
	case MILTER_CMD_QUIT_NC:
		break;
	default:
		w.inval = 1;
	}
	return milter_w_finish(&w);
}

ssize_t milter_encode_frame(uint8_t *out, size_t cap, uint8_t cmd,
		const void *data, size_t len)
{
	struct milter_writer w;

	milter_w_start(&w, out, cap, cmd);
	if (len > MILTER_FRAME_MAX - 1)
		w.inval = 1;
	else
		milter_w_bytes(&w, data, len);
	return milter_w_finish(&w);
}

/* ---- Reader ---- */

void milter_reader_init(struct milter_reader *rd, uint8_t *buf, size_t max)
{
	if (buf == NULL || max < MILTER_FRAME_MIN)
		panic("reader buffer %zu < %u", max, MILTER_FRAME_MIN);
	rd->buf = buf;
	rd->max = max;
	milter_reader_reset(rd);
}

void milter_reader_reset(struct milter_reader *rd)
{
	rd->nlen = 0;
	rd->want = 0;
	rd->have = 0;
	rd->failed = MILTER_OK;
}

size_t milter_reader_pending(const struct milter_reader *rd)
{
	return rd->nlen + rd->have;
}

static size_t milter_reader_fail(struct milter_reader *rd, enum milter_err e,
		size_t used, enum milter_read_status *st, enum milter_err *err)
{
	rd->failed = (int)e;
	*st = MILTER_READ_ERROR;
	*err = e;
	return used;
}

size_t milter_reader_feed(struct milter_reader *rd, const uint8_t *p, size_t n,
		enum milter_read_status *st, struct milter_frame *fr,
		enum milter_err *err)
{
	size_t used = 0, k;

	*err = MILTER_OK;
	if (rd->failed != MILTER_OK)
		return milter_reader_fail(rd, (enum milter_err)rd->failed, 0, st, err);
	while (rd->nlen < MILTER_LEN_OCTETS && used < n) {
		rd->lenb[rd->nlen++] = p[used++];
		if (rd->nlen < MILTER_LEN_OCTETS)
			continue;
		/* Refused on its length alone: nothing of it is buffered. */
		rd->want = milter_get32(rd->lenb);
		if (rd->want == 0)
			return milter_reader_fail(rd, MILTER_E_FRAME_EMPTY, used, st, err);
		if (rd->want > rd->max)
			return milter_reader_fail(rd, MILTER_E_FRAME_LONG, used, st, err);
	}
	*st = MILTER_READ_AGAIN;
	if (rd->nlen < MILTER_LEN_OCTETS || used == n)
		return used;
	if (rd->have == 0 && n - used >= rd->want) {
		/* Whole in the input: no copy. */
		fr->cmd = p[used];
		fr->data = p + used + 1;
		fr->len = rd->want - 1;
		used += rd->want;
	} else {
		k = rd->want - rd->have < n - used ? rd->want - rd->have : n - used;
		memcpy(rd->buf + rd->have, p + used, k);
		rd->have += k;
		used += k;
		if (rd->have < rd->want)
			return used;
		fr->cmd = rd->buf[0];
		fr->data = rd->buf + 1;
		fr->len = rd->want - 1;
	}
	rd->nlen = 0;
	rd->want = 0;
	rd->have = 0;
	*st = MILTER_READ_FRAME;
	return used;
}

/* ---- Decoders ---- */

/* The NUL-terminated string at d[*pos..n); *pos moves past its NUL. */
static enum milter_err milter_take_str(const uint8_t *d, size_t n, size_t *pos,
		struct milter_str *s)
{
	const uint8_t *z;

	if (*pos >= n)
		return MILTER_E_SHORT;
	z = memchr(d + *pos, '\0', n - *pos);
	if (z == NULL)
		return MILTER_E_NOTERM;
	s->p = (const char *)d + *pos;
	s->len = (size_t)(z - (d + *pos));
	*pos += s->len + 1;
	return MILTER_OK;
}

static int milter_printable(const struct milter_str *s, int space_ok)
{
	size_t i;

	for (i = 0; i < s->len; i++) {
		unsigned char c = (unsigned char)s->p[i];

		if (c < 0x20 || c > 0x7e || (c == ' ' && !space_ok))
			return 0;
	}
	return 1;
}

/* An address or ESMTP args: no control octet (CR/LF would inject an
 * envelope line); 8-bit passes for SMTPUTF8. */
static int milter_addr_ok(const struct milter_str *s)
{
	size_t i;

	for (i = 0; i < s->len; i++) {
		unsigned char c = (unsigned char)s->p[i];

		if (c < 0x20 || c == 0x7f)
			return 0;
	}
	return 1;
}

/* RFC 5322 2.2 field name: ftext is %d33-57 / %d59-126. */
static int milter_hdr_name_ok(const struct milter_str *s)
{
	size_t i;

	if (s->len == 0 || s->len > MILTER_HDR_LINE_MAX)
		return 0;
	for (i = 0; i < s->len; i++) {
		unsigned char c = (unsigned char)s->p[i];

		if (c < 33 || c > 126 || c == ':')
			return 0;
	}
	return 1;
}

/* A value that cannot break out of its header: folding only (CRLF or LF
 * followed by SP/HT), no other CR, LF, NUL or control octet; each
 * physical line (the first one with "Name: ") at most MILTER_HDR_LINE_MAX. */
static int milter_hdr_value_ok(const struct milter_str *name,
		const struct milter_str *v)
{
	size_t i, line = name->len + 2; /* octets on the physical line */

	for (i = 0; i < v->len; i++) {
		unsigned char c = (unsigned char)v->p[i];

		if (c == '\r') {
			if (i + 1 >= v->len || v->p[i + 1] != '\n')
				return 0;
			continue;
		}
		if (c == '\n') {
			if (i + 1 >= v->len || (v->p[i + 1] != ' ' && v->p[i + 1] != '\t'))
				return 0;
			line = 0;
			continue;
		}
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return 0;
		if (++line > MILTER_HDR_LINE_MAX)
			return 0;
	}
	return 1;
}

/* t[0..n) starts like an RFC 3463 code of some class (2, 4, 5)? */
static int milter_looks_enh(const char *t, size_t n)
{
	if (n < 2 || t[1] != '.' || t[0] < '2' || t[0] > '5')
		return 0;
	return smtp_reply_enh_len(t, n, (t[0] - '0') * 100) > 0;
}

/* One line "ddd[- ]text" of a REPLYCODE; last says which separator. */
static enum milter_err milter_rc_line(const char *l, size_t n, int last,
		struct milter_replycode *rc)
{
	struct milter_str t;
	int code;
	size_t e;

	if (n < 3 || n > MILTER_REPLY_LINE_MAX)
		return MILTER_E_REPLYCODE;
	if (l[0] < '4' || l[0] > '5' || l[1] < '0' || l[1] > '9' ||
	    l[2] < '0' || l[2] > '9')
		return MILTER_E_REPLYCODE;
	code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	if (rc->lines > 0 && code != rc->code)
		return MILTER_E_REPLYCODE;
	if (n > 3 && l[3] != (last ? ' ' : '-'))
		return MILTER_E_REPLYCODE;
	if (n == 3 && !last)
		return MILTER_E_REPLYCODE;
	t.p = l + (n > 3 ? 4 : 3);
	t.len = n - (size_t)(t.p - l);
	for (e = 0; e < t.len; e++)
		if (((unsigned char)t.p[e] < 0x20 && t.p[e] != '\t') ||
		    (unsigned char)t.p[e] > 0x7e)
			return MILTER_E_REPLYCODE;
	e = smtp_reply_enh_len(t.p, t.len, code);
	/* "550 4.7.1": an enhanced code of another class than the reply's
	 * (RFC 2034 3) is refused, not read as text. */
	if (e == 0 && milter_looks_enh(t.p, t.len))
		return MILTER_E_REPLYCODE;
	if (rc->lines == 0) {
		rc->code = code;
		rc->enh.p = t.p;
		rc->enh.len = e;
		while (e < t.len && t.p[e] == ' ')
			e++;
		rc->text.p = t.p + e;
		rc->text.len = t.len - e;
	}
	rc->lines++;
	return MILTER_OK;
}

/* REPLYCODE: the text NUL-terminated, lines CRLF-joined; one trailing
 * CRLF is tolerated (and not kept). */
static enum milter_err milter_decode_replycode(const uint8_t *d, size_t n,
		struct milter_replycode *rc)
{
	struct milter_str s;
	size_t pos = 0, at, end;
	const char *crlf;
	enum milter_err e;

	if ((e = milter_take_str(d, n, &pos, &s)) != MILTER_OK)
		return e;
	if (pos != n)
		return MILTER_E_TRAILING;
	if (s.len >= 2 && s.p[s.len - 2] == '\r' && s.p[s.len - 1] == '\n')
		s.len -= 2;
	memset(rc, 0, sizeof(*rc));
	rc->raw = s;
	for (at = 0;;) {
		crlf = NULL;
		for (end = at; end < s.len; end++) {
			if (s.p[end] == '\r' && end + 1 < s.len && s.p[end + 1] == '\n') {
				crlf = s.p + end;
				break;
			}
			if (s.p[end] == '\r' || s.p[end] == '\n')
				return MILTER_E_REPLYCODE; /* bare CR or LF */
		}
		if (rc->lines >= MILTER_REPLY_LINES_MAX)
			return MILTER_E_REPLYCODE;
		e = milter_rc_line(s.p + at, end - at, crlf == NULL, rc);
		if (e != MILTER_OK)
			return e;
		if (crlf == NULL)
			return MILTER_OK;
		at = end + 2;
	}
}

static enum milter_err milter_decode_hdr(const uint8_t *d, size_t n,
		int indexed, struct milter_hdr *h)
{
	size_t pos = 0;
	enum milter_err e;

	h->index = 0;
	if (indexed) {
		if (n < 4)
			return MILTER_E_SHORT;
		h->index = milter_get32(d);
		pos = 4;
	}
	if ((e = milter_take_str(d, n, &pos, &h->name)) != MILTER_OK ||
	    (e = milter_take_str(d, n, &pos, &h->value)) != MILTER_OK)
		return e;
	if (pos != n)
		return MILTER_E_TRAILING;
	if (!milter_hdr_name_ok(&h->name))
		return MILTER_E_HDR_NAME;
	if (!milter_hdr_value_ok(&h->name, &h->value))
		return MILTER_E_HDR_VALUE;
	return MILTER_OK;
}

/* ADDRCPT, DELRCPT: one address; ADDRCPT_PAR, CHGFROM: an address and
 * optional args. */
static enum milter_err milter_decode_addr(const uint8_t *d, size_t n,
		int with_args, struct milter_addr *a)
{
	size_t pos = 0;
	enum milter_err e;

	a->args.p = NULL;
	a->args.len = 0;
	if ((e = milter_take_str(d, n, &pos, &a->addr)) != MILTER_OK)
		return e;
	if (with_args && pos < n &&
	    (e = milter_take_str(d, n, &pos, &a->args)) != MILTER_OK)
		return e;
	if (pos != n)
		return MILTER_E_TRAILING;
	if (a->addr.len == 0 || !milter_addr_ok(&a->addr) || !milter_addr_ok(&a->args))
		return MILTER_E_ADDR;
	return MILTER_OK;
}

static enum milter_err milter_decode_optneg(const uint8_t *d, size_t n,
		struct milter_optneg *o)
{
	size_t pos = MILTER_OPTNEG_FIXED;
	struct milter_str s;
	uint32_t stage;
	enum milter_err e;

	memset(o, 0, sizeof(*o));
	if (n < MILTER_OPTNEG_FIXED)
		return MILTER_E_SHORT;
	o->version = milter_get32(d);
	o->actions = milter_get32(d + 4);
	o->proto = milter_get32(d + 8);
	/* SETSYMLIST: (stage, "names" NUL) pairs to the end. */
	while (pos < n) {
		if (n - pos < 4)
			return MILTER_E_SHORT;
		stage = milter_get32(d + pos);
		pos += 4;
		if ((e = milter_take_str(d, n, &pos, &s)) != MILTER_OK)
			return e;
		if (!milter_printable(&s, 1))
			return MILTER_E_TEXT;
		if (stage < MILTER_STAGES)
			o->symlist[stage] = s;
	}
	return MILTER_OK;
}

enum milter_err milter_decode_reply(const struct milter_frame *fr,
		struct milter_reply *r)
{
	size_t pos = 0;
	enum milter_err e;

	memset(r, 0, sizeof(*r));
	r->kind = (enum milter_reply_kind)fr->cmd;
	switch (fr->cmd) {
	case MILTER_R_ACCEPT:
	case MILTER_R_CONTINUE:
	case MILTER_R_DISCARD:
	case MILTER_R_PROGRESS:
	case MILTER_R_REJECT:
	case MILTER_R_SKIP:
	case MILTER_R_TEMPFAIL:
	case MILTER_R_SHUTDOWN:
	case MILTER_R_CONNFAIL:
		/* Postfix: "reply ... was followed by N data bytes" is an error. */
		return fr->len == 0 ? MILTER_OK : MILTER_E_TRAILING;
	case MILTER_R_REPLYCODE:
		return milter_decode_replycode(fr->data, fr->len, &r->u.rc);
	case MILTER_R_ADDHEADER:
		return milter_decode_hdr(fr->data, fr->len, 0, &r->u.hdr);
	case MILTER_R_INSHEADER:
	case MILTER_R_CHGHEADER:
		return milter_decode_hdr(fr->data, fr->len, 1, &r->u.hdr);
	case MILTER_R_ADDRCPT:
	case MILTER_R_DELRCPT:
		return milter_decode_addr(fr->data, fr->len, 0, &r->u.addr);
	case MILTER_R_ADDRCPT_PAR:
	case MILTER_R_CHGFROM:
		return milter_decode_addr(fr->data, fr->len, 1, &r->u.addr);
	case MILTER_R_QUARANTINE:
		/* libmilter's smfi_quarantine wants a non-empty reason. */
		if ((e = milter_take_str(fr->data, fr->len, &pos, &r->u.reason)) != MILTER_OK)
			return e;
		if (pos != fr->len)
			return MILTER_E_TRAILING;
		return r->u.reason.len > 0 && milter_printable(&r->u.reason, 1) ?
			MILTER_OK : MILTER_E_TEXT;
	case MILTER_R_REPLBODY:
		r->u.body.p = (const char *)fr->data;
		r->u.body.len = fr->len;
		return MILTER_OK;
	case MILTER_R_OPTNEG:
		return milter_decode_optneg(fr->data, fr->len, &r->u.optneg);
	case MILTER_R_SETSYMLIST:
		return MILTER_E_UNEXPECTED; /* only inside OPTNEG */
	default:
		return MILTER_E_UNKNOWN;
	}
}

/* ---- Session rules ---- */

static uint32_t milter_proto_mask(uint32_t version)
{
	if (version >= 6)
		return MILTER_P_V6_MASK;
	if (version >= 4)
		return MILTER_P_V4_MASK;
	if (version == 3)
		return MILTER_P_V3_MASK;
	return MILTER_P_V2_MASK;
}

enum milter_err milter_negotiate(const struct milter_neg *offer,
		const struct milter_optneg *reply, struct milter_neg *agreed)
{
	uint32_t extra;

	if (reply->version < MILTER_VERSION_MIN || reply->version > offer->version)
		return MILTER_E_VERSION;
	if ((reply->actions & ~offer->actions) != 0)
		return MILTER_E_ACTIONS;
	extra = reply->proto & ~offer->proto;
	if ((extra & (MILTER_P_NR_MASK | MILTER_P_SKIP | MILTER_P_RCPT_REJ)) != 0)
		return MILTER_E_PROTO;
	agreed->version = reply->version;
	agreed->actions = reply->actions;
	agreed->proto = reply->proto & offer->proto & milter_proto_mask(reply->version);
	return MILTER_OK;
}

/* Per command: the flag that says "do not send it" and the one that says
 * "it is not answered" (0: none). */
static const struct {
	uint8_t cmd;
	uint32_t no;
	uint32_t nr;
} milter_cmd_flags[] = {
	{ MILTER_CMD_CONNECT, MILTER_P_NOCONNECT, MILTER_P_NR_CONN },
	{ MILTER_CMD_HELO, MILTER_P_NOHELO, MILTER_P_NR_HELO },
	{ MILTER_CMD_MAIL, MILTER_P_NOMAIL, MILTER_P_NR_MAIL },
	{ MILTER_CMD_RCPT, MILTER_P_NORCPT, MILTER_P_NR_RCPT },
	{ MILTER_CMD_DATA, MILTER_P_NODATA, MILTER_P_NR_DATA },
	{ MILTER_CMD_HEADER, MILTER_P_NOHDRS, MILTER_P_NR_HDR },
	{ MILTER_CMD_EOH, MILTER_P_NOEOH, MILTER_P_NR_EOH },
	{ MILTER_CMD_BODY, MILTER_P_NOBODY, MILTER_P_NR_BODY },
	{ MILTER_CMD_UNKNOWN, MILTER_P_NOUNKNOWN, MILTER_P_NR_UNKN },
};

static int milter_cmd_index(enum milter_cmd cmd)
{
	size_t i;

	for (i = 0; i < sizeof(milter_cmd_flags) / sizeof(milter_cmd_flags[0]); i++)
		if (milter_cmd_flags[i].cmd == (uint8_t)cmd)
			return (int)i;
	return -1;
}

int milter_cmd_skipped(enum milter_cmd cmd, uint32_t proto)
{
	int i = milter_cmd_index(cmd);

	return i >= 0 && (proto & milter_cmd_flags[i].no) != 0;
}

int milter_cmd_wants_reply(enum milter_cmd cmd, uint32_t proto)
{
	int i = milter_cmd_index(cmd);

	if (cmd == MILTER_CMD_OPTNEG || cmd == MILTER_CMD_BODYEOB)
		return 1;
	return i >= 0 && (proto & milter_cmd_flags[i].nr) == 0;
}

int milter_reply_final(enum milter_reply_kind kind)
{
	switch (kind) {
	case MILTER_R_ACCEPT:
	case MILTER_R_CONTINUE:
	case MILTER_R_REJECT:
	case MILTER_R_TEMPFAIL:
	case MILTER_R_DISCARD:
	case MILTER_R_REPLYCODE:
	case MILTER_R_SKIP:
	case MILTER_R_SHUTDOWN:
	case MILTER_R_CONNFAIL:
	case MILTER_R_OPTNEG:
		return 1;
	default:
		return 0;
	}
}

/* The action flag a modification needs; 0 for the others. */
static uint32_t milter_reply_action(enum milter_reply_kind kind)
{
	switch (kind) {
	case MILTER_R_ADDHEADER:
	case MILTER_R_INSHEADER:
		return MILTER_F_ADDHDRS;
	case MILTER_R_CHGHEADER:
		return MILTER_F_CHGHDRS;
	case MILTER_R_ADDRCPT:
		return MILTER_F_ADDRCPT;
	case MILTER_R_ADDRCPT_PAR:
		return MILTER_F_ADDRCPT_PAR;
	case MILTER_R_DELRCPT:
		return MILTER_F_DELRCPT;
	case MILTER_R_CHGFROM:
		return MILTER_F_CHGFROM;
	case MILTER_R_REPLBODY:
		return MILTER_F_CHGBODY;
	case MILTER_R_QUARANTINE:
		return MILTER_F_QUARANTINE;
	default:
		return 0;
	}
}

enum milter_err milter_reply_check(enum milter_cmd after,
		enum milter_reply_kind kind, const struct milter_neg *agreed)
{
	uint32_t need = milter_reply_action(kind);

	if ((after == MILTER_CMD_OPTNEG) != (kind == MILTER_R_OPTNEG))
		return MILTER_E_UNEXPECTED;
	if (kind == MILTER_R_OPTNEG)
		return MILTER_OK;
	if (!milter_cmd_wants_reply(after, 0))
		return MILTER_E_UNEXPECTED; /* MACRO, ABORT, QUIT: no reply */
	if (need != 0 || kind == MILTER_R_PROGRESS) {
		if (after != MILTER_CMD_BODYEOB)
			return MILTER_E_UNEXPECTED;
		return (agreed->actions & need) == need ? MILTER_OK :
			MILTER_E_NOT_NEGOTIATED;
	}
	if (kind == MILTER_R_SKIP) {
		if (after != MILTER_CMD_BODY)
			return MILTER_E_UNEXPECTED;
		return agreed->proto & MILTER_P_SKIP ? MILTER_OK :
			MILTER_E_NOT_NEGOTIATED;
	}
	return milter_reply_final(kind) ? MILTER_OK : MILTER_E_UNEXPECTED;
}

/* ---- Helpers ---- */

ssize_t milter_header_format(const struct milter_hdr *h, int leadspc,
		char *out, size_t cap)
{
	size_t len = 0, i;

#define MILTER_PUT(c) do { if (len >= cap) return -MILTER_E_NOSPACE; \
		out[len++] = (char)(c); } while (0)
	for (i = 0; i < h->name.len; i++)
		MILTER_PUT(h->name.p[i]);
	MILTER_PUT(':');
	if (!leadspc)
		MILTER_PUT(' ');
	for (i = 0; i < h->value.len; i++) {
		/* Folding by bare LF (smfi_addheader's way) is stored CRLF. */
		if (h->value.p[i] == '\n' && (i == 0 || h->value.p[i - 1] != '\r'))
			MILTER_PUT('\r');
		MILTER_PUT(h->value.p[i]);
	}
	MILTER_PUT('\r');
	MILTER_PUT('\n');
#undef MILTER_PUT
	return (ssize_t)len;
}

const char *milter_strerror(enum milter_err err)
{
	switch (err) {
	case MILTER_OK: return "no error";
	case MILTER_E_FRAME_EMPTY: return "empty frame (length 0)";
	case MILTER_E_FRAME_LONG: return "frame too long";
	case MILTER_E_UNKNOWN: return "unknown reply command";
	case MILTER_E_TRAILING: return "unexpected data after the reply";
	case MILTER_E_SHORT: return "reply data too short";
	case MILTER_E_NOTERM: return "string without its NUL";
	case MILTER_E_REPLYCODE: return "bad reply code or text";
	case MILTER_E_HDR_NAME: return "bad header name";
	case MILTER_E_HDR_VALUE: return "bad header value (CR/LF, control octet or line too long)";
	case MILTER_E_ADDR: return "bad address or ESMTP args";
	case MILTER_E_TEXT: return "bad quarantine reason or macro list";
	case MILTER_E_VERSION: return "unsupported protocol version";
	case MILTER_E_ACTIONS: return "filter wants actions not offered";
	case MILTER_E_PROTO: return "filter wants protocol flags not offered";
	case MILTER_E_UNEXPECTED: return "reply not expected after this command";
	case MILTER_E_NOT_NEGOTIATED: return "modification not negotiated";
	case MILTER_E_INVAL: return "command cannot be encoded";
	case MILTER_E_NOSPACE: return "output buffer too small";
	}
	return "unknown error";
}

static const struct {
	uint8_t c;
	const char *name;
} milter_cmd_names[] = {
	{ 'A', "SMFIC_ABORT" }, { 'B', "SMFIC_BODY" }, { 'C', "SMFIC_CONNECT" },
	{ 'D', "SMFIC_MACRO" }, { 'E', "SMFIC_BODYEOB" }, { 'H', "SMFIC_HELO" },
	{ 'K', "SMFIC_QUIT_NC" }, { 'L', "SMFIC_HEADER" }, { 'M', "SMFIC_MAIL" },
	{ 'N', "SMFIC_EOH" }, { 'O', "SMFIC_OPTNEG" }, { 'Q', "SMFIC_QUIT" },
	{ 'R', "SMFIC_RCPT" }, { 'T', "SMFIC_DATA" }, { 'U', "SMFIC_UNKNOWN" },
}, milter_reply_names[] = {
	{ '+', "SMFIR_ADDRCPT" }, { '-', "SMFIR_DELRCPT" },
	{ '2', "SMFIR_ADDRCPT_PAR" }, { '4', "SMFIR_SHUTDOWN" },
	{ 'a', "SMFIR_ACCEPT" }, { 'b', "SMFIR_REPLBODY" },
	{ 'c', "SMFIR_CONTINUE" }, { 'd', "SMFIR_DISCARD" },
	{ 'e', "SMFIR_CHGFROM" }, { 'f', "SMFIR_CONN_FAIL" },
	{ 'h', "SMFIR_ADDHEADER" }, { 'i', "SMFIR_INSHEADER" },
	{ 'l', "SMFIR_SETSYMLIST" }, { 'm', "SMFIR_CHGHEADER" },
	{ 'O', "SMFIC_OPTNEG" }, { 'p', "SMFIR_PROGRESS" },
	{ 'q', "SMFIR_QUARANTINE" }, { 'r', "SMFIR_REJECT" },
	{ 's', "SMFIR_SKIP" }, { 't', "SMFIR_TEMPFAIL" },
	{ 'y', "SMFIR_REPLYCODE" },
};

const char *milter_cmd_name(uint8_t cmd)
{
	size_t i;

	for (i = 0; i < sizeof(milter_cmd_names) / sizeof(milter_cmd_names[0]); i++)
		if (milter_cmd_names[i].c == cmd)
			return milter_cmd_names[i].name;
	return "unknown";
}

const char *milter_reply_name(uint8_t kind)
{
	size_t i;

	for (i = 0; i < sizeof(milter_reply_names) / sizeof(milter_reply_names[0]); i++)
		if (milter_reply_names[i].c == kind)
			return milter_reply_names[i].name;
	return "unknown";
}
