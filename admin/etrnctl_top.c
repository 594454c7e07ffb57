/* SPDX-License-Identifier: MIT */
/*
 * etrnctl_top: `etrnctl top` (see etrnctl_top.h). A sample is two control
 * socket requests ("status json", "metrics"); a frame is rendered from two
 * samples (rates are their deltas) as plain text lines, drawn over the
 * previous frame with ANSI escapes in the terminal's alternate screen. The
 * terminal's modes are saved first and restored on every way out.
 */
#include "core/fdio.h"
#include "admin/etrnctl_top.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* A frame's line before it is cut to the screen's width. */
#define TOP_LINE_MAX 512
/* The frame's lines above the domains' table, and the least domains shown. */
#define TOP_HEAD_ROWS 8
#define TOP_MIN_DOMAIN_ROWS 3
#define TOP_BAR_WIDTH 20
/* "[" bar "] " done "/" total: two 20-digit numbers at the most. */
#define TOP_BAR_MAX (TOP_BAR_WIDTH + 48)
#define TOP_FRAME_MAX (1u << 20)
/* Without a size from the terminal (TIOCGWINSZ), and for --once. */
#define TOP_DEFAULT_COLS 100u
#define TOP_KEY_CTRL_C 0x03
#define TOP_SECS_PER_MIN 60u
#define TOP_SECS_PER_HOUR 3600u
#define TOP_SECS_PER_DAY 86400u
#define TOP_KIB 1024.0
/* A sample's value converts to a uint64_t below this (2^64). */
#define TOP_PROM_VALUE_MAX 18446744073709551616.0

/* ANSI: alternate screen + hidden cursor on entry, the reverse on exit;
 * home, clear to end of line, clear to end of screen. */
#define TOP_ANSI_ENTER "\x1b[?1049h\x1b[?25l"
#define TOP_ANSI_LEAVE "\x1b[?25h\x1b[?1049l"
#define TOP_ANSI_HOME "\x1b[H"
#define TOP_ANSI_EOL "\x1b[K"
#define TOP_ANSI_EOS "\x1b[J"

/* ---- a small reader for the daemon's own JSON --------------------------- */

/* Past the string starting at p ('"'), or NULL when it does not end. */
static const char *tj_string_end(const char *p, const char *end)
{
	for (p++; p < end && *p != '"'; p++)
		if (*p == '\\')
			p++;
	return p < end ? p + 1 : NULL;
}

/* Past the value starting at p (an object or array whole; a scalar up to
 * the ',', '}' or ']' after it), or NULL when it does not end. */
static const char *tj_skip(const char *p, const char *end)
{
	int depth = 0;

	while (p < end) {
		if (*p == '"') {
			if (!(p = tj_string_end(p, end)))
				return NULL;
			if (!depth)
				return p;
			continue;
		}
		if (*p == '{' || *p == '[') {
			depth++;
		} else if (*p == '}' || *p == ']') {
			if (depth == 0)
				return p;
			if (--depth == 0)
				return p + 1;
		} else if (!depth && *p == ',') {
			return p;
		}
		p++;
	}
	return depth ? NULL : p;
}

/* The value of key in the object starting at obj ('{'): a pointer below
 * end, or NULL. */
static const char *tj_field(const char *obj, const char *end, const char *key)
{
	size_t kl = strlen(key);
	const char *p = obj + 1;

	while (p < end && *p != '}') {
		const char *k, *ke;

		if (*p == ',' || *p == ' ') {
			p++;
			continue;
		}
		if (*p != '"' || !(ke = tj_string_end(p, end)))
			return NULL;
		k = p + 1;
		if (ke >= end || *ke != ':')
			return NULL;
		if ((size_t)(ke - 1 - k) == kl && !memcmp(k, key, kl))
			return ke + 1 < end ? ke + 1 : NULL;
		if (!(p = tj_skip(ke + 1, end)))
			return NULL;
	}
	return NULL;
}

/* The next element of the array whose cursor is *p (the '[' at first):
 * its start, or NULL at the array's end (or a broken one). */
static const char *tj_next(const char **p, const char *end)
{
	const char *q = *p;

	if (q < end && (*q == '[' || *q == ','))
		q++;
	while (q < end && *q == ' ')
		q++;
	if (q >= end || *q == ']')
		return NULL;
	*p = tj_skip(q, end);
	return *p ? q : NULL;
}

static uint64_t tj_u64(const char *v, const char *end)
{
	uint64_t n = 0;

	for (; v && v < end && *v >= '0' && *v <= '9'; v++)
		n = n * 10 + (uint64_t)(*v - '0');
	return n;
}

/* The JSON string at v into out (cap bytes, cut; escapes and bytes outside
 * printable ASCII become '?': a terminal is no place for them). */
static void tj_str(const char *v, const char *end, char *out, size_t cap)
{
	size_t n = 0;

	if (v && v < end && *v == '"') {
		for (v++; v < end && *v != '"' && n + 1 < cap; v++) {
			if (*v == '\\') {
				v += v + 1 < end && v[1] == 'u' ? 5 : 1;
				out[n++] = '?';
			} else {
				out[n++] = *v >= 0x20 && *v < 0x7f ? *v : '?';
			}
		}
	}
	out[n] = '\0';
}

/* ---- parsing the two replies --------------------------------------------- */

static int top_parse_shards(const char *arr, const char *end, struct etrnctl_top_snap *s)
{
	const char *e, *p = arr;

	while ((e = tj_next(&p, end))) {
		const char *a = tj_field(e, p, "answered");

		s->shards++;
		if (a && *a == 't') {
			s->answered++;
			s->held_msgs += tj_u64(tj_field(e, p, "messages"), p);
		}
	}
	return p ? 0 : -EINVAL;
}

static size_t top_count(const char *arr, const char *end)
{
	const char *p = arr;
	size_t n = 0;

	while (tj_next(&p, end))
		n++;
	return n;
}

/* Room for the elements of the array at arr (*n of them, size bytes each):
 * NULL when there are none, or (with *n not 0) when out of memory. */
static void *top_array_new(const char *arr, const char *end, size_t size, size_t *n)
{
	*n = top_count(arr, end);
	return *n ? calloc(*n, size) : NULL;
}

static int top_parse_domains(const char *arr, const char *end, struct etrnctl_top_snap *s)
{
	const char *e, *p = arr;
	size_t n;

	if (!(s->doms = top_array_new(arr, end, sizeof(*s->doms), &n)) && n)
		return -ENOMEM;
	while ((e = tj_next(&p, end)) && s->ndoms < n) {
		struct etrnctl_top_dom *d = &s->doms[s->ndoms++];

		tj_str(tj_field(e, p, "domain"), p, d->name, sizeof(d->name));
		d->msgs = tj_u64(tj_field(e, p, "messages"), p);
		d->bytes = tj_u64(tj_field(e, p, "bytes"), p);
		d->oldest_s = tj_u64(tj_field(e, p, "oldest_s"), p);
		d->peak = d->msgs;
		s->held_bytes += d->bytes;
	}
	return 0;
}

/* The session's domains, joined by spaces (cut to cap). */
static void top_atrn_domains(const char *arr, const char *end, char *out, size_t cap)
{
	const char *e, *p = arr;
	size_t n = 0;

	out[0] = '\0';
	while (arr && (e = tj_next(&p, end)) && n + 2 < cap) {
		if (n)
			out[n++] = ' ';
		tj_str(e, p, out + n, cap - n);
		n += strlen(out + n);
	}
}

static int top_parse_atrn(const char *arr, const char *end, struct etrnctl_top_snap *s)
{
	const char *e, *p = arr;
	size_t n;

	if (!(s->atrn = top_array_new(arr, end, sizeof(*s->atrn), &n)) && n)
		return -ENOMEM;
	while ((e = tj_next(&p, end)) && s->natrn < n) {
		struct etrnctl_top_atrn *a = &s->atrn[s->natrn++];
		const char *doms = tj_field(e, p, "domains");

		tj_str(tj_field(e, p, "user"), p, a->user, sizeof(a->user));
		tj_str(tj_field(e, p, "client"), p, a->client, sizeof(a->client));
		tj_str(tj_field(e, p, "state"), p, a->state, sizeof(a->state));
		top_atrn_domains(doms && *doms == '[' ? doms : NULL, p, a->domains,
				 sizeof(a->domains));
		a->delivered = tj_u64(tj_field(e, p, "delivered"), p);
		a->total = tj_u64(tj_field(e, p, "total"), p);
	}
	return 0;
}

void etrnctl_top_snap_free(struct etrnctl_top_snap *s)
{
	free(s->doms);
	free(s->atrn);
	s->doms = NULL;
	s->atrn = NULL;
	s->ndoms = s->natrn = s->ngone = 0;
}

int etrnctl_top_parse_status(const char *json, size_t len, struct etrnctl_top_snap *s)
{
	const char *end = json + len, *sh, *dom, *atrn;
	int rc;

	etrnctl_top_snap_free(s);
	s->shards = s->answered = 0;
	s->held_msgs = s->held_bytes = 0;
	while (json < end && (*json == ' ' || *json == '\n'))
		json++;
	if (json >= end || *json != '{')
		return -EINVAL;
	sh = tj_field(json, end, "shards");
	dom = tj_field(json, end, "domains");
	atrn = tj_field(json, end, "atrn");
	if (!sh || *sh != '[' || !dom || *dom != '[')
		return -EINVAL;
	if ((rc = top_parse_shards(sh, end, s)) || (rc = top_parse_domains(dom, end, s)))
		return rc;
	if (atrn && *atrn == '[' && (rc = top_parse_atrn(atrn, end, s)))
		return rc;
	return 0;
}

/* The sum of every sample of series name whose labels hold label (NULL:
 * any), and whether there was one. */
static int top_prom(const char *text, const char *name, const char *label, uint64_t *sum)
{
	size_t nl = strlen(name);
	int found = 0;
	double v;

	*sum = 0;
	for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		const char *eol = strchr(l, '\n'), *sp;
		size_t ll = eol ? (size_t)(eol - l) : strlen(l);

		if (l[0] == '#' || ll <= nl || memcmp(l, name, nl) || (l[nl] != ' ' && l[nl] != '{'))
			continue;
		sp = memrchr(l, ' ', ll);
		if (!sp || (label && !memmem(l + nl, (size_t)(sp - l) - nl, label, strlen(label))))
			continue;
		v = strtod(sp + 1, NULL);
		/* NaN, +Inf or out of range: no count top could show. */
		if (!(v >= 0 && v < TOP_PROM_VALUE_MAX))
			continue;
		*sum += (uint64_t)v;
		found = 1;
	}
	return found;
}

void etrnctl_top_parse_metrics(const char *text, struct etrnctl_top_metrics *m)
{
	uint64_t v;

	memset(m, 0, sizeof(*m));
	m->redis_up = -1;
	if (!text || !strncmp(text, "error:", 6))
		return;
	m->have = top_prom(text, "etrnd_messages_received_total", NULL, &m->received);
	(void)top_prom(text, "etrnd_connections_open", NULL, &m->conn_open);
	(void)top_prom(text, "etrnd_connections_accepted_total", NULL, &m->accepted);
	(void)top_prom(text, "etrnd_connections_refused_total", NULL, &m->refused);
	(void)top_prom(text, "etrnd_received_bytes_total", NULL, &m->received_bytes);
	(void)top_prom(text, "etrnd_deliveries_total", "status=\"sent\"", &m->sent);
	(void)top_prom(text, "etrnd_deliveries_total", "status=\"deferred\"", &m->deferred);
	(void)top_prom(text, "etrnd_deliveries_total", "status=\"bounced\"", &m->bounced);
	(void)top_prom(text, "etrnd_drains_running", NULL, &m->drains_running);
	(void)top_prom(text, "etrnd_atrn_sessions_running", NULL, &m->atrn_running);
	if (top_prom(text, "etrnd_redis_up", NULL, &v))
		m->redis_up = v != 0;
	(void)top_prom(text, "etrnd_redis_last_resync_age_seconds", NULL, &m->resync_age_s);
}

/* The walk of two name-sorted lists: <0 a's name first, 0 both, >0 b's. */
static int top_walk(const struct etrnctl_top_snap *a, size_t i, const struct etrnctl_top_snap *b,
		    size_t j)
{
	if (i == a->ndoms)
		return 1;
	if (j == b->ndoms)
		return -1;
	return strcmp(a->doms[i].name, b->doms[j].name);
}

int etrnctl_top_carry_peaks(const struct etrnctl_top_snap *prev, struct etrnctl_top_snap *cur)
{
	struct etrnctl_top_dom *v;
	size_t gone = 0, i = 0, j = 0, k = 0;

	if (!prev || prev->error[0] || cur->error[0])
		return 0;
	/* Both sorted by name (drain_status.c sorts with strcmp): one walk. */
	while (i < prev->ndoms || j < cur->ndoms) {
		int c = top_walk(prev, i, cur, j);

		if (c == 0 && prev->doms[i].peak > cur->doms[j].peak)
			cur->doms[j].peak = prev->doms[i].peak;
		gone += c < 0;
		i += c <= 0;
		j += c >= 0;
	}
	if (!gone)
		return 0;
	/* Domains drained empty since top started stay, held 0 of their peak. */
	if (!(v = calloc(cur->ndoms + gone, sizeof(*v))))
		return -ENOMEM;
	for (i = j = 0; i < prev->ndoms || j < cur->ndoms; k++) {
		int c = top_walk(prev, i, cur, j);

		if (c < 0) {
			v[k] = prev->doms[i];
			v[k].msgs = v[k].bytes = v[k].oldest_s = 0;
		} else {
			v[k] = cur->doms[j];
		}
		i += c <= 0;
		j += c >= 0;
	}
	free(cur->doms);
	cur->doms = v;
	cur->ndoms = k;
	cur->ngone = gone;
	return 0;
}

/* ---- rendering ------------------------------------------------------------ */

struct top_frame {
	struct buf *out;
	unsigned cols;
	int ansi;
	int err;
};

/* One line, cut to the screen's width. */
static void top_line(struct top_frame *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void top_line(struct top_frame *f, const char *fmt, ...)
{
	char line[TOP_LINE_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	if ((unsigned)n > f->cols)
		n = (int)f->cols;
	if (buf_append(f->out, line, (size_t)n) ||
	    buf_puts(f->out, f->ansi ? TOP_ANSI_EOL "\r\n" : "\n"))
		f->err = -ENOMEM;
}

static void top_bytes(uint64_t b, char *out, size_t cap)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	unsigned u = 0;

	while (v >= TOP_KIB && u + 1 < sizeof(unit) / sizeof(unit[0])) {
		v /= TOP_KIB;
		u++;
	}
	snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

static void top_age(uint64_t s, char *out, size_t cap)
{
	if (s >= TOP_SECS_PER_DAY)
		snprintf(out, cap, "%" PRIu64 "d%02" PRIu64 "h", s / TOP_SECS_PER_DAY,
			 s % TOP_SECS_PER_DAY / TOP_SECS_PER_HOUR);
	else if (s >= TOP_SECS_PER_HOUR)
		snprintf(out, cap, "%" PRIu64 "h%02" PRIu64 "m", s / TOP_SECS_PER_HOUR,
			 s % TOP_SECS_PER_HOUR / TOP_SECS_PER_MIN);
	else if (s >= TOP_SECS_PER_MIN)
		snprintf(out, cap, "%" PRIu64 "m%02" PRIu64 "s", s / TOP_SECS_PER_MIN,
			 s % TOP_SECS_PER_MIN);
	else
		snprintf(out, cap, "%" PRIu64 "s", s);
}

/* "[#####.....] done/total" into out. */
static void top_bar(uint64_t done, uint64_t total, char *out, size_t cap)
{
	char bar[TOP_BAR_WIDTH + 1];
	uint64_t k = total ? (done > total ? total : done) * TOP_BAR_WIDTH / total : 0;

	for (unsigned i = 0; i < TOP_BAR_WIDTH; i++)
		bar[i] = i < k ? '#' : '.';
	bar[TOP_BAR_WIDTH] = '\0';
	/* Counts too long for the cell are cut; a '+' at its end says so. */
	if (snprintf(out, cap, "[%s] %" PRIu64 "/%" PRIu64, bar, done, total) >= (int)cap &&
	    cap > 1)
		out[cap - 2] = '+';
}

/* Per second, from prev to cur ("-" without a previous sample). */
static void top_rate(const struct etrnctl_top_snap *prev, const struct etrnctl_top_snap *cur,
		     uint64_t a, uint64_t b, char *out, size_t cap)
{
	uint64_t dt = prev && cur->t_ms > prev->t_ms ? cur->t_ms - prev->t_ms : 0;

	if (!dt || !prev->m.have || !cur->m.have || b < a)
		snprintf(out, cap, "-");
	else
		snprintf(out, cap, "%.1f", (double)(b - a) * 1000.0 / (double)dt);
}

static void top_head(struct top_frame *f, const struct etrnctl_top_snap *prev,
		     const struct etrnctl_top_snap *cur)
{
	const struct etrnctl_top_metrics *m = &cur->m, *pm = prev ? &prev->m : NULL;
	char r1[32], r2[32], r3[32], held[32], rs[96] = "unknown";
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	top_line(f, "etrnctl top - %04d-%02d-%02d %02d:%02d:%02dZ, every %u s%s",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 ETRNCTL_TOP_INTERVAL_MS / 1000, f->ansi ? " (q quits)" : "");
	if (cur->error[0]) {
		top_line(f, "daemon: %s", cur->error);
		return;
	}
	if (!m->have) {
		top_line(f, "connections: -    ingest: -    drain: - (the daemon answers no metrics)");
	} else {
		top_rate(prev, cur, pm ? pm->accepted : 0, m->accepted, r1, sizeof(r1));
		top_line(f, "connections: open %" PRIu64 ", accepted %" PRIu64 " (%s/s), refused %"
			 PRIu64, m->conn_open, m->accepted, r1, m->refused);
		top_rate(prev, cur, pm ? pm->received : 0, m->received, r1, sizeof(r1));
		top_rate(prev, cur, pm ? pm->received_bytes : 0, m->received_bytes, r2, sizeof(r2));
		top_rate(prev, cur, pm ? pm->sent : 0, m->sent, r3, sizeof(r3));
		top_line(f, "ingest: %s msg/s, %s B/s (received %" PRIu64 ")    drain: %s "
			 "deliveries/s (sent %" PRIu64 ", deferred %" PRIu64 ", bounced %" PRIu64
			 ")", r1, r2, m->received, r3, m->sent, m->deferred, m->bounced);
	}
	top_bytes(cur->held_bytes, held, sizeof(held));
	top_line(f, "held: %" PRIu64 " messages, %s, %zu domains; shards %u (%u answered)",
		 cur->held_msgs, held, cur->ndoms - cur->ngone, cur->shards, cur->answered);
	if (m->redis_up >= 0) {
		top_age(m->resync_age_s, r1, sizeof(r1));
		snprintf(rs, sizeof(rs), "%s, last full load %s ago",
			 m->redis_up ? "connected" : "DOWN (serving the last snapshot)", r1);
	}
	if (m->have)
		snprintf(r1, sizeof(r1), "%" PRIu64, m->drains_running);
	else
		snprintf(r1, sizeof(r1), "-");
	top_line(f, "redis: %s    drains running: %s    ATRN sessions: %zu", rs, r1, cur->natrn);
	top_line(f, "%s", "");
}

static int top_dom_cmp(const void *a, const void *b)
{
	const struct etrnctl_top_dom *x = *(const struct etrnctl_top_dom *const *)a;
	const struct etrnctl_top_dom *y = *(const struct etrnctl_top_dom *const *)b;

	if (x->msgs != y->msgs)
		return x->msgs < y->msgs ? 1 : -1;
	return strcmp(x->name, y->name);
}

/* The top max domains by held messages; a drain's progress (held fewer than
 * the peak top has seen) as a bar. */
static void top_domains(struct top_frame *f, const struct etrnctl_top_snap *cur, size_t max)
{
	const struct etrnctl_top_dom **v = cur->ndoms ? calloc(cur->ndoms, sizeof(*v)) : NULL;
	char bytes[32], age[32], bar[TOP_BAR_MAX];

	if (cur->ndoms && !v) {
		f->err = -ENOMEM;
		return;
	}
	for (size_t i = 0; i < cur->ndoms; i++)
		v[i] = &cur->doms[i];
	if (cur->ndoms)
		qsort(v, cur->ndoms, sizeof(*v), top_dom_cmp);
	top_line(f, "%-32s %9s %10s %8s  %s", "DOMAIN", "HELD", "BYTES", "OLDEST",
		 "DRAINED SINCE TOP STARTED");
	for (size_t i = 0; i < cur->ndoms && i < max; i++) {
		const struct etrnctl_top_dom *d = v[i];

		top_bytes(d->bytes, bytes, sizeof(bytes));
		top_age(d->oldest_s, age, sizeof(age));
		bar[0] = '\0';
		if (d->peak > d->msgs)
			top_bar(d->peak - d->msgs, d->peak, bar, sizeof(bar));
		top_line(f, "%-32s %9" PRIu64 " %10s %8s  %s", d->name, d->msgs, bytes, age, bar);
	}
	if (cur->ndoms > max)
		top_line(f, "... and %zu more domains", cur->ndoms - max);
	if (cur->ndoms == cur->ngone)
		top_line(f, "(no mail held)");
	free(v);
}

static void top_atrn(struct top_frame *f, const struct etrnctl_top_snap *cur)
{
	char bar[TOP_BAR_MAX];

	if (!cur->natrn)
		return;
	top_line(f, "%s", "");
	top_line(f, "%-16s %-20s %-24s %-12s %s", "ATRN USER", "CLIENT", "DOMAINS", "STATE",
		 "DELIVERED");
	for (size_t i = 0; i < cur->natrn; i++) {
		const struct etrnctl_top_atrn *a = &cur->atrn[i];

		top_bar(a->delivered, a->total, bar, sizeof(bar));
		top_line(f, "%-16s %-20s %-24s %-12s %s", a->user, a->client, a->domains, a->state,
			 bar);
	}
}

int etrnctl_top_render(const struct etrnctl_top_snap *prev, const struct etrnctl_top_snap *cur,
		       unsigned cols, unsigned rows, int ansi, struct buf *out)
{
	struct top_frame f = { .out = out, .cols = cols ? cols : TOP_DEFAULT_COLS, .ansi = ansi };
	size_t max = ETRNCTL_TOP_ONCE_DOMAINS, below = cur->natrn ? cur->natrn + 2 : 0;

	if (rows)
		max = rows > TOP_HEAD_ROWS + below + TOP_MIN_DOMAIN_ROWS
		      ? rows - TOP_HEAD_ROWS - below : TOP_MIN_DOMAIN_ROWS;
	if (ansi && buf_puts(out, TOP_ANSI_HOME))
		return -ENOMEM;
	top_head(&f, prev, cur);
	if (!cur->error[0]) {
		top_domains(&f, cur, max);
		top_atrn(&f, cur);
	}
	if (ansi && buf_puts(out, TOP_ANSI_EOS))
		return -ENOMEM;
	return f.err;
}

/* ---- the terminal and the loop ------------------------------------------- */

static volatile sig_atomic_t top_quit;

static void top_on_signal(int sig)
{
	(void)sig;
	top_quit = 1;
}

static uint64_t top_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* One sample: both requests. s->error says why there is none. */
static void top_sample(const struct etrnctl_top *t, struct etrnctl_top_snap *s)
{
	char *st = t->ask(t->ask_arg, "status json"), *mt;
	int rc;

	s->t_ms = top_now_ms();
	s->error[0] = '\0';
	if (!st) {
		snprintf(s->error, sizeof(s->error), "%s (is etrnd running with this config?)",
			 strerror(errno));
		etrnctl_top_snap_free(s);
		etrnctl_top_parse_metrics(NULL, &s->m);
		return;
	}
	rc = etrnctl_top_parse_status(st, strlen(st), s);
	if (rc)
		snprintf(s->error, sizeof(s->error), "status json: %s",
			 rc == -ENOMEM ? "out of memory" : "not the expected reply");
	free(st);
	mt = t->ask(t->ask_arg, "metrics");
	etrnctl_top_parse_metrics(mt, &s->m);
	free(mt);
}

static void top_size(unsigned *cols, unsigned *rows)
{
	struct winsize ws;

	*cols = TOP_DEFAULT_COLS;
	*rows = 0;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col && ws.ws_row) {
		*cols = ws.ws_col;
		*rows = ws.ws_row;
	}
}

/* Raw-ish input (no echo, no line editing, Ctrl-C a key: the loop reads it
 * and quits through the same door as q), the alternate screen. */
static int top_term_enter(struct termios *saved)
{
	struct termios raw;

	if (tcgetattr(STDIN_FILENO, saved))
		return -errno;
	raw = *saved;
	raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO | ISIG);
	raw.c_cc[VMIN] = 0;
	raw.c_cc[VTIME] = 0;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw))
		return -errno;
	(void)fd_write_all(STDOUT_FILENO, TOP_ANSI_ENTER, strlen(TOP_ANSI_ENTER));
	return 0;
}

static void top_term_leave(const struct termios *saved)
{
	(void)fd_write_all(STDOUT_FILENO, TOP_ANSI_LEAVE, strlen(TOP_ANSI_LEAVE));
	(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, saved);
}

/* Wait until the next frame is due (or a key, a signal): 1 to quit. */
static int top_wait(uint64_t due_ms)
{
	struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
	char keys[64];

	while (!top_quit) {
		uint64_t now = top_now_ms();
		ssize_t n;

		if (now >= due_ms)
			return 0;
		if (poll(&p, 1, (int)(due_ms - now)) <= 0)
			continue;
		n = read(STDIN_FILENO, keys, sizeof(keys));
		if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
			return 1;  /* the terminal went away */
		for (ssize_t i = 0; i < n; i++)
			if (keys[i] == 'q' || keys[i] == 'Q' || keys[i] == TOP_KEY_CTRL_C)
				return 1;
	}
	return 1;
}

static void top_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = top_on_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: poll() returns at once with EINTR. */
	(void)sigaction(SIGTERM, &sa, NULL);
	(void)sigaction(SIGHUP, &sa, NULL);
	(void)sigaction(SIGINT, &sa, NULL);
}

/* --once: two samples an interval apart (rates), one plain frame. */
static int top_once(const struct etrnctl_top *t)
{
	struct etrnctl_top_snap a = { 0 }, b = { 0 };
	struct buf out;
	int rc = 0;

	buf_init(&out, TOP_FRAME_MAX);
	top_sample(t, &a);
	if (!a.error[0]) {
		struct timespec ts = { ETRNCTL_TOP_INTERVAL_MS / 1000,
				       (ETRNCTL_TOP_INTERVAL_MS % 1000) * 1000000L };
		(void)nanosleep(&ts, NULL);
		top_sample(t, &b);
		if (etrnctl_top_carry_peaks(&a, &b))
			snprintf(b.error, sizeof(b.error), "out of memory");
	}
	if (a.error[0] || b.error[0]) {
		fprintf(stderr, "etrnctl: top: %s\n", a.error[0] ? a.error : b.error);
		rc = 1;
	} else if (etrnctl_top_render(&a, &b, 0, 0, 0, &out) ||
		   fd_write_all(STDOUT_FILENO, out.data, out.len)) {
		fprintf(stderr, "etrnctl: top: cannot write the frame\n");
		rc = 1;
	}
	etrnctl_top_snap_free(&a);
	etrnctl_top_snap_free(&b);
	buf_free(&out);
	return rc;
}

int etrnctl_top_run(const struct etrnctl_top *t)
{
	struct etrnctl_top_snap snap[2] = { { 0 }, { 0 } };
	struct termios saved;
	struct buf out;
	unsigned cols, rows, k = 0;
	int rc;

	if (t->once)
		return top_once(t);
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
		fprintf(stderr, "etrnctl: top needs a terminal (or --once for one plain frame)\n");
		return 2;
	}
	top_signals();
	if ((rc = top_term_enter(&saved))) {
		fprintf(stderr, "etrnctl: top: terminal: %s\n", strerror(-rc));
		return 1;
	}
	buf_init(&out, TOP_FRAME_MAX);
	for (int first = 1; !top_quit; first = 0, k ^= 1) {
		struct etrnctl_top_snap *cur = &snap[k], *prev = first ? NULL : &snap[k ^ 1];
		uint64_t due = top_now_ms() + ETRNCTL_TOP_INTERVAL_MS;

		top_sample(t, cur);
		if (etrnctl_top_carry_peaks(prev, cur))
			snprintf(cur->error, sizeof(cur->error), "out of memory");
		top_size(&cols, &rows);
		buf_reset(&out);
		if (etrnctl_top_render(prev && !prev->error[0] ? prev : NULL, cur, cols, rows, 1,
				       &out) == 0)
			(void)fd_write_all(STDOUT_FILENO, out.data, out.len);
		if (top_wait(due))
			break;
	}
	top_term_leave(&saved);
	etrnctl_top_snap_free(&snap[0]);
	etrnctl_top_snap_free(&snap[1]);
	buf_free(&out);
	return 0;
}
