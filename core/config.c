/* SPDX-License-Identifier: MIT */
/*
 * config: parse etrnd.conf (see config.h). A table maps each key to a setter;
 * setters validate and report "bad value for KEY: "VALUE" (want ...)". The
 * file name and line number are prefixed by the caller of the setter, so every
 * error an operator sees points at the line to fix.
 */
#include "core/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/ascii.h"
#include "core/config_activator.h"
#include "core/domtab.h"
#include "core/log.h"
#include "core/netaddr.h"
#include "core/resolver.h"
#include "core/units.h"
#include "core/why.h"

#define CONFIG_LINE_MAX 8192

struct config_key {
	const char *name;
	int (*set)(struct config *c, const struct config_key *k, const char *v,
		   char *why, size_t whylen);
	size_t off;        /* offsetof the field in struct config */
	unsigned long long min, max;
};

static int set_size(struct config *c, const struct config_key *k, const char *v,
		    char *w, size_t wl)
{
	uint64_t n;

	/* The grammar is units.h's, shared with Redis rows and etrnctl. */
	if (units_parse_size(v, &n, NULL, 0) || n < k->min || n > k->max)
		return why_set(w, wl, "bad value for %s: \"%s\" (want a size from %llu to %llu, suffix k, M or G)",
			   k->name, v, k->min, k->max);
	*(size_t *)((char *)c + k->off) = (size_t)n;
	return 0;
}

static int set_uint(struct config *c, const struct config_key *k, const char *v,
		    char *w, size_t wl)
{
	unsigned long long n;
	char *end;

	errno = 0;
	n = isdigit((unsigned char)*v) ? strtoull(v, &end, 10) : 0;
	if (!isdigit((unsigned char)*v) || errno || *end || n < k->min || n > k->max)
		return why_set(w, wl, "bad value for %s: \"%s\" (want a number from %llu to %llu)",
			   k->name, v, k->min, k->max);
	*(unsigned *)((char *)c + k->off) = (unsigned)n;
	return 0;
}

static int set_duration(struct config *c, const struct config_key *k, const char *v,
			char *w, size_t wl)
{
	uint64_t ms;

	if (units_parse_duration(v, &ms, NULL, 0) || ms < k->min || ms > k->max)
		return why_set(w, wl, "bad value for %s: \"%s\" (want a duration from %llums to %llus, like 300s, 5m, 1h)",
			   k->name, v, k->min, k->max / 1000);
	*(unsigned *)((char *)c + k->off) = (unsigned)ms;
	return 0;
}

static int set_bool(struct config *c, const struct config_key *k, const char *v,
		    char *w, size_t wl)
{
	int b;

	size_t n = strlen(v);

	if (ascii_eq_lit(v, n, "yes") || ascii_eq_lit(v, n, "true") || !strcmp(v, "1"))
		b = 1;
	else if (ascii_eq_lit(v, n, "no") || ascii_eq_lit(v, n, "false") || !strcmp(v, "0"))
		b = 0;
	else
		return why_set(w, wl, "bad value for %s: \"%s\" (want yes or no)", k->name, v);
	*(int *)((char *)c + k->off) = b;
	return 0;
}

static int set_threads(struct config *c, const struct config_key *k, const char *v,
		       char *w, size_t wl)
{
	long n;

	if (!strcmp(v, "auto")) {
		n = sysconf(_SC_NPROCESSORS_ONLN);
		c->threads = n < 1 ? 1 : n > CONFIG_THREADS_MAX ? CONFIG_THREADS_MAX : (unsigned)n;
		return 0;
	}
	if (set_uint(c, k, v, w, wl))
		return why_set(w, wl, "bad value for threads: \"%s\" (want auto or a number from 1 to %d)",
			   v, CONFIG_THREADS_MAX);
	return 0;
}

static int set_sync(struct config *c, const struct config_key *k, const char *v,
		    char *w, size_t wl)
{
	if (!strcmp(v, "batch"))
		c->sync = CONFIG_SYNC_BATCH;
	else if (!strcmp(v, "always"))
		c->sync = CONFIG_SYNC_ALWAYS;
	else if (!strcmp(v, "none"))
		c->sync = CONFIG_SYNC_NONE;
	else
		return why_set(w, wl, "bad value for %s: \"%s\" (want batch, always or none)", k->name, v);
	return 0;
}

static int set_bare_lf(struct config *c, const struct config_key *k, const char *v,
		       char *w, size_t wl)
{
	if (!strcmp(v, "reject"))
		c->bare_lf_normalize = 0;
	else if (!strcmp(v, "normalize"))
		c->bare_lf_normalize = 1;
	else
		return why_set(w, wl, "bad value for %s: \"%s\" (want reject or normalize)", k->name, v);
	return 0;
}

static int set_log_level(struct config *c, const struct config_key *k, const char *v,
			 char *w, size_t wl)
{
	static const char *const names[] = { "debug", "info", "warn", "err" };

	for (int i = 0; i < 4; i++) {
		if (!strcmp(v, names[i])) {
			c->log_level = i;
			return 0;
		}
	}
	return why_set(w, wl, "bad value for %s: \"%s\" (want debug, info, warn or err)", k->name, v);
}

static int set_string(char *dst, size_t dstlen, const struct config_key *k,
		      const char *v, char *w, size_t wl)
{
	size_t n = strlen(v);

	if (n == 0 || n >= dstlen)
		return why_set(w, wl, "bad value for %s: \"%s\" (want 1 to %zu characters)",
			   k->name, v, dstlen - 1);
	memcpy(dst, v, n + 1);
	return 0;
}

static int set_spool_dir(struct config *c, const struct config_key *k, const char *v,
			 char *w, size_t wl)
{
	return set_string(c->spool_dir, sizeof(c->spool_dir), k, v, w, wl);
}

static int set_control_socket(struct config *c, const struct config_key *k, const char *v,
			      char *w, size_t wl)
{
	/* sun_path is 108 bytes on Linux. */
	if (strlen(v) >= 108)
		return why_set(w, wl, "bad value for %s: \"%s\" (a unix socket path under 108 characters)",
			   k->name, v);
	return set_string(c->control_socket, sizeof(c->control_socket), k, v, w, wl);
}

unsigned config_host_labels(const char *h, size_t n)
{
	size_t label = 0;
	unsigned nl = 1;

	if (n == 0 || n > 253)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)h[i];

		if (ch == '.') {
			if (label == 0 || h[i - 1] == '-')
				return 0;
			label = 0;
			nl++;
			continue;
		}
		if (!isalnum(ch) && ch != '-' && ch != '_')
			return 0;
		if (label == 0 && ch == '-')
			return 0;
		if (++label > 63)
			return 0;
	}
	if (label == 0 || h[n - 1] == '-')
		return 0;
	return nl;
}

static int valid_hostname(const char *h, size_t n)
{
	return config_host_labels(h, n) != 0;
}

static int set_hostname(struct config *c, const struct config_key *k, const char *v,
			char *w, size_t wl)
{
	if (!valid_hostname(v, strlen(v)))
		return why_set(w, wl, "bad value for %s: \"%s\" (want a host name like relay.example.net)",
			   k->name, v);
	return set_string(c->hostname, sizeof(c->hostname), k, v, w, wl);
}

/* local@domain: a dot-atom local part (RFC 5322 3.2.3 atext, without the
 * routing characters % ! that allow_untrusted_routing is about) and a host
 * name. */
static int set_postmaster(struct config *c, const struct config_key *k, const char *v,
			  char *w, size_t wl)
{
	const char *at = strrchr(v, '@');
	size_t ll = at ? (size_t)(at - v) : 0;

	for (size_t i = 0; i < ll; i++) {
		unsigned char ch = (unsigned char)v[i];

		if (!isalnum(ch) && !strchr(".#$&'*+-/=?^_`{|}~", ch))
			ll = 0;
	}
	if (ll == 0 || ll > CONFIG_LOCAL_MAX || v[0] == '.' || v[ll - 1] == '.' ||
	    !valid_hostname(at + 1, strlen(at + 1)))
		return why_set(w, wl, "bad value for %s: \"%s\" (want an address like postmaster@example.net)",
			   k->name, v);
	return set_string(c->postmaster, sizeof(c->postmaster), k, v, w, wl);
}

static void free_domains(struct config *c)
{
	for (size_t i = 0; i < c->nrelay_domains; i++)
		free(c->relay_domains[i]);
	free(c->relay_domains);
	c->relay_domains = NULL;
	c->nrelay_domains = 0;
}

/* Lists ("a, b c"): skip separators (commas, blanks) at *p; returns the
 * length of the item that starts there, 0 at the end. */
#define CONFIG_LIST_SEP ", \t"
static size_t list_item(const char **p)
{
	while (**p == ',' || isspace((unsigned char)**p))
		++*p;
	return strcspn(*p, CONFIG_LIST_SEP);
}

static int set_relay_domains(struct config *c, const struct config_key *k, const char *v,
			     char *w, size_t wl)
{
	char **list = NULL;
	size_t n = 0, item;
	const char *p = v;

	for (; (item = list_item(&p)) > 0; p += item) {
		size_t len = item;
		char *d, **nl;

		if (p[len - 1] == '.')
			len--; /* a trailing dot names the same domain */
		if (!valid_hostname(p, len)) {
			why_set(w, wl, "bad value for %s: \"%.*s\" is not a domain name",
			    k->name, (int)item, p);
			goto fail;
		}
		d = strndup(p, len);
		nl = d ? realloc(list, (n + 1) * sizeof(*list)) : NULL;
		if (!nl) {
			free(d);
			why_set(w, wl, "out of memory");
			goto fail;
		}
		list = nl;
		ascii_lower_copy(d, d, len);
		list[n++] = d;
	}
	free_domains(c);
	c->relay_domains = list;
	c->nrelay_domains = n;
	return 0;
fail:
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
	return -1;
}

/* "host:port", "[v6]:port" or ":port" (all addresses). */
static int parse_listen_one(const char *s, size_t n, struct config_listen *l)
{
	char host[INET6_ADDRSTRLEN + 2], *end;
	const char *colon, *port;
	unsigned long pn;
	size_t hl;

	if (n == 0 || n >= sizeof(l->text))
		return -1;
	memcpy(l->text, s, n);
	l->text[n] = '\0';
	memset(&l->addr, 0, sizeof(l->addr));
	if (l->text[0] == '[') {
		colon = strchr(l->text, ']');
		if (!colon || colon[1] != ':')
			return -1;
		hl = (size_t)(colon - l->text - 1);
		port = colon + 2;
		if (hl >= sizeof(host))
			return -1;
		memcpy(host, l->text + 1, hl);
		host[hl] = '\0';
	} else {
		colon = strrchr(l->text, ':');
		if (!colon)
			return -1;
		hl = (size_t)(colon - l->text);
		port = colon + 1;
		if (hl >= sizeof(host))
			return -1;
		memcpy(host, l->text, hl);
		host[hl] = '\0';
	}
	errno = 0;
	pn = strtoul(port, &end, 10);
	if (!*port || *end || errno || pn > 65535)
		return -1;
	if (host[0] == '\0' || !strcmp(host, "*")) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&l->addr;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)pn);
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		l->addrlen = sizeof(*sin);
	} else if (netaddr_from_text(host, (unsigned)pn, &l->addr, &l->addrlen)) {
		return -1;
	}
	return 0;
}

/* listen, listen_tls, listen_trusted, odmr_listen and odmr_listen_trusted
 * each replace only their own kind (k->min holds the CONFIG_LISTEN_* flags
 * of the key); the plain listeners stay first. All but listen may be
 * "none". */
static const unsigned listen_kinds[] = {
	0, CONFIG_LISTEN_TLS, CONFIG_LISTEN_TRUSTED, CONFIG_LISTEN_ODMR,
	CONFIG_LISTEN_ODMR | CONFIG_LISTEN_TRUSTED, CONFIG_LISTEN_SUBMISSION,
	CONFIG_LISTEN_CLUSTER,
};

/* log = stderr | syslog | /path/file */
static int set_log(struct config *c, const struct config_key *k, const char *v,
		   char *w, size_t wl)
{
	if (!strcmp(v, "stderr") || !strcmp(v, "syslog")) {
		c->log_syslog = v[1] == 'y';
		c->log_file[0] = '\0';
		return 0;
	}
	if (v[0] != '/' && strncmp(v, "./", 2) && strncmp(v, "../", 3) && !strchr(v, '/'))
		return why_set(w, wl, "bad value for %s: \"%s\" (want stderr, syslog or a file path)",
			   k->name, v);
	c->log_syslog = 0;
	c->log_file[0] = '\0';
	return set_string(c->log_file, sizeof(c->log_file), k, v, w, wl);
}

/* metrics_listen = host:port (numeric) | none */
static int set_metrics_listen(struct config *c, const struct config_key *k, const char *v,
			      char *w, size_t wl)
{
	if (!strcmp(v, "none")) {
		c->metrics_len = 0;
		return 0;
	}
	if (parse_listen_one(v, strlen(v), &c->metrics))
		return why_set(w, wl, "bad value for %s: \"%s\" (want host:port or [v6addr]:port with a numeric address, or none)",
			   k->name, v);
	c->metrics_len = 1;
	return 0;
}

/* user = name | none: a user that exists (looked up when it is used) */
static int set_user(struct config *c, const struct config_key *k, const char *v,
		    char *w, size_t wl)
{
	if (!strcmp(v, "none")) {
		c->user[0] = '\0';
		return 0;
	}
	for (const char *p = v; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
			return why_set(w, wl, "bad value for %s: \"%s\" (want a user name: letters, digits, '_', '-', '.')",
				   k->name, v);
	return set_string(c->user, sizeof(c->user), k, v, w, wl);
}

static int set_listen(struct config *c, const struct config_key *k, const char *v,
		      char *w, size_t wl)
{
	struct config_listen tmp[CONFIG_LISTEN_MAX], all[CONFIG_LISTEN_MAX];
	unsigned n = 0, na = 0, flags = (unsigned)k->min;
	const char *p = v;
	size_t len;

	if (flags && (!*v || !strcmp(v, "none")))
		p = "";
	for (; (len = list_item(&p)) > 0; p += len) {
		if (n == CONFIG_LISTEN_MAX)
			return why_set(w, wl, "bad value for %s: more than %d addresses", k->name,
				   CONFIG_LISTEN_MAX);
		if (parse_listen_one(p, len, &tmp[n]))
			return why_set(w, wl, "bad value for %s: \"%.*s\" (want host:port, [v6addr]:port or :port with a numeric address)",
				   k->name, (int)len, p);
		tmp[n++].flags = flags;
	}
	if (n == 0 && !flags)
		return why_set(w, wl, "bad value for %s: no address given", k->name);
	for (size_t kind = 0; kind < sizeof(listen_kinds) / sizeof(listen_kinds[0]); kind++) {
		const struct config_listen *src = listen_kinds[kind] == flags ? tmp : c->listen;
		unsigned ns = listen_kinds[kind] == flags ? n : c->nlisten;

		for (unsigned i = 0; i < ns; i++) {
			if (src[i].flags != listen_kinds[kind])
				continue;
			if (na == CONFIG_LISTEN_MAX)
				return why_set(w, wl, "bad value for %s: more than %d addresses in listen, listen_tls, listen_trusted and odmr_listen* together",
					   k->name, CONFIG_LISTEN_MAX);
			all[na++] = src[i];
		}
	}
	memcpy(c->listen, all, na * sizeof(all[0]));
	c->nlisten = na;
	return 0;
}

/* relayhost: "[host]:port" or "host[:port]", the host a name or a numeric
 * address; "" or "none" clears it. */
static int set_relayhost(struct config *c, const struct config_key *k, const char *v,
			 char *w, size_t wl)
{
	if (!*v || !strcmp(v, "none")) {
		c->relayhost[0] = '\0';
		return 0;
	}
	/* The syntax of a route (etrnd:route:<domain>): one rule for both. */
	if (strlen(v) >= sizeof(c->relayhost) || domtab_route_dest_check(v))
		return why_set(w, wl, "bad value for %s: \"%s\" (want [host]:port, host:port or host)",
			   k->name, v);
	memcpy(c->relayhost, v, strlen(v) + 1);
	return 0;
}

/* milter: "inet:host:port" (numeric host, as listen) or "unix:/path", one
 * or more; "" or "none": no milters. */
static int set_milter(struct config *c, const struct config_key *k, const char *v,
		      char *w, size_t wl)
{
	const char *p = !strcmp(v, "none") ? "" : v;
	unsigned n = 0;
	size_t len;

	for (; (len = list_item(&p)) > 0; p += len) {
		struct config_listen *m = &c->milters[n];

		if (n == CONFIG_MILTERS_MAX)
			return why_set(w, wl, "bad value for %s: more than %d milters", k->name,
				   CONFIG_MILTERS_MAX);
		if (len > 5 && !strncmp(p, "inet:", 5) && parse_listen_one(p + 5, len - 5, m) == 0 &&
		    ((struct sockaddr_in *)&m->addr)->sin_port != 0) {
			snprintf(m->text, sizeof(m->text), "%.*s", (int)len, p);
		} else if (len > 6 && !strncmp(p, "unix:/", 6) &&
			   len - 5 < sizeof(((struct sockaddr_un *)0)->sun_path) &&
			   len < sizeof(m->text)) {
			struct sockaddr_un *sun = (struct sockaddr_un *)&m->addr;

			memset(&m->addr, 0, sizeof(m->addr));
			sun->sun_family = AF_UNIX;
			memcpy(sun->sun_path, p + 5, len - 5);
			m->addrlen = (socklen_t)sizeof(*sun);
			snprintf(m->text, sizeof(m->text), "%.*s", (int)len, p);
		} else {
			return why_set(w, wl, "bad value for %s: \"%.*s\" (want inet:host:port with a numeric address, or unix:/path)",
				   k->name, (int)len, p);
		}
		m->flags = 0;
		n++;
	}
	c->nmilters = n;
	return 0;
}

static int set_milter_default_action(struct config *c, const struct config_key *k, const char *v,
				     char *w, size_t wl)
{
	if (!strcmp(v, "tempfail"))
		c->milter_default_action = CONFIG_MILTER_TEMPFAIL;
	else if (!strcmp(v, "accept"))
		c->milter_default_action = CONFIG_MILTER_ACCEPT;
	else if (!strcmp(v, "reject"))
		c->milter_default_action = CONFIG_MILTER_REJECT;
	else
		return why_set(w, wl, "bad value for %s: \"%s\" (want accept, tempfail or reject)",
			   k->name, v);
	return 0;
}

/* mynetworks: CIDRs (core/cidr.h); "" or "none" = nobody. */
static int set_mynetworks(struct config *c, const struct config_key *k, const char *v,
			  char *w, size_t wl)
{
	char one[CONFIG_ERR_MAX / 2];

	if (!strcmp(v, "none"))
		v = "";
	if (cidr_list_parse(v, c->mynetworks, CIDR_LIST_MAX, &c->nmynetworks, one, sizeof(one)))
		return why_set(w, wl, "bad value for %s: %s", k->name, one);
	return 0;
}

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Copy n bytes of a URL part into dst (size dstlen), undoing %XX escapes. */
static int url_unescape(char *dst, size_t dstlen, const char *p, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int ch = (unsigned char)p[i];

		if (ch == '%') {
			int hi, lo;

			if (i + 2 >= n)
				return -1;
			hi = hexval((unsigned char)p[i + 1]);
			lo = hexval((unsigned char)p[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			ch = hi * 16 + lo;
			i += 2;
		}
		if (ch == 0 || o + 1 >= dstlen)
			return -1;
		dst[o++] = (char)ch;
	}
	dst[o] = '\0';
	return 0;
}

/* "host:port", "[v6]:port", or (port_optional) just "host" / "[v6]". */
static int parse_host_port(const char *p, size_t n, int port_optional,
			   struct config_redis *r)
{
	const char *hp = p, *port = NULL;
	size_t hl;
	char *end;
	unsigned long pn = 6379;
	struct in6_addr a6;

	if (n > 0 && p[0] == '[') {
		const char *rb = memchr(p, ']', n);

		if (!rb)
			return -1;
		hp = p + 1;
		hl = (size_t)(rb - hp);
		if ((size_t)(rb + 1 - p) < n) {
			if (rb[1] != ':')
				return -1;
			port = rb + 2;
		}
		if (hl == 0 || hl >= sizeof(r->host))
			return -1;
		memcpy(r->host, hp, hl);
		r->host[hl] = '\0';
		if (inet_pton(AF_INET6, r->host, &a6) != 1)
			return -1;
	} else {
		const char *colon = memchr(p, ':', n);

		hl = colon ? (size_t)(colon - p) : n;
		if (colon)
			port = colon + 1;
		if (hl == 0 || hl >= sizeof(r->host) || !valid_hostname(p, hl))
			return -1;
		memcpy(r->host, p, hl);
		r->host[hl] = '\0';
	}
	if (!port && !port_optional)
		return -1;
	if (port) {
		size_t pl = n - (size_t)(port - p);
		char pbuf[8];

		if (pl == 0 || pl >= sizeof(pbuf))
			return -1;
		memcpy(pbuf, port, pl);
		pbuf[pl] = '\0';
		if (!isdigit((unsigned char)pbuf[0]))
			return -1;
		errno = 0;
		pn = strtoul(pbuf, &end, 10);
		if (*end || errno || pn == 0 || pn > 65535)
			return -1;
	}
	r->port = (unsigned)pn;
	return 0;
}

int config_redis_parse(struct config_redis *r, const char *v, char *w, size_t wl)
{
	static const char url[] = "redis://";
	size_t n = strlen(v);

	memset(r, 0, sizeof(*r));
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] <= ' ' || v[i] == 0x7f)
			return why_set(w, wl, "spaces or control characters in the address");
	if (!strncmp(v, "unix:", 5)) {
		const char *path = v + 5;

		if (!strncmp(path, "//", 2))
			path += 2; /* unix:///run/redis.sock */
		if (!*path)
			return why_set(w, wl, "unix: needs a socket path, like unix:/run/redis/redis.sock");
		if (strlen(path) >= sizeof(r->path))
			return why_set(w, wl, "socket path longer than %zu bytes", sizeof(r->path) - 1);
		r->kind = CONFIG_REDIS_UNIX;
		snprintf(r->path, sizeof(r->path), "%s", path);
		snprintf(r->display, sizeof(r->display), "unix:%s", path);
		return 0;
	}
	if (!strncmp(v, url, sizeof(url) - 1)) {
		const char *p = v + sizeof(url) - 1, *at, *slash, *hostp;
		size_t hl;

		slash = strchr(p, '/');
		hl = slash ? (size_t)(slash - p) : strlen(p);
		at = memrchr(p, '@', hl);
		hostp = at ? at + 1 : p;
		if (at) {
			const char *colon = memchr(p, ':', (size_t)(at - p));

			if (!colon) /* redis://password@host, as redis-cli takes it */
				colon = p - 1;
			if (colon >= p && url_unescape(r->user, sizeof(r->user), p,
						       (size_t)(colon - p)))
				return why_set(w, wl, "bad user name in the URL");
			if (url_unescape(r->pass, sizeof(r->pass), colon + 1,
					 (size_t)(at - colon - 1)))
				return why_set(w, wl, "bad password in the URL (use %%XX for special characters)");
		}
		if (parse_host_port(hostp, (size_t)(p + hl - hostp), 1, r))
			return why_set(w, wl, "bad host or port in the URL (want redis://[user:password@]host[:port][/db])");
		if (slash && slash[1]) {
			char *end;
			unsigned long db;

			errno = 0;
			db = isdigit((unsigned char)slash[1]) ? strtoul(slash + 1, &end, 10) : 0;
			if (!isdigit((unsigned char)slash[1]) || *end || errno || db > 1000000)
				return why_set(w, wl, "bad database number \"%s\" in the URL", slash + 1);
			r->db = (unsigned)db;
		}
		r->kind = CONFIG_REDIS_TCP;
		if (at)
			snprintf(r->display, sizeof(r->display), "redis://%s%s***@%.*s", r->user,
				 r->user[0] ? ":" : "", (int)strlen(hostp), hostp);
		else
			snprintf(r->display, sizeof(r->display), "%.*s", (int)(sizeof(r->display) - 1), v);
		return 0;
	}
	if (parse_host_port(v, n, 0, r))
		return why_set(w, wl, "want unix:/path/to/redis.sock, host:port or redis://[user:password@]host[:port][/db]");
	r->kind = CONFIG_REDIS_TCP;
	snprintf(r->display, sizeof(r->display), "%.*s", (int)(sizeof(r->display) - 1), v);
	return 0;
}

static int set_redis(struct config *c, const struct config_key *k, const char *v,
		     char *w, size_t wl)
{
	struct config_redis r;
	char reason[CONFIG_ERR_MAX / 2];

	if (config_redis_parse(&r, v, reason, sizeof(reason)))
		return why_set(w, wl, "bad value for %s: \"%s\": %s", k->name, v, reason);
	/* redis_sentinels and redis_master_name stay, in whatever order the
	 * keys came. */
	memcpy(r.sentinels, c->redis.sentinels, sizeof(r.sentinels));
	r.nsentinels = c->redis.nsentinels;
	memcpy(r.master_name, c->redis.master_name, sizeof(r.master_name));
	c->redis = r;
	return 0;
}

static int set_redis_prefix(struct config *c, const struct config_key *k, const char *v,
			    char *w, size_t wl)
{
	for (const char *p = v; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '*' || *p == '?' ||
		    *p == '[' || *p == ']' || *p == '\\')
			return why_set(w, wl, "bad value for %s: \"%s\" (no spaces, control characters or glob characters *?[]\\)",
				   k->name, v);
	return set_string(c->redis_prefix, sizeof(c->redis_prefix), k, v, w, wl);
}

/* node_id: 1-63 of letters, digits, '.', '_' and '-' (a Redis key part and
 * a log word: no blanks, no glob or hash-tag characters). */
static int node_id_ok(const char *v)
{
	size_t n = strlen(v);

	if (n == 0 || n >= CONFIG_NODE_ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)v[i]) && !strchr("._-", v[i]))
			return 0;
	return 1;
}

static int set_node_id(struct config *c, const struct config_key *k, const char *v,
		       char *w, size_t wl)
{
	if (!node_id_ok(v))
		return why_set(w, wl, "bad value for %s: \"%s\" (want 1 to %d of letters, digits, '.', '_' and '-')",
			   k->name, v, CONFIG_NODE_ID_MAX - 1);
	return set_string(c->node_id, sizeof(c->node_id), k, v, w, wl);
}

/* redis_sentinels = host[:port], ... (port 26379); "" or "none" clears. */
static int set_sentinels(struct config *c, const struct config_key *k, const char *v,
			 char *w, size_t wl)
{
	struct config_sentinel tmp[CONFIG_SENTINELS_MAX];
	unsigned n = 0;
	const char *p = strcmp(v, "none") ? v : "";
	char item[300];
	size_t len;

	for (; (len = list_item(&p)) > 0; p += len) {
		if (n == CONFIG_SENTINELS_MAX)
			return why_set(w, wl, "bad value for %s: more than %d sentinels", k->name,
				   CONFIG_SENTINELS_MAX);
		if (len >= sizeof(item))
			return why_set(w, wl, "bad value for %s: \"%.*s...\" is too long", k->name, 40, p);
		memcpy(item, p, len);
		item[len] = '\0';
		if (resolver_dest_split(item, tmp[n].host, sizeof(tmp[n].host), CONFIG_SENTINEL_PORT,
					&tmp[n].port, NULL) || !tmp[n].host[0] || tmp[n].port == 0)
			return why_set(w, wl, "bad value for %s: \"%s\" (want host[:port] or [v6]:port, comma separated)",
				   k->name, item);
		n++;
	}
	memcpy(c->redis.sentinels, tmp, n * sizeof(tmp[0]));
	c->redis.nsentinels = n;
	return 0;
}

static int set_master_name(struct config *c, const struct config_key *k, const char *v,
			   char *w, size_t wl)
{
	for (const char *q = v; *q; q++)
		if ((unsigned char)*q <= ' ' || *q == 0x7f)
			return why_set(w, wl, "bad value for %s: \"%s\" (no blanks or control characters)",
				   k->name, v);
	return set_string(c->redis.master_name, sizeof(c->redis.master_name), k, v, w, wl);
}

/* k's value among names (n of them): its index into *out, else -1 with the
 * error naming every choice. */
static int set_choice(const struct config_key *k, const char *v, const char *const *names,
		      unsigned n, int *out, char *w, size_t wl)
{
	char want[CONFIG_ERR_MAX / 2];
	size_t o = 0;

	for (unsigned i = 0; i < n; i++)
		if (!strcmp(v, names[i])) {
			*out = (int)i;
			return 0;
		}
	want[0] = '\0';
	for (unsigned i = 0; i < n && o < sizeof(want); i++) {
		int m = snprintf(want + o, sizeof(want) - o, "%s%s", i == 0 ? "" :
				 i + 1 == n ? " or " : ", ", names[i]);
		if (m < 0)
			break;
		o += (size_t)m;
	}
	return why_set(w, wl, "bad value for %s: \"%s\" (want %s)", k->name, v, want);
}

/* spf = off | log | on; spf_reject = none | fail; spf_temperror = accept |
 * tempfail (the index is the field's value). */
static int set_spf(struct config *c, const struct config_key *k, const char *v,
		   char *w, size_t wl)
{
	static const char *const modes[] = { "off", "log", "on" };
	static const char *const reject[] = { "none", "fail" };
	static const char *const temp[] = { "accept", "tempfail" };
	int i;

	if (!strcmp(k->name, "spf")) {
		if (set_choice(k, v, modes, 3, &i, w, wl))
			return -1;
		c->spf = (enum config_spf)i;
		return 0;
	}
	if (!strcmp(k->name, "spf_reject"))
		return set_choice(k, v, reject, 2, &c->spf_reject_fail, w, wl);
	return set_choice(k, v, temp, 2, &c->spf_tempfail, w, wl);
}

/* cluster_tls = may | must | verify */
static int set_cluster_tls(struct config *c, const struct config_key *k, const char *v,
			   char *w, size_t wl)
{
	static const char *const names[] = { "may", "must", "verify" };

	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(v, names[i])) {
			c->cluster_tls = (enum config_cluster_tls)i;
			return 0;
		}
	return why_set(w, wl, "bad value for %s: \"%s\" (want may, must or verify)", k->name, v);
}

/* "ip[:port],[v6]:port,...": numeric addresses only (a name would need a
 * resolver to find the resolver); stored comma-joined for c-ares. "" (only
 * from -o) means /etc/resolv.conf again. */
static int set_dns_servers(struct config *c, const struct config_key *k, const char *v,
			   char *w, size_t wl)
{
	char out[CONFIG_DNS_SERVERS_MAX], item[RESOLVER_NAME_MAX];
	struct resolver_result res;
	size_t o = 0, len;
	const char *p = v;

	for (; (len = list_item(&p)) > 0; p += len) {
		if (len >= sizeof(item))
			return why_set(w, wl, "bad value for %s: \"%.*s...\" is too long", k->name, 40, p);
		memcpy(item, p, len);
		item[len] = '\0';
		if (resolver_numeric(item, CONFIG_DNS_PORT, &res) != 1)
			return why_set(w, wl, "bad value for %s: \"%s\" (want a comma list of numeric ip[:port] or [v6]:port)",
				   k->name, item);
		if (o + len + 2 > sizeof(out))
			return why_set(w, wl, "bad value for %s: longer than %d characters", k->name,
				   CONFIG_DNS_SERVERS_MAX - 1);
		if (o)
			out[o++] = ',';
		memcpy(out + o, item, len);
		o += len;
	}
	out[o] = '\0';
	memcpy(c->dns_servers, out, o + 1);
	return 0;
}

/* dnsbl = site[=filter][*weight], ... (core/dnsbl_list.h); "" or "none": off. */
static int set_dnsbl(struct config *c, const struct config_key *k, const char *v,
		     char *w, size_t wl)
{
	char one[CONFIG_ERR_MAX];

	if (dnsbl_list_parse(&c->dnsbl, v, strlen(v), one, sizeof(one)))
		return why_set(w, wl, "bad value for %s: %s", k->name, one);
	return 0;
}

static int set_dnsbl_reply(struct config *c, const struct config_key *k, const char *v,
			   char *w, size_t wl)
{
	char one[CONFIG_ERR_MAX];

	if (dnsbl_list_reply_check(v, one, sizeof(one)))
		return why_set(w, wl, "bad value for %s: %s", k->name, one);
	return set_string(c->dnsbl_reply, sizeof(c->dnsbl_reply), k, v, w, wl);
}

/* dnsbl_action = reject | log (log-only, for a rollout) */
static int set_dnsbl_action(struct config *c, const struct config_key *k, const char *v,
			    char *w, size_t wl)
{
	if (strcmp(v, "reject") && strcmp(v, "log"))
		return why_set(w, wl, "bad value for %s: \"%s\" (want reject or log)", k->name, v);
	c->dnsbl_log_only = !strcmp(v, "log");
	return 0;
}

/* A file name (tls_*_file): "" (only from -o) or "none" unsets it. */
static int set_path(struct config *c, const struct config_key *k, const char *v,
		    char *w, size_t wl)
{
	char *dst = (char *)c + k->off;

	if (!*v || !strcmp(v, "none")) {
		dst[0] = '\0';
		return 0;
	}
	return set_string(dst, PATH_MAX, k, v, w, wl);
}

static int set_tls_ciphers(struct config *c, const struct config_key *k, const char *v,
			   char *w, size_t wl)
{
	for (const char *p = v; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return why_set(w, wl, "bad value for %s: \"%s\" (an OpenSSL cipher list: no spaces or control characters)",
				   k->name, v);
	if (!*v) {
		c->tls_ciphers[0] = '\0';
		return 0;
	}
	return set_string(c->tls_ciphers, sizeof(c->tls_ciphers), k, v, w, wl);
}

#define OFF(f) offsetof(struct config, f)
#define MS_PER_DAY (86400ull * 1000)
static const struct config_key config_keys[] = {
	{ "listen", set_listen, 0, 0, 0 },
	{ "threads", set_threads, OFF(threads), 1, CONFIG_THREADS_MAX },
	{ "hostname", set_hostname, 0, 0, 0 },
	{ "spool_dir", set_spool_dir, 0, 0, 0 },
	{ "control_socket", set_control_socket, 0, 0, 0 },
	{ "relay_domains", set_relay_domains, 0, 0, 0 },
	{ "sync", set_sync, 0, 0, 0 },
	{ "segment_size", set_size, OFF(segment_size), 1ull << 20, 1ull << 30 },
	{ "spool_direct_io", set_bool, OFF(spool_direct_io), 0, 1 },
	/* Compaction: a sealed segment with fewer live bytes than this
	 * percentage, whose newest message is at least compact_min_age old. */
	{ "compact_threshold", set_uint, OFF(compact_threshold), 1, 100 },
	{ "compact_min_age", set_duration, OFF(compact_min_age_ms), 0, 49 * MS_PER_DAY },
	/* RFC 5321 4.5.3.1.4/4.5.3.1.6 give the minimums a server must take. */
	{ "smtp_command_max", set_size, OFF(smtp_command_max), 512, 65536 },
	{ "smtp_line_max", set_size, OFF(smtp_line_max), 1000, 1ull << 20 },
	{ "smtp_max_recipients", set_uint, OFF(smtp_max_recipients), 1, 100000 },
	{ "message_size_limit", set_size, OFF(message_size_limit), 1024, 1ull << 30 },
	{ "data_memory_limit", set_size, OFF(data_memory_limit), CONFIG_DATA_MEMORY_MIN,
	  CONFIG_DATA_MEMORY_MAX },
	{ "smtp_max_errors", set_uint, OFF(smtp_max_errors), 1, 1000 },
	{ "idle_timeout", set_duration, OFF(idle_timeout_ms), 100, MS_PER_DAY },
	{ "session_timeout", set_duration, OFF(session_timeout_ms), 1000, 7 * MS_PER_DAY },
	/* After the last reply (421 on a timeout, 221), a peer that does not
	 * read it is cut off this long after (both directions, drains too). */
	{ "close_timeout", set_duration, OFF(close_timeout_ms), 100, MS_PER_DAY },
	/* A peer that takes none of our output for this long (a client that
	 * never reads, a customer server that stops reading mid-message) gets
	 * the connection's timeout: Postfix's smtp_data_xfer_timeout, RFC 5321
	 * 4.5.3.2.5's 3 minutes for a data block. */
	{ "send_timeout", set_duration, OFF(send_timeout_ms), 100, MS_PER_DAY },
	{ "bare_lf", set_bare_lf, 0, 0, 0 },
	{ "max_connections", set_uint, OFF(max_connections), 1, 1000000 },
	/* Like Postfix's smtpd_client_connection_count_limit; 0 = no limit. */
	{ "client_connection_limit", set_uint, OFF(client_connection_limit), 0, 1000000 },
	/* Off: 127.0.0.0/8 and ::1 are not counted, as Postfix's default
	 * smtpd_client_event_limit_exceptions = $mynetworks exempts them. */
	{ "client_connection_limit_loopback", set_bool, OFF(client_connection_limit_loopback), 0, 1 },
	{ "shutdown_timeout", set_duration, OFF(shutdown_timeout_ms), 0, MS_PER_DAY },
	/* Like Postfix's maximal_queue_lifetime; a duration is held in 32-bit
	 * milliseconds, so at most 49 days. */
	{ "drain_connections", set_uint, OFF(drain_connections), 1, 64 },
	/* Node-wide connections to one destination host:port, all drains
	 * together (Postfix's default_destination_concurrency_limit, 20). */
	{ "drain_destination_concurrency", set_uint, OFF(drain_destination_concurrency), 1, 10000 },
	/* Fresh connections a drain opens after one ended early (421, lost,
	 * timed out) while its mail is not all tried. */
	{ "drain_reconnect_attempts", set_uint, OFF(drain_reconnect_attempts), 0, 100 },
	/* Messages a drain connection may have delivered whose DONEs are not
	 * yet durable: what a kill -9 may send twice, per connection. */
	{ "drain_done_window", set_uint, OFF(drain_done_window), 1, 1024 },
	/* The customer server's 220 (RFC 5321 4.5.3.2.1: 5 minutes). */
	{ "drain_greeting_timeout", set_duration, OFF(drain_greeting_timeout_ms), 100, MS_PER_DAY },
	{ "etrn_rate_limit", set_uint, OFF(etrn_rate_limit), 1, 100000 },
	/* AUTH: threads running crypt(3) (each with its own Redis connection),
	 * and failures per address per minute, like Postfix's anvil
	 * smtpd_client_auth_rate_limit but counting failures only. */
	{ "auth_verifiers", set_uint, OFF(auth_verifiers), 1, CONFIG_AUTH_VERIFIERS_MAX },
	{ "auth_failure_limit", set_uint, OFF(auth_failure_limit), 1, CONFIG_AUTH_FAILURE_LIMIT_MAX },
	{ "spf", set_spf, 0, 0, 0 },
	{ "spf_reject", set_spf, 0, 0, 0 },
	{ "spf_temperror", set_spf, 0, 0, 0 },
	/* RFC 7208 4.6.4: at least 20 s is recommended; less is the operator's call. */
	{ "spf_timeout", set_duration, OFF(spf_timeout_ms), 100, 10u * 60u * 1000u },
	{ "spf_workers", set_uint, OFF(spf_workers), 1, CONFIG_SPF_WORKERS_MAX },
	{ "max_hold", set_duration, OFF(max_hold_ms), CONFIG_MAX_HOLD_MIN_MS, CONFIG_MAX_HOLD_MAX_MS },
	/* Like Postfix's delay_warning_time; 0 turns warnings off. */
	{ "delay_warning", set_duration, OFF(delay_warning_ms), 0, 49 * MS_PER_DAY },
	{ "clock_offset", set_duration, OFF(clock_offset_ms), 0, 49 * MS_PER_DAY },
	{ "test_clock", set_bool, OFF(test_clock), 0, 1 },
	/* Outbound delivery (proto/sched.h): Postfix's relayhost, mynetworks
	 * (empty by default: not even loopback relays unless listed),
	 * minimal_backoff_time and maximal_backoff_time. */
	{ "relayhost", set_relayhost, 0, 0, 0 },
	{ "mynetworks", set_mynetworks, 0, 0, 0 },
	{ "minimal_backoff", set_duration, OFF(minimal_backoff_ms), 1000, MS_PER_DAY },
	{ "maximal_backoff", set_duration, OFF(maximal_backoff_ms), 1000, 7 * MS_PER_DAY },
	{ "queue_restart_spread", set_duration, OFF(queue_restart_spread_ms), 0, MS_PER_DAY },
	/* Milters (proto/milter.h), Postfix's smtpd_milters and timeouts. */
	{ "milter", set_milter, 0, 0, 0 },
	{ "milter_default_action", set_milter_default_action, 0, 0, 0 },
	{ "milter_connect_timeout", set_duration, OFF(milter_connect_timeout_ms), 100, 3600 * 1000 },
	{ "milter_command_timeout", set_duration, OFF(milter_command_timeout_ms), 100, 3600 * 1000 },
	{ "milter_content_timeout", set_duration, OFF(milter_content_timeout_ms), 100, 3600 * 1000 },
	/* The reversed session of an ATRN activator (config.h); the
	 * activators themselves are "activator.NAME.FIELD" (config_activator.c). */
	{ "atrn_idle_timeout", set_duration, OFF(atrn_idle_timeout_ms), CONFIG_ATRN_IDLE_TIMEOUT_MIN_MS,
	  CONFIG_ATRN_IDLE_TIMEOUT_MAX_MS },
	{ "submission_listen", set_listen, 0, CONFIG_LISTEN_SUBMISSION, 0 },
	{ "log_level", set_log_level, 0, 0, 0 },
	{ "log_syslog", set_bool, OFF(log_syslog), 0, 1 },
	{ "log", set_log, 0, 0, 0 },
	{ "metrics_listen", set_metrics_listen, 0, 0, 0 },
	{ "metrics_top_domains", set_uint, OFF(metrics_top_domains), 1,
	  CONFIG_METRICS_TOP_DOMAINS_MAX },
	{ "user", set_user, 0, 0, 0 },
	{ "redis", set_redis, 0, 0, 0 },
	{ "redis_prefix", set_redis_prefix, 0, 0, 0 },
	{ "redis_resync", set_duration, OFF(redis_resync_ms), 1000, MS_PER_DAY },
	{ "rcpt_max_per_domain", set_uint, OFF(rcpt_max_per_domain), 1, CONFIG_RCPT_MAX },
	{ "rcpt_max_total", set_uint, OFF(rcpt_max_total), 1, CONFIG_RCPT_MAX },
	/* Several nodes (issue 16): Redis through Sentinel, the node's name,
	 * its internal transfer listener and secret, how it publishes its
	 * held counts. */
	{ "redis_sentinels", set_sentinels, 0, 0, 0 },
	{ "redis_master_name", set_master_name, 0, 0, 0 },
	{ "node_id", set_node_id, 0, 0, 0 },
	{ "cluster_listen", set_listen, 0, CONFIG_LISTEN_CLUSTER, 0 },
	{ "cluster_secret_file", set_path, OFF(cluster_secret_file), 0, 0 },
	{ "cluster_tls", set_cluster_tls, 0, 0, 0 },
	{ "cluster_publish_interval", set_duration, OFF(cluster_publish_ms), 100, 3600 * 1000 },
	{ "cluster_node_ttl", set_duration, OFF(cluster_node_ttl_ms), 1000, MS_PER_DAY },
	/* The drain's name look-ups (core/resolver.h). */
	{ "dns_servers", set_dns_servers, 0, 0, 0 },
	{ "dns_timeout", set_duration, OFF(dns_timeout_ms), CONFIG_DNS_TIMEOUT_MIN_MS,
	  CONFIG_DNS_TIMEOUT_MAX_MS },
	/* RFC 5321 4.5.1 and Postfix's allow_untrusted_routing. */
	/* DNSBL at connect (issue 19): Postfix's postscreen_dnsbl_* keys. */
	{ "dnsbl", set_dnsbl, 0, 0, 0 },
	{ "dnsbl_threshold", set_uint, OFF(dnsbl_threshold), 1, DNSBL_WEIGHT_LIMIT },
	{ "dnsbl_reply", set_dnsbl_reply, 0, 0, 0 },
	{ "dnsbl_timeout", set_duration, OFF(dnsbl_timeout_ms), CONFIG_DNS_TIMEOUT_MIN_MS,
	  CONFIG_DNSBL_TIMEOUT_MAX_MS },
	{ "dnsbl_action", set_dnsbl_action, 0, 0, 0 },
	{ "dnsbl_skip_loopback", set_bool, OFF(dnsbl_skip_loopback), 0, 1 },
	{ "postmaster", set_postmaster, 0, 0, 0 },
	{ "allow_untrusted_routing", set_bool, OFF(allow_untrusted_routing), 0, 1 },
	/* Implicit TLS (the port-465 style, RFC 8314 3.3) and listeners where
	 * AUTH is offered without TLS; min = their CONFIG_LISTEN_* flag. */
	{ "listen_tls", set_listen, 0, CONFIG_LISTEN_TLS, 0 },
	{ "listen_trusted", set_listen, 0, CONFIG_LISTEN_TRUSTED, 0 },
	/* On-Demand Mail Relay (RFC 2645, port 366): EHLO offers AUTH and
	 * ATRN; _trusted also offers AUTH without TLS (tests, a VPN). */
	{ "odmr_listen", set_listen, 0, CONFIG_LISTEN_ODMR, 0 },
	{ "odmr_listen_trusted", set_listen, 0, CONFIG_LISTEN_ODMR | CONFIG_LISTEN_TRUSTED, 0 },
	/* RFC 2645 on the SMTP listeners too: ATRN answered as on ODMR. */
	{ "smtp_atrn", set_bool, OFF(smtp_atrn), 0, 1 },
	{ "tls_cert_file", set_path, OFF(tls_cert_file), 0, 0 },
	{ "tls_key_file", set_path, OFF(tls_key_file), 0, 0 },
	{ "tls_ca_file", set_path, OFF(tls_ca_file), 0, 0 },
	{ "tls_ciphers", set_tls_ciphers, 0, 0, 0 },
	{ "tls_handshake_timeout", set_duration, OFF(tls_handshake_timeout_ms), 100, 3600 * 1000 },
};
#define CONFIG_NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

void config_defaults(struct config *c)
{
	char err[CONFIG_ERR_MAX];

	memset(c, 0, sizeof(*c));
	if (set_listen(c, &config_keys[0], "127.0.0.1:2525", err, sizeof(err)))
		panic("default listen: %s", err);
	set_threads(c, &config_keys[1], "auto", err, sizeof(err));
	if (gethostname(c->hostname, sizeof(c->hostname) - 1) ||
	    !valid_hostname(c->hostname, strlen(c->hostname)))
		snprintf(c->hostname, sizeof(c->hostname), "localhost");
	/* node_id: the host name's first 63 characters, when they make one. */
	if (snprintf(c->node_id, sizeof(c->node_id), "%.63s", c->hostname) < 0 ||
	    !node_id_ok(c->node_id))
		snprintf(c->node_id, sizeof(c->node_id), "node");
	c->cluster_tls = CONFIG_CLUSTER_TLS_MAY;
	c->cluster_publish_ms = CONFIG_CLUSTER_PUBLISH_DEFAULT_MS;
	c->cluster_node_ttl_ms = CONFIG_CLUSTER_NODE_TTL_DEFAULT_MS;
	snprintf(c->spool_dir, sizeof(c->spool_dir), "var/spool");
	c->sync = CONFIG_SYNC_BATCH;
	/* 128M: the worst-case record of a default 50M message (4/3 of it
	 * dot-stuffed, plus 1000 recipients) needs about 67M (smtpd.h). */
	c->segment_size = 128u << 20;
	c->spool_direct_io = 1;
	c->compact_threshold = 25;
	c->compact_min_age_ms = 3600u * 1000u;
	c->smtp_command_max = 512;
	c->smtp_line_max = 1000;
	c->smtp_max_recipients = 1000;
	c->message_size_limit = 50u << 20;
	c->data_memory_limit = CONFIG_DATA_MEMORY_DEFAULT;
	c->smtp_max_errors = 10;
	c->idle_timeout_ms = 300 * 1000;
	c->session_timeout_ms = 3600 * 1000;
	c->close_timeout_ms = 30 * 1000;
	c->send_timeout_ms = 180 * 1000;
	c->bare_lf_normalize = 0;
	c->max_connections = 20000;
	c->metrics_top_domains = CONFIG_METRICS_TOP_DOMAINS_DEFAULT; /* metrics_listen: off */
	c->client_connection_limit = CONFIG_CLIENT_CONNECTION_LIMIT_DEFAULT;
	c->shutdown_timeout_ms = 30 * 1000;
	c->drain_connections = 4;
	c->drain_destination_concurrency = 20;
	c->drain_reconnect_attempts = 3;
	c->drain_done_window = 64;
	c->drain_greeting_timeout_ms = 5u * 60u * 1000u;
	c->etrn_rate_limit = 60;
	c->auth_verifiers = CONFIG_AUTH_VERIFIERS_DEFAULT;
	c->auth_failure_limit = CONFIG_AUTH_FAILURE_LIMIT_DEFAULT;
	c->spf = CONFIG_SPF_OFF;
	c->spf_reject_fail = 1;         /* as Postfix's policyd-spf rejects Fail */
	c->spf_tempfail = 1;
	c->spf_timeout_ms = 20u * 1000u;
	c->spf_workers = 2;
	c->max_hold_ms = 5u * 86400u * 1000u;
	c->delay_warning_ms = 0;
	c->clock_offset_ms = 0;
	c->minimal_backoff_ms = CONFIG_MINIMAL_BACKOFF_DEFAULT_MS;
	c->milter_default_action = CONFIG_MILTER_TEMPFAIL;
	c->milter_connect_timeout_ms = 30u * 1000u;
	c->milter_command_timeout_ms = 30u * 1000u;
	c->milter_content_timeout_ms = 300u * 1000u;
	c->maximal_backoff_ms = CONFIG_MAXIMAL_BACKOFF_DEFAULT_MS;
	c->queue_restart_spread_ms = CONFIG_QUEUE_RESTART_SPREAD_DEFAULT_MS;
	c->atrn_idle_timeout_ms = CONFIG_ATRN_IDLE_TIMEOUT_DEFAULT_MS;
	c->log_level = LOGL_INFO;
	c->log_syslog = 0;
	c->redis.kind = CONFIG_REDIS_NONE;
	snprintf(c->redis_prefix, sizeof(c->redis_prefix), "etrnd:");
	c->redis_resync_ms = 60 * 1000;
	c->rcpt_max_per_domain = CONFIG_RCPT_MAX_PER_DOMAIN_DEFAULT;
	c->rcpt_max_total = CONFIG_RCPT_MAX_TOTAL_DEFAULT;
	c->dns_servers[0] = '\0';
	c->dns_timeout_ms = RESOLVER_TIMEOUT_MS;
	c->dnsbl.n = 0;
	c->dnsbl_threshold = 1;
	snprintf(c->dnsbl_reply, sizeof(c->dnsbl_reply), "%s", DNSBL_REPLY_DEFAULT);
	c->dnsbl_timeout_ms = CONFIG_DNSBL_TIMEOUT_DEFAULT_MS;
	c->dnsbl_log_only = 0;
	c->dnsbl_skip_loopback = 1;
	c->postmaster[0] = '\0';
	c->allow_untrusted_routing = 0;
	c->smtp_atrn = 0;
	c->tls_handshake_timeout_ms = CONFIG_TLS_HANDSHAKE_TIMEOUT_DEFAULT_MS;
}

/* The index of key in config_keys[], or -1. */
static int config_key_find(const char *key)
{
	for (size_t i = 0; i < CONFIG_NKEYS; i++)
		if (!strcmp(key, config_keys[i].name))
			return (int)i;
	return -1;
}

/* The keys whose place is kept for cross-checks at start (config.h). */
static const struct {
	const char *name;
	size_t off;
} config_where[] = {
	{ "message_size_limit", OFF(message_size_limit_at) },
	{ "segment_size", OFF(segment_size_at) },
	{ "data_memory_limit", OFF(data_memory_limit_at) },
	{ "listen_tls", OFF(listen_tls_at) },
	{ "tls_cert_file", OFF(tls_cert_file_at) },
	{ "tls_key_file", OFF(tls_key_file_at) },
	{ "tls_ca_file", OFF(tls_ca_file_at) },
	{ "tls_ciphers", OFF(tls_ciphers_at) },
};

static void note_where(struct config *c, const char *key, const char *where)
{
	for (size_t i = 0; i < sizeof(config_where) / sizeof(config_where[0]); i++)
		if (!strcmp(key, config_where[i].name))
			snprintf((char *)c + config_where[i].off, CONFIG_WHERE_MAX, "%s", where);
}

int config_set(struct config *c, const char *key, const char *value,
	       const char *where, char *err, size_t errlen)
{
	char w[CONFIG_ERR_MAX];
	int i = config_key_find(key);

	if (config_activator_key(key)) {
		if (config_activator_set(c, key, value, where, w, sizeof(w)) == 0)
			return 0;
		snprintf(err, errlen, "%s: %s", where, w);
		return -1;
	}
	if (i < 0) {
		snprintf(err, errlen, "%s: unknown key \"%s\"", where, key);
		return -1;
	}
	if (config_keys[i].set(c, &config_keys[i], value, w, sizeof(w)) == 0) {
		note_where(c, key, where);
		return 0;
	}
	snprintf(err, errlen, "%s: %s", where, w);
	return -1;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Where a comment starts in line, or NULL: a '#' first on the line (after
 * blanks), or after a blank and before a blank or the line's end
 * ("threads = 2  # why"). Any other '#' is data: "#q1" in an activator's
 * request is an RFC 1985 queue name. */
static char *comment_start(char *line)
{
	char *p = line + strspn(line, " \t");

	if (*p == '#')
		return p;
	for (; (p = strchr(p + 1, '#')) != NULL;)
		if ((p[-1] == ' ' || p[-1] == '\t') && (p[1] == '\0' || isspace((unsigned char)p[1])))
			return p;
	return NULL;
}

int config_load(struct config *c, const char *path, char *err, size_t errlen)
{
	char line[CONFIG_LINE_MAX], where[PATH_MAX + 32];
	unsigned lineno = 0, seen[CONFIG_NKEYS] = { 0 }; /* line of each key, 0 = not yet */
	unsigned seen_act[CONFIG_ACTIVATORS_MAX * CONFIG_ACTIVATOR_FIELDS] = { 0 }; /* likewise */
	unsigned *seen_at;
	FILE *f;
	int k;
	int rc = -1;

	(void)snprintf(c->path, sizeof(c->path), "%s", path);
	f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	/* fgets() does not say how much it read and strlen() stops at a NUL
	 * byte: the file offset before and after does (-1 where the file
	 * cannot tell, a pipe: then a NUL goes unnoticed). */
	long at = ftell(f);
	while (fgets(line, sizeof(line), f)) {
		char *p, *eq, *key, *value;
		size_t len = strlen(line);
		long next = ftell(f);

		lineno++;
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
			snprintf(err, errlen, "%s: line longer than %d characters", where,
				 CONFIG_LINE_MAX - 2);
			goto out;
		}
		if (at >= 0 && next >= 0 && (size_t)(next - at) != len) {
			snprintf(err, errlen, "%s: NUL byte in line", where);
			goto out;
		}
		at = next;
		p = comment_start(line);
		if (p)
			*p = '\0';
		p = trim(line);
		if (!*p)
			continue;
		eq = strchr(p, '=');
		if (!eq) {
			snprintf(err, errlen, "%s: expected \"key = value\", got \"%.60s\"", where, p);
			goto out;
		}
		*eq = '\0';
		key = trim(p);
		value = trim(eq + 1);
		if (!*key) {
			snprintf(err, errlen, "%s: missing key before \"=\"", where);
			goto out;
		}
		if (!*value) {
			snprintf(err, errlen, "%s: missing value for %s", where, key);
			goto out;
		}
		if (config_set(c, key, value, where, err, errlen))
			goto out;
		/* Postfix warns "overriding earlier entry" and the later line
		 * wins; so here. The value is not shown: redis may hold a
		 * password. */
		k = config_key_find(key);
		seen_at = k >= 0 ? &seen[k] : &seen_act[config_activator_slot(c, key)];
		if (*seen_at)
			log_warn("%s: overriding earlier entry for %s on line %u: the last value wins",
				 where, key, *seen_at);
		*seen_at = lineno;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	fclose(f);
	return rc;
}

/* "WHERE: " for an error about a key set at where ("" = its default). */
static const char *where_of(const char *where, char *buf, size_t len)
{
	if (!where[0])
		return "";
	(void)snprintf(buf, len, "%s: ", where);
	return buf;
}

int config_redis_sentinel_finish(struct config_redis *r, const char *where, char *err,
				 size_t errlen)
{
	/* Sentinel: a master name to ask for, and TCP to whatever it names. */
	if (!r->nsentinels && !r->master_name[0])
		return 0;
	if (!r->nsentinels || !r->master_name[0]) {
		snprintf(err, errlen, "%sredis_sentinels and redis_master_name go together: set both or neither",
			 where);
		return -1;
	}
	if (r->kind == CONFIG_REDIS_UNIX) {
		snprintf(err, errlen, "%sredis is a unix socket but redis_sentinels is set: Sentinel names a TCP master",
			 where);
		return -1;
	}
	r->kind = CONFIG_REDIS_TCP;
	/* For logs only: a name cut short is still a name. */
	if (snprintf(r->display, sizeof(r->display), "sentinel %.63s via %.200s:%u%s",
		     r->master_name, r->sentinels[0].host, r->sentinels[0].port,
		     r->nsentinels > 1 ? ",..." : "") < 0)
		r->display[0] = '\0';
	return 0;
}

int config_finish(struct config *c, char *err, size_t errlen)
{
	char wb[PATH_MAX + 4];

	/* With Redis the domains come from there; without it relay_domains is
	 * the whole table and must not be empty. */
	if (c->nrelay_domains == 0 && c->redis.kind == CONFIG_REDIS_NONE) {
		snprintf(err, errlen, "%srelay_domains is empty and redis is not set: no domain would accept mail",
			 where_of(c->path, wb, sizeof(wb)));
		return -1;
	}
	/* The back-off grows from one to the other (Postfix's
	 * minimal_backoff_time <= maximal_backoff_time). */
	if (c->minimal_backoff_ms > c->maximal_backoff_ms) {
		snprintf(err, errlen, "%sminimal_backoff (%u ms) is longer than maximal_backoff (%u ms): "
			 "the wait between attempts grows from minimal_backoff up to maximal_backoff",
			 where_of(c->path, wb, sizeof(wb)), c->minimal_backoff_ms, c->maximal_backoff_ms);
		return -1;
	}
	if (config_redis_sentinel_finish(&c->redis, where_of(c->path, wb, sizeof(wb)), err, errlen))
		return -1;
	/* The cluster's transfers need the secret, and the reverse. */
	if (c->cluster_node_ttl_ms <= c->cluster_publish_ms) {
		snprintf(err, errlen, "%scluster_node_ttl (%u ms) is not longer than cluster_publish_interval (%u ms): every node would look gone between refreshes",
			 where_of(c->path, wb, sizeof(wb)), c->cluster_node_ttl_ms, c->cluster_publish_ms);
		return -1;
	}
	for (unsigned i = 0; i < c->nlisten; i++)
		if (c->listen[i].flags == CONFIG_LISTEN_CLUSTER && !c->cluster_secret_file[0]) {
			snprintf(err, errlen, "%scluster_listen is set but cluster_secret_file is not: no node could authenticate",
				 where_of(c->path, wb, sizeof(wb)));
			return -1;
		}
	/* Each activator complete and consistent; its errors name FILE:LINE. */
	return config_activators_finish(c, err, errlen);
}

/* A TLS file that cannot be opened for reading, named with its key. */
static int check_readable(const char *key, const char *path, const char *where,
			  char *err, size_t errlen)
{
	char wb[CONFIG_WHERE_MAX + 4];

	if (!path[0] || access(path, R_OK) == 0)
		return 0;
	snprintf(err, errlen, "%s%s %s: %s", where_of(where, wb, sizeof(wb)), key, path,
		 strerror(errno));
	return -1;
}

int config_check_tls(const struct config *c, char *err, size_t errlen)
{
	char wb[CONFIG_WHERE_MAX + 4];
	unsigned ntls = 0;

	for (unsigned i = 0; i < c->nlisten; i++)
		ntls += (c->listen[i].flags & CONFIG_LISTEN_TLS) != 0;
	if (ntls && !c->tls_cert_file[0]) {
		snprintf(err, errlen, "%slisten_tls needs tls_cert_file and tls_key_file",
			 where_of(c->listen_tls_at, wb, sizeof(wb)));
		return -1;
	}
	if (c->tls_cert_file[0] && !c->tls_key_file[0]) {
		snprintf(err, errlen, "%stls_cert_file needs tls_key_file",
			 where_of(c->tls_cert_file_at, wb, sizeof(wb)));
		return -1;
	}
	if (c->tls_key_file[0] && !c->tls_cert_file[0]) {
		snprintf(err, errlen, "%stls_key_file needs tls_cert_file",
			 where_of(c->tls_key_file_at, wb, sizeof(wb)));
		return -1;
	}
	if (check_readable("tls_cert_file", c->tls_cert_file, c->tls_cert_file_at, err, errlen) ||
	    check_readable("tls_key_file", c->tls_key_file, c->tls_key_file_at, err, errlen) ||
	    check_readable("tls_ca_file", c->tls_ca_file, c->tls_ca_file_at, err, errlen))
		return -1;
	return 0;
}

void config_resolver_conf(const struct config *c, struct resolver_conf *rc)
{
	memset(rc, 0, sizeof(*rc));
	rc->servers = c->dns_servers[0] ? c->dns_servers : NULL;
	rc->timeout_ms = c->dns_timeout_ms;
	rc->self = c->hostname;
}

void config_free(struct config *c)
{
	free_domains(c);
	config_activators_free(c);
}
