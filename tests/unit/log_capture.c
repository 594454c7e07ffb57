/* SPDX-License-Identifier: MIT */
/* log_capture: see log_capture.h. */
#include "log_capture.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int log_capture_start(struct log_capture *c)
{
	memset(c, 0, sizeof(*c));
	c->saved = -1;
	c->f = tmpfile();
	if (!c->f)
		return -errno;
	c->saved = dup(STDERR_FILENO);
	if (c->saved < 0 || dup2(fileno(c->f), STDERR_FILENO) < 0) {
		int rc = -errno;

		if (c->saved >= 0)
			close(c->saved);
		fclose(c->f);
		c->f = NULL;
		return rc;
	}
	return 0;
}

int log_capture_stop(struct log_capture *c, size_t max)
{
	int rc = 0;

	if (!c->f)
		return -EBADF;
	if (dup2(c->saved, STDERR_FILENO) < 0)
		rc = -errno;
	close(c->saved);
	c->text = malloc(max + 1);
	c->len = 0;
	if (c->text) {
		rewind(c->f);
		c->len = fread(c->text, 1, max, c->f);
		c->text[c->len] = '\0';
	} else {
		rc = -ENOMEM;
	}
	fclose(c->f);
	c->f = NULL;
	return rc;
}

void log_capture_free(struct log_capture *c)
{
	free(c->text);
	c->text = NULL;
	c->len = 0;
}
