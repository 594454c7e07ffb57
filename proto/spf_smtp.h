/* SPDX-License-Identifier: MIT */
/*
 * spf_smtp: SPF (proto/spf.h) as a policy checker of the SMTP server
 * (proto/smtp_check.h), one per engine thread. At MAIL FROM it checks the
 * sender's domain (the HELO name for the null sender, RFC 7208 2.4) on the
 * SPF pool, counts and logs the result, and with spf = on refuses fail
 * (550 5.7.23, RFC 7372) and temperror (451 4.7.24) as configured; at the
 * end of data it puts a Received-SPF field (RFC 7208 9.1) on top of the
 * message, which is also how a later bounce knows the sender failed SPF
 * (proto/bounce.h: no backscatter).
 */
#ifndef ETRND_PROTO_SPF_SMTP_H
#define ETRND_PROTO_SPF_SMTP_H

#include "core/config.h"
#include "proto/smtp_check.h"
#include "proto/spf.h"

struct loop;
struct spf_smtp;

/* The checker state of one engine thread: pool (shared, outlives it), cfg
 * (spf, spf_reject, spf_temperror, hostname; outlives it), l (this
 * thread's loop, where answers arrive). NULL when out of memory. */
struct spf_smtp *spf_smtp_new(struct spf *pool, const struct config *cfg, struct loop *l);

/* Fill ck with the checker (MAIL and end-of-data stages); x is its arg. */
void spf_smtp_checker(struct spf_smtp *x, struct smtp_checker *ck);

/* Free x: after its loop ran its last post (a check still out then was
 * dropped with the loop). NULL is fine. Returns NULL. */
struct spf_smtp *spf_smtp_free(struct spf_smtp *x);

#endif
