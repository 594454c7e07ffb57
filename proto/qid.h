/* SPDX-License-Identifier: MIT */
/*
 * qid: the queue id of a message as logs, replies and DSNs show it
 * ("250 2.0.0 Ok: queued as QID", "QID: to=<...>"): 14 upper-case hex digits,
 * 2 for the shard and 12 for the sequence of its spool message id
 * (store/spool_rec.h). One home for its buffer size and its formatting, so a
 * module that logs a queue id need not include the SMTP server.
 */
#ifndef ETRND_PROTO_QID_H
#define ETRND_PROTO_QID_H

#include <stddef.h>
#include <stdint.h>

/* Bytes for a queue id and its NUL: 14 digits, with room for a shard
 * number wider than two digits. */
#define QID_MAX 24

/* Write msgid's queue id, NUL-terminated, into out (QID_MAX bytes). Returns
 * out, so a log call can take it as an argument. */
const char *qid_format(uint64_t msgid, char out[QID_MAX]);

/* Digits of a queue id as qid_format() writes them. */
#define QID_DIGITS 14

/* The message id of queue id text s (len bytes, not NUL-terminated): exactly
 * QID_DIGITS hex digits, either case. Returns 0 with *msgid set, or -EINVAL
 * (anything else: empty, too short or long, a non-hex byte). */
int qid_parse(const char *s, size_t len, uint64_t *msgid);

#endif
