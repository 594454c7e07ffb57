/* SPDX-License-Identifier: MIT */
/*
 * loopback: free TCP ports on 127.0.0.1 for the unit tests, one copy for
 * all of them, and the descriptor arithmetic of tests that run a process
 * out of descriptors. No Criterion in here: failures come back as 0 or
 * -errno.
 */
#ifndef ETRND_TESTS_LOOPBACK_H
#define ETRND_TESTS_LOOPBACK_H

/* A port on 127.0.0.1 free a moment ago (bound, closed: another process
 * may take it before the caller binds it), drawn at random from below the
 * kernel's ephemeral range, where no bind(0) or connect() of another
 * process can be given it meanwhile, and not one the integration harness
 * has reserved for a test running beside; 0 on failure. */
unsigned short loopback_free_port(void);

/* A listening socket (backlog: how many connections may wait) on a free
 * port of 127.0.0.1, its port in *port. Returns the descriptor (the
 * caller closes it) or -errno. */
int loopback_listen(int backlog, unsigned short *port);

/* The lowest descriptor not open now: what the next open() would get.
 * Probed without opening one (a lowered limit may forbid that). */
int loopback_lowest_free_fd(void);

/* The RLIMIT_NOFILE soft limit that leaves exactly n descriptors free
 * below it (a test runner may leave holes among the open ones). */
int loopback_fd_limit(unsigned n);

#endif
