/* SPDX-License-Identifier: MIT */
/*
 * spf_smtp: see spf_smtp.h. A session's state lives from its first MAIL
 * until its end() or, when a check is out at that moment, until the
 * check's answer arrives (it is then only freed: nobody is told).
 */
#include "proto/spf_smtp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cidr.h"
#include "core/list.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/netaddr.h"
#include "proto/smtp_server.h"

#define SPF_SMTP_NAME "spf"
#define SPF_SMTP_FIELD "Received-SPF"
#define SPF_SMTP_REPLY_MAX 512          /* RFC 5321 4.5.3.1.5 */

struct spf_smtp {
	struct spf *pool;
	const struct config *cfg;
	struct loop *l;
	/* Sessions that ended with a check out: freed by its answer, or by
	 * spf_smtp_free() when the answer never came (the pool stopped). */
	struct list orphans;
};

struct spf_smtp_sess {
	struct spf_smtp *x;
	struct smtp_check_job *job;         /* the MAIL stage waiting, or NULL */
	int orphan;                         /* the session ended meanwhile */
	struct list_node on;                /* in x->orphans then */
	int have;                           /* v is this transaction's result */
	struct spf_verdict v;
	char client[SPF_CLIENT_MAX];
	char helo[SPF_IDENT_MAX];
	char sender[SPF_IDENT_MAX];
};

static const enum metric_id spf_smtp_metric[SPF_RES_COUNT] = {
	[SPF_RES_NONE] = METRIC_SPF_NONE,
	[SPF_RES_NEUTRAL] = METRIC_SPF_NEUTRAL,
	[SPF_RES_PASS] = METRIC_SPF_PASS,
	[SPF_RES_FAIL] = METRIC_SPF_FAIL,
	[SPF_RES_SOFTFAIL] = METRIC_SPF_SOFTFAIL,
	[SPF_RES_TEMPERROR] = METRIC_SPF_TEMPERROR,
	[SPF_RES_PERMERROR] = METRIC_SPF_PERMERROR,
};

/* What the policy makes of the result, with the reply text in reply. */
static enum smtp_verdict_kind spf_smtp_policy(const struct spf_smtp_sess *st, char *reply,
					      size_t len, const char **action)
{
	const struct config *cfg = st->x->cfg;

	*action = cfg->spf == CONFIG_SPF_ON ? "accepted" : "logged";
	if (cfg->spf != CONFIG_SPF_ON)
		return SMTP_VERDICT_CONTINUE;
	if (st->v.res == SPF_RES_FAIL && cfg->spf_reject_fail) {
		/* RFC 7372 3.2: 5.7.23 SPF validation failed. */
		snprintf(reply, len, "550 5.7.23 SPF: %.200s does not designate %s as permitted "
			 "sender", st->v.domain, st->client);
		*action = "rejected";
		return SMTP_VERDICT_REJECT;
	}
	if (st->v.res == SPF_RES_TEMPERROR && cfg->spf_tempfail) {
		/* RFC 7372 3.2: 4.7.24 SPF validation error. */
		snprintf(reply, len, "451 4.7.24 SPF: temporary error checking %.200s, try again "
			 "later", st->v.domain);
		*action = "deferred";
		return SMTP_VERDICT_TEMPFAIL;
	}
	return SMTP_VERDICT_CONTINUE;
}

/* The result is in (on the loop): count, log, answer the MAIL stage. */
static void spf_smtp_decide(struct spf_smtp_sess *st)
{
	char reply[SPF_SMTP_REPLY_MAX], from[LOG_TEXT_MAX];
	struct smtp_verdict sv = { .who = SPF_SMTP_NAME };
	struct smtp_check_job *job = st->job;
	const char *action;

	st->job = NULL;
	st->have = 1;
	metrics_add(spf_smtp_metric[st->v.res], 1);
	sv.kind = spf_smtp_policy(st, reply, sizeof(reply), &action);
	if (sv.kind != SMTP_VERDICT_CONTINUE) {
		sv.reply = reply;
		sv.reply_len = strlen(reply);
		sv.why = spf_res_name(st->v.res);
	}
	log_info("spf: client=%s, %s=<%s>, result=%s (%s), %s", st->client,
		 st->v.helo_identity ? "helo" : "from",
		 log_printable(from, sizeof(from), st->v.helo_identity ? st->helo : st->sender,
			       strlen(st->v.helo_identity ? st->helo : st->sender)),
		 spf_res_name(st->v.res), st->v.comment, action);
	smtp_check_answer(job, &sv);
}

/* The pool's answer, on this thread's loop. */
static void spf_smtp_done(void *arg, const struct spf_verdict *v)
{
	struct spf_smtp_sess *st = arg;

	if (st->orphan) {
		list_unlink(&st->x->orphans, &st->on);
		free(st);
		return;
	}
	st->v = *v;
	spf_smtp_decide(st);
}

/* Our own users are not checked, as Postfix puts permit_mynetworks and
 * permit_sasl_authenticated before its SPF policy service: an
 * authenticated client, or one in mynetworks. */
static int spf_smtp_trusted(const struct spf_smtp *x, const struct smtp_session *s)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (smtp_server_user(s))
		return 1;
	return x->cfg->nmynetworks &&
	       netaddr_from_text(smtp_server_client(s), 0, &ss, &len) == 0 &&
	       cidr_list_match(x->cfg->mynetworks, x->cfg->nmynetworks, (struct sockaddr *)&ss);
}

static void spf_smtp_mail(struct spf_smtp_sess *st, const struct smtp_session *s,
			  struct smtp_check_job *job)
{
	const struct spf_smtp *x = st->x;
	size_t len;
	const char *sender = smtp_server_check_arg(s, &len);
	struct spf_query q;

	st->have = 0;
	if (spf_smtp_trusted(x, s)) {
		smtp_check_answer(job, &(struct smtp_verdict){ .kind = SMTP_VERDICT_CONTINUE,
							       .who = SPF_SMTP_NAME });
		return;
	}
	snprintf(st->client, sizeof(st->client), "%s", smtp_server_client(s));
	snprintf(st->helo, sizeof(st->helo), "%s", smtp_server_helo(s));
	snprintf(st->sender, sizeof(st->sender), "%.*s",
		 len < sizeof(st->sender) ? (int)len : 0, sender);
	q = (struct spf_query){ .client = st->client, .helo = st->helo, .sender = st->sender,
				.receiver = x->cfg->hostname };
	st->job = job;
	if (spf_check(x->pool, x->l, &q, spf_smtp_done, st) == 0)
		return;
	/* Every worker busy and the queue full: a temporary error, as RFC
	 * 7208 4.6.4 treats running out of time. */
	memset(&st->v, 0, sizeof(st->v));
	st->v.res = SPF_RES_TEMPERROR;
	st->v.helo_identity = st->sender[0] == '\0';
	snprintf(st->v.domain, sizeof(st->v.domain), "%s", st->sender);
	snprintf(st->v.comment, sizeof(st->v.comment), "%d SPF checks waiting already",
		 SPF_QUEUE_MAX);
	spf_smtp_decide(st);
}

/* End of data: the Received-SPF field on top, above our Received:. */
static void spf_smtp_eom(struct spf_smtp_sess *st, struct smtp_check_job *job)
{
	struct spf_query q = { .client = st->client, .helo = st->helo, .sender = st->sender,
			       .receiver = st->x->cfg->hostname };
	char field[SPF_HEADER_MAX];
	size_t n, name = sizeof(SPF_SMTP_FIELD ": ") - 1;

	if (st->have) {
		n = spf_header(&st->v, &q, field, sizeof(field));
		/* name: value CRLF -> the value without the last CRLF. */
		if (n > name + 2 && smtp_check_edit(job, SMTP_HDR_INSERT, 0, SPF_SMTP_FIELD,
						    name - 2, field + name, n - name - 2))
			log_warn("spf: Received-SPF not added: the header edits are full");
	}
	smtp_check_answer(job, &(struct smtp_verdict){ .kind = SMTP_VERDICT_CONTINUE,
						       .who = SPF_SMTP_NAME });
}

static void spf_smtp_start(void *arg, void **state, const struct smtp_session *s,
			   enum smtp_check_stage stage, struct smtp_check_job *job)
{
	struct spf_smtp_sess *st = *state;

	if (!st) {
		st = calloc(1, sizeof(*st));
		if (!st) {
			smtp_check_answer(job, &(struct smtp_verdict){
				.kind = SMTP_VERDICT_TEMPFAIL, .who = SPF_SMTP_NAME,
				.why = "out of memory" });
			return;
		}
		st->x = arg;
		*state = st;
	}
	if (stage == SMTP_CHECK_MAIL)
		spf_smtp_mail(st, s, job);
	else
		spf_smtp_eom(st, job);
}

static void spf_smtp_end(void *arg, void *state)
{
	struct spf_smtp_sess *st = state;

	(void)arg;
	if (!st)
		return;
	if (st->job) {
		st->orphan = 1; /* freed when the answer comes */
		list_append(&st->x->orphans, &st->on);
		return;
	}
	free(st);
}

struct spf_smtp *spf_smtp_new(struct spf *pool, const struct config *cfg, struct loop *l)
{
	struct spf_smtp *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->pool = pool;
	x->cfg = cfg;
	x->l = l;
	list_init(&x->orphans);
	return x;
}

void spf_smtp_checker(struct spf_smtp *x, struct smtp_checker *ck)
{
	*ck = (struct smtp_checker){
		.name = SPF_SMTP_NAME,
		.stages = SMTP_CHECK_BIT(SMTP_CHECK_MAIL) | SMTP_CHECK_BIT(SMTP_CHECK_EOM),
		.start = spf_smtp_start,
		.end = spf_smtp_end,
		.arg = x,
	};
}

struct spf_smtp *spf_smtp_free(struct spf_smtp *x)
{
	if (!x)
		return NULL;
	while (!list_empty(&x->orphans)) {
		struct list_node *n = x->orphans.head;

		list_unlink(&x->orphans, n);
		free(LIST_ENTRY(n, struct spf_smtp_sess, on));
	}
	free(x);
	return NULL;
}
