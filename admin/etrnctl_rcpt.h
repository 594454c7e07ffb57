/* SPDX-License-Identifier: MIT */
/*
 * etrnctl_rcpt: `etrnctl rcpt add|del|list|import` (issue 19, recipient
 * validation). A domain's valid recipients are the Redis set
 * PREFIX"rcpts:{DOMAIN}" (entries as core/rcptset.h reads them: "user",
 * "user@domain", "@domain", "@"); every change also bumps
 * PREFIX"rcpts_gen:{DOMAIN}" in the same transaction and publishes
 * "rcpts DOMAIN" on the events channel, so running daemons read the set
 * again (admin/rcptload.h). The daemon uses the set only while the domain's
 * row has rcpt_check on (etrnctl domain set DOMAIN --rcpt-check on).
 *
 * import reads one address a line ('#' comments, blank lines), checks the
 * whole file first and writes nothing when a line is bad (each reported as
 * FILE:LINE: what is wrong, exit 1). It then adds the addresses in
 * pipelined SADD batches (merge), or with --replace fills a temporary key
 * and RENAMEs it over the set in one MULTI/EXEC: readers see the old set or
 * the new one, never a mix.
 */
#ifndef ETRND_ADMIN_ETRNCTL_RCPT_H
#define ETRND_ADMIN_ETRNCTL_RCPT_H

#include <hiredis/hiredis.h>

#define ETRNCTL_RCPT_BATCH 1000      /* members per SADD */
#define ETRNCTL_RCPT_INFLIGHT 16     /* SADDs sent before their replies are read */
#define ETRNCTL_RCPT_LINE_MAX 1024   /* longest import line, ending included */
#define ETRNCTL_RCPT_BAD_SHOWN 20    /* bad lines reported one by one */
#define ETRNCTL_RCPT_TMP_TTL_S 86400 /* a --replace that died leaves its key this long */

struct etrnctl_rcpt {
	redisContext *rc;              /* the caller's, open */
	const char *prefix;            /* key prefix ("etrnd:") */
	const char *chan;              /* events channel ("etrnd:events") */
	int json;
	int replace;                   /* import --replace */
};

/* Each returns etrnctl's exit status: 0 done, 1 failed (Redis, bad lines
 * in the file), 2 bad input on the command line. */
int etrnctl_rcpt_add(const struct etrnctl_rcpt *x, const char *domain, char *const *addrs,
		int n);
int etrnctl_rcpt_del(const struct etrnctl_rcpt *x, const char *domain, char *const *addrs,
		int n);
int etrnctl_rcpt_list(const struct etrnctl_rcpt *x, const char *domain);
/* path "-" is stdin. */
int etrnctl_rcpt_import(const struct etrnctl_rcpt *x, const char *domain, const char *path);

#endif
