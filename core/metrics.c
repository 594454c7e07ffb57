/* SPDX-License-Identifier: MIT */
/*
 * metrics: the node's counters, per-thread gauges and the group-commit fsync
 * histogram (core/metrics.h). One cache-line-aligned slot of relaxed atomics
 * per engine thread plus one shared "other" slot; writers never lock, a
 * scrape sums the slots. metrics_rows[] is the one list of series.
 */
#include "core/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <string.h>

#include "core/buf.h"
#include "core/dnsbl_list.h"
#include "core/log.h"

/* Slot 0 is shared by every thread that did not attach (control, ctlsock,
 * resolver, verifiers): atomic adds from several writers. Engine thread i
 * owns slot 1 + i. */
#define METRICS_SLOT_OTHER 0
#define METRICS_ENGINES_MAX (METRICS_SLOTS_MAX - 1)

/* Upper bounds of the fsync histogram in microseconds (le in seconds):
 * 0.1 ms (a 4 KiB fdatasync here is about 0.15 ms) up to 1 s. */
static const uint64_t metrics_fsync_le_us[METRICS_FSYNC_BUCKETS] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000,
};

struct metrics_slot {
	_Atomic uint64_t v[METRIC_COUNT];
	/* Non-cumulative counts per bucket, the last one +Inf; cumulated at
	 * the scrape, so _bucket rows never decrease within one scrape. */
	_Atomic uint64_t fsync_bucket[METRICS_FSYNC_BUCKETS + 1];
	_Atomic uint64_t fsync_sum_us;
} __attribute__((aligned(64)));

enum metrics_kind {
	METRICS_COUNTER,
	METRICS_GAUGE,       /* summed over the slots, printed signed */
	METRICS_GAUGE_SHARD, /* one sample per engine slot, shard="i" */
};

struct metrics_row {
	enum metric_id id;
	const char *name;
	const char *labels; /* "" or 'key="value"' */
	enum metrics_kind kind;
	const char *help;   /* written once per family (the first row) */
};

/* Rows of one family (same name) are adjacent: the exposition format wants
 * each family's samples together under one HELP and TYPE. */
static const struct metrics_row metrics_rows[] = {
	{ METRIC_CONN_ACCEPTED, "etrnd_connections_accepted_total", "", METRICS_COUNTER,
	  "SMTP and ODMR connections accepted." },
	{ METRIC_CONN_REFUSED_MAX, "etrnd_connections_refused_total",
	  "reason=\"max_connections\"", METRICS_COUNTER,
	  "Connections refused at accept, by reason (descriptors: accepts that failed "
	  "for want of descriptors or memory; the client waits in the backlog)." },
	{ METRIC_CONN_REFUSED_CLIENT, "etrnd_connections_refused_total",
	  "reason=\"client_connection_limit\"", METRICS_COUNTER, NULL },
	{ METRIC_CONN_REFUSED_DESCRIPTORS, "etrnd_connections_refused_total",
	  "reason=\"descriptors\"", METRICS_COUNTER, NULL },
	{ METRIC_CONN_OPEN, "etrnd_connections_open", "", METRICS_GAUGE,
	  "Inbound connections open now (an ATRN session turned around counts in "
	  "etrnd_atrn_sessions_running instead)." },
	{ METRIC_MSGS_RECEIVED, "etrnd_messages_received_total", "", METRICS_COUNTER,
	  "Messages accepted (250 after the final dot, on disk)." },
	{ METRIC_BYTES_RECEIVED, "etrnd_received_bytes_total", "", METRICS_COUNTER,
	  "Bytes of the messages accepted, as the clients meant them (unstuffed, "
	  "CRLF line ends, without our Received: header)." },
	{ METRIC_REPLIES_2XX, "etrnd_smtp_replies_total", "class=\"2xx\"", METRICS_COUNTER,
	  "SMTP server replies sent, by code class." },
	{ METRIC_REPLIES_3XX, "etrnd_smtp_replies_total", "class=\"3xx\"", METRICS_COUNTER, NULL },
	{ METRIC_REPLIES_4XX, "etrnd_smtp_replies_total", "class=\"4xx\"", METRICS_COUNTER, NULL },
	{ METRIC_REPLIES_5XX, "etrnd_smtp_replies_total", "class=\"5xx\"", METRICS_COUNTER, NULL },
	{ METRIC_RCPT_REFUSED_RELAY, "etrnd_recipients_refused_total", "reason=\"relay\"",
	  METRICS_COUNTER, "RCPT TO refused, by reason." },
	{ METRIC_RCPT_REFUSED_UNKNOWN, "etrnd_recipients_refused_total",
	  "reason=\"table_unavailable\"", METRICS_COUNTER, NULL },
	{ METRIC_RCPT_REFUSED_QUOTA, "etrnd_recipients_refused_total", "reason=\"quota\"",
	  METRICS_COUNTER, NULL },
	{ METRIC_RCPT_REFUSED_ROUTING, "etrnd_recipients_refused_total", "reason=\"routing\"",
	  METRICS_COUNTER, NULL },
	{ METRIC_RCPT_REFUSED_OTHER, "etrnd_recipients_refused_total", "reason=\"other\"",
	  METRICS_COUNTER, NULL },
	{ METRIC_RCPT_REFUSED_USER, "etrnd_recipients_refused_total", "reason=\"unknown_user\"",
	  METRICS_COUNTER, NULL },
	{ METRIC_MSGS_DISCARDED, "etrnd_messages_discarded_total", "", METRICS_COUNTER,
	  "Messages a policy check (a milter) said to discard: answered 250, never stored." },
	{ METRIC_MILTER_FAIL_0, "etrnd_milter_failures_total", "milter=\"0\"", METRICS_COUNTER,
	  "Sessions in which a milter (by its place in the milter key, from 0) was down, slow or "
	  "broke the protocol, so milter_default_action applied." },
	{ METRIC_MILTER_FAIL_1, "etrnd_milter_failures_total", "milter=\"1\"", METRICS_COUNTER, NULL },
	{ METRIC_MILTER_FAIL_2, "etrnd_milter_failures_total", "milter=\"2\"", METRICS_COUNTER, NULL },
	{ METRIC_MILTER_FAIL_3, "etrnd_milter_failures_total", "milter=\"3\"", METRICS_COUNTER, NULL },
	{ METRIC_MILTER_FAIL_4, "etrnd_milter_failures_total", "milter=\"4\"", METRICS_COUNTER, NULL },
	{ METRIC_MILTER_FAIL_5, "etrnd_milter_failures_total", "milter=\"5\"", METRICS_COUNTER, NULL },
	{ METRIC_MILTER_FAIL_6, "etrnd_milter_failures_total", "milter=\"6\"", METRICS_COUNTER, NULL },
	{ METRIC_MILTER_FAIL_7, "etrnd_milter_failures_total", "milter=\"7\"", METRICS_COUNTER, NULL },
	{ METRIC_HELD_MESSAGES, "etrnd_held_messages", "", METRICS_GAUGE_SHARD,
	  "Messages held in the spool with undelivered recipients, per shard." },
	{ METRIC_HELD_BYTES, "etrnd_held_bytes", "", METRICS_GAUGE_SHARD,
	  "Spool bytes (the records) of the held messages, per shard." },
	{ METRIC_DRAINS_STARTED, "etrnd_drains_started_total", "", METRICS_COUNTER,
	  "Drains (ETRN, flush, cluster drain) started, counted per engine thread." },
	{ METRIC_DRAINS_FINISHED, "etrnd_drains_finished_total", "", METRICS_COUNTER,
	  "Drains finished, counted per engine thread." },
	{ METRIC_DRAINS_RUNNING, "etrnd_drains_running", "", METRICS_GAUGE,
	  "Drains running now, counted per engine thread." },
	{ METRIC_ATRN_FINISHED, "etrnd_atrn_sessions_finished_total", "", METRICS_COUNTER,
	  "ATRN sessions (turned-around connections) finished." },
	{ METRIC_ATRN_RUNNING, "etrnd_atrn_sessions_running", "", METRICS_GAUGE,
	  "ATRN sessions running now." },
	{ METRIC_DELIVERIES_SENT, "etrnd_deliveries_total", "status=\"sent\"", METRICS_COUNTER,
	  "Recipient deliveries by drains, ATRN sessions and the outbound scheduler, by status." },
	{ METRIC_DELIVERIES_DEFERRED, "etrnd_deliveries_total", "status=\"deferred\"",
	  METRICS_COUNTER, NULL },
	{ METRIC_DELIVERIES_BOUNCED, "etrnd_deliveries_total", "status=\"bounced\"",
	  METRICS_COUNTER, NULL },
	{ METRIC_DEFERRED_MESSAGES, "etrnd_outbound_deferred_messages", "", METRICS_GAUGE,
	  "Messages in the outbound scheduler's queues, counted once per destination domain." },
	{ METRIC_ETRN_250, "etrnd_etrn_requests_total", "code=\"250\"", METRICS_COUNTER,
	  "ETRN requests, by reply code." },
	{ METRIC_ETRN_251, "etrnd_etrn_requests_total", "code=\"251\"", METRICS_COUNTER, NULL },
	{ METRIC_ETRN_252, "etrnd_etrn_requests_total", "code=\"252\"", METRICS_COUNTER, NULL },
	{ METRIC_ETRN_253, "etrnd_etrn_requests_total", "code=\"253\"", METRICS_COUNTER, NULL },
	{ METRIC_ETRN_458, "etrnd_etrn_requests_total", "code=\"458\"", METRICS_COUNTER, NULL },
	{ METRIC_ETRN_459, "etrnd_etrn_requests_total", "code=\"459\"", METRICS_COUNTER, NULL },
	{ METRIC_ETRN_5XX, "etrnd_etrn_requests_total", "code=\"5xx\"", METRICS_COUNTER, NULL },
	{ METRIC_ATRN_250, "etrnd_atrn_requests_total", "code=\"250\"", METRICS_COUNTER,
	  "ATRN requests, by reply code." },
	{ METRIC_ATRN_450, "etrnd_atrn_requests_total", "code=\"450\"", METRICS_COUNTER, NULL },
	{ METRIC_ATRN_451, "etrnd_atrn_requests_total", "code=\"451\"", METRICS_COUNTER, NULL },
	{ METRIC_ATRN_453, "etrnd_atrn_requests_total", "code=\"453\"", METRICS_COUNTER, NULL },
	{ METRIC_ATRN_5XX, "etrnd_atrn_requests_total", "code=\"5xx\"", METRICS_COUNTER, NULL },
	{ METRIC_EXPIRY_SCANS, "etrnd_expiry_scans_total", "", METRICS_COUNTER,
	  "Expiry scans finished (each with every expiry and delay warning it found), "
	  "counted per engine thread." },
	{ METRIC_DNSBL_REJECTED, "etrnd_dnsbl_clients_total", "verdict=\"rejected\"",
	  METRICS_COUNTER, "Clients checked against the DNSBLs at connect, by verdict (logged: "
	  "listed, dnsbl_action = log; skipped: mynetworks or loopback)." },
	{ METRIC_DNSBL_LOGGED, "etrnd_dnsbl_clients_total", "verdict=\"logged\"",
	  METRICS_COUNTER, NULL },
	{ METRIC_DNSBL_PASSED, "etrnd_dnsbl_clients_total", "verdict=\"passed\"",
	  METRICS_COUNTER, NULL },
	{ METRIC_DNSBL_SKIPPED, "etrnd_dnsbl_clients_total", "verdict=\"skipped\"",
	  METRICS_COUNTER, NULL },
	{ METRIC_SPF_NONE, "etrnd_spf_results_total", "result=\"none\"", METRICS_COUNTER,
	  "SPF checks at MAIL FROM (RFC 7208) by result." },
	{ METRIC_SPF_NEUTRAL, "etrnd_spf_results_total", "result=\"neutral\"", METRICS_COUNTER, NULL },
	{ METRIC_SPF_PASS, "etrnd_spf_results_total", "result=\"pass\"", METRICS_COUNTER, NULL },
	{ METRIC_SPF_FAIL, "etrnd_spf_results_total", "result=\"fail\"", METRICS_COUNTER, NULL },
	{ METRIC_SPF_SOFTFAIL, "etrnd_spf_results_total", "result=\"softfail\"", METRICS_COUNTER,
	  NULL },
	{ METRIC_SPF_TEMPERROR, "etrnd_spf_results_total", "result=\"temperror\"", METRICS_COUNTER,
	  NULL },
	{ METRIC_SPF_PERMERROR, "etrnd_spf_results_total", "result=\"permerror\"", METRICS_COUNTER,
	  NULL },
	{ METRIC_BOUNCES_SUPPRESSED_SPF, "etrnd_bounces_suppressed_total", "reason=\"spf_fail\"",
	  METRICS_COUNTER,
	  "Bounces (DSNs) not sent because the original sender's domain failed SPF: "
	  "no backscatter to forged senders." },
};

_Static_assert(sizeof metrics_rows / sizeof metrics_rows[0] == METRIC_COUNT,
	       "metrics_rows: one row per enum metric_id");

/* Static, not allocated: calls before metrics_init() (unit tests of the
 * instrumented modules) land in zeroed slots instead of a NULL pointer.
 * The pages of unused slots are never touched. */
static struct metrics_slot metrics_slots[METRICS_SLOTS_MAX];
static _Atomic unsigned metrics_nthreads;
static _Thread_local struct metrics_slot *metrics_mine;

static struct metrics_slot *metrics_slot_self(void)
{
	return metrics_mine ? metrics_mine : &metrics_slots[METRICS_SLOT_OTHER];
}

/* Add n (wrapping) to a value of this thread's slot. An engine thread is
 * its slot's only writer: a relaxed load and store, no locked instruction
 * (about 1 ns, against 15-30 for an atomic add here); the shared slot
 * takes atomic adds. A reader sees the old or the new value, never a torn
 * one. */
static void metrics_bump(_Atomic uint64_t *v, uint64_t n)
{
	if (metrics_mine)
		atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
				      memory_order_relaxed);
	else
		atomic_fetch_add_explicit(v, n, memory_order_relaxed);
}

static void metrics_slots_zero(void)
{
	for (size_t s = 0; s < METRICS_SLOTS_MAX; s++) {
		struct metrics_slot *sl = &metrics_slots[s];
		for (size_t i = 0; i < METRIC_COUNT; i++)
			atomic_store_explicit(&sl->v[i], 0, memory_order_relaxed);
		for (size_t i = 0; i <= METRICS_FSYNC_BUCKETS; i++)
			atomic_store_explicit(&sl->fsync_bucket[i], 0, memory_order_relaxed);
		atomic_store_explicit(&sl->fsync_sum_us, 0, memory_order_relaxed);
	}
}

int metrics_init(unsigned nthreads)
{
	if (nthreads == 0 || nthreads > METRICS_ENGINES_MAX)
		return -EINVAL;
	/* metrics_value() indexes the table by id. */
	for (size_t i = 0; i < METRIC_COUNT; i++)
		if (metrics_rows[i].id != (enum metric_id)i)
			panic("metrics_rows[%zu] is %s, out of enum order", i, metrics_rows[i].name);
	metrics_slots_zero();
	atomic_store(&metrics_nthreads, nthreads);
	return 0;
}

void metrics_free(void)
{
	atomic_store(&metrics_nthreads, 0);
	metrics_slots_zero();
	metrics_mine = NULL;
}

void metrics_thread_attach(unsigned i)
{
	/* An engine index past the registry (a test engine without
	 * metrics_init) shares the "other" slot: counted, never out of bounds. */
	metrics_mine = i < METRICS_ENGINES_MAX ? &metrics_slots[1 + i] : NULL;
}

void metrics_add(enum metric_id m, uint64_t n)
{
	if ((unsigned)m >= METRIC_COUNT)
		return;
	metrics_bump(&metrics_slot_self()->v[m], n);
}

void metrics_sub(enum metric_id m, uint64_t n)
{
	if ((unsigned)m >= METRIC_COUNT)
		return;
	metrics_bump(&metrics_slot_self()->v[m], (uint64_t)0 - n);
}

void metrics_set(enum metric_id m, uint64_t v)
{
	if ((unsigned)m >= METRIC_COUNT)
		return;
	atomic_store_explicit(&metrics_slot_self()->v[m], v, memory_order_relaxed);
}

void metrics_fsync_observe(uint64_t us)
{
	struct metrics_slot *sl = metrics_slot_self();
	size_t b = 0;

	while (b < METRICS_FSYNC_BUCKETS && us > metrics_fsync_le_us[b])
		b++;
	metrics_bump(&sl->fsync_bucket[b], 1);
	metrics_bump(&sl->fsync_sum_us, us);
}

void metrics_reply(int code)
{
	static const enum metric_id by_class[] = {
		METRIC_REPLIES_2XX, METRIC_REPLIES_3XX, METRIC_REPLIES_4XX, METRIC_REPLIES_5XX,
	};
	if (code >= 200 && code <= 599)
		metrics_add(by_class[code / 100 - 2], 1);
}

/* A request's reply code and its row; codes not listed count in the
 * table's 5xx row when permanent, nowhere otherwise. */
struct metrics_code {
	int code;
	enum metric_id id;
};

static const struct metrics_code metrics_etrn_codes[] = {
	{ 250, METRIC_ETRN_250 }, { 251, METRIC_ETRN_251 }, { 252, METRIC_ETRN_252 },
	{ 253, METRIC_ETRN_253 }, { 458, METRIC_ETRN_458 }, { 459, METRIC_ETRN_459 },
};

static const struct metrics_code metrics_atrn_codes[] = {
	{ 250, METRIC_ATRN_250 }, { 450, METRIC_ATRN_450 }, { 451, METRIC_ATRN_451 },
	{ 453, METRIC_ATRN_453 },
};

static void metrics_code_add(const struct metrics_code *t, size_t n, enum metric_id row5xx,
		int code)
{
	for (size_t i = 0; i < n; i++)
		if (t[i].code == code) {
			metrics_add(t[i].id, 1);
			return;
		}
	if (code >= 500 && code <= 599)
		metrics_add(row5xx, 1);
}

void metrics_etrn_reply(int code)
{
	metrics_code_add(metrics_etrn_codes, sizeof metrics_etrn_codes / sizeof metrics_etrn_codes[0],
			 METRIC_ETRN_5XX, code);
}

void metrics_atrn_reply(int code)
{
	metrics_code_add(metrics_atrn_codes, sizeof metrics_atrn_codes / sizeof metrics_atrn_codes[0],
			 METRIC_ATRN_5XX, code);
}

void metrics_replies(const struct buf *out, size_t from, void (*per_code)(int))
{
	const char *text = out->data;
	size_t len = out->len, i = from;

	while (i + 3 <= len) {
		const char *l = text + i, *nl = memchr(l, '\n', len - i);
		size_t n = nl ? (size_t)(nl - l) + 1 : len - i;
		int final = n == 3 || (n > 3 && (l[3] == ' ' || l[3] == '\r' || l[3] == '\n'));
		if (n >= 3 && final && l[0] >= '2' && l[0] <= '5' && l[1] >= '0' && l[1] <= '9' &&
		    l[2] >= '0' && l[2] <= '9') {
			int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
			metrics_reply(code);
			if (per_code)
				per_code(code);
		}
		i += n;
	}
}

static uint64_t metrics_slot_value(size_t slot, enum metric_id m)
{
	return atomic_load_explicit(&metrics_slots[slot].v[m], memory_order_relaxed);
}

/* Slots a scrape reads: every engine slot of the registry (all of them
 * when metrics_init was not called, so a test's counts still show). */
static unsigned metrics_engines(void)
{
	unsigned n = atomic_load(&metrics_nthreads);
	return n ? n : METRICS_ENGINES_MAX;
}

uint64_t metrics_value(enum metric_id m)
{
	if ((unsigned)m >= METRIC_COUNT)
		return 0;
	/* Per-shard gauges belong to engine threads; a set from elsewhere
	 * has no shard and is left out here as in metrics_format(). */
	uint64_t sum = metrics_rows[m].kind == METRICS_GAUGE_SHARD
		? 0 : metrics_slot_value(METRICS_SLOT_OTHER, m);
	unsigned n = metrics_engines();
	for (unsigned i = 0; i < n; i++)
		sum += metrics_slot_value(1 + i, m);
	return sum;
}

static const char *metrics_type_name(enum metrics_kind k)
{
	return k == METRICS_COUNTER ? "counter" : "gauge";
}

static int metrics_format_row(struct buf *out, const struct metrics_row *r)
{
	int rc = 0;

	if (r->help)
		rc = buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", r->name, r->help,
				r->name, metrics_type_name(r->kind));
	if (rc < 0)
		return rc;
	if (r->kind == METRICS_GAUGE_SHARD) {
		unsigned n = atomic_load(&metrics_nthreads);
		for (unsigned i = 0; i < n && rc == 0; i++)
			rc = buf_printf(out, "%s{shard=\"%u\"} %" PRId64 "\n", r->name, i,
					(int64_t)metrics_slot_value(1 + i, r->id));
		return rc;
	}
	uint64_t v = metrics_value(r->id);
	const char *lo = *r->labels ? "{" : "", *lc = *r->labels ? "}" : "";
	if (r->kind == METRICS_GAUGE)
		return buf_printf(out, "%s%s%s%s %" PRId64 "\n", r->name, lo, r->labels, lc,
				  (int64_t)v);
	return buf_printf(out, "%s%s%s%s %" PRIu64 "\n", r->name, lo, r->labels, lc, v);
}

static int metrics_format_fsync(struct buf *out)
{
	static const char name[] = "etrnd_spool_fsync_seconds";
	uint64_t bucket[METRICS_FSYNC_BUCKETS + 1] = { 0 }, sum_us = 0;
	unsigned n = metrics_engines();
	int rc;

	for (size_t s = 0; s <= n; s++) {
		for (size_t b = 0; b <= METRICS_FSYNC_BUCKETS; b++)
			bucket[b] += atomic_load_explicit(&metrics_slots[s].fsync_bucket[b],
							  memory_order_relaxed);
		sum_us += atomic_load_explicit(&metrics_slots[s].fsync_sum_us,
					       memory_order_relaxed);
	}
	rc = buf_printf(out, "# HELP %s Group-commit latency: the write and its fdatasync, or one O_DSYNC write.\n# TYPE %s histogram\n",
			name, name);
	/* Cumulated from one read of each bucket: le rows never decrease and
	 * the +Inf row equals _count, even while writers run. */
	uint64_t cum = 0;
	for (size_t b = 0; b < METRICS_FSYNC_BUCKETS && rc == 0; b++) {
		cum += bucket[b];
		uint64_t le = metrics_fsync_le_us[b];
		rc = buf_printf(out, "%s_bucket{le=\"%" PRIu64 ".%06" PRIu64 "\"} %" PRIu64 "\n",
				name, le / 1000000, le % 1000000, cum);
	}
	cum += bucket[METRICS_FSYNC_BUCKETS];
	if (rc == 0)
		rc = buf_printf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n"
				"%s_sum %" PRIu64 ".%06" PRIu64 "\n%s_count %" PRIu64 "\n",
				name, cum, name, sum_us / 1000000, sum_us % 1000000, name, cum);
	return rc;
}

/* Per DNSBL list: few (DNSBL_SITES_MAX) and counted once per client, so
 * one shared row of atomics rather than a slot per thread. */
static _Atomic uint64_t metrics_dnsbl_v[DNSBL_SITES_MAX][METRICS_DNSBL_RESULTS];

void metrics_dnsbl(unsigned list, enum metrics_dnsbl_result r)
{
	if (list < DNSBL_SITES_MAX && (unsigned)r < METRICS_DNSBL_RESULTS)
		atomic_fetch_add_explicit(&metrics_dnsbl_v[list][r], 1, memory_order_relaxed);
}

int metrics_dnsbl_format(struct buf *out, const struct dnsbl_list *l)
{
	static const char *const results[] = { "listed", "unlisted", "error" };
	static const char name[] = "etrnd_dnsbl_lookups_total";
	int rc = 0;

	if (l->n == 0)
		return 0;
	rc = buf_printf(out, "# HELP %s DNSBL look-ups at connect, per list and result "
			"(error: timeout or server failure, taken as not listed).\n# TYPE %s counter\n",
			name, name);
	for (unsigned i = 0; i < l->n && i < DNSBL_SITES_MAX && rc == 0; i++) {
		if (l->site[i].query != i)
			continue; /* the same name again: asked once, counted there */
		for (unsigned r = 0; r < METRICS_DNSBL_RESULTS && rc == 0; r++)
			rc = buf_printf(out, "%s{list=\"%s\",result=\"%s\"} %" PRIu64 "\n", name,
					l->site[i].name, results[r],
					atomic_load_explicit(&metrics_dnsbl_v[i][r], memory_order_relaxed));
	}
	return rc < 0 ? -ENOMEM : 0;
}

int metrics_format(struct buf *out)
{
	size_t start = out->len;
	int rc = 0;

	for (size_t i = 0; i < METRIC_COUNT && rc == 0; i++)
		rc = metrics_format_row(out, &metrics_rows[i]);
	if (rc == 0)
		rc = metrics_format_fsync(out);
	if (rc < 0)
		out->len = start; /* never half an exposition */
	return rc < 0 ? -ENOMEM : 0;
}
