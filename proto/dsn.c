/* SPDX-License-Identifier: MIT */
/*
 * dsn: RFC 3464 / RFC 6522 delivery-status notifications in spool form (see
 * dsn.h). Every line goes out through dsn_piece(), the one place that
 * dot-stuffs and checks the 998-octet limit; untrusted text reaches a line
 * only through the sanitisers, which drop CR, LF and NUL, so it cannot start
 * a line (and so cannot forge a header field or a boundary).
 */
#include "proto/dsn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/datefmt.h"
#include "core/hash.h"
#include "core/log.h"
#include "proto/qid.h"

#define DSN_DATE_MAX 64
#define DSN_DUR_MAX 48
#define DSN_BOUNDARY_MAX 70 /* RFC 2046 5.1.1 */
#define DSN_SECS_DAY 86400
#define DSN_SECS_HOUR 3600
#define DSN_SECS_MIN 60

struct dsn_w {
	struct buf *out;
	struct buf tmp; /* one field or text line being assembled */
	int err;        /* first error; later writes are skipped */
};

static int dsn_is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static void dsn_raw(struct dsn_w *w, const char *p, size_t n)
{
	int r;

	if (w->err)
		return;
	r = buf_append(w->out, p, n);
	if (r)
		w->err = r;
}

/*
 * One output line: an added space (a fold we made), then p[0..n), then CRLF.
 * stuffed: p starts a line of the stored original and is already stuffed
 * (RFC 5321 4.5.2), so it goes out verbatim, except that a lone "." (which
 * no correctly stuffed store holds) becomes "..". Otherwise p is plain text
 * and a leading "." is doubled here.
 */
static void dsn_piece(struct dsn_w *w, int add_sp, const char *p, size_t n,
		int stuffed)
{
	size_t dot = 0;

	if (!add_sp && n > 0 && p[0] == '.' && (!stuffed || n == 1))
		dot = 1;
	if ((size_t)add_sp + dot + n > DSN_LINE_MAX)
		panic("line of %zu octets", (size_t)add_sp + dot + n);
	if (add_sp)
		dsn_raw(w, " ", 1);
	if (dot)
		dsn_raw(w, ".", 1);
	dsn_raw(w, p, n);
	dsn_raw(w, "\r\n", 2);
}

/*
 * Emit p[0..n) (no CR or LF in it) as one logical line, folded. A break goes
 * just before a space or tab, so unfolding (RFC 5322 2.2.3) gives the text
 * back; lines stay within soft octets where a space allows, and within
 * DSN_LINE_MAX always: a run without any space is cut and continued after an
 * added space (only overlong junk gets that one-space change).
 */
static void dsn_folded(struct dsn_w *w, const char *p, size_t n, size_t soft,
		int stuffed)
{
	int add_sp = 0;

	for (;;) {
		size_t pre = add_sp ? 1 : (!stuffed && n > 0 && p[0] == '.');
		size_t room = DSN_LINE_MAX - pre, want = soft - pre, cut = 0, i;

		if (n <= want)
			break;
		for (i = want; i > 0; i--)
			if (dsn_is_wsp(p[i])) {
				cut = i;
				break;
			}
		for (i = want + 1; cut == 0 && i < n && i <= room; i++)
			if (dsn_is_wsp(p[i]))
				cut = i;
		if (cut == 0 && n <= room)
			break;
		if (cut == 0)
			cut = room;
		dsn_piece(w, add_sp, p, cut, stuffed);
		add_sp = !dsn_is_wsp(p[cut]);
		p += cut;
		n -= cut;
		stuffed = 0;
	}
	dsn_piece(w, add_sp, p, n, stuffed);
}

/* A plain generated line (our own text, no untrusted bytes, short). */
static void dsn_line(struct dsn_w *w, const char *s)
{
	dsn_folded(w, s, strlen(s), DSN_FOLD_SOFT, 0);
}

/* --- the scratch buffer: build one field, then fold it out --- */

static void dsn_t_reset(struct dsn_w *w)
{
	buf_reset(&w->tmp);
}

static void dsn_t_append(struct dsn_w *w, const char *p, size_t n)
{
	int r;

	if (w->err)
		return;
	r = buf_append(&w->tmp, p, n);
	if (r)
		w->err = r;
}

static void dsn_t_puts(struct dsn_w *w, const char *s)
{
	dsn_t_append(w, s, strlen(s));
}

__attribute__((format(printf, 2, 3)))
static void dsn_t_printf(struct dsn_w *w, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (w->err)
		return;
	va_start(ap, fmt);
	r = buf_vprintf(&w->tmp, fmt, ap);
	va_end(ap);
	if (r)
		w->err = r;
}

static void dsn_t_flush(struct dsn_w *w, size_t soft)
{
	if (!w->err)
		dsn_folded(w, w->tmp.data ? w->tmp.data : "", w->tmp.len, soft, 0);
	dsn_t_reset(w);
}

/*
 * Untrusted text for a header field, a status field or the explanation:
 * CR, LF and tab become a space, runs of spaces one, leading and trailing
 * spaces go, NUL and other controls are dropped, 8-bit bytes become '?'
 * (RFC 3464 2.1: fields are US-ASCII). At most max octets; a cut text ends
 * in "...".
 */
static void dsn_t_text(struct dsn_w *w, const char *p, size_t n, size_t max)
{
	size_t start, i, used = 0;
	int space = 0, cut = 0, r;
	char *d;

	if (w->err)
		return;
	r = buf_reserve(&w->tmp, (n < max ? n : max) + 3);
	if (r) {
		w->err = r;
		return;
	}
	start = w->tmp.len;
	d = w->tmp.data + start;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '\r' || c == '\n' || c == '\t' || c == ' ') {
			space = used > 0;
			continue;
		}
		if (c < 0x20 || c == 0x7f)
			continue;
		if (c >= 0x80)
			c = '?';
		if (used + (size_t)space + 1 > max) {
			cut = 1;
			break;
		}
		if (space)
			d[used++] = ' ';
		space = 0;
		d[used++] = (char)c;
	}
	if (cut) {
		memcpy(d + used, "...", 3);
		used += 3;
	}
	w->tmp.len = start + used;
}

/* Decode one UTF-8 sequence; an invalid one is one byte of U+FFFD. */
static size_t dsn_utf8(const unsigned char *p, size_t n, uint32_t *cp)
{
	uint32_t v, min;
	size_t len, i;

	*cp = 0xfffd;
	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	} else if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		len = 2, v = p[0] & 0x1f, min = 0x80;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3, v = p[0] & 0x0f, min = 0x800;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4, v = p[0] & 0x07, min = 0x10000;
	} else {
		return 1;
	}
	if (n < len)
		return 1;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 1;
		v = (v << 6) | (p[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 1;
	*cp = v;
	return len;
}

/*
 * An address for Final-Recipient. Printable ASCII goes as "rfc822; addr";
 * anything else as "utf-8; " in RFC 6533 utf-8-addr-xtext (the 7-bit form
 * message/delivery-status requires): QCHARs as they are, SP, '+', '=', '\'
 * and non-ASCII as \x{HEX}. Control characters are dropped.
 */
static void dsn_t_addr(struct dsn_w *w, const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] > 0x7e)
			break;
	if (i == n) {
		dsn_t_puts(w, "rfc822; ");
		dsn_t_append(w, p, n);
		return;
	}
	dsn_t_puts(w, "utf-8; ");
	for (i = 0; i < n;) {
		uint32_t cp;

		i += dsn_utf8((const unsigned char *)p + i, n - i, &cp);
		if (cp < 0x20 || cp == 0x7f)
			continue;
		if (cp > 0x20 && cp < 0x7f && cp != '\\' && cp != '+' && cp != '=') {
			char c = (char)cp;

			dsn_t_append(w, &c, 1);
		} else {
			dsn_t_printf(w, "\\x{%02X}", (unsigned)cp);
		}
	}
}

/* RFC 5322 3.3 date-time in UTC; names from tables, not the locale. */
static int dsn_date(char *dst, size_t n, time_t t)
{
	/* DSN dates must not be before 1900: keep the old bound. */
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || tm.tm_year < 0)
		return -EINVAL;
	return datefmt_rfc5322(dst, n, t) ? -EINVAL : 0;
}

/* "5 days", "1 hour", "3 minutes", "less than a minute". */
static void dsn_duration(char *dst, size_t n, time_t from, time_t to)
{
	long long s = to > from ? (long long)to - (long long)from : 0;
	const char *unit;
	long long v;
	int r;

	if (s >= DSN_SECS_DAY)
		v = s / DSN_SECS_DAY, unit = "day";
	else if (s >= DSN_SECS_HOUR)
		v = s / DSN_SECS_HOUR, unit = "hour";
	else if (s >= DSN_SECS_MIN)
		v = s / DSN_SECS_MIN, unit = "minute";
	else
		v = 0, unit = NULL;
	if (unit)
		r = snprintf(dst, n, "%lld %s%s", v, unit, v == 1 ? "" : "s");
	else
		r = snprintf(dst, n, "less than a minute");
	if (r < 0 || (size_t)r >= n)
		panic("duration does not fit in %zu", n);
}

/* RFC 3463: class "." subject "." detail, 1-3 digits each. */
static int dsn_status_ok(const char *s)
{
	int part, k;

	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	s += 2;
	for (part = 0; part < 2; part++) {
		for (k = 0; k < 3 && *s >= '0' && *s <= '9'; k++)
			s++;
		if (k == 0 || *s != (part == 0 ? '.' : '\0'))
			return 0;
		s++;
	}
	return 1;
}

/* X.4.7: delivery time expired (RFC 3463 3.5). */
static int dsn_status_expired(const char *s)
{
	return strcmp(s + 1, ".4.7") == 0;
}

static int dsn_host_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0, i;

	if (n == 0 || n > DSN_HOST_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				(c >= '0' && c <= '9') || c == '.' || c == '-' ||
				c == ':' || c == '[' || c == ']'))
			return 0;
	}
	return 1;
}

static int dsn_input_ok(const struct dsn_input *in)
{
	size_t n, i;
	unsigned k;

	if (!dsn_host_ok(in->reporting_mta))
		return 0;
	n = in->postmaster ? strlen(in->postmaster) : 0;
	if (n == 0 || n > DSN_ADDR_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (in->postmaster[i] <= ' ' || in->postmaster[i] > '~' ||
				in->postmaster[i] == '<' || in->postmaster[i] == '>')
			return 0;
	n = in->qid ? strlen(in->qid) : 0;
	if (n == 0 || n >= QID_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!((in->qid[i] >= 'A' && in->qid[i] <= 'Z') ||
				(in->qid[i] >= 'a' && in->qid[i] <= 'z') ||
				(in->qid[i] >= '0' && in->qid[i] <= '9')))
			return 0;
	if (in->sender == NULL || in->sender_len == 0 || in->sender_len > DSN_ADDR_MAX)
		return 0;
	if (in->rcpt == NULL || in->nrcpt == 0 || in->message_id_seed == NULL)
		return 0;
	if (in->orig == NULL && in->orig_len > 0)
		return 0;
	for (k = 0; k < in->nrcpt; k++) {
		const struct dsn_rcpt *r = &in->rcpt[k];

		if (r->addr == NULL || r->addr_len == 0 || r->addr_len > DSN_ADDR_MAX ||
				(r->action != DSN_ACTION_FAILED &&
				 r->action != DSN_ACTION_DELAYED) ||
				!dsn_status_ok(r->status))
			return 0;
	}
	return 1;
}

/*
 * Copy s into dst (size n) keeping [A-Za-z0-9_-], anything else as one '.'
 * between kept runs: safe in a msg-id (RFC 5322 3.6.4 dot-atom) and in a
 * boundary (RFC 2046 bchars). Returns the length.
 */
static size_t dsn_token(char *dst, size_t n, const char *s)
{
	size_t len = 0;
	int dot = 0;

	for (; *s && len + 1 < n; s++) {
		char c = *s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				(c >= '0' && c <= '9') || c == '-' || c == '_') {
			if (dot && len > 0 && len + 2 < n)
				dst[len++] = '.';
			dot = 0;
			dst[len++] = c;
		} else {
			dot = 1;
		}
	}
	dst[len] = '\0';
	return len;
}

/* splitmix64 finish, so consecutive attempts differ in all bits. */
static uint64_t dsn_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/*
 * A boundary that does not occur anywhere in the returned original, the only
 * place where content we did not write can start a line. First try is
 * Postfix-like "seed/host"; later ones append a hash of the content.
 */
static int dsn_boundary(char *dst, size_t n, const char *seed, const char *mta,
		const char *p, size_t len)
{
	uint64_t h = hash_fnv64(HASH_FNV64_INIT, p, len); /* of the returned original */
	char host[DSN_BOUNDARY_MAX + 1];
	unsigned attempt;
	int r;

	for (attempt = 0; attempt < DSN_BOUNDARY_TRIES; attempt++) {
		if (attempt == 0) {
			(void)dsn_token(host, sizeof(host), mta);
			r = snprintf(dst, n, "%s/%.*s", seed,
					(int)(DSN_BOUNDARY_MAX - 1 - strlen(seed)), host);
		} else {
			r = snprintf(dst, n, "%s/%016llx", seed,
					(unsigned long long)dsn_mix(h + attempt));
		}
		if (r < 0 || (size_t)r >= n)
			panic("boundary does not fit in %zu", n);
		if (len == 0 || memmem(p, len, dst, (size_t)r) == NULL)
			return 0;
	}
	return -EINVAL;
}

/*
 * Which part of the original goes back: all of it (return_full and small
 * enough) or its header section, the octets before the first empty line
 * (RFC 5322 2.1), cut at a line end to fit return_max.
 */
static void dsn_region(const struct dsn_input *in, size_t *len, int *full)
{
	size_t max = in->return_max ? in->return_max : DSN_RETURN_MAX_DEFAULT;
	const char *o = in->orig, *e;
	size_t n = in->orig_len, i;

	*full = in->return_full && n <= max;
	if (*full || n == 0) {
		*len = n;
		return;
	}
	if (n >= 2 && o[0] == '\r' && o[1] == '\n') {
		*len = 0;
		return;
	}
	e = memmem(o, n, "\r\n\r\n", 4);
	if (e)
		n = (size_t)(e - o) + 2;
	if (n > max) {
		for (i = max; i >= 2; i--)
			if (o[i - 2] == '\r' && o[i - 1] == '\n')
				break;
		n = i >= 2 ? i : max;
	}
	*len = n;
}

/* A stored header line (CRLF removed): verbatim when it is clean, else with
 * bare CR/LF as spaces and folded to the line limit. */
static void dsn_orig_header(struct dsn_w *w, const char *p, size_t n)
{
	size_t i;

	if (n <= DSN_LINE_MAX && memchr(p, '\r', n) == NULL && memchr(p, '\n', n) == NULL) {
		dsn_piece(w, 0, p, n, 1);
		return;
	}
	dsn_t_reset(w);
	dsn_t_append(w, p, n);
	if (w->err)
		return;
	for (i = 0; i < n; i++)
		if (w->tmp.data[i] == '\r' || w->tmp.data[i] == '\n')
			w->tmp.data[i] = ' ';
	dsn_folded(w, w->tmp.data, n, DSN_LINE_MAX, 1);
	dsn_t_reset(w);
}

/* A stored body line (CRLF removed): a bare CR or LF starts a new line, an
 * overlong line is cut. Only the first piece is the stored, stuffed line
 * start; the others are plain text and get stuffed here. */
static void dsn_orig_body(struct dsn_w *w, const char *p, size_t n)
{
	int stuffed = 1;

	for (;;) {
		size_t seg = 0;

		while (seg < n && p[seg] != '\r' && p[seg] != '\n')
			seg++;
		do {
			size_t dot = !stuffed && seg > 0 && p[0] == '.';
			size_t k = seg < DSN_LINE_MAX - dot ? seg : DSN_LINE_MAX - dot;

			dsn_piece(w, 0, p, k, stuffed);
			p += k;
			n -= k;
			seg -= k;
			stuffed = 0;
		} while (seg > 0);
		if (n == 0)
			break;
		p++; /* the bare CR or LF */
		n--;
	}
}

static void dsn_orig(struct dsn_w *w, const char *p, size_t n, int full)
{
	while (n > 0 && !w->err) {
		const char *e = memmem(p, n, "\r\n", 2);
		size_t len = e ? (size_t)(e - p) : n;

		if (full)
			dsn_orig_body(w, p, len);
		else
			dsn_orig_header(w, p, len);
		if (e == NULL)
			break;
		p += len + 2;
		n -= len + 2;
	}
}

static void dsn_explain(struct dsn_w *w, const struct dsn_input *in, int failed,
		int part3, int full, const char *held, const char *until)
{
	unsigned k;

	dsn_t_printf(w, "This is the mail system at host %s.", in->reporting_mta);
	dsn_t_flush(w, DSN_FOLD_SOFT);
	dsn_line(w, "");
	if (failed) {
		dsn_line(w, "I'm sorry to have to inform you that your message could not");
		dsn_line(w, "be delivered to one or more recipients.");
		dsn_t_printf(w, "It was held here for %s.", held);
		dsn_t_flush(w, DSN_FOLD_SOFT);
	} else {
		dsn_line(w, "####################################################################");
		dsn_line(w, "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #");
		dsn_line(w, "####################################################################");
		dsn_line(w, "");
		dsn_t_printf(w, "Your message could not be delivered for %s.", held);
		dsn_t_flush(w, DSN_FOLD_SOFT);
		if (until) {
			dsn_t_printf(w, "It will be retried until %s.", until);
			dsn_t_flush(w, DSN_FOLD_SOFT);
		}
	}
	if (part3) {
		dsn_line(w, "");
		dsn_line(w, full ? "A copy of your message is attached below." :
				"The headers of your message are attached below.");
	}
	dsn_line(w, "");
	dsn_line(w, "                   The mail system");
	for (k = 0; k < in->nrcpt; k++) {
		const struct dsn_rcpt *r = &in->rcpt[k];

		dsn_line(w, "");
		dsn_t_puts(w, "<");
		dsn_t_text(w, r->addr, r->addr_len, DSN_ADDR_MAX);
		dsn_t_puts(w, ">: ");
		if (r->action == DSN_ACTION_DELAYED)
			dsn_t_printf(w, "delivery delayed for %s", held);
		else if (dsn_status_expired(r->status))
			dsn_t_printf(w, "message expired after %s in the queue", held);
		else
			dsn_t_puts(w, "delivery failed");
		if (r->diagnostic && r->diag_len > 0) {
			dsn_t_puts(w, "; ");
			if (r->remote_mta && r->remote_mta[0]) {
				dsn_t_puts(w, "host ");
				dsn_t_text(w, r->remote_mta, strlen(r->remote_mta),
						DSN_HOST_MAX);
				dsn_t_puts(w, " said: ");
			} else {
				dsn_t_puts(w, "the remote server said: ");
			}
			dsn_t_text(w, r->diagnostic, r->diag_len, DSN_DIAG_MAX);
		}
		dsn_t_printf(w, " (status %s)", r->status);
		dsn_t_flush(w, DSN_FOLD_SOFT);
	}
}

/* RFC 3464 2.2 per-message and 2.3 per-recipient fields. */
static void dsn_report(struct dsn_w *w, const struct dsn_input *in,
		const char *arrival, const char *until)
{
	char date[DSN_DATE_MAX];
	unsigned k;

	dsn_t_printf(w, "Reporting-MTA: dns; %s", in->reporting_mta);
	dsn_t_flush(w, DSN_FOLD_SOFT);
	dsn_t_printf(w, "X-Etrnd-Queue-ID: %s", in->qid);
	dsn_t_flush(w, DSN_FOLD_SOFT);
	dsn_t_printf(w, "Arrival-Date: %s", arrival);
	dsn_t_flush(w, DSN_FOLD_SOFT);
	for (k = 0; k < in->nrcpt; k++) {
		const struct dsn_rcpt *r = &in->rcpt[k];

		dsn_line(w, "");
		dsn_t_puts(w, "Final-Recipient: ");
		dsn_t_addr(w, r->addr, r->addr_len);
		dsn_t_flush(w, DSN_FOLD_SOFT);
		dsn_line(w, r->action == DSN_ACTION_FAILED ? "Action: failed" :
				"Action: delayed");
		dsn_t_printf(w, "Status: %s", r->status);
		dsn_t_flush(w, DSN_FOLD_SOFT);
		if (r->remote_mta) {
			dsn_t_puts(w, "Remote-MTA: dns; ");
			dsn_t_text(w, r->remote_mta, strlen(r->remote_mta), DSN_HOST_MAX);
			if (w->tmp.len > strlen("Remote-MTA: dns; "))
				dsn_t_flush(w, DSN_FOLD_SOFT);
			dsn_t_reset(w);
		}
		if (r->diagnostic) {
			dsn_t_puts(w, "Diagnostic-Code: smtp; ");
			dsn_t_text(w, r->diagnostic, r->diag_len, DSN_DIAG_MAX);
			if (w->tmp.len > strlen("Diagnostic-Code: smtp; "))
				dsn_t_flush(w, DSN_FOLD_SOFT);
			dsn_t_reset(w);
		}
		if (r->last_attempt != 0) {
			if (dsn_date(date, sizeof(date), r->last_attempt) != 0) {
				w->err = w->err ? w->err : -EINVAL;
				return;
			}
			dsn_t_printf(w, "Last-Attempt-Date: %s", date);
			dsn_t_flush(w, DSN_FOLD_SOFT);
		}
		if (r->action == DSN_ACTION_DELAYED && until) {
			dsn_t_printf(w, "Will-Retry-Until: %s", until);
			dsn_t_flush(w, DSN_FOLD_SOFT);
		}
	}
}

/* The RFC 5322 header section and the MIME preamble; Auto-Submitted per
 * RFC 3834 5. */
static void dsn_headers(struct dsn_w *w, const struct dsn_input *in, const char *now,
		const char *seed, const char *bnd, int failed, int eight)
{
	dsn_t_printf(w, "Date: %s", now);
	dsn_t_flush(w, DSN_FOLD_SOFT);
	dsn_t_printf(w, "From: Mail Delivery System <%s>", in->postmaster);
	dsn_t_flush(w, DSN_FOLD_SOFT);
	dsn_t_puts(w, "To: <");
	dsn_t_text(w, in->sender, in->sender_len, DSN_ADDR_MAX);
	dsn_t_puts(w, ">");
	dsn_t_flush(w, DSN_FOLD_SOFT);
	dsn_line(w, failed ? "Subject: Undelivered Mail Returned to Sender" :
			"Subject: Delayed Mail (still being retried)");
	dsn_t_printf(w, "Message-ID: <%s@%s>", seed, in->reporting_mta);
	dsn_t_flush(w, DSN_FOLD_SOFT);
	dsn_line(w, "Auto-Submitted: auto-replied");
	dsn_line(w, "MIME-Version: 1.0");
	dsn_t_printf(w, "Content-Type: multipart/report; report-type=delivery-status; "
			"boundary=\"%s\"", bnd);
	dsn_t_flush(w, DSN_FOLD_SOFT);
	if (eight)
		dsn_line(w, "Content-Transfer-Encoding: 8bit");
	dsn_line(w, "");
	dsn_line(w, "This is a MIME-encapsulated message.");
}

int dsn_build(const struct dsn_input *in, struct buf *out, unsigned *flags)
{
	char seed[DSN_SEED_MAX + 1], bnd[DSN_BOUNDARY_MAX + 1];
	char now[DSN_DATE_MAX], arrival[DSN_DATE_MAX], until[DSN_DATE_MAX];
	char held[DSN_DUR_MAX];
	struct dsn_w w = { .out = out, .err = 0 };
	size_t start = out ? out->len : 0, rlen, i;
	int failed = 0, full, eight = 0, r;
	unsigned k;

	buf_init(&w.tmp, 0);
	if (flags)
		*flags = 0;
	if (in == NULL || out == NULL || !dsn_input_ok(in) ||
			dsn_token(seed, sizeof(seed), in->message_id_seed) == 0 ||
			dsn_date(now, sizeof(now), in->now) != 0 ||
			dsn_date(arrival, sizeof(arrival), in->arrival) != 0 ||
			(in->retry_until != 0 &&
			 dsn_date(until, sizeof(until), in->retry_until) != 0))
		return -EINVAL;
	for (k = 0; k < in->nrcpt; k++)
		failed |= in->rcpt[k].action == DSN_ACTION_FAILED;
	dsn_region(in, &rlen, &full);
	for (i = 0; i < rlen; i++)
		eight |= (unsigned char)in->orig[i] >= 0x80;
	r = dsn_boundary(bnd, sizeof(bnd), seed, in->reporting_mta, in->orig, rlen);
	if (r)
		return r;
	dsn_duration(held, sizeof(held), in->arrival, in->now);

	dsn_headers(&w, in, now, seed, bnd, failed, eight);

	/* RFC 6522 3: the human part, the machine part, the returned content.
	 * Each part ends with an empty line: the CRLF before "--" belongs to
	 * the delimiter (RFC 2046 5.1.1), so the content keeps its last CRLF. */
	dsn_line(&w, "");
	dsn_t_printf(&w, "--%s", bnd);
	dsn_t_flush(&w, DSN_LINE_MAX);
	dsn_line(&w, "Content-Description: Notification");
	dsn_line(&w, "Content-Type: text/plain; charset=us-ascii");
	dsn_line(&w, "");
	dsn_explain(&w, in, failed, rlen > 0, full, held,
			in->retry_until ? until : NULL);
	dsn_line(&w, "");
	dsn_t_printf(&w, "--%s", bnd);
	dsn_t_flush(&w, DSN_LINE_MAX);
	dsn_line(&w, "Content-Description: Delivery report");
	dsn_line(&w, "Content-Type: message/delivery-status");
	dsn_line(&w, "");
	dsn_report(&w, in, arrival, in->retry_until ? until : NULL);
	dsn_line(&w, "");
	if (rlen > 0) {
		dsn_t_printf(&w, "--%s", bnd);
		dsn_t_flush(&w, DSN_LINE_MAX);
		dsn_t_printf(&w, "Content-Description: %s Message%s",
				failed ? "Undelivered" : "Delayed", full ? "" : " Headers");
		dsn_t_flush(&w, DSN_FOLD_SOFT);
		dsn_line(&w, full ? "Content-Type: message/rfc822" :
				"Content-Type: text/rfc822-headers");
		if (eight)
			dsn_line(&w, "Content-Transfer-Encoding: 8bit");
		dsn_line(&w, "");
		dsn_orig(&w, in->orig, rlen, full);
		dsn_line(&w, "");
	}
	dsn_t_printf(&w, "--%s--", bnd);
	dsn_t_flush(&w, DSN_LINE_MAX);

	buf_free(&w.tmp);
	if (w.err) {
		out->len = start;
		return w.err;
	}
	if (flags && eight)
		*flags |= DSN_OUT_8BIT;
	return 0;
}
