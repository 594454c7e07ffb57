/* SPDX-License-Identifier: MIT */
/*
 * cidr: IP networks ("10.0.0.0/8", "2001:db8::/32", a bare address) parsed,
 * printed and matched against a client address. The one copy for a domain's
 * etrn_from (core/domtab.h) and the config's mynetworks. Pure; any thread.
 */
#ifndef ETRND_CORE_CIDR_H
#define ETRND_CORE_CIDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CIDR_LIST_MAX 64  /* networks in one list (etrn_from, mynetworks) */

/* family AF_INET or AF_INET6, addr in network order (first 4 bytes for
 * AF_INET), prefix length. */
struct cidr {
	uint8_t family;
	uint8_t prefix;
	uint8_t addr[16];
};

/* One network "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or
 * /128). Host bits must be zero. n bytes of s. Returns 0 or -1 with why
 * (may be NULL). */
int cidr_parse(const char *s, size_t n, struct cidr *out, char *why, size_t wl);

/* A list of networks separated by commas, semicolons or blanks: at most max
 * (and CIDR_LIST_MAX). Sets *n. Returns 0 or -1 with why. */
int cidr_list_parse(const char *s, struct cidr *out, unsigned max, unsigned *n, char *why,
		size_t wl);

/* Write a list back as "10.0.0.0/8,2001:db8::/32". Returns 0 or -1 (too
 * small). */
int cidr_list_format(const struct cidr *c, unsigned n, char *out, size_t outlen);

/* 1 when addr (AF_INET, AF_INET6, a v4-mapped v6 counts as v4) is in one of
 * the n networks, else 0. */
int cidr_list_match(const struct cidr *c, unsigned n, const struct sockaddr *addr);

/* 1 when peer (a printable address as the loop spells it: "127.0.0.1",
 * "::1", "::ffff:127.0.0.1") is a loopback address (127.0.0.0/8, ::1 and
 * their IPv4-mapped form), else 0. */
int cidr_peer_loopback(const char *peer);

#endif
