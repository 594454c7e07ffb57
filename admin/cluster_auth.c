/* SPDX-License-Identifier: MIT */
/*
 * cluster_auth: see cluster_auth.h. The secret sits behind a mutex (read
 * by engine threads at a node's AUTH and at an outgoing transfer, written
 * by a reload): neither is a per-message path. The check needs no thread
 * of its own: a constant-time compare, answered through loop_post().
 */
#include "admin/cluster_auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "core/addrlimit.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/now.h"

/* Longest client address text kept (inet_ntop's IPv6 form fits). */
#define CLUSTER_AUTH_CLIENT_MAX 64

struct cluster_auth {
	pthread_mutex_t mu;                 /* guards secret and len */
	char secret[CLUSTER_AUTH_SECRET_MAX + 1];
	size_t len;
	struct addrlimit *lim;              /* auth_failure_limit */
	struct auth_backend backend;
};

/* One answer on its way to the asking loop. */
struct cluster_auth_answer {
	auth_done_fn done;
	void *done_arg;
	uint64_t conn;
	enum auth_result r;
};

int cluster_auth_id_ok(const char *s, size_t len)
{
	if (len == 0 || len >= CONFIG_NODE_ID_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return 0;
	}
	return 1;
}

/* The first line of path into out (without CR LF): its length, or -1 with
 * err "PATH: what is wrong". */
static int cluster_auth_read(const char *path, char *out, size_t outlen, char *err,
			     size_t errlen)
{
	char line[CLUSTER_AUTH_SECRET_MAX + 3];
	FILE *f = fopen(path, "r");
	const char *lf;
	size_t n;
	int rc = -1;

	if (!f) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	n = fread(line, 1, sizeof(line) - 1, f);
	if (ferror(f)) {
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		goto fail;
	}
	line[n] = '\0';
	lf = memchr(line, '\n', n);
	if (lf)
		n = (size_t)(lf - line); /* a NUL does not end the line: refused below */
	if (n > 0 && line[n - 1] == '\r')
		n--;
	if (memchr(line, '\0', n)) {
		snprintf(err, errlen, "%s: the secret (first line) holds a NUL byte", path);
		goto fail;
	}
	if (n < CLUSTER_AUTH_SECRET_MIN || n > CLUSTER_AUTH_SECRET_MAX || n >= outlen) {
		snprintf(err, errlen, "%s: the secret (first line) is %s%zu bytes: want %d to %d",
			 path, n > CLUSTER_AUTH_SECRET_MAX ? "over " : "", n > CLUSTER_AUTH_SECRET_MAX ?
			 (size_t)CLUSTER_AUTH_SECRET_MAX : n, CLUSTER_AUTH_SECRET_MIN,
			 CLUSTER_AUTH_SECRET_MAX);
		goto fail;
	}
	memcpy(out, line, n);
	out[n] = '\0';
	rc = (int)n;
fail:
	explicit_bzero(line, sizeof(line));
	(void)fclose(f);
	return rc;
}

static void cluster_auth_deliver(void *arg)
{
	struct cluster_auth_answer *a = arg;

	a->done(a->done_arg, a->conn, a->r);
	free(a);
}

/* The password against the secret: CRYPTO_memcmp over the secret's length
 * so the time says nothing of where they differ (the length comparison
 * tells only whether the lengths match). */
static enum auth_result cluster_auth_verify(struct cluster_auth *ca, const char *user,
					   const char *pass, size_t passlen)
{
	size_t ulen = strnlen(user, AUTH_USER_MAX + 1);
	int same;

	if (!cluster_auth_id_ok(user, ulen))
		return AUTH_BAD;
	pthread_mutex_lock(&ca->mu);
	same = passlen == ca->len && CRYPTO_memcmp(pass, ca->secret, ca->len) == 0;
	pthread_mutex_unlock(&ca->mu);
	return same ? AUTH_OK : AUTH_BAD;
}

/*
 * As authpool_check(): the limit first (an address over it gets 454 without
 * a compare), and only a wrong password keeps its reserved failure.
 */
static int cluster_auth_check(void *arg, struct loop *l, uint64_t conn_handle,
			      const char *client, const char *user, const char *pass,
			      size_t passlen, auth_done_fn done, void *done_arg)
{
	struct cluster_auth *ca = arg;
	struct cluster_auth_answer *a;
	uint64_t now = now_mono_ms();

	if (!client || strnlen(client, CLUSTER_AUTH_CLIENT_MAX) >= CLUSTER_AUTH_CLIENT_MAX)
		client = "unknown";
	if (!addrlimit_take(ca->lim, client, now))
		return -AUTH_LIMITED;
	a = calloc(1, sizeof(*a));
	if (!a) {
		addrlimit_give(ca->lim, client, now);
		return -AUTH_TEMP;
	}
	a->done = done;
	a->done_arg = done_arg;
	a->conn = conn_handle;
	a->r = cluster_auth_verify(ca, user, pass, passlen);
	if (a->r == AUTH_OK) {
		addrlimit_give(ca->lim, client, now);
	} else {
		int id = cluster_auth_id_ok(user, strnlen(user, AUTH_USER_MAX + 1));

		/* A name that is no node id is not logged: it may be anything. */
		log_info("cluster: node AUTH from [%s] as %s refused: %s", client,
			 id ? user : "(not a node id)", id ? "wrong secret" : "not a node id");
	}
	if (loop_post(l, cluster_auth_deliver, a)) {
		free(a);
		return -AUTH_TEMP;
	}
	return 0;
}

struct cluster_auth *cluster_auth_new(const struct config *cfg, char *err, size_t errlen)
{
	struct cluster_auth *ca;
	int n;

	err[0] = '\0';
	if (!cfg->cluster_secret_file[0])
		return NULL;
	ca = calloc(1, sizeof(*ca));
	if (!ca) {
		snprintf(err, errlen, "%s: out of memory", cfg->cluster_secret_file);
		return NULL;
	}
	pthread_mutex_init(&ca->mu, NULL);
	n = cluster_auth_read(cfg->cluster_secret_file, ca->secret, sizeof(ca->secret), err, errlen);
	if (n < 0)
		goto fail;
	ca->len = (size_t)n;
	ca->lim = addrlimit_new("auth_failure_limit", cfg->auth_failure_limit,
				ADDRLIMIT_ADDRS_DEFAULT);
	if (!ca->lim) {
		snprintf(err, errlen, "%s: out of memory", cfg->cluster_secret_file);
		goto fail;
	}
	ca->backend.check = cluster_auth_check;
	ca->backend.arg = ca;
	return ca;
fail:
	return cluster_auth_free(ca);
}

int cluster_auth_reload(struct cluster_auth *ca, const char *path, char *err, size_t errlen)
{
	char fresh[CLUSTER_AUTH_SECRET_MAX + 1];
	int n = cluster_auth_read(path, fresh, sizeof(fresh), err, errlen);

	if (n < 0)
		return -1;
	pthread_mutex_lock(&ca->mu);
	explicit_bzero(ca->secret, sizeof(ca->secret));
	memcpy(ca->secret, fresh, (size_t)n + 1);
	ca->len = (size_t)n;
	pthread_mutex_unlock(&ca->mu);
	explicit_bzero(fresh, sizeof(fresh));
	return 0;
}

int cluster_auth_secret(const struct cluster_auth *ca, char *out, size_t outlen)
{
	struct cluster_auth *m = (struct cluster_auth *)ca; /* the mutex only */
	int n = -ENOSPC;

	pthread_mutex_lock(&m->mu);
	if (ca->len < outlen) {
		memcpy(out, ca->secret, ca->len + 1);
		n = (int)ca->len;
	}
	pthread_mutex_unlock(&m->mu);
	return n;
}

const struct auth_backend *cluster_auth_backend(struct cluster_auth *ca)
{
	return &ca->backend;
}

struct cluster_auth *cluster_auth_free(struct cluster_auth *ca)
{
	if (!ca)
		return NULL;
	explicit_bzero(ca->secret, sizeof(ca->secret));
	addrlimit_free(ca->lim);
	pthread_mutex_destroy(&ca->mu);
	free(ca);
	return NULL;
}
