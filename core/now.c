/* SPDX-License-Identifier: MIT */
/*
 * now: the test clock's step (see now.h); the clocks themselves are
 * header-only.
 */
#include "core/now.h"

#include <stdatomic.h>

static _Atomic uint64_t now_step;

uint64_t now_step_us(void)
{
	return atomic_load_explicit(&now_step, memory_order_acquire);
}

void now_step_add(uint64_t us)
{
	atomic_fetch_add_explicit(&now_step, us, memory_order_acq_rel);
}
