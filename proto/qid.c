/* SPDX-License-Identifier: MIT */
/*
 * qid: queue id text of a spool message id (see qid.h). The digits are the
 * spool's (spool_msgid_format); this file only fixes the buffer size.
 */
#include "proto/qid.h"

#include "store/spool_rec.h"

const char *qid_format(uint64_t msgid, char out[QID_MAX])
{
	spool_msgid_format(msgid, out, QID_MAX);
	return out;
}
