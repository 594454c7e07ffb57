/* SPDX-License-Identifier: MIT */
/*
 * loop: one io_uring event loop per engine thread. It owns the thread's
 * listening sockets (SO_REUSEPORT, multishot accept), its connection slots,
 * a provided-buffer ring for receives, timers, and asynchronous file writes
 * and syncs for the spool. Nothing here blocks: sockets and files are only
 * read, written and synced through io_uring.
 *
 * Connections are driven through a table of callbacks (struct conn_ops), so
 * the loop knows nothing of SMTP. A connection has at most one send in flight;
 * replies appended while it is in flight go out after it. Slots are reused;
 * a handle (slot + generation) names a connection safely across time.
 */
#ifndef ETRND_CORE_LOOP_H
#define ETRND_CORE_LOOP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/buf.h"
#include "core/config.h"

struct loop;
struct conn;
struct connlimit;

struct conn_ops {
	/* A connection was accepted. peer is its printable address. Return
	 * the per-connection state (passed to the other callbacks), or NULL to
	 * refuse it (the loop closes it). */
	void *(*open)(void *arg, struct conn *c, const char *peer);
	/* Bytes arrived (n > 0) or the peer closed (n == 0). Return how many
	 * were consumed. Returning less than n pauses input: the loop keeps
	 * the rest (and anything that arrives later) until conn_resume(), or,
	 * when conn_out() held LOOP_OUT_HIGH or more at the pause, until the
	 * peer has read the send in flight: so an owner still busy must
	 * accept being offered the input again (and return 0). */
	size_t (*data)(void *arg, struct conn *c, void *st, const char *p, size_t n);
	/* No input for idle_timeout, the session passed session_timeout, or
	 * the peer took none of our output for send_timeout. */
	void (*timeout)(void *arg, struct conn *c, void *st);
	/* The server is stopping: finish or refuse, then conn_close(). Called
	 * once per connection. */
	void (*shutdown)(void *arg, struct conn *c, void *st);
	/* The connection is gone (after conn_close() or a socket error). The
	 * state may be freed here. The conn pointer is invalid afterwards. */
	void (*close)(void *arg, struct conn *c, void *st);
	/* Outbound only (loop_connect): the connect finished. err 0: c is
	 * connected, return its state (NULL closes it); err < 0 (-ETIMEDOUT,
	 * -ECONNREFUSED, ...): c is NULL and nothing else follows. */
	void *(*connected)(void *arg, struct conn *c, void *cookie, int err);
	/* Optional (NULL: not called). The TLS handshake started by
	 * conn_starttls() (or by a listen_tls listener) ended: err 0, TLS is
	 * up (conn_tls() tells what was agreed) and output flows encrypted;
	 * err < 0 (-EPROTO: bad records or alert, -ETIMEDOUT: handshake took
	 * longer than tls_handshake_timeout, -ECONNRESET: the peer closed
	 * during the handshake), the loop has logged why and is
	 * closing c: ops->close follows. Called once per handshake. */
	void (*tls_done)(void *arg, struct conn *c, void *st, int err);
};

struct loop_conf {
	unsigned index;                 /* engine thread number, 0-based */
	const struct config *cfg;       /* listen, limits, timeouts */
	const struct conn_ops *ops;
	void *ops_arg;
	const char *busy_reply;         /* sent to a connection over max_connections */
	/* client_connection_limit, counted node-wide (NULL: no limit); the
	 * loop uses it until loop_run() returns. */
	struct connlimit *connlimit;
	const char *addr_busy_reply;    /* sent to a client over it (copied) */
	/* The server context for listen_tls listeners (implicit TLS: the
	 * handshake starts at accept); NULL when there are none. Shared by
	 * every loop, owned by the caller, outlives the loop. */
	struct tls_ctx *tls_server;
};

/* Create a loop (io_uring, buffer ring, listening sockets). Runs in the
 * thread that will call loop_run() (SINGLE_ISSUER). Returns NULL with err set
 * on failure. */
struct loop *loop_new(const struct loop_conf *conf, char *err, size_t errlen);
/* Free the loop. Only once no other thread can loop_post() or loop_stop()
 * it any more (they write to its eventfd). */
struct loop *loop_free(struct loop *l);

/* Before starting the engine threads: bind every listen address once without
 * SO_REUSEPORT, so an address already held by another process (which the
 * engine threads' SO_REUSEPORT sockets would silently share) is an error.
 * Returns 0, or -1 with err set ("listen 127.0.0.1:2525: bind: ..."). */
int loop_probe_listen(const struct config *cfg, char *err, size_t errlen);

/* Run until loop_stop() and every connection and file operation is done. */
int loop_run(struct loop *l);

/* From any thread: stop accepting, ask connections to finish (ops->shutdown),
 * and make loop_run() return once they have, or after shutdown_timeout. */
void loop_stop(struct loop *l);

/* On l's own thread: stop accepting on every listener whose CONFIG_LISTEN_*
 * flags have none of keep_flags (cancel its accept, close its socket, so
 * that new clients are refused); the loop and its connections go on. For
 * a node's decommission (admin/decommission.h), which keeps the cluster
 * listener. Idempotent. */
void loop_close_listeners(struct loop *l, unsigned keep_flags);

/*
 * Per-turn work, stop hooks and busy checks, registered by the modules that
 * own the work (the spool's group commit, compaction, expiry, ...) instead of
 * one hook that calls the others. A small fixed registry: at most
 * LOOP_HOOKS_MAX of each kind per loop; registering one more returns
 * -ENOSPC (logged with name, a string literal naming the hook's owner).
 * Register before loop_run(), from the loop's thread. There is no removal:
 * arg must stay valid until loop_run() has returned, and a module whose
 * constructor fails after registering a hook leaves it behind, so its caller
 * must then free the loop without running it (as engine setup does).
 *
 * Turn hooks run at the end of every loop turn, before the loop submits the
 * turn's SQEs and sleeps: the place to batch work. They run by phase, then
 * in registration order within a phase, so that work which queues records
 * always runs before the commit that writes them, whatever order the
 * modules were created in.
 */
#define LOOP_HOOKS_MAX 12
enum loop_turn_phase {
	/* Work that queues records or output for this turn: expiry's DONEs
	 * and DSNs, compaction's copies. */
	LOOP_TURN_QUEUE,
	/* The spool's group commit: one write and one sync for everything
	 * queued so far, this turn's LOOP_TURN_QUEUE work included. */
	LOOP_TURN_COMMIT,
	LOOP_TURN_PHASES
};
typedef void (*loop_hook_fn)(void *arg);
int loop_add_turn_hook(struct loop *l, enum loop_turn_phase phase,
		const char *name, loop_hook_fn fn, void *arg);

/* Called once when the loop starts stopping (loop_stop()), before any
 * connection is told, in registration order: the place to stop starting
 * background work that would otherwise never run out. Returns 0 or -ENOSPC. */
int loop_add_stop_hook(struct loop *l, const char *name, loop_hook_fn fn, void *arg);

/* Busy check for shutdown, asked only once the loop is stopping (after the
 * stop hooks): loop_run() does not return while any says 1. Returns 0 or
 * -ENOSPC. */
typedef int (*loop_busy_fn)(void *arg);
int loop_add_busy_check(struct loop *l, const char *name, loop_busy_fn fn, void *arg);

unsigned loop_index(const struct loop *l);

/* Asynchronous file operations. fn(arg, res) runs on the loop thread with the
 * io_uring result (bytes or -errno). With LOOP_LINK the next operation
 * submitted on this loop starts only after this one succeeds (IOSQE_IO_LINK;
 * a failed or short write cancels it with -ECANCELED). Return 0, or -EBUSY
 * when too many file operations are in flight (try again next turn). */
typedef void (*loop_done_fn)(void *arg, int res);
#define LOOP_LINK 0x1u
/* loop_file_writev() only: the write is O_DSYNC (RWF_DSYNC), so its
 * completion means its bytes are durable, as a write followed by an
 * fdatasync of them would, in one operation. */
#define LOOP_DSYNC 0x2u
int loop_file_writev(struct loop *l, int fd, const struct iovec *iov,
		unsigned iovcnt, uint64_t off, unsigned flags,
		loop_done_fn fn, void *arg);
int loop_file_fsync(struct loop *l, int fd, int datasync, unsigned flags,
		loop_done_fn fn, void *arg);

/* File-operation slots free now: one who needs several at once (a write
 * and the syncs linked to it) asks first, so the chain is never cut short
 * for want of a slot. */
unsigned loop_file_ops_free(const struct loop *l);

/* Read len bytes at off into buf (which must stay valid until fn runs);
 * fn gets the bytes read (possibly fewer) or -errno. */
int loop_file_read(struct loop *l, int fd, void *buf, unsigned len, uint64_t off,
		loop_done_fn fn, void *arg);

/* Unlink dirfd/name (name must stay valid until fn runs). */
int loop_file_unlinkat(struct loop *l, int dirfd, const char *name,
		loop_done_fn fn, void *arg);

/* Close fd on one of io_uring's worker threads (IOSQE_ASYNC), never on the
 * loop's: the last close of an unlinked file frees its page cache and its
 * blocks, tens of milliseconds for a spool segment. The caller forgets fd
 * at once (its number is ours again only after fn runs). */
int loop_file_close(struct loop *l, int fd, loop_done_fn fn, void *arg);

/*
 * Open an outbound TCP connection to sa; ops (with connected()) drive it like
 * an accepted one. The connect waits at most timeout_ms. Returns 0 (then
 * ops->connected() follows, once), or -errno at once: -EMFILE when every
 * connection slot is in use, -ESHUTDOWN while stopping.
 */
int loop_connect(struct loop *l, const struct sockaddr *sa, socklen_t salen,
		unsigned timeout_ms, const struct conn_ops *ops, void *ops_arg,
		void *cookie);

/* From any thread: run fn(arg) on the loop's thread, soon, in post order.
 * Returns 0, -ENOMEM, or -ESHUTDOWN once loop_run() has finished (the
 * loop runs every post it accepted before it returns; a refused post is
 * the caller's to undo). Not after loop_free(). */
int loop_post(struct loop *l, loop_hook_fn fn, void *arg);

/* This connection's idle timeout (RFC 5321 4.5.3.2 for a client: it changes
 * with the reply awaited); restarts the idle clock. */
void conn_set_timeout(struct conn *c, unsigned ms);

/* Output high-water mark per connection. An owner stops producing output
 * (consumes less input than offered: a pause) once conn_out() holds this
 * much; the loop resumes such a connection by itself once the peer has read
 * the send in flight. So a peer that pipelines commands and never reads
 * costs at most about 2 x LOOP_OUT_HIGH of output plus LOOP_PENDING_MAX of
 * kept input, and its idle timeout runs while it is paused. */
#define LOOP_OUT_HIGH (64u * 1024)

/* The connection's output buffer: append replies, then conn_flush(). */
struct buf *conn_out(struct conn *c);
/* Send what is in the output buffer (one send in flight at most). */
void conn_flush(struct conn *c);
/* Close once the output buffer is sent. ops->close follows. A peer that
 * does not read that output within close_timeout is cut off (the send is
 * cancelled, the socket shut down, logged once). */
void conn_close(struct conn *c);
/* Deliver kept input again and take new input (after a pause). */
void conn_resume(struct conn *c);
/* A handle naming this connection, and its lookup: NULL when the connection
 * is gone (its slot reused or free). */
uint64_t conn_handle(const struct conn *c);
struct conn *loop_conn(struct loop *l, uint64_t handle);
struct loop *conn_loop(const struct conn *c);
const char *conn_peer(const struct conn *c);

/*
 * TLS on a connection (core/tls.h; OpenSSL on memory BIOs, the loop keeps
 * doing the socket I/O). From this call on, the input the owner has not
 * consumed yet (anything a client pipelined after STARTTLS: RFC 3207 5 and
 * CVE-2011-0411) is discarded, and every byte received is a TLS record.
 * What conn_out() holds now (the "220 Ready to start TLS") is still sent in
 * the clear; everything appended after goes out encrypted, held until the
 * handshake is done. ctx's role decides the side; host (client only) is
 * sent as SNI and is the name verification checks (NULL: neither). The
 * handshake runs under tls_handshake_timeout (ops->timeout is not called
 * meanwhile); its end is told through ops->tls_done. Called from inside
 * ops->data (the STARTTLS line, or a client's "220" reply to it), the
 * unconsumed input is dropped when data() returns, also when it is kept
 * input offered again after a pause; called elsewhere (a client's
 * ops->connected, for implicit TLS), at once. Returns 0, -EALREADY (TLS
 * already on), -ENOMEM.
 */
struct tls_ctx;
struct tls_info;
int conn_starttls(struct conn *c, struct tls_ctx *ctx, const char *host);
/* The agreed TLS parameters once the handshake is done; NULL in the clear
 * or while the handshake runs. Valid while the connection lives. */
const struct tls_info *conn_tls(const struct conn *c);
/*
 * Moving a connection to another owner, possibly on another engine thread
 * (ATRN, RFC 2645: the session that took the ATRN hands the same TCP
 * connection, TLS session included, to the drains of every shard in turn).
 *
 * conn_detach(): once c's queued output has been sent (and no send is in
 * flight), c leaves its loop without being closed: its receive is
 * cancelled, the slot is freed and done(arg, parcel) runs on c's loop with
 * a parcel holding the socket, its TLS state, the input received but not
 * consumed, the peer text and the listener flags. The owner gets no more
 * callbacks for c from this call on (no ops->close: it frees its own
 * state when it calls conn_detach). Called inside ops->data, what data()
 * does not consume (return the bytes up to the end of the command that
 * detached) is kept input, and so is anything received until the receive
 * has ended. done() runs later, from the loop, never inside this call.
 * When the connection fails (the peer closes or resets, send_timeout
 * passes with output unread, a bad TLS record) or the loop stops before
 * the output is sent, done gets parcel NULL (the socket is closed).
 * Also inside ops->open or ops->connected (their return value is then
 * ignored). Returns 0, -EALREADY when c is already closing or detaching,
 * -EINVAL mid-connect or mid-TLS-handshake, or before the handshake of an
 * implicit-TLS listener (nothing a next owner could go on with).
 * The client_connection_limit count of an accepted connection moves with
 * it (released when the parcel is freed unadopted).
 *
 * loop_adopt(): on l's thread (from done() itself when l is the loop c
 * left; else use loop_post() to get there), make the parcel a connection
 * of l driven by ops with state st, as if it had just connected (the idle
 * and session clocks start again): the kept input is delivered first
 * (from the loop, after this call returns), then what arrives. The parcel is consumed (freed) whether it succeeds or not.
 * Returns the connection, or NULL (errno EMFILE: no free slot, ESHUTDOWN:
 * l is stopping; the socket is closed). A post to a loop that has
 * finished is refused (loop_post(): -ESHUTDOWN) and the parcel stays the
 * poster's to free; keep a loop that may still adopt from finishing
 * (loop_add_busy_check) while a parcel may be on its way to it.
 *
 * conn_parcel_free(): close and free a parcel nobody will adopt (NULL is
 * fine). conn_parcel_peer(): its peer's printable address, valid while
 * the parcel lives.
 */
struct conn_parcel;
typedef void (*conn_detach_fn)(void *arg, struct conn_parcel *parcel);
int conn_detach(struct conn *c, conn_detach_fn done, void *arg);
struct conn *loop_adopt(struct loop *l, struct conn_parcel *p,
		const struct conn_ops *ops, void *ops_arg, void *st);
void conn_parcel_free(struct conn_parcel *p);
const char *conn_parcel_peer(const struct conn_parcel *p);

/* The CONFIG_LISTEN_* flags (core/config.h) of the listener that accepted
 * c; 0 for an outbound connection. */
unsigned conn_listen_flags(const struct conn *c);

#endif
