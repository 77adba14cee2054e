/* Token leases for cluster rate limits (lease.h). */
#include "cluster/lease.h"

#define MS 1000000ull

uint32_t cluster_lease_max(uint64_t burst, int nodes, int workers)
{
	uint64_t share = (uint64_t)(nodes > 0 ? nodes : 1) * (uint64_t)(workers > 0 ? workers : 1);
	uint64_t k = burst / (10 * share);

	return k > CLUSTER_LEASE_CAP ? CLUSTER_LEASE_CAP : (uint32_t)k;
}

/* The rate a sample of n admissions over elapsed ns gives, blended with the previous
 * one while samples follow each other (a long gap is a new rate). */
static double sample_rate(const struct cluster_lease *l, uint64_t elapsed)
{
	double r = (double)l->win_count * 1e9 / (double)elapsed;

	return elapsed < 2 * CLUSTER_LEASE_WINDOW_MS * MS ? (l->rate + r) / 2 : r;
}

double cluster_lease_rate(const struct cluster_lease *l, uint64_t now_ns)
{
	uint64_t elapsed = now_ns - l->win_start_ns;

	if (now_ns < l->win_start_ns || elapsed < CLUSTER_LEASE_WINDOW_MS * MS)
		return l->rate;
	return sample_rate(l, elapsed);
}

uint32_t cluster_lease_size(const struct cluster_lease *l, uint64_t now_ns, uint32_t max)
{
	double k = cluster_lease_rate(l, now_ns) * CLUSTER_LEASE_HORIZON_MS / 1000.0;

	return k >= (double)max ? max : (uint32_t)k;
}

uint32_t cluster_lease_tokens(const struct cluster_lease *l, uint64_t now_ns)
{
	return now_ns < l->expires_ns ? l->tokens : 0;
}

void cluster_lease_admitted(struct cluster_lease *l, uint64_t now_ns, uint32_t n)
{
	uint64_t elapsed = now_ns - l->win_start_ns;

	if (now_ns >= l->win_start_ns && elapsed >= CLUSTER_LEASE_WINDOW_MS * MS) {
		l->rate = sample_rate(l, elapsed);
		l->win_start_ns = now_ns;
		l->win_count = 0;
	}
	l->win_count += n;
}

bool cluster_lease_take(struct cluster_lease *l, uint64_t now_ns)
{
	if (!cluster_lease_tokens(l, now_ns)) {
		l->tokens = 0;
		return false;
	}
	l->tokens--;
	cluster_lease_admitted(l, now_ns, 1);
	return true;
}

uint32_t cluster_lease_refill(const struct cluster_lease *l, uint64_t now_ns, uint32_t max)
{
	uint32_t k = cluster_lease_size(l, now_ns, max);
	uint32_t have = cluster_lease_tokens(l, now_ns);

	return have > k / 2 ? 0 : k - have;
}

void cluster_lease_fill(struct cluster_lease *l, uint32_t n, uint64_t now_ns)
{
	l->tokens = cluster_lease_tokens(l, now_ns) + n;
	l->expires_ns = now_ns + CLUSTER_LEASE_TTL_MS * MS;
}

bool cluster_lease_idle(const struct cluster_lease *l, uint64_t now_ns)
{
	return !cluster_lease_tokens(l, now_ns) &&
	       now_ns - l->win_start_ns >= CLUSTER_LEASE_TTL_MS * MS;
}
