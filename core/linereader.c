/* SPDX-License-Identifier: MIT */
/*
 * linereader: see linereader.h. A line that arrives whole in one feed is
 * handed out in place (no copy); only a line split across feeds is gathered
 * in the owner's buffer, which never holds more than max - 1 octets.
 */
#include "core/linereader.h"

#include <string.h>

#include "core/log.h"

void linereader_init(struct linereader *lr, char *buf, size_t max)
{
	if (max < LINEREADER_MAX_MIN || buf == NULL)
		panic("line limit %zu", max);
	lr->buf = buf;
	lr->max = max;
	linereader_reset(lr);
}

void linereader_reset(struct linereader *lr)
{
	lr->len = 0;
	lr->dropping = 0;
}

size_t linereader_pending(const struct linereader *lr)
{
	return lr->dropping ? 1 : lr->len;
}

/* Flags of a whole line (LF removed, CR still there). memchr() scans many
 * octets per step: cheaper than a byte loop already for a MAIL or RCPT
 * line (measured). */
static unsigned linereader_flags(const char *line, size_t *len)
{
	unsigned f = 0;

	if (*len > 0 && line[*len - 1] == '\r')
		(*len)--;
	else
		f |= LINEREADER_F_BARE_LF;
	if (memchr(line, '\0', *len) != NULL)
		f |= LINEREADER_F_NUL;
	return f;
}

size_t linereader_feed(struct linereader *lr, const char *p, size_t n,
		struct linereader_line *ln)
{
	const char *nl = memchr(p, '\n', n);
	size_t take = nl != NULL ? (size_t)(nl - p) + 1 : n;
	size_t room = lr->max - lr->len;

	ln->status = LINEREADER_AGAIN;
	ln->p = NULL;
	ln->len = 0;
	ln->flags = 0;
	if (lr->dropping) {
		if (nl == NULL)
			return n;
		lr->dropping = 0;
		ln->status = LINEREADER_OVERLONG_END;
		return take;
	}
	/* With an LF the line may fill max exactly; without one, filling max
	 * means the LF can no longer fit: refuse now, not after buffering. */
	if (nl != NULL ? take > room : take >= room) {
		lr->len = 0;
		lr->dropping = nl == NULL;
		ln->status = nl == NULL ? LINEREADER_OVERLONG : LINEREADER_OVERLONG_END;
		return take;
	}
	if (nl == NULL) {
		memcpy(lr->buf + lr->len, p, n);
		lr->len += n;
		return n;
	}
	ln->len = take - 1;
	if (lr->len == 0) {
		ln->p = p; /* the whole line is in the input: no copy */
	} else {
		memcpy(lr->buf + lr->len, p, ln->len);
		ln->len += lr->len;
		ln->p = lr->buf;
		lr->len = 0;
	}
	ln->flags = linereader_flags(ln->p, &ln->len);
	ln->status = LINEREADER_LINE;
	return take;
}
