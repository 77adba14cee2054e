/* Route rate-limit filter: token buckets keyed by client address, identity or route. */
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "config/config.h"
#include "filters/filters.h"
#include "metrics/metrics.h"
#include "ratelimit/ratelimit.h"

/*
 * The bucket a request counts in: the route's one, the caller's identity (namespaced by
 * credential kind), or the client address (an IPv6 client by its /64). Anonymous callers
 * of a "by": "consumer" limit count by address; the "ip:" prefix keeps them apart from
 * identities.
 */
const char *filter_limit_key(const struct stream *st, enum ratelimit_by by, char *buf,
			     size_t cap)
{
	if (by == RL_BY_ROUTE)
		return "route";
	if (by == RL_BY_CONSUMER && st->identity[0])
		return st->identity;
	ratelimit_ip_key(st->peer_ip ? st->peer_ip : "", buf, cap);
	return buf;
}

static enum filter_verdict ratelimit_request(struct stream *st, void *state)
{
	const struct route_config *rc = &st->cfg->routes[st->route];
	char ipkey[RATELIMIT_IP_KEY_LEN];
	const char *key = filter_limit_key(st, ratelimit_policy_by(rc->rate_limit), ipkey,
					   sizeof(ipkey));
	uint32_t retry_after = 1;
	char extra[64];

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
