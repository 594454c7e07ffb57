/* SPDX-License-Identifier: MIT */
/*
 * spf: Sender Policy Framework (RFC 7208) for the SMTP server. libspf2
 * evaluates the policy; its DNS comes from a layer of ours that asks the
 * process's bounded resolver (core/resolver.h: resolver_query) with the
 * check's own deadline. libspf2 is synchronous, so checks run on a small
 * pool of worker threads (core/workpool.h) and the answer reaches the
 * asking engine thread through loop_post(): an engine thread never waits.
 * Bounded: SPF_QUEUE_MAX checks at once (more are answered temperror at
 * once), each within spf_timeout, RFC 7208's DNS limits (10 mechanisms,
 * 10 MX and PTR names, 2 void lookups).
 */
#ifndef ETRND_PROTO_SPF_H
#define ETRND_PROTO_SPF_H

#include <stddef.h>
#include <stdint.h>

struct loop;
struct resolver;

/* RFC 7208 2.6: the results. */
enum spf_res {
	SPF_RES_NONE = 0,
	SPF_RES_NEUTRAL,
	SPF_RES_PASS,
	SPF_RES_FAIL,
	SPF_RES_SOFTFAIL,
	SPF_RES_TEMPERROR,
	SPF_RES_PERMERROR,
	SPF_RES_COUNT
};

/* The result's name as RFC 7208 writes it ("pass", "softfail"). Static. */
const char *spf_res_name(enum spf_res r);
/* The result named at the start of text (len bytes, any case), as in a
 * Received-SPF field's value; -1 when none is. Pure. */
int spf_res_parse(const char *text, size_t len);

/*
 * The result of the Received-SPF field etrnd put on a stored body (ours:
 * CRLF lines, the fields etrnd and the policy checks added come first,
 * then our Received:), or -1 when there is none. Only the fields above the
 * first Received: are read (at most SPF_STORED_SCAN_MAX octets), so a
 * Received-SPF the sender wrote into the message is never taken for ours.
 * Pure: how a bounce learns, long after MAIL FROM, that the sender failed.
 */
#define SPF_STORED_SCAN_MAX (80u * 1024u)
int spf_stored_result(const char *body, size_t len);

#define SPF_QUEUE_MAX 256        /* checks accepted and not yet answered */
#define SPF_WORKERS_DEFAULT 2
#define SPF_TIMEOUT_MS_DEFAULT 20000 /* RFC 7208 4.6.4: at least 20 s */
#define SPF_VOID_MAX 2           /* RFC 7208 4.6.4: void lookups */
#define SPF_DNS_MECH_MAX 10      /* RFC 7208 4.6.4: DNS-querying terms */
#define SPF_DNS_NAMES_MAX 10     /* RFC 7208 4.6.4: MX / PTR names */
#define SPF_COMMENT_MAX 256      /* the comment kept from libspf2 */
#define SPF_HEADER_MAX 1536      /* a whole Received-SPF field, folded */
#define SPF_IDENT_MAX 320        /* an identity kept (sender, HELO) */
#define SPF_CLIENT_MAX 64        /* the client address as text */

/* What is checked. Every string is copied at submission. */
struct spf_query {
	const char *client;      /* the client's address, text */
	const char *helo;        /* the HELO/EHLO argument ("" when none) */
	const char *sender;      /* MAIL FROM's address ("" for <>: the HELO
	                            identity is checked, RFC 7208 2.3) */
	const char *receiver;    /* our hostname, for the header */
};

struct spf_verdict {
	enum spf_res res;
	int helo_identity;                 /* the HELO identity was checked */
	char domain[SPF_IDENT_MAX];        /* the domain checked */
	char comment[SPF_COMMENT_MAX];     /* why, printable ASCII */
};

/* Printable ASCII of src (NULL: "") into dst, NUL-terminated, cut to fit;
 * anything else becomes '?'. Pure. */
void spf_printable(char *dst, size_t dstlen, const char *src);

/* Evaluate q now, on this thread (blocks on DNS up to timeout_ms):
 * what the workers run, exposed for tests. r is the resolver. */
void spf_eval(struct resolver *r, const struct spf_query *q, unsigned timeout_ms,
		struct spf_verdict *v);

/*
 * The Received-SPF field (RFC 7208 9.1) for v and q into out (outlen
 * bytes, at least SPF_HEADER_MAX), folded, ending in CRLF, e.g.
 *   Received-SPF: pass (mx.example: domain of a.test designates ...)
 *    client-ip=192.0.2.1; envelope-from="x@a.test"; helo=h.test;
 *    receiver=mx.example; identity=mailfrom
 * Peer text is made printable and cut to fit. Returns its length. Pure.
 */
size_t spf_header(const struct spf_verdict *v, const struct spf_query *q, char *out,
		size_t outlen);

struct spf;
/* The answer of spf_check(), on the asking loop's thread. v valid during
 * the call. */
typedef void (*spf_done_fn)(void *arg, const struct spf_verdict *v);

/* Start workers threads (0: SPF_WORKERS_DEFAULT) asking r (which must
 * outlive the pool), each check within timeout_ms (0: the default). NULL
 * with err set on failure. */
struct spf *spf_start(struct resolver *r, unsigned workers, unsigned timeout_ms, char *err,
		size_t errlen);

/* Check q on a worker; done(arg, v) runs once on l's thread. Returns 0, or
 * -EAGAIN when SPF_QUEUE_MAX checks are out (or the pool is stopping):
 * done does not run; the caller treats it as temperror. Any thread. */
int spf_check(struct spf *s, struct loop *l, const struct spf_query *q, spf_done_fn done,
		void *arg);

/* Checks accepted and not yet answered (the pool's slots in use). */
unsigned spf_busy(struct spf *s);

/* Join the workers (as workpool_stop: after the engine threads stopped,
 * before their loops are freed); then free. NULL is fine. Returns NULL. */
struct spf *spf_free(struct spf *s);

#endif
