/* SPDX-License-Identifier: MIT */
/*
 * etrnd-milterbench: an accept-everything milter for bench/milter.sh, in C
 * over proto/milter_codec so that the filter is not the bottleneck (a
 * pymilter filter costs far more CPU per message than the client under
 * test). It asks for every event (no NO* or NR_* flags, as rspamd does),
 * answers CONTINUE to each and to the end of the message, one thread per
 * connection with blocking I/O (benchmark-grade: bench/ may use anything).
 *
 *   etrnd-milterbench PORT      listen on 127.0.0.1:PORT until killed
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/fdio.h"
#include "proto/milter_codec.h"

/* The answer to one command: OPTNEG (version 6, no actions, every event
 * asked for and answered), CONTINUE, or nothing (MACRO, ABORT, QUIT). */
static ssize_t answer(const struct milter_frame *fr, uint8_t *out, size_t cap)
{
	uint8_t neg[12];
	uint32_t v[3] = { htonl(MILTER_VERSION), htonl(0), htonl(0) };

	switch (fr->cmd) {
	case MILTER_CMD_OPTNEG:
		memcpy(neg, v, sizeof(neg));
		return milter_encode_frame(out, cap, MILTER_R_OPTNEG, neg, sizeof(neg));
	case MILTER_CMD_MACRO:
	case MILTER_CMD_ABORT:
	case MILTER_CMD_QUIT:
	case MILTER_CMD_QUIT_NC:
		return 0;
	default:
		return milter_encode_frame(out, cap, MILTER_R_CONTINUE, NULL, 0);
	}
}

/* Commands come to us as frames too: the codec's reader reads any frame
 * (buffer big enough for the largest command we are sent). */
static void *serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	static _Thread_local uint8_t in[65536], frame[MILTER_CMD_MAX], out[64];
	struct milter_reader rd;
	ssize_t n;

	milter_reader_init(&rd, frame, sizeof(frame));
	while ((n = read(fd, in, sizeof(in))) > 0) {
		size_t off = 0;

		while (off < (size_t)n) {
			enum milter_read_status st;
			struct milter_frame fr;
			enum milter_err err;
			ssize_t k;

			off += milter_reader_feed(&rd, in + off, (size_t)n - off, &st, &fr, &err);
			if (st == MILTER_READ_ERROR)
				goto done;
			if (st != MILTER_READ_FRAME)
				continue;
			if (fr.cmd == MILTER_CMD_QUIT)
				goto done;
			k = answer(&fr, out, sizeof(out));
			if (k < 0 || (k > 0 && fd_write_all(fd, out, (size_t)k)))
				goto done;
		}
	}
done:
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int one = 1, lfd;

	if (argc != 2) {
		fprintf(stderr, "usage: etrnd-milterbench PORT\n");
		return 2;
	}
	sa.sin_port = htons((uint16_t)atoi(argv[1]));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 1024)) {
		perror("etrnd-milterbench: listen");
		return 1;
	}
	for (;;) {
		pthread_t t;
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("etrnd-milterbench: accept");
			return 1;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (pthread_create(&t, NULL, serve, (void *)(intptr_t)fd) != 0) {
			close(fd);
			continue;
		}
		pthread_detach(t);
	}
}
