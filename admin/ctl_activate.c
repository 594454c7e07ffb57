/* SPDX-License-Identifier: MIT */
/*
 * ctl_activate: "activate KEY=VALUE ..." into a one-shot activator's spec
 * (see ctl_activate.h). One table of keys, each with its parser; the whole
 * spec is then checked as etrnd.conf checks an activator.
 */
#include "admin/ctl_activate.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "admin/schema.h"
#include "core/ascii.h"
#include "core/base64.h"
#include "core/units.h"

#define CTL_ACTIVATE_PORT_MAX 65535u
/* The longest value quoted back in a reason. */
#define CTL_ACTIVATE_QUOTE_MAX 64
#define CTL_ACTIVATE_PASS_KEY "pass="

/* One key: its name and how its value (v, n bytes, not NUL-terminated)
 * goes into the spec. */
struct ctl_activate_key {
	const char *name;
	int (*parse)(struct config_activator *s, const char *v, size_t n, char *why, size_t wl);
};

static int ctl_activate_bad(char *why, size_t wl, const char *what, const char *v, size_t n)
{
	snprintf(why, wl, "%s \"%.*s\"", what, (int)(n > CTL_ACTIVATE_QUOTE_MAX ?
		 CTL_ACTIVATE_QUOTE_MAX : n), v);
	return -EINVAL;
}

static int ctl_activate_method(struct config_activator *s, const char *v, size_t n, char *why,
			       size_t wl)
{
	for (int m = CONFIG_ACTIVATOR_ETRN; m <= CONFIG_ACTIVATOR_ATRN; m++) {
		if (ascii_eq_lit(v, n, config_activator_method_name(m))) {
			s->method = (enum config_activator_method)m;
			return 0;
		}
	}
	return ctl_activate_bad(why, wl, "method: want etrn or atrn, not", v, n);
}

/* A host name or address literal (no brackets, no port: port= says it). */
static int ctl_activate_host(struct config_activator *s, const char *v, size_t n, char *why,
			     size_t wl)
{
	if (n == 0 || n >= sizeof(s->host) || strspn(v, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:_") < n)
		return ctl_activate_bad(why, wl, "host: want a host name or address, not", v, n);
	memcpy(s->host, v, n);
	s->host[n] = '\0';
	return 0;
}

static int ctl_activate_port(struct config_activator *s, const char *v, size_t n, char *why,
			     size_t wl)
{
	unsigned port = 0;
	size_t i;

	for (i = 0; i < n && v[i] >= '0' && v[i] <= '9' && port <= CTL_ACTIVATE_PORT_MAX; i++)
		port = port * 10 + (unsigned)(v[i] - '0');
	if (n == 0 || i < n || port == 0 || port > CTL_ACTIVATE_PORT_MAX)
		return ctl_activate_bad(why, wl, "port: want 1 to 65535, not", v, n);
	s->port = port;
	return 0;
}

static int ctl_activate_tls(struct config_activator *s, const char *v, size_t n, char *why,
			    size_t wl)
{
	for (int t = CONFIG_ACTIVATOR_TLS_NONE; t <= CONFIG_ACTIVATOR_TLS_VERIFY; t++) {
		if (ascii_eq_lit(v, n, config_activator_tls_name(t))) {
			s->tls = (enum config_activator_tls)t;
			return 0;
		}
	}
	return ctl_activate_bad(why, wl, "tls: want none, may, must or verify, not", v, n);
}

static int ctl_activate_user(struct config_activator *s, const char *v, size_t n, char *why,
			     size_t wl)
{
	char u[CONFIG_ACTIVATOR_USER_MAX];

	if (n == 0 || n >= sizeof(u))
		return ctl_activate_bad(why, wl, "user: want 1 to 255 characters, not", v, n);
	memcpy(u, v, n);
	u[n] = '\0';
	if (schema_user_check(u, why, wl))
		return -EINVAL;
	memcpy(s->user, u, n + 1);
	return 0;
}

/* The password in base64: never quoted back. */
static int ctl_activate_pass(struct config_activator *s, const char *v, size_t n, char *why,
			     size_t wl)
{
	int got = base64_decode(s->password, sizeof(s->password) - 1, v, n);

	if (got <= 0 || memchr(s->password, '\0', (size_t)got) ||
	    memchr(s->password, '\r', (size_t)got) || memchr(s->password, '\n', (size_t)got)) {
		explicit_bzero(s->password, sizeof(s->password));
		snprintf(why, wl, "pass: want the password in base64 (1 to %u octets, no NUL, CR "
			 "or LF)", CONFIG_ACTIVATOR_PASS_MAX - 1);
		return -EINVAL;
	}
	s->password[got] = '\0';
	return 0;
}

static int ctl_activate_request(struct config_activator *s, const char *v, size_t n, char *why,
				size_t wl)
{
	size_t i = 0;

	do {
		const char *comma = memchr(v + i, ',', n - i);
		size_t e = comma ? (size_t)(comma - v) : n;

		/* etrnd.conf's rule for a request (core/config.h) */
		if (config_activator_request_add(s, v + i, e - i, why, wl))
			return -EINVAL;
		i = e + 1;
	} while (i <= n);
	return 0;
}

/* etrnd.conf's range for idle_timeout (core/config.h). */
static int ctl_activate_idle(struct config_activator *s, const char *v, size_t n, char *why,
			     size_t wl)
{
	char in[UNITS_WHY_MAX];
	uint64_t ms = 0;

	if (n == 0 || n >= sizeof(in))
		return ctl_activate_bad(why, wl, "idle_timeout: not a duration:", v, n);
	memcpy(in, v, n);
	in[n] = '\0';
	if (units_parse_duration(in, &ms, NULL, 0) || ms < CONFIG_ATRN_IDLE_TIMEOUT_MIN_MS ||
	    ms > CONFIG_ATRN_IDLE_TIMEOUT_MAX_MS)
		return ctl_activate_bad(why, wl, "idle_timeout: want a duration from 1s to 1d, not",
					v, n);
	s->idle_timeout_ms = (unsigned)ms;
	return 0;
}

static const struct ctl_activate_key ctl_activate_keys[] = {
	{ "method", ctl_activate_method },
	{ "host", ctl_activate_host },
	{ "port", ctl_activate_port },
	{ "tls", ctl_activate_tls },
	{ "user", ctl_activate_user },
	{ "pass", ctl_activate_pass },
	{ "request", ctl_activate_request },
	{ "idle_timeout", ctl_activate_idle },
};
#define CTL_ACTIVATE_NKEYS (sizeof(ctl_activate_keys) / sizeof(ctl_activate_keys[0]))

/* One "KEY=VALUE" word; *seen keeps which keys came. */
static int ctl_activate_word(struct config_activator *s, const char *w, size_t n,
			     unsigned *seen, char *why, size_t wl)
{
	const char *eq = memchr(w, '=', n);
	size_t kl = eq ? (size_t)(eq - w) : n;

	for (size_t i = 0; eq && i < CTL_ACTIVATE_NKEYS; i++) {
		const struct ctl_activate_key *k = &ctl_activate_keys[i];

		if (strlen(k->name) != kl || memcmp(w, k->name, kl))
			continue;
		if (*seen & (1u << i)) {
			snprintf(why, wl, "%s given twice", k->name);
			return -EINVAL;
		}
		*seen |= 1u << i;
		return k->parse(s, eq + 1, n - kl - 1, why, wl);
	}
	return ctl_activate_bad(why, wl, "want KEY=VALUE with KEY one of method, host, port, "
				"tls, user, pass, request, idle_timeout; not", w, kl);
}

/* The spec as a whole, as etrnd.conf checks an activator
 * (config_activator_check()); the credentials first, in this request's
 * words (pass=, not a password_file). */
static int ctl_activate_check(struct config_activator *s, char *why, size_t wl)
{
	const char *miss = NULL;

	if (s->method == CONFIG_ACTIVATOR_ATRN && (!s->user[0] || !s->password[0]))
		miss = "method=atrn needs user= and pass= (RFC 2645: AUTH before ATRN)";
	else if (!s->user[0] != !s->password[0])
		miss = "user= and pass= go together";
	if (miss) {
		snprintf(why, wl, "%s", miss);
		return -EINVAL;
	}
	if (config_activator_check(s, NULL, why, wl))
		return -EINVAL;
	if (!s->port)
		s->port = s->method == CONFIG_ACTIVATOR_ATRN ? CONFIG_ODMR_PORT : CONFIG_ETRN_PORT;
	return 0;
}

int ctl_activate_parse(const char *a, size_t len, struct config_activator *spec, char *why,
		       size_t whylen)
{
	unsigned seen = 0;
	size_t i = 0;

	memset(spec, 0, sizeof(*spec));
	if (whylen)
		why[0] = '\0';
	spec->tls = CONFIG_ACTIVATOR_TLS_MAY;
	snprintf(spec->where, sizeof(spec->where), "control socket");
	while (i < len) {
		const char *sp = memchr(a + i, ' ', len - i);
		size_t e = sp ? (size_t)(sp - a) : len;

		if (e == i || ctl_activate_word(spec, a + i, e - i, &seen, why, whylen))
			goto fail;
		i = e + 1;
		if (sp && i == len)
			goto fail;  /* a trailing space: an empty word */
	}
	if (ctl_activate_check(spec, why, whylen) == 0)
		return 0;
	explicit_bzero(spec->password, sizeof(spec->password));
	return -EINVAL;
fail:
	if (whylen && !why[0])
		snprintf(why, whylen, "empty word (want KEY=VALUE separated by one space)");
	explicit_bzero(spec->password, sizeof(spec->password));
	return -EINVAL;
}

char *ctl_activate_mask(const char *line, size_t len, char *out, size_t outlen)
{
	size_t kl = strlen(CTL_ACTIVATE_PASS_KEY), o = 0;

	for (size_t i = 0; i < len && o + 1 < outlen;) {
		int at_word = i == 0 || line[i - 1] == ' ';

		if (at_word && len - i >= kl && !memcmp(line + i, CTL_ACTIVATE_PASS_KEY, kl)) {
			size_t n = snprintf(out + o, outlen - o, "%s*", CTL_ACTIVATE_PASS_KEY);

			o = o + n < outlen ? o + n : outlen - 1;
			for (i += kl; i < len && line[i] != ' '; i++)
				;
			continue;
		}
		out[o++] = line[i++];
	}
	if (outlen)
		out[o < outlen ? o : outlen - 1] = '\0';
	return out;
}
