/* SPDX-License-Identifier: MIT */
/* Tests for core/config.c: every key's parsing, and that each bad line is
 * reported as "FILE:LINE: what is wrong". Table-driven. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "core/cidr.h"
#include "core/config.h"
#include "core/log.h"
#include "core/resolver.h"

static char *write_conf(const char *text)
{
	static char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/etrnd-test-config-%d.conf", (int)getpid());
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

struct bad_case {
	const char *text;
	const char *want_err; /* after "PATH:" */
};

static const struct bad_case bad_cases[] = {
	{ "threds = 2\n", "1: unknown key \"threds\"" },
	{ "# comment\n\nsync = sometimes\n", "3: bad value for sync: \"sometimes\" (want batch, always or none)" },
	{ "listen = 127.0.0.1\n", "1: bad value for listen: \"127.0.0.1\" (want host:port, [v6addr]:port or :port with a numeric address)" },
	{ "listen = 127.0.0.1:99999\n", "1: bad value for listen: \"127.0.0.1:99999\"" },
	{ "listen = example.com:25\n", "1: bad value for listen: \"example.com:25\"" },
	{ "threads = 0\n", "1: bad value for threads: \"0\" (want auto or a number from 1 to 256)" },
	{ "spf = yes\n", "1: bad value for spf: \"yes\" (want off, log or on)" },
	{ "\nspf_reject = softfail\n", "2: bad value for spf_reject: \"softfail\" (want none or fail)" },
	{ "spf_temperror = reject\n", "1: bad value for spf_temperror: \"reject\" (want accept or tempfail)" },
	{ "spf_timeout = 50ms\n", "1: bad value for spf_timeout: \"50ms\" (want a duration from 100ms" },
	{ "spf_workers = 0\n", "1: bad value for spf_workers: \"0\" (want a number from 1 to 64)" },
	{ "threads = many\n", "1: bad value for threads: \"many\"" },
	{ "rcpt_max_per_domain = 0\n", "1: bad value for rcpt_max_per_domain: \"0\" (want a number from 1 to 100000000)" },
	{ "\nrcpt_max_total = lots\n", "2: bad value for rcpt_max_total: \"lots\"" },
	{ "rcpt_max_total = 100000001\n", "1: bad value for rcpt_max_total: \"100000001\"" },
	{ "message_size_limit = 10X\n", "1: bad value for message_size_limit: \"10X\"" },
	{ "data_memory_limit = 512k\n", "1: bad value for data_memory_limit: \"512k\" (want a size from 1048576" },
	{ "data_memory_limit = 2T\n", "1: bad value for data_memory_limit: \"2T\"" },
	{ "smtp_command_max = 100\n", "1: bad value for smtp_command_max: \"100\" (want a size from 512" },
	{ "smtp_line_max = 999\n", "1: bad value for smtp_line_max: \"999\"" },
	{ "idle_timeout = 5 minutes\n", "1: bad value for idle_timeout: \"5 minutes\"" },
	{ "idle_timeout = 10ms\n", "1: bad value for idle_timeout: \"10ms\"" },
	{ "close_timeout = 10ms\n", "1: bad value for close_timeout: \"10ms\"" },
	{ "close_timeout = soon\n", "1: bad value for close_timeout: \"soon\"" },
	{ "send_timeout = 0\n", "1: bad value for send_timeout: \"0\"" },
	{ "relay_domains = demo.test, bad..name\n", "1: bad value for relay_domains: \"bad..name\" is not a domain name" },
	{ "bare_lf = allow\n", "1: bad value for bare_lf: \"allow\" (want reject or normalize)" },
	{ "log_syslog = maybe\n", "1: bad value for log_syslog: \"maybe\" (want yes or no)" },
	{ "hostname = -bad-\n", "1: bad value for hostname: \"-bad-\"" },
	{ "hostname = relay.example.net-\n", "1: bad value for hostname: \"relay.example.net-\"" },
	{ "relay_domains = demo.test, x..test\n", "1: bad value for relay_domains: \"x..test\" is not a domain name" },
	{ "just some words\n", "1: expected \"key = value\", got \"just some words\"" },
	{ "sync =\n", "1: missing value for sync" },
	{ "= batch\n", "1: missing key before \"=\"" },
	{ "smtp_max_recipients = -1\n", "1: bad value for smtp_max_recipients: \"-1\"" },
	{ "smtp_max_recipients = 18446744073709551617\n", "1: bad value for smtp_max_recipients" },
	{ "drain_connections = 0\n", "1: bad value for drain_connections: \"0\" (want a number from 1 to 64)" },
	{ "drain_connections = 65\n", "1: bad value for drain_connections: \"65\"" },
	{ "drain_destination_concurrency = 0\n", "1: bad value for drain_destination_concurrency: \"0\" (want a number from 1 to 10000)" },
	{ "drain_reconnect_attempts = 101\n", "1: bad value for drain_reconnect_attempts: \"101\"" },
	{ "drain_greeting_timeout = 10ms\n", "1: bad value for drain_greeting_timeout: \"10ms\"" },
	{ "drain_done_window = 0\n", "1: bad value for drain_done_window: \"0\" (want a number from 1 to 1024)" },
	{ "etrn_rate_limit = none\n", "1: bad value for etrn_rate_limit: \"none\"" },
	{ "auth_verifiers = 0\n", "1: bad value for auth_verifiers: \"0\" (want a number from 1 to 64)" },
	{ "auth_verifiers = 65\n", "1: bad value for auth_verifiers: \"65\"" },
	{ "auth_verifiers = two\n", "1: bad value for auth_verifiers: \"two\"" },
	{ "auth_failure_limit = 0\n", "1: bad value for auth_failure_limit: \"0\" (want a number from 1 to 100000)" },
	{ "auth_failure_limit = 100001\n", "1: bad value for auth_failure_limit: \"100001\"" },
	{ "client_connection_limit_loopback = sometimes\n", "1: bad value for client_connection_limit_loopback: \"sometimes\" (want yes or no)" },
	{ "client_connection_limit = -1\n", "1: bad value for client_connection_limit: \"-1\"" },
	{ "client_connection_limit = 1000001\n", "1: bad value for client_connection_limit: \"1000001\" (want a number from 0 to 1000000)" },
	{ "max_hold = 50d\n", "1: bad value for max_hold: \"50d\"" },
	{ "max_hold = 0\n", "1: bad value for max_hold: \"0\"" },
	{ "clock_offset = -1d\n", "1: bad value for clock_offset: \"-1d\"" },
	{ "control_socket = /tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\n",
	  "1: bad value for control_socket: " },
	{ "postmaster = nobody\n", "1: bad value for postmaster: \"nobody\" (want an address like postmaster@example.net)" },
	{ "postmaster = @example.net\n", "1: bad value for postmaster: \"@example.net\"" },
	{ "postmaster = a%b@example.net\n", "1: bad value for postmaster: \"a%b@example.net\"" },
	{ "postmaster = a!b@example.net\n", "1: bad value for postmaster: \"a!b@example.net\"" },
	{ "postmaster = \"a b\"@example.net\n", "1: bad value for postmaster: " },
	{ "postmaster = admin@bad..host\n", "1: bad value for postmaster: \"admin@bad..host\"" },
	{ "postmaster = .admin@example.net\n", "1: bad value for postmaster: " },
	{ "postmaster = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.net\n",
	  "1: bad value for postmaster: " },
	{ "allow_untrusted_routing = sometimes\n", "1: bad value for allow_untrusted_routing: \"sometimes\" (want yes or no)" },
	{ "listen_tls = 127.0.0.1\n", "1: bad value for listen_tls: \"127.0.0.1\" (want host:port" },
	{ "listen_trusted = localhost:587\n", "1: bad value for listen_trusted: \"localhost:587\"" },
	{ "odmr_listen = 127.0.0.1\n", "1: bad value for odmr_listen: \"127.0.0.1\" (want host:port" },
	{ "odmr_listen_trusted = host:366\n", "1: bad value for odmr_listen_trusted: \"host:366\"" },
	{ "smtp_atrn = maybe\n", "1: bad value for smtp_atrn: \"maybe\" (want yes or no)" },
	{ "tls_handshake_timeout = 10ms\n", "1: bad value for tls_handshake_timeout: \"10ms\" (want a duration from 100ms to 3600s" },
	{ "tls_handshake_timeout = 2h\n", "1: bad value for tls_handshake_timeout: \"2h\"" },
	{ "tls_ciphers = HIGH MEDIUM\n", "1: bad value for tls_ciphers: \"HIGH MEDIUM\" (an OpenSSL cipher list" },
};

Test(config, bad_lines_name_file_and_line)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct config c;
		char err[CONFIG_ERR_MAX], want[CONFIG_ERR_MAX];
		char *path = write_conf(bad_cases[i].text);

		config_defaults(&c);
		cr_expect_eq(config_load(&c, path, err, sizeof(err)), -1,
			     "case %zu accepted: %s", i, bad_cases[i].text);
		snprintf(want, sizeof(want), "%s:%s", path, bad_cases[i].want_err);
		cr_expect(strncmp(err, want, strlen(want)) == 0,
			  "case %zu: got [%s], want prefix [%s]", i, err, want);
		config_free(&c);
		unlink(path);
	}
}

Test(config, defaults_and_good_values)
{
	struct config c;
	char err[CONFIG_ERR_MAX];
	char *path = write_conf(
		"# all keys\n"
		"listen = 127.0.0.1:2525, [::1]:2526 ,:2527\n"
		"threads = 3\n"
		"hostname = relay.example.net\n"
		"spool_dir = /tmp/x\n"
		"relay_domains = Demo.Test., other.test\tthird.test\n"
		"sync = always\n"
		"segment_size = 2M\n"
		"smtp_command_max = 1k\n"
		"smtp_line_max = 2000\n"
		"smtp_max_recipients = 5\n"
		"message_size_limit = 64KiB\n"
		"data_memory_limit = 32M\n"
		"smtp_max_errors = 3\n"
		"idle_timeout = 1500ms\n"
		"session_timeout = 2h\n"
		"close_timeout = 2s\n"
		"send_timeout = 1m\n"
		"bare_lf = normalize\n"
		"max_connections = 100\n"
		"client_connection_limit = 7\n"
		"client_connection_limit_loopback = yes\n"
		"shutdown_timeout = 0\n"
		"log_level = debug\n"
		"postmaster = Hostmaster@noc.example.net\n"
		"allow_untrusted_routing = yes\n"
		"log_syslog = no   # trailing comment\n");

	config_defaults(&c);
	cr_assert_eq(c.sync, CONFIG_SYNC_BATCH);
	cr_assert_eq(c.smtp_command_max, 512);
	cr_assert_eq(c.smtp_line_max, 1000);
	cr_assert_eq(c.message_size_limit, 50u << 20);
	cr_assert_eq(c.data_memory_limit, 256u << 20);
	cr_assert_str_empty(c.message_size_limit_at);
	cr_assert_eq(c.idle_timeout_ms, 300000);
	cr_assert_str_eq(c.postmaster, "");
	cr_assert_eq(c.allow_untrusted_routing, 0);
	cr_assert_eq(c.client_connection_limit, CONFIG_CLIENT_CONNECTION_LIMIT_DEFAULT);
	cr_assert_eq(c.client_connection_limit_loopback, 0);
	cr_assert_eq(c.close_timeout_ms, 30000);
	cr_assert_eq(c.send_timeout_ms, 180000);
	cr_assert_eq(config_load(&c, path, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(c.postmaster, "Hostmaster@noc.example.net");
	cr_expect_eq(c.allow_untrusted_routing, 1);
	cr_expect_eq(c.nlisten, 3);
	cr_expect_str_eq(c.listen[1].text, "[::1]:2526");
	cr_expect_eq(c.listen[1].addr.ss_family, AF_INET6);
	cr_expect_eq(c.threads, 3);
	cr_expect_str_eq(c.hostname, "relay.example.net");
	cr_expect_str_eq(c.spool_dir, "/tmp/x");
	cr_assert_eq(c.nrelay_domains, 3);
	cr_expect_str_eq(c.relay_domains[0], "demo.test");
	cr_expect_str_eq(c.relay_domains[2], "third.test");
	cr_expect_eq(c.sync, CONFIG_SYNC_ALWAYS);
	cr_expect_eq(c.segment_size, 2u << 20);
	cr_expect_eq(c.smtp_command_max, 1024);
	cr_expect_eq(c.smtp_max_recipients, 5);
	cr_expect_eq(c.message_size_limit, 64u << 10);
	cr_expect_eq(c.data_memory_limit, 32u << 20);
	/* Where the cross-checked keys were set (proto/smtpd.h says why). */
	{
		char want[CONFIG_WHERE_MAX];

		snprintf(want, sizeof(want), "%s:12", path);
		cr_expect_str_eq(c.message_size_limit_at, want);
		snprintf(want, sizeof(want), "%s:8", path);
		cr_expect_str_eq(c.segment_size_at, want);
		snprintf(want, sizeof(want), "%s:13", path);
		cr_expect_str_eq(c.data_memory_limit_at, want);
	}
	cr_expect_eq(c.idle_timeout_ms, 1500);
	cr_expect_eq(c.session_timeout_ms, 2u * 3600 * 1000);
	cr_expect_eq(c.close_timeout_ms, 2000);
	cr_expect_eq(c.send_timeout_ms, 60000);
	cr_expect_eq(c.bare_lf_normalize, 1);
	cr_expect_eq(c.max_connections, 100);
	cr_expect_eq(c.client_connection_limit, 7);
	cr_expect_eq(c.client_connection_limit_loopback, 1);
	cr_expect_eq(c.shutdown_timeout_ms, 0);
	cr_expect_eq(c.log_level, LOGL_DEBUG);
	cr_expect_eq(config_finish(&c, err, sizeof(err)), 0);
	config_free(&c);
	unlink(path);
}

Test(config, missing_file_and_overrides)
{
	struct config c;
	char err[CONFIG_ERR_MAX];

	config_defaults(&c);
	cr_expect_eq(config_load(&c, "/nonexistent/etrnd.conf", err, sizeof(err)), -1);
	cr_expect_str_eq(err, "/nonexistent/etrnd.conf: No such file or directory");
	cr_expect_eq(config_set(&c, "sync", "none", "-o", err, sizeof(err)), 0);
	cr_expect_eq(c.sync, CONFIG_SYNC_NONE);
	cr_expect_eq(config_set(&c, "nosuch", "1", "-o", err, sizeof(err)), -1);
	cr_expect_str_eq(err, "-o: unknown key \"nosuch\"");
	/* No relay domain at all would refuse every message: an error. */
	cr_expect_eq(config_finish(&c, err, sizeof(err)), -1);
	config_free(&c);
}

/* Run config_load on text with stderr (where log_warn writes) captured into
 * got; returns config_load's result. */
static int load_capturing_stderr(struct config *c, const char *text, char **path,
				 char *got, size_t gotlen)
{
	char err[CONFIG_ERR_MAX], cap[64];
	int saved = dup(2), fd, rc;
	ssize_t n;

	*path = write_conf(text);
	snprintf(cap, sizeof(cap), "/tmp/etrnd-test-config-%d.err", (int)getpid());
	fd = open(cap, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert(fd >= 0 && saved >= 0);
	dup2(fd, 2);
	rc = config_load(c, *path, err, sizeof(err));
	dup2(saved, 2);
	close(saved);
	n = pread(fd, got, gotlen - 1, 0);
	got[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(cap);
	return rc;
}

/* A key given twice: a warning naming file:line and the earlier line, as
 * Postfix's "overriding earlier entry"; the last value wins. A key given
 * once, or different keys, warns nothing. */
struct dup_case {
	const char *text;
	const char *want_warn; /* after "PATH:", NULL = no warning at all */
	int want_sync;
};

Test(config, duplicate_key_warns_last_wins)
{
	static const struct dup_case cases[] = {
		{ "sync = always\nthreads = 2\nsync = none\n",
		  "3: overriding earlier entry for sync on line 1: the last value wins", CONFIG_SYNC_NONE },
		{ "# x\nsync = none\n\n  sync=always # again\n",
		  "4: overriding earlier entry for sync on line 2: the last value wins", CONFIG_SYNC_ALWAYS },
		{ "sync = none\nthreads = 2\n", NULL, CONFIG_SYNC_NONE },
		{ "sync = none\nsync = none\nsync = batch\n",
		  "3: overriding earlier entry for sync on line 2: the last value wins", CONFIG_SYNC_BATCH },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;
		char got[2048], want[512], *path;

		config_defaults(&c);
		cr_assert_eq(load_capturing_stderr(&c, cases[i].text, &path, got, sizeof(got)), 0);
		if (cases[i].want_warn) {
			snprintf(want, sizeof(want), "warning: %s:%s\n", path, cases[i].want_warn);
			cr_expect(strstr(got, want) != NULL, "case %zu: got [%s], want [%s]", i, got, want);
		} else {
			cr_expect_str_eq(got, "", "case %zu", i);
		}
		cr_expect_eq((int)c.sync, cases[i].want_sync, "case %zu", i);
		config_free(&c);
		unlink(path);
	}
}

Test(config, overlong_line)
{
	struct config c;
	char err[CONFIG_ERR_MAX], want[128];
	size_t n = 9000;
	char *text = malloc(n + 16);
	char *path;

	memset(text, 'a', n);
	memcpy(text + n, " = 1\n", 6);
	path = write_conf(text);
	config_defaults(&c);
	cr_expect_eq(config_load(&c, path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:1: line longer than", path);
	cr_expect(strncmp(err, want, strlen(want)) == 0, "got %s", err);
	config_free(&c);
	unlink(path);
	free(text);
}

/* ---- redis, redis_prefix, redis_resync ----------------------------------- */

struct redis_case {
	const char *v;
	int want_ok;
	int kind;
	const char *path, *host;
	unsigned port;
	const char *user, *pass;
	unsigned db;
	const char *display;
};

Test(config, redis_addresses)
{
	static const struct redis_case cases[] = {
		{ "unix:/run/redis/redis.sock", 1, CONFIG_REDIS_UNIX, "/run/redis/redis.sock", "", 0, "", "", 0, "unix:/run/redis/redis.sock" },
		{ "unix:var/redis.sock", 1, CONFIG_REDIS_UNIX, "var/redis.sock", "", 0, "", "", 0, NULL },
		{ "unix:///tmp/r.sock", 1, CONFIG_REDIS_UNIX, "/tmp/r.sock", "", 0, "", "", 0, NULL },
		{ "127.0.0.1:6379", 1, CONFIG_REDIS_TCP, "", "127.0.0.1", 6379, "", "", 0, NULL },
		{ "redis.example.net:6380", 1, CONFIG_REDIS_TCP, "", "redis.example.net", 6380, "", "", 0, NULL },
		{ "[::1]:6379", 1, CONFIG_REDIS_TCP, "", "::1", 6379, "", "", 0, NULL },
		{ "redis://r.example.net", 1, CONFIG_REDIS_TCP, "", "r.example.net", 6379, "", "", 0, NULL },
		{ "redis://etrnd:s%40cret@r.example.net:6390/2", 1, CONFIG_REDIS_TCP, "", "r.example.net", 6390, "etrnd", "s@cret", 2, "redis://etrnd:***@r.example.net:6390/2" },
		{ "redis://:pw@[::1]/0", 1, CONFIG_REDIS_TCP, "", "::1", 6379, "", "pw", 0, "redis://***@[::1]/0" },
		{ "redis://pw@host.test", 1, CONFIG_REDIS_TCP, "", "host.test", 6379, "", "pw", 0, NULL },
		{ "unix:", 0, 0, 0, 0, 0, 0, 0, 0, 0 },
		{ "127.0.0.1", 0, 0, 0, 0, 0, 0, 0, 0, 0 },
		{ "127.0.0.1:0", 0, 0, 0, 0, 0, 0, 0, 0, 0 },
		{ "127.0.0.1:65536", 0, 0, 0, 0, 0, 0, 0, 0, 0 },
		{ "host:port", 0, 0, 0, 0, 0, 0, 0, 0, 0 },
		{ "bad..host:6379", 0, 0, 0, 0, 0, 0, 0, 0, 0 },
		{ "[::1:6379", 0, 0, 0, 0, 0, 0, 0, 0, 0 },
		{ "redis://", 0, 0, 0, 0, 0, 0, 0, 0, 0 },
		{ "redis://host/x", 0, 0, 0, 0, 0, 0, 0, 0, 0 },
		{ "redis://u:%zz@host", 0, 0, 0, 0, 0, 0, 0, 0, 0 },
		{ "redis://u:%4@host", 0, 0, 0, 0, 0, 0, 0, 0, 0 },
		{ "redis://u:%00@host", 0, 0, 0, 0, 0, 0, 0, 0, 0 },
		{ "http://host:80", 0, 0, 0, 0, 0, 0, 0, 0, 0 },
		{ "unix:/a b", 0, 0, 0, 0, 0, 0, 0, 0, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct redis_case *k = &cases[i];
		struct config_redis r;
		char why[256] = "";
		int rc = config_redis_parse(&r, k->v, why, sizeof(why));

		cr_expect_eq(rc == 0, k->want_ok, "[%s]: rc %d (%s)", k->v, rc, why);
		if (rc || !k->want_ok) {
			if (!k->want_ok)
				cr_expect(why[0] != '\0', "[%s]: no reason given", k->v);
			continue;
		}
		cr_expect_eq((int)r.kind, k->kind, "[%s] kind", k->v);
		cr_expect_str_eq(r.path, k->path, "[%s] path", k->v);
		cr_expect_str_eq(r.host, k->host, "[%s] host", k->v);
		if (k->kind == CONFIG_REDIS_TCP)
			cr_expect_eq(r.port, k->port, "[%s] port", k->v);
		cr_expect_str_eq(r.user, k->user, "[%s] user", k->v);
		cr_expect_str_eq(r.pass, k->pass, "[%s] pass", k->v);
		cr_expect_eq(r.db, k->db, "[%s] db", k->v);
		if (k->display)
			cr_expect_str_eq(r.display, k->display, "[%s] display", k->v);
		cr_expect(strstr(r.display, "cret") == NULL, "password never in display");
	}
}

Test(config, redis_keys)
{
	struct config c;
	char err[CONFIG_ERR_MAX], want[CONFIG_ERR_MAX];
	char *path;

	config_defaults(&c);
	cr_expect_eq(c.redis.kind, CONFIG_REDIS_NONE);
	cr_expect_str_eq(c.redis_prefix, "etrnd:");
	cr_expect_eq(c.redis_resync_ms, 60000);
	/* With redis set, relay_domains may be empty. */
	path = write_conf("redis = unix:/tmp/x.sock\nredis_prefix = isp1:\nredis_resync = 5m\n");
	cr_assert_eq(config_load(&c, path, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.redis.kind, CONFIG_REDIS_UNIX);
	cr_expect_str_eq(c.redis_prefix, "isp1:");
	cr_expect_eq(c.redis_resync_ms, 300000);
	cr_expect_eq(config_finish(&c, err, sizeof(err)), 0, "%s", err);
	config_free(&c);
	unlink(path);

	static const struct bad_case bad[] = {
		{ "redis = localhost\n", "1: bad value for redis: \"localhost\": want unix:/path/to/redis.sock, host:port or redis://" },
		{ "redis = redis://h/x\n", "1: bad value for redis: \"redis://h/x\": bad database number" },
		{ "redis_prefix = a b\n", "1: bad value for redis_prefix: \"a b\"" },
		{ "redis_prefix = etrnd*\n", "1: bad value for redis_prefix: \"etrnd*\" (no spaces" },
		{ "redis_resync = 10ms\n", "1: bad value for redis_resync: \"10ms\" (want a duration from 1000ms" },
		{ "redis_resync = never\n", "1: bad value for redis_resync: \"never\"" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		path = write_conf(bad[i].text);
		config_defaults(&c);
		cr_expect_eq(config_load(&c, path, err, sizeof(err)), -1, "accepted: %s", bad[i].text);
		snprintf(want, sizeof(want), "%s:%s", path, bad[i].want_err);
		cr_expect(strncmp(err, want, strlen(want)) == 0, "got [%s], want prefix [%s]", err, want);
		config_free(&c);
		unlink(path);
	}
	/* Neither redis nor relay_domains: nothing would accept mail. */
	config_defaults(&c);
	cr_expect_eq(config_finish(&c, err, sizeof(err)), -1);
	cr_expect(strstr(err, "redis is not set") != NULL, "%s", err);
	config_free(&c);
}

Test(config, compaction_keys)
{
	struct config c;
	char err[CONFIG_ERR_MAX];

	config_defaults(&c);
	cr_expect_eq(c.compact_threshold, 25);
	cr_expect_eq(c.compact_min_age_ms, 3600u * 1000);
	cr_expect_eq(config_set(&c, "compact_threshold", "40", "-o", err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.compact_threshold, 40);
	cr_expect_eq(config_set(&c, "compact_threshold", "100", "-o", err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(config_set(&c, "compact_threshold", "0", "-o", err, sizeof(err)), -1);
	cr_expect_eq(config_set(&c, "compact_threshold", "101", "-o", err, sizeof(err)), -1);
	cr_expect_eq(config_set(&c, "compact_threshold", "25%", "-o", err, sizeof(err)), -1);
	cr_expect_eq(config_set(&c, "compact_min_age", "0", "-o", err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.compact_min_age_ms, 0);
	cr_expect_eq(config_set(&c, "compact_min_age", "2d", "-o", err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.compact_min_age_ms, 2u * 86400 * 1000);
	cr_expect_eq(config_set(&c, "compact_min_age", "50d", "-o", err, sizeof(err)), -1);
	config_free(&c);
}

Test(config, delay_warning_key)
{
	static const struct {
		const char *v;
		int want_ok;
		unsigned want_ms;
	} cases[] = {
		{ "0", 1, 0 },
		{ "0s", 1, 0 },
		{ "4h", 1, 4u * 3600 * 1000 },
		{ "90m", 1, 90u * 60 * 1000 },
		{ "49d", 1, 49u * 86400 * 1000 },
		{ "50d", 0, 0 },
		{ "4 hours", 0, 0 },
		{ "-1h", 0, 0 },
		{ "off", 0, 0 },
	};
	struct config c;
	char err[CONFIG_ERR_MAX];

	config_defaults(&c);
	cr_expect_eq(c.delay_warning_ms, 0, "off by default");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		c.delay_warning_ms = 12345;
		int rc = config_set(&c, "delay_warning", cases[i].v, "-o", err, sizeof(err));
		cr_expect_eq(rc == 0, cases[i].want_ok, "[%s]: rc %d (%s)", cases[i].v, rc, err);
		if (cases[i].want_ok)
			cr_expect_eq(c.delay_warning_ms, cases[i].want_ms, "[%s]", cases[i].v);
		else
			cr_expect(strncmp(err, "-o: bad value for delay_warning: ", 33) == 0 &&
				  c.delay_warning_ms == 12345, "[%s]: %s", cases[i].v, err);
	}
	config_free(&c);
}

/* Sizes and durations come from core/units.h: the spellings Redis rows and
 * etrnctl take work here too (1w, T), case rules hold, and a value that
 * would wrap is refused with the key's message (tests/unit/test_units.c
 * holds the full table across the three layers). */
Test(config, units_spellings)
{
	static const struct {
		const char *key, *v;
		int want_ok;
		unsigned long long want;
	} cases[] = {
		{ "max_hold", "1w", 1, 7ull * 86400 * 1000 },
		{ "max_hold", "7w", 1, 49ull * 86400 * 1000 },
		{ "max_hold", "8w", 0, 0 },
		{ "max_hold", "1500ms", 1, 1500 },
		{ "max_hold", "999ms", 0, 0 },
		{ "max_hold", "1W", 0, 0 },
		{ "max_hold", "18446744073710s", 0, 0 },
		{ "max_hold", "18446744073709551616", 0, 0 },
		{ "idle_timeout", "1H", 0, 0 },
		{ "message_size_limit", "1g", 1, 1ull << 30 },
		{ "message_size_limit", "1024kB", 1, 1ull << 20 },
		{ "message_size_limit", "1024kb", 0, 0 },
		{ "message_size_limit", "1T", 0, 0 },         /* grammar fine, range not */
		{ "message_size_limit", "16777216G", 0, 0 },  /* 2^64 would wrap to 0 */
		{ "segment_size", " 2M", 0, 0 },              /* config_load trims, not config_set */
	};
	struct config c;
	char err[CONFIG_ERR_MAX];

	config_defaults(&c);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = config_set(&c, cases[i].key, cases[i].v, "-o", err, sizeof(err));
		unsigned long long got = !strcmp(cases[i].key, "max_hold") ? c.max_hold_ms :
			!strcmp(cases[i].key, "idle_timeout") ? c.idle_timeout_ms : c.message_size_limit;

		cr_expect_eq(rc == 0, cases[i].want_ok, "%s [%s]: rc %d (%s)", cases[i].key,
			     cases[i].v, rc, err);
		if (cases[i].want_ok)
			cr_expect_eq(got, cases[i].want, "%s [%s]", cases[i].key, cases[i].v);
		else
			cr_expect(strstr(err, "bad value for ") != NULL, "%s", err);
	}
	config_free(&c);
}

/* relay_domains are lower-cased in ASCII only (core/ascii.h), whatever the
 * process locale. */
Test(config, relay_domains_ascii_lower)
{
	struct config c;
	char err[CONFIG_ERR_MAX];

	config_defaults(&c);
	cr_assert_eq(config_set(&c, "relay_domains", "MiXeD.Example.NET, A-B.TEST", "-o", err,
				sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.nrelay_domains, 2);
	cr_expect_str_eq(c.relay_domains[0], "mixed.example.net");
	cr_expect_str_eq(c.relay_domains[1], "a-b.test");
	config_free(&c);
}

/* dns_servers and dns_timeout (the drain's resolver): numeric servers only,
 * comma-joined for c-ares; a bad value keeps the old one and names file:line;
 * config_resolver_conf() hands both over ("" = /etc/resolv.conf). */
Test(config, dns_keys)
{
	static const struct {
		const char *key, *v;
		int want_ok;
		const char *want_servers;  /* after a good dns_servers */
		unsigned want_ms;          /* after a good dns_timeout */
	} cases[] = {
		{ "dns_servers", "127.0.0.1", 1, "127.0.0.1", 0 },
		{ "dns_servers", "127.0.0.1:5353, [::1]:53,192.0.2.1", 1,
		  "127.0.0.1:5353,[::1]:53,192.0.2.1", 0 },
		{ "dns_servers", "::1", 1, "::1", 0 },
		{ "dns_servers", "", 1, "", 0 },
		{ "dns_servers", "ns1.example.net", 0, NULL, 0 },
		{ "dns_servers", "127.0.0.1:0", 0, NULL, 0 },
		{ "dns_servers", "127.0.0.1:65536", 0, NULL, 0 },
		{ "dns_servers", "[::1", 0, NULL, 0 },
		{ "dns_servers", "127.0.0.1,300.1.1.1", 0, NULL, 0 },
		{ "dns_timeout", "500ms", 1, NULL, 500 },
		{ "dns_timeout", "30s", 1, NULL, 30000 },
		{ "dns_timeout", "10m", 1, NULL, 600000 },
		{ "dns_timeout", "50ms", 0, NULL, 0 },
		{ "dns_timeout", "11m", 0, NULL, 0 },
		{ "dns_timeout", "soon", 0, NULL, 0 },
		{ "dns_timeout", "-1s", 0, NULL, 0 },
	};
	struct config c;
	struct resolver_conf rc;
	char err[CONFIG_ERR_MAX], want[64];

	config_defaults(&c);
	cr_expect_str_eq(c.dns_servers, "", "resolv.conf by default");
	cr_expect_eq(c.dns_timeout_ms, RESOLVER_TIMEOUT_MS);
	config_resolver_conf(&c, &rc);
	cr_expect_null(rc.servers);
	cr_expect_eq(rc.timeout_ms, RESOLVER_TIMEOUT_MS);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r;

		snprintf(c.dns_servers, sizeof(c.dns_servers), "10.0.0.1");
		c.dns_timeout_ms = 12345;
		r = config_set(&c, cases[i].key, cases[i].v, "-o", err, sizeof(err));
		cr_expect_eq(r == 0, cases[i].want_ok, "%s [%s]: rc %d (%s)", cases[i].key,
			     cases[i].v, r, err);
		if (!cases[i].want_ok) {
			snprintf(want, sizeof(want), "-o: bad value for %s: ", cases[i].key);
			cr_expect(strncmp(err, want, strlen(want)) == 0, "[%s]: %s", cases[i].v, err);
			cr_expect_str_eq(c.dns_servers, "10.0.0.1", "[%s]: changed", cases[i].v);
			cr_expect_eq(c.dns_timeout_ms, 12345, "[%s]: changed", cases[i].v);
		} else if (cases[i].want_servers) {
			cr_expect_str_eq(c.dns_servers, cases[i].want_servers);
		} else {
			cr_expect_eq(c.dns_timeout_ms, cases[i].want_ms, "[%s]", cases[i].v);
		}
	}
	config_free(&c);

	/* In a file: file:line, and the values reach the resolver's settings. */
	{
		const char *path = write_conf("# dns\ndns_timeout = 2s\ndns_servers = 127.0.0.1:5300\n"
					      "dns_servers = resolver.example\n");

		config_defaults(&c);
		cr_expect_eq(config_load(&c, path, err, sizeof(err)), -1);
		snprintf(want, sizeof(want), "%s:4: bad value for dns_servers: ", path);
		cr_expect(strncmp(err, want, strlen(want)) == 0, "%s", err);
		config_resolver_conf(&c, &rc);
		cr_expect_str_eq(rc.servers, "127.0.0.1:5300");
		cr_expect_eq(rc.timeout_ms, 2000);
		config_free(&c);
		unlink(path);
	}
}

/* The drain's destination keys: defaults (Postfix's 20, 3 reconnects, RFC
 * 5321 4.5.3.2.1's 5 minutes) and good values. */
Test(config, drain_destination_keys)
{
	struct config c;
	char err[CONFIG_ERR_MAX];
	char *path = write_conf("drain_destination_concurrency = 7\n"
				"drain_reconnect_attempts = 0\n"
				"drain_greeting_timeout = 2s\n"
				"drain_done_window = 1\n");

	config_defaults(&c);
	cr_expect_eq(c.drain_destination_concurrency, 20);
	cr_expect_eq(c.drain_reconnect_attempts, 3);
	cr_expect_eq(c.drain_greeting_timeout_ms, 300000);
	cr_expect_eq(c.drain_done_window, 64);
	cr_assert_eq(config_load(&c, path, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.drain_destination_concurrency, 7);
	cr_expect_eq(c.drain_reconnect_attempts, 0);
	cr_expect_eq(c.drain_greeting_timeout_ms, 2000);
	cr_expect_eq(c.drain_done_window, 1);
	config_free(&c);
	unlink(path);
}

/* The AUTH keys: defaults (2 verifiers, 10 failures a minute) and the ends
 * of their ranges. */
Test(config, auth_keys)
{
	static const struct {
		const char *text;
		unsigned want_verifiers, want_limit;
	} cases[] = {
		{ "", CONFIG_AUTH_VERIFIERS_DEFAULT, CONFIG_AUTH_FAILURE_LIMIT_DEFAULT },
		{ "auth_verifiers = 1\nauth_failure_limit = 1\n", 1, 1 },
		{ "auth_verifiers = 64\nauth_failure_limit = 100000\n", 64, 100000 },
		{ "auth_verifiers = 8\n", 8, CONFIG_AUTH_FAILURE_LIMIT_DEFAULT },
	};

	cr_expect_eq(CONFIG_AUTH_VERIFIERS_DEFAULT, 2);
	cr_expect_eq(CONFIG_AUTH_FAILURE_LIMIT_DEFAULT, 10);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;
		char err[CONFIG_ERR_MAX];
		char *path = write_conf(cases[i].text);

		config_defaults(&c);
		cr_assert_eq(config_load(&c, path, err, sizeof(err)), 0, "case %zu: %s", i, err);
		cr_expect_eq(c.auth_verifiers, cases[i].want_verifiers, "case %zu", i);
		cr_expect_eq(c.auth_failure_limit, cases[i].want_limit, "case %zu", i);
		config_free(&c);
		unlink(path);
	}
}

/* listen, listen_tls and listen_trusted each replace only their own kind;
 * the TLS keys are checked against each other and the files, errors naming
 * the line of the key at fault. */
Test(config, tls_keys)
{
	struct config c;
	char err[CONFIG_ERR_MAX + PATH_MAX], want[CONFIG_ERR_MAX + PATH_MAX];
	char *path;

	config_defaults(&c);
	cr_expect_eq(c.tls_handshake_timeout_ms, CONFIG_TLS_HANDSHAKE_TIMEOUT_DEFAULT_MS);
	cr_expect_str_empty(c.tls_cert_file);
	cr_expect_str_empty(c.tls_ciphers);
	cr_expect_eq(c.nlisten, 1);
	cr_expect_eq(c.listen[0].flags, 0);
	cr_expect_eq(config_check_tls(&c, err, sizeof(err)), 0, "%s", err);
	path = write_conf("listen = 127.0.0.1:1\n"
			  "listen_tls = 127.0.0.1:2, [::1]:3\n"
			  "listen_trusted = 127.0.0.1:4\n"
			  "listen = 127.0.0.1:5\n"
			  "tls_handshake_timeout = 20s\n"
			  "tls_ciphers = ECDHE-RSA-AES128-GCM-SHA256:!aNULL\n");
	cr_assert_eq(config_load(&c, path, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.nlisten, 4);
	cr_expect_str_eq(c.listen[0].text, "127.0.0.1:5");
	cr_expect_eq(c.listen[0].flags, 0);
	cr_expect_str_eq(c.listen[1].text, "127.0.0.1:2");
	cr_expect_eq(c.listen[1].flags, CONFIG_LISTEN_TLS);
	cr_expect_str_eq(c.listen[2].text, "[::1]:3");
	cr_expect_eq(c.listen[2].flags, CONFIG_LISTEN_TLS);
	cr_expect_str_eq(c.listen[3].text, "127.0.0.1:4");
	cr_expect_eq(c.listen[3].flags, CONFIG_LISTEN_TRUSTED);
	cr_expect_eq(c.tls_handshake_timeout_ms, 20000);
	cr_expect_str_eq(c.tls_ciphers, "ECDHE-RSA-AES128-GCM-SHA256:!aNULL");
	/* listen_tls with no certificate: named at its line. */
	snprintf(want, sizeof(want), "%s:2: listen_tls needs tls_cert_file and tls_key_file", path);
	cr_expect_eq(config_check_tls(&c, err, sizeof(err)), -1);
	cr_expect_str_eq(err, want);
	cr_expect_eq(config_set(&c, "listen_tls", "none", "-o", err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.nlisten, 2);
	cr_expect_eq(config_set(&c, "listen_trusted", "", "-o", err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.nlisten, 1);
	cr_expect_eq(config_set(&c, "listen", "none", "-o", err, sizeof(err)), -1);
	cr_expect_eq(config_check_tls(&c, err, sizeof(err)), 0, "%s", err);
	config_free(&c);
	unlink(path);

	static const struct {
		const char *text;
		const char *want;     /* after "PATH:"; NULL = passes */
	} checks[] = {
		{ "tls_cert_file = @\ntls_key_file = @\n", NULL },
		{ "tls_cert_file = @\ntls_key_file = @\nlisten_tls = 127.0.0.1:4650\n", NULL },
		{ "tls_cert_file = @\n", "1: tls_cert_file needs tls_key_file" },
		{ "threads = 1\ntls_key_file = @\n", "2: tls_key_file needs tls_cert_file" },
		{ "tls_cert_file = /nonexistent/cert.pem\ntls_key_file = @\n",
		  "1: tls_cert_file /nonexistent/cert.pem: No such file or directory" },
		{ "tls_cert_file = @\n\ntls_key_file = /nonexistent/key.pem\n",
		  "3: tls_key_file /nonexistent/key.pem: No such file or directory" },
		{ "tls_ca_file = /nonexistent/ca.pem\n", "1: tls_ca_file /nonexistent/ca.pem: No such file or directory" },
		{ "tls_ca_file = none\n", NULL },
	};
	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
		char text[512], *at;

		/* "@" stands for a readable file: the config file itself. */
		snprintf(text, sizeof(text), "%s", checks[i].text);
		path = write_conf("");
		while ((at = strchr(text, '@')) != NULL) {
			char rest[512];

			snprintf(rest, sizeof(rest), "%s", at + 1);
			snprintf(at, sizeof(text) - (size_t)(at - text), "%s%s", path, rest);
		}
		path = write_conf(text);
		config_defaults(&c);
		cr_assert_eq(config_load(&c, path, err, sizeof(err)), 0, "%s", err);
		if (!checks[i].want) {
			cr_expect_eq(config_check_tls(&c, err, sizeof(err)), 0, "case %zu: %s", i, err);
		} else {
			snprintf(want, sizeof(want), "%s:%s", path, checks[i].want);
			cr_expect_eq(config_check_tls(&c, err, sizeof(err)), -1, "case %zu passed", i);
			cr_expect_str_eq(err, want, "case %zu", i);
		}
		config_free(&c);
		unlink(path);
	}
}

/* odmr_listen and odmr_listen_trusted (RFC 2645) are kinds of their own:
 * each replaces only its addresses, "none" empties it, and the listeners
 * keep the order plain, TLS, trusted, ODMR, trusted ODMR. smtp_atrn is a
 * yes/no, off by default. */
Test(config, odmr_listeners)
{
	struct config c;
	char err[CONFIG_ERR_MAX + PATH_MAX];
	char *path;

	config_defaults(&c);
	cr_expect_eq(c.smtp_atrn, 0);
	path = write_conf("odmr_listen = 127.0.0.1:3366, [::1]:3367\n"
			  "odmr_listen_trusted = 127.0.0.1:3368\n"
			  "listen_trusted = 127.0.0.1:4\n"
			  "listen = 127.0.0.1:5\n"
			  "odmr_listen = 127.0.0.1:366\n"
			  "smtp_atrn = yes\n");
	cr_assert_eq(config_load(&c, path, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.nlisten, 4);
	cr_expect_str_eq(c.listen[0].text, "127.0.0.1:5");
	cr_expect_eq(c.listen[0].flags, 0);
	cr_expect_eq(c.listen[1].flags, CONFIG_LISTEN_TRUSTED);
	cr_expect_str_eq(c.listen[2].text, "127.0.0.1:366");
	cr_expect_eq(c.listen[2].flags, CONFIG_LISTEN_ODMR);
	cr_expect_str_eq(c.listen[3].text, "127.0.0.1:3368");
	cr_expect_eq(c.listen[3].flags, CONFIG_LISTEN_ODMR | CONFIG_LISTEN_TRUSTED);
	cr_expect_eq(c.smtp_atrn, 1);
	cr_expect_eq(config_check_tls(&c, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(config_set(&c, "odmr_listen_trusted", "none", "-o", err, sizeof(err)), 0,
		     "%s", err);
	cr_expect_eq(c.nlisten, 3);
	cr_expect_eq(config_set(&c, "odmr_listen", "", "-o", err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.nlisten, 2);
	cr_expect_eq(c.listen[1].flags, CONFIG_LISTEN_TRUSTED);
	cr_expect_eq(config_set(&c, "smtp_atrn", "no", "-o", err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.smtp_atrn, 0);
	config_free(&c);
	unlink(path);
}

Test(config, listeners_sixteen_in_all)
{
	struct config c;
	char err[CONFIG_ERR_MAX], v[1024] = "";
	size_t o = 0;

	config_defaults(&c);
	for (int i = 0; i < CONFIG_LISTEN_MAX; i++)
		o += (size_t)snprintf(v + o, sizeof(v) - o, "%s127.0.0.1:%d", i ? "," : "", 4000 + i);
	cr_expect_eq(config_set(&c, "listen_tls", v, "-o", err, sizeof(err)), -1);
	cr_expect(strstr(err, "more than 16 addresses in listen, listen_tls, listen_trusted and odmr_listen* together") != NULL,
		  "%s", err);
	cr_expect_eq(c.nlisten, 1);
	config_free(&c);
}

/* ---- outbound delivery (issue 13) ---------------------------------------- */

/* relayhost, mynetworks, the back-offs, test_clock: each value alone, good
 * ones read back, bad ones refused with the key named and the old value
 * kept where it was a plain field. */
struct outbound_case {
	const char *key, *v;
	int want_ok;
	const char *want_relayhost;   /* relayhost: what it holds after */
	unsigned want_n;              /* mynetworks: networks; durations: ms; bools: 0/1 */
};

static unsigned outbound_value(const struct config *c, const char *key)
{
	if (!strcmp(key, "mynetworks"))
		return c->nmynetworks;
	if (!strcmp(key, "minimal_backoff"))
		return c->minimal_backoff_ms;
	if (!strcmp(key, "maximal_backoff"))
		return c->maximal_backoff_ms;
	if (!strcmp(key, "queue_restart_spread"))
		return c->queue_restart_spread_ms;
	if (!strcmp(key, "test_clock"))
		return (unsigned)c->test_clock;
	return 0;
}

Test(config, outbound_keys)
{
	static const struct outbound_case cases[] = {
		{ "relayhost", "[smarthost.example.net]:2525", 1, "[smarthost.example.net]:2525", 0 },
		{ "relayhost", "smarthost.example.net", 1, "smarthost.example.net", 0 },
		{ "relayhost", "smarthost.example.net:587", 1, "smarthost.example.net:587", 0 },
		{ "relayhost", "[127.0.0.1]:2526", 1, "[127.0.0.1]:2526", 0 },
		{ "relayhost", "192.0.2.1", 1, "192.0.2.1", 0 },
		{ "relayhost", "[2001:db8::1]:25", 1, "[2001:db8::1]:25", 0 },
		{ "relayhost", "localhost", 1, "localhost", 0 },
		{ "relayhost", "none", 1, "", 0 },
		{ "relayhost", "", 1, "", 0 },
		{ "relayhost", "smarthost.example.net:0", 0, NULL, 0 },
		{ "relayhost", "smarthost.example.net:65536", 0, NULL, 0 },
		{ "relayhost", "smarthost.example.net:", 0, NULL, 0 },
		{ "relayhost", "[smarthost.example.net", 0, NULL, 0 },
		{ "relayhost", "[smarthost.example.net]x", 0, NULL, 0 },
		{ "relayhost", "bad..host", 0, NULL, 0 },
		{ "relayhost", "smart host", 0, NULL, 0 },
		{ "relayhost", "smarthost.example.net: 25", 0, NULL, 0 },
		{ "mynetworks", "127.0.0.0/8, [::1]", 0, NULL, 0 },
		{ "mynetworks", "127.0.0.0/8, ::1/128 192.0.2.0/24", 1, NULL, 3 },
		{ "mynetworks", "10.1.2.3", 1, NULL, 1 },
		{ "mynetworks", "none", 1, NULL, 0 },
		{ "mynetworks", "", 1, NULL, 0 },
		{ "mynetworks", "10.0.0.1/8", 0, NULL, 0 },
		{ "mynetworks", "localhost", 0, NULL, 0 },
		{ "mynetworks", "10.0.0.0/33", 0, NULL, 0 },
		{ "minimal_backoff", "60s", 1, NULL, 60000 },
		{ "minimal_backoff", "1s", 1, NULL, 1000 },
		{ "minimal_backoff", "1d", 1, NULL, 86400000 },
		{ "minimal_backoff", "500ms", 0, NULL, 0 },
		{ "minimal_backoff", "2d", 0, NULL, 0 },
		{ "minimal_backoff", "soon", 0, NULL, 0 },
		{ "maximal_backoff", "2h", 1, NULL, 7200000 },
		{ "maximal_backoff", "7d", 1, NULL, 7u * 86400000 },
		{ "maximal_backoff", "8d", 0, NULL, 0 },
		{ "maximal_backoff", "0", 0, NULL, 0 },
		{ "queue_restart_spread", "0", 1, NULL, 0 },
		{ "queue_restart_spread", "5m", 1, NULL, 300000 },
		{ "queue_restart_spread", "25h", 0, NULL, 0 },
		{ "test_clock", "yes", 1, NULL, 1 },
		{ "test_clock", "no", 1, NULL, 0 },
		{ "test_clock", "sometimes", 0, NULL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct outbound_case *t = &cases[i];
		struct config c;
		char err[CONFIG_ERR_MAX] = "", want[CONFIG_ERR_MAX];
		unsigned before;
		int r;

		config_defaults(&c);
		snprintf(c.relayhost, sizeof(c.relayhost), "old.example.net");
		before = outbound_value(&c, t->key);
		r = config_set(&c, t->key, t->v, "-o", err, sizeof(err));
		cr_expect_eq(r == 0, t->want_ok, "%s [%s]: rc %d (%s)", t->key, t->v, r, err);
		if (!t->want_ok) {
			snprintf(want, sizeof(want), "-o: bad value for %s: ", t->key);
			cr_expect(strncmp(err, want, strlen(want)) == 0, "%s [%s]: %s", t->key, t->v, err);
			cr_expect_str_eq(c.relayhost, "old.example.net", "[%s] changed relayhost", t->v);
			if (strcmp(t->key, "mynetworks"))
				cr_expect_eq(outbound_value(&c, t->key), before, "%s [%s]: changed",
					     t->key, t->v);
		} else if (t->want_relayhost) {
			cr_expect_str_eq(c.relayhost, t->want_relayhost, "[%s]", t->v);
		} else {
			cr_expect_eq(outbound_value(&c, t->key), t->want_n, "%s [%s]", t->key, t->v);
		}
		config_free(&c);
	}
}

/* The defaults (Postfix's 300 s and 4000 s; nothing relays, no relayhost,
 * no submission listener, the real clock); mynetworks matches what it
 * lists; submission_listen is a listener kind of its own; and
 * config_finish refuses minimal_backoff > maximal_backoff naming both. */
Test(config, outbound_defaults_file_and_finish)
{
	struct config c;
	char err[CONFIG_ERR_MAX + PATH_MAX], want[CONFIG_ERR_MAX + PATH_MAX];
	struct sockaddr_in in = { .sin_family = AF_INET };
	char *path;

	config_defaults(&c);
	cr_expect_str_eq(c.relayhost, "");
	cr_expect_eq(c.nmynetworks, 0);
	cr_expect_eq(c.minimal_backoff_ms, 300000);
	cr_expect_eq(c.maximal_backoff_ms, 4000000);
	cr_expect_eq(c.queue_restart_spread_ms, 60000);
	cr_expect_eq(c.test_clock, 0);
	for (unsigned i = 0; i < c.nlisten; i++)
		cr_expect_eq(c.listen[i].flags & CONFIG_LISTEN_SUBMISSION, 0);
	config_free(&c);

	path = write_conf("relay_domains = demo.test\n"
			  "relayhost = [127.0.0.1]:2526\n"
			  "mynetworks = 192.0.2.0/24, 2001:db8::/32\n"
			  "minimal_backoff = 10s\nmaximal_backoff = 10s\n"
			  "submission_listen = 127.0.0.1:5870, [::1]:5871\n"
			  "test_clock = yes\n");
	config_defaults(&c);
	cr_assert_eq(config_load(&c, path, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(c.relayhost, "[127.0.0.1]:2526");
	cr_expect_eq(c.test_clock, 1);
	cr_assert_eq(c.nmynetworks, 2);
	inet_pton(AF_INET, "192.0.2.200", &in.sin_addr);
	cr_expect(cidr_list_match(c.mynetworks, c.nmynetworks, (struct sockaddr *)&in));
	inet_pton(AF_INET, "192.0.3.1", &in.sin_addr);
	cr_expect(!cidr_list_match(c.mynetworks, c.nmynetworks, (struct sockaddr *)&in));
	{
		unsigned nsub = 0;

		for (unsigned i = 0; i < c.nlisten; i++)
			if (c.listen[i].flags == CONFIG_LISTEN_SUBMISSION)
				nsub++;
		cr_expect_eq(nsub, 2, "two submission listeners");
	}
	cr_expect_eq(config_finish(&c, err, sizeof(err)), 0, "equal back-offs are fine: %s", err);
	cr_expect_eq(config_set(&c, "minimal_backoff", "11s", "-o", err, sizeof(err)), 0);
	cr_expect_eq(config_finish(&c, err, sizeof(err)), -1);
	cr_expect(strstr(err, "minimal_backoff (11000 ms) is longer than maximal_backoff (10000 ms)"),
		  "%s", err);
	config_free(&c);
	unlink(path);

	path = write_conf("relay_domains = demo.test\nsubmission_listen = localhost:587\n");
	config_defaults(&c);
	cr_expect_eq(config_load(&c, path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:2: bad value for submission_listen: ", path);
	cr_expect(strncmp(err, want, strlen(want)) == 0, "%s", err);
	config_free(&c);
	unlink(path);
}

/* Comments: '#' first on a line, or after a blank and before a blank or
 * the end; any other '#' is data ("#q1", an activator's queue request). */
Test(config, comments)
{
	static const struct {
		const char *text;
		int want_rc;
		int want_sync;
	} cases[] = {
		{ "# whole line\nsync = none\n", 0, CONFIG_SYNC_NONE },
		{ "   #indented\nsync = none\n", 0, CONFIG_SYNC_NONE },
		{ "sync = none # why\n", 0, CONFIG_SYNC_NONE },
		{ "sync = none\t#\twhy\n", 0, CONFIG_SYNC_NONE },
		{ "sync = none #\n", 0, CONFIG_SYNC_NONE },
		{ "sync = none#why\n", -1, 0 },
		{ "sync = none #why\n", -1, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;
		char err[CONFIG_ERR_MAX + PATH_MAX];
		char *path = write_conf(cases[i].text);

		config_defaults(&c);
		cr_expect_eq(config_load(&c, path, err, sizeof(err)), cases[i].want_rc, "case %zu: %s",
			     i, cases[i].want_rc ? "accepted" : err);
		if (cases[i].want_rc == 0)
			cr_expect_eq((int)c.sync, cases[i].want_sync, "case %zu", i);
		config_free(&c);
		unlink(path);
	}
}

/* ---- more bad values (issue 18: every rejecting branch of a key) ---------
 * Each through config_set() as a -o option would come, so that values a
 * config file line cannot carry (an empty cipher list, a NUL) are covered
 * by the load tests below instead. want: the whole error after "-o: ". */
struct set_case {
	const char *key, *value;
	const char *want_err;   /* NULL: accepted */
};

static const struct set_case set_cases[] = {
	{ "log", "./etrnd.log", NULL },
	{ "log", "etrnd", "bad value for log: \"etrnd\" (want stderr, syslog or a file path)" },
	{ "metrics_listen", "localhost:9100", "bad value for metrics_listen: \"localhost:9100\" (want host:port or [v6addr]:port with a numeric address, or none)" },
	{ "metrics_listen", "none", NULL },
	{ "user", "mail/x", "bad value for user: \"mail/x\" (want a user name: letters, digits, '_', '-', '.')" },
	{ "user", "none", NULL },
	{ "node_id", "node*1", "bad value for node_id: \"node*1\" (want 1 to 63 of letters, digits, '.', '_' and '-')" },
	{ "redis_sentinels", "a,b,c,d,e,f,g,h,i", "bad value for redis_sentinels: more than 8 sentinels" },
	{ "redis_sentinels", "[::1", "bad value for redis_sentinels: \"[::1\" (want host[:port] or [v6]:port, comma separated)" },
	{ "redis_sentinels", "s1.test:0", "bad value for redis_sentinels: \"s1.test:0\" (want host[:port] or [v6]:port, comma separated)" },
	{ "redis_sentinels", "none", NULL },
	{ "redis_master_name", "my master", "bad value for redis_master_name: \"my master\" (no blanks or control characters)" },
	{ "cluster_tls", "sometimes", "bad value for cluster_tls: \"sometimes\" (want may, must or verify)" },
	{ "cluster_tls", "verify", NULL },
	{ "dns_servers", "dns.example.net", "bad value for dns_servers: \"dns.example.net\" (want a comma list of numeric ip[:port] or [v6]:port)" },
	{ "tls_ciphers", "", NULL },
	{ "listen", "[::1]2525", "bad value for listen: \"[::1]2525\" (want host:port, [v6addr]:port or :port with a numeric address)" },
	{ "listen", ",", "bad value for listen: no address given" },
	{ "listen", "1.1.1.1:1,1.1.1.1:2,1.1.1.1:3,1.1.1.1:4,1.1.1.1:5,1.1.1.1:6,1.1.1.1:7,1.1.1.1:8,"
		    "1.1.1.1:9,1.1.1.1:10,1.1.1.1:11,1.1.1.1:12,1.1.1.1:13,1.1.1.1:14,1.1.1.1:15,1.1.1.1:16,1.1.1.1:17",
	  "bad value for listen: more than 16 addresses" },
	{ "hostname", "a234567890123456789012345678901234567890123456789012345678901234.example",
	  "bad value for hostname: \"a234567890123456789012345678901234567890123456789012345678901234.example\"" },
	{ "hostname", "relay..example", "bad value for hostname: \"relay..example\"" },
	{ "hostname", "relay.ex*mple", "bad value for hostname: \"relay.ex*mple\"" },
	{ "log_syslog", "TRUE", NULL },
	{ "log_syslog", "1", NULL },
	{ "log_syslog", "False", NULL },
	{ "log_syslog", "0", NULL },
	{ "bare_lf", "normalize", NULL },
	{ "log", "../var/etrnd.log", NULL },
	{ "log", "/var/log/etrnd.log", NULL },
	{ "user", "mail_user-1.x", NULL },
	{ "listen", "127.0.0.1:", "bad value for listen: \"127.0.0.1:\"" },
	{ "listen", "*:2525", NULL },
	{ "redis_prefix", "etrnd*", "bad value for redis_prefix: \"etrnd*\"" },
	{ "redis_prefix", "etrnd[1]", "bad value for redis_prefix: \"etrnd[1]\"" },
	{ "redis_prefix", "a\\b", "bad value for redis_prefix: " },
	{ "redis_master_name", "a\x7f", "bad value for redis_master_name: " },
	{ "node_id", "n234567890123456789012345678901234567890123456789012345678901234",
	  "bad value for node_id: " },
	{ "redis", "redis://u:%4a%4B@h.test", NULL },
	{ "redis", "redis://h.test/1000001", "" },
	{ "redis", "redis://h.test/x", "" },
};

Test(config, set_rejects_each_bad_value)
{
	for (size_t i = 0; i < sizeof(set_cases) / sizeof(set_cases[0]); i++) {
		const struct set_case *k = &set_cases[i];
		struct config c;
		char err[CONFIG_ERR_MAX] = "", want[CONFIG_ERR_MAX];

		config_defaults(&c);
		int rc = config_set(&c, k->key, k->value, "-o", err, sizeof(err));
		if (!k->want_err) {
			cr_expect_eq(rc, 0, "%s = %s: %s", k->key, k->value, err);
		} else {
			cr_expect_eq(rc, -1, "%s = %s accepted", k->key, k->value);
			snprintf(want, sizeof(want), "-o: %s", k->want_err);
			cr_expect(strncmp(err, want, strlen(want)) == 0, "%s = %s: got [%s], want [%s]",
				  k->key, k->value, err, want);
		}
		config_free(&c);
	}
}

/* A NUL byte inside a line: refused with the line's number (a config
 * written by a broken tool must not be read as a shorter value). */
Test(config, nul_byte_in_line)
{
	static const char text[] = "threads = 2\nhostname = a\0b.example\n";
	struct config c;
	char err[CONFIG_ERR_MAX], want[128];
	char *path = write_conf("");
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	cr_assert_eq(fwrite(text, 1, sizeof(text) - 1, f), sizeof(text) - 1);
	fclose(f);
	config_defaults(&c);
	cr_expect_eq(config_load(&c, path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:2: NUL byte in line", path);
	cr_expect_str_eq(err, want);
	config_free(&c);
	unlink(path);
}

/* config_finish(): settings that are each fine but not together. want:
 * the error after "PATH: ". */
Test(config, finish_refuses_settings_that_disagree)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "relay_domains = demo.test\nredis_sentinels = s1.test\n",
		  "redis_sentinels and redis_master_name go together: set both or neither" },
		{ "relay_domains = demo.test\nredis_master_name = mymaster\n",
		  "redis_sentinels and redis_master_name go together: set both or neither" },
		{ "redis = unix:/run/redis.sock\nredis_sentinels = s1.test\nredis_master_name = m\n",
		  "redis is a unix socket but redis_sentinels is set: Sentinel names a TCP master" },
		{ "relay_domains = demo.test\ncluster_publish_interval = 10s\ncluster_node_ttl = 10s\n",
		  "cluster_node_ttl (10000 ms) is not longer than cluster_publish_interval (10000 ms): every node would look gone between refreshes" },
		{ "relay_domains = demo.test\ncluster_listen = 127.0.0.1:2600\n",
		  "cluster_listen is set but cluster_secret_file is not: no node could authenticate" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;
		char err[CONFIG_ERR_MAX] = "", want[CONFIG_ERR_MAX];
		char *path = write_conf(cases[i].text);

		config_defaults(&c);
		cr_assert_eq(config_load(&c, path, err, sizeof(err)), 0, "case %zu: %s", i, err);
		cr_expect_eq(config_finish(&c, err, sizeof(err)), -1, "case %zu accepted", i);
		snprintf(want, sizeof(want), "%s: %s", path, cases[i].want);
		cr_expect_str_eq(err, want, "case %zu", i);
		config_free(&c);
		unlink(path);
	}
	/* Both Sentinel keys over TCP: fine, and the display names them. */
	struct config c;
	char err[CONFIG_ERR_MAX] = "";
	char *path = write_conf("relay_domains = demo.test\nredis_sentinels = s1.test, s2.test:26380\n"
				"redis_master_name = mymaster\n");
	config_defaults(&c);
	cr_assert_eq(config_load(&c, path, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(config_finish(&c, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq((int)c.redis.kind, CONFIG_REDIS_TCP);
	cr_expect_str_eq(c.redis.display, "sentinel mymaster via s1.test:26379,...");
	config_free(&c);
	unlink(path);
}

/* The SPF keys (proto/spf.h): defaults (off, reject fail, tempfail on
 * temperror, 20 s, two workers) and each good value. */
Test(config, spf_keys)
{
	struct config c;
	char err[CONFIG_ERR_MAX];
	char *path = write_conf("spf = log\nspf_reject = none\nspf_temperror = accept\n"
				"spf_timeout = 5s\nspf_workers = 8\n");

	config_defaults(&c);
	cr_expect_eq(c.spf, CONFIG_SPF_OFF);
	cr_expect_eq(c.spf_reject_fail, 1);
	cr_expect_eq(c.spf_tempfail, 1);
	cr_expect_eq(c.spf_timeout_ms, 20000);
	cr_expect_eq(c.spf_workers, 2);
	cr_assert_eq(config_load(&c, path, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.spf, CONFIG_SPF_LOG);
	cr_expect_eq(c.spf_reject_fail, 0);
	cr_expect_eq(c.spf_tempfail, 0);
	cr_expect_eq(c.spf_timeout_ms, 5000);
	cr_expect_eq(c.spf_workers, 8);
	cr_assert_eq(config_set(&c, "spf", "on", "-o", err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.spf, CONFIG_SPF_ON);
	cr_assert_eq(config_set(&c, "spf_reject", "fail", "-o", err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.spf_reject_fail, 1);
	config_free(&c);
	unlink(path);
}

/* Recipient validation's caps (issue 19): defaults and a good value (bad
 * ones are in bad_cases[]). */
Test(config, rcpt_caps)
{
	struct config c;
	char err[CONFIG_ERR_MAX];
	char *path;

	config_defaults(&c);
	cr_expect_eq(c.rcpt_max_per_domain, 2000000u);
	cr_expect_eq(c.rcpt_max_total, 10000000u);
	path = write_conf("rcpt_max_per_domain = 5\nrcpt_max_total = 7\n");
	cr_assert_eq(config_load(&c, path, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(c.rcpt_max_per_domain, 5u);
	cr_expect_eq(c.rcpt_max_total, 7u);
	config_free(&c);
	unlink(path);
}
