/* SPDX-License-Identifier: MIT */
/* Tests for core/config_activator.c: the "activator.NAME.FIELD" keys and
 * atrn_idle_timeout read from a real file, every refusal as "FILE:LINE:
 * activator NAME: what is wrong" (the key's line, or the activator's first
 * key's for a missing field), the password_file read at config_finish, and
 * the warnings (a field given twice, a password file others may read,
 * credentials in the clear). Table-driven. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"

/* A scratch directory per test with the config and password files. */
static char dir[64];
static char conf[128];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/etrnd-test-activator-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(conf, sizeof(conf), "%s/etrnd.conf", dir);
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(config_activator, .init = setup, .fini = teardown);

/* Write dir/name with text and mode; returns its path (static buffer). */
static const char *put(const char *name, const char *text, mode_t mode)
{
	static char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	cr_assert(fd >= 0, "%s", path);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	cr_assert_eq(fchmod(fd, mode), 0);
	close(fd);
	return path;
}

/* in with "@DIR@" and "@CONF@" replaced by dir and conf, into out. */
static void subst(char *out, size_t len, const char *in)
{
	size_t o = 0;

	while (*in && o + sizeof(conf) < len) {
		if (!strncmp(in, "@DIR@", 5)) {
			o += (size_t)snprintf(out + o, len - o, "%s", dir);
			in += 5;
		} else if (!strncmp(in, "@CONF@", 6)) {
			o += (size_t)snprintf(out + o, len - o, "%s", conf);
			in += 6;
		} else {
			out[o++] = *in++;
		}
	}
	out[o] = '\0';
}

static void put_conf(const char *text)
{
	char out[16384];

	subst(out, sizeof(out), text);
	put("etrnd.conf", out, 0600);
}

/* config_load (and when it passes, config_finish) of conf with stderr (the
 * warnings) captured into warn; 0, or -1 and err. Which step refused goes
 * to *step ("load" or "finish"). */
static int load_finish(struct config *c, char *err, size_t errlen, char *warn, size_t warnlen,
		       const char **step)
{
	char cap[128];
	int saved = dup(2), fd, rc;
	ssize_t n;

	snprintf(cap, sizeof(cap), "%s/stderr", dir);
	fd = open(cap, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	config_defaults(c);
	*step = "load";
	rc = config_load(c, conf, err, errlen);
	if (rc == 0) {
		*step = "finish";
		rc = config_finish(c, err, errlen);
	}
	dup2(saved, 2);
	close(saved);
	n = pread(fd, warn, warnlen - 1, 0);
	warn[n > 0 ? n : 0] = '\0';
	close(fd);
	return rc;
}

#define BASE "relay_domains = demo.test\n"

Test(config_activator, good_keys)
{
	struct config c;
	char err[CONFIG_ERR_MAX + PATH_MAX], warn[4096], sched[TIMETABLE_TEXT_MAX];
	const char *step;
	const struct config_activator *a;

	put("isp.pass", "s3cret pass\nsecond line ignored\n", 0600);
	put("odmr.pass", "crlf\r\n", 0400);
	put_conf(BASE
		 "atrn_idle_timeout = 2m\n"
		 "activator.isp.host = mx.ISP.example\n"
		 "activator.isp.request = Example.COM., @example.org,#Q_1  example.net\n"
		 "activator.isp.schedule = 8:00-18:00 every 300s ,  after-outbound\n"
		 "activator.isp.user = node1@isp\n"
		 "activator.isp.password_file = @DIR@/isp.pass\n"
		 "activator.isp.tls = VERIFY\n"
		 "activator.odmr.method = atrn\n"
		 "activator.odmr.host = [2001:db8::1]:3366\n"
		 "activator.odmr.user = n2\n"
		 "activator.odmr.password_file = @DIR@/odmr.pass\n"
		 "activator.odmr.schedule = every 15m\n"
		 "activator.odmr.idle_timeout = 90s\n"
		 "activator.v4.host = 192.0.2.1:2525\n"
		 "activator.v4.request = #queue\n"
		 "activator.v4.schedule = every 1h\n"
		 "activator.v4.tls = none\n"
		 "activator.one-label_2.host = localhost\n"
		 "activator.one-label_2.method = atrn\n"
		 "activator.one-label_2.user = x\n"
		 "activator.one-label_2.password_file = @DIR@/odmr.pass\n"
		 "activator.one-label_2.request = a.example\n"
		 "activator.one-label_2.schedule = after-outbound\n");
	cr_assert_eq(load_finish(&c, err, sizeof(err), warn, sizeof(warn), &step), 0, "%s: %s",
		     step, err);
	cr_expect_str_eq(warn, "", "a clean config warns nothing");
	cr_expect_eq(c.atrn_idle_timeout_ms, 120000);
	cr_assert_eq(c.nactivators, 4);

	a = &c.activators[0];
	cr_expect_str_eq(a->name, "isp");
	cr_expect_str_eq(a->host, "mx.ISP.example");
	cr_expect_eq(a->port, CONFIG_ETRN_PORT, "etrn's default port");
	cr_expect_eq(a->method, CONFIG_ACTIVATOR_ETRN);
	cr_assert_eq(a->nrequest, 4);
	cr_expect_str_eq(a->request[0], "example.com");
	cr_expect_str_eq(a->request[1], "@example.org");
	cr_expect_str_eq(a->request[2], "#Q_1", "a queue name keeps its case");
	cr_expect_str_eq(a->request[3], "example.net");
	cr_expect_str_eq(a->user, "node1@isp");
	cr_expect_str_eq(a->password, "s3cret pass", "the first line, spaces kept");
	cr_expect_eq(a->tls, CONFIG_ACTIVATOR_TLS_VERIFY);
	timetable_format(&a->schedule, sched, sizeof(sched));
	cr_expect_str_eq(sched, "08:00-18:00 every 5m, after-outbound");
	cr_expect_eq(a->idle_timeout_ms, 0);
	cr_expect(strstr(a->where, "etrnd.conf:3") != NULL, "%s", a->where);

	a = &c.activators[1];
	cr_expect_str_eq(a->name, "odmr");
	cr_expect_eq(a->method, CONFIG_ACTIVATOR_ATRN);
	cr_expect_str_eq(a->host, "2001:db8::1");
	cr_expect_eq(a->port, 3366);
	cr_expect_eq(a->nrequest, 0, "atrn without request: all the user's domains");
	cr_expect_str_eq(a->password, "crlf", "CR LF ends the line too");
	cr_expect_eq(a->tls, CONFIG_ACTIVATOR_TLS_MAY, "the default");
	cr_expect_eq(a->idle_timeout_ms, 90000);

	a = &c.activators[2];
	cr_expect_str_eq(a->host, "192.0.2.1");
	cr_expect_eq(a->port, 2525);
	cr_expect_eq(a->tls, CONFIG_ACTIVATOR_TLS_NONE);
	cr_expect_str_eq(a->user, "");

	a = &c.activators[3];
	cr_expect_str_eq(a->name, "one-label_2");
	cr_expect_eq(a->port, CONFIG_ODMR_PORT, "atrn's default port");
	config_free(&c);
	cr_expect_null(c.activators);
	cr_expect_eq(c.nactivators, 0);
}

Test(config_activator, defaults_and_names)
{
	struct config c;

	config_defaults(&c);
	cr_expect_eq(c.atrn_idle_timeout_ms, CONFIG_ATRN_IDLE_TIMEOUT_DEFAULT_MS);
	cr_expect_eq(c.nactivators, 0);
	cr_expect_null(c.activators);
	config_free(&c);
	cr_expect_str_eq(config_activator_method_name(CONFIG_ACTIVATOR_ETRN), "etrn");
	cr_expect_str_eq(config_activator_method_name(CONFIG_ACTIVATOR_ATRN), "atrn");
	cr_expect_str_eq(config_activator_method_name((enum config_activator_method)7), "?");
	cr_expect_str_eq(config_activator_tls_name(CONFIG_ACTIVATOR_TLS_NONE), "none");
	cr_expect_str_eq(config_activator_tls_name(CONFIG_ACTIVATOR_TLS_MAY), "may");
	cr_expect_str_eq(config_activator_tls_name(CONFIG_ACTIVATOR_TLS_MUST), "must");
	cr_expect_str_eq(config_activator_tls_name(CONFIG_ACTIVATOR_TLS_VERIFY), "verify");
	cr_expect_str_eq(config_activator_tls_name((enum config_activator_tls)-1), "?");
}

/* A refused config: the text (line 1 is BASE's relay_domains) and the
 * error after "DIR/etrnd.conf:". */
struct bad_case {
	const char *text;
	const char *want;
};

#define OK_ETRN(n) "activator." n ".host = mx.example\nactivator." n ".request = a.example\n" \
	"activator." n ".schedule = every 1h\n"

static const struct bad_case bad_cases[] = {
	/* a key or value that is wrong on its own: its line, at load */
	{ "activator.isp.hots = mx\n", "2: activator isp: unknown field \"hots\" (want host, method, request, user, password_file, tls, schedule or idle_timeout)" },
	{ "activator.isp = mx\n", "2: bad key \"activator.isp\" (want activator.NAME.FIELD)" },
	{ "activator..host = mx\n", "2: bad activator name \"\" (want 1 to 63 letters, digits, - and _)" },
	{ "activator.a b.host = mx\n", "2: bad activator name \"a b\"" },
	{ "activator.a!.host = mx\n", "2: bad activator name \"a!\"" },
	{ "activator.a.b.host = mx\n", "2: activator a: unknown field \"b.host\"" },
	{ "activator.Host.HOST = mx\n", "2: activator Host: unknown field \"HOST\"" },
	{ "activator.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.host = mx\n",
	  "2: bad activator name \"aaaa" },
	{ "\n\nactivator.isp.host = mx..example\n", "4: activator isp: bad value for host: \"mx..example\" (want host[:port] or [host]:port, the host a name or an IP address)" },
	{ "activator.isp.host = mx.example:0\n", "2: activator isp: bad value for host: \"mx.example:0\"" },
	{ "activator.isp.host = mx.example:65536\n", "2: activator isp: bad value for host: \"mx.example:65536\"" },
	{ "activator.isp.host = mx.example:+25\n", "2: activator isp: bad value for host: " },
	{ "activator.isp.host = mx.example: 25\n", "2: activator isp: bad value for host: " },
	{ "activator.isp.host = mx.example:\n", "2: activator isp: bad value for host: " },
	{ "activator.isp.host = [::1\n", "2: activator isp: bad value for host: " },
	{ "activator.isp.host = [::1]x\n", "2: activator isp: bad value for host: " },
	{ "activator.isp.host = -mx.example\n", "2: activator isp: bad value for host: " },
	{ "activator.isp.host = mx/example\n", "2: activator isp: bad value for host: " },
	{ "activator.isp.method = smtp\n", "2: activator isp: bad value for method: \"smtp\" (want etrn or atrn)" },
	{ "activator.isp.request = a.example, bad..example\n", "2: activator isp: bad value for request: bad request \"bad..example\" (want domain, @domain or #queue)" },
	{ "activator.isp.request = @\n", "2: activator isp: bad value for request: bad request \"@\"" },
	{ "activator.isp.request = #,a.example\n", "2: activator isp: bad value for request: bad request \"#\"" },
	{ "activator.isp.request = #\n", "2: missing value for activator.isp.request" }, /* a comment */
	{ "activator.isp.request = #q!1\n", "2: activator isp: bad value for request: bad request \"#q!1\"" },
	{ "activator.isp.request = @@a.example\n", "2: activator isp: bad value for request: bad request \"@@a.example\"" },
	{ "activator.isp.request = a.example, A.Example.\n", "2: activator isp: bad value for request: request \"a.example\" given twice" },
	{ "activator.isp.request = a1,a2,a3,a4,a5,a6,a7,a8,a9,a10,a11,a12,a13,a14,a15,a16,a17\n",
	  "2: activator isp: bad value for request: more than 16 requests" },
	{ "activator.isp.user = a\x01" "b\n", "2: activator isp: bad value for user: " },
	{ "activator.isp.user = a b\n", "2: activator isp: bad value for user: \"a b\" (want 1 to 255 characters, no spaces or control characters)" },
	{ "activator.isp.tls = always\n", "2: activator isp: bad value for tls: \"always\" (want none, may, must or verify)" },
	{ "activator.isp.schedule = every 10s\n", "2: activator isp: bad value for schedule: \"every 10s\": every 10s: under the minimum of 1m" },
	{ "activator.isp.schedule = hourly\n", "2: activator isp: bad value for schedule: \"hourly\": unknown rule \"hourly\"" },
	{ "activator.isp.schedule = 18:00-18:00 every 5m\n", "2: activator isp: bad value for schedule: \"18:00-18:00 every 5m\": window 18:00-18:00 is empty" },
	{ "activator.isp.idle_timeout = 0\n", "2: activator isp: bad value for idle_timeout: \"0\" (want a duration from 1s to 1d, like 5m)" },
	{ "activator.isp.idle_timeout = 2d\n", "2: activator isp: bad value for idle_timeout: \"2d\"" },
	{ "atrn_idle_timeout = 500ms\n", "2: bad value for atrn_idle_timeout: \"500ms\"" },
	{ "atrn_idle_timeout = 25h\n", "2: bad value for atrn_idle_timeout: \"25h\"" },
	/* the activator as a whole, at finish: missing fields name its first
	 * key's line, contradicting ones the line of the key at fault */
	{ "activator.isp.schedule = every 1h\nactivator.isp.request = a.example\n",
	  "2: activator isp: no host (want host = mx.example.net or [host]:port)" },
	{ "\nactivator.isp.host = mx.example\nactivator.isp.schedule = every 1h\n",
	  "3: activator isp: method etrn needs a request (domain, @domain or #queue)" },
	{ "activator.isp.host = mx.example\nactivator.isp.request = a.example\n",
	  "2: activator isp: no schedule (want schedule = every 1h, 08:00-18:00 every 5m or after-outbound)" },
	{ "activator.isp.host = mx.example\nactivator.isp.schedule = every 1h\nactivator.isp.method = atrn\n",
	  "2: activator isp: method atrn needs a user and a password_file (RFC 2645: AUTH before ATRN)" },
	{ OK_ETRN("isp") "activator.isp.user = u\n", "2: activator isp: a user needs a password_file" },
	{ OK_ETRN("isp") "activator.isp.password_file = @DIR@/pw\n",
	  "5: activator isp: a password_file without a user" },
	{ "activator.isp.host = mx.example\nactivator.isp.request = @a.example # the comment\n"
	  "activator.isp.schedule = every 1h\nactivator.isp.method = atrn\nactivator.isp.user = u\n"
	  "activator.isp.password_file = @DIR@/pw\n",
	  "3: activator isp: method atrn takes domains only, not \"@a.example\"" },
	{ "activator.isp.host = mx.example\nactivator.isp.request = a.example, #q\nactivator.isp.schedule = every 1h\n"
	  "activator.isp.method = atrn\nactivator.isp.user = u\nactivator.isp.password_file = @DIR@/pw\n",
	  "3: activator isp: method atrn takes domains only, not \"#q\"" },
	{ OK_ETRN("isp") "activator.isp.idle_timeout = 5m\n",
	  "5: activator isp: idle_timeout is for method atrn (an ETRN run does not wait for mail)" },
	{ OK_ETRN("isp") "activator.isp.user = u\nactivator.isp.password_file = @DIR@/nonexistent\n",
	  "6: activator isp: password_file @DIR@/nonexistent: No such file or directory" },
	{ OK_ETRN("isp") "activator.isp.user = u\nactivator.isp.password_file = @DIR@/empty\n",
	  "6: activator isp: password_file @DIR@/empty: empty (its first line is the password)" },
	{ OK_ETRN("isp") "activator.isp.user = u\nactivator.isp.password_file = @DIR@/blank\n",
	  "6: activator isp: password_file @DIR@/blank: empty" },
	{ OK_ETRN("isp") "activator.isp.user = u\nactivator.isp.password_file = @DIR@/long\n",
	  "6: activator isp: password_file @DIR@/long: its first line is longer than the longest password (255 octets)" },
	{ OK_ETRN("isp") "activator.isp.user = u\nactivator.isp.password_file = @DIR@/nul\n",
	  "6: activator isp: password_file @DIR@/nul: a NUL byte in the password" },
	{ OK_ETRN("isp") "activator.isp.user = u\nactivator.isp.password_file = @DIR@\n",
	  "6: activator isp: password_file @DIR@: Is a directory" },
	/* the second activator's error, after a good first one */
	{ OK_ETRN("one") "activator.two.host = mx.example\n", "5: activator two: method etrn needs a request" },
};

/* dir's special password files for the cases above. */
static void put_password_files(void)
{
	char longpw[300], nul[] = "ab\0cd\n";
	int fd;

	put("pw", "pw\n", 0600);
	put("empty", "", 0600);
	put("blank", "\nsecond\n", 0600);
	memset(longpw, 'x', sizeof(longpw) - 1);
	longpw[sizeof(longpw) - 1] = '\0';
	put("long", longpw, 0600);
	fd = open(put("nul", "", 0600), O_WRONLY);
	cr_assert_eq(write(fd, nul, sizeof(nul) - 1), (ssize_t)sizeof(nul) - 1);
	close(fd);
}

Test(config_activator, refused_with_file_and_line)
{
	put_password_files();
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct config c;
		char text[4096], err[CONFIG_ERR_MAX + PATH_MAX] = "", want[1024], warn[4096];
		const char *step;

		snprintf(text, sizeof(text), BASE "%s", bad_cases[i].text);
		put_conf(text);
		snprintf(text, sizeof(text), "@CONF@:%s", bad_cases[i].want);
		subst(want, sizeof(want), text);
		cr_expect_eq(load_finish(&c, err, sizeof(err), warn, sizeof(warn), &step), -1,
			     "case %zu accepted: %s", i, bad_cases[i].text);
		cr_expect(strncmp(err, want, strlen(want)) == 0,
			  "case %zu (%s): got [%s], want prefix [%s]", i, step, err, want);
		cr_expect(strchr(err, '\n') == NULL, "case %zu: one line", i);
		config_free(&c);
	}
}

Test(config_activator, at_most_32)
{
	char text[16384], err[CONFIG_ERR_MAX + PATH_MAX], want[512], warn[256];
	size_t o = (size_t)snprintf(text, sizeof(text), BASE);
	struct config c;
	const char *step;

	for (int i = 0; i <= CONFIG_ACTIVATORS_MAX; i++)
		o += (size_t)snprintf(text + o, sizeof(text) - o,
				      "activator.a%d.host = mx.example\nactivator.a%d.request = a.example\n"
				      "activator.a%d.schedule = every 1h\n", i, i, i);
	put_conf(text);
	cr_expect_eq(load_finish(&c, err, sizeof(err), warn, sizeof(warn), &step), -1);
	snprintf(want, sizeof(want), "%s:%d: activator a32: more than 32 activators", conf,
		 2 + 3 * CONFIG_ACTIVATORS_MAX);
	cr_expect_str_eq(err, want);
	cr_expect_eq(c.nactivators, CONFIG_ACTIVATORS_MAX);
	config_free(&c);
}

/* The warnings: each wanted line (after "warning: "; @DIR@ and @CONF@
 * replaced) must be in stderr, and there must be exactly that many. */
struct warn_case {
	const char *text;
	const char *want[3];
};

static const struct warn_case warn_cases[] = {
	{ OK_ETRN("isp") "activator.isp.host = mx2.example\nactivator.isp.schedule = every 2h\n",
	  { "@CONF@:5: overriding earlier entry for activator.isp.host on line 2: the last value wins",
	    "@CONF@:6: overriding earlier entry for activator.isp.schedule on line 4: the last value wins" } },
	{ OK_ETRN("isp") OK_ETRN("other") "activator.other.host = mx3.example\n",
	  { "@CONF@:8: overriding earlier entry for activator.other.host on line 5: the last value wins" } },
	{ OK_ETRN("isp") "activator.isp.user = u\nactivator.isp.password_file = @DIR@/open\n",
	  { "@CONF@:6: activator isp: password_file @DIR@/open is open to group or others (mode 0644): chmod 600 it" } },
	{ OK_ETRN("isp") "activator.isp.user = u\nactivator.isp.password_file = @DIR@/pw\nactivator.isp.tls = none\n",
	  { "@CONF@:7: activator isp: tls = none: the AUTH credentials of user u go to mx.example in the clear" } },
	{ OK_ETRN("isp") "activator.isp.user = u\nactivator.isp.tls = none\nactivator.isp.password_file = @DIR@/pw\n",
	  { "@CONF@:6: activator isp: tls = none: the AUTH credentials" } },
	{ OK_ETRN("isp") "activator.isp.tls = none\n", { NULL } },
	{ OK_ETRN("isp") "activator.isp.user = u\nactivator.isp.password_file = @DIR@/pw\n", { NULL } },
};

Test(config_activator, warnings)
{
	put("pw", "pw\n", 0600);
	put("open", "pw\n", 0644);
	for (size_t i = 0; i < sizeof(warn_cases) / sizeof(warn_cases[0]); i++) {
		struct config c;
		char text[4096], err[CONFIG_ERR_MAX + PATH_MAX], warn[4096];
		const char *step;
		int nwant = 0, ngot = 0;

		snprintf(text, sizeof(text), BASE "%s", warn_cases[i].text);
		put_conf(text);
		cr_assert_eq(load_finish(&c, err, sizeof(err), warn, sizeof(warn), &step), 0,
			     "case %zu: %s: %s", i, step, err);
		for (const char *p = warn; (p = strstr(p, "warning: ")) != NULL; p++)
			ngot++;
		for (; nwant < 3 && warn_cases[i].want[nwant]; nwant++) {
			char want[1024], pat[1024];

			snprintf(pat, sizeof(pat), "warning: %s", warn_cases[i].want[nwant]);
			subst(want, sizeof(want), pat);
			cr_expect(strstr(warn, want) != NULL, "case %zu: got [%s], want [%s]", i, warn,
				  want);
		}
		cr_expect_eq(ngot, nwant, "case %zu: %d warnings, want %d: [%s]", i, ngot, nwant, warn);
		config_free(&c);
	}
}

/* -o: creates an activator or overrides a field, never warns as a
 * duplicate; its errors name "command line -o". */
Test(config_activator, command_line)
{
	struct config c;
	char err[CONFIG_ERR_MAX + PATH_MAX], warn[1024];
	const char *step;

	put_conf(BASE OK_ETRN("isp"));
	cr_assert_eq(load_finish(&c, err, sizeof(err), warn, sizeof(warn), &step), 0, "%s", err);
	cr_expect_eq(config_set(&c, "activator.isp.host", "[192.0.2.7]:26", "command line -o", err,
				sizeof(err)), 0, "%s", err);
	cr_expect_eq(config_set(&c, "activator.isp.request", "", "command line -o", err,
				sizeof(err)), 0, "an empty list from -o");
	cr_expect_eq(config_set(&c, "activator.new.host", "mx.example", "command line -o", err,
				sizeof(err)), 0, "%s", err);
	cr_expect_eq(config_set(&c, "activator.new.tls", "sometimes", "command line -o", err,
				sizeof(err)), -1);
	cr_expect_str_eq(err, "command line -o: activator new: bad value for tls: \"sometimes\" (want none, may, must or verify)");
	cr_expect_eq(config_finish(&c, err, sizeof(err)), -1);
	/* a missing field: the activator's first key's line */
	cr_expect(strstr(err, ":2: activator isp: method etrn needs a request"), "%s", err);
	cr_expect_eq(config_set(&c, "activator.isp.request", "#q", "command line -o", err,
				sizeof(err)), 0, "%s", err);
	cr_expect_eq(config_finish(&c, err, sizeof(err)), -1);
	cr_expect_str_eq(err, "command line -o: activator new: method etrn needs a request (domain, @domain or #queue)");
	cr_expect_str_eq(c.activators[0].host, "192.0.2.7");
	cr_expect_eq(c.activators[0].port, 26);
	config_free(&c);
}

/* The helpers the control socket's one-shot may share. */
Test(config_activator, request_add_and_check)
{
	struct config_activator a;
	char why[256];
	const char *field = "x";

	memset(&a, 0, sizeof(a));
	cr_expect_eq(config_activator_request_add(&a, "A.Example.xyz", 9, why, sizeof(why)), 0,
		     "n bytes only: %s", why);
	cr_expect_str_eq(a.request[0], "a.example");
	cr_expect_eq(config_activator_check(&a, &field, why, sizeof(why)), -1);
	cr_expect_str_eq(why, "no host (want host = mx.example.net or [host]:port)");
	cr_expect_null(field);
	strcpy(a.host, "mx.example");
	cr_expect_eq(config_activator_check(&a, &field, why, sizeof(why)), 0, "%s", why);
	a.method = CONFIG_ACTIVATOR_ATRN;
	strcpy(a.user, "u");
	strcpy(a.password, "p");
	cr_expect_eq(config_activator_check(&a, &field, why, sizeof(why)), 0, "a password will do: %s", why);
	cr_expect_eq(config_activator_request_add(&a, "@b.example", 10, why, sizeof(why)), 0);
	cr_expect_eq(config_activator_check(&a, &field, why, sizeof(why)), -1);
	cr_expect_str_eq(why, "method atrn takes domains only, not \"@b.example\"");
	cr_expect_str_eq(field, "request");
	cr_expect_eq(config_activator_request_add(&a, "#x\0y", 4, why, sizeof(why)), -1, "a NUL");
}
