#include <stdlib.h>

#include "loop/timer.h"

static void place(struct timer_heap *h, size_t i, struct timer *t)
{
	h->v[i] = t;
	t->slot = i + 1;
}

static void sift_up(struct timer_heap *h, size_t i)
{
	struct timer *t = h->v[i];

	while (i) {
		size_t parent = (i - 1) / 2;

		if (h->v[parent]->due_ms <= t->due_ms)
			break;
		place(h, i, h->v[parent]);
		i = parent;
	}
	place(h, i, t);
}

static void sift_down(struct timer_heap *h, size_t i)
{
	struct timer *t = h->v[i];

	for (;;) {
		size_t child = 2 * i + 1;

		if (child >= h->n)
			break;
		if (child + 1 < h->n && h->v[child + 1]->due_ms < h->v[child]->due_ms)
			child++;
		if (h->v[child]->due_ms >= t->due_ms)
			break;
		place(h, i, h->v[child]);
		i = child;
	}
	place(h, i, t);
}

void timer_heap_free(struct timer_heap *h)
{
	for (size_t i = 0; i < h->n; i++)
		h->v[i]->slot = 0;
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}

bool timer_add(struct timer_heap *h, struct timer *t, uint64_t due_ms, timer_fn fire)
{
	if (timer_armed(t))
		timer_del(h, t);
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct timer **v = realloc(h->v, cap * sizeof(*v));

		if (!v)
			return false;
		h->v = v;
		h->cap = cap;
	}
	t->due_ms = due_ms;
	t->fire = fire;
	place(h, h->n++, t);
	sift_up(h, h->n - 1);
	return true;
}

void timer_del(struct timer_heap *h, struct timer *t)
{
	size_t i;
	struct timer *last;

	if (!timer_armed(t))
		return;
	i = t->slot - 1;
	t->slot = 0;
	last = h->v[--h->n];
	if (i == h->n)
		return;
	place(h, i, last);
	if (i && h->v[(i - 1) / 2]->due_ms > last->due_ms)
		sift_up(h, i);
	else
		sift_down(h, i);
}

uint64_t timer_next_in(const struct timer_heap *h, uint64_t now_ms)
{
	if (!h->n)
		return UINT64_MAX;
	return h->v[0]->due_ms > now_ms ? h->v[0]->due_ms - now_ms : 0;
}

size_t timer_run(struct timer_heap *h, uint64_t now_ms)
{
	size_t fired = 0;

	while (h->n && h->v[0]->due_ms <= now_ms) {
		struct timer *t = h->v[0];

		timer_del(h, t);
		fired++;
		t->fire(t); /* may re-arm itself or others */
	}
	return fired;
}
