/*
 * Process-wide target state registry and the circuit breaker.
 *
 * Breaker: CLOSED --(failures consecutive failures)--> OPEN --(open_ms)--> HALF_OPEN, which
 * lets exactly one probe request through: its success closes the breaker, its failure
 * re-opens it for another open_ms. A probe that never reports (the request was abandoned)
 * is considered lost after open_ms and the next request becomes the probe.
 */
#include "upstream/upstream.h"
#include "upstream/upstream_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct target_entry {
	struct target_entry *next;
	char *upstream, *address;
	struct target_state state;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct target_entry *registry;

/* Entries are never freed: workers may hold the pointer across any number of reloads. */
struct target_state *target_state_get(const char *upstream, const char *address)
{
	struct target_entry *e;

	pthread_mutex_lock(&registry_lock);
	for (e = registry; e; e = e->next)
		if (!strcmp(e->upstream, upstream) && !strcmp(e->address, address))
			goto out;
	e = calloc(1, sizeof(*e));
	if (!e)
		goto out;
	e->upstream = strdup(upstream);
	e->address = strdup(address);
	if (!e->upstream || !e->address) {
		free(e->upstream);
		free(e->address);
		free(e);
		e = NULL;
		goto out;
	}
	/* Optimistic start: traffic flows before the first health check completes. */
	atomic_init(&e->state.up, true);
	atomic_init(&e->state.breaker, BREAKER_CLOSED);
	e->next = registry;
	registry = e;
out:
	pthread_mutex_unlock(&registry_lock);
	return e ? &e->state : NULL;
}

struct queue_entry {
	struct queue_entry *next;
	char *upstream;
	struct upstream_queue_stats stats;
};

static struct queue_entry *queue_registry;

/* Never freed, like target states: workers keep the pointer across reloads. */
struct upstream_queue_stats *upstream_queue_stats_get(const char *upstream)
{
	struct queue_entry *e;

	pthread_mutex_lock(&registry_lock);
	for (e = queue_registry; e; e = e->next)
		if (!strcmp(e->upstream, upstream))
			goto out;
	e = calloc(1, sizeof(*e));
	if (!e)
		goto out;
	e->upstream = strdup(upstream);
	if (!e->upstream) {
		free(e);
		e = NULL;
		goto out;
	}
	e->next = queue_registry;
	queue_registry = e;
out:
	pthread_mutex_unlock(&registry_lock);
	return e ? &e->stats : NULL;
}

bool target_claim_slot(struct target_state *t, uint32_t cap)
{
	int cur;

	if (!cap) {
		atomic_fetch_add(&t->active, 1);
		return true;
	}
	/* Compare-and-swap so two workers never both take the last slot. */
	cur = atomic_load(&t->active);
	do {
		if (cur >= (int)cap)
			return false;
	} while (!atomic_compare_exchange_weak(&t->active, &cur, cur + 1));
	return true;
}

enum target_admit target_peek(const struct target_state *t, const struct breaker_config *b,
			      uint64_t now_ms)
{
	if (!t)
		return TARGET_ADMIT;
	if (!atomic_load(&t->up))
		return TARGET_REFUSE;
	if (!b || !b->enabled)
		return TARGET_ADMIT;
	switch (atomic_load(&t->breaker)) {
	case BREAKER_CLOSED:
		return TARGET_ADMIT;
	case BREAKER_OPEN:
		return now_ms >= atomic_load(&t->open_until_ms) ? TARGET_PROBE : TARGET_REFUSE;
	default:
		if (!atomic_load(&t->probe_in_flight) || now_ms >= atomic_load(&t->open_until_ms))
			return TARGET_PROBE;
		return TARGET_REFUSE;
	}
}

/*
 * Claims the single half-open probe slot. The slot flag is taken before the state says
 * HALF_OPEN, and open_until (the probe deadline) is written before that, so a thread that
 * sees HALF_OPEN also sees the current deadline.
 */
bool target_probe_claim(struct target_state *t, const struct breaker_config *b, uint64_t now_ms)
{
	int state = atomic_load(&t->breaker);
	bool free_slot = false;
	uint64_t deadline;

	if (state == BREAKER_CLOSED)
		return true;
	if (state == BREAKER_OPEN && now_ms < atomic_load(&t->open_until_ms))
		return false;
	if (atomic_compare_exchange_strong(&t->probe_in_flight, &free_slot, true)) {
		atomic_store(&t->open_until_ms, now_ms + b->open_ms);
		atomic_store(&t->breaker, BREAKER_HALF_OPEN);
		return true;
	}
	if (state != BREAKER_HALF_OPEN)
		return false;
	deadline = atomic_load(&t->open_until_ms);
	return now_ms >= deadline &&
	       atomic_compare_exchange_strong(&t->open_until_ms, &deadline, now_ms + b->open_ms);
}

bool target_available(struct target_state *t, const struct breaker_config *b, uint64_t now_ms)
{
	switch (target_peek(t, b, now_ms)) {
	case TARGET_ADMIT:
		return true;
	case TARGET_PROBE:
		return target_probe_claim(t, b, now_ms);
	default:
		return false;
	}
}

static void breaker_open(struct target_state *t, const struct breaker_config *b, uint64_t now_ms)
{
	atomic_store(&t->open_until_ms, now_ms + b->open_ms);
	atomic_store(&t->breaker, BREAKER_OPEN);
	atomic_store(&t->consecutive_fail, 0);
	atomic_store(&t->probe_in_flight, false);
}

void target_report(struct target_state *t, const struct breaker_config *b, bool success,
		   uint64_t now_ms)
{
	unsigned threshold, fails;
	int state;

	if (!t || !b || !b->enabled)
		return;
	state = atomic_load(&t->breaker);
	if (success) {
		atomic_store(&t->consecutive_fail, 0);
		if (state != BREAKER_CLOSED) {
			atomic_store(&t->breaker, BREAKER_CLOSED);
			atomic_store(&t->probe_in_flight, false);
		}
		return;
	}
	if (state == BREAKER_HALF_OPEN) {
		breaker_open(t, b, now_ms);
		return;
	}
	/* Late failures of requests sent before it opened must not extend the open period. */
	if (state == BREAKER_OPEN)
		return;
	threshold = b->failures ? b->failures : 1;
	fails = atomic_fetch_add(&t->consecutive_fail, 1) + 1;
	if (fails >= threshold)
		breaker_open(t, b, now_ms);
}
