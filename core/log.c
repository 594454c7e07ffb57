/* SPDX-License-Identifier: MIT */
/*
 * log: Postfix-style one-line logging to stderr, syslog or a file (see
 * log.h). Each line is formatted into a stack buffer and written with a
 * single call, so lines from different threads never interleave; the file is
 * reopened under the same descriptor number (dup3), so writers need no lock.
 */
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048
#define LOG_FILE_MODE 0640 /* as Debian's rsyslog creates mail.log */

static const char *log_progname = "etrnd";
static atomic_int log_level = LOGL_INFO;
static int log_syslog;
/* Where stderr-style lines go: STDERR_FILENO, or the log file's descriptor
 * (set once before the threads start; only its file changes, by dup3). */
static int log_fd = STDERR_FILENO;
static char log_path[PATH_MAX];

static const char *const log_level_name[] = { "debug", "info", "warning", "error" };
static const int log_syslog_prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };

void log_init(const char *progname, enum log_level level, int use_syslog)
{
	log_progname = progname;
	atomic_store(&log_level, (int)level);
	log_syslog = use_syslog && log_fd == STDERR_FILENO;
	if (log_syslog)
		openlog(progname, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

static int log_open_path(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, LOG_FILE_MODE);

	return fd < 0 ? -errno : fd;
}

int log_open_file(const char *path)
{
	int fd;

	if (strlen(path) >= sizeof(log_path))
		return -ENAMETOOLONG;
	fd = log_open_path(path);
	if (fd < 0)
		return fd;
	/* Never descriptor 0-2: stdio's, which a daemon may close or reuse. */
	if (fd <= STDERR_FILENO) {
		int hi = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
		int rc = hi < 0 ? -errno : 0;

		close(fd);
		if (rc)
			return rc;
		fd = hi;
	}
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	memcpy(log_path, path, strlen(path) + 1);
	log_fd = fd;
	log_syslog = 0;
	return 0;
}

void log_close_file(void)
{
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = STDERR_FILENO;
	log_path[0] = '\0';
}

int log_reopen(void)
{
	int fd, rc = 0;

	if (log_fd == STDERR_FILENO)
		return 0;
	fd = log_open_path(log_path);
	if (fd < 0) {
		log_err("cannot reopen the log file %s: %s; still writing to the old one",
			log_path, strerror(-fd));
		return fd;
	}
	/* Atomic: a write(2) on log_fd meanwhile goes whole to the old file or
	 * the new one. */
	if (dup3(fd, log_fd, O_CLOEXEC) < 0) {
		rc = -errno;
		log_err("cannot reopen the log file %s: dup3: %s; still writing to the old one",
			log_path, strerror(-rc));
	}
	close(fd);
	if (rc == 0)
		log_info("log file %s reopened", log_path);
	return rc;
}

void log_set_level(enum log_level level)
{
	atomic_store(&log_level, (int)level);
}

int log_enabled(enum log_level level)
{
	return (int)level >= atomic_load_explicit(&log_level, memory_order_relaxed);
}

__attribute__((format(printf, 2, 0)))
static void log_vline(enum log_level level, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	struct timespec ts;
	struct tm tm;
	size_t off = 0;
	int n;

	if (log_syslog) {
		n = vsnprintf(line, sizeof(line), fmt, ap);
		if (n >= 0)
			syslog(log_syslog_prio[level], "%s%s%s",
			       level >= LOGL_WARN ? log_level_name[level] : "",
			       level >= LOGL_WARN ? ": " : "", line);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%ld]: ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, log_progname,
		     (long)getpid());
	if (n > 0)
		off = (size_t)n;
	if (level >= LOGL_WARN && off < sizeof(line)) {
		n = snprintf(line + off, sizeof(line) - off, "%s: ", log_level_name[level]);
		if (n > 0)
			off += (size_t)n;
	}
	if (off < sizeof(line)) {
		n = vsnprintf(line + off, sizeof(line) - off, fmt, ap);
		if (n > 0)
			off += (size_t)n;
	}
	if (off > sizeof(line) - 2)
		off = sizeof(line) - 2; /* truncated: keep room for the newline */
	line[off++] = '\n';
	(void)!write(log_fd, line, off);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	log_vline(level, fmt, ap);
	va_end(ap);
}

_Noreturn void fatal(const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	/* Start-up errors go to stderr plainly (an operator reads them at the
	 * terminal or in the service manager), and to syslog if in use. */
	fprintf(stderr, "%s: %s\n", log_progname, line);
	if (log_syslog)
		syslog(LOG_CRIT, "fatal: %s", line);
	else if (log_fd != STDERR_FILENO)
		log_msg(LOGL_ERR, "fatal: %s", line);
	exit(2);
}

_Noreturn void panic_at(const char *func, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	log_msg(LOGL_ERR, "panic: %s: %s", func, line);
	abort();
}

/* Escape greedily within dstlen-1; when input is left over, go back to the
 * last whole character (never half an escape) that leaves room for "...". */
char *log_printable(char *dst, size_t dstlen, const char *src, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const size_t cut = sizeof("...") - 1;
	size_t o = 0, keep = 0, i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)src[i];
		int plain = c >= 0x20 && c < 0x7f && c != '\\';
		size_t w = plain ? 1 : 4;

		if (o + w > dstlen - 1)
			break;
		if (plain) {
			dst[o] = (char)c;
		} else {
			dst[o] = '\\';
			dst[o + 1] = 'x';
			dst[o + 2] = hex[c >> 4];
			dst[o + 3] = hex[c & 15];
		}
		o += w;
		if (o + cut <= dstlen - 1)
			keep = o;
	}
	if (i < n) {
		memcpy(dst + keep, "...", cut);
		o = keep + cut;
	}
	dst[o] = '\0';
	return dst;
}
