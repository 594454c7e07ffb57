/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for proto/qid.h: qid_parse() against a table of good and bad
 * queue ids (etrnctl message show|delete|bounce take them), and the round
 * trip with qid_format() over shards and sequences at their edges.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "proto/qid.h"
#include "store/spool_rec.h"

struct qt_case {
	const char *name;
	const char *text;
	int rc;
	uint64_t want;
};

static const struct qt_case qt_cases[] = {
	{ "zero", "00000000000000", 0, 0 },
	{ "upper", "01000000000ABC", 0, (1ull << 48) | 0xabc },
	{ "lower", "01000000000abc", 0, (1ull << 48) | 0xabc },
	{ "max_seq", "00FFFFFFFFFFFF", 0, (1ull << 48) - 1 },
	{ "empty", "", -EINVAL, 0 },
	{ "short", "0123", -EINVAL, 0 },
	{ "long", "000000000000000", -EINVAL, 0 },
	{ "non_hex", "0000000000000G", -EINVAL, 0 },
	{ "space", "0000000 000000", -EINVAL, 0 },
	{ "sign", "+0000000000000", -EINVAL, 0 },
	{ "prefix_0x", "0x000000000000", -EINVAL, 0 },
};

Test(qid, parse_table)
{
	for (size_t i = 0; i < sizeof(qt_cases) / sizeof(qt_cases[0]); i++) {
		const struct qt_case *c = &qt_cases[i];
		uint64_t got = 0x5a5a;
		int rc = qid_parse(c->text, strlen(c->text), &got);

		cr_expect_eq(rc, c->rc, "%s: rc %d", c->name, rc);
		if (c->rc == 0)
			cr_expect_eq(got, c->want, "%s: %llx", c->name, (unsigned long long)got);
		else
			cr_expect_eq(got, 0x5a5a, "%s: *msgid written on error", c->name);
	}
}

/* A NUL inside the length is a bad byte, not an end. */
Test(qid, parse_embedded_nul)
{
	uint64_t got;

	cr_expect_eq(qid_parse("0000000\0" "000000", 14, &got), -EINVAL);
}

Test(qid, format_parse_round_trip)
{
	static const unsigned shards[] = { 0, 1, 7, 255 };
	static const uint64_t seqs[] = { 0, 1, 0xabcdef, (1ull << 48) - 1 };

	for (size_t i = 0; i < sizeof(shards) / sizeof(shards[0]); i++)
		for (size_t j = 0; j < sizeof(seqs) / sizeof(seqs[0]); j++) {
			uint64_t id = spool_msgid_make(shards[i], seqs[j]), got = 0;
			char q[QID_MAX];

			qid_format(id, q);
			cr_expect_eq(strlen(q), QID_DIGITS, "%s", q);
			cr_expect_eq(qid_parse(q, strlen(q), &got), 0, "%s", q);
			cr_expect_eq(got, id, "%s", q);
		}
}
