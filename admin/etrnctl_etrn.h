/* SPDX-License-Identifier: MIT */
/*
 * etrnctl_etrn: `etrnctl etrn`, this node (or the operator) as the customer
 * of an upstream, once. ETRN runs here: a blocking TCP connection to the
 * upstream's A/AAAA, TLS by core/tls.h on memory BIOs over it, the
 * protocol by proto/etrn_client.h, every connect, read and write bounded by
 * the timeout. ATRN cannot: the reversed session must be served by a
 * running etrnd (it spools what arrives), so --atrn asks it over the
 * control socket for a one-shot activator run and reports its reply.
 */
#ifndef ETRND_ADMIN_ETRNCTL_ETRN_H
#define ETRND_ADMIN_ETRNCTL_ETRN_H

#include <stddef.h>

/* Default --timeout: each connect, read and write, and --atrn's wait for
 * the daemon's run. */
#define ETRNCTL_ETRN_TIMEOUT_DEFAULT_MS (60u * 1000u)
/* --atrn polls the daemon for the one-shot's result this often. */
#define ETRNCTL_ETRN_POLL_MS 100u

/* The usage line a usage error ends with (etrnctl --help says more). */
#define ETRNCTL_ETRN_USAGE \
	"usage: etrnctl etrn HOST[:PORT] DOMAIN|@DOMAIN|#QUEUE ... [--tls none|may|must|verify]\n" \
	"         [--ca-file FILE] [--timeout DURATION] [--helo NAME] [--user USER --password-stdin]\n" \
	"       etrnctl etrn --atrn HOST[:PORT] [DOMAIN ...] --user USER --password-stdin [--tls ...]\n"

/* Sends one request line (no newline) to the running etrnd's control
 * socket and returns its whole reply (NUL-terminated, malloc'd, the
 * caller frees) or NULL with errno set (ENOENT, ECONNREFUSED: no daemon). */
typedef char *(*etrnctl_ask_fn)(const void *arg, const char *req);

/* The command line of `etrnctl etrn`, as given (strings live as long as
 * the call). NULL: not given. */
struct etrnctl_etrn {
	const char *target;             /* HOST[:PORT], [HOST]:PORT */
	char *const *nodes;             /* DOMAIN, @DOMAIN, #QUEUE (ATRN: domains) */
	unsigned nnodes;
	const char *tls;                /* none|may|must|verify; NULL = may */
	const char *ca_file;            /* verify's trust store; NULL = system */
	const char *timeout;            /* a core/units.h duration */
	const char *helo;               /* EHLO name; NULL = this host's name */
	const char *user;               /* AUTH user */
	const char *password;           /* read from stdin by the caller */
	int atrn;
	int json;                       /* one JSON object on stdout */
	const char *control_socket;     /* --atrn: the daemon's, for messages */
	etrnctl_ask_fn ask;             /* --atrn: how to reach it */
	const void *ask_arg;
};

/*
 * Check e as the usage says, without touching the network: 0, or
 * EXIT_USAGE (2) with the reason on stderr ("etrnctl: etrn: ...").
 */
int etrnctl_etrn_check(const struct etrnctl_etrn *e);

/*
 * Run it: print each reply with its meaning ("example.com: 253 2.0.0 OK,
 * 3 pending messages started (pending messages started)"), why the
 * session ended early on stderr. Returns the exit status: 0 when every
 * request got a success reply (ETRN 250-253, ATRN 250), 1 otherwise
 * (refused connection, TLS or AUTH failure, 458/459/5xx, timeout, no
 * daemon for --atrn), 2 for usage errors.
 */
int etrnctl_etrn_run(const struct etrnctl_etrn *e);

#endif
