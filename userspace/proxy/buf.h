/*
 * Fixed-capacity byte buffer. The storage never moves while it exists, so the kernel may
 * read from it (an in-flight send) while bytes are appended at the tail; only
 * buf_compact() moves bytes, and callers do that only with no send in flight.
 *
 * Storage comes from a small per-thread cache of freed blocks (buf.c): connections take
 * and release their buffers at every keep-alive request, and malloc/free of ~100 KiB
 * blocks cost more than the rest of the buffer handling.
 */
#ifndef XGATE_PROXY_BUF_H
#define XGATE_PROXY_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct buf {
	char *data;
	uint32_t start, end, cap;
};

static inline size_t buf_len(const struct buf *b)
{
	return b->end - b->start;
}

static inline size_t buf_space(const struct buf *b)
{
	return b->cap - b->end;
}

static inline char *buf_head(const struct buf *b)
{
	return b->data + b->start;
}

char *buf_storage_take(uint32_t cap);
void buf_storage_give(char *data, uint32_t cap);
/* Frees the calling thread's cached blocks (before the thread exits). */
void buf_storage_drain(void);

/* Allocates the storage on first use. */
static inline bool buf_ensure(struct buf *b, uint32_t cap)
{
	if (b->data)
		return true;
	b->data = buf_storage_take(cap);
	if (!b->data)
		return false;
	b->cap = cap;
	b->start = b->end = 0;
	return true;
}

static inline void buf_consume(struct buf *b, size_t n)
{
	b->start += n;
	if (b->start == b->end)
		b->start = b->end = 0;
}

static inline void buf_compact(struct buf *b)
{
	if (!b->start)
		return;
	memmove(b->data, b->data + b->start, b->end - b->start);
	b->end -= b->start;
	b->start = 0;
}

static inline bool buf_append(struct buf *b, const void *p, size_t n)
{
	if (buf_space(b) < n)
		return false;
	memcpy(b->data + b->end, p, n);
	b->end += n;
	return true;
}

static inline void buf_free(struct buf *b)
{
	if (b->data)
		buf_storage_give(b->data, b->cap);
	memset(b, 0, sizeof(*b));
}

/* Releases idle storage (keep-alive connections waiting for their next request). */
static inline void buf_release_if_empty(struct buf *b)
{
	if (b->data && b->start == b->end)
		buf_free(b);
}

#endif
