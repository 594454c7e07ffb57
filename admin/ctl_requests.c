/* SPDX-License-Identifier: MIT */
/*
 * ctl_requests: the control socket's request table and the Redis drain event
 * (see ctl_requests.h). Both run on threads that may block, never on an
 * engine thread.
 */
#include "admin/ctl_requests.h"

#include <string.h>

#include "core/log.h"
#include "proto/drain.h"

/* Longest domain a log line shows (RFC 1035 2.3.4: names are at most 255). */
#define CTL_REQUESTS_LOG_DOMAIN_MAX 255
#define CTL_REQUESTS_REPLY_INIT 1024

/* A request's word, and whether a space and an argument follow it. */
struct ctl_request {
	const char *name;
	int has_arg;
	void (*proceed)(struct drain_hub *hub, const char *arg, size_t len,
			struct buf *out);
};

static void ctl_flush(struct drain_hub *hub, const char *arg, size_t len,
		      struct buf *out)
{
	drain_hub_flush(hub, arg, len, out);
}

static void ctl_status(struct drain_hub *hub, const char *arg, size_t len,
		       struct buf *out)
{
	drain_hub_status(hub, out);
}

static const struct ctl_request ctl_requests[] = {
	{ "flush", 1, ctl_flush },    /* ETRN on the operator's behalf */
	{ "status", 0, ctl_status },  /* queue depths */
};

void ctl_requests_socket(void *hub, const char *line, size_t len, struct buf *out)
{
	for (size_t i = 0; i < sizeof(ctl_requests) / sizeof(ctl_requests[0]); i++) {
		const struct ctl_request *r = &ctl_requests[i];
		size_t n = strlen(r->name);

		if (len < n || memcmp(line, r->name, n))
			continue;
		if (!r->has_arg && len == n) {
			r->proceed(hub, NULL, 0, out);
			return;
		}
		if (r->has_arg && len > n + 1 && line[n] == ' ') {
			r->proceed(hub, line + n + 1, len - n - 1, out);
			return;
		}
	}
	(void)buf_puts(out, "error: unknown request (want: flush DOMAIN, or status)\n");
}

void ctl_requests_redis_drain(void *hub, const char *domain, size_t len)
{
	struct buf out;

	buf_init(&out, CTL_REQUESTS_REPLY_INIT);
	drain_hub_flush(hub, domain, len, &out);
	/* The reply without its CRLF. */
	log_info("redis event: drain %.*s: %.*s",
		 (int)(len > CTL_REQUESTS_LOG_DOMAIN_MAX ? CTL_REQUESTS_LOG_DOMAIN_MAX : len),
		 domain, (int)(out.len > 2 ? out.len - 2 : out.len),
		 out.data ? out.data : "");
	buf_free(&out);
}
