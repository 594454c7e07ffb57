/* SPDX-License-Identifier: MIT */
/*
 * ctl_activate: the control socket's "activate KEY=VALUE ..." request (what
 * etrnctl etrn --atrn sends) read into a one-shot activator's spec
 * (core/config.h struct config_activator), checked like an activator of
 * etrnd.conf. Pure: no I/O, no allocation.
 */
#ifndef ETRND_ADMIN_CTL_ACTIVATE_H
#define ETRND_ADMIN_CTL_ACTIVATE_H

#include <stddef.h>

#include "core/config.h"

/* Enough for every reason ctl_activate_parse() writes. */
#define CTL_ACTIVATE_WHY_MAX 256

/*
 * Read a[0..len) ("method=atrn host=mx.isp.example port=366 tls=must
 * user=u pass=BASE64 request=a.example,b.example idle_timeout=5m", keys in
 * any order, each at most once, separated by one space) into *spec (zeroed
 * first; name and schedule stay empty: a one-shot has neither). pass is
 * the password in base64 (core/base64.h), so any octet but NUL, CR and LF
 * can travel on the one-line request. Defaults as etrnd.conf's: method
 * etrn, tls may, port 25 (etrn) or 366 (atrn). Refused as etrnd.conf
 * refuses an activator: no host, etrn without request, atrn without user
 * and pass or with "@d" or "#q" requests. Returns 0, or -EINVAL with why
 * set (never quoting the password). spec->password holds a secret: the
 * caller wipes it (explicit_bzero) when done, also after an error.
 */
int ctl_activate_parse(const char *a, size_t len, struct config_activator *spec, char *why,
		size_t whylen);

/* Where a request line that may hold "pass=SECRET" is logged: line with
 * every pass= value replaced by "*" into out (NUL-terminated, cut to
 * outlen). Returns out. */
char *ctl_activate_mask(const char *line, size_t len, char *out, size_t outlen);

#endif
