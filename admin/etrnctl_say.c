/* SPDX-License-Identifier: MIT */
/* etrnctl_say: etrnctl's one way of reporting a problem (see etrnctl_say.h). */
#include "admin/etrnctl_say.h"

#include <stdarg.h>
#include <stdio.h>

int etrnctl_say(int rc, const char *fmt, ...)
{
	va_list ap;

	fputs("etrnctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return rc;
}
