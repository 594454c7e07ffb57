/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for admin/ctl_activate.c: the control socket's "activate
 * KEY=VALUE ..." into a one-shot activator's spec (table: request -> the
 * spec's fields or the reason it is refused), and the log line's pass=
 * mask.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "admin/ctl_activate.h"

/* "secret" and "p w\tx" in base64. */
#define T_PASS "c2VjcmV0"
#define T_PASS_SPACE "cCB3CXg="

struct t_case {
	const char *in;
	int want_rc;
	const char *want_why;          /* a part of the reason */
	enum config_activator_method want_method;
	const char *want_host;
	unsigned want_port;
	enum config_activator_tls want_tls;
	const char *want_user, *want_pass;
	unsigned want_nreq;
	const char *want_req0, *want_req1;
	unsigned want_idle_ms;
};

#define T_BAD(i, why) { .in = (i), .want_rc = -EINVAL, .want_why = (why) }

static const struct t_case t_cases[] = {
	{ "host=mx.isp.example request=example.com", 0, NULL, CONFIG_ACTIVATOR_ETRN,
	  "mx.isp.example", 25, CONFIG_ACTIVATOR_TLS_MAY, "", "", 1, "example.com", NULL, 0 },
	{ "method=etrn host=127.0.0.1 port=2525 tls=none request=@Example.COM.,#q1",
	  0, NULL, CONFIG_ACTIVATOR_ETRN, "127.0.0.1", 2525, CONFIG_ACTIVATOR_TLS_NONE, "", "",
	  2, "@example.com", "#q1", 0 },
	{ "method=atrn host=::1 user=cust pass=" T_PASS " tls=must idle_timeout=90s",
	  0, NULL, CONFIG_ACTIVATOR_ATRN, "::1", 366, CONFIG_ACTIVATOR_TLS_MUST, "cust",
	  "secret", 0, NULL, NULL, 90000 },
	{ "method=ATRN host=h.example user=u@x.example pass=" T_PASS_SPACE
	  " request=a.example,b.example tls=verify", 0, NULL, CONFIG_ACTIVATOR_ATRN, "h.example",
	  366, CONFIG_ACTIVATOR_TLS_VERIFY, "u@x.example", "p w\tx", 2, "a.example", "b.example",
	  0 },
	/* Refused as etrnd.conf refuses an activator. */
	T_BAD("request=example.com", "no host"),
	T_BAD("host=h.example", "needs a request"),
	T_BAD("method=atrn host=h.example", "needs user= and pass="),
	T_BAD("method=atrn host=h.example user=u pass=" T_PASS " request=@a.example", "domains only"),
	T_BAD("method=atrn host=h.example user=u pass=" T_PASS " request=#q", "domains only"),
	T_BAD("host=h.example request=a.example user=u", "go together"),
	/* Bad values. */
	T_BAD("method=turn host=h.example request=a.example", "method"),
	T_BAD("host=h.example port=0 request=a.example", "port"),
	T_BAD("host=h.example port=65536 request=a.example", "port"),
	T_BAD("host=h.example port=25x request=a.example", "port"),
	T_BAD("host=h.example tls=maybe request=a.example", "tls"),
	T_BAD("host=h\x01x request=a.example", "host"),
	T_BAD("host= request=a.example", "host"),
	T_BAD("host=h.example request=a.example,", "request"),
	T_BAD("host=h.example request=@", "request"),
	T_BAD("host=h.example request=a..example", "bad request"),
	T_BAD("host=h.example request=a.example,A.example", "given twice"),
	T_BAD("host=h.example request=a.example pass=!!!! user=u", "base64"),
	/* "a\0b" in base64: a NUL cannot be a password. */
	T_BAD("host=h.example request=a.example user=u pass=YQBi", "base64"),
	T_BAD("host=h.example request=a.example idle_timeout=5M", "idle_timeout"),
	T_BAD("host=h.example request=a.example idle_timeout=0", "idle_timeout"),
	T_BAD("host=h.example request=a.example idle_timeout=999ms", "idle_timeout"),
	T_BAD("host=h.example request=a.example idle_timeout=2d", "idle_timeout"),
	T_BAD("host=h.example host=i.example request=a.example", "given twice"),
	T_BAD("host=h.example request=a.example color=red", "KEY=VALUE"),
	T_BAD("host=h.example request=a.example novalue", "KEY=VALUE"),
	T_BAD("host=h.example  request=a.example", "empty word"),
	T_BAD("host=h.example request=a.example ", "empty word"),
	T_BAD("", "no host"),
};

static void t_run(const struct t_case *c)
{
	struct config_activator s;
	char why[CTL_ACTIVATE_WHY_MAX];
	int rc = ctl_activate_parse(c->in, strlen(c->in), &s, why, sizeof(why));

	cr_assert_eq(rc, c->want_rc, "\"%s\": rc %d (%s)", c->in, rc, rc ? why : "");
	if (rc) {
		cr_assert(strstr(why, c->want_why), "\"%s\": why \"%s\"", c->in, why);
		cr_assert(!strstr(why, "secret"), "\"%s\": why quotes the password", c->in);
		cr_assert_eq(s.password[0], '\0', "\"%s\": password left in the spec", c->in);
		return;
	}
	cr_assert_eq(s.method, c->want_method, "\"%s\"", c->in);
	cr_assert_str_eq(s.host, c->want_host, "\"%s\"", c->in);
	cr_assert_eq(s.port, c->want_port, "\"%s\": port %u", c->in, s.port);
	cr_assert_eq(s.tls, c->want_tls, "\"%s\"", c->in);
	cr_assert_str_eq(s.user, c->want_user, "\"%s\"", c->in);
	cr_assert_str_eq(s.password, c->want_pass, "\"%s\"", c->in);
	cr_assert_eq(s.nrequest, c->want_nreq, "\"%s\": %u requests", c->in, s.nrequest);
	if (c->want_req0)
		cr_assert_str_eq(s.request[0], c->want_req0, "\"%s\"", c->in);
	if (c->want_req1)
		cr_assert_str_eq(s.request[1], c->want_req1, "\"%s\"", c->in);
	cr_assert_eq(s.idle_timeout_ms, c->want_idle_ms, "\"%s\"", c->in);
	cr_assert_str_eq(s.name, "", "a one-shot has no name of its own");
	cr_assert_eq(s.schedule.n, 0u, "a one-shot has no schedule");
}

Test(ctl_activate, table)
{
	for (size_t i = 0; i < sizeof(t_cases) / sizeof(t_cases[0]); i++)
		t_run(&t_cases[i]);
}

struct t_mask {
	const char *in, *want;
	size_t outlen;
};

static const struct t_mask t_masks[] = {
	{ "activate method=atrn pass=c2VjcmV0 user=u", "activate method=atrn pass=* user=u", 256 },
	{ "activate pass=c2VjcmV0", "activate pass=*", 256 },
	{ "activate user=u pass=", "activate user=u pass=*", 256 },
	{ "activate user=xpass=c2VjcmV0", "activate user=xpass=c2VjcmV0", 256 },
	{ "status json", "status json", 256 },
	{ "activate pass=c2VjcmV0 pass=c2VjcmV0", "activate pass=* pass=*", 256 },
	/* Cut short: the secret never shows, not even its start. */
	{ "activate pass=c2VjcmV0", "activate pa", 12 },
	{ "activate pass=c2VjcmV0", "activate pass=", 15 },
	{ "flush example.com", "flush", 6 },
};

Test(ctl_activate, mask)
{
	for (size_t i = 0; i < sizeof(t_masks) / sizeof(t_masks[0]); i++) {
		char out[256];
		const struct t_mask *m = &t_masks[i];

		ctl_activate_mask(m->in, strlen(m->in), out, m->outlen);
		cr_assert_str_eq(out, m->want, "\"%s\" (%zu)", m->in, m->outlen);
	}
}
