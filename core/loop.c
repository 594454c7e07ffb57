/* SPDX-License-Identifier: MIT */
/*
 * loop: the io_uring engine of one thread (see loop.h). Every socket and file
 * operation is an SQE; completions are dispatched by the op packed into
 * user_data together with a slot and a generation, so a completion for a
 * slot that has since been reused is recognised and dropped. Callbacks into
 * the connection owner run only from the dispatch, never from inside a
 * conn_*() call, so an owner can close or resume a connection from within its
 * own callback without being re-entered or freed under its feet.
 *
 * TLS (conn_starttls()) sits between the socket and the owner: received
 * ciphertext goes through core/tls.c and only plaintext reaches
 * conn_deliver(), so pausing bounds it as before; conn_out() holds
 * plaintext, encrypted only when it goes into a send, so LOOP_OUT_HIGH
 * still means what the owner appended and the peer has not read.
 *
 * A connection can leave its loop alive (conn_detach(): ATRN): once nothing
 * of it is left in this ring (output sent, receive ended), its socket, TLS
 * state and kept input become a parcel that another loop adopts.
 */
#include "core/loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/cidr.h"
#include "core/connlimit.h"
#include "core/epoch.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/now.h"
#include "core/tls.h"

/* Ring sizes. The SQ is large so a linked write+sync chain never has to be
 * split across submissions (loop_sqe_room()). */
#define LOOP_SQ_ENTRIES 4096
#define LOOP_LISTEN_BACKLOG 4096
/* Provided receive buffers per thread: count must be a power of two. 16 KiB
 * buffers keep a 100 KiB message to a handful of completions. */
#define LOOP_RBUF_SIZE 16384
#define LOOP_RBUF_COUNT 512
#define LOOP_RBUF_GROUP 1
/* Input kept for a paused connection before the loop stops receiving from
 * it; bounds memory per connection against a peer that pipelines a flood
 * behind a DATA whose commit is pending. */
#define LOOP_PENDING_MAX (64u * 1024)
#define LOOP_FILE_OPS_MAX 128
#define LOOP_TICK_MAX_MS 1000
#define LOOP_TICK_MIN_MS 100
#define LOOP_PEER_MAX (INET6_ADDRSTRLEN + 8)
/* Out of descriptors (or kernel memory) at accept: stop accepting for a
 * while instead of re-arming at once (which spins a core and floods the
 * log); the pause starts at MIN, doubles while accepts keep failing, and
 * ends at the first accept that succeeds. The backlog keeps the clients
 * meanwhile. */
#define LOOP_ACCEPT_BACKOFF_MIN_MS 10u
#define LOOP_ACCEPT_BACKOFF_MAX_MS 1000u
/* At most one "accepts paused" report per this interval per thread; the
 * episodes in between are counted into the next report. */
#define LOOP_ACCEPT_LOG_QUIET_MS 60000u
/* At most one report of refusals over client_connection_limit per this
 * interval per thread, with the count since the last. */
#define LOOP_REFUSE_LOG_QUIET_MS 10000u
#define LOOP_REPLY_MAX 512

enum loop_op {
	OP_NONE = 0,
	OP_ACCEPT,   /* slot = listener index */
	OP_RECV,     /* slot = connection */
	OP_SEND,
	OP_FILE,     /* slot = file op */
	OP_TIMER,
	OP_WAKE,
	OP_CONNECT,  /* slot = connection */
	OP_IGNORE,   /* cancel requests, link timeouts: nothing to do */
	OP_ACCEPT_WAIT, /* the accept back-off's timeout */
};

/* user_data: op in bits 56..63, slot in 32..55, generation in 0..31. */
static inline uint64_t ud_make(enum loop_op op, uint32_t slot, uint32_t gen)
{
	return ((uint64_t)op << 56) | ((uint64_t)(slot & 0xffffffu) << 32) | gen;
}
static inline enum loop_op ud_op(uint64_t ud) { return (enum loop_op)(ud >> 56); }
static inline uint32_t ud_slot(uint64_t ud) { return (uint32_t)(ud >> 32) & 0xffffffu; }
static inline uint32_t ud_gen(uint64_t ud) { return (uint32_t)ud; }

enum conn_flag {
	CONN_USED = 1u << 0,
	CONN_RECV_ARMED = 1u << 1,  /* a multishot recv is pending */
	CONN_SEND_INFLIGHT = 1u << 2,
	CONN_CLOSING = 1u << 3,     /* conn_close() called */
	CONN_PAUSED = 1u << 4,      /* owner consumed less than offered */
	CONN_EOF = 1u << 5,         /* peer closed; not yet told to the owner */
	CONN_RECV_STOPPED = 1u << 6, /* pending input full: do not re-arm */
	CONN_QUEUED = 1u << 7,      /* on the deferred work list */
	CONN_RESUME = 1u << 8,      /* deferred: redeliver pending input */
	CONN_SHUTDOWN = 1u << 9,    /* ops->shutdown already called */
	CONN_DEAD = 1u << 10,       /* socket error: drop output, tear down */
	CONN_TORNDOWN = 1u << 11,   /* shutdown(2) issued */
	CONN_CONNECTING = 1u << 12, /* outbound: connect in flight */
	CONN_ADDR_COUNTED = 1u << 13, /* counted in the connlimit: release */
	CONN_OUT_WAIT = 1u << 14,   /* paused with output over LOOP_OUT_HIGH:
	                               the loop resumes it once the send drains */
	CONN_CUT = 1u << 15,        /* cut off (conn_cut()): logged once */
	CONN_IN_DATA = 1u << 16,    /* inside ops->data */
	CONN_TLS_RESET = 1u << 17,  /* conn_starttls() inside ops->data: the
	                               input not consumed is void */
	CONN_GONE_TOLD = 1u << 18,  /* the owner was told the peer closed */
	CONN_DETACHING = 1u << 19,  /* conn_detach(): no more owner callbacks;
	                               leaves as a parcel (or done(NULL) when
	                               it fails: then CLOSING too) */
	CONN_INBOUND = 1u << 20,    /* accepted: counted in METRIC_CONN_OPEN
	                               until its slot is freed (a detached one
	                               leaves the gauge with its slot) */
	CONN_SEND_FAILED = 1u << 21, /* the peer reset or closed while we sent:
	                               output is dropped, input still delivered
	                               until the recv side ends (on_send()) */
};

struct conn {
	struct loop *loop;
	const struct conn_ops *ops;   /* the listener's, or the connect()er's */
	void *ops_arg;
	void *st;
	int fd;
	uint32_t slot;
	uint32_t gen;
	unsigned flags;
	struct buf out;       /* replies being appended */
	struct buf wbuf;      /* the send in flight; stable until its CQE */
	size_t woff;
	struct buf pending;   /* input kept while paused */
	uint64_t start_ms;
	uint64_t last_ms;
	uint64_t close_ms;    /* when conn_close() was called */
	uint64_t send_ms;     /* when the send in flight was (re)submitted */
	unsigned timeout_ms;  /* idle timeout; 0 = the config's idle_timeout */
	struct sockaddr_storage dst; /* outbound: where to connect */
	socklen_t dstlen;
	struct __kernel_timespec cto; /* outbound: connect timeout */
	struct conn *next;    /* free list or deferred work list */
	/* TLS (conn_starttls()): NULL in the clear. out_clear bytes at the
	 * start of out still go in the clear (the reply to STARTTLS); what
	 * follows them is plaintext to encrypt, held while the handshake runs.
	 * The ciphertext waits inside tls until it goes to wbuf. */
	struct tls_conn *tls;
	size_t out_clear;
	uint64_t tls_ms;      /* when the handshake started */
	unsigned lflags;      /* CONFIG_LISTEN_* of the listener; 0 outbound */
	conn_detach_fn detach_fn; /* conn_detach(): told once, on this loop */
	void *detach_arg;
	char peer[LOOP_PEER_MAX];
};

/* A connection between two owners (conn_detach() -> loop_adopt()). Owned by
 * whoever holds the pointer; handed between threads only through
 * loop_post(), whose queue orders the memory, so the socket, the TLS state
 * (one SSL used by one thread at a time) and the kept input move whole. */
struct conn_parcel {
	int fd;
	struct tls_conn *tls;      /* NULL in the clear */
	struct buf kept;           /* input received, not consumed: first */
	unsigned lflags;
	/* The client_connection_limit count moves with the connection: the
	 * counter it was taken from (node-wide, shared by every loop), NULL
	 * when not counted. Released when the parcel is freed unadopted. */
	struct connlimit *counted;
	char peer[LOOP_PEER_MAX];
};

struct loop_file_op {
	loop_done_fn fn;
	void *arg;
	uint32_t gen;
	int next_free;
};

struct loop_msg {
	struct loop_msg *next;
	loop_hook_fn fn;
	void *arg;
};

struct loop_listener {
	int fd;
	int armed;
};

/* Accepts paused for lack of descriptors (LOOP_ACCEPT_BACKOFF_*). An
 * episode runs from the first failed accept to the next that succeeds. */
struct loop_accept_backoff {
	unsigned delay_ms;             /* the current pause; 0 = not paused */
	int timer_armed;
	struct __kernel_timespec ts;
	uint64_t fails;                /* failed accepts this episode */
	uint64_t start_ms;
	int logged;                    /* this episode was reported */
	uint64_t last_log_ms;          /* 0 = never */
	uint64_t quiet_fails, quiet_episodes; /* not reported yet */
	int err;                       /* the last failure, -errno */
};

/* A registered turn or stop hook (loop_add_turn_hook, loop_add_stop_hook). */
struct loop_hook {
	const char *name;
	loop_hook_fn fn;
	void *arg;
	enum loop_turn_phase phase; /* turn hooks only */
};

struct loop_busy {
	const char *name;
	loop_busy_fn fn;
	void *arg;
};

struct loop {
	struct io_uring ring;
	int ring_ok;
	unsigned index;
	const struct config *cfg;
	const struct conn_ops *ops;
	void *ops_arg;
	const char *busy_reply;
	/* client_connection_limit (node-wide; NULL = no limit) and its reply. */
	struct connlimit *connlimit;
	char addr_busy[LOOP_REPLY_MAX];
	uint64_t refused, refuse_log_ms;

	struct loop_listener lis[CONFIG_LISTEN_MAX];
	unsigned nlis;
	struct tls_ctx *tls_server;    /* listen_tls listeners; NULL = none */
	struct loop_accept_backoff acc;

	struct io_uring_buf_ring *br;
	size_t br_size;
	char *rbufs;

	struct conn *conns;
	uint32_t nslots;
	uint32_t nconns;
	struct conn *free_conns;
	struct conn *work;     /* deferred close/resume, processed each turn */
	struct conn **rearm;   /* connections whose recv must be re-armed */
	uint32_t nrearm;

	struct loop_file_op fops[LOOP_FILE_OPS_MAX];
	int fop_free;
	unsigned fops_inflight;

	int wakefd;
	_Atomic(struct loop_msg *) inbox; /* posted from other threads */
	uint64_t wakeval;
	atomic_int stop_req;
	int stopping;
	uint64_t stop_deadline_ms;
	int timer_armed;
	struct __kernel_timespec tick;
	uint64_t tick_ms;

	/* Registered per-turn work (turn: kept sorted by phase), stop hooks
	 * and busy checks: see loop_add_turn_hook(). */
	struct loop_hook turn[LOOP_HOOKS_MAX];
	unsigned nturn;
	struct loop_hook stop[LOOP_HOOKS_MAX];
	unsigned nstop;
	struct loop_busy busy[LOOP_HOOKS_MAX];
	unsigned nbusy;
};

static void conn_cut(struct conn *c, const char *why);
static void conn_detach_step(struct conn *c);
static int conn_tls_begin(struct conn *c, struct tls_ctx *ctx, const char *host,
			  size_t clear);
static int conn_tls_encrypt(struct conn *c);

/* An SQE, submitting what is queued first when the SQ is full. With the SQ
 * this large that means the kernel is far behind; it is still not an error. */
static struct io_uring_sqe *loop_sqe(struct loop *l)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);

	if (!sqe) {
		(void)io_uring_submit(&l->ring);
		sqe = io_uring_get_sqe(&l->ring);
		if (!sqe)
			panic("no SQE after submit (SQ %u entries)", LOOP_SQ_ENTRIES);
	}
	return sqe;
}

/* Make sure n SQEs fit without a submit in between, so a linked chain is
 * never split across two submissions (which would silently unlink it). */
static void loop_sqe_room(struct loop *l, unsigned n)
{
	if (io_uring_sq_space_left(&l->ring) < n)
		(void)io_uring_submit(&l->ring);
}

/* ---- provided buffer ring --------------------------------------------- */

static int rbuf_setup(struct loop *l)
{
	struct io_uring_buf_reg reg;
	int rc;

	/* liburing 2.3 has no io_uring_setup_buf_ring(): map the ring memory
	 * ourselves and register it (DESIGN.md section 10). */
	l->br_size = sizeof(struct io_uring_buf) * LOOP_RBUF_COUNT;
	l->br = mmap(NULL, l->br_size, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (l->br == MAP_FAILED) {
		l->br = NULL;
		return -errno;
	}
	l->rbufs = mmap(NULL, (size_t)LOOP_RBUF_SIZE * LOOP_RBUF_COUNT,
			PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (l->rbufs == MAP_FAILED) {
		l->rbufs = NULL;
		return -errno;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)l->br;
	reg.ring_entries = LOOP_RBUF_COUNT;
	reg.bgid = LOOP_RBUF_GROUP;
	rc = io_uring_register_buf_ring(&l->ring, &reg, 0);
	if (rc)
		return rc;
	io_uring_buf_ring_init(l->br);
	for (unsigned i = 0; i < LOOP_RBUF_COUNT; i++)
		io_uring_buf_ring_add(l->br, l->rbufs + (size_t)i * LOOP_RBUF_SIZE,
				      LOOP_RBUF_SIZE, (unsigned short)i,
				      io_uring_buf_ring_mask(LOOP_RBUF_COUNT), (int)i);
	io_uring_buf_ring_advance(l->br, LOOP_RBUF_COUNT);
	return 0;
}

static void rbuf_return(struct loop *l, unsigned bid)
{
	io_uring_buf_ring_add(l->br, l->rbufs + (size_t)bid * LOOP_RBUF_SIZE,
			      LOOP_RBUF_SIZE, (unsigned short)bid,
			      io_uring_buf_ring_mask(LOOP_RBUF_COUNT), 0);
	io_uring_buf_ring_advance(l->br, 1);
}

/* ---- listeners ---------------------------------------------------------- */

static int listen_socket(const struct config_listen *cl, int reuseport,
			 char *err, size_t errlen)
{
	int fd, one = 1;

	fd = socket(cl->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "listen %s: socket: %s", cl->text, strerror(errno));
		return -1;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one))) {
		snprintf(err, errlen, "listen %s: SO_REUSEPORT: %s", cl->text, strerror(errno));
		goto fail;
	}
	if (cl->addr.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&cl->addr, cl->addrlen)) {
		snprintf(err, errlen, "listen %s: bind: %s", cl->text, strerror(errno));
		goto fail;
	}
	if (listen(fd, LOOP_LISTEN_BACKLOG)) {
		snprintf(err, errlen, "listen %s: listen: %s", cl->text, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

int loop_probe_listen(const struct config *cfg, char *err, size_t errlen)
{
	/* Bind each address once WITHOUT SO_REUSEPORT: if another process
	 * (an older etrnd, say) holds it with SO_REUSEPORT, our engine threads
	 * would silently share its connections. This makes that an error. */
	for (unsigned i = 0; i < cfg->nlisten; i++) {
		int fd = listen_socket(&cfg->listen[i], 0, err, errlen);
		if (fd < 0)
			return -1;
		close(fd);
	}
	return 0;
}

static void arm_accept(struct loop *l, unsigned i)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	io_uring_prep_multishot_accept(sqe, l->lis[i].fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ud_make(OP_ACCEPT, i, 0));
	l->lis[i].armed = 1;
}

/* ---- connections -------------------------------------------------------- */

static void arm_recv(struct conn *c)
{
	struct io_uring_sqe *sqe = loop_sqe(c->loop);

	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = LOOP_RBUF_GROUP;
	io_uring_sqe_set_data64(sqe, ud_make(OP_RECV, c->slot, c->gen));
	c->flags |= CONN_RECV_ARMED;
}

/* A new connection (after ops->open or ops->connected): receive, and send
 * what the owner queued; one that detached inside them has its detach
 * going instead, so no receive is armed behind its back. */
static void conn_start(struct conn *c)
{
	if (!(c->flags & CONN_DETACHING))
		arm_recv(c);
	conn_flush(c);
	if (c->flags & CONN_DETACHING)
		conn_detach_step(c);
}

/* Cancel the multishot receive, once (CONN_RECV_STOPPED: not re-armed
 * until someone clears it); its last completions still arrive. */
static void conn_recv_stop(struct conn *c)
{
	struct io_uring_sqe *sqe;

	if (!(c->flags & CONN_RECV_ARMED) || (c->flags & CONN_RECV_STOPPED))
		return;
	c->flags |= CONN_RECV_STOPPED;
	sqe = loop_sqe(c->loop);
	io_uring_prep_cancel64(sqe, ud_make(OP_RECV, c->slot, c->gen), 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_IGNORE, 0, 0));
}

static void conn_queue(struct conn *c, unsigned flag)
{
	c->flags |= flag;
	if (c->flags & CONN_QUEUED)
		return;
	c->flags |= CONN_QUEUED;
	c->next = c->loop->work;
	c->loop->work = c;
}

static void conn_free_slot(struct conn *c)
{
	struct loop *l = c->loop;

	buf_free(&c->out);
	buf_free(&c->wbuf);
	buf_free(&c->pending);
	c->tls = tls_conn_free(c->tls);
	c->out_clear = 0;
	c->lflags = 0;
	if (c->flags & CONN_ADDR_COUNTED)
		connlimit_release(l->connlimit, c->peer);
	if (c->flags & CONN_INBOUND)
		metrics_sub(METRIC_CONN_OPEN, 1);
	c->flags = 0;
	c->st = NULL;
	c->fd = -1;
	c->gen++;
	c->next = l->free_conns;
	l->free_conns = c;
	l->nconns--;
}

/* Take the free slot l->free_conns (the caller has checked there is one)
 * for socket fd, driven by ops with state st: the one place an accepted,
 * connecting or adopted connection gets its slot. */
static struct conn *conn_take_slot(struct loop *l, int fd, unsigned flags,
		const struct conn_ops *ops, void *ops_arg, void *st)
{
	struct conn *c = l->free_conns;

	l->free_conns = c->next;
	l->nconns++;
	c->next = NULL;
	c->fd = fd;
	c->flags = CONN_USED | flags;
	c->ops = ops;
	c->ops_arg = ops_arg;
	c->st = st;
	c->woff = 0;
	c->timeout_ms = 0;
	c->start_ms = c->last_ms = now_mono_ms();
	return c;
}

static void peer_text(int fd, char *out, size_t outlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	snprintf(out, outlen, "unknown");
	if (getpeername(fd, (struct sockaddr *)&ss, &sl))
		return;
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)outlen);
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)outlen);
}

/* A refusal said in one short non-blocking send, then close: if the line
 * does not fit, the peer simply sees the close. */
static void accept_refuse(int fd, const char *reply)
{
	if (reply && reply[0])
		(void)!send(fd, reply, strlen(reply), MSG_DONTWAIT | MSG_NOSIGNAL);
	close(fd);
}

/* Failures that mean "out of descriptors or kernel memory": waiting is the
 * only cure, and retrying at once only spins. */
static int accept_err_is_exhaustion(int err)
{
	return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
}

static void accept_arm_backoff_timer(struct loop *l)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	l->acc.ts.tv_sec = l->acc.delay_ms / 1000;
	l->acc.ts.tv_nsec = (long long)(l->acc.delay_ms % 1000) * 1000000;
	io_uring_prep_timeout(sqe, &l->acc.ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_ACCEPT_WAIT, 0, 0));
	l->acc.timer_armed = 1;
}

/* An accept on listener i failed with err (out of descriptors): pause
 * accepting on this thread, log once per episode (at most one report per
 * LOOP_ACCEPT_LOG_QUIET_MS, counting the episodes in between). */
static void accept_backoff(struct loop *l, unsigned i, int err)
{
	uint64_t now = now_mono_ms();

	l->acc.fails++;
	l->acc.err = err;
	metrics_add(METRIC_CONN_REFUSED_DESCRIPTORS, 1);
	if (l->acc.timer_armed)
		return;
	if (l->acc.delay_ms == 0) {
		l->acc.delay_ms = LOOP_ACCEPT_BACKOFF_MIN_MS;
		l->acc.start_ms = now;
		l->acc.logged = 0;
		if (!l->acc.last_log_ms || now - l->acc.last_log_ms >= LOOP_ACCEPT_LOG_QUIET_MS) {
			char quiet[LOOP_REPLY_MAX] = "";

			if (l->acc.quiet_episodes)
				(void)snprintf(quiet, sizeof(quiet), " (and %llu failed accepts in %llu "
					       "earlier episodes, not reported)",
					       (unsigned long long)l->acc.quiet_fails,
					       (unsigned long long)l->acc.quiet_episodes);
			log_warn("engine %u: accept on %s: %s: pausing accepts, retrying after %u ms "
				 "doubling up to %u ms%s", l->index, l->cfg->listen[i].text,
				 strerror(-err), l->acc.delay_ms, LOOP_ACCEPT_BACKOFF_MAX_MS, quiet);
			l->acc.logged = 1;
			l->acc.last_log_ms = now;
			l->acc.quiet_fails = l->acc.quiet_episodes = 0;
		}
	} else {
		l->acc.delay_ms = l->acc.delay_ms * 2 < LOOP_ACCEPT_BACKOFF_MAX_MS
					  ? l->acc.delay_ms * 2 : LOOP_ACCEPT_BACKOFF_MAX_MS;
	}
	accept_arm_backoff_timer(l);
}

/* An accept succeeded: a back-off episode (if any) is over. */
static void accept_backoff_end(struct loop *l)
{
	if (!l->acc.delay_ms)
		return;
	if (l->acc.logged)
		log_info("engine %u: accepts resumed: %llu failed (last: %s) over %llu ms",
			 l->index, (unsigned long long)l->acc.fails, strerror(-l->acc.err),
			 (unsigned long long)(now_mono_ms() - l->acc.start_ms));
	else {
		l->acc.quiet_fails += l->acc.fails;
		l->acc.quiet_episodes++;
	}
	l->acc.delay_ms = 0;
	l->acc.fails = 0;
}

/* The back-off pause is over: accept again on every listener it stopped. */
static void on_accept_wait(struct loop *l)
{
	l->acc.timer_armed = 0;
	for (unsigned i = 0; i < l->nlis; i++)
		if (!l->stopping && !l->lis[i].armed && l->lis[i].fd >= 0)
			arm_accept(l, i);
}

/* Over client_connection_limit: 421 4.7.0 (RFC 5321 3.8) and close; one
 * report per LOOP_REFUSE_LOG_QUIET_MS with the count since the last. */
static void accept_refuse_addr(struct loop *l, struct conn *c)
{
	uint64_t now = now_mono_ms();

	l->refused++;
	metrics_add(METRIC_CONN_REFUSED_CLIENT, 1);
	if (!l->refuse_log_ms || now - l->refuse_log_ms >= LOOP_REFUSE_LOG_QUIET_MS) {
		log_warn("engine %u: %s: over client_connection_limit (%u open): refused "
			 "(%llu refused on this thread since the last report)", l->index, c->peer,
			 l->cfg->client_connection_limit, (unsigned long long)l->refused);
		l->refuse_log_ms = now;
		l->refused = 0;
	}
	accept_refuse(c->fd, l->addr_busy);
	conn_free_slot(c);
}

/* A slot for the accepted fd, its peer's address and its count against
 * client_connection_limit; NULL when refused (fd closed). */
static struct conn *accept_admit(struct loop *l, int fd)
{
	struct conn *c;

	if (!l->free_conns) {
		/* Over max_connections: say so (RFC 5321 3.8: 421) and close. */
		accept_refuse(fd, l->busy_reply);
		metrics_add(METRIC_CONN_REFUSED_MAX, 1);
		return NULL;
	}
	c = conn_take_slot(l, fd, 0, l->ops, l->ops_arg, NULL);
	peer_text(fd, c->peer, sizeof(c->peer));
	if (l->connlimit && (l->cfg->client_connection_limit_loopback || !cidr_peer_loopback(c->peer))) {
		switch (connlimit_take(l->connlimit, c->peer)) {
		case CONNLIMIT_OVER:
			accept_refuse_addr(l, c);
			return NULL;
		case CONNLIMIT_COUNTED: c->flags |= CONN_ADDR_COUNTED; break;
		case CONNLIMIT_UNCOUNTED: break;
		}
	}
	c->flags |= CONN_INBOUND;
	metrics_add(METRIC_CONN_ACCEPTED, 1);
	metrics_add(METRIC_CONN_OPEN, 1);
	return c;
}

static void on_accept(struct loop *l, struct io_uring_cqe *cqe)
{
	unsigned i = ud_slot(cqe->user_data);
	struct conn *c;
	int fd = cqe->res, one = 1;

	if (fd < 0 && accept_err_is_exhaustion(fd) && !l->stopping) {
		/* A multishot accept ends on an error; should it not, cancel
		 * it so that only the back-off timer re-arms it. */
		if (cqe->flags & IORING_CQE_F_MORE) {
			struct io_uring_sqe *sqe = loop_sqe(l);

			io_uring_prep_cancel64(sqe, ud_make(OP_ACCEPT, i, 0), 0);
			io_uring_sqe_set_data64(sqe, ud_make(OP_IGNORE, 0, 0));
		} else {
			l->lis[i].armed = 0;
		}
		accept_backoff(l, i, fd);
		return;
	}
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		l->lis[i].armed = 0;
		/* While paused, the back-off timer re-arms it. */
		if (!l->stopping && l->lis[i].fd >= 0 && !l->acc.timer_armed)
			arm_accept(l, i);
	}
	if (fd < 0) {
		if (fd != -ECANCELED)
			log_warn("accept on %s: %s", l->cfg->listen[i].text, strerror(-fd));
		return;
	}
	accept_backoff_end(l);
	if (l->stopping) {
		close(fd);
		return;
	}
	c = accept_admit(l, fd);
	if (!c)
		return;
	c->lflags = l->cfg->listen[i].flags;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->st = c->ops->open(c->ops_arg, c, c->peer);
	if (c->flags & CONN_DETACHING) {
		conn_start(c); /* detached inside open() */
		return;
	}
	if (!c->st) {
		close(fd);
		conn_free_slot(c);
		return;
	}
	/* Implicit TLS: the greeting open() queued waits for the handshake. */
	if ((c->lflags & CONFIG_LISTEN_TLS) && conn_tls_begin(c, l->tls_server, NULL, 0)) {
		log_warn("%s: out of memory for TLS; closing", c->peer);
		c->out.len = 0; /* the greeting must not go in the clear */
		conn_close(c);
		return;
	}
	conn_start(c);
}

/* Tear down once no send is in flight: shut the socket so a pending recv
 * completes, then (when no recv is armed) close and free at end of turn. */
static void conn_teardown(struct conn *c)
{
	if (c->flags & CONN_SEND_INFLIGHT)
		return;
	if ((c->flags & CONN_RECV_ARMED) && !(c->flags & CONN_TORNDOWN)) {
		c->flags |= CONN_TORNDOWN;
		(void)shutdown(c->fd, SHUT_RDWR);
		return;
	}
	if (c->flags & CONN_RECV_ARMED)
		return;
	conn_queue(c, 0);
}

static void conn_finish(struct conn *c)
{
	conn_detach_fn done = c->detach_fn;
	void *arg = c->detach_arg;

	close(c->fd);
	if (c->flags & CONN_DETACHING) {
		/* A detach that failed: the owner already let go; it learns
		 * here, once, that nothing will arrive. */
		conn_free_slot(c);
		done(arg, NULL);
		return;
	}
	c->ops->close(c->ops_arg, c, c->st);
	conn_free_slot(c);
}

/* Output not yet in a send: plaintext in out, ciphertext inside tls. */
static size_t conn_out_unsent(const struct conn *c)
{
	return c->out.len + (c->tls ? tls_conn_pending(c->tls) : 0);
}

/* Output queued and not yet taken by the kernel. */
static size_t conn_out_queued(const struct conn *c)
{
	return conn_out_unsent(c) + (c->wbuf.len - c->woff);
}

/* The owner consumed less than offered. When that is because its output is
 * over LOOP_OUT_HIGH (loop.h), the loop itself resumes it once the peer has
 * read the send in flight; otherwise the owner calls conn_resume(). */
static void conn_pause(struct conn *c)
{
	c->flags |= CONN_PAUSED;
	if (conn_out_queued(c) >= LOOP_OUT_HIGH)
		c->flags |= CONN_OUT_WAIT;
}

/* ops->data. *reset: conn_starttls() was called inside, so what the owner
 * did not consume is void (RFC 3207 5; CVE-2011-0411) and must not be kept
 * or offered again. */
static size_t conn_data(struct conn *c, const char *p, size_t n, int *reset)
{
	size_t used;

	c->flags |= CONN_IN_DATA;
	used = c->ops->data(c->ops_arg, c, c->st, p, n);
	*reset = (c->flags & CONN_TLS_RESET) != 0;
	c->flags &= ~(CONN_IN_DATA | CONN_TLS_RESET);
	return used;
}

/* Hand input (plaintext) to the owner; keep what it does not consume. */
static void conn_deliver(struct conn *c, const char *p, size_t n)
{
	size_t used;
	int reset;

	if (c->flags & (CONN_CLOSING | CONN_DEAD))
		return;
	/* Paused, or leaving (conn_detach()): kept, in order, for whoever
	 * reads next. */
	if ((c->flags & (CONN_PAUSED | CONN_DETACHING)) || c->pending.len) {
		if (buf_append(&c->pending, p, n)) {
			log_warn("%s: out of memory for pending input; closing", c->peer);
			c->flags |= CONN_DEAD;
			conn_close(c);
			return;
		}
		if (c->pending.len >= LOOP_PENDING_MAX)
			conn_recv_stop(c);
		return;
	}
	used = conn_data(c, p, n, &reset);
	if (used < n && !reset && !(c->flags & CONN_CLOSING)) {
		conn_pause(c);
		if (buf_append(&c->pending, p + used, n - used)) {
			c->flags |= CONN_DEAD;
			conn_close(c);
		}
	}
}

/* ---- TLS on a connection (core/tls.h) ----------------------------------- */

/* The peer closed (EOF, or TLS close_notify): tell the owner once, now or
 * after its kept input. */
static void conn_peer_gone(struct conn *c)
{
	if (c->flags & (CONN_CLOSING | CONN_GONE_TOLD))
		return;
	if (c->flags & CONN_DETACHING) {
		conn_cut(c, "peer closed while the connection changed owner");
		return;
	}
	c->flags |= CONN_EOF | CONN_GONE_TOLD;
	if (!(c->flags & CONN_PAUSED) && !c->pending.len) {
		c->flags &= ~CONN_EOF;
		(void)c->ops->data(c->ops_arg, c, c->st, NULL, 0);
	}
}

/* The handshake failed (err -EPROTO, -ECONNRESET) or a record was bad
 * afterwards: one line naming the peer and why, the owner told (handshake
 * only: tls_done), and the connection closed (an alert OpenSSL queued goes
 * out first). */
static void conn_tls_failed(struct conn *c, int err, const char *why)
{
	int handshake = !tls_conn_info(c->tls);

	log_info("%s: TLS %s: %s", c->peer, handshake ? "handshake failed" : "error", why);
	if (handshake && c->ops->tls_done)
		c->ops->tls_done(c->ops_arg, c, c->st, err);
	conn_close(c);
}

static void conn_tls_up(void *arg)
{
	struct conn *c = arg;
	const struct tls_info *ti = tls_conn_info(c->tls);

	log_debug("%s: TLS up: %s with cipher %s (%d bits)%s%s", c->peer, ti->version,
		  ti->cipher, ti->bits, ti->verify_error[0] ? ", not verified: " : "",
		  ti->verify_error);
	c->last_ms = now_mono_ms();
	if (c->ops->tls_done)
		c->ops->tls_done(c->ops_arg, c, c->st, 0);
}

static int conn_tls_plain(void *arg, const char *p, size_t n)
{
	struct conn *c = arg;

	conn_deliver(c, p, n);
	/* Closing: what follows has no one to read it. */
	return (c->flags & (CONN_CLOSING | CONN_DEAD)) != 0;
}

static const struct tls_conn_sink conn_tls_sink = { conn_tls_up, conn_tls_plain };

/* Ciphertext arrived: handshake, or plaintext through conn_deliver (so a
 * paused owner's kept input stays bounded by LOOP_PENDING_MAX, plus one
 * record); then send what the TLS layer wrote (handshake flights, tickets,
 * alerts). */
static void conn_tls_input(struct conn *c, const char *p, size_t n)
{
	int rc;

	if (c->flags & (CONN_CLOSING | CONN_DEAD))
		return;
	rc = tls_conn_input(c->tls, p, n, &conn_tls_sink, c);
	if (rc == TLS_CONN_EOF)
		conn_peer_gone(c);
	else if (rc < 0 && !(c->flags & CONN_CLOSING))
		conn_tls_failed(c, rc, tls_conn_error(c->tls));
	conn_flush(c);
}

/* Encrypt the plaintext in out (out_clear is 0 here) once the handshake is
 * done; while it runs, the plaintext waits; after a failure or close it can
 * never go. Returns -1 when the connection was cut. */
static int conn_tls_encrypt(struct conn *c)
{
	int rc;

	if (c->out.len == 0)
		return 0;
	rc = tls_conn_write(c->tls, c->out.data, c->out.len);
	if (rc == -EAGAIN)
		return 0;
	c->out.len = 0;
	if (rc == -ENOMEM || rc == -EPROTO) {
		conn_cut(c, "TLS write failed");
		return -1;
	}
	return 0;
}

/* TLS from here on; clear: the bytes of out still to go in the clear. */
static int conn_tls_begin(struct conn *c, struct tls_ctx *ctx, const char *host,
			  size_t clear)
{
	if (c->tls)
		return -EALREADY;
	c->tls = tls_conn_new(ctx, host);
	if (!c->tls)
		return -ENOMEM;
	c->out_clear = clear;
	c->tls_ms = now_mono_ms();
	return 0;
}

int conn_starttls(struct conn *c, struct tls_ctx *ctx, const char *host)
{
	int rc = conn_tls_begin(c, ctx, host, c->out.len);

	if (rc)
		return rc;
	/* Inside ops->data the owner may still be reading the input (even
	 * the kept input itself): the caller voids it once data() returns.
	 * Outside, void it now. */
	if (c->flags & CONN_IN_DATA) {
		c->flags |= CONN_TLS_RESET;
	} else {
		c->pending.len = 0;
		conn_queue(c, CONN_RESUME); /* re-arms a receive stopped on it */
	}
	conn_flush(c); /* the reply in the clear, then a client's hello */
	return 0;
}

const struct tls_info *conn_tls(const struct conn *c)
{
	return c->tls ? tls_conn_info(c->tls) : NULL;
}

unsigned conn_listen_flags(const struct conn *c)
{
	return c->lflags;
}

static void on_recv(struct loop *l, struct io_uring_cqe *cqe)
{
	struct conn *c = &l->conns[ud_slot(cqe->user_data)];
	int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
	int res = cqe->res;

	if (!(c->flags & CONN_USED) || c->gen != ud_gen(cqe->user_data)) {
		if (cqe->flags & IORING_CQE_F_BUFFER)
			rbuf_return(l, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		return;
	}
	if (!more)
		c->flags &= ~CONN_RECV_ARMED;
	if (res > 0) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		const char *p = l->rbufs + (size_t)bid * LOOP_RBUF_SIZE;

		c->last_ms = now_mono_ms();
		if (c->tls)
			conn_tls_input(c, p, (size_t)res);
		else
			conn_deliver(c, p, (size_t)res);
		rbuf_return(l, bid);
	} else if (res == 0 || (res < 0 && res != -ENOBUFS && res != -ECANCELED)) {
		/* EOF or a socket error: the peer is gone. */
		if (res < 0 && res != -ECONNRESET)
			log_debug("%s: recv: %s", c->peer, strerror(-res));
		if (c->tls && tls_conn_state(c->tls) == TLS_CONN_HANDSHAKE &&
		    !(c->flags & CONN_CLOSING))
			conn_tls_failed(c, -ECONNRESET, "connection closed during the handshake");
		else
			conn_peer_gone(c);
		if (c->flags & CONN_RECV_ARMED)
			return;
		if (c->flags & CONN_CLOSING)
			conn_teardown(c);
		return;
	}
	if (c->flags & CONN_RECV_ARMED)
		return;
	/* The multishot recv ended: out of buffers, cancelled, or done. */
	if (c->flags & CONN_CLOSING) {
		conn_teardown(c);
		return;
	}
	if (c->flags & CONN_DETACHING) {
		conn_detach_step(c);
		return;
	}
	if (c->flags & (CONN_EOF | CONN_RECV_STOPPED))
		return;
	l->rearm[l->nrearm++] = c;
}

static void send_out(struct conn *c)
{
	struct io_uring_sqe *sqe = loop_sqe(c->loop);

	io_uring_prep_send(sqe, c->fd, c->wbuf.data + c->woff, c->wbuf.len - c->woff,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud_make(OP_SEND, c->slot, c->gen));
	c->flags |= CONN_SEND_INFLIGHT;
	c->send_ms = now_mono_ms();
}

/* No send in flight: move the next output into wbuf. The kernel reads wbuf
 * until the CQE; new replies go to out, which may be reallocated freely
 * meanwhile. Clear text owed before STARTTLS goes alone, first. */
static void conn_fill_wbuf(struct conn *c)
{
	struct buf tmp;

	if (c->out_clear) {
		if (buf_append(&c->wbuf, c->out.data, c->out_clear)) {
			conn_cut(c, "out of memory for output");
			return;
		}
		buf_consume(&c->out, c->out_clear);
		c->out_clear = 0;
		return;
	}
	if (c->tls) {
		/* Encrypted only now, not while a send is in flight: so out
		 * keeps growing then, and the owner sees LOOP_OUT_HIGH. */
		if (conn_tls_encrypt(c))
			return;
		if (c->flags & CONN_CLOSING)
			(void)tls_conn_shutdown(c->tls); /* close_notify, last */
		if (tls_conn_take(c->tls, &c->wbuf))
			conn_cut(c, "out of memory for TLS output");
		return;
	}
	tmp = c->wbuf;
	c->wbuf = c->out;
	c->out = tmp;
	c->out.len = 0;
}

void conn_flush(struct conn *c)
{
	if (c->flags & CONN_SEND_FAILED) {
		c->out.len = 0; /* no one to read it (on_send()) */
		return;
	}
	if ((c->flags & (CONN_SEND_INFLIGHT | CONN_DEAD)) ||
	    (conn_out_unsent(c) == 0 && !(c->tls && (c->flags & CONN_CLOSING))))
		return;
	conn_fill_wbuf(c);
	if (c->wbuf.len == 0 || (c->flags & CONN_DEAD))
		return;
	c->woff = 0;
	send_out(c);
}

static void on_send(struct loop *l, struct io_uring_cqe *cqe)
{
	struct conn *c = &l->conns[ud_slot(cqe->user_data)];

	if (!(c->flags & CONN_USED) || c->gen != ud_gen(cqe->user_data))
		return;
	c->flags &= ~CONN_SEND_INFLIGHT;
	if (cqe->res < 0) {
		int reset = cqe->res == -EPIPE || cqe->res == -ECONNRESET;

		if (!reset)
			log_debug("%s: send: %s", c->peer, strerror(-cqe->res));
		c->wbuf.len = 0;
		c->out.len = 0;
		if (reset && (c->flags & CONN_RECV_ARMED) &&
		    !(c->flags & (CONN_CLOSING | CONN_DETACHING | CONN_PAUSED))) {
			/* The peer is gone, but what it sent before it went
			 * may still be unread: a customer's 250 to our final
			 * dot, then a reset (a pipelined MAIL behind that dot
			 * meets the reset). The armed recv brings that input,
			 * then the end (conn_peer_gone() tells the owner);
			 * only the output is dropped meanwhile. */
			c->flags |= CONN_SEND_FAILED;
			return;
		}
		c->flags |= CONN_DEAD;
		if (c->flags & CONN_OUT_WAIT) {
			/* Waiting for this peer to read: it never will. Its
			 * kept commands can have no answer; drop them. */
			c->flags &= ~(CONN_OUT_WAIT | CONN_PAUSED);
			c->pending.len = 0;
		}
		if ((c->flags & (CONN_CLOSING | CONN_DETACHING)) == CONN_DETACHING)
			conn_cut(c, "send failed while the connection changed owner");
		if (!(c->flags & CONN_CLOSING)) {
			/* Tell the owner the way a vanished peer is told. */
			c->flags |= CONN_EOF;
			if (!(c->flags & CONN_PAUSED)) {
				c->flags &= ~CONN_EOF;
				(void)c->ops->data(c->ops_arg, c, c->st, NULL, 0);
			}
		}
		if (c->flags & CONN_CLOSING)
			conn_teardown(c);
		return;
	}
	c->woff += (size_t)cqe->res;
	if (c->woff < c->wbuf.len) {
		send_out(c); /* short send: the rest, still one in flight */
		return;
	}
	c->wbuf.len = 0;
	c->woff = 0;
	if ((c->flags & CONN_OUT_WAIT) && conn_out_unsent(c) < LOOP_OUT_HIGH) {
		/* The peer reads again: take more of its input. */
		c->flags &= ~CONN_OUT_WAIT;
		conn_queue(c, CONN_RESUME);
	}
	conn_flush(c);
	if (c->flags & CONN_CLOSING)
		conn_teardown(c);
	else if (c->flags & CONN_DETACHING)
		conn_detach_step(c);
}

void conn_close(struct conn *c)
{
	if (c->flags & CONN_CLOSING)
		return;
	c->flags |= CONN_CLOSING;
	c->close_ms = now_mono_ms();
	conn_flush(c); /* with TLS: the last output, then close_notify */
	conn_teardown(c);
}

void conn_resume(struct conn *c)
{
	conn_queue(c, CONN_RESUME);
}

/* ---- moving a connection to another owner (loop.h: conn_detach) -------- */

/* Every byte of output taken by the kernel and the receive ended: the
 * socket can change hands with nothing of it still in this ring. */
static int conn_detach_ready(const struct conn *c)
{
	return !(c->flags & (CONN_SEND_INFLIGHT | CONN_RECV_ARMED)) &&
	       conn_out_unsent(c) == 0;
}

/* The next step of a detach, after each send or receive completion: send
 * what is queued, then cancel the receive (its last completions still go
 * into the kept input), then finish from the deferred work list, so done()
 * never runs inside a conn_*() call. */
static void conn_detach_step(struct conn *c)
{
	if (c->flags & CONN_CLOSING) {
		conn_teardown(c);
		return;
	}
	if (c->flags & CONN_SEND_INFLIGHT)
		return;
	if (conn_out_unsent(c)) {
		conn_flush(c);
		if (c->flags & CONN_CLOSING)
			conn_teardown(c);
		return;
	}
	if (c->flags & CONN_RECV_ARMED) {
		conn_recv_stop(c);
		return;
	}
	conn_queue(c, 0);
}

int conn_detach(struct conn *c, conn_detach_fn done, void *arg)
{
	if (c->flags & (CONN_CLOSING | CONN_DETACHING))
		return -EALREADY;
	/* Mid-connect or mid-handshake: nothing a next owner could go on
	 * with. */
	if ((c->flags & CONN_CONNECTING) ||
	    (c->tls && tls_conn_state(c->tls) == TLS_CONN_HANDSHAKE) ||
	    ((c->lflags & CONFIG_LISTEN_TLS) && !c->tls))
		return -EINVAL;
	c->flags |= CONN_DETACHING;
	c->detach_fn = done;
	c->detach_arg = arg;
	if (c->flags & (CONN_EOF | CONN_GONE_TOLD | CONN_DEAD | CONN_SEND_FAILED))
		conn_cut(c, "peer gone before the connection changed owner");
	else if (c->loop->stopping)
		conn_cut(c, "the loop stops while the connection changes owner");
	else
		conn_detach_step(c);
	return 0;
}

/* Ready (conn_detach_ready()): the slot becomes a parcel and is freed, and
 * done() gets it. Out of memory for the parcel fails the detach. */
static void conn_detach_finish(struct conn *c)
{
	struct conn_parcel *p = calloc(1, sizeof(*p));
	conn_detach_fn done = c->detach_fn;
	void *arg = c->detach_arg;

	if (!p) {
		conn_cut(c, "out of memory for the hand-over");
		return;
	}
	p->fd = c->fd;
	p->tls = c->tls;
	c->tls = NULL;
	p->kept = c->pending;
	buf_init(&c->pending, 0);
	p->lflags = c->lflags;
	if (c->flags & CONN_ADDR_COUNTED) {
		p->counted = c->loop->connlimit;
		c->flags &= ~CONN_ADDR_COUNTED;
	}
	memcpy(p->peer, c->peer, sizeof(p->peer));
	log_debug("%s: leaves engine %u with %zu bytes of kept input%s", c->peer,
		  c->loop->index, p->kept.len, p->tls ? ", TLS" : "");
	conn_free_slot(c);
	done(arg, p);
}

void conn_parcel_free(struct conn_parcel *p)
{
	if (!p)
		return;
	close(p->fd);
	if (p->counted)
		connlimit_release(p->counted, p->peer);
	p->tls = tls_conn_free(p->tls);
	buf_free(&p->kept);
	free(p);
}

const char *conn_parcel_peer(const struct conn_parcel *p)
{
	return p->peer;
}

/* The count taken on another loop's counter (they share one node-wide in
 * etrnd; tests may not) moves only to the same counter; else it is given
 * back and the connection goes uncounted here: admitted once is enough. */
static unsigned adopt_count(struct loop *l, struct conn_parcel *p)
{
	if (!p->counted)
		return 0;
	if (p->counted != l->connlimit) {
		connlimit_release(p->counted, p->peer);
		p->counted = NULL;
		return 0;
	}
	p->counted = NULL;
	return CONN_ADDR_COUNTED;
}

struct conn *loop_adopt(struct loop *l, struct conn_parcel *p,
			const struct conn_ops *ops, void *ops_arg, void *st)
{
	struct conn *c;
	int err = l->stopping ? ESHUTDOWN : !l->free_conns ? EMFILE : 0;

	if (err) {
		log_info("%s: engine %u cannot adopt the connection: %s; closing",
			 p->peer, l->index, strerror(err));
		conn_parcel_free(p);
		errno = err;
		return NULL;
	}
	c = conn_take_slot(l, p->fd, adopt_count(l, p), ops, ops_arg, st);
	c->lflags = p->lflags;
	c->tls = p->tls;
	memcpy(c->peer, p->peer, sizeof(c->peer));
	/* The kept input goes to the owner first, from the deferred work (so
	 * not inside this call); what arrives meanwhile queues behind it.
	 * A free slot's pending buffer is already freed (conn_free_slot). */
	c->pending = p->kept;
	if (c->pending.len)
		conn_queue(c, CONN_RESUME);
	free(p);
	log_debug("%s: adopted by engine %u with %zu bytes of kept input", c->peer,
		  l->index, c->pending.len);
	arm_recv(c);
	return c;
}

/* Deferred work: resumes (redeliver kept input) and finished closes. */
static void loop_do_work(struct loop *l)
{
	while (l->work) {
		struct conn *c = l->work;

		l->work = c->next;
		c->next = NULL;
		c->flags &= ~CONN_QUEUED;
		if ((c->flags & CONN_CLOSING) && !(c->flags & CONN_SEND_INFLIGHT) &&
		    !(c->flags & CONN_RECV_ARMED)) {
			conn_finish(c);
			continue;
		}
		if (c->flags & CONN_DETACHING) {
			c->flags &= ~CONN_RESUME; /* nobody to resume for */
			if (!(c->flags & CONN_CLOSING) && conn_detach_ready(c))
				conn_detach_finish(c);
			continue;
		}
		if (!(c->flags & CONN_RESUME) || (c->flags & CONN_CLOSING)) {
			c->flags &= ~CONN_RESUME;
			continue;
		}
		c->flags &= ~(CONN_RESUME | CONN_PAUSED | CONN_OUT_WAIT);
		if (c->pending.len) {
			int reset;
			size_t used = conn_data(c, c->pending.data, c->pending.len, &reset);

			/* After STARTTLS the rest is void; pending is not
			 * touched before the owner has returned. */
			if (reset)
				c->pending.len = 0;
			else
				buf_consume(&c->pending, used);
			if (c->pending.len && !(c->flags & CONN_CLOSING)) {
				conn_pause(c);
				continue;
			}
		}
		if (c->flags & (CONN_CLOSING | CONN_DETACHING))
			continue;
		if (c->flags & CONN_EOF) {
			c->flags &= ~CONN_EOF;
			(void)c->ops->data(c->ops_arg, c, c->st, NULL, 0);
			continue;
		}
		if ((c->flags & CONN_RECV_STOPPED) && !(c->flags & CONN_RECV_ARMED)) {
			c->flags &= ~CONN_RECV_STOPPED;
			arm_recv(c);
		}
	}
}

uint64_t conn_handle(const struct conn *c)
{
	return ((uint64_t)c->slot << 32) | c->gen;
}

struct conn *loop_conn(struct loop *l, uint64_t handle)
{
	uint32_t slot = (uint32_t)(handle >> 32);
	struct conn *c;

	if (slot >= l->nslots)
		return NULL;
	c = &l->conns[slot];
	if (!(c->flags & CONN_USED) || c->gen != (uint32_t)handle)
		return NULL;
	return c;
}

struct buf *conn_out(struct conn *c) { return &c->out; }
struct loop *conn_loop(const struct conn *c) { return c->loop; }
const char *conn_peer(const struct conn *c) { return c->peer; }
unsigned loop_index(const struct loop *l) { return l->index; }

void conn_set_timeout(struct conn *c, unsigned ms)
{
	c->timeout_ms = ms;
	c->last_ms = now_mono_ms();
}

int loop_connect(struct loop *l, const struct sockaddr *sa, socklen_t salen,
		 unsigned timeout_ms, const struct conn_ops *ops, void *ops_arg,
		 void *cookie)
{
	struct io_uring_sqe *sqe;
	struct conn *c;
	int fd;

	if (l->stopping)
		return -ESHUTDOWN;
	if (!l->free_conns)
		return -EMFILE; /* every slot in use: max_connections */
	if (salen > sizeof(c->dst))
		return -EINVAL;
	/* socket(2) is a quick local call; the connect, which waits on the
	 * network, goes through the ring with a linked timeout. */
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* st holds the cookie until connected() gives the real state. */
	c = conn_take_slot(l, fd, CONN_CONNECTING, ops, ops_arg, cookie);
	memcpy(&c->dst, sa, salen);
	c->dstlen = salen;
	c->cto.tv_sec = timeout_ms / 1000;
	c->cto.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
	loop_sqe_room(l, 2);
	sqe = loop_sqe(l);
	io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&c->dst, c->dstlen);
	sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, ud_make(OP_CONNECT, c->slot, c->gen));
	sqe = loop_sqe(l);
	io_uring_prep_link_timeout(sqe, &c->cto, 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_IGNORE, 0, 0));
	return 0;
}

static void on_connect(struct loop *l, struct io_uring_cqe *cqe)
{
	struct conn *c = &l->conns[ud_slot(cqe->user_data)];
	void *cookie;
	int one = 1, res = cqe->res;

	if (!(c->flags & CONN_USED) || c->gen != ud_gen(cqe->user_data))
		panic("connect completion for a free slot");
	cookie = c->st;
	c->flags &= ~CONN_CONNECTING;
	if (res == -ECANCELED)
		res = -ETIMEDOUT; /* the linked timeout fired */
	if (res == 0 && l->stopping)
		res = -ESHUTDOWN;
	if (res < 0) {
		close(c->fd);
		conn_free_slot(c);
		(void)c->ops->connected(c->ops_arg, NULL, cookie, res);
		return;
	}
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	peer_text(c->fd, c->peer, sizeof(c->peer));
	c->last_ms = now_mono_ms();
	c->st = c->ops->connected(c->ops_arg, c, cookie, 0);
	if (!c->st && !(c->flags & CONN_DETACHING)) {
		close(c->fd);
		conn_free_slot(c);
		return;
	}
	conn_start(c);
}

/* The inbox of a loop whose run has ended: posts are refused from then on
 * (loop_close_inbox()), so the poster keeps (and frees) what it posted. */
#define LOOP_INBOX_CLOSED ((struct loop_msg *)(uintptr_t)1)

int loop_post(struct loop *l, loop_hook_fn fn, void *arg)
{
	struct loop_msg *m = malloc(sizeof(*m)), *head;
	uint64_t one = 1;

	if (!m)
		return -ENOMEM;
	m->fn = fn;
	m->arg = arg;
	head = atomic_load(&l->inbox);
	/* Lock-free push (Treiber stack); the loop takes the whole list. */
	do {
		if (head == LOOP_INBOX_CLOSED) {
			free(m);
			return -ESHUTDOWN;
		}
		m->next = head;
	} while (!atomic_compare_exchange_weak(&l->inbox, &head, m));
	(void)!write(l->wakefd, &one, sizeof(one));
	return 0;
}

/* Turns a finished loop spends running posts that keep arriving before it
 * closes its inbox anyway (a hook that posts to its own loop every turn
 * would otherwise keep it from ending). */
#define LOOP_CLOSE_TRIES 8

/* The run is over once nothing is posted: close the inbox (1), or 0 when a
 * post came in first (the loop runs it, then tries again). force: close it
 * whatever it holds; what is in it is dropped unrun (logged). */
static int loop_close_inbox(struct loop *l, int force)
{
	struct loop_msg *empty = NULL, *m, *next;
	unsigned n = 0;

	if (atomic_compare_exchange_strong(&l->inbox, &empty, LOOP_INBOX_CLOSED))
		return 1;
	if (!force)
		return 0;
	for (m = atomic_exchange(&l->inbox, LOOP_INBOX_CLOSED); m; m = next, n++) {
		next = m->next;
		free(m);
	}
	log_warn("engine %u: %u post(s) still arriving as the loop ended: dropped", l->index, n);
	return 1;
}

/* Run what other threads posted, in the order they posted it. */
static void loop_run_inbox(struct loop *l)
{
	struct loop_msg *m = atomic_exchange(&l->inbox, NULL), *fifo = NULL, *next;

	while (m) {
		next = m->next;
		m->next = fifo;
		fifo = m;
		m = next;
	}
	for (m = fifo; m; m = next) {
		next = m->next;
		m->fn(m->arg);
		free(m);
	}
}

/* ---- file operations ---------------------------------------------------- */

static int fop_get(struct loop *l, loop_done_fn fn, void *arg, uint64_t *ud)
{
	int i = l->fop_free;

	if (i < 0)
		return -EBUSY;
	l->fop_free = l->fops[i].next_free;
	l->fops[i].fn = fn;
	l->fops[i].arg = arg;
	l->fops_inflight++;
	*ud = ud_make(OP_FILE, (uint32_t)i, l->fops[i].gen);
	return 0;
}

unsigned loop_file_ops_free(const struct loop *l)
{
	return LOOP_FILE_OPS_MAX - l->fops_inflight;
}

/* An SQE for a file operation, its completion bound to fn(arg); with
 * LOOP_LINK, room is made first so the chain is not split. NULL with *rc
 * set when every file-op slot is in use. */
static struct io_uring_sqe *file_sqe(struct loop *l, unsigned flags, loop_done_fn fn,
				     void *arg, int *rc)
{
	struct io_uring_sqe *sqe;
	uint64_t ud;

	*rc = fop_get(l, fn, arg, &ud);
	if (*rc)
		return NULL;
	if (flags & LOOP_LINK)
		loop_sqe_room(l, 4);
	sqe = loop_sqe(l);
	io_uring_sqe_set_data64(sqe, ud);
	return sqe;
}

/* After io_uring_prep_*() (which clears the SQE's flags): mark the link. */
static int file_sqe_done(struct io_uring_sqe *sqe, unsigned flags, uint64_t ud)
{
	if (flags & LOOP_LINK)
		sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

int loop_file_writev(struct loop *l, int fd, const struct iovec *iov,
		     unsigned iovcnt, uint64_t off, unsigned flags,
		     loop_done_fn fn, void *arg)
{
	int rc;
	struct io_uring_sqe *sqe = file_sqe(l, flags, fn, arg, &rc);
	uint64_t ud;

	if (!sqe)
		return rc;
	ud = sqe->user_data;
	io_uring_prep_writev(sqe, fd, iov, iovcnt, off);
	if (flags & LOOP_DSYNC)
		sqe->rw_flags = RWF_DSYNC;
	return file_sqe_done(sqe, flags, ud);
}

int loop_file_fsync(struct loop *l, int fd, int datasync, unsigned flags,
		    loop_done_fn fn, void *arg)
{
	int rc;
	struct io_uring_sqe *sqe = file_sqe(l, flags, fn, arg, &rc);
	uint64_t ud;

	if (!sqe)
		return rc;
	ud = sqe->user_data;
	io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0);
	return file_sqe_done(sqe, flags, ud);
}

int loop_file_read(struct loop *l, int fd, void *buf, unsigned len, uint64_t off,
		   loop_done_fn fn, void *arg)
{
	int rc;
	struct io_uring_sqe *sqe = file_sqe(l, 0, fn, arg, &rc);
	uint64_t ud;

	if (!sqe)
		return rc;
	ud = sqe->user_data;
	io_uring_prep_read(sqe, fd, buf, len, off);
	return file_sqe_done(sqe, 0, ud);
}

int loop_file_unlinkat(struct loop *l, int dirfd, const char *name,
		       loop_done_fn fn, void *arg)
{
	int rc;
	struct io_uring_sqe *sqe = file_sqe(l, 0, fn, arg, &rc);
	uint64_t ud;

	if (!sqe)
		return rc;
	ud = sqe->user_data;
	io_uring_prep_unlinkat(sqe, dirfd, name, 0);
	return file_sqe_done(sqe, 0, ud);
}

int loop_file_close(struct loop *l, int fd, loop_done_fn fn, void *arg)
{
	int rc;
	struct io_uring_sqe *sqe = file_sqe(l, 0, fn, arg, &rc);
	uint64_t ud;

	if (!sqe)
		return rc;
	ud = sqe->user_data;
	io_uring_prep_close(sqe, fd);
	/* An inline close would run the file's final release (a fput's
	 * task work) on this thread as the syscall returns; a worker runs
	 * it on its own. */
	sqe->flags |= IOSQE_ASYNC;
	return file_sqe_done(sqe, 0, ud);
}

static void on_file(struct loop *l, struct io_uring_cqe *cqe)
{
	uint32_t i = ud_slot(cqe->user_data);
	struct loop_file_op *op;
	loop_done_fn fn;
	void *arg;

	if (i >= LOOP_FILE_OPS_MAX || l->fops[i].gen != ud_gen(cqe->user_data))
		panic("stale file op completion %u", i);
	op = &l->fops[i];
	fn = op->fn;
	arg = op->arg;
	op->gen++;
	op->next_free = l->fop_free;
	l->fop_free = (int)i;
	l->fops_inflight--;
	fn(arg, cqe->res);
}

/* ---- timers, wake-ups, shutdown ----------------------------------------- */

static void arm_timer(struct loop *l)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	io_uring_prep_timeout(sqe, &l->tick, 0, 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_TIMER, 0, 0));
	l->timer_armed = 1;
}

static void arm_wake(struct loop *l)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	io_uring_prep_read(sqe, l->wakefd, &l->wakeval, sizeof(l->wakeval), 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_WAKE, 0, 0));
}

/* Cancel the accepts of every listener whose flags have none of keep and
 * close its socket: new clients of it are refused from now on. A listener
 * closed stays closed (the accept back-off never re-arms it: fd < 0). */
static void listeners_close(struct loop *l, unsigned keep)
{
	for (unsigned i = 0; i < l->nlis; i++) {
		if (l->cfg->listen[i].flags & keep)
			continue;
		if (l->lis[i].armed) {
			struct io_uring_sqe *sqe = loop_sqe(l);
			io_uring_prep_cancel64(sqe, ud_make(OP_ACCEPT, i, 0), 0);
			io_uring_sqe_set_data64(sqe, ud_make(OP_IGNORE, 0, 0));
		}
		if (l->lis[i].fd >= 0) {
			close(l->lis[i].fd);
			l->lis[i].fd = -1;
		}
	}
}

void loop_close_listeners(struct loop *l, unsigned keep_flags)
{
	listeners_close(l, keep_flags);
}

static void loop_begin_stop(struct loop *l)
{
	if (l->stopping)
		return;
	l->stopping = 1;
	l->stop_deadline_ms = now_mono_ms() + l->cfg->shutdown_timeout_ms;
	/* Background work that never runs out (expiry of a large old spool)
	 * must stop starting new steps now, or the loop never ends. */
	for (unsigned i = 0; i < l->nstop; i++)
		l->stop[i].fn(l->stop[i].arg);
	/* Stop accepting at once: cancel the accepts and close the sockets, so
	 * new clients are refused (and try another MX) instead of waiting in
	 * a backlog nobody will accept from. */
	listeners_close(l, 0);
	log_info("engine %u: stopped accepting; %u connection(s) finishing", l->index,
		 (unsigned)l->nconns);
	for (uint32_t s = 0; s < l->nslots; s++) {
		struct conn *c = &l->conns[s];
		if ((c->flags & (CONN_USED | CONN_DETACHING | CONN_CLOSING)) ==
		    (CONN_USED | CONN_DETACHING)) {
			/* Its next owner would be stopping too: done(NULL). */
			conn_cut(c, "the loop stops while the connection changes owner");
			continue;
		}
		if ((c->flags & CONN_USED) && !(c->flags & (CONN_CLOSING | CONN_SHUTDOWN))) {
			c->flags |= CONN_SHUTDOWN;
			c->ops->shutdown(c->ops_arg, c, c->st);
		}
	}
}

/* Cut a connection off whatever it is waiting for: a send the peer never
 * reads, a recv. The pending send is cancelled and the socket shut down,
 * so both complete and the slot is freed at the end of that turn. Logged
 * once, with why. */
static void conn_cut(struct conn *c, const char *why)
{
	struct io_uring_sqe *sqe;

	if (c->flags & CONN_CUT)
		return;
	c->flags |= CONN_CUT | CONN_DEAD | CONN_CLOSING;
	log_warn("%s: %s; connection cut off", c->peer, why);
	if (c->flags & CONN_SEND_INFLIGHT) {
		sqe = loop_sqe(c->loop);
		io_uring_prep_cancel64(sqe, ud_make(OP_SEND, c->slot, c->gen), 0);
		io_uring_sqe_set_data64(sqe, ud_make(OP_IGNORE, 0, 0));
	}
	if (!(c->flags & CONN_TORNDOWN)) {
		c->flags |= CONN_TORNDOWN;
		(void)shutdown(c->fd, SHUT_RDWR);
	}
	conn_teardown(c);
}

/* A closing connection whose last send has not gone out within
 * close_timeout (a peer that stopped reading) is cut off. */
static void on_timer_closing(struct loop *l, struct conn *c, uint64_t now)
{
	if ((c->flags & (CONN_SEND_INFLIGHT | CONN_CUT)) == CONN_SEND_INFLIGHT &&
	    now - c->close_ms >= l->cfg->close_timeout_ms)
		conn_cut(c, "peer did not read the final replies within close_timeout");
}

/* A handshake that did not end within tls_handshake_timeout: a peer that
 * stalls mid-handshake (half a ClientHello and silence) is cut by the loop
 * itself; a 421 from ops->timeout could not be sent in the clear anyway. */
static void conn_tls_timeout(struct conn *c)
{
	conn_cut(c, "TLS handshake not done within tls_handshake_timeout");
	if (c->ops->tls_done)
		c->ops->tls_done(c->ops_arg, c, c->st, -ETIMEDOUT);
}

static void on_timer(struct loop *l)
{
	uint64_t now = now_mono_ms();

	l->timer_armed = 0;
	for (uint32_t s = 0; s < l->nslots; s++) {
		struct conn *c = &l->conns[s];
		if (!(c->flags & CONN_USED))
			continue;
		if (c->flags & CONN_CLOSING) {
			on_timer_closing(l, c, now);
			continue;
		}
		if (c->flags & CONN_DETACHING) {
			/* No owner to ask: only the last output can hold it. */
			if ((c->flags & CONN_SEND_INFLIGHT) &&
			    now - c->send_ms >= l->cfg->send_timeout_ms)
				conn_cut(c, "peer did not read the output before the "
					 "connection changed owner within send_timeout");
			continue;
		}
		if (c->tls && tls_conn_state(c->tls) == TLS_CONN_HANDSHAKE) {
			if (now - c->tls_ms >= l->cfg->tls_handshake_timeout_ms)
				conn_tls_timeout(c);
			continue;
		}
		/* Paused for the owner's sake (a commit): it resumes it. Paused
		 * on output the peer does not read: the timeouts apply. */
		if ((c->flags & (CONN_PAUSED | CONN_OUT_WAIT)) == CONN_PAUSED)
			continue;
		if (l->stopping && now >= l->stop_deadline_ms) {
			log_warn("%s: shutdown_timeout passed; closing", c->peer);
			conn_close(c);
			continue;
		}
		if (c->flags & CONN_CONNECTING)
			continue; /* bounded by its linked connect timeout */
		if (now - c->last_ms >= (c->timeout_ms ? c->timeout_ms : l->cfg->idle_timeout_ms) ||
		    now - c->start_ms >= l->cfg->session_timeout_ms ||
		    ((c->flags & CONN_SEND_INFLIGHT) &&
		     now - c->send_ms >= l->cfg->send_timeout_ms))
			c->ops->timeout(c->ops_arg, c, c->st);
	}
	/* A connection stuck behind a send the peer never reads would hold
	 * shutdown forever: past the deadline, cut it off. */
	if (l->stopping && now >= l->stop_deadline_ms) {
		for (uint32_t s = 0; s < l->nslots; s++) {
			struct conn *c = &l->conns[s];
			if (c->flags & CONN_USED)
				conn_cut(c, "shutdown_timeout passed");
		}
	}
	arm_timer(l);
}

void loop_stop(struct loop *l)
{
	uint64_t one = 1;

	/* The flag first, so the woken loop sees it. The loop may then end at
	 * once; wakefd stays open until loop_free(), which the owner calls
	 * only after every thread that could post or stop has finished. */
	atomic_store_explicit(&l->stop_req, 1, memory_order_release);
	(void)!write(l->wakefd, &one, sizeof(one));
}

/* 1 (and logged: a registry too small is a wiring bug to see) when all
 * LOOP_HOOKS_MAX slots of a kind are taken. */
static int hooks_full(const struct loop *l, unsigned used, const char *kind,
		      const char *name)
{
	if (used < LOOP_HOOKS_MAX)
		return 0;
	log_err("engine %u: %s %s: all %d slots taken", l->index, kind, name,
		LOOP_HOOKS_MAX);
	return 1;
}

int loop_add_turn_hook(struct loop *l, enum loop_turn_phase phase,
		       const char *name, loop_hook_fn fn, void *arg)
{
	unsigned at;

	if (phase >= LOOP_TURN_PHASES)
		panic("turn hook %s: no phase %d", name, (int)phase);
	if (hooks_full(l, l->nturn, "turn hook", name))
		return -ENOSPC;
	/* After every hook of this phase or an earlier one: the array stays
	 * sorted by phase, registration order within a phase. */
	at = l->nturn;
	while (at > 0 && l->turn[at - 1].phase > phase) {
		l->turn[at] = l->turn[at - 1];
		at--;
	}
	l->turn[at] = (struct loop_hook){ .name = name, .fn = fn, .arg = arg,
					  .phase = phase };
	l->nturn++;
	return 0;
}

int loop_add_stop_hook(struct loop *l, const char *name, loop_hook_fn fn, void *arg)
{
	if (hooks_full(l, l->nstop, "stop hook", name))
		return -ENOSPC;
	l->stop[l->nstop++] = (struct loop_hook){ .name = name, .fn = fn, .arg = arg };
	return 0;
}

int loop_add_busy_check(struct loop *l, const char *name, loop_busy_fn fn, void *arg)
{
	if (hooks_full(l, l->nbusy, "busy check", name))
		return -ENOSPC;
	l->busy[l->nbusy++] = (struct loop_busy){ .name = name, .fn = fn, .arg = arg };
	return 0;
}

/* ---- setup and the loop itself ------------------------------------------ */

/* SINGLE_ISSUER | DEFER_TASKRUN: completions run only when this thread asks
 * for them, with no cross-thread wake-ups (kernel 6.1+); fall back to a plain
 * ring where they are missing. Returns 0 or -errno. */
static int ring_setup(struct loop *l)
{
	struct io_uring_params p;
	int rc;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	rc = io_uring_queue_init_params(LOOP_SQ_ENTRIES, &l->ring, &p);
	if (rc == -EINVAL) {
		memset(&p, 0, sizeof(p));
		rc = io_uring_queue_init_params(LOOP_SQ_ENTRIES, &l->ring, &p);
	}
	return rc;
}

/* max_connections slots, all on the free list (slot 0 first). Returns 0 or
 * -ENOMEM. */
static int slots_setup(struct loop *l)
{
	l->nslots = l->cfg->max_connections;
	l->conns = calloc(l->nslots, sizeof(*l->conns));
	l->rearm = calloc(l->nslots, sizeof(*l->rearm));
	if (!l->conns || !l->rearm)
		return -ENOMEM;
	for (uint32_t s = l->nslots; s-- > 0;) {
		struct conn *c = &l->conns[s];
		c->loop = l;
		c->slot = s;
		c->fd = -1;
		buf_init(&c->out, 0);
		buf_init(&c->wbuf, 0);
		buf_init(&c->pending, 0);
		c->next = l->free_conns;
		l->free_conns = c;
	}
	return 0;
}

struct loop *loop_new(const struct loop_conf *conf, char *err, size_t errlen)
{
	struct loop *l;
	uint64_t tick;
	int rc;

	l = calloc(1, sizeof(*l));
	if (!l) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->index = conf->index;
	l->cfg = conf->cfg;
	l->ops = conf->ops;
	l->ops_arg = conf->ops_arg;
	l->busy_reply = conf->busy_reply;
	l->connlimit = conf->connlimit;
	l->tls_server = conf->tls_server;
	l->wakefd = -1;
	for (unsigned i = 0; i < CONFIG_LISTEN_MAX; i++)
		l->lis[i].fd = -1;

	if (conf->addr_busy_reply &&
	    (size_t)snprintf(l->addr_busy, sizeof(l->addr_busy), "%s", conf->addr_busy_reply) >=
		    sizeof(l->addr_busy)) {
		snprintf(err, errlen, "addr_busy_reply longer than %u bytes", LOOP_REPLY_MAX - 1);
		goto fail;
	}
	rc = ring_setup(l);
	if (rc) {
		snprintf(err, errlen, "io_uring_queue_init: %s", strerror(-rc));
		goto fail;
	}
	l->ring_ok = 1;
	rc = rbuf_setup(l);
	if (rc) {
		snprintf(err, errlen, "provided buffer ring: %s", strerror(-rc));
		goto fail;
	}
	if (slots_setup(l)) {
		snprintf(err, errlen, "out of memory for %u connection slots", l->nslots);
		goto fail;
	}
	for (int i = 0; i < LOOP_FILE_OPS_MAX; i++)
		l->fops[i].next_free = i + 1 < LOOP_FILE_OPS_MAX ? i + 1 : -1;
	l->fop_free = 0;
	l->wakefd = eventfd(0, EFD_CLOEXEC);
	if (l->wakefd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	for (unsigned i = 0; i < l->cfg->nlisten; i++) {
		if ((l->cfg->listen[i].flags & CONFIG_LISTEN_TLS) && !l->tls_server) {
			snprintf(err, errlen, "listen_tls %s: no TLS server context (tls_cert_file)",
				 l->cfg->listen[i].text);
			goto fail;
		}
		l->lis[i].fd = listen_socket(&l->cfg->listen[i], 1, err, errlen);
		if (l->lis[i].fd < 0)
			goto fail;
		l->nlis++;
	}
	/* Tick often enough that an idle (or handshake) timeout fires within
	 * a quarter of its length, but no more than once per LOOP_TICK_MIN_MS. */
	tick = l->cfg->idle_timeout_ms / 4;
	if (l->cfg->tls_handshake_timeout_ms / 4 < tick)
		tick = l->cfg->tls_handshake_timeout_ms / 4;
	if (tick > LOOP_TICK_MAX_MS)
		tick = LOOP_TICK_MAX_MS;
	if (tick < LOOP_TICK_MIN_MS)
		tick = LOOP_TICK_MIN_MS;
	l->tick_ms = tick;
	l->tick.tv_sec = (long long)(tick / 1000);
	l->tick.tv_nsec = (long long)(tick % 1000) * 1000000;
	return l;
fail:
	loop_free(l);
	return NULL;
}

struct loop *loop_free(struct loop *l)
{
	if (!l)
		return NULL;
	for (unsigned i = 0; i < CONFIG_LISTEN_MAX; i++)
		if (l->lis[i].fd >= 0)
			close(l->lis[i].fd);
	if (l->conns) {
		for (uint32_t s = 0; s < l->nslots; s++) {
			struct conn *c = &l->conns[s];
			if (c->flags & CONN_USED)
				close(c->fd);
			c->tls = tls_conn_free(c->tls);
			buf_free(&c->out);
			buf_free(&c->wbuf);
			buf_free(&c->pending);
		}
	}
	free(l->conns);
	free(l->rearm);
	{
		struct loop_msg *m = atomic_exchange(&l->inbox, NULL), *next;
		if (m == LOOP_INBOX_CLOSED)
			m = NULL;
		for (; m; m = next) {
			next = m->next;
			free(m); /* posted after the loop ended: nobody to run it */
		}
	}
	if (l->wakefd >= 0)
		close(l->wakefd);
	if (l->ring_ok)
		io_uring_queue_exit(&l->ring);
	if (l->br)
		munmap(l->br, l->br_size);
	if (l->rbufs)
		munmap(l->rbufs, (size_t)LOOP_RBUF_SIZE * LOOP_RBUF_COUNT);
	free(l);
	return NULL;
}

static int loop_done(struct loop *l)
{
	if (!l->stopping || l->nconns || l->fops_inflight || l->work)
		return 0;
	/* A pending accept holds its listening socket open (and accepting
	 * into its backlog) until its cancellation completes. */
	for (unsigned i = 0; i < l->nlis; i++)
		if (l->lis[i].armed)
			return 0;
	for (unsigned i = 0; i < l->nbusy; i++)
		if (l->busy[i].fn(l->busy[i].arg))
			return 0;
	return 1;
}

int loop_run(struct loop *l)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen, close_tries = 0;
	int rc;

	for (unsigned i = 0; i < l->nlis; i++)
		arm_accept(l, i);
	arm_wake(l);
	arm_timer(l);
	for (;;) {
		/* QSBR: this thread holds no domain-table pointer between turns. */
		epoch_quiescent();
		if (atomic_load_explicit(&l->stop_req, memory_order_acquire))
			loop_begin_stop(l);
		if (atomic_load_explicit(&l->inbox, memory_order_relaxed)) {
			/* Posted work (a drain's start: a queue snapshot, new
			 * connections) can take a while: send what the last
			 * turn prepared first, such as the ETRN reply that
			 * posted it (RFC 1985 wants it at once). */
			(void)io_uring_submit(&l->ring);
			loop_run_inbox(l);
		}
		loop_do_work(l);
		for (uint32_t i = 0; i < l->nrearm; i++) {
			struct conn *c = l->rearm[i];
			if ((c->flags & CONN_USED) &&
			    !(c->flags & (CONN_RECV_ARMED | CONN_CLOSING | CONN_DETACHING)))
				arm_recv(c);
		}
		l->nrearm = 0;
		/* Registered per-turn work, by phase (loop.h): what queues
		 * records first, then the commit that writes them; the SQEs
		 * they prepare go in with this turn's submit below. */
		for (unsigned i = 0; i < l->nturn; i++)
			l->turn[i].fn(l->turn[i].arg);
		loop_do_work(l);
		if (loop_done(l)) {
			if (loop_close_inbox(l, ++close_tries > LOOP_CLOSE_TRIES))
				break;
			continue; /* run what was posted meanwhile, then again */
		}
		epoch_offline(); /* a sleeping thread holds up no reclamation */
		rc = io_uring_submit_and_wait(&l->ring, 1);
		epoch_online();
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
			log_err("engine %u: io_uring_submit_and_wait: %s", l->index, strerror(-rc));
			return rc;
		}
		seen = 0;
		io_uring_for_each_cqe(&l->ring, head, cqe) {
			seen++;
			switch (ud_op(cqe->user_data)) {
			case OP_ACCEPT: on_accept(l, cqe); break;
			case OP_RECV: on_recv(l, cqe); break;
			case OP_SEND: on_send(l, cqe); break;
			case OP_FILE: on_file(l, cqe); break;
			case OP_CONNECT: on_connect(l, cqe); break;
			case OP_TIMER: on_timer(l); break;
			case OP_ACCEPT_WAIT: on_accept_wait(l); break;
			case OP_WAKE:
				/* Posts and stop requests share the eventfd; keep
				 * listening until the loop is done. */
				arm_wake(l);
				break;
			case OP_IGNORE:
			case OP_NONE:
				break;
			}
		}
		io_uring_cq_advance(&l->ring, seen);
	}
	return 0;
}
