/* SPDX-License-Identifier: MIT */
/*
 * etrnctl_atrn: `etrnctl etrn --atrn`. etrnctl cannot serve ATRN's reversed
 * session (what arrives must be spooled), so it asks the running etrnd for
 * a one-shot ATRN activator run over the control socket ("activate ...",
 * admin/ctl_activate.h) and polls that run's status ("activators json
 * oneshot-N") until the upstream's ATRN reply is known and the run ended.
 */
#ifndef ETRND_ADMIN_ETRNCTL_ATRN_H
#define ETRND_ADMIN_ETRNCTL_ATRN_H

#include "admin/etrnctl_etrn.h"

/* Run e (checked by etrnctl_etrn_check()) against host:port with tls (enum
 * config_activator_tls), waiting at most timeout_ms for the run. Prints the
 * ATRN reply and its meaning; returns the exit status: 0 on 250, 1
 * otherwise (also: no daemon, the daemon refused, no reply in time). */
int etrnctl_atrn_run(const struct etrnctl_etrn *e, const char *host, unsigned port, int tls,
		int timeout_ms);

#endif
