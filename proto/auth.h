/* SPDX-License-Identifier: MIT */
/*
 * auth: how the SMTP server asks whether a user's password is right (RFC
 * 4954 AUTH) without blocking its engine thread. The check itself (the
 * user's crypt(3) hash from Redis, crypt_r on a small pool of verifier
 * threads, the per-address limit on failures) lives in admin/, which fills
 * in a struct auth_backend; the server side only calls it and maps the
 * result to its reply.
 */
#ifndef ETRND_PROTO_AUTH_H
#define ETRND_PROTO_AUTH_H

#include <stddef.h>
#include <stdint.h>

/* Longest user name (admin/schema.h's SCHEMA_NAME_MAX) and password taken. */
#define AUTH_USER_MAX 64
#define AUTH_PASS_MAX 256

enum auth_result {
	AUTH_OK = 0,    /* 235 2.7.0 Authentication successful */
	AUTH_BAD,       /* 535 5.7.8 Authentication credentials invalid
	                   (unknown user and wrong password alike) */
	AUTH_TEMP,      /* 454 4.7.0 Temporary authentication failure
	                   (Redis unreachable, verifier queue full) */
	AUTH_LIMITED,   /* 454 4.7.0 too many failed attempts from this address:
	                   answered without checking the password */
};

struct loop;

/* The answer, on the loop that asked, in the turn after the check ends;
 * conn_handle names the connection (core/loop.h's loop_conn() says
 * whether it still exists). */
typedef void (*auth_done_fn)(void *done_arg, uint64_t conn_handle, enum auth_result r);

struct auth_backend {
	/*
	 * Check user (NUL-terminated, at most AUTH_USER_MAX bytes) and the
	 * password (passlen bytes, at most AUTH_PASS_MAX, may hold any byte
	 * but NUL) for the client at address client (printable). Thread-safe.
	 * The password is copied and the copy wiped after use; it is never
	 * logged. Returns 0: done(done_arg, conn_handle, result) runs exactly
	 * once, later, on loop l (through loop_post()); or AUTH_LIMITED /
	 * AUTH_TEMP as a negative number (-AUTH_LIMITED, -AUTH_TEMP) when
	 * answered at once, without a callback.
	 */
	int (*check)(void *arg, struct loop *l, uint64_t conn_handle,
		     const char *client, const char *user,
		     const char *pass, size_t passlen,
		     auth_done_fn done, void *done_arg);
	void *arg;
};

#endif
