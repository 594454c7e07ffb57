/* SPDX-License-Identifier: MIT */
/*
 * ctl_requests: the control socket's request table and the Redis drain event
 * (see ctl_requests.h). Both run on threads that may block, never on an
 * engine thread. Every socket request is logged with who asked.
 */
#include "admin/ctl_requests.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/control.h"
#include "admin/ctl_activate.h"
#include "admin/ctl_turns.h"
#include "admin/metrics_http.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/now.h"
#include "proto/activator.h"
#include "proto/drain.h"
#include "proto/drain_queue.h"
#include "proto/drain_status.h"

/* Longest domain a log line shows (RFC 1035 2.3.4: names are at most 255). */
#define CTL_REQUESTS_LOG_DOMAIN_MAX 255
#define CTL_REQUESTS_REPLY_INIT 1024
/* A request as its log line shows it (cut there; pass= masked). */
#define CTL_REQUESTS_LOG_LINE_MAX (CTL_REQUESTS_LOG_DOMAIN_MAX + 1)

/* "who" as the request names it ("\tby uid=N(name)", which etrnctl adds;
 * the socket is mode 0600, so only the daemon's user and root get here). */
#define CTL_REQUESTS_WHO_MAX 128
#define CTL_REQUESTS_WHO_TAG "\tby "
/* The forced flush's destination ("host[:port]", a row's dest). */
#define CTL_REQUESTS_DEST_MAX 300
#define CTL_REQUESTS_REST (-1)
/* The test clock's biggest single step: more than any max_hold
 * (CONFIG_MAX_HOLD_MAX_MS) or back-off, so one step can reach any expiry. */
#define CTL_REQUESTS_CLOCK_STEP_MAX_S (366u * 86400u)
#define CTL_REQUESTS_US_PER_S 1000000u

/* A request's word, how many arguments it takes (separated by spaces;
 * max_args CTL_REQUESTS_REST: the rest of the line, as is, for ETRN's
 * parser to judge), and what it does: a = the arguments (one string), who = the asker; op
 * for the message requests. */
struct ctl_request {
	const char *name;
	int min_args, max_args;
	void (*proceed)(const struct ctl_env *env, const char *a, size_t len, const char *who,
			enum drain_queue_op op, struct buf *out);
	enum drain_queue_op op;
	unsigned flags;
};

/* Read-only views etrnctl top asks for every second: logged at debug
 * level only, or an hour of top would be 7200 log lines. */
#define CTL_REQ_QUIET 1u

static void ctl_flush(const struct ctl_env *env, const char *a, size_t len, const char *who,
		      enum drain_queue_op op, struct buf *out)
{
	drain_hub_flush(env->hub, a, len, out);
}

/* "force DOMAIN [HOST[:PORT]]": drain a domain the table need not have. */
static void ctl_force(const struct ctl_env *env, const char *a, size_t len, const char *who,
		      enum drain_queue_op op, struct buf *out)
{
	const char *sp = memchr(a, ' ', len);
	char dest[CTL_REQUESTS_DEST_MAX] = "";
	size_t dlen = sp ? (size_t)(sp - a) : len;

	if (sp && len - dlen - 1 >= sizeof(dest)) {
		(void)buf_puts(out, "501 5.5.4 destination too long\r\n");
		return;
	}
	if (sp)
		memcpy(dest, sp + 1, len - dlen - 1);
	drain_hub_flush_force(env->hub, a, dlen, dest, who, out);
}

static void ctl_status(const struct ctl_env *env, const char *a, size_t len, const char *who,
		       enum drain_queue_op op, struct buf *out)
{
	if (len == 0) {
		drain_hub_status(env->hub, out);
		return;
	}
	if (len != 4 || memcmp(a, "json", 4)) {
		(void)buf_puts(out, "error: status takes nothing or \"json\"\n");
		return;
	}
	drain_hub_status_json(env->hub, out);
}

/* The engine threads for a queue request (shards freed by the caller). */
static int ctl_queue_ctx(struct drain_hub *hub, struct drain_queue_ctx *c)
{
	unsigned n = drain_hub_shards(hub, NULL, 0);
	struct drain_status_shard *sh = calloc(n ? n : 1, sizeof(*sh));

	if (!sh)
		return -ENOMEM;
	drain_hub_shards(hub, sh, n);
	c->shards = sh;
	c->n = n;
	c->hostname = drain_hub_hostname(hub);
	return 0;
}

static void ctl_queue(const struct ctl_env *env, const char *a, size_t len, const char *who,
		      enum drain_queue_op op, struct buf *out)
{
	struct drain_queue_ctx c;

	if (ctl_queue_ctx(env->hub, &c)) {
		(void)buf_puts(out, "error: out of memory\n");
		return;
	}
	drain_queue_list(&c, a, len, out);
	free((void *)c.shards);
}

/* "turns": every engine thread passes a whole turn (admin/ctl_turns.h). */
static void ctl_turns(const struct ctl_env *env, const char *a, size_t len, const char *who,
		      enum drain_queue_op op, struct buf *out)
{
	struct drain_queue_ctx c;

	if (ctl_queue_ctx(env->hub, &c)) {
		(void)buf_puts(out, "error: out of memory\n");
		return;
	}
	ctl_turns_wait(c.shards, c.n, out);
	free((void *)c.shards);
}

/* message show|delete|bounce QID: op on the engine thread that owns it. */
static void ctl_msg(const struct ctl_env *env, const char *a, size_t len, const char *who,
		    enum drain_queue_op op, struct buf *out)
{
	struct drain_queue_ctx c;

	if (ctl_queue_ctx(env->hub, &c)) {
		(void)buf_puts(out, "error: out of memory\n");
		return;
	}
	(void)drain_queue_msg(&c, op, a, len, who, out);
	free((void *)c.shards);
}

/* "clock step SECONDS": the test clock (core/now.h) moves forward, only
 * when the config says test_clock = yes; never back. */
static void ctl_clock(const struct ctl_env *env, const char *a, size_t len, const char *who,
		      enum drain_queue_op op, struct buf *out)
{
	unsigned long long secs = 0;
	size_t i = 5;

	if (len <= 5 || memcmp(a, "step ", 5)) {
		(void)buf_puts(out, "error: clock takes \"step SECONDS\"\n");
		return;
	}
	for (; i < len && a[i] >= '0' && a[i] <= '9' && secs <= CTL_REQUESTS_CLOCK_STEP_MAX_S; i++)
		secs = secs * 10 + (unsigned)(a[i] - '0');
	if (i < len || secs == 0 || secs > CTL_REQUESTS_CLOCK_STEP_MAX_S) {
		(void)buf_printf(out, "error: clock step \"%.*s\": want whole seconds from 1 to %u\n",
				 (int)(len - 5 > 40 ? 40 : len - 5), a + 5,
				 CTL_REQUESTS_CLOCK_STEP_MAX_S);
		return;
	}
	if (!drain_hub_config(env->hub)->test_clock) {
		(void)buf_puts(out, "error: test_clock is off (a test aid: set test_clock = yes in etrnd.conf to step the clock)\n");
		return;
	}
	now_step_add(secs * CTL_REQUESTS_US_PER_S);
	log_info("test clock: stepped forward %llu s by %s, %llu s in all", secs, who,
		 (unsigned long long)(now_step_us() / CTL_REQUESTS_US_PER_S));
	(void)buf_printf(out, "clock stepped forward %llu s (%llu s in all)\n", secs,
			 (unsigned long long)(now_step_us() / CTL_REQUESTS_US_PER_S));
}

/* "activators [json] [NAME]": the activators' status (proto/activator.h);
 * "activators run NAME": one run now, as if it were its time. */
static void ctl_activators(const struct ctl_env *env, const char *a, size_t len, const char *who,
			   enum drain_queue_op op, struct buf *out)
{
	char name[CONFIG_ACTIVATOR_NAME_MAX] = "";
	const char *sp = len ? memchr(a, ' ', len) : NULL;
	size_t w1 = sp ? (size_t)(sp - a) : len;
	int json = w1 == 4 && !memcmp(a, "json", 4), run = sp && w1 == 3 && !memcmp(a, "run", 3);
	size_t off = json || run ? (sp ? w1 + 1 : len) : 0;
	int rc;

	if (len - off >= sizeof(name) || (run && off == len) ||
	    (len && memchr(a + off, ' ', len - off))) {
		(void)buf_puts(out, "error: want activators [json] [NAME] or activators run NAME\n");
		return;
	}
	if (len)
		memcpy(name, a + off, len - off);
	if (!env->act) {
		(void)buf_puts(out, "error: no activators here\n");
		return;
	}
	if (run) {
		rc = activators_run(env->act, name);
		if (rc == 0)
			(void)buf_puts(out, "ok\n");
		else if (rc == -ENOENT)
			(void)buf_printf(out, "error: no activator %s\n", name);
		else if (rc == -EBUSY)
			(void)buf_printf(out, "error: %s is running\n", name);
		else
			(void)buf_printf(out, "error: %s: %s\n", name, strerror(-rc));
		return;
	}
	rc = activators_status(env->act, name[0] ? name : NULL, out, json);
	if (rc == -ENOENT)
		(void)buf_printf(out, "error: no activator %s\n", name);
	else if (rc)
		(void)buf_printf(out, "error: activators: %s\n", strerror(-rc));
}

/* "activate KEY=VALUE ...": a one-shot activator run (etrnctl etrn --atrn),
 * started at once; its status is read with "activators json oneshot-N".
 * Nothing here waits for the upstream (the socket's deadline is 2 s). */
static void ctl_activate(const struct ctl_env *env, const char *a, size_t len, const char *who,
			 enum drain_queue_op op, struct buf *out)
{
	struct config_activator *spec = malloc(sizeof(*spec));
	char why[CTL_ACTIVATE_WHY_MAX], name[CONFIG_ACTIVATOR_NAME_MAX];
	int rc;

	if (!spec || !env->act) {
		(void)buf_puts(out, spec ? "error: no activators here\n" : "error: out of memory\n");
		free(spec);
		return;
	}
	if (ctl_activate_parse(a, len, spec, why, sizeof(why))) {
		(void)buf_printf(out, "error: activate: %s\n", why);
		goto done;
	}
	rc = activators_oneshot(env->act, spec, name, sizeof(name));
	if (rc == 0) {
		log_info("control socket: one-shot %s to %s:%u is %s, asked by %s",
			 spec->method == CONFIG_ACTIVATOR_ATRN ? "ATRN" : "ETRN", spec->host,
			 spec->port, name, who);
		(void)buf_printf(out, "ok %s\n", name);
	} else if (rc == -ENOSPC) {
		(void)buf_printf(out, "error: %u one-shot runs are listed already; try again later\n",
				 ACTIVATOR_ONESHOT_MAX);
	} else {
		(void)buf_printf(out, "error: activate: %s\n", strerror(-rc));
	}
done:
	explicit_bzero(spec->password, sizeof(spec->password));
	free(spec);
}

/* "metrics": the counters' Prometheus text and the Redis series, named
 * as a scrape names them (admin/metrics_http.h), for etrnctl top (logged
 * at debug level: top asks every second). */
static void ctl_metrics(const struct ctl_env *env, const char *a, size_t len, const char *who,
			enum drain_queue_op op, struct buf *out)
{
	(void)a;
	(void)len;
	(void)who;
	(void)op;
	if (metrics_format(out) ||
	    (env->hub && metrics_dnsbl_format(out, &drain_hub_config(env->hub)->dnsbl))) {
		(void)buf_puts(out, "error: metrics: out of memory\n");
		return;
	}
	if (env->ctl)
		metrics_http_redis_gauges(drain_hub_config(env->hub), env->ctl, out, now_wall_us());
}

static const struct ctl_request ctl_requests[] = {
	{ "flush", 1, CTL_REQUESTS_REST, ctl_flush, 0, 0 }, /* ETRN on the operator's behalf */
	{ "force", 1, 2, ctl_force, 0, 0 },      /* flush --force DOMAIN [DEST] */
	{ "status", 0, 1, ctl_status, 0, CTL_REQ_QUIET },    /* queue depths; "json" */
	{ "queue", 0, 1, ctl_queue, 0, 0 },      /* queue list [DOMAIN] */
	{ "show", 1, 1, ctl_msg, DRAIN_QUEUE_SHOW, 0 },
	{ "show-full", 1, 1, ctl_msg, DRAIN_QUEUE_SHOW_FULL, 0 },
	{ "delete", 1, 1, ctl_msg, DRAIN_QUEUE_DELETE, 0 },
	{ "bounce", 1, 1, ctl_msg, DRAIN_QUEUE_BOUNCE, 0 },
	{ "release", 1, 1, ctl_msg, DRAIN_QUEUE_RELEASE, 0 }, /* a held message */
	{ "clock", 2, 2, ctl_clock, 0, 0 },      /* clock step SECONDS (test_clock) */
	{ "activators", 0, 2, ctl_activators, 0, 0 }, /* [json] [NAME] | run NAME */
	{ "activate", 1, CTL_REQUESTS_REST, ctl_activate, 0, 0 }, /* KEY=VALUE... (one-shot) */
	{ "metrics", 0, 0, ctl_metrics, 0, CTL_REQ_QUIET },  /* etrnctl top */
	{ "turns", 0, 0, ctl_turns, 0, CTL_REQ_QUIET },  /* a barrier (tests) */
};

static int ctl_nargs(const char *a, size_t len)
{
	int n = len > 0;

	for (size_t i = 0; i < len; i++)
		n += a[i] == ' ';
	return n;
}

/* The asker, cut off the line when etrnctl named it; else "the operator". */
static size_t ctl_who(const char *line, size_t len, char *who, size_t cap)
{
	size_t tl = strlen(CTL_REQUESTS_WHO_TAG);

	snprintf(who, cap, "the operator");
	for (size_t i = 0; i + tl <= len; i++) {
		if (memcmp(line + i, CTL_REQUESTS_WHO_TAG, tl))
			continue;
		snprintf(who, cap, "%.*s", (int)(len - i - tl), line + i + tl);
		for (char *p = who; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
		return i;
	}
	return len;
}

void ctl_requests_socket(void *env, const char *line, size_t len, struct buf *out)
{
	const struct ctl_env *e = env;
	char who[CTL_REQUESTS_WHO_MAX], shown[CTL_REQUESTS_LOG_LINE_MAX];

	len = ctl_who(line, len, who, sizeof(who));
	for (size_t i = 0; i < sizeof(ctl_requests) / sizeof(ctl_requests[0]); i++) {
		const struct ctl_request *r = &ctl_requests[i];
		size_t n = strlen(r->name), alen;
		const char *a;
		int na;

		if (len < n || memcmp(line, r->name, n) || (len > n && line[n] != ' '))
			continue;
		if (len == n + 1)
			break;
		a = len > n ? line + n + 1 : NULL;
		alen = len > n ? len - n - 1 : 0;
		na = ctl_nargs(a, alen);
		if (na < r->min_args || (r->max_args != CTL_REQUESTS_REST &&
		    (na > r->max_args || (alen && a[alen - 1] == ' '))))
			break;
		/* activate's pass= is a secret: never in a log. */
		(void)ctl_activate_mask(line, len, shown, sizeof(shown));
		if (r->flags & CTL_REQ_QUIET)
			log_debug("control socket: %s, asked by %s", shown, who);
		else
			log_info("control socket: %s, asked by %s", shown, who);
		r->proceed(e, a, alen, who, r->op, out);
		return;
	}
	(void)buf_puts(out, "error: unknown request (want: flush DOMAIN, force DOMAIN [DEST], "
		       "status [json], queue [DOMAIN], show|show-full|delete|bounce|release QID, "
		       "clock step SECONDS, activators [json] [NAME], activators run NAME, "
		       "activate KEY=VALUE..., metrics, turns)\n");
}

/* Issue 16: "<spec> from <node>" is an ETRN node <node> took; the spec
 * has no blank (an ETRN argument), so the last " from " splits it. This
 * node ignores its own (it drained when it answered). */
#define CTL_REQUESTS_FROM " from "

void ctl_requests_redis_drain(void *hub, const char *domain, size_t len)
{
	char shown[LOG_TEXT_MAX], reply[LOG_TEXT_MAX];
	const char *self = drain_hub_config(hub)->node_id;
	const size_t fl = sizeof(CTL_REQUESTS_FROM) - 1;
	struct buf out;

	for (size_t i = len; i-- > 0;) {
		if (i + fl > len || memcmp(domain + i, CTL_REQUESTS_FROM, fl))
			continue;
		if (len - i - fl == strlen(self) && !memcmp(domain + i + fl, self, len - i - fl))
			return;
		len = i;
		break;
	}
	buf_init(&out, CTL_REQUESTS_REPLY_INIT);
	drain_hub_flush(hub, domain, len, &out);
	/* The reply without its CRLF; it echoes the domain as sent. */
	log_info("redis event: drain %s: %s", log_printable(shown, sizeof(shown), domain, len),
		 log_printable(reply, sizeof(reply), out.data ? out.data : "",
			       out.len > 2 ? out.len - 2 : out.len));
	buf_free(&out);
}
