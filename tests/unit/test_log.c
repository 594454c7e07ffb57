/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/log.c: the one sanitiser for untrusted text (a table,
 * each case also fed one byte longer at a time, so every cut point is seen),
 * and log = FILE: lines appended, the file renamed then reopened (SIGUSR1's
 * log_reopen()) with threads logging meanwhile: no line lost, none split.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"

#define TL_OUT_MAX 512
#define TL_FILE_MAX (1u << 20)   /* what a case's log file may hold */
#define TL_THREADS 4
#define TL_LINES 2000            /* per thread */
#define TL_REOPENS 20

struct tl_case {
	const char *name;
	const char *in;
	size_t in_len;       /* 0: strlen */
	size_t dstlen;
	const char *want;
};

static const struct tl_case tl_cases[] = {
	{ "plain", "mail.example.com", 0, 64, "mail.example.com" },
	{ "empty", "", 0, 8, "" },
	{ "crlf_forges_no_line", "a\r\nfake: line", 0, 64, "a\\x0d\\x0afake: line" },
	{ "nul", "a\0b", 3, 64, "a\\x00b" },
	{ "tab_del", "\t\x7f", 0, 64, "\\x09\\x7f" },
	{ "backslash_escaped", "a\\x41", 0, 64, "a\\x5cx41" },
	{ "high_bytes", "\xc3\xa9\xff", 0, 64, "\\xc3\\xa9\\xff" },
	{ "ansi_escape", "\x1b[2J", 0, 64, "\\x1b[2J" },
	{ "exact_fit", "abcdefg", 0, 8, "abcdefg" },
	{ "one_over", "abcdefgh", 0, 8, "abcd..." },
	{ "escape_exact_fit", "ab\x01", 0, 8, "ab\\x01" },
	{ "escape_not_split", "abc\x01" "defgh", 0, 8, "abc..." },
	{ "escape_at_cut", "a\x01\x02", 0, 8, "a..." },
	{ "long", "0123456789012345678901234567890123456789", 0, 16, "012345678901..." },
};

static void tl_check_clean(const char *name, const char *out, size_t dstlen)
{
	size_t n = strlen(out);

	cr_assert(n < dstlen, "%s: %zu bytes in a buffer of %zu", name, n, dstlen);
	for (size_t i = 0; i < n; i++)
		cr_assert(out[i] >= 0x20 && out[i] < 0x7f, "%s: byte %zu is 0x%02x", name, i,
			  (unsigned char)out[i]);
}

Test(log, printable_table)
{
	for (size_t k = 0; k < sizeof(tl_cases) / sizeof(tl_cases[0]); k++) {
		const struct tl_case *c = &tl_cases[k];
		size_t n = c->in_len ? c->in_len : strlen(c->in);
		char *in = malloc(n + 1), *out = malloc(c->dstlen);

		cr_assert(in && out);
		memcpy(in, c->in, n); /* exact-size copy: ASan sees a read past it */
		cr_assert_eq(log_printable(out, c->dstlen, in, n), out);
		cr_expect_str_eq(out, c->want, "%s", c->name);
		tl_check_clean(c->name, out, c->dstlen);
		free(in);
		free(out);
	}
}

/* Every prefix of every case, every buffer size from the minimum: output
 * clean and within bounds; uncut exactly when the whole escape fits, and
 * then a prefix of the full escape; cut output ends in "...". */
Test(log, printable_every_prefix_and_size)
{
	for (size_t k = 0; k < sizeof(tl_cases) / sizeof(tl_cases[0]); k++) {
		const struct tl_case *c = &tl_cases[k];
		size_t n = c->in_len ? c->in_len : strlen(c->in);

		for (size_t len = 0; len <= n; len++) {
			char full[TL_OUT_MAX];

			log_printable(full, sizeof(full), c->in, len);
			for (size_t dl = 8; dl < 48; dl++) {
				char *out = malloc(dl);
				size_t ol;

				cr_assert(out);
				log_printable(out, dl, c->in, len);
				tl_check_clean(c->name, out, dl);
				ol = strlen(out);
				if (strlen(full) < dl)
					cr_expect_str_eq(out, full, "%s: %zu bytes, dstlen %zu", c->name, len, dl);
				else
					cr_expect(ol >= 3 && !strcmp(out + ol - 3, "...") &&
						  !strncmp(out, full, ol - 3),
						  "%s: %zu bytes, dstlen %zu: \"%s\"", c->name, len, dl, out);
				free(out);
			}
		}
	}
}

/* Every byte value alone: printable ASCII but '\' as itself, the rest \xNN. */
Test(log, printable_every_byte)
{
	for (int b = 0; b < 256; b++) {
		char in = (char)b, out[8], want[8];

		log_printable(out, sizeof(out), &in, 1);
		if (b >= 0x20 && b < 0x7f && b != '\\')
			snprintf(want, sizeof(want), "%c", b);
		else
			snprintf(want, sizeof(want), "\\x%02x", b);
		cr_expect_str_eq(out, want, "byte 0x%02x", b);
	}
}

struct tl_dir {
	char dir[64];
	char path[96];
	char rotated[96];
};

static void tl_dir_new(struct tl_dir *d)
{
	snprintf(d->dir, sizeof(d->dir), "/tmp/test_log.XXXXXX");
	cr_assert(mkdtemp(d->dir), "mkdtemp: %s", strerror(errno));
	snprintf(d->path, sizeof(d->path), "%s/etrnd.log", d->dir);
	snprintf(d->rotated, sizeof(d->rotated), "%s/etrnd.log.1", d->dir);
}

static void tl_dir_free(struct tl_dir *d)
{
	log_close_file();
	unlink(d->path);
	unlink(d->rotated);
	rmdir(d->dir);
}

/* The whole file (heap, NUL-terminated); "" when it does not exist. */
static char *tl_slurp(const char *path)
{
	char *buf = calloc(1, TL_FILE_MAX + 1);
	FILE *f = fopen(path, "r");

	cr_assert(buf);
	if (f) {
		size_t n = fread(buf, 1, TL_FILE_MAX, f);

		cr_assert(n < TL_FILE_MAX, "%s: larger than the test expects", path);
		fclose(f);
	}
	return buf;
}

Test(log, file_then_rename_then_reopen)
{
	struct tl_dir d;
	struct stat st;
	char *old, *cur;

	tl_dir_new(&d);
	log_init("test_log", LOGL_INFO, 0);
	cr_assert_eq(log_open_file(d.path), 0);
	cr_assert_eq(stat(d.path, &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0640, "mode %o", st.st_mode & 0777);
	log_info("line one");
	log_debug("not at level info");
	cr_assert_eq(rename(d.path, d.rotated), 0);
	log_warn("line two, after the rename");
	cr_assert_eq(log_reopen(), 0);
	log_info("line three, after the reopen");
	old = tl_slurp(d.rotated);
	cur = tl_slurp(d.path);
	cr_expect(strstr(old, "test_log["), "%s", old);
	cr_expect(strstr(old, "]: line one\n"), "%s", old);
	cr_expect(strstr(old, "]: warning: line two, after the rename\n"), "%s", old);
	cr_expect(!strstr(old, "not at level info"), "%s", old);
	cr_expect(!strstr(old, "line three"), "%s", old);
	cr_expect(strstr(cur, "]: log file "), "%s", cur);
	cr_expect(strstr(cur, "]: line three, after the reopen\n"), "%s", cur);
	cr_expect(!strstr(cur, "line one"), "%s", cur);
	free(old);
	free(cur);
	tl_dir_free(&d);
}

/* The path cannot be opened again (its directory is gone): -errno, and the
 * lines go on to the old file. */
Test(log, reopen_failure_keeps_old_file)
{
	struct tl_dir d;
	char moved[96];
	char *old;

	tl_dir_new(&d);
	cr_assert_eq(log_open_file(d.path), 0);
	snprintf(moved, sizeof(moved), "%s.moved", d.dir);
	cr_assert_eq(rename(d.dir, moved), 0);
	cr_expect_eq(log_reopen(), -ENOENT);
	log_info("still here");
	cr_assert_eq(rename(moved, d.dir), 0);
	old = tl_slurp(d.path);
	cr_expect(strstr(old, "cannot reopen the log file"), "%s", old);
	cr_expect(strstr(old, "]: still here\n"), "%s", old);
	free(old);
	tl_dir_free(&d);
}

Test(log, open_file_refuses_bad_path)
{
	cr_expect_eq(log_open_file("/nonexistent-dir-for-test_log/etrnd.log"), -ENOENT);
	cr_expect_eq(log_reopen(), 0, "no file: nothing to reopen");
}

static void *tl_writer(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;

	for (unsigned i = 0; i < TL_LINES; i++)
		log_info("writer %u line %u %s", id, i, "payload-payload-payload-payload");
	return NULL;
}

/* Count "writer T line I" lines in text, each whole and once. */
static void tl_count(const char *text, unsigned char seen[TL_THREADS][TL_LINES], unsigned *other)
{
	const char *p = text, *nl;

	while ((nl = strchr(p, '\n'))) {
		unsigned t, i;
		const char *w = strstr(p, "]: writer ");

		if (w && w < nl && sscanf(w, "]: writer %u line %u", &t, &i) == 2 &&
		    t < TL_THREADS && i < TL_LINES &&
		    nl - w == (long)strlen("]: writer  line  payload-payload-payload-payload") +
				      snprintf(NULL, 0, "%u%u", t, i)) {
			cr_expect_eq(seen[t][i], 0, "writer %u line %u twice", t, i);
			seen[t][i] = 1;
		} else {
			(*other)++;
		}
		p = nl + 1;
	}
	cr_expect_eq(*p, '\0', "a line without its newline: \"%.40s\"", p);
}

/* Threads log while the file is renamed and reopened again and again: every
 * line lands whole in exactly one of the files. */
Test(log, reopen_under_writers_loses_nothing, .timeout = 60)
{
	static unsigned char seen[TL_THREADS][TL_LINES];
	pthread_t th[TL_THREADS];
	char rotated[TL_REOPENS][112];
	unsigned other = 0;
	struct tl_dir d;

	tl_dir_new(&d);
	cr_assert_eq(log_open_file(d.path), 0);
	for (unsigned t = 0; t < TL_THREADS; t++)
		cr_assert_eq(pthread_create(&th[t], NULL, tl_writer, (void *)(uintptr_t)t), 0);
	for (unsigned r = 0; r < TL_REOPENS; r++) {
		snprintf(rotated[r], sizeof(rotated[r]), "%s.%u", d.path, r);
		usleep(1000);
		cr_assert_eq(rename(d.path, rotated[r]), 0);
		cr_assert_eq(log_reopen(), 0);
	}
	for (unsigned t = 0; t < TL_THREADS; t++)
		pthread_join(th[t], NULL);
	log_close_file();
	for (unsigned r = 0; r <= TL_REOPENS; r++) {
		const char *path = r < TL_REOPENS ? rotated[r] : d.path;
		char *text = tl_slurp(path);

		tl_count(text, seen, &other);
		free(text);
		if (r < TL_REOPENS)
			unlink(path);
	}
	for (unsigned t = 0; t < TL_THREADS; t++)
		for (unsigned i = 0; i < TL_LINES; i++)
			cr_expect(seen[t][i], "writer %u line %u lost", t, i);
	cr_expect_eq(other, TL_REOPENS, "only the \"reopened\" lines besides the writers'");
	tl_dir_free(&d);
}

/* A path longer than PATH_MAX - 1: refused before any open. */
Test(log, open_file_refuses_overlong_path)
{
	static char path[PATH_MAX + 1];

	memset(path, 'a', PATH_MAX);
	path[0] = '/';
	cr_expect_eq(log_open_file(path), -ENAMETOOLONG);
}

/* With stdin closed the log file would get descriptor 0, which a daemon's
 * stdio may reuse: it is moved above 2, and 0 stays free. */
Test(log, file_never_on_stdio_descriptors)
{
	struct tl_dir d;
	char *cur;

	tl_dir_new(&d);
	close(STDIN_FILENO);
	cr_assert_eq(log_open_file(d.path), 0);
	cr_expect_eq(fcntl(STDIN_FILENO, F_GETFD), -1, "the log file kept descriptor 0");
	log_info("on a high descriptor");
	cur = tl_slurp(d.path);
	cr_expect(strstr(cur, "]: on a high descriptor\n"), "%s", cur);
	free(cur);
	tl_dir_free(&d);
}

/* A message longer than a log line: cut, still one whole line. */
Test(log, overlong_message_is_one_line)
{
	struct tl_dir d;
	static char msg[3 * 2048];
	char *cur;

	tl_dir_new(&d);
	cr_assert_eq(log_open_file(d.path), 0);
	memset(msg, 'm', sizeof(msg) - 1);
	log_info("%s", msg);
	log_info("next");
	cur = tl_slurp(d.path);
	char *nl = strchr(cur, '\n');
	cr_assert_not_null(nl);
	cr_expect_eq((size_t)(nl - cur), 2048 - 2, "the first line is %zu bytes", (size_t)(nl - cur));
	cr_expect_eq(nl[-1], 'm');
	cr_expect(strstr(nl + 1, "]: next\n") != NULL, "%s", nl + 1);
	free(cur);
	tl_dir_free(&d);
}

/* Set in a sanitizer build (sanitizer/common_interface_defs.h), else NULL. */
void __sanitizer_set_report_fd(void *fd) __attribute__((weak));

/* fatal(): the operator's line on stderr, the same in the log file, exit
 * status 2. In a child, which fatal() ends. */
Test(log, fatal_says_it_on_stderr_and_in_the_log_file)
{
	struct tl_dir d;
	int pipefd[2], status;
	char err[256] = "";
	char *cur;

	tl_dir_new(&d);
	cr_assert_eq(pipe(pipefd), 0);
	fflush(NULL); /* nothing buffered to be written twice */
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* The sanitizers' own lines (LeakSanitizer at exit, under load:
		 * "Running thread N was not suspended") keep to the real stderr;
		 * the pipe gets etrnd's alone. */
		int keep = dup(STDERR_FILENO);

		if (keep >= 0 && __sanitizer_set_report_fd)
			__sanitizer_set_report_fd((void *)(intptr_t)keep);
		dup2(pipefd[1], STDERR_FILENO);
		log_init("test_log", LOGL_INFO, 0);
		if (log_open_file(d.path) != 0)
			_exit(100);
		fatal("spool_dir %s: %s", "/x", "Permission denied");
	}
	close(pipefd[1]);
	ssize_t n = read(pipefd[0], err, sizeof(err) - 1);
	err[n > 0 ? n : 0] = '\0';
	close(pipefd[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 2, "status %#x", status);
	cr_expect_str_eq(err, "test_log: spool_dir /x: Permission denied\n");
	cur = tl_slurp(d.path);
	cr_expect(strstr(cur, "]: error: fatal: spool_dir /x: Permission denied\n"), "%s", cur);
	free(cur);
	tl_dir_free(&d);
}
