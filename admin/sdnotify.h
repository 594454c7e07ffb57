/* SPDX-License-Identifier: MIT */
/*
 * sdnotify: etrnd under systemd's Type=notify (libsystemd's sd_notify):
 * READY=1 once every engine thread takes mail, STOPPING=1 at SIGTERM, a
 * STATUS= line with each, and WATCHDOG=1 every half WatchdogSec= only while
 * every engine loop answers a liveness post: a wedged engine thread stops
 * the pings and systemd restarts etrnd. Without $NOTIFY_SOCKET (not under
 * systemd) every call is a cheap no-op.
 */
#ifndef ETRND_ADMIN_SDNOTIFY_H
#define ETRND_ADMIN_SDNOTIFY_H

#include <stddef.h>

struct engine_set;
struct sdnotify;

/*
 * After engine_start() (and the privilege drop): tell systemd READY=1 and
 * start the watchdog thread when systemd asked for one ($WATCHDOG_USEC).
 * eng must stay until sdnotify_free(). Returns the handle (the caller's,
 * freed by sdnotify_free()), or NULL with err set (out of memory, or the
 * thread could not start).
 */
struct sdnotify *sdnotify_start(struct engine_set *eng, char *err, size_t errlen);

/* At the stop signal, before engine_stop(): STOPPING=1, then the watchdog
 * thread is joined (no ping is posted after this returns). NULL is fine. */
void sdnotify_stopping(struct sdnotify *n);

/* After engine_stop() (a ping posted before it may run until the loops
 * end): free n. NULL is fine. Returns NULL. */
struct sdnotify *sdnotify_free(struct sdnotify *n);

#endif
