/*
 * The worker's queue of requests waiting for an upstream connection slot
 * (max_conns_per_target, HAProxy maxconn / timeout queue). One FIFO list per worker: a
 * retry pass walks it oldest first, so within an upstream the oldest waiter takes the
 * first free slot. Waiting costs no thread and no I/O beyond the client's armed recv
 * (which notices a client that leaves).
 */
#include <stddef.h>

#include "common/clock.h"
#include "proxy/proxy.h"

/* Slots freed by other workers are seen at most this late. */
#define UPQUEUE_POLL_MS 5

static struct upstream_queue_stats *queue_stats(struct conn *c)
{
	return c->ex && c->ex->upstream >= 0 ? c->cfg->upstreams[c->ex->upstream].queue : NULL;
}

static void queue_expired(struct timer *t)
{
	struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, qtimer));
	struct upstream_queue_stats *qs = queue_stats(c);

	upqueue_remove(c);
	if (qs)
		atomic_fetch_add(&qs->timeouts, 1);
	conn_queue_expired(c);
}

static void queue_run(struct timer *t)
{
	struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, queue_timer));
	struct conn *c = w->queue_head, *next;

	while (c) {
		next = c->qnext; /* a retry only ever unlinks c itself */
		conn_queue_retry(c);
		c = next;
	}
	if (w->queue_head)
		timer_add(&w->timers, &w->queue_timer, w->now_ms + UPQUEUE_POLL_MS, queue_run);
}

void upqueue_add(struct conn *c, uint32_t timeout_ms)
{
	struct worker *w = c->cli.w;
	struct upstream_queue_stats *qs = queue_stats(c);

	if (c->queued)
		return;
	c->queued = true;
	c->queued_ns = clock_mono_ns();
	c->qnext = NULL;
	c->qprev = w->queue_tail;
	if (w->queue_tail)
		w->queue_tail->qnext = c;
	else
		w->queue_head = c;
	w->queue_tail = c;
	if (qs)
		atomic_fetch_add(&qs->depth, 1);
	/* On memory exhaustion the wait is bounded by the client's patience only. */
	timer_add(&w->timers, &c->qtimer, w->now_ms + timeout_ms, queue_expired);
	if (!timer_armed(&w->queue_timer))
		timer_add(&w->timers, &w->queue_timer, w->now_ms + UPQUEUE_POLL_MS, queue_run);
}

void upqueue_remove(struct conn *c)
{
	struct worker *w = c->cli.w;
	struct upstream_queue_stats *qs;

	if (!c->queued)
		return;
	qs = queue_stats(c);
	c->queued = false;
	timer_del(&w->timers, &c->qtimer);
	if (c->qprev)
		c->qprev->qnext = c->qnext;
	else
		w->queue_head = c->qnext;
	if (c->qnext)
		c->qnext->qprev = c->qprev;
	else
		w->queue_tail = c->qprev;
	c->qnext = c->qprev = NULL;
	if (qs)
		atomic_fetch_sub(&qs->depth, 1);
	if (!w->queue_head)
		timer_del(&w->timers, &w->queue_timer);
}

void upqueue_released(struct worker *w)
{
	if (w->queue_head)
		timer_add(&w->timers, &w->queue_timer, w->now_ms, queue_run);
}

void upqueue_granted(struct conn *c)
{
	struct upstream_queue_stats *qs = queue_stats(c);

	if (!c->queued)
		return;
	if (qs) {
		atomic_fetch_add(&qs->dequeued, 1);
		atomic_fetch_add(&qs->wait_us, (clock_mono_ns() - c->queued_ns) / 1000);
	}
	upqueue_remove(c);
}
