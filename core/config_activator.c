/* SPDX-License-Identifier: MIT */
/*
 * config_activator: the "activator.NAME.FIELD" keys (config.h, above struct
 * config_activator). A table maps each FIELD to its setter; config_finish()
 * then checks each activator as a whole and reads its password_file. Every
 * error names the line of the key at fault, or of the activator's first key
 * when a field is missing.
 */
#include "core/config_activator.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ascii.h"
#include "core/log.h"
#include "core/netaddr.h"
#include "core/resolver.h"
#include "core/timetable.h"
#include "core/units.h"

/* What "host" may hold: a name, an address, brackets and a port. */
#define CA_HOST_CHARS \
	"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]"
/* A "#queue" node: RFC 1985 3 as proto/etrn.c takes it. */
#define CA_QUEUE_CHARS \
	"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_"
#define CA_NAME_CHARS \
	"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
/* How much of a bad value an error quotes. */
#define CA_QUOTE_MAX 80
/* A password file mode that lets anyone but the owner at it (ssh's test
 * for a private key). */
#define CA_PASSWORD_MODE_OPEN 0077

/* Where each field of one activator was last set (config_finish()'s errors
 * name it). Beside c->activators, index for index. */
struct config_activator_at {
	char field[CONFIG_ACTIVATOR_FIELDS][CONFIG_WHERE_MAX];
};

struct ca_field {
	const char *name;
	int (*set)(struct config_activator *a, const char *v, char *why, size_t wl);
};

static int ca_bad(char *why, size_t wl, const char *field, const char *v, const char *want)
{
	(void)snprintf(why, wl, "bad value for %s: \"%.*s\" (want %s)", field, CA_QUOTE_MAX, v, want);
	return -1;
}

static int ca_set_host(struct config_activator *a, const char *v, char *why, size_t wl)
{
	char host[CONFIG_HOSTNAME_MAX];
	struct sockaddr_storage ss;
	unsigned port;

	/* Port 0 from the split means none given: config_finish() picks 25
	 * or 366 once the method is known. */
	if (strspn(v, CA_HOST_CHARS) != strlen(v) ||
	    resolver_dest_split(v, host, sizeof(host), 0, &port, NULL) ||
	    (netaddr_from_text(host, 1, &ss, NULL) && !config_host_labels(host, strlen(host))))
		return ca_bad(why, wl, "host", v,
			      "host[:port] or [host]:port, the host a name or an IP address");
	memcpy(a->host, host, strlen(host) + 1);
	a->port = port;
	return 0;
}

static const char *const ca_methods[] = {
	[CONFIG_ACTIVATOR_ETRN] = "etrn",
	[CONFIG_ACTIVATOR_ATRN] = "atrn",
};

static const char *const ca_tls[] = {
	[CONFIG_ACTIVATOR_TLS_NONE] = "none",
	[CONFIG_ACTIVATOR_TLS_MAY] = "may",
	[CONFIG_ACTIVATOR_TLS_MUST] = "must",
	[CONFIG_ACTIVATOR_TLS_VERIFY] = "verify",
};

#define CA_N(a) (sizeof(a) / sizeof((a)[0]))

/* The index of v (any case) in names[n]; -1 with why set for field. */
static int ca_choice(const char *const *names, size_t n, const char *v, const char *field,
		     const char *want, char *why, size_t wl)
{
	for (size_t i = 0; i < n; i++)
		if (ascii_eq_lit(v, strlen(v), names[i]))
			return (int)i;
	return ca_bad(why, wl, field, v, want);
}

const char *config_activator_method_name(enum config_activator_method m)
{
	return (unsigned)m < CA_N(ca_methods) ? ca_methods[m] : "?";
}

const char *config_activator_tls_name(enum config_activator_tls t)
{
	return (unsigned)t < CA_N(ca_tls) ? ca_tls[t] : "?";
}

static int ca_set_method(struct config_activator *a, const char *v, char *why, size_t wl)
{
	int i = ca_choice(ca_methods, CA_N(ca_methods), v, "method", "etrn or atrn", why, wl);

	a->method = i < 0 ? a->method : (enum config_activator_method)i;
	return i < 0 ? -1 : 0;
}

static int ca_set_tls(struct config_activator *a, const char *v, char *why, size_t wl)
{
	int i = ca_choice(ca_tls, CA_N(ca_tls), v, "tls", "none, may, must or verify", why, wl);

	a->tls = i < 0 ? a->tls : (enum config_activator_tls)i;
	return i < 0 ? -1 : 0;
}

/* How many of p's first n bytes are in set (a NUL is in no set). */
static size_t ca_span(const char *p, size_t n, const char *set)
{
	size_t i = 0;

	while (i < n && p[i] && strchr(set, p[i]))
		i++;
	return i;
}

int config_activator_request_add(struct config_activator *a, const char *v, size_t n,
				 char *why, size_t wl)
{
	char r[CONFIG_ACTIVATOR_REQUEST_MAX];
	size_t pre = n && (v[0] == '@' || v[0] == '#'), len = n - pre;

	if (pre && v[0] == '#') {
		if (len == 0 || ca_span(v + 1, len, CA_QUEUE_CHARS) < len)
			goto bad;
	} else {
		if (len > 1 && v[n - 1] == '.')
			len--; /* a trailing dot names the same domain */
		if (!config_host_labels(v + pre, len))
			goto bad;
	}
	if (pre + len >= sizeof(r))
		goto bad;
	memcpy(r, v, pre + len);
	r[pre + len] = '\0';
	if (v[0] != '#')
		ascii_lower_copy(r, r, pre + len);
	for (unsigned i = 0; i < a->nrequest; i++) {
		if (ascii_eq_lit(r, pre + len, a->request[i])) {
			(void)snprintf(why, wl, "request \"%s\" given twice", r);
			return -1;
		}
	}
	if (a->nrequest == CONFIG_ACTIVATOR_REQUESTS_MAX) {
		(void)snprintf(why, wl, "more than %d requests", CONFIG_ACTIVATOR_REQUESTS_MAX);
		return -1;
	}
	memcpy(a->request[a->nrequest++], r, pre + len + 1);
	return 0;
bad:
	(void)snprintf(why, wl, "bad request \"%.*s\" (want domain, @domain or #queue)",
		       (int)(n > CA_QUOTE_MAX ? CA_QUOTE_MAX : n), v);
	return -1;
}

/* A comma (or blank) list; replaces the list set before. "" (only from -o)
 * empties it. */
static int ca_set_request(struct config_activator *a, const char *v, char *why, size_t wl)
{
	char one[CONFIG_ERR_MAX / 2];
	const char *p = v;

	a->nrequest = 0;
	for (;;) {
		size_t n;

		p += strspn(p, ", \t");
		n = strcspn(p, ", \t");
		if (n == 0)
			return 0;
		if (config_activator_request_add(a, p, n, one, sizeof(one))) {
			(void)snprintf(why, wl, "bad value for request: %s", one);
			return -1;
		}
		p += n;
	}
}

static int ca_set_user(struct config_activator *a, const char *v, char *why, size_t wl)
{
	size_t n = strlen(v);

	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] <= ' ' || v[i] == 0x7f)
			n = 0;
	if (n == 0 || n >= sizeof(a->user))
		return ca_bad(why, wl, "user", v, "1 to 255 characters, no spaces or control characters");
	memcpy(a->user, v, n + 1);
	return 0;
}

static int ca_set_password_file(struct config_activator *a, const char *v, char *why, size_t wl)
{
	size_t n = strlen(v);

	if (n == 0 || n >= sizeof(a->password_file))
		return ca_bad(why, wl, "password_file", v, "a file name");
	memcpy(a->password_file, v, n + 1);
	return 0;
}

static int ca_set_schedule(struct config_activator *a, const char *v, char *why, size_t wl)
{
	char tw[CONFIG_ERR_MAX / 2];
	struct timetable t;

	if (timetable_parse(&t, v, strlen(v), tw, sizeof(tw))) {
		(void)snprintf(why, wl, "bad value for schedule: \"%.*s\": %s", CA_QUOTE_MAX, v, tw);
		return -1;
	}
	a->schedule = t;
	return 0;
}

static int ca_set_idle_timeout(struct config_activator *a, const char *v, char *why, size_t wl)
{
	uint64_t ms;

	if (units_parse_duration(v, &ms, NULL, 0) || ms < CONFIG_ATRN_IDLE_TIMEOUT_MIN_MS ||
	    ms > CONFIG_ATRN_IDLE_TIMEOUT_MAX_MS)
		return ca_bad(why, wl, "idle_timeout", v, "a duration from 1s to 1d, like 5m");
	a->idle_timeout_ms = (unsigned)ms;
	return 0;
}

/* CONFIG_ACTIVATOR_FIELDS of them; the order numbers the slots. */
static const struct ca_field ca_fields[] = {
	{ "host", ca_set_host },
	{ "method", ca_set_method },
	{ "request", ca_set_request },
	{ "user", ca_set_user },
	{ "password_file", ca_set_password_file },
	{ "tls", ca_set_tls },
	{ "schedule", ca_set_schedule },
	{ "idle_timeout", ca_set_idle_timeout },
};
_Static_assert(CA_N(ca_fields) == CONFIG_ACTIVATOR_FIELDS, "one slot per field");

static int ca_field_index(const char *name, size_t n)
{
	for (size_t i = 0; i < CA_N(ca_fields); i++)
		if (strlen(ca_fields[i].name) == n && !memcmp(ca_fields[i].name, name, n))
			return (int)i;
	return -1;
}

int config_activator_key(const char *key)
{
	return !strncmp(key, CONFIG_ACTIVATOR_PREFIX, sizeof(CONFIG_ACTIVATOR_PREFIX) - 1);
}

/* Split "activator.NAME.FIELD": *name (n bytes) and *field. 0 or -1. */
static int ca_split(const char *key, const char **name, size_t *n, const char **field)
{
	const char *p = key + sizeof(CONFIG_ACTIVATOR_PREFIX) - 1, *dot = strchr(p, '.');

	if (!config_activator_key(key) || !dot)
		return -1;
	*name = p;
	*n = (size_t)(dot - p);
	*field = dot + 1;
	return 0;
}

static int ca_find(const struct config *c, const char *name, size_t n)
{
	for (unsigned i = 0; i < c->nactivators; i++)
		if (strlen(c->activators[i].name) == n && !memcmp(c->activators[i].name, name, n))
			return (int)i;
	return -1;
}

/* A new activator NAME at the end of c->activators (both arrays grow by
 * one). Its defaults: etrn, tls may, the port from the method. */
static struct config_activator *ca_add(struct config *c, const char *name, size_t n,
				       const char *where)
{
	struct config_activator *na;
	struct config_activator_at *nat;
	unsigned i = c->nactivators;

	na = realloc(c->activators, (i + 1) * sizeof(*na));
	if (!na)
		return NULL;
	c->activators = na;
	nat = realloc(c->activators_at, (i + 1) * sizeof(*nat));
	if (!nat)
		return NULL;
	c->activators_at = nat;
	memset(&na[i], 0, sizeof(na[i]));
	memset(&nat[i], 0, sizeof(nat[i]));
	memcpy(na[i].name, name, n);
	na[i].name[n] = '\0';
	na[i].method = CONFIG_ACTIVATOR_ETRN;
	na[i].tls = CONFIG_ACTIVATOR_TLS_MAY;
	(void)snprintf(na[i].where, sizeof(na[i].where), "%s", where);
	c->nactivators++;
	return &na[i];
}

int config_activator_set(struct config *c, const char *key, const char *value,
			 const char *where, char *why, size_t wl)
{
	struct config_activator *a;
	const char *name, *field;
	char w[CONFIG_ERR_MAX / 2];
	size_t n;
	int f, i;

	if (ca_split(key, &name, &n, &field)) {
		(void)snprintf(why, wl, "bad key \"%.*s\" (want activator.NAME.FIELD)", CA_QUOTE_MAX, key);
		return -1;
	}
	if (n == 0 || n >= CONFIG_ACTIVATOR_NAME_MAX || ca_span(name, n, CA_NAME_CHARS) < n) {
		(void)snprintf(why, wl, "bad activator name \"%.*s\" (want 1 to %d letters, digits, - and _)",
			       (int)(n > CA_QUOTE_MAX ? CA_QUOTE_MAX : n), name,
			       CONFIG_ACTIVATOR_NAME_MAX - 1);
		return -1;
	}
	f = ca_field_index(field, strlen(field));
	if (f < 0) {
		(void)snprintf(why, wl, "activator %.*s: unknown field \"%.*s\" (want host, method, request, user, password_file, tls, schedule or idle_timeout)",
			       (int)n, name, CA_QUOTE_MAX, field);
		return -1;
	}
	i = ca_find(c, name, n);
	if (i < 0 && c->nactivators == CONFIG_ACTIVATORS_MAX) {
		(void)snprintf(why, wl, "activator %.*s: more than %d activators", (int)n, name,
			       CONFIG_ACTIVATORS_MAX);
		return -1;
	}
	a = i >= 0 ? &c->activators[i] : ca_add(c, name, n, where);
	if (!a) {
		(void)snprintf(why, wl, "activator %.*s: out of memory", (int)n, name);
		return -1;
	}
	if (ca_fields[f].set(a, value, w, sizeof(w))) {
		(void)snprintf(why, wl, "activator %s: %s", a->name, w);
		return -1;
	}
	(void)snprintf(c->activators_at[a - c->activators].field[f], CONFIG_WHERE_MAX, "%s", where);
	return 0;
}

int config_activator_slot(const struct config *c, const char *key)
{
	const char *name, *field;
	size_t n;
	int i, f;

	if (ca_split(key, &name, &n, &field))
		return -1;
	i = ca_find(c, name, n);
	f = ca_field_index(field, strlen(field));
	return i < 0 || f < 0 ? -1 : i * CONFIG_ACTIVATOR_FIELDS + f;
}

int config_activator_check(const struct config_activator *a, const char **field,
			   char *why, size_t wl)
{
	const char *bad = NULL, *msg = NULL;

	if (!a->host[0])
		msg = "no host (want host = mx.example.net or [host]:port)";
	else if (a->method == CONFIG_ACTIVATOR_ETRN && a->nrequest == 0)
		msg = "method etrn needs a request (domain, @domain or #queue)";
	else if (a->method == CONFIG_ACTIVATOR_ATRN && !a->user[0])
		msg = "method atrn needs a user and a password_file (RFC 2645: AUTH before ATRN)";
	else if (a->user[0] && !a->password[0] && !a->password_file[0])
		msg = "a user needs a password_file";
	else if (!a->user[0] && (a->password[0] || a->password_file[0]))
		bad = "password_file", msg = "a password_file without a user";
	for (unsigned i = 0; !msg && a->method == CONFIG_ACTIVATOR_ATRN && i < a->nrequest; i++) {
		if (a->request[i][0] == '@' || a->request[i][0] == '#') {
			(void)snprintf(why, wl, "method atrn takes domains only, not \"%s\"",
				       a->request[i]);
			bad = "request";
			msg = why;
		}
	}
	if (field)
		*field = bad;
	if (!msg)
		return 0;
	if (msg != why)
		(void)snprintf(why, wl, "%s", msg);
	return -1;
}

/* The first line of a->password_file (without its newline) into
 * a->password. at: where password_file was set. */
static int ca_read_password(struct config_activator *a, const char *at, char *err, size_t errlen)
{
	char buf[CONFIG_ACTIVATOR_PASS_MAX + 1], *nl;
	const char *what = NULL;
	size_t got = 0, len;
	struct stat st;
	int fd = open(a->password_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0 || fstat(fd, &st)) {
		what = strerror(errno);
		goto fail;
	}
	if (st.st_mode & CA_PASSWORD_MODE_OPEN)
		log_warn("%s: activator %s: password_file %s is open to group or others (mode %04o): chmod 600 it",
			 at, a->name, a->password_file, (unsigned)(st.st_mode & 07777));
	while (got < sizeof(buf) - 1) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			what = strerror(errno);
			goto fail;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	nl = memchr(buf, '\n', got);
	len = nl ? (size_t)(nl - buf) : got;
	if (len && buf[len - 1] == '\r')
		len--;
	if (!nl && got == sizeof(buf) - 1)
		what = "its first line is longer than " "the longest password (255 octets)";
	else if (len == 0)
		what = "empty (its first line is the password)";
	else if (memchr(buf, '\0', len))
		what = "a NUL byte in the password";
	if (what)
		goto fail;
	memcpy(a->password, buf, len);
	a->password[len] = '\0';
	explicit_bzero(buf, sizeof(buf));
	close(fd);
	return 0;
fail:
	explicit_bzero(buf, sizeof(buf));
	if (fd >= 0)
		close(fd);
	(void)snprintf(err, errlen, "%s: activator %s: password_file %s: %s", at, a->name,
		       a->password_file, what);
	return -1;
}

/* The where of field name of activator i ("" = never set: its first key). */
static const char *ca_at(const struct config *c, unsigned i, const char *name)
{
	int f = name ? ca_field_index(name, strlen(name)) : -1;

	return f >= 0 && c->activators_at[i].field[f][0] ? c->activators_at[i].field[f]
							   : c->activators[i].where;
}

/* One activator: complete, consistent, its password read. */
static int ca_finish_one(struct config *c, unsigned i, char *err, size_t errlen)
{
	struct config_activator *a = &c->activators[i];
	char why[CONFIG_ERR_MAX / 2];
	const char *field;

	if (config_activator_check(a, &field, why, sizeof(why))) {
		(void)snprintf(err, errlen, "%s: activator %s: %s", ca_at(c, i, field), a->name, why);
		return -1;
	}
	if (a->schedule.n == 0) {
		(void)snprintf(err, errlen, "%s: activator %s: no schedule (want schedule = every 1h, 08:00-18:00 every 5m or after-outbound)",
			       a->where, a->name);
		return -1;
	}
	if (a->method == CONFIG_ACTIVATOR_ETRN && a->idle_timeout_ms) {
		(void)snprintf(err, errlen, "%s: activator %s: idle_timeout is for method atrn (an ETRN run does not wait for mail)",
			       ca_at(c, i, "idle_timeout"), a->name);
		return -1;
	}
	if (a->password_file[0] && ca_read_password(a, ca_at(c, i, "password_file"), err, errlen))
		return -1;
	if (a->user[0] && a->tls == CONFIG_ACTIVATOR_TLS_NONE)
		log_warn("%s: activator %s: tls = none: the AUTH credentials of user %s go to %s in the clear",
			 ca_at(c, i, "tls"), a->name, a->user, a->host);
	if (!a->port)
		a->port = a->method == CONFIG_ACTIVATOR_ATRN ? CONFIG_ODMR_PORT : CONFIG_ETRN_PORT;
	return 0;
}

int config_activators_finish(struct config *c, char *err, size_t errlen)
{
	for (unsigned i = 0; i < c->nactivators; i++)
		if (ca_finish_one(c, i, err, errlen))
			return -1;
	return 0;
}

void config_activators_free(struct config *c)
{
	for (unsigned i = 0; i < c->nactivators; i++)
		explicit_bzero(c->activators[i].password, sizeof(c->activators[i].password));
	free(c->activators);
	free(c->activators_at);
	c->activators = NULL;
	c->activators_at = NULL;
	c->nactivators = 0;
}
