/* SPDX-License-Identifier: MIT */
/*
 * etrnctl_say: how every etrnctl command reports a problem. One line on
 * stderr, "etrnctl: <what is wrong>", and the exit code the caller passes
 * back: ETRNCTL_FAIL (1) when the work could not be done (Redis down, a
 * refused request), ETRNCTL_USAGE (2) when the command line is wrong.
 */
#ifndef ETRND_ADMIN_ETRNCTL_SAY_H
#define ETRND_ADMIN_ETRNCTL_SAY_H

enum { ETRNCTL_OK = 0, ETRNCTL_FAIL = 1, ETRNCTL_USAGE = 2 };

/* Prints the message and returns rc. */
int etrnctl_say(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
