/* SPDX-License-Identifier: MIT */
/*
 * ctlrow: rows for etrnctl from options or CSV lines (ctlrow.h). Every value
 * goes through the schema.h validators the daemon uses on the same rows, so
 * what etrnctl writes the daemon reads the same way.
 */
#include "admin/ctlrow.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "admin/csv.h"
#include "admin/schema.h"
#include "core/ascii.h"

#define CTLROW_WHY_MAX 512
#define CTLROW_COL_ETRN_FROM 3   /* also spelt etrn-from in a header */

const char *const ctlrow_cols[CTLROW_COLS] = {
	"domain", SCHEMA_F_QUEUE, SCHEMA_F_DEST, SCHEMA_F_ETRN_FROM, SCHEMA_F_OWNER,
	SCHEMA_F_MAX_HOLD, SCHEMA_F_QUOTA, SCHEMA_F_TLS, SCHEMA_F_MODE, SCHEMA_F_RCPT_CHECK,
};

static const char *nz(const char *s)
{
	return s && *s ? s : NULL;
}

/* A copy of s in r->buf, or NULL when the buffer is full. */
static const char *keep(struct ctlrow *r, size_t *off, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p;

	if (*off + n > sizeof(r->buf))
		return NULL;
	p = r->buf + *off;
	memcpy(p, s, n);
	*off += n;
	return p;
}

static void add(struct ctlrow *r, const char *f, const char *v)
{
	r->f[r->n] = f;
	r->v[r->n++] = v;
}

/* etrn_from, max_hold, quota, tls, mode and rcpt_check: the values that are parsed,
 * not only checked. */
static int ctlrow_parsed(struct ctlrow *r, const struct ctlrow_opts *o, size_t *off,
			 char *why, size_t wl)
{
	struct cidr cidrs[DOMTAB_CIDR_MAX];
	char one[SCHEMA_WHY_MAX];
	enum domtab_tls tls;
	enum domtab_mode mode;
	uint64_t u;
	const char *s;

	if ((s = nz(o->etrn_from))) {
		unsigned n;

		if (cidr_list_parse(s, cidrs, DOMTAB_CIDR_MAX, &n, one, sizeof(one)))
			return snprintf(why, wl, "--etrn-from: %s", one), -1;
		if (cidr_list_format(cidrs, n, r->etrn, sizeof(r->etrn)))
			return snprintf(why, wl, "--etrn-from: too long"), -1;
		if (n)
			add(r, SCHEMA_F_ETRN_FROM, r->etrn);
	}
	if ((s = nz(o->owner))) {
		if (schema_user_check(s, one, sizeof(one)))
			return snprintf(why, wl, "--owner: %s", one), -1;
		add(r, SCHEMA_F_OWNER, r->owner = keep(r, off, s));
	}
	if ((s = nz(o->max_hold))) {
		if (schema_duration_parse(s, &u, one, sizeof(one)))
			return snprintf(why, wl, "--max-hold: %s", one), -1;
		add(r, SCHEMA_F_MAX_HOLD, keep(r, off, s));
	}
	if ((s = nz(o->quota))) {
		if (schema_size_parse(s, &u, one, sizeof(one)))
			return snprintf(why, wl, "--quota: %s", one), -1;
		snprintf(r->quota, sizeof(r->quota), "%llu", (unsigned long long)u);
		add(r, SCHEMA_F_QUOTA, r->quota);
	}
	s = nz(o->tls) ? o->tls : "may";
	if (schema_tls_parse(s, &tls, one, sizeof(one)))
		return snprintf(why, wl, "--tls: %s", one), -1;
	add(r, SCHEMA_F_TLS, domtab_tls_name(tls));
	if ((s = nz(o->mode))) {
		if (schema_mode_parse(s, &mode, one, sizeof(one)))
			return snprintf(why, wl, "--mode: %s", one), -1;
		add(r, SCHEMA_F_MODE, domtab_mode_name(mode));
	}
	if ((s = nz(o->rcpt_check))) {
		int on;

		if (schema_onoff_parse(s, &on, one, sizeof(one)))
			return snprintf(why, wl, "--rcpt-check: %s", one), -1;
		add(r, SCHEMA_F_RCPT_CHECK, on ? "on" : "off");
	}
	return 0;
}

int ctlrow_make(struct ctlrow *r, const char *domain, const struct ctlrow_opts *o,
		char *why, size_t wl)
{
	char one[SCHEMA_WHY_MAX];
	size_t off = 0;
	const char *s;

	memset(r, 0, offsetof(struct ctlrow, etrn));
	r->etrn[0] = r->quota[0] = '\0';
	if (schema_domain_norm(domain, 1, r->name, one, sizeof(one)))
		return snprintf(why, wl, "domain %s", one), -1;
	if ((s = nz(o->queue))) {
		if (schema_queue_check(s, one, sizeof(one)))
			return snprintf(why, wl, "--queue: %s", one), -1;
		add(r, SCHEMA_F_QUEUE, r->queue = keep(r, &off, s));
	}
	if ((s = nz(o->dest))) {
		if (schema_dest_check(s, one, sizeof(one)))
			return snprintf(why, wl, "--dest: %s", one), -1;
		add(r, SCHEMA_F_DEST, keep(r, &off, s));
	}
	if (ctlrow_parsed(r, o, &off, why, wl))
		return -1;
	for (int i = 0; i < r->n; i++)
		if (!r->v[i])
			return snprintf(why, wl, "values too long"), -1;
	return 0;
}

char *ctlrow_cols_list(char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (int i = 0; i < CTLROW_COLS && o < len; i++) {
		int r = snprintf(buf + o, len - o, "%s%s", i ? "," : "", ctlrow_cols[i]);

		o = r < 0 ? len : o + (size_t)r;
	}
	return buf;
}

void ctlrow_csv_init(struct ctlrow_csv *c)
{
	for (int i = 0; i < CTLROW_COLS; i++)
		c->colmap[i] = i;
	c->ncols = CTLROW_COLS;
	c->saw_data = 0;
}

/* Which column a header names, or -1. */
static int ctlrow_col(const char *name)
{
	size_t n = strlen(name);

	for (int k = 0; k < CTLROW_COLS; k++)
		if (ascii_eq_lit(name, n, ctlrow_cols[k]) ||
		    (k == CTLROW_COL_ETRN_FROM && ascii_eq_lit(name, n, "etrn-from")))
			return k;
	return -1;
}

/* A header line: it names (and may reorder) the columns. */
static enum ctlrow_csv_kind ctlrow_csv_header(struct ctlrow_csv *c, char *p, const char *path,
					      unsigned long lineno, char *err, size_t el)
{
	char *fields[CTLROW_COLS], why[CTLROW_WHY_MAX];
	int nf = csv_split(p, fields, CTLROW_COLS, why, sizeof(why)), has_domain = 0;

	c->saw_data = 1;
	if (nf < 0)
		return snprintf(err, el, "%s:%lu: header: %s", path, lineno, why),
		       CTLROW_CSV_BAD_FILE;
	for (int i = 0; i < nf; i++) {
		int col = ctlrow_col(fields[i]);

		if (col < 0) {
			char want[CTLROW_WHY_MAX];

			ctlrow_cols_list(want, sizeof(want));
			return snprintf(err, el, "%s:%lu: unknown column \"%s\" (want %s)", path,
					lineno, fields[i], want), CTLROW_CSV_BAD_USAGE;
		}
		for (int j = 0; j < i; j++)
			if (c->colmap[j] == col)
				return snprintf(err, el, "%s:%lu: column \"%s\" given twice", path,
						  lineno, fields[i]), CTLROW_CSV_BAD_USAGE;
		c->colmap[i] = col;
		has_domain |= col == 0;
	}
	if (!has_domain)
		return snprintf(err, el, "%s:%lu: no domain column", path, lineno),
		       CTLROW_CSV_BAD_USAGE;
	c->ncols = nf;
	return CTLROW_CSV_SKIP;
}

/* A data line (no line ending) into r. 0 or -1 with why. */
static int ctlrow_csv_row(const struct ctlrow_csv *c, char *line, struct ctlrow *r,
			  char *why, size_t wl)
{
	char *fields[CTLROW_COLS];
	const char *v[CTLROW_COLS] = { 0 };
	struct ctlrow_opts o;
	int n = csv_split(line, fields, c->ncols, why, wl);

	if (n < 0)
		return -1;
	for (int i = 0; i < n; i++)
		v[c->colmap[i]] = fields[i];
	if (!nz(v[0]))
		return snprintf(why, wl, "no domain"), -1;
	o = (struct ctlrow_opts){ .queue = v[1], .dest = v[2], .etrn_from = v[3],
				  .owner = v[4], .max_hold = v[5], .quota = v[6], .tls = v[7],
				  .mode = v[8], .rcpt_check = v[9] };
	if (ctlrow_make(r, v[0], &o, why, wl)) {
		/* "--queue: ..." reads oddly in a CSV report: say the column. */
		char tmp[CTLROW_WHY_MAX];

		if (why[0] == '-' && why[1] == '-') {
			snprintf(tmp, sizeof(tmp), "%s", why + 2);
			for (char *ch = tmp; *ch && *ch != ':'; ch++)
				if (*ch == '-')
					*ch = '_';
			snprintf(why, wl, "%s", tmp);
		}
		return -1;
	}
	return 0;
}

enum ctlrow_csv_kind ctlrow_csv_line(struct ctlrow_csv *c, char *line, size_t n,
				     const char *path, unsigned long lineno, struct ctlrow *r,
				     char *err, size_t el)
{
	char why[CTLROW_WHY_MAX], *p;

	if (n > CTLROW_LINE_MAX)
		return snprintf(err, el, "%s:%lu: line longer than %d characters", path, lineno,
				  CTLROW_LINE_MAX), CTLROW_CSV_BAD_ROW;
	if (memchr(line, '\0', n))
		return snprintf(err, el, "%s:%lu: NUL byte in the line", path, lineno),
		       CTLROW_CSV_BAD_ROW;
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	p = line;
	if (lineno == 1 && n >= 3 && !memcmp(p, "\xef\xbb\xbf", 3))
		p += 3; /* UTF-8 byte order mark from spreadsheets */
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0' || *p == '#')
		return CTLROW_CSV_SKIP;
	if (!c->saw_data && ascii_eq_n(p, "domain", 6) &&
	    (p[6] == ',' || p[6] == '\0' || p[6] == ' '))
		return ctlrow_csv_header(c, p, path, lineno, err, el);
	c->saw_data = 1;
	if (ctlrow_csv_row(c, p, r, why, sizeof(why)))
		return snprintf(err, el, "%s:%lu: %s", path, lineno, why), CTLROW_CSV_BAD_ROW;
	return CTLROW_CSV_ROW;
}
