/* SPDX-License-Identifier: MIT */
/*
 * qid: queue id text of a spool message id (see qid.h). The digits are the
 * spool's (spool_msgid_format); this file only fixes the buffer size.
 */
#include "proto/qid.h"

#include <errno.h>

#include "store/spool_rec.h"

const char *qid_format(uint64_t msgid, char out[QID_MAX])
{
	spool_msgid_format(msgid, out, QID_MAX);
	return out;
}

int qid_parse(const char *s, size_t len, uint64_t *msgid)
{
	uint64_t v = 0;

	if (len != QID_DIGITS)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			d = (c | 0x20) - 'a' + 10;
		else
			return -EINVAL;
		v = v << 4 | d;
	}
	*msgid = v;
	return 0;
}
