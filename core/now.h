/* SPDX-License-Identifier: MIT */
/*
 * now: the clocks, read in the units the code keeps them in. Monotonic
 * milliseconds for deadlines and time-outs (never jumps with the wall
 * clock); wall-clock microseconds for what is recorded or shown (spool
 * record times, drain durations). Header-only; any thread.
 */
#ifndef ETRND_CORE_NOW_H
#define ETRND_CORE_NOW_H

#include <stdint.h>
#include <time.h>

static inline uint64_t now_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint64_t now_wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#endif
