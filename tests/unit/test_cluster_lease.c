/* userspace/cluster/lease.c: lease size from the admission rate and its bound, refill at
 * half, expiry, idleness, and a simulation of several workers leasing from one GCRA
 * bucket that must not admit more than burst + rate * t + burst / 10. */
#include <stdlib.h>

#include "check.h"
#include "cluster/lease.h"

#define MS 1000000ull

/* n admissions spread evenly over ms milliseconds starting at *now (advanced). */
static void admit_over(struct cluster_lease *l, uint64_t *now, int n, int ms)
{
	for (int i = 0; i < n; i++) {
		*now += (uint64_t)ms * MS / (uint64_t)n;
		cluster_lease_admitted(l, *now, 1);
	}
}

static void test_max_spreads_a_tenth_of_the_burst(void)
{
	CHECK_EQ(cluster_lease_max(30, 3, 1), 1);
	CHECK_EQ(cluster_lease_max(30, 3, 2), 0); /* no lease: each request asks for itself */
	CHECK_EQ(cluster_lease_max(1, 2, 1), 0);
	CHECK_EQ(cluster_lease_max(1000, 2, 5), 10);
	CHECK_EQ(cluster_lease_max(1000, 0, 0), 100); /* treated as one node, one worker */
	CHECK_EQ(cluster_lease_max(100000000, 1, 1), CLUSTER_LEASE_CAP);
}

static void test_fresh_key_leases_nothing(void)
{
	struct cluster_lease l = {0};
	uint64_t now = 5000 * MS;

	CHECK(!cluster_lease_take(&l, now));
	CHECK_EQ(cluster_lease_size(&l, now, 1000), 0);
	CHECK_EQ(cluster_lease_refill(&l, now, 1000), 0);
	CHECK(cluster_lease_idle(&l, now));
}

static void test_size_follows_the_rate_within_max(void)
{
	struct cluster_lease l = {0};
	uint64_t now = 1000 * MS;

	/* 5000/s for 200 ms: the smoothed rate gets there, k = 5000 * horizon. */
	admit_over(&l, &now, 1000, 200);
	double rate = cluster_lease_rate(&l, now);

	CHECK(rate > 4000 && rate < 6000);
	uint32_t k = cluster_lease_size(&l, now, 100000);

	CHECK(k >= 4000 * CLUSTER_LEASE_HORIZON_MS / 1000 &&
	      k <= 6000 * CLUSTER_LEASE_HORIZON_MS / 1000);
	CHECK_EQ(cluster_lease_size(&l, now, 7), 7);
	CHECK_EQ(cluster_lease_size(&l, now, 0), 0);
	/* Quiet for 10 s: the sample says 10/s at most, nothing is leased. */
	now += 10000 * MS;
	CHECK_EQ(cluster_lease_size(&l, now, 100000), 0);
	cluster_lease_admitted(&l, now, 1);
	CHECK_EQ(cluster_lease_size(&l, now, 100000), 0);
}

static void test_slow_key_leases_nothing(void)
{
	struct cluster_lease l = {0};
	uint64_t now = 1000 * MS;

	/* 20/s: under one token per horizon, each request asks only for itself. */
	admit_over(&l, &now, 20, 1000);
	CHECK_EQ(cluster_lease_size(&l, now, 1000), 0);
	CHECK_EQ(cluster_lease_refill(&l, now, 1000), 0);
}

static void test_refill_at_half_and_take(void)
{
	struct cluster_lease l = {.rate = 2000, .win_start_ns = 1000 * MS};
	uint64_t now = 1001 * MS;
	uint32_t k = cluster_lease_size(&l, now, 1000);

	CHECK_EQ(k, 2000 * CLUSTER_LEASE_HORIZON_MS / 1000);
	CHECK_EQ(cluster_lease_refill(&l, now, 1000), k);
	cluster_lease_fill(&l, k, now);
	CHECK_EQ(cluster_lease_tokens(&l, now), k);
	CHECK_EQ(cluster_lease_refill(&l, now, 1000), 0);
	for (uint32_t i = 0; i < k - k / 2 - 1; i++)
		CHECK(cluster_lease_take(&l, now));
	CHECK_EQ(cluster_lease_refill(&l, now, 1000), 0); /* k/2 + 1 left */
	CHECK(cluster_lease_take(&l, now));
	CHECK_EQ(cluster_lease_refill(&l, now, 1000), k - k / 2);
	/* A lower max (a reload, more workers) asks for nothing while the lease exceeds it. */
	CHECK_EQ(cluster_lease_refill(&l, now, 2), 0);
	while (cluster_lease_take(&l, now))
		;
	CHECK_EQ(cluster_lease_tokens(&l, now), 0);
	CHECK(!cluster_lease_idle(&l, now)); /* it admitted just now */
}

static void test_tokens_expire(void)
{
	struct cluster_lease l = {0};
	uint64_t now = 1000 * MS;

	cluster_lease_fill(&l, 10, now);
	CHECK(!cluster_lease_idle(&l, now + CLUSTER_LEASE_TTL_MS * MS - 1));
	CHECK(cluster_lease_take(&l, now + CLUSTER_LEASE_TTL_MS * MS - 1));
	CHECK_EQ(cluster_lease_tokens(&l, now + CLUSTER_LEASE_TTL_MS * MS), 0);
	CHECK(!cluster_lease_take(&l, now + CLUSTER_LEASE_TTL_MS * MS));
	CHECK_EQ(l.tokens, 0);
	/* A fill keeps what is left and renews the deadline. */
	now += 2 * CLUSTER_LEASE_TTL_MS * MS;
	cluster_lease_fill(&l, 3, now);
	cluster_lease_fill(&l, 2, now + 50 * MS);
	CHECK_EQ(cluster_lease_tokens(&l, now + 50 * MS + CLUSTER_LEASE_TTL_MS * MS - 1), 5);
	CHECK(cluster_lease_idle(&l, now + 200 * MS + CLUSTER_LEASE_TTL_MS * MS));
}

/* The Lua script's GCRA, on the simulation's clock (µs). */
struct gcra {
	double tat, T, tau;
};

static long gcra_take(struct gcra *g, double now, long n)
{
	double tat = g->tat < now ? now : g->tat;
	long k = (long)((g->tau - (tat - now)) / g->T + 1e-9);

	if (k > n)
		k = n;
	if (k < 0)
		k = 0;
	g->tat = tat + (double)k * g->T;
	return k;
}

/* One worker as cluster_rl.c drives its lease: waiters in the call out ("sent") and
 * those for the next one, a reply after rtt. */
struct sim_worker {
	struct cluster_lease l;
	long sent, next, asked;
	uint64_t reply_at; /* 0: no call out */
};

static void sim_call(struct sim_worker *w, uint64_t now, uint32_t max, uint64_t rtt)
{
	w->asked = w->sent + cluster_lease_refill(&w->l, now, max);
	if (w->asked)
		w->reply_at = now + rtt;
}

static long sim_reply(struct sim_worker *w, struct gcra *g, uint64_t now, uint32_t max,
		      uint64_t rtt)
{
	long granted = gcra_take(g, (double)now / 1000.0, w->asked);
	long served = granted < w->sent ? granted : w->sent, more;

	w->reply_at = 0;
	granted -= served;
	more = granted < w->next ? granted : w->next;
	granted -= more;
	w->next -= more;
	served += more;
	cluster_lease_admitted(&w->l, now, (uint32_t)served);
	if (granted)
		cluster_lease_fill(&w->l, (uint32_t)granted, now);
	w->sent = w->next;
	w->next = 0;
	if (w->sent)
		sim_call(w, now, max, rtt);
	return served;
}

static long sim_request(struct sim_worker *w, uint64_t now, uint32_t max, uint64_t rtt)
{
	if (cluster_lease_take(&w->l, now)) {
		if (!w->reply_at && cluster_lease_refill(&w->l, now, max))
			sim_call(w, now, max, rtt);
		return 1;
	}
	if (w->reply_at) {
		w->next++;
	} else {
		w->sent = 1;
		sim_call(w, now, max, rtt);
	}
	return 0;
}

/*
 * 3 nodes x 2 workers, each offered `per_worker` req/s against one limit, replies 1 ms
 * after the call. Returns the admissions over secs seconds; hits counts lease hits.
 */
static long simulate(double per_s, double burst, double per_worker, double secs, long *hits)
{
	enum { N = 6 };
	struct sim_worker w[N] = {0};
	struct gcra g = {.T = 1e6 / per_s};
	uint32_t max = cluster_lease_max((uint64_t)burst, 3, 2);
	uint64_t step = 50 * 1000, rtt = 1 * MS, t0 = 1000 * MS, end = t0 + (uint64_t)(secs * 1e9);
	double owed[N] = {0};
	long admitted = 0;

	g.tau = g.T * burst;
	*hits = 0;
	for (uint64_t now = t0; now < end; now += step) {
		for (int i = 0; i < N; i++) {
			if (w[i].reply_at && now >= w[i].reply_at)
				admitted += sim_reply(&w[i], &g, now, max, rtt);
			owed[i] += per_worker * (double)step / 1e9;
			for (; owed[i] >= 1; owed[i] -= 1) {
				long hit = sim_request(&w[i], now, max, rtt);

				*hits += hit;
				admitted += hit;
			}
		}
	}
	return admitted;
}

static void test_leases_stay_within_burst_plus_a_tenth(void)
{
	double per_s = 20000, burst = 2000, secs = 2;
	long hits, admitted = simulate(per_s, burst, 10000, secs, &hits);
	double cap = burst + per_s * secs;

	/* Offered 60000/s: limited to the GCRA's budget plus at most what leases held. */
	CHECK(admitted <= cap + burst / 10);
	CHECK(admitted >= 0.9 * cap); /* unused leases under-admit, but not by much */
	CHECK(hits > 0);
}

static void test_leases_serve_most_requests_under_the_limit(void)
{
	long hits, admitted = simulate(1e6, 1e6, 10000, 1, &hits);

	/* 6 x 10000/s far below the limit: everything admitted, nearly all from leases. */
	CHECK(admitted >= 59000);
	CHECK(hits >= admitted * 9 / 10);
}

int main(void)
{
	RUN(test_max_spreads_a_tenth_of_the_burst);
	RUN(test_fresh_key_leases_nothing);
	RUN(test_size_follows_the_rate_within_max);
	RUN(test_slow_key_leases_nothing);
	RUN(test_refill_at_half_and_take);
	RUN(test_tokens_expire);
	RUN(test_leases_stay_within_burst_plus_a_tenth);
	RUN(test_leases_serve_most_requests_under_the_limit);
	return CHECK_DONE();
}
