/* SPDX-License-Identifier: MIT */
/*
 * etrnctl_top: `etrnctl top`, a live terminal view of the running etrnd
 * (plain ANSI escapes, no curses): connections, ingest and drain rates from
 * counter deltas, the top domains by held mail with their oldest message,
 * drains and ATRN sessions with progress bars, the Redis state. Its data
 * come from the control socket: "status json" (drain_status.h) and
 * "metrics" (the Prometheus text of core/metrics.h, admin/ctl_requests.h).
 */
#ifndef ETRND_ADMIN_ETRNCTL_TOP_H
#define ETRND_ADMIN_ETRNCTL_TOP_H

#include <stddef.h>
#include <stdint.h>

#include "admin/etrnctl_etrn.h"
#include "core/buf.h"

/* The frame's refresh interval, and how long --once waits between its two
 * samples (rates are deltas: one sample has none). */
#define ETRNCTL_TOP_INTERVAL_MS 1000
/* Domains --once lists at most (the live view: as many as the screen holds). */
#define ETRNCTL_TOP_ONCE_DOMAINS 50
#define ETRNCTL_TOP_DOMAIN_MAX 256       /* RFC 1035 2.3.4 (255) + NUL */

/* How to run it. ask/ask_arg: as etrnctl_etrn's (the daemon's socket). */
struct etrnctl_top {
	etrnctl_ask_fn ask;
	const void *ask_arg;
	int once;                       /* one plain frame on stdout, exit */
};

/*
 * Run the view until q, Ctrl-C, SIGTERM or SIGHUP (the terminal's modes
 * are restored on every way out), or print one frame with --once. Returns
 * the exit status: 0, 1 (the daemon cannot be reached: --once only; the live
 * view says so in its frame and keeps trying), 2 (no terminal without
 * --once).
 */
int etrnctl_top_run(const struct etrnctl_top *t);

/* ---- the pure parts (tests) ------------------------------------------- */

/* One held domain as the frame shows it. peak: the most held seen since
 * top started (a drain's progress is peak - msgs of peak). */
struct etrnctl_top_dom {
	char name[ETRNCTL_TOP_DOMAIN_MAX];
	uint64_t msgs, bytes, oldest_s, peak;
};

/* One ATRN session in progress. */
struct etrnctl_top_atrn {
	char user[ETRNCTL_TOP_DOMAIN_MAX], client[64], domains[ETRNCTL_TOP_DOMAIN_MAX];
	char state[32];
	uint64_t delivered, total;
};

/* Metrics read from the "metrics" reply; have 0 when the daemon gave none. */
struct etrnctl_top_metrics {
	int have;
	uint64_t conn_open, accepted, received, received_bytes, sent, deferred, bounced;
	uint64_t drains_running, atrn_running, refused;
	int redis_up;                   /* -1 unknown */
	uint64_t resync_age_s;
};

/* One sample of the daemon (owned arrays: etrnctl_top_snap_free). */
struct etrnctl_top_snap {
	uint64_t t_ms;                  /* monotonic, when taken */
	unsigned shards, answered;
	uint64_t held_msgs, held_bytes;
	struct etrnctl_top_dom *doms;   /* sorted by name (the reply's order) */
	size_t ndoms;
	size_t ngone;                   /* of them, drained empty since top began */
	struct etrnctl_top_atrn *atrn;
	size_t natrn;
	struct etrnctl_top_metrics m;
	char error[128];                /* "" or why there is no sample */
};

/* Parse "status json" (len bytes) into s (its arrays replaced). 0 or
 * -EINVAL (not the shape drain_status.h promises) / -ENOMEM. */
int etrnctl_top_parse_status(const char *json, size_t len, struct etrnctl_top_snap *s);
/* Parse a Prometheus text reply into m (m->have set). */
void etrnctl_top_parse_metrics(const char *text, struct etrnctl_top_metrics *m);
/* Carry each domain's peak over from prev (both sorted by name); a domain
 * prev lists and cur does not (drained empty) is added to cur, held 0 of its
 * peak, and counted in cur->ngone. 0 or -ENOMEM (cur as it was). */
int etrnctl_top_carry_peaks(const struct etrnctl_top_snap *prev, struct etrnctl_top_snap *cur);
/* Render one frame of cur (rates against prev, NULL: none yet) for a
 * screen of cols x rows (rows 0: no limit) into out: plain lines ending
 * "\n" (ansi 0) or lines for the live view (ansi 1). 0 or -ENOMEM. */
int etrnctl_top_render(const struct etrnctl_top_snap *prev, const struct etrnctl_top_snap *cur,
		       unsigned cols, unsigned rows, int ansi, struct buf *out);
void etrnctl_top_snap_free(struct etrnctl_top_snap *s);

#endif
