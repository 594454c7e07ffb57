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

/* The wall clock (CLOCK_REALTIME) ms from now, as pthread_cond_timedwait()
 * wants its deadline. */
static inline struct timespec now_realtime_after(unsigned ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

static inline uint64_t now_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Monotonic microseconds: for measuring short intervals (fsync latency). */
static inline uint64_t now_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline uint64_t now_wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/*
 * The test clock (config test_clock): a process-wide step, added to the
 * wall clock of the outbound scheduler and of expiry, that the control
 * socket's "clock step" moves forward (never back), so tests drive
 * back-off and expiry without sleeping. 0 unless a test stepped it.
 */
uint64_t now_step_us(void);
void now_step_add(uint64_t us);

/* The wall clock (µs) the outbound scheduler and expiry keep: the real one
 * plus offset_us (the config's clock_offset) plus the test clock's step. */
static inline uint64_t now_shifted_us(int64_t offset_us)
{
	return (uint64_t)((int64_t)now_wall_us() + offset_us) + now_step_us();
}

#endif
