/* SPDX-License-Identifier: MIT */
/*
 * etrnctl_atrn: `etrnctl etrn --atrn` through the running etrnd (see
 * etrnctl_atrn.h). The password travels base64-encoded on the request line
 * (the socket is mode 0600) and is never printed; the status is read from
 * the daemon's JSON, of which only a few flat fields are needed.
 */
#include "admin/etrnctl_atrn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base64.h"
#include "core/config.h"
#include "proto/etrn_client.h"

enum { EA_OK = 0, EA_FAIL = 1 };

/* The request line: the control socket reads at most 1024 octets, of
 * which etrnctl's "\tby uid=N(name)" tag takes up to 128. */
#define EA_REQ_MAX (1024 - 128)
#define EA_PASS_B64_MAX (BASE64_ENCODED_LEN(CONFIG_ACTIVATOR_PASS_MAX) + 1)
#define EA_FIELD_MAX 512
#define EA_MS_PER_S 1000
#define EA_NS_PER_MS 1000000L

/* The value of "key" in the first object of json: a string (unescaped:
 * \" \\ \/ \n \t; \u00XX below 0x80; anything else as '?'), a number or
 * true/false as written. 1 found, 0 absent or null. */
static int ea_field(const char *json, const char *key, char *out, size_t outlen)
{
	char pat[64];
	const char *p;
	size_t o = 0;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	if (!(p = strstr(json, pat)))
		return 0;
	p += strlen(pat);
	p += strspn(p, " ");
	if (!strncmp(p, "null", 4))
		return 0;
	if (*p != '"') {
		size_t n = strcspn(p, ",}] \n");
		snprintf(out, outlen, "%.*s", (int)n, p);
		return 1;
	}
	for (p++; *p && *p != '"' && o + 1 < outlen; p++) {
		char ch = *p;

		if (ch == '\\' && p[1]) {
			ch = *++p;
			if (ch == 'n' || ch == 't')
				ch = ' ';
			else if (ch == 'u') {
				unsigned v = 0;
				if (sscanf(p + 1, "%4x", &v) == 1 && strlen(p + 1) >= 4)
					p += 4;
				ch = v >= 0x20 && v < 0x7f ? (char)v : '?';
			}
		}
		out[o++] = ch;
	}
	out[o] = '\0';
	return 1;
}

static void ea_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / EA_MS_PER_S, (long)(ms % EA_MS_PER_S) * EA_NS_PER_MS };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static long long ea_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * EA_MS_PER_S + ts.tv_nsec / EA_NS_PER_MS;
}

/* "activate method=atrn host=H port=P tls=T user=U pass=B64 [request=a,b]"
 * into req. 0, or -1 when it does not fit. The password copy is wiped. */
static int ea_request(const struct etrnctl_etrn *e, const char *host, unsigned port, int tls,
		      char *req, size_t len)
{
	char b64[EA_PASS_B64_MAX];
	size_t o;
	int n;

	if (base64_encode(b64, sizeof(b64), e->password, strlen(e->password)) < 0)
		return -1;
	n = snprintf(req, len, "activate method=atrn host=%s port=%u tls=%s user=%s pass=%s",
		     host, port, config_activator_tls_name(tls), e->user, b64);
	explicit_bzero(b64, sizeof(b64));
	if (n < 0 || (size_t)n >= len)
		return -1;
	o = (size_t)n;
	for (unsigned i = 0; i < e->nnodes; i++) {
		n = snprintf(req + o, len - o, "%s%s", i ? "," : " request=", e->nodes[i]);
		if (n < 0 || (size_t)n >= len - o)
			return -1;
		o += (size_t)n;
	}
	return 0;
}

/* No daemon to ask: say what --atrn needs. */
static int ea_no_daemon(const struct etrnctl_etrn *e, int err)
{
	fprintf(stderr, "etrnctl: --atrn needs a running etrnd (the reversed session is served "
		"by it): control socket %s: %s\n",
		e->control_socket && e->control_socket[0] ? e->control_socket : "(none)",
		e->control_socket && e->control_socket[0] ? strerror(err) :
		"no \"control_socket = \" in the etrnd config");
	return EA_FAIL;
}

/* Start the one-shot; its name into name. 0 or the exit status (reported). */
static int ea_start(const struct etrnctl_etrn *e, const char *req, char *name, size_t len)
{
	char *reply;

	if (!e->control_socket || !e->control_socket[0])
		return ea_no_daemon(e, ENOENT);
	if (!(reply = e->ask(e->ask_arg, req)))
		return ea_no_daemon(e, errno);
	if (strncmp(reply, "ok ", 3) || strlen(reply + 3) >= len) {
		reply[strcspn(reply, "\n")] = '\0';
		fprintf(stderr, "etrnctl: etrn --atrn: etrnd: %s\n", reply);
		free(reply);
		return EA_FAIL;
	}
	snprintf(name, len, "%.*s", (int)strcspn(reply + 3, "\r\n"), reply + 3);
	free(reply);
	return 0;
}

/* The run's status until it has ended (the daemon keeps its reply then:
 * the ATRN's, or why the run failed), or the deadline. reply, meaning,
 * code and received from the last status read. 1 when the run ended, 0 at
 * the deadline, -1 when the daemon went away (reported). */
static int ea_wait(const struct etrnctl_etrn *e, const char *name, int timeout_ms,
		   char *reply, char *meaning, char *code, char *received)
{
	long long deadline = ea_now_ms() + timeout_ms;
	char req[EA_REQ_MAX], state[EA_FIELD_MAX];

	snprintf(req, sizeof(req), "activators json %s", name);
	reply[0] = meaning[0] = code[0] = received[0] = '\0';
	while (ea_now_ms() < deadline) {
		char *json;
		int have;

		ea_sleep_ms(ETRNCTL_ETRN_POLL_MS);
		if (!(json = e->ask(e->ask_arg, req))) {
			ea_no_daemon(e, errno);
			return -1;
		}
		have = ea_field(json, "ended", state, sizeof(state));
		if (have) {
			(void)ea_field(json, "reply", reply, EA_FIELD_MAX);
			(void)ea_field(json, "meaning", meaning, EA_FIELD_MAX);
			(void)ea_field(json, "code", code, EA_FIELD_MAX);
			(void)ea_field(json, "received", received, EA_FIELD_MAX);
		}
		if (!ea_field(json, "state", state, sizeof(state)))
			state[0] = '\0';
		free(json);
		if (have && !strcmp(state, "idle"))
			return 1;
	}
	return 0;
}

int etrnctl_atrn_run(const struct etrnctl_etrn *e, const char *host, unsigned port, int tls,
		     int timeout_ms)
{
	char req[EA_REQ_MAX], name[CONFIG_ACTIVATOR_NAME_MAX];
	char reply[EA_FIELD_MAX], meaning[EA_FIELD_MAX], code[EA_FIELD_MAX];
	char received[EA_FIELD_MAX];
	int rc, ended;

	if (ea_request(e, host, port, tls, req, sizeof(req))) {
		explicit_bzero(req, sizeof(req));
		fprintf(stderr, "etrnctl: etrn --atrn: the request is longer than %d octets\n",
			EA_REQ_MAX);
		return EA_FAIL;
	}
	rc = ea_start(e, req, name, sizeof(name));
	explicit_bzero(req, sizeof(req));
	if (rc)
		return rc;
	ended = ea_wait(e, name, timeout_ms, reply, meaning, code, received);
	if (ended < 0)
		return EA_FAIL;
	if (!ended) {
		fprintf(stderr, "etrnctl: etrn --atrn: %s to %s port %u has not ended within the "
			"timeout (it goes on in etrnd: see etrnctl activators %s)\n", name, host,
			port, name);
		return EA_FAIL;
	}
	if (!code[0]) {  /* no reply from the upstream: why the run failed */
		fprintf(stderr, "etrnctl: etrn --atrn: %s port %u: %s\n", host, port,
			reply[0] ? reply : "the run failed");
		return EA_FAIL;
	}
	printf("ATRN: %s (%s)%s%s\n", reply,
	       meaning[0] ? meaning : etrn_client_meaning(ETRN_CLIENT_ATRN, atoi(code)),
	       received[0] ? "; messages received: " : "", received);
	return etrn_client_success(ETRN_CLIENT_ATRN, atoi(code)) ? EA_OK : EA_FAIL;
}
