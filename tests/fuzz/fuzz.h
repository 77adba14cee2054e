/*
 * Shared helpers for the libFuzzer harnesses. A broken invariant aborts with a message so
 * libFuzzer records the input as a crash, exactly like a sanitizer report.
 */
#ifndef XGATE_TESTS_FUZZ_H
#define XGATE_TESTS_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "invariant failed at %s:%d: %s\n", __FILE__, __LINE__,     \
				#cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* Heap copy of exactly n bytes, so ASan sees any read past the input's end. */
static inline char *fuzz_dup(const uint8_t *data, size_t n)
{
	char *p = malloc(n ? n : 1);

	FUZZ_CHECK(p != NULL);
	if (n)
		memcpy(p, data, n);
	return p;
}

/* True when s[0..len) lies inside buf[0..n) (empty strings may point anywhere). */
static inline bool fuzz_within(const char *s, size_t len, const char *buf, size_t n)
{
	if (!len)
		return true;
	return s >= buf && s <= buf + n && len <= (size_t)(buf + n - s);
}

/* Deterministic pseudo-random stream seeded from the input, for splits and choices. */
static inline uint64_t fuzz_seed(const uint8_t *data, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ data[i]) * 0x100000001b3ULL;
	return h | 1;
}

static inline uint64_t fuzz_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

#endif
