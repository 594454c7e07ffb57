/* SPDX-License-Identifier: MIT */
/*
 * config: the one config struct and its loader. The file is "key = value"
 * lines like Postfix's main.cf; every key has a default (config_defaults());
 * an unknown key or a bad value is an error naming file:line, so a typo never
 * silently runs with a default. Read once at start (and on SIGHUP, later).
 */
#ifndef ETRND_CORE_CONFIG_H
#define ETRND_CORE_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <sys/socket.h>

#include "core/cidr.h"
#include "core/dnsbl_list.h"
#include "core/timetable.h"

#define CONFIG_LISTEN_MAX 16
#define CONFIG_THREADS_MAX 256
#define CONFIG_ERR_MAX 512
#define CONFIG_HOSTNAME_MAX 256
/* "file:line" (or "command line -o") of a key, for start-up cross-checks. */
#define CONFIG_WHERE_MAX (PATH_MAX + 32)
/* data_memory_limit: the DATA buffers of all sessions together. A fixed
 * default rather than a share of RAM: the same on every node, and it holds
 * three worst-case messages of the default message_size_limit at once (or
 * thousands of ordinary ones) while staying small next to the spool. */
#define CONFIG_DATA_MEMORY_DEFAULT (256ull << 20)
#define CONFIG_DATA_MEMORY_MIN (1ull << 20)
#define CONFIG_DATA_MEMORY_MAX (1ull << 40)
/* The range of max_hold, in etrnd.conf and in a domain's Redis row alike:
 * at least a second, at most what 32-bit milliseconds hold (49 days). */
#define CONFIG_MAX_HOLD_MIN_MS 1000ull
#define CONFIG_MAX_HOLD_MAX_MS (49ull * 86400 * 1000)
/* dns_servers and dns_timeout (the drain's resolver, core/resolver.h). */
#define CONFIG_DNS_SERVERS_MAX 512
#define CONFIG_DNS_PORT 53              /* RFC 1035 4.2 */
#define CONFIG_DNS_TIMEOUT_MIN_MS 100ull
/* dnsbl_timeout: postscreen_dnsbl_timeout's default (10s); at most a
 * minute, since the greeting waits for it. */
#define CONFIG_DNSBL_TIMEOUT_DEFAULT_MS 10000u
#define CONFIG_DNSBL_TIMEOUT_MAX_MS 60000ull
#define CONFIG_DNS_TIMEOUT_MAX_MS (600ull * 1000)
/* postmaster: a mailbox local@domain; RFC 5321 4.5.3.1.1 (local part 64)
 * and 4.5.3.1.3 (path 256 with its angle brackets). */
#define CONFIG_LOCAL_MAX 64
#define CONFIG_ADDR_MAX 254
/* Connections one client address may hold open at once, node-wide: Postfix's
 * smtpd_client_connection_count_limit default. A real MTA opens a handful per
 * destination (Postfix's default_destination_concurrency_limit is 20), so 50
 * never stands in its way, while one address can no longer take all of
 * max_connections. */
#define CONFIG_CLIENT_CONNECTION_LIMIT_DEFAULT 50

/* tls_handshake_timeout: a TLS handshake (STARTTLS or listen_tls) must end
 * within it, or the connection is cut. 60s: a handshake is two or three
 * round trips, so a minute covers the slowest real link (Postfix waits
 * 300s, or 10s under stress: a minute holds a slot far less long than
 * 300s without failing real clients as 10s can). */
#define CONFIG_TLS_HANDSHAKE_TIMEOUT_DEFAULT_MS (60u * 1000)
#define CONFIG_TLS_CIPHERS_MAX 1024

enum config_sync { CONFIG_SYNC_NONE, CONFIG_SYNC_BATCH, CONFIG_SYNC_ALWAYS };

/* Where the Redis with the domain table lives (key "redis"). */
/* AUTH (RFC 4954): verifier threads running crypt(3) off the engine threads,
 * and failed attempts per client address per minute (auth_failure_limit;
 * core/addrlimit.h). */
#define CONFIG_AUTH_VERIFIERS_DEFAULT 2
#define CONFIG_AUTH_VERIFIERS_MAX 64
#define CONFIG_AUTH_FAILURE_LIMIT_DEFAULT 10
#define CONFIG_AUTH_FAILURE_LIMIT_MAX 100000

/* Several nodes (issue 16, admin/cluster.h). node_id: 1-63 of letters,
 * digits, '.', '_' and '-' (default: the host name, cut at 63).
 * redis_sentinels: up to CONFIG_SENTINELS_MAX "host[:port]" (port 26379)
 * asked for redis_master_name's master (core/config.h struct
 * config_redis). cluster_publish_interval: how often a node rewrites its
 * held counts in Redis (also soon after they change); cluster_node_ttl:
 * the TTL of that hash, after which the node is shown as gone. */
#define CONFIG_NODE_ID_MAX 64
#define CONFIG_SENTINELS_MAX 8
#define CONFIG_SENTINEL_PORT 26379
#define CONFIG_MASTER_NAME_MAX 64
#define CONFIG_CLUSTER_PUBLISH_DEFAULT_MS 3000u
#define CONFIG_CLUSTER_NODE_TTL_DEFAULT_MS 15000u

/* Recipient sets: defaults and the most either cap may be (each entry
 * costs about 30 bytes: 100M is 3 GB). */
#define CONFIG_RCPT_MAX_PER_DOMAIN_DEFAULT 2000000u
#define CONFIG_RCPT_MAX_TOTAL_DEFAULT 10000000u
#define CONFIG_RCPT_MAX 100000000u
#define CONFIG_REDIS_PREFIX_MAX 64
enum config_redis_kind { CONFIG_REDIS_NONE, CONFIG_REDIS_UNIX, CONFIG_REDIS_TCP };
struct config_redis {
	enum config_redis_kind kind;    /* NONE: no Redis, relay_domains only */
	char display[300];              /* for logs: as written, password as "***" */
	char path[108];                 /* UNIX: socket path (sun_path size) */
	char host[256];                 /* TCP: name, IPv4 or IPv6 (no brackets) */
	unsigned port;                  /* TCP: 1..65535 (default 6379) */
	char user[128];                 /* ACL user for AUTH, "" = none */
	char pass[256];                 /* password for AUTH, "" = no AUTH */
	unsigned db;                    /* SELECT db (0 = no SELECT) */
	/* Sentinel (redis_sentinels, redis_master_name): when nsentinels > 0
	 * the master's address is asked of the sentinels at every connect
	 * (admin/redis_conn.h) and kind is CONFIG_REDIS_TCP (config_finish
	 * sets it); host and port above are not used; a "redis" key, when
	 * given (tcp form), supplies user, pass and db for the master. Kept
	 * when the "redis" key is set after redis_sentinels. */
	struct config_sentinel {
		char host[256];
		unsigned port;
	} sentinels[CONFIG_SENTINELS_MAX];
	unsigned nsentinels;
	char master_name[CONFIG_MASTER_NAME_MAX];
};

/* What a listener is for (struct config_listen.flags): set by the key that
 * named it. "listen" gives 0; "listen_tls" (implicit TLS, the port-465
 * style: the handshake starts at accept) gives CONFIG_LISTEN_TLS;
 * "listen_trusted" (AUTH offered without TLS, for a port only trusted
 * networks reach) gives CONFIG_LISTEN_TRUSTED. */
#define CONFIG_LISTEN_TLS 0x1u
#define CONFIG_LISTEN_TRUSTED 0x2u
/* "odmr_listen" (RFC 2645 On-Demand Mail Relay, port 366): EHLO offers
 * AUTH and ATRN there, and no mail transaction is taken; "odmr_listen_trusted"
 * gives CONFIG_LISTEN_ODMR | CONFIG_LISTEN_TRUSTED (AUTH without TLS). */
#define CONFIG_LISTEN_ODMR 0x4u
/* "submission_listen" (RFC 6409 message submission, port 587): MAIL needs a
 * successful AUTH first (530 5.7.0), AUTH is offered inside TLS only, and an
 * authenticated user may send to any domain (the scheduler delivers it). */
#define CONFIG_LISTEN_SUBMISSION 0x8u
/* "cluster_listen" (issue 16): the nodes' internal SMTP transfers. Only
 * other nodes of the cluster may AUTH there (PLAIN, authcid their node_id,
 * password the cluster secret); an authenticated node may ATRN any domain
 * (cross-node ATRN) and send mail for any domain (decommission hand-off).
 * STARTTLS is offered when tls_cert_file is set; AUTH without TLS only
 * when cluster_tls = may. */
#define CONFIG_LISTEN_CLUSTER 0x10u


/* Operations (issue 15): metrics_top_domains' default and bound, and the
 * longest user name (useradd's 32). */
#define CONFIG_METRICS_TOP_DOMAINS_DEFAULT 10
#define CONFIG_METRICS_TOP_DOMAINS_MAX 1000
#define CONFIG_USER_MAX 33

/* Outbound delivery (proto/sched.h). relayhost: "[host]:port" (no MX
 * look-up, Postfix's rule) or "host[:port]" (host's MX); "" = none. The
 * back-off between attempts of one message is its age, bounded by
 * minimal_backoff and maximal_backoff (Postfix's 300s and 4000s); at start,
 * what fell due while the daemon was down is spread evenly over
 * queue_restart_spread instead of being tried at once. */
#define CONFIG_RELAYHOST_MAX 300
#define CONFIG_MINIMAL_BACKOFF_DEFAULT_MS (300u * 1000)
#define CONFIG_MAXIMAL_BACKOFF_DEFAULT_MS (4000u * 1000)
#define CONFIG_QUEUE_RESTART_SPREAD_DEFAULT_MS (60u * 1000)

/*
 * Activators (proto/activator.h): this node asks an upstream for its own
 * mail, ETRN (RFC 1985) or ATRN (RFC 2645), on a timetable. Several, each
 * named by keys "activator.NAME.FIELD = value" (NAME: letters, digits, '-'
 * and '_', at most CONFIG_ACTIVATOR_NAME_MAX - 1):
 *   host       the upstream, "host[:port]" or "[host]:port" (its A/AAAA,
 *              never its MX); port 25 for etrn, 366 for atrn by default.
 *              Required. May differ from relayhost.
 *   method     etrn (default) or atrn.
 *   request    comma list of "domain", "@domain" (the domain and its
 *              subdomains) and "#queue" (the ISP's queue name); one ETRN
 *              each. etrn: required. atrn: domains only, none = all the
 *              user's domains.
 *   user       AUTH (RFC 4954) user; required for atrn; for etrn, used when
 *              the upstream offers AUTH.
 *   password_file  a file whose first line is the password (read at start;
 *              required with user). Credentials go out only inside TLS
 *              unless tls = none (the operator's explicit choice, warned).
 *   tls        none | may (default) | must | verify (must + certificate
 *              chain and host name checked against tls_ca_file), as a
 *              domain row's tls.
 *   schedule   a timetable (core/timetable.h). Required.
 *   idle_timeout  atrn: overrides atrn_idle_timeout for this activator.
 * Missing or contradicting fields are refused at start with the file:line
 * of the activator's first key.
 */
#define CONFIG_ACTIVATORS_MAX 32
#define CONFIG_ACTIVATOR_NAME_MAX 64
#define CONFIG_ACTIVATOR_REQUESTS_MAX 16
#define CONFIG_ACTIVATOR_REQUEST_MAX 257    /* "@" or "#" + 255 + NUL */
#define CONFIG_ACTIVATOR_USER_MAX 256
#define CONFIG_ACTIVATOR_PASS_MAX 256
#define CONFIG_ETRN_PORT 25                 /* RFC 5321 */
#define CONFIG_ODMR_PORT 366                /* RFC 2645 */
/* atrn_idle_timeout: how long the reversed session of an ATRN activator
 * waits for the upstream's next command (the IMS's "time-out after X
 * minutes"); RFC 5321 4.5.3.2.7's server timeout of 5 minutes. */
#define CONFIG_ATRN_IDLE_TIMEOUT_DEFAULT_MS (5u * 60u * 1000u)
/* Its range (and an activator's idle_timeout's): a second to a day. */
#define CONFIG_ATRN_IDLE_TIMEOUT_MIN_MS 1000u
#define CONFIG_ATRN_IDLE_TIMEOUT_MAX_MS (86400u * 1000u)

enum config_activator_method { CONFIG_ACTIVATOR_ETRN = 0, CONFIG_ACTIVATOR_ATRN };
enum config_activator_tls {
	CONFIG_ACTIVATOR_TLS_NONE = 0,
	CONFIG_ACTIVATOR_TLS_MAY,
	CONFIG_ACTIVATOR_TLS_MUST,
	CONFIG_ACTIVATOR_TLS_VERIFY,
};

struct config_activator {
	char name[CONFIG_ACTIVATOR_NAME_MAX];
	char host[CONFIG_HOSTNAME_MAX];     /* without brackets or port */
	unsigned port;
	enum config_activator_method method;
	unsigned nrequest;
	char request[CONFIG_ACTIVATOR_REQUESTS_MAX][CONFIG_ACTIVATOR_REQUEST_MAX];
	char user[CONFIG_ACTIVATOR_USER_MAX];         /* "" = no AUTH */
	char password_file[PATH_MAX];
	char password[CONFIG_ACTIVATOR_PASS_MAX];     /* read from password_file */
	enum config_activator_tls tls;
	struct timetable schedule;
	unsigned idle_timeout_ms;           /* 0 = atrn_idle_timeout */
	char where[CONFIG_WHERE_MAX];       /* file:line of its first key */
};

struct config_activator_at;

/* An activator's method and tls as etrnd.conf spells them ("etrn", "atrn";
 * "none", "may", "must", "verify"): static strings, "?" out of range. */
const char *config_activator_method_name(enum config_activator_method m);
const char *config_activator_tls_name(enum config_activator_tls t);

/* Add one request to a: "domain" or "@domain" (a host name by
 * config_host_labels(), lower-cased, one trailing dot dropped) or "#queue"
 * (letters, digits, '.', '-', '_': RFC 1985's node names as proto/etrn.c
 * takes them); v is n bytes. 0, or -1 with why set (a request given twice,
 * more than CONFIG_ACTIVATOR_REQUESTS_MAX). */
int config_activator_request_add(struct config_activator *a, const char *v, size_t n,
		char *why, size_t whylen);

/* Set a's idle_timeout from v (NUL-terminated): a core/units.h duration
 * from CONFIG_ATRN_IDLE_TIMEOUT_MIN_MS to _MAX_MS. 0, or -1 with why set. */
int config_activator_idle_timeout(struct config_activator *a, const char *v, char *why,
		size_t whylen);

/* a as a whole, as config_finish() checks a configured activator and the
 * control socket's one-shot may: a host; etrn: a request; atrn: a user and
 * domains only; a user needs a password (or a password_file, read later).
 * The schedule is not checked (a one-shot has none). 0, or -1 with why set
 * and *field (when not NULL) the field at fault, NULL for a missing one. */
int config_activator_check(const struct config_activator *a, const char **field,
		char *why, size_t whylen);

struct config_listen {
	char text[128];                 /* as written: "127.0.0.1:2525" */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	unsigned flags;                 /* CONFIG_LISTEN_* */
};

/* spf = off | log | on: off checks nothing; log checks, logs, counts and
 * adds Received-SPF, never refuses; on also refuses per spf_reject and
 * spf_temperror. */
enum config_spf {
	CONFIG_SPF_OFF = 0,
	CONFIG_SPF_LOG,
	CONFIG_SPF_ON,
};
#define CONFIG_SPF_WORKERS_MAX 64
/* Milters (issue 19, proto/milter.h): "inet:host:port" (numeric host) or
 * "unix:/path", asked in the order given. */
#define CONFIG_MILTERS_MAX 8
enum config_milter_action {
	CONFIG_MILTER_TEMPFAIL = 0,  /* Postfix's default */
	CONFIG_MILTER_ACCEPT,
	CONFIG_MILTER_REJECT,
};

struct config {
	struct config_listen listen[CONFIG_LISTEN_MAX];
	unsigned nlisten;
	unsigned threads;               /* resolved: "auto" becomes nproc */
	char hostname[CONFIG_HOSTNAME_MAX];
	char spool_dir[PATH_MAX];
	char control_socket[PATH_MAX]; /* etrnctl flush/status; "" = none */
	char **relay_domains;           /* lower-case, no trailing dot */
	size_t nrelay_domains;
	enum config_sync sync;
	int spool_direct_io;            /* O_DIRECT spool writes (sync != none) */
	size_t segment_size;
	unsigned compact_threshold;     /* percent live below which to compact */
	unsigned compact_min_age_ms;    /* newest message in a segment that old */
	size_t smtp_command_max;        /* RFC 5321 4.5.3.1.4 */
	size_t smtp_line_max;           /* RFC 5321 4.5.3.1.6 */
	unsigned smtp_max_recipients;   /* RFC 5321 4.5.3.1.8: at least 100 */
	size_t message_size_limit;
	size_t data_memory_limit;       /* DATA buffers of all sessions, bytes */
	unsigned smtp_max_errors;
	unsigned idle_timeout_ms;       /* RFC 5321 4.5.3.2.7: at least 5 min */
	unsigned session_timeout_ms;
	unsigned close_timeout_ms;      /* a closing peer must read our last replies by then */
	unsigned send_timeout_ms;       /* a send that makes no progress this long: timeout */
	int bare_lf_normalize;
	unsigned max_connections;       /* per engine thread */
	unsigned client_connection_limit; /* per client address, node-wide; 0 = none */
	int client_connection_limit_loopback; /* loopback clients counted too */
	unsigned shutdown_timeout_ms;
	unsigned drain_connections;     /* per engine thread per drain */
	unsigned drain_destination_concurrency; /* node-wide per host:port */
	unsigned drain_reconnect_attempts; /* per drain per engine thread */
	unsigned drain_greeting_timeout_ms; /* RFC 5321 4.5.3.2.1 */
	unsigned drain_done_window;     /* per drain connection: crash duplicates */
	unsigned etrn_rate_limit;       /* ETRN per client address per minute */
	unsigned auth_verifiers;        /* threads checking AUTH passwords */
	unsigned auth_failure_limit;    /* failed AUTH per client address per minute */
	enum config_spf spf;            /* SPF at MAIL FROM (proto/spf.h) */
	int spf_reject_fail;            /* spf_reject = fail (1) | none (0) */
	int spf_tempfail;               /* spf_temperror = tempfail (1) | accept (0) */
	unsigned spf_timeout_ms;        /* one check, all its DNS (RFC 7208 4.6.4) */
	unsigned spf_workers;           /* threads running libspf2 */
	unsigned max_hold_ms;           /* held mail expires after this */
	unsigned delay_warning_ms;      /* sender warned after this; 0 = never */
	unsigned clock_offset_ms;       /* test aid: added to the wall clock */
	int test_clock;                 /* test aid: yes lets the control socket
	                                   step the clock forward (core/now.h) */
	char relayhost[CONFIG_RELAYHOST_MAX]; /* "" = none */
	struct cidr mynetworks[CIDR_LIST_MAX]; /* clients that may relay */
	unsigned nmynetworks;
	unsigned minimal_backoff_ms;
	unsigned maximal_backoff_ms;
	unsigned queue_restart_spread_ms;
	/* milter, milter_default_action, milter_*_timeout (Postfix's names
	 * and defaults: 30s, 30s, 300s); text says "inet:..." or "unix:...". */
	struct config_listen milters[CONFIG_MILTERS_MAX];
	unsigned nmilters;
	int milter_default_action;      /* enum config_milter_action */
	unsigned milter_connect_timeout_ms;
	unsigned milter_command_timeout_ms;
	unsigned milter_content_timeout_ms;
	struct config_activator *activators; /* allocated; config_free() */
	unsigned nactivators;
	struct config_activator_at *activators_at; /* config_activator.c's own:
	                                   where each field was set */
	unsigned atrn_idle_timeout_ms;
	int log_level;                  /* enum log_level */
	int log_syslog;                 /* log = syslog (log_syslog = yes is
	                                   its older spelling) */
	/* log: where log lines go: "stderr" (default), "syslog", or a file
	 * path (appended; reopened on SIGUSR1, for logrotate). */
	char log_file[PATH_MAX];        /* "" unless log names a file */
	/* metrics_listen: the Prometheus endpoint (admin/metrics_http.h),
	 * one numeric host:port; metrics_len 0 = off (the default; make run
	 * turns it on at 127.0.0.1:9325). metrics_top_domains: how many
	 * domains the per-domain held series names (the largest). */
	struct config_listen metrics;
	unsigned metrics_len;
	unsigned metrics_top_domains;
	/* user: started as root, drop to this user (and its group) once the
	 * listeners are bound; "" = stay as started. */
	char user[CONFIG_USER_MAX];
	struct config_redis redis;
	char redis_prefix[CONFIG_REDIS_PREFIX_MAX + 1]; /* key prefix, "etrnd:" */
	unsigned redis_resync_ms;       /* full reload interval (safety net) */
	/* Recipient validation (issue 19, core/rcptset.h): most recipients
	 * in one domain's set, and in all sets together; a set over either
	 * is refused (logged) and the old one kept. */
	unsigned rcpt_max_per_domain;
	unsigned rcpt_max_total;
	/* Several nodes (issue 16): this node's name in Redis and in other
	 * nodes' logs; the shared secret nodes AUTH with on cluster_listen
	 * (first line of the file, at least 16 bytes; "" = no cluster
	 * transfers); the TLS policy of transfers this node starts (may:
	 * STARTTLS when offered; must: STARTTLS or no transfer; verify: and
	 * the peer's certificate verifies against tls_ca_file). */
	char node_id[CONFIG_NODE_ID_MAX];
	char cluster_secret_file[PATH_MAX];
	enum config_cluster_tls { CONFIG_CLUSTER_TLS_MAY, CONFIG_CLUSTER_TLS_MUST,
		CONFIG_CLUSTER_TLS_VERIFY } cluster_tls;
	unsigned cluster_publish_ms;
	unsigned cluster_node_ttl_ms;
	char dns_servers[CONFIG_DNS_SERVERS_MAX]; /* "ip[:port],..."; "" = resolv.conf */
	unsigned dns_timeout_ms;        /* one whole look-up, MX + address */
	/* DNSBL at connect (issue 19; core/dnsbl_list.h, proto/dnsbl.h):
	 * the sites (n 0: off, the default), the score that refuses a client
	 * (postscreen_dnsbl_threshold), the reply that replaces the greeting,
	 * how long the look-ups may take (postscreen_dnsbl_timeout), log-only
	 * (dnsbl_action = log) and whether loopback clients are looked up
	 * (dnsbl_skip_loopback; mynetworks never are). */
	struct dnsbl_list dnsbl;
	unsigned dnsbl_threshold;
	char dnsbl_reply[DNSBL_REPLY_MAX];
	unsigned dnsbl_timeout_ms;
	int dnsbl_log_only;
	int dnsbl_skip_loopback;
	/* Where RCPT TO:<postmaster> (and postmaster@hostname) goes (RFC 5321
	 * 4.5.1); "" = postmaster@hostname. */
	char postmaster[CONFIG_ADDR_MAX + 1];
	/* Postfix's allow_untrusted_routing: accept user%x@, user!x@ and
	 * "user@x"@ recipients (sender-specified routing). Default 0. */
	int allow_untrusted_routing;
	/* smtp_atrn: ATRN (RFC 2645) answered on the SMTP listeners as on an
	 * odmr_listen one; 0 (default): 502 there. */
	int smtp_atrn;
	/* TLS (core/tls.h): the server's certificate chain and key (PEM;
	 * "" = no STARTTLS offered, no listen_tls), the drains' trust store
	 * ("" = the system's), the TLS 1.2 cipher list ("" = the built-in
	 * TLS_CIPHERS_DEFAULT) and the handshake's time limit. */
	char tls_cert_file[PATH_MAX];
	char tls_key_file[PATH_MAX];
	char tls_ca_file[PATH_MAX];
	char tls_ciphers[CONFIG_TLS_CIPHERS_MAX];
	unsigned tls_handshake_timeout_ms;
	char listen_tls_at[CONFIG_WHERE_MAX];
	char tls_cert_file_at[CONFIG_WHERE_MAX];
	char tls_key_file_at[CONFIG_WHERE_MAX];
	char tls_ca_file_at[CONFIG_WHERE_MAX];
	char tls_ciphers_at[CONFIG_WHERE_MAX];
	/* Where message_size_limit, segment_size and data_memory_limit were
	 * last set; "" = the default. proto/smtpd.h cross-checks them. */
	char message_size_limit_at[CONFIG_WHERE_MAX];
	char segment_size_at[CONFIG_WHERE_MAX];
	char data_memory_limit_at[CONFIG_WHERE_MAX];
	/* The file config_load() read ("" = none), for config_finish()'s
	 * errors that no one key causes. */
	char path[PATH_MAX];
};

/* Fill c with every default. Allocates (relay_domains): config_free(). */
void config_defaults(struct config *c);

/*
 * Read path into c (which holds defaults or earlier values). On error returns
 * -1 with err set to "PATH:LINE: what is wrong" (or "PATH: strerror"); c may
 * be partly updated. Returns 0 on success. A key given twice in the file is
 * a warning (log_warn, "PATH:LINE: overriding earlier entry for KEY on line
 * N: the last value wins"), as Postfix's postconf warns; -o is no duplicate.
 */
int config_load(struct config *c, const char *path, char *err, size_t errlen);

/* Apply one "key=value" (a -o option); where names the source for errors. */
int config_set(struct config *c, const char *key, const char *value,
		const char *where, char *err, size_t errlen);

/* Checks that need all keys (e.g. limits that must agree), and each
 * activator complete and consistent (its password_file read, its port
 * defaulted from its method). Returns 0, or -1 with err set to "WHERE: what
 * is wrong": an activator's error names the file:line of the key at fault
 * (of its first key for a missing field) or "command line -o"; the others
 * the file config_load() read ("" when none). */
int config_finish(struct config *c, char *err, size_t errlen);

/* The Sentinel part of config_finish() (etrnctl uses it alone): with
 * redis_sentinels and redis_master_name both set, r becomes TCP to whatever
 * master they name and display says so; one without the other, or a unix
 * socket "redis", is an error prefixed by where ("FILE: " or ""). 0 or -1. */
int config_redis_sentinel_finish(struct config_redis *r, const char *where, char *err,
		size_t errlen);

/* The TLS keys against each other and the files: listen_tls without
 * tls_cert_file, a certificate without a key (or the reverse), a file that
 * cannot be read. Returns 0, or -1 with err set to "FILE:LINE: what is
 * wrong" (where the offending key was set). */
int config_check_tls(const struct config *c, char *err, size_t errlen);

/*
 * Parse a Redis address: "unix:/path/redis.sock", "host:port", "[v6]:port",
 * or "redis://[[user]:password@]host[:port][/db]" (user and password may use
 * %XX escapes). Returns 0, or -1 with why set to the reason (no key name).
 * Also what etrnctl's --redis takes.
 */
int config_redis_parse(struct config_redis *r, const char *v, char *why, size_t whylen);

/* A host or domain name as RFC 1035 2.3.1 / RFC 1123 2.1 allow it: labels
 * of 1-63 letters, digits, hyphens (and underscores, which real DNS has), not
 * starting or ending with a hyphen, 253 octets in all, no trailing dot.
 * Returns the number of labels, 0 when the name is bad. */
unsigned config_host_labels(const char *h, size_t n);

/* The resolver's settings (dns_servers, dns_timeout; the rest defaults)
 * for resolver_new(). rc->servers points into c, which must outlive the
 * call (resolver_new copies it). */
struct resolver_conf;
void config_resolver_conf(const struct config *c, struct resolver_conf *rc);

/* Release what config_defaults/config_load allocated. */
void config_free(struct config *c);

#endif
