/* SPDX-License-Identifier: MIT */
/*
 * ctlrow: etrnctl's input side, a domain row validated from "domain add"
 * options or from one line of an import CSV, ready to write as a Redis hash
 * (schema.h). Pure: no I/O, no Redis; the checks that need Redis (does the
 * owner exist, was the domain already in this file) stay in etrnctl.
 */
#ifndef ETRND_ADMIN_CTLROW_H
#define ETRND_ADMIN_CTLROW_H

#include <stddef.h>

#include "core/domtab.h"

#define CTLROW_COLS 10           /* domain and the nine fields of a row */
#define CTLROW_LINE_MAX 8192     /* longest import line, ending included */

/* The import columns in their default order (a header may reorder them);
 * [0] is "domain", the rest are the schema.h field names. */
extern const char *const ctlrow_cols[CTLROW_COLS];

/* "domain,queue,...,mode" into buf (cut short if len is too small). Returns
 * buf. */
char *ctlrow_cols_list(char *buf, size_t len);

/* Values of a row as given (NULL or "" = not set); they are not copied
 * until ctlrow_make. */
struct ctlrow_opts {
	const char *dest, *queue, *etrn_from, *owner, *max_hold, *quota, *tls, *mode;
	const char *rcpt_check;
};

/* A validated domain row: field/value pairs, always with tls (so the hash
 * is never empty), mode and rcpt_check only when given (absent = hold,
 * off). Its pointers point
 * into the struct itself or at string constants: it outlives what it was
 * made from, but is not to be copied by value. */
struct ctlrow {
	char name[DOMTAB_NAME_MAX + 1];
	const char *f[CTLROW_COLS];
	const char *v[CTLROW_COLS];
	int n;
	const char *queue, *owner;       /* NULL when not set */
	char etrn[DOMTAB_CIDR_MAX * 48]; /* etrn_from, normalised */
	char quota[24];                  /* quota_bytes, in bytes */
	char buf[CTLROW_LINE_MAX];       /* copies of the other values */
};

/*
 * Validate domain and the options o into r: the domain normalised, the
 * networks normalised, a quota in bytes, max_hold as given (every reader
 * parses it with core/units.h). Returns 0, or -1 with why set to
 * "--OPTION: what is wrong" (or "domain ...").
 */
int ctlrow_make(struct ctlrow *r, const char *domain, const struct ctlrow_opts *o,
		char *why, size_t whylen);

/* Where the columns of an import file are; starts with ctlrow_csv_init. */
struct ctlrow_csv {
	int colmap[CTLROW_COLS];         /* field i is column colmap[i] */
	int ncols;
	int saw_data;                    /* a header may only come first */
};

enum ctlrow_csv_kind {
	CTLROW_CSV_SKIP,       /* blank, comment or header: nothing to write */
	CTLROW_CSV_ROW,        /* *r holds a validated row */
	CTLROW_CSV_BAD_ROW,    /* this line is wrong: report it, go on */
	CTLROW_CSV_BAD_FILE,   /* the header cannot be read: stop (exit 1) */
	CTLROW_CSV_BAD_USAGE,  /* the header names bad columns: stop (exit 2) */
};

void ctlrow_csv_init(struct ctlrow_csv *c);

/*
 * One line of an import file: line holds n bytes as getline(3) read them
 * (line ending included, a NUL after them) and is changed in place; lineno
 * counts from 1 (a UTF-8 byte order mark is dropped on line 1). A header
 * line ("domain,..." before any data) sets the column order in c. On a BAD
 * kind err holds "PATH:LINE: what is wrong".
 */
enum ctlrow_csv_kind ctlrow_csv_line(struct ctlrow_csv *c, char *line, size_t n,
		const char *path, unsigned long lineno, struct ctlrow *r, char *err,
		size_t errlen);

#endif
