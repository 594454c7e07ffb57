/* SPDX-License-Identifier: MIT */
/* spool_direct: see spool_direct.h. */
#include "store/spool_direct.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN SPOOL_DIRECT_ALIGN

void spool_direct_segment(struct spool_direct *d)
{
	d->tail_len = 0;
}

int spool_direct_stage(struct spool_direct *d, struct spool_stage *s, uint64_t off,
		       const struct iovec *iov, unsigned n, uint64_t total)
{
	size_t head = d->tail_len;
	size_t len = (size_t)(spool_direct_end(off, total) - (off - head));
	char *p;

	if (s->cap < len) {
		void *q = NULL;

		if (posix_memalign(&q, ALIGN, len))
			return -ENOMEM;
		free(s->p);
		s->p = q;
		s->cap = len;
	}
	p = s->p;
	memcpy(p, d->tail, head);
	p += head;
	for (unsigned i = 0; i < n; i++) {
		memcpy(p, iov[i].iov_base, iov[i].iov_len);
		p += iov[i].iov_len;
	}
	memset(p, 0, (size_t)(s->p + len - p));
	s->len = len;
	s->done = 0;
	s->start = off - head;
	d->tail_len = (size_t)((off + total) % ALIGN);
	if (d->tail_len)
		memcpy(d->tail, s->p + len - ALIGN, d->tail_len);
	return 0;
}

void spool_direct_cut(struct spool_direct *d, const struct spool_stage *s, uint64_t off)
{
	/* The staged image starts with the tail the batch found at off. */
	d->tail_len = (size_t)(off % ALIGN);
	memcpy(d->tail, s->p, d->tail_len);
}

int spool_direct_wrote(struct spool_stage *s, int res)
{
	size_t blocks = (size_t)res / ALIGN * ALIGN;

	if (blocks == 0)
		return -EIO;
	s->done += blocks;
	if (s->done > s->len)
		s->done = s->len;
	return s->done == s->len;
}

void spool_stage_trim(struct spool_stage *s, int all)
{
	if (all || s->cap > SPOOL_DIRECT_BATCH_MAX + ALIGN) {
		free(s->p);
		s->p = NULL;
		s->cap = 0;
	}
}
