/*
 * Split filter (canary / blue-green): picks the upstream pool of the request among the
 * route's split entries (split/split.h). It runs after authentication, so stickiness by
 * consumer sees the consumer, and before the cache, whose key then includes the pool: a
 * canary's response is never served to the stable pool's clients.
 */
#include <string.h>
#include <sys/random.h>

#include "common/clock.h"
#include "config/config.h"
#include "filters/filters.h"
#include "metrics/metrics.h"
#include "split/split.h"
#include "upstream/upstream.h"

/* Per-worker generator for the requests that have no sticky key. */
static __thread uint64_t rng_state;

static uint64_t rng_next(void)
{
	if (!rng_state && getrandom(&rng_state, sizeof(rng_state), 0) != sizeof(rng_state))
		rng_state = clock_mono_ns() | 1;
	/* xorshift64*: fast, and a split needs no more than an even spread. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static enum filter_verdict split_request(struct stream *st, void *state)
{
	const struct split_policy *p = st->cfg->routes[st->route].split;
	struct http_str key;
	int i = split_match(p, &st->req);

	if (i < 0)
		i = split_pick(p, split_sticky_value(p, &st->req, st->peer_ip, st->consumer, &key)
				      ? hash_key64(key.p, key.len)
				      : rng_next());
	if (i >= 0) {
		st->upstream = p->entries[i].upstream;
		metrics_split_request(st->env->metrics, p->entries[i].metrics_slot);
	}
	return FILTER_CONTINUE;
}

const struct filter filter_split = {
    .name = "split",
    .on_request = split_request,
};
