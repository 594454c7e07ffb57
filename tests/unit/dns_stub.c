/* SPDX-License-Identifier: MIT */
/*
 * dns_stub: see dns_stub.h. One thread polls the UDP socket and an eventfd
 * (stop); answers for "slow" names wait in a small table until due. Names
 * in answers are written uncompressed except the owner, a pointer to the
 * question (RFC 1035 4.1.4).
 */
#include "tests/unit/dns_stub.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/ascii.h"
#include "core/now.h"

#define DNS_STUB_PKT_MAX 512     /* RFC 1035 2.3.4: UDP messages */
#define DNS_STUB_HDR 12
#define DNS_STUB_LATE_MAX 64     /* slow answers waiting */
#define DNS_STUB_TTL 60
#define DNS_T_A 1
#define DNS_T_PTR 12
#define DNS_T_TXT 16
#define DNS_STUB_TXT_PART 255    /* RFC 1035 3.3: a <character-string> */
#define DNS_T_MX 15
#define DNS_T_AAAA 28
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_NXDOMAIN 3

struct dns_stub_late {
	uint64_t due_ms;
	struct sockaddr_in to;
	size_t len;
	unsigned char pkt[DNS_STUB_PKT_MAX];
};

struct dns_stub {
	const struct dns_stub_rr *zone;
	size_t n;
	int fd, stopfd;
	unsigned port;
	_Atomic unsigned queries;
	pthread_t thread;
	struct dns_stub_late late[DNS_STUB_LATE_MAX];
	size_t nlate;
};

static int dns_stub_name_is(const char *a, const char *name, size_t len)
{
	return strlen(a) == len && ascii_eq_n(a, name, len);
}

/* Write name as labels at p; returns bytes written, 0 when it does not fit. */
static size_t dns_stub_put_name(unsigned char *p, size_t room, const char *name)
{
	size_t o = 0;

	while (*name && strcmp(name, ".")) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);
		if (l == 0 || l > 63 || o + 1 + l + 1 > room)
			return 0;
		p[o++] = (unsigned char)l;
		memcpy(p + o, name, l);
		o += l;
		name += l + (dot ? 1 : 0);
	}
	if (o + 1 > room)
		return 0;
	p[o++] = 0;
	return o;
}

/* One answer record for rr at out+o; returns the new offset, 0 if full. */
static size_t dns_stub_put_rr(unsigned char *out, size_t o, const struct dns_stub_rr *rr)
{
	unsigned char rdata[DNS_STUB_PKT_MAX];
	size_t rdlen = 0;
	int type;

	if (rr->kind == DNS_STUB_A) {
		type = DNS_T_A;
		rdlen = inet_pton(AF_INET, rr->data, rdata) == 1 ? 4 : 0;
	} else if (rr->kind == DNS_STUB_AAAA) {
		type = DNS_T_AAAA;
		rdlen = inet_pton(AF_INET6, rr->data, rdata) == 1 ? 16 : 0;
	} else if (rr->kind == DNS_STUB_TXT) {
		size_t len = strlen(rr->data);

		type = DNS_T_TXT;
		for (size_t i = 0; i == 0 || i < len; i += DNS_STUB_TXT_PART) {
			size_t part = len - i < DNS_STUB_TXT_PART ? len - i : DNS_STUB_TXT_PART;
			if (rdlen + 1 + part > sizeof(rdata))
				return 0;
			rdata[rdlen++] = (unsigned char)part;
			memcpy(rdata + rdlen, rr->data + i, part);
			rdlen += part;
		}
	} else if (rr->kind == DNS_STUB_PTR) {
		type = DNS_T_PTR;
		rdlen = dns_stub_put_name(rdata, sizeof(rdata), rr->data);
	} else {
		type = DNS_T_MX;
		rdata[0] = (unsigned char)(rr->pref >> 8);
		rdata[1] = (unsigned char)rr->pref;
		rdlen = dns_stub_put_name(rdata + 2, sizeof(rdata) - 2, rr->data);
		rdlen = rdlen ? rdlen + 2 : 0;
	}
	if (!rdlen || o + 12 + rdlen > DNS_STUB_PKT_MAX)
		return 0;
	out[o++] = 0xc0; /* owner: the question's name at offset 12 */
	out[o++] = DNS_STUB_HDR;
	out[o++] = 0;
	out[o++] = (unsigned char)type;
	out[o++] = 0;
	out[o++] = 1; /* class IN */
	out[o++] = 0;
	out[o++] = 0;
	out[o++] = 0;
	out[o++] = DNS_STUB_TTL;
	out[o++] = (unsigned char)(rdlen >> 8);
	out[o++] = (unsigned char)rdlen;
	memcpy(out + o, rdata, rdlen);
	return o + rdlen;
}

static int dns_stub_kind_type(enum dns_stub_kind k)
{
	return k == DNS_STUB_A ? DNS_T_A : k == DNS_STUB_AAAA ? DNS_T_AAAA :
	       k == DNS_STUB_MX ? DNS_T_MX : k == DNS_STUB_TXT ? DNS_T_TXT :
	       k == DNS_STUB_PTR ? DNS_T_PTR : -1;
}

/*
 * Build the reply to query q (qlen bytes) into out. Returns its length, 0 to
 * stay silent; *delay_ms > 0 asks to send it that much later.
 */
static size_t dns_stub_reply(struct dns_stub *s, const unsigned char *q, size_t qlen,
			     unsigned char *out, unsigned *delay_ms)
{
	char name[DNS_STUB_PKT_MAX];
	size_t o = DNS_STUB_HDR, nl = 0, end;
	unsigned ancount = 0, known = 0, rcode = 0;
	int qtype;

	*delay_ms = 0;
	if (qlen < DNS_STUB_HDR + 5)
		return 0;
	while (o < qlen && q[o]) {
		size_t l = q[o];
		if (l > 63 || o + 1 + l >= qlen)
			return 0;
		if (nl)
			name[nl++] = '.';
		memcpy(name + nl, q + o + 1, l);
		nl += l;
		o += 1 + l;
	}
	if (o + 5 > qlen)
		return 0;
	end = o + 5; /* root label, type, class */
	qtype = q[o + 1] << 8 | q[o + 2];
	memcpy(out, q, end);
	for (size_t i = 0; i < s->n; i++) {
		const struct dns_stub_rr *rr = &s->zone[i];
		if (!dns_stub_name_is(rr->name, name, nl))
			continue;
		known = 1;
		if (rr->kind == DNS_STUB_SILENT)
			return 0;
		if (rr->kind == DNS_STUB_SLOW)
			*delay_ms = rr->pref;
		if (rr->kind == DNS_STUB_SERVFAIL)
			rcode = DNS_RCODE_SERVFAIL;
		if (rcode || dns_stub_kind_type(rr->kind) != qtype)
			continue;
		size_t no = dns_stub_put_rr(out, end, rr);
		if (no) {
			end = no;
			ancount++;
		}
	}
	if (!known)
		rcode = DNS_RCODE_NXDOMAIN;
	if (rcode)
		ancount = 0, end = o + 5;
	out[2] = (unsigned char)(0x80 | (q[2] & 0x79)); /* QR, opcode, RD */
	out[3] = (unsigned char)(0x80 | rcode);          /* RA, rcode */
	out[4] = 0;
	out[5] = 1;
	out[6] = (unsigned char)(ancount >> 8);
	out[7] = (unsigned char)ancount;
	memset(out + 8, 0, 4);
	return end;
}

static void dns_stub_serve_one(struct dns_stub *s)
{
	unsigned char q[DNS_STUB_PKT_MAX], out[DNS_STUB_PKT_MAX];
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	ssize_t n = recvfrom(s->fd, q, sizeof(q), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
	unsigned delay;
	size_t len;

	if (n <= 0)
		return;
	atomic_fetch_add(&s->queries, 1);
	len = dns_stub_reply(s, q, (size_t)n, out, &delay);
	if (!len)
		return;
	if (delay && s->nlate < DNS_STUB_LATE_MAX) {
		struct dns_stub_late *l = &s->late[s->nlate++];
		l->due_ms = now_mono_ms() + delay;
		l->to = from;
		l->len = len;
		memcpy(l->pkt, out, len);
		return;
	}
	(void)sendto(s->fd, out, len, 0, (struct sockaddr *)&from, fl);
}

static void *dns_stub_main(void *arg)
{
	struct dns_stub *s = arg;

	for (;;) {
		struct pollfd pfd[2] = { { .fd = s->fd, .events = POLLIN },
					 { .fd = s->stopfd, .events = POLLIN } };
		uint64_t now = now_mono_ms();
		int ms = -1;

		for (size_t i = 0; i < s->nlate;) {
			if (s->late[i].due_ms <= now) {
				(void)sendto(s->fd, s->late[i].pkt, s->late[i].len, 0,
					     (struct sockaddr *)&s->late[i].to, sizeof(s->late[i].to));
				s->late[i] = s->late[--s->nlate];
				continue;
			}
			if (ms < 0 || (int)(s->late[i].due_ms - now) < ms)
				ms = (int)(s->late[i].due_ms - now);
			i++;
		}
		if (poll(pfd, 2, ms) < 0)
			continue;
		if (pfd[1].revents)
			return NULL;
		if (pfd[0].revents)
			dns_stub_serve_one(s);
	}
}

struct dns_stub *dns_stub_start(const struct dns_stub_rr *zone, size_t n)
{
	struct dns_stub *s = calloc(1, sizeof(*s));
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sin);

	if (!s)
		return NULL;
	s->zone = zone;
	s->n = n;
	s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	s->stopfd = eventfd(0, EFD_CLOEXEC);
	if (s->fd < 0 || s->stopfd < 0 || bind(s->fd, (struct sockaddr *)&sin, sizeof(sin)) ||
	    getsockname(s->fd, (struct sockaddr *)&sin, &sl))
		goto fail;
	s->port = ntohs(sin.sin_port);
	if (pthread_create(&s->thread, NULL, dns_stub_main, s))
		goto fail;
	return s;
fail:
	if (s->fd >= 0)
		close(s->fd);
	if (s->stopfd >= 0)
		close(s->stopfd);
	free(s);
	return NULL;
}

unsigned dns_stub_port(const struct dns_stub *s)
{
	return s->port;
}

unsigned dns_stub_queries(struct dns_stub *s)
{
	return atomic_load(&s->queries);
}

void dns_stub_stop(struct dns_stub *s)
{
	uint64_t one = 1;

	if (!s)
		return;
	(void)!write(s->stopfd, &one, sizeof(one));
	pthread_join(s->thread, NULL);
	close(s->fd);
	close(s->stopfd);
	free(s);
}

void dns_stub_answer_init(struct dns_stub_answer *w)
{
	memset(w, 0, sizeof(*w));
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
}

/* Count the call and copy the answer (one of the two) under the lock. */
static void dns_stub_answer_put(struct dns_stub_answer *w, const struct resolver_list *res,
				const struct resolver_result *one)
{
	pthread_mutex_lock(&w->mu);
	w->calls++;
	w->thread = pthread_self();
	if (res)
		w->res = *res;
	if (one)
		w->one = *one;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void dns_stub_answer_cb(void *cookie, const struct resolver_list *res)
{
	dns_stub_answer_put(cookie, res, NULL);
}

void dns_stub_answer_one_cb(void *cookie, const struct resolver_result *res)
{
	dns_stub_answer_put(cookie, NULL, res);
}

int dns_stub_answer_wait(struct dns_stub_answer *w, unsigned max_ms)
{
	struct timespec dl = now_realtime_after(max_ms);
	int calls;

	pthread_mutex_lock(&w->mu);
	while (w->calls < 1 && pthread_cond_timedwait(&w->cv, &w->mu, &dl) == 0)
		;
	calls = w->calls;
	pthread_mutex_unlock(&w->mu);
	return calls;
}
