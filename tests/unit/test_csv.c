/* SPDX-License-Identifier: MIT */
/* Tests for admin/csv.c (the RFC 4180 line splitter) and admin/ctlrow.c's
 * import line parser: quotes, empty fields, line endings, headers, and every
 * bad line reported as "FILE:LINE: what is wrong". Table-driven; each data
 * line is replayed with LF, CRLF and no line ending. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "admin/csv.h"
#include "admin/ctlrow.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MAXF 8

struct split_case {
	const char *in;
	int want_n;                  /* -1: refused */
	const char *want[MAXF];      /* the fields, or want[0] = the reason */
};

static const struct split_case split_cases[] = {
	{ "a,b,c", 3, { "a", "b", "c" } },
	{ "a", 1, { "a" } },
	{ "", 1, { "" } },
	{ ",", 2, { "", "" } },
	{ "a,,b,", 4, { "a", "", "b", "" } },
	{ " a , b\t,\tc ", 3, { "a", "b", "c" } },
	{ "\"a,b\",c", 2, { "a,b", "c" } },
	{ "\"say \"\"hi\"\"\",x", 2, { "say \"hi\"", "x" } },
	{ "\"\",\"\"", 2, { "", "" } },
	{ "\"\"\"\"", 1, { "\"" } },
	{ "x,\"10.0.0.0/8,::1\",y", 3, { "x", "10.0.0.0/8,::1", "y" } },
	{ "\" padded \",b", 2, { "padded", "b" } },
	{ "a,b,c,d,e,f,g,h", 8, { "a", "b", "c", "d", "e", "f", "g", "h" } },
	{ "a,b,c,d,e,f,g,h,i", -1, { "more than 8 columns" } },
	{ "\"abc", -1, { "unterminated quoted field" } },
	{ "a,\"b", -1, { "unterminated quoted field" } },
	{ "\"a\"b,c", -1, { "text after a closing quote" } },
	{ "a\"b,c", -1, { "quote inside an unquoted field" } },
	{ "a,b\"", -1, { "quote inside an unquoted field" } },
};

Test(csv, split)
{
	for (size_t i = 0; i < N(split_cases); i++) {
		const struct split_case *t = &split_cases[i];
		size_t len = strlen(t->in);
		char *line = malloc(len + 1), *f[MAXF], why[128] = "";
		int n;

		cr_assert_not_null(line);
		memcpy(line, t->in, len + 1);
		n = csv_split(line, f, MAXF, why, sizeof(why));
		cr_expect_eq(n, t->want_n, "[%s]: %d fields, want %d (%s)", t->in, n, t->want_n, why);
		if (n < 0 && t->want_n < 0)
			cr_expect_str_eq(why, t->want[0], "[%s]", t->in);
		for (int k = 0; k < n && n == t->want_n; k++)
			cr_expect_str_eq(f[k], t->want[k], "[%s] field %d", t->in, k);
		free(line);
	}
}

/* One import file, line by line: what each line is, and for a bad one the
 * report; for a row, its name and a field to check. */
struct line_case {
	const char *line;            /* without its ending */
	enum ctlrow_csv_kind want;
	const char *want_err;        /* BAD_*: the whole report */
	const char *want_name;       /* ROW: the domain */
	const char *want_field, *want_value; /* ROW: one field of the row (NULL: absent) */
};

struct file_case {
	const char *name;
	struct line_case lines[12];
};

#define SKIP(l) { .line = (l), .want = CTLROW_CSV_SKIP }
#define ROW(l, name, f, v) \
	{ .line = (l), .want = CTLROW_CSV_ROW, .want_name = (name), .want_field = (f), .want_value = (v) }
#define BAD(l, kind, err) { .line = (l), .want = (kind), .want_err = (err) }

static const struct file_case files[] = {
	{ "header, quotes, empty fields", {
		SKIP("\xef\xbb\xbf" "domain,queue,dest,etrn_from,owner,max_hold,quota_bytes,tls"),
		ROW("a.test,q1,mx,\"10.0.0.0/8, ::1\",,5d,100M,must", "a.test", "etrn_from",
		    "10.0.0.0/8,::1/128"),
		ROW("B.Test.,,,,,,,", "b.test", "tls", "may"),
		ROW("c.test,,,,,1w,64k,", "c.test", "quota_bytes", "65536"),
		ROW("d.test,,,,,1500ms", "d.test", "max_hold", "1500ms"),
		SKIP(""),
		SKIP("  # a comment"),
		BAD("\"e.test\",\"q,2\"", CTLROW_CSV_BAD_ROW,
		    "f.csv:8: queue: queue name \"q,2\": only letters, digits and . _ - allowed"),
		BAD("bad..domain.test,,,,,,,", CTLROW_CSV_BAD_ROW,
		    "f.csv:9: domain \"bad..domain.test\": not a domain name (want letters, digits and hyphens in dot-separated labels, like example.com or *.example.com)"),
		BAD("v.test,,,,,5 days,,", CTLROW_CSV_BAD_ROW,
		    "f.csv:10: max_hold: \"5 days\": not a duration (want like 5d, 12h, 30m or 3600s; also ms and w)"),
		BAD("\"u.test,,,", CTLROW_CSV_BAD_ROW, "f.csv:11: unterminated quoted field"),
		/* A header only comes first: later it is a bad row. */
		BAD("domain,queue", CTLROW_CSV_BAD_ROW,
		    "f.csv:12: domain \"domain\": want at least two labels, like example.com"),
	} },
	{ "reordered header", {
		SKIP("Domain ,etrn-from,QUEUE"),
		ROW("z.test,192.0.2.0/24,q9", "z.test", "queue", "q9"),
		BAD(",192.0.2.0/24,q9", CTLROW_CSV_BAD_ROW, "f.csv:3: no domain"),
		BAD("y.test,192.0.2.1/24,q9", CTLROW_CSV_BAD_ROW,
		    "f.csv:4: etrn_from: \"192.0.2.1/24\": host bits set (did you mean 192.0.2.0/24?)"),
		BAD("y.test,192.0.2.0/24,q9,extra", CTLROW_CSV_BAD_ROW, "f.csv:5: more than 3 columns"),
	} },
	{ "no header", {
		BAD("w.test,,h:99999", CTLROW_CSV_BAD_ROW,
		    "f.csv:1: dest: \"h:99999\": bad port (want 1 to 65535)"),
		BAD("w.test,,,,,,,sometimes", CTLROW_CSV_BAD_ROW,
		    "f.csv:2: tls: \"sometimes\": want may, must or verify"),
		BAD("w.test,,,,,,1025T", CTLROW_CSV_BAD_ROW,
		    "f.csv:3: quota: \"1025T\": too large (at most 1024T)"),
		BAD("w.test,,,,,50d", CTLROW_CSV_BAD_ROW,
		    "f.csv:4: max_hold: \"50d\": want a duration from 1s to 49d, as max_hold in etrnd.conf"),
		ROW("w.test", "w.test", "tls", "may"),
	} },
	{ "mode column", {
		SKIP("domain,mode,tls"),
		ROW("m.test,deliver,", "m.test", "mode", "deliver"),
		ROW("n.test,hold,must", "n.test", "mode", "hold"),
		ROW("o.test,,must", "o.test", "mode", NULL),
		BAD("p.test,Deliver,", CTLROW_CSV_BAD_ROW,
		    "f.csv:5: mode: \"Deliver\": want hold or deliver"),
		BAD("q.test,later,may", CTLROW_CSV_BAD_ROW, "f.csv:6: mode: \"later\": want hold or deliver"),
	} },
	{ "mode as the ninth column", {
		ROW("r.test,,,,,,,,deliver", "r.test", "mode", "deliver"),
		ROW("s.test,,,,,,,may", "s.test", "mode", NULL),
		BAD("t.test,,,,,,,,deliver,on,x", CTLROW_CSV_BAD_ROW, "f.csv:3: more than 10 columns"),
	} },
	{ "rcpt_check as the tenth column", {
		ROW("u.test,,,,,,,,,on", "u.test", "rcpt_check", "on"),
		ROW("v.test,,,,,,,,,off", "v.test", "rcpt_check", "off"),
		ROW("w.test,,,,,,,,", "w.test", "rcpt_check", NULL),
		BAD("x.test,,,,,,,,,yes", CTLROW_CSV_BAD_ROW, "f.csv:4: rcpt_check: \"yes\": want on or off"),
	} },
	{ "unknown column", {
		BAD("domain,queue,color", CTLROW_CSV_BAD_USAGE,
		    "f.csv:1: unknown column \"color\" (want domain,queue,dest,etrn_from,owner,max_hold,quota_bytes,tls,mode,rcpt_check)"),
	} },
	{ "column twice", {
		SKIP("# leading comment"),
		BAD("domain,etrn_from,etrn-from", CTLROW_CSV_BAD_USAGE,
		    "f.csv:2: column \"etrn-from\" given twice"),
	} },
	{ "bad header", {
		BAD("domain,\"queue", CTLROW_CSV_BAD_FILE, "f.csv:1: header: unterminated quoted field"),
	} },
};

static const char *const endings[] = { "\n", "\r\n", "" };

/* The value of field f in r, or NULL. */
static const char *row_field(const struct ctlrow *r, const char *f)
{
	for (int i = 0; i < r->n; i++)
		if (!strcmp(r->f[i], f))
			return r->v[i];
	return NULL;
}

static void check_line(struct ctlrow_csv *c, const struct line_case *t, unsigned long lineno,
		       const char *ending, struct ctlrow *r)
{
	size_t n = strlen(t->line) + strlen(ending);
	char *line = malloc(n + 1), err[1024] = "";
	enum ctlrow_csv_kind k;

	cr_assert_not_null(line);
	strcpy(line, t->line);
	strcat(line, ending);
	k = ctlrow_csv_line(c, line, n, "f.csv", lineno, r, err, sizeof(err));
	cr_expect_eq(k, t->want, "line %lu [%s] ending %zu: kind %d want %d (%s)", lineno, t->line,
		     strlen(ending), k, t->want, err);
	if (t->want_err && k == t->want)
		cr_expect_str_eq(err, t->want_err, "line %lu: got [%s]", lineno, err);
	if (t->want == CTLROW_CSV_ROW && k == t->want) {
		const char *v = row_field(r, t->want_field);

		cr_expect_str_eq(r->name, t->want_name, "line %lu", lineno);
		if (!t->want_value)
			cr_expect_null(v, "line %lu: %s = %s, want none", lineno, t->want_field, v);
		else
			cr_expect(v && !strcmp(v, t->want_value), "line %lu: %s = %s, want %s",
				  lineno, t->want_field, v ? v : "(none)", t->want_value);
	}
	free(line);
}

Test(csv, import_lines)
{
	struct ctlrow *r = malloc(sizeof(*r));

	cr_assert_not_null(r);
	for (size_t e = 0; e < N(endings); e++) {
		for (size_t fi = 0; fi < N(files); fi++) {
			struct ctlrow_csv c;

			ctlrow_csv_init(&c);
			for (size_t i = 0; i < N(files[fi].lines) && files[fi].lines[i].line; i++)
				check_line(&c, &files[fi].lines[i], i + 1, endings[e], r);
		}
	}
	free(r);
}

/* A header of one column; lines that are too long or hold a NUL. */
Test(csv, import_bad_lines)
{
	struct ctlrow *r = malloc(sizeof(*r));
	struct ctlrow_csv c;
	char err[256], *big = malloc(CTLROW_LINE_MAX + 2);
	char nul[] = "a.test,\0q\n";

	cr_assert(r && big);
	ctlrow_csv_init(&c);
	{
		char h[] = "domain\n";
		char d[] = ",q\n";

		cr_expect_eq(ctlrow_csv_line(&c, h, strlen(h), "f.csv", 1, r, err, sizeof(err)),
			     CTLROW_CSV_SKIP);
		cr_expect_eq(ctlrow_csv_line(&c, d, strlen(d), "f.csv", 2, r, err, sizeof(err)),
			     CTLROW_CSV_BAD_ROW);
		cr_expect_str_eq(err, "f.csv:2: more than 1 columns");
	}
	ctlrow_csv_init(&c);
	memset(big, 'a', CTLROW_LINE_MAX + 1);
	big[CTLROW_LINE_MAX + 1] = '\0';
	cr_expect_eq(ctlrow_csv_line(&c, big, CTLROW_LINE_MAX + 1, "f.csv", 7, r, err, sizeof(err)),
		     CTLROW_CSV_BAD_ROW);
	cr_expect_str_eq(err, "f.csv:7: line longer than 8192 characters");
	cr_expect_eq(ctlrow_csv_line(&c, nul, sizeof(nul) - 1, "f.csv", 8, r, err, sizeof(err)),
		     CTLROW_CSV_BAD_ROW);
	cr_expect_str_eq(err, "f.csv:8: NUL byte in the line");
	free(big);
	free(r);
}
