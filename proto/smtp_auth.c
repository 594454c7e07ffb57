/* SPDX-License-Identifier: MIT */
/*
 * smtp_auth: PLAIN and LOGIN exchanges (see smtp_auth.h). Every buffer that
 * held a decoded password is wiped before it goes out of scope.
 */
#include "proto/smtp_auth.h"

#include <string.h>

#include "core/ascii.h"

/* RFC 4954 4, LOGIN's customary prompts: "Username:" and "Password:". */
#define SMTP_AUTH_ASK_USER "VXNlcm5hbWU6"
#define SMTP_AUTH_ASK_PASS "UGFzc3dvcmQ6"

static const struct smtp_auth_mech_row {
	const char *name;
	enum smtp_auth_mech mech;
} smtp_auth_mechs[] = {
	{ "PLAIN", SMTP_AUTH_PLAIN },
	{ "LOGIN", SMTP_AUTH_LOGIN },
};

enum smtp_auth_mech smtp_auth_mech(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(smtp_auth_mechs) / sizeof(smtp_auth_mechs[0]); i++) {
		const char *m = smtp_auth_mechs[i].name;

		if (strlen(m) == len && ascii_eq_n(name, m, len))
			return smtp_auth_mechs[i].mech;
	}
	return SMTP_AUTH_NONE;
}

const char *smtp_auth_mech_name(enum smtp_auth_mech m)
{
	for (size_t i = 0; i < sizeof(smtp_auth_mechs) / sizeof(smtp_auth_mechs[0]); i++)
		if (smtp_auth_mechs[i].mech == m)
			return smtp_auth_mechs[i].name;
	return "none";
}

/* A user name as etrnctl takes them (admin/schema.c): 1 to AUTH_USER_MAX
 * letters, digits and . _ - @ +. Anything else is no etrnd user, and
 * keeping it out means the name is safe in a log line and a Received:
 * comment as it is. */
static int smtp_auth_user_ok(const char *p, size_t n)
{
	if (n == 0 || n > AUTH_USER_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (!(ch >= 'a' && ch <= 'z') && !(ch >= 'A' && ch <= 'Z') &&
		    !(ch >= '0' && ch <= '9') && !strchr("._-@+", ch))
			return 0;
	}
	return 1;
}

static void smtp_auth_set_user(struct smtp_auth *a, const char *p, size_t n)
{
	if (!smtp_auth_user_ok(p, n)) {
		a->bad = 1;
		n = 0;
	}
	memcpy(a->user, p, n);
	a->user[n] = '\0';
}

/* RFC 4616 2: passwd = 1*SAFE, no NUL. */
static void smtp_auth_set_pass(struct smtp_auth *a, const char *p, size_t n)
{
	if (n == 0 || n > AUTH_PASS_MAX || memchr(p, '\0', n)) {
		a->bad = 1;
		n = 0;
	}
	memcpy(a->pass, p, n);
	a->pass[n] = '\0';
	a->pass_len = n;
}

/* RFC 4616 2: message = [authzid] NUL authcid NUL passwd. We act as the
 * user only: an authzid must be empty or the user itself. */
static void smtp_auth_plain(struct smtp_auth *a, const char *m, size_t n)
{
	const char *z1 = memchr(m, '\0', n), *z2;
	size_t zlen, ulen;

	z2 = z1 ? memchr(z1 + 1, '\0', n - (size_t)(z1 + 1 - m)) : NULL;
	if (!z2) {
		a->bad = 1;
		return;
	}
	zlen = (size_t)(z1 - m);
	ulen = (size_t)(z2 - z1 - 1);
	if (zlen && (zlen != ulen || memcmp(m, z1 + 1, ulen) != 0))
		a->bad = 1;
	smtp_auth_set_user(a, z1 + 1, ulen);
	smtp_auth_set_pass(a, z2 + 1, n - (size_t)(z2 + 1 - m));
}

/* One decoded response, in the mechanism's current step. */
static enum smtp_auth_status smtp_auth_response(struct smtp_auth *a, const char *m, size_t n,
		const char **challenge)
{
	if (a->mech == SMTP_AUTH_PLAIN) {
		smtp_auth_plain(a, m, n);
	} else if (!a->want_pass) {
		if (memchr(m, '\0', n))
			a->bad = 1;
		else
			smtp_auth_set_user(a, m, n);
		a->want_pass = 1;
		*challenge = SMTP_AUTH_ASK_PASS;
		return SMTP_AUTH_CONTINUE;
	} else {
		smtp_auth_set_pass(a, m, n);
	}
	return a->bad ? SMTP_AUTH_BAD : SMTP_AUTH_CHECK;
}

/* Decode a response and take it. An empty line is an empty response (RFC
 * 4954 4); "=" only stands for one in an initial response. */
static enum smtp_auth_status smtp_auth_decode(struct smtp_auth *a, const char *text, size_t len,
		const char **challenge)
{
	char dec[SMTP_AUTH_DECODED_MAX];
	enum smtp_auth_status st;
	int n;

	if (len > SMTP_AUTH_LINE_MAX)
		return SMTP_AUTH_DECODE;
	n = base64_decode(dec, sizeof(dec), text, len);
	if (n < 0) {
		explicit_bzero(dec, sizeof(dec));
		return SMTP_AUTH_DECODE;
	}
	st = smtp_auth_response(a, dec, (size_t)n, challenge);
	explicit_bzero(dec, sizeof(dec));
	return st;
}

enum smtp_auth_status smtp_auth_start(struct smtp_auth *a, enum smtp_auth_mech mech,
				      const char *ir, size_t ir_len, const char **challenge)
{
	smtp_auth_wipe(a);
	a->mech = mech;
	if (ir == NULL) {
		*challenge = mech == SMTP_AUTH_LOGIN ? SMTP_AUTH_ASK_USER : "";
		return SMTP_AUTH_CONTINUE;
	}
	if (ir_len == 1 && ir[0] == '=')
		ir_len = 0; /* RFC 4954 4: "=" is an empty initial response */
	return smtp_auth_decode(a, ir, ir_len, challenge);
}

enum smtp_auth_status smtp_auth_step(struct smtp_auth *a, const char *line, size_t len,
				     const char **challenge)
{
	if (len == 1 && line[0] == '*')
		return SMTP_AUTH_CANCEL;
	return smtp_auth_decode(a, line, len, challenge);
}

void smtp_auth_wipe(struct smtp_auth *a)
{
	explicit_bzero(a, sizeof(*a));
}
