/*
 * Route rate-limit filter: token buckets keyed by client address, identity or route —
 * this node's (ratelimit/), or for "scope": "cluster" every node's, in Redis (cluster/):
 * the request takes a token of its worker's lease or waits for its worker's call (each
 * worker's lease is at most a tenth of the burst over every worker of every node), and
 * when Redis cannot answer, on_redis_error decides, per request, from the state of the
 * connection at that moment.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cluster/cluster.h"
#include "cluster/lease.h"
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

struct rl_state {
	struct cluster_waiter w;
	struct stream_ref ref;
	bool asked; /* the cluster call was made; w.verdict tells its outcome */
};

static enum filter_verdict limited(struct stream *st, const struct route_config *rc,
				   uint32_t retry_after)
{
	char extra[64];

	metrics_rate_limited(st->env->metrics, rc->metrics_slot);
	snprintf(extra, sizeof(extra), "Retry-After: %u\r\n", retry_after ? retry_after : 1);
	stream_reply_error(st, 429, "rate limited", extra);
	return FILTER_DONE;
}

static enum filter_verdict local_take(struct stream *st, const struct route_config *rc,
				      const char *key)
{
	uint32_t retry_after = 1;

	if (ratelimit_take(rc->rate_limit, key, strlen(key), clock_mono_ns(), &retry_after))
		return FILTER_CONTINUE;
	return limited(st, rc, retry_after);
}

static enum filter_verdict fallback(struct stream *st, const struct route_config *rc,
				    const char *key)
{
	metrics_ratelimit_fallback(st->env->metrics, rc->metrics_slot);
	switch (st->cfg->cluster->on_error) {
	case CLUSTER_ON_ERROR_OPEN:
		return FILTER_CONTINUE;
	case CLUSTER_ON_ERROR_CLOSED:
		stream_reply_error(st, 503, "rate limit store unavailable", NULL);
		return FILTER_DONE;
	case CLUSTER_ON_ERROR_LOCAL:
		break;
	}
	return local_take(st, rc, key); /* the policy's buckets hold this node's share */
}

static void rl_wake(struct cluster_waiter *w)
{
	struct rl_state *s = (struct rl_state *)((char *)w - offsetof(struct rl_state, w));

	stream_ref_wake(s->ref);
}

/* Redis key: prefix "rl:" route ":" the limit key (route names are unique). */
static enum cluster_verdict cluster_ask(struct stream *st, struct rl_state *s,
					const struct route_config *rc, const char *key)
{
	const struct cluster_config *cc = st->cfg->cluster;
	char rkey[RATELIMIT_KEY_MAX + 256];
	int n = snprintf(rkey, sizeof(rkey), "%srl:%s:%s", cc->key_prefix, rc->name, key);
	uint64_t per_s = ratelimit_policy_per_s(rc->rate_limit);
	uint64_t burst = ratelimit_policy_burst(rc->rate_limit);

	if (n < 0 || (size_t)n >= sizeof(rkey))
		n = sizeof(rkey) - 1; /* over-long identities share a truncated key */
	s->ref = stream_ref(st);
	s->w.wake = rl_wake;
	s->asked = true;
	return cluster_rl_take(st->env->cluster, &s->w, rkey, n, per_s, burst,
			       cluster_lease_max(burst, cc->nodes, st->cfg->workers));
}

static enum filter_verdict cluster_request(struct stream *st, struct rl_state *s,
					   const struct route_config *rc, const char *key)
{
	enum cluster_verdict v = s->asked ? s->w.verdict : cluster_ask(st, s, rc, key);

	switch (v) {
	case CLUSTER_PENDING:
		return FILTER_WAIT;
	case CLUSTER_ALLOW:
		return FILTER_CONTINUE;
	case CLUSTER_DENY:
		return limited(st, rc, s->w.retry_after_s);
	case CLUSTER_FALLBACK:
		break;
	}
	return fallback(st, rc, key);
}

static enum filter_verdict ratelimit_request(struct stream *st, void *state)
{
	const struct route_config *rc = &st->cfg->routes[st->route];
	char ipkey[RATELIMIT_IP_KEY_LEN];
	const char *key = filter_limit_key(st, ratelimit_policy_by(rc->rate_limit), ipkey,
					   sizeof(ipkey));

	if (ratelimit_policy_cluster(rc->rate_limit) && st->cfg->cluster)
		return cluster_request(st, state, rc, key);
	return local_take(st, rc, key);
}

static void ratelimit_end(struct stream *st, void *state)
{
	struct rl_state *s = state;

	cluster_waiter_cancel(&s->w);
}

const struct filter filter_rate_limit = {
	.name = "rate_limit",
	.state_size = sizeof(struct rl_state),
	.on_request = ratelimit_request,
	.on_end = ratelimit_end,
};
