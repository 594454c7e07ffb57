/* SPDX-License-Identifier: MIT */
/*
 * config_activator: the "activator.NAME.FIELD" keys of etrnd.conf (the
 * activators of core/config.h), between core/config.c and
 * core/config_activator.c only. The public helpers are in config.h.
 */
#ifndef ETRND_CORE_CONFIG_ACTIVATOR_H
#define ETRND_CORE_CONFIG_ACTIVATOR_H

#include <stddef.h>

#include "core/config.h"

#define CONFIG_ACTIVATOR_PREFIX "activator."
/* host, method, request, user, password_file, tls, schedule, idle_timeout */
#define CONFIG_ACTIVATOR_FIELDS 8

/* Whether key is an activator key (starts with CONFIG_ACTIVATOR_PREFIX). */
int config_activator_key(const char *key);

/*
 * Apply "activator.NAME.FIELD = value" from where (copied: the activator's
 * where on its first key, the field's own for config_finish's errors).
 * Creates activator NAME on its first key. Returns 0, or -1 with why set to
 * "activator NAME: what is wrong" (or "bad key ...": the caller adds where).
 */
int config_activator_set(struct config *c, const char *key, const char *value,
		const char *where, char *why, size_t whylen);

/* A number unique to the (NAME, FIELD) of an activator key already set,
 * below CONFIG_ACTIVATORS_MAX * CONFIG_ACTIVATOR_FIELDS (config_load's
 * duplicate-key warning); -1 for any other key. */
int config_activator_slot(const struct config *c, const char *key);

/* config_finish()'s part: each activator complete and consistent, its
 * password_file read, its port defaulted. -1 with err "WHERE: activator
 * NAME: what is wrong". */
int config_activators_finish(struct config *c, char *err, size_t errlen);

/* Release the activators (c->activators and what config.c keeps beside). */
void config_activators_free(struct config *c);

#endif
