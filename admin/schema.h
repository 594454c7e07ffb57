/* SPDX-License-Identifier: MIT */
/*
 * schema: the Redis schema of DESIGN.md section 7 and the validators shared by
 * etrnctl (which refuses bad input) and the control thread (which reads rows
 * someone may have written by hand). Pure functions: no I/O.
 *
 *   PREFIX domain:{<domain>} hash  queue dest etrn_from owner max_hold quota_bytes tls mode
 *                           rcpt_check
 *   PREFIX rcpts:{<domain>}  set   of valid recipients (core/rcptset.h entries), read
 *                           when the row's rcpt_check is on (issue 19)
 *   PREFIX rcpts_gen:{<domain>} string, a counter etrnctl bumps with every change of
 *                           the set: a resync reloads only sets whose counter moved
 *   PREFIX route:{<domain>}  string "[host]:port" or "host[:port]" (outbound route)
 *   PREFIX queue:{<name>}    set   of domains
 *   PREFIX user:{<name>}     hash  password (crypt(3) hash), domain:<d> = 1 per owned domain
 *   PREFIX events           channel: "domain <d>", "route <d>", "user <u>", "drain <queue>",
 *                           "rcpts <d>" (the set changed: read it again)
 *
 * Issue 16 (several nodes) changes and adds:
 *   - Hash tags: every per-name key is written PREFIX KIND:{NAME}
 *     ("etrnd:domain:{example.com}", "etrnd:route:{example.com}",
 *     "etrnd:user:{joe}", "etrnd:queue:{gold}", "etrnd:node:{edge-1}") so a
 *     domain's keys share a Redis Cluster slot. Readers accept the older
 *     untagged form too (the tagged one wins when both exist); etrnctl
 *     writes the tagged form and removes an untagged twin when it writes;
 *     "etrnctl keys migrate" renames them all.
 *   PREFIX node:{ID}        hash, TTL cluster_node_ttl, rewritten every
 *                           cluster_publish_interval and soon after a change:
 *                           addr (cluster_listen "host:port" or ""),
 *                           state (up|draining), started (unix s),
 *                           seen (unix ms), msgs, bytes (held totals),
 *                           gen ("<started ms>.<n>": moves with any d: field,
 *                           state or addr; readers re-read the hash then),
 *                           read (unix ms of its last read of the others),
 *                           and per domain "d:<domain>" = "<msgs> <bytes>"
 *                           (only domains with mail held)
 *   PREFIX nodes            sorted set: node id, score = seen (unix ms);
 *                           a member whose hash expired is a node gone
 *                           (etrnctl node forget ID removes it)
 *   PREFIX decommission:{ID} string "1": etrnctl node drain ID; the node
 *                           hands its mail off and exits, then deletes it
 *   events                  "drain <spec> from <node>" (an ETRN taken by
 *                           <node>), "node-drain <id>"
 */
#ifndef ETRND_ADMIN_SCHEMA_H
#define ETRND_ADMIN_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "core/domtab.h"

#define SCHEMA_NAME_MAX 64       /* queue and user names */
#define SCHEMA_DEST_MAX 300      /* "[v6]:port" or host:port */
#define SCHEMA_WHY_MAX 256

/* Field names of a domain row. */
#define SCHEMA_F_QUEUE "queue"
#define SCHEMA_F_DEST "dest"
#define SCHEMA_F_ETRN_FROM "etrn_from"
#define SCHEMA_F_OWNER "owner"
#define SCHEMA_F_MAX_HOLD "max_hold"
#define SCHEMA_F_QUOTA "quota_bytes"
#define SCHEMA_F_TLS "tls"
#define SCHEMA_F_MODE "mode"
#define SCHEMA_F_RCPT_CHECK "rcpt_check"
#define SCHEMA_F_PASSWORD "password"
#define SCHEMA_USER_DOMAIN "domain:"  /* prefix of owned-domain fields */

/*
 * Check and normalise a domain name: letters, digits, hyphens (RFC 1123),
 * at least two labels, one trailing dot dropped, lower-cased; "*.parent" (a
 * wildcard row) when wildcard is non-zero. out must hold DOMTAB_NAME_MAX + 1.
 * Returns 0, or -1 with why set.
 */
int schema_domain_norm(const char *in, int wildcard, char *out, char *why, size_t wl);

/* "mx", "host", "host:port", "1.2.3.4:25", "[2001:db8::1]:2525". */
int schema_dest_check(const char *s, char *why, size_t wl);

/* A domain's max_hold: a duration as core/units.h reads it ("5d", "12h",
 * "3600" = seconds, "1w", "1500ms") -> ms, in the range etrnd.conf's
 * max_hold takes (CONFIG_MAX_HOLD_MIN_MS..CONFIG_MAX_HOLD_MAX_MS). */
int schema_duration_parse(const char *s, uint64_t *ms, char *why, size_t wl);

/* A size as core/units.h reads it ("1048576", "100k", "50M", "2G", powers
 * of 1024) -> bytes; 0 is allowed (no quota). */
int schema_size_parse(const char *s, uint64_t *bytes, char *why, size_t wl);

/* "may", "must" or "verify" (enum domtab_tls). */
int schema_tls_parse(const char *s, enum domtab_tls *tls, char *why, size_t wl);

/* "hold" or "deliver" (enum domtab_mode). */
int schema_mode_parse(const char *s, enum domtab_mode *mode, char *why, size_t wl);

/* "on" or "off" (a row's rcpt_check) -> 1 or 0. */
int schema_onoff_parse(const char *s, int *on, char *why, size_t wl);

/* A route's destination (etrnd:route:<domain>, domtab_route_dest_check):
 * "[host]:port" (that host's addresses) or "host[:port]" (host's MX). */
int schema_route_check(const char *s, char *why, size_t wl);

/* Queue and user names: 1-64 of letters, digits and . _ - (users also @ +). */
int schema_queue_check(const char *s, char *why, size_t wl);
int schema_user_check(const char *s, char *why, size_t wl);

/*
 * Fill row from a hash's field/value pairs (fv[2i] field, fv[2i+1] value,
 * NUL-terminated; the row points into them and into cidrs, which must hold
 * DOMTAB_CIDR_MAX). name is the normalised domain. A bad value leaves that
 * field at its default and is reported in why ("field: reason"); unknown
 * fields are ignored. Returns the number of bad fields.
 */
int schema_row_from_fields(struct domtab_row *row, struct cidr *cidrs,
		const char *name, const char *const *fv, size_t nfv, char *why, size_t wl);

/* PREFIX KIND {NAME} into buf ("etrnd:" "domain:" "x.test" ->
 * "etrnd:domain:{x.test}"): the hash-tagged key every writer uses, so a
 * domain's keys share a Redis Cluster slot. Returns buf, or NULL when it
 * does not fit. */
char *schema_key(char *buf, size_t len, const char *prefix, const char *kind,
		const char *name);

/* PREFIX KIND NAME ("etrnd:domain:x.test"): the older untagged form, which
 * readers still accept (the tagged key wins when both exist), etrnctl
 * deletes when it writes the tagged twin, and "etrnctl keys migrate"
 * renames. Returns buf, or NULL when it does not fit. */
char *schema_key_untagged(char *buf, size_t len, const char *prefix, const char *kind,
		const char *name);

/*
 * The name in what follows PREFIX KIND in a key found by SCAN (rest, len
 * bytes, not necessarily NUL-terminated): "{x.test}" -> "x.test" (tagged),
 * "x.test" -> itself (untagged). *name points into rest, *nlen its length.
 * Returns 1 tagged, 0 untagged, -1 for neither ("", "{", "{}", "{x",
 * "x}", a brace inside): such a key is not ours to read.
 */
int schema_key_name(const char *rest, size_t len, const char **name, size_t *nlen);

#endif
