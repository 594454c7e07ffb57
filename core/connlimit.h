/* SPDX-License-Identifier: MIT */
/*
 * connlimit: the node-wide count of open connections per client address
 * (client_connection_limit), shared by every engine thread: connections from
 * one address land on different threads through SO_REUSEPORT, so the count
 * lives in the node's one address table (core/addrtab), an address's entry
 * dropped when its last connection closes.
 */
#ifndef ETRND_CORE_CONNLIMIT_H
#define ETRND_CORE_CONNLIMIT_H

#include <stdint.h>

struct connlimit;

/*
 * A counter admitting at most limit (>= 1) connections per address, for up
 * to max_addrs addresses at once (make it at least the connections the node
 * can hold: an address is only remembered while it has one open). NULL with
 * errno EINVAL or ENOMEM. Create once at start; the caller owns it and frees
 * it after every thread that uses it has stopped.
 */
struct connlimit *connlimit_new(unsigned limit, unsigned max_addrs);
/* Free; accepts NULL, returns NULL. */
struct connlimit *connlimit_free(struct connlimit *cl);

enum connlimit_verdict {
	CONNLIMIT_OVER,      /* the address has limit open already: refuse */
	CONNLIMIT_COUNTED,   /* admitted and counted: connlimit_release() it */
	CONNLIMIT_UNCOUNTED, /* admitted, not counted: the table is full (the
			      * limit fails open rather than refuse everyone) */
};

/* One more connection from client (its printable address, as inet_ntop
 * gives it). Thread-safe. */
enum connlimit_verdict connlimit_take(struct connlimit *cl, const char *client);
/* A CONNLIMIT_COUNTED connection from client closed. Thread-safe. */
void connlimit_release(struct connlimit *cl, const char *client);
/* Addresses with an open counted connection now. */
uint64_t connlimit_addrs(struct connlimit *cl);

#endif
