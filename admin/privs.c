/* SPDX-License-Identifier: MIT */
/*
 * privs: bind as root, then run as `user =` (admin/privs.h). Two steps
 * because the engine threads both bind (needs CAP_NET_BIND_SERVICE below
 * port 1024) and create spool files (must be the run user's): step one
 * switches every id but the saved uid and keeps that one capability, step
 * two drops the saved uid and with it every capability, in every thread.
 */
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "admin/privs.h"
#include "core/log.h"

/* getpwnam_r's buffer; sysconf(_SC_GETPW_R_SIZE_MAX) says 1024 here, NSS
 * modules may want more: ERANGE is reported, not retried. */
#define PRIVS_PWBUF 16384
/* Modes a spool path must not have: group or others may write. */
#define PRIVS_BAD_MODE (S_IWGRP | S_IWOTH)

static int privs_fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int privs_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* One spool path: owned by uid; a directory also writable by its owner
 * alone. A file's mode is the spool's business (it creates them 0640).
 * follow: stat, not lstat (spool_dir itself may be a symlink); *st is
 * what was found. */
static int privs_check_path(const char *path, uid_t uid, int follow, struct stat *st,
			    char *err, size_t errlen)
{
	if (follow ? stat(path, st) : lstat(path, st))
		return privs_fail(err, errlen, "spool_dir: %s: %s", path, strerror(errno));
	if (st->st_uid != uid)
		return privs_fail(err, errlen,
				  "spool_dir: %s is owned by uid %u, etrnd runs as uid %u: "
				  "chown -R the spool to the run user",
				  path, (unsigned)st->st_uid, (unsigned)uid);
	if (S_ISDIR(st->st_mode) && (st->st_mode & PRIVS_BAD_MODE))
		return privs_fail(err, errlen,
				  "spool_dir: %s has mode %04o: other users may write it, "
				  "refusing to run (chmod go-w it)",
				  path, (unsigned)(st->st_mode & 07777));
	return 0;
}

/* Each entry of dir (not . and ..); into directories when depth > 0. */
static int privs_check_tree(const char *dir, uid_t uid, int depth, char *err,
			    size_t errlen)
{
	char path[PATH_MAX];
	struct stat st;
	struct dirent *de;
	DIR *d = opendir(dir);
	int rc = 0;

	if (!d)
		return privs_fail(err, errlen, "spool_dir: %s: %s", dir, strerror(errno));
	while (rc == 0 && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= sizeof(path)) {
			rc = privs_fail(err, errlen, "spool_dir: %s/%s: path too long", dir,
					de->d_name);
			break;
		}
		rc = privs_check_path(path, uid, 0, &st, err, errlen);
		if (rc == 0 && depth > 0 && S_ISDIR(st.st_mode))
			rc = privs_check_tree(path, uid, depth - 1, err, errlen);
	}
	closedir(d);
	return rc;
}

int privs_check_spool(const char *dir, uid_t uid, char *err, size_t errlen)
{
	struct stat st;

	if (stat(dir, &st) && errno == ENOENT)
		return 0;
	if (privs_check_path(dir, uid, 1, &st, err, errlen))
		return -1;
	/* spool/<shard>/<segment>: shards one level down, their files two. */
	return privs_check_tree(dir, uid, 1, err, errlen);
}

static int privs_lookup(struct privs *p, const char *name, char *err, size_t errlen)
{
	static char buf[PRIVS_PWBUF]; /* start-up only, one thread */
	struct passwd pw, *res = NULL;
	int rc = getpwnam_r(name, &pw, buf, sizeof(buf), &res);

	if (rc)
		return privs_fail(err, errlen, "user = %s: %s", name, strerror(rc));
	if (!res)
		return privs_fail(err, errlen, "user = %s: no such user", name);
	if (pw.pw_uid == 0)
		return privs_fail(err, errlen, "user = %s: that is root (uid 0): name an "
				  "unprivileged user for etrnd to run as", name);
	p->uid = pw.pw_uid;
	p->gid = pw.pw_gid;
	(void)snprintf(p->name, sizeof(p->name), "%s", name);
	return 0;
}

/* This thread's capability sets (linux/capability.h, version 3: two words
 * of 32 capabilities each); libcap would do the same two syscalls. */
static int privs_capset(uint32_t caps)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = { { 0 } };

	data[0].effective = data[0].permitted = caps;
	return syscall(SYS_capset, &h, data) ? -errno : 0;
}

static int privs_capget(uint64_t *eff, uint64_t *perm)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = { { 0 } };

	if (syscall(SYS_capget, &h, data))
		return -errno;
	*eff = data[0].effective | (uint64_t)data[1].effective << 32;
	*perm = data[0].permitted | (uint64_t)data[1].permitted << 32;
	return 0;
}

/* A uid change makes the process undumpable. panic() promises a core dump
 * (STYLE.md), and LeakSanitizer's tracer must attach at exit: the run user
 * is etrnd's own, so dumpable again after each change. */
static int privs_dumpable(char *err, size_t errlen)
{
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0))
		return privs_fail(err, errlen, "prctl(PR_SET_DUMPABLE): %s", strerror(errno));
	return 0;
}

/* Step one, as root: groups, gids, real and effective uid; saved uid 0
 * keeps the permitted set, which is cut to CAP_NET_BIND_SERVICE. */
static int privs_switch(const struct privs *p, char *err, size_t errlen)
{
	if (initgroups(p->name, p->gid))
		return privs_fail(err, errlen, "user = %s: initgroups: %s", p->name, strerror(errno));
	if (setresgid(p->gid, p->gid, p->gid))
		return privs_fail(err, errlen, "user = %s: setresgid(%u): %s", p->name,
				  (unsigned)p->gid, strerror(errno));
	if (setresuid(p->uid, p->uid, 0))
		return privs_fail(err, errlen, "user = %s: setresuid(%u): %s", p->name,
				  (unsigned)p->uid, strerror(errno));
	if (privs_capset(1u << CAP_NET_BIND_SERVICE))
		return privs_fail(err, errlen, "user = %s: capset(CAP_NET_BIND_SERVICE): %s",
				  p->name, strerror(errno));
	return privs_dumpable(err, errlen);
}

int privs_check_config(const struct config *cfg, char *err, size_t errlen)
{
	struct privs p;

	return cfg->user[0] ? privs_lookup(&p, cfg->user, err, errlen) : 0;
}

int privs_prepare(struct privs *p, const struct config *cfg, char *err, size_t errlen)
{
	uid_t euid = geteuid();

	memset(p, 0, sizeof(*p));
	p->uid = euid;
	p->gid = getegid();
	if (cfg->user[0] && privs_lookup(p, cfg->user, err, errlen))
		return -1;
	if (cfg->user[0] && euid != 0 && euid != p->uid)
		return privs_fail(err, errlen, "user = %s: etrnd runs as uid %u, not root, and "
				  "cannot become uid %u: start it as root or as %s",
				  cfg->user, (unsigned)euid, (unsigned)p->uid, cfg->user);
	if (!cfg->user[0] && euid == 0)
		log_warn("running as root: set user = in the configuration so that etrnd "
			 "drops to an unprivileged user once its ports are bound");
	if (privs_check_spool(cfg->spool_dir, p->uid, err, errlen))
		return -1;
	p->drop = cfg->user[0] && euid == 0;
	return p->drop ? privs_switch(p, err, errlen) : 0;
}

/* The drop took: every id the run user's, no capability, no way back. */
static int privs_verify(const struct privs *p, char *err, size_t errlen)
{
	uid_t r, e, s;
	gid_t rg, eg, sg;
	uint64_t ceff = 0, cperm = 0;

	if (getresuid(&r, &e, &s) || getresgid(&rg, &eg, &sg))
		return privs_fail(err, errlen, "user = %s: getresuid: %s", p->name, strerror(errno));
	if (r != p->uid || e != p->uid || s != p->uid || rg != p->gid || eg != p->gid ||
	    sg != p->gid)
		return privs_fail(err, errlen, "user = %s: ids are %u/%u/%u:%u/%u/%u after the "
				  "drop, want %u:%u", p->name, (unsigned)r, (unsigned)e,
				  (unsigned)s, (unsigned)rg, (unsigned)eg, (unsigned)sg,
				  (unsigned)p->uid, (unsigned)p->gid);
	if (privs_capget(&ceff, &cperm) || ceff || cperm)
		return privs_fail(err, errlen, "user = %s: capabilities left after the drop",
				  p->name);
	if (setuid(0) == 0 || seteuid(0) == 0)
		return privs_fail(err, errlen, "user = %s: setuid(0) still works after the drop",
				  p->name);
	return 0;
}

int privs_finish(const struct privs *p, char *err, size_t errlen)
{
	if (!p->drop)
		return 0;
	if (setresuid(p->uid, p->uid, p->uid))
		return privs_fail(err, errlen, "user = %s: setresuid(%u): %s", p->name,
				  (unsigned)p->uid, strerror(errno));
	if (privs_dumpable(err, errlen))
		return -1;
	if (privs_verify(p, err, errlen))
		return -1;
	log_info("running as user %s (uid %u, gid %u)", p->name, (unsigned)p->uid,
		 (unsigned)p->gid);
	return 0;
}
