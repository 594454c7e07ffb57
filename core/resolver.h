/* SPDX-License-Identifier: MIT */
/*
 * resolver: the one bounded, asynchronous name resolver of the process
 * (c-ares). One thread of its own polls the c-ares sockets and an eventfd,
 * so engine threads (which never block) and the control thread (which blocks
 * on Redis) only queue a request and get a callback. Bounded: a named number
 * of requests outstanding, fewer of them in flight, each with a deadline.
 */
#ifndef ETRND_CORE_RESOLVER_H
#define ETRND_CORE_RESOLVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define RESOLVER_SMTP_PORT 25            /* RFC 5321 4.5.4.2 */
#define RESOLVER_NAME_MAX 256            /* RFC 1035 2.3.4: 255 + NUL */
#define RESOLVER_RELAY_MAX 320           /* "host[addr]:port" for log lines */
#define RESOLVER_WHY_MAX 320             /* why a lookup failed, for log lines */
/* Defaults of struct resolver_conf (a field left 0 takes its default). */
#define RESOLVER_PENDING_MAX 1024        /* accepted, not yet answered */
#define RESOLVER_INFLIGHT_MAX 64         /* handed to c-ares at once */
#define RESOLVER_TIMEOUT_MS 15000        /* whole lookup, MX + address */
#define RESOLVER_TRY_MS 3000             /* one DNS try (c-ares timeout) */
#define RESOLVER_TRIES 3                 /* DNS tries per query per server */

struct resolver;

struct resolver_conf {
	/* "ip[:port],..." (ares_set_servers_ports_csv), e.g. "127.0.0.1:53530"
	 * for tests; NULL or "" uses /etc/resolv.conf. */
	const char *servers;
	unsigned pending_max;   /* resolver_host/_mx refuse (-EAGAIN) beyond it */
	unsigned inflight_max;  /* lookups given to c-ares at once; more wait */
	unsigned timeout_ms;    /* deadline from submission to callback */
	unsigned try_ms;        /* c-ares per-try timeout */
	unsigned tries;         /* c-ares tries */
	/* This host's name as MX records name it (the config's hostname), or
	 * NULL: resolver_route drops MX records at or above its preference,
	 * RFC 5321 5.1, so a backup MX never delivers to itself. Copied. */
	const char *self;
};

/*
 * The answer. err: 0, or one of
 *   -ECANCELED  resolver_free() came first            (temporary)
 *   -ETIMEDOUT  the deadline passed                   (temporary)
 *   -EAGAIN     server failure, refused, no reply     (temporary)
 *   -ENOMEM     out of memory                         (temporary)
 *   -ELOOP      (resolver_route) we are the domain's best MX, RFC
 *               5321 5.1: mail would loop back to us  (temporary)
 *   -ENOENT     NXDOMAIN: the name does not exist     (permanent)
 *   -ENODATA    the name exists but has no address    (permanent)
 *   -ENXIO      null MX, RFC 7505: no mail accepted   (permanent)
 *   -EINVAL     a malformed name in DNS, or (resolver_numeric) a
 *               malformed destination                  (permanent)
 * permanent says which (a drain keeps mail on temporary, may bounce on
 * permanent). why is a log-ready phrase ("MX lookup of example.com: NXDOMAIN").
 * On success addr/addrlen hold the address with the port set, host the name
 * connected to (the MX host, or the dest's host), relay "host[addr]:port".
 */
struct resolver_result {
	int err;
	int permanent;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char host[RESOLVER_NAME_MAX];
	char relay[RESOLVER_RELAY_MAX];
	char why[RESOLVER_WHY_MAX];
};

/* Run ON THE RESOLVER THREAD, exactly once per accepted request. res is valid
 * only during the call (copy what you keep). It must not block and must not
 * call resolver_free(); it may submit new requests. The usual body copies
 * the result and loop_post()s it to the caller's engine loop. */
typedef void (*resolver_cb)(void *cookie, const struct resolver_result *res);

struct resolver_stats {
	uint64_t accepted;      /* requests taken (callback promised) */
	uint64_t rejected;      /* refused with -EAGAIN: pending_max reached */
	uint64_t answered;      /* answered (counted as its callback starts) */
	uint64_t timed_out;     /* answered -ETIMEDOUT by the deadline */
	uint64_t late_dropped;  /* DNS answers that came after their deadline */
	unsigned pending;       /* accepted, not yet answered */
};

/* Create the resolver and start its thread. conf may be NULL (all defaults).
 * Returns NULL with err set ("pthread_create: ...", "c-ares: ...") on
 * failure. Call from the daemon's main before any thread submits. */
struct resolver *resolver_new(const struct resolver_conf *conf, char *err, size_t errlen);

/* Stop the thread: every request not yet answered is answered -ECANCELED
 * (on the resolver thread, once each), then the thread is joined and all is
 * freed. No sleep loop. No thread may submit during or after it; callbacks
 * must be able to run until it returns. NULL is fine. Returns NULL. */
struct resolver *resolver_free(struct resolver *r);

/* Resolve dest, "host", "host:port", "[host]:port", "1.2.3.4:port" or
 * "[2001:db8::1]:port" (port default_port when absent), A/AAAA. A numeric
 * address needs no DNS but is answered on the resolver thread all the same.
 * Any thread; never blocks (a mutex held for a list insert). Returns 0 (cb
 * will run once), -EINVAL for a malformed dest, -EAGAIN when pending_max
 * requests are outstanding, -ESHUTDOWN once resolver_free() began, -ENOMEM;
 * on any error cb never runs. */
int resolver_host(struct resolver *r, const char *dest, unsigned default_port,
		  resolver_cb cb, void *cookie);

/* Mail routing for domain (RFC 5321 5.1): the MX with the lowest preference,
 * then its address; no MX: the domain's own A/AAAA; a null MX (RFC 7505):
 * -ENXIO, permanent. Port is the port to put in the address. Same returns
 * as resolver_host(). */
int resolver_mx(struct resolver *r, const char *domain, unsigned port,
		resolver_cb cb, void *cookie);

/*
 * Every address to try for mail, in order (the outbound scheduler's
 * routing, proto/route.h). mx 1: name is a mail domain: its MX hosts by
 * preference (RFC 5321 5.1; equal preferences in random order), each
 * host's addresses (IPv4 first), at most RESOLVER_ADDRS_MAX addresses in
 * all; no MX: the name's own A/AAAA (the implicit MX); a null MX (RFC
 * 7505): -ENXIO, permanent. mx 0: the name's own addresses only. An MX
 * host that does not resolve is skipped (the list fails only when none
 * does). port goes into every address. Same returns as resolver_host();
 * the callback runs on the resolver thread once. When the deadline passes
 * after some addresses were found, they are the answer (err 0); with none,
 * a host's temporary failure wins over others' permanent ones.
 */
#define RESOLVER_ADDRS_MAX 5            /* Postfix's smtp_mx_address_limit */
struct resolver_addr {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char host[RESOLVER_NAME_MAX];   /* the MX (or the name) it belongs to */
	char relay[RESOLVER_RELAY_MAX]; /* "host[addr]:port" */
};
struct resolver_list {
	int err;                        /* as resolver_result.err */
	int permanent;
	char why[RESOLVER_WHY_MAX];
	unsigned n;                     /* >= 1 when err is 0 */
	struct resolver_addr a[RESOLVER_ADDRS_MAX];
};
typedef void (*resolver_list_cb)(void *cookie, const struct resolver_list *res);
int resolver_route(struct resolver *r, const char *name, unsigned port, int mx,
		resolver_list_cb cb, void *cookie);

/*
 * A generic record query: the records of one type for a name (SPF, DNSBL,
 * anything that is not mail routing). type is one of RESOLVER_T_*. The
 * answer lists the records of that type in the answer section (a CNAME
 * chain followed by the server), in the server's order, at most
 * RESOLVER_RR_MAX of them. err as in struct resolver_result: -ENOENT
 * NXDOMAIN, -ENODATA the name has no such record (NODATA), -EAGAIN
 * SERVFAIL/REFUSED/no reply, -ETIMEDOUT the deadline, -E2BIG more than
 * RESOLVER_RR_MAX records (temporary), -EINVAL a malformed name or answer.
 */
enum resolver_rrtype {
	RESOLVER_T_A = 1,
	RESOLVER_T_PTR = 12,
	RESOLVER_T_MX = 15,
	RESOLVER_T_TXT = 16,
	RESOLVER_T_AAAA = 28,
};
#define RESOLVER_RR_MAX 256             /* records kept per answer */
/* One record. A: data is the 4 address bytes, AAAA: the 16; MX, PTR: the
 * target name, NUL-terminated (len without the NUL), MX with its pref;
 * TXT: the record's character-strings joined with nothing between them
 * (RFC 7208 3.3), NUL-terminated (a NUL inside is kept: len says). */
struct resolver_rr {
	enum resolver_rrtype type;
	unsigned pref;
	size_t len;
	const char *data;
};
struct resolver_answer {
	int err;                        /* as resolver_result.err */
	int permanent;
	char why[RESOLVER_WHY_MAX];
	unsigned n;                     /* records in rr (0 unless err is 0) */
	const struct resolver_rr *rr;
};
/* Run on the resolver thread once per accepted query, as resolver_cb; ans
 * and everything it points to are valid only during the call. */
typedef void (*resolver_answer_cb)(void *cookie, const struct resolver_answer *ans);

/* Ask for name's records of type. timeout_ms is this query's deadline from
 * now (0: the resolver's timeout_ms; never more than it), so a caller with
 * a deadline of its own (an SPF check) gets its answer by then. Same
 * returns as resolver_host(); -EINVAL also for an unknown type. */
int resolver_query(struct resolver *r, const char *name, enum resolver_rrtype type,
		unsigned timeout_ms, resolver_answer_cb cb, void *cookie);

/* Pure (resolver.c's half, exposed for tests and the fuzzer): the records
 * of type in the DNS answer abuf (alen bytes) as a struct resolver_answer
 * in one allocation the caller frees with free(); NULL when out of memory.
 * The answer's err says what c-ares' parser made of it. */
struct resolver_answer *resolver_answer_parse(enum resolver_rrtype type,
		const unsigned char *abuf, int alen);

/* Pure and synchronous, any thread, no resolver needed: when dest is a
 * numeric address (forms as in resolver_host) fill *res (relay
 * "1.2.3.4[1.2.3.4]:25") and return 1; 0 when dest is a name (DNS needed);
 * -EINVAL when dest is malformed (res->why says how). Lets a caller skip the
 * thread hop, as the drain does for static numeric destinations. */
int resolver_numeric(const char *dest, unsigned default_port, struct resolver_result *res);

/* Split dest ("host", "host:port", "[host]:port", "[v6]:port", a bare v6
 * address) into host (NUL-terminated, brackets removed) and *port
 * (default_port when absent); *bracketed (may be NULL) says whether the host
 * was in brackets (Postfix's relayhost/transport rule: brackets turn the MX
 * look-up off). Pure. Returns 0 or -EINVAL. */
int resolver_dest_split(const char *dest, char *host, size_t hostlen, unsigned default_port,
		unsigned *port, int *bracketed);

/* A snapshot of the counters (for metrics and tests). Any thread. */
void resolver_get_stats(struct resolver *r, struct resolver_stats *st);

#endif
