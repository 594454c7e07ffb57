/* SPDX-License-Identifier: MIT */
/*
 * log: one line per event to stderr or syslog, Postfix style. Three kinds of
 * error (STYLE.md): panic() for a broken invariant of our own (abort, core
 * dump), fatal() for a bad environment at start-up (exit 2), and plain
 * log_warn()/log_err() for anything a peer, the disk or Redis does at run time.
 * Thread-safe: each line is formatted into a local buffer and written with one
 * write(2) (stderr) or syslog(3) call.
 */
#ifndef ETRND_CORE_LOG_H
#define ETRND_CORE_LOG_H

#include <stddef.h>

enum log_level { LOGL_DEBUG = 0, LOGL_INFO = 1, LOGL_WARN = 2, LOGL_ERR = 3 };

/* Set the program name, minimum level and destination (use_syslog != 0). */
void log_init(const char *progname, enum log_level level, int use_syslog);
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

/* Copy untrusted bytes for a log line: at most dstlen-1 characters, control
 * and non-ASCII bytes as \xNN, "..." appended when truncated. Always
 * NUL-terminates (dstlen >= 8). Returns dst. */
char *log_printable(char *dst, size_t dstlen, const char *src, size_t n);

#endif
