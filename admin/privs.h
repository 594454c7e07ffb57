/* SPDX-License-Identifier: MIT */
/*
 * privs: the run user. Started as root, etrnd binds its ports as root and
 * then runs as cfg->user (`user =`) for good: groups, gid and uid all
 * switched, no capability left, verified. Whoever it runs as, it refuses a
 * spool directory (or shard directory, or a file in one) that another user
 * owns or that group or others may write.
 */
#ifndef ETRND_ADMIN_PRIVS_H
#define ETRND_ADMIN_PRIVS_H

#include <stddef.h>
#include <sys/types.h>

#include "core/config.h"

/* Room for privs' errors: a path and what is wrong with it. */
#define PRIVS_ERR_MAX (PATH_MAX + 256)

/* What privs_prepare() decided; plain data, the caller's (no free). */
struct privs {
	int drop;       /* 1: started as root with user set: privs_finish() drops */
	uid_t uid;      /* the run user: cfg->user's, or the current euid */
	gid_t gid;
	char name[CONFIG_USER_MAX];
};

/*
 * Before any engine thread starts (they create the spool's files): look up
 * cfg->user, check cfg->spool_dir against that user, and when started as
 * root switch groups, gid and the effective and real uid to it, keeping
 * only CAP_NET_BIND_SERVICE (inherited by the engine threads, which bind
 * the listeners) and a saved uid of 0 until privs_finish(). So every spool
 * file is created by the run user. Started as root without `user`: a
 * warning, etrnd stays root. Not root but `user` names another user: an
 * error. Returns 0, or -1 with err set ("user = X: ...", "spool_dir P: ...").
 */
int privs_prepare(struct privs *p, const struct config *cfg, char *err, size_t errlen);

/*
 * After engine_start() (every listener bound): set all three uids to the
 * run user in every thread (glibc's setxid broadcast), which clears every
 * capability, then verify: ids as wanted, no capability, setuid(0) fails.
 * Does nothing unless p->drop. Returns 0, or -1 with err set.
 */
int privs_finish(const struct privs *p, char *err, size_t errlen);

/* For etrnd -t: cfg->user names an existing user other than root (or is
 * unset). Returns 0, or -1 with err set. */
int privs_check_config(const struct config *cfg, char *err, size_t errlen);

/*
 * The spool check alone (privs_prepare() runs it): dir, each directory in
 * it (the shards) and each entry of those must be owned by uid, and dir
 * and the shard directories writable by their owner alone. A dir that does
 * not exist yet passes (the spool creates it, 0750, as the run user).
 * Returns 0, or -1 with err naming the path, its owner and mode.
 */
int privs_check_spool(const char *dir, uid_t uid, char *err, size_t errlen);

#endif
