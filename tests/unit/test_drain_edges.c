/* SPDX-License-Identifier: MIT */
/*
 * Drain edges the other drain tests never reach (proto/drain_conn.c): a
 * connection waiting for a free spool read slot (WAIT_SLOT) while other
 * readers (expiry, the scheduler, a queue listing) hold them all, woken when
 * one comes free and stopped cleanly while it waits; and a customer that
 * resets the connection in the middle of a body. A real engine thread and
 * shard (tests/unit/engine_fixture.h) and a loopback customer server that
 * counts what it is sent.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine_fixture.h"
#include "log_capture.h"
#include "loopback.h"
#include "core/log.h"
#include "core/loop.h"
#include "store/spool_index.h"

#define T_TIMEOUT_S 60
#define T_MSGS 3
#define T_HOG_SLOTS 64          /* more than the shard has (SPOOL_READS_MAX) */
#define T_LINE_MAX 1024
#define T_IO_MS 20000           /* the server's wait for one line */
#define T_POLL_NS 10000000L     /* between looks at the log: no assertion */
#define T_LOG_MAX (1u << 20)
#define T_WAIT_SLOT_LOG "-> WAIT_SLOT (no read slot)"
#define T_BIG_LINES 40000       /* ~2 MB: the send is in flight at the RST */
#define T_BIG_LINE "0123456789012345678901234567890123456789012345\r\n"

/* ---- a customer server: one connection at a time, 250 to everything ----- */

struct t_cust {
	int lfd;
	unsigned short port;
	pthread_t th;
	atomic_int stop;
	atomic_uint mails;           /* MAIL FROM commands received */
	atomic_uint dots;            /* messages taken (final dot answered 250) */
	int reset_in_body;           /* after a body's first line: RST, no reply */
	atomic_uint resets;
};

/* One line (CRLF-terminated, cut at T_LINE_MAX) into line; 0 at EOF. */
static size_t t_line(int fd, char *line)
{
	size_t n = 0;
	char ch;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, T_IO_MS) <= 0 || read(fd, &ch, 1) != 1)
			return 0;
		if (n < T_LINE_MAX - 1)
			line[n++] = ch;
		if (ch == '\n') {
			line[n] = '\0';
			return n;
		}
	}
}

static void t_say(int fd, const char *s)
{
	(void)!send(fd, s, strlen(s), MSG_NOSIGNAL);
}

static void t_cust_serve(struct t_cust *s, int fd)
{
	char line[T_LINE_MAX];
	int data = 0;

	t_say(fd, "220 cust.test ESMTP\r\n");
	while (t_line(fd, line)) {
		if (data && s->reset_in_body) {
			/* Unread input and linger 0: the close sends RST. */
			struct linger lg = { 1, 0 };

			(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			atomic_fetch_add(&s->resets, 1);
			return;
		} else if (data) {
			if (!strcmp(line, ".\r\n")) {
				data = 0;
				atomic_fetch_add(&s->dots, 1);
				t_say(fd, "250 2.0.0 taken\r\n");
			}
		} else if (!strncasecmp(line, "EHLO", 4)) {
			t_say(fd, "250-cust.test\r\n250 PIPELINING\r\n");
		} else if (!strncasecmp(line, "MAIL", 4)) {
			atomic_fetch_add(&s->mails, 1);
			t_say(fd, "250 2.1.0 ok\r\n");
		} else if (!strncasecmp(line, "DATA", 4)) {
			data = 1;
			t_say(fd, "354 go on\r\n");
		} else if (!strncasecmp(line, "QUIT", 4)) {
			t_say(fd, "221 2.0.0 bye\r\n");
			return;
		} else {
			t_say(fd, "250 2.0.0 ok\r\n");
		}
	}
}

static void *t_cust_main(void *arg)
{
	struct t_cust *s = arg;

	while (!atomic_load(&s->stop)) {
		struct pollfd p = { .fd = s->lfd, .events = POLLIN };
		int fd;

		if (poll(&p, 1, 20) <= 0)
			continue;
		fd = accept(s->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		t_cust_serve(s, fd);
		close(fd);
	}
	return NULL;
}

static void t_cust_start(struct t_cust *s)
{
	memset(s, 0, sizeof(*s));
	s->lfd = loopback_listen(4, &s->port);
	cr_assert_geq(s->lfd, 0);
	cr_assert_eq(pthread_create(&s->th, NULL, t_cust_main, s), 0);
}

static void t_cust_stop(struct t_cust *s)
{
	atomic_store(&s->stop, 1);
	pthread_join(s->th, NULL);
	close(s->lfd);
}

/* ---- the hog: another reader holding every read slot -------------------- */

struct t_hog;
struct t_hog_op {
	struct t_hog *h;
	char *buf;
};

/* Engine thread only, but for started (read by the test after a call). */
struct t_hog {
	struct engine_fixture *f;
	struct spool_index_entry e;  /* the record it reads, again and again */
	int on;                      /* 0: a finished read is not issued again */
	unsigned started;            /* reads it got a slot for at the start */
	unsigned inflight;
	int err;                     /* a read that failed */
	struct t_hog_op op[T_HOG_SLOTS];
};

static void t_hog_done(void *arg, int err)
{
	struct t_hog_op *op = arg;
	struct t_hog *h = op->h;

	if (err)
		h->err = err;
	/* The slot this read had is free now: take it back at once, before
	 * anyone else on this thread can (the drain's reads come from other
	 * completions). */
	if (h->on && spool_shard_read(h->f->sh, h->e.segment_id, h->e.off, h->e.rec_len,
				      op->buf, t_hog_done, op) == 0)
		return;
	h->inflight--;
}

struct t_hog_start {
	struct t_hog *h;
	uint64_t msgid;
};

static void t_hog_start_fn(void *arg)
{
	struct t_hog_start *a = arg;
	struct t_hog *h = a->h;

	if (spool_index_msg_find(spool_shard_index(h->f->sh), a->msgid, &h->e))
		return;
	h->on = 1;
	for (unsigned i = 0; i < T_HOG_SLOTS; i++) {
		h->op[i].h = h;
		h->op[i].buf = malloc(h->e.rec_len);
		if (!h->op[i].buf)
			break;
		if (spool_shard_read(h->f->sh, h->e.segment_id, h->e.off, h->e.rec_len,
				     h->op[i].buf, t_hog_done, &h->op[i]))
			break; /* -EBUSY: every slot is ours */
		h->started++;
		h->inflight++;
	}
}

static void t_hog_off_fn(void *arg)
{
	((struct t_hog *)arg)->on = 0;
}

static int t_hog_drained(struct engine_fixture *f, void *arg)
{
	(void)f;
	return ((struct t_hog *)arg)->inflight == 0;
}

static void t_hog_free(struct t_hog *h)
{
	for (unsigned i = 0; i < T_HOG_SLOTS; i++)
		free(h->op[i].buf);
}

/* What the log (captured in c's file) says so far: 1 when it has needle. */
static int t_log_has(struct log_capture *c, const char *needle)
{
	static char text[T_LOG_MAX];
	ssize_t n;

	fflush(stderr);
	n = pread(fileno(c->f), text, sizeof(text) - 1, 0);
	if (n <= 0)
		return 0;
	text[n] = '\0';
	return strstr(text, needle) != NULL;
}

static struct domtab *t_table(unsigned short port)
{
	struct domtab_builder *b = domtab_builder_new();
	struct cidr lo = { .family = AF_INET, .prefix = 32, .addr = { 127, 0, 0, 1 } };
	char dest[64];
	struct domtab_row cust = { .name = "cust.test", .dest = dest, .etrn_from = &lo,
				   .netrn_from = 1 };
	struct domtab *t;

	snprintf(dest, sizeof(dest), "127.0.0.1:%u", port);
	cr_assert_not_null(b);
	cr_assert_eq(domtab_builder_put(b, &cust), 0);
	t = domtab_build(b);
	domtab_builder_free(b);
	cr_assert_not_null(t);
	return t;
}

/* One engine with T_MSGS messages for cust.test, the hog holding every
 * read slot, an ETRN, and the drain's connection waiting for a slot
 * (logged in cap, at debug level until the caller sets it back). */
struct t_waiting {
	struct engine_fixture f;
	struct t_cust s;
	struct t_hog h;
	struct t_hog_start hs;
	struct log_capture cap;
	char reply[256];
	int waited;
};

static void t_waiting_start(struct t_waiting *w)
{
	static const char *const rcpt[] = { "u@cust.test" };

	memset(w, 0, sizeof(*w));
	w->hs.h = &w->h;
	t_cust_start(&w->s);
	cr_assert_eq(engine_fixture_init(&w->f, t_table(w->s.port)), 0);
	cr_assert_eq(engine_fixture_start(&w->f), 0, "%s", w->f.err);
	for (unsigned i = 0; i < T_MSGS; i++) {
		uint64_t id = engine_fixture_append(&w->f, "s@example.org", rcpt, 1,
						    "Subject: slot\r\n\r\nbody\r\n");
		cr_assert(id);
		if (!w->hs.msgid)
			w->hs.msgid = id;
	}
	w->h.f = &w->f;
	cr_assert_eq(engine_fixture_call(&w->f, t_hog_start_fn, &w->hs, ENGINE_FIXTURE_WAIT_MS), 0);
	cr_assert_gt(w->h.started, 0);
	cr_assert_lt(w->h.started, T_HOG_SLOTS, "the shard gave the hog every slot it asked for");

	cr_assert_eq(log_capture_start(&w->cap), 0);
	log_set_level(LOGL_DEBUG);
	cr_assert_eq(engine_fixture_etrn(&w->f, "127.0.0.1", "cust.test", w->reply,
					 sizeof(w->reply)), 0);
	for (unsigned ms = 0; ms < ENGINE_FIXTURE_WAIT_MS && !w->waited;
	     ms += T_POLL_NS / 1000000) {
		w->waited = t_log_has(&w->cap, T_WAIT_SLOT_LOG);
		if (!w->waited)
			nanosleep(&(struct timespec){ 0, T_POLL_NS }, NULL);
	}
}

/* The log's last 4000 bytes (cap stopped). */
static const char *t_tail(const struct log_capture *c)
{
	size_t n = strlen(c->text);

	return c->text + (n > 4000 ? n - 4000 : 0);
}

/*
 * Every read slot busy with another reader's reads when the drain wants its
 * first message: the connection waits (WAIT_SLOT, logged), sends nothing,
 * and once the other reader lets its slots go (no drain read of its own is
 * in flight to wake it) every message is delivered, each once.
 */
Test(drain_edges, waits_for_slot_held_by_other_reader, .timeout = T_TIMEOUT_S)
{
	static struct t_waiting w;
	unsigned mails_while_waiting;
	int idle;

	t_waiting_start(&w);
	/* Waiting, it sent no MAIL: its message is not half taken. */
	mails_while_waiting = atomic_load(&w.s.mails);
	cr_assert_eq(engine_fixture_call(&w.f, t_hog_off_fn, &w.h, ENGINE_FIXTURE_WAIT_MS), 0);
	cr_assert_eq(engine_fixture_wait(&w.f, t_hog_drained, &w.h, ENGINE_FIXTURE_WAIT_MS), 0);
	idle = engine_fixture_drain_idle(&w.f, ENGINE_FIXTURE_WAIT_MS);
	log_set_level(LOGL_INFO);
	cr_assert_eq(log_capture_stop(&w.cap, T_LOG_MAX), 0);

	cr_expect_str_eq(w.reply, "253 2.0.0 OK, 3 pending messages for node cust.test started\r\n");
	cr_expect(w.waited, "the drain never waited for a read slot; log:\n%s", t_tail(&w.cap));
	cr_expect_eq(mails_while_waiting, 0);
	cr_expect_eq(w.h.err, 0);
	cr_expect_eq(idle, 0, "the drain did not finish once the slots were free; log tail:\n%s",
		     t_tail(&w.cap));
	cr_expect_eq(atomic_load(&w.s.dots), T_MSGS);
	cr_expect_eq(atomic_load(&w.s.mails), T_MSGS);
	log_capture_free(&w.cap);
	engine_fixture_stop(&w.f);
	t_cust_stop(&w.s);
	t_hog_free(&w.h);
	engine_fixture_fini(&w.f);
}

/* Engine thread: the hog lets go and the loop is told to stop in the same
 * turn. The hog's reads still hold every slot at this turn's end (their
 * completions come in a later one), so the waiting connection is still
 * waiting when the stop begins at the top of the next turn. */
static void t_hog_off_and_stop_fn(void *arg)
{
	struct t_waiting *w = arg;

	w->h.on = 0;
	loop_stop(w->f.loop);
}

/*
 * SIGTERM's path while a drain connection waits for a read slot
 * (dc_shutdown in WAIT_SLOT): it leaves the wait list and QUITs, the engine
 * stops, and every message is still queued for the next ETRN.
 */
Test(drain_edges, stop_while_waiting_for_slot, .timeout = T_TIMEOUT_S)
{
	static struct t_waiting w;
	uint64_t ids[T_MSGS + 1];

	t_waiting_start(&w);
	cr_assert_eq(engine_fixture_call(&w.f, t_hog_off_and_stop_fn, &w, ENGINE_FIXTURE_WAIT_MS), 0);
	engine_fixture_stop(&w.f); /* joins the thread: the stop finished */
	log_set_level(LOGL_INFO);
	cr_assert_eq(log_capture_stop(&w.cap, T_LOG_MAX), 0);

	cr_expect(w.waited, "the drain never waited for a read slot; log:\n%s", t_tail(&w.cap));
	cr_expect(strstr(w.cap.text, "WAIT_SLOT -> QUITTING (shutdown)"),
		  "the waiting connection did not QUIT at the stop; log tail:\n%s", t_tail(&w.cap));
	cr_expect_eq(w.h.inflight, 0);
	cr_expect_eq(atomic_load(&w.s.mails), 0);
	cr_expect_eq(atomic_load(&w.s.dots), 0);
	cr_assert_not_null(engine_fixture_reopen(&w.f), "%s", w.f.err);
	cr_expect_eq(engine_fixture_queue_ids(&w.f, "cust.test", ids, T_MSGS + 1), T_MSGS);
	log_capture_free(&w.cap);
	t_cust_stop(&w.s);
	t_hog_free(&w.h);
	engine_fixture_fini(&w.f);
}

/*
 * The customer resets the connection (RST) while the message's body is on
 * its way: no verdict came, so nothing may be marked done; the message
 * stays queued for the next ETRN (each reconnect meets the same reset).
 */
Test(drain_edges, reset_mid_body_message_stays_queued, .timeout = T_TIMEOUT_S)
{
	static const char *const rcpt[] = { "big@cust.test", "other@cust.test" };
	size_t linelen = sizeof(T_BIG_LINE) - 1;
	char *body = malloc(linelen * T_BIG_LINES + 1);
	struct engine_fixture f;
	struct t_cust s;
	struct log_capture cap;
	char reply[256], states[8];
	uint64_t id, ids[2];
	struct spool_index *idx;

	cr_assert_not_null(body);
	for (size_t i = 0; i < T_BIG_LINES; i++)
		memcpy(body + i * linelen, T_BIG_LINE, linelen);
	body[linelen * T_BIG_LINES] = '\0';
	t_cust_start(&s);
	s.reset_in_body = 1;
	cr_assert_eq(engine_fixture_init(&f, t_table(s.port)), 0);
	cr_assert_eq(engine_fixture_start(&f), 0, "%s", f.err);
	id = engine_fixture_append(&f, "s@example.org", rcpt, 2, body);
	cr_assert(id);
	cr_assert_eq(log_capture_start(&cap), 0);
	cr_assert_eq(engine_fixture_etrn(&f, "127.0.0.1", "cust.test", reply, sizeof(reply)), 0);
	int idle = engine_fixture_drain_idle(&f, ENGINE_FIXTURE_WAIT_MS);
	engine_fixture_stop(&f);
	cr_assert_eq(log_capture_stop(&cap, T_LOG_MAX), 0);
	t_cust_stop(&s);

	cr_expect_str_eq(reply, "253 2.0.0 OK, 1 pending messages for node cust.test started\r\n");
	cr_expect_eq(idle, 0, "the drain did not end; log tail:\n%s", t_tail(&cap));
	cr_expect_geq(atomic_load(&s.resets), 1);
	cr_expect_eq(atomic_load(&s.dots), 0);
	/* Both recipients said deferred, none delivered or bounced. */
	cr_expect(strstr(cap.text, "status=deferred"), "no deferred line; log tail:\n%s",
		  t_tail(&cap));
	cr_expect_null(strstr(cap.text, "status=sent"));
	cr_expect_null(strstr(cap.text, "status=bounced"));
	idx = engine_fixture_reopen(&f);
	cr_assert_not_null(idx, "%s", f.err);
	cr_expect_eq(engine_fixture_queue_ids(&f, "cust.test", ids, 2), 1);
	engine_fixture_states(idx, id, states, sizeof(states));
	cr_expect_str_eq(states, "PP");
	log_capture_free(&cap);
	engine_fixture_fini(&f);
	free(body);
}
