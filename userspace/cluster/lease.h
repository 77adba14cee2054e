/*
 * Token leases for cluster rate limits (cluster_rl.c): a worker takes up to k tokens of
 * a key from Redis in one GCRA call and admits requests from them at once, refilling
 * ahead of need, so the common request does not wait for a Redis round trip.
 *
 * Accuracy: leased tokens are taken from Redis' budget when leased, so a lease that goes
 * unused only under-admits. What a lease can add to a window is what it held when the
 * window began; k is at most cluster_lease_max(), a tenth of the burst spread over every
 * worker of every node, so all leases together stay within burst / 10.
 *
 * k follows the key's recent admission rate on this worker: about CLUSTER_LEASE_HORIZON_MS
 * of admissions, so a key admitted less than 1000 / horizon times a second leases nothing
 * (each request asks Redis for just its own token, batched, as without leases) and a
 * quiet key wastes at most one lease. Tokens left CLUSTER_LEASE_TTL_MS after they were
 * leased are dropped: a worker that goes quiet does not keep admitting from an old grant.
 *
 * Pure state and arithmetic, single-threaded (the worker's); times in CLOCK_MONOTONIC ns.
 */
#ifndef XGATE_CLUSTER_LEASE_H
#define XGATE_CLUSTER_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#define CLUSTER_LEASE_TTL_MS 100
#define CLUSTER_LEASE_HORIZON_MS 20
#define CLUSTER_LEASE_WINDOW_MS 20 /* the admission-rate sample */
#define CLUSTER_LEASE_CAP 1000000  /* k never exceeds this, whatever the burst */

struct cluster_lease {
	uint64_t expires_ns;   /* the tokens are dropped then */
	uint64_t win_start_ns; /* the current rate sample */
	uint32_t tokens;
	uint32_t win_count; /* admissions in the current sample */
	double rate;	    /* admissions per second, smoothed over the samples */
};

/* The largest lease one worker may hold: burst / (10 * nodes * workers), 0 = none. */
uint32_t cluster_lease_max(uint64_t burst, int nodes, int workers);
/* Admissions per second as of now (a sample older than a window counts as ended). */
double cluster_lease_rate(const struct cluster_lease *l, uint64_t now_ns);
/* The lease size k wanted now: the rate over the horizon, at most max (0: no lease). */
uint32_t cluster_lease_size(const struct cluster_lease *l, uint64_t now_ns, uint32_t max);
/* Tokens usable now (0 once expired). */
uint32_t cluster_lease_tokens(const struct cluster_lease *l, uint64_t now_ns);
/* Takes one token for a request, counting the admission; false when none is usable. */
bool cluster_lease_take(struct cluster_lease *l, uint64_t now_ns);
/* Counts n admissions decided by Redis (requests that waited). */
void cluster_lease_admitted(struct cluster_lease *l, uint64_t now_ns, uint32_t n);
/* How many tokens to ask for now to refill: 0 while more than half of k is left. */
uint32_t cluster_lease_refill(const struct cluster_lease *l, uint64_t now_ns, uint32_t max);
/* Adds n tokens granted now; they expire CLUSTER_LEASE_TTL_MS from now. */
void cluster_lease_fill(struct cluster_lease *l, uint32_t n, uint64_t now_ns);
/* Nothing to keep: no usable token and no admission for a TTL. */
bool cluster_lease_idle(const struct cluster_lease *l, uint64_t now_ns);

#endif
