/* SPDX-License-Identifier: MIT */
/*
 * resolver_answer: the pure half of core/resolver.c's generic record query
 * (resolver_query, resolver_answer_parse in core/resolver.h) and the one
 * table that says what a c-ares status means for a caller. resolver.c alone
 * includes this header; no DNS, no threads.
 */
#ifndef ETRND_CORE_RESOLVER_ANSWER_H
#define ETRND_CORE_RESOLVER_ANSWER_H

#include "core/resolver.h"

/* What c-ares status means: *err (0 or -errno as resolver_result.err) and
 * whether it is permanent. */
void resolver_answer_status(int status, int *err, int *permanent);

/* A status as a log phrase ("NXDOMAIN", c-ares' text otherwise). Static. */
const char *resolver_answer_status_text(int status);

/* The type's name for log lines ("TXT"), "?" for an unknown one. */
const char *resolver_answer_type_name(enum resolver_rrtype type);

#endif
