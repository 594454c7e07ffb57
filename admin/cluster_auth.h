/* SPDX-License-Identifier: MIT */
/*
 * cluster_auth: the shared secret the nodes of a cluster authenticate with
 * on cluster_listen (issue 16). It loads cluster_secret_file (its first
 * line, at least CLUSTER_AUTH_SECRET_MIN bytes) at start and again on
 * SIGHUP, gives the secret to this node's clients of other nodes (the
 * cross-node ATRN, the decommission hand-off), and is the auth_backend
 * (proto/auth.h) of the cluster listener: authcid a node id, the password
 * compared in constant time, failures limited per address.
 */
#ifndef ETRND_ADMIN_CLUSTER_AUTH_H
#define ETRND_ADMIN_CLUSTER_AUTH_H

#include <stddef.h>

#include "core/config.h"
#include "proto/auth.h"

/* Shortest secret taken (bytes of the first line, without its newline):
 * 16 random bytes are out of reach of any guessing a failure limit lets
 * through. The longest is RFC 4616's 255 octets of passwd, what the
 * client side sends (SMTP_CLIENT_AUTH_PART_MAX) and the server takes
 * (AUTH_PASS_MAX): a secret one side accepts the other must too. */
#define CLUSTER_AUTH_SECRET_MIN 16
#define CLUSTER_AUTH_SECRET_MAX 255
_Static_assert(CLUSTER_AUTH_SECRET_MAX <= AUTH_PASS_MAX, "the server takes the whole secret");

struct cluster_auth;

/*
 * Load cfg->cluster_secret_file and set up the failure limit
 * (cfg->auth_failure_limit per minute and address). cfg must outlive the
 * result. Returns NULL with err "FILE: what is wrong" (unreadable, empty
 * first line, shorter than CLUSTER_AUTH_SECRET_MIN, longer than
 * CLUSTER_AUTH_SECRET_MAX, a NUL in it) or on out of memory; the daemon
 * exits 2 then. When cluster_secret_file is "" there is no secret: NULL
 * with err "" (not an error: no cluster transfers).
 */
struct cluster_auth *cluster_auth_new(const struct config *cfg, char *err, size_t errlen);

/* Read the file again (SIGHUP). 0, or -1 with err set and the old secret
 * kept. Thread-safe against every other call. */
int cluster_auth_reload(struct cluster_auth *ca, const char *path, char *err, size_t errlen);

/* Copy the secret into out (NUL-terminated; outlen at least
 * CLUSTER_AUTH_SECRET_MAX + 1) for a client's AUTH PLAIN as this node.
 * Returns its length, or -ENOSPC. The caller wipes its copy after use.
 * Thread-safe. */
int cluster_auth_secret(const struct cluster_auth *ca, char *out, size_t outlen);

/* The interface of the cluster listener's AUTH (proto/auth.h): the answer
 * is computed at once (no Redis, no crypt) and delivered through
 * loop_post() as the interface wants. Valid until cluster_auth_free(). */
const struct auth_backend *cluster_auth_backend(struct cluster_auth *ca);

/* 1 when s (len bytes) is a node id by config.c's syntax (1-63 of letters,
 * digits, '.', '_' and '-'), else 0. */
int cluster_auth_id_ok(const char *s, size_t len);

/* Free (the secret wiped). NULL is fine. Returns NULL. */
struct cluster_auth *cluster_auth_free(struct cluster_auth *ca);

#endif
