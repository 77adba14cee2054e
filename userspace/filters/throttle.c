/*
 * Throttle filter: excess requests are held on the worker's timers until their slot
 * (ratelimit/ throttle_admit) instead of being refused; the worker never blocks and holds
 * no thread. A held request whose client leaves ends its stream, and on_end drops the timer.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "config/config.h"
#include "filters/filters.h"
#include "loop/timer.h"
#include "metrics/metrics.h"
#include "ratelimit/ratelimit.h"

struct throttle_state {
	struct timer timer;
	struct stream_ref ref;
	struct timer_heap *heap;
	bool held;
};

static void throttle_fire(struct timer *t)
{
	struct throttle_state *ts = (struct throttle_state *)((char *)t -
							       offsetof(struct throttle_state, timer));

	stream_ref_wake(ts->ref);
}

static enum filter_verdict throttle_request(struct stream *st, void *state)
{
	struct throttle_state *ts = state;
	const struct route_config *rc = &st->cfg->routes[st->route];
	char ipkey[RATELIMIT_IP_KEY_LEN];
	const char *key;
	uint64_t delay_ns;
	uint32_t retry_after = 1;
	char extra[64];

	if (ts->held)
		return timer_armed(&ts->timer) ? FILTER_WAIT : FILTER_CONTINUE;
	key = filter_limit_key(st, throttle_policy_by(rc->throttle), ipkey, sizeof(ipkey));
	switch (throttle_admit(rc->throttle, key, strlen(key), clock_mono_ns(), &delay_ns,
			       &retry_after)) {
	case THROTTLE_PASS:
		return FILTER_CONTINUE;
	case THROTTLE_DELAY:
		ts->held = true;
		ts->ref = stream_ref(st);
		ts->heap = st->env->timers;
		if (!timer_add(ts->heap, &ts->timer, st->now_ms + (delay_ns + 999999) / 1000000,
			       throttle_fire))
			return FILTER_CONTINUE; /* out of memory: let it through rather than stall */
		return FILTER_WAIT;
	case THROTTLE_REJECT:
		break;
	}
	metrics_rate_limited(st->env->metrics, rc->metrics_slot);
	snprintf(extra, sizeof(extra), "Retry-After: %u\r\n", retry_after);
	stream_reply_error(st, 429, "throttled", extra);
	return FILTER_DONE;
}

static void throttle_end(struct stream *st, void *state)
{
	struct throttle_state *ts = state;

	if (ts->heap)
		timer_del(ts->heap, &ts->timer);
}

const struct filter filter_throttle = {
	.name = "throttle",
	.state_size = sizeof(struct throttle_state),
	.on_request = throttle_request,
	.on_end = throttle_end,
};
