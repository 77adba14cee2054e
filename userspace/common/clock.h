/* The clocks every part of the gateway reads: monotonic for intervals, wall for token times. */
#ifndef XGATE_COMMON_CLOCK_H
#define XGATE_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t clock_mono_ms(void)
{
	return clock_mono_ns() / 1000000ull;
}

/*
 * Wall-clock seconds for comparing with times in credentials (JWT exp/nbf/iat, introspection).
 * Not time(NULL): its vDSO fast path reads the coarse clock, which lags CLOCK_REALTIME by up
 * to a few ticks, so a token issued "now" by a client with an exact clock looked not yet
 * valid for the first milliseconds of every second.
 */
static inline time_t clock_wall_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec;
}

#endif
