/* SPDX-License-Identifier: MIT */
/*
 * netaddr: a numeric IPv4 or IPv6 address in text ("192.0.2.1", "::1", no
 * brackets, no port) made into a socket address with the given port. The
 * one copy for the listen addresses, numeric destinations and ETRN clients.
 */
#ifndef ETRND_CORE_NETADDR_H
#define ETRND_CORE_NETADDR_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/* 0 and *ss, *len filled (the rest of *ss zeroed), or -1 when text is not
 * a numeric address. len may be NULL. */
static inline int netaddr_from_text(const char *text, unsigned port,
		struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		if (len)
			*len = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, text, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		if (len)
			*len = sizeof(*s6);
		return 0;
	}
	return -1;
}

#endif
