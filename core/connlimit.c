/* SPDX-License-Identifier: MIT */
/*
 * connlimit: see connlimit.h. An entry's word a is the address's open
 * connections; it is pinned while above zero and dropped at zero, so the
 * table never evicts a live count and never holds an idle address.
 */
#include "core/connlimit.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "core/addrtab.h"
#include "core/log.h"

struct connlimit {
	unsigned limit;
	atomic_int warned;             /* a full table was logged */
	struct addrtab *tab;
};

static uint64_t connlimit_rank(void *arg, const struct addrtab_val *v, uint64_t now)
{
	(void)arg;
	(void)now;
	return v->a ? ADDRTAB_RANK_PINNED : ADDRTAB_RANK_FREE;
}

struct connlimit *connlimit_new(unsigned limit, unsigned max_addrs)
{
	struct connlimit *cl;

	if (limit == 0) {
		errno = EINVAL;
		return NULL;
	}
	cl = calloc(1, sizeof(*cl));
	if (!cl)
		return NULL;
	cl->limit = limit;
	cl->tab = addrtab_new(max_addrs, connlimit_rank, cl);
	if (!cl->tab) {
		int e = errno;

		free(cl);
		errno = e;
		return NULL;
	}
	return cl;
}

struct connlimit *connlimit_free(struct connlimit *cl)
{
	if (!cl)
		return NULL;
	addrtab_free(cl->tab);
	free(cl);
	return NULL;
}

static int connlimit_take_fn(void *arg, struct addrtab_val *v, enum addrtab_how how, int *drop)
{
	const struct connlimit *cl = arg;

	(void)how;
	(void)drop;
	/* A new entry starts at 0 < limit: never left behind at zero. */
	if (v->a >= cl->limit)
		return CONNLIMIT_OVER;
	v->a++;
	return CONNLIMIT_COUNTED;
}

enum connlimit_verdict connlimit_take(struct connlimit *cl, const char *client)
{
	int rc = addrtab_update(cl->tab, client, 0, ADDRTAB_CREATE, connlimit_take_fn, cl);

	if (rc >= 0)
		return (enum connlimit_verdict)rc;
	if (!atomic_exchange(&cl->warned, 1))
		log_warn("client_connection_limit: the table of %u client addresses is full; "
			 "connections from new addresses are not counted",
			 (unsigned)addrtab_capacity(cl->tab));
	return CONNLIMIT_UNCOUNTED;
}

static int connlimit_release_fn(void *arg, struct addrtab_val *v, enum addrtab_how how, int *drop)
{
	(void)arg;
	(void)how;
	if (v->a == 0)
		panic("release of an address with no connection counted");
	*drop = --v->a == 0;
	return 0;
}

void connlimit_release(struct connlimit *cl, const char *client)
{
	if (addrtab_update(cl->tab, client, 0, 0, connlimit_release_fn, NULL) == -ENOENT)
		panic("release of %s: not counted", client);
}

uint64_t connlimit_addrs(struct connlimit *cl)
{
	struct addrtab_stats st;

	addrtab_stats(cl->tab, &st);
	return st.addrs;
}
