/* SPDX-License-Identifier: MIT */
/*
 * etrnbench: the SMTP load generator and sink of etrnd's benchmarks, one
 * binary, one thread, one io_uring (liburing) carrying every socket (etrn:
 * one such process each for the sink and for the ETRN sessions).
 *   send  N sessions x M messages (PIPELINING or not), sizes fixed or drawn
 *         from a distribution, recipients over K domains: msgs/s, MB/s,
 *         end-of-DATA -> 250 latency percentiles, errors by reply code
 *   sink  accept and count (optionally verify each body's checksum header),
 *         and which X-Etrnbench seqs came: distinct ones and repeats
 *   etrn  ETRN one or many domains and time the drain from the ETRN replies
 *         to the first and last message: this process is the sink, the
 *         ETRN sessions run in a child process with a ring of its own
 *   atrn  the same drain over the customer's own connection (ATRN, RFC
 *         2645): connect to an ODMR listener marked trusted (AUTH in the
 *         clear), AUTH PLAIN, ATRN, then the same connection is served by
 *         the same sink code as etrn's; timed the same way
 *   idle  hold N connections open after EHLO until the time is up
 * With --starttls the clients (send, etrn's ETRN sessions, idle) upgrade each
 * session with STARTTLS (RFC 3207) and say EHLO again; with --tls-cert and
 * --tls-key the sink offers STARTTLS. TLS is etrnd's own core/tls.h (OpenSSL
 * on memory): the ring still does every socket read and write.
 * Every parser is bounded: a reply or command line longer than its buffer
 * ends that connection and is counted. Loopback use only (the scripts only
 * ever give 127.0.0.1 / ::1).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/ascii.h"
#include "core/buf.h"
#include "core/base64.h"
#include "core/hash.h"
#include "core/htab.h"
#include "core/tls.h"

#define EB_RING_SQ 4096u
#define EB_RING_CQ 65536u
#define EB_CONNS_MAX 65536u          /* connection slots */
#define EB_RBUF_CLIENT 8192u         /* reply buffer: longest reply line */
#define EB_RBUF_IDLE 1024u
#define EB_RBUF_SINK 65536u
#define EB_SINK_CMD_MAX 2048u        /* longest command line the sink takes */
#define EB_SINK_HDR_MAX 1000u        /* RFC 5321 4.5.3.1.6 text line */
#define EB_OUT_MAX (64u << 20)       /* output buffer cap per connection */
#define EB_RCPTS_MAX 100u
#define EB_DOMAINS_MAX 1000000u
#define EB_DOMAIN_LEN 255u
#define EB_SIZE_MAX (32u << 20)
#define EB_SIZES_MAX 16u
#define EB_LINE 80u                  /* body line: 78 characters + CRLF */
#define EB_ROT 26u                   /* body variants (line rotations) */
#define EB_CONNECTING_MAX 512u       /* connects + banners in flight */
#define EB_REPLY_TIMEOUT_NS (60ull * 1000000000ull)
#define EB_TICK_NS 100000000ull      /* loop wakes at least this often */
#define EB_PROGRESS_NS 1000000000ull
#define EB_LINGER_NS 300000000ull     /* sink: serve on after the end */
#define EB_SEQ_BITS0 65536u          /* sink: first size of the seq bitmap */
#define EB_SEQ_MAX (1ull << 32)      /* sink: larger seqs are not tracked */
#define EB_SENDER "bench@sender.test"
/* A TLS record is at most 2^14 bytes of plaintext plus 2048 of expansion
 * (RFC 5246 6.2.3); one receive takes two. */
#define EB_TLS_RECV (2u * ((16u << 10) + 2048u + 5u))
#define EB_TLS_NAME 64u              /* protocol / cipher names kept */
#define EB_WAKE_MAX 65536u           /* etrn: wake-up probe samples kept */
#define EB_WAKE_NS 100000ull         /* etrn: the probe sleeps 100 us */
#define EB_TLS_ERR 256u              /* tls_ctx_new()'s error text */
#define EB_CRED_MAX 255u             /* --user / --password length */
#define EB_ATRN_LINE (EB_DOMAINS_ATRN_MAX * (EB_DOMAIN_LEN + 1) + 16)
#define EB_DOMAINS_ATRN_MAX 64u      /* domains one ATRN names */

#define NS 1000000000.0

enum eb_op { OP_ACCEPT = 1, OP_CONNECT, OP_RECV, OP_SEND };
enum eb_kind { K_FREE, K_LISTEN, K_SEND, K_ETRN, K_IDLE, K_SINK, K_ATRN };
/* X_TLS is no reply but the handshake after "220 Ready to start TLS": in the
 * queue so that a stalled handshake times out like a missing reply. */
enum eb_exp { X_BANNER, X_EHLO, X_MAIL, X_RCPT, X_DATA, X_DOT, X_RSET,
	X_QUIT, X_ETRN, X_STARTTLS, X_TLS, X_AUTH, X_ATRN };
/* Sink data scanner states (line start, '.', ".\r", mid-line). */
enum eb_ds { DS_BOL, DS_DOT, DS_DOTCR, DS_MID };

struct eb_exp_ent {
	uint8_t kind;
	uint32_t size;
	uint64_t seq;
	uint64_t t;                  /* X_DOT: when the dot was queued */
};

struct eb_obuf {
	char *p;
	size_t len, cap, off;
};

struct eb_conn {
	int fd;
	uint8_t kind;
	uint8_t closing;
	uint8_t send_busy;
	uint8_t ob;                  /* index of the buffer being filled */
	uint8_t pipelining;          /* client: the server offers PIPELINING */
	uint8_t ready;               /* idle: past EHLO */
	uint8_t quit_after;          /* close once the output is sent */
	uint8_t waiting;             /* in the rate queue */
	uint8_t unserved;            /* closed before its first message */
	uint8_t offers_tls;          /* client: the server offers STARTTLS */
	uint8_t tls_hs;              /* TLS handshake under way */
	uint8_t tls_fresh;           /* TLS just started: drop the clear rest */
	uint8_t tls_bye;             /* send close_notify after the output */
	uint8_t recv_tls;            /* the receive in flight is ciphertext */
	uint8_t tls_in;              /* inside tls_conn_input(): no flush */
	uint32_t gen;
	uint32_t pending;            /* SQEs in flight */
	struct eb_obuf out[2];
	char *rbuf;
	size_t rlen, rcap;
	uint64_t last_io;
	/* TLS (NULL: clear): plaintext waits in pt until encrypted into out */
	struct tls_conn *ssl;
	struct eb_obuf pt;
	char *cbuf;                  /* ciphertext receive buffer */
	uint64_t tls_t;              /* when the handshake started */
	/* client */
	uint32_t sess;
	uint32_t on_conn;            /* messages started on this connection */
	struct eb_exp_ent *q;
	unsigned qh, qn, qcap;
	uint64_t cur_seq;            /* non-pipelined: message being set up */
	uint32_t cur_size;
	unsigned rcpt_next;
	int tx_bad;
	int tx_open;                 /* MAIL sent, no dot yet */
	uint64_t etrn_t;
	uint32_t etrn_dom;
	/* sink */
	int in_data;
	int hdr_phase;
	enum eb_ds ds;
	uint64_t sum;
	uint64_t want_sum;
	int have_sum;
	uint64_t seq;                /* sink: the message's X-Etrnbench seq */
	int have_seq;
	uint64_t msg_bytes;
	uint32_t rcpt_dom;           /* last RCPT's domain index + 1, 0: none */
	uint32_t rcpts;
	size_t hlen;
	char hline[EB_SINK_HDR_MAX + 1];
};

struct eb_sess {
	uint64_t done;               /* messages finished */
	uint64_t started;
	int active;
};

struct eb_lat {
	uint64_t *v;
	size_t n, cap;
};

/* etrn: what the child process that runs the ETRN sessions hands back,
 * in memory shared with the sink's process (MAP_SHARED): its counters,
 * then each domain's reply time and the reply latencies. */
struct eb_etrn_out {
	uint32_t done;
	uint64_t t_first_sent, t_first_reply, t_last_reply;
	uint64_t code[1000];
	uint64_t err_conn, err_proto, err_timeout, sess_failed;
	uint64_t tls_ok, tls_failed, tls_unoffered;
	uint64_t nlat, ntls, nwake;
	char tls_version[EB_TLS_NAME], tls_cipher[EB_TLS_NAME];
	uint64_t wake[EB_WAKE_MAX];  /* eb_wake_probe()'s lateness samples */
	uint64_t v[];                /* reply_t[ndomains], then nlat reply
	                                latencies, then ntls handshakes */
};

enum eb_etrn_role { EB_ONE_PROCESS, EB_ETRN_CLIENT, EB_ETRN_SINK };

static struct {
	/* options */
	const char *mode;
	struct sockaddr_storage srv;
	socklen_t srvlen;
	char srvname[300];
	struct sockaddr_storage sinkaddr;
	socklen_t sinklen;
	int have_sink;
	unsigned sessions;
	uint64_t per_session;
	uint64_t total;
	unsigned per_conn;
	int pipelining;
	unsigned rcpts;
	double duration;
	double timeout;
	double rate;
	uint32_t sizes[EB_SIZES_MAX];
	unsigned weights[EB_SIZES_MAX];
	unsigned nsizes, wsum;
	char **domains;
	unsigned ndomains;
	int json;
	int verify;
	uint64_t expect;
	double idle_exit;
	unsigned etrn_sessions;
	const char *label;
	int starttls;                /* clients: STARTTLS on every session */
	const char *tls_cert, *tls_key; /* sink: offer STARTTLS with these */
	const char *tls_ca;          /* clients: trust store (NULL: system's) */
	struct tls_ctx *tls_cli, *tls_srv;
	const char *user, *password; /* atrn: AUTH PLAIN credentials */
	/* state */
	struct io_uring ring;
	struct eb_conn *conns;
	uint32_t *freelist;
	unsigned nfree;
	unsigned live;
	unsigned connecting;
	struct eb_sess *sess;
	uint32_t *conn_wait;         /* sessions waiting for a connect slot */
	unsigned cw_head, cw_n;
	uint32_t *rate_wait;         /* K_SEND conns waiting for a rate token */
	unsigned rw_head, rw_n;
	uint64_t t0, pace0, t_first_conn, t_last_done, t_stop_issue;
	int issuing;
	uint64_t issued;
	char *pattern;
	size_t pattern_len;
	uint64_t sums[EB_SIZES_MAX][EB_ROT];
	uint8_t sum_ok[EB_SIZES_MAX][EB_ROT];
	int listen_fd;
	/* results */
	uint64_t ok, failed, bytes, rcpt_ok;
	uint64_t err_code[1000];
	uint64_t err_conn, err_proto, err_timeout, sess_failed, sess_unserved;
	struct eb_lat lat;
	/* TLS, both sides */
	uint64_t tls_ok, tls_failed, tls_unoffered;
	uint64_t s_tls_conns, s_tls_msgs, s_tls_failed;
	struct eb_lat tls_lat;       /* client: 220 -> handshake done */
	char tls_version[EB_TLS_NAME], tls_cipher[EB_TLS_NAME];
	char s_tls_version[EB_TLS_NAME], s_tls_cipher[EB_TLS_NAME];
	int tls_err_shown;
	/* idle */
	unsigned idle_ready, idle_failed;
	int idle_announced;
	/* etrn */
	uint32_t etrn_next;
	uint32_t etrn_done;
	uint64_t *etrn_reply_t;      /* per domain, when its reply came */
	uint64_t *dom_first, *dom_last;
	uint64_t t_first_etrn_sent, t_first_etrn_reply, t_last_etrn_reply;
	struct eb_lat etrn_lat;
	struct eb_lat wake_lat;      /* etrn: how late a sleeping thread woke */
	uint64_t etrn_code[1000];
	enum eb_etrn_role etrn_role;
	struct eb_etrn_out *etrn_out; /* etrn: the ETRN client process's results */
	pid_t etrn_kid;              /* etrn: that process while it runs, or 0 */
	uint32_t atrn_conn;          /* the ATRN connection's slot + 1 */
	int atrn_over;               /* its reversed session has ended */
	struct htab dom_idx;         /* domain name -> index into domains */
	/* sink */
	uint64_t s_msgs, s_rcpts, s_bytes, s_conns, s_ok_sum, s_bad_sum,
		 s_no_sum, s_proto;
	uint64_t s_first, s_last;
	/* Sink: which seqs arrived (a bit each, grown on demand), so a run
	 * can tell "each message once" from "as many messages". */
	uint8_t *s_seen;
	uint64_t s_seen_bits, s_distinct, s_dups;
	uint64_t last_progress, last_progress_count;
	int tty;
} G;

static volatile sig_atomic_t eb_stop, eb_kid_exited;

static void eb_on_signal(int sig)
{
	(void)sig;
	eb_stop = 1;
}

static uint64_t eb_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

__attribute__((format(printf, 1, 2), noreturn))
static void eb_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("etrnbench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static void *eb_xalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);
	if (p == NULL)
		eb_die("out of memory (%zu bytes)", n);
	return p;
}


static uint64_t eb_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

/* ---- options ------------------------------------------------------------ */

static int eb_parse_addr(const char *s, struct sockaddr_storage *ss,
		socklen_t *len, int listen_side)
{
	char host[256];
	const char *port;
	if (s[0] == '[') {
		const char *e = strchr(s, ']');
		if (e == NULL || e[1] != ':' || (size_t)(e - s - 1) >= sizeof host)
			return -1;
		memcpy(host, s + 1, (size_t)(e - s - 1));
		host[e - s - 1] = '\0';
		port = e + 2;
	} else {
		const char *c = strrchr(s, ':');
		if (c == NULL) {
			/* A bare port: loopback. */
			snprintf(host, sizeof host, "127.0.0.1");
			port = s;
		} else {
			if ((size_t)(c - s) >= sizeof host)
				return -1;
			memcpy(host, s, (size_t)(c - s));
			host[c - s] = '\0';
			port = c + 1;
		}
	}
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV |
			(listen_side ? AI_PASSIVE : 0) };
	struct addrinfo *ai;
	if (getaddrinfo(host, port, &hints, &ai) != 0)
		return -1;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static uint32_t eb_parse_size(const char *s)
{
	char *e;
	double v = strtod(s, &e);
	if (e == s || v <= 0)
		eb_die("bad size %s", s);
	if (*e == 'k' || *e == 'K')
		v *= 1024, e++;
	else if (*e == 'm' || *e == 'M')
		v *= 1024 * 1024, e++;
	if (*e != '\0' && *e != ':' && *e != ',')
		eb_die("bad size %s", s);
	if (v > EB_SIZE_MAX)
		eb_die("size %s over %u bytes", s, EB_SIZE_MAX);
	return (uint32_t)v;
}

/* "1k:40,4k:30,100k:5": sizes with weights. */
static void eb_parse_dist(const char *s)
{
	G.nsizes = 0;
	G.wsum = 0;
	while (*s) {
		if (G.nsizes == EB_SIZES_MAX)
			eb_die("at most %u sizes in --size-dist", EB_SIZES_MAX);
		uint32_t sz = eb_parse_size(s);
		const char *c = strpbrk(s, ":,");
		unsigned w = 1;
		if (c != NULL && *c == ':') {
			w = (unsigned)strtoul(c + 1, NULL, 10);
			c = strchr(c, ',');
		}
		if (w == 0 || w > 1000000)
			eb_die("bad weight in --size-dist");
		G.sizes[G.nsizes] = sz;
		G.weights[G.nsizes++] = w;
		G.wsum += w;
		if (c == NULL)
			break;
		s = c + 1;
	}
	if (G.nsizes == 0)
		eb_die("empty --size-dist");
}

static void eb_add_domain(const char *d, size_t n)
{
	if (n == 0)
		return;
	if (n > EB_DOMAIN_LEN)
		eb_die("domain too long");
	if (G.ndomains == EB_DOMAINS_MAX)
		eb_die("too many domains");
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)d[i]) && d[i] != '.' && d[i] != '-')
			eb_die("bad domain %.*s", (int)n, d);
	if (G.ndomains % 1024 == 0) {
		G.domains = realloc(G.domains,
				(G.ndomains + 1024) * sizeof *G.domains);
		if (G.domains == NULL)
			eb_die("out of memory");
	}
	G.domains[G.ndomains] = eb_xalloc(n + 1);
	memcpy(G.domains[G.ndomains], d, n);
	G.ndomains++;
}

/* --domain-list a.test,b.test or @FILE (one a line). */
static void eb_parse_domain_list(const char *s)
{
	if (s[0] == '@') {
		FILE *f = fopen(s + 1, "r");
		char line[EB_DOMAIN_LEN + 2];
		if (f == NULL)
			eb_die("%s: %s", s + 1, strerror(errno));
		while (fgets(line, sizeof line, f) != NULL) {
			size_t n = strcspn(line, "\r\n");
			eb_add_domain(line, n);
		}
		fclose(f);
		return;
	}
	while (*s) {
		size_t n = strcspn(s, ",");
		eb_add_domain(s, n);
		s += n;
		if (*s == ',')
			s++;
	}
}

static void eb_usage(void)
{
	fputs(
"usage: etrnbench send --server HOST:PORT [-c SESSIONS] [-m MSGS_PER_SESSION]\n"
"                 [-n TOTAL] [--per-conn K] [--pipelining] [--size BYTES |\n"
"                 --size-dist 1k:40,4k:50,100k:10] [--rcpts R] [--domains K |\n"
"                 --domain-list d1,d2|@FILE] [--duration S] [--rate MSGS_PER_S]\n"
"                 [--timeout S] [--json] [--label TEXT] [--starttls]\n"
"       etrnbench sink --listen [HOST:]PORT [--verify] [--expect N]\n"
"                 [--duration S] [--idle-exit S] [--json]\n"
"                 [--tls-cert PEM --tls-key PEM]\n"
"       etrnbench etrn --server HOST:PORT (--domain D[,D...] | --domains K |\n"
"                 --domain-list @FILE) --sink [HOST:]PORT --expect N\n"
"                 [--etrn-sessions C] [--verify] [--timeout S] [--json]\n"
"                 [--starttls] [--tls-cert PEM --tls-key PEM]\n"
"       etrnbench atrn --server HOST:PORT (--domain D[,D...]) --user U\n"
"                 --password P [--expect N] [--verify] [--timeout S] [--json]\n"
"       etrnbench idle --server HOST:PORT -c CONNECTIONS [--duration S] [--json]\n"
"                 [--starttls]\n"
"Domains default to dom0.test .. domK-1.test; sizes take k/M.\n"
"--starttls: every client session upgrades with STARTTLS (and fails where it\n"
"is not offered); --tls-cert/--tls-key: the sink offers STARTTLS; --tls-ca PEM:\n"
"the clients' trust store instead of the system's (loaded once at start; no\n"
"certificate is checked either way).\n", stderr);
	exit(2);
}

static void eb_options(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "server", 1, NULL, 's' }, { "listen", 1, NULL, 'l' },
		{ "sink", 1, NULL, 'k' }, { "sessions", 1, NULL, 'c' },
		{ "messages", 1, NULL, 'm' }, { "total", 1, NULL, 'n' },
		{ "per-conn", 1, NULL, 'P' }, { "pipelining", 0, NULL, 'p' },
		{ "size", 1, NULL, 'z' }, { "size-dist", 1, NULL, 'Z' },
		{ "rcpts", 1, NULL, 'r' }, { "domains", 1, NULL, 'K' },
		{ "domain-list", 1, NULL, 'L' }, { "domain", 1, NULL, 'L' },
		{ "duration", 1, NULL, 'd' }, { "timeout", 1, NULL, 't' },
		{ "rate", 1, NULL, 'R' }, { "json", 0, NULL, 'j' },
		{ "verify", 0, NULL, 'v' }, { "expect", 1, NULL, 'e' },
		{ "idle-exit", 1, NULL, 'i' }, { "etrn-sessions", 1, NULL, 'E' },
		{ "label", 1, NULL, 'T' }, { "help", 0, NULL, 'h' },
		{ "starttls", 0, NULL, 'S' }, { "tls-cert", 1, NULL, 'C' },
		{ "tls-key", 1, NULL, 'Y' }, { "tls-ca", 1, NULL, 'A' },
		{ "user", 1, NULL, 'U' }, { "password", 1, NULL, 'W' },
		{ NULL, 0, NULL, 0 }
	};
	unsigned kdom = 0;
	int o;
	G.sessions = 1;
	G.rcpts = 1;
	G.sizes[0] = 4096;
	G.weights[0] = 1;
	G.nsizes = 1;
	G.wsum = 1;
	G.timeout = 600;
	G.listen_fd = -1;
	optind = 2;
	while ((o = getopt_long(argc, argv, "s:l:k:c:m:n:P:pz:Z:r:K:L:d:t:R:jve:i:E:T:hSC:Y:A:U:W:",
			lo, NULL)) != -1) {
		switch (o) {
		case 's':
			if (eb_parse_addr(optarg, &G.srv, &G.srvlen, 0) < 0)
				eb_die("bad address %s", optarg);
			snprintf(G.srvname, sizeof G.srvname, "%s", optarg);
			break;
		case 'l': case 'k':
			if (eb_parse_addr(optarg, &G.sinkaddr, &G.sinklen, 1) < 0)
				eb_die("bad address %s", optarg);
			G.have_sink = 1;
			break;
		case 'c': G.sessions = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'm': G.per_session = strtoull(optarg, NULL, 10); break;
		case 'n': G.total = strtoull(optarg, NULL, 10); break;
		case 'P': G.per_conn = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'p': G.pipelining = 1; break;
		case 'z':
			G.sizes[0] = eb_parse_size(optarg);
			G.nsizes = 1;
			G.wsum = 1;
			G.weights[0] = 1;
			break;
		case 'Z': eb_parse_dist(optarg); break;
		case 'r': G.rcpts = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'K': kdom = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'L': eb_parse_domain_list(optarg); break;
		case 'd': G.duration = strtod(optarg, NULL); break;
		case 't': G.timeout = strtod(optarg, NULL); break;
		case 'R': G.rate = strtod(optarg, NULL); break;
		case 'j': G.json = 1; break;
		case 'v': G.verify = 1; break;
		case 'e': G.expect = strtoull(optarg, NULL, 10); break;
		case 'i': G.idle_exit = strtod(optarg, NULL); break;
		case 'E': G.etrn_sessions = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'T': G.label = optarg; break;
		case 'S': G.starttls = 1; break;
		case 'C': G.tls_cert = optarg; break;
		case 'Y': G.tls_key = optarg; break;
		case 'A': G.tls_ca = optarg; break;
		case 'U': G.user = optarg; break;
		case 'W': G.password = optarg; break;
		default: eb_usage();
		}
	}
	if (optind != argc)
		eb_usage();
	if (kdom > EB_DOMAINS_MAX)
		eb_die("--domains over %u", EB_DOMAINS_MAX);
	for (unsigned i = 0; i < kdom; i++) {
		char d[32];
		int n = snprintf(d, sizeof d, "dom%u.test", i);
		eb_add_domain(d, (size_t)n);
	}
	if (G.ndomains == 0 && strcmp(G.mode, "send") == 0)
		eb_add_domain("dom0.test", 9);
	if (G.rcpts == 0 || G.rcpts > EB_RCPTS_MAX)
		eb_die("--rcpts 1..%u", EB_RCPTS_MAX);
	if (G.sessions == 0 || G.sessions > EB_CONNS_MAX - 16)
		eb_die("-c 1..%u", EB_CONNS_MAX - 16);
	if (G.timeout <= 0)
		eb_die("bad --timeout");
	if ((G.tls_cert == NULL) != (G.tls_key == NULL))
		eb_die("--tls-cert and --tls-key go together");
}

/* ---- connections and the ring ----------------------------------------- */

static struct io_uring_sqe *eb_sqe(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&G.ring);
	if (sqe == NULL) {
		io_uring_submit(&G.ring);
		sqe = io_uring_get_sqe(&G.ring);
		if (sqe == NULL)
			eb_die("io_uring: no SQE after submit");
	}
	return sqe;
}

static uint64_t eb_ud(const struct eb_conn *c, enum eb_op op)
{
	return ((uint64_t)(c - G.conns) << 32) | ((uint64_t)(c->gen & 0xffffff) << 8) | op;
}

static struct eb_conn *eb_conn_new(int fd, enum eb_kind kind)
{
	if (G.nfree == 0)
		return NULL;
	struct eb_conn *c = &G.conns[G.freelist[--G.nfree]];
	uint32_t gen = c->gen + 1;
	memset(c, 0, offsetof(struct eb_conn, hline));
	c->gen = gen;
	c->fd = fd;
	c->kind = (uint8_t)kind;
	c->rcap = kind == K_SINK ? EB_RBUF_SINK :
		kind == K_IDLE ? EB_RBUF_IDLE : EB_RBUF_CLIENT;
	c->rbuf = eb_xalloc(c->rcap);
	c->last_io = eb_now();
	if (kind == K_SEND || kind == K_ETRN || kind == K_ATRN) {
		c->qcap = G.rcpts * 2 + 8;
		c->q = eb_xalloc(c->qcap * sizeof *c->q);
	} else if (kind == K_IDLE) {
		c->qcap = 4;
		c->q = eb_xalloc(c->qcap * sizeof *c->q);
	}
	G.live++;
	return c;
}

static void eb_session_closed(enum eb_kind k, uint32_t sess, int banner,
		int owed, uint32_t on_conn);
static void eb_connect_session(uint32_t sess, enum eb_kind kind);
static enum eb_kind eb_client_kind(void);

/* Only ever called at the end of a completion (or from the tick), never in
 * the middle of handling one: the slot may be reused at once. */
static void eb_conn_release(struct eb_conn *c)
{
	enum eb_kind k = c->kind;
	int banner = c->qn > 0 && c->q[c->qh].kind == X_BANNER;
	int owed = c->qn > 0 && !c->unserved;
	uint32_t sess = c->sess, on_conn = c->on_conn;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->rbuf);
	free(c->q);
	free(c->out[0].p);
	free(c->out[1].p);
	c->ssl = tls_conn_free(c->ssl);
	free(c->cbuf);
	free(c->pt.p);
	c->ssl = NULL;
	c->cbuf = c->pt.p = NULL;
	c->rbuf = NULL;
	c->q = NULL;
	c->out[0].p = c->out[1].p = NULL;
	c->kind = K_FREE;
	c->gen++;
	G.live--;
	G.freelist[G.nfree++] = (uint32_t)(c - G.conns);
	if (k == K_SEND || k == K_ETRN || k == K_IDLE || k == K_ATRN)
		eb_session_closed(k, sess, banner, owed, on_conn);
	if (k == K_SINK && G.atrn_conn == c - G.conns + 1)
		G.atrn_over = 1;
}

/* Ends a pending receive (shutdown); the slot is released once nothing is
 * in flight, since a buffer given to the kernel stays its own until the CQE. */
static void eb_conn_close(struct eb_conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	if (c->kind == K_IDLE && c->ready && G.idle_ready)
		G.idle_ready--;
	shutdown(c->fd, SHUT_RDWR);
}

static void eb_recv(struct eb_conn *c)
{
	if (c->closing)
		return;
	if (c->rlen >= c->rcap) {
		/* A line longer than the buffer: the bound of every parser. */
		if (c->kind == K_SINK)
			G.s_proto++;
		else
			G.err_proto++;
		eb_conn_close(c);
		return;
	}
	struct io_uring_sqe *sqe = eb_sqe();
	/* Under TLS, ciphertext lands in cbuf and eb_tls_input() decrypts it
	 * into rbuf; the choice is made here, per receive. */
	c->recv_tls = c->ssl != NULL;
	if (c->recv_tls)
		io_uring_prep_recv(sqe, c->fd, c->cbuf, EB_TLS_RECV, 0);
	else
		io_uring_prep_recv(sqe, c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
	io_uring_sqe_set_data64(sqe, eb_ud(c, OP_RECV));
	c->pending++;
}

static int eb_tls_pump(struct eb_conn *c);

/* The one send in flight: b (the buffer not being filled) from its offset. */
static void eb_send_buf(struct eb_conn *c, struct eb_obuf *b)
{
	c->send_busy = 1;
	struct io_uring_sqe *sqe = eb_sqe();
	io_uring_prep_send(sqe, c->fd, b->p + b->off, b->len - b->off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, eb_ud(c, OP_SEND));
	c->pending++;
}

static void eb_flush(struct eb_conn *c)
{
	if (c->closing)
		return;
	if (c->ssl != NULL && c->tls_in)
		return;  /* eb_tls_input() flushes once OpenSSL is done */
	if (c->ssl != NULL && eb_tls_pump(c) < 0) {
		G.err_proto++;
		eb_conn_close(c);
		return;
	}
	if (c->send_busy)
		return;
	struct eb_obuf *b = &c->out[c->ob];
	if (b->len == 0)
		return;
	c->ob ^= 1;
	eb_send_buf(c, b);
}

/* Room for n more bytes in b, within EB_OUT_MAX. Returns 0 or -1. */
static int eb_obuf_reserve(struct eb_obuf *b, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 512;
		while (cap < b->len + n)
			cap *= 2;
		if (cap > EB_OUT_MAX)
			return -1;
		char *np = realloc(b->p, cap);
		if (np == NULL)
			return -1;
		b->p = np;
		b->cap = cap;
	}
	return 0;
}

/* Output: straight into the send buffer in the clear, or into pt for
 * eb_tls_pump() to encrypt once TLS is on. */
static int eb_out(struct eb_conn *c, const void *p, size_t n)
{
	struct eb_obuf *b = c->ssl != NULL ? &c->pt : &c->out[c->ob];
	if (eb_obuf_reserve(b, n) < 0)
		return -1;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static void eb_outs(struct eb_conn *c, const char *s)
{
	if (eb_out(c, s, strlen(s)) < 0)
		eb_conn_close(c);
}

static void eb_exp_push(struct eb_conn *c, uint8_t kind, uint64_t seq,
		uint32_t size, uint64_t t)
{
	if (c->qn == c->qcap)
		eb_die("expectation queue overflow (bug)");
	struct eb_exp_ent *e = &c->q[(c->qh + c->qn++) % c->qcap];
	e->kind = kind;
	e->seq = seq;
	e->size = size;
	e->t = t;
}

/* ---- message generation -------------------------------------------------- */

static void eb_pattern_init(void)
{
	uint32_t maxsz = 0;
	for (unsigned i = 0; i < G.nsizes; i++)
		if (G.sizes[i] > maxsz)
			maxsz = G.sizes[i];
	size_t lines = maxsz / EB_LINE + EB_ROT + 2;
	G.pattern_len = lines * EB_LINE;
	G.pattern = eb_xalloc(G.pattern_len);
	for (size_t l = 0; l < lines; l++) {
		char *p = G.pattern + l * EB_LINE;
		for (unsigned i = 0; i < EB_LINE - 2; i++)
			p[i] = (char)('a' + (l + i) % 26);
		p[EB_LINE - 2] = '\r';
		p[EB_LINE - 1] = '\n';
	}
}

static unsigned eb_pick_size(uint64_t seq)
{
	if (G.nsizes == 1)
		return 0;
	unsigned r = (unsigned)(eb_mix(seq) % G.wsum);
	for (unsigned i = 0; i < G.nsizes; i++) {
		if (r < G.weights[i])
			return i;
		r -= G.weights[i];
	}
	return G.nsizes - 1;
}

/* Body bytes of a message of nominal size sz (headers take ~250). */
static size_t eb_body_len(uint32_t sz)
{
	size_t b = sz > 300 ? sz - 250 : EB_LINE;
	b = (b + EB_LINE - 1) / EB_LINE * EB_LINE;
	return b;
}

static const char *eb_rcpt_domain(uint64_t seq, unsigned r)
{
	return G.domains[(seq * G.rcpts + r) % G.ndomains];
}

/* Append MAIL, RCPT x R, DATA of message seq (pipelined) or just MAIL. */
static void eb_tx_start(struct eb_conn *c, uint64_t seq)
{
	char line[EB_DOMAIN_LEN + 64];
	unsigned si = eb_pick_size(seq);
	uint32_t size = G.sizes[si];
	c->cur_seq = seq;
	c->cur_size = si;
	c->tx_bad = 0;
	c->tx_open = 1;
	c->on_conn++;
	eb_outs(c, "MAIL FROM:<" EB_SENDER ">\r\n");
	eb_exp_push(c, X_MAIL, seq, size, 0);
	if (!(c->pipelining && G.pipelining)) {
		c->rcpt_next = 0;
		return;
	}
	for (unsigned r = 0; r < G.rcpts; r++) {
		snprintf(line, sizeof line, "RCPT TO:<u%u@%s>\r\n",
				(unsigned)(seq % 1000), eb_rcpt_domain(seq, r));
		eb_outs(c, line);
		eb_exp_push(c, X_RCPT, seq, size, 0);
	}
	eb_outs(c, "DATA\r\n");
	eb_exp_push(c, X_DATA, seq, si, 0);
	c->rcpt_next = G.rcpts;
}

/* Non-pipelined: the next command of the transaction being set up. */
static void eb_tx_next_cmd(struct eb_conn *c)
{
	char line[EB_DOMAIN_LEN + 64];
	if (c->rcpt_next < G.rcpts) {
		snprintf(line, sizeof line, "RCPT TO:<u%u@%s>\r\n",
				(unsigned)(c->cur_seq % 1000),
				eb_rcpt_domain(c->cur_seq, c->rcpt_next));
		c->rcpt_next++;
		eb_outs(c, line);
		eb_exp_push(c, X_RCPT, c->cur_seq, 0, 0);
	} else {
		eb_outs(c, "DATA\r\n");
		eb_exp_push(c, X_DATA, c->cur_seq, c->cur_size, 0);
	}
}

static uint64_t eb_body_sum(unsigned si, unsigned rot, const char *body,
		size_t blen)
{
	if (!G.sum_ok[si][rot]) {
		G.sums[si][rot] = hash_fnv64(HASH_FNV64_INIT, body, blen);
		G.sum_ok[si][rot] = 1;
	}
	return G.sums[si][rot];
}

/* After 354: headers, body, the final dot. */
static void eb_tx_body(struct eb_conn *c, uint64_t seq, unsigned si)
{
	char hdr[EB_DOMAIN_LEN + 512];
	uint32_t size = G.sizes[si];
	size_t blen = eb_body_len(size);
	unsigned rot = (unsigned)(seq % EB_ROT);
	const char *body = G.pattern + (size_t)rot * EB_LINE;
	uint64_t sum = eb_body_sum(si, rot, body, blen);
	int n = snprintf(hdr, sizeof hdr,
			"From: <" EB_SENDER ">\r\n"
			"To: <u%u@%s>\r\n"
			"Subject: etrnbench message %" PRIu64 "\r\n"
			"Message-ID: <%" PRIu64 ".%u@etrnbench.test>\r\n"
			"X-Etrnbench: seq=%" PRIu64 " sum=%016" PRIx64 "\r\n"
			"\r\n",
			(unsigned)(seq % 1000), eb_rcpt_domain(seq, 0), seq, seq,
			c->sess, seq, sum);
	if (n < 0 || (size_t)n >= sizeof hdr)
		eb_die("header overflow (bug)");
	if (eb_out(c, hdr, (size_t)n) < 0 || eb_out(c, body, blen) < 0 ||
	    eb_out(c, ".\r\n", 3) < 0) {
		eb_conn_close(c);
		return;
	}
	c->tx_open = 0;
	eb_exp_push(c, X_DOT, seq, (uint32_t)((size_t)n + blen), eb_now());
}

/* ---- sessions (send, etrn, idle) ----------------------------------------- */

static int eb_may_issue(struct eb_conn *c)
{
	struct eb_sess *s = &G.sess[c->sess];
	if (!G.issuing || eb_stop)
		return 0;
	if (G.per_session && s->started >= G.per_session)
		return 0;
	if (G.total && G.issued >= G.total)
		return 0;
	return 1;
}

static void eb_session_quit(struct eb_conn *c)
{
	eb_outs(c, "QUIT\r\n");
	eb_exp_push(c, X_QUIT, 0, 0, 0);
}

/* A send session between messages: start one, wait for a rate token, or
 * end (QUIT) when its share is done. */
static void eb_send_next(struct eb_conn *c)
{
	if (c->closing || c->waiting)
		return;
	if (!eb_may_issue(c)) {
		eb_session_quit(c);
		return;
	}
	if (G.per_conn && c->on_conn >= G.per_conn) {
		eb_session_quit(c);
		return;
	}
	if (G.rate > 0) {
		uint64_t due = G.pace0 + (uint64_t)((double)G.issued / G.rate * NS);
		if (eb_now() < due) {
			c->waiting = 1;
			G.rate_wait[(G.rw_head + G.rw_n++) % EB_CONNS_MAX] =
				(uint32_t)(c - G.conns);
			return;
		}
	}
	G.sess[c->sess].started++;
	eb_tx_start(c, G.issued++);
}

static void eb_etrn_next(struct eb_conn *c)
{
	char line[EB_DOMAIN_LEN + 16];
	if (c->closing)
		return;
	if (G.etrn_next >= G.ndomains || eb_stop) {
		eb_session_quit(c);
		return;
	}
	uint32_t d = G.etrn_next++;
	snprintf(line, sizeof line, "ETRN %s\r\n", G.domains[d]);
	eb_outs(c, line);
	c->etrn_t = eb_now();
	c->etrn_dom = d;
	if (G.t_first_etrn_sent == 0)
		G.t_first_etrn_sent = c->etrn_t;
	eb_exp_push(c, X_ETRN, d, 0, 0);
}

/* atrn: AUTH PLAIN (RFC 4954) with --user / --password, in the clear: the
 * ODMR listener must be marked trusted (odmr_listen_trusted). */
static void eb_atrn_auth(struct eb_conn *c)
{
	char raw[2 * EB_CRED_MAX + 2];
	char line[BASE64_ENCODED_LEN(sizeof raw) + 16];
	size_t ul = strlen(G.user), pl = strlen(G.password);
	raw[0] = '\0';
	memcpy(raw + 1, G.user, ul);
	raw[1 + ul] = '\0';
	memcpy(raw + 2 + ul, G.password, pl);
	memcpy(line, "AUTH PLAIN ", 11);
	int n = base64_encode(line + 11, sizeof line - 13, raw, ul + pl + 2);
	if (n < 0)
		eb_die("AUTH PLAIN: credentials too long");
	memcpy(line + 11 + n, "\r\n", 3);
	eb_outs(c, line);
	eb_exp_push(c, X_AUTH, 0, 0, 0);
}

/* atrn: "ATRN d1,d2,..." for every --domain. */
static void eb_atrn_send(struct eb_conn *c)
{
	static char line[EB_ATRN_LINE];
	size_t o = (size_t)snprintf(line, sizeof line, "ATRN ");
	for (uint32_t d = 0; d < G.ndomains; d++)
		o += (size_t)snprintf(line + o, sizeof line - o, "%s%s",
				d ? "," : "", G.domains[d]);
	snprintf(line + o, sizeof line - o, "\r\n");
	eb_outs(c, line);
	c->etrn_t = eb_now();
	G.t_first_etrn_sent = c->etrn_t;
	eb_exp_push(c, X_ATRN, 0, 0, 0);
}

/* atrn: "250 OK now reversing the connection": from now on this side is the
 * customer's server, served by the sink code exactly as etrn's sink serves
 * the drain's own connections. Nothing more of the client's input can be
 * buffered: the server waits for our 220. */
static void eb_atrn_reverse(struct eb_conn *c)
{
	char *p = realloc(c->rbuf, EB_RBUF_SINK);
	if (p == NULL)
		eb_die("out of memory");
	c->rbuf = p;
	c->rcap = EB_RBUF_SINK;
	free(c->q);
	c->q = NULL;
	c->qh = c->qn = c->qcap = 0;
	c->kind = K_SINK;
	G.atrn_conn = (uint32_t)(c - G.conns) + 1;
	G.s_conns++;
	eb_outs(c, "220 sink.etrnbench.test ESMTP etrnbench\r\n");
}

static void eb_lat_add(struct eb_lat *l, uint64_t v)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 65536;
		uint64_t *p = realloc(l->v, cap * sizeof *p);
		if (p == NULL)
			eb_die("out of memory");
		l->v = p;
		l->cap = cap;
	}
	l->v[l->n++] = v;
}

static void eb_err(unsigned code)
{
	if (code < 1000)
		G.err_code[code]++;
}

static void eb_tls_start(struct eb_conn *c, int server);

/* After EHLO with --starttls and no TLS yet: STARTTLS, or the end of a
 * session whose server does not offer it (counted, never sent in clear). */
static void eb_client_starttls(struct eb_conn *c)
{
	if (!c->offers_tls) {
		G.tls_unoffered++;
		if (c->kind == K_IDLE)
			G.idle_failed++;
		else
			G.sess_failed++;
		eb_conn_close(c);
		return;
	}
	eb_outs(c, "STARTTLS\r\n");
	eb_exp_push(c, X_STARTTLS, 0, 0, 0);
}

/* One whole reply: code, and the expectation it answers. Longer than 80
 * lines on purpose: one short case per expectation kind (the client's whole
 * SMTP dialogue, STARTTLS included) reads best as one switch. */
static void eb_client_reply(struct eb_conn *c, unsigned code)
{
	if (c->qn == 0) {
		/* A reply nobody asked for (421 on idle, for example). */
		eb_err(code);
		eb_conn_close(c);
		return;
	}
	struct eb_exp_ent e = c->q[c->qh];
	c->qh = (c->qh + 1) % c->qcap;
	c->qn--;
	uint64_t now = eb_now();
	int ok2 = code / 100 == 2;
	switch (e.kind) {
	case X_BANNER:
		if (G.connecting)
			G.connecting--;
		if (code != 220) {
			eb_err(code);
			eb_conn_close(c);
			return;
		}
		eb_outs(c, "EHLO etrnbench.test\r\n");
		eb_exp_push(c, X_EHLO, 0, 0, 0);
		break;
	case X_EHLO:
		if (!ok2) {
			eb_err(code);
			eb_conn_close(c);
			return;
		}
		if (G.starttls && c->ssl == NULL) {
			eb_client_starttls(c);
			break;
		}
		if (G.t_first_conn == 0)
			G.t_first_conn = G.pace0 = now;
		if (c->kind == K_SEND)
			eb_send_next(c);
		else if (c->kind == K_ETRN)
			eb_etrn_next(c);
		else if (c->kind == K_ATRN)
			eb_atrn_auth(c);
		else {
			c->ready = 1;
			G.idle_ready++;
		}
		break;
	case X_MAIL:
		if (!ok2) {
			eb_err(code);
			c->tx_bad = 1;
		}
		if (!(c->pipelining && G.pipelining)) {
			if (c->tx_bad) {
				G.failed++;
				c->tx_open = 0;
				eb_outs(c, "RSET\r\n");
				eb_exp_push(c, X_RSET, 0, 0, 0);
			} else {
				eb_tx_next_cmd(c);
			}
		}
		break;
	case X_RCPT:
		if (ok2)
			G.rcpt_ok++;
		else
			eb_err(code);
		if (!(c->pipelining && G.pipelining) && !c->tx_bad)
			eb_tx_next_cmd(c);
		break;
	case X_DATA:
		if (code != 354) {
			eb_err(code);
			G.failed++;
			c->tx_open = 0;
			eb_outs(c, "RSET\r\n");
			eb_exp_push(c, X_RSET, 0, 0, 0);
			break;
		}
		eb_tx_body(c, e.seq, e.size);
		/* RFC 2920 3.1: the next MAIL may follow the final dot. */
		if (c->pipelining && G.pipelining)
			eb_send_next(c);
		break;
	case X_DOT:
		eb_lat_add(&G.lat, now - e.t);
		G.sess[c->sess].done++;
		G.t_last_done = now;
		if (ok2) {
			G.ok++;
			G.bytes += e.size;
		} else {
			eb_err(code);
			G.failed++;
		}
		if (!(c->pipelining && G.pipelining))
			eb_send_next(c);
		else if (c->qn == 0 && !c->tx_open && !c->waiting)
			eb_send_next(c);  /* the next one was not pipelined */
		break;
	case X_RSET:
		if (c->qn == 0)
			eb_send_next(c);
		break;
	case X_QUIT:
		if (c->ssl != NULL) {
			/* close_notify after the QUIT, then close. */
			c->tls_bye = 1;
			c->quit_after = 1;
			break;
		}
		eb_conn_close(c);
		return;
	case X_STARTTLS:
		if (code != 220) {
			eb_err(code);
			eb_conn_close(c);
			return;
		}
		eb_exp_push(c, X_TLS, 0, 0, 0);
		eb_tls_start(c, 0);
		break;
	case X_TLS:
		/* A reply in the clear during the handshake cannot arrive:
		 * eb_client_data() drops what follows the 220. */
		G.err_proto++;
		eb_conn_close(c);
		return;
	case X_ETRN:
		eb_lat_add(&G.etrn_lat, now - c->etrn_t);
		if (code < 1000)
			G.etrn_code[code]++;
		G.etrn_reply_t[c->etrn_dom] = now;
		if (G.t_first_etrn_reply == 0)
			G.t_first_etrn_reply = now;
		G.t_last_etrn_reply = now;
		G.etrn_done++;
		if (G.etrn_out) /* for the sink's progress line */
			__atomic_store_n(&G.etrn_out->done, G.etrn_done, __ATOMIC_RELAXED);
		eb_etrn_next(c);
		break;
	case X_AUTH:
		if (code != 235) {
			eb_err(code);
			eb_conn_close(c);
			return;
		}
		eb_atrn_send(c);
		break;
	case X_ATRN:
		eb_lat_add(&G.etrn_lat, now - c->etrn_t);
		if (code < 1000)
			G.etrn_code[code]++;
		for (uint32_t d = 0; d < G.ndomains; d++)
			G.etrn_reply_t[d] = now;
		G.t_first_etrn_reply = G.t_last_etrn_reply = now;
		G.etrn_done = G.ndomains;
		if (code != 250) {
			eb_err(code);
			G.atrn_over = 1;
			eb_outs(c, "QUIT\r\n");
			eb_exp_push(c, X_QUIT, 0, 0, 0);
			break;
		}
		eb_atrn_reverse(c);
		break;
	}
	eb_flush(c);
}

/* Client input: replies, each line "ddd-text" or "ddd text" (RFC 5321
 * 4.2), possibly several per read (PIPELINING). */
static void eb_client_data(struct eb_conn *c)
{
	size_t pos = 0;
	while (!c->closing) {
		char *s = c->rbuf + pos;
		char *nl = memchr(s, '\n', c->rlen - pos);
		if (nl == NULL)
			break;
		size_t n = (size_t)(nl - s);
		pos += n + 1;
		if (n > 0 && s[n - 1] == '\r')
			n--;
		if (n < 3 || !isdigit((unsigned char)s[0]) ||
		    !isdigit((unsigned char)s[1]) || !isdigit((unsigned char)s[2]) ||
		    (n > 3 && s[3] != ' ' && s[3] != '-')) {
			G.err_proto++;
			eb_conn_close(c);
			break;
		}
		if (c->qn > 0 && c->q[c->qh].kind == X_EHLO && n >= 14 &&
		    ascii_eq_n(s + 4, "PIPELINING", 10) &&
		    (n == 14 || s[14] == ' '))
			c->pipelining = 1;
		if (c->qn > 0 && c->q[c->qh].kind == X_EHLO && n >= 12 &&
		    ascii_eq_n(s + 4, "STARTTLS", 8) &&
		    (n == 12 || s[12] == ' '))
			c->offers_tls = 1;
		if (n > 3 && s[3] == '-')
			continue;
		eb_client_reply(c, (unsigned)((s[0] - '0') * 100 +
				(s[1] - '0') * 10 + (s[2] - '0')));
		if (c->tls_fresh) {
			/* RFC 3207 4.2: nothing the server sent in the clear
			 * after its 220 counts; the rest is TLS. */
			c->tls_fresh = 0;
			pos = c->rlen;
			break;
		}
		if (c->kind == K_SINK)
			break;       /* ATRN turned the connection around */
	}
	if (pos > 0 && pos < c->rlen)
		memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
	c->rlen = pos <= c->rlen ? c->rlen - pos : 0;
}

static int eb_socket(int family)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static void eb_connect_session(uint32_t sess, enum eb_kind kind)
{
	if (kind == K_SEND && (!G.issuing || eb_stop)) {
		/* The run is over before this session got a connection. */
		G.sess_unserved++;
		return;
	}
	if (G.connecting >= EB_CONNECTING_MAX || G.nfree == 0) {
		G.conn_wait[(G.cw_head + G.cw_n++) % EB_CONNS_MAX] = sess;
		return;
	}
	int fd = eb_socket(G.srv.ss_family);
	if (fd < 0) {
		G.err_conn++;
		G.sess_failed++;
		return;
	}
	struct eb_conn *c = eb_conn_new(fd, kind);
	c->sess = sess;
	G.sess[sess].active = 1;
	G.connecting++;
	struct io_uring_sqe *sqe = eb_sqe();
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&G.srv, G.srvlen);
	io_uring_sqe_set_data64(sqe, eb_ud(c, OP_CONNECT));
	c->pending++;
	eb_exp_push(c, X_BANNER, 0, 0, 0);
}

static enum eb_kind eb_client_kind(void)
{
	if (strcmp(G.mode, "send") == 0)
		return K_SEND;
	if (strcmp(G.mode, "etrn") == 0)
		return K_ETRN;
	if (strcmp(G.mode, "atrn") == 0)
		return K_ATRN;
	return K_IDLE;
}

/* Start sessions waiting for a connect slot. */
static void eb_pump_connects(void)
{
	while (G.cw_n > 0 && G.connecting < EB_CONNECTING_MAX && G.nfree > 0) {
		uint32_t w = G.conn_wait[G.cw_head];
		G.cw_head = (G.cw_head + 1) % EB_CONNS_MAX;
		G.cw_n--;
		eb_connect_session(w, eb_client_kind());
	}
}

static void eb_session_closed(enum eb_kind k, uint32_t sess, int banner,
		int owed, uint32_t on_conn)
{
	struct eb_sess *s = &G.sess[sess];
	s->active = 0;
	if (banner && G.connecting)
		G.connecting--;
	/* A session closed with replies owed (error, 421, timeout) ends there;
	 * one that finished its connection's share reconnects for more. */
	if (owed) {
		if (k == K_IDLE)
			G.idle_failed++;
		else
			G.sess_failed++;
	} else if (k == K_SEND && G.per_conn && on_conn >= G.per_conn &&
		   G.issuing && !eb_stop &&
		   (!G.per_session || s->started < G.per_session) &&
		   (!G.total || G.issued < G.total)) {
		eb_connect_session(sess, K_SEND);
	}
	eb_pump_connects();
}

/* ---- sink ------------------------------------------------------------- */

/* Sink-side domain index (core/htab): domain name -> G.domains index. */
struct eb_dom_key {
	const char *d;
	size_t n;
};

static uint32_t eb_dom_hash(const char *d, size_t n)
{
	return hash_fin32(hash_fnv32_lower(HASH_FNV32_INIT, d, n));
}

static int eb_dom_eq(const void *ctx, uint32_t el, const void *key)
{
	const struct eb_dom_key *k = key;
	const char *e = G.domains[el];

	(void)ctx;
	return ascii_eq_lit(k->d, k->n, e);
}

/* The domain's index + 1, 0 when it is not one of ours. */
static uint32_t eb_dom_find(const char *d, size_t n)
{
	const struct eb_dom_key k = { d, n };
	uint32_t v;

	if (n == 0)
		return 0;
	v = htab_find(&G.dom_idx, eb_dom_hash(d, n), eb_dom_eq, NULL, &k);
	return v == HTAB_NONE ? 0 : v + 1;
}

static void eb_dom_index(void)
{
	if (htab_reserve(&G.dom_idx, G.ndomains) < 0)
		eb_die("out of memory (domain index)");
	for (uint32_t k = 0; k < G.ndomains; k++)
		if (htab_insert(&G.dom_idx, eb_dom_hash(G.domains[k], strlen(G.domains[k])), k) < 0)
			eb_die("out of memory (domain index)");
}

/* A header line of a message in DATA (bounded, without CRLF). */
static void eb_sink_header(struct eb_conn *c)
{
	static const char key[] = "X-Etrnbench:";
	if (c->hlen > sizeof key && ascii_eq_n(c->hline, key, sizeof key - 1)) {
		char *s = strstr(c->hline, "sum=");
		if (s != NULL) {
			char *e;
			c->want_sum = strtoull(s + 4, &e, 16);
			c->have_sum = e == s + 4 + 16;
		}
		s = strstr(c->hline, "seq=");
		if (s != NULL) {
			char *e;
			c->seq = strtoull(s + 4, &e, 10);
			c->have_seq = e > s + 4 && c->seq < EB_SEQ_MAX;
		}
	}
}

/* Count c's seq as seen: distinct or a repeat. */
static void eb_sink_seq(const struct eb_conn *c)
{
	if (!c->have_seq)
		return;
	if (c->seq >= G.s_seen_bits) {
		uint64_t bits = G.s_seen_bits ? G.s_seen_bits : EB_SEQ_BITS0;
		while (bits <= c->seq)
			bits *= 2;
		uint8_t *p = realloc(G.s_seen, (size_t)(bits / 8));
		if (p == NULL)
			eb_die("out of memory (seq bitmap)");
		memset(p + G.s_seen_bits / 8, 0, (size_t)((bits - G.s_seen_bits) / 8));
		G.s_seen = p;
		G.s_seen_bits = bits;
	}
	uint8_t bit = (uint8_t)(1u << (c->seq % 8));
	if (G.s_seen[c->seq / 8] & bit) {
		G.s_dups++;
	} else {
		G.s_seen[c->seq / 8] |= bit;
		G.s_distinct++;
	}
}

static void eb_sink_msg_done(struct eb_conn *c)
{
	uint64_t now = eb_now();
	eb_sink_seq(c);
	G.s_msgs++;
	G.s_bytes += c->msg_bytes;
	if (G.s_first == 0)
		G.s_first = now;
	G.s_last = now;
	if (c->ssl != NULL)
		G.s_tls_msgs++;
	if (G.verify) {
		if (!c->have_sum)
			G.s_no_sum++;
		else if (c->want_sum == c->sum)
			G.s_ok_sum++;
		else
			G.s_bad_sum++;
	}
	if (c->rcpt_dom && G.dom_first != NULL) {
		if (G.dom_first[c->rcpt_dom - 1] == 0)
			G.dom_first[c->rcpt_dom - 1] = now;
		G.dom_last[c->rcpt_dom - 1] = now;
	}
	eb_outs(c, "250 2.0.0 Ok: queued by etrnbench\r\n");
}

/* DATA content: find the "." line (RFC 5321 4.1.1.4), undo dot-stuffing
 * (4.5.2) for the checksum, collect header lines. Returns bytes used. */
static size_t eb_sink_data(struct eb_conn *c, const char *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		char ch = p[i];
		switch (c->ds) {
		case DS_BOL:
			if (ch == '.') {
				c->ds = DS_DOT;
				i++;
				continue;
			}
			if (c->hdr_phase && (ch == '\r' || ch == '\n')) {
				/* The empty line: the body starts after it. */
				if (ch == '\n')
					c->hdr_phase = 0;
				i++;
				c->msg_bytes++;
				continue;
			}
			c->ds = DS_MID;
			c->hlen = 0;
			continue;
		case DS_DOT:
			if (ch == '\r') {
				c->ds = DS_DOTCR;
				i++;
				continue;
			}
			/* A stuffed dot: drop it, the line goes on. */
			c->ds = DS_MID;
			c->hlen = 0;
			continue;
		case DS_DOTCR:
			if (ch == '\n') {
				i++;
				c->in_data = 0;
				c->ds = DS_BOL;
				eb_sink_msg_done(c);
				return i;
			}
			/* ".\r" then something else: "\r" was data. */
			if (!c->hdr_phase)
				c->sum = hash_fnv64(c->sum, "\r", 1);
			c->msg_bytes++;
			c->ds = DS_MID;
			continue;
		case DS_MID: {
			const char *nl = memchr(p + i, '\n', n - i);
			size_t end = nl ? (size_t)(nl - p) + 1 : n;
			size_t k = end - i;
			if (c->hdr_phase) {
				size_t room = EB_SINK_HDR_MAX - c->hlen;
				size_t take = k < room ? k : room;
				memcpy(c->hline + c->hlen, p + i, take);
				c->hlen += take;
				if (nl != NULL) {
					while (c->hlen > 0 && (c->hline[c->hlen - 1] == '\n' ||
					       c->hline[c->hlen - 1] == '\r'))
						c->hlen--;
					c->hline[c->hlen] = '\0';
					eb_sink_header(c);
				}
			} else if (G.verify) {
				c->sum = hash_fnv64(c->sum, p + i, k);
			}
			c->msg_bytes += k;
			i = end;
			if (nl != NULL)
				c->ds = DS_BOL;
			continue;
		}
		}
	}
	return i;
}

static void eb_sink_cmd(struct eb_conn *c, char *s, size_t n)
{
	char verb[5] = { 0 };
	for (size_t i = 0; i < 4 && i < n; i++)
		verb[i] = (char)ascii_lower((unsigned char)s[i]);
	if (strcmp(verb, "ehlo") == 0) {
		eb_outs(c, "250-sink.etrnbench.test\r\n250-PIPELINING\r\n"
				"250-8BITMIME\r\n250-SMTPUTF8\r\n");
		if (G.tls_srv != NULL && c->ssl == NULL)
			eb_outs(c, "250-STARTTLS\r\n");
		eb_outs(c, "250-ENHANCEDSTATUSCODES\r\n250 SIZE 104857600\r\n");
	} else if (n == 8 && ascii_eq_n(s, "starttls", 8) && G.tls_srv != NULL) {
		if (c->ssl != NULL) {
			eb_outs(c, "503 5.5.1 Error: TLS already active\r\n");
			return;
		}
		/* The 220 goes in the clear; the session starts over (RFC
		 * 3207 4.2). */
		eb_outs(c, "220 2.0.0 Ready to start TLS\r\n");
		c->rcpts = 0;
		c->rcpt_dom = 0;
		eb_tls_start(c, 1);
	} else if (strcmp(verb, "helo") == 0) {
		eb_outs(c, "250 sink.etrnbench.test\r\n");
	} else if (strcmp(verb, "mail") == 0) {
		c->rcpts = 0;
		c->rcpt_dom = 0;
		eb_outs(c, "250 2.1.0 Ok\r\n");
	} else if (strcmp(verb, "rcpt") == 0) {
		c->rcpts++;
		G.s_rcpts++;
		char *at = memchr(s, '@', n);
		if (at != NULL) {
			char *e = memchr(at, '>', n - (size_t)(at - s));
			if (e != NULL) {
				uint32_t d = eb_dom_find(at + 1, (size_t)(e - at - 1));
				if (d)
					c->rcpt_dom = d;
			}
		}
		eb_outs(c, "250 2.1.5 Ok\r\n");
	} else if (strcmp(verb, "data") == 0) {
		if (c->rcpts == 0) {
			eb_outs(c, "554 5.5.1 Error: no valid recipients\r\n");
			return;
		}
		c->in_data = 1;
		c->hdr_phase = 1;
		c->ds = DS_BOL;
		c->sum = HASH_FNV64_INIT;
		c->have_sum = 0;
		c->have_seq = 0;
		c->hlen = 0;
		c->msg_bytes = 0;
		eb_outs(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
	} else if (strcmp(verb, "rset") == 0 || strcmp(verb, "noop") == 0) {
		eb_outs(c, "250 2.0.0 Ok\r\n");
	} else if (strcmp(verb, "quit") == 0) {
		eb_outs(c, "221 2.0.0 Bye\r\n");
		c->quit_after = 1; /* close once the reply is sent */
		c->tls_bye = c->ssl != NULL;
	} else {
		G.s_proto++;
		eb_outs(c, "502 5.5.2 Error: command not recognized\r\n");
	}
}

static void eb_sink_input(struct eb_conn *c)
{
	size_t pos = 0;
	while (pos < c->rlen && !c->closing && !c->quit_after) {
		if (c->in_data) {
			pos += eb_sink_data(c, c->rbuf + pos, c->rlen - pos);
			continue;
		}
		char *s = c->rbuf + pos;
		char *nl = memchr(s, '\n', c->rlen - pos);
		if (nl == NULL) {
			if (c->rlen - pos > EB_SINK_CMD_MAX) {
				G.s_proto++;
				eb_outs(c, "500 5.5.2 Error: line too long\r\n");
				c->quit_after = 1;
			}
			break;
		}
		size_t n = (size_t)(nl - s);
		pos += n + 1;
		if (n > 0 && s[n - 1] == '\r')
			n--;
		eb_sink_cmd(c, s, n);
		if (c->tls_fresh) {
			/* RFC 3207 4.2 (and CVE-2011-0411): what the client
			 * pipelined after STARTTLS is dropped, not executed. */
			c->tls_fresh = 0;
			pos = c->rlen;
			break;
		}
	}
	/* In DATA everything is consumed; in commands a partial line stays. */
	if (pos > 0 && pos < c->rlen)
		memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
	c->rlen = pos <= c->rlen ? c->rlen - pos : 0;
	eb_flush(c);
}

static void eb_listen(void)
{
	int fd = eb_socket(G.sinkaddr.ss_family);
	int one = 1;
	if (fd < 0)
		eb_die("socket: %s", strerror(-fd));
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&G.sinkaddr, G.sinklen) < 0)
		eb_die("sink bind: %s", strerror(errno));
	if (listen(fd, 4096) < 0)
		eb_die("listen: %s", strerror(errno));
	G.listen_fd = fd;
	struct eb_conn *c = eb_conn_new(fd, K_LISTEN);
	struct io_uring_sqe *sqe = eb_sqe();
	io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, eb_ud(c, OP_ACCEPT));
	c->pending++;
}

/* ---- TLS: core/tls.h's per-connection API --------------------------- */

/* The first TLS failure of the run on stderr (the counters say how many). */
static void eb_tls_failed(struct eb_conn *c, const char *what)
{
	if (c->kind == K_SINK)
		G.s_tls_failed++;
	else
		G.tls_failed++;
	if (!G.tls_err_shown) {
		G.tls_err_shown = 1;
		fprintf(stderr, "etrnbench: TLS %s (%s side; first failure, "
			"others only counted): %s\n", what,
			c->kind == K_SINK ? "sink" : "client",
			c->ssl != NULL ? tls_conn_error(c->ssl) : "out of memory");
	}
}

/* etrnd's own contexts: TLS 1.2 and 1.3, its default ciphers. The client
 * verifies nothing that matters here (no host given: a loopback load
 * against a test certificate) and resumes no session, so every client
 * handshake is a full one; the sink serves --tls-cert/--tls-key. */
static struct tls_ctx *eb_tls_ctx(int server)
{
	const struct tls_ctx_conf conf = {
		.cert_file = server ? G.tls_cert : NULL,
		.key_file = server ? G.tls_key : NULL,
		.ca_file = server ? NULL : G.tls_ca,
	};
	char err[EB_TLS_ERR];
	struct tls_ctx *ctx = tls_ctx_new(server ? TLS_SERVER : TLS_CLIENT,
			&conf, err, sizeof err);
	if (ctx == NULL)
		eb_die("%s", err);
	return ctx;
}

/* TLS on c from now on: output appended later is encrypted, the next
 * receive is ciphertext, and the clear input not yet parsed is dropped
 * (tls_fresh, seen by the parser that called us). A client's ClientHello
 * goes with the next flush. */
static void eb_tls_start(struct eb_conn *c, int server)
{
	c->ssl = tls_conn_new(server ? G.tls_srv : G.tls_cli, NULL);
	if (c->ssl == NULL)
		eb_die("out of memory (TLS)");
	c->cbuf = eb_xalloc(EB_TLS_RECV);
	c->tls_hs = 1;
	c->tls_fresh = 1;
	c->tls_t = eb_now();
	c->pipelining = 0;             /* RFC 3207 4.2: forget the old EHLO */
	c->offers_tls = 0;
}

/* The handshake is done (tls_conn_sink.up): note what was agreed; a client
 * says EHLO again. */
static void eb_tls_up(void *arg)
{
	struct eb_conn *c = arg;
	const struct tls_info *ti = tls_conn_info(c->ssl);
	c->tls_hs = 0;
	if (c->kind == K_SINK) {
		G.s_tls_conns++;
		snprintf(G.s_tls_version, sizeof G.s_tls_version, "%s", ti->version);
		snprintf(G.s_tls_cipher, sizeof G.s_tls_cipher, "%s", ti->cipher);
		return;
	}
	G.tls_ok++;
	eb_lat_add(&G.tls_lat, eb_now() - c->tls_t);
	snprintf(G.tls_version, sizeof G.tls_version, "%s", ti->version);
	snprintf(G.tls_cipher, sizeof G.tls_cipher, "%s", ti->cipher);
	/* X_TLS is the only expectation: nothing is pipelined with STARTTLS. */
	c->qh = (c->qh + 1) % c->qcap;
	c->qn--;
	eb_outs(c, "EHLO etrnbench.test\r\n");
	eb_exp_push(c, X_EHLO, 0, 0, 0);
}

/* Decrypted input (tls_conn_sink.plain): into rbuf for the parsers, as
 * much as fits at a time; a line that fills rbuf is the parsers' bound, as
 * in the clear. Nonzero stops the decryption (the connection is ending). */
static int eb_tls_plain(void *arg, const char *p, size_t n)
{
	struct eb_conn *c = arg;
	while (n > 0) {
		if (c->closing || c->quit_after)
			return 1;
		size_t room = c->rcap - c->rlen, k = n < room ? n : room;
		if (k == 0) {
			if (c->kind == K_SINK)
				G.s_proto++;
			else
				G.err_proto++;
			eb_conn_close(c);
			return 1;
		}
		memcpy(c->rbuf + c->rlen, p, k);
		c->rlen += k;
		p += k;
		n -= k;
		if (c->kind == K_SINK)
			eb_sink_input(c);
		else
			eb_client_data(c);
	}
	return c->closing;
}

/* Encrypts the plaintext waiting in pt (once the handshake is done), then
 * moves the ciphertext core/tls wrote (handshake, records, alerts,
 * close_notify) behind what the filling output buffer holds. 0 or -1. */
static int eb_tls_pump(struct eb_conn *c)
{
	if (!c->tls_hs && c->pt.len > 0) {
		if (tls_conn_write(c->ssl, c->pt.p, c->pt.len) < 0) {
			eb_tls_failed(c, "write");
			return -1;
		}
		c->pt.len = 0;
	}
	if (c->tls_bye && !c->tls_hs) {
		c->tls_bye = 0;
		(void)tls_conn_shutdown(c->ssl);   /* queues close_notify */
	}
	if (tls_conn_pending(c->ssl) == 0)
		return 0;
	/* The filling buffer (off is 0) seen as a struct buf: tls_conn_take
	 * appends to it, or swaps memory with it when it is empty. */
	struct eb_obuf *b = &c->out[c->ob];
	struct buf v = { .data = b->p, .len = b->len, .cap = b->cap,
		.max = EB_OUT_MAX };
	int r = tls_conn_take(c->ssl, &v);
	b->p = v.data;
	b->len = v.len;
	b->cap = v.cap;
	return r < 0 ? -1 : 0;
}

/* A client whose server went away with replies owed: a connection error. */
static void eb_peer_gone(struct eb_conn *c)
{
	if (c->kind != K_SINK && !c->closing && c->qn > 0 &&
	    c->q[c->qh].kind != X_QUIT)
		G.err_conn++;
	eb_conn_close(c);
}

/* n bytes of ciphertext in cbuf: core/tls runs the handshake and hands the
 * plaintext to eb_tls_plain(); the output is flushed once it is done. */
static void eb_tls_input(struct eb_conn *c, size_t n)
{
	static const struct tls_conn_sink sink = { eb_tls_up, eb_tls_plain };
	int hs = c->tls_hs;
	c->tls_in = 1;
	int r = tls_conn_input(c->ssl, c->cbuf, n, &sink, c);
	c->tls_in = 0;
	if (r < 0) {
		eb_tls_failed(c, hs ? "handshake" : "read");
		eb_conn_close(c);
		return;
	}
	if (r == TLS_CONN_EOF) {       /* close_notify */
		eb_peer_gone(c);
		return;
	}
	eb_flush(c);
}

/* ---- completions ------------------------------------------------------ */

static void eb_cqe(struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	if (ud == LIBURING_UDATA_TIMEOUT)
		return;
	uint32_t idx = (uint32_t)(ud >> 32);
	uint32_t gen = (uint32_t)((ud >> 8) & 0xffffff);
	enum eb_op op = (enum eb_op)(ud & 0xff);
	if (idx >= EB_CONNS_MAX)
		return;
	struct eb_conn *c = &G.conns[idx];
	if ((c->gen & 0xffffff) != gen || c->kind == K_FREE)
		return; /* stale */
	int res = cqe->res;
	if (!(op == OP_ACCEPT && (cqe->flags & IORING_CQE_F_MORE)))
		c->pending--;
	c->last_io = eb_now();
	switch (op) {
	case OP_ACCEPT:
		if (res >= 0) {
			int one = 1;
			(void)setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
			struct eb_conn *s = eb_conn_new(res, K_SINK);
			if (s == NULL) {
				close(res);
			} else {
				G.s_conns++;
				eb_outs(s, "220 sink.etrnbench.test ESMTP etrnbench\r\n");
				eb_flush(s);
				eb_recv(s);
			}
		}
		if (!(cqe->flags & IORING_CQE_F_MORE) && !c->closing) {
			struct io_uring_sqe *sqe = eb_sqe();
			io_uring_prep_multishot_accept(sqe, c->fd, NULL, NULL, SOCK_CLOEXEC);
			io_uring_sqe_set_data64(sqe, eb_ud(c, OP_ACCEPT));
			c->pending++;
		}
		break;
	case OP_CONNECT:
		if (res < 0) {
			G.err_conn++;
			eb_conn_close(c);
			break;
		}
		if (!c->closing)
			eb_recv(c);
		break;
	case OP_RECV:
		if (res <= 0 || c->closing) {
			eb_peer_gone(c);
			break;
		}
		if (c->recv_tls) {
			eb_tls_input(c, (size_t)res);
		} else {
			c->rlen += (size_t)res;
			if (c->kind == K_SINK)
				eb_sink_input(c);
			else
				eb_client_data(c);
		}
		if (c->quit_after) {
			if (!c->send_busy)
				eb_conn_close(c);
		} else if (!c->closing) {
			eb_recv(c);
		}
		break;
	case OP_SEND: {
		struct eb_obuf *b = &c->out[c->ob ^ 1];
		c->send_busy = 0;
		if (res < 0) {
			eb_conn_close(c);
			break;
		}
		b->off += (size_t)res;
		if (b->off < b->len && !c->closing) {
			/* Short send: the rest goes before anything newer
			 * (which keeps filling the other buffer). */
			eb_send_buf(c, b);
			break;
		}
		b->off = b->len = 0;
		eb_flush(c);
		if (c->quit_after && !c->send_busy)
			eb_conn_close(c);
		break;
	}
	}
	if (c->closing && c->pending == 0 && c->kind != K_FREE)
		eb_conn_release(c);
}

/* ---- reporting -------------------------------------------------------- */

static int eb_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* qsort wants a non-NULL base even for nothing to sort. */
static void eb_lat_sort(struct eb_lat *l)
{
	if (l->n > 0)
		qsort(l->v, l->n, sizeof *l->v, eb_cmp_u64);
}

static double eb_pct(const struct eb_lat *l, double p)
{
	if (l->n == 0)
		return 0;
	size_t i = (size_t)(p / 100.0 * (double)(l->n - 1) + 0.5);
	if (i >= l->n)
		i = l->n - 1;
	return (double)l->v[i] / 1e6;
}

static void eb_errors_json(char *buf, size_t len)
{
	size_t o = 0;
	int first = 1;
	o += (size_t)snprintf(buf + o, len - o, "{");
	for (unsigned k = 0; k < 1000 && o < len; k++) {
		if (G.err_code[k] == 0)
			continue;
		o += (size_t)snprintf(buf + o, len - o, "%s\"%u\":%" PRIu64,
				first ? "" : ",", k, G.err_code[k]);
		first = 0;
	}
	if (o < len)
		o += (size_t)snprintf(buf + o, len - o,
				"%s\"connect\":%" PRIu64 ",\"protocol\":%" PRIu64
				",\"timeout\":%" PRIu64 "}", first ? "" : ",",
				G.err_conn, G.err_proto, G.err_timeout);
}

static double eb_cpu_self(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		(double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ',"tls":{...}' for a client run with --starttls, '' otherwise. */
static void eb_tls_json(char *buf, size_t len)
{
	buf[0] = '\0';
	if (!G.starttls)
		return;
	eb_lat_sort(&G.tls_lat);
	snprintf(buf, len, ",\"tls\":{\"handshakes\":%" PRIu64 ",\"failed\":%"
		PRIu64 ",\"not_offered\":%" PRIu64 ",\"hs_ms\":{\"p50\":%.3f,"
		"\"p99\":%.3f,\"max\":%.3f},\"version\":\"%s\",\"cipher\":\"%s\"}",
		G.tls_ok, G.tls_failed, G.tls_unoffered, eb_pct(&G.tls_lat, 50),
		eb_pct(&G.tls_lat, 99), eb_pct(&G.tls_lat, 100), G.tls_version,
		G.tls_cipher);
}

static void eb_tls_text(void)
{
	if (!G.starttls)
		return;
	printf("tls: %" PRIu64 " handshakes (%s, %s), %" PRIu64 " failed, %"
		PRIu64 " servers without STARTTLS; handshake p50 %.3f ms, p99 "
		"%.3f ms\n", G.tls_ok, G.tls_version, G.tls_cipher, G.tls_failed,
		G.tls_unoffered, eb_pct(&G.tls_lat, 50), eb_pct(&G.tls_lat, 99));
}

static void eb_report_send(void)
{
	uint64_t t1 = G.t_last_done ? G.t_last_done : eb_now();
	uint64_t tstart = G.t0;
	double el = (double)(t1 - tstart) / NS;
	if (el <= 0)
		el = 1e-9;
	eb_lat_sort(&G.lat);
	double rate = (double)G.ok / el, mbs = (double)G.bytes / el / 1e6;
	char errs[8192], tls[512];
	eb_errors_json(errs, sizeof errs);
	eb_tls_json(tls, sizeof tls);
	if (G.json) {
		printf("{\"mode\":\"send\",\"label\":\"%s\",\"server\":\"%s\","
			"\"sessions\":%u,\"pipelining\":%s,\"rcpts\":%u,"
			"\"domains\":%u,\"messages_ok\":%" PRIu64
			",\"messages_failed\":%" PRIu64 ",\"bytes\":%" PRIu64
			",\"elapsed_s\":%.3f,\"msgs_per_s\":%.1f,\"mb_per_s\":%.2f,"
			"\"lat_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
			"\"max\":%.3f},\"errors\":%s,\"sessions_failed\":%" PRIu64
			",\"sessions_unserved\":%" PRIu64 ",\"target_rate\":%.1f,\"client_cpu_s\":%.2f,"
			"\"t0_mono_s\":%.6f%s}\n",
			G.label ? G.label : "", G.srvname, G.sessions,
			G.pipelining ? "true" : "false", G.rcpts, G.ndomains,
			G.ok, G.failed, G.bytes, el, rate, mbs,
			eb_pct(&G.lat, 50), eb_pct(&G.lat, 90), eb_pct(&G.lat, 99),
			eb_pct(&G.lat, 100), errs, G.sess_failed, G.sess_unserved, G.rate,
			eb_cpu_self(), (double)G.t0 / NS, tls);
	} else {
		printf("send: %" PRIu64 " messages ok, %" PRIu64 " failed in %.2f s: "
			"%.0f msgs/s, %.2f MB/s\n", G.ok, G.failed, el, rate, mbs);
		printf("latency end-of-DATA -> reply: p50 %.3f ms, p90 %.3f ms, "
			"p99 %.3f ms, max %.3f ms\n", eb_pct(&G.lat, 50),
			eb_pct(&G.lat, 90), eb_pct(&G.lat, 99), eb_pct(&G.lat, 100));
		printf("errors: %s; sessions failed %" PRIu64 ", never served "
			"(still waiting for a greeting at the end) %" PRIu64 "\n",
			errs, G.sess_failed, G.sess_unserved);
		eb_tls_text();
	}
}

static void eb_report_sink(const char *mode_extra)
{
	char tls[512] = "";
	if (G.tls_srv != NULL)
		snprintf(tls, sizeof tls, ",\"tls_sink\":{\"connections\":%" PRIu64
			",\"messages\":%" PRIu64 ",\"failed\":%" PRIu64
			",\"version\":\"%s\",\"cipher\":\"%s\"}", G.s_tls_conns,
			G.s_tls_msgs, G.s_tls_failed, G.s_tls_version, G.s_tls_cipher);
	double first = G.s_first ? (double)(G.s_first - G.t0) / NS : 0;
	double last = G.s_last ? (double)(G.s_last - G.t0) / NS : 0;
	double span = last - first;
	double rate = span > 0 && G.s_msgs > 1 ? (double)(G.s_msgs - 1) / span : 0;
	if (G.json) {
		printf("{\"mode\":\"sink\",\"messages\":%" PRIu64 ",\"rcpts\":%" PRIu64
			",\"bytes\":%" PRIu64 ",\"connections\":%" PRIu64
			",\"first_s\":%.6f,\"last_s\":%.6f,\"msgs_per_s\":%.1f,"
			"\"verified\":%" PRIu64 ",\"bad_sum\":%" PRIu64
			",\"no_sum\":%" PRIu64 ",\"protocol_errors\":%" PRIu64
			",\"distinct\":%" PRIu64 ",\"dups\":%" PRIu64
			",\"t0_mono_s\":%.6f%s%s}\n",
			G.s_msgs, G.s_rcpts, G.s_bytes, G.s_conns, first, last, rate,
			G.s_ok_sum, G.s_bad_sum, G.s_no_sum, G.s_proto, G.s_distinct,
			G.s_dups, (double)G.t0 / NS, tls,
			mode_extra ? mode_extra : "");
	} else {
		printf("sink: %" PRIu64 " messages (%" PRIu64 " recipients, %" PRIu64
			" bytes) over %" PRIu64 " connections; first at %.3f s, last "
			"at %.3f s: %.0f msgs/s\n", G.s_msgs, G.s_rcpts, G.s_bytes,
			G.s_conns, first, last, rate);
		if (G.verify)
			printf("checksums: %" PRIu64 " ok, %" PRIu64 " bad, %" PRIu64
				" missing\n", G.s_ok_sum, G.s_bad_sum, G.s_no_sum);
		if (G.tls_srv != NULL)
			printf("sink tls: %" PRIu64 " connections (%s, %s), %" PRIu64
				" messages over TLS, %" PRIu64 " failed handshakes\n",
				G.s_tls_conns, G.s_tls_version, G.s_tls_cipher,
				G.s_tls_msgs, G.s_tls_failed);
	}
}

static void eb_report_etrn(void)
{
	eb_lat_sort(&G.etrn_lat);
	eb_lat_sort(&G.wake_lat);
	/* Per domain: first delivery after its own ETRN reply. */
	struct eb_lat fd = { 0 };
	int64_t fmin = INT64_MAX;
	for (uint32_t d = 0; d < G.ndomains; d++) {
		if (G.dom_first[d] == 0 || G.etrn_reply_t[d] == 0)
			continue;
		int64_t v = (int64_t)G.dom_first[d] - (int64_t)G.etrn_reply_t[d];
		if (v < fmin)
			fmin = v;
		eb_lat_add(&fd, v < 0 ? 0 : (uint64_t)v);
	}
	eb_lat_sort(&fd);
	double r0 = (double)G.t_first_etrn_reply;
	double first_ms = G.s_first ? ((double)G.s_first - r0) / 1e6 : -1;
	double last_ms = G.s_last ? ((double)G.s_last - r0) / 1e6 : -1;
	double drain_s = G.s_last ? ((double)G.s_last - (double)G.t_first_etrn_sent) / NS : 0;
	double rate = drain_s > 0 ? (double)G.s_msgs / drain_s : 0;
	char codes[4096];
	size_t o = 0;
	int first = 1;
	o += (size_t)snprintf(codes, sizeof codes, "{");
	for (unsigned k = 0; k < 1000 && o < sizeof codes; k++) {
		if (G.etrn_code[k] == 0)
			continue;
		o += (size_t)snprintf(codes + o, sizeof codes - o, "%s\"%u\":%" PRIu64,
				first ? "" : ",", k, G.etrn_code[k]);
		first = 0;
	}
	if (o < sizeof codes)
		snprintf(codes + o, sizeof codes - o, "}");
	char tls[512];
	eb_tls_json(tls, sizeof tls);
	if (G.json) {
		char extra[8192];
		snprintf(extra, sizeof extra,
			",\"%s\":{\"etrns\":%u,\"replied\":%u,\"codes\":%s,"
			"\"reply_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f},"
			"\"first_delivery_ms\":%.3f,\"last_delivery_ms\":%.3f,"
			"\"per_domain_first_ms\":{\"n\":%zu,\"p50\":%.3f,\"p99\":%.3f,"
			"\"max\":%.3f,\"min_signed\":%.3f},"
			"\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64
			",\"drain_s\":%.3f,\"drain_msgs_per_s\":%.1f,"
			"\"etrn_span_ms\":%.3f,"
			"\"wakeup_late_ms\":{\"n\":%zu,\"p50\":%.3f,\"p99\":%.3f}}%s",
			G.mode, G.ndomains, G.etrn_done, codes, eb_pct(&G.etrn_lat, 50),
			eb_pct(&G.etrn_lat, 99), eb_pct(&G.etrn_lat, 100),
			first_ms, last_ms, fd.n, eb_pct(&fd, 50), eb_pct(&fd, 99),
			eb_pct(&fd, 100), fd.n ? (double)fmin / 1e6 : 0.0,
			G.expect, G.s_msgs, drain_s, rate,
			G.t_last_etrn_reply ? ((double)G.t_last_etrn_reply -
				(double)G.t_first_etrn_sent) / 1e6 : 0.0,
			G.wake_lat.n, eb_pct(&G.wake_lat, 50), eb_pct(&G.wake_lat, 99), tls);
		eb_report_sink(extra);
	} else {
		eb_report_sink(NULL);
		printf("%s: %u domains, %u replied %s; reply p50 %.3f ms, p99 %.3f ms, "
			"max %.3f ms\n", G.mode, G.ndomains, G.etrn_done, codes,
			eb_pct(&G.etrn_lat, 50), eb_pct(&G.etrn_lat, 99),
			eb_pct(&G.etrn_lat, 100));
		printf("drain: first message %.3f ms, last %.3f ms after the first "
			"ETRN reply; %" PRIu64 "/%" PRIu64 " delivered, %.0f msgs/s "
			"from the first ETRN\n", first_ms, last_ms, G.s_msgs,
			G.expect, rate);
		if (fd.n > 1)
			printf("per domain, first message after its ETRN reply: "
				"p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
				eb_pct(&fd, 50), eb_pct(&fd, 99), eb_pct(&fd, 100));
		if (G.wake_lat.n)
			printf("a thread sleeping %llu us at a time beside the ETRN "
				"sessions woke late by p50 %.3f ms, p99 %.3f ms\n",
				EB_WAKE_NS / 1000ull, eb_pct(&G.wake_lat, 50),
				eb_pct(&G.wake_lat, 99));
		eb_tls_text();
	}
	free(fd.v);
}

static void eb_report_idle(void)
{
	char tls[512];
	eb_tls_json(tls, sizeof tls);
	if (G.json) {
		printf("{\"mode\":\"idle\",\"wanted\":%u,\"ready\":%u,\"errors\":"
			"{\"connect\":%" PRIu64 ",\"protocol\":%" PRIu64 "}%s}\n",
			G.sessions, G.idle_ready, G.err_conn, G.err_proto, tls);
	} else {
		printf("idle: %u of %u connections held after EHLO; connect "
			"errors %" PRIu64 "\n", G.idle_ready, G.sessions, G.err_conn);
		eb_tls_text();
	}
}

static void eb_progress(uint64_t now)
{
	if (!G.tty || now - G.last_progress < EB_PROGRESS_NS)
		return;
	double dt = (double)(now - G.last_progress) / NS;
	G.last_progress = now;
	double el = (double)(now - G.t0) / NS;
	if (strcmp(G.mode, "send") == 0) {
		fprintf(stderr, "\r[%6.1f s] %" PRIu64 " ok, %" PRIu64 " failed, "
			"%.0f msgs/s, %u connections   ", el, G.ok, G.failed,
			(double)(G.ok - G.last_progress_count) / dt, G.live);
		G.last_progress_count = G.ok;
	} else if (strcmp(G.mode, "idle") == 0) {
		fprintf(stderr, "\r[%6.1f s] %u/%u connections held   ", el,
			G.idle_ready, G.sessions);
	} else {
		fprintf(stderr, "\r[%6.1f s] %" PRIu64 " messages in, %.0f msgs/s, "
			"%u ETRN replies   ", el, G.s_msgs,
			(double)(G.s_msgs - G.last_progress_count) / dt,
			G.etrn_kid ? __atomic_load_n(&G.etrn_out->done, __ATOMIC_RELAXED) :
			G.etrn_done);
		G.last_progress_count = G.s_msgs;
	}
}

/* ---- etrn: the ETRN sessions in a process of their own -------------------- */

static void eb_on_child(int sig)
{
	(void)sig;
	eb_kid_exited = 1;
}

/*
 * etrn, in the ETRN process: a thread that sleeps EB_WAKE_NS at a time
 * (absolute deadlines) and records how late it woke, while the sessions
 * run. Any client's reply time includes such a wake-up whenever the reply
 * finds it asleep, so on a loaded machine this is a floor under the reply
 * times that etrnd cannot lower: the scheduler's, in the same run.
 */
static int eb_wake_stop;

static void *eb_wake_probe(void *arg)
{
	struct eb_etrn_out *o = arg;
	struct timespec ts;
	uint64_t due = eb_now();
	while (!__atomic_load_n(&eb_wake_stop, __ATOMIC_RELAXED) && o->nwake < EB_WAKE_MAX) {
		due += EB_WAKE_NS;
		ts.tv_sec = (time_t)(due / 1000000000ull);
		ts.tv_nsec = (long)(due % 1000000000ull);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
		uint64_t now = eb_now();
		o->wake[o->nwake++] = now - due;
		due = now; /* the next sleep is a whole EB_WAKE_NS again */
	}
	return NULL;
}

/*
 * etrn: the ETRN sessions run in a child process with a ring of its own,
 * and this process is the customer's sink only, as when each customer's
 * server sends its own ETRN: a reply's time is taken by a loop that does
 * nothing else, not after the sink's work of the same loop turn (the drain
 * it started, tens of thousands of messages a second). The child hands its
 * results back in G.etrn_out (shared memory, read once it has exited) and
 * writes each domain's reply time there directly. Both processes take
 * their times from CLOCK_MONOTONIC, one clock for the whole machine.
 */
static void eb_etrn_fork(unsigned nsess)
{
	size_t sz = sizeof(struct eb_etrn_out) +
		((size_t)2 * G.ndomains + nsess) * sizeof(uint64_t);
	void *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			-1, 0);
	if (p == MAP_FAILED)
		eb_die("mmap: %s", strerror(errno));
	G.etrn_out = p;
	free(G.etrn_reply_t);
	G.etrn_reply_t = G.etrn_out->v;
	signal(SIGCHLD, eb_on_child);
	fflush(NULL);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		eb_die("fork: %s", strerror(errno));
	if (pid > 0) {
		G.etrn_role = EB_ETRN_SINK;
		G.etrn_kid = pid;
		return;
	}
	/* Stopped with its parent, whatever ends that. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
		_exit(1);
	signal(SIGCHLD, SIG_DFL);
	G.etrn_role = EB_ETRN_CLIENT;
	G.tty = 0;
	pthread_t t;
	if (pthread_create(&t, NULL, eb_wake_probe, G.etrn_out) == 0)
		(void)pthread_detach(t);
}

static uint64_t eb_min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* The ETRN process, its sessions over: its results to G.etrn_out. */
static void eb_etrn_hand_back(unsigned nsess)
{
	struct eb_etrn_out *o = G.etrn_out;
	__atomic_store_n(&eb_wake_stop, 1, __ATOMIC_RELAXED);
	o->t_first_sent = G.t_first_etrn_sent;
	o->t_first_reply = G.t_first_etrn_reply;
	o->t_last_reply = G.t_last_etrn_reply;
	memcpy(o->code, G.etrn_code, sizeof o->code);
	o->err_conn = G.err_conn;
	o->err_proto = G.err_proto;
	o->err_timeout = G.err_timeout;
	o->sess_failed = G.sess_failed;
	o->tls_ok = G.tls_ok;
	o->tls_failed = G.tls_failed;
	o->tls_unoffered = G.tls_unoffered;
	memcpy(o->tls_version, G.tls_version, sizeof o->tls_version);
	memcpy(o->tls_cipher, G.tls_cipher, sizeof o->tls_cipher);
	o->nlat = eb_min_u64(G.etrn_lat.n, G.ndomains);
	memcpy(o->v + G.ndomains, G.etrn_lat.v, o->nlat * sizeof *o->v);
	o->ntls = eb_min_u64(G.tls_lat.n, nsess);
	memcpy(o->v + 2 * (size_t)G.ndomains, G.tls_lat.v, o->ntls * sizeof *o->v);
	__atomic_store_n(&o->done, G.etrn_done, __ATOMIC_RELEASE);
}

/* The sink: wait for the ETRN process (stopping it first when the run is
 * over before it is) and take its results. */
static void eb_etrn_take_back(int stop)
{
	struct eb_etrn_out *o = G.etrn_out;
	int st = 0;
	if (stop)
		(void)kill(G.etrn_kid, SIGTERM);
	while (waitpid(G.etrn_kid, &st, 0) < 0 && errno == EINTR)
		;
	G.etrn_kid = 0;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fprintf(stderr, "etrnbench: the ETRN process ended before its "
			"results (status %d)\n", st);
	G.etrn_done = __atomic_load_n(&o->done, __ATOMIC_ACQUIRE);
	G.t_first_etrn_sent = o->t_first_sent;
	G.t_first_etrn_reply = o->t_first_reply;
	G.t_last_etrn_reply = o->t_last_reply;
	memcpy(G.etrn_code, o->code, sizeof G.etrn_code);
	G.err_conn += o->err_conn;
	G.err_proto += o->err_proto;
	G.err_timeout += o->err_timeout;
	G.sess_failed += o->sess_failed;
	G.tls_ok += o->tls_ok;
	G.tls_failed += o->tls_failed;
	G.tls_unoffered += o->tls_unoffered;
	memcpy(G.tls_version, o->tls_version, sizeof G.tls_version);
	memcpy(G.tls_cipher, o->tls_cipher, sizeof G.tls_cipher);
	for (uint64_t i = 0; i < o->nlat; i++)
		eb_lat_add(&G.etrn_lat, o->v[G.ndomains + i]);
	for (uint64_t i = 0; i < o->ntls; i++)
		eb_lat_add(&G.tls_lat, o->v[2 * (size_t)G.ndomains + i]);
	for (uint64_t i = 0, n = o->nwake < EB_WAKE_MAX ? o->nwake : EB_WAKE_MAX; i < n; i++)
		eb_lat_add(&G.wake_lat, o->wake[i]);
}

/* ---- main loop ------------------------------------------------------------ */

static int eb_finished(uint64_t now)
{
	double el = (double)(now - G.t0) / NS;
	if (eb_stop)
		return 1;
	if (el > G.timeout)
		return 1;
	if (G.etrn_role == EB_ETRN_CLIENT)
		return G.live == 0 && G.cw_n == 0;
	if (strcmp(G.mode, "send") == 0)
		return G.live == 0 && G.cw_n == 0;
	if (strcmp(G.mode, "idle") == 0)
		return G.duration > 0 && el > G.duration;
	if (strcmp(G.mode, "etrn") == 0 && G.expect && G.s_msgs >= G.expect &&
	    G.etrn_done >= G.ndomains)
		return 1;
	if (strcmp(G.mode, "etrn") == 0 && !G.expect && G.etrn_done >= G.ndomains &&
	    (double)(now - (G.s_last > G.t_last_etrn_reply ? G.s_last :
			    G.t_last_etrn_reply)) / NS > 1.0)
		return 1;
	if (strcmp(G.mode, "atrn") == 0) {
		/* The reversed session ended (QUIT or a drop), ATRN was
		 * refused, or the connection never got that far. */
		if (G.atrn_over || G.live == 0 || G.sess_failed || G.err_conn)
			return 1;
		if (G.expect && G.s_msgs >= G.expect)
			return 1;
	}
	if (strcmp(G.mode, "sink") == 0) {
		if (G.expect && G.s_msgs >= G.expect)
			return 1;
		if (G.duration > 0 && el > G.duration)
			return 1;
	}
	if (G.idle_exit > 0 && G.s_last &&
	    (double)(now - G.s_last) / NS > G.idle_exit)
		return 1;
	return 0;
}

static uint64_t last_scan;

static void eb_tick(uint64_t now)
{
	if (G.issuing && G.duration > 0 && strcmp(G.mode, "send") == 0 &&
	    (double)(now - G.t0) / NS >= G.duration) {
		G.issuing = 0;
		last_scan = 0; /* let the scan below run now */
	}
	/* Sessions waiting for a rate token (or told to stop). */
	while (G.rw_n > 0) {
		struct eb_conn *c = &G.conns[G.rate_wait[G.rw_head]];
		if (G.issuing && G.rate > 0 && !eb_stop) {
			uint64_t due = G.pace0 + (uint64_t)((double)G.issued / G.rate * NS);
			if (now < due)
				break;
		}
		G.rw_head = (G.rw_head + 1) % EB_CONNS_MAX;
		G.rw_n--;
		if (c->kind != K_SEND || c->closing)
			continue;
		c->waiting = 0;
		eb_send_next(c);
		eb_flush(c);
	}
	eb_pump_connects();
	/* Bounded waits for replies; once the run stops issuing, sessions
	 * still waiting for a greeting (a server that serves a limited number
	 * at once) are not kept waiting: counted as unserved, not as errors. */
	if (now - last_scan > EB_TICK_NS) {
		last_scan = now;
		for (uint32_t i = 0; i < EB_CONNS_MAX; i++) {
			struct eb_conn *c = &G.conns[i];
			if ((c->kind == K_SEND || c->kind == K_ETRN || c->kind == K_ATRN ||
			     (c->kind == K_IDLE && !c->ready)) && !c->closing &&
			    c->qn > 0 && now > c->last_io &&
			    now - c->last_io > EB_REPLY_TIMEOUT_NS) {
				G.err_timeout++;
				eb_conn_close(c);
			}
			if (c->kind == K_SEND && !G.issuing && !c->closing &&
			    c->on_conn == 0 && c->qn > 0 &&
			    (c->q[c->qh].kind == X_BANNER || c->q[c->qh].kind == X_EHLO ||
			     c->q[c->qh].kind == X_STARTTLS || c->q[c->qh].kind == X_TLS)) {
				c->unserved = 1;
				G.sess_unserved++;
				eb_conn_close(c);
			}
			if (c->kind != K_FREE && c->closing && c->pending == 0)
				eb_conn_release(c);
		}
	}
	if (G.idle_ready + G.idle_failed >= G.sessions && !G.idle_announced &&
	    strcmp(G.mode, "idle") == 0) {
		/* The script waits for this line before measuring. */
		G.idle_announced = 1;
		fprintf(stderr, "%setrnbench: ready %u\n", G.tty ? "\n" : "", G.idle_ready);
		fflush(stderr);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2 || (strcmp(argv[1], "send") && strcmp(argv[1], "sink") &&
	    strcmp(argv[1], "etrn") && strcmp(argv[1], "idle") &&
	    strcmp(argv[1], "atrn")))
		eb_usage();
	G.mode = argv[1];
	eb_options(argc, argv);
	int is_send = strcmp(G.mode, "send") == 0;
	int is_etrn = strcmp(G.mode, "etrn") == 0;
	int is_sink = strcmp(G.mode, "sink") == 0;
	int is_atrn = strcmp(G.mode, "atrn") == 0;
	if ((is_send || is_etrn || !is_sink) && G.srvlen == 0)
		eb_die("--server HOST:PORT is required");
	if ((is_sink || is_etrn) && !G.have_sink)
		eb_die("--%s [HOST:]PORT is required", is_sink ? "listen" : "sink");
	if (is_etrn && G.ndomains == 0)
		eb_die("etrn: --domain, --domains or --domain-list is required");
	if (is_atrn && (G.ndomains == 0 || G.ndomains > EB_DOMAINS_ATRN_MAX))
		eb_die("atrn: --domain D[,D...] (1..%u domains) is required",
				EB_DOMAINS_ATRN_MAX);
	if (is_atrn && (G.user == NULL || G.password == NULL ||
			strlen(G.user) > EB_CRED_MAX || strlen(G.password) > EB_CRED_MAX))
		eb_die("atrn: --user and --password (at most %u octets each) are required",
				EB_CRED_MAX);
	if (is_send && !G.per_session && !G.total && G.duration <= 0)
		G.per_session = 100;

	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, eb_on_signal);
	signal(SIGTERM, eb_on_signal);
	G.tty = isatty(2);
	if (G.starttls)
		G.tls_cli = eb_tls_ctx(0);
	if (G.tls_cert != NULL)
		G.tls_srv = eb_tls_ctx(1);

	G.conns = eb_xalloc(EB_CONNS_MAX * sizeof *G.conns);
	G.freelist = eb_xalloc(EB_CONNS_MAX * sizeof *G.freelist);
	G.conn_wait = eb_xalloc(EB_CONNS_MAX * sizeof *G.conn_wait);
	G.rate_wait = eb_xalloc(EB_CONNS_MAX * sizeof *G.rate_wait);
	for (uint32_t i = 0; i < EB_CONNS_MAX; i++) {
		G.conns[i].fd = -1;
		G.freelist[i] = EB_CONNS_MAX - 1 - i;
	}
	G.nfree = EB_CONNS_MAX;
	unsigned nsess = is_etrn ? (G.etrn_sessions ? G.etrn_sessions :
			(G.ndomains < 16 ? G.ndomains : 16)) : is_atrn ? 1 : G.sessions;
	if (is_etrn && nsess > G.ndomains)
		nsess = G.ndomains;
	G.sess = eb_xalloc((nsess ? nsess : 1) * sizeof *G.sess);
	if (is_send)
		eb_pattern_init();
	if (is_etrn || is_atrn) {
		G.etrn_reply_t = eb_xalloc(G.ndomains * sizeof *G.etrn_reply_t);
		G.dom_first = eb_xalloc(G.ndomains * sizeof *G.dom_first);
		G.dom_last = eb_xalloc(G.ndomains * sizeof *G.dom_last);
		eb_dom_index();
	}
	if (is_etrn)
		eb_etrn_fork(nsess);

	struct io_uring_params p = { .flags = IORING_SETUP_CQSIZE,
		.cq_entries = EB_RING_CQ };
	int r = io_uring_queue_init_params(EB_RING_SQ, &G.ring, &p);
	if (r < 0)
		eb_die("io_uring_queue_init: %s", strerror(-r));
	G.t0 = eb_now();
	G.last_progress = G.t0;
	G.issuing = 1;
	if (is_sink || G.etrn_role == EB_ETRN_SINK)
		eb_listen();
	if (!is_sink && G.etrn_role != EB_ETRN_SINK) {
		enum eb_kind k = eb_client_kind();
		for (uint32_t s = 0; s < nsess; s++)
			eb_connect_session(s, k);
	}

	uint64_t linger_until = 0;
	while (1) {
		if (eb_kid_exited && G.etrn_kid)
			eb_etrn_take_back(0);
		uint64_t now = eb_now();
		eb_tick(now);
		eb_progress(now);
		if (linger_until) {
			/* Let the peers' last QUITs through, so a server that
			 * delivered to us does not log a lost connection. */
			if (now > linger_until || eb_stop ||
			    G.live <= (G.listen_fd >= 0 ? 1u : 0u))
				break;
		} else if (eb_finished(now)) {
			if (!(is_sink || is_etrn || is_atrn) || eb_stop)
				break;
			linger_until = now + EB_LINGER_NS;
		}
		uint64_t wait = EB_TICK_NS;
		if (G.rw_n > 0)
			wait = 500000; /* pacing: 0.5 ms */
		struct __kernel_timespec ts = { .tv_sec = 0,
			.tv_nsec = (long long)wait };
		struct io_uring_cqe *cqe = NULL;
		r = io_uring_submit_and_wait_timeout(&G.ring, &cqe, 1, &ts, NULL);
		if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY)
			eb_die("io_uring_submit_and_wait: %s", strerror(-r));
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&G.ring, head, cqe) {
			eb_cqe(cqe);
			seen++;
		}
		io_uring_cq_advance(&G.ring, seen);
	}
	if (G.etrn_role == EB_ETRN_CLIENT) {
		eb_etrn_hand_back(nsess);
		_exit(0);
	}
	if (G.etrn_kid)
		eb_etrn_take_back(1);
	if (G.tty)
		fputc('\n', stderr);
	if (is_send)
		eb_report_send();
	else if (is_sink)
		eb_report_sink(NULL);
	else if (is_etrn || is_atrn)
		eb_report_etrn();
	else
		eb_report_idle();
	int bad = 0;
	if (is_send && (G.failed || G.sess_failed || G.err_conn || G.err_proto ||
			G.err_timeout || G.tls_failed || G.tls_unoffered))
		bad = 1;
	if ((is_sink || is_etrn || is_atrn) &&
	    (G.s_bad_sum || (G.expect && G.s_msgs < G.expect)))
		bad = 1;
	if ((is_etrn || is_atrn) && G.etrn_done < G.ndomains)
		bad = 1;
	if (is_atrn && G.etrn_code[250] != 1)
		bad = 1;
	fflush(stdout);
	/* The kernel closes every socket; no need to wait for the ring. */
	_exit(bad);
}
