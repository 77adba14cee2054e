/*
 * A worker's timers: a binary min-heap of deadlines, checked after each completion batch
 * and bounding how long the worker's ring waits. Single-threaded; a timer is embedded in
 * its owner, which must delete it before freeing it.
 */
#ifndef XGATE_LOOP_TIMER_H
#define XGATE_LOOP_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct timer;
typedef void (*timer_fn)(struct timer *t);

struct timer {
	uint64_t due_ms;
	size_t slot; /* index in the heap + 1; 0 when not armed */
	timer_fn fire;
};

struct timer_heap {
	struct timer **v;
	size_t n, cap;
};

void timer_heap_free(struct timer_heap *h);
/* Arms (or re-arms) t for due_ms; false on memory exhaustion. */
bool timer_add(struct timer_heap *h, struct timer *t, uint64_t due_ms, timer_fn fire);
void timer_del(struct timer_heap *h, struct timer *t);
static inline bool timer_armed(const struct timer *t)
{
	return t->slot != 0;
}
/* Milliseconds until the earliest deadline (0 when due), or UINT64_MAX when none. */
uint64_t timer_next_in(const struct timer_heap *h, uint64_t now_ms);
/* Fires every timer due at now_ms, earliest first; returns how many fired. */
size_t timer_run(struct timer_heap *h, uint64_t now_ms);

#endif
