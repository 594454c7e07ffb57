/* SPDX-License-Identifier: MIT */
/*
 * etrnd-milter-sink: the benchmark's accept-everything mail filter (milter
 * protocol 6), written with proto/milter_codec so the filter costs next to
 * nothing and the benchmark measures the MTA's milter client. One thread,
 * epoll, non-blocking sockets, any number of MTA connections. It answers
 * OPTNEG with the MTA's version, "continue" to every event the MTA waits
 * for, and "accept" at end of body (optionally after adding a header), and
 * counts connections, messages and frames.
 *   etrnd-milter-sink [-n] [-H] [-P portfile] [-S statsfile] inet:HOST:PORT|unix:PATH
 *   -n  ask for no replies to the events (the NR_* flags the MTA offers)
 *   -H  add "X-Milter-Sink: accepted" to every message (needs SMFIF_ADDHDRS)
 *   -P  write the bound port (inet:...:0 picks a free one) once listening
 *   -S  write the counters (and the sink's CPU seconds) there at exit
 * Stops on SIGTERM or SIGINT. A frame the codec refuses ends that
 * connection and is counted. Loopback use only.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "proto/milter_codec.h"

#define MS_CONNS_MAX 4096u
#define MS_IN_MAX 16384u                /* receive buffer per connection */
#define MS_OUT_MAX 4096u                /* pending replies per connection */
#define MS_REPLY_MAX 64u                /* longest reply one frame causes */
#define MS_EVENTS 256
#define MS_HDR_NAME "X-Milter-Sink"
#define MS_HDR_VALUE "accepted"

struct ms_conn {
	int fd;
	struct milter_reader rd;
	uint8_t rbuf[MILTER_FRAME_SMALL];
	uint8_t in[MS_IN_MAX];
	size_t inoff, inlen;
	uint8_t out[MS_OUT_MAX];
	size_t outoff, outlen;
	uint32_t proto;  /* agreed protocol flags */
	uint32_t actions;
	int writing;     /* waiting for EPOLLOUT (and not reading) */
};

static struct {
	int no_reply;
	int add_header;
	unsigned long long conns, msgs, frames, errors;
	volatile sig_atomic_t stop;
	int ep;
} M;

static void ms_stop(int sig)
{
	(void)sig;
	M.stop = 1;
}

static void ms_die(const char *what)
{
	fprintf(stderr, "etrnd-milter-sink: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void ms_put(struct ms_conn *c, ssize_t n)
{
	if (n < 0) {
		fprintf(stderr, "etrnd-milter-sink: encode: %s\n",
				milter_strerror((enum milter_err)-n));
		exit(1);
	}
	c->outlen += (size_t)n;
}

static void ms_reply(struct ms_conn *c, uint8_t kind)
{
	ms_put(c, milter_encode_frame(c->out + c->outlen, sizeof(c->out) - c->outlen,
			kind, NULL, 0));
}

/* The MTA's OPTNEG: answer with its version, only what it offered. */
static int ms_optneg(struct ms_conn *c, const struct milter_frame *fr)
{
	struct milter_reply r;

	if (milter_decode_reply(fr, &r) != MILTER_OK)
		return -1;
	c->actions = M.add_header ? r.u.optneg.actions & MILTER_F_ADDHDRS : 0;
	c->proto = M.no_reply ? r.u.optneg.proto & MILTER_P_NR_MASK : 0;
	ms_put(c, milter_encode_optneg(c->out + c->outlen, sizeof(c->out) - c->outlen,
			r.u.optneg.version < MILTER_VERSION ? r.u.optneg.version : MILTER_VERSION,
			c->actions, c->proto));
	return 0;
}

/* One frame from the MTA; -1 ends the connection. */
static int ms_frame(struct ms_conn *c, const struct milter_frame *fr)
{
	static const char hdr[] = MS_HDR_NAME "\0" MS_HDR_VALUE;

	M.frames++;
	switch (fr->cmd) {
	case MILTER_CMD_OPTNEG:
		return ms_optneg(c, fr);
	case MILTER_CMD_MACRO:
	case MILTER_CMD_ABORT:
	case MILTER_CMD_QUIT_NC:
		return 0;
	case MILTER_CMD_QUIT:
		return -1;
	case MILTER_CMD_BODYEOB:
		M.msgs++;
		if (c->actions & MILTER_F_ADDHDRS)
			ms_put(c, milter_encode_frame(c->out + c->outlen,
					sizeof(c->out) - c->outlen, MILTER_R_ADDHEADER, hdr,
					sizeof(hdr)));
		ms_reply(c, MILTER_R_ACCEPT);
		return 0;
	case MILTER_CMD_CONNECT:
	case MILTER_CMD_HELO:
	case MILTER_CMD_MAIL:
	case MILTER_CMD_RCPT:
	case MILTER_CMD_DATA:
	case MILTER_CMD_HEADER:
	case MILTER_CMD_EOH:
	case MILTER_CMD_BODY:
	case MILTER_CMD_UNKNOWN:
		if (milter_cmd_wants_reply((enum milter_cmd)fr->cmd, c->proto))
			ms_reply(c, MILTER_R_CONTINUE);
		return 0;
	default:
		return -1;
	}
}

static void ms_close(struct ms_conn *c)
{
	(void)close(c->fd);
	free(c);
}

/* While replies wait for room in the socket, read no more requests. */
static void ms_want_out(struct ms_conn *c, int on)
{
	struct epoll_event ev = { .events = on ? EPOLLOUT : EPOLLIN, .data.ptr = c };

	if (c->writing == on)
		return;
	c->writing = on;
	if (epoll_ctl(M.ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		ms_die("epoll_ctl");
}

/* Send what is pending; 1 when some stays (the socket is full). */
static int ms_flush(struct ms_conn *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
		if (n <= 0)
			return -1;
		c->outoff += (size_t)n;
	}
	c->outoff = c->outlen = 0;
	return 0;
}

/* Frames from the buffered input while replies have room; -1: close. */
static int ms_process(struct ms_conn *c)
{
	while (c->inoff < c->inlen && sizeof(c->out) - c->outlen >= MS_REPLY_MAX) {
		enum milter_read_status st;
		enum milter_err err;
		struct milter_frame fr;

		c->inoff += milter_reader_feed(&c->rd, c->in + c->inoff, c->inlen - c->inoff,
				&st, &fr, &err);
		if (st == MILTER_READ_ERROR) {
			fprintf(stderr, "etrnd-milter-sink: %s\n", milter_strerror(err));
			M.errors++;
			return -1;
		}
		if (st == MILTER_READ_FRAME && ms_frame(c, &fr) < 0)
			return -1;
	}
	if (c->inoff == c->inlen)
		c->inoff = c->inlen = 0;
	return 0;
}

static int ms_io(struct ms_conn *c, uint32_t events)
{
	int pending;

	if (events & EPOLLIN && c->inlen == 0) {
		ssize_t n = recv(c->fd, c->in, sizeof(c->in), 0);

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return -1;
		if (n > 0)
			c->inlen = (size_t)n;
	}
	for (;;) {
		if (ms_process(c) < 0)
			return -1;
		pending = ms_flush(c);
		if (pending < 0)
			return -1;
		if (pending || c->inlen == 0)
			break;
	}
	ms_want_out(c, pending);
	return 0;
}

static void ms_accept(int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
		struct epoll_event ev;
		struct ms_conn *c;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				fprintf(stderr, "etrnd-milter-sink: accept: %s\n", strerror(errno));
			return;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (c == NULL)
			ms_die("calloc");
		c->fd = fd;
		milter_reader_init(&c->rd, c->rbuf, sizeof(c->rbuf));
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(M.ep, EPOLL_CTL_ADD, fd, &ev) < 0)
			ms_die("epoll_ctl");
		M.conns++;
	}
}

/* inet:HOST:PORT or unix:PATH -> a listening, non-blocking socket. */
static int ms_listen(const char *spec, const char *portfile)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1;

	memset(&ss, 0, sizeof(ss));
	if (strncmp(spec, "unix:", 5) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)&ss;

		if (strlen(spec + 5) >= sizeof(un->sun_path))
			return -1;
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, spec + 5);
		(void)unlink(un->sun_path);
		len = sizeof(*un);
	} else if (strncmp(spec, "inet:", 5) == 0) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		char host[64];
		const char *colon = strrchr(spec + 5, ':');

		if (colon == NULL || (size_t)(colon - spec - 5) >= sizeof(host))
			return -1;
		memcpy(host, spec + 5, (size_t)(colon - spec - 5));
		host[colon - spec - 5] = '\0';
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)atoi(colon + 1));
		if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
			return -1;
		len = sizeof(*in);
	} else {
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		ms_die("socket");
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1024) < 0)
		ms_die("bind/listen");
	if (portfile != NULL) {
		FILE *f = fopen(portfile, "w");

		len = sizeof(ss);
		if (f == NULL || getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
			ms_die(portfile);
		fprintf(f, "%u\n", ss.ss_family == AF_INET ?
				ntohs(((struct sockaddr_in *)&ss)->sin_port) : 0u);
		if (fclose(f) != 0)
			ms_die(portfile);
	}
	return fd;
}

static void ms_stats(const char *path)
{
	struct rusage ru;
	FILE *f = path ? fopen(path, "w") : NULL;
	double cpu;

	(void)getrusage(RUSAGE_SELF, &ru);
	cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		(double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	fprintf(stderr, "etrnd-milter-sink: connections=%llu messages=%llu frames=%llu "
			"errors=%llu cpu_s=%.3f\n", M.conns, M.msgs, M.frames, M.errors, cpu);
	if (f != NULL) {
		fprintf(f, "connections %llu\nmessages %llu\nframes %llu\nerrors %llu\ncpu_s %.3f\n",
				M.conns, M.msgs, M.frames, M.errors, cpu);
		(void)fclose(f);
	}
}

int main(int argc, char **argv)
{
	const char *portfile = NULL, *statsfile = NULL;
	struct epoll_event evs[MS_EVENTS], lev = { .events = EPOLLIN };
	struct sigaction sa;
	int o, lfd, i, n;

	while ((o = getopt(argc, argv, "nHP:S:")) != -1) {
		switch (o) {
		case 'n': M.no_reply = 1; break;
		case 'H': M.add_header = 1; break;
		case 'P': portfile = optarg; break;
		case 'S': statsfile = optarg; break;
		default: goto usage;
		}
	}
	if (optind + 1 != argc)
		goto usage;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = ms_stop;
	(void)sigaction(SIGTERM, &sa, NULL);
	(void)sigaction(SIGINT, &sa, NULL);
	M.ep = epoll_create1(EPOLL_CLOEXEC);
	if (M.ep < 0)
		ms_die("epoll_create1");
	lfd = ms_listen(argv[optind], portfile);
	if (lfd < 0)
		goto usage;
	lev.data.ptr = NULL;
	if (epoll_ctl(M.ep, EPOLL_CTL_ADD, lfd, &lev) < 0)
		ms_die("epoll_ctl");
	while (!M.stop) {
		n = epoll_wait(M.ep, evs, MS_EVENTS, 200);
		if (n < 0 && errno != EINTR)
			ms_die("epoll_wait");
		for (i = 0; i < n; i++) {
			struct ms_conn *c = evs[i].data.ptr;

			if (c == NULL)
				ms_accept(lfd);
			else if (ms_io(c, evs[i].events) < 0)
				ms_close(c);
		}
	}
	ms_stats(statsfile);
	return 0;
usage:
	fprintf(stderr, "usage: etrnd-milter-sink [-n] [-H] [-P portfile] [-S statsfile] "
			"inet:HOST:PORT|unix:PATH\n");
	return 2;
}
