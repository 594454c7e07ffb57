/* SPDX-License-Identifier: MIT */
/*
 * The SMTP session driver shared by fuzz_smtp_server and fuzz_smtp_data:
 * feeds in[0..n) to a session whole (chunk 0) or chunk octets at a time,
 * hands each complete message to commit() (whose return is the commit's
 * result, 0 or -errno), and ends with EOF unless the session closed. Checks
 * the feeding contract on the way. Header-only: each target is one file.
 */
#ifndef ETRND_TESTS_FUZZ_FZ_SESSION_H
#define ETRND_TESTS_FUZZ_FZ_SESSION_H

#include "proto/smtp_server.h"

typedef int (*fz_commit_fn)(void *arg, const struct smtp_tx *tx);

/* Returns the last event (SMTP_EV_CLOSE or SMTP_EV_NEED_INPUT). */
static inline enum smtp_event fz_session_run(struct smtp_session *s, const char *in, size_t n,
		size_t chunk, struct buf *out, fz_commit_fn commit, void *arg)
{
	enum smtp_event ev = SMTP_EV_NEED_INPUT;
	size_t i = 0;

	smtp_server_greeting(s, out);
	while (i < n && ev != SMTP_EV_CLOSE) {
		size_t k = chunk && chunk < n - i ? chunk : n - i, off = 0;

		while (off < k) {
			off += smtp_server_feed(s, in + i + off, k - off, out, &ev);
			if (ev == SMTP_EV_COMMIT) {
				int err = commit(arg, smtp_server_tx(s));

				/* Feeding is refused until the commit is done. */
				if (smtp_server_feed(s, in + i + off, k - off, out, &ev) != 0)
					__builtin_trap();
				smtp_server_commit_done(s, err, out);
				ev = SMTP_EV_NEED_INPUT;
			} else if (ev == SMTP_EV_CLOSE) {
				break;
			} else if (off != k) {
				__builtin_trap();
			}
		}
		i += k;
	}
	if (ev != SMTP_EV_CLOSE)
		smtp_server_feed(s, in, 0, out, &ev);
	return ev;
}

#endif
