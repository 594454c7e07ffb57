/* SPDX-License-Identifier: MIT */
/*
 * log_capture: what etrnd's log lines (core/log.h: stderr) say while a
 * test case runs, for the unit tests, one copy for all of them. No
 * Criterion in here: failures come back as -errno.
 */
#ifndef ETRND_TESTS_LOG_CAPTURE_H
#define ETRND_TESTS_LOG_CAPTURE_H

#include <stddef.h>
#include <stdio.h>

struct log_capture {
	FILE *f;                       /* stderr's stand-in while capturing */
	int saved;                     /* the real stderr */
	char *text;                    /* after _stop: what was written */
	size_t len;
};

/* Send stderr to a temporary file from now on. 0 or -errno. */
int log_capture_start(struct log_capture *c);

/* Give stderr back; c->text (heap, NUL-terminated, the first max bytes;
 * "" when out of memory) holds what was written meanwhile, until
 * log_capture_free(). 0 or -errno. */
int log_capture_stop(struct log_capture *c, size_t max);

void log_capture_free(struct log_capture *c);

#endif
