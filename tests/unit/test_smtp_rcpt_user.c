/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for proto/smtp_server.c's recipient validation hook
 * (smtp_server_conf.rcpt_user, issue 19): asked only after rcpt_check said
 * OK, with the whole address and its domain offset; SMTP_RCPT_NO_USER is
 * 550 5.1.1 with Postfix's text, SMTP_RCPT_NO_USERS 451 4.3.0; a refused
 * recipient is not in the transaction, an accepted one is. The dialogue is
 * fed whole, then one byte at a time.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "proto/smtp_server.h"

static unsigned ru_calls;
static char ru_last[300];

/* v.test and down.test are customers' domains; far.test is not (denied
 * before rcpt_user is asked). */
static enum smtp_rcpt_verdict ru_rcpt_check(void *arg, const char *d, size_t len, int relay)
{
	(void)arg;
	(void)relay;
	if ((len == 6 && !memcmp(d, "v.test", 6)) || (len == 9 && !memcmp(d, "down.test", 9)))
		return SMTP_RCPT_OK;
	return SMTP_RCPT_DENY;
}

/* v.test's set is {alice}; down.test has none loaded. */
static enum smtp_rcpt_verdict ru_rcpt_user(void *arg, const char *addr, size_t len,
					   size_t domain_off)
{
	(void)arg;
	ru_calls++;
	cr_assert(domain_off > 0 && domain_off <= len && addr[domain_off - 1] == '@');
	snprintf(ru_last, sizeof(ru_last), "%.*s|%.*s", (int)(domain_off - 1), addr,
		 (int)(len - domain_off), addr + domain_off);
	if (len - domain_off == 9)
		return SMTP_RCPT_NO_USERS;
	return domain_off == 6 && !memcmp(addr, "alice", 5) ? SMTP_RCPT_OK : SMTP_RCPT_NO_USER;
}

static void ru_new_id(void *arg, uint64_t *msgid, char *qid)
{
	(void)arg;
	*msgid = 1;
	snprintf(qid, SMTP_QID_MAX, "%014X", 1u);
}

static const char ru_in[] =
	"EHLO c.test\r\n"
	"MAIL FROM:<s@x.test>\r\n"
	"RCPT TO:<alice@v.test>\r\n"
	"RCPT TO:<bob@v.test>\r\n"
	"RCPT TO:<x@down.test>\r\n"
	"RCPT TO:<y@far.test>\r\n";

/* Feed ru_in in chunks of step bytes; the replies and how many times the
 * hook ran. */
static void ru_run(size_t step, struct buf *out)
{
	static const struct smtp_limits lim = {
		.command_max = 512, .line_max = 1000, .max_recipients = 100,
		.size_max = 1 << 20, .max_errors = 10,
	};
	struct smtp_server_conf conf = {
		.hostname = "mx.test", .limits = lim, .rcpt_check = ru_rcpt_check,
		.rcpt_user = ru_rcpt_user, .new_id = ru_new_id,
	};
	struct smtp_session *s;
	size_t off = 0, n = sizeof(ru_in) - 1;

	log_set_level(LOGL_ERR);
	s = smtp_server_new(&conf, "192.0.2.9");
	cr_assert_not_null(s);
	ru_calls = 0;
	while (off < n) {
		size_t k = n - off < step ? n - off : step;
		enum smtp_event ev;
		size_t used = smtp_server_feed(s, ru_in + off, k, out, &ev);

		cr_assert_eq(ev, SMTP_EV_NEED_INPUT);
		cr_assert_eq(used, k);
		off += used;
	}
	smtp_server_free(s);
}

Test(smtp_rcpt_user, verdicts)
{
	static const size_t steps[] = { sizeof(ru_in), 1, 7 };

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		struct buf out;
		char *text;

		buf_init(&out, 1 << 16);
		ru_run(steps[i], &out);
		cr_assert_eq(buf_append(&out, "", 1), 0);
		text = out.data;
		cr_assert(strstr(text, "250 2.1.5 Ok\r\n550 5.1.1 <bob@v.test>: Recipient address "
				       "rejected: User unknown\r\n451 4.3.0 <x@down.test>: Temporary "
				       "lookup failure\r\n550 5.7.1 <y@far.test>: Relay access denied\r\n"),
			  "step %zu: %s", steps[i], text);
		/* Asked for the three customers' recipients, not for far.test. */
		cr_assert_eq(ru_calls, 3, "step %zu", steps[i]);
		cr_assert_str_eq(ru_last, "x|down.test");
		buf_free(&out);
	}
}
