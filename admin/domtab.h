/* SPDX-License-Identifier: MIT */
/*
 * domtab: the immutable table of customer domains that RCPT is checked
 * against. Built once, then only read (any number of threads at once, no
 * locks). Lookups are case-insensitive, ignore one trailing dot, and cost one
 * hash probe sequence. Redis-fed snapshots with per-domain settings replace
 * the static list in a later issue; the lookup interface stays.
 */
#ifndef ETRND_ADMIN_DOMTAB_H
#define ETRND_ADMIN_DOMTAB_H

#include <stddef.h>

struct domtab;

/* Build a table from n domain names (copied). NULL on allocation failure. */
struct domtab *domtab_new(const char *const *domains, size_t n);

/* Free the table. NULL is fine. Returns NULL. */
struct domtab *domtab_free(struct domtab *t);

/* 1 if domain (len bytes, any case, optional trailing dot) is in the table. */
int domtab_lookup(const struct domtab *t, const char *domain, size_t len);

size_t domtab_count(const struct domtab *t);

#endif
