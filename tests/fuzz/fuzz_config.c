/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for core/config.c: the input as an etrnd.conf read by
 * config_load from a temp file, then its first line as a -o "key=value"
 * through config_set, then config_finish. A refusal is always reported as
 * "PATH:LINE: what" (or "-o: what"); config_free releases everything.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"

#define FZ_ERR_MAX 512
#define FZ_SET_MAX 1024  /* longest -o option tried */

/* The temp file is unlinked as soon as it is made and read back through
 * its descriptor: libFuzzer ends the process without our help, and nothing
 * may stay behind in /tmp. */
static char fz_tmp[] = "/tmp/fuzz_config.XXXXXX";
static char fz_path[32]; /* "/proc/self/fd/N" */
static int fz_fd = -1;

static void fz_write(const uint8_t *data, size_t size)
{
	if (fz_fd < 0) {
		fz_fd = mkstemp(fz_tmp);
		if (fz_fd < 0 || unlink(fz_tmp) != 0)
			abort();
		if ((size_t)snprintf(fz_path, sizeof(fz_path), "/proc/self/fd/%d", fz_fd) >=
		    sizeof(fz_path))
			abort();
	}
	if (ftruncate(fz_fd, 0) || pwrite(fz_fd, data, size, 0) != (ssize_t)size)
		abort();
}

static void fz_check_err(const char *err, const char *prefix)
{
	if (strncmp(err, prefix, strlen(prefix)) || err[strlen(prefix)] != ':' ||
			strchr(err, '\n'))
		__builtin_trap();
}

static void fz_set(struct config *c, const uint8_t *data, size_t size)
{
	char line[FZ_SET_MAX + 1], err[FZ_ERR_MAX], *eq;
	size_t n = size < FZ_SET_MAX ? size : FZ_SET_MAX;
	const uint8_t *nl = memchr(data, '\n', n);

	if (nl)
		n = (size_t)(nl - data);
	memcpy(line, data, n);
	line[n] = '\0';
	eq = strchr(line, '=');
	if (!eq)
		return;
	*eq = '\0';
	err[0] = '\0';
	if (config_set(c, line, eq + 1, "-o", err, sizeof(err)) != 0)
		fz_check_err(err, "-o");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config c;
	char err[FZ_ERR_MAX];

	fz_write(data, size);
	config_defaults(&c);
	err[0] = '\0';
	if (config_load(&c, fz_path, err, sizeof(err)) != 0)
		fz_check_err(err, fz_path);
	fz_set(&c, data, size);
	err[0] = '\0';
	(void)config_finish(&c, err, sizeof(err));
	err[0] = '\0';
	if (config_check_tls(&c, err, sizeof(err)) != 0 && !err[0])
		__builtin_trap(); /* a refusal always says why */
	config_free(&c);
	return 0;
}
