/* SPDX-License-Identifier: MIT */
/*
 * activator: placeholder so that the daemon links while part R writes the
 * registry and its runs (proto/activator.h). An empty registry: no
 * activator runs.
 */
#include <errno.h>
#include <stdlib.h>

#include "proto/activator.h"

struct activators {
	const struct config *cfg;
};

struct activators *activators_new(const struct config *cfg)
{
	struct activators *a = calloc(1, sizeof(*a));

	if (a)
		a->cfg = cfg;
	return a;
}

struct activators *activators_free(struct activators *a)
{
	free(a);
	return NULL;
}
