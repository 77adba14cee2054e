/* Route rate-limit filter: token buckets keyed by client address, consumer or route. */
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "config/config.h"
#include "filters/filters.h"
#include "metrics/metrics.h"
#include "ratelimit/ratelimit.h"

static enum filter_verdict ratelimit_request(struct stream *st, void *state)
{
	const struct route_config *rc = &st->cfg->routes[st->route];
	const char *key = st->peer_ip;
	uint32_t retry_after = 1;
	char extra[64];

	switch (ratelimit_policy_by(rc->rate_limit)) {
	case RL_BY_CONSUMER:
		if (st->consumer[0])
			key = st->consumer;
		break;
	case RL_BY_ROUTE:
		key = "";
		break;
	case RL_BY_IP:
		break;
	}
	if (ratelimit_take(rc->rate_limit, key, strlen(key), clock_mono_ns(), &retry_after))
		return FILTER_CONTINUE;
	metrics_rate_limited(st->env->metrics, rc->metrics_slot);
	snprintf(extra, sizeof(extra), "Retry-After: %u\r\n", retry_after ? retry_after : 1);
	stream_reply_error(st, 429, "rate limited", extra);
	return FILTER_DONE;
}

const struct filter filter_rate_limit = {
	.name = "rate_limit",
	.on_request = ratelimit_request,
};
