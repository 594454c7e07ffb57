/* SPDX-License-Identifier: MIT */
/*
 * ctlsock: the operator's control socket. A thread of its own serves a unix
 * stream socket (mode 0600 from the moment it exists: only the daemon's user
 * and root may talk to it): one request line per connection ("flush DOMAIN",
 * "status"), one reply, then the connection is closed. Several clients are
 * served at once, each with a deadline for its whole request
 * (CTLSOCK_REQUEST_TIMEOUT_MS, not restarted by each byte), so a slow client
 * delays no other. It may block (it waits for engine threads to answer a
 * status request), so it never runs on an engine thread.
 */
#ifndef ETRND_CORE_CTLSOCK_H
#define ETRND_CORE_CTLSOCK_H

#include <stddef.h>

#include "core/buf.h"

/* A client has this long from connect to the last byte of its reply. */
#define CTLSOCK_REQUEST_TIMEOUT_MS 2000

/* Handle one request line (no newline, not NUL-terminated); append the reply. */
typedef void (*ctlsock_fn)(void *arg, const char *line, size_t len, struct buf *out);

struct ctlsock;

/* Bind path (replacing a stale socket file) and start serving. With ep the
 * thread registers as a reader there and is online only while fn runs.
 * NULL with err set on failure. */
struct epoch;
struct ctlsock *ctlsock_start(const char *path, ctlsock_fn fn, void *arg,
		struct epoch *ep, char *err, size_t errlen);

/* Stop the thread, remove the socket file, free. NULL is fine. */
struct ctlsock *ctlsock_stop(struct ctlsock *c);

#endif
