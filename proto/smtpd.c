/* SPDX-License-Identifier: MIT */
/*
 * smtpd: glue between loop connections, smtp_server sessions and the spool
 * (see smtpd.h). Ownership rule: a connection's state outlives the connection
 * while its message is being committed, because the spool borrows the body
 * from the session until the commit completes; the commit callback frees it
 * then. So a client that vanishes mid-commit never leaves the kernel writing
 * from freed memory. The same holds while an AUTH check is out on the
 * verifier pool: its answer finds the state and frees it if the client
 * has gone. STARTTLS and implicit TLS: the loop does the handshake
 * (conn_starttls()); the session hears of it through ops->tls_done.
 * ATRN (RFC 2645): once the drain takes it, the connection leaves us
 * (conn_detach()) for the ATRN session, and its state is freed at once.
 * The other way round (smtpd_adopt_reversed()), an activator's ATRN
 * connection comes to us as a parcel and is served like an accepted one;
 * its end is told to the activator from ops->close.
 */
#include "proto/smtpd.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ascii.h"
#include "core/cidr.h"
#include "core/list.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/rcptset.h"
#include "core/tls.h"
#include "proto/auth.h"
#include "proto/smtp_parse.h"
#include "proto/drain.h"
#include "proto/atrn.h"
#include "proto/drain_atrn.h"
#include "proto/etrn.h"
#include "proto/expire.h"
#include "proto/qid.h"
#include "proto/smtp_check.h"
#include "proto/smtp_server.h"
#include "store/domstat.h"
#include "store/spool_rec.h"

#define SMTPD_BUSY_MAX 256
#define SMTPD_SIZE_MIN 1024     /* message_size_limit's own minimum (core/config.c) */

struct smtpd {
	const struct config *cfg;
	const struct domtab_live *dt;  /* the published domain table */
	struct spool_shard *spool;
	struct expire *expire;
	struct drain *drain;
	struct tls_ctx *tls;                /* STARTTLS server context, NULL: none */
	const struct auth_backend *auth;    /* password checks, NULL: no AUTH */
	const struct auth_backend *cluster_auth; /* node AUTH on cluster_listen */
	unsigned auth_pending;              /* checks out on the verifier pool */
	/* Sessions whose connection is gone while their check is out: the
	 * answer frees them, or smtpd_free() does when the loop finished
	 * first (it drops posts then, so no answer can come after). */
	struct list auth_orphans;
	struct smtp_server_conf sconf;
	struct smtp_check_chain *chain;     /* policy checkers, NULL: none */
	/* RFC 5321 4.5.1: where <postmaster> goes; the config's postmaster
	 * key, or postmaster@hostname, domain lower-cased as the spool index
	 * keys it. */
	char postmaster[CONFIG_ADDR_MAX + 1];
	/* Scratch for handing recipient lists to the spool (copied there). */
	const char **rcpt;
	size_t *rcpt_len;
	unsigned rcpt_cap;
	char busy[SMTPD_BUSY_MAX];
};

/* ATRN's reversed session (smtpd_adopt_reversed()): whom to tell when
 * it ends, and what. */
struct smtpd_reversed {
	char *upstream;              /* the peer's name in logs (our copy) */
	smtpd_reversed_fn done;
	void *arg;
	unsigned msgs;               /* messages answered 250 */
};

struct smtpd_conn {
	struct smtpd *d;
	struct conn *c;              /* NULL once the connection is gone */
	struct smtp_session *s;
	int commit_pending;
	int auth_pending;            /* an AUTH check is out: smtpd_auth_done() */
	int check_pending;           /* a policy check is out: smtpd_check_done() */
	struct smtp_check_run *run;  /* the policy checks' run, NULL: none */
	struct list_node orphan;     /* in d->auth_orphans once c is gone */
	int tls_pending;             /* the handshake runs: smtpd_tls_done() */
	int peer_eof;                /* the client closed while we committed
	                                or checked a password */
	int stopping;                /* the server is shutting down */
	int closing;                 /* conn_close() called */
	int relay_logged;            /* "may relay" said for this session */
	int cluster;                 /* came through cluster_listen */
	struct smtpd_reversed *rev;  /* ATRN's reversed session; NULL: accepted */
};

/* Bytes held against a row's quota: the domain's own for an exact row; for
 * a wildcard row "*.example.test", everything held under example.test
 * (store/domstat.h counts it under the row's name), so any number of
 * subdomains share the one quota. */
static uint64_t smtpd_quota_used(const struct domstat *ds, const struct domtab_row *row,
				 const char *domain, size_t len)
{
	if (row->name[0] == '*')
		return domstat_bytes(ds, row->name, strlen(row->name));
	return domstat_bytes(ds, domain, len);
}

/*
 * A domain with a row is a customer's: taken from anyone (its mode, hold or
 * deliver, is the scheduler's business, not the sender's). A domain with no
 * row is relaying: only for a session with the relay right (mynetworks or
 * AUTH), never an open relay. Unknown while Redis is unreachable may just
 * mean "not heard of yet", a customer whose mail must be held, not sent
 * on: 451 4.3.0 so the sender retries (DESIGN.md 4), relay right or not.
 */
static enum smtp_rcpt_verdict smtpd_rcpt_check(void *arg, const char *domain,
					       size_t len, int relay)
{
	struct smtpd *d = arg;
	const struct domtab_row *row;

	/* The table pointer is only good for this loop turn (QSBR): never
	 * keep it. */
	row = domtab_find(domtab_live_get(d->dt), domain, len);
	if (!row) {
		if (domtab_live_stale(d->dt))
			return SMTP_RCPT_TEMPFAIL;
		return relay ? SMTP_RCPT_OK : SMTP_RCPT_DENY;
	}
	/* Quota (DESIGN.md 5): refuse new mail once the domain holds its
	 * quota; the sender retries (452 4.2.2) after the customer drains. */
	if (row->quota_bytes &&
	    smtpd_quota_used(spool_shard_domstat(d->spool), row, domain, len) >= row->quota_bytes)
		return SMTP_RCPT_OVER_QUOTA;
	return SMTP_RCPT_OK;
}

/*
 * Recipient validation (issue 19): a row with rcpt_check on takes only the
 * recipients of its set (core/rcptset.h), like Postfix's
 * relay_recipient_maps; with no set loaded yet (Redis unreachable at start,
 * or the set refused over a cap) the answer is Postfix's for an
 * unavailable map: 451 4.3.0, so the sender retries. Never a later bounce.
 */
static enum smtp_rcpt_verdict smtpd_rcpt_user(void *arg, const char *addr, size_t len,
					      size_t domain_off)
{
	struct smtpd *d = arg;
	const struct domtab_row *row;

	/* Valid for this loop turn only, like the table (QSBR). */
	row = domtab_find(domtab_live_get(d->dt), addr + domain_off, len - domain_off);
	if (!row || !row->rcpt_check)
		return SMTP_RCPT_OK;
	if (!row->rcpts)
		return SMTP_RCPT_NO_USERS;
	return rcptset_has(row->rcpts, addr, len, domain_off) ? SMTP_RCPT_OK : SMTP_RCPT_NO_USER;
}

static void smtpd_new_id(void *arg, uint64_t *msgid, char *qid)
{
	struct smtpd *d = arg;

	*msgid = spool_shard_new_msgid(d->spool);
	qid_format(*msgid, qid);
}

static void smtpd_etrn(void *arg, const char *client, const char *user, const char *node,
		       size_t len, struct buf *out)
{
	struct smtpd *d = arg;

	if (!d->drain) {
		(void)buf_printf(out, "458 4.3.0 Unable to queue messages for node %.*s\r\n",
				 (int)len, node);
		return;
	}
	drain_etrn(d->drain, client, user, node, len, out);
}

/* Fill d->postmaster and point the session config at it; with a hostname
 * too long for "postmaster@hostname" (config.c allows 253 octets) the
 * postmaster is refused as before, and said so once. */
static void smtpd_postmaster(struct smtpd *d, const struct config *cfg)
{
	char *at;
	int n;

	if (cfg->postmaster[0])
		n = snprintf(d->postmaster, sizeof(d->postmaster), "%s", cfg->postmaster);
	else
		n = snprintf(d->postmaster, sizeof(d->postmaster), "postmaster@%s", cfg->hostname);
	if (n < 0 || (size_t)n >= sizeof(d->postmaster)) {
		log_warn("postmaster@%s is too long for an address: RCPT TO:<postmaster> refused; set postmaster",
			 cfg->hostname);
		return;
	}
	at = strrchr(d->postmaster, '@');
	ascii_lower_copy(at, at, strlen(at));
	d->sconf.postmaster = d->postmaster;
}

void smtpd_set_drain(struct smtpd *d, struct drain *dr)
{
	d->drain = dr;
}

void smtpd_set_budget(struct smtpd *d, struct budget *b)
{
	d->sconf.data_budget = b;
}

void smtpd_set_tls(struct smtpd *d, struct tls_ctx *ctx)
{
	d->tls = ctx;
	d->sconf.starttls = ctx != NULL;
}

void smtpd_set_auth(struct smtpd *d, const struct auth_backend *b)
{
	d->auth = b && b->check ? b : NULL;
	d->sconf.auth = d->auth != NULL;
}

void smtpd_set_cluster_auth(struct smtpd *d, const struct auth_backend *b)
{
	d->cluster_auth = b && b->check ? b : NULL;
}

/* The server limits cfg gives a session (the one place they are copied). */
static void smtpd_limits(const struct config *cfg, struct smtp_limits *l)
{
	l->command_max = cfg->smtp_command_max;
	l->line_max = cfg->smtp_line_max;
	l->max_recipients = cfg->smtp_max_recipients;
	l->size_max = cfg->message_size_limit;
	l->max_errors = cfg->smtp_max_errors;
	l->bare_lf_normalize = cfg->bare_lf_normalize;
	/* Stop taking pipelined commands while the peer has not read this
	 * much of our replies: the loop resumes the connection (loop.h). */
	l->reply_max = LOOP_OUT_HIGH;
}

size_t smtpd_record_max(const struct config *cfg)
{
	struct smtp_limits l;
	size_t path = SMTP_PATH_MAX;
	size_t head0 = spool_rec_msg_head_size(0, 0, NULL);
	size_t per_rcpt = spool_rec_msg_head_size(0, 1, &path) - head0;
	size_t head = spool_rec_msg_head_size(SMTP_PATH_MAX, 0, NULL) +
		      per_rcpt * cfg->smtp_max_recipients;
	size_t body;

	smtpd_limits(cfg, &l);
	body = smtp_server_body_max(&l, cfg->hostname);
	return body > SIZE_MAX - head ? SIZE_MAX : head + body;
}

/* Lower a default message_size_limit until its worst-case record fits a
 * segment; 0 when even the smallest does not. */
static int smtpd_fit_size(struct config *cfg)
{
	size_t was = cfg->message_size_limit;
	size_t over = smtpd_record_max(cfg) - cfg->segment_size;

	/* Each byte of message costs up to 4/3 stored: step down by 3/4 of
	 * the overshoot, then byte by byte for the rounding. */
	cfg->message_size_limit = over / 4 * 3 > was ? 0 : was - over / 4 * 3;
	while (cfg->message_size_limit > 0 && smtpd_record_max(cfg) > cfg->segment_size)
		cfg->message_size_limit--;
	if (cfg->message_size_limit < SMTPD_SIZE_MIN) {
		cfg->message_size_limit = was; /* for the error message */
		return 0;
	}
	log_info("message_size_limit lowered from %zu to %zu (the default), so a "
		 "message's worst-case record fits segment_size %zu", was,
		 cfg->message_size_limit, cfg->segment_size);
	return 1;
}

int smtpd_check_config(struct config *cfg, char *err, size_t errlen)
{
	const char *msl_at = cfg->message_size_limit_at[0] ? cfg->message_size_limit_at :
			     "default";
	const char *seg_at = cfg->segment_size_at[0] ? cfg->segment_size_at : "default";
	size_t rec = smtpd_record_max(cfg);
	struct smtp_limits l;
	size_t body;

	if (rec > cfg->segment_size && (cfg->message_size_limit_at[0] || !smtpd_fit_size(cfg))) {
		snprintf(err, errlen, "%s: message_size_limit %zu: such a message is stored "
			 "as up to %zu bytes (dot-stuffing 4/3, our Received: header, %u "
			 "recipients), more than segment_size %zu (%s): lower it or raise "
			 "segment_size", cfg->message_size_limit_at[0] ? msl_at : seg_at,
			 cfg->message_size_limit, rec,
			 cfg->smtp_max_recipients, cfg->segment_size, seg_at);
		return -1;
	}
	smtpd_limits(cfg, &l);
	body = smtp_server_body_max(&l, cfg->hostname);
	if (body > cfg->data_memory_limit) {
		snprintf(err, errlen, "%s: data_memory_limit %zu: one message of "
			 "message_size_limit %zu (%s) is buffered as up to %zu bytes, so it "
			 "could never be taken", cfg->data_memory_limit_at[0] ?
			 cfg->data_memory_limit_at : "default", cfg->data_memory_limit,
			 cfg->message_size_limit, msl_at, body);
		return -1;
	}
	return 0;
}

struct smtpd *smtpd_new(const struct config *cfg, const struct domtab_live *dt)
{
	struct smtpd *d = calloc(1, sizeof(*d));
	struct buf busy;

	if (!d)
		return NULL;
	d->cfg = cfg;
	d->dt = dt;
	list_init(&d->auth_orphans);
	d->sconf.hostname = cfg->hostname;
	smtpd_limits(cfg, &d->sconf.limits);
	d->sconf.rcpt_check = smtpd_rcpt_check;
	d->sconf.rcpt_user = smtpd_rcpt_user;
	d->sconf.rcpt_arg = d;
	d->sconf.new_id = smtpd_new_id;
	d->sconf.new_id_arg = d;
	d->sconf.etrn = smtpd_etrn;
	d->sconf.etrn_arg = d;
	d->sconf.allow_untrusted_routing = cfg->allow_untrusted_routing;
	d->sconf.atrn = cfg->smtp_atrn;
	smtpd_postmaster(d, cfg);
	buf_init(&busy, sizeof(d->busy) - 1);
	smtp_server_reply_busy(&busy, cfg->hostname);
	if (busy.len)
		memcpy(d->busy, busy.data, busy.len);
	buf_free(&busy);
	return d;
}

/* A domain's own max_hold from its row; 0 = the default. The table pointer
 * is used within this call only (QSBR). */
static uint64_t smtpd_hold(void *arg, const char *domain, size_t len)
{
	struct smtpd *d = arg;
	const struct domtab_row *row = domtab_find(domtab_live_get(d->dt), domain, len);

	return row ? row->max_hold_ms * 1000 : 0;
}

/* Keep the loop running while an AUTH answer is still to come, so it
 * finds the loop and frees what waits for it (shutdown_timeout bounds
 * this). */
static int smtpd_busy(void *arg)
{
	const struct smtpd *d = arg;

	return d->auth_pending > 0;
}

int smtpd_set_spool(struct smtpd *d, struct spool_shard *sh)
{
	struct expire_conf ec;
	int rc;

	d->spool = sh;
	memset(&ec, 0, sizeof(ec));
	ec.hostname = d->cfg->hostname;
	ec.max_hold_us = (uint64_t)d->cfg->max_hold_ms * 1000;
	ec.delay_warning_us = (uint64_t)d->cfg->delay_warning_ms * 1000;
	ec.clock_offset_us = (int64_t)d->cfg->clock_offset_ms * 1000;
	ec.hold = smtpd_hold;
	ec.hold_arg = d;
	/* Expiry registers its own per-turn work on the shard's loop. */
	d->expire = expire_new(&ec, sh);
	if (!d->expire)
		return -errno;
	rc = loop_add_busy_check(spool_shard_loop(sh), "smtpd auth", smtpd_busy, d);
	return rc;
}

const char *smtpd_busy_reply(const struct smtpd *d)
{
	return d->busy;
}

int smtpd_add_checker(struct smtpd *d, const struct smtp_checker *ck)
{
	int rc;

	if (!d->chain && !(d->chain = smtp_check_chain_new()))
		return -ENOMEM;
	rc = smtp_check_chain_add(d->chain, ck);
	d->sconf.check_stages = smtp_check_chain_stages(d->chain);
	return rc;
}

static void smtpd_conn_free(struct smtpd_conn *sc);

struct smtpd *smtpd_free(struct smtpd *d)
{
	struct list_node *n;

	if (!d)
		return NULL;
	/* The loop has finished: answers still out were dropped with it. */
	while ((n = list_pop(&d->auth_orphans)) != NULL)
		smtpd_conn_free(LIST_ENTRY(n, struct smtpd_conn, orphan));
	expire_free(d->expire);
	smtp_check_chain_free(d->chain);
	free(d->rcpt);
	free(d->rcpt_len);
	free(d);
	return NULL;
}

static void smtpd_reversed_free(struct smtpd_reversed *rev)
{
	if (rev)
		free(rev->upstream);
	free(rev);
}

static void smtpd_conn_free(struct smtpd_conn *sc)
{
	if (!sc)
		return;
	smtpd_reversed_free(sc->rev);
	smtp_check_run_free(sc->run);
	smtp_server_free(sc->s);
	free(sc);
}

/* A connection's state and its session, as every kind of connection
 * starts: peer is the client's printable address. NULL when out of
 * memory. */
static struct smtpd_conn *smtpd_conn_new(struct smtpd *d, const char *peer)
{
	struct smtpd_conn *sc = calloc(1, sizeof(*sc));

	if (!sc)
		return NULL;
	sc->d = d;
	sc->s = smtp_server_new(&d->sconf, peer);
	if (!sc->s) {
		free(sc);
		return NULL;
	}
	return sc;
}

/* mynetworks (core/config.h): may the client at peer (printable, as the
 * loop gives it) relay? */
static int smtpd_in_mynetworks(const struct config *cfg, const char *peer)
{
	struct sockaddr_storage ss;

	if (cfg->nmynetworks == 0 || etrn_client_addr(peer, &ss) != 0)
		return 0;
	return cidr_list_match(cfg->mynetworks, cfg->nmynetworks, (struct sockaddr *)&ss);
}

/* A submission listener where AUTH can never be offered takes no mail at
 * all: say so once per process, at its first connection (the backends
 * are attached by then). */
static void smtpd_submission_check(const struct smtpd *d, unsigned lflags)
{
	static atomic_int warned;

	if (d->auth && (d->tls || (lflags & CONFIG_LISTEN_TRUSTED)))
		return;
	if (atomic_exchange(&warned, 1))
		return;
	log_warn("submission_listen: AUTH is never offered there (%s), so every MAIL gets 530 5.7.0",
		 !d->auth ? "no password checks: redis is not set" : "no TLS: tls_cert_file is not set");
}

/* Set up what the listener and the client's address decide: the kind of
 * listener (CONFIG_LISTEN_*, core/config.h) and the relay right. */
static void smtpd_open_kind(struct smtpd_conn *sc, struct conn *c, const char *peer)
{
	unsigned lflags = conn_listen_flags(c);

	if (lflags & CONFIG_LISTEN_TRUSTED)
		smtp_server_set_trusted(sc->s);
	if (lflags & CONFIG_LISTEN_ODMR)
		smtp_server_set_odmr(sc->s);
	if (lflags & CONFIG_LISTEN_SUBMISSION) {
		smtp_server_set_submission(sc->s);
		smtpd_submission_check(sc->d, lflags);
	}
	/* Issue 16: other nodes only. AUTH in the clear only where the
	 * transfers may go in the clear (cluster_tls = may) and no TLS can be
	 * offered; mynetworks gives no relay right here: a node's AUTH does. */
	if (lflags & CONFIG_LISTEN_CLUSTER) {
		sc->cluster = 1;
		smtp_server_set_cluster(sc->s);
		if (!sc->d->tls && sc->d->cfg->cluster_tls == CONFIG_CLUSTER_TLS_MAY)
			smtp_server_set_trusted(sc->s);
		return;
	}
	if (smtpd_in_mynetworks(sc->d->cfg, peer)) {
		smtp_server_set_relay(sc->s);
		log_info("client [%s] may relay: mynetworks", peer);
		sc->relay_logged = 1;
	}
}

static void smtpd_check_done(void *arg, const struct smtp_verdict *v, const struct buf *edits);
static void smtpd_close_conn(struct smtpd_conn *sc);

/* Policy checks for an accepted client's session (not for other nodes on
 * cluster_listen, nor for ATRN's reversed session: mail that has been
 * checked where it came in). 0, or -ENOMEM. */
static int smtpd_check_open(struct smtpd_conn *sc)
{
	if (!sc->d->chain || sc->cluster)
		return 0;
	sc->run = smtp_check_run_new(sc->d->chain, smtpd_check_done, sc);
	return sc->run ? 0 : -ENOMEM;
}

/* SMTP_EV_CHECK (or the connect stage after the greeting): run the chain
 * for the stage awaited. Returns 1 when the verdict comes later
 * (smtpd_check_done() resumes the input); 0 when it is in: *ev is then
 * smtp_server_check_done()'s event. */
static int smtpd_check(struct smtpd_conn *sc, struct buf *out, enum smtp_event *ev)
{
	static const struct smtp_verdict cont = { .kind = SMTP_VERDICT_CONTINUE };
	enum smtp_check_stage stage = smtp_server_check_stage(sc->s);

	if (sc->run && smtp_check_run_start(sc->run, sc->s, stage) == 0) {
		sc->check_pending = 1;
		return 1;
	}
	*ev = smtp_server_check_done(sc->s, sc->run ? smtp_check_run_verdict(sc->run) : &cont,
				     sc->run ? smtp_check_run_edits(sc->run) : NULL, out);
	return 0;
}

static void *smtpd_open(void *arg, struct conn *c, const char *peer)
{
	struct smtpd_conn *sc = smtpd_conn_new(arg, peer);
	enum smtp_event ev;

	if (!sc)
		return NULL;
	sc->c = c;
	log_debug("connect from [%s]", peer);
	smtpd_open_kind(sc, c, peer);
	if (smtpd_check_open(sc)) {
		smtpd_conn_free(sc);
		return NULL;
	}
	/* Implicit TLS (listen_tls): the loop holds the greeting until its
	 * handshake is done, and tells us through smtpd_tls_done(). */
	if (conn_listen_flags(c) & CONFIG_LISTEN_TLS)
		sc->tls_pending = 1;
	smtp_server_greeting(sc->s, conn_out(c));
	/* The connect check holds the greeting back until its verdict. */
	if (smtp_server_check_stage(sc->s) != SMTP_CHECK_NONE && !smtpd_check(sc, conn_out(c), &ev) &&
	    ev == SMTP_EV_CLOSE)
		smtpd_close_conn(sc);
	return sc;
}

/* Once the server is stopping, a session leaves as soon as it has no
 * transaction open (RFC 5321 3.8: 421 before closing). */
static void smtpd_close_conn(struct smtpd_conn *sc)
{
	sc->closing = 1;
	conn_close(sc->c);
}

static void smtpd_maybe_leave(struct smtpd_conn *sc)
{
	if (!sc->stopping || sc->closing || sc->commit_pending || sc->auth_pending ||
	    sc->check_pending || !smtp_server_idle(sc->s))
		return;
	smtp_server_shutdown(sc->s, conn_out(sc->c));
	smtpd_close_conn(sc);
}

/* The client closed its side: end the session and close ours. */
static void smtpd_eof(struct smtpd_conn *sc)
{
	enum smtp_event ev;

	(void)smtp_server_feed(sc->s, NULL, 0, conn_out(sc->c), &ev);
	log_debug("disconnect from [%s]", conn_peer(sc->c));
	smtpd_close_conn(sc);
}

static void smtpd_committed(void *arg, int err)
{
	struct smtpd_conn *sc = arg;
	const struct smtp_tx *tx = smtp_server_tx(sc->s);
	size_t slen, blen;
	const char *sender = smtp_tx_sender(tx, &slen);
	char from[LOG_ADDR_MAX];

	sc->commit_pending = 0;
	(void)smtp_tx_body(tx, &blen);
	/* log_printable() costs even when the line is not logged. */
	if (err == 0 && log_enabled(LOGL_INFO))
		log_info("%s: from=<%s>, size=%zu, nrcpt=%u, client=[%s]%s",
			 smtp_tx_qid(tx), log_printable(from, sizeof(from), sender, slen), blen,
			 smtp_tx_nrcpt(tx), sc->c ? conn_peer(sc->c) : "gone",
			 sc->c ? "" : " (client left before the reply)");
	else if (err != 0)
		log_warn("%s: not stored: %s", smtp_tx_qid(tx), strerror(-err));
	if (!sc->c) {
		/* The client left while we wrote: the record is stored (or
		 * not) all the same; nobody is waiting for the reply. */
		smtpd_conn_free(sc);
		return;
	}
	smtp_server_commit_done(sc->s, err, conn_out(sc->c));
	conn_flush(sc->c);
	if (err == 0 && sc->rev)
		sc->rev->msgs++;
	if (sc->peer_eof) {
		/* Closed right after its final dot: the reply goes out (to a
		 * half-closed peer it still arrives), then we close at once. */
		smtpd_eof(sc);
		return;
	}
	conn_resume(sc->c);
	smtpd_maybe_leave(sc);
}

/* End of DATA: would this message take a recipient domain over its quota?
 * -EDQUOT (452 4.2.2, nothing written) if so. */
static int smtpd_over_quota(struct smtpd *d, const struct smtp_tx *tx)
{
	const struct domtab *t = domtab_live_get(d->dt);
	struct domstat *ds = spool_shard_domstat(d->spool);
	size_t body;

	(void)smtp_tx_body(tx, &body);
	for (unsigned i = 0; i < smtp_tx_nrcpt(tx); i++) {
		size_t len, off = smtp_tx_rcpt_domain_off(tx, i);
		const char *a = smtp_tx_rcpt(tx, i, &len);
		const struct domtab_row *row = domtab_find(t, a + off, len - off);

		if (row && row->quota_bytes &&
		    smtpd_quota_used(ds, row, a + off, len - off) + body > row->quota_bytes)
			return -EDQUOT;
	}
	return 0;
}

/* Hand a finished message to the spool. Returns 0 when the commit is under
 * way (smtpd_committed() follows), else -errno (nothing queued). */
static int smtpd_commit(struct smtpd_conn *sc)
{
	struct smtpd *d = sc->d;
	const struct smtp_tx *tx = smtp_server_tx(sc->s);
	unsigned n = smtp_tx_nrcpt(tx), flags = smtp_tx_flags(tx);
	struct spool_msg m;
	int rc;

	if (n > d->rcpt_cap) {
		const char **r = realloc(d->rcpt, n * sizeof(*r));
		size_t *rl;

		if (r)
			d->rcpt = r;
		rl = r ? realloc(d->rcpt_len, n * sizeof(*rl)) : NULL;
		if (!rl)
			return -ENOMEM;
		d->rcpt_len = rl;
		d->rcpt_cap = n;
	}
	for (unsigned i = 0; i < n; i++)
		d->rcpt[i] = smtp_tx_rcpt(tx, i, &d->rcpt_len[i]);
	rc = smtpd_over_quota(d, tx);
	if (rc)
		return rc;
	memset(&m, 0, sizeof(m));
	m.msgid = smtp_tx_msgid(tx);
	/* Quarantine (a hold verdict, e.g. a milter's SMFIR_QUARANTINE):
	 * stored held, like Postfix's hold queue; no drain takes it until an
	 * operator releases it (etrnctl message release). */
	m.flags = (uint16_t)(((flags & SMTP_TX_8BITMIME) ? SPOOL_MSG_8BITMIME : 0) |
			     ((flags & SMTP_TX_SMTPUTF8) ? SPOOL_MSG_SMTPUTF8 : 0) |
			     (smtp_tx_held(tx) ? SPOOL_MSG_HELD : 0));
	m.sender = smtp_tx_sender(tx, &m.sender_len);
	m.nrcpt = n;
	m.rcpt = d->rcpt;
	m.rcpt_len = d->rcpt_len;
	m.body = smtp_tx_body(tx, &m.body_len);
	rc = spool_append_msg(d->spool, &m, smtpd_committed, sc);
	if (rc == 0)
		sc->commit_pending = 1;
	return rc;
}

/* An answer that came later (AUTH, a policy check) is in and its reply
 * written: send it, then close, finish an EOF the client sent meanwhile,
 * or take input again. */
static void smtpd_answered(struct smtpd_conn *sc, enum smtp_event ev)
{
	conn_flush(sc->c);
	if (ev == SMTP_EV_CLOSE && !sc->closing) {
		smtpd_close_conn(sc);
		return;
	}
	if (sc->peer_eof) {
		smtpd_eof(sc);
		return;
	}
	conn_resume(sc->c);
	smtpd_maybe_leave(sc);
}

/* The verifier pool's answer (proto/auth.h), on this loop. */
static void smtpd_auth_done(void *arg, uint64_t handle, enum auth_result r)
{
	struct smtpd_conn *sc = arg;
	enum smtp_event ev;

	(void)handle; /* sc outlives its connection while a check is out */
	sc->auth_pending = 0;
	sc->d->auth_pending--;
	if (!sc->c) {
		/* The client left (or timed out) meanwhile: nobody to answer;
		 * freeing the session wipes what it held. */
		log_info("AUTH from a client gone before the answer (%s)",
			 r == AUTH_OK ? "ok" : "failed");
		list_unlink(&sc->d->auth_orphans, &sc->orphan);
		smtpd_conn_free(sc);
		return;
	}
	ev = smtp_server_auth_done(sc->s, r, conn_out(sc->c));
	if (r == AUTH_OK && !sc->relay_logged && smtp_server_user(sc->s)) {
		char user[AUTH_USER_MAX * 4 + 1];
		const char *u = smtp_server_user(sc->s);

		log_info("client [%s] may relay: authenticated as %s", conn_peer(sc->c),
			 log_printable(user, sizeof(user), u, strlen(u)));
		sc->relay_logged = 1;
	}
	smtpd_answered(sc, ev);
}

/* SMTP_EV_AUTH: hand the credentials to the verifier pool and wipe our
 * copy of the password at once. Returns 1 when the answer comes later
 * (smtpd_auth_done() resumes the input), 0 when it was given at once. */
static int smtpd_auth(struct smtpd_conn *sc, struct buf *out, enum smtp_event *ev)
{
	const struct auth_backend *b = sc->cluster ? sc->d->cluster_auth : sc->d->auth;
	struct smtp_session *s = sc->s;
	const char *pass;
	size_t plen;
	int rc = -AUTH_TEMP;

	pass = smtp_server_auth_pass(s, &plen);
	if (b)
		rc = b->check(b->arg, conn_loop(sc->c), conn_handle(sc->c), conn_peer(sc->c),
		      smtp_server_auth_user(s), pass, plen, smtpd_auth_done, sc);
	smtp_server_auth_wipe(s);
	if (rc == 0) {
		sc->auth_pending = 1;
		sc->d->auth_pending++;
		return 1;
	}
	*ev = smtp_server_auth_done(s, rc == -AUTH_LIMITED ? AUTH_LIMITED : AUTH_TEMP, out);
	return 0;
}

/* The chain's verdict, later (smtp_check.h), on this loop. The run ends
 * with the connection (ops->close), so c is still there. */
static void smtpd_check_done(void *arg, const struct smtp_verdict *v, const struct buf *edits)
{
	struct smtpd_conn *sc = arg;
	enum smtp_event ev;
	int rc;

	sc->check_pending = 0;
	ev = smtp_server_check_done(sc->s, v, edits, conn_out(sc->c));
	if (ev == SMTP_EV_COMMIT) {
		rc = smtpd_commit(sc);
		if (rc == 0) {
			conn_flush(sc->c);
			return; /* smtpd_committed() goes on */
		}
		smtp_server_commit_done(sc->s, rc, conn_out(sc->c));
	}
	smtpd_answered(sc, ev);
}

/* SMTP_EV_STARTTLS: the 220 is in the output, sent in the clear; the loop
 * drops whatever came after the STARTTLS line and starts the handshake.
 * Returns 0, or -1 when it could not (the connection is closed). */
static int smtpd_starttls(struct smtpd_conn *sc)
{
	int rc;

	if (sc->tls_pending)
		return 0;
	rc = conn_starttls(sc->c, sc->d->tls, NULL);
	if (rc) {
		/* The client has its 220 and will start a handshake nobody
		 * answers: end the connection rather than leave it hanging. */
		log_warn("STARTTLS from [%s]: cannot start TLS: %s", conn_peer(sc->c), strerror(-rc));
		smtpd_close_conn(sc);
		return -1;
	}
	sc->tls_pending = 1;
	return 0;
}

/*
 * SMTP_EV_ATRN (RFC 2645): the drain decides and writes the reply. When it
 * takes the ATRN, its 250 is in the output and the connection goes to the
 * ATRN session: conn_detach() sends the 250, then hands over the socket,
 * TLS and the input after the ATRN line (the customer's 220). Returns 1
 * when the connection has left us (sc is freed: touch nothing), 0 when the
 * session goes on (refused: the reply is in out).
 */
static int smtpd_atrn(struct smtpd_conn *sc, struct buf *out)
{
	struct smtpd *d = sc->d;
	struct drain_atrn *as = NULL;
	const char *list;
	size_t len;
	int rc;

	/* ATRN is taken only with no transaction open, and nothing else runs
	 * while the session waits for this answer. */
	if (sc->commit_pending || sc->auth_pending || sc->tls_pending || sc->closing)
		panic("smtpd_atrn: commit %d auth %d tls %d closing %d", sc->commit_pending,
		      sc->auth_pending, sc->tls_pending, sc->closing);
	list = smtp_server_atrn_domains(sc->s, &len);
	size_t from = out->len;
	/* The drain's own 451s: shutting down, or the generic one. */
	if (!d->drain || sc->stopping)
		(void)atrn_reply(out, sc->stopping ? ATRN_STOPPING : ATRN_NO_MEMORY);
	else if (sc->cluster)
		as = drain_atrn_node(d->drain, conn_peer(sc->c), smtp_server_user(sc->s), list,
				     len, out);
	else
		as = drain_atrn(d->drain, conn_peer(sc->c), smtp_server_user(sc->s), list, len, out);
	metrics_replies(out, from, metrics_atrn_reply);
	smtp_server_atrn_done(sc->s, as != NULL);
	if (!as)
		return 0;
	conn_flush(sc->c);
	rc = conn_detach(sc->c, drain_atrn_take, as);
	if (rc) {
		/* Never while we are its owner and not closing (checked
		 * above); should it happen, the ATRN session ends as if the
		 * customer had left, and the connection closes. */
		log_warn("ATRN from [%s]: cannot hand the connection over: %s",
			 conn_peer(sc->c), strerror(-rc));
		drain_atrn_take(as, NULL);
		smtpd_close_conn(sc);
		return 0;
	}
	/* No ops->close follows a detach: the state is ours to free now. */
	sc->c = NULL;
	smtpd_conn_free(sc);
	return 1;
}

/* Feed p[0..n) to the session and act on its events. Returns the octets
 * consumed; *gone is set when the connection left us (ATRN). */
static size_t smtpd_feed(struct smtpd_conn *sc, const char *p, size_t n, int *gone)
{
	struct buf *out = conn_out(sc->c);
	enum smtp_event ev;
	size_t off = 0;
	int rc;

	for (;;) {
		off += smtp_server_feed(sc->s, p + off, n - off, out, &ev);
		if (ev == SMTP_EV_CHECK && smtpd_check(sc, out, &ev))
			return off; /* resumed by smtpd_check_done() */
		switch (ev) {
		case SMTP_EV_ATRN:
			if (smtpd_atrn(sc, out)) {
				*gone = 1;
				return off; /* the rest is the ATRN session's */
			}
			if (sc->closing)
				return n;
			break;
		case SMTP_EV_AUTH:
			if (smtpd_auth(sc, out, &ev))
				return off; /* resumed by smtpd_auth_done() */
			if (ev != SMTP_EV_CLOSE)
				break; /* answered at once: go on */
			/* fall through */
		case SMTP_EV_CLOSE:
			smtpd_close_conn(sc);
			return n;
		case SMTP_EV_STARTTLS:
			(void)smtpd_starttls(sc);
			return n; /* RFC 3207 5: the rest is never executed */
		case SMTP_EV_COMMIT:
			rc = smtpd_commit(sc);
			if (rc == 0)
				return off; /* resumed by smtpd_committed() */
			smtp_server_commit_done(sc->s, rc, out);
			break;
		case SMTP_EV_NEED_INPUT:
			break; /* after a check answered at once: go on */
		default: /* OUT_FULL: the loop resumes us */
			return off;
		}
		if (off >= n)
			return off;
	}
}

static size_t smtpd_data(void *arg, struct conn *c, void *st, const char *p,
			 size_t n)
{
	struct smtpd_conn *sc = st;
	size_t off;
	int gone = 0;

	(void)arg;
	if (n == 0 && (sc->commit_pending || sc->auth_pending || sc->check_pending)) {
		/* End of file during the commit or check: told only once, so
		 * remember it; smtpd_committed() or smtpd_auth_done()
		 * replies and closes. */
		sc->peer_eof = 1;
		return 0;
	}
	/* The loop keeps the input until conn_resume(); during a handshake
	 * it hands us nothing but plaintext from after it. */
	if (sc->commit_pending || sc->auth_pending || sc->check_pending ||
	    (sc->tls_pending && n > 0))
		return 0;
	if (n == 0) {
		smtpd_eof(sc);
		return 0;
	}
	off = smtpd_feed(sc, p, n, &gone);
	if (gone)
		return off;
	conn_flush(c);
	smtpd_maybe_leave(sc);
	return off;
}

static void smtpd_tls_done(void *arg, struct conn *c, void *st, int err)
{
	struct smtpd_conn *sc = st;
	const struct tls_info *ti;

	(void)arg;
	if (err)
		return; /* the loop logged why and closes c: smtpd_close() follows */
	sc->tls_pending = 0;
	ti = conn_tls(c);
	if (ti)
		log_info("TLS connection established from [%s]: %s with cipher %s (%d/%d bits)",
			 conn_peer(c), ti->version, ti->cipher, ti->bits, ti->bits);
	smtp_server_tls_up(sc->s, ti);
	conn_resume(c);
}

static void smtpd_timeout(void *arg, struct conn *c, void *st)
{
	struct smtpd_conn *sc = st;

	(void)arg;
	log_info("timeout from [%s]", conn_peer(c));
	smtp_server_timeout(sc->s, conn_out(c));
	smtpd_close_conn(sc);
}

static void smtpd_shutdown(void *arg, struct conn *c, void *st)
{
	struct smtpd_conn *sc = st;

	(void)arg;
	(void)c;
	sc->stopping = 1;
	smtpd_maybe_leave(sc);
}

/* The end of a reversed session, told once: logged, done(), and rev
 * freed (the connection's state no longer holds it). */
static void smtpd_reversed_end(struct smtpd_reversed *rev, const char *why)
{
	log_info("reversed session from %s: ended: %u message%s, %s", rev->upstream,
		 rev->msgs, rev->msgs == 1 ? "" : "s", why);
	rev->done(rev->arg, rev->msgs, why);
	smtpd_reversed_free(rev);
}

static void smtpd_close(void *arg, struct conn *c, void *st)
{
	struct smtpd_conn *sc = st;
	struct smtpd_reversed *rev = sc->rev;
	const char *why = smtp_server_end_reason(sc->s);

	(void)arg;
	(void)c;
	/* No reason from the session: the loop ended the connection (a
	 * socket error, or cut off at shutdown_timeout). */
	if (!why)
		why = sc->stopping ? "shutdown" : "lost connection";
	sc->c = NULL;
	/* A commit still running keeps sc; its 250 can no longer be
	 * answered, so the count is final now. done() runs last: it may
	 * do anything, but sc is no longer its business. */
	sc->rev = NULL;
	/* The checkers' end(): no verdict comes after this. */
	sc->run = smtp_check_run_free(sc->run);
	sc->check_pending = 0;
	if (sc->auth_pending)
		list_append(&sc->d->auth_orphans, &sc->orphan);
	else if (!sc->commit_pending)
		smtpd_conn_free(sc);
	if (rev)
		smtpd_reversed_end(rev, why);
}

const struct conn_ops smtpd_conn_ops = {
	.open = smtpd_open,
	.data = smtpd_data,
	.timeout = smtpd_timeout,
	.shutdown = smtpd_shutdown,
	.close = smtpd_close,
	.tls_done = smtpd_tls_done,
};

/*
 * The customer's side of ATRN (smtpd.h). The session is made as for an
 * accepted connection, but never gets the relay right: the upstream may
 * hand us mail for our own domains only (rows and relay_domains), whatever
 * its address (mynetworks is not asked). It offers no STARTTLS, AUTH,
 * ETRN or ATRN (smtp_server_set_reversed()); TLS, when the parcel carries
 * it, is up before our 220, as on an implicit-TLS listener.
 */
int smtpd_adopt_reversed(struct smtpd *d, struct loop *l, struct conn_parcel *parcel,
			 const char *upstream, unsigned idle_ms, smtpd_reversed_fn done, void *arg)
{
	struct smtpd_conn *sc;
	const struct tls_info *ti;
	struct conn *c;
	int rc = -ENOMEM;

	if (!done)
		panic("no done callback");
	if (d->spool && spool_shard_loop(d->spool) != l)
		panic("loop %u is not this smtpd's (%u)", loop_index(l),
		      loop_index(spool_shard_loop(d->spool)));
	sc = smtpd_conn_new(d, conn_parcel_peer(parcel));
	if (!sc || !(sc->rev = calloc(1, sizeof(*sc->rev))) ||
	    !(sc->rev->upstream = strdup(upstream)))
		goto fail;
	sc->rev->done = done;
	sc->rev->arg = arg;
	smtp_server_set_reversed(sc->s);
	c = loop_adopt(l, parcel, &smtpd_conn_ops, d, sc);
	parcel = NULL; /* consumed either way */
	if (!c) {
		rc = errno ? -errno : -EMFILE;
		goto fail;
	}
	sc->c = c;
	/* atrn_idle_timeout: how long we wait for each of the upstream's
	 * commands, in place of idle_timeout (0: idle_timeout). */
	conn_set_timeout(c, idle_ms);
	ti = conn_tls(c);
	if (ti)
		smtp_server_tls_up(sc->s, ti);
	log_info("reversed session from %s: started%s%s%s", upstream, ti ? " (TLS " : "",
		 ti ? ti->version : "", ti ? ")" : "");
	smtp_server_greeting(sc->s, conn_out(c));
	conn_flush(c);
	return 0;
fail:
	log_warn("reversed session from %s: not started: %s", upstream, strerror(-rc));
	conn_parcel_free(parcel);
	smtpd_conn_free(sc);
	return rc;
}
