/* The worker timer heap: order, deletion from any position, re-arming, next deadline. */
#include <stdlib.h>
#include <string.h>

#include "loop/timer.h"
#include "unit/check.h"

struct probe {
	struct timer t;
	int id;
};

static int fired[1024], nfired;

static void on_fire(struct timer *t)
{
	fired[nfired++] = ((struct probe *)t)->id;
}

static void test_fires_in_deadline_order(void)
{
	struct timer_heap h = { 0 };
	struct probe p[200];
	uint64_t last = 0;

	nfired = 0;
	srand(7);
	for (int i = 0; i < 200; i++) {
		memset(&p[i], 0, sizeof(p[i]));
		p[i].id = i;
		CHECK(timer_add(&h, &p[i].t, 1000 + rand() % 5000, on_fire));
	}
	CHECK_EQ(timer_run(&h, 999), 0);
	CHECK_EQ(timer_run(&h, 100000), 200);
	for (int i = 0; i < nfired; i++) {
		CHECK(p[fired[i]].t.due_ms >= last);
		last = p[fired[i]].t.due_ms;
		CHECK(!timer_armed(&p[fired[i]].t));
	}
	CHECK_EQ(timer_next_in(&h, 0), (long long)UINT64_MAX);
	timer_heap_free(&h);
}

static void test_delete_anywhere_and_rearm(void)
{
	struct timer_heap h = { 0 };
	struct probe p[64];

	nfired = 0;
	for (int i = 0; i < 64; i++) {
		memset(&p[i], 0, sizeof(p[i]));
		p[i].id = i;
		timer_add(&h, &p[i].t, 100 + i, on_fire);
	}
	for (int i = 0; i < 64; i += 3)
		timer_del(&h, &p[i].t);
	timer_del(&h, &p[0].t); /* deleting twice is harmless */
	timer_add(&h, &p[63].t, 50, on_fire); /* re-arm earlier: moves to the front */
	CHECK_EQ(timer_next_in(&h, 40), 10);
	CHECK_EQ(timer_next_in(&h, 60), 0);
	CHECK_EQ(timer_run(&h, 1000), 64 - 22 + 1); /* 63 was deleted, then re-armed */
	CHECK_EQ(fired[0], 63);
	for (int i = 0; i < nfired; i++)
		CHECK(fired[i] % 3 != 0 || fired[i] == 63);
	timer_heap_free(&h);
}

static struct timer_heap *rearm_heap;
static int rearm_count;

static void rearm_fire(struct timer *t)
{
	if (++rearm_count < 3)
		timer_add(rearm_heap, t, t->due_ms + 10, rearm_fire);
}

static void test_fire_may_rearm(void)
{
	struct timer_heap h = { 0 };
	struct timer t = { 0 };

	rearm_heap = &h;
	rearm_count = 0;
	timer_add(&h, &t, 10, rearm_fire);
	CHECK_EQ(timer_run(&h, 15), 1);
	CHECK(timer_armed(&t));
	CHECK_EQ(timer_run(&h, 100), 2);
	CHECK(!timer_armed(&t));
	timer_heap_free(&h);
}

int main(void)
{
	RUN(test_fires_in_deadline_order);
	RUN(test_delete_anywhere_and_rearm);
	RUN(test_fire_may_rearm);
	return CHECK_DONE();
}
