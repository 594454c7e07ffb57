/* SPDX-License-Identifier: MIT */
/*
 * fdio: blocking writes to a descriptor, for tools and threads that may
 * block (etrnctl top's screen, the benchmark's filter). Never on an engine
 * thread: those write through the loop (core/loop.h).
 */
#ifndef ETRND_CORE_FDIO_H
#define ETRND_CORE_FDIO_H

#include <errno.h>
#include <stddef.h>
#include <unistd.h>

/* Write all n bytes of p to fd, retrying short writes and EINTR. Returns
 * 0, or -1 with errno set (a write of 0 bytes counts as an error). */
static inline int fd_write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

#endif
