/* SPDX-License-Identifier: MIT */
/*
 * core/log.c's panic(): a broken invariant ends the process with SIGABRT
 * (a core dump), never returns (STYLE.md, Errors). Criterion runs the case
 * in a child and fails it unless that child dies of SIGABRT.
 */
#include <criterion/criterion.h>
#include <signal.h>

#include "core/log.h"

Test(panic, aborts, .signal = SIGABRT)
{
	panic("invariant %d broken", 7);
}
