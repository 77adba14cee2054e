/*
 * Building text without the printf family on per-request paths (a vsnprintf costs more
 * than the bytes it writes): bounded appends and decimal numbers.
 */
#ifndef XGATE_COMMON_FMT_H
#define XGATE_COMMON_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FMT_U64_MAX 20 /* digits of UINT64_MAX */

/* Decimal digits of v at out (room for FMT_U64_MAX); returns their count. */
static inline size_t fmt_u64(char *out, uint64_t v)
{
	char tmp[FMT_U64_MAX];
	size_t n = 0, i;

	do {
		tmp[n++] = '0' + v % 10;
		v /= 10;
	} while (v);
	for (i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

/* Appends len bytes at out + *n when they fit with a NUL after them; false (and nothing
 * written) when they do not. */
static inline bool fmt_append(char *out, size_t cap, size_t *n, const char *s, size_t len)
{
	if (*n + len >= cap)
		return false;
	memcpy(out + *n, s, len);
	*n += len;
	out[*n] = '\0';
	return true;
}

static inline bool fmt_append_str(char *out, size_t cap, size_t *n, const char *s)
{
	return fmt_append(out, cap, n, s, strlen(s));
}

#endif
