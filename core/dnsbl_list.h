/* SPDX-License-Identifier: MIT */
/*
 * dnsbl_list: the pure half of DNSBL checks at connect (issue 19 point 3;
 * the look-ups themselves are proto/dnsbl.h's). The config's list of sites
 * in Postfix's postscreen_dnsbl_sites syntax, the query name for a client
 * address (RFC 5782 2.1, 2.4), an answer matched against a site's filter,
 * and the reject reply's text. No I/O, no clock; any thread.
 */
#ifndef ETRND_CORE_DNSBL_LIST_H
#define ETRND_CORE_DNSBL_LIST_H

#include <stddef.h>
#include <stdint.h>

#define DNSBL_SITES_MAX 16       /* items in dnsbl (Postfix has no cap; a
                                    connection waits for all of them) */
#define DNSBL_PATTERNS_MAX 4     /* ';'-separated address patterns in one filter */
/* A query is the client's reversed address (at most 64 octets for IPv6's
 * 32 nibbles and dots) and the site: RFC 1035 2.3.4's 255 octets in all. */
#define DNSBL_QUERY_MAX 256
#define DNSBL_SITE_NAME_MAX (DNSBL_QUERY_MAX - 1 - 64)
#define DNSBL_ITEM_MAX 256       /* one item as written, "site=filter*weight" */
#define DNSBL_WEIGHT_LIMIT 1000  /* |weight| and |threshold| at most this */
/* dnsbl_reply's template and its expansion, with NUL: a reply line is
 * at most 512 octets with its CRLF (RFC 5321 4.5.3.1.5). */
#define DNSBL_REPLY_MAX 511
/* The reply when dnsbl_reply is not set: Postfix's postscreen text, with
 * 554 because it replaces the greeting (RFC 5321 3.1). */
#define DNSBL_REPLY_DEFAULT "554 5.7.1 Service unavailable; client [$client] blocked using $site"

/* One octet's allowed values (bit v set: v matches). */
struct dnsbl_octets {
	uint8_t bit[32];
};

/* One address pattern: "127.0.0.[2..11]" is four octet sets. */
struct dnsbl_pattern {
	struct dnsbl_octets o[4];
};

struct dnsbl_site {
	char name[DNSBL_SITE_NAME_MAX];  /* lower-case, no trailing dot */
	char spec[DNSBL_ITEM_MAX];       /* the item as written, for log lines */
	int weight;                      /* default 1; negative: an allow-list */
	unsigned npatterns;              /* 0: any 127.0.0.0/8 answer lists */
	struct dnsbl_pattern pat[DNSBL_PATTERNS_MAX];
	/* The first item with the same name (itself when none before): a
	 * name is looked up once and its answer matched against each item. */
	unsigned query;
};

struct dnsbl_list {
	unsigned n;                      /* 0: DNSBL checks are off */
	struct dnsbl_site site[DNSBL_SITES_MAX];
};

/*
 * Parse s (len bytes), Postfix's postscreen_dnsbl_sites: items separated
 * by commas and/or blanks, each "site[=filter][*weight]". filter is one or
 * more ';'-separated IPv4 patterns, each octet a number or a bracketed
 * list of numbers and ranges ("127.0.0.[2..11]", "127.0.[0..255].[2;4;6..9]",
 * "127.0.0.2;127.0.0.4"); weight an integer (negative for an allow-list),
 * default 1. "" or "none" is the empty list. Returns 0, or -1 with why set
 * ("bad dnsbl site \"a..b\": empty label", ...); *l is only changed on
 * success.
 */
int dnsbl_list_parse(struct dnsbl_list *l, const char *s, size_t len, char *why, size_t whylen);

/*
 * The DNS name to look up client (printable "192.0.2.1", "2001:db8::1" or
 * "::ffff:192.0.2.1", NUL-terminated) in site: IPv4 octets reversed
 * ("1.2.0.192.site"), IPv6 nibbles reversed ("1.0.0. ... .8.b.d.0.1.0.0.2.site"),
 * RFC 5782 2.1 and 2.4; a v4-mapped IPv6 address as its IPv4 one. Returns
 * 0, or -1 when client is not an address or out (outlen) is too small.
 */
int dnsbl_list_query(const char *client, const char *site, char *out, size_t outlen);

/* 1 when answer (an IPv4 address in network order, from an A record of
 * the site's query) lists the client for this item: it matches one of its
 * patterns, or, with no filter, it lies in 127.0.0.0/8 outside
 * 127.255.255.0/24 (RFC 5782 2.1's range; the top /24 is where lists such
 * as Spamhaus answer errors, "query refused"). Else 0. */
int dnsbl_list_match(const struct dnsbl_site *site, const uint8_t answer[4]);

/*
 * Check a dnsbl_reply template: "554 5.7.N text" or "421 4.7.N text"
 * (RFC 5321 3.1: a refused greeting is 554; 421 closes at once), printable
 * ASCII, at most DNSBL_REPLY_MAX - 1 octets after expansion of the longest
 * client and site. $client and $site are the only variables. Returns 0, or
 * -1 with why set.
 */
int dnsbl_list_reply_check(const char *tmpl, char *why, size_t whylen);

/* Expand tmpl (checked) for client and site into out, with no CRLF.
 * Returns the length written (cut to outlen - 1). */
size_t dnsbl_list_reply(const char *tmpl, const char *client, const char *site, char *out,
		size_t outlen);

#endif
