/* SPDX-License-Identifier: MIT */
/*
 * log: one line per event to stderr, syslog or a file, Postfix style (every
 * line type: etc/man/etrnd-log.7). Three kinds of error (STYLE.md): panic()
 * for a broken invariant of our own (abort, core dump), fatal() for a bad
 * environment at start-up (exit 2), and plain log_warn()/log_err() for
 * anything a peer, the disk or Redis does at run time. Thread-safe: each line
 * is formatted into a local buffer and written with one write(2) (stderr, or
 * the file opened O_APPEND) or syslog(3) call, so lines never interleave.
 * Untrusted text (peers, clients, Redis) goes through log_printable() first.
 */
#ifndef ETRND_CORE_LOG_H
#define ETRND_CORE_LOG_H

#include <stddef.h>

enum log_level { LOGL_DEBUG = 0, LOGL_INFO = 1, LOGL_WARN = 2, LOGL_ERR = 3 };

/* Set the program name (not copied: a string literal or argv), minimum level
 * and destination (use_syslog != 0; else stderr, or the file log_open_file()
 * opened, which stays in use). Call before any other thread logs. */
void log_init(const char *progname, enum log_level level, int use_syslog);

/* Send lines to path from now on (appended, created 0640, O_CLOEXEC), in
 * place of stderr or syslog. path is copied. Call before any other thread
 * logs. 0 or -errno (nothing changed then). */
int log_open_file(const char *path);

/*
 * Open the log file's path again (SIGUSR1, after logrotate renamed it) and
 * put the new file under the same descriptor with one dup3(2): a line being
 * written by another thread meanwhile lands whole in the old file or the
 * new one, never lost nor split, and no lock is taken. 0 when lines do not
 * go to a file; -errno when the path cannot be opened (logged; the old file
 * stays in use).
 */
int log_reopen(void);

/* Lines to stderr again; the file is closed. For tests and tools: call when
 * no other thread logs. */
void log_close_file(void);
void log_set_level(enum log_level level);
int log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_debug(...) do { if (log_enabled(LOGL_DEBUG)) log_msg(LOGL_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...) log_msg(LOGL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOGL_WARN, __VA_ARGS__)
#define log_err(...) log_msg(LOGL_ERR, __VA_ARGS__)

/* Bad environment at start-up: print "progname: message" and exit(2). */
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Broken invariant in our own code: log with the function name and abort(). */
_Noreturn void panic_at(const char *func, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
#define panic(...) panic_at(__func__, __VA_ARGS__)

/* Room for one piece of untrusted text in a log line (a command, a peer's
 * reply, a name or key from the network or Redis), and for one address (RFC
 * 5321 4.5.3.1.3: a path is at most 256 octets; a little more shows "..."
 * on a longer one). Escapes take four bytes each, so hostile text is cut
 * sooner: a line stays well under the line limit whatever a peer sends. */
#define LOG_TEXT_MAX 160
#define LOG_ADDR_MAX 300

/*
 * The one sanitiser for untrusted bytes in log lines: copy src[0..n) into
 * dst, at most dstlen-1 characters, control, non-ASCII and '\\' bytes as
 * \xNN (so a line can never be forged or split, and the escape is
 * unambiguous), "..." appended when cut. Always NUL-terminates (dstlen >= 8).
 * Returns dst (the caller's buffer; use it in the same log call).
 */
char *log_printable(char *dst, size_t dstlen, const char *src, size_t n);

#endif
