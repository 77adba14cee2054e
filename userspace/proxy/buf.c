/*
 * The per-thread cache behind buf_ensure()/buf_free(). Each worker is one thread, so the
 * cache needs no lock. A few capacities are in use (client/upstream recv, client send,
 * request head), and a block is reused only for the same capacity so a buffer never
 * shrinks under its owner. Bounded: blocks beyond BUF_CACHE_SLOTS go back to malloc.
 */
#include <stdlib.h>

#include "proxy/buf.h"

#define BUF_CACHE_SLOTS 32

struct buf_cache {
	char *data[BUF_CACHE_SLOTS];
	uint32_t cap[BUF_CACHE_SLOTS];
	int n;
};

static __thread struct buf_cache cache;

char *buf_storage_take(uint32_t cap)
{
	for (int i = cache.n - 1; i >= 0; i--) {
		char *data = cache.data[i];

		if (cache.cap[i] != cap)
			continue;
		cache.n--;
		cache.data[i] = cache.data[cache.n];
		cache.cap[i] = cache.cap[cache.n];
		return data;
	}
	return malloc(cap);
}

void buf_storage_give(char *data, uint32_t cap)
{
	if (cache.n == BUF_CACHE_SLOTS) {
		free(data);
		return;
	}
	cache.data[cache.n] = data;
	cache.cap[cache.n] = cap;
	cache.n++;
}

void buf_storage_drain(void)
{
	while (cache.n)
		free(cache.data[--cache.n]);
}
