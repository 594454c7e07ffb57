/* SPDX-License-Identifier: MIT */
/*
 * metrics: the node's counters, gauges and the group-commit fsync latency
 * histogram, for the Prometheus endpoint (admin/metrics_http.h). Writers
 * never lock and never wait: each engine thread owns one slot of relaxed
 * atomics (metrics_thread_attach() binds it to the calling thread), other
 * threads (control, ctlsock, resolver, verifiers) share slot 0's "other"
 * twin with atomic adds. A scrape sums the slots; a counter may be a few
 * increments behind, never torn.
 *
 * Every series is a row of one table (metrics.c: id, name, labels, type,
 * help), so the exposition, the tests and docs list the same names. Names
 * follow Prometheus conventions: etrnd_ prefix, _total for counters, base
 * units (seconds, bytes).
 */
#ifndef ETRND_CORE_METRICS_H
#define ETRND_CORE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* Counters (monotonic; "_total") and per-thread gauges (summed over the
 * threads at a scrape: connections open, held messages/bytes per shard,
 * deferred queue). Labels are fixed per row. */
enum metric_id {
	/* connections */
	METRIC_CONN_ACCEPTED = 0,        /* etrnd_connections_accepted_total */
	METRIC_CONN_REFUSED_MAX,         /* ..._refused_total{reason="max_connections"} */
	METRIC_CONN_REFUSED_CLIENT,      /* {reason="client_connection_limit"} */
	METRIC_CONN_REFUSED_DESCRIPTORS, /* {reason="descriptors"} */
	METRIC_CONN_OPEN,                /* gauge etrnd_connections_open */
	/* ingest */
	METRIC_MSGS_RECEIVED,            /* etrnd_messages_received_total */
	METRIC_BYTES_RECEIVED,           /* etrnd_received_bytes_total */
	METRIC_REPLIES_2XX,              /* etrnd_smtp_replies_total{class="2xx"} */
	METRIC_REPLIES_3XX,
	METRIC_REPLIES_4XX,
	METRIC_REPLIES_5XX,
	METRIC_RCPT_REFUSED_RELAY,       /* etrnd_recipients_refused_total{reason="relay"} */
	METRIC_RCPT_REFUSED_UNKNOWN,     /* {reason="table_unavailable"} */
	METRIC_RCPT_REFUSED_QUOTA,       /* {reason="quota"} */
	METRIC_RCPT_REFUSED_ROUTING,     /* {reason="routing"} */
	METRIC_RCPT_REFUSED_OTHER,       /* {reason="other"} */
	METRIC_RCPT_REFUSED_USER,        /* {reason="unknown_user"} (issue 19) */
	METRIC_MSGS_DISCARDED,           /* etrnd_messages_discarded_total (policy check) */
	/* held mail (per-thread gauges: the thread's shard) */
	METRIC_HELD_MESSAGES,            /* etrnd_held_messages{shard="i"} */
	METRIC_HELD_BYTES,               /* etrnd_held_bytes{shard="i"} */
	/* drains, ATRN, deliveries */
	METRIC_DRAINS_STARTED,           /* etrnd_drains_started_total */
	METRIC_DRAINS_FINISHED,          /* etrnd_drains_finished_total */
	METRIC_DRAINS_RUNNING,           /* gauge etrnd_drains_running */
	METRIC_ATRN_FINISHED,            /* etrnd_atrn_sessions_finished_total */
	METRIC_ATRN_RUNNING,             /* gauge etrnd_atrn_sessions_running */
	METRIC_DELIVERIES_SENT,          /* etrnd_deliveries_total{status="sent"} */
	METRIC_DELIVERIES_DEFERRED,      /* {status="deferred"} */
	METRIC_DELIVERIES_BOUNCED,       /* {status="bounced"} */
	METRIC_DEFERRED_MESSAGES,        /* gauge etrnd_outbound_deferred_messages */
	/* ETRN / ATRN requests by reply */
	METRIC_ETRN_250,                 /* etrnd_etrn_requests_total{code="250"} */
	METRIC_ETRN_251,
	METRIC_ETRN_252,
	METRIC_ETRN_253,
	METRIC_ETRN_458,
	METRIC_ETRN_459,
	METRIC_ETRN_5XX,                 /* {code="5xx"} */
	METRIC_ATRN_250,                 /* etrnd_atrn_requests_total{code="250"} */
	METRIC_ATRN_450,
	METRIC_ATRN_451,
	METRIC_ATRN_453,
	METRIC_ATRN_5XX,
	/* housekeeping (tests wait for these before a negative check) */
	METRIC_EXPIRY_SCANS,             /* etrnd_expiry_scans_total */
	/* SPF at MAIL FROM, by result (proto/spf.h's order) */
	METRIC_SPF_NONE,                 /* etrnd_spf_results_total{result="none"} */
	METRIC_SPF_NEUTRAL,
	METRIC_SPF_PASS,
	METRIC_SPF_FAIL,
	METRIC_SPF_SOFTFAIL,
	METRIC_SPF_TEMPERROR,
	METRIC_SPF_PERMERROR,
	/* DSNs not sent (issue 19: no backscatter) */
	METRIC_BOUNCES_SUPPRESSED_SPF,   /* etrnd_bounces_suppressed_total{reason="spf_fail"} */
	METRIC_COUNT
};

/* Group-commit fsync latency buckets (seconds, upper bounds; +Inf added). */
#define METRICS_FSYNC_BUCKETS 12

/* Slots: one per engine thread plus one shared by every other thread. */
#define METRICS_SLOTS_MAX 257

/* Create the registry for nthreads engine threads (call once at start,
 * before the threads). Returns 0 or -ENOMEM. Process-wide: there is one. */
int metrics_init(unsigned nthreads);
void metrics_free(void);

/* On engine thread i (0-based), before its loop runs: this thread's
 * updates go to slot i, as its only writer (plain relaxed stores: two
 * threads attached to one i would lose updates). Other threads need not
 * call anything; an i past the registry shares the atomic "other" slot. */
void metrics_thread_attach(unsigned i);

/* Add n to a counter (or to this thread's gauge: n may be "negative" by
 * wrapping, use metrics_sub). Lock-free, any thread. */
void metrics_add(enum metric_id m, uint64_t n);
void metrics_sub(enum metric_id m, uint64_t n);
/* Set this thread's gauge (held messages and bytes of its shard, ...). */
void metrics_set(enum metric_id m, uint64_t v);
/* One group-commit fsync took us microseconds (this thread). */
void metrics_fsync_observe(uint64_t us);

/* The SMTP reply counter for a reply code (2xx..5xx), and the ETRN/ATRN
 * request counters for a reply code (others -> the 5xx row or none). */
void metrics_reply(int code);
void metrics_etrn_reply(int code);
void metrics_atrn_reply(int code);
/* Count the reply text written to out since offset from (CRLF-ended
 * lines): each final line ("250 ...", not "250-...") by class with
 * metrics_reply(), and with per_code too when not NULL
 * (metrics_etrn_reply for an ETRN's answer). For replies written by a
 * module other than smtp_server's own reply function. */
void metrics_replies(const struct buf *out, size_t from, void (*per_code)(int));

/*
 * Append every row above in the Prometheus text exposition format (0.0.4:
 * "# HELP", "# TYPE", samples), the per-thread gauges as one sample per
 * shard where the row is per shard, summed otherwise; then the fsync
 * histogram (etrnd_spool_fsync_seconds_bucket/_sum/_count). The node-wide
 * gauges (top domains, oldest held, Redis, disk) are the endpoint's
 * (admin/metrics_http.c). 0 or -ENOMEM.
 */
int metrics_format(struct buf *out);

/* The value summed over every slot (tests, etrnctl top). */
uint64_t metrics_value(enum metric_id m);

#endif
