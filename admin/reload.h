/* SPDX-License-Identifier: MIT */
/*
 * reload: SIGHUP. Re-read the configuration (the same file and -o options
 * as at start), check it whole, and put the keys that can change live into
 * force: log_level, the TLS certificates, key, trust store and ciphers
 * (new handshakes only; sessions keep theirs), and Redis (address, prefix,
 * resync; the control thread reconnects). Every other changed key is
 * logged "KEY changed: takes effect at restart". A bad configuration is
 * logged "FILE:LINE: what is wrong" and nothing changes.
 */
#ifndef ETRND_ADMIN_RELOAD_H
#define ETRND_ADMIN_RELOAD_H

#include <stddef.h>

#include "core/config.h"

struct control;
struct tls_ctx;

/* Where the configuration comes from: the file, then each "KEY=VALUE" of
 * over[] (etrnd's -o). Borrowed: must outlive the reload. */
struct reload_src {
	const char *path;
	const char *const *over;
	unsigned nover;
};

/* What a reload acts on, all owned by the caller and outliving the
 * reload: the running TLS contexts (tls_server NULL when none was made)
 * and the control thread. */
struct cluster_auth;
struct reload_live {
	struct tls_ctx *tls_server;
	struct tls_ctx *tls_client;
	struct control *ctl;
	struct cluster_auth *ca;        /* cluster_secret_file, read again; NULL: none */
};

/* Read src into cfg (which this fills from the defaults up): the file, the
 * -o options, then every cross-check etrnd makes at start (config_finish,
 * config_check_tls, smtpd_check_config). Returns 0, or -1 with err set to
 * "FILE:LINE: what is wrong" (or "command line -o: ..."). Either way cfg
 * holds allocations: config_free() it. */
int reload_read(const struct reload_src *src, struct config *cfg, char *err,
		size_t errlen);

struct reload;

/* Remember boot, the configuration the daemon starts with, as read (call
 * before anything adjusts it, such as max_connections fitted to the
 * descriptor limit): the values a restart key is compared with. A shallow
 * copy: boot's allocations (relay_domains, activators) are borrowed and
 * must outlive the reload. NULL when out of memory. Free with
 * reload_free(). */
struct reload *reload_new(const struct reload_src *src, const struct config *boot);
struct reload *reload_free(struct reload *r); /* NULL fine; returns NULL */

/* What the reload acts on, once it runs (before the first reload_run()). */
void reload_attach(struct reload *r, const struct reload_live *live);

/* SIGHUP: read, check, apply what is live, log what is not (see above).
 * Runs on the signal-handling thread; engine threads go on meanwhile.
 * Returns 0 when the new configuration was taken (restart keys may still
 * be pending), -1 when it was refused (logged; nothing changed). */
int reload_run(struct reload *r);

#endif
