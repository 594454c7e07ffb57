/* SPDX-License-Identifier: MIT */
/*
 * domtab: the immutable table of customer domains that RCPT is checked
 * against, with each domain's settings (DESIGN.md section 7). Built by the
 * control thread from a mutable domtab_builder, then only read: any number of
 * threads at once, no locks. Lookups are case-insensitive, ignore one
 * trailing dot, and cost one hash probe sequence; a row named "*.example.test"
 * is a wildcard that also covers every name under example.test (probed only
 * when the exact name misses and the table has wildcards).
 *
 * domtab_live is the published current table: the control thread swaps in a
 * new one with one atomic pointer store and frees the old one after every
 * engine thread has passed a quiescent point (core/epoch.h).
 */
#ifndef ETRND_CORE_DOMTAB_H
#define ETRND_CORE_DOMTAB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/cidr.h"

#define DOMTAB_NAME_MAX 255 /* RFC 1035 2.3.4 */
#define DOMTAB_CIDR_MAX CIDR_LIST_MAX  /* etrn_from networks per domain */

struct epoch;
struct rcptset;

/* A domain's drain TLS policy (Postfix's smtp_tls_security_level):
 * MAY STARTTLS when offered, else clear (opportunistic, the default);
 * MUST never deliver in clear (no STARTTLS offered or refused: the mail
 * stays held); VERIFY is MUST plus the customer's certificate checked
 * against tls_ca_file (or the system store) and the destination name. */
enum domtab_tls { DOMTAB_TLS_MAY = 0, DOMTAB_TLS_MUST = 1, DOMTAB_TLS_VERIFY = 2 };

/* A domain's delivery mode (Redis field "mode"): HOLD (the default) keeps
 * its mail until ETRN, ATRN or expiry; DELIVER hands it to the outbound
 * scheduler (proto/sched.h) at once, retried with back-off, like a backup
 * MX or a permanently connected customer. */
enum domtab_mode { DOMTAB_MODE_HOLD = 0, DOMTAB_MODE_DELIVER = 1 };

/* "hold" or "deliver" ("hold" for anything else). Static. */
const char *domtab_mode_name(enum domtab_mode m);

/* The policy's name as Redis and etrnctl spell it ("may", "must",
 * "verify"); "may" for anything else. Static. */
const char *domtab_tls_name(enum domtab_tls t);

/*
 * A domain's row. In a built table every pointer points into the table and
 * stays valid as long as the table does; strings are NUL-terminated, NULL
 * when the field is not set.
 */
struct domtab_row {
	const char *name;            /* lower case, no trailing dot; "*.x.test" = wildcard */
	const char *queue;           /* named queue (ETRN #queue), NULL = none */
	const char *dest;            /* "host[:port]" or NULL for MX ("mx") */
	const char *owner;           /* user who may ETRN it, NULL = none */
	const struct cidr *etrn_from;
	unsigned netrn_from;
	uint64_t max_hold_ms;        /* 0 = the daemon's default */
	uint64_t quota_bytes;        /* 0 = no quota */
	enum domtab_tls tls;
	enum domtab_mode mode;
	int rcpt_check;              /* 1: RCPT only for recipients in rcpts (issue 19) */
	/* The row's recipient set (core/rcptset.h), owned by the control
	 * thread's loader (admin/rcptload.h) and valid as long as the table;
	 * NULL = none loaded (with rcpt_check on: 451 4.3.0, try later). */
	const struct rcptset *rcpts;
};

struct domtab;
struct domtab_builder;

/* --- building (control thread) ------------------------------------------ */

struct domtab_builder *domtab_builder_new(void);
struct domtab_builder *domtab_builder_free(struct domtab_builder *b);

/* Add or replace the row row->name (any case, optional trailing dot; copied).
 * Returns 0, -EINVAL for an empty or overlong name or too many CIDRs, or
 * -ENOMEM. */
int domtab_builder_put(struct domtab_builder *b, const struct domtab_row *row);

/* Point the row named name at the recipient set s (not owned; NULL =
 * none). 1 if the row is there, 0 if not. */
int domtab_builder_set_rcpts(struct domtab_builder *b, const char *name,
		const struct rcptset *s);

/* Remove a row; 1 if it was there, 0 if not. */
int domtab_builder_del(struct domtab_builder *b, const char *name);

/* The row named name in the builder (valid until the next put/del/free), or
 * NULL. */
const struct domtab_row *domtab_builder_get(const struct domtab_builder *b,
		const char *name);

size_t domtab_builder_count(const struct domtab_builder *b);

/* Row i of the builder (0 <= i < domtab_builder_count()), in no particular
 * order, NULL past the end; valid until the next put/del/free. */
const struct domtab_row *domtab_builder_row_at(const struct domtab_builder *b, size_t i);

/* An immutable table with every row of b (copied; b is unchanged). NULL on
 * allocation failure. */
struct domtab *domtab_build(const struct domtab_builder *b);

/*
 * Routes (Redis etrnd:route:<domain> = "host:port", Postfix's transport
 * map): where the scheduler sends a domain's outbound mail, overriding
 * relayhost and MX. dest as relayhost spells it ("[host]:port": no MX
 * look-up; "host[:port]": host's MX). The name may be a wildcard
 * "*.example.com" as for rows. put adds or replaces (copied): 0, -EINVAL
 * (bad name or dest), -ENOMEM; del: 1 if it was there, 0 if not.
 */
int domtab_builder_route_put(struct domtab_builder *b, const char *domain, const char *dest);
int domtab_builder_route_del(struct domtab_builder *b, const char *domain);

/* The builder's route for exactly domain (no wildcard walk), valid until the
 * next route put/del/free, or NULL; and how many routes it has. */
const char *domtab_builder_route_get(const struct domtab_builder *b, const char *domain);
size_t domtab_builder_route_count(const struct domtab_builder *b);

/* A route's dest is at most DOMTAB_ROUTE_MAX - 1 characters of
 * DOMTAB_ROUTE_CHARS that resolver_dest_split() takes apart into a numeric
 * address or a host name (one label is fine) and a port 1-65535:
 * "[mx.example.net]:2525", "relay.example.net", "192.0.2.1:25",
 * "[2001:db8::1]:25". Pure. 0 or -EINVAL. */
#define DOMTAB_ROUTE_MAX 300
#define DOMTAB_ROUTE_CHARS \
	"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]"
int domtab_route_dest_check(const char *dest);

/* The route of domain (len bytes, any case): its own entry, else the
 * nearest wildcard above it, else NULL. Valid as long as t. */
const char *domtab_route(const struct domtab *t, const char *domain, size_t len);
size_t domtab_route_count(const struct domtab *t);

/* Shorthand for tests and the static relay_domains list: a table of n names
 * with default settings. NULL on allocation failure. */
struct domtab *domtab_new(const char *const *domains, size_t n);

/* Free the table. NULL is fine. Returns NULL. */
struct domtab *domtab_free(struct domtab *t);

/* --- reading (any thread) ----------------------------------------------- */

/* The row for domain (len bytes, any case, optional trailing dot): the exact
 * row, else the nearest wildcard row "*.parent". NULL when neither exists.
 * Valid as long as the table is. */
const struct domtab_row *domtab_find(const struct domtab *t, const char *domain,
		size_t len);

/* 1 if domtab_find() finds a row. */
int domtab_lookup(const struct domtab *t, const char *domain, size_t len);

size_t domtab_count(const struct domtab *t);

/* Row i (0 <= i < domtab_count()), in no particular order, for walks like
 * ETRN #queue; NULL past the end. Valid as long as the table. */
const struct domtab_row *domtab_row_at(const struct domtab *t, size_t i);

/* 1 if addr (AF_INET or AF_INET6; v4-mapped v6 counts as v4) is inside one
 * of the row's etrn_from networks. */
int domtab_row_allows(const struct domtab_row *row, const struct sockaddr *addr);

/* --- the published table ------------------------------------------------ */

struct domtab_live;

/* A holder publishing initial (taken over; may be NULL = empty) to readers
 * registered with e. NULL on allocation failure. */
struct domtab_live *domtab_live_new(struct domtab *initial, struct epoch *e);

/* Free the holder and its current table; no reader may use it any more. */
struct domtab_live *domtab_live_free(struct domtab_live *lv);

/* Reader: the current table, never NULL. Valid until the calling engine
 * thread's next quiescent point (the next loop turn): never keep it longer. */
const struct domtab *domtab_live_get(const struct domtab_live *lv);

/* Writer (one thread at a time): publish t (taken over), wait until no
 * reader can still hold the old table, free it. */
void domtab_live_swap(struct domtab_live *lv, struct domtab *t);

/* Whether the table's source (Redis) is reachable. While it is not, a domain
 * missing from the table may just be one we have not heard of: the RCPT
 * verdict is then a temporary failure, not a rejection. */
void domtab_live_set_stale(struct domtab_live *lv, int stale);
int domtab_live_stale(const struct domtab_live *lv);

#endif
